"""One training epoch and one prediction on real-length videos, through the commands
a user runs: wall time, the share of the steps' time spent waiting for data, and
peak memory.

    python -m benchmarks.bench_epoch [--cache /tmp/cten_bench_data] [--out benchmarks/results/data]
                                     [--workers 2] [--batch 4] [--layout folder|mp4|store]

It reuses ``benchmarks.bench_data``'s generated set (60-300 s, 360p-720p; made if
missing): 16 training and 4 validation entries cycle over its videos (the frame
folders at height 240 by default, with the cached filterbanks), and trains CTEN
with the reference's T = L = 16 and S = 112 for one epoch at batch 4 with 2 loader
processes (``python -m cten_jt.train``), with a depth-10 visual backbone so that the
CPU's compute does not hide the data path (the epoch's ``data_wait_fraction`` is
the figure; the issue's target is below 0.10 once the first batch is ready).
Then ``python -m cten_jt.predict`` on the 300 s video (its mp4), with its peak RSS.
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_set(cache, layout, n_train=16, n_val=4):
    """An annotation JSON whose entries cycle over the generated videos (symlinks)."""
    from benchmarks.bench_data import FULL_SET, generate, paths
    generate(cache, FULL_SET)
    root = os.path.join(cache, f"epoch_{layout}")
    database, labels = {}, sorted({s.label for s in FULL_SET})
    for k in range(n_train + n_val):
        spec = FULL_SET[k % len(FULL_SET)]
        p = paths(cache, spec)
        vid = f"{spec.video_id}_{k:02d}"
        source = {"folder": p["folder"], "mp4": p["mp4"], "store": p["store"]}[layout]
        ext = {"folder": "", "mp4": ".mp4", "store": ".frames"}[layout]
        for kind, target, name in (("videos", source, vid + ext), ("fbank", p["fbank"], vid + ".npy")):
            link = os.path.join(root, kind, spec.label, name)
            os.makedirs(os.path.dirname(link), exist_ok=True)
            if not os.path.lexists(link):
                os.symlink(target, link)
        database[vid] = {"subset": "training" if k < n_train else "validation",
                         "annotations": {"label": spec.label}}
    with open(os.path.join(root, "annotations.json"), "w") as f:
        json.dump({"labels": labels, "database": database}, f)
    return root, labels


_PEAK = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
         "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(rc)")


def run(cmd):
    """(seconds, peak RSS MB of the command's largest process, completed process): each
    command under its own small parent, so that one command's peak is not another's."""
    began = time.time()
    proc = subprocess.run([sys.executable, "-c", _PEAK, *cmd], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    peak_kb = int(proc.stderr.strip().splitlines()[-1])
    return time.time() - began, peak_kb / 1024, proc


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", default="/tmp/cten_bench_data")
    p.add_argument("--out", default="benchmarks/results/data")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--layout", choices=("folder", "mp4", "store"), default="folder")
    a = p.parse_args(argv)
    cache = os.path.abspath(os.path.join(a.cache, "full"))
    root, labels = build_set(cache, a.layout)
    run_dir = os.path.join(cache, f"run_{a.layout}")
    settings = {"data.annotation": os.path.join(root, "annotations.json"),
                "data.video_root": os.path.join(root, "videos"), "data.audio_root": os.path.join(root, "fbank"),
                "data.num_workers": a.workers, "model.n_classes": len(labels), "model.visual_depth": 10, "model.audio_embed_size": 512,
                "model.seq_len": 16, "model.audio_n_segments": 16, "model.snippet_duration": 16,
                "model.sample_size": 112, "train.epochs": 1, "train.batch_size": a.batch,
                "train.pretrained_visual": "null"}
    sets = [x for k, v in settings.items() for x in ("--set", f"{k}={v}")]
    config = os.path.join(ROOT, "configs", "ve8.yaml")
    seconds, peak, _ = run([sys.executable, "-m", "cten_jt.train", "--config", config, *sets, "--out", run_dir])
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        record = json.loads(f.read().splitlines()[-1])
    from benchmarks.bench_data import FULL_SET, paths
    longest = max(FULL_SET, key=lambda s: s.seconds)
    weights = [f for f in ("best.safetensors", "best.pkl") if os.path.exists(os.path.join(run_dir, f))][0]
    p_seconds, p_peak, _ = run([sys.executable, "-m", "cten_jt.predict", paths(cache, longest)["mp4"],
                                "--weights", os.path.join(run_dir, weights), "--allow-silence"])
    report = {"layout": a.layout, "workers": a.workers, "batch": a.batch, "train_videos": 16, "val_videos": 4,
              "epoch_wall_s": round(seconds, 1), "train_peak_rss_mb": round(peak),
              "epoch_record": record, "predict_video_s": longest.seconds, "predict_wall_s": round(p_seconds, 1),
              "predict_peak_rss_mb": round(p_peak)}
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, f"bench_epoch_{a.layout}.json"), "w") as f:
        json.dump(report, f, indent=1)
    lines = [f"One epoch on real-length videos ({a.layout} layout + cached filterbanks; 16 training, 4 validation; "
             f"T=L=16, S=112, depth-10 backbone, batch {a.batch}, {a.workers} loader processes)", "",
             "| measure | value |", "|---|---|",
             f"| command wall time (incl. start-up, compile, evaluation) | {seconds:.1f} s |",
             f"| training time of the epoch | {record['train_time_s']} s |",
             f"| waiting for the next batch | {record['data_wait_s']} s |",
             f"| reading the erased views | {record['view_read_s']} s |",
             f"| data_wait_fraction (target < 0.10) | {record['data_wait_fraction']} |",
             f"| peak RSS, training (largest process) | {peak:.0f} MB |",
             f"| predict a {longest.seconds} s video: wall time | {p_seconds:.1f} s |",
             f"| predict: peak RSS | {p_peak:.0f} MB |"]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(a.out, f"bench_epoch_{a.layout}.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
