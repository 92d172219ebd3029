/* attention_kernels.h — prototypes of the per-ISA attention head kernels (attention_avx2.c,
 * attention_avx512.c). Declarations only; reached solely through the VITC_HAVE_X86_KERNELS dispatch in
 * attention.c. */
#ifndef VITC_ATTENTION_KERNELS_H
#define VITC_ATTENTION_KERNELS_H
#include "../vitc.h"

/* Rows per register tile of each ISA's head kernel (= the GEMM micro-kernel's MR; its NR (two vectors)
 * is the GEMM's, so K_h is packed by vitc_f32_gemm_pack_nk of the same ISA). */
#define VITC_ATTENTION_MR_AVX2 6
#define VITC_ATTENTION_MR_AVX512 14

/* The [seq, hd] row blocks of the job a thread runs next: Q, K, V, O (NULL: none), with row strides. */
typedef struct {
    const float *rows[4];
    size_t ld[4];
} vitc_attention_next;

/* One (image, head): out[seq, hd] (row stride ldo) = softmax(scale · Q Kᵀ) V.
 * q, v [seq, hd] row strides ldq, ldv (read in place); k_packed = pack_nk(n = seq, k = hd) of K_h;
 * scratch: MR·seq floats; probs: NULL or [seq, seq]. next: NULL or the next job's rows, prefetched
 * into L2 while this head runs. */
#define VITC_DECLARE_ATTENTION(isa)                                                                   \
    void vitc_f32_attention_head__##isa(size_t seq, size_t hd, float scale, const float *q, size_t ldq,   \
                                        const float *k_packed, const float *v, size_t ldv, float *out,    \
                                        size_t ldo, float *probs, float *scratch,                         \
                                        const vitc_attention_next *next);
/* K_h [n, k] (row stride ldk) -> exactly vitc_f32_gemm_pack_nk(isa, n, k, ...)'s layout */
void vitc_f32_attention_pack_k__avx2(size_t n, size_t k, const float *kh, size_t ldk, float *packed);
void vitc_f32_attention_pack_k__avx512(size_t n, size_t k, const float *kh, size_t ldk, float *packed);

VITC_DECLARE_ATTENTION(avx2)
VITC_DECLARE_ATTENTION(avx512)
#undef VITC_DECLARE_ATTENTION
#endif /* VITC_ATTENTION_KERNELS_H */
