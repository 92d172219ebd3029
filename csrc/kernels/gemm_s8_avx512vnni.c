/* gemm_s8_avx512vnni.c — u8×s8 GEMM with vpdpbusd (AVX512_VNNI): 14×32 tile, 28 zmm int32 accumulators,
 * 2 zmm of B (16 columns × a k quad each), one broadcast A quad; 4 multiply-adds per lane and instruction,
 * exact in int32 for k <= 65536 (|sum| <= k·255·127). Full k per tile (see gemm_lowp_internal.h). */
#include <immintrin.h>
#define VITC_LOWP_SFX avx512vnni
#include "gemm_lowp_body.h"

#define MR 14
#define NR 32
#define LOWP_UKERNEL vitc_s8_gemm_ukernel_14x32__avx512vnni
#define LOWP_B_T int8_t
#define LOWP_C_T int32_t
#define LOWP_ACC __m512i
#define LOWP_VEC __m512i
#define LOWP_ZERO() _mm512_setzero_si512()
#define LOWP_LOAD_B(b, g, half) _mm512_loadu_si512((b) + (g) * NR * 4 + (half) * 64)
#define LOWP_SET_A(a32) _mm512_set1_epi32((int)(a32))
#define LOWP_MADD(acc, a, b) _mm512_dpbusd_epi32(acc, a, b)
#define LOWP_STORE(p, acc) _mm512_storeu_si512(p, acc)
#include "gemm_lowp_tile_body.h"
