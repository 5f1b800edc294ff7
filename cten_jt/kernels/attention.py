"""Fused scaled-dot-product attention: ``softmax(q @ k^T * scale) @ v``.

One ``jt.code`` op forward (scores, max-subtracted softmax and the weighted sum
in one pass; with a graph it also keeps the probabilities [N, Tq, Tk] for the
backward) and one op per gradient (dq, dk, dv), each with C++ and CUDA sources
from ``csrc/``.  ``precision="bf16"``: the same ops compute
``cten_jt.models.attention.low_precision_attention`` (operands and results of both
products rounded to bfloat16, their gradients too, as ``round_to``'s are; the sums
in double on the CPU, float32 on the GPU; the softmax unrounded).
"""
import jittor as jt

from . import kernel_source

MAX_KEYS = 1024        # CTEN_SDPA_MAX_T in sdpa_cuda.cuh: a row of keys (and of queries) lives in shared memory

_CPU_HEADER = kernel_source("sdpa_cpu.h")
_CUDA_HEADER = kernel_source("sdpa_cuda.cuh")


def _check(q, k, v):
    for name, x in (("query", q), ("key", k), ("value", v)):
        if x.ndim < 2:
            raise ValueError(f"{name} must have at least 2 dims [..., T, D], got shape {x.shape}")
        if x.dtype != "float32":
            raise TypeError(f"fused attention computes in float32; {name} is {x.dtype}")
    lead = tuple(q.shape[:-2])
    if tuple(k.shape[:-2]) != lead or tuple(v.shape[:-2]) != lead:
        raise ValueError(f"leading dims differ: query {q.shape}, key {k.shape}, value {v.shape}")
    if k.shape[-1] != q.shape[-1]:
        raise ValueError(f"query and key feature sizes differ: {q.shape[-1]} vs {k.shape[-1]}")
    if v.shape[-2] != k.shape[-2]:
        raise ValueError(f"key and value lengths differ: {k.shape[-2]} vs {v.shape[-2]}")
    if k.shape[-2] > MAX_KEYS or q.shape[-2] > MAX_KEYS:
        raise ValueError(f"fused attention takes at most {MAX_KEYS} queries and keys, "
                         f"got {q.shape[-2]} and {k.shape[-2]}")
    return lead


def _flat(x):
    return x.reshape((-1,) + tuple(x.shape[-2:]))


_SIZES = "int N = in0_shape0, Tq = in0_shape1, D = in0_shape2, Tk = in1_shape1, E = in2_shape2;"
_SCALE = "(float)data[\"scale\"]"
_LOW = "(int)data[\"low\"]"
LOW_CODES = {"fp32": 0, "bf16": 1}     # what the kernels compute in (csrc/sdpa_cpu.h's `low`)


def _code(shape, inputs, call, scale, low):
    """One single-output op: ``call`` is the C++/CUDA function's name stem and
    argument list (``in*_p``, sizes, ``out0_p``).  Every op here has exactly one
    output, or one whose other output the caller keeps alive: Jittor's code op
    writes through its own list of output pointers, and an output freed before
    the op runs would be written anyway."""
    name, args = call
    return jt.code(shape, "float32", inputs, cpu_header=_CPU_HEADER, cuda_header=_CUDA_HEADER,
                   cpu_src=f"{_SIZES} {name}_cpu({args});", cuda_src=f"{_SIZES} {name}_cuda({args});",
                   data={"scale": scale, "low": low})


class FusedAttention(jt.Function):
    """``FusedAttention(scale, precision)(q, k, v)``; q [..., Tq, D], k [..., Tk, D],
    v [..., Tk, E]; ``precision`` "fp32" or "bf16" (the module docstring)."""

    def __init__(self, scale, precision="fp32"):
        if precision not in LOW_CODES:
            raise ValueError(f"fused attention computes in {sorted(LOW_CODES)}, not {precision!r}")
        self.scale, self.low = float(scale), LOW_CODES[precision]

    def execute(self, q, k, v):
        lead = _check(q, k, v)
        q3, k3, v3 = _flat(q), _flat(k), _flat(v)
        N, Tq, _ = q3.shape
        Tk, E = v3.shape[1], v3.shape[2]
        args = f"in0_p, in1_p, in2_p, N, Tq, Tk, D, E, {_SCALE}, out0_p, "
        if jt.flags.no_grad:          # nothing keeps a second output alive: write none
            out = _code((N, Tq, E), [q3, k3, v3], ("cten_sdpa_forward", args + f"nullptr, {_LOW}"), self.scale,
                        self.low)
            return out.reshape(lead + (Tq, E))
        out, prob = jt.code(
            [(N, Tq, E), (N, Tq, Tk)], ["float32", "float32"], [q3, k3, v3],
            cpu_header=_CPU_HEADER, cuda_header=_CUDA_HEADER,
            cpu_src=f"{_SIZES} cten_sdpa_forward_cpu({args}out1_p, {_LOW});",
            cuda_src=f"{_SIZES} cten_sdpa_forward_cuda({args}out1_p, {_LOW});",
            data={"scale": self.scale, "low": self.low})
        # the taped graph holds this Function until its backward, and with it prob
        self.saved = (q3, k3, v3, prob, out, q.shape, k.shape, v.shape)
        return out.reshape(lead + (Tq, E))

    def grad(self, dout):
        q3, k3, v3, prob, out, q_shape, k_shape, v_shape = self.saved
        N, Tq, D = q3.shape
        Tk, E = v3.shape[1], v3.shape[2]
        dout = _flat(dout)
        # inputs: q, k, v, prob, dout, out  (in0..in5); sizes from q, k, v
        tail = f"N, Tq, Tk, D, E, {_SCALE}, out0_p, {_LOW}"
        ins = [q3, k3, v3, prob, dout, out]
        dq = _code((N, Tq, D), ins, ("cten_sdpa_backward_dq", f"in1_p, in2_p, in3_p, in4_p, in5_p, {tail}"),
                   self.scale, self.low)
        dk = _code((N, Tk, D), ins, ("cten_sdpa_backward_dk", f"in0_p, in2_p, in3_p, in4_p, in5_p, {tail}"),
                   self.scale, self.low)
        dv = _code((N, Tk, E), ins, ("cten_sdpa_backward_dv", f"in3_p, in4_p, N, Tq, Tk, E, out0_p, {_LOW}"),
                   self.scale, self.low)
        return dq.reshape(q_shape), dk.reshape(k_shape), dv.reshape(v_shape)


def fused_attention(query, key, value, scale, precision="fp32"):
    """``softmax(query @ key^T * scale) @ value`` over the last two dims, fused; in bf16 as
    ``low_precision_attention`` computes it."""
    return FusedAttention(scale, precision)(query, key, value)


def composed_attention(query, key, value, scale):
    """The same from Jittor's own matmul and softmax (the fallback and the test oracle)."""
    perm = list(range(key.ndim - 2)) + [key.ndim - 1, key.ndim - 2]
    scores = jt.matmul(query, key.permute(*perm)) * scale
    return jt.matmul(jt.nn.softmax(scores, dim=-1), value)
