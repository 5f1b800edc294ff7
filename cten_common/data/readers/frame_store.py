"""A frame store: one video's frames as JPEGs in one random-access file; its reader.

``{root}/{label}/{id}.frames``, written once by ``cten-prepare-dataset
--store-out`` (``cten_common.data.frame_store_writer.write_store``) and read
through ``open_video`` like a video file or frame folder (``FrameStore``, a
``base.VideoReader``).

Layout (little-endian)::

    header   HEADER: magic b"CTENFRMS", version, n_frames, fps (0: unknown),
             height, width, JPEG quality, short side asked for (0: source size),
             source size in bytes, source mtime in ns
    offsets  n_frames + 1 uint64: frame i is the bytes [offsets[i], offsets[i+1])
    frames   the JPEG of every frame, back to back

A read is, per run of consecutive wanted frames, one ``os.pread`` of their
bytes and one ``cv2.imdecode`` per distinct frame: no file position is shared,
so threads may read one store at once, and neither call holds the GIL.  Opening
checks the header and the offsets against the file's size before allocating
anything from them, so a truncated or lying file gives a ``DataError`` naming
it.  The header and offsets are cached per (real path, size, mtime).
"""
import os
import struct
from dataclasses import dataclass
from typing import Optional

import numpy as np

from cten_common.data.errors import DataError

from .base import VideoReader, file_key, pause_point, read_frames
from .jpeg import decode_jpeg

MAGIC = b"CTENFRMS"
VERSION = 1
HEADER = struct.Struct("<8sIQdIIIIQQ")
MAX_SIDE = 65500                  # the largest JPEG side


@dataclass(frozen=True)
class StoreHeader:
    n_frames: int
    fps: Optional[float]
    height: int
    width: int
    quality: int
    short_side: int
    source_size: int
    source_mtime_ns: int

    def pack(self):
        return HEADER.pack(MAGIC, VERSION, self.n_frames, self.fps or 0.0, self.height,
                           self.width, self.quality, self.short_side, self.source_size,
                           self.source_mtime_ns)


# (real path, size, mtime_ns) -> (StoreHeader, offsets)
_STORE_CACHE = {}


def read_header(path):
    """The header and offsets of a store, checked against its size; a DataError otherwise."""
    key = file_key(path)
    if key not in _STORE_CACHE:
        _STORE_CACHE[key] = _read_index(path, key[1])
    return _STORE_CACHE[key]


def _read_index(path, size):
    with open(path, "rb") as f:
        raw = f.read(HEADER.size)
        if len(raw) < HEADER.size:
            raise DataError(path, f"not a frame store: {size} bytes, shorter than its header")
        magic, version, n, fps, height, width, quality, short_side, src_size, src_mtime = \
            HEADER.unpack(raw)
        if magic != MAGIC:
            raise DataError(path, "not a frame store (bad magic bytes)")
        if version != VERSION:
            raise DataError(path, f"frame store version {version}, this reader knows {VERSION}")
        if n < 1:
            raise DataError(path, "frame store holds no frames")
        if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
            raise DataError(path, f"frame store header gives an impossible size {height}x{width}")
        table_end = HEADER.size + 8 * (n + 1)
        if table_end > size:
            raise DataError(path, f"truncated frame store: header says {n} frames, whose offset "
                                  f"table alone needs {table_end} bytes, the file has {size}")
        offsets = np.frombuffer(f.read(8 * (n + 1)), "<u8").astype(np.int64)
    if len(offsets) != n + 1:
        raise DataError(path, "truncated frame store: offset table cut short")
    if offsets[0] != table_end:
        raise DataError(path, f"corrupt frame store: frame 0 starts at {offsets[0]}, not {table_end}")
    steps = np.diff(offsets)
    if (steps <= 0).any():
        bad = int(np.flatnonzero(steps <= 0)[0])
        raise DataError(path, f"corrupt frame store: frame {bad} has {int(steps[bad])} bytes")
    if offsets[-1] != size:
        raise DataError(path, f"truncated frame store: its frames end at byte {offsets[-1]}, "
                              f"the file has {size} bytes")
    header = StoreHeader(int(n), float(fps) if fps > 0 else None, int(height), int(width),
                         int(quality), int(short_side), int(src_size), int(src_mtime))
    return header, offsets


class FrameStore(VideoReader):
    """Random-access reader of a ``.frames`` file (see the module docstring)."""

    def __init__(self, path):
        self.path = str(path)
        self.header, self._offsets = read_header(self.path)

    n_frames = property(lambda self: self.header.n_frames)
    fps = property(lambda self: self.header.fps)
    height = property(lambda self: self.header.height)
    width = property(lambda self: self.header.width)

    def read(self, indices):
        """Frames at 0-based ``indices``: one pread per run of consecutive frames."""
        def decode_into(wanted, slots, out):
            with open(self.path, "rb") as f:
                fd = f.fileno()
                for run in _consecutive(wanted):
                    self._decode_run(fd, wanted[run], slots[run], out)
        return read_frames(self, indices, decode_into)

    def _decode_run(self, fd, frames, slots, out):
        start, end = int(self._offsets[frames[0]]), int(self._offsets[frames[-1] + 1])
        data = os.pread(fd, end - start, start)
        if len(data) != end - start:
            raise DataError(self.path, f"frames {frames[0]}..{frames[-1]}: file shorter than "
                                       f"its offsets (changed while reading?)")
        view = memoryview(data)
        for i, slot in zip(frames.tolist(), slots.tolist()):
            pause_point()
            a, b = int(self._offsets[i]) - start, int(self._offsets[i + 1]) - start
            decode_jpeg(view[a:b], self.path, f"frame {i} does not decode as a JPEG",
                        size=(self.height, self.width), out=out[slot],
                        wrong_size=f"of frame {i} differs from the header's")

    def iter_frames(self, chunk=64):
        for start in range(0, self.n_frames, chunk):
            yield from self.read(np.arange(start, min(start + chunk, self.n_frames)))


def _consecutive(sorted_frames):
    """Slices of ``sorted_frames`` (distinct, increasing) into runs of consecutive values."""
    breaks = np.flatnonzero(np.diff(sorted_frames) != 1) + 1
    bounds = [0, *breaks.tolist(), len(sorted_frames)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
