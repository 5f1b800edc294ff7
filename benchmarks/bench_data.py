"""Data loading on real-length videos: time and memory per sample, per data layout.

    python -m benchmarks.bench_data [--quick] [--out benchmarks/results/data]
                                    [--cache /tmp/cten_bench_data] [--repeats 3]
                                    [--only generate,layouts,reference,decode,fbank]

It makes VideoEmotion-8-like videos with ffmpeg (testsrc2 + a sine tone, H.264
yuv420p, x264's default GOP of 250 frames with B-frames, AAC; 60-300 s, 25-30
fps, 360p-720p, some without audio; ``--quick``: two of 30-45 s at 360p) and,
for each, the reference's frame folder at height 240 (``ffmpeg -vf
scale=-1:240 DIR/%06d.jpg`` + ``n_frames``), an mp3 (a silent one for videos
without audio, which the reference's layout needs), a frame store (short side
240, quality 90) and a cached filterbank (``--features-out``'s ``.npy``).  All of
it is cached under ``--cache`` and reused by later runs.

Layouts, each measured in a fresh subprocess (its peak RSS is the layout's):

=================  =====================================================
mp4                the video file (PyAV, seeking) and its own audio track
folder+mp3         the reference layout: frame folder and mp3
folder+fbank       frame folder and cached filterbank
store+fbank        frame store and cached filterbank
=================  =====================================================

A training sample is ``data.load(i, sample_rng(seed, r, i))`` (the original
view, T*L = 256 frames) plus the two erased views' frames, 2*T*L = 512, read as
``read_views`` reads them: one ``data.read_view(sample, indices)`` of both
views' [2T, L] indices (drawn like training snippets by ``sample_train`` from
their own generators).  An evaluation sample is ``data.load(i)`` of an
evaluation data set.  "Frames held" is the bytes of the sample's frame arrays
(the original view and the two erased views).  Every video is opened once
untimed first (its frame table is cached per process, as in a training run).

The reference-style reader reads, for the same 768 frame indices, the frame
folder's JPEGs one by one with ``cv2.imread`` and crops the short side's centre
square and resizes it to 112 (the reference loader's work, without its PIL
overhead), timed the same way.  Also measured: a sequential decode of a whole
mp4 (for scale) and a long video's filterbank computed from its mp3 (the cost
when it is not cached).

The markdown report ends with the issue's targets: training sample
(folder+fbank) / reference-style reader <= 1.5, frames held per sample <= 64 MB.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np

T, L, S = 16, 16, 112
LABELS = ("Anger", "Joy", "Sadness", "Surprise", "Fear")
LAYOUTS = ("mp4", "folder+mp3", "folder+fbank", "store+fbank")
PARTS = ("generate", "layouts", "reference", "decode", "fbank")
RATIO_TARGET = 1.5
FRAMES_HELD_TARGET_MB = 64.0


@dataclass(frozen=True)
class VideoSpec:
    video_id: str
    label: str
    seconds: float
    fps: str              # as ffmpeg takes it: "30000/1001" etc.
    width: int
    height: int
    audio: bool


FULL_SET = (
    VideoSpec("ve_0000", "Anger", 107, "30000/1001", 640, 360, True),
    VideoSpec("ve_0001", "Joy", 60, "25", 640, 360, False),
    VideoSpec("ve_0002", "Sadness", 180, "30", 854, 480, True),
    VideoSpec("ve_0003", "Surprise", 300, "30000/1001", 1280, 720, True),
    VideoSpec("ve_0004", "Fear", 90, "25", 1280, 720, False),
)
QUICK_SET = (
    VideoSpec("ve_q000", "Anger", 30, "30000/1001", 640, 360, True),
    VideoSpec("ve_q001", "Joy", 45, "25", 640, 360, False),
)


# --- the generated data set ---------------------------------------------------------------

def ffmpeg(*args):
    """Run ffmpeg quietly; its last lines of stderr in the error."""
    out = subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"ffmpeg {' '.join(map(str, args))} failed: {out.stderr[-800:]}")


def paths(cache, spec):
    base = os.path.join
    return {
        "mp4": base(cache, "videos", spec.label, spec.video_id + ".mp4"),
        "folder": base(cache, "frames", spec.label, spec.video_id),
        "mp3": base(cache, "audio", spec.label, spec.video_id + ".mp3"),
        "store": base(cache, "store", spec.label, spec.video_id + ".frames"),
        "fbank": base(cache, "fbank", spec.label, spec.video_id + ".npy"),
    }


def make_video(spec, mp4):
    """testsrc2 (+ a 440 Hz tone) as H.264/AAC; written to a temporary name, then renamed."""
    tmp = mp4 + ".tmp.mp4"
    inputs = ["-f", "lavfi", "-i", f"testsrc2=size={spec.width}x{spec.height}:rate={spec.fps}"]
    if spec.audio:
        inputs += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    ffmpeg(*inputs, "-t", spec.seconds, "-c:v", "libx264", "-preset", "veryfast",
           "-pix_fmt", "yuv420p", *(["-c:a", "aac"] if spec.audio else []), tmp)
    os.replace(tmp, mp4)


def make_frame_folder(mp4, folder):
    """The reference's preparation: every frame as a JPEG at height 240, then n_frames."""
    tmp = folder + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    ffmpeg("-i", mp4, "-vf", "scale=-1:240", os.path.join(tmp, "%06d.jpg"))
    n = sum(1 for name in os.listdir(tmp) if name.endswith(".jpg"))
    with open(os.path.join(tmp, "n_frames"), "w") as f:
        f.write(f"{n}\n")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def make_mp3(spec, mp4, mp3):
    tmp = mp3 + ".tmp.mp3"
    if spec.audio:
        ffmpeg("-i", mp4, "-vn", "-c:a", "libmp3lame", tmp)
    else:                    # the reference layout needs an audio file: silence
        ffmpeg("-f", "lavfi", "-i", "anullsrc=r=44100:cl=mono", "-t", spec.seconds,
               "-c:a", "libmp3lame", tmp)
    os.replace(tmp, mp3)


def make_fbank(mp3, npy):
    from cten_common.data.audio import load_audio
    from cten_common.data.fbank import kaldi_fbank
    tmp = npy + ".tmp.npy"
    np.save(tmp, kaldi_fbank(*load_audio(mp3)))
    os.replace(tmp, npy)


def generate(cache, specs):
    """Make whatever of the set is missing under ``cache``; returns per-video facts."""
    from cten_common.data.frame_store_writer import write_store
    facts = []
    for spec in specs:
        p = paths(cache, spec)
        for key in ("mp4", "mp3", "store", "fbank"):
            os.makedirs(os.path.dirname(p[key]), exist_ok=True)
        os.makedirs(os.path.dirname(p["folder"]), exist_ok=True)
        steps = [("mp4", lambda: make_video(spec, p["mp4"])),
                 ("folder", lambda: make_frame_folder(p["mp4"], p["folder"])),
                 ("mp3", lambda: make_mp3(spec, p["mp4"], p["mp3"])),
                 ("store", lambda: write_store(p["mp4"], p["store"], short_side=240, quality=90)),
                 ("fbank", lambda: make_fbank(p["mp3"], p["fbank"]))]
        made = {}
        for key, make in steps:
            if key == "store" or not os.path.exists(p[key]):
                t0 = time.perf_counter()
                done = make()
                if done != "skipped":
                    made[key] = round(time.perf_counter() - t0, 2)
                    print(f"  {spec.video_id}: {key} made in {made[key]:.1f} s", flush=True)
        facts.append({**asdict(spec), "made_s": made, **disk_use(p, spec)})
    return facts


def disk_use(p, spec):
    """Bytes on disk of each layout of one video, and per minute of video."""
    from cten_common.data.readers.frame_store import FrameStore
    folder_bytes = sum(e.stat().st_size for e in os.scandir(p["folder"]))
    store = FrameStore(p["store"])
    sizes = {"mp4": os.path.getsize(p["mp4"]), "folder": folder_bytes,
             "store": os.path.getsize(p["store"]), "mp3": os.path.getsize(p["mp3"]),
             "fbank": os.path.getsize(p["fbank"])}
    minutes = spec.seconds / 60
    return {"bytes": sizes, "mb_per_min": {k: round(v / 1e6 / minutes, 2) for k, v in sizes.items()},
            "store_size": [store.height, store.width], "store_n_frames": store.n_frames}


def items_for(cache, specs, layout):
    from cten_common.data.annotations import VideoItem
    items = []
    for k, spec in enumerate(specs):
        p = paths(cache, spec)
        video = {"mp4": p["mp4"], "folder+mp3": p["folder"], "folder+fbank": p["folder"],
                 "store+fbank": p["store"]}[layout]
        audio = {"mp4": None, "folder+mp3": p["mp3"]}.get(layout, p["fbank"])
        items.append(VideoItem(spec.video_id, k, spec.label, video, audio))
    return items


# --- measurements (each layout in its own process) -------------------------------------------

def erased_views(n_frames, seed, repeat, index):
    """The two erased views' indices [2T, L], drawn like training snippets."""
    from cten_common.data.sampling import sample_train
    views = [sample_train(np.arange(n_frames), T, L, np.random.default_rng([seed, repeat, index, v]))
             for v in (1, 2)]
    return np.concatenate(views)


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure_layout(cache, specs, layout, repeats, seed):
    """Per-sample wall time and frame bytes of one layout; run in a fresh process.  Also
    the time the layout's reader alone takes for the training sample's distinct frames
    (after the sample: the peak RSS is the sample's and the reader's together)."""
    from cten_common.data.datasets import ClipConfig, VideoEmotionData, sample_rng
    from cten_common.data.readers import open_video
    items = items_for(cache, specs, layout)
    classes = [s.label for s in specs]
    clip = ClipConfig(n_segments=T, snippet_len=L, sample_size=S, allow_silence=True)
    train = VideoEmotionData(items, classes, clip, train=True)
    evaluation = VideoEmotionData(items, classes, clip, train=False)
    rss_start = rss_mb()
    t0 = time.perf_counter()
    n_frames = [open_video(item.video_path).n_frames for item in items]    # frame tables cached
    first_open = time.perf_counter() - t0
    rows = []
    for i, spec in enumerate(specs):
        for r in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            sample = train.load(i, sample_rng(seed, r, i))
            erased = train.read_view(sample, erased_views(n_frames[i], seed, r, i))
            t_train, c_train = time.perf_counter() - t0, time.process_time() - c0
            held = sample["visual"].nbytes + erased.nbytes
            t0 = time.perf_counter()
            ev = evaluation.load(i)
            t_eval = time.perf_counter() - t0
            used = np.unique(np.concatenate([sample["frame_indices"].reshape(-1),
                                             erased_views(n_frames[i], seed, r, i).reshape(-1)]))
            t0 = time.perf_counter()
            for _ in open_video(items[i].video_path).read_chunks(used, 32):
                pass
            t_read = time.perf_counter() - t0
            rows.append({"video": spec.video_id, "repeat": r, "train_s": t_train, "train_cpu_s": c_train,
                         "eval_s": t_eval,
                         "read_only_s": t_read, "distinct_frames": int(len(used)),
                         "train_frames_mb": held / 1e6, "eval_frames_mb": ev["visual"].nbytes / 1e6})
            del sample, erased, ev
    return {"layout": layout, "rows": rows, "first_open_s": first_open, "rss_start_mb": rss_start,
            "peak_rss_mb": rss_mb()}


def measure_reference(cache, specs, repeats, seed):
    """The reference-style reader: the 768 needed JPEGs of the frame folder, cv2.imread,
    centre square of the short side, resized to 112 (uint8)."""
    import cv2
    from cten_common.data.datasets import sample_rng
    from cten_common.data.sampling import sample_train
    rows = []
    for i, spec in enumerate(specs):
        folder = paths(cache, spec)["folder"]
        with open(os.path.join(folder, "n_frames")) as f:
            n = int(f.read())
        for r in range(repeats):
            original = sample_train(np.arange(n), T, L, sample_rng(seed, r, i))
            indices = np.concatenate([original, erased_views(n, seed, r, i)]).reshape(-1)
            t0, c0 = time.perf_counter(), time.process_time()
            out = np.empty((len(indices), S, S, 3), np.uint8)
            for k, frame_index in enumerate(indices.tolist()):
                img = cv2.imread(os.path.join(folder, f"{frame_index + 1:06d}.jpg"), cv2.IMREAD_COLOR)
                h, w = img.shape[:2]
                side = min(h, w)
                top, left = (h - side) // 2, (w - side) // 2
                out[k] = cv2.resize(img[top:top + side, left:left + side], (S, S),
                                    interpolation=cv2.INTER_LINEAR)
            rows.append({"video": spec.video_id, "repeat": r, "train_s": time.perf_counter() - t0,
                         "train_cpu_s": time.process_time() - c0, "train_frames_mb": out.nbytes / 1e6})
    return {"layout": "reference-style", "rows": rows, "peak_rss_mb": rss_mb()}


def measure_decode(cache, specs):
    """Sequential decode of each whole mp4 (PyAV, RGB), for scale."""
    from cten_common.data.readers.video_file import VideoFile
    rows = []
    for spec in specs:
        v = VideoFile(paths(cache, spec)["mp4"])
        t0 = time.perf_counter()
        n = sum(1 for _ in v.iter_frames())
        dt = time.perf_counter() - t0
        rows.append({"video": spec.video_id, "frames": n, "seconds": dt, "frames_per_s": n / dt})
    return {"rows": rows}


def measure_fbank(cache, specs):
    """The filterbank of the longest video with audio, from its mp3 (not cached)."""
    from cten_common.data.audio import load_audio
    from cten_common.data.fbank import kaldi_fbank
    spec = max((s for s in specs if s.audio), key=lambda s: s.seconds)
    mp3 = paths(cache, spec)["mp3"]
    t0 = time.perf_counter()
    wave, sr = load_audio(mp3)
    t_load = time.perf_counter() - t0
    kaldi_fbank(wave, sr)
    return {"video": spec.video_id, "seconds_of_audio": spec.seconds, "load_s": t_load,
            "total_s": time.perf_counter() - t0}


def run_worker(args, specs):
    what = args.worker
    if what in LAYOUTS:
        result = measure_layout(args.cache, specs, what, args.repeats, args.seed)
    elif what == "reference":
        result = measure_reference(args.cache, specs, args.repeats, args.seed)
    elif what == "decode":
        result = measure_decode(args.cache, specs)
    else:
        result = measure_fbank(args.cache, specs)
    with open(args.result, "w") as f:
        json.dump(result, f)


def in_subprocess(args, what):
    """Run one measurement in a fresh interpreter; its JSON result."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result = f.name
    cmd = [sys.executable, "-m", "benchmarks.bench_data", "--worker", what, "--result", result,
           "--cache", args.cache, "--repeats", str(args.repeats), "--seed", str(args.seed)]
    if args.quick:
        cmd.append("--quick")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        out = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"{what} failed:\n{out.stderr[-3000:]}")
        with open(result) as f:
            return json.load(f)
    finally:
        os.remove(result)


# --- report -----------------------------------------------------------------------------------

def summarise(result):
    rows = result["rows"]
    out = {"layout": result["layout"], "peak_rss_mb": result["peak_rss_mb"]}
    for key in ("train_s", "train_cpu_s", "eval_s", "read_only_s", "train_frames_mb", "eval_frames_mb"):
        values = [row[key] for row in rows if key in row]
        if values:
            out[key] = {"mean": float(np.mean(values)), "median": float(np.median(values)),
                        "max": float(np.max(values))}
    return out


def markdown(report):
    lines = [f"# Data loading benchmark ({'quick' if report['quick'] else 'full'})", "",
             f"Machine: {report['machine'].get('cpu')}, {report['machine'].get('cpus')} CPUs; "
             f"T={T}, L={L}, S={S}; {report['repeats']} samples per video; times are means "
             f"(medians in the JSON).", "", "## Videos", "",
             "| video | s | fps | size | audio | frames (store) | mp4 MB/min | folder MB/min "
             "| store MB/min | store size |", "|---|---|---|---|---|---|---|---|---|---|"]
    for v in report.get("videos", []):
        m = v["mb_per_min"]
        lines.append(f"| {v['video_id']} | {v['seconds']} | {v['fps']} | {v['width']}x{v['height']} "
                     f"| {'yes' if v['audio'] else 'no'} | {v['store_n_frames']} | {m['mp4']} "
                     f"| {m['folder']} | {m['store']} | {v['store_size'][1]}x{v['store_size'][0]} |")
    if report.get("layouts"):
        lines += ["", "## Per sample", "",
                  "| layout | training sample s | (CPU s) | evaluation sample s | training sample's "
                  "frames read only s | frames held per training sample MB | peak RSS MB |",
                  "|---|---|---|---|---|---|---|"]
        for s in report["layouts"]:
            ev = f"{s['eval_s']['mean']:.3f}" if "eval_s" in s else "-"
            read = f"{s['read_only_s']['mean']:.3f}" if "read_only_s" in s else "-"
            lines.append(f"| {s['layout']} | {s['train_s']['mean']:.3f} | {s['train_cpu_s']['mean']:.3f} "
                         f"| {ev} | {read} "
                         f"| {s['train_frames_mb']['max']:.1f} | {s['peak_rss_mb']:.0f} |")
        lines += ["", "Times are wall-clock means over all samples; CPU: all threads of the process "
                      "(less disturbed by other load on a shared machine).  "
                      "Training sample: ``load`` plus one ``read_view`` of both erased views "
                      "(with the data set's transforms and audio).  Frames read only: the same "
                      "distinct frames through the layout's reader (``read_chunks``, 32 at a time, "
                      "no transform).  Reference-style: cv2.imread of the 768 JPEGs + crop + "
                      "resize to 112."]
    elif report.get("layouts_skipped"):
        lines += ["", f"Layouts not measured: {report['layouts_skipped']}"]
    if report.get("decode"):
        lines += ["", "## Whole-file decode (PyAV, sequential, RGB)", "",
                  "| video | frames | s | frames/s |", "|---|---|---|---|"]
        for r in report["decode"]["rows"]:
            lines.append(f"| {r['video']} | {r['frames']} | {r['seconds']:.2f} | {r['frames_per_s']:.0f} |")
    if report.get("fbank"):
        f = report["fbank"]
        lines += ["", f"Filterbank of {f['video']} ({f['seconds_of_audio']} s) from its mp3, not "
                      f"cached: {f['total_s']:.2f} s (decoding the mp3: {f['load_s']:.2f} s)."]
    if report.get("targets"):
        t = report["targets"]
        lines += ["", "## Targets", ""]
        if "ratio" in t:
            lines.append(f"- training sample (folder+fbank) / reference-style reader: "
                         f"{t['ratio']:.2f} (target <= {RATIO_TARGET}): "
                         f"{'met' if t['ratio'] <= RATIO_TARGET else 'NOT met'}; in CPU time "
                         f"{t['ratio_cpu']:.2f}")
        if "frames_held_mb" in t:
            lines.append(f"- frames held per training sample: {t['frames_held_mb']:.1f} MB "
                         f"(target <= {FRAMES_HELD_TARGET_MB:.0f} MB): "
                         f"{'met' if t['frames_held_mb'] <= FRAMES_HELD_TARGET_MB else 'NOT met'}")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="two 30-45 s 360p videos")
    p.add_argument("--out", default="benchmarks/results/data", help="folder of bench_data.{json,md}")
    p.add_argument("--cache", default="/tmp/cten_bench_data", help="where the generated set is kept")
    p.add_argument("--repeats", type=int, default=3, help="samples per video and layout")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", default=",".join(PARTS), help=f"comma-separated subset of {PARTS}")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    specs = QUICK_SET if args.quick else FULL_SET
    if args.worker:                # --cache is already the set's own folder
        return run_worker(args, specs)
    args.cache = os.path.abspath(os.path.join(args.cache, "quick" if args.quick else "full"))
    parts = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        p.error(f"--only: unknown parts {sorted(unknown)} (choose from {PARTS})")
    if shutil.which("ffmpeg") is None:
        p.error("ffmpeg is needed to make the videos")
    from benchmarks.common import describe
    report = {"quick": args.quick, "repeats": args.repeats, "seed": args.seed, "machine": describe(),
              "cache": args.cache}
    print(f"data set under {args.cache}", flush=True)
    report["videos"] = generate(args.cache, specs)      # always: the rest needs it (cached)
    if "layouts" in parts:
        from cten_common.data.datasets import VideoEmotionData
        if hasattr(VideoEmotionData, "read_view"):
            report["layouts"] = []
            for layout in LAYOUTS:
                print(f"measuring {layout} ...", flush=True)
                report["layouts"].append(summarise(in_subprocess(args, layout)))
        else:
            report["layouts_skipped"] = "VideoEmotionData has no read_view (the erased views' API) yet"
    if "reference" in parts:
        print("measuring the reference-style reader ...", flush=True)
        report.setdefault("layouts", []).append(summarise(in_subprocess(args, "reference")))
    if "decode" in parts:
        print("measuring whole-file decodes ...", flush=True)
        report["decode"] = in_subprocess(args, "decode")
    if "fbank" in parts:
        print("measuring a filterbank from mp3 ...", flush=True)
        report["fbank"] = in_subprocess(args, "fbank")
    report["targets"] = targets(report.get("layouts", []))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_data.json"), "w") as f:
        json.dump(report, f, indent=1)
    text = markdown(report)
    with open(os.path.join(args.out, "bench_data.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


def targets(layouts):
    by_name = {s["layout"]: s for s in layouts}
    out = {}
    if "folder+fbank" in by_name and "reference-style" in by_name:
        ours, ref = by_name["folder+fbank"], by_name["reference-style"]
        out["ratio"] = ours["train_s"]["mean"] / ref["train_s"]["mean"]
        out["ratio_cpu"] = ours["train_cpu_s"]["mean"] / ref["train_cpu_s"]["mean"]
    held = [s["train_frames_mb"]["max"] for name, s in by_name.items() if name in LAYOUTS]
    if held:
        out["frames_held_mb"] = max(held)
    return out


if __name__ == "__main__":
    sys.exit(main())
