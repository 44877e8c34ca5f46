/* executor.c - runs a compiled program's kernels, in parallel with OpenMP.
 *
 * One parallel region per run, and no barrier between kernels.  A large
 * kernel's range is cut into chunks (a few per thread); a run of small
 * kernels (too small to split) is one unit of work.  Every thread walks the
 * kernels in order; at each, it waits until the kernel before is complete
 * (the kernel may read what that one wrote), then claims chunks until none
 * is left: first those of its own share, in order, then the others' from
 * their ends, so that each thread mostly works on the same part of
 * consecutive kernels (its cache holds it) while one that finishes early
 * takes over the rest.  A thread the system has descheduled (a busy machine)
 * holds up the others only by the one chunk it is running, not by every
 * kernel's barrier.  A waiting thread spins briefly, then sleeps on a futex
 * until a kernel completes, so it does not burn a core another process
 * needs.
 *
 * Two threads are slower than one when another process keeps a core busy:
 * each time the system deschedules one of them mid-chunk, the other waits.
 * So after its first WARM_RUNS runs, a program times its runs and uses one
 * thread while one is faster, trying all of them again every PROBE_EVERY
 * runs (an average of each kind decides).
 *
 * The state (which chunks are claimed, how many are done, the run times)
 * lives in the arena at sync_offset, the chunks' reset at the start of each
 * run: running allocates nothing.
 *
 * The values do not depend on any of this: each element is computed whole by
 * one kernel call, reductions inside an element run in a fixed order, and no
 * atomics touch data, so the results are the same bits for any thread count
 * and any order in which chunks are taken. */
#include <limits.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <omp.h>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
long syscall(long number, ...); /* unistd.h declares it only with _GNU_SOURCE or _DEFAULT_SOURCE */
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#include "fpenv.h"
#include "lathe_runtime.h"

enum {
    CHUNKS_PER_THREAD = 4, /* chunks of a large kernel per thread: room to balance */
    MAX_CHUNKS = 64,       /* bits of a claim mask */
    SPINS = 1000,          /* pauses before a waiting thread sleeps (tens of microseconds) */
    WARM_RUNS = 8,         /* runs on all the threads before any is timed */
    PROBE_EVERY = 32,      /* runs between tries of the kind not chosen */
};

/* A kernel's state in the arena. */
typedef struct {
    _Atomic uint64_t claimed; /* bit j: chunk j is taken */
    _Atomic uint32_t done;    /* chunks finished */
    uint32_t unused;
} ksync;

/* The run times, after the kernels' state. */
typedef struct {
    double avg[2];    /* average seconds of a run on all the threads [0] and on one [1]; 0: none yet */
    uint64_t runs;
    uint64_t unused;
} run_times;

int64_t lathe_rt_sync_bytes(int nkernels) { return (int64_t)nkernels * (int64_t)sizeof(ksync) + (int64_t)sizeof(run_times); }

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* 0: all the threads, 1: one.  After the warm runs, one of each kind (all
 * the threads first), then the faster on average, the other every
 * PROBE_EVERY runs. */
static int choose(const run_times *rt) {
    uint64_t r = rt->runs;
    if (r < WARM_RUNS) return 0;
    if (rt->avg[0] == 0) return 0;
    if (rt->avg[1] == 0) return 1;
    int best = rt->avg[1] < rt->avg[0];
    return (r - WARM_RUNS) % PROBE_EVERY == PROBE_EVERY - 1 ? !best : best;
}

static void record(run_times *rt, int kind, double seconds) {
    if (rt->runs++ < WARM_RUNS) return;
    rt->avg[kind] = rt->avg[kind] == 0 ? seconds : 0.75 * rt->avg[kind] + 0.25 * seconds;
}

typedef struct {
    const lathe_rt_program *p;
    ksync *ks;
    int nt;
    _Atomic int failed;       /* a communication step failed */
    _Atomic uint32_t gen;     /* bumped when a kernel completes: the futex word */
    _Atomic int sleepers;
} run_state;

static bool small(const lathe_rt_kernel *k, int nt) { return k->range < 2 * nt; }

static int nchunks(const lathe_rt_kernel *k, int nt) {
    if (k->range <= 0) return 0;
    if (small(k, nt)) return 1;
    int64_t c = k->range >= 8 * (int64_t)nt ? (int64_t)nt * CHUNKS_PER_THREAD : nt;
    c = c < MAX_CHUNKS ? c : MAX_CHUNKS;
    return (int)(c < k->range ? c : k->range);
}

static void futex_wait(_Atomic uint32_t *w, uint32_t val) {
#if defined(__linux__)
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
#else
    (void)w, (void)val;
    sched_yield();
#endif
}

static void futex_wake(_Atomic uint32_t *w) {
#if defined(__linux__)
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
    (void)w;
#endif
}

static bool complete(run_state *s, int k, int nch) {
    return (int)atomic_load_explicit(&s->ks[k].done, memory_order_acquire) == nch;
}

/* Wait until kernel k (nch chunks) is complete: spin, then sleep.  The
 * sleeper count is checked by the thread that completes a kernel after it
 * bumps gen, and the condition here after the count goes up, so a wake-up
 * cannot be lost. */
static void wait_complete(run_state *s, int k, int nch) {
    for (int i = 0; i < SPINS; i++) {
        if (complete(s, k, nch)) return;
        cpu_relax();
    }
    for (;;) {
        uint32_t g = atomic_load(&s->gen);
        if (complete(s, k, nch)) return;
        atomic_fetch_add(&s->sleepers, 1);
        if (!complete(s, k, nch)) futex_wait(&s->gen, g);
        atomic_fetch_sub(&s->sleepers, 1);
    }
}

static void count_done(run_state *s, int k, int nch) {
    if ((int)atomic_fetch_add_explicit(&s->ks[k].done, 1, memory_order_acq_rel) + 1 == nch) {
        atomic_fetch_add(&s->gen, 1);
        if (atomic_load(&s->sleepers) > 0) futex_wake(&s->gen);
    }
}

static bool claim(run_state *s, int k, int j) {
    uint64_t bit = (uint64_t)1 << j;
    if (atomic_load_explicit(&s->ks[k].claimed, memory_order_relaxed) & bit) return false;
    return !(atomic_fetch_or_explicit(&s->ks[k].claimed, bit, memory_order_relaxed) & bit);
}

static void run_chunk(run_state *s, int k, int nch, int j) {
    const lathe_rt_kernel *kn = &s->p->kernels[k];
    kn->fn(s->p->arena, kn->range * j / nch, kn->range * (j + 1) / nch);
    count_done(s, k, nch);
}

/* Communication step k (a kernel without code): the start or the end of
 * one of the program's gathers.  0, or -1 when it failed. */
static int communicate(const lathe_rt_program *p, int k) {
    for (int i = 0; i < p->ngathers; i++) {
        const lathe_rt_gather *g = &p->gathers[i];
        lathe_rt_comm *c = p->comm;
        if (g->wait == k) return c && c->start && c->finish ? (c->finish(c, i) ? -1 : 0) : 0;
        if (g->kernel != k) continue;
        const uint8_t *src = p->arena + g->src;
        uint8_t *dst = p->arena + g->dst;
        if (g->parts == 1 && !c) { /* a world of one: the blocks as they are */
            memmove(dst, src, (size_t)(g->outer * g->bytes));
            return 0;
        }
        if (!c || !c->all_gather) return -1;
        if (c->start && c->finish) return c->start(c, i, src, dst, g->outer, g->bytes, g->parts) ? -1 : 0;
        return c->all_gather(c, i, src, dst, g->outer, g->bytes, g->parts) ? -1 : 0;
    }
    return -1;
}

/* Let the gathers under way advance (the calling thread, between kernels). */
static void progress(const lathe_rt_program *p) {
    if (p->ngathers && p->comm && p->comm->progress) p->comm->progress(p->comm);
}

/* Thread tid's part of a run. */
static void work(run_state *s, int tid) {
    const lathe_rt_program *p = s->p;
    int nt = s->nt, prev = -1, prev_nch = 0; /* the last kernel with work before k */
    for (int k = 0; k < p->nkernels;) {
        const lathe_rt_kernel *kn = &p->kernels[k];
        if (tid == 0) progress(p);
        if (!kn->fn) { /* communication: the calling thread, once the kernel before is complete */
            if (tid == 0) {
                if (prev >= 0) wait_complete(s, prev, prev_nch);
                if (communicate(p, k)) atomic_store(&s->failed, 1);
                count_done(s, k, 1);
            }
            prev = k, prev_nch = 1, k++;
            continue;
        }
        if (kn->range <= 0) {
            k++;
            continue;
        }
        if (small(kn, nt)) { /* a run of small kernels: one unit, whoever comes first */
            int end = k + 1, last = k;
            while (end < p->nkernels && p->kernels[end].fn && small(&p->kernels[end], nt)) {
                if (p->kernels[end].range > 0) last = end;
                end++;
            }
            if (claim(s, k, 0)) {
                if (prev >= 0) wait_complete(s, prev, prev_nch);
                for (int i = k; i < end; i++)
                    if (p->kernels[i].range > 0) run_chunk(s, i, 1, 0);
            }
            prev = last, prev_nch = 1, k = end;
            continue;
        }
        int nch = nchunks(kn, nt);
        if (prev >= 0) wait_complete(s, prev, prev_nch);
        /* its own share ascending, then the others' from their ends */
        int me = tid % nt;
        for (int i = 0; i < nt; i++) {
            int owner = (me + i) % nt, lo = nch * owner / nt, hi = nch * (owner + 1) / nt;
            if (i == 0)
                for (int j = lo; j < hi; j++) {
                    if (claim(s, k, j)) run_chunk(s, k, nch, j);
                }
            else
                for (int j = hi - 1; j >= lo; j--)
                    if (claim(s, k, j)) run_chunk(s, k, nch, j);
        }
        prev = k, prev_nch = nch, k++;
    }
}

static int run_one_thread(const lathe_rt_program *p) {
    lt_fpenv fe = lt_fp_enter(p->ieee_denormals);
    int failed = 0;
    for (int i = 0; i < p->nkernels; i++) {
        if (!p->kernels[i].fn) failed |= communicate(p, i);
        else if (p->kernels[i].range > 0) p->kernels[i].fn(p->arena, 0, p->kernels[i].range);
        progress(p);
    }
    lt_fp_leave(fe);
    return failed ? -1 : 0;
}

int lathe_rt_run(const lathe_rt_program *p, int threads) {
    int nt = threads > 0 ? threads : omp_get_max_threads();
    run_times *rt = p->sync_offset > 0 ? (run_times *)(p->arena + p->sync_offset + (int64_t)p->nkernels * (int64_t)sizeof(ksync)) : NULL;
    int kind = nt > 1 && rt ? choose(rt) : 1;
    double t0 = rt ? now() : 0;
    int failed = 0;
    if (kind == 1) {
        failed = run_one_thread(p);
    } else {
        /* chunks are cut for nt threads; claiming works for however many
         * OpenMP gives */
        run_state s = {.p = p, .ks = (ksync *)(p->arena + p->sync_offset), .nt = nt};
        memset(s.ks, 0, (size_t)p->nkernels * sizeof *s.ks);
#pragma omp parallel num_threads(nt)
        {
            lt_fpenv fe = lt_fp_enter(p->ieee_denormals);
            work(&s, omp_get_thread_num());
            lt_fp_leave(fe);
        }
        failed = atomic_load(&s.failed);
    }
    if (rt && nt > 1) record(rt, kind, now() - t0);
    for (int i = 0; i < p->ncopies; i++)
        memmove(p->arena + p->copies[i].dst, p->arena + p->copies[i].src, (size_t)p->copies[i].bytes);
    return failed ? -1 : 0;
}

uint8_t *lathe_rt_alloc_arena(int64_t size) {
    size_t n = ((size_t)(size > 0 ? size : 1) + 63) & ~(size_t)63;
    uint8_t *a = aligned_alloc(64, n);
    if (a) memset(a, 0, n);
    return a;
}

void lathe_rt_free_arena(uint8_t *arena) { free(arena); }
