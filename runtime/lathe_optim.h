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
    bool no_decay_1d;             /* parameters of rank 0 or 1 (biases, normalization weights) get no
                                   * weight decay: the usual two parameter groups of a recipe */
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
/* The settings o was made with (the learning rate as last set).  Owned by o. */
const lathe_optim_config *lathe_optim_get_config(const lathe_optimizer *o);
/* The learning rate of the next steps (a schedule's, for example:
 * lathe_optim_set_lr(o, lathe_lr_at(&s, base, lathe_optim_steps(o))) before
 * each step).  A negative lr is ignored. */
void lathe_optim_set_lr(lathe_optimizer *o, double lr);

/* torch.nn.utils.clip_grad_norm_(parameters, max_norm): the 2-norm of the
 * gradients of every parameter of the table that has one (grad_offset >=
 * 0), summed in double parameter by parameter in table order (the same on
 * any thread count); every gradient is then multiplied by min(1, max_norm /
 * (norm + 1e-6)), PyTorch's epsilon, rounded to the gradient's dtype.
 * Returns the norm.  Call it after a run, before the optimizer's step. */
double lathe_clip_grad_norm(uint8_t *arena, const lathe_rt_tensor *ts, int n, double max_norm);
/* torch.nn.utils.clip_grad_value_: every gradient element clamped to
 * [-clip_value, clip_value]. */
void lathe_clip_grad_value(uint8_t *arena, const lathe_rt_tensor *ts, int n, double clip_value);

/* Gradient accumulation over K micro-batches: call after the run of
 * micro-batch k (0 <= k < K).  The gradients of the table's parameters are
 * summed into acc (the caller's, one double per gradient element, in table
 * order), and after the last micro-batch their mean is written back to the
 * gradients, which the optimizer then steps with: the step of the batch of
 * K times the size, with the memory of one micro-batch. */
void lathe_accumulate_grads(uint8_t *arena, const lathe_rt_tensor *ts, int n, double *acc, int64_t k, int64_t K);

/* Learning-rate schedules, as torch.optim.lr_scheduler's stepped once per
 * optimizer step: lathe_lr_at gives the learning rate of the update after
 * `step` updates, from the base rate lr (the optimizer's), in closed form:
 *   STEP         StepLR(step_size, gamma): lr gamma^floor(step / step_size)
 *   MULTISTEP    MultiStepLR(milestones, gamma): lr gamma^(milestones <= step)
 *   EXPONENTIAL  ExponentialLR(gamma): lr gamma^step
 *   COSINE       CosineAnnealingLR(t_max, eta_min): eta_min + (lr - eta_min)
 *                (1 + cos(pi step / t_max)) / 2 (periodic past t_max, as torch)
 *   ONECYCLE     OneCycleLR(max_lr, total_steps, pct_start, anneal_strategy
 *                'cos', div_factor, final_div_factor, three_phase); lr unused;
 *                the learning rate only (torch also cycles the momentum
 *                unless cycle_momentum=False)
 * With warmup > 0 (not ONECYCLE), SequentialLR([LinearLR(warmup_start, 1.0,
 * warmup), the schedule], milestones=[warmup]): a linear warm-up from
 * warmup_start lr over the first warmup steps, then the schedule from its
 * start.  CONSTANT (the zero value) keeps lr. */
typedef enum {
    LATHE_LR_CONSTANT,
    LATHE_LR_STEP,
    LATHE_LR_MULTISTEP,
    LATHE_LR_EXPONENTIAL,
    LATHE_LR_COSINE,
    LATHE_LR_ONECYCLE
} lathe_lr_kind;

enum { LATHE_LR_MAX_MILESTONES = 16 };

typedef struct {
    lathe_lr_kind kind;
    double gamma;                                  /* STEP, MULTISTEP, EXPONENTIAL */
    int64_t step_size;                             /* STEP */
    int64_t milestones[LATHE_LR_MAX_MILESTONES];   /* MULTISTEP, increasing */
    int nmilestones;
    int64_t t_max;                                 /* COSINE */
    double eta_min;                                /* COSINE: the floor */
    double max_lr, pct_start, div_factor, final_div_factor; /* ONECYCLE (torch: 0.3, 25, 1e4) */
    int64_t total_steps;                           /* ONECYCLE */
    bool three_phase;                              /* ONECYCLE */
    int64_t warmup;                                /* steps of linear warm-up; 0: none */
    double warmup_start;                           /* the warm-up's first factor (torch's LinearLR: 1/3) */
} lathe_lr_schedule;

double lathe_lr_at(const lathe_lr_schedule *s, double lr, int64_t step);

#ifdef __cplusplus
}
#endif
#endif
