"""Optimisers with PyTorch's update rules.

Jittor's ``Adam`` adds epsilon to sqrt(v) before the bias correction of v
(``lr * sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)``); PyTorch adds it after
(``lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)``).  The two differ most in
the first steps and wherever v is small, which is where a port drifts.  This
Adam keeps Jittor's state layout and PyTorch's arithmetic, including the L2
weight decay added to the gradient.
"""
import math

import jittor as jt


class Adam(jt.optim.Adam):
    """PyTorch's Adam.  Parameters that are frozen (``stop_grad``) when it is
    built get no state: Jittor's optimiser would keep m, v and a gradient
    buffer for each (three copies of CTEN's frozen 3D ResNet, ~1 GB), where
    PyTorch's keeps none for parameters that never get a gradient."""

    # the updates run in chunks of about this many parameter bytes, so that the
    # new p, m and v of the whole model never wait in memory beside the old ones
    SYNC_BYTES = 8 * 2 ** 20

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        params = list(params)
        if params and not isinstance(params[0], dict):
            params = [p for p in params if not p.is_stop_grad()]
        super().__init__(params, lr, eps=eps, betas=betas, weight_decay=weight_decay)

    def step(self, loss=None, retain_graph=False, scaler=None):
        """One update from ``loss``'s gradients; returns whether it was taken.

        ``scaler`` (``cten_common.precision.DynamicLossScaler``, fp16): the backward runs on
        ``loss * scaler.scale``, the gradients are divided by the scale (a power of two:
        exact) and a step whose gradients are not all finite is skipped (no update, no
        step counted) while the scale backs off."""
        if scaler is None:
            self.pre_step(loss, retain_graph)
        elif not self._scaled_backward(loss, retain_graph, scaler):
            self.n_step -= 1
            self.post_step()
            return False
        n = float(self.n_step)
        for pg in self.param_groups:
            lr = pg.get("lr", self.lr)
            eps = pg.get("eps", self.eps)
            weight_decay = pg.get("weight_decay", self.weight_decay)
            beta1, beta2 = pg.get("betas", self.betas)
            step_size = lr / (1 - beta1 ** n)
            bias_correction2_sqrt = math.sqrt(1 - beta2 ** n)
            pending, pending_bytes = [], 0
            for p, g, v, m in zip(pg["params"], pg["grads"], pg["values"], pg["m"]):
                if p.is_stop_grad():
                    continue
                if weight_decay:
                    g = g + weight_decay * p
                m.update(m + (g - m) * (1 - beta1))
                v.update(beta2 * v + (1 - beta2) * g * g)
                denom = jt.sqrt(v) / bias_correction2_sqrt + eps
                p.update(p - step_size * m / denom)
                pending += [p, m, v]
                pending_bytes += 4 * p.numel()
                if pending_bytes >= self.SYNC_BYTES:
                    jt.sync(pending)
                    pending, pending_bytes = [], 0
            jt.sync(pending)
        self.post_step()
        return True

    def _scaled_backward(self, loss, retain_graph, scaler):
        """The gradients of the scaled loss, unscaled in place; True when all are finite."""
        self.pre_step(loss * scaler.scale, retain_graph)
        grads = [g for pg in self.param_groups for p, g in zip(pg["params"], pg["grads"]) if not p.is_stop_grad()]
        inverse = 1.0 / scaler.scale
        for g in grads:
            g.update(g * inverse)
        poison = sum((g * 0.0).sum() for g in grads)        # NaN when any gradient holds an inf or NaN
        return scaler.update(bool(jt.isfinite(poison).numpy().all()))


def adam_state(optimizer, model):
    """``{"n_step", "m": {name: array}, "v": {name: array}}``: the Adam state by parameter name."""
    names = {id(p): n for n, p in model.named_parameters()}
    state = {"n_step": int(optimizer.n_step), "m": {}, "v": {}}
    for pg in optimizer.param_groups:
        for p, m, v in zip(pg["params"], pg["m"], pg["values"]):
            if not p.is_stop_grad():
                state["m"][names[id(p)]] = m.numpy().copy()
                state["v"][names[id(p)]] = v.numpy().copy()
    return state


def load_adam_state(optimizer, model, state):
    """Restore ``adam_state``; every trainable parameter must be there."""
    names = {id(p): n for n, p in model.named_parameters()}
    missing = []
    for pg in optimizer.param_groups:
        for p, m, v in zip(pg["params"], pg["m"], pg["values"]):
            name = names[id(p)]
            if p.is_stop_grad():
                continue
            if name not in state["m"]:
                missing.append(name)
                continue
            m.update(jt.array(state["m"][name]))
            v.update(jt.array(state["v"][name]))
    if missing:
        raise ValueError(f"optimizer state lacks {len(missing)} parameters: {missing[:5]}")
    optimizer.n_step = int(state["n_step"])
