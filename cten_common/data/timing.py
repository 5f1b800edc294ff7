"""Where a video's frames lie in time: its frame rate, and where that rate came from.

Weak detection turns segments of frames into seconds, and the ground-truth spans
are in seconds, so a wrong rate scales every detected span (15 fps frames read
as 30 fps halve every time and give mAP 0).  A video file knows its rate; the
reference's frame folders (``video2jpg.py``: every frame, at the video's own
rate) record it nowhere.  ``frame_timing`` takes the first of these that applies:

============================  ==================================================
source                        what
============================  ==================================================
``container``                 a video file's timestamps (a variable frame rate
                              included: frame i starts at its own pts) or, without
                              timestamps, its stream rate
``frame store``               the rate in a frame store's header (its source's)
``fps file``                  a frame folder's ``fps`` file, beside ``n_frames``
                              (written by ``cten-prepare-dataset``)
``annotation fps``            the video's ``"fps"`` in the annotation JSON
``annotation duration``       its ``"duration"`` (seconds): n_frames / duration
``audio duration``            its audio file (mp3, wav, ...; or a cached
                              filterbank): n_frames / the audio's length
``config data.frame_fps``     one rate for every video without another source
``assumed``                   none of these: 30 fps, and detection times that
                              cannot be trusted (evaluation says so)
============================  ==================================================

A rate from a duration (the annotation's or the audio's) is snapped to the
standard rate (``STANDARD_RATES``) nearest to it when that rate puts the
duration's end within ``FRAME_TOLERANCE`` frames of the frame count: an audio
track is a few tens of ms longer or shorter than its video (mp3 encoders add
priming samples, muxers cut differently), which moves n / duration off the real
rate, while snapping can move the last frame's time by at most the tolerance.
Otherwise the estimate is used as it is, with a note.  When a rate comes from
elsewhere and the video has an audio file, the audio's length is checked against
the frames' span, and a difference of more than ``FRAME_TOLERANCE`` frames is
noted (``FrameTiming.note``): one of the two is not what it claims.

The rate is looked up once per video and data set (``VideoEmotionData.timing``);
what it reads is small: a 64-byte file, the annotation already in memory, or an
audio file's header (about 1 ms; an mp3 without a length header is decoded).
"""
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .audio import audio_duration
from .errors import DataError
from .readers import FrameFolder, FrameStore, VideoFile

ASSUMED_FPS = 30.0
FRAME_TOLERANCE = 2.0         # frames: "a frame or two" of disagreement is normal
STANDARD_RATES = (8.0, 10.0, 12.0, 12.5, 15.0, 24000 / 1001, 24.0, 25.0, 30000 / 1001, 30.0,
                  48.0, 50.0, 60000 / 1001, 60.0)

CONTAINER = "container"
FRAME_STORE = "frame store"
FPS_FILE = "fps file"
ANNOTATION_FPS = "annotation fps"
ANNOTATION_DURATION = "annotation duration"
AUDIO_DURATION = "audio duration"
CONFIG = "config data.frame_fps"
ASSUMED = "assumed"
FEATURE_BANK = "feature bank"     # the rate a feature bank recorded when it was extracted
SOURCES = (CONTAINER, FRAME_STORE, FEATURE_BANK, FPS_FILE, ANNOTATION_FPS, ANNOTATION_DURATION, AUDIO_DURATION,
           CONFIG, ASSUMED)


@dataclass(frozen=True)
class FrameTiming:
    fps: float                                 # frames per second (a variable rate: the mean)
    source: str                                # one of SOURCES
    note: Optional[str] = None                 # a disagreement or an estimate worth a look
    frame_times: Optional[np.ndarray] = None   # float64 [n + 1] from timestamps, else None

    @property
    def reliable(self):
        return self.source != ASSUMED

    def boundaries(self, n_frames):
        """float64 [n_frames + 1]: the start of every frame in seconds, then the end of the last."""
        if self.frame_times is not None and len(self.frame_times) == n_frames + 1:
            return self.frame_times
        return np.arange(n_frames + 1, dtype=np.float64) / self.fps

    def describe(self):
        """``'29.970 fps (fps file)'``, with the note after a semicolon."""
        text = f"{self.fps:.3f} fps ({self.source})"
        return f"{text}; {self.note}" if self.note else text


def _positive(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def rate_from_duration(n_frames, duration):
    """``(fps, snapped)``: n_frames / duration, or the standard rate nearest to it when that
    rate's n_frames / rate lies within FRAME_TOLERANCE frames of ``duration``."""
    estimate = n_frames / duration
    best = min(STANDARD_RATES, key=lambda r: abs(n_frames - duration * r))
    if abs(n_frames - duration * best) <= FRAME_TOLERANCE:
        return best, True
    return estimate, False


def _from_duration(n_frames, duration, source, what):
    fps, snapped = rate_from_duration(n_frames, duration)
    note = None if snapped else (f"{what} of {duration:.3f} s over {n_frames} frames gives "
                                 f"{fps:.3f} fps, not within {FRAME_TOLERANCE:g} frames of a "
                                 f"standard rate: check that they cover the same time")
    return FrameTiming(fps, source, note)


def _audio_seconds(item):
    """``(seconds, problem)``: the length of an item's own audio file; (None, None) without
    one, (None, message) when it cannot be read (loading the sample says so in full)."""
    path = getattr(item, "audio_path", None) if item is not None else None
    if not path:
        return None, None
    try:
        return audio_duration(path), None
    except DataError as exc:
        return None, f"the audio gives no length ({exc})"


def resolve_timing(n_frames, own_fps=None, own_source=None, item=None, config_fps=None,
                   frame_times=None):
    """The FrameTiming of a video of ``n_frames`` frames whose reader gives ``own_fps``
    (from ``own_source``; None when it knows none) and, for a video file, ``frame_times``;
    ``item`` (a ``VideoItem``) brings the annotation's fps / duration and the audio file;
    ``config_fps`` is ``data.frame_fps``.  The order of the module's table."""
    n = int(n_frames)
    own_fps = _positive(own_fps)
    timing = None
    if frame_times is not None and len(frame_times) == n + 1 and frame_times[-1] > 0:
        times = np.asarray(frame_times, np.float64)
        fps = own_fps or n / float(times[-1])
        if np.abs(times * fps - np.arange(n + 1)).max() <= 0.01:
            times = None              # a constant rate: i / fps is the same, and holds no array
        timing = FrameTiming(fps, own_source, None, times)
    elif own_fps is not None:
        timing = FrameTiming(own_fps, own_source)
    elif _positive(getattr(item, "fps", None)) is not None:
        timing = FrameTiming(float(item.fps), ANNOTATION_FPS)
    elif _positive(getattr(item, "duration", None)) is not None:
        timing = _from_duration(n, float(item.duration), ANNOTATION_DURATION,
                                "the annotation's duration")
    audio, problem = _audio_seconds(item)
    if timing is None and audio is not None:
        return _from_duration(n, audio, AUDIO_DURATION, f"the audio {item.audio_path}")
    if timing is None and _positive(config_fps) is not None:
        timing = FrameTiming(float(config_fps), CONFIG, problem)
    if timing is None:
        return FrameTiming(ASSUMED_FPS, ASSUMED, "no rate source: 30 fps assumed, detection "
                                                 "times in seconds are unreliable"
                                                 + (f"; {problem}" if problem else ""))
    if audio is not None:                     # a second witness: the audio's length
        span = float(timing.boundaries(n)[-1])
        if abs(span - audio) * timing.fps > FRAME_TOLERANCE:
            note = (f"{n} frames at {timing.fps:.3f} fps last {span:.3f} s but the audio "
                    f"{item.audio_path} lasts {audio:.3f} s ({abs(span - audio) * timing.fps:.1f} "
                    f"frames apart)")
            timing = FrameTiming(timing.fps, timing.source, note, timing.frame_times)
    return timing


def frame_timing(video, item=None, config_fps=None):
    """The FrameTiming of an open reader (``readers.open_video``) and its ``VideoItem``."""
    if isinstance(video, VideoFile):
        return resolve_timing(video.n_frames, video.fps, CONTAINER, item, config_fps,
                              video.frame_times())
    if isinstance(video, FrameStore):
        return resolve_timing(video.n_frames, video.fps, FRAME_STORE, item, config_fps)
    if isinstance(video, FrameFolder):
        return resolve_timing(video.n_frames, video.fps, FPS_FILE, item, config_fps)
    raise TypeError(f"not a video reader: {type(video).__name__}")


def assumed_rate_warning(video_ids):
    """The one message evaluation gives for the videos whose rate was assumed."""
    ids = list(video_ids)
    shown = ", ".join(ids[:20]) + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")
    return (f"{len(ids)} video(s) have no frame rate source (no fps file, no fps or duration in "
            f"the annotation, no audio file, no data.frame_fps) and were taken as {ASSUMED_FPS:g} "
            f"fps: their detection times in seconds, and the mAP, are unreliable: {shown}")


__all__ = ["ASSUMED_FPS", "FrameTiming", "frame_timing", "resolve_timing", "rate_from_duration",
           "assumed_rate_warning", "SOURCES", "STANDARD_RATES"]
