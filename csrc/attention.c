/* attention.c — multi-head attention core, parallel over (image, head) jobs.
 *
 * Per job, on its thread:
 *  - kernel sets with a head kernel (AVX2 / AVX-512): K_h packed by the set's attention_pack_k into the
 *    thread's workspace slice (by register transposes: ~4× faster than pack_nk's scalar loop for a head;
 *    today the same layout as pack_nk, but sized here independently of the GEMM's NR), then the fused head kernel
 *    (kernels/attention_body.h): per block of MR query rows, S = Q Kᵀ, exp, P·V with 1/rowsum folded
 *    into the store, all in L1; Q and V read in place. The next job's Q, K, V, O rows are prefetched.
 *  - scalar: K_h and V_h packed (pack_nk, pack_kn), S = Q_h K_hᵀ and O_h = P V_h through the GEMM API,
 *    P = softmax(S · scale) between them.
 * Masked keys (causal, key padding) get -inf scores before the softmax: probability exactly 0. */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include "vitc.h"
#include "kernel_table.h"
#include "threadpool.h"

/* floats rounded up to whole 64-byte lines, so every workspace slice stays 64-byte aligned */
static size_t round_line(size_t floats) { return (floats + 15) & ~(size_t)15; }

/* Packed K_h [seq_kv, hd]: pack_nk's size, or the head kernels' own (32-wide panels, the widest; kept
 * independent of gemm.c's NR, which only the scalar path relies on). */
static size_t k_packed_floats(vitc_isa isa, size_t seq_kv, size_t head_dim) {
    const size_t own = (seq_kv + 31) / 32 * 32 * head_dim, gemm = vitc_f32_gemm_packed_floats(isa, seq_kv, head_dim);
    return own > gemm ? own : gemm;
}

/* One thread's slice: packed K_h | packed V_h | scores [seq_q, seq_kv] | GEMM serial workspace. */
static size_t slice_floats(vitc_isa isa, size_t seq_q, size_t seq_kv, size_t head_dim) {
    return round_line(k_packed_floats(isa, seq_kv, head_dim)) +
           round_line(vitc_f32_gemm_packed_floats(isa, head_dim, seq_kv)) + round_line(seq_q * seq_kv) +
           round_line(vitc_f32_gemm_serial_workspace_floats(isa, head_dim > seq_kv ? head_dim : seq_kv));
}

/* + 15 floats of slack: the caller's workspace may start anywhere on a float boundary (e.g. after other
 * buffers in a layer workspace); attention aligns its own start up to 64 bytes. */
size_t vitc_f32_attention_general_workspace_floats(vitc_isa isa, int nthreads, size_t seq_q, size_t seq_kv,
                                                   size_t head_dim) {
    return (size_t)(nthreads > 0 ? nthreads : 1) * slice_floats(isa, seq_q, seq_kv, head_dim) + 15;
}

size_t vitc_f32_attention_workspace_floats(vitc_isa isa, int nthreads, size_t seq, size_t head_dim) {
    return vitc_f32_attention_general_workspace_floats(isa, nthreads, seq, seq, head_dim);
}

/* Rows of image b, head h: Q, K, V, O. */
static void job_rows(const vitc_attention_desc *d, size_t b, size_t h, float *out, size_t ldo, const float **q,
                     const float **k, const float **v, float **o) {
    const size_t col = h * d->head_dim;
    *q = d->q + b * d->seq_q * d->ldq + col;
    *k = d->k + b * d->seq_kv * d->ldk + col;
    *v = d->v + b * d->seq_kv * d->ldv + col;
    *o = out + b * d->seq_q * ldo + col;
}

/* -inf at the hidden keys of S [seq_q, seq_kv]; a row that sees no key becomes all 0 (uniform after
 * softmax, as in the head kernels). */
static void mask_scores(const vitc_attention_desc *d, const unsigned char *key_mask, float *s) {
    for (size_t i = 0; i < d->seq_q; i++) {
        float *sr = s + i * d->seq_kv;
        int visible = 0;
        for (size_t j = 0; j < d->seq_kv; j++) {
            if ((key_mask && !key_mask[j]) || (d->causal && j > i))
                sr[j] = -INFINITY;
            else
                visible = 1;
        }
        if (!visible)
            for (size_t j = 0; j < d->seq_kv; j++) sr[j] = 0.0f;
    }
}

/* Attention of image b, head h, using the thread's workspace slice ws. next_job: the job this thread runs
 * next, or -1 (its rows are prefetched meanwhile). */
static void attention_job(const vitc_kernels *kt, const vitc_attention_desc *d, size_t b, size_t h, float *out,
                          size_t ldo, float *probs, float *ws, long long next_job) {
    const vitc_isa isa = kt->isa;
    const size_t seq_q = d->seq_q, seq_kv = d->seq_kv, head_dim = d->head_dim;
    float *k_packed = ws;
    float *v_packed = k_packed + round_line(k_packed_floats(isa, seq_kv, head_dim));
    float *scores = v_packed + round_line(vitc_f32_gemm_packed_floats(isa, head_dim, seq_kv));
    float *gemm_ws = scores + round_line(seq_q * seq_kv);

    const float *q, *k, *v;
    float *o;
    job_rows(d, b, h, out, ldo, &q, &k, &v, &o);
    const unsigned char *key_mask = d->key_mask ? d->key_mask + b * seq_kv : NULL;
    float *head_probs = probs ? probs + (b * d->heads + h) * seq_q * seq_kv : NULL;
    if (kt->attention_head) {
        vitc_attention_next next = {{NULL, NULL, NULL, NULL}, {d->ldq, d->ldk, d->ldv, ldo},
                                    {seq_q, seq_kv, seq_kv, seq_q}};
        if (next_job >= 0) {
            float *no;
            job_rows(d, (size_t)next_job / d->heads, (size_t)next_job % d->heads, out, ldo, &next.rows[0],
                     &next.rows[1], &next.rows[2], &no);
            next.rows[3] = no;
        }
        kt->attention_pack_k(seq_kv, head_dim, k, d->ldk, k_packed);
        /* the head kernel's scratch (MR rows of scores) is the start of the scores slice */
        const vitc_attention_head_args args = {seq_q, seq_kv, head_dim, d->scale, q, d->ldq, k_packed, v, d->ldv,
                                               o, ldo, head_probs, scores, d->causal, key_mask};
        kt->attention_head(&args, next_job >= 0 ? &next : NULL);
        return;
    }
    /* S[seq_q, seq_kv] = Q_h K_hᵀ: K_h rows play Linear weight rows (n = seq_kv, k = head_dim) */
    vitc_f32_gemm_pack_nk(isa, seq_kv, head_dim, k, d->ldk, k_packed);
    if (head_probs) scores = head_probs; /* softmax lands where it is wanted */
    vitc_f32_gemm_serial(isa, seq_q, seq_kv, head_dim, q, d->ldq, k_packed, NULL, scores, seq_kv, gemm_ws);
    if (d->causal || key_mask) mask_scores(d, key_mask, scores);
    /* P = softmax(S · scale), scaling after the product as transformers' eager attention */
    kt->softmax_rows(seq_q, seq_kv, d->scale, scores, seq_kv);
    /* O_h[seq_q, head_dim] = P V_h: V_h is a plain [k = seq_kv, n = head_dim] matrix */
    vitc_f32_gemm_pack_kn(isa, head_dim, seq_kv, v, d->ldv, v_packed);
    vitc_f32_gemm_serial(isa, seq_q, head_dim, seq_kv, scores, seq_kv, v_packed, NULL, o, ldo, gemm_ws);
}

typedef struct {
    const vitc_kernels *kt;
    const vitc_attention_desc *d;
    size_t ldo, slice;
    long long jobs;
    float *out, *probs, *base;
    _Atomic long long next; /* the next unclaimed job */
} attention_team;

static void attention_member(void *ctx, int t, int nt) {
    (void)nt;
    attention_team *a = (attention_team *)ctx;
    float *ws = a->base + (size_t)t * a->slice;
    /* (image, head) jobs from a queue, each claimed one ahead so that its rows are prefetched meanwhile: a
     * thread the OS delays (the machine may be shared) leaves its jobs to the others instead of holding up
     * the layer, as a static split did */
    long long job = atomic_fetch_add_explicit(&a->next, 1, memory_order_relaxed);
    while (job < a->jobs) {
        const long long next = atomic_fetch_add_explicit(&a->next, 1, memory_order_relaxed);
        attention_job(a->kt, a->d, (size_t)job / a->d->heads, (size_t)job % a->d->heads, a->out, a->ldo, a->probs,
                      ws, next < a->jobs ? next : -1);
        job = next;
    }
}

void vitc_f32_attention_general(vitc_isa isa, int nthreads, const vitc_attention_desc *d, float *out, size_t ldo,
                                float *probs, float *workspace) {
    const long long jobs = (long long)(d->batch * d->heads);
    const size_t slice = slice_floats(isa, d->seq_q, d->seq_kv, d->head_dim);
    float *base = (float *)(((uintptr_t)workspace + 63) & ~(uintptr_t)63); /* 64-byte aligned slices */
    int team = nthreads;
    if ((long long)team > jobs) team = (int)jobs;
    attention_team a = {vitc_kernels_for(isa), d, ldo, slice, jobs, out, probs, base, 0};
    vitc_parallel(team, attention_member, &a);
}

void vitc_f32_attention(vitc_isa isa, int nthreads, size_t batch, size_t seq, size_t heads,
                        size_t head_dim, const float *qkv, size_t ldqkv, float *out, size_t ldo,
                        float *probs, float *workspace) {
    const size_t dim = heads * head_dim;
    const vitc_attention_desc d = {batch, heads, head_dim, seq, seq, qkv, ldqkv, qkv + dim, ldqkv,
                                   qkv + 2 * dim, ldqkv, 1.0f / sqrtf((float)head_dim), 0, NULL};
    vitc_f32_attention_general(isa, nthreads, &d, out, ldo, probs, workspace);
}
