// Per-channel batch mean and biased variance of a float32 NC... array,
// accumulated in double (as PyTorch's CPU BatchNorm does for float32), in two
// passes over the data and without a float64 copy of it.  out [2, C] float64.
#pragma once

inline void cten_bn_stats_cpu(const float* x, long N, long C, long inner, double* out) {
    #pragma omp parallel for
    for (long c = 0; c < C; c++) {
        double sum = 0;
        for (long n = 0; n < N; n++) {
            const float* p = x + (n * C + c) * inner;
            for (long i = 0; i < inner; i++) sum += p[i];
        }
        double count = (double)N * inner, mean = sum / count, sq = 0;
        for (long n = 0; n < N; n++) {
            const float* p = x + (n * C + c) * inner;
            for (long i = 0; i < inner; i++) {
                double d = p[i] - mean;
                sq += d * d;
            }
        }
        out[c] = mean;
        out[C + c] = sq / count;
    }
}
