/* ops.c — LayerNorm, softmax and activations: the portable scalar kernels and the entry points.
 *
 * The scalar path computes in double and rounds once (it is the accuracy reference and the fallback
 * on non-x86 builds). SIMD paths live in kernels/ops_<isa>.c (vector math in kernels/vmath_*.h).
 * Activation limits: f(+inf) = +inf, gelu/silu/quick_gelu(-inf) = -0, NaN -> NaN. */
#include <math.h>
#include "vitc.h"
#include "kernels/ops_kernels.h"
#include "kernel_table.h"

#ifdef _OPENMP
#include <omp.h>
#endif

const char *vitc_act_name(vitc_act act) {
    static const char *const names[VITC_ACT_COUNT] = {"none", "gelu_erf",  "gelu_tanh", "quick_gelu",
                                                      "relu", "silu",      "tanh",      "sigmoid"};
    return (unsigned)act < VITC_ACT_COUNT ? names[act] : NULL;
}

/* ---- scalar reference ------------------------------------------------------------------------ */

/* x sigmoid(u) without overflow: u >= 0: x / (1 + e^-u); u < 0: x e^u / (1 + e^u) */
static double mul_sigmoid(double x, double u) {
    if (u >= 0.0) return x / (1.0 + exp(-u));
    double e = exp(u);
    return x * e / (1.0 + e);
}

static float act_scalar(vitc_act act, float v) {
    double x = v;
    if (isnan(x)) return v;
    switch (act) {
    case VITC_ACT_NONE: return v;
    case VITC_ACT_GELU_ERF:
        if (x == -INFINITY) return -0.0f;
        return (float)(0.5 * x * erfc(-x * 0.70710678118654752440));
    case VITC_ACT_GELU_TANH: {
        if (x == -INFINITY) return -0.0f;
        double y = 0.7978845608028654 * (x + 0.044715 * x * x * x);
        return (float)mul_sigmoid(x, 2.0 * y); /* 0.5 x (1 + tanh y) = x sigmoid(2y) */
    }
    case VITC_ACT_QUICK_GELU:
        if (x == -INFINITY) return -0.0f;
        return (float)mul_sigmoid(x, (double)1.702f * x);
    case VITC_ACT_RELU: return v > 0.0f || v == 0.0f ? v : 0.0f; /* -0 stays -0, as max(0, x) */
    case VITC_ACT_SILU:
        if (x == -INFINITY) return -0.0f;
        return (float)mul_sigmoid(x, x);
    case VITC_ACT_TANH: return (float)tanh(x);
    case VITC_ACT_SIGMOID: return (float)mul_sigmoid(1.0, x);
    }
    return v;
}

void vitc_f32_activation__scalar(vitc_act act, float *x, size_t n) {
    if (act == VITC_ACT_NONE) return;
    for (size_t i = 0; i < n; i++) x[i] = act_scalar(act, x[i]);
}

void vitc_f32_softmax_rows__scalar(size_t rows, size_t n, float scale, float *x, size_t ldx) {
    for (size_t r = 0; r < rows; r++) {
        float *xr = x + r * ldx;
        double mx = -INFINITY;
        for (size_t i = 0; i < n; i++) mx = fmax(mx, (double)xr[i] * scale);
        double sum = 0.0;
        for (size_t i = 0; i < n; i++) sum += exp((double)xr[i] * scale - mx);
        double inv = 1.0 / sum;
        for (size_t i = 0; i < n; i++) xr[i] = (float)(exp((double)xr[i] * scale - mx) * inv);
    }
}

/* Two-pass in double on values shifted by x[0] (see ops_body.h for why the shift). */
void vitc_f32_layernorm_rows__scalar(size_t rows, size_t dim, const float *x, size_t ldx, const float *gamma,
                                     const float *beta, float eps, float *y, size_t ldy) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * ldx;
        float *yr = y + r * ldy;
        const double shift = xr[0];
        double mean = 0.0;
        for (size_t i = 0; i < dim; i++) mean += (double)xr[i] - shift;
        mean /= (double)dim;
        double var = 0.0;
        for (size_t i = 0; i < dim; i++) {
            double d = ((double)xr[i] - shift) - mean;
            var += d * d;
        }
        var /= (double)dim;
        const double inv = 1.0 / sqrt(var + (double)eps);
        for (size_t i = 0; i < dim; i++)
            yr[i] = (float)((((double)xr[i] - shift) - mean) * inv * gamma[i] + beta[i]);
    }
}

/* ---- entry points: the kernel set's row kernels (kernel_table.c) ------------------------------- */

/* Below this many floats a LayerNorm runs on the calling thread: waking a team costs more. */
#define LAYERNORM_PARALLEL_MIN_FLOATS 16384

void vitc_f32_layernorm(vitc_isa isa, int nthreads, size_t rows, size_t dim, const float *x, size_t ldx,
                        const float *gamma, const float *beta, float eps, float *y, size_t ldy) {
    const vitc_kernels *kt = vitc_kernels_for(isa);
    int team = nthreads;
    if ((size_t)team > rows) team = (int)rows;
    if (team <= 1 || rows * dim < LAYERNORM_PARALLEL_MIN_FLOATS) {
        kt->layernorm_rows(rows, dim, x, ldx, gamma, beta, eps, y, ldy);
        return;
    }
#pragma omp parallel num_threads(team)
    {
#ifdef _OPENMP
        size_t t = (size_t)omp_get_thread_num(), nt = (size_t)omp_get_num_threads();
#else
        size_t t = 0, nt = 1;
#endif
        /* static split: thread t gets rows [r0, r1) */
        size_t r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
        if (r1 > r0) kt->layernorm_rows(r1 - r0, dim, x + r0 * ldx, ldx, gamma, beta, eps, y + r0 * ldy, ldy);
    }
}

void vitc_f32_softmax_rows(vitc_isa isa, size_t rows, size_t n, float scale, float *x, size_t ldx) {
    vitc_kernels_for(isa)->softmax_rows(rows, n, scale, x, ldx);
}

void vitc_f32_activation(vitc_isa isa, vitc_act act, float *x, size_t n) {
    vitc_kernels_for(isa)->activation(act, x, n);
}
