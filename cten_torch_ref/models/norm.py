"""BatchNorm: PyTorch's own (the semantics ``cten_jt.models.norm`` reproduces)."""
from torch import nn

BatchNorm1d = nn.BatchNorm1d
BatchNorm2d = nn.BatchNorm2d
BatchNorm3d = nn.BatchNorm3d
