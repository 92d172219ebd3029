/* gemm_s8_avx512vnni.c — u8×s8 GEMM with vpdpbusd (AVX512_VNNI): 14×32 tile, 28 zmm int32 accumulators,
 * 2 zmm of B (16 columns × a k quad each), one broadcast A quad; 4 multiply-adds per lane and instruction,
 * exact in int32 for k <= 65536 (|sum| <= k·255·127). Full k per tile (see gemm_lowp_internal.h). */
#include <immintrin.h>
#define VITC_LOWP_SFX avx512vnni
#include "gemm_lowp_body.h"

#define MR 14
#define NR 32

static inline __attribute__((always_inline)) void tile_s8(const int rows, size_t kq, const uint32_t *a,
                                                          const int8_t *b, int32_t *tile) {
    __m512i acc0[MR], acc1[MR];
#pragma GCC unroll 16
    for (int r = 0; r < rows; r++) {
        acc0[r] = _mm512_setzero_si512();
        acc1[r] = _mm512_setzero_si512();
    }
#pragma GCC unroll 2
    for (size_t g = 0; g < kq; g++) {
        const __m512i b0 = _mm512_loadu_si512(b + g * NR * 4);
        const __m512i b1 = _mm512_loadu_si512(b + g * NR * 4 + 64);
#pragma GCC unroll 16
        for (int r = 0; r < rows; r++) {
            const __m512i ar = _mm512_set1_epi32((int)a[g * MR + r]);
            acc0[r] = _mm512_dpbusd_epi32(acc0[r], ar, b0);
            acc1[r] = _mm512_dpbusd_epi32(acc1[r], ar, b1);
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < rows; r++) {
        _mm512_storeu_si512(tile + r * NR, acc0[r]);
        _mm512_storeu_si512(tile + r * NR + 16, acc1[r]);
    }
}

void vitc_s8_gemm_ukernel_14x32__avx512vnni(size_t mr, size_t kq, const void *VITC_RESTRICT a,
                                            const void *VITC_RESTRICT b, void *VITC_RESTRICT tile) {
    const uint32_t *ap = (const uint32_t *)a;
    const int8_t *bp = (const int8_t *)b;
    int32_t *t = (int32_t *)tile;
#define TILE(rows) tile_s8(rows, kq, ap, bp, t)
    LOWP_ROWS_SWITCH(mr);
#undef TILE
}
