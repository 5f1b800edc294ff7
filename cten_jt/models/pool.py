"""Max and average pooling with PyTorch's results for every input size.

Jittor's pooling ops refuse inputs whose size equals the kernel (e.g. the
final 1x4x4 -> 1x1x1 average pool of the reference configuration, or the
audio branch's final pool); there the window is reduced from strided slices
instead.  Elsewhere Jittor's own ops run.
"""
import itertools
import math

import jittor as jt
from jittor import nn


def _tuple(value, n):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


class _Pool(nn.Module):
    """Max / average pooling with PyTorch's results for every input size.

    Jittor's pooling ops refuse inputs whose size equals the kernel (e.g. the
    final 1x4x4 -> 1x1x1 average pool of the reference configuration); there
    the window is reduced from strided slices instead (padding counts as -inf
    for max pooling; average pooling here has no padding).
    """
    _ndim = 2
    _op = "maximum"

    def __init__(self, kernel_size, stride=None, padding=0):
        n = self._ndim
        self.kernel_size = _tuple(kernel_size, n)
        self.stride = _tuple(stride if stride is not None else kernel_size, n)
        self.padding = _tuple(padding, n)
        if self._op == "mean" and any(self.padding):
            raise ValueError("average pooling with padding is not supported")
        pool_cls = nn.Pool3d if n == 3 else nn.Pool
        self._jittor_pool = pool_cls(self.kernel_size, self.stride, self.padding, op=self._op)

    def execute(self, x):
        spatial = x.shape[2:]
        if all(s > k for s, k in zip(spatial, self.kernel_size)):
            return self._jittor_pool(x)
        return self._sliced(x)

    def _sliced(self, x):
        padded = [s + 2 * p for s, p in zip(x.shape[2:], self.padding)]
        out = [(s - k) // st + 1 for s, k, st in zip(padded, self.kernel_size, self.stride)]
        if min(out) < 1:
            raise ValueError(f"{type(self).__name__}{self.kernel_size}: input of spatial size "
                             f"{list(x.shape[2:])} is smaller than the window")
        if any(self.padding):
            pads = []
            for p in reversed(self.padding):
                pads += [p, p]
            x = nn.pad(x, pads, value=float("-inf"))
        acc = None
        for offset in itertools.product(*(range(k) for k in self.kernel_size)):
            window = (slice(None), slice(None)) + tuple(
                slice(o, o + st * (n - 1) + 1, st) for o, st, n in zip(offset, self.stride, out))
            part = x[window]
            if acc is None:
                acc = part
            elif self._op == "maximum":
                acc = jt.maximum(acc, part)
            else:
                acc = acc + part
        if self._op == "mean":
            acc = acc / float(math.prod(self.kernel_size))
        return acc


class MaxPool2d(_Pool):
    _ndim, _op = 2, "maximum"


class MaxPool3d(_Pool):
    _ndim, _op = 3, "maximum"


class AvgPool2d(_Pool):
    _ndim, _op = 2, "mean"


class AvgPool3d(_Pool):
    _ndim, _op = 3, "mean"
