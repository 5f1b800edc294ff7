"""The reference's TSN temporal sampling on 0-based frame indices.

A clip is ``n_segments`` (T) snippets of ``snippet_len`` (L) consecutive
frames: the index list is loop-padded to at least T*L items, cut into T equal
segments of D = len // T items (the last len - T*D items are never used), and
each segment gives L consecutive items from an offset in [0, D-L]: random in
training (``sample_train``), centred, (D-L)//2, in evaluation (``sample_eval``).
The erased views of training pass a subset of the frame indices through the
same ``sample_train``.

The random offset of a segment comes from one uniform u in [0, 1) (float64):
``offset = min(floor(u * (D-L+1)), D-L)``.  ``sample_train`` draws the T
uniforms with one ``rng.random(T)`` call; ``sample_train_uniform`` takes them
given, which is what the compiled erasing kernel reproduces bit for bit (a
product and a floor of float64 numbers are the same on every IEEE machine).
"""
import numpy as np


def loop_pad(indices, size):
    """``indices`` repeated cyclically to ``size`` items; unchanged if already that long."""
    indices = list(indices)
    if not indices:
        raise ValueError("cannot loop-pad an empty index list")
    if len(indices) >= size:
        return indices
    return [indices[k % len(indices)] for k in range(size)]


def segment_bounds(n_frames, n_segments):
    """``[(start, end), ...]``: positions covered by each segment, end exclusive.

    With D = n // T, segment s is [s*D, min(D*(s+1), n)).  When n < T the
    positions refer to the list loop-padded to T items (position p is item
    p % n), so every segment is one position long.
    """
    _check_positive(n_segments=n_segments)
    if n_frames < 1:
        raise ValueError(f"n_frames must be positive, got {n_frames}")
    n = max(n_frames, n_segments)
    d = n // n_segments
    return [(s * d, min(d * (s + 1), n)) for s in range(n_segments)]


def sample_train(frame_indices, n_segments, snippet_len, rng):
    """int64 ``[n_segments, snippet_len]``: one snippet per segment at a random offset."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator, got {type(rng).__name__}")
    _check_positive(n_segments=n_segments)
    return sample_train_uniform(frame_indices, n_segments, snippet_len, rng.random(n_segments))


def sample_train_uniform(frame_indices, n_segments, snippet_len, uniforms):
    """``sample_train`` with its T uniforms in [0, 1) given (float64 ``[n_segments]``)."""
    u = np.asarray(uniforms, dtype=np.float64)
    if u.shape != (n_segments,):
        raise ValueError(f"uniforms must have shape ({n_segments},), got {u.shape}")
    if u.size and (u.min() < 0 or u.max() >= 1):
        raise ValueError("uniforms must lie in [0, 1)")
    return _sample(frame_indices, n_segments, snippet_len, lambda d: offsets_from_uniform(u, d - snippet_len + 1))


def offsets_from_uniform(u, count):
    """int64 offsets in [0, count): ``min(floor(u * count), count - 1)`` in float64."""
    return np.minimum(np.floor(np.asarray(u, dtype=np.float64) * float(count)), count - 1).astype(np.int64)


def sample_eval(frame_indices, n_segments, snippet_len):
    """int64 ``[n_segments, snippet_len]``: one snippet centred in each segment."""
    return _sample(frame_indices, n_segments, snippet_len,
                   lambda d: np.full(n_segments, (d - snippet_len) // 2))


def _sample(frame_indices, n_segments, snippet_len, offsets):
    _check_positive(n_segments=n_segments, snippet_len=snippet_len)
    padded = np.asarray(loop_pad(frame_indices, n_segments * snippet_len), dtype=np.int64)
    bounds = segment_bounds(len(padded), n_segments)
    d = bounds[0][1] - bounds[0][0]
    starts = np.array([b[0] for b in bounds]) + offsets(d)
    return padded[starts[:, None] + np.arange(snippet_len)]


def _check_positive(**values):
    for name, v in values.items():
        if int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v}")
