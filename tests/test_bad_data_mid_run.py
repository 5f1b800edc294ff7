"""Bad input met in the middle of a training step (the erased views' frames are read
after the original view's forward): a clear error naming the file, and the run's
last checkpoint left as it was."""
import os

import cv2
import numpy as np
import pytest

from cten_common.data.datasets import build_data, sample_rng
from cten_common.data.errors import DataError
from cten_common.data.readers import open_video
from cten_common.config import load_run_config
from helpers import make_tiny_run


def _checkpoints(run):
    """Bytes of the run's checkpoint files (last/best, any format)."""
    return {n: (run / n).read_bytes() for n in sorted(os.listdir(run)) if n.startswith(("last.", "best."))}


def _to_frame_folders(root, items):
    """The reference layout: every frame of each video as a jpg, plus n_frames."""
    for item in items:
        folder = root / "frames" / os.path.basename(os.path.dirname(item.video_path)) / item.video_id
        folder.mkdir(parents=True)
        frames = open_video(item.video_path).read_all()
        for k, frame in enumerate(frames):
            cv2.imwrite(str(folder / f"{k + 1:06d}.jpg"), np.ascontiguousarray(frame[..., ::-1]))
        (folder / "n_frames").write_text(str(len(frames)))


@pytest.fixture
def run(tmp_path):
    path = make_tiny_run(tmp_path, videos_per_class=2, duration=4.0, train={"epochs": 2, "batch_size": 2})
    config = load_run_config(str(path))
    items = build_data(config, "training", True).items + build_data(config, "validation", False).items
    _to_frame_folders(tmp_path / "data", items)
    config = config.updated({"data": {"video_root": str(tmp_path / "data" / "frames")}})
    return config, tmp_path / "run"


def test_a_frame_file_deleted_after_indexing(run):
    from cten_jt.train import train
    config, out = run
    train(config, str(out), progress=False, stop_after=1)
    before = _checkpoints(out)
    assert before
    # delete, for every training video, the frames that epoch 2's original view does not
    # use: the original view still loads, the erased views (other offsets, other
    # segments) need a deleted file in the middle of the step
    data = build_data(config, "training", True)
    deleted = []
    for i, item in enumerate(data.items):
        used = set(data.load(i, sample_rng(config.train.seed, 1, i))["frame_indices"].ravel().tolist())
        for k in range(open_video(item.video_path).n_frames):
            if k not in used:
                os.remove(os.path.join(item.video_path, f"{k + 1:06d}.jpg"))
                deleted.append(os.path.join(item.video_path, f"{k + 1:06d}.jpg"))
    with pytest.raises(DataError) as err:
        train(config, str(out), resume=True, progress=False)
    assert err.value.path in deleted and "missing frame" in str(err.value), str(err.value)
    assert _checkpoints(out) == before


def test_a_video_truncated_during_the_step(run, monkeypatch):
    import cten_jt.train as trainer
    from cten_common.data.datasets import VideoEmotionData
    config, out = run
    config = config.updated({"data": {"video_root": config.data.video_root.replace("frames", "videos")}})
    trainer.train(config, str(out), progress=False, stop_after=1)
    before = _checkpoints(out)
    real = VideoEmotionData.read_views
    cut = []

    def truncate_then_read(self, batch, views):      # the file loses its tail mid-step
        path = self.items[int(batch["index"][0])].video_path
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 3)
        cut.append(path)
        return real(self, batch, views)
    monkeypatch.setattr(VideoEmotionData, "read_views", truncate_then_read)
    with pytest.raises(DataError) as err:
        trainer.train(config, str(out), resume=True, progress=False)
    assert err.value.path == cut[0], str(err.value)
    assert _checkpoints(out) == before


# ---------------------------------------------------------------------------
# data.on_bad_sample: skip (and stop, the default)


def _damage(config):
    """Damage the reference layout three ways; returns {video_id: damaged path}: a training
    video whose frame 0 is random bytes, a training video whose n_frames says 500 (it
    holds 32), and a validation video whose folder holds n_frames and no JPEG."""
    train = build_data(config, "training", True).items
    val = build_data(config, "validation", False).items
    a, b, c = train[0], train[2], val[1]
    with open(os.path.join(a.video_path, "000001.jpg"), "wb") as f:
        f.write(np.random.default_rng(0).bytes(4000))
    with open(os.path.join(b.video_path, "n_frames"), "w") as f:
        f.write("500\n")
    for name in os.listdir(c.video_path):
        if name.endswith(".jpg"):
            os.remove(os.path.join(c.video_path, name))
    return {a.video_id: os.path.join(a.video_path, "000001.jpg"), b.video_id: b.video_path,
            c.video_id: c.video_path}


@pytest.fixture
def damaged(tmp_path):
    path = make_tiny_run(tmp_path, videos_per_class=3, duration=4.0, train={"epochs": 2, "batch_size": 2})
    config = load_run_config(str(path))
    items = build_data(config, "training", True).items + build_data(config, "validation", False).items
    _to_frame_folders(tmp_path / "data", items)
    config = config.updated({"data": {"video_root": str(tmp_path / "data" / "frames")}})
    return config, tmp_path / "run", _damage(config)


def _trainer(framework):
    if framework == "jittor":
        import cten_jt.train as trainer
    else:
        import cten_torch_ref.train as trainer
    return trainer


@pytest.mark.parametrize("framework", ["jittor", "torch"])
def test_skip_finishes_and_lists_every_bad_video(damaged, framework):
    import json
    config, out, bad = damaged
    config = config.updated({"data": {"on_bad_sample": "skip", "max_bad_share": 0.5}})
    summary = _trainer(framework).train(config, str(out), progress=False)
    assert summary["epochs_done"] == 2
    listed = {v["video_id"]: v for v in summary["skipped_videos"]}
    assert set(listed) == set(bad), listed
    for vid, path in bad.items():
        assert listed[vid]["path"].startswith(path), (listed[vid], path)
        assert listed[vid]["epochs"] == [1, 2]
    assert "frame 0: not a JPEG" in listed[next(iter(bad))]["problem"]      # named by the check before the run
    assert {v["where"] for v in listed.values()} == {"check before the run"}
    assert {v["subset"] for v in listed.values()} == {"training", "validation"}
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for r in records:                      # two training videos and one validation video each epoch
        assert r["skipped_videos"] == 3 and {s["video_id"] for s in r["skipped"]} == set(bad), r["skipped"]
        assert all(np.isfinite(r["step_losses"]))
    assert json.loads((out / "summary.json").read_text())["skipped_videos"] == summary["skipped_videos"]


@pytest.mark.parametrize("framework", ["jittor", "torch"])
def test_stop_is_the_default_and_names_the_file(damaged, framework):
    config, out, bad = damaged
    assert config.data.on_bad_sample == "stop"
    with pytest.raises(DataError) as err:
        _trainer(framework).train(config, str(out), progress=False)
    assert any(err.value.path.startswith(p) for p in bad.values()), str(err.value)


def test_more_bad_videos_than_the_stated_share_stop_the_run(damaged):
    from cten_common.training import TooMuchBadData
    config, out, bad = damaged
    config = config.updated({"data": {"on_bad_sample": "skip", "max_bad_share": 0.2}})      # 1 of 6 videos allowed
    with pytest.raises(TooMuchBadData, match=r"2 of the run's 6 videos failed to read .* data.max_bad_share = 0.2"):
        _trainer("jittor").train(config, str(out), progress=False)
    assert not (out / "last.safetensors").exists()


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("framework", ["jittor", "torch"])
def test_a_skipped_video_changes_no_other_draw(damaged, framework, workers):
    """The loader's batches with bad videos skipped hold exactly the other videos' samples
    of the undamaged set, row for row, and each batch's erasing draws for them are the same
    (in the loader's process or a worker process: the BadSample travels with the batch)."""
    from cten_common.data.datasets import VideoEmotionData
    from cten_common.erasing import erasing_uniforms, kept_rows_rng
    from cten_common.training import erasing_rng
    config, out, bad = damaged
    config = config.updated({"data": {"on_bad_sample": "skip"}})
    damaged_data = build_data(config, "training", True)
    clean = VideoEmotionData(damaged_data.items, damaged_data.class_names,
                             damaged_data.clip.__class__(**{**damaged_data.clip.__dict__, "on_bad_sample": "stop"}),
                             True)
    clean_items = []
    for item in clean.items:            # the clean set: the same videos from the mp4 files
        video = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(item.video_path))), "videos",
                             item.label_name, item.video_id + ".mp4")
        clean_items.append(item.__class__(**{**item.__dict__, "video_path": video}))
    clean.items = clean_items
    if framework == "jittor":
        from cten_jt.data import CTENDataset
        loaders = [CTENDataset(d, batch_size=2, shuffle=True, num_workers=w, drop_last=True, seed=3)
                   for d, w in ((damaged_data, workers), (clean, 0))]
        for loader in loaders:
            loader.set_epoch(1)
        runs = [list(iter(loader)) for loader in loaders]
    else:
        from cten_torch_ref.data import CTENDataset
        sets = [CTENDataset(d, seed=3) for d in (damaged_data, clean)]
        for s in sets:
            s.set_epoch(1)
        runs = [list(s.loader(batch_size=2, shuffle=True, num_workers=w, drop_last=True))
                for s, w in zip(sets, (workers, 0))]
    rng_bad, rng_clean = erasing_rng(3, 1), erasing_rng(3, 1)
    skipped = 0
    for b_bad, b_clean in zip(*runs):
        rows = b_bad.get("slot", np.arange(len(b_clean["index"])))
        skipped += len(b_bad.get("skipped", []))
        u_bad = erasing_uniforms(kept_rows_rng(rng_bad, b_bad), len(rows), 2)
        u_clean = erasing_uniforms(rng_clean, len(b_clean["index"]), 2)
        assert np.array_equal(u_bad, u_clean[rows])
        for key in ("index", "frame_indices", "transform", "brightness", "audio", "label"):
            if len(rows):
                assert np.array_equal(b_bad[key], b_clean[key][rows]), key
        # frame folders hold the mp4s' frames re-encoded as JPEG: close, not equal
        if len(rows):
            diff = np.abs(b_bad["visual"].astype(int) - b_clean["visual"][rows].astype(int)).mean()
            assert diff < 8, diff
    assert skipped == 2


@pytest.mark.parametrize("framework", ["jittor", "torch"])
def test_skip_drops_a_video_whose_erased_views_fail(damaged, framework, monkeypatch):
    """A video that loads but whose erased views fail in the middle of the step leaves that
    step's loss (all three views); the run finishes and lists it (where: erased views)."""
    from cten_common.data.datasets import VideoEmotionData
    config, out, bad = damaged
    config = config.updated({"data": {"on_bad_sample": "skip", "max_bad_share": 0.9}})
    data = build_data(config, "training", True)
    victim = data.items[1].video_id
    real = VideoEmotionData.read_view

    def failing(self, sample, indices):
        if self.items[int(sample["index"])].video_id == victim:
            raise DataError(self.items[int(sample["index"])].video_path, "frame 3: cannot decode as an image")
        return real(self, sample, indices)
    monkeypatch.setattr(VideoEmotionData, "read_view", failing)
    summary = _trainer(framework).train(config, str(out), progress=False)
    listed = {v["video_id"]: v for v in summary["skipped_videos"]}
    assert listed[victim]["where"] == "erased views" and listed[victim]["epochs"] == [1, 2], listed
    assert set(listed) == set(bad) | {victim}
