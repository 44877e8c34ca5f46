/* test_dp_model.c - a native trainer written by hand, with the programs a
 * data-parallel compile would give it, for test_dp.sh: runtime/trainer.c's
 * data-parallel training tested without the compiler.
 *
 * The model is batch norm's problem in miniature: inputs x f32[N, 3] and
 * y f32[N, 1], parameters w f32[3] and b f32[1], a buffer running_mean
 * f32[3]; in training pred = w . (x - mu) + b with mu the batch's mean of
 * x (running_mean follows it, momentum 0.1), in evaluation with
 * running_mean; the loss is the mean of (pred - y)^2.  The batch is 12,
 * its reductions ordered sums of 6 shards of 2 samples (docs/INTERNALS.md):
 * each shard's partial from zero in sample order, then the partials in
 * shard order.  The program for P processes (P = 1, 2, 3) takes 12 / P
 * samples, computes its 6 / P shards' partials, and all-gathers them
 * (lathe_rt_gather) before the ordered sums: mu's partials as one block
 * per process (outer 1), the loss's and gradients' as [5][6 / P] (outer
 * 5, so that the trainer rearranges them), the bits of one process for
 * any P.  "local" programs take mu from their own samples (per-process
 * batch norm, lathe_trainer_model.local_bn): no gather of mu.
 *
 *   test_dp_model sync|local|one TRAINER-FLAGS...
 *        lathe_trainer_main with ranked programs for 2 and 3 processes,
 *        synchronized or local mu; "one": no ranked programs (a trainer
 *        compiled for one process)
 *   test_dp_model data OUT.safetensors N [NAN_AT]
 *        N samples of x and y (x[NAN_AT] NaN when given)
 *   test_dp_model step FLAGS...
 *        lathe_trainer_step_main (TRAINER step), which runs as one process
 *   test_dp_model images OUT.safetensors N
 *        N samples for test_dp.sh's description: "image" f32[N, 1, 8, 8]
 *        and "label" i64[N], 5 classes
 *   test_dp_model same A B
 *        exit 0 when the safetensors files A and B hold the same tensors,
 *        bit for bit (metadata aside), else 1 naming the first difference
 *   test_dp_model at CK
 *        print CK's trainer.step
 * Built twice (tests/meson.build): as the runtime is, and with dist.c
 * compiled without MPI (test_dp_model_nompi), as -Dmpi=disabled builds it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lathe_trainer.h"
#include "safetensors.h"

enum {
    D = 3,          /* features */
    B = 12,         /* the batch */
    S = 6,          /* shards */
    Z = B / S,      /* samples per shard */
    NV = 2 + D,     /* the loss's and gradients' partials per shard: loss, w, b */
};

/* Where a program's values lie (byte offsets) and what it computes. */
typedef struct {
    int procs;             /* the processes it is compiled for */
    bool local;            /* mu from this process's samples only */
    int64_t x, y, w, b, rm, gw, gb, loss;
    int64_t mu_mine, mu_all, mu, rm_next; /* mu's partials [S / P][D] and [S][D] */
    int64_t part_mine, part_all;          /* the other partials, [NV][S / P] and [NV][S] */
    int64_t size;
} layout;

static float *at(uint8_t *a, int64_t off) { return (float *)(a + off); }

static void plan(layout *l, int procs, bool local) {
    int64_t o = 0, s = S / procs, n = B / procs;
    l->procs = procs, l->local = local;
#define TAKE(f, floats) (l->f = o, o += 64 * (((int64_t)(floats) * 4 + 63) / 64))
    TAKE(x, n * D), TAKE(y, n), TAKE(w, D), TAKE(b, 1), TAKE(rm, D), TAKE(gw, D), TAKE(gb, 1), TAKE(loss, 1);
    TAKE(mu_mine, s * D), TAKE(mu, D), TAKE(rm_next, D), TAKE(part_mine, NV * s);
#undef TAKE
    /* one process: the gathers' destinations are their sources */
    l->mu_all = procs == 1 ? l->mu_mine : o;
    o += procs == 1 ? 0 : 64 * ((S * D * 4 + 63) / 64);
    l->part_all = procs == 1 ? l->part_mine : o;
    o += procs == 1 ? 0 : 64 * ((NV * S * 4 + 63) / 64);
    l->size = o;
}

/* kernels: every element in one call (range 1) */
static void mu_partials(const layout *l, uint8_t *a) {
    float *x = at(a, l->x), *p = at(a, l->mu_mine);
    for (int j = 0; j < S / l->procs; j++)
        for (int d = 0; d < D; d++) {
            float s = 0;
            for (int i = j * Z; i < (j + 1) * Z; i++) s += x[i * D + d];
            p[j * D + d] = s;
        }
}

static void mu_finish(const layout *l, uint8_t *a) {
    float *p = at(a, l->local ? l->mu_mine : l->mu_all), *mu = at(a, l->mu), *rm = at(a, l->rm), *next = at(a, l->rm_next);
    int shards = l->local ? S / l->procs : S;
    for (int d = 0; d < D; d++) {
        float s = 0;
        for (int j = 0; j < shards; j++) s += p[j * D + d];
        mu[d] = s / (float)(shards * Z);
        next[d] = 0.9f * rm[d] + 0.1f * mu[d];
    }
}

static void loss_partials(const layout *l, uint8_t *a) {
    float *x = at(a, l->x), *y = at(a, l->y), *w = at(a, l->w), *b = at(a, l->b), *mu = at(a, l->mu);
    float *p = at(a, l->part_mine);
    int s = S / l->procs;
    for (int j = 0; j < s; j++) {
        float acc[NV] = {0};
        for (int i = j * Z; i < (j + 1) * Z; i++) {
            float e = b[0] - y[i];
            for (int d = 0; d < D; d++) e += w[d] * (x[i * D + d] - mu[d]);
            acc[0] += e * e;
            for (int d = 0; d < D; d++) acc[1 + d] += e * (x[i * D + d] - mu[d]);
            acc[1 + D] += e;
        }
        for (int v = 0; v < NV; v++) p[v * s + j] = acc[v];
    }
}

static void loss_finish(const layout *l, uint8_t *a) {
    float *p = at(a, l->part_all), sums[NV];
    for (int v = 0; v < NV; v++) {
        float s = 0;
        for (int j = 0; j < S; j++) s += p[v * S + j];
        sums[v] = s;
    }
    at(a, l->loss)[0] = sums[0] / (float)B;
    for (int d = 0; d < D; d++) at(a, l->gw)[d] = 2 * sums[1 + d] / (float)B;
    at(a, l->gb)[0] = 2 * sums[1 + D] / (float)B;
}

/* the programs: 0 one process, 1 and 2 for 2 and 3 processes, 3 and 4 the
 * same with local mu */
enum { NPROGS = 5 };
static layout L[NPROGS];

#define KERNELS(i)                                                                              \
    static void mu_partials_##i(uint8_t *a, int64_t b, int64_t e) { (void)b, (void)e, mu_partials(&L[i], a); } \
    static void mu_finish_##i(uint8_t *a, int64_t b, int64_t e) { (void)b, (void)e, mu_finish(&L[i], a); } \
    static void loss_partials_##i(uint8_t *a, int64_t b, int64_t e) { (void)b, (void)e, loss_partials(&L[i], a); } \
    static void loss_finish_##i(uint8_t *a, int64_t b, int64_t e) { (void)b, (void)e, loss_finish(&L[i], a); }
KERNELS(0)
KERNELS(1)
KERNELS(2)
KERNELS(3)
KERNELS(4)
static const lathe_kernel_fn kernel_fns[NPROGS][4] = {
#define ROW(i) {mu_partials_##i, mu_finish_##i, loss_partials_##i, loss_finish_##i}
    ROW(0), ROW(1), ROW(2), ROW(3), ROW(4)
#undef ROW
};

enum { MAXK = 8, NT = 6 };
static lathe_rt_kernel kernels[NPROGS][MAXK];
static lathe_rt_gather gathers[NPROGS][2];
static lathe_rt_copy copies[NPROGS][1];
static lathe_rt_tensor tensors[NPROGS][NT];

static lathe_rt_tensor tensor(const char *name, lathe_rt_kind kind, int rank, int64_t d0, int64_t d1, int64_t offset) {
    lathe_rt_tensor t = {.name = name, .kind = kind, .dtype = LATHE_RT_F32, .rank = rank, .shape = {d0, d1},
                         .numel = (rank > 0 ? d0 : 1) * (rank > 1 ? d1 : 1), .offset = offset, .grad_offset = -1};
    return t;
}

/* Program i as the driver's lathe_rt_compiled. */
static lathe_rt_compiled build(int i, int procs, bool local) {
    layout *l = &L[i];
    plan(l, procs, local);
    int64_t n = B / procs, s = S / procs;
    int nk = 0, ng = 0;
    kernels[i][nk++] = (lathe_rt_kernel){kernel_fns[i][0], 1};
    if (procs > 1 && !local) {
        gathers[i][ng++] = (lathe_rt_gather){.kernel = nk, .wait = nk + 1, .src = l->mu_mine, .dst = l->mu_all, .outer = 1,
                                             .bytes = s * D * 4, .parts = procs};
        kernels[i][nk++] = (lathe_rt_kernel){NULL, 1}; /* start */
        kernels[i][nk++] = (lathe_rt_kernel){NULL, 1}; /* wait */
    }
    kernels[i][nk++] = (lathe_rt_kernel){kernel_fns[i][1], 1};
    kernels[i][nk++] = (lathe_rt_kernel){kernel_fns[i][2], 1};
    if (procs > 1) {
        gathers[i][ng++] = (lathe_rt_gather){.kernel = nk, .wait = nk + 1, .src = l->part_mine, .dst = l->part_all,
                                             .outer = NV, .bytes = s * 4, .parts = procs};
        kernels[i][nk++] = (lathe_rt_kernel){NULL, 1};
        kernels[i][nk++] = (lathe_rt_kernel){NULL, 1};
    }
    kernels[i][nk++] = (lathe_rt_kernel){kernel_fns[i][3], 1};
    copies[i][0] = (lathe_rt_copy){l->rm_next, l->rm, D * 4};
    lathe_rt_tensor *t = tensors[i];
    t[0] = tensor("x", LATHE_RT_INPUT, 2, n, D, l->x);
    t[1] = tensor("y", LATHE_RT_INPUT, 2, n, 1, l->y);
    t[2] = tensor("w", LATHE_RT_PARAM, 1, D, 0, l->w);
    t[2].requires_grad = true, t[2].grad_offset = l->gw, t[2].init = LATHE_INIT_UNIFORM, t[2].init_a = 0.5;
    t[3] = tensor("b", LATHE_RT_PARAM, 1, 1, 0, l->b);
    t[3].requires_grad = true, t[3].grad_offset = l->gb, t[3].init = LATHE_INIT_CONST, t[3].init_a = 0.25;
    t[4] = tensor("running_mean", LATHE_RT_BUFFER, 1, D, 0, l->rm);
    t[4].init = LATHE_INIT_CONST;
    t[5] = tensor("loss", LATHE_RT_OUTPUT, 0, 0, 0, l->loss);
    lathe_rt_program p = {.arena_size = l->size, .kernels = kernels[i], .nkernels = nk, .copies = copies[i],
                          .ncopies = 1, .gathers = ng ? gathers[i] : NULL, .ngathers = ng};
    return (lathe_rt_compiled){p, t, NT, NULL, 0};
}

/* the evaluation program, at the whole batch: per-sample loss and correct */
static struct {
    int64_t x, y, w, b, rm, loss, correct, size;
} E = {0, 64 * 3, 64 * 4, 64 * 5, 64 * 6, 64 * 7, 64 * 8, 64 * 9};

static void eval_kernel(uint8_t *a, int64_t b0, int64_t e0) {
    (void)b0, (void)e0;
    float *x = at(a, E.x), *y = at(a, E.y), *w = at(a, E.w), *b = at(a, E.b), *rm = at(a, E.rm);
    for (int i = 0; i < B; i++) {
        float e = b[0] - y[i];
        for (int d = 0; d < D; d++) e += w[d] * (x[i * D + d] - rm[d]);
        at(a, E.loss)[i] = e * e;
        at(a, E.correct)[i] = fabsf(e) < 0.5f;
    }
}

static const lathe_rt_kernel eval_kernels[] = {{eval_kernel, 1}};
static lathe_rt_tensor eval_tensors[7];

static lathe_rt_compiled build_eval(void) {
    lathe_rt_tensor *t = eval_tensors;
    t[0] = tensor("x", LATHE_RT_INPUT, 2, B, D, E.x);
    t[1] = tensor("y", LATHE_RT_INPUT, 2, B, 1, E.y);
    t[2] = tensor("w", LATHE_RT_PARAM, 1, D, 0, E.w);
    t[3] = tensor("b", LATHE_RT_PARAM, 1, 1, 0, E.b);
    t[4] = tensor("running_mean", LATHE_RT_BUFFER, 1, D, 0, E.rm);
    t[5] = tensor("loss", LATHE_RT_OUTPUT, 1, B, 0, E.loss);
    t[6] = tensor("correct", LATHE_RT_OUTPUT, 1, B, 0, E.correct);
    lathe_rt_program p = {.arena_size = E.size, .kernels = eval_kernels, .nkernels = 1};
    return (lathe_rt_compiled){p, t, 7, NULL, 0};
}

/* ---- helpers for the script -------------------------------------------------------- */

static uint64_t rng = 0x9E3779B97F4A7C15u;
static float uniform(void) { /* [-1, 1) */
    rng = rng * 6364136223846793005u + 1442695040888963407u;
    return (float)((rng >> 40) * 0x1p-24 * 2 - 1);
}

static int make_data(const char *path, long n, long nan_at) {
    float *x = malloc(sizeof *x * (size_t)n * D), *y = malloc(sizeof *y * (size_t)n);
    if (!x || !y) return 1;
    for (long i = 0; i < n; i++) {
        float t = 0.5f;
        for (int d = 0; d < D; d++) {
            x[i * D + d] = 3 * uniform() + (float)d;
            t += (float)(d + 1) * 0.3f * x[i * D + d];
        }
        y[i] = t + 0.1f * uniform();
        if (i == nan_at) x[i * D] = NAN;
    }
    lathe_st_tensor ts[2] = {{"x", LATHE_RT_F32, 2, {n, D}, x}, {"y", LATHE_RT_F32, 2, {n, 1}, y}};
    char err[512];
    int rc = lathe_st_write(path, ts, 2, NULL, NULL, 0, err, sizeof err);
    if (rc) fprintf(stderr, "test_dp_model data: %s\n", err);
    free(x);
    free(y);
    return rc ? 1 : 0;
}

static int make_images(const char *path, long n) {
    enum { PIXELS = 64, CLASSES = 5 };
    float *x = malloc(sizeof *x * (size_t)n * PIXELS);
    int64_t *y = malloc(sizeof *y * (size_t)n);
    if (!x || !y) return 1;
    for (long i = 0; i < n; i++) {
        y[i] = i % CLASSES;
        for (int k = 0; k < PIXELS; k++) /* a brighter band where the class is, and noise */
            x[i * PIXELS + k] = 0.5f + 0.25f * uniform() + (k / 8 % CLASSES == y[i] ? 0.3f : 0);
    }
    lathe_st_tensor ts[2] = {{"image", LATHE_RT_F32, 4, {n, 1, 8, 8}, x}, {"label", LATHE_RT_I64, 1, {n}, y}};
    char err[512];
    int rc = lathe_st_write(path, ts, 2, NULL, NULL, 0, err, sizeof err);
    if (rc) fprintf(stderr, "test_dp_model images: %s\n", err);
    free(x);
    free(y);
    return rc ? 1 : 0;
}

static int same(const char *pa, const char *pb) {
    char err[512];
    lathe_st_file *a = lathe_st_read(pa, err, sizeof err), *b = a ? lathe_st_read(pb, err, sizeof err) : NULL;
    int rc = 1;
    if (!a || !b) {
        fprintf(stderr, "test_dp_model same: %s\n", err);
        goto done;
    }
    if (lathe_st_count(a) != lathe_st_count(b)) {
        fprintf(stderr, "%s has %d tensors, %s %d\n", pa, lathe_st_count(a), pb, lathe_st_count(b));
        goto done;
    }
    for (int i = 0; i < lathe_st_count(a); i++) {
        const lathe_st_tensor *t = lathe_st_at(a, i), *u = lathe_st_find(b, t->name);
        size_t bytes = lathe_rt_dtype_size(t->dtype);
        for (int d = 0; d < t->rank; d++) bytes *= (size_t)t->shape[d];
        if (!u || u->dtype != t->dtype || u->rank != t->rank ||
            memcmp(u->shape, t->shape, sizeof *t->shape * (size_t)t->rank) || memcmp(u->data, t->data, bytes)) {
            fprintf(stderr, "%s: tensor %s differs from %s's\n", pa, t->name, pb);
            goto done;
        }
    }
    rc = 0;
done:
    lathe_st_free(a);
    lathe_st_free(b);
    return rc;
}

static int print_step(const char *path) {
    char err[512];
    lathe_st_file *f = lathe_st_read(path, err, sizeof err);
    const char *v = f ? lathe_st_meta(f, "trainer.step") : NULL;
    if (!v) fprintf(stderr, "test_dp_model at: %s\n", f ? "no trainer.step" : err);
    else printf("%s\n", v);
    lathe_st_free(f);
    return v ? 0 : 1;
}

int main(int argc, char **argv) {
    const char *usage = "usage: test_dp_model sync|local|one|step FLAGS... | data OUT N [NAN_AT] | images OUT N | "
                        "same A B | at CK\n";
    if (argc < 2) return fputs(usage, stderr), 2;
    const char *mode = argv[1];
    if (!strcmp(mode, "data") && (argc == 4 || argc == 5))
        return make_data(argv[2], atol(argv[3]), argc == 5 ? atol(argv[4]) : -1);
    if (!strcmp(mode, "images") && argc == 4) return make_images(argv[2], atol(argv[3]));
    if (!strcmp(mode, "same") && argc == 4) return same(argv[2], argv[3]);
    if (!strcmp(mode, "at") && argc == 3) return print_step(argv[2]);
    bool local = !strcmp(mode, "local");
    if (!local && strcmp(mode, "sync") && strcmp(mode, "one") && strcmp(mode, "step")) return fputs(usage, stderr), 2;
    static lathe_rt_ranked ranked[2];
    lathe_trainer_model m = {
        .info = {.name = "dp_toy", .source = "dp_toy.lathe", .batch = B, .ninputs = 2,
                 .inputs = (const char *const[]){"x", "y"}, .classify = true},
        .train = build(0, 1, false), .eval = build_eval(), .shards = S, .local_bn = local, .ranked = ranked,
        .nranked = strcmp(mode, "one") ? 2 : 0};
    ranked[0] = (lathe_rt_ranked){2, build(local ? 3 : 1, 2, local)};
    ranked[1] = (lathe_rt_ranked){3, build(local ? 4 : 2, 3, local)};
    argv[1] = argv[0];
    return !strcmp(mode, "step") ? lathe_trainer_step_main(&m, argc - 1, argv + 1)
                                 : lathe_trainer_main(&m, argc - 1, argv + 1);
}
