"""Intra-modal (non-local) and inter-modal (multi-head) attention of CTEN.

All attention goes through ``scaled_dot_product_attention``, the one place to
swap in a fused kernel.
"""
import torch
from torch import nn

from cten_common.config import ATTENTION_HEADS, NONLOCAL_INNER
from ..precision import widened
from .norm import BatchNorm1d


def scaled_dot_product_attention(query, key, value, scale):
    """``softmax(query @ key^T * scale) @ value`` over the last two dimensions.  Under
    autocast (``cten_torch_ref.precision``) the products run in low precision and
    the scores are widened to float32 first (a float64 twin stays float64): the scaling and the softmax in float32."""
    scores = widened(torch.matmul(query, key.transpose(-2, -1))) * scale
    return torch.matmul(torch.softmax(scores, dim=-1), value)


class NonLocalBlock(nn.Module):
    """Self-attention over the segments of one modality, with a zero-initialised residual gate."""

    def __init__(self, dim=2048, dim_inner=NONLOCAL_INNER):
        super().__init__()
        self.dim_inner = dim_inner
        self.theta = nn.Linear(dim, dim_inner)
        self.phi = nn.Linear(dim, dim_inner)
        self.g = nn.Linear(dim, dim_inner)
        self.out = nn.Linear(dim_inner, dim)
        self.bn = BatchNorm1d(dim)
        self.alpha = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        b, t, c = x.shape
        flat = x.reshape(b * t, c)
        theta = self.theta(flat).reshape(b, t, -1)
        phi = self.phi(flat).reshape(b, t, -1)
        g = self.g(flat).reshape(b, t, -1)
        z = scaled_dot_product_attention(theta, phi, g, self.dim_inner ** -0.5)
        out = self.bn(self.out(z.reshape(b * t, -1))).reshape(b, t, c)
        return out + self.alpha * x


class MultiHeadAttention(nn.Module):
    """Multi-head attention with a ReLU after each of the q, k, v and output projections."""

    def __init__(self, dim=2048, heads=ATTENTION_HEADS):
        super().__init__()
        self.heads = heads
        self.linear_q = nn.Linear(dim, dim)
        self.linear_k = nn.Linear(dim, dim)
        self.linear_v = nn.Linear(dim, dim)
        self.linear_o = nn.Linear(dim, dim)
        self.relu = nn.ReLU()

    def _split_heads(self, x):
        b, t, c = x.shape
        return x.reshape(b, t, self.heads, c // self.heads).permute(0, 2, 1, 3)

    def forward(self, q, k, v):
        q = self._split_heads(self.relu(self.linear_q(q)))
        k = self._split_heads(self.relu(self.linear_k(k)))
        v = self._split_heads(self.relu(self.linear_v(v)))
        y = scaled_dot_product_attention(q, k, v, q.shape[-1] ** -0.5)
        b, h, t, d = y.shape
        y = y.permute(0, 2, 1, 3).reshape(b, t, h * d)
        return self.relu(self.linear_o(y))
