"""The 3D (visual) and 2D (audio) ResNet backbones, block by block and whole."""
import jittor as jt
import numpy as np
import pytest
import torch

from cten_jt.models import resnet as jr
from cten_torch_ref.models import resnet as tr
from helpers import MODEL_RTOL, MODULE_ATOL, assert_close, copy_torch_to_jittor


def _randomise_bn(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)


def _compare(t_mod, j_mod, x, name, modes=("eval", "train"), whole_network=False):
    """Eval mode within the module tolerance.  In train mode every BatchNorm
    divides by a batch standard deviation, which scales the fp32 rounding of
    the convolution before it by 1/std, layer after layer: a whole backbone is
    held to the whole-model tolerance (relative to its output scale), a stage
    to the module tolerance."""
    _randomise_bn(t_mod)
    copy_torch_to_jittor(t_mod, j_mod)
    for mode in modes:
        getattr(t_mod, mode)()
        getattr(j_mod, mode)()
        with torch.no_grad():
            t_out = t_mod(torch.from_numpy(x))
        tol = dict(rtol_scale=MODEL_RTOL) if whole_network and mode == "train" else dict(atol=MODULE_ATOL)
        assert_close(t_out, j_mod(jt.array(x)), f"{name} ({mode})", **tol)
    t_state = {k: v.numpy() for k, v in t_mod.state_dict().items()}
    j_state = {k: v.numpy() for k, v in j_mod.state_dict().items()}
    tol = dict(rtol_scale=MODEL_RTOL) if whole_network else dict(atol=MODULE_ATOL)
    assert_close(t_state, j_state, f"{name} state after train", **tol)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_stage_with_downsample(ndim, block):
    shape = (2, 8, 6, 6) if ndim == 2 else (2, 8, 4, 6, 6)
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    args = (ndim, tr.BLOCKS[block], 8, 4, 2, 2)
    _compare(tr.make_layer(*args), jr.make_layer(ndim, jr.BLOCKS[block], 8, 4, 2, 2), x,
             f"{block} {ndim}D stage")


def test_visual_backbone_depth10():
    # 8 snippets: layer4's BatchNorm normalises 8 values per channel (CTEN's B*T); over
    # only 2 values BatchNorm is ill-conditioned and amplifies rounding without bound
    x = np.random.default_rng(1).uniform(-0.4, 0.6, (8, 3, 8, 32, 32)).astype(np.float32)
    _compare(tr.visual_backbone(10, 8, 32), jr.visual_backbone(10, 8, 32), x, "3D ResNet-10",
             whole_network=True)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_audio_backbone(arch):
    x = np.random.default_rng(2).normal(size=(8, 1, 100, 128)).astype(np.float32)
    modes = ("eval", "train") if arch == "resnet18" else ("eval",)
    _compare(tr.audio_backbone(arch), jr.audio_backbone(arch), x, f"audio {arch}", modes,
             whole_network=True)
