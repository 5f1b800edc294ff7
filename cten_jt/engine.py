"""One training step with temporal erasing, and batched inference (Jittor).

``cten_torch_ref.engine`` is the same file in PyTorch: for the same weights,
batch and generator both take the same step.
"""
import time

import jittor as jt
import numpy as np

from cten_common.erasing import DEFAULT_THETA, VIEWS, erased_view_indices
from cten_common.losses import pcce_weights
from .data import model_visual
from .kernels.conv import release_weight_caches
from .kernels.erasing import erased_views
from .models.norm import repeated_stat_updates
from .switches import fused_enabled


def _to_var(x):
    return x if isinstance(x, jt.Var) else jt.array(np.asarray(x))


def _numpy(x):
    return np.asarray(x.numpy() if isinstance(x, jt.Var) else x)


def erased_inputs(gamma, batch, snippet_len, rng, theta, reader=None, bank=None, counts=None, timing=None):
    """``{view: (visual Var [B,T,3,L,S,S], indices)}`` of the context and keyframe views.

    The indices come from the compiled erasing operator (fused, the default) or
    the numpy sampler (composed): the same draws from ``rng``, the same indices.
    ``reader(batch, {view: indices [B,T,L]})`` then reads exactly those frames,
    uint8, with each sample's own transform (``VideoEmotionData.read_views``, or
    ``cten_common.erasing.ClipViews`` over clips in memory); ``model_visual``
    makes them float on the device.  ``timing`` (a dict) gets ``read_s``.
    ``bank`` (a ``FeatureBank``; the batch has ``bank_row``/``bank_variant``): the
    numpy sampler's snippets are looked up, visual is the features [B,T,dim];
    ``counts`` (a list [exact, total]) gets how many looked-up snippets were exact.
    """
    if bank is not None:
        indices = erased_view_indices(_numpy(gamma), _numpy(batch["n_frames"]), snippet_len, rng, theta)
        views = {}
        for view in VIEWS[1:]:
            features, exact = bank.lookup_rows(batch["bank_row"], batch["bank_variant"], indices[view])
            views[view] = (jt.array(features), indices[view])
            if counts is not None:
                counts[0] += exact
                counts[1] += indices[view].shape[0] * indices[view].shape[1]
        return views
    if reader is None:
        raise ValueError("the erased views need a reader of the batch's frames (VideoEmotionData.read_views)")
    if fused_enabled():
        indices = erased_views(gamma.detach() if isinstance(gamma, jt.Var) else gamma, _numpy(batch["n_frames"]),
                               snippet_len, rng, theta)
    else:
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
    return {view: (model_visual(frames[view], brightness), indices[view]) for view in VIEWS[1:]}


def _rows(x, kept):
    """Rows ``kept`` (int64 numpy) of a Var."""
    return x[jt.array(kept.astype(np.int32))]


def view_loss(logits, labels, weights=None):
    """Mean (weighted) cross-entropy of one view."""
    per_sample = jt.nn.cross_entropy_loss(logits, labels, reduction="none")
    if weights is not None:
        per_sample = per_sample * jt.array(weights)
    return per_sample.mean()


def erasing_loss(model, batch, rng, theta=DEFAULT_THETA, loss="ce", class_names=None, pcce_lambda=0.5,
                 audio_once=True, bank=None, reader=None, erasing=True):
    """Original view, then the context (keyframes erased) and keyframe views, whose
    frames ``reader`` reads at the erasing sampler's indices, the same audio for
    all three; returns (loss = mean of the three cross-entropies, info).

    ``batch``: a collated batch (``cten_common.data.datasets``' table: visual
    uint8 [B,T,3,L,S,S], brightness, audio, label, n_frames, and what ``reader``
    needs).  ``info`` holds numpy copies of what a caller logs or a test
    compares, and ``read_s``, the seconds spent reading the erased views.

    ``audio_once``: the three views share the audio, and the audio branch
    (backbone, projection, non-local block) depends on nothing else, so it runs
    once and its BatchNorms apply their running-statistics update three times,
    as three forwards of the same batch would; the gradients are the same sums.
    The reference runs it three times (``audio_once=False`` does too).

    ``bank``: feature-bank training (``batch["visual"]`` holds the original view's
    banked features; the erased views are looked up too).

    ``erasing=False`` (``train.erasing``): the original view alone, its
    cross-entropy the loss; no view is erased or read (an ablation).

    ``data.on_bad_sample: skip``: a video whose erased views fail to read is dropped
    from the step's loss, all three views' terms (its original view was already
    forwarded: it is in that forward's BatchNorm statistics, nowhere else); ``info``
    then has ``rows`` (the batch rows in the loss) and ``skipped``.  When every
    video fails the loss is None (no step is taken).
    """
    audio = _to_var(batch["audio"]) if model.config.modality == "av" else None
    labels = _to_var(batch["label"])
    labels_np = _numpy(batch["label"])
    n_views = len(VIEWS) if erasing else 1
    shared = {}
    if audio is not None and audio_once:
        with repeated_stat_updates([model.a_resnet, model.a_fc, model.nl_a], n_views):
            shared["audio_features"] = model.audio_branch(audio)
        audio = None
    logits1, gamma1 = model(model_visual(batch["visual"], batch.get("brightness")), audio, **shared)
    counts, timing = [0, 0], {}
    views = (erased_inputs(gamma1, batch, model.config.snippet_duration, rng, theta, reader, bank, counts, timing)
             if erasing else {})
    kept, skipped = timing.get("kept_rows"), timing.get("skipped", [])
    if kept is not None:          # a video's erased views failed to read: it leaves the loss
        if not len(kept):
            return None, {"view_losses": [], "logits": [], "gamma": gamma1.numpy(), "indices": {},
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
            weights = pcce_weights(logits.numpy(), labels_np, class_names, pcce_lambda)
        losses.append(view_loss(logits, labels, weights))
    total = (losses[0] + losses[1] + losses[2]) / 3 if erasing else losses[0]
    indices = {view: _numpy(views[view][1]).astype(np.int64) for view in VIEWS[1:n_views]}
    info = {"view_losses": losses, "logits": outputs, "gamma": gamma1.numpy(), "indices": indices,
            "read_s": timing.get("read_s", 0.0), "rows": kept, "skipped": skipped}
    if bank is not None:      # looked-up snippets that were exact: erased views, and all three views
        original = int(np.sum(_numpy(batch["bank_exact"])))
        info["bank_exact"] = (counts[0] + original, counts[1] + gamma1.shape[0] * gamma1.shape[1])
    return total, info


def erasing_step(model, optimizer, batch, rng, scaler=None, **options):
    """``erasing_loss`` and one optimiser step; returns numpy/float copies for logging.

    The three views' forwards run first; then the frozen backbone's cached weight
    copies (``kernels.conv.WeightCache``) are dropped, so that the backward, where
    the step's memory peaks, does not hold them.  ``scaler``: fp16's dynamic loss
    scaling (``cten_common.precision.DynamicLossScaler``); ``stepped`` says whether
    the update was taken (False: non-finite scaled gradients, skipped)."""
    total, info = erasing_loss(model, batch, rng, **options)
    if total is None:             # every video's erased views failed (on_bad_sample: skip): no step
        release_weight_caches(model)
        return {"loss": None, "stepped": False, "view_losses": [], "logits": [], "gamma": info["gamma"], "indices": {},
                "bank_exact": None, "read_s": info["read_s"], "rows": info["rows"], "skipped": info["skipped"]}
    jt.sync([total] + info["logits"])
    release_weight_caches(model)
    stepped = optimizer.step(total, scaler=scaler)
    return {"loss": float(total.numpy().reshape(-1)[0]), "stepped": stepped,
            "view_losses": [float(x.numpy().reshape(-1)[0]) for x in info["view_losses"]],
            "logits": [x.numpy() for x in info["logits"]],
            "gamma": info["gamma"], "indices": info["indices"], "bank_exact": info.get("bank_exact"),
            "read_s": info["read_s"], "rows": info["rows"], "skipped": info["skipped"]}


def predict_batch(model, batch, rng=None, theta=DEFAULT_THETA, bank=None, reader=None):
    """Eval-mode outputs: original logits and gamma, and the context view's logits
    (``rng`` and ``reader`` given: erased as in training, for the reference's
    mean-of-views figure; ``bank``: from a feature bank, as in ``erasing_loss``)."""
    with jt.no_grad():
        audio = _to_var(batch["audio"]) if model.config.modality == "av" else None
        logits, gamma = model(model_visual(batch["visual"], batch.get("brightness")), audio)
        out = {"logits": logits.numpy(), "gamma": gamma.numpy()}
        if rng is not None and (reader is not None or bank is not None):
            info = {}
            views = erased_inputs(gamma, batch, model.config.snippet_duration, rng, theta, reader, bank,
                                  timing=info)
            kept = info.get("kept_rows")
            if kept is not None:      # on_bad_sample: skip, and a video's context view failed to read
                out.update(rows=kept, skipped=info["skipped"])
                audio = None if audio is None or not len(kept) else _rows(audio, kept)
            if kept is None or len(kept):
                ctx, _ = model(views["context"][0], audio)
                out["context_logits"] = ctx.numpy()
            else:
                out["context_logits"] = np.zeros((0, out["logits"].shape[1]), np.float32)
    return out
