"""CTEN's compiled kernels: fused attention and the temporal erasing operator.

Each kernel is one Jittor ``jt.code`` op with a C++ (``cpu_src``) and a CUDA
(``cuda_src``) source, kept in ``csrc/`` as plain headers so that they also
compile outside Jittor (``nvcc``, NVRTC; see ``tests/kernels``).

They are on by default.  ``set_kernels("composed")`` (or the run config's
``train.kernels: composed``, or the environment variable
``CTEN_KERNELS=composed``) switches back to composed Jittor operators for the
attention and to the numpy sampler plus a host gather for the erasing; the
results agree to fp32 rounding (attention) and exactly (erasing).
"""
import contextlib
import os

MODES = ("fused", "composed")
_mode = os.environ.get("CTEN_KERNELS", "fused")
if _mode not in MODES:
    raise ValueError(f"CTEN_KERNELS must be one of {MODES}, got {_mode!r}")


def kernels_mode():
    """``"fused"`` or ``"composed"``."""
    return _mode


def fused_enabled():
    return _mode == "fused"


def set_kernels(mode):
    """Choose the fused kernels or the composed operators for what follows."""
    global _mode
    if mode not in MODES:
        raise ValueError(f"kernels must be one of {MODES}, got {mode!r}")
    _mode = mode


@contextlib.contextmanager
def kernels(mode):
    """``with kernels("composed"): ...`` and the previous mode is restored after."""
    previous = _mode
    set_kernels(mode)
    try:
        yield
    finally:
        set_kernels(previous)


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
