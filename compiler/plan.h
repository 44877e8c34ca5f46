/* plan.h - the static memory plan: one arena per compiled program.
 *
 * Every buffer a program touches (inputs, parameters, buffers, gradients,
 * intermediates) gets a byte offset in one arena, decided at compile time
 * from buffer lifetimes, so running a program allocates nothing and its peak
 * memory (the arena size) is known before the first step. */
#ifndef LATHE_PLAN_H
#define LATHE_PLAN_H

#include <stdint.h>
#include <stdio.h>

enum { LT_PLAN_ALIGN = 64 };   /* every offset is a multiple of this */
enum { LT_PLAN_FOREVER = 1 << 30 };

typedef struct {
    const char *label;   /* shown in the dump: "%12 conv2d", "param conv1.weight" */
    int64_t size;        /* bytes; 0 is allowed */
    /* Lifetime in kernel steps (0 .. nsteps-1): the buffer is written at step
     * `first` and last read at step `last`.  first = -1: it holds data before
     * the program runs (inputs, parameters, buffers); last = LT_PLAN_FOREVER:
     * it must survive the run (outputs, parameters, buffers).  Two buffers
     * may share bytes only if their [first, last] intervals do not overlap. */
    int first, last;
    /* In-place candidate: index of a buffer whose last use is this buffer's
     * defining step (first), read by that step element by element at the same
     * positions it writes, so the two may share memory; -1 for none.  The
     * planner takes the hint only if the sizes match and nothing else
     * conflicts. */
    int inplace_of;
    int64_t offset;      /* set by lt_plan */
    int shared_with;     /* set by lt_plan: the buffer whose memory it reuses in place, or -1 */
} lt_buf;

/* Assign offsets (multiples of LT_PLAN_ALIGN) so that no two buffers with
 * overlapping lifetimes overlap in memory; returns the arena size in bytes
 * (the peak), or -1 on overflow, invalid input (a negative size, first >
 * last, a bad inplace_of) or out of memory.  Deterministic: the same input gives the
 * same plan. */
int64_t lt_plan(lt_buf *bufs, int n);

/* Print the plan: one line per buffer (offset, size, lifetime, label,
 * in-place sharing) and the total. */
void lt_plan_print(FILE *out, const lt_buf *bufs, int n, int64_t total);

#endif
