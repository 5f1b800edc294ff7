// Per-channel batch mean and biased variance of a float32 NC... array,
// accumulated in double (as PyTorch's CPU BatchNorm does for float32), in two
// passes over the data and without a float64 copy of it.  out [2, C] float64.
// Also the two sums of the train-mode backward.
#pragma once
#include <cmath>

// Calls done(c, mean, biased variance) for every channel.
template <typename Done>
inline void cten_bn_stats_cpu_into(const float* x, long N, long C, long inner, Done done) {
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
        done(c, mean, sq / count);
    }
}

inline void cten_bn_stats_cpu(const float* x, long N, long C, long inner, double* out) {
    cten_bn_stats_cpu_into(x, N, C, inner, [&](long c, double mean, double var) {
        out[c] = mean;
        out[C + c] = var;
    });
}

// For the train-mode backward: per channel, sum(dy) and sum(dy * (x - mean)),
// accumulated in double (as PyTorch's CPU backward does).  out [2, C] float64.
inline void cten_bn_backward_sums_cpu(const float* dy, const float* x, const float* mean,
                                      long N, long C, long inner, double* out) {
    #pragma omp parallel for
    for (long c = 0; c < C; c++) {
        double sum = 0, dot = 0, m = mean[c];
        for (long n = 0; n < N; n++) {
            const float* g = dy + (n * C + c) * inner;
            const float* p = x + (n * C + c) * inner;
            for (long i = 0; i < inner; i++) {
                sum += g[i];
                dot += g[i] * (p[i] - m);
            }
        }
        out[c] = sum;
        out[C + c] = dot;
    }
}

// One channel's train-mode statistics from its double mean and biased variance over
// n values: out[c] the mean, out[C + c] 1/sqrt(var + eps) (computed in double),
// out[2C + c] and out[3C + c] the running mean and running variance after `updates`
// momentum updates with the unbiased variance, in float32 arithmetic as Jittor's
// elementwise ops would do them.  (Also csrc/frozen_resnet_dnnl.h's train mode.)
inline void cten_bn_finish_channel(long c, long C, double mean, double var, double n, float running_mean,
                                   float running_var, double momentum, double eps, int updates, float* out) {
    float mean32 = (float)mean, unbiased = (float)(var * (n / (n - 1)));
    float keep = (float)(1.0 - momentum), m = (float)momentum;
    volatile float rm = running_mean, rv = running_var;   // no FMA contraction
    for (int k = 0; k < updates; k++) {
        volatile float a = keep * rm, b = m * mean32;
        rm = a + b;
        volatile float c2 = keep * rv, d = m * unbiased;
        rv = c2 + d;
    }
    out[c] = mean32;
    out[C + c] = (float)(1.0 / std::sqrt(var + eps));
    out[2 * C + c] = rm;
    out[3 * C + c] = rv;
}

// A whole train-mode statistics step in one op: out [4, C] float32 (cten_bn_finish_channel),
// the statistics accumulated without a float64 copy of x.
inline void cten_bn_train_stats_cpu(const float* x, const float* running_mean, const float* running_var,
                                    long N, long C, long inner, double momentum, double eps, int updates,
                                    float* out) {
    cten_bn_stats_cpu_into(x, N, C, inner, [&](long c, double mean, double var) {
        cten_bn_finish_channel(c, C, mean, var, (double)N * inner, running_mean[c], running_var[c], momentum, eps,
                               updates, out);
    });
}
