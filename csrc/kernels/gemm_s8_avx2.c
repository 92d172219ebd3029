/* gemm_s8_avx2.c — int8 GEMM for AVX2 CPUs (no VNNI), and the AVX2 instance of the lowp packing/epilogue:
 * as gemm_s8_avx512.c (16-bit A, B widened in-register, exact vpmaddwd pairs) in a 6×16 tile of ymm:
 * 12 accumulators + 2 B + 1 A + 1 product. */
#include <immintrin.h>
#define VITC_LOWP_SFX avx2
#include "gemm_lowp_body.h"

#define MR 6
#define NR 16
#define LOWP_UKERNEL vitc_s16_gemm_ukernel_6x16__avx2
#define LOWP_B_T int8_t
#define LOWP_C_T int32_t
#define LOWP_ACC __m256i
#define LOWP_VEC __m256i
#define LOWP_ZERO() _mm256_setzero_si256()
#define LOWP_LOAD_B(b, g, half) /* s8 widened to s16 pairs */ \
    _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)((b) + (g) * NR * 2 + (half) * NR)))
#define LOWP_SET_A(a32) _mm256_set1_epi32((int)(a32))
#define LOWP_MADD(acc, a, b) _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
#define LOWP_STORE(p, acc) _mm256_storeu_si256((__m256i *)(p), acc)
#include "gemm_lowp_tile_body.h"
