"""Where the 3D ResNet's inference time goes, per stage and layer kind: Jittor's frozen
program (oneDNN 2.6, its verbose log) against OpenVINO (its per-node counters) on the same
weights, and OpenVINO's whole model by part.

    cten-bench layers [--config configs/bench_cpu.yaml] [--precision fp32|bf16] [--iters 3]
        [--keep DIR] [--out benchmarks/results/layers_cpu.json]

Each framework runs in its own process, one after the other: the frozen backbone on the
configuration's B*T snippets (``model.backbone_features``; the program where it applies),
``--iters`` calls after a warm-up, and OpenVINO on ``cten-export``'s files of the same
weights (``--part backbone``, and the whole model) with ``PERF_COUNT``.  Per call:

* Jittor: each oneDNN primitive's execution time (``ONEDNN_VERBOSE=1``, the exec lines
  between two markers), by stage (the convolution's output size: stem, layer1..4) and kind
  (convolution, reorder, pooling, other); "outside oneDNN" is the call's wall time less
  their sum (the program's own loops: weight folding, casts, copies; and Jittor);
* OpenVINO: each executed node's ``real_time``, by stage (``resnet.0``..``resnet.7`` in
  its name) and kind (its type; BatchNorm, ReLU and the residual sums are fused into the
  convolutions, as in ours); its whole model by part (3D ResNet, audio ResNet, the rest).

Medians over the calls.  Writes NAME.json and NAME.md.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

from benchmarks.common import ROOT, describe, exported_onnx, worker_folder

STAGES = ("stem", "layer1", "layer2", "layer3", "layer4", "head", "all")
KINDS = ("convolution", "reorder", "weight reorder", "pooling", "other")

JITTOR = """
import json, os, sys, time
import numpy as np
import cten_jt, jittor as jt
from cten_common.config import load_run_config
from cten_jt.backend import BACKEND
from cten_common.inference import inference_model
config = load_run_config(sys.argv[1], json.loads(sys.argv[3])).updated({"train": {"precision": sys.argv[4]}})
model, _ = inference_model(BACKEND, config, sys.argv[2])
m = config.model
x = jt.array(np.random.default_rng(0).uniform(0, 255, (m.seq_len, 3, m.snippet_duration, m.sample_size,
                                                        m.sample_size)).astype(np.float32))
walls = []
for i in range(int(sys.argv[5]) + 1):
    os.write(1, b"CALL\\n")
    t = time.perf_counter()
    with jt.no_grad():
        model.backbone_features(x).sync()
    walls.append(time.perf_counter() - t)
    os.write(1, b"END\\n")
os.write(1, ("WALLS " + json.dumps(walls) + "\\n").encode())
"""

OPENVINO = """
import json, sys
import numpy as np
import openvino as ov
from cten_deploy.onnx_file import cten_metadata
core = ov.Core()
out = {}
for path in sys.argv[1:3]:
    part, config, _ = cten_metadata(path)
    m = config["model"]
    shape = (m["seq_len"], 3, m["snippet_duration"], m["sample_size"], m["sample_size"])
    compiled = core.compile_model(path, "CPU", {"PERF_COUNT": "YES", "INFERENCE_PRECISION_HINT": sys.argv[3]})
    request = compiled.create_infer_request()
    rng = np.random.default_rng(0)
    feed = {"snippets": rng.uniform(0, 255, shape)} if part == "backbone" else \\
        {"visual": rng.uniform(0, 255, (1,) + shape), "audio": rng.normal(0, 1, (1, 100 * m["audio_n_segments"], 128))}
    feed = {k: v.astype(np.float32) for k, v in feed.items() if k in [i.get_any_name() for i in compiled.inputs]}
    calls = []
    for i in range(int(sys.argv[4]) + 1):
        request.infer(feed)
        calls.append([(p.node_name, p.node_type, p.exec_type, p.real_time.total_seconds())
                      for p in request.get_profiling_info() if str(p.status).endswith("EXECUTED")
                      and "NOT_RUN" not in str(p.status)])
    out[part] = calls[1:]
print("OPENVINO " + json.dumps(out))
"""


def stage_of_shape(problem, sample_size):
    """A oneDNN problem descriptor's stage, from its output height (a reorder: its height;
    the input S and stem S/2, layer1 S/4, layer2 S/8, layer3 S/16, layer4 ceil(S/32))."""
    found = re.search(r"oh(\d+)", problem) or re.search(r"ih(\d+)", problem)    # a reorder: its size
    if not found:
        return "other"
    oh = int(found.group(1))
    sizes = {"stem": sample_size // 2, "layer1": sample_size // 4, "layer2": sample_size // 8,
             "layer3": sample_size // 16, "layer4": -(-sample_size // 32)}
    if oh == sample_size:                  # the input, converted for the stem
        return "stem"
    return next((s for s, v in sizes.items() if v == oh), "other")


def kind_of(primitive):
    if primitive.startswith("convolution"):
        return "convolution"
    if primitive.startswith("reorder"):
        return "reorder"
    if primitive.startswith("pooling"):
        return "pooling"
    return "other"


def parse_jittor(text, sample_size):
    """``(calls, walls)``: per timed call ``{(stage, kind): seconds}`` from the verbose log,
    and the calls' wall times (the warm-up call dropped)."""
    calls, current, walls = [], None, []
    for line in text.splitlines():
        if line == "CALL":
            current = {}
        elif line == "END":
            calls.append(current)
            current = None
        elif line.startswith("WALLS "):
            walls = json.loads(line[6:])
        elif current is not None and line.startswith("onednn_verbose,exec,cpu,"):
            fields = line.split(",")
            primitive, problem, ms = fields[3], fields[-2], float(fields[-1])
            kind = kind_of(primitive)
            if kind == "reorder" and "mb" not in problem:     # a weight, packed at every call
                key = ("all", "weight reorder")
            else:
                stage = stage_of_shape(problem, sample_size)
                if kind == "pooling":                          # the stem's max-pool; the head's average
                    stage = "stem" if stage == "layer1" else "head"
                key = (stage, kind)
            current[key] = current.get(key, 0.0) + ms / 1e3
    return calls[1:], walls[1:]


def stage_of_node(name):
    found = re.search(r"resnet\.(\d)", name)
    if not found:
        return "other"
    index = int(found.group(1))
    return {0: "stem", 1: "stem", 2: "stem", 3: "stem", 4: "layer1", 5: "layer2", 6: "layer3",
            7: "layer4"}.get(index, "head")


def part_of_node(name):
    if "a_resnet" in name:
        return "audio ResNet"
    if re.search(r"(^|/)resnet", name):
        return "3D ResNet"
    return "the rest (non-local blocks, attention, head)"


def node_kind(node_type):
    t = node_type.lower()
    if "conv" in t:
        return "convolution"
    if "reorder" in t:                 # OpenVINO packs the weights once, when it compiles
        return "reorder"
    if "pool" in t:
        return "pooling"
    return "other"


def _median_table(calls):
    keys = sorted({k for c in calls for k in c})
    return {k: statistics.median(c.get(k, 0.0) for c in calls) for k in keys}


def summarise(jittor_calls, jittor_walls, openvino):
    """The two profiles side by side: ``{"stages": {stage: {kind: {"jittor", "openvino"}}},
    "walls": ..., "openvino_parts": {part: seconds}}``."""
    j = _median_table(jittor_calls)
    ov_backbone = [{(stage_of_node(n), node_kind(t)): 0.0 for n, t, _, _ in call} for call in openvino["backbone"]]
    for call, table in zip(openvino["backbone"], ov_backbone):
        for name, node_type, _, seconds in call:
            table[(stage_of_node(name), node_kind(node_type))] += seconds
    o = _median_table(ov_backbone)
    stages = {}
    for stage in STAGES + ("other",):
        for kind in KINDS:
            jt, ov = j.get((stage, kind), 0.0), o.get((stage, kind), 0.0)
            if jt or ov:
                stages.setdefault(stage, {})[kind] = {"jittor": jt, "openvino": ov}
    wall = statistics.median(jittor_walls)
    dnnl = sum(j.values())
    parts = []
    for call in openvino["model"]:
        table = {}
        for name, _, _, seconds in call:
            table[part_of_node(name)] = table.get(part_of_node(name), 0.0) + seconds
        parts.append(table)
    impls = sorted({f"{t}: {e}" for call in openvino["backbone"][:1] for _, t, e, _ in call if node_kind(t) == "convolution"})
    return {"stages": stages, "jittor_wall_s": wall, "jittor_onednn_s": dnnl, "jittor_outside_onednn_s": wall - dnnl,
            "openvino_backbone_s": sum(o.values()), "openvino_parts_s": _median_table(parts),
            "openvino_convolution_kernels": impls}


def render(result):
    s = result["summary"]
    lines = [f"The 3D ResNet's inference by stage and kind, {result['description']}", "",
             "| stage | kind | Jittor ms | OpenVINO ms | Jittor/OpenVINO |", "|---|---|---:|---:|---:|"]
    for stage, kinds in s["stages"].items():
        for kind, v in kinds.items():
            ratio = f"{v['jittor'] / v['openvino']:.2f}" if v["openvino"] else "-"
            lines.append(f"| {stage} | {kind} | {1e3 * v['jittor']:.1f} | {1e3 * v['openvino']:.1f} | {ratio} |")
    lines += [f"| all | oneDNN primitives | {1e3 * s['jittor_onednn_s']:.1f} | {1e3 * s['openvino_backbone_s']:.1f} | "
              f"{s['jittor_onednn_s'] / s['openvino_backbone_s']:.2f} |",
              f"| all | outside oneDNN (Jittor: the call's wall time less its primitives) | "
              f"{1e3 * s['jittor_outside_onednn_s']:.1f} | | |",
              f"| all | the call (Jittor: wall time; OpenVINO: its nodes) | {1e3 * s['jittor_wall_s']:.1f} | "
              f"{1e3 * s['openvino_backbone_s']:.1f} | {s['jittor_wall_s'] / s['openvino_backbone_s']:.2f} |",
              "", "OpenVINO's whole model by part (ms): " + ", ".join(
                  f"{k} {1e3 * v:.1f}" for k, v in sorted(s["openvino_parts_s"].items(), key=lambda kv: -kv[1])),
              "", "OpenVINO's convolution kernels: " + "; ".join(s["openvino_convolution_kernels"])]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="cten-bench layers", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "bench_cpu.yaml"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--keep", help="keep the exported files in this folder (reused)")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "layers_cpu.json"))
    a = p.parse_args(argv)
    from cten_common.config import load_run_config
    model = load_run_config(a.config, a.set).model
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with worker_folder(a.keep) as tmp:
        files = exported_onnx(a.config, a.set, tmp, ("model", "backbone"))
        print("Jittor's frozen backbone under ONEDNN_VERBOSE ...", flush=True)
        done = subprocess.run([sys.executable, "-c", JITTOR, a.config, files["weights"], json.dumps(a.set),
                               a.precision, str(a.iters)], cwd=ROOT, capture_output=True, text=True, check=True,
                              env=dict(os.environ, ONEDNN_VERBOSE="1"))
        jittor_calls, walls = parse_jittor(done.stdout, model.sample_size)
        print("OpenVINO with PERF_COUNT ...", flush=True)
        done = subprocess.run([sys.executable, "-c", OPENVINO, files["backbone"], files["model"],
                               "bf16" if a.precision == "bf16" else "f32", str(a.iters)],
                              cwd=ROOT, capture_output=True, text=True, check=True)
        openvino = json.loads(next(x for x in done.stdout.splitlines() if x.startswith("OPENVINO "))[9:])
    result = {"description": f"{model.seq_len} snippets of {model.snippet_duration}x{model.sample_size}x"
                             f"{model.sample_size}, 3D ResNet-{model.visual_depth}, {a.precision}, medians of "
                             f"{a.iters} calls; {describe()['cpu']}",
              "precision": a.precision, "started_utc": started, "machine": describe(),
              "summary": summarise(jittor_calls, walls, openvino)}
    text = render(result)
    print(text)
    base = os.path.splitext(a.out)[0]
    with open(base + ".json", "w") as f:
        json.dump(result, f, indent=1)
    with open(base + ".md", "w") as f:
        f.write(text + f"\n\nMachine: {json.dumps(result['machine'])}\n")
    print(f"wrote {base}.json, .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
