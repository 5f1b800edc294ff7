// Fused scaled-dot-product attention, CPU: out = softmax(q k^T * scale) v per
// batch item n, one softmax pass with max subtraction, accumulated in double.
//
// q [N,Tq,D], k [N,Tk,D], v [N,Tk,E] float32, contiguous.  The forward writes
// out [N,Tq,E] and, when prob is not null, the probabilities [N,Tq,Tk] (what
// the backward needs).  The backward is three functions with one output each
// (dq, dk, dv): a Jittor op must not write an output that may already be freed.
// With dp_ij = dO_i . v_j and delta_i = sum_j p_ij dp_ij (= dO_i . out_i in fp32):
//   ds_ij = p_ij (dp_ij - delta_i) scale,  dq_i = sum_j ds_ij k_j,
//   dk_j = sum_i ds_ij q_i,  dv_j = sum_i p_ij dO_i.
//
// `low` = 1: bfloat16 as cten_jt.models.attention.low_precision_attention computes it
// (autocast's matmuls, and round_to's rounded gradients): the products' operands
// (q, k, v, the probabilities; in the backward dO and ds) are rounded to bfloat16
// and so are their results (the scores before the scaling and softmax, the output,
// every gradient); the sums of exact products accumulate in double, the softmax is
// float32's (double here).  prob keeps the unrounded probabilities.
#pragma once
#include <math.h>
#include <vector>
#include "rounding.h"

// x rounded to bfloat16 where `low`, else x (float32)
inline float cten_low(float x, int low) { return low ? cten_round_bf16(x) : x; }

inline double cten_dot(const float* a, const float* b, int n, int low = 0) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)cten_low(a[i], low) * cten_low(b[i], low);
    return s;
}

inline void cten_sdpa_forward_cpu(const float* q, const float* k, const float* v, int N, int Tq,
                                  int Tk, int D, int E, float scale, float* out, float* prob, int low = 0) {
    std::vector<double> p(Tk), acc(E);
    for (long row = 0; row < (long)N * Tq; row++) {
        long n = row / Tq;
        double mx = -HUGE_VAL;
        for (int j = 0; j < Tk; j++) {
            double s = cten_dot(q + row * D, k + (n * Tk + j) * D, D, low);
            p[j] = (low ? (double)cten_round_bf16((float)s) : s) * scale;
            mx = p[j] > mx ? p[j] : mx;
        }
        double sum = 0;
        for (int j = 0; j < Tk; j++) sum += (p[j] = exp(p[j] - mx));
        for (int e = 0; e < E; e++) acc[e] = 0;
        for (int j = 0; j < Tk; j++) {
            p[j] /= sum;
            if (prob) prob[row * Tk + j] = (float)p[j];
            double pj = low ? (double)cten_round_bf16((float)p[j]) : p[j];
            const float* vj = v + (n * Tk + j) * E;
            for (int e = 0; e < E; e++) acc[e] += pj * cten_low(vj[e], low);
        }
        for (int e = 0; e < E; e++) out[row * E + e] = cten_low((float)acc[e], low);
    }
}

// ds_ij of one query row (the backward's common part), into ds[0..Tk): p_ij (dp_ij - delta_i)
// scale, with dp_ij = dO_i . v_j; float32: delta_i = dO_i . out_i; low: dO and v rounded,
// dp_ij rounded, delta_i = sum_j p_ij dp_ij (the rounded output is not the sum), ds_ij rounded.
inline void cten_sdpa_ds_row(const float* v, const float* prob, const float* dout, const float* out, long n,
                             long row, int Tk, int E, float scale, int low, std::vector<double>& ds) {
    const float* dOi = dout + row * E;
    double delta = low ? 0 : cten_dot(dOi, out + row * E, E);
    for (int j = 0; j < Tk; j++) {
        double dp = cten_dot(dOi, v + (n * Tk + j) * E, E, low);
        ds[j] = low ? (double)cten_round_bf16((float)dp) : dp;
        if (low) delta += prob[row * Tk + j] * ds[j];
    }
    for (int j = 0; j < Tk; j++) {
        double g = prob[row * Tk + j] * (ds[j] - delta) * scale;
        ds[j] = low ? (double)cten_round_bf16((float)g) : g;
    }
}

inline void cten_sdpa_backward_dq_cpu(const float* k, const float* v, const float* prob, const float* dout,
                                      const float* out, int N, int Tq, int Tk, int D, int E, float scale,
                                      float* dq, int low = 0) {
    std::vector<double> acc(D), ds(Tk);
    for (long row = 0; row < (long)N * Tq; row++) {
        long n = row / Tq;
        cten_sdpa_ds_row(v, prob, dout, out, n, row, Tk, E, scale, low, ds);
        for (int d = 0; d < D; d++) acc[d] = 0;
        for (int j = 0; j < Tk; j++) {
            const float* kj = k + (n * Tk + j) * D;
            for (int d = 0; d < D; d++) acc[d] += ds[j] * cten_low(kj[d], low);
        }
        for (int d = 0; d < D; d++) dq[row * D + d] = cten_low((float)acc[d], low);
    }
}

inline void cten_sdpa_backward_dk_cpu(const float* q, const float* v, const float* prob, const float* dout,
                                      const float* out, int N, int Tq, int Tk, int D, int E, float scale,
                                      float* dk, int low = 0) {
    std::vector<double> acc((size_t)Tk * D), ds(Tk);
    for (long n = 0; n < N; n++) {
        for (size_t x = 0; x < acc.size(); x++) acc[x] = 0;
        for (int i = 0; i < Tq; i++) {
            long row = n * Tq + i;
            cten_sdpa_ds_row(v, prob, dout, out, n, row, Tk, E, scale, low, ds);
            const float* qi = q + row * D;
            for (int j = 0; j < Tk; j++)
                for (int d = 0; d < D; d++) acc[(size_t)j * D + d] += ds[j] * cten_low(qi[d], low);
        }
        for (int j = 0; j < Tk; j++)
            for (int d = 0; d < D; d++) dk[(n * Tk + j) * D + d] = cten_low((float)acc[(size_t)j * D + d], low);
    }
}

inline void cten_sdpa_backward_dv_cpu(const float* prob, const float* dout, int N, int Tq, int Tk, int E,
                                      float* dv, int low = 0) {
    std::vector<double> acc(E);
    for (long n = 0; n < N; n++)
        for (int j = 0; j < Tk; j++) {
            for (int e = 0; e < E; e++) acc[e] = 0;
            for (int i = 0; i < Tq; i++) {
                double p = cten_low(prob[(n * Tq + i) * Tk + j], low);
                const float* dOi = dout + (n * Tq + i) * E;
                for (int e = 0; e < E; e++) acc[e] += p * cten_low(dOi[e], low);
            }
            for (int e = 0; e < E; e++) dv[(n * Tk + j) * E + e] = cten_low((float)acc[e], low);
        }
}
