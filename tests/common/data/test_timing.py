"""A video's frame rate and its source (cten_common.data.timing): frame folders in the
reference's layout at 15, 25 and 29.97 fps, with and without an mp3, with and without an
fps file, give detection times within one frame of the same clip's mp4 and the same mAP;
a folder with no rate source says so."""
import json
import logging
import shutil
import subprocess

import numpy as np
import pytest

from cten_common.config import TrainConfig
from cten_common.data.annotations import VideoItem, load_annotation
from cten_common.data.audio import audio_duration
from cten_common.data.check import main as check_main
from cten_common.data.datasets import ClipConfig, VideoEmotionData
from cten_common.data.errors import DataError
from cten_common.data.readers import open_video
from cten_common.data.timing import (ASSUMED, ANNOTATION_DURATION, ANNOTATION_FPS, AUDIO_DURATION, CONFIG,
                                     CONTAINER, FPS_FILE, frame_timing, rate_from_duration)
from cten_common.data.readers.frame_folder import write_rate_file
from cten_common.evaluation import evaluate_model

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")

RATES = {"15": "15", "25": "25", "29.97": "30000/1001"}
SECONDS = 4.0
T = 8
CLASSES = ["Joy", "Fear"]
# per clip: ground truth in seconds, and the attention the stand-in model gives it
SPANS = {"15": [[0.5, 2.0]], "25": [[1.0, 2.0], [2.5, 3.9]], "29.97": [[2.0, 3.5]]}
GAMMA = {"15": [0, 1, 1, 1, 0.2, 0, 0, 0], "25": [0, 0, 1, 1, 0, 0.9, 1, 0.3],
         "29.97": [0, 0.1, 0, 0, 1, 1, 0.8, 0]}


def _ffmpeg(*args):
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def reference_layout(tmp_path_factory):
    """The same clips as mp4 files, as frame folders made the way the reference's video2jpg.py
    makes them (ffmpeg, every frame at the clip's own rate, scale=-1:H, n_frames; no fps
    file), as frame folders with an fps file, and as mp3 files; one annotation for all."""
    root = tmp_path_factory.mktemp("layout")
    database = {}
    for name, rate in RATES.items():
        vid = "clip_" + name.replace(".", "_")
        for sub in ("mp4", "frames", "mp3"):
            (root / sub / "Joy").mkdir(parents=True, exist_ok=True)
        mp4 = root / "mp4" / "Joy" / f"{vid}.mp4"
        _ffmpeg("-f", "lavfi", "-i", f"testsrc=size=64x48:rate={rate}:duration={SECONDS}",
                "-f", "lavfi", "-i", f"sine=frequency=440:duration={SECONDS}", "-shortest",
                "-pix_fmt", "yuv420p", "-c:v", "libx264", "-c:a", "aac", str(mp4))
        folder = root / "frames" / "Joy" / vid
        folder.mkdir()
        _ffmpeg("-i", str(mp4), "-vf", "scale=-1:32", str(folder / "%06d.jpg"))       # video2jpg.py
        n = len(list(folder.glob("*.jpg")))
        (folder / "n_frames").write_text(str(n))
        _ffmpeg("-i", str(mp4), "-vn", str(root / "mp3" / "Joy" / f"{vid}.mp3"))
        database[vid] = {"subset": "validation", "annotations": {"label": "Joy"}, "segments": SPANS[name]}
    shutil.copytree(root / "frames", root / "frames_fps")
    for name, rate in RATES.items():
        num, _, den = rate.partition("/")
        write_rate_file(root / "frames_fps" / "Joy" / ("clip_" + name.replace(".", "_")),
                        float(num) / float(den or 1))
    with open(root / "ann.json", "w") as f:
        json.dump({"labels": CLASSES, "database": database}, f)
    return root


class _Model:
    def eval(self):
        return self


def _predict(model, batch, rng=None, theta=0.7, reader=None):
    """A stand-in model: class Joy, and each clip's own attention (GAMMA)."""
    gamma = np.stack([GAMMA[_NAME_OF[int(i)]] for i in batch["index"]]).astype(np.float32)
    logits = np.tile(np.array([[1.5, 0.0]], np.float32), (len(gamma), 1))
    return {"logits": logits, "gamma": gamma, "context_logits": logits}


_NAME_OF = {}     # data set index -> clip name (every data set lists the clips in one order)


def _data(root, videos, audio=None, frame_fps=None):
    items, classes = load_annotation(str(root / "ann.json"), str(root / videos),
                                     str(root / audio) if audio else None, "validation")
    for i, item in enumerate(items):
        _NAME_OF[i] = item.video_id[len("clip_"):].replace("_", ".")
    return VideoEmotionData(items, classes, ClipConfig(T, 1, 16, with_audio=False, frame_fps=frame_fps),
                            train=False)


def _evaluate(data):
    return evaluate_model(_Model(), data, TrainConfig(batch_size=2, seed=0, theta=0.7), _predict, progress=False)


def _spans(report):
    return {v["video_id"]: [(d["start_s"], d["end_s"], d["class"]) for d in v["detections"]]
            for v in report["per_video"]}


@pytest.mark.parametrize("videos,audio,source", [("frames_fps", "mp3", FPS_FILE),
                                                 ("frames_fps", None, FPS_FILE),
                                                 ("frames", "mp3", AUDIO_DURATION)])
def test_frame_folders_detect_what_the_mp4_detects(reference_layout, videos, audio, source):
    root = reference_layout
    from_mp4 = _evaluate(_data(root, "mp4"))
    from_folders = _evaluate(_data(root, videos, audio))
    assert {v["fps_source"] for v in from_mp4["per_video"]} == {CONTAINER}
    assert {v["fps_source"] for v in from_folders["per_video"]} == {source}
    assert "frame_rate_warning" not in from_folders
    mp4_spans, folder_spans = _spans(from_mp4), _spans(from_folders)
    fps = {v["video_id"]: v["fps"] for v in from_mp4["per_video"]}
    assert sorted(fps.values()) == pytest.approx([15, 25, 30000 / 1001])
    for vid, spans in mp4_spans.items():
        assert len(spans) == len(folder_spans[vid]) >= 1, vid
        for (s0, e0, c0), (s1, e1, c1) in zip(spans, folder_spans[vid]):
            assert c0 == c1 == "Joy"
            assert abs(s0 - s1) <= 1 / fps[vid] and abs(e0 - e1) <= 1 / fps[vid], (vid, spans, folder_spans[vid])
    for key in ("mAP@0.1", "mAP@0.2", "mAP@0.3", "mAP@0.4", "mAP@0.5", "mAP"):
        assert from_folders["detection"][key] == pytest.approx(from_mp4["detection"][key], abs=1e-9), key
    assert from_mp4["detection"]["mAP"] > 0.3        # the spans are found, so a halved time would show
    # the ground truth is listed beside the detections
    listed = {v["video_id"]: v["ground_truth"] for v in from_folders["per_video"]}
    assert listed["clip_25"] == [{"start_s": 1.0, "end_s": 2.0, "class": "Joy"},
                                 {"start_s": 2.5, "end_s": 3.9, "class": "Joy"}]


def test_a_folder_without_rate_source_warns_once_and_names_the_videos(reference_layout, caplog):
    data = _data(reference_layout, "frames")
    with caplog.at_level(logging.WARNING):
        first = _evaluate(data)
        second = _evaluate(data)                       # the next epoch's evaluation: no repeat
    warnings = [r for r in caplog.records if "no frame rate source" in r.getMessage()]
    assert len(warnings) == 1, caplog.text
    for report in (first, second):
        assert "clip_15" in report["frame_rate_warning"] and "unreliable" in report["frame_rate_warning"]
        assert sorted(report["frame_rates"]["assumed"]) == ["clip_15", "clip_25", "clip_29_97"]
        assert {v["fps_source"] for v in report["per_video"]} == {ASSUMED}
    # and what it would otherwise hide: at 15 fps every time is half what it should be
    wrong = {v["video_id"]: v["detections"] for v in first["per_video"]}["clip_15"]
    right = {v["video_id"]: v["detections"] for v in _evaluate(_data(reference_layout, "mp4"))["per_video"]}
    assert wrong[0]["end_s"] == pytest.approx(right["clip_15"][0]["end_s"] / 2, abs=1e-5)


def test_sources_in_order(reference_layout, tmp_path):
    root = reference_layout
    folder = open_video(str(root / "frames" / "Joy" / "clip_15"))      # 60 frames, no fps file
    n = folder.n_frames
    mp3 = str(root / "mp3" / "Joy" / "clip_15.mp3")
    item = lambda **kw: VideoItem("clip_15", 0, "Joy", folder.path, **kw)    # noqa: E731
    assert frame_timing(folder, item(), 12.5).source == CONFIG
    assert frame_timing(folder, item(), 12.5).fps == 12.5
    assert frame_timing(folder, item(audio_path=mp3), 12.5).source == AUDIO_DURATION
    assert frame_timing(folder, item(audio_path=mp3)).fps == 15.0                  # snapped
    by_duration = frame_timing(folder, item(duration=n / 15 + 0.02, audio_path=mp3))
    assert (by_duration.source, by_duration.fps) == (ANNOTATION_DURATION, 15.0)
    assert frame_timing(folder, item(fps=15, duration=99.0)).source == ANNOTATION_FPS
    with_file = open_video(str(root / "frames_fps" / "Joy" / "clip_15"))
    assert frame_timing(with_file, item(fps=25.0)).source == FPS_FILE
    none = frame_timing(folder, item())
    assert (none.source, none.fps, none.reliable) == (ASSUMED, 30.0, False)
    assert "unreliable" in none.note


def test_a_rate_the_audio_contradicts_is_noted(reference_layout, tmp_path, capsys):
    """An fps file saying 30 for frames taken at 15 fps: the mp3 lasts twice as long."""
    root = reference_layout
    folder = tmp_path / "frames" / "Joy" / "clip_15"
    shutil.copytree(root / "frames" / "Joy" / "clip_15", folder)
    write_rate_file(folder, 30.0)
    mp3 = str(root / "mp3" / "Joy" / "clip_15.mp3")
    timing = frame_timing(open_video(str(folder)), VideoItem("clip_15", 0, "Joy", str(folder), mp3))
    assert timing.source == FPS_FILE and timing.fps == 30.0          # the fps file still wins
    assert timing.note and mp3 in timing.note and "frames apart" in timing.note
    # an fps file that agrees with the mp3: no note
    write_rate_file(folder, 15.0)
    assert frame_timing(open_video(str(folder)), VideoItem("clip_15", 0, "Joy", str(folder), mp3)).note is None


def test_check_data_lists_each_rate_and_its_source(reference_layout, capsys):
    root = reference_layout
    code = check_main(["--annotation", str(root / "ann.json"), "--video-root", str(root / "frames"),
                       "--no-audio"])
    out = capsys.readouterr().out
    assert code == 0, out
    rates = [line for line in out.splitlines() if line.startswith("RATE ")]
    assert len(rates) == 3 and all("30.000 fps (assumed)" in line for line in rates), out
    assert "WARNING: 3 video(s) have no frame rate source" in out
    code = check_main(["--annotation", str(root / "ann.json"), "--video-root", str(root / "frames"),
                       "--audio-root", str(root / "mp3")])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith("RATE ")}
    assert "15.000 fps (audio duration)" in lines["clip_15"]
    assert "25.000 fps (audio duration)" in lines["clip_25"]
    assert "(audio duration)" in lines["clip_29_97"]
    assert "frame rates from: audio duration 3" in out and "WARNING" not in out
    code = check_main(["--annotation", str(root / "ann.json"), "--video-root", str(root / "frames"),
                       "--no-audio", "--frame-fps", "24"])
    out = capsys.readouterr().out
    assert "frame rates from: config data.frame_fps 3" in out and "WARNING" not in out


def test_rate_from_duration_snaps_only_within_two_frames():
    # 3210 frames over 107.1 s: 29.97 puts the end at 107.1 * 29.97 = 3209.79 frames (0.2 off)
    assert rate_from_duration(3210, 107.1) == (pytest.approx(30000 / 1001), True)
    # 3210 frames over 107.0 s: 30 fps puts it at exactly 3210
    assert rate_from_duration(3210, 107.0) == (30.0, True)
    # 100 frames over 3 s: 33.3 fps; the nearest standard rate (30) ends 10 frames off: not snapped
    fps, snapped = rate_from_duration(100, 3.0)
    assert fps == pytest.approx(100 / 3) and not snapped
    # an mp3 60 ms longer than 3210 frames at 25 fps (128.4 s): 25 is 1.5 frames off, snapped
    assert rate_from_duration(3210, 128.46) == (25.0, True)


def test_audio_duration_from_the_header_and_from_a_cached_filterbank(reference_layout, tmp_path):
    mp3 = reference_layout / "mp3" / "Joy" / "clip_25.mp3"
    assert audio_duration(mp3) == pytest.approx(SECONDS, abs=0.06)      # the encoder adds its priming
    wav = tmp_path / "a.wav"
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:duration=2.5", "-ar", "16000", str(wav))
    assert audio_duration(wav) == pytest.approx(2.5, abs=1e-6)
    # 2.5 s at 16 kHz: 1 + (40000 - 400) // 160 = 248 filterbank frames
    np.save(tmp_path / "a.npy", np.zeros((248, 128), np.float32))
    assert audio_duration(tmp_path / "a.npy") == pytest.approx(2.5, abs=0.01)
    with pytest.raises(DataError) as e:
        audio_duration(tmp_path / "missing.mp3")
    assert e.value.path == str(tmp_path / "missing.mp3")


def test_variable_frame_rate_uses_the_timestamps(tmp_path):
    """20 frames at 10 fps then 60 at 30 fps: frame 20 starts at 2 s, not at 20 / mean rate."""
    path = tmp_path / "Joy" / "vfr.mp4"
    path.parent.mkdir()
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=2",
            "-f", "lavfi", "-i", "testsrc=size=64x48:rate=30:duration=2",
            "-filter_complex", "[0:v]settb=1/30[a];[1:v]settb=1/30[b];[a][b]concat=n=2:v=1[v]",
            "-map", "[v]", "-fps_mode", "vfr", "-pix_fmt", "yuv420p", "-c:v", "libx264", str(path))
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"labels": CLASSES, "database": {
        "vfr": {"subset": "validation", "annotations": {"label": "Joy"}, "segments": [[2.7, 4.0]]}}}))
    items, classes = load_annotation(str(ann), str(tmp_path), None, "validation")
    data = VideoEmotionData(items, classes, ClipConfig(4, 1, 16, with_audio=False), train=False)
    timing = data.timing(0)
    assert timing.source == CONTAINER and open_video(str(path)).n_frames == 80
    assert timing.boundaries(80)[[0, 20, 21, 80]] == pytest.approx([0, 2.0, 2.0 + 1 / 30, 4.0], abs=1e-4)

    def predict(model, batch, rng=None, theta=0.7, reader=None):
        logits = np.array([[1.0, 0.0]], np.float32)
        return {"logits": logits, "gamma": np.array([[0, 0, 1, 1]], np.float32), "context_logits": logits}

    report = evaluate_model(_Model(), data, TrainConfig(batch_size=1, seed=0, theta=0.7), predict, progress=False)
    # segments of 20 frames: [0, 2], [2, 2.667], [2.667, 3.333], [3.333, 4] s; the last two kept
    (det,) = report["per_video"][0]["detections"]
    assert (det["start_s"], det["end_s"]) == (pytest.approx(2 + 20 / 30, abs=1e-3), pytest.approx(4.0, abs=1e-3))
    assert report["detection"]["mAP@0.5"] == 1.0         # against [2.7, 4]: tIoU 1.3 / 1.333 = 0.975
    # the mean rate (80 frames / 4 s = 20 fps) would have put it at [2.0, 4.0]: tIoU 0.65
    assert timing.fps != pytest.approx(30.0) and timing.fps != pytest.approx(10.0)


def test_config_frame_fps_is_validated():
    from cten_common.config import load_run_config
    assert load_run_config(None, ["data.frame_fps=25"]).data.frame_fps == 25
    assert load_run_config(None).data.frame_fps is None
    for bad in ("0", "-3", "fast", "true", ".nan"):
        with pytest.raises(ValueError, match="data.frame_fps"):
            load_run_config(None, [f"data.frame_fps={bad}"])
