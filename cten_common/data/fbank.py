"""The reference's audio features, in numpy: Kaldi log-mel filter banks, fitted to 100 frames a segment.

VAANet/CTEN call ``torchaudio.compliance.kaldi.fbank(waveform - waveform.mean(), htk_compat=True,
sample_frequency=sr, use_energy=False, window_type='hanning', num_mel_bins=128, dither=0.0,
frame_shift=10)``; ``kaldi_fbank`` computes the same with Kaldi's other defaults (25 ms frames,
snip_edges, DC removal, pre-emphasis 0.97, power spectrum, mel bins from 20 Hz to Nyquist).
"""
import numpy as np

from .errors import DataError

FRAMES_PER_SEGMENT = 100
NORM_MEAN = -6.6268077
NORM_STD = 5.358466
PREEMPHASIS = 0.97
LOW_FREQ = 20.0
EPSILON = np.finfo(np.float32).eps
CHUNK_FRAMES = 2048  # frames processed at once, to bound memory on long clips


def mel_scale(freq):
    """Kaldi's mel scale."""
    return 1127.0 * np.log1p(np.asarray(freq, dtype=np.float64) / 700.0)


def mel_banks(num_mel_bins, n_fft, sample_rate, low_freq=LOW_FREQ):
    """Kaldi's MelBanks: triangles in the mel domain, [num_mel_bins, n_fft // 2 + 1] (Nyquist bin 0)."""
    high_freq = 0.5 * sample_rate
    mel_low, mel_high = mel_scale(low_freq), mel_scale(high_freq)
    delta = (mel_high - mel_low) / (num_mel_bins + 1)
    left = mel_low + delta * np.arange(num_mel_bins)[:, None]
    centre, right = left + delta, left + 2 * delta
    mel = mel_scale(sample_rate / n_fft * np.arange(n_fft // 2))[None, :]
    weights = np.maximum(0.0, np.minimum((mel - left) / (centre - left), (right - mel) / (right - centre)))
    return np.pad(weights, ((0, 0), (0, 1)))


def frame_count(n_samples, window, shift):
    """Number of frames Kaldi's snip_edges framing makes of ``n_samples`` samples."""
    return 0 if n_samples < window else 1 + (n_samples - window) // shift


def _framing(sample_rate, frame_length_ms, frame_shift_ms):
    window = int(sample_rate * frame_length_ms * 0.001)
    shift = int(sample_rate * frame_shift_ms * 0.001)
    if window < 2 or shift < 1:
        raise ValueError(f"frames of {window} samples shifted by {shift} are too small")
    return window, shift


def fbank_frame_count(waveform, sample_rate, frame_length_ms=25, frame_shift_ms=10):
    """The number of frames ``kaldi_fbank`` makes of ``waveform`` ([channels, n] or [n])."""
    window, shift = _framing(sample_rate, frame_length_ms, frame_shift_ms)
    return frame_count(np.shape(waveform)[-1], window, shift)


def kaldi_fbank(waveform, sample_rate, num_mel_bins=128, frame_length_ms=25, frame_shift_ms=10, rows=None):
    """Log-mel filter bank energies float32 [n_frames, num_mel_bins] of channel 0 of ``waveform``.

    ``waveform`` is [channels, n] (or [n]); as in the reference, its mean over all samples and
    channels is subtracted first. Clips shorter than one frame give zero frames.  ``rows``:
    only these frames (indices into the n_frames), each computed as in the whole (a frame's
    energies depend on its samples and the clip's mean alone): [len(rows), num_mel_bins].
    """
    samples = np.atleast_2d(np.asarray(waveform, dtype=np.float64))
    window, shift = _framing(sample_rate, frame_length_ms, frame_shift_ms)
    n_frames = frame_count(samples.shape[1], window, shift)
    if n_frames == 0:
        return np.zeros((0, num_mel_bins), dtype=np.float32)
    samples = samples[0] - samples.mean()
    n_fft = 1 << (window - 1).bit_length()

    frames = np.lib.stride_tricks.sliding_window_view(samples, window)[::shift][:n_frames]
    if rows is not None:
        frames = frames[np.asarray(rows)]
        n_frames = len(frames)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(window) / (window - 1))
    banks = mel_banks(num_mel_bins, n_fft, sample_rate).T
    fbank = np.empty((n_frames, num_mel_bins), dtype=np.float32)
    for first in range(0, n_frames, CHUNK_FRAMES):
        fbank[first:first + CHUNK_FRAMES] = _log_mel(frames[first:first + CHUNK_FRAMES], hann, n_fft, banks)
    return fbank


def _log_mel(frames, hann, n_fft, banks):
    """Kaldi's per-frame steps: DC removal, pre-emphasis, window, power spectrum, mel, log."""
    frames = frames - frames.mean(axis=1, keepdims=True)
    previous = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    power = np.abs(np.fft.rfft((frames - PREEMPHASIS * previous) * hann, n=n_fft, axis=1)) ** 2
    return np.log(np.maximum(power @ banks, EPSILON))


def fit_indices(n, n_segments, rng=None, frames_per_segment=FRAMES_PER_SEGMENT):
    """The frames (of ``n``) that fit a filterbank to ``frames_per_segment * n_segments``.

    Short clips are tiled from the start. Longer ones are cut into ``n_segments`` equal blocks
    and one window of ``frames_per_segment`` frames is taken from each: at a random start drawn
    from ``rng`` (a numpy Generator, training) or centred in the block (``rng`` None).
    """
    target = frames_per_segment * n_segments
    if n == 0:
        raise ValueError("no frames to fit: the clip is shorter than one frame")
    if n < target:
        return np.arange(target) % n
    edges = np.arange(n_segments + 1) * n // n_segments
    slack = np.diff(edges) - frames_per_segment
    offsets = slack // 2 if rng is None else rng.integers(0, slack + 1)
    starts = edges[:-1] + offsets
    return (starts[:, None] + np.arange(frames_per_segment)).ravel()


def fit_frames(fbank, n_segments, rng=None, frames_per_segment=FRAMES_PER_SEGMENT):
    """Fit ``fbank`` [n, bins] to [frames_per_segment * n_segments, bins] (``fit_indices``)."""
    fbank = np.asarray(fbank)
    return fbank[fit_indices(fbank.shape[0], n_segments, rng, frames_per_segment)]


def normalise(fbank):
    """The reference's fixed normalisation of log-mel energies."""
    return (fbank - NORM_MEAN) / (2 * NORM_STD)


def features_from_fbank(fbank, n_segments, rng=None):
    """A (cached) ``kaldi_fbank`` fitted to ``n_segments`` x 100 frames and normalised."""
    return normalise(fit_frames(fbank, n_segments, rng)).astype(np.float32)


def audio_features(waveform, sample_rate, n_segments, rng=None):
    """Kaldi fbank, fitted to ``n_segments`` x 100 frames, normalised: float32 [100 * n_segments, 128].
    Only the fitted frames are computed (equal to fitting the whole filterbank; on a 107 s clip
    1,600 of 10,700 frames: 0.26 s of CPU became ~0.05 s)."""
    index = fit_indices(fbank_frame_count(waveform, sample_rate), n_segments, rng)
    rows, back = np.unique(index, return_inverse=True)
    return normalise(kaldi_fbank(waveform, sample_rate, rows=rows)[back]).astype(np.float32)


def load_cached_fbank(path):
    """A filterbank cached by cten-prepare-dataset --features-out (cten_common.data.prepare): float32 [n, 128]."""
    try:
        fbank = np.load(path)
    except (OSError, ValueError) as exc:
        raise DataError(path, f"cannot read the cached filterbank: {exc}") from exc
    if fbank.ndim != 2 or fbank.shape[1] != 128 or fbank.shape[0] < 1:
        raise DataError(path, f"a cached filterbank must be [frames, 128], got {list(fbank.shape)}")
    return fbank
