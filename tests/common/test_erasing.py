"""Temporal erasing reference: thresholds, masks, kept frames, erased views, gathers."""
import numpy as np
import pytest

from cten_common.data.sampling import sample_train
from cten_common.erasing import (erase_masks, erased_view_indices, gather_view, gather_views,
                                 kept_frames, thresholds)


def test_thresholds_hand_examples():
    np.testing.assert_array_equal(thresholds([[0, 1, 2, 10]]), [7.0])
    np.testing.assert_allclose(thresholds([[1, 3], [-2, 2]], theta=0.5), [2.0, 0.0])
    np.testing.assert_array_equal(thresholds([[4, 4, 4]], theta=0.0), [4.0])   # min
    np.testing.assert_array_equal(thresholds([[4, 9, 6]], theta=1.0), [9.0])   # max
    np.testing.assert_allclose(thresholds([[0.2, 0.5, 0.1, 0.2]]), [0.1 + 0.7 * 0.4])
    # all equal: exactly the common value, whatever its binary rounding
    # (the literal theta*g + (1-theta)*g misses g for ~7% of random g in float64)
    equal = np.repeat(np.random.default_rng(0).random((200, 1)), 4, axis=1)
    assert (0.7 * equal[:, 0] + (1 - 0.7) * equal[:, 0] != equal[:, 0]).any()
    np.testing.assert_array_equal(thresholds(equal), equal[:, 0])
    context, keyframe = erase_masks(equal)
    assert not context.any() and not keyframe.any()
    # float32 gammas are compared in float64
    assert thresholds(np.float32([[0.1, 0.1]]))[0] == np.float64(np.float32(0.1))
    with pytest.raises(ValueError):
        thresholds([[0, 1]], theta=1.5)
    with pytest.raises(ValueError):
        thresholds([0, 1])                         # not [B, T]
    with pytest.raises(ValueError):
        thresholds([[0, np.nan]])


def test_masks_hand_example():
    context, keyframe = erase_masks([[0, 1, 2, 10]])
    np.testing.assert_array_equal(context, [[True, True, True, False]])
    np.testing.assert_array_equal(keyframe, [[False, False, False, True]])
    assert context.dtype == np.bool_ and keyframe.dtype == np.bool_


def test_segment_at_threshold_goes_to_neither_view():
    # thr = 0 + 0.7 * 10 = 7 exactly: segment 2 (gamma 7) is neither below nor above
    context, keyframe = erase_masks([[0, 5, 7, 10]])
    np.testing.assert_array_equal(context, [[True, True, False, False]])
    np.testing.assert_array_equal(keyframe, [[False, False, False, True]])
    assert not (context & keyframe).any()


def test_all_equal_gamma_falls_back_to_all_frames():
    gamma = np.full((2, 4), 0.1)
    context, keyframe = erase_masks(gamma)
    assert not context.any() and not keyframe.any()
    np.testing.assert_array_equal(kept_frames(context[0], 10), np.arange(10))   # trailing 8, 9 too
    views = erased_view_indices(gamma, [10, 37], 2, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    for b, n in enumerate([10, 37]):
        np.testing.assert_array_equal(views["context"][b], sample_train(np.arange(n), 4, 2, rng))
        np.testing.assert_array_equal(views["keyframe"][b], sample_train(np.arange(n), 4, 2, rng))


def test_single_peak():
    gamma = np.array([[0.1, 0.1, 0.9, 0.1, 0.1]])
    context, keyframe = erase_masks(gamma)
    np.testing.assert_array_equal(context, [[True, True, False, True, True]])
    np.testing.assert_array_equal(keyframe, [[False, False, True, False, False]])
    # n = 20, T = 5, D = 4: the peak is frames 8..11
    np.testing.assert_array_equal(kept_frames(keyframe[0], 20), [8, 9, 10, 11])
    np.testing.assert_array_equal(kept_frames(context[0], 20),
                                  [0, 1, 2, 3, 4, 5, 6, 7, 12, 13, 14, 15, 16, 17, 18, 19])
    views = erased_view_indices(gamma, 20, 2, np.random.default_rng(1))
    assert set(views["keyframe"].ravel()) <= {8, 9, 10, 11}
    assert not set(views["context"].ravel()) & {8, 9, 10, 11}


def test_kept_frames_trailing_frames_belong_to_no_segment():
    # n = 11, T = 4, D = 2: segments [0,2) [2,4) [4,6) [6,8); frames 8, 9, 10 in none
    np.testing.assert_array_equal(kept_frames(np.array([True, False, False, True]), 11),
                                  [0, 1, 6, 7])
    np.testing.assert_array_equal(kept_frames(np.ones(4, bool), 11), np.arange(8))
    rng = np.random.default_rng(5)
    for _ in range(50):
        keep = rng.random(4) < 0.5
        frames = kept_frames(keep, 11)
        if keep.any():
            assert frames.max() < 8
        else:
            np.testing.assert_array_equal(frames, np.arange(11))      # only the fallback
    # n = 7, T = 3, D = 2: last segment [4, 6), frame 6 unused
    np.testing.assert_array_equal(kept_frames(np.array([False, False, True]), 7), [4, 5])
    out = kept_frames(np.array([False, True, True]), 9)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [3, 4, 5, 6, 7, 8])             # divisible: all used


def test_kept_frames_fewer_frames_than_segments():
    # n = 3 < T = 5: frame f is segment f, segments 3 and 4 hold no frame
    np.testing.assert_array_equal(kept_frames(np.array([True, False, True, True, True]), 3),
                                  [0, 2])
    np.testing.assert_array_equal(kept_frames(np.array([False, True, False, False, False]), 3),
                                  [1])
    # only empty segments kept -> fallback to all frames
    np.testing.assert_array_equal(kept_frames(np.array([False, False, False, True, True]), 3),
                                  [0, 1, 2])
    np.testing.assert_array_equal(kept_frames(np.array([True]), 1), [0])
    with pytest.raises(ValueError):
        kept_frames(np.array([True, False]), 0)
    with pytest.raises(TypeError):
        kept_frames(np.array([1, 0]), 4)


def test_views_of_a_video_with_fewer_frames_than_segments():
    gamma = np.array([[0.0, 1.0, 0.2, 0.3]])          # thr 0.7: context {0, 2, 3}, key {1}
    views = erased_view_indices(gamma, 2, 3, np.random.default_rng(2))
    assert views["context"].shape == (1, 4, 3)
    assert set(views["context"].ravel()) == {0}       # segments 2, 3 are empty
    assert set(views["keyframe"].ravel()) == {1}


def test_videos_shorter_than_one_snippet():
    T, L = 4, 16
    gamma = np.array([[0.1, 0.9, 0.2, 0.3], [0.5, 0.5, 0.5, 0.5], [0.0, 0.0, 0.0, 1.0]])
    n_frames = [9, 5, 12]                              # all < L, 9 and 12 >= T
    views = erased_view_indices(gamma, n_frames, L, np.random.default_rng(3))
    for name in ("context", "keyframe"):
        assert views[name].shape == (3, T, L) and views[name].dtype == np.int64
        for b, n in enumerate(n_frames):
            assert views[name][b].min() >= 0 and views[name][b].max() < n
    # video 0, D = 2: keyframe is segment 1 = frames [2, 3], loop-padded to T*L = 64
    np.testing.assert_array_equal(views["keyframe"][0], np.tile([2, 3], 32).reshape(T, L))
    # context frames 0, 1, 4, 5, 6, 7 loop-padded to 64, D = 16 = L: offset 0
    expected = np.resize([0, 1, 4, 5, 6, 7], T * L).reshape(T, L)
    np.testing.assert_array_equal(views["context"][0], expected)
    # video 2, D = 3: keyframe frames 9, 10, 11 (frames 12.. do not exist)
    assert set(views["keyframe"][2].ravel()) == {9, 10, 11}


def test_draw_order_is_context_then_keyframe_per_video():
    rng = np.random.default_rng(11)
    gamma = rng.random((3, 5))
    n_frames = [40, 123, 77]
    views = erased_view_indices(gamma, n_frames, 4, np.random.default_rng(99))
    context, keyframe = erase_masks(gamma)
    rng = np.random.default_rng(99)
    for b, n in enumerate(n_frames):
        np.testing.assert_array_equal(views["context"][b],
                                      sample_train(kept_frames(context[b], n), 5, 4, rng))
        np.testing.assert_array_equal(views["keyframe"][b],
                                      sample_train(kept_frames(keyframe[b], n), 5, 4, rng))


def test_reproducible_with_seed_and_differs_with_another():
    gamma = np.random.default_rng(0).random((4, 8))
    a = erased_view_indices(gamma, 300, 4, np.random.default_rng(7))
    b = erased_view_indices(gamma, 300, 4, np.random.default_rng(7))
    c = erased_view_indices(gamma, 300, 4, np.random.default_rng(8))
    for name in ("context", "keyframe"):
        np.testing.assert_array_equal(a[name], b[name])
    assert any(not np.array_equal(a[k], c[k]) for k in ("context", "keyframe"))


def test_view_indices_lie_in_their_segments():
    rng = np.random.default_rng(4)
    T, L = 6, 3
    for _ in range(20):
        B = 3
        gamma = rng.random((B, T))
        n_frames = rng.integers(T, 200, size=B)
        context, keyframe = erase_masks(gamma)
        views = erased_view_indices(gamma, n_frames, L, rng)
        for b in range(B):
            d = n_frames[b] // T
            for name, mask in (("context", context[b]), ("keyframe", keyframe[b])):
                allowed = {s * d + k for s in np.flatnonzero(mask) for k in range(d)}
                assert set(views[name][b].ravel()) <= allowed
                assert mask.any()      # random gammas: both views non-empty, no fallback


def test_erased_view_indices_arguments():
    with pytest.raises(ValueError):
        erased_view_indices([[0, 1]], [10, 10], 2, np.random.default_rng(0))   # B mismatch
    with pytest.raises(TypeError):
        erased_view_indices([[0, 1]], 10, 2, 0)
    with pytest.raises(ValueError):
        erased_view_indices([[0, 1]], 0, 2, np.random.default_rng(0))


def _loop_gather(clip, indices):
    T, L = indices.shape
    out = np.empty((T, clip.shape[1], L) + clip.shape[2:], clip.dtype)
    for t in range(T):
        for l in range(L):
            out[t, :, l] = clip[indices[t, l]]
    return out


def test_gather_view_equals_loop():
    rng = np.random.default_rng(6)
    clip = rng.random((13, 3, 4, 4)).astype(np.float32)
    indices = rng.integers(0, 13, size=(5, 2))
    out = gather_view(clip, indices)
    assert out.shape == (5, 3, 2, 4, 4)
    np.testing.assert_array_equal(out, _loop_gather(clip, indices))
    with pytest.raises(IndexError):
        gather_view(clip, np.full((5, 2), 13))


def test_gather_views_equals_loop():
    rng = np.random.default_rng(7)
    n_frames = [13, 6]
    clips = np.zeros((2, 13, 3, 4, 4), np.float32)
    for b, n in enumerate(n_frames):
        clips[b, :n] = rng.random((n, 3, 4, 4))
    indices = np.stack([rng.integers(0, n, size=(5, 2)) for n in n_frames])
    out = gather_views(clips, indices, n_frames)
    assert out.shape == (2, 5, 3, 2, 4, 4)
    for b in range(2):
        np.testing.assert_array_equal(out[b], _loop_gather(clips[b], indices[b]))
    bad = indices.copy()
    bad[1, 0, 0] = 8                                   # into video 1's zero padding
    with pytest.raises(IndexError):
        gather_views(clips, bad, n_frames)
    gather_views(clips, bad)                           # without n_frames only the array bound


def test_kept_rows_draw_what_the_whole_batch_draws():
    """A batch with skipped videos (data.on_bad_sample: skip) draws the whole batch's
    uniforms and keeps its rows: the other videos' draws and the next batch's are unchanged."""
    from cten_common.erasing import KeptRows, RankRows, erasing_uniforms, kept_rows_rng
    full, kept = np.random.default_rng(4), np.random.default_rng(4)
    whole = [erasing_uniforms(full, 4, 3) for _ in range(2)]
    part = erasing_uniforms(kept_rows_rng(kept, {"slot": np.array([0, 2, 3]), "slots": 4}), 3, 3)
    assert np.array_equal(part, whole[0][[0, 2, 3]])
    assert np.array_equal(erasing_uniforms(kept, 4, 3), whole[1])
    gen = np.random.default_rng(1)
    assert kept_rows_rng(gen, {"index": [0]}) is gen
    ranked = KeptRows(RankRows(np.random.default_rng(2), 1, 2), [1], 2)      # rank 1's rows of 4
    assert np.array_equal(ranked.random((1, 2, 3)), np.random.default_rng(2).random((4, 2, 3))[2:][[1]])
    with pytest.raises(ValueError, match="2 rows asked, 1 kept of 2"):
        ranked.random((2, 2, 3))
