/* lathe_build.h - trainers from models: `lathe compile` (a standalone
 * native executable, aot.c) and `lathe train` / `lathe step` (the same
 * programs JIT-compiled in process), both driven by the runtime's trainer
 * (runtime/lathe_trainer.h).  Includes lathe_program.h. */
#ifndef LATHE_BUILD_H
#define LATHE_BUILD_H

#include <stdbool.h>
#include <stddef.h>

#include "lathe_program.h"
#include "lathe_trainer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The most process counts one native trainer carries programs for. */
enum { LATHE_MAX_RANKS = 8 };

/* A model ready for training: its training graph (forward with batch norm
 * in training mode, the one-element output "loss", marked for backward or
 * with the backward pass already added) and
 * optionally its evaluation graph (per-sample "loss" and, for classifiers,
 * "correct" outputs), at the same batch size. */
typedef struct {
    lathe_model_info info;       /* name, source, batch, inputs, label, classes (runtime/lathe_trainer.h) */
    lathe_graph *train, *eval;   /* eval may be NULL; both must outlive the call */
    lathe_target target;         /* lathe_build_trainer's CPU (zeroed: this host); the JIT runs on this host */
    /* Data parallelism (docs/INTERNALS.md).  Every reduction over the batch
     * (weight gradients, the loss, batch norm's statistics) is an ordered
     * sum of `shards` partial sums, each over B / shards consecutive
     * samples, so that P processes (P dividing shards) give the bits of one.
     * 0: lathe_default_shards(info.batch), or 1 for a graph whose values
     * mix the samples of the batch (it cannot be sharded); 1: none (one
     * process only).  An explicit count that does not divide the batch, or
     * for a graph that cannot be sharded, fails (LATHE_ERR_ARG,
     * LATHE_ERR_UNSUPPORTED). */
    int shards;
    bool local_bn;               /* batch norm's statistics per process (PyTorch DDP's default), not over the global batch */
    const int *ranks;            /* lathe_build_trainer: the process counts above 1 to compile a program for */
    int nranks;
} lathe_trainer_spec;

/* The default shard count of a batch of B samples: gcd(B, 12) (64: 4, for
 * 1, 2 or 4 processes; 48: 12, for 1, 2, 3, 4, 6 or 12). */
int lathe_default_shards(int64_t batch);

/* `lathe compile`: compile both graphs into object code for s->target, write
 * their tables as C with a main() calling lathe_trainer_main (and
 * lathe_trainer_step_main for `TRAINER step ...`), and link them with the
 * runtime library by the C compiler ($CC, default cc) into the executable
 * out.  The trainer needs no LLVM at run time.  A CPU or feature that LLVM
 * does not know is refused (LATHE_ERR_ARG).  The runtime library and its
 * headers' directory are $LATHE_RUNTIME_LIB and $LATHE_RUNTIME_INC when set;
 * else those installed beside the running program (bindir/../lib/...
 * /liblathe_runtime.a and bindir/../include/lathe, as `meson install` puts
 * them, so a moved installation works); else this build's, when the program
 * runs from its build directory; else those `pkg-config lathe-runtime`
 * names; else the call fails with LATHE_ERR_IO, saying where it looked.
 * The message of a failure is in err. */
lathe_status lathe_build_trainer(const lathe_trainer_spec *s, const char *out, char *err, size_t errlen);

/* What lathe_trainer_jit_main runs. */
typedef enum { LATHE_RUN_TRAIN, LATHE_RUN_STEP, LATHE_RUN_SAMPLE } lathe_run_kind;

/* `lathe train`, `lathe step` and `lathe sample`: JIT-compile both graphs for
 * this host and run lathe_trainer_main, lathe_trainer_step_main or
 * lathe_trainer_sample_main on argv.  Started by an MPI launcher as one of P
 * processes, training compiles the program for P (s->ranks is not used).
 * Returns the exit status. */
int lathe_trainer_jit_main(const lathe_trainer_spec *s, lathe_run_kind kind, int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
