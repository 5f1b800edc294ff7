"""CTEN's compiled kernels: every ``jt.code`` op of the package lives here.

=================  ===============================  ==========================================
module             what                             sources (``csrc/``)
=================  ===============================  ==========================================
``attention``      fused scaled-dot-product         ``sdpa_cpu.h``, ``sdpa_cuda.cuh``
                   attention, forward and backward
``erasing``        the temporal erasing operator    ``erasing_common.h``, ``erasing_cpu.h``,
                   (keep mask and frame indices)    ``erasing_cuda.cuh``
``conv``           2D/3D convolution with           ``conv_dnnl.h`` (oneDNN, CPU),
                   gradients (``fast_conv``)        ``conv_cudnn.cuh`` (cuDNN, GPU)
``batchnorm``      BatchNorm statistics, running    ``bn_stats_cpu.h`` (CPU only)
                   averages and backward sums in
                   float64 (``batch_norm``)
=================  ===============================  ==========================================

Each kernel is a Jittor ``jt.code`` op with a C++ (``cpu_src``) and, where
there is one, a CUDA (``cuda_src``) source, kept in ``csrc/`` as plain headers
so that they also compile outside Jittor (``nvcc``, NVRTC; see
``tests/kernels``).  The layers in ``cten_jt.models`` call them through one
function each (``fused_attention``, ``erased_views``, ``fast_conv``,
``batch_norm``).

Attention and erasing are on by default.  ``cten_jt.switches.set_kernels("composed")``
(or the run config's ``train.kernels: composed``, or ``CTEN_KERNELS=composed``; every
switch is in ``cten_jt.switches``) switches back to composed Jittor operators
for the attention and to the numpy sampler plus a host gather for the erasing;
the results agree to fp32 rounding (attention) and exactly (erasing).
"""
import os

_CSRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc")


def kernel_source(name):
    """The text of ``csrc/name`` with its local ``#include "..."`` lines inlined.

    Inlining puts every line of the kernel into the op's source string, which is
    what Jittor's compile cache keys on: an edited header recompiles.
    """
    out = []
    with open(os.path.join(_CSRC, name)) as f:
        for line in f:
            stripped = line.strip()
            if stripped.startswith('#include "') and stripped.endswith('"'):
                out.append(kernel_source(stripped[len('#include "'):-1]))
            elif stripped == "#pragma once":
                continue
            else:
                out.append(line.rstrip("\n"))
    return "\n".join(out)
