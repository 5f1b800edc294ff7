"""BatchNorm with PyTorch's semantics, and the switches that act on a model's BatchNorms.

Jittor's ``nn.BatchNorm`` updates the running variance with the biased batch
variance, computes the variance as E[x^2] - E[x]^2 and has no
``num_batches_tracked``; PyTorch uses the unbiased variance for the running
estimate and a centred two-pass variance.  These classes follow PyTorch so
that converted checkpoints behave the same and keep every buffer.  The
arithmetic (and its compiled ops) is ``cten_jt.kernels.batchnorm``.
"""
import contextlib

import jittor as jt
from jittor import nn

from ..kernels.batchnorm import batch_norm


class _BatchNorm(nn.Module):
    _input_ndims = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        self.is_train = True          # a new module trains, as in PyTorch
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.weight = jt.ones((num_features,), "float32")
        self.bias = jt.zeros((num_features,), "float32")
        self.running_mean = jt.zeros((num_features,), "float32").stop_grad()
        self.running_var = jt.ones((num_features,), "float32").stop_grad()
        # PyTorch's is 0-d; Jittor has no 0-d arrays, so it is (1,) here
        self.num_batches_tracked = jt.zeros((1,), "int64").stop_grad()
        # how many times a train-mode forward applies its running-statistics update:
        # k > 1 stands for k forwards of the same batch (repeated_stat_updates)
        self.stat_updates = 1
        # under MPI: normalise with the global batch's statistics (set_sync_batchnorm)
        self.sync = False

    def _check(self, x):
        if x.ndim not in self._input_ndims or x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}) expects input of "
                             f"{' or '.join(map(str, self._input_ndims))} dimensions with "
                             f"{self.num_features} channels, got shape {list(x.shape)}")
        if self.is_train and x.numel() // self.num_features < 2:
            raise ValueError(f"{type(self).__name__}: expected more than 1 value per channel "
                             f"when training, got input of shape {list(x.shape)}")

    def execute(self, x):
        self._check(x)
        y, running = batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var,
                                self.is_train, self.momentum, self.eps, self.stat_updates, self.sync)
        if running is not None:
            self.running_mean.update(running[0])
            self.running_var.update(running[1])
            self.num_batches_tracked.update(self.num_batches_tracked + self.stat_updates)
        return y


class BatchNorm1d(_BatchNorm):
    _input_ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    _input_ndims = (4,)


class BatchNorm3d(_BatchNorm):
    _input_ndims = (5,)


def set_sync_batchnorm(module, sync=True):
    """Under MPI, every BatchNorm under ``module`` normalises with the statistics of the
    global batch (all ranks) instead of its own shard's; no effect outside MPI."""
    for m in module.modules():
        if isinstance(m, _BatchNorm):
            m.sync = bool(sync)
    return module


def sync_running_stats(module):
    """Run every BatchNorm's pending update of its running averages and count under
    ``module`` (the training step calls it after the optimiser's step).

    A train-mode forward stores each update lazily (``Var.update``), and nothing a step
    syncs needs it: without this, each step chained ~230 new operations per view onto
    the buffers (``num_batches_tracked + 1`` on the previous sum), which Jittor kept
    alive until a checkpoint read them: memory and graph growing with every step."""
    jt.sync([v for m in module.modules() if isinstance(m, _BatchNorm)
             for v in (m.running_mean, m.running_var, m.num_batches_tracked)])


@contextlib.contextmanager
def repeated_stat_updates(modules, times):
    """Within the block, every BatchNorm under ``modules`` updates its running
    statistics ``times`` times per train-mode forward: one forward standing for
    ``times`` forwards of the same batch, with the same arithmetic."""
    norms = [m for module in modules for m in module.modules() if isinstance(m, _BatchNorm)]
    for m in norms:
        m.stat_updates = times
    try:
        yield
    finally:
        for m in norms:
            m.stat_updates = 1


def set_train_mode(module, mode=True):
    """Switch ``module`` and its children to train (or eval) mode, PyTorch's way.

    Jittor's ``Module.eval()`` also stops the gradients of every parameter (and
    ``train()`` restores them); PyTorch's only changes the mode.  CTEN's
    ``train``/``eval`` use this function so that gradients of an eval-mode
    model (attribution, feature-bank training) work as in PyTorch.  (Here with
    the BatchNorms: they are what the mode changes most, with the dropout.)
    """
    for m in module.modules():
        m.is_train = mode
    return module
