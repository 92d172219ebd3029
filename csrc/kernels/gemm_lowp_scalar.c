/* gemm_lowp_scalar.c — portable int8 micro-kernel (4×16, u8 quads × s8 quads, int32 sums) and the
 * portable instance of the lowp packing/epilogue; compiled without ISA flags. bf16 on the portable path
 * runs the float32 scalar kernel on bf16-rounded values widened at packing (gemm_lowp.c). */
#include <stdlib.h>
#define VITC_LOWP_SFX scalar
#include "gemm_lowp_body.h"

#define MR 4
#define NR 16
#define KR 4

void vitc_s8_gemm_ukernel_4x16__scalar(size_t mr, size_t kq, const void *VITC_RESTRICT a,
                                       const void *VITC_RESTRICT b, void *VITC_RESTRICT tile) {
    const uint8_t *ap = (const uint8_t *)a;
    const int8_t *bp = (const int8_t *)b;
    if (mr < 1 || mr > MR) abort(); /* a bad mr must not silently compute nothing */
    int32_t acc[MR][NR] = {{0}};
    for (size_t g = 0; g < kq; g++) {
        const uint8_t *ag = ap + g * MR * KR;
        const int8_t *bg = bp + g * NR * KR;
        for (int r = 0; r < MR; r++)
            for (int j = 0; j < NR; j++) {
                int32_t s = 0;
                for (int q = 0; q < KR; q++) s += (int32_t)ag[r * KR + q] * (int32_t)bg[j * KR + q];
                acc[r][j] += s;
            }
    }
    memcpy(tile, acc, mr * NR * sizeof(int32_t));
}
