/* pipeline.h - the compiler's stages in one place (pipeline.c).
 *
 * An lt_build holds what one compilation is for and what each stage has
 * produced so far; lt_build_run takes it up to a stage.  The JIT and the
 * evaluator backends (program.c), native trainers (aot.c) and `lathe dump`
 * all go through it, so a dump shows exactly what a program is built from.
 * Each stage is one call into the file that implements it; see
 * lt_build_run. */
#ifndef LATHE_PIPELINE_H
#define LATHE_PIPELINE_H

#include <llvm-c/LLJIT.h>
#include <llvm-c/TargetMachine.h>

#include "kernel.h"
#include "lathe_program.h"
#include "lower_llvm.h"
#include "lathe_runtime.h"
#include "shard.h"
#include "target.h"

/* cache.c: object code on disk, keyed by what it depends on. */
enum { LT_CACHE_KEY = 32 };
typedef struct {
    char dir[4096];
    bool on;
} lt_cache;
/* The cache's directory ($LATHE_CACHE_DIR, else $XDG_CACHE_HOME/lathe, else
 * ~/.cache/lathe; "" or "off": none), created if missing; false: no cache. */
bool lt_cache_open(lt_cache *c);
/* The key of mod's object code for target t. */
void lt_cache_key(const lt_target *t, bool pic, LLVMModuleRef mod, uint8_t key[LT_CACHE_KEY]);
/* The object cached under key (a new buffer the caller owns), or NULL. */
LLVMMemoryBufferRef lt_cache_get(const lt_cache *c, const uint8_t key[LT_CACHE_KEY]);
/* Cache obj under key; failures are ignored. */
void lt_cache_put(const lt_cache *c, const uint8_t key[LT_CACHE_KEY], LLVMMemoryBufferRef obj);

/* A slice of the kernels compiled as one LLVM module, in parallel with the
 * others (one per thread). */
typedef struct {
    int *kernels;                  /* the kernels the part defines, with every body they call (share.c) */
    int nkernels;
    LLVMContextRef ctx;            /* one context per part: parts compile on different threads */
    LLVMTargetMachineRef tm;
    LLVMModuleRef mod;             /* LLVM: the part's kernels, optimized */
    LLVMMemoryBufferRef code;      /* ASM: object code, or assembly text (asm_text) */
    bool cached;                   /* code came from the cache: mod is not optimized, nothing to emit */
    uint8_t key[LT_CACHE_KEY];     /* the cache key, with use_cache */
} lt_part;

typedef struct {
    /* what to build (set by the caller) */
    lathe_graph *g;                /* the traced graph (not owned; GRAD appends the backward pass to it) */
    const lt_target *target;       /* the CPU the code is for (not owned) */
    bool pic;                      /* code for an executable (aot.c), else for the JIT */
    bool asm_text;                 /* ASM emits assembly text (dumps), else object code */
    const char *prefix;            /* kernel symbols: prefix + index; NULL: "lathe_k" */
    int threads;                   /* parts compiled in parallel (0: OpenMP's default) */
    bool use_cache;                /* object code from and to the cache (cache.c); not with asm_text */
    /* data parallelism (shard.c): shards > 1 or procs > 1 shards the batch
     * reductions of the decomposed graph, every input of the graph taken as
     * per-sample data with the batch on axis 0 (a trainer's graph) */
    lt_shard_opts shard;
    lt_cache cache;
    int cache_hits;                /* parts whose code came from the cache */
    /* what the stages produced (owned; lt_build_free frees them) */
    int done;                      /* the last stage run (a lathe_stage); zeroed: TRACED, the caller's */
    lathe_graph *opt;              /* OPT: g simplified */
    lathe_graph *dec;              /* DECOMPOSED: opt with composites decomposed, simplified */
    lt_fused *f;                   /* FUSED: dec's kernels; PLAN: their buffers' offsets (f->plan) */
    lt_bodies bodies;              /* LLVM: which kernels share a body of code */
    lt_part *parts;                /* LLVM and ASM, nparts of them */
    int nparts;
    LLVMOrcLLJITRef jit;           /* JIT: the linked code */
    lathe_kernel_fn *fns;          /* JIT: kernel i's function, f->nk of them */
    char err[1024];                /* the message of a failed stage */
} lt_build;

/* Run the stages after b->done up to and including upto.  On failure
 * returns the status with the message in b->err; the products of the stages
 * that ran stay in b. */
lathe_status lt_build_run(lt_build *b, lathe_stage upto);
void lt_build_free(lt_build *b);
/* Free what a finished program no longer needs: the simplified graph and
 * the LLVM modules (the code, the JIT, the kernels and the decomposed graph
 * stay). */
void lt_build_trim(lt_build *b);

/* jit.c: the LLVM stages.  lt_codegen_lower finds the kernels that share a
 * body, splits the bodies into b->threads parts, and lowers and optimizes
 * each part (LLVM); lt_codegen_emit
 * makes each part's machine code (ASM); lt_jit_link links the objects in
 * process with ORC LLJIT and looks up every kernel (JIT). */
lathe_status lt_codegen_lower(lt_build *b);
lathe_status lt_codegen_emit(lt_build *b);
lathe_status lt_jit_link(lt_build *b);
/* Dispose of the parts' modules, contexts and target machines (keep: false)
 * or of everything codegen made (keep: the code and the JIT stay). */
void lt_codegen_free(lt_build *b, bool keep_code);

#endif
