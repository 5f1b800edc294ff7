"""python -m cten_jt.predict VIDEO [--weights W] [--config CONFIG] [--plot OUT.png] [--top-k 3]

Top-k emotions with probabilities, the attention of every segment, and the
detected emotion intervals in seconds (cten_common.metrics: segments whose
min-max normalised attention >= --threshold, merged into runs).  W may be a
run's best.safetensors / last.safetensors (or an older run's .pkl; these carry
their config and class names) or converted weights (.safetensors, .pkl, .pth)
with --config.  No code in W is ever run (cten_common.safe_load).  A video without an audio track is
refused unless --allow-silence; --audio FILE takes the sound from elsewhere.
"""
import argparse
import dataclasses
import json
import os
import sys

import numpy as np

import cten_jt  # noqa: F401  (Jittor settings first)
from cten_common.data.annotations import VideoItem
from cten_common.data.datasets import VideoEmotionData, collate
from cten_common.data.errors import DataError
from cten_common.metrics import detections_for_video, normalise_attention, segment_times, softmax
from cten_common.safe_load import run_checkpoint_path
from cten_common.weights import CheckpointError, read_checkpoint, strip_prefix, unwrap_state_dict

DEFAULT_WEIGHTS = run_checkpoint_path(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                   "runs", "synthetic"), "best")


def load_for_prediction(weights, config_path=None, overrides=()):
    """(model, config, class names) from a run checkpoint or weights + config."""
    from cten_common.run_config import load_run_config
    from cten_jt.checkpoint import load_state_arrays
    from cten_jt.device import set_device
    from cten_jt.kernels import set_kernels
    from cten_jt.models import build_model

    # a bad --config first: it costs no reading of the weights
    config = load_run_config(config_path, overrides) if config_path else None
    ckpt = read_checkpoint(weights)          # any format; never runs code from the file
    run = isinstance(ckpt, dict) and isinstance(ckpt.get("config"), dict)
    if config is None:
        if not run:
            raise CheckpointError(f"{weights}: carries no config; pass --config")
        config = ckpt["config"]
    set_kernels(config.get("train", {}).get("kernels", "fused"))
    set_device(config.get("train", {}).get("device", "auto"))
    model = build_model(config["model"], init_seed=0)
    name = str(weights)
    load_state_arrays(model, strip_prefix(unwrap_state_dict(ckpt, name)), name)
    classes = ckpt.get("classes") if run else None
    if not classes and config["data"].get("annotation") and os.path.exists(config["data"]["annotation"]):
        with open(config["data"]["annotation"]) as f:
            classes = json.load(f)["labels"]
    classes = classes or [f"class{i}" for i in range(config["model"]["n_classes"])]
    return model, config, classes


def predict_video(model, config, classes, video, audio=None, allow_silence=False, threshold=0.5,
                  top_k=3):
    """The prediction of one video file (or frame folder) as a dict."""
    from cten_jt.engine import predict_batch
    from cten_common.data.datasets import clip_config

    clip = clip_config(config, train=False)
    clip = dataclasses.replace(clip, allow_silence=allow_silence)
    data = VideoEmotionData([VideoItem(os.path.basename(video), 0, classes[0], video, audio)],
                            classes, clip, train=False)
    sample = data.load(0)
    model.eval()
    out = predict_batch(model, collate([sample]))
    logits, gamma = out["logits"][0], out["gamma"][0]
    probs = softmax(logits)
    n, fps = int(sample["n_frames"]), float(sample["fps"]) or 30.0
    order = np.argsort(-probs)[:top_k]
    times = segment_times(n, fps, len(gamma))
    intervals = detections_for_video(gamma, n, fps, probs, threshold)
    return {
        "video": video, "n_frames": n, "fps": fps, "duration_s": n / fps,
        "top": [{"emotion": classes[i], "probability": float(probs[i])} for i in order],
        "segments": [{"start_s": s, "end_s": e, "attention": float(g), "normalised": float(a)}
                     for (s, e), g, a in zip(times, gamma, normalise_attention(gamma))],
        "intervals": [{"emotion": classes[lab], "start_s": s, "end_s": e, "score": sc}
                      for lab, s, e, sc in intervals],
        # the first frame of each segment's snippet, with its time: what the plot shows
        "_thumbs": [(float(sample["frame_indices"][t, 0]) / fps, sample["visual"][t, :, 0].transpose(1, 2, 0))
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
    top = result["top"][0]
    ax.set_title(f"{os.path.basename(result['video'])}: {top['emotion']} ({top['probability']:.2f})", fontsize=9)
    ax.set_xlim(0, result["duration_s"])
    ax.set_ylim(0, 1.15)
    ax.set_xlabel("seconds")
    ax.set_ylabel("attention (normalised)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m cten_jt.predict", description=__doc__.split("\n\n")[0])
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
    a = p.parse_args(argv)
    if not os.path.exists(a.weights):
        p.error(f"{a.weights} not found: pass --weights (run cten-main-job for the default)")
    try:
        model, config, classes = load_for_prediction(a.weights, a.config)
        result = predict_video(model, config, classes, a.video, a.audio, a.allow_silence,
                               a.threshold, a.top_k)
    except (DataError, CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{a.video}: {result['n_frames']} frames, {result['duration_s']:.1f} s")
    for t in result["top"]:
        print(f"  {t['emotion']:<14} {t['probability']:.3f}")
    print("segment attention: " + " ".join(f"{s['normalised']:.2f}" for s in result["segments"]))
    for it in result["intervals"] or [{"emotion": "-", "start_s": 0, "end_s": 0, "score": 0}]:
        print(f"  interval {it['start_s']:.2f}-{it['end_s']:.2f} s  {it['emotion']}  score {it['score']:.3f}")
    if a.plot:
        plot_prediction(result, a.plot)
        print(f"wrote {a.plot}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({k: v for k, v in result.items() if not k.startswith("_")}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
