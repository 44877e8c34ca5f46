/* program.c - compiled programs: what the runtime runs, made from the
 * pipeline's products (pipeline.c), and the calls that set, run and read
 * them.
 *
 * lt_compile runs the pipeline up to the backend's last stage, then makes
 * the program in three steps:
 *
 *     place      where every named tensor lives in the arena: the JIT's
 *                memory plan (plus a staging area for simultaneous buffer
 *                updates), or the evaluator's tensors one after another
 *     table      one row per named tensor (the runtime's lathe_rt_tensor):
 *                name, kind, dtype and shape from the caller's graph, the
 *                initializer the IR decides (lathe_leaf_init_of), the offset
 *                just placed, and for a parameter the offset of its gradient
 *                output (lathe_grad_output)
 *     arena      allocated, with the graph's constants copied in
 *
 * The same lathe_program answers for the reference evaluator
 * (LATHE_BACKEND_EVAL), so any user can compare the two. */
#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "lathe_autodiff.h"
#include "program.h"

static_assert(LATHE_RT_F32 == (int)LATHE_F32 && LATHE_RT_F64 == (int)LATHE_F64 && LATHE_RT_I64 == (int)LATHE_I64 &&
                  LATHE_RT_BOOL == (int)LATHE_BOOL,
              "the runtime's dtypes are numbered as the IR's");
static_assert((int)LATHE_RT_MAX_RANK == (int)LATHE_MAX_RANK, "the runtime's tensor table holds the IR's shapes");

static lathe_status perr(lathe_program *p, lathe_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static lathe_status perr(lathe_program *p, lathe_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof p->err, fmt, ap);
    va_end(ap);
    return st;
}

static int64_t align64(int64_t n) { return (n + 63) & ~(int64_t)63; }

static const lathe_node *find_leaf(const lathe_graph *g, const char *name) {
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i]->name && strcmp(g->nodes[i]->name, name) == 0) return g->nodes[i];
    return NULL;
}

/* The rows of the table: the caller's named leaves (constants aside) in node
 * order, the inputs that the compiler added (a data-parallel program's
 * LATHE_RANK_NAME), then its outputs.  Row i's node goes to tnode[i]; how
 * many there are goes to p->ntensors. */
static lathe_status list_tensors(lathe_program *p) {
    const lathe_graph *g = p->g, *k = p->b.f ? p->b.f->g : NULL;
    int extra = k ? k->nnodes : 0;
    p->tensors = calloc((size_t)(g->nnodes + extra + g->nout + 1), sizeof *p->tensors);
    p->tnode = calloc((size_t)(g->nnodes + extra + g->nout + 1), sizeof *p->tnode);
    if (!p->tensors || !p->tnode) return perr(p, LATHE_ERR_NOMEM, "out of memory");
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i]->name && g->nodes[i]->op != LT_OP_CONST) p->tnode[p->ntensors++] = g->nodes[i];
    for (int i = 0; i < extra; i++)
        if (k->nodes[i]->op == LT_OP_INPUT && k->nodes[i]->name && !find_leaf(g, k->nodes[i]->name))
            p->tnode[p->ntensors++] = k->nodes[i];
    for (int i = 0; i < g->nout; i++) p->tnode[p->ntensors++] = g->outputs[i].node;
    return LATHE_OK;
}

/* The JIT's (and objects') placement: each row where the plan put its
 * buffer.  Updates are simultaneous: after the kernels, every new value
 * (and every output that is itself an updated buffer) is first copied to a
 * staging area after the planned arena, then every buffer takes its value
 * from there, so no update reads another's result.  The copies go to
 * p->copies; the executor's per-kernel state goes last; the arena's size to
 * p->rt.arena_size. */
static lathe_status place_planned(lathe_program *p) {
    const lt_fused *f = p->b.f;
    const lathe_graph *g = f->g;
    int nleaves = p->ntensors - g->nout;
    p->copies = calloc((size_t)(2 * g->nupd + g->nout + 1), sizeof *p->copies);
    if (!p->copies) return perr(p, LATHE_ERR_NOMEM, "out of memory");
    int nc = 0;
    int64_t stage = align64(f->arena_size);
    for (int i = 0; i < g->nupd; i++) {
        int sb = f->buf_of[g->updates[i].value->id];
        p->copies[nc++] = (lathe_rt_copy){f->plan[sb].offset, stage, f->plan[sb].size};
        stage += align64(f->plan[sb].size);
    }
    for (int i = 0; i < nleaves; i++) {
        const lathe_node *n = find_leaf(g, p->tnode[i]->name);
        LT_ASSERT(n && f->buf_of[n->id] >= 0);
        p->tensors[i].offset = f->plan[f->buf_of[n->id]].offset;
    }
    for (int i = 0; i < g->nout; i++) { /* the simplified graph keeps the outputs in order */
        const lathe_node *n = g->outputs[i].node;
        int sb = f->buf_of[n->id];
        p->tensors[nleaves + i].offset = f->plan[sb].offset;
        for (int u = 0; u < g->nupd; u++)
            if (g->updates[u].buffer == n) { /* an updated buffer as an output: its value from the run */
                p->tensors[nleaves + i].offset = stage;
                p->copies[nc++] = (lathe_rt_copy){f->plan[sb].offset, stage, f->plan[sb].size};
                stage += align64(f->plan[sb].size);
                break;
            }
    }
    for (int i = 0; i < g->nupd; i++) {
        int db = f->buf_of[g->updates[i].buffer->id];
        p->copies[nc++] = (lathe_rt_copy){p->copies[i].dst, f->plan[db].offset, f->plan[db].size};
    }
    p->rt.copies = p->copies;
    p->rt.ncopies = nc;
    /* the executor's state after everything (never at offset 0, which means none) */
    p->rt.sync_offset = align64(stage > 64 ? stage : 64);
    int nsteps = f->nk; /* the kernels, and a wait step per gather (kernel_table) */
    for (int i = 0; i < f->nk; i++) nsteps += f->ks[i].gather;
    p->rt.arena_size = p->rt.sync_offset + lathe_rt_sync_bytes(nsteps);
    return LATHE_OK;
}

/* The evaluator's placement: the named tensors one after another. */
static void place_packed(lathe_program *p) {
    int64_t off = 0;
    for (int i = 0; i < p->ntensors; i++) {
        p->tensors[i].offset = off;
        off += align64(p->tnode[i]->numel * (int64_t)lathe_dtype_size(p->tnode[i]->dtype));
    }
    p->rt.arena_size = off;
}

/* Fill every row from its node, once the rows are placed. */
static void fill_table(lathe_program *p) {
    const lathe_graph *g = p->g;
    int nleaves = p->ntensors - g->nout;
    for (int i = 0; i < p->ntensors; i++) {
        const lathe_node *n = p->tnode[i];
        lathe_rt_tensor *t = &p->tensors[i];
        bool leaf = i < nleaves;
        t->name = leaf ? n->name : g->outputs[i - nleaves].name;
        t->kind = !leaf ? LATHE_RT_OUTPUT : n->op == LT_OP_INPUT ? LATHE_RT_INPUT : n->op == LT_OP_PARAM ? LATHE_RT_PARAM
                                                                                                   : LATHE_RT_BUFFER;
        t->dtype = (lathe_rt_dtype)n->dtype; /* the same numbering (asserted above) */
        /* the shape the kernels use: one process's part of a data-parallel
         * program holds its own samples */
        const lathe_node *k = p->b.f ? (leaf ? find_leaf(p->b.f->g, n->name) : p->b.f->g->outputs[i - nleaves].node) : n;
        if (!k) k = n;
        t->rank = k->rank;
        memcpy(t->shape, k->shape, sizeof t->shape);
        t->numel = k->numel;
        t->requires_grad = leaf && n->requires_grad;
        t->grad_offset = -1;
        t->index_limit = leaf && n->op == LT_OP_INPUT && n->dtype == LATHE_I64 ? lathe_index_limit(g, n) : 0;
        t->index_ignore = t->index_limit > 0 ? lathe_index_ignore(g, n) : INT64_MIN;
        if (leaf && n->op != LT_OP_INPUT) {
            lathe_leaf_init k = lathe_leaf_init_of(g, n, &t->init_a);
            t->init = k == LATHE_LEAF_INIT_UNIFORM  ? LATHE_INIT_UNIFORM
                      : k == LATHE_LEAF_INIT_NORMAL ? LATHE_INIT_NORMAL
                      : k == LATHE_LEAF_INIT_SEED   ? LATHE_INIT_SEED
                                                    : LATHE_INIT_CONST;
        }
        int go = leaf && n->op == LT_OP_PARAM ? lathe_grad_output(g, n) : -1;
        if (go >= 0) t->grad_offset = p->tensors[nleaves + go].offset;
    }
}

/* The arena, with the graph's constants in it. */
static lathe_status alloc_arena(lathe_program *p) {
    p->rt.arena = lathe_rt_alloc_arena(p->rt.arena_size);
    if (!p->rt.arena) return perr(p, LATHE_ERR_NOMEM, "out of memory for a %lld-byte arena", (long long)p->rt.arena_size);
    const lt_fused *f = p->b.f;
    for (int b = 0; f && b < f->nbufs; b++)
        if (f->bufs[b].kind == B_CONST) memcpy(p->rt.arena + f->plan[b].offset, f->bufs[b].data, (size_t)f->plan[b].size);
    return LATHE_OK;
}

/* The runtime's kernel table: each kernel's range, and its function once
 * linked (objects: linked later, into the trainer). */
static lathe_status kernel_table(lathe_program *p) {
    const lt_fused *f = p->b.f;
    int ng = 0;
    for (int i = 0; i < f->nk; i++) ng += f->ks[i].gather;
    int n = f->nk + ng; /* a wait step per gather, before the first kernel that reads its result */
    p->kernels = calloc((size_t)n + 1, sizeof *p->kernels);
    p->kfused = calloc((size_t)n + 1, sizeof *p->kfused);
    int *gi = calloc((size_t)f->nk + 1, sizeof *gi);   /* fused kernel -> its gather */
    int *due = calloc((size_t)ng + 1, sizeof *due);     /* gather -> the fused kernel it must complete before */
    if (ng) p->gathers = calloc((size_t)ng, sizeof *p->gathers);
    if (!p->kernels || !p->kfused || !gi || !due || (ng && !p->gathers)) {
        free(gi);
        free(due);
        return perr(p, LATHE_ERR_NOMEM, "out of memory");
    }
    /* the communication steps: each all_gather's operand and result buffers */
    for (int i = 0; i < f->nk; i++) {
        if (!f->ks[i].gather) continue;
        const lathe_node *nd = f->g->nodes[f->ks[i].nodes[0]], *x = nd->in[0];
        int axis = (int)nd->attr[0].v[0];
        gi[i] = p->rt.ngathers;
        due[p->rt.ngathers] = f->ks[i].wait;
        lathe_rt_gather *gt = &p->gathers[p->rt.ngathers++];
        gt->src = f->plan[f->buf_of[x->id]].offset;
        gt->dst = f->plan[f->ks[i].buf].offset;
        gt->outer = 1;
        gt->bytes = (int64_t)lathe_dtype_size(x->dtype);
        for (int d = 0; d < x->rank; d++) *(d < axis ? &gt->outer : &gt->bytes) *= x->shape[d];
        gt->parts = (int)nd->attr[1].v[0];
    }
    int r = 0;
    for (int i = 0; i <= f->nk; i++) {
        for (int s = 0; s < p->rt.ngathers; s++) /* the waits due before kernel i (the end: i = nk) */
            if (due[s] == i) {
                p->gathers[s].wait = r;
                p->kfused[r] = -1;
                p->kernels[r++] = (lathe_rt_kernel){NULL, 1};
            }
        if (i == f->nk) break;
        if (f->ks[i].gather) p->gathers[gi[i]].kernel = r;
        p->kfused[r] = i;
        p->kernels[r].range = f->ks[i].gather ? 1 : f->ks[i].range;
        p->kernels[r++].fn = p->b.fns && !f->ks[i].gather ? p->b.fns[i] : NULL;
    }
    free(gi);
    free(due);
    p->rt.kernels = p->kernels;
    p->rt.nkernels = n;
    p->rt.gathers = p->gathers;
    return LATHE_OK;
}

lathe_program *lathe_compile(lathe_graph *g, lathe_backend backend) { return lathe_compile_for(g, backend, NULL); }

lathe_program *lathe_compile_for(lathe_graph *g, lathe_backend backend, const lathe_target *target) {
    if (lathe_graph_status(g) != LATHE_OK) return NULL;
    if ((int)backend != LATHE_BACKEND_JIT && (int)backend != LATHE_BACKEND_EVAL)
        return lt_fail(g, LATHE_ERR_ARG, "compile: unknown backend %d", (int)backend);
    lt_target t;
    char err[4096];
    lathe_status st = backend == LATHE_BACKEND_JIT ? lt_target_init(&t, target, err, sizeof err) : LATHE_OK;
    if (st != LATHE_OK) return lt_fail(g, st, "compile: %s", err);
    return lt_compile(g, (int)backend, backend == LATHE_BACKEND_JIT ? &t : NULL, NULL, NULL);
}

lathe_program *lt_compile(lathe_graph *g, int backend, const lt_target *t, const char *prefix, const lt_shard_opts *sh) {
    if (lathe_graph_status(g) != LATHE_OK) return NULL;
    if (lathe_graph_verify(g) != LATHE_OK) return NULL;
    lathe_program *p = calloc(1, sizeof *p);
    if (!p) return lt_fail(g, LATHE_ERR_NOMEM, "out of memory");
    p->backend = backend;
    p->g = g;
    if (t) p->target = *t;
    p->b = (lt_build){.g = g, .target = &p->target, .pic = backend == LT_BACKEND_OBJECT, .prefix = prefix,
                      .use_cache = true};
    if (sh && backend != LATHE_BACKEND_EVAL) p->b.shard = *sh;
    lathe_stage last = backend == LATHE_BACKEND_EVAL ? LATHE_STAGE_GRAD : backend == LT_BACKEND_OBJECT ? LATHE_STAGE_ASM
                                                                                                     : LATHE_STAGE_JIT;
    lathe_status st = lt_build_run(&p->b, last);
    if (st != LATHE_OK) perr(p, st, "%s", p->b.err);
    if (st == LATHE_OK) st = list_tensors(p);
    if (st == LATHE_OK && backend == LATHE_BACKEND_EVAL) {
        place_packed(p);
        p->ev = lathe_eval_new(g);
        if (!p->ev) st = perr(p, lathe_graph_status(g), "%s", lathe_graph_error(g));
    } else if (st == LATHE_OK) {
        st = place_planned(p);
        if (st == LATHE_OK) st = kernel_table(p);
    }
    if (st == LATHE_OK) {
        fill_table(p);
        st = alloc_arena(p);
    }
    if (st != LATHE_OK) {
        lt_fail(g, st, "compile: %s", p->err);
        lathe_program_free(p);
        return NULL;
    }
    lt_build_trim(&p->b);
    return p;
}

void lathe_program_free(lathe_program *p) {
    if (!p) return;
    lt_build_free(&p->b);
    lathe_rt_free_arena(p->rt.arena);
    free(p->kernels);
    free(p->copies);
    free(p->gathers);
    free(p->kfused);
    lathe_eval_free(p->ev);
    free(p->tensors);
    free(p->tnode);
    free(p);
}

int lathe_program_num_tensors(const lathe_program *p) { return p->ntensors; }
const lathe_rt_tensor *lathe_program_tensors(const lathe_program *p) { return p->tensors; }
uint8_t *lathe_program_arena(lathe_program *p) { return p->rt.arena; }
void lathe_program_init(lathe_program *p, uint64_t seed) { lathe_rt_init(p->rt.arena, p->tensors, p->ntensors, seed); }
lathe_optimizer *lathe_program_optimizer(lathe_program *p, const lathe_optim_config *cfg) {
    lathe_optim_config c = *cfg;
    c.ieee_denormals = c.ieee_denormals || p->rt.ieee_denormals;
    return lathe_optim_new(&c, p->rt.arena, p->tensors, p->ntensors, p->err, sizeof p->err);
}

const char *lathe_program_error(const lathe_program *p) { return p->err; }
void lathe_program_set_threads(lathe_program *p, int threads) { p->threads = threads; }
void lathe_program_set_ieee_denormals(lathe_program *p, bool ieee) { p->rt.ieee_denormals = ieee; }
const lathe_rt_program *lathe_program_rt(const lathe_program *p) { return &p->rt; }
int64_t lathe_program_arena_bytes(const lathe_program *p) { return p->b.f ? p->b.f->arena_size : 0; }

/* The tensor `name`: outputs first when outputs_first, else leaves only. */
static int find_tensor(const lathe_program *p, const char *name, bool outputs_first) {
    for (int pass = outputs_first ? 0 : 1; pass < 2; pass++)
        for (int i = 0; i < p->ntensors; i++)
            if ((p->tensors[i].kind == LATHE_RT_OUTPUT) == (pass == 0) && strcmp(p->tensors[i].name, name) == 0) return i;
    return -1;
}

static size_t tensor_bytes(const lathe_rt_tensor *t) { return (size_t)t->numel * lathe_dtype_size((lathe_dtype)t->dtype); }

/* The tensor *i for set (leaves) or get (outputs first), its byte count
 * checked. */
static lathe_status tensor_for(lathe_program *p, bool get, const char *name, size_t nbytes, int *i) {
    const char *verb = get ? "get" : "set";
    if ((*i = find_tensor(p, name, get)) < 0)
        return perr(p, LATHE_ERR_NAME, "%s: no %s named '%s'", verb, get ? "output or tensor" : "input, param or buffer", name);
    size_t want = tensor_bytes(&p->tensors[*i]);
    if (nbytes == want) return LATHE_OK;
    char ts[160];
    lathe_node_type_str(p->tnode[*i], ts, sizeof ts);
    return perr(p, LATHE_ERR_ARG, "%s '%s' (%s): %zu bytes given, %zu expected", verb, name, ts, nbytes, want);
}

lathe_status lathe_program_set(lathe_program *p, const char *name, const void *data, size_t nbytes) {
    int i;
    lathe_status st = tensor_for(p, false, name, nbytes, &i);
    if (st == LATHE_OK && nbytes) memcpy(p->rt.arena + p->tensors[i].offset, data, nbytes);
    return st;
}

static void from_doubles(lathe_dtype t, const double *v, int64_t n, void *out) {
    for (int64_t i = 0; i < n; i++) switch (t) {
        case LATHE_F32: ((float *)out)[i] = (float)v[i]; break;
        case LATHE_F64: ((double *)out)[i] = v[i]; break;
        case LATHE_I64: ((int64_t *)out)[i] = (int64_t)v[i]; break;
        case LATHE_BOOL: ((bool *)out)[i] = v[i] != 0; break;
        }
}

/* The evaluator reads the leaves from the arena and writes back the outputs
 * and the updated buffers. */
static lathe_status eval_run(lathe_program *p) {
    for (int i = 0; i < p->ntensors; i++) {
        const lathe_rt_tensor *t = &p->tensors[i];
        if (t->kind == LATHE_RT_OUTPUT) continue;
        lathe_status st = lathe_eval_set(p->ev, t->name, p->rt.arena + t->offset, tensor_bytes(t));
        if (st) return perr(p, st, "%s", lathe_eval_error(p->ev));
    }
    lathe_status st = lathe_eval_run(p->ev);
    if (st) return perr(p, st, "%s", lathe_eval_error(p->ev));
    for (int i = 0; i < p->ntensors; i++) {
        const lathe_rt_tensor *t = &p->tensors[i];
        if (t->kind != LATHE_RT_OUTPUT && t->kind != LATHE_RT_BUFFER) continue;
        const double *v = t->kind == LATHE_RT_OUTPUT ? lathe_eval_value(p->ev, p->tnode[i]) : lathe_eval_leaf(p->ev, t->name);
        from_doubles((lathe_dtype)t->dtype, v, t->numel, p->rt.arena + t->offset);
    }
    return LATHE_OK;
}

lathe_status lathe_program_run(lathe_program *p) {
    char err[512];
    if (lathe_rt_check_indices(p->rt.arena, p->tensors, p->ntensors, err, sizeof err))
        return perr(p, LATHE_ERR_ARG, "%s", err);
    if (p->backend == LATHE_BACKEND_EVAL) return eval_run(p);
    if (lathe_rt_run(&p->rt, p->threads))
        return perr(p, LATHE_ERR_IO, "a communication step failed: %s",
                    p->rt.comm ? p->rt.comm->err : "the program gathers from several processes and has no lathe_rt_comm");
    return LATHE_OK;
}

lathe_status lathe_program_get(lathe_program *p, const char *name, void *out, size_t nbytes) {
    int i;
    lathe_status st = tensor_for(p, true, name, nbytes, &i);
    if (st == LATHE_OK && nbytes) memcpy(out, p->rt.arena + p->tensors[i].offset, nbytes);
    return st;
}
