/* attention_amx.c — one (image, head) of bf16 attention on AMX tiles (tdpbf16ps), for models whose Linear
 * weights are bf16: Q, K, V and the unnormalized probabilities E rounded to bf16 (nearest even, as the GEMM's
 * A), every product summed in float32 in the tiles, the softmax in float32 between the two products.
 *
 * Per block of 32 query rows (everything in L1/L2):
 *   S[32, seq_pad] = Q_blk · K_hᵀ      2×2 accumulator tiles per 32 keys (2×1 for a last 16), hd/32 steps deep
 *   E = exp(scale · S - row max)      float32 (a table exponential), rounded to bf16 as it is made; 1 / Σ E
 *   O[32, hd]      = E · V_h          2×2 accumulator tiles per 32 columns of hd, seq_pad/32 steps deep, into
 *                                      the workspace; times 1 / Σ E into the output rows a block later
 * Software-pipelined: block i's Q·Kᵀ runs on the tiles while block i-1's O is written out and block i+1's Q
 * rounded (vector work that needs no tile result); the next head's rows are prefetched a share per
 * softmax row. Normalizing O instead of P: the same bf16 rounding step (of e instead of e / Σ e), a pass over
 * 32 × hd floats instead of 32 × seq.
 * Layouts (4-byte groups of two bf16, the pairs tdpbf16ps multiplies, as the GEMM's B panels):
 *   K_h packed: group g (hd indices 2g, 2g+1) of key j at Kp[g·seq_pad + j]  -> B tiles of 16 groups × 16 keys
 *   V_h packed: group g (keys 2g, 2g+1) of column c at Vp[g·hd + c]          -> B tiles of 16 groups × 16 cols
 *   Q_blk, E:   bf16 rows (hd / seq_pad elements)                            -> A tiles of 16 rows × 32 bf16
 * Keys past seq_kv are zero in Kp, Vp and E; query rows past the block's end are zero in Q_blk and E.
 * The rounding to bf16 is vcvtne2ps2bf16's (AVX512_BF16, which every AMX CPU has; attention_lowp.c checks):
 * nearest even, as lowp_bf16_bits, except that it flushes denormals to zero (|x| < 2^-126: no visible
 * change to a sum of products of O(1) values).
 * The tile configuration (all tiles 16 rows × 64 bytes) is the GEMM's (vitc_amx_task_begin). */
#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../gemm_lowp_convert.h"
#include "../gemm_lowp_internal.h"
#include "../attention_lowp.h"
#include "vmath_avx512.h"

#define BF16_FN static inline __attribute__((always_inline, target("avx512bf16")))

/* C[32 or 16 rows, 32 or 16 cols] (float32, row stride ldc bytes) = sum over steps s of A_s · B_s, where A_s
 * is the 16-row tile at a + s·a_step (row stride lda; the second 16 rows at + a_half) and B_s the tile of 16
 * columns at b + s·b_step (row stride ldb; the second 16 columns at + 64). Loads as late as their first use
 * (tiles are not renamed). */
static inline __attribute__((always_inline)) void tile_2x2(const int two_halves, const int two_cols, size_t steps,
                                                           const unsigned char *a, size_t a_step, size_t lda,
                                                           size_t a_half, const unsigned char *b, size_t b_step,
                                                           size_t ldb, unsigned char *c, size_t ldc) {
    _tile_zero(0);
    if (two_cols) _tile_zero(1);
    if (two_halves) _tile_zero(2);
    if (two_halves && two_cols) _tile_zero(3);
    for (size_t s = 0; s < steps; s++) {
        const unsigned char *as = a + s * a_step, *bs = b + s * b_step;
        _tile_loadd(4, as, lda);
        _tile_loadd(6, bs, ldb);
        _tile_dpbf16ps(0, 4, 6);
        if (two_cols) {
            _tile_loadd(7, bs + 64, ldb);
            _tile_dpbf16ps(1, 4, 7);
        }
        if (two_halves) {
            _tile_loadd(5, as + a_half, lda);
            _tile_dpbf16ps(2, 5, 6);
            if (two_cols) _tile_dpbf16ps(3, 5, 7);
        }
    }
    _tile_stored(0, c, ldc);
    if (two_cols) _tile_stored(1, c + 64, ldc);
    if (two_halves) _tile_stored(2, c + 16 * ldc, ldc);
    if (two_halves && two_cols) _tile_stored(3, c + 16 * ldc + 64, ldc);
}

/* 32 floats (two vectors) to 32 bf16 in order */
BF16_FN __m512i cvt32(__m512 lo, __m512 hi) { return (__m512i)_mm512_cvtne2ps_pbh(hi, lo); }

/* n <= 32 floats at x (the rest zero) to bf16 at d (32 written) */
BF16_FN void cvt_row32(const float *x, size_t n, uint16_t *d) {
    const __mmask16 m0 = n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1u);
    const __mmask16 m1 = n >= 32 ? 0xffff : n <= 16 ? 0 : (__mmask16)((1u << (n - 16)) - 1u);
    _mm512_storeu_si512(d, cvt32(_mm512_maskz_loadu_ps(m0, x), _mm512_maskz_loadu_ps(m1, x + 16)));
}

/* e_j = exp(y_j), y_j = scale · s_j - m, for j < n of a row (0 for j in [n, n_pad)), written as bf16 to p;
 * returns Σ e_j as 16 lanes. vt, vtb: vexp_tbl_nonpos's t as fma(s, vt, vtb); exact: vexp (clamped, any y). */
BF16_FN __m512 exp_row_bf16(const float *s, size_t n, size_t n_pad, float scale, float m, uint16_t *p, const int exact) {
    const __m512 vs = _mm512_set1_ps(scale), vneg = _mm512_set1_ps(-m), vt = _mm512_set1_ps(scale * VM_LOG2E),
                 vtb = _mm512_set1_ps(VM_EXP_TBL_KQ_MAGIC - m * VM_LOG2E);
#define EXP_OF(x)                                                                                        \
    (exact ? vexp__avx512(_mm512_fmadd_ps(x, vs, vneg))                                                  \
           : vexp_tbl_nonpos__avx512(_mm512_fmadd_ps(x, vs, vneg), _mm512_fmadd_ps(x, vt, vtb)))
    __m512 sum0 = _mm512_setzero_ps(), sum1 = _mm512_setzero_ps();
    size_t i;
    for (i = 0; i + 32 <= n; i += 32) {
        const __m512 s0 = _mm512_loadu_ps(s + i), s1 = _mm512_loadu_ps(s + i + 16);
        const __m512 e0 = EXP_OF(s0), e1 = EXP_OF(s1);
        sum0 = _mm512_add_ps(sum0, e0);
        sum1 = _mm512_add_ps(sum1, e1);
        _mm512_storeu_si512(p + i, cvt32(e0, e1));
    }
    for (; i < n_pad; i += 32) { /* the tail: masked-off lanes (keys past n) are 0 */
        const size_t left = i < n ? n - i : 0;
        const __mmask16 m0 = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1u);
        const __mmask16 m1 = left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1u);
        const __m512 s0 = _mm512_maskz_loadu_ps(m0, s + i), s1 = _mm512_maskz_loadu_ps(m1, s + i + 16);
        const __m512 e0 = _mm512_maskz_mov_ps(m0, EXP_OF(s0));
        const __m512 e1 = m1 ? _mm512_maskz_mov_ps(m1, EXP_OF(s1)) : _mm512_setzero_ps();
        sum0 = _mm512_add_ps(sum0, e0);
        sum1 = _mm512_add_ps(sum1, e1);
        _mm512_storeu_si512(p + i, cvt32(e0, e1));
    }
#undef EXP_OF
    return _mm512_add_ps(sum0, sum1);
}

/* The next head's rows into L2, the share that goes with query row i (its Q row, its K and V rows where
 * seq_kv = seq_q): their rows are KBs apart (a stride the hardware prefetchers don't follow), and at batch 8
 * the qkv rows are out of cache (as attention_body.h). Spread over the softmax rows, so that the line fill
 * buffers drain between shares instead of stalling on a block's worth at once. */
static inline void prefetch_next_share(const vitc_bf16_head_args *h, size_t i) {
    const size_t ns[3] = {h->seq_q, h->seq_kv, h->seq_kv}, ld[3] = {h->ldq, h->ldk, h->ldv};
    for (int m = 0; m < 3; m++)
        if (h->next[m])
            for (size_t r = ns[m] * i / h->seq_q; r < ns[m] * (i + 1) / h->seq_q; r++)
                for (size_t c = 0; c < h->head_dim; c += 16)
                    _mm_prefetch((const char *)(h->next[m] + r * ld[m] + c), _MM_HINT_T1);
}

/* lane i = the max (is_max) or the sum of v[i]'s 16 lanes: four steps (b = 8, 4, 2, 1) that each pair
 * vectors i and i + b lane block by lane block and combine, 16 vectors to 8 to 4 to 2 to 1 (30 permutes and
 * 15 operations for what 16 separate reductions do in ~130) */
BF16_FN __m512 reduce16(__m512 v[16], const int is_max) {
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int b = 8; b >= 1; b /= 2) {
        /* lane c takes from vector i + b where c has bit b; lo: its lane without bit b, hi: with it */
        const __mmask16 second = _mm512_test_epi32_mask(iota, _mm512_set1_epi32(b));
        const __m512i from = _mm512_mask_mov_epi32(_mm512_setzero_si512(), second, _mm512_set1_epi32(16));
        const __m512i lo = _mm512_or_si512(_mm512_andnot_si512(_mm512_set1_epi32(b), iota), from);
        const __m512i hi = _mm512_or_si512(_mm512_or_si512(iota, _mm512_set1_epi32(b)), from);
        for (int i = 0; i < b; i++) {
            const __m512 x = _mm512_permutex2var_ps(v[i], lo, v[i + b]), y = _mm512_permutex2var_ps(v[i], hi, v[i + b]);
            v[i] = is_max ? _mm512_max_ps(x, y) : _mm512_add_ps(x, y);
        }
    }
    return v[0];
}

/* Rows r0 .. r0 + 16 of the block's scores (those below `rows`; the others' E rows zeroed) to the unnormalized
 * probabilities e_j = exp(scale · s_j - max_j scale · s_j), in float32, written as bf16 to P[·, 0, n_pad)
 * (zeros past n); inv[r] = 1 / Σ_j e_j (float32 sum of the unrounded e_j). The max of the raw scores gives
 * the same shift (scale > 0, rounding is monotone). One pass for the exponentials, their sum and the
 * rounding: the normalization waits for the output rows (a 32-wide row of O instead of a seq-wide row of
 * P). The rows' maxes and sums are reduced 16 at a time. The table exponential holds for y > -1e5 and gives
 * 0 down to ~-1e26; a row whose sum is not finite (scores beyond that, or NaN) is redone with vexp. */
BF16_FN void softmax_rows_bf16(const vitc_bf16_head_args *h, size_t i0, size_t r0, size_t rows, const float *s,
                               size_t n_pad, uint16_t *p, float *inv) {
    const size_t n = h->seq_kv;
    const __mmask16 tail = (__mmask16)((1u << (n % 16)) - 1u);
    __m512 v[16];
    for (size_t r = 0; r < 16; r++) {
        const float *sr = s + (r0 + r) * n_pad;
        __m512 vmax = _mm512_set1_ps(-INFINITY);
        size_t i;
        if (r0 + r < rows) {
            for (i = 0; i + 16 <= n; i += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(sr + i));
            if (i < n) vmax = _mm512_max_ps(vmax, _mm512_mask_loadu_ps(vmax, tail, sr + i));
        }
        v[r] = vmax;
    }
    _Alignas(64) float m[16], total[16];
    _mm512_store_ps(m, _mm512_mul_ps(reduce16(v, 1), _mm512_set1_ps(h->scale)));
    for (size_t r = 0; r < 16; r++) {
        if (r0 + r < rows) {
            prefetch_next_share(h, i0 + r0 + r);
            v[r] = exp_row_bf16(s + (r0 + r) * n_pad, n, n_pad, h->scale, m[r], p + (r0 + r) * n_pad, 0);
        } else {
            memset(p + (r0 + r) * n_pad, 0, n_pad * 2);
            v[r] = _mm512_set1_ps(1.0f);
        }
    }
    __m512 sums = reduce16(v, 0);
    const __mmask16 bad = (__mmask16)~_mm512_cmp_ps_mask(sums, _mm512_set1_ps(FLT_MAX), _CMP_LE_OQ);
    if (bad) {
        _mm512_store_ps(total, sums);
        for (size_t r = 0; r < 16; r++)
            if (bad >> r & 1)
                total[r] = _mm512_reduce_add_ps(
                    exp_row_bf16(s + (r0 + r) * n_pad, n, n_pad, h->scale, m[r], p + (r0 + r) * n_pad, 1));
        sums = _mm512_load_ps(total);
    }
    _mm512_storeu_ps(inv + r0, _mm512_div_ps(_mm512_set1_ps(1.0f), sums));
}

/* dst[16 rows] = the 16 × 16 transpose of r's 32-bit lanes, in place: four steps, each swapping the
 * off-diagonal b × b blocks (b = 8, 4, 2, 1) between rows i and i + b with two-source permutes */
BF16_FN void transpose16_epi32(__m512i r[16]) {
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int b = 8; b >= 1; b /= 2) {
        const __mmask16 high = _mm512_test_epi32_mask(iota, _mm512_set1_epi32(b)); /* lanes c with bit b */
        const __m512i flip = _mm512_xor_si512(iota, _mm512_set1_epi32(b)), other = _mm512_set1_epi32(16);
        /* row i (bit b clear) keeps its lanes without bit b and takes row i+b's lane c-b at c, and back */
        const __m512i lo = _mm512_mask_blend_epi32(high, iota, _mm512_or_si512(flip, other));
        const __m512i hi = _mm512_mask_blend_epi32(high, flip, _mm512_or_si512(iota, other));
        for (int i = 0; i < 16; i++)
            if (!(i & b)) {
                const __m512i a = r[i], c = r[i + b];
                r[i] = _mm512_permutex2var_epi32(a, lo, c);
                r[i + b] = _mm512_permutex2var_epi32(a, hi, c);
            }
    }
}

/* K_h to Kp, 16 keys × 16 groups at a time: each key's 32 values rounded to bf16 pairs (one vector of 16
 * groups), the 16 vectors transposed to 16 rows of Kp (one group, 16 keys each); keys past seq_kv zero */
BF16_FN void pack_k(const float *k, size_t ldk, size_t seq_kv, size_t seq_pad, size_t hd, uint32_t *kp) {
    for (size_t j0 = 0; j0 < seq_pad; j0 += 16)
        for (size_t c = 0; c < hd; c += 32) {
            __m512i r[16];
            for (size_t i = 0; i < 16; i++)
                r[i] = j0 + i < seq_kv ? cvt32(_mm512_loadu_ps(k + (j0 + i) * ldk + c), _mm512_loadu_ps(k + (j0 + i) * ldk + c + 16))
                                       : _mm512_setzero_si512();
            transpose16_epi32(r);
            for (size_t g = 0; g < 16; g++) _mm512_store_si512(kp + (c / 2 + g) * seq_pad + j0, r[g]);
        }
}

/* Query rows i0.. of the block (up to 32; a 16-row tile half past seq_q zero) to bf16 at qb [32, hd] */
BF16_FN void round_q_block(const vitc_bf16_head_args *h, size_t i0, uint16_t *qb) {
    const size_t rows = h->seq_q - i0 < 32 ? h->seq_q - i0 : 32, tile_rows = rows > 16 ? 32 : 16;
    for (size_t r = 0; r < tile_rows; r++)
        for (size_t c = 0; c < h->head_dim; c += 32) {
            if (r < rows)
                cvt_row32(h->q + (i0 + r) * h->ldq + c, 32, qb + r * h->head_dim + c);
            else
                memset(qb + r * h->head_dim + c, 0, 64);
        }
}

/* Output rows i0 .. i0 + rows = the block's unnormalized O rows (ob [32, hd]) times their 1 / Σ e */
BF16_FN void write_o_block(const vitc_bf16_head_args *h, size_t i0, size_t rows, const float *ob, const float *inv) {
    for (size_t r = 0; r < rows; r++) {
        const __m512 v = _mm512_set1_ps(inv[r]);
        for (size_t c = 0; c < h->head_dim; c += 16)
            _mm512_storeu_ps(h->o + (i0 + r) * h->ldo + c, _mm512_mul_ps(_mm512_load_ps(ob + r * h->head_dim + c), v));
    }
}

__attribute__((target("avx512bf16"))) void vitc_bf16_attention_head__amx(const vitc_bf16_head_args *h, unsigned char *ws) {
    const size_t seq_q = h->seq_q, seq_kv = h->seq_kv, hd = h->head_dim, seq_pad = (seq_kv + 31) / 32 * 32;
    const size_t groups_kv = seq_pad / 2;
    size_t off[VITC_BF16_ATTENTION_PARTS];
    vitc_bf16_attention_layout(seq_kv, hd, off);
    uint32_t *kp = (uint32_t *)(void *)(ws + off[0]), *vp = (uint32_t *)(void *)(ws + off[1]);
    uint16_t *qbs = (uint16_t *)(void *)(ws + off[2]), *pb = (uint16_t *)(void *)(ws + off[4]);
    float *s = (float *)(void *)(ws + off[3]), *ob = (float *)(void *)(ws + off[5]);

    pack_k(h->k, h->ldk, seq_kv, seq_pad, hd, kp);
    /* V_h: rows 2g and 2g + 1 interleaved column by column (vpermw of the two rows' bf16) */
    static const uint16_t interleave_idx[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                                8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    const __m512i interleave = _mm512_loadu_si512(interleave_idx);
    for (size_t g = 0; g < groups_kv; g++) {
        uint32_t *dst = vp + g * hd;
        const size_t j = 2 * g;
        for (size_t c = 0; c < hd; c += 16) {
            const __m512 v0 = j < seq_kv ? _mm512_loadu_ps(h->v + j * h->ldv + c) : _mm512_setzero_ps();
            const __m512 v1 = j + 1 < seq_kv ? _mm512_loadu_ps(h->v + (j + 1) * h->ldv + c) : _mm512_setzero_ps();
            _mm512_storeu_si512(dst + c, _mm512_permutexvar_epi16(interleave, cvt32(v0, v1)));
        }
    }

    /* Per block: its Q·Kᵀ runs on the tiles while the previous block's O is normalized and written out and
     * the next block's Q rounded (vector work that doesn't wait for the tiles); then its softmax and P·V. */
    float inv[2][32];
    round_q_block(h, 0, qbs);
    for (size_t i0 = 0, blk = 0; i0 < seq_q; i0 += 32, blk++) {
        const size_t rows = seq_q - i0 < 32 ? seq_q - i0 : 32;
        const int two = rows > 16;
        const size_t tile_rows = two ? 32 : 16;
        const uint16_t *qb = qbs + (blk & 1) * 32 * hd;
        /* S = Q_blk · K_hᵀ, 32 keys at a time (16 where no more are left: the softmax reads none past seq_kv) */
        for (size_t kb = 0; kb < seq_pad; kb += 32) {
            const unsigned char *b = (const unsigned char *)(kp + kb);
            unsigned char *c = (unsigned char *)(s + kb);
            const int cols = seq_kv - kb > 16;
            if (two)
                tile_2x2(1, cols, hd / 32, (const unsigned char *)qb, 64, hd * 2, 16 * hd * 2, b, 16 * seq_pad * 4,
                         seq_pad * 4, c, seq_pad * 4);
            else
                tile_2x2(0, cols, hd / 32, (const unsigned char *)qb, 64, hd * 2, 0, b, 16 * seq_pad * 4,
                         seq_pad * 4, c, seq_pad * 4);
        }
        if (i0 > 0) write_o_block(h, i0 - 32, 32, ob, inv[(blk - 1) & 1]);
        if (i0 + 32 < seq_q) round_q_block(h, i0 + 32, qbs + ((blk + 1) & 1) * 32 * hd);
        float *iv = inv[blk & 1];
        for (size_t r0 = 0; r0 < tile_rows; r0 += 16) softmax_rows_bf16(h, i0, r0, rows, s, seq_pad, pb, iv);
        /* O = P · V_h (unnormalized), 32 columns of hd at a time */
        for (size_t cb = 0; cb < hd; cb += 32) {
            const unsigned char *b = (const unsigned char *)(vp + cb);
            unsigned char *c = (unsigned char *)(ob + cb);
            if (two)
                tile_2x2(1, 1, seq_pad / 32, (const unsigned char *)pb, 64, seq_pad * 2, 16 * seq_pad * 2, b,
                         16 * hd * 4, hd * 4, c, hd * 4);
            else
                tile_2x2(0, 1, seq_pad / 32, (const unsigned char *)pb, 64, seq_pad * 2, 0, b, 16 * hd * 4, hd * 4, c,
                         hd * 4);
        }
        if (i0 + 32 >= seq_q) write_o_block(h, i0, rows, ob, iv);
    }
}
