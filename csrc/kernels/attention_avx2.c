/* attention_avx2.c — AVX2+FMA attention head kernel: 6×16 register tiles (see attention_body.h). */
#include <math.h>
#include "attention_kernels.h"
#include "vmath_avx2.h"
#define ATT_MR VITC_ATTENTION_MR_AVX2
#include "attention_body.h"

/* pack_k: K_h [n rows, k] (row stride ldk) -> panels [n/16][k][16] (rows past n zero): the layout of
 * vitc_f32_gemm_pack_nk for AVX2. 8×8 blocks are transposed in registers (unpack, shuffle, 128-bit
 * lane permutes); columns past the last whole 8 go scalar. */
static inline void transpose_8x8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) { /* t[i], t[i+1] lane L: rows i, i+1 interleaved */
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int h = 0; h < 8; h += 4) { /* u[h + c] lane L: rows h..h+3 of column 4L + c */
        u[h] = _mm256_shuffle_ps(t[h], t[h + 2], 0x44);
        u[h + 1] = _mm256_shuffle_ps(t[h], t[h + 2], 0xEE);
        u[h + 2] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0x44);
        u[h + 3] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0xEE);
    }
    for (int c = 0; c < 4; c++) {
        r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
        r[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
    }
}

void vitc_f32_attention_pack_k__avx2(size_t n, size_t k, const float *VITC_RESTRICT kh, size_t ldk,
                                     float *VITC_RESTRICT packed) {
    const size_t k8 = k & ~(size_t)7;
    for (size_t j0 = 0; j0 < n; j0 += 8) { /* 8 K rows: one half of a 16-wide panel */
        float *dst = packed + (j0 & ~(size_t)15) * k + (j0 & 15);
        const size_t rows = n - j0 < 8 ? n - j0 : 8;
        for (size_t p0 = 0; p0 < k8; p0 += 8) {
            __m256 r[8];
            for (size_t i = 0; i < 8; i++)
                r[i] = i < rows ? _mm256_loadu_ps(kh + (j0 + i) * ldk + p0) : _mm256_setzero_ps();
            transpose_8x8(r);
            for (int m = 0; m < 8; m++) _mm256_storeu_ps(dst + (p0 + (size_t)m) * 16, r[m]);
        }
        for (size_t p = k8; p < k; p++)
            for (size_t i = 0; i < 8; i++) dst[p * 16 + i] = i < rows ? kh[(j0 + i) * ldk + p] : 0.0f;
        if ((j0 & 15) == 0 && j0 + 8 >= n) /* the panel's second half: all past n */
            for (size_t p = 0; p < k; p++) _mm256_storeu_ps(dst + p * 16 + 8, _mm256_setzero_ps());
    }
}
