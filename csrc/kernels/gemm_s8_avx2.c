/* gemm_s8_avx2.c — int8 GEMM for AVX2 CPUs (no VNNI), and the AVX2 instance of the lowp packing/epilogue:
 * as gemm_s8_avx512.c (16-bit A, B widened in-register, exact vpmaddwd pairs) in a 6×16 tile of ymm:
 * 12 accumulators + 2 B + 1 A + 1 product. */
#include <immintrin.h>
#define VITC_LOWP_SFX avx2
#include "gemm_lowp_body.h"

#define MR 6
#define NR 16

static inline __attribute__((always_inline)) void tile_s16(const int rows, size_t kq, const uint32_t *a,
                                                           const int8_t *b, int32_t *tile) {
    __m256i acc0[MR], acc1[MR];
#pragma GCC unroll 8
    for (int r = 0; r < rows; r++) {
        acc0[r] = _mm256_setzero_si256();
        acc1[r] = _mm256_setzero_si256();
    }
#pragma GCC unroll 2
    for (size_t g = 0; g < kq; g++) {
        const __m256i b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + g * NR * 2)));
        const __m256i b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + g * NR * 2 + 16)));
#pragma GCC unroll 8
        for (int r = 0; r < rows; r++) {
            const __m256i ar = _mm256_set1_epi32((int)a[g * MR + r]);
            acc0[r] = _mm256_add_epi32(acc0[r], _mm256_madd_epi16(ar, b0));
            acc1[r] = _mm256_add_epi32(acc1[r], _mm256_madd_epi16(ar, b1));
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < rows; r++) {
        _mm256_storeu_si256((__m256i *)(tile + r * NR), acc0[r]);
        _mm256_storeu_si256((__m256i *)(tile + r * NR + 8), acc1[r]);
    }
}

void vitc_s16_gemm_ukernel_6x16__avx2(size_t mr, size_t kq, const void *VITC_RESTRICT a,
                                      const void *VITC_RESTRICT b, void *VITC_RESTRICT tile) {
    const uint32_t *ap = (const uint32_t *)a;
    const int8_t *bp = (const int8_t *)b;
    int32_t *t = (int32_t *)tile;
#define TILE(rows) tile_s16(rows, kq, ap, bp, t)
    LOWP_ROWS_SWITCH(mr);
#undef TILE
}
