"""Frame folders (``cten_common.data.readers.frame_folder``) on tiny generated JPEGs:
frame k is the flat colour ``colour(k)`` of the video file tests."""
import pytest

from cten_common.data.errors import DataError
from cten_common.data.readers import frame_folder, open_video
from cten_common.data.readers.frame_folder import FrameFolder
from cten_common.data.readers.jpeg import jpeg_header
from test_video_file import H, N, W, assert_frames, write_folder


@pytest.mark.parametrize("count_text", ["20", "20.0\n", None])
def test_frame_folder(tmp_path, count_text):
    folder = write_folder(tmp_path / "anger" / "0001", count_text=count_text)
    v = open_video(str(folder))
    assert isinstance(v, FrameFolder)
    assert (v.n_frames, v.fps, v.height, v.width) == (N, None, H, W)     # no fps file: rate unknown
    order = [19, 0, 5, 5]
    assert_frames(v.read(order), order)
    assert_frames(v.read_all(), range(N))
    assert FrameFolder(folder, fps=25).fps == 25.0
    (folder / "fps").write_text("29.97002997002997\n")
    assert FrameFolder(folder).fps == pytest.approx(30000 / 1001, abs=1e-12)


@pytest.mark.parametrize("text", ["0", "-25", "nan", "inf", "fast", "9" * 70])
def test_a_bad_fps_file_is_an_error_naming_it(tmp_path, text):
    folder = write_folder(tmp_path / "anger" / "0001", count_text=str(N))
    (folder / "fps").write_text(text)
    with pytest.raises(DataError) as e:
        FrameFolder(folder)
    assert e.value.path == str(folder / "fps")


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


def test_frame_folder_truncated_jpeg_is_an_error_not_a_grey_frame(tmp_path):
    """A JPEG cut short (even by its end marker alone) does not decode: a DataError naming
    it, which cten-check-data finds from the end marker without decoding."""
    folder = write_folder(tmp_path / "f", n=3, count_text="3")
    data = (folder / "000002.jpg").read_bytes()
    for cut in (2, len(data) // 2):
        (folder / "000002.jpg").write_bytes(data[:-cut])
        with pytest.raises(DataError, match="cannot decode") as e:
            FrameFolder(folder).read([1])
        assert e.value.path == str(folder / "000002.jpg")
    (folder / "000002.jpg").write_bytes(data + b"\x00" * 10)          # zero padding after the marker: fine
    assert FrameFolder(folder).read([1]).shape[0] == 1


def test_frame_folder_size_from_the_jpeg_header_without_decoding(tmp_path, monkeypatch):
    folder = write_folder(tmp_path / "f", n=3, count_text="3")

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded a frame to learn the folder's frame size")
    monkeypatch.setattr(frame_folder, "decode_jpeg", no_decode)
    v = FrameFolder(folder)
    assert (v.height, v.width) == (H, W)
    assert jpeg_header(b"not a jpeg")[0] is None
    assert jpeg_header((folder / "000001.jpg").read_bytes()[:20]) == (None, None)   # header cut short


def test_frame_folder_frame_deleted_after_opening(tmp_path):
    folder = write_folder(tmp_path / "f", count_text="20")
    v = FrameFolder(folder)
    assert_frames(v.read([2, 3]), [2, 3])
    (folder / "000004.jpg").unlink()
    with pytest.raises(DataError, match="missing frame 3") as e:
        v.read([2, 3])
    assert e.value.path == str(folder / "000004.jpg")


def test_frame_folder_count_file_read_with_a_bound(tmp_path):
    folder = write_folder(tmp_path / "f", n=2, count_text="2" + " " * 100)
    with pytest.raises(DataError, match="longer than 64 bytes") as e:
        FrameFolder(folder)
    assert e.value.path == str(folder / "n_frames")
