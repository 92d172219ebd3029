/* ops.c — LayerNorm, softmax and activations: the portable scalar kernels and the entry points.
 *
 * The scalar path computes in double and rounds once (it is the accuracy reference and the fallback
 * on non-x86 builds). SIMD paths live in kernels/ops_<isa>.c (vector math in kernels/vmath_*.h).
 * Activation limits: f(+inf) = +inf, gelu/silu/quick_gelu(-inf) = -0, NaN -> NaN. */
#include <math.h>
#include <string.h>
#include "vitc.h"
#include "kernels/ops_kernels.h"
#include "kernel_table.h"
#include "threadpool.h"

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
    case VITC_ACT_GELU_ERF: /* below -TAIL the result would be subnormal: -0 (as the SIMD paths) */
        if (x <= -VITC_GELU_ERF_TAIL) return -0.0f;
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

/* y[r, :cols] = act(x[r, :cols] + bias) · scale + residual[r, :cols] (the GEMM's tile epilogue) */
void vitc_f32_tile_epilogue__scalar(size_t rows, size_t cols, const float *x, size_t ldx, float *y, size_t ldy,
                                    const float *bias, vitc_act act, const float *scale, const float *residual,
                                    size_t ldr) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * ldx, *rr = residual ? residual + r * ldr : NULL;
        float *yr = y + r * ldy;
        for (size_t j = 0; j < cols; j++) {
            float v = bias ? xr[j] + bias[j] : xr[j];
            v = act_scalar(act, v);
            if (scale) v *= scale[j];
            yr[j] = rr ? v + rr[j] : v;
        }
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

typedef struct {
    const vitc_kernels *kt;
    size_t rows, dim, ldx, ldy;
    const float *x, *gamma, *beta;
    float eps;
    float *y;
} layernorm_team;

static void layernorm_member(void *ctx, int tid, int nthreads) {
    const layernorm_team *l = (const layernorm_team *)ctx;
    size_t t = (size_t)tid, nt = (size_t)nthreads, rows = l->rows;
    /* static split: thread t gets rows [r0, r1) */
    size_t r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
    if (r1 > r0)
        l->kt->layernorm_rows(r1 - r0, l->dim, l->x + r0 * l->ldx, l->ldx, l->gamma, l->beta, l->eps,
                       l->y + r0 * l->ldy, l->ldy);
}

void vitc_f32_layernorm(vitc_isa isa, int nthreads, size_t rows, size_t dim, const float *x, size_t ldx,
                        const float *gamma, const float *beta, float eps, float *y, size_t ldy) {
    const vitc_kernels *kt = vitc_kernels_for(isa);
    int team = nthreads;
    if ((size_t)team > rows) team = (int)rows;
    if (team <= 1 || rows * dim < LAYERNORM_PARALLEL_MIN_FLOATS) {
        kt->layernorm_rows(rows, dim, x, ldx, gamma, beta, eps, y, ldy);
        return;
    }
    layernorm_team l = {kt, rows, dim, ldx, ldy, x, gamma, beta, eps, y};
    vitc_parallel(team, layernorm_member, &l);
}

void vitc_f32_softmax_rows(vitc_isa isa, size_t rows, size_t n, float scale, float *x, size_t ldx) {
    vitc_kernels_for(isa)->softmax_rows(rows, n, scale, x, ldx);
}

void vitc_f32_activation(vitc_isa isa, vitc_act act, float *x, size_t n) {
    vitc_kernels_for(isa)->activation(act, x, n);
}

void vitc_f32_swiglu(vitc_isa isa, size_t rows, size_t hidden, const float *x, size_t ldx, float *y, size_t ldy) {
    const vitc_kernels *kt = vitc_kernels_for(isa);
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * ldx, *up = xr + hidden;
        float *yr = y + r * ldy;
        if (yr != xr) memcpy(yr, xr, hidden * sizeof(float));
        kt->activation(VITC_ACT_SILU, yr, hidden);
        for (size_t j = 0; j < hidden; j++) yr[j] *= up[j];
    }
}
