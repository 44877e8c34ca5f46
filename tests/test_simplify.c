/* test_simplify.c - dead code, common subexpressions, constant folding and
 * algebraic identities.  Each identity is a row: a graph builder, the ops
 * that must be gone (or stay) afterwards; every simplified graph must give
 * the same outputs as the original under the reference evaluator. */
#include <math.h>
#include <string.h>

#include "lathe_compiler.h"
#include "testutil.h"

static int count(const lathe_graph *g, lt_op op) {
    int k = 0;
    for (int i = 0; i < g->nnodes; i++) k += g->nodes[i]->op == op;
    return k;
}

/* Evaluate every output of a and b with the same random bindings; they must
 * agree to rtol (NaN only where NaN). */
static void same_outputs(const char *label, lathe_graph *a, lathe_graph *b, double rtol, uint64_t seed) {
    lathe_eval *ea = lathe_eval_new(a), *eb = lathe_eval_new(b);
    if (!ea || !eb) fail_msg("%s: %s / %s", label, lathe_graph_error(a), lathe_graph_error(b));
    bind_random(ea, a, seed);
    bind_random(eb, b, seed);
    if (lathe_eval_run(ea) || lathe_eval_run(eb)) fail_msg("%s: run: %s %s", label, lathe_eval_error(ea), lathe_eval_error(eb));
    if (lathe_graph_num_outputs(a) != lathe_graph_num_outputs(b))
        fail_msg("%s: %d outputs before, %d after", label, lathe_graph_num_outputs(a), lathe_graph_num_outputs(b));
    for (int i = 0; i < lathe_graph_num_outputs(a); i++) {
        lathe_node *x = lathe_graph_output(a, i), *y = lathe_graph_find_output(b, lathe_graph_output_name(a, i));
        assert_non_null(y);
        assert_int_equal(x->numel, y->numel);
        const double *u = lathe_eval_value(ea, x), *v = lathe_eval_value(eb, y);
        for (int64_t e = 0; e < x->numel; e++) {
            bool ok = (isnan(u[e]) && isnan(v[e])) || fabs(u[e] - v[e]) <= rtol * fabs(u[e]) + 1e-300;
            if (!ok) fail_msg("%s: output %s[%lld]: %.17g before, %.17g after", label, lathe_graph_output_name(a, i), (long long)e, u[e], v[e]);
        }
    }
    for (int i = 0; i < lathe_graph_num_nodes(a); i++) { /* updated buffers agree too */
        const lathe_node *n = lathe_graph_node(a, i);
        if (n->op != LT_OP_BUFFER) continue;
        const double *u = lathe_eval_leaf(ea, n->name), *v = lathe_eval_leaf(eb, n->name);
        for (int64_t e = 0; e < n->numel; e++) assert_true(fabs(u[e] - v[e]) <= rtol * fabs(u[e]));
    }
    lathe_eval_free(ea);
    lathe_eval_free(eb);
}

#define D LATHE_DIMS
typedef lathe_node *(*build_fn)(lathe_graph *g, lathe_node *x);
#define B(fn) static lathe_node *fn(lathe_graph *g, lathe_node *x)
static lathe_node *k(lathe_graph *g, double v) { return lathe_scalar(g, LATHE_F64, v); }
B(b_mul1) { return lathe_mul(g, x, k(g, 1)); }
B(b_1mul) { return lathe_mul(g, lathe_broadcast_to(g, k(g, 1), D(2, 3)), x); }
B(b_add0) { return lathe_add(g, x, k(g, 0)); }
B(b_sub0) { return lathe_sub(g, x, k(g, 0)); }
B(b_0sub) { return lathe_sub(g, lathe_broadcast_to(g, k(g, 0), D(2, 3)), x); }
B(b_div1) { return lathe_div(g, x, k(g, 1)); }
B(b_mulm1) { return lathe_mul(g, x, k(g, -1)); }
B(b_negneg) { return lathe_neg(g, lathe_neg(g, x)); }
B(b_tt) { return lathe_transpose(g, lathe_transpose(g, x, 0, 1), 0, 1); }
B(b_perm3) {
    lathe_node *r = lathe_reshape(g, x, D(1, 2, 3));
    return lathe_permute(g, lathe_permute(g, r, LATHE_AXES(1, 2, 0)), LATHE_AXES(2, 0, 1));
}
B(b_rr) { return lathe_reshape(g, lathe_reshape(g, x, D(3, 2)), D(6)); }
B(b_rsame) { return lathe_reshape(g, x, D(2, 3)); }
B(b_bsame) { return lathe_broadcast_to(g, x, D(2, 3)); }
B(b_sumbcast) { return lathe_sum(g, lathe_broadcast_to(g, lathe_reshape(g, x, D(1, 2, 3)), D(4, 2, 3)), LATHE_AXES(0), false); }
B(b_cse) { return lathe_add(g, lathe_exp(g, x), lathe_exp(g, x)); }
B(b_fold) { return lathe_mul(g, x, lathe_mul(g, k(g, 2), k(g, 3))); }
B(b_dead) {
    lathe_tanh(g, lathe_sigmoid(g, x)); /* unused */
    return lathe_relu(g, x);
}
B(b_mul0) { return lathe_mul(g, x, k(g, 0)); }       /* not folded: x may be inf */
B(b_where_same) { return lathe_where(g, lathe_gt(g, x, k(g, 0)), x, x); }
B(b_cast_same) { return lathe_cast(g, x, LATHE_F64); }
B(b_slice_all) { return lathe_slice(g, x, 1, 0, 3, 1); }
B(b_pow1) { return lathe_pow_scalar(g, x, 1); }
B(b_leaky1) { return lathe_leaky_relu(g, x, 1); }
B(b_clamp_none) { return lathe_clamp(g, x, -INFINITY, INFINITY); }
B(b_clamp_one) { return lathe_clamp(g, x, -INFINITY, 6); } /* kept: one bound */
B(b_sumkeep) { /* the same sum kept and not: one sum */
    lathe_node *kept = lathe_reshape(g, lathe_sum(g, x, LATHE_AXES(0), true), D(3));
    return lathe_add(g, kept, lathe_sum(g, x, LATHE_AXES(0), false));
}
B(b_gather1) { return lathe_all_gather(g, x, 1, 1); }

static const struct {
    const char *label;
    build_fn fn;
    lt_op gone, kept;  /* an op that must disappear; one that must stay (LT_OP_INPUT: none) */
    int max_nodes;     /* node bound after simplification */
} rows[] = {
    {"x*1", b_mul1, LT_OP_MUL, LT_OP_INPUT, 1},
    {"1*x (broadcast one)", b_1mul, LT_OP_MUL, LT_OP_INPUT, 1},
    {"x+0", b_add0, LT_OP_ADD, LT_OP_INPUT, 1},
    {"x-0", b_sub0, LT_OP_SUB, LT_OP_INPUT, 1},
    {"0-x", b_0sub, LT_OP_SUB, LT_OP_NEG, 2},
    {"x/1", b_div1, LT_OP_DIV, LT_OP_INPUT, 1},
    {"x*-1", b_mulm1, LT_OP_MUL, LT_OP_NEG, 2},
    {"--x", b_negneg, LT_OP_NEG, LT_OP_INPUT, 1},
    {"transpose of transpose", b_tt, LT_OP_PERMUTE, LT_OP_INPUT, 1},
    {"permute of permute", b_perm3, LT_OP_PERMUTE, LT_OP_RESHAPE, 3},
    {"reshape of reshape", b_rr, LT_OP_CONST, LT_OP_RESHAPE, 2},
    {"reshape to the same shape", b_rsame, LT_OP_RESHAPE, LT_OP_INPUT, 1},
    {"broadcast to the same shape", b_bsame, LT_OP_BROADCAST_TO, LT_OP_INPUT, 1},
    {"sum of a broadcast", b_sumbcast, LT_OP_SUM, LT_OP_MUL, 3},
    {"common subexpression", b_cse, LT_OP_CONST, LT_OP_EXP, 3},
    {"constant folding", b_fold, LT_OP_INPUT, LT_OP_MUL, 3},
    {"dead code", b_dead, LT_OP_SIGMOID, LT_OP_RELU, 2},
    {"x*0 kept", b_mul0, LT_OP_INPUT, LT_OP_MUL, 3},
    {"where(c, x, x)", b_where_same, LT_OP_WHERE, LT_OP_INPUT, 1},
    {"cast to the same dtype", b_cast_same, LT_OP_CAST, LT_OP_INPUT, 1},
    {"slice of a whole axis", b_slice_all, LT_OP_SLICE, LT_OP_INPUT, 1},
    {"x**1", b_pow1, LT_OP_POW_SCALAR, LT_OP_INPUT, 1},
    {"leaky_relu with slope 1", b_leaky1, LT_OP_LEAKY_RELU, LT_OP_INPUT, 1},
    {"clamp without bounds", b_clamp_none, LT_OP_CLAMP, LT_OP_INPUT, 1},
    {"clamp with one bound kept", b_clamp_one, LT_OP_INPUT, LT_OP_CLAMP, 2},
    {"a sum kept and not kept", b_sumkeep, LT_OP_INPUT, LT_OP_SUM, 4},
    {"all_gather over one process", b_gather1, LT_OP_ALL_GATHER, LT_OP_INPUT, 1},
};

static void test_identities(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        lathe_graph *g = lathe_graph_new();
        lathe_node *x = lathe_input(g, "x", LATHE_F64, D(2, 3));
        lathe_output(g, "y", rows[i].fn(g, x));
        assert_graph_ok(g);
        lathe_graph *s = lathe_simplify(g);
        if (lathe_graph_status(s) != LATHE_OK) fail_msg("%s: %s", rows[i].label, lathe_graph_error(s));
        if (rows[i].gone != LT_OP_INPUT && rows[i].gone != LT_OP_CONST && count(s, rows[i].gone))
            fail_msg("%s: %s still there", rows[i].label, lt_ops[rows[i].gone].name);
        if (rows[i].kept != LT_OP_INPUT && !count(s, rows[i].kept))
            fail_msg("%s: %s is gone", rows[i].label, lt_ops[rows[i].kept].name);
        if (s->nnodes > rows[i].max_nodes)
            fail_msg("%s: %d nodes after simplification, expected at most %d", rows[i].label, s->nnodes, rows[i].max_nodes);
        same_outputs(rows[i].label, g, s, 1e-15, 1);
        lathe_graph_free(s);
        lathe_graph_free(g);
    }
}

/* A gather over 2 processes of a constant is not folded: the evaluator,
 * which folding runs, is one process and refuses it; simplification goes on
 * without an error and keeps the gather. */
static void test_gather_not_folded(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *c = lathe_const(g, LATHE_F64, D(2), (double[]){1, 2});
    lathe_output(g, "y", lathe_mul(g, lathe_all_gather(g, c, 0, 2), lathe_input(g, "x", LATHE_F64, D(4))));
    assert_graph_ok(g);
    lathe_graph *s = lathe_simplify(g);
    if (lathe_graph_status(s) != LATHE_OK) fail_msg("%s", lathe_graph_error(s));
    assert_int_equal(count(s, LT_OP_ALL_GATHER), 1);
    assert_int_equal(lathe_graph_output(s, 0)->shape[0], 4);
    lathe_graph_free(s);
    lathe_graph_free(g);
}

/* (a @ b)^T becomes b^T @ a^T when nothing else reads a @ b (batched and
 * broadcast too: [5, 2, 3] @ [3, 4]); with a second reader it stays.  The
 * values agree with the original's under the evaluator. */
static void test_transpose_of_product(void **state) {
    (void)state;
    for (int shared = 0; shared < 2; shared++)
        for (int batched = 0; batched < 2; batched++) {
            lathe_graph *g = lathe_graph_new();
            lathe_node *x = batched ? lathe_input(g, "x", LATHE_F64, D(5, 2, 3)) : lathe_input(g, "x", LATHE_F64, D(2, 3));
            lathe_node *b = lathe_input(g, "b", LATHE_F64, D(3, 4));
            lathe_node *p = lathe_matmul(g, x, b);
            lathe_output(g, "y", lathe_transpose(g, p, batched, batched + 1));
            if (shared) lathe_output(g, "p", p);
            assert_graph_ok(g);
            lathe_graph *s = lathe_simplify(g);
            assert_int_equal(lathe_graph_status(s), LATHE_OK);
            lathe_node *y = lathe_graph_find_output(s, "y");
            if (shared) {
                assert_int_equal(y->op, LT_OP_PERMUTE);
                assert_int_equal(count(s, LT_OP_MATMUL), 1);
            } else {
                assert_int_equal(y->op, LT_OP_MATMUL);
                assert_true(y->in[0]->op == LT_OP_PERMUTE && y->in[0]->in[0]->op == LT_OP_INPUT &&
                            !strcmp(y->in[0]->in[0]->name, "b"));
                assert_true(y->in[1]->op == LT_OP_PERMUTE && !strcmp(y->in[1]->in[0]->name, "x"));
            }
            same_outputs("transpose of a product", g, s, 1e-15, 3);
            lathe_graph_free(s);
            lathe_graph_free(g);
        }
}

/* CSE must not merge distinct named leaves, and nodes built in no_grad keep
 * their flag (a no_grad x*1 is not replaced by x, which requires grad). */
static void test_leaves_and_no_grad(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *a = lathe_param(g, "a", LATHE_F64, D(2), true), *b = lathe_param(g, "b", LATHE_F64, D(2), true);
    lathe_no_grad_begin(g);
    lathe_node *c = lathe_mul(g, a, lathe_scalar(g, LATHE_F64, 1));
    lathe_no_grad_end(g);
    lathe_output(g, "y", lathe_add(g, lathe_add(g, a, b), c));
    lathe_graph *s = lathe_simplify(g);
    assert_int_equal(lathe_graph_status(s), LATHE_OK);
    assert_int_equal(count(s, LT_OP_PARAM), 2);
    assert_int_equal(count(s, LT_OP_MUL), 1);
    lathe_node *y = lathe_graph_find(s, "y");
    assert_true(lathe_requires_grad(y));
    assert_false(lathe_requires_grad(y->in[1]));
    lathe_graph_free(s);
    lathe_graph_free(g);
}

/* For every sample: forward plus backward, simplified, computes the same
 * values, keeps the interface, verifies, and is no larger. */
static void test_samples_with_gradients(void **state) {
    (void)state;
    int shrank = 0, total = 0;
    for (int i = 0; i < nsamples; i++) {
        lathe_graph *g = sample_graph(&samples[i], LATHE_F64);
        lathe_node *y = lathe_graph_output(g, 0);
        if (lathe_requires_grad(y) && samples[i].op != LT_OP_MAX_POOL2D_BACKWARD) { /* no rule for it */
            lathe_node *l = lathe_sum(g, lathe_mul(g, y, y), 0, NULL, false);
            if (lathe_backward(g, 1, &l, NULL) != LATHE_OK) fail_msg("%s: %s", samples[i].label, lathe_graph_error(g));
        }
        lathe_graph *s = lathe_simplify(g);
        if (lathe_graph_status(s) != LATHE_OK) fail_msg("%s: %s", samples[i].label, lathe_graph_error(s));
        assert_true(s->nnodes <= g->nnodes);
        shrank += s->nnodes < g->nnodes;
        total++;
        same_outputs(samples[i].label, g, s, 1e-12, 2);
        /* simplifying again changes nothing */
        lathe_graph *s2 = lathe_simplify(s);
        char *t1 = lathe_graph_to_text(s), *t2 = lathe_graph_to_text(s2);
        if (strcmp(t1, t2) != 0) fail_msg("%s: simplify is not idempotent:\n%s\n---\n%s", samples[i].label, t1, t2);
        free(t1);
        free(t2);
        lathe_graph_free(s2);
        lathe_graph_free(s);
        lathe_graph_free(g);
    }
    assert_true(shrank * 2 > total); /* most backward graphs have something to simplify */
}

/* The seed's backward graph after simplification is about what a person
 * would write: 9a^2 and -2b need a handful of ops each. */
static void test_seed_backward_size(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *a = lathe_input(g, "a", LATHE_F32, D(2)), *b = lathe_input(g, "b", LATHE_F32, D(2));
    lathe_set_requires_grad(a, true);
    lathe_set_requires_grad(b, true);
    lathe_node *q = lathe_sub(g, lathe_mul(g, lathe_scalar(g, LATHE_F32, 3), lathe_pow_scalar(g, a, 3)),
                              lathe_pow_scalar(g, b, 2));
    lathe_output(g, "Q", q);
    lathe_node *ext = lathe_input(g, "external_grad", LATHE_F32, D(2));
    assert_int_equal(lathe_backward(g, 1, &q, &ext), LATHE_OK);
    lathe_graph *s = lathe_simplify(g);
    assert_int_equal(lathe_graph_status(s), LATHE_OK);
    /* forward: a, b, ext, 3, a^3, 3a^3, b^2, Q = 8 nodes.  backward:
     * a: ext*3 (folded const 3 shared), a^2, const 3, two muls; b: neg, const 2,
     * two muls; allow a little slack for how the rules associate. */
    if (s->nnodes > 18) {
        char *t = lathe_graph_to_text(s);
        fail_msg("backward of Q has %d nodes after simplification:\n%s", s->nnodes, t);
    }
    assert_true(s->nnodes < g->nnodes);
    lathe_graph_free(s);
    lathe_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identities),
        cmocka_unit_test(test_transpose_of_product),
        cmocka_unit_test(test_gather_not_folded),
        cmocka_unit_test(test_leaves_and_no_grad),
        cmocka_unit_test(test_samples_with_gradients),
        cmocka_unit_test(test_seed_backward_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
