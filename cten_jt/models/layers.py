"""Layers with PyTorch's exact semantics where Jittor's own differ.

Jittor's ``nn.BatchNorm`` updates the running variance with the biased batch
variance, computes the variance as E[x^2] - E[x]^2 and has no
``num_batches_tracked``; PyTorch uses the unbiased variance for the running
estimate and a centred two-pass variance.  These classes follow PyTorch so
that converted checkpoints behave the same and keep every buffer.
"""
import contextlib
import itertools
import math

import jittor as jt
from jittor import nn
from ..kernels import conv as conv_ops


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

    def _shape(self, x):
        if x.ndim not in self._input_ndims or x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}) expects input of "
                             f"{' or '.join(map(str, self._input_ndims))} dimensions with "
                             f"{self.num_features} channels, got shape {list(x.shape)}")
        dims = [0] + list(range(2, x.ndim))
        param_shape = [1, self.num_features] + [1] * (x.ndim - 2)
        return dims, param_shape

    def execute(self, x):
        """``x * alpha + beta`` with ``alpha = weight / sqrt(var + eps)``, ``beta = bias - mean * alpha``,
        the form PyTorch's CPU kernel evaluates; in train mode the batch mean and
        variance are accumulated in float64, as PyTorch does for float32 input."""
        dims, pshape = self._shape(x)
        if self.is_train:
            n = x.numel() // self.num_features
            if n < 2:
                raise ValueError(f"{type(self).__name__}: expected more than 1 value per channel "
                                 f"when training, got input of shape {list(x.shape)}")
            if self.sync and jt.in_mpi:
                return self._execute_synced(x, dims, pshape, n)
            if not jt.flags.use_cuda:
                # statistics, running averages and 1/std in one fused op (float64 accumulation)
                stats = bn_train_stats(x.detach(), self.running_mean, self.running_var, self.momentum,
                                       self.eps, self.stat_updates)
                mean, invstd = stats[0], stats[1]
                self.running_mean.update(stats[2])
                self.running_var.update(stats[3])
                self.num_batches_tracked.update(self.num_batches_tracked + self.stat_updates)
                if not self._no_graph(x):
                    return _BatchNormTrain(pshape, n)(x, self.weight, self.bias, mean, invstd)
                return _normalise(x, self.weight, self.bias, mean, invstd, pshape)
            mean64, var = _batch_stats64(x, dims, pshape)
            invstd = (1.0 / jt.sqrt(var + self.eps)).float32()
            mean = mean64.float32()
            self._update_running_stats(mean, (var * (n / (n - 1))).float32())
        else:
            mean, invstd = self.running_mean, 1.0 / jt.sqrt(self.running_var + self.eps)
        return _normalise(x, self.weight, self.bias, mean, invstd, pshape)

    def _execute_synced(self, x, dims, pshape, n):
        """Train mode with the statistics of the global batch over the MPI ranks
        (equal shards): mean and E[x^2] averaged across ranks in float64; the
        backward sums its statistics' terms across ranks too."""
        if jt.flags.use_cuda:
            mean64, var = _batch_stats64(x.detach(), dims, pshape)
        else:
            stats = bn_stats(x.detach())
            mean64, var = stats[0], stats[1]
        size = float(jt.world_size)
        both = jt.stack([mean64, var + mean64 * mean64]).mpi_all_reduce("add") / size
        mean64 = both[0]
        var = jt.maximum(both[1] - mean64 * mean64, 0.0)
        total = n * int(jt.world_size)
        invstd = (1.0 / jt.sqrt(var + self.eps)).float32()
        mean = mean64.float32()
        self._update_running_stats(mean, (var * (total / (total - 1))).float32())
        if self._no_graph(x):
            return _normalise(x, self.weight, self.bias, mean, invstd, pshape)
        return _BatchNormTrain(pshape, total, synced=True)(x, self.weight, self.bias, mean, invstd)

    def _no_graph(self, x):
        return jt.flags.no_grad or (x.is_stop_grad() and self.weight.is_stop_grad() and self.bias.is_stop_grad())

    def _update_running_stats(self, mean, unbiased):
        m = self.momentum
        running_mean, running_var = self.running_mean, self.running_var
        for _ in range(self.stat_updates):
            running_mean = (1 - m) * running_mean + m * mean
            running_var = (1 - m) * running_var + m * unbiased
        self.running_mean.update(running_mean.detach())
        self.running_var.update(running_var.detach())
        self.num_batches_tracked.update(self.num_batches_tracked + self.stat_updates)


def _batch_stats64(x, dims, pshape):
    """Batch mean and biased variance in float64, from Jittor's operators (two passes)."""
    x64 = x.float64()
    mean64 = x64.mean(dims=dims)
    centred = x64 - mean64.reshape(pshape)
    return mean64, (centred * centred).mean(dims=dims)


def set_sync_batchnorm(module, sync=True):
    """Under MPI, every BatchNorm under ``module`` normalises with the statistics of the
    global batch (all ranks) instead of its own shard's; no effect outside MPI."""
    for m in module.modules():
        if isinstance(m, _BatchNorm):
            m.sync = bool(sync)
    return module


def _normalise(x, weight, bias, mean, invstd, pshape):
    alpha = weight * invstd
    beta = bias - mean * alpha
    return x * alpha.reshape(pshape) + beta.reshape(pshape)


class _BatchNormTrain(jt.Function):
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
        return _normalise(x, weight, bias, mean, invstd, self.pshape)

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


_BN_STATS = None


def _bn_header():
    global _BN_STATS
    if _BN_STATS is None:
        from ..kernels import kernel_source
        _BN_STATS = kernel_source("bn_stats_cpu.h")
    return _BN_STATS


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


class BatchNorm1d(_BatchNorm):
    _input_ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    _input_ndims = (4,)


class BatchNorm3d(_BatchNorm):
    _input_ndims = (5,)


def _tuple(value, n):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


class _Pool(nn.Module):
    """Max / average pooling with PyTorch's results for every input size.

    Jittor's pooling ops refuse inputs whose size equals the kernel (e.g. the
    final 1x4x4 -> 1x1x1 average pool of the reference configuration); there
    the window is reduced from strided slices instead (padding counts as -inf
    for max pooling; average pooling here has no padding).
    """
    _ndim = 2
    _op = "maximum"

    def __init__(self, kernel_size, stride=None, padding=0):
        n = self._ndim
        self.kernel_size = _tuple(kernel_size, n)
        self.stride = _tuple(stride if stride is not None else kernel_size, n)
        self.padding = _tuple(padding, n)
        if self._op == "mean" and any(self.padding):
            raise ValueError("average pooling with padding is not supported")
        pool_cls = nn.Pool3d if n == 3 else nn.Pool
        self._jittor_pool = pool_cls(self.kernel_size, self.stride, self.padding, op=self._op)

    def execute(self, x):
        spatial = x.shape[2:]
        if all(s > k for s, k in zip(spatial, self.kernel_size)):
            return self._jittor_pool(x)
        return self._sliced(x)

    def _sliced(self, x):
        padded = [s + 2 * p for s, p in zip(x.shape[2:], self.padding)]
        out = [(s - k) // st + 1 for s, k, st in zip(padded, self.kernel_size, self.stride)]
        if min(out) < 1:
            raise ValueError(f"{type(self).__name__}{self.kernel_size}: input of spatial size "
                             f"{list(x.shape[2:])} is smaller than the window")
        if any(self.padding):
            pads = []
            for p in reversed(self.padding):
                pads += [p, p]
            x = nn.pad(x, pads, value=float("-inf"))
        acc = None
        for offset in itertools.product(*(range(k) for k in self.kernel_size)):
            window = (slice(None), slice(None)) + tuple(
                slice(o, o + st * (n - 1) + 1, st) for o, st, n in zip(offset, self.stride, out))
            part = x[window]
            if acc is None:
                acc = part
            elif self._op == "maximum":
                acc = jt.maximum(acc, part)
            else:
                acc = acc + part
        if self._op == "mean":
            acc = acc / float(math.prod(self.kernel_size))
        return acc


class MaxPool2d(_Pool):
    _ndim, _op = 2, "maximum"


class MaxPool3d(_Pool):
    _ndim, _op = 3, "maximum"


class AvgPool2d(_Pool):
    _ndim, _op = 2, "mean"


class AvgPool3d(_Pool):
    _ndim, _op = 3, "mean"


def set_train_mode(module, mode=True):
    """Switch ``module`` and its children to train (or eval) mode, PyTorch's way.

    Jittor's ``Module.eval()`` also stops the gradients of every parameter (and
    ``train()`` restores them); PyTorch's only changes the mode.  CTEN's
    ``train``/``eval`` use this function so that gradients of an eval-mode
    model (attribution, feature-bank training) work as in PyTorch.
    """
    for m in module.modules():
        m.is_train = mode
    return module


def _fast_conv_ok(conv, x):
    return (x.dtype == "float32" and conv.groups == 1 and all(d == 1 for d in conv.dilation)
            and conv_ops.available())


def _weight_cache(conv):
    """The layer's ``WeightCache`` (created on first use; a frozen weight keeps its oneDNN layout)."""
    cache = conv.__dict__.get("_dnnl_weights")
    if cache is None:
        cache = conv._dnnl_weights = conv_ops.WeightCache()
    return cache


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` on oneDNN's preferred layouts on the CPU, on cuDNN on the GPU
    (``cten_jt.kernels.conv``); Jittor's own path where neither is found.  Same
    parameters and names."""

    def execute(self, x):
        if not _fast_conv_ok(self, x):
            return super().execute(x)
        out = conv_ops.fast_conv(x, self.weight, self.stride, self.padding, _weight_cache(self))
        return out if self.bias is None else out + self.bias.reshape(1, -1, 1, 1)


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` with fast paths.

    Jittor's CPU conv3d is a broadcast-and-reduce loop (~100x slower than
    PyTorch's), and so is its GPU one without a loadable cuDNN (cuDNN 9).  With
    a system oneDNN (CPU) or cuDNN (GPU) it runs their 3D convolution, forward
    and backward (``cten_jt.kernels.conv``).  On the CPU without oneDNN:
    out[:, :, t] = sum_i conv2d(x[:, :, t*stride + i - pad], weight[:, :, i]),
    kt conv2d calls over all output frames at once.  Elsewhere Jittor's own.
    Same parameters and names.
    """

    def execute(self, x):
        if self.groups != 1 or tuple(self.dilation) != (1, 1, 1):
            return super().execute(x)
        if _fast_conv_ok(self, x):
            out = conv_ops.fast_conv(x, self.weight, self.stride, self.padding, _weight_cache(self))
            return out if self.bias is None else out + self.bias.reshape(1, -1, 1, 1, 1)
        if jt.flags.use_cuda:
            return super().execute(x)
        kt, kh, kw = self.weight.shape[2:]
        st, sh, sw = self.stride
        pt, ph, pw = self.padding
        n, c, t, h, w = x.shape
        if pt:
            x = nn.pad(x, [0, 0, 0, 0, pt, pt])
        t_out = (t + 2 * pt - kt) // st + 1
        out = None
        for i in range(kt):
            taps = x[:, :, i:i + st * (t_out - 1) + 1:st]
            frames = taps.permute(0, 2, 1, 3, 4).reshape(n * t_out, c, h, w)
            y = nn.conv2d(frames, self.weight[:, :, i], None, (sh, sw), (ph, pw))
            out = y if out is None else out + y
        out = out.reshape(n, t_out, *out.shape[1:]).permute(0, 2, 1, 3, 4)
        if self.bias is not None:
            out = out + self.bias.reshape(1, -1, 1, 1, 1)
        return out
