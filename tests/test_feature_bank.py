"""Feature-bank training (cten_jt.extract_features, train.features): a banked step
equals a normal step when both use the eval-mode backbone, no augmentation and a
stride-1 bank; stale and partial banks are refused; a stopped extraction resumes."""
import json
import os
import subprocess
import sys

import jittor as jt
import numpy as np
import pytest

import cten_jt.optim
from cten_common.data.bank import expected_meta
from cten_common.data.datasets import build_data, collate, sample_rng
from cten_common.data.errors import DataError
from cten_common.config import load_run_config
from cten_jt import engine
from cten_jt.data import model_visual
from cten_jt.extract_features import backbone_model, extract
from cten_jt.models import build_model
from cten_jt.models.norm import set_train_mode
from helpers import MODEL_RTOL, assert_close, make_tiny_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("bank")
    # 24 frames per video: T*L = 8, so the erased views of T=2 stay inside one run of
    # kept frames and every looked-up snippet is exact
    path = make_tiny_run(root, videos_per_class=6, duration=3.0, seed=4, model={"dropout": 0.0},
                         data={"augment": False}, train={"epochs": 1, "batch_size": 4, "seed": 5,
                                                         "backbone_eval": True})
    config = load_run_config(str(path))
    bank = extract(config, str(root / "bank32"), stride=1, variants=["eval"], dtype="float32",
                   eval_snippets=True, progress=False)
    return root, path, config, bank


def _batch(data, indices, epoch=0, seed=5):
    samples = [data.load(i, sample_rng(seed, epoch, i)) for i in indices]
    return collate(samples)


def _step(model, batch, bank, data):
    model.train()
    set_train_mode(model.resnet, False)
    total, info = engine.erasing_loss(model, batch, np.random.default_rng(9), bank=bank, reader=data.read_views)
    params = {n: p for n, p in model.named_parameters() if not p.is_stop_grad()}
    grads = dict(zip(params, [g.numpy() for g in jt.grad(total, list(params.values()), retain_graph=True)]))
    before = {n: p.numpy().copy() for n, p in params.items()}
    opt = cten_jt.optim.Adam(list(params.values()), lr=LR, weight_decay=WD)
    opt.step(total)
    return total.numpy(), info, grads, {n: p.numpy() for n, p in params.items()}, before


LR, WD, EPS = 1e-3, 5e-4, 1e-8


def _adam_first_step(grad, param):
    """PyTorch's (and cten_jt.optim's) first Adam step in float64: bias-corrected m = g and
    v = g^2 with g the gradient plus L2 decay, so lr * g / (|g| + eps)."""
    g = grad.astype(np.float64) + WD * param.astype(np.float64)
    return LR * g / (np.abs(g) + EPS)


def test_banked_step_equals_the_normal_step(tiny):
    root, path, config, bank = tiny
    normal_data = build_data(config, "training", train=True)
    banked_data = build_data(config, "training", train=True, bank=bank)
    normal, banked = _batch(normal_data, [0, 1, 2, 3]), _batch(banked_data, [0, 1, 2, 3])
    assert np.array_equal(normal["frame_indices"], banked["frame_indices"])
    assert np.array_equal(normal["audio"], banked["audio"])      # the same draws, in order
    a = build_model(config.model, init_seed=5)
    b = build_model(config.model, init_seed=5)
    la, ia, ga, pa, p0 = _step(a, normal, None, normal_data)
    lb, ib, gb, pb, p0b = _step(b, banked, bank, banked_data)
    for view in ("context", "keyframe"):
        assert np.array_equal(ia["indices"][view], ib["indices"][view]), view
    assert ib["bank_exact"][0] == ib["bank_exact"][1] == 3 * 4 * 2        # every snippet exact
    assert_close(float(la[0]), float(lb[0]), "loss", rtol_scale=1e-6)
    for name, x, y in zip(("original", "context", "keyframe"), ia["logits"], ib["logits"]):
        assert_close(x.numpy(), y.numpy(), f"{name} view logits", rtol_scale=1e-6)
    scale = max(np.abs(g).max() for g in ga.values())
    for name in ga:
        assert_close(ga[name], gb[name], f"grad {name}", atol=1e-6 * scale)
    for name in pa:
        # One Adam step from the same weights and gradients equal up to the rounding asserted
        # above.  Its size lr * g / (|g| + eps) turns a last-bit difference of a gradient near
        # eps into a visible one, so the bound is derived per element from the two gradients:
        # the two first steps' difference, computed in float64, plus fp32 rounding of the
        # update (2 ulps of the parameter's largest magnitude).
        assert np.array_equal(p0[name], p0b[name]), name
        derived = np.abs(_adam_first_step(ga[name], p0[name]) - _adam_first_step(gb[name], p0[name]))
        ulp = float(np.spacing(np.float32(max(np.abs(p0[name]).max(), np.abs(pa[name]).max()))))
        excess = np.abs(pa[name].astype(np.float64) - pb[name]) - (derived + 2 * ulp)
        assert excess.max() <= 0, f"parameter {name} after the step: beyond the derived bound by {excess.max():.3e}"


def test_banked_features_are_the_backbones_in_eval_mode(tiny):
    root, path, config, bank = tiny
    model = backbone_model(config)
    data = build_data(config, "validation", train=False)
    sample = data.load(0)
    vid = data.items[0].video_id
    want = model.encode_visual(model_visual(sample["visual"][None])).numpy()[0]
    got, exact = bank.lookup(vid, "eval", sample["frame_indices"], evaluation=True)   # the eval snippets
    assert exact == 2
    assert_close(want, got, "eval snippets", rtol_scale=MODEL_RTOL)
    got2, exact2 = bank.lookup(vid, "eval", sample["frame_indices"])                 # from the stride-1 table
    assert exact2 == 2
    assert_close(want, got2, "eval snippets through the snippet table", rtol_scale=MODEL_RTOL)


def test_lookup_rounds_starts_to_the_stride_and_counts_inexact_snippets(tiny, tmp_path):
    root, path, config, _ = tiny
    bank = extract(config, str(tmp_path / "s3"), stride=3, variants=["eval", "center+flip"], dtype="float16",
                   progress=False)
    vid = sorted(bank.videos)[0]
    n = bank.info(vid)["n_frames"]
    table = np.load(os.path.join(bank.root, "features", bank.info(vid)["file"] + ".npy"))
    assert table.dtype == np.float16 and table.shape[:2] == (2, len(range(0, n, 3)))
    frames = np.array([[3, 4, 5, 6], [7, 8, 9, 10], [4, 5, 9, 10]])   # exact, rounded down to 6, a gap
    feats, exact = bank.lookup(vid, "center+flip", frames)
    assert exact == 1
    np.testing.assert_array_equal(feats, table[1, [1, 2, 1]].astype(np.float32))


def test_stale_and_partial_banks_are_refused(tiny, tmp_path):
    root, path, config, bank = tiny
    ids = list(bank.videos)
    model = backbone_model(config)
    bank.check(expected_meta(config, model), ids)                    # the right one passes
    other = config.updated({"train": {"seed": 6}})       # other backbone weights
    with pytest.raises(DataError, match="stale feature bank: built with backbone_sha256"):
        bank.check(expected_meta(other, backbone_model(other)), ids)
    bigger = config.updated({"model": {"snippet_duration": 8}})
    with pytest.raises(DataError, match="snippet_duration 4, now 8"):
        bank.check(expected_meta(bigger, model), ids)
    part = extract(config, str(tmp_path / "part"), dtype="float32", progress=False, stop_after=3)
    with pytest.raises(DataError, match=r"partial feature bank: 9 of 12 videos missing"):
        part.check(expected_meta(config, model), ids)
    # the trainer says so and stops, before any training
    cmd = [sys.executable, "-m", "cten_jt.train", "--config", str(path), "--out", str(tmp_path / "run"),
           "--set", f"train.features={tmp_path / 'part'}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 2 and "partial feature bank" in proc.stderr
    # a folder with a bank of other settings is not overwritten by accident
    with pytest.raises(DataError, match="other settings or weights"):
        extract(config, str(tmp_path / "part"), stride=2, progress=False)


def test_a_bf16_bank_records_its_precision_and_serves_a_run(tiny, tmp_path):
    """Extracted in bf16 (``--precision bf16``): the bank says so, its features are the
    backbone's in bf16 (close to the fp32 bank's, not equal), it serves a run's check, and
    continuing it in fp32 is refused as other settings."""
    root, path, config, bank = tiny
    config16 = config.updated({"train": {"precision": "bf16"}})
    b16 = extract(config16, str(tmp_path / "b16"), dtype="float32", progress=False)
    assert b16.meta["precision"] == "bf16" and "precision" not in bank.meta
    ids = list(bank.videos)
    b16.check(expected_meta(config, backbone_model(config)), ids)
    vid = ids[0]
    f16, f32 = b16._array(vid), bank._array(vid)
    assert f16.shape == f32.shape and not np.array_equal(f16, f32)
    assert np.max(np.abs(f16 - f32)) <= 0.1 * np.max(np.abs(f32))
    with pytest.raises(DataError, match="other settings or weights"):
        extract(config, str(tmp_path / "b16"), dtype="float32", progress=False)


def test_a_stopped_extraction_resumes_to_the_same_bank(tiny, tmp_path):
    root, path, config, bank = tiny
    out = tmp_path / "resumed"
    first = extract(config, str(out), dtype="float32", eval_snippets=True, progress=False, stop_after=5)
    assert len(first.videos) == 5
    # a kill while writing: a temporary file and an unindexed half file stay behind
    (out / "features" / "000005.npy.tmp.npy").write_bytes(b"\x93NUMPY half")
    (out / "features" / "000005.npy").write_bytes(b"\x93NUMPY")
    done = extract(config, str(out), dtype="float32", eval_snippets=True, progress=False)
    assert sorted(done.videos) == sorted(bank.videos)
    done.check(expected_meta(config, backbone_model(config)), list(bank.videos))
    for vid in bank.videos:
        for kind in ("", ".eval"):
            a = np.load(os.path.join(bank.root, "features", bank.info(vid)["file"] + kind + ".npy"))
            b = np.load(os.path.join(done.root, "features", done.info(vid)["file"] + kind + ".npy"))
            np.testing.assert_array_equal(a, b, err_msg=f"{vid}{kind}")
    index = json.loads((out / "bank.json").read_text())
    assert index["meta"]["stride"] == 1 and len(index["videos"]) == 12
