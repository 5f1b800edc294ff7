"""Evaluation metrics: classification figures and weak temporal detection mAP, on hand-computed cases."""
import math

import numpy as np
import pytest

from cten_common.metrics import (attention_runs, average_precision, classification_report,
                                 detection_map, detections_for_video, interpolated_ap,
                                 match_detections, mean_of_views_accuracy, normalise_attention,
                                 segment_times, tiou)


# ----------------------------------------------------------------- classification

def test_classification_report_hand_example():
    names = ["a", "b", "c"]
    labels = [0, 0, 1, 1, 1]
    # predictions 0, 1, 1, 1, 0; class c has no sample
    logits = np.array([[5, 0, 0], [0, 5, 0], [0, 5, 1], [1, 2, 0], [3, 2, 0]], float)
    r = classification_report(labels, logits, names)
    assert r["n"] == 5
    assert r["accuracy"] == pytest.approx(3 / 5)
    assert r["confusion_matrix"] == [[1, 1, 0], [1, 2, 0], [0, 0, 0]]
    assert r["per_class_accuracy"]["a"] == pytest.approx(1 / 2)
    assert r["per_class_accuracy"]["b"] == pytest.approx(2 / 3)
    assert r["per_class_accuracy"]["c"] is None
    assert all(isinstance(v, int) for row in r["confusion_matrix"] for v in row)


def test_classification_report_probs_equal_logits():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(20, 4))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = rng.integers(0, 4, 20)
    names = list("wxyz")
    assert classification_report(labels, logits, names) == classification_report(labels, probs, names)


def test_classification_report_rejects_bad_input():
    with pytest.raises(ValueError):
        classification_report([0, 3], np.zeros((2, 3)), ["a", "b", "c"])   # label out of range
    with pytest.raises(ValueError):
        classification_report([0, 1], np.zeros((2, 2)), ["a", "b", "c"])   # K mismatch


def test_mean_of_views_accuracy_averaging_flips_predictions():
    labels = [0, 1]
    # sample 0: view a says 1 weakly (p = .475/.525), view b says 0 strongly (.953/.047): mean -> 0
    # sample 1: view a says 1 strongly, view b says 0 weakly (.550/.450): mean -> 1
    a = np.array([[0.0, 0.1], [0.0, 5.0]])
    b = np.array([[3.0, 0.0], [0.2, 0.0]])
    assert classification_report(labels, a, ["x", "y"])["accuracy"] == 0.5
    assert classification_report(labels, b, ["x", "y"])["accuracy"] == 0.5
    assert mean_of_views_accuracy(labels, a, b) == 1.0
    # averaging probabilities, not logits (with two classes the two always agree; with three
    # they need not): softmax [.503, .041, .455] and [.107, .787, .107] average to
    # [.305, .414, .281] -> class 1, while the mean logits [1.25, 1.0, 1.2] say class 0
    a3 = np.array([[2.5, 0.0, 2.4]])
    b3 = np.array([[0.0, 2.0, 0.0]])
    assert mean_of_views_accuracy([1], a3, b3) == 1.0
    assert mean_of_views_accuracy([0], a3, b3) == 0.0


# ----------------------------------------------------------------- segments and intervals

def test_segment_times_hand_example():
    # 10 frames, T = 3: D = 3, frames [0,3) [3,6) [6,9); frame 9 is in no segment
    assert segment_times(10, 2, 3) == [(0.0, 1.5), (1.5, 3.0), (3.0, 4.5)]
    # divisible case
    assert segment_times(16, 4, 4) == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0), (3.0, 4.0)]
    # n < T: loop-padded, segment s is frame s % n
    assert segment_times(2, 1, 4) == [(0.0, 1.0), (1.0, 2.0), (0.0, 1.0), (1.0, 2.0)]
    with pytest.raises(ValueError):
        segment_times(10, 0, 3)
    with pytest.raises(ValueError):
        segment_times(0, 2, 3)


def test_normalise_attention():
    np.testing.assert_allclose(normalise_attention([1, 3, 2]), [0, 1, 0.5])
    np.testing.assert_array_equal(normalise_attention([0.7, 0.7, 0.7]), [1, 1, 1])


def test_attention_runs_and_threshold():
    gamma = [0, 2, 3, 0.5, 4, 4, 1, 0]       # a = [0, .5, .75, .125, 1, 1, .25, 0]
    assert attention_runs(gamma) == [(1, 2), (4, 5)]          # a == threshold is kept
    assert attention_runs(gamma, threshold=0.8) == [(4, 5)]
    assert attention_runs(gamma, threshold=0.1) == [(1, 6)]
    assert attention_runs(gamma, threshold=0.0) == [(0, 7)]
    assert attention_runs([3, 3, 0, 3]) == [(0, 1), (3, 3)]  # runs at both ends
    assert attention_runs([0.2, 0.2, 0.2]) == [(0, 2)]        # all equal -> all ones
    assert attention_runs([0.3]) == [(0, 0)]                  # single segment


def test_detections_for_video_hand_example():
    gamma = [0, 2, 3, 0.5, 4, 4, 1, 0]
    probs = [0.1, 0.7, 0.2]
    # 16 frames at 2 fps, T = 8: D = 2 frames = 1 s per segment
    dets = detections_for_video(gamma, 16, 2, probs)
    assert len(dets) == 2
    (l0, s0, e0, sc0), (l1, s1, e1, sc1) = dets
    assert (l0, s0, e0) == (1, 1.0, 3.0)
    assert sc0 == pytest.approx((0.5 + 0.75) / 2 * 0.7)
    assert (l1, s1, e1) == (1, 4.0, 6.0)
    assert sc1 == pytest.approx(1.0 * 0.7)


def test_detections_all_equal_and_single_segment():
    dets = detections_for_video([0.4] * 4, 20, 5, [0.3, 0.6, 0.1])
    assert dets == [(1, 0.0, 4.0, pytest.approx(0.6))]
    dets = detections_for_video([0.9], 13, 2, [0.8, 0.2])
    assert dets == [(0, 0.0, 6.5, pytest.approx(0.8))]


# ----------------------------------------------------------------- tIoU and AP

def test_tiou_known_pairs():
    assert tiou((0, 1), (2, 3)) == 0.0              # disjoint
    assert tiou((0, 1), (1, 2)) == 0.0              # touching
    assert tiou((0, 10), (2, 4)) == pytest.approx(0.2)   # nested: 2 / 10
    assert tiou((2, 4), (0, 10)) == pytest.approx(0.2)
    assert tiou((0, 2), (1, 3)) == pytest.approx(1 / 3)  # partial: 1 / 3
    assert tiou((1.5, 4.5), (1.5, 4.5)) == 1.0
    assert tiou((1, 1), (1, 1)) == 0.0              # empty union


def test_interpolated_ap_direct():
    assert interpolated_ap([1.0], [1.0]) == 1.0
    # precision [1, .5, 2/3] -> envelope [1, 2/3, 2/3]; recall steps .5, 0, .5
    assert interpolated_ap([1, 0.5, 2 / 3], [0.5, 0.5, 1.0]) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_single_perfect_detection_ap_one():
    assert average_precision([("v", 0.0, 10.0, 0.3)], {"v": [(0, 10)]}, 0.5) == 1.0


def test_tp_ranked_below_fp():
    # ranks: FP (0.9), TP (0.5); precision [0, 1/2], recall [0, 1]
    # envelope [1/2, 1/2]; recall rises 0 -> 1 at the 2nd detection: AP = 1 * 1/2
    dets = [("v", 20.0, 30.0, 0.9), ("v", 0.0, 10.0, 0.5)]
    assert average_precision(dets, {"v": [(0, 10)]}, 0.5) == pytest.approx(0.5)


def test_missed_ground_truth_caps_recall():
    # two GT spans, one perfect detection: precision [1], recall [1/2]: AP = 1/2 * 1
    dets = [("v1", 0.0, 10.0, 0.8)]
    assert average_precision(dets, {"v1": [(0, 10)], "v2": [(0, 10)]}, 0.5) == pytest.approx(0.5)


def test_duplicate_detection_is_false_positive():
    gt = {"v": [(0, 10), (20, 30)]}
    dets = [("v", 0.0, 10.0, 0.9), ("v", 0.5, 10.0, 0.8), ("v", 20.0, 30.0, 0.7)]
    tp, order = match_detections(dets, gt, 0.5)
    assert order == [0, 1, 2]
    assert tp.tolist() == [True, False, True]
    # precision [1, 1/2, 2/3], recall [1/2, 1/2, 1] -> 1/2 * 1 + 1/2 * 2/3 = 5/6
    assert average_precision(dets, gt, 0.5) == pytest.approx(5 / 6)


def test_matches_highest_tiou_unmatched_gt():
    gt = {"v": [(0, 10), (8, 20)]}
    # det 1 [6, 20]: tIoU 4/20 = .2 with the first span, 12/14 with the second -> matches the second;
    # det 2 [0, 10] then matches the first.  Taking the first span with tIoU >= .15 for det 1
    # would leave det 2 with tIoU 2/20 = .1 < .15 against the second: AP .5 instead of 1.
    dets = [("v", 6.0, 20.0, 0.9), ("v", 0.0, 10.0, 0.8)]
    assert average_precision(dets, gt, 0.15) == 1.0


def test_detection_in_video_without_gt_is_false_positive():
    dets = [("other", 0.0, 10.0, 0.9), ("v", 0.0, 10.0, 0.5)]
    assert average_precision(dets, {"v": [(0, 10)]}, 0.5) == pytest.approx(0.5)
    assert math.isnan(average_precision(dets, {}, 0.5))
    assert average_precision([], {"v": [(0, 10)]}, 0.5) == 0.0


# ----------------------------------------------------------------- mAP

def test_map_across_tiou_thresholds():
    gt = {"v1": (0, [[0.0, 10.0]])}
    dets = {"v1": [(0, 0.0, 3.5, 0.9)]}      # tIoU 3.5 / 10 = 0.35
    r = detection_map(dets, gt, n_classes=2)
    assert r["mAP@0.1"] == r["mAP@0.2"] == r["mAP@0.3"] == 1.0
    assert r["mAP@0.4"] == r["mAP@0.5"] == 0.0
    assert r["mAP"] == pytest.approx(0.6)
    # class 1 has no ground truth: None, left out of the mean
    assert r["AP_per_class"]["0.3"] == [1.0, None]
    assert set(r) == {"mAP@0.1", "mAP@0.2", "mAP@0.3", "mAP@0.4", "mAP@0.5", "mAP", "AP_per_class"}


def test_map_mean_over_classes_and_wrong_class_detection():
    gt = {"a": (0, [[0, 10]]), "b": (1, [[5, 15]])}
    dets = {"a": [(0, 0, 10, 0.9)],
            "b": [(0, 5, 15, 0.95), (1, 5, 15, 0.4)]}   # class-0 detection in a class-1 video: FP
    r = detection_map(dets, gt, n_classes=3, tious=(0.5,))
    # class 0: FP (0.95) then TP (0.9): AP 1/2; class 1: AP 1; class 2: no GT
    assert r["AP_per_class"]["0.5"] == [pytest.approx(0.5), 1.0, None]
    assert r["mAP@0.5"] == pytest.approx(0.75)
    assert r["mAP"] == pytest.approx(0.75)


def test_map_end_to_end_from_attention():
    # 16 frames at 2 fps, T = 8 (1 s segments); GT span [4, 6] s
    gt = {"v": (1, [[4.0, 6.0]])}
    dets = {"v": detections_for_video([0, 2, 3, 0.5, 4, 4, 1, 0], 16, 2, [0.1, 0.7, 0.2])}
    r = detection_map(dets, gt, n_classes=3)
    # [4, 6] (score .7) is a TP at every threshold, ranked above the FP [1, 3] (score .4375)
    assert r["mAP"] == 1.0


def test_map_without_ground_truth_is_nan_and_labels_checked():
    r = detection_map({"v": [(0, 0, 1, 0.5)]}, {"v": (0, [])}, n_classes=1, tious=(0.5,))
    assert math.isnan(r["mAP@0.5"]) and math.isnan(r["mAP"])
    with pytest.raises(ValueError):
        detection_map({"v": [(2, 0, 1, 0.5)]}, {"v": (0, [[0, 1]])}, n_classes=2)


def test_map_independent_hand_computed_case_every_threshold():
    """Three classes, a video with two ground-truth spans, a duplicate detection, a detection in
    a video of another class, a class with no ground truth in the split; every figure below is
    worked out by hand (all-point interpolation, ActivityNet's convention: docs/training.md)."""
    A, B, C = 0, 1, 2
    gt = {"v1": (A, [[0, 10], [20, 30]]),        # two spans of class A
          "v2": (A, [[0, 10]]),
          "v3": (B, [[5, 15]])}                  # class C: no ground truth in this split
    dets = {
        "v1": [(A, 0, 10, 0.9),      # d1: tIoU 1 with [0, 10]
               (A, 1, 10, 0.8),      # d2: duplicate of d1; [0, 10] taken, [20, 30] tIoU 0: FP
               (A, 20, 24, 0.6),     # d4: [20, 30]: inter 4, union 10, tIoU 0.4 (TP at t <= 0.4)
               (C, 0, 5, 0.3)],      # class C has no ground truth: its AP is left out
        "v2": [(A, 6, 16, 0.7),      # d3: [0, 10]: inter 4, union 16, tIoU 0.25 (TP at t <= 0.2)
               (B, 0, 10, 0.95)],    # e2: class B in a video without B: FP
        "v3": [(A, 5, 15, 0.5),      # d5: class A in a class-B video: FP
               (B, 5, 13, 0.4)],     # e1: [5, 15]: inter 8, union 10, tIoU 0.8: TP
    }
    r = detection_map(dets, gt, n_classes=3)
    # Class A, 3 spans, by score d1 .9, d2 .8, d3 .7, d4 .6, d5 .5.
    # t = 0.1, 0.2: TP FP TP TP FP; precision 1, 1/2, 2/3, 3/4, 3/5; recall 1/3, 1/3, 2/3, 1, 1;
    #   precision made non-increasing from the right: 1, .75, .75, .75, .6;
    #   AP = 1/3 * 1 + 1/3 * .75 + 1/3 * .75 = 5/6
    # t = 0.3, 0.4: TP FP FP TP FP; precision 1, 1/2, 1/3, 1/2, 2/5; recall 1/3, 1/3, 1/3, 2/3, 2/3;
    #   non-increasing: 1, .5, .5, .5, .4; AP = 1/3 * 1 + 1/3 * .5 = 1/2
    # t = 0.5: TP FP FP FP FP; AP = 1/3 * 1 = 1/3
    # Class B, 1 span, by score e2 .95 (FP), e1 .4 (TP): precision 0, 1/2; recall 0, 1;
    #   AP = 1 * 1/2 = 1/2 at every threshold up to 0.8
    expected_a = {"0.1": 5 / 6, "0.2": 5 / 6, "0.3": 1 / 2, "0.4": 1 / 2, "0.5": 1 / 3}
    for t, ap_a in expected_a.items():
        assert r["AP_per_class"][t] == [pytest.approx(ap_a), pytest.approx(0.5), None], t
    # mAP@t = (AP_A + AP_B) / 2: (5/6 + 1/2) / 2 = 2/3; (1/2 + 1/2) / 2 = 1/2; (1/3 + 1/2) / 2 = 5/12
    assert r["mAP@0.1"] == pytest.approx(2 / 3) and r["mAP@0.2"] == pytest.approx(2 / 3)
    assert r["mAP@0.3"] == pytest.approx(0.5) and r["mAP@0.4"] == pytest.approx(0.5)
    assert r["mAP@0.5"] == pytest.approx(5 / 12)
    # mean over the thresholds: (2/3 + 2/3 + 1/2 + 1/2 + 5/12) / 5 = 2.75 / 5
    assert r["mAP"] == pytest.approx(0.55)
    # VOC 2007's 11-point interpolation would give class A at t = 0.1:
    # recall points 0, .1, .2, .3 -> 1; .4 .. 1.0 (7 points) -> .75: (4 + 7 * .75) / 11 = 0.8409
    assert r["AP_per_class"]["0.1"][A] != pytest.approx((4 + 7 * 0.75) / 11, abs=1e-3)
    # a threshold past class B's tIoU: e1 is then a FP too, AP_B = 0; d1 still matches [0, 10]
    late = detection_map(dets, gt, n_classes=3, tious=(0.9,))
    assert late["AP_per_class"]["0.9"] == [pytest.approx(1 / 3), 0.0, None]
