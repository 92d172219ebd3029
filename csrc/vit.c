/* vit.c — a ViT encoder layer and the embeddings, composed from the kernels. */
#include <math.h>
#include <string.h>
#include <time.h>
#include "vitc.h"

static double now_seconds(void) {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *vitc_phase_name(vitc_phase phase) {
    static const char *const names[VITC_PHASE_COUNT] = {"layernorm", "qkv", "attention", "proj", "fc1", "fc2"};
    return (unsigned)phase < VITC_PHASE_COUNT ? names[phase] : NULL;
}

/* Adds the time since *t0 to phase_seconds[phase] (when timing is on) and restarts the clock. */
static void lap(double *phase_seconds, vitc_phase phase, double *t0) {
    if (!phase_seconds) return;
    double t = now_seconds();
    phase_seconds[phase] += t - *t0;
    *t0 = t;
}

/* Returns from the enclosing function with the status of a kernel call that failed. */
#define RETURN_IF_FAILED(call)                                                                                \
    do {                                                                                                      \
        vitc_status status_ = (call);                                                                         \
        if (status_ != VITC_OK) return status_;                                                               \
    } while (0)

const char *vitc_mlp_name(vitc_mlp mlp) {
    static const char *const names[VITC_MLP_COUNT] = {"standard", "swiglu"};
    return (unsigned)mlp < VITC_MLP_COUNT ? names[mlp] : NULL;
}

/* Width of the fc1 output: SwiGLU's gate | up halves, or the plain hidden layer. */
static size_t fc1_width(const vitc_vit_dims *d) { return d->mlp == VITC_MLP_SWIGLU ? 2 * d->inter : d->inter; }

/* Floats of the bf16/int8 GEMM input buffer (the widest A: fc2's [T, inter]); 0 for float32. */
static size_t gemm_input_floats(const vitc_vit_dims *d, size_t t) {
    size_t bytes = vitc_gemm_workspace_bytes(d->kset, d->dtype, t, d->inter > d->dim ? d->inter : d->dim);
    return (bytes + sizeof(float) - 1) / sizeof(float);
}

/* bf16 on a kernel set with tile kernels: fc1 writes GELU(ln · W1ᵀ + b1) rounded to bf16 straight into fc2's
 * packed A (vitc_gemm_into_packed_a), instead of a float32 [T, I] that fc2 would read back and convert: no float32
 * output at a 12 KB row stride, no conversion pass. Bytes of that packed A (0: the two-step path). */
static size_t fc2_packed_bytes(const vitc_vit_dims *d, size_t t) {
    return d->dtype == VITC_DTYPE_BF16 && d->mlp != VITC_MLP_SWIGLU
               ? vitc_gemm_packed_a_bytes(d->kset, d->dtype, t, d->inter)
               : 0;
}

/* workspace layout for one layer: ln [T,D] | then either qkv [T,3D] | ctx [T,D] | attention scratch (the
 * attention half), or inter [T,I] (the MLP half: qkv and ctx are dead once proj has read ctx). Sharing the
 * region saves T·I floats, 2.4 MB at ViT-B batch 1. */
static size_t float_workspace(vitc_isa isa, int nthreads, const vitc_vit_dims *d, size_t batch, size_t seq) {
    size_t t = batch * seq;
    size_t scratch = vitc_f32_attention_workspace_floats(isa, nthreads, seq, d->dim / d->heads);
    if (d->dtype != VITC_DTYPE_F32) { /* attention_lowp.c's, where it applies */
        const size_t bf16 = vitc_bf16_attention_workspace_floats(nthreads, seq, d->dim / d->heads);
        scratch = bf16 > scratch ? bf16 : scratch;
    }
    size_t attention = t * 4 * d->dim + scratch;
    size_t mlp = t * fc1_width(d);
    /* or fc2's packed A, written by fc1 (fc2_in) on a 64-byte boundary */
    const size_t packed = (fc2_packed_bytes(d, t) + sizeof(float) - 1) / sizeof(float) + 16;
    mlp = mlp > packed ? mlp : packed;
    return t * d->dim + (attention > mlp ? attention : mlp);
}

/* Where the GEMM input buffer starts: after the float32 part, on a 64-byte boundary (the workspace is). */
static size_t gemm_input_offset(vitc_isa isa, int nthreads, const vitc_vit_dims *d, size_t batch, size_t seq) {
    size_t floats = float_workspace(isa, nthreads, d, batch, seq);
    return gemm_input_floats(d, batch * seq) ? (floats + 15) / 16 * 16 : floats;
}

size_t vitc_vit_layer_workspace_floats(vitc_isa isa, int nthreads, const vitc_vit_dims *d, size_t batch,
                                       size_t seq) {
    return gemm_input_offset(isa, nthreads, d, batch, seq) + gemm_input_floats(d, batch * seq);
}

vitc_status vitc_vit_layer_forward(vitc_isa isa, int nthreads, const vitc_vit_dims *d, const vitc_vit_layer *w,
                            size_t batch, size_t seq, float *hidden, float *probs, float *workspace,
                            double *phase_seconds) {
    return vitc_vit_layer_forward_masked(isa, nthreads, d, w, batch, seq, 0, NULL, hidden, probs, workspace,
                                         phase_seconds);
}

vitc_status vitc_vit_layer_forward_masked(vitc_isa isa, int nthreads, const vitc_vit_dims *d,
                                          const vitc_vit_layer *w, size_t batch, size_t seq, int causal,
                                          const unsigned char *key_mask, float *hidden, float *probs,
                                          float *workspace, double *phase_seconds) {
    size_t t = batch * seq, dim = d->dim, fc1_n = fc1_width(d);
    float *ln = workspace, *qkv = ln + t * dim, *ctx = qkv + t * 3 * dim, *attn_ws = ctx + t * dim;
    float *inter = qkv; /* after proj */
    void *gemm_in = workspace + gemm_input_offset(isa, nthreads, d, batch, seq);
    double t0 = phase_seconds ? now_seconds() : 0.0;

    vitc_f32_layernorm(isa, nthreads, t, dim, hidden, dim, w->ln1_g, w->ln1_b, d->eps, ln, dim);
    lap(phase_seconds, VITC_PHASE_LAYERNORM, &t0);
    vitc_epilogue ep_qkv = {w->qkv_b, VITC_ACT_NONE, NULL, 0, NULL};
    RETURN_IF_FAILED(vitc_gemm(d->kset, nthreads, t, ln, dim, w->qkv_w, &ep_qkv, qkv, 3 * dim, gemm_in));
    lap(phase_seconds, VITC_PHASE_QKV, &t0);
    const size_t hd = dim / d->heads;
    const vitc_attention_desc ad = {batch, d->heads, hd, seq, seq, qkv, 3 * dim, qkv + dim, 3 * dim,
                                    qkv + 2 * dim, 3 * dim, 1.0f / sqrtf((float)hd), causal, key_mask};
    /* bf16 and int8 models: Q·Kᵀ and P·V in bf16 where the kernel set has that attention (and no probs are
     * wanted); the softmax stays float32 */
    if (d->dtype == VITC_DTYPE_F32 || probs || !vitc_bf16_attention_applies(d->kset, &ad) ||
        vitc_bf16_attention(d->kset, nthreads, &ad, ctx, dim, attn_ws) != VITC_OK)
        vitc_f32_attention_general(isa, nthreads, &ad, ctx, dim, probs, attn_ws);
    lap(phase_seconds, VITC_PHASE_ATTENTION, &t0);
    vitc_epilogue ep_proj = {w->proj_b, VITC_ACT_NONE, hidden, dim, w->ls1};
    RETURN_IF_FAILED(vitc_gemm(d->kset, nthreads, t, ctx, dim, w->proj_w, &ep_proj, hidden, dim, gemm_in));
    lap(phase_seconds, VITC_PHASE_PROJ, &t0);

    vitc_f32_layernorm(isa, nthreads, t, dim, hidden, dim, w->ln2_g, w->ln2_b, d->eps, ln, dim);
    lap(phase_seconds, VITC_PHASE_LAYERNORM, &t0);
    const int swiglu = d->mlp == VITC_MLP_SWIGLU;
    vitc_epilogue ep_fc1 = {w->fc1_b, swiglu ? VITC_ACT_NONE : d->act, NULL, 0, NULL};
    /* fc2's packed A in the MLP half, where the float32 [T, I] would be (fc2_packed_bytes) */
    void *fc2_in = fc2_packed_bytes(d, t) && vitc_gemm_output_packs(d->kset, w->fc1_w, &ep_fc1)
                       ? (void *)(workspace + (t * dim + 15) / 16 * 16)
                       : NULL;
    if (fc2_in) {
        RETURN_IF_FAILED(vitc_gemm_into_packed_a(d->kset, nthreads, t, ln, dim, w->fc1_w, &ep_fc1, fc2_in, gemm_in));
    } else {
        RETURN_IF_FAILED(vitc_gemm(d->kset, nthreads, t, ln, dim, w->fc1_w, &ep_fc1, inter, fc1_n, gemm_in));
        /* SwiGLU: silu(gate) · up into the gate half, which fc2 reads with row stride 2·inter */
        if (swiglu) vitc_f32_swiglu(isa, t, d->inter, inter, fc1_n, inter, fc1_n);
    }
    lap(phase_seconds, VITC_PHASE_FC1, &t0);
    vitc_epilogue ep_fc2 = {w->fc2_b, VITC_ACT_NONE, hidden, dim, w->ls2};
    if (fc2_in)
        RETURN_IF_FAILED(vitc_gemm_packed_a(d->kset, nthreads, t, fc2_in, NULL, w->fc2_w, &ep_fc2, hidden, dim));
    else
        RETURN_IF_FAILED(vitc_gemm(d->kset, nthreads, t, inter, fc1_n, w->fc2_w, &ep_fc2, hidden, dim, gemm_in));
    lap(phase_seconds, VITC_PHASE_FC2, &t0);
    return VITC_OK;
}

size_t vitc_patch_embed_workspace_floats(size_t batch, size_t channels, size_t height, size_t width, size_t ph,
                                         size_t pw) {
    return batch * (height / ph) * (width / pw) * channels * ph * pw;
}

vitc_status vitc_patch_embed(vitc_isa isa, int nthreads, size_t batch, size_t channels, size_t height, size_t width,
                             size_t ph, size_t pw, size_t dim, const float *pixels, const float *patch_w,
                             const float *patch_b, size_t nprefix, const float *prefix, const float *patch_pos,
                             float *out, float *workspace) {
    const size_t np = (height / ph) * (width / pw), kdim = channels * ph * pw, seq = nprefix + np;
    vitc_f32_patchify(nthreads, batch, channels, height, width, ph, pw, pixels, workspace);
    for (size_t b = 0; b < batch; b++) {
        float *o = out + b * seq * dim;
        if (nprefix) memcpy(o, prefix, nprefix * dim * sizeof(float));
        /* patch rows: conv as GEMM, bias and the position embedding fused (as the residual) */
        vitc_epilogue ep = {patch_b, VITC_ACT_NONE, patch_pos, dim, NULL};
        RETURN_IF_FAILED(vitc_f32_gemm(isa, nthreads, np, dim, kdim, workspace + b * np * kdim, kdim, patch_w, &ep,
                                       o + nprefix * dim, dim));
    }
    return VITC_OK;
}
