"""State dicts of the PyTorch model as numpy arrays; strict loading and saving."""
import numpy as np
import torch

from cten_common.weights import match_state_dict, read_state


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


def load_weights(model, source):
    """Load a checkpoint file or a state dict strictly; ``module.`` prefixes are stripped."""
    state, name = read_state(source)
    load_state_arrays(model, state, name)
    return model


def save_weights(model, path):
    """A plain PyTorch state dict file (``torch.save``)."""
    torch.save(model.state_dict(), path)
