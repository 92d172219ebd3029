/* vitc.h — the one public header of vitc's C kernels.
 *
 * Conventions (see ../README.md "Inside"):
 *  - row-major float32 tensors; every pointer is followed by its leading dimension (row stride, in floats);
 *  - sizes are size_t, sizes first, outputs last;
 *  - every kernel takes the ISA to run (vitc_isa) explicitly: Python resolves the default once
 *    (cpuid/xgetbv, or VITC_ISA), tests force each path;
 *  - kernels trust their arguments: Python/Cython validates shapes, strides and buffer sizes first;
 *  - threaded kernels take nthreads (>= 1) and run one region of vitc's thread pool (threadpool.h);
 *    *_serial variants run on the calling thread so they can be used inside another parallel region.
 */
#ifndef VITC_H
#define VITC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_MSC_VER)
#define VITC_RESTRICT __restrict
#else
#define VITC_RESTRICT restrict
#endif

typedef enum { VITC_ISA_SCALAR = 0, VITC_ISA_AVX2 = 1, VITC_ISA_AVX512 = 2 } vitc_isa;
#define VITC_ISA_COUNT 3

typedef enum { VITC_OK = 0, VITC_ERR_ARG = 1, VITC_ERR_NOMEM = 2, VITC_ERR_ISA = 3 } vitc_status;

/* Activations, as transformers' ACT2FN names them:
 * gelu / gelu_python -> GELU_ERF; gelu_new / gelu_pytorch_tanh / gelu_fast -> GELU_TANH;
 * quick_gelu -> QUICK_GELU (x * sigmoid(1.702 x)); relu; silu / swish; tanh; sigmoid; linear -> NONE. */
typedef enum {
    VITC_ACT_NONE = 0,
    VITC_ACT_GELU_ERF = 1,
    VITC_ACT_GELU_TANH = 2,
    VITC_ACT_QUICK_GELU = 3,
    VITC_ACT_RELU = 4,
    VITC_ACT_SILU = 5,
    VITC_ACT_TANH = 6,
    VITC_ACT_SIGMOID = 7
} vitc_act;
#define VITC_ACT_COUNT 8

/* ---- cpu.c: features, ISA choice, threads ---------------------------------------------------- */
/* CPU features, one bit each: set when cpuid reports the instructions AND the OS has enabled the register
 * state they need (xgetbv: YMM for AVX2/FMA/F16C/AVX-VNNI, + opmask/ZMM for AVX-512*, + tile state for
 * AMX). On Linux a process must still ask for AMX tile data (arch_prctl ARCH_REQ_XCOMP_PERM) before
 * its first tile instruction. Non-x86 builds report 0. */
#define VITC_CPU_AVX2 ((uint64_t)1 << 0)
#define VITC_CPU_FMA ((uint64_t)1 << 1)
#define VITC_CPU_F16C ((uint64_t)1 << 2)
#define VITC_CPU_AVX512F ((uint64_t)1 << 3)
#define VITC_CPU_AVX512BW ((uint64_t)1 << 4)
#define VITC_CPU_AVX512VL ((uint64_t)1 << 5)
#define VITC_CPU_AVX512DQ ((uint64_t)1 << 6)
#define VITC_CPU_AVX512_BF16 ((uint64_t)1 << 7)
#define VITC_CPU_AVX512_VNNI ((uint64_t)1 << 8)
#define VITC_CPU_AVX_VNNI ((uint64_t)1 << 9)
#define VITC_CPU_AMX_TILE ((uint64_t)1 << 10)
#define VITC_CPU_AMX_BF16 ((uint64_t)1 << 11)
#define VITC_CPU_AMX_INT8 ((uint64_t)1 << 12)
#define VITC_CPU_FEATURE_COUNT 13
uint64_t vitc_cpu_features(void);          /* detected once per process */
const char *vitc_cpu_feature_name(int bit); /* "avx2", "avx512_bf16", ... for bit 0..COUNT-1, else NULL */
/* The features each ISA's kernels are compiled for (setup.py's flags): isa is supported when all are. */
uint64_t vitc_isa_required_features(vitc_isa isa);

int vitc_isa_compiled(vitc_isa isa);   /* kernels for isa are in this build */
int vitc_isa_supported(vitc_isa isa);  /* compiled AND the CPU + OS can run them (cpuid, xgetbv) */
vitc_isa vitc_isa_best(void);          /* best supported ISA */
const char *vitc_isa_name(vitc_isa isa);
const char *vitc_act_name(vitc_act act);       /* "gelu_erf", ... as _vitc.ACTIVATIONS */
/* Tile sizes of an ISA's kernel set (kernel_table.c): the GEMM register tile mr × nr and its cache blocks,
 * the attention head kernel's query rows × key columns (0 × 0: attention runs through the GEMM). */
typedef struct {
    size_t gemm_mr, gemm_nr, gemm_kc, gemm_mc, gemm_nc;
    size_t attention_mr, attention_nr;
} vitc_tile_sizes;
void vitc_isa_tile_sizes(vitc_isa isa, vitc_tile_sizes *out);

/* ---- gemm.c: C[m,n] = epilogue(A[m,k] · B[k,n]) with B packed once ---------------------------- */
/* B comes either as a Linear weight W[n,k] (C = A·Wᵀ, pack_nk) or as a plain [k,n] matrix (pack_kn).
 * The packed layout depends on the ISA: a buffer packed for one ISA is only used with that ISA. */
size_t vitc_f32_gemm_packed_floats(vitc_isa isa, size_t n, size_t k);
void vitc_f32_gemm_pack_nk(vitc_isa isa, size_t n, size_t k, const float *w, size_t ldw, float *packed);
void vitc_f32_gemm_pack_kn(vitc_isa isa, size_t n, size_t k, const float *b, size_t ldb, float *packed);

/* Epilogue fused into the GEMM, applied in this order: + bias[n], act(), · scale[n], + residual[m, ldr]
 * (scale: a per-column layer scale, transformers' Dinov2LayerScale / lambda, exactly its rounding order).
 * residual may be the same pointer as C (with ldr == ldc): C += scale · act(A·B + bias) then. */
typedef struct {
    const float *bias;     /* [n] or NULL */
    vitc_act act;
    const float *residual; /* [m, ldr] or NULL */
    size_t ldr;
    const float *scale;    /* [n] or NULL */
} vitc_epilogue;

/* Threaded GEMM; ep may be NULL (plain product). packed is 64-byte aligned. */
vitc_status vitc_f32_gemm(vitc_isa isa, int nthreads, size_t m, size_t n, size_t k,
                          const float *a, size_t lda, const float *packed, const vitc_epilogue *ep,
                          float *c, size_t ldc);
/* Same on the calling thread; workspace: vitc_f32_gemm_serial_workspace_floats(isa, k) floats. */
size_t vitc_f32_gemm_serial_workspace_floats(vitc_isa isa, size_t k);
void vitc_f32_gemm_serial(vitc_isa isa, size_t m, size_t n, size_t k, const float *a, size_t lda,
                          const float *packed, const vitc_epilogue *ep, float *c, size_t ldc,
                          float *workspace);

/* ---- gemm_lowp.c: GEMM on packed weights that know their dtype (float32, bf16, int8) ---------- */
/* A kernel set is an ISA path plus the extensions a dtype's kernels use. vitc_isa values are valid
 * kernel sets (scalar, avx2, avx512); AVX512_BF16 / AVX512_VNNI add vdpbf16ps / vpdpbusd kernels, AMX the
 * tile instructions (Linux: the process asks the kernel for the tile state once, see cpu_lowp.c). */
typedef enum { VITC_DTYPE_F32 = 0, VITC_DTYPE_BF16 = 1, VITC_DTYPE_S8 = 2 } vitc_dtype;
#define VITC_DTYPE_COUNT 3
typedef enum {
    VITC_KSET_SCALAR = 0,
    VITC_KSET_AVX2 = 1,
    VITC_KSET_AVX512 = 2,
    VITC_KSET_AVX512_BF16 = 3, /* bf16 only */
    VITC_KSET_AVX512_VNNI = 4, /* int8 only */
    VITC_KSET_AMX = 5          /* bf16 and int8 on AMX tiles (tdpbf16ps / tdpbusd) */
} vitc_kset;
#define VITC_KSET_COUNT 6

/* A packed Linear weight W[n, k] (C = A·Wᵀ) and what it was packed for. data: panels (float32, bf16 or
 * s8, layout of the (kset, dtype) configuration); s8 also has per-output-channel scales[n_pad] (W[j, :] ≈
 * scales[j]·q[j, :]) and comp[n_pad] = 128·Σ_k q[j, k], all inside one buffer. */
typedef struct {
    vitc_dtype dtype;
    vitc_kset kset;
    size_t n, k;
    const void *data;
    const float *scales;
    const int32_t *comp;
} vitc_packed;

/* The CPU and this build can run kset's kernels; the kset has kernels for dtype. */
int vitc_kset_supported(vitc_kset kset);
int vitc_kset_has_dtype(vitc_kset kset, vitc_dtype dtype);
/* Register tile mr×nr and k-interleave kr of (kset, dtype) (0s when there are no such kernels). */
void vitc_gemm_tile(vitc_kset kset, vitc_dtype dtype, size_t *mr, size_t *nr, size_t *kr);
/* Bytes of a packed W[n, k]; the buffer given to vitc_gemm_pack is 64-byte aligned. */
size_t vitc_gemm_packed_bytes(vitc_kset kset, vitc_dtype dtype, size_t n, size_t k);
/* Pack (and convert: bf16 round-to-nearest-even, or s8 per-output-channel symmetric) W[n, ldw] into buf,
 * and describe it in *out. float32 packs exactly as vitc_f32_gemm_pack_nk. */
void vitc_gemm_pack(vitc_kset kset, vitc_dtype dtype, size_t n, size_t k, const float *w, size_t ldw,
                    void *buf, vitc_packed *out);
/* The two steps of vitc_gemm_pack for bf16 / int8, for weights stored converted (save_pretrained):
 * convert: float32 W[n, ldw] -> the logical form, bf16 bits (uint16 q[n, ldq]) or s8 values (int8 q[n, ldq])
 *   plus scales[n]; pack_converted: that form into buf, byte-identical to vitc_gemm_pack of the float32 it
 *   came from (same compensation); unpack: the logical form back out of a packed weight. */
void vitc_gemm_convert(vitc_dtype dtype, size_t n, size_t k, const float *w, size_t ldw, void *q, size_t ldq,
                       float *scales);
void vitc_gemm_pack_converted(vitc_kset kset, vitc_dtype dtype, size_t n, size_t k, const void *q, size_t ldq,
                              const float *scales, void *buf, vitc_packed *out);
void vitc_gemm_unpack(const vitc_packed *w, void *q, size_t ldq, float *scales);

/* Per-call A conversion (none for float32; bf16 rounding; s8 per-row quantization, scale = max|row|/127,
 * then + 128 to u8) into a packed-A buffer of vitc_gemm_packed_a_bytes(kset, dtype, m, k) bytes
 * (64-byte aligned) and, for int8, row_scales[m rounded up to mr]. Rows [row0, row0 + rows) (a points at
 * row row0): a producer (LayerNorm, GELU) can convert its row block as it finishes it. */
size_t vitc_gemm_packed_a_bytes(vitc_kset kset, vitc_dtype dtype, size_t m, size_t k);
void vitc_gemm_pack_a(vitc_kset kset, vitc_dtype dtype, size_t row0, size_t rows, size_t k, const float *a,
                      size_t lda, void *apack, float *row_scales);
/* C[m, n] = epilogue(A · Wᵀ) from an A packed by vitc_gemm_pack_a; int32 sums are dequantized once
 * (row_scale·col_scale) before bias/act/residual, in float32. VITC_ERR_ISA when w was packed for another
 * kernel set or dtype (or kset cannot run here). nthreads == 1 stays on the calling thread. */
vitc_status vitc_gemm_packed_a(vitc_kset kset, int nthreads, size_t m, const void *apack,
                               const float *row_scales, const vitc_packed *w, const vitc_epilogue *ep, float *c,
                               size_t ldc);
/* bf16 where the kernel set has a tile kernel (AMX): the output act(A · Wᵀ + bias) rounded to bf16 straight into
 * the packed A of a following GEMM with k = w->n, the bytes vitc_gemm then vitc_gemm_pack_a of C[m, n] would give
 * (out_apack: vitc_gemm_packed_a_bytes(kset, dtype, m, w->n) bytes), without C; workspace as vitc_gemm's.
 * vitc_gemm_output_packs says whether it applies (else VITC_ERR_ISA): n a multiple of the tile width, an
 * epilogue of bias and an activation the tile kernel finishes (no residual, no scale). */
int vitc_gemm_output_packs(vitc_kset kset, const vitc_packed *w, const vitc_epilogue *ep);
vitc_status vitc_gemm_into_packed_a(vitc_kset kset, int nthreads, size_t m, const float *a, size_t lda,
                                    const vitc_packed *w, const vitc_epilogue *ep, void *out_apack,
                                    void *workspace);
/* Both steps; workspace: vitc_gemm_workspace_bytes(kset, dtype, m, k) bytes, 64-byte aligned (unused, may be
 * NULL, for float32, which runs vitc_f32_gemm unchanged). */
size_t vitc_gemm_workspace_bytes(vitc_kset kset, vitc_dtype dtype, size_t m, size_t k);
vitc_status vitc_gemm(vitc_kset kset, int nthreads, size_t m, const float *a, size_t lda, const vitc_packed *w,
                      const vitc_epilogue *ep, float *c, size_t ldc, void *workspace);

/* ---- ops.c: row-wise ops (serial unless nthreads is given) ------------------------------------ */
void vitc_f32_layernorm(vitc_isa isa, int nthreads, size_t rows, size_t dim, const float *x, size_t ldx,
                        const float *gamma, const float *beta, float eps, float *y, size_t ldy);
/* In place: x[r, :] = softmax(scale * x[r, :]), max-subtracted. */
void vitc_f32_softmax_rows(vitc_isa isa, size_t rows, size_t n, float scale, float *x, size_t ldx);
/* In place activation over n contiguous floats. */
void vitc_f32_activation(vitc_isa isa, vitc_act act, float *x, size_t n);
/* SwiGLU rows: y[r, j] = silu(x[r, j]) · x[r, hidden + j], j < hidden (transformers' Dinov2SwiGLUFFN:
 * x = [gate | up], the chunk(2) order). y may be x itself (ldy == ldx): the result lands in the gate half. */
void vitc_f32_swiglu(vitc_isa isa, size_t rows, size_t hidden, const float *x, size_t ldx, float *y, size_t ldy);

/* ---- patchify.c: im2col for Conv2d(kernel = stride = patch) ------------------------------------ */
/* pixels [batch, channels, height, width]; out [batch * (height/ph) * (width/pw), channels*ph*pw],
 * each row in Conv2d weight order (c, ky, kx). Rows/columns past a whole patch are ignored, as Conv2d does. */
void vitc_f32_patchify(int nthreads, size_t batch, size_t channels, size_t height, size_t width,
                       size_t ph, size_t pw, const float *pixels, float *out);

/* ---- attention.c: multi-head self-attention core ---------------------------------------------- */
/* qkv rows: [batch*seq, ldqkv] holding Q | K | V (each [dim = heads*head_dim], head h at h*head_dim).
 * out [batch*seq, ldo] gets softmax(Q Kᵀ · head_dim^-0.5) V, heads concatenated.
 * probs, if not NULL, gets the post-softmax [batch, heads, seq, seq]. */
size_t vitc_f32_attention_workspace_floats(vitc_isa isa, int nthreads, size_t seq, size_t head_dim);
void vitc_f32_attention(vitc_isa isa, int nthreads, size_t batch, size_t seq, size_t heads,
                        size_t head_dim, const float *qkv, size_t ldqkv, float *out, size_t ldo,
                        float *probs, float *workspace);

/* General form: queries from their own rows, seq_q != seq_kv allowed (e.g. one learned query over all
 * tokens, SigLIP's pooling head), optional causal and key-padding masks (CLIP's text tower).
 * q rows [batch*seq_q, ldq], k and v rows [batch*seq_kv, ldk / ldv], head h at columns h*head_dim;
 * out [batch*seq_q, ldo] = softmax(scale · Q Kᵀ + mask) V, heads concatenated; probs, if not NULL,
 * [batch, heads, seq_q, seq_kv]. scale is applied after the product (transformers' eager attention;
 * head_dim^-0.5 for ViT/CLIP). Key j is hidden from query i when causal and j > i (top-left aligned, as
 * torch.tril), or when key_mask[b*seq_kv + j] == 0 (transformers' attention_mask: 1 = attend). A hidden
 * key gets probability exactly 0, as transformers' additive finfo.min mask gives; a query that sees no
 * key at all (cannot happen in CLIP: token 0 is never padded) attends to all keys uniformly, as that
 * additive mask also gives, so the output stays finite. */
typedef struct {
    size_t batch, heads, head_dim, seq_q, seq_kv;
    const float *q;
    size_t ldq;
    const float *k;
    size_t ldk;
    const float *v;
    size_t ldv;
    float scale;
    int causal;
    const unsigned char *key_mask; /* [batch, seq_kv] or NULL */
} vitc_attention_desc;
size_t vitc_f32_attention_general_workspace_floats(vitc_isa isa, int nthreads, size_t seq_q, size_t seq_kv,
                                                   size_t head_dim);
void vitc_f32_attention_general(vitc_isa isa, int nthreads, const vitc_attention_desc *d, float *out, size_t ldo,
                                float *probs, float *workspace);

/* ---- attention_lowp.c: the same for bf16 models on AMX: Q, K, V and P rounded to bf16, float32 sums and
 * softmax. Applies (1) for kset AMX on a CPU that runs it, head_dim a multiple of 32, no masks; otherwise
 * vitc_bf16_attention returns VITC_ERR_ISA and the caller runs vitc_f32_attention_general. No probs. */
int vitc_bf16_attention_applies(vitc_kset kset, const vitc_attention_desc *d);
size_t vitc_bf16_attention_workspace_floats(int nthreads, size_t seq_kv, size_t head_dim);
vitc_status vitc_bf16_attention(vitc_kset kset, int nthreads, const vitc_attention_desc *d, float *out, size_t ldo,
                                float *workspace);

/* ---- vit.c: the ViT pieces that call the kernels above ----------------------------------------- */
/* The MLP of an encoder layer. STANDARD: fc2(act(fc1 x)) (ViT, DeiT, CLIP, SigLIP, DINOv2 base..large);
 * SWIGLU: fc2(silu(gate) · up), [gate | up] = fc1 x (DINOv2 giant; act is ignored). */
typedef enum { VITC_MLP_STANDARD = 0, VITC_MLP_SWIGLU = 1 } vitc_mlp;
#define VITC_MLP_COUNT 2
const char *vitc_mlp_name(vitc_mlp mlp); /* "standard", "swiglu" */

typedef struct {
    size_t dim, heads, inter; /* inter: the MLP's hidden width (SwiGLU: of gate and of up each) */
    float eps;
    vitc_act act;
    vitc_mlp mlp;
    vitc_kset kset;   /* kernel set of the four Linear weights (float32: the ISA) */
    vitc_dtype dtype; /* their dtype: bf16/int8 convert each GEMM input per call into the workspace */
} vitc_vit_dims;

typedef struct {
    const float *ln1_g, *ln1_b, *ln2_g, *ln2_b;
    const vitc_packed *qkv_w;  /* [3*dim, dim] (query|key|value rows), packed for d->kset, d->dtype */
    const float *qkv_b;        /* [3*dim] or NULL */
    const vitc_packed *proj_w; /* [dim, dim] */
    const float *proj_b;       /* [dim] */
    const vitc_packed *fc1_w;  /* [inter, dim] (SwiGLU: [2*inter, dim] gate|up rows) */
    const float *fc1_b;        /* [inter] */
    const vitc_packed *fc2_w;  /* [dim, inter] */
    const float *fc2_b;        /* [dim] */
    const float *ls1, *ls2;       /* layer scales [dim] of the attention and MLP branches, or NULL */
} vitc_vit_layer;

/* Phases of a layer, for the optional per-phase timing of vitc_vit_layer_forward. */
typedef enum {
    VITC_PHASE_LAYERNORM = 0, /* both LayerNorms */
    VITC_PHASE_QKV = 1,       /* fused Q|K|V projection GEMM */
    VITC_PHASE_ATTENTION = 2, /* QKᵀ, softmax, P·V */
    VITC_PHASE_PROJ = 3,      /* attention output GEMM + residual */
    VITC_PHASE_FC1 = 4,       /* MLP up-projection GEMM + activation */
    VITC_PHASE_FC2 = 5        /* MLP down-projection GEMM + residual */
} vitc_phase;
#define VITC_PHASE_COUNT 6
const char *vitc_phase_name(vitc_phase phase); /* "layernorm", ... as _vitc.LAYER_PHASES */

size_t vitc_vit_layer_workspace_floats(vitc_isa isa, int nthreads, const vitc_vit_dims *d, size_t batch,
                                       size_t seq);
/* One pre-LN encoder layer in place on hidden [batch*seq, dim]; probs as in vitc_f32_attention.
 * phase_seconds, if not NULL, has VITC_PHASE_COUNT entries that get each phase's wall time added.
 * VITC_ERR_NOMEM when a GEMM could not get its packing buffer (hidden is then unspecified). */
vitc_status vitc_vit_layer_forward(vitc_isa isa, int nthreads, const vitc_vit_dims *d, const vitc_vit_layer *w,
                            size_t batch, size_t seq, float *hidden, float *probs, float *workspace,
                            double *phase_seconds);

/* The same with the text towers' masks (vitc_attention_desc): causal (CLIP's text tower) and/or
 * key_mask [batch, seq] (1 = attend, as transformers' attention_mask) or NULL. */
vitc_status vitc_vit_layer_forward_masked(vitc_isa isa, int nthreads, const vitc_vit_dims *d,
                                          const vitc_vit_layer *w, size_t batch, size_t seq, int causal,
                                          const unsigned char *key_mask, float *hidden, float *probs,
                                          float *workspace, double *phase_seconds);

/* Patch embeddings after nprefix prefix rows: out [batch, nprefix + np, dim] with
 *   rows 0 .. nprefix-1 = prefix [nprefix, dim], complete (CLS / distillation token + their position rows,
 *     registers as they are: the caller adds what applies), the same for every image;
 *   row nprefix + p = (patch_p · Wᵀ + patch_b) + patch_pos[p], transformers' rounding order (conv + bias,
 *     then + position). patch_b (CLIP: NULL) and patch_pos (NULL: none) are optional.
 * patch_w packed [dim, channels*ph*pw]; patch_pos [np, dim] already interpolated to this grid;
 * prefix may be NULL when nprefix == 0; workspace: vitc_patch_embed_workspace_floats. */
size_t vitc_patch_embed_workspace_floats(size_t batch, size_t channels, size_t height, size_t width, size_t ph,
                                         size_t pw);
vitc_status vitc_patch_embed(vitc_isa isa, int nthreads, size_t batch, size_t channels, size_t height, size_t width,
                             size_t ph, size_t pw, size_t dim, const float *pixels, const float *patch_w,
                             const float *patch_b, size_t nprefix, const float *prefix, const float *patch_pos,
                             float *out, float *workspace);

#ifdef __cplusplus
}
#endif
#endif /* VITC_H */
