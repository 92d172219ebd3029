/* gemm_internal.h — what gemm.c shares with the per-ISA micro-kernels (declarations only: no code,
 * so the ISA files that include it stay free of portable code and vice versa).
 *
 * Packed layouts (the contract between gemm.c's packing and every micro-kernel):
 *  - B: ceil(n / NR) panels of NR columns, each panel k-major: panel[p * NR + j], columns past n are
 *    zero. Panel jp starts at jp * k * NR, so any KC×NR micro-panel (offset pc * NR) is contiguous and
 *    64-byte aligned when the buffer is.
 *  - A (per call): MR-row panels, k-major: panel[p * MR + r], rows past m are zero.
 */
#ifndef VITC_GEMM_INTERNAL_H
#define VITC_GEMM_INTERNAL_H

#include <stddef.h>
#include "vitc.h"
#include "precondition.h"

/* C[mr, nr] (=|+=) A_panel[kc, MR]ᵀ · B_panel[kc, NR], 1 <= mr <= MR, 1 <= nr <= NR (checked: see
 * precondition.h).
 * accumulate == 0: C is only written, never read (it may hold garbage or NaN). */
typedef void (*vitc_f32_gemm_ukernel_fn)(size_t mr, size_t nr, size_t kc, const float *VITC_RESTRICT a,
                                         const float *VITC_RESTRICT b, float *VITC_RESTRICT c, size_t ldc,
                                         int accumulate);

/* The same, plus b_next: NULL, or 4·kc floats of the B panel that tiles after this one read, for the kernel
 * to prefetch into L2 while it multiplies (one 64-byte line per 4 k steps; NR / 4 consecutive tiles cover
 * the next KC×NR micro-panel). */
typedef void (*vitc_f32_gemm_ukernel_next_fn)(size_t mr, size_t nr, size_t kc, const float *VITC_RESTRICT a,
                                              const float *VITC_RESTRICT b, float *VITC_RESTRICT c, size_t ldc,
                                              int accumulate, const float *b_next);

/* One row of the block-size table: register tile MR×NR and the cache blocks around it. */
typedef struct {
    size_t mr, nr;      /* register tile */
    size_t kc;          /* k block: a KC×NR B micro-panel stays in L1 */
    size_t mc;          /* m block (multiple of MR): the packed MC×KC A block stays in L2 */
    size_t nc;          /* n block (multiple of NR): the KC×NC slice of B stays in L2/L3 */
    vitc_f32_gemm_ukernel_fn ukernel;
    vitc_f32_gemm_ukernel_next_fn ukernel_next; /* NULL: the kernel set has no prefetching variant */
} vitc_f32_gemm_config;

#define VITC_GEMM_MR_MAX 16
#define VITC_GEMM_NR_MAX 32

void vitc_f32_gemm_ukernel_4x16__scalar(size_t mr, size_t nr, size_t kc, const float *VITC_RESTRICT a,
                                        const float *VITC_RESTRICT b, float *VITC_RESTRICT c, size_t ldc,
                                        int accumulate);
#if defined(VITC_HAVE_X86_KERNELS)
void vitc_f32_gemm_ukernel_6x16__avx2(size_t mr, size_t nr, size_t kc, const float *VITC_RESTRICT a,
                                      const float *VITC_RESTRICT b, float *VITC_RESTRICT c, size_t ldc,
                                      int accumulate);
void vitc_f32_gemm_ukernel_14x32__avx512(size_t mr, size_t nr, size_t kc, const float *VITC_RESTRICT a,
                                         const float *VITC_RESTRICT b, float *VITC_RESTRICT c, size_t ldc,
                                         int accumulate);
void vitc_f32_gemm_ukernel_14x32_next__avx512(size_t mr, size_t nr, size_t kc, const float *VITC_RESTRICT a,
                                              const float *VITC_RESTRICT b, float *VITC_RESTRICT c, size_t ldc,
                                              int accumulate, const float *b_next);
#endif

#endif /* VITC_GEMM_INTERNAL_H */
