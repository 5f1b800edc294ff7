"""The compiled erasing operator against the numpy reference of the sampler:
the frame indices of both erased views, exactly (the frames themselves are read
afterwards from the videos: tests/common/data/test_datasets.py)."""
import jittor as jt
import numpy as np
import pytest

from cten_common.erasing import erased_view_indices, erased_view_indices_uniform, erasing_uniforms
from cten_jt.kernels.erasing import erase_view, erased_views

VIEWS = ("context", "keyframe")


def _check(gamma, n_frames, L, u, theta=0.7):
    ref = erased_view_indices_uniform(gamma, n_frames, L, u, theta)
    for code, view in enumerate(VIEWS):
        idx = erase_view(gamma, n_frames, u[:, code], L, view, theta)
        where = f"{view} view, gamma={np.asarray(gamma).tolist()}, n_frames={list(n_frames)}, L={L}"
        assert idx.dtype == np.int32 and idx.shape == ref[view].shape, where
        np.testing.assert_array_equal(idx, ref[view], err_msg=f"indices: {where}")
    return ref


def test_random_batches_equal_the_numpy_sampler():
    rng = np.random.default_rng(0)
    for trial in range(25):
        B = int(rng.integers(1, 5))
        T = int(rng.integers(1, 12))
        L = int(rng.integers(1, 9))
        n_frames = rng.integers(1, 90, size=B)
        gamma = rng.random((B, T)).astype(np.float32)
        if trial % 5 == 0:
            gamma = np.round(gamma * 3) / 3                        # ties at the threshold
        theta = float(rng.choice([0.0, 0.3, 0.7, 1.0, rng.random()]))
        _check(gamma, n_frames, L, erasing_uniforms(rng, B, T), theta)


def test_real_lengths_equal_the_numpy_sampler():
    """Videos of 3,000-20,000 frames at the reference's T = L = 16."""
    rng = np.random.default_rng(1)
    gamma = rng.random((4, 16)).astype(np.float32)
    _check(gamma, np.array([3207, 9000, 20011, 16 * 16]), 16, erasing_uniforms(rng, 4, 16))


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
    ref = _check(gamma, np.array(n), L, erasing_uniforms(rng, 2, T))
    if case == "one kept segment":        # n = 40, D = 8: the peak is frames 16..23
        assert set(ref["keyframe"][0].ravel()) <= set(range(16, 24))
        assert not set(ref["context"][0].ravel()) & set(range(16, 24))


def test_uniforms_next_to_one_and_zero():
    gamma = np.array([[0.2, 0.8, 0.5, 0.1]], np.float32)
    for u_value in (0.0, np.nextafter(1.0, 0.0)):
        _check(gamma, [1000], 3, np.full((1, 2, 4), u_value))


def test_inputs_given_as_jittor_vars():
    rng = np.random.default_rng(5)
    gamma = rng.random((2, 4)).astype(np.float32)
    u = erasing_uniforms(rng, 2, 4)
    ref = erased_view_indices_uniform(gamma, [30, 20], 2, u)
    idx = erase_view(jt.array(gamma), jt.array(np.array([30, 20])), u[:, 0], 2, "context")
    np.testing.assert_array_equal(idx, ref["context"])


def test_erased_views_draws_like_the_reference():
    rng = np.random.default_rng(6)
    gamma = rng.random((3, 6)).astype(np.float32)
    n_frames = [70, 12, 45]
    fused = erased_views(gamma, n_frames, 4, np.random.default_rng(11), 0.7)
    ref = erased_view_indices(gamma, n_frames, 4, np.random.default_rng(11), 0.7)
    for view in VIEWS:
        np.testing.assert_array_equal(fused[view], ref[view])


def test_bad_arguments():
    gamma = np.zeros((2, 4), np.float32)
    u = np.zeros((2, 4))
    with pytest.raises(ValueError, match="positive"):
        erase_view(gamma, [0, 3], u, 2, "context")
    with pytest.raises(ValueError, match="view"):
        erase_view(gamma, [5, 3], u, 2, "middle")
    with pytest.raises(ValueError, match="uniforms"):
        erase_view(gamma, [5, 3], np.ones((2, 4)), 2, "context")
    with pytest.raises(ValueError, match="n_frames"):
        erase_view(gamma, [5, 3, 4], u, 2, "context")
    with pytest.raises(ValueError, match="theta"):
        erase_view(gamma, [5, 3], u, 2, "context", theta=1.5)
    with pytest.raises(ValueError, match="snippet_len"):
        erase_view(gamma, [5, 3], u, 0, "context")


def test_float64_gamma_is_compared_in_float64():
    # values that collide once rounded to float32: the kernel must not round them
    gamma = np.array([[0.1, 0.1 + 1e-12, 0.1 + 2e-12, 0.1 + 3e-12]], np.float64)
    rng = np.random.default_rng(8)
    _check(gamma, [40], 2, erasing_uniforms(rng, 1, 4))
    assert not np.array_equal(*[erased_view_indices_uniform(g, [40], 2, np.zeros((1, 2, 4)))["keyframe"]
                                for g in (gamma, gamma.astype(np.float32))])
