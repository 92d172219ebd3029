/* threadpool.h — vitc's own worker threads (csrc/threadpool.c), the one way its kernels run in parallel.
 *
 * vitc_parallel(n, fn, ctx) runs fn(ctx, t, nt) for t = 0 .. nt-1, the caller as t = 0, and returns when
 * every member has returned (a fork/join region, like `#pragma omp parallel num_threads(n)`). nt == n,
 * except: a call from inside a region runs on its thread alone (nt = 1, as OpenMP without nesting), and
 * if the OS refuses new threads the team is smaller. Members split work by (t, nt) or by an atomic counter
 * the caller puts in ctx (a dynamic schedule); vitc_parallel_barrier() makes a phase wait for the previous
 * one. Any number of caller threads may run regions at once: each borrows idle workers (new ones are
 * started when none are idle). A forked child forgets the parent's workers and starts its own on first use.
 */
#ifndef VITC_THREADPOOL_H
#define VITC_THREADPOOL_H

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*vitc_parallel_fn)(void *ctx, int tid, int nt);

void vitc_parallel(int nthreads, vitc_parallel_fn fn, void *ctx);
/* Inside fn: wait until every member of the team has reached its barrier (a no-op in a team of one). */
void vitc_parallel_barrier(void);

/* 1 when built with threads (pthreads), 0 when every region runs on its caller. */
int vitc_parallel_enabled(void);
/* Worker threads this process has started (and that are still its own: 0 in a fresh fork child). */
int vitc_parallel_workers(void);
/* Self-check: runs a team of nthreads through several barrier rounds and an atomic work queue; returns
 * the number of distinct OS threads that ran it, or -1 if a member saw a broken barrier or queue. */
int vitc_parallel_probe(int nthreads);

#ifdef __cplusplus
}
#endif
#endif /* VITC_THREADPOOL_H */
