// Fused scaled-dot-product attention, CPU: out = softmax(q k^T * scale) v per
// batch item n, one softmax pass with max subtraction, accumulated in double.
//
// q [N,Tq,D], k [N,Tk,D], v [N,Tk,E] float32, contiguous.  The forward writes
// out [N,Tq,E] and, when prob is not null, the probabilities [N,Tq,Tk] (what
// the backward needs).  The backward is three functions with one output each
// (dq, dk, dv): a Jittor op must not write an output that may already be freed.
// With dp_ij = dO_i . v_j and delta_i = dO_i . out_i (= sum_j p_ij dp_ij):
//   ds_ij = p_ij (dp_ij - delta_i) scale,  dq_i = sum_j ds_ij k_j,
//   dk_j = sum_i ds_ij q_i,  dv_j = sum_i p_ij dO_i.
#pragma once
#include <math.h>
#include <vector>

inline double cten_dot(const float* a, const float* b, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

inline void cten_sdpa_forward_cpu(const float* q, const float* k, const float* v, int N, int Tq,
                                  int Tk, int D, int E, float scale, float* out, float* prob) {
    std::vector<double> p(Tk), acc(E);
    for (long row = 0; row < (long)N * Tq; row++) {
        long n = row / Tq;
        double mx = -HUGE_VAL;
        for (int j = 0; j < Tk; j++) {
            p[j] = cten_dot(q + row * D, k + (n * Tk + j) * D, D) * scale;
            mx = p[j] > mx ? p[j] : mx;
        }
        double sum = 0;
        for (int j = 0; j < Tk; j++) sum += (p[j] = exp(p[j] - mx));
        for (int e = 0; e < E; e++) acc[e] = 0;
        for (int j = 0; j < Tk; j++) {
            p[j] /= sum;
            if (prob) prob[row * Tk + j] = (float)p[j];
            const float* vj = v + (n * Tk + j) * E;
            for (int e = 0; e < E; e++) acc[e] += p[j] * vj[e];
        }
        for (int e = 0; e < E; e++) out[row * E + e] = (float)acc[e];
    }
}

inline void cten_sdpa_backward_dq_cpu(const float* k, const float* v, const float* prob, const float* dout,
                                      const float* out, int N, int Tq, int Tk, int D, int E, float scale,
                                      float* dq) {
    std::vector<double> acc(D);
    for (long row = 0; row < (long)N * Tq; row++) {
        long n = row / Tq;
        const float* dOi = dout + row * E;
        double delta = cten_dot(dOi, out + row * E, E);
        for (int d = 0; d < D; d++) acc[d] = 0;
        for (int j = 0; j < Tk; j++) {
            double ds = prob[row * Tk + j] * (cten_dot(dOi, v + (n * Tk + j) * E, E) - delta) * scale;
            const float* kj = k + (n * Tk + j) * D;
            for (int d = 0; d < D; d++) acc[d] += ds * kj[d];
        }
        for (int d = 0; d < D; d++) dq[row * D + d] = (float)acc[d];
    }
}

inline void cten_sdpa_backward_dk_cpu(const float* q, const float* v, const float* prob, const float* dout,
                                      const float* out, int N, int Tq, int Tk, int D, int E, float scale,
                                      float* dk) {
    std::vector<double> acc(D), delta(Tq);
    for (long n = 0; n < N; n++) {
        for (int i = 0; i < Tq; i++)
            delta[i] = cten_dot(dout + (n * Tq + i) * E, out + (n * Tq + i) * E, E);
        for (int j = 0; j < Tk; j++) {
            for (int d = 0; d < D; d++) acc[d] = 0;
            for (int i = 0; i < Tq; i++) {
                long row = n * Tq + i;
                double ds = prob[row * Tk + j] *
                            (cten_dot(dout + row * E, v + (n * Tk + j) * E, E) - delta[i]) * scale;
                const float* qi = q + row * D;
                for (int d = 0; d < D; d++) acc[d] += ds * qi[d];
            }
            for (int d = 0; d < D; d++) dk[(n * Tk + j) * D + d] = (float)acc[d];
        }
    }
}

inline void cten_sdpa_backward_dv_cpu(const float* prob, const float* dout, int N, int Tq, int Tk, int E,
                                      float* dv) {
    std::vector<double> acc(E);
    for (long n = 0; n < N; n++)
        for (int j = 0; j < Tk; j++) {
            for (int e = 0; e < E; e++) acc[e] = 0;
            for (int i = 0; i < Tq; i++) {
                double p = prob[(n * Tq + i) * Tk + j];
                const float* dOi = dout + (n * Tq + i) * E;
                for (int e = 0; e < E; e++) acc[e] += p * dOi[e];
            }
            for (int e = 0; e < E; e++) dv[(n * Tk + j) * E + e] = (float)acc[e];
        }
}
