/* fuse.c - fusion: which graph values get a buffer, and the kernels that
 * compute them.
 *
 * A value is materialized (gets a buffer and a kernel) when it is a leaf, an
 * output or an update, or when inlining it would recompute work: a value
 * used more than once is materialized unless it is a few cheap elementwise
 * ops or an index op that no contraction or window reads, which each
 * consumer recomputes.  Everything else is inlined as an expression into its
 * one consumer:
 *   - elementwise and index ops (reshape, permute, broadcast, slice, concat)
 *     inline into any consumer except that only index ops inline into
 *     contractions and windows (matmul, conv2d, pools and their gradients),
 *     whose operands are read many times per element;
 *   - a value that contains a reduction (a sum, a matmul, a conv) inlines only
 *     into an elementwise consumer that reads it at the same element, which
 *     fuses epilogues (bias, activation, residual add, batch-norm apply) into
 *     the loop that produces a contraction's output; at most one contraction
 *     or window goes into a kernel (two convs' gradients added: one is
 *     materialized);
 *   - a row statistic -- a value that contains a reduction and is read,
 *     broadcast along its later dims, by one pointwise consumer (a softmax's
 *     max and sum, a layer norm's rstd, the two means of its gradient) --
 *     goes into the kernel of that consumer's shape instead of a buffer of
 *     its own, when each parallel chunk of that kernel holds whole rows and
 *     it has no contraction (rows(), after the other decisions); lowering
 *     computes it once per row, before the loop over the row.
 * So a chain of elementwise ops becomes one loop, a reduction takes the
 * elementwise ops that feed it, a conv takes its bias and activation, and a
 * softmax over rows is two kernels.
 *
 * Expressions are built by value(): the value of node n at a multi-index is
 * a load when n has a buffer, else n's own rule applied to its operands'
 * values at the indices the rule derives (broadcasting, permutation,
 * windows).  Index arithmetic is folded as it is built; a reshaped buffer
 * is read at the reshape's linear index.
 *
 * A contraction (matmul, conv2d and its gradients) or a max-pool (and its
 * gradient) computed at its kernel's own element, with operands that are
 * strided views of buffers, also gets a plan for the vector lowering
 * (kernel.h's lt_contract, made by contract.c): the views, a register tile
 * sized for the target's vector unit, and the kernel's parallel range counted
 * in tiles.  So does index_select_backward, always a kernel of its own: a
 * scatter-add whose tiles own blocks of columns and add the gradient's rows
 * in index order.  The dumps of the result are in fuse_print.c. */
#include <math.h>
#include <string.h>

#include "batch.h"
#include "kernel.h"
#include "lathe_autodiff.h"

struct lt_xchunk {
    lt_xchunk *next;
    size_t used;
    lt_expr e[256];
};

typedef struct {
    lt_fused *f;
    lathe_graph *g;
    int *consumer;      /* node -> its single consumer, -1 if none or several */
    int *uses;
    bool *contains;     /* inlined value contains a reduction */
    bool *heavy;        /* inlined value contains a contraction or a window */
    bool *heavy_use;    /* some consumer is a contraction or a window */
    int *heavy_node;    /* inlined value -> the contraction or window it contains, -1 none */
    int *size;          /* inlined value's expression size (loads count 1) */
    int root;           /* node of the kernel being built */
    int nextvar;
    int *fused;         /* nodes inlined into the current kernel, once each */
    int nfused;
    int *stamp;         /* node -> root of the last kernel that listed it in fused */
    int *row_from;      /* node -> the first of its dims a scatter reads as dense rows (it is the
                         * gradient of an index_select_backward), or LATHE_MAX_RANK + 1 */
    lt_contract *con;   /* the current kernel's contraction plan, if any */
    int64_t *vlo, *vhi; /* loop variable -> the values it takes, inclusive (INT64_MIN, INT64_MAX: unknown) */
    int vcap;
    bool *gathered;     /* node -> an all_gather across processes reads it (it needs a dense buffer) */
    int *row_scale;     /* node -> procs when its rows run over one process's part of the batch, else 1 */
} fz;

/* An all_gather across processes: a communication step, not a kernel. */
static bool is_gather(const lathe_node *n) { return n->op == LT_OP_ALL_GATHER && n->attr[1].v[0] > 1; }

/* ---- expression construction ------------------------------------------------ */

static lt_expr *xnew(fz *z, lt_xkind k, lathe_dtype t) {
    lt_fused *f = z->f;
    if (!f->arena || f->arena->used == 256) {
        lt_xchunk *c = calloc(1, sizeof *c);
        if (!c) return NULL;
        c->next = f->arena;
        f->arena = c;
    }
    lt_expr *e = &f->arena->e[f->arena->used++];
    e->kind = k;
    e->t = t;
    e->id = f->nexpr++;
    return e;
}

static lt_expr *xi(fz *z, int64_t v) {
    lt_expr *e = xnew(z, X_CONST, LATHE_I64);
    e->i = v;
    return e;
}
static lt_expr *xb(fz *z, bool v) {
    lt_expr *e = xnew(z, X_CONST, LATHE_BOOL);
    e->i = v;
    return e;
}
static lt_expr *xf(fz *z, double v, lathe_dtype t) {
    lt_expr *e = xnew(z, X_CONST, t);
    e->f = v;
    return e;
}
static lt_expr *xvar(fz *z, int v) {
    lt_expr *e = xnew(z, X_VAR, LATHE_I64);
    e->var = v;
    return e;
}
static bool isk(const lt_expr *e, int64_t v) { return e->kind == X_CONST && e->t != LATHE_F32 && e->t != LATHE_F64 && e->i == v; }

static lt_expr *xbin(fz *z, int op, lathe_dtype t, lt_expr *a, lt_expr *b) {
    lt_expr *e = xnew(z, X_BIN, t);
    e->op = op;
    e->a = a;
    e->b = b;
    return e;
}

/* ---- index ranges and affine forms ------------------------------------------
 *
 * Index arithmetic is simplified with what is known of the values each loop
 * variable takes (a kernel's own dims, reductions over whole axes).  A
 * reshape of (r, c) in [2048, 512] to [32, 64, 512] reads its operand at
 * (r*512 + c) / 32768, (r*512 + c) / 512 % 64 and (r*512 + c) % 512; knowing
 * 0 <= c < 512 those are r / 64, r % 64 and c, and the load they feed,
 * (r / 64)*32768 + (r % 64)*512 + c, is r*512 + c: a contiguous row LLVM
 * vectorizes, instead of a gather. */

typedef struct {
    int64_t lo, hi; /* inclusive */
} irange;
static const irange FULL = {INT64_MIN, INT64_MAX};

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static int64_t gcd64(int64_t a, int64_t b) {
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* The values i64 expression e can take, looking at most *budget nodes deep
 * (expressions share subtrees: the budget bounds the walk). */
static irange rng_at(const fz *z, const lt_expr *e, int *budget) {
    if (--*budget < 0) return FULL;
    if (e->kind == X_CONST && e->t != LATHE_F32 && e->t != LATHE_F64) return (irange){e->i, e->i};
    if (e->t == LATHE_BOOL) return (irange){0, 1};
    if (e->t != LATHE_I64) return FULL;
    if (e->kind == X_VAR) return e->var >= 0 && e->var < z->vcap ? (irange){z->vlo[e->var], z->vhi[e->var]} : FULL;
    if (e->kind == X_SELECT) {
        irange a = rng_at(z, e->b, budget), b = rng_at(z, e->c, budget);
        return (irange){min64(a.lo, b.lo), max64(a.hi, b.hi)};
    }
    if (e->kind != X_BIN) return FULL;
    irange a = rng_at(z, e->a, budget), b = rng_at(z, e->b, budget), r;
    switch (e->op) {
    case LT_OP_ADD:
        if (__builtin_add_overflow(a.lo, b.lo, &r.lo) || __builtin_add_overflow(a.hi, b.hi, &r.hi)) return FULL;
        return r;
    case LT_OP_SUB:
        if (__builtin_sub_overflow(a.lo, b.hi, &r.lo) || __builtin_sub_overflow(a.hi, b.lo, &r.hi)) return FULL;
        return r;
    case LT_OP_MUL: {
        int64_t p[4];
        if (__builtin_mul_overflow(a.lo, b.lo, &p[0]) || __builtin_mul_overflow(a.lo, b.hi, &p[1]) ||
            __builtin_mul_overflow(a.hi, b.lo, &p[2]) || __builtin_mul_overflow(a.hi, b.hi, &p[3]))
            return FULL;
        return (irange){min64(min64(p[0], p[1]), min64(p[2], p[3])), max64(max64(p[0], p[1]), max64(p[2], p[3]))};
    }
    case XB_IDIV: /* truncating division by a positive constant is monotone */
        return b.lo == b.hi && b.lo > 0 ? (irange){a.lo / b.lo, a.hi / b.lo} : FULL;
    case XB_IMOD:
        if (b.lo != b.hi || b.lo <= 0) return FULL;
        if (a.lo >= 0) return a.hi < b.lo ? a : (irange){0, b.lo - 1};
        return a.lo > -b.lo && a.hi < b.lo ? a : (irange){-(b.lo - 1), b.lo - 1};
    case LT_OP_MINIMUM: return (irange){min64(a.lo, b.lo), min64(a.hi, b.hi)};
    case LT_OP_MAXIMUM: return (irange){max64(a.lo, b.lo), max64(a.hi, b.hi)};
    default: return FULL;
    }
}
static irange rng(const fz *z, const lt_expr *e) {
    int budget = 256;
    return rng_at(z, e, &budget);
}

/* Add the values co * e can take to r; false when they overflow. */
static bool add_term_range(const fz *z, lt_expr *e, int64_t co, irange *r) {
    irange t = rng(z, e);
    int64_t p0, p1;
    return !__builtin_mul_overflow(t.lo, co, &p0) && !__builtin_mul_overflow(t.hi, co, &p1) &&
           !__builtin_add_overflow(r->lo, min64(p0, p1), &r->lo) && !__builtin_add_overflow(r->hi, max64(p0, p1), &r->hi);
}

/* Structural equality of index expressions, at most depth deep. */
static bool xeq(const lt_expr *a, const lt_expr *b, int depth) {
    if (a == b) return true;
    if (!a || !b || depth > 24 || a->kind != b->kind || a->t != b->t) return false;
    switch (a->kind) {
    case X_CONST: return a->i == b->i && (a->f == b->f || (a->f != a->f && b->f != b->f));
    case X_VAR: return a->var == b->var;
    case X_LOAD: return a->buf == b->buf && xeq(a->a, b->a, depth + 1);
    case X_BIN: return a->op == b->op && xeq(a->a, b->a, depth + 1) && xeq(a->b, b->b, depth + 1);
    case X_UN:
        return a->op == b->op && a->i == b->i && a->f == b->f && a->f2 == b->f2 && xeq(a->a, b->a, depth + 1);
    case X_SELECT: return xeq(a->a, b->a, depth + 1) && xeq(a->b, b->b, depth + 1) && xeq(a->c, b->c, depth + 1);
    default: return false;
    }
}

/* An i64 expression as sum of co[i] * at[i] plus c. */
enum { AFF_TERMS = 12 };
typedef struct {
    int n;
    lt_expr *at[AFF_TERMS];
    int64_t co[AFF_TERMS];
    int64_t c;
} aff;

/* Add k * e to f; false when it does not fit (too many terms, overflow). */
static bool aff_put(aff *f, lt_expr *e, int64_t k, int depth) {
    if (k == 0) return true;
    if (e->kind == X_CONST && e->t == LATHE_I64) {
        int64_t p;
        return !__builtin_mul_overflow(e->i, k, &p) && !__builtin_add_overflow(f->c, p, &f->c);
    }
    if (e->kind == X_BIN && e->t == LATHE_I64 && depth < 16) {
        int64_t kk;
        if (e->op == LT_OP_ADD) return aff_put(f, e->a, k, depth + 1) && aff_put(f, e->b, k, depth + 1);
        if (e->op == LT_OP_SUB)
            return k != INT64_MIN && aff_put(f, e->a, k, depth + 1) && aff_put(f, e->b, -k, depth + 1);
        if (e->op == LT_OP_MUL && e->b->kind == X_CONST)
            return !__builtin_mul_overflow(k, e->b->i, &kk) && aff_put(f, e->a, kk, depth + 1);
        if (e->op == LT_OP_MUL && e->a->kind == X_CONST)
            return !__builtin_mul_overflow(k, e->a->i, &kk) && aff_put(f, e->b, kk, depth + 1);
    }
    for (int i = 0; i < f->n; i++)
        if (xeq(f->at[i], e, 0)) return !__builtin_add_overflow(f->co[i], k, &f->co[i]);
    if (f->n == AFF_TERMS) return false;
    f->at[f->n] = e;
    f->co[f->n++] = k;
    return true;
}

static void aff_drop(aff *f, int i) {
    f->at[i] = f->at[--f->n];
    f->co[i] = f->co[f->n];
}

/* e as an affine form, with (x / m)*m*s + (x % m)*s merged into x*s (C's
 * division: true for every x). */
static bool aff_of(lt_expr *e, aff *f) {
    f->n = 0;
    f->c = 0;
    if (!aff_put(f, e, 1, 0)) return false;
    for (bool again = true; again;) {
        again = false;
        for (int i = 0; i < f->n && !again; i++) {
            if (f->co[i] == 0) {
                aff_drop(f, i);
                again = true;
                break;
            }
            lt_expr *d = f->at[i];
            if (d->kind != X_BIN || d->op != XB_IDIV || d->b->kind != X_CONST) continue;
            int64_t m = d->b->i, ms;
            for (int j = 0; j < f->n; j++) {
                lt_expr *r = f->at[j];
                if (r->kind != X_BIN || r->op != XB_IMOD || !isk(r->b, m) || !xeq(r->a, d->a, 0) ||
                    __builtin_mul_overflow(m, f->co[j], &ms) || ms != f->co[i])
                    continue;
                int64_t s = f->co[j];
                lt_expr *x = d->a;
                aff_drop(f, i > j ? i : j);
                aff_drop(f, i > j ? j : i);
                if (!aff_put(f, x, s, 0)) return false;
                again = true;
                break;
            }
        }
    }
    return true;
}

static lt_expr *iadd(fz *z, lt_expr *a, lt_expr *b);
static lt_expr *isub(fz *z, lt_expr *a, lt_expr *b);
static lt_expr *imul(fz *z, lt_expr *a, int64_t k);

/* Terms by decreasing |coefficient| (a row-major index, its innermost
 * variable last: the form lowering's loop collapsing looks for), the
 * constant first. */
static lt_expr *aff_build(fz *z, const aff *f) {
    int order[AFF_TERMS], n = 0;
    for (int i = 0; i < f->n; i++) {
        if (f->co[i] == 0) continue;
        int j = n++;
        uint64_t ci = f->co[i] < 0 ? -(uint64_t)f->co[i] : (uint64_t)f->co[i];
        for (; j > 0; j--) {
            int p = order[j - 1];
            uint64_t cp = f->co[p] < 0 ? -(uint64_t)f->co[p] : (uint64_t)f->co[p];
            bool before = cp > ci || (cp == ci && !(f->at[p]->kind == X_VAR && f->at[i]->kind == X_VAR &&
                                                      f->at[p]->var > f->at[i]->var));
            if (before) break;
            order[j] = order[j - 1];
        }
        order[j] = i;
    }
    lt_expr *acc = f->c ? xi(z, f->c) : NULL;
    for (int j = 0; j < n; j++) {
        int i = order[j];
        if (!acc) acc = imul(z, f->at[i], f->co[i]);
        else if (f->co[i] < 0 && f->co[i] != INT64_MIN) acc = isub(z, acc, imul(z, f->at[i], -f->co[i]));
        else acc = iadd(z, acc, imul(z, f->at[i], f->co[i]));
    }
    return acc ? acc : xi(z, 0);
}

/* a (>= 0) as g*H + L with 0 <= L < g for the largest g dividing k that
 * splits it so; false when only g = 1 does. */
static bool aff_split(fz *z, lt_expr *a, int64_t k, int64_t *g, lt_expr **H, lt_expr **L) {
    aff f;
    if (!aff_of(a, &f)) return false;
    int64_t cand[AFF_TERMS + 1];
    int nc = 0;
    cand[nc++] = k;
    for (int i = 0; i < f.n; i++) {
        int64_t x = gcd64(f.co[i] < 0 ? -f.co[i] : f.co[i], k);
        if (x > 1) cand[nc++] = x;
    }
    for (int pass = 0; pass < nc; pass++) {
        int best = -1;
        for (int i = 0; i < nc; i++)
            if (cand[i] > 1 && (best < 0 || cand[i] > cand[best])) best = i;
        if (best < 0) return false;
        int64_t gg = cand[best];
        for (int i = 0; i < nc; i++)
            if (cand[i] == gg) cand[i] = 0;
        aff hi = {0}, lo = {0};
        irange lr = {0, 0};
        bool ok = true;
        for (int i = 0; i < f.n && ok; i++) {
            if (f.co[i] % gg == 0) {
                hi.at[hi.n] = f.at[i];
                hi.co[hi.n++] = f.co[i] / gg;
                continue;
            }
            ok = add_term_range(z, f.at[i], f.co[i], &lr);
            lo.at[lo.n] = f.at[i];
            lo.co[lo.n++] = f.co[i];
        }
        /* the constant's part in L: the one that puts L's least value in [0, g) */
        int64_t q, r;
        if (!ok || __builtin_add_overflow(lr.lo, f.c, &q)) continue;
        q = q >= 0 ? q / gg : -((-(q + 1)) / gg) - 1; /* floor */
        if (__builtin_mul_overflow(q, gg, &r) || __builtin_sub_overflow(f.c, r, &r) ||
            __builtin_add_overflow(lr.lo, r, &lr.lo) || __builtin_add_overflow(lr.hi, r, &lr.hi) || lr.lo < 0 || lr.hi >= gg)
            continue;
        hi.c = q;
        lo.c = r;
        *g = gg;
        *H = aff_build(z, &hi);
        *L = aff_build(z, &lo);
        return true;
    }
    return false;
}

/* Folding integer arithmetic keeps index expressions small. */
static lt_expr *iadd(fz *z, lt_expr *a, lt_expr *b) {
    if (a->kind == X_CONST && b->kind == X_CONST) return xi(z, a->i + b->i);
    if (isk(a, 0)) return b;
    if (isk(b, 0)) return a;
    return xbin(z, LT_OP_ADD, LATHE_I64, a, b);
}
static lt_expr *isub(fz *z, lt_expr *a, lt_expr *b) {
    if (a->kind == X_CONST && b->kind == X_CONST) return xi(z, a->i - b->i);
    if (isk(b, 0)) return a;
    return xbin(z, LT_OP_SUB, LATHE_I64, a, b);
}
static lt_expr *imul(fz *z, lt_expr *a, int64_t k) {
    if (a->kind == X_CONST) return xi(z, a->i * k);
    if (k == 0) return xi(z, 0);
    if (k == 1) return a;
    return xbin(z, LT_OP_MUL, LATHE_I64, a, xi(z, k));
}
static lt_expr *idiv(fz *z, lt_expr *a, int64_t k) {
    if (a->kind == X_CONST) return xi(z, a->i / k);
    if (k == 1) return a;
    irange r = rng(z, a);
    int64_t g;
    lt_expr *H, *L;
    if (k > 0 && r.lo >= 0) {
        if (r.hi < k) return xi(z, 0);
        if (aff_split(z, a, k, &g, &H, &L)) return idiv(z, H, k / g);
    }
    return xbin(z, XB_IDIV, LATHE_I64, a, xi(z, k));
}
static lt_expr *imod(fz *z, lt_expr *a, int64_t k) {
    if (k == 1) return xi(z, 0);
    if (a->kind == X_CONST) return xi(z, a->i % k);
    irange r = rng(z, a);
    int64_t g;
    lt_expr *H, *L;
    if (k > 0 && r.lo >= 0) {
        if (r.hi < k) return a;
        if (aff_split(z, a, k, &g, &H, &L)) return g == k ? L : iadd(z, imul(z, imod(z, H, k / g), g), L);
    }
    return xbin(z, XB_IMOD, LATHE_I64, a, xi(z, k));
}
static lt_expr *imin(fz *z, lt_expr *a, lt_expr *b) {
    if (a->kind == X_CONST && b->kind == X_CONST) return xi(z, a->i < b->i ? a->i : b->i);
    irange x = rng(z, a), y = rng(z, b);
    if (x.hi <= y.lo) return a;
    if (y.hi <= x.lo) return b;
    return xbin(z, LT_OP_MINIMUM, LATHE_I64, a, b);
}
static lt_expr *imax(fz *z, lt_expr *a, lt_expr *b) {
    if (a->kind == X_CONST && b->kind == X_CONST) return xi(z, a->i > b->i ? a->i : b->i);
    irange x = rng(z, a), y = rng(z, b);
    if (x.lo >= y.hi) return a;
    if (y.lo >= x.hi) return b;
    return xbin(z, LT_OP_MAXIMUM, LATHE_I64, a, b);
}
static lt_expr *clampi(fz *z, lt_expr *a, int64_t hi) { /* into [0, hi - 1] */
    return imax(z, imin(z, a, xi(z, hi - 1)), xi(z, 0));
}
static lt_expr *icmp(fz *z, int op, lt_expr *a, lt_expr *b) {
    if (a->kind == X_CONST && b->kind == X_CONST) {
        int64_t x = a->i, y = b->i;
        bool r = op == LT_OP_LT ? x < y : op == LT_OP_LE ? x <= y : op == LT_OP_GE ? x >= y : op == LT_OP_GT ? x > y : op == LT_OP_EQ ? x == y : x != y;
        return xb(z, r);
    }
    if (a->t == LATHE_I64 && b->t == LATHE_I64) { /* decided by the ranges */
        irange x = rng(z, a), y = rng(z, b);
        int r = -1;
        switch (op) {
        case LT_OP_LT: r = x.hi < y.lo ? 1 : x.lo >= y.hi ? 0 : -1; break;
        case LT_OP_LE: r = x.hi <= y.lo ? 1 : x.lo > y.hi ? 0 : -1; break;
        case LT_OP_GT: r = x.lo > y.hi ? 1 : x.hi <= y.lo ? 0 : -1; break;
        case LT_OP_GE: r = x.lo >= y.hi ? 1 : x.hi < y.lo ? 0 : -1; break;
        case LT_OP_EQ: r = x.hi < y.lo || y.hi < x.lo ? 0 : -1; break;
        case LT_OP_NE: r = x.hi < y.lo || y.hi < x.lo ? 1 : -1; break;
        default: break;
        }
        if (r >= 0) return xb(z, r);
    }
    return xbin(z, op, LATHE_BOOL, a, b);
}
static lt_expr *land(fz *z, lt_expr *a, lt_expr *b) {
    if (isk(a, 1)) return b;
    if (isk(b, 1)) return a;
    if (isk(a, 0) || isk(b, 0)) return xb(z, false);
    return xbin(z, XB_AND, LATHE_BOOL, a, b);
}
static lt_expr *xsel(fz *z, lt_expr *c, lt_expr *a, lt_expr *b) {
    if (isk(c, 1)) return a;
    if (isk(c, 0)) return b;
    lt_expr *e = xnew(z, X_SELECT, a->t);
    e->a = c;
    e->b = a;
    e->c = b;
    return e;
}
/* 0 <= v < n */
static lt_expr *inrange(fz *z, lt_expr *v, int64_t n) {
    return land(z, icmp(z, LT_OP_GE, v, xi(z, 0)), icmp(z, LT_OP_LT, v, xi(z, n)));
}

static lt_expr *xreduce(fz *z, lt_rkind rk, lathe_dtype t, int n, const int *vars, lt_expr **lo, lt_expr **hi,
                        lt_expr *body) {
    LT_ASSERT(n <= LT_MAX_REDUCE_VARS);
    lt_expr *e = xnew(z, X_REDUCE, t);
    e->rk = rk;
    e->nvars = n;
    for (int i = 0; i < n; i++) e->vars[i] = vars[i], e->lo[i] = lo[i], e->hi[i] = hi[i];
    e->body = body;
    return e;
}

/* A new loop variable, its values unknown until vrange says. */
static int newvar(fz *z) {
    int v = z->nextvar++;
    if (v >= z->vcap) {
        int cap = z->vcap ? 2 * z->vcap : 32;
        int64_t *lo = realloc(z->vlo, sizeof(int64_t) * (size_t)cap);
        if (lo) z->vlo = lo;
        int64_t *hi = lo ? realloc(z->vhi, sizeof(int64_t) * (size_t)cap) : NULL;
        if (hi) z->vhi = hi;
        if (!lo || !hi) return v; /* unknown: vcap stays */
        z->vcap = cap;
    }
    z->vlo[v] = INT64_MIN;
    z->vhi[v] = INT64_MAX;
    return v;
}
/* Variable v takes the values [lo, hi). */
static void vrange(fz *z, int v, int64_t lo, int64_t hi) {
    if (v < z->vcap && hi > lo) z->vlo[v] = lo, z->vhi[v] = hi - 1;
}

/* ---- values of nodes ------------------------------------------------------------- */

static lt_expr *value(fz *z, int node, lt_expr **idx);

static lt_expr *linear_index(fz *z, const lathe_node *n, lt_expr **idx) {
    int64_t st[LATHE_MAX_RANK];
    lt_strides(n->rank, n->shape, st);
    lt_expr *lin = xi(z, 0);
    for (int d = 0; d < n->rank; d++) lin = iadd(z, lin, imul(z, idx[d], st[d]));
    aff f;
    return aff_of(lin, &f) ? aff_build(z, &f) : lin;
}

/* idx for operand o of a broadcasting op with output rank r */
static void bcast_idx(fz *z, const lathe_node *o, int r, lt_expr **idx, lt_expr **oidx) {
    for (int d = 0; d < o->rank; d++) oidx[d] = o->shape[d] == 1 ? xi(z, 0) : idx[d + r - o->rank];
}

static lt_expr *opv(fz *z, const lathe_node *n, int k, lt_expr **idx) { return value(z, n->in[k]->id, idx); }

/* window start for output position p: p*stride - pad */
static lt_expr *wstart(fz *z, lt_expr *p, int64_t st, int64_t pad) { return isub(z, imul(z, p, st), xi(z, pad)); }

/* Windows p (0 <= p < P) whose extent [p*st - pad, p*st - pad + ext) holds h:
 * lo = max(0, ceil((h + pad - ext + 1) / st)), hi = min(P, (h + pad) / st + 1). */
static void windows_holding(fz *z, lt_expr *h, int64_t st, int64_t pad, int64_t ext, int64_t P, lt_expr **lo,
                            lt_expr **hi) {
    lt_expr *a = iadd(z, h, xi(z, pad - ext + 1 + st - 1));
    *lo = imax(z, xi(z, 0), idiv(z, a, st));
    /* h + pad >= 0 always, so the division rounds down */
    *hi = imin(z, xi(z, P), iadd(z, idiv(z, iadd(z, h, xi(z, pad)), st), xi(z, 1)));
}

/* PyTorch's avg-pool divisor for the window at (h0, w0) (see eval.c). */
static lt_expr *avg_div(fz *z, lt_expr *h0, lt_expr *w0, const int64_t *k, const int64_t *pad, int64_t H,
                        int64_t W, bool include_pad, lathe_dtype t) {
    lt_expr *h1 = iadd(z, h0, xi(z, k[0])), *w1 = iadd(z, w0, xi(z, k[1]));
    lt_expr *cnt;
    if (include_pad) {
        h1 = imin(z, h1, xi(z, H + pad[0]));
        w1 = imin(z, w1, xi(z, W + pad[1]));
        cnt = xbin(z, LT_OP_MUL, LATHE_I64, isub(z, h1, h0), isub(z, w1, w0));
    } else {
        lt_expr *ha = imax(z, h0, xi(z, 0)), *wa = imax(z, w0, xi(z, 0));
        h1 = imin(z, h1, xi(z, H));
        w1 = imin(z, w1, xi(z, W));
        lt_expr *dh = imax(z, isub(z, h1, ha), xi(z, 0)), *dw = imax(z, isub(z, w1, wa), xi(z, 0));
        cnt = xbin(z, LT_OP_MUL, LATHE_I64, dh, dw);
    }
    lt_expr *c = xnew(z, X_UN, t);
    c->op = LT_OP_CAST;
    c->a = cnt;
    return c;
}

static lt_expr *bin_of(fz *z, int op, lathe_dtype t, lt_expr *a, lt_expr *b) { return xbin(z, op, t, a, b); }

/* SplitMix64's finalizer on i64 expressions (wrapping: no constant folding
 * here, which would overflow in C). */
#define GOLDEN64 0x9E3779B97F4A7C15ull
static lt_expr *mix64(fz *z, lt_expr *e) {
    static const uint64_t mul[2] = {0xBF58476D1CE4E5B9ull, 0x94D049BB133111EBull};
    static const int shift[3] = {30, 27, 31};
    for (int r = 0; r < 3; r++) {
        e = xbin(z, XB_XOR, LATHE_I64, e, xbin(z, XB_SHR, LATHE_I64, e, xi(z, shift[r])));
        if (r < 2) e = xbin(z, LT_OP_MUL, LATHE_I64, e, xi(z, (int64_t)mul[r]));
    }
    return e;
}

static lt_expr *rule(fz *z, const lathe_node *n, lt_expr **idx) {
    lt_expr *oi[LATHE_MAX_RANK], *oj[LATHE_MAX_RANK];
    const lathe_node *x = n->nin ? n->in[0] : NULL;
    lathe_dtype t = n->dtype;
    switch (lt_ops[n->op].kind) {
    case LT_BINARY:
    case LT_COMPARE: {
        bcast_idx(z, n->in[0], n->rank, idx, oi);
        bcast_idx(z, n->in[1], n->rank, idx, oj);
        return bin_of(z, n->op, t, opv(z, n, 0, oi), opv(z, n, 1, oj));
    }
    case LT_WHERE: {
        lt_expr *v[3];
        for (int k = 0; k < 3; k++) {
            bcast_idx(z, n->in[k], n->rank, idx, oi);
            v[k] = opv(z, n, k, oi);
        }
        lt_expr *e = xnew(z, X_SELECT, t);
        e->a = v[0], e->b = v[1], e->c = v[2];
        return e;
    }
    case LT_UNARY: {
        lt_expr *e = xnew(z, X_UN, t);
        e->op = n->op;
        switch (n->op) { /* the attributes, as kernel.h's X_UN says */
        case LT_OP_POW_SCALAR: case LT_OP_LEAKY_RELU: e->f = n->attr[0].f; break;
        case LT_OP_SOFTPLUS: case LT_OP_CLAMP: e->f = n->attr[0].f, e->f2 = n->attr[1].f; break;
        case LT_OP_GELU: e->i = n->attr[0].v[0]; break;
        default: break;
        }
        e->a = opv(z, n, 0, idx);
        return e;
    }
    default:
        break;
    }
    switch (n->op) {
    case LT_OP_SUM:
    case LT_OP_MAX:
    case LT_OP_MIN: {
        const lt_attr *ax = &n->attr[0];
        bool keep = n->attr[1].v[0];
        if (ax->n == 0) return opv(z, n, 0, idx);
        int vars[LATHE_MAX_RANK];
        lt_expr *lo[LATHE_MAX_RANK], *hi[LATHE_MAX_RANK];
        int nv = 0, o = 0;
        for (int d = 0; d < x->rank; d++) {
            bool red = false;
            for (int i = 0; i < ax->n; i++) red = red || ax->v[i] == d;
            if (red) {
                vars[nv] = newvar(z);
                vrange(z, vars[nv], 0, x->shape[d]);
                lo[nv] = xi(z, 0);
                hi[nv] = xi(z, x->shape[d]);
                oi[d] = xvar(z, vars[nv]);
                nv++;
                if (keep) o++;
            } else oi[d] = idx[o++];
        }
        lt_rkind rk = n->op == LT_OP_SUM ? R_SUM : n->op == LT_OP_MAX ? R_MAX : R_MIN;
        return xreduce(z, rk, t, nv, vars, lo, hi, opv(z, n, 0, oi));
    }
    case LT_OP_ARGMAX: {
        int64_t axis = n->attr[0].v[0];
        bool keep = n->attr[1].v[0];
        int v = newvar(z);
        int o = 0;
        for (int d = 0; d < x->rank; d++) {
            if (d == axis) {
                oi[d] = xvar(z, v);
                if (keep) o++;
            } else oi[d] = idx[o++];
        }
        lt_expr *lo = xi(z, 0), *hi = xi(z, x->shape[axis]);
        return xreduce(z, R_ARGMAX, LATHE_I64, 1, &v, &lo, &hi, opv(z, n, 0, oi));
    }
    case LT_OP_RESHAPE:
    case LT_OP_FLATTEN: {
        if (x->rank == n->rank && !memcmp(x->shape, n->shape, sizeof(int64_t) * (size_t)n->rank))
            return opv(z, n, 0, idx);
        lt_expr *lin = linear_index(z, n, idx);
        if (z->f->buf_of[x->id] >= 0 && x->id != z->root) { /* a buffer: its element lin, no unravelling */
            lt_expr *e = xnew(z, X_LOAD, x->dtype);
            e->buf = z->f->buf_of[x->id];
            e->a = lin;
            return e;
        }
        int64_t st[LATHE_MAX_RANK];
        lt_strides(x->rank, x->shape, st);
        for (int d = 0; d < x->rank; d++) oi[d] = d == 0 ? idiv(z, lin, st[0]) : imod(z, idiv(z, lin, st[d]), x->shape[d]);
        return opv(z, n, 0, oi);
    }
    case LT_OP_PERMUTE:
        for (int i = 0; i < n->rank; i++) oi[n->attr[0].v[i]] = idx[i];
        return opv(z, n, 0, oi);
    case LT_OP_BROADCAST_TO:
        bcast_idx(z, x, n->rank, idx, oi);
        return opv(z, n, 0, oi);
    case LT_OP_SLICE: {
        int64_t ax = n->attr[0].v[0];
        memcpy(oi, idx, sizeof(lt_expr *) * (size_t)n->rank);
        oi[ax] = iadd(z, xi(z, n->attr[1].v[0]), imul(z, idx[ax], n->attr[3].v[0]));
        return opv(z, n, 0, oi);
    }
    case LT_OP_SLICE_BACKWARD: {
        int64_t ax = n->attr[0].v[0], start = n->attr[1].v[0], step = n->attr[3].v[0], len = x->shape[ax];
        if (len == 0) return xf(z, 0, t);
        lt_expr *v = isub(z, idx[ax], xi(z, start));
        lt_expr *ok = land(z, land(z, icmp(z, LT_OP_GE, v, xi(z, 0)), icmp(z, LT_OP_EQ, imod(z, v, step), xi(z, 0))),
                           icmp(z, LT_OP_LT, v, xi(z, len * step)));
        memcpy(oi, idx, sizeof(lt_expr *) * (size_t)n->rank);
        oi[ax] = clampi(z, idiv(z, v, step), len);
        return xsel(z, ok, opv(z, n, 0, oi), xf(z, 0, t));
    }
    case LT_OP_INDEX_SELECT: {
        /* x at the row the index holds there, clamped into x (inputs are
         * checked before every run: lathe_index_limit) */
        const lathe_node *ix = n->in[1];
        int ax = (int)n->attr[0].v[0], ir = ix->rank;
        memcpy(oi, idx, sizeof(lt_expr *) * (size_t)ax);
        oi[ax] = clampi(z, opv(z, n, 1, idx + ax), x->shape[ax]);
        for (int d = ax + 1; d < x->rank; d++) oi[d] = idx[d - 1 + ir];
        return opv(z, n, 0, oi);
    }
    case LT_OP_INDEX_SELECT_BACKWARD: {
        /* y[a, r, b] = sum over i of gy[a, i, b] where index[i] == r, i in
         * order; the kernel's scatter plan (contract.c) adds each row of gy
         * once instead */
        const lathe_node *ix = n->in[1];
        int ax = (int)n->attr[0].v[0], ir = ix->rank, vars[LATHE_MAX_RANK];
        lt_expr *lo[LATHE_MAX_RANK], *hi[LATHE_MAX_RANK], *ii[LATHE_MAX_RANK];
        memcpy(oi, idx, sizeof(lt_expr *) * (size_t)ax);
        for (int d = 0; d < ir; d++) {
            vars[d] = newvar(z);
            lo[d] = xi(z, 0);
            hi[d] = xi(z, ix->shape[d]);
            oi[ax + d] = ii[d] = xvar(z, vars[d]);
        }
        for (int d = ax + 1; d < n->rank; d++) oi[d - 1 + ir] = idx[d];
        lt_expr *hit = icmp(z, LT_OP_EQ, clampi(z, opv(z, n, 1, ii), n->shape[ax]), idx[ax]);
        lt_expr *y = xreduce(z, R_SUM, t, ir, vars, lo, hi, xsel(z, hit, opv(z, n, 0, oi), xf(z, 0, t)));
        if (!z->con) z->con = lt_plan_scatter(z->f, z->root, n, y);
        return y;
    }
    case LT_OP_CONCAT: {
        int64_t ax = n->attr[0].v[0];
        lt_expr *acc = NULL;
        for (int64_t k = 0, off = 0; k < n->nin; off += n->in[k]->shape[ax], k++) {
            /* operand k starts at off; the last operand starting at or before idx wins */
            int64_t len = n->in[k]->shape[ax];
            if (len == 0) continue;
            memcpy(oi, idx, sizeof(lt_expr *) * (size_t)n->rank);
            oi[ax] = clampi(z, isub(z, idx[ax], xi(z, off)), len);
            lt_expr *v = opv(z, n, (int)k, oi);
            acc = acc ? xsel(z, icmp(z, LT_OP_GE, idx[ax], xi(z, off)), v, acc) : v;
        }
        return acc ? acc : xf(z, 0, t);
    }
    case LT_OP_ALL_GATHER: /* parts 1: the one process's own value (simplify usually removes it first) */
        if (n->attr[1].v[0] == 1) return opv(z, n, 0, idx);
        break;
    case LT_OP_DROPOUT: { /* lathe.h's lathe_dropout: the mask drawn from the state, salt and flat index */
        lt_expr *at[1] = {xi(z, 0)}, *seed = opv(z, n, 1, at);
        at[0] = xi(z, 1);
        lt_expr *step = opv(z, n, 1, at), *flat = xi(z, 0);
        for (int d = 0; d < n->rank; d++) flat = iadd(z, imul(z, flat, n->shape[d]), idx[d]);
        if (n->nin == 3) { /* the index of the first element (a process's part of a batch) */
            lt_expr *zero[LATHE_MAX_RANK];
            for (int d = 0; d < n->in[2]->rank; d++) zero[d] = xi(z, 0);
            flat = iadd(z, flat, opv(z, n, 2, zero));
        }
        lt_expr *k = mix64(z, xbin(z, LT_OP_ADD, LATHE_I64, xbin(z, LT_OP_MUL, LATHE_I64, step, xi(z, (int64_t)GOLDEN64)),
                                   xi(z, n->attr[1].v[0])));
        k = mix64(z, xbin(z, XB_XOR, LATHE_I64, seed, k));
        lt_expr *h = xbin(z, LT_OP_MUL, LATHE_I64, iadd(z, flat, xi(z, 1)), xi(z, (int64_t)GOLDEN64));
        h = xbin(z, XB_SHR, LATHE_I64, mix64(z, xbin(z, LT_OP_ADD, LATHE_I64, k, h)), xi(z, 32));
        double p = n->attr[0].f;
        lt_expr *keep = icmp(z, LT_OP_GE, h, xi(z, (int64_t)llround(p * 4294967296.0)));
        lt_expr *v = bin_of(z, LT_OP_MUL, t, opv(z, n, 0, idx), xf(z, 1 / (1 - p), t));
        return xsel(z, keep, v, xf(z, 0, t));
    }
    case LT_OP_MATMUL: {
        const lathe_node *a = n->in[0], *b = n->in[1];
        int r = n->rank, v = newvar(z);
        int64_t K = a->shape[a->rank - 1];
        vrange(z, v, 0, K);
        for (int d = 0; d < a->rank - 2; d++) oi[d] = a->shape[d] == 1 ? xi(z, 0) : idx[d + r - a->rank];
        for (int d = 0; d < b->rank - 2; d++) oj[d] = b->shape[d] == 1 ? xi(z, 0) : idx[d + r - b->rank];
        oi[a->rank - 2] = idx[r - 2];
        oi[a->rank - 1] = xvar(z, v);
        oj[b->rank - 2] = xvar(z, v);
        oj[b->rank - 1] = idx[r - 1];
        lt_expr *lo = xi(z, 0), *hi = xi(z, K);
        lt_expr *y = xreduce(z, R_SUM, t, 1, &v, &lo, &hi, bin_of(z, LT_OP_MUL, t, opv(z, n, 0, oi), opv(z, n, 1, oj)));
        if (!z->con) z->con = lt_plan_contraction(z->f, z->root, n, idx, y);
        return y;
    }
    case LT_OP_CONV2D: {
        /* y[n,k,p,q] = sum_{c,r,s} x[n, g*Cg + c, p*st - pad + r*dil, ...] * w[k,c,r,s] (+ bias[k]) */
        const lathe_node *w = n->in[1];
        const int64_t *st = n->attr[0].v, *pad = n->attr[1].v, *dil = n->attr[2].v;
        int64_t groups = n->attr[3].v[0], K = w->shape[0], Cg = w->shape[1], H = x->shape[2], W = x->shape[3];
        int vars[3] = {newvar(z), newvar(z), newvar(z)};
        lt_expr *c = xvar(z, vars[0]), *r = xvar(z, vars[1]), *s = xvar(z, vars[2]);
        lt_expr *h = iadd(z, wstart(z, idx[2], st[0], pad[0]), imul(z, r, dil[0]));
        lt_expr *v = iadd(z, wstart(z, idx[3], st[1], pad[1]), imul(z, s, dil[1]));
        lt_expr *ok = land(z, pad[0] ? inrange(z, h, H) : xb(z, true), pad[1] ? inrange(z, v, W) : xb(z, true));
        oi[0] = idx[0];
        oi[1] = iadd(z, imul(z, idiv(z, idx[1], K / groups), Cg), c);
        oi[2] = pad[0] ? clampi(z, h, H) : h;
        oi[3] = pad[1] ? clampi(z, v, W) : v;
        oj[0] = idx[1], oj[1] = c, oj[2] = r, oj[3] = s;
        lt_expr *prod = bin_of(z, LT_OP_MUL, t, xsel(z, ok, opv(z, n, 0, oi), xf(z, 0, t)), opv(z, n, 1, oj));
        lt_expr *lo[3] = {xi(z, 0), xi(z, 0), xi(z, 0)}, *hi[3] = {xi(z, Cg), xi(z, w->shape[2]), xi(z, w->shape[3])};
        lt_expr *y = xreduce(z, R_SUM, t, 3, vars, lo, hi, prod);
        if (!z->con) z->con = lt_plan_contraction(z->f, z->root, n, idx, y);
        if (n->nin == 3) {
            lt_expr *bi[1] = {idx[1]};
            y = bin_of(z, LT_OP_ADD, t, y, opv(z, n, 2, bi));
        }
        return y;
    }
    case LT_OP_CONV2D_BACKWARD_INPUT: {
        /* dx[n,c,h,w] = sum_{kk,r,s} gy[n, g*Kg+kk, p, q] * w[g*Kg+kk, c%Cg, r, s]
         * where h + pad - r*dil = p*st (likewise w), 0 <= p < P */
        const lathe_node *gy = n->in[0], *w = n->in[1];
        const int64_t *st = n->attr[0].v, *pad = n->attr[1].v, *dil = n->attr[2].v;
        int64_t groups = n->attr[3].v[0], K = w->shape[0], Cg = w->shape[1], Kg = K / groups;
        int64_t P = gy->shape[2], Q = gy->shape[3];
        int vars[3] = {newvar(z), newvar(z), newvar(z)};
        lt_expr *kk = xvar(z, vars[0]), *r = xvar(z, vars[1]), *s = xvar(z, vars[2]);
        lt_expr *hp = isub(z, iadd(z, idx[2], xi(z, pad[0])), imul(z, r, dil[0]));
        lt_expr *wp = isub(z, iadd(z, idx[3], xi(z, pad[1])), imul(z, s, dil[1]));
        lt_expr *p = idiv(z, hp, st[0]), *q = idiv(z, wp, st[1]);
        lt_expr *ok = land(z, land(z, icmp(z, LT_OP_GE, hp, xi(z, 0)), icmp(z, LT_OP_EQ, imod(z, hp, st[0]), xi(z, 0))),
                           icmp(z, LT_OP_LT, p, xi(z, P)));
        ok = land(z, ok, land(z, land(z, icmp(z, LT_OP_GE, wp, xi(z, 0)), icmp(z, LT_OP_EQ, imod(z, wp, st[1]), xi(z, 0))),
                              icmp(z, LT_OP_LT, q, xi(z, Q))));
        lt_expr *k = iadd(z, imul(z, idiv(z, idx[1], Cg), Kg), kk);
        oi[0] = idx[0], oi[1] = k, oi[2] = clampi(z, p, P), oi[3] = clampi(z, q, Q);
        oj[0] = k, oj[1] = imod(z, idx[1], Cg), oj[2] = r, oj[3] = s;
        lt_expr *prod = xsel(z, ok, bin_of(z, LT_OP_MUL, t, opv(z, n, 0, oi), opv(z, n, 1, oj)), xf(z, 0, t));
        lt_expr *lo[3] = {xi(z, 0), xi(z, 0), xi(z, 0)}, *hi[3] = {xi(z, Kg), xi(z, w->shape[2]), xi(z, w->shape[3])};
        lt_expr *y = xreduce(z, R_SUM, t, 3, vars, lo, hi, prod);
        if (!z->con) z->con = lt_plan_contraction(z->f, z->root, n, idx, y);
        return y;
    }
    case LT_OP_CONV2D_BACKWARD_WEIGHT: {
        /* dw[k,c,r,s] = sum_{n,p,q} gy[n,k,p,q] * x[n, g*Cg + c, p*st - pad + r*dil, ...] */
        const lathe_node *gy = n->in[1];
        const int64_t *st = n->attr[0].v, *pad = n->attr[1].v, *dil = n->attr[2].v;
        int64_t groups = n->attr[3].v[0], K = n->shape[0], Cg = n->shape[1], Kg = K / groups;
        int64_t H = x->shape[2], W = x->shape[3];
        int vars[3] = {newvar(z), newvar(z), newvar(z)};
        lt_expr *b = xvar(z, vars[0]), *p = xvar(z, vars[1]), *q = xvar(z, vars[2]);
        lt_expr *h = iadd(z, wstart(z, p, st[0], pad[0]), imul(z, idx[2], dil[0]));
        lt_expr *v = iadd(z, wstart(z, q, st[1], pad[1]), imul(z, idx[3], dil[1]));
        lt_expr *ok = land(z, pad[0] ? inrange(z, h, H) : xb(z, true), pad[1] ? inrange(z, v, W) : xb(z, true));
        oi[0] = b, oi[1] = iadd(z, imul(z, idiv(z, idx[0], Kg), Cg), idx[1]);
        oi[2] = pad[0] ? clampi(z, h, H) : h;
        oi[3] = pad[1] ? clampi(z, v, W) : v;
        oj[0] = b, oj[1] = idx[0], oj[2] = p, oj[3] = q;
        lt_expr *prod = bin_of(z, LT_OP_MUL, t, xsel(z, ok, opv(z, n, 0, oi), xf(z, 0, t)), opv(z, n, 1, oj));
        lt_expr *lo[3] = {xi(z, 0), xi(z, 0), xi(z, 0)}, *hi[3] = {xi(z, gy->shape[0]), xi(z, gy->shape[2]), xi(z, gy->shape[3])};
        lt_expr *y = xreduce(z, R_SUM, t, 3, vars, lo, hi, prod);
        if (!z->con) z->con = lt_plan_contraction(z->f, z->root, n, idx, y);
        return y;
    }
    case LT_OP_MAX_POOL2D:
    case LT_OP_AVG_POOL2D: {
        const int64_t *k = n->attr[0].v, *st = n->attr[1].v, *pad = n->attr[2].v;
        int64_t H = x->shape[2], W = x->shape[3];
        bool mx = n->op == LT_OP_MAX_POOL2D;
        int vars[2] = {newvar(z), newvar(z)};
        lt_expr *h0 = wstart(z, idx[2], st[0], pad[0]), *w0 = wstart(z, idx[3], st[1], pad[1]);
        lt_expr *h = iadd(z, h0, xvar(z, vars[0])), *v = iadd(z, w0, xvar(z, vars[1]));
        lt_expr *ok = land(z, pad[0] ? inrange(z, h, H) : xb(z, true), pad[1] ? inrange(z, v, W) : xb(z, true));
        oi[0] = idx[0], oi[1] = idx[1];
        oi[2] = pad[0] ? clampi(z, h, H) : h;
        oi[3] = pad[1] ? clampi(z, v, W) : v;
        lt_expr *body = xsel(z, ok, opv(z, n, 0, oi), xf(z, mx ? -INFINITY : 0, t));
        lt_expr *lo[2] = {xi(z, 0), xi(z, 0)}, *hi[2] = {xi(z, k[0]), xi(z, k[1])};
        lt_expr *y = xreduce(z, mx ? R_MAX : R_SUM, t, 2, vars, lo, hi, body);
        if (mx) {
            if (!z->con) z->con = lt_plan_pool(z->f, z->root, n, idx, y);
            return y;
        }
        return bin_of(z, LT_OP_DIV, t, y, avg_div(z, h0, w0, k, pad, H, W, n->attr[3].v[0], t));
    }
    case LT_OP_MAX_POOL2D_BACKWARD:
    case LT_OP_AVG_POOL2D_BACKWARD: {
        /* dx[n,c,h,w] = sum over windows (p, q) holding (h, w) of gy[n,c,p,q] times
         * 1/divisor (avg) or [the window's arg-max is (h, w)] (max) */
        const lathe_node *gy = x;
        bool mx = n->op == LT_OP_MAX_POOL2D_BACKWARD;
        const lathe_node *xin = mx ? n->in[1] : NULL;
        const int64_t *k = n->attr[0].v, *st = n->attr[1].v, *pad = n->attr[2].v;
        int64_t H = n->shape[2], W = n->shape[3], P = gy->shape[2], Q = gy->shape[3];
        int vars[2] = {newvar(z), newvar(z)};
        lt_expr *lo[2], *hi[2];
        windows_holding(z, idx[2], st[0], pad[0], k[0], P, &lo[0], &hi[0]);
        windows_holding(z, idx[3], st[1], pad[1], k[1], Q, &lo[1], &hi[1]);
        lt_expr *p = xvar(z, vars[0]), *q = xvar(z, vars[1]);
        lt_expr *h0 = wstart(z, p, st[0], pad[0]), *w0 = wstart(z, q, st[1], pad[1]);
        oi[0] = idx[0], oi[1] = idx[1], oi[2] = p, oi[3] = q;
        lt_expr *g = opv(z, n, 0, oi), *body;
        if (mx) {
            int wv[2] = {newvar(z), newvar(z)};
            lt_expr *hh = iadd(z, h0, xvar(z, wv[0])), *vv = iadd(z, w0, xvar(z, wv[1]));
            lt_expr *ok = land(z, pad[0] ? inrange(z, hh, H) : xb(z, true), pad[1] ? inrange(z, vv, W) : xb(z, true));
            oj[0] = idx[0], oj[1] = idx[1];
            oj[2] = pad[0] ? clampi(z, hh, H) : hh;
            oj[3] = pad[1] ? clampi(z, vv, W) : vv;
            lt_expr *wl[2] = {xi(z, 0), xi(z, 0)}, *wh[2] = {xi(z, k[0]), xi(z, k[1])};
            lt_expr *win = xsel(z, ok, value(z, xin->id, oj), xf(z, -INFINITY, t));
            lt_expr *am = xreduce(z, R_ARGMAX_POOL, LATHE_I64, 2, wv, wl, wh, win);
            lt_expr *me = iadd(z, imul(z, isub(z, idx[2], h0), k[1]), isub(z, idx[3], w0));
            body = xsel(z, icmp(z, LT_OP_EQ, am, me), g, xf(z, 0, t));
        } else {
            body = bin_of(z, LT_OP_DIV, t, g, avg_div(z, h0, w0, k, pad, H, W, n->attr[3].v[0], t));
        }
        lt_expr *y = xreduce(z, R_SUM, t, 2, vars, lo, hi, body);
        if (mx && !z->con) z->con = lt_plan_pool(z->f, z->root, n, idx, y);
        return y;
    }
    case LT_OP_ADAPTIVE_AVG_POOL2D:
    case LT_OP_ADAPTIVE_AVG_POOL2D_BACKWARD: {
        bool bw = n->op == LT_OP_ADAPTIVE_AVG_POOL2D_BACKWARD;
        int64_t H = bw ? n->shape[2] : x->shape[2], W = bw ? n->shape[3] : x->shape[3];
        int64_t P = bw ? x->shape[2] : n->shape[2], Q = bw ? x->shape[3] : n->shape[3];
        int vars[2] = {newvar(z), newvar(z)};
        lt_expr *a = xvar(z, vars[0]), *b = xvar(z, vars[1]);
        /* bin i of `out` over `in`: [i*in/out, ((i+1)*in + out - 1)/out) */
        lt_expr *pi = bw ? a : idx[2], *qi = bw ? b : idx[3];
        lt_expr *h0 = idiv(z, imul(z, pi, H), P), *h1 = idiv(z, iadd(z, imul(z, pi, H), xi(z, H + P - 1)), P);
        lt_expr *w0 = idiv(z, imul(z, qi, W), Q), *w1 = idiv(z, iadd(z, imul(z, qi, W), xi(z, W + Q - 1)), Q);
        lt_expr *area = xnew(z, X_UN, t);
        area->op = LT_OP_CAST;
        area->a = xbin(z, LT_OP_MUL, LATHE_I64, isub(z, h1, h0), isub(z, w1, w0));
        oi[0] = idx[0], oi[1] = idx[1];
        if (!bw) {
            oi[2] = a, oi[3] = b;
            lt_expr *lo[2] = {h0, w0}, *hi[2] = {h1, w1};
            return bin_of(z, LT_OP_DIV, t, xreduce(z, R_SUM, t, 2, vars, lo, hi, opv(z, n, 0, oi)), area);
        }
        oi[2] = a, oi[3] = b;
        lt_expr *in = land(z, land(z, icmp(z, LT_OP_LE, h0, idx[2]), icmp(z, LT_OP_LT, idx[2], h1)),
                           land(z, icmp(z, LT_OP_LE, w0, idx[3]), icmp(z, LT_OP_LT, idx[3], w1)));
        lt_expr *body = xsel(z, in, bin_of(z, LT_OP_DIV, t, opv(z, n, 0, oi), area), xf(z, 0, t));
        lt_expr *lo[2] = {xi(z, 0), xi(z, 0)}, *hi[2] = {xi(z, P), xi(z, Q)};
        return xreduce(z, R_SUM, t, 2, vars, lo, hi, body);
    }
    default:
        break;
    }
    lt_fail(z->g, LATHE_ERR_UNSUPPORTED, "fuse: no kernel rule for op '%s' (node %%%d)", lt_ops[n->op].name, n->id);
    return xf(z, 0, t);
}

static lt_expr *value(fz *z, int node, lt_expr **idx) {
    const lathe_node *n = z->g->nodes[node];
    int b = z->f->buf_of[node];
    if (n->op == LT_OP_CONST && n->numel == 1) { /* scalars are immediates */
        if (lt_is_float(n->dtype)) return xf(z, n->dtype == LATHE_F32 ? ((const float *)n->data)[0] : ((const double *)n->data)[0], n->dtype);
        lt_expr *e = xnew(z, X_CONST, n->dtype);
        e->i = n->dtype == LATHE_I64 ? ((const int64_t *)n->data)[0] : ((const bool *)n->data)[0];
        return e;
    }
    if (b >= 0 && node != z->root) {
        lt_expr *e = xnew(z, X_LOAD, n->dtype);
        e->buf = b;
        e->a = linear_index(z, n, idx);
        /* the kernel's own element: same shape and idx[d] is var d */
        const lathe_node *r = z->g->nodes[z->root];
        bool ident = r->rank == n->rank && !memcmp(r->shape, n->shape, sizeof(int64_t) * (size_t)n->rank);
        for (int d = 0; ident && d < n->rank; d++) ident = idx[d]->kind == X_VAR && idx[d]->var == d;
        e->ident = ident;
        return e;
    }
    if (node != z->root && z->stamp[node] != z->root) {
        z->stamp[node] = z->root;
        z->fused[z->nfused++] = node;
    }
    return rule(z, n, idx);
}

/* ---- materialization ----------------------------------------------------------- */

static bool is_index_op(lt_op op) {
    return op == LT_OP_RESHAPE || op == LT_OP_FLATTEN || op == LT_OP_PERMUTE || op == LT_OP_BROADCAST_TO ||
           op == LT_OP_SLICE;
}
static bool is_pointwise(lt_op op) {
    lt_kind k = lt_ops[op].kind;
    return k == LT_UNARY || k == LT_BINARY || k == LT_COMPARE || k == LT_WHERE || op == LT_OP_DROPOUT;
}
static bool is_reduction(lt_op op) {
    return op == LT_OP_SUM || op == LT_OP_MAX || op == LT_OP_MIN || op == LT_OP_ARGMAX;
}
/* contractions and windows read each operand element many times */
static bool is_heavy(lt_op op) {
    return !is_pointwise(op) && !is_index_op(op) && !is_reduction(op) && op != LT_OP_CONCAT && op != LT_OP_SLICE_BACKWARD &&
           op != LT_OP_INDEX_SELECT; /* a gather reads each element of x once per row it picks */
}

/* elementwise ops as cheap as a load, and index ops */
static bool cheap(lt_op op) {
    switch (op) {
    case LT_OP_ADD: case LT_OP_SUB: case LT_OP_MUL: case LT_OP_MAXIMUM: case LT_OP_MINIMUM:
    case LT_OP_GT: case LT_OP_GE: case LT_OP_LT: case LT_OP_LE: case LT_OP_EQ: case LT_OP_NE:
    case LT_OP_WHERE: case LT_OP_NEG: case LT_OP_ABS: case LT_OP_RELU: case LT_OP_CAST:
    case LT_OP_LEAKY_RELU: case LT_OP_CLAMP:
        return true;
    default: return is_index_op(op);
    }
}

/* Whether n is matmul c's right operand permuted so that its columns are not
 * its operand's rows (a linear layer's weight, x @ W^T; attention's k^T in
 * q @ k^T) with many rows of c to multiply it by: the permuted copy costs k n
 * moves once, and lets the matmul broadcast along b's contiguous columns
 * instead of summing dot products along k (poor when k is short: a head's
 * 32). */
static bool transposed_rhs(const fz *z, const lathe_node *c, const lathe_node *n) {
    if (c->op != LT_OP_MATMUL || c->in[1] != n || n->op != LT_OP_PERMUTE || n->rank < 2 || c->rank < 2) return false;
    const int64_t *p = n->attr[0].v;
    int r = n->rank;
    /* the rows of the whole batch: a data-parallel program decides as the
     * one-process program does, so that they compute the same way */
    int64_t rows = c->numel / (c->shape[c->rank - 1] ? c->shape[c->rank - 1] : 1) * z->row_scale[c->id];
    return p[r - 1] != r - 1 && rows >= 4 * n->shape[r - 2] && c->shape[c->rank - 2] >= 8;
}

/* Nodes inlined into one kernel's expression, at most. */
enum { LT_MAX_INLINE = 256 };

/* A kernel runs its leading dims in parallel, as many as give this many
 * chunks (or all of them). */
enum { LT_PARALLEL_CHUNKS = 64 };
static int parallel_dims(int rank, const int64_t *shape, int64_t *range) {
    int outer = 0;
    *range = 1;
    while (outer < rank && *range < LT_PARALLEL_CHUNKS) *range *= shape[outer++];
    return outer;
}

static bool same_shape(const lathe_node *a, const lathe_node *b) {
    return a->rank == b->rank && !memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->rank);
}

/* The p >= 1 leading dims that n keeps of consumer c's shape when n is c's
 * shape with every later dim 1, as a statistic of each row of c is (a layer
 * norm's mean, a softmax's sum); 0 when it is not, or is c's shape. */
static int row_prefix(const lathe_node *n, const lathe_node *c) {
    if (n->rank != c->rank) return 0;
    int p = 0;
    while (p < n->rank && n->shape[p] == c->shape[p]) p++;
    for (int d = p; d < n->rank; d++)
        if (n->shape[d] != 1) return 0;
    return p < n->rank ? p : 0;
}

/* Row statistics, once decide() has chosen the buffers: a materialized
 * value that contains a reduction and is read, broadcast along its later
 * dims, by one pointwise consumer goes into the kernel that consumer is
 * part of, which computes it once per row before the row's loop
 * (lower_llvm.c) instead of writing and reading a buffer for it.  Only when
 * that kernel has the consumer's shape (the consumer is materialized, or
 * inlined through pointwise ops of its shape), each of its parallel chunks
 * holds whole rows, it has no contraction plan (vector tiles have no row
 * loop), and its expression stays within LT_MAX_INLINE. */
static void rows(fz *z, const bool *root) {
    lathe_graph *g = z->g;
    lt_fused *f = z->f;
    for (int i = 0; i < g->nnodes; i++) {
        const lathe_node *n = g->nodes[i];
        if (f->buf_of[i] < 0 || root[i] || !z->contains[i] || z->heavy[i] || z->uses[i] != 1 || z->consumer[i] < 0)
            continue;
        const lathe_node *c = g->nodes[z->consumer[i]];
        int64_t range;
        int p = row_prefix(n, c);
        if (!is_pointwise(c->op) || p == 0 || parallel_dims(c->rank, c->shape, &range) > p) continue;
        int r = c->id;
        while (f->buf_of[r] < 0 && z->consumer[r] >= 0 && is_pointwise(g->nodes[z->consumer[r]]->op) &&
               same_shape(g->nodes[z->consumer[r]], c))
            r = z->consumer[r];
        if (f->buf_of[r] < 0 || z->heavy[r] || z->size[r] + z->size[i] > LT_MAX_INLINE) continue;
        f->buf_of[i] = -1;
        for (int m = c->id;; m = z->consumer[m]) { /* the kernel's expression holds n now */
            z->size[m] += z->size[i] - 1;
            z->contains[m] = true;
            if (m == r) break;
        }
    }
}

/* Whether node i (n), not yet decided, is a strided view of a buffer
 * through the nodes decided before it (lt_is_view). */
static bool is_view(fz *z, int i, const lathe_node *n) {
    z->f->buf_of[i] = -1;
    return lt_is_view(z->f, n);
}

/* The node that ends the chain of elementwise ops and reshapes that c starts
 * (each the one consumer of the one before): the root of the kernel that
 * computes c, unless something between is materialized.  NULL when the chain
 * is longer than a kernel's expression may be. */
static const lathe_node *epilogue_end(fz *z, const lathe_node *c, const bool *root) {
    for (int steps = 0; steps < LT_MAX_INLINE; steps++) {
        int i = c->id;
        if (root[i] || z->uses[i] != 1 || z->consumer[i] < 0) return c;
        const lathe_node *d = z->g->nodes[z->consumer[i]];
        if (!(is_pointwise(d->op) && same_shape(d, c)) && d->op != LT_OP_RESHAPE && d->op != LT_OP_FLATTEN) return c;
        c = d;
    }
    return NULL;
}

static void decide(fz *z, const bool *root) {
    lathe_graph *g = z->g;
    for (int i = 0; i < g->nnodes; i++) {
        const lathe_node *n = g->nodes[i];
        bool leaf = lt_ops[n->op].kind == LT_LEAF;
        bool contains = !leaf && (is_reduction(n->op) || is_heavy(n->op)), heavy = !leaf && is_heavy(n->op);
        for (int k = 0; k < n->nin && !leaf; k++) {
            if (z->f->buf_of[n->in[k]->id] < 0 && z->contains[n->in[k]->id]) contains = true;
            if (z->f->buf_of[n->in[k]->id] < 0 && z->heavy[n->in[k]->id]) heavy = true;
        }
        z->contains[i] = contains;
        z->heavy[i] = heavy;
        z->heavy_node[i] = heavy && is_heavy(n->op) ? i : -1;
        for (int k = 0; k < n->nin && heavy && z->heavy_node[i] < 0; k++)
            if (z->f->buf_of[n->in[k]->id] < 0 && z->heavy[n->in[k]->id]) z->heavy_node[i] = z->heavy_node[n->in[k]->id];
        z->size[i] = 1;
        for (int k = 0; k < n->nin && !leaf; k++) {
            int o = n->in[k]->id;
            z->size[i] += z->f->buf_of[o] < 0 ? z->size[o] : 1;
        }
        bool mat;
        if (leaf) mat = !(n->op == LT_OP_CONST && n->numel == 1) || root[i];
        else if (root[i] || z->uses[i] == 0) mat = true;
        else if (z->uses[i] != 1 || z->consumer[i] < 0) {
            /* used more than once: recomputed in each consumer when that is
             * cheaper than writing it and reading it back (a few cheap
             * elementwise ops, or an index op), unless a contraction or
             * window would recompute it at every read; a strided view of a
             * buffer costs nothing to read, whoever reads it */
            mat = !(cheap(n->op) && !contains && !z->heavy_use[i] && z->size[i] <= 6);
            if (mat && is_index_op(n->op)) mat = !is_view(z, i, n);
        }
        else {
            const lathe_node *c = g->nodes[z->consumer[i]];
            if (contains) {
                mat = !(is_pointwise(c->op) && same_shape(c, n));
                /* a contraction's epilogue may pass through reshapes (which keep
                 * each element's linear index) when the kernel it ends in has
                 * the contraction's shape: its vector plan computes that */
                if (mat && heavy && (c->op == LT_OP_RESHAPE || c->op == LT_OP_FLATTEN)) {
                    const lathe_node *e = epilogue_end(z, c, root), *h = g->nodes[z->heavy_node[i]];
                    mat = !e || !same_shape(e, h);
                }
                /* one contraction or window per kernel, the one its vector
                 * plan computes (the first inlined into the consumer) */
                for (int k = 0; k < c->nin && heavy && !mat; k++) {
                    int o = c->in[k]->id;
                    if (o < i && z->f->buf_of[o] < 0 && z->heavy[o]) mat = true;
                }
            }
            else if (is_heavy(c->op)) {
                /* a contraction's operand: a view of a buffer, else a buffer of its own
                 * (which its vector plan can read) */
                mat = !is_index_op(n->op) || !is_view(z, i, n) || transposed_rhs(z, c, n);
            }
            else if (c->op == LT_OP_PERMUTE && z->uses[c->id] == 1 && z->consumer[c->id] >= 0 &&
                     is_heavy(g->nodes[z->consumer[c->id]]->op) && is_index_op(n->op)) {
                /* a permuted operand of a contraction that is not a view: its buffer
                 * before the permute, which the contraction then reads transposed */
                mat = !is_view(z, i, n);
            } else mat = false;
        }
        /* a scatter (index_select_backward) is a kernel of its own, which
         * writes every element itself, and it reads its gradient's rows as
         * vectors: a view whose rows are dense, else a buffer */
        if (n->op == LT_OP_INDEX_SELECT_BACKWARD) mat = true;
        /* a communication step reads and writes whole buffers */
        if (!leaf && (is_gather(n) || z->gathered[i])) mat = true;
        if (!mat && z->row_from[i] <= n->rank) {
            z->f->buf_of[i] = -1;
            mat = !lt_is_row_view(z->f, n, z->row_from[i]);
        }
        /* a kernel's expression stays a bounded tree: building, lowering and
         * printing it recurse over it, and a graph may chain 100,000 ops */
        if (!mat && z->size[i] > LT_MAX_INLINE) mat = true;
        z->f->buf_of[i] = mat ? 0 : -1; /* numbered below */
    }
}

static int add_buf(lt_fused *f, const lathe_node *n) {
    lt_kbuf *b = &f->bufs[f->nbufs];
    memset(b, 0, sizeof *b);
    b->kind = n->op == LT_OP_INPUT ? B_INPUT : n->op == LT_OP_PARAM ? B_PARAM : n->op == LT_OP_BUFFER ? B_BUFFER
              : n->op == LT_OP_CONST ? B_CONST : B_TEMP;
    b->dtype = n->dtype;
    b->rank = n->rank;
    memcpy(b->shape, n->shape, sizeof b->shape);
    b->numel = n->numel;
    b->node = n->id;
    b->name = n->name;
    b->data = n->data;
    return f->nbufs++;
}

/* ---- pieces: specialized loops over a kernel's last dims -----------------------
 *
 * An elementwise kernel that reassembles a tensor from parts -- the q, k and
 * v gradients of attention, each permuted back from heads and concatenated
 * along the last axis -- computes every element through selects on its
 * column and divisions of it (head = c / 32, lane = c % 32): LLVM gathers.
 * Two rewrites make it contiguous copies.  When the value divides its last
 * index c by K (K dividing the dim), the space splits that dim as
 * [n/K, K] with c = h*K + l, so the divisions fold to h and l.  Then the
 * range of the dim the selects test (h, or c itself) is cut where they
 * change, and each piece's value is built again knowing its range: the
 * selects, the clamps guarding them and the divisions fold. */

/* Whether e holds a reduction (nothing here specializes those kernels). */
static bool holds_reduce(const lt_expr *e, int *budget) {
    if (!e || --*budget < 0) return e != NULL;
    if (e->kind == X_REDUCE) return true;
    return holds_reduce(e->a, budget) || holds_reduce(e->b, budget) || holds_reduce(e->c, budget);
}

/* The gcd of the divisors K of the index divisions in e whose operand has
 * variable v with coefficient 1 (0: none). */
static int64_t var_divisor(lt_expr *e, int v, int64_t g, int *budget) {
    if (!e || --*budget < 0) return g;
    if (e->kind == X_BIN && (e->op == XB_IDIV || e->op == XB_IMOD) && e->b->kind == X_CONST && e->b->i > 1) {
        aff f;
        if (aff_of(e->a, &f))
            for (int i = 0; i < f.n; i++)
                if (f.at[i]->kind == X_VAR && f.at[i]->var == v && (f.co[i] == 1 || f.co[i] == -1)) g = gcd64(g, e->b->i);
    }
    g = var_divisor(e->a, v, g, budget);
    g = var_divisor(e->b, v, g, budget);
    return var_divisor(e->c, v, g, budget);
}

/* The comparisons in e that are affine in variable v: alpha*v + rest, rest
 * in [rlo, rhi], against 0 as op says. */
enum { MAX_CUTS = 24 };
typedef struct {
    int n;
    int op[MAX_CUTS];
    int64_t alpha[MAX_CUTS], rlo[MAX_CUTS], rhi[MAX_CUTS];
} cuts;

static void find_cuts(fz *z, lt_expr *e, int v, cuts *k, int *budget) {
    if (!e || --*budget < 0 || k->n == MAX_CUTS) return;
    bool cmp = e->kind == X_BIN && e->t == LATHE_BOOL && e->a->t == LATHE_I64 && e->b->t == LATHE_I64 &&
               (e->op == LT_OP_LT || e->op == LT_OP_LE || e->op == LT_OP_GT || e->op == LT_OP_GE || e->op == LT_OP_EQ ||
                e->op == LT_OP_NE);
    aff f = {0};
    if (cmp && aff_put(&f, e->a, 1, 0) && aff_put(&f, e->b, -1, 0)) {
        int64_t alpha = 0;
        irange rest = {f.c, f.c};
        bool ok = true;
        for (int i = 0; i < f.n && ok; i++) {
            if (f.at[i]->kind == X_VAR && f.at[i]->var == v) alpha += f.co[i];
            else ok = add_term_range(z, f.at[i], f.co[i], &rest);
        }
        if (ok && alpha) {
            k->op[k->n] = e->op;
            k->alpha[k->n] = alpha;
            k->rlo[k->n] = rest.lo;
            k->rhi[k->n++] = rest.hi;
        }
    }
    find_cuts(z, e->a, v, k, budget);
    find_cuts(z, e->b, v, k, budget);
    find_cuts(z, e->c, v, k, budget);
}

/* Whether every comparison of k is decided for v in [a, b]. */
static bool decided(const cuts *k, int64_t a, int64_t b) {
    for (int i = 0; i < k->n; i++) {
        __int128 x = (__int128)k->alpha[i] * a, y = (__int128)k->alpha[i] * b;
        __int128 lo = (x < y ? x : y) + k->rlo[i], hi = (x > y ? x : y) + k->rhi[i];
        /* the threshold t where the comparison with 0 changes: D >= t or D < t */
        int t = k->op[i] == LT_OP_GT || k->op[i] == LT_OP_LE ? 1 : 0;
        bool ok = k->op[i] == LT_OP_EQ || k->op[i] == LT_OP_NE ? lo > 0 || hi < 0 || (lo == 0 && hi == 0)
                                                                : lo >= t || hi < t;
        if (!ok) return false;
    }
    return true;
}

/* Cuts of [0, len) for variable v into at most LT_MAX_SEGS pieces in each
 * of which every comparison of e affine in v is decided: their starts in
 * lo, their count returned (1: nothing to cut; 0: too many pieces). */
static int pieces(fz *z, lt_expr *e, int v, int64_t len, int64_t *lo) {
    cuts c = {0};
    int budget = 4096;
    find_cuts(z, e, v, &c, &budget);
    lo[0] = 0;
    if (!c.n || budget < 0) return 1;
    /* the points where some comparison may change */
    int64_t pts[4 * MAX_CUTS + 1];
    int np = 0;
    for (int i = 0; i < c.n; i++)
        for (int x = 0; x < 2; x++)
            for (int t = 0; t < 2; t++) {
                int64_t rest = x ? c.rhi[i] : c.rlo[i], a = c.alpha[i];
                /* the first v with a*v + rest >= t (a > 0) or <= t - 1 (a < 0) */
                __int128 num = a > 0 ? (__int128)t - rest : (__int128)rest - (t - 1), den = a > 0 ? a : -(__int128)a;
                __int128 q = num >= 0 ? (num + den - 1) / den : -((-num) / den);
                if (q > 0 && q < len) pts[np++] = (int64_t)q;
            }
    pts[np++] = len;
    for (int i = 1; i < np; i++)
        for (int j = i; j > 0 && pts[j - 1] > pts[j]; j--) {
            int64_t t = pts[j];
            pts[j] = pts[j - 1];
            pts[j - 1] = t;
        }
    /* pieces as long as everything in them stays decided */
    int ns = 0;
    for (int64_t a = 0; a < len;) {
        if (ns == LT_MAX_SEGS) return 0;
        int64_t b = -1;
        for (int i = 0; i < np; i++)
            if (pts[i] > a && (b < 0 || decided(&c, a, pts[i] - 1))) b = pts[i];
        lo[ns++] = a;
        a = b;
    }
    return ns;
}

/* Kernel k of node m: its space split and its pieces, when they help. */
static void specialize(fz *z, lt_kernel *k, const lathe_node *m) {
    int budget = 4096, r = m->rank;
    if (k->con || r == 0 || holds_reduce(k->value, &budget) || budget < 0) return;
    int64_t n = m->shape[r - 1], lo[LT_MAX_SEGS + 1];
    lt_expr *idx[LATHE_MAX_RANK], *segv[LT_MAX_SEGS];
    for (int d = 0; d < r; d++) idx[d] = xvar(z, d);
    /* pieces of the last dim, then the divisions left in them */
    int ns = r - 1 >= k->outer ? pieces(z, k->value, r - 1, n, lo) : 1;
    if (ns == 0) return;
    lo[ns] = n;
    for (int s = 0; s < ns && ns > 1; s++) {
        vrange(z, r - 1, lo[s], lo[s + 1]);
        if (!(segv[s] = value(z, m->id, idx))) return;
    }
    vrange(z, r - 1, 0, n);
    int64_t K = 0;
    budget = 4096;
    for (int s = 0; s < ns; s++) K = var_divisor(ns > 1 ? segv[s] : k->value, r - 1, K, &budget);
    bool split = budget >= 0 && K >= 8 && K < n && n % K == 0 && r < LATHE_MAX_RANK;
    for (int s = 1; s < ns && split; s++) split = lo[s] % K == 0;
    if (split) { /* the value again over [.., n/K, K], its pieces along n/K */
        z->nextvar = 0;
        for (int d = 0; d <= r; d++) vrange(z, newvar(z), 0, d < r - 1 ? m->shape[d] : d == r - 1 ? n / K : K);
        for (int d = 0; d <= r; d++) idx[d] = xvar(z, d);
        idx[r - 1] = iadd(z, imul(z, idx[r - 1], K), idx[r]);
        lt_expr *v = value(z, m->id, idx);
        if (!v) return;
        for (int s = 0; s <= ns; s++) lo[s] /= K;
        for (int s = 0; s < ns && ns > 1; s++) {
            vrange(z, r - 1, lo[s], lo[s + 1]);
            if (!(segv[s] = value(z, m->id, idx))) return;
        }
        vrange(z, r - 1, 0, n / K);
        k->value = v;
        k->rank = r + 1;
        k->shape[r - 1] = n / K;
        k->shape[r] = K;
        k->outer = parallel_dims(k->rank, k->shape, &k->range);
        if (r - 1 < k->outer) ns = 1; /* the pieces' dim went parallel: the general value */
    }
    if (ns < 2) return;
    for (int s = 0; s < ns; s++) k->segv[s] = segv[s], k->seg_lo[s] = lo[s];
    k->seg_lo[ns] = lo[ns];
    k->seg_dim = r - 1;
    k->nseg = ns;
}

/* z->row_scale: procs for the values whose leading (row) dims hold this
 * process's part of the batch, 1 for the others (batch.c, every input but
 * the rank per-sample). */
static bool row_scales(fz *z, int procs) {
    lathe_graph *g = z->g;
    int n = g->nnodes;
    if (!(z->row_scale = malloc(sizeof(int) * (size_t)(n + 1)))) return false;
    for (int i = 0; i < n; i++) z->row_scale[i] = 1;
    if (procs <= 1) return true;
    bool *in = calloc((size_t)n + 1, sizeof *in);
    lt_batch *st = calloc((size_t)n + 1, sizeof *st);
    bool ok = in && st;
    for (int i = 0; ok && i < n; i++) in[i] = g->nodes[i]->op == LT_OP_INPUT && strcmp(g->nodes[i]->name, LATHE_RANK_NAME);
    if (ok && lt_batch_axes(g, in, st) >= 0)
        for (int i = 0; i < n; i++)
            if (st[i].kind == LT_BATCH_AXIS && st[i].axis < g->nodes[i]->rank - 1) z->row_scale[i] = procs;
    free(in);
    free(st);
    return ok;
}

/* ---- overlap: what waits for a gather runs last ------------------------------
 *
 * The kernels that use a gather's result only to make outputs (a weight
 * gradient's ordered sum, its reshape to the weight's shape, the loss) move
 * to the end of the program, in their order, so that the gathers of the last
 * layers' gradients run while the earlier layers are differentiated.  A
 * gather's statistics that per-sample values use (batch norm's) stay where
 * they are.  Moving them changes no value. */

void lt_expr_loads(const lt_expr *e, bool *seen) {
    if (!e) return;
    if (e->kind == X_LOAD) seen[e->buf] = true;
    lt_expr_loads(e->a, seen);
    lt_expr_loads(e->b, seen);
    lt_expr_loads(e->c, seen);
    lt_expr_loads(e->body, seen);
    for (int i = 0; e->kind == X_REDUCE && i < e->nvars; i++) lt_expr_loads(e->lo[i], seen), lt_expr_loads(e->hi[i], seen);
}

static bool defer_after_gathers(lt_fused *f) {
    int nk = f->nk, nb = f->nbufs, ngather = 0;
    for (int i = 0; i < nk; i++) ngather += f->ks[i].gather;
    if (!ngather) return true;
    int *writer = malloc(sizeof(int) * (size_t)(nb + 1));
    bool *seen = malloc((size_t)nb + 1), *tainted = calloc((size_t)nk + 1, 1), *later = calloc((size_t)nk + 1, 1);
    bool *blocked = calloc((size_t)nk + 1, 1); /* a kernel that stays reads its buffer */
    lt_kernel *ks = malloc(sizeof *ks * (size_t)(nk + 1));
    bool ok = writer && seen && tainted && later && blocked && ks;
    for (int b = 0; ok && b < nb; b++) writer[b] = -1;
    for (int i = 0; ok && i < nk; i++) writer[f->ks[i].buf] = i;
    /* tainted: reads a gather's result, or a tainted kernel's */
    for (int pass = 0; ok && pass < 2; pass++)
        for (int i = pass ? nk - 1 : 0; pass ? i >= 0 : i < nk; i += pass ? -1 : 1) {
            memset(seen, 0, (size_t)nb);
            lt_expr_loads(f->ks[i].value, seen);
            for (int s = 0; s < f->ks[i].nseg; s++) lt_expr_loads(f->ks[i].segv[s], seen);
            if (pass) later[i] = tainted[i] && !blocked[i]; /* every kernel that reads it went later */
            for (int b = 0; b < nb; b++) {
                int w = seen[b] && b != f->ks[i].buf ? writer[b] : -1;
                if (w < 0 || w >= i) continue;
                if (!pass && !f->ks[i].gather && (f->ks[w].gather || tainted[w])) tainted[i] = true;
                if (pass && !later[i]) blocked[w] = true;
            }
        }
    if (ok) {
        int n = 0;
        for (int pass = 0; pass < 2; pass++)
            for (int i = 0; i < nk; i++)
                if (later[i] == (pass == 1)) ks[n++] = f->ks[i];
        memcpy(f->ks, ks, sizeof *ks * (size_t)nk);
    }
    free(writer);
    free(seen);
    free(tainted);
    free(later);
    free(blocked);
    free(ks);
    return ok;
}

lt_fused *lt_fuse(lathe_graph *g, const lt_target *target, int procs) {
    lt_fused *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->g = g;
    f->target = target;
    if (g->status != LATHE_OK) return f;
    int n = g->nnodes;
    fz z = {.f = f, .g = g, .root = -1};
    z.consumer = malloc(sizeof(int) * (size_t)(n + 1));
    z.uses = calloc((size_t)n + 1, sizeof(int));
    z.contains = calloc((size_t)n + 1, sizeof(bool));
    z.heavy = calloc((size_t)n + 1, sizeof(bool));
    z.heavy_use = calloc((size_t)n + 1, sizeof(bool));
    z.heavy_node = malloc(sizeof(int) * (size_t)(n + 1));
    z.size = calloc((size_t)n + 1, sizeof(int));
    z.stamp = malloc(sizeof(int) * (size_t)(n + 1));
    z.fused = malloc(sizeof(int) * (size_t)(n + 1));
    z.row_from = malloc(sizeof(int) * (size_t)(n + 1));
    z.gathered = calloc((size_t)n + 1, sizeof(bool));
    bool scaled = row_scales(&z, procs);
    bool *root = calloc((size_t)n + 1, sizeof(bool));
    f->buf_of = malloc(sizeof(int) * (size_t)(n + 1));
    f->bufs = calloc((size_t)n + 1, sizeof *f->bufs);
    f->ks = calloc((size_t)n + 1, sizeof *f->ks);
    if (!z.consumer || !z.uses || !z.contains || !z.heavy || !z.heavy_use || !z.heavy_node || !z.size || !z.stamp || !z.fused || !z.row_from || !z.gathered || !scaled || !root ||
        !f->buf_of || !f->bufs || !f->ks) {
        lt_fail(g, LATHE_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) z.consumer[i] = -1, z.stamp[i] = -1, z.row_from[i] = LATHE_MAX_RANK + 1;
    for (int i = 0; i < n; i++) {
        const lathe_node *m = g->nodes[i];
        for (int k = 0; k < m->nin; k++) {
            int o = m->in[k]->id;
            z.uses[o]++;
            z.consumer[o] = z.uses[o] == 1 ? i : -1;
            if (is_heavy(m->op)) z.heavy_use[o] = true;
            if (is_gather(m)) z.gathered[o] = true;
            if (m->op == LT_OP_INDEX_SELECT_BACKWARD && k == 0) {
                int from = (int)m->attr[0].v[0] + m->in[1]->rank;
                if (from < z.row_from[o]) z.row_from[o] = from;
            }
        }
    }
    for (int i = 0; i < g->nout; i++) root[g->outputs[i].node->id] = true;
    for (int i = 0; i < g->nupd; i++) root[g->updates[i].value->id] = true;
    decide(&z, root);
    rows(&z, root);
    /* buffers: leaves first (in node order), then one per kernel */
    for (int i = 0; i < n; i++)
        if (f->buf_of[i] == 0) f->buf_of[i] = -2;
    for (int i = 0; i < n; i++)
        if (f->buf_of[i] == -2 && lt_ops[g->nodes[i]->op].kind == LT_LEAF) f->buf_of[i] = add_buf(f, g->nodes[i]);
    for (int i = 0; i < n && g->status == LATHE_OK; i++) {
        if (f->buf_of[i] != -2) continue;
        const lathe_node *m = g->nodes[i];
        if ((m->op == LT_OP_RESHAPE || m->op == LT_OP_FLATTEN) && root[i]) {
            /* an output that only renames a kernel's buffer's shape (a weight
             * gradient from a matmul): that buffer, not a copy */
            int x = m->in[0]->id;
            if (f->buf_of[x] >= 0 && f->bufs[f->buf_of[x]].kind == B_TEMP) {
                f->buf_of[i] = f->buf_of[x];
                continue;
            }
        }
        f->buf_of[i] = add_buf(f, m);
        lt_kernel *k = &f->ks[f->nk++];
        k->buf = f->buf_of[i];
        k->rank = m->rank;
        memcpy(k->shape, m->shape, sizeof k->shape);
        z.root = i;
        z.nextvar = 0;
        z.nfused = 0;
        z.con = NULL;
        lt_expr *idx[LATHE_MAX_RANK];
        for (int dd = 0; dd < m->rank; dd++) {
            vrange(&z, newvar(&z), 0, m->shape[dd]);
            idx[dd] = xvar(&z, dd);
        }
        if (is_gather(m)) {
            /* the runtime's communication step (program.c, lathe_rt_gather); the
             * kernel only records that it reads its operand's buffer (the
             * plan's lifetimes) and is never called */
            for (int dd = 0; dd < m->in[0]->rank; dd++) idx[dd] = xi(&z, 0);
            k->gather = true;
            k->value = value(&z, m->in[0]->id, idx);
            k->nodes = malloc(sizeof(int));
            if (!k->nodes) {
                lt_fail(g, LATHE_ERR_NOMEM, "out of memory");
                break;
            }
            k->nodes[0] = i, k->nnodes = 1;
            k->outer = 0, k->range = 1;
            k->nvars = z.nextvar;
            if (z.nextvar > f->nvars) f->nvars = z.nextvar;
            continue;
        }
        k->value = value(&z, i, idx);
        k->nnodes = z.nfused + 1;
        k->nodes = malloc(sizeof(int) * (size_t)k->nnodes);
        if (!k->nodes) {
            lt_fail(g, LATHE_ERR_NOMEM, "out of memory");
            break;
        }
        for (int j = 0; j < z.nfused; j++) k->nodes[j] = z.fused[z.nfused - 1 - j];
        k->nodes[z.nfused] = i;
        /* parallel range: leading dims until there are enough chunks, or a
         * contraction's tiles */
        k->outer = parallel_dims(k->rank, k->shape, &k->range);
        k->con = z.con;
        if (k->con) k->outer = 0, k->range = k->con->range;
        specialize(&z, k, m); /* may build the value again, over one more dim */
        k->nvars = z.nextvar;
        if (z.nextvar > f->nvars) f->nvars = z.nextvar;
    }
    if (g->status == LATHE_OK && !defer_after_gathers(f)) lt_fail(g, LATHE_ERR_NOMEM, "out of memory");
done:
    free(z.consumer);
    free(z.uses);
    free(z.contains);
    free(z.heavy);
    free(z.heavy_use);
    free(z.heavy_node);
    free(z.size);
    free(z.stamp);
    free(z.fused);
    free(z.row_from);
    free(z.gathered);
    free(z.row_scale);
    free(z.vlo);
    free(z.vhi);
    free(root);
    return f;
}

void lt_fused_free(lt_fused *f) {
    if (!f) return;
    for (lt_xchunk *c = f->arena, *nx; c; c = nx) {
        nx = c->next;
        free(c);
    }
    for (int i = 0; i < f->nk; i++) free(f->ks[i].nodes), free(f->ks[i].con);
    free(f->ks);
    free(f->bufs);
    free(f->buf_of);
    free(f->plan);
    free(f);
}
