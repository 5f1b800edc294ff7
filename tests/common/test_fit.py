"""cten_common/fit.py and cten_common/backend.py without a framework: what the loop refuses
before anything runs, and the backend protocol's declarations."""
import numpy as np
import pytest

from cten_common.backend import CAPABILITIES, Backend, check_capabilities, refused_keys
from cten_common.checkpoint_io.errors import CheckpointError
from cten_common.config import DEFAULTS, load_run_config
from cten_common.fit import fit, load_last_checkpoint, main, save_checkpoint
from cten_common.precision import DynamicLossScaler
from cten_common.training import RunFolder


class Untouchable(Backend):
    """A backend that fails the test if ``fit`` asks anything of it: a refused configuration
    must stop before the framework is touched."""
    name, command, trainer = "fake", "cten-train-fake", "fake.train"
    capabilities = {"feature_bank": "no banks in the fake framework", "sync_bn": True}

    def __getattribute__(self, name):
        if name not in ("name", "command", "trainer", "capabilities", "no_op", "__class__", "__dict__"):
            raise AssertionError(f"fit called backend.{name} before refusing the configuration")
        return super().__getattribute__(name)


def _config(tmp_path, *sets):
    """A configuration whose data does not exist: reading it would be a DataError, not the refusal."""
    return load_run_config(None, [f"data.annotation={tmp_path / 'nothing' / 'ann.json'}",
                                  f"data.video_root={tmp_path / 'nothing'}", *sets])


def test_a_missing_capability_is_refused_before_anything_runs(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"train.features = '/a/bank' is refused by fake.train: no banks in the "
                                         r"fake framework"):
        fit(_config(tmp_path, "train.features=/a/bank"), str(out), Untouchable(), progress=False)
    assert not out.exists()          # no folder, no config.yaml, no data read


def test_an_undeclared_capability_is_refused_even_at_its_default(tmp_path):
    """A backend must say, for every capability, whether it has it: silence is refused."""
    class Silent(Untouchable):
        capabilities = {"feature_bank": True}
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"fake.train declares nothing about the capability 'sync_bn' "
                                         r"\(train.sync_bn\)"):
        fit(_config(tmp_path), str(out), Silent(), progress=False)
    assert not out.exists()


def test_a_capability_the_backend_has_passes_and_the_defaults_ask_for_none(tmp_path):
    backend = Untouchable()
    check_capabilities(_config(tmp_path, "train.sync_bn=true"), backend)          # has it
    check_capabilities(_config(tmp_path), backend)                                # asks for nothing
    assert refused_keys(backend) == {"train.features": "no banks in the fake framework"}
    for capability, key in CAPABILITIES.items():            # every capability is a configuration key
        section, name = key.split(".")
        assert name in DEFAULTS[section], key


def test_the_command_refuses_with_one_line_and_exit_2(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("train: {features: /a/bank}\n")
    assert main(Untouchable(), ["--config", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: train.features = '/a/bank' is refused by fake.train") and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_the_protocol_declares_every_method():
    """Each method of the protocol raises until a framework implements it (the two backends
    are checked in tests/test_backend.py)."""
    methods = [n for n, v in vars(Backend).items() if callable(v) and not n.startswith("_") and n != "evaluate"]
    assert {"seed", "set_device", "world", "all_sum", "build_model", "erasing_step", "loader",
            "optimizer_state", "load_optimizer_state", "predict_batch", "set_precision"} <= set(methods)
    for name in methods:
        assert getattr(Backend, name).__doc__, f"Backend.{name} says nothing of what it must do"


class _Arrays:
    """A backend of plain numpy arrays: what the checkpoint functions ask of a framework."""
    def state_arrays(self, model):
        return {"w": model["w"].copy()}

    def optimizer_state(self, optimizer, model):
        return {"step": 3, "m": {"w": np.ones(2, np.float32)}, "v": {"w": np.ones(2, np.float32)}}

    def load_state_arrays(self, model, arrays, source):
        model["w"] = arrays["w"]

    def load_optimizer_state(self, optimizer, model, state):
        optimizer.update(state)


def test_fp16s_loss_scale_is_saved_and_resumed(tmp_path):
    """fp16's loss scaler (its scale, the good steps in a row, the skipped steps) goes into
    the run's checkpoints: a resumed run goes on from the scale it had reached, not 2**16;
    other precisions store none, and a damaged one is refused naming the file."""
    config, run = load_run_config(None, []), RunFolder(tmp_path / "run")
    scaler = DynamicLossScaler(growth_interval=5)
    for finite in (False, False, True, True, False, True):
        scaler.update(finite)
    model = {"w": np.arange(2, dtype=np.float32)}
    save_checkpoint(run, _Arrays(), "last", model, {}, 0, config, {"val_accuracy": 0.5, "epoch": 0}, ["a"], scaler)
    resumed = DynamicLossScaler(growth_interval=5)
    assert load_last_checkpoint(run, _Arrays(), {"w": None}, {}, resumed) == (1, {"val_accuracy": 0.5, "epoch": 0})
    assert resumed.state_dict() == scaler.state_dict() == {"scale": 2.0 ** 13, "good_steps": 1, "skipped": 3}
    save_checkpoint(run, _Arrays(), "last", model, {}, 0, config, {"val_accuracy": 0.5, "epoch": 0}, ["a"])
    assert "loss_scaler" not in run.last_checkpoint()[1]
    fresh = DynamicLossScaler()
    load_last_checkpoint(run, _Arrays(), {"w": None}, {}, fresh)       # a checkpoint without one: 2**16
    assert fresh.scale == 2.0 ** 16
    run.save_checkpoint("last", model, _Arrays().optimizer_state({}, model), 0, config, {}, ["a"],
                        {"scale": -1.0, "good_steps": 0, "skipped": 0})
    untouched = DynamicLossScaler()
    with pytest.raises(CheckpointError, match=r"last.*loss_scaler must hold a finite scale > 0"):
        load_last_checkpoint(run, _Arrays(), {"w": None}, {}, untouched)
    assert untouched.state_dict() == {"scale": 2.0 ** 16, "good_steps": 0, "skipped": 0}
