/* threadpool.c — vitc's worker threads: fork/join regions that survive fork().
 *
 * Why not OpenMP: GNU OpenMP (libgomp, gcc's runtime) keeps its worker threads across regions and has no
 * fork handler, so a child forked after a parallel region waits forever for workers that fork() did not
 * copy (multiprocessing's "fork" start method, gunicorn/Celery pre-fork workers, DataLoader workers).
 * LLVM's libomp survives fork, but which runtime a build gets depends on the compiler, and vitc needs only
 * fork/join, a barrier and an atomic counter. So vitc runs its own small pool:
 *  - workers are started lazily, borrowed by a caller for one region and given back (idle ones LIFO, so a
 *    single caller keeps the same workers and their per-thread buffers stay warm);
 *  - a worker waits for its next region by spinning SPIN_NS, then sleeping on a futex (Linux) or a condition
 *    variable (elsewhere): back-to-back regions of one forward start without a system call, as with
 *    OpenMP's spinning workers, while an idle process does not burn its cores;
 *  - pthread_atfork: the prepare handler takes the pool's locks so the child sees a consistent pool; the
 *    child handler forgets the parent's workers (they do not exist there) and the next region starts new
 *    ones, so the child runs with the threads it asks for.
 * Without pthreads every region runs on its caller (one thread).
 */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* syscall(SYS_futex) */
#endif
#if !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime, pthread_sigmask */
#endif
#include "threadpool.h"

#include <stdlib.h>

#if defined(VITC_HAVE_PTHREAD)
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#if defined(__linux__) && !defined(VITC_NO_FUTEX)
#define USE_FUTEX 1
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

/* How long a waiting thread spins before it sleeps: longer than the gaps between the regions of a forward
 * (a few microseconds) and between back-to-back forwards of a serving loop, short enough that an idle
 * process gives its cores back within a millisecond. */
#define SPIN_NS 300000

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

/* ---- a word to wait on: spin, then sleep until it changes ----------------------------------------- */
typedef struct {
    _Atomic uint32_t value;
    _Atomic uint32_t sleepers; /* waiters past their spin: a bump must wake them */
} wait_word;

#if defined(USE_FUTEX)
static void os_wait(_Atomic uint32_t *word, uint32_t old) {
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, old, NULL, NULL, 0);
}
static void os_wake(_Atomic uint32_t *word) {
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}
static void os_sleep_reset(void) {}
#else
/* portable fallback: one condition variable for every word (sleeping is the slow path anyway) */
static pthread_mutex_t sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sleep_cond = PTHREAD_COND_INITIALIZER;
static void os_wait(_Atomic uint32_t *word, uint32_t old) {
    pthread_mutex_lock(&sleep_lock);
    while (atomic_load(word) == old) pthread_cond_wait(&sleep_cond, &sleep_lock);
    pthread_mutex_unlock(&sleep_lock);
}
static void os_wake(_Atomic uint32_t *word) {
    (void)word;
    pthread_mutex_lock(&sleep_lock);
    pthread_cond_broadcast(&sleep_cond);
    pthread_mutex_unlock(&sleep_lock);
}
static void os_sleep_reset(void) {
    pthread_mutex_init(&sleep_lock, NULL);
    pthread_cond_init(&sleep_cond, NULL);
}
#endif

/* Returns the new value once w->value != old. The sleepers count and the value form a Dekker pair (both
 * sequentially consistent): a bump either is seen before sleeping or sees the sleeper and wakes it. */
static uint32_t wait_change(wait_word *w, uint32_t old) {
    uint32_t v = atomic_load_explicit(&w->value, memory_order_acquire);
    if (v != old) return v;
    const uint64_t deadline = now_ns() + SPIN_NS;
    for (unsigned i = 1;; i++) {
        cpu_relax();
        v = atomic_load_explicit(&w->value, memory_order_acquire);
        if (v != old) return v;
        if ((i & 255) == 0 && now_ns() > deadline) break;
    }
    atomic_fetch_add(&w->sleepers, 1);
    while ((v = atomic_load(&w->value)) == old) os_wait(&w->value, old);
    atomic_fetch_sub(&w->sleepers, 1);
    return v;
}

static void bump(wait_word *w) {
    atomic_fetch_add(&w->value, 1);
    if (atomic_load(&w->sleepers)) os_wake(&w->value);
}

/* ---- teams and workers ------------------------------------------------------------------------------ */
typedef struct {
    vitc_parallel_fn fn;
    void *ctx;
    int nt;
    _Atomic uint32_t arrived; /* at the current barrier */
    wait_word generation;     /* barriers passed */
} team;

typedef struct worker {
    wait_word go;   /* bumped by the owner: run (team, tid) */
    wait_word done; /* bumped by the worker when its member returned */
    team *team;     /* written by the owner before go */
    int tid;
    uint32_t done_before;  /* owner's copy of done.value before go */
    struct worker *next;   /* idle list, then the owner's team list */
    struct worker *all;    /* every worker of this process */
} worker;

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER; /* guards the three below */
static worker *idle_workers;
static worker *all_workers;
static int worker_count;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

/* Inside a member: its team (a nested region runs serially). A pthread key, not _Thread_local: in a
 * dlopen'd extension that is dynamic TLS, which GCC 12's LeakSanitizer misreads in threads (its tracer
 * crashes at exit, failing .ci/asan). */
static pthread_key_t team_key;

static team *current_team(void) { return (team *)pthread_getspecific(team_key); }

static void run_member(team *t, int tid) {
    pthread_setspecific(team_key, t);
    t->fn(t->ctx, tid, t->nt);
    pthread_setspecific(team_key, NULL);
}

static void *worker_main(void *arg) {
    worker *w = (worker *)arg;
    uint32_t seen = 0;
    for (;;) {
        seen = wait_change(&w->go, seen);
        run_member(w->team, w->tid);
        bump(&w->done);
    }
    return NULL;
}

/* a new worker, or NULL if the OS refuses one (the team is then smaller). Called with pool_lock held. */
static worker *start_worker(void) {
    worker *w = (worker *)calloc(1, sizeof(worker));
    if (!w) return NULL;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    sigset_t all, old; /* signals go to the application's threads, never to a worker */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t thread;
    int err = pthread_create(&thread, &attr, worker_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (err) {
        free(w);
        return NULL;
    }
    w->all = all_workers;
    all_workers = w;
    worker_count++;
    return w;
}

/* ---- fork: the child keeps no workers -------------------------------------------------------------- */
static void fork_prepare(void) { pthread_mutex_lock(&pool_lock); }
static void fork_parent(void) { pthread_mutex_unlock(&pool_lock); }
static void fork_child(void) {
    /* The parent's workers were not copied: their records are garbage here (one may even be marked busy
     * in a team of a thread that no longer exists). Free them; the next region starts fresh workers. */
    for (worker *w = all_workers, *next; w; w = next) {
        next = w->all;
        free(w);
    }
    all_workers = idle_workers = NULL;
    worker_count = 0;
    pthread_mutex_init(&pool_lock, NULL);
    os_sleep_reset();
}
static void pool_init(void) {
    pthread_key_create(&team_key, NULL);
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

void vitc_parallel(int nthreads, vitc_parallel_fn fn, void *ctx) {
    pthread_once(&pool_once, pool_init);
    team *outer = current_team();
    if (nthreads <= 1 || outer) {
        team solo = {fn, ctx, 1, 0, {0, 0}};
        run_member(&solo, 0);
        pthread_setspecific(team_key, outer);
        return;
    }
    /* borrow nthreads - 1 workers: idle ones first, then new ones */
    worker *members = NULL, **tail = &members;
    int got = 0;
    pthread_mutex_lock(&pool_lock);
    while (got < nthreads - 1) {
        worker *w = idle_workers;
        if (w)
            idle_workers = w->next;
        else if (!(w = start_worker()))
            break;
        w->next = NULL;
        *tail = w;
        tail = &w->next;
        got++;
    }
    pthread_mutex_unlock(&pool_lock);

    team t = {fn, ctx, 1 + got, 0, {0, 0}};
    int tid = 1;
    for (worker *w = members; w; w = w->next) {
        w->team = &t;
        w->tid = tid++;
        w->done_before = atomic_load(&w->done.value);
        bump(&w->go);
    }
    run_member(&t, 0);
    for (worker *w = members; w; w = w->next) wait_change(&w->done, w->done_before);

    /* give them back in reverse, so the next region of this caller gets the same workers in the same order */
    pthread_mutex_lock(&pool_lock);
    worker *rev = NULL;
    for (worker *w = members, *next; w; w = next) {
        next = w->next;
        w->next = rev;
        rev = w;
    }
    for (worker *w = rev, *next; w; w = next) {
        next = w->next;
        w->next = idle_workers;
        idle_workers = w;
    }
    pthread_mutex_unlock(&pool_lock);
}

void vitc_parallel_barrier(void) {
    pthread_once(&pool_once, pool_init);
    team *t = current_team();
    if (!t || t->nt <= 1) return;
    const uint32_t gen = atomic_load(&t->generation.value);
    if (atomic_fetch_add(&t->arrived, 1) == (uint32_t)t->nt - 1) {
        atomic_store(&t->arrived, 0); /* nobody arrives at the next barrier before the bump below */
        bump(&t->generation);
    } else {
        wait_change(&t->generation, gen);
    }
}

int vitc_parallel_enabled(void) { return 1; }

int vitc_parallel_workers(void) {
    pthread_mutex_lock(&pool_lock);
    int n = worker_count;
    pthread_mutex_unlock(&pool_lock);
    return n;
}

/* ---- self-check ------------------------------------------------------------------------------------ */
#define PROBE_ROUNDS 4
#define PROBE_ITEMS 1000

typedef struct {
    pthread_t *who;
    _Atomic int team_size, arrivals, broken;
    _Atomic size_t next, claimed_sum;
} probe_ctx;

static void probe_member(void *p, int tid, int nt) {
    probe_ctx *c = (probe_ctx *)p;
    c->who[tid] = pthread_self();
    if (tid == 0) atomic_store(&c->team_size, nt);
    for (int r = 0; r < PROBE_ROUNDS; r++) {
        atomic_fetch_add(&c->arrivals, 1);
        vitc_parallel_barrier();
        if (atomic_load(&c->arrivals) != nt * (r + 1) || atomic_load(&c->team_size) != nt)
            atomic_store(&c->broken, 1);
        vitc_parallel_barrier();
    }
    for (size_t i; (i = atomic_fetch_add(&c->next, 1)) < PROBE_ITEMS;) atomic_fetch_add(&c->claimed_sum, i + 1);
}

int vitc_parallel_probe(int nthreads) {
    if (nthreads < 1) nthreads = 1;
    probe_ctx c;
    c.who = (pthread_t *)calloc((size_t)nthreads, sizeof(pthread_t));
    if (!c.who) return -1;
    atomic_init(&c.team_size, 0);
    atomic_init(&c.arrivals, 0);
    atomic_init(&c.broken, 0);
    atomic_init(&c.next, 0);
    atomic_init(&c.claimed_sum, 0);
    vitc_parallel(nthreads, probe_member, &c);
    const int nt = atomic_load(&c.team_size);
    int distinct = 0;
    for (int i = 0; i < nt; i++) {
        int seen = 0;
        for (int j = 0; j < i && !seen; j++) seen = pthread_equal(c.who[i], c.who[j]);
        distinct += !seen;
    }
    free(c.who);
    const size_t want_sum = (size_t)PROBE_ITEMS * (PROBE_ITEMS + 1) / 2; /* every item claimed exactly once */
    const int ok = !atomic_load(&c.broken) && atomic_load(&c.claimed_sum) == want_sum;
    return ok ? distinct : -1;
}

#else /* no pthreads: every region runs on its caller */

void vitc_parallel(int nthreads, vitc_parallel_fn fn, void *ctx) {
    (void)nthreads;
    fn(ctx, 0, 1);
}
void vitc_parallel_barrier(void) {}
int vitc_parallel_enabled(void) { return 0; }
int vitc_parallel_workers(void) { return 0; }
int vitc_parallel_probe(int nthreads) {
    (void)nthreads;
    return 1;
}

#endif
