"""2D and 3D convolution on oneDNN for Jittor's CPU path, with gradients.

Jittor's CPU conv3d is a broadcast-and-reduce loop (~100x slower than
PyTorch's) and its conv2d runs oneDNN on plain layouts.  ``DnnlConv`` is a
``jt.Function`` of three single-output ``jt.code`` ops (forward,
backward-data, backward-weights) calling oneDNN's convolution primitives with
the layouts oneDNN prefers (``csrc/conv_dnnl.h``), linked against the system
oneDNN that ``cten_jt._environment`` found and linked for Jittor.
"""
import functools

import jittor as jt

from .. import _environment
from . import kernel_source

_HEADER = None


@functools.lru_cache(maxsize=None)
def _system_dnnl():
    return (_environment.decisions.get("use_mkl", ("0",))[0] == "1"
            and _environment.find_system_dnnl() is not None)


def available():
    """True on the CPU with the system oneDNN that Jittor also uses."""
    return not jt.flags.use_cuda and _system_dnnl()


def _sizes(x_shape, w_shape, stride, padding):
    """The int array ``s`` of conv_dnnl.h."""
    nd = len(x_shape) - 2
    if nd == 2:
        n, c, h, w = x_shape
        o, _, kh, kw = w_shape
        d = kd = sd = 1
        pd = 0
        (sh, sw), (ph, pw) = stride, padding
    else:
        n, c, d, h, w = x_shape
        o, _, kd, kh, kw = w_shape
        (sd, sh, sw), (pd, ph, pw) = stride, padding
    out = [(d + 2 * pd - kd) // sd + 1, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1]
    return [nd, n, c, d, h, w, o, kd, kh, kw, sd, sh, sw, pd, ph, pw] + out


_UNPACK = "int s[19]; for (int i = 0; i < 19; i++) s[i] = (int)data[\"s\" + std::to_string(i)];"


def _op(shape, inputs, call, sizes):
    """One single-output op; the sizes travel as op data (no recompilation per shape)."""
    global _HEADER
    if _HEADER is None:
        _HEADER = kernel_source("conv_dnnl.h")
    y = jt.code(shape, "float32", inputs, cpu_header=_HEADER + "\n#include <string>",
                cpu_src=f"{_UNPACK} {call}", data={f"s{i}": v for i, v in enumerate(sizes)})
    y.compile_options = {"FLAGS: -ldnnl ": 1}
    return y


class DnnlConv(jt.Function):
    """``DnnlConv(stride, padding)(x, weight)``: no bias, no dilation, one group."""

    def __init__(self, stride, padding):
        self.stride, self.padding = tuple(stride), tuple(padding)

    def execute(self, x, weight):
        if x.shape[1] != weight.shape[1]:
            raise ValueError(f"conv: input has {x.shape[1]} channels, weight expects {weight.shape[1]}")
        s = _sizes(x.shape, weight.shape, self.stride, self.padding)
        out_shape = tuple(x.shape[:1]) + (weight.shape[0],) + tuple(s[16:] if s[0] == 3 else s[17:])
        self.saved = (x, weight, s)
        return _op(out_shape, [x, weight], "cten_conv_forward(in0_p, in1_p, out0_p, s);", s)

    def grad(self, dy):
        x, weight, s = self.saved
        dx = _op(x.shape, [dy, weight], "cten_conv_backward_data(in0_p, in1_p, out0_p, s);", s)
        dw = _op(weight.shape, [x, dy], "cten_conv_backward_weights(in0_p, in1_p, out0_p, s);", s)
        return dx, dw


def conv_dnnl(x, weight, stride, padding):
    """``conv2d``/``conv3d(x, weight)`` on oneDNN (float32, no bias, no dilation, one group)."""
    return DnnlConv(stride, padding)(x, weight)
