/* gemm_lowp_body.h — the A-conversion (packing) and epilogue of the reduced-precision GEMM, written once in
 * plain C and included by each ISA file (gemm_*_{avx2,avx512,avx512bf16,avx512vnni}.c, gemm_lowp_scalar.c)
 * after it defines VITC_LOWP_SFX, so the compiler vectorizes it with that file's flags. The arithmetic is
 * exact or correctly rounded in every path, so every kernel set converts A to the same bits. */
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include "../gemm_lowp_convert.h"
#include "../gemm_lowp_internal.h"

#define VITC_LOWP_CAT_(a, b) a##__##b
#define VITC_LOWP_CAT(a, b) VITC_LOWP_CAT_(a, b)

/* The micro-kernels' row-count dispatch: TILE(rows) with rows a compile-time constant <= MR in each case (an
 * edge tile costs only its rows); a bad mr must not silently compute nothing. */
#define LOWP_ROWS_CASE(n) \
    case n: TILE(((n) < MR ? (n) : MR)); break;
#define LOWP_ROWS_SWITCH(mr)                                                                                  \
    do {                                                                                                      \
        if ((mr) < 1 || (mr) > MR) __builtin_trap();                                                          \
        switch (mr) {                                                                                         \
            LOWP_ROWS_CASE(16) LOWP_ROWS_CASE(15) LOWP_ROWS_CASE(14) LOWP_ROWS_CASE(13) LOWP_ROWS_CASE(12)    \
            LOWP_ROWS_CASE(11) LOWP_ROWS_CASE(10) LOWP_ROWS_CASE(9) LOWP_ROWS_CASE(8) LOWP_ROWS_CASE(7)       \
            LOWP_ROWS_CASE(6) LOWP_ROWS_CASE(5) LOWP_ROWS_CASE(4) LOWP_ROWS_CASE(3) LOWP_ROWS_CASE(2)         \
            LOWP_ROWS_CASE(1)                                                                                 \
        }                                                                                                     \
    } while (0)

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

/* Rows of one panel, lanes [lane0, lane0 + n): group g of lane l goes to dst[(g·MR + l)·4]. The rows are
 * converted CHUNK elements at a time into tmp (one row per LOWP_CHUNK·4 bytes), then written group by
 * group: MR-lane runs of the panel, contiguous (with AVX-512: one gather + one masked store per group). */
VITC_LOWP_INLINE void lowp_write_groups(size_t mr, size_t lane0, size_t n, size_t groups, const unsigned char *tmp,
                                        unsigned char *dst) {
#if defined(__AVX512F__)
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32(LOWP_CHUNK * 4));
    const __mmask16 lanes = (__mmask16)((1u << n) - 1u);
    for (size_t g = 0; g < groups; g++) {
        const __m512i v = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), lanes, idx, tmp + g * 4, 1);
        _mm512_mask_storeu_epi32(dst + (g * mr + lane0) * 4, lanes, v);
    }
#else
    for (size_t g = 0; g < groups; g++)
        for (size_t i = 0; i < n; i++) memcpy(dst + (g * mr + lane0 + i) * 4, tmp + i * LOWP_CHUNK * 4 + g * 4, 4);
#endif
}

/* A for tile kernels: rows in blocks of 16, each block k-block by k-block (16 groups of every row, 64 bytes a
 * row), so one A tile is 1 KB of consecutive memory: byte (g%16)·4 of row r at
 * ((r/16)·kq + (g/16)·16 + r%16)·64. Each row is converted LOWP_CHUNK elements (whole k blocks) at a time. */
#if defined(__AVX512F__)
/* lowp_bf16_bits of 16 floats, as 32-bit lanes */
VITC_LOWP_INLINE __m512i lowp_bf16_bits16(__m512 x) {
    const __m512i u = _mm512_castps_si512(x);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i biased = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb);
    const __m512i rounded = _mm512_srli_epi32(biased, 16);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                  _mm512_set1_epi32(0x7f800000));
    return _mm512_mask_or_epi32(rounded, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
}

/* bf16 A in 16-row tiles (see lowp_pack_a_tiles) without the stack row: each 32-value k block of a row is two
 * loads, the rounding above and one 64-byte store in place (values past k are zero). Each row is prefetched
 * 2 KB ahead into L1: fc2's A at batch 8 (fc1's 19 MB output) comes from L3, and the hardware streamer
 * restarts at each 4 KB page of its 12 KB rows (fc2 b8, 1 thread: -6%; docs/performance.md). */
#define A_PF_FLOATS 512
VITC_LOWP_INLINE void lowp_pack_a_tiles_bf16(size_t mr, size_t kq, size_t row0, size_t rows, size_t k,
                                             const float *a, size_t lda, unsigned char *ap) {
    const size_t end = row0 + rows, pad_end = (end + mr - 1) / mr * mr;
    for (size_t r = row0; r < pad_end; r++) {
        const float *src = a + (r - row0) * lda;
        unsigned char *row = ap + ((r / 16) * kq + r % 16) * 64;
        for (size_t b = 0; b < kq / 16; b++) {
            const size_t p = b * 32, have = r >= end || p >= k ? 0 : k - p < 32 ? k - p : 32;
            const __mmask16 m0 = (__mmask16)(have >= 16 ? 0xffffu : (1u << have) - 1u);
            const __mmask16 m1 = (__mmask16)(have <= 16 ? 0u : have >= 32 ? 0xffffu : (1u << (have - 16)) - 1u);
            _mm_prefetch((const char *)(src + p + A_PF_FLOATS), _MM_HINT_T0);
            _mm_prefetch((const char *)(src + p + A_PF_FLOATS + 16), _MM_HINT_T0);
            const __m512i lo = lowp_bf16_bits16(_mm512_maskz_loadu_ps(m0, src + p));
            const __m512i hi = lowp_bf16_bits16(_mm512_maskz_loadu_ps(m1, src + p + 16));
            const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi32_epi16(lo)),
                                                    _mm512_cvtepi32_epi16(hi), 1);
            _mm512_storeu_si512((void *)(row + b * 16 * 64), both);
        }
    }
}
#endif

VITC_LOWP_INLINE void lowp_pack_a_tiles(vitc_lowp_afmt fmt, size_t mr, size_t kq, size_t row0, size_t rows,
                                        size_t k, const float *a, size_t lda, unsigned char *ap,
                                        float *row_scales) {
#if defined(__AVX512F__)
    if (fmt == VITC_A_BF16) {
        lowp_pack_a_tiles_bf16(mr, kq, row0, rows, k, a, lda, ap);
        return;
    }
#endif
    const size_t kr = lowp_kr(fmt), end = row0 + rows, pad_end = (end + mr - 1) / mr * mr;
    const int quantized = fmt == VITC_A_U8 || fmt == VITC_A_U16;
    _Alignas(64) unsigned char tmp[LOWP_CHUNK * 4];
    for (size_t r = row0; r < pad_end; r++) {
        const float *src = a + (r - row0) * lda;
        float inv = 0.0f;
        if (quantized) {
            const float amax = r < end ? lowp_max_abs(src, k) : 0.0f;
            row_scales[r] = amax / 127.0f;
            inv = lowp_quant_inv(amax);
        }
        unsigned char *row = ap + ((r / 16) * kq + r % 16) * 64;
        for (size_t p0 = 0; p0 < kq * kr; p0 += LOWP_CHUNK) {
            const size_t n = kq * kr - p0 < LOWP_CHUNK ? kq * kr - p0 : LOWP_CHUNK;
            if (r < end)
                lowp_convert(fmt, src, k, p0, n, inv, tmp);
            else
                memset(tmp, 0, n * 4 / kr);
            for (size_t b = 0; b < n * 4 / kr / 64; b++) memcpy(row + (p0 / kr / 16 + b) * 16 * 64, tmp + b * 64, 64);
        }
    }
}

void VITC_LOWP_CAT(vitc_lowp_pack_a, VITC_LOWP_SFX)(vitc_lowp_afmt fmt, int tile_rows, size_t mr, size_t kq,
                                                    size_t row0, size_t rows, size_t k, const float *a,
                                                    size_t lda, void *apack, float *row_scales) {
    unsigned char *ap = (unsigned char *)apack;
    if (tile_rows) {
        lowp_pack_a_tiles(fmt, mr, kq, row0, rows, k, a, lda, ap, row_scales);
        return;
    }
    const size_t kr = lowp_kr(fmt), chunk_groups = LOWP_CHUNK / kr;
    const int quantized = fmt == VITC_A_U8 || fmt == VITC_A_U16;
    /* panel kernels have mr <= 16 (one AVX-512 gather of lanes per group); only tile kernels go to 32 */
    _Alignas(64) unsigned char tmp[16 * LOWP_CHUNK * 4];
    float inv[16];
    if (mr > 16) __builtin_trap();
    const size_t end = row0 + rows;
    for (size_t r0 = row0; r0 < end;) {
        const size_t lane0 = r0 % mr, n = (end - r0 < mr - lane0) ? end - r0 : mr - lane0;
        unsigned char *panel = ap + (r0 / mr) * mr * kq * 4;
        const float *src = a + (r0 - row0) * lda;
        for (size_t i = 0; i < n; i++) {
            inv[i] = 0.0f;
            if (quantized) {
                const float amax = lowp_max_abs(src + i * lda, k);
                row_scales[r0 + i] = amax / 127.0f;
                inv[i] = lowp_quant_inv(amax);
            }
        }
        for (size_t g0 = 0; g0 < kq; g0 += chunk_groups) {
            const size_t groups = g0 + chunk_groups < kq ? chunk_groups : kq - g0;
            for (size_t i = 0; i < n; i++)
                lowp_convert(fmt, src + i * lda, k, g0 * kr, groups * kr, inv[i], tmp + i * LOWP_CHUNK * 4);
            lowp_write_groups(mr, lane0, n, groups, tmp, panel + g0 * mr * 4);
        }
        r0 += n;
    }
    const size_t pad_end = (end + mr - 1) / mr * mr;
    for (size_t r = end; r < pad_end; r++) {
        unsigned char *panel = ap + (r / mr) * mr * kq * 4 + (r % mr) * 4;
        for (size_t g = 0; g < kq; g++) memset(panel + g * mr * 4, 0, 4);
        if (quantized) row_scales[r] = 0.0f;
    }
}

/* row[j0 + j] = dequant(t[j0 + j]) + bias + add for j < n, each operand present or not as a compile-time
 * constant of the inlined copy: an "if (bias)" inside the loop becomes a masked load of bias that, when bias
 * is NULL, takes a fault-suppression assist on every vector (~30% of an int8 GEMM). n is the constant 16
 * for full spans, so whole vectors land at the tile's own 64-byte offsets (store forwarding works). */
VITC_LOWP_INLINE void lowp_span(const int s8, const int has_bias, const int has_add, size_t n, const void *tile,
                                size_t j0, float rs, const float *cs, const int32_t *comp, const float *bias,
                                const float *add, float *row) {
    for (size_t j = 0; j < n; j++) {
        float v = s8 ? (float)(((const int32_t *)tile)[j0 + j] - comp[j0 + j]) * (rs * cs[j0 + j])
                     : ((const float *)tile)[j0 + j];
        if (has_bias) v += bias[j0 + j];
        if (has_add) v += add[j0 + j];
        row[j0 + j] = v;
    }
}

VITC_LOWP_INLINE void lowp_span_row(const int s8, const int has_bias, const int has_add, size_t cols,
                                    const void *tile, float rs, const float *cs, const int32_t *comp,
                                    const float *bias, const float *add, float *row) {
    size_t j0 = 0;
    for (; j0 + 16 <= cols; j0 += 16) lowp_span(s8, has_bias, has_add, 16, tile, j0, rs, cs, comp, bias, add, row);
    if (j0 < cols) lowp_span(s8, has_bias, has_add, cols - j0, tile, j0, rs, cs, comp, bias, add, row);
}

/* the eight (s8, bias, add) combinations as separate loops */
#define LOWP_SPAN_ROW(s8, b, ad) lowp_span_row(s8, b, ad, cols, t, rs, cs, comp, bias, add, row)
#define LOWP_SPAN_ROW_BA(s8)                      \
    do {                                          \
        if (bias && add) LOWP_SPAN_ROW(s8, 1, 1); \
        else if (bias) LOWP_SPAN_ROW(s8, 1, 0);   \
        else if (add) LOWP_SPAN_ROW(s8, 0, 1);    \
        else LOWP_SPAN_ROW(s8, 0, 0);             \
    } while (0)

void VITC_LOWP_CAT(vitc_lowp_epilogue, VITC_LOWP_SFX)(const vitc_lowp_epilogue_args *e, size_t rows, size_t cols,
                                                      size_t row0, size_t col0, void *tile, size_t ldt, float *c,
                                                      size_t ldc) {
    /* One pass straight into C (the residual, which may be C itself, read just before each element is
     * written); with an activation or a scale, the residual is added after them, from a stack row when
     * there is one (it may be C). */
    float buf[VITC_LOWP_NR_MAX];
    const int act = e->act != VITC_ACT_NONE, later = act || e->scale;
    const float *bias = e->bias ? e->bias + col0 : NULL;
    const float *cs = e->col_scales ? e->col_scales + col0 : NULL;
    const int32_t *comp = e->comp ? e->comp + col0 : NULL;
    const size_t elt = e->col_scales ? sizeof(int32_t) : sizeof(float);
    for (size_t r = 0; r < rows; r++) {
        float *cr = c + (row0 + r) * ldc + col0;
        const float *rr = e->residual ? e->residual + (row0 + r) * e->ldr + col0 : NULL;
        const float *add = later ? NULL : rr; /* residual added in the first pass */
        float *row = later && rr ? buf : cr;
        const float rs = e->row_scales ? e->row_scales[row0 + r] : 0.0f;
        const unsigned char *t = (const unsigned char *)tile + r * ldt * elt;
        if (cs)
            LOWP_SPAN_ROW_BA(1);
        else
            LOWP_SPAN_ROW_BA(0);
        if (later) {
            if (act) vitc_f32_activation(e->isa, e->act, row, cols);
            if (e->scale)
                for (size_t j = 0; j < cols; j++) row[j] *= e->scale[col0 + j];
            if (rr)
                for (size_t j = 0; j < cols; j++) cr[j] = row[j] + rr[j];
        }
    }
}
