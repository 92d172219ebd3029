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

#include "attention_body.h"

/* pack_k: K_h [n rows, k] (row stride ldk) -> panels [n/32][k][32] (rows past n zero): the layout of
 * vitc_f32_gemm_pack_nk for AVX-512, 4× faster for ViT-B heads. 16×16 blocks are transposed in registers
 * (unpack ps, unpack pd, two rounds of 128-bit lane shuffles); columns past the last whole 16 go scalar. */
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

void vitc_f32_attention_pack_k__avx512(size_t n, size_t k, const float *VITC_RESTRICT kh, size_t ldk,
                                       float *VITC_RESTRICT packed) {
    const size_t k16 = k & ~(size_t)15;
    for (size_t j0 = 0; j0 < n; j0 += 16) { /* 16 K rows: one half of a 32-wide panel */
        float *dst = packed + (j0 & ~(size_t)31) * k + (j0 & 31);
        const size_t rows = n - j0 < 16 ? n - j0 : 16;
        for (size_t p0 = 0; p0 < k16; p0 += 16) {
            __m512 r[16];
            for (size_t i = 0; i < 16; i++)
                r[i] = i < rows ? _mm512_loadu_ps(kh + (j0 + i) * ldk + p0) : _mm512_setzero_ps();
            transpose_16x16(r);
            for (int m = 0; m < 16; m++) _mm512_storeu_ps(dst + (p0 + (size_t)m) * 32, r[m]);
        }
        for (size_t p = k16; p < k; p++)
            for (size_t i = 0; i < 16; i++) dst[p * 32 + i] = i < rows ? kh[(j0 + i) * ldk + p] : 0.0f;
        if ((j0 & 31) == 0 && j0 + 16 >= n) /* the panel's second half: all past n */
            for (size_t p = 0; p < k; p++) _mm512_storeu_ps(dst + p * 32 + 16, _mm512_setzero_ps());
    }
}
