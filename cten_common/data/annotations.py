"""Data set indexes: VideoEmotion-8 / Ekman-6 annotation JSON and CAER's folders.

An index is a list of ``VideoItem``; building it checks nothing but names and
paths, and every problem is collected (``IndexProblems``) so that a scan can
report them all at once.  An annotated video whose file (or frame folder, or audio
file) is not on disk is a ``MissingFile``: an index problem like the others, or,
given a ``missing`` list (``data.on_bad_sample: skip``), a video left out of the
index and listed there, to be skipped as a bad sample (``datasets.build_data``).
"""
import json
import math
import os
from dataclasses import dataclass, field
from typing import List, Optional

from ..config import DATA_FORMATS
from .errors import DataError
from .readers.base import VIDEO_EXTENSIONS

VE8_CLASSES = ("Anger", "Anticipation", "Disgust", "Fear", "Joy", "Sadness", "Surprise", "Trust")
EKMAN6_CLASSES = ("anger", "disgust", "fear", "joy", "sadness", "surprise")
CAER_CLASSES = ("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")
AUDIO_EXTENSIONS = (".mp3", ".wav", ".flac", ".m4a", ".npy")   # .npy: a cached kaldi_fbank
SUBSETS = ("training", "validation", "testing")
CAER_SUBSETS = {"training": "train", "validation": "validation", "testing": "test"}


@dataclass
class VideoItem:
    video_id: str
    label: int
    label_name: str
    video_path: str                      # a video file or a frame folder
    audio_path: Optional[str] = None     # None: the video file's own audio track
    subset: str = "training"
    segments: List[List[float]] = field(default_factory=list)   # ground-truth spans, seconds
    fps: Optional[float] = None          # the annotation's frame rate of the video, if it has one
    duration: Optional[float] = None     # the annotation's length of the video in seconds, if any


class MissingFile(DataError):
    """An annotated video's file or frame folder, or its audio file, is not on disk."""

    def __init__(self, path, problem, video_id, subset):
        super().__init__(path, problem)
        self.video_id, self.subset = video_id, subset

    def __reduce__(self):           # picklable with its own fields (DataError's __reduce__ has two)
        return MissingFile, (self.path, self.problem, self.video_id, self.subset)


@dataclass
class IndexProblems:
    """Everything wrong with an index, by file; empty when the index is usable."""
    problems: List[DataError] = field(default_factory=list)

    def add(self, path, problem):
        self.problems.append(DataError(path, problem))

    def raise_if_any(self, what):
        if self.problems:
            lines = "\n".join(f"  {p}" for p in self.problems)
            raise DataError(what, f"{len(self.problems)} bad entries:\n{lines}")


def find_video(video_root, label, video_id):
    """``{root}/{label}/{id}`` as a frame folder, or ``{root}/{label}/{id}.{ext}``; None if absent."""
    base = os.path.join(video_root, label, video_id)
    if os.path.isdir(base):
        return base
    for ext in VIDEO_EXTENSIONS:
        if os.path.isfile(base + ext):
            return base + ext
    return None


def find_audio(audio_root, label, video_id):
    base = os.path.join(audio_root, label, video_id)
    for ext in AUDIO_EXTENSIONS:
        if os.path.isfile(base + ext):
            return base + ext
    return None


def label_and_spans(entry):
    """``(label, [[start_s, end_s], ...])`` of one database entry, from any of the span
    layouts seen in VideoEmotion-8 / Ekman-6 style files:

    * ``{"annotations": {"label": L}, "segments": [[t0, t1], ...]}`` (ours);
    * ``{"annotations": {"label": L, "segments": [[t0, t1], ...]}}``;
    * ActivityNet's ``{"annotations": [{"segment": [t0, t1], "label": L}, ...]}``, whose
      spans must all carry the video's one label.

    Raises ValueError saying what is wrong with the entry."""
    annotations = entry.get("annotations")
    if isinstance(annotations, list):
        labels = {a.get("label") for a in annotations if isinstance(a, dict)}
        if len(labels) != 1 or len(annotations) != sum(isinstance(a, dict) for a in annotations):
            raise ValueError(f"its annotations list must hold spans of one label, found {sorted(map(str, labels))}")
        label, raw = labels.pop(), [a.get("segment") for a in annotations]
    else:
        annotations = annotations or {}
        label = annotations.get("label")
        raw = list(entry.get("segments") or []) + list(annotations.get("segments") or [])
    spans = []
    for span in raw:
        try:
            start, end = (float(t) for t in span)
        except (TypeError, ValueError):
            raise ValueError(f"span {span!r} is not [start_seconds, end_seconds]") from None
        if not 0 <= start < end:
            raise ValueError(f"span {span!r} does not have 0 <= start < end")
        spans.append([start, end])
    return label, spans


def rate_and_duration(entry):
    """``(fps, duration)`` of one database entry: its ``"fps"`` and ``"duration"`` (seconds),
    each None when absent (the frame rate source of frame folders, cten_common.data.timing).
    Raises ValueError when one is there but not a positive number."""
    found = []
    for key in ("fps", "duration"):
        value = entry.get(key)
        if value is None:
            found.append(None)
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if isinstance(value, bool) or not (math.isfinite(number) and number > 0):
            raise ValueError(f"{key!r} is {value!r}, not a positive number")
        found.append(number)
    return tuple(found)


def load_annotation(path, video_root, audio_root=None, subset="training", problems=None, missing=None):
    """Items of one subset of a VideoEmotion-8 / Ekman-6 style annotation JSON.

    ``{"labels": [...], "database": {id: {"subset": ..., "annotations": {"label": ...},
    "segments": [[start, end], ...], "fps": ..., "duration": ...}}}`` (or another span
    layout: ``label_and_spans``; fps and duration optional);
    videos are ``{video_root}/{label}/{id}`` (frame
    folder or file), audio ``{audio_root}/{label}/{id}.{mp3,wav,flac,m4a}`` or, without
    an audio root, the video's own track.  Missing videos or audio and unknown labels
    go to ``problems`` (or raise together when it is None).  ``missing``: a list that
    takes the videos whose file/folder or audio file is not on disk instead (each a
    ``MissingFile``, the video left out of the items; ``data.on_bad_sample: skip``);
    every other problem still goes to ``problems``.
    """
    collect = problems if problems is not None else IndexProblems()

    def not_found(where, problem, video_id):
        bad = MissingFile(where, problem, video_id, subset)
        (collect.problems if missing is None else missing).append(bad)

    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as exc:
        raise DataError(path, f"cannot read the annotation file: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise DataError(path, f"not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or "labels" not in data or "database" not in data:
        raise DataError(path, "not an annotation file: it needs 'labels' and 'database'")
    classes = list(data["labels"])
    index = {name: i for i, name in enumerate(classes)}
    items = []
    for video_id, entry in data["database"].items():
        if entry.get("subset") != subset:
            continue
        try:
            label, spans = label_and_spans(entry)
            fps, duration = rate_and_duration(entry)
        except ValueError as exc:
            collect.add(path, f"video {video_id!r}: {exc}")
            continue
        if label not in index:
            collect.add(path, f"video {video_id!r} has label {label!r}, not one of {classes}")
            continue
        video = find_video(video_root, label, video_id)
        if video is None:
            not_found(os.path.join(video_root, label, video_id),
                      f"video {video_id!r} of {path} not found (no frame folder and no "
                      f"{'/'.join(e[1:] for e in VIDEO_EXTENSIONS)} file)", video_id)
            continue
        audio = None
        if audio_root is not None:
            audio = find_audio(audio_root, label, video_id)
            if audio is None:
                not_found(os.path.join(audio_root, label, video_id),
                          f"audio of video {video_id!r} not found "
                          f"({'/'.join(e[1:] for e in AUDIO_EXTENSIONS)})", video_id)
                continue
        items.append(VideoItem(video_id, index[label], label, video, audio, subset, spans, fps, duration))
    if problems is None:
        collect.raise_if_any(path)
    return items, classes


def load_caer(root, subset="training", problems=None):
    """CAER's layout ``{root}/{train,validation,test}/{Class}/{clip}.avi`` (no JSON)."""
    collect = problems if problems is not None else IndexProblems()
    folder = os.path.join(root, CAER_SUBSETS.get(subset, subset))
    if not os.path.isdir(folder):
        raise DataError(folder, "CAER subset folder not found")
    classes = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    if not classes:
        raise DataError(folder, "no class folders")
    items = []
    for i, name in enumerate(classes):
        class_dir = os.path.join(folder, name)
        for clip in sorted(os.listdir(class_dir)):
            stem, ext = os.path.splitext(clip)
            if ext.lower() in VIDEO_EXTENSIONS:
                items.append(VideoItem(stem, i, name, os.path.join(class_dir, clip), None, subset))
    if not items:
        collect.add(folder, "no video files in any class folder")
    if problems is None:
        collect.raise_if_any(folder)
    return items, classes



def build_index(data, subset, problems=None, missing=None):
    """Items and class names of one subset, from a config's ``data`` section.

    ``format``: ve8 / ekman6 (``annotation`` JSON, ``video_root``, optional
    ``audio_root``) or caer (``video_root`` holding train/validation/test).
    ``missing``: as in ``load_annotation`` (CAER's items are the files found, so
    none of them is missing).
    """
    fmt = data.get("format", "ve8")
    if fmt not in DATA_FORMATS:
        raise ValueError(f"data.format must be one of {DATA_FORMATS}, got {fmt!r}")
    if fmt == "caer":
        return load_caer(data["video_root"], subset, problems)
    return load_annotation(data["annotation"], data["video_root"], data.get("audio_root"),
                           subset, problems, missing)
