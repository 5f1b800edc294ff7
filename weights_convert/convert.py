"""Conversion in both directions; every path goes through cten_common.weights.

A CTEN checkpoint (a reference training checkpoint, or a state dict with or
without ``module.``) is converted name for name after its configuration is
inferred from its names and shapes.  A pretrained backbone (``backbone=
"visual"``: a Kinetics 3D ResNet; ``"audio"``: a torchvision ImageNet ResNet)
is renamed into a freshly initialised CTEN built from ``config``.
"""
import json
import os

import numpy as np

from cten_common.config import ModelConfig, infer_config
from cten_common.weights import (CheckpointError, backbone_shapes, match_state_dict,
                                 read_checkpoint, rename_backbone, strip_prefix,
                                 unwrap_state_dict)

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


def _source_state(src):
    obj = read_checkpoint(src)
    state = strip_prefix(unwrap_state_dict(obj, str(src)))
    epoch = obj.get("epoch") if isinstance(obj, dict) else None
    return state, epoch


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
    """Convert a PyTorch checkpoint to a Jittor ``.pkl``; returns the ModelConfig."""
    state, _ = _source_state(src)       # read first: PyTorch must be imported before Jittor
    import cten_jt
    from cten_jt.checkpoint import load_state_arrays, state_arrays
    from cten_jt.models import build_model

    model, config = convert_state(state, src, lambda c, s: build_model(c, init_seed=s),
                                  state_arrays, load_state_arrays, backbone, settings, seed)
    cten_jt.save_weights(model, dst)
    return config


def jittor_to_torch(src, dst, fmt="state_dict", backbone=None, settings=None, seed=0):
    """Convert a Jittor checkpoint to a PyTorch ``.pth``; returns the ModelConfig.

    ``fmt="state_dict"`` writes a plain state dict; ``fmt="reference"`` writes
    the reference's training checkpoint layout, ``{"epoch", "state_dict"}``
    with ``module.`` names, which the reference code loads as it is.
    """
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"format must be one of {OUTPUT_FORMATS}, got {fmt!r}")
    try:
        import torch
    except ImportError as exc:
        raise RuntimeError("writing a PyTorch checkpoint needs PyTorch: "
                           "pip install -e '.[torch]'") from exc
    from cten_torch_ref.checkpoint import load_state_arrays, state_arrays
    from cten_torch_ref.models import build_model

    state, epoch = _source_state(src)
    model, config = convert_state(state, src, lambda c, s: build_model(c, init_seed=s),
                                  state_arrays, load_state_arrays, backbone, settings, seed)
    out = model.state_dict()
    if fmt == "reference":
        out = {"epoch": int(epoch or 0),
               "state_dict": {f"module.{k}": v for k, v in out.items()}}
    torch.save(out, dst)
    return config


def main(direction, argv=None):
    """Command line of both directions (``python -m weights_convert.<direction>``)."""
    import argparse
    import sys

    src_ext, dst_ext = (".pth", ".pkl") if direction == "torch2jittor" else (".pkl", ".pth")
    parser = argparse.ArgumentParser(
        prog=f"python -m weights_convert.{direction}",
        description=f"Convert a CTEN checkpoint ({src_ext} -> {dst_ext}), strictly: every "
                    "missing, unexpected or misshaped parameter is listed and nothing is written.")
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
    except (CheckpointError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = os.path.getsize(args.dst) / 2 ** 20
    print(f"wrote {args.dst} ({size:.1f} MiB) for CTEN({', '.join(f'{k}={v!r}' for k, v in config.to_dict().items())})")
    return 0
