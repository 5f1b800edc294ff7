// Fused scaled-dot-product attention, CPU: out = softmax(q k^T * scale) v per
// batch item n, one softmax pass with max subtraction, accumulated in double.
//
// q [N,Tq,D], k [N,Tk,D], v [N,Tk,E] float32, contiguous.  The forward writes
// out [N,Tq,E] and the probabilities prob [N,Tq,Tk] (the only intermediate the
// backward needs).  The backward writes dq, dk, dv and uses ds [N,Tq,Tk] as
// scratch for dL/dscores.
#pragma once
#include <math.h>
#include <vector>

inline void cten_sdpa_forward_cpu(const float* q, const float* k, const float* v, int N, int Tq,
                                  int Tk, int D, int E, float scale, float* out, float* prob) {
    std::vector<double> p(Tk), acc(E);
    for (long row = 0; row < (long)N * Tq; row++) {
        long n = row / Tq;
        const float* qi = q + row * D;
        double mx = -HUGE_VAL;
        for (int j = 0; j < Tk; j++) {
            const float* kj = k + (n * Tk + j) * D;
            double s = 0;
            for (int d = 0; d < D; d++) s += (double)qi[d] * kj[d];
            p[j] = s * scale;
            mx = p[j] > mx ? p[j] : mx;
        }
        double sum = 0;
        for (int j = 0; j < Tk; j++) sum += (p[j] = exp(p[j] - mx));
        for (int e = 0; e < E; e++) acc[e] = 0;
        for (int j = 0; j < Tk; j++) {
            p[j] /= sum;
            prob[row * Tk + j] = (float)p[j];
            const float* vj = v + (n * Tk + j) * E;
            for (int e = 0; e < E; e++) acc[e] += p[j] * vj[e];
        }
        for (int e = 0; e < E; e++) out[row * E + e] = (float)acc[e];
    }
}

inline void cten_sdpa_backward_cpu(const float* q, const float* k, const float* v, const float* prob,
                                   const float* dout, int N, int Tq, int Tk, int D, int E,
                                   float scale, float* dq, float* dk, float* dv, float* ds) {
    int width = D > E ? D : E;
    std::vector<double> acc(width), dp(Tk);
    for (long n = 0; n < N; n++) {
        const float* P = prob + n * Tq * Tk;
        const float* dO = dout + n * Tq * E;
        const float* Q = q + n * Tq * D;
        const float* K = k + n * Tk * D;
        const float* V = v + n * Tk * E;
        float* S = ds + n * Tq * Tk;
        // dscores = P * (dO V^T - rowsum(P * dO V^T)) * scale
        for (int i = 0; i < Tq; i++) {
            double delta = 0;
            for (int j = 0; j < Tk; j++) {
                double s = 0;
                for (int e = 0; e < E; e++) s += (double)dO[i * E + e] * V[j * E + e];
                dp[j] = s;
                delta += P[i * Tk + j] * s;
            }
            for (int j = 0; j < Tk; j++) S[i * Tk + j] = (float)(P[i * Tk + j] * (dp[j] - delta) * scale);
            // dq_i = sum_j ds_ij k_j
            for (int d = 0; d < D; d++) acc[d] = 0;
            for (int j = 0; j < Tk; j++) {
                double sij = P[i * Tk + j] * (dp[j] - delta) * scale;
                for (int d = 0; d < D; d++) acc[d] += sij * K[j * D + d];
            }
            for (int d = 0; d < D; d++) dq[(n * Tq + i) * D + d] = (float)acc[d];
        }
        for (int j = 0; j < Tk; j++) {
            // dk_j = sum_i ds_ij q_i ; dv_j = sum_i p_ij dO_i
            for (int d = 0; d < D; d++) acc[d] = 0;
            for (int i = 0; i < Tq; i++)
                for (int d = 0; d < D; d++) acc[d] += (double)S[i * Tk + j] * Q[i * D + d];
            for (int d = 0; d < D; d++) dk[(n * Tk + j) * D + d] = (float)acc[d];
            for (int e = 0; e < E; e++) acc[e] = 0;
            for (int i = 0; i < Tq; i++)
                for (int e = 0; e < E; e++) acc[e] += (double)P[i * Tk + j] * dO[i * E + e];
            for (int e = 0; e < E; e++) dv[(n * Tk + j) * E + e] = (float)acc[e];
        }
    }
}
