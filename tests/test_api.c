/* test_api.c - the tracing API beyond shapes: requires_grad as PyTorch
 * defines it, no_grad regions, freezing after tracing, the sticky error,
 * outputs, updates, introspection and the verifier. */
#include <string.h>

#include "testutil.h"

/* The seed: x, y plain tensors, z requires grad; x + y does not require grad,
 * x + z does. */
static void test_requires_grad_propagation(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_input(g, "x", LATHE_F32, LATHE_DIMS(5, 5));
    lathe_node *y = lathe_input(g, "y", LATHE_F32, LATHE_DIMS(5, 5));
    lathe_node *z = lathe_input(g, "z", LATHE_F32, LATHE_DIMS(5, 5));
    assert_int_equal(lathe_set_requires_grad(z, true), LATHE_OK);
    lathe_node *a = lathe_add(g, x, y), *b = lathe_add(g, x, z);
    assert_false(lathe_requires_grad(a));
    assert_true(lathe_requires_grad(b));
    assert_true(lathe_requires_grad(z));
    assert_false(lathe_requires_grad(x));
    /* comparisons, argmax and integer results never require grad */
    assert_false(lathe_requires_grad(lathe_gt(g, b, a)));
    assert_false(lathe_requires_grad(lathe_argmax(g, b, 1, false)));
    assert_false(lathe_requires_grad(lathe_cast(g, b, LATHE_I64)));
    assert_true(lathe_requires_grad(lathe_cast(g, b, LATHE_F64)));
    /* where's result requires grad through its value operands */
    assert_true(lathe_requires_grad(lathe_where(g, lathe_gt(g, x, y), x, z)));
    /* constants never do */
    assert_false(lathe_requires_grad(lathe_scalar(g, LATHE_F32, 2)));
    assert_graph_ok(g);
    lathe_graph_free(g);
}

static void test_no_grad(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *w = lathe_param(g, "w", LATHE_F32, LATHE_DIMS(3), true);
    lathe_no_grad_begin(g);
    lathe_node *a = lathe_mul(g, w, w);
    lathe_no_grad_begin(g); /* nested */
    lathe_node *b = lathe_exp(g, w);
    lathe_no_grad_end(g);
    lathe_node *c = lathe_neg(g, w);
    lathe_no_grad_end(g);
    lathe_node *d = lathe_add(g, a, w); /* outside again: requires grad through w */
    lathe_node *e = lathe_add(g, a, b); /* only no_grad operands */
    assert_false(lathe_requires_grad(a));
    assert_false(lathe_requires_grad(b));
    assert_false(lathe_requires_grad(c));
    assert_true(lathe_requires_grad(d));
    assert_false(lathe_requires_grad(e));
    lathe_no_grad_end(g); /* unbalanced end is harmless */
    assert_true(lathe_requires_grad(lathe_neg(g, w)));
    assert_graph_ok(g);
    lathe_graph_free(g);
}

/* Freezing after tracing is seen by everything built from the parameter,
 * as the seed's param.requires_grad = False before finetuning. */
static void test_freeze_after_trace(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_input(g, "x", LATHE_F32, LATHE_DIMS(2, 3));
    lathe_node *w1 = lathe_param(g, "conv.weight", LATHE_F32, LATHE_DIMS(4, 3), true);
    lathe_node *w2 = lathe_param(g, "fc.weight", LATHE_F32, LATHE_DIMS(2, 4), true);
    lathe_node *h = lathe_relu(g, lathe_linear(g, x, w1, NULL));
    lathe_node *y = lathe_linear(g, h, w2, NULL);
    assert_true(lathe_requires_grad(h));
    assert_int_equal(lathe_set_requires_grad(w1, false), LATHE_OK);
    assert_false(lathe_requires_grad(h));
    assert_true(lathe_requires_grad(y));
    assert_int_equal(lathe_set_requires_grad(w2, false), LATHE_OK);
    assert_false(lathe_requires_grad(y));
    /* the flag lives on leaves only */
    assert_int_equal(lathe_set_requires_grad(h, true), LATHE_ERR_ARG);
    assert_non_null(strstr(lathe_graph_error(g), "is not an input or param"));
    lathe_graph_free(g);
}

/* The first error sticks; later builders return NULL and keep it. */
static void test_sticky_error(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_input(g, "x", LATHE_F32, LATHE_DIMS(2, 3));
    lathe_node *bad = lathe_add(g, x, lathe_input(g, "y", LATHE_F32, LATHE_DIMS(4)));
    assert_null(bad);
    char first[1024];
    strcpy(first, lathe_graph_error(g));
    assert_non_null(strstr(first, "add: cannot broadcast"));
    assert_null(lathe_relu(g, bad));
    assert_null(lathe_exp(g, x)); /* even a valid call, until cleared */
    assert_null(lathe_input(g, "z", LATHE_F32, LATHE_DIMS(1)));
    assert_int_equal(lathe_output(g, "out", x), LATHE_ERR_SHAPE);
    assert_string_equal(lathe_graph_error(g), first);
    lathe_graph_clear_error(g);
    assert_int_equal(lathe_graph_status(g), LATHE_OK);
    assert_string_equal(lathe_graph_error(g), "");
    assert_non_null(lathe_exp(g, x));
    assert_int_equal(lathe_graph_verify(g), LATHE_OK);
    lathe_graph_free(g);
}

static void test_introspection(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_input(g, "x", LATHE_F32, LATHE_DIMS(2, 3, 4, 4));
    lathe_node *w = lathe_param(g, "bn1.weight", LATHE_F32, LATHE_DIMS(3), true);
    lathe_node *b = lathe_param(g, "bn1.bias", LATHE_F32, LATHE_DIMS(3), true);
    lathe_node *rm = lathe_buffer(g, "bn1.running_mean", LATHE_F32, LATHE_DIMS(3));
    lathe_node *rv = lathe_buffer(g, "bn1.running_var", LATHE_F32, LATHE_DIMS(3));
    lathe_node *y = lathe_batch_norm2d(g, x, w, b, rm, rv, true, 0.1, 1e-5);
    assert_int_equal(lathe_output(g, "y", y), LATHE_OK);
    assert_graph_ok(g);
    assert_ptr_equal(lathe_graph_find(g, "bn1.running_var"), rv);
    assert_ptr_equal(lathe_graph_find(g, "y"), y);
    assert_null(lathe_graph_find(g, "nope"));
    assert_ptr_equal(lathe_graph_find_output(g, "y"), y);
    assert_null(lathe_graph_find_output(g, "bn1.weight"));
    assert_int_equal(lathe_graph_num_outputs(g), 1);
    assert_string_equal(lathe_graph_output_name(g, 0), "y");
    assert_ptr_equal(lathe_graph_output(g, 0), y);
    assert_null(lathe_graph_output(g, 1));
    /* training batch norm records the running-statistics updates */
    assert_int_equal(lathe_graph_num_updates(g), 2);
    lathe_node *ub, *uv;
    lathe_graph_update(g, 0, &ub, &uv);
    assert_ptr_equal(ub, rm);
    assert_false(lathe_requires_grad(uv)); /* built in no_grad */
    lathe_graph_update(g, 1, &ub, &uv);
    assert_ptr_equal(ub, rv);
    assert_string_equal(lathe_node_op(y), "batch_norm2d");
    assert_int_equal(lathe_node_num_inputs(y), 5);
    assert_ptr_equal(lathe_node_input(y, 3), rm);
    assert_null(lathe_node_input(y, 5));
    assert_int_equal(lathe_node_rank(y), 4);
    assert_int_equal(lathe_node_numel(y), 96);
    assert_int_equal(lathe_node_shape(y)[1], 3);
    assert_int_equal(lathe_node_dtype(y), LATHE_F32);
    assert_string_equal(lathe_node_name(w), "bn1.weight");
    assert_null(lathe_node_name(y));
    assert_ptr_equal(lathe_graph_node(g, lathe_node_id(y)), y);
    /* eval mode records none */
    lathe_graph *h = lathe_graph_new();
    lathe_node *e = lathe_batch_norm2d(h, lathe_input(h, "x", LATHE_F32, LATHE_DIMS(1, 2, 1, 1)),
                                       lathe_param(h, "w", LATHE_F32, LATHE_DIMS(2), false),
                                       lathe_param(h, "b", LATHE_F32, LATHE_DIMS(2), false),
                                       lathe_buffer(h, "rm", LATHE_F32, LATHE_DIMS(2)),
                                       lathe_buffer(h, "rv", LATHE_F32, LATHE_DIMS(2)), false, 0.1, 1e-5);
    assert_non_null(e);
    assert_int_equal(lathe_graph_num_updates(h), 0);
    lathe_graph_free(h);
    lathe_graph_free(g);
}

static void test_names_and_sizes(void **state) {
    (void)state;
    assert_string_equal(lathe_dtype_name(LATHE_F32), "f32");
    assert_string_equal(lathe_dtype_name(LATHE_BOOL), "bool");
    assert_int_equal(lathe_dtype_size(LATHE_F64), 8);
    assert_int_equal(lathe_dtype_size(LATHE_BOOL), sizeof(bool));
    assert_string_equal(lathe_status_name(LATHE_OK), "ok");
    assert_string_equal(lathe_status_name(LATHE_ERR_CYCLE), "cycle");
    assert_string_equal(lathe_status_name((lathe_status)99), "unknown status");
    /* the op table and its enum agree */
    assert_int_equal(lt_op_lookup("conv2d", 6), LT_OP_CONV2D);
    assert_int_equal(lt_op_lookup("nope", 4), -1);
    lt_attrspec spec[LT_MAX_ATTRS];
    assert_int_equal(lt_op_schema(LT_OP_CONV2D, spec), 4);
    assert_string_equal(spec[3].name, "groups");
    assert_int_equal(spec[0].type, LT_A_PAIR);
    for (int op = 0; op < LT_OP_COUNT; op++) {
        assert_int_equal(lt_op_lookup(lt_ops[op].name, strlen(lt_ops[op].name)), op);
        lt_op_schema((lt_op)op, spec); /* asserts on a malformed schema */
    }
}

/* A pass that breaks an invariant is caught by the verifier. */
static void test_verifier_catches_corruption(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_input(g, "x", LATHE_F32, LATHE_DIMS(2, 3));
    lathe_node *y = lathe_relu(g, x);
    lathe_node *z = lathe_exp(g, y);
    assert_int_equal(lathe_graph_verify(g), LATHE_OK);
    y->shape[1] = 4; /* stale type */
    assert_int_equal(lathe_graph_verify(g), LATHE_ERR_VERIFY);
    assert_non_null(strstr(lathe_graph_error(g), "rule gives"));
    lathe_graph_clear_error(g);
    y->shape[1] = 3;
    y->in[0] = z; /* operand after use: a cycle */
    assert_int_equal(lathe_graph_verify(g), LATHE_ERR_VERIFY);
    assert_non_null(strstr(lathe_graph_error(g), "cycle"));
    lathe_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requires_grad_propagation),
        cmocka_unit_test(test_no_grad),
        cmocka_unit_test(test_freeze_after_trace),
        cmocka_unit_test(test_sticky_error),
        cmocka_unit_test(test_introspection),
        cmocka_unit_test(test_names_and_sizes),
        cmocka_unit_test(test_verifier_catches_corruption),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
