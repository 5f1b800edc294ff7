"""CTEN in Jittor against the PyTorch reference: speed and memory, one table.

    python -m benchmarks.compare_frameworks --config CONFIG [--device cpu|cuda] [--batch N]
        [--iters K] [--repeats R] [--epoch-config configs/synthetic.yaml | --no-epoch]
        --out benchmarks/results/NAME.json

Both frameworks build CTEN from CONFIG with the same initial weights
(cten_common.init) and get the same inputs.  Each measurement runs in a fresh
process per framework (benchmarks/framework_worker.py), R times, the two
frameworks alternating (J,T,T,J,...) so that machine noise hits both; every
process warms up (Jittor compiles its kernels) before K timed iterations, each
closed by a device synchronisation.  Reported: medians over all timed
iterations with their min-max, the ratio Jittor/PyTorch, and the seed's
figures beside ours.

* forward, train mode: the original view's forward with the graph recorded
  (the seed's "average forward time");
* training step: the erasing step, three views, backward, Adam;
* inference: eval-mode forward without a graph;
* peak memory: CUDA, each framework's allocator peak; CPU, the peak resident
  set of the framework's own process (median over the R processes);
* epoch: a training epoch on the synthetic set (``--epoch-config``), the second
  of two so that Jittor's compilation is not counted, evaluation excluded;
  and Jittor's epoch from a feature bank of that set (``--no-bank``: not), its
  extraction not counted, beside PyTorch's normal epoch.

Writes NAME.json, NAME.md (the table) and NAME.png (bar chart).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

from benchmarks.common import describe, ensure_synthetic
from cten_common.run_config import load_run_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAMEWORKS = ("jittor", "torch")
TRAINERS = {"jittor": "cten_jt.train", "torch": "cten_torch_ref.train"}
MEASURES = {"forward_train": "forward, train mode (s)", "train_step": "training step, 3 views (s)",
            "inference": "inference forward (s)"}
SEED = {  # the seed README's figures (GPU, the reference's batch of 32): PyTorch, first Jittor port
    "forward_train": (0.22, 0.13), "memory_mb": (12380, 15673), "epoch_s": (172, 468)}


def _worker(framework, a, tmp, rep):
    out = os.path.join(tmp, f"{framework}_{rep}.json")
    cmd = [sys.executable, "-m", "benchmarks.framework_worker", "--framework", framework, "--config", a.config,
           "--device", a.device, "--iters", str(a.iters), "--warmup", str(a.warmup), "--out", out]
    if a.batch:
        cmd += ["--batch", str(a.batch)]
    for s in a.set:
        cmd += ["--set", s]
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    with open(out) as f:
        return json.load(f)


def _epoch(framework, config, tmp, rep, device, bank=None):
    out = os.path.join(tmp, f"epoch_{framework}_{rep}{'_bank' if bank else ''}")
    cmd = [sys.executable, "-m", TRAINERS[framework], "--config", config, "--out", out, "--set", "train.epochs=2"]
    if bank:
        cmd += ["--set", f"train.features={bank}"]
    env = dict(os.environ)
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, env=env)
    with open(os.path.join(out, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return records[-1]["train_time_s"]


def _bank(config, tmp, device):
    """A feature bank of the epoch configuration (stride 1, eval/centre/flipped centre)."""
    out = os.path.join(tmp, "bank")
    cmd = [sys.executable, "-m", "cten_jt.extract_features", "--config", config, "--out", out,
           "--variants", "eval,center,center+flip", "--eval-snippets", "--set", f"train.device={device}"]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="") if device == "cpu" else None
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, env=env)
    return out


def _stats(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarise(runs, epochs, bank_epochs=None):
    """{measure: {framework: stats}} from the workers' results."""
    table = {}
    for measure in MEASURES:
        table[measure] = {fw: _stats([t for r in runs[fw] for t in r["times"][measure]]) for fw in FRAMEWORKS}
    key = "gpu_peak_mb" if runs["jittor"][0].get("device") == "cuda" else "peak_rss_mb"
    table["memory_mb"] = {fw: _stats([r[key] for r in runs[fw] if r.get(key) is not None] or [float("nan")])
                          for fw in FRAMEWORKS}
    if epochs:
        table["epoch_s"] = {fw: _stats(epochs[fw]) for fw in FRAMEWORKS}
    if bank_epochs:       # Jittor from a feature bank, against PyTorch's normal epoch
        table["epoch_bank_s"] = {"torch": table["epoch_s"]["torch"], "jittor": _stats(bank_epochs)}
    return table


def render(table, meta):
    labels = {**MEASURES, "memory_mb": "peak memory (MB)" + (" GPU" if meta["device"] == "cuda" else ", RSS"),
              "epoch_s": "epoch, synthetic set (s)",
              "epoch_bank_s": "epoch, synthetic set, Jittor from a feature bank (s)"}
    lines = [f"CTEN, Jittor vs PyTorch, {meta['device']}: {meta['description']}", "",
             "| measure | PyTorch | Jittor | Jittor/PyTorch | seed: PyTorch | seed: first Jittor port |",
             "|---|---|---|---|---|---|"]
    for measure, row in table.items():
        t, j = row["torch"], row["jittor"]
        seed = SEED.get(measure, ("", ""))
        fmt = (lambda s: f"{s['median']:.0f} ({s['min']:.0f}-{s['max']:.0f})") if measure == "memory_mb" else \
            (lambda s: f"{s['median']:.3f} ({s['min']:.3f}-{s['max']:.3f})")
        lines.append(f"| {labels[measure]} | {fmt(t)} | {fmt(j)} | {j['median'] / t['median']:.2f} | "
                     f"{seed[0]} | {seed[1]} |")
    lines += ["", "Medians with min-max; seed figures are the seed README's (GPU, batch 32), for reference."]
    return "\n".join(lines)


def plot(table, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(table)
    ratios = [table[m]["jittor"]["median"] / table[m]["torch"]["median"] for m in names]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    colours = ["tab:green" if r <= 0.8 else "tab:orange" if r <= 1 else "tab:red" for r in ratios]
    ax.barh(names, ratios, color=colours)
    ax.axvline(1.0, color="k", lw=1)
    ax.axvline(0.8, color="gray", lw=1, ls="--")
    for i, r in enumerate(ratios):
        ax.text(r, i, f" {r:.2f}", va="center")
    ax.set_xlabel("Jittor / PyTorch (lower is better for Jittor)")
    ax.set_title("\n".join(textwrap.wrap(title, 90)), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.compare_frameworks", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--batch", type=int, default=None, help="default: the config's train.batch_size")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="processes per framework, alternating")
    p.add_argument("--epoch-config", default=os.path.join(ROOT, "configs", "synthetic.yaml"))
    p.add_argument("--no-epoch", action="store_true")
    p.add_argument("--no-bank", action="store_true", help="no feature-bank epoch row")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", required=True, help="NAME.json; NAME.md and NAME.png go beside it")
    a = p.parse_args(argv)
    runs = {fw: [] for fw in FRAMEWORKS}
    epochs = {fw: [] for fw in FRAMEWORKS} if not a.no_epoch else None
    bank_epochs = [] if epochs is not None and not a.no_bank else None
    if epochs is not None:
        ensure_synthetic(a.epoch_config)
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(a.repeats):
            order = FRAMEWORKS if rep % 2 == 0 else FRAMEWORKS[::-1]
            for fw in order:
                print(f"repeat {rep + 1}/{a.repeats}: {fw} ...", flush=True)
                runs[fw].append(_worker(fw, a, tmp, rep))
        if epochs is not None:
            for rep in range(max(1, a.repeats // 2)):
                for fw in (FRAMEWORKS if rep % 2 == 0 else FRAMEWORKS[::-1]):
                    print(f"epoch {rep + 1}: {fw} ...", flush=True)
                    epochs[fw].append(_epoch(fw, a.epoch_config, tmp, rep, a.device))
            if bank_epochs is not None:
                print("feature bank, then an epoch from it: jittor ...", flush=True)
                bank = _bank(a.epoch_config, tmp, a.device)
                bank_epochs += [_epoch("jittor", a.epoch_config, tmp, rep, a.device, bank)
                                for rep in range(max(1, a.repeats // 2))]
    m = runs["jittor"][0]["model"]
    description = (f"batch {runs['jittor'][0]['batch']}, T={m['seq_len']} segments of {m['snippet_duration']}x"
                   f"{m['sample_size']}x{m['sample_size']}, audio {100 * m['audio_n_segments']}x128, "
                   f"3D ResNet-{m['visual_depth']}, audio {m['audio_arch']}; {a.repeats} processes x {a.iters} "
                   f"iterations per framework; training step: "
                   + ("the audio branch once for the three views (train.audio_once), in both" if
                      load_run_config(a.config, a.set)["train"]["audio_once"] else
                      "the audio branch three times per step, as the reference, in both") + ", fp32")
    meta = {"device": a.device, "description": description, "config": a.config, "overrides": a.set,
            "machine": describe()}
    table = summarise(runs, epochs, bank_epochs)
    text = render(table, meta)
    print(text)
    base = os.path.splitext(a.out)[0]
    os.makedirs(os.path.dirname(os.path.abspath(base)), exist_ok=True)
    with open(base + ".json", "w") as f:
        json.dump({**meta, "table": table, "seed": SEED, "runs": runs, "epochs": epochs,
                   "bank_epochs": bank_epochs}, f, indent=1)
    with open(base + ".md", "w") as f:
        f.write(text + f"\n\nMachine: {json.dumps(meta['machine'])}\n")
    plot(table, base + ".png", f"{a.device}: {description}")
    print(f"wrote {base}.json, .md, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
