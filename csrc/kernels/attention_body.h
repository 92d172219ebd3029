/* attention_body.h — one (image, head) of attention, written once against the vm_* layer; included only
 * by attention_avx2.c / attention_avx512.c after their vmath_<isa>.h, with ATT_MR (tile rows) and
 * ATT_TRANSPOSE (an in-register VM_LANES × VM_LANES transpose of vm_f r[VM_LANES], for pack_k) defined.
 * Static code per ISA file.
 *
 * The head runs block by block of ATT_MR query rows, everything of a block staying in L1:
 *   E[rows, seq] = Q_rows · K_hᵀ            (register tiles ATT_MR × NR, Q read in place: no packing)
 *   E = exp(scale · E - rowmax), l = rowsum (one pass after the maxima; 1/l is not applied here...)
 *   O[rows, hd] = (E · V_h) · diag(1/l)     (... but folded into the tile store; V_h read in place)
 * so the scores are never normalized in a separate pass and never leave L1 (unless probs are asked for;
 * then E is written there and normalized after its P·V). Tile = ATT_MR rows × NR = 2 vectors; panels whose
 * columns fit one vector (the edge of seq = 197: 5 columns) skip the second vector's FMAs. */

#define ATT_NR (2 * VM_LANES)

/* An ISA may provide att_tile_half: the tile for nr <= ATT_HALF_TILE_LANES columns in half-width vectors
 * (the 5 edge columns of seq = 197 on AVX-512: Zen 4 runs a 256-bit FMA in half the slots of a 512-bit one). */
#ifndef ATT_HALF_TILE_LANES
#define ATT_HALF_TILE_LANES 0
static inline void VM_FN(att_tile_half)(const int rows, size_t nr, size_t kc, const float *a, size_t lda,
                                        const float *b, size_t ldb, float *c, size_t ldc, const float *rowscale) {
    (void)rows, (void)nr, (void)kc, (void)a, (void)lda, (void)b, (void)ldb, (void)c, (void)ldc, (void)rowscale;
}
#endif

/* Stores the columns [0, nr) of one tile row held in v0 | v1 (masked at the edge). */
static inline __attribute__((always_inline)) void VM_FN(att_store_row)(float *c, size_t nr, vm_f v0, vm_f v1) {
    if (nr >= ATT_NR) {
        vm_storeu(c, v0);
        vm_storeu(c + VM_LANES, v1);
    } else if (nr >= VM_LANES) {
        vm_storeu(c, v0);
        if (nr > VM_LANES) vm_store_tail(c + VM_LANES, nr - VM_LANES, v1);
    } else {
        vm_store_tail(c, nr, v0);
    }
}

/* One vector of a B row: cnt (1..VM_LANES) columns; masked (no read past them) when the variant says so. */
static inline __attribute__((always_inline)) vm_f VM_FN(att_load_b)(const float *p, size_t cnt, int masked) {
    return masked ? vm_load_tail(p, cnt, 0.0f) : vm_loadu(p);
}

/* C[rows, nr] = A[rows, kc] · B[kc, nr], times rowscale[r] per row when rowscale is not NULL.
 * A row-major with row stride lda (broadcast straight from its rows); B rows of nr <= ATT_NR columns with
 * row stride ldb: a packed panel (ldb = ATT_NR) or V_h in place (ldb = ldqkv). Variants: halves = 1 when
 * nr <= VM_LANES (the second vector's FMAs skipped); edge = 1 when the last vector is partial (masked
 * loads: V_h in place must not be read past its columns). */
static inline __attribute__((always_inline)) void VM_FN(att_tile)(const int rows, const int halves, const int edge,
                                                                  size_t nr, size_t kc,
                                                                  const float *VITC_RESTRICT a, size_t lda,
                                                                  const float *VITC_RESTRICT b, size_t ldb,
                                                                  float *VITC_RESTRICT c, size_t ldc,
                                                                  const float *VITC_RESTRICT rowscale) {
    vm_f acc0[ATT_MR], acc1[ATT_MR];
#pragma GCC unroll 16
    for (int r = 0; r < rows; r++) {
        acc0[r] = vm_set1(0.0f);
        acc1[r] = vm_set1(0.0f);
    }
    const size_t last = nr - (size_t)(halves - 1) * VM_LANES; /* columns in the last vector, 1..VM_LANES */
#pragma GCC unroll 4
    for (size_t p = 0; p < kc; p++) {
        const float *bp = b + p * ldb;
        const vm_f b0 = halves == 2 ? vm_loadu(bp) : VM_FN(att_load_b)(bp, last, edge);
        const vm_f b1 = halves == 2 ? VM_FN(att_load_b)(bp + VM_LANES, last, edge) : b0;
#pragma GCC unroll 16
        for (int r = 0; r < rows; r++) {
            const vm_f ar = vm_set1(a[(size_t)r * lda + p]);
            acc0[r] = vm_fma(ar, b0, acc0[r]);
            if (halves == 2) acc1[r] = vm_fma(ar, b1, acc1[r]);
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < rows; r++) {
        vm_f v0 = acc0[r], v1 = acc1[r];
        if (rowscale) {
            const vm_f s = vm_set1(rowscale[r]);
            v0 = vm_mul(v0, s);
            v1 = vm_mul(v1, s);
        }
        VM_FN(att_store_row)(c + (size_t)r * ldc, nr, v0, v1);
    }
}

#define ATT_TILE_CASE(R)                                                                                 \
    case R:                                                                                              \
        if (nr == ATT_NR)                                                                                \
            VM_FN(att_tile)(R, 2, 0, nr, kc, a, lda, b, ldb, c, ldc, rowscale);                          \
        else if (nr > VM_LANES)                                                                          \
            VM_FN(att_tile)(R, 2, 1, nr, kc, a, lda, b, ldb, c, ldc, rowscale);                          \
        else if (nr == VM_LANES)                                                                         \
            VM_FN(att_tile)(R, 1, 0, nr, kc, a, lda, b, ldb, c, ldc, rowscale);                          \
        else if (ATT_HALF_TILE_LANES && nr <= ATT_HALF_TILE_LANES)                                       \
            VM_FN(att_tile_half)(R, nr, kc, a, lda, b, ldb, c, ldc, rowscale);                           \
        else                                                                                             \
            VM_FN(att_tile)(R, 1, 1, nr, kc, a, lda, b, ldb, c, ldc, rowscale);                          \
        break;

/* the tile with a compile-time row count (an edge block costs only its rows) */
static void VM_FN(att_block)(size_t rows, size_t nr, size_t kc, const float *VITC_RESTRICT a, size_t lda,
                             const float *VITC_RESTRICT b, size_t ldb, float *VITC_RESTRICT c, size_t ldc,
                             const float *VITC_RESTRICT rowscale) {
    VITC_PRECONDITION(nr >= 1 && nr <= ATT_NR);
    switch (rows) {
#if ATT_MR >= 14
        ATT_TILE_CASE(14)
        ATT_TILE_CASE(13)
        ATT_TILE_CASE(12)
        ATT_TILE_CASE(11)
        ATT_TILE_CASE(10)
        ATT_TILE_CASE(9)
        ATT_TILE_CASE(8)
        ATT_TILE_CASE(7)
#endif
        ATT_TILE_CASE(6)
        ATT_TILE_CASE(5)
        ATT_TILE_CASE(4)
        ATT_TILE_CASE(3)
        ATT_TILE_CASE(2)
        ATT_TILE_CASE(1)
    default: VITC_PRECONDITION(rows >= 1 && rows <= ATT_MR);
    }
}
#undef ATT_TILE_CASE

/* 2^z for softmax arguments z = (x·scale - max)·log2(e) <= ~0: z = n + f, n = round(z), |f| <= 1/2,
 * 2^f by its degree-6 Taylor polynomial (relative error <= 1.2e-7), times 2^n (vscalefps: one rounding,
 * gradual underflow). Base 2 folds log2(e) into the argument's FMA: 7 multiply-adds per vector instead of
 * the 10 of e^y with Cody–Waite reduction (the FMA pipes are what the exp pass is bound by). */
static inline vm_f VM_FN(att_exp2)(vm_f z) {
    z = vm_max(vm_set1(-151.0f), z); /* 2^-151 rounds to 0 already */
    const vm_f n = vm_round(z), f = vm_sub(z, n);
    vm_f p = vm_fma(vm_set1(1.5403530393381606e-4f), f, vm_set1(1.3333558146428443e-3f));
    p = vm_fma(p, f, vm_set1(9.618129107628477e-3f));
    p = vm_fma(p, f, vm_set1(5.550410866482158e-2f));
    p = vm_fma(p, f, vm_set1(2.402265069591007e-1f));
    p = vm_fma(p, f, vm_set1(6.931471805599453e-1f));
    p = vm_fma(p, f, vm_set1(1.0f));
    return vm_scale2n(p, n);
}

/* max(x[0..n)) */
static inline float VM_FN(att_max_row)(const float *x, size_t n) {
    size_t i;
    vm_f m0 = vm_set1(-INFINITY), m1 = m0;
    for (i = 0; i + 2 * VM_LANES <= n; i += 2 * VM_LANES) {
        m0 = vm_max(m0, vm_loadu(x + i));
        m1 = vm_max(m1, vm_loadu(x + i + VM_LANES));
    }
    for (; i + VM_LANES <= n; i += VM_LANES) m0 = vm_max(m0, vm_loadu(x + i));
    if (i < n) m1 = vm_max(m1, vm_load_tail(x + i, n - i, -INFINITY));
    return vm_hmax(vm_max(m0, m1));
}

/* x[0..n) = exp(scale · x - scale · xmax) = 2^(x · c - xmax · c), c = scale · log2(e), in place;
 * returns 1 / sum. As vitc_f32_softmax_rows without its normalizing pass. The argument's error, ~|z|
 * ulps, is that of transformers' float32 scale · x - max. */
static inline float VM_FN(att_exp_row)(float *x, size_t n, float scale, float xmax) {
    const float c = scale * VM_LOG2E;
    const vm_f vs = vm_set1(c), neg = vm_set1(-(xmax * c));
    size_t i;
    vm_f s0 = vm_set1(0.0f), s1 = s0;
    for (i = 0; i + 2 * VM_LANES <= n; i += 2 * VM_LANES) {
        const vm_f e0 = VM_FN(att_exp2)(vm_fma(vm_loadu(x + i), vs, neg));
        const vm_f e1 = VM_FN(att_exp2)(vm_fma(vm_loadu(x + i + VM_LANES), vs, neg));
        vm_storeu(x + i, e0);
        vm_storeu(x + i + VM_LANES, e1);
        s0 = vm_add(s0, e0);
        s1 = vm_add(s1, e1);
    }
    for (; i + VM_LANES <= n; i += VM_LANES) {
        const vm_f e = VM_FN(att_exp2)(vm_fma(vm_loadu(x + i), vs, neg));
        vm_storeu(x + i, e);
        s0 = vm_add(s0, e);
    }
    if (i < n) {
        vm_store_tail(x + i, n - i, VM_FN(att_exp2)(vm_fma(vm_load_tail(x + i, n - i, 0.0f), vs, neg)));
        s1 = vm_add(s1, vm_load_tail(x + i, n - i, 0.0f)); /* masked-off lanes must not count */
    }
    return 1.0f / vm_hsum(vm_add(s0, s1));
}

static void VM_FN(att_scale_row)(float *x, size_t n, float s) {
    const vm_f vs = vm_set1(s);
    size_t i;
    for (i = 0; i + VM_LANES <= n; i += VM_LANES) vm_storeu(x + i, vm_mul(vm_loadu(x + i), vs));
    if (i < n) vm_store_tail(x + i, n - i, vm_mul(vm_load_tail(x + i, n - i, 0.0f), vs));
}

/* Prefetch into L2 block blk of `blocks` of the next head's Q, K, V, O rows (an equal share of each):
 * their rows are KBs apart, a stride the hardware prefetchers don't follow well, and at batch 8 qkv
 * (14.5 MB) is mostly out of cache: without this, batch 8 took ~15% longer per layer (13.1 vs 11.3 ms,
 * 1 thread). */
static void VM_FN(att_prefetch_rows)(const vitc_attention_next *next, size_t hd, size_t blk, size_t blocks) {
    for (int m = 0; m < 4; m++) {
        if (!next->rows[m]) continue;
        const size_t r0 = next->nrows[m] * blk / blocks, r1 = next->nrows[m] * (blk + 1) / blocks;
        for (size_t r = r0; r < r1; r++)
            for (size_t c = 0; c < hd; c += 16)
                _mm_prefetch((const char *)(next->rows[m] + r * next->ld[m] + c), _MM_HINT_T1);
    }
}

/* Hides the masked keys of rows [i0, i0 + rows) of E (row stride lde): -inf, so that exp gives exactly 0. */
static void VM_FN(att_mask_rows)(float *e, size_t lde, size_t i0, size_t rows, size_t seq_kv, int causal,
                                 const unsigned char *key_mask) {
    for (size_t r = 0; r < rows; r++) {
        float *er = e + r * lde;
        if (key_mask)
            for (size_t j = 0; j < seq_kv; j++)
                if (!key_mask[j]) er[j] = -INFINITY;
        if (causal)
            for (size_t j = i0 + r + 1; j < seq_kv; j++) er[j] = -INFINITY;
    }
}

void VM_FN(vitc_f32_attention_head)(const vitc_attention_head_args *args, const vitc_attention_next *next) {
    const size_t seq_q = args->seq_q, seq_kv = args->seq_kv, hd = args->hd, ldq = args->ldq, ldv = args->ldv;
    const size_t ldo = args->ldo;
    const float scale = args->scale, *q = args->q, *k_packed = args->k_packed, *v = args->v;
    float *out = args->out, *probs = args->probs;
    const int masked = args->causal || args->key_mask;
    float inv[ATT_MR], mx[ATT_MR];
    /* equal blocks of <= ATT_MR rows (197 = 2×14 + 13×13, not 14×14 + 1: a 1-row tile is latency-bound) */
    const size_t blocks = (seq_q + ATT_MR - 1) / ATT_MR;
    for (size_t blk = 0; blk < blocks; blk++) {
        const size_t i0 = seq_q * blk / blocks, rows = seq_q * (blk + 1) / blocks - i0;
        float *e = probs ? probs + i0 * seq_kv : args->scratch; /* [rows, seq_kv] */
        if (next) VM_FN(att_prefetch_rows)(next, hd, blk, blocks); /* spread over the blocks */
        /* E = Q_rows K_hᵀ: K_h panel jp (columns j0..) starts at j0 * hd */
        for (size_t j0 = 0; j0 < seq_kv; j0 += ATT_NR)
            VM_FN(att_block)(rows, seq_kv - j0 < ATT_NR ? seq_kv - j0 : ATT_NR, hd, q + i0 * ldq, ldq,
                             k_packed + j0 * hd, ATT_NR, e + j0, seq_kv, NULL);
        if (masked) VM_FN(att_mask_rows)(e, seq_kv, i0, rows, seq_kv, args->causal, args->key_mask);
        /* all the maxima first: no row's exp pass waits on its own max reduction */
        for (size_t r = 0; r < rows; r++) mx[r] = VM_FN(att_max_row)(e + r * seq_kv, seq_kv);
        if (masked)
            for (size_t r = 0; r < rows; r++)
                if (mx[r] == -INFINITY) { /* no key visible: uniform over all keys, as transformers */
                    for (size_t j = 0; j < seq_kv; j++) e[r * seq_kv + j] = 0.0f;
                    mx[r] = 0.0f;
                }
        for (size_t r = 0; r < rows; r++) inv[r] = VM_FN(att_exp_row)(e + r * seq_kv, seq_kv, scale, mx[r]);
        /* O_rows = E V_h / l, V_h read in place (its rows are contiguous head_dim floats) */
        for (size_t j0 = 0; j0 < hd; j0 += ATT_NR)
            VM_FN(att_block)(rows, hd - j0 < ATT_NR ? hd - j0 : ATT_NR, seq_kv, e, seq_kv, v + j0, ldv,
                             out + i0 * ldo + j0, ldo, inv);
        if (probs)
            for (size_t r = 0; r < rows; r++) VM_FN(att_scale_row)(e + r * seq_kv, seq_kv, inv[r]);
    }
}

/* pack_k: K_h [n rows, k] (row stride ldk) -> panels [n/ATT_NR][k][ATT_NR] (rows past n zero): the layout of
 * vitc_f32_gemm_pack_nk for this ISA. VM_LANES × VM_LANES blocks are transposed in registers; columns past the
 * last whole block go scalar. */
void VM_FN(vitc_f32_attention_pack_k)(size_t n, size_t k, const float *VITC_RESTRICT kh, size_t ldk,
                                      float *VITC_RESTRICT packed) {
    const size_t kb = k & ~(size_t)(VM_LANES - 1);
    for (size_t j0 = 0; j0 < n; j0 += VM_LANES) { /* VM_LANES K rows: one half of a panel */
        float *dst = packed + (j0 & ~(size_t)(ATT_NR - 1)) * k + (j0 & (ATT_NR - 1));
        const size_t rows = n - j0 < VM_LANES ? n - j0 : VM_LANES;
        for (size_t p0 = 0; p0 < kb; p0 += VM_LANES) {
            vm_f r[VM_LANES];
            for (size_t i = 0; i < VM_LANES; i++)
                r[i] = i < rows ? vm_loadu(kh + (j0 + i) * ldk + p0) : vm_set1(0.0f);
            ATT_TRANSPOSE(r);
            for (int m = 0; m < VM_LANES; m++) vm_storeu(dst + (p0 + (size_t)m) * ATT_NR, r[m]);
        }
        for (size_t p = kb; p < k; p++)
            for (size_t i = 0; i < VM_LANES; i++) dst[p * ATT_NR + i] = i < rows ? kh[(j0 + i) * ldk + p] : 0.0f;
        if ((j0 & (ATT_NR - 1)) == 0 && j0 + VM_LANES >= n) /* the panel's second half: all past n */
            for (size_t p = 0; p < k; p++) vm_storeu(dst + p * ATT_NR + VM_LANES, vm_set1(0.0f));
    }
}
