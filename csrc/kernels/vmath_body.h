/* vmath_body.h — vector math written once against the vm_* macro layer; included ONLY by
 * vmath_avx512.h / vmath_avx2.h (which define vm_f, vm_m, VM_FN and the vm_* operations).
 * Static inline only. Accuracy (float64 reference, see tests/test_ops.py): a few ulps over the
 * whole float range, gradual underflow included (gelu_erf flushes its tail, see there); NaN in -> NaN out.
 *
 * Building block: vexp_parts(yh, yl, &n) returns p with e^(yh + yl) = p * 2^n, p in ~[0.7, 1.42].
 * Callers fold their other factors into p and apply 2^n last (vm_scale2n), so results that end up
 * subnormal are rounded once instead of being built from an already-underflowed exp. */
#include "ops_kernels.h" /* VITC_GELU_ERF_TAIL */

/* exp: Cody–Waite reduction r = y - n ln2 (FMA makes n*LN2_HI exact), e^r = 1 + r + r^2 q(r),
 * q minimax on [-ln2/2, ln2/2] (rel. error 3e-9, fitted for vitc). */
#define VM_LOG2E 1.44269504088896341f
#define VM_LN2_HI 0.693147182464599609f  /* float(ln 2) */
#define VM_LN2_LO -1.90465429995776805e-09f /* ln 2 - LN2_HI */

/* Same without the clamp, for callers whose yh is already in [-112.5, 88] (and not NaN-producing
 * beyond what the clamp would pass). */
static inline vm_f VM_FN(vexp_parts_inrange)(vm_f yh, vm_f yl, vm_f *n_out) {
    vm_f n = vm_round(vm_mul(yh, vm_set1(VM_LOG2E)));
    vm_f r = vm_fnma(n, vm_set1(VM_LN2_HI), yh);
    r = vm_fnma(n, vm_set1(VM_LN2_LO), r);
    r = vm_add(r, yl);
    vm_f q = vm_fma(vm_set1(1.381461275741458e-3f), r, vm_set1(8.368710055947304e-3f));
    q = vm_fma(q, r, vm_set1(4.166838899254799e-2f));
    q = vm_fma(q, r, vm_set1(1.666652113199234e-1f));
    q = vm_fma(q, r, vm_set1(4.999999403953552e-1f));
    vm_f t = vm_fma(vm_mul(r, r), q, r);
    *n_out = n;
    return vm_add(t, vm_set1(1.0f));
}

static inline vm_f VM_FN(vexp_parts)(vm_f yh, vm_f yl, vm_f *n_out) {
    /* clamp so that n stays in [-162, 129]: e^-112 times any factor our callers use (<= 120) is
     * below half the smallest subnormal, so the clamp never shows; above 89: inf. NaN passes. */
    yh = vm_min(vm_set1(89.0f), vm_max(vm_set1(-112.0f), yh));
    return VM_FN(vexp_parts_inrange)(yh, yl, n_out);
}

static inline vm_f VM_FN(vexp)(vm_f x) {
    vm_f n, p = VM_FN(vexp_parts)(x, vm_set1(0.0f), &n);
    return vm_scale2n(p, n);
}

/* m * sigmoid(u) given yh + yl = -|u| and pos = (u >= 0): with e = e^-|u| = p 2^n,
 * u >= 0: m / (1 + e);  u < 0: m e / (1 + e) = (p * m / (1 + e)) 2^n. One division. */
static inline vm_f VM_FN(vmul_sigmoid)(vm_f m, vm_f yh, vm_f yl, vm_m pos) {
    vm_f n, p = VM_FN(vexp_parts)(yh, yl, &n);
    vm_f q = vm_div(m, vm_add(vm_set1(1.0f), vm_scale2n(p, n)));
    return vm_sel(pos, q, vm_scale2n(vm_mul(p, q), n));
}

static inline vm_f VM_FN(vsigmoid)(vm_f x) {
    return VM_FN(vmul_sigmoid)(vm_set1(1.0f), vm_neg_abs(x), vm_set1(0.0f), vm_ge0(x));
}

/* silu(x) = x sigmoid(x); x clamped below so that -inf gives -0 (the limit), not -inf * 0 */
static inline vm_f VM_FN(vsilu)(vm_f x) {
    vm_f xs = vm_max(vm_set1(-120.0f), x);
    return VM_FN(vmul_sigmoid)(xs, vm_neg_abs(xs), vm_set1(0.0f), vm_ge0(xs));
}

/* quick_gelu(x) = x sigmoid(1.702 x); u = 1.702 x carried exactly as uh + ul (FMA remainder) */
static inline vm_f VM_FN(vquick_gelu)(vm_f x) {
    vm_f xs = vm_max(vm_set1(-80.0f), x), xu = vm_min(vm_set1(80.0f), xs); /* sigmoid saturated beyond */
    vm_f c = vm_set1(1.702f);
    vm_f uh = vm_mul(c, xu), ul = vm_fms(c, xu, uh);
    vm_f flip = vm_xor(vm_sign(xs), vm_set1(-0.0f)); /* -sign(x): turns u into -|u| */
    return VM_FN(vmul_sigmoid)(xs, vm_xor(uh, flip), vm_xor(ul, flip), vm_ge0(xs));
}

/* gelu_tanh(x) = 0.5 x (1 + tanh(y)) = x sigmoid(u), u = 2y = k1 x + k3 x^3 (k1 = 2 sqrt(2/pi),
 * k3 = 0.044715 k1): no cancellation for negative x, unlike the 1 + tanh form. e^-|u| amplifies a
 * relative error of u by |u| (~90 at x = -10), so u is carried as uh + ul in double-float
 * (FMA remainders, constants split hi + lo): a few ulps instead of hundreds in the negative tail. */
static inline vm_f VM_FN(vgelu_tanh)(vm_f x) {
    vm_f xs = vm_max(vm_set1(-12.0f), x), xu = vm_min(vm_set1(12.0f), xs); /* sigmoid saturated beyond */
    const vm_f k1h = vm_set1(1.5957691669464111f), k1l = vm_set1(-4.534068054340423e-08f);
    const vm_f k3h = vm_set1(0.07135481387376785f), k3l = vm_set1(2.3988324659995897e-09f);
    vm_f x2h = vm_mul(xu, xu), x2l = vm_fms(xu, xu, x2h);
    vm_f x3h = vm_mul(x2h, xu), x3l = vm_fma(x2l, xu, vm_fms(x2h, xu, x3h));
    vm_f a1h = vm_mul(k1h, xu), a1l = vm_fma(k1l, xu, vm_fms(k1h, xu, a1h));
    vm_f a3h = vm_mul(k3h, x3h), a3l = vm_fma(k3l, x3h, vm_fma(k3h, x3l, vm_fms(k3h, x3h, a3h)));
    vm_f uh = vm_add(a1h, a3h), bb = vm_sub(uh, a1h); /* TwoSum: uh + err = a1h + a3h exactly */
    vm_f err = vm_add(vm_sub(a1h, vm_sub(uh, bb)), vm_sub(a3h, bb));
    vm_f ul = vm_add(err, vm_add(a1l, a3l));
    vm_f flip = vm_xor(vm_sign(xu), vm_set1(-0.0f)); /* -sign(x): turns u into -|u| */
    return VM_FN(vmul_sigmoid)(xs, vm_xor(uh, flip), vm_xor(ul, flip), vm_ge0(xs));
}

/* the table exponential's constants: 2^B / ln 2 and ln 2 / 2^B = HI + LO (HI with 24 bits) */
#if VM_EXP_TBL_BITS == 4
#define VM_EXP_TBL_SCALE 23.083120346069336f
#define VM_EXP_TBL_LN2_HI 0.043321698904037476f
#define VM_EXP_TBL_LN2_LO -1.1904088825787085e-10f
#else
#define VM_EXP_TBL_SCALE 11.541560173034668f
#define VM_EXP_TBL_LN2_HI 0.08664339780807495f
#define VM_EXP_TBL_LN2_LO -2.380817765157417e-10f
#endif

/* e^r - 1 = r + r^2 c(r) for the table exponential's reduced argument, |r| <= ln2 / 2^(B+1): minimax,
 * rel. error 2e-9 */
static inline vm_f VM_FN(vexpm1_tbl_r)(vm_f r) {
#if VM_EXP_TBL_BITS == 4
    vm_f c = vm_fma(r, vm_set1(0.16666817665100098f), vm_set1(0.5000168085098267f));
#else
    vm_f c = vm_fma(r, vm_set1(0.04166017472743988f), vm_set1(0.16668079793453217f));
    c = vm_fma(c, r, vm_set1(0.5f));
#endif
    return vm_fma(vm_mul(r, r), c, r);
}

/* e^y for a softmax's shifted scores (y <= 0, finite) by the table exponential, given t = y / ln 2 +
 * VM_EXP_TBL_KQ_MAGIC rounded to float (computed beside y, from the unshifted score: its rounding, up to
 * ~2^-24 |score|, only moves the reduction point, and what that adds to |r| costs the polynomial far less
 * than y's own float32 rounding at that magnitude). t's last place is 2^-B, so kq = t - magic = k / 2^B exactly and k mod 2^B
 * sits in t's low mantissa bits (the table index); r = y - kq ln2 is exact (FMA; kq has <= 12 + B bits
 * while e^y is normal) and |r| <= ln2 / 2^(B+1) up to t's rounding; 2^floor(kq) is applied last
 * (vm_scale2n: one rounding into the subnormals; far below, kq's last place grows but e^y is 0 anyway).
 * Errors, relative: float(ln 2)'s 2e-9 · |kq| (< 2^-24 |y|: less than y's own rounding), the polynomial's
 * 2e-9 and the table entry's half ulp (vgelu_erf folds that in; a softmax needs no better). 9 operations. */
#define VM_EXP_TBL_KQ_MAGIC (12582912.0f / (1 << VM_EXP_TBL_BITS)) /* 1.5 2^(23 - B) */
static inline vm_f VM_FN(vexp_tbl_nonpos)(vm_f y, vm_f t) {
    vm_f kq = vm_sub(t, vm_set1(VM_EXP_TBL_KQ_MAGIC));
    vm_f r = vm_fnma(kq, vm_set1(VM_LN2_HI), y);
    vm_f tbl = vm_exp2_tbl(t);
    return vm_scale2n(vm_fma(tbl, VM_FN(vexpm1_tbl_r)(r), tbl), kq);
}

/* R(a) = P(a)/Q(a) ~ Phi(-a) e^(a^2/2) on [0, VITC_GELU_ERF_TAIL], rel. error 2e-8 with these float
 * coefficients (minimax fitted for vitc, each rounded to float and the rest refitted) */
#define VM_GELU_P0 0.5f
#define VM_GELU_P1 0.4346368908882141f
#define VM_GELU_P2 0.180509552359581f
#define VM_GELU_P3 0.039709609001874924f
#define VM_GELU_P4 0.003977671731263399f
#define VM_GELU_Q1 1.667158603668213f
#define VM_GELU_Q2 1.1912158727645874f
#define VM_GELU_Q3 0.4622703492641449f
#define VM_GELU_Q4 0.09954491257667542f
#define VM_GELU_Q5 0.009970393031835556f

/* gelu(x) = x Phi(x) = max(x, -0) - s, s = a Phi(-a), a = |x| (x >= 0: x - s; x < 0: -s), written so
 * that -0, NaN and +-inf need no select. Phi(-a) = e^(-a^2/2) R(a), R = P/Q rational; -a^2/2 is carried
 * exactly (FMA remainder) so the exponential sees no rounding of its argument. The exponential is
 * 2^(k / 2^B) e^r with the 2^(k / 2^B) fraction from a 2^B-entry table (a permute) and a short polynomial
 * for e^r: cheaper than vexp_parts (no round instruction, lower degree). Beyond a = VITC_GELU_ERF_TAIL, s
 * would be subnormal (microcode assists: fc1 2.2x slower on such inputs): a is clamped there and s
 * flushed to 0, so gelu = x for large x and -0 for large negative x; no result is ever subnormal unless
 * x itself is tiny (|x| < 2 FLT_MIN). */
static inline vm_f VM_FN(vgelu_erf)(vm_f x) {
    vm_f a = vm_min(vm_set1(VITC_GELU_ERF_TAIL), vm_abs(x)); /* NaN passes (2nd operand) */
    vm_f ha = vm_mul(a, vm_set1(-0.5f));                    /* exact */
    vm_f yh = vm_mul(ha, a), yl = vm_fms(ha, a, yh);        /* yh + yl = -a^2/2 exactly, yh >= -86.5 */
    /* k ~ round(-a^2/2 2^B / ln2) (any integer near it will do: it only picks the reduction point, off
     * yh's critical path): t = k + 1.5 2^23 holds k in its low mantissa bits (the table index) */
    vm_f t = vm_fma(a, vm_mul(a, vm_set1(-0.5f * VM_EXP_TBL_SCALE)), vm_set1(12582912.0f));
    vm_f k = vm_sub(t, vm_set1(12582912.0f));
    /* r = yh + yl - k ln2/2^B, with the table entry's rounding folded in: the first term is exact (FMA, k
     * has <= 11 bits), the small ones are summed beside it */
    vm_f r = vm_add(vm_fnma(k, vm_set1(VM_EXP_TBL_LN2_HI), yh),
                    vm_fnma(k, vm_set1(VM_EXP_TBL_LN2_LO), vm_add(yl, vm_exp2_tbl_lnfix(t))));
    vm_f em1 = VM_FN(vexpm1_tbl_r)(r);
    /* the rational, with its division, runs beside the exponential's longer chain */
    vm_f num = vm_set1(VM_GELU_P4);
    num = vm_fma(num, a, vm_set1(VM_GELU_P3));
    num = vm_fma(num, a, vm_set1(VM_GELU_P2));
    num = vm_fma(num, a, vm_set1(VM_GELU_P1));
    num = vm_fma(num, a, vm_set1(VM_GELU_P0));
    vm_f den = vm_set1(VM_GELU_Q5);
    den = vm_fma(den, a, vm_set1(VM_GELU_Q4));
    den = vm_fma(den, a, vm_set1(VM_GELU_Q3));
    den = vm_fma(den, a, vm_set1(VM_GELU_Q2));
    den = vm_fma(den, a, vm_set1(VM_GELU_Q1));
    den = vm_fma(den, a, vm_set1(1.0f));
    vm_f ar = vm_mul(a, vm_div(num, den));
    vm_f tbl = vm_exp2_tbl(t);
    vm_f m = vm_mul(vm_fma(tbl, em1, tbl), ar); /* a R(a) 2^(frac) e^r */
    vm_f s = vm_scale2n_floor_where(vm_lt(a, vm_set1(VITC_GELU_ERF_TAIL)), m,
                                    vm_mul(k, vm_set1(1.0f / (1 << VM_EXP_TBL_BITS))));
    return vm_sub(vm_max(vm_set1(-0.0f), x), s);
}

/* tanh: |x| < 0.55: x + x^3 T(x^2) (minimax, no cancellation near 0);
 * else sign(x) (1 - e) / (1 + e), e = e^(-2|x|) <= 1/3 (never overflows; inf -> 1). */
static inline vm_f VM_FN(vtanh)(vm_f x) {
    vm_f a = vm_abs(x), x2 = vm_mul(x, x);
    vm_f t = vm_fma(vm_set1(-6.274234503507614e-3f), x2, vm_set1(2.1071676164865494e-2f));
    t = vm_fma(t, x2, vm_set1(-5.385230854153633e-2f));
    t = vm_fma(t, x2, vm_set1(1.3332585990428925e-1f));
    t = vm_fma(t, x2, vm_set1(-3.3333316445350647e-1f));
    vm_f small = vm_fma(vm_mul(x, x2), t, x);
    vm_f e = VM_FN(vexp)(vm_mul(a, vm_set1(-2.0f)));
    vm_f big = vm_div(vm_sub(vm_set1(1.0f), e), vm_add(vm_set1(1.0f), e));
    big = vm_xor(big, vm_sign(x));
    return vm_sel(vm_lt(a, vm_set1(0.55f)), small, big);
}

static inline vm_f VM_FN(vrelu)(vm_f x) { return vm_max(vm_set1(0.0f), x); } /* NaN passes (2nd operand) */
