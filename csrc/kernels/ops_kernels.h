/* ops_kernels.h — prototypes of the per-ISA row-op kernels (ops.c's scalar ones, ops_avx2.c, ops_avx512.c).
 * Declarations only; reached through the kernel table (kernel_table.c). */
#ifndef VITC_OPS_KERNELS_H
#define VITC_OPS_KERNELS_H
#include "../vitc.h"

/* gelu_erf: beyond |x| = this, |x| Phi(-|x|) < 1.0001 FLT_MIN and is flushed (gelu = x, or -0 below):
 * no subnormal results, which cost microcode assists (ops.c, kernels/vmath_body.h) */
#define VITC_GELU_ERF_TAIL 13.146238f

#define VITC_DECLARE_OPS(isa)                                                                        \
    void vitc_f32_activation__##isa(vitc_act act, float *x, size_t n);                               \
    void vitc_f32_softmax_rows__##isa(size_t rows, size_t n, float scale, float *x, size_t ldx);     \
    void vitc_f32_layernorm_rows__##isa(size_t rows, size_t dim, const float *x, size_t ldx,         \
                                        const float *gamma, const float *beta, float eps, float *y,  \
                                        size_t ldy);                                                 \
    void vitc_f32_tile_epilogue__##isa(size_t rows, size_t cols, const float *x, size_t ldx, float *y,   \
                                       size_t ldy, const float *bias, vitc_act act, const float *scale, \
                                       const float *residual, size_t ldr);
VITC_DECLARE_OPS(scalar)
VITC_DECLARE_OPS(avx2)
VITC_DECLARE_OPS(avx512)
#undef VITC_DECLARE_OPS
#endif /* VITC_OPS_KERNELS_H */
