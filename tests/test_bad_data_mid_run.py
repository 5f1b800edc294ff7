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
from cten_common.run_config import load_run_config
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
    config["data"]["video_root"] = str(tmp_path / "data" / "frames")
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
        used = set(data.load(i, sample_rng(config["train"]["seed"], 1, i))["frame_indices"].ravel().tolist())
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
    config["data"]["video_root"] = config["data"]["video_root"].replace("frames", "videos")
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
