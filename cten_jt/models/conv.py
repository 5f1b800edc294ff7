"""2D and 3D convolutions that run on oneDNN (CPU) or cuDNN (GPU) where they can.

Same parameters and names as Jittor's ``nn.Conv1d``/``nn.Conv2d``/``nn.Conv3d``;
the compiled ops are ``cten_jt.kernels.conv`` (``fast_conv``).  Jittor's own
convolution runs where neither library is found, for grouped or dilated
convolutions and for non-float32 input.

Each has a ``precision`` (``cten_jt.precision``): "fp32" unless set; "bf16"
(and "fp16" on the GPU) runs the compiled op in that precision, or, on Jittor's
own path, rounds the operands and the result around a float32 convolution (the
same arithmetic: products of bfloat16 values are exact in float32).
"""
import jittor as jt
from jittor import nn

from cten_common.precision import LOW
from ..kernels import conv as conv_ops
from ..precision import low


def _fast_conv_ok(conv, x):
    # a low-precision result is rounded after its bias is added: the compiled op has no bias
    return (x.dtype == "float32" and conv.groups == 1 and all(d == 1 for d in conv.dilation)
            and (conv.bias is None or conv.precision not in LOW) and conv_ops.available())


def _emulated(conv, x, run):
    """``run(x, weight)`` (Jittor's own convolution) in ``conv.precision``: operands and
    result rounded; the bias added after, rounded too (autocast adds it in the product)."""
    p = conv.precision
    y = run(low(x, p), low(conv.weight, p))
    if conv.bias is not None:
        y = y + low(conv.bias, p).reshape((1, -1) + (1,) * (y.ndim - 2))
    return low(y, p)


def _weight_cache(conv):
    """The layer's ``WeightCache`` (created on first use; a frozen weight keeps its oneDNN layout)."""
    cache = conv.__dict__.get("_dnnl_weights")
    if cache is None:
        cache = conv._dnnl_weights = conv_ops.WeightCache()
    return cache


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` on oneDNN's preferred layouts on the CPU, on cuDNN on the GPU
    (``cten_jt.kernels.conv``); Jittor's own path where neither is found.  Same
    parameters and names."""

    precision = "fp32"

    def execute(self, x):
        if not _fast_conv_ok(self, x):
            if self.precision in LOW:
                return _emulated(self, x, lambda xs, w: nn.conv2d(xs, w, None, self.stride, self.padding,
                                                                  self.dilation, self.groups))
            return super().execute(x)
        out = conv_ops.fast_conv(x, self.weight, self.stride, self.padding, _weight_cache(self),
                                 self.precision)
        return out if self.bias is None else out + self.bias.reshape(1, -1, 1, 1)


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` with fast paths.

    Jittor's CPU conv3d is a broadcast-and-reduce loop (~100x slower than
    PyTorch's), and so is its GPU one without a loadable cuDNN (cuDNN 9).  With
    a system oneDNN (CPU) or cuDNN (GPU) it runs their 3D convolution, forward
    and backward (``cten_jt.kernels.conv``).  On the CPU without oneDNN:
    out[:, :, t] = sum_i conv2d(x[:, :, t*stride + i - pad], weight[:, :, i]),
    kt conv2d calls over all output frames at once.  Elsewhere Jittor's own.
    Same parameters and names.
    """

    precision = "fp32"

    def execute(self, x):
        if self.precision in LOW and not _fast_conv_ok(self, x):
            return _emulated(self, x, lambda xs, w: nn.conv3d(xs, w, None, self.stride, self.padding,
                                                              self.dilation, self.groups))
        if self.groups != 1 or tuple(self.dilation) != (1, 1, 1):
            return super().execute(x)
        if _fast_conv_ok(self, x):
            out = conv_ops.fast_conv(x, self.weight, self.stride, self.padding, _weight_cache(self),
                                     self.precision)
            return out if self.bias is None else out + self.bias.reshape(1, -1, 1, 1, 1)
        if jt.flags.use_cuda:
            return super().execute(x)
        kt, kh, kw = self.weight.shape[2:]
        st, sh, sw = self.stride
        pt, ph, pw = self.padding
        n, c, t, h, w = x.shape
        if pt:
            x = nn.pad(x, [0, 0, 0, 0, pt, pt])
        t_out = (t + 2 * pt - kt) // st + 1
        out = None
        for i in range(kt):
            taps = x[:, :, i:i + st * (t_out - 1) + 1:st]
            frames = taps.permute(0, 2, 1, 3, 4).reshape(n * t_out, c, h, w)
            y = nn.conv2d(frames, self.weight[:, :, i], None, (sh, sw), (ph, pw))
            out = y if out is None else out + y
        out = out.reshape(n, t_out, *out.shape[1:]).permute(0, 2, 1, 3, 4)
        if self.bias is not None:
            out = out + self.bias.reshape(1, -1, 1, 1, 1)
        return out


class Conv1d(nn.Conv1d):
    """``nn.Conv1d`` with a ``precision`` (Jittor's own convolution; "bf16" rounds the
    operands and the result around it).  Same parameters and names."""

    precision = "fp32"

    def execute(self, x):
        if self.precision not in LOW:
            return super().execute(x)
        if x.ndim != 3 or x.shape[1] != self.in_channels:
            raise ValueError(f"Conv1d: input must be [N, {self.in_channels}, L], got {list(x.shape)}")
        return _emulated(self, x, lambda xs, w: nn.conv2d(
            xs.unsqueeze(-1), w.unsqueeze(-1), None, self.stride, self.padding, self.dilation,
            self.groups).squeeze(-1))
