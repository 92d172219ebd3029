/* gemm_lowp_body.h — the A-conversion (packing) and epilogue of the reduced-precision GEMM, written once in
 * plain C and included by each ISA file (gemm_*_{avx2,avx512,avx512bf16,avx512vnni}.c, gemm_lowp_scalar.c)
 * after it defines VITC_LOWP_SFX, so the compiler vectorizes it with that file's flags. The arithmetic is
 * exact or correctly rounded in every path, so every kernel set converts A to the same bits. */
#include <string.h>
#include "../gemm_lowp_convert.h"
#include "../gemm_lowp_internal.h"

#define VITC_LOWP_CAT_(a, b) a##__##b
#define VITC_LOWP_CAT(a, b) VITC_LOWP_CAT_(a, b)

#define LOWP_CHUNK 256 /* k elements converted at a time into a stack buffer, then scattered to the panel */

/* Convert k elements [p0, p0 + n) of one row into 4-byte groups at t (elements past k are zero). */
VITC_LOWP_INLINE void lowp_convert(vitc_lowp_afmt fmt, const float *src, size_t k,
                                                               size_t p0, size_t n, float inv, unsigned char *t) {
    const size_t have = p0 >= k ? 0 : (k - p0 < n ? k - p0 : n);
    switch (fmt) {
    case VITC_A_BF16: {
        uint16_t *d = (uint16_t *)(void *)t;
        for (size_t i = 0; i < have; i++) d[i] = lowp_bf16_bits(src[p0 + i]);
        for (size_t i = have; i < n; i++) d[i] = 0;
        break;
    }
    case VITC_A_BF16_F32: {
        uint32_t *d = (uint32_t *)(void *)t;
        for (size_t i = 0; i < have; i++) d[i] = (uint32_t)lowp_bf16_bits(src[p0 + i]) << 16;
        for (size_t i = have; i < n; i++) d[i] = 0;
        break;
    }
    case VITC_A_U8: {
        for (size_t i = 0; i < have; i++) t[i] = (unsigned char)(lowp_quant(src[p0 + i], inv) + 128);
        for (size_t i = have; i < n; i++) t[i] = 0;
        break;
    }
    case VITC_A_U16: {
        uint16_t *d = (uint16_t *)(void *)t;
        for (size_t i = 0; i < have; i++) d[i] = (uint16_t)(lowp_quant(src[p0 + i], inv) + 128);
        for (size_t i = have; i < n; i++) d[i] = 0;
        break;
    }
    }
}

VITC_LOWP_INLINE size_t lowp_kr(vitc_lowp_afmt fmt) {
    return fmt == VITC_A_U8 ? 4 : fmt == VITC_A_BF16_F32 ? 1 : 2;
}

void VITC_LOWP_CAT(vitc_lowp_pack_a, VITC_LOWP_SFX)(vitc_lowp_afmt fmt, size_t mr, size_t row0, size_t rows,
                                                    size_t k, const float *a, size_t lda, void *apack,
                                                    float *row_scales) {
    const size_t kr = lowp_kr(fmt), kq = (k + kr - 1) / kr;
    const int quantized = fmt == VITC_A_U8 || fmt == VITC_A_U16;
    unsigned char *ap = (unsigned char *)apack;
    _Alignas(64) unsigned char tmp[LOWP_CHUNK * 4];
    for (size_t i = 0; i < rows; i++) {
        const size_t r = row0 + i;
        const float *src = a + i * lda;
        unsigned char *panel = ap + (r / mr) * mr * kq * 4 + (r % mr) * 4;
        float inv = 0.0f;
        if (quantized) {
            const float amax = lowp_max_abs(src, k);
            row_scales[r] = amax / 127.0f;
            inv = lowp_quant_inv(amax);
        }
        for (size_t g0 = 0; g0 < kq; g0 += LOWP_CHUNK / kr) {
            const size_t g1 = g0 + LOWP_CHUNK / kr < kq ? g0 + LOWP_CHUNK / kr : kq;
            lowp_convert(fmt, src, k, g0 * kr, (g1 - g0) * kr, inv, tmp);
            for (size_t g = g0; g < g1; g++) memcpy(panel + g * mr * 4, tmp + (g - g0) * 4, 4);
        }
    }
    const size_t end = row0 + rows, pad_end = (end + mr - 1) / mr * mr;
    for (size_t r = end; r < pad_end; r++) {
        unsigned char *panel = ap + (r / mr) * mr * kq * 4 + (r % mr) * 4;
        for (size_t g = 0; g < kq; g++) memset(panel + g * mr * 4, 0, 4);
        if (quantized) row_scales[r] = 0.0f;
    }
}

void VITC_LOWP_CAT(vitc_lowp_epilogue, VITC_LOWP_SFX)(const vitc_lowp_epilogue_args *e, size_t rows, size_t cols,
                                                      size_t row0, size_t col0, void *tile, size_t ldt, float *c,
                                                      size_t ldc) {
    float row[VITC_LOWP_NR_MAX];
    for (size_t r = 0; r < rows; r++) {
        if (e->col_scales) {
            const int32_t *t = (const int32_t *)tile + r * ldt, *comp = e->comp + col0;
            const float rs = e->row_scales[row0 + r], *cs = e->col_scales + col0;
            for (size_t j = 0; j < cols; j++) row[j] = (float)(t[j] - comp[j]) * (rs * cs[j]);
        } else {
            memcpy(row, (const float *)tile + r * ldt, cols * sizeof(float));
        }
        if (e->bias) {
            const float *b = e->bias + col0;
            for (size_t j = 0; j < cols; j++) row[j] += b[j];
        }
        if (e->act != VITC_ACT_NONE) vitc_f32_activation(e->isa, e->act, row, cols);
        float *cr = c + (row0 + r) * ldc + col0;
        if (e->residual) {
            const float *rr = e->residual + (row0 + r) * e->ldr + col0;
            for (size_t j = 0; j < cols; j++) cr[j] = row[j] + rr[j];
        } else {
            memcpy(cr, row, cols * sizeof(float));
        }
    }
}
