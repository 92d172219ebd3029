/* gemm_lowp_convert.h — the element conversions of the reduced-precision GEMM, shared by the weight packing
 * (gemm_lowp.c) and the per-call A packing (kernels/gemm_lowp_body.h), so weights and activations round
 * the same way in every kernel set. Each is exact or correctly rounded (no -ffast-math, no contraction:
 * -std=c11 turns FP contraction off). */
#ifndef VITC_GEMM_LOWP_CONVERT_H
#define VITC_GEMM_LOWP_CONVERT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__)
#define VITC_LOWP_INLINE static inline __attribute__((always_inline))
#else
#define VITC_LOWP_INLINE static inline
#endif

/* f32 -> bf16 bits, round to nearest even; NaN stays a (quiet) NaN. */
VITC_LOWP_INLINE uint16_t lowp_bf16_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : rounded);
}

/* max |x| over n floats: the absolute values' bit patterns order like the values (an integer max
 * vectorizes without -ffast-math). */
VITC_LOWP_INLINE float lowp_max_abs(const float *x, size_t n) {
    uint32_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, x + i, 4);
        u &= 0x7fffffffu;
        m = u > m ? u : m;
    }
    float f;
    memcpy(&f, &m, 4);
    return f;
}

/* Symmetric s8 quantization of a row or column whose max |x| is amax: scale = amax / 127, q = round(x · inv)
 * with inv = 127 / amax (0 for an all-zero row). */
VITC_LOWP_INLINE float lowp_quant_inv(float amax) { return amax > 0.0f ? 127.0f / amax : 0.0f; }

/* round(x · inv) to nearest even, clamped to [-127, 127]. |x · inv| <= 127 up to rounding by the choice
 * of inv; adding and subtracting 1.5·2^23 rounds to an integer in the default (nearest-even) mode. */
VITC_LOWP_INLINE int32_t lowp_quant(float x, float inv) {
    float v = x * inv;
    v += 12582912.0f;
    v -= 12582912.0f;
    int32_t q = (int32_t)v;
    q = q < -127 ? -127 : q;
    return q > 127 ? 127 : q;
}

#endif /* VITC_GEMM_LOWP_CONVERT_H */
