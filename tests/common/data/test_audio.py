"""Audio pipeline: decoding (audio.py) and the reference's Kaldi fbank features (fbank.py)."""
import math
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from cten_common.data import audio as audio_module
from cten_common.data import fbank as fbank_module
from cten_common.data.audio import load_audio, silence
from cten_common.data.errors import DataError
from cten_common.data.fbank import audio_features, fit_frames, kaldi_fbank, normalise

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed")
EPS = float(np.finfo(np.float32).eps)


# ---------------------------------------------------------------- Kaldi fbank against its formula

def formula_fbank(waveform, sr, num_bins=128):
    """Kaldi's fbank written out frame by frame and bin by bin, independently of fbank.py."""
    x = np.asarray(waveform, dtype=np.float64)
    x = (x - x.mean())[0]
    win, shift = int(sr * 0.025), int(sr * 0.010)
    n_fft = 1
    while n_fft < win:
        n_fft *= 2

    def mel(f):
        return 1127.0 * math.log(1.0 + f / 700.0)

    lo, hi = mel(20.0), mel(sr / 2.0)
    step = (hi - lo) / (num_bins + 1)
    weights = np.zeros((num_bins, n_fft // 2 + 1))
    for m in range(num_bins):
        left, centre, right = lo + m * step, lo + (m + 1) * step, lo + (m + 2) * step
        for k in range(n_fft // 2):  # Kaldi leaves the Nyquist bin out
            f = mel(k * sr / n_fft)
            if left < f < centre:
                weights[m, k] = (f - left) / (centre - left)
            elif centre <= f < right:
                weights[m, k] = (right - f) / (right - centre)
    hann = np.array([0.5 - 0.5 * math.cos(2 * math.pi * i / (win - 1)) for i in range(win)])

    rows, energies = [], []
    start = 0
    while start + win <= len(x):
        frame = x[start:start + win].copy()
        frame -= frame.mean()
        for i in range(win - 1, 0, -1):
            frame[i] -= 0.97 * frame[i - 1]
        frame[0] -= 0.97 * frame[0]
        spectrum = np.fft.fft(np.concatenate([frame * hann, np.zeros(n_fft - win)]))[:n_fft // 2 + 1]
        energy = weights @ (spectrum.real ** 2 + spectrum.imag ** 2)
        energies.append(energy)
        rows.append(np.log(np.maximum(energy, EPS)))
        start += shift
    return np.array(rows), np.array(energies)


def sweep(sr=16000, seconds=2.0, f0=100.0, f1=7000.0):
    return signal.chirp(np.arange(int(sr * seconds)) / sr, f0, seconds, f1, method="logarithmic")[None]


def speech_like(sr=16000, seconds=2.0, seed=0):
    """White noise through three formant resonators, shaped by a syllable-rate envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    x = rng.standard_normal(t.size)
    for formant, bandwidth in ((500, 80), (1500, 120), (2500, 160)):
        r = math.exp(-math.pi * bandwidth / sr)
        x = signal.lfilter([1 - r], [1, -2 * r * math.cos(2 * math.pi * formant / sr), r * r], x)
    envelope = 0.5 + 0.5 * np.sin(2 * math.pi * 4 * t) ** 2
    return (0.3 * x / np.abs(x).max() * envelope)[None]


def stereo_44k(seconds=1.0, seed=1):
    sr = 44100
    t = np.arange(int(sr * seconds)) / sr
    noise = np.random.default_rng(seed).standard_normal(t.size)
    left = 0.4 * np.sin(2 * math.pi * 330 * t) + 0.2 * np.sin(2 * math.pi * 5200 * t) + 0.01 * noise + 0.1
    right = 0.5 * np.sin(2 * math.pi * 880 * t) - 0.3
    return np.stack([left, right]), sr


# Tolerance: both sides get the same float32 samples and compute in float64, so they differ by
# float64 round-off plus the float32 rounding of fbank.py's output (half an ulp, <= 4.8e-7 for
# |log-mel| < 16); 1e-5 allows for that and nothing more: a periodic window, another pre-emphasis
# coefficient, a 0 Hz low edge or no DC removal each move entries by > 0.1. Measured: <= 4.8e-7 on
# all three signals, also in the lowest-energy bins. (Fed float64 samples instead, bins 1e-10 below
# the frame's peak differ by ~3e-4: the float32 quantisation noise of the input, not the formula.)
TOLERANCE = 1e-5


@pytest.mark.parametrize("name", ["sweep", "speech_like", "stereo_44k"])
def test_kaldi_fbank_matches_formula(name):
    waveform, sr = {"sweep": (sweep(), 16000), "speech_like": (speech_like(), 16000),
                    "stereo_44k": stereo_44k()}[name]
    waveform = waveform.astype(np.float32)
    expected, energies = formula_fbank(waveform, sr)
    got = kaldi_fbank(waveform, sr)
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert got.shape[1] == 128
    assert (energies > EPS).mean() > 0.3  # mostly above the log floor, where the formula matters
    assert np.abs(got - expected).max() <= TOLERANCE


def test_kaldi_fbank_chunks_do_not_change_the_result(monkeypatch):
    waveform = speech_like(seconds=1.0)
    whole = kaldi_fbank(waveform, 16000)
    monkeypatch.setattr(fbank_module, "CHUNK_FRAMES", 7)
    np.testing.assert_array_equal(kaldi_fbank(waveform, 16000), whole)


def test_kaldi_fbank_uses_channel_zero():
    waveform, sr = stereo_44k()
    np.testing.assert_allclose(kaldi_fbank(waveform, sr), kaldi_fbank(waveform[:1], sr), atol=1e-4)
    assert np.abs(kaldi_fbank(waveform, sr) - kaldi_fbank(waveform[1:], sr)).max() > 1.0


def test_kaldi_fbank_puts_a_tone_in_its_mel_bin():
    sr = 16000
    tone = np.sin(2 * math.pi * 1000 * np.arange(sr) / sr)
    peak = kaldi_fbank(tone, sr).mean(axis=0).argmax()
    lo, hi = 1127 * math.log(1 + 20 / 700), 1127 * math.log(1 + 8000 / 700)
    centre_hz = 700 * (math.exp((lo + (peak + 1) * (hi - lo) / 129) / 1127) - 1)
    assert abs(centre_hz - 1000) < 40  # mel bins are ~ 60 Hz apart at 1 kHz


@pytest.mark.parametrize("n_samples, n_frames", [(0, 0), (399, 0), (400, 1), (559, 1), (560, 2), (16000, 98)])
def test_kaldi_fbank_frame_counts(n_samples, n_frames):
    waveform = np.random.default_rng(0).standard_normal((1, n_samples)).astype(np.float32)
    assert kaldi_fbank(waveform, 16000).shape == (n_frames, 128)


def test_kaldi_fbank_floors_silence_at_epsilon():
    np.testing.assert_array_equal(kaldi_fbank(silence(0.1), 16000), np.float32(np.log(EPS)))


# ---------------------------------------------------------------- fitting to segments

def indexed(n):
    """A fake fbank whose rows hold their own index."""
    return np.repeat(np.arange(n, dtype=np.float32)[:, None], 4, axis=1)


def test_fit_frames_tiles_short_clips():
    fitted = fit_frames(indexed(130), 2)
    assert fitted.shape == (200, 4)
    np.testing.assert_array_equal(fitted[:, 0], np.arange(200) % 130)


def test_fit_frames_keeps_exact_length():
    np.testing.assert_array_equal(fit_frames(indexed(300), 3), indexed(300))
    np.testing.assert_array_equal(fit_frames(indexed(300), 3, np.random.default_rng(5)), indexed(300))


def test_fit_frames_centres_windows_in_eval():
    fitted = fit_frames(indexed(1000), 3)[:, 0]  # blocks [0, 333), [333, 666), [666, 1000)
    starts = [116, 333 + 116, 666 + 117]
    np.testing.assert_array_equal(fitted, np.concatenate([np.arange(s, s + 100) for s in starts]))


def test_fit_frames_draws_windows_in_training():
    fbank, edges = indexed(1000), [0, 333, 666, 1000]
    draws = [fit_frames(fbank, 3, np.random.default_rng(seed))[:, 0] for seed in (0, 0, 1)]
    np.testing.assert_array_equal(draws[0], draws[1])
    assert not np.array_equal(draws[0], draws[2])
    for fitted in draws:
        assert fitted.shape == (300,)
        for block, window in enumerate(fitted.reshape(3, 100)):
            np.testing.assert_array_equal(np.diff(window), 1)
            assert edges[block] <= window[0] and window[-1] < edges[block + 1]


def test_fit_frames_rejects_no_frames():
    with pytest.raises(ValueError, match="no frames"):
        fit_frames(np.zeros((0, 128), np.float32), 2)


def test_audio_features_chain():
    waveform = speech_like(seconds=3.0)
    features = audio_features(waveform, 16000, 2)
    assert features.dtype == np.float32 and features.shape == (200, 128)
    np.testing.assert_array_equal(features, normalise(fit_frames(kaldi_fbank(waveform, 16000), 2)))
    assert normalise(np.float32(-6.6268077)) == pytest.approx(0.0, abs=1e-6)
    assert normalise(np.float32(2 * 5.358466 - 6.6268077)) == pytest.approx(1.0)


# ---------------------------------------------------------------- decoding

def peak_hz(waveform, sr):
    x = waveform[0] * np.hanning(waveform.shape[1])
    return np.abs(np.fft.rfft(x)).argmax() * sr / waveform.shape[1]


def tone(sr, seconds, channels=1, hz=440.0):
    t = np.arange(int(sr * seconds)) / sr
    return np.stack([0.5 * np.sin(2 * math.pi * hz * t)] * channels, axis=1).astype(np.float32)


@pytest.mark.parametrize("ext, sr, channels", [("wav", 16000, 2), ("flac", 22050, 1), ("mp3", 16000, 1)])
def test_load_audio_files(tmp_path, ext, sr, channels):
    path = tmp_path / f"tone.{ext}"
    sf.write(path, tone(sr, 1.5, channels), sr)
    waveform, got_sr = load_audio(path)
    assert got_sr == sr and waveform.dtype == np.float32
    assert waveform.shape[0] == channels
    assert abs(waveform.shape[1] / sr - 1.5) < 0.06
    assert abs(peak_hz(waveform, sr) - 440) < 2


def test_load_audio_resamples(tmp_path):
    path = tmp_path / "tone.wav"
    sf.write(path, tone(16000, 1.0), 16000)
    waveform, sr = load_audio(path, sample_rate=8000)
    assert sr == 8000 and waveform.shape == (1, 8000)
    assert abs(peak_hz(waveform, sr) - 440) < 2


def ffmpeg(*args):
    subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-y", *map(str, args)], check=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """An m4a tone, an mp4 with a 440 Hz track and an mp4 without audio, made by ffmpeg."""
    folder = tmp_path_factory.mktemp("media")
    video = ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=10"]
    sine = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000"]
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=22050", "-t", 1.5, "-c:a", "aac",
           folder / "tone.m4a")
    ffmpeg(*video, *sine, "-t", 2, "-shortest", folder / "with_audio.mp4")
    ffmpeg(*video, "-t", 1, folder / "silent_film.mp4")
    return folder


@needs_ffmpeg
def test_load_audio_m4a(media):
    waveform, sr = load_audio(media / "tone.m4a")
    assert sr == 22050 and waveform.shape[0] == 1
    assert abs(waveform.shape[1] / sr - 1.5) < 0.1  # AAC pads to whole 1024-sample frames
    assert abs(peak_hz(waveform, sr) - 440) < 2


@needs_ffmpeg
@pytest.mark.parametrize("sample_rate", [None, 8000])
def test_load_audio_video_track(media, sample_rate):
    waveform, sr = load_audio(media / "with_audio.mp4", sample_rate)
    assert sr == (sample_rate or 16000) and waveform.shape[0] == 1
    assert abs(waveform.shape[1] / sr - 2.0) < 0.1
    assert abs(peak_hz(waveform, sr) - 440) < 2


@needs_ffmpeg
def test_load_audio_video_without_audio(media):
    with pytest.raises(DataError, match="no audio track") as error:
        load_audio(media / "silent_film.mp4")
    assert "silent_film.mp4" in str(error.value)


def test_load_audio_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found") as error:
        load_audio(tmp_path / "nothing.wav")
    assert "nothing.wav" in str(error.value)


@needs_ffmpeg
@pytest.mark.parametrize("name", ["noise.wav", "noise.mp3"])
def test_load_audio_corrupt_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(0).bytes(20000))
    with pytest.raises(DataError, match="corrupt") as error:
        load_audio(path)
    assert name in str(error.value)


def test_load_audio_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(DataError, match="empty audio") as error:
        load_audio(path)
    assert "empty.wav" in str(error.value)


@pytest.mark.parametrize("name", ["tone.m4a", "odd.wav"])
def test_load_audio_says_when_ffmpeg_is_missing(tmp_path, monkeypatch, name):
    path = tmp_path / name  # m4a goes straight to ffmpeg; a wav soundfile cannot read falls back to it
    path.write_bytes(b"\0" * 64)
    monkeypatch.setattr(audio_module.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="ffmpeg, needed to decode it, is not installed") as error:
        load_audio(path)
    assert name in str(error.value)


def test_silence():
    zeros = silence(1.5, 8000)
    assert zeros.dtype == np.float32 and zeros.shape == (1, 12000) and not zeros.any()


@pytest.mark.parametrize("seconds,seed", [(30.0, None), (30.0, 4), (5.0, None)])
def test_audio_features_compute_only_the_fitted_frames_and_equal_the_whole(seconds, seed):
    # exact: each frame's energies depend on its samples and the clip's mean alone, as the
    # chunking test above asserts; the rng draws the same windows either way
    waveform = speech_like(seconds=seconds)
    rng = lambda: None if seed is None else np.random.default_rng(seed)          # noqa: E731
    whole = normalise(fit_frames(kaldi_fbank(waveform, 16000), 16, rng())).astype(np.float32)
    np.testing.assert_array_equal(audio_features(waveform, 16000, 16, rng()), whole)
