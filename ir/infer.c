/* infer.c - shape and dtype rules, one case per op.
 *
 * lt_infer checks an op's operands and attributes and computes its result
 * type; builders, the text parser and the verifier all go through it, so a
 * rule is written once.  Messages name the op, every operand's type and what
 * was expected.  Attributes are normalized in place: negative axes wrapped,
 * reshape's -1 resolved, slice bounds clamped as Python does, so the stored
 * (and printed) form is canonical. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ir.h"

typedef struct {
    char s[4][160];
} tnames;

static void names_of(int nin, lathe_node *const *in, tnames *t) {
    for (int i = 0; i < nin && i < 4; i++) lathe_node_type_str(in[i], t->s[i], sizeof t->s[i]);
}

/* "f32[2,3], f32[3]" for messages */
static const char *operands_str(int nin, lathe_node *const *in, char *buf, size_t len) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < nin && k < len; i++) {
        char ts[160];
        lathe_node_type_str(in[i], ts, sizeof ts);
        k += (size_t)snprintf(buf + k, len - k, "%s%s", i ? ", " : "", ts);
    }
    return buf;
}

static lathe_status fail(lathe_graph *g, lathe_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static lathe_status fail(lathe_graph *g, lathe_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    lt_failv(g, st, fmt, ap);
    va_end(ap);
    return st;
}

static lathe_status broadcast(lathe_graph *g, const char *op, int nin, lathe_node *const *in,
                              lt_type *out) {
    int rank = 0;
    for (int i = 0; i < nin; i++)
        if (in[i]->rank > rank) rank = in[i]->rank;
    for (int d = 0; d < rank; d++) { /* d counts from the right */
        int64_t dim = 1;
        for (int i = 0; i < nin; i++) {
            int k = in[i]->rank - 1 - d;
            if (k < 0) continue;
            int64_t e = in[i]->shape[k];
            if (e == 1) continue;
            if (dim != 1 && dim != e) {
                char ops[700];
                return fail(g, LATHE_ERR_SHAPE,
                            "%s: cannot broadcast %s (dim %d from the right: %lld vs %lld)", op,
                            operands_str(nin, in, ops, sizeof ops), d + 1, (long long)dim,
                            (long long)e);
            }
            dim = e;
        }
        out->shape[rank - 1 - d] = dim;
    }
    out->rank = rank;
    return LATHE_OK;
}

static lathe_status same_dtype(lathe_graph *g, const char *op, int nin, lathe_node *const *in) {
    for (int i = 1; i < nin; i++)
        if (in[i]->dtype != in[0]->dtype) {
            char ops[700];
            return fail(g, LATHE_ERR_DTYPE, "%s: operand dtypes differ (%s); cast one explicitly",
                        op, operands_str(nin, in, ops, sizeof ops));
        }
    return LATHE_OK;
}

static lathe_status need_float(lathe_graph *g, const char *op, const lathe_node *x, const char *what) {
    if (lt_is_float(x->dtype)) return LATHE_OK;
    char ts[160];
    lathe_node_type_str(x, ts, sizeof ts);
    return fail(g, LATHE_ERR_DTYPE, "%s: %s must be f32 or f64, got %s", op, what, ts);
}

static lathe_status need_rank(lathe_graph *g, const char *op, const lathe_node *x, int rank,
                              const char *what, const char *layout) {
    if (x->rank == rank) return LATHE_OK;
    char ts[160];
    lathe_node_type_str(x, ts, sizeof ts);
    return fail(g, LATHE_ERR_SHAPE, "%s: %s must have rank %d%s%s%s, got %s", op, what, rank,
                layout ? " (" : "", layout ? layout : "", layout ? ")" : "", ts);
}

/* Wrap a possibly negative axis into [0, rank). */
static lathe_status norm_axis(lathe_graph *g, const char *op, const lathe_node *x, int64_t *axis) {
    int64_t a = *axis;
    if (a < -x->rank || a >= x->rank) {
        char ts[160];
        lathe_node_type_str(x, ts, sizeof ts);
        if (x->rank == 0)
            return fail(g, LATHE_ERR_ARG, "%s: axis %lld out of range for rank-0 %s", op,
                        (long long)a, ts);
        return fail(g, LATHE_ERR_ARG, "%s: axis %lld out of range [%d, %d] for %s", op,
                    (long long)a, -x->rank, x->rank - 1, ts);
    }
    *axis = a < 0 ? a + x->rank : a;
    return LATHE_OK;
}

/* Elements of start:end:step with 0 <= start <= end and step >= 1. */
static int64_t slice_len(int64_t start, int64_t end, int64_t step) {
    return end == start ? 0 : (end - start - 1) / step + 1;
}

static lathe_status check_bool_attr(lathe_graph *g, const char *op, const char *name, int64_t v) {
    if (v == 0 || v == 1) return LATHE_OK;
    return fail(g, LATHE_ERR_ARG, "%s: %s must be true or false, got %lld", op, name, (long long)v);
}

static lathe_status infer_reduce(lathe_graph *g, lt_op op, lathe_node *x, lt_attr *a, lt_type *out) {
    const char *on = lt_ops[op].name;
    char ts[160];
    lathe_node_type_str(x, ts, sizeof ts);
    bool red[LATHE_MAX_RANK] = {0};
    int naxes;
    int64_t axes[LATHE_MAX_RANK];
    int keep_idx = 1;
    if (op == LT_OP_ARGMAX) {
        naxes = 1;
        axes[0] = a[0].v[0];
    } else {
        naxes = a[0].n;
        if (naxes < 0 || naxes > LATHE_MAX_RANK)
            return fail(g, LATHE_ERR_ARG, "%s: %d axes given for %s", on, naxes, ts);
        memcpy(axes, a[0].v, sizeof axes);
    }
    if (check_bool_attr(g, on, "keepdim", a[keep_idx].v[0])) return g->status;
    for (int i = 0; i < naxes; i++) {
        if (norm_axis(g, on, x, &axes[i])) return g->status;
        if (red[axes[i]])
            return fail(g, LATHE_ERR_ARG, "%s: axis %lld repeated for %s", on, (long long)axes[i], ts);
        red[axes[i]] = true;
    }
    if (op == LT_OP_ARGMAX) a[0].v[0] = axes[0];
    else {
        /* canonical: ascending order */
        int k = 0;
        for (int d = 0; d < x->rank; d++)
            if (red[d]) a[0].v[k++] = d;
        for (int i = k; i < LATHE_MAX_RANK; i++) a[0].v[i] = 0;
    }
    switch (op) {
    case LT_OP_SUM:
        if (x->dtype == LATHE_BOOL)
            return fail(g, LATHE_ERR_DTYPE, "sum: bool input %s; cast it to i64 or a float first", ts);
        out->dtype = x->dtype;
        break;
    case LT_OP_MEAN:
        if (need_float(g, on, x, "input")) return g->status;
        out->dtype = x->dtype;
        break;
    case LT_OP_MAX:
    case LT_OP_MIN:
    case LT_OP_ARGMAX:
        if (x->dtype == LATHE_BOOL)
            return fail(g, LATHE_ERR_DTYPE, "%s: bool input %s not supported", on, ts);
        for (int d = 0; d < x->rank; d++)
            if (red[d] && x->shape[d] == 0)
                return fail(g, LATHE_ERR_SHAPE, "%s: cannot reduce over zero-size axis %d of %s", on,
                            d, ts);
        out->dtype = op == LT_OP_ARGMAX ? LATHE_I64 : x->dtype;
        break;
    default:
        LT_ASSERT(0);
    }
    int r = 0;
    for (int d = 0; d < x->rank; d++) {
        if (!red[d]) out->shape[r++] = x->shape[d];
        else if (a[keep_idx].v[0]) out->shape[r++] = 1;
    }
    out->rank = r;
    return LATHE_OK;
}

static lathe_status check_shape_list(lathe_graph *g, const char *on, const lt_attr *s) {
    if (s->n < 0 || s->n > LATHE_MAX_RANK)
        return fail(g, LATHE_ERR_ARG, "%s: target rank %d out of range 0..%d", on, s->n, LATHE_MAX_RANK);
    return LATHE_OK;
}

static lathe_status infer_reshape(lathe_graph *g, lathe_node *x, lt_attr *a, lt_type *out) {
    char ts[160];
    lathe_node_type_str(x, ts, sizeof ts);
    if (check_shape_list(g, "reshape", &a[0])) return g->status;
    int infer_at = -1;
    int64_t known = 1;
    bool overflow = false;
    for (int i = 0; i < a[0].n; i++) {
        int64_t d = a[0].v[i];
        if (d == -1) {
            if (infer_at >= 0)
                return fail(g, LATHE_ERR_ARG, "reshape: only one dimension can be -1 (reshaping %s)", ts);
            infer_at = i;
        } else if (d < 0) {
            return fail(g, LATHE_ERR_SHAPE, "reshape: negative dimension %lld (reshaping %s)",
                        (long long)d, ts);
        } else if (d != 0 && known > LT_MAX_NUMEL / d) {
            overflow = true;
        } else known *= d;
    }
    char tgt[160];
    lt_type_str(x->dtype, a[0].n, a[0].v, tgt, sizeof tgt);
    if (overflow)
        return fail(g, LATHE_ERR_SHAPE, "reshape: element count of %s overflows", tgt);
    if (infer_at >= 0) {
        if (known == 0 || x->numel % known != 0)
            return fail(g, LATHE_ERR_SHAPE,
                        "reshape: cannot infer the -1 in %s from %lld elements of %s", tgt,
                        (long long)x->numel, ts);
        a[0].v[infer_at] = x->numel / known;
        known = x->numel;
    }
    if (known != x->numel)
        return fail(g, LATHE_ERR_SHAPE,
                    "reshape: %s has %lld elements but target %s has %lld; reshape must keep the count",
                    ts, (long long)x->numel, tgt, (long long)known);
    out->dtype = x->dtype;
    out->rank = a[0].n;
    memcpy(out->shape, a[0].v, sizeof out->shape);
    return LATHE_OK;
}

/* Spatial output size pq of a sliding window (conv2d, the pools) over a
 * spatial input hw (each in [0, LT_MAX_NUMEL]): checks the window's
 * attributes and that the dilated kernel fits the padded input.  Messages
 * name the input as ts.  Every product stays below 2^63: the attributes are
 * capped at LT_MAX_NUMEL = 2^48 first. */
static lathe_status window_out(lathe_graph *g, const char *on, const char *ts, const int64_t hw[2],
                               const int64_t k[2], const int64_t s[2], const int64_t p[2],
                               const int64_t dil[2], int64_t pq[2]) {
    for (int i = 0; i < 2; i++) {
        if (s[i] <= 0) return fail(g, LATHE_ERR_ARG, "%s: stride must be >= 1, got %lld (input %s)", on, (long long)s[i], ts);
        if (dil[i] <= 0) return fail(g, LATHE_ERR_ARG, "%s: dilation must be >= 1, got %lld (input %s)", on, (long long)dil[i], ts);
        if (p[i] < 0) return fail(g, LATHE_ERR_ARG, "%s: padding must be >= 0, got %lld (input %s)", on, (long long)p[i], ts);
        if (k[i] <= 0) return fail(g, LATHE_ERR_ARG, "%s: kernel size must be >= 1, got %lld (input %s)", on, (long long)k[i], ts);
        if (k[i] > LT_MAX_NUMEL || s[i] > LT_MAX_NUMEL || p[i] > LT_MAX_NUMEL || dil[i] > LT_MAX_NUMEL)
            return fail(g, LATHE_ERR_ARG, "%s: absurd window size (input %s)", on, ts);
    }
    for (int i = 0; i < 2; i++) {
        int64_t in = hw[i] + 2 * p[i];
        if (k[i] > 1 && dil[i] > LT_MAX_NUMEL / (k[i] - 1))
            return fail(g, LATHE_ERR_ARG, "%s: dilated kernel extent too large (input %s)", on, ts);
        int64_t ext = dil[i] * (k[i] - 1) + 1;
        if (ext > in)
            return fail(g, LATHE_ERR_SHAPE,
                        "%s: kernel %lldx%lld (dilated extent %lld) is larger than the padded input %lldx%lld (input %s, padding %lld,%lld)",
                        on, (long long)k[0], (long long)k[1], (long long)ext,
                        (long long)(hw[0] + 2 * p[0]), (long long)(hw[1] + 2 * p[1]), ts,
                        (long long)p[0], (long long)p[1]);
        pq[i] = (in - ext) / s[i] + 1;
    }
    return LATHE_OK;
}

static lathe_status infer_pool_window(lathe_graph *g, const char *on, lathe_node *x,
                                      const int64_t k[2], const int64_t s[2], const int64_t p[2],
                                      const int64_t dil[2], lt_type *out, int64_t c_out) {
    char ts[160];
    lathe_node_type_str(x, ts, sizeof ts);
    if (window_out(g, on, ts, x->shape + 2, k, s, p, dil, out->shape + 2)) return g->status;
    out->dtype = x->dtype;
    out->rank = 4;
    out->shape[0] = x->shape[0];
    out->shape[1] = c_out;
    return LATHE_OK;
}

/* max_pool2d and avg_pool2d: padding at most half the kernel, as PyTorch. */
static lathe_status check_pool_padding(lathe_graph *g, const char *on, const lt_attr *a, const char *ts) {
    for (int i = 0; i < 2; i++)
        if (a[0].v[i] > 0 && a[2].v[i] > a[0].v[i] / 2)
            return fail(g, LATHE_ERR_ARG,
                        "%s: padding %lld must be at most half the kernel size %lld (input %s)", on,
                        (long long)a[2].v[i], (long long)a[0].v[i], ts);
    return LATHE_OK;
}

/* A gradient kernel's size attribute: the forward input's spatial size. */
static lathe_status check_size_attr(lathe_graph *g, const char *on, const int64_t size[2], int64_t lo,
                                    const char *gy_ts) {
    for (int i = 0; i < 2; i++)
        if (size[i] < lo || size[i] > LT_MAX_NUMEL)
            return fail(g, LATHE_ERR_ARG, "%s: size must be %lld..%lld, got %lldx%lld (gradient %s)", on,
                        (long long)lo, (long long)LT_MAX_NUMEL, (long long)size[0], (long long)size[1], gy_ts);
    return LATHE_OK;
}

/* gy must be (n, c, pq): what forward op fwd gives for an input of type
 * in_ts with this window (dil NULL for the pools). */
static lathe_status need_window_grad(lathe_graph *g, const char *on, const lathe_node *gy, int64_t n,
                                     int64_t c, const int64_t pq[2], const char *fwd, const char *in_ts,
                                     const int64_t k[2], const int64_t s[2], const int64_t p[2],
                                     const int64_t dil[2]) {
    if (gy->shape[0] == n && gy->shape[1] == c && gy->shape[2] == pq[0] && gy->shape[3] == pq[1])
        return LATHE_OK;
    char gts[160], wts[160], dts[64] = "";
    lathe_node_type_str(gy, gts, sizeof gts);
    lt_type_str(gy->dtype, 4, (int64_t[]){n, c, pq[0], pq[1]}, wts, sizeof wts);
    if (dil) snprintf(dts, sizeof dts, ", dilation %lld,%lld", (long long)dil[0], (long long)dil[1]);
    return fail(g, LATHE_ERR_SHAPE,
                "%s: gradient %s does not match %s, the %s output for input %s (kernel %lldx%lld, stride %lld,%lld, padding %lld,%lld%s)",
                on, gts, wts, fwd, in_ts, (long long)k[0], (long long)k[1], (long long)s[0],
                (long long)s[1], (long long)p[0], (long long)p[1], dts);
}

/* index_select and its gradient: the index is i64 (x_what names the other
 * operand, x_ts its type). */
static lathe_status need_index(lathe_graph *g, const char *on, const lathe_node *ix, const char *x_what,
                               const char *x_ts) {
    if (ix->dtype == LATHE_I64) return LATHE_OK;
    char ts[160];
    lathe_node_type_str(ix, ts, sizeof ts);
    return fail(g, LATHE_ERR_DTYPE, "%s: index must be i64, got %s (%s %s)", on, ts, x_what, x_ts);
}

static lathe_status select_rank(lathe_graph *g, const char *on, int rank, const char *ops) {
    if (rank <= LATHE_MAX_RANK) return LATHE_OK;
    return fail(g, LATHE_ERR_SHAPE, "%s: the result would have rank %d, more than %d (%s)", on, rank, LATHE_MAX_RANK,
                ops);
}

/* all_gather and all_reduce: the processes they span (ranks 0..parts-1),
 * which the runtime counts in an int (lathe_rt_gather). */
static lathe_status check_parts(lathe_graph *g, const char *on, int64_t parts, const char *x_ts) {
    if (parts >= 1 && parts <= INT_MAX) return LATHE_OK;
    return fail(g, LATHE_ERR_ARG, "%s: parts must be 1 to %d processes, got %lld (input %s)", on, INT_MAX,
                (long long)parts, x_ts);
}

/* The index selects among n rows along axis: there must be some when it
 * selects any, and a constant index must hold rows that exist (inputs are
 * checked at run time: lathe_index_limit). */
static lathe_status select_rows(lathe_graph *g, const char *on, int64_t n, const lathe_node *ix, const char *x_what,
                                const char *x_ts, int64_t axis) {
    char ts[160];
    lathe_node_type_str(ix, ts, sizeof ts);
    if (n == 0 && ix->numel > 0)
        return fail(g, LATHE_ERR_SHAPE, "%s: index %s selects from an empty axis %lld (%s %s)", on, ts, (long long)axis,
                    x_what, x_ts);
    if (ix->op != LT_OP_CONST) return LATHE_OK;
    for (int64_t i = 0; i < ix->numel; i++) {
        int64_t v;
        memcpy(&v, (const char *)ix->data + i * (int64_t)sizeof v, sizeof v);
        if (v < 0 || v >= n)
            return fail(g, LATHE_ERR_ARG, "%s: constant index %s holds %lld at element %lld, outside [0, %lld) (%s %s, axis %lld)",
                        on, ts, (long long)v, (long long)i, (long long)n, x_what, x_ts, (long long)axis);
    }
    return LATHE_OK;
}

static lathe_status infer_loss(lathe_graph *g, lt_op op, lathe_node *const *in, lt_attr *a,
                               lt_type *out) {
    const char *on = lt_ops[op].name;
    tnames t;
    names_of(2, in, &t);
    if (a[0].v[0] < LATHE_REDUCE_NONE || a[0].v[0] > LATHE_REDUCE_SUM)
        return fail(g, LATHE_ERR_ARG, "%s: unknown reduction %lld", on, (long long)a[0].v[0]);
    if (op == LT_OP_MSE_LOSS) {
        if (need_float(g, on, in[0], "input") || same_dtype(g, on, 2, in)) return g->status;
        if (in[0]->rank != in[1]->rank || memcmp(in[0]->shape, in[1]->shape, sizeof(int64_t) * (size_t)in[0]->rank))
            return fail(g, LATHE_ERR_SHAPE, "mse_loss: input %s and target %s must have the same shape",
                        t.s[0], t.s[1]);
        out->dtype = in[0]->dtype;
        if (a[0].v[0] == LATHE_REDUCE_NONE) {
            out->rank = in[0]->rank;
            memcpy(out->shape, in[0]->shape, sizeof out->shape);
        } else out->rank = 0;
        return LATHE_OK;
    }
    const lathe_node *x = in[0], *y = in[1];
    if (need_float(g, on, x, "input")) return g->status;
    if (x->rank < 2)
        return fail(g, LATHE_ERR_SHAPE, "%s: %s must have rank 2 or more (N, C, d1, ...), got %s", on,
                    op == LT_OP_NLL_LOSS ? "log-probabilities" : "logits", t.s[0]);
    if (y->dtype != LATHE_I64)
        return fail(g, LATHE_ERR_DTYPE, "%s: labels must be i64 class indices, got %s (input %s)", on,
                    t.s[1], t.s[0]);
    /* labels: x's shape without the class axis 1 */
    bool fits = y->rank == x->rank - 1 && y->shape[0] == x->shape[0];
    for (int d = 2; fits && d < x->rank; d++) fits = y->shape[d - 1] == x->shape[d];
    if (!fits) {
        char want[160];
        int64_t s[LATHE_MAX_RANK];
        s[0] = x->shape[0];
        for (int d = 2; d < x->rank; d++) s[d - 1] = x->shape[d];
        lt_type_str(LATHE_I64, x->rank - 1, s, want, sizeof want);
        return fail(g, LATHE_ERR_SHAPE, "%s: labels must be %s for input %s, got %s (the input's shape without its class axis 1)",
                    on, want, t.s[0], t.s[1]);
    }
    if (x->shape[1] == 0)
        return fail(g, LATHE_ERR_SHAPE, "%s: input %s has no classes", on, t.s[0]);
    if (op == LT_OP_CROSS_ENTROPY && !(a[2].f >= 0 && a[2].f <= 1))
        return fail(g, LATHE_ERR_ARG, "cross_entropy: label_smoothing must lie in [0, 1], got %g", a[2].f);
    out->dtype = x->dtype;
    if (a[0].v[0] == LATHE_REDUCE_NONE) {
        out->rank = y->rank;
        memcpy(out->shape, y->shape, sizeof(int64_t) * (size_t)y->rank);
    } else out->rank = 0;
    return LATHE_OK;
}

lathe_status lt_infer(lathe_graph *g, lt_op op, int nin, lathe_node *const *in, lt_attr *a,
                      lt_type *out) {
    const char *on = lt_ops[op].name;
    tnames t;
    names_of(nin, in, &t);
    memset(out, 0, sizeof *out);
    char ops[700];
    operands_str(nin, in, ops, sizeof ops);
    switch (lt_ops[op].kind) {
    case LT_LEAF:
        return fail(g, LATHE_ERR_ARG, "%s: leaves are made by their own builders", on);
    case LT_BINARY:
        if (same_dtype(g, on, nin, in)) return g->status;
        if (in[0]->dtype == LATHE_BOOL)
            return fail(g, LATHE_ERR_DTYPE, "%s: bool operands (%s) not supported; cast first", on, ops);
        if ((op == LT_OP_DIV || op == LT_OP_POW) && need_float(g, on, in[0], "operands"))
            return g->status;
        out->dtype = in[0]->dtype;
        return broadcast(g, on, nin, in, out);
    case LT_COMPARE:
        if (same_dtype(g, on, nin, in)) return g->status;
        out->dtype = LATHE_BOOL;
        return broadcast(g, on, nin, in, out);
    case LT_WHERE:
        if (in[0]->dtype != LATHE_BOOL)
            return fail(g, LATHE_ERR_DTYPE, "where: condition must be bool, got %s (operands %s)", t.s[0], ops);
        if (same_dtype(g, on, 2, in + 1)) return g->status;
        out->dtype = in[1]->dtype;
        return broadcast(g, on, nin, in, out);
    case LT_UNARY:
        out->dtype = in[0]->dtype;
        out->rank = in[0]->rank;
        memcpy(out->shape, in[0]->shape, sizeof out->shape);
        switch (op) {
        case LT_OP_NEG:
        case LT_OP_ABS:
        case LT_OP_RELU:
            if (in[0]->dtype == LATHE_BOOL)
                return fail(g, LATHE_ERR_DTYPE, "%s: bool input %s not supported", on, t.s[0]);
            return LATHE_OK;
        case LT_OP_GELU:
            if (need_float(g, on, in[0], "input")) return g->status;
            return check_bool_attr(g, on, "approximate", a[0].v[0]);
        case LT_OP_SOFTPLUS:
            if (need_float(g, on, in[0], "input")) return g->status;
            if (!isfinite(a[0].f) || a[0].f == 0)
                return fail(g, LATHE_ERR_ARG, "softplus: beta must be finite and nonzero, got %g (input %s)", a[0].f, t.s[0]);
            if (isnan(a[1].f))
                return fail(g, LATHE_ERR_ARG, "softplus: threshold must be a number, got nan (input %s)", t.s[0]);
            return LATHE_OK;
        case LT_OP_LEAKY_RELU:
            if (need_float(g, on, in[0], "input")) return g->status;
            if (!isfinite(a[0].f))
                return fail(g, LATHE_ERR_ARG, "leaky_relu: negative_slope must be finite, got %g (input %s)", a[0].f, t.s[0]);
            return LATHE_OK;
        case LT_OP_CLAMP: /* an infinite bound is no bound; min > max gives max everywhere, as torch.clamp */
            if (need_float(g, on, in[0], "input")) return g->status;
            if (isnan(a[0].f) || isnan(a[1].f))
                return fail(g, LATHE_ERR_ARG, "clamp: bounds must be numbers (an infinity for none), got min %g, max %g (input %s)",
                            a[0].f, a[1].f, t.s[0]);
            return LATHE_OK;
        case LT_OP_CAST:
            if (a[0].v[0] < LATHE_F32 || a[0].v[0] > LATHE_BOOL)
                return fail(g, LATHE_ERR_ARG, "cast: unknown dtype %lld", (long long)a[0].v[0]);
            out->dtype = (lathe_dtype)a[0].v[0];
            return LATHE_OK;
        default:
            return need_float(g, on, in[0], "input");
        }
    case LT_REDUCE:
        return infer_reduce(g, op, in[0], a, out);
    case LT_SHAPE:
        break;
    case LT_CONTRACT:
        break;
    case LT_POOL:
        break;
    case LT_NORM:
        break;
    case LT_LOSS:
        return infer_loss(g, op, in, a, out);
    }

    lathe_node *x = in[0];
    switch (op) {
    case LT_OP_RESHAPE:
        return infer_reshape(g, x, a, out);
    case LT_OP_FLATTEN: {
        out->dtype = x->dtype;
        if (x->rank == 0) { /* torch.flatten of a scalar is 1-D */
            if ((a[0].v[0] != 0 && a[0].v[0] != -1) || (a[1].v[0] != 0 && a[1].v[0] != -1))
                return fail(g, LATHE_ERR_ARG, "flatten: start/end must be 0 or -1 for a rank-0 %s", t.s[0]);
            a[0].v[0] = a[1].v[0] = 0;
            out->rank = 1;
            out->shape[0] = 1;
            return LATHE_OK;
        }
        if (norm_axis(g, on, x, &a[0].v[0]) || norm_axis(g, on, x, &a[1].v[0])) return g->status;
        int64_t s = a[0].v[0], e = a[1].v[0];
        if (s > e)
            return fail(g, LATHE_ERR_ARG, "flatten: start %lld is after end %lld for %s", (long long)s,
                        (long long)e, t.s[0]);
        int r = 0;
        for (int d = 0; d < s; d++) out->shape[r++] = x->shape[d];
        int64_t m = lt_numel((int)(e - s + 1), x->shape + s);
        if (m < 0) return fail(g, LATHE_ERR_SHAPE, "flatten: element count of %s overflows", t.s[0]);
        out->shape[r++] = m;
        for (int d = (int)e + 1; d < x->rank; d++) out->shape[r++] = x->shape[d];
        out->rank = r;
        return LATHE_OK;
    }
    case LT_OP_PERMUTE: {
        if (a[0].n != x->rank)
            return fail(g, LATHE_ERR_ARG, "permute: %d dims given for rank-%d %s", a[0].n, x->rank, t.s[0]);
        bool seen[LATHE_MAX_RANK] = {0};
        for (int i = 0; i < x->rank; i++) {
            if (norm_axis(g, on, x, &a[0].v[i])) return g->status;
            if (seen[a[0].v[i]])
                return fail(g, LATHE_ERR_ARG, "permute: dim %lld repeated for %s", (long long)a[0].v[i], t.s[0]);
            seen[a[0].v[i]] = true;
            out->shape[i] = x->shape[a[0].v[i]];
        }
        out->dtype = x->dtype;
        out->rank = x->rank;
        return LATHE_OK;
    }
    case LT_OP_BROADCAST_TO: {
        if (check_shape_list(g, on, &a[0])) return g->status;
        char tgt[160];
        lt_type_str(x->dtype, a[0].n, a[0].v, tgt, sizeof tgt);
        if (a[0].n < x->rank)
            return fail(g, LATHE_ERR_SHAPE, "broadcast_to: target %s has lower rank than input %s", tgt, t.s[0]);
        for (int i = 0; i < a[0].n; i++)
            if (a[0].v[i] < 0)
                return fail(g, LATHE_ERR_SHAPE, "broadcast_to: negative dimension in target %s", tgt);
        if (lt_numel(a[0].n, a[0].v) < 0)
            return fail(g, LATHE_ERR_SHAPE, "broadcast_to: element count of %s overflows", tgt);
        for (int i = 0; i < x->rank; i++) {
            int64_t s = x->shape[x->rank - 1 - i], d = a[0].v[a[0].n - 1 - i];
            if (s != 1 && s != d)
                return fail(g, LATHE_ERR_SHAPE,
                            "broadcast_to: cannot broadcast %s to %s (dim %d from the right: %lld vs %lld)",
                            t.s[0], tgt, i + 1, (long long)s, (long long)d);
        }
        out->dtype = x->dtype;
        out->rank = a[0].n;
        memcpy(out->shape, a[0].v, sizeof out->shape);
        return LATHE_OK;
    }
    case LT_OP_CONCAT: {
        if (x->rank == 0) return fail(g, LATHE_ERR_SHAPE, "concat: rank-0 operand %s cannot be joined", t.s[0]);
        if (norm_axis(g, on, x, &a[0].v[0]) || same_dtype(g, on, nin, in)) return g->status;
        int64_t ax = a[0].v[0], total = 0;
        for (int i = 0; i < nin; i++) {
            bool ok = in[i]->rank == x->rank;
            for (int d = 0; ok && d < x->rank; d++)
                if (d != ax && in[i]->shape[d] != x->shape[d]) ok = false;
            if (!ok)
                return fail(g, LATHE_ERR_SHAPE,
                            "concat: operand %d does not match operand 0 outside axis %lld (%s)", i,
                            (long long)ax, ops);
            if (in[i]->shape[ax] > LT_MAX_NUMEL - total)
                return fail(g, LATHE_ERR_SHAPE, "concat: joined size along axis %lld overflows (%s)", (long long)ax, ops);
            total += in[i]->shape[ax];
        }
        out->dtype = x->dtype;
        out->rank = x->rank;
        memcpy(out->shape, x->shape, sizeof out->shape);
        out->shape[ax] = total;
        return LATHE_OK;
    }
    case LT_OP_SLICE: {
        if (norm_axis(g, on, x, &a[0].v[0])) return g->status;
        int64_t dim = x->shape[a[0].v[0]], st = a[1].v[0], en = a[2].v[0], step = a[3].v[0];
        if (step <= 0)
            return fail(g, LATHE_ERR_ARG, "slice: step must be >= 1, got %lld (input %s)", (long long)step, t.s[0]);
        if (st < 0) st += dim;
        if (en < 0) en += dim;
        st = st < 0 ? 0 : st > dim ? dim : st;
        en = en < 0 ? 0 : en > dim ? dim : en;
        if (en < st) en = st;
        a[1].v[0] = st;
        a[2].v[0] = en;
        out->dtype = x->dtype;
        out->rank = x->rank;
        memcpy(out->shape, x->shape, sizeof out->shape);
        out->shape[a[0].v[0]] = slice_len(st, en, step);
        return LATHE_OK;
    }
    case LT_OP_INDEX_SELECT: {
        /* x (A..., n, B...), index (I...) i64 -> (A..., I..., B...):
         * y[a, i, b] = x[a, index[i], b], as jnp.take or torch.index_select */
        lathe_node *ix = in[1];
        if (x->rank == 0) return fail(g, LATHE_ERR_SHAPE, "index_select: input must have rank >= 1, got %s", t.s[0]);
        if (norm_axis(g, on, x, &a[0].v[0]) || need_index(g, on, ix, "input", t.s[0])) return g->status;
        int64_t ax = a[0].v[0];
        if (select_rank(g, on, x->rank - 1 + ix->rank, ops) || select_rows(g, on, x->shape[ax], ix, "input", t.s[0], ax))
            return g->status;
        out->dtype = x->dtype;
        out->rank = x->rank - 1 + ix->rank;
        int r = 0;
        for (int d = 0; d < ax; d++) out->shape[r++] = x->shape[d];
        for (int d = 0; d < ix->rank; d++) out->shape[r++] = ix->shape[d];
        for (int d = (int)ax + 1; d < x->rank; d++) out->shape[r++] = x->shape[d];
        return LATHE_OK;
    }
    case LT_OP_ALL_GATHER: {
        /* the values x of processes 0..parts-1 joined along axis in rank
         * order: x's shape with dim axis times parts */
        if (x->rank == 0)
            return fail(g, LATHE_ERR_SHAPE, "all_gather: rank-0 operand %s cannot be joined along an axis (reshape it to [1])",
                        t.s[0]);
        if (norm_axis(g, on, x, &a[0].v[0]) || check_parts(g, on, a[1].v[0], t.s[0])) return g->status;
        int64_t ax = a[0].v[0], parts = a[1].v[0];
        if (x->shape[ax] > LT_MAX_NUMEL / parts)
            return fail(g, LATHE_ERR_SHAPE, "all_gather: gathered size along axis %lld overflows (%s from %lld processes)",
                        (long long)ax, t.s[0], (long long)parts);
        out->dtype = x->dtype;
        out->rank = x->rank;
        memcpy(out->shape, x->shape, sizeof out->shape);
        out->shape[ax] *= parts;
        return LATHE_OK;
    }
    case LT_OP_MATMUL: {
        lathe_node *b = in[1];
        if (need_float(g, on, x, "operands") || same_dtype(g, on, 2, in)) return g->status;
        if (x->rank < 2 || b->rank < 2)
            return fail(g, LATHE_ERR_SHAPE, "matmul: operands must have rank >= 2, got %s (reshape vectors to matrices)", ops);
        if (x->shape[x->rank - 1] != b->shape[b->rank - 2])
            return fail(g, LATHE_ERR_SHAPE, "matmul: inner dimensions differ: %s (%lld vs %lld)", ops,
                        (long long)x->shape[x->rank - 1], (long long)b->shape[b->rank - 2]);
        /* batch dims broadcast */
        int rank = x->rank > b->rank ? x->rank : b->rank;
        for (int d = 2; d < rank; d++) {
            int ka = x->rank - 1 - d, kb = b->rank - 1 - d;
            int64_t ea = ka >= 0 ? x->shape[ka] : 1, eb = kb >= 0 ? b->shape[kb] : 1;
            if (ea != eb && ea != 1 && eb != 1)
                return fail(g, LATHE_ERR_SHAPE, "matmul: cannot broadcast batch dims of %s (%lld vs %lld)",
                            ops, (long long)ea, (long long)eb);
            out->shape[rank - 1 - d] = ea == 1 ? eb : ea;
        }
        out->rank = rank;
        out->shape[rank - 2] = x->shape[x->rank - 2];
        out->shape[rank - 1] = b->shape[b->rank - 1];
        out->dtype = x->dtype;
        return LATHE_OK;
    }
    case LT_OP_LINEAR: {
        lathe_node *w = in[1];
        if (need_float(g, on, x, "input") || same_dtype(g, on, nin, in)) return g->status;
        if (x->rank < 1) return fail(g, LATHE_ERR_SHAPE, "linear: input must have rank >= 1, got %s", ops);
        if (w->rank != 2 || w->shape[1] != x->shape[x->rank - 1])
            return fail(g, LATHE_ERR_SHAPE,
                        "linear: weight must be [out, %lld] for input %s, got %s",
                        (long long)x->shape[x->rank - 1], t.s[0], t.s[1]);
        if (nin == 3 && (in[2]->rank != 1 || in[2]->shape[0] != w->shape[0]))
            return fail(g, LATHE_ERR_SHAPE, "linear: bias must be [%lld] for weight %s, got %s",
                        (long long)w->shape[0], t.s[1], t.s[2]);
        out->dtype = x->dtype;
        out->rank = x->rank;
        memcpy(out->shape, x->shape, sizeof out->shape);
        out->shape[x->rank - 1] = w->shape[0];
        return LATHE_OK;
    }
    case LT_OP_CONV2D: {
        lathe_node *w = in[1];
        if (need_float(g, on, x, "input") || same_dtype(g, on, nin, in) ||
            need_rank(g, on, x, 4, "input", "N, C, H, W") ||
            need_rank(g, on, w, 4, "weight", "K, C/groups, R, S"))
            return g->status;
        int64_t groups = a[3].v[0], C = x->shape[1], K = w->shape[0];
        if (groups <= 0)
            return fail(g, LATHE_ERR_ARG, "conv2d: groups must be >= 1, got %lld (%s)", (long long)groups, ops);
        if (C % groups || K % groups || w->shape[1] * groups != C)
            return fail(g, LATHE_ERR_SHAPE,
                        "conv2d: weight %s does not fit input %s with groups=%lld (need C %% groups == 0, K %% groups == 0, weight dim 1 == C/groups)",
                        t.s[1], t.s[0], (long long)groups);
        if (nin == 3 && (in[2]->rank != 1 || in[2]->shape[0] != K))
            return fail(g, LATHE_ERR_SHAPE, "conv2d: bias must be [%lld] for weight %s, got %s",
                        (long long)K, t.s[1], t.s[2]);
        return infer_pool_window(g, on, x, w->shape + 2, a[0].v, a[1].v, a[2].v, out, K);
    }
    case LT_OP_MAX_POOL2D:
    case LT_OP_AVG_POOL2D: {
        if (need_float(g, on, x, "input") || need_rank(g, on, x, 4, "input", "N, C, H, W")) return g->status;
        if (op == LT_OP_AVG_POOL2D && check_bool_attr(g, on, "count_include_pad", a[3].v[0]))
            return g->status;
        if (check_pool_padding(g, on, a, t.s[0])) return g->status;
        const int64_t one[2] = {1, 1};
        return infer_pool_window(g, on, x, a[0].v, a[1].v, a[2].v, one, out, x->shape[1]);
    }
    case LT_OP_ADAPTIVE_AVG_POOL2D: {
        if (need_float(g, on, x, "input") || need_rank(g, on, x, 4, "input", "N, C, H, W")) return g->status;
        for (int i = 0; i < 2; i++)
            if (a[0].v[i] <= 0 || a[0].v[i] > LT_MAX_NUMEL)
                return fail(g, LATHE_ERR_ARG, "adaptive_avg_pool2d: output size must be >= 1, got %lld (input %s)",
                            (long long)a[0].v[i], t.s[0]);
        if (x->shape[2] == 0 || x->shape[3] == 0)
            return fail(g, LATHE_ERR_SHAPE, "adaptive_avg_pool2d: input %s has an empty spatial dim", t.s[0]);
        out->dtype = x->dtype;
        out->rank = 4;
        out->shape[0] = x->shape[0];
        out->shape[1] = x->shape[1];
        out->shape[2] = a[0].v[0];
        out->shape[3] = a[0].v[1];
        return LATHE_OK;
    }
    case LT_OP_DROPOUT: {
        const lathe_node *r = in[1];
        if (need_float(g, on, x, "input")) return g->status;
        if (r->dtype != LATHE_I64 || r->rank != 1 || r->shape[0] != 2)
            return fail(g, LATHE_ERR_SHAPE, "dropout: the generator state must be i64[2] (seed, step), got %s", t.s[1]);
        if (nin == 3 && (in[2]->dtype != LATHE_I64 || in[2]->numel != 1))
            return fail(g, LATHE_ERR_SHAPE, "dropout: the index of the first element must be one i64, got %s", t.s[2]);
        if (!(a[0].f >= 0 && a[0].f <= 1))
            return fail(g, LATHE_ERR_ARG, "dropout: p must lie in [0, 1], got %g", a[0].f);
        out->dtype = x->dtype;
        out->rank = x->rank;
        memcpy(out->shape, x->shape, sizeof out->shape);
        return LATHE_OK;
    }
    case LT_OP_BATCH_NORM2D: {
        if (need_float(g, on, x, "input") || same_dtype(g, on, nin, in) ||
            need_rank(g, on, x, 4, "input", "N, C, H, W") || check_bool_attr(g, on, "training", a[0].v[0]))
            return g->status;
        static const char *what[] = {"", "weight", "bias", "running_mean", "running_var"};
        for (int i = 1; i < 5; i++)
            if (in[i]->rank != 1 || in[i]->shape[0] != x->shape[1]) {
                char ts[160];
                lathe_node_type_str(in[i], ts, sizeof ts);
                return fail(g, LATHE_ERR_SHAPE, "batch_norm2d: %s must be [%lld] for input %s, got %s",
                            what[i], (long long)x->shape[1], t.s[0], ts);
            }
        if (!(a[1].f >= 0 && a[1].f <= 1))
            return fail(g, LATHE_ERR_ARG, "batch_norm2d: momentum must be in [0, 1], got %g", a[1].f);
        if (!(a[2].f > 0))
            return fail(g, LATHE_ERR_ARG, "batch_norm2d: eps must be > 0, got %g", a[2].f);
        int64_t nhw = lt_numel(3, (int64_t[]){x->shape[0], x->shape[2], x->shape[3]});
        if (a[0].v[0] && nhw >= 0 && nhw <= 1)
            return fail(g, LATHE_ERR_SHAPE,
                        "batch_norm2d: training needs more than 1 value per channel, input is %s", t.s[0]);
        out->dtype = x->dtype;
        out->rank = 4;
        memcpy(out->shape, x->shape, sizeof out->shape);
        return LATHE_OK;
    }
    case LT_OP_LAYER_NORM: {
        /* normalized_shape is the last k dims of x; weight and bias have that shape */
        if (need_float(g, on, x, "input") || same_dtype(g, on, nin, in)) return g->status;
        int k = a[0].n, r = x->rank;
        if (r == 0) return fail(g, LATHE_ERR_SHAPE, "layer_norm: input must have rank >= 1, got %s", t.s[0]);
        if (k < 1)
            return fail(g, LATHE_ERR_ARG, "layer_norm: normalized_shape must list at least one dim (input %s)", t.s[0]);
        if (k > r)
            return fail(g, LATHE_ERR_SHAPE, "layer_norm: normalized_shape has %d dims but input %s has rank %d", k, t.s[0], r);
        char ns[160];
        lt_type_str(x->dtype, k, a[0].v, ns, sizeof ns);
        const char *dims = strchr(ns, '['); /* "[16,96]" without the dtype */
        if (memcmp(a[0].v, x->shape + r - k, sizeof(int64_t) * (size_t)k))
            return fail(g, LATHE_ERR_SHAPE, "layer_norm: normalized_shape %s does not match the last %d dims of input %s",
                        dims, k, t.s[0]);
        static const char *what[] = {"", "weight", "bias"};
        for (int i = 1; i < nin; i++)
            if (in[i]->rank != k || memcmp(in[i]->shape, a[0].v, sizeof(int64_t) * (size_t)k))
                return fail(g, LATHE_ERR_SHAPE, "layer_norm: %s must be %s (normalized_shape) for input %s, got %s",
                            what[i], dims, t.s[0], t.s[i]);
        if (!(a[1].f >= 0) || isinf(a[1].f))
            return fail(g, LATHE_ERR_ARG, "layer_norm: eps must be a finite number >= 0, got %g (input %s)", a[1].f, t.s[0]);
        for (int i = k; i < LATHE_MAX_RANK; i++) a[0].v[i] = 0;
        out->dtype = x->dtype;
        out->rank = r;
        memcpy(out->shape, x->shape, sizeof out->shape);
        return LATHE_OK;
    }
    case LT_OP_ALL_REDUCE: /* the elementwise sum of x over processes 0..parts-1: x's type */
        if (check_parts(g, on, a[0].v[0], t.s[0])) return g->status;
        if (x->dtype == LATHE_BOOL)
            return fail(g, LATHE_ERR_DTYPE, "all_reduce: bool input %s; cast it to i64 or a float first", t.s[0]);
        out->dtype = x->dtype;
        out->rank = x->rank;
        memcpy(out->shape, x->shape, sizeof out->shape);
        return LATHE_OK;
    case LT_OP_SOFTMAX:
    case LT_OP_LOG_SOFTMAX:
        if (need_float(g, on, x, "input")) return g->status;
        if (x->rank == 0) return fail(g, LATHE_ERR_SHAPE, "%s: input must have rank >= 1, got %s", on, t.s[0]);
        if (norm_axis(g, on, x, &a[0].v[0])) return g->status;
        out->dtype = x->dtype;
        out->rank = x->rank;
        memcpy(out->shape, x->shape, sizeof out->shape);
        return LATHE_OK;
    /* ---- gradient kernels (autodiff emits them; see ops.h) ---- */
    case LT_OP_SLICE_BACKWARD: {
        /* gy is slice's result; y is gy with dim axis grown back to size, the
         * slice's start:end:step as slice stores them (clamped, end >= start) */
        if (need_float(g, on, x, "gradient") || norm_axis(g, on, x, &a[0].v[0])) return g->status;
        int64_t ax = a[0].v[0], st = a[1].v[0], en = a[2].v[0], step = a[3].v[0], size = a[4].v[0];
        if (step <= 0)
            return fail(g, LATHE_ERR_ARG, "slice_backward: step must be >= 1, got %lld (gradient %s)", (long long)step, t.s[0]);
        if (size < 0 || size > LT_MAX_NUMEL)
            return fail(g, LATHE_ERR_ARG, "slice_backward: size %lld out of range (gradient %s)", (long long)size, t.s[0]);
        if (st < 0 || st > en || en > size)
            return fail(g, LATHE_ERR_ARG,
                        "slice_backward: need 0 <= start <= end <= size, got start %lld, end %lld, size %lld (gradient %s)",
                        (long long)st, (long long)en, (long long)size, t.s[0]);
        int64_t len = slice_len(st, en, step);
        if (len != x->shape[ax])
            return fail(g, LATHE_ERR_SHAPE,
                        "slice_backward: slice %lld:%lld:%lld of a size-%lld axis has %lld elements, but gradient %s has %lld along axis %lld",
                        (long long)st, (long long)en, (long long)step, (long long)size, (long long)len, t.s[0],
                        (long long)x->shape[ax], (long long)ax);
        out->dtype = x->dtype;
        out->rank = x->rank;
        memcpy(out->shape, x->shape, sizeof out->shape);
        out->shape[ax] = size;
        return LATHE_OK;
    }
    case LT_OP_INDEX_SELECT_BACKWARD: {
        /* gy is index_select's result (A..., I...; B...), index (I...) i64; y is
         * (A..., size, B...): zero, plus gy[a, i, b] added at y[a, index[i], b] */
        lathe_node *ix = in[1];
        if (need_float(g, on, x, "gradient") || need_index(g, on, ix, "gradient", t.s[0])) return g->status;
        int rank = x->rank - ix->rank + 1;
        int64_t ax = a[0].v[0], size = a[1].v[0];
        if (rank < 1)
            return fail(g, LATHE_ERR_SHAPE, "%s: gradient %s has fewer dims than index %s", on, t.s[0], t.s[1]);
        if (ax < -rank || ax >= rank)
            return fail(g, LATHE_ERR_ARG, "%s: axis %lld out of range [%d, %d] for a rank-%d result (gradient %s, index %s)",
                        on, (long long)ax, -rank, rank - 1, rank, t.s[0], t.s[1]);
        if (ax < 0) ax += rank;
        a[0].v[0] = ax;
        if (size < 0 || size > LT_MAX_NUMEL)
            return fail(g, LATHE_ERR_ARG, "%s: size %lld out of range (gradient %s)", on, (long long)size, t.s[0]);
        if (memcmp(x->shape + ax, ix->shape, sizeof(int64_t) * (size_t)ix->rank))
            return fail(g, LATHE_ERR_SHAPE, "%s: gradient %s does not hold index %s at axis %lld", on, t.s[0], t.s[1],
                        (long long)ax);
        if (select_rows(g, on, size, ix, "gradient", t.s[0], ax)) return g->status;
        out->dtype = x->dtype;
        out->rank = rank;
        int r = 0;
        for (int d = 0; d < ax; d++) out->shape[r++] = x->shape[d];
        out->shape[r++] = size;
        for (int d = (int)ax + ix->rank; d < x->rank; d++) out->shape[r++] = x->shape[d];
        return LATHE_OK;
    }
    case LT_OP_CONV2D_BACKWARD_INPUT: {
        /* gy is (N, K, P, Q), w is (K, C/groups, R, S); y is (N, C, H, W) with
         * (H, W) = size, and conv2d of such an input must give (P, Q) */
        lathe_node *w = in[1];
        if (need_float(g, on, x, "gradient") || same_dtype(g, on, nin, in) ||
            need_rank(g, on, x, 4, "gradient", "N, K, P, Q") ||
            need_rank(g, on, w, 4, "weight", "K, C/groups, R, S") || check_size_attr(g, on, a[4].v, 0, t.s[0]))
            return g->status;
        int64_t groups = a[3].v[0], K = w->shape[0];
        if (groups <= 0)
            return fail(g, LATHE_ERR_ARG, "%s: groups must be >= 1, got %lld (%s)", on, (long long)groups, ops);
        if (x->shape[1] != K || K % groups || w->shape[1] > LT_MAX_NUMEL / groups)
            return fail(g, LATHE_ERR_SHAPE,
                        "%s: weight %s does not fit gradient %s with groups=%lld (need gradient dim 1 == weight dim 0, K %% groups == 0)",
                        on, t.s[1], t.s[0], (long long)groups);
        int64_t xs[4] = {x->shape[0], w->shape[1] * groups, a[4].v[0], a[4].v[1]}, pq[2];
        char xts[160];
        lt_type_str(x->dtype, 4, xs, xts, sizeof xts);
        if (window_out(g, on, xts, xs + 2, w->shape + 2, a[0].v, a[1].v, a[2].v, pq) ||
            need_window_grad(g, on, x, xs[0], K, pq, "conv2d", xts, w->shape + 2, a[0].v, a[1].v, a[2].v))
            return g->status;
        out->dtype = x->dtype;
        out->rank = 4;
        memcpy(out->shape, xs, sizeof xs);
        return LATHE_OK;
    }
    case LT_OP_CONV2D_BACKWARD_WEIGHT: {
        /* x is (N, C, H, W), gy is (N, K, P, Q); y is (K, C/groups, R, S) with
         * (R, S) = kernel, and conv2d of x with it must give (P, Q) */
        lathe_node *gy = in[1];
        if (need_float(g, on, x, "input") || same_dtype(g, on, nin, in) ||
            need_rank(g, on, x, 4, "input", "N, C, H, W") || need_rank(g, on, gy, 4, "gradient", "N, K, P, Q"))
            return g->status;
        int64_t groups = a[3].v[0], C = x->shape[1], K = gy->shape[1], pq[2];
        if (groups <= 0)
            return fail(g, LATHE_ERR_ARG, "%s: groups must be >= 1, got %lld (%s)", on, (long long)groups, ops);
        if (C % groups || K % groups)
            return fail(g, LATHE_ERR_SHAPE,
                        "%s: input %s and gradient %s do not fit groups=%lld (need C %% groups == 0, K %% groups == 0)",
                        on, t.s[0], t.s[1], (long long)groups);
        if (window_out(g, on, t.s[0], x->shape + 2, a[4].v, a[0].v, a[1].v, a[2].v, pq) ||
            need_window_grad(g, on, gy, x->shape[0], K, pq, "conv2d", t.s[0], a[4].v, a[0].v, a[1].v, a[2].v))
            return g->status;
        out->dtype = x->dtype;
        out->rank = 4;
        out->shape[0] = K;
        out->shape[1] = C / groups;
        out->shape[2] = a[4].v[0];
        out->shape[3] = a[4].v[1];
        return LATHE_OK;
    }
    case LT_OP_MAX_POOL2D_BACKWARD: {
        /* gy is (N, C, P, Q), x is (N, C, H, W); y has x's shape, and
         * max_pool2d of x must give gy's shape */
        lathe_node *gy = x, *xi = in[1];
        const int64_t one[2] = {1, 1};
        int64_t pq[2];
        if (need_float(g, on, gy, "gradient") || same_dtype(g, on, nin, in) ||
            need_rank(g, on, gy, 4, "gradient", "N, C, P, Q") || need_rank(g, on, xi, 4, "input", "N, C, H, W") ||
            check_pool_padding(g, on, a, t.s[1]) ||
            window_out(g, on, t.s[1], xi->shape + 2, a[0].v, a[1].v, a[2].v, one, pq) ||
            need_window_grad(g, on, gy, xi->shape[0], xi->shape[1], pq, "max_pool2d", t.s[1], a[0].v, a[1].v, a[2].v, NULL))
            return g->status;
        out->dtype = xi->dtype;
        out->rank = 4;
        memcpy(out->shape, xi->shape, sizeof out->shape);
        return LATHE_OK;
    }
    case LT_OP_AVG_POOL2D_BACKWARD: {
        /* gy is (N, C, P, Q); y is (N, C, H, W) with (H, W) = size, and
         * avg_pool2d of such an input must give (P, Q) */
        if (need_float(g, on, x, "gradient") || need_rank(g, on, x, 4, "gradient", "N, C, P, Q") ||
            check_bool_attr(g, on, "count_include_pad", a[3].v[0]) || check_size_attr(g, on, a[4].v, 0, t.s[0]))
            return g->status;
        const int64_t one[2] = {1, 1};
        int64_t xs[4] = {x->shape[0], x->shape[1], a[4].v[0], a[4].v[1]}, pq[2];
        char xts[160];
        lt_type_str(x->dtype, 4, xs, xts, sizeof xts);
        if (check_pool_padding(g, on, a, xts) || window_out(g, on, xts, xs + 2, a[0].v, a[1].v, a[2].v, one, pq) ||
            need_window_grad(g, on, x, xs[0], xs[1], pq, "avg_pool2d", xts, a[0].v, a[1].v, a[2].v, NULL))
            return g->status;
        out->dtype = x->dtype;
        out->rank = 4;
        memcpy(out->shape, xs, sizeof xs);
        return LATHE_OK;
    }
    case LT_OP_ADAPTIVE_AVG_POOL2D_BACKWARD: {
        /* gy is (N, C, P, Q); y is (N, C, H, W) with (H, W) = size */
        if (need_float(g, on, x, "gradient") || need_rank(g, on, x, 4, "gradient", "N, C, P, Q") ||
            check_size_attr(g, on, a[0].v, 1, t.s[0]))
            return g->status;
        if (x->shape[2] == 0 || x->shape[3] == 0)
            return fail(g, LATHE_ERR_SHAPE,
                        "adaptive_avg_pool2d_backward: gradient %s has an empty spatial dim; adaptive_avg_pool2d never outputs one",
                        t.s[0]);
        out->dtype = x->dtype;
        out->rank = 4;
        out->shape[0] = x->shape[0];
        out->shape[1] = x->shape[1];
        out->shape[2] = a[0].v[0];
        out->shape[3] = a[0].v[1];
        return LATHE_OK;
    }
    default:
        break;
    }
    LT_ASSERT(!"op without a shape rule");
    return LATHE_ERR_UNSUPPORTED;
}
