"""Where Jittor's peak memory goes: each memory lever's effect on the peak RSS, PyTorch beside.

    cten-bench memory [--config configs/bench_cpu.yaml] [--levers NAME,...] [--iters 1] [--warmup 1]
        [--measures forward_train,train_step,inference] [--out benchmarks/results/memory_cpu.json]

Runs ``benchmarks.framework_worker`` (the peak-RSS method of
``benchmarks.compare_frameworks``: the process's peak resident set, and each
measure's own peak, the high-water mark reset before it) once for PyTorch
first and last, and once per lever for Jittor, each in a fresh process; a
lever is an environment (Jittor's flags are read from variables of their
names; ``CTEN_*`` switches) and/or worker options.  The table gives each
run's peak per measure, the RSS the measure starts from (what earlier
measures left resident: Jittor's allocator keeps what it freed), the
whole-process peak and its ratio to PyTorch's (the mean of the two PyTorch
runs), and the times, which on a shared machine are indicative only.

``--inference-process``: every worker is an inference process, as ``cten-predict`` is: it
builds and loads the model from a weights file (the configuration's model from the shared
initialisation, written once into the worker folder) through ``inference_model`` and
measures inference alone (``--measures`` defaults to ``inference``), holding no optimiser.

Writes NAME.json and NAME.md.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from benchmarks.common import ROOT, describe, reuse_or_run, shared_weights, worker_folder

#: name -> (what it does, environment, worker options)
LEVERS = {
    "baseline": ("the defaults", {}, []),
    "no_weight_cache": ("CTEN_CONV_WEIGHT_CACHE=0: frozen conv weights reordered on every call, no kept copy",
                        {"CTEN_CONV_WEIGHT_CACHE": "0"}, []),
    "gc_each_iteration": ("jt.gc() after every iteration: Jittor's allocator frees its cached blocks",
                          {}, ["--jittor-gc"]),
    "no_sfrl_allocator": ("use_sfrl_allocator=0: no caching allocator, blocks go back to malloc",
                          {"use_sfrl_allocator": "0"}, []),
    "no_temp_allocator": ("use_temp_allocator=0: no temporary-buffer allocator", {"use_temp_allocator": "0"}, []),
    "no_sfrl_no_temp": ("use_sfrl_allocator=0, use_temp_allocator=0", {"use_sfrl_allocator": "0",
                                                                       "use_temp_allocator": "0"}, []),
    "stat_allocator": ("use_stat_allocator=1: counting allocator in front (a statistic, not a fix)",
                       {"use_stat_allocator": "1"}, []),
    "eager": ("lazy_execution=0: every operation executed as it is created", {"lazy_execution": "0"}, []),
    "jt_sync": ("JT_SYNC=1: synchronise after every operation", {"JT_SYNC": "1"}, []),
    "no_sfrl_malloc_trim": ("use_sfrl_allocator=0 and glibc returning freed memory at once "
                            "(MALLOC_TRIM_THRESHOLD_=0, MALLOC_MMAP_THRESHOLD_=1048576)",
                            {"use_sfrl_allocator": "0", "MALLOC_TRIM_THRESHOLD_": "0",
                             "MALLOC_MMAP_THRESHOLD_": "1048576"}, []),
    "malloc_mmap": ("glibc's mmap threshold fixed at 1 MiB (MALLOC_MMAP_THRESHOLD_=1048576; glibc otherwise "
                    "raises it to the largest block freed, up to 32 MiB, and keeps later blocks on the heap, "
                    "which does not shrink)", {"MALLOC_MMAP_THRESHOLD_": "1048576"}, []),
    "malloc_mmap_gc": ("malloc_mmap and jt.gc() after every iteration", {"MALLOC_MMAP_THRESHOLD_": "1048576"},
                       ["--jittor-gc"]),
    "malloc_mmap_gc_no_weight_cache": ("malloc_mmap_gc and CTEN_CONV_WEIGHT_CACHE=0",
                                       {"MALLOC_MMAP_THRESHOLD_": "1048576", "CTEN_CONV_WEIGHT_CACHE": "0"},
                                       ["--jittor-gc"]),
    "malloc_mmap_no_weight_cache": ("malloc_mmap and CTEN_CONV_WEIGHT_CACHE=0",
                                    {"MALLOC_MMAP_THRESHOLD_": "1048576", "CTEN_CONV_WEIGHT_CACHE": "0"}, []),
}
DEFAULT = ("baseline,no_weight_cache,gc_each_iteration,no_sfrl_allocator,no_temp_allocator,no_sfrl_no_temp,"
           "eager,jt_sync,no_sfrl_malloc_trim,malloc_mmap,malloc_mmap_gc,malloc_mmap_no_weight_cache,"
           "malloc_mmap_gc_no_weight_cache")


def weights_file(a, folder):
    """The configuration's model from the shared initialisation, as a weights file in ``folder``."""
    return shared_weights(a.config, a.set, folder)


def run_worker(framework, a, env, extra, out):
    return reuse_or_run(out, lambda: _run(framework, a, env, extra, out))


def _run(framework, a, env, extra, out):
    cmd = [sys.executable, "-m", "benchmarks.framework_worker", "--framework", framework, "--config", a.config,
           "--iters", str(a.iters), "--warmup", str(a.warmup), "--measures", a.measures, "--out", out] + extra
    if a.batch:
        cmd += ["--batch", str(a.batch)]
    for s in a.set:
        cmd += ["--set", s]
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, **env))


def record(name, what, framework, r, measures):
    return {"lever": name, "what": what, "framework": framework, "precision": r.get("precision", "fp32"),
            "peak_rss_mb": r["peak_rss_mb"], "peak_by_measure_mb": r.get("peak_rss_by_measure_mb", {}),
            "rss_before_measure_mb": r.get("rss_before_measure_mb", {}),
            "time_s": {m: statistics.median(r["times"][m]) for m in measures},
            "loadavg_start": r.get("loadavg_start"), "started_utc": r.get("started_utc"), "env": r.get("env", {})}


def render(result):
    measures = result["measures"]
    torch_peak = result["torch_peak_rss_mb"]
    lines = [f"Jittor's memory levers, {result['description']}", "",
             "| run | framework | peak RSS MB | / PyTorch | " + " | ".join(f"{m}: start / peak MB" for m in measures)
             + " | " + " | ".join(f"{m} s" for m in measures) + " | 1-min load |",
             "|---|---|---:|---:|" + "---:|" * (2 * len(measures)) + "---:|"]
    for rec in result["runs"]:
        cells = [f"{_f(rec['rss_before_measure_mb'].get(m))} / {_f(rec['peak_by_measure_mb'].get(m))}"
                 for m in measures]
        times = [f"{rec['time_s'][m]:.2f}" for m in measures]
        load = rec["loadavg_start"][0] if rec.get("loadavg_start") else float("nan")
        lines.append(f"| {rec['lever']} | {rec['framework']} | {rec['peak_rss_mb']:.0f} | "
                     f"{rec['peak_rss_mb'] / torch_peak:.2f} | " + " | ".join(cells) + " | " + " | ".join(times)
                     + f" | {load:.1f} |")
    lines += ["", "Levers:"] + [f"* `{k}`: {v}" for k, v in result["levers"].items()]
    lines += ["", f"PyTorch's peak: the mean of its runs ({torch_peak:.0f} MB; one run before the levers, one after). "
                  f"First worker started {result['started_utc']}, table written {result['finished_utc']}." +
              (f" {result['note']}" if result.get("note") else "")]
    return "\n".join(lines)


def _f(v):
    return "-" if v is None else f"{v:.0f}"


def main(argv=None):
    p = argparse.ArgumentParser(prog="cten-bench memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "bench_cpu.yaml"))
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--levers", default=DEFAULT, help=f"comma-separated, of: {', '.join(LEVERS)}")
    p.add_argument("--measures", default=None,
                   help="default forward_train,train_step,inference; with --inference-process inference")
    p.add_argument("--inference-process", action="store_true",
                   help="each worker loads the model from a weights file as cten-predict does and measures "
                        "inference alone")
    p.add_argument("--iters", type=int, default=1)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--note", default="")
    p.add_argument("--keep", help="keep the worker files in this folder; files already there are reused")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "memory_cpu.json"))
    a = p.parse_args(argv)
    a.measures = a.measures or ("inference" if a.inference_process else "forward_train,train_step,inference")
    measures = a.measures.split(",")
    names = [n for n in a.levers.split(",") if n]
    unknown = [n for n in names if n not in LEVERS]
    if unknown:
        p.error(f"unknown levers {unknown}; known: {list(LEVERS)}")
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    runs = []
    from cten_common.config import load_run_config
    rc = load_run_config(a.config, a.set).to_dict()
    mc, batch = rc["model"], a.batch or rc["train"]["batch_size"]
    description = (f"batch {batch}, T={mc['seq_len']} segments of {mc['snippet_duration']}x{mc['sample_size']}x"
                   f"{mc['sample_size']}, 3D ResNet-{mc['visual_depth']}, audio {mc['audio_arch']}; fp32; "
                   f"{a.warmup} warm-up + {a.iters} timed iteration(s) per measure; {describe()['cpu']}"
                   + ("; inference processes: the model loaded from a weights file as cten-predict loads it"
                      if a.inference_process else ""))
    base = os.path.splitext(a.out)[0]
    os.makedirs(os.path.dirname(os.path.abspath(base)), exist_ok=True)

    def write(complete):
        """The table so far: written after every run, so that a study cut short keeps its runs."""
        torch_runs = [r["peak_rss_mb"] for r in runs if r["framework"] == "torch"]
        result = {"description": description, "config": a.config, "overrides": a.set, "measures": measures,
                  "inference_process": a.inference_process,
                  "levers": {n: LEVERS[n][0] for n in names}, "runs": runs,
                  "torch_peak_rss_mb": statistics.fmean(torch_runs) if torch_runs else None,
                  "complete": complete,
                  # the runs' own start times: reused worker files keep theirs
                  "started_utc": min([r["started_utc"] for r in runs if r.get("started_utc")] or [started]),
                  "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "note": a.note + ("" if complete else " (cut short: the runs so far)"), "machine": describe()}
        if result["torch_peak_rss_mb"] is None:
            return None
        text = render(result)
        with open(base + ".json", "w") as f:
            json.dump(result, f, indent=1)
        with open(base + ".md", "w") as f:
            f.write(text + f"\n\nMachine: {json.dumps(result['machine'])}\n")
        return text

    with worker_folder(a.keep) as tmp:
        loading = ["--weights", weights_file(a, tmp)] if a.inference_process else []
        plan = [("torch", "baseline")] + [("jittor", n) for n in names] + [("torch", "baseline")]
        for i, (fw, name) in enumerate(plan):
            what, env, extra = LEVERS[name]
            print(f"{fw}: {name} ...", flush=True)
            r = run_worker(fw, a, env, (extra if fw == "jittor" else []) + loading,
                           os.path.join(tmp, f"{i}_{fw}_{name}.json"))
            runs.append(record(name, what, fw, r, measures))
            print(f"  peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
            write(complete=i == len(plan) - 1)
    text = write(complete=True)
    print(text)
    print(f"wrote {base}.json, .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
