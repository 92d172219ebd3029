/* gemm_s8_avx512.c — int8 GEMM for AVX-512 CPUs without VNNI, and the AVX-512 instance of the lowp
 * packing/epilogue. vpmaddubsw would saturate (255·127·2 > 32767), so A (u8 = q + 128) is packed widened to
 * 16 bits, B's s8 pairs are widened in-register (vpmovsxbw) and vpmaddwd sums exact int32 pairs. 12×32
 * tile: 24 accumulators + 2 B + 1 A + 1 product of the 32 zmm. bf16 on these CPUs runs the float32 kernel
 * on bf16-rounded values widened at packing (gemm_lowp.c). */
#include <immintrin.h>
#define VITC_LOWP_SFX avx512
#include "gemm_lowp_body.h"

#define MR 12
#define NR 32

static inline __attribute__((always_inline)) void tile_s16(const int rows, size_t kq, const uint32_t *a,
                                                           const int8_t *b, int32_t *tile) {
    __m512i acc0[MR], acc1[MR];
#pragma GCC unroll 16
    for (int r = 0; r < rows; r++) {
        acc0[r] = _mm512_setzero_si512();
        acc1[r] = _mm512_setzero_si512();
    }
#pragma GCC unroll 2
    for (size_t g = 0; g < kq; g++) {
        const __m512i b0 = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(b + g * NR * 2)));
        const __m512i b1 = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(b + g * NR * 2 + 32)));
#pragma GCC unroll 16
        for (int r = 0; r < rows; r++) {
            const __m512i ar = _mm512_set1_epi32((int)a[g * MR + r]);
            acc0[r] = _mm512_add_epi32(acc0[r], _mm512_madd_epi16(ar, b0));
            acc1[r] = _mm512_add_epi32(acc1[r], _mm512_madd_epi16(ar, b1));
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < rows; r++) {
        _mm512_storeu_si512(tile + r * NR, acc0[r]);
        _mm512_storeu_si512(tile + r * NR + 16, acc1[r]);
    }
}

void vitc_s16_gemm_ukernel_12x32__avx512(size_t mr, size_t kq, const void *VITC_RESTRICT a,
                                         const void *VITC_RESTRICT b, void *VITC_RESTRICT tile) {
    const uint32_t *ap = (const uint32_t *)a;
    const int8_t *bp = (const int8_t *)b;
    int32_t *t = (int32_t *)tile;
#define TILE(rows) tile_s16(rows, kq, ap, bp, t)
    LOWP_ROWS_SWITCH(mr);
#undef TILE
}
