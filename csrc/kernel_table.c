/* kernel_table.c — the kernel table of each kernel set (see kernel_table.h). Constant data: filled once,
 * at compile time, so looking a kernel up costs one load and no thread can see a half-filled table. */
#include "kernel_table.h"
#include "kernels/ops_kernels.h"

/* Block sizes: measured on this project's machines, see docs/performance.md. */
static const vitc_kernels kernels_scalar = {
    .isa = VITC_ISA_SCALAR,
    .gemm = {4, 16, 256, 128, 1024, vitc_f32_gemm_ukernel_4x16__scalar, NULL},
    .activation = vitc_f32_activation__scalar,
    .softmax_rows = vitc_f32_softmax_rows__scalar,
    .layernorm_rows = vitc_f32_layernorm_rows__scalar,
    .tile_epilogue = vitc_f32_tile_epilogue__scalar,
    .attention_pack_k = NULL,
    .attention_head = NULL,
    .attention_mr = 0,
    .attention_nr = 0,
};

#if defined(VITC_HAVE_X86_KERNELS)
/* An x86 kernel set: the mr×nr GEMM micro-kernel (and its prefetching variant, or NULL), row ops and fused
 * attention head of the kernels/ files named <name>; the head kernel's tile is att_mr rows × two vectors
 * (att_nr columns). */
#define X86_KERNEL_SET(code, name, mr, nr, kc, mc, nc, ukernel_next, att_mr, att_nr)                  \
    {                                                                                                \
        .isa = code,                                                                                 \
        .gemm = {mr, nr, kc, mc, nc, vitc_f32_gemm_ukernel_##mr##x##nr##__##name, ukernel_next},     \
        .activation = vitc_f32_activation__##name,                                                   \
        .softmax_rows = vitc_f32_softmax_rows__##name,                                               \
        .layernorm_rows = vitc_f32_layernorm_rows__##name,                                           \
        .tile_epilogue = vitc_f32_tile_epilogue__##name,                                             \
        .attention_pack_k = vitc_f32_attention_pack_k__##name,                                       \
        .attention_head = vitc_f32_attention_head__##name,                                           \
        .attention_mr = att_mr,                                                                      \
        .attention_nr = att_nr,                                                                      \
    }
static const vitc_kernels kernels_avx2 = X86_KERNEL_SET(VITC_ISA_AVX2, avx2, 6, 16, 768, 120, 3072, NULL,
                                                        VITC_ATTENTION_MR_AVX2, 16);
static const vitc_kernels kernels_avx512 = X86_KERNEL_SET(VITC_ISA_AVX512, avx512, 14, 32, 3072, 112, 3072,
                                                          vitc_f32_gemm_ukernel_14x32_next__avx512,
                                                          VITC_ATTENTION_MR_AVX512, 32);
#undef X86_KERNEL_SET
#endif

const vitc_kernels *vitc_kernels_for(vitc_isa isa) {
    switch (isa) {
#if defined(VITC_HAVE_X86_KERNELS)
    case VITC_ISA_AVX512: return &kernels_avx512;
    case VITC_ISA_AVX2: return &kernels_avx2;
#endif
    default: return &kernels_scalar;
    }
}

void vitc_isa_tile_sizes(vitc_isa isa, vitc_tile_sizes *out) {
    const vitc_kernels *kt = vitc_kernels_for(isa);
    out->gemm_mr = kt->gemm.mr;
    out->gemm_nr = kt->gemm.nr;
    out->gemm_kc = kt->gemm.kc;
    out->gemm_mc = kt->gemm.mc;
    out->gemm_nc = kt->gemm.nc;
    out->attention_mr = kt->attention_mr;
    out->attention_nr = kt->attention_nr;
}
