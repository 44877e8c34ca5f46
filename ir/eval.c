/* eval.c - the reference evaluator.
 *
 * The oracle every compiled path is tested against, so it is written to be
 * obviously correct rather than fast.  Every node's value is an array of
 * numel doubles.  Each op computes in double and then rounds its result to
 * the node's dtype (round_to): f32 goes through float, i64 is truncated to an
 * integer, bool is 0 or 1.  So an f32 graph sees f32 storage after every op,
 * exactly as compiled f32 code would, while the arithmetic inside one op
 * (a sum, a softmax) is done once, in double.
 *
 * Nodes run in id order, which is a topological order.  The kernels are one
 * switch over the ops with plain loops and the shapes in a comment, like
 * llm.c's reference kernels.  Broadcasting maps an output multi-index to an
 * operand's offset with stride 0 on its size-1 dims (bcast_offset).
 *
 * Leaves: inputs, params and buffers keep their bound value in leaf[id];
 * each run copies it into val[id], so after the run applies the graph's
 * updates to leaf[], val[] still shows what the run saw, and every update
 * reads the pre-update values: updates are simultaneous. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ir.h"

struct lathe_eval {
    lathe_graph *g;
    double **val;  /* val[id]: value of node id in the last run, numel doubles */
    double **leaf; /* leaf[id]: stored value of an input/param/buffer; NULL until bound */
    bool ran;      /* the last run succeeded, so val[] is complete */
    char err[1024];
};

static lathe_status ev_fail(lathe_eval *ev, lathe_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static lathe_status ev_fail(lathe_eval *ev, lathe_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ev->err, sizeof ev->err, fmt, ap);
    va_end(ap);
    return st;
}

/* numel doubles; never malloc(0), so NULL always means out of memory */
static double *alloc_vals(int64_t numel) {
    if ((uint64_t)numel > SIZE_MAX / sizeof(double)) return NULL;
    return malloc((size_t)(numel ? numel : 1) * sizeof(double));
}

static bool is_named_leaf(const lathe_node *n) {
    return n->op == LT_OP_INPUT || n->op == LT_OP_PARAM || n->op == LT_OP_BUFFER;
}

/* "input 'x' (f32[2,3])", "output 'y' (%5 add, f32[2])" or "%5 add (f32[2])" */
static const char *describe(const lathe_graph *g, const lathe_node *n, char *buf, size_t len) {
    char ts[160];
    lathe_node_type_str(n, ts, sizeof ts);
    if (n->name) {
        snprintf(buf, len, "%s '%s' (%s)", lt_ops[n->op].name, n->name, ts);
        return buf;
    }
    for (int i = 0; i < g->nout; i++)
        if (g->outputs[i].node == n) {
            snprintf(buf, len, "output '%s' (%%%d %s, %s)", g->outputs[i].name, n->id,
                     lt_ops[n->op].name, ts);
            return buf;
        }
    snprintf(buf, len, "%%%d %s (%s)", n->id, lt_ops[n->op].name, ts);
    return buf;
}

/* ---- dtype conversion ------------------------------------------------------ */

/* double to i64: truncate toward zero.  C leaves NaN and out-of-range
 * conversions undefined (and PyTorch's result depends on the CPU), so the
 * oracle pins them: NaN gives 0, out-of-range values saturate. */
static int64_t to_i64(double v) {
    if (isnan(v)) return 0;
    if (v >= 9223372036854775808.0) return INT64_MAX;
    if (v < -9223372036854775808.0) return INT64_MIN;
    return (int64_t)v;
}

/* The value v stored in dtype t, as a double. */
static double round_to(lathe_dtype t, double v) {
    switch (t) {
    case LATHE_F32: return (double)(float)v;
    case LATHE_F64: return v;
    case LATHE_I64: return (double)to_i64(v);
    case LATHE_BOOL: return v != 0;
    }
    LT_ASSERT(!"unknown dtype");
    return 0;
}

/* Element i of raw data in dtype t. */
static double load(lathe_dtype t, const void *data, int64_t i) {
    const unsigned char *p = (const unsigned char *)data + (size_t)i * lathe_dtype_size(t);
    switch (t) {
    case LATHE_F32: {
        float f;
        memcpy(&f, p, sizeof f);
        return f;
    }
    case LATHE_F64: {
        double d;
        memcpy(&d, p, sizeof d);
        return d;
    }
    case LATHE_I64: {
        int64_t k;
        memcpy(&k, p, sizeof k);
        return (double)k;
    }
    case LATHE_BOOL: return *p != 0;
    }
    LT_ASSERT(!"unknown dtype");
    return 0;
}

/* Store v as element i of raw data in dtype t. */
static void store(lathe_dtype t, void *data, int64_t i, double v) {
    unsigned char *p = (unsigned char *)data + (size_t)i * lathe_dtype_size(t);
    switch (t) {
    case LATHE_F32: {
        float f = (float)v;
        memcpy(p, &f, sizeof f);
        return;
    }
    case LATHE_F64: memcpy(p, &v, sizeof v); return;
    case LATHE_I64: {
        int64_t k = to_i64(v);
        memcpy(p, &k, sizeof k);
        return;
    }
    case LATHE_BOOL: {
        bool b = v != 0;
        memcpy(p, &b, sizeof b);
        return;
    }
    }
    LT_ASSERT(!"unknown dtype");
}

/* ---- indexing ------------------------------------------------------------------ */

/* Multi-index of flat (row-major) index i in shape. */
static void unravel(int rank, const int64_t *shape, int64_t i, int64_t *idx) {
    for (int d = rank - 1; d >= 0; d--) {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
}

/* Offset into x (xrank, xshape) of the element that broadcasts to index idx
 * of a rank-`rank` result: x's dims line up with the last ones, and a size-1
 * dim of x always reads index 0 (stride 0). */
static int64_t bcast_offset(int rank, const int64_t *idx, int xrank, const int64_t *xshape) {
    int64_t off = 0;
    for (int k = 0; k < xrank; k++) {
        int d = rank - xrank + k;
        off = off * xshape[k] + (xshape[k] == 1 ? 0 : idx[d]);
    }
    return off;
}

/* Product of shape[lo..hi). */
static int64_t prod(const int64_t *shape, int lo, int hi) {
    int64_t p = 1;
    for (int d = lo; d < hi; d++) p *= shape[d];
    return p;
}

/* ---- elementwise ------------------------------------------------------------------ */

static double binary_op(lt_op op, double a, double b) {
    switch (op) {
    case LT_OP_ADD: return a + b;
    case LT_OP_SUB: return a - b;
    case LT_OP_MUL: return a * b;
    case LT_OP_DIV: return a / b;
    case LT_OP_POW: return pow(a, b);
    /* torch.maximum/minimum: NaN in either operand gives NaN */
    case LT_OP_MAXIMUM: return isnan(a) ? a : isnan(b) ? b : a > b ? a : b;
    case LT_OP_MINIMUM: return isnan(a) ? a : isnan(b) ? b : a < b ? a : b;
    /* comparisons with NaN are false, except ne */
    case LT_OP_GT: return a > b;
    case LT_OP_GE: return a >= b;
    case LT_OP_LT: return a < b;
    case LT_OP_LE: return a <= b;
    case LT_OP_EQ: return a == b;
    case LT_OP_NE: return a != b;
    default: LT_ASSERT(!"not a binary op");
    }
    return 0;
}

/* <math.h> defines no M_ constants in C11 */
static const double SQRT1_2 = 0.70710678118654752440;        /* 1/sqrt(2) */
static const double SQRT_2_OVER_PI = 0.79788456080286535588; /* sqrt(2/pi) */

static double unary_op(const lathe_node *n, double x) {
    switch (n->op) {
    case LT_OP_NEG: return -x;
    case LT_OP_EXP: return exp(x);
    case LT_OP_LOG: return log(x);
    case LT_OP_SQRT: return sqrt(x);
    case LT_OP_RSQRT: return 1 / sqrt(x);
    case LT_OP_ABS: return fabs(x);
    case LT_OP_RELU: return isnan(x) || x > 0 ? x : 0; /* keeps NaN, as torch.relu */
    case LT_OP_SIGMOID: return 1 / (1 + exp(-x));
    case LT_OP_TANH: return tanh(x);
    case LT_OP_ERF: return erf(x);
    case LT_OP_GELU: /* x Phi(x); erfc keeps the tail's precision, where 1 + erf(x/sqrt 2) cancels */
        if (n->attr[0].v[0]) return 0.5 * x * (1 + tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)));
        return 0.5 * x * erfc(-x * SQRT1_2);
    case LT_OP_SILU: return x / (1 + exp(-x));
    case LT_OP_SOFTPLUS: { /* log(1 + e^z) as max(z, 0) + log1p(e^-|z|): no overflow, no cancellation */
        double beta = n->attr[0].f, z = beta * x;
        return z > n->attr[1].f ? x : (fmax(z, 0) + log1p(exp(-fabs(z)))) / beta;
    }
    case LT_OP_LEAKY_RELU: return x > 0 ? x : x * n->attr[0].f; /* NaN stays NaN */
    case LT_OP_CLAMP: return isnan(x) ? x : fmin(fmax(x, n->attr[0].f), n->attr[1].f);
    case LT_OP_POW_SCALAR: return pow(x, n->attr[0].f);
    case LT_OP_CAST: return x; /* round_to does the conversion to the new dtype */
    default: LT_ASSERT(!"not a unary op");
    }
    return 0;
}

/* ---- reductions -------------------------------------------------------------------- */

/* x is (d0, ..., dr-1); y drops the dims in axes (or keeps them as 1: the
 * flat layout is the same either way). */
static void reduce(const lathe_node *n, const lathe_node *xn, const double *x, double *y) {
    bool red[LATHE_MAX_RANK] = {0};
    for (int i = 0; i < n->attr[0].n; i++) red[n->attr[0].v[i]] = true;
    int64_t count = 1; /* elements per output */
    for (int d = 0; d < xn->rank; d++)
        if (red[d]) count *= xn->shape[d];
    for (int64_t j = 0; j < n->numel; j++) y[j] = n->op == LT_OP_MAX ? -INFINITY : n->op == LT_OP_MIN ? INFINITY : 0;
    for (int64_t i = 0; i < xn->numel; i++) {
        int64_t idx[LATHE_MAX_RANK];
        unravel(xn->rank, xn->shape, i, idx);
        int64_t o = 0;
        for (int d = 0; d < xn->rank; d++)
            if (!red[d]) o = o * xn->shape[d] + idx[d];
        /* NaN sticks, as torch.amax; +0 is above -0 (IEEE 754's maximum) */
        bool zeros = x[i] == 0 && y[o] == 0;
        if (n->op == LT_OP_MAX) {
            if (isnan(x[i]) || x[i] > y[o] || (zeros && !signbit(x[i]))) y[o] = x[i];
        } else if (n->op == LT_OP_MIN) {
            if (isnan(x[i]) || x[i] < y[o] || (zeros && signbit(x[i]))) y[o] = x[i];
        } else y[o] += x[i];
    }
    if (n->op == LT_OP_MEAN) /* an empty extent gives 0/0 = NaN, as torch.mean */
        for (int64_t j = 0; j < n->numel; j++) y[j] /= (double)count;
}

/* x is (outer, K, inner) around axis; y is (outer, inner) */
static void argmax(const lathe_node *xn, int64_t axis, const double *x, double *y) {
    int64_t outer = prod(xn->shape, 0, (int)axis), K = xn->shape[axis],
            inner = prod(xn->shape, (int)axis + 1, xn->rank);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            double best = x[o * K * inner + i];
            int64_t at = 0;
            for (int64_t k = 1; k < K; k++) {
                double v = x[(o * K + k) * inner + i];
                /* the first maximum; a NaN counts as the maximum, the first NaN wins */
                if (!isnan(best) && (isnan(v) || v > best)) best = v, at = k;
            }
            y[o * inner + i] = (double)at;
        }
}

/* ---- shape ops ----------------------------------------------------------------------- */

/* x is (d0, ..., dr-1); y is (d[perm[0]], ..., d[perm[r-1]]) */
static void permute(const lathe_node *n, const lathe_node *xn, const double *x, double *y) {
    int64_t xs[LATHE_MAX_RANK];
    lt_strides(xn->rank, xn->shape, xs);
    for (int64_t i = 0; i < n->numel; i++) {
        int64_t idx[LATHE_MAX_RANK], off = 0;
        unravel(n->rank, n->shape, i, idx);
        for (int d = 0; d < n->rank; d++) off += idx[d] * xs[n->attr[0].v[d]];
        y[i] = x[off];
    }
}

/* operands are (outer, Lk, inner) around axis; y is (outer, sum Lk, inner) */
static void concat(lathe_eval *ev, const lathe_node *n, double *y) {
    int axis = (int)n->attr[0].v[0];
    int64_t outer = prod(n->shape, 0, axis), inner = prod(n->shape, axis + 1, n->rank), pos = 0;
    for (int64_t o = 0; o < outer; o++)
        for (int k = 0; k < n->nin; k++) {
            const double *x = ev->val[n->in[k]->id];
            int64_t len = n->in[k]->shape[axis] * inner;
            for (int64_t j = 0; j < len; j++) y[pos++] = x[o * len + j];
        }
}

/* Offset in the whole tensor (strides full_st) of element i of its slice
 * (shape part; attrs axis, start, end, step in attr as slice stores them):
 * index start + k * step along the axis. */
static int64_t slice_offset(const lt_attr *attr, const lathe_node *part, int64_t i, const int64_t *full_st) {
    int64_t idx[LATHE_MAX_RANK], off = 0;
    unravel(part->rank, part->shape, i, idx);
    idx[attr[0].v[0]] = attr[1].v[0] + idx[attr[0].v[0]] * attr[3].v[0];
    for (int d = 0; d < part->rank; d++) off += idx[d] * full_st[d];
    return off;
}

/* y is x with index start + i * step along axis */
static void slice(const lathe_node *n, const lathe_node *xn, const double *x, double *y) {
    int64_t xs[LATHE_MAX_RANK];
    lt_strides(xn->rank, xn->shape, xs);
    for (int64_t i = 0; i < n->numel; i++) y[i] = x[slice_offset(n->attr, n, i, xs)];
}

/* ---- contractions ----------------------------------------------------------------- */

/* a is (..., M, K), b is (..., K, N), y is (..., M, N); batch dims broadcast */
static void matmul(const lathe_node *n, const lathe_node *an, const lathe_node *bn,
                   const double *a, const double *b, double *y) {
    int R = n->rank;
    int64_t M = n->shape[R - 2], N = n->shape[R - 1], K = an->shape[an->rank - 1];
    int64_t nbatch = prod(n->shape, 0, R - 2);
    for (int64_t t = 0; t < nbatch; t++) {
        int64_t idx[LATHE_MAX_RANK];
        unravel(R - 2, n->shape, t, idx);
        const double *A = a + bcast_offset(R - 2, idx, an->rank - 2, an->shape) * M * K;
        const double *B = b + bcast_offset(R - 2, idx, bn->rank - 2, bn->shape) * K * N;
        for (int64_t m = 0; m < M; m++)
            for (int64_t j = 0; j < N; j++) {
                double s = 0;
                for (int64_t k = 0; k < K; k++) s += A[m * K + k] * B[k * N + j];
                y[(t * M + m) * N + j] = s;
            }
    }
}

/* x is (..., I), w is (O, I), bias is (O) or absent; y is (..., O) */
static void linear(const lathe_node *xn, const lathe_node *wn, const double *x, const double *w,
                   const double *bias, double *y) {
    int64_t rows = prod(xn->shape, 0, xn->rank - 1), I = wn->shape[1], O = wn->shape[0];
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < O; o++) {
            double s = bias ? bias[o] : 0;
            for (int64_t i = 0; i < I; i++) s += x[r * I + i] * w[o * I + i];
            y[r * O + o] = s;
        }
}

/* x is (N, C, H, W), w is (K, C/groups, R, S), bias is (K) or absent;
 * y is (N, K, P, Q).  Zero padding; output channel k sees input channels
 * of its group g = k / (K/groups). */
static void conv2d(const lathe_node *n, const lathe_node *xn, const lathe_node *wn,
                   const double *x, const double *w, const double *bias, double *y) {
    int64_t N = xn->shape[0], C = xn->shape[1], H = xn->shape[2], W = xn->shape[3];
    int64_t K = wn->shape[0], Cg = wn->shape[1], R = wn->shape[2], S = wn->shape[3];
    int64_t P = n->shape[2], Q = n->shape[3];
    const int64_t *st = n->attr[0].v, *pad = n->attr[1].v, *dil = n->attr[2].v;
    int64_t Kg = K / n->attr[3].v[0];
    for (int64_t b = 0; b < N; b++)
        for (int64_t k = 0; k < K; k++)
            for (int64_t p = 0; p < P; p++)
                for (int64_t q = 0; q < Q; q++) {
                    int64_t c0 = (k / Kg) * Cg;
                    double s = bias ? bias[k] : 0;
                    for (int64_t c = 0; c < Cg; c++)
                        for (int64_t r = 0; r < R; r++)
                            for (int64_t u = 0; u < S; u++) {
                                int64_t h = p * st[0] - pad[0] + r * dil[0];
                                int64_t v = q * st[1] - pad[1] + u * dil[1];
                                if (h < 0 || h >= H || v < 0 || v >= W) continue;
                                s += x[((b * C + c0 + c) * H + h) * W + v] *
                                     w[((k * Cg + c) * R + r) * S + u];
                            }
                    y[((b * K + k) * P + p) * Q + q] = s;
                }
}

/* ---- pooling --------------------------------------------------------------------- */

/* PyTorch's avg_pool2d divisor for the window at (h0, w0) of an H x W plane:
 * with count_include_pad the window clipped to [-pad, H + pad) (floor mode,
 * so the whole kernel), else the count of its in-bounds elements. */
static double avg_divisor(int64_t h0, int64_t w0, const int64_t k[2], const int64_t pad[2], int64_t H,
                          int64_t W, bool include_pad) {
    int64_t h1 = h0 + k[0], w1 = w0 + k[1];
    if (include_pad) {
        h1 = h1 < H + pad[0] ? h1 : H + pad[0];
        w1 = w1 < W + pad[1] ? w1 : W + pad[1];
        return (double)((h1 - h0) * (w1 - w0));
    }
    h0 = h0 > 0 ? h0 : 0, w0 = w0 > 0 ? w0 : 0;
    h1 = h1 < H ? h1 : H, w1 = w1 < W ? w1 : W;
    return (double)((h1 > h0 ? h1 - h0 : 0) * (w1 > w0 ? w1 - w0 : 0));
}

/* x is (N, C, H, W), y is (N, C, P, Q); window kh x kw at (p*sh - ph, q*sw - pw).
 * max: padding is -inf (never chosen), NaN propagates.
 * avg: the sum over the in-bounds elements / avg_divisor. */
static void pool2d(const lathe_node *n, const lathe_node *xn, const double *x, double *y) {
    int64_t NC = xn->shape[0] * xn->shape[1], H = xn->shape[2], W = xn->shape[3];
    int64_t P = n->shape[2], Q = n->shape[3];
    const int64_t *k = n->attr[0].v, *st = n->attr[1].v, *pad = n->attr[2].v;
    bool is_max = n->op == LT_OP_MAX_POOL2D, include_pad = !is_max && n->attr[3].v[0];
    for (int64_t c = 0; c < NC; c++)
        for (int64_t p = 0; p < P; p++)
            for (int64_t q = 0; q < Q; q++) {
                int64_t h0 = p * st[0] - pad[0], w0 = q * st[1] - pad[1];
                double acc = is_max ? -INFINITY : 0;
                for (int64_t i = 0; i < k[0]; i++)
                    for (int64_t j = 0; j < k[1]; j++) {
                        int64_t h = h0 + i, v = w0 + j;
                        if (h < 0 || h >= H || v < 0 || v >= W) continue;
                        double e = x[(c * H + h) * W + v];
                        if (!is_max) acc += e;
                        else if (isnan(e) || e > acc) acc = e;
                    }
                if (!is_max) acc /= avg_divisor(h0, w0, k, pad, H, W, include_pad);
                y[(c * P + p) * Q + q] = acc;
            }
}

/* Adaptive pooling's bin i of `out` over an extent of `in`:
 * [floor(i*in/out), ceil((i+1)*in/out)). */
static void adaptive_bin(int64_t i, int64_t in, int64_t out, int64_t *lo, int64_t *hi) {
    *lo = i * in / out;
    *hi = ((i + 1) * in + out - 1) / out;
}

/* x is (N, C, H, W), y is (N, C, P, Q); y[p, q] is the mean of its bin */
static void adaptive_avg_pool2d(const lathe_node *n, const lathe_node *xn, const double *x,
                                double *y) {
    int64_t NC = xn->shape[0] * xn->shape[1], H = xn->shape[2], W = xn->shape[3];
    int64_t P = n->shape[2], Q = n->shape[3];
    for (int64_t c = 0; c < NC; c++)
        for (int64_t p = 0; p < P; p++)
            for (int64_t q = 0; q < Q; q++) {
                int64_t h0, h1, w0, w1;
                adaptive_bin(p, H, P, &h0, &h1);
                adaptive_bin(q, W, Q, &w0, &w1);
                double s = 0;
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t v = w0; v < w1; v++) s += x[(c * H + h) * W + v];
                y[(c * P + p) * Q + q] = s / (double)((h1 - h0) * (w1 - w0));
            }
}

/* index_select's index (and its gradient's) holds rows in [0, rows): else
 * an error naming the node, the value, where it is and the operand. */
static lathe_status check_rows(lathe_eval *ev, const lathe_node *n, int64_t rows) {
    const lathe_node *in = n->in[1];
    const double *ix = ev->val[in->id];
    for (int64_t i = 0; i < in->numel; i++)
        if (!(ix[i] >= 0 && ix[i] < (double)rows)) {
            char where[400];
            if (in->name) snprintf(where, sizeof where, "'%s'", in->name);
            else describe(ev->g, in, where, sizeof where);
            return ev_fail(ev, LATHE_ERR_ARG, "%s %%%d: index %lld at element %lld of %s is out of range [0, %lld)",
                           lt_ops[n->op].name, n->id, (long long)ix[i], (long long)i, where, (long long)rows);
        }
    return LATHE_OK;
}

/* x is (A, R, B) around axis, index is (I) flattened, y is (A, I, B):
 * y[a, i, b] = x[a, index[i], b] */
static lathe_status index_select(lathe_eval *ev, const lathe_node *n, double *y) {
    const lathe_node *xn = n->in[0];
    int64_t ax = n->attr[0].v[0], R = xn->shape[ax];
    if (check_rows(ev, n, R)) return LATHE_ERR_ARG;
    const double *x = ev->val[xn->id], *ix = ev->val[n->in[1]->id];
    int64_t A = prod(xn->shape, 0, (int)ax), B = prod(xn->shape, (int)ax + 1, xn->rank), I = n->in[1]->numel;
    for (int64_t a = 0; a < A; a++)
        for (int64_t i = 0; i < I; i++)
            for (int64_t b = 0; b < B; b++) y[(a * I + i) * B + b] = x[(a * R + (int64_t)ix[i]) * B + b];
    return LATHE_OK;
}

/* all_gather and all_reduce (parts in attribute k): the evaluator is one
 * process, whose gather and sum over itself are its own value. */
static lathe_status world_of_one(lathe_eval *ev, const lathe_node *n, int k, const double *x, double *y) {
    int64_t parts = n->attr[k].v[0];
    if (parts != 1)
        return ev_fail(ev, LATHE_ERR_UNSUPPORTED, "%s %%%d over %lld processes: the evaluator runs as one process (a world of one)",
                       lt_ops[n->op].name, n->id, (long long)parts);
    for (int64_t i = 0; i < n->numel; i++) y[i] = x[i];
    return LATHE_OK;
}

/* ---- gradient kernels ------------------------------------------------------------ */

/* The adjoints of slice, conv2d and the pools, as PyTorch's CPU backward
 * kernels compute them.  gy always has the forward result's shape. */

/* gy is slice's result; y is gy's shape with `size` along axis: zero except
 * y[..., start + i*step, ...] = gy[..., i, ...] */
static void slice_backward(const lathe_node *n, const lathe_node *gn, const double *gy, double *y) {
    int64_t ys[LATHE_MAX_RANK];
    lt_strides(n->rank, n->shape, ys);
    for (int64_t j = 0; j < n->numel; j++) y[j] = 0;
    for (int64_t i = 0; i < gn->numel; i++) y[slice_offset(n->attr, gn, i, ys)] = gy[i];
}

/* gy is index_select's result (A, I, B), index is (I), y is (A, size, B):
 * zero, then y[a, index[i], b] += gy[a, i, b] for i in order */
static lathe_status index_select_backward(lathe_eval *ev, const lathe_node *n, double *y) {
    int64_t ax = n->attr[0].v[0], R = n->attr[1].v[0];
    if (check_rows(ev, n, R)) return LATHE_ERR_ARG;
    const double *gy = ev->val[n->in[0]->id], *ix = ev->val[n->in[1]->id];
    int64_t A = prod(n->shape, 0, (int)ax), B = prod(n->shape, (int)ax + 1, n->rank), I = n->in[1]->numel;
    for (int64_t j = 0; j < n->numel; j++) y[j] = 0;
    for (int64_t a = 0; a < A; a++)
        for (int64_t i = 0; i < I; i++)
            for (int64_t b = 0; b < B; b++) y[(a * R + (int64_t)ix[i]) * B + b] += gy[(a * I + i) * B + b];
    return LATHE_OK;
}

/* gy is (N, K, P, Q), w is (K, C/groups, R, S); y is (N, C, H, W).  For
 * input channel c of group g (c = g*Cg + ci):
 *   y[b,c,h,v] = sum over k of group g, r, u, and (p, q) with
 *                h = p*st0 - pad0 + r*dil0, v = q*st1 - pad1 + u*dil1,
 *                of gy[b,k,p,q] * w[k,ci,r,u] */
static void conv2d_backward_input(const lathe_node *n, const lathe_node *gn, const lathe_node *wn,
                                  const double *gy, const double *w, double *y) {
    int64_t N = n->shape[0], C = n->shape[1], H = n->shape[2], W = n->shape[3];
    int64_t K = wn->shape[0], Cg = wn->shape[1], R = wn->shape[2], S = wn->shape[3];
    int64_t P = gn->shape[2], Q = gn->shape[3];
    const int64_t *st = n->attr[0].v, *pad = n->attr[1].v, *dil = n->attr[2].v;
    int64_t Kg = K / n->attr[3].v[0];
    for (int64_t b = 0; b < N; b++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t v = 0; v < W; v++) {
                    int64_t grp = c / Cg, ci = c % Cg;
                    double s = 0;
                    for (int64_t k = grp * Kg; k < (grp + 1) * Kg; k++)
                        for (int64_t r = 0; r < R; r++)
                            for (int64_t u = 0; u < S; u++) {
                                int64_t ph = h + pad[0] - r * dil[0], qv = v + pad[1] - u * dil[1];
                                if (ph < 0 || ph % st[0] || qv < 0 || qv % st[1]) continue;
                                int64_t p = ph / st[0], q = qv / st[1];
                                if (p >= P || q >= Q) continue;
                                s += gy[((b * K + k) * P + p) * Q + q] * w[((k * Cg + ci) * R + r) * S + u];
                            }
                    y[((b * C + c) * H + h) * W + v] = s;
                }
}

/* x is (N, C, H, W), gy is (N, K, P, Q); y is (K, C/groups, R, S):
 *   y[k,c,r,u] = sum over b, p, q of gy[b,k,p,q] * x[b, c0 + c, h, v]
 * with h = p*st0 - pad0 + r*dil0, v = q*st1 - pad1 + u*dil1 (zero outside)
 * and c0 the first input channel of k's group. */
static void conv2d_backward_weight(const lathe_node *n, const lathe_node *xn, const lathe_node *gn,
                                   const double *x, const double *gy, double *y) {
    int64_t N = xn->shape[0], C = xn->shape[1], H = xn->shape[2], W = xn->shape[3];
    int64_t K = n->shape[0], Cg = n->shape[1], R = n->shape[2], S = n->shape[3];
    int64_t P = gn->shape[2], Q = gn->shape[3];
    const int64_t *st = n->attr[0].v, *pad = n->attr[1].v, *dil = n->attr[2].v;
    int64_t Kg = K / n->attr[3].v[0];
    for (int64_t k = 0; k < K; k++)
        for (int64_t c = 0; c < Cg; c++)
            for (int64_t r = 0; r < R; r++)
                for (int64_t u = 0; u < S; u++) {
                    int64_t c0 = (k / Kg) * Cg;
                    double s = 0;
                    for (int64_t b = 0; b < N; b++)
                        for (int64_t p = 0; p < P; p++)
                            for (int64_t q = 0; q < Q; q++) {
                                int64_t h = p * st[0] - pad[0] + r * dil[0];
                                int64_t v = q * st[1] - pad[1] + u * dil[1];
                                if (h < 0 || h >= H || v < 0 || v >= W) continue;
                                s += gy[((b * K + k) * P + p) * Q + q] * x[((b * C + c0 + c) * H + h) * W + v];
                            }
                    y[((k * Cg + c) * R + r) * S + u] = s;
                }
}

/* gy is (N, C, P, Q), x is (N, C, H, W); y has x's shape.  Each window's
 * gradient goes to the element max_pool2d picked, found as PyTorch's CPU
 * kernel does: start at the window's first in-bounds element with max -inf,
 * scan rows then columns, and move when `val > max || isnan(val)` (so the
 * first maximum, or the last NaN).  Overlapping windows add. */
static void max_pool2d_backward(const lathe_node *n, const lathe_node *gn, const double *gy,
                                const double *x, double *y) {
    int64_t NC = n->shape[0] * n->shape[1], H = n->shape[2], W = n->shape[3];
    int64_t P = gn->shape[2], Q = gn->shape[3];
    const int64_t *k = n->attr[0].v, *st = n->attr[1].v, *pad = n->attr[2].v;
    for (int64_t j = 0; j < n->numel; j++) y[j] = 0;
    for (int64_t c = 0; c < NC; c++)
        for (int64_t p = 0; p < P; p++)
            for (int64_t q = 0; q < Q; q++) {
                int64_t h0 = p * st[0] - pad[0], w0 = q * st[1] - pad[1], at = -1;
                double m = -INFINITY;
                for (int64_t i = 0; i < k[0]; i++)
                    for (int64_t j = 0; j < k[1]; j++) {
                        int64_t h = h0 + i, v = w0 + j;
                        if (h < 0 || h >= H || v < 0 || v >= W) continue;
                        int64_t off = (c * H + h) * W + v;
                        if (at < 0) at = off;
                        if (x[off] > m || isnan(x[off])) m = x[off], at = off;
                    }
                if (at >= 0) y[at] += gy[(c * P + p) * Q + q]; /* no in-bounds element: nothing to add */
            }
}

/* gy is (N, C, P, Q); y is (N, C, H, W): each window adds gy / avg_divisor
 * (the forward's) to each of its in-bounds elements. */
static void avg_pool2d_backward(const lathe_node *n, const lathe_node *gn, const double *gy, double *y) {
    int64_t NC = n->shape[0] * n->shape[1], H = n->shape[2], W = n->shape[3];
    int64_t P = gn->shape[2], Q = gn->shape[3];
    const int64_t *k = n->attr[0].v, *st = n->attr[1].v, *pad = n->attr[2].v;
    bool include_pad = n->attr[3].v[0];
    for (int64_t j = 0; j < n->numel; j++) y[j] = 0;
    for (int64_t c = 0; c < NC; c++)
        for (int64_t p = 0; p < P; p++)
            for (int64_t q = 0; q < Q; q++) {
                int64_t h0 = p * st[0] - pad[0], w0 = q * st[1] - pad[1];
                double gv = gy[(c * P + p) * Q + q] / avg_divisor(h0, w0, k, pad, H, W, include_pad);
                for (int64_t i = 0; i < k[0]; i++)
                    for (int64_t j = 0; j < k[1]; j++) {
                        int64_t h = h0 + i, v = w0 + j;
                        if (h < 0 || h >= H || v < 0 || v >= W) continue;
                        y[(c * H + h) * W + v] += gv;
                    }
            }
}

/* gy is (N, C, P, Q); y is (N, C, H, W): bin (p, q) adds gy / its area to
 * each of its elements (bins overlap when H % P != 0). */
static void adaptive_avg_pool2d_backward(const lathe_node *n, const lathe_node *gn, const double *gy,
                                         double *y) {
    int64_t NC = n->shape[0] * n->shape[1], H = n->shape[2], W = n->shape[3];
    int64_t P = gn->shape[2], Q = gn->shape[3];
    for (int64_t j = 0; j < n->numel; j++) y[j] = 0;
    for (int64_t c = 0; c < NC; c++)
        for (int64_t p = 0; p < P; p++)
            for (int64_t q = 0; q < Q; q++) {
                int64_t h0, h1, w0, w1;
                adaptive_bin(p, H, P, &h0, &h1);
                adaptive_bin(q, W, Q, &w0, &w1);
                double gv = gy[(c * P + p) * Q + q] / (double)((h1 - h0) * (w1 - w0));
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t v = w0; v < w1; v++) y[(c * H + h) * W + v] += gv;
            }
}

/* ---- normalization and losses ------------------------------------------------------ */

/* x is (N, C, H, W); weight, bias, running_mean, running_var are (C).
 * Training normalizes with the batch mean and biased variance over
 * (N, H, W); eval with the running statistics.  (The running-statistics
 * update is separate ops plus a graph update; see build.c.) */
static void batch_norm2d(lathe_eval *ev, const lathe_node *n, double *y) {
    const lathe_node *xn = n->in[0];
    const double *x = ev->val[xn->id], *wt = ev->val[n->in[1]->id], *bs = ev->val[n->in[2]->id];
    const double *rm = ev->val[n->in[3]->id], *rv = ev->val[n->in[4]->id];
    int64_t N = xn->shape[0], C = xn->shape[1], HW = xn->shape[2] * xn->shape[3];
    bool training = n->attr[0].v[0];
    double eps = n->attr[2].f;
    for (int64_t c = 0; c < C; c++) {
        double mean = rm[c], var = rv[c];
        if (training) {
            double s = 0, ss = 0, cnt = (double)(N * HW);
            for (int64_t b = 0; b < N; b++)
                for (int64_t i = 0; i < HW; i++) s += x[(b * C + c) * HW + i];
            mean = s / cnt;
            for (int64_t b = 0; b < N; b++)
                for (int64_t i = 0; i < HW; i++) {
                    double d = x[(b * C + c) * HW + i] - mean;
                    ss += d * d;
                }
            var = ss / cnt;
        }
        for (int64_t b = 0; b < N; b++)
            for (int64_t i = 0; i < HW; i++) {
                int64_t j = (b * C + c) * HW + i;
                y[j] = (x[j] - mean) / sqrt(var + eps) * wt[c] + bs[c];
            }
    }
}

/* x is (rows, M), M the product of the last k dims (normalized_shape);
 * weight and bias, when present, are (M).  Each row is normalized with its
 * mean and biased variance: (x - mean) / sqrt(var + eps) * w + b. */
static void layer_norm(lathe_eval *ev, const lathe_node *n, double *y) {
    const lathe_node *xn = n->in[0];
    const double *x = ev->val[xn->id];
    const double *wt = n->nin > 1 ? ev->val[n->in[1]->id] : NULL, *bs = n->nin > 2 ? ev->val[n->in[2]->id] : NULL;
    int k = n->attr[0].n;
    int64_t rows = prod(xn->shape, 0, xn->rank - k), M = prod(xn->shape, xn->rank - k, xn->rank);
    double eps = n->attr[1].f;
    for (int64_t r = 0; r < rows; r++) {
        const double *xr = x + r * M;
        double *yr = y + r * M;
        double s = 0, ss = 0;
        for (int64_t i = 0; i < M; i++) s += xr[i];
        double mean = s / (double)M;
        for (int64_t i = 0; i < M; i++) ss += (xr[i] - mean) * (xr[i] - mean);
        double sd = sqrt(ss / (double)M + eps);
        for (int64_t i = 0; i < M; i++) yr[i] = (xr[i] - mean) / sd * (wt ? wt[i] : 1) + (bs ? bs[i] : 0);
    }
}

/* x is (outer, K, inner) around axis; y has x's shape.  Subtracts the max
 * first: softmax = exp(x - m) / sum, log_softmax = x - m - log(sum). */
static void softmax(const lathe_node *n, const lathe_node *xn, const double *x, double *y) {
    int axis = (int)n->attr[0].v[0];
    int64_t outer = prod(xn->shape, 0, axis), K = xn->shape[axis],
            inner = prod(xn->shape, axis + 1, xn->rank);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            const double *xr = x + o * K * inner + i;
            double *yr = y + o * K * inner + i;
            double m = -INFINITY, s = 0;
            for (int64_t k = 0; k < K; k++)
                if (xr[k * inner] > m) m = xr[k * inner];
            for (int64_t k = 0; k < K; k++) s += exp(xr[k * inner] - m);
            for (int64_t k = 0; k < K; k++)
                yr[k * inner] = n->op == LT_OP_SOFTMAX ? exp(xr[k * inner] - m) / s
                                                       : xr[k * inner] - m - log(s);
        }
}

/* Sum, mean or copy of per-sample losses l (count of them) into y. */
static void reduce_loss(int64_t reduction, const double *l, int64_t count, double *y) {
    if (reduction == LATHE_REDUCE_NONE) {
        for (int64_t i = 0; i < count; i++) y[i] = l[i];
        return;
    }
    double s = 0;
    for (int64_t i = 0; i < count; i++) s += l[i];
    y[0] = reduction == LATHE_REDUCE_MEAN ? s / (double)count : s; /* empty mean: NaN */
}

/* x is (N, C, d...), labels (N, d...) of class indices in [0, C) or the
 * ignore index; the loss of element (i, s) is -log_softmax(x)[i, label, s]
 * (cross_entropy, with label smoothing e: (1 - e) of it plus e/C times the
 * sum over the classes) or -x[i, label, s] (nll_loss); an ignored element
 * loses 0 and is not counted in the mean. */
static lathe_status class_loss(lathe_eval *ev, const lathe_node *n, double *y) {
    const lathe_node *xn = n->in[0], *ln = n->in[1];
    const double *x = ev->val[xn->id], *lab = ev->val[ln->id];
    int64_t N = xn->shape[0], C = xn->shape[1], S = ln->numel / (N ? N : 1), M = ln->numel, ignore = n->attr[1].v[0];
    double eps = n->op == LT_OP_CROSS_ENTROPY ? n->attr[2].f : 0;
    double *l = alloc_vals(M);
    if (!l) return ev_fail(ev, LATHE_ERR_NOMEM, "%s %%%d: out of memory", lt_ops[n->op].name, n->id);
    int64_t count = 0;
    for (int64_t e = 0; e < M; e++) {
        l[e] = 0;
        if (lab[e] == (double)ignore) continue;
        if (!(lab[e] >= 0 && lab[e] < (double)C)) {
            char where[400];
            if (ln->name) snprintf(where, sizeof where, "'%s'", ln->name);
            else describe(ev->g, ln, where, sizeof where);
            free(l);
            return ev_fail(ev, LATHE_ERR_ARG,
                           "%s %%%d: label %lld at index %lld of %s is out of range [0, %lld)",
                           lt_ops[n->op].name, n->id, (long long)lab[e], (long long)e, where,
                           (long long)C);
        }
        count++;
        const double *xr = x + (e / S) * C * S + e % S; /* class k at xr[k * S] */
        int64_t c = (int64_t)lab[e];
        if (n->op == LT_OP_NLL_LOSS) {
            l[e] = -xr[c * S];
            continue;
        }
        double m = -INFINITY, s = 0, all = 0;
        for (int64_t k = 0; k < C; k++)
            if (xr[k * S] > m) m = xr[k * S];
        for (int64_t k = 0; k < C; k++) s += exp(xr[k * S] - m);
        double lse = m + log(s);
        for (int64_t k = 0; eps != 0 && k < C; k++) all += lse - xr[k * S];
        l[e] = (1 - eps) * (lse - xr[c * S]) + (eps != 0 ? eps / (double)C * all : 0);
    }
    if (n->attr[0].v[0] == LATHE_REDUCE_NONE) memcpy(y, l, sizeof *l * (size_t)M);
    else {
        double sum = 0;
        for (int64_t e = 0; e < M; e++) sum += l[e];
        y[0] = n->attr[0].v[0] == LATHE_REDUCE_MEAN ? sum / (double)count : sum; /* all ignored: NaN */
    }
    free(l);
    return LATHE_OK;
}

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* lathe_dropout's mask, element by element (lathe.h gives the formula). */
static void dropout(const lathe_node *n, const double *x, const double *rng, const double *first, double *y) {
    double p = n->attr[0].f, scale = round_to(n->dtype, 1 / (1 - p));
    int64_t base = first ? (int64_t)first[0] : 0;
    uint64_t seed = (uint64_t)(int64_t)rng[0], step = (uint64_t)(int64_t)rng[1], salt = (uint64_t)n->attr[1].v[0];
    uint64_t k = mix64(seed ^ mix64(step * 0x9E3779B97F4A7C15ull + salt));
    uint64_t thresh = (uint64_t)llround(p * 4294967296.0);
    for (int64_t i = 0; i < n->numel; i++) {
        bool keep = mix64(k + (uint64_t)(base + i + 1) * 0x9E3779B97F4A7C15ull) >> 32 >= thresh;
        y[i] = keep ? x[i] * scale : 0;
    }
}

/* a and b have the same shape; per-element loss (a - b)^2 */
static lathe_status mse_loss(lathe_eval *ev, const lathe_node *n, double *y) {
    const lathe_node *an = n->in[0];
    const double *a = ev->val[an->id], *b = ev->val[n->in[1]->id];
    double *l = alloc_vals(an->numel);
    if (!l) return ev_fail(ev, LATHE_ERR_NOMEM, "mse_loss %%%d: out of memory", n->id);
    for (int64_t i = 0; i < an->numel; i++) l[i] = (a[i] - b[i]) * (a[i] - b[i]);
    reduce_loss(n->attr[0].v[0], l, an->numel, y);
    free(l);
    return LATHE_OK;
}

/* ---- one node ------------------------------------------------------------------------ */

/* Compute node n into ev->val[n->id] (before rounding to its dtype). */
static lathe_status eval_node(lathe_eval *ev, const lathe_node *n) {
    double *y = ev->val[n->id];
    const lathe_node *xn = n->nin > 0 ? n->in[0] : NULL;
    const double *x = xn ? ev->val[xn->id] : NULL;
    const double *b = n->nin > 1 ? ev->val[n->in[1]->id] : NULL;
    const double *c = n->nin > 2 ? ev->val[n->in[2]->id] : NULL;
    switch (n->op) {
    case LT_OP_INPUT:
    case LT_OP_PARAM:
    case LT_OP_BUFFER:
        for (int64_t i = 0; i < n->numel; i++) y[i] = ev->leaf[n->id][i];
        return LATHE_OK;
    case LT_OP_CONST:
        for (int64_t i = 0; i < n->numel; i++) y[i] = load(n->dtype, n->data, i);
        return LATHE_OK;

    /* y has the broadcast shape of the operands */
    case LT_OP_ADD: case LT_OP_SUB: case LT_OP_MUL: case LT_OP_DIV: case LT_OP_POW:
    case LT_OP_MAXIMUM: case LT_OP_MINIMUM:
    case LT_OP_GT: case LT_OP_GE: case LT_OP_LT: case LT_OP_LE: case LT_OP_EQ: case LT_OP_NE:
        for (int64_t i = 0; i < n->numel; i++) {
            int64_t idx[LATHE_MAX_RANK];
            unravel(n->rank, n->shape, i, idx);
            double va = x[bcast_offset(n->rank, idx, xn->rank, xn->shape)];
            double vb = b[bcast_offset(n->rank, idx, n->in[1]->rank, n->in[1]->shape)];
            y[i] = binary_op(n->op, va, vb);
        }
        return LATHE_OK;
    case LT_OP_WHERE: /* cond, a, b and y broadcast together */
        for (int64_t i = 0; i < n->numel; i++) {
            int64_t idx[LATHE_MAX_RANK];
            unravel(n->rank, n->shape, i, idx);
            double cond = x[bcast_offset(n->rank, idx, xn->rank, xn->shape)];
            y[i] = cond != 0 ? b[bcast_offset(n->rank, idx, n->in[1]->rank, n->in[1]->shape)]
                             : c[bcast_offset(n->rank, idx, n->in[2]->rank, n->in[2]->shape)];
        }
        return LATHE_OK;

    /* y has x's shape */
    case LT_OP_NEG: case LT_OP_EXP: case LT_OP_LOG: case LT_OP_SQRT: case LT_OP_RSQRT:
    case LT_OP_ABS: case LT_OP_RELU: case LT_OP_SIGMOID: case LT_OP_TANH: case LT_OP_ERF:
    case LT_OP_GELU: case LT_OP_SILU: case LT_OP_SOFTPLUS: case LT_OP_LEAKY_RELU: case LT_OP_CLAMP:
    case LT_OP_POW_SCALAR: case LT_OP_CAST:
        for (int64_t i = 0; i < n->numel; i++) y[i] = unary_op(n, x[i]);
        return LATHE_OK;

    case LT_OP_SUM: case LT_OP_MEAN: case LT_OP_MAX: case LT_OP_MIN:
        reduce(n, xn, x, y);
        return LATHE_OK;
    case LT_OP_ARGMAX:
        argmax(xn, n->attr[0].v[0], x, y);
        return LATHE_OK;

    case LT_OP_RESHAPE: case LT_OP_FLATTEN: /* same row-major data */
        for (int64_t i = 0; i < n->numel; i++) y[i] = x[i];
        return LATHE_OK;
    case LT_OP_PERMUTE:
        permute(n, xn, x, y);
        return LATHE_OK;
    case LT_OP_BROADCAST_TO: /* x broadcasts to y's shape */
        for (int64_t i = 0; i < n->numel; i++) {
            int64_t idx[LATHE_MAX_RANK];
            unravel(n->rank, n->shape, i, idx);
            y[i] = x[bcast_offset(n->rank, idx, xn->rank, xn->shape)];
        }
        return LATHE_OK;
    case LT_OP_CONCAT:
        concat(ev, n, y);
        return LATHE_OK;
    case LT_OP_SLICE:
        slice(n, xn, x, y);
        return LATHE_OK;
    case LT_OP_INDEX_SELECT:
        return index_select(ev, n, y);
    case LT_OP_ALL_GATHER:
        return world_of_one(ev, n, 1, x, y);

    case LT_OP_MATMUL:
        matmul(n, xn, n->in[1], x, b, y);
        return LATHE_OK;
    case LT_OP_LINEAR:
        linear(xn, n->in[1], x, b, c, y);
        return LATHE_OK;
    case LT_OP_CONV2D:
        conv2d(n, xn, n->in[1], x, b, c, y);
        return LATHE_OK;

    case LT_OP_MAX_POOL2D: case LT_OP_AVG_POOL2D:
        pool2d(n, xn, x, y);
        return LATHE_OK;
    case LT_OP_ADAPTIVE_AVG_POOL2D:
        adaptive_avg_pool2d(n, xn, x, y);
        return LATHE_OK;

    case LT_OP_BATCH_NORM2D:
        batch_norm2d(ev, n, y);
        return LATHE_OK;
    case LT_OP_LAYER_NORM:
        layer_norm(ev, n, y);
        return LATHE_OK;
    case LT_OP_SOFTMAX: case LT_OP_LOG_SOFTMAX:
        softmax(n, xn, x, y);
        return LATHE_OK;
    case LT_OP_CROSS_ENTROPY: case LT_OP_NLL_LOSS:
        return class_loss(ev, n, y);
    case LT_OP_MSE_LOSS:
        return mse_loss(ev, n, y);
    case LT_OP_DROPOUT:
        dropout(n, x, b, n->nin == 3 ? ev->val[n->in[2]->id] : NULL, y);
        return LATHE_OK;
    case LT_OP_ALL_REDUCE:
        return world_of_one(ev, n, 0, x, y);

    case LT_OP_SLICE_BACKWARD:
        slice_backward(n, xn, x, y);
        return LATHE_OK;
    case LT_OP_CONV2D_BACKWARD_INPUT:
        conv2d_backward_input(n, xn, n->in[1], x, b, y);
        return LATHE_OK;
    case LT_OP_CONV2D_BACKWARD_WEIGHT:
        conv2d_backward_weight(n, xn, n->in[1], x, b, y);
        return LATHE_OK;
    case LT_OP_MAX_POOL2D_BACKWARD:
        max_pool2d_backward(n, xn, x, b, y);
        return LATHE_OK;
    case LT_OP_AVG_POOL2D_BACKWARD:
        avg_pool2d_backward(n, xn, x, y);
        return LATHE_OK;
    case LT_OP_ADAPTIVE_AVG_POOL2D_BACKWARD:
        adaptive_avg_pool2d_backward(n, xn, x, y);
        return LATHE_OK;
    case LT_OP_INDEX_SELECT_BACKWARD:
        return index_select_backward(ev, n, y);

    default:
        LT_ASSERT(!"evaluator: op without a kernel (the verifier admits only known ops)");
    }
    return LATHE_ERR_UNSUPPORTED;
}

/* ---- public API ------------------------------------------------------------------------ */

lathe_eval *lathe_eval_new(lathe_graph *g) {
    if (!g) return NULL;
    if (lathe_graph_verify(g) != LATHE_OK) return NULL;
    lathe_eval *ev = calloc(1, sizeof *ev);
    size_t n = (size_t)(g->nnodes ? g->nnodes : 1);
    if (ev) {
        ev->val = calloc(n, sizeof *ev->val);
        ev->leaf = calloc(n, sizeof *ev->leaf);
    }
    if (!ev || !ev->val || !ev->leaf) {
        lathe_eval_free(ev);
        lt_fail(g, LATHE_ERR_NOMEM, "eval: out of memory");
        return NULL;
    }
    ev->g = g;
    return ev;
}

void lathe_eval_free(lathe_eval *ev) {
    if (!ev) return;
    if (ev->g)
        for (int i = 0; i < ev->g->nnodes; i++) {
            free(ev->val[i]);
            free(ev->leaf[i]);
        }
    free(ev->val);
    free(ev->leaf);
    free(ev);
}

/* The input, param or buffer called name, or an error naming it. */
static lathe_node *find_leaf(lathe_eval *ev, const char *what, const char *name) {
    if (!name) {
        ev_fail(ev, LATHE_ERR_ARG, "%s: name is NULL", what);
        return NULL;
    }
    for (int i = 0; i < ev->g->nnodes; i++) {
        lathe_node *n = ev->g->nodes[i];
        if (n->name && is_named_leaf(n) && strcmp(n->name, name) == 0) return n;
    }
    if (lathe_graph_find(ev->g, name))
        ev_fail(ev, LATHE_ERR_NAME, "%s: '%s' is an output, not an input, param or buffer", what, name);
    else
        ev_fail(ev, LATHE_ERR_NAME, "%s: no input, param or buffer named '%s'", what, name);
    return NULL;
}

lathe_status lathe_eval_set(lathe_eval *ev, const char *name, const void *data, size_t nbytes) {
    lathe_node *n = find_leaf(ev, "eval_set", name);
    if (!n) return name ? LATHE_ERR_NAME : LATHE_ERR_ARG;
    char ds[400];
    size_t want = (size_t)n->numel * lathe_dtype_size(n->dtype);
    if (nbytes != want)
        return ev_fail(ev, LATHE_ERR_ARG, "eval_set %s: expected %zu bytes (%lld x %zu), got %zu",
                       describe(ev->g, n, ds, sizeof ds), want, (long long)n->numel,
                       lathe_dtype_size(n->dtype), nbytes);
    if (want && !data)
        return ev_fail(ev, LATHE_ERR_ARG, "eval_set %s: data is NULL", describe(ev->g, n, ds, sizeof ds));
    double *v = alloc_vals(n->numel);
    if (!v) return ev_fail(ev, LATHE_ERR_NOMEM, "eval_set '%s': out of memory", name);
    for (int64_t i = 0; i < n->numel; i++) v[i] = load(n->dtype, data, i);
    free(ev->leaf[n->id]);
    ev->leaf[n->id] = v;
    return LATHE_OK;
}

lathe_status lathe_eval_set_f64(lathe_eval *ev, const char *name, const double *data) {
    lathe_node *n = find_leaf(ev, "eval_set_f64", name);
    if (!n) return name ? LATHE_ERR_NAME : LATHE_ERR_ARG;
    if (n->numel && !data) {
        char ds[400];
        return ev_fail(ev, LATHE_ERR_ARG, "eval_set_f64 %s: data is NULL", describe(ev->g, n, ds, sizeof ds));
    }
    double *v = alloc_vals(n->numel);
    if (!v) return ev_fail(ev, LATHE_ERR_NOMEM, "eval_set_f64 '%s': out of memory", name);
    for (int64_t i = 0; i < n->numel; i++) v[i] = round_to(n->dtype, data[i]);
    free(ev->leaf[n->id]);
    ev->leaf[n->id] = v;
    return LATHE_OK;
}

lathe_status lathe_eval_run(lathe_eval *ev) {
    lathe_graph *g = ev->g;
    ev->ran = false;
    for (int i = 0; i < g->nnodes; i++) {
        lathe_node *n = g->nodes[i];
        if (is_named_leaf(n) && !ev->leaf[i]) {
            char ds[400];
            return ev_fail(ev, LATHE_ERR_NAME, "%s is not bound", describe(g, n, ds, sizeof ds));
        }
    }
    for (int i = 0; i < g->nnodes; i++) {
        lathe_node *n = g->nodes[i];
        if (!ev->val[i] && !(ev->val[i] = alloc_vals(n->numel)))
            return ev_fail(ev, LATHE_ERR_NOMEM, "eval: out of memory for %%%d %s", i, lt_ops[n->op].name);
        lathe_status st = eval_node(ev, n);
        if (st != LATHE_OK) return st;
        for (int64_t j = 0; j < n->numel; j++) ev->val[i][j] = round_to(n->dtype, ev->val[i][j]);
    }
    /* Buffers take their updates.  Every value is computed, and val[] keeps
     * what this run saw, so the updates are simultaneous. */
    for (int i = 0; i < g->nupd; i++) {
        const lathe_node *buf = g->updates[i].buffer, *v = g->updates[i].value;
        for (int64_t j = 0; j < buf->numel; j++) ev->leaf[buf->id][j] = ev->val[v->id][j];
    }
    ev->ran = true;
    return LATHE_OK;
}

/* n is a node of ev's graph and the last run succeeded. */
static bool check_node(lathe_eval *ev, const char *what, const lathe_node *n) {
    if (!n || n->g != ev->g || n->id < 0 || n->id >= ev->g->nnodes || ev->g->nodes[n->id] != n) {
        ev_fail(ev, LATHE_ERR_ARG, "%s: node is not in the evaluator's graph", what);
        return false;
    }
    if (!ev->ran) {
        char ds[400];
        ev_fail(ev, LATHE_ERR_ARG, "%s %s: no successful run yet", what, describe(ev->g, n, ds, sizeof ds));
        return false;
    }
    return true;
}

lathe_status lathe_eval_get(lathe_eval *ev, const lathe_node *n, void *out, size_t nbytes) {
    if (!check_node(ev, "eval_get", n)) return LATHE_ERR_ARG;
    char ds[400];
    size_t want = (size_t)n->numel * lathe_dtype_size(n->dtype);
    if (nbytes != want)
        return ev_fail(ev, LATHE_ERR_ARG, "eval_get %s: expected %zu bytes (%lld x %zu), got %zu",
                       describe(ev->g, n, ds, sizeof ds), want, (long long)n->numel,
                       lathe_dtype_size(n->dtype), nbytes);
    if (want && !out)
        return ev_fail(ev, LATHE_ERR_ARG, "eval_get %s: out is NULL", describe(ev->g, n, ds, sizeof ds));
    for (int64_t i = 0; i < n->numel; i++) store(n->dtype, out, i, ev->val[n->id][i]);
    return LATHE_OK;
}

const double *lathe_eval_value(lathe_eval *ev, const lathe_node *n) {
    return check_node(ev, "eval_value", n) ? ev->val[n->id] : NULL;
}

const double *lathe_eval_leaf(lathe_eval *ev, const char *name) {
    lathe_node *n = find_leaf(ev, "eval_leaf", name);
    if (!n) return NULL;
    if (!ev->leaf[n->id]) {
        char ds[400];
        ev_fail(ev, LATHE_ERR_NAME, "eval_leaf: %s is not bound", describe(ev->g, n, ds, sizeof ds));
    }
    return ev->leaf[n->id];
}

const char *lathe_eval_error(const lathe_eval *ev) { return ev ? ev->err : ""; }
