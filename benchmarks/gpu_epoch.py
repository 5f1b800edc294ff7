"""Training epochs through the real data path on real-length videos, on a GPU (or, small,
on the CPU): the frame folders a user has, loader processes, the erased views read
from the folders, fp16's loss scaler carried over a stop and ``--resume``.

    python -m benchmarks.gpu_epoch --out DIR [--device cuda] [--precision fp16]
        [--distinct 12] [--train 96] [--val 8] [--batch 32] [--workers 12] [--depth 101]
        [--frames 16] [--size 112] [--root /tmp/cten_long] [--torch] [--quick]

The set: ``--distinct`` videos made here without ffmpeg (OpenCV writes the JPEGs,
as the reference's ``video2jpg.py`` leaves them: ``{id}/000001.jpg ...`` at height
240, an ``n_frames`` file and no rate), 60 to 180 s long, 107 s on average, each at
its own rate (23.976, 25, 29.97 or 30 fps), with a cached filterbank each
(``[100 per second, 128]``, what ``cten-prepare-dataset --features-out`` writes;
the rate then comes from its length).  ``--train`` and ``--val`` annotation
entries cycle over them (symlinks), so that an epoch has enough batches while the
disk holds only the distinct ones.  ``--quick``: 3 videos of 4 to 8 s at 96 px
(for a CPU check of the plumbing).

Runs, each a separate process as a user runs them:

1. Jittor, ``train.epochs=2``, stopped after its first epoch (``fit(stop_after=1)``,
   what a killed run leaves: the last checkpoint with the loss scaler);
2. ``python -m cten_jt.train --resume RUN``: the second epoch (Jittor's kernels from its
   cache, so this epoch's time is the figure to compare);
3. with ``--torch``: ``python -m cten_torch_ref.train`` for one epoch on the same set.

Reported per run: wall time of the command, the epoch's ``train_time_s``,
``data_wait_s`` (the steps waiting for their next batch), ``view_read_s`` (reading
the erased views' frames), ``data_wait_fraction``, the loss scaler in the last
checkpoint, the validation accuracy, and the process's peak GPU memory (NVML,
sampled every 50 ms; none on the CPU).  Writes DIR/gpu_epoch.json and .md.
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time
from multiprocessing import Pool

import numpy as np

from benchmarks.common import ROOT, describe

RATES = (24000 / 1001, 25.0, 30000 / 1001, 30.0)
SECONDS = (60, 75, 90, 100, 107, 115, 120, 130, 140, 150, 180, 117)       # mean 107
LABELS = ("Anger", "Disgust", "Fear", "Joy", "Sadness", "Surprise", "Anticipation", "Trust")
HEIGHT = 240


def video_specs(distinct, quick=False):
    """(video_id, label, seconds, fps, width, height) of each distinct video."""
    specs = []
    for k in range(distinct):
        seconds = (4 + k % 5) if quick else SECONDS[k % len(SECONDS)]
        height = 96 if quick else HEIGHT
        width = (height * 16 // 9) if k % 2 else (height * 4 // 3)
        specs.append((f"long_{k:03d}", LABELS[k % len(LABELS)], seconds, RATES[k % len(RATES)], width, height))
    return specs


def write_video(args):
    """One frame folder and its cached filterbank; returns the frame count."""
    root, (video_id, label, seconds, fps, width, height), seed = args
    import cv2
    folder = os.path.join(root, "distinct", video_id)
    n = int(round(seconds * fps))
    done = os.path.join(folder, "n_frames")
    if os.path.exists(done):
        return n
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    small = rng.uniform(40, 220, (height // 16 + 1, width // 16 + 1, 3)).astype(np.float32)
    texture = cv2.resize(small, (width * 2, height), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:height, 0:width]
    for i in range(n):
        shift = int(i * 3) % width
        frame = texture[:, shift:shift + width].copy()
        cy, cx = height / 2 + height / 3 * np.sin(i / fps), width / 2 + width / 3 * np.cos(i / (2 * fps))
        frame[(yy - cy) ** 2 + (xx - cx) ** 2 < (height / 8) ** 2] = (30, 30 + (i % 200), 220)
        frame += rng.normal(0, 4, frame.shape).astype(np.float32)
        ok, data = cv2.imencode(".jpg", np.clip(frame, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            raise RuntimeError(f"{folder}: OpenCV could not encode frame {i + 1}")
        with open(os.path.join(folder, f"{i + 1:06d}.jpg"), "wb") as f:
            f.write(data.tobytes())
    fbank = rng.normal(0, 1, (int(round(seconds * 100)), 128)).astype(np.float32)
    np.save(os.path.join(root, "distinct", f"{video_id}.npy"), fbank)
    with open(done, "w") as f:          # last: a folder with n_frames is complete
        f.write(str(n))
    return n


def make_set(root, distinct, n_train, n_val, quick=False, processes=None):
    """The frame folders (made once, reused), and an annotation whose entries cycle over
    them; returns (annotation, video_root, audio_root, labels, the specs, frames made)."""
    specs = video_specs(distinct, quick)
    with Pool(processes or min(distinct, os.cpu_count() or 1)) as pool:
        counts = pool.map(write_video, [(root, spec, k) for k, spec in enumerate(specs)])
    labels = sorted({s[1] for s in specs})
    database = {}
    for k in range(n_train + n_val):
        video_id, label = specs[k % distinct][:2]
        entry = f"{video_id}_{k:03d}"
        for kind, target, name in (("videos", os.path.join(root, "distinct", video_id), entry),
                                   ("fbank", os.path.join(root, "distinct", video_id + ".npy"), entry + ".npy")):
            link = os.path.join(root, kind, label, name)
            os.makedirs(os.path.dirname(link), exist_ok=True)
            if not os.path.lexists(link):
                os.symlink(target, link)
        database[entry] = {"subset": "training" if k < n_train else "validation", "annotations": {"label": label}}
    annotation = os.path.join(root, "annotations.json")
    with open(annotation, "w") as f:
        json.dump({"labels": labels, "database": database}, f)
    return annotation, os.path.join(root, "videos"), os.path.join(root, "fbank"), labels, specs, counts


class GpuMemory:
    """Peak device memory of one process id, sampled through NVML in a thread (None
    without NVML or a GPU)."""

    def __init__(self, pid, interval=0.05):
        self.peak, self.pid, self.interval = None, pid, interval
        try:
            import pynvml
            pynvml.nvmlInit()
            self.nvml, self.handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:            # no NVML library, no GPU: no figure
            self.nvml = None
            return
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                procs = self.nvml.nvmlDeviceGetComputeRunningProcesses(self.handle)
                self.peak = max(self.peak, sum(p.usedGpuMemory or 0 for p in procs if p.pid == self.pid))
            except self.nvml.NVMLError:
                pass
            time.sleep(self.interval)

    def close(self):
        if self.nvml is None:
            return None
        self.stop.set()
        self.thread.join()
        return round(self.peak / 2**20)


def run(cmd, log):
    """Run ``cmd`` from the checkout's root, its output appended to ``log``; returns
    (seconds, peak GPU MB or None, exit status)."""
    began = time.time()
    with open(log, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env=dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")))
        memory = GpuMemory(proc.pid)
        rc = proc.wait()
    return time.time() - began, memory.close(), rc


_FIRST_EPOCH = """
import sys
from cten_common.config import load_run_config
from cten_jt.train import train
config = load_run_config(sys.argv[1], sys.argv[3:])
train(config, sys.argv[2], stop_after=1)
"""


def records(run_dir):
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def last_scaler(run_dir):
    """The loss scaler saved in the run's last checkpoint (None where there is none)."""
    from cten_common.checkpoint_io.run_paths import find_run_checkpoint, read_run_checkpoint
    path = find_run_checkpoint(run_dir, "last")
    return None if path is None else read_run_checkpoint(path).get("loss_scaler")


def summarise(name, seconds, gpu_mb, rc, record):
    keys = ("epoch", "train_time_s", "data_wait_s", "view_read_s", "data_wait_fraction", "loss", "val_accuracy")
    row = {"run": name, "wall_s": round(seconds, 1), "gpu_peak_mb": gpu_mb, "exit": rc}
    row.update({k: (record or {}).get(k) for k in keys})
    return row


def markdown(result):
    a = result["settings"]
    lines = [f"Training epochs through the data path: {a['train']} training and {a['val']} validation entries over "
             f"{a['distinct']} distinct frame folders ({result['frames_mean']:.0f} frames on average, "
             f"{result['seconds_mean']:.0f} s, rates {', '.join(sorted({f'{r:.3f}' for r in result['rates']}))}, "
             f"height {result['height']}), CTEN depth {a['depth']}, {a['frames']} x {a['frames']} x {a['size']} px, "
             f"batch {a['batch']}, {a['workers']} loader processes, {a['precision']} on {a['device']} "
             f"({result['machine'].get('gpu') or result['machine']['cpu']})", "",
             "| run | exit | wall (s) | epoch | epoch train time (s) | waiting for batches (s) | reading erased views (s) "
             "| data_wait_fraction | loss | val acc | peak GPU MB |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["runs"]:
        lines.append("| " + " | ".join(str(r.get(k)) for k in ("run", "exit", "wall_s", "epoch", "train_time_s",
                                                                 "data_wait_s", "view_read_s", "data_wait_fraction",
                                                                 "loss", "val_accuracy", "gpu_peak_mb")) + " |")
    lines += ["", f"fp16 loss scaler in the checkpoint after the stop: {result.get('scaler_after_stop')}; "
                  f"after the resumed epoch: {result.get('scaler_after_resume')}",
              f"metrics.jsonl after the resume: epochs {result.get('epochs_recorded')}"]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--root", default="/tmp/cten_long")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    p.add_argument("--precision", default="fp16")
    p.add_argument("--distinct", type=int, default=12)
    p.add_argument("--train", type=int, default=96)
    p.add_argument("--val", type=int, default=8)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=12)
    p.add_argument("--depth", type=int, default=101)
    p.add_argument("--frames", type=int, default=16, help="segments and frames per snippet (T = L)")
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--torch", action="store_true", help="also one PyTorch epoch on the same set")
    p.add_argument("--quick", action="store_true", help="3 short small videos (a CPU check)")
    a = p.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    log = os.path.join(os.path.abspath(a.out), "gpu_epoch.log")
    began = time.time()
    root = os.path.join(a.root, "quick" if a.quick else "full")
    annotation, video_root, audio_root, labels, specs, counts = make_set(root, a.distinct, a.train, a.val, a.quick)
    made_s = time.time() - began
    print(f"data: {len(specs)} frame folders ({sum(counts)} frames) in {made_s:.1f} s", flush=True)
    settings = {"data.annotation": annotation, "data.video_root": video_root, "data.audio_root": audio_root,
                "data.num_workers": a.workers, "model.n_classes": len(labels), "model.visual_depth": a.depth,
                "model.audio_embed_size": 2048 if a.depth >= 50 else 512, "model.seq_len": a.frames,
                "model.audio_n_segments": a.frames, "model.snippet_duration": a.frames, "model.sample_size": a.size,
                "train.epochs": 2, "train.batch_size": a.batch, "train.pretrained_visual": "null",
                "train.device": a.device, "train.precision": a.precision}
    sets = [f"{k}={v}" for k, v in settings.items()]
    config = os.path.join(ROOT, "configs", "ve8.yaml")
    run_dir = os.path.join(os.path.abspath(a.out), "run_jittor")
    runs = []
    seconds, gpu, rc = run([sys.executable, "-c", _FIRST_EPOCH, config, run_dir, *sets], log)
    first = records(run_dir)
    runs.append(summarise("jittor, epoch 1, then stopped", seconds, gpu, rc, first[-1] if first else None))
    scaler_stop = last_scaler(run_dir) if rc == 0 else None
    seconds, gpu, rc = run([sys.executable, "-m", "cten_jt.train", "--resume", run_dir], log)
    after = records(run_dir)
    runs.append(summarise("jittor --resume, epoch 2", seconds, gpu, rc, after[-1] if len(after) > 1 else None))
    scaler_resume = last_scaler(run_dir) if rc == 0 else None
    if a.torch:
        torch_dir = os.path.join(os.path.abspath(a.out), "run_torch")
        torch_sets = [s for s in sets if not s.startswith("train.epochs=")] + ["train.epochs=1"]
        args = [x for s in torch_sets for x in ("--set", s)]
        seconds, gpu, rc = run([sys.executable, "-m", "cten_torch_ref.train", "--config", config, *args,
                                "--out", torch_dir], log)
        rec = records(torch_dir)
        runs.append(summarise("pytorch, epoch 1", seconds, gpu, rc, rec[-1] if rec else None))
    result = {"settings": vars(a), "machine": describe(), "data_made_s": round(made_s, 1),
              "frames_mean": float(np.mean(counts)), "seconds_mean": float(np.mean([s[2] for s in specs])),
              "rates": [s[3] for s in specs], "height": specs[0][5], "runs": runs,
              "scaler_after_stop": scaler_stop, "scaler_after_resume": scaler_resume,
              "epochs_recorded": [r.get("epoch") for r in after]}
    text = markdown(result)
    print(text)
    with open(os.path.join(a.out, "gpu_epoch.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(a.out, "gpu_epoch.md"), "w") as f:
        f.write(text)
    return 0 if all(r["exit"] == 0 for r in runs) and result["epochs_recorded"] == [1, 2] else 1


if __name__ == "__main__":
    sys.exit(main())
