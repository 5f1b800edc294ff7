"""Read audio: the sound of an audio file or the audio track of a video, as float32 [channels, n].

wav, flac, mp3 (and whatever else libsndfile knows) are decoded by soundfile; m4a/aac, video
containers and anything soundfile cannot read go through an ffmpeg subprocess that pipes
32-bit float PCM (in a WAV container, which carries the channel count and rate) into memory.
"""
import io
import os
import shutil
import subprocess

import librosa
import numpy as np
import soundfile as sf

from .errors import DataError

# Containers soundfile cannot decode: straight to ffmpeg.
FFMPEG_ONLY = frozenset({".m4a", ".aac", ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm"})


def load_audio(path, sample_rate=None):
    """Decode ``path`` to ``(waveform float32 [channels, n], sr)``.

    All channels are kept. ``sr`` is the file's own rate unless ``sample_rate`` is given, in
    which case the audio is resampled to it. Raises DataError for a missing file, undecodable
    data, a video with no audio track and audio with no samples.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(path, "file not found")
    if os.path.splitext(path)[1].lower() in FFMPEG_ONLY:
        waveform, sr = _read_ffmpeg(path, sample_rate)
    else:
        try:
            data, sr = sf.read(path, dtype="float32", always_2d=True)
        except sf.SoundFileError as error:
            waveform, sr = _read_ffmpeg(path, sample_rate, soundfile_error=error)
        else:
            waveform = data.T
            if sample_rate is not None and sample_rate != sr and waveform.shape[1]:
                waveform = librosa.resample(waveform, orig_sr=sr, target_sr=sample_rate, axis=-1)
                sr = sample_rate
    if waveform.shape[1] == 0:
        raise DataError(path, "empty audio (no samples)")
    return np.ascontiguousarray(waveform, dtype=np.float32), int(sr)


def _read_ffmpeg(path, sample_rate, soundfile_error=None):
    """Decode the first audio stream of ``path`` with ffmpeg, resampled by ffmpeg if asked."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        tried = f"soundfile cannot read it ({soundfile_error}) and " if soundfile_error else ""
        raise DataError(path, f"{tried}ffmpeg, needed to decode it, is not installed")
    command = [ffmpeg, "-nostdin", "-v", "error", "-i", path, "-map", "0:a:0",
               "-f", "wav", "-c:a", "pcm_f32le"]
    if sample_rate is not None:
        command += ["-ar", str(int(sample_rate))]
    result = subprocess.run(command + ["pipe:1"], capture_output=True)
    message = result.stderr.decode(errors="replace").strip()
    if result.returncode != 0:
        if "matches no streams" in message:
            raise DataError(path, "no audio track")
        raise DataError(path, f"unreadable or corrupt audio (ffmpeg: {_last_line(message)})")
    try:
        data, sr = sf.read(io.BytesIO(result.stdout), dtype="float32", always_2d=True)
    except sf.SoundFileError as error:
        raise DataError(path, f"unreadable or corrupt audio (ffmpeg output: {error})") from None
    return data.T, sr


def _last_line(text):
    lines = text.splitlines()
    return lines[-1] if lines else "no message"


def silence(n_seconds, sample_rate=16000):
    """A mono zero waveform float32 [1, round(n_seconds * sample_rate)], for callers that accept silence."""
    return np.zeros((1, int(round(n_seconds * sample_rate))), dtype=np.float32)


def audio_duration(path):
    """Seconds of sound in an audio file, read from its header where it has one (PyAV:
    the stream's or the container's duration; an mp3 with a Xing/LAME header gives its
    exact length, one without gives ffmpeg's estimate from the bit rate), else by
    decoding it once.  A cached filterbank (``.npy``, 10 ms shift, 25 ms window) gives
    ``0.025 + 0.01 * (frames - 1)`` plus half a shift, within 5 ms.  DataError naming the
    file when it is missing or holds no audio."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(path, "file not found")
    if path.lower().endswith(".npy"):
        try:
            frames = np.load(path, mmap_mode="r").shape[0]
        except (OSError, ValueError, IndexError) as exc:
            raise DataError(path, f"cannot read the cached filterbank: {exc}") from None
        if frames < 1:
            raise DataError(path, "empty cached filterbank (no frames)")
        return 0.025 + 0.01 * (frames - 1) + 0.005
    import av
    try:
        with av.open(path) as container:
            if not container.streams.audio:
                raise DataError(path, "no audio track")
            stream = container.streams.audio[0]
            if stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
            if container.duration:
                return container.duration / 1_000_000
            samples, rate = 0, stream.rate                      # no header: decode once
            for frame in container.decode(stream):
                samples += frame.samples
            if not samples or not rate:
                raise DataError(path, "empty audio (no samples)")
            return samples / rate
    except av.FFmpegError as exc:
        raise DataError(path, f"unreadable or corrupt audio: {exc}") from None
