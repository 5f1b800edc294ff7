"""Feature-bank training against normal training, Jittor, same seeds.

    python -m benchmarks.compare_bank [--config configs/synthetic.yaml] [--epochs 10]
        [--stride 1] [--variants eval,center,center+flip] [--device cpu|cuda]
        [--set key=value ...] --out benchmarks/results/bank_synthetic.json

Trains the configuration twice from the same seed: decoding videos and running
the frozen backbone on three views every step (normal), and from a feature
bank built first (``cten_jt.extract_features``, its time reported apart).
Reports the median training time per epoch (epoch 2 on, so that compilation is
not counted; evaluation excluded), their ratio, and the final validation
accuracy and detection mAP of both; writes JSON and a markdown table.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.common import describe, ensure_synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(cmd, device):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="") if device == "cpu" else None
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, env=env)


def _train(config, out, epochs, overrides, device):
    cmd = [sys.executable, "-m", "cten_jt.train", "--config", config, "--out", out, "--set", f"train.epochs={epochs}",
           "--set", f"train.device={device}"]
    for s in overrides:
        cmd += ["--set", s]
    _run(cmd, device)
    with open(os.path.join(out, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    times = [r["train_time_s"] for r in records[1:]] or [records[0]["train_time_s"]]
    last = records[-1]
    return {"epoch_s": statistics.median(times), "epoch_times_s": [r["train_time_s"] for r in records],
            "val_accuracy": last["val_accuracy"], "val_mAP": last["val_mAP"],
            "bank_exact_fraction": last.get("bank_exact_fraction")}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "synthetic.yaml"))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--stride", type=int, default=1)
    p.add_argument("--variants", default="eval,center,center+flip")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    ensure_synthetic(a.config)
    with tempfile.TemporaryDirectory() as tmp:
        bank = os.path.join(tmp, "bank")
        began = time.time()
        cmd = [sys.executable, "-m", "cten_jt.extract_features", "--config", a.config, "--out", bank,
               "--stride", str(a.stride), "--variants", a.variants, "--eval-snippets",
               "--set", f"train.device={a.device}"]
        for s in a.set:
            cmd += ["--set", s]
        _run(cmd, a.device)
        extract_s = time.time() - began
        print(f"bank built in {extract_s:.1f} s", flush=True)
        normal = _train(a.config, os.path.join(tmp, "normal"), a.epochs, a.set, a.device)
        print(f"normal: {normal['epoch_s']:.2f} s per epoch", flush=True)
        banked = _train(a.config, os.path.join(tmp, "banked"), a.epochs, a.set + [f"train.features={bank}"],
                        a.device)
        print(f"banked: {banked['epoch_s']:.2f} s per epoch", flush=True)
    result = {"config": a.config, "overrides": a.set, "epochs": a.epochs, "stride": a.stride,
              "variants": a.variants.split(","), "device": a.device, "machine": describe(),
              "extract_s": extract_s,
              "normal": normal, "banked": banked, "speedup": normal["epoch_s"] / banked["epoch_s"]}
    md = "\n".join([
        f"CTEN (Jittor, {a.device}), {a.config} {' '.join(a.set)}: {a.epochs} epochs from the same seed; "
        f"bank stride {a.stride}, variants {a.variants}, fp16, built in {extract_s:.1f} s",
        "",
        "| training | epoch (s) | final val accuracy | final val mAP | exact snippets |",
        "|---|---|---|---|---|",
        f"| normal (decode + backbone, 3 views) | {normal['epoch_s']:.2f} | {normal['val_accuracy']:.3f} | "
        f"{normal['val_mAP'] if normal['val_mAP'] is None else round(normal['val_mAP'], 3)} | all |",
        f"| feature bank | {banked['epoch_s']:.2f} | {banked['val_accuracy']:.3f} | "
        f"{banked['val_mAP'] if banked['val_mAP'] is None else round(banked['val_mAP'], 3)} | "
        f"{banked['bank_exact_fraction']:.3f} |",
        "",
        f"Epoch time: median of epochs 2-{a.epochs}, evaluation excluded. Speed-up {result['speedup']:.1f}x.",
        f"Machine: {json.dumps(result['machine'])}", ""])
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.splitext(a.out)[0] + ".md", "w") as f:
        f.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
