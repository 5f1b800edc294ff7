"""Every precision in both frameworks against one float64 reference, on one device.

    python -m cten_compare.precision_report [--device cpu|cuda] [--depth 101] [--batch 2]
        [--segments 16] [--frames 16] [--size 112] [--out outputs/precision.json]

The same CTEN (PyTorch's weights copied into Jittor, dropout off) and the same
inputs; PyTorch in float64 on the same device is the reference.  For each
precision (fp32 with TF32 off, tf32, bf16, fp16; on the CPU fp32 and bf16, the
others need a GPU) and each output, the distance from the reference

    d = max |out - ref| / max |ref|

of PyTorch (``d_torch``) and of Jittor (``d_jittor``), and of Jittor from PyTorch
at the same precision.  Outputs: the eval-mode forward (logits, gamma), the
train-mode forward (batch statistics; logits, gamma), and the cross-entropy
gradients of every trainable parameter (BatchNorm in eval mode; judged as the
largest difference over all of them against the largest gradient, as
``tests/test_precision.py`` judges them).  fp16's gradients are taken of the
loss times 2**10 and divided back, as the loss scaler does (both frameworks
alike), so that small gradients do not flush to zero.

The floor of a precision is PyTorch's own distance from float64 in it: what
that precision does to this model on this device.  Jittor passes where
``d_jittor <= FACTOR * d_torch`` (``FACTOR`` as in ``tests/test_precision.py``: a few
flips of a rounding boundary where the two accumulate in other orders), or,
in fp32, within the fp32 parity bound ``MODEL_RTOL`` of the reference.  The exit
status is 1 when any row fails.  Writes OUT (JSON) and OUT with ``.md`` (the table).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch  # before Jittor
import torch.nn.functional as F

import cten_jt  # noqa: F401  (Jittor's settings first)
import jittor as jt
from cten_common.precision import GPU_ONLY, PRECISIONS
from cten_jt.models import CTEN as JCTEN
from cten_jt.models.state import load_state_arrays
from cten_jt.precision import set_precision as j_set
from cten_torch_ref.models import CTEN as TCTEN
from cten_torch_ref.precision import set_precision as t_set

FACTOR = 4            # tests/test_precision.py's factor over the floor
MODEL_RTOL = 1e-4     # fp32: the project's whole-model parity bound (docs/parity.md)
FP16_LOSS_SCALE = 2.0 ** 10
OUTPUTS = ("eval logits", "eval gamma", "train logits", "train gamma", "gradients")


def distance(out, ref):
    """max |out - ref| / max |ref| over one array, or over a dict of arrays (the largest
    difference against the largest reference value)."""
    if isinstance(ref, dict):
        diff = max(float(np.max(np.abs(np.asarray(out[k], np.float64) - np.asarray(ref[k], np.float64))))
                   for k in ref)
        scale = max(float(np.max(np.abs(np.asarray(ref[k], np.float64)))) for k in ref)
    else:
        out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
        diff, scale = float(np.max(np.abs(out - ref))), float(np.max(np.abs(ref)))
    return diff / max(scale, 1e-300)


def _torch_outputs(model, visual, audio, labels, initial, loss_scale):
    """The five outputs of the PyTorch model (float32 or float64) as float64 numpy."""
    out = {}
    dtype = next(model.parameters()).dtype
    v = torch.from_numpy(visual).to(model_device(model), dtype)
    a = torch.from_numpy(audio).to(model_device(model), dtype)
    for mode in ("eval", "train"):
        model.load_state_dict(initial)
        getattr(model, mode)()
        with torch.no_grad():
            logits, gamma = model(v, a)
        out[f"{mode} logits"], out[f"{mode} gamma"] = _np(logits), _np(gamma)
    model.load_state_dict(initial)
    model.eval()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    logits, _ = model(v, a)
    loss = F.cross_entropy(logits.float() if dtype != torch.float64 else logits,
                           torch.from_numpy(labels).to(logits.device)) * loss_scale
    grads = torch.autograd.grad(loss, list(params.values()))
    out["gradients"] = {n: _np(g) / loss_scale for n, g in zip(params, grads)}
    return out


def _jittor_outputs(model, visual, audio, labels, initial, loss_scale):
    out = {}
    v, a = jt.array(visual), jt.array(audio)
    for mode in ("eval", "train"):
        load_state_arrays(model, initial, "the report's initial weights")
        getattr(model, mode)()
        with jt.no_grad():
            logits, gamma = model(v, a)
        out[f"{mode} logits"], out[f"{mode} gamma"] = _np(logits), _np(gamma)
    load_state_arrays(model, initial, "the report's initial weights")
    model.eval()
    params = {n: p for n, p in model.named_parameters() if not p.is_stop_grad()}
    logits, _ = model(v, a)
    loss = jt.nn.cross_entropy_loss(logits, jt.array(labels)) * loss_scale
    grads = jt.grad(loss, list(params.values()))
    out["gradients"] = {n: _np(g) / loss_scale for n, g in zip(params, grads)}
    return out


def _finite(out):
    return all(np.all(np.isfinite(x)) for x in (out.values() if isinstance(out, dict) else [out]))


def _np(x):
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x.numpy()
    return np.asarray(x, np.float64)


def model_device(model):
    return next(model.parameters()).device


def verdict(precision, d_jittor, d_torch):
    """'ok' when Jittor lies within FACTOR x PyTorch's own distance from float64 (or, in
    fp32, within the fp32 parity bound); else 'OVER'."""
    if d_jittor <= FACTOR * d_torch or (precision == "fp32" and d_jittor <= MODEL_RTOL):
        return "ok"
    return "OVER"


def report(device, cfg, batch, seed=0, precisions=None):
    """The rows (one per precision and output) and what was run."""
    on_gpu = device == "cuda"
    if precisions is None:
        precisions = [p for p in PRECISIONS if on_gpu or p not in GPU_ONLY]
    rng = np.random.default_rng(seed)
    t, l, s = cfg["seq_len"], cfg["snippet_duration"], cfg["sample_size"]
    visual = rng.uniform(0, 255, (batch, t, 3, l, s, s)).astype(np.float32)
    audio = rng.normal(0, 1, (batch, 100 * cfg["audio_n_segments"], 128)).astype(np.float32)
    labels = (np.arange(batch) % cfg["n_classes"]).astype(np.int64)

    t_model = TCTEN(init_seed=seed, dropout=0.0, **cfg).to(device)
    initial = {k: v.detach().clone() for k, v in t_model.state_dict().items()}
    arrays = {k: v.cpu().numpy() for k, v in initial.items()}
    j_model = JCTEN(init_seed=seed + 1, dropout=0.0, **cfg)      # another init: the copy must land
    load_state_arrays(j_model, arrays, "PyTorch's weights")

    times = {}
    began = time.time()
    ref_model = TCTEN(init_seed=seed, dropout=0.0, **cfg).to(device).double()
    ref_initial = {k: (v.double() if v.is_floating_point() else v) for k, v in initial.items()}
    ref = _torch_outputs(ref_model, visual, audio, labels, ref_initial, 1.0)
    del ref_model
    times["float64 reference"] = time.time() - began

    rows = []
    for p in precisions:
        scale = FP16_LOSS_SCALE if p == "fp16" else 1.0
        t_set(t_model, p)
        began = time.time()
        t_out = _torch_outputs(t_model, visual, audio, labels, initial, scale)
        times[f"torch {p}"] = time.time() - began
        j_set(j_model, p)
        began = time.time()
        j_out = _jittor_outputs(j_model, visual, audio, labels, arrays, scale)
        times[f"jittor {p}"] = time.time() - began
        for name in OUTPUTS:
            d_t, d_j = distance(t_out[name], ref[name]), distance(j_out[name], ref[name])
            if not _finite(t_out[name]):
                # no floor: the precision itself overflows on this model and input (fp16 at
                # random init: the non-local block's scores, sums of 256 products of ~1e3
                # features, pass fp16's 65504 in eval mode); Jittor is judged by agreeing
                judged = "no floor: PyTorch not finite" + ("" if _finite(j_out[name]) else ", Jittor neither")
            else:
                judged = verdict(p, d_j, d_t) if _finite(j_out[name]) else "NON-FINITE"
            rows.append({"precision": p, "output": name, "d_torch": d_t, "d_jittor": d_j,
                         "jittor_vs_torch": distance(j_out[name], t_out[name]),
                         "ratio": d_j / d_t if d_t > 0 else float("inf"), "verdict": judged})
    t_set(t_model, "fp32")
    j_set(j_model, "fp32")
    return rows, times


def markdown(result):
    cfg = result["config"]
    lines = [f"Precision report on {result['device']} ({result['device_name']}): CTEN depth {cfg['visual_depth']}, "
             f"batch {result['batch']}, {cfg['seq_len']} segments of {cfg['snippet_duration']} x "
             f"{cfg['sample_size']} px; reference: PyTorch float64 on the same device", "",
             "d = max |out - ref| / max |ref|; floor = d of PyTorch in that precision; ok: Jittor's d <= "
             f"{FACTOR} x the floor (fp32: or <= {MODEL_RTOL:g}); where PyTorch's own result is not finite "
             "there is no floor, and Jittor passes only by not being finite either", "",
             "| precision | output | PyTorch d (floor) | Jittor d | Jittor / floor | Jittor vs PyTorch | verdict |",
             "|---|---|---:|---:|---:|---:|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['precision']} | {r['output']} | {r['d_torch']:.2e} | {r['d_jittor']:.2e} | "
                     f"{r['ratio']:.2f} | {r['jittor_vs_torch']:.2e} | {r['verdict']} |")
    lines += ["", "Seconds per pass (first passes include Jittor's compilation): " +
              ", ".join(f"{k} {v:.1f}" for k, v in result["seconds"].items())]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(prog="cten-precision-report", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--depth", type=int, default=10, help="visual 3D ResNet depth (101: the real one)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--segments", type=int, default=4)
    p.add_argument("--frames", type=int, default=8, help="frames per snippet (L)")
    p.add_argument("--size", type=int, default=32, help="crop size (S)")
    p.add_argument("--precisions", default=None, help="comma-separated (default: every one the device runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="outputs/precision.json")
    a = p.parse_args(argv)
    if a.device == "cuda":
        from cten_jt.device import set_device
        set_device("cuda")
    precisions = a.precisions.split(",") if a.precisions else None
    for name in precisions or []:
        if name not in PRECISIONS:
            p.error(f"--precisions: {name!r} is not one of {', '.join(PRECISIONS)}")
        if name in GPU_ONLY and a.device != "cuda":
            p.error(f"--precisions: {name} runs on a CUDA GPU only")
    dim = 2048 if a.depth >= 50 else 512
    cfg = dict(n_classes=8, seq_len=a.segments, snippet_duration=a.frames, sample_size=a.size,
               audio_n_segments=a.segments, audio_embed_size=dim, visual_depth=a.depth,
               audio_arch="resnet18", modality="av")
    began = time.time()
    rows, times = report(a.device, cfg, a.batch, a.seed, precisions)
    result = {"device": a.device, "config": cfg, "batch": a.batch, "factor": FACTOR, "fp32_bound": MODEL_RTOL,
              "device_name": torch.cuda.get_device_name() if a.device == "cuda" else "CPU",
              "torch": torch.__version__, "rows": rows, "seconds": times, "total_s": time.time() - began,
              "all_ok": all(r["verdict"] == "ok" or r["verdict"].endswith("Jittor neither") for r in rows)}
    text = markdown(result)
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.splitext(a.out)[0] + ".md", "w") as f:
        f.write(text)
    return 0 if result["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
