"""Weights files of the PyTorch model: strict loading and saving.

Files are read through ``cten_common.checkpoint_io`` (no code from a file ever runs)
and written by it (safetensors, atomically).
"""
import os

import torch

from cten_common.checkpoint_io.atomic import atomic_write
from cten_common.checkpoint_io.filter import read_state, with_backbone
from cten_common.checkpoint_io.safetensors_io import save_weights_file

from .models.state import load_state_arrays, state_arrays


def load_weights(model, source):
    """Load a weights or checkpoint file (.safetensors, .pkl, .pth/.pt) or a state dict
    strictly; ``module.`` prefixes are stripped."""
    state, name = read_state(source)
    load_state_arrays(model, state, name, consume=True)     # each array freed once loaded
    return model


def save_weights(model, path):
    """Write the state dict, atomically, in the format of ``path``'s extension:
    ``.safetensors`` (the default everywhere: no pickle, the model configuration in
    its metadata) or ``.pth``/``.pt`` (``torch.save``, for code that expects it)."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext in (".pth", ".pt"):
        with atomic_write(path) as f:
            torch.save(model.state_dict(), f)
    elif ext == ".safetensors":
        save_weights_file(path, state_arrays(model), model.config.to_dict())
    else:
        raise ValueError(f"{path}: weights are written as .safetensors (or .pth/.pt), not "
                         f"{ext or 'no extension'}")


def load_pretrained_backbone(model, path, backbone):
    """See cten_jt.checkpoint.load_pretrained_backbone: the visual (Kinetics 3D ResNet)
    or audio (torchvision ImageNet ResNet) backbone from a checkpoint file, strictly;
    the rest of the model is untouched."""
    arrays, name = with_backbone(state_arrays(model), path, backbone)
    load_state_arrays(model, arrays, name)
    return model
