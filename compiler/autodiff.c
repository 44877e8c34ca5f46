/* autodiff.c - reverse-mode automatic differentiation at compile time.
 *
 * PyTorch records a tape while it runs; Lathe writes the backward pass as IR
 * before anything runs.  The pass walks the nodes in reverse topological
 * order (creation order backwards), and for each node whose cotangent is
 * known applies its rule: one case per op in one switch, each building
 * gradient nodes with the ordinary builders and accumulating them into the
 * operands with acc().  Only nodes that require grad are visited and only
 * operands that require grad receive contributions, so frozen parameters and
 * everything that depends only on them get no gradient nodes at all.
 *
 * Because the rules are written as IR, the backward graph can be printed,
 * parsed, evaluated, simplified and differentiated again.  Ops whose
 * gradients need their own kernels (convolution, pooling, slicing) have
 * *_backward ops in the op table; the rest are compositions of primitives. */
#include <string.h>

#include "ir.h"
#include "lathe_autodiff.h"

typedef struct {
    lathe_graph *g;
    bool *rg;           /* requires_grad per node id */
    lathe_node **grad;  /* accumulated cotangent per node id */
    int n;              /* forward nodes: ids below n */
} ad;


static lathe_node *sc(ad *a, const lathe_node *like, double v) { return lathe_scalar(a->g, like->dtype, v); }

/* <math.h> defines no M_ constants in C11 */
static const double TWO_OVER_SQRT_PI = 1.1283791670955126;    /* 2/sqrt(pi) */
static const double SQRT1_2 = 0.70710678118654752440;         /* 1/sqrt(2) */
static const double INV_SQRT_2PI = 0.39894228040143267794;    /* 1/sqrt(2 pi) */
static const double SQRT_2_OVER_PI = 0.79788456080286535588;  /* sqrt(2/pi) */
static const double GELU_TANH_C = 0.044715;                   /* of gelu's tanh form */

static void acc(ad *a, int k, lathe_node *y, lathe_node *gx) {
    lathe_node *x = y->in[k];
    if (!gx || !a->rg[x->id]) return;
    a->grad[x->id] = a->grad[x->id] ? lathe_add(a->g, a->grad[x->id], gx) : gx;
}

static bool same_shape(const lathe_node *x, int rank, const int64_t *shape) {
    return x->rank == rank && memcmp(x->shape, shape, sizeof(int64_t) * (size_t)rank) == 0;
}

/* Sum gy over the dims that broadcasting added to x, giving x's shape. */
static lathe_node *unbroadcast(ad *a, lathe_node *gy, const lathe_node *x) {
    if (!gy || same_shape(gy, x->rank, x->shape)) return gy;
    int64_t axes[LATHE_MAX_RANK];
    int n = 0, lead = gy->rank - x->rank;
    for (int i = 0; i < gy->rank; i++)
        if (i < lead || (x->shape[i - lead] == 1 && gy->shape[i] != 1)) axes[n++] = i;
    lathe_node *s = n ? lathe_sum(a->g, gy, n, axes, true) : gy;
    return same_shape(s, x->rank, x->shape) ? s : lathe_reshape(a->g, s, x->rank, x->shape);
}

/* gy of a reduction over `axes` of x, broadcast back to x's shape. */
static lathe_node *expand_reduced(ad *a, lathe_node *gy, const lathe_node *x, const lt_attr *axes) {
    int64_t keep[LATHE_MAX_RANK];
    memcpy(keep, x->shape, sizeof keep);
    for (int i = 0; i < axes->n; i++) keep[axes->v[i]] = 1;
    lathe_node *r = same_shape(gy, x->rank, keep) ? gy : lathe_reshape(a->g, gy, x->rank, keep);
    return lathe_broadcast_to(a->g, r, x->rank, x->shape);
}

/* labels (N, d...) as (N, 1, d...): broadcast over the class axis 1 */
static lathe_node *class_col(ad *a, lathe_node *v) {
    int64_t s[LATHE_MAX_RANK];
    s[0] = v->shape[0], s[1] = 1;
    for (int d = 1; d < v->rank; d++) s[d + 1] = v->shape[d];
    return lathe_reshape(a->g, v, v->rank + 1, s);
}

/* one_hot(labels (N, d...), C) along axis 1 as dtype t: (N, C, d...) */
static lathe_node *one_hot(ad *a, lathe_node *labels, int64_t C, lathe_dtype t) {
    int64_t *iota = malloc((size_t)(C ? C : 1) * sizeof *iota);
    if (!iota) return lt_fail(a->g, LATHE_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < C; i++) iota[i] = i;
    int64_t s[LATHE_MAX_RANK];
    for (int d = 0; d <= labels->rank; d++) s[d] = d == 1 ? C : 1;
    lathe_node *ar = lathe_const(a->g, LATHE_I64, labels->rank + 1, s, iota);
    free(iota);
    return lathe_cast(a->g, lathe_eq(a->g, class_col(a, labels), ar), t);
}

/* The gradient of a class loss y over x (N, C, d...) at labels is
 * d * valid * scale: d per element and class, valid 0 where the label is the
 * ignore index, scale gy / (elements not ignored) for mean, gy for sum, gy
 * per element for none. */
static lathe_node *class_loss_grad(ad *a, lathe_node *y, lathe_node *gy, lathe_node *labels, lathe_node *d) {
    lathe_graph *g = a->g;
    lathe_node *valid = lathe_ne(g, labels, lathe_scalar(g, LATHE_I64, (double)y->attr[1].v[0]));
    lathe_node *vf = lathe_cast(g, valid, y->dtype), *scale = gy;
    if (y->attr[0].v[0] == LATHE_REDUCE_MEAN) scale = lathe_div(g, gy, lathe_sum(g, vf, 0, NULL, false));
    else if (y->attr[0].v[0] == LATHE_REDUCE_NONE) scale = class_col(a, gy);
    return lathe_mul(g, d, lathe_mul(g, class_col(a, vf), scale));
}

static lathe_node *mk(ad *a, lt_op op, int nin, lathe_node *const *in, const lt_attr *attrs) {
    return lt_make(a->g, op, nin, in, attrs);
}
#define IN(...) ((lathe_node *const[]){__VA_ARGS__})

static void batch_norm_rule(ad *a, lathe_node *y, lathe_node *gy) {
    lathe_graph *g = a->g;
    lathe_node *x = y->in[0], *w = y->in[1];
    int64_t C = x->shape[1];
    double eps = y->attr[2].f;
    const int64_t axes[3] = {0, 2, 3};
    if (a->rg[y->in[3]->id] || a->rg[y->in[4]->id]) {
        lt_fail(g, LATHE_ERR_UNSUPPORTED,
                "autodiff: batch_norm2d node %%%d: gradients for running_mean/running_var are not supported",
                y->id);
        return;
    }
    lathe_node *w4 = lathe_reshape(g, w, LATHE_DIMS(1, C, 1, 1));
    lathe_node *xhat, *rstd;
    if (y->attr[0].v[0]) { /* training: batch statistics */
        lathe_node *mean = lathe_mean(g, x, 3, axes, true);
        lathe_node *xc = lathe_sub(g, x, mean);
        lathe_node *var = lathe_mean(g, lathe_mul(g, xc, xc), 3, axes, true);
        rstd = lathe_rsqrt(g, lathe_add(g, var, sc(a, x, eps)));
        xhat = lathe_mul(g, xc, rstd);
        if (a->rg[x->id]) {
            /* dx = w * rstd * (dy - mean(dy) - xhat * mean(dy * xhat)) */
            lathe_node *mdy = lathe_mean(g, gy, 3, axes, true);
            lathe_node *mdyx = lathe_mean(g, lathe_mul(g, gy, xhat), 3, axes, true);
            lathe_node *inner = lathe_sub(g, lathe_sub(g, gy, mdy), lathe_mul(g, xhat, mdyx));
            acc(a, 0, y, lathe_mul(g, lathe_mul(g, w4, rstd), inner));
        }
    } else { /* eval: running statistics are constants */
        lathe_node *rm4 = lathe_reshape(g, y->in[3], LATHE_DIMS(1, C, 1, 1));
        lathe_node *rv4 = lathe_reshape(g, y->in[4], LATHE_DIMS(1, C, 1, 1));
        rstd = lathe_rsqrt(g, lathe_add(g, rv4, sc(a, x, eps)));
        xhat = lathe_mul(g, lathe_sub(g, x, rm4), rstd);
        if (a->rg[x->id]) acc(a, 0, y, lathe_mul(g, gy, lathe_mul(g, w4, rstd)));
    }
    if (a->rg[w->id]) acc(a, 1, y, lathe_sum(g, lathe_mul(g, gy, xhat), 3, axes, false));
    if (a->rg[y->in[2]->id]) acc(a, 2, y, lathe_sum(g, gy, 3, axes, false));
}

/* d gelu(x) / dx.  Exact: Phi(x) + x phi(x) = 0.5 (1 + erf(x/sqrt 2)) +
 * x exp(-x^2/2)/sqrt(2 pi).  Tanh form, as PyTorch's: with k = sqrt(2/pi),
 * t = tanh(k (x + c x^3)), 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3c x^2). */
static lathe_node *gelu_grad(ad *a, lathe_node *x, bool approximate) {
    lathe_graph *g = a->g;
    lathe_node *half = sc(a, x, 0.5), *one = sc(a, x, 1), *x2 = lathe_mul(g, x, x);
    if (!approximate) {
        lathe_node *cdf = lathe_mul(g, half, lathe_add(g, one, lathe_erf(g, lathe_mul(g, x, sc(a, x, SQRT1_2)))));
        lathe_node *pdf = lathe_mul(g, sc(a, x, INV_SQRT_2PI), lathe_exp(g, lathe_mul(g, x2, sc(a, x, -0.5))));
        return lathe_add(g, cdf, lathe_mul(g, x, pdf));
    }
    lathe_node *inner = lathe_mul(g, sc(a, x, SQRT_2_OVER_PI), lathe_add(g, x, lathe_mul(g, sc(a, x, GELU_TANH_C), lathe_mul(g, x2, x))));
    lathe_node *t = lathe_tanh(g, inner);
    lathe_node *left = lathe_mul(g, half, lathe_add(g, one, t));
    lathe_node *dinner = lathe_mul(g, sc(a, x, SQRT_2_OVER_PI), lathe_add(g, one, lathe_mul(g, sc(a, x, 3 * GELU_TANH_C), x2)));
    lathe_node *right = lathe_mul(g, lathe_mul(g, lathe_mul(g, half, x), lathe_sub(g, one, lathe_mul(g, t, t))), dinner);
    return lathe_add(g, left, right);
}

/* y = xhat * w + b over the last k dims of x (normalized_shape), xhat =
 * (x - mean) * rstd per row; w and b are optional operands 1 and 2. */
static void layer_norm_rule(ad *a, lathe_node *y, lathe_node *gy) {
    lathe_graph *g = a->g;
    lathe_node *x = y->in[0], *w = y->nin > 1 ? y->in[1] : NULL;
    int k = y->attr[0].n, lead = x->rank - k;
    int64_t axes[LATHE_MAX_RANK], lead_axes[LATHE_MAX_RANK];
    for (int i = 0; i < k; i++) axes[i] = lead + i;
    for (int i = 0; i < lead; i++) lead_axes[i] = i;
    lathe_node *mean = lathe_mean(g, x, k, axes, true);
    lathe_node *xc = lathe_sub(g, x, mean);
    lathe_node *var = lathe_mean(g, lathe_mul(g, xc, xc), k, axes, true);
    lathe_node *rstd = lathe_rsqrt(g, lathe_add(g, var, sc(a, x, y->attr[1].f)));
    lathe_node *xhat = lathe_mul(g, xc, rstd);
    if (a->rg[x->id]) {
        /* dx = rstd * (d - mean(d) - xhat * mean(d * xhat)), d = dy * w */
        lathe_node *d = w ? lathe_mul(g, gy, w) : gy;
        lathe_node *md = lathe_mean(g, d, k, axes, true);
        lathe_node *mdx = lathe_mean(g, lathe_mul(g, d, xhat), k, axes, true);
        acc(a, 0, y, lathe_mul(g, rstd, lathe_sub(g, lathe_sub(g, d, md), lathe_mul(g, xhat, mdx))));
    }
    /* weight and bias: summed over the leading dims (none: the rows are one) */
    if (w && a->rg[w->id]) {
        lathe_node *p = lathe_mul(g, gy, xhat);
        acc(a, 1, y, lead ? lathe_sum(g, p, lead, lead_axes, false) : p);
    }
    if (y->nin > 2 && a->rg[y->in[2]->id]) acc(a, 2, y, lead ? lathe_sum(g, gy, lead, lead_axes, false) : gy);
}

/* Apply y's rule to its cotangent gy. */
static void rule(ad *a, lathe_node *y, lathe_node *gy) {
    lathe_graph *g = a->g;
    lathe_node *x = y->nin > 0 ? y->in[0] : NULL, *b = y->nin > 1 ? y->in[1] : NULL;
    bool rx = x && a->rg[x->id], rb = b && a->rg[b->id];
    switch (y->op) {
    case LT_OP_ADD:
        if (rx) acc(a, 0, y, unbroadcast(a, gy, x));
        if (rb) acc(a, 1, y, unbroadcast(a, gy, b));
        break;
    case LT_OP_SUB:
        if (rx) acc(a, 0, y, unbroadcast(a, gy, x));
        if (rb) acc(a, 1, y, unbroadcast(a, lathe_neg(g, gy), b));
        break;
    case LT_OP_MUL:
        if (rx) acc(a, 0, y, unbroadcast(a, lathe_mul(g, gy, b), x));
        if (rb) acc(a, 1, y, unbroadcast(a, lathe_mul(g, gy, x), b));
        break;
    case LT_OP_DIV:
        if (rx) acc(a, 0, y, unbroadcast(a, lathe_div(g, gy, b), x));
        if (rb) /* -gy * a / (b * b) */
            acc(a, 1, y, unbroadcast(a, lathe_div(g, lathe_mul(g, lathe_neg(g, gy), x), lathe_mul(g, b, b)), b));
        break;
    case LT_OP_POW:
        if (rx) /* gy * b * a^(b-1) */
            acc(a, 0, y, unbroadcast(a, lathe_mul(g, lathe_mul(g, gy, b), lathe_pow(g, x, lathe_sub(g, b, sc(a, b, 1)))), x));
        if (rb) { /* gy * y * log(a), 0 where a == 0 and b >= 0 (PyTorch) */
            lathe_node *t = lathe_mul(g, gy, lathe_mul(g, y, lathe_log(g, x)));
            lathe_node *masked = lathe_where(g, lathe_eq(g, x, sc(a, y, 0)),
                                             lathe_where(g, lathe_ge(g, b, sc(a, y, 0)), sc(a, y, 0), t), t);
            acc(a, 1, y, unbroadcast(a, masked, b));
        }
        break;
    case LT_OP_MAXIMUM:
    case LT_OP_MINIMUM: {
        /* ties split the gradient evenly, as PyTorch */
        lathe_node *half = lathe_where(g, lathe_eq(g, x, b), lathe_mul(g, gy, sc(a, y, 0.5)), gy);
        bool mx = y->op == LT_OP_MAXIMUM;
        if (rx) acc(a, 0, y, unbroadcast(a, lathe_where(g, mx ? lathe_lt(g, x, b) : lathe_gt(g, x, b), sc(a, y, 0), half), x));
        if (rb) acc(a, 1, y, unbroadcast(a, lathe_where(g, mx ? lathe_gt(g, x, b) : lathe_lt(g, x, b), sc(a, y, 0), half), b));
        break;
    }
    case LT_OP_WHERE: {
        lathe_node *c = y->in[0];
        if (a->rg[y->in[1]->id]) acc(a, 1, y, unbroadcast(a, lathe_where(g, c, gy, sc(a, y, 0)), y->in[1]));
        if (a->rg[y->in[2]->id]) acc(a, 2, y, unbroadcast(a, lathe_where(g, c, sc(a, y, 0), gy), y->in[2]));
        break;
    }
    case LT_OP_NEG: acc(a, 0, y, lathe_neg(g, gy)); break;
    case LT_OP_EXP: acc(a, 0, y, lathe_mul(g, gy, y)); break;
    case LT_OP_LOG: acc(a, 0, y, lathe_div(g, gy, x)); break;
    case LT_OP_SQRT: acc(a, 0, y, lathe_div(g, gy, lathe_mul(g, sc(a, y, 2), y))); break;
    case LT_OP_RSQRT: /* -0.5 * gy * y^3 */
        acc(a, 0, y, lathe_mul(g, lathe_mul(g, gy, sc(a, y, -0.5)), lathe_mul(g, y, lathe_mul(g, y, y))));
        break;
    case LT_OP_ABS: { /* gy * sign(x) */
        lathe_node *sign = lathe_where(g, lathe_gt(g, x, sc(a, y, 0)), sc(a, y, 1),
                                       lathe_where(g, lathe_lt(g, x, sc(a, y, 0)), sc(a, y, -1), sc(a, y, 0)));
        acc(a, 0, y, lathe_mul(g, gy, sign));
        break;
    }
    case LT_OP_RELU: acc(a, 0, y, lathe_where(g, lathe_gt(g, y, sc(a, y, 0)), gy, sc(a, y, 0))); break;
    case LT_OP_SIGMOID: acc(a, 0, y, lathe_mul(g, gy, lathe_mul(g, y, lathe_sub(g, sc(a, y, 1), y)))); break;
    case LT_OP_TANH: acc(a, 0, y, lathe_mul(g, gy, lathe_sub(g, sc(a, y, 1), lathe_mul(g, y, y)))); break;
    case LT_OP_ERF: /* gy * 2/sqrt(pi) * exp(-x^2) */
        acc(a, 0, y, lathe_mul(g, gy, lathe_mul(g, sc(a, y, TWO_OVER_SQRT_PI), lathe_exp(g, lathe_neg(g, lathe_mul(g, x, x))))));
        break;
    case LT_OP_GELU: acc(a, 0, y, lathe_mul(g, gy, gelu_grad(a, x, y->attr[0].v[0]))); break;
    case LT_OP_SILU: { /* s (1 + x (1 - s)) with s = sigmoid(x), as PyTorch */
        lathe_node *s = lathe_sigmoid(g, x);
        acc(a, 0, y, lathe_mul(g, gy, lathe_mul(g, s, lathe_add(g, sc(a, y, 1), lathe_mul(g, x, lathe_sub(g, sc(a, y, 1), s))))));
        break;
    }
    case LT_OP_SOFTPLUS: { /* gy where beta x > threshold, else gy sigmoid(beta x) */
        lathe_node *z = lathe_mul(g, x, sc(a, y, y->attr[0].f));
        acc(a, 0, y, lathe_where(g, lathe_gt(g, z, sc(a, y, y->attr[1].f)), gy, lathe_mul(g, gy, lathe_sigmoid(g, z))));
        break;
    }
    case LT_OP_LEAKY_RELU: /* gy for x > 0, else negative_slope gy (at 0 too, as PyTorch) */
        acc(a, 0, y, lathe_where(g, lathe_gt(g, x, sc(a, y, 0)), gy, lathe_mul(g, gy, sc(a, y, y->attr[0].f))));
        break;
    case LT_OP_CLAMP: { /* gy where min <= x <= max, else 0 (NaN too), as PyTorch */
        lathe_node *zero = sc(a, y, 0);
        lathe_node *in = lathe_where(g, lathe_le(g, x, sc(a, y, y->attr[1].f)), gy, zero);
        acc(a, 0, y, lathe_where(g, lathe_ge(g, x, sc(a, y, y->attr[0].f)), in, zero));
        break;
    }
    case LT_OP_POW_SCALAR: {
        double e = y->attr[0].f;
        if (e == 0) acc(a, 0, y, lathe_broadcast_to(g, sc(a, y, 0), x->rank, x->shape));
        else acc(a, 0, y, lathe_mul(g, lathe_mul(g, gy, sc(a, y, e)), lathe_pow_scalar(g, x, e - 1)));
        break;
    }
    case LT_OP_CAST: acc(a, 0, y, lathe_cast(g, gy, x->dtype)); break;
    case LT_OP_SUM: acc(a, 0, y, expand_reduced(a, gy, x, &y->attr[0])); break;
    case LT_OP_MEAN: {
        int64_t count = 1;
        for (int i = 0; i < y->attr[0].n; i++) count *= x->shape[y->attr[0].v[i]];
        acc(a, 0, y, expand_reduced(a, lathe_div(g, gy, sc(a, y, (double)count)), x, &y->attr[0]));
        break;
    }
    case LT_OP_MAX:
    case LT_OP_MIN: { /* spread evenly over the maxima (minima), as torch.amax (amin) */
        lathe_node *mask = lathe_eq(g, x, expand_reduced(a, y, x, &y->attr[0]));
        lathe_node *cnt = lathe_sum(g, lathe_cast(g, mask, y->dtype), y->attr[0].n, y->attr[0].v, true);
        int64_t keep[LATHE_MAX_RANK];
        memcpy(keep, cnt->shape, sizeof keep);
        lathe_node *gk = same_shape(gy, cnt->rank, keep) ? gy : lathe_reshape(g, gy, cnt->rank, keep);
        acc(a, 0, y, lathe_where(g, mask, lathe_div(g, gk, cnt), sc(a, y, 0)));
        break;
    }
    case LT_OP_RESHAPE:
    case LT_OP_FLATTEN: acc(a, 0, y, lathe_reshape(g, gy, x->rank, x->shape)); break;
    case LT_OP_PERMUTE: {
        int64_t inv[LATHE_MAX_RANK];
        for (int i = 0; i < x->rank; i++) inv[y->attr[0].v[i]] = i;
        acc(a, 0, y, lathe_permute(g, gy, x->rank, inv));
        break;
    }
    case LT_OP_BROADCAST_TO: acc(a, 0, y, unbroadcast(a, gy, x)); break;
    case LT_OP_CONCAT: {
        int64_t ax = y->attr[0].v[0], off = 0;
        for (int k = 0; k < y->nin; k++) {
            int64_t len = y->in[k]->shape[ax];
            if (a->rg[y->in[k]->id]) acc(a, k, y, lathe_slice(g, gy, ax, off, off + len, 1));
            off += len;
        }
        break;
    }
    case LT_OP_SLICE: {
        lt_attr at[LT_MAX_ATTRS] = {y->attr[0], y->attr[1], y->attr[2], y->attr[3], {.v = {x->shape[y->attr[0].v[0]]}}};
        acc(a, 0, y, mk(a, LT_OP_SLICE_BACKWARD, 1, IN(gy), at));
        break;
    }
    case LT_OP_INDEX_SELECT: { /* each row of gy back where it came from, added */
        lt_attr at[LT_MAX_ATTRS] = {y->attr[0], {.v = {x->shape[y->attr[0].v[0]]}}};
        acc(a, 0, y, mk(a, LT_OP_INDEX_SELECT_BACKWARD, 2, IN(gy, b), at));
        break;
    }
    case LT_OP_ALL_GATHER: /* one process gathers its own value; more gather what is already differentiated */
        if (y->attr[1].v[0] == 1) acc(a, 0, y, gy);
        else
            lt_fail(g, LATHE_ERR_UNSUPPORTED,
                    "autodiff: all_gather node %%%d over %lld processes has no gradient: data-parallel programs gather "
                    "after differentiation",
                    y->id, (long long)y->attr[1].v[0]);
        break;
    case LT_OP_MATMUL:
        if (rx) acc(a, 0, y, unbroadcast(a, lathe_matmul(g, gy, lathe_transpose(g, b, -1, -2)), x));
        if (rb) acc(a, 1, y, unbroadcast(a, lathe_matmul(g, lathe_transpose(g, x, -1, -2), gy), b));
        break;
    case LT_OP_LINEAR: {
        int64_t out = b->shape[0], inf = b->shape[1], m = 1;
        for (int d = 0; d + 1 < x->rank; d++) m *= x->shape[d]; /* not numel / inf: inf may be 0 */
        lathe_node *gy2 = lathe_reshape(g, gy, LATHE_DIMS(m, out));
        if (rx) acc(a, 0, y, lathe_reshape(g, lathe_matmul(g, gy2, b), x->rank, x->shape));
        if (rb) acc(a, 1, y, lathe_matmul(g, lathe_transpose(g, gy2, 0, 1), lathe_reshape(g, x, LATHE_DIMS(m, inf))));
        if (y->nin == 3 && a->rg[y->in[2]->id]) acc(a, 2, y, lathe_sum(g, gy2, LATHE_AXES(0), false));
        break;
    }
    case LT_OP_CONV2D: {
        lt_attr at[LT_MAX_ATTRS] = {y->attr[0], y->attr[1], y->attr[2], y->attr[3]};
        if (rx) {
            at[4] = (lt_attr){.n = 2, .v = {x->shape[2], x->shape[3]}};
            acc(a, 0, y, mk(a, LT_OP_CONV2D_BACKWARD_INPUT, 2, IN(gy, b), at));
        }
        if (rb) {
            at[4] = (lt_attr){.n = 2, .v = {b->shape[2], b->shape[3]}};
            acc(a, 1, y, mk(a, LT_OP_CONV2D_BACKWARD_WEIGHT, 2, IN(x, gy), at));
        }
        if (y->nin == 3 && a->rg[y->in[2]->id]) acc(a, 2, y, lathe_sum(g, gy, LATHE_AXES(0, 2, 3), false));
        break;
    }
    case LT_OP_MAX_POOL2D:
        acc(a, 0, y, mk(a, LT_OP_MAX_POOL2D_BACKWARD, 2, IN(gy, x), y->attr));
        break;
    case LT_OP_AVG_POOL2D: {
        lt_attr at[LT_MAX_ATTRS] = {y->attr[0], y->attr[1], y->attr[2], y->attr[3], {.n = 2, .v = {x->shape[2], x->shape[3]}}};
        acc(a, 0, y, mk(a, LT_OP_AVG_POOL2D_BACKWARD, 1, IN(gy), at));
        break;
    }
    case LT_OP_ADAPTIVE_AVG_POOL2D: {
        lt_attr at[LT_MAX_ATTRS] = {{.n = 2, .v = {x->shape[2], x->shape[3]}}};
        acc(a, 0, y, mk(a, LT_OP_ADAPTIVE_AVG_POOL2D_BACKWARD, 1, IN(gy), at));
        break;
    }
    case LT_OP_BATCH_NORM2D: batch_norm_rule(a, y, gy); break;
    case LT_OP_LAYER_NORM: layer_norm_rule(a, y, gy); break;
    case LT_OP_SOFTMAX: { /* y * (gy - sum(gy * y)) */
        int64_t ax = y->attr[0].v[0];
        lathe_node *s = lathe_sum(g, lathe_mul(g, gy, y), 1, &ax, true);
        acc(a, 0, y, lathe_mul(g, y, lathe_sub(g, gy, s)));
        break;
    }
    case LT_OP_LOG_SOFTMAX: { /* gy - exp(y) * sum(gy) */
        int64_t ax = y->attr[0].v[0];
        acc(a, 0, y, lathe_sub(g, gy, lathe_mul(g, lathe_exp(g, y), lathe_sum(g, gy, 1, &ax, true))));
        break;
    }
    case LT_OP_CROSS_ENTROPY: { /* softmax(x) - ((1 - eps) onehot + eps / C) */
        int64_t C = x->shape[1];
        double eps = y->attr[2].f;
        lathe_node *target = one_hot(a, b, C, x->dtype);
        if (eps != 0) target = lathe_add(g, lathe_mul(g, target, sc(a, y, 1 - eps)), sc(a, y, eps / (double)C));
        acc(a, 0, y, class_loss_grad(a, y, gy, b, lathe_sub(g, lathe_softmax(g, x, 1), target)));
        break;
    }
    case LT_OP_NLL_LOSS: /* -onehot */
        acc(a, 0, y, class_loss_grad(a, y, gy, b, lathe_neg(g, one_hot(a, b, x->shape[1], x->dtype))));
        break;
    case LT_OP_DROPOUT: /* the same mask (the same state, salt and indices), drawn again */
        acc(a, 0, y, y->nin == 3 ? mk(a, LT_OP_DROPOUT, 3, IN(gy, b, y->in[2]), y->attr) : mk(a, LT_OP_DROPOUT, 2, IN(gy, b), y->attr));
        break;
    case LT_OP_ALL_REDUCE: /* every process's sum reads every x: each x gets the sum of the cotangents */
        acc(a, 0, y, lathe_all_reduce(g, gy, (int)y->attr[0].v[0]));
        break;
    case LT_OP_MSE_LOSS: { /* 2 (a - b) * scale */
        lathe_node *s = y->attr[0].v[0] == LATHE_REDUCE_MEAN ? lathe_div(g, gy, sc(a, y, (double)x->numel)) : gy;
        lathe_node *d = lathe_mul(g, lathe_mul(g, sc(a, y, 2), lathe_sub(g, x, b)), s);
        if (rx) acc(a, 0, y, d);
        if (rb) acc(a, 1, y, lathe_neg(g, d));
        break;
    }
    /* Gradient kernels are linear in the cotangent they carry; their
     * adjoints are the forward ops, which gives second order through them. */
    case LT_OP_SLICE_BACKWARD:
        acc(a, 0, y, lathe_slice(g, gy, y->attr[0].v[0], y->attr[1].v[0], y->attr[2].v[0], y->attr[3].v[0]));
        break;
    case LT_OP_INDEX_SELECT_BACKWARD: /* linear in gy; the index carries no gradient */
        acc(a, 0, y, lathe_index_select(g, gy, y->attr[0].v[0], b));
        break;
    case LT_OP_CONV2D_BACKWARD_INPUT: { /* dx = conv^T(dy, w) */
        lt_attr at[LT_MAX_ATTRS] = {y->attr[0], y->attr[1], y->attr[2], y->attr[3]};
        if (rx) acc(a, 0, y, mk(a, LT_OP_CONV2D, 2, IN(gy, b), at));
        if (rb) {
            at[4] = (lt_attr){.n = 2, .v = {b->shape[2], b->shape[3]}};
            acc(a, 1, y, mk(a, LT_OP_CONV2D_BACKWARD_WEIGHT, 2, IN(gy, x), at));
        }
        break;
    }
    case LT_OP_CONV2D_BACKWARD_WEIGHT: { /* dw from x and dy */
        lt_attr at[LT_MAX_ATTRS] = {y->attr[0], y->attr[1], y->attr[2], y->attr[3]};
        if (rb) acc(a, 1, y, mk(a, LT_OP_CONV2D, 2, IN(x, gy), at));
        if (rx) {
            at[4] = (lt_attr){.n = 2, .v = {x->shape[2], x->shape[3]}};
            acc(a, 0, y, mk(a, LT_OP_CONV2D_BACKWARD_INPUT, 2, IN(b, gy), at));
        }
        break;
    }
    case LT_OP_AVG_POOL2D_BACKWARD: {
        lt_attr at[LT_MAX_ATTRS] = {y->attr[0], y->attr[1], y->attr[2], y->attr[3]};
        acc(a, 0, y, mk(a, LT_OP_AVG_POOL2D, 1, IN(gy), at));
        break;
    }
    case LT_OP_ADAPTIVE_AVG_POOL2D_BACKWARD:
        acc(a, 0, y, lathe_adaptive_avg_pool2d(g, gy, x->shape[2], x->shape[3]));
        break;
    default:
        lt_fail(g, LATHE_ERR_UNSUPPORTED, "autodiff: no gradient rule for op '%s' (node %%%d)",
                lt_ops[y->op].name, y->id);
    }
}

/* An error while differentiating y, which a parser placed: said again at
 * y's place in the user's file, as the error of the line the user wrote. */
static void locate(lathe_graph *g, const lathe_node *y) {
    char msg[sizeof g->err];
    lathe_status st = lt_take_error(g, msg);
    if (g->source)
        lt_fail(g, st, "%s:%d:%d: in the gradient of %s: %s", g->source, y->line, y->col, lt_ops[y->op].name, msg);
    else
        lt_fail(g, st, "line %d, column %d: in the gradient of %s: %s", y->line, y->col, lt_ops[y->op].name, msg);
}

lathe_status lathe_gradients(lathe_graph *g, int nout, lathe_node *const *outs,
                             lathe_node *const *cots, int nwrt, lathe_node *const *wrt,
                             lathe_node **grads) {
    if (g->status != LATHE_OK) return g->status;
    for (int j = 0; j < nwrt; j++) grads[j] = NULL;
    ad a = {g, NULL, NULL, g->nnodes};
    a.rg = malloc((size_t)(a.n ? a.n : 1) * sizeof *a.rg);
    a.grad = calloc((size_t)(a.n ? a.n : 1), sizeof *a.grad);
    if (!a.rg || !a.grad) {
        free(a.rg);
        free(a.grad);
        return lt_fail(g, LATHE_ERR_NOMEM, "out of memory"), LATHE_ERR_NOMEM;
    }
    lt_requires_grad_all(g, a.rg);
    bool any = false;
    for (int i = 0; i < nout && g->status == LATHE_OK; i++) {
        lathe_node *y = outs[i], *c = cots ? cots[i] : NULL;
        char ts[160];
        if (!y || y->g != g) {
            lt_fail(g, LATHE_ERR_ARG, "backward: output %d is NULL or not in this graph", i);
            break;
        }
        lathe_node_type_str(y, ts, sizeof ts);
        if (!a.rg[y->id]) {
            char where[300] = "";
            if (y->line > 0) snprintf(where, sizeof where, "%s%s%d:%d: ", g->source ? g->source : "line ", g->source ? ":" : "",
                                      y->line, y->col);
            lt_fail(g, LATHE_ERR_ARG,
                    "%sbackward: output %d (node %%%d, %s %s) does not require grad: nothing it is computed from is a "
                    "trainable parameter or an input marked requires_grad", where, i, y->id, lt_ops[y->op].name, ts);
            break;
        }
        if (!c) {
            if (y->numel != 1) {
                lt_fail(g, LATHE_ERR_SHAPE,
                        "backward: a cotangent can be implied only for outputs with one element; output %d is %s",
                        i, ts);
                break;
            }
            c = lathe_broadcast_to(g, lathe_scalar(g, y->dtype, 1), y->rank, y->shape);
        } else {
            char cs[160];
            lathe_node_type_str(c, cs, sizeof cs);
            if (c->g != g || strcmp(cs, ts) != 0) {
                lt_fail(g, LATHE_ERR_SHAPE, "backward: cotangent %s does not match output %d, %s", cs, i, ts);
                break;
            }
        }
        a.grad[y->id] = a.grad[y->id] ? lathe_add(g, a.grad[y->id], c) : c;
        any = true;
    }
    for (int i = a.n - 1; i >= 0 && any && g->status == LATHE_OK; i--) {
        lathe_node *y = g->nodes[i];
        if (!a.grad[i] || !a.rg[i] || lt_ops[y->op].kind == LT_LEAF) continue;
        rule(&a, y, a.grad[i]);
        if (g->status != LATHE_OK && y->line > 0) locate(g, y);
    }
    if (g->status == LATHE_OK)
        for (int j = 0; j < nwrt; j++)
            if (wrt[j] && wrt[j]->g == g && wrt[j]->id < a.n) grads[j] = a.grad[wrt[j]->id];
    free(a.rg);
    free(a.grad);
    if (g->status == LATHE_OK) lathe_graph_verify(g);
    return g->status;
}

lathe_status lathe_backward(lathe_graph *g, int nout, lathe_node *const *outs, lathe_node *const *cots) {
    if (g->status != LATHE_OK) return g->status;
    int n = g->nnodes, k = 0;
    lathe_node **wrt = malloc((size_t)(n ? n : 1) * sizeof *wrt);
    lathe_node **grads = malloc((size_t)(n ? n : 1) * sizeof *grads);
    if (!wrt || !grads) {
        free(wrt);
        free(grads);
        return lt_fail(g, LATHE_ERR_NOMEM, "out of memory"), LATHE_ERR_NOMEM;
    }
    for (int i = 0; i < n; i++) {
        lathe_node *x = g->nodes[i];
        if ((x->op == LT_OP_INPUT || x->op == LT_OP_PARAM) && x->requires_grad) wrt[k++] = x;
    }
    if (lathe_gradients(g, nout, outs, cots, k, wrt, grads) == LATHE_OK) {
        for (int j = 0; j < k && g->status == LATHE_OK; j++) {
            if (!grads[j]) continue;
            size_t len = strlen(LATHE_GRAD_PREFIX) + strlen(wrt[j]->name) + 1;
            char *name = malloc(len);
            if (!name) {
                lt_fail(g, LATHE_ERR_NOMEM, "out of memory");
                break;
            }
            snprintf(name, len, "%s%s", LATHE_GRAD_PREFIX, wrt[j]->name);
            lathe_output(g, name, grads[j]);
            free(name);
        }
    }
    free(wrt);
    free(grads);
    return g->status;
}

lathe_status lathe_backward_marked(lathe_graph *g) {
    if (g->status != LATHE_OK) return g->status;
    if (g->nmarks == 0)
        return lt_fail(g, LATHE_ERR_ARG, "backward: nothing is marked for differentiation (a description marks its 'loss' statement "
                             "or a 'backward VALUE' statement; text IR a line 'backward %%VALUE')"),
               LATHE_ERR_ARG;
    int n = g->nmarks;
    lathe_node **outs = malloc((size_t)n * sizeof *outs), **cots = malloc((size_t)n * sizeof *cots);
    if (!outs || !cots) {
        free(outs);
        free(cots);
        return lt_fail(g, LATHE_ERR_NOMEM, "out of memory"), LATHE_ERR_NOMEM;
    }
    for (int i = 0; i < n; i++) outs[i] = g->marks[i].out, cots[i] = g->marks[i].cot;
    lathe_status st = lathe_backward(g, n, outs, cots);
    if (st == LATHE_OK) lathe_graph_clear_marks(g);
    free(outs);
    free(cots);
    return st;
}

int lathe_grad_output(const lathe_graph *g, const lathe_node *leaf) {
    if (!leaf || !leaf->name) return -1;
    size_t plen = strlen(LATHE_GRAD_PREFIX);
    for (int i = 0; i < g->nout; i++) {
        const char *nm = g->outputs[i].name;
        if (strncmp(nm, LATHE_GRAD_PREFIX, plen) == 0 && strcmp(nm + plen, leaf->name) == 0) return i;
    }
    return -1;
}

lathe_node *lathe_grad(const lathe_graph *g, const lathe_node *leaf) {
    int i = lathe_grad_output(g, leaf);
    return i >= 0 ? g->outputs[i].node : NULL;
}
