"""Pooling: PyTorch's own (the results ``cten_jt.models.pool`` reproduces for every size)."""
from torch import nn

MaxPool2d = nn.MaxPool2d
MaxPool3d = nn.MaxPool3d
AvgPool2d = nn.AvgPool2d
AvgPool3d = nn.AvgPool3d
