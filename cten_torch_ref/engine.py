"""One training step with temporal erasing, and batched inference (PyTorch).

``cten_jt.engine`` is the same file in Jittor: for the same weights, batch and
generator both take the same step.
"""
import time

import numpy as np
import torch
import torch.nn.functional as F

from cten_common.erasing import DEFAULT_THETA, VIEWS, erased_view_indices
from cten_common.losses import pcce_weights
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
    if reader is None:
        raise ValueError("the erased views need a reader of the batch's frames (VideoEmotionData.read_views)")
    indices = erased_view_indices(_numpy(gamma), _numpy(batch["n_frames"]), snippet_len, rng, theta)
    began = time.perf_counter()
    frames = dict(reader(batch, indices))
    kept = frames.pop("kept_rows", None)          # data.on_bad_sample: skip, and a video failed
    skipped = frames.pop("skipped", [])
    if timing is not None:
        timing["read_s"] = timing.get("read_s", 0.0) + time.perf_counter() - began
        timing["kept_rows"], timing["skipped"] = kept, skipped
    brightness = batch.get("brightness")
    if kept is not None:
        brightness = None if brightness is None else np.asarray(brightness)[kept]
        indices = {view: np.asarray(indices[view])[kept] for view in VIEWS[1:]}
    return {view: (model_visual(frames[view], brightness, device), indices[view]) for view in VIEWS[1:]}


def _rows(x, kept):
    """Rows ``kept`` (int64 numpy) of a tensor."""
    return x[torch.from_numpy(np.asarray(kept, np.int64)).to(x.device)]


def view_loss(logits, labels, weights=None):
    """Mean (weighted) cross-entropy of one view."""
    per_sample = F.cross_entropy(logits, labels, reduction="none")
    if weights is not None:
        per_sample = per_sample * torch.from_numpy(weights).to(per_sample.device)
    return per_sample.mean()


def erasing_loss(model, batch, rng, theta=DEFAULT_THETA, loss="ce", class_names=None, pcce_lambda=0.5, reader=None,
                 erasing=True, audio_once=True):
    """See cten_jt.engine.erasing_loss.  ``audio_once``: the audio branch runs once for the
    three views, its BatchNorms updating their running statistics three times; autograd
    sums the three views' gradients into it.  The reference runs it for each view
    (``audio_once=False``): the same loss and gradients up to rounding.
    A video whose erased views fail to read (``on_bad_sample: skip``) leaves the loss,
    as there."""
    device = _device(model)
    audio = _to_tensor(batch["audio"], device) if model.config.modality == "av" else None
    labels = _to_tensor(batch["label"], device)
    labels_np = _numpy(batch["label"])
    n_views = len(VIEWS) if erasing else 1
    shared = {}
    if audio is not None and audio_once:
        with repeated_stat_updates([model.a_resnet, model.a_fc, model.nl_a], n_views):
            shared["audio_features"] = model.audio_branch(audio)
        audio = None
    logits1, gamma1 = model(model_visual(batch["visual"], batch.get("brightness"), device), audio, **shared)
    timing = {}
    views = (erased_inputs(gamma1, batch, model.config.snippet_duration, rng, theta, reader, device, timing)
             if erasing else {})
    kept, skipped = timing.get("kept_rows"), timing.get("skipped", [])
    if kept is not None:          # a video's erased views failed to read: it leaves the loss
        if not len(kept):
            return None, {"view_losses": [], "logits": [], "gamma": _numpy(gamma1), "indices": {},
                          "read_s": timing.get("read_s", 0.0), "rows": kept, "skipped": skipped}
        logits1, labels, labels_np = _rows(logits1, kept), _rows(labels, kept), labels_np[kept]
        audio = None if audio is None else _rows(audio, kept)
        shared = {k: _rows(v, kept) for k, v in shared.items()}
    outputs = [logits1]
    for view in VIEWS[1:n_views]:
        logits, _ = model(views[view][0], audio, **shared)
        outputs.append(logits)
    losses = []
    for logits in outputs:
        weights = None
        if loss == "pcce":
            weights = pcce_weights(_numpy(logits), labels_np, class_names, pcce_lambda)
        losses.append(view_loss(logits, labels, weights))
    total = (losses[0] + losses[1] + losses[2]) / 3 if erasing else losses[0]
    indices = {view: views[view][1] for view in VIEWS[1:n_views]}
    return total, {"view_losses": losses, "logits": outputs, "gamma": _numpy(gamma1), "indices": indices,
                   "read_s": timing.get("read_s", 0.0), "rows": kept, "skipped": skipped}


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


def erasing_step(model, optimizer, batch, rng, scaler=None, **options):
    """See cten_jt.engine.erasing_step."""
    total, info = erasing_loss(model, batch, rng, **options)
    if total is None:             # every video's erased views failed (on_bad_sample: skip): no step
        return {"loss": None, "stepped": False, "view_losses": [], "logits": [], "gamma": info["gamma"], "indices": {},
                "read_s": info["read_s"], "rows": info["rows"], "skipped": info["skipped"]}
    optimizer.zero_grad()
    if scaler is None:
        total.backward()
        optimizer.step()
        stepped = True
    else:
        stepped = scaled_step(optimizer, total, scaler)
    return {"loss": float(total.detach()), "stepped": stepped,
            "view_losses": [float(x.detach()) for x in info["view_losses"]],
            "logits": [_numpy(x) for x in info["logits"]],
            "gamma": info["gamma"], "indices": info["indices"], "read_s": info["read_s"],
            "rows": info["rows"], "skipped": info["skipped"]}


def predict_batch(model, batch, rng=None, theta=DEFAULT_THETA, reader=None):
    """See cten_jt.engine.predict_batch."""
    device = _device(model)
    with torch.no_grad():
        audio = _to_tensor(batch["audio"], device) if model.config.modality == "av" else None
        logits, gamma = model(model_visual(batch["visual"], batch.get("brightness"), device), audio)
        out = {"logits": _numpy(logits), "gamma": _numpy(gamma)}
        if rng is not None and reader is not None:
            info = {}
            views = erased_inputs(gamma, batch, model.config.snippet_duration, rng, theta, reader, device,
                                  timing=info)
            kept = info.get("kept_rows")
            if kept is not None:      # on_bad_sample: skip, and a video's context view failed to read
                out.update(rows=kept, skipped=info["skipped"])
                audio = None if audio is None or not len(kept) else _rows(audio, kept)
            if kept is None or len(kept):
                ctx, _ = model(views["context"][0], audio)
                out["context_logits"] = _numpy(ctx)
            else:
                out["context_logits"] = np.zeros((0, out["logits"].shape[1]), np.float32)
    return out
