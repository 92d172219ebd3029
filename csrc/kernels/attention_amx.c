/* attention_amx.c — one (image, head) of bf16 attention on AMX tiles (tdpbf16ps), for models whose Linear
 * weights are bf16: Q, K, V and the probabilities P rounded to bf16 (nearest even, as the GEMM's A), every
 * product summed in float32 in the tiles, the softmax in float32 between the two products.
 *
 * Per block of 32 query rows (everything in L1):
 *   S[32, seq_pad] = Q_blk · K_hᵀ      2×2 accumulator tiles per 32 keys, hd/32 tile steps deep
 *   P = softmax(scale · S) in float32 (the AVX-512 softmax), rounded to bf16, keys past seq_kv zero
 *   O[32, hd]      = P · V_h          2×2 accumulator tiles per 32 columns of hd, seq_pad/32 steps deep,
 *                                      stored straight into the output rows (a stack tile at the edge block)
 * Layouts (4-byte groups of two bf16, the pairs tdpbf16ps multiplies, as the GEMM's B panels):
 *   K_h packed: group g (hd indices 2g, 2g+1) of key j at Kp[g·seq_pad + j]  -> B tiles of 16 groups × 16 keys
 *   V_h packed: group g (keys 2g, 2g+1) of column c at Vp[g·hd + c]          -> B tiles of 16 groups × 16 cols
 *   Q_blk, P:   bf16 rows (hd / seq_pad elements)                            -> A tiles of 16 rows × 32 bf16
 * Keys past seq_kv are zero in Kp, Vp and P; query rows past the block's end are zero in Q_blk and P.
 * The tile configuration (all tiles 16 rows × 64 bytes) is the GEMM's (vitc_amx_task_begin). */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "../gemm_lowp_convert.h"
#include "../gemm_lowp_internal.h"
#include "../attention_lowp.h"

/* C[32 or 16 rows, 32 cols] (float32, row stride ldc bytes) = sum over steps s of A_s · B_s, where A_s is the
 * 16-row tile at a + s·a_step (row stride lda; the second 16 rows at + a_half) and B_s the two tiles of 16
 * columns at b + s·b_step and + 64 (row stride ldb). Loads as late as their first use (tiles are not
 * renamed). */
static inline __attribute__((always_inline)) void tile_2x2(const int two_halves, size_t steps,
                                                           const unsigned char *a, size_t a_step, size_t lda,
                                                           size_t a_half, const unsigned char *b, size_t b_step,
                                                           size_t ldb, unsigned char *c, size_t ldc) {
    _tile_zero(0);
    _tile_zero(1);
    if (two_halves) {
        _tile_zero(2);
        _tile_zero(3);
    }
    for (size_t s = 0; s < steps; s++) {
        const unsigned char *as = a + s * a_step, *bs = b + s * b_step;
        _tile_loadd(4, as, lda);
        _tile_loadd(6, bs, ldb);
        _tile_dpbf16ps(0, 4, 6);
        _tile_loadd(7, bs + 64, ldb);
        _tile_dpbf16ps(1, 4, 7);
        if (two_halves) {
            _tile_loadd(5, as + a_half, lda);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
        }
    }
    _tile_stored(0, c, ldc);
    _tile_stored(1, c + 64, ldc);
    if (two_halves) {
        _tile_stored(2, c + 16 * ldc, ldc);
        _tile_stored(3, c + 16 * ldc + 64, ldc);
    }
}

static inline uint32_t bf16_pair(float lo, float hi) {
    return (uint32_t)lowp_bf16_bits(lo) | (uint32_t)lowp_bf16_bits(hi) << 16;
}

void vitc_bf16_attention_head__amx(const vitc_bf16_head_args *h, unsigned char *ws) {
    const size_t seq_q = h->seq_q, seq_kv = h->seq_kv, hd = h->head_dim, seq_pad = (seq_kv + 31) / 32 * 32;
    const size_t groups_hd = hd / 2, groups_kv = seq_pad / 2;
    size_t off[5];
    vitc_bf16_attention_layout(seq_kv, hd, off);
    uint32_t *kp = (uint32_t *)(void *)(ws + off[0]), *vp = (uint32_t *)(void *)(ws + off[1]);
    uint16_t *qb = (uint16_t *)(void *)(ws + off[2]), *pb = (uint16_t *)(void *)(ws + off[4]);
    float *s = (float *)(void *)(ws + off[3]);

    for (size_t j = 0; j < seq_pad; j++) {
        if (j >= seq_kv) {
            for (size_t g = 0; g < groups_hd; g++) kp[g * seq_pad + j] = 0;
            continue;
        }
        const float *kr = h->k + j * h->ldk;
        for (size_t g = 0; g < groups_hd; g++) kp[g * seq_pad + j] = bf16_pair(kr[2 * g], kr[2 * g + 1]);
    }
    for (size_t g = 0; g < groups_kv; g++) {
        uint32_t *dst = vp + g * hd;
        if (2 * g + 1 < seq_kv) {
            const float *v0 = h->v + 2 * g * h->ldv, *v1 = v0 + h->ldv;
            for (size_t c = 0; c < hd; c++) dst[c] = bf16_pair(v0[c], v1[c]);
        } else if (2 * g < seq_kv) {
            const float *v0 = h->v + 2 * g * h->ldv;
            for (size_t c = 0; c < hd; c++) dst[c] = bf16_pair(v0[c], 0.0f);
        } else {
            memset(dst, 0, hd * 4);
        }
    }

    _Alignas(64) float edge[32 * 32];
    for (size_t i0 = 0; i0 < seq_q; i0 += 32) {
        const size_t rows = seq_q - i0 < 32 ? seq_q - i0 : 32;
        const int two = rows > 16;
        const size_t tile_rows = two ? 32 : 16;
        for (size_t r = 0; r < tile_rows; r++) {
            const float *qr = h->q + (i0 + r) * h->ldq;
            for (size_t c = 0; c < hd; c++) qb[r * hd + c] = r < rows ? lowp_bf16_bits(qr[c]) : 0;
        }
        /* S = Q_blk · K_hᵀ, 32 keys at a time */
        for (size_t kb = 0; kb < seq_pad; kb += 32) {
            const unsigned char *b = (const unsigned char *)(kp + kb);
            unsigned char *c = (unsigned char *)(s + kb);
            if (two)
                tile_2x2(1, hd / 32, (const unsigned char *)qb, 64, hd * 2, 16 * hd * 2, b, 16 * seq_pad * 4,
                         seq_pad * 4, c, seq_pad * 4);
            else
                tile_2x2(0, hd / 32, (const unsigned char *)qb, 64, hd * 2, 0, b, 16 * seq_pad * 4, seq_pad * 4, c,
                         seq_pad * 4);
        }
        h->softmax_rows(rows, seq_kv, h->scale, s, seq_pad);
        for (size_t r = 0; r < tile_rows; r++) {
            const float *sr = s + r * seq_pad;
            uint16_t *pr = pb + r * seq_pad;
            if (r < rows) {
                for (size_t j = 0; j < seq_kv; j++) pr[j] = lowp_bf16_bits(sr[j]);
                for (size_t j = seq_kv; j < seq_pad; j++) pr[j] = 0;
            } else {
                memset(pr, 0, seq_pad * 2);
            }
        }
        /* O = P · V_h, 32 columns of hd at a time: into the output rows, or the stack at the edge */
        for (size_t cb = 0; cb < hd; cb += 32) {
            const unsigned char *b = (const unsigned char *)(vp + cb);
            const int direct = rows == tile_rows;
            unsigned char *c = direct ? (unsigned char *)(h->o + i0 * h->ldo + cb) : (unsigned char *)edge;
            const size_t ldc = direct ? h->ldo * 4 : 32 * 4;
            if (two)
                tile_2x2(1, seq_pad / 32, (const unsigned char *)pb, 64, seq_pad * 2, 16 * seq_pad * 2, b,
                         16 * hd * 4, hd * 4, c, ldc);
            else
                tile_2x2(0, seq_pad / 32, (const unsigned char *)pb, 64, seq_pad * 2, 0, b, 16 * hd * 4, hd * 4, c,
                         ldc);
            if (!direct)
                for (size_t r = 0; r < rows; r++) memcpy(h->o + (i0 + r) * h->ldo + cb, edge + r * 32, 32 * 4);
        }
    }
}
