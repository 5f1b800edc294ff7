"""The two ResNet backbones of CTEN, in torchvision's parameter names.

* visual: Hara et al.'s 3D ResNet (shortcut B), conv1 7x7x7 stride (1, 2, 2),
  strides in all three dimensions, average pool (ceil(L/16), ceil(S/32)^2);
* audio: torchvision's 2D ResNet with a one-channel (7, 1) conv1 and an
  average pool (4, 8) over the 100x128 filterbank image.

Both are returned as ``nn.Sequential(conv1, bn1, relu, maxpool, layer1..4,
avgpool)`` (indices 0..8), the layout of the reference checkpoints.
"""
import math

from torch import nn
from torch.nn import AvgPool2d, AvgPool3d, Conv3d, MaxPool2d, MaxPool3d

from cten_common.config import AUDIO_ARCHS, VISUAL_DEPTHS
from .norm import BatchNorm2d, BatchNorm3d

_CONV = {2: nn.Conv2d, 3: Conv3d}
_BN = {2: BatchNorm2d, 3: BatchNorm3d}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, ndim, in_planes, planes, stride=1, downsample=None):
        super().__init__()
        conv, bn = _CONV[ndim], _BN[ndim]
        self.conv1 = conv(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = bn(planes)
        self.relu = nn.ReLU()
        self.conv2 = conv(planes, planes, 3, padding=1, bias=False)
        self.bn2 = bn(planes)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, ndim, in_planes, planes, stride=1, downsample=None):
        super().__init__()
        conv, bn = _CONV[ndim], _BN[ndim]
        self.conv1 = conv(in_planes, planes, 1, bias=False)
        self.bn1 = bn(planes)
        self.conv2 = conv(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = bn(planes)
        self.conv3 = conv(planes, planes * 4, 1, bias=False)
        self.bn3 = bn(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


def make_layer(ndim, block, in_planes, planes, blocks, stride):
    """One ResNet stage; a 1x1 conv + BN shortcut where the shape changes."""
    downsample = None
    if stride != 1 or in_planes != planes * block.expansion:
        downsample = nn.Sequential(
            _CONV[ndim](in_planes, planes * block.expansion, 1, stride=stride, bias=False),
            _BN[ndim](planes * block.expansion))
    layers = [block(ndim, in_planes, planes, stride, downsample)]
    layers += [block(ndim, planes * block.expansion, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def _stages(ndim, block_name, layers):
    block = BLOCKS[block_name]
    stages, in_planes = [], 64
    for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
        stages.append(make_layer(ndim, block, in_planes, planes, blocks, 1 if i == 0 else 2))
        in_planes = planes * block.expansion
    return stages


def visual_backbone(depth, snippet_duration, sample_size):
    """Hara et al.'s 3D ResNet of ``depth`` without its fc, as a Sequential."""
    block_name, layers = VISUAL_DEPTHS[depth]
    pool = (math.ceil(snippet_duration / 16), math.ceil(sample_size / 32), math.ceil(sample_size / 32))
    return nn.Sequential(
        Conv3d(3, 64, 7, stride=(1, 2, 2), padding=3, bias=False),
        BatchNorm3d(64),
        nn.ReLU(),
        MaxPool3d(3, stride=2, padding=1),
        *_stages(3, block_name, layers),
        AvgPool3d(pool, stride=1))


def audio_backbone(arch):
    """torchvision's ResNet ``arch`` for one-channel filterbank images, as a Sequential."""
    block_name, layers = AUDIO_ARCHS[arch]
    return nn.Sequential(
        nn.Conv2d(1, 64, (7, 1), stride=(2, 1), padding=(3, 0), bias=False),
        BatchNorm2d(64),
        nn.ReLU(),
        MaxPool2d(3, stride=2, padding=1),
        *_stages(2, block_name, layers),
        AvgPool2d((4, 8)))
