"""The frozen 3D ResNet as one oneDNN program (``cten_jt.kernels.frozen_resnet``) against
the float64 forward of its PyTorch twin, with the same weights and BatchNorm statistics.

Bounds are floors measured in the same test (docs/parity.md): in float32, the
largest distance from float64 of three float32 forwards (Jittor layer by layer,
PyTorch, and PyTorch on the folded network); in bfloat16, PyTorch autocast's
distance from float64.

* float32: the program is a float32 forward of the folded network (each
  BatchNorm's scale in the weights, its shift in the bias, both rounded once
  from float64), whose own rounding is the third floor: a folded network's
  float32 forward lies ~3x further from float64 than the unfolded one's (the
  bias enters every accumulation); the program adds each folded bias to the
  finished sum, as PyTorch does (given to oneDNN 2.6's jit kernels as the bias
  argument, they start each sum with it, and on AVX-512 the program lay 2-4x further
  from float64); it sums in other orders than PyTorch: the FACTOR 4 of
  tests/test_precision.py.
* bfloat16: the program rounds where autocast does or less (its operands;
  inside a block the activations the next convolution would round anyway; the
  shortcut and residual sum in float32; the convolution's output is not rounded
  before the folded BatchNorm): BF16_FACTOR = 4, as in tests/test_precision.py.
* train mode (batch statistics; nothing is folded): the program does the
  layer-by-layer forward's arithmetic, the statistics in double summed in the
  same order, with other orders of the convolutions' sums and a possible fused
  multiply-add in ``x * alpha + beta``: test_precision's FACTOR 4 on the output
  and on the updated running averages, in both precisions.
"""
import copy

import jittor as jt
import numpy as np
import pytest
import torch

from cten_jt import switches
from cten_jt.kernels import conv as conv_ops
from cten_jt.kernels import frozen_resnet
from cten_jt.models import CTEN
from cten_jt.models.conv import Conv3d
from cten_jt.models.norm import set_train_mode
from cten_jt.models.resnet import visual_backbone
from cten_jt.precision import set_precision
from cten_torch_ref.models import CTEN as TCTEN
from cten_torch_ref.models.resnet import visual_backbone as torch_visual_backbone
from helpers import TINY_VISUAL, copy_torch_to_jittor, random_inputs

pytestmark = pytest.mark.skipif(not conv_ops.available() or jt.flags.use_cuda,
                                reason="the program runs on the CPU with the system oneDNN")

FP32_FACTOR = 4          # the module docstring: the folded network's own floor, times test_precision's 4
BF16_FACTOR = 4
# depth, snippet length, size, batch: basic blocks; bottlenecks; an odd batch (the
# first convolution's stacked copy one sample at a time in bf16)
CASES = [(10, 8, 32, 2), (50, 8, 32, 2), (18, 4, 48, 3)]
# every case in the layout oneDNN chooses here; the bottleneck case (1x1, 3x3x3, strided
# shortcuts) in each layout forced, whatever this CPU would choose: every branch on every CPU
FORCED = [name for name in frozen_resnet.LAYOUT_CODES]
LAYOUT_CASES = [("auto",) + case for case in CASES] + [(name,) + CASES[1] for name in FORCED]


@pytest.fixture
def in_layout(request):
    """Run the test with the program's layout forced (``auto``: oneDNN's choice here)."""
    def use(name):
        if name == "auto" and frozen_resnet.chosen_layout("fp32") is None:
            pytest.skip("oneDNN chooses none of the program's layouts on this CPU: layer by layer")
        context = switches.frozen_layout_forced(name)
        context.__enter__()
        request.addfinalizer(lambda: context.__exit__(None, None, None))
    return use


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


def _skip_without_a_bf16_program():
    if not frozen_resnet.native_bf16():
        pytest.skip("this CPU's oneDNN has no bfloat16 convolution: the program runs in fp32 only")
    if frozen_resnet.layout("bf16") is None:
        pytest.skip("oneDNN picks none of the program's bfloat16 layouts here: bf16 runs layer by layer")


def _input(batch, length, size, seed=1):
    return np.random.default_rng(seed).uniform(-0.4, 0.6, (batch, 3, length, size, size)).astype(np.float32)


def _dist(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def _layer_by_layer(j, x):
    with switches.kernels("composed"):          # the program is off: every layer on its own
        assert not frozen_resnet.usable(j, x, "fp32")
        return j(x).numpy()


def _folded(t):
    """A float32 copy of the eval-mode PyTorch backbone ``t`` with every BatchNorm folded into
    the convolution before it (frozen_resnet.fold) and made the identity."""
    t = copy.deepcopy(t).float()
    convs = [m for m in t.modules() if isinstance(m, torch.nn.Conv3d)]
    norms = _torch_norms(t)
    assert len(convs) == len(norms)
    with torch.no_grad():
        for conv, bn in zip(convs, norms):
            w, b = frozen_resnet.fold(conv.weight.numpy(), None if conv.bias is None else conv.bias.numpy(),
                                      bn.weight.numpy(), bn.bias.numpy(), bn.running_mean.numpy(),
                                      bn.running_var.numpy(), bn.eps)
            conv.weight.copy_(torch.from_numpy(w))
            conv.bias = torch.nn.Parameter(torch.from_numpy(b))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0)
            bn.weight.fill_(1.0)
            bn.bias.zero_()
            bn.eps = 0.0
    return t


def _float32_floor(t, j, x, jx):
    """The largest distance from float64 of three float32 forwards: Jittor layer by layer,
    PyTorch, PyTorch on the folded network."""
    with torch.no_grad():
        exact = t.double()(torch.from_numpy(x).double()).numpy()
        torch_fp32 = t.float()(torch.from_numpy(x)).numpy()
        folded = _folded(t)(torch.from_numpy(x)).numpy()
    return exact, max(_dist(_layer_by_layer(j, jx), exact), _dist(torch_fp32, exact), _dist(folded, exact))


def _assert_within(where, got, exact, floor, factor):
    """``got`` within ``factor`` x ``floor`` of the float64 ``exact`` (maximum absolute
    difference); a zero floor means the reference was not float64."""
    assert got.shape == exact.shape, f"{where}: shape {got.shape}, float64's {exact.shape}"
    assert floor > 0, f"{where}: the floor is zero (the reference is not float64?)"
    d = _dist(got, exact)
    assert d <= factor * floor, f"{where}: {d:.3e} from float64, more than {factor} x the floor {floor:.3e}"


@pytest.mark.parametrize("layout,depth,length,size,batch", LAYOUT_CASES)
def test_fp32_program_within_the_float32_floor(in_layout, layout, depth, length, size, batch):
    in_layout(layout)
    t, j = _twins(depth, length, size)
    x = _input(batch, length, size)
    jx = jt.array(x)
    assert frozen_resnet.usable(j, jx, "fp32")
    fused = frozen_resnet.frozen_backbone(j, jx, "fp32").numpy()
    exact, floor = _float32_floor(t, j, x, jx)
    _assert_within(f"R3D-{depth} {list(x.shape)}: the fp32 program ({frozen_resnet.layout()})", fused, exact, floor,
                   FP32_FACTOR)


@pytest.mark.parametrize("layout,depth,length,size,batch", LAYOUT_CASES)
def test_bf16_program_within_the_autocast_floor(in_layout, layout, depth, length, size, batch):
    in_layout(layout)
    _skip_without_a_bf16_program()
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
    assert d <= BF16_FACTOR * floor, (f"R3D-{depth} {list(x.shape)}: the bf16 program ({frozen_resnet.layout('bf16')}) "
                                      f"is {d:.3e} from float64, "
                                      f"more than {BF16_FACTOR} x PyTorch autocast's {floor:.3e}")


def test_the_program_reads_the_weights_and_statistics_at_each_call():
    """The program holds instructions only (no copy of the weights): a new statistic or
    weight reaches the next call's output through the same program."""
    t, j = _twins(10, 8, 32)
    x = _input(2, 8, 32)
    jx = jt.array(x)
    first = frozen_resnet.frozen_backbone(j, jx).numpy()
    program = j.__dict__["_frozen_program"][1]
    held = [v for v in vars(program).values() if isinstance(v, jt.Var)]
    assert held == [program.prog] and program.arena.dtype == np.uint8 and program.plan.dtype == np.int64, \
        "the program holds arrays beside its instructions, its buffer plan and its arena"
    again = frozen_resnet.frozen_backbone(j, jx).numpy()      # the first call recorded, this one planned
    np.testing.assert_array_equal(again, first)
    with torch.no_grad():
        t[1].running_mean += 0.5
        t[0].weight *= 1.25
    j[1].running_mean.update(j[1].running_mean + 0.5)
    j[0].weight.update(j[0].weight * 1.25)
    changed = frozen_resnet.frozen_backbone(j, jx).numpy()
    assert j.__dict__["_frozen_program"][1] is program, "new arrays made a new program"
    assert _dist(changed, first) > 0, "the changed statistic and weight did not reach the output"
    exact, floor = _float32_floor(t, j, x, jx)
    _assert_within("the program after new arrays", changed, exact, floor, FP32_FACTOR)
    frozen_resnet.frozen_backbone(j, jt.array(_input(3, 8, 32))).sync()
    assert j.__dict__["_frozen_program"][1] is not program, "another batch ran the old instructions"
    conv_ops.release_weight_caches(j)
    assert "_frozen_program" not in j.__dict__
    # made again (as each training step does), the program places its buffers from its first call
    remade = frozen_resnet.FrozenProgram(j, jx.shape, "fp32")
    assert remade.plan is not None and np.array_equal(remade.plan, program.plan), "the plan was not kept"
    np.testing.assert_array_equal(list(j)[8](remade(jx)).numpy(), changed)


def test_the_programs_fold_is_numpys_bit_for_bit():
    """The program folds each BatchNorm as it runs (csrc fold_channel) with the arithmetic
    of ``frozen_resnet.fold``: exact by construction (float64, each operation rounded once,
    no contraction), so equal bit for bit, over variances from tiny to large."""
    rng = np.random.default_rng(3)
    o = 64
    weight = rng.normal(0, 0.05, (o, 16, 3, 3, 3)).astype(np.float32)
    gamma = rng.normal(1, 0.3, o).astype(np.float32)
    beta = rng.normal(0, 0.3, o).astype(np.float32)
    mean = rng.normal(0, 2, o).astype(np.float32)
    var = np.exp(rng.uniform(-12, 6, o)).astype(np.float32)
    for eps in (1e-5, 1e-3):
        want_w, want_b = frozen_resnet.fold(weight, None, gamma, beta, mean, var, eps)
        got_w, got_b = frozen_resnet.folded_by_program(weight, gamma, beta, mean, var, eps)
        np.testing.assert_array_equal(got_w, want_w, err_msg=f"folded weights, eps {eps}")
        np.testing.assert_array_equal(got_b, want_b, err_msg=f"folded bias, eps {eps}")


def test_the_layer_by_layer_forward_stays_where_the_program_does_not_apply():
    t, j = _twins(10, 8, 32)
    jx = jt.array(_input(2, 8, 32))
    assert frozen_resnet.usable(j, jx, "fp32")
    set_train_mode(j, True)                     # batch statistics: not an affine map
    assert frozen_resnet.usable(j, jx, "fp32")     # train mode has its program too
    set_train_mode(j[1], False)                 # BatchNorms of mixed modes
    assert not frozen_resnet.usable(j, jx, "fp32")
    set_train_mode(j, True)
    j[1].momentum = 0.2                         # train mode: one momentum for all
    assert not frozen_resnet.usable(j, jx, "fp32")
    j[1].momentum = 0.1
    set_train_mode(j, False)
    assert not frozen_resnet.usable(j, jx.float64(), "fp32")
    assert not frozen_resnet.usable(j, jx, "fp16")
    set_precision(j[0], "bf16")                 # layers of mixed precisions
    assert not frozen_resnet.usable(j, jx, "fp32")
    set_precision(j[0], "fp32")
    j[0].weight.start_grad()                    # a weight that learns
    assert not frozen_resnet.usable(j, jx, "fp32")
    j[0].weight.stop_grad()
    assert frozen_resnet.usable(j, jx, "fp32")
    j[0].weight.update(j[0].weight.float64())   # the program reads float32 weights
    assert not frozen_resnet.usable(j, jx, "fp32")


def test_cten_runs_its_backbone_as_one_program_in_eval_mode():
    t_model = TCTEN(init_seed=0, dropout=0.0, **TINY_VISUAL)
    model = CTEN(init_seed=0, dropout=0.0, **TINY_VISUAL)
    copy_torch_to_jittor(t_model, model)
    visual, _ = random_inputs(TINY_VISUAL, 2)
    model.eval()
    with jt.no_grad():
        fused = model(jt.array(visual))[0].numpy()
    assert "_frozen_program" in model.resnet.__dict__, "eval mode did not run the program"
    with switches.kernels("composed"), jt.no_grad():
        reference = model(jt.array(visual))[0].numpy()
    with torch.no_grad():
        exact = t_model.double().eval()(torch.from_numpy(visual).double())[0].numpy()
        torch_fp32 = t_model.float()(torch.from_numpy(visual))[0].numpy()
        t_folded = copy.deepcopy(t_model)
        t_folded.resnet = _folded(t_model.resnet)
        folded = t_folded.eval()(torch.from_numpy(visual))[0].numpy()
    floor = max(_dist(reference, exact), _dist(torch_fp32, exact), _dist(folded, exact))
    _assert_within("CTEN's logits through the program", fused, exact, floor, FP32_FACTOR)


# ---- train mode: the batch's statistics, the running averages updated ----------------------------

TRAIN_FACTOR = 4


def _train_twins(depth, length, size):
    t, j = _twins(depth, length, size)
    t.train()
    set_train_mode(j, True)
    return t, j


def _torch_norms(t):
    return [m for m in t.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def _torch_train(t, x, double=False, autocast=False):
    """A train-mode forward of a copy of ``t``: (output, running means, running variances)."""
    t = copy.deepcopy(t)
    t.double() if double else t.float()
    with torch.no_grad():
        xt = torch.from_numpy(x).double() if double else torch.from_numpy(x)
        if autocast:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = t(xt).float()
        else:
            y = t(xt)
    norms = _torch_norms(t)
    return (y.numpy(), np.concatenate([m.running_mean.numpy() for m in norms]),
            np.concatenate([m.running_var.numpy() for m in norms]))


def _jittor_train(j, jx, precision, composed=False):
    if composed:
        with switches.kernels("composed"):
            assert not frozen_resnet.usable(j, jx, precision)
            y = j(jx).numpy()
    else:
        assert frozen_resnet.usable(j, jx, precision)
        y = frozen_resnet.frozen_backbone(j, jx, precision).numpy()
    norms = frozen_resnet._norms(j)
    return (y, np.concatenate([m.running_mean.numpy() for m in norms]),
            np.concatenate([m.running_var.numpy() for m in norms]))


def _assert_train_within(got, exact, floors, where):
    """``got``, ``exact``, ``floors``: (output, running means[, running variances])."""
    for name, g, e, f in zip(("output", "running mean", "running variance"), got, exact, floors):
        _assert_within(f"{where}, {name}", g, e, f, TRAIN_FACTOR)


@pytest.mark.parametrize("layout,depth,length,size,batch", LAYOUT_CASES)
def test_fp32_train_program_within_the_float32_floor(in_layout, layout, depth, length, size, batch):
    in_layout(layout)
    t, j = _train_twins(depth, length, size)
    x = _input(batch, length, size)
    exact = _torch_train(t, x, double=True)
    torch_fp32 = _torch_train(t, x)
    layered = _jittor_train(j, jt.array(x), "fp32", composed=True)
    _, j = _train_twins(depth, length, size)             # the running averages as they were
    fused = _jittor_train(j, jt.array(x), "fp32")
    assert j.__dict__["_frozen_program"][0][3] is True, "the train-mode program did not run"
    floors = [max(_dist(a, e), _dist(b, e)) for a, b, e in zip(layered, torch_fp32, exact)]
    _assert_train_within(fused, exact, floors, f"R3D-{depth} {list(x.shape)}: the fp32 train program "
                                               f"({frozen_resnet.layout()})")
    assert all(int(m.num_batches_tracked.numpy()[0]) == 1 for m in frozen_resnet._norms(j))


@pytest.mark.parametrize("layout,depth,length,size,batch", LAYOUT_CASES)
def test_bf16_train_program_within_the_autocast_floor(in_layout, layout, depth, length, size, batch):
    in_layout(layout)
    _skip_without_a_bf16_program()
    t, j = _train_twins(depth, length, size)
    x = _input(batch, length, size)
    exact = _torch_train(t, x, double=True)
    autocast = _torch_train(t, x, autocast=True)
    set_precision(j, "bf16")
    fused = _jittor_train(j, jt.array(x), "bf16")
    floors = [_dist(a, e) for a, e in zip(autocast, exact)]
    assert floors[0] > 1e-4, f"autocast's distance from float64 {floors[0]:.3e} is not a bfloat16-sized floor"
    _assert_train_within(fused, exact, floors, f"R3D-{depth} {list(x.shape)}: the bf16 train program")


def test_train_program_updates_as_many_times_as_forwards_and_keeps_its_weights():
    """Two forwards in a row: the second reads the first's running averages, through the
    same program (it reads the BatchNorms' arrays at each call)."""
    t, j = _train_twins(10, 8, 32)
    x = _input(2, 8, 32)
    jx = jt.array(x)
    y1 = frozen_resnet.frozen_backbone(j, jx).numpy()     # recorded its buffers' plan
    program = j.__dict__["_frozen_program"][1]
    y2 = frozen_resnet.frozen_backbone(j, jx).numpy()     # its buffers in the arena
    assert j.__dict__["_frozen_program"][1] is program, "new running averages rebuilt the program"
    # the batch's statistics, not the running averages, normalise: the same arithmetic on
    # the same numbers, wherever its buffers are
    np.testing.assert_array_equal(y2, y1, err_msg="the planned call differs from the recorded one")
    tt = copy.deepcopy(t).double()
    with torch.no_grad():
        tt(torch.from_numpy(x).double())
        exact = tt(torch.from_numpy(x).double()).numpy()
    tf = copy.deepcopy(t)
    with torch.no_grad():
        tf(torch.from_numpy(x))
        torch_fp32 = tf(torch.from_numpy(x)).numpy()
    means = np.concatenate([m.running_mean.numpy() for m in _torch_norms(tt)])
    floor_mean = _dist(np.concatenate([m.running_mean.numpy() for m in _torch_norms(tf)]), means)
    got_mean = np.concatenate([m.running_mean.numpy() for m in frozen_resnet._norms(j)])
    _assert_train_within([y2, got_mean], [exact, means], [_dist(torch_fp32, exact), floor_mean],
                         "the second of two train-mode forwards")
    assert all(int(m.num_batches_tracked.numpy()[0]) == 2 for m in frozen_resnet._norms(j))


def test_cten_runs_its_backbone_as_one_program_in_train_mode():
    t_model = TCTEN(init_seed=0, dropout=0.0, **TINY_VISUAL)
    model = CTEN(init_seed=0, dropout=0.0, **TINY_VISUAL)
    copy_torch_to_jittor(t_model, model)
    visual, _ = random_inputs(TINY_VISUAL, 2)
    model.train()
    with jt.no_grad():
        fused = model(jt.array(visual))[0].numpy()
    assert model.resnet.__dict__["_frozen_program"][0][3] is True, "train mode did not run the program"
    fused_means = np.concatenate([m.running_mean.numpy() for m in frozen_resnet._norms(model.resnet)])
    copy_torch_to_jittor(t_model, model)        # the running averages as they were
    with switches.kernels("composed"), jt.no_grad():
        reference = model(jt.array(visual))[0].numpy()
    t64 = copy.deepcopy(t_model).double().train()
    t32 = copy.deepcopy(t_model).float().train()
    with torch.no_grad():
        exact = t64(torch.from_numpy(visual).double())[0].numpy()
        torch_fp32 = t32(torch.from_numpy(visual))[0].numpy()
    floor = max(_dist(reference, exact), _dist(torch_fp32, exact))
    exact_means = np.concatenate([m.running_mean.numpy() for m in _torch_norms(t64.resnet)])
    floor_means = _dist(np.concatenate([m.running_mean.numpy() for m in _torch_norms(t32.resnet)]), exact_means)
    _assert_train_within([fused, fused_means], [exact, exact_means], [floor, floor_means],
                         "CTEN's train-mode forward through the program (logits, the backbone's running means)")


# ---- the train-mode BatchNorm on the blocked layout, alone (any CPU: no bf16 convolution needed) ---

def _bf16_bits(a):
    """float32 values that are bfloat16 numbers -> their 16-bit patterns."""
    return (np.asarray(a, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def _from_bf16(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _blocked(a, layout):
    """[N, C, S] -> oneDNN's nCdhw<layout>c order [N, C/layout, S, layout], or channels last
    (layout 1, ndhwc) [N, S, C]."""
    n, c, s = a.shape
    if layout == 1:
        return np.ascontiguousarray(a.transpose(0, 2, 1))
    return np.ascontiguousarray(a.reshape(n, c // layout, layout, s).transpose(0, 1, 3, 2))


def _plain(a, shape, layout):
    n, c, s = shape
    if layout == 1:
        return a.reshape(n, s, c).transpose(0, 2, 1)
    return a.reshape(n, c // layout, s, layout).transpose(0, 1, 3, 2).reshape(n, c, s)


@pytest.mark.parametrize("block,c", [(8, 32), (16, 32), (1, 32), (1, 40)])
@pytest.mark.parametrize("in_bf16,out_bf16,add,relu", [(False, False, False, True), (False, False, True, True),
                                                       (True, True, False, True), (True, False, True, True),
                                                       (True, False, False, False)])
def test_train_batchnorm_on_the_blocked_layout(in_bf16, out_bf16, add, relu, block, c):
    """``bn_train_blocked`` (csrc/frozen_resnet_dnnl.h), in blocks of 8 (AVX2) and 16 channels
    (AVX-512) and channels last (block 1: ndhwc, in groups of 16, or of 8 for 40 channels),
    against numpy: the statistics and
    running averages of cten_bn_finish_channel, then ``x * alpha + beta [+ y] [relu]``.

    Bounds from the arithmetic (u = 2^-24, float32's unit roundoff): the statistics are
    doubles rounded once to float32, from sums in another order than numpy's (relative
    error ~1e-16, far under float32's): one float32 rounding, 2u relative; the running
    averages two float32 products and a sum of rounded terms: 4u relative.  The output
    differs from numpy's two-rounding ``x * alpha + beta`` by at most one rounding of the
    product (a fused multiply-add) and the alpha/beta inputs' own, |x alpha| 4u + |beta| 2u;
    a bfloat16 output adds one bfloat16 rounding, 2^-8 |y|."""
    rng = np.random.default_rng(3)
    n, s = 3, 50
    x = rng.normal(0.7, 2.0, (n, c, s)).astype(np.float32)
    if in_bf16:
        x = _from_bf16(_bf16_bits(x))                    # bfloat16 numbers (truncated)
    shortcut = rng.normal(0, 1, (n, c, s)).astype(np.float32)
    gamma, beta = rng.uniform(0.5, 1.5, c).astype(np.float32), rng.normal(0, 0.2, c).astype(np.float32)
    rm, rv = rng.normal(0, 0.1, c).astype(np.float32), rng.uniform(0.5, 1.5, c).astype(np.float32)
    momentum, eps, updates = 0.1, 1e-5, 2
    xb = _blocked(x, block)
    x_in = jt.array(_bf16_bits(xb)) if in_bf16 else jt.array(xb)
    y0 = jt.array(_blocked(shortcut, block)) if add else jt.zeros((n * c * s,), "float32")
    tin, tout = ("uint16_t" if in_bf16 else "float"), ("uint16_t" if out_bf16 else "float")
    out_type = "uint16" if out_bf16 else "float32"
    y, stats = frozen_resnet._code(
        [(n * c * s,), (4, c)], [out_type, "float32"],
        [x_in, y0, jt.array(gamma), jt.array(beta), jt.array(rm), jt.array(rv)],
        f"if ({int(add)}) std::memcpy(out0_p, in1_p, in1->size); cten_frozen::Norms tn{{in2_p, in3_p, in4_p, in5_p, out1_p, "
        f"{c}, {momentum}, {eps}, {updates}}}; cten_frozen::bn_train_blocked((const {tin}*)in0_p, ({tout}*)out0_p, "
        f"{int(add)}, {int(relu)}, {n}, {c}, {s}, 0, tn, {block});")
    y, stats = y.numpy(), stats.numpy()
    y = _plain(_from_bf16(y) if out_bf16 else y, (n, c, s), block)

    x64 = x.astype(np.float64)
    mean = x64.mean(axis=(0, 2))
    var = ((x64 - mean[None, :, None]) ** 2).mean(axis=(0, 2))
    count = n * s
    want_rm, want_rv = rm.astype(np.float64), rv.astype(np.float64)
    for _ in range(updates):
        want_rm = (1 - momentum) * want_rm + momentum * mean
        want_rv = (1 - momentum) * want_rv + momentum * var * count / (count - 1)
    u = 2.0 ** -24
    for name, got, want, rel in (("mean", stats[0], mean, 2 * u), ("1/std", stats[1], 1 / np.sqrt(var + eps), 2 * u),
                                 ("running mean", stats[2], want_rm, 4 * u + 2 * u),
                                 ("running variance", stats[3], want_rv, 4 * u + 2 * u)):
        bound = rel * np.abs(want) + (2 * u * np.abs(mean).max() if name == "running mean" else 0)
        assert np.all(np.abs(got - want) <= bound), (f"{name}: {np.max(np.abs(got - want)):.3e} off, "
                                                     f"bound {bound.max():.3e}")
    alpha = (gamma * stats[1]).astype(np.float32)
    shift = (beta - (stats[0] * alpha).astype(np.float32)).astype(np.float32)
    want_y = x * alpha[None, :, None] + shift[None, :, None]
    if add:
        want_y = want_y + shortcut
    if relu:
        want_y = np.maximum(want_y, 0)
    bound = 4 * u * np.abs(x * alpha[None, :, None]) + 2 * u * np.abs(shift)[None, :, None] + \
        (2 * u * np.abs(want_y + 0) if add else 0) + (2.0 ** -8 * np.abs(want_y) if out_bf16 else 0)
    err = np.abs(y.astype(np.float64) - want_y)
    assert np.all(err <= bound), f"the output: {err.max():.3e} off where the bound is {bound.ravel()[err.argmax()]:.3e}"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_program_runs_in_the_layout_oneDNN_chooses_here(precision):
    """oneDNN's fast convolutions want nCdhw16c on AVX-512's jit kernels, nCdhw8c on AVX2's,
    channels last (ndhwc) on AVX-512's brgemm kernels (oneDNN 2.6's choice for inference on a
    Zen 4); a program in another layout may run oneDNN's reference kernels, orders of
    magnitude slower.  The layout is oneDNN's own choice on this CPU, and every convolution
    of a program gets a fast kernel, in both modes."""
    if precision == "bf16":
        _skip_without_a_bf16_program()
    chosen = frozen_resnet.chosen_layout(precision)
    assert chosen in frozen_resnet.LAYOUT_CODES, f"oneDNN chose none of the program's layouts here in {precision}"
    t, j = _twins(10, 4, 32)
    if precision == "bf16":
        set_precision(j, "bf16")
    x = jt.array(_input(2, 4, 32))
    for train in (False, True):
        set_train_mode(j, train)
        with switches.frozen_layout_forced("auto"):     # oneDNN's choice, even where a run forces one
            names = frozen_resnet.implementations(j, x, precision)
        slow = [n for n in names if n.startswith("ref")]
        assert not slow, (f"{'train' if train else 'eval'} mode, {precision}, {chosen}: oneDNN's reference "
                          f"kernels in the program: {slow}")
        # the downsampling shortcuts (1x1x1, stride 2) run subsampled on the stride-1 1x1 kernel,
        # like every other 1x1x1 convolution (the direct kernel ran them 3-5x slower)
        ones = [m for m in j.modules() if isinstance(m, Conv3d) and tuple(m.kernel_size) == (1, 1, 1)]
        strided = [m for m in ones if tuple(m.stride) != (1, 1, 1)]
        assert strided, "R3D-10 has no strided 1x1x1 shortcut: the check below checks nothing"
        assert sum("1x1" in n for n in names) == len(ones), names


def test_the_buffer_plan_places_apart_only_what_lives_together():
    """``Buffers`` (csrc): a recorded call's buffers placed in one arena, first fit, largest
    first.  Here (sizes in 4 KB pages, clock ticks at each make and each drop): a=25 [0, 2),
    b=75 [1, 5), c=12 [3, end), d=25 [4, end), e=100 [6, end).  Buffers whose lifetimes meet
    never share bytes; the arena is the most that lives at once (c + d + e = 137 pages; first
    fit finds it here: e at 0, b at 0, a after b, d after e, c after d).  A planned call gets
    the arena at each buffer's offset, and a buffer of another size than the plan's its own."""
    page = 4096
    sizes = {"a": 25, "b": 75, "c": 12, "d": 25, "e": 100}
    life = {"a": (0, 2), "b": (1, 5), "c": (3, 99), "d": (4, 99), "e": (6, 99)}

    def desc(name, scale=1):
        return f"memory::desc({{{sizes[name] * page // 4 * scale}}}, dt::f32, tag::x)"

    record = ("using namespace cten_frozen; "
              "{ Buffers mem(nullptr, nullptr); { "
              f"Buffer a = mem.get({desc('a')}); Buffer b = mem.get({desc('b')}); a = Buffer(); "
              f"Buffer c = mem.get({desc('c')}); Buffer d = mem.get({desc('d')}); b = Buffer(); "
              f"Buffer e = mem.get({desc('e')}); }} mem.plan(out0_p, 64); }}")
    plan = frozen_resnet._code((64,), "int64", [], record.replace("out0_p", "(int64_t*)out0_p")).numpy()
    names = list(sizes)
    assert plan[0] == len(names)
    size = dict(zip(names, plan[2:12:2]))
    at = dict(zip(names, plan[3:12:2]))
    assert size == {n: v * page for n, v in sizes.items()}
    for i, p in enumerate(names):
        for q in names[i + 1:]:
            meet = life[p][0] < life[q][1] and life[q][0] < life[p][1]
            apart = at[p] + size[p] <= at[q] or at[q] + size[q] <= at[p]
            assert apart or not meet, f"{p} and {q} live together and share bytes: {at}"
    assert plan[1] == (12 + 25 + 100) * page, f"an arena of {plan[1] // page} pages for 137 alive at most"
    assert all(v % page == 0 for v in at.values())

    arena = jt.zeros((int(plan[1]) + page,), "uint8")
    replay = ("using namespace cten_frozen; char* base = (char*)in1_p; "
              "Buffers mem((const int64_t*)in0_p, base); char* aligned = (char*)(((uintptr_t)base + 4095) / 4096 * 4096); "
              f"Buffer a = mem.get({desc('a')}); Buffer b = mem.get({desc('b')}); "
              f"Buffer c = mem.get({desc('c', 2)}); "                    # not the plan's size
              "out0_p[0] = (char*)a.m.get_data_handle() - aligned; out0_p[1] = (char*)b.m.get_data_handle() - aligned; "
              "char* own = (char*)c.m.get_data_handle(); out0_p[2] = own >= aligned && own < aligned + in0_p[1];")
    got = frozen_resnet._code((3,), "int64", [jt.array(plan, dtype="int64"), arena],
                              replay.replace("out0_p[", "((int64_t*)out0_p)[")).numpy()
    assert list(got[:2]) == [at["a"], at["b"]], "a planned call's buffers are not at the plan's offsets"
    assert got[2] == 0, "a buffer of another size than the plan's was placed in the arena"


def test_a_planned_call_faults_in_none_of_its_activations():
    """After the first call (which records the plan), a program's activations live in its
    arena, kept between calls: no page of them is faulted in again.  Without it, glibc
    mapped every block above 32 MB afresh at each call (here the stem's output, 51 MB).
    What a planned call may still fault in is not its activations': the output and the
    weights' reordered copies (from glibc's heap): under a quarter of the arena's pages."""
    import resource

    j = visual_backbone(18, 16, 112)
    for w in j.parameters():
        w.stop_grad()
    x = jt.array(_input(4, 16, 112))
    for train in (False, True):
        set_train_mode(j, train)
        frozen_resnet.frozen_backbone(j, x).sync()
        program = j.__dict__["_frozen_program"][1]
        assert program.arena_bytes and program.arena_bytes >= 4 * 64 * 16 * 56 * 56 * 4, \
            f"no arena for the stem's output ({program.arena_bytes} bytes)"
        frozen_resnet.frozen_backbone(j, x).sync()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        frozen_resnet.frozen_backbone(j, x).sync()
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        pages = program.arena_bytes // 4096
        assert faults < pages / 4, (f"{'train' if train else 'eval'} mode: {faults} pages faulted in by a "
                                    f"planned call, of an arena of {pages}")
