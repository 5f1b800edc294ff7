"""Spatial transforms against hand-computed crops.

Test frames encode their coordinates: R = row, G = column, B = 10 * frame
number, so every output pixel says where it came from.
"""
import cv2
import numpy as np
import pytest

from cten_common.data.transforms import (AUGMENTATIONS, CROP_POSITIONS, EvalTransform,
                                         TrainParams, TrainTransform, crop_box)


def coordinate_frames(n, height, width):
    rows, cols = np.mgrid[:height, :width]
    return np.stack([np.stack([rows, cols, np.full_like(rows, 10 * k)], -1)
                     for k in range(n)]).astype(np.uint8)


def params(position, height, width, **aug):
    return TrainParams(position, *crop_box(position, height, width), **aug)


# (top, left) of the short-side square in a 24 x 32 (landscape) and 32 x 24 (portrait) frame
LANDSCAPE = {"center": (0, 4), "top_left": (0, 0), "top_right": (0, 8),
             "bottom_left": (0, 0), "bottom_right": (0, 8)}
PORTRAIT = {"center": (4, 0), "top_left": (0, 0), "top_right": (0, 0),
            "bottom_left": (8, 0), "bottom_right": (8, 0)}


@pytest.mark.parametrize("shape, corners", [((24, 32), LANDSCAPE), ((32, 24), PORTRAIT)])
@pytest.mark.parametrize("position", CROP_POSITIONS)
def test_crop_positions(shape, corners, position):
    frames = coordinate_frames(3, *shape)
    out = TrainTransform(24).apply(frames, params(position, *shape))
    assert out.dtype == np.float32 and out.shape == (3, 3, 24, 24)
    top, left = corners[position]
    rows, cols = np.mgrid[:24, :24]
    for k in range(3):
        np.testing.assert_array_equal(out[0, k], rows + top)
        np.testing.assert_array_equal(out[1, k], cols + left)
        np.testing.assert_array_equal(out[2, k], 10 * k)


def test_crop_is_resized_bilinear():
    frames = np.random.default_rng(0).integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)
    out = TrainTransform(20).apply(frames, params("top_right", 48, 64))
    for k in range(2):
        want = cv2.resize(frames[k, :, 16:], (20, 20), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(out[:, k], want.transpose(2, 0, 1))


def test_flip_mirrors():
    frames = coordinate_frames(2, 24, 32)
    out = TrainTransform(24).apply(frames, params("center", 24, 32, augment="flip"))
    columns = np.broadcast_to(np.arange(24) + 4, (2, 24, 24))
    np.testing.assert_array_equal(out[1, :, :, ::-1], columns)
    np.testing.assert_array_equal(out[0, 1], np.mgrid[:24, :24][0])


def test_brightness_scales_and_clips():
    frames = coordinate_frames(2, 24, 24)
    frames[..., 2] = 250
    out = TrainTransform(24).apply(frames, params("center", 24, 24, augment="brightness",
                                                  brightness=0.5))
    np.testing.assert_array_equal(out, frames.transpose(3, 0, 1, 2).astype(np.float32) * 0.5)
    up = TrainTransform(24).apply(frames, params("center", 24, 24, augment="brightness",
                                                 brightness=1.5))
    assert up.max() == 255.0 and up[2].min() == 255.0


def test_rotation_by_zero_is_identity():
    frames = np.random.default_rng(1).integers(0, 256, (2, 24, 24, 3), dtype=np.uint8)
    out = TrainTransform(24).apply(frames, params("center", 24, 24, augment="rotate", angle=0.0))
    np.testing.assert_array_equal(out, frames.transpose(3, 0, 1, 2))


def test_rotation_moves_marker_and_zero_fills():
    frames = np.zeros((1, 24, 24, 3), np.uint8)
    frames[0, 2, 12] = 255                    # just above the top middle
    out = TrainTransform(24).apply(frames, params("center", 24, 24, augment="rotate", angle=90.0))
    # counter-clockwise as displayed: about the centre (11.5, 11.5), (row 2, col 12) -> (11, 2)
    assert np.unravel_index(np.argmax(out[0, 0]), (24, 24)) == (11, 2)
    assert out[0, 0, 11, 2] == 255.0 and out[0, 0].sum() == 255.0
    full = np.full((1, 24, 24, 3), 200, np.uint8)
    out = TrainTransform(24).apply(full, params("center", 24, 24, augment="rotate", angle=20.0))
    assert out[:, 0, 0, 0].max() == 0.0 and (out[:, 0, 12, 12] == 200.0).all()


def test_same_params_for_every_frame():
    frames = np.random.default_rng(2).integers(0, 256, (4, 30, 40, 3), dtype=np.uint8)
    t = TrainTransform(16, p_aug=1.0)
    for seed in range(6):
        p = t.sample_params(np.random.default_rng(seed), 30, 40)
        out = t.apply(frames, p)
        for k in range(4):
            np.testing.assert_array_equal(out[:, k], t.apply(frames[k:k + 1], p)[:, 0])


def test_seeds_reproduce_bit_for_bit():
    frames = np.random.default_rng(3).integers(0, 256, (3, 30, 40, 3), dtype=np.uint8)
    t = TrainTransform(16, p_aug=1.0)
    for seed in range(8):
        a = t(frames, np.random.default_rng(seed))
        b = t(frames, np.random.default_rng(seed))
        assert a.tobytes() == b.tobytes()
    outs = {t(frames, np.random.default_rng(seed)).tobytes() for seed in range(8)}
    assert len(outs) > 1


def test_parameter_distribution():
    rng = np.random.default_rng(4)
    draws = [TrainTransform(16, p_aug=0.3).sample_params(rng, 30, 40) for _ in range(2000)]
    assert {p.position for p in draws} == set(CROP_POSITIONS)
    augmented = [p for p in draws if p.augment is not None]
    assert 0.25 < len(augmented) / len(draws) < 0.35
    assert {p.augment for p in augmented} == set(AUGMENTATIONS)
    angles = [p.angle for p in augmented if p.augment == "rotate"]
    factors = [p.brightness for p in augmented if p.augment == "brightness"]
    assert -20 <= min(angles) < -15 and 15 < max(angles) <= 20
    assert 0.5 <= min(factors) < 0.6 and 0.9 < max(factors) <= 1.0
    plain = [p for p in draws if p.augment is None]
    assert all(p.angle == 0.0 and p.brightness == 1.0 for p in plain)
    never = TrainTransform(16, p_aug=0.0)
    assert all(never.sample_params(rng, 30, 40).augment is None for _ in range(200))


@pytest.mark.parametrize("shape, scaled", [((24, 40), (12, 20)), ((45, 30), (18, 12))])
def test_eval_matches_manual_resize_and_centre_crop(shape, scaled):
    frames = np.random.default_rng(5).integers(0, 256, (2, *shape, 3), dtype=np.uint8)
    out = EvalTransform(12)(frames)
    assert out.dtype == np.float32 and out.shape == (3, 2, 12, 12)
    h, w = scaled
    top, left = (h - 12) // 2, (w - 12) // 2
    for k in range(2):
        want = cv2.resize(frames[k], (w, h), interpolation=cv2.INTER_LINEAR)[top:top + 12,
                                                                             left:left + 12]
        np.testing.assert_array_equal(out[:, k], want.transpose(2, 0, 1))
    np.testing.assert_array_equal(out, EvalTransform(12)(frames))


def test_eval_square_frame_of_the_right_size_is_unchanged():
    frames = coordinate_frames(2, 16, 16)
    np.testing.assert_array_equal(EvalTransform(16)(frames), frames.transpose(3, 0, 1, 2))


@pytest.mark.parametrize("bad", [np.zeros((2, 8, 8, 3), np.float32), np.zeros((8, 8, 3), np.uint8),
                                 np.zeros((0, 8, 8, 3), np.uint8),
                                 np.zeros((2, 8, 8, 1), np.uint8)])
def test_bad_frames(bad):
    with pytest.raises(ValueError, match="uint8"):
        EvalTransform(8)(bad)
    with pytest.raises(ValueError, match="uint8"):
        TrainTransform(8).apply(bad, params("center", 8, 8))
