/* gemm.c — vitc's SGEMM: C[m,n] = epilogue(A[m,k] · B[k,n]), BLIS-style.
 *
 * B (a weight) is packed once into NR-wide, k-major panels (gemm_internal.h); A is packed per call into
 * MR-row panels in a per-thread buffer. The five loops around the per-ISA micro-kernel are portable:
 *
 *   jc over the thread's n range by NC  (a KC×NC slice of B: L2/L3)
 *     pc over k by KC                   (B micro-panels KC×NR, streamed from L2)
 *       ic over the thread's m range by MC: pack A[MC, KC] (L2)
 *         jr over NR panels
 *           ir over MR rows: micro-kernel; after the last KC block, the epilogue on the tile
 *                            (bias, activation, residual) while it is in L1.
 *
 * KC, MC and NC are upper bounds: each loop splits its extent into equal blocks (rounded up to MR / NR),
 * so k = 257 runs as 2×129, not 256 + 1. KC depends on k only and every element is summed in the same
 * order whatever its tile or thread, so 1 and N threads give bitwise identical results.
 *
 * Block sizes live in each kernel set's table (kernel_table.c); why they are what they are, with the
 * measurements behind them, is in docs/performance.md. In short: KC is large (L2 feeds the micro-kernel
 * fast enough that every extra KC block, one more pass over C, costs more than it saves).
 * Threads (one csrc/threadpool.c region per call): when the packed A fits 8 MB (m·k <= 2M floats: batch 1, and
 * batch 8 for k = 768) the threads pack A together once, then take rectangles of C (~4 per thread, a
 * multiple of the thread count; row blocks of <= 1 MB of packed A, then N panels) from a dynamic queue, so
 * a thread the OS delays does not hold the others up. Larger A:
 * the (M tiles × N panels) grid is split statically into tm × tn rectangles (the split whose largest
 * rectangle is smallest; ties split N), each thread packing its rows MC×KC at a time.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <stdatomic.h>

#include "kernel_table.h"
#include "threadpool.h"

/* the block sizes and micro-kernel of the ISA's kernel set (kernel_table.c) */
static const vitc_f32_gemm_config *gemm_config(vitc_isa isa) { return &vitc_kernels_for(isa)->gemm; }

static size_t div_up(size_t a, size_t b) { return (a + b - 1) / b; }
static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

/* Equal blocks of at most `limit` over `extent`, each a multiple of `unit`. */
static size_t block_size(size_t extent, size_t limit, size_t unit) {
    size_t blocks = div_up(extent, limit);
    return div_up(div_up(extent, blocks), unit) * unit;
}

/* ---- packing ------------------------------------------------------------------------------------ */
size_t vitc_f32_gemm_packed_floats(vitc_isa isa, size_t n, size_t k) {
    const size_t nr = gemm_config(isa)->nr;
    return div_up(n, nr) * nr * k;
}

/* W[n, ldw] (Linear layout, C = A·Wᵀ) -> panels [n/NR][k][NR]
 * A transpose of NR rows; k is walked in slices of 16 so the panel slice being written (16·NR floats) stays
 * in L1 while the NR source rows are read in turn (row by row was far slower: docs/performance.md). Panels
 * are independent, so a caller may pack a large W in row chunks (multiples of NR) at offset row0·k. */
void vitc_f32_gemm_pack_nk(vitc_isa isa, size_t n, size_t k, const float *w, size_t ldw, float *packed) {
    const size_t nr = gemm_config(isa)->nr;
    for (size_t j0 = 0; j0 < n; j0 += nr) {
        float *VITC_RESTRICT panel = packed + j0 * k; /* = (j0 / nr) * k * nr */
        const size_t cols = min_size(nr, n - j0);
        for (size_t p0 = 0; p0 < k; p0 += 16) {
            const size_t p1 = min_size(p0 + 16, k);
            for (size_t j = 0; j < cols; j++) {
                const float *VITC_RESTRICT wr = w + (j0 + j) * ldw;
                for (size_t p = p0; p < p1; p++) panel[p * nr + j] = wr[p];
            }
            for (size_t j = cols; j < nr; j++)
                for (size_t p = p0; p < p1; p++) panel[p * nr + j] = 0.0f;
        }
    }
}

/* B[k, ldb] -> panels [n/NR][k][NR] */
void vitc_f32_gemm_pack_kn(vitc_isa isa, size_t n, size_t k, const float *b, size_t ldb, float *packed) {
    const size_t nr = gemm_config(isa)->nr;
    for (size_t j0 = 0; j0 < n; j0 += nr) {
        float *panel = packed + j0 * k;
        const size_t cols = min_size(nr, n - j0);
        for (size_t p = 0; p < k; p++) {
            memcpy(panel + p * nr, b + p * ldb + j0, cols * sizeof(float));
            for (size_t j = cols; j < nr; j++) panel[p * nr + j] = 0.0f;
        }
    }
}

/* A[m, lda] (kc columns) -> MR-row panels [m/MR][kc][MR], rows past m zero.
 * k is walked in slices of 16 so the slice of the panel being written (16·MR floats) stays in L1 while the
 * MR source rows are read in turn (each row's stride-MR writes would sweep the whole panel otherwise). */
static void pack_a(size_t mr, size_t m, size_t kc, const float *VITC_RESTRICT a, size_t lda,
                   float *VITC_RESTRICT ap) {
    for (size_t i = 0; i < m; i += mr) {
        float *dst = ap + i * kc;
        const size_t rows = min_size(mr, m - i);
        for (size_t p0 = 0; p0 < kc; p0 += 16) {
            const size_t p1 = min_size(p0 + 16, kc);
            for (size_t r = 0; r < rows; r++) {
                const float *src = a + (i + r) * lda;
                for (size_t p = p0; p < p1; p++) dst[p * mr + r] = src[p];
            }
            for (size_t r = rows; r < mr; r++)
                for (size_t p = p0; p < p1; p++) dst[p * mr + r] = 0.0f;
        }
    }
}

/* ---- epilogue: + bias, act, + residual on one finished tile ------------------------------------ */
typedef struct {
    vitc_tile_epilogue_fn tile_epilogue; /* the kernel set's */
    const float *bias;
    const float *scale;
    vitc_act act;
    const float *residual; /* NULL when absent or when it is C itself (already summed in) */
    size_t ldr;
    int alias;             /* residual == C: the product accumulates onto C */
} epilogue_plan;

static epilogue_plan plan_epilogue(vitc_isa isa, const vitc_epilogue *ep, const float *c, size_t ldc) {
    epilogue_plan e = {vitc_kernels_for(isa)->tile_epilogue, NULL, NULL, VITC_ACT_NONE, NULL, 0, 0};
    if (!ep) return e;
    e.bias = ep->bias;
    e.scale = ep->scale;
    e.act = ep->act;
    e.residual = ep->residual;
    e.ldr = ep->ldr;
    if (ep->residual && ep->residual == c && ep->ldr == ldc) {
        e.alias = 1;
        e.residual = NULL;
    }
    return e;
}

/* C aliased by the residual and changed non-linearly (act, scale) before the add: see gemm_rect_fullk */
static int needs_full_k(const epilogue_plan *e) { return e->alias && (e->act != VITC_ACT_NONE || e->scale); }

/* y[rows, cols] = act(x + bias) · scale + residual for a tile in columns col0.. of C */
static void epilogue_rows(const epilogue_plan *e, size_t rows, size_t cols, size_t col0,
                          const float *x, size_t ldx, float *y, size_t ldy, const float *residual, size_t ldr) {
    e->tile_epilogue(rows, cols, x, ldx, y, ldy, e->bias ? e->bias + col0 : NULL, e->act,
                     e->scale ? e->scale + col0 : NULL, residual, ldr);
}

/* the finished tile [rows, cols] at (row0, col0) of C, in place */
static void epilogue_tile(const epilogue_plan *e, size_t rows, size_t cols, size_t row0, size_t col0, float *tile,
                          size_t ldc) {
    if (!e->bias && e->act == VITC_ACT_NONE && !e->scale && !e->residual) return;
    epilogue_rows(e, rows, cols, col0, tile, ldc, tile, ldc,
                  e->residual ? e->residual + row0 * e->ldr + col0 : NULL, e->ldr);
}

/* Asks for the lines of C tile [rows, cols] for writing, before the micro-kernel runs: its epilogue reads
 * the stored tile back, and when C is out of cache (DINOv2-S fc1 at batch 8: 12.6 MB) those loads waited
 * on the stores' line fills, tile after tile (fc1 + gelu_erf took 26% longer than without, at batch 1 8%). */
static void prefetch_tile_for_write(const float *c, size_t ldc, size_t rows, size_t cols) {
#if defined(__GNUC__)
    for (size_t r = 0; r < rows; r++)
        for (size_t j = 0; j < cols; j += 16) __builtin_prefetch(c + r * ldc + j, 1, 3);
#else
    (void)c, (void)ldc, (void)rows, (void)cols;
#endif
}

/* ---- one thread's rectangle: rows [m0, m1), panels [jp0, jp1) ---------------------------------- */
/* The micro-panel (rows pc.., kc deep) a block's tiles multiply after panel jp's: panel jp + 1, or, after
 * the last panel of [jc, jend), the first one again for the next row block; NULL when none follows. */
static const float *next_micro_panel(size_t nr_, const float *packed, size_t k, size_t pc, size_t jp, size_t jc,
                                     size_t jend, int more_rows) {
    if (jp + 1 < jend) return packed + (jp + 1) * nr_ * k + pc * nr_;
    return more_rows ? packed + jc * nr_ * k + pc * nr_ : NULL;
}

/* One tile: C[mr, nr] (=|+=) the kc-deep product; tile t of its row block prefetches slice t (4·kc floats)
 * of the next micro-panel bn (the first NR / 4 tiles cover it) when the kernel set can. */
static void run_tile(const vitc_f32_gemm_config *cfg, size_t mr, size_t nr, size_t kc, const float *ap,
                     const float *bp, float *ct, size_t ldc, int accumulate, const float *bn, size_t t) {
    if (cfg->ukernel_next)
        cfg->ukernel_next(mr, nr, kc, ap, bp, ct, ldc, accumulate, bn && t < cfg->nr / 4 ? bn + t * 4 * kc : NULL);
    else
        cfg->ukernel(mr, nr, kc, ap, bp, ct, ldc, accumulate);
}

/* shared_a: when not NULL, all of A already packed (see pack_a_shared) and m0 is a multiple of MR;
 * else A is packed here, MC×KC at a time, into apack. */
static void gemm_rect(const vitc_f32_gemm_config *cfg, const epilogue_plan *e, size_t m0, size_t m1, size_t jp0,
                      size_t jp1, size_t n, size_t k, const float *a, size_t lda, const float *packed, float *c,
                      size_t ldc, float *apack, const float *shared_a, size_t m_pad) {
    const size_t MR = cfg->mr, NR = cfg->nr;
    const size_t kcb = block_size(k, cfg->kc, 1);
    const size_t mcb = block_size(m1 - m0, cfg->mc, MR);
    const size_t ncp = block_size(jp1 - jp0, cfg->nc / NR, 1); /* panels per NC block */
    const int epilogue = e->bias || e->act != VITC_ACT_NONE || e->scale || e->residual;
    for (size_t jc = jp0; jc < jp1; jc += ncp) {
        const size_t jend = min_size(jc + ncp, jp1);
        for (size_t pc = 0; pc < k; pc += kcb) {
            const size_t kc = min_size(kcb, k - pc);
            const int accumulate = pc > 0 || e->alias;
            const int last = pc + kc == k;
            for (size_t ic = m0; ic < m1; ic += mcb) {
                const size_t mc = min_size(mcb, m1 - ic);
                const float *ap = apack;
                if (shared_a)
                    ap = shared_a + pc * m_pad + ic * kc;
                else
                    pack_a(MR, mc, kc, a + ic * lda + pc, lda, apack);
                for (size_t jp = jc; jp < jend; jp++) {
                    const size_t col0 = jp * NR, nr = min_size(NR, n - col0);
                    const float *bp = packed + col0 * k + pc * NR; /* panel jp, row pc */
                    const float *bn = next_micro_panel(NR, packed, k, pc, jp, jc, jend, ic + mcb < m1);
                    for (size_t ir = 0; ir < mc; ir += MR) {
                        const size_t mr = min_size(MR, mc - ir);
                        float *ct = c + (ic + ir) * ldc + col0;
                        if (accumulate || (last && epilogue)) prefetch_tile_for_write(ct, ldc, mr, nr);
                        run_tile(cfg, mr, nr, kc, ap + ir * kc, bp, ct, ldc, accumulate, bn, ir / MR);
                        if (last) epilogue_tile(e, mr, nr, ic + ir, col0, ct, ldc);
                    }
                }
            }
        }
    }
}

/* residual == C with an activation or a scale: C = act(A·B + bias) · scale + C needs the whole product
 * before C changes, so each MR×NR tile runs over all of k into a stack tile first, then goes onto C.
 * A is packed over all of k, as many rows at a time as the workspace holds (MC×min(KC, k) floats: MC
 * rows when k <= KC), and each B panel serves all of them in turn, as in gemm_rect (one MR-row block at a
 * time read all of B once per 14 rows: DINOv2's layer-scaled proj and fc2 run here). */
static void gemm_rect_fullk(const vitc_f32_gemm_config *cfg, const epilogue_plan *e, size_t m0, size_t m1,
                            size_t jp0, size_t jp1, size_t n, size_t k, const float *a, size_t lda,
                            const float *packed, float *c, size_t ldc, float *apack, const float *shared_a) {
    const size_t MR = cfg->mr, NR = cfg->nr;
    float tmp[VITC_GEMM_MR_MAX * VITC_GEMM_NR_MAX];
    const size_t fit = cfg->mc * min_size(cfg->kc, k) / k / MR * MR; /* rows of A the workspace holds */
    /* A packed beforehand (k <= KC: its panels are [m/MR][k][MR]): the rectangle's rows in one block */
    const size_t mcb = shared_a ? m1 - m0 : block_size(m1 - m0, fit > MR ? fit : MR, MR);
    for (size_t ic = m0; ic < m1; ic += mcb) {
        const size_t mc = min_size(mcb, m1 - ic);
        const float *ap = shared_a ? shared_a + ic * k : apack;
        if (!shared_a) pack_a(MR, mc, k, a + ic * lda, lda, apack);
        for (size_t jp = jp0; jp < jp1; jp++) {
            const size_t col0 = jp * NR, nr = min_size(NR, n - col0);
            const float *bn = next_micro_panel(NR, packed, k, 0, jp, jp0, jp1, ic + mcb < m1);
            for (size_t ir = 0; ir < mc; ir += MR) {
                const size_t mr = min_size(MR, mc - ir);
                float *ct = c + (ic + ir) * ldc + col0;
                prefetch_tile_for_write(ct, ldc, mr, nr);
                run_tile(cfg, mr, nr, k, ap + ir * k, packed + col0 * k, tmp, NR, 0, bn, ir / MR);
                /* bias, act, scale on the stack tile, then onto C */
                epilogue_rows(e, mr, nr, col0, tmp, NR, ct, ldc, ct, ldc);
            }
        }
    }
}

static void gemm_run(const vitc_f32_gemm_config *cfg, const epilogue_plan *e, size_t m0, size_t m1, size_t jp0,
                     size_t jp1, size_t n, size_t k, const float *a, size_t lda, const float *packed, float *c,
                     size_t ldc, float *apack) {
    if (m0 >= m1 || jp0 >= jp1) return;
    if (needs_full_k(e))
        gemm_rect_fullk(cfg, e, m0, m1, jp0, jp1, n, k, a, lda, packed, c, ldc, apack, NULL);
    else
        gemm_rect(cfg, e, m0, m1, jp0, jp1, n, k, a, lda, packed, c, ldc, apack, NULL, 0);
}

/* ---- workspace ----------------------------------------------------------------------------------- */
/* Packed A: MC×KC for the blocked path, at least MR×k for the full-k path, + 16 floats to align to 64 bytes. */
size_t vitc_f32_gemm_serial_workspace_floats(vitc_isa isa, size_t k) {
    const vitc_f32_gemm_config *cfg = gemm_config(isa);
    size_t blocked = cfg->mc * min_size(cfg->kc, k), fullk = cfg->mr * k;
    return (blocked > fullk ? blocked : fullk) + 16;
}

static float *align64(float *p) { return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

void vitc_f32_gemm_serial(vitc_isa isa, size_t m, size_t n, size_t k, const float *a, size_t lda,
                          const float *packed, const vitc_epilogue *ep, float *c, size_t ldc,
                          float *workspace) {
    const vitc_f32_gemm_config *cfg = gemm_config(isa);
    const epilogue_plan e = plan_epilogue(isa, ep, c, ldc);
    gemm_run(cfg, &e, 0, m, 0, div_up(n, cfg->nr), n, k, a, lda, packed, c, ldc, align64(workspace));
}

/* Each (pool or caller) thread keeps its packing buffer across calls and grows it when needed: no malloc
 * or page faults per call in the steady state. A thread-specific key frees it when the thread exits, so an
 * app that runs models from short-lived threads does not leak one buffer per thread. The buffers are also
 * on a list, so that a forked child (only the forking thread survives fork) frees the buffers of the
 * parent's other threads instead of keeping them mapped for its whole life. */
typedef struct thread_buffer {
    float *data;
    size_t floats;
    struct thread_buffer *prev, *next;
} thread_buffer;

#if defined(VITC_HAVE_PTHREAD)
#include <pthread.h>
static pthread_mutex_t buffers_lock = PTHREAD_MUTEX_INITIALIZER;
static thread_buffer *buffers; /* every thread's, under buffers_lock */
/* the thread's own buffer: a pthread key, not _Thread_local (see team_key in threadpool.c) */
static pthread_key_t buffer_key;
static pthread_once_t buffer_once = PTHREAD_ONCE_INIT;

static void buffer_unlink(thread_buffer *b) { /* buffers_lock held */
    if (b->prev) b->prev->next = b->next;
    else buffers = b->next;
    if (b->next) b->next->prev = b->prev;
}

static void buffer_release(void *p) { /* at thread exit */
    thread_buffer *b = (thread_buffer *)p;
    pthread_mutex_lock(&buffers_lock);
    buffer_unlink(b);
    pthread_mutex_unlock(&buffers_lock);
    free(b->data);
    free(b);
}

static void buffers_fork_prepare(void) { pthread_mutex_lock(&buffers_lock); }
static void buffers_fork_parent(void) { pthread_mutex_unlock(&buffers_lock); }
static void buffers_fork_child(void) {
    const thread_buffer *mine = (const thread_buffer *)pthread_getspecific(buffer_key); /* the forking thread's */
    for (thread_buffer *b = buffers, *next; b; b = next) {
        next = b->next;
        if (b == mine) continue;
        buffer_unlink(b);
        free(b->data);
        free(b);
    }
    pthread_mutex_init(&buffers_lock, NULL);
}

static void buffer_init(void) {
    pthread_key_create(&buffer_key, buffer_release);
    pthread_atfork(buffers_fork_prepare, buffers_fork_parent, buffers_fork_child);
}

static void buffers_grow_lock(void) { pthread_mutex_lock(&buffers_lock); }
static void buffers_grow_unlock(void) { pthread_mutex_unlock(&buffers_lock); }

static thread_buffer *my_buffer(void) {
    pthread_once(&buffer_once, buffer_init);
    thread_buffer *b = (thread_buffer *)pthread_getspecific(buffer_key);
    if (b || !(b = (thread_buffer *)calloc(1, sizeof(thread_buffer)))) return b;
    pthread_mutex_lock(&buffers_lock);
    b->next = buffers;
    if (buffers) buffers->prev = b;
    buffers = b;
    pthread_mutex_unlock(&buffers_lock);
    pthread_setspecific(buffer_key, b);
    return b;
}
#else
static void buffers_grow_lock(void) {}
static void buffers_grow_unlock(void) {}
static thread_buffer *my_buffer(void) { /* one thread */
    static thread_buffer *b;
    if (!b) b = (thread_buffer *)calloc(1, sizeof(thread_buffer));
    return b;
}
#endif

static float *thread_workspace(size_t floats) {
    thread_buffer *b = my_buffer();
    if (!b) return NULL;
    if (b->floats < floats) {
        /* under the lock: a fork taken meanwhile must not see a freed pointer it would free again */
        buffers_grow_lock();
        free(b->data);
        size_t bytes = div_up(floats * sizeof(float), 64) * 64;
        b->data = (float *)aligned_alloc(64, bytes);
        b->floats = b->data ? floats : 0;
        buffers_grow_unlock();
    }
    return b->data;
}

/* Split (m_tiles × n_panels) into tm × tn rectangles, tm·tn <= nthreads, minimizing the largest one: its
 * tiles, plus one per row tile for packing its A rows (each thread packs the rows of its rectangle; packing
 * MR rows costs about one tile). Without the packing term fc2 at batch 8 (2056 × 1536 · 1536 × 384) split N
 * in two, and each thread packed all 12.6 MB of A. */
static void split_grid(size_t m_tiles, size_t n_panels, size_t nthreads, size_t *tm, size_t *tn) {
    size_t best = (size_t)-1;
    *tm = *tn = 1;
    for (size_t r = 1; r <= nthreads && r <= m_tiles; r++) {
        size_t q = min_size(nthreads / r, n_panels);
        size_t cost = div_up(m_tiles, r) * (div_up(n_panels, q) + 1);
        if (cost < best) {
            best = cost;
            *tm = r;
            *tn = q;
        }
    }
}

/* Largest A (floats) packed once for all threads: 8 MB (batch 1, and batch 8 for k = 768). A bigger packed
 * A has left the caches by the time it is used: per-thread packing right before use wins there
 * (docs/performance.md), though each thread then packs all of A. */
#define SHARED_A_MAX_FLOATS ((size_t)2 << 20)

/* Teams up to this size get their rectangles from balance_grid (a small simulation per call). */
#define BALANCE_MAX_THREADS 8

/* Threads pack all of A together (KC blocks one after the other, each [m_pad/MR][kc][MR]), then take
 * rectangles of C from a dynamic queue: no thread packs A twice, and a thread the OS delays (the machine
 * is shared) leaves its remaining rectangles to the others instead of holding up the whole GEMM. */
typedef struct {
    const vitc_f32_gemm_config *cfg;
    const epilogue_plan *e;
    size_t m, n, k, lda, ldc, m_tiles, m_pad, n_panels, kcb, k_blocks, tm, tn;
    const float *a, *packed;
    float *c, *shared_a;
    _Atomic size_t next_pack, next_rect; /* the two dynamic queues */
} shared_a_job;

static void gemm_shared_a_member(void *ctx, int tid, int nt) {
    (void)tid, (void)nt;
    shared_a_job *j = (shared_a_job *)ctx;
    const size_t MR = j->cfg->mr, m = j->m, k = j->k, lda = j->lda, m_tiles = j->m_tiles, m_pad = j->m_pad;
    const size_t kcb = j->kcb, tm = j->tm, tn = j->tn, n_panels = j->n_panels;
    for (size_t t0; (t0 = atomic_fetch_add_explicit(&j->next_pack, 2, memory_order_relaxed)) < j->k_blocks * m_tiles;)
        for (size_t t = t0; t < t0 + 2 && t < j->k_blocks * m_tiles; t++) { /* a late thread finds the packing done */
            const size_t pc = t / m_tiles * kcb, i = t % m_tiles * MR, kc = min_size(kcb, k - pc);
            pack_a(MR, min_size(MR, m - i), kc, j->a + i * lda + pc, lda, j->shared_a + pc * m_pad + i * kc);
        }
    vitc_parallel_barrier(); /* A is packed */
    for (size_t t; (t = atomic_fetch_add_explicit(&j->next_rect, 1, memory_order_relaxed)) < tm * tn;) {
        const size_t ti = t / tn, tj = t % tn;
        const size_t m0 = ti * m_tiles / tm * MR, m1 = min_size((ti + 1) * m_tiles / tm * MR, m);
        const size_t jp0 = tj * n_panels / tn, jp1 = (tj + 1) * n_panels / tn;
        if (m0 < m1 && jp0 < jp1 && needs_full_k(j->e)) /* k <= KC here */
            gemm_rect_fullk(j->cfg, j->e, m0, m1, jp0, jp1, j->n, k, j->a, lda, j->packed, j->c, j->ldc, NULL,
                            j->shared_a);
        else if (m0 < m1 && jp0 < jp1)
            gemm_rect(j->cfg, j->e, m0, m1, jp0, jp1, j->n, k, j->a, lda, j->packed, j->c, j->ldc, NULL,
                      j->shared_a, m_pad);
    }
}

/* Tiles of the rectangle t of a tm × tn grid (gemm_shared_a_member's cut). */
static size_t rect_tiles(size_t m_tiles, size_t n_panels, size_t tm, size_t tn, size_t t) {
    const size_t ti = t / tn, tj = t % tn;
    return ((ti + 1) * m_tiles / tm - ti * m_tiles / tm) * ((tj + 1) * n_panels / tn - tj * n_panels / tn);
}

/* When the threads would finish taking the rectangles of a tm × tn grid in order, each the next one when
 * free (tiles, plus one per rectangle for its start: B panels and A rows fetched again). */
static size_t grid_makespan(size_t m_tiles, size_t n_panels, size_t nthreads, size_t tm, size_t tn) {
    size_t busy[BALANCE_MAX_THREADS] = {0}, end = 0;
    for (size_t t = 0; t < tm * tn; t++) {
        size_t first = 0;
        for (size_t i = 1; i < nthreads; i++)
            if (busy[i] < busy[first]) first = i;
        busy[first] += rect_tiles(m_tiles, n_panels, tm, tn, t) + 1;
        if (busy[first] > end) end = busy[first];
    }
    return end;
}

/* The grid, from tm0 row blocks up (packed A <= 1 MB per block), with at least as many rectangles as the
 * heuristic's tm × tn (several per thread: a thread the OS delays leaves its share to the others) and at
 * most 8 per thread, whose dynamic schedule ends first, if it beats the heuristic's. Uneven rectangles cost
 * DINOv2-S at batch 1: its qkv (19 × 36 tiles) in 8 of 4-5 panels ended 11% after the ideal on 2 threads,
 * proj (19 × 12) 17%; 12 rectangles of 3 panels end at the ideal. */
static void balance_grid(size_t m_tiles, size_t n_panels, size_t nthreads, size_t tm0, size_t *tm, size_t *tn) {
    const size_t least = *tm * *tn;
    size_t best = grid_makespan(m_tiles, n_panels, nthreads, *tm, *tn);
    for (size_t r = tm0; r <= m_tiles && r <= tm0 + 8; r++)
        for (size_t q = 1; q <= n_panels && r * q <= 8 * nthreads; q++) {
            if (r * q < least) continue;
            const size_t span = grid_makespan(m_tiles, n_panels, nthreads, r, q);
            if (span < best) {
                best = span;
                *tm = r;
                *tn = q;
            }
        }
}

static void gemm_shared_a(const vitc_f32_gemm_config *cfg, const epilogue_plan *e, int nthreads, size_t m,
                          size_t n, size_t k, const float *a, size_t lda, const float *packed, float *c,
                          size_t ldc, float *shared_a) {
    const size_t MR = cfg->mr, m_tiles = div_up(m, MR), m_pad = m_tiles * MR, n_panels = div_up(n, cfg->nr);
    const size_t kcb = block_size(k, cfg->kc, 1), k_blocks = div_up(k, kcb);
    /* ~4 rectangles per thread. Rows are cut so a rectangle's packed A is <= 1 MB: rectangles are taken
     * row block by row block, so the threads share the A rows they stream while those are in L3 (rather
     * than each reading all of A from DRAM). Then N panels, and more rows if N is narrow. */
    const size_t want = 4 * (size_t)nthreads;
    const size_t tm0 = min_size(m_tiles, div_up(m_pad * k, (size_t)1 << 18));
    size_t tm = tm0;
    size_t tn = min_size(n_panels, div_up(want, tm) > (size_t)nthreads ? div_up(want, tm) : (size_t)nthreads);
    tm = min_size(m_tiles, tm > div_up(want, tn) ? tm : div_up(want, tn));
    /* a whole number of rectangles per thread: 3 × 3 on 2 threads (fc2 at batch 1) left one thread idle
     * while the other ran the ninth, ~10% of that GEMM */
    while ((tm * tn) % (size_t)nthreads && tn < n_panels) tn++;
    if (nthreads <= BALANCE_MAX_THREADS) balance_grid(m_tiles, n_panels, (size_t)nthreads, tm0, &tm, &tn);
    shared_a_job job = {cfg, e, m, n, k, lda, ldc, m_tiles, m_pad, n_panels, kcb, k_blocks, tm, tn,
                        a, packed, c, shared_a, 0, 0};
    vitc_parallel(nthreads, gemm_shared_a_member, &job);
}

/* one static rectangle (or several, if the team is smaller than asked) per thread */
typedef struct {
    const vitc_f32_gemm_config *cfg;
    const epilogue_plan *e;
    size_t m, n, k, lda, ldc, tm, tn, ws;
    const float *a, *packed;
    float *c;
    _Atomic int failed;
} rect_job;

static void gemm_rects_member(void *ctx, int tid, int nt) {
    rect_job *j = (rect_job *)ctx;
    const vitc_f32_gemm_config *cfg = j->cfg;
    const size_t m = j->m, n = j->n, tm = j->tm, tn = j->tn, work = tm * tn;
    const size_t m_tiles = div_up(m, cfg->mr), n_panels = div_up(n, cfg->nr);
    float *buf = thread_workspace(j->ws);
    if (!buf) {
        atomic_store(&j->failed, 1);
        return;
    }
    for (size_t w = (size_t)tid; w < work; w += (size_t)nt) { /* fewer threads than asked: take several */
        const size_t ti = w / tn, tj = w % tn;
        const size_t m0 = min_size(ti * m_tiles / tm * cfg->mr, m);
        const size_t m1 = min_size((ti + 1) * m_tiles / tm * cfg->mr, m);
        const size_t jp0 = tj * n_panels / tn, jp1 = (tj + 1) * n_panels / tn;
        gemm_run(cfg, j->e, m0, m1, jp0, jp1, n, j->k, j->a, j->lda, j->packed, j->c, j->ldc, align64(buf));
    }
}

vitc_status vitc_f32_gemm(vitc_isa isa, int nthreads, size_t m, size_t n, size_t k,
                          const float *a, size_t lda, const float *packed, const vitc_epilogue *ep,
                          float *c, size_t ldc) {
    const vitc_f32_gemm_config *cfg = gemm_config(isa);
    const epilogue_plan e = plan_epilogue(isa, ep, c, ldc);
    const size_t m_tiles = div_up(m, cfg->mr), n_panels = div_up(n, cfg->nr);
    const size_t ws = vitc_f32_gemm_serial_workspace_floats(isa, k);
    size_t tm = 1, tn = 1;
    /* below ~0.5 MFLOP a parallel region costs more than it saves */
    if (nthreads > 1 && 2.0 * (double)m * (double)n * (double)k >= 5e5)
        split_grid(m_tiles, n_panels, (size_t)nthreads, &tm, &tn);
    const size_t work = tm * tn;
    if (work == 1) {
        float *buf = thread_workspace(ws);
        if (!buf) return VITC_ERR_NOMEM;
        gemm_run(cfg, &e, 0, m, 0, n_panels, n, k, a, lda, packed, c, ldc, align64(buf));
        return VITC_OK;
    }
    const size_t shared_floats = m_tiles * cfg->mr * k;
    /* the full-k path (residual = C with act / scale: DINOv2's proj and fc2) shares A too when k fits one
     * KC block, the layout it reads; it used to take static rectangles, each thread packing all of A */
    if (shared_floats <= SHARED_A_MAX_FLOATS && (!needs_full_k(&e) || k <= cfg->kc)) {
        float *buf = thread_workspace(shared_floats + 16); /* the calling thread's cache */
        if (!buf) return VITC_ERR_NOMEM;
        gemm_shared_a(cfg, &e, (int)work, m, n, k, a, lda, packed, c, ldc,
                      align64(buf));
        return VITC_OK;
    }
    /* large A: static rectangles, each thread packing its rows MC×KC at a time into its own buffer */
    rect_job job = {cfg, &e, m, n, k, lda, ldc, tm, tn, ws, a, packed, c, 0};
    vitc_parallel((int)work, gemm_rects_member, &job);
    return atomic_load(&job.failed) ? VITC_ERR_NOMEM : VITC_OK;
}
