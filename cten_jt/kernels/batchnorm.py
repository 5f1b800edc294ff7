"""BatchNorm's arithmetic with PyTorch's numbers: statistics, running averages, backward.

``batch_norm`` is the one entry point (``cten_jt.models.norm`` calls it, as
``cten_jt.models.conv`` calls ``fast_conv``).  It normalises as
``x * alpha + beta`` with ``alpha = weight / sqrt(var + eps)`` and
``beta = bias - mean * alpha``, the form PyTorch's CPU kernel evaluates, and
in train mode accumulates the batch mean and variance in float64, as PyTorch
does for float32 input.  Train mode has three paths:

* CPU: one fused op (``bn_train_stats``, ``csrc/bn_stats_cpu.h``) gives the
  statistics, ``1/std`` and the updated running averages without a float64
  copy of the activations; the backward (``BatchNormTrain``) takes its two
  per-channel sums from one more fused op (``bn_backward_sums``);
* GPU: the same arithmetic from Jittor's operators (two passes in float64);
* MPI with ``sync``: the global batch's statistics (mean and E[x^2] averaged
  over the ranks in float64), and a backward that sums over the ranks too.

Eval mode normalises with the running statistics.
"""
import jittor as jt

from . import kernel_source

_HEADER = None


def _bn_header():
    global _HEADER
    if _HEADER is None:
        _HEADER = kernel_source("bn_stats_cpu.h")
    return _HEADER


# ---- the compiled ops (CPU) ---------------------------------------------------------------

def bn_stats(x):
    """float64 ``[2, C]``: per-channel mean and biased variance of ``x`` [N, C, ...]
    (no gradient; CPU), without a float64 copy of ``x``."""
    x3 = x.reshape(x.shape[0], x.shape[1], -1)
    return jt.code((2, x.shape[1]), "float64", [x3], cpu_header=_bn_header(),
                   cpu_src="cten_bn_stats_cpu(in0_p, in0_shape0, in0_shape1, in0_shape2, out0_p);").stop_grad()


def bn_train_stats(x, running_mean, running_var, momentum, eps, updates=1):
    """float32 ``[4, C]``: batch mean, ``1/sqrt(var + eps)``, and the running mean and
    variance after ``updates`` momentum updates with the unbiased variance (CPU, no
    gradient); the statistics are accumulated in float64 without a float64 copy of ``x``."""
    x3 = x.reshape(x.shape[0], x.shape[1], -1)
    return jt.code((4, x.shape[1]), "float32", [x3, running_mean, running_var], cpu_header=_bn_header(),
                   cpu_src="cten_bn_train_stats_cpu(in0_p, in1_p, in2_p, in0_shape0, in0_shape1, in0_shape2, "
                           "data[\"momentum\"], data[\"eps\"], (int)data[\"updates\"], out0_p);",
                   data={"momentum": float(momentum), "eps": float(eps), "updates": int(updates)}).stop_grad()


def bn_backward_sums(dy, x, mean):
    """float64 ``[2, C]``: per-channel ``sum(dy)`` and ``sum(dy * (x - mean))`` (a fused
    op on the CPU, Jittor's operators on the GPU)."""
    shape3 = (x.shape[0], x.shape[1], -1)
    if jt.flags.use_cuda:
        dy64 = dy.reshape(shape3).float64()
        centred = x.reshape(shape3).float64() - mean.float64().reshape(1, -1, 1)
        return jt.stack([dy64.sum(dims=[0, 2]), (dy64 * centred).sum(dims=[0, 2])]).stop_grad()
    return jt.code((2, x.shape[1]), "float64", [dy.reshape(shape3), x.reshape(shape3), mean],
                   cpu_header=_bn_header(),
                   cpu_src="cten_bn_backward_sums_cpu(in0_p, in1_p, in2_p, in0_shape0, in0_shape1, "
                           "in0_shape2, out0_p);").stop_grad()


# ---- the arithmetic from Jittor's operators -------------------------------------------------

def batch_stats64(x, dims, pshape):
    """Batch mean and biased variance in float64, from Jittor's operators (two passes)."""
    x64 = x.float64()
    mean64 = x64.mean(dims=dims)
    centred = x64 - mean64.reshape(pshape)
    return mean64, (centred * centred).mean(dims=dims)


def normalise(x, weight, bias, mean, invstd, pshape):
    """``x * alpha + beta`` with per-channel ``alpha = weight * invstd``, ``beta = bias - mean * alpha``."""
    alpha = weight * invstd
    beta = bias - mean * alpha
    return x * alpha.reshape(pshape) + beta.reshape(pshape)


def running_averages(running_mean, running_var, mean, unbiased, momentum, updates):
    """The running mean and variance after ``updates`` momentum updates (detached)."""
    m = momentum
    for _ in range(updates):
        running_mean = (1 - m) * running_mean + m * mean
        running_var = (1 - m) * running_var + m * unbiased
    return running_mean.detach(), running_var.detach()


class BatchNormTrain(jt.Function):
    """Train-mode normalisation with PyTorch's CPU backward: the two per-channel
    sums in float64 (one fused op on the CPU, ``bn_backward_sums``), the rest
    elementwise in float32; no float64 copy of the activations on the CPU.

    ``(x, weight, bias, mean, invstd) -> y``; the batch statistics come in
    detached, the backward gives the whole gradient through them.  ``n``: values
    per channel in the batch the statistics came from; ``synced``: that batch
    spans the MPI ranks, so the input gradient uses the sums over all ranks (the
    weight and bias gradients stay this rank's: the optimiser averages them)."""

    def __init__(self, pshape, n, synced=False):
        self.pshape, self.n, self.synced = pshape, n, synced

    def execute(self, x, weight, bias, mean, invstd):
        self.saved = (x, weight, mean, invstd)
        return normalise(x, weight, bias, mean, invstd, self.pshape)

    def grad(self, dy):
        x, weight, mean, invstd = self.saved
        local = bn_backward_sums(dy, x, mean)
        sums = local.mpi_all_reduce("add") if self.synced else local
        invstd64 = invstd.float64()
        grad_mean = (sums[0] / self.n).float32()
        proj = (sums[1] * invstd64 * invstd64 / self.n).float32()
        r = self.pshape
        dx = (dy - grad_mean.reshape(r) - (x - mean.reshape(r)) * proj.reshape(r)) * (weight * invstd).reshape(r)
        return dx, (local[1] * invstd64).float32(), local[0].float32(), None, None


# ---- the dispatch ---------------------------------------------------------------------------

def _no_graph(x, weight, bias):
    return jt.flags.no_grad or (x.is_stop_grad() and weight.is_stop_grad() and bias.is_stop_grad())


def _train_cpu(x, weight, bias, running_mean, running_var, momentum, eps, updates, pshape, n):
    # statistics, running averages and 1/std in one fused op (float64 accumulation)
    stats = bn_train_stats(x.detach(), running_mean, running_var, momentum, eps, updates)
    mean, invstd = stats[0], stats[1]
    if not _no_graph(x, weight, bias):
        y = BatchNormTrain(pshape, n)(x, weight, bias, mean, invstd)
    else:
        y = normalise(x, weight, bias, mean, invstd, pshape)
    return y, (stats[2], stats[3])


def _train_jittor(x, weight, bias, running_mean, running_var, momentum, eps, updates, dims, pshape, n):
    mean64, var = batch_stats64(x, dims, pshape)
    invstd = (1.0 / jt.sqrt(var + eps)).float32()
    mean = mean64.float32()
    running = running_averages(running_mean, running_var, mean, (var * (n / (n - 1))).float32(),
                               momentum, updates)
    return normalise(x, weight, bias, mean, invstd, pshape), running


def _train_synced(x, weight, bias, running_mean, running_var, momentum, eps, updates, dims, pshape, n):
    if jt.flags.use_cuda:
        mean64, var = batch_stats64(x.detach(), dims, pshape)
    else:
        stats = bn_stats(x.detach())
        mean64, var = stats[0], stats[1]
    size = float(jt.world_size)
    both = jt.stack([mean64, var + mean64 * mean64]).mpi_all_reduce("add") / size
    mean64 = both[0]
    var = jt.maximum(both[1] - mean64 * mean64, 0.0)
    total = n * int(jt.world_size)
    invstd = (1.0 / jt.sqrt(var + eps)).float32()
    mean = mean64.float32()
    running = running_averages(running_mean, running_var, mean, (var * (total / (total - 1))).float32(),
                               momentum, updates)
    if _no_graph(x, weight, bias):
        return normalise(x, weight, bias, mean, invstd, pshape), running
    return BatchNormTrain(pshape, total, synced=True)(x, weight, bias, mean, invstd), running


def batch_norm(x, weight, bias, running_mean, running_var, training, momentum=0.1, eps=1e-5,
               updates=1, sync=False):
    """BatchNorm of ``x`` [N, C, ...] with PyTorch's numbers: ``(y, running)``.

    ``running`` is None in eval mode; in train mode it is the new ``(running_mean,
    running_var)`` after ``updates`` momentum updates with the unbiased variance,
    for the caller to store.  ``sync``: under MPI, normalise with the statistics
    of the global batch (equal shards on every rank); no effect outside MPI.
    """
    dims = [0] + list(range(2, x.ndim))
    pshape = [1, x.shape[1]] + [1] * (x.ndim - 2)
    if not training:
        invstd = 1.0 / jt.sqrt(running_var + eps)
        return normalise(x, weight, bias, running_mean, invstd, pshape), None
    n = x.numel() // x.shape[1]
    args = (x, weight, bias, running_mean, running_var, momentum, eps, updates)
    if sync and jt.in_mpi:
        return _train_synced(*args, dims, pshape, n)
    if not jt.flags.use_cuda:
        return _train_cpu(*args, pshape, n)
    return _train_jittor(*args, dims, pshape, n)
