"""CTEN's temporal erasing (training), numpy reference.

After the original view's forward gives the segment attention ``gamma``
[B, T], every video of the batch gets two more views, re-sampled from a subset
of its frames:

* threshold, per video: ``thr = theta*max(gamma) + (1-theta)*min(gamma)``
  (theta = 0.7 by default), i.e. the min-max normalised attention equals theta.
  It is computed as ``min + theta*(max - min)`` in float64 (the same value
  algebraically) so that a video whose gammas are all equal gets ``thr``
  exactly equal to them, and it is clipped to ``[min, max]``;
* context view: the segments with ``gamma < thr`` are kept (the keyframes are
  erased); keyframe view: the segments with ``gamma > thr`` are kept.
  Both inequalities are strict: a segment exactly at the threshold is neither
  clearly context nor clearly key and goes to neither view.  This also makes
  the all-equal case symmetric: every segment sits at the threshold, both views
  keep nothing and both fall back to all frames;
* the kept segments' frames, ascending, are re-sampled with the training
  sampler ``sample_train(kept, T, L, rng)`` (loop-padded when short).  A view
  that keeps no frame uses all the video's frames.

Segments of a video with n frames (T segments, D = n // T):

* n >= T: segment s covers the 0-based frames ``[s*D, (s+1)*D)``.  The last
  ``n - T*D`` frames belong to no segment, so they are never kept except by
  the all-frames fallback.
* n < T (D = 0): frame f is its own segment s = f for f < n; the segments
  s >= n hold no frame.  Their gamma still enters the threshold, but keeping
  them adds nothing (a view that keeps only such segments falls back to all
  frames).  Note this differs from ``sampling.segment_bounds``, which for n < T
  numbers positions of the list loop-padded to T items (segment s = frame s % n).

Random draws (so that another implementation can reproduce the indices bit for
bit): one ``numpy.random.Generator`` for the whole batch gives one
``rng.random((B, 2, T))`` call, ``u[b, 0]`` for the context view and ``u[b, 1]``
for the keyframe view of video b (the same numbers as calling ``sample_train``
per video, context then keyframe); snippet t's offset in its segment of D'
items is ``min(floor(u * (D'-L+1)), D'-L)``.  Nothing else draws from the
generator.  ``erased_view_indices_uniform`` takes ``u`` given; the compiled
kernel ``cten_jt.kernels.erasing`` computes the same indices from the same ``u``.
"""
import numpy as np

from .config import DEFAULT_THETA  # noqa: F401  (the configuration's default, train.theta)
from .data.sampling import sample_train_uniform

#: the views a training step takes: the original, then the two erased ones
VIEWS = ("original", "context", "keyframe")


def thresholds(gamma, theta=DEFAULT_THETA):
    """float64 ``[B]``: ``theta*max + (1-theta)*min`` of each row of ``gamma`` [B, T]."""
    gamma = _as_gamma(gamma)
    theta = _check_theta(theta)
    lo = gamma.min(axis=1)
    hi = gamma.max(axis=1)
    return np.clip(lo + theta * (hi - lo), lo, hi)


def erase_masks(gamma, theta=DEFAULT_THETA):
    """``(context_keep, keyframe_keep)``, bool ``[B, T]`` each, before any fallback.

    context keeps ``gamma < thr``, keyframe keeps ``gamma > thr`` (strict: a
    segment exactly at the threshold is in neither).
    """
    gamma = _as_gamma(gamma)
    thr = thresholds(gamma, theta)[:, None]
    return gamma < thr, gamma > thr


def kept_frames(segment_keep, n_frames):
    """int64 ascending 0-based frame indices of the kept segments of one video.

    ``segment_keep`` is bool ``[T]``.  See the module docstring for the segments
    (trailing ``n - T*D`` frames in none; n < T: frame f is segment f).  When no
    frame is kept the result is all frames, ``arange(n_frames)``.
    """
    keep = np.asarray(segment_keep)
    if keep.ndim != 1 or keep.size == 0:
        raise ValueError(f"segment_keep must be a non-empty 1-D mask, got shape {keep.shape}")
    if keep.dtype != np.bool_:
        raise TypeError(f"segment_keep must be boolean, got {keep.dtype}")
    n = _check_n_frames(n_frames)
    T = keep.size
    if n >= T:
        d = n // T
        frames = (np.flatnonzero(keep)[:, None] * d + np.arange(d)).reshape(-1)
    else:
        frames = np.flatnonzero(keep[:n])
    if frames.size == 0:
        return np.arange(n, dtype=np.int64)
    return frames.astype(np.int64)


def erased_view_indices(gamma, n_frames, snippet_len, rng, theta=DEFAULT_THETA):
    """``{"context": int64 [B, T, L], "keyframe": int64 [B, T, L]}`` of 0-based frames.

    ``n_frames``: an int (every video) or ``[B]``.  Draw order from ``rng``: for
    b in range(B), the context view then the keyframe view.
    """
    gamma = _as_gamma(gamma)
    return erased_view_indices_uniform(gamma, n_frames, snippet_len,
                                       erasing_uniforms(rng, *gamma.shape), theta)


class RankRows:
    """A generator for one part of a batch split across processes (MPI ranks):
    ``random((B, ...))`` returns this rank's B rows of ``random((size * B, ...))``,
    the draws one process makes for the whole batch, split as the batch is
    (rank r holds rows r*B .. (r+1)*B - 1)."""

    def __init__(self, generator, rank, size):
        if not isinstance(generator, np.random.Generator):
            raise TypeError(f"generator must be a numpy Generator, got {type(generator).__name__}")
        self.generator, self.rank, self.size = generator, int(rank), int(size)

    def random(self, shape):
        shape = tuple(shape)
        rows = self.generator.random((shape[0] * self.size,) + shape[1:])
        return rows[self.rank * shape[0]:(self.rank + 1) * shape[0]]


class KeptRows:
    """A generator for a batch some of whose videos were skipped (``data.on_bad_sample:
    skip``): ``random((B, ...))`` draws ``random((slots, ...))``, what the whole batch
    would have drawn, and returns the rows ``kept`` of it, so that a skipped video
    changes neither the other videos' draws nor any later batch's.  ``generator``: a
    numpy Generator or a ``RankRows`` of one."""

    def __init__(self, generator, kept, slots):
        if not isinstance(generator, (np.random.Generator, RankRows)):
            raise TypeError(f"generator must be a numpy Generator, got {type(generator).__name__}")
        self.generator, self.kept, self.slots = generator, np.asarray(kept, np.int64), int(slots)

    def random(self, shape):
        shape = tuple(shape)
        if shape[0] != len(self.kept):
            raise ValueError(f"{shape[0]} rows asked, {len(self.kept)} kept of {self.slots}")
        return self.generator.random((self.slots,) + shape[1:])[self.kept]


def kept_rows_rng(rng, batch):
    """``rng`` for ``batch``: itself, or a ``KeptRows`` of it when ``collate`` left
    skipped videos out (the batch has ``slot`` and ``slots``)."""
    if "slot" not in batch:
        return rng
    return KeptRows(rng, batch["slot"], batch["slots"])


def erasing_uniforms(rng, batch, n_segments):
    """float64 ``[B, 2, T]`` in [0, 1): the batch's draws for the two erased views
    (``rng``: a numpy Generator, or ``RankRows`` or ``KeptRows`` of one)."""
    if not isinstance(rng, (np.random.Generator, RankRows, KeptRows)):
        raise TypeError(f"rng must be a numpy Generator, got {type(rng).__name__}")
    return rng.random((batch, 2, n_segments))


def erased_view_indices_uniform(gamma, n_frames, snippet_len, uniforms, theta=DEFAULT_THETA):
    """``erased_view_indices`` with the draws given: ``uniforms`` float64 ``[B, 2, T]``."""
    gamma = _as_gamma(gamma)
    B, T = gamma.shape
    counts = as_frame_counts(n_frames, B)
    u = np.asarray(uniforms, dtype=np.float64)
    if u.shape != (B, 2, T):
        raise ValueError(f"uniforms must have shape ({B}, 2, {T}), got {u.shape}")
    context_keep, keyframe_keep = erase_masks(gamma, theta)
    views = {"context": [], "keyframe": []}
    for b in range(B):
        n = int(counts[b])
        views["context"].append(sample_train_uniform(kept_frames(context_keep[b], n), T, snippet_len, u[b, 0]))
        views["keyframe"].append(sample_train_uniform(kept_frames(keyframe_keep[b], n), T, snippet_len, u[b, 1]))
    return {k: np.stack(v).astype(np.int64) for k, v in views.items()}


def as_frame_counts(n_frames, batch):
    """int64 ``[B]`` of positive frame counts from an int or a sequence."""
    counts = np.asarray(n_frames)
    if counts.ndim == 0:
        counts = np.full(batch, counts)
    if counts.shape != (batch,):
        raise ValueError(f"n_frames must be an int or have shape ({batch},), got {counts.shape}")
    return np.array([_check_n_frames(n) for n in counts], dtype=np.int64)


def gather_view(clip, indices):
    """``clip`` [n, 3, S, S] and ``indices`` [T, L] -> visual [T, 3, L, S, S]."""
    clip = np.asarray(clip)
    indices = _as_indices(indices, 2, clip.shape[0])
    return clip[indices].transpose(0, 2, 1, 3, 4)


def gather_views(clips, indices, n_frames=None):
    """``clips`` [B, N, 3, S, S] and ``indices`` [B, T, L] -> visual [B, T, 3, L, S, S].

    ``clips`` may be zero-padded at the end (``collate``); with ``n_frames`` [B]
    every index is checked to fall in its video's real frames.
    """
    clips = np.asarray(clips)
    indices = _as_indices(indices, 3, clips.shape[1])
    B = clips.shape[0]
    if indices.shape[0] != B:
        raise ValueError(f"batch sizes differ: clips {B}, indices {indices.shape[0]}")
    if n_frames is not None:
        counts = np.broadcast_to(np.asarray(n_frames), (B,))
        if (indices >= counts[:, None, None]).any():
            raise IndexError("frame index beyond its video's n_frames (into the padding)")
    return clips[np.arange(B)[:, None, None], indices].transpose(0, 1, 3, 2, 4, 5)


class ClipViews:
    """A reader of erased views over whole clips held in memory, ``clips``
    [B, N, 3, S, S] (zero-padded past each video's frames): what the engines'
    ``reader`` argument takes, for tests and benchmarks whose batches are made
    by hand.  Training reads from the videos instead (``VideoEmotionData.read_views``),
    which gives the same frames as this whole-clip gather."""

    def __init__(self, clips):
        self.clips = np.asarray(clips)

    def __call__(self, batch, views):
        return {view: gather_views(self.clips, indices, np.asarray(batch["n_frames"]))
                for view, indices in views.items()}


def _as_gamma(gamma):
    gamma = np.asarray(gamma, dtype=np.float64)
    if gamma.ndim != 2 or gamma.shape[1] == 0:
        raise ValueError(f"gamma must be [B, T] with T >= 1, got shape {gamma.shape}")
    if not np.isfinite(gamma).all():
        raise ValueError("gamma has non-finite values")
    return gamma


def _check_theta(theta):
    theta = float(theta)
    if not 0.0 <= theta <= 1.0:
        raise ValueError(f"theta must be in [0, 1], got {theta}")
    return theta


def _check_n_frames(n):
    if int(n) != n or n < 1:
        raise ValueError(f"n_frames must be a positive integer, got {n}")
    return int(n)


def _as_indices(indices, ndim, n):
    indices = np.asarray(indices)
    if indices.ndim != ndim or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"indices must be an integer array of {ndim} dims, got "
                         f"{indices.dtype} {indices.shape}")
    if indices.size and (indices.min() < 0 or indices.max() >= n):
        raise IndexError(f"frame index out of range [0, {n})")
    return indices
