/* program.h - compiled programs inside the compiler (program.c, aot.c). */
#ifndef LATHE_PROGRAM_INTERNAL_H
#define LATHE_PROGRAM_INTERNAL_H

#include "lathe_program.h"
#include "lathe_runtime.h"
#include "pipeline.h"

/* lathe_backend values, plus: object code kept for linking (aot.c) */
enum { LT_BACKEND_OBJECT = 2 };

/* Both backends keep every named tensor (inputs, params, buffers, outputs)
 * in an arena described by one table, so setting, reading, initializing,
 * optimizing and checkpointing work the same way on both.  The JIT's arena
 * is its memory plan; the evaluator's holds just the named tensors, copied
 * to and from the evaluator around each run. */
struct lathe_program {
    int backend;               /* lathe_backend or LT_BACKEND_OBJECT */
    lathe_graph *g;            /* the caller's graph (not owned) */
    lt_target target;          /* the CPU the code is for */
    lt_build b;                /* the pipeline's products: kernels, plan, code (JIT and objects) */
    char err[1024];
    int threads;
    lathe_rt_tensor *tensors;  /* the caller's leaves in node order, then its outputs */
    int ntensors;
    const lathe_node **tnode;  /* per tensor: its node in g */
    lathe_rt_program rt;       /* rt.arena is the arena of both backends */
    lathe_rt_kernel *kernels;  /* objects: fn NULL */
    lathe_rt_copy *copies;
    lathe_rt_gather *gathers;  /* the communication steps (rt.ngathers) */
    int *kfused;               /* per runtime kernel: its fused kernel (p->b.f->ks), -1 for a gather's wait step */
    lathe_eval *ev;            /* the evaluator backend */
};

/* lathe_compile for target t (described once by the caller; the program
 * keeps a copy) and a kernel symbol prefix (NULL:
 * "lathe_k"); backend LT_BACKEND_OBJECT stops at machine code (the pipeline's
 * asm stage: PIC objects in p->b.parts[i].code) instead of JIT-linking.
 * sh (NULL: none): a data-parallel program (pipeline.h's lt_build.shard);
 * p->b.shard.shards then says how many shards it has (1 when a program for
 * one process could not be sharded: it is the unsharded one). */
lathe_program *lt_compile(lathe_graph *g, int backend, const lt_target *t, const char *prefix, const lt_shard_opts *sh);

#endif
