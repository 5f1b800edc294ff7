"""python -m cten_jt.predict VIDEO [--weights W] [--config CONFIG] [--plot OUT.png] [--top-k 3]

Top-k emotions with probabilities, the attention of every segment, and the
detected emotion intervals in seconds (cten_common.metrics: segments whose
min-max normalised attention >= --threshold, merged into runs).  W may be a
run's best.safetensors / last.safetensors (or an older run's .pkl; these carry
their config and class names) or converted weights (.safetensors, .pkl, .pth)
with --config.  No code in W is ever run (cten_common.checkpoint_io).  A video without an audio track is
refused unless --allow-silence; --audio FILE takes the sound from elsewhere.
A frame folder's rate comes from its fps file, the annotation, --audio or
data.frame_fps (cten_common.data.timing); the output says which.  When the
video is in the annotation (--annotation, default the config's
data.annotation), its ground-truth spans are listed and drawn on the plot.
"""
import argparse
import dataclasses
import json
import os
import sys

import numpy as np

import cten_jt  # noqa: F401  (Jittor settings first)
from cten_common.checkpoint_io.errors import CheckpointError
from cten_common.checkpoint_io.filter import strip_prefix, unwrap_state_dict
from cten_common.checkpoint_io.run_paths import run_checkpoint_path
from cten_common.checkpoint_io.sniff import read_checkpoint
from cten_common.data.annotations import VideoItem, label_and_spans, rate_and_duration
from cten_common.data.datasets import VideoEmotionData, collate
from cten_common.data.errors import DataError
from cten_common.precision import add_precision_option
from cten_common.metrics import detections_for_video, normalise_attention, segment_times, softmax

DEFAULT_WEIGHTS = run_checkpoint_path(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                   "runs", "synthetic"), "best")


def load_for_prediction(weights, config_path=None, overrides=(), precision=None):
    """(model, config, class names) from a run checkpoint or weights + config; ``precision``:
    what the model computes in (default the config's ``train.precision``)."""
    from cten_common.precision import apply_precision_option
    from cten_common.config import RunConfig, load_run_config
    from cten_jt.precision import set_precision
    from cten_jt.device import release_free_memory, set_device
    from cten_jt.models import build_model
    from cten_jt.models.state import load_state_arrays
    from cten_jt.switches import set_kernels

    # a bad --config first: it costs no reading of the weights
    config = load_run_config(config_path, overrides) if config_path else None
    ckpt = read_checkpoint(weights)          # any format; never runs code from the file
    run = isinstance(ckpt, dict) and isinstance(ckpt.get("config"), dict)
    if config is None:
        if not run:
            raise CheckpointError(f"{weights}: carries no config; pass --config")
        try:          # over today's defaults, as a resumed run's config.yaml
            config = RunConfig().updated(ckpt["config"])
        except ValueError as exc:
            raise CheckpointError(f"{weights}: its stored configuration: {exc}") from None
    config = apply_precision_option(config, precision)
    set_kernels(config.train.kernels)
    set_device(config.train.device)
    model = build_model(config.model, init_seed=0)
    set_precision(model, config.train.precision)
    name = str(weights)
    load_state_arrays(model, strip_prefix(unwrap_state_dict(ckpt, name)), name)
    classes = ckpt.get("classes") if run else None
    del ckpt
    release_free_memory()            # the file's arrays, freed into glibc's heap (models.build_model)
    if not classes and config.data.annotation and os.path.exists(config.data.annotation):
        with open(config.data.annotation) as f:
            classes = json.load(f)["labels"]
    classes = classes or [f"class{i}" for i in range(config.model.n_classes)]
    return model, config, classes


def video_id_of(video):
    """The annotation id of a video path: a frame folder's name, a file's name without extension."""
    name = os.path.basename(os.path.normpath(video))
    return name if os.path.isdir(video) else os.path.splitext(name)[0]


def annotation_entry(annotation, video):
    """``(label name, spans, fps, duration)`` of ``video`` in an annotation JSON, or None when
    it is not there.  A bad file or entry is a DataError naming the file."""
    try:
        with open(annotation) as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise DataError(annotation, f"cannot read the annotation: {exc}") from None
    entry = (data.get("database") or {}).get(video_id_of(video)) if isinstance(data, dict) else None
    if entry is None:
        return None
    try:
        label, spans = label_and_spans(entry)
        fps, duration = rate_and_duration(entry)
    except ValueError as exc:
        raise DataError(annotation, f"video {video_id_of(video)!r}: {exc}") from None
    return label, spans, fps, duration


def predict_video(model, config, classes, video, audio=None, allow_silence=False, threshold=0.5,
                  top_k=3, annotation=None):
    """The prediction of one video file (or frame folder) as a dict; ``annotation``: a JSON
    in which the video may have ground-truth spans and a rate."""
    from cten_jt.engine import predict_batch
    from cten_common.data.datasets import clip_config

    clip = clip_config(config, train=False)
    clip = dataclasses.replace(clip, allow_silence=allow_silence)
    entry = annotation_entry(annotation, video) if annotation else None
    label, spans, ann_fps, ann_duration = entry or (None, [], None, None)
    item = VideoItem(video_id_of(video), 0, classes[0], video, audio, segments=spans,
                     fps=ann_fps, duration=ann_duration)
    data = VideoEmotionData([item], classes, clip, train=False)
    sample = data.load(0)
    model.eval()
    out = predict_batch(model, collate([sample]))
    logits, gamma = out["logits"][0], out["gamma"][0]
    probs = softmax(logits)
    n, timing = int(sample["n_frames"]), data.timing(0)
    at = timing.boundaries(n)
    order = np.argsort(-probs)[:top_k]
    times = segment_times(n, timing.fps, len(gamma), at)
    intervals = detections_for_video(gamma, n, timing.fps, probs, threshold, at)
    return {
        "video": video, "n_frames": n, "fps": timing.fps, "fps_source": timing.source,
        "fps_note": timing.note, "duration_s": float(at[-1]),
        "ground_truth": [{"emotion": label, "start_s": s, "end_s": e} for s, e in spans],
        "top": [{"emotion": classes[i], "probability": float(probs[i])} for i in order],
        "segments": [{"start_s": s, "end_s": e, "attention": float(g), "normalised": float(a)}
                     for (s, e), g, a in zip(times, gamma, normalise_attention(gamma))],
        "intervals": [{"emotion": classes[lab], "start_s": s, "end_s": e, "score": sc}
                      for lab, s, e, sc in intervals],
        # the first frame of each segment's snippet, with its time: what the plot shows
        "_thumbs": [(float(at[sample["frame_indices"][t, 0]]), sample["visual"][t, :, 0].transpose(1, 2, 0))
                    for t in range(len(gamma))],
    }


def plot_prediction(result, path, n_thumbs=6):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    thumbs = result["_thumbs"]
    fig = plt.figure(figsize=(10, 4.2))
    idx = np.linspace(0, len(thumbs) - 1, min(n_thumbs, len(thumbs))).round().astype(int)
    for k, i in enumerate(idx):
        seconds, frame = thumbs[i]
        ax = fig.add_subplot(2, n_thumbs, k + 1)
        ax.imshow(frame)
        ax.set_title(f"{seconds:.1f} s", fontsize=8)
        ax.axis("off")
    ax = fig.add_subplot(2, 1, 2)
    for seg in result["segments"]:
        ax.bar(seg["start_s"], seg["normalised"], width=seg["end_s"] - seg["start_s"], align="edge",
               color="tab:blue", alpha=0.6, edgecolor="white")
    for it in result["intervals"]:
        ax.axvspan(it["start_s"], it["end_s"], color="tab:red", alpha=0.2)
        ax.text(it["start_s"], 1.02, f"{it['emotion']} {it['score']:.2f}", fontsize=8, color="tab:red")
    for k, gt in enumerate(result.get("ground_truth") or []):      # a band under the bars
        ax.axvspan(gt["start_s"], gt["end_s"], ymin=0, ymax=0.06, color="tab:green", alpha=0.8,
                   label="ground truth" if k == 0 else None)
        ax.text(gt["start_s"], 0.075, f"truth: {gt['emotion']}", fontsize=7, color="tab:green")
    if result.get("ground_truth"):
        ax.legend(loc="upper right", fontsize=7)
    top = result["top"][0]
    ax.set_title(f"{os.path.basename(result['video'])}: {top['emotion']} ({top['probability']:.2f}); "
                 f"{result['fps']:.3f} fps ({result['fps_source']})", fontsize=9)
    ax.set_xlim(0, result["duration_s"])
    ax.set_ylim(0, 1.15)
    ax.set_xlabel("seconds")
    ax.set_ylabel("attention (normalised)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(prog="cten-predict", description=__doc__.split("\n\n")[0])
    p.add_argument("video")
    p.add_argument("--weights", default=DEFAULT_WEIGHTS,
                   help="a run's best.safetensors / last.safetensors (older runs: .pkl), or "
                        "converted weights with --config (default: the main job's "
                        "runs/synthetic/best.safetensors)")
    p.add_argument("--config")
    p.add_argument("--audio", help="audio file to use instead of the video's own track")
    p.add_argument("--allow-silence", action="store_true", help="accept a video without audio (silence)")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--plot", help="PNG: attention over the timeline, intervals, a few frames")
    p.add_argument("--json", help="write the result as JSON")
    p.add_argument("--annotation", help="annotation JSON holding the video's ground-truth spans and rate "
                                        "(default: the config's data.annotation, when it exists)")
    add_precision_option(p)
    a = p.parse_args(argv)
    if not os.path.exists(a.weights):
        p.error(f"{a.weights} not found: pass --weights (run cten-main-job for the default)")
    try:
        model, config, classes = load_for_prediction(a.weights, a.config, precision=a.precision)
        annotation = a.annotation
        if annotation is None and config.data.annotation and os.path.isfile(config.data.annotation):
            annotation = config.data.annotation
        result = predict_video(model, config, classes, a.video, a.audio, a.allow_silence,
                               a.threshold, a.top_k, annotation)
    except (DataError, CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{a.video}: {result['n_frames']} frames, {result['duration_s']:.1f} s, "
          f"{result['fps']:.3f} fps ({result['fps_source']})")
    if result["fps_note"]:
        print(f"  note: {result['fps_note']}")
    for t in result["top"]:
        print(f"  {t['emotion']:<14} {t['probability']:.3f}")
    print("segment attention: " + " ".join(f"{s['normalised']:.2f}" for s in result["segments"]))
    for it in result["intervals"] or [{"emotion": "-", "start_s": 0, "end_s": 0, "score": 0}]:
        print(f"  interval {it['start_s']:.2f}-{it['end_s']:.2f} s  {it['emotion']}  score {it['score']:.3f}")
    for gt in result["ground_truth"]:
        print(f"  truth    {gt['start_s']:.2f}-{gt['end_s']:.2f} s  {gt['emotion']}")
    if a.plot:
        plot_prediction(result, a.plot)
        print(f"wrote {a.plot}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({k: v for k, v in result.items() if not k.startswith("_")}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
