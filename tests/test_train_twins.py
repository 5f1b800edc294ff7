"""The two trainers, cten_jt.train and its PyTorch twin cten_torch_ref.train, side by side:
every configuration key honoured or refused, pretrained backbones, the same first epoch,
and resuming in the twin."""
import json

import numpy as np
import pytest

from cten_common.config import DEFAULTS, ModelConfig, RunConfig, load_run_config
from cten_common.checkpoint_io.filter import AUDIO_BACKBONE_LAYOUT, VISUAL_BACKBONE_LAYOUT, backbone_shapes
from cten_common.checkpoint_io.safetensors_io import save_weights_file
from helpers import make_tiny_run, run_checkpoint

H, R, N = "honoured", "refused", "no-op"
# Every key of cten_common.config.DEFAULTS: what each trainer does with it.  "honoured":
# the trainer reads it (checked below by a run that records every read); "refused": a value
# other than the default is a ValueError naming the key before anything runs; "no-op":
# accepted and documented in the twin's NO_OP as a Jittor-side way of computing the same step.
# The model section is honoured by both through ModelConfig, which takes the whole section.
DECISIONS = {
    **{f"model.{k}": {"jittor": H, "torch": H} for k in DEFAULTS["model"]},
    **{f"data.{k}": {"jittor": H, "torch": H} for k in DEFAULTS["data"]},
    **{f"train.{k}": {"jittor": H, "torch": H} for k in (
        "epochs", "batch_size", "lr", "weight_decay", "theta", "erasing", "loss", "pcce_lambda", "seed",
        "pretrained_visual", "pretrained_audio", "detection_threshold", "device", "backbone_eval",
        "audio_once", "precision")},
    "train.kernels": {"jittor": H, "torch": N},         # compiled kernels: the same indices and logits
    "train.sync_bn": {"jittor": H, "torch": R},         # MPI only; the twin runs one process
    "train.features": {"jittor": H, "torch": R},        # feature banks are cten_jt's
}
# values other than the default, to show a refusal
REFUSED_VALUES = {"train.sync_bn": True, "train.features": "/some/bank"}


def _all_keys():
    return {f"{section}.{key}" for section, keys in DEFAULTS.items() for key in keys}


def test_every_configuration_key_has_a_decision_for_both_trainers():
    """A key added to DEFAULTS without a decision here fails; so does a stale entry."""
    assert set(DECISIONS) == _all_keys(), (sorted(_all_keys() - set(DECISIONS)),
                                           sorted(set(DECISIONS) - _all_keys()))
    assert set(DEFAULTS["model"]) == {f.name for f in ModelConfig.__dataclass_fields__.values()}
    from cten_common.backend import refused_keys
    from cten_torch_ref.backend import BACKEND
    REFUSED, NO_OP = refused_keys(BACKEND), BACKEND.no_op
    assert set(REFUSED) == {k for k, d in DECISIONS.items() if d["torch"] == R}
    assert set(NO_OP) == {k for k, d in DECISIONS.items() if d["torch"] == N}
    assert all(d["jittor"] == H for d in DECISIONS.values())


@pytest.mark.parametrize("key", sorted(k for k, d in DECISIONS.items() if d["torch"] == R))
def test_the_twin_refuses_with_a_message_naming_the_key(key, tmp_path):
    from cten_common.backend import check_capabilities
    from cten_torch_ref.backend import BACKEND
    from cten_torch_ref.train import train
    section, name = key.split(".")
    config = load_run_config(None, [f"{key}={json.dumps(REFUSED_VALUES[key])}"])
    with pytest.raises(ValueError, match=rf"{key} = .* is refused by cten_torch_ref.train: "):
        check_capabilities(config, BACKEND)
    with pytest.raises(ValueError, match=key):       # before anything: no data, no folder
        train(config, str(tmp_path / "run"), progress=False)
    assert not (tmp_path / "run").exists()
    check_capabilities(load_run_config(None), BACKEND)              # the default passes


def reading(config, log, prefix=""):
    """A copy of the configuration dataclass ``config`` (a ``RunConfig`` or one of its
    sections) that adds ``prefix + field`` to ``log`` for every field read from it; its
    sections are such copies too (names like ``train.lr``).  ``to_dict``, which copies a
    configuration whole to write config.yaml or a checkpoint, does not count."""
    fields = type(config).__dataclass_fields__

    class Reads(type(config)):
        def __getattribute__(self, name):
            if name in fields and object.__getattribute__(self, "__dict__").get("_log") is not None:
                log.add(prefix + name)
            return super().__getattribute__(name)

        def to_dict(self):
            return config.to_dict()

    values = {name: getattr(config, name) for name in fields}
    if isinstance(config, RunConfig):
        values = {name: reading(value, log, f"{name}.") for name, value in values.items()}
    copy = Reads(**values)
    object.__setattr__(copy, "_log", log)       # made and checked: from here on, reads count
    return copy


def _backbone_file(path, model_shapes, backbone, seed):
    """A pretrained backbone in its original layout (Hara's 3D ResNet / torchvision's ResNet
    names): the model's own initial backbone weights, perturbed, so that they differ from
    any initialisation; returns ``{CTEN name: array}`` of what the file fills."""
    from cten_common.init import initial_state
    layout = {v: k for k, v in (VISUAL_BACKBONE_LAYOUT if backbone == "visual" else AUDIO_BACKBONE_LAYOUT).items()}
    rng = np.random.default_rng(seed)
    init = initial_state(model_shapes, seed=seed)
    filled, original = {}, {}
    for name in backbone_shapes({k: v[0] for k, v in model_shapes.items()}, backbone):
        value = init[name]
        if value.dtype.kind == "f":
            value = (value + rng.normal(0, 0.05, value.shape)).astype(value.dtype)
            if name.endswith("running_var"):
                value = np.abs(value) + 0.5
        filled[name] = value
        head, rest = name.split(".", 2)[:2], name.split(".", 2)[2]
        original[f"{layout['.'.join(head)]}.{rest}"] = value
    save_weights_file(path, original)
    return filled


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("twins")
    return root, make_tiny_run(root)


@pytest.fixture(scope="module")
def pretrained(tiny):
    """Backbone files for the tiny model, and what each fills."""
    from cten_torch_ref.models.state import state_shapes
    from cten_torch_ref.models import build_model
    root, path = tiny
    shapes = state_shapes(build_model(load_run_config(str(path)).model))
    return {which: (root / f"{which}.safetensors",
                    _backbone_file(root / f"{which}.safetensors", shapes, which, seed))
            for which, seed in (("visual", 11), ("audio", 12))}


def _trainer(framework):
    if framework == "jittor":
        import cten_jt.train as trainer
    else:
        import cten_torch_ref.train as trainer
    return trainer


@pytest.mark.parametrize("framework", ["jittor", "torch"])
def test_honoured_keys_are_read_and_pretrained_backbones_loaded(framework, tiny, pretrained, tmp_path):
    """One epoch at lr 0 with both backbones from files: every key the table says is honoured
    is read by the trainer, and the trained model's backbones hold the files' weights
    exactly (Adam at lr 0 moves nothing; BatchNorm's running statistics do move, in train
    mode, and are left out)."""
    root, path = tiny
    config = load_run_config(str(path), ["train.epochs=1", "train.lr=0.0", "train.weight_decay=0.0",
                                         f"train.pretrained_visual={pretrained['visual'][0]}",
                                         f"train.pretrained_audio={pretrained['audio'][0]}"])
    reads = set()
    _trainer(framework).train(reading(config, reads), str(tmp_path / "run"), progress=False)
    honoured = {k for k, d in DECISIONS.items() if d[framework] == H and not k.startswith("model.")}
    assert honoured - reads == set(), f"{framework} never reads {sorted(honoured - reads)}"
    assert "model" in reads                     # the section, whole, to ModelConfig
    model = run_checkpoint(tmp_path / "run")["model"]
    for which, (_, filled) in pretrained.items():
        compared = [n for n in filled if not n.endswith(("running_mean", "running_var", "num_batches_tracked"))]
        assert len(compared) > 10, which
        for name in compared:
            assert np.array_equal(model[name], filled[name]), (which, name)


def test_the_twin_loads_a_backbone_through_the_strict_path(tiny, pretrained, tmp_path):
    """A file that does not fit is refused with every problem listed, as in Jittor."""
    from cten_common.checkpoint_io.filter import CheckpointMismatchError
    from cten_torch_ref.checkpoint import load_pretrained_backbone
    from cten_torch_ref.models import build_model
    root, path = tiny
    model = build_model(load_run_config(str(path)).model)
    from safetensors.numpy import load_file
    arrays = load_file(str(pretrained["visual"][0]))
    arrays["layer1.0.conv1.weight"] = arrays["layer1.0.conv1.weight"][:1]
    arrays["layer9.weight"] = np.zeros(3, np.float32)
    save_weights_file(tmp_path / "bad.safetensors", arrays)
    with pytest.raises(CheckpointMismatchError, match="layer9.weight"):
        load_pretrained_backbone(model, tmp_path / "bad.safetensors", "visual")
    del arrays["layer9.weight"]
    save_weights_file(tmp_path / "bad.safetensors", arrays)
    with pytest.raises(CheckpointMismatchError, match=r"resnet.4.0.conv1.weight: \(1,"):
        load_pretrained_backbone(model, tmp_path / "bad.safetensors", "visual")


TIMING = ("time_s", "train_time_s", "data_wait_s", "view_read_s", "data_wait_fraction")


# Jittor against PyTorch after the runs have parted: at most FACTOR times the larger parting
# of PyTorch against itself (oneDNN off; weights moved by one ulp), measured in the same test.
# A single pair's parting is one draw of a chaotic process (which rounding-level gradients
# flip their Adam step), so the factor is a judgement from a study, not a fit to one
# machine: benchmarks/results/twin_first_epoch.md runs this configuration over 6 seeds.
FACTOR = 4


def test_both_trainers_write_the_same_first_epoch(tiny, tmp_path):
    """Same config, seed, batch order, samples, erasing and initial weights, no dropout (the
    frameworks' generators differ): the first epoch's records have the same keys, and the
    values agree as far as fp32 arithmetic lets them.

    Exact or tight, as the same computation: the keys of the record, the batch order of
    every step, the first step's erased views (the same frame indices, exactly) and the
    first step's loss (relative 1e-4, the project's whole-model tolerance: README, Parity;
    tests/models/test_cten.py).

    After the first step the runs part: Adam's first updates are about lr * sign(g), and a
    gradient at rounding level (a bias before a train-mode BatchNorm) flips its sign with
    the CPU's rounding (benchmarks/twin_first_epoch.py).  What comes after is judged
    against the floor, PyTorch against itself, measured here on this CPU:

    * the losses (the epoch's means and its later steps' losses): the largest relative
      difference is at most FACTOR times the floor's, plus 1e-4 (what the same weights
      leave, as the first step);
    * accuracies: at most FACTOR times the floor's difference of the same figure, plus one
      video's share (a near tie that the same weights can flip);
    * mAP: at most FACTOR times the floor's difference, plus what one near tie can move
      it: a swap of two adjacent detections changes one class's AP by at most 0.5 (AP of
      one true and one false detection, 1 against 0.5), and mAP averages over the classes."""
    from benchmarks.twin_first_epoch import COUNTED, FLOORS, LOSSES, VARIANTS, parting, train_variant
    root, path = tiny
    config = load_run_config(str(path), ["train.epochs=1", "model.dropout=0.0"])
    records, steps = {}, {}
    for variant in VARIANTS:
        records[variant], steps[variant] = train_variant(variant, config, tmp_path / variant)
    j, t = records["jittor"], records["torch"]
    for variant, r in records.items():
        assert set(r) == set(t), (variant, sorted(set(r) ^ set(t)))
        assert [s["index"] for s in steps[variant]] == [s["index"] for s in steps["torch"]], variant
        assert abs(r["first_step_loss"] - t["first_step_loss"]) <= 1e-4 * abs(t["first_step_loss"]), \
            (variant, r["first_step_loss"], t["first_step_loss"])
        assert r["step_losses"][0] == r["first_step_loss"] and len(r["step_losses"]) == 3
        assert abs(np.mean(r["step_losses"]) - r["loss"]) <= 1e-12 * abs(r["loss"])
    assert len(steps["jittor"]) == 3
    for view in ("context", "keyframe"):
        assert np.array_equal(steps["jittor"][0]["indices"][view], steps["torch"][0]["indices"][view]), view

    table, scale = parting(records)
    assert scale["jittor"] <= FACTOR * scale["floor"] + 1e-4, \
        ("losses part", scale, {k: (j[k], t[k]) for k in LOSSES}, j["step_losses"], t["step_losses"],
         {f: records[f]["step_losses"] for f in FLOORS})
    summary = json.loads((tmp_path / "torch" / "summary.json").read_text())
    n = {"val_accuracy": summary["eval_videos"], "val_accuracy_mean_views": summary["eval_videos"]}
    for key in COUNTED:
        one = 0.5 / config.model.n_classes if key == "val_mAP" else 1 / n.get(key, summary["train_videos"])
        bound = FACTOR * table[key]["floor"] + one + 1e-9
        assert table[key]["jittor"] <= bound, (key, j[key], t[key], table[key], bound)
    assert j["epoch"] == t["epoch"] == 1 and j["bank_exact_fraction"] is t["bank_exact_fraction"] is None
    assert all(t[k] >= 0 for k in TIMING)
    for name in ("config.yaml", "metrics.jsonl", "last.safetensors", "best.safetensors", "summary.json",
                 "curves.png"):
        assert (tmp_path / "torch" / name).exists(), name
    a, b = run_checkpoint(tmp_path / "jittor"), run_checkpoint(tmp_path / "torch")
    assert set(a["optimizer"]["m"]) == set(b["optimizer"]["m"]) and a["optimizer"]["n_step"] == b["optimizer"]["n_step"]


def test_the_twin_resumes_to_the_same_weights(tiny, tmp_path):
    """A run stopped after epoch 1 and resumed ends with the weights and Adam state of a
    straight run, exactly (tests/test_train.py checks the same of cten_jt.train)."""
    from cten_torch_ref.train import train
    root, path = tiny
    config = load_run_config(str(path))        # with dropout: its generator is reseeded per epoch
    train(config, str(tmp_path / "straight"), progress=False)
    train(config, str(tmp_path / "resumed"), progress=False, stop_after=1)
    assert run_checkpoint(tmp_path / "resumed")["epoch"] == 0
    with open(tmp_path / "resumed" / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "half written": true}\n')       # a line of a killed epoch
    train(config, str(tmp_path / "resumed"), resume=True, progress=False)
    a, b = run_checkpoint(tmp_path / "straight"), run_checkpoint(tmp_path / "resumed")
    assert a["epoch"] == b["epoch"] == 1 and a["optimizer"]["n_step"] == b["optimizer"]["n_step"] > 0
    for name in a["model"]:
        assert np.array_equal(a["model"][name], b["model"][name]), name
    for part in ("m", "v"):
        assert set(a["optimizer"][part]) == set(b["optimizer"][part])
        for name in a["optimizer"][part]:
            assert np.array_equal(a["optimizer"][part][name], b["optimizer"][part][name]), (part, name)
    lines = [json.loads(x) for x in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    straight = [json.loads(x) for x in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert [{k: v for k, v in r.items() if k not in TIMING} for r in lines] == \
        [{k: v for k, v in r.items() if k not in TIMING} for r in straight]


def test_the_twin_cli_resumes(tiny, tmp_path):
    """``--resume RUN_DIR`` continues from the folder's config and last checkpoint."""
    from cten_torch_ref.train import main, train
    root, path = tiny
    config = load_run_config(str(path), ["train.epochs=2"])
    train(config, str(tmp_path / "run"), progress=False, stop_after=1)
    assert main(["--resume", str(tmp_path / "run")]) == 0
    assert run_checkpoint(tmp_path / "run")["epoch"] == 1
    with pytest.raises(SystemExit):
        main(["--resume", str(tmp_path / "nothing")])


@pytest.mark.parametrize("framework", ["jittor", "torch"])
@pytest.mark.parametrize("text, problem", [
    ("model: {n_classes: [oops\n", "not valid YAML"),
    ("- a list\n", "must be a mapping"),
    ("train: {epochz: 3}\n", "unknown setting 'train.epochz'"),
    ("model: {visual_depth: 11}\n", "visual_depth must be one of"),
])
def test_a_bad_configuration_file_is_a_clear_exit_2(framework, text, problem, tmp_path, capsys):
    """``main`` of either trainer: a bad file is one error line naming the problem (and the
    file, for what is wrong with the file itself), exit 2, and no run folder."""
    import importlib
    main = importlib.import_module("cten_jt.train" if framework == "jittor" else "cten_torch_ref.train").main
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["--config", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and problem in err and "Traceback" not in err, err
    if "visual_depth" not in problem:
        assert str(path) in err
    assert not (tmp_path / "run").exists()
    assert main(["--config", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "run")]) == 2
    assert "missing.yaml: cannot read the configuration" in capsys.readouterr().err


@pytest.mark.parametrize("framework", ["jittor", "torch"])
@pytest.mark.parametrize("text, problem", [
    ("model: {n_classes: [oops\n", "not valid YAML"),
    ("train: {seed: -1}\n", "train.seed must be an integer"),
    ("train: {epochz: 3}\n", "unknown setting 'train.epochz'"),
])
def test_resuming_from_a_damaged_config_yaml_is_a_clear_exit_2(framework, text, problem, tmp_path, capsys):
    """``--resume RUN_DIR`` reads the folder's config.yaml as any --config file: a damaged or
    edited one is one error line naming it and exit 2, and the folder is left as it was."""
    import importlib
    main = importlib.import_module("cten_jt.train" if framework == "jittor" else "cten_torch_ref.train").main
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(text)
    (run / "last.safetensors").write_bytes(b"not read: the configuration is refused first")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert main(["--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and problem in err and "Traceback" not in err, err
    if "seed" not in problem:
        assert str(run / "config.yaml") in err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


@pytest.mark.parametrize("framework", ["jittor", "torch"])
@pytest.mark.parametrize("text, problem", [
    ("model: {}\ndata: {}\ntrain: {epochs: [oops\n", "not valid YAML"),
    ("model: {}\ndata: {}\ntrain: {lr: -1}\n", "train.lr must be a number >= 0, got -1"),
    ("model: {}\ndata: {num_workers: many}\ntrain: {}\n", "data.num_workers must be an integer >= 0"),
    ("model: {}\ntrain: {epochs: 3}\n", "the section 'data' is missing"),
    ("model: {}\ndata: {}\ntrain: 3\n", "setting 'train' must be a mapping"),
])
def test_every_damage_to_a_run_folders_config_yaml_is_one_line_naming_it(framework, text, problem, tmp_path,
                                                                          capsys):
    """``--resume``: bad YAML, a bad value and a missing section alike are exit 2 with one
    error line that names the folder's config.yaml, before the checkpoint is read."""
    import importlib
    main = importlib.import_module("cten_jt.train" if framework == "jittor" else "cten_torch_ref.train").main
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(text)
    (run / "last.safetensors").write_bytes(b"not read: the configuration is refused first")
    assert main(["--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {run / 'config.yaml'}: ") and problem in err and err.count("\n") == 1, err


@pytest.mark.parametrize("framework", ["jittor", "torch"])
def test_both_trainers_train_in_bf16_with_float32_checkpoints(framework, tiny, tmp_path):
    """train.precision=bf16: an epoch trains (finite losses, the weights move), the run's
    config records the precision, and the checkpoint is float32, loadable by a float32 run;
    fp16 on this CPU is refused before anything runs, naming the setting."""
    root, path = tiny
    config = load_run_config(str(path), ["train.epochs=1", "train.precision=bf16"])
    trainer = _trainer(framework)
    summary = trainer.train(config, str(tmp_path / "run"), progress=False)
    assert summary["epochs_done"] == 1
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        record = json.loads(f.readline())
    assert all(np.isfinite(record["step_losses"]))
    assert load_run_config(str(tmp_path / "run" / "config.yaml"), rebase_paths=False).train.precision == "bf16"
    ckpt = run_checkpoint(tmp_path / "run")
    floats = {k: v for k, v in ckpt["model"].items() if v.dtype.kind == "f"}
    assert floats and all(v.dtype == np.float32 for v in floats.values())
    if framework == "jittor":
        from cten_jt.models import build_model
        import cten_jt
        model = build_model(config.model, init_seed=0)
        cten_jt.load_weights(model, str(tmp_path / "run" / "last.safetensors"))
        assert model.precision == "fp32"
        # and the commands take --precision: bf16 evaluates it, fp16 on this CPU is exit 2
        from cten_jt.evaluate import main as evaluate
        weights = str(tmp_path / "run" / "last.safetensors")
        assert evaluate(["--config", str(path), "--weights", weights, "--precision", "bf16",
                         "--out", str(tmp_path / "eval.json")]) == 0
        assert evaluate(["--config", str(path), "--weights", weights, "--precision", "fp16"]) == 2
    with pytest.raises(ValueError, match="fp16 runs on a CUDA GPU only"):
        trainer.train(load_run_config(str(path), ["train.epochs=1", "train.precision=fp16"]),
                      str(tmp_path / "run16"), progress=False)
