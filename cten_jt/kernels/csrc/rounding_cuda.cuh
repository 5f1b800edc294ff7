// The rounding op on the GPU (cten_jt/kernels/rounding.py): every element of a
// float32 array to its nearest bfloat16 (prec 1, rounding.h) or float16 (prec
// 2, the CUDA intrinsic, ties to even) value, kept as float32.
#pragma once
#include "rounding.h"
#include <cuda_fp16.h>
#include <cuda_runtime.h>

__global__ void cten_round_kernel(const float* in, float* out, long long n, int prec) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        out[i] = prec == 1 ? cten_round_bf16(in[i]) : __half2float(__float2half_rn(in[i]));
}

inline void cten_round_cuda(const float* in, float* out, long long n, int prec) {
    long long blocks = (n + 255) / 256;
    if (blocks > 65535) blocks = 65535;
    if (blocks < 1) blocks = 1;
    cten_round_kernel<<<(int)blocks, 256>>>(in, out, n, prec);
}
