"""Video files (``cten_common.data.readers.video_file``) and ``open_video`` on tiny generated data.

Each frame k is one flat RGB colour, ``colour(k)``: R and G step by 12 per
frame, B alternates 60/160, so a decoded frame is identified by its nearest
colour.  The lossy codecs (mp4v in mp4, MJPG in avi and mkv) were measured to
stay within 4 of the written values on such flat frames (measured with
OpenCV's decoder; PyAV, which the reader now uses, gives the very same RGB on
these files); the tests allow CODEC_TOL = 6 (half the step between
neighbouring frames).  The seeking tests use ffmpeg-made testsrc2 videos
(H.264 with B-frames, MPEG-4 part 2) and compare reads bit for bit.
"""
import os
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from cten_common.data.errors import DataError
from cten_common.data.readers import open_video, video_file
from cten_common.data.readers.frame_folder import FrameFolder
from cten_common.data.readers.video_file import VideoFile

N, H, W, FPS = 20, 24, 32, 25.0
CODEC_TOL = 6
CODECS = {"mp4": "mp4v", "avi": "MJPG", "mkv": "MJPG"}


def colour(k):
    return np.array([10 + 12 * k, 240 - 12 * k, 60 + 100 * (k % 2)], np.int64)


def frame_rgb(k):
    return np.broadcast_to(colour(k).astype(np.uint8), (H, W, 3))


def write_video(path, n=N, fps=FPS):
    ext = os.path.splitext(str(path))[1][1:]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*CODECS[ext]), fps, (W, H))
    assert writer.isOpened()
    for k in range(n):
        writer.write(np.ascontiguousarray(frame_rgb(k)[..., ::-1]))
    writer.release()
    return path


def write_folder(path, n=N, count_text=None):
    path.mkdir(parents=True)
    for k in range(n):
        cv2.imwrite(str(path / f"{k + 1:06d}.jpg"), np.ascontiguousarray(frame_rgb(k)[..., ::-1]))
    if count_text is not None:
        (path / "n_frames").write_text(count_text)
    return path


def assert_frames(frames, expected_ids):
    assert frames.dtype == np.uint8 and frames.shape == (len(expected_ids), H, W, 3)
    for frame, k in zip(frames, expected_ids):
        diff = np.abs(frame.astype(np.int64) - colour(k)).max()
        assert diff <= CODEC_TOL, f"frame expected {k}: off by {diff}"


@pytest.fixture(scope="module", params=sorted(CODECS))
def video_path(request, tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("v") / f"clip.{request.param}")


def test_metadata(video_path):
    v = VideoFile(video_path)
    assert (v.n_frames, v.height, v.width) == (N, H, W)
    assert v.fps == pytest.approx(FPS)


def test_read_all_and_any_order(video_path):
    v = open_video(str(video_path))
    assert isinstance(v, VideoFile)
    assert_frames(v.read_all(), range(N))
    order = [7, 0, 19, 7, 3, 3]
    assert_frames(v.read(order), order)
    assert v.read([]).shape == (0, H, W, 3)


def test_out_of_range_index(video_path):
    with pytest.raises(IndexError, match="20"):
        VideoFile(video_path).read([0, N])


def test_metadata_cached_per_file_version(tmp_path, monkeypatch):
    path = write_video(tmp_path / "c.avi")
    assert VideoFile(path).n_frames == N

    def no_probe(p):
        raise AssertionError("re-opened an unchanged file by decoding it")
    monkeypatch.setattr(video_file, "_probe", no_probe)
    assert VideoFile(path).n_frames == N
    monkeypatch.undo()
    write_video(path, n=5)
    os.utime(path, ns=(1, 1))          # a new mtime even on coarse file systems
    assert VideoFile(path).n_frames == 5


def test_frame_count_is_the_decodable_count(tmp_path):
    """A truncated avi: the header still says 20, the reader says what decodes."""
    path = write_video(tmp_path / "t.avi")
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * 0.9)])
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == N
    cap.release()
    v = VideoFile(path)
    assert 0 < v.n_frames < N
    assert_frames(v.read_all(), range(v.n_frames))


@pytest.mark.parametrize("ext", sorted(CODECS))
def test_cut_in_half_gives_fewer_frames_or_data_error(tmp_path, ext):
    """Measured with PyAV 18.1, as with OpenCV 4.11 before: mp4 (index at the end) and avi
    raise, mkv keeps 9 frames."""
    path = write_video(tmp_path / f"half.{ext}")
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    try:
        v = VideoFile(path)
    except DataError as e:
        assert e.path == str(path)
        return
    assert v.n_frames < N
    assert_frames(v.read_all(), range(v.n_frames))


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist") as e:
        open_video(str(tmp_path / "nope.mp4"))
    assert e.value.path == str(tmp_path / "nope.mp4")


def test_empty_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        VideoFile(tmp_path / "empty.mp4")


def test_corrupt_file(tmp_path):
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(DataError, match="cannot open") as e:
        VideoFile(path)
    assert "noise.mp4" in str(e.value)


def test_unsupported_extension(tmp_path):
    (tmp_path / "clip.txt").write_text("hello")
    with pytest.raises(DataError, match="unsupported video extension '.txt'"):
        open_video(str(tmp_path / "clip.txt"))


def test_no_frames(tmp_path):
    path = tmp_path / "none.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (W, H))
    writer.release()
    assert path.stat().st_size > 0     # a valid container holding no frame
    with pytest.raises(DataError, match="no frames") as e:
        VideoFile(path)
    assert e.value.path == str(path)


# --- seeking reads (PyAV) -------------------------------------------------------------------

def ffmpeg_video(path, seconds, codec_args, size="64x48", rate=25):
    """A testsrc2 video made by the ffmpeg command line (skips when there is none)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size={size}:rate={rate}", "-t", str(seconds), *codec_args,
                    str(path)], check=True)
    return path


H264_BFRAMES = ["-c:v", "libx264", "-g", "60", "-bf", "2", "-pix_fmt", "yuv420p"]
MPEG4 = ["-c:v", "mpeg4", "-q:v", "5", "-g", "30", "-bf", "2"]


@pytest.fixture(scope="module", params=["h264", "mpeg4", "mjpg"])
def seek_video(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("seek")
    if request.param == "mjpg":
        return write_video(folder / "clip.avi", n=120)
    args = H264_BFRAMES if request.param == "h264" else MPEG4
    return ffmpeg_video(folder / f"{request.param}.mp4", 12, args)


class DecodeCounter:
    """Counts the frames that VideoFile decodes (wraps video_file._decode)."""

    def __init__(self, monkeypatch):
        self.count = 0
        real = video_file._decode

        def counting(*args):
            for frame in real(*args):
                self.count += 1
                yield frame
        monkeypatch.setattr(video_file, "_decode", counting)


def test_seeking_reads_equal_whole_reads_bit_for_bit(seek_video):
    v = VideoFile(seek_video)
    whole = v.read_all()
    assert len(whole) == v.n_frames and v.n_frames >= 120
    rng = np.random.default_rng(0)
    for _ in range(6):
        idx = rng.integers(0, v.n_frames, 40)
        assert np.array_equal(v.read(idx), whole[idx])
    snippets = (np.sort(rng.integers(0, v.n_frames - 8, 6))[:, None] + np.arange(8)).ravel()
    assert np.array_equal(v.read(snippets), whole[snippets])
    last = [v.n_frames - 1, 0, v.n_frames - 1]
    assert np.array_equal(v.read(last), whole[last])
    assert np.array_equal(np.stack(list(v.iter_frames())), whole)


def test_h264_test_video_has_b_frames_and_several_keyframes(tmp_path):
    """The seeking test above is only meaningful if the file reorders frames and has GOPs."""
    import av
    path = ffmpeg_video(tmp_path / "b.mp4", 12, H264_BFRAMES)
    with av.open(str(path)) as c:
        packets = [p for p in c.demux(video=0) if p.size]
    assert sum(p.is_keyframe for p in packets) >= 5
    assert any(p.pts != p.dts for p in packets)          # B-frames: decode order != display order


def test_sparse_reads_decode_a_small_part_of_a_long_video(tmp_path, monkeypatch):
    path = ffmpeg_video(tmp_path / "long.mp4", 60, ["-c:v", "libx264", "-g", "50", "-bf", "2",
                                                    "-pix_fmt", "yuv420p"])
    v = VideoFile(path)
    assert v.n_frames == 1500
    idx = np.concatenate([s + np.arange(8) for s in (100, 620, 1010, 1400)])
    whole = v.read_all()
    counter = DecodeCounter(monkeypatch)
    frames = v.read(idx)
    assert np.array_equal(frames, whole[idx])
    # keyframes every 50 frames: each snippet decodes from its GOP's keyframe to its end,
    # (100-107) + (600-627) + (1000-1017) + (1400-1407) = 62 of the 1500 frames
    assert len(idx) <= counter.count <= 62 + 4, counter.count
    counter.count = 0
    v.read(np.arange(10))
    assert counter.count <= 10 + 4


def test_reads_from_several_threads_at_once(seek_video):
    from concurrent.futures import ThreadPoolExecutor
    v = VideoFile(seek_video)
    whole = v.read_all()
    draws = [np.random.default_rng(k).integers(0, v.n_frames, 30) for k in range(8)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(v.read, draws))
    for idx, frames in zip(draws, results):
        assert np.array_equal(frames, whole[idx])


def test_truncated_mp4_serves_only_what_decodes(tmp_path):
    """An mp4 with its index first (faststart) cut at 60 %: the index still lists every
    frame, the reader lists only the complete packets, and they are the original frames."""
    path = ffmpeg_video(tmp_path / "fs.mp4", 12, H264_BFRAMES + ["-movflags", "+faststart"])
    full = VideoFile(path)
    whole = full.read_all()
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:int(len(data) * 0.6)])
    v = VideoFile(cut)
    assert 0 < v.n_frames < full.n_frames
    frames = v.read_all()
    original = np.searchsorted(full._meta.pts, v._meta.pts)   # the same pts in the full file
    assert np.array_equal(full._meta.pts[original], v._meta.pts)
    assert np.array_equal(frames, whole[original])
    idx = np.random.default_rng(1).integers(0, v.n_frames, 30)
    assert np.array_equal(v.read(idx), frames[idx])


def test_frame_listed_but_not_decodable_names_file_and_frame(tmp_path):
    """A frame table that lists frames past the decodable end (as a file changed in place
    behind the cache would): the read raises naming the file and the frame."""
    path = ffmpeg_video(tmp_path / "fs.mp4", 12, H264_BFRAMES + ["-movflags", "+faststart"])
    full = VideoFile(path)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[:int(path.stat().st_size * 0.6)])
    st = cut.stat()
    video_file._META_CACHE[(os.path.realpath(cut), st.st_size, st.st_mtime_ns)] = full._meta
    v = VideoFile(cut)
    assert v.n_frames == full.n_frames
    assert v.read([0, 1]).shape == (2, 48, 64, 3)
    with pytest.raises(DataError, match=f"frame {full.n_frames - 1} does not decode") as e:
        v.read([5, full.n_frames - 1])
    assert e.value.path == str(cut)
    with pytest.raises(DataError, match="does not decode") as e:
        v.read_all()
    assert e.value.path == str(cut)


def test_video_without_audio_and_odd_frame_rate(tmp_path):
    path = ffmpeg_video(tmp_path / "odd.mp4", 3, H264_BFRAMES, rate="30000/1001")
    v = VideoFile(path)
    assert v.fps == pytest.approx(29.97, abs=1e-3)
    assert v.n_frames == 90
    # the frames' times from the timestamps: i / (30000/1001) at a constant rate, B-frames and all
    assert v.frame_times() == pytest.approx(np.arange(91) * 1001 / 30000, abs=1e-6)
    assert np.array_equal(v.read([89, 0]), v.read_all()[[89, 0]])


def test_video_file_without_video_stream(tmp_path):
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    path = tmp_path / "sound.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440", "-t", "1",
                    "-c:a", "aac", str(path)], check=True)
    with pytest.raises(DataError, match=r"no video stream \(only audio\)") as e:
        VideoFile(path)
    assert e.value.path == str(path)


def test_frame_store_extension_opens_a_frame_store(tmp_path):
    from cten_common.data.frame_store_writer import write_store
    from cten_common.data.readers.frame_store import FrameStore
    source = write_video(tmp_path / "v.avi")
    write_store(source, tmp_path / "v.frames", short_side=0)
    store = open_video(str(tmp_path / "v.frames"))
    assert isinstance(store, FrameStore)
    assert_frames(store.read([19, 0]), [19, 0])


def test_read_chunks_is_read_in_pieces_and_decodes_each_gop_once(tmp_path, monkeypatch):
    from cten_common.data.frame_store_writer import write_store
    path = ffmpeg_video(tmp_path / "long.mp4", 20, ["-c:v", "libx264", "-g", "50", "-bf", "2",
                                                    "-pix_fmt", "yuv420p"])
    write_store(path, tmp_path / "long.frames", short_side=0)
    folder = tmp_path / "folder"
    folder.mkdir()
    for i, frame in enumerate(VideoFile(path).iter_frames()):
        cv2.imwrite(str(folder / f"{i + 1:06d}.jpg"), frame[..., ::-1])
    idx = np.sort(np.concatenate([s + np.arange(8) for s in (30, 35, 120, 400, 404)]))  # repeats
    for reader in (VideoFile(path), open_video(str(tmp_path / "long.frames")), FrameFolder(folder)):
        pieces = list(reader.read_chunks(idx, chunk=7))
        assert [len(p) for p in pieces] == [7] * 5 + [5]
        assert np.array_equal(np.concatenate(pieces), reader.read(idx))
        with pytest.raises(ValueError, match="non-decreasing"):
            list(reader.read_chunks([5, 3]))
    counter = DecodeCounter(monkeypatch)
    v = VideoFile(path)
    v.read(idx)
    one_read = counter.count
    counter.count = 0
    list(v.read_chunks(idx, chunk=7))
    assert counter.count == one_read
    counter.count = 0
    for start in range(0, len(idx), 7):           # separate reads decode the shared GOPs again
        v.read(idx[start:start + 7])
    assert counter.count > one_read
