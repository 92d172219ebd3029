/* vmath_avx2.h — AVX2+FMA vector math (exp, GELU, sigmoid, tanh, ...), static inline only.
 * Maps the vm_* macro layer onto __m256 and instantiates vmath_body.h with the __avx2 suffix. */
#ifndef VITC_VMATH_AVX2_H
#define VITC_VMATH_AVX2_H
#include <immintrin.h>

typedef __m256 vm_f;
typedef __m256 vm_m; /* lane masks are all-ones / all-zeros float vectors */
#define VM_LANES 8
#define VM_FN(name) name##__avx2
#define vm_set1(c) _mm256_set1_ps(c)
#define vm_add(a, b) _mm256_add_ps(a, b)
#define vm_sub(a, b) _mm256_sub_ps(a, b)
#define vm_mul(a, b) _mm256_mul_ps(a, b)
#define vm_div(a, b) _mm256_div_ps(a, b)
#define vm_fma(a, b, c) _mm256_fmadd_ps(a, b, c)
#define vm_fms(a, b, c) _mm256_fmsub_ps(a, b, c)
#define vm_fnma(a, b, c) _mm256_fnmadd_ps(a, b, c)
#define vm_max(a, b) _mm256_max_ps(a, b)
#define vm_min(a, b) _mm256_min_ps(a, b)
#define vm_abs(a) _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a)
#define vm_neg_abs(a) _mm256_or_ps(a, _mm256_set1_ps(-0.0f))
#define vm_sign(a) _mm256_and_ps(a, _mm256_set1_ps(-0.0f))
#define vm_xor(a, b) _mm256_xor_ps(a, b)
#define vm_ge0(a) _mm256_cmp_ps(a, _mm256_setzero_ps(), _CMP_GE_OQ)
#define vm_lt(a, b) _mm256_cmp_ps(a, b, _CMP_LT_OQ)
#define vm_sel(m, t, f) _mm256_blendv_ps(f, t, m)
#define vm_round(a) _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

/* v * 2^n for integral n in [-162, 129] (as float): two exact power-of-two factors, each a normal
 * number, so only the last multiply rounds — gradual underflow stays accurate. */
static inline vm_f vm_scale2n__avx2(vm_f v, vm_f n) {
    __m256 n1 = _mm256_floor_ps(_mm256_mul_ps(n, _mm256_set1_ps(0.5f)));
    __m256i k1 = _mm256_cvtps_epi32(n1), k2 = _mm256_cvtps_epi32(_mm256_sub_ps(n, n1));
    __m256i bias = _mm256_set1_epi32(127);
    __m256 f1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k1, bias), 23));
    __m256 f2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(v, f1), f2);
}
#define vm_scale2n(v, n) vm_scale2n__avx2(v, n)
/* m ? v * 2^floor(n) : 0 */
#define vm_scale2n_floor_where(m, v, n) _mm256_and_ps(m, vm_scale2n__avx2(v, _mm256_floor_ps(n)))
/* 2^(j/8), j = the low 3 bits of t's bit pattern (vgelu_erf's table exponential), and
 * ln(2^(j/8) / float(2^(j/8))): the table's rounding, folded into the reduced argument */
#define VM_EXP_TBL_BITS 3
#define vm_exp2_tbl(t)                                                                                   \
    _mm256_permutevar8x32_ps(_mm256_setr_ps(1.0f, 1.0905077457427979f, 1.1892070770263672f,              \
                                            1.2968395948410034f, 1.4142135381698608f, 1.5422108173370361f, \
                                            1.6817928552627563f, 1.8340080976486206f),                   \
                             _mm256_castps_si256(t))
#define vm_exp2_tbl_lnfix(t)                                                                             \
    _mm256_permutevar8x32_ps(_mm256_setr_ps(0.0f, -1.199215748926008e-08f, 3.1934181521364735e-08f,      \
                                            -3.0990722876822474e-08f, 1.7114270889351246e-08f,           \
                                            5.233334210430485e-09f, -1.4719605978541495e-08f,            \
                                            -6.128259677495862e-09f),                                    \
                             _mm256_castps_si256(t))
#define vm_loadu(p) _mm256_loadu_ps(p)
#define vm_storeu(p, v) _mm256_storeu_ps(p, v)

static inline float vm_hmax__avx2(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}
static inline float vm_hsum__avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#define vm_hmax(v) vm_hmax__avx2(v)
#define vm_hsum(v) vm_hsum__avx2(v)

/* tail of n < 8 floats: maskload (missing lanes = fill) and maskstore */
static inline __m256i vm_tail_mask__avx2(size_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline vm_f vm_load_tail__avx2(const float *p, size_t n, float fill) {
    __m256i m = vm_tail_mask__avx2(n);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
}
static inline void vm_store_tail__avx2(float *p, size_t n, vm_f v) {
    _mm256_maskstore_ps(p, vm_tail_mask__avx2(n), v);
}
#define vm_load_tail(p, n, fill) vm_load_tail__avx2(p, n, fill)
#define vm_store_tail(p, n, v) vm_store_tail__avx2(p, n, v)

#include "vmath_body.h"
#endif /* VITC_VMATH_AVX2_H */
