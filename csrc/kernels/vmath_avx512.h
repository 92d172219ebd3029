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
/* m ? v * 2^floor(n) : 0 (masked-off lanes compute nothing) */
#define vm_scale2n_floor_where(m, v, n) _mm512_maskz_scalef_ps(m, v, n)
/* 2^(j/16), j = the low 4 bits of t's bit pattern (vgelu_erf's table exponential), and
 * ln(2^(j/16) / float(2^(j/16))): the table's rounding, folded into the reduced argument */
#define VM_EXP_TBL_BITS 4
#define vm_exp2_tbl(t)                                                                                   \
    _mm512_permutexvar_ps(_mm512_castps_si512(t),                                                        \
                          _mm512_setr_ps(1.0f, 1.0442737340927124f, 1.0905077457427979f, 1.1387885808944702f, \
                                         1.1892070770263672f, 1.2418577671051025f, 1.2968395948410034f,  \
                                         1.3542555570602417f, 1.4142135381698608f, 1.4768261909484863f,  \
                                         1.5422108173370361f, 1.610490322113037f, 1.6817928552627563f,   \
                                         1.7562521696090698f, 1.8340080976486206f, 1.9152065515518188f))
#define vm_exp2_tbl_lnfix(t)                                                                             \
    _mm512_permutexvar_ps(_mm512_castps_si512(t),                                                        \
                          _mm512_setr_ps(0.0f, 4.6285471455576044e-08f, -1.199215748926008e-08f,          \
                                         4.7297820771063925e-08f, 3.1934181521364735e-08f,               \
                                         3.621057231839586e-08f, -3.0990722876822474e-08f,               \
                                         -7.475213337215791e-09f, 1.7114270889351246e-08f,               \
                                         -3.047683350132502e-08f, 5.233334210430485e-09f,                \
                                         6.10759176566944e-09f, -1.4719605978541495e-08f,                \
                                         -5.258795177098818e-09f, -6.128259677495862e-09f,               \
                                         5.140609271592211e-09f))
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
