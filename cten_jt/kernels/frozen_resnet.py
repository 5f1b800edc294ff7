"""The frozen 3D ResNet's forward as one oneDNN program (CPU), in eval and in train mode.

CTEN's visual backbone never learns.  ``frozen_backbone(resnet, x)`` runs the
Sequential of ``cten_jt.models.resnet.visual_backbone`` up to its average pool
as one op (``csrc/frozen_resnet_dnnl.h``).

Eval mode (evaluation, prediction, feature extraction, ``train.backbone_eval``):
every BatchNorm is an affine map with fixed numbers, so

* each BatchNorm is folded into the convolution before it as that convolution
  runs: weights scaled by ``gamma / sqrt(var + eps)`` per output channel, bias
  ``beta - mean * scale`` (computed in float64, rounded once to float32: ``fold``,
  bit for bit);
* ReLU and the residual sum are the convolutions' post-ops.

Train mode (a training step: the backbone's BatchNorms normalise with the
batch's statistics and update their running averages, as in the reference):
each convolution writes a buffer of its precision, then one pass over it per
channel block computes the batch mean and variance (double, two passes, in the
order of ``cten_jt.kernels.batchnorm``) and a last pass applies
``x * alpha + beta``, the residual sum and ReLU.  The running averages (and
``num_batches_tracked``) are updated after the call as each BatchNorm's own
forward would (``cten_bn_finish_channel``, shared with ``csrc/bn_stats_cpu.h``).

Both modes:

* activations in one layout from the first convolution to the last (no reorder
  around each layer): the one oneDNN chooses on this CPU (``chosen_layout``:
  nCdhw16c, nCdhw8c or channels last, ndhwc) or one forced (``layout``,
  ``CTEN_FROZEN_LAYOUT``); float32, or with ``precision="bf16"``
  (where this CPU's oneDNN has bfloat16 convolutions) bfloat16 operands with
  float32 accumulation and float32 shortcuts;
* temporal taps that only meet padding dropped (``conv.depth_taps``).

The program keeps no copy of the weights (``FrozenProgram``, on the Sequential:
its instructions and an arena for its activations, made again when the input's
shape, the precision or the mode changes; dropped by ``release_weight_caches``).  It reads the convolutions' and
BatchNorms' own arrays at each call, and reorders (in eval mode folds, then
reorders) one layer's weights at a time into the layout its convolution wants,
as it runs: ~2-4 % of a forward, against a second 290 MB copy of R3D-101's
weights held beside the model (which also came and went with each training
step and each evaluation, and split Jittor's cached memory).  The results are
those of the layer-by-layer forward up to rounding.  In float32 eval mode,
folding rounds each scaled weight once more.  In bfloat16 the program rounds where autocast does or less:
the convolutions' operands; inside a block the activations the next
convolution would round anyway; the shortcut, the residual sum and every
block's output stay float32 (a conversion to bfloat16 for the next block's
convolutions); in eval mode a convolution's output is not rounded before its
folded BatchNorm (in train mode it is, as autocast's is).
``tests/kernels/test_frozen_resnet.py`` bounds all of these against the
float64 forward.

Used by ``CTEN.backbone_features`` where ``usable`` says so; the
layer-by-layer path stays for mixed BatchNorm modes, synchronised BatchNorm,
the GPU, Jittor's own convolution and ``set_kernels("composed")``
(``cten_jt.switches``).
"""
import functools
import math

import jittor as jt
import numpy as np
from jittor import nn

from .. import switches
from . import conv as conv_ops

OP_CONV, OP_MAXPOOL, OP_FREE, OP_CAST, OP_CONV_TRAIN = 1, 2, 3, 4, 5
WIDTH = 35                      # ints per instruction (csrc/frozen_resnet_dnnl.h)
PRECISION_CODES = {"fp32": 0, "bf16": 1}
#: the activations' layouts the program runs in (csrc LAYOUT_*): channels in blocks, or last
LAYOUT_CODES = {"nCdhw16c": 16, "nCdhw8c": 8, "ndhwc": 1}

_HEADER = "frozen_resnet_dnnl.h"
#: int64s of a program's buffer plan (csrc Buffers): [buffers, bytes, (size, offset) a
#: buffer]; R3D-101's train-mode program makes ~330 buffers a call
PLAN_CAPACITY = 2 + 2 * 4096
BUFFERS = "__BUFFERS__"          # in an op's source: where its plan's arguments go
#: the plans recorded in this process, by program (its instructions): a program made again
#: (each training step makes its train-mode program anew, ``release_weight_caches``) takes
#: its buffers from an arena from its first call
_PLANS = {}


def _code(shape, dtype, inputs, src, data=None):
    y = jt.code(shape, dtype, inputs, cpu_header=conv_ops._header(_HEADER), cpu_src=src, **(
        {"data": data} if data else {}))
    for v in (y if isinstance(y, (list, tuple)) else [y]):
        v.compile_options = {"FLAGS: -ldnnl ": 1}
    return y


@functools.lru_cache(maxsize=None)
def chosen_layout(precision="fp32"):
    """The activations' layout oneDNN chooses on this CPU for ``precision``: "nCdhw16c"
    (AVX-512's jit kernels), "nCdhw8c" (AVX2's), "ndhwc" (channels last: AVX-512's brgemm
    kernels), or None where it chooses none of these (csrc ``chosen_layout``)."""
    code = int(_code((1,), "int32", [], f"out0_p[0] = cten_frozen_layout({PRECISION_CODES[precision]});")
               .numpy()[0])
    return {v: k for k, v in LAYOUT_CODES.items()}.get(code)


def layout(precision="fp32"):
    """The layout this process's programs run in: the one forced (``CTEN_FROZEN_LAYOUT``,
    ``switches.set_frozen_layout``; oneDNN runs any layout on any CPU, slowly where it has no
    fast kernel for it), else oneDNN's choice (``chosen_layout``; None: the program is not used)."""
    forced = switches.frozen_layout()
    return chosen_layout(precision) if forced == "auto" else forced


@functools.lru_cache(maxsize=None)
def native_bf16():
    """True where this CPU's oneDNN runs the program's bfloat16 convolutions (AVX-512 and up)."""
    return bool(_code((1,), "int32", [], "out0_p[0] = cten_frozen_native_bf16();").numpy()[0])


def _layers(resnet):
    """(conv1, bn1, maxpool, [blocks]) of a ``visual_backbone`` Sequential, or None where
    ``resnet`` is laid out otherwise."""
    from ..models.conv import Conv3d
    from ..models.norm import BatchNorm3d
    from ..models.pool import MaxPool3d, AvgPool3d
    from ..models.resnet import BasicBlock, Bottleneck
    mods = list(resnet)
    if len(mods) != 9 or not (isinstance(mods[0], Conv3d) and isinstance(mods[1], BatchNorm3d)
                              and isinstance(mods[2], nn.ReLU) and isinstance(mods[3], MaxPool3d)
                              and isinstance(mods[8], AvgPool3d)):
        return None
    blocks = [b for stage in mods[4:8] for b in stage]
    if not all(isinstance(b, (BasicBlock, Bottleneck)) for b in blocks):
        return None
    return mods[0], mods[1], mods[3], blocks


def _norms(resnet):
    return [m for m in resnet.modules() if hasattr(m, "running_mean")]


def train_mode(resnet):
    """True where every BatchNorm of ``resnet`` is in train mode, False where every one is in
    eval mode, None where they are mixed."""
    modes = {bool(getattr(m, "is_train", False)) for m in _norms(resnet)}
    return modes.pop() if len(modes) == 1 else None


def usable(resnet, x, precision):
    """True where ``frozen_backbone(resnet, x, precision)`` runs: the CPU with the system
    oneDNN (choosing one of the program's layouts, or one forced), fused kernels on, every BatchNorm in the
    same mode with one eps (in train mode also one momentum and update count, not
    synchronised under MPI), every weight frozen, plain float32 convolutions without
    bias, float32 input [N, C, D, H, W], fp32 (or bf16 where oneDNN has it natively)."""
    if jt.flags.use_cuda or not switches.fused_enabled() or not conv_ops.available():
        return False
    if x.dtype != "float32" or x.ndim != 5 or precision not in PRECISION_CODES:
        return False
    if precision == "bf16" and not native_bf16():
        return False
    if layout(precision) is None:
        return False
    layers = _layers(resnet)
    if layers is None:
        return False
    train = train_mode(resnet)
    if train is None:
        return False
    norms = _norms(resnet)
    if len({m.eps for m in norms}) != 1:
        return False
    if train and (len({(m.momentum, m.stat_updates) for m in norms}) != 1 or (
            jt.in_mpi and any(m.sync for m in norms))):
        return False
    for m in resnet.modules():
        if hasattr(m, "groups") and getattr(m, "bias", None) is not None:
            return False
        weight = getattr(m, "weight", None)
        if weight is not None and (not weight.is_stop_grad() or (hasattr(m, "groups") and weight.dtype != "float32")):
            return False          # the program reads each convolution's weights as float32
        if hasattr(m, "groups") and (m.groups != 1 or any(d != 1 for d in m.dilation)
                                     or getattr(m, "precision", precision) != precision):
            return False
    return True


def fold(weight, conv_bias, gamma, beta, mean, var, eps):
    """(weight, bias) float32 of an eval-mode BatchNorm folded into the convolution before
    it (numpy arrays; ``conv_bias`` may be None): computed in float64, rounded once."""
    scale = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    shift = np.asarray(beta, np.float64) - np.asarray(mean, np.float64) * scale
    if conv_bias is not None:
        shift = shift + np.asarray(conv_bias, np.float64) * scale
    w = np.asarray(weight, np.float64) * scale.reshape(-1, 1, 1, 1, 1)
    return w.astype(np.float32), shift.astype(np.float32)


def folded_by_program(weight, gamma, beta, mean, var, eps):
    """``fold(weight, None, ...)`` as the program computes it as each convolution runs
    (``csrc/frozen_resnet_dnnl.h``, ``fold_channel``), for a test to compare bit for bit."""
    o = weight.shape[0]
    arrays = [jt.array(np.ascontiguousarray(a, np.float32)) for a in (weight, gamma, beta, mean, var)]
    w, b = _code([tuple(weight.shape), (o,)], ["float32", "float32"], arrays,
                 f"cten_frozen_fold(in0_p, {o}, {weight.size // o}, in1_p, in2_p, in3_p, in4_p, data[\"eps\"], "
                 "out0_p, out1_p);", data={"eps": float(eps)})
    return w.numpy(), b.numpy()


class _Builder:
    """Writes the program: instructions, slots (and whether each holds float32), and the
    convolutions and BatchNorms whose arrays it reads, in its order."""

    def __init__(self, shape, precision, train=False, layout_name="nCdhw16c"):
        self.rows, self.shape, self.precision, self.train = [], tuple(shape), precision, train
        self.layout = layout_name
        self.convs, self.norms = [], []           # in the program's order; the BatchNorms' channels concatenated
        self.free_slots, self.n_slots = [], 1
        self.f32 = {0: precision == "fp32"}        # slot -> holds float32 (else bfloat16)
        self.channels = 0

    def slot(self, f32):
        s = self.free_slots.pop() if self.free_slots else self.n_slots
        self.n_slots = max(self.n_slots, s + 1)
        self.f32[s] = f32
        return s

    def free(self, *slots):
        for s in dict.fromkeys(slots):
            self.rows.append([OP_FREE, s])
            self.free_slots.append(s)

    def cast(self, src, to_f32):
        """Slot ``src`` itself where it holds the wanted type, else a converted copy."""
        if self.f32[src] == to_f32:
            return src
        dst = self.slot(to_f32)
        self.rows.append([OP_CAST, src, dst, int(to_f32)])
        return dst

    def conv(self, conv, bn, src, shape, dst=None, relu=True, out_f32=False):
        """``relu(bn(conv(slot src)) [+ slot dst])`` into a new slot (or summed into ``dst``);
        returns (slot, output shape).  ``out_f32``: a float32 output in a bfloat16 program.
        The program reads the convolution's own weights; in eval mode it folds the BatchNorm
        into them, in train mode the BatchNorm runs after it."""
        self.convs.append(conv)
        self.norms.append(bn)
        w_shape = tuple(conv.weight.shape)        # the weight as the convolution uses it
        own_taps, first_tap = w_shape[2], 0
        stride, padding = tuple(conv.stride), tuple(conv.padding)
        taps = conv_ops.depth_taps(shape[2], w_shape[2], stride[0], padding[0])
        stacked = [0, 0, 0]
        if taps is not None:
            first_tap, last, pad = taps
            w_shape, padding = w_shape[:2] + (last + 1 - first_tap,) + w_shape[3:], (pad,) + padding[1:]
        elif self.precision == "bf16" and src == 0 and shape[1] < 16 and stride[0] == 1 and w_shape[2] > 1:
            # the first convolution in bfloat16: its temporal taps as channels (csrc/frozen_resnet_dnnl.h;
            # in float32 oneDNN's kernel for few channels is the faster); the same bytes
            o, c, k = w_shape[:3]
            stacked = [k, padding[0], 2 if shape[0] % 2 == 0 else 1]
            w_shape = (o, c * k, 1) + w_shape[3:]
            shape, stride, padding = (shape[0], c * k) + tuple(shape[2:]), (1,) + stride[1:], (0,) + padding[1:]
        s = conv_ops.ConvSizes.of(shape, w_shape, stride, padding)
        if self.train and s.n * math.prod(s.out_spatial) < 2:
            raise ValueError(f"{type(bn).__name__}: expected more than 1 value per channel when training, "
                             f"got input of shape {[s.n, s.o, *s.out_spatial]}")
        out_f32 = out_f32 or self.precision == "fp32"
        sum_into = dst is not None
        if sum_into:
            assert self.f32[dst] == out_f32, "a shortcut of another precision than the sum"
        else:
            dst = self.slot(out_f32)
        self.rows.append([OP_CONV_TRAIN if self.train else OP_CONV, src, dst, int(sum_into), int(relu),
                          0, 0, self.channels] + s.as_array() + [0] + stacked
                         + [int(out_f32), own_taps, first_tap, 0])
        self.channels += s.o
        return dst, (s.n, s.o) + s.out_spatial

    def maxpool(self, pool, src, shape):
        (kd, kh, kw), (sd, sh, sw), (pd, ph, pw) = pool.kernel_size, pool.stride, pool.padding
        n, c, d, h, w = shape
        out = ((d + 2 * pd - kd) // sd + 1, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)
        dst = self.slot(self.f32[src])
        self.rows.append([OP_MAXPOOL, src, dst, 0, 0, 0, 0, 0, n, c, d, h, w, kd, kh, kw, sd, sh, sw,
                          pd, ph, pw, *out])
        return dst, (n, c) + out

    def block(self, block, x, shape):
        """A BasicBlock or Bottleneck on slot ``x``, which it consumes; the output slot holds
        float32 (the residual sum)."""
        pairs = [(block.conv1, block.bn1), (block.conv2, block.bn2)]
        if hasattr(block, "conv3"):
            pairs.append((block.conv3, block.bn3))
        low = self.precision != "fp32"
        xin = self.cast(x, False) if low else x                 # what the convolutions read
        h, h_shape = xin, shape
        for conv, bn in pairs[:-1]:
            h_next, h_shape = self.conv(conv, bn, h, h_shape)
            if h != xin:
                self.free(h)
            h = h_next
        if block.downsample is not None:
            shortcut, _ = self.conv(block.downsample[0], block.downsample[1], xin, shape, relu=False,
                                    out_f32=True)
            self.free(x, xin)
        else:
            shortcut = self.cast(x, True)
            self.free(*[s for s in (x, xin) if s != shortcut])
        conv, bn = pairs[-1]
        out, out_shape = self.conv(conv, bn, h, h_shape, dst=shortcut, out_f32=True)
        self.free(h)
        return out, out_shape

    def program(self, out_slot, out_shape):
        header = [len(self.rows), PRECISION_CODES[self.precision], out_slot, self.n_slots, *out_shape,
                  self.channels, LAYOUT_CODES[self.layout]]
        prog = np.zeros((len(self.rows) + 1, WIDTH), np.int32)
        for i, row in enumerate([header] + self.rows):
            prog[i, :len(row)] = row
        return prog


def _build(resnet, shape, precision, train):
    """The builder after writing the whole network (in this process's ``layout``), the
    output slot and shape."""
    conv1, bn1, maxpool, blocks = _layers(resnet)
    chosen = layout(precision)
    if chosen is None:
        raise ValueError(f"the frozen program has no layout here in {precision} (check usable() first)")
    b = _Builder(shape, precision, train, chosen)
    x, shape = b.conv(conv1, bn1, 0, b.shape)
    b.free(0)
    pooled, shape = b.maxpool(maxpool, x, shape)
    b.free(x)
    x = pooled
    for block in blocks:
        x, shape = b.block(block, x, shape)
    return b, x, shape


def implementations(resnet, x, precision="fp32"):
    """The oneDNN implementation of each convolution a program for ``x`` runs (e.g.
    "jit:avx512_core", "jit_1x1:avx2"; "ref:any" where its layout has no fast kernel)."""
    b, out, shape = _build(resnet, x.shape, precision, bool(train_mode(resnet)))
    prog = jt.array(b.program(out, shape))
    names = _code((8192,), "uint8", [prog], "cten_frozen_impls(in0_p, (char*)out0_p, 8192);").numpy()
    return bytes(names[:np.argmin(names)]).decode().split()


def support(precision, train):
    """Whether the program runs here for ``precision`` in train or eval mode, and how: a
    dict with ``applies``, ``layout`` (the one it runs in, and whether forced), ``kernels``
    (oneDNN's implementations of a tiny R3D-10 program's convolutions) and ``why`` where
    it does not apply (``cten-check-install`` prints it, so that a log from a CPU nobody
    here has explains itself)."""
    from ..models.norm import set_train_mode
    from ..models.resnet import visual_backbone
    info = {"precision": precision, "mode": "train" if train else "eval", "applies": False, "layout": None,
            "forced": switches.frozen_layout() != "auto", "kernels": [], "why": None}
    if jt.flags.use_cuda:
        info["why"] = "the GPU runs the backbone layer by layer (cuDNN)"
    elif not conv_ops.available():
        info["why"] = "no system oneDNN (libdnnl-dev)"
    elif not switches.fused_enabled():
        info["why"] = "composed kernels (CTEN_KERNELS=composed)"
    elif precision == "bf16" and not native_bf16():
        info["why"] = "this CPU's oneDNN has no bfloat16 convolution: bf16 runs layer by layer"
    elif layout(precision) is None:
        info["why"] = "oneDNN chooses none of the program's layouts (nCdhw16c, nCdhw8c, ndhwc) here"
    if info["why"]:
        return info
    net = visual_backbone(10, 4, 32)
    for w in net.parameters():
        w.stop_grad()
    if precision != "fp32":
        from ..precision import set_precision
        set_precision(net, precision)
    set_train_mode(net, train)
    x = jt.zeros((2, 3, 4, 32, 32), "float32")
    info["layout"] = layout(precision)
    if not usable(net, x, precision):
        info["why"] = "usable() refuses a plain R3D-10 (a bug: it should apply)"
        return info
    info["kernels"] = sorted(set(implementations(net, x, precision)))
    slow = [k for k in info["kernels"] if k.startswith("ref")]
    info["applies"] = True
    if slow:
        info["why"] = f"it applies, but oneDNN runs reference kernels in this layout: {slow}"
    return info


class FrozenProgram:
    """The program of one input shape, precision and mode: its instructions, and the
    convolutions and BatchNorms whose own arrays it reads at each call.  It keeps no copy
    of the weights: each convolution's are folded with its BatchNorm (eval mode) and
    reordered as it runs.  In train mode the BatchNorms' new running averages are stored
    after the call.

    Its activations live in one arena (``arena``, a uint8 array) that it keeps between
    calls, placed by ``plan``, which the first call records (``csrc`` ``Buffers``): without
    it, glibc mapped the stem's and layer 1's blocks (over 32 MB) afresh at every call and
    faulted in ~110 (eval) to ~170 (train) thousand pages a call at the paper's shape.  The
    arena is as large as the most the call's buffers ever need at once (plus what first
    fit loses: ``arena_bytes``); it goes with the program (``release_weight_caches``)."""

    def __init__(self, resnet, shape, precision, train=False):
        b, x, shape = _build(resnet, shape, precision, train)
        self.out_shape, self.train, self.convs, self.norms = shape, train, b.convs, b.norms
        program = b.program(x, shape)
        self.prog = jt.array(program).stop_grad()
        self.key, self.plan, self.arena = program.tobytes(), None, None
        if self.key in _PLANS:                 # the same instructions before: the same buffers
            self._plan(_PLANS[self.key])

    @property
    def arena_bytes(self):
        """The arena's size (None before the first call, or where the plan did not fit)."""
        return None if self.plan is None else int(self.plan[1])

    def _inputs(self, x):
        """The call's inputs: x, the program, the BatchNorms' four arrays concatenated, each
        convolution's weight; and the C array of the weights' pointers."""
        params = [jt.concat([getattr(m, name) for m in self.norms]).float32()
                  for name in ("weight", "bias", "running_mean", "running_var")]
        each = ", ".join(f"in{i + 6}_p" for i in range(len(self.convs)))
        return [x, self.prog] + params + [c.weight for c in self.convs], f"const float* each[] = {{{each}}}; "

    def _run(self, shapes, dtypes, inputs, src, data):
        """The op, run now, with the plan as its last input and the arena's address in its
        data: planned, or (no plan yet: [-1]) recording, the plan then in its last output
        and kept, with an arena of its size.  One op for both, so that the first planned
        call compiles nothing.

        The arena is numpy's (glibc's own mapping), not a Jittor array: freed, it goes back
        to the system at once, where Jittor's caching allocator kept a freed array for
        its next ones (at the paper's shape the released train-mode arena then stayed
        resident through the backward: +210 MB on the step's peak).  The op runs before
        this returns, so the arena outlives it."""
        planned = self.plan is not None
        plan = jt.array(self.plan if planned else np.array([-1, 0]), dtype="int64")  # (jt.array makes int64 int32)
        inputs = inputs + [plan.stop_grad()]
        shapes, dtypes = shapes + [(PLAN_CAPACITY,)], dtypes + ["int64"]
        src = src.replace(BUFFERS, f"in{len(inputs) - 1}_p[0] >= 0 ? (const int64_t*)in{len(inputs) - 1}_p : nullptr, "
                                   f"(char*)(uintptr_t)data[\"arena\"], (int64_t*)out{len(shapes) - 1}_p, {PLAN_CAPACITY}")
        # an address below 2^53 travels exactly in the op's float64 data
        *outs, recorded = _code(shapes, dtypes, inputs, src,
                                dict(data, arena=float(self.arena.ctypes.data) if planned else 0.0))
        jt.sync(outs)
        if not planned:
            recorded = recorded.numpy()
            if recorded[0] >= 0:   # else more buffers than a plan holds: each its own, as recorded
                self._plan(recorded[:2 + 2 * recorded[0]])
                _PLANS[self.key] = self.plan
        return outs

    def _plan(self, plan):
        self.plan = plan
        self.arena = np.empty(int(plan[1]) + 4096, np.uint8)        # 4 KB: the alignment

    def __call__(self, x):
        inputs, each = self._inputs(x)
        if self.train:
            return self._train(inputs, each)
        y, = self._run([self.out_shape], ["float32"], inputs,
                       each + "cten_frozen_run(in0_p, each, in1_p, in2_p, in3_p, in4_p, in5_p, data[\"eps\"], "
                       "out0_p, " + BUFFERS + ");", {"eps": float(self.norms[0].eps)})
        return y.stop_grad()

    def _train(self, inputs, each):
        """Train mode: the output, and every BatchNorm's running averages (and count) updated
        as its own forward would (``cten_jt.kernels.batchnorm``)."""
        first = self.norms[0]
        channels = sum(m.num_features for m in self.norms)
        y, stats = self._run([self.out_shape, (4, channels)], ["float32", "float32"], inputs,
                             each + "cten_frozen_run_train(in0_p, each, in1_p, in2_p, in3_p, in4_p, in5_p, "
                             "data[\"momentum\"], data[\"eps\"], (int)data[\"updates\"], out0_p, out1_p, " + BUFFERS + ");",
                             {"momentum": float(first.momentum), "eps": float(first.eps),
                              "updates": int(first.stat_updates)})
        jt.sync([y, stats])
        stats = stats.numpy()
        at = 0
        for m in self.norms:
            c = m.num_features
            m.running_mean.update(jt.array(stats[2, at:at + c]))
            m.running_var.update(jt.array(stats[3, at:at + c]))
            m.num_batches_tracked.update(m.num_batches_tracked + m.stat_updates)
            at += c
        self.last_stats = stats
        return y.stop_grad()


def _key(resnet, snippet_shape, precision, train):
    """What a program depends on: the modules (not their arrays, which it reads at each
    call), the input's shape, the precision, the mode and the layout."""
    return tuple(id(m) for m in resnet.modules()), tuple(snippet_shape), precision, train, layout(precision)


def frozen_backbone(resnet, x, precision="fp32"):
    """``resnet`` (a ``visual_backbone`` Sequential with frozen weights) applied to ``x`` up
    to its average pool, which it then applies: the same as ``resnet(x)`` up to rounding
    (module docstring), in eval mode or, with every BatchNorm in train mode, with the
    batch's statistics and the running averages updated.  Check ``usable`` first."""
    train = bool(train_mode(resnet))
    key = _key(resnet, x.shape, precision, train)
    cached = resnet.__dict__.get("_frozen_program")
    if cached is None or cached[0] != key:
        resnet.__dict__["_frozen_program"] = (key, FrozenProgram(resnet, x.shape, precision, train))
    return list(resnet)[8](resnet.__dict__["_frozen_program"][1](x))

