/* attention.c — multi-head self-attention core, parallel over (image, head) jobs.
 *
 * Per job, on its thread:
 *  - AVX2 / AVX-512: K_h packed as a Linear weight into the thread's workspace slice (pack_nk's layout,
 *    by register transposes: ~4× faster than pack_nk's scalar loop for a head), then the fused head kernel
 *    (kernels/attention_body.h): per block of MR query rows, S = Q Kᵀ, exp, P·V with 1/rowsum folded
 *    into the store, all in L1; Q and V read in place. The next job's Q, K, V, O rows are prefetched.
 *  - scalar: K_h and V_h packed (pack_nk, pack_kn), S = Q_h K_hᵀ and O_h = P V_h through the GEMM API,
 *    P = softmax(S · scale) between them. */
#include <math.h>
#include <stdint.h>
#include "vitc.h"
#include "kernels/attention_kernels.h"
#include "threadpool.h"

/* floats rounded up to whole 64-byte lines, so every workspace slice stays 64-byte aligned */
static size_t round_line(size_t floats) { return (floats + 15) & ~(size_t)15; }

/* Packed K_h: pack_nk's size, or the head kernels' own (32-wide panels, the widest; kept independent of
 * gemm.c's NR, which only the scalar path relies on). */
static size_t k_packed_floats(vitc_isa isa, size_t seq, size_t head_dim) {
    const size_t own = (seq + 31) / 32 * 32 * head_dim, gemm = vitc_f32_gemm_packed_floats(isa, seq, head_dim);
    return own > gemm ? own : gemm;
}

/* One thread's slice: packed K_h | packed V_h | scores [seq, seq] | GEMM serial workspace. */
static size_t slice_floats(vitc_isa isa, size_t seq, size_t head_dim) {
    return round_line(k_packed_floats(isa, seq, head_dim)) +
           round_line(vitc_f32_gemm_packed_floats(isa, head_dim, seq)) + round_line(seq * seq) +
           round_line(vitc_f32_gemm_serial_workspace_floats(isa, head_dim > seq ? head_dim : seq));
}

/* + 15 floats of slack: the caller's workspace may start anywhere on a float boundary (e.g. after other
 * buffers in a layer workspace); attention aligns its own start up to 64 bytes. */
size_t vitc_f32_attention_workspace_floats(vitc_isa isa, int nthreads, size_t seq, size_t head_dim) {
    return (size_t)(nthreads > 0 ? nthreads : 1) * slice_floats(isa, seq, head_dim) + 15;
}

/* Attention of image b, head h, using the thread's workspace slice ws. next_job: the job this thread runs
 * next, or -1 (its rows are prefetched meanwhile). */
static void attention_job(vitc_isa isa, size_t b, size_t h, size_t seq, size_t heads, size_t head_dim,
                          const float *qkv, size_t ldqkv, float *out, size_t ldo, float *probs, float *ws,
                          long long next_job) {
    const size_t dim = heads * head_dim;
    float *k_packed = ws;
    float *v_packed = k_packed + round_line(k_packed_floats(isa, seq, head_dim));
    float *scores = v_packed + round_line(vitc_f32_gemm_packed_floats(isa, head_dim, seq));
    float *gemm_ws = scores + round_line(seq * seq);

    const float *q = qkv + b * seq * ldqkv + h * head_dim; /* [seq, head_dim], row stride ldqkv */
    const float *k = q + dim, *v = q + 2 * dim;
    float *o = out + b * seq * ldo + h * head_dim;
    const float scale = 1.0f / sqrtf((float)head_dim);
    float *head_probs = probs ? probs + (b * heads + h) * seq * seq : NULL;
#if defined(VITC_HAVE_X86_KERNELS)
    if (isa == VITC_ISA_AVX512 || isa == VITC_ISA_AVX2) {
        vitc_attention_next next = {{NULL, NULL, NULL, NULL}, {ldqkv, ldqkv, ldqkv, ldo}};
        if (next_job >= 0) {
            const size_t nb = (size_t)next_job / heads, nh = (size_t)next_job % heads;
            const float *nq = qkv + nb * seq * ldqkv + nh * head_dim;
            next.rows[0] = nq;
            next.rows[1] = nq + dim;
            next.rows[2] = nq + 2 * dim;
            next.rows[3] = out + nb * seq * ldo + nh * head_dim;
        }
        /* the head kernel's scratch (MR rows of scores) is the start of the scores slice */
        if (isa == VITC_ISA_AVX512) {
            vitc_f32_attention_pack_k__avx512(seq, head_dim, k, ldqkv, k_packed);
            vitc_f32_attention_head__avx512(seq, head_dim, scale, q, ldqkv, k_packed, v, ldqkv, o, ldo,
                                            head_probs, scores, next_job >= 0 ? &next : NULL);
        } else {
            vitc_f32_attention_pack_k__avx2(seq, head_dim, k, ldqkv, k_packed);
            vitc_f32_attention_head__avx2(seq, head_dim, scale, q, ldqkv, k_packed, v, ldqkv, o, ldo,
                                          head_probs, scores, next_job >= 0 ? &next : NULL);
        }
        return;
    }
#endif
    /* S[seq, seq] = Q_h K_hᵀ: K_h rows play Linear weight rows (n = seq, k = head_dim) */
    vitc_f32_gemm_pack_nk(isa, seq, head_dim, k, ldqkv, k_packed);
    if (head_probs) scores = head_probs; /* softmax lands where it is wanted */
    vitc_f32_gemm_serial(isa, seq, seq, head_dim, q, ldqkv, k_packed, NULL, scores, seq, gemm_ws);
    /* P = softmax(S · head_dim^-0.5), scaling after the product as transformers' eager attention */
    vitc_f32_softmax_rows(isa, seq, seq, scale, scores, seq);
    /* O_h[seq, head_dim] = P V_h: V_h is a plain [k = seq, n = head_dim] matrix */
    vitc_f32_gemm_pack_kn(isa, head_dim, seq, v, ldqkv, v_packed);
    vitc_f32_gemm_serial(isa, seq, head_dim, seq, scores, seq, v_packed, NULL, o, ldo, gemm_ws);
}

typedef struct {
    vitc_isa isa;
    size_t seq, heads, head_dim, ldqkv, ldo, slice;
    long long jobs;
    const float *qkv;
    float *out, *probs, *base;
} attention_team;

static void attention_member(void *ctx, int t, int nt) {
    const attention_team *a = (const attention_team *)ctx;
    float *ws = a->base + (size_t)t * a->slice;
    /* static split of the (image, head) jobs: thread t takes [j0, j1) */
    const long long j0 = a->jobs * t / nt, j1 = a->jobs * (t + 1) / nt;
    for (long long job = j0; job < j1; job++)
        attention_job(a->isa, (size_t)job / a->heads, (size_t)job % a->heads, a->seq, a->heads, a->head_dim, a->qkv,
                      a->ldqkv, a->out, a->ldo, a->probs, ws, job + 1 < j1 ? job + 1 : -1);
}

void vitc_f32_attention(vitc_isa isa, int nthreads, size_t batch, size_t seq, size_t heads,
                        size_t head_dim, const float *qkv, size_t ldqkv, float *out, size_t ldo,
                        float *probs, float *workspace) {
    const long long jobs = (long long)(batch * heads);
    const size_t slice = slice_floats(isa, seq, head_dim);
    float *base = (float *)(((uintptr_t)workspace + 63) & ~(uintptr_t)63); /* 64-byte aligned slices */
    int team = nthreads;
    if ((long long)team > jobs) team = (int)jobs;
    attention_team a = {isa, seq, heads, head_dim, ldqkv, ldo, slice, jobs, qkv, out, probs, base};
    vitc_parallel(team, attention_member, &a);
}
