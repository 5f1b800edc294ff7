"""cten-check-data --config CONFIG.yaml | --annotation A --video-root V [--audio-root R] [--decode]

Checks, before training starts, what training reads, in every layout, and
reports every bad entry at once; exit status 1 when anything is wrong.  Needs
no framework (also ``python -m cten_common.data.check``).

What the default check reads (cheap enough for millions of frames, see
docs/data.md for measured times):

* frame folders (``{root}/{label}/{id}/000001.jpg ... + n_frames``): the
  folder is listed once; ``n_frames`` against the JPEGs present (missing frame
  numbers, a folder without any JPEG); every JPEG's first bytes (start marker,
  a start-of-frame header with its size, the same size as frame 0's) and last
  bytes (the end marker: a JPEG cut short does not decode, and this finds it
  without decoding); the first and the last frame are decoded;
* frame stores (``.frames``): the header, the offset table against the file's
  size, every stored frame's bounds (its start and end markers at its
  offsets), the first and last frame decoded;
* video files: opened (the frame table) and the first and last frame decoded;
* audio: every audio file is decoded whole; every cached filterbank (``.npy``)
  is opened without loading it: its shape [frames, 128] and dtype float32.

``--decode`` also decodes every frame (and checks each cached filterbank's
values are finite), with a progress bar over frames and an estimate of the
time it will take, measured on the first frames.

Each video's frame rate and where it came from are listed too (RATE lines; see
cten_common.data.timing): videos with no rate source are named, since their
detection times would be guesses.
"""
import argparse
import os
import re
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..config import DATA_FORMATS
from .annotations import IndexProblems, build_index
from .audio import load_audio
from .errors import DataError
from .readers import open_video
from .readers.base import STORE_EXTENSION
from .readers.frame_folder import read_count_file
from .readers.frame_store import FrameStore, read_header as read_store_header
from .readers.jpeg import decode_jpeg, jpeg_header
from .timing import assumed_rate_warning, frame_timing

HEAD_BYTES = 4096          # a JPEG's start-of-frame header lies in its first bytes (ffmpeg: ~300)
TAIL_BYTES = 64            # the end marker, allowing zero padding after it
_FRAME_NAME = re.compile(r"^(\d{6})\.jpg$")
DEFAULT_THREADS = 8        # files are opened in this many threads (I/O waits overlap)


# ---------------------------------------------------------------------------
# single JPEG files


def jpeg_tail_problem(tail):
    """None when ``tail`` (a JPEG's last bytes) ends with the end-of-image marker FFD9
    (zero bytes after it allowed), else what is wrong."""
    if tail.rstrip(b"\x00").endswith(b"\xff\xd9"):
        return None
    return "truncated or corrupt JPEG (no end-of-image marker FFD9 at its end)"


def check_jpeg_file(path):
    """``((height, width) or None, problem or None)`` of one JPEG file: one open, its
    first and last bytes."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None, "file does not exist"
    except OSError as exc:
        return None, f"cannot open: {exc.strerror or exc}"
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return None, "empty file (0 bytes)"
        head = os.pread(fd, HEAD_BYTES, 0)
        hw, problem = jpeg_header(head)
        if hw is None and problem is None and size > HEAD_BYTES:       # a long header (EXIF): read it all
            hw, problem = jpeg_header(os.pread(fd, size, 0))
        if problem is None and hw is None:
            problem = "corrupt JPEG header (ends before a start-of-frame marker)"
        if problem is not None:
            return None, problem
        tail = head if size <= HEAD_BYTES else os.pread(fd, TAIL_BYTES, size - TAIL_BYTES)
        return hw, jpeg_tail_problem(tail)
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}"
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------
# one video, per layout: a list of DataErrors (empty: fine) and its frame count


def _ranges(numbers):
    """'3, 7..9, 12' of sorted ints."""
    parts, start, prev = [], None, None
    for k in numbers:
        if start is None:
            start = prev = k
        elif k == prev + 1:
            prev = k
        else:
            parts.append(f"{start}" if start == prev else f"{start}..{prev}")
            start = prev = k
    if start is not None:
        parts.append(f"{start}" if start == prev else f"{start}..{prev}")
    return ", ".join(parts)


def _decode_frames(read_one, indices, counter=None):
    """Decode ``read_one(i)`` for every i; the DataErrors of those that fail."""
    problems = []
    for i in indices:
        try:
            read_one(i)
        except DataError as exc:
            problems.append(exc)
        if counter is not None:
            counter.add(1)
    return problems


def check_frame_folder(path, decode=False, counter=None):
    """``(problems, n_frames)`` of a frame folder: what ``FrameFolder`` reads in training."""
    if not os.path.isdir(path):
        return [DataError(path, "frame folder does not exist")], 0
    present = {}
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                m = _FRAME_NAME.match(entry.name)
                if m:
                    present[int(m.group(1))] = entry.path
    except OSError as exc:
        return [DataError(path, f"cannot list the frame folder: {exc.strerror or exc}")], 0
    count_file = os.path.join(path, "n_frames")
    if os.path.isfile(count_file):
        try:
            n = read_count_file(count_file)
        except DataError as exc:
            return [exc], 0
        if n == 0:
            return [DataError(count_file, "no frames (n_frames is 0)")], 0
        said = f"folder says n_frames={n}"
    else:
        n = len(present)         # FrameFolder counts the jpgs named 000001.jpg ...
        said = f"no n_frames file: {n} JPEGs counted"
        if not n:
            return [DataError(path, "no frames: neither an n_frames file nor 000001.jpg ...")], 0
    if not present:
        return [DataError(path, f"no JPEG frames in the folder ({said})")], n
    problems = []
    missing = [k for k in range(1, n + 1) if k not in present]
    if missing:
        first = os.path.join(path, f"{missing[0]:06d}.jpg")
        problems.append(DataError(first, f"missing frame {missing[0] - 1} ({said}, the folder holds "
                                         f"{len(present)} JPEGs; missing: {len(missing)} files, "
                                         f"numbers {_ranges(missing)})"))
    size0 = None
    for k in range(1, n + 1):
        file = present.get(k)
        if file is None:
            continue
        hw, problem = check_jpeg_file(file)
        if counter is not None and not decode:
            counter.add(1)
        if problem is not None:
            problems.append(DataError(file, f"frame {k - 1}: {problem}"))
            continue
        if size0 is None:
            size0 = (k, hw)
        elif hw != size0[1]:
            problems.append(DataError(file, f"frame {k - 1}: size {hw} differs from frame "
                                            f"{size0[0] - 1}'s {size0[1]}"))
    bad = {p.path for p in problems}

    def read_one(i):
        file = os.path.join(path, f"{i + 1:06d}.jpg")
        with open(file, "rb") as f:
            decode_jpeg(f.read(), file, f"frame {i}: cannot decode as an image")

    wanted = range(n) if decode else sorted({0, n - 1})
    wanted = [i for i in wanted if (i + 1) in present and present[i + 1] not in bad]
    problems += _decode_frames(read_one, wanted, counter if decode else None)
    return problems, n


def check_frame_store(path, decode=False, counter=None):
    """``(problems, n_frames)`` of a ``.frames`` file: header, offsets, every frame's bounds."""
    try:
        header, offsets = read_store_header(path)
    except DataError as exc:
        return [exc], 0
    except OSError as exc:
        return [DataError(path, f"cannot read: {exc.strerror or exc}")], 0
    n = header.n_frames
    problems, bad = [], set()
    with open(path, "rb") as f:
        fd = f.fileno()
        for i in range(n):
            start, end = int(offsets[i]), int(offsets[i + 1])
            if end - start < 4:
                problems.append(DataError(path, f"frame {i} ({end - start} bytes at {start}): too short for a JPEG"))
                bad.add(i)
                continue
            head = os.pread(fd, 2, start)
            tail = os.pread(fd, 2, end - 2)
            if head != b"\xff\xd8":
                problems.append(DataError(path, f"frame {i} (bytes {start}..{end}): no JPEG start marker "
                                                f"at its offset (corrupt offsets or frame data)"))
                bad.add(i)
            elif tail != b"\xff\xd9":
                problems.append(DataError(path, f"frame {i} (bytes {start}..{end}): no JPEG end marker at "
                                                f"its end (truncated or corrupt frame data)"))
                bad.add(i)
            if counter is not None and not decode:
                counter.add(1)
    store = FrameStore(path)
    wanted = range(n) if decode else sorted({0, n - 1})
    problems += _decode_frames(lambda i: store.read([i]), [i for i in wanted if i not in bad],
                               counter if decode else None)
    return problems, n


def check_video_file(path, decode=False, counter=None):
    """``(problems, n_frames)`` of a video file: opened, first and last (or every) frame decoded."""
    try:
        video = open_video(path)
        n = video.n_frames
        if n < 1:
            return [DataError(path, "no frames")], 0
        if decode:
            for _ in video.iter_frames():
                if counter is not None:
                    counter.add(1)
        else:
            video.read(sorted({0, n - 1}))
    except DataError as exc:
        return [exc], 0
    return [], n


def check_video(path, decode=False, counter=None):
    """The check of one video in whatever layout holds it."""
    path = str(path)
    if os.path.isdir(path):
        return check_frame_folder(path, decode, counter)
    if path.lower().endswith(STORE_EXTENSION):
        return check_frame_store(path, decode, counter)
    return check_video_file(path, decode, counter)


def check_cached_fbank(path, decode=False):
    """Problems of a cached filterbank (.npy): shape [frames, 128] and float32 read from its
    header (the data not loaded); ``decode``: every value loaded and finite."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        return [DataError(path, f"cannot read the cached filterbank: {exc}")]
    problems = []
    if array.ndim != 2 or array.shape[1] != 128 or array.shape[0] < 1:
        problems.append(DataError(path, f"a cached filterbank must be [frames, 128], got {list(array.shape)}"))
    if array.dtype != np.float32:
        problems.append(DataError(path, f"a cached filterbank must be float32, got {array.dtype}"))
    if decode and not problems:
        try:
            if not np.isfinite(np.asarray(array)).all():
                problems.append(DataError(path, "the cached filterbank holds NaN or infinite values"))
        except (OSError, ValueError) as exc:
            problems.append(DataError(path, f"cannot read the cached filterbank's values: {exc}"))
    return problems


def check_audio(item, allow_silence=False, decode=False):
    """Problems of an item's audio: its file (or its video's own track) decoded whole, or
    its cached filterbank's shape and dtype."""
    source = item.audio_path or item.video_path
    if source.endswith(".npy"):
        return check_cached_fbank(source, decode)
    if item.audio_path is None and os.path.isdir(item.video_path):
        return [DataError(item.video_path, "a frame folder has no audio track: give an audio root "
                                           "(or check with --no-audio)")]
    try:
        load_audio(source)
    except DataError as exc:
        if allow_silence and "no audio track" in exc.problem:
            return []
        return [exc]
    return []


# ---------------------------------------------------------------------------
# the whole data set


class _Counter:
    """A thread-safe count shown by a progress bar."""

    def __init__(self, bar=None):
        self.bar, self.value, self._lock = bar, 0, threading.Lock()

    def add(self, k):
        with self._lock:
            self.value += k
            if self.bar is not None:
                self.bar.update(k)


def _frame_count(path):
    """A cheap frame count for the progress bar's total (0 when unknown)."""
    try:
        if os.path.isdir(path):
            count_file = os.path.join(path, "n_frames")
            if os.path.isfile(count_file):
                return read_count_file(count_file)
            return sum(1 for name in os.listdir(path) if _FRAME_NAME.match(name))
        return open_video(path).n_frames
    except (DataError, OSError):
        return 0


def estimate_decode_s(items, total_frames, threads, sample=24):
    """Seconds ``--decode`` should take: the time to decode ``sample`` frames of the first
    readable video, scaled to ``total_frames`` and the threads (2 per core at best)."""
    for item in items:
        try:
            video = open_video(item.video_path)
            k = min(sample, video.n_frames)
            began = time.perf_counter()
            video.read(np.linspace(0, video.n_frames - 1, k).astype(np.int64))
            per_frame = (time.perf_counter() - began) / k
        except DataError:
            continue
        parallel = max(1, min(threads, os.cpu_count() or 1))
        return per_frame * total_frames / parallel, per_frame
    return None, None


def _timing(item, frame_fps):
    """The FrameTiming of a video that opens, else None (its problems are reported)."""
    try:
        return frame_timing(open_video(item.video_path), item, frame_fps)
    except DataError:
        return None


def scan_items(items, with_audio=True, allow_silence=False, progress=True, decode=False,
               threads=DEFAULT_THREADS, per_item=False, rates=None, frame_fps=None):
    """Check every video (and its audio) of ``items``; return the list of DataErrors, in
    the items' order (``per_item``: one list per item).  Videos are checked in
    ``threads`` threads (file opens overlap).  ``rates``: a list that gets
    ``(item, FrameTiming)`` of every video that opens, in order (``frame_fps``:
    data.frame_fps)."""
    from tqdm import tqdm

    items = list(items)
    threads = max(1, int(threads))
    bar = None
    if decode:
        totals = list(ThreadPoolExecutor(threads).map(lambda it: _frame_count(it.video_path), items))
        total = sum(totals)
        if progress:
            seconds, per_frame = estimate_decode_s(items, total, threads)
            if seconds is not None:
                print(f"--decode: {total} frames, about {per_frame * 1e3:.1f} ms a frame here: "
                      f"about {seconds / 60:.1f} min with {threads} threads on "
                      f"{os.cpu_count()} cores", file=sys.stderr)
        bar = tqdm(total=total, desc="decoding frames", unit="frame", disable=not progress,
                   smoothing=0.05)
    else:
        bar = tqdm(total=len(items), desc="checking videos", unit="video", disable=not progress)
    counter = _Counter(bar)

    def one(item):
        problems, _ = check_video(item.video_path, decode, counter if decode else None)
        if with_audio:
            problems += check_audio(item, allow_silence, decode)
        if not decode:
            counter.add(1)
        return problems, (_timing(item, frame_fps) if rates is not None else None)

    try:
        with ThreadPoolExecutor(threads, thread_name_prefix="cten-check") as pool:
            found = list(pool.map(one, items))
    finally:
        bar.close()
    if rates is not None:
        rates += [(item, timing) for item, (_, timing) in zip(items, found) if timing is not None]
    results = [problems for problems, _ in found]
    return results if per_item else [p for problems in results for p in problems]


def scan(data, subsets=("training", "validation"), with_audio=True, progress=True, decode=False,
         threads=DEFAULT_THREADS, rates=None):
    """All problems of the data set described by a config's ``data`` section (``rates``: as
    in ``scan_items``)."""
    index_problems = IndexProblems()
    items = []
    for subset in subsets:
        try:
            found, _ = build_index(data, subset, index_problems)
        except DataError as exc:
            index_problems.problems.append(exc)
            continue
        items += found
    problems = index_problems.problems + scan_items(
        items, with_audio, bool(data.get("allow_silence", False)), progress, decode, threads,
        rates=rates, frame_fps=data.get("frame_fps"))
    return items, problems


def print_rates(rates):
    """One RATE line per video (rate, source, any note), a count per source, and the
    videos whose rate is assumed."""
    for item, timing in rates:
        print(f"RATE {item.video_id} {timing.describe()}  [{item.video_path}]")
    counts = Counter(timing.source for _, timing in rates)
    print("frame rates from: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-"))
    assumed = [item.video_id for item, timing in rates if not timing.reliable]
    if assumed:
        print(f"WARNING: {assumed_rate_warning(assumed)}")


def main(argv=None, prog="cten-check-data"):
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[1])
    p.add_argument("--config", help="YAML with a 'data' section (format, annotation, video_root, audio_root)")
    p.add_argument("--format", choices=DATA_FORMATS)
    p.add_argument("--annotation")
    p.add_argument("--video-root")
    p.add_argument("--audio-root")
    p.add_argument("--allow-silence", action="store_true", help="videos without audio track are not errors")
    p.add_argument("--no-audio", action="store_true", help="visual-only: do not check audio")
    p.add_argument("--decode", action="store_true",
                   help="also decode every frame (slow: prints an estimate first; see docs/data.md)")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                   help=f"threads opening files (default {DEFAULT_THREADS})")
    p.add_argument("--subsets", default="training,validation",
                   help="comma-separated subsets to check (default training,validation)")
    p.add_argument("--frame-fps", type=float, help="data.frame_fps: the rate of videos with no other source")
    a = p.parse_args(argv)
    data, with_audio = {}, not a.no_audio
    if a.config:
        from ..config import load_run_config
        try:
            config = load_run_config(a.config)
        except ValueError as exc:   # names the file and the setting
            print(f"error: {exc}", file=sys.stderr)
            return 2
        data = {k: v for k, v in config.data.to_dict().items() if v is not None}
        with_audio = with_audio and config.model.modality == "av"     # a visual-only model reads no audio
    for key in ("format", "annotation", "video_root", "audio_root"):
        if getattr(a, key) is not None:
            data[key] = getattr(a, key)
    if a.allow_silence:
        data["allow_silence"] = True
    if a.frame_fps is not None:
        if not a.frame_fps > 0:
            p.error("--frame-fps must be a positive number of frames per second")
        data["frame_fps"] = a.frame_fps
    if "video_root" not in data or (data.get("format", "ve8") != "caer" and "annotation" not in data):
        p.error("give --config or --annotation and --video-root (--format caer: --video-root)")
    began = time.perf_counter()
    rates = []
    items, problems = scan(data, subsets=tuple(s for s in a.subsets.split(",") if s),
                           with_audio=with_audio, decode=a.decode, threads=a.threads, rates=rates)
    print_rates(rates)
    for problem in problems:
        print(f"BAD {problem}")
    print(f"{len(items)} videos indexed, {len(problems)} problems "
          f"({'every frame decoded' if a.decode else 'headers and end markers read'}; "
          f"{time.perf_counter() - began:.1f} s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(prog="python -m cten_common.data.check"))
