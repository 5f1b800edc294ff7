"""Rounding float32 arrays to bfloat16 (or float16) values: the low-precision
operands and results of ``cten_jt.precision``'s layers.

``round_to(x, precision)`` is one elementwise ``jt.code`` op (``csrc/rounding.h``:
round to nearest, ties to even, as PyTorch's and oneDNN's conversions; float16
on the GPU only).  Its gradient is the same rounding of the incoming gradient:
what ``torch.autocast``'s casts do, where a float32 gradient enters a bfloat16
product.  The array stays float32; only its values are bfloat16's.
"""
import jittor as jt

from . import kernel_source

CODES = {"bf16": 1, "fp16": 2}

_CPU_HEADER = kernel_source("rounding.h")
_CUDA_HEADER = kernel_source("rounding_cuda.cuh")


def _round(x, precision):
    return jt.code(x.shape, "float32", [x], cpu_header=_CPU_HEADER, cuda_header=_CUDA_HEADER,
                   cpu_src="for (long long i = 0; i < in0->num; i++) out0_p[i] = cten_round_bf16(in0_p[i]);",
                   cuda_src="cten_round_cuda(in0_p, out0_p, in0->num, (int)data[\"prec\"]);",
                   data={"prec": CODES[precision]})


class Round(jt.Function):
    """``Round(precision)(x)``: x's values rounded; the gradient rounded the same way."""

    def __init__(self, precision):
        self.precision = precision

    def execute(self, x):
        return _round(x, self.precision)

    def grad(self, dy):
        return _round(dy, self.precision)


def round_to(x, precision):
    """float32 ``x`` with every value rounded to ``precision`` ("bf16"; "fp16" on the GPU)."""
    if precision not in CODES:
        raise ValueError(f"round_to: precision must be one of {sorted(CODES)}, got {precision!r}")
    if precision == "fp16" and not jt.flags.use_cuda:
        raise ValueError("round_to: fp16 runs on a CUDA GPU only")
    if x.dtype != "float32":
        raise TypeError(f"round_to takes float32 arrays, got {x.dtype}")
    if x.is_stop_grad():
        return _round(x, precision).stop_grad()
    return Round(precision)(x)
