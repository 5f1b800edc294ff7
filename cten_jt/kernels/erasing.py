"""The temporal erasing operator, compiled: one ``jt.code`` op per erased view.

From the original view's attention ``gamma`` [B, T] (where the model left it:
host or device), ``theta``, each video's frame count and the view's uniforms
[B, T] (``cten_common.erasing.erasing_uniforms``), the op computes the view's
keep mask (with the empty-view fallback) and the TSN frame indices [B, T, L]:
the same indices as the numpy reference ``erased_view_indices_uniform``, bit
for bit.  The frames themselves are read afterwards, only those the indices
name (``VideoEmotionData.read_views``): a sample never holds its whole video.
"""
import jittor as jt
import numpy as np

from cten_common.erasing import DEFAULT_THETA, as_frame_counts, erasing_uniforms
from . import kernel_source

VIEW_CODES = {"context": 0, "keyframe": 1}

_CPU_HEADER = kernel_source("erasing_cpu.h")
_CUDA_HEADER = kernel_source("erasing_cuda.cuh")
_ARGS = "(in0_p, in1_p, in2_p, in0_shape0, in0_shape1, out0_shape2, data[\"theta\"], (int)data[\"view\"], out0_p);"


def _float64_var(x):
    """float64 Var of x (numpy or Var); jt.array would round a float64 array to
    float32 unless told not to.  float32 -> float64 is exact."""
    if isinstance(x, jt.Var):
        return x if x.dtype == "float64" else x.float64()
    with jt.flag_scope(auto_convert_64_to_32=0):
        return jt.array(np.ascontiguousarray(x, dtype=np.float64))


def erase_view(gamma, n_frames, uniforms, snippet_len, view, theta=DEFAULT_THETA):
    """int32 numpy ``[B, T, L]``: the 0-based frame indices of one erased view.

    ``gamma`` [B, T] (numpy or Var; compared in float64, as the numpy reference
    does); ``n_frames`` [B] or an int; ``uniforms`` float64 [B, T]; ``view``
    "context" or "keyframe".
    """
    if view not in VIEW_CODES:
        raise ValueError(f"view must be one of {sorted(VIEW_CODES)}, got {view!r}")
    theta = float(theta)
    if not 0.0 <= theta <= 1.0:
        raise ValueError(f"theta must be in [0, 1], got {theta}")
    if int(snippet_len) != snippet_len or snippet_len < 1:
        raise ValueError(f"snippet_len must be a positive integer, got {snippet_len}")
    if len(gamma.shape) != 2 or gamma.shape[1] < 1:
        raise ValueError(f"gamma must be [B, T] with T >= 1, got shape {tuple(gamma.shape)}")
    B, T = gamma.shape
    counts = as_frame_counts(n_frames.numpy() if isinstance(n_frames, jt.Var) else n_frames, B)
    u = np.asarray(uniforms.numpy() if isinstance(uniforms, jt.Var) else uniforms, dtype=np.float64)
    if u.shape != (B, T) or (u.size and (u.min() < 0 or u.max() >= 1)):
        raise ValueError(f"uniforms must be [{B}, {T}] in [0, 1), got shape {u.shape}")
    indices = jt.code(
        (B, T, int(snippet_len)), "int32",
        [_float64_var(gamma), jt.array(counts.astype(np.int32)), _float64_var(u)],
        cpu_header=_CPU_HEADER, cuda_header=_CUDA_HEADER,
        cpu_src="cten_erase_view_cpu" + _ARGS, cuda_src="cten_erase_view_cuda" + _ARGS,
        data={"theta": theta, "view": VIEW_CODES[view]})
    return indices.numpy()


def erased_views(gamma, n_frames, snippet_len, rng, theta=DEFAULT_THETA):
    """Both erased views' indices from one generator, drawn as ``erased_view_indices``
    draws: ``{"context": int32 [B, T, L], "keyframe": int32 [B, T, L]}``."""
    B, T = gamma.shape
    u = erasing_uniforms(rng, B, T)
    return {view: erase_view(gamma, n_frames, u[:, code], snippet_len, view, theta)
            for view, code in VIEW_CODES.items()}
