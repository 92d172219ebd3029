/* gemm_amx.c — bf16 and u8×s8 GEMM on AMX tiles (tdpbf16ps / tdpbusd). One micro-kernel call computes a
 * 32×32 tile of C as 2×2 accumulator tiles of 16×16 float32 / int32 (tmm0-3) over all of k, 16 k groups
 * (32 bf16 / 64 int8 values) per step: two A tiles (16 rows × 64 bytes, 1 KB of packed A each, tmm4-5)
 * and two B tiles (16 groups × 16 columns of the same panels vdpbf16ps / vpdpbusd use, tmm6-7) feed four
 * tile multiply-adds. A has at most 32 rows; with 16 or fewer the second row half is skipped.
 * vitc_bf16_gemm_tile_c__amx is the bf16 variant gemm_lowp.c's panel_into_c calls: accumulators from the bias
 * or the residual, stored into C, with prefetching and the previous tile's activation interleaved.
 * The tile configuration is per thread: vitc_amx_task_begin loads it before a task's calls,
 * vitc_amx_task_end releases the tiles (other libraries in the process configure their own). */
#include <immintrin.h>
#include <stdint.h>
#define VITC_LOWP_SFX amx
#include "gemm_lowp_body.h"
#include "vmath_avx512.h"

#define NR 32
#define KBLOCK 16           /* k groups per tile step: 16 rows of a B tile, 64 bytes of an A row */
#define B_ROW (NR * 4)      /* bytes of one k group of a B panel (32 columns × 4 bytes) */
#define C_ROW (NR * 4)      /* bytes of one row of the [32][32] output tile */

typedef struct {
    uint8_t palette_id, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_tile_config;

/* palette 1, tiles 0-7 all 16 rows × 64 bytes. A static table, not stack stores: GCC does not see that
 * ldtilecfg reads its operand and drops such stores as dead. */
static const _Alignas(64) amx_tile_config tile_config = {
    .palette_id = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

void vitc_amx_task_begin(void) { _tile_loadconfig(&tile_config); }

void vitc_amx_task_end(void) { _tile_release(); }

/* act(x + bias) of 16 floats, the activation a constant in each inlined copy; the same operations as the tile
 * epilogue (ops_body.h), so the same bits. */
static inline __attribute__((always_inline)) __m512 finish16(const vitc_act act, __m512 v, const float *bias) {
    if (bias) v = _mm512_add_ps(v, _mm512_loadu_ps(bias));
    switch (act) {
    case VITC_ACT_GELU_ERF: return vgelu_erf__avx512(v);
    case VITC_ACT_GELU_TANH: return vgelu_tanh__avx512(v);
    case VITC_ACT_QUICK_GELU: return vquick_gelu__avx512(v);
    default: return v;
    }
}

/* Rows [r0, r1) of the previous tile: x = act(x + bias) in place, or (bf16) rounded to bf16 as A packing rounds
 * (lowp_bf16_bits16) into dst's 16-row tiles (vitc_amx_tile_c's prev_bf16). */
static inline __attribute__((always_inline)) void finish_rows(const vitc_act act, float *p, size_t ldp, size_t r0,
                                                              size_t r1, const float *bias, unsigned char *bf16,
                                                              size_t block) {
    for (size_t r = r0; r < r1; r++) {
        const __m512 lo = finish16(act, _mm512_loadu_ps(p + r * ldp), bias);
        const __m512 hi = finish16(act, _mm512_loadu_ps(p + r * ldp + 16), bias ? bias + 16 : NULL);
        if (bf16) {
            const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi32_epi16(lowp_bf16_bits16(lo))),
                                                    _mm512_cvtepi32_epi16(lowp_bf16_bits16(hi)), 1);
            _mm512_storeu_si512((void *)(bf16 + (r / 16) * block + (r % 16) * 64), both);
        } else {
            _mm512_storeu_ps(p + r * ldp, lo);
            _mm512_storeu_ps(p + r * ldp + 16, hi);
        }
    }
}

/* One 32×32 (two_halves) or 16×32 tile over kq groups; s8 picks tdpbusd over tdpbf16ps (a constant in each
 * inlined copy). The accumulators start from init (row stride ldi bytes; 0: every row from init[0..32)), else
 * zero. Each load as late as its first use: tiles are not renamed, so a load waits for the last multiply-add
 * that reads its register. With pf (vitc_amx_tile_c), each k step also prefetches a share of the next tile's
 * C rows for writing (its first store would otherwise wait for the lines' reads for ownership) and of the
 * next weight panel's lines into L1 (docs/performance.md). */
static inline __attribute__((always_inline)) void amx_tile(const int s8, const int two_halves, size_t kq,
                                                           const unsigned char *ap, const unsigned char *bp,
                                                           const unsigned char *init, size_t ldi,
                                                           unsigned char *cp, size_t ldc,
                                                           const vitc_amx_tile_c *pf, const vitc_act act) {
#define DP(c, x, y)                      \
    do {                                 \
        if (s8) _tile_dpbusd(c, x, y);   \
        else _tile_dpbf16ps(c, x, y);    \
    } while (0)
    const size_t half = 16 * kq * 4; /* the second 16-row block of A */
    if (init) {
        _tile_loadd(0, init, ldi);
        _tile_loadd(1, init + 64, ldi);
        if (two_halves) {
            _tile_loadd(2, init + 16 * ldi, ldi);
            _tile_loadd(3, init + 16 * ldi + 64, ldi);
        }
    } else {
        _tile_zero(0);
        _tile_zero(1);
        if (two_halves) {
            _tile_zero(2);
            _tile_zero(3);
        }
    }
    /* prefetch shares per k step: c_per lines of the next tile's C (line l: row l / 2, half l % 2), b_per of B */
    const size_t steps = kq / KBLOCK, c_lines = pf ? 2 * pf->next_c_rows : 0, b_lines = pf ? pf->next_b_lines : 0;
    const size_t c_per = (c_lines + steps - 1) / steps, b_per = (b_lines + steps - 1) / steps;
    const size_t p_rows = pf && pf->prev ? pf->prev_rows : 0, p_per = (p_rows + steps - 1) / steps;
    for (size_t g = 0, s = 0; g < kq; g += KBLOCK, s++) {
        _tile_loadd(4, ap + g * 64, 64);
        _tile_loadd(6, bp + g * B_ROW, B_ROW);
        DP(0, 4, 6);
        _tile_loadd(7, bp + g * B_ROW + 64, B_ROW);
        DP(1, 4, 7);
        if (two_halves) {
            _tile_loadd(5, ap + half + g * 64, 64);
            DP(2, 5, 6);
            DP(3, 5, 7);
        }
        for (size_t l = s * c_per; l < (s + 1) * c_per && l < c_lines; l++)
            _m_prefetchw((unsigned char *)pf->next_c + (l / 2) * pf->next_ldc * 4 + (l % 2) * 64);
        for (size_t l = s * b_per; l < (s + 1) * b_per && l < b_lines; l++)
            _mm_prefetch((const char *)pf->next_b + l * 64, _MM_HINT_T0);
        if (s * p_per < p_rows)
            finish_rows(act, pf->prev, pf->prev_ldc, s * p_per, (s + 1) * p_per < p_rows ? (s + 1) * p_per : p_rows,
                        pf->prev_bias, pf->prev_bf16, pf->prev_bf16_block);
    }
#undef DP
    _tile_stored(0, cp, ldc);
    _tile_stored(1, cp + 64, ldc);
    if (two_halves) {
        _tile_stored(2, cp + 16 * ldc, ldc);
        _tile_stored(3, cp + 16 * ldc + 64, ldc);
    }
}

static inline __attribute__((always_inline)) void amx_ukernel(const int s8, size_t mr, size_t kq, const void *a,
                                                              const void *b, void *tile) {
    if (mr < 1 || mr > 32 || kq % KBLOCK) __builtin_trap();
    if (mr > 16)
        amx_tile(s8, 1, kq, (const unsigned char *)a, (const unsigned char *)b, NULL, 0, (unsigned char *)tile, C_ROW,
                 NULL, VITC_ACT_NONE);
    else
        amx_tile(s8, 0, kq, (const unsigned char *)a, (const unsigned char *)b, NULL, 0, (unsigned char *)tile, C_ROW,
                 NULL, VITC_ACT_NONE);
}

void vitc_bf16_gemm_ukernel_32x32__amx(size_t mr, size_t kq, const void *VITC_RESTRICT a,
                                       const void *VITC_RESTRICT b, void *VITC_RESTRICT tile) {
    amx_ukernel(0, mr, kq, a, b, tile);
}

void vitc_s8_gemm_ukernel_32x32__amx(size_t mr, size_t kq, const void *VITC_RESTRICT a,
                                     const void *VITC_RESTRICT b, void *VITC_RESTRICT tile) {
    amx_ukernel(1, mr, kq, a, b, tile);
}

int vitc_amx_finishes(vitc_act act) {
    return act == VITC_ACT_NONE || act == VITC_ACT_GELU_ERF || act == VITC_ACT_GELU_TANH || act == VITC_ACT_QUICK_GELU;
}

/* an instance of amx_tile per (halves, activation of the previous tile) */
#define TILE_C(halves, act)                                                                                     \
    amx_tile(0, halves, kq, (const unsigned char *)a, (const unsigned char *)b, (const unsigned char *)t->init, \
             t->ldi * 4, (unsigned char *)t->c, t->ldc * 4, t, act)
#define TILE_C_ACT(halves)                                                    \
    do {                                                                      \
        switch (t->prev ? t->act : VITC_ACT_NONE) {                           \
        case VITC_ACT_GELU_ERF: TILE_C(halves, VITC_ACT_GELU_ERF); break;     \
        case VITC_ACT_GELU_TANH: TILE_C(halves, VITC_ACT_GELU_TANH); break;   \
        case VITC_ACT_QUICK_GELU: TILE_C(halves, VITC_ACT_QUICK_GELU); break; \
        default: TILE_C(halves, VITC_ACT_NONE); break;                        \
        }                                                                     \
    } while (0)

/* A bf16 tile of mr <= 32 rows over all of k, its accumulators started from t->init and stored to t->c
 * (vitc_amx_tile_c): C's own rows for full tiles, so the epilogue's copy of a stack tile (~15% of a bf16
 * GEMM) is gone; meanwhile it prefetches what the next call needs and finishes the previous tile. */
void vitc_bf16_gemm_tile_c__amx(size_t mr, size_t kq, const void *VITC_RESTRICT a, const void *VITC_RESTRICT b,
                                const vitc_amx_tile_c *t) {
    if (mr < 1 || mr > 32 || kq % KBLOCK || (t->prev && !vitc_amx_finishes(t->act))) __builtin_trap();
    if (mr > 16)
        TILE_C_ACT(1);
    else
        TILE_C_ACT(0);
}

void vitc_amx_finish_bf16(size_t rows, const float *tile, size_t ldt, const float *bias, vitc_act act,
                          unsigned char *dst, size_t block) {
    float *p = (float *)(uintptr_t)tile; /* only read: finish_rows writes dst */
    switch (act) {
    case VITC_ACT_GELU_ERF: finish_rows(VITC_ACT_GELU_ERF, p, ldt, 0, rows, bias, dst, block); break;
    case VITC_ACT_GELU_TANH: finish_rows(VITC_ACT_GELU_TANH, p, ldt, 0, rows, bias, dst, block); break;
    case VITC_ACT_QUICK_GELU: finish_rows(VITC_ACT_QUICK_GELU, p, ldt, 0, rows, bias, dst, block); break;
    default: finish_rows(VITC_ACT_NONE, p, ldt, 0, rows, bias, dst, block); break;
    }
    for (size_t r = rows; r < NR; r++) _mm512_storeu_si512((void *)(dst + (r / 16) * block + (r % 16) * 64), _mm512_setzero_si512());
}
