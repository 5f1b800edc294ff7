// CTEN temporal erasing, CUDA: one block per snippet (b, t) computes its L frame
// indices into shared memory, then all threads gather the snippet's pixels.
// Compiles with nvcc and with NVRTC (no standard headers needed).
#pragma once
#include "erasing_common.h"

#define CTEN_ERASE_MAX_L 1024

template <typename Tin>
__global__ void cten_erase_view_kernel(const double* gamma, const int* n_frames, const double* u,
                                       const Tin* clips, int B, int T, int N, int C, int H, int W,
                                       int L, double theta, int view, int* idx, float* out) {
    __shared__ int frames[CTEN_ERASE_MAX_L];
    const long hw = (long)H * W, per = (long)C * L * hw;
    for (long bt = blockIdx.x; bt < (long)B * T; bt += gridDim.x) {
        int b = (int)(bt / T), t = (int)(bt % T);
        for (int l = threadIdx.x; l < L; l += blockDim.x) {
            frames[l] = cten_erasing::snippet_frame(gamma + (long)b * T, T, n_frames[b], theta, view,
                                                    u[bt], L, t, l);
            idx[bt * L + l] = frames[l];
        }
        __syncthreads();
        float* dst = out + bt * per;
        for (long e = threadIdx.x; e < per; e += blockDim.x) {
            int c = (int)(e / (L * hw)), l = (int)((e / hw) % L);
            long p = e % hw;
            dst[e] = (float)clips[(((long)b * N + frames[l]) * C + c) * hw + p];
        }
        __syncthreads();
    }
}

#ifndef __CUDACC_RTC__
#define CTEN_ERASE_THREADS 256
template <typename Tin>
inline void cten_erase_view_cuda(const double* gamma, const int* n_frames, const double* u, const Tin* clips,
                                 int B, int T, int N, int C, int H, int W, int L, double theta, int view,
                                 int* idx, float* out) {
    long blocks = (long)B * T;
    if (blocks == 0) return;
    cten_erase_view_kernel<Tin><<<(int)(blocks < (1L << 20) ? blocks : (1L << 20)), CTEN_ERASE_THREADS>>>(
        gamma, n_frames, u, clips, B, T, N, C, H, W, L, theta, view, idx, out);
}
#endif
