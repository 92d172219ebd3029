/* attention_lowp.h — what attention_lowp.c (portable driver) shares with the bf16 attention head kernel
 * (csrc/kernels/attention_amx.c). */
#ifndef VITC_ATTENTION_LOWP_H
#define VITC_ATTENTION_LOWP_H

#include <stddef.h>
#include "vitc.h"

typedef struct {
    size_t seq_q, seq_kv, head_dim; /* head_dim a multiple of 32, <= VITC_BF16_ATTENTION_MAX_HD */
    float scale;
    const float *q, *k, *v; /* the head's rows, in place */
    size_t ldq, ldk, ldv;
    float *o;
    size_t ldo;
    const float *next[3]; /* the Q, K, V rows of the head this thread runs next (prefetched), or NULLs */
} vitc_bf16_head_args;

#define VITC_BF16_ATTENTION_MAX_HD 256 /* head_dim limit of the head kernel (a stack row of K) */

/* One thread's scratch for a head, 64-byte aligned parts: packed K_h | packed V_h | two blocks' Q (bf16:
 * the next block's is rounded while this one's products run) | the block's scores (float32) | its P (bf16) |
 * its unnormalized O (float32, written out a block later); off[0..5] their byte offsets; returns the total
 * bytes. Keys are padded to seq_pad = a multiple of 32 (one tile step of P·V). */
#define VITC_BF16_ATTENTION_PARTS 6
static inline size_t vitc_bf16_attention_layout(size_t seq_kv, size_t head_dim, size_t off[VITC_BF16_ATTENTION_PARTS]) {
    const size_t seq_pad = (seq_kv + 31) / 32 * 32;
    const size_t bytes[VITC_BF16_ATTENTION_PARTS] = {head_dim / 2 * seq_pad * 4, seq_pad / 2 * head_dim * 4,
                                                     2 * 32 * head_dim * 2,      32 * seq_pad * 4,
                                                     32 * seq_pad * 2,           32 * head_dim * 4};
    size_t at = 0;
    for (int i = 0; i < VITC_BF16_ATTENTION_PARTS; i++) {
        off[i] = at;
        at += (bytes[i] + 63) / 64 * 64;
    }
    return at;
}
#if defined(VITC_HAVE_X86_KERNELS)
/* Between vitc_amx_task_begin / end on the calling thread. */
void vitc_bf16_attention_head__amx(const vitc_bf16_head_args *h, unsigned char *ws);
#endif

#endif /* VITC_ATTENTION_LOWP_H */
