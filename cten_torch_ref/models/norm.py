"""BatchNorm: PyTorch's own (the semantics ``cten_jt.models.norm`` reproduces), in
float32 under every precision: a low-precision input (autocast's convolutions and
linear layers give bfloat16) is widened first, so the statistics, the
normalisation and the output are float32 (``cten_common.precision``'s policy).
A float32 or float64 input is taken as it is (a float64 twin is the
reference of the float32 tests' floors).
``repeated_stat_updates`` as in ``cten_jt.models.norm``."""
import contextlib

import torch
from torch import nn

from ..precision import widened


class BatchNorm1d(nn.BatchNorm1d):
    def forward(self, x):
        return super().forward(widened(x))


class BatchNorm2d(nn.BatchNorm2d):
    def forward(self, x):
        return super().forward(widened(x))


class BatchNorm3d(nn.BatchNorm3d):
    def forward(self, x):
        return super().forward(widened(x))


@contextlib.contextmanager
def repeated_stat_updates(modules, times):
    """See ``cten_jt.models.norm.repeated_stat_updates``: within the block, every train-mode
    BatchNorm under ``modules`` updates its running statistics ``times`` times per forward,
    one forward standing for ``times`` forwards of the same batch.  PyTorch's BatchNorm
    updates once; a forward hook applies the same momentum update ``times - 1`` more times
    with the batch's mean and unbiased variance, as Jittor's kernel loops over it."""
    norms = [m for module in modules for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def again(norm, inputs, output):
        if not (norm.training and norm.track_running_stats) or times == 1:
            return
        x = inputs[0].detach().float()
        dims = [0] + list(range(2, x.dim()))
        mean, var = x.mean(dims), x.var(dims, unbiased=True)
        # through .data: autograd saved the buffers for the backward (which, in train mode,
        # does not read them) and would refuse a version bump
        running_mean, running_var = norm.running_mean.data, norm.running_var.data
        with torch.no_grad():
            for _ in range(times - 1):
                running_mean.mul_(1 - norm.momentum).add_(mean, alpha=norm.momentum)
                running_var.mul_(1 - norm.momentum).add_(var, alpha=norm.momentum)
            norm.num_batches_tracked.data.add_(times - 1)
    handles = [m.register_forward_hook(again) for m in norms]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
