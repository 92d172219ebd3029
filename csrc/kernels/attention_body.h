/* attention_body.h — one (image, head) of attention, written once against the vm_* layer; included only
 * by attention_avx2.c / attention_avx512.c after their vmath_<isa>.h, with ATT_MR (tile rows) defined.
 * Static code per ISA file.
 *
 * The head runs block by block of ATT_MR query rows, everything of a block staying in L1:
 *   E[rows, seq] = Q_rows · K_hᵀ            (register tiles ATT_MR × NR, Q read in place: no packing)
 *   E = exp(scale · E - rowmax), l = rowsum (one pass; the 1/l is not applied here...)
 *   O[rows, hd] = (E · V_h) · diag(1/l)     (... but folded into the tile store of this small product)
 * so the scores are never normalized in a separate pass and never leave L1 (unless probs are asked for;
 * then E is written there and normalized after its P·V). Tile = ATT_MR rows × NR = 2 vectors; panels whose
 * columns fit one vector (the edge of seq = 197: 5 columns) skip the second vector's FMAs. */

#define ATT_NR (2 * VM_LANES)

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

/* C[rows, nr] = A[rows, kc] · B_panel[kc, ATT_NR], times rowscale[r] per row when rowscale is not NULL.
 * A row-major with row stride lda (broadcast straight from its rows); halves = 1 when nr <= VM_LANES. */
static inline __attribute__((always_inline)) void VM_FN(att_tile)(const int rows, const int halves, size_t nr,
                                                                  size_t kc, const float *VITC_RESTRICT a,
                                                                  size_t lda, const float *VITC_RESTRICT b,
                                                                  float *VITC_RESTRICT c, size_t ldc,
                                                                  const float *VITC_RESTRICT rowscale) {
    vm_f acc0[ATT_MR], acc1[ATT_MR];
#pragma GCC unroll 16
    for (int r = 0; r < rows; r++) {
        acc0[r] = vm_set1(0.0f);
        acc1[r] = vm_set1(0.0f);
    }
#pragma GCC unroll 4
    for (size_t p = 0; p < kc; p++) {
        const vm_f b0 = vm_loadu(b + p * ATT_NR);
        const vm_f b1 = halves == 2 ? vm_loadu(b + p * ATT_NR + VM_LANES) : b0;
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
        if (nr > VM_LANES)                                                                               \
            VM_FN(att_tile)(R, 2, nr, kc, a, lda, b, c, ldc, rowscale);                                  \
        else                                                                                             \
            VM_FN(att_tile)(R, 1, nr, kc, a, lda, b, c, ldc, rowscale);                                  \
        break;

/* the tile with a compile-time row count (an edge block costs only its rows) */
static void VM_FN(att_block)(size_t rows, size_t nr, size_t kc, const float *VITC_RESTRICT a, size_t lda,
                             const float *VITC_RESTRICT b, float *VITC_RESTRICT c, size_t ldc,
                             const float *VITC_RESTRICT rowscale) {
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
    default: break;
    }
}
#undef ATT_TILE_CASE

/* e^y for y <= ~0 (softmax arguments: x·scale - max): vexp without the upper clamp and the low-part
 * add, which the compiler cannot drop (y + 0 is not y for y = -0). The lower clamp keeps 2^n finite:
 * e^-104 is already below half the smallest subnormal. */
static inline vm_f VM_FN(att_exp)(vm_f y) {
    y = vm_max(vm_set1(-104.0f), y);
    vm_f n = vm_round(vm_mul(y, vm_set1(VM_LOG2E)));
    vm_f r = vm_fnma(n, vm_set1(VM_LN2_HI), y);
    r = vm_fnma(n, vm_set1(VM_LN2_LO), r);
    vm_f q = vm_fma(vm_set1(1.381461275741458e-3f), r, vm_set1(8.368710055947304e-3f));
    q = vm_fma(q, r, vm_set1(4.166838899254799e-2f));
    q = vm_fma(q, r, vm_set1(1.666652113199234e-1f));
    q = vm_fma(q, r, vm_set1(4.999999403953552e-1f));
    vm_f t = vm_fma(vm_mul(r, r), q, r);
    return vm_scale2n(vm_add(t, vm_set1(1.0f)), n);
}

/* x[0..n) = exp(scale · x - max(scale · x)) in place; returns 1 / sum. As vitc_f32_softmax_rows but
 * without its normalizing pass. scale > 0, so max(scale · x) = scale · max(x) (rounding is monotone). */
static float VM_FN(att_exp_row)(float *x, size_t n, float scale) {
    const vm_f vs = vm_set1(scale);
    size_t i;
    vm_f m0 = vm_set1(-INFINITY), m1 = m0;
    for (i = 0; i + 2 * VM_LANES <= n; i += 2 * VM_LANES) {
        m0 = vm_max(m0, vm_loadu(x + i));
        m1 = vm_max(m1, vm_loadu(x + i + VM_LANES));
    }
    for (; i + VM_LANES <= n; i += VM_LANES) m0 = vm_max(m0, vm_loadu(x + i));
    if (i < n) m1 = vm_max(m1, vm_load_tail(x + i, n - i, -INFINITY));
    const vm_f neg = vm_set1(-(vm_hmax(vm_max(m0, m1)) * scale));
    vm_f s0 = vm_set1(0.0f), s1 = s0;
    for (i = 0; i + 2 * VM_LANES <= n; i += 2 * VM_LANES) {
        const vm_f e0 = VM_FN(att_exp)(vm_fma(vm_loadu(x + i), vs, neg));
        const vm_f e1 = VM_FN(att_exp)(vm_fma(vm_loadu(x + i + VM_LANES), vs, neg));
        vm_storeu(x + i, e0);
        vm_storeu(x + i + VM_LANES, e1);
        s0 = vm_add(s0, e0);
        s1 = vm_add(s1, e1);
    }
    for (; i + VM_LANES <= n; i += VM_LANES) {
        const vm_f e = VM_FN(att_exp)(vm_fma(vm_loadu(x + i), vs, neg));
        vm_storeu(x + i, e);
        s0 = vm_add(s0, e);
    }
    if (i < n) {
        vm_store_tail(x + i, n - i, VM_FN(att_exp)(vm_fma(vm_load_tail(x + i, n - i, 0.0f), vs, neg)));
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

void VM_FN(vitc_f32_attention_head)(size_t seq, size_t hd, float scale, const float *q, size_t ldq,
                                    const float *k_packed, const float *v_packed, float *out, size_t ldo,
                                    float *probs, float *scratch) {
    float inv[ATT_MR];
    for (size_t i0 = 0; i0 < seq; i0 += ATT_MR) {
        const size_t rows = seq - i0 < ATT_MR ? seq - i0 : ATT_MR;
        float *e = probs ? probs + i0 * seq : scratch; /* [rows, seq] */
        /* E = Q_rows K_hᵀ: K_h panel jp (columns j0..) starts at j0 * hd */
        for (size_t j0 = 0; j0 < seq; j0 += ATT_NR)
            VM_FN(att_block)(rows, seq - j0 < ATT_NR ? seq - j0 : ATT_NR, hd, q + i0 * ldq, ldq,
                             k_packed + j0 * hd, e + j0, seq, NULL);
        for (size_t r = 0; r < rows; r++) inv[r] = VM_FN(att_exp_row)(e + r * seq, seq, scale);
        /* O_rows = E V_h / l: V_h panel (columns j0..) starts at j0 * seq */
        for (size_t j0 = 0; j0 < hd; j0 += ATT_NR)
            VM_FN(att_block)(rows, hd - j0 < ATT_NR ? hd - j0 : ATT_NR, seq, e, seq, v_packed + j0 * seq,
                             out + i0 * ldo + j0, ldo, inv);
        if (probs)
            for (size_t r = 0; r < rows; r++) VM_FN(att_scale_row)(e + r * seq, seq, inv[r]);
    }
}
