"""CTEN in Jittor against the PyTorch reference: speed and memory, one table.

    python -m benchmarks.compare_frameworks --config CONFIG [--device cpu|cuda] [--batch N]
        [--iters K] [--repeats R] [--epoch-config configs/synthetic.yaml | --no-epoch]
        --out benchmarks/results/NAME.json

Both frameworks build CTEN from CONFIG with the same initial weights
(cten_common.init) and get the same inputs, each in its own process
(benchmarks/framework_worker.py).  By default the two processes are kept alive
side by side and take turns, one iteration at a time: for each measure both
warm up (Jittor compiles its kernels), then K rounds each time one iteration
of Jittor and one of PyTorch, back to back, the order swapped every round
(J,P, P,J, ...), each iteration closed by a device synchronisation.  A slow
spell of a shared machine (on the 2-core CPUs this was measured on, the same
code's times wander by 10-25 % over tens of seconds) then lands on both
frameworks of a round, and the ratio of the round's two times keeps the
comparison.  R such pairs of processes run one after the other.  ``--separate``
instead runs each framework's process alone, R times, alternating (J,P,P,J).
Reported: medians over all timed iterations with their min-max; Jittor/PyTorch
as the median of the rounds' paired ratios with their range (``--separate``:
the ratio of the medians), and the ratio of the minima; the seed's figures
beside ours.

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
import time

from benchmarks.common import describe, ensure_synthetic, exported_onnx, interleaved, reuse_or_run, worker_folder
from cten_common.config import load_run_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAMEWORKS = ("jittor", "torch")
RUNTIMES = ("openvino", "onnxruntime")       # ONNX runtimes (cten_deploy) beside them: inference only
RUNTIME_NAMES = {"openvino": "OpenVINO", "onnxruntime": "ONNX Runtime"}
RUNTIME_MEASURES = ("inference", "backbone_inference")
TRAINERS = {"jittor": "cten_jt.train", "torch": "cten_torch_ref.train"}
MEASURES = {"forward_train": "forward, train mode (s)", "train_step": "training step, 3 views (s)",
            "inference": "inference forward (s)", "backbone_inference": "3D ResNet alone, inference (s)",
            "conv3d_probe": "peak probe: conv3d 3x3x3 256->256, unpadded (s)"}
SEED = {  # the seed README's figures (GPU, the reference's batch of 32): PyTorch, first Jittor port
    "forward_train": (0.22, 0.13), "memory_mb": (12380, 15673), "epoch_s": (172, 468)}


def _worker(framework, a, tmp, rep):
    out = os.path.join(tmp, f"{framework}_{rep}.json")
    return reuse_or_run(out, lambda: subprocess.run(_worker_command(framework, a, out), cwd=ROOT, check=True,
                                                    stdout=subprocess.DEVNULL))


def _worker_command(framework, a, out):
    cmd = [sys.executable, "-m", "benchmarks.framework_worker", "--framework", framework, "--config", a.config,
           "--device", a.device, "--iters", str(a.iters), "--warmup", str(a.warmup), "--out", out]
    if a.batch:
        cmd += ["--batch", str(a.batch)]
    for s in a.set + [f"train.precision={a.precision}"]:
        cmd += ["--set", s]
    return cmd


def _interleaved(a, tmp, rep, onnx=None):
    """One process pair (``benchmarks.common.interleaved``), and a worker per ONNX runtime
    beside them where ``onnx`` (``{"model": path, "backbone": path}``) is given: ``{worker:
    result}``."""
    names = FRAMEWORKS + (tuple(a.runtimes) if onnx else ())
    outs = {fw: os.path.join(tmp, f"{fw}_{rep}.json") for fw in names}
    commands = {fw: _worker_command(fw, a, outs[fw]) for fw in FRAMEWORKS}
    for rt in names[len(FRAMEWORKS):]:
        commands[rt] = _worker_command(rt, a, outs[rt]) + ["--onnx", onnx["model"], "--backbone-onnx", onnx["backbone"]]
    return interleaved(commands, outs, MEASURES, a.iters, a.warmup,
                       offers={rt: RUNTIME_MEASURES for rt in names[len(FRAMEWORKS):]})


def available_runtimes():
    """The ONNX runtimes installed here (``pip install -e .[deploy]``), in table order."""
    import importlib.util
    return [rt for rt in RUNTIMES if importlib.util.find_spec(rt) is not None]


def _epoch(framework, config, tmp, rep, device, bank=None, precision="fp32"):
    out = os.path.join(tmp, f"epoch_{framework}_{rep}{'_bank' if bank else ''}")
    cmd = [sys.executable, "-m", TRAINERS[framework], "--config", config, "--out", out, "--set", "train.epochs=2",
           "--set", f"train.precision={precision}"]
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




def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _fmt_load(load):
    return "/".join(f"{v:.1f}" for v in load)


def _probe(a, tmp_probe=None):
    """The peak probe's result: read from --peak-json, or run (--peak), or None."""
    if a.peak_json:
        with open(a.peak_json) as f:
            data = json.load(f)
        return data.get("peak", data)
    if not a.peak:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "peak.json")
        subprocess.run([sys.executable, "-m", "benchmarks.flops", "--peak", "--json", out, "--device", a.device],
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        with open(out) as f:
            return json.load(f)["peak"]


def _stats(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def algorithm(audio_once):
    """The training algorithm both frameworks run, in words (every row states it)."""
    return ("erasing step of 3 views, the audio branch once for the three views (train.audio_once), in both"
            if audio_once else "erasing step of 3 views, the audio branch per view as the reference, in both")


def row_flops(model, batch, audio_once):
    """FLOPs (2 x MACs, ``benchmarks.flops``) of each timed measure's work: ``{measure:
    {"performed", "nominal"}}``; performed = the inside-input taps (what a kernel that
    skips padding computes), nominal = every tap."""
    from benchmarks import flops
    c = flops.count(model, batch)
    step = c["training_step"]
    key = "audio_once" if audio_once else "per_view"
    fwd = {"performed": 2 * c["forward"]["inside"], "nominal": 2 * c["forward"]["nominal"]}
    probe = flops.probe_conv_flops()
    return {"forward_train": fwd, "inference": dict(fwd),
            "train_step": {"performed": 2 * step["inside"][key], "nominal": 2 * step["nominal"][key]},
            "backbone_inference": {"performed": 2 * step["inside"]["Fvis"], "nominal": 2 * step["nominal"]["Fvis"]},
            "conv3d_probe": {"performed": probe, "nominal": probe}}


def peaks(probe, precision):
    """``{framework: GFLOP/s}``, each framework's best probe (GEMM or conv3d) of ``precision``
    (None where it has no such probe), and ``"best"``: the better of the two."""
    out = {}
    for fw, name in (("torch", "PyTorch"), ("jittor", "Jittor")):
        rates = [r["gflops"] for r in (probe or {}).get("rows", [])
                 if r["framework"] == name and r["dtype"] == precision and isinstance(r["gflops"], (int, float))]
        out[fw] = max(rates) if rates else None
    known = [v for v in out.values() if v]
    out["best"] = max(known) if known else None
    return out


def efficiency(flops, seconds, peak_own, peak_best):
    """GFLOP/s = flops / seconds / 1e9 and its fractions of the two peaks (None where unknown)."""
    gflops = flops / seconds / 1e9
    return {"gflops": gflops, "of_own_peak": gflops / peak_own if peak_own else None,
            "of_best_peak": gflops / peak_best if peak_best else None}


def paired_ratios(runs, measure):
    """Jittor/PyTorch of each round of interleaved iterations (iteration i of a Jittor process
    over iteration i of the PyTorch process it ran beside), or None where the runs were not
    interleaved (``--separate``)."""
    if not all(r.get("served") for fw in FRAMEWORKS for r in runs[fw]) or \
            len(runs["jittor"]) != len(runs["torch"]):
        return None
    ratios = []
    for rj, rt in zip(runs["jittor"], runs["torch"]):
        tj, tt = rj["times"][measure], rt["times"][measure]
        if len(tj) != len(tt):
            raise ValueError(f"{measure}: {len(tj)} Jittor iterations against {len(tt)} PyTorch ones in one pair")
        ratios += [j / t for j, t in zip(tj, tt)]
    return ratios


def ratio(row):
    """A timed row's Jittor/PyTorch: the median of the paired ratios where the iterations were
    interleaved, else the ratio of the medians."""
    return row["paired_ratio"]["median"] if "paired_ratio" in row else row["jittor"]["median"] / row["torch"]["median"]


def summarise(runs, epochs, bank_epochs=None, precision="fp32", probe=None):
    """``{measure: row}`` from the workers' results; every row names its ``algorithm`` and
    ``precision`` and holds ``{framework: stats}``; timed rows add the FLOPs of their work
    and, per framework, GFLOP/s and the fraction of the peak (``probe``: a
    ``benchmarks.flops.peak`` result) of the same precision: its own probe's and the
    better framework's."""
    for fw in FRAMEWORKS:
        for r in runs[fw]:
            if r.get("precision", precision) != precision:
                raise ValueError(f"a {fw} run computed in {r['precision']}, the table is {precision}")
    first = runs["jittor"][0]
    audio_once = bool(first.get("audio_once", True))
    algo = algorithm(audio_once)
    counts = row_flops(first["model"], first["batch"], audio_once)
    peak = peaks(probe, precision)
    alongside = {fw: [t for r in runs[fw] for t in r["times"].get("conv3d_probe", [])] for fw in FRAMEWORKS}
    if all(alongside.values()):     # the probe timed with the rest: the peak of the same minutes
        peak = {fw: counts["conv3d_probe"]["performed"] / statistics.median(alongside[fw]) / 1e9
                for fw in FRAMEWORKS}
        peak["best"] = max(peak.values())
        peak["alongside"] = True
    table = {}
    for measure in MEASURES:
        if not all(measure in r["times"] for fw in FRAMEWORKS for r in runs[fw]):
            continue
        row = {"algorithm": algo, "precision": precision, "flops": counts[measure]}
        for fw in FRAMEWORKS:
            st = _stats([t for r in runs[fw] for t in r["times"][measure]])
            st["efficiency"] = efficiency(counts[measure]["performed"], st["median"], peak[fw], peak["best"])
            row[fw] = st
        pairs = paired_ratios(runs, measure)
        if pairs:
            row["paired_ratio"] = _stats(pairs)
        table[measure] = row
    key = "gpu_peak_mb" if first.get("device") == "cuda" else "peak_rss_mb"
    table["memory_mb"] = {"algorithm": algo, "precision": precision,
                          **{fw: _stats([r[key] for r in runs[fw] if r.get(key) is not None] or [float("nan")])
                             for fw in FRAMEWORKS}}
    if epochs:
        table["epoch_s"] = {"algorithm": algo, "precision": precision, **{fw: _stats(epochs[fw]) for fw in FRAMEWORKS}}
    if bank_epochs:       # Jittor from a feature bank, against PyTorch's normal epoch
        table["epoch_bank_s"] = {"algorithm": algo + "; Jittor trains from a feature bank", "precision": precision,
                                 "torch": table["epoch_s"]["torch"], "jittor": _stats(bank_epochs)}
    table["_peak_gflops"] = peak
    return table


def summarise_runtimes(runs, table):
    """``{measure: {runtime: stats}}`` of the runtimes' workers, each with its ``precision``,
    its GFLOP/s and fraction of the best peak (the table's), and ``jittor_over``: Jittor's time
    over the runtime's, the median of the paired ratios (iteration i of the Jittor process
    over iteration i of the runtime's process beside it)."""
    peak = table.get("_peak_gflops") or {}
    out = {}
    for measure in RUNTIME_MEASURES:
        if measure not in table:
            continue
        for rt in [rt for rt in RUNTIMES if runs.get(rt)]:
            times = [t for r in runs[rt] for t in r["times"].get(measure, [])]
            if not times:
                continue
            st = _stats(times)
            st["precision"] = runs[rt][0].get("precision", "fp32")
            st["efficiency"] = efficiency(table[measure]["flops"]["performed"], st["median"], None, peak.get("best"))
            pairs = []
            for rj, rr in zip(runs["jittor"], runs[rt]):
                tj, tr = rj["times"][measure], rr["times"].get(measure, [])
                if rj.get("served") and rr.get("served") and len(tj) == len(tr):
                    pairs += [j / r for j, r in zip(tj, tr)]
            if pairs:
                st["jittor_over"] = _stats(pairs)
            out.setdefault(measure, {})[rt] = st
    return out


def render_runtimes(deploy, table, labels):
    """The runtimes' table (markdown lines), or [] without runtimes."""
    if not deploy:
        return []
    lines = ["", "ONNX runtimes beside them (`cten-export`'s file of the same weights, each runtime in its own "
                 "process, interleaved with the two frameworks; inference only):", "",
             "| measure | runtime | precision | time (s) | Jittor/runtime: median of paired ratios (range) "
             "| GFLOP/s | of best peak |", "|---|---|---|---:|---:|---:|---:|"]
    for measure, per in deploy.items():
        j = table[measure]["jittor"]
        lines.append(f"| {labels[measure]} | Jittor | {table[measure]['precision']} | "
                     f"{j['median']:.3f} ({j['min']:.3f}-{j['max']:.3f}) | 1.00 | {j['efficiency']['gflops']:.1f} "
                     f"| {_pct(j['efficiency']['of_best_peak'])} |")
        for rt, st in per.items():
            over = st.get("jittor_over")
            shown = f"{over['median']:.2f} ({over['min']:.2f}-{over['max']:.2f})" if over else "n/a"
            lines.append(f"| {labels[measure]} | {RUNTIME_NAMES[rt]} | {st['precision']} | {st['median']:.3f} "
                         f"({st['min']:.3f}-{st['max']:.3f}) | {shown} | {st['efficiency']['gflops']:.1f} "
                         f"| {_pct(st['efficiency']['of_best_peak'])} |")
    return lines


def rows(table):
    """The measure rows of a table (not its ``_`` entries)."""
    return {k: v for k, v in table.items() if not k.startswith("_")}


def _gf(x):
    return "n/a" if not x else f"{x:.1f}"


def _pct(x):
    return "n/a" if x is None else f"{100 * x:.0f} %"


def render(table, meta):
    labels = {**MEASURES, "memory_mb": "peak memory (MB)" + (" GPU" if meta["device"] == "cuda" else ", RSS"),
              "epoch_s": "epoch, synthetic set (s)",
              "epoch_bank_s": "epoch, synthetic set, Jittor from a feature bank (s)"}
    lines = [f"CTEN, Jittor vs PyTorch, {meta['device']}: {meta['description']}", "",
             "| measure | precision | PyTorch | Jittor | Jittor/PyTorch | ratio of the minima | seed: PyTorch "
             "| seed: first Jittor port |",
             "|---|---|---|---|---|---|---|---|"]
    body = rows(table)
    for measure, row in body.items():
        t, j = row["torch"], row["jittor"]
        seed = SEED.get(measure, ("", ""))
        fmt = (lambda s: f"{s['median']:.0f} ({s['min']:.0f}-{s['max']:.0f})") if measure == "memory_mb" else \
            (lambda s: f"{s['median']:.3f} ({s['min']:.3f}-{s['max']:.3f})")
        pr = row.get("paired_ratio")
        shown = f"{pr['median']:.2f} ({pr['min']:.2f}-{pr['max']:.2f})" if pr else f"{ratio(row):.2f}"
        lines.append(f"| {labels[measure]} | {row['precision']} | {fmt(t)} | {fmt(j)} | {shown} | "
                     f"{j['min'] / t['min']:.2f} | {seed[0]} | {seed[1]} |")
    algos = sorted({row["algorithm"] for row in body.values()})
    paired = [row["paired_ratio"]["n"] for row in body.values() if "paired_ratio" in row]
    lines += ["", "Medians with min-max; seed figures are the seed README's (GPU, batch 32), for reference."
              + (f" Jittor/PyTorch of the timed rows: the median of {paired[0]} paired ratios with their range, each "
                 "the ratio of one Jittor and one PyTorch iteration timed back to back (the processes side by side, "
                 "taking turns, the order swapped every round); of the other rows, the ratio of the medians."
                 if paired else " Jittor/PyTorch: the ratio of the medians."),
              "Algorithm of every row: " + "; ".join(algos) + "."]
    peak = table.get("_peak_gflops") or {}
    timed_rows = [m for m in body if "flops" in body[m]]
    if timed_rows:
        where = ("the framework's own conv3d probe timed alongside, in the same rounds (the last row above: "
                 "without padding, so every FLOP counted is performed), and the better framework's"
                 if peak.get("alongside") else
                 "the framework's own best probe of the same precision (GEMM or conv3d, `benchmarks.flops --peak`), "
                 "and the better framework's")
        lines += ["", "Arithmetic rate: performed FLOPs (inside-input taps, `benchmarks.flops`) / median time; "
                      f"peak: {where} (PyTorch {_gf(peak.get('torch'))}, Jittor {_gf(peak.get('jittor'))} GFLOP/s).",
                  "",
                  "| measure | precision | GFLOPs performed (nominal) | PyTorch GFLOP/s | of its peak | of best peak "
                  "| Jittor GFLOP/s | of its peak | of best peak |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for m in timed_rows:
            row = body[m]
            te, je = row["torch"]["efficiency"], row["jittor"]["efficiency"]
            lines.append(f"| {labels[m]} | {row['precision']} | {row['flops']['performed'] / 1e9:.1f} "
                         f"({row['flops']['nominal'] / 1e9:.1f}) | {te['gflops']:.1f} | {_pct(te['of_own_peak'])} "
                         f"| {_pct(te['of_best_peak'])} | {je['gflops']:.1f} | {_pct(je['of_own_peak'])} "
                         f"| {_pct(je['of_best_peak'])} |")
    lines += render_runtimes(table.get("_runtimes"), body, labels)
    return "\n".join(lines)


def plot(table, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    table = rows(table)
    names = list(table)
    ratios = [ratio(table[m]) for m in names]
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
    p.add_argument("--repeats", type=int, default=3, help="processes per framework (pairs of processes, "
                   "interleaved; with --separate, one after the other, alternating)")
    p.add_argument("--separate", action="store_true", help="each framework's process runs all its iterations "
                   "alone, the processes alternating (the paired ratios are then not computed)")
    p.add_argument("--epoch-config", default=os.path.join(ROOT, "configs", "synthetic.yaml"))
    p.add_argument("--no-epoch", action="store_true")
    p.add_argument("--no-bank", action="store_true", help="no feature-bank epoch row")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", required=True, help="NAME.json; NAME.md and NAME.png go beside it")
    p.add_argument("--peak-json", help="a `benchmarks.flops --peak --json FILE` result: the peaks the "
                   "GFLOP/s are divided by")
    p.add_argument("--peak", action="store_true", help="run the peak probe (benchmarks.flops --peak) after the "
                   "workers, in its own process")
    p.add_argument("--keep", help="keep the worker files in this folder; files already there are reused "
                   "(a run cut short resumes)")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16", "tf32"), default="fp32",
                   help="what both frameworks compute in (train.precision): Jittor with our layers, PyTorch "
                        "with autocast plus the same policy (docs/precision.md)")
    p.add_argument("--runtimes", default="auto",
                   help="ONNX runtimes timed beside the frameworks (inference): a comma list of "
                        f"{', '.join(RUNTIMES)}, 'auto' (those installed, on the cpu) or 'none'")
    p.add_argument("--note", default="", help="a sentence for the table (e.g. that the machine was shared)")
    a = p.parse_args(argv)
    if a.runtimes == "auto":
        a.runtimes = available_runtimes() if a.device == "cpu" and not a.separate else []
    else:
        a.runtimes = [r for r in a.runtimes.split(",") if r and r != "none"]
        unknown = [r for r in a.runtimes if r not in RUNTIMES]
        if unknown or (a.runtimes and (a.device != "cpu" or a.separate)):
            p.error(f"--runtimes: {unknown or a.runtimes} (known: {RUNTIMES}; on the cpu, interleaved)")
    if a.precision not in ("fp32", "bf16"):
        a.runtimes = []                      # the runtimes compute in fp32 or (OpenVINO) bf16
    started, load0 = _now(), os.getloadavg()
    runs = {fw: [] for fw in FRAMEWORKS + tuple(a.runtimes)}
    epochs = {fw: [] for fw in FRAMEWORKS} if not a.no_epoch else None
    bank_epochs = [] if epochs is not None and not a.no_bank else None
    if epochs is not None:
        ensure_synthetic(a.epoch_config)
    with worker_folder(a.keep) as tmp:
        onnx = exported_onnx(a.config, a.set, tmp) if a.runtimes else None
        for rep in range(a.repeats):
            if a.separate:
                order = FRAMEWORKS if rep % 2 == 0 else FRAMEWORKS[::-1]
                for fw in order:
                    print(f"repeat {rep + 1}/{a.repeats}: {fw} ...", flush=True)
                    runs[fw].append(_worker(fw, a, tmp, rep))
            else:
                print(f"repeat {rep + 1}/{a.repeats}: both frameworks{' and ' + ', '.join(a.runtimes) if a.runtimes else ''}"
                      ", interleaved ...", flush=True)
                for fw, result in _interleaved(a, tmp, rep, onnx).items():
                    runs[fw].append(result)
        if epochs is not None:
            for rep in range(max(1, a.repeats // 2)):
                for fw in (FRAMEWORKS if rep % 2 == 0 else FRAMEWORKS[::-1]):
                    print(f"epoch {rep + 1}: {fw} ...", flush=True)
                    epochs[fw].append(_epoch(fw, a.epoch_config, tmp, rep, a.device, precision=a.precision))
            if bank_epochs is not None:
                print("feature bank, then an epoch from it: jittor ...", flush=True)
                bank = _bank(a.epoch_config, tmp, a.device)
                bank_epochs += [_epoch("jittor", a.epoch_config, tmp, rep, a.device, bank, a.precision)
                                for rep in range(max(1, a.repeats // 2))]
    m = runs["jittor"][0]["model"]
    description = (f"batch {runs['jittor'][0]['batch']}, T={m['seq_len']} segments of {m['snippet_duration']}x"
                   f"{m['sample_size']}x{m['sample_size']}, audio {100 * m['audio_n_segments']}x128, "
                   f"3D ResNet-{m['visual_depth']}, audio {m['audio_arch']}; {a.repeats} processes x {a.iters} "
                   f"iterations per framework, {'one after the other' if a.separate else 'interleaved'}; {algorithm(load_run_config(a.config, a.set).train.audio_once)}"
                   f"; {a.precision}")
    loads = [r["loadavg_start"] for fw in FRAMEWORKS for r in runs[fw] if r.get("loadavg_start")]
    started = min([r["started_utc"] for fw in FRAMEWORKS for r in runs[fw] if r.get("started_utc")] + [started])
    meta = {"device": a.device, "description": description, "config": a.config, "overrides": a.set,
            "precision": a.precision, "machine": describe(), "started_utc": started, "finished_utc": _now(),
            "loadavg_start": load0, "loadavg_end": os.getloadavg(),
            "loadavg_1min_workers": [round(v[0], 2) for v in loads],
            "shared_machine_note": a.note}
    probe = _probe(a, tmp_probe=None)
    table = summarise(runs, epochs, bank_epochs, precision=a.precision, probe=probe)
    if a.runtimes:
        table["_runtimes"] = summarise_runtimes(runs, table)
    text = render(table, meta)
    if probe:
        from benchmarks.flops import peak_markdown
        text += "\n\n" + peak_markdown(probe)
    text += (f"\n\nRun {meta['started_utc']} to {meta['finished_utc']}; load average (1, 5, 15 min) at the start "
             f"{_fmt_load(meta['loadavg_start'])}, at the end {_fmt_load(meta['loadavg_end'])}, 1-min load at "
             f"each worker's start {meta['loadavg_1min_workers']}." + (f" {a.note}" if a.note else ""))
    print(text)
    base = os.path.splitext(a.out)[0]
    os.makedirs(os.path.dirname(os.path.abspath(base)), exist_ok=True)
    with open(base + ".json", "w") as f:
        json.dump({**meta, "table": table, "seed": SEED, "runs": runs, "epochs": epochs,
                   "bank_epochs": bank_epochs, "peak_probe": probe}, f, indent=1)
    with open(base + ".md", "w") as f:
        f.write(text + f"\n\nMachine: {json.dumps(meta['machine'])}\n")
    plot(table, base + ".png", f"{a.device}: {description}")
    print(f"wrote {base}.json, .md, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
