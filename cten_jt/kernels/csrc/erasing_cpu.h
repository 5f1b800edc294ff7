// CTEN temporal erasing, CPU: indices and gathered snippets of one erased view.
#pragma once
#include <cstdint>
#include "erasing_common.h"

// gamma [B,T] float64 (a float32 gamma converts exactly), n_frames [B] int32, u [B,T] float64 (this view's draws),
// clips [B,N,C,H,W] (any arithmetic type) -> idx [B,T,L] int32,
// out [B,T,C,L,H,W] float32.
template <typename Tin>
void cten_erase_view_cpu(const double* gamma, const int32_t* n_frames, const double* u,
                         const Tin* clips, int B, int T, int N, int C, int H, int W, int L,
                         double theta, int view, int32_t* idx, float* out) {
    const long hw = (long)H * W;
    for (int b = 0; b < B; b++) {
        const double* g = gamma + (long)b * T;
        for (int t = 0; t < T; t++) {
            int32_t* frames = idx + ((long)b * T + t) * L;
            for (int l = 0; l < L; l++)
                frames[l] = cten_erasing::snippet_frame(g, T, n_frames[b], theta, view,
                                                        u[(long)b * T + t], L, t, l);
            float* dst = out + ((long)b * T + t) * C * L * hw;
            for (int c = 0; c < C; c++)
                for (int l = 0; l < L; l++) {
                    const Tin* src = clips + (((long)b * N + frames[l]) * C + c) * hw;
                    float* d = dst + ((long)c * L + l) * hw;
                    for (long p = 0; p < hw; p++) d[p] = (float)src[p];
                }
        }
    }
}
