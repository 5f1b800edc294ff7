"""Every ``CTEN_*`` switch of the Jittor package, with its environment variable.

One module, in the manner of timm's ``layers/config.py``: the variables are
read here and nowhere else, so this table is the whole list.

=========================  ===========  ==================================================
variable                   default      effect
=========================  ===========  ==================================================
``CTEN_KERNELS``           ``fused``    ``composed``: attention from composed Jittor
                                        operators, erasing from the numpy sampler and
                                        the frozen backbone layer by layer
                                        (``cten_jt.kernels``); also ``set_kernels()``
                                        and the run config's ``train.kernels``
``CTEN_CONV_WEIGHT_CACHE`` ``1``        ``0``: frozen convolution weights are reordered
                                        into oneDNN's layout on every call instead of
                                        once (``cten_jt.kernels.conv``);
                                        also ``set_weight_cache()``
``CTEN_CUDNN_TF32``        ``0``        ``1``: cuDNN convolutions may use TF32 on the GPU
                                        (``cten_jt.kernels.conv``); read at import
``CTEN_CUDA_COMPAT``       ``1``        ``0``: with a GPU, do not lay out the CUDA
                                        compatibility home (``cten_jt._environment``,
                                        ``cten_jt._cuda_compat``); read before Jittor
``CTEN_VERBOSE``           ``0``        ``1``: show Jittor's info lines (``log_silent``
                                        left alone; ``cten_jt._environment``)
``CTEN_HEAP``              ``system``   ``reuse``: large blocks come from glibc's heap
                                        and freed ones are reused instead of unmapped:
                                        faster, more memory (``cten_jt._environment``,
                                        docs/speed.md); read at import
``CTEN_FROZEN_LAYOUT``     ``auto``     the frozen backbone program's activation layout:
                                        ``auto`` (oneDNN's choice on this CPU),
                                        ``nCdhw16c``, ``nCdhw8c`` or ``ndhwc``
                                        (channels last); forcing one runs that branch on
                                        any CPU (``cten_jt.kernels.frozen_resnet``);
                                        also ``set_frozen_layout()``
=========================  ===========  ==================================================

This module imports nothing from Jittor: ``cten_jt._environment`` reads it
before Jittor is imported.  The kernel modes are the run configuration's
(``cten_common.config.KERNEL_MODES``).  (``CTEN_TEST_DEVICE`` belongs to the tests, see
``tests/conftest.py``.)
"""
import contextlib
import os

from cten_common.config import KERNEL_MODES

#: name -> (default, one-line meaning); the table above, for code and tests
SWITCHES = {
    "CTEN_KERNELS": ("fused", "fused or composed kernels (cten_jt.kernels)"),
    "CTEN_CONV_WEIGHT_CACHE": ("1", "keep frozen conv weights in oneDNN's layout (cten_jt.kernels.conv)"),
    "CTEN_CUDNN_TF32": ("0", "let cuDNN convolutions use TF32 (cten_jt.kernels.conv)"),
    "CTEN_CUDA_COMPAT": ("1", "lay out the CUDA compatibility home on a GPU (cten_jt._environment)"),
    "CTEN_VERBOSE": ("0", "show Jittor's info lines (cten_jt._environment)"),
    "CTEN_HEAP": ("system", "reuse: large blocks from glibc's heap, reused once freed (cten_jt._environment)"),
    "CTEN_FROZEN_LAYOUT": ("auto", "the frozen backbone program's layout: auto, nCdhw16c, nCdhw8c or ndhwc "
                                   "(cten_jt.kernels.frozen_resnet)"),
}


def env(name):
    """The value of switch ``name`` in the environment, or its default."""
    return os.environ.get(name, SWITCHES[name][0])


def env_flag(name):
    """Switch ``name`` as a bool: anything but ``""`` and ``"0"`` is on."""
    return env(name) not in ("", "0")


# ---- CTEN_KERNELS: fused kernels or composed operators -------------------------------


def _check_mode(mode, what):
    if mode not in KERNEL_MODES:
        raise ValueError(f"{what} must be one of {KERNEL_MODES}, got {mode!r}")
    return mode


_kernels_mode = _check_mode(env("CTEN_KERNELS"), "CTEN_KERNELS")


def kernels_mode():
    """``"fused"`` or ``"composed"``."""
    return _kernels_mode


def fused_enabled():
    return _kernels_mode == "fused"


def set_kernels(mode):
    """Choose the fused kernels or the composed operators for what follows."""
    global _kernels_mode
    _kernels_mode = _check_mode(mode, "kernels")


@contextlib.contextmanager
def kernels(mode):
    """``with kernels("composed"): ...`` and the previous mode is restored after."""
    previous = _kernels_mode
    set_kernels(mode)
    try:
        yield
    finally:
        set_kernels(previous)


# ---- CTEN_FROZEN_LAYOUT: the frozen backbone program's activation layout ------------------

#: the program's layouts: oneDNN's choice on this CPU, or one forced (tests run each on any CPU)
FROZEN_LAYOUTS = ("auto", "nCdhw16c", "nCdhw8c", "ndhwc")


def _check_layout(name, what):
    if name not in FROZEN_LAYOUTS:
        raise ValueError(f"{what} must be one of {FROZEN_LAYOUTS}, got {name!r}")
    return name


_frozen_layout = _check_layout(env("CTEN_FROZEN_LAYOUT"), "CTEN_FROZEN_LAYOUT")


def frozen_layout():
    """The frozen backbone program's layout setting: ``"auto"`` or one of the forced ones."""
    return _frozen_layout


def set_frozen_layout(name):
    """Force the frozen backbone program's activation layout (``"auto"``: oneDNN's choice)."""
    global _frozen_layout
    _frozen_layout = _check_layout(name, "frozen layout")


@contextlib.contextmanager
def frozen_layout_forced(name):
    """``with frozen_layout_forced("ndhwc"): ...`` and the previous setting is restored after."""
    previous = _frozen_layout
    set_frozen_layout(name)
    try:
        yield
    finally:
        set_frozen_layout(previous)


# ---- CTEN_CONV_WEIGHT_CACHE, CTEN_CUDNN_TF32: convolution ------------------------------

_weight_cache = env("CTEN_CONV_WEIGHT_CACHE") != "0"
#: 1 where cuDNN may use TF32 (the int the CUDA op takes); read once, at import
CUDNN_TF32 = int(env("CTEN_CUDNN_TF32") == "1")


def weight_cache_enabled():
    return _weight_cache


def set_weight_cache(enabled):
    """Keep frozen weights in oneDNN's layout (True, the default) or reorder them every call."""
    global _weight_cache
    _weight_cache = bool(enabled)


# ---- CTEN_CUDA_COMPAT, CTEN_VERBOSE: Jittor's environment (before ``import jittor``) ----

def cuda_compat_enabled():
    """False when ``CTEN_CUDA_COMPAT=0``: keep the CUDA setup as found."""
    return env("CTEN_CUDA_COMPAT") != "0"


def verbose():
    """True when ``CTEN_VERBOSE`` is set (and not 0): Jittor's info lines shown."""
    return env_flag("CTEN_VERBOSE")


# ---- CTEN_HEAP: glibc's malloc (at import) ------------------------------------------------

HEAP_MODES = ("reuse", "system")


def heap_mode():
    """``"system"`` (the default: glibc as it is) or ``"reuse"`` (``CTEN_HEAP``)."""
    return _check_heap(env("CTEN_HEAP"))


def _check_heap(mode):
    if mode not in HEAP_MODES:
        raise ValueError(f"CTEN_HEAP must be one of {HEAP_MODES}, got {mode!r}")
    return mode
