"""Optimisers (PyTorch's own; ``cten_jt.optim`` reproduces their arithmetic in Jittor),
and Adam's state by parameter name in ``cten_jt.optim.adam_state``'s layout, so that
both trainers write the same ``optimizer/m/<name>``, ``optimizer/v/<name>`` arrays."""
import numpy as np
import torch
from torch.optim import Adam

__all__ = ["Adam", "adam_state", "load_adam_state"]


def _named_trainable(optimizer, model):
    """``[(name, parameter)]`` of the optimiser's parameters that can get a gradient
    (frozen ones get no state, in either framework)."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [(names[id(p)], p) for group in optimizer.param_groups for p in group["params"] if p.requires_grad]


def adam_state(optimizer, model):
    """``{"n_step", "m": {name: array}, "v": {name: array}}``: PyTorch Adam's ``exp_avg``,
    ``exp_avg_sq`` and step count, as ``cten_jt.optim.adam_state`` gives Jittor's."""
    state = {"n_step": 0, "m": {}, "v": {}}
    for name, p in _named_trainable(optimizer, model):
        s = optimizer.state.get(p)
        if not s:
            continue                    # no step yet
        state["n_step"] = int(float(s["step"]))
        state["m"][name] = s["exp_avg"].detach().cpu().numpy().copy()
        state["v"][name] = s["exp_avg_sq"].detach().cpu().numpy().copy()
    return state


def load_adam_state(optimizer, model, state):
    """Restore ``adam_state``; every trainable parameter must be there (none when no step was taken)."""
    n_step = int(state["n_step"])
    if n_step == 0:
        return
    missing = []
    for name, p in _named_trainable(optimizer, model):
        if name not in state["m"]:
            missing.append(name)
            continue
        optimizer.state[p] = {
            "step": torch.tensor(float(n_step), dtype=torch.float32),     # Adam keeps it so on the CPU
            "exp_avg": torch.from_numpy(np.array(state["m"][name], np.float32)).to(p.device),
            "exp_avg_sq": torch.from_numpy(np.array(state["v"][name], np.float32)).to(p.device),
        }
    if missing:
        raise ValueError(f"optimizer state lacks {len(missing)} parameters: {missing[:5]}")
