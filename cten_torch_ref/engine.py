"""One training step with temporal erasing, and batched inference (PyTorch).

``cten_jt.engine`` is the same file in Jittor: for the same weights, batch and
generator both take the same step.
"""
import numpy as np
import torch
import torch.nn.functional as F

from cten_common.erasing import DEFAULT_THETA, erased_view_indices
from cten_common.step import (ERASED_VIEWS, ErasingOptions, context_outputs, loss_info, read_erased_views,
                               shared_audio, step_result)
from .data import model_visual
from .models.norm import repeated_stat_updates


def _to_tensor(x, device=None):
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    return t if device is None else t.to(device)


def _device(model):
    return next(model.parameters()).device


def _numpy(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def erased_inputs(gamma, batch, snippet_len, rng, theta, reader=None, device=None, timing=None):
    """See cten_jt.engine.erased_inputs (here always the numpy sampler; the views go
    to ``device``)."""
    indices = erased_view_indices(_numpy(gamma), _numpy(batch["n_frames"]), snippet_len, rng, theta)
    frames, brightness, indices = read_erased_views(batch, indices, reader, timing)
    return {view: (model_visual(frames[view], brightness, device), indices[view]) for view in ERASED_VIEWS}


def _rows(x, kept):
    """Rows ``kept`` (int64 numpy) of a tensor."""
    return x[torch.from_numpy(np.asarray(kept, np.int64)).to(x.device)]


def view_loss(logits, labels, weights=None):
    """Mean (weighted) cross-entropy of one view."""
    per_sample = F.cross_entropy(logits, labels, reduction="none")
    if weights is not None:
        per_sample = per_sample * torch.from_numpy(weights).to(per_sample.device)
    return per_sample.mean()


def erasing_loss(model, batch, rng, options=ErasingOptions(), bank=None, reader=None):
    """See cten_jt.engine.erasing_loss.  ``options.audio_once``: the audio branch runs once
    for the three views, its BatchNorms updating their running statistics three times;
    autograd sums the three views' gradients into it.  The reference runs it for each view
    (``audio_once=False``): the same loss and gradients up to rounding.
    A video whose erased views fail to read (``on_bad_sample: skip``) leaves the loss,
    as there.  ``bank``: feature banks are cten_jt's; None here."""
    if bank is not None:
        raise ValueError("feature-bank training is cten_jt's: the PyTorch twin trains from the videos")
    device = _device(model)
    audio = _to_tensor(batch["audio"], device) if model.config.modality == "av" else None
    labels = _to_tensor(batch["label"], device)
    labels_np = _numpy(batch["label"])
    audio, shared = shared_audio(model, audio, options, repeated_stat_updates)
    logits1, gamma1 = model(model_visual(batch["visual"], batch.get("brightness"), device), audio, **shared)
    timing = {}
    views = (erased_inputs(gamma1, batch, model.config.snippet_duration, rng, options.theta, reader, device, timing)
             if options.erasing else {})
    kept = timing.get("kept_rows")
    if kept is not None:          # a video's erased views failed to read: it leaves the loss
        if not len(kept):
            return None, loss_info(_numpy(gamma1), timing)
        logits1, labels, labels_np = _rows(logits1, kept), _rows(labels, kept), labels_np[kept]
        audio = None if audio is None else _rows(audio, kept)
        shared = {k: _rows(v, kept) for k, v in shared.items()}
    outputs = [logits1] + [model(views[view][0], audio, **shared)[0] for view in options.views[1:]]
    losses = [view_loss(logits, labels, options.pcce_weights(_numpy(logits), labels_np) if options.loss == "pcce"
                        else None) for logits in outputs]
    total = (losses[0] + losses[1] + losses[2]) / 3 if options.erasing else losses[0]
    return total, loss_info(_numpy(gamma1), timing, losses, outputs,
                            {view: views[view][1] for view in options.views[1:]})


def scaled_step(optimizer, total, scaler):
    """``cten_jt.optim.Adam.step(total, scaler=scaler)`` in PyTorch: the backward of the
    scaled loss, the gradients divided by the scale, the step skipped when one is not
    finite; returns whether it was taken."""
    (total * scaler.scale).backward()
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    for g in grads:
        g.mul_(1.0 / scaler.scale)
    if not scaler.update(all(bool(torch.isfinite(g).all()) for g in grads)):
        optimizer.zero_grad()
        return False
    optimizer.step()
    return True


def erasing_step(model, optimizer, batch, rng, options=ErasingOptions(), scaler=None, bank=None, reader=None):
    """See cten_jt.engine.erasing_step."""
    total, info = erasing_loss(model, batch, rng, options, bank, reader)
    if total is None:             # every video's erased views failed (on_bad_sample: skip): no step
        return step_result(info)
    optimizer.zero_grad()
    if scaler is None:
        total.backward()
        optimizer.step()
        stepped = True
    else:
        stepped = scaled_step(optimizer, total, scaler)
    return step_result(info, float(total.detach()), stepped, [float(x.detach()) for x in info["view_losses"]],
                       [_numpy(x) for x in info["logits"]])


def predict_batch(model, batch, rng=None, theta=DEFAULT_THETA, bank=None, reader=None):
    """See cten_jt.engine.predict_batch (``bank``: feature banks are cten_jt's; None here)."""
    if bank is not None:
        raise ValueError("feature-bank evaluation is cten_jt's: the PyTorch twin reads the videos")
    device = _device(model)
    with torch.no_grad():
        audio = _to_tensor(batch["audio"], device) if model.config.modality == "av" else None
        logits, gamma = model(model_visual(batch["visual"], batch.get("brightness"), device), audio)
        out = {"logits": _numpy(logits), "gamma": _numpy(gamma)}
        if rng is not None and reader is not None:
            timing = {}
            context = erased_inputs(gamma, batch, model.config.snippet_duration, rng, theta, reader, device,
                                    timing=timing)["context"][0]

            def context_logits(kept):         # on_bad_sample: skip: the rows whose view was read
                return _numpy(model(context, audio if audio is None or kept is None else _rows(audio, kept))[0])
            out.update(context_outputs(timing, out["logits"].shape[1], context_logits))
    return out
