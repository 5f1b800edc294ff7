"""cten-prepare-dataset (cten_common.data.prepare): splits, and the frame-folder layout it caches feeds the dataset."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cten_common.data.annotations import load_annotation
from cten_common.data.datasets import ClipConfig, VideoEmotionData
from cten_common.data.synthetic import SyntheticSpec, make_synthetic_dataset
from cten_common.data.readers import open_video

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _run(*args):
    # PYTHONPATH: this checkout's code, not whichever one the environment installed
    return subprocess.run([sys.executable, "-m", "cten_common.data.prepare", *map(str, args)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": ROOT})


def test_ratio_runs_folds_and_caches(tmp_path):
    make_synthetic_dataset(str(tmp_path / "syn"), SyntheticSpec(classes=2, videos_per_class=6,
                           duration=2.0, fps=8, size=32, seed=2), progress=False)
    videos = tmp_path / "syn" / "videos"
    out = _run("--videos", videos, "--out", tmp_path / "ann.json", "--runs", 3, "--seed", 1)
    assert out.returncode == 0, out.stderr
    runs = [json.load(open(tmp_path / f"ann_{i:02d}.json")) for i in (1, 2, 3)]
    for run in runs:
        assert run["labels"] == ["Anger", "Anticipation"] and len(run["database"]) == 12
        for label in run["labels"]:
            subs = [e["subset"] for e in run["database"].values() if e["annotations"]["label"] == label]
            assert subs.count("validation") == 2 and subs.count("training") == 4
    assert runs[0]["database"] != runs[1]["database"]

    out = _run("--videos", videos, "--out", tmp_path / "k.json", "--folds", 3)
    assert out.returncode == 0, out.stderr
    folds = [json.load(open(tmp_path / f"k_{i:02d}.json"))["database"] for i in (1, 2, 3)]
    for vid in folds[0]:
        assert sum(f[vid]["subset"] == "validation" for f in folds) == 1

    out = _run("--videos", videos, "--out", tmp_path / "one.json", "--frames-out", tmp_path / "frames",
               "--audio-out", tmp_path / "wav")
    assert out.returncode == 1, out.stdout            # synthetic mp4s carry no audio track
    assert out.stdout.count("BAD ") == 12 and "no audio track" in out.stdout
    folder = tmp_path / "frames" / "Anger" / "Anger_0000"
    assert (folder / "n_frames").read_text().strip() == "16" and (folder / "000016.jpg").exists()
    assert float((folder / "fps").read_text()) == 8.0      # the rate, beside n_frames
    assert open_video(str(folder)).fps == 8.0
    src = open_video(str(videos / "Anger" / "Anger_0000.mp4")).read(range(16)).astype(int)
    cached = open_video(str(folder)).read(range(16)).astype(int)
    assert np.abs(cached - src).mean() < 5              # JPEG (quality 95) of a noisy texture
    assert np.abs(cached[1:] - src[:-1]).mean() > 2 * np.abs(cached - src).mean()   # same order


def test_dataset_over_the_reference_frame_folder_layout(tmp_path):
    make_synthetic_dataset(str(tmp_path / "syn"), SyntheticSpec(classes=2, videos_per_class=3,
                           duration=2.0, fps=8, size=32, seed=3), progress=False)
    assert _run("--videos", tmp_path / "syn" / "videos", "--out", tmp_path / "x.json",
                "--frames-out", tmp_path / "frames").returncode == 0
    items, classes = load_annotation(tmp_path / "syn" / "annotations.json", str(tmp_path / "frames"),
                                     str(tmp_path / "syn" / "audio"), "training")
    assert all(os.path.isdir(i.video_path) for i in items)
    sample = VideoEmotionData(items, classes, ClipConfig(4, 4, 32), train=False).load(0)
    assert sample["visual"].shape == (4, 3, 4, 32, 32) and sample["n_frames"] == 16


def test_cached_filterbanks_give_the_same_audio_features(tmp_path):
    make_synthetic_dataset(str(tmp_path / "syn"), SyntheticSpec(classes=2, videos_per_class=3,
                           duration=2.0, fps=8, size=32, seed=4), progress=False)
    out = _run("--videos", tmp_path / "syn" / "videos", "--out", tmp_path / "x.json",
               "--features-out", tmp_path / "fb", "--audio-in", tmp_path / "syn" / "audio")
    assert out.returncode == 0, out.stdout + out.stderr
    ann = str(tmp_path / "syn" / "annotations.json")
    videos = str(tmp_path / "syn" / "videos")
    decoded = load_annotation(ann, videos, str(tmp_path / "syn" / "audio"), "training")
    cached = load_annotation(ann, videos, str(tmp_path / "fb"), "training")
    assert cached[0][0].audio_path.endswith(".npy")
    clip = ClipConfig(4, 4, 32)
    for train in (False, True):
        rng = (lambda: np.random.default_rng(1)) if train else (lambda: None)
        a = VideoEmotionData(*decoded, clip, train).load(0, rng())["audio"]
        b = VideoEmotionData(*cached, clip, train).load(0, rng())["audio"]
        assert np.array_equal(a, b)
    np.save(tmp_path / "fb" / "Anger" / "bad.npy", np.zeros((5, 3), np.float32))
    from cten_common.data.fbank import load_cached_fbank
    from cten_common.data.errors import DataError
    with pytest.raises(DataError, match=r"bad.npy: a cached filterbank must be \[frames, 128\]"):
        load_cached_fbank(str(tmp_path / "fb" / "Anger" / "bad.npy"))


def test_frame_stores_end_to_end(tmp_path):
    """--store-out writes DIR/{label}/{id}.frames from each video, a rerun leaves them alone,
    and an annotation with DIR as video root finds and reads them."""
    from cten_common.data.frame_store_writer import encode_frame
    from cten_common.data.readers.frame_store import FrameStore
    from cten_common.data.readers.jpeg import decode_jpeg
    make_synthetic_dataset(str(tmp_path / "syn"), SyntheticSpec(classes=2, videos_per_class=1,
                           duration=2.0, fps=8, size=32, seed=5), progress=False)
    videos = tmp_path / "syn" / "videos"
    args = ("--videos", videos, "--out", tmp_path / "x.json", "--store-out", tmp_path / "st",
            "--store-short-side", 24, "--store-quality", 80)
    out = _run(*args)
    assert out.returncode == 0, out.stdout + out.stderr
    stores = sorted((tmp_path / "st").glob("*/*.frames"))
    assert [s.relative_to(tmp_path / "st").as_posix() for s in stores] == \
        ["Anger/Anger_0000.frames", "Anticipation/Anticipation_0000.frames"]
    for store in stores:
        s = open_video(str(store))
        assert isinstance(s, FrameStore) and (s.n_frames, s.height, s.width) == (16, 24, 24)
        assert s.fps == 8.0 and s.header.quality == 80
        src = open_video(str(videos / store.parent.name / (store.stem + ".mp4"))).read_all()
        want = np.stack([decode_jpeg(encode_frame(f, (24, 24), 80), "x") for f in src])
        assert np.array_equal(s.read_all(), want)
    mtimes = [s.stat().st_mtime_ns for s in stores]
    again = _run(*args)
    assert again.returncode == 0 and "2 already current" in again.stdout
    assert [s.stat().st_mtime_ns for s in stores] == mtimes
    items, _ = load_annotation(tmp_path / "syn" / "annotations.json", str(tmp_path / "st"),
                               str(tmp_path / "syn" / "audio"), "training")
    assert items and all(i.video_path.endswith(".frames") for i in items)
    assert open_video(items[0].video_path).read([15, 0]).shape == (2, 24, 24, 3)
    bad = _run("--videos", videos, "--out", tmp_path / "y.json", "--store-out", tmp_path / "st",
               "--store-quality", 0)
    assert bad.returncode == 2 and "--store-quality must be in 1..100" in bad.stderr


def test_a_variable_rate_video_gets_its_mean_rate_and_a_note(tmp_path):
    import shutil
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    from cten_common.data.prepare import folder_rate
    path = tmp_path / "vfr.mp4"                 # 20 frames at 10 fps, then 60 at 30 fps: 80 in 4 s
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=2",
                    "-f", "lavfi", "-i", "testsrc=size=64x48:rate=30:duration=2", "-filter_complex",
                    "[0:v]settb=1/30[a];[1:v]settb=1/30[b];[a][b]concat=n=2:v=1[v]", "-map", "[v]",
                    "-fps_mode", "vfr", "-pix_fmt", "yuv420p", "-c:v", "libx264", str(path)], check=True)
    fps, note = folder_rate(open_video(str(path)))
    assert fps == pytest.approx(80 / 4.0) and "variable frame rate" in note
    cfr = tmp_path / "cfr.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=1",
                    "-pix_fmt", "yuv420p", "-c:v", "libx264", str(cfr)], check=True)
    assert folder_rate(open_video(str(cfr))) == (25.0, None)
