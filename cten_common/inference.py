"""A model to run: the one way every command that runs a trained model builds and loads it.

``cten-predict``, ``cten-evaluate`` and ``cten-extract-features`` (and the benchmarks
that time them) make their model here, over a framework's backend
(``cten_common.backend.Backend``), so that a fourth command cannot drift from them:

* ``inference_model(backend, config, weights)``: the kernels and the device of
  ``config.train``, the model of ``config.model``, its precision, the weights (strict;
  a checkpoint's ``module.`` prefix stripped; no code in the file is ever run), eval mode;
* ``run_config(weights, config_path)``: the configuration and class names of a run's
  checkpoint (it carries both) or of converted weights with ``--config``, and the file
  read once, to be handed to ``inference_model`` as it is.
"""
import json
import os

from .checkpoint_io.errors import CheckpointError
from .checkpoint_io.filter import ReadCheckpoint
from .checkpoint_io.sniff import read_checkpoint
from .config import RunConfig, load_run_config
from .precision import apply_precision_option


def run_config(weights, config_path=None, overrides=(), precision=None):
    """``(config, classes, ReadCheckpoint)`` for running ``weights``: a run's checkpoint carries its
    configuration and class names; converted weights need ``config_path``, their class
    names then come from the configuration's annotation (``class0..`` without one).
    ``precision``: the ``--precision`` option (default the configuration's)."""
    config = load_run_config(config_path, overrides) if config_path else None   # a bad --config: no reading
    checkpoint = read_checkpoint(weights)             # any format; never runs code from the file
    run = isinstance(checkpoint, dict) and isinstance(checkpoint.get("config"), dict)
    if config is None:
        if not run:
            raise CheckpointError(f"{weights}: carries no config; pass --config")
        try:          # over today's defaults, as a resumed run's config.yaml
            config = RunConfig().updated(checkpoint["config"])
        except ValueError as exc:
            raise CheckpointError(f"{weights}: its stored configuration: {exc}") from None
    config = apply_precision_option(config, precision)
    classes = list(checkpoint.get("classes") or []) if run else []
    if not classes and config.data.annotation and os.path.isfile(config.data.annotation):
        with open(config.data.annotation) as f:
            classes = list(json.load(f).get("labels") or [])
    classes = classes or [f"class{i}" for i in range(config.model.n_classes)]
    return config, classes, ReadCheckpoint(checkpoint, weights)


def inference_model(backend, config, weights=None, init_seed=0, pretrained_visual=None):
    """``(model, device)``: CTEN of ``config.model`` in ``backend``'s framework, on
    ``config.train.device`` with its kernels and precision, in eval mode, holding
    ``weights`` (a path, a state dict, or a ``ReadCheckpoint``; None: initialised from
    ``init_seed``, with the visual backbone from ``pretrained_visual`` if given).
    Errors: ValueError for a precision the device lacks, CheckpointError for weights
    that do not fit (every problem named)."""
    backend.set_kernels(config.train.kernels)
    device = backend.set_device(config.train.device)
    # weights to load: no initial state to compute first (2 s and 570 MB at the paper's shape)
    model = backend.build_model(config.model, init_seed=init_seed, initialise=weights is None)
    backend.set_precision(model, config.train.precision)
    if pretrained_visual:
        backend.load_pretrained_backbone(model, pretrained_visual, "visual")
    if weights is not None:
        backend.load_weights(model, weights)
    model = backend.to_device(model, device)
    backend.eval_mode(model)
    return model, device
