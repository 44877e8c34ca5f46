/* shard.c - batch reductions as ordered sums of per-shard partials
 * (shard.h).  One pass copying the graph in node order, each batch
 * reduction replaced by its sharded form built with the graph builders:
 *
 *   sum over the batch axis a (size E)  reshape a to [S, E/S], sum the rest,
 *                                       then the sum over the shard axis
 *   a @ b contracting the batch (K)     a as [.., S, M, K/S], b as [.., S, K/S, N],
 *                                       one batched product, then the sum over S
 *   conv2d's weight gradient            one per shard of images, stacked, summed
 *   index_select_backward               one per shard of tokens, stacked, summed
 *
 * "Summed over the shard axis" is a fixed tree (combine).  For one process
 * of P, the copy holds its B/P samples: batch inputs and every value along
 * the batch get the local extent (local_op), each reduction computes this
 * process's S/P partials and the tree's levels within them, and an
 * all_gather along the shard axis brings every process's results before the
 * rest of the tree -- the same partials, the same sums, the same bits as
 * one process. */
#include <stdio.h>
#include <string.h>

#include "batch.h"
#include "shard.h"

typedef struct {
    const lathe_graph *g;
    lathe_graph *dst;
    lathe_node **map;
    const lt_batch *st;
    const bool *stat;   /* per node of g: a batch reduction whose value per-sample values use */
    bool global_now;    /* local_stats: the global value of a statistic that a gradient uses too */
    lathe_node *rank;   /* the input LATHE_RANK_NAME, once a dropout needs it */
    int S, P, L;        /* shards, processes, shards per process (S / P) */
    bool local;         /* lt_shard_opts.local_stats */
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

/* One level of the shards' sum: along axis pos (count entries), each group
 * of f consecutive entries added left to right, as strided slices. */
static lathe_node *add_groups(shard *s, lathe_node *p, int64_t pos, int64_t count, int64_t f) {
    lathe_node *y = lathe_slice(s->dst, p, pos, 0, count, f);
    for (int64_t j = 1; j < f; j++) y = lathe_add(s->dst, y, lathe_slice(s->dst, p, pos, j, count, f));
    return y;
}

/* Partials p of reduction n (the shard axis at pos, this process's L of
 * them), summed in the shards' fixed order: a tree whose levels add groups
 * of S's prime factors, smallest first (4 shards: (p0 + p1) + (p2 + p3)).
 * A process adds the levels whose groups lie within its L shards itself,
 * all-gathers what that leaves (one partial per process when L is a power of
 * two), and every process adds the remaining levels: the same sums as one
 * process, the same bits, and less to gather.  A statistic with
 * local_stats: this process's alone, times P. */
static lathe_node *combine(shard *s, const lathe_node *n, lathe_node *p, int64_t pos) {
    note_partial(s, p);
    bool own = s->local && s->stat[n->id] && !s->global_now;
    int64_t f[32], nf = 0, rest = s->S;
    for (int64_t d = 2; rest > 1 && nf < 32; d++)
        while (rest % d == 0 && nf < 32) f[nf++] = d, rest /= d;
    int64_t count = s->L, done = 1, k = 0;
    for (; k < nf && s->L % (done * f[k]) == 0; k++) { /* the levels within this process's shards */
        p = add_groups(s, p, pos, count, f[k]);
        count /= f[k], done *= f[k];
    }
    if (s->P > 1 && !own) {
        p = lathe_all_gather(s->dst, p, (int)pos, s->P);
        count *= s->P;
        for (; k < nf; k++) p = add_groups(s, p, pos, count, f[k]), count /= f[k];
    }
    if (count != 1) p = lathe_sum(s->dst, p, 1, &pos, true); /* own, levels left: its shards' sum (P > 1) */
    int64_t shp[LATHE_MAX_RANK];
    int r = 0;
    for (int d = 0; d < p->rank; d++)
        if (d != pos) shp[r++] = p->shape[d];
    lathe_node *y = lathe_reshape(s->dst, p, r, shp);
    if (own && s->P > 1) y = lathe_mul(s->dst, y, lathe_scalar(s->dst, n->dtype, (double)s->P));
    return y;
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
        if (d == a) shp[k++] = s->L, shp[k++] = c;
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
    lathe_node *y = combine(s, n, p, a - below);
    if (n->op == LT_OP_MEAN) {
        int64_t cnt = 1;
        for (int i = 0; i < na; i++) cnt *= shp[axes[i]];
        y = lathe_div(s->dst, y, lathe_scalar(s->dst, n->dtype, (double)(cnt * s->S)));
    }
    return n->attr[1].v[0] ? lathe_reshape(s->dst, y, n->rank, n->shape) : y;
}

/* Operand k of n, whose axis d spans the whole batch (E): a replicated value
 * (the same along it, as a GRU's zero initial state) is cut to this
 * process's extent like the batch-major operands beside it. */
static lathe_node *local_along(shard *s, const lathe_node *n, int k, lathe_node *x, int d) {
    const lathe_node *o = n->in[k];
    if (s->P == 1 || s->st[o->id].kind != LT_BATCH_NONE || o->shape[d] <= 1) return x;
    return lathe_slice(s->dst, x, d, 0, o->shape[d] / s->P, 1);
}

static lathe_node *shard_matmul(shard *s, const lathe_node *n, lathe_node *a, lathe_node *b) {
    const lathe_node *oa = n->in[0], *ob = n->in[1];
    a = local_along(s, n, 0, a, oa->rank - 1);
    b = local_along(s, n, 1, b, ob->rank - 2);
    int ra = oa->rank, rb = ob->rank, r = n->rank;
    if (ra + 1 > LATHE_MAX_RANK || rb + 1 > LATHE_MAX_RANK || r + 1 > LATHE_MAX_RANK)
        return refuse(s, n, "rank %lld and %lld shards: no room for the shard axis", r, s->S), NULL;
    int64_t K = oa->shape[ra - 1], c = chunk(s, n, K, s->st[(s->st[oa->id].kind == LT_BATCH_AXIS ? oa : ob)->id].inner);
    if (!c) return NULL;
    int64_t sa[LATHE_MAX_RANK], sb[LATHE_MAX_RANK], perm[LATHE_MAX_RANK];
    memcpy(sa, oa->shape, sizeof(int64_t) * (size_t)ra);
    sa[ra - 1] = s->L, sa[ra] = c; /* [.., M, S, K/S] (S/P of them here) */
    for (int d = 0; d < ra - 2; d++) perm[d] = d;
    perm[ra - 2] = ra - 1, perm[ra - 1] = ra - 2, perm[ra] = ra; /* [.., S, M, K/S] */
    memcpy(sb, ob->shape, sizeof(int64_t) * (size_t)(rb - 2));
    sb[rb - 2] = s->L, sb[rb - 1] = c, sb[rb] = ob->shape[rb - 1]; /* [.., S, K/S, N] */
    lathe_node *as = lathe_permute(s->dst, lathe_reshape(s->dst, a, ra + 1, sa), ra + 1, perm);
    lathe_node *bs = lathe_reshape(s->dst, b, rb + 1, sb);
    return combine(s, n, lathe_matmul(s->dst, as, bs), r - 2);
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
    for (int i = 0; i < s->L; i++) {
        lathe_node *sl[2];
        for (int k = 0; k < 2; k++) {
            int ax = s->st[n->in[k]->id].axis;
            sl[k] = lathe_slice(s->dst, in[k], ax, i * c[k], (i + 1) * c[k], 1);
        }
        parts[i] = lathe_reshape(s->dst, lt_make(s->dst, n->op, 2, sl, n->attr), n->rank + 1, one);
    }
    return combine(s, n, s->L > 1 ? lathe_concat(s->dst, s->L, parts, 0) : parts[0], 0);
}

/* ---- one process's part (P > 1): values along the batch hold B/P samples ---- */

/* n copied for this process's samples: a reshape or broadcast along the
 * batch gets the local extent; an elementwise op's operands that are the
 * same along the batch axis (a broadcast of a reduction, as a mean's
 * gradient) but span the whole batch are cut to the local extent. */
static lathe_node *local_op(shard *s, const lathe_node *n, lathe_node **in) {
    lt_batch b = s->st[n->id];
    if (s->P == 1 || b.kind != LT_BATCH_AXIS) return lt_make(s->dst, n->op, n->nin, in, n->attr);
    int64_t E = n->shape[b.axis], e = E / s->P;
    if (n->op == LT_OP_RESHAPE || n->op == LT_OP_BROADCAST_TO) {
        lt_attr at[LT_MAX_ATTRS];
        memcpy(at, n->attr, sizeof at);
        at[0].v[b.axis] = e;
        return lt_make(s->dst, n->op, n->nin, in, at);
    }
    switch (lt_ops[n->op].kind) {
    case LT_UNARY: case LT_BINARY: case LT_COMPARE: case LT_WHERE:
        for (int k = 0; k < n->nin; k++) {
            const lathe_node *o = n->in[k];
            int d = b.axis - (n->rank - o->rank);
            if (s->st[o->id].kind == LT_BATCH_NONE && d >= 0 && o->shape[d] == E && E > 1)
                in[k] = lathe_slice(s->dst, in[k], d, 0, e, 1);
        }
        break;
    default: break;
    }
    return lt_make(s->dst, n->op, n->nin, in, n->attr);
}

lathe_graph *lt_shard(const lathe_graph *g, const bool *batch_input, const lt_shard_opts *o, int *partial, int cap,
                      int *npartial, char *err, size_t errlen) {
    if (npartial) *npartial = 0;
    if (errlen) err[0] = 0;
    lathe_graph *dst = lathe_graph_new();
    lt_batch *st = calloc((size_t)g->nnodes + 1, sizeof *st);
    lathe_node **map = calloc((size_t)g->nnodes + 1, sizeof *map);
    bool *stat = calloc((size_t)g->nnodes + 1, sizeof *stat);
    int S = o->shards, P = o->procs;
    shard s = {.g = g, .dst = dst, .map = map, .st = st, .stat = stat, .S = S, .P = P, .L = P >= 1 ? S / P : 0,
               .local = o->local_stats, .partial = partial, .cap = partial ? cap : 0, .err = err, .errlen = errlen};
    bool ok = dst && st && map && stat && S >= 1 && P >= 1 && S % P == 0;
    if (!ok) {
        if (S < 1 || P < 1 || S % P) snprintf(err, errlen, "%d shards on %d processes: the processes must divide the shards", S, P);
        else snprintf(err, errlen, "out of memory");
    }
    int nmixed = ok ? lt_batch_axes(g, batch_input, st) : 0;
    /* the statistics: batch reductions whose value reaches a per-sample value
     * or a buffer's update (batch norm's running statistics) */
    bool *reach = ok && nmixed >= 0 ? calloc((size_t)g->nnodes + 1, sizeof *reach) : NULL;
    /* local_stats: a statistic that other values use as well (batch norm's
     * weight gradient is the sum its input's gradient uses) has a global
     * value too, in gmap */
    bool *need_global = calloc((size_t)g->nnodes + 1, sizeof *need_global);
    lathe_node **gmap = calloc((size_t)g->nnodes + 1, sizeof *gmap);
    if (ok && nmixed >= 0 && (!reach || !need_global || !gmap)) ok = false, snprintf(err, errlen, "out of memory");
    for (int i = 0; reach && i < g->nupd; i++) reach[g->updates[i].value->id] = true; /* running statistics */
    for (int i = g->nnodes - 1; reach && i >= 0; i--) {
        const lathe_node *n = g->nodes[i];
        if (st[i].reduces) stat[i] = reach[i];
        bool up = reach[i] || st[i].kind == LT_BATCH_AXIS;
        for (int k = 0; k < n->nin && up; k++) reach[n->in[k]->id] = true;
    }
    for (int i = 0; reach && i < g->nnodes; i++) {
        const lathe_node *n = g->nodes[i];
        for (int k = 0; k < n->nin; k++)
            if (stat[n->in[k]->id] && !reach[i] && st[i].kind != LT_BATCH_AXIS) need_global[n->in[k]->id] = true;
    }
    for (int i = 0; reach && i < g->nout; i++) need_global[g->outputs[i].node->id] = stat[g->outputs[i].node->id];
    for (int i = 0; ok && nmixed > 0 && i < g->nnodes; i++)
        if (st[i].kind == LT_BATCH_MIXED) ok = refuse(&s, g->nodes[i], "its value mixes the samples of the batch (%lld of %lld such nodes)", nmixed, nmixed);
    if (ok && nmixed < 0) ok = false, snprintf(err, errlen, "%s", lathe_graph_error((lathe_graph *)g));
    for (int i = 0; ok && i < g->nnodes; i++) {
        const lathe_node *n = g->nodes[i];
        lathe_node *in[64], *r = NULL;
        if (lt_ops[n->op].kind == LT_LEAF) {
            int64_t shp[LATHE_MAX_RANK];
            memcpy(shp, n->shape, sizeof(int64_t) * (size_t)n->rank);
            if (batch_input && batch_input[i] && n->rank > 0) {
                if (shp[0] % S) {
                    ok = refuse(&s, n, "a batch of %lld samples does not split into %lld shards", shp[0], S);
                    break;
                }
                shp[0] /= P;
            }
            r = lt_make_leaf(dst, n->op, n->name, n->dtype, n->rank, shp, n->requires_grad, n->data);
            if (r) r->init = n->init, r->init_a = n->init_a;
        } else if (n->nin > 64) {
            ok = refuse(&s, n, "%lld operands (at most %lld)", n->nin, 64);
            break;
        } else {
            bool local_use = reach[i] || st[i].kind == LT_BATCH_AXIS;
            for (int k = 0; k < n->nin; k++) {
                int o = n->in[k]->id;
                in[k] = s.local && P > 1 && gmap[o] && !local_use ? gmap[o] : map[o];
            }
            bool red = st[i].reduces;
            if (red && (n->op == LT_OP_SUM || n->op == LT_OP_MEAN || n->op == LT_OP_MATMUL ||
                        n->op == LT_OP_CONV2D_BACKWARD_WEIGHT || n->op == LT_OP_INDEX_SELECT_BACKWARD)) {
                lathe_node *ops[64];
                for (int pass = 0; pass < 1 + (s.local && P > 1 && stat[i] && need_global[i]); pass++) {
                    memcpy(ops, in, sizeof(lathe_node *) * (size_t)n->nin);
                    s.global_now = pass == 1;
                    lathe_node *y = n->op == LT_OP_MATMUL ? shard_matmul(&s, n, ops[0], ops[1])
                                    : n->op == LT_OP_SUM || n->op == LT_OP_MEAN ? shard_sum(&s, n, ops[0])
                                                                              : shard_each(&s, n, ops);
                    if (pass) gmap[i] = y;
                    else r = y;
                }
                s.global_now = false;
            } else if (P > 1 && red) {
                ok = refuse(&s, n, "a reduction over the batch that is not a sum, on %lld processes: data-parallel "
                            "programs gather sums only", P, 0);
                break;
            } else if (st[i].indexed && (P > 1 || S > 1)) {
                /* its mask hashes each element's index in the global batch: this
                 * process's part starts at rank * its size (the batch leading).
                 * One process's program has the same kernels, its rank 0, so
                 * that fusion makes the same choices in both. */
                if ((st[i].axis != 0 && P > 1) || n->nin != 2) {
                    ok = refuse(&s, n, "a dropout whose batch is on axis %lld (not the first) on %lld processes is not supported",
                                st[i].axis, P);
                    break;
                }
                if (!s.rank) s.rank = lt_make_leaf(dst, LT_OP_INPUT, LATHE_RANK_NAME, LATHE_I64, 1, (int64_t[]){1}, false, NULL);
                lathe_node *first = lathe_mul(dst, s.rank, lathe_scalar(dst, LATHE_I64, (double)(n->numel / P)));
                r = lt_make(dst, n->op, 3, (lathe_node *[]){in[0], in[1], first}, n->attr);
            } else r = local_op(&s, n, in);
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
    for (int i = 0; ok && i < g->nout; i++) {
        int o = g->outputs[i].node->id;
        lathe_output(dst, g->outputs[i].name, gmap[o] ? gmap[o] : map[o]);
    }
    for (int i = 0; ok && i < g->nupd; i++) lathe_update(dst, map[g->updates[i].buffer->id], map[g->updates[i].value->id]);
    if (ok && lathe_graph_status(dst) != LATHE_OK) ok = false, snprintf(err, errlen, "%s", lathe_graph_error(dst));
    if (npartial) *npartial = s.n;
    free(st);
    free(map);
    free(stat);
    free(reach);
    free(need_global);
    free(gmap);
    if (!ok) {
        lathe_graph_free(dst);
        return NULL;
    }
    return dst;
}
