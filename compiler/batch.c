/* batch.c - which axis of each value runs over the batch (batch.h).
 *
 * One pass over the nodes in order (operands come first), each op's rule
 * mapping its operands' batch axes to its own.  Meant for decomposed graphs
 * (pipeline stage `decomposed`): the composites that normalize or reduce
 * inside (batch norm, softmax, the losses) are MIXED here unless their
 * operands are independent of the batch. */
#include <string.h>

#include "batch.h"

static lt_batch none(void) { return (lt_batch){LT_BATCH_NONE, -1, 0, false, false}; }
static lt_batch mixed(void) { return (lt_batch){LT_BATCH_MIXED, -1, 0, false, false}; }
static lt_batch at(int axis, int64_t inner) { return (lt_batch){LT_BATCH_AXIS, axis, inner, false, false}; }
static lt_batch reduced(void) { return (lt_batch){LT_BATCH_NONE, -1, 0, true, false}; }

static int64_t prod(const int64_t *s, int from, int to) {
    int64_t p = 1;
    for (int d = from; d < to; d++) p *= s[d];
    return p;
}

/* Whether value o, aligned to the right of an output of rank r, is the same
 * along output axis a: it does not reach it, its dim there is 1, or it is
 * built from such values by ops that keep that (a broadcast back of a batch
 * reduction, as a mean's gradient is; a GRU's zero initial state and its
 * product with the weights).  Looks at most *budget nodes (a graph is a DAG:
 * the walk could otherwise take exponential time). */
static bool uniform_along(const lathe_node *o, int r, int a, int *budget) {
    int d = a - (r - o->rank);
    if (d < 0 || o->shape[d] == 1) return true;
    if (--*budget < 0) return false;
    switch (lt_ops[o->op].kind) {
    case LT_UNARY: case LT_BINARY: case LT_COMPARE: case LT_WHERE:
        for (int k = 0; k < o->nin; k++)
            if (!uniform_along(o->in[k], o->rank, d, budget)) return false;
        return true;
    default: break;
    }
    switch (o->op) {
    case LT_OP_BROADCAST_TO:
    case LT_OP_SLICE: case LT_OP_SLICE_BACKWARD: case LT_OP_CONCAT:
        if (o->op != LT_OP_BROADCAST_TO && o->attr[0].v[0] == d) return false;
        for (int k = 0; k < o->nin; k++)
            if (!uniform_along(o->in[k], o->rank, d, budget)) return false;
        return true;
    case LT_OP_PERMUTE: return uniform_along(o->in[0], o->rank, (int)o->attr[0].v[d], budget);
    case LT_OP_MATMUL: {
        const lathe_node *x = o->in[0], *y = o->in[1];
        if (x->rank < 2 || y->rank < 2) return false;
        if (d == o->rank - 2) return uniform_along(x, x->rank, x->rank - 2, budget);
        if (d == o->rank - 1) return uniform_along(y, y->rank, y->rank - 1, budget);
        return uniform_along(x, o->rank, d, budget) && uniform_along(y, o->rank, d, budget);
    }
    default: return false;
    }
}

static bool uniform(const lathe_node *o, int r, int a) {
    int budget = 256;
    return uniform_along(o, r, a, &budget);
}

/* An elementwise op (operands broadcast to n's shape). */
static lt_batch elementwise(const lathe_node *n, const lt_batch *st) {
    lt_batch res = none();
    for (int k = 0; k < n->nin; k++) {
        const lathe_node *o = n->in[k];
        lt_batch b = st[o->id];
        if (b.kind == LT_BATCH_MIXED) return mixed();
        if (b.kind == LT_BATCH_NONE) continue;
        int a = b.axis + n->rank - o->rank;
        if (o->shape[b.axis] != n->shape[a]) return mixed(); /* a batch of one broadcast */
        if (res.kind == LT_BATCH_NONE) res = at(a, b.inner);
        else if (res.axis != a || res.inner != b.inner) return mixed();
    }
    for (int k = 0; k < n->nin && res.kind == LT_BATCH_AXIS; k++) /* replicated operands must not vary along it */
        if (st[n->in[k]->id].kind == LT_BATCH_NONE && !uniform(n->in[k], n->rank, res.axis)) return mixed();
    return res;
}

/* A reduction over the axes in list ax (none: all), keeping them or not. */
static lt_batch reduction(const lathe_node *n, lt_batch b, const lt_attr *ax, bool keep) {
    if (b.kind != LT_BATCH_AXIS) return b;
    const lathe_node *x = n->in[0];
    int below = 0;
    bool over = ax->n == 0;
    for (int i = 0; i < ax->n; i++) {
        int64_t d = ax->v[i] < 0 ? ax->v[i] + x->rank : ax->v[i];
        over = over || d == b.axis;
        below += d < b.axis;
    }
    if (over) return reduced();
    return at(keep ? b.axis : b.axis - below, b.inner);
}

/* A reshape: the samples must stay whole runs of the new axis. */
static lt_batch reshape(const lathe_node *n, lt_batch b) {
    if (b.kind != LT_BATCH_AXIS) return b;
    const lathe_node *x = n->in[0];
    if (prod(x->shape, 0, b.axis) != 1) return mixed(); /* the batch is not outermost */
    int64_t unit = b.inner * prod(x->shape, b.axis + 1, x->rank); /* elements per sample */
    int a = 0;
    while (a < n->rank - 1 && n->shape[a] == 1) a++;
    int64_t sb = prod(n->shape, a + 1, n->rank);
    if (n->rank == 0 || sb == 0 || unit % sb) return mixed();
    return at(a, unit / sb);
}

static lt_batch matmul(const lathe_node *n, const lt_batch *st) {
    const lathe_node *a = n->in[0], *b = n->in[1];
    lt_batch ba = st[a->id], bb = st[b->id];
    if (ba.kind == LT_BATCH_MIXED || bb.kind == LT_BATCH_MIXED || a->rank < 2 || b->rank < 2) {
        if (ba.kind == LT_BATCH_NONE && bb.kind == LT_BATCH_NONE) return none();
        return mixed();
    }
    int r = n->rank, ra = a->rank, rb = b->rank;
    bool ka = ba.kind == LT_BATCH_AXIS && ba.axis == ra - 1, kb = bb.kind == LT_BATCH_AXIS && bb.axis == rb - 2;
    if (ka || kb) { /* the product contracts the batch: a weight gradient */
        if (ka && kb) return ba.inner == bb.inner ? reduced() : mixed();
        /* with a replicated operand the same for every sample (a GRU's zero state) */
        bool same = ka ? bb.kind == LT_BATCH_NONE && uniform(b, rb, rb - 2) : ba.kind == LT_BATCH_NONE && uniform(a, ra, ra - 1);
        return same ? reduced() : mixed();
    }
    lt_batch res = none();
    if (ba.kind == LT_BATCH_AXIS) res = at(ba.axis == ra - 2 ? r - 2 : ba.axis + r - ra, ba.inner);
    if (bb.kind == LT_BATCH_AXIS) {
        lt_batch m = at(bb.axis == rb - 1 ? r - 1 : bb.axis + r - rb, bb.inner);
        if (res.kind == LT_BATCH_AXIS && (res.axis != m.axis || res.inner != m.inner)) return mixed();
        res = m;
    }
    if (res.kind != LT_BATCH_AXIS) return res;
    /* the other operand is the same along the batch: not reaching it, or size 1 there */
    const lathe_node *o = ba.kind == LT_BATCH_AXIS ? b : a;
    int ro = o->rank;
    if (res.axis < r - 2 && st[o->id].kind == LT_BATCH_NONE && res.axis - (r - ro) >= 0 &&
        o->shape[res.axis - (r - ro)] != 1)
        return mixed();
    if (res.axis >= r - 2 && st[o->id].kind == LT_BATCH_AXIS && st[o->id].axis < ro - 2) return mixed();
    return res;
}

/* An op whose leading axis (images) passes through, with replicated weights. */
static lt_batch images(const lathe_node *n, const lt_batch *st, int nimg) {
    lt_batch res = none();
    for (int k = 0; k < n->nin; k++) {
        lt_batch b = st[n->in[k]->id];
        if (b.kind == LT_BATCH_MIXED) return mixed();
        if (b.kind == LT_BATCH_NONE) continue;
        if (k >= nimg || b.axis != 0) return mixed();
        if (res.kind == LT_BATCH_AXIS && res.inner != b.inner) return mixed();
        res = at(0, b.inner);
    }
    return res;
}

int lt_batch_axes(const lathe_graph *g, const bool *batch_input, lt_batch *out) {
    if (!g || g->status != LATHE_OK) return -1;
    int nmixed = 0;
    for (int i = 0; i < g->nnodes; i++) {
        const lathe_node *n = g->nodes[i];
        const lathe_node *x = n->nin ? n->in[0] : NULL;
        lt_batch b = x ? out[x->id] : none(), r;
        bool any = false; /* some operand depends on the batch */
        for (int k = 0; k < n->nin; k++) any = any || out[n->in[k]->id].kind != LT_BATCH_NONE;
        switch (lt_ops[n->op].kind) {
        case LT_LEAF:
            r = n->op == LT_OP_INPUT && batch_input && batch_input[i] && n->rank > 0 ? at(0, 1) : none();
            break;
        case LT_UNARY: case LT_BINARY: case LT_COMPARE: case LT_WHERE:
            r = elementwise(n, out);
            break;
        default:
            if (!any) {
                r = none();
                break;
            }
            switch (n->op) {
            case LT_OP_DROPOUT: /* elementwise in x; its second operand is the generator's state */
                r = b.kind == LT_BATCH_AXIS ? at(b.axis, b.inner) : b;
                r.indexed = r.kind == LT_BATCH_AXIS;
                break;
            case LT_OP_SUM: case LT_OP_MEAN: case LT_OP_MAX: case LT_OP_MIN:
                r = reduction(n, b, &n->attr[0], n->attr[1].v[0]);
                break;
            case LT_OP_ARGMAX: {
                lt_attr one = {1, {n->attr[0].v[0]}, 0};
                r = reduction(n, b, &one, n->attr[1].v[0]);
                break;
            }
            case LT_OP_RESHAPE: case LT_OP_FLATTEN:
                r = reshape(n, b);
                break;
            case LT_OP_PERMUTE:
                r = b;
                for (int d = 0; d < n->rank && b.kind == LT_BATCH_AXIS; d++)
                    if (n->attr[0].v[d] == b.axis) r = at(d, b.inner);
                break;
            case LT_OP_BROADCAST_TO:
                r = b.kind == LT_BATCH_AXIS ? at(b.axis + n->rank - x->rank, b.inner) : b;
                if (r.kind == LT_BATCH_AXIS && x->shape[b.axis] != n->shape[r.axis]) r = mixed();
                break;
            case LT_OP_SLICE: case LT_OP_SLICE_BACKWARD: {
                int64_t ax = n->attr[0].v[0];
                bool whole = n->attr[1].v[0] == 0 && n->attr[3].v[0] == 1 && x->shape[ax] == n->shape[ax];
                r = b.kind == LT_BATCH_AXIS && ax == b.axis && !whole ? mixed() : b;
                break;
            }
            case LT_OP_CONCAT: {
                int64_t ax = n->attr[0].v[0];
                r = none();
                for (int k = 0; k < n->nin; k++) {
                    lt_batch o = out[n->in[k]->id];
                    if (o.kind == LT_BATCH_MIXED || (o.kind == LT_BATCH_AXIS && o.axis == ax)) {
                        r = mixed();
                        break;
                    }
                    if (o.kind == LT_BATCH_NONE) continue;
                    if (r.kind == LT_BATCH_AXIS && (r.axis != o.axis || r.inner != o.inner)) {
                        r = mixed();
                        break;
                    }
                    r = o;
                }
                for (int k = 0; k < n->nin && r.kind == LT_BATCH_AXIS; k++)
                    if (out[n->in[k]->id].kind == LT_BATCH_NONE && !uniform(n->in[k], n->rank, r.axis)) r = mixed();
                break;
            }
            case LT_OP_INDEX_SELECT: { /* x's rows at the index's positions */
                int ax = (int)n->attr[0].v[0], ir = n->in[1]->rank;
                lt_batch bi = out[n->in[1]->id];
                if (b.kind == LT_BATCH_MIXED || bi.kind == LT_BATCH_MIXED || (b.kind != LT_BATCH_NONE && bi.kind != LT_BATCH_NONE))
                    r = mixed();
                else if (bi.kind == LT_BATCH_AXIS) r = at(ax + bi.axis, bi.inner);
                else r = b.axis == ax ? mixed() : at(b.axis < ax ? b.axis : b.axis - 1 + ir, b.inner);
                break;
            }
            case LT_OP_INDEX_SELECT_BACKWARD: { /* gy's rows added at the rows the index names */
                int ax = (int)n->attr[0].v[0], ir = n->in[1]->rank;
                lt_batch bi = out[n->in[1]->id];
                if (b.kind == LT_BATCH_MIXED || bi.kind == LT_BATCH_MIXED) r = mixed();
                else if (bi.kind == LT_BATCH_AXIS) /* tokens: a scatter over the batch */
                    r = b.kind == LT_BATCH_AXIS && b.axis == ax + bi.axis && b.inner == bi.inner ? reduced() : mixed();
                else if (b.axis >= ax && b.axis < ax + ir) r = mixed();
                else r = at(b.axis < ax ? b.axis : b.axis - ir + 1, b.inner);
                break;
            }
            case LT_OP_MATMUL:
                r = matmul(n, out);
                break;
            case LT_OP_LINEAR: /* x [.., in]: rows pass through; weights replicated */
                r = b.kind == LT_BATCH_AXIS && b.axis < x->rank - 1 ? at(b.axis, b.inner) : mixed();
                for (int k = 1; k < n->nin; k++)
                    if (out[n->in[k]->id].kind != LT_BATCH_NONE) r = mixed();
                break;
            case LT_OP_CONV2D: case LT_OP_CONV2D_BACKWARD_INPUT:
                r = images(n, out, 1);
                break;
            case LT_OP_MAX_POOL2D: case LT_OP_AVG_POOL2D: case LT_OP_ADAPTIVE_AVG_POOL2D:
            case LT_OP_AVG_POOL2D_BACKWARD: case LT_OP_ADAPTIVE_AVG_POOL2D_BACKWARD:
            case LT_OP_MAX_POOL2D_BACKWARD:
                r = images(n, out, n->nin);
                break;
            case LT_OP_CONV2D_BACKWARD_WEIGHT: { /* summed over the images */
                lt_batch a = out[n->in[0]->id], c = out[n->in[1]->id];
                r = a.kind == LT_BATCH_AXIS && c.kind == LT_BATCH_AXIS && a.axis == 0 && c.axis == 0 && a.inner == c.inner
                        ? reduced()
                        : mixed();
                break;
            }
            default: /* composites: run this on decomposed graphs */
                r = mixed();
                break;
            }
        }
        if (r.kind == LT_BATCH_MIXED) nmixed++;
        out[i] = r;
    }
    return nmixed;
}
