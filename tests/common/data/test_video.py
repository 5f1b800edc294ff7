"""Video file and frame folder readers on tiny generated data.

Each frame k is one flat RGB colour, ``colour(k)``: R and G step by 12 per
frame, B alternates 60/160, so a decoded frame is identified by its nearest
colour.  The lossy codecs (mp4v in mp4, MJPG in avi and mkv) were measured to
stay within 4 of the written values on such flat frames; the tests allow
CODEC_TOL = 6 (half the step between neighbouring frames).
"""
import os

import cv2
import numpy as np
import pytest

from cten_common.data import video
from cten_common.data.errors import DataError
from cten_common.data.video import FrameFolder, VideoFile, open_video

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
    monkeypatch.setattr(video, "_probe", no_probe)
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
    """Measured with OpenCV 4.11: mp4 (index at the end) and avi raise, mkv keeps 9 frames."""
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


@pytest.mark.parametrize("count_text", ["20", "20.0\n", None])
def test_frame_folder(tmp_path, count_text):
    folder = write_folder(tmp_path / "anger" / "0001", count_text=count_text)
    v = open_video(str(folder))
    assert isinstance(v, FrameFolder)
    assert (v.n_frames, v.fps, v.height, v.width) == (N, 30.0, H, W)
    order = [19, 0, 5, 5]
    assert_frames(v.read(order), order)
    assert_frames(v.read_all(), range(N))
    assert FrameFolder(folder, fps=25).fps == 25.0


def test_frame_folder_missing_frame(tmp_path):
    folder = write_folder(tmp_path / "f", count_text="20")
    (folder / "000004.jpg").unlink()
    v = FrameFolder(folder)
    assert_frames(v.read([0, 1]), [0, 1])
    with pytest.raises(DataError, match="missing frame 3") as e:
        v.read([0, 3])
    assert e.value.path == str(folder / "000004.jpg")


def test_frame_folder_without_frames(tmp_path):
    (tmp_path / "f").mkdir()
    with pytest.raises(DataError, match="no frames") as e:
        open_video(str(tmp_path / "f"))
    assert e.value.path == str(tmp_path / "f")
    (tmp_path / "f" / "n_frames").write_text("0")
    with pytest.raises(DataError, match="no frames"):
        FrameFolder(tmp_path / "f")


@pytest.mark.parametrize("text", ["abc", "12.5", "-3"])
def test_frame_folder_bad_count_file(tmp_path, text):
    folder = write_folder(tmp_path / "f", n=2, count_text=text)
    with pytest.raises(DataError) as e:
        FrameFolder(folder)
    assert e.value.path == str(folder / "n_frames")


def test_frame_folder_undecodable_frame(tmp_path):
    folder = write_folder(tmp_path / "f", n=3, count_text="3")
    (folder / "000002.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="cannot decode") as e:
        FrameFolder(folder).read([1])
    assert e.value.path == str(folder / "000002.jpg")
