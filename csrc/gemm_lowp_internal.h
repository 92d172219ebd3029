/* gemm_lowp_internal.h — what gemm_lowp.c (portable driver) shares with the reduced-precision kernels in
 * csrc/kernels/gemm_{bf16,s8,lowp}_*.c (declarations only).
 *
 * Packed layouts, all k-interleaved by KR (the GEMM configuration's kr) so that one 4-byte group of A
 * (KR elements of one row) is broadcast against NR groups of B (KR elements of each of NR columns):
 *  - B (weights, packed once): ceil(n/NR) panels, panel[g][j][q] = W[col j, k index g*KR + q], groups
 *    g < kq = ceil(k/KR); columns past n and k indices past k are zero. Panel jp starts at jp*kq*NR*KR
 *    elements.
 *  - A (converted per call): MR-row panels, panel[g][r][q] (always 4 bytes per (g, r): bf16 pairs, u8
 *    quads, u16 pairs or single floats); rows past m are zero. Tile kernels (AMX) take A in 16-row
 *    blocks of 16-group (64-byte) rows instead, one 1 KB tile after the other (gemm_lowp_body.h); row
 *    block i/16 starts at byte i·kq·4 either way.
 *  - kq may be rounded up to a multiple of the configuration's k block (AMX: 16 groups, one tile's depth);
 *    the groups past ceil(k/KR) are zero in A and B.
 * A micro-kernel computes one MR×NR tile over all of k (no k blocking: every accumulation order is fixed by
 * k alone, so 1 and N threads agree bitwise) into a stack tile [MR][NR] (float, or int32 for s8) that the
 * epilogue — compiled in the same ISA file — turns into C.
 */
#ifndef VITC_GEMM_LOWP_INTERNAL_H
#define VITC_GEMM_LOWP_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include "vitc.h"

#define VITC_LOWP_MR_MAX 32
#define VITC_LOWP_NR_MAX 32

/* AMX bf16, one tile written where the epilogue wants it: accumulators from init (row stride ldi floats; 0:
 * every row from init[0..32); NULL: zero), stored to c (row stride ldc floats). While it runs, it prefetches
 * next_c_rows rows of the next tile's C (row stride next_ldc floats) for writing and next_b_lines 64-byte
 * lines from next_b into L1 (0: none), and finishes the previous tile in place (its vector work overlaps this
 * tile's tile multiply-adds): prev[r][j] = act(prev[r][j] + prev_bias[j]) for r < prev_rows (row stride
 * prev_ldc; prev_bias may be NULL), or, with prev_bf16, rounds those rows to bf16 into a packed A in 16-row tiles
 * instead (row r's 64 bytes at prev_bf16 + (r / 16)·prev_bf16_block + (r % 16)·64; vitc_amx_finish_bf16). */
typedef struct {
    const float *init;
    size_t ldi;
    float *c;
    size_t ldc;
    const float *next_c;
    size_t next_c_rows, next_ldc;
    const void *next_b;
    size_t next_b_lines;
    float *prev;
    size_t prev_rows, prev_ldc;
    const float *prev_bias;
    vitc_act act;
    unsigned char *prev_bf16;
    size_t prev_bf16_block;
} vitc_amx_tile_c;

/* How A is converted while it is packed (the "A-conversion step" of a configuration). */
typedef enum {
    VITC_A_BF16 = 0,     /* f32 -> bf16, round to nearest even; pairs */
    VITC_A_BF16_F32 = 1, /* f32 -> bf16 -> f32 (kernels without bf16 arithmetic); singles */
    VITC_A_U8 = 2,       /* per-row symmetric s8 quantization + 128 -> u8; quads (vpdpbusd) */
    VITC_A_U16 = 3       /* same values widened to 16 bits; pairs (vpmaddwd) */
} vitc_lowp_afmt;

/* tile[r][j] (r < mr, every j < NR) = sum over k of A_panel[r] · B_panel[j]; kq = ceil(k / KR) groups. */
typedef void (*vitc_lowp_ukernel_fn)(size_t mr, size_t kq, const void *VITC_RESTRICT a,
                                     const void *VITC_RESTRICT b, void *VITC_RESTRICT tile);

typedef struct {
    vitc_isa isa; /* of the activation kernels */
    const float *bias;
    vitc_act act;
    const float *scale;    /* [n] or NULL: after the activation, before the residual (layer scale) */
    const float *residual; /* may be C itself (same ldc): each element is read before it is written */
    size_t ldr;
    const float *row_scales, *col_scales; /* s8: the tile is int32 and gets dequantized; else NULL */
    const int32_t *comp;                  /* s8: 128 * column sums of the s8 weights */
} vitc_lowp_epilogue_args;

/* C[row0 + r, col0 + j] = act(dequant(tile[r][j]) + bias) · scale + residual, r < rows, j < cols. */
typedef void (*vitc_lowp_epilogue_fn)(const vitc_lowp_epilogue_args *e, size_t rows, size_t cols, size_t row0,
                                      size_t col0, void *tile, size_t ldt, float *c, size_t ldc);

/* Rows [row0, row0 + rows) of A (a points at row row0) into the packed-A buffer (kq groups per row; panels,
 * or 16-row tiles when tile_rows); s8 formats also write row_scales[row0 + i]. The rest of the last MR panel
 * touched is zero-filled. */
typedef void (*vitc_lowp_pack_a_fn)(vitc_lowp_afmt fmt, int tile_rows, size_t mr, size_t kq, size_t row0,
                                    size_t rows, size_t k, const float *a, size_t lda, void *apack,
                                    float *row_scales);

#define VITC_LOWP_DECLARE(sfx)                                                                              \
    void vitc_lowp_epilogue__##sfx(const vitc_lowp_epilogue_args *e, size_t rows, size_t cols, size_t row0, \
                                   size_t col0, void *tile, size_t ldt, float *c, size_t ldc);             \
    void vitc_lowp_pack_a__##sfx(vitc_lowp_afmt fmt, int tile_rows, size_t mr, size_t kq, size_t row0,    \
                                 size_t rows, size_t k, const float *a, size_t lda, void *apack,           \
                                 float *row_scales);
VITC_LOWP_DECLARE(scalar)
void vitc_s8_gemm_ukernel_4x16__scalar(size_t mr, size_t kq, const void *VITC_RESTRICT a,
                                       const void *VITC_RESTRICT b, void *VITC_RESTRICT tile);
#if defined(VITC_HAVE_X86_KERNELS)
VITC_LOWP_DECLARE(avx2)
VITC_LOWP_DECLARE(avx512)
VITC_LOWP_DECLARE(avx512bf16)
VITC_LOWP_DECLARE(avx512vnni)
void vitc_s16_gemm_ukernel_6x16__avx2(size_t mr, size_t kq, const void *VITC_RESTRICT a,
                                      const void *VITC_RESTRICT b, void *VITC_RESTRICT tile);
void vitc_s16_gemm_ukernel_12x32__avx512(size_t mr, size_t kq, const void *VITC_RESTRICT a,
                                         const void *VITC_RESTRICT b, void *VITC_RESTRICT tile);
void vitc_bf16_gemm_ukernel_14x32__avx512bf16(size_t mr, size_t kq, const void *VITC_RESTRICT a,
                                              const void *VITC_RESTRICT b, void *VITC_RESTRICT tile);
void vitc_s8_gemm_ukernel_14x32__avx512vnni(size_t mr, size_t kq, const void *VITC_RESTRICT a,
                                            const void *VITC_RESTRICT b, void *VITC_RESTRICT tile);
VITC_LOWP_DECLARE(amx)
/* AMX: 32×32 tiles (2×2 of the 16×16 accumulator tiles), A in 16-row tiles, kq a multiple of 16; a task brackets
 * its micro-kernel calls with begin (loads the tile configuration on this thread) and end (releases it). */
void vitc_bf16_gemm_ukernel_32x32__amx(size_t mr, size_t kq, const void *VITC_RESTRICT a,
                                       const void *VITC_RESTRICT b, void *VITC_RESTRICT tile);
void vitc_s8_gemm_ukernel_32x32__amx(size_t mr, size_t kq, const void *VITC_RESTRICT a,
                                     const void *VITC_RESTRICT b, void *VITC_RESTRICT tile);
void vitc_bf16_gemm_tile_c__amx(size_t mr, size_t kq, const void *VITC_RESTRICT a, const void *VITC_RESTRICT b,
                                const vitc_amx_tile_c *t);
/* Whether vitc_bf16_gemm_tile_c__amx can finish a previous tile with this activation (else prev must be NULL) */
int vitc_amx_finishes(vitc_act act);
/* The same finish outside a tile call (an edge tile, the last one of a task): rows [0, rows) of tile (row stride
 * ldt floats, 32 columns) as act(x + bias) rounded to bf16 into dst (layout of vitc_amx_tile_c's prev_bf16), rows
 * [rows, 32) zero. */
void vitc_amx_finish_bf16(size_t rows, const float *tile, size_t ldt, const float *bias, vitc_act act,
                          unsigned char *dst, size_t block);
void vitc_amx_task_begin(void);
void vitc_amx_task_end(void);
#endif
#undef VITC_LOWP_DECLARE

#endif /* VITC_GEMM_LOWP_INTERNAL_H */
