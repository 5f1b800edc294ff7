"""Fused kernels vs composed operators: attention forward and forward+backward,
and the erasing operator's indices vs the numpy sampler's.

    python -m benchmarks.bench_kernels [--device cpu|cuda] [--iters K] [--out FILE.json]

Shapes are CTEN's (B videos, T = 16 segments): the multi-head attention (B*8
heads of 256), the non-local block (B rows, inner 256) and a head dim of 2048;
the erasing indices of a batch of B videos of 3,200 frames (T = L = 16).  Each
figure is the median of K timed runs after warm-up (compilation excluded), with
``jt.sync_all(True)`` closing every run.  Prints a table, writes JSON and the
same table as markdown beside it.  Both erasing paths include what they cost in
training: gamma where the model left it, the indices on the host (where the
erased views' frames are read, ``VideoEmotionData.read_views``).
"""
import argparse
import json
import os
import statistics
import sys

import numpy as np

import cten_jt  # noqa: F401  (Jittor settings first)
import jittor as jt
from benchmarks.common import describe, timed
from cten_common.erasing import erased_view_indices
from cten_jt.kernels.attention import composed_attention, fused_attention
from cten_jt.kernels.erasing import erased_views


def _time(fn, iters, warmup=2):
    times = timed(fn, iters, warmup, lambda: jt.sync_all(True))
    return statistics.median(times), (min(times), max(times))


def attention_cases(batch):
    return [(f"multi-head {batch}x8 heads, T=16, d=256", (batch, 8, 16, 256)),
            (f"non-local {batch} videos, T=16, d=256", (batch, 16, 256)),
            (f"head dim 2048, {batch} videos, T=16", (batch, 16, 2048))]


def bench_attention(shape, iters):
    rng = np.random.default_rng(0)
    q, k, v = (jt.array(rng.standard_normal(shape).astype(np.float32)) for _ in range(3))
    scale = shape[-1] ** -0.5
    rows = {}
    for name, fn in (("composed", composed_attention), ("fused", fused_attention)):
        def forward():
            fn(q, k, v, scale).sync()

        def forward_backward():
            out = fn(q, k, v, scale)
            jt.sync(jt.grad(out.sum(), [q, k, v]))
        rows[name] = {"forward": _time(forward, iters), "forward_backward": _time(forward_backward, iters)}
    return rows


def bench_erasing(batch, iters, T=16, L=16, n=3200):
    rng = np.random.default_rng(1)
    gamma_var = jt.array(rng.random((batch, T)).astype(np.float32))
    n_frames = np.full(batch, n)

    def composed():
        erased_view_indices(gamma_var.numpy(), n_frames, L, np.random.default_rng(0))

    def fused():
        erased_views(gamma_var, n_frames, L, np.random.default_rng(0))
    return {"composed": _time(composed, iters), "fused": _time(fused, iters)}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_kernels", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--batch", type=int, default=None, help="videos per batch (default 8 on cpu, 32 on cuda)")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--out", default=None, help="JSON file (default benchmarks/results/kernels_DEVICE.json)")
    a = p.parse_args(argv)
    if a.device == "cuda":
        if not jt.has_cuda:
            sys.exit("Jittor has no CUDA here")
        jt.flags.use_cuda = 1
    batch = a.batch or (32 if a.device == "cuda" else 8)
    results = {"device": a.device, "batch": batch, "iters": a.iters,
               "machine": describe(), "attention": {}, "erasing": None}
    table = []      # (case, pass, composed (median, spread), fused (median, spread))
    for label, shape in attention_cases(batch):
        rows = bench_attention(shape, a.iters)
        results["attention"][label] = {"shape": shape, **rows}
        for what in ("forward", "forward_backward"):
            table.append((label, what.replace("_", "+"), rows["composed"][what], rows["fused"][what]))
    er = bench_erasing(batch, a.iters)
    results["erasing"] = er
    table.append((f"erasing indices, {batch} videos x 3200 frames, T=16, L=16", "both views",
                  er["composed"], er["fused"]))
    lines = [f"Kernels, {a.device} ({results['machine']['gpu'] or results['machine']['cpu']}, "
             f"{results['machine']['cpus']} cores), median of {a.iters} runs in ms (min-max)", "",
             "| case | pass | composed | fused | fused/composed |", "|---|---|---|---|---|"]
    for label, what, c, f in table:
        lines.append(f"| {label} | {what} | {c[0] * 1e3:.2f} ({c[1][0] * 1e3:.2f}-{c[1][1] * 1e3:.2f}) | "
                     f"{f[0] * 1e3:.2f} ({f[1][0] * 1e3:.2f}-{f[1][1] * 1e3:.2f}) | {f[0] / c[0]:.2f} |")
    print("\n".join(lines))
    out = a.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"kernels_{a.device}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as fh:
        json.dump(results, fh, indent=1)
    with open(os.path.splitext(out)[0] + ".md", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print(f"wrote {out} and {os.path.splitext(out)[0]}.md")


if __name__ == "__main__":
    main()
