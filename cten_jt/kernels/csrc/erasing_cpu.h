// CTEN temporal erasing, CPU: the frame indices of one erased view.
#pragma once
#include <cstdint>
#include "erasing_common.h"

// gamma [B,T] float64 (a float32 gamma converts exactly), n_frames [B] int32,
// u [B,T] float64 (this view's draws) -> idx [B,T,L] int32.
inline void cten_erase_view_cpu(const double* gamma, const int32_t* n_frames, const double* u,
                                int B, int T, int L, double theta, int view, int32_t* idx) {
    for (int b = 0; b < B; b++) {
        const double* g = gamma + (long)b * T;
        for (int t = 0; t < T; t++) {
            int32_t* frames = idx + ((long)b * T + t) * L;
            for (int l = 0; l < L; l++)
                frames[l] = cten_erasing::snippet_frame(g, T, n_frames[b], theta, view,
                                                        u[(long)b * T + t], L, t, l);
        }
    }
}
