"""Read RGB frames from a video file (PyAV) or the reference's folder of jpgs.

Frame stores (``frame_store.FrameStore``) follow the same interface, and
``readers.open_video`` picks the reader for a path.

Every reader shares one interface: ``path``, ``n_frames``, ``fps`` (None when
unknown), ``height``, ``width``, ``read(indices)`` with 0-based frame indices
in any order (repeats allowed), returning uint8 ``[len(indices), H, W, 3]``
RGB, ``read_all()`` and ``iter_frames()`` (every frame in order, one at a time).
Readers keep no decoder or file position between calls, so several threads
may read from one reader at once; the heavy parts (FFmpeg decoding, JPEG
decoding, file reads) release the GIL.

Video files (``VideoFile``) are decoded with PyAV (FFmpeg).  Frame ``i`` is the
i-th frame in presentation order.  On first open a demux-only pass (no
decoding: ~30 ms for a 107 s 640x360 H.264 file) lists the presentation
timestamps and keyframes of every complete packet; that table is cached per
(real path, size, mtime).  ``read`` then decodes only what the wanted frames
need: it groups them into runs, seeks to the keyframe at or before each run and
decodes forward until the run's last frame has come out, skipping the frames
that are neither wanted nor referenced by others (``skip_frame = NONREF``).
On a 107 s 640x360 x264 file (keyframe every 250 frames, B-frames; 2 CPU
cores): a training view's 256 frames (16 snippets) take 1.1 s of CPU, its three
views' 718 distinct frames 2.1 s in one ``read_chunks`` pass, against 3.4 s to
decode the whole file to RGB (the former OpenCV reader decoded up to the largest
index, i.e. ~2.6 s, on every read).  A packet cut short by
a truncated file ends the table, so a truncated file serves the frames it still
holds; a frame that the table lists but that does not decode raises a
``DataError`` naming the file and the frame.  Files whose packets carry no
usable timestamps are decoded once in full on first open and read sequentially.

Colour: every read converts with ``frame.to_ndarray(format="rgb24")`` (FFmpeg's
swscale), whether it seeks or decodes the whole file, so a frame is the same
bytes whichever way it is read.  Measured with PyAV 18.1 (its own FFmpeg 8) and
OpenCV 4.11 (FFmpeg backend): on H.264 yuv420p (64x48, 320x240, 640x360,
1280x720, with and without B-frames), H.264 yuv444p 102x76, MPEG-4 part 2
(mp4v), MJPEG avi and VP8 webm test videos, PyAV's RGB equals OpenCV's exactly
(max abs difference 0), so frames cached by the earlier OpenCV reader match.

Truncated files: OpenCV stopped at the first packet cut short and lost the
frames its decoder held for B-frame reordering (2 on our 64x48 test files);
this reader drains them, so it may report a couple more frames than OpenCV did
on the same truncated file, all of which decode.  With B-frames the frames that
survive a cut are not always a prefix of the original ones (a B-frame whose
packet was cut is missing while a later P-frame is there); indices count the
frames that survive, in presentation order.
"""
import os
import re
import struct
from dataclasses import dataclass
from functools import cached_property
from typing import Optional

import cv2
import numpy as np

from cten_common.data.errors import DataError

DECODED_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm")
STORE_EXTENSION = ".frames"          # cten_common.data.frame_store
VIDEO_EXTENSIONS = DECODED_EXTENSIONS + (STORE_EXTENSION,)
FPS_FILE = "fps"                     # a frame folder's rate, beside n_frames (cten-prepare-dataset)
_FRAME_NAME = re.compile(r"^\d{6}\.jpg$")
_COUNT_FILE_MAX_BYTES = 64           # an n_frames file holds one number


@dataclass(frozen=True)
class _Meta:
    n_frames: int
    fps: Optional[float]     # None when the container gives no usable rate
    height: int
    width: int
    pts: Optional[np.ndarray] = None        # int64 [n_frames], increasing; None: read sequentially
    key_index: Optional[np.ndarray] = None  # frame indices of keyframes, increasing
    time_base: Optional[float] = None       # seconds per pts tick


# (real path, size, mtime_ns) -> _Meta: re-opening an unchanged file decodes nothing
_META_CACHE = {}


def _check_indices(indices, n_frames):
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    bad = idx[(idx < 0) | (idx >= n_frames)]
    if bad.size:
        raise IndexError(f"frame index {int(bad[0])} outside [0, {n_frames})")
    return idx


def _check_sorted(idx):
    if len(idx) > 1 and (np.diff(idx) < 0).any():
        raise ValueError("read_chunks needs non-decreasing frame indices")
    return idx


def _read_chunks(reader, indices, chunk):
    """``reader.read(indices)`` in consecutive pieces of at most ``chunk`` frames."""
    idx = _check_sorted(_check_indices(indices, reader.n_frames))
    for start in range(0, len(idx), chunk):
        yield reader.read(idx[start:start + chunk])


def _fill(out, idx, decode_into):
    """Fill ``out[k]`` with frame ``idx[k]``: each distinct frame is decoded once,
    in increasing order, straight into the first slot that wants it, then copied
    to the repeats.  ``decode_into(wanted, slots)`` writes frame ``wanted[j]``
    into ``out[slots[j]]``."""
    wanted, first, inverse = np.unique(idx, return_index=True, return_inverse=True)
    decode_into(wanted, first)
    repeats = np.flatnonzero(np.arange(len(idx)) != first[inverse])
    for k in repeats.tolist():
        out[k] = out[first[inverse[k]]]
    return out


def _file_key(path, problem_if_empty="empty file (0 bytes)"):
    """(real path, size, mtime_ns) of an existing non-empty file, else a DataError."""
    if not os.path.exists(path):
        raise DataError(path, "file does not exist")
    if not os.path.isfile(path):
        raise DataError(path, "not a file")
    st = os.stat(path)
    if st.st_size == 0:
        raise DataError(path, problem_if_empty)
    return os.path.realpath(path), st.st_size, st.st_mtime_ns


class VideoFile:
    """A video file decoded with PyAV; reads decode only the GOPs their frames need.

    The frame count is the number of complete video packets (a demux-only pass
    on first open, then cached per path, size and mtime); frame 0 is decoded to
    check that the count starts where decoding starts.
    """

    def __init__(self, path):
        self.path = str(path)
        ext = os.path.splitext(self.path)[1].lower()
        if os.path.exists(self.path) and ext not in DECODED_EXTENSIONS:
            raise DataError(self.path, f"unsupported video extension {ext!r} "
                                       f"(expected one of {', '.join(VIDEO_EXTENSIONS)})")
        key = _file_key(self.path)
        if key not in _META_CACHE:
            _META_CACHE[key] = _probe(self.path)
        self._meta = _META_CACHE[key]

    n_frames = property(lambda self: self._meta.n_frames)
    fps = property(lambda self: self._meta.fps)
    height = property(lambda self: self._meta.height)
    width = property(lambda self: self._meta.width)

    def frame_times(self):
        """float64 [n_frames + 1] from the container's timestamps: the start of every frame in
        seconds after frame 0, then the end of the last (its start plus the previous frame's
        duration, or 1/fps); None when the packets carry no usable timestamps.  For a
        variable frame rate these, not ``i / fps``, are the frames' times."""
        meta = self._meta
        if meta.pts is None or meta.time_base is None:
            return None
        start = (meta.pts - meta.pts[0]).astype(np.float64) * meta.time_base
        if len(start) > 1:
            last = start[-1] - start[-2]
        elif meta.fps:
            last = 1.0 / meta.fps
        else:
            return None
        return np.append(start, start[-1] + last)

    def read(self, indices):
        """Frames at 0-based ``indices``, decoding from the keyframe before each run."""
        idx = _check_indices(indices, self.n_frames)
        out = np.empty((len(idx), self.height, self.width, 3), np.uint8)
        if not len(idx):
            return out

        def decode_into(wanted, slots):
            for (_, frame), slot in zip(self._frames_at(wanted), slots.tolist()):
                out[slot] = frame
        return _fill(out, idx, decode_into)

    def read_chunks(self, indices, chunk=32):
        """``read(indices)`` as consecutive arrays of at most ``chunk`` frames, for
        non-decreasing ``indices``: one decoding pass for all of them (each GOP decoded
        once), holding one chunk at a time."""
        idx = _check_sorted(_check_indices(indices, self.n_frames))
        frames = self._frames_at(np.unique(idx))
        current = (-1, None)
        for start in range(0, len(idx), chunk):
            part = idx[start:start + chunk].tolist()
            out = np.empty((len(part), self.height, self.width, 3), np.uint8)
            for k, i in enumerate(part):
                if current[0] != i:
                    current = next(frames)
                out[k] = current[1]
            yield out

    def read_all(self):
        """Every frame, in one sequential decode."""
        out = np.empty((self.n_frames, self.height, self.width, 3), np.uint8)
        for i, frame in enumerate(self.iter_frames()):
            out[i] = frame
        return out

    def iter_frames(self):
        """Every frame in order (uint8 [H, W, 3]), one sequential decode, one frame held."""
        with _open_container(self.path) as container:
            stream = container.streams.video[0]
            for _, frame in self._pick(self._sequential(container, stream), range(self.n_frames)):
                yield frame

    def _frames_at(self, wanted):
        """(index, RGB frame) for each of the increasing distinct ``wanted``, in order,
        from one container: a run of them is decoded from its keyframe on."""
        with _open_container(self.path) as container:
            stream = container.streams.video[0]
            if self._meta.pts is None:
                yield from self._pick(self._sequential(container, stream), wanted.tolist())
                return
            for start, run in _plan_runs(wanted, self._meta.key_index):
                yield from self._pick(self._seek_run(container, stream, start, run), run)

    def _seek_run(self, container, stream, start, run):
        """(index, frame) pairs decoded from keyframe index ``start`` on.  Should the seek
        land after that keyframe (a demuxer whose index disagrees), seek again from
        ever earlier keyframes, down to the first."""
        keys = self._meta.key_index
        candidates = [int(k) for k in keys[keys <= start][::-1]]
        if not candidates or candidates[-1] != 0:
            candidates.append(0)
        wanted_pts = set(self._meta.pts[run].tolist())
        for key in candidates:
            frames = self._from_keyframe(container, stream, key, wanted_pts)
            head = next(frames, None)
            if head is None:
                raise DataError(self.path, f"frame {run[0]} does not decode (file truncated or changed?)")
            if head[0] <= key:
                break
        return _chain([head], frames)

    def _pick(self, frames, wanted):
        """(index, RGB) of the increasing ``wanted`` from the increasing (index, frame)
        stream ``frames``; a wanted frame the stream skips or lacks is a DataError."""
        wanted = iter(wanted)
        target = next(wanted, None)
        if target is None:
            return
        for i, frame in frames:
            if i < target:
                continue
            if i > target:
                break
            yield i, self._rgb(frame, i)
            target = next(wanted, None)
            if target is None:
                return                  # decode nothing past the last wanted frame
        if target is not None:
            raise DataError(self.path, f"frame {target} does not decode (file truncated or changed?)")

    def _from_keyframe(self, container, stream, key, wanted_pts=None):
        """(index, frame) pairs decoded after seeking to the keyframe of frame index ``key``
        (frames that are neither wanted nor referenced skipped, see ``_decode``)."""
        import av
        target = int(self._meta.pts[key])
        try:
            container.seek(target, stream=stream, backward=True, any_frame=False)
        except av.FFmpegError:        # no keyframe at or before it (a stream starting without one)
            container.seek(target, stream=stream, backward=True, any_frame=True)
        stream.codec_context.flush_buffers()
        return self._indexed(container, stream, wanted_pts)

    def _indexed(self, container, stream, wanted_pts=None):
        """Decoded frames with their indices from the pts table; frames it does not list are skipped."""
        pts = self._meta.pts
        for frame in _decode(container, stream, self.path, wanted_pts):
            if frame.pts is None:
                continue
            i = int(np.searchsorted(pts, frame.pts))
            if i < len(pts) and pts[i] == frame.pts:
                yield i, frame

    def _sequential(self, container, stream):
        """(index, frame) pairs from the start of the file."""
        if self._meta.pts is not None:
            return self._indexed(container, stream)
        return enumerate(_decode(container, stream, self.path))

    def _rgb(self, frame, i):
        rgb = frame.to_ndarray(format="rgb24")
        if rgb.shape != (self.height, self.width, 3):
            raise DataError(self.path, f"frame {i} has size {rgb.shape[:2]}, "
                                       f"frame 0 has {(self.height, self.width)}")
        return rgb

    def __repr__(self):
        return f"VideoFile({self.path!r}, n_frames={self.n_frames}, fps={self.fps})"


def _chain(first, rest):
    yield from first
    yield from rest


def _plan_runs(wanted, key_index):
    """``[(start keyframe index, [frames]), ...]`` for sorted distinct ``wanted``: a
    frame joins the current run unless a keyframe at or before it lies after the
    run's last frame; seeking there then decodes no more than going on would."""
    runs = []
    starts = np.searchsorted(key_index, wanted, side="right") - 1
    for w, s in zip(wanted.tolist(), starts.tolist()):
        start = int(key_index[s]) if s >= 0 else 0
        if runs and start <= runs[-1][1][-1]:
            runs[-1][1].append(w)
        else:
            runs.append((start, [w]))
    return runs


def _open_container(path):
    import av
    try:
        container = av.open(path, mode="r")
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot open as a video (corrupt, truncated or unreadable): "
                              f"{exc}") from None
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        container.close()
        if not kinds:
            raise DataError(path, "cannot open as a video: no streams found (corrupt or truncated?)")
        raise DataError(path, f"no video stream (only {', '.join(kinds)})")
    stream = container.streams.video[0]
    stream.thread_type = "SLICE"       # no frame-threading delay after each seek
    return container


def _packets(container, stream):
    """Complete packets of ``stream`` from the container's position, in decode order.
    They end at the first packet cut short (a truncated file) or unreadable: every
    frame after it is treated as absent, for the frame table and decoding alike."""
    import av
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except (StopIteration, av.FFmpegError):
            return
        if packet.is_corrupt:
            return
        if packet.size:
            yield packet


def _decode(container, stream, path, wanted_pts=None):
    """Decoded frames of ``stream`` from the container's position, in presentation
    order; a packet that fails to decode only loses its own frame.

    With ``wanted_pts`` (a set), packets of other frames are decoded with
    ``skip_frame = NONREF``: frames that no other frame references and that are not
    wanted are not decoded at all (about half of an x264 stream's frames, a third of
    its decoding time), which changes no other frame."""
    import av
    context = stream.codec_context
    skipping = False
    try:
        for packet in _packets(container, stream):
            if wanted_pts is not None and (packet.pts not in wanted_pts) != skipping:
                skipping = not skipping
                context.skip_frame = "NONREF" if skipping else "DEFAULT"
            try:
                yield from stream.decode(packet)
            except av.FFmpegError:
                continue
        if skipping:
            context.skip_frame = "DEFAULT"
            skipping = False
        try:
            yield from stream.decode(None)          # drain the frames held for reordering
        except av.FFmpegError:
            return
    finally:
        if skipping:
            context.skip_frame = "DEFAULT"


def _frame_rate(stream):
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate is not None and rate > 0 and np.isfinite(float(rate)):
            return float(rate)
    return None


def _demux_table(container, stream):
    """Presentation timestamps and keyframe flags of every complete packet, in
    decode order, from a demux-only pass (nothing is decoded)."""
    pts, keys = [], []
    for packet in _packets(container, stream):
        pts.append(packet.pts)
        keys.append(packet.is_keyframe)
    return pts, keys


def _probe(path):
    """Frame table, frame size and rate: a demux-only pass plus frame 0 decoded.
    Falls back to decoding everything once when packets lack timestamps or frame 0
    is not the first listed frame."""
    with _open_container(path) as container:
        stream = container.streams.video[0]
        fps = _frame_rate(stream)
        time_base = float(stream.time_base) if stream.time_base else None
        pts, keys = _demux_table(container, stream)
    if not pts:
        raise DataError(path, "no frames")
    if None in pts or len(set(pts)) != len(pts):
        return _probe_by_decoding(path, fps)
    order = np.argsort(pts, kind="stable")
    table = np.asarray(pts, np.int64)[order]
    key_index = np.flatnonzero(np.asarray(keys, bool)[order])
    with _open_container(path) as container:
        stream = container.streams.video[0]
        first = next(_decode(container, stream, path), None)
    if first is None:
        raise DataError(path, "no frames")
    if first.pts != table[0]:
        return _probe_by_decoding(path, fps)
    return _Meta(len(table), fps, first.height, first.width, table, key_index, time_base)


def _probe_by_decoding(path, fps):
    """Decode the whole file once: the real frame count; reads then decode sequentially."""
    n, size = 0, None
    with _open_container(path) as container:
        stream = container.streams.video[0]
        for frame in _decode(container, stream, path):
            if size is None:
                size = (frame.height, frame.width)
            n += 1
    if not n:
        raise DataError(path, "no frames")
    return _Meta(n, fps, size[0], size[1])


class FrameFolder:
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
        count_file = os.path.join(self.path, "n_frames")
        if os.path.isfile(count_file):
            self.n_frames = _read_count_file(count_file)
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
        size = _jpeg_size(_read_file(path, 0, head=65536, n_frames=self.n_frames))
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
        idx = _check_indices(indices, self.n_frames)
        out = np.empty((len(idx), self.height, self.width, 3), np.uint8)

        def decode_into(wanted, slots):
            for i, slot in zip(wanted.tolist(), slots.tolist()):
                self._load(i, out[slot])
        return _fill(out, idx, decode_into)

    def read_chunks(self, indices, chunk=32):
        """``read(indices)`` in consecutive arrays of at most ``chunk`` frames (non-decreasing indices)."""
        return _read_chunks(self, indices, chunk)

    def read_all(self):
        return self.read(np.arange(self.n_frames))

    def iter_frames(self):
        for i in range(self.n_frames):
            yield self._load(i)

    def __repr__(self):
        return f"FrameFolder({self.path!r}, n_frames={self.n_frames}, fps={self.fps})"


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


def _read_count_file(count_file):
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


def decode_jpeg(data, path, what="cannot decode as an image", size=None, out=None,
                wrong_size="differs from the expected"):
    """RGB uint8 [H, W, 3] of encoded image bytes, written into ``out`` when given (a
    C-contiguous uint8 [H, W, 3]: no temporary RGB copy); a DataError naming ``path``
    when the bytes do not decode or the image is not (height, width) ``size``."""
    frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if len(data) else None
    if frame is None:
        raise DataError(path, what)
    if size is not None and frame.shape[:2] != tuple(size):
        raise DataError(path, f"size {frame.shape[:2]} {wrong_size} {tuple(size)}")
    if out is None:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB, dst=out)
    if not np.shares_memory(rgb, out):       # OpenCV allocated instead (out not usable as is)
        out[...] = rgb
    return out


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(head):
    """(height, width) from a JPEG's start-of-frame marker in its first bytes; None
    when they hold none (not a JPEG, or the marker lies further in)."""
    if head[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        length = struct.unpack(">H", head[pos + 2:pos + 4])[0]
        if marker in _SOF_MARKERS:
            if pos + 9 > len(head):
                return None
            height, width = struct.unpack(">HH", head[pos + 5:pos + 9])
            return (height, width) if height and width else None
        pos += 2 + length
    return None
