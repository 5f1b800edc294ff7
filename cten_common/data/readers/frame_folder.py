"""The reference's frame folders: ``{root}/{label}/{id}/000001.jpg ...`` with an
``n_frames`` file and, written by ``cten-prepare-dataset``, an ``fps`` file."""
import os
import re
from functools import cached_property

import numpy as np

from cten_common.data.errors import DataError

from .base import VideoReader, pause_point, read_frames
from .jpeg import decode_jpeg, jpeg_header

FPS_FILE = "fps"                     # a frame folder's rate, beside n_frames (cten-prepare-dataset)
COUNT_FILE = "n_frames"
_FRAME_NAME = re.compile(r"^\d{6}\.jpg$")
_COUNT_FILE_MAX_BYTES = 64           # an n_frames file holds one number


class FrameFolder(VideoReader):
    """The reference layout ``{root}/{label}/{id}/000001.jpg ...`` with an ``n_frames`` file.

    Index ``i`` is the file ``{i+1:06d}.jpg``.  Without an ``n_frames`` file the
    jpgs named that way are counted.  ``fps`` is the number in the folder's
    ``fps`` file (written by ``cten-prepare-dataset``), else None: the reference's
    ``video2jpg.py`` keeps each video's own rate and records it nowhere, so the
    rate must come from elsewhere (``cten_common.data.timing``).  Opening reads
    the count and rate files (at most 64 bytes each) and the header of frame 0
    (its size, without decoding it); a read opens only the files of the frames
    it wants.
    """

    def __init__(self, path, fps=None):
        self.path = str(path)
        if not os.path.isdir(self.path):
            raise DataError(self.path, "frame folder does not exist")
        rate_file = os.path.join(self.path, FPS_FILE)
        if fps is not None:
            self.fps = float(fps)
        elif os.path.isfile(rate_file):
            self.fps = _read_rate_file(rate_file)
        else:
            self.fps = None
        count_file = os.path.join(self.path, COUNT_FILE)
        if os.path.isfile(count_file):
            self.n_frames = read_count_file(count_file)
        else:
            self.n_frames = sum(1 for name in os.listdir(self.path) if _FRAME_NAME.match(name))
            if not self.n_frames:
                raise DataError(self.path, "no frames: neither an n_frames file nor 000001.jpg ...")
        if not self.n_frames:
            raise DataError(count_file, "no frames (n_frames is 0)")

    def frame_path(self, i):
        return os.path.join(self.path, f"{i + 1:06d}.jpg")

    @cached_property
    def _size(self):
        path = self.frame_path(0)
        size = jpeg_header(_read_file(path, 0, head=65536, n_frames=self.n_frames))[0]
        if size is None:          # not a plain JPEG header: decode it
            size = decode_jpeg(_read_file(path, 0, n_frames=self.n_frames), path).shape[:2]
        return size

    height = property(lambda self: self._size[0])
    width = property(lambda self: self._size[1])

    def _load(self, i, out=None):
        path = self.frame_path(i)
        return decode_jpeg(_read_file(path, i, n_frames=self.n_frames), path,
                           size=self._size, out=out, wrong_size="differs from frame 0's")

    def read(self, indices):
        """Frames at 0-based ``indices``; each distinct file is read and decoded once."""
        def decode_into(wanted, slots, out):
            for i, slot in zip(wanted.tolist(), slots.tolist()):
                pause_point()
                self._load(i, out[slot])
        return read_frames(self, indices, decode_into)

    def iter_frames(self):
        for i in range(self.n_frames):
            yield self._load(i)


def _read_number_file(path, what):
    with open(path, "rb") as f:
        raw = f.read(_COUNT_FILE_MAX_BYTES + 1)
    if len(raw) > _COUNT_FILE_MAX_BYTES:
        raise DataError(path, f"longer than {_COUNT_FILE_MAX_BYTES} bytes: not {what}")
    text = raw.decode("ascii", errors="replace").strip()
    try:
        return float(text), text
    except ValueError:
        raise DataError(path, f"not a number: {text!r}") from None


def _read_rate_file(rate_file):
    """The frames per second in a frame folder's ``fps`` file: a positive finite number."""
    value, text = _read_number_file(rate_file, "a frame rate")
    if not (np.isfinite(value) and value > 0):
        raise DataError(rate_file, f"not a frame rate (frames per second > 0): {text!r}")
    return value


def write_rate_file(folder, fps):
    """Write ``folder/fps``: the rate a frame folder's frames were taken at."""
    with open(os.path.join(folder, FPS_FILE), "w") as f:
        f.write(f"{float(fps)!r}\n")


def read_count_file(count_file):
    """The frame count in a frame folder's ``n_frames`` file: a non-negative integer."""
    value, text = _read_number_file(count_file, "a frame count")
    if not value.is_integer() or value < 0:
        raise DataError(count_file, f"not a frame count: {text!r}")
    return int(value)


def _read_file(path, i, head=None, n_frames=None):
    """The bytes of frame file ``path`` (only the first ``head`` bytes if given)."""
    try:
        with open(path, "rb") as f:
            return f.read() if head is None else f.read(head)
    except FileNotFoundError:
        said = f" (folder says n_frames={n_frames})" if n_frames is not None else ""
        raise DataError(path, f"missing frame {i}{said}") from None
    except OSError as exc:
        raise DataError(path, f"cannot read frame {i}: {exc}") from None
