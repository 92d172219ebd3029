/* attention_kernels.h — prototypes of the per-ISA attention head kernels (attention_avx2.c,
 * attention_avx512.c). Declarations only; reached through the kernel table (kernel_table.c). */
#ifndef VITC_ATTENTION_KERNELS_H
#define VITC_ATTENTION_KERNELS_H
#include "../vitc.h"

/* Rows per register tile of each ISA's head kernel (= the GEMM micro-kernel's MR). Its columns are two
 * vectors (16 / 32): K_h is packed by the ISA's own attention_pack_k into panels that wide, the layout of
 * vitc_f32_gemm_pack_nk today, but kept independent of the GEMM's NR (attention.c sizes it itself). */
#define VITC_ATTENTION_MR_AVX2 6
#define VITC_ATTENTION_MR_AVX512 14

/* Row blocks of the job a thread runs next: Q, K, V, O (NULL: none), with row strides and row counts
 * (seq_q for Q and O, seq_kv for K and V). */
typedef struct {
    const float *rows[4];
    size_t ld[4];
    size_t nrows[4];
} vitc_attention_next;

/* One (image, head): out[seq_q, hd] = softmax(scale · Q Kᵀ + mask) V.
 * q [seq_q, hd] and v [seq_kv, hd] read in place (row strides ldq, ldv); k_packed = attention_pack_k of
 * K_h [seq_kv, hd]; scratch: MR·seq_kv floats; probs: NULL or [seq_q, seq_kv].
 * Mask: key j is hidden from query i when causal and j > i, or when key_mask is given and key_mask[j] == 0;
 * its probability is exactly 0. A query that sees no key at all attends to every key uniformly (what an
 * additive finfo.min mask gives in transformers), so the output stays finite. */
typedef struct {
    size_t seq_q, seq_kv, hd;
    float scale;
    const float *q;
    size_t ldq;
    const float *k_packed;
    const float *v;
    size_t ldv;
    float *out;
    size_t ldo;
    float *probs;
    float *scratch;
    int causal;
    const unsigned char *key_mask;
} vitc_attention_head_args;

/* next: NULL or the next job's rows, prefetched into L2 while this head runs. */
#define VITC_DECLARE_ATTENTION(isa)                                                                   \
    void vitc_f32_attention_head__##isa(const vitc_attention_head_args *args,                         \
                                        const vitc_attention_next *next);                             \
    void vitc_f32_attention_pack_k__##isa(size_t n, size_t k, const float *kh, size_t ldk, float *packed);
/* pack_k: K_h [n, k] (row stride ldk) -> panels of 2 vectors' width, k-major, rows past n zero. */
VITC_DECLARE_ATTENTION(avx2)
VITC_DECLARE_ATTENTION(avx512)
#undef VITC_DECLARE_ATTENTION
#endif /* VITC_ATTENTION_KERNELS_H */
