/* desc_builtins.c - the built-in functions and layers of the description
 * language: the table (desc.h's BUILTINS: name and parameters, with
 * defaults) and one handler per entry, called by desc.c once a call's
 * arguments are bound.  A handler converts its arguments (arg_*, which
 * name the argument and what it must be on a mistake) and calls the public
 * tracing API, whose builders check shapes; a layer also creates its
 * parameters, named after the prefix and the call's `as` name, as
 * torch.nn's state_dict names them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "desc.h"

const builtin_spec desc_builtins[B_COUNT] = {
#define X(e, name, params) {name, params},
    BUILTINS(X)
#undef X
};

int desc_find_builtin(const char *s, size_t len) {
    for (int i = 0; i < B_COUNT; i++)
        if (same(desc_builtins[i].name, strlen(desc_builtins[i].name), s, len)) return i;
    return -1;
}

/* Parameters of a built-in from its spec string. */
void desc_builtin_params(builtin b, call *c) {
    const char *s = desc_builtins[b].params;
    c->n = 0;
    while (*s) {
        pspec *ps = &c->ps[c->n++];
        *ps = (pspec){.s = s, .required = true};
        while (*s && *s != ' ' && *s != '=') s++;
        ps->len = (size_t)(s - ps->s);
        if (*s == '=') {
            ps->required = false;
            ps->deftext = ++s;
            while (*s && *s != ' ') s++;
            ps->deflen = (size_t)(s - ps->deftext);
            char buf[32];
            snprintf(buf, sizeof buf, "%.*s", (int)ps->deflen, ps->deftext);
            char *end;
            double d = strtod(buf, &end);
            if (!*end) ps->def = (value){.k = V_NUM, .num = d};
            else if (!strcmp(buf, "true") || !strcmp(buf, "false"))
                ps->def = (value){.k = V_NUM, .num = buf[0] == 't'};
            else
                for (int t = LATHE_F32; t <= LATHE_BOOL; t++)
                    if (!strcmp(buf, lathe_dtype_name((lathe_dtype)t))) ps->def = (value){.k = V_DTYPE, .dtype = (lathe_dtype)t};
        }
        while (*s == ' ') s++;
    }
}

/* ---- arguments ---------------------------------------------------------------------------- */

static bool bad_arg(parser *p, const call *c, int i, const char *want) {
    char k[128];
    desc_err(p, LATHE_ERR_ARG, c->v[i].at, "%.*s: argument '%.*s' must be %s, got %s", c->fnlen, c->fn,
             (int)c->ps[i].len, c->ps[i].s, want, desc_kind_str(&c->v[i], k, sizeof k));
    return false;
}

bool desc_arg_tensor(parser *p, const call *c, int i, lathe_node **out) {
    if (c->v[i].k != V_TENSOR) return bad_arg(p, c, i, "a tensor");
    *out = c->v[i].t;
    return true;
}

static bool arg_num(parser *p, const call *c, int i, double *out) {
    if (c->v[i].k != V_NUM) return bad_arg(p, c, i, "a number");
    *out = c->v[i].num;
    return true;
}

static bool arg_int(parser *p, const call *c, int i, int64_t *out) {
    if (c->v[i].k != V_NUM || !desc_integral(c->v[i].num, out)) return bad_arg(p, c, i, "an integer");
    return true;
}

/* An integer or a list of at most max integers. */
static bool arg_ints(parser *p, const call *c, int i, int max, int64_t *out, int *n) {
    const value *v = &c->v[i];
    char want[64];
    snprintf(want, sizeof want, "an integer or a list of at most %d integers", max);
    if (v->k == V_NUM) {
        *n = 1;
        return desc_integral(v->num, out) ? true : bad_arg(p, c, i, want);
    }
    if (v->k != V_LIST || v->n > max) return bad_arg(p, c, i, want);
    for (int k = 0; k < v->n; k++) {
        const value *e = &p->items[v->first + k];
        if (e->k != V_NUM || !desc_integral(e->num, &out[k])) return bad_arg(p, c, i, want);
    }
    *n = v->n;
    return true;
}

/* An integer for both sides, or a list [h, w]. */
static bool arg_pair(parser *p, const call *c, int i, int64_t out[2]) {
    int n;
    if (!arg_ints(p, c, i, 2, out, &n)) return false;
    if (n == 1) out[1] = out[0];
    else if (n != 2) return bad_arg(p, c, i, "an integer or a list [h, w]");
    return true;
}

static bool arg_bool(parser *p, const call *c, int i, bool *out) {
    double d = 0; /* always set when arg_num succeeds; GCC cannot tell across files */
    if (!arg_num(p, c, i, &d)) return false;
    *out = d != 0;
    return true;
}

/* "none", "mean" or "sum"; absent: mean. */
static bool arg_reduction(parser *p, const call *c, int i, lathe_reduction *out) {
    static const char *const names[] = {"none", "mean", "sum"};
    static const lathe_reduction r[] = {LATHE_REDUCE_NONE, LATHE_REDUCE_MEAN, LATHE_REDUCE_SUM};
    *out = LATHE_REDUCE_MEAN;
    if (!c->set[i]) return true;
    for (int k = 0; k < 3 && c->v[i].k == V_STR; k++)
        if (same(c->v[i].s, c->v[i].len, names[k], strlen(names[k]))) {
            *out = r[k];
            return true;
        }
    return bad_arg(p, c, i, "\"none\", \"mean\" or \"sum\"");
}

/* ---- the functions ------------------------------------------------------------------------ */

/* A parameter or buffer of the layer being called. */
static lathe_node *layer_leaf(parser *p, const call *c, const char *suffix, bool buffer, lathe_dtype t, int rank,
                              const int64_t *shape) {
    char name[NAME_CAP];
    if (!desc_leaf_name(p, c->as, c->aslen, c->asat, suffix, name)) return NULL;
    lathe_node *n; /* the layer called again under its name: its parameters are shared */
    if (!desc_shared_leaf(p, name, buffer, t, rank, shape, c->at, c->fn, c->fnlen, &n)) return NULL;
    if (n) return n;
    n = buffer ? lathe_buffer(p->g, name, t, rank, shape)
                           : lathe_param(p->g, name, t, rank, shape, lt_is_float(t));
    if (!n) desc_relocate(p, c->at);
    return n;
}

/* x of rank 4 exactly, or of rank at least 1 */
static bool need_rank(parser *p, const call *c, lathe_node *x, int rank, const char *layout) {
    char ts[96];
    if (rank == 4 ? lathe_node_rank(x) == 4 : lathe_node_rank(x) >= rank) return true;
    lathe_node_type_str(x, ts, sizeof ts);
    return desc_err(p, LATHE_ERR_SHAPE, c->v[0].at, "%.*s: x must be %s, got %s", c->fnlen, c->fn, layout, ts);
}

static bool call_conv2d(parser *p, const call *c, value *out) {
    lathe_node *x, *w, *b = NULL;
    int64_t cout, k[2], stride[2], pad[2], dil[2], groups;
    bool bias;
    if (!desc_arg_tensor(p, c, 0, &x) || !need_rank(p, c, x, 4, "(N, C, H, W)") || !arg_int(p, c, 1, &cout) ||
        !arg_pair(p, c, 2, k) || !arg_pair(p, c, 3, stride) || !arg_pair(p, c, 4, pad) || !arg_pair(p, c, 5, dil) ||
        !arg_int(p, c, 6, &groups) || !arg_bool(p, c, 7, &bias))
        return false;
    int64_t cin = lathe_node_shape(x)[1];
    if (groups < 1 || cin % groups || cout % groups)
        return desc_err(p, LATHE_ERR_ARG, c->v[6].at,
                        "conv2d: groups %lld must divide the %lld input and %lld output channels", (long long)groups,
                        (long long)cin, (long long)cout);
    lathe_dtype t = lathe_node_dtype(x);
    if (!(w = layer_leaf(p, c, "weight", false, t, LATHE_DIMS(cout, cin / groups, k[0], k[1])))) return false;
    if (bias && !(b = layer_leaf(p, c, "bias", false, t, LATHE_DIMS(cout)))) return false;
    return desc_built(p, c->at, lathe_conv2d_hw(p->g, x, w, b, stride, pad, dil, groups), out);
}

/* torch.nn.Conv1d: x (N, C, L), weight (out, C / groups, k), as a conv2d
 * over a plane of height 1. */
static bool call_conv1d(parser *p, const call *c, value *out) {
    lathe_node *x, *w, *b = NULL;
    int64_t cout, k, stride, pad, dil, groups;
    bool bias;
    if (!desc_arg_tensor(p, c, 0, &x)) return false;
    if (lathe_node_rank(x) != 3) {
        char ts[96];
        lathe_node_type_str(x, ts, sizeof ts);
        return desc_err(p, LATHE_ERR_SHAPE, c->v[0].at, "conv1d: x must be (N, C, L), got %s", ts);
    }
    if (!arg_int(p, c, 1, &cout) || !arg_int(p, c, 2, &k) || !arg_int(p, c, 3, &stride) || !arg_int(p, c, 4, &pad) ||
        !arg_int(p, c, 5, &dil) || !arg_int(p, c, 6, &groups) || !arg_bool(p, c, 7, &bias))
        return false;
    const int64_t *s = lathe_node_shape(x);
    int64_t cin = s[1];
    if (groups < 1 || cin % groups || cout % groups)
        return desc_err(p, LATHE_ERR_ARG, c->v[6].at,
                        "conv1d: groups %lld must divide the %lld input and %lld output channels", (long long)groups,
                        (long long)cin, (long long)cout);
    lathe_dtype t = lathe_node_dtype(x);
    lathe_graph *g = p->g;
    if (!(w = layer_leaf(p, c, "weight", false, t, LATHE_DIMS(cout, cin / groups, k)))) return false;
    if (bias && !(b = layer_leaf(p, c, "bias", false, t, LATHE_DIMS(cout)))) return false;
    int64_t st[2] = {1, stride}, pd[2] = {0, pad}, dl[2] = {1, dil};
    lathe_node *y = lathe_conv2d_hw(g, lathe_reshape(g, x, LATHE_DIMS(s[0], cin, 1, s[2])),
                                    lathe_reshape(g, w, LATHE_DIMS(cout, cin / groups, 1, k)), b, st, pd, dl, groups);
    if (!y) return desc_relocate(p, c->at);
    const int64_t *ys = lathe_node_shape(y);
    return desc_built(p, c->at, lathe_reshape(g, y, LATHE_DIMS(ys[0], ys[1], ys[3])), out);
}

static bool call_linear(parser *p, const call *c, value *out) {
    lathe_node *x, *w, *b = NULL;
    int64_t nout;
    bool bias;
    if (!desc_arg_tensor(p, c, 0, &x) || !need_rank(p, c, x, 1, "(..., in_features)") || !arg_int(p, c, 1, &nout) ||
        !arg_bool(p, c, 2, &bias))
        return false;
    int64_t nin = lathe_node_shape(x)[lathe_node_rank(x) - 1];
    lathe_dtype t = lathe_node_dtype(x);
    if (!(w = layer_leaf(p, c, "weight", false, t, LATHE_DIMS(nout, nin)))) return false;
    if (bias && !(b = layer_leaf(p, c, "bias", false, t, LATHE_DIMS(nout)))) return false;
    return desc_built(p, c->at, lathe_linear(p->g, x, w, b), out);
}

/* torch.nn.BatchNorm2d: weight, bias, running_mean, running_var and
 * num_batches_tracked, which training increments outside autodiff. */
static bool call_batch_norm(parser *p, const call *c, value *out) {
    lathe_node *x;
    double eps, momentum;
    if (!desc_arg_tensor(p, c, 0, &x) || !need_rank(p, c, x, 4, "(N, C, H, W)") || !arg_num(p, c, 1, &eps) ||
        !arg_num(p, c, 2, &momentum))
        return false;
    int64_t ch = lathe_node_shape(x)[1];
    lathe_dtype t = lathe_node_dtype(x);
    lathe_graph *g = p->g;
    char name[NAME_CAP];
    if (p->training && desc_leaf_name(p, c->as, c->aslen, c->asat, "running_mean", name) && lathe_graph_find(g, name))
        return desc_err(p, LATHE_ERR_NAME, c->at,
                        "batch_norm: '%.*s' is already called; training would update its running statistics "
                        "twice in one step, so each call needs its own name",
                        (int)c->aslen, c->as);
    lathe_node *w = layer_leaf(p, c, "weight", false, t, LATHE_DIMS(ch));
    lathe_node *b = w ? layer_leaf(p, c, "bias", false, t, LATHE_DIMS(ch)) : NULL;
    lathe_node *rm = b ? layer_leaf(p, c, "running_mean", true, t, LATHE_DIMS(ch)) : NULL;
    lathe_node *rv = rm ? layer_leaf(p, c, "running_var", true, t, LATHE_DIMS(ch)) : NULL;
    lathe_node *nbt = rv ? layer_leaf(p, c, "num_batches_tracked", true, LATHE_I64, 0, NULL) : NULL;
    if (!nbt) return false;
    if (p->training) {
        lathe_no_grad_begin(g);
        lathe_update(g, nbt, lathe_add(g, nbt, lathe_scalar(g, LATHE_I64, 1)));
        lathe_no_grad_end(g);
    }
    return desc_built(p, c->at, lathe_batch_norm2d(g, x, w, b, rm, rv, p->training, momentum, eps), out);
}

/* torch.nn.Embedding: weight (num_embeddings, embedding_dim) of dtype,
 * normal(0, 1) by default (lathe_leaf_init_of); x holds token ids, i64 of
 * any shape, checked against num_embeddings on every run. */
static bool call_embedding(parser *p, const call *c, value *out) {
    lathe_node *x, *w;
    int64_t num, dim;
    if (!desc_arg_tensor(p, c, 0, &x) || !arg_int(p, c, 1, &num) || !arg_int(p, c, 2, &dim)) return false;
    if (lathe_node_dtype(x) != LATHE_I64) {
        char ts[96];
        lathe_node_type_str(x, ts, sizeof ts);
        return desc_err(p, LATHE_ERR_DTYPE, c->v[0].at, "embedding: x must hold i64 token ids, got %s", ts);
    }
    if (num < 1) return bad_arg(p, c, 1, "a positive integer");
    if (dim < 1) return bad_arg(p, c, 2, "a positive integer");
    if (c->v[3].k != V_DTYPE || !lt_is_float(c->v[3].dtype)) return bad_arg(p, c, 3, "f32 or f64");
    if (!(w = layer_leaf(p, c, "weight", false, c->v[3].dtype, LATHE_DIMS(num, dim)))) return false;
    return desc_built(p, c->at, lathe_index_select(p->g, w, 0, x), out);
}

/* torch.nn.LayerNorm: weight (ones) and bias (zeros) of shape
 * normalized_shape, an integer or a list of x's trailing dims. */
static bool call_layer_norm(parser *p, const call *c, value *out) {
    lathe_node *x, *w = NULL, *b = NULL;
    int64_t ns[LATHE_MAX_RANK];
    int k;
    double eps;
    bool affine, bias;
    if (!desc_arg_tensor(p, c, 0, &x) || !arg_ints(p, c, 1, LATHE_MAX_RANK, ns, &k) || !arg_num(p, c, 2, &eps) ||
        !arg_bool(p, c, 3, &affine) || !arg_bool(p, c, 4, &bias))
        return false;
    if (k == 0) return bad_arg(p, c, 1, "an integer or a non-empty list of integers");
    int r = lathe_node_rank(x);
    if (k > r || memcmp(ns, lathe_node_shape(x) + r - k, sizeof *ns * (size_t)k)) {
        char ts[96], want[96];
        lathe_node_type_str(x, ts, sizeof ts);
        lt_type_str(LATHE_I64, k, ns, want, sizeof want);
        return desc_err(p, LATHE_ERR_SHAPE, c->v[1].at, "layer_norm: normalized_shape %s is not the last %d dims of x %s",
                        strchr(want, '['), k, ts);
    }
    lathe_dtype t = lathe_node_dtype(x);
    if (affine && !(w = layer_leaf(p, c, "weight", false, t, k, ns))) return false;
    if (affine && bias && !(b = layer_leaf(p, c, "bias", false, t, k, ns))) return false;
    return desc_built(p, c->at, lathe_layer_norm(p->g, x, k, ns, w, b, eps), out);
}

/* sum, mean, max: axes (an integer or a list), or axis; neither: every axis. */
static bool call_reduce(parser *p, builtin b, const call *c, value *out) {
    lathe_node *x;
    int64_t axes[LATHE_MAX_RANK];
    int n = 0;
    bool keep;
    if (!desc_arg_tensor(p, c, 0, &x) || !arg_bool(p, c, 2, &keep)) return false;
    if (c->set[1] && c->set[3]) return desc_err(p, LATHE_ERR_ARG, c->v[3].at, "%s: give axes or axis, not both", c->fn);
    int k = c->set[3] ? 3 : 1;
    if (c->set[k] && !arg_ints(p, c, k, LATHE_MAX_RANK, axes, &n)) return false;
    if (c->set[k] && n == 0) return bad_arg(p, c, k, "a non-empty list of axes");
    lathe_node *r = b == B_SUM    ? lathe_sum(p->g, x, n, axes, keep)
                    : b == B_MEAN ? lathe_mean(p->g, x, n, axes, keep)
                    : b == B_MIN  ? lathe_min(p->g, x, n, axes, keep)
                                  : lathe_max(p->g, x, n, axes, keep);
    return desc_built(p, c->at, r, out);
}

static bool call_pool(parser *p, builtin b, const call *c, value *out) {
    lathe_node *x;
    int64_t k[2], s[2], pad[2];
    bool cip = true;
    if (!desc_arg_tensor(p, c, 0, &x) || !arg_pair(p, c, 1, k) || !arg_pair(p, c, 3, pad)) return false;
    if (!c->set[2]) memcpy(s, k, sizeof s);
    else if (!arg_pair(p, c, 2, s)) return false;
    if (b == B_AVG_POOL2D && !arg_bool(p, c, 4, &cip)) return false;
    lathe_node *r =
        b == B_MAX_POOL2D ? lathe_max_pool2d_hw(p->g, x, k, s, pad) : lathe_avg_pool2d_hw(p->g, x, k, s, pad, cip);
    return desc_built(p, c->at, r, out);
}

/* A constant of type t and shape from v: a number (every element) or a list
 * of numel numbers (integers for i64).  what names v in messages. */
bool desc_make_const(parser *p, const value *v, lathe_dtype t, int rank, const int64_t *shape, const char *what,
                     lathe_node **out) {
    char k[128];
    int64_t numel = lt_numel(rank, shape);
    if (v->k != V_NUM && !(v->k == V_LIST && v->n == numel))
        return desc_err(p, LATHE_ERR_SHAPE, v->at, "%s must be a number or a list of %lld numbers, got %s", what,
                        (long long)numel, desc_kind_str(v, k, sizeof k));
    size_t es = lathe_dtype_size(t);
    unsigned char *data = malloc((size_t)(numel > 0 ? numel : 1) * es);
    if (!data) return desc_oom(p);
    for (int64_t i = 0; i < numel; i++) {
        const value *e = v->k == V_NUM ? v : &p->items[v->first + i];
        unsigned char *d = data + (size_t)i * es;
        int64_t q = 0;
        if (e->k != V_NUM || (t == LATHE_I64 && !desc_integral(e->num, &q))) {
            free(data);
            return desc_err(p, LATHE_ERR_ARG, e->at, "%s: expected %s, got %s", what,
                            t == LATHE_I64 ? "integers" : "numbers", desc_kind_str(e, k, sizeof k));
        }
        if (t == LATHE_F32) {
            float f = (float)e->num;
            memcpy(d, &f, es);
        } else if (t == LATHE_F64) {
            memcpy(d, &e->num, es);
        } else if (t == LATHE_I64) {
            memcpy(d, &q, es);
        } else {
            *d = e->num != 0;
        }
    }
    desc_stamp(p, v->at);
    *out = lathe_const(p->g, t, rank, shape, data);
    free(data);
    return *out ? true : desc_relocate(p, v->at);
}

/* ---- sequence-model builders: constants made at trace time ------------------------------- */

/* arange's values are a constant in the graph: at most this many.  A causal
 * mask's T at most this, so that T * T stays within LT_MAX_NUMEL. */
enum { MAX_ARANGE = 1 << 24, MAX_CAUSAL = 1 << 24 };

/* torch.arange: arange(end) or arange(start, end, step=1), ceil((end -
 * start) / step) values start + i * step; integers for i64. */
static bool call_arange(parser *p, const call *c, value *out) {
    double v[3];           /* start, end, step */
    const value *src[3];   /* where each came from */
    if (!arg_num(p, c, 0, &v[0]) || (c->set[1] && !arg_num(p, c, 1, &v[1])) || !arg_num(p, c, 2, &v[2])) return false;
    src[0] = &c->v[0], src[1] = &c->v[1], src[2] = &c->v[2];
    if (!c->set[1]) v[1] = v[0], v[0] = 0, src[1] = src[0]; /* arange(end) */
    if (c->v[3].k != V_DTYPE) return bad_arg(p, c, 3, "a dtype (f32, f64 or i64)");
    lathe_dtype t = c->v[3].dtype;
    if (t == LATHE_BOOL)
        return desc_err(p, LATHE_ERR_DTYPE, c->v[3].at, "arange: dtype must be f32, f64 or i64, got bool");
    int64_t iv[3] = {0, 0, 0};
    for (int i = 0; i < 3 && t == LATHE_I64; i++)
        if ((i > 0 || c->set[1]) && !desc_integral(v[i], &iv[i]))
            return desc_err(p, LATHE_ERR_ARG, src[i]->at,
                            "arange: %g is not an integer, as dtype i64 needs (pass dtype=f32 for fractions)", v[i]);
    if (v[2] == 0) return desc_err(p, LATHE_ERR_ARG, c->v[2].at, "arange: step must not be 0");
    double count = ceil((v[1] - v[0]) / v[2]);
    if (count < 0)
        return desc_err(p, LATHE_ERR_ARG, c->at, "arange: step %g goes away from end %g (start %g)", v[2], v[1], v[0]);
    if (!(count <= MAX_ARANGE))
        return desc_err(p, LATHE_ERR_ARG, c->at, "arange: %.0f values are more than a constant may hold (%d)", count,
                        MAX_ARANGE);
    int64_t n = (int64_t)count;
    size_t es = lathe_dtype_size(t);
    unsigned char *data = malloc((size_t)(n ? n : 1) * es);
    if (!data) return desc_oom(p);
    for (int64_t i = 0; i < n; i++) {
        double x = v[0] + (double)i * v[2];
        if (t == LATHE_F32) ((float *)data)[i] = (float)x;
        else if (t == LATHE_F64) ((double *)data)[i] = x;
        else ((int64_t *)data)[i] = (int64_t)v[0] + i * (int64_t)v[2];
    }
    lathe_node *r = lathe_const(p->g, t, 1, &n, data);
    free(data);
    return desc_built(p, c->at, r, out);
}

/* zeros, ones, full: the value broadcast to the shape (an integer or a
 * list; [] for rank 0), so nothing of that size is stored. */
static bool call_fill(parser *p, builtin b, const call *c, value *out) {
    int64_t shape[LATHE_MAX_RANK];
    int rank, di = b == B_FULL ? 2 : 1;
    double v = b == B_ONES ? 1 : 0;
    if (!arg_ints(p, c, 0, LATHE_MAX_RANK, shape, &rank) || (b == B_FULL && !arg_num(p, c, 1, &v))) return false;
    for (int d = 0; d < rank; d++)
        if (shape[d] < 0)
            return desc_err(p, LATHE_ERR_SHAPE, c->v[0].at, "%s: the shape's dim %d is %lld; dims must be >= 0",
                            desc_builtins[b].name, d, (long long)shape[d]);
    if (c->v[di].k != V_DTYPE) return bad_arg(p, c, di, "a dtype (f32, f64, i64 or bool)");
    lathe_dtype t = c->v[di].dtype;
    int64_t iv;
    if (t == LATHE_I64 && !desc_integral(v, &iv))
        return desc_err(p, LATHE_ERR_ARG, c->v[1].at, "full: value %g is not an integer, as dtype i64 needs", v);
    lathe_node *r = lathe_scalar(p->g, t, v);
    if (rank > 0) r = lathe_broadcast_to(p->g, r, rank, shape);
    return desc_built(p, c->at, r, out);
}

/* 0, 1, ..., n - 1 as an i64 constant of shape (n, 1), or (1, n) when across. */
static lathe_node *iota(parser *p, int64_t n, bool across) {
    int64_t *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    if (!v) return desc_oom(p), NULL;
    for (int64_t i = 0; i < n; i++) v[i] = i;
    lathe_node *r = lathe_const(p->g, LATHE_I64, LATHE_DIMS(across ? 1 : n, across ? n : 1), v);
    free(v);
    return r;
}

/* Bool (rows, cols), element (i, j) set where j - i compares with diagonal
 * as op says (LT_OP_LE: tril keeps, LT_OP_GE: triu keeps, LT_OP_GT: above
 * it): two aranges compared, which fusion computes in place of a table. */
static lathe_node *diagonal_mask(parser *p, int64_t rows, int64_t cols, lt_op op, int64_t diagonal) {
    lathe_graph *g = p->g;
    lathe_node *i = iota(p, rows, false), *j = i ? iota(p, cols, true) : NULL;
    if (!j) return NULL;
    lathe_node *d = lathe_sub(g, j, i), *k = lathe_scalar(g, LATHE_I64, (double)diagonal);
    return op == LT_OP_LE ? lathe_le(g, d, k) : op == LT_OP_GE ? lathe_ge(g, d, k) : lathe_gt(g, d, k);
}

/* torch.tril / torch.triu on the last two dims: where(mask, x, 0). */
static bool call_tri(parser *p, builtin b, const call *c, value *out) {
    lathe_node *x;
    int64_t diag;
    if (!desc_arg_tensor(p, c, 0, &x) || !arg_int(p, c, 1, &diag)) return false;
    int r = lathe_node_rank(x);
    if (r < 2) {
        char ts[96];
        lathe_node_type_str(x, ts, sizeof ts);
        return desc_err(p, LATHE_ERR_SHAPE, c->v[0].at, "%s: x must have rank >= 2 (its last two dims are the matrix), got %s",
                        desc_builtins[b].name, ts);
    }
    const int64_t *sh = lathe_node_shape(x);
    lathe_node *keep = diagonal_mask(p, sh[r - 2], sh[r - 1], b == B_TRIL ? LT_OP_LE : LT_OP_GE, diag);
    if (!keep) return lathe_graph_status(p->g) == LATHE_ERR_NOMEM ? false : desc_relocate(p, c->at);
    return desc_built(p, c->at, lathe_where(p->g, keep, x, lathe_scalar(p->g, lathe_node_dtype(x), 0)), out);
}

/* Bool (T, T), true above the diagonal: what causal attention masks out. */
static bool call_causal_mask(parser *p, const call *c, value *out) {
    int64_t T;
    if (!arg_int(p, c, 0, &T)) return false;
    if (T < 0 || T > MAX_CAUSAL)
        return desc_err(p, LATHE_ERR_ARG, c->v[0].at, "causal_mask: T must be 0 to %d, got %lld", MAX_CAUSAL, (long long)T);
    lathe_node *mask = diagonal_mask(p, T, T, LT_OP_GT, 0);
    if (!mask) return lathe_graph_status(p->g) == LATHE_ERR_NOMEM ? false : desc_relocate(p, c->at);
    return desc_built(p, c->at, mask, out);
}

/* Whether shapes a and b broadcast together (NumPy's rule). */
static bool broadcasts(int ra, const int64_t *a, int rb, const int64_t *b) {
    for (int d = 1; d <= ra && d <= rb; d++)
        if (a[ra - d] != b[rb - d] && a[ra - d] != 1 && b[rb - d] != 1) return false;
    return true;
}

/* torch.masked_fill: where(mask, value, x), mask and x broadcast together. */
static bool call_masked_fill(parser *p, const call *c, value *out) {
    lathe_node *x, *mask, *v;
    char ts[96], ms[96], k[128];
    if (!desc_arg_tensor(p, c, 0, &x) || !desc_arg_tensor(p, c, 1, &mask)) return false;
    lathe_node_type_str(x, ts, sizeof ts);
    lathe_node_type_str(mask, ms, sizeof ms);
    if (lathe_node_dtype(mask) != LATHE_BOOL)
        return desc_err(p, LATHE_ERR_DTYPE, c->v[1].at, "masked_fill: mask must be bool, got %s (a comparison makes one)", ms);
    if (!broadcasts(lathe_node_rank(x), lathe_node_shape(x), lathe_node_rank(mask), lathe_node_shape(mask)))
        return desc_err(p, LATHE_ERR_SHAPE, c->v[1].at, "masked_fill: mask %s does not broadcast with x %s", ms, ts);
    const value *val = &c->v[2];
    int64_t iv;
    if (val->k == V_NUM) {
        if (lathe_node_dtype(x) == LATHE_I64 && !desc_integral(val->num, &iv))
            return desc_err(p, LATHE_ERR_ARG, val->at, "masked_fill: value %g is not an integer, as x %s needs", val->num, ts);
        v = lathe_scalar(p->g, lathe_node_dtype(x), val->num);
    } else if (val->k == V_TENSOR && lathe_node_rank(val->t) == 0) {
        v = val->t;
        if (lathe_node_dtype(v) != lathe_node_dtype(x)) {
            lathe_node_type_str(v, k, sizeof k);
            return desc_err(p, LATHE_ERR_DTYPE, val->at, "masked_fill: value %s must have the dtype of x %s", k, ts);
        }
    } else {
        return desc_err(p, LATHE_ERR_ARG, val->at, "masked_fill: value must be a number or a rank-0 tensor, got %s",
                        desc_kind_str(val, k, sizeof k));
    }
    return desc_built(p, c->at, lathe_where(p->g, mask, v, x), out);
}

/* An elementwise function of a number is a number: sqrt(d) for a scale. */
static bool number_fn(parser *p, builtin b, const call *c, value *out) {
    double x = c->v[0].num, r;
    switch (b) {
    case B_RELU: r = x > 0 ? x : 0; break;
    case B_SIGMOID: r = 1 / (1 + exp(-x)); break;
    case B_TANH: r = tanh(x); break;
    case B_EXP: r = exp(x); break;
    case B_LOG: r = log(x); break;
    case B_SQRT: r = sqrt(x); break;
    case B_RSQRT: r = 1 / sqrt(x); break;
    case B_ABS: r = fabs(x); break;
    case B_ERF: r = erf(x); break;
    case B_SILU: r = x / (1 + exp(-x)); break;
    default: r = -x; break;
    }
    if (isnan(r) || (!isfinite(r) && isfinite(x))) /* an infinity may give one; nothing finite does */
        return desc_err(p, LATHE_ERR_ARG, c->at, "%s(%g) is not %s number", desc_builtins[b].name, x,
                        isnan(r) ? "a" : "a finite");
    *out = (value){.k = V_NUM, .num = r, .at = c->at};
    return true;
}

bool desc_call_loss(parser *p, builtin b, const call *c, bool per_element, value *out, lathe_node **weight) {
    lathe_graph *g = p->g;
    lathe_node *x, *y, *r;
    lathe_reduction red;
    int64_t ignore = LATHE_IGNORE_INDEX;
    double eps = 0;
    if (weight) *weight = NULL;
    if (!desc_arg_tensor(p, c, 0, &x) || !desc_arg_tensor(p, c, 1, &y) || !arg_reduction(p, c, 2, &red) ||
        (b != B_MSE_LOSS && !arg_int(p, c, 3, &ignore)) || (b == B_CROSS_ENTROPY && !arg_num(p, c, 4, &eps)))
        return false;
    if (per_element) red = LATHE_REDUCE_NONE;
    desc_stamp(p, c->at);
    r = b == B_CROSS_ENTROPY ? lathe_cross_entropy_ex(g, x, y, red, ignore, eps)
        : b == B_NLL_LOSS    ? lathe_nll_loss_ex(g, x, y, red, ignore)
                             : lathe_mse_loss(g, x, y, red);
    if (r && weight && per_element && b != B_MSE_LOSS)
        *weight = lathe_cast(g, lathe_ne(g, y, lathe_scalar(g, LATHE_I64, (double)ignore)), lathe_node_dtype(x));
    return desc_built(p, c->at, r, out);
}

/* Run built-in b on the bound arguments. */
bool desc_call_builtin(parser *p, builtin b, const call *c, value *out) {
    lathe_graph *g = p->g;
    lathe_node *x = NULL, *y = NULL, *r = NULL;
    int64_t i1, i2, i3, ints[LATHE_MAX_RANK], pair[2];
    int n;
    bool keep;
    desc_stamp(p, c->at);
    switch (b) {
    case B_RELU:
    case B_SIGMOID:
    case B_TANH:
    case B_EXP:
    case B_LOG:
    case B_SQRT:
    case B_RSQRT:
    case B_ABS:
    case B_ERF:
    case B_SILU:
    case B_NEG: {
        static lathe_node *(*const fn[])(lathe_graph *, lathe_node *) = {
            lathe_relu, lathe_sigmoid, lathe_tanh, lathe_exp, lathe_log, lathe_sqrt, lathe_rsqrt, lathe_abs, lathe_neg,
            lathe_erf, lathe_silu};
        if (c->v[0].k == V_NUM) return number_fn(p, b, c, out);
        if (!desc_arg_tensor(p, c, 0, &x)) return false;
        return desc_built(p, c->at, fn[b - B_RELU](g, x), out);
    }
    case B_GELU: {
        bool tanh_form = c->set[1] && c->v[1].k == V_STR && same(c->v[1].s, c->v[1].len, "tanh", 4);
        if (c->set[1] && !tanh_form && !(c->v[1].k == V_STR && same(c->v[1].s, c->v[1].len, "none", 4)))
            return bad_arg(p, c, 1, "\"none\" or \"tanh\"");
        if (!desc_arg_tensor(p, c, 0, &x)) return false;
        return desc_built(p, c->at, lathe_gelu(g, x, tanh_form), out);
    }
    case B_SOFTPLUS: {
        double beta, th;
        if (!desc_arg_tensor(p, c, 0, &x) || !arg_num(p, c, 1, &beta) || !arg_num(p, c, 2, &th)) return false;
        return desc_built(p, c->at, lathe_softplus(g, x, beta, th), out);
    }
    case B_LEAKY_RELU: {
        double slope;
        if (!desc_arg_tensor(p, c, 0, &x) || !arg_num(p, c, 1, &slope)) return false;
        return desc_built(p, c->at, lathe_leaky_relu(g, x, slope), out);
    }
    case B_CLAMP: {
        double lo = -INFINITY, hi = INFINITY;
        if (!desc_arg_tensor(p, c, 0, &x) || (c->set[1] && !arg_num(p, c, 1, &lo)) ||
            (c->set[2] && !arg_num(p, c, 2, &hi)))
            return false;
        if (!c->set[1] && !c->set[2]) return desc_err(p, LATHE_ERR_ARG, c->at, "clamp: give min, max or both");
        return desc_built(p, c->at, lathe_clamp(g, x, lo, hi), out);
    }
    case B_SOFTMAX:
    case B_LOG_SOFTMAX:
        if (!desc_arg_tensor(p, c, 0, &x) || !arg_int(p, c, 1, &i1)) return false;
        return desc_built(p, c->at, b == B_SOFTMAX ? lathe_softmax(g, x, i1) : lathe_log_softmax(g, x, i1), out);
    case B_MAX_POOL2D:
    case B_AVG_POOL2D: return call_pool(p, b, c, out);
    case B_ADAPTIVE_AVG_POOL2D:
        if (!desc_arg_tensor(p, c, 0, &x) || !arg_pair(p, c, 1, pair)) return false;
        if (c->set[2] && c->v[1].k == V_LIST) return bad_arg(p, c, 2, "absent when h is a list [h, w]");
        if (c->set[2] && !arg_int(p, c, 2, &pair[1])) return false;
        return desc_built(p, c->at, lathe_adaptive_avg_pool2d(g, x, pair[0], pair[1]), out);
    case B_FLATTEN:
        if (!desc_arg_tensor(p, c, 0, &x) || !arg_int(p, c, 1, &i1) || !arg_int(p, c, 2, &i2)) return false;
        return desc_built(p, c->at, lathe_flatten(g, x, i1, i2), out);
    case B_RESHAPE:
    case B_PERMUTE:
    case B_BROADCAST_TO:
        if (!desc_arg_tensor(p, c, 0, &x) || !arg_ints(p, c, 1, LATHE_MAX_RANK, ints, &n)) return false;
        r = b == B_RESHAPE   ? lathe_reshape(g, x, n, ints)
            : b == B_PERMUTE ? lathe_permute(g, x, n, ints)
                             : lathe_broadcast_to(g, x, n, ints);
        return desc_built(p, c->at, r, out);
    case B_TRANSPOSE:
        if (!desc_arg_tensor(p, c, 0, &x) || !arg_int(p, c, 1, &i1) || !arg_int(p, c, 2, &i2)) return false;
        return desc_built(p, c->at, lathe_transpose(g, x, i1, i2), out);
    case B_SLICE:
        i3 = INT64_MAX;
        if (!desc_arg_tensor(p, c, 0, &x) || !arg_int(p, c, 1, &i1) || !arg_int(p, c, 2, &i2) ||
            (c->set[3] && !arg_int(p, c, 3, &i3)) || !arg_int(p, c, 4, &ints[0]))
            return false;
        return desc_built(p, c->at, lathe_slice(g, x, i1, i2, i3, ints[0]), out);
    case B_CONCAT: {
        const value *v = &c->v[0];
        if (v->k != V_LIST || v->n == 0) return bad_arg(p, c, 0, "a non-empty list of tensors");
        if (!arg_int(p, c, 1, &i1)) return false;
        lathe_node **xs = malloc((size_t)v->n * sizeof *xs);
        if (!xs) return desc_oom(p);
        for (int i = 0; i < v->n; i++) {
            xs[i] = p->items[v->first + i].t;
            if (p->items[v->first + i].k != V_TENSOR) {
                free(xs);
                return bad_arg(p, c, 0, "a non-empty list of tensors");
            }
        }
        r = lathe_concat(g, v->n, xs, i1);
        free(xs);
        return desc_built(p, c->at, r, out);
    }
    case B_SUM:
    case B_MEAN:
    case B_MIN:
    case B_MAX: return call_reduce(p, b, c, out);
    case B_ARGMAX:
        if (!desc_arg_tensor(p, c, 0, &x) || !arg_int(p, c, 1, &i1) || !arg_bool(p, c, 2, &keep)) return false;
        return desc_built(p, c->at, lathe_argmax(g, x, i1, keep), out);
    case B_MATMUL:
        if (!desc_arg_tensor(p, c, 0, &x) || !desc_arg_tensor(p, c, 1, &y)) return false;
        return desc_built(p, c->at, lathe_matmul(g, x, y), out);
    case B_MAXIMUM:
    case B_MINIMUM:
        if (c->v[0].k == V_NUM && c->v[1].k == V_NUM) {
            double a = c->v[0].num, d = c->v[1].num;
            *out = (value){.k = V_NUM, .num = (b == B_MAXIMUM) == (a > d) ? a : d, .at = c->at};
            return true;
        }
        if (!desc_operands(p, c->at, desc_builtins[b].name, &c->v[0], &c->v[1], &x, &y)) return false;
        return desc_built(p, c->at, b == B_MAXIMUM ? lathe_maximum(g, x, y) : lathe_minimum(g, x, y), out);
    case B_POW:
        *out = c->v[0];
        return desc_binop(p, P_POW, c->at, out, &c->v[1]);
    case B_WHERE:
        if (!desc_arg_tensor(p, c, 0, &r) || !desc_operands(p, c->at, "where", &c->v[1], &c->v[2], &x, &y))
            return false;
        return desc_built(p, c->at, lathe_where(g, r, x, y), out);
    case B_CAST:
        if (!desc_arg_tensor(p, c, 0, &x)) return false;
        if (c->v[1].k != V_DTYPE) return bad_arg(p, c, 1, "a dtype (f32, f64, i64 or bool)");
        return desc_built(p, c->at, lathe_cast(g, x, c->v[1].dtype), out);
    case B_TENSOR:
        if (c->v[1].k != V_DTYPE) return bad_arg(p, c, 1, "a dtype (f32, f64, i64 or bool)");
        ints[0] = c->v[0].k == V_LIST ? c->v[0].n : 1;
        if (!desc_make_const(p, &c->v[0], c->v[1].dtype, c->v[0].k == V_LIST, ints, "tensor: the values", &r))
            return false;
        return desc_built(p, c->at, r, out);
    case B_CROSS_ENTROPY:
    case B_NLL_LOSS:
    case B_MSE_LOSS: return desc_call_loss(p, b, c, false, out, NULL);
    case B_DROPOUT: { /* off in evaluation, as nn.Dropout in eval() */
        double pr;
        if (!desc_arg_tensor(p, c, 0, &x) || !arg_num(p, c, 1, &pr)) return false;
        if (!(pr >= 0 && pr <= 1)) return bad_arg(p, c, 1, "a probability in [0, 1]");
        if (!p->training || pr == 0) {
            *out = c->v[0];
            out->at = c->at;
            return true;
        }
        return desc_built(p, c->at, lathe_dropout(g, x, pr), out);
    }
    case B_CHANNELS:
    case B_SHAPE:
    case B_RANK: {
        if (!desc_arg_tensor(p, c, 0, &x)) return false;
        int rank = lathe_node_rank(x);
        i1 = b == B_CHANNELS ? 1 : 0;
        if (b == B_SHAPE && !arg_int(p, c, 1, &i1)) return false;
        if (i1 < 0) i1 += rank;
        if (b != B_RANK && (i1 < 0 || i1 >= rank)) {
            char ts[96];
            lathe_node_type_str(x, ts, sizeof ts);
            return desc_err(p, LATHE_ERR_ARG, c->at, "%s: %s has no axis %lld", desc_builtins[b].name, ts,
                            (long long)(b == B_CHANNELS ? 1 : c->v[1].num));
        }
        *out = (value){.k = V_NUM, .num = b == B_RANK ? rank : (double)lathe_node_shape(x)[i1], .at = c->at};
        return true;
    }
    case B_INDEX_SELECT:
        if (!desc_arg_tensor(p, c, 0, &x) || !arg_int(p, c, 1, &i1) || !desc_arg_tensor(p, c, 2, &y)) return false;
        return desc_built(p, c->at, lathe_index_select(g, x, i1, y), out);
    case B_ARANGE: return call_arange(p, c, out);
    case B_ZEROS:
    case B_ONES:
    case B_FULL: return call_fill(p, b, c, out);
    case B_TRIL:
    case B_TRIU: return call_tri(p, b, c, out);
    case B_CAUSAL_MASK: return call_causal_mask(p, c, out);
    case B_MASKED_FILL: return call_masked_fill(p, c, out);
    case B_CONV2D: return call_conv2d(p, c, out);
    case B_CONV1D: return call_conv1d(p, c, out);
    case B_LINEAR: return call_linear(p, c, out);
    case B_BATCH_NORM: return call_batch_norm(p, c, out);
    case B_EMBEDDING: return call_embedding(p, c, out);
    case B_LAYER_NORM: return call_layer_norm(p, c, out);
    case B_COUNT: break;
    }
    return desc_err(p, LATHE_ERR_ARG, c->at, "internal: built-in %d has no implementation", (int)b);
}
