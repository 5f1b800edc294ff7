"""The fused attention kernel against Jittor's composed operators (and float64
numpy where the composed ops are not a fair oracle), forward and gradients.

Tolerance: 1e-5 of the output's (gradient's) max abs value, fp32."""
import jittor as jt
import numpy as np
import pytest

from cten_jt import switches
from cten_jt.kernels.attention import MAX_KEYS, composed_attention, fused_attention
from cten_jt.models import attention as model_attention
from helpers import assert_close

RTOL = 1e-5


def _inputs(rng, lead, tq, tk, d, e, spread=1.0):
    q = rng.standard_normal(lead + (tq, d)).astype(np.float32) * spread
    k = rng.standard_normal(lead + (tk, d)).astype(np.float32) * spread
    v = rng.standard_normal(lead + (tk, e)).astype(np.float32)
    return q, k, v


def _forward_and_grads(fn, q, k, v, scale, w):
    qv, kv, vv = jt.array(q), jt.array(k), jt.array(v)
    out = fn(qv, kv, vv, scale)
    grads = jt.grad((out * jt.array(w)).sum(), [qv, kv, vv])
    return {"out": out.numpy(), "dq": grads[0].numpy(), "dk": grads[1].numpy(), "dv": grads[2].numpy()}


def _reference_numpy(q, k, v, scale):
    s = np.einsum("...id,...jd->...ij", q.astype(np.float64), k.astype(np.float64)) * scale
    s -= s.max(-1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(-1, keepdims=True)
    return np.einsum("...ij,...je->...ie", p, v.astype(np.float64))


SHAPES = [            # lead dims, Tq, Tk, D, E
    ((2, 8), 16, 16, 256, 256),     # CTEN's multi-head attention (8 heads of 256)
    ((3,), 16, 16, 256, 256),       # non-local block, inner 256
    ((2,), 16, 16, 2048, 2048),     # head dim 2048
    ((4,), 64, 64, 32, 16),         # the longest sequence CTEN uses
    ((5,), 1, 1, 7, 3),             # T = 1
    ((2, 3), 5, 9, 12, 20),         # Tq != Tk, D != E
    ((1,), 33, 33, 65, 65),         # not multiples of a warp
]


@pytest.mark.parametrize("lead,tq,tk,d,e", SHAPES)
def test_fused_equals_composed_forward_and_backward(lead, tq, tk, d, e):
    rng = np.random.default_rng(abs(hash((lead, tq, tk, d, e))) % 2**32)
    q, k, v = _inputs(rng, lead, tq, tk, d, e)
    w = rng.standard_normal(lead + (tq, e)).astype(np.float32)
    scale = d ** -0.5
    fused = _forward_and_grads(fused_attention, q, k, v, scale, w)
    composed = _forward_and_grads(composed_attention, q, k, v, scale, w)
    assert_close(composed, fused, f"attention {lead} Tq={tq} Tk={tk} D={d} E={e}", rtol_scale=RTOL)
    assert_close(_reference_numpy(q, k, v, scale), fused["out"], "out vs float64", rtol_scale=RTOL)


def test_random_shapes():
    rng = np.random.default_rng(2024)
    for _ in range(6):
        lead = tuple(int(x) for x in rng.integers(1, 5, size=rng.integers(1, 3)))
        tq, tk = (int(x) for x in rng.integers(1, 40, size=2))
        d, e = (int(x) for x in rng.integers(1, 300, size=2))
        q, k, v = _inputs(rng, lead, tq, tk, d, e)
        w = rng.standard_normal(lead + (tq, e)).astype(np.float32)
        scale = float(rng.uniform(0.01, 1.0))
        assert_close(_forward_and_grads(composed_attention, q, k, v, scale, w),
                     _forward_and_grads(fused_attention, q, k, v, scale, w),
                     f"random {lead} {tq} {tk} {d} {e}", rtol_scale=RTOL)


def test_numerically_stable_for_large_scores():
    # scores around 1e4: exp overflows without the max subtraction
    rng = np.random.default_rng(1)
    q, k, v = _inputs(rng, (2,), 8, 8, 16, 4, spread=30.0)
    out = fused_attention(jt.array(q), jt.array(k), jt.array(v), 1.0).numpy()
    assert np.isfinite(out).all()
    assert_close(_reference_numpy(q, k, v, 1.0), out, "large scores", rtol_scale=RTOL)


def test_equal_scores_average_the_values():
    rng = np.random.default_rng(2)
    v = rng.standard_normal((3, 6, 5)).astype(np.float32)
    q = np.zeros((3, 4, 8), np.float32)
    k = rng.standard_normal((3, 6, 8)).astype(np.float32)
    out = fused_attention(jt.array(q), jt.array(k), jt.array(v), 0.5).numpy()
    assert_close(np.broadcast_to(v.mean(1, keepdims=True), out.shape), out, "uniform weights", atol=1e-6)


def test_bad_shapes_are_refused():
    a = jt.zeros((2, 4, 8))
    with pytest.raises(ValueError, match="feature sizes"):
        fused_attention(a, jt.zeros((2, 4, 7)), a, 1.0)
    with pytest.raises(ValueError, match="lengths differ"):
        fused_attention(a, a, jt.zeros((2, 5, 8)), 1.0)
    with pytest.raises(ValueError, match="leading dims"):
        fused_attention(a, jt.zeros((3, 4, 8)), jt.zeros((3, 4, 8)), 1.0)
    with pytest.raises(TypeError, match="float32"):
        fused_attention(a.float64(), a.float64(), a.float64(), 1.0)
    big = jt.zeros((1, MAX_KEYS + 1, 2))
    with pytest.raises(ValueError, match="at most"):
        fused_attention(jt.zeros((1, 1, 2)), big, big, 1.0)


def test_switch_selects_the_implementation(monkeypatch):
    calls = []
    monkeypatch.setattr(model_attention, "fused_attention", lambda *a: calls.append("fused") or a[2])
    monkeypatch.setattr(model_attention, "composed_attention", lambda *a: calls.append("composed") or a[2])
    x = jt.zeros((1, 2, 4))
    assert switches.kernels_mode() == "fused"          # the default
    model_attention.scaled_dot_product_attention(x, x, x, 1.0)
    with switches.kernels("composed"):
        model_attention.scaled_dot_product_attention(x, x, x, 1.0)
    model_attention.scaled_dot_product_attention(x, x, x, 1.0)
    assert calls == ["fused", "composed", "fused"]
    with pytest.raises(ValueError, match="fused"):
        switches.set_kernels("fast")


def test_model_outputs_and_gradients_fused_vs_composed():
    from cten_jt.models.cten import CTEN
    from helpers import TINY_AV, random_inputs
    model = CTEN(init_seed=0, **TINY_AV)
    model.eval()
    visual, audio = random_inputs(TINY_AV, 2)
    params = [p for p in model.parameters() if not p.is_stop_grad()]
    results = {}
    for mode in ("composed", "fused"):
        with switches.kernels(mode):
            logits, gamma = model(jt.array(visual), jt.array(audio))
            grads = jt.grad(logits.sum() + gamma.sum(), params)
            results[mode] = {"logits": logits.numpy(), "gamma": gamma.numpy(),
                             "grads": [g.numpy() for g in grads]}
    assert_close(results["composed"]["logits"], results["fused"]["logits"], "logits", rtol_scale=1e-4)
    assert_close(results["composed"]["gamma"], results["fused"]["gamma"], "gamma", rtol_scale=1e-4)
    scale = max(np.abs(g).max() for g in results["composed"]["grads"])
    assert_close(results["composed"]["grads"], results["fused"]["grads"], "grads", atol=1e-4 * scale)


def test_model_attention_falls_back_for_what_the_kernel_does_not_take(monkeypatch):
    calls = []
    monkeypatch.setattr(model_attention, "fused_attention", lambda *a: calls.append("fused") or a[2])
    monkeypatch.setattr(model_attention, "composed_attention", lambda *a: calls.append("composed") or a[2])
    x64 = jt.zeros((1, 2, 4)).float64()
    model_attention.scaled_dot_product_attention(x64, x64, x64, 1.0)
    long_keys = jt.zeros((1, MAX_KEYS + 1, 2))
    model_attention.scaled_dot_product_attention(jt.zeros((1, 1, 2)), long_keys, long_keys, 1.0)
    assert calls == ["composed", "composed"]


def test_without_a_graph_only_the_output_is_written():
    # under no_grad the forward op has a single output: nothing keeps the
    # probabilities alive there, and Jittor's code op would write a freed output
    rng = np.random.default_rng(3)
    q, k, v = _inputs(rng, (4,), 6, 6, 16, 8)
    ref = composed_attention(jt.array(q), jt.array(k), jt.array(v), 0.25).numpy()
    with jt.no_grad():
        outs = [fused_attention(jt.array(q), jt.array(k), jt.array(v), 0.25) for _ in range(20)]
    for out in outs:
        assert_close(ref, out.numpy(), "no_grad forward", rtol_scale=RTOL)


def _exact_and_grads(q, k, v, scale, w):
    """The float64 attention of the unrounded inputs and the gradients of (out * w).sum()."""
    q, k, v, w = (x.astype(np.float64) for x in (q, k, v, w))
    s = np.einsum("...id,...jd->...ij", q, k) * scale
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    dp = np.einsum("...ie,...je->...ij", w, v)
    ds = p * (dp - (p * dp).sum(-1, keepdims=True)) * scale
    return {"out": np.einsum("...ij,...je->...ie", p, v), "dq": np.einsum("...ij,...jd->...id", ds, k),
            "dk": np.einsum("...ij,...id->...jd", ds, q), "dv": np.einsum("...ij,...ie->...je", p, w)}


@pytest.mark.parametrize("lead,tq,tk,d,e", [SHAPES[0], SHAPES[2], SHAPES[5], SHAPES[6]])
def test_bf16_fused_computes_the_low_precision_attention(lead, tq, tk, d, e):
    """bf16: the fused kernel computes ``low_precision_attention`` (both products' operands
    and results rounded to bfloat16, their gradients too, as ``round_to``'s are): every
    output and gradient holds bfloat16 values, and each lies within 4 x the composed
    low-precision path's own distance from the float64 attention (the bf16 tests'
    factor, tests/test_precision.py; the two round the same values and differ only in
    their sums' order and width)."""
    rng = np.random.default_rng(abs(hash((lead, tq, tk, d, e, "bf16"))) % 2**32)
    q, k, v = _inputs(rng, lead, tq, tk, d, e)
    w = rng.standard_normal(lead + (tq, e)).astype(np.float32)
    scale = d ** -0.5
    fused = _forward_and_grads(lambda *a: fused_attention(*a, precision="bf16"), q, k, v, scale, w)
    composed = _forward_and_grads(lambda *a: model_attention.low_precision_attention(*a, "bf16"), q, k, v, scale, w)
    exact = _exact_and_grads(q, k, v, scale, w)
    where = f"bf16 attention {lead} Tq={tq} Tk={tk} D={d} E={e}"
    for name in ("out", "dq", "dk", "dv"):
        got = fused[name]
        assert not np.any(got.view(np.uint32) & 0xFFFF), f"{where}: {name} holds values that are not bfloat16"
        floor = np.abs(composed[name] - exact[name]).max()
        dist = np.abs(got - exact[name]).max()
        assert floor > 0, f"{where}: {name}: the composed path is exact (not rounded?)"
        assert dist <= 4 * floor, (f"{where}: {name} is {dist:.3e} from float64, more than 4 x the composed "
                                   f"low-precision path's {floor:.3e}")


def test_the_model_takes_the_fused_kernel_in_bf16(monkeypatch):
    calls = []
    real = model_attention.fused_attention
    monkeypatch.setattr(model_attention, "fused_attention", lambda *a, **k: calls.append(a[4:]) or real(*a, **k))
    rng = np.random.default_rng(0)
    q, k, v = (jt.array(x) for x in _inputs(rng, (2,), 4, 4, 8, 8))
    model_attention.scaled_dot_product_attention(q, k, v, 0.5, "bf16").sync()
    model_attention.scaled_dot_product_attention(q, k, v, 0.5).sync()
    assert calls == [("bf16",), ()], calls
