// Fused scaled-dot-product attention, CUDA (same contract as sdpa_cpu.h).
// Forward: one block per query row (n, i): warps compute the Tk scores, warp 0
// does the softmax (max subtraction) in shared memory, all threads form the
// output.  Backward: one kernel per gradient (dq per query row, dk and dv per
// key row), each op writing a single output.  Blocks must have a multiple of
// 32 threads; every kernel loops over any grid.  Compiles with nvcc and NVRTC.
// Tq and Tk are at most CTEN_SDPA_MAX_T (their rows live in shared memory).
// `low` = 1: the bfloat16 variant of sdpa_cpu.h (operands and results of the products
// rounded, float32 accumulation, the softmax in float32).
#pragma once
#include "rounding.h"

#define CTEN_SDPA_MAX_T 1024

__device__ inline float cten_warp_sum(float x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

__device__ inline float cten_warp_max(float x) {
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

__device__ inline float cten_low_d(float x, int low) { return low ? cten_round_bf16(x) : x; }

extern "C" __global__ void cten_sdpa_forward_kernel(const float* q, const float* k, const float* v,
                                                    int N, int Tq, int Tk, int D, int E, float scale,
                                                    float* out, float* prob, int low) {
    __shared__ float p[CTEN_SDPA_MAX_T];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    for (long row = blockIdx.x; row < (long)N * Tq; row += gridDim.x) {
        const long n = row / Tq;
        const float* qi = q + row * D;
        for (int j = warp; j < Tk; j += warps) {
            const float* kj = k + (n * Tk + j) * D;
            float s = 0.f;
            for (int d = lane; d < D; d += 32) s += cten_low_d(qi[d], low) * cten_low_d(kj[d], low);
            s = cten_warp_sum(s);
            if (lane == 0) p[j] = cten_low_d(s, low) * scale;
        }
        __syncthreads();
        if (warp == 0) {
            float mx = -3.402823466e38f;
            for (int j = lane; j < Tk; j += 32) mx = fmaxf(mx, p[j]);
            mx = cten_warp_max(mx);
            float sum = 0.f;
            for (int j = lane; j < Tk; j += 32) sum += (p[j] = expf(p[j] - mx));
            sum = cten_warp_sum(sum);
            for (int j = lane; j < Tk; j += 32) {
                p[j] = p[j] / sum;
                if (prob) prob[row * Tk + j] = p[j];
            }
        }
        __syncthreads();
        for (int e = threadIdx.x; e < E; e += blockDim.x) {
            float acc = 0.f;
            for (int j = 0; j < Tk; j++) acc += cten_low_d(p[j], low) * cten_low_d(v[(n * Tk + j) * E + e], low);
            out[row * E + e] = cten_low_d(acc, low);
        }
        __syncthreads();
    }
}

__device__ inline float cten_warp_dot(const float* a, const float* b, int n, int lane, int low = 0) {
    float s = 0.f;
    for (int i = lane; i < n; i += 32) s += cten_low_d(a[i], low) * cten_low_d(b[i], low);
    return cten_warp_sum(s);
}

// low: delta_i = sum_j p_ij round(dO_i . v_j) over the row (one warp; every lane gets it).
__device__ inline float cten_low_delta(const float* dOi, const float* v, const float* prow, long n, int Tk, int E,
                                       int lane) {
    float delta = 0.f;
    for (int j = 0; j < Tk; j++) delta += prow[j] * cten_round_bf16(cten_warp_dot(dOi, v + (n * Tk + j) * E, E, lane, 1));
    return delta;
}

// dq_i = sum_j p_ij (dO_i . v_j - dO_i . out_i) scale k_j, one block per query row.
extern "C" __global__ void cten_sdpa_backward_dq_kernel(const float* k, const float* v, const float* prob,
                                                        const float* dout, const float* out, int N, int Tq,
                                                        int Tk, int D, int E, float scale, float* dq, int low) {
    __shared__ float ds[CTEN_SDPA_MAX_T];
    __shared__ float delta;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    for (long row = blockIdx.x; row < (long)N * Tq; row += gridDim.x) {
        const long n = row / Tq;
        const float* dOi = dout + row * E;
        if (warp == 0) {
            float x = low ? cten_low_delta(dOi, v, prob + row * Tk, n, Tk, E, lane)
                          : cten_warp_dot(dOi, out + row * E, E, lane);
            if (lane == 0) delta = x;
        }
        __syncthreads();
        for (int j = warp; j < Tk; j += warps) {
            float dp = cten_low_d(cten_warp_dot(dOi, v + (n * Tk + j) * E, E, lane, low), low);
            if (lane == 0) ds[j] = cten_low_d(prob[row * Tk + j] * (dp - delta) * scale, low);
        }
        __syncthreads();
        for (int d = threadIdx.x; d < D; d += blockDim.x) {
            float acc = 0.f;
            for (int j = 0; j < Tk; j++) acc += ds[j] * cten_low_d(k[(n * Tk + j) * D + d], low);
            dq[row * D + d] = cten_low_d(acc, low);
        }
        __syncthreads();
    }
}

// dk_j = sum_i p_ij (dO_i . v_j - dO_i . out_i) scale q_i, one block per key row.
extern "C" __global__ void cten_sdpa_backward_dk_kernel(const float* q, const float* v, const float* prob,
                                                        const float* dout, const float* out, int N, int Tq,
                                                        int Tk, int D, int E, float scale, float* dk, int low) {
    __shared__ float ds[CTEN_SDPA_MAX_T];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    for (long col = blockIdx.x; col < (long)N * Tk; col += gridDim.x) {
        const long n = col / Tk, j = col % Tk;
        for (int i = warp; i < Tq; i += warps) {
            const long row = n * Tq + i;
            float dp = cten_low_d(cten_warp_dot(dout + row * E, v + col * E, E, lane, low), low);
            float delta = low ? cten_low_delta(dout + row * E, v, prob + row * Tk, n, Tk, E, lane)
                              : cten_warp_dot(dout + row * E, out + row * E, E, lane);
            if (lane == 0) ds[i] = cten_low_d(prob[row * Tk + j] * (dp - delta) * scale, low);
        }
        __syncthreads();
        for (int d = threadIdx.x; d < D; d += blockDim.x) {
            float acc = 0.f;
            for (int i = 0; i < Tq; i++) acc += ds[i] * cten_low_d(q[(n * Tq + i) * D + d], low);
            dk[col * D + d] = cten_low_d(acc, low);
        }
        __syncthreads();
    }
}

// dv_j = sum_i p_ij dO_i, one block per key row.
extern "C" __global__ void cten_sdpa_backward_dv_kernel(const float* prob, const float* dout, int N, int Tq,
                                                        int Tk, int E, float* dv, int low) {
    for (long col = blockIdx.x; col < (long)N * Tk; col += gridDim.x) {
        const long n = col / Tk, j = col % Tk;
        for (int e = threadIdx.x; e < E; e += blockDim.x) {
            float acc = 0.f;
            for (int i = 0; i < Tq; i++)
                acc += cten_low_d(prob[(n * Tq + i) * Tk + j], low) * cten_low_d(dout[(n * Tq + i) * E + e], low);
            dv[col * E + e] = cten_low_d(acc, low);
        }
    }
}

// Host-side launches (nvcc only).
#ifndef __CUDACC_RTC__
#define CTEN_SDPA_THREADS 128
inline int cten_sdpa_blocks(long rows) { return (int)(rows < (1L << 20) ? rows : (1L << 20)); }

inline void cten_sdpa_forward_cuda(const float* q, const float* k, const float* v, int N, int Tq, int Tk,
                                   int D, int E, float scale, float* out, float* prob, int low = 0) {
    if ((long)N * Tq == 0) return;
    cten_sdpa_forward_kernel<<<cten_sdpa_blocks((long)N * Tq), CTEN_SDPA_THREADS>>>(
        q, k, v, N, Tq, Tk, D, E, scale, out, prob, low);
}

inline void cten_sdpa_backward_dq_cuda(const float* k, const float* v, const float* prob, const float* dout,
                                       const float* out, int N, int Tq, int Tk, int D, int E, float scale,
                                       float* dq, int low = 0) {
    if ((long)N * Tq == 0) return;
    cten_sdpa_backward_dq_kernel<<<cten_sdpa_blocks((long)N * Tq), CTEN_SDPA_THREADS>>>(
        k, v, prob, dout, out, N, Tq, Tk, D, E, scale, dq, low);
}

inline void cten_sdpa_backward_dk_cuda(const float* q, const float* v, const float* prob, const float* dout,
                                       const float* out, int N, int Tq, int Tk, int D, int E, float scale,
                                       float* dk, int low = 0) {
    if ((long)N * Tk == 0) return;
    cten_sdpa_backward_dk_kernel<<<cten_sdpa_blocks((long)N * Tk), CTEN_SDPA_THREADS>>>(
        q, v, prob, dout, out, N, Tq, Tk, D, E, scale, dk, low);
}

inline void cten_sdpa_backward_dv_cuda(const float* prob, const float* dout, int N, int Tq, int Tk, int E,
                                       float* dv, int low = 0) {
    if ((long)N * Tk == 0) return;
    cten_sdpa_backward_dv_kernel<<<cten_sdpa_blocks((long)N * Tk), CTEN_SDPA_THREADS>>>(
        prob, dout, N, Tq, Tk, E, dv, low);
}
#endif
