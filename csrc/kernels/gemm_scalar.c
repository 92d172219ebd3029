/* gemm_scalar.c — portable 4×16 micro-kernel, compiled without ISA flags.
 * With GCC/Clang it is written in generic vector extensions (4-float vectors): SSE2 on x86-64, NEON on
 * arm64, 16 accumulator vectors kept in registers (plain arrays indexed by loop counters end up on the
 * stack: gcc spills them, 6.6 GFLOP/s instead of ~20). Other compilers get the plain loop.
 * One code path for full and edge tiles, so every element sees the same arithmetic whatever tile it
 * falls in (1 vs N threads agree bitwise). */
#include <string.h>
#include "../gemm_internal.h"

#define MR 4
#define NR 16

#if defined(__GNUC__)
typedef float v4f __attribute__((vector_size(16)));

static inline v4f load4(const float *p) {
    v4f v;
    memcpy(&v, p, sizeof(v)); /* unaligned-safe; compiles to one movups */
    return v;
}

/* acc[r][q] += a[r] * b[q*4 .. q*4+3] over kc steps, then stored (or added) row by row */
void vitc_f32_gemm_ukernel_4x16__scalar(size_t mr, size_t nr, size_t kc, const float *VITC_RESTRICT a,
                                        const float *VITC_RESTRICT b, float *VITC_RESTRICT c, size_t ldc,
                                        int accumulate) {
    /* a: [kc, MR] packed (rows past mr are zero), b: [kc, NR] packed (columns past nr are zero) */
    VITC_PRECONDITION(mr >= 1 && mr <= MR && nr >= 1 && nr <= NR);
    v4f c00 = {0}, c01 = {0}, c02 = {0}, c03 = {0}, c10 = {0}, c11 = {0}, c12 = {0}, c13 = {0};
    v4f c20 = {0}, c21 = {0}, c22 = {0}, c23 = {0}, c30 = {0}, c31 = {0}, c32 = {0}, c33 = {0};
    for (size_t p = 0; p < kc; p++) {
        const float *bp = b + p * NR, *ap = a + p * MR;
        const v4f b0 = load4(bp), b1 = load4(bp + 4), b2 = load4(bp + 8), b3 = load4(bp + 12);
        v4f x = {ap[0], ap[0], ap[0], ap[0]};
        c00 += x * b0; c01 += x * b1; c02 += x * b2; c03 += x * b3;
        x = (v4f){ap[1], ap[1], ap[1], ap[1]};
        c10 += x * b0; c11 += x * b1; c12 += x * b2; c13 += x * b3;
        x = (v4f){ap[2], ap[2], ap[2], ap[2]};
        c20 += x * b0; c21 += x * b1; c22 += x * b2; c23 += x * b3;
        x = (v4f){ap[3], ap[3], ap[3], ap[3]};
        c30 += x * b0; c31 += x * b1; c32 += x * b2; c33 += x * b3;
    }
    float acc[MR][NR];
    memcpy(acc[0], &c00, 16); memcpy(acc[0] + 4, &c01, 16); memcpy(acc[0] + 8, &c02, 16); memcpy(acc[0] + 12, &c03, 16);
    memcpy(acc[1], &c10, 16); memcpy(acc[1] + 4, &c11, 16); memcpy(acc[1] + 8, &c12, 16); memcpy(acc[1] + 12, &c13, 16);
    memcpy(acc[2], &c20, 16); memcpy(acc[2] + 4, &c21, 16); memcpy(acc[2] + 8, &c22, 16); memcpy(acc[2] + 12, &c23, 16);
    memcpy(acc[3], &c30, 16); memcpy(acc[3] + 4, &c31, 16); memcpy(acc[3] + 8, &c32, 16); memcpy(acc[3] + 12, &c33, 16);
#else
void vitc_f32_gemm_ukernel_4x16__scalar(size_t mr, size_t nr, size_t kc, const float *VITC_RESTRICT a,
                                        const float *VITC_RESTRICT b, float *VITC_RESTRICT c, size_t ldc,
                                        int accumulate) {
    VITC_PRECONDITION(mr >= 1 && mr <= MR && nr >= 1 && nr <= NR);
    float acc[MR][NR] = {{0.0f}};
    for (size_t p = 0; p < kc; p++) {
        const float *bp = b + p * NR, *ap = a + p * MR;
        for (int r = 0; r < MR; r++)
            for (int j = 0; j < NR; j++) acc[r][j] += ap[r] * bp[j];
    }
#endif
    for (size_t r = 0; r < mr; r++) {
        float *cr = c + r * ldc;
        if (accumulate) {
            for (size_t j = 0; j < nr; j++) cr[j] += acc[r][j];
        } else {
            for (size_t j = 0; j < nr; j++) cr[j] = acc[r][j];
        }
    }
}
