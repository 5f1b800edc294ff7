"""Video files, decoded with PyAV (FFmpeg): the reader ``VideoFile`` (``base.VideoReader``).

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
from dataclasses import dataclass
from typing import Optional

import numpy as np

from cten_common.data.errors import DataError

from .base import (DECODED_EXTENSIONS, VIDEO_EXTENSIONS, VideoReader, check_indices, check_sorted, file_key,
                   pause_point, read_frames)


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


class VideoFile(VideoReader):
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
        key = file_key(self.path)
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
        def decode_into(wanted, slots, out):
            for (_, frame), slot in zip(self._frames_at(wanted), slots.tolist()):
                out[slot] = frame
        return read_frames(self, indices, decode_into)

    def read_chunks(self, indices, chunk=32):
        """``read(indices)`` as consecutive arrays of at most ``chunk`` frames, for
        non-decreasing ``indices``: one decoding pass for all of them (each GOP decoded
        once), holding one chunk at a time."""
        idx = check_sorted(check_indices(indices, self.n_frames))
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
            pause_point()
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
