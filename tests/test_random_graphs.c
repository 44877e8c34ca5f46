/* test_random_graphs.c - random valid graphs, in the manner of NNSmith: the
 * JIT against the reference evaluator, forward and backward, and 1 thread
 * against 2 threads bit for bit.  At the end, reduced reproducers of the
 * bugs the generator found.
 *
 * Generator.  A graph is grown from a seed (xorshift, testutil's rng; the
 * same seed gives the same graph): one to three inputs (f32 or f64 for the
 * graph, rank 0-4, dims 1-5, some requiring grad) and maybe a parameter,
 * then 5-25 ops, each made by an op generator picked at random from `gens`.
 * A generator picks operands among the values made so far (preferring values
 * nothing uses yet, so graphs stay connected) or makes new leaves (inputs,
 * params, buffers, consts) whose shapes satisfy the op's rule (infer.c):
 * broadcast-compatible shapes, axis lists, permutations, factorizations of
 * numel, windows that fit, and so on.  Casts make islands of the other float
 * dtype; a few slices and concats make empty tensors; a few layer norms and
 * softmaxes take a new input of 64 rows, which fusion's row statistics need.
 *
 * Every float value carries an interval [lo, hi] that holds for any input
 * values the test binds (inputs and params in [-1, 1], or [0.5, 2] for the
 * positive ones), computed by interval arithmetic per op.  The intervals make
 * the graphs numerically safe by construction, not by luck: log, sqrt, rsqrt,
 * a divisor and pow's base get an operand whose interval is >= 0.25 (or are
 * made so first: abs(x) + c, exp(x), x^2 + c or sigmoid(x) + c), exp gets
 * |x| <= 3, and a value about to be multiplied or contracted is first scaled
 * by a power of two (exact) so that nothing grows past a few hundred.
 * Labels are in range by construction too: a labels input is bound to
 * [0, C), or labels are argmax over at most C classes.  Comparisons and
 * argmax feed where, a cast or a loss; whatever bool or i64 value is left
 * unused is cast to float, and every sink is gathered into the outputs, so
 * every op built reaches an output (the coverage below counts only such ops).
 * Plain buffers may also take a computed value as their update.
 *
 * Each graph gets one or two float outputs, and when one requires grad, the
 * loss sum(y1 * C1) [+ sum(y2 * C2)] with random constant tensors C (a random
 * cotangent: a constant one would hide permutation bugs in gradients) goes to
 * lathe_backward.  The text form must parse back to the same text.  Both
 * backends are compiled, bound to the same values and run; every output
 * (gradients included) and every buffer must agree (see close_enough for the
 * tolerances).  The JIT program then runs again with 2 threads and must give
 * the same bits.  On a mismatch the graph is printed as text IR (replay it
 * with `lathe dump FILE --stage fused`, or rerun this graph alone with
 * LATHE_RANDOM_GRAPHS_SEED=S LATHE_RANDOM_GRAPHS=1); the run goes on and
 * fails at the end with the list of failing seeds.
 *
 * Environment: LATHE_RANDOM_GRAPHS (count, default 200),
 * LATHE_RANDOM_GRAPHS_SEED (first seed, default 1), LATHE_RANDOM_GRAPHS_VERBOSE
 * (print every graph). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lathe_compiler.h"
#include "testutil.h"

enum { MAX_VALS = 512, MAX_LEAVES = 128, NCAP = 256, MAXR = 4 };

typedef enum { K_UNIFORM, K_POSITIVE, K_LABELS, K_MASK } leaf_kind;
typedef enum { R_INPUT, R_PARAM, R_BUFFER, R_CONST } leaf_role;

typedef struct {
    lathe_node *n;
    leaf_kind kind;
    int64_t classes; /* K_LABELS: values in [0, classes) */
} leaf;

typedef struct {
    lathe_node *n;
    double lo, hi; /* every element lies in [lo, hi] (i64: [0, hi]; bool [0, 1]) */
    int uses;
} val;

typedef struct {
    lathe_graph *g;
    rng r;
    lathe_dtype t; /* the graph's float dtype */
    val v[MAX_VALS];
    int nv;
    leaf leaves[MAX_LEAVES];
    int nleaves;
    int nops, fails, names;
    const char *gen_name; /* the generator running, for failure messages */
    uint64_t seed;
} gen;

static bool verbose;

/* ---- random helpers ------------------------------------------------------- */

static int ri(gen *s, int lo, int hi) { /* inclusive */
    int v = lo + (int)floor(rng_uniform(&s->r, 0, hi - lo + 1));
    return v > hi ? hi : v;
}
static bool chance(gen *s, double p) { return rng_uniform(&s->r, 0, 1) < p; }

static int64_t numel(int r, const int64_t *sh) {
    int64_t n = 1;
    for (int i = 0; i < r; i++) n *= sh[i];
    return n;
}
static double mag(const val *v) { return fmax(fabs(v->lo), fabs(v->hi)); }
static bool isf(const val *v) { return lt_is_float(v->n->dtype); }
static lathe_dtype other_float(lathe_dtype t) { return t == LATHE_F32 ? LATHE_F64 : LATHE_F32; }
static lathe_dtype dt(const val *v) { return v->n->dtype; }
static int rk(const val *v) { return v->n->rank; }
static const int64_t *sh(const val *v) { return v->n->shape; }
static double min4(double a, double b, double c, double d) { return fmin(fmin(a, b), fmin(c, d)); }
static double max4(double a, double b, double c, double d) { return fmax(fmax(a, b), fmax(c, d)); }

/* NumPy broadcast of two shapes; false when they do not fit. */
static bool bcast(int ra, const int64_t *a, int rb, const int64_t *b, int *ro, int64_t *o) {
    int r = ra > rb ? ra : rb;
    for (int d = 0; d < r; d++) {
        int ka = ra - 1 - d, kb = rb - 1 - d;
        int64_t ea = ka >= 0 ? a[ka] : 1, eb = kb >= 0 ? b[kb] : 1;
        if (ea != eb && ea != 1 && eb != 1) return false;
        o[r - 1 - d] = ea == 1 ? eb : ea;
    }
    *ro = r;
    return true;
}

/* Split n into r dims at random (each prime factor goes to a random dim). */
static void factorize(gen *s, int64_t n, int r, int64_t *out) {
    for (int d = 0; d < r; d++) out[d] = 1;
    if (r == 0) return;
    if (n == 0) {
        for (int d = 0; d < r; d++) out[d] = ri(s, 1, 3);
        out[ri(s, 0, r - 1)] = 0;
        return;
    }
    int64_t m = n;
    for (int64_t p = 2; p * p <= m; p++)
        while (m % p == 0) out[ri(s, 0, r - 1)] *= p, m /= p;
    if (m > 1) out[ri(s, 0, r - 1)] *= m;
}

static int rand_shape(gen *s, int minr, int maxr, int64_t cap, int64_t *out) {
    int r = ri(s, minr, maxr);
    for (int d = 0; d < r; d++) out[d] = ri(s, 1, 5);
    while (numel(r, out) > cap) { /* shrink the largest dim */
        int big = 0;
        for (int d = 1; d < r; d++)
            if (out[d] > out[big]) big = d;
        out[big]--;
    }
    return r;
}

/* ---- the value pool ----------------------------------------------------- */

/* Record a builder's result.  NULL (the builder refused) is counted as a
 * generation failure, the error is cleared, and generation goes on. */
static val *push(gen *s, lathe_node *n, double lo, double hi) {
    if (!n) {
        s->fails++;
        if (verbose || s->fails <= 3)
            fprintf(stderr, "random graph %llu: generator %s: builder failed: %s\n",
                    (unsigned long long)s->seed, s->gen_name, lathe_graph_error(s->g));
        lathe_graph_clear_error(s->g);
        return NULL;
    }
    if (lathe_graph_status(s->g) != LATHE_OK) { /* an error not reported through n */
        s->fails++;
        fprintf(stderr, "random graph %llu: generator %s: stray error: %s\n", (unsigned long long)s->seed,
                s->gen_name, lathe_graph_error(s->g));
        lathe_graph_clear_error(s->g);
    }
    if (s->nv == MAX_VALS) return NULL;
    if (lt_ops[n->op].kind != LT_LEAF) s->nops++;
    if (n->dtype == LATHE_BOOL) lo = 0, hi = 1;
    val *v = &s->v[s->nv++];
    *v = (val){n, lo, hi, 0};
    return v;
}

static lathe_node *use(val *v) {
    v->uses++;
    return v->n;
}

typedef bool (*pred_fn)(const val *v, const void *ctx);

/* A random value satisfying ok: one nothing uses yet with probability 0.6
 * (when there is one), else any. */
static val *pick_if(gen *s, pred_fn ok, const void *ctx) {
    static int all[MAX_VALS], unused[MAX_VALS];
    int n = 0, nu = 0;
    for (int i = 0; i < s->nv; i++)
        if (ok(&s->v[i], ctx)) {
            all[n++] = i;
            if (!s->v[i].uses && s->v[i].n->op != LT_OP_CONST) unused[nu++] = i;
        }
    if (!n) return NULL;
    if (nu && chance(s, 0.6)) return &s->v[unused[ri(s, 0, nu - 1)]];
    return &s->v[all[ri(s, 0, n - 1)]];
}

typedef struct {
    int minr, maxr;
    bool nonempty;
    int dtype; /* -1: any float */
} crit;

static bool crit_ok(const val *v, const void *ctx) {
    const crit *c = ctx;
    if (c->dtype < 0 ? !isf(v) : (int)dt(v) != c->dtype) return false;
    if (rk(v) < c->minr || rk(v) > c->maxr) return false;
    return !c->nonempty || v->n->numel > 0;
}
static val *pick(gen *s, int minr, int maxr, bool nonempty) {
    crit c = {minr, maxr, nonempty, -1};
    return pick_if(s, crit_ok, &c);
}

/* ---- leaves --------------------------------------------------------------- */

static val *new_leaf(gen *s, lathe_dtype t, int rank, const int64_t *shape, leaf_kind kind,
                     leaf_role role, int64_t classes) {
    char name[48];
    lathe_node *n = NULL;
    double lo = -1, hi = 1;
    if (kind == K_POSITIVE) lo = 0.5, hi = 2;
    if (kind == K_LABELS) lo = 0, hi = (double)(classes - 1);
    int id = s->names++;
    switch (role) {
    case R_INPUT:
        snprintf(name, sizeof name, kind == K_LABELS ? "labels%d" : kind == K_MASK ? "mask%d" : "x%d", id);
        n = lathe_input(s->g, name, t, rank, shape);
        if (n && lt_is_float(t) && chance(s, 0.6)) lathe_set_requires_grad(n, true);
        break;
    case R_PARAM:
        snprintf(name, sizeof name, "layer%d.weight", id);
        n = lathe_param(s->g, name, t, rank, shape, chance(s, 0.85));
        break;
    case R_BUFFER:
        snprintf(name, sizeof name, "layer%d.state", id);
        n = lathe_buffer(s->g, name, t, rank, shape);
        break;
    case R_CONST: {
        int64_t k = numel(rank, shape);
        double *d = malloc((size_t)(k + 1) * sizeof *d);
        float *f = malloc((size_t)(k + 1) * sizeof *f);
        for (int64_t i = 0; i < k; i++) d[i] = rng_uniform(&s->r, lo, hi), f[i] = (float)d[i];
        n = lathe_const(s->g, t, rank, shape, t == LATHE_F32 ? (void *)f : (void *)d);
        free(d);
        free(f);
        break;
    }
    }
    if (n && role != R_CONST && s->nleaves < MAX_LEAVES) s->leaves[s->nleaves++] = (leaf){n, kind, classes};
    return push(s, n, lo, hi);
}

/* A new float operand of this shape: an input, a param, a const or a buffer. */
static val *new_operand(gen *s, lathe_dtype t, int rank, const int64_t *shape) {
    double u = rng_uniform(&s->r, 0, 1);
    leaf_role role = u < 0.45 ? R_INPUT : u < 0.75 ? R_PARAM : u < 0.95 ? R_CONST : R_BUFFER;
    return new_leaf(s, t, rank, shape, chance(s, 0.15) ? K_POSITIVE : K_UNIFORM, role, 0);
}

/* ---- ops with their intervals ------------------------------------------------ */

static lathe_node *scalar(gen *s, const val *like, double c) { return lathe_scalar(s->g, dt(like), c); }

static val *op_unary(gen *s, lt_op op, val *x) {
    lathe_graph *g = s->g;
    lathe_node *n = use(x);
    double lo = x->lo, hi = x->hi;
    switch (op) {
    case LT_OP_NEG: return push(s, lathe_neg(g, n), -hi, -lo);
    case LT_OP_ABS:
        if (lo >= 0) return push(s, lathe_abs(g, n), lo, hi);
        if (hi <= 0) return push(s, lathe_abs(g, n), -hi, -lo);
        return push(s, lathe_abs(g, n), 0, mag(x));
    case LT_OP_RELU: return push(s, lathe_relu(g, n), fmax(lo, 0), fmax(hi, 0));
    case LT_OP_EXP: return push(s, lathe_exp(g, n), exp(lo), exp(hi));
    case LT_OP_LOG: return push(s, lathe_log(g, n), log(lo), log(hi));
    case LT_OP_SQRT: return push(s, lathe_sqrt(g, n), sqrt(lo), sqrt(hi));
    case LT_OP_RSQRT: return push(s, lathe_rsqrt(g, n), 1 / sqrt(hi), 1 / sqrt(lo));
    case LT_OP_SIGMOID: return push(s, lathe_sigmoid(g, n), 1 / (1 + exp(-lo)), 1 / (1 + exp(-hi)));
    case LT_OP_TANH: return push(s, lathe_tanh(g, n), tanh(lo), tanh(hi));
    case LT_OP_ERF: return push(s, lathe_erf(g, n), erf(lo), erf(hi));
    default: LT_ASSERT(0);
    }
    return NULL;
}

static val *op_binary(gen *s, lt_op op, val *a, val *b) {
    lathe_graph *g = s->g;
    lathe_node *x = use(a), *y = use(b);
    double p1, p2, p3, p4;
    switch (op) {
    case LT_OP_ADD: return push(s, lathe_add(g, x, y), a->lo + b->lo, a->hi + b->hi);
    case LT_OP_SUB: return push(s, lathe_sub(g, x, y), a->lo - b->hi, a->hi - b->lo);
    case LT_OP_MUL:
        p1 = a->lo * b->lo, p2 = a->lo * b->hi, p3 = a->hi * b->lo, p4 = a->hi * b->hi;
        return push(s, lathe_mul(g, x, y), min4(p1, p2, p3, p4), max4(p1, p2, p3, p4));
    case LT_OP_DIV: /* b->lo > 0 */
        p1 = a->lo / b->lo, p2 = a->lo / b->hi, p3 = a->hi / b->lo, p4 = a->hi / b->hi;
        return push(s, lathe_div(g, x, y), min4(p1, p2, p3, p4), max4(p1, p2, p3, p4));
    case LT_OP_POW: /* a->lo > 0: b log a is bilinear, so the corners bound it */
        p1 = pow(a->lo, b->lo), p2 = pow(a->lo, b->hi), p3 = pow(a->hi, b->lo), p4 = pow(a->hi, b->hi);
        return push(s, lathe_pow(g, x, y), min4(p1, p2, p3, p4), max4(p1, p2, p3, p4));
    case LT_OP_MAXIMUM: return push(s, lathe_maximum(g, x, y), fmax(a->lo, b->lo), fmax(a->hi, b->hi));
    case LT_OP_MINIMUM: return push(s, lathe_minimum(g, x, y), fmin(a->lo, b->lo), fmin(a->hi, b->hi));
    default: LT_ASSERT(0);
    }
    return NULL;
}

/* x + c and x * c with a scalar constant. */
static val *add_c(gen *s, val *x, double c) {
    return push(s, lathe_add(s->g, use(x), scalar(s, x, c)), x->lo + c, x->hi + c);
}
static val *mul_c(gen *s, val *x, double c) {
    double a = x->lo * c, b = x->hi * c;
    return push(s, lathe_mul(s->g, use(x), scalar(s, x, c)), fmin(a, b), fmax(a, b));
}

/* x, or x scaled by a power of two (exactly) so that |x| <= lim. */
static val *tame(gen *s, val *x, double lim) {
    if (!x || mag(x) <= lim) return x;
    int k = (int)ceil(log2(mag(x) / lim));
    return mul_c(s, x, ldexp(1, -k));
}

/* x if it lies in [0.25, hmax] (hmax >= 2), else a function of it that does. */
static val *positive(gen *s, val *x, double hmax) {
    if (!x) return NULL;
    if (x->lo >= 0.25 && x->hi <= hmax) return x;
    double c = ldexp(ri(s, 1, 4), -2); /* 0.25 .. 1, exact */
    switch (ri(s, 0, 3)) {
    case 0: return add_c(s, op_unary(s, LT_OP_ABS, tame(s, x, hmax - 1)), c);
    case 1: return op_unary(s, LT_OP_EXP, tame(s, x, 0.6)); /* in [e^-0.6, e^0.6] = [0.55, 1.8] */
    case 2: {
        val *t = tame(s, x, sqrt(hmax - 1));
        if (!t) return NULL;
        double m = t->lo <= 0 && t->hi >= 0 ? 0 : fmin(t->lo * t->lo, t->hi * t->hi);
        val *sq = push(s, lathe_pow_scalar(s->g, use(t), 2), m, mag(t) * mag(t));
        return sq ? add_c(s, sq, c) : NULL;
    }
    default: return add_c(s, op_unary(s, LT_OP_SIGMOID, x), c);
    }
}

/* A shape that broadcasts against a's to at most NCAP elements: a's with some
 * leading dims dropped, some dims set to 1, size-1 dims grown, or a new
 * leading dim. */
static int compat_shape(gen *s, const lathe_node *a, int64_t *out) {
    int r = a->rank, drop = chance(s, 0.3) ? ri(s, 0, r) : 0, k = 0;
    int64_t grown = a->numel;
    if (drop == 0 && r < MAXR && chance(s, 0.15)) {
        int64_t d = ri(s, 2, 3);
        if (grown * d <= NCAP) out[k++] = d, grown *= d;
    }
    for (int d = drop; d < r; d++) {
        int64_t e = a->shape[d];
        if (e == 1 && chance(s, 0.3)) {
            int64_t m = ri(s, 2, 3);
            if (grown * m <= NCAP) e = m, grown *= m;
        } else if (chance(s, 0.25)) e = 1;
        out[k++] = e;
    }
    return k;
}

typedef struct {
    const lathe_node *a;
    int rank;
    const int64_t *shape; /* or this shape, when a is NULL */
} bctx;

/* Same dtype as a, and broadcasts with it to at most NCAP elements. */
static bool bcast_ok(const val *v, const void *ctx) {
    const bctx *c = ctx;
    if (dt(v) != c->a->dtype || v->n == c->a) return false;
    int r;
    int64_t o[LATHE_MAX_RANK];
    return bcast(c->a->rank, c->a->shape, rk(v), sh(v), &r, o) && r <= MAXR && numel(r, o) <= NCAP;
}

/* A second operand for a: an existing value that broadcasts with it, or a new one. */
static val *partner(gen *s, val *a) {
    bctx c = {a->n, 0, NULL};
    val *b = chance(s, 0.5) ? pick_if(s, bcast_ok, &c) : NULL;
    if (b) return b;
    int64_t shp[LATHE_MAX_RANK];
    int r = compat_shape(s, a->n, shp);
    return new_operand(s, dt(a), r, shp);
}

/* ---- op generators ---------------------------------------------------------- */

static val *g_binary(gen *s) {
    static const lt_op ops[] = {LT_OP_ADD, LT_OP_SUB, LT_OP_MUL, LT_OP_MAXIMUM, LT_OP_MINIMUM};
    lt_op op = ops[ri(s, 0, 4)];
    val *a = pick(s, 0, MAXR, false);
    if (!a) return NULL;
    val *b = partner(s, a);
    if (!b) return NULL;
    double lim = op == LT_OP_MUL ? 8 : 128;
    a = tame(s, a, lim), b = tame(s, b, lim);
    if (!a || !b) return NULL;
    return chance(s, 0.5) ? op_binary(s, op, a, b) : op_binary(s, op, b, a);
}

static val *g_div(gen *s) {
    val *a = pick(s, 0, MAXR, false);
    if (!a) return NULL;
    val *b = positive(s, partner(s, a), 64);
    a = tame(s, a, 16);
    if (!a || !b) return NULL;
    return op_binary(s, LT_OP_DIV, a, b);
}

static val *g_pow(gen *s) {
    val *a = pick(s, 0, MAXR, false);
    if (!a) return NULL;
    val *b = tame(s, partner(s, a), 2);
    a = positive(s, a, 4);
    if (!a || !b) return NULL;
    return op_binary(s, LT_OP_POW, a, b);
}

static val *g_unary(gen *s) {
    static const lt_op ops[] = {LT_OP_NEG, LT_OP_ABS, LT_OP_RELU, LT_OP_SIGMOID, LT_OP_TANH, LT_OP_EXP, LT_OP_ERF};
    lt_op op = ops[ri(s, 0, 6)];
    val *x = pick(s, 0, MAXR, false);
    if (op == LT_OP_EXP) x = tame(s, x, 3);
    return x ? op_unary(s, op, x) : NULL;
}

static val *g_log_sqrt(gen *s) {
    static const lt_op ops[] = {LT_OP_LOG, LT_OP_SQRT, LT_OP_RSQRT};
    lt_op op = ops[ri(s, 0, 2)];
    val *x = positive(s, pick(s, 0, MAXR, false), 64);
    return x ? op_unary(s, op, x) : NULL;
}

static val *g_pow_scalar(gen *s) {
    static const double es[] = {2, 3, 0, 1, 0.5, -0.5, -1, 1.5, -2};
    double e = es[ri(s, 0, 8)];
    val *x = pick(s, 0, MAXR, false);
    if (!x) return NULL;
    bool whole = e >= 0 && e == floor(e);
    x = whole ? tame(s, x, 4) : positive(s, x, 8);
    if (!x) return NULL;
    double lo, hi;
    if (e == 0) lo = hi = 1;
    else if (whole && fmod(e, 2) == 0 && x->lo < 0 && x->hi > 0) lo = 0, hi = pow(mag(x), e);
    else {
        double a = pow(x->lo, e), b = pow(x->hi, e);
        lo = fmin(a, b), hi = fmax(a, b);
    }
    return push(s, lathe_pow_scalar(s->g, use(x), e), lo, hi);
}

/* The activations, at double precision for their intervals. */
static double gelu_d(double x, bool tanh_form) {
    if (tanh_form) return 0.5 * x * (1 + tanh(0.79788456080286535588 * (x + 0.044715 * x * x * x)));
    return 0.5 * x * erfc(-x * 0.70710678118654752440);
}
static double softplus_d(double x, double beta) { return (fmax(beta * x, 0) + log1p(exp(-fabs(beta * x)))) / beta; }

/* gelu (exact or tanh form), silu, softplus, leaky_relu or clamp.  Each is
 * monotone on either side of at most one point, so its interval is its value
 * at both ends and, when the interval holds that point, its value there:
 * gelu's and silu's minima (about -0.170 at -0.75 and -0.2785 at -1.28,
 * rounded outward), leaky_relu's 0, and both sides of softplus's step down
 * where beta x passes the threshold. */
static val *g_activation(gen *s) {
    val *x = pick(s, 0, MAXR, false);
    if (!x) return NULL;
    lathe_graph *g = s->g;
    double lo = x->lo, hi = x->hi, a, b, m = INFINITY, big = -INFINITY;
    lathe_node *y;
    switch (ri(s, 0, 5)) {
    case 0: {
        bool tf = chance(s, 0.5);
        a = gelu_d(lo, tf), b = gelu_d(hi, tf);
        if (lo < -0.7 && hi > -0.8) m = -0.1701;
        y = lathe_gelu(g, use(x), tf);
        break;
    }
    case 1:
        a = lo / (1 + exp(-lo)), b = hi / (1 + exp(-hi));
        if (lo < -1.2 && hi > -1.35) m = -0.2785;
        y = lathe_silu(g, use(x));
        break;
    case 2: { /* beta and threshold chosen so beta x is exact in f32 too */
        static const double betas[] = {1, 2, 0.5}, thresholds[] = {20, 1, 2};
        double beta = betas[ri(s, 0, 2)], thr = thresholds[ri(s, 0, 2)], t = thr / beta;
        a = beta * lo > thr ? lo : softplus_d(lo, beta), b = beta * hi > thr ? hi : softplus_d(hi, beta);
        if (lo <= t && hi > t) m = t, big = softplus_d(t, beta);
        y = lathe_softplus(g, use(x), beta, thr);
        break;
    }
    case 3: {
        static const double slopes[] = {0.01, 0.1, 0.2, -0.5};
        double k = slopes[ri(s, 0, 3)];
        a = lo > 0 ? lo : lo * k, b = hi > 0 ? hi : hi * k;
        if (lo < 0 && hi > 0) m = 0;
        y = lathe_leaky_relu(g, use(x), k);
        break;
    }
    default: { /* one bound, two, or (rarely) min above max: max everywhere */
        double mn = chance(s, 0.3) ? -INFINITY : rng_uniform(&s->r, lo, hi);
        double mx = chance(s, 0.3) ? INFINITY : rng_uniform(&s->r, isinf(mn) ? lo : mn, hi);
        if (chance(s, 0.1)) mn = rng_uniform(&s->r, lo, hi), mx = mn - 0.25;
        a = fmin(fmax(lo, mn), mx), b = fmin(fmax(hi, mn), mx);
        y = lathe_clamp(g, use(x), mn, mx);
        break;
    }
    }
    return push(s, y, fmin(fmin(a, b), m), fmax(fmax(a, b), big));
}

/* where(cond, a, b) with a comparison (or a bool mask input) as condition. */
static val *g_where(gen *s) {
    static lathe_node *(*const cmp[])(lathe_graph *, lathe_node *, lathe_node *) = {
        lathe_gt, lathe_ge, lathe_lt, lathe_le, lathe_eq, lathe_ne};
    lathe_graph *g = s->g;
    val *a = pick(s, 0, MAXR, false);
    if (!a) return NULL;
    val *cond;
    int k = ri(s, 0, 6);
    if (k == 6) { /* a mask input */
        int64_t shp[LATHE_MAX_RANK];
        int r = compat_shape(s, a->n, shp);
        cond = new_leaf(s, LATHE_BOOL, r, shp, K_MASK, R_INPUT, 0);
    } else {
        lathe_node *b;
        int how = ri(s, 0, 2);
        if (k >= 4 && how == 0 && a->n->numel > 0 && rk(a) > 0) {
            /* eq/ne against the max over an axis: exact ties, structurally */
            int64_t ax = ri(s, 0, rk(a) - 1);
            val *m = push(s, lathe_max(g, use(a), 1, &ax, true), a->lo, a->hi);
            if (!m) return NULL;
            b = use(m);
        } else if (k >= 4 && how == 1) { /* eq/ne against relu(a): the sign of a */
            val *m = op_unary(s, LT_OP_RELU, a);
            if (!m) return NULL;
            b = use(m);
        } else if (how == 2) {
            b = scalar(s, a, rng_uniform(&s->r, a->lo, a->hi));
        } else {
            val *p = partner(s, a);
            if (!p) return NULL;
            b = use(p);
        }
        lathe_node *an = use(a);
        cond = chance(s, 0.5) ? push(s, cmp[k](g, an, b), 0, 1) : push(s, cmp[k](g, b, an), 0, 1);
    }
    if (!cond) return NULL;
    /* the branches: a (or something broadcasting with the condition) and another */
    val *x = chance(s, 0.6) ? a : NULL;
    if (!x) {
        int64_t shp[LATHE_MAX_RANK];
        int r = compat_shape(s, cond->n, shp);
        x = new_operand(s, dt(a), r, shp);
    }
    if (!x) return NULL;
    val *y;
    bctx c = {x->n, 0, NULL};
    if (chance(s, 0.3)) {
        double v = rng_uniform(&s->r, -1, 1);
        lathe_node *yn = scalar(s, x, v);
        lathe_node *cn = use(cond), *xn = use(x);
        return chance(s, 0.5) ? push(s, lathe_where(g, cn, xn, yn), fmin(x->lo, v), fmax(x->hi, v))
                              : push(s, lathe_where(g, cn, yn, xn), fmin(x->lo, v), fmax(x->hi, v));
    }
    y = chance(s, 0.5) ? pick_if(s, bcast_ok, &c) : NULL;
    if (!y) {
        int64_t shp[LATHE_MAX_RANK];
        int r = compat_shape(s, x->n, shp);
        y = new_operand(s, dt(x), r, shp);
    }
    if (!y) return NULL;
    int r;
    int64_t o[LATHE_MAX_RANK], o2[LATHE_MAX_RANK];
    if (!bcast(rk(cond), sh(cond), rk(x), sh(x), &r, o) || !bcast(r, o, rk(y), sh(y), &r, o2) || r > MAXR ||
        numel(r, o2) > NCAP)
        return NULL; /* the three do not broadcast together: try something else */
    return push(s, lathe_where(g, use(cond), use(x), use(y)), fmin(x->lo, y->lo), fmax(x->hi, y->hi));
}

static val *g_cast(gen *s) {
    int k = ri(s, 0, 3);
    if (k <= 1) { /* between f32 and f64 */
        val *x = pick(s, 0, MAXR, false);
        if (!x) return NULL;
        return push(s, lathe_cast(s->g, use(x), other_float(dt(x))), x->lo, x->hi);
    }
    if (k == 2) { /* a comparison as 0/1 */
        val *x = pick(s, 0, MAXR, false);
        if (!x) return NULL;
        double c = rng_uniform(&s->r, x->lo, x->hi);
        val *b = push(s, lathe_gt(s->g, use(x), scalar(s, x, c)), 0, 1);
        if (!b) return NULL;
        return push(s, lathe_cast(s->g, use(b), chance(s, 0.8) ? s->t : other_float(s->t)), 0, 1);
    }
    /* an index as a float */
    val *x = pick(s, 1, MAXR, true);
    if (!x) return NULL;
    int64_t ax = ri(s, 0, rk(x) - 1);
    val *i = push(s, lathe_argmax(s->g, use(x), ax - (chance(s, 0.3) ? rk(x) : 0), chance(s, 0.5)), 0,
                  (double)(sh(x)[ax] - 1));
    if (!i) return NULL;
    return push(s, lathe_cast(s->g, use(i), s->t), 0, i->hi);
}

/* A random subset of x's axes (possibly negative, in any order); naxes 0
 * means all.  Returns the element count reduced. */
static int64_t rand_axes(gen *s, const val *x, int *naxes, int64_t *axes) {
    int r = rk(x);
    int64_t count = 1;
    *naxes = 0;
    if (r == 0 || chance(s, 0.2)) return x->n->numel;
    for (int d = 0; d < r; d++)
        if (chance(s, 0.5)) axes[(*naxes)++] = d, count *= sh(x)[d];
    if (*naxes == 0) {
        int d = ri(s, 0, r - 1);
        axes[(*naxes)++] = d, count = sh(x)[d];
    }
    for (int i = 0; i < *naxes; i++) {
        if (chance(s, 0.3)) axes[i] -= r;
        int j = ri(s, 0, i);
        int64_t t = axes[i];
        axes[i] = axes[j], axes[j] = t;
    }
    return count;
}

static val *g_reduce(gen *s) {
    int k = ri(s, 0, 3);
    val *x = pick(s, 0, MAXR, k != 0); /* mean, max and min need elements */
    if (!x) return NULL;
    int n;
    int64_t axes[LATHE_MAX_RANK], count;
    if (rk(x) < MAXR && x->n->numel > 0 && chance(s, 0.15)) {
        /* over dims a broadcast made (a pattern simplify rewrites), and maybe more */
        int64_t shp[LATHE_MAX_RANK], d = ri(s, 2, 3);
        if (x->n->numel * d > NCAP) d = 1;
        shp[0] = d;
        memcpy(shp + 1, sh(x), sizeof(int64_t) * (size_t)rk(x));
        x = push(s, lathe_broadcast_to(s->g, use(x), rk(x) + 1, shp), x->lo, x->hi);
        if (!x) return NULL;
        n = 1, axes[0] = chance(s, 0.3) ? -rk(x) : 0, count = d;
        if (rk(x) > 1 && chance(s, 0.3)) {
            axes[n] = ri(s, 1, rk(x) - 1);
            count *= sh(x)[axes[n++]];
        }
    } else count = rand_axes(s, x, &n, axes);
    bool keep = chance(s, 0.4);
    lathe_node *xn = use(x);
    switch (k) {
    case 0: return push(s, lathe_sum(s->g, xn, n, axes, keep), x->lo * (double)count, x->hi * (double)count);
    case 1: return push(s, lathe_mean(s->g, xn, n, axes, keep), x->lo, x->hi);
    case 2: return push(s, lathe_max(s->g, xn, n, axes, keep), x->lo, x->hi);
    default: return push(s, lathe_min(s->g, xn, n, axes, keep), x->lo, x->hi);
    }
}

/* argmax as labels for a later loss (or cast to float at the end). */
static val *g_argmax(gen *s) {
    val *x = pick(s, 1, MAXR, true);
    if (!x) return NULL;
    int64_t ax = rk(x) == 2 && chance(s, 0.6) ? 1 : ri(s, 0, rk(x) - 1);
    return push(s, lathe_argmax(s->g, use(x), ax - (chance(s, 0.3) ? rk(x) : 0), chance(s, 0.3)), 0,
                (double)(sh(x)[ax] - 1));
}

static val *reshape_to(gen *s, val *x, int r, const int64_t *shp) {
    return push(s, lathe_reshape(s->g, use(x), r, shp), x->lo, x->hi);
}

static val *g_reshape(gen *s) {
    val *x = pick(s, 0, MAXR, false);
    if (!x) return NULL;
    if (chance(s, 0.3)) { /* flatten */
        int r = rk(x);
        if (r == 0) return push(s, lathe_flatten(s->g, use(x), chance(s, 0.5) ? 0 : -1, 0), x->lo, x->hi);
        int a = ri(s, 0, r - 1), b = ri(s, a, r - 1);
        return push(s, lathe_flatten(s->g, use(x), a - (chance(s, 0.3) ? r : 0), b - (chance(s, 0.5) ? r : 0)),
                    x->lo, x->hi);
    }
    int64_t n = x->n->numel, shp[LATHE_MAX_RANK];
    int r = n == 1 && chance(s, 0.3) ? 0 : ri(s, 1, MAXR);
    factorize(s, n, r, shp);
    if (r > 0 && n > 0 && chance(s, 0.3)) shp[ri(s, 0, r - 1)] = -1;
    return reshape_to(s, x, r, shp);
}

static val *g_permute(gen *s) {
    val *x = pick(s, 1, MAXR, false);
    if (!x) return NULL;
    int r = rk(x);
    if (r >= 2 && chance(s, 0.3)) {
        int a = ri(s, 0, r - 1), b = ri(s, 0, r - 1);
        return push(s, lathe_transpose(s->g, use(x), a - (chance(s, 0.3) ? r : 0), b), x->lo, x->hi);
    }
    int64_t perm[LATHE_MAX_RANK];
    for (int i = 0; i < r; i++) perm[i] = i;
    for (int i = r - 1; i > 0; i--) {
        int j = ri(s, 0, i);
        int64_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    for (int i = 0; i < r; i++)
        if (chance(s, 0.2)) perm[i] -= r;
    return push(s, lathe_permute(s->g, use(x), r, perm), x->lo, x->hi);
}

static val *g_broadcast(gen *s) {
    val *x = pick(s, 0, MAXR, false);
    if (!x) return NULL;
    int64_t shp[LATHE_MAX_RANK], grown = x->n->numel ? x->n->numel : 1;
    int k = 0, r = rk(x);
    int extra = r < MAXR ? ri(s, 0, MAXR - r) : 0;
    if (extra > 2) extra = 2;
    for (int i = 0; i < extra; i++) {
        int64_t d = ri(s, 1, 3);
        if (grown * d > NCAP) d = 1;
        shp[k++] = d, grown *= d;
    }
    for (int d = 0; d < r; d++) {
        int64_t e = sh(x)[d];
        if (e == 1 && chance(s, 0.6)) {
            int64_t m = ri(s, 2, 4);
            if (grown * m <= NCAP) e = m, grown *= m;
        }
        shp[k++] = e;
    }
    return push(s, lathe_broadcast_to(s->g, use(x), k, shp), x->lo, x->hi);
}

typedef struct {
    const lathe_node *x;
    int axis;
} cctx;
static bool concat_ok(const val *v, const void *ctx) {
    const cctx *c = ctx;
    if (dt(v) != c->x->dtype || rk(v) != c->x->rank) return false;
    for (int d = 0; d < rk(v); d++)
        if (d != c->axis && sh(v)[d] != c->x->shape[d]) return false;
    return true;
}

static val *g_concat(gen *s) {
    val *x = pick(s, 1, MAXR, false);
    if (!x) return NULL;
    int r = rk(x), axis = ri(s, 0, r - 1), n = ri(s, 1, 3);
    val *xs[3] = {x};
    int64_t total = x->n->numel;
    cctx c = {x->n, axis};
    for (int i = 1; i < n; i++) {
        val *y = chance(s, 0.5) ? pick_if(s, concat_ok, &c) : NULL;
        if (!y) {
            int64_t shp[LATHE_MAX_RANK];
            memcpy(shp, sh(x), sizeof shp);
            shp[axis] = chance(s, 0.05) ? 0 : ri(s, 1, 3);
            y = new_operand(s, dt(x), r, shp);
            if (!y) return NULL;
        }
        if (total + y->n->numel > NCAP) {
            n = i;
            break;
        }
        total += y->n->numel;
        xs[i] = y;
    }
    lathe_node *ns[3];
    double lo = x->lo, hi = x->hi;
    for (int i = 0; i < n; i++) ns[i] = use(xs[i]), lo = fmin(lo, xs[i]->lo), hi = fmax(hi, xs[i]->hi);
    for (int i = n - 1; i > 0; i--) { /* shuffle the operands */
        int j = ri(s, 0, i);
        lathe_node *t = ns[i];
        ns[i] = ns[j], ns[j] = t;
    }
    return push(s, lathe_concat(s->g, n, ns, axis - (chance(s, 0.3) ? r : 0)), lo, hi);
}

static val *g_slice(gen *s) {
    val *x = pick(s, 1, MAXR, false);
    if (!x) return NULL;
    int r = rk(x), axis = ri(s, 0, r - 1);
    int64_t d = sh(x)[axis], st, en, step = ri(s, 1, 3);
    for (int tries = 0;; tries++) {
        st = ri(s, -(int)d - 1, (int)d);
        en = ri(s, -(int)d - 1, (int)d + 2);
        int64_t a = st < 0 ? st + d : st, b = en < 0 ? en + d : en;
        a = a < 0 ? 0 : a > d ? d : a;
        b = b < 0 ? 0 : b > d ? d : b;
        if (b > a || tries > 8 || chance(s, 0.03)) break; /* empty now and then */
    }
    return push(s, lathe_slice(s->g, use(x), axis - (chance(s, 0.3) ? r : 0), st, en, step), x->lo, x->hi);
}

typedef struct {
    const lathe_node *a;
} mctx;
static bool matmul_ok(const val *v, const void *ctx) {
    const lathe_node *a = ((const mctx *)ctx)->a;
    if (dt(v) != a->dtype || rk(v) < 2 || sh(v)[rk(v) - 2] != a->shape[a->rank - 1] || v->n->numel == 0)
        return false;
    int r;
    int64_t o[LATHE_MAX_RANK];
    if (!bcast(a->rank - 2, a->shape, rk(v) - 2, sh(v), &r, o)) return false;
    return r + 2 <= MAXR && numel(r, o) * a->shape[a->rank - 2] * sh(v)[rk(v) - 1] <= NCAP;
}

static val *g_matmul(gen *s) {
    val *a = pick(s, 2, MAXR, true);
    if (!a || chance(s, 0.2)) { /* make a matrix of something */
        val *x = pick(s, 0, MAXR, true);
        if (!x) return NULL;
        int64_t shp[2];
        factorize(s, x->n->numel, 2, shp);
        a = reshape_to(s, x, 2, shp);
        if (!a) return NULL;
    }
    mctx c = {a->n};
    val *b = chance(s, 0.4) ? pick_if(s, matmul_ok, &c) : NULL;
    if (!b) {
        int64_t shp[LATHE_MAX_RANK];
        int k = 0, ra = rk(a);
        int64_t batch = numel(ra - 2, sh(a)), m = sh(a)[ra - 2];
        int nb = ri(s, 0, ra - 2 + (ra < MAXR));
        for (int i = 0; i < nb; i++) { /* trailing batch dims of a, some as 1, maybe one more */
            int ai = ra - 2 - nb + i;
            shp[k++] = ai >= 0 ? (chance(s, 0.3) ? 1 : sh(a)[ai]) : 1;
        }
        shp[k++] = sh(a)[ra - 1];
        int64_t nn = ri(s, 1, 5);
        while (nn > 1 && batch * m * nn > NCAP) nn--;
        shp[k++] = nn;
        b = new_operand(s, dt(a), k, shp);
        if (!b) return NULL;
    }
    a = tame(s, a, 2), b = tame(s, b, 2);
    if (!a || !b) return NULL;
    double B = mag(a) * mag(b) * (double)sh(a)[rk(a) - 1];
    return push(s, lathe_matmul(s->g, use(a), use(b)), -B, B);
}

static val *g_linear(gen *s) {
    val *x = pick(s, 1, MAXR, true);
    if (!x) return NULL;
    int64_t in = sh(x)[rk(x) - 1], out = ri(s, 1, 5), rows = x->n->numel / in;
    while (out > 1 && rows * out > NCAP) out--;
    x = tame(s, x, 2);
    if (!x) return NULL;
    val *w = new_leaf(s, dt(x), LATHE_DIMS(out, in), K_UNIFORM, chance(s, 0.8) ? R_PARAM : R_INPUT, 0);
    val *b = chance(s, 0.6) ? new_leaf(s, dt(x), LATHE_DIMS(out), K_UNIFORM, R_PARAM, 0) : NULL;
    if (!w) return NULL;
    double B = mag(x) * mag(w) * (double)in + (b ? mag(b) : 0);
    return push(s, lathe_linear(s->g, use(x), use(w), b ? use(b) : NULL), -B, B);
}

/* A rank-4 (N, C, H, W) float value: an existing one, a reshape of one, or a new input. */
static val *get4d(gen *s) {
    val *x = pick(s, 4, 4, true);
    if (x && chance(s, 0.8)) return x;
    if (chance(s, 0.5)) {
        val *y = pick(s, 0, MAXR, true);
        if (y && y->n->numel >= 4) {
            int64_t shp[4];
            factorize(s, y->n->numel, 4, shp);
            return reshape_to(s, y, 4, shp);
        }
    }
    int64_t shp[4] = {ri(s, 1, 2), ri(s, 1, 4), ri(s, 2, 6), ri(s, 2, 6)};
    while (numel(4, shp) > NCAP / 2) shp[2] > 2 ? shp[2]-- : shp[3]--;
    return new_leaf(s, s->t, 4, shp, K_UNIFORM, R_INPUT, 0);
}

/* A window (kernel k, stride st, padding p, dilation dl) that fits a size-n
 * axis; pool: padding at most half the kernel, dilation 1. */
static void window(gen *s, int64_t n, bool pool, int64_t *k, int64_t *st, int64_t *p, int64_t *dl) {
    for (int tries = 0; tries < 20; tries++) {
        *k = ri(s, 1, 3), *st = ri(s, 1, 3), *dl = pool ? 1 : ri(s, 1, 2);
        *p = pool ? ri(s, 0, (int)(*k / 2)) : ri(s, 0, 2);
        if (*dl * (*k - 1) + 1 <= n + 2 * *p) return;
    }
    *k = 1, *st = 1, *p = 0, *dl = 1;
}

static int64_t out_size(int64_t n, int64_t k, int64_t st, int64_t p, int64_t dl) {
    return (n + 2 * p - dl * (k - 1) - 1) / st + 1;
}

static val *g_conv(gen *s) {
    val *x = get4d(s);
    if (!x) return NULL;
    int64_t N = sh(x)[0], C = sh(x)[1], H = sh(x)[2], W = sh(x)[3];
    int64_t divs[8], nd = 0;
    for (int64_t d = 1; d <= C && nd < 8; d++)
        if (C % d == 0) divs[nd++] = d;
    int64_t groups = chance(s, 0.5) ? 1 : divs[ri(s, 0, (int)nd - 1)];
    int64_t K = groups * ri(s, 1, groups > 2 ? 1 : 3);
    int64_t k[2], st[2], p[2], dl[2];
    bool hw = chance(s, 0.4);
    window(s, hw ? H : (H < W ? H : W), false, &k[0], &st[0], &p[0], &dl[0]);
    if (hw) window(s, W, false, &k[1], &st[1], &p[1], &dl[1]);
    else k[1] = k[0], st[1] = st[0], p[1] = p[0], dl[1] = dl[0];
    int64_t P = out_size(H, k[0], st[0], p[0], dl[0]), Q = out_size(W, k[1], st[1], p[1], dl[1]);
    while (K > groups && N * K * P * Q > NCAP) K -= groups;
    if (N * K * P * Q > NCAP) return NULL;
    x = tame(s, x, 2);
    if (!x) return NULL;
    val *w = new_leaf(s, dt(x), LATHE_DIMS(K, C / groups, k[0], k[1]), K_UNIFORM, chance(s, 0.85) ? R_PARAM : R_INPUT, 0);
    val *b = chance(s, 0.5) ? new_leaf(s, dt(x), LATHE_DIMS(K), K_UNIFORM, R_PARAM, 0) : NULL;
    if (!w) return NULL;
    double B = mag(x) * mag(w) * (double)(C / groups * k[0] * k[1]) + (b ? mag(b) : 0);
    lathe_node *xn = use(x), *wn = use(w), *bn = b ? use(b) : NULL;
    if (hw) return push(s, lathe_conv2d_hw(s->g, xn, wn, bn, st, p, dl, groups), -B, B);
    return push(s, lathe_conv2d(s->g, xn, wn, bn, st[0], p[0], dl[0], groups), -B, B);
}

static val *g_pool(gen *s) {
    val *x = get4d(s);
    if (!x) return NULL;
    int64_t H = sh(x)[2], W = sh(x)[3];
    int kind = ri(s, 0, 2);
    if (kind == 2) {
        int64_t oh = ri(s, 1, (int)(H < 5 ? H + 1 : 6)), ow = ri(s, 1, (int)(W < 5 ? W + 1 : 6));
        while (oh > 1 && sh(x)[0] * sh(x)[1] * oh * ow > NCAP) oh--;
        return push(s, lathe_adaptive_avg_pool2d(s->g, use(x), oh, ow), x->lo, x->hi);
    }
    int64_t k[2], st[2], p[2], dl[2];
    bool hw = chance(s, 0.4);
    window(s, hw ? H : (H < W ? H : W), true, &k[0], &st[0], &p[0], &dl[0]);
    if (hw) window(s, W, true, &k[1], &st[1], &p[1], &dl[1]);
    else k[1] = k[0], st[1] = st[0], p[1] = p[0], dl[1] = dl[0];
    lathe_node *xn = use(x);
    if (kind == 0) {
        if (hw) return push(s, lathe_max_pool2d_hw(s->g, xn, k, st, p), x->lo, x->hi);
        return push(s, lathe_max_pool2d(s->g, xn, k[0], st[0], p[0]), x->lo, x->hi);
    }
    bool cip = chance(s, 0.6);
    double lo = x->lo, hi = x->hi;
    if (cip && (p[0] || p[1])) lo = fmin(lo, 0), hi = fmax(hi, 0); /* padding zeros count */
    if (hw) return push(s, lathe_avg_pool2d_hw(s->g, xn, k, st, p, cip), lo, hi);
    return push(s, lathe_avg_pool2d(s->g, xn, k[0], st[0], p[0], cip), lo, hi);
}

static val *g_batch_norm(gen *s) {
    val *x = get4d(s);
    if (!x) return NULL;
    int64_t C = sh(x)[1], nhw = sh(x)[0] * sh(x)[2] * sh(x)[3];
    bool training = nhw > 1 && chance(s, 0.6);
    double momentum = chance(s, 0.5) ? 0.1 : rng_uniform(&s->r, 0, 1);
    double eps = chance(s, 0.5) ? 1e-5 : 1e-3;
    x = tame(s, x, 16);
    if (!x) return NULL;
    val *w = new_leaf(s, dt(x), LATHE_DIMS(C), K_UNIFORM, R_PARAM, 0);
    val *b = new_leaf(s, dt(x), LATHE_DIMS(C), K_UNIFORM, R_PARAM, 0);
    leaf_role sr = chance(s, 0.85) ? R_BUFFER : R_INPUT; /* running stats not buffers: no update */
    val *rm = new_leaf(s, dt(x), LATHE_DIMS(C), K_UNIFORM, sr, 0);
    val *rv = new_leaf(s, dt(x), LATHE_DIMS(C), K_POSITIVE, sr, 0);
    if (!w || !b || !rm || !rv) return NULL;
    if (sr == R_INPUT) { /* autodiff does not differentiate running statistics */
        lathe_set_requires_grad(rm->n, false);
        lathe_set_requires_grad(rv->n, false);
    }
    /* |x - mean| / std <= sqrt(n - 1) for the biased variance (Samuelson) */
    double xh = training ? sqrt((double)nhw - 1) : (mag(x) + mag(rm)) / sqrt(rv->lo + eps);
    double B = mag(w) * xh + mag(b);
    return push(s, lathe_batch_norm2d(s->g, use(x), use(w), use(b), use(rm), use(rv), training, momentum, eps), -B, B);
}

static val *rows_input(gen *s);
static val *g_softmax(gen *s) {
    val *x = chance(s, 0.25) ? rows_input(s) : pick(s, 1, MAXR, false);
    if (!x) return NULL;
    x = tame(s, x, 32);
    if (!x) return NULL;
    int r = rk(x);
    int64_t ax = ri(s, 0, r - 1), n = sh(x)[ax];
    double R = x->hi - x->lo;
    lathe_node *xn = use(x);
    int64_t axis = ax - (chance(s, 0.4) ? r : 0);
    if (chance(s, 0.5)) return push(s, lathe_softmax(s->g, xn, axis), exp(-R) / (double)(n ? n : 1), 1);
    return push(s, lathe_log_softmax(s->g, xn, axis), -(R + log((double)(n ? n : 1))), 0);
}

static val *g_dropout(gen *s) {
    static const double ps[] = {0.1, 0.5, 0.9};
    val *x = pick(s, 0, MAXR, false);
    if (!x) return NULL;
    double p = ps[ri(s, 0, 2)], k = 1 / (1 - p);
    if (!lathe_graph_find(s->g, LATHE_RNG_NAME)) { /* the generator state: bound like labels, (seed, step) < 10^6 */
        lathe_node *r = s->nleaves < MAX_LEAVES ? lathe_rng_state(s->g) : NULL;
        if (!r) return NULL;
        s->leaves[s->nleaves++] = (leaf){r, K_LABELS, 1000000};
    }
    return push(s, lathe_dropout(s->g, use(x), p), fmin(0, x->lo * k), fmax(0, x->hi * k));
}

/* A new input of 64 rows ([64, n] or [2, 32, n]): enough for fusion's row
 * statistics (a chunk of the parallel range holds whole rows), which the
 * generator's small dims never reach. */
static val *rows_input(gen *s) {
    int64_t n = ri(s, 1, 4);
    if (chance(s, 0.5)) return new_leaf(s, s->t, LATHE_DIMS(64, n), K_UNIFORM, R_INPUT, 0);
    return new_leaf(s, s->t, LATHE_DIMS(2, 32, n), K_UNIFORM, R_INPUT, 0);
}

/* layer_norm over the last 1..rank dims, with a weight, a weight and a bias, or neither */
static val *g_layer_norm(gen *s) {
    val *x = tame(s, chance(s, 0.25) ? rows_input(s) : pick(s, 1, MAXR, false), 16);
    if (!x) return NULL;
    if (x->n->op != LT_OP_INPUT) {
        /* plus a fresh input: a computed value may hold constant rows, whose
         * normalization is rounding noise times 1/sqrt(eps) in any arithmetic */
        val *u = new_leaf(s, dt(x), rk(x), sh(x), K_UNIFORM, R_INPUT, 0);
        if (!u) return NULL;
        x = op_binary(s, LT_OP_ADD, x, u);
        if (!x) return NULL;
    }
    int k = ri(s, 1, rk(x)), affine = ri(s, 0, 2);
    const int64_t *ns = sh(x) + rk(x) - k;
    double eps = chance(s, 0.5) ? 1e-5 : 1e-3;
    val *w = affine ? new_leaf(s, dt(x), k, ns, K_UNIFORM, chance(s, 0.8) ? R_PARAM : R_INPUT, 0) : NULL;
    val *b = affine == 2 ? new_leaf(s, dt(x), k, ns, K_UNIFORM, R_PARAM, 0) : NULL;
    if ((affine && !w) || (affine == 2 && !b)) return NULL;
    /* |x - mean| / std <= sqrt(M - 1) over a row of M (Samuelson) */
    double B = (w ? mag(w) : 1) * sqrt(fmax((double)numel(k, ns) - 1, 0)) + (b ? mag(b) : 0);
    lathe_node *xn = use(x), *wn = w ? use(w) : NULL, *bn = b ? use(b) : NULL;
    return push(s, lathe_layer_norm(s->g, xn, k, ns, wn, bn, eps), -B, B);
}

typedef struct {
    int64_t n, c;
} lctx;
static bool labels_ok(const val *v, const void *ctx) {
    const lctx *l = ctx;
    return dt(v) == LATHE_I64 && rk(v) == 1 && sh(v)[0] == l->n && v->hi <= (double)(l->c - 1);
}
static bool rows_ok(const val *v, const void *ctx) {
    const lctx *l = ctx;
    return isf(v) && rk(v) == 2 && sh(v)[0] == l->n && sh(v)[1] <= l->c && sh(v)[1] > 0;
}

static val *g_loss(gen *s) {
    static const lathe_reduction reds[] = {LATHE_REDUCE_NONE, LATHE_REDUCE_MEAN, LATHE_REDUCE_SUM};
    lathe_reduction red = reds[ri(s, 0, 2)];
    int k = ri(s, 0, 2);
    if (k == 2) { /* mse_loss */
        val *a = pick(s, 0, MAXR, red != LATHE_REDUCE_MEAN);
        if (!a) return NULL;
        val *b = new_operand(s, dt(a), rk(a), sh(a));
        a = tame(s, a, 8);
        if (!a || !b) return NULL;
        double B = (mag(a) + mag(b)) * (mag(a) + mag(b)) * (red == LATHE_REDUCE_SUM ? (double)a->n->numel : 1);
        lathe_node *an = use(a), *bn = use(b);
        return chance(s, 0.5) ? push(s, lathe_mse_loss(s->g, an, bn, red), 0, B) : push(s, lathe_mse_loss(s->g, bn, an, red), 0, B);
    }
    val *x = pick(s, 2, 2, true);
    if (!x || chance(s, 0.3)) { /* rows of something */
        val *y = pick(s, 1, MAXR, true);
        if (!y) return NULL;
        if (rk(y) == 1) {
            int64_t shp[2] = {1, sh(y)[0]};
            if (chance(s, 0.5)) shp[0] = sh(y)[0], shp[1] = 1;
            x = reshape_to(s, y, 2, shp);
        } else x = push(s, lathe_flatten(s->g, use(y), 1, -1), y->lo, y->hi);
        if (!x) return NULL;
    }
    int64_t N = sh(x)[0], C = sh(x)[1];
    if (C == 0) return NULL;
    lctx l = {N, C};
    val *lab = pick_if(s, labels_ok, &l);
    if (!lab || chance(s, 0.3)) {
        val *src = chance(s, 0.5) ? pick_if(s, rows_ok, &l) : NULL;
        if (src) /* argmax over at most C classes is a label in range */
            lab = push(s, lathe_argmax(s->g, use(src), 1, false), 0, (double)(sh(src)[1] - 1));
        else lab = new_leaf(s, LATHE_I64, LATHE_DIMS(N), K_LABELS, R_INPUT, C);
    }
    if (!lab) return NULL;
    double R = x->hi - x->lo, scale = red == LATHE_REDUCE_SUM ? (double)N : 1;
    if (k == 0) {
        x = tame(s, x, 32);
        if (!x) return NULL;
        R = x->hi - x->lo;
        return push(s, lathe_cross_entropy(s->g, use(x), use(lab), red), 0, (R + log((double)C)) * scale);
    }
    if (chance(s, 0.6)) { /* log-probabilities, as usual */
        x = tame(s, x, 32);
        if (!x) return NULL;
        R = x->hi - x->lo;
        x = push(s, lathe_log_softmax(s->g, use(x), 1), -(R + log((double)C)), 0);
        if (!x) return NULL;
    }
    double lo = -x->hi, hi = -x->lo;
    return push(s, lathe_nll_loss(s->g, use(x), use(lab), red), fmin(lo * scale, lo), fmax(hi * scale, hi));
}

/* index_select: rows of x picked by an index in range by construction (a
 * labels input bound to [0, n), or an argmax over at most n classes), of
 * rank 0-2 so the result keeps to MAXR dims. */
typedef struct {
    int64_t n, rest;
    int maxr;
} ictx;
static bool index_ok(const val *v, const void *ctx) {
    const ictx *c = ctx;
    return dt(v) == LATHE_I64 && v->hi <= (double)(c->n - 1) && rk(v) <= c->maxr && c->rest * v->n->numel <= NCAP;
}
static val *g_index_select(gen *s) {
    val *x = pick(s, 1, MAXR, false);
    if (!x) return NULL;
    int r = rk(x), axis = ri(s, 0, r - 1);
    int64_t n = sh(x)[axis];
    if (n == 0) return NULL;
    ictx c = {n, x->n->numel / n, MAXR - r + 1 < 2 ? MAXR - r + 1 : 2};
    val *ix = chance(s, 0.3) ? pick_if(s, index_ok, &c) : NULL;
    if (!ix) {
        int64_t shp[LATHE_MAX_RANK];
        int ir = rand_shape(s, 0, c.maxr, c.rest ? NCAP / c.rest : 16, shp);
        if (!(ix = new_leaf(s, LATHE_I64, ir, shp, K_LABELS, R_INPUT, n))) return NULL;
    }
    return push(s, lathe_index_select(s->g, use(x), axis - (chance(s, 0.3) ? r : 0), use(ix)), x->lo, x->hi);
}

/* The collectives over one process (the evaluator's world): an all_gather
 * along a random axis, or an all_reduce (which decomposes into a gather
 * along a new leading axis and a sum over it). */
static val *g_collective(gen *s) {
    bool gather = chance(s, 0.5);
    val *x = pick(s, gather ? 1 : 0, MAXR, false);
    if (!x) return NULL;
    int r = rk(x);
    if (!gather) return push(s, lathe_all_reduce(s->g, use(x), 1), x->lo, x->hi);
    int axis = ri(s, 0, r - 1);
    return push(s, lathe_all_gather(s->g, use(x), axis - (chance(s, 0.3) ? r : 0), 1), x->lo, x->hi);
}

typedef struct {
    const char *name;
    val *(*fn)(gen *s);
} op_gen;

static const op_gen gens[] = {
    {"binary", g_binary},   {"div", g_div},         {"pow", g_pow},         {"unary", g_unary},
    {"log_sqrt", g_log_sqrt}, {"pow_scalar", g_pow_scalar}, {"activation", g_activation}, {"where", g_where}, {"cast", g_cast},
    {"reduce", g_reduce},   {"argmax", g_argmax},   {"reshape", g_reshape}, {"permute", g_permute},
    {"broadcast", g_broadcast}, {"concat", g_concat}, {"slice", g_slice},   {"matmul", g_matmul},
    {"linear", g_linear},   {"conv2d", g_conv},     {"pool", g_pool},       {"batch_norm", g_batch_norm},
    {"softmax", g_softmax}, {"loss", g_loss},         {"dropout", g_dropout},
    {"index_select", g_index_select}, {"layer_norm", g_layer_norm}, {"collective", g_collective},
};
enum { NGENS = (int)(sizeof gens / sizeof gens[0]) };

/* ---- whole graphs ------------------------------------------------------------ */

/* Grow a graph from seed: leaves, then ops until 5-25 of them are built. */
static void grow(gen *s, uint64_t seed) {
    memset(s, 0, sizeof *s);
    s->g = lathe_graph_new();
    assert_non_null(s->g);
    s->seed = seed;
    s->r = (rng){seed * 0x9E3779B97F4A7C15ULL + 0x2545F4914F6CDD1DULL};
    for (int i = 0; i < 4; i++) rng_uniform(&s->r, 0, 1); /* mix neighbouring seeds apart */
    s->t = chance(s, 0.5) ? LATHE_F32 : LATHE_F64;
    s->gen_name = "leaves";
    int64_t shp[LATHE_MAX_RANK];
    for (int i = 0, n = ri(s, 1, 3); i < n; i++) {
        int r = rand_shape(s, 0, MAXR, 128, shp);
        new_leaf(s, s->t, r, shp, chance(s, 0.2) ? K_POSITIVE : K_UNIFORM, R_INPUT, 0);
    }
    if (chance(s, 0.4)) {
        int r = rand_shape(s, 1, MAXR, 64, shp);
        new_leaf(s, s->t, r, shp, K_UNIFORM, R_PARAM, 0);
    }
    int target = ri(s, 5, 25);
    for (int tries = 0; s->nops < target && tries < 400; tries++) {
        const op_gen *o = &gens[ri(s, 0, NGENS - 1)];
        s->gen_name = o->name;
        o->fn(s);
    }
}

static bool has_update(lathe_graph *g, const lathe_node *buf) {
    for (int i = 0; i < lathe_graph_num_updates(g); i++) {
        lathe_node *b, *v;
        lathe_graph_update(g, i, &b, &v);
        if (b == buf) return true;
    }
    return false;
}

typedef struct {
    const lathe_node *like;
} sctx;
static bool same_type(const val *v, const void *ctx) {
    const lathe_node *b = ((const sctx *)ctx)->like;
    return v->n != b && dt(v) == b->dtype && rk(v) == b->rank &&
           !memcmp(sh(v), b->shape, sizeof(int64_t) * (size_t)b->rank) && lt_ops[v->n->op].kind != LT_LEAF;
}

/* Outputs, buffer updates and the backward pass.  Every value nothing uses
 * becomes part of an output: y1 is the newest, y2 the others flattened and
 * joined.  Returns the number of nodes before autodiff. */
static int finish(gen *s, bool *backward, char *why, size_t len) {
    lathe_graph *g = s->g;
    s->gen_name = "finish";
    /* plain buffers (not batch-norm statistics) may take a computed value */
    for (int i = 0; i < s->nleaves; i++) {
        lathe_node *b = s->leaves[i].n;
        if (b->op != LT_OP_BUFFER || has_update(g, b) || !chance(s, 0.6)) continue;
        sctx c = {b};
        val *v = pick_if(s, same_type, &c);
        if (v && lathe_update(g, b, v->n) != LATHE_OK) push(s, NULL, 0, 0);
    }
    int nv = s->nv;
    for (int i = 0; i < nv; i++) { /* no bool or i64 value dangles */
        val *v = &s->v[i];
        if (!v->uses && lt_ops[v->n->op].kind != LT_LEAF && !isf(v)) push(s, lathe_cast(g, use(v), s->t), v->lo, v->hi);
    }
    int sinks[MAX_VALS], ns = 0;
    for (int i = 0; i < s->nv; i++)
        if (!s->v[i].uses && lt_ops[s->v[i].n->op].kind != LT_LEAF && isf(&s->v[i])) sinks[ns++] = i;
    if (ns == 0) { /* nothing was built: y1 = tanh of the first input */
        val *y = op_unary(s, LT_OP_TANH, &s->v[0]);
        LT_ASSERT(y);
        sinks[ns++] = (int)(y - s->v);
    }
    lathe_node *ys[2] = {s->v[sinks[ns - 1]].n, NULL};
    s->v[sinks[ns - 1]].uses++;
    if (ns > 1) {
        lathe_node *parts[MAX_VALS];
        for (int i = 0; i < ns - 1; i++) {
            val *v = &s->v[sinks[i]];
            lathe_node *f = lathe_reshape(g, use(v), LATHE_DIMS(-1));
            if (dt(v) != s->t) f = lathe_cast(g, f, s->t);
            parts[i] = f;
        }
        ys[1] = ns == 2 ? parts[0] : lathe_concat(g, ns - 1, parts, 0);
        if (!ys[1]) push(s, NULL, 0, 0);
    }
    int ny = ys[1] ? 2 : 1;
    lathe_output(g, "y1", ys[0]);
    if (ny == 2) lathe_output(g, "y2", ys[1]);
    assert_graph_ok(g);
    int nfwd = lathe_graph_num_nodes(g);
    /* loss = sum(y1 * C1) [+ sum(y2 * C2)], C random: a random cotangent */
    lathe_node *loss = NULL;
    for (int k = 0; k < ny; k++) {
        lathe_node *y = ys[k];
        if (!lathe_requires_grad(y)) continue;
        int64_t n = y->numel;
        double *d = malloc((size_t)(n + 1) * sizeof *d);
        float *f = malloc((size_t)(n + 1) * sizeof *f);
        for (int64_t i = 0; i < n; i++) d[i] = rng_uniform(&s->r, -1, 1), f[i] = (float)d[i];
        lathe_node *c = lathe_const(g, y->dtype, y->rank, y->shape, y->dtype == LATHE_F32 ? (void *)f : (void *)d);
        free(d);
        free(f);
        lathe_node *term = lathe_sum(g, lathe_mul(g, y, c), 0, NULL, false);
        if (term && term->dtype != s->t) term = lathe_cast(g, term, s->t);
        loss = loss ? lathe_add(g, loss, term) : term;
    }
    assert_graph_ok(g);
    *backward = loss != NULL;
    if (loss && lathe_backward(g, 1, &loss, NULL) != LATHE_OK) {
        snprintf(why, len, "lathe_backward failed: %s", lathe_graph_error(g));
        lathe_graph_clear_error(g);
    }
    return nfwd;
}

/* ---- values, runs, comparison -------------------------------------------------- */

typedef struct {
    void **data;
    size_t *nb;
    int n;
} bindings;

/* Values for every leaf by its kind: uniform [-1, 1), positive [0.5, 2),
 * labels in [0, classes), masks. */
static bindings make_bindings(gen *s, uint64_t seed) {
    rng r = {seed * 0xD1B54A32D192ED03ULL + 7};
    bindings b = {calloc((size_t)s->nleaves, sizeof(void *)), calloc((size_t)s->nleaves, sizeof(size_t)), s->nleaves};
    for (int i = 0; i < s->nleaves; i++) {
        const leaf *l = &s->leaves[i];
        lathe_node *n = l->n;
        size_t nb = (size_t)n->numel * lathe_dtype_size(n->dtype);
        void *p = malloc(nb + 8);
        for (int64_t j = 0; j < n->numel; j++) {
            double v = l->kind == K_POSITIVE ? rng_uniform(&r, 0.5, 2)
                     : l->kind == K_LABELS   ? floor(rng_uniform(&r, 0, (double)l->classes))
                     : l->kind == K_MASK     ? (double)(rng_uniform(&r, 0, 1) < 0.5)
                                             : rng_uniform(&r, -1, 1);
            switch (n->dtype) {
            case LATHE_F32: ((float *)p)[j] = (float)v; break;
            case LATHE_F64: ((double *)p)[j] = v; break;
            case LATHE_I64: ((int64_t *)p)[j] = (int64_t)v < l->classes ? (int64_t)v : l->classes - 1; break;
            case LATHE_BOOL: ((bool *)p)[j] = v != 0; break;
            }
        }
        b.data[i] = p, b.nb[i] = nb;
    }
    return b;
}

static void free_bindings(bindings *b) {
    for (int i = 0; i < b->n; i++) free(b->data[i]);
    free(b->data);
    free(b->nb);
}

static bool bind(gen *s, lathe_program *p, const bindings *b, char *why, size_t len) {
    for (int i = 0; i < b->n; i++)
        if (lathe_program_set(p, lathe_node_name(s->leaves[i].n), b->data[i], b->nb[i]) != LATHE_OK) {
            snprintf(why, len, "set %s: %s", lathe_node_name(s->leaves[i].n), lathe_program_error(p));
            return false;
        }
    return true;
}

/* The results compared: every output, then every buffer (after its update). */
typedef struct {
    const char *name;
    const lathe_node *n;
} result;

static int results(lathe_graph *g, result *out, int max) {
    int k = 0;
    for (int i = 0; i < lathe_graph_num_outputs(g) && k < max; i++)
        out[k++] = (result){lathe_graph_output_name(g, i), lathe_graph_output(g, i)};
    for (int i = 0; i < lathe_graph_num_nodes(g) && k < max; i++) {
        lathe_node *n = lathe_graph_node(g, i);
        if (n->op == LT_OP_BUFFER) out[k++] = (result){lathe_node_name(n), n};
    }
    return k;
}

typedef struct {
    int graphs, f32_graphs, backward_graphs, mismatches, nodes, fwd_ops;
    long fails, built;
    int cover[LT_OP_COUNT];
    double compile_s, worst_ratio, worst_k, worst_m[2];
    uint64_t bad_seeds[16];
} stats;

/* Tolerances.  The JIT and the evaluator round differently: the JIT
 * contracts a*b+c into FMA, sums reductions of up to a few hundred terms in
 * the result's precision in its own order, and takes exp/log/tanh/rsqrt
 * from mathlib (a few ulps); the evaluator computes each op in double and
 * rounds once.  So a result may differ by its own rounding noise, and where
 * a result cancels (a gradient that is mathematically zero, such as that of
 * a bias in front of a batch norm in training mode) that noise is all there
 * is, and is no smaller than the result itself.
 *
 * The noise is measured, not guessed: the graph's twins (every float dtype
 * made f64, when the graph has f32 values; every one made f32, when it has
 * f64 values) are run by the evaluator on the same inputs, and noise is the
 * larger of max |ref - twin64| and 2^-29 max |ref - twin32| over the result
 * (2^-29: the ratio of the unit roundoffs).  Then an element must satisfy
 *     |jit - ref| <= rtol |ref| + atol scale + NOISE_K noise + cfloor M
 * with scale the result's largest |ref|, M the largest magnitude among the
 * values the result is computed from (its cone, read from a twin), and
 * (rtol, atol, cfloor) = (1e-3, 1e-4, 1e-5) when that cone holds an f32
 * value, (1e-9, 1e-12, 1e-13) when it is all f64.  The last term is for a
 * cancelling result whose twin happens to cancel just as well.  Interval
 * bounds (see the top) keep every op well conditioned, so over the default
 * run the largest error is well under 1% of its tolerance; yet a wrong
 * index, window, bound, count or reduction start is off by O(scale), far
 * above every term.  Breaking the compiler on purpose, one change at a time
 * (max_pool padding as 0 instead of -inf; conv2d_backward_input's q < Q as
 * q < Q + 1; adaptive pooling's bin end one short; argmax keeping the last
 * tie; max reductions starting at 0; simplify's sum-of-broadcast count
 * missing the new leading dims; avg_pool's excluded padding counted on the
 * left) failed 2 to 19 graphs in 100 to 200 each. */
enum { NOISE_K = 8 };
static bool close_enough(bool f32tol, double u, double v, double scale, double noise, double cmag, stats *st) {
    if (isnan(u) || isnan(v)) return isnan(u) && isnan(v);
    if (isinf(u) || isinf(v)) return u == v;
    double base = f32tol ? 1e-3 * fabs(v) + 1e-4 * scale : 1e-9 * fabs(v) + 1e-12 * scale;
    double floor_ = (f32tol ? 1e-5 : 1e-13) * cmag;
    double tol = base + NOISE_K * noise + floor_, err = fabs(u - v);
    if (tol > 0 && err / tol > st->worst_ratio) st->worst_ratio = err / tol;
    if (err > base && noise > 0 && (err - base) / noise > st->worst_k) st->worst_k = (err - base) / noise;
    if (err > base + NOISE_K * noise && cmag > 0 && (err - base - NOISE_K * noise) / cmag > st->worst_m[f32tol])
        st->worst_m[f32tol] = (err - base - NOISE_K * noise) / cmag;
    return err <= tol;
}

/* The cone of a result (what it is computed from): whether any of it is
 * f32, and the largest magnitude in it (from a twin's values). */
static void cone(lathe_graph *g, const lathe_node *root, lathe_graph *tw, lathe_eval *tev, bool *f32, double *cmag) {
    int n = lathe_graph_num_nodes(g), *stack = malloc(sizeof(int) * (size_t)(n + 1)), sp = 0;
    bool *seen = calloc((size_t)n + 1, 1);
    *f32 = false, *cmag = 0;
    stack[sp++] = root->id, seen[root->id] = true;
    if (root->op == LT_OP_BUFFER)
        for (int i = 0; i < lathe_graph_num_updates(g); i++) {
            lathe_node *b, *v;
            lathe_graph_update(g, i, &b, &v);
            if (b == root && !seen[v->id]) stack[sp++] = v->id, seen[v->id] = true;
        }
    while (sp) {
        lathe_node *x = lathe_graph_node(g, stack[--sp]);
        if (x->dtype == LATHE_F32) *f32 = true;
        if (lt_is_float(x->dtype)) {
            const double *v = lathe_eval_value(tev, lathe_graph_node(tw, x->id));
            for (int64_t e = 0; v && e < x->numel; e++)
                if (isfinite(v[e])) *cmag = fmax(*cmag, fabs(v[e]));
        }
        for (int i = 0; i < x->nin; i++)
            if (!seen[x->in[i]->id]) seen[x->in[i]->id] = true, stack[sp++] = x->in[i]->id;
    }
    free(seen);
    free(stack);
}

static void show(gen *s, const char *what) {
    fprintf(stderr,
            "\n==== random graph seed %llu: %s\n"
            "==== replay: LATHE_RANDOM_GRAPHS_SEED=%llu LATHE_RANDOM_GRAPHS=1, or save the text below and run\n"
            "==== `lathe dump FILE --stage fused`\n",
            (unsigned long long)s->seed, what, (unsigned long long)s->seed);
    lathe_graph_print(s->g, stderr);
    fprintf(stderr, "==== end of graph %llu\n", (unsigned long long)s->seed);
}

static void mark_live(lathe_graph *g, bool *live) {
    int n = lathe_graph_num_nodes(g), *stack = malloc(sizeof(int) * (size_t)(n + 1)), sp = 0;
    memset(live, 0, sizeof(bool) * (size_t)n);
    for (int i = 0; i < lathe_graph_num_outputs(g); i++) stack[sp++] = lathe_node_id(lathe_graph_output(g, i)), live[stack[sp - 1]] = true;
    for (int i = 0; i < lathe_graph_num_updates(g); i++) {
        lathe_node *b, *v;
        lathe_graph_update(g, i, &b, &v);
        if (!live[v->id]) live[v->id] = true, stack[sp++] = v->id;
    }
    while (sp) {
        lathe_node *x = lathe_graph_node(g, stack[--sp]);
        for (int i = 0; i < lathe_node_num_inputs(x); i++) {
            lathe_node *y = lathe_node_input(x, i);
            if (!live[y->id]) live[y->id] = true, stack[sp++] = y->id;
        }
    }
    free(stack);
}

/* The twin of g in the other precision: the same nodes with every float
 * dtype replaced by `to` (casts between floats become casts to `to`), the
 * same outputs and updates.  Gradient nodes are ordinary nodes, so they are
 * copied too. */
static lathe_graph *twin_graph(lathe_graph *g, lathe_dtype to) {
    lathe_graph *h = lathe_graph_new();
    int n = lathe_graph_num_nodes(g);
    lathe_node **map = calloc((size_t)n + 1, sizeof *map);
    for (int i = 0; i < n; i++) {
        lathe_node *x = lathe_graph_node(g, i), *y;
        lathe_dtype d = lt_is_float(x->dtype) ? to : x->dtype;
        if (lt_ops[x->op].kind == LT_LEAF) {
            void *data = NULL;
            if (x->op == LT_OP_CONST) {
                data = malloc((size_t)x->numel * lathe_dtype_size(d) + 8);
                for (int64_t j = 0; j < x->numel; j++) {
                    if (d == x->dtype) memcpy((char *)data + j * lathe_dtype_size(d), (char *)x->data + j * lathe_dtype_size(d), lathe_dtype_size(d));
                    else if (d == LATHE_F64) ((double *)data)[j] = ((const float *)x->data)[j];
                    else ((float *)data)[j] = (float)((const double *)x->data)[j];
                }
            }
            y = lt_make_leaf(h, x->op, x->name, d, x->rank, x->shape, x->requires_grad && lt_is_float(d), data);
            free(data);
        } else {
            lathe_node *ins[8];
            lathe_node **in = x->nin <= 8 ? ins : malloc(sizeof *in * (size_t)x->nin);
            for (int k = 0; k < x->nin; k++) in[k] = map[x->in[k]->id];
            lt_attr a[LT_MAX_ATTRS];
            memcpy(a, x->attr, sizeof a);
            if (x->op == LT_OP_CAST && lt_is_float((lathe_dtype)a[0].v[0])) a[0].v[0] = to;
            y = lt_make(h, x->op, x->nin, in, a);
            if (in != ins) free(in);
        }
        map[i] = y;
    }
    for (int i = 0; i < lathe_graph_num_outputs(g); i++)
        lathe_output(h, lathe_graph_output_name(g, i), map[lathe_graph_output(g, i)->id]);
    for (int i = 0; i < lathe_graph_num_updates(g); i++) {
        lathe_node *b, *v;
        lathe_graph_update(g, i, &b, &v);
        lathe_update(h, map[b->id], map[v->id]);
    }
    free(map);
    return h;
}

/* Build, compile, run and compare graph `seed`.  Returns false on a mismatch
 * (after printing the graph). */
static bool check_graph(uint64_t seed, stats *st) {
    static gen s;
    char why[512] = "";
    grow(&s, seed);
    bool backward;
    int nfwd = finish(&s, &backward, why, sizeof why);
    lathe_graph *g = s.g;
    bool ok = true;
    st->graphs++;
    st->fails += s.fails;
    st->built += s.nops;
    st->backward_graphs += backward;
    bool has32 = false, has64 = false;
    for (int i = 0; i < lathe_graph_num_nodes(g); i++) {
        has32 |= lathe_graph_node(g, i)->dtype == LATHE_F32;
        has64 |= lathe_graph_node(g, i)->dtype == LATHE_F64;
    }
    st->f32_graphs += has32;
    st->nodes += lathe_graph_num_nodes(g);
    bool *live = malloc((size_t)lathe_graph_num_nodes(g) + 1);
    mark_live(g, live);
    for (int i = 0; i < lathe_graph_num_nodes(g); i++) {
        lathe_node *n = lathe_graph_node(g, i);
        if (!live[i]) continue;
        if (i < nfwd || strstr(lt_ops[n->op].name, "_backward")) st->cover[n->op]++;
        if (i < nfwd && lt_ops[n->op].kind != LT_LEAF) st->fwd_ops++;
    }
    free(live);
    if (verbose) {
        fprintf(stderr, "---- graph %llu: %d nodes, %d ops built, %d failures\n", (unsigned long long)seed,
                lathe_graph_num_nodes(g), s.nops, s.fails);
        lathe_graph_print(g, stderr);
    }
    lathe_program *jit = NULL, *ref = NULL;
    lathe_graph *tw[2] = {NULL, NULL};
    lathe_eval *tev[2] = {NULL, NULL};
    bindings b = {0};
    result res[2 * MAX_LEAVES + 8];
    int nres = 0;
    void **bits = NULL;
    if (*why) goto bad; /* autodiff failed */
    /* the text form parses back to the same text (what a replay reads) */
    char *t1 = lathe_graph_to_text(g), *t2 = NULL;
    lathe_graph *g2 = lathe_graph_new();
    if (lathe_parse(g2, t1, strlen(t1), "random") != LATHE_OK) snprintf(why, sizeof why, "text does not parse: %s", lathe_graph_error(g2));
    else if (strcmp(t1, t2 = lathe_graph_to_text(g2))) snprintf(why, sizeof why, "text does not round-trip");
    free(t1);
    free(t2);
    lathe_graph_free(g2);
    if (*why) goto bad;
    if (lathe_graph_verify(g) != LATHE_OK) {
        snprintf(why, sizeof why, "verifier: %s", lathe_graph_error(g));
        goto bad;
    }
    struct timespec t0, t1s;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    jit = lathe_compile(g, LATHE_BACKEND_JIT);
    clock_gettime(CLOCK_MONOTONIC, &t1s);
    st->compile_s += (double)(t1s.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1s.tv_nsec - t0.tv_nsec);
    if (!jit) {
        snprintf(why, sizeof why, "JIT compile failed: %s", lathe_graph_error(g));
        goto bad;
    }
    ref = lathe_compile(g, LATHE_BACKEND_EVAL);
    if (!ref) {
        snprintf(why, sizeof why, "evaluator compile failed: %s", lathe_graph_error(g));
        goto bad;
    }
    b = make_bindings(&s, seed);
    lathe_program_set_threads(jit, 1);
    if (!bind(&s, jit, &b, why, sizeof why) || !bind(&s, ref, &b, why, sizeof why)) goto bad;
    if (lathe_program_run(jit) != LATHE_OK) {
        snprintf(why, sizeof why, "JIT run: %s", lathe_program_error(jit));
        goto bad;
    }
    if (lathe_program_run(ref) != LATHE_OK) {
        snprintf(why, sizeof why, "evaluator run: %s", lathe_program_error(ref));
        goto bad;
    }
    nres = results(g, res, 2 * MAX_LEAVES + 8);
    bits = calloc((size_t)nres, sizeof *bits);
    /* the twins in the other precisions, for the noise of each result */
    for (int k = 0; k < 2; k++) {
        lathe_dtype to = k == 0 ? LATHE_F64 : LATHE_F32;
        if (!(k == 0 ? has32 : has64)) continue;
        tw[k] = twin_graph(g, to);
        if (lathe_graph_status(tw[k]) != LATHE_OK || !(tev[k] = lathe_eval_new(tw[k]))) {
            snprintf(why, sizeof why, "twin graph: %s", lathe_graph_error(tw[k]));
            goto bad;
        }
        for (int i = 0; i < b.n; i++) {
            lathe_node *n = s.leaves[i].n;
            double *d = malloc(sizeof *d * (size_t)(n->numel + 1));
            for (int64_t j = 0; j < n->numel; j++) d[j] = elem_at(n->dtype, b.data[i], j);
            lathe_eval_set_f64(tev[k], lathe_node_name(n), d);
            free(d);
        }
        if (lathe_eval_run(tev[k]) != LATHE_OK) {
            snprintf(why, sizeof why, "twin graph run: %s", lathe_eval_error(tev[k]));
            goto bad;
        }
    }
    for (int i = 0; i < nres && !*why; i++) {
        const lathe_node *n = res[i].n;
        size_t nb = (size_t)n->numel * lathe_dtype_size(n->dtype);
        void *x = malloc(nb + 8), *y = malloc(nb + 8);
        bits[i] = x;
        if (lathe_program_get(jit, res[i].name, x, nb) != LATHE_OK)
            snprintf(why, sizeof why, "get %s: %s", res[i].name, lathe_program_error(jit));
        else if (lathe_program_get(ref, res[i].name, y, nb) != LATHE_OK)
            snprintf(why, sizeof why, "get %s: %s", res[i].name, lathe_program_error(ref));
        double scale = 0, noise = 0;
        for (int64_t e = 0; e < n->numel; e++) {
            double v = elem_at(n->dtype, y, e);
            if (isfinite(v)) scale = fmax(scale, fabs(v));
        }
        for (int k = 0; k < 2; k++) {
            if (!tev[k]) continue;
            const double *tv = n->op == LT_OP_BUFFER ? lathe_eval_leaf(tev[k], res[i].name)
                                                     : lathe_eval_value(tev[k], lathe_graph_find_output(tw[k], res[i].name));
            double d = 0;
            for (int64_t e = 0; e < n->numel; e++) {
                double v = elem_at(n->dtype, y, e);
                if (isfinite(v) && isfinite(tv[e])) d = fmax(d, fabs(v - tv[e]));
            }
            noise = fmax(noise, k == 0 ? d : ldexp(d, -29));
        }
        bool in32;
        double cmag;
        int tk = tev[0] ? 0 : 1;
        cone(g, n, tw[tk], tev[tk], &in32, &cmag);
        for (int64_t e = 0; e < n->numel && !*why; e++) {
            double u = elem_at(n->dtype, x, e), v = elem_at(n->dtype, y, e);
            if (!close_enough(in32, u, v, scale, noise, cmag, st))
                snprintf(why, sizeof why, "%s %s[%lld]: jit %.10g, evaluator %.10g (scale %.3g, noise %.3g)",
                         res[i].name, lathe_dtype_name(n->dtype), (long long)e, u, v, scale, noise);
        }
        free(y);
    }
    if (*why) goto bad;
    /* again with 2 threads, from the same bindings (buffers were updated): same bits */
    lathe_program_set_threads(jit, 2);
    if (!bind(&s, jit, &b, why, sizeof why)) goto bad;
    if (lathe_program_run(jit) != LATHE_OK) {
        snprintf(why, sizeof why, "JIT run (2 threads): %s", lathe_program_error(jit));
        goto bad;
    }
    for (int i = 0; i < nres && !*why; i++) {
        size_t nb = (size_t)res[i].n->numel * lathe_dtype_size(res[i].n->dtype);
        void *x = malloc(nb + 8);
        lathe_program_get(jit, res[i].name, x, nb);
        if (nb && memcmp(x, bits[i], nb)) snprintf(why, sizeof why, "%s differs between 1 and 2 threads", res[i].name);
        free(x);
    }
    if (*why) goto bad;
    goto done;
bad:
    ok = false;
    if (st->mismatches < 16) st->bad_seeds[st->mismatches] = seed;
    if (st->mismatches < 3 || verbose) show(&s, why);
    else fprintf(stderr, "random graph seed %llu: %s\n", (unsigned long long)seed, why);
    st->mismatches++;
done:
    for (int i = 0; i < nres && bits; i++) free(bits[i]);
    free(bits);
    if (b.data) free_bindings(&b);
    lathe_program_free(jit);
    lathe_program_free(ref);
    for (int k = 0; k < 2; k++) lathe_eval_free(tev[k]), lathe_graph_free(tw[k]);
    lathe_graph_free(g);
    return ok;
}

/* 200 graphs take about 25 s on 2 idle cores (60 s under ASan and UBSan);
 * nearly all of it is LLVM compiling the kernels. */
enum { DEFAULT_GRAPHS = 200 };

static long env_long(const char *name, long dflt) {
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 0) : dflt;
}

static void test_random_graphs(void **state) {
    (void)state;
    verbose = getenv("LATHE_RANDOM_GRAPHS_VERBOSE") != NULL;
    long count = env_long("LATHE_RANDOM_GRAPHS", DEFAULT_GRAPHS), first = env_long("LATHE_RANDOM_GRAPHS_SEED", 1);
    stats *st = calloc(1, sizeof *st);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < count; i++) check_graph((uint64_t)(first + i), st);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("random graphs: %d graphs (%d with f32, %d with backward), %ld ops built, %d live forward ops, "
           "%ld generator failures; %.1f s (%.1f s in JIT compiles); worst error/tolerance %.3g, noise factor %.3g, "
           "cone factor %.3g (f64) %.3g (f32)\n",
           st->graphs, st->f32_graphs, st->backward_graphs, st->built, st->fwd_ops, st->fails, secs,
           st->compile_s, st->worst_ratio, st->worst_k, st->worst_m[0], st->worst_m[1]);
    printf("ops covered (live, count):");
    int missing = 0;
    for (int op = 0; op < LT_OP_COUNT; op++) {
        printf(" %s=%d", lt_ops[op].name, st->cover[op]);
        if (!st->cover[op] && !strstr(lt_ops[op].name, "_backward")) missing++;
    }
    printf("\n");
    fflush(stdout);
    if (st->mismatches) {
        fprintf(stderr, "%d of %d random graphs failed; seeds:", st->mismatches, st->graphs);
        for (int i = 0; i < st->mismatches && i < 16; i++) fprintf(stderr, " %llu", (unsigned long long)st->bad_seeds[i]);
        fprintf(stderr, "\n");
    }
    int mismatches = st->mismatches;
    long fails = st->fails, built = st->built;
    free(st);
    assert_int_equal(mismatches, 0);
    /* the generator builds valid graphs: a refused builder call is a generator bug */
    if (fails * 100 > built + fails) fail_msg("%ld of %ld builder calls failed", fails, built + fails);
    /* every forward op, over a run of the default size */
    if (count >= DEFAULT_GRAPHS && missing) fail_msg("%d forward ops never generated", missing);
}

/* ---- reduced reproducers of bugs the generator found ---------------------------
 * Each is the smallest graph that shows the bug; they fail until it is fixed. */

/* Compile text IR with both backends, bind x (and the buffers) to small
 * values, run once, and require every output and buffer to agree.  The JIT
 * compile runs in a child process, since an internal error aborts. */
static void both_agree(const char *label, const char *ir) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        lathe_graph *g = lathe_graph_new();
        if (lathe_parse(g, ir, strlen(ir), label) != LATHE_OK) _exit(3);
        lathe_program *p = lathe_compile(g, LATHE_BACKEND_JIT);
        _exit(p ? 0 : 4);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("%s: the JIT compile %s (status %d)", label, WIFSIGNALED(status) ? "crashed" : "failed",
                 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    lathe_graph *g = lathe_graph_new();
    assert_int_equal(lathe_parse(g, ir, strlen(ir), label), LATHE_OK);
    lathe_program *jit = lathe_compile(g, LATHE_BACKEND_JIT), *ref = lathe_compile(g, LATHE_BACKEND_EVAL);
    assert_non_null(jit);
    assert_non_null(ref);
    result res[16];
    int nres = results(g, res, 16);
    for (int i = 0; i < lathe_graph_num_nodes(g); i++) { /* leaves: 1, 2, 3, ... */
        lathe_node *n = lathe_graph_node(g, i);
        if (!lathe_node_name(n)) continue;
        float v[64];
        for (int64_t j = 0; j < n->numel && j < 64; j++) v[j] = (float)(j + 1 + 10 * i);
        assert_int_equal(lathe_program_set(jit, lathe_node_name(n), v, sizeof(float) * (size_t)n->numel), LATHE_OK);
        assert_int_equal(lathe_program_set(ref, lathe_node_name(n), v, sizeof(float) * (size_t)n->numel), LATHE_OK);
    }
    assert_int_equal(lathe_program_run(jit), LATHE_OK);
    assert_int_equal(lathe_program_run(ref), LATHE_OK);
    char why[256] = "";
    for (int i = 0; i < nres && !*why; i++) {
        float x[64], y[64];
        size_t nb = sizeof(float) * (size_t)res[i].n->numel;
        assert_int_equal(lathe_program_get(jit, res[i].name, x, nb), LATHE_OK);
        assert_int_equal(lathe_program_get(ref, res[i].name, y, nb), LATHE_OK);
        for (int64_t e = 0; e < res[i].n->numel && !*why; e++)
            if (x[e] != y[e])
                snprintf(why, sizeof why, "%s: %s[%lld]: jit %g, evaluator %g", label, res[i].name, (long long)e, x[e], y[e]);
    }
    lathe_program_free(jit);
    lathe_program_free(ref);
    lathe_graph_free(g);
    if (*why) fail_msg("%s", why);
}

/* Updates take values computed by the run, all at once: b takes a's old
 * value.  The JIT applies the update copies one after another
 * (runtime/executor.c memmoves p->copies in order), so b reads the a that
 * the first update already wrote (a + x instead of a).  Found
 * as random graph 1117 (a running-variance buffer passed through an
 * identity permute into another buffer's update).  Swapping the two update
 * lines hides it. */
static void regression_update_reads_old_buffer(void **state) {
    (void)state;
    both_agree("update-order",
               "%0 = buffer \"a\" f32[3]\n"
               "%1 = buffer \"b\" f32[3]\n"
               "%2 = input \"x\" f32[3]\n"
               "%3 = add %0, %2 : f32[3]\n"
               "output \"y\" %3\n"
               "update %0 %3\n"
               "update %1 %0\n");
}

/* The same aliasing through an output: y is the buffer's value during the
 * run (a, from the evaluator), but the JIT's output shares the buffer's
 * storage and reads back the updated a + x. */
static void regression_output_of_updated_buffer(void **state) {
    (void)state;
    both_agree("output-aliases-buffer",
               "%0 = buffer \"a\" f32[3]\n"
               "%1 = input \"x\" f32[3]\n"
               "%2 = add %0, %1 : f32[3]\n"
               "output \"y\" %0\n"
               "update %0 %2\n");
}

/* softmax (and log_softmax) over a zero-length axis is valid (the result is
 * empty) and the evaluator runs it, but the JIT aborts the process:
 * "internal error at compiler/jit.c:222: n && f->buf_of[n->id] >= 0".  The
 * decomposition builds max over the empty axis, which the max builder
 * refuses, and the output is left without a buffer.  Found as random graph
 * 1789 (log_softmax over an empty slice, even as dead code). */
static void regression_softmax_empty_axis(void **state) {
    (void)state;
    both_agree("softmax-empty-axis",
               "%0 = input \"x\" f32[0,3]\n"
               "%1 = softmax %0 axis=0 : f32[0,3]\n"
               "output \"y\" %1\n");
}

/* Run text IR on the JIT with 1 and with 2 threads, leaves bound to
 * sin(1 + j + 7 i) (f64), and require the same bits. */
static void same_bits_1_2_threads(const char *label, const char *ir) {
    lathe_graph *g = lathe_graph_new();
    assert_int_equal(lathe_parse(g, ir, strlen(ir), label), LATHE_OK);
    lathe_program *p = lathe_compile(g, LATHE_BACKEND_JIT);
    assert_non_null(p);
    double out[2][64];
    for (int pass = 0; pass < 2; pass++) {
        lathe_program_set_threads(p, pass + 1);
        for (int i = 0; i < lathe_graph_num_nodes(g); i++) {
            lathe_node *n = lathe_graph_node(g, i);
            if (!lathe_node_name(n)) continue;
            double v[64];
            for (int64_t j = 0; j < n->numel && j < 64; j++) v[j] = sin(1.0 + (double)j + 7.0 * i);
            assert_int_equal(lathe_program_set(p, lathe_node_name(n), v, sizeof(double) * (size_t)n->numel), LATHE_OK);
        }
        assert_int_equal(lathe_program_run(p), LATHE_OK);
        lathe_node *y = lathe_graph_output(g, 0);
        assert_int_equal(lathe_program_get(p, "y", out[pass], sizeof(double) * (size_t)y->numel), LATHE_OK);
    }
    char why[256] = "";
    for (int64_t e = 0; e < lathe_graph_output(g, 0)->numel && !*why; e++)
        if (memcmp(&out[0][e], &out[1][e], sizeof(double)))
            snprintf(why, sizeof why, "%s: y[%lld]: 1 thread %.17g, 2 threads %.17g", label, (long long)e, out[0][e], out[1][e]);
    lathe_program_free(p);
    lathe_graph_free(g);
    if (*why) fail_msg("%s", why);
}

/* "Results are the same bits for any count" does not hold: the kernel's
 * loop is vectorized with a scalar remainder, the backend contracts
 * (p*s)*a + (q*s)*b into an FMA differently in the two, and the thread
 * count moves the chunk boundaries, so an element that is in the vector
 * body on 1 thread is in the remainder on 2 (here 20 elements: 5 vectors
 * of 4 on one thread, 2 vectors and 2 left over per thread on two).
 * Found as random graph 1895 (a batch-norm gradient, 1 ulp apart). */
static void regression_threads_fma_remainder(void **state) {
    (void)state;
    same_bits_1_2_threads("fma-remainder",
                          "%0 = input \"v\" f64[1,1,1,1]\n"
                          "%1 = exp %0 : f64[1,1,1,1]\n"
                          "%2 = input \"p\" f64[1,1,1,1]\n"
                          "%3 = input \"q\" f64[1,1,1,1]\n"
                          "%4 = input \"a\" f64[2,1,5,2]\n"
                          "%5 = input \"b\" f64[2,1,5,2]\n"
                          "%6 = mul %2, %1 : f64[1,1,1,1]\n"
                          "%7 = mul %6, %4 : f64[2,1,5,2]\n"
                          "%8 = mul %3, %1 : f64[1,1,1,1]\n"
                          "%9 = mul %8, %5 : f64[2,1,5,2]\n"
                          "%10 = add %7, %9 : f64[2,1,5,2]\n"
                          "output \"y\" %10\n");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_graphs),
        cmocka_unit_test(regression_update_reads_old_buffer),
        cmocka_unit_test(regression_output_of_updated_buffer),
        cmocka_unit_test(regression_softmax_empty_axis),
        cmocka_unit_test(regression_threads_fma_remainder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
