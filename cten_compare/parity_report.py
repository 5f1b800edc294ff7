"""Build CTEN in PyTorch, save it as the reference saves it, convert it to Jittor
and back through files, and print the parity table: eval and train forward,
BatchNorm buffers, and the erasing step's views, logits and loss.

    cten-parity-report [--depth 101] [--device cpu|cuda] [--out outputs/parity.json]

``--device cuda`` runs both frameworks on the GPU (PyTorch with TF32 off, as
fp32 parity needs; its other-kernel floor then runs with cuDNN off).
"""
import argparse
import json
import os
import sys
import tempfile
import time
import warnings

import numpy as np
import torch  # before Jittor

import cten_jt  # Jittor's settings first
import jittor as jt
from cten_jt.models import CTEN as JCTEN
from cten_jt.models.state import load_state_arrays
from cten_torch_ref.models import CTEN as TCTEN
from weights_convert import jittor_to_torch, torch_to_jittor

MODEL_RTOL = 1e-4
warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")


FLOOR_FACTOR = 3.0


def _relative(ref, other):
    ref, other = np.asarray(ref, np.float64), np.asarray(other, np.float64)
    return float(np.max(np.abs(ref - other))) / max(float(np.max(np.abs(ref))), 1e-12)


def _row(name, ref, port, floor=None):
    """One output: Jittor against PyTorch, beside PyTorch against itself (the
    reference's own fp32 rounding noise, see main)."""
    ref, port = np.asarray(ref, np.float64), np.asarray(port, np.float64)
    diff = float(np.max(np.abs(ref - port)))
    scale = float(np.max(np.abs(ref)))
    rel = diff / max(scale, 1e-12)
    if rel <= MODEL_RTOL:
        verdict = "ok"
    elif floor is not None and rel <= FLOOR_FACTOR * floor:
        verdict = "at floor"
    else:
        verdict = "NO"
    return {"output": name, "max_abs_diff": diff, "scale": scale, "relative": rel,
            "reference_floor": floor, "tolerance": MODEL_RTOL, "verdict": verdict,
            "ok": verdict != "NO"}


def _reference_outputs(model, visual, audio, state, device="cpu"):
    """Outputs of the PyTorch model from ``state`` (train mode updates BatchNorm buffers)."""
    model.load_state_dict(state)
    with torch.no_grad():
        logits, gamma = model(torch.from_numpy(visual).to(device), torch.from_numpy(audio).to(device))
    return (logits.cpu().numpy(), gamma.cpu().numpy(),
            {k: v.cpu().numpy().copy() for k, v in model.state_dict().items()})


def _other_kernels(device):
    """PyTorch with its other convolution kernels: oneDNN off (CPU) or cuDNN off (GPU)."""
    return torch.backends.cudnn.flags(enabled=False) if device == "cuda" else torch.backends.mkldnn.flags(enabled=False)


def _erasing_rows(t_model, j_model, state, visual, audio, seed, device):
    """The erasing step's three views in both frameworks from the same state and draws."""
    from cten_common.erasing import ClipViews
    from cten_jt import engine as jeng
    from cten_torch_ref import engine as teng
    b, t, _, frames, size, _ = visual.shape
    rng = np.random.default_rng(seed + 7)
    n_frames = np.array([frames * t + 3 * i for i in range(b)], np.int64)
    clip = rng.uniform(0, 255, (b, int(n_frames.max()), 3, size, size)).astype(np.float32)
    batch = {"visual": visual, "audio": audio, "label": (np.arange(b) % 8).astype(np.int64),
             "n_frames": n_frames}
    reader = ClipViews(clip)              # the erased views' frames: from these clips
    t_model.train()
    j_model.train()

    def reference(batch, reader):
        t_model.load_state_dict(state)
        loss, info = teng.erasing_loss(t_model, batch, np.random.default_rng(seed), reader=reader)
        return [x.detach().cpu().numpy() for x in info["logits"]] + [loss.detach().cpu().numpy()], info
    t_out, t_info = reference(batch, reader)
    j_loss, j_info = jeng.erasing_loss(j_model, batch, np.random.default_rng(seed), reader=reader)
    # the reference against itself, as for the forward rows: pixels (and the erased views'
    # frames) nudged by 1e-7, and its other conv kernels; a run whose erasing drew other
    # frames (gamma at a threshold) says nothing about rounding and is left out
    others = [reference({**batch, "visual": visual * np.float32(1 + 1e-7)}, ClipViews(clip * np.float32(1 + 1e-7)))]
    with _other_kernels(device):
        others.append(reference(batch, reader))
    others = [out for out, info in others
              if all(np.array_equal(info["indices"][v], t_info["indices"][v]) for v in ("context", "keyframe"))]
    rows = []
    for view in ("context", "keyframe"):
        same = bool(np.array_equal(t_info["indices"][view], j_info["indices"][view]))
        rows.append({"output": f"erasing: {view} view frames", "max_abs_diff": 0.0 if same else float("nan"),
                     "scale": 1.0, "relative": 0.0 if same else float("nan"), "reference_floor": None,
                     "tolerance": 0.0, "verdict": "ok" if same else "NO", "ok": same})
    names = [f"erasing: {v} view logits" for v in ("original", "context", "keyframe")] + ["erasing: loss"]
    ported = [x.numpy() for x in j_info["logits"]] + [j_loss.numpy()]
    for k, name in enumerate(names):
        floor = max((_relative(t_out[k], o[k]) for o in others), default=None)
        rows.append(_row(name, t_out[k], ported[k], floor))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(prog="cten-parity-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=10, help="visual 3D ResNet depth (101: the real one)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--segments", type=int, default=4)
    parser.add_argument("--frames", type=int, default=8, help="frames per snippet (L)")
    parser.add_argument("--size", type=int, default=32, help="crop size (S)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", default="outputs/parity.json")
    args = parser.parse_args(argv)
    device = args.device
    if device == "cuda":
        from cten_jt.device import set_device
        set_device("cuda")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    dim = 2048 if args.depth >= 50 else 512
    cfg = dict(n_classes=8, seq_len=args.segments, snippet_duration=args.frames,
               sample_size=args.size, audio_n_segments=args.segments, audio_embed_size=dim,
               visual_depth=args.depth, audio_arch="resnet18", modality="av", dropout=0.0)
    print(f"CTEN {cfg} on {device}")
    t_model = TCTEN(init_seed=args.seed, **cfg).to(device)
    rng = np.random.default_rng(args.seed)
    visual = rng.uniform(0, 255, (args.batch, args.segments, 3, args.frames, args.size, args.size)).astype(np.float32)
    audio = rng.normal(size=(args.batch, 100 * args.segments, 128)).astype(np.float32)

    rows, started = [], time.time()
    with tempfile.TemporaryDirectory() as tmp:
        src, jittor_file, back = (os.path.join(tmp, n) for n in ("reference.pth", "model.safetensors", "back.pth"))
        torch.save({"epoch": 0, "optimizer": {},
                    "state_dict": {f"module.{k}": v.cpu() for k, v in t_model.state_dict().items()}}, src)
        torch_to_jittor(src, jittor_file, settings={"snippet_duration": args.frames, "sample_size": args.size})
        j_model = cten_jt.load_weights(JCTEN(init_seed=args.seed + 1, **cfg), jittor_file)
        jittor_to_torch(jittor_file, back, fmt="reference")
        t_model.to(device)
        again = torch.load(back, weights_only=True)["state_dict"]
        original = torch.load(src, weights_only=True)["state_dict"]
        identical = list(again) == list(original) and all(torch.equal(again[k], original[k]) for k in original)
        initial = {k: v.clone() for k, v in t_model.state_dict().items()}
        nudged = visual * np.float32(1 + 1e-7)
        for mode in ("eval", "train"):
            getattr(t_model, mode)()
            getattr(j_model, mode)()
            # the reference against itself: pixels nudged by 1e-7, and its other conv kernels
            others = [_reference_outputs(t_model, nudged, audio, initial, device)]
            with _other_kernels(device):
                others.append(_reference_outputs(t_model, visual, audio, initial, device))
            t_logits, t_gamma, _ = _reference_outputs(t_model, visual, audio, initial, device)   # last: its buffers stay
            j_logits, j_gamma = j_model(jt.array(visual), jt.array(audio))
            rows.append(_row(f"{mode} logits", t_logits, j_logits.numpy(),
                             max(_relative(t_logits, o[0]) for o in others)))
            rows.append(_row(f"{mode} gamma", t_gamma, j_gamma.numpy(),
                             max(_relative(t_gamma, o[1]) for o in others)))
        t_state = {k: v.cpu().numpy() for k, v in t_model.state_dict().items()}
        j_state = cten_jt.state_arrays(j_model)
        stats = [k for k in t_state if k.endswith(("running_mean", "running_var"))]
        worst = max(stats, key=lambda k: np.max(np.abs(t_state[k] - j_state[k])) / max(np.max(np.abs(t_state[k])), 1e-12))
        rows.append(_row(f"running stats after train ({worst})", t_state[worst], j_state[worst],
                         max(_relative(t_state[worst], o[2][worst]) for o in others)))
        load_state_arrays(j_model, {k: v.cpu().numpy() for k, v in initial.items()}, "initial")
        rows += _erasing_rows(t_model, j_model, initial, visual, audio, args.seed, device)

    print(f"\n{'output':<56} {'max |diff|':>10} {'scale':>7} {'relative':>9} {'ref floor':>9}  verdict")
    for r in rows:
        floor = "" if r["reference_floor"] is None else f"{r['reference_floor']:.2e}"
        print(f"{r['output']:<56} {r['max_abs_diff']:>10.2e} {r['scale']:>7.3f} {r['relative']:>9.2e} "
              f"{floor:>9}  {r['verdict']}")
    print(f"\nrelative = max |Jittor - PyTorch| / max |PyTorch|; ok: <= {MODEL_RTOL:g}.  ref floor = the largest "
          "of PyTorch against itself\nwith the pixels scaled by (1 + 1e-7) and with oneDNN off (its other conv kernels); 'at floor': within "
          f"{FLOOR_FACTOR:g}x of it (deep train-mode BatchNorm nets at random init amplify rounding).")
    print(f"\ntorch -> jittor -> torch round trip identical: {'yes' if identical else 'NO'}")
    print(f"total {time.time() - started:.1f} s")
    report = {"config": cfg, "device": device, "rows": rows, "round_trip_identical": identical,
              "all_ok": identical and all(r["ok"] for r in rows)}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.out}")
    return 0 if report["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
