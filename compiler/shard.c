/* shard.c - batch reductions as ordered sums of per-shard partials
 * (shard.h).  One pass copying the graph in node order, each batch
 * reduction replaced by its sharded form built with the graph builders:
 *
 *   sum over the batch axis a (size E)  reshape a to [S, E/S], sum the rest,
 *                                       then the sum over the shard axis
 *   a @ b contracting the batch (K)     a as [.., S, M, K/S], b as [.., S, K/S, N],
 *                                       one batched product, then the sum over S
 *   conv2d's weight gradient            one per shard of images, stacked, summed
 *   index_select_backward               one per shard of tokens, stacked, summed */
#include <stdio.h>
#include <string.h>

#include "batch.h"
#include "shard.h"

typedef struct {
    const lathe_graph *g;
    lathe_graph *dst;
    lathe_node **map;
    const lt_batch *st;
    int S;
    int *partial, cap, n;
    char *err;
    size_t errlen;
} shard;

static bool refuse(shard *s, const lathe_node *n, const char *what, long long a, long long b) {
    char w[256];
    snprintf(w, sizeof w, what, a, b);
    snprintf(s->err, s->errlen, "node %%%d (%s): %s", n->id, lt_ops[n->op].name, w);
    return false;
}

static void note_partial(shard *s, const lathe_node *p) {
    if (p && s->n < s->cap) s->partial[s->n] = p->id;
    if (p) s->n++;
}

/* The size of one shard along an axis of size E that holds `inner` indices
 * per sample; 0 (with a message) when S does not divide the samples. */
static int64_t chunk(shard *s, const lathe_node *n, int64_t E, int64_t inner) {
    if (inner < 1 || E % inner || (E / inner) % s->S) {
        refuse(s, n, "a batch of %lld samples does not split into %lld shards", inner > 0 ? E / inner : E, s->S);
        return 0;
    }
    return E / s->S;
}

/* Partials p (the shard axis at pos), summed over it in shard order. */
static lathe_node *combine(shard *s, lathe_node *p, int64_t pos) {
    note_partial(s, p);
    return lathe_sum(s->dst, p, 1, &pos, false);
}

static lathe_node *shard_sum(shard *s, const lathe_node *n, lathe_node *x) {
    const lathe_node *ox = n->in[0];
    lt_batch b = s->st[ox->id];
    int a = b.axis, r = ox->rank;
    if (r + 1 > LATHE_MAX_RANK) return refuse(s, n, "rank %lld and %lld shards: no room for the shard axis", r, s->S), NULL;
    int64_t c = chunk(s, n, ox->shape[a], b.inner);
    if (!c) return NULL;
    int64_t shp[LATHE_MAX_RANK], axes[LATHE_MAX_RANK];
    for (int d = 0, k = 0; d < r; d++) {
        if (d == a) shp[k++] = s->S, shp[k++] = c;
        else shp[k++] = ox->shape[d];
    }
    const lt_attr *ax = &n->attr[0];
    int na = 0, below = 0;
    for (int d = 0; d < r; d++) {
        bool red = ax->n == 0;
        for (int i = 0; i < ax->n; i++) red = red || (ax->v[i] < 0 ? ax->v[i] + r : ax->v[i]) == d;
        if (!red) continue;
        axes[na++] = d < a ? d : d + 1;
        below += d < a;
    }
    lathe_node *xr = lathe_reshape(s->dst, x, r + 1, shp);
    lathe_node *p = lathe_sum(s->dst, xr, na, axes, false);
    lathe_node *y = combine(s, p, a - below);
    if (n->op == LT_OP_MEAN) {
        int64_t cnt = 1;
        for (int i = 0; i < na; i++) cnt *= shp[axes[i]];
        y = lathe_div(s->dst, y, lathe_scalar(s->dst, n->dtype, (double)(cnt * s->S)));
    }
    return n->attr[1].v[0] ? lathe_reshape(s->dst, y, n->rank, n->shape) : y;
}

static lathe_node *shard_matmul(shard *s, const lathe_node *n, lathe_node *a, lathe_node *b) {
    const lathe_node *oa = n->in[0], *ob = n->in[1];
    int ra = oa->rank, rb = ob->rank, r = n->rank;
    if (ra + 1 > LATHE_MAX_RANK || rb + 1 > LATHE_MAX_RANK || r + 1 > LATHE_MAX_RANK)
        return refuse(s, n, "rank %lld and %lld shards: no room for the shard axis", r, s->S), NULL;
    int64_t K = oa->shape[ra - 1], c = chunk(s, n, K, s->st[oa->id].inner);
    if (!c) return NULL;
    int64_t sa[LATHE_MAX_RANK], sb[LATHE_MAX_RANK], perm[LATHE_MAX_RANK];
    memcpy(sa, oa->shape, sizeof(int64_t) * (size_t)ra);
    sa[ra - 1] = s->S, sa[ra] = c; /* [.., M, S, K/S] */
    for (int d = 0; d < ra - 2; d++) perm[d] = d;
    perm[ra - 2] = ra - 1, perm[ra - 1] = ra - 2, perm[ra] = ra; /* [.., S, M, K/S] */
    memcpy(sb, ob->shape, sizeof(int64_t) * (size_t)(rb - 2));
    sb[rb - 2] = s->S, sb[rb - 1] = c, sb[rb] = ob->shape[rb - 1]; /* [.., S, K/S, N] */
    lathe_node *as = lathe_permute(s->dst, lathe_reshape(s->dst, a, ra + 1, sa), ra + 1, perm);
    lathe_node *bs = lathe_reshape(s->dst, b, rb + 1, sb);
    return combine(s, lathe_matmul(s->dst, as, bs), r - 2);
}

/* op(slices of its operands along their batch axes), one per shard, stacked
 * along a new leading axis and summed over it. */
static lathe_node *shard_each(shard *s, const lathe_node *n, lathe_node **in) {
    if (n->rank + 1 > LATHE_MAX_RANK) return refuse(s, n, "rank %lld and %lld shards: no room for the shard axis", n->rank, s->S), NULL;
    int64_t c[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        lt_batch b = s->st[n->in[k]->id];
        if (!(c[k] = chunk(s, n, n->in[k]->shape[b.axis], b.inner))) return NULL;
    }
    lathe_node *parts[64];
    if (s->S > 64) return refuse(s, n, "%lld shards: at most %lld for this op", s->S, 64), NULL;
    int64_t one[LATHE_MAX_RANK];
    one[0] = 1;
    memcpy(one + 1, n->shape, sizeof(int64_t) * (size_t)n->rank);
    for (int i = 0; i < s->S; i++) {
        lathe_node *sl[2];
        for (int k = 0; k < 2; k++) {
            int ax = s->st[n->in[k]->id].axis;
            sl[k] = lathe_slice(s->dst, in[k], ax, i * c[k], (i + 1) * c[k], 1);
        }
        parts[i] = lathe_reshape(s->dst, lt_make(s->dst, n->op, 2, sl, n->attr), n->rank + 1, one);
    }
    return combine(s, s->S > 1 ? lathe_concat(s->dst, s->S, parts, 0) : parts[0], 0);
}

lathe_graph *lt_shard(const lathe_graph *g, const bool *batch_input, int S, int *partial, int cap, int *npartial,
                      char *err, size_t errlen) {
    if (npartial) *npartial = 0;
    if (errlen) err[0] = 0;
    lathe_graph *dst = lathe_graph_new();
    lt_batch *st = calloc((size_t)g->nnodes + 1, sizeof *st);
    lathe_node **map = calloc((size_t)g->nnodes + 1, sizeof *map);
    shard s = {g, dst, map, st, S, partial, partial ? cap : 0, 0, err, errlen};
    bool ok = dst && st && map && S >= 1;
    if (!ok) snprintf(err, errlen, S < 1 ? "%d shards" : "out of memory", S);
    int nmixed = ok ? lt_batch_axes(g, batch_input, st) : 0;
    for (int i = 0; ok && nmixed > 0 && i < g->nnodes; i++)
        if (st[i].kind == LT_BATCH_MIXED) ok = refuse(&s, g->nodes[i], "its value mixes the samples of the batch (%lld of %lld such nodes)", nmixed, nmixed);
    if (ok && nmixed < 0) ok = false, snprintf(err, errlen, "%s", lathe_graph_error((lathe_graph *)g));
    for (int i = 0; ok && i < g->nnodes; i++) {
        const lathe_node *n = g->nodes[i];
        lathe_node *in[64], *r = NULL;
        if (lt_ops[n->op].kind == LT_LEAF) {
            r = lt_make_leaf(dst, n->op, n->name, n->dtype, n->rank, n->shape, n->requires_grad, n->data);
            if (r) r->init = n->init, r->init_a = n->init_a;
        } else if (n->nin > 64) {
            ok = refuse(&s, n, "%lld operands (at most %lld)", n->nin, 64);
            break;
        } else {
            for (int k = 0; k < n->nin; k++) in[k] = map[n->in[k]->id];
            bool red = st[i].reduces;
            if (red && (n->op == LT_OP_SUM || n->op == LT_OP_MEAN)) r = shard_sum(&s, n, in[0]);
            else if (red && n->op == LT_OP_MATMUL) r = shard_matmul(&s, n, in[0], in[1]);
            else if (red && (n->op == LT_OP_CONV2D_BACKWARD_WEIGHT || n->op == LT_OP_INDEX_SELECT_BACKWARD))
                r = shard_each(&s, n, in);
            else r = lt_make(dst, n->op, n->nin, in, n->attr);
            if (!r && !err[0]) snprintf(err, errlen, "node %%%d (%s): %s", i, lt_ops[n->op].name, lathe_graph_error(dst));
        }
        if (!r || lathe_graph_status(dst) != LATHE_OK) {
            if (!err[0] || !r) snprintf(err, errlen, "node %%%d (%s): %s", i, lt_ops[n->op].name, lathe_graph_error(dst));
            ok = false;
            break;
        }
        r->no_grad = n->no_grad, r->line = n->line, r->col = n->col;
        map[i] = r;
    }
    for (int i = 0; ok && i < g->nout; i++) lathe_output(dst, g->outputs[i].name, map[g->outputs[i].node->id]);
    for (int i = 0; ok && i < g->nupd; i++) lathe_update(dst, map[g->updates[i].buffer->id], map[g->updates[i].value->id]);
    if (ok && lathe_graph_status(dst) != LATHE_OK) ok = false, snprintf(err, errlen, "%s", lathe_graph_error(dst));
    if (npartial) *npartial = s.n;
    free(st);
    free(map);
    if (!ok) {
        lathe_graph_free(dst);
        return NULL;
    }
    return dst;
}
