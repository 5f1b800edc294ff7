"""How CTEN's time and peak memory grow with the segments and the batch, both frameworks.

    cten-bench scaling [--config configs/bench_cpu.yaml] [--segments 4,8,16] [--batches 1,2,4]
        [--points T:B,...] [--measures inference,train_step] [--iters 2] [--warmup 1]
        [--repeats 1] [--set KEY=VALUE] [--out benchmarks/results/scaling_cpu.json]

The grid is two lines through the configuration's shape: the segments
(``model.seq_len`` and ``model.audio_n_segments`` together, T) at the first
batch of ``--batches``, and the batch at the largest T of ``--segments``;
``--points`` gives the points instead.  Each point runs
``benchmarks.framework_worker`` once per framework and repeat, the two
frameworks' processes side by side and taking turns one iteration at a time
(``benchmarks.common.interleaved``; ``--separate``: one process after the
other, alternating); a point reports the median time of each measure, the
median of the paired Jittor/PyTorch ratios (each of two iterations timed back
to back; ``--separate``: the ratio of the medians), and the median of the
measure's own peak RSS (the worker's ``peak_rss_by_measure_mb``: the
process's high-water mark reset before the measure).

For each line, framework and measure the table states the growth: the
exponent k of a least-squares fit of log(value) on log(x) (value ~ x^k), and
the ratio per doubling, 2^k; for memory also the MB added per doubling (the
weights are a constant that keeps memory's exponent below 1).

``--runtimes`` (default: the ONNX runtimes installed, interleaved runs only): at each point
the model with the frameworks' shared weights, exported by cten-export for its T, runs in
OpenVINO and ONNX Runtime too, each in its own worker beside the two frameworks' and
taking its turn in the inference measure; the point reports each runtime's median time and
Jittor's time over it (the median of the paired ratios).

Writes NAME.json, NAME.md and NAME.png (Agg backend).
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

from benchmarks.common import ROOT, describe, exported_onnx, interleaved, reuse_or_run, worker_folder

FRAMEWORKS = ("jittor", "torch")
RUNTIMES = ("openvino", "onnxruntime")       # ONNX runtimes beside them (cten_deploy): inference only
NAMES = {"jittor": "Jittor", "torch": "PyTorch", "openvino": "OpenVINO", "onnxruntime": "ONNX Runtime"}
LABELS = {"inference": "inference", "train_step": "training step, 3 views", "forward_train": "forward, train mode",
          "backbone_inference": "3D ResNet alone, inference"}


def _ints(text):
    return [int(v) for v in text.split(",") if v.strip()]


def grid(segments, batches, points=None):
    """The (T, B) points: ``points`` as given, or the segments at ``batches[0]`` and the batches
    at ``max(segments)``, without repeats, in order."""
    if points:
        out = list(points)
    else:
        out = [(t, batches[0]) for t in segments] + [(max(segments), b) for b in batches]
    seen, unique = set(), []
    for p in out:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return unique


def fit(xs, ys):
    """Least-squares exponent k of ys ~ c * xs^k (log-log), the ratio per doubling 2^k and,
    for the values themselves, the average added per doubling of x; None below two points."""
    pairs = [(x, y) for x, y in zip(xs, ys) if x and y and x > 0 and y > 0]
    if len(pairs) < 2 or len({x for x, _ in pairs}) < 2:
        return None
    lx = [math.log(x) for x, _ in pairs]
    ly = [math.log(y) for _, y in pairs]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    k = sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)
    doublings = math.log2(pairs[-1][0] / pairs[0][0])
    return {"exponent": k, "per_doubling": 2 ** k,
            "added_per_doubling": (pairs[-1][1] - pairs[0][1]) / doublings if doublings else None}


def _worker(framework, config, t, b, a, measures, out):
    return reuse_or_run(out, lambda: subprocess.run(_command(framework, config, t, b, a, measures, out), cwd=ROOT,
                                                    check=True, stdout=subprocess.DEVNULL))


def _command(framework, config, t, b, a, measures, out):
    cmd = [sys.executable, "-m", "benchmarks.framework_worker", "--framework", framework, "--config", config,
           "--batch", str(b), "--iters", str(a.iters), "--warmup", str(a.warmup), "--measures", ",".join(measures),
           "--set", f"model.seq_len={t}", "--set", f"model.audio_n_segments={t}", "--out", out]
    for s in a.set:
        cmd += ["--set", s]
    return cmd


def paired_ratio(results, measure):
    """The median Jittor/PyTorch of iterations timed back to back (``results``: ``{framework:
    [result per repeat]}``, interleaved workers), or None where they were not (``--separate``)."""
    runs = list(zip(results["jittor"], results["torch"]))
    if not runs or not all(r.get("served") for pair in runs for r in pair):
        return None
    ratios = [j / p for rj, rp in runs for j, p in zip(rj["times"].get(measure, []), rp["times"].get(measure, []))]
    return statistics.median(ratios) if ratios else None


def runtime_summary(results, runtime, measure="inference"):
    """A runtime's median time at one point, its precision, and Jittor's time over it: the
    median of the paired ratios (iteration i of the Jittor process over iteration i of the
    runtime's process beside it)."""
    runs = results.get(runtime) or []
    times = [t for r in runs for t in r["times"].get(measure, [])]
    if not times:
        return None
    ratios = [j / r for rj, rr in zip(results["jittor"], runs)
              for j, r in zip(rj["times"].get(measure, []), rr["times"].get(measure, []))]
    return {"time_s": statistics.median(times), "precision": runs[0].get("precision", "fp32"),
            "jittor_over": statistics.median(ratios) if ratios else None}


def point_summary(results, measures):
    """One point of one framework from its workers' results: median time and median peak RSS
    per measure, the median whole-process peak, and the load averages seen."""
    out = {"time_s": {}, "peak_rss_mb": {}, "loadavg_1min": [round(r["loadavg_start"][0], 2) for r in results]}
    for m in measures:
        if not all(m in r["times"] for r in results):       # left out at this point (--skip)
            out["time_s"][m] = out["peak_rss_mb"][m] = None
            continue
        out["time_s"][m] = statistics.median([t for r in results for t in r["times"][m]])
        peaks = [r["peak_rss_by_measure_mb"][m] for r in results if r.get("peak_rss_by_measure_mb", {}).get(m)]
        out["peak_rss_mb"][m] = statistics.median(peaks) if peaks else None
    out["process_peak_rss_mb"] = statistics.median([r["peak_rss_mb"] for r in results])
    out["precision"] = results[0].get("precision", "fp32")
    return out


def growth(points, data, measures, segments_line_batch, batch_line_segments):
    """``{line: {framework: {measure: {"time": fit, "memory": fit}}}}`` for the two lines."""
    lines = {"segments": [(t, b) for t, b in points if b == segments_line_batch],
             "batch": [(t, b) for t, b in points if t == batch_line_segments]}
    out = {}
    for line, pts in lines.items():
        pts = sorted(pts, key=lambda p: p[0] if line == "segments" else p[1])
        xs = [p[0] if line == "segments" else p[1] for p in pts]
        out[line] = {"points": [list(p) for p in pts], "x": xs}
        for fw in FRAMEWORKS:
            out[line][fw] = {}
            for m in measures:
                got = [data[f"{t}x{b}"][fw] for t, b in pts if f"{t}x{b}" in data and fw in data[f"{t}x{b}"]]
                out[line][fw][m] = {"time": fit(xs, [g["time_s"][m] for g in got]),
                                    "memory": fit(xs, [g["peak_rss_mb"][m] for g in got])}
    return out


def _f(v, spec):
    return "n/a" if v is None else format(v, spec)


def render(result):
    measures, pts, data = result["measures"], [tuple(p) for p in result["points"]], result["data"]
    lines = [f"CTEN scaling, {result['description']}", "",
             "| T (segments) | batch | measure | precision | PyTorch s | Jittor s | J/P time | PyTorch MB | "
             "Jittor MB | J/P memory |", "|---:|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for t, b in pts:
        d = data[f"{t}x{b}"]
        for m in measures:
            tt, jt = d["torch"]["time_s"][m], d["jittor"]["time_s"][m]
            if tt is None or jt is None:
                lines.append(f"| {t} | {b} | {LABELS.get(m, m)} | - | not run | not run | | | | |")
                continue
            tm, jm = d["torch"]["peak_rss_mb"][m], d["jittor"]["peak_rss_mb"][m]
            paired = (d.get("paired_ratio") or {}).get(m)
            lines.append(f"| {t} | {b} | {LABELS.get(m, m)} | {d['jittor']['precision']} | {tt:.3f} | {jt:.3f} | "
                         f"{paired if paired is not None else jt / tt:.2f} | {_f(tm, '.0f')} | {_f(jm, '.0f')} | "
                         f"{_f(jm / tm if jm and tm else None, '.2f')} |")
    paired = any(any(v is not None for v in (data[f"{t}x{b}"].get("paired_ratio") or {}).values()) for t, b in pts)
    lines += ["", "J/P time: " + ("the median of the paired ratios, each of a Jittor and a PyTorch iteration "
                                  "timed back to back (the two processes side by side, taking turns)."
                                  if paired else "the ratio of the medians.")]
    runtime_rows = [(t, b, rt, data[f"{t}x{b}"]["runtimes"][rt]) for t, b in pts
                    for rt in RUNTIMES if (data[f"{t}x{b}"].get("runtimes") or {}).get(rt)]
    if runtime_rows:
        lines += ["", "ONNX runtimes beside them (cten-export's file for each T, each runtime in its own process, "
                      "interleaved; inference):", "",
                  "| T (segments) | batch | runtime | precision | runtime s | Jittor s | Jittor/runtime |",
                  "|---:|---:|---|---|---:|---:|---:|"]
        for t, b, rt, r in runtime_rows:
            jt = data[f"{t}x{b}"]["jittor"]["time_s"].get("inference")
            lines.append(f"| {t} | {b} | {NAMES[rt]} | {r['precision']} | {r['time_s']:.3f} | {_f(jt, '.3f')} | "
                         f"{_f(r['jittor_over'], '.2f')} |")
    lines += ["", "Growth (least-squares exponent k of value ~ x^k on log-log; x2: the ratio per doubling, 2^k; "
                  "memory also in MB added per doubling):", "",
              "| line | measure | framework | time: k | time x2 | memory: k | memory x2 | MB per doubling |",
              "|---|---|---|---:|---:|---:|---:|---:|"]
    for line, g in result["growth"].items():
        if len(g["x"]) < 2:
            continue
        where = (f"segments {g['x']} at batch {g['points'][0][1]}" if line == "segments"
                 else f"batch {g['x']} at {g['points'][0][0]} segments")
        for m in measures:
            for fw in FRAMEWORKS:
                ti, me = g[fw][m]["time"], g[fw][m]["memory"]
                lines.append(f"| {where} | {LABELS.get(m, m)} | {NAMES[fw]} | "
                             f"{_f(ti and ti['exponent'], '.2f')} | {_f(ti and ti['per_doubling'], '.2f')} | "
                             f"{_f(me and me['exponent'], '.2f')} | {_f(me and me['per_doubling'], '.2f')} | "
                             f"{_f(me and me['added_per_doubling'], '.0f')} |")
    lines += ["", f"First worker started {result['started_utc']}, table written {result['finished_utc']}; 1-min load average at each worker's "
                  f"start: {result['loadavg_1min']}." + (f" {result['note']}" if result.get("note") else "")]
    if result.get("not_run"):
        lines += ["", "Not run: " + result["not_run"]]
    return "\n".join(lines)


def _nan(v):
    return float("nan") if v is None else v


def plot(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    data = result["data"]
    for col, line in enumerate(("segments", "batch")):
        g = result["growth"][line]
        for fw, style in (("torch", "--"), ("jittor", "-")):
            for m in result["measures"]:
                keys = [f"{t}x{b}" for t, b in g["points"]]
                times = [_nan(data[k][fw]["time_s"][m]) for k in keys]
                mems = [_nan(data[k][fw]["peak_rss_mb"][m]) for k in keys]
                axes[0, col].plot(g["x"], times, style, marker="o", label=f"{NAMES[fw]}, {LABELS.get(m, m)}")
                axes[1, col].plot(g["x"], mems, style, marker="o", label=f"{NAMES[fw]}, {LABELS.get(m, m)}")
        xlabel = ("segments T (batch %d)" % g["points"][0][1] if line == "segments" and g["points"]
                  else "batch (T = %d)" % g["points"][0][0] if g["points"] else line)
        for row, ylabel in ((0, "median time (s)"), (1, "peak RSS of the measure (MB)")):
            ax = axes[row, col]
            ax.set_xscale("log", base=2)
            if row == 0:
                ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(result["description"][:160], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(prog="cten-bench scaling", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "bench_cpu.yaml"))
    p.add_argument("--segments", default="4,8,16", help="T values of the segments line (default 4,8,16)")
    p.add_argument("--batches", default="1,2,4", help="batches of the batch line; the first is the segments "
                   "line's batch (default 1,2,4)")
    p.add_argument("--points", default=None, help="T:B,... instead of the two lines")
    p.add_argument("--skip", default="", help="T:B:measure,... not to run (too slow or too big; say why in --note)")
    p.add_argument("--measures", default="inference,train_step")
    p.add_argument("--iters", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=1, help="processes per framework and point")
    p.add_argument("--separate", action="store_true", help="each framework's process alone, one after the "
                   "other, alternating (default: the two side by side, taking turns iteration by iteration)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--keep", help="keep the worker files in this folder; files already there are reused")
    p.add_argument("--note", default="", help="a sentence for the table (shared machine, what was left out)")
    p.add_argument("--runtimes", default="auto", help="ONNX runtimes beside the frameworks at each point "
                   f"(inference): a comma list of {', '.join(RUNTIMES)}, 'auto' (those installed) or 'none'")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "scaling_cpu.json"))
    a = p.parse_args(argv)
    if a.runtimes == "auto":
        import importlib.util
        a.runtimes = [] if a.separate else [rt for rt in RUNTIMES if importlib.util.find_spec(rt) is not None]
    else:
        a.runtimes = [r for r in a.runtimes.split(",") if r and r != "none"]
        if any(r not in RUNTIMES for r in a.runtimes) or (a.runtimes and a.separate):
            p.error(f"--runtimes: {a.runtimes} (known: {RUNTIMES}; interleaved runs only)")
    segments, batches = _ints(a.segments), _ints(a.batches)
    points = [tuple(int(v) for v in q.split(":")) for q in a.points.split(",")] if a.points else None
    pts = grid(segments, batches, points)
    measures = a.measures.split(",")
    skip = {tuple(q.split(":")) for q in a.skip.split(",") if q.strip()}
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    data, loads, n, worker_starts = {}, [], 0, []
    with worker_folder(a.keep) as tmp:
        for t, b in pts:
            key = f"{t}x{b}"
            mlist = [m for m in measures if (str(t), str(b), m) not in skip]
            if not mlist:
                continue
            runtimes = a.runtimes if "inference" in mlist else []
            if runtimes:             # the model of this T, exported once (a kept folder's reused)
                folder = os.path.join(tmp, f"onnx_T{t}")
                os.makedirs(folder, exist_ok=True)
                onnx = exported_onnx(a.config, a.set + [f"model.seq_len={t}", f"model.audio_n_segments={t}"],
                                     folder, ("model",))["model"]
            results = {fw: [] for fw in FRAMEWORKS + tuple(runtimes)}
            for rep in range(a.repeats):
                order = FRAMEWORKS if n % 2 == 0 else FRAMEWORKS[::-1]
                n += 1
                outs = {fw: os.path.join(tmp, f"{fw}_{key}_{rep}.json") for fw in order}
                if a.separate:
                    got = {}
                    for fw in order:
                        print(f"T={t} batch={b} repeat {rep + 1}/{a.repeats}: {fw} ...", flush=True)
                        got[fw] = _worker(fw, a.config, t, b, a, mlist, outs[fw])
                else:
                    print(f"T={t} batch={b} repeat {rep + 1}/{a.repeats}: both"
                          f"{' and ' + ', '.join(runtimes) if runtimes else ''}, interleaved ...", flush=True)
                    commands = {fw: _command(fw, a.config, t, b, a, mlist, outs[fw]) for fw in order}
                    for rt in runtimes:
                        outs[rt] = os.path.join(tmp, f"{rt}_{key}_{rep}.json")
                        commands[rt] = _command(rt, a.config, t, b, a, ["inference"], outs[rt]) + ["--onnx", onnx]
                    got = interleaved(commands, outs, mlist, a.iters, a.warmup,
                                      offers={rt: ("inference",) for rt in runtimes})
                    for rt in runtimes:
                        results[rt].append(got[rt])
                for fw in order:
                    results[fw].append(got[fw])
                    worker_starts.append(got[fw].get("started_utc"))
                    loads.append(round(got[fw]["loadavg_start"][0], 2))
            data[key] = {fw: point_summary(results[fw], measures) for fw in FRAMEWORKS}
            data[key]["paired_ratio"] = {m: paired_ratio(results, m) for m in mlist}
            if runtimes:
                data[key]["runtimes"] = {rt: runtime_summary(results, rt) for rt in runtimes}
    pts = [q for q in pts if f"{q[0]}x{q[1]}" in data]
    starts = [s for s in worker_starts if s]
    started = min(starts + [started])         # reused worker files keep their own start times
    model = results["jittor"][0]["model"]
    description = (f"3D ResNet-{model['visual_depth']}, audio {model['audio_arch']}, snippets "
                   f"{model['snippet_duration']}x{model['sample_size']}x{model['sample_size']}, audio 100 frames "
                   f"per segment; fp32; {a.repeats} process(es) x {a.iters} iterations per framework and point, "
                   f"{'one after the other' if a.separate else 'interleaved'}; "
                   f"{describe()['cpu']}, {os.cpu_count()} CPUs")
    seg_batch = batches[0] if not points else min(b for _, b in pts)
    batch_seg = max(segments) if not points else max(t for t, _ in pts)
    result = {"description": description, "config": a.config, "overrides": a.set, "measures": measures,
              "points": [list(q) for q in pts], "data": data,
              "growth": growth(pts, data, measures, seg_batch, batch_seg),
              "started_utc": started, "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "loadavg_1min": loads, "loadavg_end": os.getloadavg(), "note": a.note, "machine": describe(),
              "not_run": ", ".join(f"{m} at T={t}, batch {b}" for t, b, m in sorted(skip))}
    text = render(result)
    print(text)
    base = os.path.splitext(a.out)[0]
    os.makedirs(os.path.dirname(os.path.abspath(base)), exist_ok=True)
    with open(base + ".json", "w") as f:
        json.dump(result, f, indent=1)
    with open(base + ".md", "w") as f:
        f.write(text + f"\n\nMachine: {json.dumps(result['machine'])}\n")
    plot(result, base + ".png")
    print(f"wrote {base}.json, .md, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
