/* attention_kernels.h — prototypes of the per-ISA attention head kernels (attention_avx2.c,
 * attention_avx512.c). Declarations only; reached solely through the VITC_HAVE_X86_KERNELS dispatch in
 * attention.c. */
#ifndef VITC_ATTENTION_KERNELS_H
#define VITC_ATTENTION_KERNELS_H
#include "../vitc.h"

/* Rows per register tile of each ISA's head kernel (= the GEMM micro-kernel's MR; its NR is the GEMM's,
 * so K_h and V_h are packed by vitc_f32_gemm_pack_nk / pack_kn of the same ISA). */
#define VITC_ATTENTION_MR_AVX2 6
#define VITC_ATTENTION_MR_AVX512 14

/* One (image, head): out[seq, hd] (row stride ldo) = softmax(scale · Q Kᵀ) V.
 * q [seq, hd] row stride ldq (read in place); k_packed = pack_nk(n = seq, k = hd) of K_h;
 * v_packed = pack_kn(n = hd, k = seq) of V_h; scratch: MR·seq floats; probs: NULL or [seq, seq]. */
#define VITC_DECLARE_ATTENTION(isa)                                                                   \
    void vitc_f32_attention_head__##isa(size_t seq, size_t hd, float scale, const float *q, size_t ldq,   \
                                        const float *k_packed, const float *v_packed, float *out,         \
                                        size_t ldo, float *probs, float *scratch);
VITC_DECLARE_ATTENTION(avx2)
VITC_DECLARE_ATTENTION(avx512)
#undef VITC_DECLARE_ATTENTION
#endif /* VITC_ATTENTION_KERNELS_H */
