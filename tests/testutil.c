/* testutil.c - the op sample table and shared helpers (see testutil.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define D LATHE_DIMS
static lathe_node *in(lathe_graph *g, const char *name, lathe_dtype t, int r, const int64_t *s) {
    lathe_node *n = lathe_input(g, name, t, r, s);
    if (n && lt_is_float(t)) lathe_set_requires_grad(n, true);
    return n;
}
static lathe_node *cst(lathe_graph *g, lathe_dtype t, int r, const int64_t *s, const double *v) {
    int64_t n = lt_numel(r, s);
    float f[64];
    double d[64];
    for (int64_t i = 0; i < n && i < 64; i++) f[i] = (float)v[i], d[i] = v[i];
    return lathe_const(g, t, r, s, t == LATHE_F32 ? (void *)f : (void *)d);
}
static lathe_node *labels(lathe_graph *g, int64_t n) { return lathe_input(g, "labels", LATHE_I64, D(n)); }
static lathe_node *mask(lathe_graph *g, int r, const int64_t *s) { return lathe_input(g, "mask", LATHE_BOOL, r, s); }

#define S(fn) static lathe_node *fn(lathe_graph *g, lathe_dtype t)
#define X(n) in(g, "x", t, D n)
#define Y(n) in(g, "y", t, D n)
#define XP(n) in(g, "x_pos", t, D n)
#define YP(n) in(g, "y_pos", t, D n)

S(s_input) { return lathe_neg(g, X((2, 3))); }
S(s_param) { return lathe_mul(g, X((2, 3)), lathe_param(g, "layer1.0.weight", t, D(3), true)); }
S(s_buffer) { return lathe_add(g, X((3)), lathe_buffer(g, "running_mean", t, D(3))); }
S(s_const) { return lathe_sub(g, X((2, 2)), cst(g, t, D(2, 2), (double[]){1.5, -2, 0.25, 4})); }
S(s_scalar) { return lathe_mul(g, lathe_scalar(g, t, 3), X((2))); }
S(s_add) { return lathe_add(g, X((2, 3)), Y((3))); }
S(s_add_rank0) { return lathe_add(g, X(()), Y((2, 3))); }
S(s_add_size1) { return lathe_add(g, X((2, 1)), Y((1, 3))); }
S(s_add_zero) { return lathe_add(g, X((0, 3)), Y((3))); }
S(s_add_batch1) { return lathe_add(g, X((1, 2, 3)), Y((2, 1))); }
S(s_sub) { return lathe_sub(g, X((2, 3)), Y((2, 1))); }
S(s_mul) { return lathe_mul(g, X((2, 3)), Y((2, 3))); }
S(s_div) { return lathe_div(g, X((2, 3)), YP((3))); }
S(s_pow) { return lathe_pow(g, XP((2, 3)), Y((3))); }
S(s_maximum) { return lathe_maximum(g, X((2, 3)), Y((3))); }
S(s_minimum) { return lathe_minimum(g, X((2, 3)), Y((2, 1))); }
static lathe_node *s_cmp(lathe_graph *g, lathe_dtype t, lathe_node *(*f)(lathe_graph *, lathe_node *, lathe_node *)) {
    lathe_node *x = X((2, 3)), *y = Y((3));
    return lathe_where(g, f(g, x, y), x, y);
}
S(s_gt) { return s_cmp(g, t, lathe_gt); }
S(s_ge) { return s_cmp(g, t, lathe_ge); }
S(s_lt) { return s_cmp(g, t, lathe_lt); }
S(s_le) { return s_cmp(g, t, lathe_le); }
S(s_eq) { return s_cmp(g, t, lathe_eq); }
S(s_ne) { return s_cmp(g, t, lathe_ne); }
S(s_where) { return lathe_where(g, mask(g, D(2, 1)), X((2, 3)), Y((3))); }
S(s_neg) { return lathe_neg(g, X((2, 3))); }
S(s_exp) { return lathe_exp(g, X((2, 3))); }
S(s_log) { return lathe_log(g, XP((2, 3))); }
S(s_sqrt) { return lathe_sqrt(g, XP((2, 3))); }
S(s_rsqrt) { return lathe_rsqrt(g, XP((2, 3))); }
S(s_abs) { return lathe_abs(g, X((2, 3))); }
S(s_relu) { return lathe_relu(g, X((2, 3))); }
S(s_sigmoid) { return lathe_sigmoid(g, X((2, 3))); }
S(s_tanh) { return lathe_tanh(g, X((2, 3))); }
/* x in [-3, 3): both of the JIT's formulas (|x| < 1 and above) */
S(s_erf) { return lathe_erf(g, lathe_mul(g, X((2, 3)), lathe_scalar(g, t, 3))); }
S(s_gelu) { return lathe_gelu(g, lathe_mul(g, X((2, 3)), lathe_scalar(g, t, 3)), false); }
S(s_gelu_tanh) { return lathe_gelu(g, lathe_mul(g, X((2, 3)), lathe_scalar(g, t, 3)), true); }
S(s_silu) { return lathe_silu(g, lathe_mul(g, X((2, 3)), lathe_scalar(g, t, 3))); }
S(s_softplus) { return lathe_softplus(g, X((2, 3)), 1, 20); }
/* beta x > 1 for x > 0.5: both branches */
S(s_softplus_thr) { return lathe_softplus(g, X((2, 3)), 2, 1); }
S(s_leaky_relu) { return lathe_leaky_relu(g, X((2, 3)), 0.1); }
S(s_clamp) { return lathe_clamp(g, X((2, 3)), -0.5, 0.5); }
S(s_clamp_one) { return lathe_clamp(g, X((2, 3)), -INFINITY, 0.25); }
S(s_pow_scalar) { return lathe_pow_scalar(g, X((2, 3)), 3); }
S(s_pow_scalar_frac) { return lathe_pow_scalar(g, XP((4)), -0.5); }
S(s_cast) {
    lathe_dtype o = t == LATHE_F32 ? LATHE_F64 : LATHE_F32;
    return lathe_cast(g, lathe_cast(g, X((2, 3)), o), t);
}
S(s_cast_int) { return lathe_cast(g, lathe_cast(g, lathe_mul(g, X((5)), lathe_scalar(g, t, 4)), LATHE_I64), t); }
S(s_sum) { return lathe_sum(g, X((2, 3, 4)), LATHE_AXES(1), true); }
S(s_sum_all) { return lathe_sum(g, X((2, 3)), 0, NULL, false); }
S(s_sum_neg) { return lathe_sum(g, X((2, 3, 4)), LATHE_AXES(-1, 0), false); }
S(s_mean) { return lathe_mean(g, X((2, 3, 4)), LATHE_AXES(0, 2), false); }
S(s_max) { return lathe_max(g, X((2, 3)), LATHE_AXES(1), false); }
S(s_max_keep) { return lathe_max(g, X((2, 3, 2)), LATHE_AXES(0, 2), true); }
S(s_min) { return lathe_min(g, X((2, 3)), LATHE_AXES(1), false); }
S(s_min_keep) { return lathe_min(g, X((2, 3, 2)), LATHE_AXES(0, 2), true); }
S(s_argmax) { return lathe_cast(g, lathe_argmax(g, X((2, 5)), 1, false), t); }
S(s_reshape) { return lathe_reshape(g, X((2, 3)), D(3, 2)); }
S(s_reshape_infer) { return lathe_reshape(g, X((2, 3, 4)), D(-1, 4)); }
S(s_flatten) { return lathe_flatten(g, X((2, 3, 2, 2)), 1, -1); }
S(s_permute) { return lathe_permute(g, X((2, 3, 4)), LATHE_AXES(2, 0, 1)); }
S(s_transpose) { return lathe_transpose(g, X((2, 3)), 0, 1); }
S(s_broadcast_to) { return lathe_broadcast_to(g, X((3, 1)), D(2, 3, 4)); }
S(s_concat) {
    lathe_node *xs[] = {X((2, 1)), Y((2, 3)), in(g, "z", t, D(2, 2))};
    return lathe_concat(g, 3, xs, 1);
}
S(s_concat_one) { return lathe_concat(g, 1, (lathe_node *[]){X((2, 3))}, 0); }
S(s_slice) { return lathe_slice(g, X((7, 2)), 0, 1, 6, 2); }
S(s_slice_neg) { return lathe_slice(g, X((2, 5)), -1, -3, 100, 1); }
S(s_matmul) { return lathe_matmul(g, X((2, 3)), Y((3, 4))); }
S(s_matmul_batched) { return lathe_matmul(g, X((2, 1, 2, 3)), Y((3, 3, 2))); }
S(s_linear) { return lathe_linear(g, X((2, 3)), lathe_param(g, "fc.weight", t, D(4, 3), true), lathe_param(g, "fc.bias", t, D(4), true)); }
S(s_linear_nobias) { return lathe_linear(g, X((2, 2, 3)), lathe_param(g, "fc.weight", t, D(4, 3), true), NULL); }
S(s_conv2d) {
    return lathe_conv2d(g, X((1, 2, 5, 5)), lathe_param(g, "conv.weight", t, D(3, 2, 3, 3), true),
                        lathe_param(g, "conv.bias", t, D(3), true), 1, 1, 1, 1);
}
S(s_conv2d_strided) {
    return lathe_conv2d(g, X((2, 4, 7, 7)), lathe_param(g, "conv.weight", t, D(4, 2, 3, 3), true), NULL, 2, 1, 2, 2);
}
S(s_conv2d_hw) {
    return lathe_conv2d_hw(g, X((1, 3, 6, 5)), lathe_param(g, "conv.weight", t, D(3, 1, 2, 3), true),
                           lathe_param(g, "conv.bias", t, D(3), true), (int64_t[]){2, 1}, (int64_t[]){0, 1},
                           (int64_t[]){1, 2}, 3);
}
S(s_max_pool2d) { return lathe_max_pool2d(g, X((1, 2, 5, 5)), 3, 2, 1); }
S(s_max_pool2d_hw) { return lathe_max_pool2d_hw(g, X((2, 1, 4, 6)), (int64_t[]){2, 3}, (int64_t[]){2, 1}, (int64_t[]){0, 1}); }
S(s_avg_pool2d) { return lathe_avg_pool2d(g, X((1, 2, 4, 4)), 2, 2, 0, true); }
S(s_avg_pool2d_pad) { return lathe_avg_pool2d(g, X((1, 1, 5, 5)), 3, 2, 1, true); }
S(s_avg_pool2d_nopad) { return lathe_avg_pool2d(g, X((1, 1, 5, 5)), 3, 2, 1, false); }
S(s_adaptive) { return lathe_adaptive_avg_pool2d(g, X((1, 2, 5, 7)), 2, 3); }
S(s_adaptive_1) { return lathe_adaptive_avg_pool2d(g, X((2, 3, 4, 4)), 1, 1); }
static lathe_node *bn(lathe_graph *g, lathe_dtype t, bool training) {
    return lathe_batch_norm2d(g, X((2, 3, 2, 2)), lathe_param(g, "bn.weight", t, D(3), true),
                              lathe_param(g, "bn.bias", t, D(3), true), lathe_buffer(g, "bn.running_mean", t, D(3)),
                              lathe_buffer(g, "bn.running_var", t, D(3)), training, 0.1, 1e-5);
}
S(s_bn_train) { return bn(g, t, true); }
S(s_bn_eval) { return bn(g, t, false); }
S(s_softmax) { return lathe_softmax(g, X((2, 3)), 1); }
S(s_softmax0) { return lathe_softmax(g, X((3, 2)), 0); }
S(s_log_softmax) { return lathe_log_softmax(g, X((2, 4)), -1); }
S(s_ce) { return lathe_cross_entropy(g, X((4, 3)), labels(g, 4), LATHE_REDUCE_MEAN); }
S(s_ce_sum) { return lathe_cross_entropy(g, X((4, 3)), labels(g, 4), LATHE_REDUCE_SUM); }
S(s_ce_none) { return lathe_cross_entropy(g, X((4, 3)), labels(g, 4), LATHE_REDUCE_NONE); }
/* sequences: the class axis 1, labels (N, T); ignore_index a class that occurs */
S(s_ce_seq) {
    return lathe_cross_entropy_ex(g, X((2, 3, 4)), lathe_input(g, "labels", LATHE_I64, D(2, 4)), LATHE_REDUCE_MEAN, 1, 0.1);
}
S(s_ce_seq_none) {
    return lathe_cross_entropy_ex(g, X((2, 3, 4)), lathe_input(g, "labels", LATHE_I64, D(2, 4)), LATHE_REDUCE_NONE, 2, 0);
}
S(s_nll_seq) {
    return lathe_nll_loss_ex(g, X((2, 3, 2, 2)), lathe_input(g, "labels", LATHE_I64, D(2, 2, 2)), LATHE_REDUCE_SUM, 0);
}
S(s_dropout) { return lathe_dropout(g, X((4, 5)), 0.25); }
S(s_nll) { return lathe_nll_loss(g, lathe_log_softmax(g, X((4, 3)), 1), labels(g, 4), LATHE_REDUCE_MEAN); }
S(s_nll_sum) { return lathe_nll_loss(g, X((3, 5)), labels(g, 3), LATHE_REDUCE_SUM); }
S(s_mse) { return lathe_mse_loss(g, X((2, 3)), Y((2, 3)), LATHE_REDUCE_MEAN); }
S(s_mse_sum) { return lathe_mse_loss(g, X((2, 3)), Y((2, 3)), LATHE_REDUCE_SUM); }
S(s_mse_none) { return lathe_mse_loss(g, X((2, 3)), Y((2, 3)), LATHE_REDUCE_NONE); }

static lathe_node *ln(lathe_graph *g, lathe_dtype t, lathe_node *x, int k, bool weight, bool bias) {
    const int64_t *ns = lathe_node_shape(x) + lathe_node_rank(x) - k;
    lathe_node *w = weight ? lathe_param(g, "ln.weight", t, k, ns, true) : NULL;
    lathe_node *b = bias ? lathe_param(g, "ln.bias", t, k, ns, true) : NULL;
    return lathe_layer_norm(g, x, k, ns, w, b, 1e-5);
}
S(s_ln) { return ln(g, t, X((3, 4)), 1, true, true); }
S(s_ln_last_two) { return ln(g, t, X((2, 3, 4)), 2, true, true); }
S(s_ln_plain) { return ln(g, t, X((2, 5)), 1, false, false); }
S(s_ln_whole_weight) { return ln(g, t, X((3, 4)), 2, true, false); }
/* The collectives over one process (the evaluator's world, which the JIT
 * is checked against); all_reduce decomposes into a gather and a sum, of a
 * rank-6 x too (no room for a new axis: its first dims are merged). */
S(s_all_gather) { return lathe_all_gather(g, X((2, 3)), -1, 1); }
S(s_all_gather_mid) { return lathe_all_gather(g, X((2, 3, 2)), 1, 1); }
S(s_all_reduce) { return lathe_all_reduce(g, X((2, 3)), 1); }
S(s_all_reduce_rank6) { return lathe_all_reduce(g, X((2, 1, 3, 1, 2, 2)), 1); }

/* Gradient kernels: no public builders, so lt_make with attributes in schema
 * order.  Each gy has the shape the forward op gives (see test_shapes.c). */
#define P2(a, b) {.n = 2, .v = {a, b}}
#define I1(a) {.v = {a}}
/* gy [3,2] is x[1:6:2] of an x [7,2] */
S(s_slice_bw) {
    return lt_make(g, LT_OP_SLICE_BACKWARD, 1, (lathe_node *[]){X((3, 2))},
                   (lt_attr[LT_MAX_ATTRS]){I1(0), I1(1), I1(6), I1(2), I1(7)});
}
/* gy [2,2] is x[:, 1:5:3] of an x [2,5], axis given as -1 */
S(s_slice_bw_neg) {
    return lt_make(g, LT_OP_SLICE_BACKWARD, 1, (lathe_node *[]){X((2, 2))},
                   (lt_attr[LT_MAX_ATTRS]){I1(-1), I1(1), I1(5), I1(3), I1(5)});
}
/* as conv2d/stride-dilation-groups: x [2,4,7,7], w [4,2,3,3], stride 2, pad 1, dilation 2, groups 2 */
S(s_conv_bw_input) {
    return lt_make(g, LT_OP_CONV2D_BACKWARD_INPUT, 2,
                   (lathe_node *[]){X((2, 4, 3, 3)), lathe_param(g, "conv.weight", t, D(4, 2, 3, 3), true)},
                   (lt_attr[LT_MAX_ATTRS]){P2(2, 2), P2(1, 1), P2(2, 2), I1(2), P2(7, 7)});
}
/* depthwise, per-axis attributes, and an input row that no window reaches:
 * x [1,3,7,5], w [3,1,2,3], stride (2,1), pad (0,1), dilation (1,2), groups 3
 * gives (7-2)/2+1 = 3 rows (row 6 unused) and (5+2-5)/1+1 = 3 cols */
S(s_conv_bw_input_hw) {
    return lt_make(g, LT_OP_CONV2D_BACKWARD_INPUT, 2,
                   (lathe_node *[]){X((1, 3, 3, 3)), lathe_param(g, "conv.weight", t, D(3, 1, 2, 3), true)},
                   (lt_attr[LT_MAX_ATTRS]){P2(2, 1), P2(0, 1), P2(1, 2), I1(3), P2(7, 5)});
}
S(s_conv_bw_weight) {
    lathe_node *x = X((2, 4, 7, 7));
    return lt_make(g, LT_OP_CONV2D_BACKWARD_WEIGHT, 2, (lathe_node *[]){x, Y((2, 4, 3, 3))},
                   (lt_attr[LT_MAX_ATTRS]){P2(2, 2), P2(1, 1), P2(2, 2), I1(2), P2(3, 3)});
}
S(s_conv_bw_weight_hw) {
    lathe_node *x = X((1, 3, 7, 5));
    return lt_make(g, LT_OP_CONV2D_BACKWARD_WEIGHT, 2, (lathe_node *[]){x, Y((1, 3, 3, 3))},
                   (lt_attr[LT_MAX_ATTRS]){P2(2, 1), P2(0, 1), P2(1, 2), I1(3), P2(2, 3)});
}
/* overlapping windows: as max_pool2d, x [1,2,5,5] k3 s2 p1 */
S(s_max_pool_bw) {
    lathe_node *gy = Y((1, 2, 3, 3));
    return lt_make(g, LT_OP_MAX_POOL2D_BACKWARD, 2, (lathe_node *[]){gy, X((1, 2, 5, 5))},
                   (lt_attr[LT_MAX_ATTRS]){P2(3, 3), P2(2, 2), P2(1, 1)});
}
/* as max_pool2d/hw: x [2,1,4,6], k (2,3), s (2,1), p (0,1) */
S(s_max_pool_bw_hw) {
    lathe_node *gy = Y((2, 1, 2, 6));
    return lt_make(g, LT_OP_MAX_POOL2D_BACKWARD, 2, (lathe_node *[]){gy, X((2, 1, 4, 6))},
                   (lt_attr[LT_MAX_ATTRS]){P2(2, 3), P2(2, 1), P2(0, 1)});
}
/* as avg_pool2d/pad: x [1,1,5,5] k3 s2 p1 */
S(s_avg_pool_bw) {
    return lt_make(g, LT_OP_AVG_POOL2D_BACKWARD, 1, (lathe_node *[]){X((1, 1, 3, 3))},
                   (lt_attr[LT_MAX_ATTRS]){P2(3, 3), P2(2, 2), P2(1, 1), I1(true), P2(5, 5)});
}
/* excluding padding, over an x [1,1,6,5]: (6+2-3)/2+1 = 3 rows too, row 5 unused */
S(s_avg_pool_bw_nopad) {
    return lt_make(g, LT_OP_AVG_POOL2D_BACKWARD, 1, (lathe_node *[]){X((1, 1, 3, 3))},
                   (lt_attr[LT_MAX_ATTRS]){P2(3, 3), P2(2, 2), P2(1, 1), I1(false), P2(6, 5)});
}
/* as adaptive_avg_pool2d: uneven, overlapping bins 5 -> 2, 7 -> 3 */
S(s_adaptive_bw) {
    return lt_make(g, LT_OP_ADAPTIVE_AVG_POOL2D_BACKWARD, 1, (lathe_node *[]){X((1, 2, 2, 3))},
                   (lt_attr[LT_MAX_ATTRS]){P2(5, 7)});
}
S(s_adaptive_bw_1) {
    return lt_make(g, LT_OP_ADAPTIVE_AVG_POOL2D_BACKWARD, 1, (lathe_node *[]){X((2, 3, 1, 1))},
                   (lt_attr[LT_MAX_ATTRS]){P2(4, 4)});
}
/* index_select: i64 indices in [0, 3) (bind_random), with repeats; the
 * gradient kernel's gy has the forward result's shape */
static lathe_node *index(lathe_graph *g, int r, const int64_t *s) { return lathe_input(g, "index", LATHE_I64, r, s); }
S(s_index_select) { return lathe_index_select(g, X((3, 4)), 0, index(g, D(2, 3))); }
S(s_index_select_mid) { return lathe_index_select(g, X((2, 3, 2)), -2, index(g, D(4))); }
S(s_index_select_rank0) { return lathe_index_select(g, X((2, 5)), 1, index(g, 0, NULL)); }
S(s_index_select_bw) {
    return lt_make(g, LT_OP_INDEX_SELECT_BACKWARD, 2, (lathe_node *[]){X((2, 3, 4)), index(g, D(2, 3))},
                   (lt_attr[LT_MAX_ATTRS]){I1(0), I1(3)});
}
S(s_index_select_bw_mid) {
    return lt_make(g, LT_OP_INDEX_SELECT_BACKWARD, 2, (lathe_node *[]){X((2, 4, 2)), index(g, D(4))},
                   (lt_attr[LT_MAX_ATTRS]){I1(-2), I1(3)});
}

#define E(label, OP, fn) {label, LT_OP_##OP, fn}
const sample samples[] = {
    E("input", INPUT, s_input), E("param", PARAM, s_param), E("buffer", BUFFER, s_buffer),
    E("const", CONST, s_const), E("const/scalar", CONST, s_scalar),
    E("add", ADD, s_add), E("add/rank0", ADD, s_add_rank0), E("add/size1", ADD, s_add_size1),
    E("add/zero-size", ADD, s_add_zero), E("add/batch1", ADD, s_add_batch1),
    E("sub", SUB, s_sub), E("mul", MUL, s_mul), E("div", DIV, s_div), E("pow", POW, s_pow),
    E("maximum", MAXIMUM, s_maximum), E("minimum", MINIMUM, s_minimum),
    E("gt", GT, s_gt), E("ge", GE, s_ge), E("lt", LT, s_lt), E("le", LE, s_le), E("eq", EQ, s_eq),
    E("ne", NE, s_ne), E("where", WHERE, s_where),
    E("neg", NEG, s_neg), E("exp", EXP, s_exp), E("log", LOG, s_log), E("sqrt", SQRT, s_sqrt),
    E("rsqrt", RSQRT, s_rsqrt), E("abs", ABS, s_abs), E("relu", RELU, s_relu),
    E("sigmoid", SIGMOID, s_sigmoid), E("tanh", TANH, s_tanh), E("erf", ERF, s_erf),
    E("gelu", GELU, s_gelu), E("gelu/tanh", GELU, s_gelu_tanh), E("silu", SILU, s_silu),
    E("softplus", SOFTPLUS, s_softplus), E("softplus/threshold", SOFTPLUS, s_softplus_thr),
    E("leaky_relu", LEAKY_RELU, s_leaky_relu), E("clamp", CLAMP, s_clamp), E("clamp/one-sided", CLAMP, s_clamp_one),
    E("pow_scalar", POW_SCALAR, s_pow_scalar), E("pow_scalar/frac", POW_SCALAR, s_pow_scalar_frac),
    E("cast", CAST, s_cast), E("cast/int", CAST, s_cast_int),
    E("sum", SUM, s_sum), E("sum/all", SUM, s_sum_all), E("sum/neg-axes", SUM, s_sum_neg),
    E("mean", MEAN, s_mean), E("max", MAX, s_max), E("max/keepdim", MAX, s_max_keep),
    E("min", MIN, s_min), E("min/keepdim", MIN, s_min_keep),
    E("argmax", ARGMAX, s_argmax),
    E("reshape", RESHAPE, s_reshape), E("reshape/infer", RESHAPE, s_reshape_infer),
    E("flatten", FLATTEN, s_flatten), E("permute", PERMUTE, s_permute),
    E("permute/transpose", PERMUTE, s_transpose), E("broadcast_to", BROADCAST_TO, s_broadcast_to),
    E("concat", CONCAT, s_concat), E("concat/one", CONCAT, s_concat_one),
    E("slice", SLICE, s_slice), E("slice/negative", SLICE, s_slice_neg),
    E("matmul", MATMUL, s_matmul), E("matmul/batched", MATMUL, s_matmul_batched),
    E("linear", LINEAR, s_linear), E("linear/nobias", LINEAR, s_linear_nobias),
    E("conv2d", CONV2D, s_conv2d), E("conv2d/stride-dilation-groups", CONV2D, s_conv2d_strided),
    E("conv2d/hw-depthwise", CONV2D, s_conv2d_hw),
    E("max_pool2d", MAX_POOL2D, s_max_pool2d), E("max_pool2d/hw", MAX_POOL2D, s_max_pool2d_hw),
    E("avg_pool2d", AVG_POOL2D, s_avg_pool2d), E("avg_pool2d/pad", AVG_POOL2D, s_avg_pool2d_pad),
    E("avg_pool2d/exclude-pad", AVG_POOL2D, s_avg_pool2d_nopad),
    E("adaptive_avg_pool2d", ADAPTIVE_AVG_POOL2D, s_adaptive),
    E("adaptive_avg_pool2d/1x1", ADAPTIVE_AVG_POOL2D, s_adaptive_1),
    E("batch_norm2d/train", BATCH_NORM2D, s_bn_train), E("batch_norm2d/eval", BATCH_NORM2D, s_bn_eval),
    E("softmax", SOFTMAX, s_softmax), E("softmax/axis0", SOFTMAX, s_softmax0),
    E("log_softmax", LOG_SOFTMAX, s_log_softmax),
    E("cross_entropy", CROSS_ENTROPY, s_ce), E("cross_entropy/sum", CROSS_ENTROPY, s_ce_sum),
    E("cross_entropy/none", CROSS_ENTROPY, s_ce_none),
    E("nll_loss", NLL_LOSS, s_nll), E("nll_loss/sum", NLL_LOSS, s_nll_sum),
    E("cross_entropy/seq-ignore-smoothing", CROSS_ENTROPY, s_ce_seq), E("cross_entropy/seq-none", CROSS_ENTROPY, s_ce_seq_none),
    E("nll_loss/seq-ignore", NLL_LOSS, s_nll_seq),
    E("dropout", DROPOUT, s_dropout),
    E("mse_loss", MSE_LOSS, s_mse), E("mse_loss/sum", MSE_LOSS, s_mse_sum),
    E("mse_loss/none", MSE_LOSS, s_mse_none),
    E("slice_backward", SLICE_BACKWARD, s_slice_bw),
    E("slice_backward/negative-axis", SLICE_BACKWARD, s_slice_bw_neg),
    E("conv2d_backward_input", CONV2D_BACKWARD_INPUT, s_conv_bw_input),
    E("conv2d_backward_input/hw-depthwise", CONV2D_BACKWARD_INPUT, s_conv_bw_input_hw),
    E("conv2d_backward_weight", CONV2D_BACKWARD_WEIGHT, s_conv_bw_weight),
    E("conv2d_backward_weight/hw-depthwise", CONV2D_BACKWARD_WEIGHT, s_conv_bw_weight_hw),
    E("max_pool2d_backward", MAX_POOL2D_BACKWARD, s_max_pool_bw),
    E("max_pool2d_backward/hw", MAX_POOL2D_BACKWARD, s_max_pool_bw_hw),
    E("avg_pool2d_backward", AVG_POOL2D_BACKWARD, s_avg_pool_bw),
    E("avg_pool2d_backward/exclude-pad", AVG_POOL2D_BACKWARD, s_avg_pool_bw_nopad),
    E("adaptive_avg_pool2d_backward", ADAPTIVE_AVG_POOL2D_BACKWARD, s_adaptive_bw),
    E("adaptive_avg_pool2d_backward/1x1", ADAPTIVE_AVG_POOL2D_BACKWARD, s_adaptive_bw_1),
    E("index_select", INDEX_SELECT, s_index_select), E("index_select/middle-axis", INDEX_SELECT, s_index_select_mid),
    E("index_select/rank0-index", INDEX_SELECT, s_index_select_rank0),
    E("index_select_backward", INDEX_SELECT_BACKWARD, s_index_select_bw),
    E("index_select_backward/middle-axis", INDEX_SELECT_BACKWARD, s_index_select_bw_mid),
    E("layer_norm", LAYER_NORM, s_ln), E("layer_norm/last-two", LAYER_NORM, s_ln_last_two),
    E("layer_norm/no-affine", LAYER_NORM, s_ln_plain), E("layer_norm/whole-weight-only", LAYER_NORM, s_ln_whole_weight),
    E("all_gather", ALL_GATHER, s_all_gather), E("all_gather/middle-axis", ALL_GATHER, s_all_gather_mid),
    E("all_reduce", ALL_REDUCE, s_all_reduce), E("all_reduce/rank6", ALL_REDUCE, s_all_reduce_rank6),
};
const int nsamples = (int)(sizeof samples / sizeof samples[0]);

lathe_graph *sample_graph(const sample *s, lathe_dtype t) {
    lathe_graph *g = lathe_graph_new();
    assert_non_null(g);
    lathe_node *y = s->build(g, t);
    lathe_output(g, "y", y);
    if (lathe_graph_status(g) != LATHE_OK)
        fail_msg("sample %s: %s", s->label, lathe_graph_error(g));
    return g;
}

double rng_uniform(rng *r, double lo, double hi) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    uint64_t x = r->s * 2685821657736338717ULL;
    return lo + (hi - lo) * (double)(x >> 11) / 9007199254740992.0;
}

void bind_random(lathe_eval *ev, lathe_graph *g, uint64_t seed) {
    rng r = {seed * 0x9E3779B97F4A7C15ULL + 1};
    for (int i = 0; i < lathe_graph_num_nodes(g); i++) {
        lathe_node *n = lathe_graph_node(g, i);
        const char *name = lathe_node_name(n);
        if (!name || n->op == LT_OP_CONST) continue;
        if (!strcmp(name, LATHE_RANK_NAME)) { /* a data-parallel program's process: the first (draws nothing) */
            double zero = 0;
            if (lathe_eval_set_f64(ev, name, &zero) != LATHE_OK) fail_msg("bind %s: %s", name, lathe_eval_error(ev));
            continue;
        }
        int64_t k = lathe_node_numel(n);
        double *v = malloc((size_t)(k ? k : 1) * sizeof *v);
        assert_non_null(v);
        size_t len = strlen(name);
        bool pos = (len >= 3 && strcmp(name + len - 3, "pos") == 0) || strstr(name, "running_var") != NULL;
        for (int64_t j = 0; j < k; j++) {
            if (n->dtype == LATHE_I64) v[j] = floor(rng_uniform(&r, 0, 3));
            else if (n->dtype == LATHE_BOOL) v[j] = rng_uniform(&r, 0, 1) < 0.5;
            else v[j] = pos ? rng_uniform(&r, 0.5, 2) : rng_uniform(&r, -1, 1);
        }
        if (lathe_eval_set_f64(ev, name, v) != LATHE_OK) fail_msg("bind %s: %s", name, lathe_eval_error(ev));
        free(v);
    }
}

double elem_at(lathe_dtype t, const void *p, int64_t i) {
    switch (t) {
    case LATHE_F32: return ((const float *)p)[i];
    case LATHE_F64: return ((const double *)p)[i];
    case LATHE_I64: return (double)((const int64_t *)p)[i];
    case LATHE_BOOL: return ((const bool *)p)[i];
    }
    return 0;
}

const char *src_path(const char *rel) {
    static char path[4096];
    const char *src = getenv("LATHE_SRC");
    snprintf(path, sizeof path, "%s/%s", src ? src : ".", rel);
    return path;
}

const char *resnet_fixture_path(void) { return src_path("tests/fixtures/resnet_w4.safetensors"); }

lathe_st_file *read_fixture(const char *name) {
    char err[512], rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/%s", name);
    lathe_st_file *f = lathe_st_read(src_path(rel), err, sizeof err);
    if (!f) fail_msg("%s", err);
    return f;
}

lathe_st_file *resnet_fixture(void) { return read_fixture("resnet_w4.safetensors"); }
