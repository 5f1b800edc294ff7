"""Multiply-adds of CTEN, counted from its shapes, and a probe of the machine's peak.

    python -m benchmarks.flops [--config configs/X.yaml] [--set key=value ...] [--batch N] [--json OUT]
    python -m benchmarks.flops --peak [--peak-gemm 4096] [--peak-conv 16,256,4,14,14] [--repeats 3]

``count(model_config, batch)`` walks the layers ``cten_torch_ref``/``cten_jt``
build for a model configuration (the dict of ``ModelConfig`` / a config's
``model`` section) and counts multiply-accumulates (MACs; FLOPs = 2 x MACs):

* every convolution of the 3D ResNet visual backbone (Hara et al., shortcut B)
  and of the 2D audio ResNet, the temporal attention's Conv1d;
* every Linear: ``a_fc``, the non-local blocks' theta/phi/g/out, the two
  cross-modal attentions' q/k/v/o, the temporal attention's Linear(T, T), the
  head;
* the attention products: ``theta @ phi^T`` and ``attn @ g`` of each
  non-local block, ``q @ k^T`` and ``attn @ v`` of every head of the two
  multi-head attentions.

Not counted: BatchNorm, activations, pooling, softmax, residual additions,
biases (one add per output), the input normalisation: elementwise work, small
next to the above and not multiply-adds of a product.

Two counts per convolution:

* **nominal**: every kernel tap at every output position,
  ``Cout * Cin/groups * prod(kernel) * prod(output shape)``, what a
  convolution formula of the layer's shapes states;
* **inside-input taps**: only the (output position, kernel offset) pairs whose
  input coordinate lies inside the input, i.e. the count of taps that read real
  input rather than zero padding. Whether a given library computes exactly
  these is not claimed here. It is exact as a product over the axes of the
  number of valid (output index, kernel offset) pairs per axis
  (``axis_taps``): a tap reads real input iff its coordinate is in bounds on
  every axis, and those conditions are independent per axis.

For Linears and products both counts are equal.  Everything scales with the
batch; the visual backbone runs on B*T snippets, the audio backbone on B*Ta
100-frame segments.

The training-step estimate (``training_step``) is a formula, printed with its
numbers: forward of each view, the frozen visual backbone forward only (no
graph: no weight and no input gradient), and a backward of the trained parts
taken as 2 x their forward (one product for the input gradient, one for the
weight gradient).
"""
import argparse
import json
import math
import statistics
import sys
import time

from cten_common.config import (ATTENTION_HEADS, AUDIO_ARCHS, AUDIO_FRAMES_PER_SEGMENT, AUDIO_MEL_BINS,
                                EXPANSION, NONLOCAL_INNER, VISUAL_DEPTHS, ModelConfig)

GROUPS = ("visual.conv1", "visual.layer1", "visual.layer2", "visual.layer3", "visual.layer4",
          "audio.backbone", "attention/linears", "head")


# --------------------------------------------------------------------------- counting primitives

def axis_taps(size, kernel, stride, pad):
    """``(n_out, valid)`` along one axis: the output length (floor mode) and the number of
    (output index o, kernel offset k) pairs with ``0 <= o*stride + k - pad < size``."""
    n_out = (size + 2 * pad - kernel) // stride + 1
    if n_out < 1:
        raise ValueError(f"axis of {size} with kernel {kernel}, stride {stride}, pad {pad} has no output")
    valid = 0
    for o in range(n_out):
        start = o * stride - pad
        # kernel offsets k with 0 <= start + k < size and 0 <= k < kernel
        lo, hi = max(0, -start), min(kernel, size - start)
        valid += max(0, hi - lo)
    return n_out, valid


def pool_out(size, kernel, stride, pad):
    """Output length of a pooling window along one axis (floor mode, as PyTorch's default)."""
    return (size + 2 * pad - kernel) // stride + 1


def _tuple(v, n):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def conv_layer(name, group, n, cin, cout, spatial, kernel, stride=1, pad=0, groups=1):
    """A convolution over ``n`` inputs of ``cin`` channels and ``spatial`` shape: its record
    (``out_shape`` is ``(n, cout, *out_spatial)``)."""
    d = len(spatial)
    kernel, stride, pad = _tuple(kernel, d), _tuple(stride, d), _tuple(pad, d)
    outs, valids = zip(*(axis_taps(s, k, st, p) for s, k, st, p in zip(spatial, kernel, stride, pad)))
    per_tap = cout * (cin // groups)
    nominal = n * per_tap * math.prod(kernel) * math.prod(outs)
    inside = n * per_tap * math.prod(valids)
    return {"name": name, "group": group, "kind": f"conv{d}d", "out_shape": (n, cout) + tuple(outs),
            "kernel": kernel, "stride": stride, "pad": pad, "nominal": nominal, "inside": inside}


def linear_layer(name, group, rows, fin, fout):
    macs = rows * fin * fout
    return {"name": name, "group": group, "kind": "linear", "out_shape": (rows, fout),
            "nominal": macs, "inside": macs}


def matmul(name, group, batch, m, k, n):
    """``batch`` products of [m, k] @ [k, n]."""
    macs = batch * m * k * n
    return {"name": name, "group": group, "kind": "matmul", "out_shape": (batch, m, n),
            "nominal": macs, "inside": macs}


# --------------------------------------------------------------------------- the model's layers

def _resnet_layers(prefix, groups, n, spatial, block, layers):
    """Layers 1-4 of a ResNet (the project's BasicBlock/Bottleneck, stride on the 3x3 conv,
    a 1x1 conv shortcut where the shape changes) on ``n`` inputs of 64 channels; the
    records and the final spatial shape."""
    out, cin = [], 64
    for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
        stride = 1 if i == 0 else 2
        group = groups[i]
        for b in range(blocks):
            s = stride if b == 0 else 1
            p = f"{prefix}.{4 + i}.{b}"
            if block == "basic":
                c1 = conv_layer(f"{p}.conv1", group, n, cin, planes, spatial, 3, s, 1)
                c2 = conv_layer(f"{p}.conv2", group, n, planes, planes, c1["out_shape"][2:], 3, 1, 1)
                convs = [c1, c2]
            else:
                c1 = conv_layer(f"{p}.conv1", group, n, cin, planes, spatial, 1)
                c2 = conv_layer(f"{p}.conv2", group, n, planes, planes, spatial, 3, s, 1)
                c3 = conv_layer(f"{p}.conv3", group, n, planes, planes * 4, c2["out_shape"][2:], 1)
                convs = [c1, c2, c3]
            cout = planes * EXPANSION[block]
            block_out = convs[-1]["out_shape"][2:]
            if b == 0 and (s != 1 or cin != cout):
                convs.append(conv_layer(f"{p}.downsample.0", group, n, cin, cout, spatial, 1, s, 0))
                if convs[-1]["out_shape"][2:] != block_out:
                    raise AssertionError(f"{p}: shortcut {convs[-1]['out_shape']} != block output {block_out}")
            out += convs
            spatial, cin = block_out, cout
    return out, spatial


def layers(model_config, batch):
    """Every counted operation of CTEN at ``batch`` samples, in forward order; ``name`` is the
    PyTorch twin's module name (products: the module's name and the product)."""
    cfg = model_config if isinstance(model_config, ModelConfig) else ModelConfig.from_dict(dict(model_config))
    b, t = batch, cfg.seq_len
    out = []
    # visual backbone on B*T snippets [3, L, S, S]
    n = b * t
    conv1 = conv_layer("resnet.0", "visual.conv1", n, 3, 64, (cfg.snippet_duration, cfg.sample_size,
                                                              cfg.sample_size), 7, (1, 2, 2), 3)
    out.append(conv1)
    spatial = tuple(pool_out(s, 3, 2, 1) for s in conv1["out_shape"][2:])
    block, stages = VISUAL_DEPTHS[cfg.visual_depth]
    convs, spatial = _resnet_layers("resnet", [f"visual.layer{i}" for i in (1, 2, 3, 4)], n, spatial,
                                    block, stages)
    out += convs
    pool = (math.ceil(cfg.snippet_duration / 16), math.ceil(cfg.sample_size / 32), math.ceil(cfg.sample_size / 32))
    if tuple(pool_out(s, k, 1, 0) for s, k in zip(spatial, pool)) != (1, 1, 1):
        raise ValueError(f"the visual backbone's last feature map {spatial} does not pool to one feature "
                         f"with the average pool {pool}: snippet_duration/sample_size do not fit")
    vd = cfg.visual_dim
    if cfg.modality == "av":
        na = b * cfg.audio_n_segments
        a1 = conv_layer("a_resnet.0", "audio.backbone", na, 1, 64, (AUDIO_FRAMES_PER_SEGMENT, AUDIO_MEL_BINS),
                        (7, 1), (2, 1), (3, 0))
        out.append(a1)
        spatial = tuple(pool_out(s, 3, 2, 1) for s in a1["out_shape"][2:])
        ablock, astages = AUDIO_ARCHS[cfg.audio_arch]
        convs, spatial = _resnet_layers("a_resnet", ["audio.backbone"] * 4, na, spatial, ablock, astages)
        out += convs
        if tuple(pool_out(s, k, k, 0) for s, k in zip(spatial, (4, 8))) != (1, 1):     # AvgPool2d((4, 8))
            raise ValueError(f"the audio backbone's last feature map {spatial} is not pooled to one feature")
        out.append(linear_layer("a_fc.0", "attention/linears", na, cfg.audio_backbone_dim, cfg.audio_embed_size))
    modules = [("nl.0", vd)] + ([("nl_a.0", cfg.audio_embed_size)] if cfg.modality == "av" else [])
    for name, dim in modules:
        g = "attention/linears"
        for part in ("theta", "phi", "g"):
            out.append(linear_layer(f"{name}.{part}", g, b * t, dim, NONLOCAL_INNER))
        out.append(matmul(f"{name} theta@phi^T", g, b, t, NONLOCAL_INNER, t))
        out.append(matmul(f"{name} attn@g", g, b, t, t, NONLOCAL_INNER))
        out.append(linear_layer(f"{name}.out", g, b * t, NONLOCAL_INNER, dim))
    if cfg.modality == "av":
        head_dim = vd // ATTENTION_HEADS
        for name in ("v2a_attn", "a2v_attn"):
            g = "attention/linears"
            for part in ("q", "k", "v"):
                out.append(linear_layer(f"{name}.linear_{part}", g, b * t, vd, vd))
            out.append(matmul(f"{name} q@k^T", g, b * ATTENTION_HEADS, t, head_dim, t))
            out.append(matmul(f"{name} attn@v", g, b * ATTENTION_HEADS, t, t, head_dim))
            out.append(linear_layer(f"{name}.linear_o", g, b * t, vd, vd))
    out.append(conv_layer("ta_net.conv.0", "attention/linears", b, cfg.fused_dim, 1, (t,), 1))
    out.append(linear_layer("ta_net.fc", "attention/linears", b, t, t))
    out.append(linear_layer("fc", "head", b, cfg.fused_dim, cfg.n_classes))
    return out


# which layers the training step trains, and which run once per step when the audio
# branch is shared by the three views (train.audio_once)
def _trained(rec):
    return not rec["name"].startswith("resnet.")


def _audio_branch(rec):
    return rec["name"].startswith(("a_resnet.", "a_fc.", "nl_a.0"))


def _sum(records, key, where=lambda r: True):
    return sum(r[key] for r in records if where(r))


def training_step(records, views):
    """The training-step estimate of both audio schedules, MACs (nominal and inside-input).

    V = views (3 with erasing: original, context, keyframe; 1 without);
    Fvis = frozen visual backbone forward, Ftr = forward of the trained parts
    (everything else), Faud = the audio branch's part of Ftr (audio ResNet, a_fc, nl_a).

    * audio branch per view (the reference): ``V*Fvis + V*Ftr + 2*V*Ftr``;
    * audio branch once per step (train.audio_once, Jittor):
      ``V*Fvis + (V*(Ftr-Faud) + Faud) * 3``, i.e. forward plus a backward of 2x it.
    """
    out = {"views": views,
           "formula_per_view": "V*Fvis + 3*V*Ftr   (forward V*(Fvis+Ftr); backward ~ 2*V*Ftr; "
                               "the frozen visual backbone: forward only, no weight or input gradient; "
                               "an upper bound by the audio conv1's input gradient, which is not needed)",
           "formula_audio_once": "V*Fvis + 3*(V*(Ftr-Faud) + Faud)   (the audio branch Faud forward and "
                                 "backward once per step for the V views)"}
    for key in ("nominal", "inside"):
        fvis = _sum(records, key, lambda r: not _trained(r))
        ftr = _sum(records, key, _trained)
        faud = _sum(records, key, _audio_branch)
        out[key] = {"Fvis": fvis, "Ftr": ftr, "Faud": faud,
                    "per_view": views * fvis + 3 * views * ftr,
                    "audio_once": views * fvis + 3 * (views * (ftr - faud) + faud)}
    return out


def count(model_config, batch, erasing=True):
    """MACs of CTEN with ``model_config`` (dict or ModelConfig) at ``batch`` samples.

    Returns a dict: ``layers`` (every counted op at the batch), ``groups``
    (``{group: {"per_snippet", "per_sample", "per_batch"}}`` each ``{"nominal",
    "inside"}`` MACs; per_snippet only for the two backbones: per visual snippet /
    per 100-frame audio segment), ``total`` (forward, same layout), ``forward``
    (the batch's forward MACs), ``training_step`` (see ``training_step``; V = 3 with
    ``erasing``, else 1).  All counts are exact integers; FLOPs = 2 x MACs.
    """
    cfg = model_config if isinstance(model_config, ModelConfig) else ModelConfig.from_dict(dict(model_config))
    if int(batch) < 1:
        raise ValueError(f"batch must be a positive integer, got {batch}")
    sample = layers(cfg, 1)
    at_batch = layers(cfg, batch)
    groups = {}
    for g in GROUPS:
        recs = [r for r in sample if r["group"] == g]
        if not recs:
            continue
        per_sample = {k: _sum(recs, k) for k in ("nominal", "inside")}
        entry = {"per_sample": per_sample,
                 "per_batch": {k: _sum(at_batch, k, lambda r: r["group"] == g) for k in ("nominal", "inside")}}
        if g.startswith(("visual.", "audio.")):
            units = cfg.seq_len if g.startswith("visual.") else cfg.audio_n_segments
            entry["per_snippet"] = {k: v // units for k, v in per_sample.items()}
        groups[g] = entry
    total = {"per_sample": {k: _sum(sample, k) for k in ("nominal", "inside")},
             "per_batch": {k: _sum(at_batch, k) for k in ("nominal", "inside")}}
    visual = [g for g in groups if g.startswith("visual.")]
    total["visual_per_snippet"] = {k: sum(groups[g]["per_snippet"][k] for g in visual) for k in ("nominal", "inside")}
    return {"model": cfg.to_dict(), "batch": int(batch), "unit": "MACs (multiply-accumulates); FLOPs = 2 x MACs",
            "layers": [dict(r, out_shape=list(r["out_shape"])) for r in at_batch],
            "groups": groups, "total": total, "forward": total["per_batch"],
            "training_step": training_step(at_batch, 3 if erasing else 1)}


# --------------------------------------------------------------------------- report

def _g(macs):
    """G units: two decimals, or three significant digits below 0.01 G."""
    if 0 < macs < 1e7:
        return f"{macs / 1e9:.3g}"
    return f"{macs / 1e9:,.2f}"


def markdown(result, audio_once=None):
    b = result["batch"]
    m = result["model"]
    lines = [f"CTEN MACs (G = 1e9 multiply-accumulates; GFLOPs = 2 x GMACs): visual depth {m['visual_depth']}, "
             f"modality {m['modality']}" + (f", audio {m['audio_arch']}" if m["modality"] == "av" else "")
             + f", T={m['seq_len']}, L={m['snippet_duration']}, S={m['sample_size']}, batch {b}", "",
             "| group (GMACs) | per snippet, nominal | per snippet, inside-input | per sample, nominal "
             "| per sample, inside-input | per batch, nominal | per batch, inside-input |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for g, e in result["groups"].items():
        snip = e.get("per_snippet")
        lines.append(f"| {g} | " + (f"{_g(snip['nominal'])} | {_g(snip['inside'])}" if snip else "- | -")
                     + f" | {_g(e['per_sample']['nominal'])} | {_g(e['per_sample']['inside'])}"
                     f" | {_g(e['per_batch']['nominal'])} | {_g(e['per_batch']['inside'])} |")
    t = result["total"]
    vs = t["visual_per_snippet"]
    lines.append(f"| **total forward** | visual {_g(vs['nominal'])} | visual {_g(vs['inside'])}"
                 f" | {_g(t['per_sample']['nominal'])} | {_g(t['per_sample']['inside'])}"
                 f" | {_g(t['per_batch']['nominal'])} | {_g(t['per_batch']['inside'])} |")
    f = result["forward"]
    lines += ["", f"Forward of the batch: {_g(f['nominal'])} GMACs = {_g(2 * f['nominal'])} GFLOPs nominal; "
                  f"{_g(f['inside'])} GMACs = {_g(2 * f['inside'])} GFLOPs inside-input taps.", ""]
    ts = result["training_step"]
    lines += [f"Training step estimate, V = {ts['views']} views, batch {b}; Fvis = frozen visual backbone "
              "forward, Ftr = forward of the trained parts, Faud = audio branch (a_resnet, a_fc, nl_a):",
              f"* audio branch per view (reference): {ts['formula_per_view']}",
              f"* audio branch once per step (train.audio_once): {ts['formula_audio_once']}", "",
              "| count | Fvis | Ftr | Faud | step, per view (GFLOPs) | step, audio once (GFLOPs) |",
              "|---|---:|---:|---:|---:|---:|"]
    for key, label in (("nominal", "nominal"), ("inside", "inside-input")):
        e = ts[key]
        lines.append(f"| {label} (GMACs) | {_g(e['Fvis'])} | {_g(e['Ftr'])} | {_g(e['Faud'])} "
                     f"| {_g(2 * e['per_view'])} | {_g(2 * e['audio_once'])} |")
    if audio_once is not None and m["modality"] == "av":
        lines += ["", f"This configuration runs the audio branch "
                      f"{'once per step' if audio_once else 'per view'} (train.audio_once={audio_once})."]
    return "\n".join(lines)


# --------------------------------------------------------------------------- peak probe

def _time(fn, repeats, warmup=1):
    """Median seconds of ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _probe_row(framework, op, dtype, build, repeats, budget_s):
    """One probe: ``build(pilot)`` returns ``(fn, flops)`` of the small (pilot) or full case.
    The pilot (one warm-up call, median of three) runs first; when it predicts the full case
    would take more than ``budget_s`` in all, the pilot's rate is reported instead."""
    row = {"framework": framework, "op": op, "dtype": dtype}
    try:
        fn, small = build(True)
        rate = small / _time(fn, 3)
        fn, flops = build(False)
        predicted = flops / rate * (repeats + 1)
        if predicted > budget_s:
            return dict(row, flops=small, gflops=float(f"{rate / 1e9:.4g}"), repeats=3,
                        reason=f"the pilot size only: the full size would take ~{predicted:.0f} s")
        seconds = _time(fn, repeats)
    except Exception as exc:        # a dtype or op the framework does not run here
        return dict(row, gflops="n/a", reason=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    return dict(row, flops=flops, seconds=seconds, repeats=repeats, gflops=float(f"{flops / seconds / 1e9:.4g}"))


#: the conv3d probe's output [N, C, D, H, W]: a layer3-like 3x3x3 C->C convolution
PROBE_CONV = (16, 256, 4, 14, 14)


def probe_conv_input(conv_shape=PROBE_CONV):
    """The conv3d probe's input: ``conv_shape`` (its output) plus 2 in every spatial axis, so
    that the 3x3x3 convolution runs without padding.  Every tap then reads input: the
    nominal and the performed FLOPs are the same number.  (With padding 1 a third of the
    temporal taps of a 4-frame input meet padding; oneDNN skips those, so a padded probe's
    nominal GFLOP/s overstated the machine's rate by about 1/0.756 at the default shape.)"""
    n, c, d, h, w = conv_shape
    return (n, c, d + 2, h + 2, w + 2)


def probe_conv_flops(conv_shape=PROBE_CONV):
    """FLOPs (2 x MACs) of the conv3d probe: every tap of every output, all inside the input."""
    n, c, d, h, w = conv_shape
    return 2 * n * c * c * 27 * d * h * w


def peak(gemm=4096, conv_shape=PROBE_CONV, repeats=3, device="cpu", budget_s=15.0):
    """Attainable GFLOP/s of a square GEMM [n, n] @ [n, n] (2*n^3 FLOPs) and an unpadded
    3x3x3 conv3d C->C with output ``conv_shape`` [N, C, D, H, W] (``probe_conv_input``;
    FLOPs: ``probe_conv_flops``, nominal = performed) in PyTorch (``torch.mm``, ``conv3d``)
    and Jittor (``jt.matmul``, the project's ``fast_conv``), fp32 and bf16: the median of
    ``repeats`` timed calls after a warm-up, each preceded by a pilot at n/4 (GEMM) or one
    sample (conv) that skips a case slower than ``budget_s``.  Rows with "n/a" and the
    reason where a case does not run."""
    import numpy as np
    import torch                # before Jittor: the two oneDNNs clash the other way round
    import cten_jt  # noqa: F401  (the project's Jittor settings, before jittor)
    import jittor as jt
    from cten_jt.kernels.conv import available, fast_conv

    use_cuda = device == "cuda"
    tdev = torch.device("cuda" if use_cuda else "cpu")
    jt.flags.use_cuda = 1 if use_cuda else 0
    rng = np.random.default_rng(0)
    c = conv_shape[1]
    w_np = rng.standard_normal((c, c, 3, 3, 3), dtype=np.float32) * 0.05

    def gemm_case(pilot):
        n = max(64, gemm // 4) if pilot else gemm
        return rng.standard_normal((n, n), dtype=np.float32), 2 * n ** 3

    def conv_case(pilot):
        shape = (1,) + tuple(conv_shape[1:]) if pilot else tuple(conv_shape)
        return rng.standard_normal(probe_conv_input(shape), dtype=np.float32), probe_conv_flops(shape)

    def tsync():
        if use_cuda:
            torch.cuda.synchronize()

    def torch_build(op, tdtype):
        def build(pilot):
            x_np, count_ = (gemm_case if op == "gemm" else conv_case)(pilot)
            x = torch.from_numpy(x_np).to(tdev, tdtype)
            w = torch.from_numpy(w_np).to(tdev, tdtype)

            def fn():
                # float32 is float32: PyTorch's cuDNN convolutions default to TF32 (on the H200
                # the fp32 conv3d probe ran at 362 TFLOP/s, five times the card's fp32 rate)
                with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
                    torch.mm(x, x) if op == "gemm" else torch.nn.functional.conv3d(x, w)
                tsync()
            return fn, count_
        return build

    def jittor_build(op, bf16):
        def build(pilot):
            x_np, count_ = (gemm_case if op == "gemm" else conv_case)(pilot)
            x = jt.array(x_np)
            # every call ends with the device's: Var.sync() only queues the GPU's work (on the
            # H200 the probe's calls 'took' 0.05 ms, 33 PFLOP/s)
            if op == "gemm":
                x = x.bfloat16() if bf16 else x
                return (lambda: (jt.matmul(x, x).sync(), jt.sync_all(use_cuda))), count_
            w = jt.array(w_np).stop_grad()
            precision = "bf16" if bf16 else "fp32"       # the op's own bf16 (float32 arrays around it)
            return (lambda: (fast_conv(x, w, (1, 1, 1), (0, 0, 0), precision=precision).sync(),
                             jt.sync_all(use_cuda))), count_
        return build

    rows = []
    for name, tdtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        for op in ("gemm", "conv3d"):
            rows.append(_probe_row("PyTorch", op, name, torch_build(op, tdtype), repeats, budget_s))
    for name in ("fp32", "bf16"):
        rows.append(_probe_row("Jittor", "gemm", name, jittor_build("gemm", name == "bf16"), repeats, budget_s))
        if not available():
            rows.append({"framework": "Jittor", "op": "conv3d", "dtype": name, "gflops": "n/a",
                         "reason": "fast_conv unavailable (no system oneDNN / cuDNN)"})
        else:
            rows.append(_probe_row("Jittor", "conv3d", name, jittor_build("conv3d", name == "bf16"), repeats,
                                   budget_s))
        jt.sync_all()
        jt.gc()
    macs = probe_conv_flops(conv_shape) // 2
    return {"device": device, "gemm": gemm, "conv_shape": list(conv_shape), "conv_padding": 0, "repeats": repeats,
            "conv_macs": {"nominal": macs, "inside": macs}, "rows": rows}


def peak_markdown(result):
    cs = result["conv_shape"]
    conv = (f"conv3d 3x3x3 {cs[1]}->{cs[1]} without padding, output {cs} ({_g(2 * result['conv_macs']['nominal'])} "
            "GFLOPs, every tap inside the input)" if result.get("conv_padding") == 0 else
            f"conv3d 3x3x3 pad 1 {cs[1]}->{cs[1]} on {cs} ({_g(2 * result['conv_macs']['nominal'])} GFLOPs nominal, "
            f"{_g(2 * result['conv_macs']['inside'])} inside-input; the GFLOP/s below are nominal, an overstatement "
            "where the kernel skips the padded taps)")
    lines = [f"Peak probe on {result['device']}: GEMM {result['gemm']}^2 (2*n^3 FLOPs); {conv}; medians after "
             "warm-up", "",
             "| framework | op | dtype | GFLOP/s | median s | note |", "|---|---|---|---:|---:|---|"]
    for r in result["rows"]:
        secs = f"{r['seconds']:.4f} ({r['repeats']} runs)" if "seconds" in r else "-"
        if r["gflops"] == "n/a":
            secs = "-"
        lines.append(f"| {r['framework']} | {r['op']} | {r['dtype']} | {r['gflops']} | {secs} "
                     f"| {r.get('reason', '')} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI

def main(argv=None):
    from cten_common.config import load_run_config
    p = argparse.ArgumentParser(prog="benchmarks.flops", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="a run configuration YAML (default: the built-in defaults)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set model.sample_size=112 (repeatable)")
    p.add_argument("--batch", type=int, help="batch size (default: the config's train.batch_size)")
    p.add_argument("--json", help="write the counts (and the probe) to this JSON file")
    p.add_argument("--peak", action="store_true", help="also probe the machine's attainable GFLOP/s")
    p.add_argument("--peak-gemm", type=int, default=4096, help="GEMM size n of the probe (default 4096)")
    p.add_argument("--peak-conv", default=",".join(map(str, PROBE_CONV)),
                   help="conv3d output N,C,D,H,W of the probe, unpadded (default 16,256,4,14,14; its input is "
                        "2 larger in D, H, W)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats of each probe (default 3)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device of the probe")
    p.add_argument("--budget", type=float, default=15.0,
                   help="seconds one probe case may take; a slower case reports its pilot (default 15)")
    args = p.parse_args(argv)
    try:
        config = load_run_config(args.config, args.set).to_dict()
    except ValueError as exc:
        print(f"benchmarks.flops: {exc}", file=sys.stderr)
        return 2
    batch = args.batch if args.batch is not None else int(config["train"]["batch_size"])
    if batch < 1:
        print(f"benchmarks.flops: --batch must be positive, got {batch}", file=sys.stderr)
        return 2
    result = count(config["model"], batch, erasing=bool(config["train"]["erasing"]))
    print(markdown(result, audio_once=bool(config["train"]["audio_once"])))
    out = {"counts": result}
    if args.peak:
        shape = tuple(int(v) for v in args.peak_conv.split(","))
        if len(shape) != 5:
            print("benchmarks.flops: --peak-conv takes N,C,D,H,W", file=sys.stderr)
            return 2
        probe = peak(args.peak_gemm, shape, args.repeats, args.device, args.budget)
        print()
        print(peak_markdown(probe))
        out["peak"] = probe
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
