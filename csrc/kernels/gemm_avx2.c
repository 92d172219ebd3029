/* gemm_avx2.c — 6×16 AVX2+FMA micro-kernel (the classic Haswell tile): 12 ymm accumulators, 2 for the
 * B row, 1 for the broadcast A element, of the 16 registers. Edge rows: one inlined copy per row count;
 * edge columns: the tile goes through a small stack buffer (AVX2 has no cheap masked store of floats). */
#include <immintrin.h>
#include "../gemm_internal.h"

#define MR 6
#define NR 16

static inline __attribute__((always_inline)) void tile_6x16(const int rows, size_t nr, size_t kc,
                                                             const float *VITC_RESTRICT a,
                                                             const float *VITC_RESTRICT b,
                                                             float *VITC_RESTRICT c, size_t ldc,
                                                             int accumulate) {
    __m256 acc0[MR], acc1[MR];
#pragma GCC unroll 8
    for (int r = 0; r < rows; r++) {
        acc0[r] = _mm256_setzero_ps();
        acc1[r] = _mm256_setzero_ps();
    }
#pragma GCC unroll 4
    for (size_t p = 0; p < kc; p++) {
        /* a: [kc, MR], b: [kc, NR] */
        const __m256 b0 = _mm256_loadu_ps(b + p * NR);
        const __m256 b1 = _mm256_loadu_ps(b + p * NR + 8);
#pragma GCC unroll 8
        for (int r = 0; r < rows; r++) {
            const __m256 ar = _mm256_broadcast_ss(a + p * MR + r);
            acc0[r] = _mm256_fmadd_ps(ar, b0, acc0[r]);
            acc1[r] = _mm256_fmadd_ps(ar, b1, acc1[r]);
        }
    }
    if (nr == NR) {
#pragma GCC unroll 8
        for (int r = 0; r < rows; r++) {
            float *cr = c + (size_t)r * ldc;
            __m256 v0 = acc0[r], v1 = acc1[r];
            if (accumulate) {
                v0 = _mm256_add_ps(_mm256_loadu_ps(cr), v0);
                v1 = _mm256_add_ps(_mm256_loadu_ps(cr + 8), v1);
            }
            _mm256_storeu_ps(cr, v0);
            _mm256_storeu_ps(cr + 8, v1);
        }
    } else {
        float buf[NR];
#pragma GCC unroll 8 /* constant indices keep acc0/acc1 in registers */
        for (int r = 0; r < rows; r++) {
            float *cr = c + (size_t)r * ldc;
            _mm256_storeu_ps(buf, acc0[r]);
            _mm256_storeu_ps(buf + 8, acc1[r]);
            if (accumulate) {
                for (size_t j = 0; j < nr; j++) cr[j] += buf[j];
            } else {
                for (size_t j = 0; j < nr; j++) cr[j] = buf[j];
            }
        }
    }
}

void vitc_f32_gemm_ukernel_6x16__avx2(size_t mr, size_t nr, size_t kc, const float *VITC_RESTRICT a,
                                      const float *VITC_RESTRICT b, float *VITC_RESTRICT c, size_t ldc,
                                      int accumulate) {
    VITC_PRECONDITION(nr >= 1 && nr <= NR);
    switch (mr) {
    case 6: tile_6x16(6, nr, kc, a, b, c, ldc, accumulate); break;
    case 5: tile_6x16(5, nr, kc, a, b, c, ldc, accumulate); break;
    case 4: tile_6x16(4, nr, kc, a, b, c, ldc, accumulate); break;
    case 3: tile_6x16(3, nr, kc, a, b, c, ldc, accumulate); break;
    case 2: tile_6x16(2, nr, kc, a, b, c, ldc, accumulate); break;
    case 1: tile_6x16(1, nr, kc, a, b, c, ldc, accumulate); break;
    default: VITC_PRECONDITION(mr >= 1 && mr <= MR);
    }
}
