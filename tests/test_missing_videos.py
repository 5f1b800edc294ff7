"""An annotated video whose file (or audio file) is missing from disk under
``data.on_bad_sample``: ``skip`` leaves it out of the index and counts, lists and limits
it as any skipped video (training and evaluation); ``stop`` (the default) ends the run
before it starts, naming every bad entry; any other index problem stops both."""
import json
import os

import numpy as np
import pytest

from cten_common.config import TrainConfig, load_run_config
from cten_common.data.datasets import build_data
from cten_common.data.errors import DataError
from helpers import StandInModel, make_tiny_run, stand_in_predict


def _trainer(framework):
    if framework == "jittor":
        import cten_jt.train as trainer
    else:
        import cten_torch_ref.train as trainer
    return trainer


@pytest.fixture
def tiny(tmp_path):
    """A 2-class set of 6 videos (4 training, 2 validation), one epoch of batches of 2."""
    path = make_tiny_run(tmp_path, videos_per_class=3, duration=2.0, train={"epochs": 1, "batch_size": 2})
    config = load_run_config(str(path))
    train = build_data(config, "training", True).items
    val = build_data(config, "validation", False).items
    assert (len(train), len(val)) == (4, 2)
    return path, config, train, val, tmp_path / "run"


def _where(item):
    """The path a missing video is named by: ``{video_root}/{label}/{id}`` (no extension)."""
    return os.path.splitext(item.video_path)[0]


def _audio_where(item):
    return os.path.splitext(item.audio_path)[0]


@pytest.mark.parametrize("framework", ["jittor", "torch"])
def test_skip_trains_without_a_missing_video_and_lists_it(tiny, framework):
    _, config, train, _, out = tiny
    os.remove(train[1].video_path)             # the video file is gone
    os.remove(train[2].audio_path)             # this one's frames are there, its audio file is not
    config = config.updated({"data": {"on_bad_sample": "skip", "max_bad_share": 0.5}})
    summary = _trainer(framework).train(config, str(out), progress=False)
    assert summary["epochs_done"] == 1 and summary["train_videos"] == 2
    listed = {v["video_id"]: v for v in summary["skipped_videos"]}
    assert set(listed) == {train[1].video_id, train[2].video_id}, listed
    gone, silent = listed[train[1].video_id], listed[train[2].video_id]
    assert gone["path"] == _where(train[1]) and "not found" in gone["problem"], gone
    assert silent["path"] == _audio_where(train[2]) and "audio" in silent["problem"] \
        and "not found" in silent["problem"], silent
    for v in (gone, silent):
        assert (v["subset"], v["where"], v["epochs"]) == ("training", "index", [1]), v
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert record["skipped_videos"] == 2
    assert sorted(s["path"] for s in record["skipped"]) == sorted([_where(train[1]), _audio_where(train[2])])
    assert np.isfinite(record["step_losses"]).all() and len(record["step_losses"]) == 1     # 2 videos left
    assert json.loads((out / "summary.json").read_text())["skipped_videos"] == summary["skipped_videos"]
    assert (out / "last.safetensors").exists()


def test_skip_counts_a_missing_video_in_every_epoch_and_once_per_epoch(tiny):
    """A missing validation video is noted at the epoch's start and comes back in the
    validation report: counted once per epoch, in each epoch."""
    _, config, _, val, out = tiny
    os.remove(val[0].video_path)
    config = config.updated({"data": {"on_bad_sample": "skip", "max_bad_share": 0.5}, "train": {"epochs": 2}})
    summary = _trainer("jittor").train(config, str(out), progress=False)
    assert [(v["video_id"], v["subset"], v["epochs"]) for v in summary["skipped_videos"]] == \
        [(val[0].video_id, "validation", [1, 2])]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped_videos"] for r in records] == [1, 1]
    assert summary["eval_videos"] == 1


@pytest.mark.parametrize("framework", ["jittor", "torch"])
def test_stop_refuses_a_missing_video_before_training(tiny, framework):
    _, config, train, _, out = tiny
    os.remove(train[1].video_path)
    assert config.data.on_bad_sample == "stop"
    with pytest.raises(DataError) as err:
        _trainer(framework).train(config, str(out), progress=False)
    assert err.value.path == config.data.annotation, err.value.path
    assert "1 bad entries" in str(err.value) and f"{_where(train[1])}: video {train[1].video_id!r}" in str(err.value)
    assert not (out / "metrics.jsonl").exists() and not (out / "last.safetensors").exists()


def test_stop_exits_2_before_anything_runs(tiny, capsys):
    path, _, train, _, out = tiny
    os.remove(train[1].video_path)
    os.remove(train[3].audio_path)
    assert _trainer("jittor").main(["--config", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "2 bad entries" in err and _where(train[1]) in err and _audio_where(train[3]) in err, err
    assert not (out / "config.yaml").exists() and not (out / "metrics.jsonl").exists()


def test_missing_and_damaged_videos_over_the_share_stop_the_run(tiny):
    """One missing and one damaged video of 6 with max_bad_share 0.2 (one allowed): the
    run stops with the existing error, listing both, and no epoch is saved."""
    from cten_common.training import TooMuchBadData
    _, config, train, val, out = tiny
    os.remove(train[0].video_path)
    with open(val[1].video_path, "wb") as f:               # damaged: found by the check before the run
        f.write(np.random.default_rng(0).bytes(3000))
    config = config.updated({"data": {"on_bad_sample": "skip", "max_bad_share": 0.2}})
    with pytest.raises(TooMuchBadData, match=r"2 of the run's 6 videos failed to read .* data.max_bad_share = 0.2") \
            as err:
        _trainer("jittor").train(config, str(out), progress=False)
    assert _where(train[0]) in str(err.value) and val[1].video_path in str(err.value), str(err.value)
    assert not (out / "last.safetensors").exists()


def test_missing_videos_alone_over_the_share_stop_before_the_first_step(tiny, monkeypatch):
    from cten_common.training import TooMuchBadData
    _, config, train, _, out = tiny
    for item in train[:2]:
        os.remove(item.video_path)
    config = config.updated({"data": {"on_bad_sample": "skip", "max_bad_share": 0.2}})
    from cten_jt.backend import BACKEND
    steps = []
    monkeypatch.setattr(BACKEND, "erasing_step", lambda *a, **k: steps.append(1))
    with pytest.raises(TooMuchBadData, match=r"2 of the run's 6 videos failed to read"):
        _trainer("jittor").train(config, str(out), progress=False)
    assert steps == []


def test_other_index_problems_stop_under_skip_too(tiny):
    _, config, train, _, _ = tiny
    os.remove(train[1].video_path)
    ann = json.loads(open(config.data.annotation).read())
    ann["database"][train[2].video_id]["annotations"]["label"] = "Boredom"      # an unknown label
    json.dump(ann, open(config.data.annotation, "w"))
    skip = config.updated({"data": {"on_bad_sample": "skip"}})
    with pytest.raises(DataError) as err:
        build_data(skip, "training", True)
    message = str(err.value)
    assert err.value.path == config.data.annotation and "1 bad entries" in message and "'Boredom'" in message
    assert _where(train[1]) not in message             # the missing video is a bad sample, not an index error
    with pytest.raises(DataError, match="2 bad entries"):          # stop: both
        build_data(config, "training", True)




def test_evaluation_lists_a_missing_video_under_skip(tiny, capsys):
    from cten_common.evaluation import evaluate_model, print_report
    _, config, _, val, _ = tiny
    os.remove(val[1].video_path)
    data = build_data(config.updated({"data": {"on_bad_sample": "skip"}}), "validation", False)
    assert [it.video_id for it in data.items] == [val[0].video_id] and data.n_annotated == 2
    report = evaluate_model(StandInModel(), data, TrainConfig(batch_size=2, seed=0), stand_in_predict, progress=False)
    assert report["n"] == 1 and [v["video_id"] for v in report["per_video"]] == [val[0].video_id]
    assert [(s["video_id"], s["path"], s["where"]) for s in report["skipped"]] == \
        [(val[1].video_id, _where(val[1]), "index")]
    assert "not found" in report["skipped"][0]["problem"]
    json.dumps(report)                  # the report is written as JSON
    print_report(report, data.class_names)
    printed = capsys.readouterr().out
    assert "skipped 1 videos" in printed and _where(val[1]) in printed, printed
    with pytest.raises(DataError, match="1 bad entries"):               # stop: no evaluation at all
        build_data(config, "validation", False)
