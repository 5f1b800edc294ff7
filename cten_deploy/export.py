"""cten-export WEIGHTS OUT.onnx [--config CONFIG] [--part model|backbone] [--opset 17]

A trained CTEN as an ONNX file that ONNX Runtime and OpenVINO run (``cten-predict
--engine``), exported through the PyTorch twin (``torch.onnx.export``, the TorchScript
exporter) from any file ``load_weights`` reads: a run's checkpoint (it carries its
configuration and class names) or converted weights with ``--config``.

* ``--part model`` (default): ``visual`` [B, T, 3, L, S, S] (pixels 0..255, float32) and, for
  an audio-visual model, ``audio`` [B, 100*Ta, 128] -> ``logits`` [B, classes], ``gamma``
  [B, T].  The batch is a dynamic axis; the segments are not (the temporal attention's
  Linear(T, T) fixes T).
* ``--part backbone``: the frozen 3D ResNet alone (feature extraction): ``snippets`` [N, 3, L,
  S, S] (pixels) -> ``features`` [N, visual_dim], N dynamic.

The file's metadata holds the run configuration and the class names (``onnx_file``).

Exporting checks itself before it writes: ONNX Runtime runs the file on a fixed random
input, at batch 1 and again as the first row of a batch of 2, and every output must lie
within ``FACTOR`` times the twin's own float32 error of the twin in float64 (the floor,
measured in the same call; ``check_outputs``).  A file that fails is not written; the
command says which output broke and by how much.
"""
import argparse
import copy
import json
import os
import sys
import time

import numpy as np

from cten_common.checkpoint_io.errors import CheckpointError
from .onnx_file import FORMAT, FORMAT_VERSION, append_metadata

PARTS = ("model", "backbone")
#: ONNX Runtime's float32 error against the float64 twin, in units of the twin's own float32
#: error (both are float32 evaluations of the same network in a different order: each lies a
#: few roundings of its outputs' size from the float64 result, so their errors are of one
#: size, and a wrong graph is off by far more: a missing BatchNorm or a wrong weight moves the
#: outputs by their own size)
FACTOR = 10.0
#: the smallest floor: one float32 rounding of the largest output (a float32 error of 0, e.g.
#: gamma all zero behind its ReLU, would otherwise demand bits that no other order can match)
FLOAT32_EPS = 2.0 ** -24


class ExportCheckError(ValueError):
    """The exported file's outputs are not the twin's: nothing was written."""


def part_module(model, part):
    """``(torch module, input names, output names, dynamic axes)`` of the part to export."""
    import torch

    class Model(torch.nn.Module):
        part = "model"

        def __init__(self, cten):
            super().__init__()
            self.cten = cten

        def forward(self, visual, audio=None):
            return self.cten(visual, audio)

    class Backbone(torch.nn.Module):
        part = "backbone"

        def __init__(self, cten):
            super().__init__()
            self.cten = cten

        def forward(self, snippets):
            return self.cten.backbone_features(snippets)

    # eval mode, the wrapper too: the exporter puts the module back in the wrapper's mode after
    # exporting, and a wrapper left in train mode would put the whole model in train mode
    if part == "backbone":
        return (Backbone(model).eval(), ["snippets"], ["features"],
                {"snippets": {0: "snippets"}, "features": {0: "snippets"}})
    inputs = ["visual", "audio"] if model.config.modality == "av" else ["visual"]
    return (Model(model).eval(), inputs, ["logits", "gamma"],
            {name: {0: "batch"} for name in inputs + ["logits", "gamma"]})


def check_inputs(model_config, part, batch, seed=0):
    """``{input name: float32 array}``: pixels uniform in 0..255, audio features normal."""
    rng = np.random.default_rng(seed)
    m = model_config
    snippet = (3, m.snippet_duration, m.sample_size, m.sample_size)
    if part == "backbone":
        return {"snippets": rng.uniform(0, 255, (batch * m.seq_len,) + snippet).astype(np.float32)}
    out = {"visual": rng.uniform(0, 255, (batch, m.seq_len) + snippet).astype(np.float32)}
    if m.modality == "av":
        out["audio"] = rng.normal(0, 1, (batch, m.audio_frames, 128)).astype(np.float32)
    return out


def twin_outputs(module, inputs, output_names, dtype, chunk=2):
    """The twin's outputs (numpy) in ``dtype`` ("float32" or "float64").  In float64 the 3D
    ResNet runs ``chunk`` snippets at a time and the rest of the model on its features (the
    same function: CTEN takes [B, T, visual_dim] features as its visual input): PyTorch's
    float64 convolutions unfold their input, 6.6 GB for the paper's 16 snippets at once."""
    import torch
    tensors = [torch.from_numpy(v.astype(dtype)) for v in inputs.values()]
    with torch.no_grad():
        if dtype == "float32":
            out = module(*tensors)
        else:
            net = copy.deepcopy(module).double()
            snippets = tensors[0] if net.part == "backbone" else tensors[0].flatten(0, 1)
            features = torch.cat([net.cten.backbone_features(snippets[i:i + chunk])
                                  for i in range(0, snippets.shape[0], chunk)])
            out = features if net.part == "backbone" else \
                net(features.reshape(tensors[0].shape[0], tensors[0].shape[1], -1), *tensors[1:])
    out = out if isinstance(out, tuple) else (out,)
    return {name: o.numpy() for name, o in zip(output_names, out)}


def check_outputs(got, ref32, ref64, what):
    """``{output: (error, bound, relative to the twin's float32)}``; an ``ExportCheckError``
    naming the first output whose error against the float64 twin exceeds ``FACTOR`` times the
    twin's own float32 error (at least one float32 rounding of the output's largest value)."""
    report = {}
    for name, truth in ref64.items():
        floor = max(float(np.max(np.abs(ref32[name] - truth), initial=0.0)),
                    FLOAT32_EPS * float(np.max(np.abs(truth), initial=0.0)))
        error = float(np.max(np.abs(got[name].astype(np.float64) - truth), initial=0.0))
        scale = float(np.max(np.abs(ref32[name]), initial=0.0)) or 1.0
        relative = float(np.max(np.abs(got[name] - ref32[name]), initial=0.0)) / scale
        report[name] = (error, FACTOR * floor, relative)
        if not error <= FACTOR * floor:
            raise ExportCheckError(f"{what}: output {name!r} is {error:.3g} from the float64 twin, over the "
                                   f"bound {FACTOR:g} x {floor:.3g} (the twin's own float32 error)")
    return report


def export(weights, out, config_path=None, part="model", opset=17, say=print):
    """Export ``weights`` to ``out`` (written only after the check passes); returns the check's
    report ``{"batch 1": {output: (error, bound, relative)}, "batch 2": ...}``."""
    import torch

    from cten_common.checkpoint_io.atomic import atomic_path
    from cten_common.inference import inference_model, run_config
    from cten_torch_ref.backend import BACKEND

    if part not in PARTS:
        raise ValueError(f"--part must be one of {PARTS}, got {part!r}")
    config, classes, checkpoint = run_config(weights, config_path, precision="fp32")
    config = config.updated({"train": {"device": "cpu"}})
    model, _ = inference_model(BACKEND, config, checkpoint)
    module, input_names, output_names, dynamic = part_module(model, part)
    one = check_inputs(config.model, part, 1)
    started = time.perf_counter()
    with atomic_path(out) as tmp:
        import warnings
        with warnings.catch_warnings():        # the TorchScript exporter's notices about its future
            warnings.simplefilter("ignore")
            torch.onnx.export(module, tuple(torch.from_numpy(v) for v in one.values()), tmp,
                              input_names=input_names, output_names=output_names, dynamic_axes=dynamic,
                              opset_version=opset, do_constant_folding=True, dynamo=False)
        append_metadata(tmp, {"format": FORMAT, "format_version": FORMAT_VERSION, "part": part,
                              "config": json.dumps(config.to_dict(), sort_keys=True),
                              "classes": json.dumps(list(classes)), "source": os.path.basename(str(weights))})
        say(f"exported in {time.perf_counter() - started:.1f} s; checking it with ONNX Runtime "
            "against the twin in float32 and float64 ...")
        report = _check(tmp, module, part, config.model, output_names)
    return report


def _check(path, module, part, model_config, output_names):
    from .runtimes import OnnxModel
    runtime = OnnxModel(path, "onnxruntime")
    report = {}
    one = check_inputs(model_config, part, 1)
    ref32, ref64 = (twin_outputs(module, one, output_names, t) for t in ("float32", "float64"))
    report["batch 1"] = check_outputs(runtime.run(one), ref32, ref64, f"{path} (batch 1)")
    # the dynamic batch: the same input as the first row of two
    two = {k: np.concatenate([v, check_inputs(model_config, part, 1, seed=1)[k]]) for k, v in one.items()}
    rows = 1 if part != "backbone" else model_config.seq_len
    got = {k: v[:rows] for k, v in runtime.run(two).items()}
    report["batch 2"] = check_outputs(got, ref32, ref64, f"{path} (the first row of a batch of 2)")
    return report


def main(argv=None):
    p = argparse.ArgumentParser(prog="cten-export", description=__doc__.split("\n\n")[1])
    p.add_argument("weights", help="a run's checkpoint (best.safetensors, ...) or converted weights with --config")
    p.add_argument("out", help="the ONNX file to write (.onnx)")
    p.add_argument("--config", help="the run configuration, for weights that carry none")
    p.add_argument("--part", choices=PARTS, default="model",
                   help="model: the whole CTEN (default); backbone: the 3D ResNet alone, for features")
    p.add_argument("--opset", type=int, default=17)
    a = p.parse_args(argv)
    if not a.out.endswith(".onnx"):
        p.error(f"{a.out}: the output is an .onnx file")
    try:
        report = export(a.weights, a.out, a.config, a.part, a.opset)
    except ExportCheckError as exc:
        print(f"error: not written: {exc}", file=sys.stderr)
        return 1
    except (CheckpointError, ValueError, ImportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for where, outputs in report.items():
        for name, (error, bound, relative) in outputs.items():
            print(f"  {where}, {name}: {error:.3g} from the float64 twin (bound {bound:.3g}); "
                  f"{relative:.3g} relative to the float32 twin")
    print(f"wrote {a.out} ({os.path.getsize(a.out) / 2 ** 20:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
