/* gemm_bf16_avx512bf16.c — bf16 GEMM with vdpbf16ps (AVX512_BF16): 14×32 tile, 28 zmm accumulators of
 * float32, 2 zmm of B (16 columns × a k pair each) and one broadcast A pair: the float32 kernel's register
 * budget, at 2 multiply-adds per lane and instruction. Full k per tile (see gemm_lowp_internal.h). */
#include <immintrin.h>
#define VITC_LOWP_SFX avx512bf16
#include "gemm_lowp_body.h"

#define MR 14
#define NR 32

static inline __attribute__((always_inline)) void tile_bf16(const int rows, size_t kq, const uint32_t *a,
                                                            const uint16_t *b, float *tile) {
    __m512 acc0[MR], acc1[MR];
#pragma GCC unroll 16
    for (int r = 0; r < rows; r++) {
        acc0[r] = _mm512_setzero_ps();
        acc1[r] = _mm512_setzero_ps();
    }
#pragma GCC unroll 2
    for (size_t g = 0; g < kq; g++) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + g * NR * 2);
        const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + g * NR * 2 + 32);
#pragma GCC unroll 16
        for (int r = 0; r < rows; r++) {
            const __m512bh ar = (__m512bh)_mm512_set1_epi32((int)a[g * MR + r]);
            acc0[r] = _mm512_dpbf16_ps(acc0[r], ar, b0);
            acc1[r] = _mm512_dpbf16_ps(acc1[r], ar, b1);
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < rows; r++) {
        _mm512_storeu_ps(tile + r * NR, acc0[r]);
        _mm512_storeu_ps(tile + r * NR + 16, acc1[r]);
    }
}

void vitc_bf16_gemm_ukernel_14x32__avx512bf16(size_t mr, size_t kq, const void *VITC_RESTRICT a,
                                              const void *VITC_RESTRICT b, void *VITC_RESTRICT tile) {
    const uint32_t *ap = (const uint32_t *)a;
    const uint16_t *bp = (const uint16_t *)b;
    float *t = (float *)tile;
#define TILE(rows) tile_bf16(rows, kq, ap, bp, t)
    LOWP_ROWS_SWITCH(mr);
#undef TILE
}
