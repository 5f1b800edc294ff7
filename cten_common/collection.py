"""Predicting a collection of videos: what needs no framework, written once.

``cten-predict`` with many videos (``cten_common.predict``, over an engine) runs
``predict_collection`` over a model call of its engine (``predict_fn(batch) -> {"logits", "gamma"}``).  Here:

* ``gather``: the videos of the command line: files, frame folders, folders searched
  recursively for both, text files listing paths (one a line, ``#`` comments), and
  annotation JSONs (their videos under ``video_root`` / ``audio_root``, with their ground
  truth; a video the annotation names but the disk lacks is a failed entry, not a stop);
* ``ResultsFile``: the JSONL output, one line per video written in one ``write`` of
  ``O_APPEND`` (a killed run leaves whole lines; a torn last line is cut off when the file
  is opened again), the videos already there skipped on a new run (``--overwrite``:
  afresh; failed ones again with ``retry_failed``), and a CSV summary beside it;
* ``Decoder``: videos decoded and sampled in worker processes (``spawn``: no framework in
  them), in order, a bounded number ahead of the model;
* ``describe``: one video's result (top-k, every segment's attention with its times, the
  detected spans, the ground truth), the same dict for one video and for many.
"""
import contextlib
import csv
import io
import json
import multiprocessing
import os
import re
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import List, Optional

import numpy as np

from .data.annotations import SUBSETS, VideoItem, label_and_spans, load_annotation, rate_and_duration, IndexProblems
from .data.errors import DataError
from .data.readers.base import STORE_EXTENSION, VIDEO_EXTENSIONS
from .data.readers.frame_folder import COUNT_FILE
from .metrics import detections_for_video, normalise_attention, segment_times, softmax

RESULT_VERSION = 1


@dataclass
class Entry:
    """One video to predict: its path (as given), its key (the absolute path: what resuming
    matches), its own audio file if any, its ground truth, and an error found while listing
    it (then it is not decoded)."""
    path: str
    audio: Optional[str] = None
    label: Optional[str] = None
    spans: List[List[float]] = field(default_factory=list)
    fps: Optional[float] = None
    duration: Optional[float] = None
    video_id: Optional[str] = None
    error: Optional[str] = None

    @property
    def key(self):
        return os.path.abspath(self.path)


def video_id_of(path):
    """The annotation id of a video path: a frame folder's name, a file's name without extension."""
    name = os.path.basename(os.path.normpath(path))
    return name if os.path.isdir(path) else os.path.splitext(name)[0]


def is_frame_folder(path):
    """A folder of the reference's extracted frames (``000001.jpg``...) or our frame store's."""
    return os.path.isfile(os.path.join(path, COUNT_FILE)) or os.path.isfile(os.path.join(path, "000001.jpg"))


def _is_video_file(path):
    return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


def _search(folder):
    """Video files and frame folders under ``folder``, recursively, in sorted order."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        if root != folder and is_frame_folder(root):
            found.append(root)
            dirs[:] = []                     # a frame folder's own subfolders are not videos
            continue
        found += [os.path.join(root, f) for f in sorted(files) if _is_video_file(f)]
    return found


def _annotated(path, video_root, audio_root):
    """Entries of every subset of an annotation JSON; missing files as failed entries."""
    if not video_root:
        raise DataError(path, "an annotation as input needs --video-root (or the config's data.video_root)")
    entries = []
    for subset in SUBSETS:
        problems = IndexProblems()
        items, _ = load_annotation(path, video_root, audio_root, subset, problems)
        entries += [Entry(it.video_path, it.audio_path, it.label_name, it.segments, it.fps, it.duration, it.video_id)
                    for it in items]
        for p in problems.problems:
            entries.append(Entry(p.path, error=str(p)))
    return entries


def gather(inputs, video_root=None, audio_root=None):
    """The entries named by ``inputs`` (files, frame folders, folders to search, ``.txt``
    lists, annotation ``.json``), each once (by key), in the order given."""
    entries, seen = [], set()

    def add(entry):
        if entry.key not in seen:
            seen.add(entry.key)
            entries.append(entry)

    for raw in inputs:
        path = str(raw)
        if os.path.isdir(path):
            for found in ([path] if is_frame_folder(path) else _search(path)):
                add(Entry(found))
        elif path.lower().endswith(".json"):
            for entry in _annotated(path, video_root, audio_root):
                add(entry)
        elif path.lower().endswith(".txt"):
            try:
                with open(path) as f:
                    lines = [line.strip() for line in f]
            except OSError as exc:
                raise DataError(path, f"cannot read the list: {exc.strerror or exc}") from None
            base = os.path.dirname(os.path.abspath(path))
            for line in lines:
                if line and not line.startswith("#"):
                    add(Entry(line if os.path.isabs(line) else os.path.join(base, line)))
        elif os.path.exists(path) or _is_video_file(path) or path.endswith(STORE_EXTENSION):
            add(Entry(path))         # a file that does not exist fails as that video, by name
        else:
            raise DataError(path, "not found, and not a video file, a frame folder, a .txt list or an "
                                  "annotation .json")
    return entries


def with_ground_truth(entries, annotation):
    """Entries given by path, their ground truth (label, spans, rate) from an annotation JSON
    where it names them (by video id)."""
    try:
        with open(annotation) as f:
            database = json.load(f).get("database") or {}
    except (OSError, ValueError, AttributeError) as exc:
        raise DataError(annotation, f"cannot read the annotation: {exc}") from None
    out = []
    for e in entries:
        entry = database.get(e.video_id or video_id_of(e.path))
        if e.label is None and isinstance(entry, dict):
            try:
                label, spans = label_and_spans(entry)
                fps, duration = rate_and_duration(entry)
            except ValueError as exc:
                raise DataError(annotation, f"video {video_id_of(e.path)!r}: {exc}") from None
            e = replace(e, label=label, spans=spans, fps=fps, duration=duration)
        out.append(e)
    return out


# ---- one video's result ----------------------------------------------------------------------

def describe(entry, n_frames, timing, logits, gamma, classes, threshold=0.5, top_k=3):
    """The result of one video as a JSON-ready dict."""
    probs = softmax(logits)
    at = timing.boundaries(n_frames)
    order = np.argsort(-probs)[:top_k]
    times = segment_times(n_frames, timing.fps, len(gamma), at)
    spans = detections_for_video(gamma, n_frames, timing.fps, probs, threshold, at)
    return {
        "video": entry.path, "ok": True, "n_frames": int(n_frames), "fps": float(timing.fps),
        "fps_source": timing.source, "fps_note": timing.note, "duration_s": float(at[-1]),
        "ground_truth": [{"emotion": entry.label, "start_s": float(s), "end_s": float(e)} for s, e in entry.spans],
        "label": entry.label,
        "top": [{"emotion": classes[i], "probability": float(probs[i])} for i in order],
        "segments": [{"start_s": float(s), "end_s": float(e), "attention": float(g), "normalised": float(a)}
                     for (s, e), g, a in zip(times, gamma, normalise_attention(gamma))],
        "intervals": [{"emotion": classes[lab], "start_s": float(s), "end_s": float(e), "score": float(sc)}
                      for lab, s, e, sc in spans],
    }


def failure(entry, error):
    """The result line of a video that could not be predicted."""
    return {"video": entry.path, "ok": False, "error": str(error), "label": entry.label}


# ---- decoding ahead, in worker processes -----------------------------------------------------

def load_sample(entry, clip, classes):
    """``(sample, timing)``: one entry's evaluation sample (the data path of training's
    evaluation) and its frames' timing; a DataError for a video that cannot be read."""
    from .data.datasets import VideoEmotionData
    item = VideoItem(entry.video_id or video_id_of(entry.path), 0, classes[0], entry.path, entry.audio,
                     segments=entry.spans, fps=entry.fps, duration=entry.duration)
    data = VideoEmotionData([item], classes, clip, train=False)
    return data.load(0), data.timing(0)


def _decode(args):
    """Worker: one entry's eval sample and timing, or its error (never raises)."""
    entry, clip, classes = args
    try:
        return load_sample(entry, clip, classes) + (None,)
    except (DataError, ValueError, OSError, RuntimeError) as exc:
        return None, None, exc if isinstance(exc, DataError) else DataError(entry.path, f"{type(exc).__name__}: {exc}")
    except Exception as exc:    # noqa: BLE001 - a decoder library's own error: this video fails, not the run
        return None, None, DataError(entry.path, f"{type(exc).__name__}: {exc}")


_ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _worker_init(nice, gate):
    """A decoding process: one thread per library (the processes are the parallelism; the
    threads of numpy's BLAS and OpenCV only spin against the model's), a lower priority
    than the model's (``nice``), and held between frames while ``gate`` is clear (the model
    computing on the same cores: see ``Decoder``)."""
    if gate is not None:
        from .data.readers.base import set_pause_point
        set_pause_point(gate.wait)
    try:
        import cv2
        cv2.setNumThreads(1)
    except ImportError:
        pass
    if nice:
        try:
            os.nice(nice)
        except OSError:
            pass


def _spawn_pool(workers, nice=0, gate=None):
    """A pool of ``spawn``ed processes that import this package's data path only.  A spawned
    child imports the parent's ``__main__`` again (as ``__mp_main__``); run as ``python -m
    cten_jt.predict`` that is the whole framework (Jittor, ~200 MB and seconds per worker, for
    processes that only decode).  So the pool is made with a bare stand-in for ``__main__``:
    its children prepare nothing of the parent's main module.  They start with one thread
    per library (``_ONE_THREAD`` in their environment)."""
    import sys
    import types
    real = sys.modules["__main__"]
    saved = {k: os.environ.get(k) for k in _ONE_THREAD}
    sys.modules["__main__"] = types.ModuleType("__main__")
    os.environ.update(_ONE_THREAD)
    try:
        return multiprocessing.get_context("spawn").Pool(workers, initializer=_worker_init, initargs=(nice, gate))
    finally:
        sys.modules["__main__"] = real
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Decoder:
    """``decoder.results()``: (entry, sample, timing, error) for every entry, in order, decoded
    by ``workers`` spawned processes (0: in this process), at most ``ahead`` videos in flight.
    Memory stays bounded by ``ahead`` samples whatever the number of videos.

    ``with decoder.held():`` around a model call on the CPU holds the decoders between two
    frames until it ends (``pause_held``).  A model on every core and decoders beside it
    interfere: a preempted model thread leaves the others waiting at its barrier.  Measured at
    the paper's shape on 2 cores (R3D-101, 107 s videos, 2 decoders, 3 paired runs): the
    model's call took 1.12-1.16 s with the decoders beside it, 0.93-1.04 s with them held,
    and the collection 3 % more videos per hour; held, the decoders run while the model
    waits for its next video, both cores theirs."""

    def __init__(self, entries, clip, classes, workers=2, ahead=None, nice=0, pause_held=False):
        self.entries, self.clip, self.classes, self.nice = entries, clip, classes, nice
        self.workers = max(0, int(workers))
        self.ahead = ahead or max(2, 2 * self.workers)
        self.pool = None
        self.gate = None
        if pause_held and self.workers:
            self.gate = multiprocessing.get_context("spawn").Event()
            self.gate.set()

    @contextlib.contextmanager
    def held(self):
        if self.gate is None:
            yield
            return
        self.gate.clear()
        try:
            yield
        finally:
            self.gate.set()

    def results(self):
        if self.workers == 0:
            for entry in self.entries:
                yield (entry,) + (_decode((entry, self.clip, self.classes)) if entry.error is None
                                  else (None, None, entry.error))
            return
        self.pool = _spawn_pool(self.workers, self.nice, self.gate)
        try:
            pending = deque()
            todo = iter(self.entries)
            while True:
                while len(pending) < self.ahead:
                    entry = next(todo, None)
                    if entry is None:
                        break
                    job = None if entry.error else self.pool.apply_async(_decode, ((entry, self.clip, self.classes),))
                    pending.append((entry, job))
                if not pending:
                    return
                entry, job = pending.popleft()
                yield (entry,) + (job.get() if job is not None else (None, None, entry.error))
        finally:
            self.close()

    def close(self):
        if self.gate is not None:
            self.gate.set()
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None


# ---- the output ----------------------------------------------------------------------------------

def read_results(path):
    """``(records, torn)``: the result lines of a collection's JSONL, whole lines only (a torn
    last line, cut by a kill while written, is left out: that video is done again), and
    whether there was one.  A file whose lines are not results is refused by name."""
    if not os.path.exists(path):
        return [], False
    with open(path, "rb") as f:
        data = f.read()
    out, torn = [], bool(data) and not data.endswith(b"\n")
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            torn = True
            continue
        if not (isinstance(record, dict) and "video" in record):
            raise DataError(path, "not a results file of cten-predict (a line without 'video'): "
                                  "pass another --out, or --overwrite")
        out.append(record)
    return out, torn


def _write_atomically(path, records):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ResultsFile:
    """The collection's JSONL: ``done`` holds the keys of the videos it has a line for (with
    ``retry_failed``, of those that succeeded); ``write(result)`` appends one line."""

    def __init__(self, path, overwrite=False, retry_failed=False):
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        lines, torn = ([], False) if overwrite else read_results(path)
        keep = [r for r in lines if r.get("ok") or not retry_failed]
        self.done = {os.path.abspath(r["video"]) for r in keep}
        self.kept = len(keep)
        if overwrite or len(keep) != len(lines) or torn:
            _write_atomically(path, keep)
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, result):
        line = (json.dumps(result) + "\n").encode()
        written = os.write(self.fd, line)          # one write(2) of O_APPEND: a whole line or none
        while written < len(line):                  # (a short write is finished, never interleaved)
            written += os.write(self.fd, line[written:])
        os.fsync(self.fd)

    def close(self):
        os.close(self.fd)

    def records(self):
        return read_results(self.path)[0]


# ---- across MPI ranks: a part per rank, merged by rank 0 -----------------------------------------

def part_path(out, rank):
    """Rank ``rank``'s part of the output ``out``: ``results.rank3.jsonl`` beside ``results.jsonl``."""
    stem, ext = os.path.splitext(out)
    return f"{stem}.rank{int(rank)}{ext or '.jsonl'}"


def part_files(out):
    """The part files of ``out`` on disk, by rank (whatever the number of ranks that wrote them)."""
    stem, ext = os.path.splitext(os.path.abspath(out))
    folder, name = os.path.split(stem)
    pattern = re.compile(re.escape(name) + r"\.rank(\d+)" + re.escape(ext or ".jsonl") + "$")
    if not os.path.isdir(folder):
        return []                              # --out in a folder not made yet
    found = [(int(m.group(1)), f) for f in os.listdir(folder) if (m := pattern.match(f))]
    return [os.path.join(folder, f) for _, f in sorted(found)]


def merge_parts(out, entries):
    """Fold the ranks' parts into ``out`` and remove them: the lines in the order of
    ``entries`` (those of videos not among them first, as they were), each video once.
    A run killed before its merge leaves parts; the next run merges them first.  Returns
    the number of lines taken from parts."""
    parts = part_files(out)
    if not parts:
        return 0
    records, _ = read_results(out)
    taken = 0
    for p in parts:
        lines, _ = read_results(p)
        records += lines
        taken += len(lines)
    latest = {}
    for r in records:                         # a video twice (a part and the file): the newer line
        latest[os.path.abspath(r["video"])] = r
    order = {e.key: i for i, e in enumerate(entries)}
    merged = sorted(latest.values(), key=lambda r: order.get(os.path.abspath(r["video"]), -1))
    _write_atomically(out, merged)
    for p in parts:
        os.remove(p)
    return taken


def write_summary(records, path):
    """The CSV beside the JSONL: one row per video (path, ok, top emotion and probability,
    ground truth, the detected spans as start-end:emotion, the error)."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["video", "ok", "emotion", "probability", "label", "fps", "duration_s", "intervals", "error"])
    for r in records:
        if r.get("ok"):
            top = r["top"][0]
            spans = " ".join(f"{i['start_s']:.2f}-{i['end_s']:.2f}:{i['emotion']}" for i in r["intervals"])
            w.writerow([r["video"], 1, top["emotion"], f"{top['probability']:.4f}", r.get("label") or "",
                        f"{r['fps']:.3f}", f"{r['duration_s']:.2f}", spans, ""])
        else:
            w.writerow([r["video"], 0, "", "", r.get("label") or "", "", "", "", r.get("error", "")])
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        f.write(out.getvalue())
    os.replace(tmp, path)


# ---- the loop ------------------------------------------------------------------------------------

@dataclass
class CollectionReport:
    total: int
    skipped: int            # already in the output
    predicted: int = 0
    failed: List[str] = field(default_factory=list)
    stopped: Optional[str] = None
    seconds: float = 0.0


def predict_collection(entries, clip, classes, predict_fn, results, batch=1, workers=2, threshold=0.5, top_k=3,
                       max_bad_share=1.0, progress=True, on_result=None, nice=0, pause_decoding=False):
    """Predict every entry not yet in ``results`` (a ``ResultsFile``): decoded ahead by
    ``workers`` processes, ``batch`` videos a model call, one line each (failures too).
    Stops early once more than ``max_bad_share`` of the entries failed.  ``on_result(result,
    sample, timing)``: called with each success (plots).  ``nice``: the decoding processes'
    priority below this one's; ``pause_decoding``: they are held while the model computes
    (a model on the CPU: ``Decoder``)."""
    from tqdm import tqdm
    from .data.datasets import collate

    todo = [e for e in entries if e.key not in results.done]
    report = CollectionReport(total=len(entries), skipped=len(entries) - len(todo))
    began = time.time()
    decoder = Decoder(todo, clip, classes, workers, nice=nice, pause_held=pause_decoding)
    bar = tqdm(total=len(todo), unit="video", disable=not progress, desc="predict")
    pending = []              # decoded, in order, failures among them: lines are written in the input's order

    def flush():
        good = [(entry, sample, timing) for entry, sample, timing, error in pending if error is None]
        if good:
            with decoder.held():
                out = predict_fn(collate([s for _, s, _ in good]))
        k = 0
        for entry, sample, timing, error in pending:
            if error is not None:
                results.write(failure(entry, error))
            else:
                result = describe(entry, int(sample["n_frames"]), timing, out["logits"][k], out["gamma"][k],
                                  classes, threshold, top_k)
                k += 1
                results.write(result)
                if on_result is not None:
                    on_result(result, sample, timing)
                report.predicted += 1
            bar.update(1)
        pending.clear()

    try:
        for entry, sample, timing, error in decoder.results():
            pending.append((entry, sample, timing, error))
            if error is not None:
                report.failed.append(f"{entry.path}: {error}")
                if len(report.failed) > max_bad_share * len(entries):
                    report.stopped = (f"{len(report.failed)} of {len(entries)} videos failed, more than "
                                      f"--max-bad-share {max_bad_share:g}")
                    break
            elif sum(e is None for *_, e in pending) == batch:
                flush()
        flush()                         # the last batch (and, stopped early, what was decoded)
    finally:
        decoder.close()
        bar.close()
    report.seconds = time.time() - began
    return report
