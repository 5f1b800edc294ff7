"""2D and 3D convolution with gradients: oneDNN on the CPU, cuDNN on the GPU.

Jittor's CPU conv3d is a broadcast-and-reduce loop (~100x slower than
PyTorch's) and its conv2d runs oneDNN on plain layouts; on the GPU its cuDNN
op library does not load against cuDNN 9 (``_cuda_compat`` sets conv_opt=1),
which leaves the broadcast-and-reduce there too.  ``ConvFunction`` is a
``jt.Function`` of three single-output ``jt.code`` ops (forward,
backward-data, backward-weights):

* CPU: oneDNN's convolution primitives with the layouts oneDNN prefers
  (``csrc/conv_dnnl.h``), linked against the system oneDNN that
  ``cten_jt._environment`` found and linked for Jittor;
* GPU: cuDNN's convolution API (``csrc/conv_cudnn.cuh``; cuDNN 8 or 9, e.g.
  the ``nvidia-cudnn-cu13`` wheel linked into the CUDA home of
  ``_cuda_compat``), fp32 without TF32 unless ``CTEN_CUDNN_TF32=1``.

Frozen weights (``stop_grad``, e.g. CTEN's visual backbone) are reordered into
the forward primitive's layout once and kept (``WeightCache``): the same
primitive and results, without reading and rewriting every weight on every
forward (~30 ms of a 240 ms ResNet-101 forward on 2 cores).  A training step
drops the copies before its backward (``release_weight_caches``), which is
where its memory peaks and where the frozen weights are not used: the three
views' forwards share one reorder, and training memory stays at its level
without the cache.  ``CTEN_CONV_WEIGHT_CACHE=0`` or ``switches.set_weight_cache(False)``
turns it off (``cten_jt.switches``).

``precision="bf16"`` (``cten_jt.precision``) runs the same ops in bfloat16 as
``torch.autocast`` does: operands and results rounded to bfloat16, float32
accumulation; the arrays around the ops stay float32 (the reorders into
oneDNN's layouts convert) and a frozen weight's cached copy is kept in
bfloat16, half the bytes.  Where oneDNN has no bfloat16 convolution (below
AVX-512) the float32 primitives run on rounded values (``native_bf16()``).

Temporal taps that only ever meet zero padding are dropped before the call
(``depth_taps``): in CTEN's 3D ResNet, layer3 and layer4 see one frame, so
their 3x3x3 kernels act as their middle 1x3x3 slice.  The result is the same
sum without its zero terms; the convolution, and the cached copy (~180 MB
instead of ~340 MB), shrink by a third for those layers.
"""
import functools
import math
import os
import typing

import jittor as jt

from .. import _environment, switches
from . import kernel_source

_HEADERS = {}


@functools.lru_cache(maxsize=None)
def _system_dnnl():
    return (_environment.decisions.get("use_mkl", ("0",))[0] == "1"
            and _environment.find_system_dnnl() is not None)


@functools.lru_cache(maxsize=None)
def cudnn_home():
    """The CUDA home whose include/ and lib64/ hold cuDNN (headers and libcudnn.so), or None."""
    nvcc = os.environ.get("nvcc_path") or ""
    home = os.path.dirname(os.path.dirname(nvcc)) if nvcc else ""
    ok = home and os.path.exists(os.path.join(home, "include", "cudnn.h")) and os.path.exists(
        os.path.join(home, "lib64", "libcudnn.so"))
    return home if ok else None


def available():
    """True where this op runs: the system oneDNN on the CPU (the one Jittor also
    uses), cuDNN on the GPU."""
    if jt.flags.use_cuda:
        return cudnn_home() is not None
    return _system_dnnl()


class ConvSizes(typing.NamedTuple):
    """The sizes of one convolution, as the C++/CUDA entry points read them.

    ``as_array()`` gives the ``int s[19]`` that ``csrc/conv_dnnl.h`` and
    ``csrc/conv_cudnn.cuh`` read, in this field order (a 2D convolution has
    ``d = kd = sd = 1``, ``pd = 0`` and ``d_out = 1``)::

        s[0]  nd                        2 or 3
        s[1]  n, s[2] c                 batch, input channels
        s[3]  d, s[4] h, s[5] w         input depth, height, width
        s[6]  o                         output channels
        s[7]  kd, s[8] kh, s[9] kw      kernel
        s[10] sd, s[11] sh, s[12] sw    stride
        s[13] pd, s[14] ph, s[15] pw    padding (symmetric)
        s[16] d_out, s[17] h_out, s[18] w_out
    """

    nd: int
    n: int
    c: int
    d: int
    h: int
    w: int
    o: int
    kd: int
    kh: int
    kw: int
    sd: int
    sh: int
    sw: int
    pd: int
    ph: int
    pw: int
    d_out: int
    h_out: int
    w_out: int

    @classmethod
    def of(cls, x_shape, w_shape, stride, padding):
        """From the input and weight shapes ([N, C, (D,) H, W], [O, C, (kD,) kH, kW])."""
        nd = len(x_shape) - 2
        if nd == 2:
            n, c, h, w = x_shape
            o, _, kh, kw = w_shape
            d = kd = sd = 1
            pd = 0
            (sh, sw), (ph, pw) = stride, padding
        else:
            n, c, d, h, w = x_shape
            o, _, kd, kh, kw = w_shape
            (sd, sh, sw), (pd, ph, pw) = stride, padding
        return cls(nd, n, c, d, h, w, o, kd, kh, kw, sd, sh, sw, pd, ph, pw,
                   (d + 2 * pd - kd) // sd + 1, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)

    @property
    def out_spatial(self):
        """The output's spatial shape: (d_out, h_out, w_out) in 3D, (h_out, w_out) in 2D."""
        return (self.d_out, self.h_out, self.w_out) if self.nd == 3 else (self.h_out, self.w_out)

    def as_array(self):
        """The ``int s[19]`` of the C++ side (the one place the layout is flattened)."""
        return [int(v) for v in self]


_N = len(ConvSizes._fields)        # 19
_UNPACK = f"int s[{_N}]; for (int i = 0; i < {_N}; i++) s[i] = (int)data[\"s\" + std::to_string(i)];"


def _header(name):
    if name not in _HEADERS:
        _HEADERS[name] = kernel_source(name) + "\n#include <string>"
    return _HEADERS[name]


#: precision name -> the ``int prec`` the C++/CUDA entry points take (tf32: float32
#: operands, cuDNN's TF32 math)
PRECISION_CODES = {"fp32": 0, "bf16": 1, "fp16": 2, "tf32": 0}


def _op(shape, inputs, entry, sizes, precision="fp32"):
    """One single-output op calling ``cten_conv_<entry>(in0_p, in1_p, out0_p, s, prec)``: the
    oneDNN entry point on the CPU, its ``_cudnn`` twin on the GPU; the sizes
    (``ConvSizes``) and the precision travel as op data ``s0..s18`` and ``prec`` (no
    recompilation per shape or precision)."""
    data = {f"s{i}": v for i, v in enumerate(sizes.as_array())}
    data["prec"] = PRECISION_CODES[precision]
    if jt.flags.use_cuda:
        src = (f"{_UNPACK} cten_conv_{entry}_cudnn(in0_p, in1_p, out0_p, s, (int)data[\"prec\"], "
               f"data[\"tf32\"] != 0);")
        y = jt.code(shape, "float32", inputs, cuda_header=_header("conv_cudnn.cuh"), cuda_src=src,
                    data={**data, "tf32": int(switches.CUDNN_TF32 or precision == "tf32")})
        home = cudnn_home()
        y.compile_options = {f"FLAGS: -I{home}/include -L{home}/lib64 -lcudnn ": 1}
        return y
    call = ("cten_conv_weights_blocked(in0_p, out0_p, out0_shape0, s, prec);" if entry == "weights_blocked"
            else f"cten_conv_{entry}(in0_p, in1_p, out0_p, s, prec);")
    y = jt.code(shape, "float32", inputs, cpu_header=_header("conv_dnnl.h"),
                cpu_src=f"{_UNPACK} int prec = (int)data[\"prec\"]; {call}", data=data)
    y.compile_options = {"FLAGS: -ldnnl ": 1}
    return y


def depth_taps(depth, kernel, stride, pad):
    """``(first, last, new_pad)``: the temporal taps of a 3D kernel that meet the
    input for some output frame, when dropping the others keeps the padding
    symmetric; None when every tap is used or the padding would turn asymmetric."""
    out = (depth + 2 * pad - kernel) // stride + 1
    used = [k for k in range(kernel) if any(0 <= o * stride + k - pad < depth for o in range(out))]
    if not used or len(used) == kernel:
        return None
    first, last = used[0], used[-1]
    front, back = pad - first, pad - (kernel - 1 - last)
    return (first, last, front) if front == back else None


def release_weight_caches(module):
    """Drop every cached weight copy under ``module`` (and the frozen program, with its
    activations' arena); the next forward rebuilds them."""
    for m in module.modules():
        m.__dict__.pop("_frozen_program", None)        # kernels.frozen_resnet's whole-backbone copy
        cache = m.__dict__.get("_dnnl_weights")
        if isinstance(cache, WeightCache):
            cache.key, cache.blocked = None, None


def _blocked_capacity(w_shape, precision="fp32"):
    """Floats enough for the weights in any of oneDNN's layouts: float32 with channels
    padded to blocks of 16; bfloat16 (2 bytes a value) with channels padded to 32 (where
    bf16 is emulated, the copy is float32)."""
    o, i, *k = w_shape
    if precision == "bf16" and native_bf16():
        return -(-(-(-o // 32) * 32) * (-(-i // 32) * 32) * math.prod(k) // 2)
    return (-(-o // 16) * 16) * (-(-i // 16) * 16) * math.prod(k)


@functools.lru_cache(maxsize=None)
def native_bf16():
    """True where this CPU's oneDNN runs bfloat16 convolutions (AVX-512 and up); False
    where ``precision="bf16"`` runs float32 primitives on rounded values (the same
    results up to the order of the sums, at float32 speed)."""
    flag = jt.code((1,), "int32", [], cpu_header=_header("conv_dnnl.h"),
                   cpu_src="out0_p[0] = cten_conv::cten_conv_native_bf16();")
    flag.compile_options = {"FLAGS: -ldnnl ": 1}
    return bool(flag.numpy()[0])


class WeightCache:
    """A frozen weight in the forward primitive's layout, rebuilt when the weight
    (its Jittor variable: loading or updating a parameter makes a new one) or the
    input shape changes.  A plain object: not a parameter, never saved."""

    __slots__ = ("key", "blocked")

    def __init__(self):
        self.key, self.blocked = None, None

    def get(self, weight, source, sizes, precision="fp32"):
        """``source``: the weight as the convolution uses it (``weight`` or a slice of it);
        ``sizes``: its ``ConvSizes``; ``precision``: the copy's (bf16: half the bytes)."""
        key = (weight.id, tuple(sizes), precision)
        if key != self.key:
            self.key, self.blocked = None, None        # the old copy goes first
            self.blocked = _op((_blocked_capacity(source.shape, precision),), [source],
                               "weights_blocked", sizes, precision).stop_grad()
            self.key = key
        return self.blocked


class ConvFunction(jt.Function):
    """``ConvFunction(stride, padding[, blocked, precision])(x, weight)``: no bias, no
    dilation, one group.  ``blocked``: the (frozen) weight already in oneDNN's layout
    (``WeightCache``, CPU); ``precision``: fp32, bf16 (or fp16, GPU), the backward's too."""

    def __init__(self, stride, padding, blocked=None, precision="fp32"):
        self.stride, self.padding, self.blocked = tuple(stride), tuple(padding), blocked
        self.precision = precision

    def execute(self, x, weight):
        if x.shape[1] != weight.shape[1]:
            raise ValueError(f"conv: input has {x.shape[1]} channels, weight expects {weight.shape[1]}")
        s = ConvSizes.of(x.shape, weight.shape, self.stride, self.padding)
        out_shape = (s.n, s.o) + s.out_spatial
        self.saved = (x, weight, s)
        if self.blocked is not None:
            return _op(out_shape, [x, self.blocked], "forward_blocked", s, self.precision)
        return _op(out_shape, [x, weight], "forward", s, self.precision)

    def grad(self, dy):
        x, weight, s = self.saved
        dx = _op(x.shape, [dy, weight], "backward_data", s, self.precision)
        dw = _op(weight.shape, [x, dy], "backward_weights", s, self.precision)
        return dx, dw


def fast_conv(x, weight, stride, padding, cache=None, precision="fp32"):
    """``conv2d``/``conv3d(x, weight)`` on oneDNN (CPU) or cuDNN (GPU) (float32 arrays, no
    bias, no dilation, one group); ``cache``: a ``WeightCache`` that keeps a frozen weight
    in oneDNN's layout (CPU only); ``precision``: what the convolution computes in
    (``PRECISION_CODES``; the module docstring)."""
    if precision not in PRECISION_CODES:
        raise ValueError(f"conv precision must be one of {sorted(PRECISION_CODES)}, got {precision!r}")
    if precision in ("fp16", "tf32") and not jt.flags.use_cuda:
        raise ValueError(f"conv precision {precision} runs on a CUDA GPU only (on the CPU use bf16)")
    stride, padding, source = tuple(stride), tuple(padding), weight
    if x.ndim == 5:
        taps = depth_taps(x.shape[2], weight.shape[2], stride[0], padding[0])
        if taps is not None:
            first, last, pad = taps
            source, padding = weight[:, :, first:last + 1], (pad,) + padding[1:]
    blocked = None
    if cache is not None and switches.weight_cache_enabled() and weight.is_stop_grad() and not jt.flags.use_cuda:
        blocked = cache.get(weight, source, ConvSizes.of(x.shape, source.shape, stride, padding), precision)
    return ConvFunction(stride, padding, blocked, precision)(x, source)
