/* test_batch.c - which axis of each value is the batch (compiler/batch.c),
 * the groundwork of data-parallel training.
 *
 * Hand-made graphs, each state worked out on paper: reshapes that keep the
 * samples whole runs (and those that split or interleave them), permutes,
 * reductions over and beside the batch, an embedding lookup, matmuls that
 * pass the rows through or contract them (a weight gradient), replicated
 * values that do or do not vary along the batch.  Then the examples, traced,
 * differentiated and decomposed as the compiler does: every value can be
 * sharded, every gradient and the loss are replicated (the result of batch
 * reductions), the logits keep the batch on their first axis, and the
 * GPT's dropouts are flagged as hashing element indices. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "batch.h"
#include "lathe_compiler.h"
#include "lathe_desc.h"
#include "pipeline.h"
#include "program.h"
#include "shard.h"
#include "target.h"
#include "testutil.h"

#define D LATHE_DIMS

/* The states of g's nodes, inputs named in `batch` per-sample. */
static lt_batch *analyze(lathe_graph *g, const char *const *batch, int nb, int *nmixed) {
    bool *in = calloc((size_t)g->nnodes + 1, sizeof *in);
    lt_batch *st = calloc((size_t)g->nnodes + 1, sizeof *st);
    assert_non_null(in);
    assert_non_null(st);
    for (int i = 0; i < g->nnodes; i++)
        for (int k = 0; k < nb && g->nodes[i]->op == LT_OP_INPUT; k++) in[i] = in[i] || !strcmp(g->nodes[i]->name, batch[k]);
    *nmixed = lt_batch_axes(g, in, st);
    free(in);
    return st;
}

static void expect(const char *what, lt_batch b, lt_batch_kind kind, int axis, int64_t inner) {
    if (b.kind != kind || (kind == LT_BATCH_AXIS && (b.axis != axis || b.inner != inner)))
        fail_msg("%s: kind %d axis %d inner %lld, expected kind %d axis %d inner %lld", what, b.kind, b.axis,
                 (long long)b.inner, kind, axis, (long long)inner);
}

static void test_rules(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_input(g, "x", LATHE_F32, D(4, 6, 8));
    lathe_node *tok = lathe_input(g, "tok", LATHE_I64, D(4, 6));
    lathe_node *w = lathe_param(g, "w", LATHE_F32, D(3, 8), true);
    lathe_node *table = lathe_param(g, "table", LATHE_F32, D(10, 8), true);
    lathe_node *rows = lathe_reshape(g, x, 2, (int64_t[]){24, 8});           /* (0, 6): 6 rows per sample */
    lathe_node *back = lathe_reshape(g, rows, 2, (int64_t[]){4, 48});        /* (0, 1) */
    lathe_node *pairs = lathe_reshape(g, x, 2, (int64_t[]){2, 96});          /* two samples a row: mixed */
    lathe_node *perm = lathe_permute(g, x, 3, (int64_t[]){1, 0, 2});         /* (1, 1) */
    lathe_node *inter = lathe_reshape(g, perm, 2, (int64_t[]){24, 8});       /* T outer: mixed */
    lathe_node *beside = lathe_sum(g, x, 1, (int64_t[]){2}, false);          /* (0, 1) */
    lathe_node *over = lathe_sum(g, rows, 1, (int64_t[]){0}, true);          /* reduces */
    lathe_node *emb = lathe_index_select(g, table, 0, tok);                  /* (0, 1) */
    lathe_node *lin = lathe_matmul(g, rows, lathe_transpose(g, w, 0, 1));    /* rows pass: (0, 6) */
    lathe_node *wg = lathe_matmul(g, lathe_transpose(g, lin, 0, 1), rows);   /* contracts the batch: reduces */
    lathe_node *cat = lathe_concat(g, 2, (lathe_node *[]){x, x}, 0);         /* along the batch: mixed */
    lathe_node *cat2 = lathe_concat(g, 2, (lathe_node *[]){x, x}, 2);        /* beside it: (0, 1) */
    lathe_node *c = lathe_param(g, "c", LATHE_F32, D(4, 6, 8), true);
    lathe_node *vary = lathe_add(g, x, c);                                   /* c varies along the batch: mixed */
    lathe_node *mean = lathe_broadcast_to(g, lathe_sum(g, x, 1, (int64_t[]){0}, true), 3, (int64_t[]){4, 6, 8});
    lathe_node *centred = lathe_sub(g, x, mean);                             /* a reduction broadcast back: (0, 1) */
    lathe_node *sl = lathe_slice(g, x, 0, 0, 2, 1);                          /* half the batch: mixed */
    lathe_node *sl2 = lathe_slice(g, x, 2, 0, 4, 1);                         /* (0, 1) */
    /* a GRU's zero initial state: the same for every sample, as is its product */
    lathe_node *h0 = lathe_broadcast_to(g, lathe_scalar(g, LATHE_F32, 0), 2, (int64_t[]){4, 6});
    lathe_node *u = lathe_param(g, "u", LATHE_F32, D(6, 6), true);
    lathe_node *step = lathe_add(g, beside, lathe_matmul(g, h0, u));          /* (0, 1) */
    lathe_node *ug = lathe_matmul(g, lathe_transpose(g, beside, 0, 1), h0);   /* contracts with it: reduces */
    lathe_node *ugx = lathe_matmul(g, lathe_transpose(g, beside, 0, 1), lathe_reshape(g, c, 2, (int64_t[]){4, 48}));
    /* ...but not with a replicated value that varies along the batch: mixed */
    assert_int_equal(lathe_graph_status(g), LATHE_OK);
    int nmixed;
    lt_batch *st = analyze(g, (const char *[]){"x", "tok"}, 2, &nmixed);
    expect("x", st[x->id], LT_BATCH_AXIS, 0, 1);
    expect("w", st[w->id], LT_BATCH_NONE, 0, 0);
    expect("rows", st[rows->id], LT_BATCH_AXIS, 0, 6);
    expect("back", st[back->id], LT_BATCH_AXIS, 0, 1);
    expect("pairs", st[pairs->id], LT_BATCH_MIXED, 0, 0);
    expect("perm", st[perm->id], LT_BATCH_AXIS, 1, 1);
    expect("inter", st[inter->id], LT_BATCH_MIXED, 0, 0);
    expect("beside", st[beside->id], LT_BATCH_AXIS, 0, 1);
    expect("over", st[over->id], LT_BATCH_NONE, 0, 0);
    assert_true(st[over->id].reduces && !st[beside->id].reduces);
    expect("emb", st[emb->id], LT_BATCH_AXIS, 0, 1);
    expect("lin", st[lin->id], LT_BATCH_AXIS, 0, 6);
    expect("wg", st[wg->id], LT_BATCH_NONE, 0, 0);
    assert_true(st[wg->id].reduces);
    expect("cat", st[cat->id], LT_BATCH_MIXED, 0, 0);
    expect("cat2", st[cat2->id], LT_BATCH_AXIS, 0, 1);
    expect("vary", st[vary->id], LT_BATCH_MIXED, 0, 0);
    expect("centred", st[centred->id], LT_BATCH_AXIS, 0, 1);
    expect("sl", st[sl->id], LT_BATCH_MIXED, 0, 0);
    expect("sl2", st[sl2->id], LT_BATCH_AXIS, 0, 1);
    expect("step", st[step->id], LT_BATCH_AXIS, 0, 1);
    expect("ug", st[ug->id], LT_BATCH_NONE, 0, 0);
    assert_true(st[ug->id].reduces);
    expect("ugx", st[ugx->id], LT_BATCH_MIXED, 0, 0);
    assert_int_equal(nmixed, 6);
    free(st);
    lathe_graph_free(g);
}

/* Example `name` traced for training (batch 0: the file's), differentiated
 * and decomposed into b (b->g the traced graph: free it after b). */
static void decomposed_example(const char *name, int64_t batch, lt_build *b, lt_target *t) {
    char path[4096], err[512];
    const char *src = getenv("LATHE_SRC");
    snprintf(path, sizeof path, "%s/examples/%s", src ? src : ".", name);
    lathe_graph *g = lathe_graph_new();
    lathe_desc_options opt = {.training = true, .batch = batch};
    if (lathe_desc_parse_file(g, path, &opt, NULL) != LATHE_OK) fail_msg("%s: %s", name, lathe_graph_error(g));
    assert_int_equal(lt_target_init(t, NULL, err, sizeof err), LATHE_OK);
    *b = (lt_build){.g = g, .target = t};
    if (lt_build_run(b, LATHE_STAGE_DECOMPOSED) != LATHE_OK) fail_msg("%s: %s", name, b->err);
}

/* An example traced, differentiated and decomposed; its inputs are per-sample. */
static void check_example(const char *name, int want_dropouts) {
    lt_target t;
    lt_build b;
    decomposed_example(name, 0, &b, &t);
    lathe_graph *g = b.g, *d = b.dec;
    const char *inputs[8];
    int ni = 0;
    for (int i = 0; i < d->nnodes && ni < 8; i++)
        if (d->nodes[i]->op == LT_OP_INPUT) inputs[ni++] = d->nodes[i]->name;
    int nmixed, reductions = 0, dropouts = 0;
    lt_batch *st = analyze(d, inputs, ni, &nmixed);
    for (int i = 0; i < d->nnodes; i++) {
        if (st[i].kind == LT_BATCH_MIXED) fail_msg("%s: node %%%d (%s) cannot be sharded", name, i, lt_ops[d->nodes[i]->op].name);
        reductions += st[i].reduces;
        dropouts += st[i].indexed;
    }
    assert_int_equal(nmixed, 0);
    int grads = 0;
    for (int i = 0; i < d->nout; i++) {
        const char *on = d->outputs[i].name;
        lt_batch o = st[d->outputs[i].node->id];
        if (!strncmp(on, "grad.", 5) || !strcmp(on, "loss")) {
            grads += on[0] == 'g';
            if (o.kind != LT_BATCH_NONE) fail_msg("%s: output %s is not replicated (kind %d)", name, on, o.kind);
        } else if (!strcmp(on, "logits") && (o.kind != LT_BATCH_AXIS || o.axis != 0 || o.inner != 1))
            fail_msg("%s: logits: kind %d axis %d inner %lld", name, o.kind, o.axis, (long long)o.inner);
    }
    if (grads == 0 || reductions < grads) fail_msg("%s: %d gradients, %d batch reductions", name, grads, reductions);
    assert_int_equal(dropouts, want_dropouts);
    free(st);
    lt_build_free(&b);
    lathe_graph_free(g);
}

static void test_examples(void **state) {
    (void)state;
    check_example("mlp.lathe", 0);
    check_example("fashion_cnn.lathe", 0);
    check_example("char_gpt.lathe", 2 * (1 + 4 * 3)); /* forward and backward: embedding, 3 per block */
    check_example("gru.lathe", 0);
    check_example("resnet18.lathe", 0);
}

/* ---- sharded reductions (compiler/shard.c) ---------------------------------------- */

/* The examples' decomposed graphs with their batch reductions in 4 shards
 * give the outputs of the graphs as they were, to f32 round-off of O(1)
 * values (the reference evaluator rounds each f32 op and only the order of
 * the sums differs; a bias before batch norm has a gradient that is round-off
 * alone, hence the absolute floor). */
static void test_shard_examples(void **state) {
    (void)state;
    const char *names[] = {"mlp.lathe", "fashion_cnn.lathe", "char_gpt.lathe", "gru.lathe"};
    for (size_t e = 0; e < sizeof names / sizeof names[0]; e++) {
        lt_target t;
        lt_build b;
        char err[512];
        decomposed_example(names[e], 8, &b, &t); /* 8 samples: 4 shards of 2 */
        lathe_graph *g = b.g, *d = b.dec;
        bool *in = calloc((size_t)d->nnodes + 1, sizeof *in);
        for (int i = 0; i < d->nnodes; i++) in[i] = d->nodes[i]->op == LT_OP_INPUT;
        int np = 0;
        lathe_graph *sh = lt_shard(d, in, &(lt_shard_opts){4, 1, false}, NULL, 0, &np, err, sizeof err);
        if (!sh) fail_msg("%s: %s", names[e], err);
        assert_int_equal(lathe_graph_verify(sh), LATHE_OK);
        if (np < 4) fail_msg("%s: %d partials", names[e], np);
        lathe_eval *ea = lathe_eval_new(d), *eb = lathe_eval_new(sh);
        bind_random(ea, d, 5);
        bind_random(eb, sh, 5);
        assert_int_equal(lathe_eval_run(ea), LATHE_OK);
        assert_int_equal(lathe_eval_run(eb), LATHE_OK);
        assert_int_equal(lathe_graph_num_outputs(d), lathe_graph_num_outputs(sh));
        for (int i = 0; i < lathe_graph_num_outputs(d); i++) {
            lathe_node *x = lathe_graph_output(d, i), *y = lathe_graph_output(sh, i);
            const double *u = lathe_eval_value(ea, x), *v = lathe_eval_value(eb, y);
            double scale = 0;
            for (int64_t j = 0; j < x->numel; j++) scale = fabs(u[j]) > scale ? fabs(u[j]) : scale;
            for (int64_t j = 0; j < x->numel; j++)
                if (!(fabs(u[j] - v[j]) <= 1e-5 * (scale > 1 ? scale : 1)))
                    fail_msg("%s: output %s[%lld]: %.17g unsharded, %.17g in 4 shards", names[e],
                             lathe_graph_output_name(d, i), (long long)j, u[j], v[j]);
        }
        lathe_eval_free(ea);
        lathe_eval_free(eb);
        lathe_graph_free(sh);
        free(in);
        lt_build_free(&b);
        lathe_graph_free(g);
    }
}

/* The point of shards: a weight gradient (dW = g^T x over B rows) and a
 * bias gradient (sum of g over the rows) compiled for 256 rows in 4 shards
 * and for the first 128 rows in 2 give the same partials, bit for bit, on
 * the JIT: a process holding half the batch computes what the one process
 * computes for that half. */
static lathe_graph *wgrad_graph(int64_t rows, int S, lathe_program **jit) {
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_input(g, "x", LATHE_F32, D(rows, 64));
    lathe_node *dy = lathe_input(g, "dy", LATHE_F32, D(rows, 32));
    lathe_output(g, "dw", lathe_matmul(g, lathe_transpose(g, dy, 0, 1), x));
    lathe_output(g, "db", lathe_sum(g, dy, 1, (int64_t[]){0}, false));
    assert_int_equal(lathe_graph_status(g), LATHE_OK);
    bool in[8] = {true, true};
    int part[8], np = 0;
    char err[512];
    lathe_graph *sh = lt_shard(g, in, &(lt_shard_opts){S, 1, false}, part, 8, &np, err, sizeof err);
    if (!sh) fail_msg("%s", err);
    assert_int_equal(np, 2);
    lathe_output(sh, "p_dw", sh->nodes[part[0]]);
    lathe_output(sh, "p_db", sh->nodes[part[1]]);
    lathe_graph_free(g);
    *jit = lathe_compile(sh, LATHE_BACKEND_JIT);
    if (!*jit) fail_msg("compile: %s", lathe_graph_error(sh));
    return sh;
}

static void test_shard_bits(void **state) {
    (void)state;
    float *x = malloc(sizeof(float) * 256 * 64), *dy = malloc(sizeof(float) * 256 * 32);
    uint64_t r = 7;
    for (int i = 0; i < 256 * 64; i++) x[i] = (float)((r = r * 6364136223846793005ULL + 1) >> 40) / (1 << 24) - 0.5f;
    for (int i = 0; i < 256 * 32; i++) dy[i] = (float)((r = r * 6364136223846793005ULL + 1) >> 40) / (1 << 24) - 0.5f;
    lathe_program *full, *half;
    lathe_graph *gf = wgrad_graph(256, 4, &full), *gh = wgrad_graph(128, 2, &half);
    assert_int_equal(lathe_program_set(full, "x", x, sizeof(float) * 256 * 64), LATHE_OK);
    assert_int_equal(lathe_program_set(full, "dy", dy, sizeof(float) * 256 * 32), LATHE_OK);
    assert_int_equal(lathe_program_set(half, "x", x, sizeof(float) * 128 * 64), LATHE_OK);
    assert_int_equal(lathe_program_set(half, "dy", dy, sizeof(float) * 128 * 32), LATHE_OK);
    assert_int_equal(lathe_program_run(full), LATHE_OK);
    assert_int_equal(lathe_program_run(half), LATHE_OK);
    float pf[4 * 32 * 64], ph[2 * 32 * 64], bf[4 * 32], bh[2 * 32];
    assert_int_equal(lathe_program_get(full, "p_dw", pf, sizeof pf), LATHE_OK);
    assert_int_equal(lathe_program_get(half, "p_dw", ph, sizeof ph), LATHE_OK);
    assert_int_equal(lathe_program_get(full, "p_db", bf, sizeof bf), LATHE_OK);
    assert_int_equal(lathe_program_get(half, "p_db", bh, sizeof bh), LATHE_OK);
    if (memcmp(pf, ph, sizeof ph)) fail_msg("the weight gradient's partials of the first two shards differ");
    if (memcmp(bf, bh, sizeof bh)) fail_msg("the bias gradient's partials of the first two shards differ");
    float dwf[32 * 64];
    assert_int_equal(lathe_program_get(full, "dw", dwf, sizeof dwf), LATHE_OK);
    for (int i = 0; i < 32 * 64; i++) { /* and the result is their sum in the shards' tree order */
        float want = (pf[i] + pf[2048 + i]) + (pf[4096 + i] + pf[6144 + i]);
        if (dwf[i] != want) fail_msg("dw[%d] = %.9g, not the ordered sum %.9g", i, dwf[i], want);
    }
    lathe_program_free(full);
    lathe_program_free(half);
    lathe_graph_free(gf);
    lathe_graph_free(gh);
    free(x);
    free(dy);
}


/* ---- data-parallel programs: P processes, as threads, against one ---------------- */

/* A world of P threads: each rank's all_gather puts its blocks in a shared
 * staging area, waits for the others, and copies every rank's out in the
 * order the runtime's lathe_rt_gather says. */
typedef struct {
    pthread_barrier_t bar;
    uint8_t *stage;           /* [parts][outer * bytes] */
    int procs;
} world;

typedef struct {
    lathe_rt_comm comm;
    world *w;
    int rank;
    lathe_program *p;
    lathe_status st;
} rank_ctx;

static int fake_all_gather(lathe_rt_comm *c, int i, const uint8_t *src, uint8_t *dst, int64_t outer, int64_t bytes,
                           int parts) {
    rank_ctx *r = (rank_ctx *)c;
    (void)i;
    world *w = r->w;
    if (parts != w->procs) {
        snprintf(c->err, sizeof c->err, "a gather for %d processes in a world of %d", parts, w->procs);
        return -1;
    }
    memcpy(w->stage + (size_t)r->rank * (size_t)(outer * bytes), src, (size_t)(outer * bytes));
    pthread_barrier_wait(&w->bar);
    for (int64_t o = 0; o < outer; o++)
        for (int q = 0; q < parts; q++)
            memcpy(dst + (o * parts + q) * bytes, w->stage + (size_t)q * (size_t)(outer * bytes) + o * bytes, (size_t)bytes);
    pthread_barrier_wait(&w->bar); /* nobody overwrites the stage before everyone has read it */
    return 0;
}

static void *run_rank(void *arg) {
    rank_ctx *r = arg;
    r->st = lathe_program_run(r->p);
    return NULL;
}

/* An example's training graph at batch B (loss marked), its constants
 * overridden by defs (NAME=VALUE, up to 4, or NULL). */
static lathe_graph *train_graph(const char *name, int64_t B, const char *const *defs) {
    char path[4096];
    const char *src = getenv("LATHE_SRC");
    snprintf(path, sizeof path, "%s/examples/%s", src ? src : ".", name);
    lathe_graph *g = lathe_graph_new();
    int nd = 0;
    while (defs && nd < 4 && defs[nd]) nd++;
    lathe_desc_options opt = {.training = true, .batch = B, .ndefines = nd, .defines = defs};
    if (lathe_desc_parse_file(g, path, &opt, NULL) != LATHE_OK) fail_msg("%s: %s", name, lathe_graph_error(g));
    return g;
}

/* The inputs of p filled with the same random values in every program:
 * rows [first, first + n) of the global batch. */

static void fill_inputs(lathe_program *p, int64_t first, int64_t B) {
    const lathe_rt_tensor *ts = lathe_program_tensors(p);
    for (int i = 0; i < lathe_program_num_tensors(p); i++) {
        const lathe_rt_tensor *t = &ts[i];
        if (t->kind != LATHE_RT_INPUT) continue;
        if (!strcmp(t->name, LATHE_RANK_NAME)) continue; /* run_ranks sets it */
        int64_t per = t->numel / t->shape[0], n = t->shape[0];
        uint8_t *a = lathe_program_arena(p) + t->offset;
        for (int64_t e = 0; e < n * per; e++) {
            uint64_t h = (uint64_t)((first + e / per) * per + e % per) * 0x9E3779B97F4A7C15ULL + (uint64_t)i;
            h ^= h >> 31, h *= 0xBF58476D1CE4E5B9ULL, h ^= h >> 29;
            if (t->dtype == LATHE_RT_F32) ((float *)a)[e] = (float)(h >> 40) / (float)(1 << 24) * 2 - 1;
            else if (t->dtype == LATHE_RT_I64) ((int64_t *)a)[e] = (int64_t)(h % (uint64_t)(t->index_limit > 0 ? t->index_limit : 2));
            else fail_msg("input %s: dtype %d", t->name, t->dtype);
        }
        (void)B;
    }
}

/* Every output and buffer of rank r's program against the one-process
 * program's: replicated values whole, per-sample values (a leading batch
 * dim) rank r's rows. */
static void same_bits(const char *what, lathe_program *one, lathe_program *pr, int r, int P) {
    const lathe_rt_tensor *ts = lathe_program_tensors(one);
    for (int i = 0; i < lathe_program_num_tensors(one); i++) {
        const lathe_rt_tensor *t = &ts[i], *u = lathe_rt_find(lathe_program_tensors(pr), lathe_program_num_tensors(pr), t->name);
        if (t->kind != LATHE_RT_OUTPUT && t->kind != LATHE_RT_BUFFER && t->kind != LATHE_RT_PARAM) continue;
        if (!u) fail_msg("%s: rank %d has no %s", what, r, t->name);
        size_t es = lathe_rt_dtype_size(t->dtype);
        const uint8_t *a = lathe_program_arena(one) + t->offset, *b = lathe_program_arena(pr) + u->offset;
        int64_t off = 0, n = t->numel;
        if (u->numel != t->numel) { /* per-sample: its rows */
            if (u->numel * P != t->numel) fail_msg("%s: %s has %lld elements on rank %d, %lld in one process", what,
                                                   t->name, (long long)u->numel, r, (long long)t->numel);
            n = u->numel, off = (int64_t)r * n;
        }
        for (int64_t e = 0; e < n; e++)
            if (memcmp(a + (size_t)(off + e) * es, b + (size_t)e * es, es)) {
                double x = t->dtype == LATHE_RT_F32 ? ((const float *)a)[off + e] : 0, y = t->dtype == LATHE_RT_F32 ? ((const float *)b)[e] : 0;
                fail_msg("%s: %s[%lld] on rank %d of %d: %.9g, one process %.9g", what, t->name, (long long)(off + e), r, P, y, x);
            }
    }
}

/* P ranks of g's program for lt_shard_opts o (o->procs of them), as
 * threads, each with its rows of the inputs, initialized with seed 11, run
 * once; rk[r].p holds rank r's results (lathe_program_free them). */
static void run_ranks(const char *what, lathe_graph *g, const lt_target *t, lt_shard_opts o, int64_t B, rank_ctx *rk) {
    int P = o.procs;
    world w = {.procs = P};
    pthread_t th[4];
    assert_true(P <= 4);
    int64_t most = 0;
    for (int r = 0; r < P; r++) {
        rk[r] = (rank_ctx){.w = &w, .rank = r};
        rk[r].comm.all_gather = fake_all_gather;
        rk[r].p = lt_compile(g, LATHE_BACKEND_JIT, t, NULL, &o);
        if (!rk[r].p) fail_msg("%s: %s", what, lathe_graph_error(g));
        if (rk[r].p->rt.ngathers == 0) fail_msg("%s: no communication step", what);
        for (int i = 0; i < rk[r].p->rt.ngathers; i++) {
            const lathe_rt_gather *gt = &rk[r].p->rt.gathers[i];
            most = gt->outer * gt->bytes > most ? gt->outer * gt->bytes : most;
        }
        rk[r].p->rt.comm = &rk[r].comm;
        lathe_program_set_threads(rk[r].p, 1);
        lathe_program_init(rk[r].p, 11);
        fill_inputs(rk[r].p, r * (B / P), B);
        int64_t rank = r;
        lathe_program_set(rk[r].p, LATHE_RANK_NAME, &rank, sizeof rank); /* fails harmlessly without a dropout */
    }
    w.stage = malloc((size_t)(most * P));
    assert_non_null(w.stage);
    pthread_barrier_init(&w.bar, NULL, (unsigned)P);
    for (int r = 0; r < P; r++) assert_int_equal(pthread_create(&th[r], NULL, run_rank, &rk[r]), 0);
    for (int r = 0; r < P; r++) pthread_join(th[r], NULL);
    for (int r = 0; r < P; r++)
        if (rk[r].st != LATHE_OK) fail_msg("%s: rank %d: %s", what, r, lathe_program_error(rk[r].p));
    pthread_barrier_destroy(&w.bar);
    free(w.stage);
}

/* g's one-process program (o.procs 1), initialized and run on inputs [0, B). */
static lathe_program *run_one(const char *what, lathe_graph *g, const lt_target *t, lt_shard_opts o, int64_t B) {
    lathe_program *one = lt_compile(g, LATHE_BACKEND_JIT, t, NULL, &o);
    if (!one) fail_msg("%s: %s", what, lathe_graph_error(g));
    lathe_program_init(one, 11);
    fill_inputs(one, 0, B);
    assert_int_equal(lathe_program_run(one), LATHE_OK);
    return one;
}

/* The promise: P processes on a global batch give the bits of one process on
 * it -- the loss, every gradient, batch norm's running statistics, and each
 * rank's per-sample outputs its rows of the one process's.  P threads stand
 * for the processes (the same programs a trainer runs under MPI, with the
 * gathers done in memory).  With register tiles of 32 and 64 bytes. */
static void test_dp_bits(void **state) {
    (void)state;
    assert_string_equal(LATHE_RANK_NAME, LATHE_RT_RANK_NAME); /* the IR's and the runtime's name of one tensor */
    /* the GPT's heads of 64 on 8 x 64 rows: the one process copies the
     * projections' transposed weights (many rows reuse them), and a process
     * with half the rows must too (fuse.c's transposed_rhs counts the whole
     * batch's rows) */
    static const char *const gpt_small[] = {"layers=1", "heads=2", NULL};
    static const struct { const char *name; int64_t B; int S, P; const char *const *defs; } cases[] = {
        {"mlp.lathe", 8, 4, 2, NULL}, {"fashion_cnn.lathe", 8, 4, 2, NULL}, {"fashion_cnn.lathe", 12, 12, 3, NULL},
        {"fashion_cnn.lathe", 8, 4, 4, NULL}, {"gru.lathe", 8, 4, 2, NULL}, {"char_gpt.lathe", 4, 4, 2, NULL},
        {"char_gpt.lathe", 8, 4, 2, gpt_small},
    };
    for (size_t c = 0; c < 2 * (sizeof cases / sizeof cases[0]); c++) {
        int width = c % 2 ? 64 : 32;
        const char *name = cases[c / 2].name;
        int64_t B = cases[c / 2].B;
        int S = cases[c / 2].S, P = cases[c / 2].P;
        char what[160], err[512];
        snprintf(what, sizeof what, "%s, batch %lld in %d shards on %d processes, %d-byte tiles", name, (long long)B, S, P,
                 width);
        lt_target t;
        assert_int_equal(lt_target_init(&t, &(lathe_target){.vector_bytes = width}, err, sizeof err), LATHE_OK);
        lathe_graph *g = train_graph(name, B, cases[c / 2].defs);
        lathe_program *one = run_one(what, g, &t, (lt_shard_opts){S, 1, false}, B);
        assert_int_equal(one->b.shard.shards, S);
        rank_ctx rk[4];
        run_ranks(what, g, &t, (lt_shard_opts){S, P, false}, B, rk);
        for (int r = 0; r < P; r++) same_bits(what, one, rk[r].p, r, P);
        /* overlap: every gather completes after it starts, and the weight
         * gradients' gathers run under later kernels (their sums moved last) */
        const lathe_rt_program *rp = &rk[0].p->rt;
        int under = 0;
        for (int i = 0; i < rp->ngathers; i++) {
            const lathe_rt_gather *gt = &rp->gathers[i];
            if (!(gt->wait > gt->kernel && gt->wait < rp->nkernels && !rp->kernels[gt->kernel].fn && !rp->kernels[gt->wait].fn))
                fail_msg("%s: gather %d starts at step %d and completes at %d of %d", what, i, gt->kernel, gt->wait, rp->nkernels);
            for (int k = gt->kernel + 1; k < gt->wait && !under; k++) under = rp->kernels[k].fn != NULL;
        }
        if (!under) fail_msg("%s: no kernel runs while a gather is under way", what);
        for (int r = 0; r < P; r++) lathe_program_free(rk[r].p);
        lathe_program_free(one);
        lathe_graph_free(g);
    }
}

/* The largest difference relative to a's largest element, or to 0.01 when
 * a is smaller (a conv bias before batch norm has a gradient of round-off
 * alone: zero in exact arithmetic). */
static double max_rel(const float *a, const float *b, int64_t n) {
    double scale = 0.01, d = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(a[i]));
    for (int64_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d / scale;
}

/* Batch norm with per-process statistics (lt_shard_opts.local_stats, lathe
 * compile --local-bn), as PyTorch DDP: the gradients of 2 processes are the
 * mean of what one process computes on each half of the batch as a batch of
 * its own, and each process's running statistics are its half's; with
 * synchronized statistics they are not. */
static void test_dp_local_bn(void **state) {
    (void)state;
    const char *what = "fashion_cnn, batch 8, 2 processes, per-process batch norm";
    char err[512];
    lt_target t;
    assert_int_equal(lt_target_init(&t, NULL, err, sizeof err), LATHE_OK);
    lathe_graph *g = train_graph("fashion_cnn.lathe", 8, NULL), *h = train_graph("fashion_cnn.lathe", 4, NULL);
    rank_ctx rk[2], sy[2];
    run_ranks(what, g, &t, (lt_shard_opts){4, 2, true}, 8, rk);
    run_ranks(what, g, &t, (lt_shard_opts){4, 2, false}, 8, sy);
    lathe_program *half[2];
    for (int r = 0; r < 2; r++) { /* each half as a batch of its own, one process, not sharded */
        half[r] = lt_compile(h, LATHE_BACKEND_JIT, &t, NULL, NULL);
        if (!half[r]) fail_msg("%s: %s", what, lathe_graph_error(h));
        lathe_program_init(half[r], 11);
        fill_inputs(half[r], 4 * r, 8);
        assert_int_equal(lathe_program_run(half[r]), LATHE_OK);
    }
    const lathe_rt_tensor *ts = lathe_program_tensors(half[0]);
    int checked = 0, differs = 0;
    for (int i = 0; i < lathe_program_num_tensors(half[0]); i++) {
        const lathe_rt_tensor *u = &ts[i];
        bool grad = u->kind == LATHE_RT_OUTPUT && (!strncmp(u->name, "grad.", 5) || !strcmp(u->name, "loss"));
        bool stat = u->kind == LATHE_RT_BUFFER && strstr(u->name, "running_");
        if ((!grad && !stat) || u->dtype != LATHE_RT_F32) continue;
        int64_t n = u->numel;
        float *want = malloc(sizeof(float) * (size_t)n), *got = malloc(sizeof(float) * (size_t)n);
        float *h0 = (float *)(lathe_program_arena(half[0]) + u->offset), *h1 = (float *)(lathe_program_arena(half[1]) + u->offset);
        for (int r = 0; r < 2; r++) {
            const lathe_rt_tensor *v = lathe_rt_find(lathe_program_tensors(rk[r].p), lathe_program_num_tensors(rk[r].p), u->name);
            const lathe_rt_tensor *w = lathe_rt_find(lathe_program_tensors(sy[r].p), lathe_program_num_tensors(sy[r].p), u->name);
            assert_non_null(v);
            assert_non_null(w);
            for (int64_t e = 0; e < n; e++) want[e] = grad ? (h0[e] + h1[e]) / 2 : (r ? h1 : h0)[e];
            memcpy(got, lathe_program_arena(rk[r].p) + v->offset, sizeof(float) * (size_t)n);
            double d = max_rel(want, got, n);
            if (d > 2e-5) fail_msg("%s: %s on rank %d is %.3g from the halves' %s (relative)", what, u->name, r, d,
                                   grad ? "mean" : "own");
            memcpy(got, lathe_program_arena(sy[r].p) + w->offset, sizeof(float) * (size_t)n);
            differs += max_rel(want, got, n) > 1e-3;
            checked++;
        }
        free(want);
        free(got);
    }
    if (checked < 20) fail_msg("%s: only %d tensors checked", what, checked);
    if (differs < checked / 4) fail_msg("%s: synchronized batch norm agrees with per-process statistics on %d of %d tensors: "
                                        "the case does not tell them apart", what, checked - differs, checked);
    for (int r = 0; r < 2; r++) lathe_program_free(rk[r].p), lathe_program_free(sy[r].p), lathe_program_free(half[r]);
    lathe_graph_free(g);
    lathe_graph_free(h);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_examples),
        cmocka_unit_test(test_shard_examples),
        cmocka_unit_test(test_shard_bits),
        cmocka_unit_test(test_dp_bits),
        cmocka_unit_test(test_dp_local_bn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
