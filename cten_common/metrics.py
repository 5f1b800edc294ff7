"""Evaluation metrics of CTEN on numpy arrays and plain Python values.

Classification
--------------
``classification_report`` gives top-1 accuracy, per-class recall and the
confusion matrix (rows: true class, columns: predicted class) of
``argmax(logits_or_probs)``; the argmax is the same for logits and for their
softmax, so either may be passed.  ``mean_of_views_accuracy`` is the
reference's "original + context view" figure: the accuracy of the argmax of
the mean of the two views' softmax probabilities.

Weakly supervised temporal detection (the paper's Table 3)
----------------------------------------------------------
Detections are formed from a video's temporal attention ``gamma`` [T] (the
segment weights of ``CTEN.forward``) and its predicted class probabilities
[K] as follows.

1. Segment times (``segment_times``).  The model sees a video of n frames as
   T segments of D = n // T frames (``cten_common.data.sampling``): segment s
   covers frames [s*D, min((s+1)*D, n)), and frame f covers the time
   [f/fps, (f+1)/fps), so segment s covers the seconds
   [s*D/fps, min((s+1)*D, n)/fps).  With ``frame_times`` (a variable-rate
   video's timestamps, cten_common.data.timing) f/fps is frame_times[f].  The last n - T*D frames are in no
   segment (the model never samples them).  When n < T the frame list is
   loop-padded to T items, each segment is one item and segment s is frame
   s % n, i.e. [(s % n)/fps, (s % n + 1)/fps).
2. Normalisation.  a = (gamma - min gamma) / (max gamma - min gamma) per
   video; when all gamma are equal, a = 1 everywhere.
3. Intervals.  Segments with a >= ``threshold`` (0.5 by default) are kept;
   each maximal run of consecutive kept segments s_i..s_j (in segment order)
   becomes one interval [start of s_i, end of s_j] in seconds.  (When n < T
   the segment times are not monotone; the interval is then the hull
   [min start, max end] of the run's segments, which is the same thing
   whenever the segments are in time order.)
4. Label and score.  Every interval gives exactly one detection, labelled
   with the video's top-1 predicted class c = argmax(probs) (the first
   maximum on ties), with score = mean(a over s_i..s_j) * probs[c].

Evaluation (``detection_map``) follows the ActivityNet/THUMOS protocol.  For
each class and tIoU threshold, all detections of that class over all videos
are sorted by score, descending (ties keep their input order: videos in the
iteration order of ``detections_by_video``, then list order).  A detection
is a true positive if, among the not yet matched ground-truth spans of its
class in its video, the one with the highest tIoU has tIoU >= the threshold
(it is then matched); otherwise it is a false positive (also when its video
has no ground truth at all).  Precision and recall (TP / number of
ground-truth spans of the class) are taken after each detection; the
precision is made monotonically non-increasing from the right, with
sentinels recall 0 / 1 and precision 0 at both ends, and AP is the sum over
the recall steps of (recall increase) * (interpolated precision) (VOC 2010+,
ActivityNet's ``interpolated_prec_rec``).  Classes without any ground-truth
span are left out of the mean over classes; mAP is the mean of mAP@tIoU
over the thresholds.  (All-point interpolation, not VOC 2007's 11 points:
docs/training.md says why; tests/common/test_metrics.py checks a case worked
out by hand.)
"""
import math

import numpy as np
from sklearn.metrics import confusion_matrix as _sk_confusion_matrix

DEFAULT_TIOUS = (0.1, 0.2, 0.3, 0.4, 0.5)


# --------------------------------------------------------------------------
# classification

def softmax(logits):
    """Class probabilities of ``logits`` [..., C], in float64, max-subtracted."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _check_classification(labels, scores, n_classes=None):
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be [N, K], got shape {scores.shape}")
    if labels.ndim != 1 or labels.shape[0] != scores.shape[0]:
        raise ValueError(f"labels must be [N] with N = {scores.shape[0]}, got shape {labels.shape}")
    if labels.shape[0] == 0:
        raise ValueError("no samples")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(labels == np.round(labels)):
            raise ValueError("labels must be integers")
        labels = labels.astype(np.int64)
    k = scores.shape[1] if n_classes is None else n_classes
    if scores.shape[1] != k:
        raise ValueError(f"scores have {scores.shape[1]} columns, expected {k} classes")
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"labels must lie in [0, {k}), got range [{labels.min()}, {labels.max()}]")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite")
    return labels, scores


def classification_report(labels, logits_or_probs, class_names):
    """``{"accuracy", "per_class_accuracy", "confusion_matrix", "n"}`` of top-1 predictions.

    ``labels`` int [N], ``logits_or_probs`` [N, K] with K = len(class_names).
    ``per_class_accuracy[name]`` is the recall of that class (correct / true
    samples of it), None when the class has no sample; ``confusion_matrix`` is
    a K x K list of lists of ints, rows true class, columns predicted class.
    """
    class_names = list(class_names)
    k = len(class_names)
    labels, scores = _check_classification(labels, logits_or_probs, k)
    pred = scores.argmax(axis=1)
    cm = _sk_confusion_matrix(labels, pred, labels=list(range(k)))
    per_class = {}
    for c, name in enumerate(class_names):
        total = int(cm[c].sum())
        per_class[name] = None if total == 0 else float(cm[c, c]) / total
    return {
        "accuracy": float(np.mean(pred == labels)),
        "per_class_accuracy": per_class,
        "confusion_matrix": [[int(v) for v in row] for row in cm],
        "n": int(labels.shape[0]),
    }


def mean_of_views_accuracy(labels, logits_a, logits_b):
    """Top-1 accuracy of the mean of softmax(logits_a) and softmax(logits_b), both [N, K]."""
    labels, a = _check_classification(labels, logits_a)
    _, b = _check_classification(labels, logits_b)
    if a.shape != b.shape:
        raise ValueError(f"the two views' logits differ in shape: {a.shape} vs {b.shape}")
    probs = (softmax(a) + softmax(b)) / 2
    return float(np.mean(probs.argmax(axis=1) == labels))


# --------------------------------------------------------------------------
# intervals from attention

def segment_times(n_frames, fps, T, frame_times=None):
    """``[(start_sec, end_sec), ...]`` of the T segments of a video of n_frames at fps.

    With D = n_frames // T, segment s is frames [s*D, min((s+1)*D, n_frames)),
    i.e. seconds [s*D/fps, min((s+1)*D, n_frames)/fps); the last
    n_frames - T*D frames belong to no segment.  When n_frames < T (the frame
    list is loop-padded), segment s is frame s % n_frames.  ``frame_times``
    (float [n_frames + 1]: every frame's start in seconds, then the last one's
    end, e.g. from a variable-rate video's timestamps) replaces f / fps by
    frame_times[f]; fps is then not used.
    """
    if int(n_frames) != n_frames or n_frames < 1:
        raise ValueError(f"n_frames must be a positive integer, got {n_frames}")
    if int(T) != T or T < 1:
        raise ValueError(f"T must be a positive integer, got {T}")
    n, T = int(n_frames), int(T)
    if frame_times is None:
        fps = float(fps) if fps is not None else float("nan")
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be positive, got {fps}")
        at = [f / fps for f in range(n + 1)]
    else:
        at = [float(t) for t in np.asarray(frame_times, dtype=np.float64).reshape(-1)]
        if len(at) != n + 1 or not all(math.isfinite(t) for t in at) or any(
                b <= a for a, b in zip(at, at[1:])):
            raise ValueError(f"frame_times must be {n + 1} finite increasing seconds, got {len(at)} values")
    if n < T:
        return [(at[s % n], at[s % n + 1]) for s in range(T)]
    d = n // T
    return [(at[s * d], at[min((s + 1) * d, n)]) for s in range(T)]


def normalise_attention(gamma):
    """float64 [T]: min-max normalised ``gamma`` (all ones when every value is equal)."""
    g = np.asarray(gamma, dtype=np.float64)
    if g.ndim != 1 or g.shape[0] < 1:
        raise ValueError(f"gamma must be a non-empty 1-D array [T], got shape {g.shape}")
    if not np.all(np.isfinite(g)):
        raise ValueError("gamma must be finite")
    lo, hi = g.min(), g.max()
    if hi == lo:
        return np.ones_like(g)
    return (g - lo) / (hi - lo)


def attention_runs(gamma, threshold=0.5):
    """``[(first, last), ...]``: inclusive segment index ranges of the maximal runs with a >= threshold."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    keep = normalise_attention(gamma) >= threshold
    runs, first = [], None
    for s, k in enumerate(keep):
        if k and first is None:
            first = s
        elif not k and first is not None:
            runs.append((first, s - 1))
            first = None
    if first is not None:
        runs.append((first, len(keep) - 1))
    return runs


def detections_for_video(gamma, n_frames, fps, probs, threshold=0.5, frame_times=None):
    """``[(label, start_sec, end_sec, score), ...]``: one detection per run of attended segments.

    ``gamma`` [T] is the video's temporal attention, ``probs`` [K] its
    predicted class probabilities.  The label is argmax(probs) for every
    detection, the score mean(normalised attention over the run) * probs[label].
    ``frame_times``: as in ``segment_times`` (the frames' own times, for a
    variable frame rate).
    """
    a = normalise_attention(gamma)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 1 or p.shape[0] < 1 or not np.all(np.isfinite(p)):
        raise ValueError(f"probs must be a finite 1-D array [K], got shape {p.shape}")
    label = int(p.argmax())
    times = segment_times(n_frames, fps, a.shape[0], frame_times)
    out = []
    for first, last in attention_runs(gamma, threshold):
        seg = times[first:last + 1]
        start, end = min(t[0] for t in seg), max(t[1] for t in seg)
        score = float(a[first:last + 1].mean() * p[label])
        out.append((label, float(start), float(end), score))
    return out


# --------------------------------------------------------------------------
# detection evaluation

def tiou(a, b):
    """Temporal intersection over union of intervals ``a = (start, end)`` and ``b``; 0 if the union is empty."""
    a0, a1 = float(a[0]), float(a[1])
    b0, b1 = float(b[0]), float(b[1])
    inter = max(0.0, min(a1, b1) - max(a0, b0))
    union = (a1 - a0) + (b1 - b0) - inter
    return inter / union if union > 0 else 0.0


def interpolated_ap(precision, recall):
    """Area under the precision-recall curve with precision made non-increasing (VOC style)."""
    mprec = np.concatenate([[0.0], np.asarray(precision, dtype=np.float64), [0.0]])
    mrec = np.concatenate([[0.0], np.asarray(recall, dtype=np.float64), [1.0]])
    mprec = np.maximum.accumulate(mprec[::-1])[::-1]
    idx = np.where(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def match_detections(detections, ground_truth, tiou_threshold):
    """bool [len(detections)] true-positive flags, in score-descending order, and that order.

    ``detections``: ``[(video_id, start, end, score), ...]`` of one class;
    ``ground_truth``: ``{video_id: [(start, end), ...]}`` spans of that class.
    Returns ``(tp, order)`` where ``order`` indexes ``detections``.
    """
    detections = list(detections)
    order = sorted(range(len(detections)), key=lambda i: -float(detections[i][3]))
    matched = {vid: [False] * len(spans) for vid, spans in ground_truth.items()}
    tp = np.zeros(len(detections), dtype=bool)
    for rank, i in enumerate(order):
        vid, start, end = detections[i][0], detections[i][1], detections[i][2]
        spans = ground_truth.get(vid, ())
        best, best_j = -1.0, None
        for j, span in enumerate(spans):
            if matched[vid][j]:
                continue
            t = tiou((start, end), span)
            if t > best:
                best, best_j = t, j
        if best_j is not None and best >= tiou_threshold:
            matched[vid][best_j] = True
            tp[rank] = True
    return tp, order


def average_precision(detections, ground_truth, tiou_threshold):
    """AP of one class at one tIoU threshold; nan when the class has no ground-truth span.

    ``detections``: ``[(video_id, start, end, score), ...]``;
    ``ground_truth``: ``{video_id: [(start, end), ...]}``.
    """
    n_gt = sum(len(spans) for spans in ground_truth.values())
    if n_gt == 0:
        return float("nan")
    detections = list(detections)
    if not detections:
        return 0.0
    tp, _ = match_detections(detections, ground_truth, tiou_threshold)
    tp_cum = np.cumsum(tp)
    fp_cum = np.cumsum(~tp)
    recall = tp_cum / n_gt
    precision = tp_cum / (tp_cum + fp_cum)
    return interpolated_ap(precision, recall)


def _tiou_key(t):
    return f"{t:g}"


def detection_map(detections_by_video, ground_truth_by_video, n_classes, tious=DEFAULT_TIOUS):
    """``{"mAP@0.1": ..., ..., "mAP": ..., "AP_per_class": {"0.1": [AP or None per class], ...}}``.

    ``detections_by_video``: ``{video_id: [(label, start, end, score), ...]}``
    (as from ``detections_for_video``); ``ground_truth_by_video``:
    ``{video_id: (label, [[start_sec, end_sec], ...])}``.  AP of a class
    without ground-truth span is None and left out of the mean; every mAP is
    nan when no class has any.
    """
    if int(n_classes) != n_classes or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes}")
    n_classes = int(n_classes)
    tious = tuple(float(t) for t in tious)
    if not tious:
        raise ValueError("no tIoU thresholds")

    def check_label(label, where):
        if int(label) != label or not 0 <= label < n_classes:
            raise ValueError(f"label {label} of {where} outside [0, {n_classes})")
        return int(label)

    gt = [dict() for _ in range(n_classes)]
    for vid, (label, spans) in ground_truth_by_video.items():
        c = check_label(label, f"ground truth of {vid!r}")
        spans = [(float(s), float(e)) for s, e in spans]
        if spans:
            gt[c].setdefault(vid, []).extend(spans)
    dets = [[] for _ in range(n_classes)]
    for vid, video_dets in detections_by_video.items():
        for label, start, end, score in video_dets:
            c = check_label(label, f"a detection of {vid!r}")
            dets[c].append((vid, float(start), float(end), float(score)))

    result, per_class = {}, {}
    for t in tious:
        aps = []
        for c in range(n_classes):
            ap = average_precision(dets[c], gt[c], t)
            aps.append(None if math.isnan(ap) else ap)
        valid = [ap for ap in aps if ap is not None]
        result[f"mAP@{_tiou_key(t)}"] = float(np.mean(valid)) if valid else float("nan")
        per_class[_tiou_key(t)] = aps
    result["mAP"] = float(np.mean([result[f"mAP@{_tiou_key(t)}"] for t in tious]))
    result["AP_per_class"] = per_class
    return result
