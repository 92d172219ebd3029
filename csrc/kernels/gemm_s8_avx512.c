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
#define LOWP_UKERNEL vitc_s16_gemm_ukernel_12x32__avx512
#define LOWP_B_T int8_t
#define LOWP_C_T int32_t
#define LOWP_ACC __m512i
#define LOWP_VEC __m512i
#define LOWP_ZERO() _mm512_setzero_si512()
#define LOWP_LOAD_B(b, g, half) /* s8 widened to s16 pairs */ \
    _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)((b) + (g) * NR * 2 + (half) * NR)))
#define LOWP_SET_A(a32) _mm512_set1_epi32((int)(a32))
#define LOWP_MADD(acc, a, b) _mm512_add_epi32(acc, _mm512_madd_epi16(a, b))
#define LOWP_STORE(p, acc) _mm512_storeu_si512(p, acc)
#include "gemm_lowp_tile_body.h"
