"""The CUDA kernels run on a GPU, compiled by NVRTC through CuPy, against the
numpy references: attention forward and gradients (float64 numpy, 1e-5 of the
output scale) and the erasing operator (indices and pixels exactly).

Independent of Jittor's own CUDA build (which tests/kernels/test_*_kernel.py
exercise when Jittor runs on CUDA).  Skipped without CuPy or a GPU; runs on a
lent GPU machine from scripts/gpu_check.sh."""
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
CSRC = os.path.join(ROOT, "cten_jt", "kernels", "csrc")

cp = pytest.importorskip("cupy")
try:
    if cp.cuda.runtime.getDeviceCount() < 1:
        raise RuntimeError("no device")
except Exception as exc:          # noqa: BLE001  (CUDA runtime errors vary)
    pytest.skip(f"no usable GPU: {exc}", allow_module_level=True)

from cten_common.erasing import erased_view_indices_uniform, erasing_uniforms  # noqa: E402

THREADS = 128       # a multiple of 32, as the kernels require; they loop over any grid


def _module(name, expressions=()):
    with open(os.path.join(CSRC, name)) as f:
        code = f.read()
    return cp.RawModule(code=code, options=("-std=c++17", f"-I{CSRC}"), name_expressions=list(expressions))


def _reference(q, k, v, w, scale):
    s = np.einsum("nid,njd->nij", q, k) * scale
    s -= s.max(-1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(-1, keepdims=True)
    out = np.einsum("nij,nje->nie", p, v)
    dp = np.einsum("nie,nje->nij", w, v)                   # loss = sum(out * w)
    ds = p * (dp - (p * dp).sum(-1, keepdims=True)) * scale
    return {"out": out, "dq": np.einsum("nij,njd->nid", ds, k), "dk": np.einsum("nij,nid->njd", ds, q),
            "dv": np.einsum("nij,nie->nje", p, w)}


@pytest.mark.parametrize("N,Tq,Tk,D,E", [(16, 16, 16, 256, 256), (2, 16, 16, 2048, 2048), (3, 64, 64, 33, 17),
                                          (4, 1, 1, 8, 8), (2, 5, 9, 12, 20), (2048, 16, 16, 256, 256)])
def test_attention_kernels(N, Tq, Tk, D, E):
    mod = _module("sdpa_cuda.cuh")
    rng = np.random.default_rng(N * 7 + Tq)
    q, k = rng.standard_normal((N, Tq, D)), rng.standard_normal((N, Tk, D))
    v, w = rng.standard_normal((N, Tk, E)), rng.standard_normal((N, Tq, E))
    scale = D ** -0.5
    ref = _reference(q, k, v, w, scale)
    g = {name: cp.asarray(x, dtype=cp.float32) for name, x in (("q", q), ("k", k), ("v", v), ("w", w))}
    out, prob = cp.empty((N, Tq, E), cp.float32), cp.empty((N, Tq, Tk), cp.float32)
    ints = [np.int32(x) for x in (N, Tq, Tk, D, E)]
    mod.get_function("cten_sdpa_forward_kernel")(
        (N * Tq,), (THREADS,), (g["q"], g["k"], g["v"], *ints, np.float32(scale), out, prob))
    dq, dk, dv = (cp.empty(shape, cp.float32) for shape in ((N, Tq, D), (N, Tk, D), (N, Tk, E)))
    mod.get_function("cten_sdpa_backward_dq_kernel")(
        (N * Tq,), (THREADS,), (g["k"], g["v"], prob, g["w"], out, *ints, np.float32(scale), dq))
    mod.get_function("cten_sdpa_backward_dk_kernel")(
        (min(N * Tk, 4096),), (THREADS,), (g["q"], g["v"], prob, g["w"], out, *ints, np.float32(scale), dk))
    mod.get_function("cten_sdpa_backward_dv_kernel")(
        (min(N * Tk, 4096),), (THREADS,), (prob, g["w"], *ints[:3], ints[4], dv))
    got = {"out": out, "dq": dq, "dk": dk, "dv": dv}
    for name, r in ref.items():
        diff = float(np.abs(cp.asnumpy(got[name]) - r).max())
        bound = 1e-5 * float(np.abs(r).max())
        assert diff <= bound, f"{name} (N={N} Tq={Tq} Tk={Tk} D={D} E={E}): {diff:.3e} > {bound:.3e}"


def test_erasing_kernel():
    name = "cten_erase_view_kernel"
    mod = _module("erasing_cuda.cuh", [name])
    kernel = mod.get_function(name)
    rng = np.random.default_rng(0)
    for trial in range(30):
        B, T, L = int(rng.integers(1, 5)), int(rng.integers(1, 12)), int(rng.integers(1, 9))
        n_frames = rng.integers(1, 90, size=B) if trial % 3 else rng.integers(1, 20000, size=B)
        gamma = rng.random((B, T)).astype(np.float32)
        if trial % 5 == 0:
            gamma = (np.round(gamma * 3) / 3).astype(np.float32)     # ties at the threshold
        if trial % 7 == 0:
            gamma[:] = 0.5                                           # all equal: fallback
        theta = float(rng.choice([0.0, 0.3, 0.7, 1.0]))
        u = erasing_uniforms(rng, B, T)
        ref = erased_view_indices_uniform(gamma, n_frames, L, u, theta)
        for code, view in enumerate(("context", "keyframe")):
            idx = cp.empty((B, T, L), cp.int32)
            kernel((max(1, (B * T * L + 63) // 64),), (64,),
                   (cp.asarray(gamma.astype(np.float64)), cp.asarray(n_frames.astype(np.int32)),
                    cp.asarray(np.ascontiguousarray(u[:, code])), np.int32(B), np.int32(T), np.int32(L),
                    np.float64(theta), np.int32(code), idx))
            where = f"{view} trial {trial}: n_frames={n_frames.tolist()} T={T} L={L} theta={theta}"
            np.testing.assert_array_equal(cp.asnumpy(idx), ref[view], err_msg=where)
