"""Conversion in both directions; every path goes through the checkpoint filter
(``cten_common.checkpoint_io.filter``).

A CTEN checkpoint (a reference training checkpoint, or a state dict with or
without ``module.``) is converted name for name after its configuration is
inferred from its names and shapes (and from the model configuration that our
safetensors files and run checkpoints carry).  A pretrained backbone
(``backbone="visual"``: a Kinetics 3D ResNet; ``"audio"``: a torchvision
ImageNet ResNet) is renamed into a freshly initialised CTEN built from
``config``.  Sources are read by ``cten_common.checkpoint_io``, which never runs
code from a file; outputs are written atomically, and only after the source
was read and fitted, so a refused or misfitting source leaves no output file.
"""
import json
import os

import numpy as np

from cten_common.checkpoint_io.atomic import atomic_write
from cten_common.checkpoint_io.errors import CheckpointError
from cten_common.checkpoint_io.filter import (backbone_shapes, match_state_dict, rename_backbone,
                                              strip_prefix, unwrap_state_dict)
from cten_common.checkpoint_io.safetensors_io import read_model_config, save_weights_file
from cten_common.checkpoint_io.sniff import read_checkpoint, sniff_format, weights_kind
from cten_common.config import ModelConfig, infer_config

OUTPUT_FORMATS = ("state_dict", "reference")


def read_model_settings(path):
    """Model settings from a YAML or JSON file: its ``model`` section, or its top level."""
    if path is None:
        return {}
    with open(path) as f:
        text = f.read()
    if str(path).endswith(".json"):
        data = json.loads(text)
    else:
        import yaml
        data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of model settings")
    data = data.get("model", data)
    known = set(ModelConfig.__dataclass_fields__)
    return {k: v for k, v in data.items() if k in known}


def _shapes(state):
    return {k: tuple(np.shape(v)) for k, v in state.items()}


def _model_settings(src, obj):
    """The model configuration a source carries: our safetensors files' metadata, or a
    run checkpoint's ``config["model"]``; {} for foreign files."""
    carried = None
    if sniff_format(src) == "safetensors":
        carried = read_model_config(src)
    if carried is None and isinstance(obj, dict) and isinstance(obj.get("config"), dict):
        carried = obj["config"].get("model")
    known = set(ModelConfig.__dataclass_fields__)
    return {k: v for k, v in (carried or {}).items() if k in known}


def _source_state(src):
    """``(state dict, epoch or None, carried model settings)`` of a source file."""
    obj = read_checkpoint(src)
    state = strip_prefix(unwrap_state_dict(obj, str(src)))
    epoch = obj.get("epoch") if isinstance(obj, dict) else None
    return state, epoch, _model_settings(src, obj)


def _settings(carried, settings, backbone):
    """A backbone file's carried settings are not the target's; given ones win."""
    return dict(settings or {}) if backbone else {**carried, **(settings or {})}


def convert_state(state, source, build_model, state_arrays, load_state_arrays,
                  backbone=None, settings=None, seed=0):
    """Load ``state`` into a model of the target framework; return (model, config).

    ``build_model(config, seed)`` builds the target model; ``state_arrays`` and
    ``load_state_arrays`` are the target framework's checkpoint functions.
    """
    settings = dict(settings or {})
    if backbone is None:
        config = infer_config(_shapes(state), **settings)
        model = build_model(config, seed)
        load_state_arrays(model, state, str(source))
        return model, config
    config = ModelConfig.from_dict(settings)
    model = build_model(config, seed)
    arrays = state_arrays(model)
    expected = backbone_shapes({k: v.shape for k, v in arrays.items()}, backbone)
    renamed = rename_backbone(state, backbone, str(source))
    arrays.update(match_state_dict(renamed, expected, f"{source} (as the {backbone} backbone)"))
    load_state_arrays(model, arrays, str(source))
    return model, config


def torch_to_jittor(src, dst, backbone=None, settings=None, seed=0):
    """Convert a PyTorch checkpoint to Jittor weights: ``.safetensors`` (with the model
    configuration in its metadata), or ``.pkl`` on request (for Jittor's
    ``Module.load``); returns the ModelConfig."""
    weights_kind(dst)                   # refuse an unknown output format before any work
    state, _, carried = _source_state(src)   # read first: PyTorch must be imported before Jittor
    import cten_jt
    from cten_jt.models import build_model
    from cten_jt.models.state import load_state_arrays, state_arrays

    model, config = convert_state(state, src, lambda c, s: build_model(c, init_seed=s),
                                  state_arrays, load_state_arrays, backbone,
                                  _settings(carried, settings, backbone), seed)
    cten_jt.save_weights(model, dst)
    return config


def jittor_to_torch(src, dst, fmt="state_dict", backbone=None, settings=None, seed=0):
    """Convert Jittor weights or a run checkpoint (.safetensors, .pkl) for PyTorch;
    returns the ModelConfig.

    ``dst`` ending in ``.safetensors`` gets the state dict as safetensors (no
    pickle); otherwise ``torch.save`` writes it, for code that ``torch.load``s:
    ``fmt="state_dict"`` a plain state dict, ``fmt="reference"`` the reference's
    training checkpoint layout, ``{"epoch", "state_dict"}`` with ``module.``
    names, which the reference code loads as it is.
    """
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"format must be one of {OUTPUT_FORMATS}, got {fmt!r}")
    safetensors_out = str(dst).endswith(".safetensors")
    if safetensors_out and fmt == "reference":
        raise ValueError("--format reference is torch.save's {epoch, state_dict} layout: write a .pth")
    try:
        import torch
    except ImportError as exc:
        raise RuntimeError("writing a PyTorch checkpoint needs PyTorch: "
                           "pip install -e '.[torch]'") from exc
    from cten_torch_ref.models import build_model
    from cten_torch_ref.models.state import load_state_arrays, state_arrays

    state, epoch, carried = _source_state(src)
    model, config = convert_state(state, src, lambda c, s: build_model(c, init_seed=s),
                                  state_arrays, load_state_arrays, backbone,
                                  _settings(carried, settings, backbone), seed)
    if safetensors_out:
        save_weights_file(dst, state_arrays(model), config.to_dict())
        return config
    out = model.state_dict()
    if fmt == "reference":
        out = {"epoch": int(epoch or 0),
               "state_dict": {f"module.{k}": v for k, v in out.items()}}
    with atomic_write(dst) as f:
        torch.save(out, f)
    return config


def torch2jittor_main(argv=None):
    """``cten-convert torch2jittor SRC.pth DST.safetensors [--backbone visual|audio] [--config CFG]``."""
    return main("torch2jittor", argv)


def jittor2torch_main(argv=None):
    """``cten-convert jittor2torch SRC.safetensors DST.pth [--format state_dict|reference]``."""
    return main("jittor2torch", argv)


def main(direction, argv=None):
    """Command line of both directions (``cten-convert <direction>``)."""
    import argparse
    import sys

    src_ext, dst_ext = ((".pth", ".safetensors (or .pkl)") if direction == "torch2jittor"
                        else (".safetensors or .pkl", ".pth (or .safetensors)"))
    parser = argparse.ArgumentParser(
        prog=f"cten-convert {direction}",
        description=f"Convert a CTEN checkpoint ({src_ext} -> {dst_ext}), strictly: every "
                    "missing, unexpected or misshaped parameter is listed and nothing is written. "
                    "No code in the source file is ever run.")
    parser.add_argument("src", help=f"source checkpoint ({src_ext})")
    parser.add_argument("dst", help=f"output file ({dst_ext})")
    parser.add_argument("--backbone", choices=("visual", "audio"),
                        help="SRC is a pretrained backbone (visual: Kinetics 3D ResNet; audio: "
                             "torchvision ImageNet ResNet), placed into a freshly initialised CTEN")
    parser.add_argument("--config", help="YAML/JSON with model settings (its 'model' section or "
                                         "top level); they override what is inferred from SRC")
    parser.add_argument("--seed", type=int, default=0,
                        help="initialisation seed of the parts a --backbone file does not fill")
    if direction == "jittor2torch":
        parser.add_argument("--format", choices=OUTPUT_FORMATS, default="state_dict",
                            help="plain state dict, or the reference's {epoch, state_dict} with "
                                 "'module.' names")
    args = parser.parse_args(argv)
    try:
        settings = read_model_settings(args.config)
        if direction == "torch2jittor":
            config = torch_to_jittor(args.src, args.dst, args.backbone, settings, args.seed)
        else:
            config = jittor_to_torch(args.src, args.dst, args.format, args.backbone, settings,
                                     args.seed)
    except (CheckpointError, ValueError, OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = os.path.getsize(args.dst) / 2 ** 20
    print(f"wrote {args.dst} ({size:.1f} MiB) for CTEN({', '.join(f'{k}={v!r}' for k, v in config.to_dict().items())})")
    return 0
