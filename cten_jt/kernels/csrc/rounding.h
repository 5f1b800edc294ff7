// Rounding a float to the nearest bfloat16 or float16 value, kept as a float:
// the values a low-precision operand holds (cten_jt.precision).  Round to
// nearest, ties to even, as PyTorch's and oneDNN's conversions do; NaN stays a
// (quiet) NaN, infinities stay infinite, and a value past the largest finite
// bfloat16 rounds to infinity.
//
// No #include: CuPy compiles the CUDA kernels that include this header with NVRTC,
// which has no C++ standard headers (<cstdint> stopped that compile on the H200), and
// Jittor places its jit #defines after an op header's last #include.  So the bits are
// an unsigned int (32 bits on every target, checked below) and the host copies them
// with the compiler's builtin memcpy.
#pragma once
static_assert(sizeof(unsigned int) == 4, "cten_round_*: unsigned int must be 32 bits");

#ifdef __CUDACC__
#define CTEN_ROUND_HD __host__ __device__ __forceinline__
#else
#define CTEN_ROUND_HD inline
#endif

CTEN_ROUND_HD float cten_round_bf16(float x) {
    unsigned int u;
#ifdef __CUDA_ARCH__
    u = __float_as_uint(x);
#else
    __builtin_memcpy(&u, &x, 4);
#endif
    if ((u & 0x7f800000u) == 0x7f800000u) {
        if (u & 0x007fffffu) u |= 0x00400000u;          // NaN: quiet, payload's high bits kept
    } else {
        u += 0x7fffu + ((u >> 16) & 1u);               // ties to even on bit 16
    }
    u &= 0xffff0000u;
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float y;
    __builtin_memcpy(&y, &u, 4);
    return y;
#endif
}

CTEN_ROUND_HD void cten_round_bf16_n(float* p, long long n) {
    for (long long i = 0; i < n; i++) p[i] = cten_round_bf16(p[i]);
}
