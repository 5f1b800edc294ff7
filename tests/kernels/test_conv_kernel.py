"""The convolution op (oneDNN on the CPU; cuDNN with CTEN_TEST_DEVICE=cuda) against
PyTorch's conv2d/conv3d: forward, input gradient and weight gradient, to the
module tolerance."""
import jittor as jt
import numpy as np
import pytest
import torch

from cten_jt import switches
from cten_jt.kernels import conv as dnnl_conv
from cten_jt.models.conv import Conv2d, Conv3d
from helpers import MODULE_ATOL, assert_close

pytestmark = pytest.mark.skipif(not dnnl_conv.available(), reason="no system oneDNN (libdnnl-dev) / no cuDNN")

CASES = [  # input shape, weight shape, stride, padding
    ((2, 3, 5, 9, 9), (4, 3, 3, 3, 3), (1, 2, 2), (1, 1, 1)),
    ((1, 3, 8, 16, 16), (8, 3, 7, 7, 7), (1, 2, 2), (3, 3, 3)),      # the stem of the 3D ResNet
    ((2, 8, 4, 6, 6), (16, 8, 1, 1, 1), (2, 2, 2), (0, 0, 0)),       # a strided shortcut
    ((3, 1, 20, 16), (6, 1, 7, 1), (2, 1), (3, 0)),                  # the audio ResNet's conv1
    ((2, 5, 11, 7), (6, 5, 3, 3), (1, 1), (1, 1)),
    ((2, 8, 1, 3, 3), (6, 8, 3, 3, 3), (1, 1, 1), (1, 1, 1)),      # one frame: the middle taps only
    ((2, 8, 1, 3, 3), (6, 8, 3, 3, 3), (2, 2, 2), (1, 1, 1)),
    ((2, 4, 2, 5, 5), (6, 4, 5, 3, 3), (1, 1, 1), (2, 1, 1)),      # taps 1..3 of 5
]


FACTOR = 4     # over the floor: what another fp32 implementation's summation order does


def _torch_conv(x, w, g, stride, padding, dtype, device="cpu"):
    """PyTorch's y, dx, dw (loss sum(y * g)) in ``dtype`` on ``device``, as float64 numpy."""
    conv = torch.nn.functional.conv3d if x.ndim == 5 else torch.nn.functional.conv2d
    tx = torch.from_numpy(x).to(device, dtype).requires_grad_()
    tw = torch.from_numpy(w).to(device, dtype).requires_grad_()
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        ty = conv(tx, tw, stride=stride, padding=padding)
        (ty * torch.from_numpy(g).to(device, dtype)).sum().backward()
    return {k: v.detach().cpu().double().numpy() for k, v in (("y", ty), ("dx", tx.grad), ("dw", tw.grad))}


@pytest.mark.parametrize("x_shape,w_shape,stride,padding", CASES)
def test_forward_and_gradients_match_pytorch(x_shape, w_shape, stride, padding):
    """Each of y, dx, dw within FACTOR x the floor of float64: the largest distance from
    PyTorch's float64 result of PyTorch's float32 one on the CPU and, where Jittor runs on
    the GPU, on the GPU too (cuDNN sums in other orders than oneDNN: on the H200 the stem's
    output lay 1.3e-5 from PyTorch's CPU result, over a fixed 1e-6 of its scale)."""
    rng = np.random.default_rng(len(x_shape) * 10 + w_shape[0])
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (rng.standard_normal(w_shape) * 0.1).astype(np.float32)
    conv = torch.nn.functional.conv3d if len(x_shape) == 5 else torch.nn.functional.conv2d
    out_shape = tuple(conv(torch.zeros(x_shape), torch.zeros(w_shape), stride=stride, padding=padding).shape)
    g = rng.standard_normal(out_shape).astype(np.float32)
    ref = _torch_conv(x, w, g, stride, padding, torch.float64)
    fp32 = [_torch_conv(x, w, g, stride, padding, torch.float32)]
    if jt.flags.use_cuda and torch.cuda.is_available():
        fp32.append(_torch_conv(x, w, g, stride, padding, torch.float32, "cuda"))
    jx, jw = jt.array(x), jt.array(w)
    jy = dnnl_conv.fast_conv(jx, jw, stride, padding)
    dx, dw = jt.grad((jy * jt.array(g)).sum(), [jx, jw])
    got = {"y": jy.numpy(), "dx": dx.numpy(), "dw": dw.numpy()}
    where = f"conv {x_shape} * {w_shape} stride {stride} padding {padding}"
    for name in ("y", "dx", "dw"):
        assert got[name].shape == ref[name].shape, f"{where}.{name}: shape {got[name].shape} vs {ref[name].shape}"
        floor = max(float(np.max(np.abs(t[name] - ref[name]))) for t in fp32)
        assert floor > 0, f"{where}.{name}: PyTorch's float32 equals its float64 (no floor)"
        diff = float(np.max(np.abs(got[name].astype(np.float64) - ref[name])))
        assert diff <= FACTOR * floor, (f"{where}.{name}: {diff:.3e} from float64, over {FACTOR} x PyTorch "
                                        f"float32's {floor:.3e}")


def test_layers_use_it_and_keep_their_parameter_names():
    calls = []
    real = dnnl_conv.fast_conv

    def spy(*args):
        calls.append(args[0].ndim)
        return real(*args)
    dnnl_conv.fast_conv = spy
    try:
        c3, c2 = Conv3d(3, 4, 3, padding=1, bias=True), Conv2d(2, 3, 3, padding=1, bias=False)
        y3 = c3(jt.ones((1, 3, 4, 5, 5)))
        y2 = c2(jt.ones((1, 2, 5, 5)))
    finally:
        dnnl_conv.fast_conv = real
    assert calls == [5, 4]
    assert set(dict(c3.named_parameters())) == {"weight", "bias"} and set(dict(c2.named_parameters())) == {"weight"}
    ref = jt.nn.conv3d(jt.ones((1, 3, 4, 5, 5)), c3.weight, c3.bias, 1, 1)
    assert_close(ref.numpy(), y3.numpy(), "Conv3d with bias", atol=MODULE_ATOL)
    assert y2.shape == [1, 3, 5, 5]


@pytest.mark.parametrize("depth,kernel,stride,pad,expected", [
    (1, 3, 1, 1, (1, 1, 0)),      # layer3/layer4 of the 3D ResNet at one frame
    (1, 3, 2, 1, (1, 1, 0)),
    (2, 3, 1, 1, None),           # every tap meets a frame
    (2, 5, 1, 2, (1, 3, 1)),
    (4, 1, 1, 0, None),
    (3, 7, 2, 3, (1, 5, 2)),      # unused taps at both ends, padding stays symmetric
    (2, 3, 2, 1, None),           # taps {1, 2}: padding would become 0 in front, 1 behind
])
def test_depth_taps(depth, kernel, stride, pad, expected):
    assert dnnl_conv.depth_taps(depth, kernel, stride, pad) == expected
    if expected is not None:       # the taps dropped only ever multiply zero padding
        first, last, new_pad = expected
        out = (depth + 2 * pad - kernel) // stride + 1
        assert (depth + 2 * new_pad - (last - first + 1)) // stride + 1 == out
        for k in set(range(kernel)) - set(range(first, last + 1)):
            assert all(not 0 <= o * stride + k - pad < depth for o in range(out))


def _frozen_conv_and_input(seed, c_in, c_out):
    """A frozen 3x3x3 Conv3d (c_in -> c_out, padding 1) with random weights, and an input."""
    rng = np.random.default_rng(seed)
    conv = Conv3d(c_in, c_out, 3, padding=1, bias=False)
    conv.weight.assign(jt.array((rng.standard_normal((c_out, c_in, 3, 3, 3)) * 0.1).astype(np.float32)))
    conv.weight.stop_grad()
    return conv, jt.array(rng.standard_normal((2, c_in, 3, 5, 5)).astype(np.float32)), rng


@pytest.mark.skipif(jt.flags.use_cuda, reason="the weight cache is the CPU's (oneDNN layouts)")
def test_frozen_weights_are_cached_in_onednn_layout_and_refreshed():
    conv, x, rng = _frozen_conv_and_input(7, 8, 6)
    try:
        switches.set_weight_cache(False)
        plain = conv(x).numpy()
        assert getattr(conv, "_dnnl_weights", None) is None or conv._dnnl_weights.key is None
        switches.set_weight_cache(True)
        cached = conv(x).numpy()
        cache = conv._dnnl_weights
        assert cache.key is not None and cache.key[0] == conv.weight.id
        np.testing.assert_array_equal(plain, cached)          # the same primitive, the same sums
        blocked = cache.blocked
        np.testing.assert_array_equal(conv(x).numpy(), cached)
        assert cache.blocked is blocked                        # reused, not rebuilt
        # a new weight (loading, an update) makes a new Jittor variable: the copy follows
        conv.weight.update(conv.weight * 2)
        np.testing.assert_allclose(conv(x).numpy(), 2 * plain, rtol=1e-6, atol=1e-6)
        assert cache.key[0] == conv.weight.id and cache.blocked is not blocked
        # a new input shape rebuilds it as well
        y = conv(jt.array(rng.standard_normal((1, 8, 3, 5, 5)).astype(np.float32)))
        assert y.shape == [1, 6, 3, 5, 5] and cache.key[1][1] == 1
        # dropped (a training step does so before its backward) and rebuilt by the next forward
        dnnl_conv.release_weight_caches(jt.nn.Sequential(conv))
        assert cache.key is None and cache.blocked is None
        np.testing.assert_array_equal(conv(x).numpy(), y2 := conv(x).numpy())
        assert cache.key is not None and y2.shape == (2, 6, 3, 5, 5)
        # a trainable weight is never cached
        live = Conv3d(8, 6, 3, padding=1, bias=False)
        live(x).sync()
        assert live._dnnl_weights.key is None
    finally:
        switches.set_weight_cache(True)


# ---- bf16 ---------------------------------------------------------------------------------------

U_BF16 = 2.0 ** -8          # bfloat16's unit roundoff (8 significant bits, round to nearest)


def _bf16(a):
    return torch.from_numpy(np.asarray(a, np.float32)).to(torch.bfloat16).double()


def _is_bf16_valued(a):
    a = np.asarray(a, np.float32)
    return np.array_equal(a, torch.from_numpy(a).to(torch.bfloat16).float().numpy())


@pytest.mark.skipif(jt.flags.use_cuda, reason="CPU op (the GPU's is compile-checked only)")
@pytest.mark.parametrize("x_shape,w_shape,stride,padding", CASES)
def test_bf16_forward_and_gradients_are_the_rounded_exact_sums(x_shape, w_shape, stride, padding):
    """In bf16 every result (y, dx, dw) holds bfloat16 values, and each is the exact sum
    of the rounded operands' products, rounded: with s that sum (float64 on the rounded
    operands), S the sum of the products' magnitudes and n its number of terms, the
    float32 accumulation leaves |s_hat - s| <= gamma_n S (gamma_n = n u32 / (1 - n u32),
    any order) and the final rounding |y - s_hat| <= u_bf16 |s_hat|, so
    |y - s| <= u_bf16 |s| + (1 + u_bf16) gamma_n S.  Native (AVX-512 BF16) and emulated
    (below AVX-512: float32 primitives on rounded values) both meet it."""
    rng = np.random.default_rng(len(x_shape) * 10 + w_shape[0] + 1)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (rng.standard_normal(w_shape) * 0.1).astype(np.float32)
    conv = torch.nn.functional.conv3d if len(x_shape) == 5 else torch.nn.functional.conv2d
    jx, jw = jt.array(x), jt.array(w)
    jy = dnnl_conv.fast_conv(jx, jw, stride, padding, precision="bf16")
    g = rng.standard_normal(tuple(jy.shape)).astype(np.float32)
    dx, dw = jt.grad((jy * jt.array(g)).sum(), [jx, jw])
    got = {"y": jy.numpy(), "dx": dx.numpy(), "dw": dw.numpy()}

    def exact(xs, ws, gs):        # float64 forward and both gradients of <conv(x, w), g>
        tx, tw = xs.clone().requires_grad_(), ws.clone().requires_grad_()
        y = conv(tx, tw, stride=stride, padding=padding)
        (y * gs).sum().backward()
        return {"y": y.detach(), "dx": tx.grad, "dw": tw.grad}
    rx, rw, rg = _bf16(x), _bf16(w), _bf16(g)
    s = exact(rx, rw, rg)
    mag = exact(rx.abs(), rw.abs(), rg.abs())
    k = int(np.prod(w_shape[1:]))
    terms = {"y": k, "dx": w_shape[0] * int(np.prod(w_shape[2:])),
             "dw": x_shape[0] * int(np.prod(jy.shape[2:]))}
    where = f"bf16 conv {x_shape} * {w_shape} stride {stride} padding {padding}"
    for leaf in ("y", "dx", "dw"):
        assert _is_bf16_valued(got[leaf]), f"{where}: {leaf} holds values that are not bfloat16's"
        n = terms[leaf]
        gamma = n * 2.0 ** -24 / (1 - n * 2.0 ** -24)
        bound = U_BF16 * s[leaf].abs().numpy() + (1 + U_BF16) * gamma * mag[leaf].numpy()
        err = np.abs(got[leaf] - s[leaf].numpy())
        worst = np.unravel_index(np.argmax(err - bound), err.shape)
        assert np.all(err <= bound), (f"{where}: {leaf}{list(worst)} differs from the rounded exact sum by "
                                      f"{err[worst]:.3e} > {bound[worst]:.3e}")
    # and it is not the float32 op: some result moved off float32's value
    y32 = dnnl_conv.fast_conv(jx, jw, stride, padding).numpy()
    assert not np.array_equal(y32, got["y"])


@pytest.mark.skipif(jt.flags.use_cuda, reason="the weight cache is the CPU's (oneDNN layouts)")
def test_bf16_weights_are_cached_in_bf16_and_give_the_uncached_result():
    conv, x, _ = _frozen_conv_and_input(8, 32, 64)
    conv.precision = "bf16"
    try:
        switches.set_weight_cache(False)
        plain = conv(x).numpy()
        switches.set_weight_cache(True)
        cached = conv(x).numpy()
        np.testing.assert_array_equal(plain, cached)
        cache = conv._dnnl_weights
        assert cache.key[2] == "bf16"
        # two bytes a weight: the copy is half the float32 copy's size (channels padded to 32);
        # emulated (below AVX-512), a float32 copy of the rounded weights
        assert cache.blocked.shape[0] * 4 == 64 * 32 * 27 * (2 if dnnl_conv.native_bf16() else 4)
        conv.precision = "fp32"                   # another precision rebuilds the copy
        assert not np.array_equal(conv(x).numpy(), cached) and cache.key[2] == "fp32"
    finally:
        switches.set_weight_cache(True)


def test_gpu_only_precisions_are_refused_on_the_cpu():
    if jt.flags.use_cuda:
        pytest.skip("a GPU runs them")
    x, w = jt.ones((1, 2, 4, 4)), jt.ones((3, 2, 3, 3))
    for p in ("fp16", "tf32"):
        with pytest.raises(ValueError, match=f"{p} runs on a CUDA GPU only"):
            dnnl_conv.fast_conv(x, w, (1, 1), (1, 1), precision=p)
    with pytest.raises(ValueError, match="precision must be one of"):
        dnnl_conv.fast_conv(x, w, (1, 1), (1, 1), precision="fp8")
