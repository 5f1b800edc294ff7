"""A small synthetic emotion data set with ground-truth evidence spans.

Every video has class-independent clutter (a drifting noise texture, grey
distractor blobs, a noise bed with random blips); during one span of it, and
only then, the class evidence appears in both modalities together: a shape of
the class's colour and form moving on the class's path, and the class's tone,
amplitude-modulated.  The span starts after the first 15 % of the video, so
the first frame carries no class evidence, and covers a quarter to a half of
it.  The annotation JSON is VideoEmotion-8's format with the spans recorded as
``"segments": [[start_sec, end_sec]]``.

``SyntheticSpec``'s difficulty options (their defaults give the set above,
byte for byte) make the task harder: a shorter evidence span
(``evidence_length``), weaker evidence (``evidence_strength``: the shape is
blended into the frame, the tone attenuated), noisier frames (``noise``) and
``distractors`` spans of other classes' cues, each in one modality only (the
shape and path without the tone, or the tone without the shape), whereas the
true evidence is in both.
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
    evidence_length: tuple = (0.25, 0.5)    # the evidence span, as fractions of the duration
    evidence_start: float = 0.15            # the span starts after this fraction of the video
    evidence_strength: float = 1.0          # 1: the class's colour and tone at full strength
    noise: float = 6.0                      # frame noise, grey levels (std)
    distractors: int = 0                    # spans of other classes' cues, one modality each
    distractor_length: tuple = (0.1, 0.25)  # their length, as fractions of the duration
    distractor_strength: float = 1.0


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


def _blend(img, mask, colour, strength):
    """Paint ``colour`` into ``img`` under ``mask``: replaced at strength 1, else blended."""
    if strength == 1.0:
        img[mask] = colour
    else:
        img[mask] = (1 - strength) * img[mask] + strength * colour


def _draw_cue(img, spec, k, span, sec, strength):
    """Class k's shape on its path at second ``sec`` of its span ``span``, if inside it."""
    if span[0] <= sec < span[1]:
        yy, xx = np.mgrid[0:spec.size, 0:spec.size].astype(np.float32)
        cy, cx = _path(k, (sec - span[0]) / (span[1] - span[0]), spec.size)
        _blend(img, _shape_mask(SHAPES[k % len(SHAPES)], yy, xx, cy, cx, spec.size * 0.14),
               CLASS_COLOURS[k % len(CLASS_COLOURS)], strength)


def draw_distractors(spec, k, rng):
    """``[(class, (start, end), modality)]``: ``spec.distractors`` spans of other classes'
    cues, each visual or audio alone (none: no draw from ``rng``)."""
    out = []
    for _ in range(spec.distractors):
        other = int(rng.integers(spec.classes - 1))
        other += other >= k                                  # any class but k
        length = rng.uniform(*spec.distractor_length) * spec.duration
        start = rng.uniform(0, spec.duration - length)
        out.append((other, (float(start), float(start + length)), ("visual", "audio")[int(rng.integers(2))]))
    return out


def render_video(spec, k, span, rng, distractors=()):
    """uint8 [n_frames, size, size, 3] RGB frames of one video of class k
    (``distractors``: ``draw_distractors``'s, the visual ones drawn)."""
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
        img = np.roll(texture, i % spec.size, axis=1) + rng.normal(0, spec.noise, texture.shape)
        for (p, v, r) in blobs:
            cy, cx = (p + v * i) % spec.size
            grey = 90 + 60 * np.sin(0.3 * i + r)
            img[_shape_mask("disc", yy, xx, cy, cx, r)] = grey
        for other, dspan, modality in distractors:
            if modality == "visual":
                _draw_cue(img, spec, other, dspan, sec, spec.distractor_strength)
        if span[0] <= sec < span[1]:
            cy, cx = _path(k, (sec - span[0]) / (span[1] - span[0]), spec.size)
            _blend(img, _shape_mask(kind, yy, xx, cy, cx, spec.size * 0.14), colour, spec.evidence_strength)
        frames[i] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def render_audio(spec, k, span, rng, distractors=()):
    """float32 mono waveform of one video of class k (``distractors``: the audio ones heard)."""
    n = int(round(spec.duration * spec.sample_rate))
    t = np.arange(n) / spec.sample_rate
    wave = rng.normal(0, 0.02, n)
    for _ in range(int(rng.integers(2, 5))):           # class-independent blips
        start = rng.uniform(0, spec.duration - 0.3)
        on = (t >= start) & (t < start + 0.25)
        wave[on] += 0.15 * np.sin(2 * np.pi * rng.uniform(200, 3000) * t[on])
    for other, dspan, modality in distractors:
        if modality == "audio":
            _add_tone(wave, t, other, dspan, 0.4 * spec.distractor_strength)
    _add_tone(wave, t, k, span, 0.4 * spec.evidence_strength)
    return np.clip(wave, -1, 1).astype(np.float32)


def _add_tone(wave, t, k, span, amplitude):
    """Class k's tone, amplitude-modulated, over ``span``."""
    on = (t >= span[0]) & (t < span[1])
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 3 * t[on])
    wave[on] += amplitude * envelope * np.sin(2 * np.pi * _class_tone(k) * t[on])


def _write_mp4(path, frames, fps):
    import cv2
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write mp4 here")
    for frame in frames:
        writer.write(frame[:, :, ::-1].copy())
    writer.release()


DIFFICULTY = ("evidence_length", "evidence_start", "evidence_strength", "noise", "distractors",
              "distractor_length", "distractor_strength")


def spec_record(spec):
    """The spec as the annotation records it: the difficulty options only where they are
    not their defaults (a default set's annotation is what it always was)."""
    record, default = asdict(spec), asdict(SyntheticSpec())
    for name in DIFFICULTY:
        if record[name] == default[name]:
            del record[name]
    return json.loads(json.dumps(record))


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
        length = rng.uniform(*spec.evidence_length) * spec.duration
        start = rng.uniform(spec.evidence_start * spec.duration, spec.duration - length)
        span = (round(float(start), 3), round(float(start + length), 3))
        vrng = np.random.default_rng(rng.integers(2 ** 63))
        distractors = draw_distractors(spec, k, np.random.default_rng([spec.seed, k, j, 1]))
        for sub in ("videos", "audio"):
            os.makedirs(os.path.join(out, sub, names[k]), exist_ok=True)
        _write_mp4(os.path.join(out, "videos", names[k], video_id + ".mp4"),
                   render_video(spec, k, span, vrng, distractors), spec.fps)
        soundfile.write(os.path.join(out, "audio", names[k], video_id + ".wav"),
                        render_audio(spec, k, span, vrng, distractors), spec.sample_rate)
        database[video_id] = {"subset": "validation" if j < n_val else "training",
                              "annotations": {"label": names[k]},
                              "segments": [list(span)],
                              "duration": spec.duration, "fps": spec.fps}
    path = os.path.join(out, "annotations.json")
    with open(path, "w") as f:
        json.dump({"labels": names, "database": database, "synthetic": spec_record(spec)}, f, indent=1)
    return path
