/* executor.c - runs a compiled program's kernels, in parallel with OpenMP.
 *
 * One parallel region per run; inside it every thread takes its contiguous
 * share of each kernel's range, then all meet at a barrier before the next
 * kernel (which may read what this one wrote).  Shares depend on the thread
 * count but the value of every element does not: each is computed whole by
 * one thread, reductions inside an element run in a fixed order, and no
 * atomics or OpenMP reductions are used. */
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "fpenv.h"
#include "lathe_runtime.h"

static void run_share(const lathe_rt_kernel *k, uint8_t *arena, int tid, int nt) {
    int64_t n = k->range, lo = n * tid / nt, hi = n * (tid + 1) / nt;
    if (lo < hi) k->fn(arena, lo, hi);
}

void lathe_rt_run(const lathe_rt_program *p, int threads) {
    int nt = threads > 0 ? threads : omp_get_max_threads();
    if (nt <= 1) {
        lt_fpenv fe = lt_fp_enter(p->ieee_denormals);
        for (int i = 0; i < p->nkernels; i++)
            if (p->kernels[i].range > 0) p->kernels[i].fn(p->arena, 0, p->kernels[i].range);
        lt_fp_leave(fe);
    } else {
#pragma omp parallel num_threads(nt)
        {
            lt_fpenv fe = lt_fp_enter(p->ieee_denormals);
            int tid = omp_get_thread_num(), n = omp_get_num_threads();
            for (int i = 0; i < p->nkernels; i++) {
                const lathe_rt_kernel *k = &p->kernels[i];
                if (k->range < 2 * n) {
                    /* too small to split: thread 0 runs it, and runs on into
                     * the next small kernels with no barrier between them */
                    if (tid == 0) run_share(k, p->arena, 0, 1);
                    if (i + 1 < p->nkernels && p->kernels[i + 1].range < 2 * n) continue;
                } else run_share(k, p->arena, tid, n);
#pragma omp barrier
            }
            lt_fp_leave(fe);
        }
    }
    for (int i = 0; i < p->ncopies; i++)
        memmove(p->arena + p->copies[i].dst, p->arena + p->copies[i].src, (size_t)p->copies[i].bytes);
}

uint8_t *lathe_rt_alloc_arena(int64_t size) {
    size_t n = ((size_t)(size > 0 ? size : 1) + 63) & ~(size_t)63;
    uint8_t *a = aligned_alloc(64, n);
    if (a) memset(a, 0, n);
    return a;
}

void lathe_rt_free_arena(uint8_t *arena) { free(arena); }
