"""The PyTorch model's state dict as numpy arrays: shapes, copies, and a strict load.

Model-level (the model's initialisation loads its initial state through
``load_state_arrays``); reading and writing files is ``cten_torch_ref.checkpoint``'s.
``cten_jt.models.state`` is the same file in Jittor.
"""
import numpy as np
import torch

from cten_common.checkpoint_io.filter import consume_items, match_state_dict


def state_shapes(model):
    """``{name: (shape, dtype)}`` of every parameter and buffer."""
    return {k: (tuple(v.shape), str(v.detach().numpy().dtype)) for k, v in model.state_dict().items()}


def state_arrays(model):
    """``{name: numpy array}``, copies of every parameter and buffer."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def load_state_arrays(model, arrays, source, consume=False):
    """Copy ``{name: array}`` into the model; names and shapes must match exactly.
    ``consume``: ``arrays`` is emptied once checked, so that each array is freed as soon as
    the model holds it (a file's arrays never all sit beside the loaded model)."""
    params = model.state_dict(keep_vars=True)
    matched = match_state_dict(arrays, {k: tuple(v.shape) for k, v in params.items()}, source)
    if consume:
        arrays.clear()
    load_state_items(model, consume_items(matched), params)


def load_state_items(model, items, params=None):
    """Copy ``(name, array)`` pairs into the model as they come (``cten_common.init.
    iter_initial_state``), each array let go once copied; the names and shapes must be the
    model's own (a file's state is checked first: ``load_state_arrays``)."""
    params = model.state_dict(keep_vars=True) if params is None else params
    with torch.no_grad():
        for name, value in items:
            target = params[name]
            if tuple(value.shape) != tuple(target.shape):
                raise ValueError(f"{name}: an array of shape {tuple(value.shape)} for a {tuple(target.shape)} parameter")
            target.copy_(torch.from_numpy(np.array(value, order="C")).to(target.dtype))
