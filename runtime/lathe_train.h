/* lathe_train.h - parameters, initialization, freezing and optimizers for a
 * compiled program, in the runtime (no IR, no LLVM).
 *
 * A compiled program describes its tensors as plain data (lathe_rt_tensor):
 * name (PyTorch state_dict names: "conv1.weight", "bn1.running_mean"), kind,
 * dtype, shape, where it lives in the arena, whether it requires grad, where
 * its gradient is, and how PyTorch would initialize it.  The functions here
 * work on that table, so a JIT program and a native trainer share them.
 *
 * Gradients are overwritten by every run of the program (they do not
 * accumulate across runs as .grad does in PyTorch), so there is no zero_grad
 * to call: run, then step. */
#ifndef LATHE_TRAIN_H
#define LATHE_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "lathe_runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Same numbering as lathe_dtype. */
enum { LATHE_RT_F32, LATHE_RT_F64, LATHE_RT_I64, LATHE_RT_BOOL };
typedef enum { LATHE_RT_INPUT, LATHE_RT_PARAM, LATHE_RT_BUFFER, LATHE_RT_OUTPUT } lathe_rt_kind;

/* How PyTorch initializes a tensor by default. */
typedef enum {
    LATHE_INIT_NONE,     /* left as it is (inputs, outputs) */
    LATHE_INIT_UNIFORM,  /* uniform(-a, a): conv/linear weights (kaiming-uniform, a = sqrt(5)) and biases */
    LATHE_INIT_CONST,    /* every element a: batch-norm weight 1, bias 0, running_var 1, running_mean 0 */
} lathe_init_kind;

typedef struct {
    const char *name;
    lathe_rt_kind kind;
    int dtype;
    int rank;
    int64_t shape[6];
    int64_t numel;
    int64_t offset;        /* in the arena */
    bool requires_grad;    /* params: trainable; false: frozen */
    int64_t grad_offset;   /* params that get a gradient: its arena offset; else -1 */
    lathe_init_kind init;
    double init_a;
} lathe_rt_tensor;

/* The tensor named name (outputs included), or NULL. */
const lathe_rt_tensor *lathe_rt_find(const lathe_rt_tensor *ts, int n, const char *name);

/* Initialize every parameter and buffer as PyTorch's layers do by default,
 * from a seeded generator: the same seed gives the same bits, and a tensor's
 * values depend only on the seed and its name. */
void lathe_rt_init(uint8_t *arena, const lathe_rt_tensor *ts, int n, uint64_t seed);

/* ---- optimizers -------------------------------------------------------------- */

typedef enum { LATHE_SGD, LATHE_ADAM, LATHE_ADAMW } lathe_optim_kind;

typedef struct {
    lathe_optim_kind kind;
    double lr;
    double momentum, dampening;   /* SGD */
    bool nesterov;                /* SGD */
    double weight_decay;          /* SGD, Adam: added to the gradient; AdamW: decoupled */
    double beta1, beta2, eps;     /* Adam, AdamW */
} lathe_optim_config;

/* PyTorch's defaults: SGD(lr, momentum=0, dampening=0, weight_decay=0,
 * nesterov=False); Adam/AdamW(lr, betas=(0.9, 0.999), eps=1e-8,
 * weight_decay=0 for Adam and 0.01 for AdamW). */
lathe_optim_config lathe_sgd_config(double lr, double momentum);
lathe_optim_config lathe_adam_config(double lr);
lathe_optim_config lathe_adamw_config(double lr);

typedef struct lathe_optimizer lathe_optimizer;

/* An optimizer over every parameter of the table, like
 * torch.optim.SGD(model.parameters(), ...): it updates only the parameters
 * that require grad and got a gradient, exactly by PyTorch's rules (the
 * momentum buffer starts as the first gradient; Adam's bias corrections).
 * Its state (momentum buffers, Adam moments) is allocated here, once.  NULL
 * with a message in err on bad settings (negative lr, momentum, ...). */
lathe_optimizer *lathe_optim_new(const lathe_optim_config *cfg, uint8_t *arena, const lathe_rt_tensor *ts, int n,
                                 char *err, size_t errlen);
void lathe_optim_free(lathe_optimizer *o);
/* One update from the gradients in the arena (after a run). */
void lathe_optim_step(lathe_optimizer *o);
/* Steps taken so far. */
int64_t lathe_optim_steps(const lathe_optimizer *o);
/* Set the step count (checkpoint loading; it does not create momentum
 * buffers: lathe_optim_state's *exists flag does that). */
void lathe_optim_set_steps(lathe_optimizer *o, int64_t steps);
/* The state of the optimizer, for checkpoints: for parameter `name`, the
 * buffer `which` ("momentum_buffer" for SGD; "exp_avg", "exp_avg_sq" for
 * Adam/AdamW), as numel elements of the parameter's dtype; NULL if it has
 * none (frozen, or SGD without momentum, or before the first step for the
 * momentum buffer: *exists tells). */
void *lathe_optim_state(lathe_optimizer *o, const char *name, const char *which, bool **exists);
const lathe_optim_config *lathe_optim_get_config(const lathe_optimizer *o);

#ifdef __cplusplus
}
#endif
#endif
