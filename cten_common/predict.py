"""cten-predict over an engine: what runs the model is the engine's, the rest is here once.

    cten-predict VIDEO [--weights W] [--config CONFIG] [--engine E] [--plot OUT.png] [--json OUT.json]
    cten-predict INPUT [INPUT ...] --out RESULTS.jsonl [--plots DIR] [--batch B] [--workers N]

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

A collection (several inputs, or --out): INPUTs are video files, frame folders,
folders searched recursively for both, .txt files listing paths, or annotation
JSONs (their videos under --video-root / --audio-root, default the config's
data.video_root / data.audio_root).  One model serves them all; videos are
decoded ahead in --workers processes and run --batch at a time.  RESULTS.jsonl
gets one line per video (a failed one: its error), RESULTS.csv a summary; run
again with the same --out and the videos already there are skipped (--overwrite:
afresh, --retry-failed: the failed ones again).  Exit 1 when any video failed
(cten_common.collection).

An engine (``Engine``) loads the model and runs a batch: Jittor (``cten_jt.predict``, the
default) or an ONNX runtime (``cten_deploy.runtimes``: ONNX Runtime, OpenVINO; the model
exported by ``cten-export``).  This module imports no framework.
"""
import argparse
import dataclasses
import json
import os
import sys

import numpy as np

from .checkpoint_io.errors import CheckpointError
from .data.datasets import collate
from .data.errors import DataError
from .checkpoint_io.run_paths import run_checkpoint_path
from .precision import add_precision_option

DEFAULT_WEIGHTS = run_checkpoint_path(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                   "runs", "synthetic"), "best")

class Engine:
    """What cten-predict needs of whatever runs the model (one object per engine)."""

    name = None

    def load(self, weights, config_path=None, precision=None):
        """``(model, RunConfig, class names)`` of ``weights``, ready for ``predict_batch``."""
        raise NotImplementedError

    def predict_batch(self, model, batch):
        """``{"logits": [B, classes], "gamma": [B, T]}`` (numpy) of a collated batch."""
        raise NotImplementedError

    def on_cpu(self, model):
        """Whether the model computes on the CPU (whose cores the decoders would share)."""
        return True

    def world(self):
        """``(rank, size)`` of this process among ``mpirun``'s."""
        return 0, 1

    def all_sum(self, values):
        """The elementwise sum of ``values`` over the ranks (a barrier)."""
        return np.asarray(values, np.float64)


def annotation_entry(annotation, video):
    """``(label name, spans, fps, duration)`` of ``video`` in an annotation JSON, or None when
    it is not there.  A bad file or entry is a DataError naming the file."""
    from .collection import Entry, with_ground_truth
    entry = with_ground_truth([Entry(video)], annotation)[0]
    return None if entry.label is None else (entry.label, entry.spans, entry.fps, entry.duration)


def predict_video(engine, model, config, classes, video, audio=None, allow_silence=False, threshold=0.5,
                  top_k=3, annotation=None):
    """The prediction of one video file (or frame folder) as a dict; ``annotation``: a JSON
    in which the video may have ground-truth spans and a rate."""
    from .collection import Entry, describe, load_sample, with_ground_truth
    from .data.datasets import clip_config

    clip = dataclasses.replace(clip_config(config, train=False), allow_silence=allow_silence)
    entry = Entry(video, audio)
    if annotation:
        entry = with_ground_truth([entry], annotation)[0]
    sample, timing = load_sample(entry, clip, classes)
    out = engine.predict_batch(model, collate([sample]))
    result = describe(entry, int(sample["n_frames"]), timing, out["logits"][0], out["gamma"][0], classes,
                      threshold, top_k)
    result["_thumbs"] = thumbnails(sample, timing)
    return result


def thumbnails(sample, timing):
    """The first frame of each segment's snippet, with its time: what the plot shows."""
    at = timing.boundaries(int(sample["n_frames"]))
    return [(float(at[sample["frame_indices"][t, 0]]), sample["visual"][t, :, 0].transpose(1, 2, 0))
            for t in range(sample["frame_indices"].shape[0])]


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


def main(argv=None, engines=None):
    """cten-predict; ``engines``: ``{name: a function making the Engine}`` the command offers
    (``--engine``, the first the default)."""
    engines = engines or {}
    p = argparse.ArgumentParser(prog="cten-predict", description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="a video file or frame folder; with several (or --out): also folders, .txt lists, "
                        "annotation .json files")
    p.add_argument("--weights", default=DEFAULT_WEIGHTS,
                   help="a run's best.safetensors / last.safetensors (older runs: .pkl), or "
                        "converted weights with --config (default: the main job's "
                        "runs/synthetic/best.safetensors)")
    p.add_argument("--config")
    p.add_argument("--engine", choices=list(engines), default=next(iter(engines), None),
                   help="what runs the model: jittor, or an ONNX runtime (onnxruntime, openvino) on the model "
                        "cten-export wrote (--weights FILE.onnx), or on a run's checkpoint exported on the fly "
                        "and cached (needs the PyTorch twin)")
    p.add_argument("--audio", help="audio file to use instead of the video's own track (one video)")
    p.add_argument("--allow-silence", action="store_true", help="accept a video without audio (silence)")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--plot", help="PNG: attention over the timeline, intervals, a few frames (one video)")
    p.add_argument("--json", help="write the result as JSON (one video)")
    p.add_argument("--annotation", help="annotation JSON holding the videos' ground-truth spans and rates "
                                        "(default: the config's data.annotation, when it exists)")
    c = p.add_argument_group("a collection")
    c.add_argument("--out", help="RESULTS.jsonl: one line per video, RESULTS.csv beside it; resumed when it exists")
    c.add_argument("--plots", metavar="DIR", help="one PNG per video")
    c.add_argument("--overwrite", action="store_true", help="start --out afresh")
    c.add_argument("--retry-failed", action="store_true", help="predict again the videos whose line is an error")
    c.add_argument("--batch", type=int, default=1, help="videos per model call (default 1)")
    c.add_argument("--workers", type=int, default=2, help="processes decoding ahead of the model (default 2; 0: none)")
    c.add_argument("--nice", type=int, default=10,
                   help="the decoding processes' priority below the model's (default 10; 0: the same)")
    c.add_argument("--hold-decoders", choices=("auto", "yes", "no"), default="auto",
                   help="hold the decoding processes while the model computes (auto: when it runs on the CPU, "
                        "whose cores they would share)")
    c.add_argument("--max-bad-share", type=float, default=1.0,
                   help="stop once more than this share of the videos failed (default 1: never)")
    c.add_argument("--video-root", help="where an annotation input's videos are (default: data.video_root)")
    c.add_argument("--audio-root", help="where an annotation input's audio is (default: data.audio_root)")
    add_precision_option(p)
    a = p.parse_args(argv)
    if not os.path.exists(a.weights):
        p.error(f"{a.weights} not found: pass --weights (run cten-main-job for the default)")
    collection = a.out is not None or len(a.inputs) > 1 or not _one_video(a.inputs[0])
    if collection and a.out is None:
        p.error("several videos, a folder, a list or an annotation need --out RESULTS.jsonl")
    if collection and (a.plot or a.json or a.audio):
        p.error("--plot, --json and --audio are for one video; a collection takes --plots DIR")
    if a.batch < 1 or a.workers < 0 or not 0 <= a.max_bad_share <= 1 or not 0 <= a.nice <= 19:
        p.error("--batch must be >= 1, --workers >= 0, --nice in [0, 19] and --max-bad-share in [0, 1]")
    try:
        engine = engines[a.engine]()
        model, config, classes = engine.load(a.weights, a.config, precision=a.precision)
        annotation = a.annotation
        if annotation is None and config.data.annotation and os.path.isfile(config.data.annotation):
            annotation = config.data.annotation
        if collection:
            return _predict_collection(a, engine, model, config, classes, annotation)
        result = predict_video(engine, model, config, classes, a.inputs[0], a.audio, a.allow_silence,
                               a.threshold, a.top_k, annotation)
    except (DataError, CheckpointError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{a.inputs[0]}: {result['n_frames']} frames, {result['duration_s']:.1f} s, "
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


def _one_video(path):
    """True where ``path`` is one video (a file, or a frame folder), not a collection's input."""
    from .collection import is_frame_folder
    if os.path.isdir(path):
        return is_frame_folder(path)
    return not path.lower().endswith((".txt", ".json"))


def _hold_decoders(choice, engine, model):
    """Whether the decoders wait while the model computes: on the CPU they share its cores
    (cten_common.collection.Decoder); beside a GPU they run while it computes."""
    if choice != "auto":
        return choice == "yes"
    return engine.on_cpu(model)


def _predict_collection(a, engine, model, config, classes, annotation):
    """cten-predict over many videos (cten_common.collection): 0 when every video in --out
    was predicted, 1 when any failed or the run stopped early.  Under ``mpirun -np N`` the
    videos still to do are dealt round-robin to the ranks; each rank writes its part
    (``RESULTS.rankK.jsonl``) and rank 0 merges the parts into RESULTS.jsonl, in the
    input's order (the engine's ``all_sum``: sums over the ranks are the barriers)."""
    from . import collection
    from .data.datasets import clip_config

    rank, size = engine.world()
    all_sum = engine.all_sum
    entries = collection.gather(a.inputs, a.video_root or config.data.video_root,
                                a.audio_root or config.data.audio_root)
    if annotation:
        entries = collection.with_ground_truth(entries, annotation)
    if not entries:
        raise DataError(" ".join(a.inputs), "no videos found")
    if rank == 0:                       # a killed run's parts first; then --overwrite, --retry-failed
        collection.merge_parts(a.out, entries)
        collection.ResultsFile(a.out, overwrite=a.overwrite, retry_failed=a.retry_failed).close()
    if size > 1:
        all_sum([0.0])                  # every rank reads the output as rank 0 left it
        done = {os.path.abspath(r["video"]) for r in collection.read_results(a.out)[0]}
        todo = [e for e in entries if e.key not in done]
        results = collection.ResultsFile(collection.part_path(a.out, rank), overwrite=True)
        mine, before = todo[rank::size], len(entries) - len(todo)
    else:
        results = collection.ResultsFile(a.out)
        mine, before = entries, len(results.done & {e.key for e in entries})
    clip = dataclasses.replace(clip_config(config, train=False), allow_silence=a.allow_silence)
    on_result = None
    if a.plots:
        os.makedirs(a.plots, exist_ok=True)
        plotted = set()

        def on_result(result, sample, timing):
            name = collection.video_id_of(result["video"])
            name = name if name not in plotted else f"{name}_{len(plotted)}"
            plotted.add(name)
            plot_prediction({**result, "_thumbs": thumbnails(sample, timing)}, os.path.join(a.plots, name + ".png"))
    try:
        report = collection.predict_collection(mine, clip, classes,
                                               lambda batch: engine.predict_batch(model, batch),
                                               results, a.batch, a.workers, a.threshold, a.top_k,
                                               a.max_bad_share, progress=rank == 0, on_result=on_result,
                                               nice=a.nice, pause_decoding=_hold_decoders(a.hold_decoders, engine, model))
    finally:
        results.close()
    predicted, stopped, seconds = report.predicted, int(report.stopped is not None), report.seconds
    if size > 1:
        predicted, stopped, seconds = all_sum([predicted, stopped, seconds])
        seconds /= size
        if rank == 0:
            collection.merge_parts(a.out, entries)
        all_sum([0.0])                  # the merged file, read by every rank for the exit status
    records = collection.read_results(a.out)[0]
    failed = [r for r in records if not r.get("ok")]
    if rank == 0:
        collection.write_summary(records, os.path.splitext(a.out)[0] + ".csv")
        rate = predicted / seconds if seconds else 0.0
        print(f"{len(records)} of {len(entries)} videos in {a.out} ({before} there before, {int(predicted)} predicted now"
              f"{f' by {size} ranks' if size > 1 else ''} at {rate:.4g} videos/s, {len(failed)} failed)")
        for r in failed:
            print(f"  failed: {r['error']}")
        if stopped:
            print(f"stopped: {report.stopped or 'a rank stopped early'}", file=sys.stderr)
    return 1 if failed or stopped else 0
