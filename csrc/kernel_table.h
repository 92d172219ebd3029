/* kernel_table.h — one table of kernels per kernel set (ISA), filled once (kernel_table.c): gemm.c,
 * ops.c and attention.c look their kernels up here instead of each switching on the ISA.
 * Adding a kernel set = its kernel files under kernels/ + one table row in kernel_table.c. */
#ifndef VITC_KERNEL_TABLE_H
#define VITC_KERNEL_TABLE_H

#include "gemm_internal.h"
#include "kernels/attention_kernels.h"

typedef void (*vitc_activation_fn)(vitc_act act, float *x, size_t n);
typedef void (*vitc_softmax_rows_fn)(size_t rows, size_t n, float scale, float *x, size_t ldx);
typedef void (*vitc_layernorm_rows_fn)(size_t rows, size_t dim, const float *x, size_t ldx, const float *gamma,
                                       const float *beta, float eps, float *y, size_t ldy);
/* the GEMM epilogue on a tile: y = act(x + bias) · scale + residual (kernels/ops_body.h) */
typedef void (*vitc_tile_epilogue_fn)(size_t rows, size_t cols, const float *x, size_t ldx, float *y, size_t ldy,
                                      const float *bias, vitc_act act, const float *scale, const float *residual,
                                      size_t ldr);
typedef void (*vitc_attention_pack_k_fn)(size_t n, size_t k, const float *kh, size_t ldk, float *packed);
typedef void (*vitc_attention_head_fn)(const vitc_attention_head_args *args, const vitc_attention_next *next);

typedef struct {
    vitc_isa isa;
    vitc_f32_gemm_config gemm; /* tile mr × nr, cache blocks, micro-kernel */
    vitc_activation_fn activation;
    vitc_softmax_rows_fn softmax_rows;
    vitc_layernorm_rows_fn layernorm_rows;
    vitc_tile_epilogue_fn tile_epilogue;
    /* the fused attention head (kernels/attention_body.h) and its K packing; NULL: attention.c runs the
     * head through the GEMM API instead */
    vitc_attention_pack_k_fn attention_pack_k;
    vitc_attention_head_fn attention_head;
    size_t attention_mr, attention_nr; /* head-kernel tile: query rows × key columns (0 without one) */
} vitc_kernels;

/* The table of isa; the scalar one for an ISA this build has no kernels for (callers validate first). */
const vitc_kernels *vitc_kernels_for(vitc_isa isa);

#endif /* VITC_KERNEL_TABLE_H */
