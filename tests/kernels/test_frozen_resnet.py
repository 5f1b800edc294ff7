"""The frozen 3D ResNet as one oneDNN program (``cten_jt.kernels.frozen_resnet``) against
the float64 forward of its PyTorch twin, with the same weights and BatchNorm statistics.

Bounds are floors measured in the same test (docs/parity.md): in float32, the
larger distance from float64 of two float32 forwards (Jittor layer by layer,
PyTorch); in bfloat16, PyTorch autocast's distance from float64.

* float32: folding rounds each scaled weight ``w * gamma / sqrt(var + eps)``
  once more, an error of the size of the accumulation's own: twice the
  rounding points of the floor's forwards, times the FACTOR 4 of
  tests/test_precision.py (order-of-sums flips): FP32_FACTOR = 8.
* bfloat16: the program rounds where autocast does or less (its operands;
  inside a block the activations the next convolution would round anyway; the
  shortcut and residual sum in float32; the convolution's output is not rounded
  before the folded BatchNorm): BF16_FACTOR = 4, as in tests/test_precision.py.
"""
import jittor as jt
import numpy as np
import pytest
import torch

from cten_jt import switches
from cten_jt.kernels import conv as conv_ops
from cten_jt.kernels import frozen_resnet
from cten_jt.models import CTEN
from cten_jt.models.norm import set_train_mode
from cten_jt.models.resnet import visual_backbone
from cten_jt.precision import set_precision
from cten_torch_ref.models import CTEN as TCTEN
from cten_torch_ref.models.resnet import visual_backbone as torch_visual_backbone
from helpers import TINY_VISUAL, copy_torch_to_jittor, random_inputs

pytestmark = pytest.mark.skipif(not conv_ops.available() or jt.flags.use_cuda,
                                reason="the program runs on the CPU with the system oneDNN")

FP32_FACTOR = 2 * 4      # the module docstring: twice the roundings, times test_precision's 4
BF16_FACTOR = 4
# depth, snippet length, size, batch: basic blocks; bottlenecks; an odd batch (the
# first convolution's stacked copy one sample at a time in bf16)
CASES = [(10, 8, 32, 2), (50, 8, 32, 2), (18, 4, 48, 3)]


def _twins(depth, length, size, seed=0):
    """A PyTorch backbone with random BatchNorm statistics and affine terms, and its Jittor twin
    (eval mode, frozen)."""
    torch.manual_seed(seed)
    t = torch_visual_backbone(depth, length, size)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for m in t.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.from_numpy(rng.normal(0, 0.1, c).astype(np.float32)))
                m.running_var.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, c).astype(np.float32)))
                m.weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.0, c).astype(np.float32)))
                m.bias.copy_(torch.from_numpy(rng.normal(0, 0.1, c).astype(np.float32)))
    t.eval()
    j = visual_backbone(depth, length, size)
    copy_torch_to_jittor(t, j)
    for p in j.parameters():
        p.stop_grad()
    set_train_mode(j, False)
    return t, j


def _input(batch, length, size, seed=1):
    return np.random.default_rng(seed).uniform(-0.4, 0.6, (batch, 3, length, size, size)).astype(np.float32)


def _dist(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def _layer_by_layer(j, x):
    with switches.kernels("composed"):          # the program is off: every layer on its own
        assert not frozen_resnet.usable(j, x, "fp32")
        return j(x).numpy()


def _float32_floor(t, j, x, jx):
    """The larger distance from float64 of two float32 forwards: Jittor layer by layer, PyTorch."""
    with torch.no_grad():
        exact = t.double()(torch.from_numpy(x).double()).numpy()
        torch_fp32 = t.float()(torch.from_numpy(x)).numpy()
    return exact, max(_dist(_layer_by_layer(j, jx), exact), _dist(torch_fp32, exact))


def _assert_within_float32_floor(fused, exact, floor, where):
    d = _dist(fused, exact)
    assert fused.shape == exact.shape, where
    assert floor > 0, f"{where}: the float32 floor is zero (the reference is not float64?)"
    assert d <= FP32_FACTOR * floor, (f"{where}: {d:.3e} from float64, more than {FP32_FACTOR} x the float32 "
                                 f"forwards' {floor:.3e}")


@pytest.mark.parametrize("depth,length,size,batch", CASES)
def test_fp32_program_within_the_float32_floor(depth, length, size, batch):
    t, j = _twins(depth, length, size)
    x = _input(batch, length, size)
    jx = jt.array(x)
    assert frozen_resnet.usable(j, jx, "fp32")
    fused = frozen_resnet.frozen_backbone(j, jx, "fp32").numpy()
    exact, floor = _float32_floor(t, j, x, jx)
    _assert_within_float32_floor(fused, exact, floor, f"R3D-{depth} {list(x.shape)}: the fp32 program")


@pytest.mark.parametrize("depth,length,size,batch", CASES)
def test_bf16_program_within_the_autocast_floor(depth, length, size, batch):
    if not frozen_resnet.native_bf16():
        pytest.skip("this CPU's oneDNN has no bfloat16 convolution: the program runs in fp32 only")
    t, j = _twins(depth, length, size)
    x = _input(batch, length, size)
    with torch.no_grad():
        exact = t.double()(torch.from_numpy(x).double()).numpy()
        t.float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = t(torch.from_numpy(x)).float().numpy()
    set_precision(j, "bf16")
    jx = jt.array(x)
    assert frozen_resnet.usable(j, jx, "bf16") and not frozen_resnet.usable(j, jx, "fp32")
    fused = frozen_resnet.frozen_backbone(j, jx, "bf16").numpy()
    floor = _dist(autocast, exact)
    d = _dist(fused, exact)
    assert floor > 1e-4, f"autocast's distance from float64 {floor:.3e} is not a bfloat16-sized floor"
    assert d <= BF16_FACTOR * floor, (f"R3D-{depth} {list(x.shape)}: the bf16 program is {d:.3e} from float64, "
                                      f"more than {BF16_FACTOR} x PyTorch autocast's {floor:.3e}")


def test_the_program_is_kept_and_rebuilt_when_a_statistic_changes():
    t, j = _twins(10, 8, 32)
    x = _input(2, 8, 32)
    jx = jt.array(x)
    first = frozen_resnet.frozen_backbone(j, jx).numpy()
    program = j.__dict__["_frozen_program"][1]
    again = frozen_resnet.frozen_backbone(j, jx).numpy()
    assert j.__dict__["_frozen_program"][1] is program, "the same weights rebuilt the program"
    np.testing.assert_array_equal(again, first)
    with torch.no_grad():
        t[1].running_mean += 0.5
    j[1].running_mean.update(j[1].running_mean + 0.5)        # a new statistic: a new program
    changed = frozen_resnet.frozen_backbone(j, jx).numpy()
    assert j.__dict__["_frozen_program"][1] is not program
    assert _dist(changed, first) > 0, "the changed statistic did not reach the output"
    exact, floor = _float32_floor(t, j, x, jx)
    _assert_within_float32_floor(changed, exact, floor, "the rebuilt program")
    conv_ops.release_weight_caches(j)
    assert "_frozen_program" not in j.__dict__


def test_the_layer_by_layer_forward_stays_where_the_program_does_not_apply():
    t, j = _twins(10, 8, 32)
    jx = jt.array(_input(2, 8, 32))
    assert frozen_resnet.usable(j, jx, "fp32")
    set_train_mode(j, True)                     # batch statistics: not an affine map
    assert not frozen_resnet.usable(j, jx, "fp32")
    set_train_mode(j, False)
    assert not frozen_resnet.usable(j, jx.float64(), "fp32")
    assert not frozen_resnet.usable(j, jx, "fp16")
    set_precision(j[0], "bf16")                 # layers of mixed precisions
    assert not frozen_resnet.usable(j, jx, "fp32")
    set_precision(j[0], "fp32")
    j[0].weight.start_grad()                    # a weight that learns
    assert not frozen_resnet.usable(j, jx, "fp32")


def test_cten_runs_its_backbone_as_one_program_in_eval_mode_only():
    t_model = TCTEN(init_seed=0, dropout=0.0, **TINY_VISUAL)
    model = CTEN(init_seed=0, dropout=0.0, **TINY_VISUAL)
    copy_torch_to_jittor(t_model, model)
    visual, _ = random_inputs(TINY_VISUAL, 2)
    model.train()
    with jt.no_grad():
        model(jt.array(visual))[0].sync()
    assert "_frozen_program" not in model.resnet.__dict__, "train mode ran the program"
    copy_torch_to_jittor(t_model, model)        # train mode moved the running statistics: back
    model.eval()
    with jt.no_grad():
        fused = model(jt.array(visual))[0].numpy()
    assert "_frozen_program" in model.resnet.__dict__, "eval mode did not run the program"
    with switches.kernels("composed"), jt.no_grad():
        reference = model(jt.array(visual))[0].numpy()
    with torch.no_grad():
        exact = t_model.double().eval()(torch.from_numpy(visual).double())[0].numpy()
        torch_fp32 = t_model.float()(torch.from_numpy(visual))[0].numpy()
    floor = max(_dist(reference, exact), _dist(torch_fp32, exact))
    _assert_within_float32_floor(fused, exact, floor, "CTEN's logits through the program")
