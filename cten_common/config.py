"""Every setting of CTEN, its default and its check: the model's and a run's.

One module for the configuration (``run_config.py`` is gone; its loader is here):

* ``ModelConfig``: the constructor arguments of ``CTEN`` in both frameworks, and
  ``infer_config``, which reads one off a checkpoint's names and shapes;
* ``DataConfig`` and ``TrainConfig``: a run configuration's ``data`` and ``train``
  sections; ``RunConfig``: the three sections together.  Each field's comment
  documents its key, and ``DEFAULTS`` is the whole default configuration as a dict;
* ``load_run_config(path, overrides)``: defaults < a YAML file < ``--set
  section.key=value`` overrides, the one way a configuration is made from text
  (``--config``, ``--set``, and ``--resume``, which reads a run folder's
  config.yaml: ``cten_common.training.resume_config``).

Each dataclass is frozen and checks its values when made: a bad value is a
ValueError naming its key ("train.lr must be a number >= 0, got -1"), every
problem of a section in one message.  ``RunConfig.to_dict()`` is config.yaml's
layout and the dict a checkpoint stores; ``RunConfig.updated(patch)`` is a
copy with some values changed (a nested dict, merged as a YAML file is).

The lists of choices are written here once, and the packages that act on them
import them: ``KERNEL_MODES`` (``cten_jt.switches``), ``DEVICES`` (``cten_jt.device``,
``cten_torch_ref.device``), ``DATA_FORMATS`` and ``ON_BAD_SAMPLE`` (``cten_common.data``);
the precisions are ``cten_common.precision``'s, the losses ``cten_common.losses``'
and the erasing threshold's default ``cten_common.erasing``'s.
"""
import copy
import math
import numbers
import os
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Optional

import yaml

from .losses import LOSSES
from .precision import PRECISIONS

KERNEL_MODES = ("fused", "composed")         # train.kernels: compiled (Jittor) or composed operators
DEVICES = ("auto", "cpu", "cuda")            # train.device: auto is the GPU where the framework has CUDA
DATA_FORMATS = ("ve8", "ekman6", "caer")     # data.format
ON_BAD_SAMPLE = ("stop", "skip")             # data.on_bad_sample: what a video that fails to read does

# depth -> (block type, blocks per stage) of Hara et al.'s 3D ResNets
VISUAL_DEPTHS = {
    10: ("basic", (1, 1, 1, 1)),
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}
# torchvision ResNets usable as the audio backbone
AUDIO_ARCHS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}
EXPANSION = {"basic": 1, "bottleneck": 4}
MODALITIES = ("av", "visual")

AUDIO_FRAMES_PER_SEGMENT = 100   # 1 s of 10 ms filterbank frames
AUDIO_MEL_BINS = 128
NONLOCAL_INNER = 256
ATTENTION_HEADS = 8


# ---------------------------------------------------------------------------
# the checks of a section's values


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _either(choices):
    """``'a', 'b' or 'c'``."""
    quoted = [repr(c) for c in choices]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _one_of(choices):
    return (lambda value: value in choices), _either(choices)


BOOL = (lambda value: isinstance(value, bool)), "true or false"
PATH_OR_NULL = (lambda value: value is None or (isinstance(value, str) and value != "")), "null or a path"
NAME = (lambda value: isinstance(value, str) and value != ""), "a name"
POSITIVE_INT = (lambda value: _is_int(value) and value >= 1), "a positive integer"
COUNT = (lambda value: _is_int(value) and value >= 0), "an integer >= 0"
NON_NEGATIVE = (lambda value: _is_number(value) and value >= 0), "a number >= 0"
FRACTION = (lambda value: _is_number(value) and 0 <= value <= 1), "a number in [0, 1]"


def check_fields(config, rules):
    """A ValueError naming every field of the section ``config`` whose value breaks its
    rule (``{field: (test, what it must be)}``), all in one message; every field must
    have a rule."""
    unruled = [f.name for f in fields(config) if f.name not in rules]
    if unruled:
        raise TypeError(f"{type(config).__name__}: no check for {unruled}")
    problems = [f"{config.section}.{name} must be {what}, got {getattr(config, name)!r}"
                for name, (test, what) in rules.items() if not test(getattr(config, name))]
    if problems:
        raise ValueError("; ".join(problems))


class _Section:
    """``to_dict``/``replace``/``from_dict`` of a configuration section: a frozen dataclass
    whose ``section`` names it in config.yaml and in messages (model, data, train)."""
    section = ""

    def to_dict(self):
        return asdict(self)

    def replace(self, **changes):
        return replace(self, **changes)

    @classmethod
    def from_dict(cls, values):
        """The section from a mapping of its keys; a key it lacks gets its default."""
        if not isinstance(values, dict):
            raise ValueError(f"setting '{cls.section}' must be a mapping, got {values!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown {cls.section} settings {unknown}; known: {sorted(known)}")
        return cls(**values)


# ---------------------------------------------------------------------------
# the model


@dataclass(frozen=True)
class ModelConfig(_Section):
    """Constructor arguments of ``CTEN`` in both frameworks (reference defaults)."""
    section = "model"
    n_classes: int = 8
    seq_len: int = 16
    snippet_duration: int = 16
    sample_size: int = 112
    audio_n_segments: int = 16
    audio_embed_size: int = 2048
    visual_depth: int = 101
    audio_arch: str = "resnet18"
    modality: str = "av"
    dropout: float = 0.2

    def __post_init__(self):
        problems = []
        if not isinstance(self.modality, str) or self.modality not in MODALITIES:
            problems.append(f"model.modality must be one of {MODALITIES}, got {self.modality!r}")
        if not _is_int(self.visual_depth) or self.visual_depth not in VISUAL_DEPTHS:
            problems.append(f"model.visual_depth must be one of {sorted(VISUAL_DEPTHS)}, got {self.visual_depth!r}")
        if not isinstance(self.audio_arch, str) or self.audio_arch not in AUDIO_ARCHS:
            problems.append(f"model.audio_arch must be one of {sorted(AUDIO_ARCHS)}, got {self.audio_arch!r}")
        for name in ("n_classes", "seq_len", "snippet_duration", "sample_size",
                     "audio_n_segments", "audio_embed_size"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                problems.append(f"model.{name} must be a positive integer, got {getattr(self, name)!r}")
        if not _is_number(self.dropout) or not 0.0 <= self.dropout < 1.0:
            problems.append(f"model.dropout must be in [0, 1), got {self.dropout!r}")
        if not problems and self.modality == "av":
            if self.audio_n_segments != self.seq_len:
                problems.append(f"audio_n_segments ({self.audio_n_segments}) must equal seq_len "
                                f"({self.seq_len}): the cross-modal attention adds segment to segment")
            if self.audio_embed_size != self.visual_dim:
                problems.append(f"audio_embed_size ({self.audio_embed_size}) must equal the visual "
                                f"feature size of depth {self.visual_depth} ({self.visual_dim}): "
                                "the cross-modal attention maps one onto the other")
            if self.audio_embed_size % ATTENTION_HEADS:
                problems.append(f"audio_embed_size ({self.audio_embed_size}) must be divisible by "
                                f"{ATTENTION_HEADS} attention heads")
        if problems:
            raise ValueError("invalid CTEN configuration: " + "; ".join(problems))

    @property
    def visual_dim(self):
        block, _ = VISUAL_DEPTHS[self.visual_depth]
        return 512 * EXPANSION[block]

    @property
    def audio_backbone_dim(self):
        block, _ = AUDIO_ARCHS[self.audio_arch]
        return 512 * EXPANSION[block]

    @property
    def fused_dim(self):
        return self.visual_dim + (self.audio_embed_size if self.modality == "av" else 0)

    @property
    def audio_frames(self):
        return AUDIO_FRAMES_PER_SEGMENT * self.audio_n_segments



def _stage_blocks(shapes, stage_prefix):
    """Number of blocks and block type of one ResNet stage, read off parameter names."""
    indices = set()
    bottleneck = False
    for name in shapes:
        if name.startswith(stage_prefix):
            rest = name[len(stage_prefix):].split(".")
            if rest[0].isdigit():
                indices.add(int(rest[0]))
                bottleneck = bottleneck or rest[1] == "conv3"
    return len(indices), ("bottleneck" if bottleneck else "basic")


def _depth_from_stages(shapes, prefix, table, what):
    stages = [_stage_blocks(shapes, f"{prefix}.{i}.") for i in (4, 5, 6, 7)]
    counts = tuple(n for n, _ in stages)
    block = stages[0][1]
    for key, (blk, layers) in table.items():
        if blk == block and layers == counts:
            return key
    raise ValueError(f"the {what} has {block} blocks {counts} per stage, which matches none "
                     f"of {sorted(table)}")


def infer_config(shapes, **overrides):
    """ModelConfig read off a state dict's names and shapes (``{name: shape}``).

    ``snippet_duration`` and ``sample_size`` leave no trace in the weights and
    keep their defaults unless overridden; ``audio_n_segments`` follows seq_len.
    """
    shapes = {k: tuple(v) for k, v in shapes.items()}
    for name in ("fc.weight", "ta_net.fc.weight", "resnet.0.weight"):
        if name not in shapes:
            raise ValueError(f"not a CTEN state dict: it has no parameter {name!r} "
                             f"(first names: {sorted(shapes)[:5]})")
    values = {
        "n_classes": shapes["fc.weight"][0],
        "seq_len": shapes["ta_net.fc.weight"][0],
        "visual_depth": _depth_from_stages(shapes, "resnet", VISUAL_DEPTHS, "visual backbone"),
        "modality": "av" if "a_fc.0.weight" in shapes else "visual",
    }
    values["audio_n_segments"] = values["seq_len"]
    if values["modality"] == "av":
        values["audio_embed_size"] = shapes["a_fc.0.weight"][0]
        values["audio_arch"] = _depth_from_stages(shapes, "a_resnet", AUDIO_ARCHS, "audio backbone")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return ModelConfig.from_dict(values)


# ---------------------------------------------------------------------------
# a run's configuration


@dataclass(frozen=True)
class DataConfig(_Section):
    """A run configuration's ``data`` section: where the videos are and how they are read."""
    section = "data"
    format: str = "ve8"                    # ve8 | ekman6 | caer
    annotation: Optional[str] = None
    video_root: Optional[str] = None
    audio_root: Optional[str] = None       # null: each video's own audio track
    allow_silence: bool = False
    augment: bool = True                   # False: training frames get the evaluation transform
    num_workers: int = 0                   # loader processes preparing the next batches (0: a prefetch thread)
    read_threads: int = 0                  # threads reading the erased views' frames (0: 2 per core, at most 16)
    on_bad_sample: str = "stop"            # stop: a video that fails to read ends the run | skip: left out, logged, listed
    max_bad_share: float = 0.05            # skip: the run stops once more than this share of its videos was skipped
    train_subset: str = "training"
    eval_subset: str = "validation"
    frame_fps: Optional[float] = None      # frames per second of videos with no other rate source (frame
                                           # folders without fps file, annotation rate or audio); null: none

    def __post_init__(self):
        check_fields(self, {
            "format": _one_of(DATA_FORMATS),
            "annotation": PATH_OR_NULL, "video_root": PATH_OR_NULL, "audio_root": PATH_OR_NULL,
            "allow_silence": BOOL, "augment": BOOL,
            "num_workers": COUNT, "read_threads": COUNT,
            "on_bad_sample": _one_of(ON_BAD_SAMPLE),
            "max_bad_share": FRACTION,
            "train_subset": NAME, "eval_subset": NAME,
            "frame_fps": ((lambda v: v is None or (_is_number(v) and v > 0)),
                          "null or a positive number of frames per second"),
        })


DEFAULT_THETA = 0.7          # the erasing threshold's default (train.theta; cten_common.erasing's too)


@dataclass(frozen=True)
class TrainConfig(_Section):
    """A run configuration's ``train`` section: the optimisation, the erasing step, the
    seed, the device and precision, and what the run starts from."""
    section = "train"
    epochs: int = 100
    batch_size: int = 32                   # the global batch (MPI: split across the ranks)
    lr: float = 2e-4
    weight_decay: float = 5e-4
    theta: float = DEFAULT_THETA           # erasing threshold on min-max normalised attention
    erasing: bool = True                   # False: the original view alone is trained (no context/keyframe views)
    loss: str = "ce"                       # ce | pcce
    pcce_lambda: float = 0.5
    seed: int = 0
    pretrained_visual: Optional[str] = None   # a Kinetics 3D ResNet checkpoint
    pretrained_audio: Optional[str] = None    # a torchvision ImageNet ResNet checkpoint
    detection_threshold: float = 0.5
    kernels: str = "fused"                 # fused (compiled attention and erasing, Jittor) | composed
    audio_once: bool = True                # the audio branch once per step for the three views (false: the reference's three)
    device: str = "auto"                   # auto (the GPU where the framework has CUDA) | cpu | cuda
    precision: str = "fp32"                # fp32 | bf16 (CPU and GPU) | fp16, tf32 (GPU); docs/precision.md
    sync_bn: bool = False                  # Jittor under MPI: BatchNorm over the global batch (else per rank)
    features: Optional[str] = None         # Jittor: a feature bank folder (cten_jt.extract_features)
    backbone_eval: bool = False            # the frozen visual backbone's BatchNorm in eval mode (a bank's is)

    def __post_init__(self):
        check_fields(self, {
            "epochs": POSITIVE_INT, "batch_size": POSITIVE_INT,
            "lr": NON_NEGATIVE, "weight_decay": NON_NEGATIVE,
            "theta": FRACTION, "erasing": BOOL,
            "loss": _one_of(LOSSES), "pcce_lambda": NON_NEGATIVE,
            # Jittor seeds numpy's global generator with it, which takes 32 bits
            "seed": ((lambda v: _is_int(v) and 0 <= v < 2 ** 32), "an integer in [0, 2**32)"),
            "pretrained_visual": PATH_OR_NULL, "pretrained_audio": PATH_OR_NULL,
            "detection_threshold": FRACTION,
            "kernels": _one_of(KERNEL_MODES), "audio_once": BOOL,
            "device": _one_of(DEVICES), "precision": _one_of(PRECISIONS),
            "sync_bn": BOOL, "features": PATH_OR_NULL, "backbone_eval": BOOL,
        })


#: the sections of a run configuration, in config.yaml's order
SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


@dataclass(frozen=True)
class RunConfig:
    """A run's configuration: ``model``, ``data`` and ``train``."""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        for name, kind in SECTIONS.items():
            if not isinstance(getattr(self, name), kind):
                raise TypeError(f"RunConfig.{name} must be a {kind.__name__}, got {type(getattr(self, name)).__name__}")

    def to_dict(self):
        """config.yaml's layout: ``{"model": {...}, "data": {...}, "train": {...}}`` of plain values."""
        return {name: getattr(self, name).to_dict() for name in SECTIONS}

    @classmethod
    def from_dict(cls, values):
        """The configuration of a mapping in config.yaml's layout: every section must be there
        (a run folder's config.yaml, a checkpoint's stored config); a key a section lacks
        gets its default."""
        if not isinstance(values, dict):
            raise ValueError(f"a configuration must be a mapping of sections, got {type(values).__name__}")
        unknown = sorted(set(values) - set(SECTIONS))
        if unknown:
            raise ValueError(f"unknown setting '{unknown[0]}'; known: {sorted(SECTIONS)}")
        missing = [name for name in SECTIONS if name not in values]
        if missing:
            raise ValueError(f"the section '{missing[0]}' is missing (a configuration has {', '.join(SECTIONS)})")
        sections, problems = {}, []
        for name, kind in SECTIONS.items():          # every section's problems in one message
            try:
                sections[name] = kind.from_dict(values[name])
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise ValueError("; ".join(problems))
        return cls(**sections)

    def updated(self, patch):
        """A copy with the values of ``patch`` (``{"train": {"epochs": 3}}``) merged in, checked."""
        return RunConfig.from_dict(merge(self.to_dict(), patch))


#: the default configuration in config.yaml's layout (each field's comment documents its key)
DEFAULTS = RunConfig().to_dict()


# ---------------------------------------------------------------------------
# reading a configuration


def merge(base, override, where=""):
    """``base`` (a dict of sections) with ``override``'s values in; an unknown key or a
    value where a section belongs is a ValueError naming it."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if key not in out:
            raise ValueError(f"unknown setting '{where}{key}'; known: {sorted(out)}")
        if isinstance(out[key], dict):
            if not isinstance(value, dict):
                raise ValueError(f"setting '{where}{key}' must be a mapping")
            out[key] = merge(out[key], value, f"{where}{key}.")
        else:
            out[key] = value
    return out


def _read_file(path, rebase_paths=True):
    """The mapping in the YAML file ``path``; a problem with the file is a one-line
    ValueError naming it (read with ``yaml.safe_load``: no code runs).  ``rebase_paths``:
    relative data paths are taken relative to the file's folder."""
    try:
        with open(path) as f:
            loaded = yaml.safe_load(f)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the configuration ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"{path}: not valid YAML: {what}{at}") from None
    loaded = {} if loaded is None else loaded
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: a configuration must be a mapping of sections, got {type(loaded).__name__}")
    data = loaded.get("data")
    if isinstance(data, dict) and rebase_paths:
        base = os.path.dirname(os.path.abspath(path))
        for key in ("annotation", "video_root", "audio_root"):
            value = data.get(key)
            if isinstance(value, str) and not os.path.isabs(value):
                data[key] = os.path.normpath(os.path.join(base, value))
    return loaded


def _override(item):
    """``{"train": {"epochs": 5}}`` of a ``--set train.epochs=5`` (the value read as YAML)."""
    if "=" not in item:
        raise ValueError(f"--set expects section.key=value, got {item!r}")
    dotted, text = item.split("=", 1)
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ValueError(f"--set {item}: {text!r} is not a YAML value") from None
    keys = dotted.split(".")
    patch = node = {}
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value
    return patch


def load_run_config(path=None, overrides=(), rebase_paths=True, complete=False):
    """The resolved ``RunConfig``: defaults < the YAML file ``path`` < ``key.sub=value``
    overrides (``--set``).  Every problem is a one-line ValueError that names where it is
    (the file, or the ``--set`` item) and lists what is wrong.

    Relative data paths in the file are taken relative to the file's folder
    (``rebase_paths=False``: as they are, i.e. relative to the working folder, as a
    run folder's config.yaml holds a ``--set`` path).  ``complete``: the file must hold
    every section (a run folder's config.yaml, which the run wrote whole).
    """
    values, problems = copy.deepcopy(DEFAULTS), []
    if path is not None:
        loaded = _read_file(path, rebase_paths)
        problems = [f"the section '{name}' is missing (a run folder's config.yaml holds {', '.join(SECTIONS)})"
                    for name in SECTIONS if complete and name not in loaded]
        try:
            values = merge(values, loaded)
        except ValueError as exc:
            raise ValueError(f"{path}: " + "; ".join(problems + [str(exc)])) from None
    for item in overrides:
        try:
            values = merge(values, _override(item))
        except ValueError as exc:
            raise ValueError(str(exc) if str(exc).startswith("--set ") else f"--set {item}: {exc}") from None
    try:
        config = RunConfig.from_dict(values)
    except ValueError as exc:
        problems.append(str(exc))
    if problems:       # the values of the file and the overrides together
        where = " with ".join(filter(None, [path and str(path), " ".join(f"--set {o}" for o in overrides)]))
        raise ValueError(f"{where}: " + "; ".join(problems))
    return config
