/* simplify.c - dead-code elimination, common-subexpression elimination,
 * constant folding and algebraic identities.
 *
 * The pass rebuilds the graph: it walks the live nodes in order and, for each,
 * first tries an identity that returns an existing node (x*1 -> x), then
 * constant folding (the reference evaluator computes the value), then looks
 * the node up in a hash table of nodes already built (CSE), and only then
 * makes a new node.  Rebuilding repeats until the node count stops falling,
 * which also drops what the rewrites left dead.  Named leaves (inputs,
 * params, buffers) are always kept: they are the graph's interface.
 *
 * Nothing here may change a result: x*0 is not folded unless x is a constant
 * (x could be inf or NaN), and nodes built in a no_grad region are only
 * merged with other no_grad nodes, never replaced by a value that requires
 * grad. */
#include <math.h>
#include <string.h>

#include "ir.h"
#include "lathe_autodiff.h"

enum { FOLD_MAX_NUMEL = 256 };

typedef struct {
    const lathe_graph *src;
    lathe_graph *dst;
    lathe_node **map;   /* src id -> dst node */
    lathe_node **table; /* open-addressing CSE table of dst nodes */
    size_t cap;
    int *uses;          /* src id -> live nodes and outputs that read it */
} simp;

static bool attr_eq(const lt_attr *a, const lt_attr *b) {
    for (int k = 0; k < LT_MAX_ATTRS; k++) {
        if (a[k].n != b[k].n || a[k].f != b[k].f) return false;
        if (memcmp(a[k].v, b[k].v, sizeof a[k].v) != 0) return false;
    }
    return true;
}

static uint64_t mix(uint64_t h, uint64_t v) { return (h ^ v) * 0x100000001b3ULL; }

static uint64_t node_hash(lt_op op, lathe_dtype t, int rank, const int64_t *shape, int nin,
                          lathe_node *const *in, const lt_attr *at, const void *data, size_t nbytes,
                          bool no_grad) {
    uint64_t h = 0xcbf29ce484222325ULL;
    h = mix(h, (uint64_t)op);
    h = mix(h, (uint64_t)t);
    h = mix(h, (uint64_t)no_grad);
    for (int i = 0; i < rank; i++) h = mix(h, (uint64_t)shape[i]);
    for (int i = 0; i < nin; i++) h = mix(h, (uint64_t)in[i]->id);
    for (int k = 0; k < LT_MAX_ATTRS; k++) {
        h = mix(h, (uint64_t)at[k].n);
        for (int j = 0; j < LATHE_MAX_RANK; j++) h = mix(h, (uint64_t)at[k].v[j]);
    }
    const unsigned char *p = data;
    for (size_t i = 0; i < nbytes; i++) h = mix(h, p[i]);
    return h;
}

static uint64_t hash_of(const lathe_node *n) {
    size_t nbytes = n->op == LT_OP_CONST ? (size_t)n->numel * lathe_dtype_size(n->dtype) : 0;
    return node_hash(n->op, n->dtype, n->rank, n->shape, n->nin, n->in, n->attr, n->data, nbytes, n->no_grad);
}

static bool same_node(const lathe_node *a, const lathe_node *b) {
    if (a->name || b->name) return false; /* named leaves are distinct tensors */
    if (a->op != b->op || a->dtype != b->dtype || a->rank != b->rank || a->nin != b->nin ||
        a->no_grad != b->no_grad || memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->rank))
        return false;
    for (int i = 0; i < a->nin; i++)
        if (a->in[i] != b->in[i]) return false;
    if (!attr_eq(a->attr, b->attr)) return false;
    if (a->op == LT_OP_CONST)
        return memcmp(a->data, b->data, (size_t)a->numel * lathe_dtype_size(a->dtype)) == 0;
    return true;
}

/* Find an equal node already built, or insert n. */
static lathe_node *cse(simp *s, lathe_node *n) {
    size_t i = hash_of(n) & (s->cap - 1);
    while (s->table[i]) {
        if (same_node(s->table[i], n)) return s->table[i];
        i = (i + 1) & (s->cap - 1);
    }
    s->table[i] = n;
    return n;
}

/* The node in the table equal to n, or NULL (n is not added). */
static lathe_node *cse_find(const simp *s, const lathe_node *n) {
    for (size_t i = hash_of(n) & (s->cap - 1); s->table[i]; i = (i + 1) & (s->cap - 1))
        if (same_node(s->table[i], n)) return s->table[i];
    return NULL;
}

/* Drop the node just made (the last one) because an equal one exists. */
static void pop_last(lathe_graph *g, lathe_node *n) {
    LT_ASSERT(g->nnodes > 0 && g->nodes[g->nnodes - 1] == n);
    g->nnodes--; /* its arena memory is reclaimed with the graph */
}

static double elem(const lathe_node *c, int64_t i) {
    switch (c->dtype) {
    case LATHE_F32: return ((const float *)c->data)[i];
    case LATHE_F64: return ((const double *)c->data)[i];
    case LATHE_I64: return (double)((const int64_t *)c->data)[i];
    case LATHE_BOOL: return ((const bool *)c->data)[i];
    }
    return 0;
}

/* True when every element of n is the constant v: a const, or a
 * broadcast_to/reshape of one. */
static bool is_const_value(const lathe_node *n, double v) {
    while (n->op == LT_OP_BROADCAST_TO || n->op == LT_OP_RESHAPE) n = n->in[0];
    if (n->op != LT_OP_CONST) return false;
    for (int64_t i = 0; i < n->numel; i++)
        if (elem(n, i) != v) return false;
    return n->numel > 0;
}

static bool same_type(const lathe_node *a, lathe_dtype t, int rank, const int64_t *shape) {
    return a->dtype == t && a->rank == rank && memcmp(a->shape, shape, sizeof(int64_t) * (size_t)rank) == 0;
}

/* An existing or simpler node equal to op(in) with type (t, rank, shape), or
 * NULL.  May build new nodes in dst. */
static lathe_node *identity(simp *s, const lathe_node *old, lathe_node **in) {
    lathe_graph *g = s->dst;
    lathe_dtype t = old->dtype;
    int r = old->rank;
    const int64_t *sh = old->shape;
    lathe_node *x = old->nin ? in[0] : NULL, *y = old->nin > 1 ? in[1] : NULL;
    switch (old->op) {
    case LT_OP_ADD:
        if (is_const_value(y, 0) && same_type(x, t, r, sh)) return x;
        if (is_const_value(x, 0) && same_type(y, t, r, sh)) return y;
        break;
    case LT_OP_SUB:
        if (is_const_value(y, 0) && same_type(x, t, r, sh)) return x;
        if (is_const_value(x, 0) && same_type(y, t, r, sh)) return lathe_neg(g, y);
        break;
    case LT_OP_MUL:
        if (is_const_value(y, 1) && same_type(x, t, r, sh)) return x;
        if (is_const_value(x, 1) && same_type(y, t, r, sh)) return y;
        if (is_const_value(y, -1) && same_type(x, t, r, sh)) return lathe_neg(g, x);
        if (is_const_value(x, -1) && same_type(y, t, r, sh)) return lathe_neg(g, y);
        break;
    case LT_OP_DIV:
        if (is_const_value(y, 1) && same_type(x, t, r, sh)) return x;
        break;
    case LT_OP_NEG:
        if (x->op == LT_OP_NEG) return x->in[0];
        break;
    case LT_OP_POW_SCALAR:
        if (old->attr[0].f == 1) return x;
        break;
    case LT_OP_LEAKY_RELU: /* a slope of 1 is the identity */
        if (old->attr[0].f == 1) return x;
        break;
    case LT_OP_CLAMP: /* no bounds (NaN stays NaN either way) */
        if (old->attr[0].f == -INFINITY && old->attr[1].f == INFINITY) return x;
        break;
    case LT_OP_CAST:
        if (x->dtype == t) return x;
        break;
    case LT_OP_WHERE:
        if (in[1] == in[2] && same_type(in[1], t, r, sh)) return in[1];
        if (is_const_value(in[0], 1) && same_type(in[1], t, r, sh)) return in[1];
        if (is_const_value(in[0], 0) && same_type(in[2], t, r, sh)) return in[2];
        break;
    case LT_OP_RESHAPE:
    case LT_OP_FLATTEN:
        if (same_type(x, t, r, sh)) return x;
        if (x->op == LT_OP_RESHAPE || x->op == LT_OP_FLATTEN) return lathe_reshape(g, x->in[0], r, sh);
        break;
    case LT_OP_BROADCAST_TO:
        if (same_type(x, t, r, sh)) return x;
        if (x->op == LT_OP_BROADCAST_TO) return lathe_broadcast_to(g, x->in[0], r, sh);
        break;
    case LT_OP_PERMUTE: {
        const lt_attr *p = &old->attr[0];
        bool ident = true;
        for (int i = 0; i < p->n; i++) ident = ident && p->v[i] == i;
        if (ident) return x;
        if (x->op == LT_OP_PERMUTE) { /* permute(permute(z, q), p) = permute(z, q o p) */
            int64_t comp[LATHE_MAX_RANK];
            for (int i = 0; i < p->n; i++) comp[i] = x->attr[0].v[p->v[i]];
            return lathe_permute(g, x->in[0], p->n, comp);
        }
        /* (a @ b)^T = b^T @ a^T when nothing else reads a @ b: the product in
         * the layout its reader wants (a transpose's gradient, k^T's in
         * attention), the operands' transposes strided views */
        bool swap = r >= 2 && p->v[r - 2] == r - 1 && p->v[r - 1] == r - 2;
        for (int i = 0; i < r - 2 && swap; i++) swap = p->v[i] == i;
        if (swap && x->op == LT_OP_MATMUL && s->uses[old->in[0]->id] == 1 && x->in[0]->rank >= 2 && x->in[1]->rank >= 2) {
            lathe_node *a = x->in[0], *b = x->in[1];
            int64_t pa[LATHE_MAX_RANK], pb[LATHE_MAX_RANK];
            for (int i = 0; i < a->rank; i++) pa[i] = i < a->rank - 2 ? i : 2 * a->rank - 3 - i;
            for (int i = 0; i < b->rank; i++) pb[i] = i < b->rank - 2 ? i : 2 * b->rank - 3 - i;
            return lathe_matmul(g, lathe_permute(g, b, b->rank, pb), lathe_permute(g, a, a->rank, pa));
        }
        break;
    }
    case LT_OP_SLICE:
        if (same_type(x, t, r, sh)) return x; /* the whole axis */
        break;
    case LT_OP_CONCAT:
        if (old->nin == 1) return x;
        break;
    case LT_OP_ALL_GATHER: /* one process gathers its own value */
        if (old->attr[1].v[0] == 1) return x;
        break;
    case LT_OP_SUM:
    case LT_OP_MEAN:
        if (old->attr[0].n == 0 && same_type(x, t, r, sh)) return x;
        if (old->op == LT_OP_SUM && x->op == LT_OP_BROADCAST_TO) {
            /* sum over dims that broadcasting made: z * count, reshaped */
            lathe_node *z = x->in[0];
            int lead = x->rank - z->rank;
            int64_t count = 1;
            for (int i = 0; i < old->attr[0].n; i++) {
                int d = (int)old->attr[0].v[i];
                if (d >= lead && z->shape[d - lead] != 1) return NULL; /* a real sum */
                count *= x->shape[d];
            }
            if (lt_numel(r, sh) != z->numel) return NULL;
            lathe_node *zr = same_type(z, t, r, sh) ? z : lathe_reshape(g, z, r, sh);
            return count == 1 ? zr : lathe_mul(g, zr, lathe_scalar(g, t, (double)count));
        }
        if (old->op == LT_OP_SUM && !old->attr[1].v[0] && old->attr[0].n > 0 && x->rank > 0) {
            /* keepdim=false where the same sum is already kept (batch norm's
             * gradient takes both): that sum, reshaped */
            lt_attr at[LT_MAX_ATTRS];
            memcpy(at, old->attr, sizeof at);
            at[1].v[0] = 1;
            lathe_node *k = lt_make(g, LT_OP_SUM, 1, &x, at);
            if (!k) return NULL;
            k->no_grad = old->no_grad;
            lathe_node *e = cse_find(s, k);
            pop_last(g, k);
            return e ? lathe_reshape(g, e, r, sh) : NULL;
        }
        break;
    default:
        break;
    }
    return NULL;
}

/* Value of op(in) when every operand is a constant, computed by the reference
 * evaluator; NULL when not foldable. */
static lathe_node *fold(simp *s, const lathe_node *old, lathe_node **in) {
    if (old->nin == 0 || old->numel > FOLD_MAX_NUMEL || old->op == LT_OP_BROADCAST_TO) return NULL;
    for (int i = 0; i < old->nin; i++)
        if (in[i]->op != LT_OP_CONST) return NULL;
    lathe_graph *t = lathe_graph_new();
    if (!t) return NULL;
    lathe_node *tin[16];
    if (old->nin > 16) {
        lathe_graph_free(t);
        return NULL;
    }
    for (int i = 0; i < old->nin; i++)
        tin[i] = lathe_const(t, in[i]->dtype, in[i]->rank, in[i]->shape, in[i]->data);
    lathe_node *r = lt_make(t, old->op, old->nin, tin, old->attr);
    lathe_node *out = NULL;
    lathe_eval *ev = r ? lathe_eval_new(t) : NULL;
    if (ev && lathe_eval_run(ev) == LATHE_OK) {
        size_t nbytes = (size_t)r->numel * lathe_dtype_size(r->dtype);
        void *buf = malloc(nbytes ? nbytes : 1);
        if (buf && lathe_eval_get(ev, r, buf, nbytes) == LATHE_OK)
            out = lathe_const(s->dst, r->dtype, r->rank, r->shape, buf);
        free(buf);
    }
    lathe_eval_free(ev);
    lathe_graph_free(t);
    return out;
}

static lathe_node *copy_leaf(lathe_graph *dst, const lathe_node *n) {
    lathe_node *c = lt_make_leaf(dst, n->op, n->name, n->dtype, n->rank, n->shape, n->requires_grad, n->data);
    if (c) c->no_grad = n->no_grad, c->line = n->line, c->col = n->col;
    return c;
}

static void mark_live(const lathe_graph *g, bool *live) {
    memset(live, 0, (size_t)g->nnodes * sizeof *live);
    for (int i = 0; i < g->nout; i++) live[g->outputs[i].node->id] = true;
    for (int i = 0; i < g->nupd; i++) live[g->updates[i].buffer->id] = live[g->updates[i].value->id] = true;
    for (int i = g->nnodes - 1; i >= 0; i--) {
        const lathe_node *n = g->nodes[i];
        if (n->name) live[i] = true;
        if (live[i])
            for (int k = 0; k < n->nin; k++) live[n->in[k]->id] = true;
    }
}

/* One rebuild of src into a new graph. */
static lathe_graph *rebuild(const lathe_graph *src) {
    lathe_graph *dst = lathe_graph_new();
    if (!dst) return NULL;
    simp s = {src, dst, NULL, NULL, 16, NULL};
    while (s.cap < 4 * (size_t)src->nnodes + 16) s.cap *= 2;
    s.map = calloc((size_t)src->nnodes + 1, sizeof *s.map);
    s.table = calloc(s.cap, sizeof *s.table);
    s.uses = calloc((size_t)src->nnodes + 1, sizeof *s.uses);
    bool *live = malloc((size_t)src->nnodes + 1);
    if (!s.map || !s.table || !s.uses || !live) {
        lt_fail(dst, LATHE_ERR_NOMEM, "out of memory");
        goto done;
    }
    mark_live(src, live);
    for (int i = 0; i < src->nnodes; i++)
        for (int k = 0; live[i] && k < src->nodes[i]->nin; k++) s.uses[src->nodes[i]->in[k]->id]++;
    for (int i = 0; i < src->nout; i++) s.uses[src->outputs[i].node->id]++;
    for (int i = 0; i < src->nupd; i++) s.uses[src->updates[i].value->id]++;
    for (int i = 0; i < src->nnodes && dst->status == LATHE_OK; i++) {
        const lathe_node *n = src->nodes[i];
        if (!live[i]) continue;
        if (n->op == LT_OP_CONST) {
            lathe_node *c = copy_leaf(dst, n), *e = c ? cse(&s, c) : NULL;
            if (e && e != c) pop_last(dst, c);
            s.map[i] = e;
            continue;
        }
        if (lt_ops[n->op].kind == LT_LEAF) {
            s.map[i] = copy_leaf(dst, n);
            continue;
        }
        lathe_node *in[64], **inp = in;
        if (n->nin > 64 && !(inp = malloc((size_t)n->nin * sizeof *inp))) {
            lt_fail(dst, LATHE_ERR_NOMEM, "out of memory");
            break;
        }
        for (int k = 0; k < n->nin; k++) inp[k] = s.map[n->in[k]->id];
        lathe_node *r = NULL;
        if (!n->no_grad) r = identity(&s, n, inp);
        if (!r) r = fold(&s, n, inp);
        if (r && r->op == LT_OP_CONST) { /* a folded or identity constant: merge with equals */
            lathe_node *e = cse(&s, r);
            if (e != r && dst->nnodes && dst->nodes[dst->nnodes - 1] == r) pop_last(dst, r);
            r = e;
        } else if (r && r->id == dst->nnodes - 1) {
            lathe_node *e = cse(&s, r); /* a node the identity built */
            if (e != r) pop_last(dst, r);
            r = e;
        }
        if (!r) {
            r = lt_make(dst, n->op, n->nin, inp, n->attr);
            if (r) {
                r->no_grad = n->no_grad;
                r->line = n->line;
                r->col = n->col;
                lathe_node *e = cse(&s, r);
                if (e != r) pop_last(dst, r);
                r = e;
            }
        }
        if (inp != in) free(inp);
        s.map[i] = r;
    }
    for (int i = 0; i < src->nout && dst->status == LATHE_OK; i++)
        lathe_output(dst, src->outputs[i].name, s.map[src->outputs[i].node->id]);
    for (int i = 0; i < src->nupd && dst->status == LATHE_OK; i++)
        lathe_update(dst, s.map[src->updates[i].buffer->id], s.map[src->updates[i].value->id]);
done:
    free(s.map);
    free(s.table);
    free(s.uses);
    free(live);
    return dst;
}

lathe_graph *lathe_simplify(const lathe_graph *g) {
    lathe_graph *cur = rebuild(g);
    for (int iter = 0; cur && cur->status == LATHE_OK && iter < 8; iter++) {
        lathe_graph *next = rebuild(cur);
        if (!next) break;
        bool shrank = next->nnodes < cur->nnodes;
        lathe_graph_free(cur);
        cur = next;
        if (!shrank) break;
    }
    if (cur && cur->status == LATHE_OK) lathe_graph_verify(cur);
    return cur;
}
