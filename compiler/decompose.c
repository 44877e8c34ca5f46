/* decompose.c - composite ops into primitives, before fusion.
 *
 * The kernel builder (fuse.c) knows elementwise ops, index ops, reductions
 * and the contractions and windows (matmul, conv2d, pools and their
 * gradients).  Everything else is rewritten here into those, the way a
 * person would: mean is a sum over a count, linear a matmul with the
 * transposed weight, softmax a max, an exp, a sum and a division, cross
 * entropy a log-softmax and a masked sum, batch norm and layer norm their
 * statistics and an affine map, an all-reduce an all-gather and a sum in
 * rank order.  The fuser then puts the pieces back into few kernels. */
#include <stdlib.h>
#include <string.h>

#include "ir.h"
#include "lathe_autodiff.h"

static lathe_node *sc(lathe_graph *g, lathe_dtype t, double v) { return lathe_scalar(g, t, v); }

static lathe_node *keep_axis(lathe_graph *g, lt_op op, lathe_node *x, int64_t axis) {
    return op == LT_OP_SUM ? lathe_sum(g, x, 1, &axis, true) : lathe_max(g, x, 1, &axis, true);
}

static lathe_node *log_softmax(lathe_graph *g, lathe_node *x, int64_t axis) {
    lathe_node *z = lathe_sub(g, x, keep_axis(g, LT_OP_MAX, x, axis));
    return lathe_sub(g, z, lathe_log(g, keep_axis(g, LT_OP_SUM, lathe_exp(g, z), axis)));
}

/* The loss of log-probabilities lp (N, C, d...) at labels (N, d...), as
 * ir/eval.c's class_loss: the class axis moved last, one row per element,
 * -lp at the label (with smoothing eps: (1 - eps) of it plus eps/C times
 * -sum(lp)), 0 where the label is ignore; mean divides by the elements not
 * ignored. */
static lathe_node *nll(lathe_graph *g, lathe_node *lp, lathe_node *labels, int64_t red, int64_t ignore, double eps) {
    int64_t C = lp->shape[1], M = labels->numel;
    lathe_dtype t = lp->dtype;
    if (lp->rank > 2) {
        int64_t perm[LATHE_MAX_RANK];
        perm[0] = 0;
        for (int d = 2; d < lp->rank; d++) perm[d - 1] = d;
        perm[lp->rank - 1] = 1;
        lp = lathe_permute(g, lp, lp->rank, perm);
    }
    lp = lathe_reshape(g, lp, LATHE_DIMS(M, C));
    int64_t *iota = malloc((size_t)(C ? C : 1) * sizeof *iota);
    if (!iota) return lt_fail(g, LATHE_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < C; i++) iota[i] = i;
    lathe_node *ar = lathe_const(g, LATHE_I64, LATHE_DIMS(1, C), iota);
    free(iota);
    lathe_node *flat = lathe_reshape(g, labels, LATHE_DIMS(M));
    lathe_node *hit = lathe_eq(g, lathe_reshape(g, labels, LATHE_DIMS(M, 1)), ar);
    lathe_node *per = lathe_neg(g, lathe_sum(g, lathe_where(g, hit, lp, sc(g, t, 0)), LATHE_AXES(1), false));
    if (eps != 0)
        per = lathe_add(g, lathe_mul(g, per, sc(g, t, 1 - eps)),
                        lathe_mul(g, lathe_neg(g, lathe_sum(g, lp, LATHE_AXES(1), false)), sc(g, t, eps / (double)C)));
    lathe_node *valid = lathe_ne(g, flat, lathe_scalar(g, LATHE_I64, (double)ignore));
    per = lathe_where(g, valid, per, sc(g, t, 0));
    if (red == LATHE_REDUCE_NONE) return lathe_reshape(g, per, labels->rank, labels->shape);
    lathe_node *s = lathe_sum(g, per, 0, NULL, false);
    if (red == LATHE_REDUCE_SUM) return s;
    return lathe_div(g, s, lathe_sum(g, lathe_cast(g, valid, t), 0, NULL, false));
}

/* Output planes of at most 16 elements (4x4) leave a weight-gradient
 * plane kernel little work per tap: their weight gradients go through
 * im2col and a matmul (measured on ResNet-18: 8x8 planes and larger are
 * faster as plane kernels). */
enum { LT_SMALL_PLANE = 17 };

/* x placed at start, start + step, ... along axis of zeros of that size
 * (slice_backward: the adjoint of a slice). */
static lathe_node *slice_back(lathe_graph *g, lathe_node *x, int64_t axis, int64_t start, int64_t step, int64_t size) {
    int64_t end = start + (x->shape[axis] - 1) * step + 1;
    lt_attr at[LT_MAX_ATTRS] = {{.v = {axis}}, {.v = {start}}, {.v = {end}}, {.v = {step}}, {.v = {size}}};
    return lt_make(g, LT_OP_SLICE_BACKWARD, 1, &x, at);
}

/* im2col: x (N, C, H, W) to (N*P*Q, C*R*S), element (n*P*Q + p*Q + q, (c*R +
 * r)*S + s) the input under tap (r, s) of output (p, q): x zero-padded at
 * (p*st0 + r*dil0, q*st1 + s*dil1). */
static lathe_node *im2col(lathe_graph *g, lathe_node *x, const int64_t *k, const int64_t *st, const int64_t *pad,
                          const int64_t *dil, int64_t P, int64_t Q) {
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3], R = k[0], S = k[1];
    lathe_node *xp = x;
    if (pad[0]) xp = slice_back(g, xp, 2, pad[0], 1, H + 2 * pad[0]);
    if (pad[1]) xp = slice_back(g, xp, 3, pad[1], 1, W + 2 * pad[1]);
    lathe_node **taps = malloc((size_t)(R * S) * sizeof *taps);
    if (!taps) return lt_fail(g, LATHE_ERR_NOMEM, "out of memory");
    const int64_t perm[4] = {0, 2, 3, 1};
    for (int64_t r = 0; r < R; r++)
        for (int64_t s = 0; s < S; s++) {
            lathe_node *t = lathe_slice(g, xp, 2, r * dil[0], r * dil[0] + (P - 1) * st[0] + 1, st[0]);
            t = lathe_slice(g, t, 3, s * dil[1], s * dil[1] + (Q - 1) * st[1] + 1, st[1]);
            taps[r * S + s] = lathe_reshape(g, lathe_permute(g, t, 4, perm), LATHE_DIMS(N, P, Q, C, 1));
        }
    lathe_node *col = lathe_concat(g, (int)(R * S), taps, 4);
    free(taps);
    return lathe_reshape(g, col, LATHE_DIMS(N * P * Q, C * R * S));
}

/* col2im, im2col's adjoint: dcol (N*P*Q, C*R*S) to dx (N, C, H, W), each
 * element of dx the sum of the entries that read it. */
static lathe_node *col2im(lathe_graph *g, lathe_node *dcol, const int64_t *xs, const int64_t *k, const int64_t *st,
                          const int64_t *pad, const int64_t *dil, int64_t P, int64_t Q) {
    int64_t N = xs[0], C = xs[1], H = xs[2], W = xs[3], R = k[0], S = k[1];
    int64_t Hp = H + 2 * pad[0], Wp = W + 2 * pad[1];
    lathe_node *d = lathe_reshape(g, dcol, LATHE_DIMS(N, P, Q, C, R * S)), *sum = NULL;
    const int64_t perm[4] = {0, 3, 1, 2};
    for (int64_t r = 0; r < R; r++)
        for (int64_t s = 0; s < S; s++) {
            lathe_node *t = lathe_reshape(g, lathe_slice(g, d, 4, r * S + s, r * S + s + 1, 1), LATHE_DIMS(N, P, Q, C));
            t = lathe_permute(g, t, 4, perm); /* (N, C, P, Q) */
            t = slice_back(g, slice_back(g, t, 3, s * dil[1], st[1], Wp), 2, r * dil[0], st[0], Hp);
            sum = sum ? lathe_add(g, sum, t) : t;
        }
    if (pad[0]) sum = lathe_slice(g, sum, 2, pad[0], pad[0] + H, 1);
    if (pad[1]) sum = lathe_slice(g, sum, 3, pad[1], pad[1] + W, 1);
    return sum;
}

/* The primitive form of composite n, with operands in; NULL if n is
 * primitive. */
static lathe_node *expand(lathe_graph *g, const lathe_node *n, lathe_node **in) {
    lathe_node *x = n->nin ? in[0] : NULL;
    lathe_dtype t = n->dtype;
    switch (n->op) {
    case LT_OP_MEAN: {
        int64_t count = 1;
        for (int i = 0; i < n->attr[0].n; i++) count *= x->shape[n->attr[0].v[i]];
        lathe_node *s = lathe_sum(g, x, n->attr[0].n, n->attr[0].v, n->attr[1].v[0]);
        if (n->attr[0].n == 0) return s;
        return lathe_div(g, s, sc(g, t, (double)count));
    }
    case LT_OP_LINEAR: {
        lathe_node *w = in[1];
        int64_t out = w->shape[0], inf = w->shape[1], m = 1;
        for (int d = 0; d + 1 < x->rank; d++) m *= x->shape[d]; /* not numel / inf: inf may be 0 */
        lathe_node *y = lathe_matmul(g, lathe_reshape(g, x, LATHE_DIMS(m, inf)), lathe_transpose(g, w, 0, 1));
        if (n->nin == 3) y = lathe_add(g, y, in[2]);
        (void)out;
        return lathe_reshape(g, y, n->rank, n->shape);
    }
    case LT_OP_SOFTMAX: {
        int64_t ax = n->attr[0].v[0];
        if (x->shape[ax] == 0) return x; /* empty along the axis: nothing to normalize */
        lathe_node *e = lathe_exp(g, lathe_sub(g, x, keep_axis(g, LT_OP_MAX, x, ax)));
        return lathe_div(g, e, keep_axis(g, LT_OP_SUM, e, ax));
    }
    case LT_OP_LOG_SOFTMAX:
        if (x->shape[n->attr[0].v[0]] == 0) return x;
        return log_softmax(g, x, n->attr[0].v[0]);
    case LT_OP_CROSS_ENTROPY:
        return nll(g, log_softmax(g, x, 1), in[1], n->attr[0].v[0], n->attr[1].v[0], n->attr[2].f);
    case LT_OP_NLL_LOSS: return nll(g, x, in[1], n->attr[0].v[0], n->attr[1].v[0], 0);
    case LT_OP_MSE_LOSS: {
        lathe_node *d = lathe_sub(g, x, in[1]);
        lathe_node *sq = lathe_mul(g, d, d);
        int64_t red = n->attr[0].v[0];
        if (red == LATHE_REDUCE_NONE) return sq;
        lathe_node *s = lathe_sum(g, sq, 0, NULL, false);
        return red == LATHE_REDUCE_SUM ? s : lathe_div(g, s, sc(g, t, (double)x->numel));
    }
    case LT_OP_BATCH_NORM2D: {
        int64_t C = x->shape[1], M = x->shape[0] * x->shape[2] * x->shape[3];
        const int64_t axes[3] = {0, 2, 3};
        lathe_node *w4 = lathe_reshape(g, in[1], LATHE_DIMS(1, C, 1, 1));
        lathe_node *b4 = lathe_reshape(g, in[2], LATHE_DIMS(1, C, 1, 1));
        lathe_node *xc, *var;
        if (n->attr[0].v[0]) { /* training: biased batch statistics */
            lathe_node *mean = lathe_div(g, lathe_sum(g, x, 3, axes, true), sc(g, t, (double)M));
            xc = lathe_sub(g, x, mean);
            var = lathe_div(g, lathe_sum(g, lathe_mul(g, xc, xc), 3, axes, true), sc(g, t, (double)M));
        } else {
            xc = lathe_sub(g, x, lathe_reshape(g, in[3], LATHE_DIMS(1, C, 1, 1)));
            var = lathe_reshape(g, in[4], LATHE_DIMS(1, C, 1, 1));
        }
        lathe_node *rstd = lathe_rsqrt(g, lathe_add(g, var, sc(g, t, n->attr[2].f)));
        return lathe_add(g, lathe_mul(g, lathe_mul(g, xc, rstd), w4), b4);
    }
    case LT_OP_LAYER_NORM: { /* per row of the last k dims, as batch norm per channel */
        int k = n->attr[0].n;
        int64_t axes[LATHE_MAX_RANK], M = 1;
        for (int i = 0; i < k; i++) axes[i] = x->rank - k + i, M *= x->shape[x->rank - k + i];
        lathe_node *mean = lathe_div(g, lathe_sum(g, x, k, axes, true), sc(g, t, (double)M));
        lathe_node *xc = lathe_sub(g, x, mean);
        lathe_node *var = lathe_div(g, lathe_sum(g, lathe_mul(g, xc, xc), k, axes, true), sc(g, t, (double)M));
        lathe_node *y = lathe_mul(g, xc, lathe_rsqrt(g, lathe_add(g, var, sc(g, t, n->attr[1].f))));
        if (n->nin > 1) y = lathe_mul(g, y, in[1]);
        if (n->nin > 2) y = lathe_add(g, y, in[2]);
        return y;
    }
    case LT_OP_ALL_REDUCE: {
        /* x of every process gathered along a new leading axis, then summed
         * over it in rank order: every process adds the same values in the
         * same order, so all get the same bits (an all-reduce in MPI's order
         * would not, for every process count).  A rank-6 x has no room for
         * the axis: its first two dims are merged, and the sum reshaped back. */
        int64_t s[LATHE_MAX_RANK], lead = 0;
        int r = 0;
        s[r++] = 1;
        for (int d = 0; d < x->rank; d++) {
            if (d == 1 && x->rank == LATHE_MAX_RANK) s[r - 1] *= x->shape[d];
            else s[r++] = x->shape[d];
        }
        lathe_node *all = lathe_all_gather(g, lathe_reshape(g, x, r, s), 0, (int)n->attr[0].v[0]);
        lathe_node *sum = lathe_sum(g, all, 1, &lead, false);
        if (!sum || sum->rank == n->rank) return sum;
        return lathe_reshape(g, sum, n->rank, n->shape);
    }
    case LT_OP_CONV2D: {
        /* small output planes: y (N, K, P*Q) = w (K, C*R*S) @ im2col(x)^T, per image */
        lathe_node *w = in[1];
        int64_t N = n->shape[0], K = n->shape[1], P = n->shape[2], Q = n->shape[3];
        if (n->attr[3].v[0] != 1 || P * Q >= LT_SMALL_PLANE || n->numel == 0 || w->numel == 0) return NULL;
        const int64_t k[2] = {w->shape[2], w->shape[3]};
        lathe_node *col = im2col(g, x, k, n->attr[0].v, n->attr[1].v, n->attr[2].v, P, Q);
        lathe_node *colt = lathe_transpose(g, lathe_reshape(g, col, LATHE_DIMS(N, P * Q, w->numel / K)), 1, 2);
        lathe_node *y = lathe_reshape(g, lathe_matmul(g, lathe_reshape(g, w, LATHE_DIMS(K, w->numel / K)), colt), n->rank, n->shape);
        if (n->nin == 3) y = lathe_add(g, y, lathe_reshape(g, in[2], LATHE_DIMS(1, K, 1, 1)));
        return y;
    }
    case LT_OP_CONV2D_BACKWARD_INPUT: {
        /* small output planes: dx = col2im(gy (per image P*Q, K) @ w (K, C*R*S)) */
        lathe_node *w = in[1];
        int64_t N = x->shape[0], K = x->shape[1], P = x->shape[2], Q = x->shape[3];
        if (n->attr[3].v[0] != 1 || P * Q >= LT_SMALL_PLANE || n->numel == 0 || w->numel == 0) return NULL;
        const int64_t k[2] = {w->shape[2], w->shape[3]}, perm[3] = {0, 2, 1};
        lathe_node *gt = lathe_permute(g, lathe_reshape(g, x, LATHE_DIMS(N, K, P * Q)), 3, perm);
        lathe_node *dcol = lathe_matmul(g, gt, lathe_reshape(g, w, LATHE_DIMS(K, w->numel / K)));
        return col2im(g, lathe_reshape(g, dcol, LATHE_DIMS(N * P * Q, w->numel / K)), n->shape, k, n->attr[0].v,
                      n->attr[1].v, n->attr[2].v, P, Q);
    }
    case LT_OP_CONV2D_BACKWARD_WEIGHT: {
        /* small output planes: dw (K, C*R*S) = gy (K, N*P*Q) @ im2col(x) */
        lathe_node *gy = in[1];
        int64_t N = gy->shape[0], K = gy->shape[1], P = gy->shape[2], Q = gy->shape[3];
        if (n->attr[3].v[0] != 1 || P * Q >= LT_SMALL_PLANE || N * P * Q == 0 || n->numel == 0) return NULL;
        lathe_node *col = im2col(g, x, n->attr[4].v, n->attr[0].v, n->attr[1].v, n->attr[2].v, P, Q);
        const int64_t perm[4] = {1, 0, 2, 3};
        lathe_node *gk = lathe_reshape(g, lathe_permute(g, gy, 4, perm), LATHE_DIMS(K, N * P * Q));
        return lathe_reshape(g, lathe_matmul(g, gk, col), n->rank, n->shape);
    }
    default:
        return NULL;
    }
}

lathe_graph *lt_decompose(const lathe_graph *src) {
    lathe_graph *dst = lathe_graph_new();
    if (!dst) return NULL;
    lathe_node **map = calloc((size_t)src->nnodes + 1, sizeof *map);
    if (!map) {
        lt_fail(dst, LATHE_ERR_NOMEM, "out of memory");
        return dst;
    }
    for (int i = 0; i < src->nnodes && dst->status == LATHE_OK; i++) {
        const lathe_node *n = src->nodes[i];
        if (lt_ops[n->op].kind == LT_LEAF) {
            lathe_node *c = lt_make_leaf(dst, n->op, n->name, n->dtype, n->rank, n->shape, n->requires_grad, n->data);
            if (c) c->no_grad = n->no_grad;
            map[i] = c;
            continue;
        }
        enum { INLINE_OPERANDS = 64 }; /* operands on the stack; concat may have more */
        lathe_node *in[INLINE_OPERANDS], **inp = in;
        if (n->nin > INLINE_OPERANDS && !(inp = malloc((size_t)n->nin * sizeof *inp))) {
            lt_fail(dst, LATHE_ERR_NOMEM, "out of memory");
            break;
        }
        for (int k = 0; k < n->nin; k++) inp[k] = map[n->in[k]->id];
        lathe_node *r = expand(dst, n, inp);
        if (!r && dst->status == LATHE_OK) r = lt_make(dst, n->op, n->nin, inp, n->attr);
        if (r) r->no_grad = r->no_grad || n->no_grad;
        if (inp != in) free(inp);
        map[i] = r;
    }
    for (int i = 0; i < src->nout && dst->status == LATHE_OK; i++)
        lathe_output(dst, src->outputs[i].name, map[src->outputs[i].node->id]);
    for (int i = 0; i < src->nupd && dst->status == LATHE_OK; i++)
        lathe_update(dst, map[src->updates[i].buffer->id], map[src->updates[i].value->id]);
    free(map);
    if (dst->status == LATHE_OK) lathe_graph_verify(dst);
    return dst;
}
