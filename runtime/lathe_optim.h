/* lathe_optim.h - optimizers for a compiled program's parameters, in the
 * runtime (no IR, no LLVM): SGD, Adam and AdamW by PyTorch's rules
 * (optim.c).
 *
 * They work on the program's tensor table (lathe_rt_tensor, lathe_runtime.h):
 * a parameter that requires grad and has a gradient in the arena is updated;
 * a frozen one is left alone.  Gradients are overwritten by every run of the
 * program (they do not accumulate across runs as .grad does in PyTorch), so
 * there is no zero_grad to call: run, then step. */
#ifndef LATHE_OPTIM_H
#define LATHE_OPTIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lathe_runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { LATHE_SGD, LATHE_ADAM, LATHE_ADAMW } lathe_optim_kind;

typedef struct {
    lathe_optim_kind kind;
    double lr;
    double momentum, dampening;   /* SGD */
    bool nesterov;                /* SGD */
    double weight_decay;          /* SGD, Adam: added to the gradient; AdamW: decoupled */
    double beta1, beta2, eps;     /* Adam, AdamW */
    bool ieee_denormals;          /* false (default): flush-to-zero, as kernels run (runtime/fpenv.h) */
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
/* Free o and its state (the arena is the caller's).  NULL is allowed. */
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
/* The settings o was made with.  Owned by o. */
const lathe_optim_config *lathe_optim_get_config(const lathe_optimizer *o);

#ifdef __cplusplus
}
#endif
#endif
