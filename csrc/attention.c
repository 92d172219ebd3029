/* attention.c — multi-head self-attention core, parallel over (image, head). */
#include <math.h>
#include "vitc.h"

#ifdef _OPENMP
#include <omp.h>
#define THREAD_ID() ((size_t)omp_get_thread_num())
#else
#define THREAD_ID() ((size_t)0)
#endif

size_t vitc_f32_attention_workspace_floats(vitc_isa isa, int nthreads, size_t seq, size_t head_dim) {
    (void)isa;
    (void)head_dim;
    return (size_t)nthreads * seq * seq;
}

void vitc_f32_attention(vitc_isa isa, int nthreads, size_t batch, size_t seq, size_t heads,
                        size_t head_dim, const float *qkv, size_t ldqkv, float *out, size_t ldo,
                        float *probs, float *workspace) {
    size_t dim = heads * head_dim;
    float scale = 1.0f / sqrtf((float)head_dim);
    long long jobs = (long long)(batch * heads);
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (long long job = 0; job < jobs; job++) {
        size_t b = (size_t)job / heads, h = (size_t)job % heads;
        float *s = workspace + THREAD_ID() * seq * seq;
        if (probs) s = probs + ((b * heads + h) * seq) * seq;
        const float *q = qkv + b * seq * ldqkv + h * head_dim;
        const float *k = q + dim, *v = q + 2 * dim;
        for (size_t i = 0; i < seq; i++)
            for (size_t j = 0; j < seq; j++) {
                float acc = 0.0f;
                for (size_t d = 0; d < head_dim; d++) acc += q[i * ldqkv + d] * k[j * ldqkv + d];
                s[i * seq + j] = acc;
            }
        vitc_f32_softmax_rows(isa, seq, seq, scale, s, seq);
        for (size_t i = 0; i < seq; i++) {
            float *o = out + (b * seq + i) * ldo + h * head_dim;
            for (size_t d = 0; d < head_dim; d++) o[d] = 0.0f;
            for (size_t j = 0; j < seq; j++) {
                float p = s[i * seq + j];
                for (size_t d = 0; d < head_dim; d++) o[d] += p * v[j * ldqkv + d];
            }
        }
    }
}
