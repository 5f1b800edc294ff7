"""Train CTEN in Jittor and in PyTorch from the same initial weights on the same
data and tabulate the curves.

    python -m benchmarks.compare_training [--config configs/synthetic.yaml] [--epochs 10]
                                          [--out benchmarks/results/training_synthetic]

Each framework trains in its own process (same config, seed, data order,
sampling, erasing and initial weights: cten_common.init).  Writes
{out}/jittor/, {out}/torch/ (run folders), {out}.json and {out}.md.
"""
import argparse
import json
import os
import platform
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(module, config, out, epochs, extra):
    cmd = [sys.executable, "-m", module, "--config", config, "--out", out,
           "--set", f"train.epochs={epochs}", *sum((["--set", s] for s in extra), [])]
    subprocess.run(cmd, cwd=ROOT, check=True)
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "synthetic.yaml"))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "training_synthetic"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    a = p.parse_args(argv)
    curves = {"jittor": _run("cten_jt.train", a.config, os.path.join(a.out, "jittor"), a.epochs, a.set),
              "torch": _run("cten_torch_ref.train", a.config, os.path.join(a.out, "torch"), a.epochs, a.set)}
    rows = ["| epoch | Jittor loss | PyTorch loss | Jittor val acc | PyTorch val acc | Jittor mAP | PyTorch mAP | Jittor s | PyTorch s |",
            "|---|---|---|---|---|---|---|---|---|"]
    for j, t in zip(curves["jittor"], curves["torch"]):
        rows.append(f"| {j['epoch']} | {j['loss']:.4f} | {t['loss']:.4f} | {j['val_accuracy']:.3f} | "
                    f"{t['val_accuracy']:.3f} | {j['val_mAP'] or 0:.3f} | {t['val_mAP'] or 0:.3f} | "
                    f"{j['time_s']:.1f} | {t['time_s']:.1f} |")
    table = "\n".join(rows)
    print(table)
    result = {"config": a.config, "epochs": a.epochs, "overrides": a.set, "curves": curves,
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "python": platform.python_version()}}
    with open(a.out + ".json", "w") as f:
        json.dump(result, f, indent=1)
    with open(a.out + ".md", "w") as f:
        f.write(f"Training curves, {a.config}, {a.epochs} epochs, {os.cpu_count()} CPU cores\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
