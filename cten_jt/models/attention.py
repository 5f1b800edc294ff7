"""Intra-modal (non-local) and inter-modal (multi-head) attention of CTEN.

All attention goes through ``scaled_dot_product_attention``: the fused kernel
of ``cten_jt.kernels.attention`` by default, Jittor's composed operators after
``cten_jt.switches.set_kernels("composed")``.  Both blocks have a ``precision``
(``cten_jt.precision``) that their linear layers and their attention follow.
"""
import jittor as jt
from jittor import nn

from cten_common.config import ATTENTION_HEADS, NONLOCAL_INNER
from cten_common.precision import LOW
from ..kernels.attention import MAX_KEYS, composed_attention, fused_attention
from ..precision import low
from ..switches import fused_enabled
from .linear import Linear
from .norm import BatchNorm1d


def low_precision_attention(query, key, value, scale, precision):
    """The attention under the low-precision policy: both products on rounded operands
    with rounded results (``torch.autocast``'s matmul), the scaling and the softmax in
    float32."""
    perm = list(range(key.ndim - 2)) + [key.ndim - 1, key.ndim - 2]
    scores = low(jt.matmul(low(query, precision), low(key, precision).permute(*perm)), precision) * scale
    weights = jt.nn.softmax(scores, dim=-1)
    return low(jt.matmul(low(weights, precision), low(value, precision)), precision)


def scaled_dot_product_attention(query, key, value, scale, precision="fp32"):
    """``softmax(query @ key^T * scale) @ value`` over the last two dimensions.

    The fused kernel takes float32 arrays, fp32 or bf16, and at most ``MAX_KEYS``
    keys; anything else goes to the composed operators.  ``precision`` bf16 (fp16):
    the products in that precision (``low_precision_attention``, which the fused
    kernel's bf16 variant computes; fp16 (GPU) is composed).
    """
    fused = (fused_enabled() and max(key.shape[-2], query.shape[-2]) <= MAX_KEYS
             and all(x.dtype == "float32" for x in (query, key, value)))
    if fused and precision not in LOW:        # fp32 (tf32: the same kernel)
        return fused_attention(query, key, value, scale)
    if fused and precision == "bf16":
        return fused_attention(query, key, value, scale, "bf16")
    if precision in LOW:
        return low_precision_attention(query, key, value, scale, precision)
    return composed_attention(query, key, value, scale)


class NonLocalBlock(nn.Module):
    """Self-attention over the segments of one modality, with a zero-initialised residual gate."""

    precision = "fp32"

    def __init__(self, dim=2048, dim_inner=NONLOCAL_INNER):
        self.dim_inner = dim_inner
        self.theta = Linear(dim, dim_inner)
        self.phi = Linear(dim, dim_inner)
        self.g = Linear(dim, dim_inner)
        self.out = Linear(dim_inner, dim)
        self.bn = BatchNorm1d(dim)
        self.alpha = jt.zeros((1,), "float32")

    def execute(self, x):
        b, t, c = x.shape
        flat = x.reshape(b * t, c)
        theta = self.theta(flat).reshape(b, t, -1)
        phi = self.phi(flat).reshape(b, t, -1)
        g = self.g(flat).reshape(b, t, -1)
        z = scaled_dot_product_attention(theta, phi, g, self.dim_inner ** -0.5, self.precision)
        out = self.bn(self.out(z.reshape(b * t, -1))).reshape(b, t, c)
        return out + self.alpha * x


class MultiHeadAttention(nn.Module):
    """Multi-head attention with a ReLU after each of the q, k, v and output projections."""

    precision = "fp32"

    def __init__(self, dim=2048, heads=ATTENTION_HEADS):
        self.heads = heads
        self.linear_q = Linear(dim, dim)
        self.linear_k = Linear(dim, dim)
        self.linear_v = Linear(dim, dim)
        self.linear_o = Linear(dim, dim)
        self.relu = nn.ReLU()

    def _split_heads(self, x):
        b, t, c = x.shape
        return x.reshape(b, t, self.heads, c // self.heads).permute(0, 2, 1, 3)

    def execute(self, q, k, v):
        q = self._split_heads(self.relu(self.linear_q(q)))
        k = self._split_heads(self.relu(self.linear_k(k)))
        v = self._split_heads(self.relu(self.linear_v(v)))
        y = scaled_dot_product_attention(q, k, v, q.shape[-1] ** -0.5, self.precision)
        b, h, t, d = y.shape
        y = y.permute(0, 2, 1, 3).reshape(b, t, h * d)
        return self.relu(self.linear_o(y))
