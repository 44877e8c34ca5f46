/* test_eval.c - the reference evaluator.
 *
 * The evaluator is the oracle for every compiled path, so it is itself
 * checked against values worked out by hand: one table of small cases, at
 * least one per op (checked over the whole op table), each with its expected
 * values as literals and the arithmetic in a comment.  Then f32 rounding,
 * every op sample in f32 and f64 (finite, and f32 agreeing with f64), the
 * batch-norm running-statistics update, and the errors a user can cause. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"

#define D LATHE_DIMS
#define VALS(...) (int)(sizeof((const double[]){__VA_ARGS__}) / sizeof(double)), (const double[]){__VA_ARGS__}

/* ---- hand-computed cases ----------------------------------------------------- */

/* A case builds its graph in f64 through these helpers, which record each
 * leaf's values to be bound before the run. */
typedef struct {
    lathe_graph *g;
    int nleaves;
    struct {
        const char *name;
        double v[64];
    } leaf[8];
} ctx;

static lathe_node *leaf(ctx *c, lt_op op, const char *name, lathe_dtype t, int rank,
                        const int64_t *shape, int nv, const double *v) {
    int64_t numel = lt_numel(rank, shape);
    /* a zero-size leaf is written with one dummy value */
    if (!(numel == nv || (numel == 0 && nv == 1)) || numel > 64 || c->nleaves == 8)
        fail_msg("leaf '%s': %d values for %lld elements", name, nv, (long long)numel);
    c->leaf[c->nleaves].name = name;
    memcpy(c->leaf[c->nleaves].v, v, (size_t)numel * sizeof *v);
    c->nleaves++;
    switch (op) {
    case LT_OP_PARAM: return lathe_param(c->g, name, t, rank, shape, true);
    case LT_OP_BUFFER: return lathe_buffer(c->g, name, t, rank, shape);
    default: return lathe_input(c->g, name, t, rank, shape);
    }
}
/* IN("a", (2, 3), 1, 2, 3, 4, 5, 6): an f64 input of shape (2, 3) */
#define IN(name, shape, ...) leaf(c, LT_OP_INPUT, name, LATHE_F64, D shape, VALS(__VA_ARGS__))
#define INT(name, t, shape, ...) leaf(c, LT_OP_INPUT, name, t, D shape, VALS(__VA_ARGS__))
#define PARAM(name, shape, ...) leaf(c, LT_OP_PARAM, name, LATHE_F64, D shape, VALS(__VA_ARGS__))
#define BUF(name, shape, ...) leaf(c, LT_OP_BUFFER, name, LATHE_F64, D shape, VALS(__VA_ARGS__))
#define LABELS(shape, ...) leaf(c, LT_OP_INPUT, "labels", LATHE_I64, D shape, VALS(__VA_ARGS__))
#define CASE(fn) static lathe_node *fn(ctx *c)
#define G c->g

static const double LN2 = 0.6931471805599453, LN3 = 1.0986122886681098;

/* leaves */
CASE(c_sub_const) { return lathe_sub(G, IN("x", (2), 5, 7), lathe_const(G, LATHE_F64, D(2), (double[]){1.5, -2})); }
CASE(c_mul_scalar) { return lathe_mul(G, lathe_scalar(G, LATHE_F64, 3), IN("x", (3), 1, 2, -3)); }
/* binary */
CASE(c_add) { return lathe_add(G, IN("a", (2, 3), 1, 2, 3, 4, 5, 6), IN("b", (3), 10, 20, 30)); }
CASE(c_add_rank0) { return lathe_add(G, IN("a", (), 5), IN("b", (2), 1, 2)); }
CASE(c_add_rank0_both) { return lathe_add(G, IN("a", (), 5), IN("b", (), 0.5)); }
CASE(c_add_size1) { return lathe_add(G, IN("a", (2, 1), 1, 2), IN("b", (1, 3), 10, 20, 30)); }
CASE(c_add_zero) { return lathe_add(G, IN("a", (0, 3), 0), IN("b", (3), 1, 2, 3)); }
CASE(c_add_zero_bcast) { return lathe_add(G, IN("a", (1, 3), 1, 2, 3), IN("b", (0, 1), 0)); }
CASE(c_add_batch1) { return lathe_add(G, IN("a", (1, 2, 1), 1, 2), IN("b", (3), 10, 20, 30)); }
CASE(c_add_i64) { return lathe_add(G, INT("a", LATHE_I64, (2), 1, 2), INT("b", LATHE_I64, (2), 3, -5)); }
CASE(c_sub) { return lathe_sub(G, IN("a", (2, 2), 5, 6, 7, 8), IN("b", (2, 1), 1, 2)); }
CASE(c_mul) { return lathe_mul(G, IN("a", (2, 1), 2, -3), IN("b", (2), 4, 0.5)); }
CASE(c_div) { return lathe_div(G, IN("a", (5), 1, 3, 1, -1, 0), IN("b", (5), 4, -2, 0, 0, 0)); }
CASE(c_pow) { return lathe_pow(G, IN("a", (3), 2, 4, 9), IN("b", (3), 3, 0.5, -0.5)); }
CASE(c_maximum) { return lathe_maximum(G, IN("a", (4), 1, NAN, 3, -1), IN("b", (4), 2, 0, NAN, -2)); }
CASE(c_maximum_i64) { return lathe_maximum(G, INT("a", LATHE_I64, (2, 1), 1, 5), INT("b", LATHE_I64, (2), 3, 4)); }
CASE(c_minimum) { return lathe_minimum(G, IN("a", (4), 1, NAN, 3, -1), IN("b", (4), 2, 0, NAN, -2)); }
#define CMP(fn, f) CASE(fn) { return f(G, IN("a", (4), 1, 2, 3, NAN), IN("b", (), 2)); }
CMP(c_gt, lathe_gt)
CMP(c_ge, lathe_ge)
CMP(c_lt, lathe_lt)
CMP(c_le, lathe_le)
CMP(c_eq, lathe_eq)
CMP(c_ne, lathe_ne)
CASE(c_eq_i64) { return lathe_eq(G, INT("a", LATHE_I64, (3), 1, 2, 3), INT("b", LATHE_I64, (3, 1), 2, 3, 4)); }
CASE(c_where) { return lathe_where(G, INT("c", LATHE_BOOL, (2, 1), 1, 0), IN("a", (2, 3), 1, 2, 3, 4, 5, 6), IN("b", (), -1)); }
CASE(c_where_rank0) { return lathe_where(G, INT("c", LATHE_BOOL, (), 1), IN("a", (2), 1, 2), IN("b", (2), 3, 4)); }
/* unary */
CASE(c_neg) { return lathe_neg(G, IN("x", (3), 1, -2, 0)); }
CASE(c_neg_rank0) { return lathe_neg(G, IN("x", (), 3)); }
CASE(c_exp) { return lathe_exp(G, IN("x", (3), 0, 1, -1)); }
CASE(c_log) { return lathe_log(G, IN("x", (4), 1, 2.718281828459045, 0, -1)); }
CASE(c_sqrt) { return lathe_sqrt(G, IN("x", (3), 4, 2, 0)); }
CASE(c_rsqrt) { return lathe_rsqrt(G, IN("x", (3), 4, 0.25, 0)); }
CASE(c_abs) { return lathe_abs(G, IN("x", (3), -1.5, 2, -0.0)); }
CASE(c_relu) { return lathe_relu(G, IN("x", (4), -1, 0, 2, NAN)); }
CASE(c_relu_i64) { return lathe_relu(G, INT("x", LATHE_I64, (2), -3, 4)); }
CASE(c_sigmoid) { return lathe_sigmoid(G, IN("x", (3), 0, LN3, -LN3)); }
CASE(c_tanh) { return lathe_tanh(G, IN("x", (3), 0, LN2, -LN2)); }
CASE(c_erf) { return lathe_erf(G, IN("x", (6), 0, -0.0, 0.5, 1, -2, 3)); }
CASE(c_erf_special) { return lathe_erf(G, IN("x", (3), INFINITY, -INFINITY, NAN)); }
CASE(c_gelu) { return lathe_gelu(G, IN("x", (6), 0, 1, -1, 2, -3, NAN), false); }
CASE(c_gelu_tanh) { return lathe_gelu(G, IN("x", (4), 0, 1, -1, 2), true); }
CASE(c_silu) { return lathe_silu(G, IN("x", (4), 0, LN3, -LN3, -INFINITY)); }
CASE(c_softplus) { return lathe_softplus(G, IN("x", (6), 0, LN3, -LN3, 25, -INFINITY, INFINITY), 1, 20); }
CASE(c_softplus_beta) { return lathe_softplus(G, IN("x", (4), 0, -LN3 / 2, LN3 / 2, 0.75), 2, 1); }
CASE(c_leaky_relu) { return lathe_leaky_relu(G, IN("x", (5), -2, 0, 3, NAN, -INFINITY), 0.1); }
CASE(c_clamp) { return lathe_clamp(G, IN("x", (6), -3, 0.5, 5, NAN, -INFINITY, INFINITY), -1, 2); }
CASE(c_clamp_one) { return lathe_clamp(G, IN("x", (3), -5, 3, -INFINITY), -INFINITY, 0); }
CASE(c_clamp_crossed) { return lathe_clamp(G, IN("x", (3), -1, 0.5, 2), 1, 0); }
CASE(c_pow_scalar) { return lathe_pow_scalar(G, IN("x", (3), 2, 3, -2), 3); }
CASE(c_pow_scalar_frac) { return lathe_pow_scalar(G, IN("x", (2), 4, 9), -0.5); }
CASE(c_cast_i64) { return lathe_cast(G, IN("x", (4), 1.7, -1.7, 2.5, -0.5), LATHE_I64); }
CASE(c_cast_bool) { return lathe_cast(G, IN("x", (4), 0, 0.5, -2, NAN), LATHE_BOOL); }
CASE(c_cast_from_bool) { return lathe_cast(G, INT("x", LATHE_BOOL, (2), 1, 0), LATHE_F64); }
CASE(c_cast_f32) { return lathe_cast(G, IN("x", (2), 0.1, 3), LATHE_F32); }
CASE(c_cast_from_i64) { return lathe_cast(G, INT("x", LATHE_I64, (2), -7, 3), LATHE_F64); }
/* reductions */
#define X23 IN("x", (2, 3), 1, 2, 3, 4, 5, 6)
CASE(c_sum) { return lathe_sum(G, X23, LATHE_AXES(1), false); }
CASE(c_sum_keep) { return lathe_sum(G, X23, LATHE_AXES(1), true); }
CASE(c_sum_all) { return lathe_sum(G, X23, 0, NULL, false); }
CASE(c_sum_neg) { return lathe_sum(G, IN("x", (2, 3, 2), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12), LATHE_AXES(-1, 0), false); }
CASE(c_sum_empty) { return lathe_sum(G, IN("x", (0, 3), 0), LATHE_AXES(0), false); }
CASE(c_sum_rank0) { return lathe_sum(G, IN("x", (), 5), 0, NULL, false); }
CASE(c_sum_i64) { return lathe_sum(G, INT("x", LATHE_I64, (3), 1, 2, -4), 0, NULL, false); }
CASE(c_mean) { return lathe_mean(G, X23, LATHE_AXES(0), false); }
CASE(c_mean_keep) { return lathe_mean(G, X23, LATHE_AXES(-1), true); }
CASE(c_mean_empty) { return lathe_mean(G, IN("x", (0, 2), 0), LATHE_AXES(0), false); }
CASE(c_max) { return lathe_max(G, IN("x", (2, 3), 1, 5, 3, 4, 2, 6), LATHE_AXES(1), false); }
CASE(c_max_nan) { return lathe_max(G, IN("x", (3, 3), 1, NAN, 3, NAN, 2, 6, -1, -2, -3), LATHE_AXES(1), false); }
CASE(c_max_keep) { return lathe_max(G, IN("x", (2, 2, 2), 1, 2, 3, 4, 5, 6, 7, 8), LATHE_AXES(0, 2), true); }
CASE(c_min) { return lathe_min(G, IN("x", (2, 3), 1, 5, 3, 4, 2, 6), LATHE_AXES(1), false); }
CASE(c_min_nan) { return lathe_min(G, IN("x", (3, 3), 1, NAN, 3, NAN, 2, 6, -1, -2, -3), LATHE_AXES(1), false); }
CASE(c_min_keep) { return lathe_min(G, IN("x", (2, 2, 2), 1, 2, 3, 4, 5, 6, 7, 8), LATHE_AXES(0, 2), true); }
CASE(c_min_i64) { return lathe_min(G, INT("x", LATHE_I64, (3), 4, -7, 2), 0, NULL, false); }
CASE(c_argmax) { return lathe_argmax(G, IN("x", (2, 3), 1, 3, 3, 5, NAN, NAN), 1, false); }
CASE(c_argmax_keep) { return lathe_argmax(G, IN("x", (2, 2), 1, 4, 3, 2), -2, true); }
/* shape ops */
CASE(c_reshape) { return lathe_reshape(G, X23, D(3, 2)); }
CASE(c_reshape_infer) { return lathe_reshape(G, X23, D(-1)); }
CASE(c_flatten) { return lathe_flatten(G, IN("x", (2, 2, 2), 1, 2, 3, 4, 5, 6, 7, 8), 1, -1); }
CASE(c_permute) { return lathe_permute(G, IN("x", (1, 2, 3), 0, 1, 2, 3, 4, 5), LATHE_AXES(2, 0, 1)); }
CASE(c_transpose) { return lathe_transpose(G, X23, 0, 1); }
CASE(c_broadcast_to) { return lathe_broadcast_to(G, IN("x", (3, 1), 1, 2, 3), D(2, 3, 2)); }
CASE(c_broadcast_rank0) { return lathe_broadcast_to(G, IN("x", (), 7), D(2)); }
CASE(c_concat) { return lathe_concat(G, 2, (lathe_node *[]){IN("a", (2, 1), 1, 2), IN("b", (2, 2), 3, 4, 5, 6)}, 1); }
CASE(c_concat_zero) { return lathe_concat(G, 2, (lathe_node *[]){IN("a", (0, 2), 0), IN("b", (1, 2), 7, 8)}, 0); }
CASE(c_concat3) {
    return lathe_concat(G, 3, (lathe_node *[]){IN("a", (2), 1, 2), IN("b", (1), 3), IN("c", (2), 4, 5)}, -1);
}
#define X7 IN("x", (7), 0, 1, 2, 3, 4, 5, 6)
CASE(c_slice) { return lathe_slice(G, X7, 0, 1, 6, 2); }
CASE(c_slice_step3) { return lathe_slice(G, X7, 0, 0, 7, 3); }
CASE(c_slice_neg) { return lathe_slice(G, IN("x", (2, 5), 0, 1, 2, 3, 4, 5, 6, 7, 8, 9), -1, -3, 100, 1); }
CASE(c_slice_empty) { return lathe_slice(G, IN("x", (3), 1, 2, 3), 0, 2, 1, 1); }
/* contractions */
CASE(c_matmul) { return lathe_matmul(G, IN("a", (2, 2), 1, 2, 3, 4), IN("b", (2, 2), 5, 6, 7, 8)); }
CASE(c_matmul_batch_a) { return lathe_matmul(G, IN("a", (2, 1, 2), 1, 2, 3, 4), IN("b", (2, 1), 10, 1)); }
CASE(c_matmul_batch_b) { return lathe_matmul(G, IN("a", (1, 2), 1, 2), IN("b", (2, 2, 1), 1, 1, 2, 3)); }
CASE(c_matmul_bcast) {
    return lathe_matmul(G, IN("a", (2, 1, 1, 2), 1, 2, 3, 4), IN("b", (3, 2, 1), 1, 0, 0, 1, 1, 1));
}
CASE(c_matmul_k0) { return lathe_matmul(G, IN("a", (2, 0), 0), IN("b", (0, 2), 0)); }
CASE(c_linear) {
    return lathe_linear(G, X23, PARAM("w", (2, 3), 1, 0, -1, 0.5, 0.5, 0.5), PARAM("b", (2), 10, 20));
}
CASE(c_linear_nobias) { return lathe_linear(G, IN("x", (3), 1, 2, 3), PARAM("w", (1, 3), 1, 1, 1), NULL); }
#define X33 IN("x", (1, 1, 3, 3), 1, 2, 3, 4, 5, 6, 7, 8, 9)
#define ONES22 PARAM("w", (1, 1, 2, 2), 1, 1, 1, 1)
CASE(c_conv) { return lathe_conv2d(G, X33, PARAM("w", (1, 1, 2, 2), 1, 0, 0, 1), PARAM("b", (1), 0.5), 1, 0, 1, 1); }
CASE(c_conv_stride_pad) { return lathe_conv2d(G, X33, ONES22, NULL, 2, 1, 1, 1); }
CASE(c_conv_dilation) { return lathe_conv2d(G, X33, ONES22, NULL, 1, 0, 2, 1); }
CASE(c_conv_depthwise) {
    return lathe_conv2d(G, IN("x", (1, 2, 2, 2), 1, 2, 3, 4, 5, 6, 7, 8), PARAM("w", (2, 1, 1, 1), 2, -1), NULL, 1, 0, 1, 2);
}
CASE(c_conv_groups) {
    return lathe_conv2d(G, IN("x", (1, 4, 1, 1), 1, 2, 3, 4), PARAM("w", (2, 2, 1, 1), 1, 1, 1, -1), NULL, 1, 0, 1, 2);
}
CASE(c_conv_batch) {
    return lathe_conv2d(G, IN("x", (2, 2, 1, 1), 1, 2, 3, 4), PARAM("w", (3, 2, 1, 1), 1, 0, 0, 1, 1, 1),
                        PARAM("b", (3), 0, 0, 10), 1, 0, 1, 1);
}
CASE(c_conv_hw) {
    return lathe_conv2d_hw(G, IN("x", (1, 1, 3, 2), 1, 2, 3, 4, 5, 6), PARAM("w", (1, 1, 1, 2), 1, 1), NULL,
                           (int64_t[]){2, 1}, (int64_t[]){0, 1}, (int64_t[]){1, 1}, 1);
}
/* pooling */
CASE(c_max_pool) { return lathe_max_pool2d(G, X33, 2, 1, 0); }
CASE(c_max_pool_pad) { return lathe_max_pool2d(G, IN("x", (1, 1, 3, 3), -1, -2, -3, -4, -5, -6, -7, -8, -9), 3, 2, 1); }
CASE(c_max_pool_nan) { return lathe_max_pool2d(G, IN("x", (1, 1, 2, 2), 1, NAN, 3, 4), 2, 2, 0); }
CASE(c_avg_pool) { return lathe_avg_pool2d(G, IN("x", (1, 1, 2, 4), 1, 2, 3, 4, 5, 6, 7, 8), 2, 2, 0, true); }
CASE(c_avg_pool_incl) { return lathe_avg_pool2d(G, X33, 3, 2, 1, true); }
CASE(c_avg_pool_excl) { return lathe_avg_pool2d(G, X33, 3, 2, 1, false); }
CASE(c_adaptive) { return lathe_adaptive_avg_pool2d(G, IN("x", (1, 1, 1, 5), 1, 2, 3, 4, 5), 1, 2); }
CASE(c_adaptive_2d) {
    return lathe_adaptive_avg_pool2d(G, IN("x", (1, 1, 3, 5), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), 2, 2);
}
CASE(c_adaptive_1x1) { return lathe_adaptive_avg_pool2d(G, IN("x", (1, 2, 2, 2), 1, 2, 3, 4, 5, 6, 7, 8), 1, 1); }
/* normalization and losses */
CASE(c_bn_train) {
    return lathe_batch_norm2d(G, IN("x", (1, 2, 1, 2), 1, 3, 3, 17), PARAM("w", (2), 2, -1), PARAM("b", (2), 0.5, 1),
                              BUF("rm", (2), 0, 0), BUF("rv", (2), 1, 1), true, 0.1, 15);
}
CASE(c_bn_train_n) {
    return lathe_batch_norm2d(G, IN("x", (2, 1, 2, 1), 1, 3, 3, 1), PARAM("w", (1), 1), PARAM("b", (1), 0),
                              IN("rm", (1), 100), IN("rv", (1), 100), true, 0.1, 15);
}
CASE(c_bn_eval) {
    return lathe_batch_norm2d(G, IN("x", (1, 2, 1, 1), 5, 1), PARAM("w", (2), 1, 0.5), PARAM("b", (2), 0, 1),
                              BUF("rm", (2), 1, 3), BUF("rv", (2), 3, 0), false, 0.1, 1);
}
CASE(c_ln) {
    return lathe_layer_norm(G, IN("x", (2, 4), 1, 3, 5, 7, 2, 2, 2, 2), 1, (int64_t[]){4}, PARAM("w", (4), 1, 3, 3, 2),
                            PARAM("b", (4), 0, 1, -1, 0.5), 4);
}
CASE(c_ln_two) { return lathe_layer_norm(G, IN("x", (1, 2, 2), 0, 2, 4, 6), 2, (int64_t[]){2, 2}, NULL, NULL, 11); }
CASE(c_ln_weight) {
    return lathe_layer_norm(G, IN("x", (2, 2), 1, 5, -1, -3), 1, (int64_t[]){2}, PARAM("w", (2), 3, -2), NULL, 0);
}
CASE(c_softmax) { return lathe_softmax(G, IN("x", (2, 2), 0, LN3, 1000, 1000), -1); }
CASE(c_softmax0) { return lathe_softmax(G, IN("x", (2, 2), 0, 1000, LN3, 1000), 0); }
CASE(c_log_softmax) { return lathe_log_softmax(G, IN("x", (2, 2), 0, LN3, 1000, 1000), 1); }
#define LOGITS IN("x", (2, 2), 0, LN3, LN3, 0)
CASE(c_ce) { return lathe_cross_entropy(G, LOGITS, LABELS((2), 1, 1), LATHE_REDUCE_MEAN); }
CASE(c_ce_sum) { return lathe_cross_entropy(G, LOGITS, LABELS((2), 1, 1), LATHE_REDUCE_SUM); }
CASE(c_ce_none) { return lathe_cross_entropy(G, LOGITS, LABELS((2), 1, 1), LATHE_REDUCE_NONE); }
CASE(c_ce_large) { return lathe_cross_entropy(G, IN("x", (1, 2), 1000, 1000), LABELS((1), 0), LATHE_REDUCE_MEAN); }
/* row 0 counts, row 1's label is the ignore index 0 */
CASE(c_ce_ignore) { return lathe_cross_entropy_ex(G, LOGITS, LABELS((2), 1, 0), LATHE_REDUCE_MEAN, 0, 0); }
CASE(c_ce_ignore_none) { return lathe_cross_entropy_ex(G, LOGITS, LABELS((2), 1, 0), LATHE_REDUCE_NONE, 0, 0); }
CASE(c_ce_all_ignored) { return lathe_cross_entropy_ex(G, LOGITS, LABELS((2), 1, 1), LATHE_REDUCE_MEAN, 1, 0); }
CASE(c_ce_smooth) { return lathe_cross_entropy_ex(G, LOGITS, LABELS((2), 1, 1), LATHE_REDUCE_NONE, -100, 0.2); }
/* the class axis 1 of (1, 2, 2): position 0 has logits (0, ln 3), position 1 (ln 3, 0) */
CASE(c_ce_seq) { return lathe_cross_entropy(G, IN("x", (1, 2, 2), 0, LN3, LN3, 0), LABELS((1, 2), 1, 1), LATHE_REDUCE_NONE); }
/* dropout: the generator state (seed 42, step 7 or 8), p = 0.5 */
#define RNG(step) leaf(c, LT_OP_BUFFER, "lathe.rng", LATHE_I64, D(2), VALS(42, step))
#define X8 IN("x", (8), 1, 2, 3, 4, 5, 6, 7, 8)
CASE(c_dropout) { return RNG(7), lathe_dropout(G, X8, 0.5); }
CASE(c_dropout_step) { return RNG(8), lathe_dropout(G, X8, 0.5); }
CASE(c_dropout_salt) { /* the second dropout of the graph */
    RNG(7);
    lathe_node *x = X8;
    lathe_dropout(G, x, 0.5);
    return lathe_dropout(G, x, 0.5);
}
CASE(c_dropout_all) { return RNG(7), lathe_dropout(G, X8, 1); }
/* the IR's third operand: elements 3..7 of X8 as a process's part of it, at
 * index 3 of the whole: their draws are X8's at 3..7 */
CASE(c_dropout_first) {
    lathe_node *r = RNG(7), *x = IN("x", (5), 4, 5, 6, 7, 8), *first = leaf(c, LT_OP_INPUT, "first", LATHE_I64, D(1), VALS(3));
    lt_attr a[LT_MAX_ATTRS] = {{.f = 0.5}, {.v = {0}}};
    return lt_make(G, LT_OP_DROPOUT, 3, (lathe_node *[]){x, r, first}, a);
}
#define LOGP IN("x", (2, 3), -1, -2, -3, -4, -5, -6)
CASE(c_nll) { return lathe_nll_loss(G, LOGP, LABELS((2), 2, 0), LATHE_REDUCE_MEAN); }
CASE(c_nll_sum) { return lathe_nll_loss(G, LOGP, LABELS((2), 2, 0), LATHE_REDUCE_SUM); }
CASE(c_nll_none) { return lathe_nll_loss(G, LOGP, LABELS((2), 2, 0), LATHE_REDUCE_NONE); }
#define MSE_AB IN("a", (3), 1, 2, 3), IN("b", (3), 1, 0, 6)
CASE(c_mse) { return lathe_mse_loss(G, MSE_AB, LATHE_REDUCE_MEAN); }
CASE(c_mse_sum) { return lathe_mse_loss(G, MSE_AB, LATHE_REDUCE_SUM); }
CASE(c_mse_none) { return lathe_mse_loss(G, MSE_AB, LATHE_REDUCE_NONE); }
CASE(c_mse_empty) { return lathe_mse_loss(G, IN("a", (0), 0), IN("b", (0), 0), LATHE_REDUCE_MEAN); }
/* gradient kernels: no public builders, so lt_make with attributes in schema order */
#define P2(a, b) {.n = 2, .v = {a, b}}
#define I1(a) {.v = {a}}
#define GRAD1(OP, a, ...) lt_make(G, LT_OP_##OP, 1, (lathe_node *[]){a}, (lt_attr[LT_MAX_ATTRS]){__VA_ARGS__})
#define GRAD2(OP, a, b, ...) lt_make(G, LT_OP_##OP, 2, (lathe_node *[]){a, b}, (lt_attr[LT_MAX_ATTRS]){__VA_ARGS__})
CASE(c_slice_bw) { return GRAD1(SLICE_BACKWARD, IN("gy", (3), 1, 2, 3), I1(0), I1(1), I1(6), I1(2), I1(7)); }
CASE(c_slice_bw_2d) { return GRAD1(SLICE_BACKWARD, IN("gy", (2, 2), 1, 2, 3, 4), I1(-1), I1(1), I1(5), I1(3), I1(5)); }
CASE(c_slice_bw_empty) { return GRAD1(SLICE_BACKWARD, IN("gy", (0), 0), I1(0), I1(2), I1(2), I1(1), I1(3)); }
#define GY22 IN("gy", (1, 1, 2, 2), 1, 2, 3, 4)
CASE(c_conv_bw_in) {
    return GRAD2(CONV2D_BACKWARD_INPUT, GY22, PARAM("w", (1, 1, 2, 2), 1, 0, 0, 1), P2(1, 1), P2(0, 0), P2(1, 1), I1(1), P2(3, 3));
}
CASE(c_conv_bw_in_stride_pad) {
    return GRAD2(CONV2D_BACKWARD_INPUT, GY22, ONES22, P2(2, 2), P2(1, 1), P2(1, 1), I1(1), P2(3, 3));
}
CASE(c_conv_bw_in_dilation) {
    return GRAD2(CONV2D_BACKWARD_INPUT, IN("gy", (1, 1, 1, 1), 2), PARAM("w", (1, 1, 2, 2), 1, 2, 3, 4), P2(1, 1),
                 P2(0, 0), P2(2, 2), I1(1), P2(3, 3));
}
CASE(c_conv_bw_in_groups) {
    return GRAD2(CONV2D_BACKWARD_INPUT, IN("gy", (1, 2, 2, 1), 1, 2, 3, 4), PARAM("w", (2, 2, 1, 1), 1, 10, 100, 1000),
                 P2(2, 1), P2(0, 0), P2(1, 1), I1(2), P2(4, 1));
}
CASE(c_conv_bw_w) {
    return GRAD2(CONV2D_BACKWARD_WEIGHT, X33, IN("gy", (1, 1, 2, 2), 1, 0, 0, 1), P2(1, 1), P2(0, 0), P2(1, 1), I1(1), P2(2, 2));
}
CASE(c_conv_bw_w_stride_pad) {
    return GRAD2(CONV2D_BACKWARD_WEIGHT, X33, GY22, P2(2, 2), P2(1, 1), P2(1, 1), I1(1), P2(2, 2));
}
CASE(c_conv_bw_w_dilation) {
    return GRAD2(CONV2D_BACKWARD_WEIGHT, X33, IN("gy", (1, 1, 1, 1), 2), P2(1, 1), P2(0, 0), P2(2, 2), I1(1), P2(2, 2));
}
CASE(c_conv_bw_w_groups) {
    return GRAD2(CONV2D_BACKWARD_WEIGHT, IN("x", (2, 2, 1, 1), 1, 2, 3, 4), IN("gy", (2, 2, 1, 1), 10, 20, 30, 40),
                 P2(1, 1), P2(0, 0), P2(1, 1), I1(2), P2(1, 1));
}
CASE(c_max_bw_overlap) {
    return GRAD2(MAX_POOL2D_BACKWARD, GY22, IN("x", (1, 1, 3, 3), 1, 2, 3, 4, 9, 5, 6, 7, 8), P2(2, 2), P2(1, 1), P2(0, 0));
}
CASE(c_max_bw_ties) {
    return GRAD2(MAX_POOL2D_BACKWARD, IN("gy", (1, 1, 1, 2), 1, 2), IN("x", (1, 1, 2, 3), 3, 1, 3, 3, 2, 3), P2(2, 2),
                 P2(1, 1), P2(0, 0));
}
CASE(c_max_bw_pad) {
    return GRAD2(MAX_POOL2D_BACKWARD, GY22, IN("x", (1, 1, 3, 3), -1, -2, -3, -4, -5, -6, -7, -8, -9), P2(3, 3),
                 P2(2, 2), P2(1, 1));
}
CASE(c_max_bw_nan) {
    return GRAD2(MAX_POOL2D_BACKWARD, IN("gy", (1, 1, 1, 1), 5), IN("x", (1, 1, 2, 2), 1, NAN, 3, NAN), P2(2, 2),
                 P2(2, 2), P2(0, 0));
}
CASE(c_max_bw_inf) {
    return GRAD2(MAX_POOL2D_BACKWARD, IN("gy", (1, 1, 1, 1), 3), IN("x", (1, 1, 1, 2), -INFINITY, -INFINITY), P2(1, 2),
                 P2(1, 1), P2(0, 0));
}
CASE(c_max_bw_empty) {
    return GRAD2(MAX_POOL2D_BACKWARD, IN("gy", (1, 1, 1, 1), 3), IN("x", (1, 1, 0, 1), 0), P2(2, 1), P2(1, 1), P2(1, 0));
}
CASE(c_avg_bw) {
    return GRAD1(AVG_POOL2D_BACKWARD, IN("gy", (1, 1, 1, 2), 1, 2), P2(2, 2), P2(2, 2), P2(0, 0), I1(1), P2(2, 4));
}
#define GY9 IN("gy", (1, 1, 2, 2), 9, 18, 27, 36)
CASE(c_avg_bw_incl) { return GRAD1(AVG_POOL2D_BACKWARD, GY9, P2(3, 3), P2(2, 2), P2(1, 1), I1(1), P2(3, 3)); }
CASE(c_avg_bw_excl) { return GRAD1(AVG_POOL2D_BACKWARD, GY9, P2(3, 3), P2(2, 2), P2(1, 1), I1(0), P2(3, 3)); }
CASE(c_avg_bw_excl_uneven) {
    return GRAD1(AVG_POOL2D_BACKWARD, IN("gy", (1, 1, 2, 1), 2, 3), P2(3, 1), P2(2, 1), P2(1, 0), I1(0), P2(4, 1));
}
CASE(c_avg_bw_incl_uneven) {
    return GRAD1(AVG_POOL2D_BACKWARD, IN("gy", (1, 1, 2, 1), 3, 6), P2(3, 1), P2(2, 1), P2(1, 0), I1(1), P2(4, 1));
}
CASE(c_avg_bw_unused) {
    return GRAD1(AVG_POOL2D_BACKWARD, IN("gy", (1, 1, 2, 1), 4, 8), P2(2, 2), P2(2, 2), P2(0, 0), I1(0), P2(5, 2));
}
CASE(c_adaptive_bw) { return GRAD1(ADAPTIVE_AVG_POOL2D_BACKWARD, IN("gy", (1, 1, 1, 2), 3, 6), P2(1, 5)); }
CASE(c_adaptive_bw_2d) { return GRAD1(ADAPTIVE_AVG_POOL2D_BACKWARD, IN("gy", (1, 1, 2, 2), 6, 12, 18, 24), P2(3, 5)); }
CASE(c_adaptive_bw_1x1) { return GRAD1(ADAPTIVE_AVG_POOL2D_BACKWARD, IN("gy", (1, 2, 1, 1), 4, 8), P2(2, 2)); }
CASE(c_adaptive_bw_up) { return GRAD1(ADAPTIVE_AVG_POOL2D_BACKWARD, IN("gy", (1, 1, 1, 3), 1, 2, 3), P2(1, 2)); }
#define IX(shape, ...) INT("index", LATHE_I64, shape, __VA_ARGS__)
CASE(c_select) { return lathe_index_select(G, IN("x", (3, 2), 1, 2, 3, 4, 5, 6), 0, IX((4), 2, 0, 2, 1)); }
CASE(c_select_axis1) { return lathe_index_select(G, X23, 1, IX((2, 2), 2, 0, 1, 1)); }
CASE(c_select_rank0) { return lathe_index_select(G, IN("x", (3), 10, 20, 30), -1, IX((), 1)); }
CASE(c_select_empty) { return lathe_index_select(G, IN("x", (2, 2), 1, 2, 3, 4), 0, IX((0), 0)); }
CASE(c_select_bw) { return GRAD2(INDEX_SELECT_BACKWARD, IN("gy", (4, 2), 1, 2, 3, 4, 5, 6, 7, 8), IX((4), 2, 0, 2, 1), I1(0), I1(3)); }
CASE(c_select_bw_axis1) { return GRAD2(INDEX_SELECT_BACKWARD, X23, IX((3), 0, 0, 2), I1(-1), I1(3)); }
CASE(c_select_bw_empty) { return GRAD2(INDEX_SELECT_BACKWARD, IN("gy", (0, 2), 0), IX((0), 0), I1(0), I1(2)); }
/* one process: the gather along any axis and the sum over processes are x */
CASE(c_all_gather) { return lathe_all_gather(G, IN("x", (2, 2), 1, 2, 3, 4), -2, 1); }
CASE(c_all_reduce) { return lathe_all_reduce(G, IN("x", (3), 1.5, -2, 0), 1); }
CASE(c_all_reduce_i64) { return lathe_all_reduce(G, INT("x", LATHE_I64, (2), 3, -4), 1); }

typedef struct {
    const char *label;
    lt_op op;                   /* the op the case is about */
    lathe_node *(*build)(ctx *c);
    const char *type;           /* the result's type */
    int n;                      /* expected values; 0 for an empty result */
    const double *want;
} hand_case;
#define H(label, OP, fn, type, ...) {label, LT_OP_##OP, fn, type, VALS(__VA_ARGS__)}
#define H0(label, OP, fn, type) {label, LT_OP_##OP, fn, type, 0, NULL}

static const hand_case hand_cases[] = {
    H("const", CONST, c_sub_const, "f64[2]", 3.5, 9),                 /* 5-1.5, 7+2 */
    H("const/scalar", CONST, c_mul_scalar, "f64[3]", 3, 6, -9),
    /* (2,3) + (3): row i + [10,20,30] */
    H("add", ADD, c_add, "f64[2,3]", 11, 22, 33, 14, 25, 36),
    H("add/rank0", ADD, c_add_rank0, "f64[2]", 6, 7),
    H("add/rank0-both", ADD, c_add_rank0_both, "f64[]", 5.5),
    /* (2,1) + (1,3): a[i] + b[j] */
    H("add/size1", ADD, c_add_size1, "f64[2,3]", 11, 21, 31, 12, 22, 32),
    H0("add/zero-size", ADD, c_add_zero, "f64[0,3]"),
    H0("add/zero-broadcast", ADD, c_add_zero_bcast, "f64[0,3]"),
    H("add/batch1", ADD, c_add_batch1, "f64[1,2,3]", 11, 21, 31, 12, 22, 32),
    H("add/i64", ADD, c_add_i64, "i64[2]", 4, -3),
    H("sub", SUB, c_sub, "f64[2,2]", 4, 5, 5, 6),                    /* [5,6]-1, [7,8]-2 */
    H("mul", MUL, c_mul, "f64[2,2]", 8, 1, -12, -1.5),               /* 2*[4,.5], -3*[4,.5] */
    H("div", DIV, c_div, "f64[5]", 0.25, -1.5, INFINITY, -INFINITY, NAN), /* 1/4, 3/-2, 1/0, -1/0, 0/0 */
    H("pow", POW, c_pow, "f64[3]", 8, 2, 1.0 / 3),                   /* 2^3, 4^.5, 9^-.5 */
    H("maximum/nan", MAXIMUM, c_maximum, "f64[4]", 2, NAN, NAN, -1),
    H("maximum/i64", MAXIMUM, c_maximum_i64, "i64[2,2]", 3, 4, 5, 5), /* max(1,[3,4]), max(5,[3,4]) */
    H("minimum/nan", MINIMUM, c_minimum, "f64[4]", 1, NAN, NAN, -2),
    /* [1,2,3,NaN] vs 2; NaN compares false except ne */
    H("gt", GT, c_gt, "bool[4]", 0, 0, 1, 0),
    H("ge", GE, c_ge, "bool[4]", 0, 1, 1, 0),
    H("lt", LT, c_lt, "bool[4]", 1, 0, 0, 0),
    H("le", LE, c_le, "bool[4]", 1, 1, 0, 0),
    H("eq", EQ, c_eq, "bool[4]", 0, 1, 0, 0),
    H("ne", NE, c_ne, "bool[4]", 1, 0, 1, 1),
    /* [1,2,3] == [[2],[3],[4]] */
    H("eq/i64-broadcast", EQ, c_eq_i64, "bool[3,3]", 0, 1, 0, 0, 0, 1, 0, 0, 0),
    H("where", WHERE, c_where, "f64[2,3]", 1, 2, 3, -1, -1, -1),     /* row 0 from a, row 1 is b */
    H("where/rank0-cond", WHERE, c_where_rank0, "f64[2]", 1, 2),
    H("neg", NEG, c_neg, "f64[3]", -1, 2, 0),
    H("neg/rank0", NEG, c_neg_rank0, "f64[]", -3),
    H("exp", EXP, c_exp, "f64[3]", 1, 2.718281828459045, 0.36787944117144233), /* 1, e, 1/e */
    H("log", LOG, c_log, "f64[4]", 0, 1, -INFINITY, NAN),
    H("sqrt", SQRT, c_sqrt, "f64[3]", 2, 1.4142135623730951, 0),
    H("rsqrt", RSQRT, c_rsqrt, "f64[3]", 0.5, 2, INFINITY),          /* 1/2, 1/.5, 1/0 */
    H("abs", ABS, c_abs, "f64[3]", 1.5, 2, 0),
    H("relu/nan", RELU, c_relu, "f64[4]", 0, 0, 2, NAN),
    H("relu/i64", RELU, c_relu_i64, "i64[2]", 0, 4),
    /* 1/(1+e^0) = .5, 1/(1+1/3) = .75, 1/(1+3) = .25 */
    H("sigmoid", SIGMOID, c_sigmoid, "f64[3]", 0.5, 0.75, 0.25),
    /* tanh(ln 2) = (2 - 1/2)/(2 + 1/2) = .6 */
    H("tanh", TANH, c_tanh, "f64[3]", 0, 0.6, -0.6),
    /* Abramowitz and Stegun, table 7.1 (to 15 places; the digits beyond from mpmath) */
    H("erf", ERF, c_erf, "f64[6]", 0, -0.0, 0.52049987781304654, 0.84270079294971487, -0.99532226501895273,
      0.99997790950300141),
    H("erf/special", ERF, c_erf_special, "f64[3]", 1, -1, NAN),
    /* x Phi(x) with the normal CDF Phi(1) = .84134474606854293, Phi(2) = .97724986805182079,
     * Phi(-3) = .0013498980316300946 (Abramowitz and Stegun 26.2; digits from mpmath) */
    H("gelu", GELU, c_gelu, "f64[6]", 0, 0.84134474606854293, -0.15865525393145707, 1.9544997361036416,
      -0.0040496940948902838, NAN),
    /* sqrt(2/pi) (1 + .044715) = .83356196893916548, tanh of it .68238398121655341:
     * .5 (1 + .68238398121655341) = .84119199060827670; at 2: tanh(1.8811883866961317) = .95459769408777502 */
    H("gelu/tanh", GELU, c_gelu_tanh, "f64[4]", 0, 0.84119199060827670, -0.15880800939172330, 1.9545976940877750),
    /* x/(1 + e^-x): ln3/(1 + 1/3) = .75 ln3, -ln3/(1 + 3) = -.25 ln3 */
    H("silu", SILU, c_silu, "f64[4]", 0, 0.82395921650108227, -0.27465307216702742, NAN), /* -inf/(1 + inf): NaN, as PyTorch */
    /* ln(1 + e^x): ln 2, ln 4, ln(4/3); 25 > 20 is linear; 0 at -inf, inf at inf */
    H("softplus", SOFTPLUS, c_softplus, "f64[6]", 0.69314718055994531, 1.3862943611198906, 0.28768207245178093, 25, 0,
      INFINITY),
    /* ln(1 + e^2x)/2: ln 2/2, ln(4/3)/2; 2x = ln 3 and 1.5 pass threshold 1, so x */
    H("softplus/beta-threshold", SOFTPLUS, c_softplus_beta, "f64[4]", 0.34657359027997265, 0.14384103622589046,
      0.54930614433405485, 0.75),
    H("leaky_relu", LEAKY_RELU, c_leaky_relu, "f64[5]", -0.2, 0, 3, NAN, -INFINITY),
    H("clamp", CLAMP, c_clamp, "f64[6]", -1, 0.5, 2, NAN, -1, 2),
    H("clamp/one-sided", CLAMP, c_clamp_one, "f64[3]", -5, 0, -INFINITY),
    H("clamp/min-above-max", CLAMP, c_clamp_crossed, "f64[3]", 0, 0, 0), /* max everywhere, as torch.clamp */
    H("pow_scalar", POW_SCALAR, c_pow_scalar, "f64[3]", 8, 27, -8),
    H("pow_scalar/frac", POW_SCALAR, c_pow_scalar_frac, "f64[2]", 0.5, 1.0 / 3),
    H("cast/f64-i64", CAST, c_cast_i64, "i64[4]", 1, -1, 2, 0),    /* truncates toward zero */
    H("cast/f64-bool", CAST, c_cast_bool, "bool[4]", 0, 1, 1, 1),   /* != 0, NaN too */
    H("cast/bool-f64", CAST, c_cast_from_bool, "f64[2]", 1, 0),
    H("cast/f64-f32", CAST, c_cast_f32, "f32[2]", 0.10000000149011612, 3), /* float(0.1) */
    H("cast/i64-f64", CAST, c_cast_from_i64, "f64[2]", -7, 3),
    /* x = [[1,2,3],[4,5,6]] */
    H("sum", SUM, c_sum, "f64[2]", 6, 15),
    H("sum/keepdim", SUM, c_sum_keep, "f64[2,1]", 6, 15),
    H("sum/all", SUM, c_sum_all, "f64[]", 21),
    /* x[i,j,k] = 6i+2j+k+1; sum over i,k = 8j+18 */
    H("sum/neg-axes", SUM, c_sum_neg, "f64[3]", 18, 26, 34),
    H("sum/empty-extent", SUM, c_sum_empty, "f64[3]", 0, 0, 0),
    H("sum/rank0-no-axes", SUM, c_sum_rank0, "f64[]", 5),
    H("sum/i64", SUM, c_sum_i64, "i64[]", -1),
    H("mean", MEAN, c_mean, "f64[3]", 2.5, 3.5, 4.5),               /* (1+4)/2 ... */
    H("mean/keepdim-neg", MEAN, c_mean_keep, "f64[2,1]", 2, 5),
    H("mean/empty-extent", MEAN, c_mean_empty, "f64[2]", NAN, NAN), /* 0/0 */
    H("max", MAX, c_max, "f64[2]", 5, 6),
    H("max/nan", MAX, c_max_nan, "f64[3]", NAN, NAN, -1),
    /* max over i,k of x[i,j,k] = x[1,j,1] = 6, 8 */
    H("max/keepdim", MAX, c_max_keep, "f64[1,2,1]", 6, 8),
    H("min", MIN, c_min, "f64[2]", 1, 2),
    H("min/nan", MIN, c_min_nan, "f64[3]", NAN, NAN, -3),
    /* min over i,k of x[i,j,k] = x[0,j,0] = 1, 3 */
    H("min/keepdim", MIN, c_min_keep, "f64[1,2,1]", 1, 3),
    H("min/i64", MIN, c_min_i64, "i64[]", -7),
    /* [1,3,3]: first max at 1; [5,NaN,NaN]: first NaN at 1 */
    H("argmax/nan", ARGMAX, c_argmax, "i64[2]", 1, 1),
    /* columns [1,3] and [4,2] */
    H("argmax/keepdim-neg", ARGMAX, c_argmax_keep, "i64[1,2]", 1, 0),
    H("reshape", RESHAPE, c_reshape, "f64[3,2]", 1, 2, 3, 4, 5, 6),
    H("reshape/infer", RESHAPE, c_reshape_infer, "f64[6]", 1, 2, 3, 4, 5, 6),
    H("flatten", FLATTEN, c_flatten, "f64[2,4]", 1, 2, 3, 4, 5, 6, 7, 8),
    /* y[k,0,i] = x[0,i,k] = 3i+k */
    H("permute", PERMUTE, c_permute, "f64[3,1,2]", 0, 3, 1, 4, 2, 5),
    H("permute/transpose", PERMUTE, c_transpose, "f64[3,2]", 1, 4, 2, 5, 3, 6),
    H("broadcast_to", BROADCAST_TO, c_broadcast_to, "f64[2,3,2]", 1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3),
    H("broadcast_to/rank0", BROADCAST_TO, c_broadcast_rank0, "f64[2]", 7, 7),
    H("concat", CONCAT, c_concat, "f64[2,3]", 1, 3, 4, 2, 5, 6),
    H("concat/zero-size", CONCAT, c_concat_zero, "f64[1,2]", 7, 8),
    H("concat/three", CONCAT, c_concat3, "f64[5]", 1, 2, 3, 4, 5),
    H("slice", SLICE, c_slice, "f64[3]", 1, 3, 5),                  /* 1:6:2 */
    H("slice/step3", SLICE, c_slice_step3, "f64[3]", 0, 3, 6),      /* ceil(7/3) = 3 */
    H("slice/negative", SLICE, c_slice_neg, "f64[2,3]", 2, 3, 4, 7, 8, 9), /* -3:100 -> 2:5 */
    H0("slice/empty", SLICE, c_slice_empty, "f64[0]"),
    /* [[1,2],[3,4]] @ [[5,6],[7,8]] = [[1*5+2*7, 1*6+2*8], [3*5+4*7, 3*6+4*8]] */
    H("matmul", MATMUL, c_matmul, "f64[2,2]", 19, 22, 43, 50),
    H("matmul/batch-a", MATMUL, c_matmul_batch_a, "f64[2,1,1]", 12, 34), /* [1,2].[10,1], [3,4].[10,1] */
    H("matmul/batch-b", MATMUL, c_matmul_batch_b, "f64[2,1,1]", 3, 8),   /* [1,2].[1,1], [1,2].[2,3] */
    /* a_i in [1,2],[3,4] times b_j in [1,0],[0,1],[1,1] */
    H("matmul/broadcast-both", MATMUL, c_matmul_bcast, "f64[2,3,1,1]", 1, 2, 3, 3, 4, 7),
    H("matmul/k0", MATMUL, c_matmul_k0, "f64[2,2]", 0, 0, 0, 0),
    /* [1,2,3].[1,0,-1]+10 = 8, [1,2,3].[.5,.5,.5]+20 = 23, [4,5,6]: -2+10, 7.5+20 */
    H("linear", LINEAR, c_linear, "f64[2,2]", 8, 23, 8, 27.5),
    H("linear/nobias-rank1", LINEAR, c_linear_nobias, "f64[1]", 6),
    /* x = [[1,2,3],[4,5,6],[7,8,9]]; w = [[1,0],[0,1]]: x[p,q] + x[p+1,q+1] + .5 */
    H("conv2d", CONV2D, c_conv, "f64[1,1,2,2]", 6.5, 8.5, 12.5, 14.5),
    /* ones 2x2, stride 2, pad 1: windows {1}, {2,3}, {4,7}, {5,6,8,9} */
    H("conv2d/stride-pad", CONV2D, c_conv_stride_pad, "f64[1,1,2,2]", 1, 5, 11, 28),
    /* dilation 2 picks the corners: 1+3+7+9 */
    H("conv2d/dilation", CONV2D, c_conv_dilation, "f64[1,1,1,1]", 20),
    H("conv2d/depthwise", CONV2D, c_conv_depthwise, "f64[1,2,2,2]", 2, 4, 6, 8, -5, -6, -7, -8),
    /* group 0: 1+2, group 1: 3-4 */
    H("conv2d/groups", CONV2D, c_conv_groups, "f64[1,2,1,1]", 3, -1),
    /* per sample [c0, c1, c0+c1+10] */
    H("conv2d/batch-channels", CONV2D, c_conv_batch, "f64[2,3,1,1]", 1, 2, 13, 3, 4, 17),
    /* rows 0 and 2 ([1,2], [5,6]), w [1,1] with a zero column each side */
    H("conv2d/hw", CONV2D, c_conv_hw, "f64[1,1,2,3]", 1, 3, 2, 5, 11, 6),
    H("max_pool2d", MAX_POOL2D, c_max_pool, "f64[1,1,2,2]", 5, 6, 8, 9),
    /* padding is -inf: max(-1,-2,-4,-5), max(-2,-3,-5,-6), ... */
    H("max_pool2d/pad", MAX_POOL2D, c_max_pool_pad, "f64[1,1,2,2]", -1, -2, -4, -5),
    H("max_pool2d/nan", MAX_POOL2D, c_max_pool_nan, "f64[1,1,1,1]", NAN),
    H("avg_pool2d", AVG_POOL2D, c_avg_pool, "f64[1,1,1,2]", 3.5, 5.5), /* (1+2+5+6)/4, (3+4+7+8)/4 */
    /* windows {1,2,4,5}, {2,3,5,6}, {4,5,7,8}, {5,6,8,9} over 9, then over 4 */
    H("avg_pool2d/include-pad", AVG_POOL2D, c_avg_pool_incl, "f64[1,1,2,2]", 12.0 / 9, 16.0 / 9, 24.0 / 9, 28.0 / 9),
    H("avg_pool2d/exclude-pad", AVG_POOL2D, c_avg_pool_excl, "f64[1,1,2,2]", 3, 4, 6, 7),
    /* 5 -> 2: bins [0,3) and [2,5) */
    H("adaptive_avg_pool2d", ADAPTIVE_AVG_POOL2D, c_adaptive, "f64[1,1,1,2]", 2, 4),
    /* x[r,c] = 5r+c+1; rows [0,2),[1,3) mean .5, 1.5; cols [0,3),[2,5) mean 1, 3 */
    H("adaptive_avg_pool2d/2d", ADAPTIVE_AVG_POOL2D, c_adaptive_2d, "f64[1,1,2,2]", 4.5, 6.5, 9.5, 11.5),
    H("adaptive_avg_pool2d/1x1", ADAPTIVE_AVG_POOL2D, c_adaptive_1x1, "f64[1,2,1,1]", 2.5, 6.5),
    /* c0 [1,3]: mean 2, var 1, sqrt(1+15) = 4: [-.25,.25]*2+.5;
     * c1 [3,17]: mean 10, var 49, sqrt(49+15) = 8: [-.875,.875]*-1+1 */
    H("batch_norm2d/train", BATCH_NORM2D, c_bn_train, "f64[1,2,1,2]", 0, 1, 1.875, 0.125),
    /* [1,3,3,1] over (N,H): mean 2, var 1, /4; running stats unused */
    H("batch_norm2d/train-nh", BATCH_NORM2D, c_bn_train_n, "f64[2,1,2,1]", -0.25, 0.25, 0.25, -0.25),
    /* (5-1)/sqrt(3+1)*1+0 = 2, (1-3)/sqrt(0+1)*.5+1 = 0 */
    H("batch_norm2d/eval", BATCH_NORM2D, c_bn_eval, "f64[1,2,1,1]", 2, 0),
    /* [1, 3]/4 and [1, 1]/2 (1000 stays finite: the max is subtracted) */
    H("softmax", SOFTMAX, c_softmax, "f64[2,2]", 0.25, 0.75, 0.5, 0.5),
    H("softmax/axis0", SOFTMAX, c_softmax0, "f64[2,2]", 0.25, 0.5, 0.75, 0.5),
    H("log_softmax", LOG_SOFTMAX, c_log_softmax, "f64[2,2]", -1.3862943611198906, -0.2876820724517809,
      -0.6931471805599453, -0.6931471805599453),
    /* rows [0,ln3] and [ln3,0], label 1: -ln(3/4) = .2877, -ln(1/4) = 1.3863 */
    H("cross_entropy", CROSS_ENTROPY, c_ce, "f64[]", 0.8369882167858358),
    H("cross_entropy/sum", CROSS_ENTROPY, c_ce_sum, "f64[]", 1.6739764335716716),
    H("cross_entropy/none", CROSS_ENTROPY, c_ce_none, "f64[2]", 0.2876820724517809, 1.3862943611198906),
    H("cross_entropy/large", CROSS_ENTROPY, c_ce_large, "f64[]", 0.6931471805599453), /* ln 2 */
    /* lathe.h's formula computed by hand (Python, integers mod 2^64): kept elements doubled */
    H("dropout", DROPOUT, c_dropout, "f64[8]", 0, 0, 6, 0, 10, 12, 0, 0),
    H("dropout/next-step", DROPOUT, c_dropout_step, "f64[8]", 2, 0, 0, 0, 0, 12, 14, 16),
    H("dropout/salt-1", DROPOUT, c_dropout_salt, "f64[8]", 0, 0, 0, 0, 10, 12, 14, 16),
    H("dropout/p-1", DROPOUT, c_dropout_all, "f64[8]", 0, 0, 0, 0, 0, 0, 0, 0),
    H("dropout/first-3", DROPOUT, c_dropout_first, "f64[5]", 0, 10, 12, 0, 0),
    /* -log(3/4), and the ignored row left out of the mean */
    H("cross_entropy/ignore", CROSS_ENTROPY, c_ce_ignore, "f64[]", 0.28768207245178085),
    H("cross_entropy/ignore-none", CROSS_ENTROPY, c_ce_ignore_none, "f64[2]", 0.28768207245178085, 0),
    H("cross_entropy/all-ignored", CROSS_ENTROPY, c_ce_all_ignored, "f64[]", NAN), /* 0/0, as PyTorch */
    /* 0.8 (-log p[label]) + 0.1 (-log p0 - log p1) */
    H("cross_entropy/smoothing", CROSS_ENTROPY, c_ce_smooth, "f64[2]", 0.39754330131859184, 1.2764331322530795),
    H("cross_entropy/seq", CROSS_ENTROPY, c_ce_seq, "f64[1,2]", 0.28768207245178085, 1.3862943611198906),
    /* -x[0,2] = 3, -x[1,0] = 4 */
    H("nll_loss", NLL_LOSS, c_nll, "f64[]", 3.5),
    H("nll_loss/sum", NLL_LOSS, c_nll_sum, "f64[]", 7),
    H("nll_loss/none", NLL_LOSS, c_nll_none, "f64[2]", 3, 4),
    /* (1-1)^2 + (2-0)^2 + (3-6)^2 = 0 + 4 + 9 */
    H("mse_loss", MSE_LOSS, c_mse, "f64[]", 13.0 / 3),
    H("mse_loss/sum", MSE_LOSS, c_mse_sum, "f64[]", 13),
    H("mse_loss/none", MSE_LOSS, c_mse_none, "f64[3]", 0, 4, 9),
    H("mse_loss/empty-mean", MSE_LOSS, c_mse_empty, "f64[]", NAN),
    /* slice 1:6:2 of 7 puts gy at 1, 3, 5 */
    H("slice_backward", SLICE_BACKWARD, c_slice_bw, "f64[7]", 0, 1, 0, 2, 0, 3, 0),
    /* axis -1, 1:5:3 of 5: columns 1 and 4 */
    H("slice_backward/2d-negative-axis", SLICE_BACKWARD, c_slice_bw_2d, "f64[2,5]", 0, 1, 0, 0, 2, 0, 3, 0, 0, 4),
    H("slice_backward/empty", SLICE_BACKWARD, c_slice_bw_empty, "f64[3]", 0, 0, 0),      /* 2:2 */
    /* forward y[p,q] = x[p,q] + x[p+1,q+1], so dx[h,v] = gy[h,v] + gy[h-1,v-1] where in range */
    H("conv2d_backward_input", CONV2D_BACKWARD_INPUT, c_conv_bw_in, "f64[1,1,3,3]", 1, 2, 0, 3, 5, 2, 0, 3, 4),
    /* ones 2x2, stride 2, pad 1: row 0 feeds p 0 only, rows 1-2 feed p 1 (cols alike) */
    H("conv2d_backward_input/stride-pad", CONV2D_BACKWARD_INPUT, c_conv_bw_in_stride_pad, "f64[1,1,3,3]",
      1, 2, 2, 3, 4, 4, 3, 4, 4),
    /* dilation 2: dx[2r,2u] = 2 * w[r,u] */
    H("conv2d_backward_input/dilation", CONV2D_BACKWARD_INPUT, c_conv_bw_in_dilation, "f64[1,1,3,3]",
      2, 0, 4, 0, 0, 0, 6, 0, 8),
    /* groups 2 (C = 2*2), stride 2 rows, size 4: rows 0 and 2 get gy[k, 0] and gy[k, 1]
     * times w[k, ci]; odd rows and the unused row 3 get 0.  k 0: gy [1,2], w [1,10];
     * k 1: gy [3,4], w [100,1000] */
    H("conv2d_backward_input/groups-stride-unused-row", CONV2D_BACKWARD_INPUT, c_conv_bw_in_groups, "f64[1,4,4,1]",
      1, 0, 2, 0, 10, 0, 20, 0, 300, 0, 400, 0, 3000, 0, 4000, 0),
    /* x = [[1,2,3],[4,5,6],[7,8,9]], gy = [[1,0],[0,1]]: dw[r,u] = x[r,u] + x[r+1,u+1] */
    H("conv2d_backward_weight", CONV2D_BACKWARD_WEIGHT, c_conv_bw_w, "f64[1,1,2,2]", 6, 8, 12, 14),
    /* stride 2, pad 1, gy [1,2,3,4]: dw[r,u] = sum gy[p,q] x[2p-1+r, 2q-1+u]:
     * dw00 = 4*5; dw01 = 3*4 + 4*6; dw10 = 2*2 + 4*8; dw11 = 1*1 + 2*3 + 3*7 + 4*9 */
    H("conv2d_backward_weight/stride-pad", CONV2D_BACKWARD_WEIGHT, c_conv_bw_w_stride_pad, "f64[1,1,2,2]", 20, 36, 36, 64),
    H("conv2d_backward_weight/dilation", CONV2D_BACKWARD_WEIGHT, c_conv_bw_w_dilation, "f64[1,1,2,2]", 2, 6, 14, 18), /* 2*x[2r,2u] */
    /* groups 2, batch 2: k 0 sees channel 0: 10*1 + 30*3; k 1 channel 1: 20*2 + 40*4 */
    H("conv2d_backward_weight/groups-batch", CONV2D_BACKWARD_WEIGHT, c_conv_bw_w_groups, "f64[2,1,1,1]", 100, 200),
    /* every 2x2 window holds the 9 at (1,1): 1+2+3+4 */
    H("max_pool2d_backward/overlap", MAX_POOL2D_BACKWARD, c_max_bw_overlap, "f64[1,1,3,3]", 0, 0, 0, 0, 10, 0, 0, 0, 0),
    /* [[3,1,3],[3,2,3]], windows of cols 0-1 and 1-2: first maximum at (0,0), (0,2) */
    H("max_pool2d_backward/ties", MAX_POOL2D_BACKWARD, c_max_bw_ties, "f64[1,1,2,3]", 1, 0, 2, 0, 0, 0),
    /* k3 s2 p1 over -1..-9: maxima -1, -2, -4, -5 at (0,0), (0,1), (1,0), (1,1) */
    H("max_pool2d_backward/pad", MAX_POOL2D_BACKWARD, c_max_bw_pad, "f64[1,1,3,3]", 1, 2, 0, 3, 4, 0, 0, 0, 0),
    /* [1,NaN,3,NaN]: val > max || isnan(val) moves to each NaN, so the last one */
    H("max_pool2d_backward/nan", MAX_POOL2D_BACKWARD, c_max_bw_nan, "f64[1,1,2,2]", 0, 0, 0, 5),
    /* all -inf: nothing is greater, the first in-bounds element keeps it */
    H("max_pool2d_backward/-inf", MAX_POOL2D_BACKWARD, c_max_bw_inf, "f64[1,1,1,2]", 3, 0),
    /* H 0 padded by 1 each side: one window with no element, nothing to add */
    H0("max_pool2d_backward/empty-input", MAX_POOL2D_BACKWARD, c_max_bw_empty, "f64[1,1,0,1]"),
    H("avg_pool2d_backward", AVG_POOL2D_BACKWARD, c_avg_bw, "f64[1,1,2,4]", 0.25, 0.25, 0.5, 0.5, 0.25, 0.25, 0.5, 0.5),
    /* k3 s2 p1 on 3x3: windows cover rows/cols {0,1} and {1,2}; divisor 9 with
     * padding, so they add 1, 2, 3, 4 */
    H("avg_pool2d_backward/include-pad", AVG_POOL2D_BACKWARD, c_avg_bw_incl, "f64[1,1,3,3]", 1, 3, 2, 4, 10, 6, 3, 7, 4),
    /* divisor 4 (in-bounds only): adds 9/4 * [1,2,3,4] */
    H("avg_pool2d_backward/exclude-pad", AVG_POOL2D_BACKWARD, c_avg_bw_excl, "f64[1,1,3,3]",
      2.25, 6.75, 4.5, 9, 22.5, 13.5, 6.75, 15.75, 9),
    /* rows 4, k3 s2 p1: windows rows {0,1} (2 inside) and {1,2,3} (3 inside): 2/2, 3/3 */
    H("avg_pool2d_backward/exclude-pad-uneven", AVG_POOL2D_BACKWARD, c_avg_bw_excl_uneven, "f64[1,1,4,1]", 1, 2, 1, 1),
    /* same windows, divisor 3 both (the kernel): 3/3 and 6/3 */
    H("avg_pool2d_backward/include-pad-uneven", AVG_POOL2D_BACKWARD, c_avg_bw_incl_uneven, "f64[1,1,4,1]", 1, 3, 2, 2),
    /* rows 5, k2 s2: windows rows {0,1}, {2,3}; row 4 unused */
    H("avg_pool2d_backward/unused-row", AVG_POOL2D_BACKWARD, c_avg_bw_unused, "f64[1,1,5,2]", 1, 1, 1, 1, 2, 2, 2, 2, 0, 0),
    /* 5 -> 2: bins [0,3) and [2,5), area 3: 3/3 and 6/3, col 2 in both */
    H("adaptive_avg_pool2d_backward", ADAPTIVE_AVG_POOL2D_BACKWARD, c_adaptive_bw, "f64[1,1,1,5]", 1, 1, 3, 2, 2),
    /* rows [0,2),[1,3), cols [0,3),[2,5), area 6: bins add 1, 2, 3, 4 */
    H("adaptive_avg_pool2d_backward/2d", ADAPTIVE_AVG_POOL2D_BACKWARD, c_adaptive_bw_2d, "f64[1,1,3,5]",
      1, 1, 3, 2, 2, 4, 4, 10, 6, 6, 3, 3, 7, 4, 4),
    H("adaptive_avg_pool2d_backward/1x1", ADAPTIVE_AVG_POOL2D_BACKWARD, c_adaptive_bw_1x1, "f64[1,2,2,2]", 1, 1, 1, 1, 2, 2, 2, 2),
    /* 2 -> 3: bins [0,1), [0,2), [1,2): dx = [1 + 2/2, 2/2 + 3] */
    H("adaptive_avg_pool2d_backward/upsample", ADAPTIVE_AVG_POOL2D_BACKWARD, c_adaptive_bw_up, "f64[1,1,1,2]", 2, 4),
    /* rows 2, 0, 2, 1 of [[1,2],[3,4],[5,6]] */
    H("index_select", INDEX_SELECT, c_select, "f64[4,2]", 5, 6, 1, 2, 5, 6, 3, 4),
    /* y[a, i, j] = x[a, index[i, j]]: [1,2,3] -> 3,1,2,2 and [4,5,6] -> 6,4,5,5 */
    H("index_select/axis1-2d-index", INDEX_SELECT, c_select_axis1, "f64[2,2,2]", 3, 1, 2, 2, 6, 4, 5, 5),
    H("index_select/rank0-index", INDEX_SELECT, c_select_rank0, "f64[]", 20),
    H0("index_select/empty-index", INDEX_SELECT, c_select_empty, "f64[0,2]"),
    /* row 0 gets gy[1], row 1 gy[3], row 2 gy[0] + gy[2] = [1+5, 2+6] */
    H("index_select_backward", INDEX_SELECT_BACKWARD, c_select_bw, "f64[3,2]", 3, 4, 7, 8, 6, 8),
    /* columns: 0 gets columns 0 and 1 of gy, 1 nothing, 2 column 2 */
    H("index_select_backward/axis1", INDEX_SELECT_BACKWARD, c_select_bw_axis1, "f64[2,3]", 3, 0, 3, 9, 0, 6),
    H("index_select_backward/empty-index", INDEX_SELECT_BACKWARD, c_select_bw_empty, "f64[2,2]", 0, 0, 0, 0),
    /* row [1,3,5,7]: mean 4, var (9+1+1+9)/4 = 5, sqrt(5+4) = 3: [-1,-1/3,1/3,1]*[1,3,3,2]+[0,1,-1,.5];
     * row [2,2,2,2]: var 0, so the bias */
    H("layer_norm", LAYER_NORM, c_ln, "f64[2,4]", -1, 0, 0, 2.5, 0, 1, -1, 0.5),
    /* [0,2,4,6] over both dims: mean 3, var 5, sqrt(5+11) = 4 */
    H("layer_norm/last-two-no-affine", LAYER_NORM, c_ln_two, "f64[1,2,2]", -0.75, -0.25, 0.25, 0.75),
    /* eps 0: [1,5] mean 3 sd 2, [-1,-3] mean -2 sd 1: [-1,1] and [1,-1] times [3,-2] */
    H("layer_norm/weight-only-eps0", LAYER_NORM, c_ln_weight, "f64[2,2]", -3, -2, 3, 2),
    H("all_gather/one-process", ALL_GATHER, c_all_gather, "f64[2,2]", 1, 2, 3, 4),
    H("all_reduce/one-process", ALL_REDUCE, c_all_reduce, "f64[3]", 1.5, -2, 0),
    H("all_reduce/i64", ALL_REDUCE, c_all_reduce_i64, "i64[2]", 3, -4),
};

static bool close_to(double got, double want, double tol) {
    if (isnan(want)) return isnan(got);
    if (isinf(want)) return got == want;
    return fabs(got - want) <= tol * fmax(1, fabs(want));
}

/* Builds, binds and runs one case; returns the graph (caller frees) and
 * reports mismatches through print_error; *bad counts them. */
static lathe_graph *run_hand_case(const hand_case *h, int *bad) {
    ctx c = {.g = lathe_graph_new()};
    lathe_node *y = h->build(&c);
    lathe_output(c.g, "y", y);
    if (lathe_graph_status(c.g) != LATHE_OK) fail_msg("%s: %s", h->label, lathe_graph_error(c.g));
    lathe_eval *ev = lathe_eval_new(c.g);
    assert_non_null(ev);
    for (int i = 0; i < c.nleaves; i++)
        if (lathe_eval_set_f64(ev, c.leaf[i].name, c.leaf[i].v) != LATHE_OK)
            fail_msg("%s: %s", h->label, lathe_eval_error(ev));
    if (lathe_eval_run(ev) != LATHE_OK) fail_msg("%s: %s", h->label, lathe_eval_error(ev));
    char ts[160];
    lathe_node_type_str(y, ts, sizeof ts);
    if (strcmp(ts, h->type) != 0) {
        print_error("%s: type %s, want %s\n", h->label, ts, h->type);
        ++*bad;
    } else if (lathe_node_numel(y) != h->n) {
        print_error("%s: %lld values, want %d\n", h->label, (long long)lathe_node_numel(y), h->n);
        ++*bad;
    } else {
        const double *v = lathe_eval_value(ev, y);
        assert_non_null(v);
        for (int i = 0; i < h->n; i++)
            if (!close_to(v[i], h->want[i], 1e-12)) {
                print_error("%s: [%d] = %.17g, want %.17g\n", h->label, i, v[i], h->want[i]);
                ++*bad;
            }
    }
    lathe_eval_free(ev);
    return c.g;
}

static void test_hand_cases(void **state) {
    (void)state;
    bool covered[LT_OP_COUNT] = {0};
    int bad = 0;
    for (size_t i = 0; i < sizeof hand_cases / sizeof hand_cases[0]; i++) {
        lathe_graph *g = run_hand_case(&hand_cases[i], &bad);
        covered[hand_cases[i].op] = true;
        for (int k = 0; k < lathe_graph_num_nodes(g); k++) { /* leaves count where used */
            lathe_node *n = lathe_graph_node(g, k);
            if (lt_ops[n->op].kind == LT_LEAF) covered[n->op] = true;
        }
        lathe_graph_free(g);
    }
    for (int op = 0; op < LT_OP_COUNT; op++)
        if (!covered[op]) {
            print_error("op %s has no hand-computed case\n", lt_ops[op].name);
            bad++;
        }
    assert_int_equal(bad, 0);
}

/* ---- gradient kernels: adjoint identities ------------------------------------------ */

/* A gradient kernel B of a linear map F (slice, conv2d in its input or in its
 * weight, avg_pool2d, adaptive_avg_pool2d) is F's adjoint:
 * <F(u), v> = <u, B(v)> for every u and v.  Each case builds F(u) with the
 * public builder and B(v) from F's own (normalized) attributes, as autodiff
 * does; u, v and any other leaves are random. */
typedef struct {
    lathe_node *u, *v, *fwd, *bwd;
} adjoint;

static lathe_node *in64(lathe_graph *g, const char *name, int rank, const int64_t *shape) {
    return lathe_input(g, name, LATHE_F64, rank, shape);
}
/* v: an input shaped like n */
static lathe_node *like(lathe_graph *g, const char *name, const lathe_node *n) {
    return in64(g, name, n->rank, n->shape);
}
/* n's attributes with a pair appended at index k (size or kernel) */
static const lt_attr *attrs_plus(const lathe_node *n, int k, int64_t a, int64_t b, lt_attr out[LT_MAX_ATTRS]) {
    memcpy(out, n->attr, sizeof n->attr);
    out[k] = (lt_attr){.n = 2, .v = {a, b}};
    return out;
}

static void adj_slice(lathe_graph *g, adjoint *a, int rank, const int64_t *shape, int64_t axis, int64_t st,
                      int64_t en, int64_t step) {
    a->u = in64(g, "u", rank, shape);
    a->fwd = lathe_slice(g, a->u, axis, st, en, step);
    if (!a->fwd) return;
    a->v = like(g, "v", a->fwd);
    lt_attr at[LT_MAX_ATTRS];
    memcpy(at, a->fwd->attr, sizeof at);
    at[4] = (lt_attr){.v = {shape[a->fwd->attr[0].v[0]]}};
    a->bwd = lt_make(g, LT_OP_SLICE_BACKWARD, 1, (lathe_node *[]){a->v}, at);
}
static void a_slice(lathe_graph *g, adjoint *a) { adj_slice(g, a, D(4, 9, 3), 1, 1, 8, 3); }
static void a_slice_neg(lathe_graph *g, adjoint *a) { adj_slice(g, a, D(3, 5), -1, -4, 100, 2); }
static void a_slice_empty(lathe_graph *g, adjoint *a) { adj_slice(g, a, D(3, 4), 0, 2, 1, 1); }

/* conv2d in x (wrt = 0) or w (wrt = 1), no bias (it would make F affine) */
static void adj_conv(lathe_graph *g, adjoint *a, int wrt, int rx, const int64_t *xs, int rw, const int64_t *ws,
                     const int64_t st[2], const int64_t pad[2], const int64_t dil[2], int64_t groups) {
    lathe_node *x = in64(g, wrt == 0 ? "u" : "x", rx, xs), *w = in64(g, wrt == 1 ? "u" : "w", rw, ws);
    a->u = wrt == 0 ? x : w;
    a->fwd = lathe_conv2d_hw(g, x, w, NULL, st, pad, dil, groups);
    if (!a->fwd) return;
    a->v = like(g, "v", a->fwd);
    lt_attr at[LT_MAX_ATTRS];
    if (wrt == 0)
        a->bwd = lt_make(g, LT_OP_CONV2D_BACKWARD_INPUT, 2, (lathe_node *[]){a->v, w},
                         attrs_plus(a->fwd, 4, xs[2], xs[3], at));
    else
        a->bwd = lt_make(g, LT_OP_CONV2D_BACKWARD_WEIGHT, 2, (lathe_node *[]){x, a->v},
                         attrs_plus(a->fwd, 4, ws[2], ws[3], at));
}
#define PAIR(a, b) (const int64_t[]){a, b}
/* grouped, strided, padded, dilated, per-axis attributes */
#define CONV_A D(2, 4, 7, 6), D(6, 2, 3, 2), PAIR(2, 1), PAIR(1, 0), PAIR(2, 1), 2
/* depthwise, stride 3 leaves input row 8 unused */
#define CONV_B D(1, 3, 9, 5), D(3, 1, 3, 3), PAIR(3, 3), PAIR(1, 1), PAIR(1, 1), 3
#define CONV_C D(2, 3, 5, 5), D(4, 3, 3, 3), PAIR(1, 1), PAIR(1, 1), PAIR(1, 1), 1
static void a_conv_in_a(lathe_graph *g, adjoint *a) { adj_conv(g, a, 0, CONV_A); }
static void a_conv_in_b(lathe_graph *g, adjoint *a) { adj_conv(g, a, 0, CONV_B); }
static void a_conv_in_c(lathe_graph *g, adjoint *a) { adj_conv(g, a, 0, CONV_C); }
static void a_conv_w_a(lathe_graph *g, adjoint *a) { adj_conv(g, a, 1, CONV_A); }
static void a_conv_w_b(lathe_graph *g, adjoint *a) { adj_conv(g, a, 1, CONV_B); }
static void a_conv_w_c(lathe_graph *g, adjoint *a) { adj_conv(g, a, 1, CONV_C); }

static void adj_avg(lathe_graph *g, adjoint *a, int rank, const int64_t *xs, const int64_t k[2],
                    const int64_t s[2], const int64_t p[2], bool include_pad) {
    a->u = in64(g, "u", rank, xs);
    a->fwd = lathe_avg_pool2d_hw(g, a->u, k, s, p, include_pad);
    if (!a->fwd) return;
    a->v = like(g, "v", a->fwd);
    lt_attr at[LT_MAX_ATTRS];
    a->bwd = lt_make(g, LT_OP_AVG_POOL2D_BACKWARD, 1, (lathe_node *[]){a->v}, attrs_plus(a->fwd, 4, xs[2], xs[3], at));
}
static void a_avg_incl(lathe_graph *g, adjoint *a) { adj_avg(g, a, D(2, 3, 5, 5), PAIR(3, 3), PAIR(2, 2), PAIR(1, 1), true); }
/* uneven windows: (6+2-3)/2+1 = 3 rows (row 5 unused), (7+2-2)/3+1 = 3 cols */
static void a_avg_excl(lathe_graph *g, adjoint *a) { adj_avg(g, a, D(1, 2, 6, 7), PAIR(3, 2), PAIR(2, 3), PAIR(1, 1), false); }
static void a_avg_incl_uneven(lathe_graph *g, adjoint *a) { adj_avg(g, a, D(1, 2, 6, 7), PAIR(3, 2), PAIR(2, 3), PAIR(1, 1), true); }
static void a_avg_plain(lathe_graph *g, adjoint *a) { adj_avg(g, a, D(1, 1, 4, 5), PAIR(2, 2), PAIR(1, 1), PAIR(0, 0), false); }

static void adj_adaptive(lathe_graph *g, adjoint *a, int rank, const int64_t *xs, int64_t oh, int64_t ow) {
    a->u = in64(g, "u", rank, xs);
    a->fwd = lathe_adaptive_avg_pool2d(g, a->u, oh, ow);
    if (!a->fwd) return;
    a->v = like(g, "v", a->fwd);
    a->bwd = lt_make(g, LT_OP_ADAPTIVE_AVG_POOL2D_BACKWARD, 1, (lathe_node *[]){a->v},
                     (lt_attr[LT_MAX_ATTRS]){{.n = 2, .v = {xs[2], xs[3]}}});
}
static void a_adaptive(lathe_graph *g, adjoint *a) { adj_adaptive(g, a, D(2, 2, 5, 7), 2, 3); }
static void a_adaptive_up(lathe_graph *g, adjoint *a) { adj_adaptive(g, a, D(1, 2, 3, 5), 4, 2); }
static void a_adaptive_1(lathe_graph *g, adjoint *a) { adj_adaptive(g, a, D(1, 1, 4, 4), 1, 1); }

/* index_select is linear in x for a fixed index (bound to [0, 3) with
 * repeats, so rows add up in the gradient) */
static void adj_select(lathe_graph *g, adjoint *a, int rank, const int64_t *xs, int64_t axis, int irank, const int64_t *is) {
    a->u = in64(g, "u", rank, xs);
    lathe_node *ix = lathe_input(g, "index", LATHE_I64, irank, is);
    a->fwd = lathe_index_select(g, a->u, axis, ix);
    if (!a->fwd) return;
    a->v = like(g, "v", a->fwd);
    a->bwd = lt_make(g, LT_OP_INDEX_SELECT_BACKWARD, 2, (lathe_node *[]){a->v, ix},
                     (lt_attr[LT_MAX_ATTRS]){a->fwd->attr[0], {.v = {xs[a->fwd->attr[0].v[0]]}}});
}
static void a_select(lathe_graph *g, adjoint *a) { adj_select(g, a, D(5, 4), 0, D(3, 7)); }
static void a_select_mid(lathe_graph *g, adjoint *a) { adj_select(g, a, D(2, 3, 3), -2, D(6)); }
static void a_select_last(lathe_graph *g, adjoint *a) { adj_select(g, a, D(2, 4), 1, 0, NULL); }

static const struct {
    const char *label;
    lt_op op;
    void (*build)(lathe_graph *g, adjoint *a);
} adjoint_cases[] = {
    {"slice", LT_OP_SLICE_BACKWARD, a_slice},
    {"slice/negative-clamped", LT_OP_SLICE_BACKWARD, a_slice_neg},
    {"slice/empty", LT_OP_SLICE_BACKWARD, a_slice_empty},
    {"conv2d input/groups-stride-dilation", LT_OP_CONV2D_BACKWARD_INPUT, a_conv_in_a},
    {"conv2d input/depthwise-unused-row", LT_OP_CONV2D_BACKWARD_INPUT, a_conv_in_b},
    {"conv2d input/plain", LT_OP_CONV2D_BACKWARD_INPUT, a_conv_in_c},
    {"conv2d weight/groups-stride-dilation", LT_OP_CONV2D_BACKWARD_WEIGHT, a_conv_w_a},
    {"conv2d weight/depthwise-unused-row", LT_OP_CONV2D_BACKWARD_WEIGHT, a_conv_w_b},
    {"conv2d weight/plain", LT_OP_CONV2D_BACKWARD_WEIGHT, a_conv_w_c},
    {"avg_pool2d/include-pad", LT_OP_AVG_POOL2D_BACKWARD, a_avg_incl},
    {"avg_pool2d/exclude-pad-uneven", LT_OP_AVG_POOL2D_BACKWARD, a_avg_excl},
    {"avg_pool2d/include-pad-uneven", LT_OP_AVG_POOL2D_BACKWARD, a_avg_incl_uneven},
    {"avg_pool2d/plain-overlap", LT_OP_AVG_POOL2D_BACKWARD, a_avg_plain},
    {"adaptive_avg_pool2d/5x7-to-2x3", LT_OP_ADAPTIVE_AVG_POOL2D_BACKWARD, a_adaptive},
    {"adaptive_avg_pool2d/3x5-to-4x2", LT_OP_ADAPTIVE_AVG_POOL2D_BACKWARD, a_adaptive_up},
    {"adaptive_avg_pool2d/to-1x1", LT_OP_ADAPTIVE_AVG_POOL2D_BACKWARD, a_adaptive_1},
    {"index_select/rows-2d-index", LT_OP_INDEX_SELECT_BACKWARD, a_select},
    {"index_select/middle-axis", LT_OP_INDEX_SELECT_BACKWARD, a_select_mid},
    {"index_select/last-axis-rank0-index", LT_OP_INDEX_SELECT_BACKWARD, a_select_last},
};

static double dot(const double *a, const double *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static void test_adjoints(void **state) {
    (void)state;
    int bad = 0;
    bool covered[LT_OP_COUNT] = {0};
    for (size_t i = 0; i < sizeof adjoint_cases / sizeof adjoint_cases[0]; i++) {
        lathe_graph *g = lathe_graph_new();
        adjoint a = {0};
        adjoint_cases[i].build(g, &a);
        if (lathe_graph_status(g) != LATHE_OK) fail_msg("%s: %s", adjoint_cases[i].label, lathe_graph_error(g));
        assert_int_equal(a.bwd->op, adjoint_cases[i].op);
        covered[a.bwd->op] = true;
        lathe_output(g, "fwd", a.fwd);
        lathe_output(g, "bwd", a.bwd);
        lathe_eval *ev = lathe_eval_new(g);
        assert_non_null(ev);
        for (uint64_t seed = 1; seed <= 3; seed++) {
            bind_random(ev, g, seed * 100 + i);
            if (lathe_eval_run(ev) != LATHE_OK) fail_msg("%s: %s", adjoint_cases[i].label, lathe_eval_error(ev));
            double fv = dot(lathe_eval_value(ev, a.fwd), lathe_eval_value(ev, a.v), a.fwd->numel);
            double ub = dot(lathe_eval_value(ev, a.u), lathe_eval_value(ev, a.bwd), a.u->numel);
            if (!close_to(ub, fv, 1e-12)) {
                print_error("%s (seed %d): <F(u), v> = %.17g but <u, B(v)> = %.17g\n", adjoint_cases[i].label,
                            (int)seed, fv, ub);
                bad++;
            }
        }
        lathe_eval_free(ev);
        lathe_graph_free(g);
    }
    for (int op = LT_OP_SLICE_BACKWARD; op < LT_OP_COUNT; op++)
        if (op != LT_OP_MAX_POOL2D_BACKWARD && !covered[op]) {
            print_error("gradient kernel %s has no adjoint case\n", lt_ops[op].name);
            bad++;
        }
    assert_int_equal(bad, 0);
}

/* max_pool2d is linear only near a point x: its derivative takes u to u at
 * each window's argmax.  So <u, max_pool2d_backward(v, x)> must be the sum
 * over windows of v * u[argmax], with the argmax found here by a plain scan
 * (the first strict maximum over in-bounds elements; random x has no ties),
 * and the forward max_pool2d must have picked that element's value. */
static void adj_max(lathe_graph *g, adjoint *a, lathe_node **x, int rank, const int64_t *xs, const int64_t k[2],
                    const int64_t s[2], const int64_t p[2]) {
    *x = in64(g, "x", rank, xs);
    a->u = in64(g, "u", rank, xs);
    a->fwd = lathe_max_pool2d_hw(g, *x, k, s, p);
    if (!a->fwd) return;
    a->v = like(g, "v", a->fwd);
    a->bwd = lt_make(g, LT_OP_MAX_POOL2D_BACKWARD, 2, (lathe_node *[]){a->v, *x}, a->fwd->attr);
}

static void test_max_pool_adjoint(void **state) {
    (void)state;
    static const struct {
        int64_t shape[4], k[2], s[2], p[2];
    } cfg[] = {
        {{2, 2, 5, 5}, {3, 3}, {2, 2}, {1, 1}}, /* overlapping windows */
        {{1, 3, 6, 7}, {2, 3}, {2, 1}, {1, 1}},
        {{1, 1, 4, 4}, {2, 2}, {2, 2}, {0, 0}}, /* disjoint */
        {{1, 1, 5, 4}, {3, 1}, {1, 1}, {0, 0}}, /* heavy overlap */
    };
    for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) {
        lathe_graph *g = lathe_graph_new();
        adjoint a = {0};
        lathe_node *xn = NULL;
        adj_max(g, &a, &xn, 4, cfg[i].shape, cfg[i].k, cfg[i].s, cfg[i].p);
        assert_graph_ok(g);
        lathe_output(g, "fwd", a.fwd);
        lathe_output(g, "bwd", a.bwd);
        lathe_eval *ev = lathe_eval_new(g);
        assert_non_null(ev);
        bind_random(ev, g, 500 + i);
        assert_int_equal(lathe_eval_run(ev), LATHE_OK);
        const double *x = lathe_eval_value(ev, xn), *u = lathe_eval_value(ev, a.u), *v = lathe_eval_value(ev, a.v);
        const double *y = lathe_eval_value(ev, a.fwd), *dx = lathe_eval_value(ev, a.bwd);
        int64_t NC = cfg[i].shape[0] * cfg[i].shape[1], H = cfg[i].shape[2], W = cfg[i].shape[3];
        int64_t P = a.fwd->shape[2], Q = a.fwd->shape[3];
        double want = 0;
        for (int64_t c = 0; c < NC; c++)
            for (int64_t pp = 0; pp < P; pp++)
                for (int64_t q = 0; q < Q; q++) {
                    int64_t best = -1;
                    for (int64_t r = 0; r < cfg[i].k[0]; r++)
                        for (int64_t t = 0; t < cfg[i].k[1]; t++) {
                            int64_t h = pp * cfg[i].s[0] - cfg[i].p[0] + r, w = q * cfg[i].s[1] - cfg[i].p[1] + t;
                            if (h < 0 || h >= H || w < 0 || w >= W) continue;
                            int64_t off = (c * H + h) * W + w;
                            if (best < 0 || x[off] > x[best]) best = off;
                        }
                    assert_true(best >= 0);
                    int64_t o = (c * P + pp) * Q + q;
                    assert_true(y[o] == x[best]);
                    want += v[o] * u[best];
                }
        double got = dot(u, dx, a.u->numel);
        if (!close_to(got, want, 1e-12)) fail_msg("max_pool2d config %zu: <u, B(v)> = %.17g, want %.17g", i, got, want);
        lathe_eval_free(ev);
        lathe_graph_free(g);
    }
}

/* ---- f32 rounding ------------------------------------------------------------------- */

/* Every op rounds to its dtype: 1 + 1e-8 is exactly 1 in f32, not in f64. */
static void test_f32_rounding(void **state) {
    (void)state;
    for (int t = LATHE_F32; t <= LATHE_F64; t++) {
        lathe_graph *g = lathe_graph_new();
        lathe_node *y = lathe_add(g, lathe_scalar(g, (lathe_dtype)t, 1), lathe_input(g, "x", (lathe_dtype)t, 0, NULL));
        lathe_output(g, "y", y);
        assert_graph_ok(g);
        lathe_eval *ev = lathe_eval_new(g);
        assert_non_null(ev);
        assert_int_equal(lathe_eval_set_f64(ev, "x", (double[]){1e-8}), LATHE_OK);
        assert_int_equal(lathe_eval_run(ev), LATHE_OK);
        double v = lathe_eval_value(ev, y)[0];
        if (t == LATHE_F32) {
            assert_true(v == 1.0);
            float f = 0;
            assert_int_equal(lathe_eval_get(ev, y, &f, sizeof f), LATHE_OK);
            assert_true(f == 1.0f);
            assert_true(lathe_eval_leaf(ev, "x")[0] == (double)1e-8f); /* stored as f32 */
        } else {
            assert_true(v != 1.0);
            assert_true(v == 1 + 1e-8);
        }
        lathe_eval_free(ev);
        lathe_graph_free(g);
    }
}

/* ---- the op samples ----------------------------------------------------------------- */

/* Runs sample s in dtype t with random leaves (seeded by its index); checks
 * every node's value is finite and returns a copy of y's values. */
static double *run_sample(int si, lathe_dtype t, int64_t *numel) {
    const sample *s = &samples[si];
    lathe_graph *g = sample_graph(s, t);
    lathe_eval *ev = lathe_eval_new(g);
    if (!ev) fail_msg("%s: %s", s->label, lathe_graph_error(g));
    bind_random(ev, g, (uint64_t)si + 1);
    if (lathe_eval_run(ev) != LATHE_OK) fail_msg("%s (%s): %s", s->label, lathe_dtype_name(t), lathe_eval_error(ev));
    for (int k = 0; k < lathe_graph_num_nodes(g); k++) {
        lathe_node *n = lathe_graph_node(g, k);
        const double *v = lathe_eval_value(ev, n);
        assert_non_null(v);
        for (int64_t i = 0; i < n->numel; i++)
            if (!isfinite(v[i]))
                fail_msg("%s (%s): node %%%d %s [%lld] = %g", s->label, lathe_dtype_name(t), k,
                         lt_ops[n->op].name, (long long)i, v[i]);
    }
    lathe_node *y = lathe_graph_find(g, "y");
    *numel = y->numel;
    double *out = malloc((size_t)(y->numel ? y->numel : 1) * sizeof *out);
    assert_non_null(out);
    memcpy(out, lathe_eval_value(ev, y), (size_t)y->numel * sizeof *out);
    lathe_eval_free(ev);
    lathe_graph_free(g);
    return out;
}

/* Every sample runs in f32 and f64 with finite values, and the two agree to
 * f32 precision. */
static void test_samples_f32_f64(void **state) {
    (void)state;
    int bad = 0;
    for (int si = 0; si < nsamples; si++) {
        int64_t n32, n64;
        double *a = run_sample(si, LATHE_F32, &n32), *b = run_sample(si, LATHE_F64, &n64);
        assert_int_equal(n32, n64);
        for (int64_t i = 0; i < n64; i++)
            if (!close_to(a[i], b[i], 1e-4)) {
                print_error("%s: f32 [%lld] = %.9g, f64 %.17g\n", samples[si].label, (long long)i, a[i], b[i]);
                bad++;
            }
        free(a);
        free(b);
    }
    assert_int_equal(bad, 0);
}

/* ---- batch-norm running statistics -------------------------------------------------- */

static const sample *find_sample(const char *label) {
    for (int i = 0; i < nsamples; i++)
        if (strcmp(samples[i].label, label) == 0) return &samples[i];
    fail_msg("no sample %s", label);
    return NULL;
}

/* After a training run, running_mean and running_var are
 * (1 - m) * old + m * stat with the batch mean and unbiased variance; a
 * second run starts from (and sees) the updated values. */
static void test_batch_norm_updates(void **state) {
    (void)state;
    lathe_graph *g = sample_graph(find_sample("batch_norm2d/train"), LATHE_F64);
    lathe_eval *ev = lathe_eval_new(g);
    assert_non_null(ev);
    bind_random(ev, g, 7);
    const double m = 0.1;
    const double *x = lathe_eval_leaf(ev, "x"); /* (2, 3, 2, 2) */
    double rm[3], rv[3], mean[3], var[3];
    memcpy(rm, lathe_eval_leaf(ev, "bn.running_mean"), sizeof rm);
    memcpy(rv, lathe_eval_leaf(ev, "bn.running_var"), sizeof rv);
    for (int c = 0; c < 3; c++) {
        double s = 0, ss = 0;
        for (int n = 0; n < 2; n++)
            for (int i = 0; i < 4; i++) s += x[(n * 3 + c) * 4 + i];
        mean[c] = s / 8;
        for (int n = 0; n < 2; n++)
            for (int i = 0; i < 4; i++) ss += (x[(n * 3 + c) * 4 + i] - mean[c]) * (x[(n * 3 + c) * 4 + i] - mean[c]);
        var[c] = ss / 7; /* unbiased */
    }
    lathe_node *rm_node = lathe_graph_find(g, "bn.running_mean");
    for (int run = 0; run < 2; run++) {
        assert_int_equal(lathe_eval_run(ev), LATHE_OK);
        const double *seen = lathe_eval_value(ev, rm_node); /* what this run read */
        const double *nm = lathe_eval_leaf(ev, "bn.running_mean"), *nv = lathe_eval_leaf(ev, "bn.running_var");
        for (int c = 0; c < 3; c++) {
            assert_true(seen[c] == rm[c]);
            rm[c] = (1 - m) * rm[c] + m * mean[c];
            rv[c] = (1 - m) * rv[c] + m * var[c];
            assert_true(close_to(nm[c], rm[c], 1e-12));
            assert_true(close_to(nv[c], rv[c], 1e-12));
        }
    }
    lathe_eval_free(ev);
    lathe_graph_free(g);
}

/* ---- errors ------------------------------------------------------------------------- */

/* Each error case acts on a fresh evaluator of
 *   x: f32[2,3] input, labels: i64[2] input, y = loss(x, labels) (mean)
 * and returns the status of the call that should fail. */
typedef struct {
    const char *label;
    lt_op loss;
    lathe_status (*act)(lathe_eval *ev, lathe_node *y);
    lathe_status want;
    const char *msg[4]; /* substrings of the message */
} err_case;

static const float X_OK[6] = {0.5f, -1, 2, 0, 1, -0.25f};

static lathe_status bind_and_run(lathe_eval *ev, double l0, double l1) {
    assert_int_equal(lathe_eval_set(ev, "x", X_OK, sizeof X_OK), LATHE_OK);
    assert_int_equal(lathe_eval_set_f64(ev, "labels", (double[]){l0, l1}), LATHE_OK);
    return lathe_eval_run(ev);
}
static lathe_status e_unbound(lathe_eval *ev, lathe_node *y) {
    (void)y;
    assert_int_equal(lathe_eval_set(ev, "x", X_OK, sizeof X_OK), LATHE_OK);
    return lathe_eval_run(ev);
}
static lathe_status e_set_bytes(lathe_eval *ev, lathe_node *y) {
    (void)y;
    return lathe_eval_set(ev, "x", X_OK, 20);
}
static lathe_status e_set_unknown(lathe_eval *ev, lathe_node *y) {
    (void)y;
    return lathe_eval_set(ev, "nope", X_OK, sizeof X_OK);
}
static lathe_status e_set_output(lathe_eval *ev, lathe_node *y) {
    (void)y;
    return lathe_eval_set_f64(ev, "y", (double[]){0});
}
static lathe_status e_label_neg(lathe_eval *ev, lathe_node *y) {
    (void)y;
    return bind_and_run(ev, 0, -1);
}
static lathe_status e_label_c(lathe_eval *ev, lathe_node *y) {
    (void)y;
    return bind_and_run(ev, 3, 0);
}
static lathe_status e_get_bytes(lathe_eval *ev, lathe_node *y) {
    assert_int_equal(bind_and_run(ev, 0, 2), LATHE_OK);
    double d;
    return lathe_eval_get(ev, y, &d, sizeof d); /* y is f32[]: 4 bytes */
}
static lathe_status e_get_before_run(lathe_eval *ev, lathe_node *y) {
    float f;
    return lathe_eval_get(ev, y, &f, sizeof f);
}

#define CE LT_OP_CROSS_ENTROPY
#define NLL LT_OP_NLL_LOSS
static const err_case err_cases[] = {
    {"unbound input", CE, e_unbound, LATHE_ERR_NAME, {"input 'labels' (i64[2]) is not bound"}},
    {"set: byte count", CE, e_set_bytes, LATHE_ERR_ARG, {"'x'", "f32[2,3]", "24 bytes", "got 20"}},
    {"set: unknown name", CE, e_set_unknown, LATHE_ERR_NAME, {"'nope'"}},
    {"set: an output", CE, e_set_output, LATHE_ERR_NAME, {"'y'", "output"}},
    {"cross_entropy: label -1", CE, e_label_neg, LATHE_ERR_ARG, {"cross_entropy %", "label -1", "index 1", "'labels'"}},
    {"cross_entropy: label C", CE, e_label_c, LATHE_ERR_ARG, {"cross_entropy %", "label 3", "index 0", "[0, 3)"}},
    {"nll_loss: label -1", NLL, e_label_neg, LATHE_ERR_ARG, {"nll_loss %", "label -1", "index 1", "'labels'"}},
    {"nll_loss: label C", NLL, e_label_c, LATHE_ERR_ARG, {"nll_loss %", "label 3", "index 0", "'labels'"}},
    {"get: byte count", CE, e_get_bytes, LATHE_ERR_ARG, {"'y'", "f32[]", "4 bytes", "got 8"}},
    {"get: before a run", CE, e_get_before_run, LATHE_ERR_ARG, {"'y'", "no successful run"}},
};

static void test_errors(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof err_cases / sizeof err_cases[0]; i++) {
        const err_case *e = &err_cases[i];
        lathe_graph *g = lathe_graph_new();
        lathe_node *x = lathe_input(g, "x", LATHE_F32, D(2, 3)), *l = lathe_input(g, "labels", LATHE_I64, D(2));
        lathe_node *y = e->loss == CE ? lathe_cross_entropy(g, x, l, LATHE_REDUCE_MEAN)
                                      : lathe_nll_loss(g, x, l, LATHE_REDUCE_MEAN);
        lathe_output(g, "y", y);
        assert_graph_ok(g);
        lathe_eval *ev = lathe_eval_new(g);
        assert_non_null(ev);
        lathe_status st = e->act(ev, y);
        const char *msg = lathe_eval_error(ev);
        if (st != e->want)
            fail_msg("%s: status %s, want %s (%s)", e->label, lathe_status_name(st), lathe_status_name(e->want), msg);
        for (int k = 0; k < 4 && e->msg[k]; k++)
            if (!strstr(msg, e->msg[k])) fail_msg("%s: message \"%s\" lacks \"%s\"", e->label, msg, e->msg[k]);
        lathe_eval_free(ev);
        lathe_graph_free(g);
    }
}

/* index_select and its gradient refuse an index outside [0, rows), naming
 * the node, the value, its element and the index, before reading anything. */
static void test_index_errors(void **state) {
    (void)state;
    static const struct {
        bool backward;
        int64_t bad;
        const char *msg;
    } cases[] = {
        {false, 3, "index_select %2: index 3 at element 1 of 'tokens' is out of range [0, 3)"},
        {false, -1, "index_select %2: index -1 at element 1 of 'tokens' is out of range [0, 3)"},
        {true, 3, "index_select_backward %2: index 3 at element 1 of 'tokens' is out of range [0, 3)"},
        {true, -2, "index_select_backward %2: index -2 at element 1 of 'tokens' is out of range [0, 3)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lathe_graph *g = lathe_graph_new();
        lathe_node *x = lathe_input(g, "x", LATHE_F32, D(3, 2)), *ix = lathe_input(g, "tokens", LATHE_I64, D(2));
        lathe_node *y = cases[i].backward ? lt_make(g, LT_OP_INDEX_SELECT_BACKWARD, 2, (lathe_node *[]){x, ix},
                                                    (lt_attr[LT_MAX_ATTRS]){{.v = {1}}, {.v = {3}}})
                                          : lathe_index_select(g, x, 0, ix);
        lathe_output(g, "y", y);
        assert_graph_ok(g);
        lathe_eval *ev = lathe_eval_new(g);
        assert_non_null(ev);
        const float xv[6] = {1, 2, 3, 4, 5, 6};
        assert_int_equal(lathe_eval_set(ev, "x", xv, sizeof xv), LATHE_OK);
        assert_int_equal(lathe_eval_set(ev, "tokens", (int64_t[]){0, 2}, 2 * sizeof(int64_t)), LATHE_OK);
        assert_int_equal(lathe_eval_run(ev), LATHE_OK);
        assert_int_equal(lathe_eval_set(ev, "tokens", (int64_t[]){0, cases[i].bad}, 2 * sizeof(int64_t)), LATHE_OK);
        assert_int_equal(lathe_eval_run(ev), LATHE_ERR_ARG);
        if (!strstr(lathe_eval_error(ev), cases[i].msg)) fail_msg("case %zu: %s", i, lathe_eval_error(ev));
        lathe_eval_free(ev);
        lathe_graph_free(g);
    }
}

/* The evaluator is a world of one process: a gather or an all-reduce over
 * more is an error of the run naming the node and the count, not a crash;
 * the evaluator stays usable and the graph keeps no error. */
static void test_world_of_one(void **state) {
    (void)state;
    for (int reduce = 0; reduce <= 1; reduce++) {
        lathe_graph *g = lathe_graph_new();
        lathe_node *x = lathe_input(g, "x", LATHE_F32, D(2, 3));
        lathe_output(g, "y", reduce ? lathe_all_reduce(g, x, 3) : lathe_all_gather(g, x, 0, 2));
        assert_graph_ok(g);
        lathe_eval *ev = lathe_eval_new(g);
        assert_non_null(ev);
        const float xv[6] = {1, 2, 3, 4, 5, 6};
        assert_int_equal(lathe_eval_set(ev, "x", xv, sizeof xv), LATHE_OK);
        for (int run = 0; run < 2; run++) {
            assert_int_equal(lathe_eval_run(ev), LATHE_ERR_UNSUPPORTED);
            const char *want = reduce ? "all_reduce %1 over 3 processes: the evaluator runs as one process (a world of one)"
                                      : "all_gather %1 over 2 processes: the evaluator runs as one process (a world of one)";
            if (!strstr(lathe_eval_error(ev), want)) fail_msg("got \"%s\", want \"%s\"", lathe_eval_error(ev), want);
        }
        float y[12];
        size_t nb = (size_t)lathe_node_numel(lathe_graph_output(g, 0)) * sizeof(float);
        assert_int_equal(lathe_eval_get(ev, lathe_graph_output(g, 0), y, nb), LATHE_ERR_ARG); /* no successful run */
        assert_int_equal(lathe_graph_status(g), LATHE_OK);
        lathe_eval_free(ev);
        lathe_graph_free(g);
    }
}

/* A graph with an error gives no evaluator, and the error stays in the graph. */
static void test_bad_graph(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_add(g, lathe_input(g, "a", LATHE_F32, D(2)), lathe_input(g, "b", LATHE_F32, D(3)));
    assert_int_equal(lathe_graph_status(g), LATHE_ERR_SHAPE);
    assert_null(lathe_eval_new(g));
    assert_int_equal(lathe_graph_status(g), LATHE_ERR_SHAPE);
    assert_null(lathe_eval_new(NULL));
    lathe_eval_free(NULL);
    lathe_graph_free(g);
}

/* ---- raw data in every dtype -------------------------------------------------------- */

/* lathe_eval_set and lathe_eval_get move raw bytes of each dtype exactly;
 * zero-size tensors take 0 bytes. */
static void test_raw_dtypes(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *f = lathe_input(g, "f", LATHE_F32, D(3)), *d = lathe_input(g, "d", LATHE_F64, D(3));
    lathe_node *k = lathe_input(g, "k", LATHE_I64, D(3)), *b = lathe_input(g, "b", LATHE_BOOL, D(3));
    lathe_node *z = lathe_input(g, "z", LATHE_F32, D(0, 2));
    lathe_node *sum = lathe_add(g, lathe_cast(g, f, LATHE_F64), d);
    lathe_node *pick = lathe_where(g, b, k, lathe_neg(g, k));
    lathe_node *zs = lathe_sum(g, z, LATHE_AXES(0), false);
    lathe_output(g, "sum", sum);
    lathe_output(g, "pick", pick);
    lathe_output(g, "zs", zs);
    assert_graph_ok(g);
    lathe_eval *ev = lathe_eval_new(g);
    assert_non_null(ev);
    const float fv[3] = {0.1f, -2.5f, 1e30f};
    const double dv[3] = {0.2, 0.5, 1};
    const int64_t kv[3] = {(int64_t)1 << 40, -3, 7};
    const bool bv[3] = {true, false, true};
    assert_int_equal(lathe_eval_set(ev, "f", fv, sizeof fv), LATHE_OK);
    assert_int_equal(lathe_eval_set(ev, "d", dv, sizeof dv), LATHE_OK);
    assert_int_equal(lathe_eval_set(ev, "k", kv, sizeof kv), LATHE_OK);
    assert_int_equal(lathe_eval_set(ev, "b", bv, sizeof bv), LATHE_OK);
    assert_int_equal(lathe_eval_set(ev, "z", NULL, 0), LATHE_OK);
    assert_int_equal(lathe_eval_run(ev), LATHE_OK);

    float fo[3];
    double dout[3];
    int64_t ko[3];
    bool bo[3];
    assert_int_equal(lathe_eval_get(ev, f, fo, sizeof fo), LATHE_OK);
    assert_memory_equal(fo, fv, sizeof fv);
    assert_int_equal(lathe_eval_get(ev, b, bo, sizeof bo), LATHE_OK);
    assert_memory_equal(bo, bv, sizeof bv);
    assert_int_equal(lathe_eval_get(ev, sum, dout, sizeof dout), LATHE_OK);
    for (int i = 0; i < 3; i++) assert_true(dout[i] == (double)fv[i] + dv[i]);
    assert_int_equal(lathe_eval_get(ev, pick, ko, sizeof ko), LATHE_OK);
    assert_true(ko[0] == (int64_t)1 << 40 && ko[1] == 3 && ko[2] == 7);
    float zo[2];
    assert_int_equal(lathe_eval_get(ev, zs, zo, sizeof zo), LATHE_OK);
    assert_true(zo[0] == 0 && zo[1] == 0);
    assert_int_equal(lathe_eval_get(ev, z, NULL, 0), LATHE_OK);
    lathe_eval_free(ev);
    lathe_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_cases),     cmocka_unit_test(test_adjoints),
        cmocka_unit_test(test_max_pool_adjoint), cmocka_unit_test(test_f32_rounding),
        cmocka_unit_test(test_samples_f32_f64), cmocka_unit_test(test_batch_norm_updates),
        cmocka_unit_test(test_errors),         cmocka_unit_test(test_bad_graph),
        cmocka_unit_test(test_raw_dtypes),     cmocka_unit_test(test_index_errors),
        cmocka_unit_test(test_world_of_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
