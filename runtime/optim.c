/* optim.c - optimizers, following PyTorch's update rules line by line
 * (torch/optim/sgd.py, adam.py, adamw.py, 1.13), computed in the parameter's
 * own dtype as PyTorch does. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stdatomic.h>

#include "fpenv.h"
#include "lathe_optim.h"

lathe_optim_config lathe_sgd_config(double lr, double momentum) {
    return (lathe_optim_config){.kind = LATHE_SGD, .lr = lr, .momentum = momentum};
}
lathe_optim_config lathe_adam_config(double lr) {
    return (lathe_optim_config){.kind = LATHE_ADAM, .lr = lr, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
}
lathe_optim_config lathe_adamw_config(double lr) {
    lathe_optim_config c = lathe_adam_config(lr);
    c.kind = LATHE_ADAMW;
    c.weight_decay = 0.01;
    return c;
}

typedef struct {
    const lathe_rt_tensor *t;
    void *p;
    const void *g;
    void *s1, *s2;     /* momentum buffer, or exp_avg and exp_avg_sq */
    bool has_s1;       /* SGD: the momentum buffer exists (after the first step) */
} slot;

/* A step's work (see lathe_optim_step). */
enum {
    CHUNK = 16384,         /* elements updated per chunk */
    PARALLEL_MIN = 65536,  /* elements in all, below which one thread steps */
};

struct lathe_optimizer {
    lathe_optim_config cfg;
    slot *slots;
    int64_t *first_chunk;  /* slot i's chunks are [first_chunk[i], first_chunk[i + 1]) */
    int n;
    int64_t steps;
};

lathe_optimizer *lathe_optim_new(const lathe_optim_config *cfg, uint8_t *arena, const lathe_rt_tensor *ts, int n,
                                 char *err, size_t errlen) {
    const lathe_optim_config *c = cfg;
    const char *bad = NULL;
    if (!(c->lr >= 0)) bad = "learning rate must be >= 0";
    else if (!(c->weight_decay >= 0)) bad = "weight_decay must be >= 0";
    else if (c->kind == LATHE_SGD && !(c->momentum >= 0)) bad = "momentum must be >= 0";
    else if (c->kind == LATHE_SGD && c->nesterov && (c->momentum <= 0 || c->dampening != 0))
        bad = "nesterov momentum requires a momentum and zero dampening";
    else if (c->kind != LATHE_SGD && !(c->beta1 >= 0 && c->beta1 < 1 && c->beta2 >= 0 && c->beta2 < 1))
        bad = "betas must be in [0, 1)";
    else if (c->kind != LATHE_SGD && !(c->eps >= 0)) bad = "eps must be >= 0";
    if (bad) {
        snprintf(err, errlen, "optimizer: %s", bad);
        return NULL;
    }
    lathe_optimizer *o = calloc(1, sizeof *o);
    if (!o || !(o->slots = calloc((size_t)n + 1, sizeof *o->slots))) {
        free(o);
        snprintf(err, errlen, "optimizer: out of memory");
        return NULL;
    }
    o->cfg = *c;
    for (int i = 0; i < n; i++) {
        const lathe_rt_tensor *t = &ts[i];
        if (t->kind != LATHE_RT_PARAM || !t->requires_grad || t->grad_offset < 0) continue;
        if (t->dtype != LATHE_RT_F32 && t->dtype != LATHE_RT_F64) continue;
        slot *s = &o->slots[o->n++];
        s->t = t;
        s->p = arena + t->offset;
        s->g = arena + t->grad_offset;
        size_t bytes = (size_t)t->numel * lathe_rt_dtype_size(t->dtype) + 8;
        bool two = c->kind != LATHE_SGD;
        if (two || c->momentum != 0) s->s1 = calloc(1, bytes);
        if (two) s->s2 = calloc(1, bytes);
        if ((two || c->momentum != 0) && !s->s1) goto oom;
        if (two && !s->s2) goto oom;
    }
    if (!(o->first_chunk = calloc((size_t)o->n + 1, sizeof *o->first_chunk))) goto oom;
    for (int i = 0; i < o->n; i++)
        o->first_chunk[i + 1] = o->first_chunk[i] + (o->slots[i].t->numel + CHUNK - 1) / CHUNK;
    return o;
oom:
    lathe_optim_free(o);
    snprintf(err, errlen, "optimizer: out of memory for its state");
    return NULL;
}

void lathe_optim_free(lathe_optimizer *o) {
    if (!o) return;
    for (int i = 0; i < o->n; i++) free(o->slots[i].s1), free(o->slots[i].s2);
    free(o->slots);
    free(o->first_chunk);
    free(o);
}

/* The rules, once for float and once for double.  The arithmetic of every
 * element is PyTorch's, in its order, so the results are the same bits on
 * any thread count.  Each rule is a range function over elements [lo, hi)
 * with the settings that select PyTorch's branches as constant arguments:
 * inlined into a span function, each call is its own branch-free loop,
 * vectorized (omp simd: the arrays do not overlap).  Large tensors are split
 * across the threads, and every thread runs with the denormal mode of the
 * configuration (fpenv.h).
 *
 * A step is one parallel region over every parameter: the tensors are cut
 * into chunks of CHUNK elements, and the threads take chunks as they come
 * free (no chunk depends on another).  One region and no fixed shares: a
 * thread the system has descheduled (a busy machine) delays the step by
 * one chunk and the region's end, not once per tensor. */

typedef void span_fn(const lathe_optim_config *c, slot *s, int64_t step, int64_t lo, int64_t hi);

/* The weight decay of slot s's parameter (its group's). */
static double decay_of(const lathe_optim_config *c, const slot *s) {
    return c->no_decay_1d && s->t->rank <= 1 ? 0 : c->weight_decay;
}

#define SGD_RULE(T)                                                                                   \
    static inline __attribute__((always_inline)) void sgd_range_##T(                                  \
        T *restrict p, T *restrict buf, const T *restrict g, int64_t lo, int64_t hi, T lr, T wd, T mom, \
        T damp, const bool decay, const bool momentum, const bool first, const bool nesterov) {        \
        _Pragma("omp simd") for (int64_t i = lo; i < hi; i++) {                                       \
            T d = g[i];                                                                               \
            if (decay) d = d + wd * p[i];                                                             \
            if (momentum) {                                                                           \
                buf[i] = first ? d : mom * buf[i] + damp * d;                                         \
                d = nesterov ? d + mom * buf[i] : buf[i];                                             \
            }                                                                                         \
            p[i] = p[i] - lr * d;                                                                     \
        }                                                                                             \
    }                                                                                                 \
    static void sgd_span_##T(const lathe_optim_config *c, slot *s, int64_t step, int64_t lo, int64_t hi) { \
        (void)step;                                                                                   \
        T lr = (T)c->lr, wd = (T)decay_of(c, s), mom = (T)c->momentum, damp = (T)(1 - c->dampening);  \
        T *p = s->p, *buf = s->s1;                                                                    \
        const T *g = s->g;                                                                            \
        /* PyTorch's momentum buffer starts as the first gradient */                                  \
        bool first = !s->has_s1, nest = c->nesterov;                                                  \
        if (mom == 0) {                                                                               \
            if (wd != 0) sgd_range_##T(p, buf, g, lo, hi, lr, wd, mom, damp, true, false, false, false); \
            else sgd_range_##T(p, buf, g, lo, hi, lr, wd, mom, damp, false, false, false, false);     \
        } else if (wd != 0) {                                                                         \
            if (first && nest) sgd_range_##T(p, buf, g, lo, hi, lr, wd, mom, damp, true, true, true, true); \
            else if (first) sgd_range_##T(p, buf, g, lo, hi, lr, wd, mom, damp, true, true, true, false); \
            else if (nest) sgd_range_##T(p, buf, g, lo, hi, lr, wd, mom, damp, true, true, false, true); \
            else sgd_range_##T(p, buf, g, lo, hi, lr, wd, mom, damp, true, true, false, false);       \
        } else {                                                                                      \
            if (first && nest) sgd_range_##T(p, buf, g, lo, hi, lr, wd, mom, damp, false, true, true, true); \
            else if (first) sgd_range_##T(p, buf, g, lo, hi, lr, wd, mom, damp, false, true, true, false); \
            else if (nest) sgd_range_##T(p, buf, g, lo, hi, lr, wd, mom, damp, false, true, false, true); \
            else sgd_range_##T(p, buf, g, lo, hi, lr, wd, mom, damp, false, true, false, false);      \
        }                                                                                             \
    }
SGD_RULE(float)
SGD_RULE(double)

#define ADAM_RULE(T, SQRT)                                                                            \
    static inline __attribute__((always_inline)) void adam_range_##T(                                 \
        T *restrict p, T *restrict m, T *restrict v, const T *restrict g, int64_t lo, int64_t hi, T wd, T b1, \
        T b2, T omb1, T omb2, T shrink, T step_size, T bc2_sqrt, T eps, const bool decoupled, const bool decay) { \
        _Pragma("omp simd") for (int64_t i = lo; i < hi; i++) {                                       \
            T gi = g[i];                                                                              \
            if (decoupled) p[i] = p[i] * shrink;                                                      \
            else if (decay) gi = gi + wd * p[i];                                                      \
            m[i] = m[i] * b1 + omb1 * gi;                                                             \
            v[i] = v[i] * b2 + omb2 * gi * gi;                                                        \
            T denom = SQRT(v[i]) / bc2_sqrt + eps;                                                    \
            p[i] = p[i] - step_size * (m[i] / denom);                                                 \
        }                                                                                             \
    }                                                                                                 \
    static void adam_span_##T(const lathe_optim_config *c, slot *s, int64_t step, int64_t lo, int64_t hi) { \
        /* scalars are Python floats in PyTorch: computed in double, then cast */                    \
        double wdd = decay_of(c, s);                                                                  \
        T wd = (T)wdd, b1 = (T)c->beta1, b2 = (T)c->beta2, eps = (T)c->eps;                           \
        T omb1 = (T)(1 - c->beta1), omb2 = (T)(1 - c->beta2), shrink = (T)(1 - c->lr * wdd);          \
        double bc1 = 1 - pow(c->beta1, (double)step), bc2 = 1 - pow(c->beta2, (double)step);          \
        T step_size = (T)(c->lr / bc1), bc2_sqrt = (T)sqrt(bc2);                                      \
        T *p = s->p, *m = s->s1, *v = s->s2;                                                          \
        const T *g = s->g;                                                                            \
        if (c->kind == LATHE_ADAMW)                                                                   \
            adam_range_##T(p, m, v, g, lo, hi, wd, b1, b2, omb1, omb2, shrink, step_size, bc2_sqrt, eps, true, false); \
        else if (wd != 0)                                                                             \
            adam_range_##T(p, m, v, g, lo, hi, wd, b1, b2, omb1, omb2, shrink, step_size, bc2_sqrt, eps, false, true); \
        else                                                                                          \
            adam_range_##T(p, m, v, g, lo, hi, wd, b1, b2, omb1, omb2, shrink, step_size, bc2_sqrt, eps, false, false); \
    }
ADAM_RULE(float, sqrtf)
ADAM_RULE(double, sqrt)

void lathe_optim_step(lathe_optimizer *o) {
    o->steps++;
    const lathe_optim_config *c = &o->cfg;
    bool sgd = c->kind == LATHE_SGD;
    int64_t total = o->first_chunk[o->n];
    _Atomic int64_t next = 0;
#pragma omp parallel if (total * CHUNK > PARALLEL_MIN)
    {
        lt_fpenv fe = lt_fp_enter(c->ieee_denormals);
        int i = 0; /* the slot of ticket t: tickets only grow */
        for (int64_t t; (t = atomic_fetch_add_explicit(&next, 1, memory_order_relaxed)) < total;) {
            while (t >= o->first_chunk[i + 1]) i++;
            slot *s = &o->slots[i];
            bool f32 = s->t->dtype == LATHE_RT_F32;
            span_fn *span = sgd ? (f32 ? sgd_span_float : sgd_span_double) : (f32 ? adam_span_float : adam_span_double);
            int64_t lo = (t - o->first_chunk[i]) * CHUNK, hi = lo + CHUNK < s->t->numel ? lo + CHUNK : s->t->numel;
            span(c, s, o->steps, lo, hi);
        }
        lt_fp_leave(fe);
    }
    for (int i = 0; sgd && c->momentum != 0 && i < o->n; i++) o->slots[i].has_s1 = true;
}

int64_t lathe_optim_steps(const lathe_optimizer *o) { return o->steps; }
void lathe_optim_set_steps(lathe_optimizer *o, int64_t steps) { o->steps = steps; }
const lathe_optim_config *lathe_optim_get_config(const lathe_optimizer *o) { return &o->cfg; }

void lathe_optim_set_lr(lathe_optimizer *o, double lr) {
    if (o && lr >= 0) o->cfg.lr = lr;
}

void *lathe_optim_state(lathe_optimizer *o, const char *name, const char *which, bool **exists) {
    for (int i = 0; i < o->n; i++) {
        slot *s = &o->slots[i];
        if (strcmp(s->t->name, name) != 0) continue;
        if (o->cfg.kind == LATHE_SGD && !strcmp(which, "momentum_buffer") && s->s1) {
            if (exists) *exists = &s->has_s1;
            return s->s1;
        }
        if (o->cfg.kind != LATHE_SGD && !strcmp(which, "exp_avg")) return s->s1;
        if (o->cfg.kind != LATHE_SGD && !strcmp(which, "exp_avg_sq")) return s->s2;
    }
    return NULL;
}
