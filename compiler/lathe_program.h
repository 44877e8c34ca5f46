/* lathe_program.h - compiling graphs into programs, running them, and
 * printing every stage of the compiler.  Includes lathe.h and the runtime's
 * tensor table and optimizers.
 *
 * Worked example (a graph with lathe_backward already appended):
 *
 *     lathe_program *p = lathe_compile(g, LATHE_BACKEND_JIT);
 *     if (!p) fprintf(stderr, "%s\n", lathe_graph_error(g));
 *     lathe_program_init(p, 0);                        // PyTorch's default init
 *     lathe_program_set(p, "x", x, sizeof x);
 *     lathe_program_run(p);                            // forward and backward
 *     lathe_program_get(p, "grad.fc.weight", gw, sizeof gw);
 *     lathe_program_free(p);
 *
 * The compiler's stages, in order (lathe_stage; `lathe dump --stage NAME`
 * prints each, and every compiled program is built by the same function):
 *
 *     traced      the graph as built by the C API or a description
 *     grad        the marked values differentiated (lathe_backward_marked)
 *     opt         simplified (lathe_simplify)
 *     decomposed  composites as primitives, simplified again: the node ids
 *                 that the kernels of the next stages cite
 *     fused       kernels: the nodes computed by each, what each reads
 *     plan        every buffer's place in the arena and its lifetime
 *     llvm        the kernels as LLVM IR, optimized
 *     asm         machine code for the target CPU
 *     jit         linked in process (programs only; nothing to print)
 *
 * Ownership: the caller keeps the graph; a program needs it until
 * lathe_program_free.  Errors are recorded in the graph (lathe_graph_error)
 * or the program (lathe_program_error); nothing aborts or exits. */
#ifndef LATHE_PROGRAM_H
#define LATHE_PROGRAM_H

#include <stdio.h>

#include "lathe.h"
#include "lathe_optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How a program runs: LLVM-compiled fused kernels, or the reference
 * evaluator.  Both answer the same calls, so a user can compare them. */
typedef enum { LATHE_BACKEND_JIT, LATHE_BACKEND_EVAL } lathe_backend;

/* The CPU that code is made for.  A zeroed struct (or NULL where one is
 * taken) means this host with all its features. */
typedef struct {
    const char *cpu;       /* LLVM's CPU name ("znver4", "skylake-avx512", "x86-64-v3"); NULL: this host */
    const char *features;  /* LLVM's feature string ("+avx2,-avx512f"), applied after the CPU's own (the
                            * host's, for the host); NULL or "": none */
    int vector_bytes;      /* 0: register tiles sized for the CPU's vector unit; 32 or 64: sized for that
                            * width whatever the CPU has (the code stays correct: LLVM splits or merges
                            * vectors), to test both kinds of tile on one machine */
    long long l2_bytes;    /* 0: cache blocks sized for the CPU's L2 (this host's, read from Linux; 512 KiB
                            * for a named CPU); else sized for that many bytes (the code stays correct) */
} lathe_target;

typedef enum {
    LATHE_STAGE_TRACED,
    LATHE_STAGE_GRAD,
    LATHE_STAGE_OPT,
    LATHE_STAGE_DECOMPOSED,
    LATHE_STAGE_FUSED,
    LATHE_STAGE_PLAN,
    LATHE_STAGE_LLVM,
    LATHE_STAGE_ASM,
    LATHE_STAGE_JIT,
} lathe_stage;
enum { LATHE_STAGE_COUNT = LATHE_STAGE_JIT + 1 };

/* "traced", "grad", ... "jit" (see above); NULL when out of range. */
const char *lathe_stage_name(lathe_stage s);
/* The stage named name; -1 when there is none. */
int lathe_stage_from_name(const char *name);

typedef struct lathe_program lathe_program;

/* Compile g into a program for this host.  The JIT backend runs the whole
 * pipeline (stages grad through jit): the marked values are differentiated
 * (g gains the backward pass), the graph is simplified, decomposed, fused
 * into kernels, planned into one arena, lowered to LLVM IR, optimized at
 * O3, compiled to machine code and linked in process.  The evaluator
 * backend stops after grad and runs g itself.  g must outlive the program
 * and not change.  NULL on failure, with the error recorded in g (LLVM
 * failures included).
 *
 * Machine code is cached on disk, keyed by the kernels' LLVM IR, the target
 * and LLVM's version (compiler/cache.c), so compiling the same graph again
 * skips LLVM's optimizer and code generation: $LATHE_CACHE_DIR, else
 * $XDG_CACHE_HOME/lathe, else ~/.cache/lathe; LATHE_CACHE_DIR=off (or
 * empty) turns it off.  A damaged entry is recompiled; the cache never makes
 * a compile fail. */
lathe_program *lathe_compile(lathe_graph *g, lathe_backend backend);
/* lathe_compile for the CPU that target describes (NULL: this host).  The
 * program runs only where that CPU's instructions do. */
lathe_program *lathe_compile_for(lathe_graph *g, lathe_backend backend, const lathe_target *target);
void lathe_program_free(lathe_program *p);
/* Copy data (in the tensor's dtype, nbytes = numel * dtype size) into the
 * input, param or buffer `name`.  Bindings persist across runs. */
lathe_status lathe_program_set(lathe_program *p, const char *name, const void *data, size_t nbytes);
/* Run once: every kernel, then the buffer updates.  Allocates nothing. */
lathe_status lathe_program_run(lathe_program *p);
/* Copy out the output `name` (gradients are outputs "grad.NAME"), or else the
 * input, param or buffer `name` (buffers after their updates). */
lathe_status lathe_program_get(lathe_program *p, const char *name, void *out, size_t nbytes);
/* Threads for runs (0: OpenMP's default).  Results are the same bits for any
 * count. */
void lathe_program_set_threads(lathe_program *p, int threads);
/* Denormal numbers in runs: false (the default) runs kernels with
 * flush-to-zero and denormals-are-zero (results and operands below the
 * smallest normal number, 1.2e-38 in f32, are zero: underflowing values
 * then cost nothing; runtime/fpenv.h); true keeps IEEE denormals, as the
 * evaluator does.  Optimizers from lathe_program_optimizer follow the
 * program's setting. */
void lathe_program_set_ieee_denormals(lathe_program *p, bool ieee);
/* The program as the runtime runs it (kernels, copies, arena), for
 * lathe_trainer_main and other runtime drivers.  Valid until
 * lathe_program_free. */
const lathe_rt_program *lathe_program_rt(const lathe_program *p);
/* Size of the program's memory plan: its peak memory (0 for the evaluator). */
int64_t lathe_program_arena_bytes(const lathe_program *p);
/* Message of the last failed call on p; "" if none. */
const char *lathe_program_error(const lathe_program *p);

/* The program's named tensors, like model.named_parameters() plus inputs,
 * buffers and outputs: name, kind, dtype, shape, requires_grad, where it is
 * in the arena, where its gradient is, how it is initialized (lathe_set_init,
 * or PyTorch's default for the layer that uses it: lathe_leaf_init_of).
 * Valid until lathe_program_free. */
int lathe_program_num_tensors(const lathe_program *p);
const lathe_rt_tensor *lathe_program_tensors(const lathe_program *p);
/* The arena those offsets refer to (both backends keep one). */
uint8_t *lathe_program_arena(lathe_program *p);
/* Initialize every parameter and buffer from a seed, as the table says
 * (see lathe_rt_init). */
void lathe_program_init(lathe_program *p, uint64_t seed);
/* An optimizer over all the program's parameters (see lathe_optim_new):
 * after lathe_program_run, lathe_optim_step updates the ones that require
 * grad.  It keeps IEEE denormals if cfg or the program asks for them.  NULL
 * with the message in lathe_program_error.  Free it before the program. */
lathe_optimizer *lathe_program_optimizer(lathe_program *p, const lathe_optim_config *cfg);

/* ---- dumps ---------------------------------------------------------------------- */

typedef enum { LATHE_DUMP_TEXT, LATHE_DUMP_DOT } lathe_dump_format;

/* `lathe dump`: run the pipeline on g up to stage, for target (NULL: this
 * host), and print what that stage produced to out - exactly what a
 * compiled program is built from.  Graph stages (traced through decomposed)
 * print as text IR that parses back, or as Graphviz DOT; "fused" prints the
 * target, then each kernel: the decomposed graph's nodes it computes,
 * forward (F) or backward (B), the buffers it reads, its iteration space and
 * register tiles; "plan" every buffer's offset, size and lifetime and the
 * total; "llvm" the optimized module; "asm" the target's assembly.  DOT is
 * for graph stages only, and "jit" has nothing to print (LATHE_ERR_ARG).
 * The grad stage differentiates g's marked values, if any, in g itself.
 * Errors are recorded in g. */
lathe_status lathe_dump(lathe_graph *g, lathe_stage stage, const lathe_target *target, lathe_dump_format format,
                        FILE *out);

/* lathe_dump of a data-parallel program (docs/INTERNALS.md), as `lathe
 * compile --shards S --ranks P` builds it: every input of g is per-sample
 * data with the batch on axis 0 (a trainer's graph); from the decomposed
 * stage on, every reduction over the batch is an ordered sum of `shards`
 * partials, and with procs > 1 the program is one process's part of procs:
 * its B/procs samples, all_gather nodes (communication steps in fused and
 * plan) before the sums.  local_bn: batch norm's statistics per process.
 * A graph that cannot be sharded for procs > 1 is an error
 * (LATHE_ERR_UNSUPPORTED, with the node and why); for one process it
 * prints the unsharded program. */
lathe_status lathe_dump_parallel(lathe_graph *g, lathe_stage stage, const lathe_target *target, int shards, int procs,
                                 bool local_bn, lathe_dump_format format, FILE *out);

#ifdef __cplusplus
}
#endif
#endif
