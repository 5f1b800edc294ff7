"""The numpy core of CTEN's data sets: one video in, model-ready arrays out.

``VideoEmotionData.load(index, rng)`` runs the named steps: sample T snippets
of L frames (TSN; training and evaluation paths kept apart), draw the view's
transform, read only the frames the snippets use, transform them (uint8 in,
uint8 out) and compute the audio features.  ``read_views(batch, indices)``
reads the erased views' frames of a batch later, in parallel threads, with
each sample's own transform: exactly the frames the whole transformed video
would give at those indices.  A sample therefore holds O(T*L) frames whatever
the video's length.  The Jittor and PyTorch data sets (``cten_jt.data``,
``cten_torch_ref.data``) only wrap it, so for the same seed they give
identical arrays.

What a sample holds (one video; a batch stacks them along a new first axis):

==============  ==========================  =====================================
key             shape, dtype                used by
==============  ==========================  =====================================
visual          uint8 [T, 3, L, S, S]       the model, through ``model_visual``
                (bank: float [T, dim])      (float32, brightness, on the device)
brightness      float32 []                  ``model_visual``: the training
                                            brightness factor (1.0: none)
transform       float64 [7]                 ``read_views``: the view's transform
                                            draw (``transforms.params_to_array``)
index           int64 []                    ``read_views``: which video
n_frames        int64 []                    erasing (segments), metrics
fps             float32 []                  the video's rate (``timing``; detection
                                            times come from ``timing(index)``)
label           int64 []                    loss, metrics
frame_indices   int64 [T, L]                the original view's 0-based frames
segment_bounds  int64 [T, 2]                the segments' frame ranges
audio           float32 [100*T, 128]        the model (modality "av" only)
bank_row,       int64 []                    feature-bank training only
bank_variant,
bank_exact
==============  ==========================  =====================================
"""
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..config import ON_BAD_SAMPLE
from . import audio as audio_io
from .annotations import build_index
from .errors import DataError
from .fbank import audio_features, features_from_fbank, load_cached_fbank
from .bank import variant_for as bank_variant_for
from .readers import open_video
from .readers.base import pause_point
from .sampling import sample_eval, sample_train, segment_bounds
from .timing import FEATURE_BANK, frame_timing, resolve_timing
from .transforms import EvalTransform, TrainTransform, params_from_array, params_to_array

log = logging.getLogger(__name__)

READ_CHUNK = 32     # frames decoded and transformed at a time: bounds a read's full-size frames


@dataclass(frozen=True)
class ClipConfig:
    n_segments: int = 16          # T, also the number of audio segments
    snippet_len: int = 16         # L
    sample_size: int = 112        # S
    with_audio: bool = True
    allow_silence: bool = False   # a video without audio track gets silence (logged) instead of an error
    p_augment: float = 0.3
    augment: bool = True          # False: training frames get the evaluation transform
    read_threads: int = 0         # threads reading erased views (0: 2 per core, at most 16)
    frame_fps: Optional[float] = None   # data.frame_fps: the rate of videos with no other source
    on_bad_sample: str = "stop"   # stop: a DataError ends the run; skip: the video is left out (BadSample)

    def __post_init__(self):
        if self.on_bad_sample not in ON_BAD_SAMPLE:
            raise ValueError(f"data.on_bad_sample must be one of {', '.join(ON_BAD_SAMPLE)}, "
                             f"got {self.on_bad_sample!r}")


@dataclass(frozen=True)
class BadSample:
    """A video left out under ``on_bad_sample: skip``: which, the file and the problem
    (``DataError``'s), and ``where`` it failed: "index" (its file, frame folder or audio
    file is not on disk: it is not in the data set's items at all, ``index`` None),
    "check before the run", "sample" (loading it for a batch) or "erased views"
    (reading its erased views during the step)."""
    index: Optional[int]
    video_id: str
    path: str
    problem: str
    where: str = "sample"

    def as_dict(self):
        return {"index": self.index, "video_id": self.video_id, "path": self.path,
                "problem": self.problem, "where": self.where}


def sample_rng(seed, epoch, index):
    """The generator of one sample: the same (seed, epoch, index) gives the same sample,
    whatever the worker, the framework or the batch order."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


class VideoEmotionData:
    """``bank``: a ``FeatureBank`` (cten_common.data.bank); samples then carry the
    banked backbone features of their snippets as ``visual`` [T, dim] instead of
    frames, and no video is decoded."""

    def __init__(self, items, class_names, clip=ClipConfig(), train=True, bank=None, missing=()):
        self.items = list(items)
        # BadSamples (where "index") of the annotated videos not on disk, left out of
        # ``items`` (on_bad_sample: skip; build_data): skipped in every epoch, every evaluation
        self.missing = list(missing)
        self.class_names = list(class_names)
        self.clip = clip
        self.train = train
        self.bank = bank
        self.transform = (TrainTransform(clip.sample_size, clip.p_augment) if train and clip.augment
                          else EvalTransform(clip.sample_size))
        self._pool, self._pool_pid = None, None
        self._pool_lock = threading.Lock()
        self._timings = {}            # index -> FrameTiming, looked up once per video
        self.known_bad = {}       # index -> BadSample found before the run (skip: check_before_run)

    def __len__(self):
        return len(self.items)

    @property
    def n_annotated(self):
        """The videos the annotation names: those in ``items`` and the ``missing`` ones."""
        return len(self.items) + len(self.missing)

    def __getstate__(self):          # loader workers get the data set, not its threads
        state = dict(self.__dict__)
        state.update(_pool=None, _pool_pid=None, _pool_lock=None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._pool_lock = threading.Lock()

    def timing(self, index, video=None):
        """The ``FrameTiming`` of video ``index`` (rate, its source, frame times; see
        ``cten_common.data.timing``), looked up once; ``video``: its open reader."""
        timing = self._timings.get(index)
        if timing is None:
            item = self.items[index]
            if self.bank is not None and video is None:
                info = self.bank.info(item.video_id)
                timing = resolve_timing(int(info["n_frames"]), info.get("fps") or None, FEATURE_BANK,
                                        item, self.clip.frame_fps)
            else:
                timing = frame_timing(video or open_video(item.video_path), item, self.clip.frame_fps)
            self._timings[index] = timing
        return timing

    def load_audio(self, item, duration):
        """Waveform and rate of an item: its audio file, else its video's own track."""
        source = item.audio_path or item.video_path
        try:
            return audio_io.load_audio(source)
        except DataError as exc:
            if self.clip.allow_silence and "no audio track" in exc.problem:
                log.warning("%s: no audio track, using %.1f s of silence (allow_silence)",
                            source, duration)
                sr = 16000
                return audio_io.silence(max(duration, 1.0), sr), sr
            raise

    def load(self, index, rng=None):
        """One sample as a dict of numpy arrays (see the module's table); ``rng`` drives
        every random choice (required in training, unused in evaluation)."""
        if self.train and rng is None:
            raise ValueError("training samples need a random generator (sample_rng)")
        if self.bank is not None:
            return self._load_banked(index, rng)
        item = self.items[index]
        T, L = self.clip.n_segments, self.clip.snippet_len
        video = open_video(item.video_path)
        n = video.n_frames
        indices = sample_train(np.arange(n), T, L, rng) if self.train else sample_eval(np.arange(n), T, L)
        params = None
        if isinstance(self.transform, TrainTransform):       # drawn after the offsets, as always
            params = self.transform.sample_params(rng, video.height, video.width)
        fps = self.timing(index, video).fps
        sample = {
            "visual": self._view(video, params, indices),
            "brightness": np.float32(1.0 if params is None else params.brightness),
            "transform": params_to_array(params),
            **self._common(index, indices, n, fps),
        }
        self._add_audio(sample, item, n, fps, rng)
        return sample

    def load_or_skip(self, index, rng=None):
        """``load(index, rng)``; under ``on_bad_sample: skip`` a video that fails with a
        DataError gives a ``BadSample`` instead (logged), which ``collate`` leaves out.
        Each sample has its own generator, so a skipped one changes no other's draws."""
        if self.clip.on_bad_sample != "skip":
            return self.load(index, rng)
        if int(index) in self.known_bad:
            return self.known_bad[int(index)]
        try:
            return self.load(index, rng)
        except DataError as exc:
            return self._bad(index, exc, "sample")

    def check_before_run(self, progress=False):
        """``on_bad_sample: skip``: the default ``cten-check-data`` check of every video
        (and its audio) once; the videos with a problem are skipped whenever they come
        up, named by the check's first problem, whether or not a read would have met it
        (a missing middle frame, say).  Returns them (``{index: BadSample}``)."""
        if self.clip.on_bad_sample != "skip" or self.bank is not None:
            return {}
        from .check import scan_items
        results = scan_items(self.items, self.clip.with_audio, self.clip.allow_silence, progress=progress,
                             per_item=True)
        self.known_bad = {i: BadSample(i, self.items[i].video_id, problems[0].path,
                                       problems[0].problem if len(problems) == 1 else
                                       f"{problems[0].problem} (and {len(problems) - 1} more problems: "
                                       f"cten-check-data)", "check before the run")
                          for i, problems in enumerate(results) if problems}
        return self.known_bad

    def _bad(self, index, exc, where):
        bad = BadSample(int(index), self.items[int(index)].video_id, exc.path, exc.problem, where)
        log.debug("skipping video %s (%s): %s: %s", bad.video_id, where, bad.path, bad.problem)
        return bad

    def load_many(self, indices, rngs=None):
        """Samples ``indices`` (with generators ``rngs`` in training), loaded in this
        process's reader threads (``load_or_skip``: a ``BadSample`` for a skipped video)."""
        indices = list(indices)
        rngs = [None] * len(indices) if rngs is None else list(rngs)
        return list(self._threads().map(self.load_or_skip, indices, rngs))

    def _common(self, index, indices, n, fps):
        """The keys every sample has, banked or not."""
        return {
            "label": np.int64(self.items[index].label),
            "frame_indices": indices.astype(np.int64),
            "n_frames": np.int64(n),
            "fps": np.float32(fps),
            "segment_bounds": np.asarray(segment_bounds(n, self.clip.n_segments), np.int64),
            "index": np.int64(index),
        }

    def _view(self, video, params, indices):
        """uint8 ``[T, 3, L, S, S]``: the frames at ``indices`` [T, L] of ``video``, transformed.

        Each distinct frame is read and transformed once, in one pass over the video,
        READ_CHUNK frames at a time (the full-size frames held at once)."""
        used, position = np.unique(indices, return_inverse=True)
        size = self.clip.sample_size
        out = np.empty((3, len(used), size, size), np.uint8)
        start = 0
        for frames in video.read_chunks(used, READ_CHUNK):    # one pass: a keyframe group decodes once
            out[:, start:start + len(frames)] = self.transform.apply_uint8(frames, params)
            start += len(frames)
        view = out[:, position.reshape(indices.shape)]                  # [3, T, L, S, S]
        return np.ascontiguousarray(view.transpose(1, 0, 2, 3, 4))

    def read_view(self, sample, indices):
        """uint8 ``[T, 3, L, S, S]``: the frames at ``indices`` [T, L] of the video of
        ``sample`` (a sample or one row of a batch), with the sample's own transform."""
        index = int(sample["index"])
        params = params_from_array(sample["transform"])
        if isinstance(self.transform, TrainTransform) and params is None:
            raise ValueError("a training sample carries no transform draw")
        video, indices = open_video(self.items[index].video_path), np.asarray(indices)
        if indices.size and int(indices.max()) >= video.n_frames:    # the file changed since it was sampled
            raise DataError(video.path, f"frame {int(indices.max())} is needed but the video now has "
                                        f"{video.n_frames} frames (truncated or replaced during the run?)")
        return self._view(video, params, indices)

    def read_views(self, batch, views):
        """``{view: uint8 [B, T, 3, L, S, S]}`` of ``views`` ``{view: int [B, T, L]}``: each
        video's views read together (its frames once), the videos in parallel threads.

        Under ``on_bad_sample: skip`` a video whose frames fail to read is left out: the
        arrays then hold the other rows only, and two more keys say which: ``kept_rows``
        (int64, the rows of ``batch`` kept, in order) and ``skipped`` (``BadSample``s).
        The engines then drop those videos from the step's loss (docs/data.md)."""
        names = list(views)
        B = len(batch["index"])
        skip = self.clip.on_bad_sample == "skip"

        def one(b):
            row = {"index": batch["index"][b], "transform": batch["transform"][b]}
            both = np.concatenate([np.asarray(views[v][b]) for v in names])     # [len(names)*T, L]
            try:
                return np.split(self.read_view(row, both), len(names))
            except DataError as exc:
                if not skip:
                    raise
                return self._bad(int(batch["index"][b]), exc, "erased views")

        per_video = list(self._threads().map(one, range(B)))
        kept = [b for b in range(B) if not isinstance(per_video[b], BadSample)]
        out = {}
        for k, v in enumerate(names):
            T, L = np.asarray(views[v]).shape[1:]
            S = self.clip.sample_size
            out[v] = np.stack([per_video[b][k] for b in kept]) if kept else np.empty((0, T, 3, L, S, S), np.uint8)
        if len(kept) < B:
            out["kept_rows"] = np.asarray(kept, np.int64)
            out["skipped"] = [per_video[b] for b in range(B) if b not in kept]
        return out

    def _threads(self):
        """This process's reader threads (created on first use; a forked worker makes its own)."""
        with self._pool_lock:
            if self._pool is None or self._pool_pid != os.getpid():
                n = self.clip.read_threads or min(16, 2 * (os.cpu_count() or 1))
                self._pool, self._pool_pid = ThreadPoolExecutor(n, thread_name_prefix="cten-read"), os.getpid()
            return self._pool

    def _load_banked(self, index, rng):
        """A sample from the feature bank: the same draws as ``load`` in the same order
        (snippet offsets, the transform's crop and augmentation, the audio), the
        crop and a flip choosing the banked variant."""
        item = self.items[index]
        info = self.bank.info(item.video_id)
        T, L, n = self.clip.n_segments, self.clip.snippet_len, int(info["n_frames"])
        indices = (sample_train(np.arange(n), T, L, rng) if self.train else sample_eval(np.arange(n), T, L))
        variant = "eval"
        if isinstance(self.transform, TrainTransform):
            params = self.transform.sample_params(rng, int(info["height"]), int(info["width"]))
            variant = bank_variant_for(params, self.bank.meta["variants"])
        features, exact = self.bank.lookup(item.video_id, variant, indices, evaluation=not self.train)
        fps = self.timing(index).fps
        sample = {
            "visual": features,
            **self._common(index, indices, n, fps),
            "bank_row": np.int64(self.bank.row(item.video_id)),
            "bank_variant": np.int64(self.bank.variant_index(variant)),
            "bank_exact": np.int64(exact),
        }
        self._add_audio(sample, item, n, fps, rng)
        return sample

    def _add_audio(self, sample, item, n, fps, rng):
        T = self.clip.n_segments
        if self.clip.with_audio and (item.audio_path or "").endswith(".npy"):
            sample["audio"] = features_from_fbank(load_cached_fbank(item.audio_path), T,
                                                  rng if self.train else None)
        elif self.clip.with_audio:
            pause_point()
            wave, sr = self.load_audio(item, n / fps)
            if wave.shape[-1] < int(sr * 0.025):
                raise DataError(item.audio_path or item.video_path,
                                "audio shorter than one 25 ms filterbank frame")
            pause_point()
            sample["audio"] = audio_features(wave, sr, T, rng if self.train else None)


def collate(samples):
    """Stack samples into a batch: every key gets a new first axis.

    ``BadSample``s (``on_bad_sample: skip``) are left out; the batch then also has
    ``slot`` (int64 [B]: each kept sample's position among ``samples``), ``slots``
    (how many there were) and ``skipped`` (the ``BadSample``s).  A batch whose every
    sample was skipped has those three keys alone."""
    good = [s for s in samples if not isinstance(s, BadSample)]
    batch = {key: np.stack([s[key] for s in good]) for key in good[0]} if good else {}
    if len(good) < len(samples):
        batch["slot"] = np.asarray([k for k, s in enumerate(samples) if not isinstance(s, BadSample)], np.int64)
        batch["slots"] = len(samples)
        batch["skipped"] = [s for s in samples if isinstance(s, BadSample)]
    return batch


def clip_config(config, train):
    """The ClipConfig of a run configuration (``cten_common.config.RunConfig``)."""
    m, d = config.model, config.data
    return ClipConfig(n_segments=m.seq_len, snippet_len=m.snippet_duration,
                      sample_size=m.sample_size, with_audio=m.modality == "av",
                      allow_silence=d.allow_silence, augment=d.augment, read_threads=d.read_threads,
                      frame_fps=None if d.frame_fps is None else float(d.frame_fps),
                      on_bad_sample=d.on_bad_sample)


def build_data(config, subset, train, bank=None):
    """The VideoEmotionData of one subset of a run configuration (a ``RunConfig``;
    ``bank``: read the visual features from this FeatureBank).

    A bad index (an annotated video not on disk, a malformed entry, an unknown label)
    is a DataError listing every bad entry, except under ``data.on_bad_sample: skip``,
    where a video whose file/frame folder or audio file is missing is left out and
    kept as a ``BadSample`` (where "index") in the data set's ``missing``: the run
    counts it, lists it and limits it (``data.max_bad_share``) as any skipped video."""
    d = config.data
    missing = [] if d.on_bad_sample == "skip" else None
    items, classes = build_index({"format": d.format, "annotation": d.annotation, "video_root": d.video_root,
                                  "audio_root": d.audio_root}, subset, missing=missing)
    bad = [BadSample(None, m.video_id, m.path, m.problem, "index") for m in missing or ()]
    for b in bad:
        log.debug("%s video %s not on disk, left out (data.on_bad_sample: skip): %s: %s", subset,
                  b.video_id, b.path, b.problem)
    return VideoEmotionData(items, classes, clip_config(config, train), train, bank, bad)
