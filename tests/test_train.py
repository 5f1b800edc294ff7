"""Training, resume, NaN stop, evaluation and prediction on a tiny synthetic set."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cten_common.config import load_run_config
from helpers import make_tiny_run, run_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return root, make_tiny_run(root)


def _weights(run):
    return run_checkpoint(run, "last")


def test_resume_ends_with_the_same_weights(tiny, tmp_path):
    from cten_jt.train import train
    root, path = tiny
    config = load_run_config(str(path))
    train(config, str(tmp_path / "straight"), progress=False)
    train(config, str(tmp_path / "resumed"), progress=False, stop_after=1)
    assert _weights(tmp_path / "resumed")["epoch"] == 0
    with open(tmp_path / "resumed" / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "half written": true}\n')       # a line of a killed epoch
    train(config, str(tmp_path / "resumed"), resume=True, progress=False)
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert a["epoch"] == b["epoch"] == 1
    for name in a["model"]:
        assert np.array_equal(a["model"][name], b["model"][name]), name
    for name in a["optimizer"]["m"]:
        assert np.array_equal(a["optimizer"]["m"][name], b["optimizer"]["m"][name]), name
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2]
    straight = json.loads((tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()[1])
    resumed = json.loads(lines[1])
    assert {"loss_original", "loss_context", "loss_keyframe", "train_acc_original", "train_acc_context",
            "train_acc_keyframe", "val_accuracy", "val_accuracy_mean_views", "val_mAP"} <= set(straight)
    timing = ("time_s", "train_time_s", "data_wait_s", "view_read_s", "data_wait_fraction")
    assert {"data_wait_s", "view_read_s", "data_wait_fraction"} <= set(straight)
    assert 0 < straight["view_read_s"] and 0 <= straight["data_wait_fraction"] < 1
    assert {k: v for k, v in resumed.items() if k not in timing} == \
        {k: v for k, v in straight.items() if k not in timing}
    for name in ("config.yaml", "best.safetensors", "summary.json", "curves.png"):
        assert (tmp_path / "straight" / name).exists(), name


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny, tmp_path, monkeypatch):
    import cten_jt.train as trainer
    from cten_common.training import NonFiniteLoss
    root, path = tiny
    config = load_run_config(str(path))
    real = trainer.BACKEND.erasing_step
    calls = {"n": 0}

    def poisoned(model, optimizer, batch, rng, **kw):
        out = real(model, optimizer, batch, rng, **kw)
        calls["n"] += 1
        if calls["n"] > 3:              # the second epoch (3 steps per epoch here)
            out["loss"] = float("nan")
        return out
    monkeypatch.setattr(trainer.BACKEND, "erasing_step", poisoned)
    with pytest.raises(NonFiniteLoss, match="the loss is nan"):
        trainer.train(config, str(tmp_path / "run"), progress=False)
    kept = _weights(tmp_path / "run")
    assert kept["epoch"] == 0 and all(np.isfinite(v).all() for v in kept["model"].values()
                                      if v.dtype.kind == "f")


def test_command_line_train_evaluate_predict(tiny, tmp_path):
    root, path = tiny
    run = tmp_path / "run"

    def cli(*args):
        out = subprocess.run([sys.executable, "-m", *map(str, args)], cwd=ROOT, capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
        return out.stdout
    cli("cten_jt.train", "--config", path, "--out", run, "--set", "train.epochs=1")
    report = cli("cten_jt.evaluate", "--config", path, "--weights", run / "best.safetensors",
                 "--out", run / "eval.json")
    assert "accuracy (original view)" in report and "weak detection mAP" in report
    data = json.loads((run / "eval.json").read_text())
    assert data["n"] == 2 * 1 and len(data["confusion_matrix"]) == 2 and "mAP@0.5" in data["detection"]
    for video in data["per_video"]:           # the spans behind the mAP, and the rate behind the spans
        assert video["fps_source"] == "container" and video["fps"] == 8.0 and video["detections"]
        assert len(video["ground_truth"]) == 1 and video["ground_truth"][0]["end_s"] <= 2.0
    assert (run / "eval_confusion.png").exists()
    video = next((root / "data" / "videos" / "Anger").iterdir())
    audio = root / "data" / "audio" / "Anger" / (video.stem + ".wav")
    out = cli("cten_jt.predict", video, "--weights", run / "best.safetensors", "--audio", audio,
              "--plot", tmp_path / "p.png", "--json", tmp_path / "p.json")
    assert "Anger" in out and (tmp_path / "p.png").exists()
    pred = json.loads((tmp_path / "p.json").read_text())
    assert len(pred["segments"]) == 2 and abs(sum(t["probability"] for t in pred["top"]) - 1) < 1e-5
    # the run's annotation holds the video: its ground truth is listed (and drawn)
    assert len(pred["ground_truth"]) == 1 and pred["ground_truth"][0]["emotion"] == "Anger"
    assert pred["fps_source"] == "container" and "truth" in out
    # the synthetic mp4 has no audio track: refused unless silence is asked for
    refused = subprocess.run([sys.executable, "-m", "cten_jt.predict", str(video), "--weights",
                              str(run / "best.safetensors")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and "no audio track" in refused.stderr
    cli("cten_jt.predict", video, "--weights", run / "best.safetensors", "--allow-silence")
