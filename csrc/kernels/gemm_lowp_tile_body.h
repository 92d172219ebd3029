/* gemm_lowp_tile_body.h — the register-tile micro-kernel of the bf16 / int8 GEMM, written once and included
 * by each ISA file (gemm_bf16_avx512bf16.c, gemm_s8_{avx2,avx512,avx512vnni}.c) after gemm_lowp_body.h. Each
 * row of the MR×NR int32/float32 tile is two vector accumulators; per 4-byte k group (a bf16 pair, an s16
 * pair or a u8 quad of A, broadcast) the two B vectors of NR columns are multiplied in and summed. The file
 * defines before including:
 *   MR, NR                  the tile (rows, columns);
 *   LOWP_UKERNEL            the function's name (as declared in gemm_lowp_internal.h);
 *   LOWP_B_T, LOWP_C_T      B's element type as packed, the tile's (int32_t or float);
 *   LOWP_ACC                the accumulator vector type, LOWP_ZERO() its zero; LOWP_VEC A's and B's;
 *   LOWP_LOAD_B(b, g, half) the B vector of columns [half·NR/2, (half + 1)·NR/2) of k group g;
 *   LOWP_SET_A(a32)         A's 4-byte group broadcast; LOWP_MADD(acc, a, b) acc + the group's products;
 *   LOWP_STORE(p, acc)      store NR/2 tile values. */

static inline __attribute__((always_inline)) void lowp_tile(const int rows, size_t kq, const uint32_t *a,
                                                            const LOWP_B_T *b, LOWP_C_T *tile) {
    LOWP_ACC acc0[MR], acc1[MR];
#pragma GCC unroll 16
    for (int r = 0; r < rows; r++) acc0[r] = acc1[r] = LOWP_ZERO();
#pragma GCC unroll 2
    for (size_t g = 0; g < kq; g++) {
        const LOWP_VEC b0 = LOWP_LOAD_B(b, g, 0);
        const LOWP_VEC b1 = LOWP_LOAD_B(b, g, 1);
#pragma GCC unroll 16
        for (int r = 0; r < rows; r++) {
            const LOWP_VEC ar = LOWP_SET_A(a[g * MR + r]);
            acc0[r] = LOWP_MADD(acc0[r], ar, b0);
            acc1[r] = LOWP_MADD(acc1[r], ar, b1);
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < rows; r++) {
        LOWP_STORE(tile + r * NR, acc0[r]);
        LOWP_STORE(tile + r * NR + NR / 2, acc1[r]);
    }
}

void LOWP_UKERNEL(size_t mr, size_t kq, const void *VITC_RESTRICT a, const void *VITC_RESTRICT b,
                  void *VITC_RESTRICT tile) {
    const uint32_t *ap = (const uint32_t *)a;
    const LOWP_B_T *bp = (const LOWP_B_T *)b;
    LOWP_C_T *t = (LOWP_C_T *)tile;
#define TILE(rows) lowp_tile(rows, kq, ap, bp, t)
    LOWP_ROWS_SWITCH(mr);
#undef TILE
}
