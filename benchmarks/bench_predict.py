"""cten-predict over a collection at the paper's shape, on real-length videos: videos per
hour against the model alone and against one cten-predict per video, and peak memory
against the number of videos.

    python -m benchmarks.bench_predict [--videos 50] [--loop 10] [--memory 20,200]
        [--layouts folder,mp4] [--workers 2] [--batch 1] [--nice 10]
        [--cache /tmp/cten_bench_predict] [--out benchmarks/results/predict] [--quick]

The videos (made once with ffmpeg, cached under ``--cache``): one 107 s video at 30 fps,
640x360, H.264 (x264's default GOP of 250 frames, B-frames) with an AAC tone, as an mp4
and as the reference's preparation: a frame folder at height 240 (``ffmpeg -vf
scale=-1:240 %06d.jpg`` + ``n_frames``, no rate written down) and an mp3.  A collection
of N videos is N links to them, each its own path (each decoded anew).  Layouts:

======  ====================================================================================
folder  the reference's layout: frame folders and mp3s, through an annotation JSON (its
        rate: the annotation's fps, which the reference's own files do not have, so
        ``fps`` is written into it as ``cten-prepare-dataset`` would)
mp4     the video files, with their own audio track, through a ``.txt`` list
======  ====================================================================================

The model: ``configs/ve8.yaml``'s CTEN (R3D-101, T = L = 16, S = 112, 8 classes, fp32),
initialised from a seed and saved as safetensors (the weights do not change the time).

Measures, each in its own process (peak RSS: the largest process of the command):

* **model only**: 4 videos' samples decoded first, then the model's call per video
  (``predict_batch``), one warm-up call, the median of 2 passes; the rate the collection
  is judged against;
* **collection**, per layout: ``cten-predict`` over ``--videos`` videos with ``--out``,
  ``--workers`` decoding processes (at ``--nice``, held while the model computes:
  ``--hold-decoders auto`` on a CPU), ``--batch``: its own videos/hour
  (the loop's time, without the start-up) and the command's wall time;
* **loop**: ``cten-predict VIDEO`` once per video for ``--loop`` videos (mp4): wall time
  per call, start-up included, as a user's shell loop pays it;
* **memory**: the collection (folder layout) over each of ``--memory``'s numbers of videos:
  peak RSS.

Goals (issue 38): collection >= 0.85 of the model-only rate from frame folders and from
mp4; >= 3x the loop's throughput; peak RSS after 200 videos within 5 % of that after 20.
On a CPU the model and the decoding share the cores: the CPU seconds per video of each
are in the report, and the bound they set, model / (model + decoding).
"""
import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time

from benchmarks.common import ROOT, describe

LABELS = ("Anger", "Anticipation", "Disgust", "Fear", "Joy", "Sadness", "Surprise", "Trust")
SECONDS, FPS, WIDTH, HEIGHT = 107, 30, 640, 360


# ---- the data and the model ------------------------------------------------------------------

def prepare(cache):
    """The long video (mp4, frame folder, mp3), the config and the weights, made if missing."""
    from benchmarks.bench_data import VideoSpec, make_frame_folder, make_mp3, make_video
    os.makedirs(cache, exist_ok=True)
    spec = VideoSpec("long", LABELS[0], SECONDS, str(FPS), WIDTH, HEIGHT, True)
    made = {"mp4": os.path.join(cache, "long.mp4"), "folder": os.path.join(cache, "long_frames"),
            "mp3": os.path.join(cache, "long.mp3")}
    for key, make in (("mp4", lambda: make_video(spec, made["mp4"])),
                      ("folder", lambda: make_frame_folder(made["mp4"], made["folder"])),
                      ("mp3", lambda: make_mp3(spec, made["mp4"], made["mp3"]))):
        if not os.path.exists(made[key]):
            t0 = time.time()
            make()
            print(f"  made {made[key]} in {time.time() - t0:.1f} s", flush=True)
    made["config"] = os.path.join(cache, "ve8_bench.yaml")
    made["weights"] = os.path.join(cache, "ve8_r101_seed0.safetensors")
    if not os.path.exists(made["weights"]):
        _write_config(made["config"], os.path.join(cache, "labels.json"))
        subprocess.run([sys.executable, "-c", _SAVE, made["config"], made["weights"]], cwd=ROOT, check=True,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    return made


def _write_config(path, labels_json):
    import yaml
    with open(os.path.join(ROOT, "configs", "ve8.yaml")) as f:
        config = yaml.safe_load(f)
    with open(labels_json, "w") as f:
        json.dump({"labels": list(LABELS), "database": {}}, f)
    config["data"] = {"format": "ve8", "annotation": labels_json}      # the class names; videos: the inputs
    config["train"] = {"pretrained_visual": None}
    with open(path, "w") as f:
        yaml.safe_dump(config, f)


_SAVE = """
import sys
from cten_common.config import load_run_config
from cten_jt.checkpoint import save_weights
from cten_jt.models import build_model
save_weights(build_model(load_run_config(sys.argv[1]).model, init_seed=0), sys.argv[2])
"""


def collection(cache, made, layout, n):
    """The inputs of a collection of ``n`` videos in ``layout`` (links made if missing)."""
    root = os.path.join(cache, layout)
    if layout == "mp4":
        folder = os.path.join(root, "videos")
        os.makedirs(folder, exist_ok=True)
        paths = []
        for i in range(n):
            link = os.path.join(folder, f"v{i:04d}.mp4")
            if not os.path.lexists(link):
                os.symlink(made["mp4"], link)
            paths.append(link)
        listing = os.path.join(root, f"list_{n}.txt")
        with open(listing, "w") as f:
            f.write("\n".join(paths) + "\n")
        return [listing]
    database = {}
    for i in range(n):
        vid = f"v{i:04d}"
        for kind, target, name in (("videos", made["folder"], vid), ("audio", made["mp3"], vid + ".mp3")):
            link = os.path.join(root, kind, LABELS[0], name)
            os.makedirs(os.path.dirname(link), exist_ok=True)
            if not os.path.lexists(link):
                os.symlink(target, link)
        database[vid] = {"subset": "validation", "annotations": {"label": LABELS[0]}, "fps": FPS}
    annotation = os.path.join(root, f"annotation_{n}.json")
    with open(annotation, "w") as f:
        json.dump({"labels": list(LABELS), "database": database}, f)
    return [annotation, "--video-root", os.path.join(root, "videos"), "--audio-root", os.path.join(root, "audio")]


# ---- the measures ----------------------------------------------------------------------------

_PEAK = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
         "r = resource.getrusage(resource.RUSAGE_CHILDREN); "
         "print('PEAK', r.ru_maxrss, r.ru_utime + r.ru_stime, file=sys.stderr); sys.exit(rc)")


def run(cmd, ok=(0,)):
    """(wall s, peak RSS MB of the command's largest process, CPU s of all its processes, stdout)."""
    began = time.time()
    proc = subprocess.run([sys.executable, "-c", _PEAK, *map(str, cmd)], cwd=ROOT, capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    wall = time.time() - began
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n"
                         f"{proc.stderr[-4000:]}")
    _, peak_kb, cpu = proc.stderr.strip().splitlines()[-1].split()
    return wall, int(peak_kb) / 1024, float(cpu), proc.stdout


def predict_command(made, *args):
    return [sys.executable, "-m", "cten_jt.predict", *args, "--weights", made["weights"], "--config", made["config"]]


def measure_collection(cache, made, layout, n, workers, batch, nice, tag):
    out = os.path.join(cache, "out", f"{layout}_{n}_{tag}.jsonl")
    wall, peak, cpu, stdout = run(predict_command(made, *collection(cache, made, layout, n), "--out", out,
                                                  "--overwrite", "--workers", workers, "--batch", batch,
                                                  "--nice", nice))
    m = re.search(r"(\d+) predicted now at ([0-9.e+-]+) videos/s", stdout)
    if not m or int(m.group(1)) != n:
        raise SystemExit(f"collection of {n} ({layout}) did not predict every video:\n{stdout[-2000:]}")
    rate = float(m.group(2))
    return {"layout": layout, "videos": n, "workers": workers, "batch": batch, "nice": nice,
            "videos_per_hour": round(rate * 3600, 1), "seconds_per_video": round(1 / rate, 3),
            "wall_s": round(wall, 1), "peak_rss_mb": round(peak), "cpu_s_per_video": round(cpu / n, 3)}


def measure_loop(cache, made, k):
    paths = [line.strip() for line in open(collection(cache, made, "mp4", k)[0]) if line.strip()]
    walls, peaks = [], []
    for path in paths:
        wall, peak, _, _ = run(predict_command(made, path))
        walls.append(wall)
        peaks.append(peak)
        print(f"  loop: {os.path.basename(path)} {wall:.1f} s", flush=True)
    return {"videos": k, "seconds_per_call": round(statistics.mean(walls), 2),
            "seconds_per_call_median": round(statistics.median(walls), 2),
            "videos_per_hour": round(3600 / statistics.mean(walls), 1), "peak_rss_mb": round(max(peaks))}


def model_only(cache, made, n=4, passes=2):
    """In this process: ``n`` samples decoded first (and timed: the decoding's own CPU
    seconds per video, per layout), then the model's call on each."""
    import dataclasses
    from cten_common import collection as col
    from cten_common.data.datasets import clip_config, collate
    from cten_jt.engine import predict_batch
    from cten_jt.predict import load_for_prediction

    model, config, classes = load_for_prediction(made["weights"], made["config"])
    clip = dataclasses.replace(clip_config(config, train=False), allow_silence=True)
    decode = {}
    samples = []
    for layout in ("folder", "mp4"):
        entry = col.Entry(made["folder"], audio=made["mp3"], fps=float(FPS)) if layout == "folder" \
            else col.Entry(made["mp4"])
        cpu = []
        for _ in range(n):
            t0 = time.process_time()
            sample, _, error = col._decode((entry, clip, classes))
            cpu.append(time.process_time() - t0)
            if error is not None:
                raise SystemExit(f"decoding {entry.path}: {error}")
            if layout == "folder":
                samples.append(sample)
        decode[layout] = round(statistics.median(cpu[1:] or cpu), 3)
    predict_batch(model, collate([samples[0]]))                       # warm-up: the program's first call
    walls, cpus = [], []
    for _ in range(passes):
        for s in samples:
            batch = collate([s])
            t0, c0 = time.perf_counter(), time.process_time()
            predict_batch(model, batch)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    wall = statistics.median(walls)
    return {"seconds_per_video": round(wall, 3), "videos_per_hour": round(3600 / wall, 1),
            "model_cpu_s_per_video": round(statistics.median(cpus), 3), "decode_cpu_s_per_video": decode,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


# ---- kill -9 and run again -------------------------------------------------------------------

def resume_inputs(cache, made, n):
    """``n`` videos: half frame folders + mp3 (an annotation), half mp4s and 3 damaged files
    (truncated, empty, not a video) in a list."""
    root = os.path.join(cache, "resume")
    bad = os.path.join(root, "bad")
    os.makedirs(bad, exist_ok=True)
    data = open(made["mp4"], "rb").read()
    for name, content in (("truncated.mp4", data[:len(data) // 4]), ("empty.mp4", b""),
                          ("notavideo.avi", b"hello")):
        with open(os.path.join(bad, name), "wb") as f:
            f.write(content)
    folders = collection(cache, made, "folder", n // 2)
    listing = collection(cache, made, "mp4", n - n // 2 - 3)[0]
    mixed = os.path.join(root, f"list_{n}.txt")
    with open(mixed, "w") as f:
        f.write(open(listing).read() + "".join(os.path.join(bad, b) + "\n" for b in sorted(os.listdir(bad))))
    return folders[:1] + [mixed] + folders[1:]


def _lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def _killed_at(cmd, out, at, parts):
    """Run ``cmd``; kill -9 its cten-predict processes once ``at`` lines are written."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    killed = []
    while proc.poll() is None:
        files = [f"{os.path.splitext(out)[0]}.rank{r}.jsonl" for r in range(parts)] if parts else [out]
        written = 0
        for f in files:
            if os.path.exists(f):
                with open(f, "rb") as fh:
                    written += fh.read().count(b"\n")
        if written >= at:
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
                except OSError:
                    continue
                if b"cten_jt.predict" in argv and out.encode() in argv and not argv[0].endswith(b"mpirun"):
                    try:
                        os.kill(int(pid), 9)
                        killed.append(int(pid))
                    except ProcessLookupError:
                        pass
            break
        time.sleep(0.05)
    proc.wait()
    return written, killed


def _differences(lines, other):
    """The largest differences of two runs' lines, video by video (the same videos in order)."""
    prob = att = 0.0
    top1 = 0
    for x, y in zip(lines, other):
        if x["ok"] and y["ok"]:
            prob = max(prob, max(abs(s["probability"] - t["probability"]) for s, t in zip(x["top"], y["top"])))
            att = max(att, max(abs(s["attention"] - t["attention"]) for s, t in zip(x["segments"], y["segments"])))
            top1 += x["top"][0]["emotion"] != y["top"][0]["emotion"]
    return {"same_videos_in_order": [r["video"] for r in lines] == [r["video"] for r in other],
            "max_probability_difference": prob, "max_attention_difference": att, "top1_differing": top1}


def resume_check(cache, made, n, ranks, which=("one", "mpi")):
    """A run of ``n`` videos killed with kill -9 halfway and started again, against an
    uninterrupted run of the same kind: one process, and ``mpirun -np ranks`` (whose ranks
    run a thread each where one process runs two: its lines are also compared with one
    process's)."""
    inputs = resume_inputs(cache, made, n)
    folder = os.path.join(cache, "resume", "out")
    os.makedirs(folder, exist_ok=True)
    mpirun = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(ranks), "--mca", "btl", "self,vader",
              "-x", "PYTHONPATH"]
    report = {"videos": n, "runs": []}
    for kind, label, prefix, parts in (("one", "one process", [], 0), ("mpi", f"mpirun -np {ranks}", mpirun, ranks)):
        if kind not in which:
            continue
        ref = os.path.join(folder, f"whole_{parts}.jsonl")
        t0 = time.time()
        run(prefix + predict_command(made, *inputs, "--out", ref, "--overwrite"), ok=(1,))
        whole = _lines(ref)
        entry = {"run": label, "whole_lines": len(whole), "whole_failed": sum(not r["ok"] for r in whole),
                 "whole_s": round(time.time() - t0, 1)}
        if kind == "mpi" and os.path.exists(os.path.join(folder, "whole_0.jsonl")):
            entry["against_one_process"] = _differences(whole, _lines(os.path.join(folder, "whole_0.jsonl")))
        out = os.path.join(folder, f"killed_{parts}.jsonl")
        for f in [out] + [f"{os.path.splitext(out)[0]}.rank{r}.jsonl" for r in range(ranks)]:
            if os.path.exists(f):
                os.remove(f)
        written, killed = _killed_at(prefix + predict_command(made, *inputs, "--out", out), out, n // 2, parts)
        t0 = time.time()
        wall, _, _, stdout = run(prefix + predict_command(made, *inputs, "--out", out), ok=(1,))
        lines = _lines(out)
        keys = [r["video"] for r in lines]
        report["runs"].append({
            **entry, "lines_when_killed": written, "processes_killed": len(killed),
            "lines": len(lines), "duplicates": len(keys) - len(set(keys)), "equal_to_whole": lines == whole,
            "lines_differing": sum(a != b for a, b in zip(lines, whole)) + abs(len(lines) - len(whole)),
            "failed_named": all(os.path.basename(r["video"]) in r["error"] for r in lines if not r["ok"]),
            "parts_left": sorted(f for f in os.listdir(folder) if ".rank" in f), "resume_s": round(wall, 1)})
        print(f"  {label}: {report['runs'][-1]}", flush=True)
    return report


# ---- the report ------------------------------------------------------------------------------

def goals(report):
    model = report["model_only"]["videos_per_hour"]
    lines, met = [], {}
    for c in report["collection"]:
        share = c["videos_per_hour"] / model
        bound = report["model_only"]["model_cpu_s_per_video"] / (
            report["model_only"]["model_cpu_s_per_video"] + report["model_only"]["decode_cpu_s_per_video"][c["layout"]])
        met[f"hidden_{c['layout']}"] = share >= 0.85
        lines.append(f"- decoding hidden, {c['layout']}: {share:.2f} of the model-only rate (goal >= 0.85; "
                     f"the CPU bound model / (model + decoding) here: {bound:.2f}): "
                     f"{'met' if share >= 0.85 else 'missed'}")
    if report.get("loop"):
        best = max(c["videos_per_hour"] for c in report["collection"] if c["layout"] == "mp4") \
            if any(c["layout"] == "mp4" for c in report["collection"]) else None
        if best:
            ratio = best / report["loop"]["videos_per_hour"]
            met["against_loop"] = ratio >= 3
            lines.append(f"- against one cten-predict per video (mp4): {ratio:.1f}x (goal >= 3x): "
                         f"{'met' if ratio >= 3 else 'missed'}")
    mem = sorted(report.get("memory", []), key=lambda m: m["videos"])
    if len(mem) >= 2:
        growth = mem[-1]["peak_rss_mb"] / mem[0]["peak_rss_mb"] - 1
        met["memory_flat"] = abs(growth) <= 0.05
        lines.append(f"- memory: peak RSS after {mem[-1]['videos']} videos {mem[-1]['peak_rss_mb']} MB, after "
                     f"{mem[0]['videos']} {mem[0]['peak_rss_mb']} MB: {100 * growth:+.1f} % (goal within 5 %): "
                     f"{'met' if abs(growth) <= 0.05 else 'missed'}")
    return lines, met


def markdown(report):
    m = report["model_only"]
    out = [f"# cten-predict over a collection ({report['mode']})", "",
           f"Machine: {report['machine']['cpu']}, {report['machine']['cpus']} CPUs. Model: ve8.yaml's CTEN "
           f"(R3D-101, T = L = 16, S = 112, fp32). Videos: {SECONDS} s at {FPS} fps, {WIDTH}x{HEIGHT} H.264 + AAC "
           f"(mp4), or its frame folder at height 240 + mp3 (folder).", "",
           "| run | videos | videos/hour | s/video | peak RSS MB | CPU s/video |", "|---|---|---|---|---|---|",
           f"| model only (inputs in memory) | 4 | "
           f"{m['videos_per_hour']} | {m['seconds_per_video']} | {m['peak_rss_mb']} | {m['model_cpu_s_per_video']} |"]
    for c in report["collection"]:
        out.append(f"| collection, {c['layout']}, {c['workers']} workers (nice {c['nice']}), batch {c['batch']} | "
                   f"{c['videos']} | {c['videos_per_hour']} | {c['seconds_per_video']} | {c['peak_rss_mb']} | "
                   f"{c['cpu_s_per_video']} |")
    if report.get("loop"):
        lp = report["loop"]
        out.append(f"| one cten-predict per video (mp4) | {lp['videos']} | {lp['videos_per_hour']} | "
                   f"{lp['seconds_per_call']} | {lp['peak_rss_mb']} | - |")
    for mm in report.get("memory", []):
        out.append(f"| memory: collection, folder | {mm['videos']} | {mm['videos_per_hour']} | "
                   f"{mm['seconds_per_video']} | {mm['peak_rss_mb']} | {mm['cpu_s_per_video']} |")
    out += ["", f"Decoding one video's evaluation sample, CPU s (in one process): "
                + ", ".join(f"{k} {v}" for k, v in m["decode_cpu_s_per_video"].items())
                + f"; the model's call: {m['model_cpu_s_per_video']} CPU s in {m['seconds_per_video']} s.", "",
            "Collection: its own rate over the videos (start-up excluded; the first call's program build "
            "included). CPU s/video of a command: all its processes, start-up included, over the videos.", "",
            "## Goals", ""] + goals(report)[0]
    return "\n".join(out) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=int, default=50)
    p.add_argument("--loop", type=int, default=10, help="videos predicted one cten-predict call each (0: none)")
    p.add_argument("--memory", default="20,200", help="numbers of videos whose peak RSS is compared ('': none)")
    p.add_argument("--layouts", default="folder,mp4")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--nice", type=int, default=10)
    p.add_argument("--cache", default="/tmp/cten_bench_predict")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "predict"))
    p.add_argument("--name", default="bench_predict")
    p.add_argument("--quick", action="store_true", help="8 videos, a loop of 2, memory 4 against 16")
    p.add_argument("--resume-check", type=int, metavar="N",
                   help="only: N videos (3 damaged) killed with kill -9 halfway and run again, in one process "
                        "and under mpirun, against an uninterrupted run")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--resume-runs", default="one,mpi", help="which of the resume check's runs (one, mpi)")
    p.add_argument("--measure", choices=("model",), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    cache = os.path.abspath(a.cache)
    if a.measure == "model":                      # the worker of the model-only measure
        print("RESULT " + json.dumps(model_only(cache, prepare(cache))))
        return 0
    if a.quick:
        a.videos, a.loop, a.memory = 8, 2, "4,16"
    made = prepare(cache)
    if a.resume_check:
        path = os.path.join(a.out, f"resume_check_{a.resume_check}.json")
        report = {"machine": describe(), **resume_check(cache, made, a.resume_check, a.ranks,
                                                        a.resume_runs.split(","))}
        if os.path.exists(path):            # the other kind of run, from an earlier call, kept
            with open(path) as f:
                kept = [r for r in json.load(f)["runs"] if r["run"] not in {x["run"] for x in report["runs"]}]
            report["runs"] = kept + report["runs"]
        os.makedirs(a.out, exist_ok=True)
        with open(path, "w") as f:
            json.dump(report, f, indent=1)
        print(json.dumps(report, indent=1))
        return 0 if all(r["equal_to_whole"] and r["lines"] == a.resume_check for r in report["runs"]) else 1
    report = {"mode": "quick" if a.quick else "full", "machine": describe(), "settings": vars(a)}
    print("model only ...", flush=True)
    _, _, _, stdout = run([sys.executable, "-m", "benchmarks.bench_predict", "--measure", "model", "--cache", cache])
    report["model_only"] = json.loads(stdout.split("RESULT ", 1)[1])
    report["collection"] = []
    for layout in a.layouts.split(","):
        print(f"collection, {layout}, {a.videos} videos ...", flush=True)
        report["collection"].append(measure_collection(cache, made, layout, a.videos, a.workers, a.batch, a.nice,
                                                       "main"))
    if a.loop:
        print(f"loop of {a.loop} ...", flush=True)
        report["loop"] = measure_loop(cache, made, a.loop)
    report["memory"] = []
    for n in [int(x) for x in a.memory.split(",") if x]:
        print(f"memory, {n} videos ...", flush=True)
        report["memory"].append(measure_collection(cache, made, "folder", n, a.workers, a.batch, a.nice, "memory"))
    report["goals"] = goals(report)[1]
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, a.name + ".json"), "w") as f:
        json.dump(report, f, indent=1)
    text = markdown(report)
    with open(os.path.join(a.out, a.name + ".md"), "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
