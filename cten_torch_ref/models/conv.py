"""Convolution: PyTorch's own (``cten_jt.models.conv`` runs the same on oneDNN/cuDNN)."""
from torch import nn

Conv2d = nn.Conv2d
Conv3d = nn.Conv3d
