"""Run configuration: a YAML file with ``model``, ``data`` and ``train`` sections,
defaults for everything, and ``--set section.key=value`` overrides."""
import copy
import os

import yaml

from .config import ModelConfig
from .precision import check_precision

DEFAULTS = {
    "model": ModelConfig().to_dict(),
    "data": {
        "format": "ve8",            # ve8 | ekman6 | caer
        "annotation": None,
        "video_root": None,
        "audio_root": None,         # null: each video's own audio track
        "allow_silence": False,
        "augment": True,            # False: training frames get the evaluation transform
        "num_workers": 0,           # loader processes preparing the next batches (0: a prefetch thread)
        "read_threads": 0,          # threads reading the erased views' frames (0: 2 per core, at most 16)
        "on_bad_sample": "stop",    # stop: a video that fails to read ends the run | skip: left out, logged, listed
        "max_bad_share": 0.05,      # skip: the run stops once more than this share of its videos was skipped
        "train_subset": "training",
        "eval_subset": "validation",
        "frame_fps": None,          # frames per second of videos with no other rate source (frame
                                    # folders without fps file, annotation rate or audio); null: none
    },
    "train": {
        "epochs": 100,
        "batch_size": 32,
        "lr": 2e-4,
        "weight_decay": 5e-4,
        "theta": 0.7,               # erasing threshold on min-max normalised attention
        "erasing": True,            # False: the original view alone is trained (no context/keyframe views)
        "loss": "ce",               # ce | pcce
        "pcce_lambda": 0.5,
        "seed": 0,
        "pretrained_visual": None,  # a Kinetics 3D ResNet checkpoint
        "pretrained_audio": None,   # a torchvision ImageNet ResNet checkpoint
        "detection_threshold": 0.5,
        "kernels": "fused",         # fused (compiled attention and erasing, Jittor) | composed
        "audio_once": True,         # the audio branch once per step for the three views (false: the reference's three)
        "device": "auto",           # Jittor: auto (the GPU when Jittor has CUDA) | cpu | cuda
        "precision": "fp32",        # fp32 | bf16 (CPU and GPU) | fp16, tf32 (GPU); docs/precision.md
        "sync_bn": False,           # Jittor under MPI: BatchNorm over the global batch (else per rank)
        "features": None,           # Jittor: a feature bank folder (cten_jt.extract_features)
        "backbone_eval": False,     # the frozen visual backbone's BatchNorm in eval mode (a bank's is)
    },
}


def _parse_value(text):
    return yaml.safe_load(text)


def merge(base, override, where=""):
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


def _merge_file(config, path, rebase_paths=True):
    """``config`` with the YAML file ``path`` merged in; every problem with the file is a
    ValueError that names it (the file is read with ``yaml.safe_load``: no code runs)."""
    try:
        with open(path) as f:
            loaded = yaml.safe_load(f) or {}
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the configuration ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: a configuration must be a mapping of sections, got {type(loaded).__name__}")
    base = os.path.dirname(os.path.abspath(path))
    data = loaded.get("data")
    if isinstance(data, dict) and rebase_paths:
        for key in ("annotation", "video_root", "audio_root"):
            value = data.get(key)
            if isinstance(value, str) and not os.path.isabs(value):
                data[key] = os.path.normpath(os.path.join(base, value))
    try:
        return merge(config, loaded)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def load_run_config(path=None, overrides=(), rebase_paths=True):
    """The resolved configuration: defaults < file < ``key.sub=value`` overrides.

    Relative data paths in the file are taken relative to the file's folder
    (``rebase_paths=False``: as they are, i.e. relative to the working folder, as a
    run folder's config.yaml holds a ``--set`` path).
    """
    config = copy.deepcopy(DEFAULTS)
    if path is not None:
        config = _merge_file(config, path, rebase_paths)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set expects section.key=value, got {item!r}")
        dotted, value = item.split("=", 1)
        keys = dotted.split(".")
        patch = node = {}
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = _parse_value(value)
        config = merge(config, patch)
    ModelConfig.from_dict(config["model"])          # validate early
    if config["train"]["kernels"] not in ("fused", "composed"):
        raise ValueError(f"train.kernels must be 'fused' or 'composed', got {config['train']['kernels']!r}")
    if config["train"]["device"] not in ("auto", "cpu", "cuda"):
        raise ValueError(f"train.device must be 'auto', 'cpu' or 'cuda', got {config['train']['device']!r}")
    check_precision(config["train"]["precision"], "train.precision")
    if not isinstance(config["train"]["erasing"], bool):
        raise ValueError(f"train.erasing must be true or false, got {config['train']['erasing']!r}")
    seed = config["train"]["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 32:
        # Jittor seeds numpy's global generator with it, which takes 32 bits
        raise ValueError(f"train.seed must be an integer in [0, 2**32), got {seed!r}")
    frame_fps = config["data"]["frame_fps"]
    if frame_fps is not None and (isinstance(frame_fps, bool) or not isinstance(frame_fps, (int, float))
                                  or not 0 < frame_fps < float("inf")):
        raise ValueError(f"data.frame_fps must be null or a positive number of frames per second, "
                         f"got {frame_fps!r}")
    if config["data"]["on_bad_sample"] not in ("stop", "skip"):
        raise ValueError(f"data.on_bad_sample must be 'stop' or 'skip', got {config['data']['on_bad_sample']!r}")
    share = config["data"]["max_bad_share"]
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
        raise ValueError(f"data.max_bad_share must be a number in [0, 1], got {share!r}")
    if config["train"]["loss"] not in ("ce", "pcce"):
        raise ValueError(f"train.loss must be 'ce' or 'pcce', got {config['train']['loss']!r}")
    return config
