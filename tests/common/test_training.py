"""cten_common/training.py's per-epoch draws, as both trainers take them."""
import itertools

import pytest

from cten_common.config import load_run_config
from cten_common.training import dropout_seed, epoch_order, erasing_rng


def test_dropout_seeds_are_31_bit_distinct_and_accepted_by_both_frameworks():
    """Jittor's set_global_seed passes its seed to np.random.seed (< 2**32): the former
    formula crashed the Jittor trainer from train.seed 5 on.  It also keeps the seed as a
    signed 32-bit integer that its loader processes read back with jt.get_seed() to seed
    numpy: 2**31 and more came back negative and killed them."""
    import jittor as jt
    import torch
    grid = list(itertools.product([0, 1, 4, 5, 1234, 2 ** 32 - 1], [0, 1, 99], [0, 3]))
    seeds = [dropout_seed(s, e, r) for s, e, r in grid]
    assert all(isinstance(x, int) and 0 <= x < 2 ** 31 for x in seeds)
    assert len(set(seeds)) == len(grid)                       # every (seed, epoch, rank) its own
    assert seeds == [dropout_seed(s, e, r) for s, e, r in grid]          # and the same each time
    assert max(seeds) > 2 ** 30                               # the whole range is used
    for x in (min(seeds), max(seeds), dropout_seed(5, 0)):
        jt.set_global_seed(x)
        assert jt.get_seed() == x, f"Jittor reads seed {x} back as {jt.get_seed()}"
        torch.manual_seed(x)


def test_jittor_loader_processes_start_under_every_epochs_seed():
    """The epoch's dropout seed set, then a Jittor loader with a worker process: the
    worker seeds numpy from jt.get_seed() and must not die (it did for half the epochs;
    Jittor's loader then waits for it for ever, so the loader runs in a process of its
    own with a time limit)."""
    import subprocess
    import sys
    code = """
import numpy as np
import cten_jt
import jittor as jt
from jittor.dataset import Dataset
from cten_common.training import dropout_seed

class Numbers(Dataset):
    def __init__(self):
        super().__init__(batch_size=2, shuffle=False, num_workers=1, drop_last=True)
        self.set_attrs(total_len=4)

    def __getitem__(self, i):
        return np.array([i], np.float32)

jt.set_global_seed(max(dropout_seed(0, e) for e in range(20)))     # the largest of 20 epochs' seeds
loader = Numbers()
print("batches", [np.asarray(b).ravel().tolist() for b in loader])
loader.terminate()
"""
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        raise AssertionError("the Jittor loader hung: its worker process died") from None
    assert "batches [[0.0, 1.0], [2.0, 3.0]]" in out.stdout, out.stdout[-1000:] + out.stderr[-3000:]


def test_epoch_draws_depend_on_seed_and_epoch_alone():
    assert (epoch_order(5, 2, 10) == epoch_order(5, 2, 10)).all()
    assert not (epoch_order(5, 2, 50) == epoch_order(5, 3, 50)).all()
    assert erasing_rng(7, 1).integers(1 << 30) == erasing_rng(7, 1).integers(1 << 30)


@pytest.mark.parametrize("value", ["-1", "4294967296", "1.5", "true", "abc"])
def test_a_seed_outside_32_bits_is_refused_by_name(value):
    with pytest.raises(ValueError, match=r"train.seed must be an integer in \[0, 2\*\*32\)"):
        load_run_config(None, [f"train.seed={value}"])
    assert load_run_config(None, ["train.seed=4294967295"]).train.seed == 2 ** 32 - 1


def _bad(index, vid, path="/d/x/000001.jpg", problem="frame 0: cannot decode as an image", where="sample"):
    from cten_common.data.datasets import BadSample
    return BadSample(index, vid, path, problem, where)


def test_skipped_videos_are_counted_per_epoch_and_listed_for_the_run():
    from cten_common.training import SkippedVideos
    config = load_run_config(None, ["data.on_bad_sample=skip", "data.max_bad_share=0.5"])
    skipped = SkippedVideos(config, n_videos=6)
    batch = {"index": [4], "slot": [1], "slots": 2, "skipped": [_bad(3, "a")]}
    assert skipped.take(batch, 0) is batch and "skipped" not in batch
    assert skipped.take({"slot": [], "slots": 2, "skipped": [_bad(5, "b", where="sample")]}, 0) is None
    record = skipped.end_epoch({}, 0, {"skipped": [_bad(0, "c").as_dict()]})
    assert record["skipped_videos"] == 3
    assert [(s["video_id"], s["subset"], s["epoch"]) for s in record["skipped"]] == \
        [("a", "training", 1), ("b", "training", 1), ("c", "validation", 1)]
    skipped.add(_bad(3, "a"), 1)
    assert skipped.end_epoch({}, 1)["skipped_videos"] == 1
    summary = skipped.summary()
    assert [(v["video_id"], v["epochs"]) for v in summary] == [("a", [1, 2]), ("b", [1]), ("c", [1])]
    # resuming: the history's records give the run's list back
    again = SkippedVideos(config, 6, [record, {"skipped": [dict(record["skipped"][0], epoch=2)]}])
    assert [(v["video_id"], v["epochs"]) for v in again.summary()] == [("a", [1, 2]), ("b", [1]), ("c", [1])]


def test_missing_videos_are_noted_each_epoch_once_and_count_toward_the_share():
    from types import SimpleNamespace
    from cten_common.training import SkippedVideos, TooMuchBadData
    gone = _bad(None, "g", "/d/v/Joy/g", "video 'g' of a.json not found", "index")
    skipped = SkippedVideos(load_run_config(None, ["data.max_bad_share=0.5"]), n_videos=4)
    skipped.add_missing(0, SimpleNamespace(missing=[]), SimpleNamespace(missing=[gone]))
    record = skipped.end_epoch({}, 0, {"skipped": [gone.as_dict()]})        # the report lists it again
    assert record["skipped_videos"] == 1 and record["skipped"][0]["subset"] == "validation"
    skipped.add_missing(1, SimpleNamespace(missing=[]), SimpleNamespace(missing=[gone]))
    assert skipped.end_epoch({}, 1)["skipped_videos"] == 1
    assert [(v["video_id"], v["where"], v["epochs"]) for v in skipped.summary()] == [("g", "index", [1, 2])]
    with pytest.raises(TooMuchBadData, match=r"3 of the run's 4 videos"):
        skipped.add_missing(2, SimpleNamespace(missing=[_bad(None, "h", "/d/v/Joy/h", "not found", "index"),
                                                        _bad(None, "i", "/d/v/Joy/i", "not found", "index")]))


def test_more_bad_videos_than_the_share_stop_with_the_list():
    from cten_common.training import SkippedVideos, TooMuchBadData
    skipped = SkippedVideos(load_run_config(None, ["data.max_bad_share=0.25"]), n_videos=8)
    skipped.add(_bad(0, "a", "/d/a/000001.jpg"), 0)
    skipped.add(_bad(0, "a", "/d/a/000001.jpg"), 1)          # the same video again: still one
    skipped.add(_bad(1, "b", "/d/b"), 0)
    with pytest.raises(TooMuchBadData, match=r"3 of the run's 8 videos .*37.5 %.* 0.25(.|\n)*/d/a/000001.jpg"):
        skipped.add(_bad(2, "c", "/d/c"), 0)


@pytest.mark.parametrize("setting", ["data.on_bad_sample=drop", "data.max_bad_share=2", "data.max_bad_share=x"])
def test_bad_skip_settings_are_refused_by_name(setting):
    with pytest.raises(ValueError, match=setting.split("=")[0]):
        load_run_config(None, [setting])
    assert load_run_config(None).data.on_bad_sample == "stop"
    assert load_run_config(None).data.max_bad_share == 0.05


def test_resume_config_keeps_the_data_paths_as_the_run_wrote_them(tmp_path):
    """config.yaml holds the paths the run used: absolute ones from a --config file, and
    relative ones as --set gave them (relative to the working folder, not the run folder)."""
    from cten_common.training import resume_config
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("model: {}\ndata: {video_root: data/videos, annotation: /abs/ann.json}\n"
                                     "train: {epochs: 3}\n")
    config = resume_config(run)
    assert config.data.video_root == "data/videos"
    assert config.data.annotation == "/abs/ann.json" and config.train.epochs == 3
