/* ops_body.h — activation / softmax / LayerNorm row kernels written once against the vm_* layer;
 * included only by ops_avx2.c and ops_avx512.c after their vmath_<isa>.h. Static code per ISA file. */

/* Apply vf to x[0..n): full vectors, then one masked tail (masked-off lanes are never stored). */
#define VM_MAP(vf)                                                                                   \
    do {                                                                                             \
        size_t i = 0;                                                                                \
        for (; i + 2 * VM_LANES <= n; i += 2 * VM_LANES) {                                           \
            vm_f v0 = vm_loadu(x + i), v1 = vm_loadu(x + i + VM_LANES);                              \
            vm_storeu(x + i, vf(v0));                                                                \
            vm_storeu(x + i + VM_LANES, vf(v1));                                                     \
        }                                                                                            \
        for (; i + VM_LANES <= n; i += VM_LANES) vm_storeu(x + i, vf(vm_loadu(x + i)));              \
        if (i < n) vm_store_tail(x + i, n - i, vf(vm_load_tail(x + i, n - i, 0.0f)));                \
    } while (0)

void VM_FN(vitc_f32_activation)(vitc_act act, float *x, size_t n) {
    switch (act) {
    case VITC_ACT_NONE: break;
    case VITC_ACT_GELU_ERF: VM_MAP(VM_FN(vgelu_erf)); break;
    case VITC_ACT_GELU_TANH: VM_MAP(VM_FN(vgelu_tanh)); break;
    case VITC_ACT_QUICK_GELU: VM_MAP(VM_FN(vquick_gelu)); break;
    case VITC_ACT_RELU: VM_MAP(VM_FN(vrelu)); break;
    case VITC_ACT_SILU: VM_MAP(VM_FN(vsilu)); break;
    case VITC_ACT_TANH: VM_MAP(VM_FN(vtanh)); break;
    case VITC_ACT_SIGMOID: VM_MAP(VM_FN(vsigmoid)); break;
    }
}
#undef VM_MAP

/* x[r, :n] = softmax(scale * x[r, :n]): max of scale*x, e = exp(fma(x, scale, -max)) (one rounding
 * of the argument), sum, multiply by 1/sum. */
void VM_FN(vitc_f32_softmax_rows)(size_t rows, size_t n, float scale, float *x, size_t ldx) {
    const vm_f vs = vm_set1(scale);
    for (size_t r = 0; r < rows; r++) {
        float *xr = x + r * ldx;
        size_t i;
        vm_f vmax0 = vm_set1(-INFINITY), vmax1 = vmax0;
        for (i = 0; i + 2 * VM_LANES <= n; i += 2 * VM_LANES) {
            vmax0 = vm_max(vmax0, vm_mul(vm_loadu(xr + i), vs));
            vmax1 = vm_max(vmax1, vm_mul(vm_loadu(xr + i + VM_LANES), vs));
        }
        for (; i + VM_LANES <= n; i += VM_LANES) vmax0 = vm_max(vmax0, vm_mul(vm_loadu(xr + i), vs));
        if (i < n) vmax1 = vm_max(vmax1, vm_mul(vm_load_tail(xr + i, n - i, -INFINITY), vs));
        float mx = vm_hmax(vm_max(vmax0, vmax1));
        if (scale < 0.0f) { /* -inf fill scaled by a negative scale would be +inf: redo the max */
            mx = -INFINITY;
            for (i = 0; i < n; i++) mx = fmaxf(mx, xr[i] * scale);
        }
        const vm_f vneg = vm_set1(-mx);
        vm_f sum0 = vm_set1(0.0f), sum1 = sum0;
        for (i = 0; i + VM_LANES <= n; i += VM_LANES) {
            vm_f e = VM_FN(vexp)(vm_fma(vm_loadu(xr + i), vs, vneg));
            vm_storeu(xr + i, e);
            sum0 = vm_add(sum0, e);
        }
        if (i < n) {
            vm_f e = VM_FN(vexp)(vm_fma(vm_load_tail(xr + i, n - i, 0.0f), vs, vneg));
            vm_store_tail(xr + i, n - i, e);
            /* masked-off lanes must not count: reload the stored tail with zero fill */
            sum1 = vm_load_tail(xr + i, n - i, 0.0f);
        }
        const vm_f inv = vm_set1(1.0f / vm_hsum(vm_add(sum0, sum1)));
        for (i = 0; i + VM_LANES <= n; i += VM_LANES) vm_storeu(xr + i, vm_mul(vm_loadu(xr + i), inv));
        if (i < n) vm_store_tail(xr + i, n - i, vm_mul(vm_load_tail(xr + i, n - i, 0.0f), inv));
    }
}

/* Sums of float vectors into double accumulators (LayerNorm statistics in double). */
#if VM_LANES == 16
typedef __m512d vm_d;
#define vm_d_zero() _mm512_setzero_pd()
#define vm_d_lo(v) _mm512_cvtps_pd(_mm512_castps512_ps256(v))
#define vm_d_hi(v) _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)))
#define vm_d_add(a, b) _mm512_add_pd(a, b)
#define vm_d_sub(a, b) _mm512_sub_pd(a, b)
#define vm_d_fma(a, b, c) _mm512_fmadd_pd(a, b, c)
#define vm_d_set1(c) _mm512_set1_pd(c)
#define vm_d_hsum(v) _mm512_reduce_add_pd(v)
#else
typedef __m256d vm_d;
#define vm_d_zero() _mm256_setzero_pd()
#define vm_d_lo(v) _mm256_cvtps_pd(_mm256_castps256_ps128(v))
#define vm_d_hi(v) _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1))
#define vm_d_add(a, b) _mm256_add_pd(a, b)
#define vm_d_sub(a, b) _mm256_sub_pd(a, b)
#define vm_d_fma(a, b, c) _mm256_fmadd_pd(a, b, c)
#define vm_d_set1(c) _mm256_set1_pd(c)
static inline double vm_d_hsum__avx2(__m256d v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}
#define vm_d_hsum(v) vm_d_hsum__avx2(v)
#endif

/* LayerNorm of rows on the calling thread. Statistics of the shifted values x - x[0] (exact by
 * Sterbenz for x near x[0], so a large common offset costs no precision), accumulated in double,
 * two passes (mean, then centred squares). In place (x == y, ldx == ldy) is fine: x[0] is read first. */
void VM_FN(vitc_f32_layernorm_rows)(size_t rows, size_t dim, const float *x, size_t ldx, const float *gamma,
                                    const float *beta, float eps, float *y, size_t ldy) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * ldx;
        float *yr = y + r * ldy;
        const vm_f shift = vm_set1(xr[0]);
        size_t i, tail = dim % VM_LANES, body = dim - tail;
        vm_d s0 = vm_d_zero(), s1 = vm_d_zero();
        for (i = 0; i < body; i += VM_LANES) {
            vm_f d = vm_sub(vm_loadu(xr + i), shift);
            s0 = vm_d_add(s0, vm_d_lo(d));
            s1 = vm_d_add(s1, vm_d_hi(d));
        }
        if (tail) { /* zero-filled lanes: x = shift there, d = 0 */
            vm_f d = vm_sub(vm_load_tail(xr + i, tail, xr[0]), shift);
            s0 = vm_d_add(s0, vm_d_lo(d));
            s1 = vm_d_add(s1, vm_d_hi(d));
        }
        const double mean = vm_d_hsum(vm_d_add(s0, s1)) / (double)dim; /* of x - shift */
        const vm_d vmean = vm_d_set1(mean);
        vm_d q0 = vm_d_zero(), q1 = vm_d_zero();
        for (i = 0; i < body; i += VM_LANES) {
            vm_f d = vm_sub(vm_loadu(xr + i), shift);
            vm_d c0 = vm_d_sub(vm_d_lo(d), vmean), c1 = vm_d_sub(vm_d_hi(d), vmean);
            q0 = vm_d_fma(c0, c0, q0);
            q1 = vm_d_fma(c1, c1, q1);
        }
        double var = vm_d_hsum(vm_d_add(q0, q1));
        if (tail) { /* padded lanes would add mean^2 each: do the tail in scalar */
            for (; i < dim; i++) {
                double c = (double)(xr[i] - xr[0]) - mean;
                var += c * c;
            }
        }
        var /= (double)dim;
        const vm_f inv = vm_set1((float)(1.0 / sqrt(var + (double)eps)));
        const vm_f vm = vm_set1((float)mean);
        for (i = 0; i < body; i += VM_LANES) {
            vm_f c = vm_sub(vm_sub(vm_loadu(xr + i), shift), vm);
            vm_storeu(yr + i, vm_fma(c, vm_mul(inv, vm_loadu(gamma + i)), vm_loadu(beta + i)));
        }
        if (tail) {
            vm_f c = vm_sub(vm_sub(vm_load_tail(xr + i, tail, 0.0f), shift), vm);
            vm_f g = vm_load_tail(gamma + i, tail, 0.0f), b = vm_load_tail(beta + i, tail, 0.0f);
            vm_store_tail(yr + i, tail, vm_fma(c, vm_mul(inv, g), b));
        }
    }
}

/* The GEMM's epilogue on a finished tile: y[r, :cols] = act(x[r, :cols] + bias) · scale + residual[r, :cols],
 * r < rows (bias, scale, residual may be NULL; y may be x, residual may be y). One pass per row with the
 * activation inlined and the rows in one loop, so the out-of-order core overlaps the rows' dependency chains:
 * a call of the activation per 32-column row was latency-bound (fc1 with gelu took 25% longer than without,
 * 2.5× the cost of the same activation over the whole matrix). Same operations in the same order as the
 * scalar epilogue: bitwise the same results. */
static inline __attribute__((always_inline)) vm_f VM_FN(epi_vec)(vm_f v, size_t j, const float *bias,
                                                                 const float *scale, const float *res, size_t n,
                                                                 vm_f (*vf)(vm_f)) {
    const int full = n == VM_LANES;
    if (bias) v = vm_add(v, full ? vm_loadu(bias + j) : vm_load_tail(bias + j, n, 0.0f));
    v = vf(v);
    if (scale) v = vm_mul(v, full ? vm_loadu(scale + j) : vm_load_tail(scale + j, n, 0.0f));
    if (res) v = vm_add(v, full ? vm_loadu(res + j) : vm_load_tail(res + j, n, 0.0f));
    return v;
}

static inline __attribute__((always_inline)) void VM_FN(epi_rows)(size_t rows, size_t cols, const float *x,
                                                                  size_t ldx, float *y, size_t ldy,
                                                                  const float *bias, const float *scale,
                                                                  const float *residual, size_t ldr,
                                                                  vm_f (*vf)(vm_f)) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * ldx, *rr = residual ? residual + r * ldr : NULL;
        float *yr = y + r * ldy;
        size_t j = 0;
        for (; j + VM_LANES <= cols; j += VM_LANES)
            vm_storeu(yr + j, VM_FN(epi_vec)(vm_loadu(xr + j), j, bias, scale, rr, VM_LANES, vf));
        if (j < cols)
            vm_store_tail(yr + j, cols - j,
                          VM_FN(epi_vec)(vm_load_tail(xr + j, cols - j, 0.0f), j, bias, scale, rr, cols - j, vf));
    }
}

static inline vm_f VM_FN(videntity)(vm_f x) { return x; }

void VM_FN(vitc_f32_tile_epilogue)(size_t rows, size_t cols, const float *x, size_t ldx, float *y, size_t ldy,
                                   const float *bias, vitc_act act, const float *scale, const float *residual,
                                   size_t ldr) {
#define VM_EPI(vf) VM_FN(epi_rows)(rows, cols, x, ldx, y, ldy, bias, scale, residual, ldr, VM_FN(vf))
    switch (act) {
    case VITC_ACT_NONE: VM_EPI(videntity); break;
    case VITC_ACT_GELU_ERF: VM_EPI(vgelu_erf); break;
    case VITC_ACT_GELU_TANH: VM_EPI(vgelu_tanh); break;
    case VITC_ACT_QUICK_GELU: VM_EPI(vquick_gelu); break;
    case VITC_ACT_RELU: VM_EPI(vrelu); break;
    case VITC_ACT_SILU: VM_EPI(vsilu); break;
    case VITC_ACT_TANH: VM_EPI(vtanh); break;
    case VITC_ACT_SIGMOID: VM_EPI(vsigmoid); break;
    }
#undef VM_EPI
}
