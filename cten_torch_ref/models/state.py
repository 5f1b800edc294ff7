"""The PyTorch model's state dict as numpy arrays: shapes, copies, and a strict load.

Model-level (the model's initialisation loads its initial state through
``load_state_arrays``); reading and writing files is ``cten_torch_ref.checkpoint``'s.
``cten_jt.models.state`` is the same file in Jittor.
"""
import numpy as np
import torch

from cten_common.checkpoint_io.filter import match_state_dict


def state_shapes(model):
    """``{name: (shape, dtype)}`` of every parameter and buffer."""
    return {k: (tuple(v.shape), str(v.detach().numpy().dtype)) for k, v in model.state_dict().items()}


def state_arrays(model):
    """``{name: numpy array}``, copies of every parameter and buffer."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def load_state_arrays(model, arrays, source):
    """Copy ``{name: array}`` into the model; names and shapes must match exactly."""
    params = model.state_dict(keep_vars=True)
    matched = match_state_dict(arrays, {k: tuple(v.shape) for k, v in params.items()}, source)
    with torch.no_grad():
        for name, value in matched.items():
            target = params[name]
            target.copy_(torch.from_numpy(np.array(value, order="C")).to(target.dtype))
