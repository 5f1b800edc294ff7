"""cten_common/config.py: the model configuration (validation, inference from checkpoint names
and shapes) and the typed run configuration (DataConfig, TrainConfig, RunConfig, the loader)."""
import pytest
import torch

import yaml

from cten_common.config import (AUDIO_ARCHS, DEFAULTS, VISUAL_DEPTHS, DataConfig, ModelConfig, RunConfig,
                                TrainConfig, infer_config, load_run_config)
from cten_torch_ref.models import CTEN




def _meta_shapes(**kw):
    from cten_torch_ref.models.resnet import audio_backbone, visual_backbone
    cfg = ModelConfig(**kw)
    with torch.device("meta"):
        shapes = {f"resnet.{k}": tuple(v.shape) for k, v in
                  visual_backbone(cfg.visual_depth, 16, 112).state_dict().items()}
        shapes.update({f"a_resnet.{k}": tuple(v.shape) for k, v in
                       audio_backbone(cfg.audio_arch).state_dict().items()})
    shapes.update({"fc.weight": (cfg.n_classes, cfg.fused_dim),
                   "ta_net.fc.weight": (cfg.seq_len, cfg.seq_len),
                   "a_fc.0.weight": (cfg.audio_embed_size, cfg.audio_backbone_dim)})
    return shapes


@pytest.mark.parametrize("depth", sorted(VISUAL_DEPTHS))
@pytest.mark.parametrize("arch", sorted(AUDIO_ARCHS))
def test_depth_and_arch_are_read_off_the_names(depth, arch):
    dim = 512 * (4 if VISUAL_DEPTHS[depth][0] == "bottleneck" else 1)
    shapes = _meta_shapes(visual_depth=depth, audio_arch=arch, audio_embed_size=dim,
                          n_classes=6, seq_len=10, audio_n_segments=10)
    cfg = infer_config(shapes)
    assert (cfg.visual_depth, cfg.audio_arch, cfg.n_classes, cfg.seq_len, cfg.audio_n_segments,
            cfg.audio_embed_size, cfg.modality) == (depth, arch, 6, 10, 10, dim, "av")


def test_visual_only_and_overrides():
    model = CTEN(**{"n_classes": 3, "seq_len": 4, "snippet_duration": 8, "sample_size": 32,
                    "audio_n_segments": 4, "visual_depth": 18, "modality": "visual"})
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    cfg = infer_config(shapes, sample_size=32, snippet_duration=8)
    assert cfg == model.config


def test_invalid_settings_are_listed():
    with pytest.raises(ValueError, match="visual_depth must be one of"):
        ModelConfig(visual_depth=20)
    with pytest.raises(ValueError, match="unknown model settings"):
        ModelConfig.from_dict({"n_class": 3})
    with pytest.raises(ValueError, match="not a CTEN state dict"):
        infer_config({"conv1.weight": (64, 3, 7, 7, 7)})


# ---------------------------------------------------------------------------
# the run configuration


@pytest.mark.parametrize("kind, key, value, what", [
    (TrainConfig, "lr", -1, "train.lr must be a number >= 0, got -1"),
    (TrainConfig, "lr", "2e-4", "train.lr must be a number >= 0, got '2e-4'"),       # YAML reads 2e-4 as text
    (TrainConfig, "epochs", 0, "train.epochs must be a positive integer, got 0"),
    (TrainConfig, "batch_size", 2.5, "train.batch_size must be a positive integer, got 2.5"),
    (TrainConfig, "theta", 1.5, "train.theta must be a number in [0, 1], got 1.5"),
    (TrainConfig, "erasing", "yes", "train.erasing must be true or false, got 'yes'"),
    (TrainConfig, "loss", "mse", "train.loss must be 'ce' or 'pcce', got 'mse'"),
    (TrainConfig, "seed", 2 ** 32, "train.seed must be an integer in [0, 2**32), got 4294967296"),
    (TrainConfig, "kernels", "fast", "train.kernels must be 'fused' or 'composed', got 'fast'"),
    (TrainConfig, "device", "gpu", "train.device must be 'auto', 'cpu' or 'cuda', got 'gpu'"),
    (TrainConfig, "precision", "fp8", "train.precision must be 'fp32', 'bf16', 'fp16' or 'tf32', got 'fp8'"),
    (TrainConfig, "features", 3, "train.features must be null or a path, got 3"),
    (TrainConfig, "backbone_eval", 1, "train.backbone_eval must be true or false, got 1"),
    (DataConfig, "format", "kinetics", "data.format must be 've8', 'ekman6' or 'caer', got 'kinetics'"),
    (DataConfig, "num_workers", -1, "data.num_workers must be an integer >= 0, got -1"),
    (DataConfig, "augment", None, "data.augment must be true or false, got None"),
    (DataConfig, "max_bad_share", 2, "data.max_bad_share must be a number in [0, 1], got 2"),
    (DataConfig, "frame_fps", 0, "data.frame_fps must be null or a positive number of frames per second, got 0"),
    (DataConfig, "eval_subset", "", "data.eval_subset must be a name, got ''"),
    (ModelConfig, "n_classes", "8", "model.n_classes must be a positive integer, got '8'"),
    (ModelConfig, "dropout", 1.0, "model.dropout must be in [0, 1), got 1.0"),
])
def test_each_section_names_the_key_of_a_bad_value(kind, key, value, what):
    with pytest.raises(ValueError) as err:
        kind(**{key: value})
    assert what in str(err.value)


def test_every_problem_of_a_configuration_in_one_message():
    with pytest.raises(ValueError) as err:
        RunConfig.from_dict({"model": {"seq_len": 0}, "data": {"num_workers": -1},
                             "train": {"lr": -1, "epochs": 0}})
    for key in ("model.seq_len", "data.num_workers", "train.lr", "train.epochs"):
        assert f"{key} must be" in str(err.value), key
    assert "\n" not in str(err.value)


def test_the_defaults_and_config_yaml_keep_their_layout(tmp_path):
    """DEFAULTS is config.yaml's layout: the sections and keys in their order; a file written
    from a configuration reads back to the same configuration."""
    assert list(DEFAULTS) == ["model", "data", "train"]
    assert list(DEFAULTS["train"])[:5] == ["epochs", "batch_size", "lr", "weight_decay", "theta"]
    assert DEFAULTS["train"]["theta"] == 0.7 and DEFAULTS["data"]["on_bad_sample"] == "stop"
    config = load_run_config(None, ["train.epochs=3", "data.video_root=videos", "model.n_classes=4"])
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    assert load_run_config(str(path), rebase_paths=False, complete=True) == config
    assert config.updated({"train": {"lr": 0.5}}).train.lr == 0.5 and config.train.lr == 2e-4
    with pytest.raises(ValueError, match="train.lr must be a number >= 0"):
        config.updated({"train": {"lr": -0.5}})


@pytest.mark.parametrize("text, sets, where, problem", [
    ("train: {epochs: 0}\n", [], "{path}: ", "train.epochs must be a positive integer, got 0"),
    ("train: {epochs: 3}\n", ["train.lr=-1"], "{path} with --set train.lr=-1: ", "train.lr must be"),
    ("train: {epochz: 3}\n", [], "{path}: ", "unknown setting 'train.epochz'"),
    ("train: [1, 2]\n", [], "{path}: ", "setting 'train' must be a mapping"),
    ("train: {epochs: 3\n", [], "{path}: ", "not valid YAML"),
    ("train: {epochs: 3}\n", ["train.x=1"], "--set train.x=1: ", "unknown setting 'train.x'"),
    ("train: {epochs: 3}\n", ["train.epochs"], "", "--set expects section.key=value"),
])
def test_a_bad_configuration_is_one_line_naming_where(text, sets, where, problem, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        load_run_config(str(path), sets)
    message = str(err.value)
    assert message.startswith(where.format(path=path)) and problem in message and "\n" not in message, message


def test_a_run_folders_config_yaml_must_hold_every_section(tmp_path):
    """``complete`` (resuming): a missing section is refused, with any bad value beside it."""
    path = tmp_path / "config.yaml"
    path.write_text("model: {}\ntrain: {seed: -1}\n")
    with pytest.raises(ValueError) as err:
        load_run_config(str(path), rebase_paths=False, complete=True)
    assert str(err.value).startswith(f"{path}: the section 'data' is missing")
    assert "train.seed must be an integer in [0, 2**32), got -1" in str(err.value)
    assert load_run_config() == RunConfig()             # no file: the defaults
