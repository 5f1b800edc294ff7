"""Layers whose Jittor twins need PyTorch's exact semantics (see cten_jt.models.layers)."""
from torch import nn

BatchNorm1d = nn.BatchNorm1d
BatchNorm2d = nn.BatchNorm2d
BatchNorm3d = nn.BatchNorm3d
MaxPool2d = nn.MaxPool2d
MaxPool3d = nn.MaxPool3d
AvgPool2d = nn.AvgPool2d
AvgPool3d = nn.AvgPool3d
Conv3d = nn.Conv3d
