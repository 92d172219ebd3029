/* gemm_scalar.c — portable 4×16 micro-kernel (compiled without ISA flags: gcc vectorizes the 16-wide
 * column loop with SSE2 on x86-64, NEON on arm64). One code path for full and edge tiles, so every
 * element sees the same arithmetic whatever tile it falls in (1 vs N threads agree bitwise). */
#include "../gemm_internal.h"

#define MR 4
#define NR 16

void vitc_f32_gemm_ukernel_4x16__scalar(size_t mr, size_t nr, size_t kc, const float *VITC_RESTRICT a,
                                        const float *VITC_RESTRICT b, float *VITC_RESTRICT c, size_t ldc,
                                        int accumulate) {
    /* a: [kc, MR] packed (rows past mr are zero), b: [kc, NR] packed (columns past nr are zero) */
    float acc[MR][NR] = {{0.0f}};
    for (size_t p = 0; p < kc; p++) {
        const float *bp = b + p * NR;
        const float *ap = a + p * MR;
        for (int r = 0; r < MR; r++) {
            const float ar = ap[r];
            for (int j = 0; j < NR; j++) acc[r][j] += ar * bp[j];
        }
    }
    for (size_t r = 0; r < mr; r++) {
        float *cr = c + r * ldc;
        if (accumulate) {
            for (size_t j = 0; j < nr; j++) cr[j] += acc[r][j];
        } else {
            for (size_t j = 0; j < nr; j++) cr[j] = acc[r][j];
        }
    }
}
