/* build.c - the tracing API: one public function per op.
 *
 * Each builder packs its arguments into attributes in the op's schema order
 * (ops.h) and calls lt_make, which checks them through the shape rules in
 * infer.c.  The only builder that does more is batch_norm2d in training mode,
 * which also records the running-statistics updates, as PyTorch's module
 * does, written as ordinary ops in a no_grad region. */
#include <string.h>

#include "ir.h"

#define IN(...) ((lathe_node *const[]){__VA_ARGS__})

static lathe_node *make(lathe_graph *g, lt_op op, int nin, lathe_node *const *in, const lt_attr *a) {
    if (!g) return NULL;
    return lt_make(g, op, nin, in, a);
}

lathe_node *lathe_input(lathe_graph *g, const char *name, lathe_dtype dtype, int rank,
                        const int64_t *shape) {
    return lt_make_leaf(g, LT_OP_INPUT, name, dtype, rank, shape, false, NULL);
}
lathe_node *lathe_param(lathe_graph *g, const char *name, lathe_dtype dtype, int rank,
                        const int64_t *shape, bool requires_grad) {
    return lt_make_leaf(g, LT_OP_PARAM, name, dtype, rank, shape, requires_grad, NULL);
}
lathe_node *lathe_buffer(lathe_graph *g, const char *name, lathe_dtype dtype, int rank,
                         const int64_t *shape) {
    return lt_make_leaf(g, LT_OP_BUFFER, name, dtype, rank, shape, false, NULL);
}
lathe_node *lathe_const(lathe_graph *g, lathe_dtype dtype, int rank, const int64_t *shape,
                        const void *data) {
    return lt_make_leaf(g, LT_OP_CONST, NULL, dtype, rank, shape, false, data);
}
lathe_node *lathe_scalar(lathe_graph *g, lathe_dtype dtype, double v) {
    union {
        float f;
        double d;
        int64_t i;
        bool b;
    } u;
    switch (dtype) {
    case LATHE_F32: u.f = (float)v; break;
    case LATHE_F64: u.d = v; break;
    case LATHE_I64:
        if (!(v >= -9.2233720368547758e18 && v < 9.2233720368547758e18))
            return lt_fail(g, LATHE_ERR_ARG, "scalar: %g does not fit i64", v);
        u.i = (int64_t)v;
        break;
    case LATHE_BOOL: u.b = v != 0; break;
    default: return lt_fail(g, LATHE_ERR_DTYPE, "scalar: unknown dtype %d", (int)dtype);
    }
    return lathe_const(g, dtype, 0, NULL, &u);
}

/* ---- elementwise ---------------------------------------------------------- */

#define BINARY(fn, OP)                                                                   \
    lathe_node *fn(lathe_graph *g, lathe_node *a, lathe_node *b) {                       \
        return make(g, LT_OP_##OP, 2, IN(a, b), NULL);                                   \
    }
BINARY(lathe_add, ADD)
BINARY(lathe_sub, SUB)
BINARY(lathe_mul, MUL)
BINARY(lathe_div, DIV)
BINARY(lathe_pow, POW)
BINARY(lathe_maximum, MAXIMUM)
BINARY(lathe_minimum, MINIMUM)
BINARY(lathe_gt, GT)
BINARY(lathe_ge, GE)
BINARY(lathe_lt, LT)
BINARY(lathe_le, LE)
BINARY(lathe_eq, EQ)
BINARY(lathe_ne, NE)
BINARY(lathe_matmul, MATMUL)
#undef BINARY

#define UNARY(fn, OP)                                                                    \
    lathe_node *fn(lathe_graph *g, lathe_node *x) { return make(g, LT_OP_##OP, 1, IN(x), NULL); }
UNARY(lathe_neg, NEG)
UNARY(lathe_abs, ABS)
UNARY(lathe_relu, RELU)
UNARY(lathe_exp, EXP)
UNARY(lathe_log, LOG)
UNARY(lathe_sqrt, SQRT)
UNARY(lathe_rsqrt, RSQRT)
UNARY(lathe_sigmoid, SIGMOID)
UNARY(lathe_tanh, TANH)
UNARY(lathe_erf, ERF)
UNARY(lathe_silu, SILU)
#undef UNARY

lathe_node *lathe_where(lathe_graph *g, lathe_node *c, lathe_node *a, lathe_node *b) {
    return make(g, LT_OP_WHERE, 3, IN(c, a, b), NULL);
}
lathe_node *lathe_pow_scalar(lathe_graph *g, lathe_node *x, double e) {
    lt_attr a[LT_MAX_ATTRS] = {{.f = e}};
    return make(g, LT_OP_POW_SCALAR, 1, IN(x), a);
}
lathe_node *lathe_gelu(lathe_graph *g, lathe_node *x, bool approximate) {
    lt_attr a[LT_MAX_ATTRS] = {{.v = {approximate}}};
    return make(g, LT_OP_GELU, 1, IN(x), a);
}
lathe_node *lathe_softplus(lathe_graph *g, lathe_node *x, double beta, double threshold) {
    lt_attr a[LT_MAX_ATTRS] = {{.f = beta}, {.f = threshold}};
    return make(g, LT_OP_SOFTPLUS, 1, IN(x), a);
}
lathe_node *lathe_leaky_relu(lathe_graph *g, lathe_node *x, double negative_slope) {
    lt_attr a[LT_MAX_ATTRS] = {{.f = negative_slope}};
    return make(g, LT_OP_LEAKY_RELU, 1, IN(x), a);
}
lathe_node *lathe_clamp(lathe_graph *g, lathe_node *x, double min, double max) {
    lt_attr a[LT_MAX_ATTRS] = {{.f = min}, {.f = max}};
    return make(g, LT_OP_CLAMP, 1, IN(x), a);
}
lathe_node *lathe_cast(lathe_graph *g, lathe_node *x, lathe_dtype t) {
    lt_attr a[LT_MAX_ATTRS] = {{.v = {t}}};
    return make(g, LT_OP_CAST, 1, IN(x), a);
}

/* ---- reductions --------------------------------------------------------------- */

static lathe_node *reduce(lathe_graph *g, lt_op op, lathe_node *x, int naxes, const int64_t *axes,
                          bool keepdim) {
    if (!g || !x) return make(g, op, 1, IN(x), NULL);
    lt_attr a[LT_MAX_ATTRS] = {{0}};
    if (naxes < 0 || naxes > LATHE_MAX_RANK)
        return lt_fail(g, LATHE_ERR_ARG, "%s: %d axes given", lt_ops[op].name, naxes);
    if (naxes == 0) { /* every axis */
        a[0].n = x->rank;
        for (int i = 0; i < x->rank; i++) a[0].v[i] = i;
    } else {
        if (!axes) return lt_fail(g, LATHE_ERR_ARG, "%s: axes is NULL", lt_ops[op].name);
        a[0].n = naxes;
        memcpy(a[0].v, axes, (size_t)naxes * sizeof *axes);
    }
    a[1].v[0] = keepdim;
    return make(g, op, 1, IN(x), a);
}
lathe_node *lathe_sum(lathe_graph *g, lathe_node *x, int n, const int64_t *axes, bool keepdim) {
    return reduce(g, LT_OP_SUM, x, n, axes, keepdim);
}
lathe_node *lathe_mean(lathe_graph *g, lathe_node *x, int n, const int64_t *axes, bool keepdim) {
    return reduce(g, LT_OP_MEAN, x, n, axes, keepdim);
}
lathe_node *lathe_max(lathe_graph *g, lathe_node *x, int n, const int64_t *axes, bool keepdim) {
    return reduce(g, LT_OP_MAX, x, n, axes, keepdim);
}
lathe_node *lathe_min(lathe_graph *g, lathe_node *x, int n, const int64_t *axes, bool keepdim) {
    return reduce(g, LT_OP_MIN, x, n, axes, keepdim);
}
lathe_node *lathe_argmax(lathe_graph *g, lathe_node *x, int64_t axis, bool keepdim) {
    lt_attr a[LT_MAX_ATTRS] = {{.v = {axis}}, {.v = {keepdim}}};
    return make(g, LT_OP_ARGMAX, 1, IN(x), a);
}

/* ---- shape ops --------------------------------------------------------------- */

static lathe_node *with_list(lathe_graph *g, lt_op op, lathe_node *x, int n, const int64_t *v) {
    if (!g) return NULL;
    if (n < 0 || n > LATHE_MAX_RANK)
        return lt_fail(g, LATHE_ERR_ARG, "%s: %d dims given (rank is at most %d)", lt_ops[op].name, n,
                       LATHE_MAX_RANK);
    if (n > 0 && !v) return lt_fail(g, LATHE_ERR_ARG, "%s: dims are NULL", lt_ops[op].name);
    lt_attr a[LT_MAX_ATTRS] = {{.n = n}};
    if (n) memcpy(a[0].v, v, (size_t)n * sizeof *v);
    return make(g, op, 1, IN(x), a);
}
lathe_node *lathe_reshape(lathe_graph *g, lathe_node *x, int rank, const int64_t *shape) {
    return with_list(g, LT_OP_RESHAPE, x, rank, shape);
}
lathe_node *lathe_broadcast_to(lathe_graph *g, lathe_node *x, int rank, const int64_t *shape) {
    return with_list(g, LT_OP_BROADCAST_TO, x, rank, shape);
}
lathe_node *lathe_permute(lathe_graph *g, lathe_node *x, int n, const int64_t *perm) {
    return with_list(g, LT_OP_PERMUTE, x, n, perm);
}
lathe_node *lathe_transpose(lathe_graph *g, lathe_node *x, int64_t d0, int64_t d1) {
    if (!g || !x) return NULL;
    int64_t perm[LATHE_MAX_RANK];
    for (int i = 0; i < x->rank; i++) perm[i] = i;
    int64_t a = d0 < 0 ? d0 + x->rank : d0, b = d1 < 0 ? d1 + x->rank : d1;
    if (a < 0 || a >= x->rank || b < 0 || b >= x->rank) {
        char ts[160];
        lathe_node_type_str(x, ts, sizeof ts);
        return lt_fail(g, LATHE_ERR_ARG, "transpose: dims %lld, %lld out of range for %s", (long long)d0,
                       (long long)d1, ts);
    }
    perm[a] = b;
    perm[b] = a;
    return with_list(g, LT_OP_PERMUTE, x, x->rank, perm);
}
lathe_node *lathe_flatten(lathe_graph *g, lathe_node *x, int64_t start, int64_t end) {
    lt_attr a[LT_MAX_ATTRS] = {{.v = {start}}, {.v = {end}}};
    return make(g, LT_OP_FLATTEN, 1, IN(x), a);
}
lathe_node *lathe_concat(lathe_graph *g, int n, lathe_node *const *xs, int64_t axis) {
    if (!g) return NULL;
    if (n <= 0 || !xs) return lt_fail(g, LATHE_ERR_ARG, "concat: expected at least 1 operands, got %d", n);
    lt_attr a[LT_MAX_ATTRS] = {{.v = {axis}}};
    return make(g, LT_OP_CONCAT, n, xs, a);
}
lathe_node *lathe_slice(lathe_graph *g, lathe_node *x, int64_t axis, int64_t start, int64_t end,
                        int64_t step) {
    lt_attr a[LT_MAX_ATTRS] = {{.v = {axis}}, {.v = {start}}, {.v = {end}}, {.v = {step}}};
    return make(g, LT_OP_SLICE, 1, IN(x), a);
}
lathe_node *lathe_index_select(lathe_graph *g, lathe_node *x, int64_t axis, lathe_node *index) {
    lt_attr a[LT_MAX_ATTRS] = {{.v = {axis}}};
    return make(g, LT_OP_INDEX_SELECT, 2, IN(x, index), a);
}
lathe_node *lathe_all_gather(lathe_graph *g, lathe_node *x, int axis, int parts) {
    lt_attr a[LT_MAX_ATTRS] = {{.v = {axis}}, {.v = {parts}}};
    return make(g, LT_OP_ALL_GATHER, 1, IN(x), a);
}

/* ---- contractions and pools ---------------------------------------------------- */

lathe_node *lathe_linear(lathe_graph *g, lathe_node *x, lathe_node *w, lathe_node *b) {
    return b ? make(g, LT_OP_LINEAR, 3, IN(x, w, b), NULL) : make(g, LT_OP_LINEAR, 2, IN(x, w), NULL);
}
lathe_node *lathe_conv2d_hw(lathe_graph *g, lathe_node *x, lathe_node *w, lathe_node *b,
                            const int64_t stride[2], const int64_t padding[2],
                            const int64_t dilation[2], int64_t groups) {
    lt_attr a[LT_MAX_ATTRS] = {{.n = 2, .v = {stride[0], stride[1]}},
                               {.n = 2, .v = {padding[0], padding[1]}},
                               {.n = 2, .v = {dilation[0], dilation[1]}},
                               {.v = {groups}}};
    return b ? make(g, LT_OP_CONV2D, 3, IN(x, w, b), a) : make(g, LT_OP_CONV2D, 2, IN(x, w), a);
}
lathe_node *lathe_conv2d(lathe_graph *g, lathe_node *x, lathe_node *w, lathe_node *b, int64_t stride,
                         int64_t padding, int64_t dilation, int64_t groups) {
    return lathe_conv2d_hw(g, x, w, b, (int64_t[]){stride, stride}, (int64_t[]){padding, padding},
                           (int64_t[]){dilation, dilation}, groups);
}
lathe_node *lathe_max_pool2d_hw(lathe_graph *g, lathe_node *x, const int64_t k[2], const int64_t s[2],
                                const int64_t p[2]) {
    lt_attr a[LT_MAX_ATTRS] = {{.n = 2, .v = {k[0], k[1]}}, {.n = 2, .v = {s[0], s[1]}},
                               {.n = 2, .v = {p[0], p[1]}}};
    return make(g, LT_OP_MAX_POOL2D, 1, IN(x), a);
}
lathe_node *lathe_max_pool2d(lathe_graph *g, lathe_node *x, int64_t k, int64_t s, int64_t p) {
    return lathe_max_pool2d_hw(g, x, (int64_t[]){k, k}, (int64_t[]){s, s}, (int64_t[]){p, p});
}
lathe_node *lathe_avg_pool2d_hw(lathe_graph *g, lathe_node *x, const int64_t k[2], const int64_t s[2],
                                const int64_t p[2], bool count_include_pad) {
    lt_attr a[LT_MAX_ATTRS] = {{.n = 2, .v = {k[0], k[1]}}, {.n = 2, .v = {s[0], s[1]}},
                               {.n = 2, .v = {p[0], p[1]}}, {.v = {count_include_pad}}};
    return make(g, LT_OP_AVG_POOL2D, 1, IN(x), a);
}
lathe_node *lathe_avg_pool2d(lathe_graph *g, lathe_node *x, int64_t k, int64_t s, int64_t p,
                             bool count_include_pad) {
    return lathe_avg_pool2d_hw(g, x, (int64_t[]){k, k}, (int64_t[]){s, s}, (int64_t[]){p, p},
                               count_include_pad);
}
lathe_node *lathe_adaptive_avg_pool2d(lathe_graph *g, lathe_node *x, int64_t oh, int64_t ow) {
    lt_attr a[LT_MAX_ATTRS] = {{.n = 2, .v = {oh, ow}}};
    return make(g, LT_OP_ADAPTIVE_AVG_POOL2D, 1, IN(x), a);
}

/* ---- normalization and losses ------------------------------------------------ */

/* new = (1 - m) * old + m * stat, traced as ops */
static lathe_node *momentum_update(lathe_graph *g, lathe_node *old, lathe_node *stat, double m) {
    lathe_node *keep = lathe_scalar(g, old->dtype, 1.0 - m), *take = lathe_scalar(g, old->dtype, m);
    return lathe_add(g, lathe_mul(g, keep, old), lathe_mul(g, take, stat));
}

lathe_node *lathe_batch_norm2d(lathe_graph *g, lathe_node *x, lathe_node *w, lathe_node *b,
                               lathe_node *rm, lathe_node *rv, bool training, double momentum,
                               double eps) {
    lt_attr a[LT_MAX_ATTRS] = {{.v = {training}}, {.f = momentum}, {.f = eps}};
    lathe_node *y = make(g, LT_OP_BATCH_NORM2D, 5, IN(x, w, b, rm, rv), a);
    if (!y || !training || rm->op != LT_OP_BUFFER || rv->op != LT_OP_BUFFER) return y;
    /* Running statistics, as torch.nn.BatchNorm2d in training mode: the mean
     * over (N, H, W) and the unbiased variance, mixed in with momentum. */
    lathe_no_grad_begin(g);
    int64_t C = x->shape[1], n = lt_numel(3, (int64_t[]){x->shape[0], x->shape[2], x->shape[3]});
    lathe_node *mean = lathe_mean(g, x, LATHE_AXES(0, 2, 3), true);
    lathe_node *d = lathe_sub(g, x, mean);
    lathe_node *ss = lathe_sum(g, lathe_mul(g, d, d), LATHE_AXES(0, 2, 3), false);
    lathe_node *var = lathe_div(g, ss, lathe_scalar(g, x->dtype, (double)(n - 1)));
    lathe_node *mean1 = lathe_reshape(g, mean, LATHE_DIMS(C));
    lathe_update(g, rm, momentum_update(g, rm, mean1, momentum));
    lathe_update(g, rv, momentum_update(g, rv, var, momentum));
    lathe_no_grad_end(g);
    return g->status == LATHE_OK ? y : NULL;
}

lathe_node *lathe_rng_state(lathe_graph *g) {
    lathe_node *r = lathe_graph_find(g, LATHE_RNG_NAME);
    if (r) return r;
    if (!(r = lathe_buffer(g, LATHE_RNG_NAME, LATHE_I64, LATHE_DIMS(2)))) return NULL;
    lathe_no_grad_begin(g);
    lathe_update(g, r, lathe_add(g, r, lathe_const(g, LATHE_I64, LATHE_DIMS(2), (int64_t[]){0, 1})));
    lathe_no_grad_end(g);
    return g->status == LATHE_OK ? r : NULL;
}

lathe_node *lathe_dropout(lathe_graph *g, lathe_node *x, double p) {
    if (g->status != LATHE_OK) return NULL;
    lathe_node *r = lathe_rng_state(g);
    if (!r) return NULL;
    int64_t salt = 0; /* the dropouts built before this one */
    for (int i = 0; i < g->nnodes; i++) salt += g->nodes[i]->op == LT_OP_DROPOUT;
    lt_attr a[LT_MAX_ATTRS] = {{.f = p}, {.v = {salt}}};
    return make(g, LT_OP_DROPOUT, 2, IN(x, r), a);
}

lathe_node *lathe_layer_norm(lathe_graph *g, lathe_node *x, int n, const int64_t *normalized_shape,
                             lathe_node *weight, lathe_node *bias, double eps) {
    if (!g) return NULL;
    if (n < 1 || n > LATHE_MAX_RANK)
        return lt_fail(g, LATHE_ERR_ARG, "layer_norm: normalized_shape must list 1 to %d dims, got %d", LATHE_MAX_RANK, n);
    if (bias && !weight)
        return lt_fail(g, LATHE_ERR_ARG, "layer_norm: a bias needs a weight (pass a weight of ones)");
    lt_attr a[LT_MAX_ATTRS] = {{.n = n}, {.f = eps}};
    memcpy(a[0].v, normalized_shape, sizeof(int64_t) * (size_t)n);
    return make(g, LT_OP_LAYER_NORM, 1 + (weight != NULL) + (bias != NULL), IN(x, weight, bias), a);
}

lathe_node *lathe_softmax(lathe_graph *g, lathe_node *x, int64_t axis) {
    lt_attr a[LT_MAX_ATTRS] = {{.v = {axis}}};
    return make(g, LT_OP_SOFTMAX, 1, IN(x), a);
}
lathe_node *lathe_log_softmax(lathe_graph *g, lathe_node *x, int64_t axis) {
    lt_attr a[LT_MAX_ATTRS] = {{.v = {axis}}};
    return make(g, LT_OP_LOG_SOFTMAX, 1, IN(x), a);
}
lathe_node *lathe_all_reduce(lathe_graph *g, lathe_node *x, int parts) {
    lt_attr a[LT_MAX_ATTRS] = {{.v = {parts}}};
    return make(g, LT_OP_ALL_REDUCE, 1, IN(x), a);
}
static lathe_node *loss(lathe_graph *g, lt_op op, lathe_node *x, lathe_node *y, lathe_reduction r) {
    lt_attr a[LT_MAX_ATTRS] = {{.v = {r}}, {.v = {LATHE_IGNORE_INDEX}}};
    return make(g, op, 2, IN(x, y), a);
}
lathe_node *lathe_cross_entropy(lathe_graph *g, lathe_node *x, lathe_node *y, lathe_reduction r) {
    return loss(g, LT_OP_CROSS_ENTROPY, x, y, r);
}
lathe_node *lathe_nll_loss(lathe_graph *g, lathe_node *x, lathe_node *y, lathe_reduction r) {
    return loss(g, LT_OP_NLL_LOSS, x, y, r);
}
lathe_node *lathe_cross_entropy_ex(lathe_graph *g, lathe_node *x, lathe_node *y, lathe_reduction r,
                                   int64_t ignore_index, double label_smoothing) {
    lt_attr a[LT_MAX_ATTRS] = {{.v = {r}}, {.v = {ignore_index}}, {.f = label_smoothing}};
    return make(g, LT_OP_CROSS_ENTROPY, 2, IN(x, y), a);
}
lathe_node *lathe_nll_loss_ex(lathe_graph *g, lathe_node *x, lathe_node *y, lathe_reduction r, int64_t ignore_index) {
    lt_attr a[LT_MAX_ATTRS] = {{.v = {r}}, {.v = {ignore_index}}};
    return make(g, LT_OP_NLL_LOSS, 2, IN(x, y), a);
}
lathe_node *lathe_mse_loss(lathe_graph *g, lathe_node *x, lathe_node *y, lathe_reduction r) {
    return loss(g, LT_OP_MSE_LOSS, x, y, r);
}
