/* gemm.c — PLACEHOLDER reference GEMM (packed = plain [n,k] copy, naive loops).
 * To be replaced by the blocked, packed, OpenMP driver around per-ISA micro-kernels. */
#include <string.h>
#include "vitc.h"

size_t vitc_f32_gemm_packed_floats(vitc_isa isa, size_t n, size_t k) {
    (void)isa;
    return n * k;
}

void vitc_f32_gemm_pack_nk(vitc_isa isa, size_t n, size_t k, const float *w, size_t ldw, float *packed) {
    (void)isa;
    for (size_t j = 0; j < n; j++) memcpy(packed + j * k, w + j * ldw, k * sizeof(float));
}

void vitc_f32_gemm_pack_kn(vitc_isa isa, size_t n, size_t k, const float *b, size_t ldb, float *packed) {
    (void)isa;
    for (size_t j = 0; j < n; j++)
        for (size_t p = 0; p < k; p++) packed[j * k + p] = b[p * ldb + j];
}

size_t vitc_f32_gemm_serial_workspace_floats(vitc_isa isa, size_t k) {
    (void)isa;
    (void)k;
    return 0;
}

static void gemm_naive(vitc_isa isa, size_t m, size_t n, size_t k, const float *a, size_t lda,
                       const float *packed, const vitc_epilogue *ep, float *c, size_t ldc) {
    for (size_t i = 0; i < m; i++) {
        for (size_t j = 0; j < n; j++) {
            float s = 0.0f;
            for (size_t p = 0; p < k; p++) s += a[i * lda + p] * packed[j * k + p];
            if (ep && ep->bias) s += ep->bias[j];
            if (ep && ep->act != VITC_ACT_NONE) vitc_f32_activation(isa, ep->act, &s, 1);
            if (ep && ep->residual) s += ep->residual[i * ep->ldr + j];
            c[i * ldc + j] = s;
        }
    }
}

void vitc_f32_gemm_serial(vitc_isa isa, size_t m, size_t n, size_t k, const float *a, size_t lda,
                          const float *packed, const vitc_epilogue *ep, float *c, size_t ldc,
                          float *workspace) {
    (void)workspace;
    gemm_naive(isa, m, n, k, a, lda, packed, ep, c, ldc);
}

vitc_status vitc_f32_gemm(vitc_isa isa, int nthreads, size_t m, size_t n, size_t k,
                          const float *a, size_t lda, const float *packed, const vitc_epilogue *ep,
                          float *c, size_t ldc) {
    (void)nthreads;
    gemm_naive(isa, m, n, k, a, lda, packed, ep, c, ldc);
    return VITC_OK;
}
