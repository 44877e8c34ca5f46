/* test_shapes.c - shape and dtype inference for every op, and the table of
 * bad builder calls with the error each must give.
 *
 * Expected types are worked out by hand from PyTorch's rules (see the
 * comments); the bad-input rows name the status and a piece of the message
 * that must appear, so a vague or wrong error fails. */
#include <math.h>
#include <string.h>

#include "testutil.h"

/* Hand-derived result type of every sample in f64. */
static const struct {
    const char *label, *type;
} expected_types[] = {
    {"input", "f64[2,3]"}, {"param", "f64[2,3]"}, {"buffer", "f64[3]"}, {"const", "f64[2,2]"},
    {"const/scalar", "f64[2]"},
    {"add", "f64[2,3]"},         /* [2,3] + [3] */
    {"add/rank0", "f64[2,3]"},   /* [] + [2,3] */
    {"add/size1", "f64[2,3]"},   /* [2,1] + [1,3] */
    {"add/zero-size", "f64[0,3]"},
    {"add/batch1", "f64[1,2,3]"}, /* [1,2,3] + [2,1] */
    {"sub", "f64[2,3]"}, {"mul", "f64[2,3]"}, {"div", "f64[2,3]"}, {"pow", "f64[2,3]"},
    {"maximum", "f64[2,3]"}, {"minimum", "f64[2,3]"}, {"gt", "f64[2,3]"}, {"ge", "f64[2,3]"},
    {"lt", "f64[2,3]"}, {"le", "f64[2,3]"}, {"eq", "f64[2,3]"}, {"ne", "f64[2,3]"},
    {"where", "f64[2,3]"}, /* bool[2,1], [2,3], [3] */
    {"neg", "f64[2,3]"}, {"exp", "f64[2,3]"}, {"log", "f64[2,3]"}, {"sqrt", "f64[2,3]"},
    {"rsqrt", "f64[2,3]"}, {"abs", "f64[2,3]"}, {"relu", "f64[2,3]"}, {"sigmoid", "f64[2,3]"},
    {"tanh", "f64[2,3]"}, {"erf", "f64[2,3]"}, {"gelu", "f64[2,3]"}, {"gelu/tanh", "f64[2,3]"},
    {"silu", "f64[2,3]"}, {"softplus", "f64[2,3]"}, {"softplus/threshold", "f64[2,3]"},
    {"leaky_relu", "f64[2,3]"}, {"clamp", "f64[2,3]"}, {"clamp/one-sided", "f64[2,3]"},
    {"pow_scalar", "f64[2,3]"}, {"pow_scalar/frac", "f64[4]"},
    {"cast", "f64[2,3]"}, {"cast/int", "f64[5]"},
    {"sum", "f64[2,1,4]"},        /* [2,3,4] axes 1 keepdim */
    {"sum/all", "f64[]"},
    {"sum/neg-axes", "f64[3]"},   /* [2,3,4] axes -1, 0 */
    {"mean", "f64[3]"},           /* [2,3,4] axes 0, 2 */
    {"max", "f64[2]"},
    {"max/keepdim", "f64[1,3,1]"}, /* [2,3,2] axes 0, 2 keepdim */
    {"min", "f64[2]"},
    {"min/keepdim", "f64[1,3,1]"},
    {"argmax", "f64[2]"},
    {"reshape", "f64[3,2]"}, {"reshape/infer", "f64[6,4]"}, /* 24 / 4 */
    {"flatten", "f64[2,12]"},     /* [2,3,2,2] from 1 to -1 */
    {"permute", "f64[4,2,3]"},    /* [2,3,4] perm 2,0,1 */
    {"permute/transpose", "f64[3,2]"}, {"broadcast_to", "f64[2,3,4]"},
    {"concat", "f64[2,6]"},       /* 1 + 3 + 2 */
    {"concat/one", "f64[2,3]"},
    {"slice", "f64[3,2]"},        /* 7 rows, 1:6:2 -> 1,3,5 */
    {"slice/negative", "f64[2,3]"}, /* 5 cols, -3:100 -> 2,3,4 */
    {"matmul", "f64[2,4]"},
    {"matmul/batched", "f64[2,3,2,2]"}, /* batch [2,1] with [3] */
    {"linear", "f64[2,4]"}, {"linear/nobias", "f64[2,2,4]"},
    {"conv2d", "f64[1,3,5,5]"},   /* 5 + 2*1 - 3 + 1 */
    {"conv2d/stride-dilation-groups", "f64[2,4,3,3]"}, /* (7+2-5)/2+1 */
    {"conv2d/hw-depthwise", "f64[1,3,3,3]"}, /* H (6-2)/2+1, W (5+2-5)/1+1 */
    {"max_pool2d", "f64[1,2,3,3]"}, /* (5+2-3)/2+1 */
    {"max_pool2d/hw", "f64[2,1,2,6]"}, /* H (4-2)/2+1, W (6+2-3)/1+1 */
    {"avg_pool2d", "f64[1,2,2,2]"}, {"avg_pool2d/pad", "f64[1,1,3,3]"},
    {"avg_pool2d/exclude-pad", "f64[1,1,3,3]"},
    {"adaptive_avg_pool2d", "f64[1,2,2,3]"}, {"adaptive_avg_pool2d/1x1", "f64[2,3,1,1]"},
    {"batch_norm2d/train", "f64[2,3,2,2]"}, {"batch_norm2d/eval", "f64[2,3,2,2]"},
    {"softmax", "f64[2,3]"}, {"softmax/axis0", "f64[3,2]"}, {"log_softmax", "f64[2,4]"},
    {"cross_entropy", "f64[]"}, {"cross_entropy/sum", "f64[]"}, {"cross_entropy/none", "f64[4]"},
    {"nll_loss", "f64[]"}, {"nll_loss/sum", "f64[]"},
    {"cross_entropy/seq-ignore-smoothing", "f64[]"}, {"cross_entropy/seq-none", "f64[2,4]"},
    {"nll_loss/seq-ignore", "f64[]"}, {"dropout", "f64[4,5]"},
    {"mse_loss", "f64[]"}, {"mse_loss/sum", "f64[]"}, {"mse_loss/none", "f64[2,3]"},
    /* gradient kernels: the forward op's input (or weight) type */
    {"slice_backward", "f64[7,2]"},                /* gy [3,2], axis 0 back to 7 */
    {"slice_backward/negative-axis", "f64[2,5]"},  /* gy [2,2], axis -1 back to 5 */
    {"conv2d_backward_input", "f64[2,4,7,7]"},     /* N 2, C 2*2 groups, size 7x7 */
    {"conv2d_backward_input/hw-depthwise", "f64[1,3,7,5]"}, /* C 1*3 groups */
    {"conv2d_backward_weight", "f64[4,2,3,3]"},    /* K 4, C/groups 4/2, kernel 3x3 */
    {"conv2d_backward_weight/hw-depthwise", "f64[3,1,2,3]"},
    {"max_pool2d_backward", "f64[1,2,5,5]"},       /* x's type */
    {"max_pool2d_backward/hw", "f64[2,1,4,6]"},
    {"avg_pool2d_backward", "f64[1,1,5,5]"},       /* N, C of gy, size 5x5 */
    {"avg_pool2d_backward/exclude-pad", "f64[1,1,6,5]"},
    {"adaptive_avg_pool2d_backward", "f64[1,2,5,7]"},
    {"adaptive_avg_pool2d_backward/1x1", "f64[2,3,4,4]"},
    {"index_select", "f64[2,3,4]"},                /* x [3,4], axis 0, index [2,3] */
    {"index_select/middle-axis", "f64[2,4,2]"},    /* x [2,3,2], axis -2, index [4] */
    {"index_select/rank0-index", "f64[2]"},        /* x [2,5], axis 1, index [] */
    {"index_select_backward", "f64[3,4]"},         /* gy [2,3,4], index [2,3] back to 3 rows */
    {"index_select_backward/middle-axis", "f64[2,3,2]"}, /* gy [2,4,2], index [4] */
    {"layer_norm", "f64[3,4]"}, {"layer_norm/last-two", "f64[2,3,4]"}, /* x's type */
    {"layer_norm/no-affine", "f64[2,5]"}, {"layer_norm/whole-weight-only", "f64[3,4]"},
    /* one process: a gather along axis multiplies its dim by 1 */
    {"all_gather", "f64[2,3]"}, {"all_gather/middle-axis", "f64[2,3,2]"},
    {"all_reduce", "f64[2,3]"}, {"all_reduce/rank6", "f64[2,1,3,1,2,2]"}, /* x's type */
};

static void test_every_op_has_a_sample(void **state) {
    (void)state;
    for (int op = 0; op < LT_OP_COUNT; op++) {
        bool found = false;
        for (int i = 0; i < nsamples; i++) found = found || samples[i].op == (lt_op)op;
        if (!found) fail_msg("op %s has no sample in tests/testutil.c", lt_ops[op].name);
    }
}

static void test_sample_types(void **state) {
    (void)state;
    assert_int_equal(nsamples, (int)(sizeof expected_types / sizeof expected_types[0]));
    for (int i = 0; i < nsamples; i++) {
        assert_string_equal(samples[i].label, expected_types[i].label);
        for (int t = LATHE_F32; t <= LATHE_F64; t++) {
            lathe_graph *g = sample_graph(&samples[i], (lathe_dtype)t);
            char got[160], want[160];
            lathe_node_type_str(lathe_graph_output(g, 0), got, sizeof got);
            snprintf(want, sizeof want, "%s%s", t == LATHE_F32 ? "f32" : "f64", expected_types[i].type + 3);
            if (strcmp(got, want) != 0) fail_msg("%s: got %s, want %s", samples[i].label, got, want);
            assert_int_equal(lathe_graph_verify(g), LATHE_OK);
            lathe_graph_free(g);
        }
    }
}

/* Normalized attributes: negative axes wrapped, -1 resolved, slice clamped. */
static void test_normalized_attrs(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_input(g, "x", LATHE_F32, LATHE_DIMS(2, 3, 4));
    lathe_node *s = lathe_sum(g, x, LATHE_AXES(-1, 0), false);
    assert_int_equal(s->attr[0].n, 2);
    assert_int_equal(s->attr[0].v[0], 0);
    assert_int_equal(s->attr[0].v[1], 2);
    lathe_node *r = lathe_reshape(g, x, LATHE_DIMS(-1, 6));
    assert_int_equal(r->attr[0].v[0], 4);
    lathe_node *sl = lathe_slice(g, x, -2, -100, -1, 1);
    assert_int_equal(sl->attr[0].v[0], 1);
    assert_int_equal(sl->attr[1].v[0], 0);
    assert_int_equal(sl->attr[2].v[0], 2);
    assert_int_equal(sl->shape[1], 2);
    lathe_node *e = lathe_slice(g, x, 2, 3, 1, 1); /* end before start: empty */
    assert_int_equal(e->shape[2], 0);
    lathe_node *f = lathe_flatten(g, lathe_scalar(g, LATHE_F32, 1), 0, -1); /* torch: [1] */
    assert_int_equal(f->rank, 1);
    assert_int_equal(f->shape[0], 1);
    lathe_node *a = lathe_argmax(g, x, -1, true);
    assert_int_equal(a->dtype, LATHE_I64);
    assert_int_equal(a->attr[0].v[0], 2);
    lathe_node *c = lathe_gt(g, x, x);
    assert_int_equal(c->dtype, LATHE_BOOL);
    lathe_node *ag = lathe_all_gather(g, x, -2, 3); /* dim 1 of 3 processes */
    assert_int_equal(ag->attr[0].v[0], 1);
    assert_int_equal(ag->attr[1].v[0], 3);
    assert_int_equal(ag->shape[1], 9);
    lathe_node *ar = lathe_all_reduce(g, lathe_input(g, "steps", LATHE_I64, LATHE_DIMS(2)), 4);
    assert_int_equal(ar->dtype, LATHE_I64);
    assert_int_equal(ar->shape[0], 2);
    assert_graph_ok(g);
    lathe_graph_free(g);
}

/* ---- bad builder calls ------------------------------------------------------ */

#define F32 LATHE_F32
typedef lathe_node *(*bad_fn)(lathe_graph *g);
#define BAD(fn) static lathe_node *fn(lathe_graph *g)
#define IN32(name, ...) lathe_input(g, name, F32, LATHE_DIMS(__VA_ARGS__))

BAD(b_broadcast) { return lathe_add(g, IN32("x", 2, 3), IN32("y", 4)); }
BAD(b_broadcast_where) { return lathe_where(g, lathe_input(g, "c", LATHE_BOOL, LATHE_DIMS(3)), IN32("x", 2, 3), IN32("y", 2, 1, 2)); }
BAD(b_axis) { return lathe_sum(g, IN32("x", 2, 3), LATHE_AXES(2), false); }
BAD(b_axis_neg) { return lathe_softmax(g, IN32("x", 2, 3), -3); }
BAD(b_axis_dup) { return lathe_mean(g, IN32("x", 2, 3), LATHE_AXES(1, -1), false); }
BAD(b_axis_rank0) { return lathe_argmax(g, lathe_scalar(g, F32, 1), 0, false); }
BAD(b_reshape_count) { return lathe_reshape(g, IN32("x", 2, 3), LATHE_DIMS(4, 2)); }
BAD(b_reshape_two_infer) { return lathe_reshape(g, IN32("x", 2, 3), LATHE_DIMS(-1, -1)); }
BAD(b_reshape_infer_bad) { return lathe_reshape(g, IN32("x", 2, 3), LATHE_DIMS(-1, 4)); }
static lathe_node *conv(lathe_graph *g, int64_t k, int64_t s, int64_t p, int64_t d, int64_t groups) {
    return lathe_conv2d(g, IN32("x", 1, 2, 3, 3), lathe_param(g, "w", F32, LATHE_DIMS(2, 2 / (groups > 0 ? groups : 1), k, k), true), NULL, s, p, d, groups);
}
BAD(b_conv_kernel) { return conv(g, 5, 1, 0, 1, 1); }
BAD(b_conv_dilated) { return conv(g, 2, 1, 0, 3, 1); }  /* extent 4 > 3 */
BAD(b_conv_stride0) { return conv(g, 2, 0, 0, 1, 1); }
BAD(b_conv_stride_neg) { return conv(g, 2, -1, 0, 1, 1); }
BAD(b_conv_dilation0) { return conv(g, 2, 1, 0, 0, 1); }
BAD(b_conv_padding_neg) { return conv(g, 2, 1, -1, 1, 1); }
BAD(b_conv_groups0) { return conv(g, 2, 1, 0, 1, 0); }
BAD(b_conv_groups) {
    return lathe_conv2d(g, IN32("x", 1, 3, 4, 4), lathe_param(g, "w", F32, LATHE_DIMS(4, 1, 2, 2), true), NULL, 1, 0, 1, 2);
}
BAD(b_conv_channels) {
    return lathe_conv2d(g, IN32("x", 1, 3, 4, 4), lathe_param(g, "w", F32, LATHE_DIMS(4, 2, 2, 2), true), NULL, 1, 0, 1, 1);
}
BAD(b_conv_rank) { return lathe_conv2d(g, IN32("x", 3, 4, 4), lathe_param(g, "w", F32, LATHE_DIMS(4, 3, 2, 2), true), NULL, 1, 0, 1, 1); }
BAD(b_conv_bias) {
    return lathe_conv2d(g, IN32("x", 1, 3, 4, 4), lathe_param(g, "w", F32, LATHE_DIMS(4, 3, 2, 2), true),
                        lathe_param(g, "b", F32, LATHE_DIMS(3), true), 1, 0, 1, 1);
}
BAD(b_pool_stride0) { return lathe_max_pool2d(g, IN32("x", 1, 1, 4, 4), 2, 0, 0); }
BAD(b_pool_kernel) { return lathe_avg_pool2d(g, IN32("x", 1, 1, 2, 2), 3, 1, 0, true); }
BAD(b_pool_padding) { return lathe_max_pool2d(g, IN32("x", 1, 1, 4, 4), 2, 1, 2); }
BAD(b_adaptive0) { return lathe_adaptive_avg_pool2d(g, IN32("x", 1, 1, 4, 4), 0, 1); }
BAD(b_dtype) { return lathe_add(g, IN32("x", 2), lathe_input(g, "y", LATHE_F64, LATHE_DIMS(2))); }
BAD(b_dtype_exp) { return lathe_exp(g, lathe_input(g, "x", LATHE_I64, LATHE_DIMS(2))); }
BAD(b_dtype_erf) { return lathe_erf(g, lathe_input(g, "x", LATHE_BOOL, LATHE_DIMS(2))); }
BAD(b_dtype_gelu) { return lathe_gelu(g, lathe_input(g, "x", LATHE_I64, LATHE_DIMS(2)), false); }
BAD(b_gelu_bool) { return lt_make(g, LT_OP_GELU, 1, (lathe_node *[]){IN32("x", 2)}, (lt_attr[LT_MAX_ATTRS]){{.v = {2}}}); }
BAD(b_dtype_silu) { return lathe_silu(g, lathe_input(g, "x", LATHE_I64, LATHE_DIMS(2))); }
BAD(b_softplus_beta0) { return lathe_softplus(g, IN32("x", 2), 0, 20); }
BAD(b_softplus_beta_inf) { return lathe_softplus(g, IN32("x", 2), INFINITY, 20); }
BAD(b_softplus_threshold_nan) { return lathe_softplus(g, IN32("x", 2), 1, NAN); }
BAD(b_leaky_relu_slope) { return lathe_leaky_relu(g, IN32("x", 2), NAN); }
BAD(b_dtype_leaky_relu) { return lathe_leaky_relu(g, lathe_input(g, "x", LATHE_I64, LATHE_DIMS(2)), 0.01); }
BAD(b_clamp_nan) { return lathe_clamp(g, IN32("x", 2), NAN, 1); }
BAD(b_dtype_clamp) { return lathe_clamp(g, lathe_input(g, "x", LATHE_I64, LATHE_DIMS(2)), 0, 1); }
BAD(b_dtype_bool_add) { lathe_node *c = lathe_input(g, "c", LATHE_BOOL, LATHE_DIMS(2)); return lathe_add(g, c, c); }
BAD(b_dtype_mean_int) { return lathe_mean(g, lathe_input(g, "x", LATHE_I64, LATHE_DIMS(2)), 0, NULL, false); }
BAD(b_where_cond) { return lathe_where(g, IN32("c", 2), IN32("x", 2), IN32("y", 2)); }
BAD(b_int_param_grad) { return lathe_param(g, "steps", LATHE_I64, LATHE_DIMS(1), true); }
BAD(b_int_input_grad) {
    lathe_node *x = lathe_input(g, "labels", LATHE_I64, LATHE_DIMS(4));
    lathe_set_requires_grad(x, true);
    return x;
}
BAD(b_dup_name) { IN32("x", 2); return IN32("x", 3); }
BAD(b_dup_name_kinds) { lathe_param(g, "fc.weight", F32, LATHE_DIMS(2), true); return lathe_buffer(g, "fc.weight", F32, LATHE_DIMS(2)); }
BAD(b_empty_name) { return lathe_input(g, "", F32, LATHE_DIMS(2)); }
BAD(b_dup_output) {
    lathe_node *x = IN32("x", 2);
    lathe_output(g, "y", x);
    lathe_output(g, "y", x);
    return x;
}
BAD(b_operand_count) { lathe_node *x = IN32("x", 2); return lt_make(g, LT_OP_ADD, 3, (lathe_node *[]){x, x, x}, NULL); }
BAD(b_concat_none) { return lathe_concat(g, 0, NULL, 0); }
BAD(b_concat_shape) { return lathe_concat(g, 2, (lathe_node *[]){IN32("x", 2, 3), IN32("y", 3, 3)}, 1); }
BAD(b_null_operand) { return lathe_relu(g, NULL); }
BAD(b_other_graph) {
    lathe_graph *h = lathe_graph_new();
    lathe_node *y = lathe_input(h, "y", F32, LATHE_DIMS(2));
    lathe_node *r = lathe_add(g, IN32("x", 2), y);
    lathe_graph_free(h);
    return r;
}
BAD(b_absurd) { return IN32("x", (int64_t)1 << 40, (int64_t)1 << 40); }
BAD(b_absurd_reshape) { return lathe_reshape(g, IN32("x", 0), LATHE_DIMS((int64_t)1 << 40, (int64_t)1 << 40, 0, -1)); }
BAD(b_absurd_broadcast) { return lathe_broadcast_to(g, IN32("x", 1), LATHE_DIMS((int64_t)1 << 40, (int64_t)1 << 40)); }
BAD(b_negative_dim) { return IN32("x", 2, -3); }
BAD(b_rank7) { return IN32("x", 1, 1, 1, 1, 1, 1, 1); }
BAD(b_matmul_inner) { return lathe_matmul(g, IN32("a", 2, 3), IN32("b", 4, 5)); }
BAD(b_matmul_rank1) { return lathe_matmul(g, IN32("a", 3), IN32("b", 3, 5)); }
BAD(b_matmul_batch) { return lathe_matmul(g, IN32("a", 2, 2, 3), IN32("b", 3, 3, 5)); }
BAD(b_linear) { return lathe_linear(g, IN32("x", 2, 3), lathe_param(g, "w", F32, LATHE_DIMS(4, 5), true), NULL); }
BAD(b_ce_labels_dtype) { return lathe_cross_entropy(g, IN32("x", 4, 3), IN32("labels", 4), LATHE_REDUCE_MEAN); }
BAD(b_ce_labels_shape) {
    return lathe_cross_entropy(g, IN32("x", 4, 3), lathe_input(g, "labels", LATHE_I64, LATHE_DIMS(5)), LATHE_REDUCE_MEAN);
}
BAD(b_bn_one_value) {
    lathe_node *x = IN32("x", 1, 2, 1, 1);
    return lathe_batch_norm2d(g, x, IN32("w", 2), IN32("b", 2), lathe_buffer(g, "rm", F32, LATHE_DIMS(2)),
                              lathe_buffer(g, "rv", F32, LATHE_DIMS(2)), true, 0.1, 1e-5);
}
BAD(b_bn_channels) {
    lathe_node *x = IN32("x", 2, 2, 3, 3);
    return lathe_batch_norm2d(g, x, IN32("w", 3), IN32("b", 2), lathe_buffer(g, "rm", F32, LATHE_DIMS(2)),
                              lathe_buffer(g, "rv", F32, LATHE_DIMS(2)), false, 0.1, 1e-5);
}
#define NS(...) LATHE_AXES(__VA_ARGS__)
BAD(b_ln_shape) { return lathe_layer_norm(g, IN32("x", 2, 3, 4), NS(3), NULL, NULL, 1e-5); }
BAD(b_ln_rank) { return lathe_layer_norm(g, IN32("x", 4), NS(1, 4), NULL, NULL, 1e-5); }
BAD(b_ln_rank0) { return lathe_layer_norm(g, lathe_input(g, "x", F32, 0, NULL), NS(1), NULL, NULL, 1e-5); }
BAD(b_ln_empty) { return lathe_layer_norm(g, IN32("x", 4), 0, NULL, NULL, NULL, 1e-5); }
BAD(b_ln_weight) { return lathe_layer_norm(g, IN32("x", 2, 4), NS(4), IN32("w", 2), NULL, 1e-5); }
BAD(b_ln_bias) { return lathe_layer_norm(g, IN32("x", 2, 4), NS(4), IN32("w", 4), IN32("b", 1, 4), 1e-5); }
BAD(b_ln_bias_only) { return lathe_layer_norm(g, IN32("x", 2, 4), NS(4), NULL, IN32("b", 4), 1e-5); }
BAD(b_ln_eps) { return lathe_layer_norm(g, IN32("x", 2, 4), NS(4), NULL, NULL, -1); }
BAD(b_ln_eps_nan) { return lathe_layer_norm(g, IN32("x", 2, 4), NS(4), NULL, NULL, NAN); }
BAD(b_ln_int) { return lathe_layer_norm(g, lathe_input(g, "x", LATHE_I64, LATHE_DIMS(2, 4)), NS(4), NULL, NULL, 1e-5); }
BAD(b_ln_dtypes) {
    return lathe_layer_norm(g, IN32("x", 2, 4), NS(4), lathe_input(g, "w", LATHE_F64, LATHE_DIMS(4)), NULL, 1e-5);
}
BAD(b_max_empty) { return lathe_max(g, IN32("x", 2, 0), LATHE_AXES(1), false); }
BAD(b_min_empty) { return lathe_min(g, IN32("x", 0, 3), 0, NULL, true); }
BAD(b_min_bool) { return lathe_min(g, lathe_input(g, "m", LATHE_BOOL, LATHE_DIMS(2)), 0, NULL, false); }
BAD(b_min_axis) { return lathe_min(g, IN32("x", 2, 3), LATHE_AXES(0, -2), false); }
BAD(b_permute) { return lathe_permute(g, IN32("x", 2, 3), LATHE_AXES(0, 0)); }
BAD(b_permute_len) { return lathe_permute(g, IN32("x", 2, 3), LATHE_AXES(1, 0, 2)); }
BAD(b_slice_step) { return lathe_slice(g, IN32("x", 5), 0, 0, 5, 0); }
BAD(b_flatten) { return lathe_flatten(g, IN32("x", 2, 3, 4), 2, 1); }
BAD(b_broadcast_to) { return lathe_broadcast_to(g, IN32("x", 2, 3), LATHE_DIMS(4, 3, 3)); }
BAD(b_mse_shape) { return lathe_mse_loss(g, IN32("x", 2, 3), IN32("y", 3, 2), LATHE_REDUCE_MEAN); }
BAD(b_update_target) {
    lathe_node *x = IN32("x", 2);
    lathe_update(g, x, x);
    return x;
}
BAD(b_update_type) {
    lathe_node *b = lathe_buffer(g, "rm", F32, LATHE_DIMS(2));
    lathe_update(g, b, IN32("x", 3));
    return b;
}
BAD(b_cast_dtype) { return lathe_cast(g, IN32("x", 2), (lathe_dtype)9); }

/* Gradient kernels (lt_make; attributes in schema order). */
#define P2(a, b) {.n = 2, .v = {a, b}}
#define I1(a) {.v = {a}}
#define ATTRS(...) (lt_attr[LT_MAX_ATTRS]){__VA_ARGS__}
static lathe_node *slice_bw(lathe_graph *g, lathe_node *gy, int64_t axis, int64_t st, int64_t en, int64_t step, int64_t size) {
    return lt_make(g, LT_OP_SLICE_BACKWARD, 1, (lathe_node *[]){gy}, ATTRS(I1(axis), I1(st), I1(en), I1(step), I1(size)));
}
BAD(b_slice_bw_len) { return slice_bw(g, IN32("gy", 2, 2), 0, 0, 6, 2, 7); } /* 0:6:2 has 3 */
BAD(b_slice_bw_size) { return slice_bw(g, IN32("gy", 3, 2), 0, 1, 6, 2, 5); }
BAD(b_slice_bw_step) { return slice_bw(g, IN32("gy", 3), 0, 0, 3, 0, 3); }
BAD(b_slice_bw_bounds) { return slice_bw(g, IN32("gy", 3), 0, 3, 2, 1, 7); }
BAD(b_slice_bw_start) { return slice_bw(g, IN32("gy", 3), 0, -1, 2, 1, 7); }
BAD(b_slice_bw_axis) { return slice_bw(g, IN32("gy", 3, 2), 2, 0, 3, 1, 3); }
BAD(b_slice_bw_int) { return slice_bw(g, lathe_input(g, "gy", LATHE_I64, LATHE_DIMS(3)), 0, 0, 3, 1, 3); }
/* conv2d x [1,4,5,5] * w [6,2,3,3], stride 2, pad 1, groups 2 gives [1,6,3,3] */
static lathe_node *conv_bw_in(lathe_graph *g, lathe_node *gy, lathe_node *w, int64_t s, int64_t groups, int64_t h) {
    return lt_make(g, LT_OP_CONV2D_BACKWARD_INPUT, 2, (lathe_node *[]){gy, w},
                   ATTRS(P2(s, s), P2(1, 1), P2(1, 1), I1(groups), P2(h, 5)));
}
#define W6 lathe_param(g, "w", F32, LATHE_DIMS(6, 2, 3, 3), true)
BAD(b_conv_bw_in_size) { return conv_bw_in(g, IN32("gy", 1, 6, 3, 3), W6, 2, 2, 7); } /* 7 gives 4 rows */
BAD(b_conv_bw_in_stride0) { return conv_bw_in(g, IN32("gy", 1, 6, 3, 3), W6, 0, 2, 5); }
BAD(b_conv_bw_in_channels) { return conv_bw_in(g, IN32("gy", 1, 4, 3, 3), W6, 2, 2, 5); }
BAD(b_conv_bw_in_groups) { return conv_bw_in(g, IN32("gy", 1, 6, 3, 3), W6, 2, 4, 5); }
BAD(b_conv_bw_in_groups0) { return conv_bw_in(g, IN32("gy", 1, 6, 3, 3), W6, 2, 0, 5); }
BAD(b_conv_bw_in_size_neg) { return conv_bw_in(g, IN32("gy", 1, 6, 3, 3), W6, 2, 2, -5); }
BAD(b_conv_bw_in_rank) { return conv_bw_in(g, IN32("gy", 6, 3, 3), W6, 2, 2, 5); }
BAD(b_conv_bw_in_dtype) {
    return conv_bw_in(g, lathe_input(g, "gy", LATHE_F64, LATHE_DIMS(1, 6, 3, 3)), W6, 2, 2, 5);
}
static lathe_node *conv_bw_w(lathe_graph *g, lathe_node *x, lathe_node *gy, int64_t groups, int64_t r, int64_t dil) {
    return lt_make(g, LT_OP_CONV2D_BACKWARD_WEIGHT, 2, (lathe_node *[]){x, gy},
                   ATTRS(P2(2, 2), P2(1, 1), P2(dil, dil), I1(groups), P2(r, 3)));
}
BAD(b_conv_bw_w_batch) { return conv_bw_w(g, IN32("x", 1, 4, 5, 5), IN32("gy", 2, 6, 3, 3), 2, 3, 1); }
BAD(b_conv_bw_w_kernel) { return conv_bw_w(g, IN32("x", 1, 4, 5, 5), IN32("gy", 1, 6, 3, 3), 2, 1, 1); } /* 4 rows */
BAD(b_conv_bw_w_kernel0) { return conv_bw_w(g, IN32("x", 1, 4, 5, 5), IN32("gy", 1, 6, 3, 3), 2, 0, 1); }
BAD(b_conv_bw_w_groups) { return conv_bw_w(g, IN32("x", 1, 4, 5, 5), IN32("gy", 1, 6, 3, 3), 4, 3, 1); }
BAD(b_conv_bw_w_dilation0) { return conv_bw_w(g, IN32("x", 1, 4, 5, 5), IN32("gy", 1, 6, 3, 3), 2, 3, 0); }
BAD(b_conv_bw_w_too_big) { return conv_bw_w(g, IN32("x", 1, 4, 5, 5), IN32("gy", 1, 6, 3, 3), 2, 3, 4); }
/* max_pool2d of x [1,2,5,5] with k3 s2 p1 gives [1,2,3,3] */
static lathe_node *max_bw(lathe_graph *g, lathe_node *gy, lathe_node *x, int64_t k, int64_t s, int64_t p) {
    return lt_make(g, LT_OP_MAX_POOL2D_BACKWARD, 2, (lathe_node *[]){gy, x}, ATTRS(P2(k, k), P2(s, s), P2(p, p)));
}
BAD(b_max_bw_shape) { return max_bw(g, IN32("gy", 1, 2, 2, 2), IN32("x", 1, 2, 5, 5), 3, 2, 1); }
BAD(b_max_bw_channels) { return max_bw(g, IN32("gy", 1, 3, 3, 3), IN32("x", 1, 2, 5, 5), 3, 2, 1); }
BAD(b_max_bw_stride0) { return max_bw(g, IN32("gy", 1, 2, 3, 3), IN32("x", 1, 2, 5, 5), 3, 0, 1); }
BAD(b_max_bw_padding) { return max_bw(g, IN32("gy", 1, 2, 3, 3), IN32("x", 1, 2, 5, 5), 3, 2, 2); }
BAD(b_max_bw_dtype) {
    return max_bw(g, IN32("gy", 1, 2, 3, 3), lathe_input(g, "x", LATHE_F64, LATHE_DIMS(1, 2, 5, 5)), 3, 2, 1);
}
BAD(b_max_bw_rank) { return max_bw(g, IN32("gy", 1, 2, 3, 3), IN32("x", 2, 5, 5), 3, 2, 1); }
static lathe_node *avg_bw(lathe_graph *g, lathe_node *gy, int64_t k, int64_t s, int64_t p, int64_t incl, int64_t h) {
    return lt_make(g, LT_OP_AVG_POOL2D_BACKWARD, 1, (lathe_node *[]){gy},
                   ATTRS(P2(k, k), P2(s, s), P2(p, p), I1(incl), P2(h, 5)));
}
BAD(b_avg_bw_size) { return avg_bw(g, IN32("gy", 1, 1, 3, 3), 3, 2, 1, 1, 7); } /* 7 gives 4 rows */
BAD(b_avg_bw_kernel) { return avg_bw(g, IN32("gy", 1, 1, 3, 3), 3, 2, 0, 1, 2); }
BAD(b_avg_bw_stride0) { return avg_bw(g, IN32("gy", 1, 1, 3, 3), 3, 0, 1, 1, 5); }
BAD(b_avg_bw_padding) { return avg_bw(g, IN32("gy", 1, 1, 3, 3), 3, 2, 2, 1, 5); }
BAD(b_avg_bw_bool) { return avg_bw(g, IN32("gy", 1, 1, 3, 3), 3, 2, 1, 2, 5); }
BAD(b_avg_bw_absurd) { return avg_bw(g, IN32("gy", 1, 1, 3, 3), 3, 2, 1, 1, (int64_t)1 << 60); }
static lathe_node *adaptive_bw(lathe_graph *g, lathe_node *gy, int64_t h, int64_t w) {
    return lt_make(g, LT_OP_ADAPTIVE_AVG_POOL2D_BACKWARD, 1, (lathe_node *[]){gy}, ATTRS(P2(h, w)));
}
BAD(b_adaptive_bw_size0) { return adaptive_bw(g, IN32("gy", 1, 1, 2, 2), 0, 5); }
BAD(b_adaptive_bw_rank) { return adaptive_bw(g, IN32("gy", 1, 2, 2), 5, 5); }
BAD(b_adaptive_bw_empty) { return adaptive_bw(g, IN32("gy", 1, 1, 0, 2), 5, 5); }
BAD(b_adaptive_bw_int) { return adaptive_bw(g, lathe_input(g, "gy", LATHE_I64, LATHE_DIMS(1, 1, 2, 2)), 5, 5); }
#define IX(...) lathe_input(g, "index", LATHE_I64, LATHE_DIMS(__VA_ARGS__))
BAD(b_select_float_index) { return lathe_index_select(g, IN32("x", 3, 4), 0, IN32("index", 2)); }
BAD(b_select_axis) { return lathe_index_select(g, IN32("x", 3, 4), 2, IX(2)); }
BAD(b_select_rank0) { return lathe_index_select(g, lathe_input(g, "x", F32, 0, NULL), 0, IX(2)); }
BAD(b_select_rank7) { return lathe_index_select(g, IN32("x", 1, 1, 1, 3), 3, IX(1, 1, 1, 2)); }
BAD(b_select_empty) { return lathe_index_select(g, IN32("x", 0, 4), 0, IX(2)); }
BAD(b_select_const) {
    return lathe_index_select(g, IN32("x", 3, 4), 0, lathe_const(g, LATHE_I64, LATHE_DIMS(3), (int64_t[]){0, 5, 1}));
}
BAD(b_select_const_neg) {
    return lathe_index_select(g, IN32("x", 4, 3), -1, lathe_const(g, LATHE_I64, LATHE_DIMS(2), (int64_t[]){-1, 1}));
}
static lathe_node *select_bw(lathe_graph *g, lathe_node *gy, lathe_node *ix, int64_t axis, int64_t size) {
    return lt_make(g, LT_OP_INDEX_SELECT_BACKWARD, 2, (lathe_node *[]){gy, ix}, ATTRS(I1(axis), I1(size)));
}
BAD(b_select_bw_int) { return select_bw(g, lathe_input(g, "gy", LATHE_I64, LATHE_DIMS(2, 4)), IX(2), 0, 3); }
BAD(b_select_bw_index) { return select_bw(g, IN32("gy", 2, 4), IN32("index", 2), 0, 3); }
BAD(b_select_bw_shape) { return select_bw(g, IN32("gy", 2, 4), IX(3), 0, 3); }
BAD(b_select_bw_axis) { return select_bw(g, IN32("gy", 2, 4), IX(2), 2, 3); }
BAD(b_select_bw_size) { return select_bw(g, IN32("gy", 2, 4), IX(2), 0, -1); }
BAD(b_select_bw_empty) { return select_bw(g, IN32("gy", 2, 4), IX(2), 0, 0); }
BAD(b_select_bw_rank) { return select_bw(g, IN32("gy", 2), IX(2, 1), 0, 3); }

BAD(b_dropout_first) { /* the IR's third operand of dropout: one i64 */
    lathe_node *x = IN32("x", 2, 3), *r = lathe_input(g, "lathe.rng", LATHE_I64, 1, (int64_t[]){2});
    lt_attr a[LT_MAX_ATTRS] = {{.f = 0.5}, {.v = {0}}};
    return lt_make(g, LT_OP_DROPOUT, 3, (lathe_node *[]){x, r, IN32("first", 1)}, a);
}
BAD(b_gather_parts0) { return lathe_all_gather(g, IN32("x", 2, 3), 0, 0); }
BAD(b_gather_parts_neg) { return lathe_all_gather(g, IN32("x", 2, 3), 1, -2); }
BAD(b_gather_parts_huge) {
    return lt_make(g, LT_OP_ALL_GATHER, 1, (lathe_node *[]){IN32("x", 2)}, ATTRS(I1(0), I1((int64_t)1 << 40)));
}
BAD(b_gather_axis) { return lathe_all_gather(g, IN32("x", 2, 3), 2, 2); }
BAD(b_gather_axis_neg) { return lathe_all_gather(g, IN32("x", 2, 3), -3, 2); }
BAD(b_gather_rank0) { return lathe_all_gather(g, lathe_input(g, "x", F32, 0, NULL), 0, 2); }
BAD(b_gather_overflow) { return lathe_all_gather(g, IN32("x", 4, (int64_t)1 << 40), 1, 1 << 10); }
BAD(b_reduce_parts0) { return lathe_all_reduce(g, IN32("x", 2), 0); }
BAD(b_reduce_bool) { return lathe_all_reduce(g, lathe_input(g, "mask", LATHE_BOOL, LATHE_DIMS(2)), 2); }

static const struct {
    const char *label;
    bad_fn fn;
    lathe_status status;
    const char *msg;
} bad_calls[] = {
    {"broadcast mismatch", b_broadcast, LATHE_ERR_SHAPE, "add: cannot broadcast f32[2,3], f32[4] (dim 1 from the right: 3 vs 4)"},
    {"broadcast mismatch, where", b_broadcast_where, LATHE_ERR_SHAPE, "where: cannot broadcast bool[3], f32[2,3], f32[2,1,2]"},
    {"axis out of range", b_axis, LATHE_ERR_ARG, "sum: axis 2 out of range [-2, 1] for f32[2,3]"},
    {"negative axis out of range", b_axis_neg, LATHE_ERR_ARG, "softmax: axis -3 out of range"},
    {"repeated axis", b_axis_dup, LATHE_ERR_ARG, "mean: axis 1 repeated for f32[2,3]"},
    {"axis of a rank-0 tensor", b_axis_rank0, LATHE_ERR_ARG, "argmax: axis 0 out of range for rank-0 f32[]"},
    {"reshape changes the count", b_reshape_count, LATHE_ERR_SHAPE, "reshape: f32[2,3] has 6 elements but target f32[4,2] has 8"},
    {"reshape two -1", b_reshape_two_infer, LATHE_ERR_ARG, "only one dimension can be -1"},
    {"reshape -1 does not divide", b_reshape_infer_bad, LATHE_ERR_SHAPE, "cannot infer the -1"},
    {"conv kernel larger than input", b_conv_kernel, LATHE_ERR_SHAPE, "conv2d: kernel 5x5 (dilated extent 5) is larger than the padded input 3x3"},
    {"conv dilated kernel too large", b_conv_dilated, LATHE_ERR_SHAPE, "(dilated extent 4) is larger than the padded input 3x3"},
    {"conv stride 0", b_conv_stride0, LATHE_ERR_ARG, "conv2d: stride must be >= 1, got 0"},
    {"conv stride negative", b_conv_stride_neg, LATHE_ERR_ARG, "conv2d: stride must be >= 1, got -1"},
    {"conv dilation 0", b_conv_dilation0, LATHE_ERR_ARG, "conv2d: dilation must be >= 1, got 0"},
    {"conv negative padding", b_conv_padding_neg, LATHE_ERR_ARG, "conv2d: padding must be >= 0, got -1"},
    {"conv groups 0", b_conv_groups0, LATHE_ERR_ARG, "conv2d: groups must be >= 1, got 0"},
    {"conv groups do not divide", b_conv_groups, LATHE_ERR_SHAPE, "with groups=2"},
    {"conv channels differ", b_conv_channels, LATHE_ERR_SHAPE, "weight f32[4,2,2,2] does not fit input f32[1,3,4,4]"},
    {"conv input rank", b_conv_rank, LATHE_ERR_SHAPE, "conv2d: input must have rank 4 (N, C, H, W), got f32[3,4,4]"},
    {"conv bias size", b_conv_bias, LATHE_ERR_SHAPE, "conv2d: bias must be [4]"},
    {"pool stride 0", b_pool_stride0, LATHE_ERR_ARG, "max_pool2d: stride must be >= 1, got 0"},
    {"pool kernel larger than input", b_pool_kernel, LATHE_ERR_SHAPE, "avg_pool2d: kernel 3x3"},
    {"pool padding over half kernel", b_pool_padding, LATHE_ERR_ARG, "at most half the kernel size"},
    {"adaptive pool size 0", b_adaptive0, LATHE_ERR_ARG, "output size must be >= 1"},
    {"dtype mismatch", b_dtype, LATHE_ERR_DTYPE, "add: operand dtypes differ (f32[2], f64[2])"},
    {"exp of an integer", b_dtype_exp, LATHE_ERR_DTYPE, "exp: input must be f32 or f64, got i64[2]"},
    {"erf of bools", b_dtype_erf, LATHE_ERR_DTYPE, "erf: input must be f32 or f64, got bool[2]"},
    {"gelu of integers", b_dtype_gelu, LATHE_ERR_DTYPE, "gelu: input must be f32 or f64, got i64[2]"},
    {"gelu approximate not a bool", b_gelu_bool, LATHE_ERR_ARG, "gelu: approximate must be true or false, got 2"},
    {"silu of integers", b_dtype_silu, LATHE_ERR_DTYPE, "silu: input must be f32 or f64, got i64[2]"},
    {"softplus beta 0", b_softplus_beta0, LATHE_ERR_ARG, "softplus: beta must be finite and nonzero, got 0 (input f32[2])"},
    {"softplus beta inf", b_softplus_beta_inf, LATHE_ERR_ARG, "softplus: beta must be finite and nonzero, got inf"},
    {"softplus threshold NaN", b_softplus_threshold_nan, LATHE_ERR_ARG, "softplus: threshold must be a number, got nan (input f32[2])"},
    {"leaky_relu slope NaN", b_leaky_relu_slope, LATHE_ERR_ARG, "leaky_relu: negative_slope must be finite, got nan (input f32[2])"},
    {"leaky_relu of integers", b_dtype_leaky_relu, LATHE_ERR_DTYPE, "leaky_relu: input must be f32 or f64, got i64[2]"},
    {"clamp bound NaN", b_clamp_nan, LATHE_ERR_ARG, "clamp: bounds must be numbers (an infinity for none), got min nan, max 1 (input f32[2])"},
    {"clamp of integers", b_dtype_clamp, LATHE_ERR_DTYPE, "clamp: input must be f32 or f64, got i64[2]"},
    {"add of bools", b_dtype_bool_add, LATHE_ERR_DTYPE, "add: bool operands"},
    {"mean of integers", b_dtype_mean_int, LATHE_ERR_DTYPE, "mean: input must be f32 or f64"},
    {"where condition not bool", b_where_cond, LATHE_ERR_DTYPE, "where: condition must be bool, got f32[2]"},
    {"integer param requires grad", b_int_param_grad, LATHE_ERR_DTYPE, "param 'steps': only floating-point tensors can require grad (got i64[1])"},
    {"integer input requires grad", b_int_input_grad, LATHE_ERR_DTYPE, "'labels': only floating-point tensors can require grad"},
    {"duplicate name", b_dup_name, LATHE_ERR_NAME, "input: duplicate name 'x'"},
    {"duplicate name across kinds", b_dup_name_kinds, LATHE_ERR_NAME, "buffer: duplicate name 'fc.weight'"},
    {"empty name", b_empty_name, LATHE_ERR_NAME, "input: empty name"},
    {"duplicate output", b_dup_output, LATHE_ERR_NAME, "output: duplicate name 'y'"},
    {"wrong operand count", b_operand_count, LATHE_ERR_ARG, "add: expected 2 operands, got 3"},
    {"concat of nothing", b_concat_none, LATHE_ERR_ARG, "concat: expected at least 1 operands, got 0"},
    {"concat shapes", b_concat_shape, LATHE_ERR_SHAPE, "concat: operand 1 does not match operand 0 outside axis 1"},
    {"NULL operand", b_null_operand, LATHE_ERR_ARG, "relu: operand 0 is NULL"},
    {"operand of another graph", b_other_graph, LATHE_ERR_ARG, "add: operand 1 belongs to another graph"},
    {"absurd size", b_absurd, LATHE_ERR_SHAPE, "element count of f32[1099511627776,1099511627776] overflows"},
    {"absurd reshape", b_absurd_reshape, LATHE_ERR_SHAPE, "overflows"},
    {"absurd broadcast", b_absurd_broadcast, LATHE_ERR_SHAPE, "broadcast_to: element count of f32[1099511627776,1099511627776] overflows"},
    {"negative dim", b_negative_dim, LATHE_ERR_SHAPE, "negative dimension in f32[2,-3]"},
    {"rank 7", b_rank7, LATHE_ERR_SHAPE, "rank 7 out of range 0..6"},
    {"matmul inner dims", b_matmul_inner, LATHE_ERR_SHAPE, "matmul: inner dimensions differ: f32[2,3], f32[4,5] (3 vs 4)"},
    {"matmul of a vector", b_matmul_rank1, LATHE_ERR_SHAPE, "matmul: operands must have rank >= 2"},
    {"matmul batch dims", b_matmul_batch, LATHE_ERR_SHAPE, "matmul: cannot broadcast batch dims"},
    {"linear weight", b_linear, LATHE_ERR_SHAPE, "linear: weight must be [out, 3] for input f32[2,3], got f32[4,5]"},
    {"cross_entropy float labels", b_ce_labels_dtype, LATHE_ERR_DTYPE, "cross_entropy: labels must be i64 class indices, got f32[4]"},
    {"cross_entropy label count", b_ce_labels_shape, LATHE_ERR_SHAPE, "cross_entropy: labels must be i64[4] for input f32[4,3], got i64[5]"},
    {"batch norm with one value", b_bn_one_value, LATHE_ERR_SHAPE, "more than 1 value per channel"},
    {"batch norm channels", b_bn_channels, LATHE_ERR_SHAPE, "batch_norm2d: weight must be [2] for input f32[2,2,3,3], got f32[3]"},
    {"layer norm shape", b_ln_shape, LATHE_ERR_SHAPE, "layer_norm: normalized_shape [3] does not match the last 1 dims of input f32[2,3,4]"},
    {"layer norm rank", b_ln_rank, LATHE_ERR_SHAPE, "layer_norm: normalized_shape has 2 dims but input f32[4] has rank 1"},
    {"layer norm of a scalar", b_ln_rank0, LATHE_ERR_SHAPE, "layer_norm: input must have rank >= 1, got f32[]"},
    {"layer norm of no dims", b_ln_empty, LATHE_ERR_ARG, "layer_norm: normalized_shape must list 1 to 6 dims, got 0"},
    {"layer norm weight", b_ln_weight, LATHE_ERR_SHAPE, "layer_norm: weight must be [4] (normalized_shape) for input f32[2,4], got f32[2]"},
    {"layer norm bias", b_ln_bias, LATHE_ERR_SHAPE, "layer_norm: bias must be [4] (normalized_shape) for input f32[2,4], got f32[1,4]"},
    {"layer norm bias alone", b_ln_bias_only, LATHE_ERR_ARG, "layer_norm: a bias needs a weight"},
    {"layer norm eps", b_ln_eps, LATHE_ERR_ARG, "layer_norm: eps must be a finite number >= 0, got -1 (input f32[2,4])"},
    {"layer norm eps NaN", b_ln_eps_nan, LATHE_ERR_ARG, "layer_norm: eps must be a finite number >= 0, got nan"},
    {"layer norm of integers", b_ln_int, LATHE_ERR_DTYPE, "layer_norm: input must be f32 or f64, got i64[2,4]"},
    {"layer norm dtypes", b_ln_dtypes, LATHE_ERR_DTYPE, "layer_norm: operand dtypes differ (f32[2,4], f64[4])"},
    {"max of an empty axis", b_max_empty, LATHE_ERR_SHAPE, "max: cannot reduce over zero-size axis 1 of f32[2,0]"},
    {"min of an empty axis", b_min_empty, LATHE_ERR_SHAPE, "min: cannot reduce over zero-size axis 0 of f32[0,3]"},
    {"min of bools", b_min_bool, LATHE_ERR_DTYPE, "min: bool input bool[2] not supported"},
    {"min repeated axis", b_min_axis, LATHE_ERR_ARG, "min: axis 0 repeated for f32[2,3]"},
    {"permute repeats a dim", b_permute, LATHE_ERR_ARG, "permute: dim 0 repeated"},
    {"permute length", b_permute_len, LATHE_ERR_ARG, "permute: 3 dims given for rank-2"},
    {"slice step 0", b_slice_step, LATHE_ERR_ARG, "slice: step must be >= 1, got 0"},
    {"flatten start after end", b_flatten, LATHE_ERR_ARG, "flatten: start 2 is after end 1"},
    {"broadcast_to incompatible", b_broadcast_to, LATHE_ERR_SHAPE, "broadcast_to: cannot broadcast f32[2,3] to f32[4,3,3]"},
    {"mse shapes", b_mse_shape, LATHE_ERR_SHAPE, "mse_loss: input f32[2,3] and target f32[3,2] must have the same shape"},
    {"update of a non-buffer", b_update_target, LATHE_ERR_ARG, "update: target %0 (input) is not a buffer"},
    {"update type", b_update_type, LATHE_ERR_SHAPE, "update 'rm': buffer is f32[2] but value is f32[3]"},
    {"cast to unknown dtype", b_cast_dtype, LATHE_ERR_ARG, "cast: unknown dtype 9"},
    {"slice_backward length", b_slice_bw_len, LATHE_ERR_SHAPE, "slice_backward: slice 0:6:2 of a size-7 axis has 3 elements, but gradient f32[2,2] has 2 along axis 0"},
    {"slice_backward end past size", b_slice_bw_size, LATHE_ERR_ARG, "slice_backward: need 0 <= start <= end <= size, got start 1, end 6, size 5"},
    {"slice_backward step 0", b_slice_bw_step, LATHE_ERR_ARG, "slice_backward: step must be >= 1, got 0 (gradient f32[3])"},
    {"slice_backward start after end", b_slice_bw_bounds, LATHE_ERR_ARG, "got start 3, end 2, size 7 (gradient f32[3])"},
    {"slice_backward negative start", b_slice_bw_start, LATHE_ERR_ARG, "got start -1, end 2, size 7"},
    {"slice_backward axis", b_slice_bw_axis, LATHE_ERR_ARG, "slice_backward: axis 2 out of range [-2, 1] for f32[3,2]"},
    {"slice_backward of integers", b_slice_bw_int, LATHE_ERR_DTYPE, "slice_backward: gradient must be f32 or f64, got i64[3]"},
    {"conv2d_backward_input size", b_conv_bw_in_size, LATHE_ERR_SHAPE,
     "conv2d_backward_input: gradient f32[1,6,3,3] does not match f32[1,6,4,3], the conv2d output for input f32[1,4,7,5] (kernel 3x3, stride 2,2, padding 1,1, dilation 1,1)"},
    {"conv2d_backward_input stride 0", b_conv_bw_in_stride0, LATHE_ERR_ARG, "conv2d_backward_input: stride must be >= 1, got 0 (input f32[1,4,5,5])"},
    {"conv2d_backward_input channels", b_conv_bw_in_channels, LATHE_ERR_SHAPE,
     "conv2d_backward_input: weight f32[6,2,3,3] does not fit gradient f32[1,4,3,3] with groups=2"},
    {"conv2d_backward_input groups", b_conv_bw_in_groups, LATHE_ERR_SHAPE, "does not fit gradient f32[1,6,3,3] with groups=4"},
    {"conv2d_backward_input groups 0", b_conv_bw_in_groups0, LATHE_ERR_ARG, "conv2d_backward_input: groups must be >= 1, got 0"},
    {"conv2d_backward_input negative size", b_conv_bw_in_size_neg, LATHE_ERR_ARG, "conv2d_backward_input: size must be 0..281474976710656, got -5x5 (gradient f32[1,6,3,3])"},
    {"conv2d_backward_input rank", b_conv_bw_in_rank, LATHE_ERR_SHAPE, "conv2d_backward_input: gradient must have rank 4 (N, K, P, Q), got f32[6,3,3]"},
    {"conv2d_backward_input dtypes", b_conv_bw_in_dtype, LATHE_ERR_DTYPE, "conv2d_backward_input: operand dtypes differ (f64[1,6,3,3], f32[6,2,3,3])"},
    {"conv2d_backward_weight batch", b_conv_bw_w_batch, LATHE_ERR_SHAPE,
     "conv2d_backward_weight: gradient f32[2,6,3,3] does not match f32[1,6,3,3], the conv2d output for input f32[1,4,5,5]"},
    {"conv2d_backward_weight kernel", b_conv_bw_w_kernel, LATHE_ERR_SHAPE,
     "conv2d_backward_weight: gradient f32[1,6,3,3] does not match f32[1,6,4,3], the conv2d output for input f32[1,4,5,5] (kernel 1x3"},
    {"conv2d_backward_weight kernel 0", b_conv_bw_w_kernel0, LATHE_ERR_ARG, "conv2d_backward_weight: kernel size must be >= 1, got 0 (input f32[1,4,5,5])"},
    {"conv2d_backward_weight groups", b_conv_bw_w_groups, LATHE_ERR_SHAPE,
     "conv2d_backward_weight: input f32[1,4,5,5] and gradient f32[1,6,3,3] do not fit groups=4"},
    {"conv2d_backward_weight dilation 0", b_conv_bw_w_dilation0, LATHE_ERR_ARG, "conv2d_backward_weight: dilation must be >= 1, got 0"},
    {"conv2d_backward_weight kernel too large", b_conv_bw_w_too_big, LATHE_ERR_SHAPE, "(dilated extent 9) is larger than the padded input 7x7"},
    {"max_pool2d_backward shape", b_max_bw_shape, LATHE_ERR_SHAPE,
     "max_pool2d_backward: gradient f32[1,2,2,2] does not match f32[1,2,3,3], the max_pool2d output for input f32[1,2,5,5] (kernel 3x3, stride 2,2, padding 1,1)"},
    {"max_pool2d_backward channels", b_max_bw_channels, LATHE_ERR_SHAPE, "gradient f32[1,3,3,3] does not match f32[1,2,3,3]"},
    {"max_pool2d_backward stride 0", b_max_bw_stride0, LATHE_ERR_ARG, "max_pool2d_backward: stride must be >= 1, got 0 (input f32[1,2,5,5])"},
    {"max_pool2d_backward padding", b_max_bw_padding, LATHE_ERR_ARG, "max_pool2d_backward: padding 2 must be at most half the kernel size 3"},
    {"max_pool2d_backward dtypes", b_max_bw_dtype, LATHE_ERR_DTYPE, "max_pool2d_backward: operand dtypes differ (f32[1,2,3,3], f64[1,2,5,5])"},
    {"max_pool2d_backward rank", b_max_bw_rank, LATHE_ERR_SHAPE, "max_pool2d_backward: input must have rank 4 (N, C, H, W), got f32[2,5,5]"},
    {"avg_pool2d_backward size", b_avg_bw_size, LATHE_ERR_SHAPE,
     "avg_pool2d_backward: gradient f32[1,1,3,3] does not match f32[1,1,4,3], the avg_pool2d output for input f32[1,1,7,5]"},
    {"avg_pool2d_backward kernel", b_avg_bw_kernel, LATHE_ERR_SHAPE, "avg_pool2d_backward: kernel 3x3 (dilated extent 3) is larger than the padded input 2x5"},
    {"avg_pool2d_backward stride 0", b_avg_bw_stride0, LATHE_ERR_ARG, "avg_pool2d_backward: stride must be >= 1, got 0"},
    {"avg_pool2d_backward padding", b_avg_bw_padding, LATHE_ERR_ARG, "avg_pool2d_backward: padding 2 must be at most half the kernel size 3 (input f32[1,1,5,5])"},
    {"avg_pool2d_backward count_include_pad", b_avg_bw_bool, LATHE_ERR_ARG, "avg_pool2d_backward: count_include_pad must be true or false, got 2"},
    {"avg_pool2d_backward absurd size", b_avg_bw_absurd, LATHE_ERR_ARG, "avg_pool2d_backward: size must be 0..281474976710656, got 1152921504606846976x5"},
    {"adaptive_avg_pool2d_backward size 0", b_adaptive_bw_size0, LATHE_ERR_ARG, "adaptive_avg_pool2d_backward: size must be 1..281474976710656, got 0x5 (gradient f32[1,1,2,2])"},
    {"adaptive_avg_pool2d_backward rank", b_adaptive_bw_rank, LATHE_ERR_SHAPE, "adaptive_avg_pool2d_backward: gradient must have rank 4 (N, C, P, Q), got f32[1,2,2]"},
    {"adaptive_avg_pool2d_backward empty", b_adaptive_bw_empty, LATHE_ERR_SHAPE, "adaptive_avg_pool2d_backward: gradient f32[1,1,0,2] has an empty spatial dim"},
    {"adaptive_avg_pool2d_backward of integers", b_adaptive_bw_int, LATHE_ERR_DTYPE, "adaptive_avg_pool2d_backward: gradient must be f32 or f64, got i64[1,1,2,2]"},
    {"index_select float index", b_select_float_index, LATHE_ERR_DTYPE, "index_select: index must be i64, got f32[2] (input f32[3,4])"},
    {"index_select axis", b_select_axis, LATHE_ERR_ARG, "index_select: axis 2 out of range [-2, 1] for f32[3,4]"},
    {"index_select of a scalar", b_select_rank0, LATHE_ERR_SHAPE, "index_select: input must have rank >= 1, got f32[]"},
    {"index_select result rank 7", b_select_rank7, LATHE_ERR_SHAPE,
     "index_select: the result would have rank 7, more than 6 (f32[1,1,1,3], i64[1,1,1,2])"},
    {"index_select of an empty axis", b_select_empty, LATHE_ERR_SHAPE,
     "index_select: index i64[2] selects from an empty axis 0 (input f32[0,4])"},
    {"index_select constant index", b_select_const, LATHE_ERR_ARG,
     "index_select: constant index i64[3] holds 5 at element 1, outside [0, 3) (input f32[3,4], axis 0)"},
    {"index_select negative constant index", b_select_const_neg, LATHE_ERR_ARG,
     "holds -1 at element 0, outside [0, 3) (input f32[4,3], axis 1)"},
    {"index_select_backward of integers", b_select_bw_int, LATHE_ERR_DTYPE,
     "index_select_backward: gradient must be f32 or f64, got i64[2,4]"},
    {"index_select_backward float index", b_select_bw_index, LATHE_ERR_DTYPE,
     "index_select_backward: index must be i64, got f32[2] (gradient f32[2,4])"},
    {"index_select_backward index shape", b_select_bw_shape, LATHE_ERR_SHAPE,
     "index_select_backward: gradient f32[2,4] does not hold index i64[3] at axis 0"},
    {"index_select_backward axis", b_select_bw_axis, LATHE_ERR_ARG,
     "index_select_backward: axis 2 out of range [-2, 1] for a rank-2 result (gradient f32[2,4], index i64[2])"},
    {"index_select_backward size", b_select_bw_size, LATHE_ERR_ARG, "index_select_backward: size -1 out of range (gradient f32[2,4])"},
    {"index_select_backward empty axis", b_select_bw_empty, LATHE_ERR_SHAPE,
     "index_select_backward: index i64[2] selects from an empty axis 0 (gradient f32[2,4])"},
    {"index_select_backward rank", b_select_bw_rank, LATHE_ERR_SHAPE,
     "index_select_backward: gradient f32[2] has fewer dims than index i64[2,1]"},
    {"dropout's first index not an i64", b_dropout_first, LATHE_ERR_SHAPE,
     "dropout: the index of the first element must be one i64, got f32[1]"},
    {"all_gather over 0 processes", b_gather_parts0, LATHE_ERR_ARG,
     "all_gather: parts must be 1 to 2147483647 processes, got 0 (input f32[2,3])"},
    {"all_gather over -2 processes", b_gather_parts_neg, LATHE_ERR_ARG, "all_gather: parts must be 1 to 2147483647 processes, got -2"},
    {"all_gather over 2^40 processes", b_gather_parts_huge, LATHE_ERR_ARG,
     "all_gather: parts must be 1 to 2147483647 processes, got 1099511627776 (input f32[2])"},
    {"all_gather axis", b_gather_axis, LATHE_ERR_ARG, "all_gather: axis 2 out of range [-2, 1] for f32[2,3]"},
    {"all_gather negative axis", b_gather_axis_neg, LATHE_ERR_ARG, "all_gather: axis -3 out of range [-2, 1] for f32[2,3]"},
    {"all_gather of a scalar", b_gather_rank0, LATHE_ERR_SHAPE, "all_gather: rank-0 operand f32[] cannot be joined along an axis"},
    {"all_gather size overflows", b_gather_overflow, LATHE_ERR_SHAPE,
     "all_gather: gathered size along axis 1 overflows (f32[4,1099511627776] from 1024 processes)"},
    {"all_reduce over 0 processes", b_reduce_parts0, LATHE_ERR_ARG,
     "all_reduce: parts must be 1 to 2147483647 processes, got 0 (input f32[2])"},
    {"all_reduce of bools", b_reduce_bool, LATHE_ERR_DTYPE, "all_reduce: bool input bool[2]; cast it to i64 or a float first"},
};

static void test_bad_calls(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof bad_calls / sizeof bad_calls[0]; i++) {
        lathe_graph *g = lathe_graph_new();
        bad_calls[i].fn(g);
        const char *err = lathe_graph_error(g);
        if (lathe_graph_status(g) != bad_calls[i].status || !strstr(err, bad_calls[i].msg))
            fail_msg("%s: got status '%s' message '%s'; want '%s' containing '%s'", bad_calls[i].label,
                     lathe_status_name(lathe_graph_status(g)), err, lathe_status_name(bad_calls[i].status),
                     bad_calls[i].msg);
        lathe_graph_free(g);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_op_has_a_sample),
        cmocka_unit_test(test_sample_types),
        cmocka_unit_test(test_normalized_attrs),
        cmocka_unit_test(test_bad_calls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
