// CTEN temporal erasing, CUDA: one thread per frame index (b, t, l) of an erased view.
// Compiles with nvcc and with NVRTC (no standard headers needed).
#pragma once
#include "erasing_common.h"

__global__ void cten_erase_view_kernel(const double* gamma, const int* n_frames, const double* u,
                                       int B, int T, int L, double theta, int view, int* idx) {
    const long total = (long)B * T * L;
    for (long e = (long)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (long)gridDim.x * blockDim.x) {
        long bt = e / L;
        int b = (int)(bt / T), t = (int)(bt % T), l = (int)(e % L);
        idx[e] = cten_erasing::snippet_frame(gamma + (long)b * T, T, n_frames[b], theta, view, u[bt], L, t, l);
    }
}

#ifndef __CUDACC_RTC__
#define CTEN_ERASE_THREADS 256
inline void cten_erase_view_cuda(const double* gamma, const int* n_frames, const double* u,
                                 int B, int T, int L, double theta, int view, int* idx) {
    long total = (long)B * T * L;
    if (total == 0) return;
    long blocks = (total + CTEN_ERASE_THREADS - 1) / CTEN_ERASE_THREADS;
    cten_erase_view_kernel<<<(int)(blocks < (1L << 20) ? blocks : (1L << 20)), CTEN_ERASE_THREADS>>>(
        gamma, n_frames, u, B, T, L, theta, view, idx);
}
#endif
