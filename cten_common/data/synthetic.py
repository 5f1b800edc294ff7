"""A small synthetic emotion data set with ground-truth evidence spans.

Every video has class-independent clutter (a drifting noise texture, grey
distractor blobs, a noise bed with random blips); during one span of it, and
only then, the class evidence appears in both modalities together: a shape of
the class's colour and form moving on the class's path, and the class's tone,
amplitude-modulated.  The span starts after the first 15 % of the video, so
the first frame carries no class evidence, and covers a quarter to a half of
it.  The annotation JSON is VideoEmotion-8's format with the spans recorded as
``"segments": [[start_sec, end_sec]]``.
"""
import json
import os
from dataclasses import asdict, dataclass

import numpy as np

from .annotations import VE8_CLASSES

SHAPES = ("disc", "square", "diamond", "cross", "ring", "bar")
CLASS_COLOURS = np.array([[230, 40, 40], [40, 200, 60], [50, 80, 230], [230, 200, 30],
                          [200, 50, 210], [40, 210, 210], [240, 130, 30], [140, 90, 40],
                          [160, 160, 250], [90, 150, 60]], np.float32)


@dataclass
class SyntheticSpec:
    classes: int = 4
    videos_per_class: int = 12
    seed: int = 0
    duration: float = 6.0          # seconds
    fps: int = 8
    size: int = 64                 # frames are size x size
    sample_rate: int = 16000
    validation_fraction: float = 1 / 3


def class_names(k):
    return list(VE8_CLASSES[:k]) if k <= len(VE8_CLASSES) else [f"class{i}" for i in range(k)]


def _shape_mask(kind, yy, xx, cy, cx, r):
    dy, dx = yy - cy, xx - cx
    if kind == "disc":
        return dy ** 2 + dx ** 2 <= r ** 2
    if kind == "square":
        return (np.abs(dy) <= r * 0.8) & (np.abs(dx) <= r * 0.8)
    if kind == "diamond":
        return np.abs(dy) + np.abs(dx) <= r
    if kind == "cross":
        return ((np.abs(dy) <= r * 0.3) & (np.abs(dx) <= r)) | ((np.abs(dx) <= r * 0.3) & (np.abs(dy) <= r))
    if kind == "ring":
        d2 = dy ** 2 + dx ** 2
        return (d2 <= r ** 2) & (d2 >= (0.55 * r) ** 2)
    return (np.abs(dy) <= r * 0.35) & (np.abs(dx) <= r)          # bar


def _path(k, t, size):
    """Class k's trajectory, t in [0, 1] over the evidence span."""
    c, a = size / 2, size * 0.28
    phase = 2 * np.pi * t
    paths = [(c + a * np.sin(phase), c + a * np.cos(phase)),            # circle
             (c, c - a + 2 * a * t),                                       # left to right
             (c - a + 2 * a * t, c),                                       # top to bottom
             (c + a * np.sin(2 * phase), c + a * np.sin(phase)),         # figure eight
             (c - a + 2 * a * t, c - a + 2 * a * t),                       # diagonal
             (c + a * np.sin(3 * phase) * 0.5, c + a * np.cos(phase))]
    return paths[k % len(paths)]


def _class_tone(k):
    return 330.0 * 2 ** (k * 0.5)           # half-octave steps from 330 Hz


def render_video(spec, k, span, rng):
    """uint8 [n_frames, size, size, 3] RGB frames of one video of class k."""
    n = int(round(spec.duration * spec.fps))
    yy, xx = np.mgrid[0:spec.size, 0:spec.size].astype(np.float32)
    base = rng.uniform(60, 140, (spec.size // 8, spec.size // 8, 3)).astype(np.float32)
    texture = np.kron(base, np.ones((8, 8, 1), np.float32))
    blobs = [(rng.uniform(0, spec.size, 2), rng.normal(0, 1.5, 2), rng.uniform(3, 7))
             for _ in range(3)]
    frames = np.empty((n, spec.size, spec.size, 3), np.uint8)
    colour = CLASS_COLOURS[k % len(CLASS_COLOURS)]
    kind = SHAPES[k % len(SHAPES)]
    for i in range(n):
        sec = i / spec.fps
        img = np.roll(texture, i % spec.size, axis=1) + rng.normal(0, 6, texture.shape)
        for (p, v, r) in blobs:
            cy, cx = (p + v * i) % spec.size
            grey = 90 + 60 * np.sin(0.3 * i + r)
            img[_shape_mask("disc", yy, xx, cy, cx, r)] = grey
        if span[0] <= sec < span[1]:
            cy, cx = _path(k, (sec - span[0]) / (span[1] - span[0]), spec.size)
            img[_shape_mask(kind, yy, xx, cy, cx, spec.size * 0.14)] = colour
        frames[i] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def render_audio(spec, k, span, rng):
    """float32 mono waveform of one video of class k."""
    n = int(round(spec.duration * spec.sample_rate))
    t = np.arange(n) / spec.sample_rate
    wave = rng.normal(0, 0.02, n)
    for _ in range(int(rng.integers(2, 5))):           # class-independent blips
        start = rng.uniform(0, spec.duration - 0.3)
        on = (t >= start) & (t < start + 0.25)
        wave[on] += 0.15 * np.sin(2 * np.pi * rng.uniform(200, 3000) * t[on])
    on = (t >= span[0]) & (t < span[1])
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 3 * t[on])
    wave[on] += 0.4 * envelope * np.sin(2 * np.pi * _class_tone(k) * t[on])
    return np.clip(wave, -1, 1).astype(np.float32)


def _write_mp4(path, frames, fps):
    import cv2
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write mp4 here")
    for frame in frames:
        writer.write(frame[:, :, ::-1].copy())
    writer.release()


def make_synthetic_dataset(out, spec=None, progress=True):
    """Write videos, audio and ``annotations.json`` under ``out``; returns the JSON path."""
    import soundfile
    from tqdm import tqdm

    spec = spec or SyntheticSpec()
    rng = np.random.default_rng(spec.seed)
    names = class_names(spec.classes)
    database = {}
    jobs = [(k, j) for k in range(spec.classes) for j in range(spec.videos_per_class)]
    n_val = int(round(spec.videos_per_class * spec.validation_fraction))
    for k, j in tqdm(jobs, desc="synthetic videos", disable=not progress):
        video_id = f"{names[k]}_{j:04d}"
        length = rng.uniform(0.25, 0.5) * spec.duration
        start = rng.uniform(0.15 * spec.duration, spec.duration - length)
        span = (round(float(start), 3), round(float(start + length), 3))
        vrng = np.random.default_rng(rng.integers(2 ** 63))
        for sub in ("videos", "audio"):
            os.makedirs(os.path.join(out, sub, names[k]), exist_ok=True)
        _write_mp4(os.path.join(out, "videos", names[k], video_id + ".mp4"),
                   render_video(spec, k, span, vrng), spec.fps)
        soundfile.write(os.path.join(out, "audio", names[k], video_id + ".wav"),
                        render_audio(spec, k, span, vrng), spec.sample_rate)
        database[video_id] = {"subset": "validation" if j < n_val else "training",
                              "annotations": {"label": names[k]},
                              "segments": [list(span)],
                              "duration": spec.duration, "fps": spec.fps}
    path = os.path.join(out, "annotations.json")
    with open(path, "w") as f:
        json.dump({"labels": names, "database": database, "synthetic": asdict(spec)}, f, indent=1)
    return path
