"""Spatial transforms of one video view: uint8 RGB ``[N, H, W, 3]`` -> ``[3, N, S, S]``.

Every frame of a view gets the same parameters.  Pixel values stay in 0..255:
the model normalises its input itself.  Training: a square crop of the short
side at one of five positions, resized to S x S, then with probability
``p_aug`` one of flip / rotation / brightness.  Evaluation: short side resized
to S, centre crop.  Centred offsets are ``(extent - crop) // 2``.

Every step but brightness maps uint8 frames to uint8 frames, one frame at a
time, so a view's frames stay uint8 until the model (``apply_uint8``): 1 byte a
pixel instead of 4, and any subset of a video's frames transforms to exactly
the frames the whole video would give.  Brightness is the one float step; it
is applied where the frames become float (``apply_brightness``, the same float32
product in numpy, Jittor and PyTorch), with the factor carried beside the frames.
"""
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

CROP_POSITIONS = ("center", "top_left", "top_right", "bottom_left", "bottom_right")
AUGMENTATIONS = ("flip", "rotate", "brightness")
MAX_ANGLE = 20.0                 # degrees, either way
BRIGHTNESS_RANGE = (0.5, 1.0)


@dataclass(frozen=True)
class TrainParams:
    """One view's draw: crop box (``top``, ``left``, ``side``) and at most one augmentation.

    ``augment`` is None or one of ``AUGMENTATIONS``; ``angle`` (degrees,
    counter-clockwise as displayed) and ``brightness`` (factor) are only used by
    their augmentation and stay 0.0 / 1.0 otherwise.
    """
    position: str
    top: int
    left: int
    side: int
    augment: Optional[str] = None
    angle: float = 0.0
    brightness: float = 1.0


# A TrainParams as float64 [7], so that a sample (a dict of arrays) carries its
# view's draw: position code (-1: the evaluation transform), top, left, side,
# augmentation code (-1: none), angle, brightness.
PARAMS_LEN = 7


def params_to_array(params):
    """float64 ``[PARAMS_LEN]`` of a TrainParams, or of None (the evaluation transform)."""
    if params is None:
        return np.array([-1, 0, 0, 0, -1, 0.0, 1.0], np.float64)
    augment = -1 if params.augment is None else AUGMENTATIONS.index(params.augment)
    return np.array([CROP_POSITIONS.index(params.position), params.top, params.left, params.side,
                     augment, params.angle, params.brightness], np.float64)


def params_from_array(row):
    """The TrainParams of ``params_to_array`` (None for the evaluation transform); exact."""
    row = np.asarray(row, np.float64)
    if row.shape != (PARAMS_LEN,):
        raise ValueError(f"transform parameters must be float64 [{PARAMS_LEN}], got {row.shape}")
    if row[0] < 0:
        return None
    augment = None if row[4] < 0 else AUGMENTATIONS[int(row[4])]
    return TrainParams(CROP_POSITIONS[int(row[0])], int(row[1]), int(row[2]), int(row[3]), augment,
                       float(row[5]), float(row[6]))


def crop_box(position, height, width):
    """``(top, left, side)`` of the square of the short side at ``position``."""
    side = min(height, width)
    tops = {"center": (height - side) // 2, "top_left": 0, "top_right": 0,
            "bottom_left": height - side, "bottom_right": height - side}
    lefts = {"center": (width - side) // 2, "top_left": 0, "top_right": width - side,
             "bottom_left": 0, "bottom_right": width - side}
    if position not in tops:
        raise ValueError(f"crop position must be one of {CROP_POSITIONS}, got {position!r}")
    return tops[position], lefts[position], side


class TrainTransform:
    def __init__(self, size, p_aug=0.3):
        if int(size) != size or size < 1:
            raise ValueError(f"size must be a positive integer, got {size}")
        if not 0.0 <= p_aug <= 1.0:
            raise ValueError(f"p_aug must be in [0, 1], got {p_aug}")
        self.size = int(size)
        self.p_aug = float(p_aug)

    def sample_params(self, rng, height, width):
        """Draw, in this order: crop position, whether to augment, which augmentation, its value."""
        position = CROP_POSITIONS[rng.integers(len(CROP_POSITIONS))]
        top, left, side = crop_box(position, height, width)
        params = dict(position=position, top=top, left=left, side=side)
        if rng.random() < self.p_aug:
            augment = AUGMENTATIONS[rng.integers(len(AUGMENTATIONS))]
            params["augment"] = augment
            if augment == "rotate":
                params["angle"] = float(rng.uniform(-MAX_ANGLE, MAX_ANGLE))
            elif augment == "brightness":
                params["brightness"] = float(rng.uniform(*BRIGHTNESS_RANGE))
        return TrainParams(**params)

    def apply(self, frames, params):
        """float32 ``[3, N, S, S]``: ``apply_uint8`` and the brightness factor."""
        return apply_brightness(self.apply_uint8(frames, params), params.brightness)

    def apply_uint8(self, frames, params):
        """uint8 ``[3, N, S, S]``: crop, resize and flip or rotation; not the brightness."""
        _check_frames(frames)
        p = params
        if p.top < 0 or p.left < 0 or p.top + p.side > frames.shape[1] \
                or p.left + p.side > frames.shape[2]:
            raise ValueError(f"crop {p} does not fit frames of size {frames.shape[1:3]}")
        return _to_chw(np.stack([self._frame(f[p.top:p.top + p.side, p.left:p.left + p.side], p)
                                 for f in frames]), np.uint8)

    def _frame(self, crop, p):
        out = _resize(crop, self.size, self.size)
        if p.augment == "flip":
            return out[:, ::-1]
        if p.augment == "rotate":
            c = (self.size - 1) / 2.0
            m = cv2.getRotationMatrix2D((c, c), p.angle, 1.0)
            return cv2.warpAffine(out, m, (self.size, self.size), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return out

    def __call__(self, frames, rng):
        return self.apply(frames, self.sample_params(rng, frames.shape[1], frames.shape[2]))


class EvalTransform:
    def __init__(self, size):
        if int(size) != size or size < 1:
            raise ValueError(f"size must be a positive integer, got {size}")
        self.size = int(size)

    def scaled_size(self, height, width):
        """``(height, width)`` with the short side at ``size``; the long side is floored."""
        if height <= width:
            return self.size, int(width * self.size / height)
        return int(height * self.size / width), self.size

    def __call__(self, frames):
        """float32 ``[3, N, S, S]``."""
        return self.apply_uint8(frames).astype(np.float32)

    def apply_uint8(self, frames, params=None):
        """uint8 ``[3, N, S, S]`` (``params`` is ignored: evaluation draws nothing)."""
        _check_frames(frames)
        h, w = self.scaled_size(frames.shape[1], frames.shape[2])
        top, left = (h - self.size) // 2, (w - self.size) // 2
        return _to_chw(np.stack([_resize(f, h, w)[top:top + self.size, left:left + self.size]
                                 for f in frames]), np.uint8)


def _resize(frame, height, width):
    if frame.shape[:2] == (height, width):
        return frame
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)


def _check_frames(frames):
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 \
            or frames.shape[3] != 3 or 0 in frames.shape:
        shape = getattr(frames, "shape", None)
        dtype = getattr(frames, "dtype", type(frames).__name__)
        raise ValueError(f"frames must be non-empty uint8 [N, H, W, 3] RGB, got {dtype} {shape}")


def apply_brightness(frames, factor):
    """float32 frames of uint8 (or float) ``frames`` times ``factor``, clipped to
    0..255: the training brightness.  A factor of 1.0 changes nothing, so every
    view goes through it; ``cten_jt.data.model_visual`` and its PyTorch twin do
    the same float32 product on the device."""
    out = np.asarray(frames).astype(np.float32)
    if float(factor) == 1.0:
        return out
    return np.clip(out * np.float32(factor), 0.0, 255.0)


def _to_chw(frames, dtype=np.float32):
    """``[N, S, S, 3]`` -> contiguous ``[3, N, S, S]`` of ``dtype``."""
    return np.ascontiguousarray(frames.transpose(3, 0, 1, 2), dtype=dtype)
