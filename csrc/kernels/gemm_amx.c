/* gemm_amx.c — bf16 and u8×s8 GEMM on AMX tiles (tdpbf16ps / tdpbusd). One micro-kernel call computes a
 * 32×32 tile of C as 2×2 accumulator tiles of 16×16 float32 / int32 (tmm0-3) over all of k, 16 k groups
 * (32 bf16 / 64 int8 values) per step: two A tiles (16 rows × 64 bytes, 1 KB of packed A each, tmm4-5)
 * and two B tiles (16 groups × 16 columns of the same panels vdpbf16ps / vpdpbusd use, tmm6-7) feed four
 * tile multiply-adds. A has at most 32 rows; with 16 or fewer the second row half is skipped.
 * The tile configuration is per thread: vitc_amx_task_begin loads it before a task's calls,
 * vitc_amx_task_end releases the tiles (other libraries in the process configure their own). */
#include <immintrin.h>
#include <stdint.h>
#define VITC_LOWP_SFX amx
#include "gemm_lowp_body.h"

#define NR 32
#define KBLOCK 16           /* k groups per tile step: 16 rows of a B tile, 64 bytes of an A row */
#define B_ROW (NR * 4)      /* bytes of one k group of a B panel (32 columns × 4 bytes) */
#define C_ROW (NR * 4)      /* bytes of one row of the [32][32] output tile */

typedef struct {
    uint8_t palette_id, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_tile_config;

/* palette 1, tiles 0-7 all 16 rows × 64 bytes. A static table, not stack stores: GCC does not see that
 * ldtilecfg reads its operand and drops such stores as dead. */
static const _Alignas(64) amx_tile_config tile_config = {
    .palette_id = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

void vitc_amx_task_begin(void) { _tile_loadconfig(&tile_config); }

void vitc_amx_task_end(void) { _tile_release(); }

/* One 32×32 (two_halves) or 16×32 tile over kq groups; s8 picks tdpbusd over tdpbf16ps (a constant in each
 * inlined copy). Each load as late as its first use: tiles are not renamed, so a load waits for the last
 * multiply-add that reads its register. */
static inline __attribute__((always_inline)) void amx_tile(const int s8, const int two_halves, size_t kq,
                                                           const unsigned char *ap, const unsigned char *bp,
                                                           const float *init, unsigned char *cp, size_t ldc) {
#define DP(c, x, y)                      \
    do {                                 \
        if (s8) _tile_dpbusd(c, x, y);   \
        else _tile_dpbf16ps(c, x, y);    \
    } while (0)
    const size_t half = 16 * kq * 4; /* the second 16-row block of A */
    if (init) { /* every row starts from init[0..32): a row stride of 0 */
        _tile_loadd(0, init, 0);
        _tile_loadd(1, init + 16, 0);
        if (two_halves) {
            _tile_loadd(2, init, 0);
            _tile_loadd(3, init + 16, 0);
        }
    } else {
        _tile_zero(0);
        _tile_zero(1);
        if (two_halves) {
            _tile_zero(2);
            _tile_zero(3);
        }
    }
    for (size_t g = 0; g < kq; g += KBLOCK) {
        _tile_loadd(4, ap + g * 64, 64);
        _tile_loadd(6, bp + g * B_ROW, B_ROW);
        DP(0, 4, 6);
        _tile_loadd(7, bp + g * B_ROW + 64, B_ROW);
        DP(1, 4, 7);
        if (two_halves) {
            _tile_loadd(5, ap + half + g * 64, 64);
            DP(2, 5, 6);
            DP(3, 5, 7);
        }
    }
#undef DP
    _tile_stored(0, cp, ldc);
    _tile_stored(1, cp + 64, ldc);
    if (two_halves) {
        _tile_stored(2, cp + 16 * ldc, ldc);
        _tile_stored(3, cp + 16 * ldc + 64, ldc);
    }
}

static inline __attribute__((always_inline)) void amx_ukernel(const int s8, size_t mr, size_t kq, const void *a,
                                                              const void *b, void *tile) {
    if (mr < 1 || mr > 32 || kq % KBLOCK) __builtin_trap();
    if (mr > 16)
        amx_tile(s8, 1, kq, (const unsigned char *)a, (const unsigned char *)b, NULL, (unsigned char *)tile, C_ROW);
    else
        amx_tile(s8, 0, kq, (const unsigned char *)a, (const unsigned char *)b, NULL, (unsigned char *)tile, C_ROW);
}

void vitc_bf16_gemm_ukernel_32x32__amx(size_t mr, size_t kq, const void *VITC_RESTRICT a,
                                       const void *VITC_RESTRICT b, void *VITC_RESTRICT tile) {
    amx_ukernel(0, mr, kq, a, b, tile);
}

void vitc_s8_gemm_ukernel_32x32__amx(size_t mr, size_t kq, const void *VITC_RESTRICT a,
                                     const void *VITC_RESTRICT b, void *VITC_RESTRICT tile) {
    amx_ukernel(1, mr, kq, a, b, tile);
}

/* A full 32×32 bf16 tile straight into C (row stride ldc floats), its accumulators started from bias[0..32)
 * (or zero): the epilogue's copy of the stack tile (~15% of a bf16 GEMM) is gone for layers whose epilogue
 * is only a bias (qkv) or a bias and an activation applied in place afterwards (fc1). */
void vitc_bf16_gemm_tile_direct__amx(size_t kq, const void *VITC_RESTRICT a, const void *VITC_RESTRICT b,
                                     const float *bias, float *c, size_t ldc) {
    if (kq % KBLOCK) __builtin_trap();
    amx_tile(0, 1, kq, (const unsigned char *)a, (const unsigned char *)b, bias, (unsigned char *)c, ldc * 4);
}
