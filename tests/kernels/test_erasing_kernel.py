"""The compiled erasing operator against the numpy reference of the sampler:
indices exactly, gathered pixels exactly."""
import jittor as jt
import numpy as np
import pytest

from cten_common.erasing import (erased_view_indices, erased_view_indices_uniform, erasing_uniforms,
                                 gather_views)
from cten_jt.kernels.erasing import erase_view, erased_views

VIEWS = ("context", "keyframe")


def _check(gamma, n_frames, L, u, clips, theta=0.7):
    ref = erased_view_indices_uniform(gamma, n_frames, L, u, theta)
    for code, view in enumerate(VIEWS):
        idx, visual = erase_view(gamma, n_frames, u[:, code], clips, L, view, theta)
        idx, visual = idx.numpy(), visual.numpy()
        where = f"{view} view, gamma={np.asarray(gamma).tolist()}, n_frames={list(n_frames)}, L={L}"
        np.testing.assert_array_equal(idx, ref[view], err_msg=f"indices: {where}")
        expected = gather_views(np.asarray(clips), ref[view], n_frames).astype(np.float32)
        assert visual.dtype == np.float32 and visual.shape == expected.shape, where
        np.testing.assert_array_equal(visual, expected, err_msg=f"pixels: {where}")
    return ref


def _clips(rng, B, N, S=4, dtype=np.float32):
    return rng.integers(0, 256, size=(B, N, 3, S, S)).astype(dtype)


def test_random_batches_equal_the_numpy_sampler():
    rng = np.random.default_rng(0)
    for trial in range(25):
        B = int(rng.integers(1, 5))
        T = int(rng.integers(1, 12))
        L = int(rng.integers(1, 9))
        n_frames = rng.integers(1, 90, size=B)
        N = int(n_frames.max()) + int(rng.integers(0, 3))          # zero-padded past the longest
        gamma = rng.random((B, T)).astype(np.float32)
        if trial % 5 == 0:
            gamma = np.round(gamma * 3) / 3                        # ties at the threshold
        theta = float(rng.choice([0.0, 0.3, 0.7, 1.0, rng.random()]))
        _check(gamma, n_frames, L, erasing_uniforms(rng, B, T), _clips(rng, B, N), theta)


@pytest.mark.parametrize("case", ["T=1", "all equal", "one kept segment", "shorter than a snippet",
                                  "fewer frames than segments", "one frame", "exactly T*L frames"])
def test_edge_cases(case):
    rng = np.random.default_rng(7)
    T, L, n = 5, 4, [40, 33]
    gamma = rng.random((2, T)).astype(np.float32)
    if case == "T=1":
        T = 1
        gamma = gamma[:, :1]
    elif case == "all equal":
        gamma[:] = 0.25
    elif case == "one kept segment":
        gamma[:] = [0.1, 0.1, 0.9, 0.1, 0.1]
    elif case == "shorter than a snippet":
        n = [3, 2]
    elif case == "fewer frames than segments":
        n = [4, 1]
    elif case == "one frame":
        n = [1, 1]
    elif case == "exactly T*L frames":
        n = [T * L, T * L + 1]
    ref = _check(gamma, np.array(n), L, erasing_uniforms(rng, 2, T), _clips(rng, 2, max(n)))
    if case == "one kept segment":        # n = 40, D = 8: the peak is frames 16..23
        assert set(ref["keyframe"][0].ravel()) <= set(range(16, 24))
        assert not set(ref["context"][0].ravel()) & set(range(16, 24))


def test_uniforms_next_to_one_and_zero():
    gamma = np.array([[0.2, 0.8, 0.5, 0.1]], np.float32)
    rng = np.random.default_rng(3)
    for u_value in (0.0, np.nextafter(1.0, 0.0)):
        u = np.full((1, 2, 4), u_value)
        _check(gamma, [1000], 3, u, _clips(rng, 1, 1000, S=2))


def test_uint8_clips_and_larger_frames():
    rng = np.random.default_rng(4)
    gamma = rng.random((2, 4)).astype(np.float32)
    clips = _clips(rng, 2, 50, S=17, dtype=np.uint8)
    _check(gamma, [50, 31], 3, erasing_uniforms(rng, 2, 4), clips)


def test_clips_given_as_a_jittor_var():
    rng = np.random.default_rng(5)
    gamma = rng.random((2, 4)).astype(np.float32)
    clips = _clips(rng, 2, 30)
    u = erasing_uniforms(rng, 2, 4)
    ref = erased_view_indices_uniform(gamma, [30, 20], 2, u)
    idx, visual = erase_view(jt.array(gamma), jt.array(np.array([30, 20])), u[:, 0], jt.array(clips), 2,
                             "context")
    np.testing.assert_array_equal(idx.numpy(), ref["context"])
    np.testing.assert_array_equal(visual.numpy(), gather_views(clips, ref["context"]))


def test_erased_views_draws_like_the_reference():
    rng = np.random.default_rng(6)
    gamma = rng.random((3, 6)).astype(np.float32)
    clips = _clips(rng, 3, 70)
    n_frames = [70, 12, 45]
    fused = erased_views(gamma, n_frames, clips, 4, np.random.default_rng(11), 0.7)
    ref = erased_view_indices(gamma, n_frames, 4, np.random.default_rng(11), 0.7)
    for view in VIEWS:
        np.testing.assert_array_equal(fused[view][0].numpy(), ref[view])


def test_bad_arguments():
    gamma = np.zeros((2, 4), np.float32)
    clips = np.zeros((2, 10, 3, 2, 2), np.float32)
    u = np.zeros((2, 4))
    with pytest.raises(ValueError, match="exceeds"):
        erase_view(gamma, [11, 3], u, clips, 2, "context")
    with pytest.raises(ValueError, match="positive"):
        erase_view(gamma, [0, 3], u, clips, 2, "context")
    with pytest.raises(ValueError, match="view"):
        erase_view(gamma, [5, 3], u, clips, 2, "middle")
    with pytest.raises(ValueError, match="uniforms"):
        erase_view(gamma, [5, 3], np.ones((2, 4)), clips, 2, "context")
    with pytest.raises(ValueError, match="clips"):
        erase_view(gamma, [5, 3], u, clips[:1], 2, "context")
    with pytest.raises(ValueError, match="theta"):
        erase_view(gamma, [5, 3], u, clips, 2, "context", theta=1.5)


def test_float64_gamma_is_compared_in_float64():
    # values that collide once rounded to float32: the kernel must not round them
    gamma = np.array([[0.1, 0.1 + 1e-12, 0.1 + 2e-12, 0.1 + 3e-12]], np.float64)
    rng = np.random.default_rng(8)
    _check(gamma, [40], 2, erasing_uniforms(rng, 1, 4), _clips(rng, 1, 40))
    assert not np.array_equal(*[erased_view_indices_uniform(g, [40], 2, np.zeros((1, 2, 4)))["keyframe"]
                                for g in (gamma, gamma.astype(np.float32))])


def test_dropping_the_indices_keeps_the_view_right():
    rng = np.random.default_rng(9)
    gamma = rng.random((2, 4)).astype(np.float32)
    clips = _clips(rng, 2, 30)
    u = erasing_uniforms(rng, 2, 4)
    ref = erased_view_indices_uniform(gamma, [30, 25], 3, u)
    views = [erase_view(gamma, [30, 25], u[:, 1], clips, 3, "keyframe")[1] for _ in range(10)]
    for visual in views:
        np.testing.assert_array_equal(visual.numpy(), gather_views(clips, ref["keyframe"]))
