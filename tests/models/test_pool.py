"""Pooling with PyTorch's results for every input size (cten_jt.models.pool)."""
import jittor as jt
import numpy as np
import pytest
import torch
from torch import nn as tl           # the reference's layers are PyTorch's own

from cten_jt.models import pool as jl
from helpers import MODULE_ATOL, assert_close

POOL_CASES = [
    ("MaxPool3d", dict(kernel_size=3, stride=2, padding=1), (2, 3, 8, 9, 9)),
    ("MaxPool3d", dict(kernel_size=3, stride=2, padding=1), (2, 3, 2, 3, 3)),   # size <= kernel
    ("AvgPool3d", dict(kernel_size=(1, 4, 4), stride=1), (2, 3, 1, 4, 4)),      # reference's final pool
    ("AvgPool3d", dict(kernel_size=(1, 2, 2), stride=1), (2, 3, 2, 5, 5)),
    ("MaxPool2d", dict(kernel_size=3, stride=2, padding=1), (2, 3, 50, 128)),
    ("AvgPool2d", dict(kernel_size=(4, 8)), (2, 3, 4, 8)),                      # audio's final pool
    ("AvgPool2d", dict(kernel_size=(2, 2)), (2, 3, 6, 7)),
]


@pytest.mark.parametrize("cls,kwargs,shape", POOL_CASES)
def test_pooling_matches_torch(cls, kwargs, shape):
    x = np.random.default_rng(3).normal(size=shape).astype(np.float32)
    t_out = getattr(tl, cls)(**kwargs)(torch.from_numpy(x))
    j_out = getattr(jl, cls)(**kwargs)(jt.array(x))
    assert_close(t_out, j_out, f"{cls}{kwargs} on {shape}", atol=MODULE_ATOL)
