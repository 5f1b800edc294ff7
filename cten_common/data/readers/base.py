"""What every reader of a video's frames is, and the helpers the readers share.

A reader (``VideoReader``) has ``path``, ``n_frames``, ``fps`` (None when
unknown), ``height``, ``width``, ``read(indices)`` with 0-based frame indices
in any order (repeats allowed), returning uint8 ``[len(indices), H, W, 3]``
RGB, ``read_chunks(indices, chunk)`` (the same in pieces, for non-decreasing
indices), ``read_all()`` and ``iter_frames()`` (every frame in order).
Readers keep no decoder or file position between calls, so several threads
may read from one reader at once; the heavy parts (FFmpeg decoding, JPEG
decoding, file reads) release the GIL.

The readers: ``video_file.VideoFile`` (a video file, decoded with PyAV),
``frame_folder.FrameFolder`` (the reference's folder of JPEGs) and
``frame_store.FrameStore`` (one file of JPEGs); ``open_video`` (this package)
picks one for a path.
"""
import abc
import os

import numpy as np

from cten_common.data.errors import DataError

DECODED_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm")      # video files (VideoFile)
STORE_EXTENSION = ".frames"                                 # frame stores (FrameStore)
VIDEO_EXTENSIONS = DECODED_EXTENSIONS + (STORE_EXTENSION,)  # every file a video can be


class VideoReader(abc.ABC):
    """The interface of every reader (see the module docstring).  ``read_chunks`` and
    ``read_all`` have plain defaults in terms of ``read``; a reader may do better."""

    path: str
    n_frames: int
    fps: "float | None"
    height: int
    width: int

    @abc.abstractmethod
    def read(self, indices):
        """uint8 RGB frames ``[len(indices), height, width, 3]`` at 0-based ``indices``."""

    @abc.abstractmethod
    def iter_frames(self):
        """Every frame in order (uint8 ``[height, width, 3]``), without holding them all."""

    def read_chunks(self, indices, chunk=32):
        """``read(indices)`` in consecutive arrays of at most ``chunk`` frames (non-decreasing indices)."""
        return read_chunks(self, indices, chunk)

    def read_all(self):
        """Every frame, ``[n_frames, height, width, 3]``."""
        return self.read(np.arange(self.n_frames))

    def __repr__(self):
        return f"{type(self).__name__}({self.path!r}, n_frames={self.n_frames}, fps={self.fps})"


def check_indices(indices, n_frames):
    """``indices`` as a flat int64 array; an IndexError for one outside ``[0, n_frames)``."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    bad = idx[(idx < 0) | (idx >= n_frames)]
    if bad.size:
        raise IndexError(f"frame index {int(bad[0])} outside [0, {n_frames})")
    return idx


def check_sorted(idx):
    """``idx`` unchanged; a ValueError unless it is non-decreasing (``read_chunks``)."""
    if len(idx) > 1 and (np.diff(idx) < 0).any():
        raise ValueError("read_chunks needs non-decreasing frame indices")
    return idx


_pause = None


def set_pause_point(wait):
    """In a decoding process: ``wait()`` is called between frames (and before the audio),
    returning when decoding may go on (``cten_common.collection``: decoders wait while the
    model computes on the same CPU cores).  None: never wait."""
    global _pause
    _pause = wait


def pause_point():
    """Where a reader may be held (between frames): returns at once unless a process set a wait."""
    if _pause is not None:
        _pause()


def read_chunks(reader, indices, chunk):
    """``reader.read(indices)`` in consecutive pieces of at most ``chunk`` frames."""
    idx = check_sorted(check_indices(indices, reader.n_frames))
    for start in range(0, len(idx), chunk):
        yield reader.read(idx[start:start + chunk])


def read_frames(reader, indices, decode_into):
    """``reader.read(indices)``: uint8 ``[len(indices), height, width, 3]`` whose ``[k]`` is
    frame ``indices[k]``.  Each distinct frame is decoded once, in increasing order,
    straight into the first slot that wants it, then copied to the repeats:
    ``decode_into(wanted, slots, out)`` writes frame ``wanted[j]`` into ``out[slots[j]]``."""
    idx = check_indices(indices, reader.n_frames)
    out = np.empty((len(idx), reader.height, reader.width, 3), np.uint8)
    if not len(idx):
        return out
    wanted, first, inverse = np.unique(idx, return_index=True, return_inverse=True)
    decode_into(wanted, first, out)
    repeats = np.flatnonzero(np.arange(len(idx)) != first[inverse])
    for k in repeats.tolist():
        out[k] = out[first[inverse[k]]]
    return out


def file_key(path, problem_if_empty="empty file (0 bytes)"):
    """(real path, size, mtime_ns) of an existing non-empty file, else a DataError."""
    if not os.path.exists(path):
        raise DataError(path, "file does not exist")
    if not os.path.isfile(path):
        raise DataError(path, "not a file")
    st = os.stat(path)
    if st.st_size == 0:
        raise DataError(path, problem_if_empty)
    return os.path.realpath(path), st.st_size, st.st_mtime_ns


