"""The Jittor model's state dict as numpy arrays: shapes, copies, and a strict load.

Model-level (the model's initialisation loads its initial state through
``load_state_arrays``); reading and writing files is ``cten_jt.checkpoint``'s.
``cten_torch_ref.models.state`` is the same file in PyTorch.
"""
import jittor as jt
import numpy as np

from cten_common.checkpoint_io.filter import match_state_dict


def state_shapes(model):
    """``{name: (shape, dtype)}`` of every parameter and buffer."""
    return {k: (tuple(v.shape), str(v.dtype)) for k, v in model.state_dict().items()}


def state_arrays(model):
    """``{name: numpy array}``, copies of every parameter and buffer."""
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def load_state_arrays(model, arrays, source):
    """Copy ``{name: array}`` into the model; names and shapes must match exactly."""
    params = model.state_dict()
    matched = match_state_dict(arrays, {k: tuple(v.shape) for k, v in params.items()}, source)
    for name in list(matched):
        target = params[name]
        # one array at a time, run at once: no copy of the whole state waits in the graph
        target.update(jt.array(np.ascontiguousarray(matched.pop(name), dtype=str(target.dtype))))
        target.sync()
