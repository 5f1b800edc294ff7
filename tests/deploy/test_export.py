"""cten_deploy/export.py (cten-export): the twin as ONNX, checked before it is written."""
import os
import subprocess
import sys

import numpy as np
import pytest

from cten_common.config import load_run_config
from cten_deploy import export as ex
from cten_deploy.onnx_file import cten_metadata
from cten_deploy.runtimes import OnnxModel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "configs", "synthetic.yaml")


def perturbed_weights(path, config_path=CONFIG, overrides=(), seed=0):
    """The configuration's model with every float array moved off its initial value (a zero
    gate or a unit BatchNorm would hide a wrong graph), written as weights."""
    from cten_torch_ref.checkpoint import save_weights
    from cten_torch_ref.models import build_model
    from cten_torch_ref.models.state import load_state_arrays, state_arrays
    model = build_model(load_run_config(config_path, list(overrides)).model, init_seed=seed)
    rng = np.random.default_rng(seed)
    arrays = {k: (v + rng.normal(0, 0.05, v.shape)).astype(v.dtype) if v.dtype.kind == "f" else v
              for k, v in state_arrays(model).items()}
    for k in arrays:
        if k.endswith("running_var"):
            arrays[k] = np.abs(arrays[k]) + 0.5
    load_state_arrays(model, arrays, "perturbed")
    save_weights(model, path)
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return perturbed_weights(tmp_path_factory.mktemp("export") / "w.safetensors")


@pytest.mark.parametrize("part", ["model", "backbone"])
@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_both_runtimes_give_the_twins_outputs_at_any_batch(weights, tmp_path, part, runtime):
    out = tmp_path / f"{part}.onnx"
    report = ex.export(weights, out, CONFIG, part=part, say=lambda *_: None)
    assert set(report) == {"batch 1", "batch 2"}
    got_part, config, classes = cten_metadata(out)
    run = load_run_config(CONFIG, [])
    assert got_part == part and config["model"] == run.model.to_dict() and classes == [f"class{i}" for i in range(4)]
    # batch 3, compared with the twin in float32 and float64 on the same input (the bound of
    # the export's own check: FACTOR times the twin's float32 error)
    from cten_common.inference import inference_model, run_config
    from cten_torch_ref.backend import BACKEND
    cfg, _, ckpt = run_config(str(weights), CONFIG, precision="fp32")
    module = ex.part_module(inference_model(BACKEND, cfg, ckpt)[0], part)
    names = module[2]
    inputs = ex.check_inputs(run.model, part, 3, seed=7)
    got = OnnxModel(out, runtime).run(inputs)
    assert set(got) == set(names)
    ref32, ref64 = (ex.twin_outputs(module[0], inputs, names, t) for t in ("float32", "float64"))
    ex.check_outputs(got, ref32, ref64, f"{runtime}, {part}")


def test_a_visual_only_model_takes_no_audio(tmp_path):
    overrides = ["model.modality=visual", "model.audio_embed_size=512"]
    config = tmp_path / "visual.yaml"
    import yaml
    data = load_run_config(CONFIG, overrides).to_dict()
    config.write_text(yaml.safe_dump(data))
    w = perturbed_weights(tmp_path / "v.safetensors", str(config))
    ex.export(w, tmp_path / "v.onnx", str(config), say=lambda *_: None)
    model = OnnxModel(tmp_path / "v.onnx", "onnxruntime")
    assert model.inputs == ["visual"] and model.outputs == ["logits", "gamma"]


def test_a_file_whose_outputs_are_not_the_twins_is_not_written(weights, tmp_path, monkeypatch):
    real = ex.twin_outputs

    def shifted(module, inputs, names, dtype):        # as if the graph had lost a layer
        out = real(module, inputs, names, dtype)
        return {k: v + (0.1 if k == "logits" else 0.0) for k, v in out.items()}

    monkeypatch.setattr(ex, "twin_outputs", shifted)
    with pytest.raises(ex.ExportCheckError, match="output 'logits' is .* over the bound"):
        ex.export(weights, tmp_path / "bad.onnx", CONFIG, say=lambda *_: None)
    assert os.listdir(tmp_path) == []                 # nothing written, no temporary left


def test_the_check_bound_scales_with_the_twins_own_error():
    truth = {"y": np.array([1.0, -2.0, 3.0])}
    ref32 = {"y": truth["y"] + 1e-6}
    ex.check_outputs({"y": truth["y"] + 9e-6}, ref32, truth, "x")           # 9x the floor
    with pytest.raises(ex.ExportCheckError, match="'y' is 1.1e-05 from the float64 twin"):
        ex.check_outputs({"y": truth["y"] + 1.1e-5}, ref32, truth, "x")
    # a twin exact in float32 (its error 0) still admits ten float32 roundings of the largest output
    exact = {"y": np.array([0.0, 4.0])}
    ex.check_outputs({"y": exact["y"] + 10 * 4.0 * 2.0 ** -24}, exact, exact, "x")
    with pytest.raises(ex.ExportCheckError):
        ex.check_outputs({"y": exact["y"] + 11 * 4.0 * 2.0 ** -24}, exact, exact, "x")


def test_the_command(weights, tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "cten_deploy.export", *map(str, args)], cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
    done = cli(weights, tmp_path / "m.onnx", "--config", CONFIG)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "logits" in done.stdout and f"wrote {tmp_path / 'm.onnx'}" in done.stdout
    refused = cli(weights, tmp_path / "n.onnx")
    assert refused.returncode == 2 and "carries no config; pass --config" in refused.stderr
    assert not (tmp_path / "n.onnx").exists()
    assert cli(weights, tmp_path / "m.bin", "--config", CONFIG).returncode == 2
