/* test_autodiff.c - reverse-mode autodiff checked against f64 central finite
 * differences (eps 1e-6, atol 1e-5, rtol 1e-3, as torch.autograd.gradcheck),
 * the seed's Q example exactly, a dot-product test on a conv/bn/pool/linear
 * network, freezing, no_grad, accumulation, second order and errors. */
#include <math.h>
#include <string.h>

#include "lathe_compiler.h"
#include "testutil.h"

/* <y, c> for the current bindings. */
static double dot_out(lathe_eval *ev, const lathe_node *y, const double *c) {
    if (lathe_eval_run(ev) != LATHE_OK) fail_msg("run: %s", lathe_eval_error(ev));
    const double *v = lathe_eval_value(ev, y);
    double s = 0;
    for (int64_t i = 0; i < y->numel; i++) s += v[i] * c[i];
    return s;
}

/* Leaves (inputs, params) that require grad. */
static int grad_leaves(lathe_graph *g, lathe_node **wrt) {
    int n = 0;
    for (int i = 0; i < lathe_graph_num_nodes(g); i++) {
        lathe_node *x = lathe_graph_node(g, i);
        if ((x->op == LT_OP_INPUT || x->op == LT_OP_PARAM) && x->requires_grad) wrt[n++] = x;
    }
    return n;
}

/* Check the VJP of output y with a random cotangent against central
 * differences of <y, c>, for every leaf that requires grad.  Returns the
 * largest |gradient| seen so a caller can refuse a vacuous pass. */
static double gradcheck(const char *label, lathe_graph *g, lathe_node *y, uint64_t seed, double eps) {
    rng r = {seed};
    double *c = malloc((size_t)y->numel * sizeof *c);
    for (int64_t i = 0; i < y->numel; i++) c[i] = rng_uniform(&r, -1, 1);
    lathe_node *cot = lathe_const(g, LATHE_F64, y->rank, y->shape, c);
    lathe_node *wrt[64], *grads[64];
    int nwrt = grad_leaves(g, wrt);
    if (lathe_gradients(g, 1, &y, &cot, nwrt, wrt, grads) != LATHE_OK)
        fail_msg("%s: gradients: %s", label, lathe_graph_error(g));
    lathe_eval *ev = lathe_eval_new(g);
    if (!ev) fail_msg("%s: eval: %s", label, lathe_graph_error(g));
    bind_random(ev, g, seed);
    if (lathe_eval_run(ev) != LATHE_OK) fail_msg("%s: run: %s", label, lathe_eval_error(ev));
    double maxg = 0;
    double **ad = calloc((size_t)nwrt, sizeof *ad);
    for (int j = 0; j < nwrt; j++) {
        ad[j] = calloc((size_t)wrt[j]->numel + 1, sizeof(double));
        if (grads[j]) memcpy(ad[j], lathe_eval_value(ev, grads[j]), (size_t)wrt[j]->numel * sizeof(double));
    }
    for (int j = 0; j < nwrt; j++) {
        int64_t n = wrt[j]->numel;
        double *base = malloc((size_t)(n + 1) * sizeof *base);
        memcpy(base, lathe_eval_leaf(ev, wrt[j]->name), (size_t)n * sizeof *base);
        for (int64_t e = 0; e < n; e++) {
            double f[2];
            for (int side = 0; side < 2; side++) {
                bind_random(ev, g, seed); /* resets buffers their updates changed */
                double *v = malloc((size_t)n * sizeof *v);
                memcpy(v, base, (size_t)n * sizeof *v);
                v[e] += side ? -eps : eps;
                lathe_eval_set_f64(ev, wrt[j]->name, v);
                free(v);
                f[side] = dot_out(ev, y, c);
            }
            double fd = (f[0] - f[1]) / (2 * eps), got = ad[j][e];
            if (fabs(fd - got) > 1e-5 + 1e-3 * fabs(fd))
                fail_msg("%s: d/d %s[%lld]: autodiff %.10g, finite differences %.10g", label, wrt[j]->name,
                         (long long)e, got, fd);
            if (fabs(got) > maxg) maxg = fabs(got);
        }
        free(base);
        free(ad[j]);
    }
    free(ad);
    free(c);
    lathe_eval_free(ev);
    return maxg;
}

/* Samples whose f64 graph round-trips through f32 need a larger step. */
static double eps_for(const char *label) { return strcmp(label, "cast") == 0 ? 1e-3 : 1e-6; }

static void test_gradcheck_every_sample(void **state) {
    (void)state;
    int checked = 0;
    for (int i = 0; i < nsamples; i++) {
        lathe_graph *g = sample_graph(&samples[i], LATHE_F64);
        lathe_node *y = lathe_graph_output(g, 0);
        if (!lathe_requires_grad(y)) {
            /* argmax and integer casts: PyTorch refuses backward too */
            double *zeros = calloc((size_t)y->numel + 1, sizeof *zeros);
            lathe_node *c = lathe_const(g, LATHE_F64, y->rank, y->shape, zeros), *w;
            free(zeros);
            assert_int_equal(lathe_gradients(g, 1, &y, &c, 0, NULL, &w), LATHE_ERR_ARG);
            assert_non_null(strstr(lathe_graph_error(g), "does not require grad"));
            lathe_graph_free(g);
            continue;
        }
        if (samples[i].op == LT_OP_MAX_POOL2D_BACKWARD) { /* the one op without a rule */
            lathe_node *l = lathe_sum(g, y, 0, NULL, false);
            assert_int_equal(lathe_backward(g, 1, &l, NULL), LATHE_ERR_UNSUPPORTED);
            assert_non_null(strstr(lathe_graph_error(g), "no gradient rule for op 'max_pool2d_backward'"));
            lathe_graph_free(g);
            continue;
        }
        for (uint64_t seed = 1; seed <= 2; seed++) {
            lathe_graph *h = seed == 1 ? g : sample_graph(&samples[i], LATHE_F64);
            double maxg = gradcheck(samples[i].label, h, lathe_graph_output(h, 0), seed, eps_for(samples[i].label));
            if (!(maxg > 1e-8) && lathe_graph_output(h, 0)->numel > 0) fail_msg("%s: every gradient is zero: the check would pass vacuously", samples[i].label);
            if (h != g) lathe_graph_free(h);
        }
        checked++;
        lathe_graph_free(g);
    }
    assert_true(checked >= nsamples - 4);
}

/* The seed: Q = 3a^3 - b^2, external gradient [1, 1]: a.grad = 9a^2 = [36, 81],
 * b.grad = -2b = [-12, -8], exactly, in f32. */
static void test_seed_q(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *a = lathe_input(g, "a", LATHE_F32, LATHE_DIMS(2));
    lathe_node *b = lathe_input(g, "b", LATHE_F32, LATHE_DIMS(2));
    lathe_set_requires_grad(a, true);
    lathe_set_requires_grad(b, true);
    lathe_node *t = lathe_mul(g, lathe_scalar(g, LATHE_F32, 3), lathe_pow_scalar(g, a, 3));
    lathe_node *q = lathe_sub(g, t, lathe_pow_scalar(g, b, 2));
    lathe_node *ext = lathe_const(g, LATHE_F32, LATHE_DIMS(2), (float[]){1, 1});
    assert_int_equal(lathe_backward(g, 1, &q, &ext), LATHE_OK);
    lathe_node *ga = lathe_grad(g, a), *gb = lathe_grad(g, b);
    assert_non_null(ga);
    assert_non_null(gb);
    assert_ptr_equal(lathe_graph_find_output(g, "grad.a"), ga);
    for (int simplified = 0; simplified < 2; simplified++) {
        lathe_graph *h = simplified ? lathe_simplify(g) : g;
        assert_int_equal(lathe_graph_status(h), LATHE_OK);
        lathe_eval *ev = lathe_eval_new(h);
        lathe_eval_set(ev, "a", (float[]){2, 3}, 8);
        lathe_eval_set(ev, "b", (float[]){6, 4}, 8);
        assert_int_equal(lathe_eval_run(ev), LATHE_OK);
        float va[2], vb[2];
        assert_int_equal(lathe_eval_get(ev, lathe_graph_find_output(h, "grad.a"), va, sizeof va), LATHE_OK);
        assert_int_equal(lathe_eval_get(ev, lathe_graph_find_output(h, "grad.b"), vb, sizeof vb), LATHE_OK);
        assert_true(va[0] == 36.0f && va[1] == 81.0f);
        assert_true(vb[0] == -12.0f && vb[1] == -8.0f);
        lathe_eval_free(ev);
        if (simplified) lathe_graph_free(h);
    }
    lathe_graph_free(g);
}

/* The same through the text form: `backward %q %ext` marks, then the
 * backward graph prints, parses back and evaluates to the same bits. */
static void test_text_backward(void **state) {
    (void)state;
    const char *src = "%a = input \"a\" f32[2] grad\n"
                      "%b = input \"b\" f32[2] grad\n"
                      "%ext = const f32[2] [1, 1]\n"
                      "%three = const f32[] 3\n"
                      "%q = sub %t, %b2\n"
                      "%t = mul %three, %a3\n"
                      "%a3 = pow_scalar %a exponent=3\n"
                      "%b2 = pow_scalar %b exponent=2\n"
                      "output \"Q\" %q\n"
                      "backward %q %ext\n";
    lathe_graph *g = lathe_graph_new();
    assert_int_equal(lathe_parse(g, src, strlen(src), "q.ir"), LATHE_OK);
    assert_int_equal(lathe_graph_num_marks(g), 1);
    char *text = lathe_graph_to_text(g);
    assert_non_null(strstr(text, "backward %"));
    free(text);
    assert_int_equal(lathe_backward_marked(g), LATHE_OK);
    assert_int_equal(lathe_graph_num_marks(g), 0);
    assert_int_equal(lathe_backward_marked(g), LATHE_ERR_ARG); /* nothing marked */
    lathe_graph_clear_error(g);
    text = lathe_graph_to_text(g);
    lathe_graph *h = lathe_graph_new();
    assert_int_equal(lathe_parse(h, text, strlen(text), "grad.ir"), LATHE_OK);
    free(text);
    lathe_eval *e1 = lathe_eval_new(g), *e2 = lathe_eval_new(h);
    for (int k = 0; k < 2; k++) {
        lathe_eval *e = k ? e2 : e1;
        lathe_eval_set(e, "a", (float[]){2, 3}, 8);
        lathe_eval_set(e, "b", (float[]){6, 4}, 8);
        assert_int_equal(lathe_eval_run(e), LATHE_OK);
    }
    for (int i = 0; i < lathe_graph_num_outputs(g); i++) {
        lathe_node *x = lathe_graph_output(g, i), *y = lathe_graph_find_output(h, lathe_graph_output_name(g, i));
        assert_non_null(y);
        assert_memory_equal(lathe_eval_value(e1, x), lathe_eval_value(e2, y), (size_t)x->numel * sizeof(double));
    }
    const double *ga = lathe_eval_value(e2, lathe_graph_find_output(h, "grad.a"));
    assert_true(ga[0] == 36 && ga[1] == 81);
    lathe_eval_free(e1);
    lathe_eval_free(e2);
    lathe_graph_free(g);
    lathe_graph_free(h);
}

/* A value used several times gets the sum: d/dx (x*x + x) = 2x + 1. */
static void test_accumulation(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_param(g, "x", LATHE_F64, LATHE_DIMS(2), true);
    lathe_node *y = lathe_sum(g, lathe_add(g, lathe_mul(g, x, x), x), 0, NULL, false);
    assert_int_equal(lathe_backward(g, 1, &y, NULL), LATHE_OK);
    lathe_eval *ev = lathe_eval_new(g);
    lathe_eval_set_f64(ev, "x", (double[]){0.5, -2});
    assert_int_equal(lathe_eval_run(ev), LATHE_OK);
    const double *gx = lathe_eval_value(ev, lathe_grad(g, x));
    assert_true(gx[0] == 2 && gx[1] == -3);
    lathe_eval_free(ev);
    lathe_graph_free(g);
}

/* no_grad makes a value a constant: d/dx (x * nograd(2x)) = 2x, not 4x. */
static void test_no_grad_constant(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_param(g, "x", LATHE_F64, LATHE_DIMS(2), true);
    lathe_no_grad_begin(g);
    lathe_node *c = lathe_mul(g, x, lathe_scalar(g, LATHE_F64, 2));
    lathe_no_grad_end(g);
    lathe_node *y = lathe_sum(g, lathe_mul(g, x, c), 0, NULL, false);
    int before = lathe_graph_num_nodes(g);
    assert_int_equal(lathe_backward(g, 1, &y, NULL), LATHE_OK);
    /* nothing flows into c */
    for (int i = before; i < lathe_graph_num_nodes(g); i++) {
        lathe_node *n = lathe_graph_node(g, i);
        for (int k = 0; k < n->nin; k++) assert_true(n->in[k] != c || n->op == LT_OP_MUL);
    }
    lathe_eval *ev = lathe_eval_new(g);
    lathe_eval_set_f64(ev, "x", (double[]){1, 3});
    assert_int_equal(lathe_eval_run(ev), LATHE_OK);
    const double *gx = lathe_eval_value(ev, lathe_grad(g, x));
    assert_true(gx[0] == 2 && gx[1] == 6);
    lathe_eval_free(ev);
    lathe_graph_free(g);
}

/* A small network: conv + batch norm + relu + max pool + grouped conv + avg
 * pool + adaptive pool + linear, with logits and cross-entropy outputs. */
typedef struct {
    lathe_node *x, *logits, *loss;
    lathe_node *params[16];
    int nparams;
} net;

static lathe_node *P(lathe_graph *g, net *n, const char *name, int rank, const int64_t *shape) {
    lathe_node *p = lathe_param(g, name, LATHE_F64, rank, shape, true);
    n->params[n->nparams++] = p;
    return p;
}

static net build_net(lathe_graph *g, bool x_grad) {
    net n = {0};
    n.x = lathe_input(g, "x", LATHE_F64, LATHE_DIMS(2, 3, 8, 8));
    lathe_set_requires_grad(n.x, x_grad);
    lathe_node *labels = lathe_input(g, "labels", LATHE_I64, LATHE_DIMS(2));
    lathe_node *h = lathe_conv2d(g, n.x, P(g, &n, "conv1.weight", LATHE_DIMS(4, 3, 3, 3)),
                                 P(g, &n, "conv1.bias", LATHE_DIMS(4)), 1, 1, 1, 1);
    h = lathe_batch_norm2d(g, h, P(g, &n, "bn1.weight", LATHE_DIMS(4)), P(g, &n, "bn1.bias", LATHE_DIMS(4)),
                           lathe_buffer(g, "bn1.running_mean", LATHE_F64, LATHE_DIMS(4)),
                           lathe_buffer(g, "bn1.running_var", LATHE_F64, LATHE_DIMS(4)), true, 0.1, 1e-5);
    h = lathe_max_pool2d(g, lathe_relu(g, h), 3, 2, 1);
    h = lathe_conv2d(g, h, P(g, &n, "conv2.weight", LATHE_DIMS(6, 2, 3, 3)), NULL, 1, 1, 2, 2);
    h = lathe_batch_norm2d(g, h, P(g, &n, "bn2.weight", LATHE_DIMS(6)), P(g, &n, "bn2.bias", LATHE_DIMS(6)),
                           lathe_buffer(g, "bn2.running_mean", LATHE_F64, LATHE_DIMS(6)),
                           lathe_buffer(g, "bn2.running_var", LATHE_F64, LATHE_DIMS(6)), false, 0.1, 1e-5);
    h = lathe_avg_pool2d(g, lathe_tanh(g, h), 2, 1, 1, false);
    h = lathe_flatten(g, lathe_adaptive_avg_pool2d(g, h, 1, 1), 1, -1);
    n.logits = lathe_linear(g, h, P(g, &n, "fc.weight", LATHE_DIMS(5, 6)), P(g, &n, "fc.bias", LATHE_DIMS(5)));
    n.loss = lathe_cross_entropy(g, n.logits, labels, LATHE_REDUCE_MEAN);
    lathe_output(g, "logits", n.logits);
    lathe_output(g, "loss", n.loss);
    assert_graph_ok(g);
    return n;
}

/* <J t, c> by finite differences along t against <t, J^T c> by autodiff. */
static void test_dot_product(void **state) {
    (void)state;
    for (int which = 0; which < 2; which++) { /* vector output logits, scalar loss */
        lathe_graph *g = lathe_graph_new();
        net n = build_net(g, true);
        lathe_node *y = which ? n.loss : n.logits;
        rng r = {99 + (uint64_t)which};
        double c[10];
        for (int i = 0; i < 10; i++) c[i] = rng_uniform(&r, -1, 1);
        lathe_node *cot = lathe_const(g, LATHE_F64, y->rank, y->shape, c);
        lathe_node *wrt[17], *grads[17];
        int nw = grad_leaves(g, wrt);
        assert_int_equal(nw, n.nparams + 1);
        assert_int_equal(lathe_gradients(g, 1, &y, &cot, nw, wrt, grads), LATHE_OK);
        lathe_eval *ev = lathe_eval_new(g);
        bind_random(ev, g, 5);
        assert_int_equal(lathe_eval_run(ev), LATHE_OK);
        double adot = 0;
        double *base[17], *dir[17];
        for (int j = 0; j < nw; j++) {
            int64_t k = wrt[j]->numel;
            base[j] = malloc((size_t)k * sizeof(double));
            dir[j] = malloc((size_t)k * sizeof(double));
            memcpy(base[j], lathe_eval_leaf(ev, wrt[j]->name), (size_t)k * sizeof(double));
            assert_non_null(grads[j]);
            const double *gv = lathe_eval_value(ev, grads[j]);
            for (int64_t e = 0; e < k; e++) {
                dir[j][e] = rng_uniform(&r, -1, 1);
                adot += gv[e] * dir[j][e];
            }
        }
        double f[2], eps = 1e-6;
        for (int side = 0; side < 2; side++) {
            bind_random(ev, g, 5);
            for (int j = 0; j < nw; j++) {
                int64_t k = wrt[j]->numel;
                double *v = malloc((size_t)k * sizeof *v);
                for (int64_t e = 0; e < k; e++) v[e] = base[j][e] + (side ? -eps : eps) * dir[j][e];
                lathe_eval_set_f64(ev, wrt[j]->name, v);
                free(v);
            }
            f[side] = dot_out(ev, y, c);
        }
        double fd = (f[0] - f[1]) / (2 * eps);
        if (fabs(fd - adot) > 1e-6 * fabs(fd) + 1e-9)
            fail_msg("dot product (%s): finite differences %.12g, autodiff %.12g", which ? "loss" : "logits", fd, adot);
        assert_true(fabs(adot) > 1e-3);
        for (int j = 0; j < nw; j++) free(base[j]), free(dir[j]);
        lathe_eval_free(ev);
        lathe_graph_free(g);
    }
}

static int count_op(const lathe_graph *g, int from, lt_op op) {
    int k = 0;
    for (int i = from; i < g->nnodes; i++) k += g->nodes[i]->op == op;
    return k;
}

/* Frozen means absent: with every conv and batch-norm parameter frozen and
 * only the final linear layer training, the backward pass holds no
 * convolution, pooling or batch-norm gradient, and touches nothing before
 * the linear layer's input. */
static void test_freezing(void **state) {
    (void)state;
    for (int frozen = 0; frozen < 2; frozen++) {
        lathe_graph *g = lathe_graph_new();
        net n = build_net(g, false);
        if (frozen)
            for (int i = 0; i < n.nparams; i++)
                if (strncmp(n.params[i]->name, "fc.", 3) != 0) lathe_set_requires_grad(n.params[i], false);
        int before = lathe_graph_num_nodes(g);
        int rsqrt_fwd = count_op(g, 0, LT_OP_RSQRT);
        assert_int_equal(lathe_backward(g, 1, &n.loss, NULL), LATHE_OK);
        int conv_bw = count_op(g, before, LT_OP_CONV2D_BACKWARD_INPUT) + count_op(g, before, LT_OP_CONV2D_BACKWARD_WEIGHT);
        int pool_bw = count_op(g, before, LT_OP_MAX_POOL2D_BACKWARD) + count_op(g, before, LT_OP_AVG_POOL2D_BACKWARD) +
                      count_op(g, before, LT_OP_ADAPTIVE_AVG_POOL2D_BACKWARD);
        int bn_bw = count_op(g, before, LT_OP_RSQRT) + count_op(g, before, LT_OP_MEAN);
        if (frozen) {
            assert_int_equal(conv_bw, 0);
            assert_int_equal(pool_bw, 0);
            assert_int_equal(bn_bw, 0);
            /* backward nodes read only the linear layer's operands, the
             * logits, the labels, constants and each other */
            lathe_node *fc = n.logits;
            for (int i = before; i < g->nnodes; i++) {
                lathe_node *b = g->nodes[i];
                for (int k = 0; k < b->nin; k++) {
                    lathe_node *o = b->in[k];
                    bool ok = o->id >= before || o->op == LT_OP_CONST || o == fc || o == fc->in[0] ||
                              o == fc->in[1] || o == fc->in[2] || o == n.loss->in[1];
                    if (!ok) fail_msg("backward node %%%d (%s) reads forward node %%%d (%s)", b->id,
                                      lt_ops[b->op].name, o->id, lt_ops[o->op].name);
                }
            }
            for (int i = 0; i < n.nparams; i++)
                assert_true((lathe_grad(g, n.params[i]) != NULL) == (strncmp(n.params[i]->name, "fc.", 3) == 0));
            assert_int_equal(lathe_graph_num_outputs(g), 4); /* logits, loss, grad.fc.weight, grad.fc.bias */
        } else {
            /* the same counts are non-zero when nothing is frozen */
            assert_int_equal(conv_bw, 3); /* conv1 weight; conv2 input and weight */
            assert_int_equal(pool_bw, 3);
            assert_true(bn_bw > 0);
            for (int i = 0; i < n.nparams; i++) assert_non_null(lathe_grad(g, n.params[i]));
        }
        (void)rsqrt_fwd;
        lathe_graph_free(g);
    }
}

/* d^2/dx^2 x^3 = 6x, by differentiating the gradient again. */
static void test_second_order_cube(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_param(g, "x", LATHE_F64, LATHE_DIMS(3), true);
    lathe_node *y = lathe_sum(g, lathe_pow_scalar(g, x, 3), 0, NULL, false);
    lathe_node *g1, *g2;
    assert_int_equal(lathe_gradients(g, 1, &y, NULL, 1, &x, &g1), LATHE_OK);
    lathe_node *s = lathe_sum(g, g1, 0, NULL, false);
    assert_true(lathe_requires_grad(s));
    assert_int_equal(lathe_gradients(g, 1, &s, NULL, 1, &x, &g2), LATHE_OK);
    lathe_eval *ev = lathe_eval_new(g);
    lathe_eval_set_f64(ev, "x", (double[]){1, 2, -3});
    assert_int_equal(lathe_eval_run(ev), LATHE_OK);
    const double *v1 = lathe_eval_value(ev, g1), *v2 = lathe_eval_value(ev, g2);
    assert_true(v1[0] == 3 && v1[1] == 12 && v1[2] == 27);   /* 3x^2 */
    assert_true(v2[0] == 6 && v2[1] == 12 && v2[2] == -18);  /* 6x */
    lathe_eval_free(ev);
    lathe_graph_free(g);
}

/* Hessian-vector product of an MLP loss: differentiate <grad L, v> and compare
 * with central differences of grad L along v. */
static void test_hvp_mlp(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_input(g, "x", LATHE_F64, LATHE_DIMS(5, 3));
    lathe_node *target = lathe_input(g, "target", LATHE_F64, LATHE_DIMS(5, 2));
    lathe_node *p[4] = {lathe_param(g, "l1.weight", LATHE_F64, LATHE_DIMS(4, 3), true),
                        lathe_param(g, "l1.bias", LATHE_F64, LATHE_DIMS(4), true),
                        lathe_param(g, "l2.weight", LATHE_F64, LATHE_DIMS(2, 4), true),
                        lathe_param(g, "l2.bias", LATHE_F64, LATHE_DIMS(2), true)};
    lathe_node *h = lathe_tanh(g, lathe_linear(g, x, p[0], p[1]));
    lathe_node *o = lathe_sigmoid(g, lathe_linear(g, h, p[2], p[3]));
    lathe_node *loss = lathe_mse_loss(g, o, target, LATHE_REDUCE_MEAN);
    lathe_node *gr[4], *hv[4], *v[4];
    assert_int_equal(lathe_gradients(g, 1, &loss, NULL, 4, p, gr), LATHE_OK);
    rng r = {7};
    double *vd[4];
    for (int j = 0; j < 4; j++) {
        vd[j] = malloc((size_t)p[j]->numel * sizeof(double));
        for (int64_t e = 0; e < p[j]->numel; e++) vd[j][e] = rng_uniform(&r, -1, 1);
        v[j] = lathe_const(g, LATHE_F64, p[j]->rank, p[j]->shape, vd[j]);
    }
    assert_int_equal(lathe_gradients(g, 4, gr, v, 4, p, hv), LATHE_OK);
    lathe_eval *ev = lathe_eval_new(g);
    bind_random(ev, g, 3);
    assert_int_equal(lathe_eval_run(ev), LATHE_OK);
    double *hvd[4], *base[4];
    for (int j = 0; j < 4; j++) {
        hvd[j] = malloc((size_t)p[j]->numel * sizeof(double));
        base[j] = malloc((size_t)p[j]->numel * sizeof(double));
        memcpy(hvd[j], lathe_eval_value(ev, hv[j]), (size_t)p[j]->numel * sizeof(double));
        memcpy(base[j], lathe_eval_leaf(ev, p[j]->name), (size_t)p[j]->numel * sizeof(double));
    }
    double eps = 1e-5, *gs[2][4];
    for (int side = 0; side < 2; side++) {
        for (int j = 0; j < 4; j++) {
            double *w = malloc((size_t)p[j]->numel * sizeof *w);
            for (int64_t e = 0; e < p[j]->numel; e++) w[e] = base[j][e] + (side ? -eps : eps) * vd[j][e];
            lathe_eval_set_f64(ev, p[j]->name, w);
            free(w);
        }
        assert_int_equal(lathe_eval_run(ev), LATHE_OK);
        for (int j = 0; j < 4; j++) {
            gs[side][j] = malloc((size_t)p[j]->numel * sizeof(double));
            memcpy(gs[side][j], lathe_eval_value(ev, gr[j]), (size_t)p[j]->numel * sizeof(double));
        }
    }
    double maxhv = 0;
    for (int j = 0; j < 4; j++) {
        for (int64_t e = 0; e < p[j]->numel; e++) {
            double fd = (gs[0][j][e] - gs[1][j][e]) / (2 * eps);
            if (fabs(fd - hvd[j][e]) > 1e-6 + 1e-4 * fabs(fd))
                fail_msg("Hv %s[%lld]: autodiff %.10g, finite differences %.10g", p[j]->name, (long long)e, hvd[j][e], fd);
            if (fabs(hvd[j][e]) > maxhv) maxhv = fabs(hvd[j][e]);
        }
        free(gs[0][j]), free(gs[1][j]), free(hvd[j]), free(base[j]), free(vd[j]);
    }
    assert_true(maxhv > 1e-4);
    lathe_eval_free(ev);
    lathe_graph_free(g);
}

/* Second order through convolution and pooling gradients: the gradient of
 * <d loss/d x, v> with respect to the weight, against central differences. */
static void test_second_order_conv(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_input(g, "x", LATHE_F64, LATHE_DIMS(1, 2, 5, 5));
    lathe_set_requires_grad(x, true);
    lathe_node *w = lathe_param(g, "w", LATHE_F64, LATHE_DIMS(2, 1, 3, 3), true);
    lathe_node *h = lathe_avg_pool2d(g, lathe_conv2d(g, x, w, NULL, 2, 1, 1, 2), 2, 1, 1, true);
    lathe_node *l = lathe_sum(g, lathe_tanh(g, lathe_adaptive_avg_pool2d(g, h, 2, 1)), 0, NULL, false);
    lathe_node *gx;
    assert_int_equal(lathe_gradients(g, 1, &l, NULL, 1, &x, &gx), LATHE_OK);
    rng r = {11};
    double v[50];
    for (int i = 0; i < 50; i++) v[i] = rng_uniform(&r, -1, 1);
    lathe_node *m = lathe_sum(g, lathe_mul(g, gx, lathe_const(g, LATHE_F64, LATHE_DIMS(1, 2, 5, 5), v)), 0, NULL, false);
    lathe_output(g, "m", m);
    lathe_node *gw;
    assert_int_equal(lathe_gradients(g, 1, &m, NULL, 1, &w, &gw), LATHE_OK);
    lathe_eval *ev = lathe_eval_new(g);
    bind_random(ev, g, 4);
    assert_int_equal(lathe_eval_run(ev), LATHE_OK);
    double ad[18], base[18];
    memcpy(ad, lathe_eval_value(ev, gw), sizeof ad);
    memcpy(base, lathe_eval_leaf(ev, "w"), sizeof base);
    double maxg = 0;
    for (int e = 0; e < 18; e++) {
        double f[2];
        for (int side = 0; side < 2; side++) {
            double t[18];
            memcpy(t, base, sizeof t);
            t[e] += side ? -1e-6 : 1e-6;
            lathe_eval_set_f64(ev, "w", t);
            assert_int_equal(lathe_eval_run(ev), LATHE_OK);
            f[side] = lathe_eval_value(ev, m)[0];
        }
        double fd = (f[0] - f[1]) / 2e-6;
        if (fabs(fd - ad[e]) > 1e-5 + 1e-3 * fabs(fd)) fail_msg("d2 w[%d]: autodiff %.10g, fd %.10g", e, ad[e], fd);
        if (fabs(ad[e]) > maxg) maxg = fabs(ad[e]);
    }
    assert_true(maxg > 1e-4);
    lathe_eval_free(ev);
    lathe_graph_free(g);
}

/* An error while differentiating a node a parser placed names the file,
 * line and column the user wrote, and the op. */
static void test_error_location(void **state) {
    (void)state;
    const char *src = "%x = input \"x\" f32[2,3,4,4]\n"
                      "%w = param \"w\" f32[3] grad\n"
                      "%b = param \"b\" f32[3]\n"
                      "%rm = param \"rm\" f32[3] grad\n"
                      "%rv = buffer \"rv\" f32[3]\n"
                      "%y = batch_norm2d %x, %w, %b, %rm, %rv training=true momentum=0.1 eps=1e-5\n"
                      "%s = sum %y axes=[0,1,2,3] keepdim=false\n"
                      "output \"loss\" %s\n"
                      "backward %s\n";
    lathe_graph *g = lathe_graph_new();
    assert_int_equal(lathe_parse(g, src, strlen(src), "bn.ir"), LATHE_OK);
    assert_int_not_equal(lathe_backward_marked(g), LATHE_OK);
    if (!strstr(lathe_graph_error(g), "bn.ir:6:1: in the gradient of batch_norm2d: "))
        fail_msg("%s", lathe_graph_error(g));
    lathe_graph_free(g);
}

/* linear on a zero-size feature axis: its gradients are well defined (the
 * weight's is empty), not a reshape error */
static void test_linear_no_features(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_input(g, "x", LATHE_F64, LATHE_DIMS(2, 0));
    lathe_node *w = lathe_param(g, "w", LATHE_F64, LATHE_DIMS(4, 0), true);
    lathe_node *b = lathe_param(g, "b", LATHE_F64, LATHE_DIMS(4), true);
    lathe_node *y = lathe_sum(g, lathe_linear(g, x, w, b), 0, NULL, false);
    lathe_output(g, "y", y);
    if (lathe_backward(g, 1, &y, NULL) != LATHE_OK) fail_msg("%s", lathe_graph_error(g));
    lathe_eval *ev = lathe_eval_new(g);
    assert_non_null(ev);
    double bv[4] = {1, 2, 3, 4};
    assert_int_equal(lathe_eval_set(ev, "b", bv, sizeof bv), LATHE_OK);
    assert_int_equal(lathe_eval_set(ev, "x", bv, 0), LATHE_OK);
    assert_int_equal(lathe_eval_set(ev, "w", bv, 0), LATHE_OK);
    if (lathe_eval_run(ev) != LATHE_OK) fail_msg("%s", lathe_eval_error(ev));
    const double *gb = lathe_eval_value(ev, lathe_graph_find_output(g, "grad.b"));
    for (int i = 0; i < 4; i++) assert_true(gb[i] == 2); /* two rows, each b once */
    assert_true(lathe_eval_value(ev, y)[0] == 2 * (1 + 2 + 3 + 4));
    lathe_eval_free(ev);
    lathe_graph_free(g);
}

/* The collectives' gradients.  all_reduce's is the all_reduce of the
 * cotangent over the same processes: with one, y = sum(all_reduce(w * x) * c)
 * gives d/dw = x * c; over four, the rule builds all_reduce(gy, 4).  An
 * all_gather over more than one process has none (data-parallel programs
 * gather after differentiation): a located error, not a wrong gradient. */
static void test_collectives(void **state) {
    (void)state;
    for (int parts = 1; parts <= 4; parts += 3) {
        lathe_graph *g = lathe_graph_new();
        lathe_node *x = lathe_input(g, "x", LATHE_F64, LATHE_DIMS(3));
        lathe_node *w = lathe_param(g, "w", LATHE_F64, LATHE_DIMS(3), true);
        lathe_node *c = lathe_const(g, LATHE_F64, LATHE_DIMS(3), (double[]){2, -1, 0.5});
        lathe_node *y = lathe_sum(g, lathe_mul(g, lathe_all_reduce(g, lathe_mul(g, w, x), parts), c), 0, NULL, false);
        lathe_output(g, "y", y);
        if (lathe_backward(g, 1, &y, NULL) != LATHE_OK) fail_msg("parts %d: %s", parts, lathe_graph_error(g));
        lathe_node *gw = lathe_grad(g, w), *r = gw->op == LT_OP_MUL ? gw->in[0] : NULL; /* all_reduce(gy) * x */
        if (!r || r->op != LT_OP_ALL_REDUCE || r->attr[0].v[0] != parts)
            fail_msg("parts %d: grad.w is not all_reduce(gy, %d) * x", parts, parts);
        if (parts == 1) {
            lathe_eval *ev = lathe_eval_new(g);
            assert_non_null(ev);
            double xv[3] = {1, 2, 3}, wv[3] = {4, 5, 6};
            assert_int_equal(lathe_eval_set(ev, "x", xv, sizeof xv), LATHE_OK);
            assert_int_equal(lathe_eval_set(ev, "w", wv, sizeof wv), LATHE_OK);
            if (lathe_eval_run(ev) != LATHE_OK) fail_msg("%s", lathe_eval_error(ev));
            const double *v = lathe_eval_value(ev, gw);
            assert_true(v[0] == 2 && v[1] == -2 && v[2] == 1.5);
            assert_true(lathe_eval_value(ev, y)[0] == 8 - 10 + 9);
            lathe_eval_free(ev);
        }
        lathe_graph_free(g);
    }
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_param(g, "x", LATHE_F64, LATHE_DIMS(2), true);
    lathe_node *y = lathe_sum(g, lathe_all_gather(g, x, 0, 2), 0, NULL, false);
    assert_int_equal(lathe_backward(g, 1, &y, NULL), LATHE_ERR_UNSUPPORTED);
    if (!strstr(lathe_graph_error(g),
                "autodiff: all_gather node %1 over 2 processes has no gradient: data-parallel programs gather after differentiation"))
        fail_msg("%s", lathe_graph_error(g));
    lathe_graph_free(g);
    const char *src = "%x = param \"x\" f32[2] grad\n"
                      "%y = all_gather %x axis=0 parts=3\n"
                      "%s = sum %y axes=[0] keepdim=false\n"
                      "output \"loss\" %s\n"
                      "backward %s\n";
    g = lathe_graph_new();
    assert_int_equal(lathe_parse(g, src, strlen(src), "dp.ir"), LATHE_OK);
    assert_int_equal(lathe_backward_marked(g), LATHE_ERR_UNSUPPORTED);
    if (!strstr(lathe_graph_error(g), "dp.ir:2:1: in the gradient of all_gather: autodiff: all_gather node %1 over 3 processes"))
        fail_msg("%s", lathe_graph_error(g));
    lathe_graph_free(g);
}

static void test_errors(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_input(g, "x", LATHE_F64, LATHE_DIMS(2));
    lathe_node *w = lathe_param(g, "w", LATHE_F64, LATHE_DIMS(2), true);
    lathe_node *y = lathe_mul(g, x, w), *gw;
    /* output that does not require grad */
    lathe_node *z = lathe_exp(g, x);
    assert_int_equal(lathe_backward(g, 1, &z, NULL), LATHE_ERR_ARG);
    assert_non_null(strstr(lathe_graph_error(g), "does not require grad"));
    lathe_graph_clear_error(g);
    /* implied cotangent for a vector output */
    assert_int_equal(lathe_backward(g, 1, &y, NULL), LATHE_ERR_SHAPE);
    assert_non_null(strstr(lathe_graph_error(g), "only for outputs with one element; output 0 is f64[2]"));
    lathe_graph_clear_error(g);
    /* cotangent of the wrong shape */
    lathe_node *c = lathe_const(g, LATHE_F64, LATHE_DIMS(3), (double[]){1, 2, 3});
    assert_int_equal(lathe_gradients(g, 1, &y, &c, 1, &w, &gw), LATHE_ERR_SHAPE);
    assert_non_null(strstr(lathe_graph_error(g), "cotangent f64[3] does not match output 0, f64[2]"));
    lathe_graph_clear_error(g);
    /* an op without a rule: max pooling's gradient, differentiated again */
    lathe_node *xi = lathe_input(g, "img", LATHE_F64, LATHE_DIMS(1, 1, 4, 4));
    lathe_set_requires_grad(xi, true);
    lathe_node *s = lathe_sum(g, lathe_pow_scalar(g, lathe_max_pool2d(g, xi, 2, 2, 0), 2), 0, NULL, false), *gx, *gxx;
    assert_int_equal(lathe_gradients(g, 1, &s, NULL, 1, &xi, &gx), LATHE_OK);
    lathe_node *s2 = lathe_sum(g, gx, 0, NULL, false);
    assert_int_equal(lathe_gradients(g, 1, &s2, NULL, 1, &xi, &gxx), LATHE_ERR_UNSUPPORTED);
    assert_non_null(strstr(lathe_graph_error(g), "no gradient rule for op 'max_pool2d_backward'"));
    lathe_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradcheck_every_sample),
        cmocka_unit_test(test_seed_q),
        cmocka_unit_test(test_text_backward),
        cmocka_unit_test(test_accumulation),
        cmocka_unit_test(test_no_grad_constant),
        cmocka_unit_test(test_dot_product),
        cmocka_unit_test(test_freezing),
        cmocka_unit_test(test_second_order_cube),
        cmocka_unit_test(test_hvp_mlp),
        cmocka_unit_test(test_second_order_conv),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_collectives),
        cmocka_unit_test(test_error_location),
        cmocka_unit_test(test_linear_no_features),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
