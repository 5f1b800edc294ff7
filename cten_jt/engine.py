"""One training step with temporal erasing, and batched inference (Jittor).

``cten_torch_ref.engine`` is the same file in PyTorch: for the same weights,
batch and generator both take the same step.
"""
import jittor as jt
import numpy as np

from cten_common.erasing import DEFAULT_THETA, erased_view_indices
from cten_common.step import (ERASED_VIEWS, ErasingOptions, context_outputs, loss_info, read_erased_views,
                               shared_audio, step_result)
from .data import model_visual
from .device import release_free_memory
from .kernels.conv import release_weight_caches
from .kernels.erasing import erased_views
from .models.norm import repeated_stat_updates, sync_running_stats
from .switches import fused_enabled


def _to_var(x):
    return x if isinstance(x, jt.Var) else jt.array(np.asarray(x))


def _numpy(x):
    return np.asarray(x.numpy() if isinstance(x, jt.Var) else x)


def erased_inputs(gamma, batch, snippet_len, rng, theta, reader=None, bank=None, counts=None, timing=None):
    """``{view: (visual Var [B,T,3,L,S,S], indices)}`` of the context and keyframe views.

    The indices come from the compiled erasing operator (fused, the default) or
    the numpy sampler (composed): the same draws from ``rng``, the same indices.
    ``cten_common.step.read_erased_views`` then reads exactly those frames (uint8,
    each sample with its own transform; ``timing`` gets ``read_s``, and the rows of
    videos that failed, ``on_bad_sample: skip``); ``model_visual`` makes them float
    on the device.  ``bank`` (a ``FeatureBank``; the batch has ``bank_row``/
    ``bank_variant``): the numpy sampler's snippets are looked up, visual is the
    features [B,T,dim]; ``counts`` (a list [exact, total]) gets how many looked-up
    snippets were exact.
    """
    n_frames = _numpy(batch["n_frames"])
    if bank is not None:
        indices = erased_view_indices(_numpy(gamma), n_frames, snippet_len, rng, theta)
        views = {}
        for view in ERASED_VIEWS:
            features, exact = bank.lookup_rows(batch["bank_row"], batch["bank_variant"], indices[view])
            views[view] = (jt.array(features), indices[view])
            if counts is not None:
                counts[0] += exact
                counts[1] += indices[view].shape[0] * indices[view].shape[1]
        return views
    if fused_enabled():
        indices = erased_views(gamma.detach() if isinstance(gamma, jt.Var) else gamma, n_frames, snippet_len, rng, theta)
    else:
        indices = erased_view_indices(_numpy(gamma), n_frames, snippet_len, rng, theta)
    frames, brightness, indices = read_erased_views(batch, indices, reader, timing)
    return {view: (model_visual(frames[view], brightness), indices[view]) for view in ERASED_VIEWS}


def _rows(x, kept):
    """Rows ``kept`` (int64 numpy) of a Var."""
    return x[jt.array(kept.astype(np.int32))]


def view_loss(logits, labels, weights=None):
    """Mean (weighted) cross-entropy of one view."""
    per_sample = jt.nn.cross_entropy_loss(logits, labels, reduction="none")
    if weights is not None:
        per_sample = per_sample * jt.array(weights)
    return per_sample.mean()


def erasing_loss(model, batch, rng, options=ErasingOptions(), bank=None, reader=None):
    """Original view, then the context (keyframes erased) and keyframe views, whose
    frames ``reader`` reads at the erasing sampler's indices, the same audio for
    all three; returns (loss = mean of the three cross-entropies, info).

    ``batch``: a collated batch (``cten_common.data.datasets``' table: visual
    uint8 [B,T,3,L,S,S], brightness, audio, label, n_frames, and what ``reader``
    needs).  ``options``: ``cten_common.step.ErasingOptions`` (theta, the loss, the
    views, the audio branch).  ``info`` (``cten_common.step.loss_info``) holds numpy
    copies of what a caller logs or a test compares, and ``read_s``, the seconds
    spent reading the erased views.

    ``options.audio_once``: the three views share the audio, and the audio branch
    (backbone, projection, non-local block) depends on nothing else, so it runs
    once and its BatchNorms apply their running-statistics update three times,
    as three forwards of the same batch would; the gradients are the same sums.
    The reference runs it three times (``audio_once=False`` does too).

    ``bank``: feature-bank training (``batch["visual"]`` holds the original view's
    banked features; the erased views are looked up too).

    ``options.erasing=False`` (``train.erasing``): the original view alone, its
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
    audio, shared = shared_audio(model, audio, options, repeated_stat_updates)
    logits1, gamma1 = model(model_visual(batch["visual"], batch.get("brightness")), audio, **shared)
    counts, timing = [0, 0], {}
    views = (erased_inputs(gamma1, batch, model.config.snippet_duration, rng, options.theta, reader, bank, counts,
                           timing) if options.erasing else {})
    kept = timing.get("kept_rows")
    if kept is not None:          # a video's erased views failed to read: it leaves the loss
        if not len(kept):
            return None, loss_info(gamma1.numpy(), timing)
        logits1, labels, labels_np = _rows(logits1, kept), _rows(labels, kept), labels_np[kept]
        audio = None if audio is None else _rows(audio, kept)
        shared = {k: _rows(v, kept) for k, v in shared.items()}
    outputs = [logits1] + [model(views[view][0], audio, **shared)[0] for view in options.views[1:]]
    losses = [view_loss(logits, labels, options.pcce_weights(logits.numpy(), labels_np) if options.loss == "pcce"
                        else None) for logits in outputs]
    total = (losses[0] + losses[1] + losses[2]) / 3 if options.erasing else losses[0]
    info = loss_info(gamma1.numpy(), timing, losses, outputs,
                     {view: _numpy(views[view][1]).astype(np.int64) for view in options.views[1:]})
    if bank is not None:      # looked-up snippets that were exact: erased views, and all three views
        original = int(np.sum(_numpy(batch["bank_exact"])))
        info["bank_exact"] = (counts[0] + original, counts[1] + gamma1.shape[0] * gamma1.shape[1])
    return total, info


def erasing_step(model, optimizer, batch, rng, options=ErasingOptions(), scaler=None, bank=None, reader=None):
    """``erasing_loss`` and one optimiser step; returns numpy/float copies for logging
    (``cten_common.step.step_result``).

    The three views' forwards run first; then the frozen backbone's packed weights
    (its train-mode program, ``kernels.frozen_resnet``, or each layer's
    ``kernels.conv.WeightCache``) are dropped, so that the backward and the
    optimiser step do not hold them; the next step packs them again (one reorder
    of the weights, ``benchmarks.frozen_backbone``'s "rebuilt" column).  ``scaler``: fp16's dynamic loss
    scaling (``cten_common.precision.DynamicLossScaler``); ``stepped`` says whether
    the update was taken (False: non-finite scaled gradients, skipped)."""
    total, info = erasing_loss(model, batch, rng, options, bank, reader)
    if total is None:             # every video's erased views failed (on_bad_sample: skip): no step
        release_weight_caches(model)
        sync_running_stats(model)
        release_free_memory()
        return step_result(info)
    jt.sync([total] + info["logits"])
    release_weight_caches(model)
    stepped = optimizer.step(total, scaler=scaler)
    sync_running_stats(model)
    release_free_memory()
    return step_result(info, float(total.numpy().reshape(-1)[0]), stepped,
                       [float(x.numpy().reshape(-1)[0]) for x in info["view_losses"]],
                       [x.numpy() for x in info["logits"]])


def predict_batch(model, batch, rng=None, theta=DEFAULT_THETA, bank=None, reader=None):
    """Eval-mode outputs: original logits and gamma, and the context view's logits
    (``rng`` and ``reader`` given: erased as in training, for the reference's
    mean-of-views figure; ``bank``: from a feature bank, as in ``erasing_loss``)."""
    with jt.no_grad():
        audio = _to_var(batch["audio"]) if model.config.modality == "av" else None
        logits, gamma = model(model_visual(batch["visual"], batch.get("brightness")), audio)
        out = {"logits": logits.numpy(), "gamma": gamma.numpy()}
        if rng is not None and (reader is not None or bank is not None):
            timing = {}
            context = erased_inputs(gamma, batch, model.config.snippet_duration, rng, theta, reader, bank,
                                    timing=timing)["context"][0]

            def context_logits(kept):         # on_bad_sample: skip: the rows whose view was read
                return model(context, audio if audio is None or kept is None else _rows(audio, kept))[0].numpy()
            out.update(context_outputs(timing, out["logits"].shape[1], context_logits))
    # what the call freed, given back: otherwise glibc's heap and Jittor's cache keep it in
    # pieces beside the frozen program's arena, and an inference process's resident set
    # settles ~200-300 MB higher at the paper's shape (the next call faults them in again)
    release_free_memory()
    return out
