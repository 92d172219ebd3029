/* vmath_avx512.h — AVX-512 vector math (exp, GELU, sigmoid, tanh, ...), static inline only.
 * Maps the vm_* macro layer onto __m512 and instantiates vmath_body.h with the __avx512 suffix. */
#ifndef VITC_VMATH_AVX512_H
#define VITC_VMATH_AVX512_H
#include <immintrin.h>

typedef __m512 vm_f;
typedef __mmask16 vm_m;
#define VM_LANES 16
#define VM_FN(name) name##__avx512
#define vm_set1(c) _mm512_set1_ps(c)
#define vm_add(a, b) _mm512_add_ps(a, b)
#define vm_sub(a, b) _mm512_sub_ps(a, b)
#define vm_mul(a, b) _mm512_mul_ps(a, b)
#define vm_div(a, b) _mm512_div_ps(a, b)
#define vm_fma(a, b, c) _mm512_fmadd_ps(a, b, c)   /* a*b + c */
#define vm_fms(a, b, c) _mm512_fmsub_ps(a, b, c)   /* a*b - c */
#define vm_fnma(a, b, c) _mm512_fnmadd_ps(a, b, c) /* c - a*b */
/* max/min return the SECOND operand when either is NaN: pass x second to propagate NaN */
#define vm_max(a, b) _mm512_max_ps(a, b)
#define vm_min(a, b) _mm512_min_ps(a, b)
#define vm_abs(a) _mm512_abs_ps(a)
#define vm_neg_abs(a) _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(a), _mm512_set1_epi32((int)0x80000000u)))
#define vm_sign(a) _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(a), _mm512_set1_epi32((int)0x80000000u)))
#define vm_xor(a, b) _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)))
#define vm_ge0(a) _mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_GE_OQ) /* false for NaN */
#define vm_lt(a, b) _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ)
#define vm_sel(m, t, f) _mm512_mask_blend_ps(m, f, t) /* m ? t : f */
#define vm_round(a) _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
/* v * 2^n for integral n (as float), one rounding even into the subnormal range */
#define vm_scale2n(v, n) _mm512_scalef_ps(v, n)
#define vm_loadu(p) _mm512_loadu_ps(p)
#define vm_storeu(p, v) _mm512_storeu_ps(p, v)
#define vm_hmax(v) _mm512_reduce_max_ps(v)
#define vm_hsum(v) _mm512_reduce_add_ps(v)

/* tail of n < 16 floats: masked load (missing lanes = fill) and store */
static inline vm_m vm_tail_mask__avx512(size_t n) { return (vm_m)((1u << n) - 1u); }
static inline vm_f vm_load_tail__avx512(const float *p, size_t n, float fill) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), vm_tail_mask__avx512(n), p);
}
static inline void vm_store_tail__avx512(float *p, size_t n, vm_f v) {
    _mm512_mask_storeu_ps(p, vm_tail_mask__avx512(n), v);
}
#define vm_load_tail(p, n, fill) vm_load_tail__avx512(p, n, fill)
#define vm_store_tail(p, n, v) vm_store_tail__avx512(p, n, v)

#include "vmath_body.h"
#endif /* VITC_VMATH_AVX512_H */
