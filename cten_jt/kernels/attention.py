"""Fused scaled-dot-product attention: ``softmax(q @ k^T * scale) @ v``.

One ``jt.code`` op forward (scores, max-subtracted softmax and the weighted sum
in one pass; it keeps the probabilities [N, Tq, Tk] for the backward) and one
backward (dq, dk, dv), each with C++ and CUDA sources from ``csrc/``.
"""
import jittor as jt

from . import kernel_source

MAX_KEYS = 1024        # CTEN_SDPA_MAX_T in sdpa_cuda.cuh: the keys of one row live in shared memory

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
    if k.shape[-2] > MAX_KEYS:
        raise ValueError(f"fused attention takes at most {MAX_KEYS} keys, got {k.shape[-2]}")
    return lead


def _flat(x):
    return x.reshape((-1,) + tuple(x.shape[-2:]))


_SIZES = "int N = in0_shape0, Tq = in0_shape1, D = in0_shape2, Tk = in1_shape1, E = in2_shape2;"


class FusedAttention(jt.Function):
    """``FusedAttention(scale)(q, k, v)``; q [..., Tq, D], k [..., Tk, D], v [..., Tk, E]."""

    def __init__(self, scale):
        self.scale = float(scale)

    def execute(self, q, k, v):
        lead = _check(q, k, v)
        q3, k3, v3 = _flat(q), _flat(k), _flat(v)
        N, Tq, _ = q3.shape
        Tk, E = v3.shape[1], v3.shape[2]
        out, prob = jt.code(
            [(N, Tq, E), (N, Tq, Tk)], ["float32", "float32"], [q3, k3, v3],
            cpu_header=_CPU_HEADER, cuda_header=_CUDA_HEADER,
            cpu_src=_SIZES + "cten_sdpa_forward_cpu(in0_p, in1_p, in2_p, N, Tq, Tk, D, E, "
                             "(float)data[\"scale\"], out0_p, out1_p);",
            cuda_src=_SIZES + "cten_sdpa_forward_cuda(in0_p, in1_p, in2_p, N, Tq, Tk, D, E, "
                              "(float)data[\"scale\"], out0_p, out1_p);",
            data={"scale": self.scale})
        self.saved = (q3, k3, v3, prob, q.shape, k.shape, v.shape)
        return out.reshape(lead + (Tq, E))

    def grad(self, dout):
        q3, k3, v3, prob, q_shape, k_shape, v_shape = self.saved
        N, Tq, D = q3.shape
        Tk, E = v3.shape[1], v3.shape[2]
        dout = _flat(dout)
        dq, dk, dv, _ = jt.code(
            [(N, Tq, D), (N, Tk, D), (N, Tk, E), (N, Tq, Tk)], ["float32"] * 4,
            [q3, k3, v3, prob, dout],
            cpu_header=_CPU_HEADER, cuda_header=_CUDA_HEADER,
            cpu_src=_SIZES + "cten_sdpa_backward_cpu(in0_p, in1_p, in2_p, in3_p, in4_p, N, Tq, Tk, D, E, "
                             "(float)data[\"scale\"], out0_p, out1_p, out2_p, out3_p);",
            cuda_src=_SIZES + "cten_sdpa_backward_cuda(in0_p, in1_p, in2_p, in3_p, in4_p, N, Tq, Tk, D, E, "
                              "(float)data[\"scale\"], out0_p, out1_p, out2_p, out3_p);",
            data={"scale": self.scale})
        return dq.reshape(q_shape), dk.reshape(k_shape), dv.reshape(v_shape)


def fused_attention(query, key, value, scale):
    """``softmax(query @ key^T * scale) @ value`` over the last two dims, fused."""
    return FusedAttention(scale)(query, key, value)


def composed_attention(query, key, value, scale):
    """The same from Jittor's own matmul and softmax (the fallback and the test oracle)."""
    perm = list(range(key.ndim - 2)) + [key.ndim - 1, key.ndim - 2]
    scores = jt.matmul(query, key.permute(*perm)) * scale
    return jt.matmul(jt.nn.softmax(scores, dim=-1), value)
