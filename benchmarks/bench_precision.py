"""bf16 against fp32 in each framework, one process per framework, the precisions
alternating inside it (the same load for both halves of each ratio).

    python -m benchmarks.bench_precision [--config configs/bench_cpu.yaml] [--reps 5]
        [--out benchmarks/results/precision_cpu.json]

Jittor: inference, the 3D ResNet alone (every snippet of one sample) and the
training step (three erasing views, the audio branch once, Adam at lr 0), with
``cten_jt.precision.set_precision`` switching between repetitions.  PyTorch:
inference under ``cten_torch_ref.precision`` (autocast plus the policy).
Medians over ``--reps``; the ratios the mixed-precision goals are stated in
(docs/precision.md, docs/speed.md).  Prints a table and writes JSON.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from benchmarks.common import describe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRECISIONS = ("fp32", "bf16")


def _jittor(config, reps):
    import cten_jt  # noqa: F401  (settings first)
    import jittor as jt
    from benchmarks.framework_worker import make_batch
    from cten_common.erasing import ClipViews
    from cten_common.step import ErasingOptions
    from cten_jt import engine
    from cten_jt.models import build_model
    from cten_jt.optim import Adam
    from cten_jt.precision import set_precision

    m = config["model"]
    model = build_model(m, init_seed=0)
    batch = make_batch(config, 1)
    on_device = {k: jt.array(v) for k, v in batch.items() if k != "clip"}
    on_device["n_frames"] = batch["n_frames"]
    reader = ClipViews(batch["clip"])
    optimizer = Adam(model.parameters(), lr=0.0)
    snippets = on_device["visual"].reshape((-1,) + tuple(on_device["visual"].shape[2:]))

    def inference():
        model.eval()
        with jt.no_grad():
            model(on_device["visual"], on_device["audio"])[0].sync()
        jt.sync_all(True)

    def backbone():
        model.eval()
        with jt.no_grad():
            model.backbone_features(snippets).sync()
        jt.sync_all(True)

    def train_step():
        model.train()
        engine.erasing_step(model, optimizer, on_device, np.random.default_rng(0), reader=reader,
                            options=ErasingOptions(audio_once=True))
        jt.sync_all(True)
    return _alternate({"inference": inference, "backbone": backbone, "train_step": train_step},
                      lambda p: set_precision(model, p), reps)


def _torch(config, reps):
    import torch
    from benchmarks.framework_worker import make_batch
    from cten_torch_ref.models import build_model
    from cten_torch_ref.precision import set_precision

    model = build_model(config["model"], init_seed=0).eval()
    batch = make_batch(config, 1)
    visual, audio = torch.from_numpy(batch["visual"]), torch.from_numpy(batch["audio"])

    def inference():
        with torch.no_grad():
            model(visual, audio)
    return _alternate({"inference": inference}, lambda p: set_precision(model, p), reps)


def _alternate(measures, set_precision, reps):
    """``{measure: {precision: [seconds]}}``: a warm-up of each, then ``reps`` rounds, the
    precisions alternating within each round."""
    for p in PRECISIONS:
        set_precision(p)
        for fn in measures.values():
            fn()
    times = {name: {p: [] for p in PRECISIONS} for name in measures}
    for _ in range(reps):
        for name, fn in measures.items():
            for p in PRECISIONS:
                set_precision(p)
                began = time.perf_counter()
                fn()
                times[name][p].append(time.perf_counter() - began)
    return times


def main(argv=None):
    p = argparse.ArgumentParser(prog="cten-bench precision", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "bench_cpu.yaml"))
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "precision_cpu.json"))
    p.add_argument("--framework", choices=("jittor", "torch"), help=argparse.SUPPRESS)   # the worker's side
    a = p.parse_args(argv)
    from cten_common.config import load_run_config
    config = load_run_config(a.config).to_dict()
    if a.framework:
        print(json.dumps((_jittor if a.framework == "jittor" else _torch)(config, a.reps)))
        return 0
    result = {"config": a.config, "reps": a.reps, "machine": describe(), "loadavg_start": os.getloadavg(),
              "frameworks": {}}
    for framework in ("jittor", "torch"):
        out = subprocess.run([sys.executable, "-m", "benchmarks.bench_precision", "--config", a.config,
                              "--reps", str(a.reps), "--framework", framework],
                             cwd=ROOT, check=True, capture_output=True, text=True).stdout
        result["frameworks"][framework] = json.loads(out.strip().splitlines()[-1])
    result["loadavg_end"] = os.getloadavg()
    lines = [f"bf16 against fp32, batch 1, {a.config}; medians of {a.reps}; load {result['loadavg_start'][0]:.1f}"
             f" -> {result['loadavg_end'][0]:.1f}; bf16 units: {result['machine'].get('bf16_units')}", "",
             "| framework | measure | fp32 (s) | bf16 (s) | bf16/fp32 |", "|---|---|---:|---:|---:|"]
    medians = {}
    for framework, measures in result["frameworks"].items():
        for name, by_p in measures.items():
            med = {q: float(np.median(v)) for q, v in by_p.items()}
            medians[(framework, name)] = med
            lines.append(f"| {framework} | {name} | {med['fp32']:.3f} | {med['bf16']:.3f} | "
                         f"{med['bf16'] / med['fp32']:.2f} |")
    j, t = medians[("jittor", "inference")], medians[("torch", "inference")]
    result["ratios"] = {"jittor bf16/fp32 inference": j["bf16"] / j["fp32"],
                        "jittor bf16/fp32 train_step": medians[("jittor", "train_step")]["bf16"]
                        / medians[("jittor", "train_step")]["fp32"],
                        "jittor bf16 / torch bf16 inference": j["bf16"] / t["bf16"],
                        "jittor fp32 / torch fp32 inference": j["fp32"] / t["fp32"]}
    lines += ["", "| ratio | value |", "|---|---:|"] + [f"| {k} | {v:.2f} |" for k, v in result["ratios"].items()]
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.splitext(a.out)[0] + ".md", "w") as f:
        f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
