// Fused scaled-dot-product attention, CUDA (same contract as sdpa_cpu.h).
// Forward: one block per query row (n, i): warps compute the Tk scores, warp 0
// does the softmax (max subtraction) in shared memory, all threads form the
// output.  Backward: one kernel per gradient (dq per query row, dk and dv per
// key row), each op writing a single output.  Blocks must have a multiple of
// 32 threads; every kernel loops over any grid.  Compiles with nvcc and NVRTC.
// Tq and Tk are at most CTEN_SDPA_MAX_T (their rows live in shared memory).
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
                if (prob) prob[row * Tk + j] = p[j];
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

__device__ inline float cten_warp_dot(const float* a, const float* b, int n, int lane) {
    float s = 0.f;
    for (int i = lane; i < n; i += 32) s += a[i] * b[i];
    return cten_warp_sum(s);
}

// dq_i = sum_j p_ij (dO_i . v_j - dO_i . out_i) scale k_j, one block per query row.
extern "C" __global__ void cten_sdpa_backward_dq_kernel(const float* k, const float* v, const float* prob,
                                                        const float* dout, const float* out, int N, int Tq,
                                                        int Tk, int D, int E, float scale, float* dq) {
    __shared__ float ds[CTEN_SDPA_MAX_T];
    __shared__ float delta;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    for (long row = blockIdx.x; row < (long)N * Tq; row += gridDim.x) {
        const long n = row / Tq;
        const float* dOi = dout + row * E;
        if (warp == 0) {
            float x = cten_warp_dot(dOi, out + row * E, E, lane);
            if (lane == 0) delta = x;
        }
        __syncthreads();
        for (int j = warp; j < Tk; j += warps) {
            float dp = cten_warp_dot(dOi, v + (n * Tk + j) * E, E, lane);
            if (lane == 0) ds[j] = prob[row * Tk + j] * (dp - delta) * scale;
        }
        __syncthreads();
        for (int d = threadIdx.x; d < D; d += blockDim.x) {
            float acc = 0.f;
            for (int j = 0; j < Tk; j++) acc += ds[j] * k[(n * Tk + j) * D + d];
            dq[row * D + d] = acc;
        }
        __syncthreads();
    }
}

// dk_j = sum_i p_ij (dO_i . v_j - dO_i . out_i) scale q_i, one block per key row.
extern "C" __global__ void cten_sdpa_backward_dk_kernel(const float* q, const float* v, const float* prob,
                                                        const float* dout, const float* out, int N, int Tq,
                                                        int Tk, int D, int E, float scale, float* dk) {
    __shared__ float ds[CTEN_SDPA_MAX_T];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    for (long col = blockIdx.x; col < (long)N * Tk; col += gridDim.x) {
        const long n = col / Tk, j = col % Tk;
        for (int i = warp; i < Tq; i += warps) {
            const long row = n * Tq + i;
            float dp = cten_warp_dot(dout + row * E, v + col * E, E, lane);
            float delta = cten_warp_dot(dout + row * E, out + row * E, E, lane);
            if (lane == 0) ds[i] = prob[row * Tk + j] * (dp - delta) * scale;
        }
        __syncthreads();
        for (int d = threadIdx.x; d < D; d += blockDim.x) {
            float acc = 0.f;
            for (int i = 0; i < Tq; i++) acc += ds[i] * q[(n * Tq + i) * D + d];
            dk[col * D + d] = acc;
        }
        __syncthreads();
    }
}

// dv_j = sum_i p_ij dO_i, one block per key row.
extern "C" __global__ void cten_sdpa_backward_dv_kernel(const float* prob, const float* dout, int N, int Tq,
                                                        int Tk, int E, float* dv) {
    for (long col = blockIdx.x; col < (long)N * Tk; col += gridDim.x) {
        const long n = col / Tk, j = col % Tk;
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

inline void cten_sdpa_backward_dq_cuda(const float* k, const float* v, const float* prob, const float* dout,
                                       const float* out, int N, int Tq, int Tk, int D, int E, float scale,
                                       float* dq) {
    if ((long)N * Tq == 0) return;
    cten_sdpa_backward_dq_kernel<<<cten_sdpa_blocks((long)N * Tq), CTEN_SDPA_THREADS>>>(
        k, v, prob, dout, out, N, Tq, Tk, D, E, scale, dq);
}

inline void cten_sdpa_backward_dk_cuda(const float* q, const float* v, const float* prob, const float* dout,
                                       const float* out, int N, int Tq, int Tk, int D, int E, float scale,
                                       float* dk) {
    if ((long)N * Tk == 0) return;
    cten_sdpa_backward_dk_kernel<<<cten_sdpa_blocks((long)N * Tk), CTEN_SDPA_THREADS>>>(
        q, v, prob, dout, out, N, Tq, Tk, D, E, scale, dk);
}

inline void cten_sdpa_backward_dv_cuda(const float* prob, const float* dout, int N, int Tq, int Tk, int E,
                                       float* dv) {
    if ((long)N * Tk == 0) return;
    cten_sdpa_backward_dv_kernel<<<cten_sdpa_blocks((long)N * Tk), CTEN_SDPA_THREADS>>>(
        prob, dout, N, Tq, Tk, E, dv);
}
#endif
