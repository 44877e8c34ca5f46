/* schedule.c - the training recipes around the optimizer (lathe_optim.h):
 * learning-rate schedules as torch.optim.lr_scheduler's, in closed form,
 * gradient clipping as torch.nn.utils', and gradient accumulation. */
#include <math.h>

#define PI 3.14159265358979323846

#include "lathe_optim.h"

/* torch's CosineAnnealingLR(T_max, eta_min) after t steps from lr0 */
static double cosine(double lr0, double eta_min, int64_t t_max, int64_t t) {
    if (t_max <= 0) return lr0;
    return eta_min + (lr0 - eta_min) * (1 + cos(PI * (double)t / (double)t_max)) / 2;
}

/* torch's OneCycleLR with the cosine anneal, after t steps */
static double one_cycle(const lathe_lr_schedule *s, int64_t t) {
    double initial = s->max_lr / s->div_factor, min_lr = initial / s->final_div_factor;
    double total = (double)s->total_steps, p = s->pct_start;
    double ends[3], from[3], to[3];
    int n;
    if (s->three_phase) {
        n = 3;
        ends[0] = p * total - 1, from[0] = initial, to[0] = s->max_lr;
        ends[1] = 2 * p * total - 2, from[1] = s->max_lr, to[1] = initial;
        ends[2] = total - 1, from[2] = initial, to[2] = min_lr;
    } else {
        n = 2;
        ends[0] = p * total - 1, from[0] = initial, to[0] = s->max_lr;
        ends[1] = total - 1, from[1] = s->max_lr, to[1] = min_lr;
    }
    double start = 0;
    for (int i = 0; i < n; i++) {
        if ((double)t <= ends[i] || i == n - 1) {
            double pct = ((double)t - start) / (ends[i] - start);
            return to[i] + (from[i] - to[i]) / 2 * (cos(PI * pct) + 1);
        }
        start = ends[i];
    }
    return min_lr;
}

double lathe_lr_at(const lathe_lr_schedule *s, double lr, int64_t step) {
    if (!s || step < 0) return lr;
    if (s->kind == LATHE_LR_ONECYCLE) return one_cycle(s, step);
    if (s->warmup > 0) { /* SequentialLR([LinearLR(start, 1, warmup), schedule], [warmup]) */
        if (step < s->warmup)
            return lr * (s->warmup_start + (1 - s->warmup_start) * (double)step / (double)s->warmup);
        step -= s->warmup;
    }
    switch (s->kind) {
    case LATHE_LR_STEP: return s->step_size > 0 ? lr * pow(s->gamma, (double)(step / s->step_size)) : lr;
    case LATHE_LR_MULTISTEP: {
        int k = 0;
        for (int i = 0; i < s->nmilestones; i++) k += s->milestones[i] <= step;
        return lr * pow(s->gamma, k);
    }
    case LATHE_LR_EXPONENTIAL: return lr * pow(s->gamma, (double)step);
    case LATHE_LR_COSINE: return cosine(lr, s->eta_min, s->t_max, step);
    default: return lr;
    }
}

/* Gradient g of a parameter: its elements as doubles through get/put. */
static double grad_get(const lathe_rt_tensor *t, const uint8_t *arena, int64_t i) {
    const uint8_t *p = arena + t->grad_offset;
    return t->dtype == LATHE_RT_F32 ? ((const float *)(const void *)p)[i] : ((const double *)(const void *)p)[i];
}
static void grad_put(const lathe_rt_tensor *t, uint8_t *arena, int64_t i, double v) {
    uint8_t *p = arena + t->grad_offset;
    if (t->dtype == LATHE_RT_F32) ((float *)(void *)p)[i] = (float)v;
    else ((double *)(void *)p)[i] = v;
}
static bool has_grad(const lathe_rt_tensor *t) {
    return t->kind == LATHE_RT_PARAM && t->grad_offset >= 0 && (t->dtype == LATHE_RT_F32 || t->dtype == LATHE_RT_F64);
}

double lathe_clip_grad_norm(uint8_t *arena, const lathe_rt_tensor *ts, int n, double max_norm) {
    double sq = 0;
    for (int i = 0; i < n; i++)
        for (int64_t e = 0; has_grad(&ts[i]) && e < ts[i].numel; e++) {
            double v = grad_get(&ts[i], arena, e);
            sq += v * v;
        }
    double norm = sqrt(sq), coef = max_norm / (norm + 1e-6);
    if (coef < 1)
        for (int i = 0; i < n; i++) {
            double c = ts[i].dtype == LATHE_RT_F32 ? (double)(float)coef : coef;
            for (int64_t e = 0; has_grad(&ts[i]) && e < ts[i].numel; e++)
                grad_put(&ts[i], arena, e, grad_get(&ts[i], arena, e) * c);
        }
    return norm;
}

void lathe_clip_grad_value(uint8_t *arena, const lathe_rt_tensor *ts, int n, double clip_value) {
    for (int i = 0; i < n; i++)
        for (int64_t e = 0; has_grad(&ts[i]) && e < ts[i].numel; e++) {
            double v = grad_get(&ts[i], arena, e);
            grad_put(&ts[i], arena, e, v > clip_value ? clip_value : v < -clip_value ? -clip_value : v);
        }
}

void lathe_accumulate_grads(uint8_t *arena, const lathe_rt_tensor *ts, int n, double *acc, int64_t k, int64_t K) {
    int64_t j = 0;
    for (int i = 0; i < n; i++)
        for (int64_t e = 0; has_grad(&ts[i]) && e < ts[i].numel; e++, j++) {
            double v = grad_get(&ts[i], arena, e);
            acc[j] = k == 0 ? v : acc[j] + v;
            if (k + 1 == K) grad_put(&ts[i], arena, e, acc[j] / (double)K);
        }
}
