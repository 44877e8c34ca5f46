/* test_train.c - parameters, initialization, freezing and the optimizers,
 * against hand-computed two-step sequences, on both backends; learning-rate
 * schedules, gradient clipping, parameter groups and gradient accumulation
 * against PyTorch's (tests/fixtures/make_*_fixtures.py). */
#include <math.h>
#include <string.h>

#include "lathe_compiler.h"
#include "lathe_desc.h"
#include "lathe_models.h"
#include "testutil.h"

/* loss = sum(w * x) + sum(b): grad w = x, grad b = 1 (both constant) */
static lathe_graph *linear_loss(lathe_dtype t, bool freeze_b) {
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_input(g, "x", t, LATHE_DIMS(3));
    lathe_node *w = lathe_param(g, "w", t, LATHE_DIMS(3), true);
    lathe_node *b = lathe_param(g, "b", t, LATHE_DIMS(2), !freeze_b);
    lathe_param(g, "unused", t, LATHE_DIMS(2), true); /* requires grad but gets none */
    lathe_node *loss = lathe_add(g, lathe_sum(g, lathe_mul(g, w, x), 0, NULL, false), lathe_sum(g, b, 0, NULL, false));
    lathe_output(g, "loss", loss);
    lathe_backward(g, 1, &loss, NULL);
    assert_graph_ok(g);
    return g;
}

static const double W0[3] = {1, -2, 0.5}, X[3] = {0.5, 1, -2}, B0[2] = {3, -1};

typedef struct {
    const char *label;
    lathe_optim_config cfg;
    double w2[3];   /* w after two steps, by hand */
    double b2[2];
} optim_case;

/* Hand derivations, g = x = (0.5, 1, -2) for w, g = 1 for b, lr = 0.1:
 * SGD, no momentum: p2 = p0 - 2 lr g.
 * momentum 0.9: buf1 = g, buf2 = 0.9 g + g = 1.9 g: p2 = p0 - 0.1 g - 0.19 g = p0 - 0.29 g.
 * dampening 0.5: buf2 = 0.9 g + 0.5 g = 1.4 g: p2 = p0 - 0.24 g.
 * nesterov: d1 = g + 0.9 g = 1.9 g, d2 = g + 0.9 * 1.9 g = 2.71 g: p2 = p0 - 0.461 g.
 * weight decay 0.1, no momentum: d = g + 0.1 p; p1 = p0 - 0.1 (g + 0.1 p0) = 0.99 p0 - 0.1 g;
 *   p2 = 0.99 p1 - 0.1 g = 0.9801 p0 - 0.199 g.
 * Adam with a constant gradient g: m_hat = g and v_hat = g^2, so every step
 * moves p by lr g / (|g| + eps) = lr sign(g) / (1 + eps/|g|):
 * p2 = p0 - 0.2 sign(g) / (1 + 1e-8/|g|), |g| = 0.5, 1, 2 for w and 1 for b.
 * AdamW with weight decay 0.01 first shrinks p by 1 - lr wd = 0.999:
 * p1 = 0.999 p0 - 0.1 sign(g) / (1 + eps/|g|), p2 = 0.999 p1 - the same. */
#define E 1e-8
#define A(g) (0.1 / (1 + E / (g)))
static const optim_case cases[] = {
    {"sgd", {LATHE_SGD, 0.1, 0, 0, false, 0, 0, 0, 0, false, false}, {1 - 0.1, -2 - 0.2, 0.5 + 0.4}, {3 - 0.2, -1 - 0.2}},
    {"sgd momentum", {LATHE_SGD, 0.1, 0.9, 0, false, 0, 0, 0, 0, false, false}, {1 - 0.145, -2 - 0.29, 0.5 + 0.58}, {3 - 0.29, -1 - 0.29}},
    {"sgd dampening", {LATHE_SGD, 0.1, 0.9, 0.5, false, 0, 0, 0, 0, false, false}, {1 - 0.12, -2 - 0.24, 0.5 + 0.48}, {3 - 0.24, -1 - 0.24}},
    {"sgd nesterov", {LATHE_SGD, 0.1, 0.9, 0, true, 0, 0, 0, 0, false, false}, {1 - 0.2305, -2 - 0.461, 0.5 + 0.922}, {3 - 0.461, -1 - 0.461}},
    {"sgd weight decay", {LATHE_SGD, 0.1, 0, 0, false, 0.1, 0, 0, 0, false, false},
     {0.9801 - 0.0995, -1.9602 - 0.199, 0.49005 + 0.398}, {2.9403 - 0.199, -0.9801 - 0.199}},
    {"adam", {LATHE_ADAM, 0.1, 0, 0, false, 0, 0.9, 0.999, E, false, false},
     {1 - 2 * A(0.5), -2 - 2 * A(1), 0.5 + 2 * A(2)}, {3 - 2 * A(1), -1 - 2 * A(1)}},
    /* the parameters here are 1-d: with the usual groups they get no decay, as Adam without it */
    {"adamw no decay on 1-d", {LATHE_ADAMW, 0.1, 0, 0, false, 0.01, 0.9, 0.999, E, false, true},
     {1 - 2 * A(0.5), -2 - 2 * A(1), 0.5 + 2 * A(2)}, {3 - 2 * A(1), -1 - 2 * A(1)}},
    {"adamw", {LATHE_ADAMW, 0.1, 0, 0, false, 0.01, 0.9, 0.999, E, false, false},
     {(1 * 0.999 - A(0.5)) * 0.999 - A(0.5), (-2 * 0.999 - A(1)) * 0.999 - A(1), (0.5 * 0.999 + A(2)) * 0.999 + A(2)},
     {(3 * 0.999 - A(1)) * 0.999 - A(1), (-1 * 0.999 - A(1)) * 0.999 - A(1)}},
};

static void test_optimizers_two_steps(void **state) {
    (void)state;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int be = 0; be < 2; be++)
            for (int t = LATHE_F32; t <= LATHE_F64; t++) {
                lathe_graph *g = linear_loss((lathe_dtype)t, false);
                lathe_program *p = lathe_compile(g, be ? LATHE_BACKEND_EVAL : LATHE_BACKEND_JIT);
                assert_non_null(p);
                lathe_optimizer *o = lathe_program_optimizer(p, &cases[c].cfg);
                assert_non_null(o);
                float f[3];
                for (int i = 0; i < 3; i++) f[i] = (float)X[i];
                if (t == LATHE_F32) {
                    lathe_program_set(p, "x", f, 12);
                    for (int i = 0; i < 3; i++) f[i] = (float)W0[i];
                    lathe_program_set(p, "w", f, 12);
                    lathe_program_set(p, "b", (float[]){3, -1}, 8);
                } else {
                    lathe_program_set(p, "x", X, 24);
                    lathe_program_set(p, "w", W0, 24);
                    lathe_program_set(p, "b", B0, 16);
                }
                for (int s = 0; s < 2; s++) {
                    assert_int_equal(lathe_program_run(p), LATHE_OK);
                    lathe_optim_step(o);
                }
                assert_int_equal(lathe_optim_steps(o), 2);
                double w[3], b[2], tol = t == LATHE_F32 ? 2e-6 : 1e-14;
                if (t == LATHE_F32) {
                    float fw[3], fb[2];
                    lathe_program_get(p, "w", fw, 12);
                    lathe_program_get(p, "b", fb, 8);
                    for (int i = 0; i < 3; i++) w[i] = fw[i];
                    for (int i = 0; i < 2; i++) b[i] = fb[i];
                } else {
                    lathe_program_get(p, "w", w, 24);
                    lathe_program_get(p, "b", b, 16);
                }
                for (int i = 0; i < 3; i++)
                    if (fabs(w[i] - cases[c].w2[i]) > tol * (1 + fabs(w[i])))
                        fail_msg("%s (%s, %s): w[%d] = %.17g, want %.17g", cases[c].label, be ? "eval" : "jit",
                                 lathe_dtype_name((lathe_dtype)t), i, w[i], cases[c].w2[i]);
                for (int i = 0; i < 2; i++)
                    if (fabs(b[i] - cases[c].b2[i]) > tol * (1 + fabs(b[i])))
                        fail_msg("%s: b[%d] = %.17g, want %.17g", cases[c].label, i, b[i], cases[c].b2[i]);
                lathe_optim_free(o);
                lathe_program_free(p);
                lathe_graph_free(g);
            }
}

/* Frozen parameters and parameters without a gradient are given to the
 * optimizer and left untouched, as in the seed's finetuning. */
/* The optimizer flushes denormals by default, as kernels do (fpenv.h), and
 * keeps them with ieee_denormals: SGD on p = 0 with the denormal gradient
 * 1e-39 and lr 0.5 leaves p at +0 (the gradient reads as zero), or gives
 * p = -(0.5 * 1e-39) in f32, a denormal.  A tensor past the size that is
 * split across threads checks both paths. */
static void test_optimizer_denormals(void **state) {
    (void)state;
    enum { SMALL = 8, LARGE = 70000 };
    for (int big = 0; big < 2; big++)
        for (int ieee = 0; ieee < 2; ieee++) {
            int64_t n = big ? LARGE : SMALL;
            uint8_t *arena = lathe_rt_alloc_arena(2 * n * (int64_t)sizeof(float));
            assert_non_null(arena);
            float *p = (float *)arena, *gr = p + n;
            for (int64_t i = 0; i < n; i++) p[i] = 0, gr[i] = 1e-39f;
            lathe_rt_tensor t = {.name = "w", .kind = LATHE_RT_PARAM, .dtype = LATHE_RT_F32, .rank = 1, .shape = {n},
                                 .numel = n, .offset = 0, .requires_grad = true, .grad_offset = n * (int64_t)sizeof(float)};
            lathe_optim_config cfg = lathe_sgd_config(0.5, 0);
            cfg.ieee_denormals = ieee;
            char err[256];
            lathe_optimizer *o = lathe_optim_new(&cfg, arena, &t, 1, err, sizeof err);
            assert_non_null(o);
            lathe_optim_step(o);
            float want = ieee ? -(0.5f * 1e-39f) : 0;
            for (int64_t i = 0; i < n; i++)
                if (p[i] != want || signbit(p[i]) != signbit(want))
                    fail_msg("%s, %lld elements: p[%lld] = %g, expected %g", ieee ? "IEEE" : "flushed", (long long)n,
                             (long long)i, p[i], want);
            if (ieee) assert_true(want < 0 && want > -1.1754944e-38f);
            lathe_optim_free(o);
            lathe_rt_free_arena(arena);
        }
}

static void test_frozen_untouched(void **state) {
    (void)state;
    lathe_graph *g = linear_loss(LATHE_F64, true);
    lathe_program *p = lathe_compile(g, LATHE_BACKEND_JIT);
    lathe_optim_config cfg = lathe_sgd_config(0.1, 0.9);
    cfg.weight_decay = 0.5; /* would move them if they were touched */
    lathe_optimizer *o = lathe_program_optimizer(p, &cfg);
    lathe_program_set(p, "x", X, 24);
    lathe_program_set(p, "w", W0, 24);
    lathe_program_set(p, "b", B0, 16);
    lathe_program_set(p, "unused", (double[]){7, 8}, 16);
    lathe_program_run(p);
    lathe_optim_step(o);
    double b[2], u[2], w[3];
    lathe_program_get(p, "b", b, 16);
    lathe_program_get(p, "unused", u, 16);
    lathe_program_get(p, "w", w, 24);
    assert_true(b[0] == 3 && b[1] == -1);
    assert_true(u[0] == 7 && u[1] == 8);
    assert_true(w[0] != 1);
    bool *exists;
    assert_null(lathe_optim_state(o, "b", "momentum_buffer", &exists));
    assert_non_null(lathe_optim_state(o, "w", "momentum_buffer", &exists));
    assert_true(*exists);
    lathe_optim_free(o);
    lathe_program_free(p);
    lathe_graph_free(g);
}

static void test_bad_config(void **state) {
    (void)state;
    lathe_graph *g = linear_loss(LATHE_F32, false);
    lathe_program *p = lathe_compile(g, LATHE_BACKEND_JIT);
    lathe_optim_config c = lathe_sgd_config(-1, 0);
    assert_null(lathe_program_optimizer(p, &c));
    assert_non_null(strstr(lathe_program_error(p), "learning rate must be >= 0"));
    c = lathe_sgd_config(0.1, 0);
    c.nesterov = true;
    assert_null(lathe_program_optimizer(p, &c));
    assert_non_null(strstr(lathe_program_error(p), "nesterov"));
    c = lathe_adam_config(0.1);
    c.beta1 = 1;
    assert_null(lathe_program_optimizer(p, &c));
    assert_non_null(strstr(lathe_program_error(p), "betas"));
    lathe_program_free(p);
    lathe_graph_free(g);
}

/* named_parameters() with requires_grad, PyTorch's default init, freezing
 * by prefix, on a reduced-width ResNet-18. */
static void test_resnet_params_and_init(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_input(g, "x", LATHE_F32, LATHE_DIMS(2, 3, 16, 16));
    lathe_resnet_config cfg = {LATHE_F32, 10, 4, true};
    lathe_node *y = lathe_resnet18(g, x, &cfg);
    assert_non_null(y);
    assert_int_equal(lathe_set_requires_grad_prefix(g, "layer1.", false), 12);
    lathe_output(g, "logits", y);
    lathe_program *p = lathe_compile(g, LATHE_BACKEND_JIT);
    assert_non_null(p);
    const lathe_rt_tensor *ts = lathe_program_tensors(p);
    int n = lathe_program_num_tensors(p), np = 0;
    const char *first[] = {"conv1.weight", "bn1.weight", "bn1.bias", "layer1.0.conv1.weight", "layer1.0.bn1.weight"};
    for (int i = 0; i < n; i++) {
        if (ts[i].kind != LATHE_RT_PARAM) continue;
        if (np < 5) assert_string_equal(ts[i].name, first[np]);
        assert_true(ts[i].requires_grad == (strncmp(ts[i].name, "layer1.", 7) != 0));
        np++;
    }
    assert_int_equal(np, 62); /* torchvision's resnet18 has 62 parameter tensors */
    assert_non_null(lathe_rt_find(ts, n, "layer2.0.downsample.0.weight"));
    assert_non_null(lathe_rt_find(ts, n, "layer4.1.bn2.num_batches_tracked"));
    lathe_program_init(p, 42);
    uint8_t *arena = lathe_program_arena(p);
    const lathe_rt_tensor *cw = lathe_rt_find(ts, n, "conv1.weight"), *fcb = lathe_rt_find(ts, n, "fc.bias");
    const lathe_rt_tensor *bw = lathe_rt_find(ts, n, "bn1.weight"), *rv = lathe_rt_find(ts, n, "bn1.running_var");
    double bound = 1 / sqrt(3 * 7 * 7), fcbound = 1 / sqrt(32);
    assert_true(fabs(cw->init_a - bound) < 1e-15);
    assert_true(fabs(fcb->init_a - fcbound) < 1e-15);
    const float *v = (const float *)(arena + cw->offset);
    double lo = 1, hi = -1;
    for (int64_t i = 0; i < cw->numel; i++) lo = fmin(lo, v[i]), hi = fmax(hi, v[i]);
    assert_true(lo >= -bound && hi <= bound && hi - lo > bound); /* spread over the range */
    for (int64_t i = 0; i < bw->numel; i++) assert_true(((const float *)(arena + bw->offset))[i] == 1.0f);
    for (int64_t i = 0; i < rv->numel; i++) assert_true(((const float *)(arena + rv->offset))[i] == 1.0f);
    /* same seed, same bits; another seed, other bits */
    float *copy = malloc((size_t)cw->numel * 4);
    memcpy(copy, v, (size_t)cw->numel * 4);
    lathe_program_init(p, 42);
    assert_memory_equal(copy, v, (size_t)cw->numel * 4);
    lathe_program_init(p, 43);
    assert_true(memcmp(copy, v, (size_t)cw->numel * 4) != 0);
    free(copy);
    lathe_program_free(p);
    lathe_graph_free(g);
}

/* lathe_set_init overrides the rule from the op that uses the leaf. */
static void test_explicit_init(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_input(g, "x", LATHE_F32, LATHE_DIMS(2, 3));
    lathe_node *w = lathe_param(g, "w", LATHE_F32, LATHE_DIMS(4, 3), true);
    lathe_node *b = lathe_param(g, "b", LATHE_F32, LATHE_DIMS(4), true);
    assert_int_equal(lathe_set_init(w, LATHE_LEAF_INIT_UNIFORM, 0.25), LATHE_OK);
    assert_int_equal(lathe_set_init(b, LATHE_LEAF_INIT_CONST, 0.5), LATHE_OK);
    assert_int_equal(lathe_set_init(x, LATHE_LEAF_INIT_CONST, 0.5), LATHE_ERR_ARG); /* not a param */
    lathe_graph_clear_error(g);
    assert_int_equal(lathe_set_init(w, LATHE_LEAF_INIT_UNIFORM, -1), LATHE_ERR_ARG);
    lathe_graph_clear_error(g);
    lathe_output(g, "y", lathe_linear(g, x, w, b));
    lathe_program *p = lathe_compile(g, LATHE_BACKEND_EVAL);
    assert_non_null(p);
    lathe_program_init(p, 7);
    const lathe_rt_tensor *ts = lathe_program_tensors(p);
    int n = lathe_program_num_tensors(p);
    const lathe_rt_tensor *tw = lathe_rt_find(ts, n, "w"), *tb = lathe_rt_find(ts, n, "b");
    assert_int_equal(tw->init, LATHE_INIT_UNIFORM);
    assert_true(tw->init_a == 0.25);
    const float *wv = (const float *)(lathe_program_arena(p) + tw->offset);
    for (int i = 0; i < 12; i++) assert_true(wv[i] >= -0.25f && wv[i] <= 0.25f);
    const float *bv = (const float *)(lathe_program_arena(p) + tb->offset);
    for (int i = 0; i < 4; i++) assert_true(bv[i] == 0.5f);
    lathe_program_free(p);
    lathe_graph_free(g);
}

/* Sample statistics of n draws that should be normal(0, sd), against
 * bounds of about 4 standard errors for these sizes: the mean, the standard
 * deviation, the share within one sd (a normal's 68.3%, a uniform's of the
 * same sd 57.7%), and tails past 3 sd (0.27% of a normal, none of such a
 * uniform) but none past 6. */
static void check_normal(const char *what, const double *v, int64_t n, double sd) {
    double s = 0, ss = 0;
    int64_t in1 = 0, past3 = 0, past6 = 0;
    for (int64_t i = 0; i < n; i++) {
        s += v[i];
        ss += v[i] * v[i];
        in1 += fabs(v[i]) < sd;
        past3 += fabs(v[i]) > 3 * sd;
        past6 += fabs(v[i]) > 6 * sd;
    }
    double mean = s / (double)n, std = sqrt(ss / (double)n - mean * mean), share = (double)in1 / (double)n;
    double se = 1 / sqrt((double)n);
    if (fabs(mean) > 4 * sd * se || fabs(std / sd - 1) > 3 * se || fabs(share - 0.6827) > 2 * se ||
        past3 < (int64_t)(0.0027 * (double)n / 3) || past6 > 0)
        fail_msg("%s: mean %g, sd %g (want %g), %.4f within 1 sd, %lld past 3 sd, %lld past 6 sd", what, mean, std, sd,
                 share, (long long)past3, (long long)past6);
}

/* A normal initializer, drawn by seed: an embedding's table (what an
 * index_select picks rows from) draws from normal(0, 1) by default, as
 * torch.nn.Embedding's weight; lathe_set_init's NORMAL from normal(0, sd).
 * The same seed gives the same bits, another seed others. */
static void test_normal_init(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *tok = lathe_input(g, "tokens", LATHE_I64, LATHE_DIMS(4));
    lathe_node *emb = lathe_param(g, "wte.weight", LATHE_F32, LATHE_DIMS(300, 48), true);
    lathe_node *w = lathe_param(g, "w", LATHE_F64, LATHE_DIMS(101, 99), true); /* an odd count: a lone last draw */
    assert_int_equal(lathe_set_init(w, LATHE_LEAF_INIT_NORMAL, -0.5), LATHE_ERR_ARG);
    lathe_graph_clear_error(g);
    assert_int_equal(lathe_set_init(w, LATHE_LEAF_INIT_NORMAL, 0.02), LATHE_OK);
    lathe_output(g, "h", lathe_index_select(g, emb, 0, tok));
    lathe_output(g, "s", lathe_sum(g, w, 0, NULL, false));
    assert_graph_ok(g);
    double a = 0;
    assert_int_equal(lathe_leaf_init_of(g, emb, &a), LATHE_LEAF_INIT_NORMAL);
    assert_true(a == 1);
    lathe_program *p = lathe_compile(g, LATHE_BACKEND_EVAL);
    assert_non_null(p);
    const lathe_rt_tensor *ts = lathe_program_tensors(p);
    int n = lathe_program_num_tensors(p);
    const lathe_rt_tensor *te = lathe_rt_find(ts, n, "wte.weight"), *tw = lathe_rt_find(ts, n, "w");
    assert_int_equal(te->init, LATHE_INIT_NORMAL);
    assert_int_equal(tw->init, LATHE_INIT_NORMAL);
    assert_true(tw->init_a == 0.02);
    const uint8_t *arena = lathe_program_arena(p);
    double *v = malloc(sizeof *v * (size_t)te->numel);
    float *copy = malloc(sizeof *copy * (size_t)te->numel);
    for (uint64_t seed = 1; seed <= 3; seed++) {
        lathe_program_init(p, seed);
        const float *ev = (const float *)(arena + te->offset);
        for (int64_t i = 0; i < te->numel; i++) v[i] = ev[i];
        check_normal("wte.weight", v, te->numel, 1);
        check_normal("w", (const double *)(arena + tw->offset), tw->numel, 0.02);
        if (seed == 1) memcpy(copy, ev, sizeof *copy * (size_t)te->numel);
        else assert_true(memcmp(copy, ev, sizeof *copy * (size_t)te->numel) != 0);
    }
    lathe_program_init(p, 1);
    assert_memory_equal(copy, arena + te->offset, sizeof *copy * (size_t)te->numel);
    free(v);
    free(copy);
    lathe_program_free(p);
    lathe_graph_free(g);
}

/* Learning-rate schedules against torch.optim.lr_scheduler's sequences
 * (tests/fixtures/make_lr_fixtures.py), 40 steps each, base lr 0.1. */
static void test_lr_schedules(void **state) {
    (void)state;
    lathe_st_file *f = read_fixture("lr_schedules.safetensors");
    lathe_lr_schedule cases[8] = {
        {.kind = LATHE_LR_STEP, .step_size = 3, .gamma = 0.5},
        {.kind = LATHE_LR_MULTISTEP, .milestones = {4, 7, 12}, .nmilestones = 3, .gamma = 0.3},
        {.kind = LATHE_LR_EXPONENTIAL, .gamma = 0.9},
        {.kind = LATHE_LR_COSINE, .t_max = 10, .eta_min = 0.001},
        {.kind = LATHE_LR_COSINE, .t_max = 30, .eta_min = 0.002, .warmup = 5, .warmup_start = 0.1},
        {.kind = LATHE_LR_STEP, .step_size = 5, .gamma = 0.7, .warmup = 4, .warmup_start = 1.0 / 3},
        {.kind = LATHE_LR_ONECYCLE, .max_lr = 0.5, .total_steps = 40, .pct_start = 0.3, .div_factor = 25,
         .final_div_factor = 1e4},
        {.kind = LATHE_LR_ONECYCLE, .max_lr = 0.5, .total_steps = 40, .pct_start = 0.25, .div_factor = 10,
         .final_div_factor = 100, .three_phase = true},
    };
    const char *names[8] = {"step", "multistep", "exponential", "cosine", "warmup_cosine", "warmup_step", "onecycle",
                            "onecycle_three_phase"};
    for (int c = 0; c < 8; c++) {
        const lathe_st_tensor *t = lathe_st_find(f, names[c]);
        if (!t) fail_msg("fixture has no '%s'", names[c]);
        for (int64_t s = 0; s < t->shape[0]; s++) {
            double want = ((const double *)t->data)[s], got = lathe_lr_at(&cases[c], 0.1, s);
            if (fabs(got - want) > 1e-12 * fmax(fabs(want), 1e-3))
                fail_msg("%s: step %lld: lr %.17g, torch %.17g", names[c], (long long)s, got, want);
        }
    }
    lathe_st_free(f);
    /* an optimizer steps with the rate it is given */
    lathe_optim_config cfg = lathe_sgd_config(0.1, 0);
    float w = 1, gw = 2;
    lathe_rt_tensor ts[2] = {{.name = "w", .kind = LATHE_RT_PARAM, .dtype = LATHE_RT_F32, .rank = 1, .shape = {1},
                              .numel = 1, .offset = 0, .requires_grad = true, .grad_offset = 64}};
    uint8_t arena[128] = {0};
    memcpy(arena, &w, 4);
    memcpy(arena + 64, &gw, 4);
    char err[256];
    lathe_optimizer *o = lathe_optim_new(&cfg, arena, ts, 1, err, sizeof err);
    assert_non_null(o);
    lathe_optim_set_lr(o, 0.25);
    lathe_optim_step(o);
    memcpy(&w, arena, 4);
    assert_true(w == 0.5f); /* 1 - 0.25 * 2 */
    assert_true(lathe_optim_get_config(o)->lr == 0.25);
    lathe_optim_set_lr(o, -1); /* ignored */
    assert_true(lathe_optim_get_config(o)->lr == 0.25);
    lathe_optim_free(o);
}

/* Gradient clipping against torch.nn.utils' clip_grad_norm_ and
 * clip_grad_value_ (tests/fixtures/make_clip_fixtures.py). */
static void test_clip_grads(void **state) {
    (void)state;
    lathe_st_file *f = read_fixture("clip_grads.safetensors");
    const char *names[3] = {"a", "b", "c"};
    lathe_rt_tensor ts[3];
    int64_t off = 0;
    for (int i = 0; i < 3; i++) {
        char key[32];
        snprintf(key, sizeof key, "grad.%s", names[i]);
        const lathe_st_tensor *g = lathe_st_find(f, key);
        assert_non_null(g);
        ts[i] = (lathe_rt_tensor){.name = names[i], .kind = LATHE_RT_PARAM, .dtype = LATHE_RT_F32, .rank = g->rank,
                                  .requires_grad = true, .offset = -1};
        memcpy(ts[i].shape, g->shape, sizeof g->shape[0] * (size_t)g->rank);
        ts[i].numel = 1;
        for (int d = 0; d < g->rank; d++) ts[i].numel *= g->shape[d];
        ts[i].grad_offset = off;
        off += ts[i].numel * 4;
    }
    uint8_t *arena = malloc((size_t)off);
    const char *cases[3] = {"norm", "small", "value"};
    for (int c = 0; c < 3; c++) {
        for (int i = 0; i < 3; i++) {
            char key[32];
            snprintf(key, sizeof key, "grad.%s", names[i]);
            memcpy(arena + ts[i].grad_offset, lathe_st_find(f, key)->data, (size_t)ts[i].numel * 4);
        }
        if (c == 2) lathe_clip_grad_value(arena, ts, 3, 0.3);
        else {
            double norm = lathe_clip_grad_norm(arena, ts, 3, c == 0 ? 1.0 : 100.0);
            double want = *(const double *)lathe_st_find(f, "total_norm")->data;
            if (fabs(norm - want) > 1e-6 * want) fail_msg("total norm %.9g, torch %.9g", norm, want);
        }
        for (int i = 0; i < 3; i++) {
            char key[32];
            snprintf(key, sizeof key, "%s.%s", cases[c], names[i]);
            const float *want = lathe_st_find(f, key)->data, *got = (const float *)(const void *)(arena + ts[i].grad_offset);
            for (int64_t e = 0; e < ts[i].numel; e++) {
                double tol = c == 0 ? 1e-6 * fabs(want[e]) + 1e-9 : 0; /* the norm is summed in another order */
                if (fabs(got[e] - want[e]) > tol) fail_msg("%s[%lld]: %.9g, torch %.9g", key, (long long)e, got[e], want[e]);
            }
        }
    }
    free(arena);
    lathe_st_free(f);
    /* accumulation: the mean of three micro-batches' gradients, after the last */
    float g[2];
    uint8_t *ar = (uint8_t *)g;
    lathe_rt_tensor t1 = {.name = "w", .kind = LATHE_RT_PARAM, .dtype = LATHE_RT_F32, .rank = 1, .shape = {2}, .numel = 2,
                          .offset = -1, .requires_grad = true, .grad_offset = 0};
    double acc[2];
    const float micro[3][2] = {{1, -2}, {2, 4}, {6, 1}};
    for (int k = 0; k < 3; k++) {
        memcpy(g, micro[k], sizeof g);
        lathe_accumulate_grads(ar, &t1, 1, acc, k, 3);
        if (k < 2) assert_true(g[0] == micro[k][0] && g[1] == micro[k][1]); /* untouched until the last */
    }
    assert_true(g[0] == 3.0f && g[1] == 1.0f);
}

/* ---- recipes against PyTorch: parameter groups, gradient accumulation ---- */

/* tests/fixtures/recipes.lathe (conv, batch norm, linear, layer norm,
 * linear) against the same network in PyTorch, recipes.safetensors from
 * tests/fixtures/make_recipe_fixtures.py: its start, its 24 samples, and
 * the parameters (and batch-norm buffers) after each step of PyTorch's
 * recipe.  Tolerance as tests/test_parity.c's, per tensor in the max norm:
 * max |lathe - torch| <= 1e-4 max |torch| (the script checks that PyTorch's
 * float32 is within 1e-5 of its float64 on every tensor); integers equal. */

static lathe_graph *recipe_graph(int64_t batch) {
    lathe_graph *g = lathe_graph_new();
    lathe_desc_options opt = {.training = true, .batch = batch};
    if (lathe_desc_parse_file(g, src_path("tests/fixtures/recipes.lathe"), &opt, NULL) != LATHE_OK)
        fail_msg("%s", lathe_graph_error(g));
    return g;
}

static const lathe_st_tensor *recipe_need(lathe_st_file *f, const char *key) {
    const lathe_st_tensor *t = lathe_st_find(f, key);
    if (!t) fail_msg("recipes.safetensors has no '%s'", key);
    return t;
}

/* Every parameter and buffer from init.NAME. */
static void recipe_init(lathe_program *p, lathe_st_file *f) {
    const lathe_rt_tensor *ts = lathe_program_tensors(p);
    for (int i = 0; i < lathe_program_num_tensors(p); i++) {
        if (ts[i].kind != LATHE_RT_PARAM && ts[i].kind != LATHE_RT_BUFFER) continue;
        char key[256];
        snprintf(key, sizeof key, "init.%s", ts[i].name);
        const lathe_st_tensor *t = recipe_need(f, key);
        assert_int_equal(t->dtype, ts[i].dtype);
        if (lathe_program_set(p, ts[i].name, t->data, (size_t)ts[i].numel * lathe_rt_dtype_size(t->dtype)))
            fail_msg("%s", lathe_program_error(p));
    }
}

/* Samples first .. first + B - 1 of the fixture's x and y as the batch. */
static void recipe_batch(lathe_program *p, lathe_st_file *f, int64_t first, int64_t B) {
    const lathe_st_tensor *x = recipe_need(f, "x"), *y = recipe_need(f, "y");
    size_t xs = 2 * 3 * 3 * sizeof(float);
    assert_true(first + B <= x->shape[0]);
    assert_int_equal(lathe_program_set(p, "x", (const char *)x->data + (size_t)first * xs, (size_t)B * xs), LATHE_OK);
    assert_int_equal(lathe_program_set(p, "y", (const int64_t *)y->data + first, (size_t)B * sizeof(int64_t)), LATHE_OK);
}

/* max |lathe - torch| / (1e-4 max |torch|) for tensor `name` of p against
 * fixture entry key (integers: 0 if equal, else infinite). */
static double recipe_error(lathe_program *p, const char *name, lathe_st_file *f, const char *key) {
    const lathe_st_tensor *t = recipe_need(f, key);
    int64_t n = 1;
    for (int d = 0; d < t->rank; d++) n *= t->shape[d];
    size_t nb = (size_t)n * lathe_rt_dtype_size(t->dtype);
    void *buf = malloc(nb + 8);
    if (lathe_program_get(p, name, buf, nb)) fail_msg("%s: %s", name, lathe_program_error(p));
    double err = 0, scale = 0;
    for (int64_t i = 0; i < n; i++) {
        double a = elem_at((lathe_dtype)t->dtype, buf, i), b = elem_at((lathe_dtype)t->dtype, t->data, i);
        err = fmax(err, isnan(a) || isnan(b) ? INFINITY : fabs(a - b));
        scale = fmax(scale, fabs(b));
    }
    free(buf);
    if (t->dtype == LATHE_RT_I64) return err == 0 ? 0 : INFINITY;
    return err / (1e-4 * fmax(scale, 1e-30));
}

/* Every parameter and buffer (and with grads, every gradient) of p against
 * PREFIX.NAME (PREFIX.grad.S.NAME / PREFIX.S.NAME with a step). */
static void recipe_compare(const char *label, lathe_program *p, lathe_st_file *f, const char *prefix, int step,
                           bool grads) {
    const lathe_rt_tensor *ts = lathe_program_tensors(p);
    int compared = 0;
    for (int i = 0; i < lathe_program_num_tensors(p); i++) {
        if (ts[i].kind != LATHE_RT_PARAM && ts[i].kind != LATHE_RT_BUFFER) continue;
        if (grads && ts[i].kind != LATHE_RT_PARAM) continue;
        char key[256], name[256];
        snprintf(key, sizeof key, "%s.%s%d.%s", prefix, grads ? "grad." : "", step, ts[i].name);
        snprintf(name, sizeof name, "%s%s", grads ? "grad." : "", ts[i].name);
        double e = recipe_error(p, name, f, key);
        if (!(e <= 1)) fail_msg("%s: %s differs from PyTorch's %s by %.3g times the tolerance", label, name, key, e);
        compared++;
    }
    assert_int_equal(compared, grads ? 9 : 12); /* recipes.lathe's 9 parameters and 3 buffers */
}

/* The three optimizers of the fixture, each with the usual two parameter
 * groups (no_decay_1d: no weight decay on biases and normalization weights),
 * as make_recipe_fixtures.py's torch.optim.X([{decay}, {no decay}]). */
static lathe_optim_config recipe_optim(const char *name) {
    lathe_optim_config c;
    if (!strcmp(name, "adamw")) c = lathe_adamw_config(0.01), c.weight_decay = 0.1;
    else if (!strcmp(name, "adam")) c = lathe_adam_config(0.01), c.weight_decay = 0.1;
    else c = lathe_sgd_config(0.05, 0.9), c.weight_decay = 0.05;
    c.no_decay_1d = true;
    return c;
}

/* Parameter groups: three steps at batch 8 of AdamW, Adam (L2) and SGD with
 * momentum, weight decay on the matrices only; on both backends.  Without
 * the groups AdamW must miss the fixture (the case is exercised). */
static void test_recipe_param_groups(void **state) {
    (void)state;
    lathe_st_file *f = read_fixture("recipes.safetensors");
    lathe_graph *g = recipe_graph(8);
    const char *opts[] = {"adamw", "adam", "sgd"};
    for (int be = 1; be >= 0; be--) {
        lathe_program *p = lathe_compile(g, be ? LATHE_BACKEND_EVAL : LATHE_BACKEND_JIT);
        if (!p) fail_msg("%s", lathe_graph_error(g));
        for (int o = 0; o < 3; o++) {
            char label[64], prefix[64];
            snprintf(label, sizeof label, "%s, %s", opts[o], be ? "evaluator" : "jit");
            snprintf(prefix, sizeof prefix, "groups.%s", opts[o]);
            recipe_init(p, f);
            lathe_optim_config cfg = recipe_optim(opts[o]);
            lathe_optimizer *opt = lathe_program_optimizer(p, &cfg);
            assert_non_null(opt);
            for (int s = 1; s <= 3; s++) {
                recipe_batch(p, f, 8 * (s - 1), 8);
                assert_int_equal(lathe_program_run(p), LATHE_OK);
                lathe_optim_step(opt);
                recipe_compare(label, p, f, prefix, s, false);
            }
            lathe_optim_free(opt);
        }
        /* one group (decay on everything): the normalization weights end elsewhere */
        recipe_init(p, f);
        lathe_optim_config cfg = recipe_optim("adamw");
        cfg.no_decay_1d = false;
        lathe_optimizer *opt = lathe_program_optimizer(p, &cfg);
        for (int s = 1; s <= 3; s++) {
            recipe_batch(p, f, 8 * (s - 1), 8);
            assert_int_equal(lathe_program_run(p), LATHE_OK);
            lathe_optim_step(opt);
        }
        assert_true(recipe_error(p, "bn.weight", f, "groups.adamw.3.bn.weight") > 10);
        assert_true(recipe_error(p, "ln.bias", f, "groups.adamw.3.ln.bias") > 10);
        assert_true(recipe_error(p, "fc1.weight", f, "groups.adamw.3.fc1.weight") <= 1);
        lathe_optim_free(opt);
        lathe_program_free(p);
    }
    lathe_graph_free(g);
    lathe_st_free(f);
}

/* Gradient accumulation: PyTorch's idiom (K = 3 micro-batches of 4, each
 * (loss / K).backward(), then a step) against lathe_accumulate_grads after
 * each micro-batch's run, two steps of AdamW and of SGD with momentum (with
 * the groups); the accumulated gradients before each step, then the
 * parameters and buffers after it (batch norm's statistics updated once per
 * micro-batch in both). */
static void test_recipe_accumulation(void **state) {
    (void)state;
    enum { K = 3, B = 4 };
    lathe_st_file *f = read_fixture("recipes.safetensors");
    lathe_graph *g = recipe_graph(B);
    const char *opts[] = {"adamw", "sgd"};
    for (int be = 1; be >= 0; be--) {
        lathe_program *p = lathe_compile(g, be ? LATHE_BACKEND_EVAL : LATHE_BACKEND_JIT);
        if (!p) fail_msg("%s", lathe_graph_error(g));
        const lathe_rt_tensor *ts = lathe_program_tensors(p);
        int n = lathe_program_num_tensors(p);
        int64_t total = 0;
        for (int i = 0; i < n; i++) total += ts[i].numel;
        double *acc = malloc(sizeof *acc * (size_t)total);
        for (int o = 0; o < 2; o++) {
            char label[64], prefix[64];
            snprintf(label, sizeof label, "accumulated %s, %s", opts[o], be ? "evaluator" : "jit");
            snprintf(prefix, sizeof prefix, "accum.%s", opts[o]);
            recipe_init(p, f);
            lathe_optim_config cfg = recipe_optim(opts[o]);
            lathe_optimizer *opt = lathe_program_optimizer(p, &cfg);
            assert_non_null(opt);
            for (int s = 1; s <= 2; s++) {
                for (int k = 0; k < K; k++) {
                    recipe_batch(p, f, ((s - 1) * K + k) * B, B);
                    assert_int_equal(lathe_program_run(p), LATHE_OK);
                    lathe_accumulate_grads(lathe_program_arena(p), ts, n, acc, k, K);
                }
                recipe_compare(label, p, f, prefix, s, true);
                lathe_optim_step(opt);
                recipe_compare(label, p, f, prefix, s, false);
            }
            lathe_optim_free(opt);
        }
        free(acc);
        lathe_program_free(p);
    }
    lathe_graph_free(g);
    lathe_st_free(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_explicit_init),
        cmocka_unit_test(test_normal_init),
        cmocka_unit_test(test_optimizers_two_steps),
        cmocka_unit_test(test_frozen_untouched),
        cmocka_unit_test(test_optimizer_denormals),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_lr_schedules),
        cmocka_unit_test(test_clip_grads),
        cmocka_unit_test(test_recipe_param_groups),
        cmocka_unit_test(test_recipe_accumulation),
        cmocka_unit_test(test_resnet_params_and_init),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
