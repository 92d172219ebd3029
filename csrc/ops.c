/* ops.c — LayerNorm, softmax and activations (portable scalar path; SIMD paths dispatch from here). */
#include <math.h>
#include "vitc.h"

void vitc_f32_layernorm(vitc_isa isa, int nthreads, size_t rows, size_t dim, const float *x, size_t ldx,
                        const float *gamma, const float *beta, float eps, float *y, size_t ldy) {
    (void)isa;
    (void)nthreads;
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * ldx;
        float *yr = y + r * ldy;
        /* two-pass in double: mean, then variance of the centred values (stable) */
        double mean = 0.0;
        for (size_t i = 0; i < dim; i++) mean += xr[i];
        mean /= (double)dim;
        double var = 0.0;
        for (size_t i = 0; i < dim; i++) {
            double d = xr[i] - mean;
            var += d * d;
        }
        var /= (double)dim;
        float inv = (float)(1.0 / sqrt(var + (double)eps));
        float m = (float)mean;
        for (size_t i = 0; i < dim; i++) yr[i] = (xr[i] - m) * inv * gamma[i] + beta[i];
    }
}

void vitc_f32_softmax_rows(vitc_isa isa, size_t rows, size_t n, float scale, float *x, size_t ldx) {
    (void)isa;
    for (size_t r = 0; r < rows; r++) {
        float *xr = x + r * ldx;
        float mx = -INFINITY;
        for (size_t i = 0; i < n; i++) mx = fmaxf(mx, xr[i] * scale);
        float sum = 0.0f;
        for (size_t i = 0; i < n; i++) {
            xr[i] = expf(xr[i] * scale - mx);
            sum += xr[i];
        }
        float inv = 1.0f / sum;
        for (size_t i = 0; i < n; i++) xr[i] *= inv;
    }
}

static float act_scalar(vitc_act act, float v) {
    switch (act) {
    case VITC_ACT_NONE: return v;
    case VITC_ACT_GELU_ERF: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    case VITC_ACT_GELU_TANH:
        return 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    case VITC_ACT_QUICK_GELU: return v / (1.0f + expf(-1.702f * v));
    case VITC_ACT_RELU: return v > 0.0f ? v : 0.0f;
    case VITC_ACT_SILU: return v / (1.0f + expf(-v));
    case VITC_ACT_TANH: return tanhf(v);
    case VITC_ACT_SIGMOID: return 1.0f / (1.0f + expf(-v));
    }
    return v;
}

void vitc_f32_activation(vitc_isa isa, vitc_act act, float *x, size_t n) {
    (void)isa;
    if (act == VITC_ACT_NONE) return;
    for (size_t i = 0; i < n; i++) x[i] = act_scalar(act, x[i]);
}
