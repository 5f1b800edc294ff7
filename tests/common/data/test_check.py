"""cten-check-data checks what training reads, in every layout: each kind of damage is
reported with the file and the problem, all at once, exit status 1."""
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from cten_common.data.check import check_frame_folder, check_frame_store, check_jpeg_file, main, scan
from cten_common.data.synthetic import SyntheticSpec, make_synthetic_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A small set in every layout: frame folders + mp3 (the reference's), frame stores,
    cached filterbanks; 2 classes x 3 videos of 16 frames."""
    from cten_common.data.audio import load_audio
    from cten_common.data.fbank import kaldi_fbank
    from cten_common.data.frame_store_writer import write_store
    from cten_common.data.readers import open_video
    root = tmp_path_factory.mktemp("check")
    ann = make_synthetic_dataset(str(root / "synthetic"), SyntheticSpec(classes=2, videos_per_class=3,
                                                                        duration=2.0, fps=8, size=32, seed=1),
                                 progress=False)
    for label in sorted(os.listdir(root / "synthetic" / "videos")):
        for name in sorted(os.listdir(root / "synthetic" / "videos" / label)):
            vid, src = name[:-4], str(root / "synthetic" / "videos" / label / name)
            folder = root / "frames" / label / vid
            folder.mkdir(parents=True)
            for k, frame in enumerate(open_video(src).iter_frames()):
                cv2.imwrite(str(folder / f"{k + 1:06d}.jpg"), np.ascontiguousarray(frame[..., ::-1]))
            (folder / "n_frames").write_text(f"{k + 1}\n")
            (root / "stores" / label).mkdir(parents=True, exist_ok=True)
            write_store(src, str(root / "stores" / label / f"{vid}.frames"), short_side=0)
            wav = root / "synthetic" / "audio" / label / f"{vid}.wav"
            (root / "mp3" / label).mkdir(parents=True, exist_ok=True)
            subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(wav), "-c:a", "libmp3lame",
                            str(root / "mp3" / label / f"{vid}.mp3")], check=True)
            (root / "fbank" / label).mkdir(parents=True, exist_ok=True)
            np.save(root / "fbank" / label / f"{vid}.npy", kaldi_fbank(*load_audio(str(wav))))
    return root, ann


@pytest.fixture
def dataset(pristine, tmp_path):
    """A fresh copy to damage: (root, data section for frame folders + mp3)."""
    root, ann = pristine
    for sub in ("frames", "stores", "mp3", "fbank"):
        shutil.copytree(root / sub, tmp_path / sub)
    return tmp_path, {"annotation": ann, "video_root": str(tmp_path / "frames"),
                      "audio_root": str(tmp_path / "mp3")}


def _folders(root):
    return sorted(str(p) for p in (root / "frames").glob("*/*") if p.is_dir())


def _problems(data, **kw):
    items, problems = scan(data, progress=False, **kw)
    return items, [(p.path, p.problem) for p in problems]


def _named(problems, path, *words):
    """Whether a problem names ``path`` and says each of ``words``."""
    return any(p == str(path) and all(w in problem for w in words) for p, problem in problems)


def test_a_pristine_set_has_no_problem_in_any_layout(dataset):
    root, data = dataset
    for video_root, audio_root in (("frames", "mp3"), ("stores", "fbank"), ("frames", "fbank")):
        items, problems = _problems({**data, "video_root": str(root / video_root),
                                     "audio_root": str(root / audio_root)})
        assert len(items) == 6 and problems == [], (video_root, problems)
    assert _problems(data, decode=True)[1] == []


def test_frame_folder_damage_is_named_file_by_file(dataset):
    """The issue's three damages and more, all reported in one pass."""
    root, data = dataset
    a, b, c, d, e, f = _folders(root)
    (root / a / "n_frames").write_text("500\n")                       # says 500, holds 16
    for name in os.listdir(b):                                        # n_frames and no JPEG
        if name.endswith(".jpg"):
            os.remove(os.path.join(b, name))
    rng = np.random.default_rng(0)
    (root / c / "000005.jpg").write_bytes(rng.bytes(3000))           # random bytes
    jpg = (root / d / "000009.jpg").read_bytes()
    (root / d / "000009.jpg").write_bytes(jpg[:len(jpg) // 2])       # cut short: does not decode
    (root / e / "000003.jpg").write_bytes(b"")                       # empty
    os.remove(root / e / "000012.jpg")                               # a gap
    ok, big = cv2.imencode(".jpg", np.zeros((64, 48, 3), np.uint8))
    (root / f / "000016.jpg").write_bytes(big.tobytes())              # another size (the last frame)
    items, problems = _problems(data)
    assert _named(problems, os.path.join(a, "000017.jpg"), "missing frame 16", "n_frames=500", "holds 16",
                  "17..500"), problems
    assert _named(problems, b, "no JPEG frames", "n_frames=16"), problems
    assert _named(problems, os.path.join(c, "000005.jpg"), "frame 4", "not a JPEG"), problems
    assert _named(problems, os.path.join(d, "000009.jpg"), "frame 8", "no end-of-image marker"), problems
    assert _named(problems, os.path.join(e, "000003.jpg"), "empty file"), problems
    assert _named(problems, os.path.join(e, "000012.jpg"), "missing frame 11"), problems
    assert _named(problems, os.path.join(f, "000016.jpg"), "frame 15", "size (64, 48) differs"), problems
    assert len(problems) == 7, problems


def test_count_file_problems(dataset):
    root, data = dataset
    a, b = _folders(root)[:2]
    (root / a / "n_frames").write_text("many")
    (root / b / "n_frames").write_text("0")
    _, problems = _problems(data)
    assert _named(problems, os.path.join(a, "n_frames"), "not a number"), problems
    assert _named(problems, os.path.join(b, "n_frames"), "n_frames is 0"), problems


def test_a_frame_that_only_decoding_finds(dataset):
    """Header and end marker intact, a Huffman table after the header destroyed: the default
    check (first and last frame decoded) passes a middle frame, --decode names it."""
    root, data = dataset
    folder = _folders(root)[2]
    path = os.path.join(folder, "000007.jpg")
    raw = bytearray(open(path, "rb").read())
    dht = raw.index(b"\xff\xc4", raw.index(b"\xff\xc0"))    # after the frame header
    raw[dht + 5:dht + 21] = b"\xff" * 16                  # a bogus Huffman table
    open(path, "wb").write(bytes(raw))
    assert check_jpeg_file(path)[1] is None               # header and end marker look fine
    assert _problems(data)[1] == []
    _, problems = _problems(data, decode=True)
    assert _named(problems, path, "frame 6", "cannot decode"), problems
    assert len(problems) == 1


def test_frame_store_damage(dataset):
    from cten_common.data.readers.frame_store import HEADER, read_header
    root, data = dataset
    stores = sorted(str(p) for p in (root / "stores").glob("*/*.frames"))
    a, b, c, d = stores[:4]
    with open(a, "r+b") as f:                                          # truncated
        f.truncate(os.path.getsize(a) - 100)
    _, offsets = read_header(b)
    with open(b, "r+b") as f:                                          # frame 3's bytes overwritten
        f.seek(int(offsets[3]))
        f.write(b"\x00" * 8)
    _, offsets = read_header(c)
    with open(c, "r+b") as f:                                          # frame 5's end cut into
        f.seek(int(offsets[6]) - 2)
        f.write(b"\x00\x00")
    with open(d, "r+b") as f:                                          # offsets out of order
        f.seek(HEADER.size + 8 * 4)
        f.write(np.array([1], "<u8").tobytes())
    _, problems = _problems({**data, "video_root": str(root / "stores"), "audio_root": str(root / "fbank")})
    assert _named(problems, a, "truncated frame store"), problems
    assert _named(problems, b, "frame 3", "no JPEG start marker"), problems
    assert _named(problems, c, "frame 5", "no JPEG end marker"), problems
    assert _named(problems, d, "corrupt frame store"), problems
    assert len(problems) == 4, problems


def test_audio_damage(dataset):
    root, data = dataset
    mp3s = sorted(str(p) for p in (root / "mp3").glob("*/*.mp3"))
    open(mp3s[0], "wb").write(np.random.default_rng(1).bytes(5000))
    open(mp3s[1], "wb").close()
    fbanks = sorted(str(p) for p in (root / "fbank").glob("*/*.npy"))
    np.save(fbanks[0], np.zeros((300, 64), np.float32))
    np.save(fbanks[1], np.zeros((300, 128), np.float64))
    open(fbanks[2], "wb").write(b"not numpy")
    bad = np.zeros((300, 128), np.float32)
    bad[7, 3] = np.nan
    np.save(fbanks[3], bad)
    _, problems = _problems(data, with_audio=True)
    assert {p for p, _ in problems} == set(mp3s[:2]), problems
    assert all("audio" in problem for _, problem in problems), problems
    fb = {**data, "audio_root": str(root / "fbank")}
    _, problems = _problems(fb)
    assert _named(problems, fbanks[0], "[frames, 128]", "[300, 64]"), problems
    assert _named(problems, fbanks[1], "float32", "float64"), problems
    assert _named(problems, fbanks[2], "cannot read"), problems
    assert len(problems) == 3, problems
    _, problems = _problems(fb, decode=True)
    assert _named(problems, fbanks[3], "NaN"), problems


def test_the_command_reports_everything_and_exits_1(dataset, capsys):
    root, data = dataset
    a, b = _folders(root)[:2]
    (root / a / "n_frames").write_text("500\n")
    (root / b / "000002.jpg").write_bytes(b"junk")
    args = ["--annotation", data["annotation"], "--video-root", data["video_root"],
            "--audio-root", data["audio_root"]]
    assert main(args) == 1
    out = capsys.readouterr().out
    bad = [line for line in out.splitlines() if line.startswith("BAD ")]
    assert len(bad) == 2 and "6 videos indexed, 2 problems" in out, out
    assert any(os.path.join(a, "000017.jpg") in line for line in bad)
    assert any(os.path.join(b, "000002.jpg") in line and "not a JPEG" in line for line in bad)
    assert main(args + ["--decode"]) == 1
    captured = capsys.readouterr()
    assert "every frame decoded" in captured.out
    proc = subprocess.run([sys.executable, "-m", "cten_common.data.check", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert "--decode" in proc.stdout


def test_checks_run_alone_on_one_video(dataset):
    root, _ = dataset
    folder = _folders(root)[0]
    problems, n = check_frame_folder(folder, decode=True)
    assert problems == [] and n == 16
    store = sorted(str(p) for p in (root / "stores").glob("*/*.frames"))[0]
    problems, n = check_frame_store(store, decode=True)
    assert problems == [] and n == 16


@pytest.mark.parametrize("layout", ["frames+mp3", "stores+fbank"])
def test_what_the_checker_names_is_what_a_skip_run_leaves_out(dataset, layout):
    """Per layout, damage three videos; the checker names each file, and loading the
    samples under on_bad_sample: skip gives a BadSample naming the same file (stop: the
    DataError), while the other samples load."""
    from cten_common.data.annotations import build_index
    from cten_common.data.datasets import BadSample, ClipConfig, VideoEmotionData, collate, sample_rng
    from cten_common.data.errors import DataError
    from cten_common.data.readers.frame_store import read_header
    root, data = dataset
    video_root, audio_root = {"frames+mp3": ("frames", "mp3"), "stores+fbank": ("stores", "fbank")}[layout]
    data = {**data, "video_root": str(root / video_root), "audio_root": str(root / audio_root)}
    items = build_index(data, "training")[0] + build_index(data, "validation")[0]
    a, b, c = items[0], items[2], items[4]
    if layout == "frames+mp3":
        damaged = {a.video_id: os.path.join(a.video_path, "000001.jpg"), b.video_id: b.audio_path,
                   c.video_id: os.path.join(c.video_path, "000009.jpg")}
        open(damaged[a.video_id], "wb").write(np.random.default_rng(2).bytes(2000))
        open(damaged[b.video_id], "wb").write(b"ID3" + np.random.default_rng(3).bytes(2000))
        for k in range(9, 17):
            os.remove(os.path.join(c.video_path, f"{k:06d}.jpg"))
    else:
        damaged = {a.video_id: a.video_path, b.video_id: b.audio_path, c.video_id: c.video_path}
        with open(a.video_path, "r+b") as f:
            f.truncate(os.path.getsize(a.video_path) - 10)
        np.save(b.audio_path, np.zeros((50, 40), np.float32))
        _, offsets = read_header(c.video_path)
        with open(c.video_path, "r+b") as f:             # every frame's start marker gone
            for i in range(len(offsets) - 1):
                f.seek(int(offsets[i]))
                f.write(b"\x00\x00")
    _, problems = _problems(data)
    assert {p for p, _ in problems} == set(damaged.values()), problems
    for skip in (True, False):
        clip = ClipConfig(4, 4, 32, on_bad_sample="skip" if skip else "stop")
        loaded = VideoEmotionData(items, ["Anger", "Joy"], clip, train=True)
        for i, item in enumerate(items):
            if item.video_id not in damaged:
                assert not isinstance(loaded.load_or_skip(i, sample_rng(0, 0, i)), BadSample)
            elif skip:
                bad = loaded.load_or_skip(i, sample_rng(0, 0, i))
                assert isinstance(bad, BadSample) and bad.path == damaged[item.video_id], (bad, damaged)
            else:
                with pytest.raises(DataError) as err:
                    loaded.load_or_skip(i, sample_rng(0, 0, i))
                assert err.value.path == damaged[item.video_id]
    good = [loaded.load_or_skip(i, sample_rng(0, 0, i)) for i in (1, 3)]
    batch = collate([good[0], BadSample(0, "x", "/p", "q"), good[1]])
    assert list(batch["slot"]) == [0, 2] and batch["slots"] == 3 and len(batch["skipped"]) == 1
    assert list(batch["index"]) == [1, 3] and "slot" not in collate(good)


def test_skip_checks_every_video_before_the_run(dataset):
    """Under on_bad_sample: skip a frame missing in the middle of a video is found before
    the run, so the video is skipped whichever frames its samples would read."""
    from cten_common.data.annotations import build_index
    from cten_common.data.datasets import BadSample, ClipConfig, VideoEmotionData, sample_rng
    root, data = dataset
    items = build_index(data, "training")[0]
    os.remove(os.path.join(items[1].video_path, "000008.jpg"))
    for policy in ("stop", "skip"):
        loaded = VideoEmotionData(items, ["Anger", "Joy"], ClipConfig(2, 1, 32, on_bad_sample=policy), train=True)
        found = loaded.check_before_run()
        if policy == "stop":
            assert found == {}
            continue
        assert list(found) == [1] and found[1].path == os.path.join(items[1].video_path, "000008.jpg")
        assert found[1].where == "check before the run" and "missing frame 7" in found[1].problem
        rng = sample_rng(0, 0, 1)
        assert loaded.load_or_skip(1, rng) is found[1]
        assert not isinstance(loaded.load_or_skip(0, sample_rng(0, 0, 0)), BadSample)
