"""Evaluation shared by both frameworks: run a model over a data set, compute the
metrics (cten_common.metrics), print and plot them.  ``predict_batch`` is the
framework's (cten_jt.engine / cten_torch_ref.engine).

The report lists, per video, its frame rate and where the rate came from
(cten_common.data.timing), its detected spans (start, end, class, score) and its
ground-truth spans, so that a mAP can be read back to the spans that made it.
Videos whose rate had no source (30 fps assumed) are named once, in a warning
and in ``report["frame_rate_warning"]``.
"""
import logging
from collections import Counter

import numpy as np

from .data.datasets import collate
from .data.timing import assumed_rate_warning
from .erasing import KeptRows
from .metrics import (classification_report, detection_map, detections_for_video,
                      mean_of_views_accuracy, softmax)

log = logging.getLogger(__name__)


def evaluate_model(model, data, train_config, predict_batch, batch_size=None, progress=True,
                   shard=(0, 1), all_sum=None):
    """Metrics of ``model`` (eval mode) on an evaluation ``VideoEmotionData``, with the
    batch size, seed, theta and detection threshold of ``train_config`` (a ``TrainConfig``): accuracy of
    the original view and of the mean of original and context views, per class, the
    confusion matrix, and weak detection where the items have ground-truth spans.

    ``shard=(rank, size)`` with ``all_sum`` (an elementwise sum of a float64 array over
    the ranks): this rank predicts batches rank, rank + size, ... and the predictions
    of all ranks are gathered, so every rank returns the metrics of the whole split.
    Each batch's context view draws from its own generator (seed, first index), so
    the figures do not depend on the number of ranks.

    Under ``data.on_bad_sample: skip`` a video that fails to read is left out of the
    metrics and listed in ``report["skipped"]``; the others' context views draw what
    they would have drawn (``KeptRows``).  The annotated videos that are not on disk
    (``data.missing``, left out of the index by ``build_data``) are listed there first,
    by every rank."""
    from tqdm import tqdm

    model.eval()
    rank, size = shard
    bs = batch_size or train_config.batch_size
    n = len(data)
    n_classes, n_segments = len(data.class_names), data.clip.n_segments
    # per video: label, n_frames, fps, logits, context logits, gamma (float64, gathered)
    table = np.zeros((n, 3 + 2 * n_classes + n_segments), np.float64)
    starts = list(range(0, n, bs))[rank::size]
    evaluated = np.zeros(n, np.float64)      # 1: in the metrics (0: skipped, on_bad_sample: skip)
    skipped = list(getattr(data, "missing", None) or ())
    for start in tqdm(starts, desc="evaluating", disable=not progress, leave=False):
        stop = min(start + bs, n)
        batch = collate(data.load_many(range(start, stop)))
        skipped += batch.pop("skipped", [])
        rows = np.arange(start, stop)[batch.pop("slot")] if "slot" in batch else np.arange(start, stop)
        rng = np.random.default_rng([int(train_config.seed), start])   # the context view
        if "slots" in batch:
            rng = KeptRows(rng, rows - start, batch.pop("slots"))
        if not len(rows):
            continue
        out = predict_batch(model, batch, rng, train_config.theta, reader=data.read_views)
        kept = out.get("rows")
        if kept is not None:              # a video's context view failed to read: left out too
            skipped += out["skipped"]
            rows = rows[kept]
        columns = [np.stack([batch["label"], batch["n_frames"], batch["fps"]], 1), out["logits"], out["gamma"]]
        if kept is not None:
            columns = [c[kept] for c in columns]
        table[rows] = np.concatenate(columns[:2] + [out["context_logits"], columns[2]], 1)
        evaluated[rows] = 1.0
    if size > 1:
        table = all_sum(table)
        evaluated = all_sum(evaluated)
    keep = np.flatnonzero(evaluated > 0)
    items = [data.items[i] for i in keep]
    table = table[keep]
    labels, n_frames = table[:, 0].astype(np.int64), table[:, 1].astype(np.int64)
    logits = table[:, 3:3 + n_classes].astype(np.float32)
    context = table[:, 3 + n_classes:3 + 2 * n_classes].astype(np.float32)
    gamma = table[:, 3 + 2 * n_classes:].astype(np.float32)
    report = classification_report(labels, logits, data.class_names)
    report["accuracy_mean_views"] = mean_of_views_accuracy(labels, logits, context)
    probs = softmax(logits)
    threshold = train_config.detection_threshold
    timings = [data.timing(int(i)) for i in keep]
    dets = {item.video_id: detections_for_video(gamma[i], int(n_frames[i]), timings[i].fps, probs[i],
                                                threshold, timings[i].boundaries(int(n_frames[i])))
            for i, item in enumerate(items)}
    if any(item.segments for item in items):
        gts = {item.video_id: (item.label, item.segments) for item in items}
        report["detection"] = detection_map(dets, gts, len(data.class_names))
    else:      # said, not left as a silent "mAP None"
        report["detection_skipped"] = ("no ground-truth spans in this split: weak detection needs "
                                       "'segments' per video (cten_common.data.annotations.label_and_spans)")
    report["frame_rates"] = frame_rate_summary(items, timings)
    assumed = report["frame_rates"]["assumed"]
    if assumed:
        report["frame_rate_warning"] = assumed_rate_warning(assumed)
        if not getattr(data, "_rate_warning_given", False):      # once per data set, not per epoch
            log.warning(report["frame_rate_warning"])
            data._rate_warning_given = True
    report["per_video"] = [video_record(it, int(labels[i]), int(logits[i].argmax()), gamma[i],
                                        int(n_frames[i]), timings[i], dets[it.video_id], data.class_names)
                           for i, it in enumerate(items)]
    report["skipped"] = [bad.as_dict() for bad in skipped]     # this rank's (data.on_bad_sample: skip)
    return report


def frame_rate_summary(items, timings):
    """``{"sources": {source: videos}, "assumed": [video ids], "notes": {video id: note}}``."""
    return {"sources": dict(Counter(t.source for t in timings)),
            "assumed": [it.video_id for it, t in zip(items, timings) if not t.reliable],
            "notes": {it.video_id: t.note for it, t in zip(items, timings) if t.note and t.reliable}}


def video_record(item, label, pred, gamma, n_frames, timing, detections, class_names):
    """One video of the report: label, prediction, attention, rate and its source, and its
    detected spans beside its ground-truth spans (seconds), the same in both frameworks."""
    return {
        "video_id": item.video_id, "label": label, "pred": pred,
        "gamma": np.asarray(gamma).round(4).tolist(),
        "n_frames": n_frames, "fps": round(float(timing.fps), 6), "fps_source": timing.source,
        "detections": [{"start_s": round(s, 6), "end_s": round(e, 6), "class": class_names[c],
                        "score": round(sc, 6)} for c, s, e, sc in detections],
        "ground_truth": [{"start_s": float(s), "end_s": float(e), "class": class_names[item.label]}
                         for s, e in item.segments],
    }


def print_report(report, class_names):
    print(f"videos: {report['n']}")
    print(f"accuracy (original view):        {report['accuracy']:.4f}")
    print(f"accuracy (mean of orig+context): {report['accuracy_mean_views']:.4f}")
    print("per class: " + ", ".join(f"{c} {'-' if a is None else f'{a:.2f}'}"
                                    for c, a in report["per_class_accuracy"].items()))
    width = max(len(c) for c in class_names)
    print("confusion (rows true, columns predicted):")
    for c, row in zip(class_names, report["confusion_matrix"]):
        print(f"  {c:>{width}} " + " ".join(f"{v:4d}" for v in row))
    det = report.get("detection")
    if det:
        print("weak detection mAP: " + "  ".join(f"{k} {v:.3f}" for k, v in det.items()
                                                 if k.startswith("mAP")))
    elif report.get("detection_skipped"):
        print(f"weak detection: not measured: {report['detection_skipped']}")
    rates = report.get("frame_rates")
    if rates:
        print("frame rates from: " + ", ".join(f"{k} {v}" for k, v in sorted(rates["sources"].items())))
        notes = list(rates["notes"].items())
        for vid, note in notes[:20]:
            print(f"  {vid}: {note}")
        if len(notes) > 20:
            print(f"  ... and {len(notes) - 20} more notes (the report's frame_rates.notes)")
    if report.get("frame_rate_warning"):
        print(f"WARNING: {report['frame_rate_warning']}")
    skipped = report.get("skipped") or []
    if skipped:
        print(f"skipped {len(skipped)} videos (data.on_bad_sample: skip), not in the figures above:")
        for bad in skipped[:20]:
            print(f"  {bad['video_id']} ({bad['where']}): {bad['path']}: {bad['problem']}")
        if len(skipped) > 20:
            print(f"  ... and {len(skipped) - 20} more (the report's skipped)")


def plot_confusion(report, class_names, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cm = np.array(report["confusion_matrix"])
    fig, ax = plt.subplots(figsize=(1 + 0.6 * len(class_names), 1 + 0.6 * len(class_names)))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {report['accuracy']:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


