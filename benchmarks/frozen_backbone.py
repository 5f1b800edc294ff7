"""python -m benchmarks.frozen_backbone [--out benchmarks/results/frozen_backbone_cpu.json]
                                      [--layouts ndhwc,nCdhw16c [--rounds 5]]

The frozen R3D-101's forward at the paper's per-sample shape (16 snippets of
3x16x112x112), in eval mode and in train mode (batch statistics, as in a training
step): layer by layer (``set_kernels("composed")``) against the one-program path
(``cten_jt.kernels.frozen_resnet``), fp32 and (where this CPU's oneDNN has bfloat16
convolutions) bf16; min and median of 3 after a warm-up.  "rebuilt" times the program
made again before each call (``release_weight_caches``; its instructions only: the
program holds no weights, it folds and reorders each layer's as it runs).  Prints a table and writes JSON.

``--layouts``: instead, the program in each of these activation layouts
(``CTEN_FROZEN_LAYOUT``'s names), taking turns call by call over ``--rounds`` rounds
(each layout's program warmed up first), per mode and precision: the median of each
and of the paired ratios to the first layout.
"""
import argparse
import json
import time

import numpy as np

import cten_jt  # noqa: F401  (Jittor settings first)
import jittor as jt
from cten_jt import switches
from cten_jt.kernels import frozen_resnet
from cten_jt.kernels.conv import release_weight_caches
from cten_jt.models.norm import set_train_mode
from cten_jt.models.resnet import visual_backbone
from cten_jt.precision import set_precision

from .common import describe


def _time(run, n=3):
    run().sync()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        run().sync()
        times.append(time.perf_counter() - start)
    return min(times), float(np.median(times))


def compare_layouts(resnet, x, layouts, rounds, precisions):
    """Rows of the program's times in each layout, the layouts taking turns call by call."""
    rows = []
    for mode in ("eval", "train"):
        set_train_mode(resnet, mode == "train")
        for precision in precisions:
            set_precision(resnet, precision)
            programs = {}
            for name in layouts:
                with switches.frozen_layout_forced(name):
                    programs[name] = frozen_resnet.FrozenProgram(resnet, x.shape, precision, mode == "train")
                    for _ in range(2):                  # records the plan, then runs planned
                        programs[name](x).sync()
            times = {name: [] for name in layouts}
            for r in range(rounds):
                order = layouts if r % 2 == 0 else layouts[::-1]
                for name in order:
                    start = time.perf_counter()
                    programs[name](x).sync()
                    times[name].append(time.perf_counter() - start)
            first = layouts[0]
            for name in layouts:
                ratios = [t / f for t, f in zip(times[name], times[first])]
                rows.append({"mode": mode, "precision": precision, "layout": name,
                             "median_s": float(np.median(times[name])), "min_s": float(np.min(times[name])),
                             f"paired_ratio_to_{first}": float(np.median(ratios))})
            del programs
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="benchmarks/results/frozen_backbone_cpu.json")
    p.add_argument("--layouts", help="comma-separated layouts to compare (e.g. ndhwc,nCdhw16c)")
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args(argv)
    resnet = visual_backbone(101, 16, 112)
    for w in resnet.parameters():
        w.stop_grad()
    x = jt.array(np.random.default_rng(0).random((16, 3, 16, 112, 112), dtype=np.float32))
    if a.layouts:
        layouts = a.layouts.split(",")
        for name in layouts:
            switches.set_frozen_layout(name)        # refuses a name that is not a layout
        switches.set_frozen_layout("auto")
        precisions = ("fp32", "bf16") if frozen_resnet.native_bf16() else ("fp32",)
        rows = compare_layouts(resnet, x, layouts, a.rounds, precisions)
        info = describe()
        print(f"CPU: {info['cpu']}, {info['cpus']} cores, bf16 units: {info['bf16_units']}; oneDNN's choice here: "
              f"fp32 {frozen_resnet.chosen_layout('fp32')}, bf16 {frozen_resnet.chosen_layout('bf16')}; "
              f"{a.rounds} rounds, the layouts taking turns")
        print(f"| mode | precision | layout | median s | min s | paired ratio to {layouts[0]} |")
        print("|---|---|---|---:|---:|---:|")
        for r in rows:
            print(f"| {r['mode']} | {r['precision']} | {r['layout']} | {r['median_s']:.3f} | {r['min_s']:.3f} | "
                  f"{r[f'paired_ratio_to_{layouts[0]}']:.2f} |")
        with open(a.out, "w") as f:
            json.dump({"machine": info, "layouts": layouts, "rounds": a.rounds, "rows": rows}, f, indent=1)
        return

    def rebuilt(precision):
        release_weight_caches(resnet)
        return frozen_resnet.frozen_backbone(resnet, x, precision)

    rows = []
    precisions = ("fp32", "bf16") if frozen_resnet.native_bf16() else ("fp32",)
    for mode in ("eval", "train"):
        set_train_mode(resnet, mode == "train")
        for precision in precisions:
            set_precision(resnet, precision)
            with switches.kernels("composed"):
                layers = _time(lambda: resnet(x))
            program = _time(lambda: frozen_resnet.frozen_backbone(resnet, x, precision))
            again = _time(lambda: rebuilt(precision))
            rows.append({"mode": mode, "precision": precision, "layer_by_layer_s": layers, "program_s": program,
                         "program_rebuilt_s": again, "program/layers": program[1] / layers[1]})
            release_weight_caches(resnet)
    info = describe()
    print(f"CPU: {info['cpu']}, {info['cpus']} cores, bf16 units: {info['bf16_units']}"
          + ("" if frozen_resnet.native_bf16() else "; oneDNN has no bfloat16 convolution here: fp32 only"))
    print("| mode | precision | layer by layer (min, median s) | one program (min, median s) | "
          "program rebuilt each call (median s) | ratio |")
    print("|---|---|---|---|---|---:|")
    for r in rows:
        print(f"| {r['mode']} | {r['precision']} | {r['layer_by_layer_s'][0]:.3f}, {r['layer_by_layer_s'][1]:.3f} | "
              f"{r['program_s'][0]:.3f}, {r['program_s'][1]:.3f} | {r['program_rebuilt_s'][1]:.3f} | "
              f"{r['program/layers']:.2f} |")
    with open(a.out, "w") as f:
        json.dump({"machine": info, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
