// Fused scaled-dot-product attention, CUDA (same contract as sdpa_cpu.h).
// One block per query row (n, i): warps compute the Tk scores, warp 0 does the
// softmax (max subtraction) in shared memory, all threads form the output.
// Blocks must have a multiple of 32 threads.  Compiles with nvcc and NVRTC.
#pragma once

#define CTEN_SDPA_MAX_T 1024

__device__ inline float cten_warp_sum(float x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

__device__ inline float cten_warp_max(float x) {
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

extern "C" __global__ void cten_sdpa_forward_kernel(const float* q, const float* k, const float* v,
                                                    int N, int Tq, int Tk, int D, int E, float scale,
                                                    float* out, float* prob) {
    __shared__ float p[CTEN_SDPA_MAX_T];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    for (long row = blockIdx.x; row < (long)N * Tq; row += gridDim.x) {
        const long n = row / Tq;
        const float* qi = q + row * D;
        for (int j = warp; j < Tk; j += warps) {
            const float* kj = k + (n * Tk + j) * D;
            float s = 0.f;
            for (int d = lane; d < D; d += 32) s += qi[d] * kj[d];
            s = cten_warp_sum(s);
            if (lane == 0) p[j] = s * scale;
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
                prob[row * Tk + j] = p[j];
            }
        }
        __syncthreads();
        for (int e = threadIdx.x; e < E; e += blockDim.x) {
            float acc = 0.f;
            for (int j = 0; j < Tk; j++) acc += p[j] * v[(n * Tk + j) * E + e];
            out[row * E + e] = acc;
        }
        __syncthreads();
    }
}

// Per query row: ds_ij = p_ij (dO_i . v_j - delta_i) * scale into ds, and dq_i.
extern "C" __global__ void cten_sdpa_backward_rows_kernel(const float* k, const float* v, const float* prob,
                                                          const float* dout, int N, int Tq, int Tk, int D,
                                                          int E, float scale, float* dq, float* ds) {
    __shared__ float s[CTEN_SDPA_MAX_T];
    __shared__ float delta;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    for (long row = blockIdx.x; row < (long)N * Tq; row += gridDim.x) {
        const long n = row / Tq;
        const float* dOi = dout + row * E;
        const float* pi = prob + row * Tk;
        for (int j = warp; j < Tk; j += warps) {
            const float* vj = v + (n * Tk + j) * E;
            float acc = 0.f;
            for (int e = lane; e < E; e += 32) acc += dOi[e] * vj[e];
            acc = cten_warp_sum(acc);
            if (lane == 0) s[j] = acc;
        }
        __syncthreads();
        if (warp == 0) {
            float acc = 0.f;
            for (int j = lane; j < Tk; j += 32) acc += pi[j] * s[j];
            acc = cten_warp_sum(acc);
            if (lane == 0) delta = acc;
        }
        __syncthreads();
        for (int j = threadIdx.x; j < Tk; j += blockDim.x) {
            s[j] = pi[j] * (s[j] - delta) * scale;
            ds[row * Tk + j] = s[j];
        }
        __syncthreads();
        for (int d = threadIdx.x; d < D; d += blockDim.x) {
            float acc = 0.f;
            for (int j = 0; j < Tk; j++) acc += s[j] * k[(n * Tk + j) * D + d];
            dq[row * D + d] = acc;
        }
        __syncthreads();
    }
}

// Per key row (n, j): dk_j = sum_i ds_ij q_i, dv_j = sum_i p_ij dO_i.
extern "C" __global__ void cten_sdpa_backward_cols_kernel(const float* q, const float* prob, const float* dout,
                                                          const float* ds, int N, int Tq, int Tk, int D,
                                                          int E, float* dk, float* dv) {
    for (long col = blockIdx.x; col < (long)N * Tk; col += gridDim.x) {
        const long n = col / Tk, j = col % Tk;
        for (int d = threadIdx.x; d < D; d += blockDim.x) {
            float acc = 0.f;
            for (int i = 0; i < Tq; i++) acc += ds[(n * Tq + i) * Tk + j] * q[(n * Tq + i) * D + d];
            dk[col * D + d] = acc;
        }
        for (int e = threadIdx.x; e < E; e += blockDim.x) {
            float acc = 0.f;
            for (int i = 0; i < Tq; i++) acc += prob[(n * Tq + i) * Tk + j] * dout[(n * Tq + i) * E + e];
            dv[col * E + e] = acc;
        }
    }
}

// Host-side launches (nvcc only).
#ifndef __CUDACC_RTC__
#define CTEN_SDPA_THREADS 128
inline int cten_sdpa_blocks(long rows) { return (int)(rows < (1L << 20) ? rows : (1L << 20)); }

inline void cten_sdpa_forward_cuda(const float* q, const float* k, const float* v, int N, int Tq, int Tk,
                                   int D, int E, float scale, float* out, float* prob) {
    if ((long)N * Tq == 0) return;
    cten_sdpa_forward_kernel<<<cten_sdpa_blocks((long)N * Tq), CTEN_SDPA_THREADS>>>(
        q, k, v, N, Tq, Tk, D, E, scale, out, prob);
}

inline void cten_sdpa_backward_cuda(const float* q, const float* k, const float* v, const float* prob,
                                    const float* dout, int N, int Tq, int Tk, int D, int E, float scale,
                                    float* dq, float* dk, float* dv, float* ds) {
    if ((long)N * Tq > 0)
        cten_sdpa_backward_rows_kernel<<<cten_sdpa_blocks((long)N * Tq), CTEN_SDPA_THREADS>>>(
            k, v, prob, dout, N, Tq, Tk, D, E, scale, dq, ds);
    if ((long)N * Tk > 0)
        cten_sdpa_backward_cols_kernel<<<cten_sdpa_blocks((long)N * Tk), CTEN_SDPA_THREADS>>>(
            q, prob, dout, ds, N, Tq, Tk, D, E, dk, dv);
}
#endif
