"""Frame stores (cten_common.data.readers.frame_store, written by cten_common.data.frame_store_writer):
round trip, validation, resumable writes."""
import os
import struct
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from cten_common.data import frame_store_writer
from cten_common.data.errors import DataError
from cten_common.data.frame_store_writer import encode_frame, store_size, write_store
from cten_common.data.readers import frame_store, open_video
from cten_common.data.readers.frame_store import HEADER, FrameStore, read_header
from cten_common.data.readers.jpeg import decode_jpeg
from cten_common.data.readers.video_file import VideoFile

from test_video_file import H, N, W, write_folder, write_video


def textured_video(path, n=30, h=36, w=64, seed=0):
    """An MJPG avi of smooth random textures (so that resizing and JPEG change pixels),
    mostly luminance like camera footage: JPEG's 4:2:0 chroma halving alone moves
    saturated colour textures by ~4 levels even at quality 100."""
    import cv2
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (w, h))
    assert writer.isOpened()
    for _ in range(n):
        grey = rng.integers(40, 216, (h // 9, w // 16, 1))
        small = np.clip(grey + rng.integers(-20, 21, (h // 9, w // 16, 3)), 0, 255).astype(np.uint8)
        writer.write(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC))
    writer.release()
    return path


@pytest.fixture
def source(tmp_path):
    return textured_video(tmp_path / "src.avi")


def expected_frames(source_path, size, quality):
    """What the store must hold: each decoded source frame resized and JPEG-coded the store's way."""
    frames = VideoFile(source_path).read_all()
    return np.stack([decode_jpeg(encode_frame(f, size, quality), "x") for f in frames])


@pytest.mark.parametrize("short_side,size", [(24, (24, 43)), (0, (36, 64)), (72, (72, 128))])
def test_round_trip_is_exact(tmp_path, source, short_side, size):
    store = tmp_path / f"s{short_side}.frames"
    assert write_store(source, store, short_side=short_side, quality=85) == "written"
    s = open_video(str(store))
    assert isinstance(s, FrameStore)
    assert (s.n_frames, s.height, s.width) == (30, *size) and s.fps == pytest.approx(25.0)
    assert store_size(36, 64, short_side) == size
    want = expected_frames(source, size, 85)
    assert np.array_equal(s.read_all(), want)
    idx = [29, 0, 5, 6, 7, 7, 3, 29]
    assert np.array_equal(s.read(idx), want[idx])
    assert np.array_equal(np.stack(list(s.iter_frames(chunk=7))), want)
    assert s.read([]).shape == (0, *size, 3)
    with pytest.raises(IndexError, match="30"):
        s.read([30])


def test_store_frames_stay_close_to_the_source(tmp_path, source):
    """Same size, quality 90: only JPEG's loss separates the store from the source."""
    write_store(source, tmp_path / "s.frames", short_side=0, quality=90)
    diff = np.abs(FrameStore(tmp_path / "s.frames").read_all().astype(int)
                  - VideoFile(source).read_all().astype(int))
    assert diff.mean() < 2.5, diff.mean()
    assert diff.mean() > 0          # it is a lossy copy, not the source's bytes


def test_store_from_a_frame_folder(tmp_path):
    folder = write_folder(tmp_path / "f", count_text=str(N))
    write_store(folder, tmp_path / "f.frames", short_side=0, quality=95)
    s = FrameStore(tmp_path / "f.frames")
    assert (s.n_frames, s.height, s.width, s.fps) == (N, H, W, None)      # the folder has no fps file
    folder_frames = open_video(str(folder)).read_all()
    assert np.abs(s.read_all().astype(int) - folder_frames).max() <= 3


def test_threads_read_one_store_at_once(tmp_path, source):
    write_store(source, tmp_path / "s.frames", short_side=24)
    s = FrameStore(tmp_path / "s.frames")
    whole = s.read_all()
    draws = [np.random.default_rng(k).integers(0, s.n_frames, 25) for k in range(8)]
    with ThreadPoolExecutor(4) as pool:
        for idx, frames in zip(draws, pool.map(s.read, draws)):
            assert np.array_equal(frames, whole[idx])


def _fresh(path):
    """The same bytes under a new name (the header cache is per path, size and mtime)."""
    frame_store._STORE_CACHE.clear()
    return path


@pytest.mark.parametrize("keep,problem", [(10, "shorter than its header"),
                                          (HEADER.size + 20, "truncated frame store"),
                                          (-1, "truncated frame store")])
def test_truncated_store_is_refused_naming_the_file(tmp_path, source, keep, problem):
    store = tmp_path / "s.frames"
    write_store(source, store, short_side=24)
    data = store.read_bytes()
    cut = tmp_path / "cut.frames"
    cut.write_bytes(data[:keep])
    with pytest.raises(DataError, match=problem) as e:
        open_video(str(_fresh(cut)))
    assert e.value.path == str(cut)


def _patched(tmp_path, source, edit):
    store = tmp_path / "s.frames"
    write_store(source, store, short_side=24)
    data = bytearray(store.read_bytes())
    edit(data)
    bad = tmp_path / "bad.frames"
    bad.write_bytes(bytes(data))
    return _fresh(bad)


def _set_header(field, value):
    names = ["magic", "version", "n_frames", "fps", "height", "width", "quality", "short_side",
             "source_size", "source_mtime_ns"]

    def edit(data):
        fields = list(HEADER.unpack(bytes(data[:HEADER.size])))
        fields[names.index(field)] = value
        data[:HEADER.size] = HEADER.pack(*fields)
    return edit


@pytest.mark.parametrize("edit,problem", [
    (_set_header("magic", b"NOTFRAME"), "not a frame store"),
    (_set_header("version", 7), "version 7"),
    (_set_header("n_frames", 2 ** 60), "truncated frame store: header says"),  # never allocated
    (_set_header("n_frames", 0), "no frames"),
    (_set_header("n_frames", 29), "frame 0 starts at"),
    (_set_header("height", 0), "impossible size"),
])
def test_lying_header_is_refused(tmp_path, source, edit, problem):
    bad = _patched(tmp_path, source, edit)
    with pytest.raises(DataError, match=problem) as e:
        FrameStore(bad)
    assert e.value.path == str(bad)


def test_lying_offsets_are_refused(tmp_path, source):
    def swap(data):
        at = HEADER.size + 8 * 5
        a, b = struct.unpack_from("<QQ", data, at)
        struct.pack_into("<QQ", data, at, b, a)
    bad = _patched(tmp_path, source, swap)
    with pytest.raises(DataError, match="corrupt frame store: frame 5 has -\\d+ bytes") as e:
        FrameStore(bad)
    assert e.value.path == str(bad)


def test_wrong_header_size_or_bad_jpeg_fails_at_read_naming_file_and_frame(tmp_path, source):
    bad = _patched(tmp_path, source, _set_header("width", 40))
    with pytest.raises(DataError, match=r"size \(24, 43\) of frame 2 differs from the header's \(24, 40\)") as e:
        FrameStore(bad).read([2])
    assert e.value.path == str(bad)

    def garble(data):
        start = struct.unpack_from("<Q", data, HEADER.size + 8 * 3)[0]
        data[start:start + 16] = b"\0" * 16           # frame 3 loses its JPEG header
    bad = _patched(tmp_path, source, garble)
    s = FrameStore(bad)
    assert s.read([2, 4]).shape == (2, 24, 43, 3)
    with pytest.raises(DataError, match="frame 3 does not decode as a JPEG") as e:
        s.read([2, 3])
    assert e.value.path == str(bad)


def test_writes_are_resumable_and_follow_the_source(tmp_path, source):
    store = tmp_path / "out" / "Anger" / "v.frames"
    assert write_store(source, store, short_side=24) == "written"
    inode = store.stat().st_ino
    assert write_store(source, store, short_side=24) == "skipped"
    assert store.stat().st_ino == inode
    assert write_store(source, store, short_side=24, quality=80) == "written"
    assert read_header(str(store))[0].quality == 80
    textured_video(source, n=12, seed=5)                     # the source changes
    os.utime(source, ns=(1, 1))
    assert write_store(source, store, short_side=24, quality=80) == "written"
    assert FrameStore(store).n_frames == 12
    assert sorted(os.listdir(store.parent)) == ["v.frames"]


def test_interrupted_write_leaves_no_store_and_keeps_the_old_one(tmp_path, source, monkeypatch):
    store = tmp_path / "v.frames"
    write_store(source, store, short_side=24)
    before = store.read_bytes()
    calls = []
    real = frame_store_writer.encode_frame

    def failing(*args):
        calls.append(1)
        if len(calls) == 10:
            raise KeyboardInterrupt
        return real(*args)
    monkeypatch.setattr(frame_store_writer, "encode_frame", failing)
    with pytest.raises(KeyboardInterrupt):
        write_store(source, store, short_side=32)
    assert store.read_bytes() == before                       # the old store is untouched
    assert sorted(os.listdir(tmp_path)) == ["src.avi", "v.frames"]   # no temporary left
    monkeypatch.undo()
    assert write_store(source, store, short_side=32) == "written"
    assert FrameStore(store).height == 32


def test_bad_quality_and_bad_sources(tmp_path, source):
    with pytest.raises(ValueError, match="quality"):
        write_store(source, tmp_path / "x.frames", quality=0)
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(DataError, match="empty") as e:
        write_store(tmp_path / "empty.mp4", tmp_path / "y.frames")
    assert e.value.path == str(tmp_path / "empty.mp4")
    assert not (tmp_path / "y.frames").exists()
    (tmp_path / "empty.frames").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        open_video(str(tmp_path / "empty.frames"))
