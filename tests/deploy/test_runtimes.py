"""cten_deploy/runtimes.py and cten-predict --engine: ONNX Runtime and OpenVINO predict what
Jittor predicts, from an exported file or a checkpoint exported on the fly."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cten_common.collection import Entry, load_sample
from cten_common.config import load_run_config
from cten_common.data.datasets import clip_config, collate
from cten_deploy import export as ex
from helpers import make_tiny_run
from test_export import perturbed_weights

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("engines")
    config = make_tiny_run(root)
    weights = perturbed_weights(root / "w.safetensors", str(config))
    ex.export(weights, root / "m.onnx", str(config), say=lambda *_: None)
    video = sorted((root / "data" / "videos" / "Anger").iterdir())[0]
    return {"root": root, "config": str(config), "weights": str(weights), "onnx": str(root / "m.onnx"),
            "video": str(video), "audio": str(root / "data" / "audio" / "Anger" / (video.stem + ".wav"))}


def _engine(name):
    if name == "jittor":
        from cten_jt.predict import ENGINE
        return ENGINE
    from cten_deploy.engine import OnnxEngine
    return OnnxEngine(name)


@pytest.mark.parametrize("name", ["jittor", "onnxruntime", "openvino"])
def test_every_engine_gives_the_twins_logits_on_a_video(tiny, name):
    """One video's sample through each engine, against the twin in float64, within the export
    check's bound (FACTOR times the twin's own float32 error on this sample)."""
    engine = _engine(name)
    weights = tiny["onnx"] if name != "jittor" else tiny["weights"]
    model, config, classes = engine.load(weights, None if name != "jittor" else tiny["config"])
    labels = json.loads((tiny["root"] / "data" / "annotations.json").read_text())["labels"]
    assert list(classes) == labels
    sample, _ = load_sample(Entry(tiny["video"], tiny["audio"]), clip_config(config, train=False), classes)
    batch = collate([sample])
    got = engine.predict_batch(model, batch)
    from cten_common.inference import inference_model, run_config
    from cten_torch_ref.backend import BACKEND
    cfg, _, ckpt = run_config(tiny["weights"], tiny["config"], precision="fp32")
    module, _, names, _ = ex.part_module(inference_model(BACKEND, cfg, ckpt)[0], "model")
    inputs = {"visual": np.asarray(batch["visual"], np.float32), "audio": np.asarray(batch["audio"], np.float32)}
    ref32, ref64 = (ex.twin_outputs(module, inputs, names, t) for t in ("float32", "float64"))
    ex.check_outputs(got, ref32, ref64, name)


def _predict(*args, env=None):
    return subprocess.run([sys.executable, "-m", "cten_deploy.predict", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env=dict(os.environ, **(env or {})))


def test_the_command_gives_the_same_prediction_with_each_engine(tiny, tmp_path):
    tops = {}
    for name in ("jittor", "onnxruntime", "openvino"):
        weights = ["--weights", tiny["weights"], "--config", tiny["config"]] if name == "jittor" else \
            ["--weights", tiny["onnx"]]
        done = _predict(tiny["video"], "--audio", tiny["audio"], "--engine", name, *weights,
                        "--json", tmp_path / f"{name}.json")
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads((tmp_path / f"{name}.json").read_text())
        tops[name] = [t["emotion"] for t in result["top"]]
        assert len(result["segments"]) == 2 and result["ground_truth"]
    assert tops["onnxruntime"] == tops["jittor"] == tops["openvino"]
    # a collection (the annotation's videos) through a runtime: a line per video
    out = tmp_path / "all.jsonl"
    done = _predict(tiny["root"] / "data" / "annotations.json", "--engine", "onnxruntime", "--weights", tiny["onnx"],
                    "--video-root", tiny["root"] / "data" / "videos", "--audio-root", tiny["root"] / "data" / "audio",
                    "--out", out, "--workers", "0")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 8 and all(x["ok"] for x in lines)


def test_a_checkpoint_is_exported_once_and_cached(tiny, tmp_path):
    env = {"CTEN_ONNX_CACHE": str(tmp_path / "cache")}
    args = (tiny["video"], "--audio", tiny["audio"], "--engine", "onnxruntime", "--weights", tiny["weights"],
            "--config", tiny["config"])
    first, second = _predict(*args, env=env), _predict(*args, env=env)
    assert first.returncode == 0 and second.returncode == 0, first.stderr[-2000:] + second.stderr[-2000:]
    assert "exporting" in first.stdout and "exporting" not in second.stdout
    assert len(os.listdir(tmp_path / "cache")) == 1
    assert first.stdout.splitlines()[-6:] == second.stdout.splitlines()[-6:]


def test_what_a_runtime_cannot_do_is_refused_by_name(tiny, tmp_path):
    refused = _predict(tiny["video"], "--audio", tiny["audio"], "--engine", "onnxruntime", "--weights",
                       tiny["onnx"], "--precision", "bf16")
    assert refused.returncode == 2 and "onnxruntime runs this model in fp32 only" in refused.stderr
    under_mpi = _predict(tiny["video"], tiny["video"], "--engine", "openvino", "--weights", tiny["onnx"],
                         "--out", tmp_path / "r.jsonl", env={"OMPI_COMM_WORLD_SIZE": "2"})
    assert under_mpi.returncode == 2 and "not under mpirun" in under_mpi.stderr
    backbone = tmp_path / "b.onnx"
    ex.export(tiny["weights"], backbone, tiny["config"], part="backbone", say=lambda *_: None)
    wrong = _predict(tiny["video"], "--engine", "onnxruntime", "--weights", backbone)
    assert wrong.returncode == 2 and "holds the backbone alone" in wrong.stderr
    with_config = _predict(tiny["video"], "--engine", "onnxruntime", "--weights", tiny["onnx"], "--config",
                           tiny["config"])
    assert with_config.returncode == 2 and "drop --config" in with_config.stderr


BF16_REFUSED = """
import sys
from cten_deploy.runtimes import OnnxModel
try:
    OnnxModel(sys.argv[1], "openvino", "bf16")
except ValueError as exc:
    print("refused:", exc)
    raise SystemExit(0)
print("compiled")
"""


def test_openvino_refuses_bf16_by_name_where_it_cannot_run_it(tiny, monkeypatch):
    """Both refusals, on every machine: a CPU without bf16 units (its capabilities
    made to say so), and a CPU whose bf16 units OpenVINO's oneDNN may not use (oneDNN limited
    to AVX2: compiling fails, on a CPU with bf16 units or without)."""
    import openvino as ov
    from cten_deploy.runtimes import OnnxModel
    real = ov.Core.get_property
    monkeypatch.setattr(ov.Core, "get_property", lambda self, device, name: "FP32 INT8" if
                        name == "OPTIMIZATION_CAPABILITIES" else real(self, device, name))
    with pytest.raises(ValueError, match="no bf16 units"):
        OnnxModel(tiny["onnx"], "openvino", "bf16")
    done = subprocess.run([sys.executable, "-c", BF16_REFUSED, tiny["onnx"]], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=dict(os.environ, PYTHONPATH=ROOT, ONEDNN_MAX_CPU_ISA="AVX2"))
    assert done.returncode == 0 and done.stdout.startswith("refused:") and "bf16" in done.stdout, \
        done.stdout[-2000:] + done.stderr[-2000:]


def test_openvino_in_bf16_where_the_cpu_has_bf16_units(tiny):
    """OpenVINO's bf16 hint: the twin's autocast bf16 distance from float64, times FACTOR,
    bounds it (docs/precision.md's policy is the twin's)."""
    from cten_deploy.runtimes import OnnxModel
    try:
        model = OnnxModel(tiny["onnx"], "openvino", "bf16")
    except ValueError as exc:           # the refusals: the test above
        pytest.skip(f"OpenVINO runs no bf16 here: {exc}")
    import torch
    run = load_run_config(tiny["config"], [])
    inputs = ex.check_inputs(run.model, "model", 2, seed=3)
    got = model.run(inputs)
    from cten_common.inference import inference_model, run_config
    from cten_torch_ref.backend import BACKEND
    cfg, _, ckpt = run_config(tiny["weights"], tiny["config"], precision="fp32")
    module, _, names, _ = ex.part_module(inference_model(BACKEND, cfg, ckpt)[0], "model")
    ref64 = ex.twin_outputs(module, inputs, names, "float64")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        auto = module(*[torch.from_numpy(v) for v in inputs.values()])
    floor = float(np.max(np.abs(auto[0].float().numpy() - ref64["logits"])))
    error = float(np.max(np.abs(got["logits"] - ref64["logits"])))
    assert floor > 0 and error <= ex.FACTOR * floor, (error, floor)


WITHOUT_FRAMEWORKS = """
import importlib.abc, sys
class Missing(importlib.abc.MetaPathFinder):       # as where only the runtimes are installed
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("jittor", "torch"):
            raise ImportError(f"No module named {name!r}")
sys.meta_path.insert(0, Missing())
from cten_deploy.predict import main
code = main(sys.argv[1:])
assert not {"jittor", "torch"} & {m.split(".")[0] for m in sys.modules}
sys.exit(code)
"""


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_a_deployment_needs_neither_jittor_nor_pytorch(tiny, tmp_path, engine):
    def run(*args):
        return subprocess.run([sys.executable, "-c", WITHOUT_FRAMEWORKS, *map(str, args)], cwd=ROOT,
                              capture_output=True, text=True, timeout=600,
                              env=dict(os.environ, PYTHONPATH=ROOT, CTEN_ONNX_CACHE=str(tmp_path / "cache")))
    done = run(tiny["video"], "--audio", tiny["audio"], "--engine", engine, "--weights", tiny["onnx"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "segment attention" in done.stdout
    # a checkpoint would need the twin to be exported: a clear refusal, not a traceback
    refused = run(tiny["video"], "--engine", engine, "--weights", tiny["weights"], "--config", tiny["config"])
    assert refused.returncode == 2 and "needs the PyTorch twin" in refused.stderr, refused.stderr[-2000:]
    # and Jittor's engine, the default, says what it needs
    refused = run(tiny["video"], "--weights", tiny["onnx"])
    assert refused.returncode == 2 and "--engine jittor (the default) needs Jittor" in refused.stderr, \
        refused.stderr[-2000:]
