/* jit.h - compiled programs inside the compiler (jit.c, aot.c). */
#ifndef LATHE_JIT_H
#define LATHE_JIT_H

#include <llvm-c/LLJIT.h>

#include "kernel.h"
#include "lathe_compiler.h"
#include "lathe_runtime.h"

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
    const char *cpu;           /* LLVM CPU name; NULL: this host */
    const char *prefix;        /* kernel symbols: prefix + index; NULL: "lathe_k" */
    char err[1024];
    int threads;
    lathe_rt_tensor *tensors;
    int ntensors;
    const lathe_node **tnode;  /* per tensor: its node in g */
    /* JIT and objects */
    lt_fused *f;
    LLVMOrcLLJITRef jit;
    lathe_rt_program rt;       /* rt.arena is the arena of both backends */
    lathe_rt_kernel *kernels;  /* objects: fn NULL */
    lathe_rt_copy *copies;
    LLVMMemoryBufferRef objs[64]; /* objects: one per part, kernels in order */
    int nobjs;
    /* evaluator */
    lathe_eval *ev;
};

/* lathe_compile for a chosen CPU and kernel symbol prefix; backend
 * LT_BACKEND_OBJECT emits PIC objects (p->objs) instead of JIT-linking. */
lathe_program *lt_compile(lathe_graph *g, int backend, const char *cpu, const char *prefix);

#endif
