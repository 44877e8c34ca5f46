/* lathe_trainer.h - the training driver shared by native trainers (`lathe
 * compile`) and `lathe train` (the JIT): flags, data, the training loop,
 * progress, evaluation, checkpoints and resuming, and `lathe step`.
 *
 * A compiled model is plain data: the training program (forward, backward
 * and buffer updates at a fixed batch), optionally an evaluation program
 * (batch norm on running statistics; per-sample "loss" and "correct"
 * outputs of B x k elements, k per sample: a sequence's tokens, and an
 * optional "weight" of the same size, 0 for targets to leave out; the
 * reported means are over every element counted), their tensor tables and
 * the constants to put in a fresh arena.
 * A native trainer's generated main() is one call:
 *
 *     int main(int argc, char **argv) { return lathe_trainer_main(&model, argc, argv); }
 *
 * so a native trainer and `lathe train` read the same flags and, for the
 * same machine code, give the same bits.  What the data flags do
 * (--normalize, --random-crop, --hflip, and the conversion of U8 and I32
 * data) is dataset.h's, for C programs that feed a model themselves:
 * lathe_ds_gather_input with a lathe_ds_normalize and a lathe_ds_augment.  Depends on the runtime only (no IR,
 * no LLVM). */
#ifndef LATHE_TRAINER_H
#define LATHE_TRAINER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "lathe_runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* bytes of data that a fresh arena holds at offset (constants of the graph) */
typedef struct {
    int64_t offset, bytes;
    const void *data;
} lathe_rt_const;

/* One compiled program: its kernels and copies (prog.arena NULL: the driver
 * allocates prog.arena_size bytes and copies the constants in; otherwise the
 * arena is used as it is), its named tensors. */
typedef struct {
    lathe_rt_program prog;
    const lathe_rt_tensor *tensors;
    int ntensors;
    const lathe_rt_const *consts;
    int nconsts;
} lathe_rt_compiled;

/* A model as its description declares it, apart from its programs: what
 * the driver needs to feed it data and to report on it.  The compiler's
 * lathe_trainer_spec describes a model with the same fields. */
typedef struct {
    const char *name;            /* the model's name, for messages */
    const char *source;          /* the description it was compiled from */
    int64_t batch;               /* the compiled batch size */
    int ninputs;                 /* the model's inputs in declaration order */
    const char *const *inputs;
    const bool *raw;             /* per input: integer pixel data is not scaled to [0, 1] (NULL: none raw) */
    const char *label;           /* the input that holds the loss's targets, or NULL */
    int64_t classes;             /* label values must lie in [0, classes); 0: not checked */
    bool classify;               /* evaluation reports accuracy ("correct" output) */
} lathe_model_info;

/* The training program of a data-parallel run on `procs` processes (docs/
 * INTERNALS.md): compiled for the local batch info.batch / procs, its batch
 * reductions gathered from every process (lathe_rt_gather) and summed in
 * the same order as the one-process program's shards, so that the run gives
 * the bits of one process. */
typedef struct {
    int procs;
    lathe_rt_compiled train;
} lathe_rt_ranked;

/* A compiled model: its description and its programs. */
typedef struct {
    lathe_model_info info;
    lathe_rt_compiled train;     /* outputs "loss" (one element) and the gradients */
    lathe_rt_compiled eval;      /* eval.tensors NULL: none */
    /* the batch reductions of train (and of every ranked program) are ordered
     * sums of this many shards of the batch (0 or 1: not sharded); a run on P
     * processes needs a ranked program for P, and P divides shards */
    int shards;
    bool local_bn;               /* batch norm's statistics per process (not synchronized) */
    const lathe_rt_ranked *ranked;
    int nranked;
} lathe_trainer_model;

/* The trainer's command line (see lathe_trainer_usage): train the model, print
 * progress on standard error and a summary on standard output.  Returns the
 * exit status: 0 done, 1 bad data, a failed load or save, or a NaN/Inf loss
 * (the message names the step; no checkpoint is written with it), 2 a bad
 * command line, 128 + the signal when interrupted (SIGINT, SIGTERM, SIGHUP:
 * the step finishes, the checkpoint of --save is written, the run can be
 * resumed with --load).
 *
 * Started by an MPI launcher as one of P > 1 processes (lathe_dist.h), it
 * trains data-parallel: lathe_dist_init (its message and status 1 when it
 * fails, as in a runtime built without MPI), the ranked program for P (none,
 * or P not dividing the batch or the shards: status 1, saying how to compile
 * for P), rank r taking samples [r B/P, (r+1) B/P) of every global batch
 * and micro-batch, in the order of one process; the run gives one process's
 * bits.  Every process reads the data and --load; rank 0 alone prints,
 * writes --log-file and takes the checkpoint's lock and saves.  The
 * processes agree on stopping before every update (a signal caught by any
 * of them stops all after the same step; a loss that is not finite stops
 * all before it) and evaluate a share of the test batches each.  A failed
 * all-gather, or a process that fails alone in the loop, ends the run with
 * lathe_dist_abort.  The function calls lathe_dist_finalize before it
 * returns.  --batch is the global batch. */
int lathe_trainer_main(const lathe_trainer_model *m, int argc, char **argv);

/* `lathe step`'s command line (--params, --batch, -o, the optimizer flags;
 * --help prints them): one training step whose results are written to a safetensors
 * file: "loss", the model's outputs, "grad.NAME" for every trainable
 * parameter, and every parameter and buffer after the step under its own
 * name.  Exit status as lathe_trainer_main.  One process: refused (status 1)
 * under a launcher that started several. */
int lathe_trainer_step_main(const lathe_trainer_model *m, int argc, char **argv);

/* `sample`'s command line (--load CK, --length, --temperature, --top-k,
 * --prompt, --seed, --threads; --help prints them): text from a byte-level
 * language model (trained on text:FILE), generated with the evaluation
 * program, printed on standard output.  Exit status as lathe_trainer_main.
 * One process, as lathe_trainer_step_main. */
int lathe_trainer_sample_main(const lathe_trainer_model *m, int argc, char **argv);

/* Usage text of the training flags (for --help of `lathe train` and of a
 * native trainer); prog names the command. */
void lathe_trainer_usage(FILE *out, const char *prog);

#ifdef __cplusplus
}
#endif
#endif
