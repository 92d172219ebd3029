/* attention_avx2.c — AVX2+FMA attention head kernel: 6×16 register tiles (see attention_body.h). */
#include <math.h>
#include "attention_kernels.h"
#include "vmath_avx2.h"
#define ATT_MR VITC_ATTENTION_MR_AVX2

/* pack_k's 8×8 block transpose in registers (unpack, shuffle, 128-bit lane permutes). */
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
#define ATT_TRANSPOSE transpose_8x8

#include "attention_body.h"
