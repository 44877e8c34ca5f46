/* graph.c - graphs, nodes and their arena, the op table, errors.
 *
 * A graph owns one arena of chunks; every node, name and constant lives in it
 * and is freed with the graph.  Nodes are appended in creation order, and a
 * node's operands always exist before it, so creation order is a topological
 * order and a graph built here can never hold a cycle.
 *
 * requires_grad is stored only on leaves; for other nodes it is derived on
 * demand, so freezing a parameter after tracing is seen by everything built
 * from it. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ir.h"

const lt_opinfo lt_ops[LT_OP_COUNT] = {
#define X(e, name, lo, hi, kind, attrs) {name, lo, hi, LT_##kind, attrs},
    LATHE_OP_LIST(X)
#undef X
};

_Noreturn void lt_assert_fail(const char *file, int line, const char *cond) {
    fprintf(stderr, "lathe: internal error at %s:%d: %s\n", file, line, cond);
    abort();
}

int lt_op_schema(lt_op op, lt_attrspec spec[LT_MAX_ATTRS]) {
    const char *s = lt_ops[op].schema;
    int n = 0;
    while (*s) {
        while (*s == ' ') s++;
        if (!*s) break;
        const char *colon = strchr(s, ':');
        LT_ASSERT(colon && n < LT_MAX_ATTRS && (size_t)(colon - s) < sizeof spec[n].name);
        memcpy(spec[n].name, s, (size_t)(colon - s));
        spec[n].name[colon - s] = 0;
        spec[n].type = (lt_atype)colon[1];
        n++;
        s = colon + 2;
    }
    return n;
}

int lt_op_lookup(const char *name, size_t len) {
    for (int i = 0; i < LT_OP_COUNT; i++)
        if (strlen(lt_ops[i].name) == len && memcmp(lt_ops[i].name, name, len) == 0) return i;
    return -1;
}

const char *lt_reduction_name(int64_t r) {
    switch (r) {
    case LATHE_REDUCE_NONE: return "none";
    case LATHE_REDUCE_MEAN: return "mean";
    case LATHE_REDUCE_SUM: return "sum";
    }
    return "?";
}

const char *lathe_dtype_name(lathe_dtype t) {
    switch (t) {
    case LATHE_F32: return "f32";
    case LATHE_F64: return "f64";
    case LATHE_I64: return "i64";
    case LATHE_BOOL: return "bool";
    }
    return "?";
}

size_t lathe_dtype_size(lathe_dtype t) {
    switch (t) {
    case LATHE_F32: return 4;
    case LATHE_F64: return 8;
    case LATHE_I64: return 8;
    case LATHE_BOOL: return sizeof(bool);
    }
    return 0;
}

const char *lathe_status_name(lathe_status s) {
    static const char *names[] = {"ok", "shape error", "dtype error", "bad argument",
                                  "name error", "parse error", "cycle", "verify error",
                                  "i/o error", "out of memory", "unsupported"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "unknown status";
}

bool lt_is_float(lathe_dtype t) { return t == LATHE_F32 || t == LATHE_F64; }

/* ---- arena -------------------------------------------------------------- */

struct lt_chunk {
    lt_chunk *next;
    size_t used, cap;
    _Alignas(max_align_t) unsigned char mem[];
};

void *lt_alloc(lathe_graph *g, size_t size) {
    size = (size + 15) & ~(size_t)15;
    lt_chunk *c = g->arena;
    if (!c || c->cap - c->used < size) {
        size_t cap = size > 65536 ? size : 65536;
        c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->next = g->arena;
        c->used = 0;
        c->cap = cap;
        g->arena = c;
    }
    void *p = c->mem + c->used;
    c->used += size;
    memset(p, 0, size);
    return p;
}

char *lt_strdup(lathe_graph *g, const char *s) {
    size_t n = strlen(s) + 1;
    char *p = lt_alloc(g, n);
    if (p) memcpy(p, s, n);
    return p;
}

/* ---- graph -------------------------------------------------------------- */

lathe_graph *lathe_graph_new(void) { return calloc(1, sizeof(lathe_graph)); }

void lathe_graph_free(lathe_graph *g) {
    if (!g) return;
    for (lt_chunk *c = g->arena, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(g->nodes);
    free(g->outputs);
    free(g->updates);
    free(g->marks);
    free(g);
}

lathe_status lathe_graph_status(const lathe_graph *g) { return g->status; }
const char *lathe_graph_error(const lathe_graph *g) { return g->err; }
void lathe_graph_clear_error(lathe_graph *g) {
    g->status = LATHE_OK;
    g->err[0] = 0;
}

lathe_status lt_take_error(lathe_graph *g, char *msg) {
    lathe_status st = g->status != LATHE_OK ? g->status : LATHE_ERR_ARG;
    memcpy(msg, g->err, sizeof g->err);
    lathe_graph_clear_error(g);
    return st;
}

lathe_status lt_failv(lathe_graph *g, lathe_status st, const char *fmt, va_list ap) {
    if (g->status != LATHE_OK) return g->status;
    g->status = st;
    vsnprintf(g->err, sizeof g->err, fmt, ap);
    return st;
}

void *lt_fail(lathe_graph *g, lathe_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    lt_failv(g, st, fmt, ap);
    va_end(ap);
    return NULL;
}

void lt_type_str(lathe_dtype t, int rank, const int64_t *shape, char *buf, size_t len) {
    size_t k = (size_t)snprintf(buf, len, "%s[", lathe_dtype_name(t));
    for (int i = 0; i < rank && k < len; i++)
        k += (size_t)snprintf(buf + k, len - k, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (k < len) snprintf(buf + k, len - k, "]");
}

void lathe_node_type_str(const lathe_node *n, char *buf, size_t len) {
    lt_type_str(n->dtype, n->rank, n->shape, buf, len);
}

int64_t lt_numel(int rank, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 0) return -1;
        if (shape[i] == 0) n = 0;
        else if (n > LT_MAX_NUMEL / shape[i]) {
            /* a later zero dim still makes the tensor empty */
            for (int j = i + 1; j < rank; j++)
                if (shape[j] == 0) return 0;
            return -1;
        } else n *= shape[i];
    }
    return n;
}

void lt_strides(int rank, const int64_t *shape, int64_t *strides) {
    int64_t s = 1;
    for (int i = rank - 1; i >= 0; i--) {
        strides[i] = s;
        s *= shape[i];
    }
}

static lathe_node *append_node(lathe_graph *g) {
    if (g->nnodes == g->capnodes) {
        int cap = g->capnodes ? 2 * g->capnodes : 64;
        lathe_node **p = realloc(g->nodes, (size_t)cap * sizeof *p);
        if (!p) return lt_fail(g, LATHE_ERR_NOMEM, "out of memory");
        g->nodes = p;
        g->capnodes = cap;
    }
    lathe_node *n = lt_alloc(g, sizeof *n);
    if (!n) return lt_fail(g, LATHE_ERR_NOMEM, "out of memory");
    n->id = g->nnodes;
    n->g = g;
    n->no_grad = g->no_grad_depth > 0;
    n->line = g->cur_line;
    n->col = g->cur_col;
    g->nodes[g->nnodes++] = n;
    return n;
}

static bool leaf_name_taken(const lathe_graph *g, const char *name) {
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i]->name && strcmp(g->nodes[i]->name, name) == 0) return true;
    return false;
}

lathe_node *lt_make_leaf(lathe_graph *g, lt_op op, const char *name, lathe_dtype dtype, int rank,
                         const int64_t *shape, bool requires_grad, const void *data) {
    const char *opn = lt_ops[op].name;
    if (g->status != LATHE_OK) return NULL; /* sticky: keep the first error */
    if ((unsigned)dtype > LATHE_BOOL) return lt_fail(g, LATHE_ERR_DTYPE, "%s: unknown dtype %d", opn, (int)dtype);
    if (rank < 0 || rank > LATHE_MAX_RANK)
        return lt_fail(g, LATHE_ERR_SHAPE, "%s%s%s%s: rank %d out of range 0..%d", opn,
                       name ? " '" : "", name ? name : "", name ? "'" : "", rank, LATHE_MAX_RANK);
    if (rank > 0 && !shape) return lt_fail(g, LATHE_ERR_ARG, "%s: shape is NULL", opn);
    char ts[160];
    lt_type_str(dtype, rank, shape, ts, sizeof ts);
    int64_t numel = lt_numel(rank, shape);
    if (numel < 0) {
        for (int i = 0; i < rank; i++)
            if (shape[i] < 0)
                return lt_fail(g, LATHE_ERR_SHAPE, "%s%s%s%s: negative dimension in %s", opn,
                               name ? " '" : "", name ? name : "", name ? "'" : "", ts);
        return lt_fail(g, LATHE_ERR_SHAPE,
                       "%s%s%s%s: element count of %s overflows (limit 2^48 elements)", opn,
                       name ? " '" : "", name ? name : "", name ? "'" : "", ts);
    }
    if (op != LT_OP_CONST) {
        if (!name || !*name) return lt_fail(g, LATHE_ERR_NAME, "%s: empty name", opn);
        if (leaf_name_taken(g, name))
            return lt_fail(g, LATHE_ERR_NAME, "%s: duplicate name '%s'", opn, name);
    }
    if (requires_grad && !lt_is_float(dtype))
        return lt_fail(g, LATHE_ERR_DTYPE,
                       "%s '%s': only floating-point tensors can require grad (got %s)", opn,
                       name ? name : "", ts);
    if (op == LT_OP_CONST && numel > 0 && !data)
        return lt_fail(g, LATHE_ERR_ARG, "const: data is NULL for %s", ts);
    lathe_node *n = append_node(g);
    if (!n) return NULL;
    n->op = op;
    n->dtype = dtype;
    n->rank = rank;
    for (int i = 0; i < rank; i++) n->shape[i] = shape[i];
    n->numel = numel;
    n->requires_grad = requires_grad;
    if (name && !(n->name = lt_strdup(g, name))) return lt_fail(g, LATHE_ERR_NOMEM, "out of memory");
    if (op == LT_OP_CONST) {
        size_t bytes = (size_t)numel * lathe_dtype_size(dtype);
        n->data = lt_alloc(g, bytes ? bytes : 1);
        if (!n->data) return lt_fail(g, LATHE_ERR_NOMEM, "out of memory");
        if (bytes) memcpy(n->data, data, bytes);
    }
    return n;
}

lathe_node *lt_make(lathe_graph *g, lt_op op, int nin, lathe_node *const *in, const lt_attr *attrs) {
    const lt_opinfo *oi = &lt_ops[op];
    if (g->status != LATHE_OK) return NULL; /* sticky: keep the first error */
    if (nin < oi->min_args || (oi->max_args >= 0 && nin > oi->max_args)) {
        if (oi->max_args < 0)
            return lt_fail(g, LATHE_ERR_ARG, "%s: expected at least %d operands, got %d", oi->name,
                           oi->min_args, nin);
        if (oi->min_args == oi->max_args)
            return lt_fail(g, LATHE_ERR_ARG, "%s: expected %d operands, got %d", oi->name,
                           oi->min_args, nin);
        return lt_fail(g, LATHE_ERR_ARG, "%s: expected %d to %d operands, got %d", oi->name,
                       oi->min_args, oi->max_args, nin);
    }
    for (int i = 0; i < nin; i++) {
        if (!in[i]) return lt_fail(g, LATHE_ERR_ARG, "%s: operand %d is NULL", oi->name, i);
        if (in[i]->g != g)
            return lt_fail(g, LATHE_ERR_ARG, "%s: operand %d belongs to another graph", oi->name, i);
    }
    lt_attr a[LT_MAX_ATTRS];
    memset(a, 0, sizeof a);
    if (attrs) memcpy(a, attrs, sizeof a);
    lt_type t;
    if (lt_infer(g, op, nin, in, a, &t) != LATHE_OK) return NULL;
    lathe_node *n = append_node(g);
    if (!n) return NULL;
    n->op = op;
    n->dtype = t.dtype;
    n->rank = t.rank;
    memcpy(n->shape, t.shape, sizeof n->shape);
    n->numel = lt_numel(t.rank, t.shape);
    if (n->numel < 0) {
        char ts[160];
        lt_type_str(t.dtype, t.rank, t.shape, ts, sizeof ts);
        g->nnodes--;
        return lt_fail(g, LATHE_ERR_SHAPE, "%s: element count of result %s overflows", oi->name, ts);
    }
    memcpy(n->attr, a, sizeof a);
    n->nin = nin;
    n->in = lt_alloc(g, (size_t)(nin ? nin : 1) * sizeof *n->in);
    if (!n->in) return lt_fail(g, LATHE_ERR_NOMEM, "out of memory");
    for (int i = 0; i < nin; i++) n->in[i] = in[i];
    return n;
}

/* ---- requires_grad --------------------------------------------------------- */

static bool derives_grad(const lathe_node *n) {
    if (n->no_grad || !lt_is_float(n->dtype)) return false;
    return lt_ops[n->op].kind != LT_COMPARE && n->op != LT_OP_ARGMAX;
}

void lt_requires_grad_all(const lathe_graph *g, bool *out) {
    for (int i = 0; i < g->nnodes; i++) {
        const lathe_node *n = g->nodes[i];
        bool r = false;
        if (n->op == LT_OP_INPUT || n->op == LT_OP_PARAM) r = n->requires_grad;
        else if (derives_grad(n))
            for (int k = 0; k < n->nin; k++) r = r || out[n->in[k]->id];
        out[i] = r;
    }
}

bool lathe_requires_grad(const lathe_node *n) {
    if (!n) return false;
    if (n->op == LT_OP_INPUT || n->op == LT_OP_PARAM) return n->requires_grad;
    if (!derives_grad(n)) return false;
    const lathe_graph *g = n->g;
    bool *rg = malloc((size_t)(n->id + 1) * sizeof *rg);
    if (!rg) return false;
    /* the nodes up to n form a prefix of the topological order */
    lathe_graph view = *g;
    view.nnodes = n->id + 1;
    lt_requires_grad_all(&view, rg);
    bool r = rg[n->id];
    free(rg);
    return r;
}

lathe_status lathe_set_init(lathe_node *n, lathe_leaf_init kind, double a) {
    if (n->op != LT_OP_PARAM && n->op != LT_OP_BUFFER) {
        lt_fail(n->g, LATHE_ERR_ARG, "set_init: node %%%d (%s) is not a param or buffer", n->id, lt_ops[n->op].name);
        return LATHE_ERR_ARG;
    }
    static const char *const names[] = {"auto", "uniform", "const", "normal", "seed"};
    if ((int)kind < 0 || kind > LATHE_LEAF_INIT_SEED) {
        lt_fail(n->g, LATHE_ERR_ARG, "set_init '%s': unknown initializer kind %d", n->name, (int)kind);
        return LATHE_ERR_ARG;
    }
    if (!isfinite(a) || ((kind == LATHE_LEAF_INIT_UNIFORM || kind == LATHE_LEAF_INIT_NORMAL) && a < 0) ||
        (kind == LATHE_LEAF_INIT_SEED && n->dtype != LATHE_I64)) {
        lt_fail(n->g, LATHE_ERR_ARG,
                "set_init '%s': bad initializer %s(%g): its number must be finite, uniform's bound and normal's "
                "standard deviation >= 0, and a seed's buffer i64", n->name, names[kind], a);
        return LATHE_ERR_ARG;
    }
    n->init = kind;
    n->init_a = a;
    return LATHE_OK;
}

lathe_leaf_init lathe_leaf_init_of(const lathe_graph *g, const lathe_node *leaf, double *a) {
    *a = 0;
    if (leaf->init != LATHE_LEAF_INIT_AUTO) { /* lathe_set_init */
        *a = leaf->init_a;
        return leaf->init;
    }
    for (int i = leaf->id + 1; i < g->nnodes; i++) {
        const lathe_node *n = g->nodes[i];
        for (int k = 0; k < n->nin; k++) {
            if (n->in[k] != leaf) continue;
            const lathe_node *w = n->nin > 1 ? n->in[1] : NULL;
            if ((n->op == LT_OP_CONV2D || n->op == LT_OP_LINEAR) && (k == 1 || k == 2)) {
                int64_t fan_in = 1;
                for (int d = 1; d < w->rank; d++) fan_in *= w->shape[d];
                *a = 1.0 / sqrt((double)(fan_in ? fan_in : 1));
                return LATHE_LEAF_INIT_UNIFORM;
            }
            if (n->op == LT_OP_BATCH_NORM2D) {
                *a = k == 1 || k == 4 ? 1 : 0;
                return LATHE_LEAF_INIT_CONST;
            }
            if (n->op == LT_OP_DROPOUT && k == 1) return LATHE_LEAF_INIT_SEED; /* (seed, 0) */
            if (n->op == LT_OP_INDEX_SELECT && k == 0) { /* torch.nn.Embedding: normal_(0, 1) */
                *a = 1;
                return LATHE_LEAF_INIT_NORMAL;
            }
            if (n->op == LT_OP_LAYER_NORM && k > 0) { /* weight 1, bias 0 */
                *a = k == 1 ? 1 : 0;
                return LATHE_LEAF_INIT_CONST;
            }
        }
    }
    if (leaf->op == LT_OP_PARAM && leaf->rank >= 2) { /* some other use: as a linear layer's weight */
        int64_t fan_in = leaf->numel / (leaf->shape[0] ? leaf->shape[0] : 1);
        *a = 1.0 / sqrt((double)(fan_in ? fan_in : 1));
        return LATHE_LEAF_INIT_UNIFORM;
    }
    return LATHE_LEAF_INIT_CONST;
}

/* The rows that n indexes with its operand 1: a loss's classes, the size of
 * the axis index_select (or its gradient) selects along; 0 if n indexes
 * nothing. */
static int64_t rows_indexed(const lathe_node *n) {
    const lathe_node *x = n->in[0];
    switch (n->op) {
    case LT_OP_CROSS_ENTROPY:
    case LT_OP_NLL_LOSS: return x->shape[x->rank > 1 ? 1 : 0];
    case LT_OP_INDEX_SELECT: return x->shape[n->attr[0].v[0]];
    case LT_OP_INDEX_SELECT_BACKWARD: return n->attr[1].v[0];
    default: return 0;
    }
}

/* Whether n indexes with input (its operand 1), directly or through shape ops. */
static bool indexes_with(const lathe_node *n, const lathe_node *input) {
    if (n->nin < 2 || rows_indexed(n) <= 0) return false;
    const lathe_node *t = n->in[1];
    while (t != input && (t->op == LT_OP_RESHAPE || t->op == LT_OP_FLATTEN || t->op == LT_OP_PERMUTE ||
                          t->op == LT_OP_SLICE || t->op == LT_OP_BROADCAST_TO))
        t = t->in[0];
    return t == input;
}

int64_t lathe_index_limit(const lathe_graph *g, const lathe_node *input) {
    int64_t limit = 0;
    for (int i = input->id + 1; i < g->nnodes; i++) {
        const lathe_node *n = g->nodes[i];
        if (!indexes_with(n, input)) continue;
        int64_t c = rows_indexed(n);
        if (limit == 0 || c < limit) limit = c;
    }
    return limit;
}

int64_t lathe_index_ignore(const lathe_graph *g, const lathe_node *input) {
    int64_t ignore = INT64_MIN;
    for (int i = input->id + 1; i < g->nnodes; i++) {
        const lathe_node *n = g->nodes[i];
        if (!indexes_with(n, input)) continue;
        bool loss = n->op == LT_OP_CROSS_ENTROPY || n->op == LT_OP_NLL_LOSS;
        if (!loss || (ignore != INT64_MIN && n->attr[1].v[0] != ignore)) return INT64_MIN; /* a row index ignores nothing */
        ignore = n->attr[1].v[0];
    }
    return ignore;
}

lathe_status lathe_set_requires_grad(lathe_node *n, bool rg) {
    lathe_graph *g = n->g;
    if (n->op != LT_OP_INPUT && n->op != LT_OP_PARAM) {
        lt_fail(g, LATHE_ERR_ARG,
                "set_requires_grad: node %%%d (%s) is not an input or param; only those carry the flag",
                n->id, lt_ops[n->op].name);
        return LATHE_ERR_ARG;
    }
    if (rg && !lt_is_float(n->dtype)) {
        char ts[160];
        lathe_node_type_str(n, ts, sizeof ts);
        lt_fail(g, LATHE_ERR_DTYPE,
                "set_requires_grad '%s': only floating-point tensors can require grad (got %s)",
                n->name, ts);
        return LATHE_ERR_DTYPE;
    }
    n->requires_grad = rg;
    return LATHE_OK;
}

int lathe_set_requires_grad_prefix(lathe_graph *g, const char *prefix, bool rg) {
    int k = 0;
    size_t len = strlen(prefix);
    for (int i = 0; i < g->nnodes; i++) {
        lathe_node *n = g->nodes[i];
        if (n->op == LT_OP_PARAM && strncmp(n->name, prefix, len) == 0 && lt_is_float(n->dtype)) {
            n->requires_grad = rg;
            k++;
        }
    }
    return k;
}

void lathe_no_grad_begin(lathe_graph *g) { g->no_grad_depth++; }
void lathe_no_grad_end(lathe_graph *g) {
    if (g->no_grad_depth > 0) g->no_grad_depth--;
}

/* ---- outputs and updates -------------------------------------------------- */

lathe_status lathe_output(lathe_graph *g, const char *name, lathe_node *v) {
    if (g->status != LATHE_OK) return g->status;
    if (!v) return lt_fail(g, LATHE_ERR_ARG, "output '%s': value is NULL", name ? name : ""), g->status;
    if (!name || !*name) return lt_fail(g, LATHE_ERR_NAME, "output: empty name"), g->status;
    if (v->g != g) return lt_fail(g, LATHE_ERR_ARG, "output '%s': value belongs to another graph", name), g->status;
    for (int i = 0; i < g->nout; i++)
        if (strcmp(g->outputs[i].name, name) == 0)
            return lt_fail(g, LATHE_ERR_NAME, "output: duplicate name '%s'", name), g->status;
    if (g->nout == g->capout) {
        int cap = g->capout ? 2 * g->capout : 8;
        lt_output *p = realloc(g->outputs, (size_t)cap * sizeof *p);
        if (!p) return lt_fail(g, LATHE_ERR_NOMEM, "out of memory"), g->status;
        g->outputs = p;
        g->capout = cap;
    }
    const char *nm = lt_strdup(g, name);
    if (!nm) return lt_fail(g, LATHE_ERR_NOMEM, "out of memory"), g->status;
    g->outputs[g->nout++] = (lt_output){nm, v};
    return LATHE_OK;
}

lathe_status lathe_update(lathe_graph *g, lathe_node *buf, lathe_node *v) {
    if (g->status != LATHE_OK) return g->status;
    if (!buf || !v) return lt_fail(g, LATHE_ERR_ARG, "update: buffer or value is NULL"), g->status;
    if (buf->g != g || v->g != g)
        return lt_fail(g, LATHE_ERR_ARG, "update: node belongs to another graph"), g->status;
    if (buf->op != LT_OP_BUFFER)
        return lt_fail(g, LATHE_ERR_ARG, "update: target %%%d (%s) is not a buffer", buf->id,
                       lt_ops[buf->op].name), g->status;
    char a[160], b[160];
    lathe_node_type_str(buf, a, sizeof a);
    lathe_node_type_str(v, b, sizeof b);
    if (strcmp(a, b) != 0)
        return lt_fail(g, LATHE_ERR_SHAPE, "update '%s': buffer is %s but value is %s", buf->name, a, b), g->status;
    for (int i = 0; i < g->nupd; i++)
        if (g->updates[i].buffer == buf)
            return lt_fail(g, LATHE_ERR_NAME, "update: buffer '%s' already has an update", buf->name), g->status;
    if (g->nupd == g->capupd) {
        int cap = g->capupd ? 2 * g->capupd : 8;
        lt_update *p = realloc(g->updates, (size_t)cap * sizeof *p);
        if (!p) return lt_fail(g, LATHE_ERR_NOMEM, "out of memory"), g->status;
        g->updates = p;
        g->capupd = cap;
    }
    g->updates[g->nupd++] = (lt_update){buf, v};
    return LATHE_OK;
}

lathe_status lathe_mark_backward(lathe_graph *g, lathe_node *out, lathe_node *cot) {
    if (g->status != LATHE_OK) return g->status;
    if (!out || out->g != g || (cot && cot->g != g))
        return lt_fail(g, LATHE_ERR_ARG, "mark_backward: value is NULL or in another graph"), g->status;
    if (cot) {
        char a[160], b[160];
        lathe_node_type_str(out, a, sizeof a);
        lathe_node_type_str(cot, b, sizeof b);
        if (strcmp(a, b) != 0)
            return lt_fail(g, LATHE_ERR_SHAPE, "mark_backward: cotangent %s does not match the value %s", b, a),
                   g->status;
    } else if (out->numel != 1) {
        char a[160];
        lathe_node_type_str(out, a, sizeof a);
        return lt_fail(g, LATHE_ERR_SHAPE,
                       "mark_backward: %s has %lld elements; only a one-element value has an implied cotangent",
                       a, (long long)out->numel), g->status;
    }
    if (g->nmarks == g->capmarks) {
        int cap = g->capmarks ? 2 * g->capmarks : 4;
        lt_mark *p = realloc(g->marks, (size_t)cap * sizeof *p);
        if (!p) return lt_fail(g, LATHE_ERR_NOMEM, "out of memory"), g->status;
        g->marks = p;
        g->capmarks = cap;
    }
    g->marks[g->nmarks++] = (lt_mark){out, cot};
    return LATHE_OK;
}

int lathe_graph_num_marks(const lathe_graph *g) { return g->nmarks; }
void lathe_graph_mark(const lathe_graph *g, int i, lathe_node **out, lathe_node **cot) {
    bool ok = i >= 0 && i < g->nmarks;
    if (out) *out = ok ? g->marks[i].out : NULL;
    if (cot) *cot = ok ? g->marks[i].cot : NULL;
}
void lathe_graph_clear_marks(lathe_graph *g) { g->nmarks = 0; }

/* ---- introspection ---------------------------------------------------------- */

int lathe_graph_num_nodes(const lathe_graph *g) { return g->nnodes; }
lathe_node *lathe_graph_node(const lathe_graph *g, int i) {
    return i >= 0 && i < g->nnodes ? g->nodes[i] : NULL;
}
lathe_node *lathe_graph_find(const lathe_graph *g, const char *name) {
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i]->name && strcmp(g->nodes[i]->name, name) == 0) return g->nodes[i];
    for (int i = 0; i < g->nout; i++)
        if (strcmp(g->outputs[i].name, name) == 0) return g->outputs[i].node;
    return NULL;
}
lathe_node *lathe_graph_find_output(const lathe_graph *g, const char *name) {
    for (int i = 0; i < g->nout; i++)
        if (strcmp(g->outputs[i].name, name) == 0) return g->outputs[i].node;
    return NULL;
}
int lathe_graph_num_outputs(const lathe_graph *g) { return g->nout; }
lathe_node *lathe_graph_output(const lathe_graph *g, int i) {
    return i >= 0 && i < g->nout ? g->outputs[i].node : NULL;
}
const char *lathe_graph_output_name(const lathe_graph *g, int i) {
    return i >= 0 && i < g->nout ? g->outputs[i].name : NULL;
}
int lathe_graph_num_updates(const lathe_graph *g) { return g->nupd; }
void lathe_graph_update(const lathe_graph *g, int i, lathe_node **buffer, lathe_node **value) {
    bool ok = i >= 0 && i < g->nupd;
    if (buffer) *buffer = ok ? g->updates[i].buffer : NULL;
    if (value) *value = ok ? g->updates[i].value : NULL;
}

int lathe_node_id(const lathe_node *n) { return n->id; }
const char *lathe_node_op(const lathe_node *n) { return lt_ops[n->op].name; }
lathe_dtype lathe_node_dtype(const lathe_node *n) { return n->dtype; }
int lathe_node_rank(const lathe_node *n) { return n->rank; }
const int64_t *lathe_node_shape(const lathe_node *n) { return n->shape; }
int64_t lathe_node_numel(const lathe_node *n) { return n->numel; }
const char *lathe_node_name(const lathe_node *n) { return n->name; }
int lathe_node_num_inputs(const lathe_node *n) { return n->nin; }
lathe_node *lathe_node_input(const lathe_node *n, int i) {
    return i >= 0 && i < n->nin ? n->in[i] : NULL;
}

void lt_reach_outputs(const lathe_graph *g, unsigned char *reach) {
    size_t plen = strlen(LATHE_GRAD_PREFIX);
    for (int i = 0; i < g->nout; i++)
        reach[g->outputs[i].node->id] |= strncmp(g->outputs[i].name, LATHE_GRAD_PREFIX, plen) == 0 ? 2 : 1;
    for (int i = 0; i < g->nupd; i++) reach[g->updates[i].value->id] |= 1;
    for (int i = g->nnodes - 1; i >= 0; i--)
        for (int k = 0; k < g->nodes[i]->nin; k++) reach[g->nodes[i]->in[k]->id] |= reach[i];
}
