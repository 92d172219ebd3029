/* attention_lowp.c — attention for bf16 models on AMX (kernels/attention_amx.c): Q·Kᵀ and P·V in bf16 with
 * float32 sums, the softmax in float32; parallel over (image, head) jobs, a static split as attention.c's.
 * Where it does not apply (another kernel set, head_dim not a multiple of 32, masks, probabilities asked
 * for) the caller runs the float32 attention. */
#include <stdint.h>

#include "attention_lowp.h"
#include "gemm_lowp_internal.h"
#include "threadpool.h"

int vitc_bf16_attention_applies(vitc_kset kset, const vitc_attention_desc *d) {
    /* the head kernel rounds with vcvtne2ps2bf16: AVX512_BF16, present on every AMX CPU, checked anyway */
    return kset == VITC_KSET_AMX && vitc_kset_supported(kset) && vitc_kset_supported(VITC_KSET_AVX512_BF16) &&
           d->head_dim > 0 && d->head_dim % 32 == 0 && d->head_dim <= VITC_BF16_ATTENTION_MAX_HD && !d->causal &&
           !d->key_mask;
}

size_t vitc_bf16_attention_workspace_floats(int nthreads, size_t seq_kv, size_t head_dim) {
    size_t off[VITC_BF16_ATTENTION_PARTS];
    const size_t slice = vitc_bf16_attention_layout(seq_kv, head_dim, off);
    return ((size_t)(nthreads > 0 ? nthreads : 1) * slice + 63) / sizeof(float); /* + alignment slack */
}

#if defined(VITC_HAVE_X86_KERNELS)
typedef struct {
    const vitc_attention_desc *d;
    float *out;
    size_t ldo, slice;
    long long jobs;
    unsigned char *base;
} bf16_attention_team;

static void bf16_attention_member(void *ctx, int t, int nt) {
    const bf16_attention_team *a = (const bf16_attention_team *)ctx;
    const vitc_attention_desc *d = a->d;
    unsigned char *ws = a->base + (size_t)t * a->slice;
    const long long j0 = a->jobs * t / nt, j1 = a->jobs * (t + 1) / nt;
    if (j0 >= j1) return;
    vitc_amx_task_begin();
    for (long long job = j0; job < j1; job++) {
        const float *rows[2][3];
        for (int i = 0; i < 2; i++) {
            const long long jb = job + i < j1 ? job + i : job;
            const size_t b = (size_t)jb / d->heads, col = (size_t)jb % d->heads * d->head_dim;
            rows[i][0] = d->q + b * d->seq_q * d->ldq + col;
            rows[i][1] = d->k + b * d->seq_kv * d->ldk + col;
            rows[i][2] = d->v + b * d->seq_kv * d->ldv + col;
        }
        const size_t b = (size_t)job / d->heads, col = (size_t)job % d->heads * d->head_dim;
        const int last = job + 1 == j1;
        const vitc_bf16_head_args h = {d->seq_q, d->seq_kv, d->head_dim, d->scale, rows[0][0], rows[0][1],
                                       rows[0][2], d->ldq, d->ldk, d->ldv, a->out + b * d->seq_q * a->ldo + col,
                                       a->ldo,
                                       {last ? NULL : rows[1][0], last ? NULL : rows[1][1], last ? NULL : rows[1][2]}};
        vitc_bf16_attention_head__amx(&h, ws);
    }
    vitc_amx_task_end();
}
#endif

vitc_status vitc_bf16_attention(vitc_kset kset, int nthreads, const vitc_attention_desc *d, float *out, size_t ldo,
                                float *workspace) {
    if (!vitc_bf16_attention_applies(kset, d)) return VITC_ERR_ISA;
#if defined(VITC_HAVE_X86_KERNELS)
    size_t off[VITC_BF16_ATTENTION_PARTS];
    const long long jobs = (long long)(d->batch * d->heads);
    if (jobs == 0) return VITC_OK;
    int team = nthreads > 0 ? nthreads : 1;
    if ((long long)team > jobs) team = (int)jobs;
    bf16_attention_team a = {d, out, ldo, vitc_bf16_attention_layout(d->seq_kv, d->head_dim, off), jobs,
                             (unsigned char *)(((uintptr_t)workspace + 63) & ~(uintptr_t)63)};
    vitc_parallel(team, bf16_attention_member, &a);
    return VITC_OK;
#else
    (void)nthreads, (void)out, (void)ldo, (void)workspace;
    return VITC_ERR_ISA;
#endif
}
