"""Non-local block, multi-head attention and the shared attention function."""
import jittor as jt
import numpy as np
import pytest
import torch

from cten_jt.models import attention as ja
from cten_torch_ref.models import attention as ta
from helpers import MODULE_ATOL, assert_close, copy_torch_to_jittor


def test_scaled_dot_product_attention():
    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(size=(2, 3, 5, 16)).astype(np.float32) for _ in range(3))
    t = ta.scaled_dot_product_attention(*map(torch.from_numpy, (q, k, v)), 0.25)
    j = ja.scaled_dot_product_attention(*map(jt.array, (q, k, v)), 0.25)
    assert_close(t, j, "attention", atol=MODULE_ATOL)
    # rows of the attention weights sum to one: output of constant values is that constant
    const = np.full_like(v, 2.5)
    out = ja.scaled_dot_product_attention(jt.array(q), jt.array(k), jt.array(const), 0.25)
    assert np.allclose(out.numpy(), 2.5, atol=1e-6)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_nonlocal_block(mode):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 4, 64)).astype(np.float32)
    t_nl = ta.NonLocalBlock(64, 16)
    j_nl = ja.NonLocalBlock(64, 16)
    with torch.no_grad():
        t_nl.alpha.fill_(0.7)       # exercise the residual gate, 0 at initialisation
        t_nl.bn.running_var.uniform_(0.5, 2)
    copy_torch_to_jittor(t_nl, j_nl)
    getattr(t_nl, mode)()
    getattr(j_nl, mode)()
    assert_close(t_nl(torch.from_numpy(x)), j_nl(jt.array(x)), f"NonLocalBlock {mode}", atol=MODULE_ATOL)
    if mode == "train":
        assert_close(t_nl.bn.running_var, j_nl.bn.running_var, "NonLocalBlock bn.running_var",
                     atol=MODULE_ATOL)


def test_multi_head_attention_cross_modal():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(2, 4, 64)).astype(np.float32)
    v = rng.normal(size=(2, 4, 64)).astype(np.float32)
    t_m, j_m = ta.MultiHeadAttention(64, 8), ja.MultiHeadAttention(64, 8)
    copy_torch_to_jittor(t_m, j_m)
    t_out = t_m(*map(torch.from_numpy, (a, v, v)))
    j_out = j_m(*map(jt.array, (a, v, v)))
    assert_close(t_out, j_out, "MultiHeadAttention(q=a, k=v, v=v)", atol=MODULE_ATOL)
    assert t_out.shape == (2, 4, 64)
