/* lathe_runtime.h - the runtime that runs compiled programs.
 *
 * The runtime depends on neither the IR nor LLVM: a compiled program is
 * plain data - kernel functions in order, each with the size of its parallel
 * range, the copies that apply state updates after the kernels, and one
 * arena holding every tensor at an offset planned at compile time.  The JIT
 * (compiler/jit.c) fills this in from ORC; a native trainer will fill it in
 * from its linked object.  Running a program allocates nothing. */
#ifndef LATHE_RUNTIME_H
#define LATHE_RUNTIME_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A kernel computes the elements of its output whose leading flattened
 * index lies in [begin, end). */
typedef void (*lathe_kernel_fn)(uint8_t *arena, int64_t begin, int64_t end);

typedef struct {
    lathe_kernel_fn fn;
    int64_t range;       /* the kernel's parallel range is [0, range) */
} lathe_rt_kernel;

typedef struct {
    int64_t src, dst, bytes; /* arena offsets: after the kernels, dst takes src */
} lathe_rt_copy;

typedef struct {
    uint8_t *arena;      /* 64-byte aligned, arena_size bytes */
    int64_t arena_size;
    const lathe_rt_kernel *kernels;
    int nkernels;
    const lathe_rt_copy *copies;
    int ncopies;
} lathe_rt_program;

/* Run every kernel in order on `threads` threads (0: OpenMP's default), then
 * the copies.  Each kernel's range is split into contiguous chunks, one per
 * thread; every element is computed by one thread in a fixed order, so the
 * results are the same bits for any thread count. */
void lathe_rt_run(const lathe_rt_program *p, int threads);

/* A zeroed, 64-byte aligned arena of at least size bytes; free with
 * lathe_rt_free_arena.  NULL when out of memory. */
uint8_t *lathe_rt_alloc_arena(int64_t size);
void lathe_rt_free_arena(uint8_t *arena);

#ifdef __cplusplus
}
#endif
#endif
