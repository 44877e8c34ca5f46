/* lathe_compiler.h - Lathe's compiler passes on IR graphs: reverse-mode
 * autodiff at compile time and simplification.  Includes lathe.h.
 *
 * Worked example (the seed's Q.backward(gradient=external_grad)):
 *
 *     lathe_node *ext = lathe_const(g, LATHE_F32, LATHE_DIMS(2), (float[]){1, 1});
 *     lathe_backward(g, 1, &q, &ext);          // appends the backward pass as IR
 *     lathe_node *ga = lathe_grad(g, a);       // output "grad.a": 9 a^2
 *     lathe_graph *opt = lathe_simplify(g);    // DCE, CSE, folding, algebra
 *
 * The backward pass is ordinary IR: it prints, parses, evaluates, and can be
 * differentiated again (second order) with lathe_gradients. */
#ifndef LATHE_COMPILER_H
#define LATHE_COMPILER_H

#include "lathe.h"
#include "lathe_optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Prefix of gradient output names: the gradient of parameter "fc.weight" is
 * the output "grad.fc.weight". */
#define LATHE_GRAD_PREFIX "grad."

/* torch.autograd.grad: append to g the nodes computing the vector-Jacobian
 * product sum_i <outs[i], cots[i]> differentiated with respect to each
 * wrt[j]; grads[j] receives the gradient node, or NULL when wrt[j] does not
 * require grad or no path leads to it.  cots may be NULL, or have NULL
 * entries, for outputs with one element (the cotangent is then 1).  Only
 * values that require grad get gradient nodes: frozen parameters and
 * everything that depends only on them or on constants cost nothing.  A value
 * used several times gets the sum of its gradients.  An op without a rule is
 * an error naming it.  Returns the status; errors are recorded in g. */
lathe_status lathe_gradients(lathe_graph *g, int nout, lathe_node *const *outs,
                             lathe_node *const *cots, int nwrt, lathe_node *const *wrt,
                             lathe_node **grads);

/* loss.backward() / Q.backward(gradient=cot): gradients for every input and
 * parameter that requires grad, added as outputs named LATHE_GRAD_PREFIX +
 * name.  Leaves with no path from the outputs get no gradient output (as
 * PyTorch leaves .grad None).  cots as in lathe_gradients. */
lathe_status lathe_backward(lathe_graph *g, int nout, lathe_node *const *outs,
                            lathe_node *const *cots);

/* lathe_backward on the values marked with lathe_mark_backward (a text file's
 * `backward` statements), then forget the marks.  LATHE_ERR_ARG when there
 * are none. */
lathe_status lathe_backward_marked(lathe_graph *g);

/* The gradient output recorded by lathe_backward for an input or param; NULL
 * if it has none. */
lathe_node *lathe_grad(const lathe_graph *g, const lathe_node *leaf);

/* Simplified copy of g: dead-code elimination (nodes that reach no output or
 * update; named leaves are kept), common-subexpression elimination, constant
 * folding, and algebraic identities (x*1, x+0, x-0, x/1, double negation and
 * transpose, reshapes of reshapes, no-op reshapes, permutes and broadcasts,
 * sums of broadcasts).  Never changes a result: identities that could change
 * NaN or infinity (x*0) are applied only to constants.  The verifier runs on
 * the result.  Returns NULL only when out of memory; an error is recorded in
 * the returned graph. */
lathe_graph *lathe_simplify(const lathe_graph *g);

/* ---- compiled programs ------------------------------------------------------ */

/* How a program runs: LLVM-compiled fused kernels, or the reference
 * evaluator.  Both answer the same calls, so a user can compare them. */
typedef enum { LATHE_BACKEND_JIT, LATHE_BACKEND_EVAL } lathe_backend;

typedef struct lathe_program lathe_program;

/* Compile g (forward and, after lathe_backward, backward) into a program:
 * composites are decomposed, the graph simplified and fused into kernels,
 * memory planned into one arena, kernels lowered to LLVM IR, verified,
 * optimized at O3 for this CPU and JIT-compiled.  g must outlive the
 * program and not change.  NULL on failure, with the error recorded in g
 * (LLVM failures included). */
lathe_program *lathe_compile(lathe_graph *g, lathe_backend backend);
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
/* The program as the runtime runs it (kernels, copies, arena), for
 * lathe_trainer_main and other runtime drivers.  Valid until
 * lathe_program_free. */
const lathe_rt_program *lathe_program_rt(const lathe_program *p);
/* Size of the program's arena: its peak memory (0 for the evaluator). */
int64_t lathe_program_arena_bytes(const lathe_program *p);
/* Message of the last failed call on p; "" if none. */
const char *lathe_program_error(const lathe_program *p);

/* The program's named tensors, like model.named_parameters() plus inputs,
 * buffers and outputs: name, kind, dtype, shape, requires_grad, where it is
 * in the arena, where its gradient is.  Valid until lathe_program_free. */
int lathe_program_num_tensors(const lathe_program *p);
const lathe_rt_tensor *lathe_program_tensors(const lathe_program *p);
/* The arena those offsets refer to (both backends keep one). */
uint8_t *lathe_program_arena(lathe_program *p);
/* PyTorch's default initialization of every parameter and buffer, from a
 * seed (see lathe_rt_init). */
void lathe_program_init(lathe_program *p, uint64_t seed);
/* An optimizer over all the program's parameters (see lathe_optim_new):
 * after lathe_program_run, lathe_optim_step updates the ones that require
 * grad.  NULL with the message in lathe_program_error.  Free it before the
 * program. */
lathe_optimizer *lathe_program_optimizer(lathe_program *p, const lathe_optim_config *cfg);

/* ---- native trainers ------------------------------------------------------ */

/* A model ready for training: its training graph (forward with batch norm
 * in training mode, the one-element output "loss", backward added) and
 * optionally its evaluation graph (per-sample "loss" and, for classifiers,
 * "correct" outputs), at the same batch size. */
typedef struct {
    const char *name;            /* the model's name */
    const char *source;          /* the file it came from */
    int64_t batch;
    int ninputs;                 /* inputs in declaration order */
    const char *const *inputs;
    const bool *raw;             /* per input: pixels not scaled to [0, 1] (NULL: none raw) */
    const char *label;           /* the loss's target input, or NULL */
    bool classify;               /* the eval graph has "correct" */
    int64_t classes;             /* labels must lie in [0, classes); 0: not checked */
    lathe_graph *train, *eval;   /* eval may be NULL; both must outlive the call */
    const char *cpu;             /* LLVM CPU name ("znver4", "x86-64-v3"); NULL: this host */
} lathe_trainer_spec;

/* `lathe compile`: compile both graphs into object code for s->cpu, write
 * their tables as C with a main() calling lathe_trainer_main (and
 * lathe_trainer_step_main for `TRAINER step ...`), and link them with the
 * runtime library by the C compiler ($CC, default cc) into the executable
 * out.  The trainer needs no LLVM at run time.  An s->cpu that LLVM does not
 * know is refused (LATHE_ERR_ARG).  $LATHE_RUNTIME_LIB and
 * $LATHE_RUNTIME_INC override where the runtime library and its headers are
 * (default: this build's).  The message of a failure is in err. */
lathe_status lathe_build_trainer(const lathe_trainer_spec *s, const char *out, char *err, size_t errlen);

/* `lathe train` (step false) and `lathe step` (step true): JIT-compile both
 * graphs for this host and run lathe_trainer_main or lathe_trainer_step_main
 * on argv.  Returns the exit status. */
int lathe_trainer_jit_main(const lathe_trainer_spec *s, bool step, int argc, char **argv);

/* Print a compiler stage of g for `lathe dump`: "fused" (kernels, the nodes
 * fused into each, what they read, their iteration space), "plan" (every
 * buffer's offset, size and lifetime, and the total), "llvm" (the optimized
 * module) or "asm" (the host's machine code). */
lathe_status lathe_dump_stage(lathe_graph *g, const char *stage, FILE *out);

#ifdef __cplusplus
}
#endif
#endif
