"""Strict conversion in both directions, through files, with every checkpoint kind."""
import os
import subprocess
import sys

import jittor as jt
import numpy as np
import pytest
import torch

import cten_jt
from cten_common.checkpoint_io.filter import (AUDIO_BACKBONE_LAYOUT, VISUAL_BACKBONE_LAYOUT,
                                              CheckpointMismatchError)
from cten_common.checkpoint_io.safetensors_io import WEIGHTS_FORMAT, read_model_config, read_safetensors
from cten_common.checkpoint_io.sniff import read_checkpoint
from cten_jt.models import CTEN as JCTEN
from cten_torch_ref.models import CTEN as TCTEN
from helpers import MODEL_RTOL, TINY_AV, TINY_VISUAL, assert_close, random_inputs
from weights_convert import jittor_to_torch, torch_to_jittor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIZE = {"snippet_duration": 8, "sample_size": 32}


def _torch_state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _reference_checkpoint(model, path):
    """Format (a): what the reference's validation step saves (DataParallel names)."""
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)
    torch.save({"epoch": 7, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()},
                "optimizer": opt.state_dict()}, path)


@pytest.mark.parametrize("cfg", [TINY_AV, TINY_VISUAL], ids=["av", "visual"])
def test_round_trip_and_outputs_through_files(tmp_path, cfg):
    t_model = TCTEN(init_seed=3, **cfg)
    with torch.no_grad():
        for name, t in t_model.state_dict(keep_vars=True).items():
            if name.endswith("running_var"):
                t.uniform_(0.5, 1.5)
            if name.endswith("num_batches_tracked"):
                t.fill_(12)
    src = tmp_path / "ref.pth"
    _reference_checkpoint(t_model, src)
    config = torch_to_jittor(src, tmp_path / "model.safetensors", settings=SIZE)
    assert config == t_model.config
    _, metadata = read_safetensors(tmp_path / "model.safetensors")
    assert metadata["format"] == WEIGHTS_FORMAT
    assert read_model_config(tmp_path / "model.safetensors") == config.to_dict()

    # the default file loads with our strict loader; a .pkl, on request, with Jittor's own Module.load
    j_model = cten_jt.load_weights(JCTEN(init_seed=0, **cfg), tmp_path / "model.safetensors")
    torch_to_jittor(src, tmp_path / "model.pkl", settings=SIZE)
    j_plain = JCTEN(init_seed=1, **cfg)
    j_plain.load(str(tmp_path / "model.pkl"))
    t_state = {k: v.numpy() for k, v in t_model.state_dict().items()}
    assert_close(t_state, cten_jt.state_arrays(j_model), "state via load_weights", atol=0)
    assert_close(t_state, cten_jt.state_arrays(j_plain), "state via Module.load", atol=0)

    t_model.eval()
    j_model.eval()
    visual, audio = random_inputs(cfg, 2)
    av = cfg["modality"] == "av"
    with torch.no_grad():
        t_out = t_model(torch.from_numpy(visual), torch.from_numpy(audio) if av else None)
    j_out = j_model(jt.array(visual), jt.array(audio) if av else None)
    assert_close(t_out, j_out, "outputs after torch -> jittor file", rtol_scale=MODEL_RTOL)

    # back to PyTorch: identical names and tensors, in both output formats; the sizes
    # the weights do not record come from the file's metadata
    assert jittor_to_torch(tmp_path / "model.safetensors", tmp_path / "back.pth") == config
    assert jittor_to_torch(tmp_path / "model.pkl", tmp_path / "back_pkl.pth", settings=SIZE) == config
    assert all(torch.equal(a, b) for a, b in zip(torch.load(tmp_path / "back_pkl.pth", weights_only=True).values(),
                                                 t_model.state_dict().values()))
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    assert list(back) == list(t_model.state_dict())
    for name, value in t_model.state_dict().items():
        assert back[name].dtype == value.dtype and back[name].shape == value.shape, name
        assert torch.equal(back[name], value), name
    jittor_to_torch(tmp_path / "model.safetensors", tmp_path / "back_ref.pth", fmt="reference")
    ref = torch.load(tmp_path / "back_ref.pth", weights_only=True)
    original = torch.load(src, weights_only=True)["state_dict"]
    assert set(ref) == {"epoch", "state_dict"} and list(ref["state_dict"]) == list(original)
    assert all(torch.equal(ref["state_dict"][k], original[k]) for k in original)


def test_plain_state_dict_without_prefix_and_config_override(tmp_path):
    t_model = TCTEN(init_seed=4, **TINY_AV)
    torch.save(t_model.state_dict(), tmp_path / "plain.pth")
    (tmp_path / "cfg.yaml").write_text("model:\n  snippet_duration: 8\n  sample_size: 32\n")
    out = subprocess.run([sys.executable, "-m", "weights_convert.cli", "torch2jittor",
                          str(tmp_path / "plain.pth"), str(tmp_path / "plain.safetensors"),
                          "--config", str(tmp_path / "cfg.yaml")],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "visual_depth=10" in out.stdout and "sample_size=32" in out.stdout
    from safetensors.numpy import load_file
    state = load_file(str(tmp_path / "plain.safetensors"))     # no Jittor (nor torch) needed to read
    assert set(state) == set(t_model.state_dict())
    assert np.array_equal(state["fc.weight"], t_model.state_dict()["fc.weight"].numpy())


def test_bad_checkpoint_lists_every_problem_and_writes_nothing(tmp_path):
    state = {f"module.{k}": v for k, v in TCTEN(init_seed=0, **TINY_AV).state_dict().items()}
    del state["module.nl.0.theta.weight"], state["module.a_fc.1.running_var"]
    state["module.extra.weight"] = torch.zeros(3)
    state["module.ta_net.fc.bias"] = torch.zeros(5)
    torch.save({"epoch": 1, "state_dict": state}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointMismatchError) as err:
        torch_to_jittor(tmp_path / "bad.pth", tmp_path / "bad.safetensors", settings=SIZE)
    msg = str(err.value)
    for name in ("nl.0.theta.weight", "a_fc.1.running_var", "extra.weight", "ta_net.fc.bias"):
        assert name in msg, msg
    assert "2 missing" in msg and "1 unexpected" in msg and "1 misshaped" in msg
    assert str(tmp_path / "bad.pth") in msg
    assert os.listdir(tmp_path) == ["bad.pth"]          # no output, no temporary file

    out = subprocess.run([sys.executable, "-m", "weights_convert.cli", "torch2jittor",
                          str(tmp_path / "bad.pth"), str(tmp_path / "bad.safetensors")],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and "nl.0.theta.weight" in out.stderr and "extra.weight" in out.stderr


def test_unreadable_and_non_checkpoint_files(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth: cannot be read"):
        torch_to_jittor(tmp_path / "junk.pth", tmp_path / "x.safetensors")
    torch.save({"epoch": 3, "arch": "resnet"}, tmp_path / "nostate.pth")
    with pytest.raises(ValueError, match="no state dict found"):
        torch_to_jittor(tmp_path / "nostate.pth", tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match="no such file"):
        jittor_to_torch(tmp_path / "missing.safetensors", tmp_path / "x.pth")
    with pytest.raises(ValueError, match="not .npz"):
        torch_to_jittor(tmp_path / "nostate.pth", tmp_path / "x.npz")


def _kinetics_state(depth, n_fc, prefix):
    """A Hara et al. Kinetics checkpoint's state dict, made from our backbone by its layout."""
    from cten_torch_ref.models.resnet import visual_backbone
    inverse = {v: k for k, v in VISUAL_BACKBONE_LAYOUT.items()}
    torch.manual_seed(0)
    backbone = visual_backbone(depth, 8, 32)
    state = {}
    for name, value in backbone.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue                    # the 2017 checkpoints predate this buffer
        index, _, rest = name.partition(".")
        state[f"{prefix}{inverse['resnet.' + index]}.{rest}"] = value.normal_() if value.is_floating_point() else value
    state[f"{prefix}fc.weight"] = torch.zeros(n_fc, 512)
    state[f"{prefix}fc.bias"] = torch.zeros(n_fc)
    return state


def test_kinetics_visual_backbone_into_fresh_model(tmp_path):
    state = _kinetics_state(10, 400, "module.")
    torch.save({"epoch": 200, "arch": "resnet-10", "state_dict": state, "optimizer": {}},
               tmp_path / "kinetics.pth")
    torch_to_jittor(tmp_path / "kinetics.pth", tmp_path / "init.safetensors", backbone="visual",
                    settings=TINY_AV, seed=5)
    out = read_checkpoint(tmp_path / "init.safetensors")
    assert np.array_equal(out["resnet.0.weight"], state["module.conv1.weight"].numpy())
    assert np.array_equal(out["resnet.7.0.bn2.running_var"],
                          state["module.layer4.0.bn2.running_var"].numpy())
    fresh = cten_jt.state_arrays(JCTEN(init_seed=5, **TINY_AV))
    assert np.array_equal(out["fc.weight"], fresh["fc.weight"])     # not from the file
    assert out["resnet.1.num_batches_tracked"].item() == 0

    # a 101-layer checkpoint into a depth-10 model: every problem named
    torch.save({"state_dict": _kinetics_state(18, 1039, "")}, tmp_path / "r18.pth")
    with pytest.raises(CheckpointMismatchError) as err:
        torch_to_jittor(tmp_path / "r18.pth", tmp_path / "x.safetensors", backbone="visual",
                        settings=TINY_AV)
    assert "resnet.4.1.conv1.weight" in str(err.value) and "as the visual backbone" in str(err.value)


def test_torchvision_audio_backbone(tmp_path):
    from cten_torch_ref.models.resnet import audio_backbone
    inverse = {v: k for k, v in AUDIO_BACKBONE_LAYOUT.items()}
    src = {}
    for name, value in audio_backbone("resnet18").state_dict().items():
        index, _, rest = name.partition(".")
        if index == "0":
            continue
        src[f"{inverse['a_resnet.' + index]}.{rest}"] = torch.randn(value.shape) if value.is_floating_point() else value
    src["conv1.weight"] = torch.randn(64, 3, 7, 7)      # RGB conv1: not used
    src["fc.weight"], src["fc.bias"] = torch.randn(1000, 512), torch.randn(1000)
    torch.save(src, tmp_path / "resnet18.pth")
    torch_to_jittor(tmp_path / "resnet18.pth", tmp_path / "init.safetensors", backbone="audio",
                    settings=TINY_AV, seed=2)
    out = read_checkpoint(tmp_path / "init.safetensors")
    assert np.array_equal(out["a_resnet.4.1.conv2.weight"], src["layer1.1.conv2.weight"].numpy())
    assert out["a_resnet.0.weight"].shape == (64, 1, 7, 1)
    with pytest.raises(CheckpointMismatchError, match="a_resnet.4.0.conv3.weight"):
        torch_to_jittor(tmp_path / "resnet18.pth", tmp_path / "x.safetensors", backbone="audio",
                        settings={**TINY_AV, "audio_arch": "resnet50"})


def test_jittors_own_loader_skips_silently_ours_refuses():
    """The trap: Module.load_parameters logs and goes on; load_weights raises."""
    model = JCTEN(init_seed=0, **TINY_VISUAL)
    state = cten_jt.state_arrays(model)
    state["fc.weight"] = state["fc.weight"][:2]
    state["typo.weight"] = np.zeros(3, np.float32)
    model.load_parameters(state)           # no exception: the trap
    with pytest.raises(CheckpointMismatchError, match="typo.weight"):
        cten_jt.load_weights(model, state)


def test_pytorch_files_are_read_without_pytorch(tmp_path, monkeypatch):
    """Where PyTorch is not installed, .pth files are read by our own zip reader
    (cten_common.checkpoint_io), never by Jittor's (which runs any pickle)."""
    from cten_common.checkpoint_io.filter import read_state
    model = TCTEN(init_seed=0, **TINY_VISUAL)
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}},
               tmp_path / "m.pth")
    monkeypatch.setitem(sys.modules, "torch", None)        # import torch now raises ImportError
    state, _ = read_state(tmp_path / "m.pth")
    monkeypatch.undo()
    for name, value in model.state_dict().items():
        assert np.array_equal(np.asarray(state[name]).reshape(value.shape), value.numpy()), name


def test_a_converted_reference_checkpoint_in_bf16_against_upstreams_autocast(tmp_path):
    """An upstream-style checkpoint (DataParallel names, .pth), converted, run in bf16 by
    Jittor against the reference under autocast on the same weights and inputs: within
    FACTOR x the floor (autocast's own distance from fp32, plus the fp32 distance between
    the frameworks; tests/test_precision.py says why)."""
    from cten_jt.precision import set_precision as j_set
    from cten_torch_ref.precision import set_precision as t_set
    from test_precision import assert_within_floors

    cfg = TINY_AV
    t_model = TCTEN(init_seed=5, **cfg)
    with torch.no_grad():
        for name, t in t_model.state_dict(keep_vars=True).items():
            if name.endswith("running_var"):
                t.uniform_(0.5, 1.5)
    _reference_checkpoint(t_model, tmp_path / "ref.pth")
    torch_to_jittor(tmp_path / "ref.pth", tmp_path / "model.safetensors", settings=SIZE)
    j_model = cten_jt.load_weights(JCTEN(init_seed=0, **cfg), tmp_path / "model.safetensors")
    t_model.eval()
    j_model.eval()
    visual, audio = random_inputs(cfg, 2, seed=4)

    def outputs():
        with torch.no_grad():
            t = [x.numpy() for x in t_model(torch.from_numpy(visual), torch.from_numpy(audio))]
        j = [x.numpy() for x in j_model(jt.array(visual), jt.array(audio))]
        return ({"logits": t[0], "gamma": t[1]}, {"logits": j[0], "gamma": j[1]})
    t32, j32 = outputs()
    t_set(t_model, "bf16")
    j_set(j_model, "bf16")
    t16, j16 = outputs()
    assert_within_floors(t32, j32, t16, j16, "converted checkpoint")


def test_bf16_safetensors_files_load_into_float32_models(tmp_path):
    """A bf16 safetensors file (what a bf16-trained PyTorch model's ``save_file`` writes)
    is read as the exact float32 widening of its values, by the converter and by
    ``load_weights``; the model stays float32."""
    from safetensors.torch import save_file

    cfg = TINY_VISUAL
    t_model = TCTEN(init_seed=6, **cfg)
    state = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v).contiguous()
             for k, v in t_model.state_dict().items()}
    save_file(state, str(tmp_path / "bf16.safetensors"))
    arrays, _ = read_safetensors(tmp_path / "bf16.safetensors")
    for k, v in state.items():
        want = v.float().numpy() if v.dtype == torch.bfloat16 else v.numpy()
        assert arrays[k].dtype == want.dtype and np.array_equal(arrays[k], want), k
    j_model = cten_jt.load_weights(JCTEN(init_seed=0, **cfg), tmp_path / "bf16.safetensors")
    got = cten_jt.state_arrays(j_model)
    for k, v in state.items():
        if v.dtype == torch.bfloat16:          # (counters: Jittor's own int layout, checked elsewhere)
            assert got[k].dtype == np.float32 and np.array_equal(got[k], v.float().numpy()), k
    # and the converter, both ways: into a Jittor file and back to a PyTorch one (float32)
    torch_to_jittor(tmp_path / "bf16.safetensors", tmp_path / "model.safetensors",
                    settings={**SIZE, "n_classes": cfg["n_classes"], "visual_depth": cfg["visual_depth"],
                              "modality": "visual", "seq_len": cfg["seq_len"]})
    converted, _ = read_safetensors(tmp_path / "model.safetensors")
    floats = [k for k in state if state[k].dtype == torch.bfloat16]
    assert all(converted[k].dtype == np.float32 and np.array_equal(converted[k], arrays[k]) for k in floats)
    jittor_to_torch(tmp_path / "bf16.safetensors", tmp_path / "back.pth",
                    settings={**SIZE, "n_classes": cfg["n_classes"], "visual_depth": cfg["visual_depth"],
                              "modality": "visual", "seq_len": cfg["seq_len"]})
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    assert all(back[k].dtype == torch.float32 and np.array_equal(back[k].numpy(), arrays[k]) for k in floats)
