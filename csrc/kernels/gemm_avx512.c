/* gemm_avx512.c — 14×32 AVX-512 micro-kernel: 28 zmm accumulators (14 rows × 2 vectors of 16), 2 zmm
 * for the B row and one for the broadcast A element fill the 32 registers. Per k step: 2 B loads,
 * 14 broadcasts, 28 FMAs — enough independent FMAs to cover the 4-cycle latency on Zen 4 (which issues
 * ~1 zmm FMA per cycle, double-pumped) and on Intel's two 512-bit FMA ports.
 * Edge tiles: the row count is a compile-time constant in each of 14 inlined copies (an edge tile
 * costs only its rows), edge columns use masked loads/stores.
 * Prefetching (docs/performance.md, Intel Xeon): the A and B rows PF_AHEAD k steps ahead into L1 (the
 * hardware prefetchers stop at 4 KB pages), and, when gemm.c passes b_next, one line of the next B panel
 * per 4 k steps into L2, so that panel comes from L3 while this one is multiplied instead of in a burst
 * when its first tile starts. Prefetches never fault: reading past a buffer's end this way is harmless. */
#include <immintrin.h>
#include "../gemm_internal.h"

#define MR 14
#define NR 32
#define PF_AHEAD 64 /* k steps: 8 KB of B, 3.5 KB of A ahead */

static inline __attribute__((always_inline)) void tile_14x32(const int rows, size_t nr, size_t kc,
                                                              const float *VITC_RESTRICT a,
                                                              const float *VITC_RESTRICT b,
                                                              float *VITC_RESTRICT c, size_t ldc,
                                                              int accumulate, const float *b_next) {
    __m512 acc0[MR], acc1[MR];
#pragma GCC unroll 16
    for (int r = 0; r < rows; r++) {
        acc0[r] = _mm512_setzero_ps();
        acc1[r] = _mm512_setzero_ps();
    }
#pragma GCC unroll 4
    for (size_t p = 0; p < kc; p++) {
        /* a: [kc, MR], b: [kc, NR] */
        _mm_prefetch((const char *)(b + (p + PF_AHEAD) * NR), _MM_HINT_T0);
        _mm_prefetch((const char *)(b + (p + PF_AHEAD) * NR + 16), _MM_HINT_T0);
        _mm_prefetch((const char *)(a + (p + PF_AHEAD) * MR), _MM_HINT_T0);
        if (b_next && (p & 3) == 0) _mm_prefetch((const char *)(b_next + p * 4), _MM_HINT_T1);
        const __m512 b0 = _mm512_loadu_ps(b + p * NR);
        const __m512 b1 = _mm512_loadu_ps(b + p * NR + 16);
#pragma GCC unroll 16
        for (int r = 0; r < rows; r++) {
            const __m512 ar = _mm512_set1_ps(a[p * MR + r]);
            acc0[r] = _mm512_fmadd_ps(ar, b0, acc0[r]);
            acc1[r] = _mm512_fmadd_ps(ar, b1, acc1[r]);
        }
    }
    const __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1u);
    const __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1u) : 0;
#pragma GCC unroll 16
    for (int r = 0; r < rows; r++) {
        float *cr = c + (size_t)r * ldc;
        __m512 v0 = acc0[r], v1 = acc1[r];
        if (accumulate) {
            v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, cr), v0);
            v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, cr + 16), v1);
        }
        _mm512_mask_storeu_ps(cr, m0, v0);
        _mm512_mask_storeu_ps(cr + 16, m1, v1);
    }
}

void vitc_f32_gemm_ukernel_14x32_next__avx512(size_t mr, size_t nr, size_t kc, const float *VITC_RESTRICT a,
                                              const float *VITC_RESTRICT b, float *VITC_RESTRICT c, size_t ldc,
                                              int accumulate, const float *b_next) {
    VITC_PRECONDITION(nr >= 1 && nr <= NR);
    switch (mr) {
    case 14: tile_14x32(14, nr, kc, a, b, c, ldc, accumulate, b_next); break;
    case 13: tile_14x32(13, nr, kc, a, b, c, ldc, accumulate, b_next); break;
    case 12: tile_14x32(12, nr, kc, a, b, c, ldc, accumulate, b_next); break;
    case 11: tile_14x32(11, nr, kc, a, b, c, ldc, accumulate, b_next); break;
    case 10: tile_14x32(10, nr, kc, a, b, c, ldc, accumulate, b_next); break;
    case 9: tile_14x32(9, nr, kc, a, b, c, ldc, accumulate, b_next); break;
    case 8: tile_14x32(8, nr, kc, a, b, c, ldc, accumulate, b_next); break;
    case 7: tile_14x32(7, nr, kc, a, b, c, ldc, accumulate, b_next); break;
    case 6: tile_14x32(6, nr, kc, a, b, c, ldc, accumulate, b_next); break;
    case 5: tile_14x32(5, nr, kc, a, b, c, ldc, accumulate, b_next); break;
    case 4: tile_14x32(4, nr, kc, a, b, c, ldc, accumulate, b_next); break;
    case 3: tile_14x32(3, nr, kc, a, b, c, ldc, accumulate, b_next); break;
    case 2: tile_14x32(2, nr, kc, a, b, c, ldc, accumulate, b_next); break;
    case 1: tile_14x32(1, nr, kc, a, b, c, ldc, accumulate, b_next); break;
    default: VITC_PRECONDITION(mr >= 1 && mr <= MR);
    }
}

void vitc_f32_gemm_ukernel_14x32__avx512(size_t mr, size_t nr, size_t kc, const float *VITC_RESTRICT a,
                                         const float *VITC_RESTRICT b, float *VITC_RESTRICT c, size_t ldc,
                                         int accumulate) {
    vitc_f32_gemm_ukernel_14x32_next__avx512(mr, nr, kc, a, b, c, ldc, accumulate, NULL);
}
