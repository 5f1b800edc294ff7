"""TSN temporal sampling: shapes, ranges, seeds, loop padding, hand-computed clips."""
import numpy as np
import pytest

from cten_common.data.sampling import loop_pad, sample_eval, sample_train, segment_bounds


def test_loop_pad():
    assert loop_pad([1, 2, 3], 7) == [1, 2, 3, 1, 2, 3, 1]
    assert loop_pad(range(5), 3) == [0, 1, 2, 3, 4]
    assert loop_pad([4], 3) == [4, 4, 4]
    with pytest.raises(ValueError, match="empty"):
        loop_pad([], 3)


def test_segment_bounds():
    assert segment_bounds(10, 3) == [(0, 3), (3, 6), (6, 9)]     # frame 9 unused
    assert segment_bounds(8, 2) == [(0, 4), (4, 8)]
    # fewer frames than segments: positions into the list loop-padded to 4
    assert segment_bounds(2, 4) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    with pytest.raises(ValueError):
        segment_bounds(0, 4)


def test_eval_hand_computed():
    # D = 10 // 2 = 5, offset (5 - 3) // 2 = 1
    np.testing.assert_array_equal(sample_eval(range(10), 2, 3), [[1, 2, 3], [6, 7, 8]])
    # D = 11 // 3 = 3, offset 0, frames 9 and 10 unused
    np.testing.assert_array_equal(sample_eval(range(11), 3, 2), [[0, 1], [3, 4], [6, 7]])
    # an erased view's subset of frame indices: D = 3, offset 1
    np.testing.assert_array_equal(sample_eval([2, 5, 7, 11, 13, 17], 2, 1), [[5], [13]])


def test_train_hand_computed():
    # D = 5, L = 3: offsets floor(3u) in [0, 2], one rng.random call for all segments
    offsets = np.floor(np.random.default_rng(3).random(2) * 3).astype(int)
    expected = [[offsets[0] + k for k in range(3)], [5 + offsets[1] + k for k in range(3)]]
    np.testing.assert_array_equal(sample_train(range(10), 2, 3, np.random.default_rng(3)), expected)


def test_shorter_than_one_snippet_is_loop_padded():
    # [0, 1, 2] -> [0, 1, 2, 0, 1, 2, 0, 1], D = L = 4: the offset can only be 0
    expected = [[0, 1, 2, 0], [1, 2, 0, 1]]
    np.testing.assert_array_equal(sample_eval([0, 1, 2], 2, 4), expected)
    for seed in range(5):
        np.testing.assert_array_equal(
            sample_train([0, 1, 2], 2, 4, np.random.default_rng(seed)), expected)


def test_shorter_than_clip_is_loop_padded():
    # 5 frames < T*L = 6: [0, 1, 2, 3, 4, 0], D = 3 = L
    np.testing.assert_array_equal(sample_eval(range(5), 2, 3), [[0, 1, 2], [3, 4, 0]])
    np.testing.assert_array_equal(sample_train(range(5), 2, 3, np.random.default_rng(0)),
                                  [[0, 1, 2], [3, 4, 0]])


@pytest.mark.parametrize("n_frames", [1, 7, 40, 257, 1000])
def test_shapes_and_ranges(n_frames):
    frames = np.arange(100, 100 + 3 * n_frames, 3)          # any index list, not only 0..n-1
    T, L = 4, 8
    padded = np.array(loop_pad(frames, T * L))
    d = len(padded) // T
    for seed in range(10):
        clip = sample_train(frames, T, L, np.random.default_rng(seed))
        assert clip.shape == (T, L) and clip.dtype == np.int64
        assert np.isin(clip, frames).all()
        for s, snippet in enumerate(clip):   # L consecutive items inside segment s
            starts = [o for o in range(s * d, (s + 1) * d - L + 1)
                      if (padded[o:o + L] == snippet).all()]
            assert starts, f"segment {s}: {snippet} is not a snippet of the segment"
    clip = sample_eval(frames, T, L)
    assert clip.shape == (T, L) and np.isin(clip, frames).all()


def test_train_reproducible_and_varying():
    clips = [sample_train(range(200), 4, 8, np.random.default_rng(seed)) for seed in range(6)]
    again = sample_train(range(200), 4, 8, np.random.default_rng(0))
    np.testing.assert_array_equal(clips[0], again)
    assert len({c.tobytes() for c in clips}) == len(clips)
    # every offset in [0, D - L] occurs
    rng = np.random.default_rng(1)
    seen = {int(sample_train(range(10), 2, 3, rng)[0, 0]) for _ in range(100)}
    assert seen == {0, 1, 2}


def test_eval_deterministic_and_centred():
    a = sample_eval(range(200), 4, 8)
    np.testing.assert_array_equal(a, sample_eval(range(200), 4, 8))
    # D = 50, offset (50 - 8) // 2 = 21
    np.testing.assert_array_equal(a[:, 0], [21, 71, 121, 171])


def test_bad_arguments():
    with pytest.raises(ValueError, match="snippet_len"):
        sample_eval(range(10), 2, 0)
    with pytest.raises(ValueError, match="n_segments"):
        sample_eval(range(10), 0, 2)
    with pytest.raises(ValueError, match="empty"):
        sample_eval([], 2, 2)
    with pytest.raises(TypeError, match="Generator"):
        sample_train(range(10), 2, 2, np.random.RandomState(0))
