"""Weights files of the Jittor model: strict loading and saving.

Jittor's own ``Module.load_parameters`` skips unknown names and misshaped
arrays with a log line; ``load_weights`` here refuses them and lists them all.
Files are read through ``cten_common.checkpoint_io`` (no code from a file ever runs)
and written by it (safetensors, atomically).
"""
from cten_common.checkpoint_io.filter import read_state, with_backbone
from cten_common.checkpoint_io.pickle_io import save_pickle_weights
from cten_common.checkpoint_io.safetensors_io import save_weights_file
from cten_common.checkpoint_io.sniff import weights_kind

from .models.state import load_state_arrays, state_arrays
from .device import release_free_memory


def load_weights(model, source):
    """Load a weights or checkpoint file (.safetensors, .pkl, .pth/.pt) or a state dict
    strictly; ``module.`` is stripped."""
    state, name = read_state(source)
    load_state_arrays(model, state, name, consume=True)     # each array freed once loaded
    release_free_memory()            # the file's arrays, freed into glibc's heap (build_model)
    return model


def save_weights(model, path):
    """Write ``{name: numpy array}``, atomically, in the format of ``path``'s extension:
    ``.safetensors`` (the default everywhere: no pickle, the model configuration in
    its metadata) or ``.pkl`` (Jittor's ``jt.save`` layout, for ``Module.load``)."""
    if weights_kind(path) == "pickle":
        save_pickle_weights(path, state_arrays(model))
    else:
        save_weights_file(path, state_arrays(model), model.config.to_dict())


def load_pretrained_backbone(model, path, backbone):
    """Fill the visual (Kinetics 3D ResNet) or audio (torchvision ImageNet ResNet)
    backbone from a checkpoint file, strictly; the rest of the model is untouched."""
    arrays, name = with_backbone(state_arrays(model), path, backbone)
    load_state_arrays(model, arrays, name)
    return model
