"""What the training loop needs of a framework: the backend protocol.

``cten_common.fit.fit`` is the one training loop; it does everything that is not a
framework's (configuration, data, generators, meters, run folder) and asks its
``backend`` for the rest.  ``Backend`` below declares each method and attribute
and what it must do; ``cten_jt.backend.BACKEND`` (Jittor) and
``cten_torch_ref.backend.BACKEND`` (PyTorch) implement it, each in one file.

What a backend cannot do is declared, not discovered: ``capabilities`` says, for
each entry of ``CAPABILITIES``, whether the backend has it (True) or why not (a
string); ``check_capabilities`` refuses a configuration that asks for a missing one
before anything runs, naming the key.  ``no_op`` lists the keys a backend accepts
and has nothing to do for (another framework's ways of computing the same step).
"""
from .config import DEFAULTS
from .erasing import DEFAULT_THETA
from .evaluation import evaluate_model

#: what a run may ask of a backend beyond the common loop: capability -> the key that asks
#: for it (a value other than the key's default)
CAPABILITIES = {
    "feature_bank": "train.features",     # training from a feature bank (cten_jt.extract_features)
    "sync_bn": "train.sync_bn",           # BatchNorm over the global batch of MPI ranks
}


class Backend:
    """The framework's half of training; ``fit`` calls nothing else of it.

    Attributes:

    * ``name``: "jittor" or "torch" (``summary.json``'s ``framework``);
    * ``command``, ``trainer``: the console script and the entry module
      (``cten-train``, ``cten_jt.train``), named in ``--help`` and in refusals;
    * ``capabilities``: every name of ``CAPABILITIES`` -> True, or why it is missing;
    * ``no_op``: configuration key -> why it is accepted and changes nothing here.

    Arrays cross the boundary as numpy: batches come in as the data pipeline's
    dicts of numpy arrays, states and step results go out as numpy and floats.
    """
    name = ""
    command = ""
    trainer = ""
    capabilities = {}
    no_op = {}

    # ---- the run: generators, device, kernels, ranks ----------------------------------

    def seed(self, seed):
        """Seed the framework's own generator (dropout) with ``seed``, an int < 2**32."""
        raise NotImplementedError

    def set_device(self, name):
        """Run on ``train.device`` (auto | cpu | cuda) from now on; return "cpu" or "cuda"."""
        raise NotImplementedError

    def set_kernels(self, mode):
        """Compute with ``train.kernels`` (fused | composed) from now on."""
        raise NotImplementedError

    def world(self):
        """``(rank, size)`` of this process among the data-parallel ranks; ``(0, 1)`` alone."""
        raise NotImplementedError

    def all_sum(self, array):
        """The elementwise float64 sum of the numpy ``array`` over the ranks."""
        raise NotImplementedError

    # ---- the model ---------------------------------------------------------------------

    def build_model(self, model_config, init_seed, initialise=True):
        """CTEN of ``model_config`` (a ``ModelConfig``), initialised from ``init_seed``
        (``cten_common.init``: the same weights in every framework); ``initialise=False``
        leaves the framework's own initial values (not computed, in Jittor), for weights that
        are loaded next, strictly."""
        raise NotImplementedError

    def to_device(self, model, device):
        """``model`` on ``device`` ("cpu" or "cuda", ``set_device``'s); returns it."""
        raise NotImplementedError

    def set_sync_bn(self, model, enabled):
        """``train.sync_bn``: every BatchNorm normalises over the global batch of the ranks."""
        raise NotImplementedError

    def set_precision(self, model, precision):
        """``train.precision`` (``cten_common.precision``'s policy); a ValueError where the
        device cannot (fp16, tf32 without a GPU).  fp16's loss scaler is ``fit``'s: it
        hands a ``DynamicLossScaler`` to ``erasing_step``."""
        raise NotImplementedError

    def load_pretrained_backbone(self, model, path, which):
        """Fill the ``which`` ("visual" | "audio") backbone from the checkpoint ``path``,
        strictly (a file that does not fit is refused, every problem listed)."""
        raise NotImplementedError

    def train_mode(self, model, backbone_eval):
        """Train mode, PyTorch's meaning (the mode only, gradients untouched); with
        ``backbone_eval`` the frozen visual backbone (``model.resnet``) in eval mode."""
        raise NotImplementedError

    def eval_mode(self, model):
        """Eval mode, PyTorch's meaning."""
        raise NotImplementedError

    def state_arrays(self, model):
        """``{name: numpy array}``: the model's parameters and buffers, PyTorch's names."""
        raise NotImplementedError

    def load_state_arrays(self, model, arrays, where):
        """Load ``state_arrays``' layout strictly; ``where`` names the source in errors."""
        raise NotImplementedError

    def load_weights(self, model, source):
        """Load a weights or checkpoint file, a ``ReadCheckpoint`` or a state dict strictly
        (``cten_common.checkpoint_io.filter.read_state``); returns ``model``."""
        raise NotImplementedError

    # ---- the optimiser -----------------------------------------------------------------

    def make_optimizer(self, model, lr, weight_decay):
        """PyTorch's Adam over the model's trainable parameters (decay added to the gradient)."""
        raise NotImplementedError

    def optimizer_state(self, optimizer, model):
        """Adam's state as a checkpoint stores it (``cten_common.checkpoint_io``'s layout:
        ``m``/``v`` by parameter name, ``n_step``), the same in every framework."""
        raise NotImplementedError

    def load_optimizer_state(self, optimizer, model, state):
        """Restore ``optimizer_state``'s layout."""
        raise NotImplementedError

    # ---- data, the step, evaluation ------------------------------------------------------

    def loader(self, data, batch_size, num_workers, seed):
        """The training batches of ``data`` (a ``VideoEmotionData``): an object with
        ``len()`` (batches per epoch, the last partial one dropped), ``set_epoch(e)``
        (epoch e's order and samples, drawn from (seed, e) alone) and ``iter()`` (the
        collated numpy batches, ``num_workers`` processes preparing them)."""
        raise NotImplementedError

    def erasing_step(self, model, optimizer, batch, rng, options, scaler=None, bank=None, reader=None):
        """One training step with temporal erasing (``cten_jt.engine.erasing_step``):
        ``options`` an ``ErasingOptions``, ``rng`` the erasing draws, ``scaler`` fp16's
        loss scaling or None, ``bank`` a ``FeatureBank`` (capability ``feature_bank``) or
        None, ``reader`` the erased views' frames; returns ``cten_common.step.step_result``."""
        raise NotImplementedError

    def predict_batch(self, model, batch, rng=None, theta=DEFAULT_THETA, bank=None, reader=None):
        """Eval-mode outputs of a batch (``cten_jt.engine.predict_batch``): numpy logits,
        gamma and, with ``rng`` and ``reader`` (or ``bank``), the context view's logits."""
        raise NotImplementedError

    def evaluate(self, model, data, train_config, bank=None, progress=True, batch_size=None):
        """``cten_common.evaluation.evaluate_model`` with this backend's ``predict_batch``
        (from ``bank`` where given) and ranks: every rank gets the metrics of the whole split."""
        def predict(model, batch, rng=None, theta=DEFAULT_THETA, reader=None):
            return self.predict_batch(model, batch, rng, theta, bank=bank, reader=reader)
        return evaluate_model(model, data, train_config, predict, batch_size, progress,
                              shard=self.world(), all_sum=self.all_sum)


def refused_keys(backend):
    """``{key: why}``: the configuration keys ``backend`` refuses (its missing capabilities)."""
    return {key: backend.capabilities[capability] for capability, key in CAPABILITIES.items()
            if backend.capabilities.get(capability) is not True}


def check_capabilities(config, backend):
    """Refuse, with a ValueError naming the key, a ``RunConfig`` that asks ``backend`` for a
    capability it lacks (its key set to other than the default).  Every capability must
    be declared, True or why not: an undeclared one is refused too."""
    for capability, key in CAPABILITIES.items():
        if capability not in backend.capabilities:
            raise ValueError(f"{backend.trainer} declares nothing about the capability '{capability}' "
                             f"({key}): its backend must say whether it has it")
        has = backend.capabilities[capability]
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if has is not True and value != DEFAULTS[section][name]:
            raise ValueError(f"{key} = {value!r} is refused by {backend.trainer}: {has}")
    return config
