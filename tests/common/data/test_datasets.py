"""The dataset core and its Jittor and PyTorch wrappers on a generated synthetic set."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cten_common.data.annotations import load_annotation
from cten_common.data.datasets import ClipConfig, VideoEmotionData, collate, sample_rng
from cten_common.data.errors import DataError
from cten_common.data.synthetic import SyntheticSpec, make_synthetic_dataset
from cten_common.data.transforms import apply_brightness, params_from_array
from cten_common.data.readers import open_video
from cten_common.erasing import ClipViews, erased_view_indices

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
CLIP = ClipConfig(n_segments=4, snippet_len=4, sample_size=32)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    path = make_synthetic_dataset(str(root), SyntheticSpec(classes=3, videos_per_class=3, duration=3.0,
                                                           fps=8, size=48, seed=0), progress=False)
    return root, path


def _data(synthetic, train=True, clip=CLIP, audio=True):
    root, path = synthetic
    items, classes = load_annotation(path, str(root / "videos"),
                                     str(root / "audio") if audio else None, "training")
    return VideoEmotionData(items, classes, clip, train)


def _whole_clip(data, index, params):
    """The old design's clip: every frame of the video, transformed (uint8 [n, 3, S, S])."""
    frames = open_video(data.items[index].video_path).read_all()
    return np.ascontiguousarray(data.transform.apply_uint8(frames, params).transpose(1, 0, 2, 3))


def test_sample_shapes_and_consistency(synthetic):
    data = _data(synthetic)
    s = data.load(0, sample_rng(0, 0, 0))
    assert s["visual"].shape == (4, 3, 4, 32, 32) and s["visual"].dtype == np.uint8
    assert s["audio"].shape == (400, 128) and s["audio"].dtype == np.float32
    assert s["n_frames"] == 24 and "clip" not in s
    assert s["transform"].shape == (7,) and s["brightness"].dtype == np.float32
    # the snippets are the whole transformed video's frames at the sampled indices
    params = params_from_array(s["transform"])
    clip = _whole_clip(data, 0, params)
    assert np.array_equal(s["visual"], clip[s["frame_indices"]].transpose(0, 2, 1, 3, 4))
    assert s["segment_bounds"].shape == (4, 2)


def test_float_frames_equal_the_float_transform(synthetic):
    """uint8 frames plus the brightness factor give the float32 transform's frames."""
    data = _data(synthetic, clip=ClipConfig(4, 4, 32, p_augment=1.0))
    seen = set()
    for seed in range(12):
        s = data.load(1, sample_rng(seed, 0, 1))
        params = params_from_array(s["transform"])
        seen.add(params.augment)
        frames = open_video(data.items[1].video_path).read(s["frame_indices"].ravel())
        expected = data.transform.apply(frames, params).reshape(3, 4, 4, 32, 32).transpose(1, 0, 2, 3, 4)
        assert np.array_equal(apply_brightness(s["visual"], s["brightness"]), expected), params
    assert seen == {"flip", "rotate", "brightness"}


@pytest.mark.parametrize("train", [True, False])
def test_erased_views_read_lazily_equal_the_whole_clip_gather(synthetic, train):
    data = _data(synthetic, train, clip=ClipConfig(4, 4, 32, p_augment=0.8, with_audio=False))
    rng = np.random.default_rng(3)
    samples = [data.load(i, sample_rng(7, 1, i) if train else None) for i in range(len(data))]
    batch = collate(samples)
    gamma = rng.random((len(samples), 4)).astype(np.float32)
    views = erased_view_indices(gamma, batch["n_frames"], 4, rng)
    lazy = data.read_views(batch, views)
    clips = np.stack([_whole_clip(data, i, params_from_array(s["transform"])) for i, s in enumerate(samples)])
    whole = ClipViews(clips)(batch, views)
    for view in views:
        assert lazy[view].dtype == np.uint8 and lazy[view].shape == (len(samples), 4, 3, 4, 32, 32)
        assert np.array_equal(lazy[view], whole[view]), view


def test_a_video_ten_times_longer_does_not_grow_the_sample(tmp_path):
    import cv2
    from cten_common.data.annotations import VideoItem
    items = []
    for name, n in (("short", 60), ("long", 600)):
        path = str(tmp_path / f"{name}.avi")
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 25, (40, 32))
        for k in range(n):
            writer.write(np.full((32, 40, 3), k % 256, np.uint8))
        writer.release()
        items.append(VideoItem(name, 0, "Joy", path))
    for train in (True, False):
        data = VideoEmotionData(items, ["Joy"], ClipConfig(4, 4, 32, with_audio=False), train)
        short, long = (data.load(i, sample_rng(0, 0, i) if train else None) for i in (0, 1))
        assert long["n_frames"] == 600 and short["n_frames"] == 60
        size = lambda s: sum(np.asarray(v).nbytes for v in s.values())   # noqa: E731
        assert size(long) == size(short) and long["visual"].nbytes == 4 * 3 * 4 * 32 * 32


def test_seed_reproduces_and_eval_is_deterministic(synthetic):
    data = _data(synthetic)
    a, b = data.load(1, sample_rng(5, 2, 1)), data.load(1, sample_rng(5, 2, 1))
    c = data.load(1, sample_rng(5, 3, 1))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in ("visual", "audio", "frame_indices"))
    ev = _data(synthetic, train=False)
    assert all(np.array_equal(ev.load(2)[k], ev.load(2)[k]) for k in ("visual", "audio"))
    with pytest.raises(ValueError, match="random generator"):
        data.load(0)


def test_jittor_and_pytorch_datasets_give_identical_arrays(synthetic):
    from cten_jt.data import CTENDataset as JData
    from cten_torch_ref.data import CTENDataset as TData
    data = _data(synthetic)
    j_set = JData(data, batch_size=2, shuffle=False, drop_last=True, seed=9)
    t_set = TData(data, seed=9)
    j_set.set_epoch(1)
    t_set.set_epoch(1)
    j_batch = next(iter(j_set))
    t_batch = next(iter(t_set.loader(batch_size=2, shuffle=False)))
    assert set(j_batch) == set(t_batch)
    for key in j_batch:           # both stay numpy until the engine moves them to the device
        assert isinstance(j_batch[key], np.ndarray) and isinstance(t_batch[key], np.ndarray), key
        assert j_batch[key].dtype == t_batch[key].dtype and np.array_equal(j_batch[key], t_batch[key]), key
    assert len(j_set) == 3          # 6 training videos, batch 2, drop_last


def test_collate_stacks_every_key():
    a = {"visual": np.ones((2, 3, 1, 2, 2), np.uint8), "n_frames": np.int64(3)}
    b = {"visual": np.zeros((2, 3, 1, 2, 2), np.uint8), "n_frames": np.int64(5)}
    out = collate([a, b])
    assert out["visual"].shape == (2, 2, 3, 1, 2, 2) and out["visual"].dtype == np.uint8
    assert list(out["n_frames"]) == [3, 5]


def test_missing_audio_track_errors_unless_silence_is_allowed(synthetic):
    root, path = synthetic
    items, classes = load_annotation(path, str(root / "videos"), None, "training")   # mp4 has no audio
    with pytest.raises(DataError, match="no audio track"):
        VideoEmotionData(items, classes, CLIP, train=False).load(0)
    silent = VideoEmotionData(items, classes, ClipConfig(4, 4, 32, allow_silence=True), train=False)
    assert silent.load(0)["audio"].shape == (400, 128)


def test_scan_reports_every_bad_entry(tmp_path):
    make_synthetic_dataset(str(tmp_path), SyntheticSpec(classes=2, videos_per_class=3, duration=2.0,
                                                        fps=8, size=32, seed=1), progress=False)
    ann = json.load(open(tmp_path / "annotations.json"))
    ids = sorted(ann["database"])
    label = lambda vid: ann["database"][vid]["annotations"]["label"]   # noqa: E731
    (tmp_path / "videos" / label(ids[0]) / f"{ids[0]}.mp4").write_bytes(b"garbage" * 100)
    (tmp_path / "audio" / label(ids[1]) / f"{ids[1]}.wav").write_bytes(b"RIFF....nonsense")
    os.remove(tmp_path / "videos" / label(ids[2]) / f"{ids[2]}.mp4")
    ann["database"]["ghost"] = {"subset": "training", "annotations": {"label": "Nope"}}
    json.dump(ann, open(tmp_path / "annotations.json", "w"))
    out = subprocess.run([sys.executable, "-m", "cten_common.data.check", "--annotation",
                          str(tmp_path / "annotations.json"), "--video-root", str(tmp_path / "videos"),
                          "--audio-root", str(tmp_path / "audio")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr
    bad = [line for line in out.stdout.splitlines() if line.startswith("BAD ")]
    assert len(bad) == 4, out.stdout
    for needle in (f"{ids[0]}.mp4", f"{ids[1]}.wav", ids[2], "'Nope'"):
        assert any(needle in line for line in bad), (needle, bad)


def test_silence_is_logged(synthetic, caplog):
    root, path = synthetic
    items, classes = load_annotation(path, str(root / "videos"), None, "training")
    silent = VideoEmotionData(items, classes, ClipConfig(4, 4, 32, allow_silence=True), train=False)
    with caplog.at_level("WARNING"):
        audio = silent.load(1)["audio"]
    assert "no audio track" in caplog.text and items[1].video_path in caplog.text
    assert np.all(audio == audio[0, 0])                 # silence: one constant (floor) value


def test_video_shorter_than_one_snippet_is_loop_padded(tmp_path):
    import cv2
    from cten_common.data.annotations import VideoItem
    path = str(tmp_path / "short.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 8, (40, 32))
    for value in (30, 200):
        writer.write(np.full((32, 40, 3), value, np.uint8))
    writer.release()
    item = VideoItem("short", 0, "Joy", path)
    data = VideoEmotionData([item], ["Joy"], ClipConfig(4, 4, 32, with_audio=False), train=False)
    s = data.load(0)
    assert s["n_frames"] == 2 and s["visual"].shape == (4, 3, 4, 32, 32)
    assert set(np.unique(s["frame_indices"])) == {0, 1}
    assert np.array_equal(s["frame_indices"][0], [0, 1, 0, 1])


def test_jittor_loader_shuffles_with_workers_and_keeps_samples(synthetic):
    from cten_jt.data import CTENDataset
    data = _data(synthetic, clip=ClipConfig(4, 4, 32, with_audio=False))
    serial = CTENDataset(data, batch_size=2, shuffle=False, num_workers=0, drop_last=False, seed=4)
    by_index = {int(i): v for b in serial for i, v in zip(b["index"], b["visual"])}
    parallel = CTENDataset(data, batch_size=2, shuffle=True, num_workers=2, drop_last=False, seed=4)
    seen = []
    for batch in parallel:
        for i, v in zip(batch["index"], batch["visual"]):
            seen.append(int(i))
            assert np.array_equal(v, by_index[int(i)]), f"sample {i} differs with workers"
    assert sorted(seen) == list(range(len(data)))
    dropped = CTENDataset(data, batch_size=4, shuffle=True, drop_last=True, seed=4)
    assert sum(1 for _ in dropped) == 1 and len(dropped) == 1


def test_scan_from_a_config_with_relative_paths(synthetic, tmp_path):
    root, path = synthetic
    cfg = root / "check.yaml"
    cfg.write_text("data:\n  annotation: annotations.json\n  video_root: videos\n  audio_root: audio\n")
    out = subprocess.run([sys.executable, "-m", "cten_common.data.check", "--config", str(cfg)],
                         cwd=str(tmp_path), capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "9 videos indexed, 0 problems" in out.stdout
