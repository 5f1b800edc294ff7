"""The temporal erasing operator, compiled: one ``jt.code`` op per erased view.

From the original view's attention ``gamma`` [B, T], ``theta``, each video's
frame count and the view's uniforms [B, T] (``cten_common.erasing.erasing_uniforms``),
the op computes the view's keep mask (with the empty-view fallback), the TSN
frame indices [B, T, L] and gathers the snippets from the clips already in
memory / on the device [B, N, 3, S, S] into the view [B, T, 3, L, S, S]: the
same indices as the numpy reference ``erased_view_indices_uniform``, bit for
bit, and the same pixels.
"""
import jittor as jt
import numpy as np

from cten_common.erasing import DEFAULT_THETA, as_frame_counts, erasing_uniforms
from . import kernel_source

VIEW_CODES = {"context": 0, "keyframe": 1}
MAX_SNIPPET = 1024          # CTEN_ERASE_MAX_L in erasing_cuda.cuh

_CPU_HEADER = kernel_source("erasing_cpu.h")
_CUDA_HEADER = kernel_source("erasing_cuda.cuh")
_ARGS = ("(in0_p, in1_p, in2_p, in3_p, in3_shape0, in0_shape1, in3_shape1, in3_shape2, in3_shape3, "
         "in3_shape4, out0_shape2, data[\"theta\"], (int)data[\"view\"], out0_p, out1_p);")


def _float64_var(x):
    """float64 Var of x (numpy or Var); jt.array would round a float64 array to
    float32 unless told not to.  float32 -> float64 is exact."""
    if isinstance(x, jt.Var):
        return x if x.dtype == "float64" else x.float64()
    with jt.flag_scope(auto_convert_64_to_32=0):
        return jt.array(np.ascontiguousarray(x, dtype=np.float64))


def erase_view(gamma, n_frames, uniforms, clips, snippet_len, view, theta=DEFAULT_THETA):
    """``(indices int32 [B, T, L], visual float32 [B, T, C, L, H, W])`` of one erased view.

    ``gamma`` [B, T] (compared in float64, as the numpy reference does); ``n_frames`` [B] (each at most the clips' N); ``uniforms``
    float64 [B, T]; ``clips`` [B, N, C, H, W] (any numeric dtype, numpy or Var,
    zero-padded past each video's frames); ``view`` "context" or "keyframe".
    """
    if view not in VIEW_CODES:
        raise ValueError(f"view must be one of {sorted(VIEW_CODES)}, got {view!r}")
    theta = float(theta)
    if not 0.0 <= theta <= 1.0:
        raise ValueError(f"theta must be in [0, 1], got {theta}")
    if not 1 <= int(snippet_len) <= MAX_SNIPPET:
        raise ValueError(f"snippet_len must be in [1, {MAX_SNIPPET}], got {snippet_len}")
    if len(gamma.shape) != 2 or gamma.shape[1] < 1:
        raise ValueError(f"gamma must be [B, T] with T >= 1, got shape {tuple(gamma.shape)}")
    B, T = gamma.shape
    if len(clips.shape) != 5 or clips.shape[0] != B:
        raise ValueError(f"clips must be [B={B}, N, C, H, W], got shape {tuple(clips.shape)}")
    counts = as_frame_counts(n_frames.numpy() if isinstance(n_frames, jt.Var) else n_frames, B)
    if counts.max() > clips.shape[1]:
        raise ValueError(f"n_frames {counts.max()} exceeds the clips' {clips.shape[1]} frames")
    u = np.asarray(uniforms.numpy() if isinstance(uniforms, jt.Var) else uniforms, dtype=np.float64)
    if u.shape != (B, T) or (u.size and (u.min() < 0 or u.max() >= 1)):
        raise ValueError(f"uniforms must be [{B}, {T}] in [0, 1), got shape {u.shape}")
    clips = clips if isinstance(clips, jt.Var) else jt.array(np.ascontiguousarray(clips))
    _, N, C, H, W = clips.shape
    L = int(snippet_len)
    indices, visual = jt.code(
        [(B, T, L), (B, T, C, L, H, W)], ["int32", "float32"],
        [_float64_var(gamma), jt.array(counts.astype(np.int32)), _float64_var(u), clips],
        cpu_header=_CPU_HEADER, cuda_header=_CUDA_HEADER,
        cpu_src="cten_erase_view_cpu<in3_type>" + _ARGS,
        cuda_src="cten_erase_view_cuda<in3_type>" + _ARGS,
        data={"theta": theta, "view": VIEW_CODES[view]})
    # Run it now, while both outputs are referenced: Jittor's code op writes
    # through its own output pointers, so an output the caller drops before the
    # op runs (predict keeps only the view) would be written after being freed.
    jt.sync([indices, visual])
    return indices.stop_grad(), visual.stop_grad()


def erased_views(gamma, n_frames, clips, snippet_len, rng, theta=DEFAULT_THETA):
    """Both erased views from one generator, drawn as ``erased_view_indices`` draws:
    ``{"context": (indices, visual), "keyframe": (indices, visual)}``."""
    B, T = gamma.shape
    u = erasing_uniforms(rng, B, T)
    return {view: erase_view(gamma, n_frames, u[:, code], clips, snippet_len, view, theta)
            for view, code in VIEW_CODES.items()}
