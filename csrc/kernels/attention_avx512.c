/* attention_avx512.c — AVX-512 attention head kernel: 14×32 register tiles (see attention_body.h). */
#include <math.h>
#include "attention_kernels.h"
#include "vmath_avx512.h"
#define ATT_MR VITC_ATTENTION_MR_AVX512

/* C[rows, nr <= 8] = A[rows, kc] · B[kc, nr] (· rowscale) in 256-bit vectors, masked loads and stores:
 * the body's half-width edge tile (see attention_body.h). */
#define ATT_HALF_TILE_LANES 8
static inline __attribute__((always_inline)) void att_tile_half__avx512(const int rows, size_t nr, size_t kc,
                                                                        const float *VITC_RESTRICT a, size_t lda,
                                                                        const float *VITC_RESTRICT b, size_t ldb,
                                                                        float *VITC_RESTRICT c, size_t ldc,
                                                                        const float *VITC_RESTRICT rowscale) {
    const __mmask8 m = (__mmask8)((1u << nr) - 1u);
    __m256 acc[VITC_ATTENTION_MR_AVX512];
#pragma GCC unroll 16
    for (int r = 0; r < rows; r++) acc[r] = _mm256_setzero_ps();
#pragma GCC unroll 4
    for (size_t p = 0; p < kc; p++) {
        const __m256 b0 = _mm256_maskz_loadu_ps(m, b + p * ldb);
#pragma GCC unroll 16
        for (int r = 0; r < rows; r++) acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(a[(size_t)r * lda + p]), b0, acc[r]);
    }
#pragma GCC unroll 16
    for (int r = 0; r < rows; r++) {
        __m256 v = acc[r];
        if (rowscale) v = _mm256_mul_ps(v, _mm256_set1_ps(rowscale[r]));
        _mm256_mask_storeu_ps(c + (size_t)r * ldc, m, v);
    }
}

/* pack_k's 16×16 block transpose in registers (unpack ps, unpack pd, two rounds of 128-bit lane shuffles):
 * with it pack_k is 4× faster than scalar packing for ViT-B heads. */
static inline void transpose_16x16(__m512 r[16]) {
    __m512 a[16], b[16];
    for (int i = 0; i < 16; i += 2) { /* a[i], a[i+1] lane L: r_i, r_i+1 interleaved, columns 4L..4L+1 / +2..+3 */
        a[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        a[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int k = 0; k < 16; k += 4) { /* b[k + c] lane L: rows k..k+3 of column 4L + c */
        const __m512d a0 = _mm512_castps_pd(a[k]), a1 = _mm512_castps_pd(a[k + 1]);
        const __m512d a2 = _mm512_castps_pd(a[k + 2]), a3 = _mm512_castps_pd(a[k + 3]);
        b[k] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
        b[k + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
        b[k + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
        b[k + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
    }
    for (int c = 0; c < 4; c++) { /* column 4L + c = lane L of b[c], b[4+c], b[8+c], b[12+c] */
        const __m512 u0 = _mm512_shuffle_f32x4(b[c], b[4 + c], 0x44), u1 = _mm512_shuffle_f32x4(b[8 + c], b[12 + c], 0x44);
        const __m512 u2 = _mm512_shuffle_f32x4(b[c], b[4 + c], 0xEE), u3 = _mm512_shuffle_f32x4(b[8 + c], b[12 + c], 0xEE);
        r[c] = _mm512_shuffle_f32x4(u0, u1, 0x88);
        r[4 + c] = _mm512_shuffle_f32x4(u0, u1, 0xDD);
        r[8 + c] = _mm512_shuffle_f32x4(u2, u3, 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(u2, u3, 0xDD);
    }
}
#define ATT_TRANSPOSE transpose_16x16

#include "attention_body.h"
