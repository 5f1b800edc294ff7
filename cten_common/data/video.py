"""Read RGB frames from a video file (OpenCV) or from the reference's folder of jpgs.

Both readers share one interface: ``n_frames``, ``fps``, ``height``, ``width``,
``read(indices)`` with 0-based frame indices in any order (repeats allowed),
returning uint8 ``[len(indices), H, W, 3]`` RGB, and ``read_all()``.
"""
import os
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Optional

import cv2
import numpy as np

from cten_common.data.errors import DataError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm")
FRAME_FOLDER_FPS = 30.0
_FRAME_NAME = re.compile(r"^\d{6}\.jpg$")


@dataclass(frozen=True)
class _Meta:
    n_frames: int
    fps: Optional[float]     # None when the container gives no usable rate
    height: int
    width: int


# (real path, size, mtime_ns) -> _Meta: re-opening an unchanged file decodes nothing
_META_CACHE = {}


def _check_indices(indices, n_frames):
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    bad = idx[(idx < 0) | (idx >= n_frames)]
    if bad.size:
        raise IndexError(f"frame index {int(bad[0])} outside [0, {n_frames})")
    return idx


class VideoFile:
    """A video file decoded with OpenCV's FFmpeg backend.

    The frame count is the number of frames that actually decode (counted once
    on first open, then cached per path, size and mtime): a truncated file
    reports the frames it still holds, whatever its header claims.
    """

    def __init__(self, path):
        self.path = str(path)
        if not os.path.exists(self.path):
            raise DataError(self.path, "file does not exist")
        if not os.path.isfile(self.path):
            raise DataError(self.path, "not a file")
        ext = os.path.splitext(self.path)[1].lower()
        if ext not in VIDEO_EXTENSIONS:
            raise DataError(self.path, f"unsupported video extension {ext!r} "
                                       f"(expected one of {', '.join(VIDEO_EXTENSIONS)})")
        st = os.stat(self.path)
        if st.st_size == 0:
            raise DataError(self.path, "empty file (0 bytes)")
        key = (os.path.realpath(self.path), st.st_size, st.st_mtime_ns)
        if key not in _META_CACHE:
            _META_CACHE[key] = _probe(self.path)
        self._meta = _META_CACHE[key]

    n_frames = property(lambda self: self._meta.n_frames)
    fps = property(lambda self: self._meta.fps)
    height = property(lambda self: self._meta.height)
    width = property(lambda self: self._meta.width)

    def read(self, indices):
        """Frames at 0-based ``indices``: one sequential pass up to the largest index."""
        idx = _check_indices(indices, self.n_frames)
        out = np.empty((len(idx), self.height, self.width, 3), np.uint8)
        if not len(idx):
            return out
        wanted = {}
        for pos, i in enumerate(idx.tolist()):
            wanted.setdefault(i, []).append(pos)
        cap = _open_capture(self.path)
        try:
            for i in range(max(wanted) + 1):
                if not cap.grab():
                    raise DataError(self.path, f"frame {i} no longer decodes (file changed?)")
                if i in wanted:
                    out[wanted[i]] = _retrieve_rgb(cap, self.path, i, (self.height, self.width))
        finally:
            cap.release()
        return out

    def read_all(self):
        return self.read(np.arange(self.n_frames))

    def __repr__(self):
        return f"VideoFile({self.path!r}, n_frames={self.n_frames}, fps={self.fps})"


def _open_capture(path):
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise DataError(path, "cannot open as a video (corrupt, truncated or unreadable)")
    return cap


def _retrieve_rgb(cap, path, i, shape=None):
    ok, frame = cap.retrieve()
    if not ok or frame is None or frame.ndim != 3 or frame.shape[2] != 3:
        raise DataError(path, f"frame {i} does not decode to a colour image")
    if shape is not None and frame.shape[:2] != shape:
        raise DataError(path, f"frame {i} has size {frame.shape[:2]}, frame 0 has {shape}")
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def _probe(path):
    """Decode the whole file once: real frame count, frame size and frame rate."""
    cap = _open_capture(path)
    try:
        if not cap.grab():
            raise DataError(path, "no frames")
        height, width = _retrieve_rgb(cap, path, 0).shape[:2]
        n = 1
        while cap.grab():
            n += 1
        fps = cap.get(cv2.CAP_PROP_FPS)
    finally:
        cap.release()
    fps = float(fps) if np.isfinite(fps) and fps > 0 else None
    return _Meta(n, fps, height, width)


class FrameFolder:
    """The reference layout ``{root}/{label}/{id}/000001.jpg ...`` with an ``n_frames`` file.

    Index ``i`` is the file ``{i+1:06d}.jpg``.  Without an ``n_frames`` file the
    jpgs named that way are counted.
    """

    def __init__(self, path, fps=FRAME_FOLDER_FPS):
        self.path = str(path)
        if not os.path.isdir(self.path):
            raise DataError(self.path, "frame folder does not exist")
        self.fps = float(fps)
        count_file = os.path.join(self.path, "n_frames")
        if os.path.isfile(count_file):
            with open(count_file) as f:
                text = f.read().strip()
            try:
                value = float(text)
            except ValueError:
                raise DataError(count_file, f"not a number: {text!r}") from None
            if not value.is_integer() or value < 0:
                raise DataError(count_file, f"not a frame count: {text!r}")
            self.n_frames = int(value)
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
        return self._load(0).shape[:2]

    height = property(lambda self: self._size[0])
    width = property(lambda self: self._size[1])

    def _load(self, i):
        path = self.frame_path(i)
        if not os.path.isfile(path):
            raise DataError(path, f"missing frame {i} (folder says n_frames={self.n_frames})")
        frame = cv2.imread(path, cv2.IMREAD_COLOR)
        if frame is None:
            raise DataError(path, "cannot decode as an image")
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def read(self, indices):
        """Frames at 0-based ``indices``; each distinct file is decoded once."""
        idx = _check_indices(indices, self.n_frames)
        out = np.empty((len(idx), self.height, self.width, 3), np.uint8)
        for i in np.unique(idx).tolist():
            frame = self._load(i)
            if frame.shape[:2] != self._size:
                raise DataError(self.frame_path(i), f"size {frame.shape[:2]} differs from "
                                                    f"frame 0's {self._size}")
            out[idx == i] = frame
        return out

    def read_all(self):
        return self.read(np.arange(self.n_frames))

    def __repr__(self):
        return f"FrameFolder({self.path!r}, n_frames={self.n_frames}, fps={self.fps})"


def open_video(path):
    """A folder is a ``FrameFolder``, anything else a ``VideoFile``."""
    if os.path.isdir(path):
        return FrameFolder(path)
    return VideoFile(path)
