"""BatchNorm with PyTorch's semantics (cten_jt.models.norm) against PyTorch's."""
import jittor as jt
import numpy as np
import pytest
import torch
from torch import nn as tl           # the reference's layers are PyTorch's own

from cten_jt.models import norm as jl
from helpers import MODULE_ATOL, assert_close, copy_torch_to_jittor

BN_CASES = [("BatchNorm1d", (6, 5)), ("BatchNorm1d", (3, 5, 4)),
            ("BatchNorm2d", (2, 5, 3, 4)), ("BatchNorm3d", (2, 5, 2, 3, 3))]


@pytest.mark.parametrize("cls,shape", BN_CASES)
def test_batchnorm_train_matches_torch_and_updates_unbiased_running_var(cls, shape):
    rng = np.random.default_rng(1)
    x = (rng.normal(3.0, 2.0, shape)).astype(np.float32)
    t_bn, j_bn = getattr(tl, cls)(5), getattr(jl, cls)(5)
    with torch.no_grad():
        t_bn.weight.uniform_(0.5, 1.5)
        t_bn.bias.uniform_(-1, 1)
        t_bn.running_mean.uniform_(-1, 1)
        t_bn.running_var.uniform_(0.5, 2)
    copy_torch_to_jittor(t_bn, j_bn)
    for step in range(2):
        t_out = t_bn.train()(torch.from_numpy(x + step))
        j_out = j_bn.train()(jt.array(x + step))
        assert_close(t_out, j_out, f"{cls} train output, step {step}", atol=MODULE_ATOL)
    t_state = {k: v.numpy() for k, v in t_bn.state_dict().items()}
    j_state = {k: v.numpy() for k, v in j_bn.state_dict().items()}
    assert_close(t_state, j_state, f"{cls} state after 2 steps", atol=MODULE_ATOL)
    # backward in train mode: input, weight and bias gradients for a random upstream gradient
    upstream = np.random.default_rng(5).normal(size=shape).astype(np.float32)
    x_t = torch.from_numpy(x).requires_grad_()
    t_grads = torch.autograd.grad((t_bn(x_t) * torch.from_numpy(upstream)).sum(),
                                  [x_t, t_bn.weight, t_bn.bias])
    x_j = jt.array(x)
    j_grads = jt.grad((j_bn(x_j) * jt.array(upstream)).sum(), [x_j, j_bn.weight, j_bn.bias])
    assert_close(list(t_grads), list(j_grads), f"{cls} train gradients (x, weight, bias)",
                 atol=MODULE_ATOL)
    # the trap itself: Jittor's own BatchNorm keeps the biased variance
    stock = jt.nn.BatchNorm(5)
    stock(jt.array(x))
    n = x.size // 5
    axes = tuple(i for i in range(x.ndim) if i != 1)
    biased = 0.9 + 0.1 * x.var(axis=axes)
    assert np.allclose(stock.running_var.numpy(), biased, atol=1e-5)
    assert not np.allclose(biased, 0.9 + 0.1 * x.var(axis=axes) * n / (n - 1), atol=1e-5)


@pytest.mark.parametrize("cls,shape", BN_CASES)
def test_batchnorm_eval_uses_running_statistics(cls, shape):
    rng = np.random.default_rng(2)
    x = rng.normal(0, 3, shape).astype(np.float32)
    t_bn, j_bn = getattr(tl, cls)(5), getattr(jl, cls)(5)
    with torch.no_grad():
        t_bn.running_mean.uniform_(-1, 1)
        t_bn.running_var.uniform_(0.5, 2)
        t_bn.weight.uniform_(0.5, 1.5)
    copy_torch_to_jittor(t_bn, j_bn)
    assert_close(t_bn.eval()(torch.from_numpy(x)), j_bn.eval()(jt.array(x)), cls, atol=MODULE_ATOL)


def test_batchnorm_rejects_single_value_per_channel_in_training():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        jl.BatchNorm1d(4).train()(jt.ones((1, 4)))


def test_batchnorm_without_a_graph_uses_fused_statistics_and_agrees():
    # under no_grad (CTEN's frozen 3D ResNet) the train-mode statistics come from one
    # fused float64 op (kernels.batchnorm.bn_stats); with a graph from float64 Jittor ops
    from cten_jt.kernels.batchnorm import bn_stats
    from cten_jt.models.norm import BatchNorm3d as JBN3
    x = (np.random.default_rng(5).standard_normal((3, 6, 2, 4, 4)) * 4 + 2).astype(np.float32)
    stats = bn_stats(jt.array(x)).numpy()
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(stats[0], x64.mean(axis=(0, 2, 3, 4)), rtol=1e-12)
    np.testing.assert_allclose(stats[1], x64.var(axis=(0, 2, 3, 4)), rtol=1e-12)
    outs = {}
    for grad in (False, True):
        bn = JBN3(6)
        bn.train()
        if grad:
            y = bn(jt.array(x))
        else:
            with jt.no_grad():
                y = bn(jt.array(x))
        outs[grad] = (y.numpy(), bn.running_mean.numpy(), bn.running_var.numpy())
    tbn = torch.nn.BatchNorm3d(6)
    ty = tbn(torch.from_numpy(x)).detach()
    for grad, (y, rm, rv) in outs.items():
        assert_close({"y": ty, "running_mean": tbn.running_mean, "running_var": tbn.running_var},
                      {"y": y, "running_mean": rm, "running_var": rv}, f"BatchNorm3d (graph={grad})",
                      atol=MODULE_ATOL)
