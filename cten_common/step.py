"""The framework-free half of the training step with temporal erasing.

``cten_jt.engine`` and ``cten_torch_ref.engine`` run the model, the loss and the
optimiser in their framework; what is not the framework's is here, once:

* ``ErasingOptions``: what the step does (theta, the loss, the views, the audio
  branch), one typed object made from the run configuration's ``train`` section;
* ``shared_audio``: the audio branch once for the three views (``audio_once``);
* ``read_erased_views``: the context and keyframe views' frames, read at the
  erasing sampler's indices, with the rows of videos that failed to read left out;
* ``loss_info`` and ``step_result``: the dicts ``erasing_loss`` and
  ``erasing_step`` return (what a caller logs or a test compares);
* ``context_outputs``: ``predict_batch``'s context view, the rows of videos that
  failed to read left out.
"""
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .config import TrainConfig
from .erasing import VIEWS
from .losses import LOSSES, pcce_weights

ERASED_VIEWS = VIEWS[1:]        # the views read at the erasing sampler's indices


@dataclass(frozen=True)
class ErasingOptions:
    """What an erasing step does; the defaults are the run configuration's (``TrainConfig``).

    ``theta``: the erasing threshold on min-max normalised attention; ``loss``: ``ce`` or
    ``pcce`` (then ``class_names`` give the classes' polarity and ``pcce_lambda`` the
    weight); ``audio_once``: the audio branch runs once for the three views (False: once
    per view, as the reference); ``erasing``: False trains the original view alone.
    """
    theta: float = TrainConfig.theta
    loss: str = TrainConfig.loss
    class_names: Optional[Sequence[str]] = None
    pcce_lambda: float = TrainConfig.pcce_lambda
    audio_once: bool = TrainConfig.audio_once
    erasing: bool = TrainConfig.erasing

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.loss == "pcce" and not self.class_names:
            raise ValueError("the pcce loss needs class_names (each class's polarity weighs its errors)")

    @classmethod
    def from_train_config(cls, train_config, class_names):
        """The options of a run's ``train`` section (a ``TrainConfig``), for its data's classes."""
        tc = train_config
        return cls(theta=tc.theta, loss=tc.loss, class_names=tuple(class_names), pcce_lambda=tc.pcce_lambda,
                   audio_once=tc.audio_once, erasing=tc.erasing)

    @property
    def views(self):
        """The views a step trains: all three, or the original alone without erasing."""
        return VIEWS if self.erasing else VIEWS[:1]

    def pcce_weights(self, logits, labels):
        """float32 [B]: the PCCE weights of a view's ``logits`` (numpy) for ``labels``."""
        return pcce_weights(logits, labels, self.class_names, self.pcce_lambda)


def shared_audio(model, audio, options, repeated_stat_updates):
    """``(audio, shared)`` for a step's forwards: with ``options.audio_once`` the audio
    branch (backbone, projection, non-local block) runs here once and every view takes
    its features (``shared``, keyword arguments of the model's forward) instead of the
    audio; its BatchNorms update their running statistics once per view
    (``repeated_stat_updates``: the framework's ``models.norm`` context), as one forward
    per view would.  Otherwise (or a visual-only model, ``audio`` None) as given."""
    if audio is None or not options.audio_once:
        return audio, {}
    with repeated_stat_updates([model.a_resnet, model.a_fc, model.nl_a], len(options.views)):
        return None, {"audio_features": model.audio_branch(audio)}


def read_erased_views(batch, indices, reader, timing=None):
    """``(frames, brightness, indices)`` of the erased views: ``reader(batch, indices)``'s
    uint8 frames ``{view: [B', T, 3, L, S, S]}`` at the sampler's ``indices`` ``{view:
    [B, T, L]}`` (``VideoEmotionData.read_views``, or ``cten_common.erasing.ClipViews`` over
    clips in memory), with the batch's brightness and the indices cut to the same rows.

    Under ``data.on_bad_sample: skip`` a video whose views fail to read is left out: the
    rows are those the reader kept.  ``timing`` (a dict) gets ``read_s`` (added to),
    ``kept_rows`` (None: every row) and ``skipped`` (the videos left out)."""
    if reader is None:
        raise ValueError("the erased views need a reader of the batch's frames (VideoEmotionData.read_views)")
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
        indices = {view: np.asarray(indices[view])[kept] for view in ERASED_VIEWS}
    return frames, brightness, indices


def loss_info(gamma, timing, view_losses=(), logits=(), indices=None):
    """``erasing_loss``'s info: the views' losses and logits (the framework's arrays), the
    original view's ``gamma`` (numpy), the erased views' ``indices`` (numpy int64), and
    from ``timing`` (``read_erased_views``'s): ``read_s``, ``rows`` (the batch rows in the
    loss; None: all) and ``skipped``.  No losses: every video failed to read, no step."""
    return {"view_losses": list(view_losses), "logits": list(logits), "gamma": gamma, "indices": indices or {},
            "read_s": timing.get("read_s", 0.0), "rows": timing.get("kept_rows"),
            "skipped": timing.get("skipped", [])}


def step_result(info, loss=None, stepped=False, view_losses=(), logits=()):
    """``erasing_step``'s dict (``cten_common.training.EpochMeter.add`` reads it): the step's
    ``loss`` and ``view_losses`` as floats (None, []: no step was taken), ``stepped``
    (False: no step, or fp16's non-finite scaled gradients), the views' ``logits``
    (numpy), and ``gamma``, ``indices``, ``bank_exact``, ``read_s``, ``rows`` and
    ``skipped`` from ``erasing_loss``'s ``info``."""
    return {"loss": loss, "stepped": stepped, "view_losses": list(view_losses), "logits": list(logits),
            "gamma": info["gamma"], "indices": info["indices"], "bank_exact": info.get("bank_exact"),
            "read_s": info["read_s"], "rows": info["rows"], "skipped": info["skipped"]}


def context_outputs(timing, n_classes, context_logits):
    """``predict_batch``'s context-view entries, after ``read_erased_views`` filled ``timing``:
    ``rows`` and ``skipped`` where videos failed to read (``on_bad_sample: skip``), and
    ``context_logits`` [B', n_classes]: ``context_logits(kept)``, the framework's logits
    (numpy) of the kept rows (``kept``: None, every row), or an empty array when none is
    kept (then it is not called)."""
    out, kept = {}, timing.get("kept_rows")
    if kept is not None:
        out.update(rows=kept, skipped=timing["skipped"])
    if kept is not None and not len(kept):
        out["context_logits"] = np.zeros((0, n_classes), np.float32)
    else:
        out["context_logits"] = context_logits(kept)
    return out
