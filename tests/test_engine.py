"""One complete erasing step (three views, loss, gradients, Adam) in both frameworks."""
import jittor as jt
import numpy as np
import torch

import cten_jt.optim
from cten_common.data.datasets import collate
from cten_common.erasing import ClipViews
from cten_common.step import ErasingOptions
from cten_jt import engine as jeng
from cten_jt.models.state import load_state_arrays, state_arrays
from cten_jt.models import CTEN as JCTEN
from cten_torch_ref import engine as teng
from cten_torch_ref.models import CTEN as TCTEN
from helpers import MODEL_RTOL, TINY_AV, assert_close, copy_torch_to_jittor

CFG = {**TINY_AV, "snippet_duration": 4, "dropout": 0.0}
CLASSES = ["Anger", "Anticipation", "Disgust", "Fear", "Joy"]


def _batch(seed=0):
    """Two videos of 23 and 40 frames: uint8 clips (zero-padded to 40 frames), the
    original view sampled from them, a brightness factor each (the second one
    darkened, as the training transform may draw), audio."""
    rng = np.random.default_rng(seed)
    samples = []
    for i, (n, brightness) in enumerate(((23, 1.0), (40, 0.8))):
        clip = np.zeros((40, 3, 32, 32), np.uint8)
        clip[:n] = rng.integers(0, 256, (n, 3, 32, 32))
        idx = np.sort(rng.integers(0, n, (4, 4)), axis=None).reshape(4, 4)
        samples.append({"visual": clip[idx].transpose(0, 2, 1, 3, 4).copy(),
                        "brightness": np.float32(brightness),
                        "audio": rng.normal(size=(400, 128)).astype(np.float32),
                        "label": np.int64(i + 1), "n_frames": np.int64(n), "clip": clip})
    return collate(samples)


def _reader(batch):
    """The erased views' frames from the batch's whole clips (what reading them from
    the videos gives: tests/common/data/test_datasets.py)."""
    return ClipViews(batch["clip"])


def _grads_torch(model, loss):
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    return dict(zip(params, [g.numpy() for g in torch.autograd.grad(loss, list(params.values()))]))


def test_full_erasing_step_matches():
    t_model = TCTEN(init_seed=0, **CFG)
    j_model = JCTEN(init_seed=0, **CFG)
    copy_torch_to_jittor(t_model, j_model)
    initial = {k: v.clone() for k, v in t_model.state_dict().items()}
    batch = _batch()
    t_model.train()
    j_model.train()
    opts = dict(options=ErasingOptions(theta=0.7, loss="pcce", class_names=CLASSES, pcce_lambda=0.5),
                reader=_reader(batch))

    t_loss, t_info = teng.erasing_loss(t_model, batch, np.random.default_rng(3), **opts)
    j_loss, j_info = jeng.erasing_loss(j_model, batch, np.random.default_rng(3), **opts)
    assert_close(t_info["gamma"], j_info["gamma"], "gamma (original view)", rtol_scale=MODEL_RTOL)
    for view in ("context", "keyframe"):       # the erased views: the same frames, exactly
        assert np.array_equal(t_info["indices"][view], j_info["indices"][view]), view
        assert set(np.unique(t_info["indices"][view][0])) <= set(range(23))
    for name, t_v, j_v in zip(("original", "context", "keyframe"), t_info["logits"], j_info["logits"]):
        assert_close(t_v.detach(), j_v, f"{name} view logits", rtol_scale=MODEL_RTOL)
    assert_close(t_loss.detach(), j_loss, "loss", rtol_scale=MODEL_RTOL)

    # gradients of the same step with every BatchNorm in eval mode: in train mode the
    # audio ResNet's BatchNorms scale fp32 rounding into its gradients up to ~1e-3 of the
    # largest one and flip ReLUs (measured and explained in tests/models/test_cten.py)
    t_model.load_state_dict(initial)
    load_state_arrays(j_model, {k: v.numpy() for k, v in initial.items()}, "initial")
    t_model.eval()
    j_model.eval()
    t_loss, t_info = teng.erasing_loss(t_model, batch, np.random.default_rng(3), **opts)
    j_loss, j_info = jeng.erasing_loss(j_model, batch, np.random.default_rng(3), **opts)
    for view in ("context", "keyframe"):
        assert np.array_equal(t_info["indices"][view], j_info["indices"][view]), view
    t_grads = _grads_torch(t_model, t_loss)
    j_params = {n: p for n, p in j_model.named_parameters() if not p.is_stop_grad()}
    j_grads = dict(zip(j_params, [g.numpy() for g in jt.grad(j_loss, list(j_params.values()),
                                                            retain_graph=True)]))
    assert set(j_grads) == set(t_grads)
    scale = max(np.abs(g).max() for g in t_grads.values())
    for name, g in t_grads.items():
        assert_close(g, j_grads[name], f"grad {name}", atol=MODEL_RTOL * scale)

    # the optimiser step: Jittor's Adam == PyTorch's Adam fed the gradients Jittor's
    # Adam used (read back after backward: a second backward may differ in the last
    # bit, and where |g| is near Adam's eps, g / (|g| + eps) turns that into % of lr)
    before = {n: p.numpy().copy() for n, p in j_params.items()}
    j_opt = cten_jt.optim.Adam(j_model.parameters(), lr=2e-4, weight_decay=5e-4)
    j_opt.backward(j_loss)
    used = {}
    for pg in j_opt.param_groups:
        for p, g in zip(pg["params"], pg["grads"]):
            if not p.is_stop_grad():
                used[id(p)] = g.numpy().copy()
    j_opt.step()
    ref = {n: torch.nn.Parameter(torch.from_numpy(before[n].copy())) for n in j_params}
    for n, p in ref.items():
        p.grad = torch.from_numpy(used[id(j_params[n])])
        assert_close(j_grads[n], p.grad, f"grad used by Adam {n}", atol=MODEL_RTOL * scale)
    torch.optim.Adam(ref.values(), lr=2e-4, weight_decay=5e-4).step()
    for name, p in j_params.items():
        assert not np.array_equal(p.numpy(), before[name]) or name.endswith("alpha"), name
        top = max(np.abs(before[name]).max(), np.abs(p.numpy()).max())
        ulp = float(np.spacing(np.float32(top)))
        # fp32 rounding of p plus a few ulps of the step (~lr): eps misplaced or a wrong
        # bias correction would show as >= 1e-5 of lr
        assert_close(ref[name].detach(), p, f"param after Adam {name}", atol=2 * ulp + 2e-4 * 1e-6)


def test_step_draws_context_then_keyframe_per_video_from_one_generator():
    from cten_common.erasing import erased_view_indices
    j_model = JCTEN(init_seed=1, **CFG)
    batch = _batch(1)
    j_model.train()
    _, info = jeng.erasing_loss(j_model, batch, np.random.default_rng(11), reader=_reader(batch))
    again = erased_view_indices(info["gamma"], batch["n_frames"], 4, np.random.default_rng(11), 0.7)
    for view in ("context", "keyframe"):
        assert np.array_equal(info["indices"][view], again[view])


def test_fused_and_composed_kernels_take_the_same_step():
    from cten_jt.switches import kernels
    batch = _batch(1)
    results = {}
    for mode in ("composed", "fused"):
        model = JCTEN(init_seed=0, **CFG)
        model.train()
        with kernels(mode):
            loss, info = jeng.erasing_loss(model, batch, np.random.default_rng(5), ErasingOptions(theta=0.7),
                                           reader=_reader(batch))
            results[mode] = (float(loss.numpy().reshape(-1)[0]), info)
    (c_loss, c_info), (f_loss, f_info) = results["composed"], results["fused"]
    for view in ("context", "keyframe"):               # the erasing kernel: the same frames
        np.testing.assert_array_equal(c_info["indices"][view], f_info["indices"][view], err_msg=view)
    assert_close([x.numpy() for x in c_info["logits"]], [x.numpy() for x in f_info["logits"]],
                 "logits (original, context, keyframe)", rtol_scale=MODEL_RTOL)
    assert_close(c_loss, f_loss, "loss", rtol_scale=MODEL_RTOL)


def test_audio_branch_once_equals_three_times():
    """audio_once: one audio forward for the three views gives the reference's
    loss, gradients and BatchNorm running statistics (updated three times)."""
    batch = _batch(2)
    results = {}
    for once in (False, True):
        model = JCTEN(init_seed=0, **CFG)
        model.train()
        loss, info = jeng.erasing_loss(model, batch, np.random.default_rng(4), ErasingOptions(audio_once=once),
                                       reader=_reader(batch))
        params = {n: p for n, p in model.named_parameters() if not p.is_stop_grad()}
        grads = dict(zip(params, [g.numpy() for g in jt.grad(loss, list(params.values()))]))
        buffers = {n: np.array(v) for n, v in state_arrays(model).items()
                   if n.endswith(("running_mean", "running_var", "num_batches_tracked"))}
        results[once] = {"loss": float(loss.numpy().reshape(-1)[0]), "grads": grads, "buffers": buffers,
                         "logits": [x.numpy() for x in info["logits"]]}
    ref, got = results[False], results[True]
    assert_close(ref["logits"], got["logits"], "logits", rtol_scale=MODEL_RTOL)
    assert_close(ref["loss"], got["loss"], "loss", rtol_scale=MODEL_RTOL)
    scale = max(np.abs(g).max() for g in ref["grads"].values())
    assert_close(ref["grads"], got["grads"], "grads", atol=MODEL_RTOL * scale)
    assert_close(ref["buffers"], got["buffers"], "BatchNorm buffers", atol=1e-6)
    assert got["buffers"]["a_fc.1.num_batches_tracked"].item() == 3



def test_the_twins_audio_branch_once_equals_three_times():
    """The PyTorch twin's audio_once (cten_torch_ref.engine): one audio forward for the three
    views gives the reference's own three-forward loss, gradients and BatchNorm running
    statistics (updated three times by cten_torch_ref.models.norm.repeated_stat_updates),
    with the tolerances of the Jittor test above (the same computation, summed in another
    order); and the Jittor step with audio_once equals the twin's with audio_once."""
    batch = _batch(2)
    results = {}
    for once in (False, True):
        model = TCTEN(init_seed=0, **CFG)
        model.train()
        loss, info = teng.erasing_loss(model, batch, np.random.default_rng(4), ErasingOptions(audio_once=once),
                                       reader=_reader(batch))
        buffers = {n: v.detach().numpy().copy() for n, v in model.state_dict().items()
                   if n.endswith(("running_mean", "running_var", "num_batches_tracked"))}
        results[once] = {"loss": float(loss.detach()), "grads": _grads_torch(model, loss), "buffers": buffers,
                         "logits": [x.detach().numpy() for x in info["logits"]]}
    ref, got = results[False], results[True]
    assert_close(ref["logits"], got["logits"], "logits", rtol_scale=MODEL_RTOL)
    assert_close(ref["loss"], got["loss"], "loss", rtol_scale=MODEL_RTOL)
    scale = max(np.abs(g).max() for g in ref["grads"].values())
    assert_close(ref["grads"], got["grads"], "grads", atol=MODEL_RTOL * scale)
    assert_close(ref["buffers"], got["buffers"], "BatchNorm buffers", atol=1e-6)
    assert got["buffers"]["a_fc.1.num_batches_tracked"].item() == 3
    assert got["buffers"]["a_resnet.1.num_batches_tracked"].item() == 3
    # the running statistics did move three updates' worth, not one (momentum 0.1: 1 - 0.9**3)
    fresh = TCTEN(init_seed=0, **CFG).state_dict()["a_fc.1.running_mean"].numpy()
    assert np.abs(got["buffers"]["a_fc.1.running_mean"] - fresh).max() > 0

    j_model = JCTEN(init_seed=0, **CFG)
    j_model.train()
    j_loss, j_info = jeng.erasing_loss(j_model, batch, np.random.default_rng(4), ErasingOptions(audio_once=True),
                                       reader=_reader(batch))
    assert_close(got["loss"], float(j_loss.numpy().reshape(-1)[0]), "loss, Jittor against the twin",
                 rtol_scale=MODEL_RTOL)
    j_buffers = {n: np.array(v) for n, v in state_arrays(j_model).items() if n in got["buffers"]}
    assert_close(got["buffers"], j_buffers, "BatchNorm buffers, Jittor against the twin", rtol_scale=MODEL_RTOL)


def test_steps_leave_no_pending_operations():
    """A step runs every BatchNorm's running-average update: without that, each step
    chained new lazy operations onto the buffers (``num_batches_tracked + 1`` on the last
    sum), kept alive, step after step, until something read them."""
    model = JCTEN(init_seed=0, **CFG)
    model.train()
    optimizer = cten_jt.optim.Adam([p for p in model.parameters() if not p.is_stop_grad()], lr=1e-4)
    batch, rng = _batch(2), np.random.default_rng(0)
    counts = []
    for _ in range(3):
        jeng.erasing_step(model, optimizer, batch, rng, ErasingOptions(theta=0.7), reader=_reader(batch))
        jt.gc()
        counts.append(jt.liveness_info()["lived_ops"])
    assert counts[1] == counts[2] == counts[0], f"lived operations after each step: {counts}"
