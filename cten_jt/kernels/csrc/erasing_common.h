// CTEN temporal erasing: frame indices of one snippet of an erased view.
//
// Shared by the C++ (CPU) and CUDA kernels; the numpy reference is
// cten_common/erasing.py (erased_view_indices_uniform), whose docstring states
// the rules.  Every float64 step is rounded as numpy rounds it: products and
// sums go through mul_rn/add_rn, which neither gcc nor nvcc may contract into
// a fused multiply-add.
#pragma once

// No #include here, and none inside an #if anywhere in csrc/: Jittor's jt.code
// puts its own #defines after the last #include of a header, so an #include in
// a branch that nvcc skips would hide them (tests/kernels/test_cuda_sources.py).
#ifdef __CUDACC__
#define CTEN_HD __host__ __device__
#else
#define CTEN_HD
#endif

namespace cten_erasing {

CTEN_HD inline double mul_rn(double a, double b) {
#ifdef __CUDA_ARCH__
    return __dmul_rn(a, b);
#else
    volatile double r = a * b;
    return r;
#endif
}

CTEN_HD inline double add_rn(double a, double b) {
#ifdef __CUDA_ARCH__
    return __dadd_rn(a, b);
#else
    volatile double r = a + b;
    return r;
#endif
}

// theta*max + (1-theta)*min of one video's gamma, as min + theta*(max-min), clipped.
CTEN_HD inline double threshold(const double* gamma, int T, double theta) {
    double lo = gamma[0], hi = gamma[0];
    for (int s = 1; s < T; s++) {
        double g = gamma[s];
        lo = g < lo ? g : lo;
        hi = g > hi ? g : hi;
    }
    double thr = add_rn(lo, mul_rn(theta, add_rn(hi, -lo)));
    thr = thr < lo ? lo : thr;
    return thr > hi ? hi : thr;
}

// view 0 (context) keeps gamma < thr, view 1 (keyframe) keeps gamma > thr.
CTEN_HD inline bool keeps(double gamma, double thr, int view) {
    double g = gamma;
    return view == 0 ? g < thr : g > thr;
}

// Frames per segment (n >= T: n / T; n < T: 1, segment s is frame s) and the
// number of segments holding frames.
CTEN_HD inline int segment_length(int n, int T) { return n >= T ? n / T : 1; }
CTEN_HD inline int valid_segments(int n, int T) { return n >= T ? T : n; }

// Number of kept frames; 0 means the view keeps nothing (fallback: all frames).
CTEN_HD inline int kept_count(const double* gamma, int T, int n, double thr, int view) {
    int count = 0, valid = valid_segments(n, T);
    for (int s = 0; s < valid; s++) count += keeps(gamma[s], thr, view) ? 1 : 0;
    return count * segment_length(n, T);
}

// Frame at position i (0 <= i < kept_count) of the ascending kept-frame list.
CTEN_HD inline int kept_frame(const double* gamma, int T, int n, double thr, int view, int i) {
    int d = segment_length(n, T), k = i / d, valid = valid_segments(n, T);
    for (int s = 0; s < valid; s++) {
        if (!keeps(gamma[s], thr, view)) continue;
        if (k == 0) return s * d + i % d;
        k--;
    }
    return -1;  // unreachable for i < kept_count
}

// Frame index of item l of snippet t: the kept list loop-padded to T*L items,
// cut into T segments of D items, offset min(floor(u*(D-L+1)), D-L).
CTEN_HD inline int snippet_frame(const double* gamma, int T, int n, double theta, int view,
                                 double u, int L, int t, int l) {
    double thr = threshold(gamma, T, theta);
    int K = kept_count(gamma, T, n, thr, view);
    bool all = K == 0;
    if (all) K = n;
    int padded = K >= T * L ? K : T * L;
    int D = padded / T, m = D - L + 1;
    // u * m >= 0, so truncation is floor (and needs no math header)
    int off = (int)(u * (double)m);
    off = off > m - 1 ? m - 1 : (off < 0 ? 0 : off);
    int pos = (t * D + off + l) % K;
    return all ? pos : kept_frame(gamma, T, n, thr, view, pos);
}

}  // namespace cten_erasing
