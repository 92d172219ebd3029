/* gemm_bf16_avx512bf16.c — bf16 GEMM with vdpbf16ps (AVX512_BF16): 14×32 tile, 28 zmm accumulators of
 * float32, 2 zmm of B (16 columns × a k pair each) and one broadcast A pair: the float32 kernel's register
 * budget, at 2 multiply-adds per lane and instruction. Full k per tile (see gemm_lowp_internal.h). */
#include <immintrin.h>
#define VITC_LOWP_SFX avx512bf16
#include "gemm_lowp_body.h"

#define MR 14
#define NR 32
#define LOWP_UKERNEL vitc_bf16_gemm_ukernel_14x32__avx512bf16
#define LOWP_B_T uint16_t
#define LOWP_C_T float
#define LOWP_ACC __m512
#define LOWP_VEC __m512bh
#define LOWP_ZERO() _mm512_setzero_ps()
#define LOWP_LOAD_B(b, g, half) (__m512bh)_mm512_loadu_si512((b) + (g) * NR * 2 + (half) * 32)
#define LOWP_SET_A(a32) (__m512bh)_mm512_set1_epi32((int)(a32))
#define LOWP_MADD(acc, a, b) _mm512_dpbf16_ps(acc, a, b)
#define LOWP_STORE(p, acc) _mm512_storeu_ps(p, acc)
#include "gemm_lowp_tile_body.h"
