"""benchmarks/flops.py: hand counts of single layers, the per-axis factorisation of the
inside-input taps against an explicit loop, and every conv/Linear/attention product of the
PyTorch twin, seen through forward hooks, against the counter's layers."""
import itertools
import json
import math
import os

import numpy as np
import pytest
import torch

from benchmarks import flops
from cten_common.config import ModelConfig
from helpers import TINY_AV, TINY_VISUAL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER = ModelConfig().to_dict()      # T=16, L=16, S=112, R3D-101, audio ResNet-18, 8 classes


def _layer(result, name):
    (rec,) = [r for r in result["layers"] if r["name"] == name]
    return rec


def test_r3d_conv1_at_the_paper_shape_by_hand():
    result = flops.count(PAPER, batch=1)
    rec = _layer(result, "resnet.0")
    # 16 snippets of [3, 16, 112, 112]; conv1 64 <- 3, kernel 7x7x7, stride (1,2,2), pad 3
    # output: time (16 + 6 - 7)//1 + 1 = 16, space (112 + 6 - 7)//2 + 1 = 56
    assert rec["out_shape"] == [16, 64, 16, 56, 56]
    # nominal: 64*3 filters-taps * 343 taps * 16*56*56 outputs, per snippet, times 16 snippets
    assert rec["nominal"] == 16 * 64 * 3 * 343 * 16 * 56 * 56 == 52_870_250_496
    # inside-input, time axis (size 16, pad 3, kernel 7, stride 1): input index o + k - 3 in [0, 16)
    #   o=0: k=3..6 -> 4, o=1: 5, o=2: 6, o=3..12: 7 each (10 outputs) = 70, o=13: 6, o=14: 5, o=15: 4
    time_pairs = 4 + 5 + 6 + 70 + 6 + 5 + 4                   # = 100
    # space axis (size 112, pad 3, kernel 7, stride 2): input index 2o + k - 3 in [0, 112)
    #   o=0: k>=3 -> 4; o=1: k>=1 -> 6; o=2..54: all 7 (53 outputs) = 371;
    #   o=55: 110 + k - 3 <= 111 -> k<=4 -> 5
    space_pairs = 4 + 6 + 371 + 5                             # = 386
    assert (time_pairs, space_pairs) == (100, 386)
    assert rec["inside"] == 16 * 64 * 3 * time_pairs * space_pairs * space_pairs == 45_771_571_200


def test_r3d101_layer4_first_3x3x3_by_hand():
    # layer3 leaves [1024, 2, 7, 7] per snippet (16 -> conv1 16 -> pool 8 -> l2 4 -> l3 2;
    # 112 -> 56 -> 28 -> 14 -> 7); layer4.0.conv2 is 512 <- 512, 3x3x3, stride 2, pad 1
    rec = _layer(flops.count(PAPER, batch=1), "resnet.7.0.conv2")
    # output: time (2 + 2 - 3)//2 + 1 = 1, space (7 + 2 - 3)//2 + 1 = 4
    assert rec["out_shape"] == [16, 512, 1, 4, 4]
    assert rec["nominal"] == 16 * 512 * 512 * 27 * 1 * 4 * 4
    # time: o=0 reads k-1 in {-1,0,1}: k=1,2 inside -> 2
    # space: o=0: k-1 -> k=1,2 (2); o=1: 1..3 (3); o=2: 3..5 (3); o=3: 5..7, 7 is out (2) -> 10
    assert rec["inside"] == 16 * 512 * 512 * 2 * 10 * 10


def test_audio_conv1_by_hand():
    rec = _layer(flops.count(PAPER, batch=2), "a_resnet.0")
    # 2*16 segments [1, 100, 128]; kernel (7, 1), stride (2, 1), pad (3, 0)
    # output: (100 + 6 - 7)//2 + 1 = 50, 128
    assert rec["out_shape"] == [32, 64, 50, 128]
    assert rec["nominal"] == 32 * 64 * 7 * 50 * 128
    # time: 2o + k - 3 in [0, 100): o=0: k>=3 (4), o=1: k>=1 (6), o=2..48: 7 (47 outputs),
    # o=49: 98 + k - 3 <= 99 -> k<=4 (5); frequency: kernel 1, no pad -> 128 pairs
    assert rec["inside"] == 32 * 64 * (4 + 6 + 47 * 7 + 5) * 128


def _brute_inside(spatial, kernel, stride, pad):
    """Explicit loop over every output position and kernel offset: taps whose input
    coordinate is inside on every axis."""
    outs = [(s + 2 * p - k) // st + 1 for s, k, st, p in zip(spatial, kernel, stride, pad)]
    inside = 0
    for o in itertools.product(*(range(n) for n in outs)):
        for k in itertools.product(*(range(n) for n in kernel)):
            coord = [oi * st + ki - p for oi, ki, st, p in zip(o, k, stride, pad)]
            inside += all(0 <= c < s for c, s in zip(coord, spatial))
    return tuple(outs), inside


def test_per_axis_factorisation_against_an_explicit_loop():
    rng = np.random.default_rng(7)
    cases = 0
    while cases < 40:
        d = int(rng.integers(1, 4))
        kernel = tuple(int(v) for v in rng.integers(1, 6, d))
        pad = tuple(int(rng.integers(0, k + 1)) for k in kernel)     # up to the kernel: taps that meet only padding
        stride = tuple(int(v) for v in rng.integers(1, 4, d))
        spatial = tuple(int(v) for v in rng.integers(1, 9, d))
        if any(s + 2 * p < k for s, k, p in zip(spatial, kernel, pad)):
            continue
        cin, cout, n = (int(v) for v in rng.integers(1, 5, 3))
        rec = flops.conv_layer("x", "g", n, cin, cout, spatial, kernel, stride, pad)
        outs, inside = _brute_inside(spatial, kernel, stride, pad)
        assert tuple(rec["out_shape"]) == (n, cout) + outs
        assert rec["inside"] == n * cin * cout * inside, (spatial, kernel, stride, pad)
        assert rec["nominal"] == n * cin * cout * math.prod(kernel) * math.prod(outs)
        cases += 1
    # a case where padding does matter, so the two counts cannot coincide by accident
    rec = flops.conv_layer("x", "g", 1, 1, 1, (1, 3), 3, 1, 1)
    assert (rec["nominal"], rec["inside"]) == (1 * 3 * 9, 1 * 7)   # 1 frame: 1 of 3 time taps; 3 wide: 7 pairs


def _hooked_forward(config, batch):
    """Output shapes and nominal MACs of every Conv/Linear of the PyTorch twin in one
    forward (from the modules' own weights), and the MACs of every attention product."""
    from cten_torch_ref.models import attention, build_model
    torch.manual_seed(0)
    model = build_model(config, init_seed=1).eval()
    seen, products = {}, []

    def hook(name):
        def record(module, inputs, output):
            if isinstance(module, torch.nn.Linear):
                rows = output.numel() // output.shape[-1]
                shape, macs = (rows, output.shape[-1]), module.weight.numel() * rows
            else:       # Conv1d/2d/3d: weight [Cout, Cin/groups, *k], output [N, Cout, *spatial]
                shape = tuple(output.shape)
                macs = module.weight.numel() * output.shape[0] * math.prod(output.shape[2:])
            assert name not in seen, f"{name} ran twice"
            seen[name] = (shape, macs)
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in model.named_modules()
               if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d))]
    real = attention.scaled_dot_product_attention

    def spy(query, key, value, scale):
        *lead, t, d = query.shape
        tk, dv = key.shape[-2], value.shape[-1]
        products.append(math.prod(lead) * (t * d * tk + t * tk * dv))    # q k^T, then attn v
        return real(query, key, value, scale)

    cfg = ModelConfig.from_dict(config)
    visual = torch.rand(batch, cfg.seq_len, 3, cfg.snippet_duration, cfg.sample_size, cfg.sample_size) * 255
    audio = torch.randn(batch, cfg.audio_frames, 128) if cfg.modality == "av" else None
    attention.scaled_dot_product_attention = spy
    try:
        with torch.no_grad():
            model(visual, audio)
    finally:
        attention.scaled_dot_product_attention = real
        for h in handles:
            h.remove()
    return seen, products


@pytest.mark.parametrize("config, batch", [
    (TINY_AV, 2),
    (TINY_VISUAL, 3),
    # bottleneck blocks in both backbones
    (dict(n_classes=4, seq_len=2, snippet_duration=8, sample_size=32, audio_n_segments=2,
          audio_embed_size=2048, visual_depth=50, audio_arch="resnet50"), 1),
], ids=["tiny-av-r3d10-resnet18", "tiny-visual-r3d18", "r3d50-resnet50"])
def test_the_counter_matches_the_pytorch_twin(config, batch):
    seen, products = _hooked_forward(config, batch)
    result = flops.count(config, batch)
    counted = {r["name"]: r for r in result["layers"] if r["kind"] != "matmul"}
    assert set(counted) == set(seen)                   # every Conv/Linear once, nothing else
    for name, (shape, macs) in seen.items():
        assert tuple(counted[name]["out_shape"]) == shape, name
        assert counted[name]["nominal"] == macs, name
    hooked_total = sum(macs for _, macs in seen.values())
    assert sum(r["nominal"] for r in counted.values()) == hooked_total
    matmuls = [r["nominal"] for r in result["layers"] if r["kind"] == "matmul"]
    assert sum(matmuls) == sum(products) and len(matmuls) == 2 * len(products)
    assert result["forward"]["nominal"] == hooked_total + sum(products)
    # the batch's count is the sample's times the batch, per group too
    assert result["total"]["per_batch"]["nominal"] == batch * result["total"]["per_sample"]["nominal"]
    for g in result["groups"].values():
        assert g["per_batch"]["inside"] == batch * g["per_sample"]["inside"]


def test_paper_totals_and_training_step_formula():
    result = flops.count(PAPER, batch=32)
    layers = result["layers"]
    fvis = sum(r["nominal"] for r in layers if r["name"].startswith("resnet."))
    assert fvis == sum(result["groups"][f"visual.{g}"]["per_batch"]["nominal"]
                       for g in ("conv1", "layer1", "layer2", "layer3", "layer4"))
    ftr = result["forward"]["nominal"] - fvis
    faud = sum(r["nominal"] for r in layers if r["name"].startswith(("a_resnet.", "a_fc.", "nl_a.0")))
    step = result["training_step"]
    assert step["views"] == 3
    assert step["nominal"]["per_view"] == 3 * fvis + 3 * (3 * ftr)
    assert step["nominal"]["audio_once"] == 3 * fvis + 3 * (3 * (ftr - faud) + faud)
    assert flops.count(PAPER, 32, erasing=False)["training_step"]["nominal"]["per_view"] == fvis + 3 * ftr
    # R3D-101 at 16x112x112: 13.89 GMACs = 27.78 GFLOPs per snippet nominal
    per_snippet = result["total"]["visual_per_snippet"]
    assert per_snippet["nominal"] * 16 == fvis // 32
    assert round(2 * per_snippet["nominal"] / 1e9, 1) == 27.8
    assert per_snippet["inside"] < per_snippet["nominal"]


def test_cli_prints_the_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "flops.json"
    assert flops.main(["--config", os.path.join(ROOT, "configs", "bench_smoke.yaml"), "--set", "model.sample_size=64",
                       "--batch", "4", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| visual.layer3 |" in text and "V*Fvis + 3*V*Ftr" in text
    data = json.loads(out.read_text())["counts"]
    assert data["batch"] == 4 and data["model"]["sample_size"] == 64 and data["model"]["seq_len"] == 4
    assert data == json.loads(json.dumps(flops.count(data["model"], 4)))
    assert flops.main(["--set", "model.visual_depth=7"]) == 2


def test_peak_probe_runs_small_and_counts_its_flops():
    result = flops.peak(gemm=64, conv_shape=(2, 8, 2, 4, 4), repeats=1, budget_s=60.0)
    rows = {(r["framework"], r["op"], r["dtype"]): r for r in result["rows"]}
    assert len(rows) == 8
    for fw in ("PyTorch", "Jittor"):
        gemm, conv = rows[(fw, "gemm", "fp32")], rows[(fw, "conv3d", "fp32")]
        assert gemm["flops"] == 2 * 64 ** 3 and gemm["gflops"] > 0
        # 8 <- 8 channels, 27 taps, 2 samples of 2x4x4 outputs (from 4x6x6 inputs: no padding, every
        # tap inside), 2 FLOPs per MAC
        assert conv["flops"] == 2 * (2 * 8 * 8 * 27 * 2 * 4 * 4) and conv["gflops"] > 0
    assert result["conv_macs"]["nominal"] == result["conv_macs"]["inside"] == 2 * 8 * 8 * 27 * 2 * 4 * 4
    assert flops.probe_conv_input((2, 8, 2, 4, 4)) == (2, 8, 4, 6, 6)
    # the independent count: the layer counter on the unpadded convolution
    layer = flops.conv_layer("probe", "probe", 2, 8, 8, (4, 6, 6), 3, 1, 0)
    assert layer["nominal"] == layer["inside"] == flops.probe_conv_flops((2, 8, 2, 4, 4)) // 2
    # the op's own bf16 (docs/precision.md): the same FLOPs, timed
    bf16 = rows[("Jittor", "conv3d", "bf16")]
    assert bf16["flops"] == rows[("Jittor", "conv3d", "fp32")]["flops"] and bf16["gflops"] > 0
