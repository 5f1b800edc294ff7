"""A frame store: one video's frames as JPEGs in one random-access file.

``{root}/{label}/{id}.frames``, written once by ``cten-prepare-dataset
--store-out`` (``write_store``) and read through ``open_video`` (``readers``) like a video file
or frame folder (``FrameStore``: ``n_frames``, ``fps``, ``height``, ``width``,
``read(indices)``, ``read_all()``, ``iter_frames()``).

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

Frames are resized so that their short side is ``short_side`` (default 240,
the reference's ``scale=-1:240`` for landscape videos; for portrait videos the
reference fixes the height, this the short side, so both stay >= 240 px
wherever the crop is taken), with ``cv2.INTER_AREA`` when shrinking and
``cv2.INTER_CUBIC`` when enlarging, then JPEG-encoded by OpenCV at ``quality``
(default 90).  The model crops the short side and resizes it to 112 px, so any
short side >= 112 feeds it; a smaller side such as 128 stores 3.5x fewer
pixels (measured on 640x360 testsrc2 at quality 90: 6.8 instead of 15.0 KB a
frame, 0.23 instead of 0.54 ms of CPU to read one; quality 75 at 240: 10.0 KB,
0.42 ms; the reference's ffmpeg-made frame folder: 0.74 ms) but rescales
the 112 px crop from 128 px instead of 240 px, i.e. the frames the model sees
are no longer the reference's (slightly blurrier); keep 240 to match the
reference, use 128 when disk or reading speed matters more.

Disk cost, measured on testsrc2 640x360 H.264 videos (a busy synthetic
pattern; real footage usually compresses better): short side 240 (427x240)
at quality 90 is ~15 KB a frame, 27 MB per minute at 29.97 fps (22.6 at 25
fps); short side 128 (228x128) is 12.2 MB per minute.  For comparison the
mp4 itself is 5-6 MB per minute and the reference's frame folder (``ffmpeg
-vf scale=-1:240 %06d.jpg``, ffmpeg's default JPEG quantiser, visibly lower
quality: ~4 KB a frame) 6.3-7.5 MB per minute, plus one file per frame.
Writing a 107 s 360p video (3207 frames) took ~16 s on 2 busy CPU cores.

Writing decodes the source once, sequentially, is atomic (a temporary file in
the same folder, fsync, ``os.replace``) and resumable: a store whose header
records the source's current size and mtime and the same short side and
quality is left alone.
"""
import os
import struct
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from cten_common.checkpoint_io.atomic import fsync_folder
from cten_common.data.errors import DataError
from cten_common.data.video import (FrameFolder, VideoFile, _check_indices, _fill, _file_key, _read_chunks,
                                     decode_jpeg)

MAGIC = b"CTENFRMS"
VERSION = 1
HEADER = struct.Struct("<8sIQdIIIIQQ")
MAX_SIDE = 65500                  # the largest JPEG side
EXTENSION = ".frames"


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
    key = _file_key(path)
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


class FrameStore:
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
        idx = _check_indices(indices, self.n_frames)
        out = np.empty((len(idx), self.height, self.width, 3), np.uint8)
        if not len(idx):
            return out

        def decode_into(wanted, slots):
            with open(self.path, "rb") as f:
                fd = f.fileno()
                for run in _consecutive(wanted):
                    self._decode_run(fd, wanted[run], slots[run], out)
        return _fill(out, idx, decode_into)

    def _decode_run(self, fd, frames, slots, out):
        start, end = int(self._offsets[frames[0]]), int(self._offsets[frames[-1] + 1])
        data = os.pread(fd, end - start, start)
        if len(data) != end - start:
            raise DataError(self.path, f"frames {frames[0]}..{frames[-1]}: file shorter than "
                                       f"its offsets (changed while reading?)")
        view = memoryview(data)
        for i, slot in zip(frames.tolist(), slots.tolist()):
            a, b = int(self._offsets[i]) - start, int(self._offsets[i + 1]) - start
            decode_jpeg(view[a:b], self.path, f"frame {i} does not decode as a JPEG",
                        size=(self.height, self.width), out=out[slot],
                        wrong_size=f"of frame {i} differs from the header's")

    def read_chunks(self, indices, chunk=32):
        """``read(indices)`` in consecutive arrays of at most ``chunk`` frames (non-decreasing indices)."""
        return _read_chunks(self, indices, chunk)

    def read_all(self):
        return self.read(np.arange(self.n_frames))

    def iter_frames(self, chunk=64):
        for start in range(0, self.n_frames, chunk):
            yield from self.read(np.arange(start, min(start + chunk, self.n_frames)))

    def __repr__(self):
        return f"FrameStore({self.path!r}, n_frames={self.n_frames}, fps={self.fps})"


def _consecutive(sorted_frames):
    """Slices of ``sorted_frames`` (distinct, increasing) into runs of consecutive values."""
    breaks = np.flatnonzero(np.diff(sorted_frames) != 1) + 1
    bounds = [0, *breaks.tolist(), len(sorted_frames)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def store_size(height, width, short_side):
    """(height, width) of frames whose short side becomes ``short_side`` (0: unchanged)."""
    if not short_side:
        return height, width
    scale = short_side / min(height, width)
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def encode_frame(rgb, size, quality):
    """JPEG bytes of an RGB frame resized to ``size`` (height, width): the store's encoding."""
    height, width = size
    if (height, width) != rgb.shape[:2]:
        shrink = height * width < rgb.shape[0] * rgb.shape[1]
        rgb = cv2.resize(rgb, (width, height),
                         interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("OpenCV could not encode a frame as JPEG")
    return data.tobytes()


def is_current(store_path, source_path, short_side, quality):
    """Whether ``store_path`` is a complete, valid store of the current ``source_path``
    written with these settings (then a rerun leaves it alone)."""
    if not os.path.isfile(store_path):
        return False
    try:
        header, _ = read_header(store_path)
    except DataError:
        return False
    st = os.stat(source_path)
    return (header.source_size, header.source_mtime_ns, header.short_side, header.quality) == \
        (st.st_size, st.st_mtime_ns, int(short_side), int(quality))


def write_store(source_path, store_path, short_side=240, quality=90, progress=False):
    """Write the frame store of a video (file or frame folder); returns "written" or
    "skipped" (already current).  The source is decoded once, frame by frame."""
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    if is_current(store_path, source_path, short_side, quality):
        return "skipped"
    st = os.stat(source_path)
    video = _open_source(source_path)
    n = video.n_frames
    size = store_size(video.height, video.width, short_side)
    header = StoreHeader(n, video.fps, size[0], size[1], int(quality), int(short_side),
                         st.st_size, st.st_mtime_ns)
    folder = os.path.dirname(os.path.abspath(store_path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{store_path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            _write_frames(f, header, video, progress)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, store_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    fsync_folder(folder)
    return "written"


def _open_source(path):
    """The reader of a store's source, as ``readers.open_video`` opens it (that module
    sits above this one): a frame folder, another store or a video file."""
    path = str(path)
    if os.path.isdir(path):
        return FrameFolder(path)
    if path.lower().endswith(EXTENSION):
        return FrameStore(path)
    return VideoFile(path)


def _write_frames(f, header, video, progress):
    """Header, placeholder offsets, the JPEGs, then the real offsets."""
    n = header.n_frames
    table_end = HEADER.size + 8 * (n + 1)
    f.write(header.pack())
    f.write(b"\0" * 8 * (n + 1))
    offsets = np.empty(n + 1, "<u8")
    offsets[0] = pos = table_end
    frames = video.iter_frames()
    if progress:
        from tqdm import tqdm
        frames = tqdm(frames, total=n, desc=os.path.basename(video.path), unit="frame", leave=False)
    count = 0
    for i, rgb in enumerate(frames):
        if i >= n:
            raise DataError(video.path, f"more frames decode than the {n} it reported")
        data = encode_frame(rgb, (header.height, header.width), header.quality)
        f.write(data)
        pos += len(data)
        offsets[i + 1] = pos
        count += 1
    if count != n:
        raise DataError(video.path, f"only {count} of its {n} frames decode")
    f.seek(HEADER.size)
    f.write(offsets.tobytes())
