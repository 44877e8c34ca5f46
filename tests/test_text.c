/* test_text.c - the text IR (print and parse) and the DOT printer.
 *
 * Round trips run over the op sample table (testutil.c), so every op is
 * printed and parsed in both float dtypes.  Bad inputs are one table of
 * source, expected status and expected message pieces.  A small fuzz loop
 * feeds truncated and mutated texts, each in a buffer of exactly its length so
 * the sanitizers catch any read past the end. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

/* ---- helpers -------------------------------------------------------------- */

static char *to_text(const lathe_graph *g) {
    char *t = lathe_graph_to_text(g);
    assert_non_null(t);
    return t;
}

static lathe_graph *parse_ok(const char *src, const char *file) {
    lathe_graph *g = lathe_graph_new();
    assert_non_null(g);
    if (lathe_parse(g, src, strlen(src), file) != LATHE_OK)
        fail_msg("%s: parse failed: %s", file, lathe_graph_error(g));
    return g;
}

static bool same_attr(lt_atype t, const lt_attr *x, const lt_attr *y) {
    switch (t) {
    case LT_A_INT:
    case LT_A_BOOL:
    case LT_A_DTYPE:
    case LT_A_REDUCTION: return x->v[0] == y->v[0];
    case LT_A_FLOAT: return memcmp(&x->f, &y->f, sizeof x->f) == 0;
    case LT_A_PAIR: return x->n == y->n && x->v[0] == y->v[0] && x->v[1] == y->v[1];
    case LT_A_LIST:
        return x->n == y->n && x->n >= 0 && x->n <= LATHE_MAX_RANK &&
               memcmp(x->v, y->v, sizeof(int64_t) * (size_t)x->n) == 0;
    }
    return false;
}

#define SAME(cond, what)                                                                  \
    do {                                                                                  \
        if (!(cond)) fail_msg("%s: node %%%d: %s differs", label, i, what);               \
    } while (0)

/* Structural identity: nodes, operands, attributes, names, flags, constant
 * bytes, outputs and updates. */
static void assert_same_graph(const lathe_graph *a, const lathe_graph *b, const char *label) {
    if (a->nnodes != b->nnodes) fail_msg("%s: %d nodes vs %d", label, a->nnodes, b->nnodes);
    for (int i = 0; i < a->nnodes; i++) {
        const lathe_node *x = a->nodes[i], *y = b->nodes[i];
        SAME(x->id == i && y->id == i, "id");
        SAME(x->op == y->op, "op");
        SAME(x->dtype == y->dtype, "dtype");
        SAME(x->rank == y->rank, "rank");
        SAME(memcmp(x->shape, y->shape, sizeof(int64_t) * (size_t)x->rank) == 0, "shape");
        SAME(x->numel == y->numel, "numel");
        SAME(x->nin == y->nin, "operand count");
        for (int k = 0; k < x->nin; k++) SAME(x->in[k]->id == y->in[k]->id, "operand");
        lt_attrspec spec[LT_MAX_ATTRS];
        int na = lt_op_schema(x->op, spec);
        for (int k = 0; k < na; k++) SAME(same_attr(spec[k].type, &x->attr[k], &y->attr[k]), spec[k].name);
        SAME((x->name == NULL) == (y->name == NULL), "name");
        SAME(!x->name || strcmp(x->name, y->name) == 0, "name");
        SAME(x->requires_grad == y->requires_grad, "requires_grad");
        SAME(x->no_grad == y->no_grad, "no_grad");
        SAME(x->init == y->init && memcmp(&x->init_a, &y->init_a, sizeof x->init_a) == 0, "init");
        if (x->op == LT_OP_CONST)
            SAME(memcmp(x->data, y->data, (size_t)x->numel * lathe_dtype_size(x->dtype)) == 0, "const data");
    }
    if (a->nout != b->nout) fail_msg("%s: %d outputs vs %d", label, a->nout, b->nout);
    for (int i = 0; i < a->nout; i++) {
        if (strcmp(a->outputs[i].name, b->outputs[i].name) != 0) fail_msg("%s: output %d name", label, i);
        if (a->outputs[i].node->id != b->outputs[i].node->id) fail_msg("%s: output %d value", label, i);
    }
    if (a->nupd != b->nupd) fail_msg("%s: %d updates vs %d", label, a->nupd, b->nupd);
    for (int i = 0; i < a->nupd; i++)
        if (a->updates[i].buffer->id != b->updates[i].buffer->id ||
            a->updates[i].value->id != b->updates[i].value->id)
            fail_msg("%s: update %d", label, i);
}

/* print -> parse -> print: identical text and an identical graph. */
static void round_trip(const lathe_graph *g, const char *label) {
    char *t1 = to_text(g);
    lathe_graph *h = lathe_graph_new();
    assert_non_null(h);
    if (lathe_parse(h, t1, strlen(t1), label) != LATHE_OK)
        fail_msg("%s: parse failed: %s\n%s", label, lathe_graph_error(h), t1);
    if (lathe_graph_verify(h) != LATHE_OK) fail_msg("%s: verify: %s", label, lathe_graph_error(h));
    char *t2 = to_text(h);
    if (strcmp(t1, t2) != 0) fail_msg("%s: text differs after a round trip:\n%s\n---\n%s", label, t1, t2);
    assert_same_graph(g, h, label);
    free(t1);
    free(t2);
    lathe_graph_free(h);
}

static const sample *find_sample(const char *label) {
    for (int i = 0; i < nsamples; i++)
        if (strcmp(samples[i].label, label) == 0) return &samples[i];
    fail_msg("no sample %s", label);
    return NULL;
}

/* ---- 1. round trips over the sample table ---------------------------------- */

static void test_round_trip_samples(void **state) {
    (void)state;
    static const lathe_dtype dtypes[] = {LATHE_F32, LATHE_F64};
    for (int i = 0; i < nsamples; i++)
        for (int d = 0; d < 2; d++) {
            lathe_graph *g = sample_graph(&samples[i], dtypes[d]);
            bool has_op = false;
            for (int k = 0; k < g->nnodes; k++) has_op = has_op || g->nodes[k]->op == samples[i].op;
            if (!has_op) fail_msg("sample %s does not contain its op", samples[i].label);
            char label[96];
            snprintf(label, sizeof label, "%s/%s", samples[i].label, lathe_dtype_name(dtypes[d]));
            round_trip(g, label);
            lathe_graph_free(g);
        }
}

static void test_every_op_has_a_sample(void **state) {
    (void)state;
    bool seen[LT_OP_COUNT] = {0};
    for (int i = 0; i < nsamples; i++) seen[samples[i].op] = true;
    for (int op = 0; op < LT_OP_COUNT; op++)
        if (!seen[op]) fail_msg("op %s has no sample in testutil.c", lt_ops[op].name);
}

/* ---- 2. special cases ---------------------------------------------------------- */

static void test_const_values_bit_exact(void **state) {
    (void)state;
    const float f[] = {INFINITY, -INFINITY, NAN, copysignf(NAN, -1.0f), -0.0f, 0.0f, FLT_TRUE_MIN,
                       -FLT_TRUE_MIN, FLT_MIN, FLT_MIN / 3, FLT_MAX, -FLT_MAX, 0.1f, 1.0f / 3,
                       16777216.0f, 1e-40f, 123456.789f, -2.5e-12f};
    const double d[] = {INFINITY, -INFINITY, NAN, copysign(NAN, -1.0), -0.0, 0.0, DBL_TRUE_MIN,
                        -DBL_TRUE_MIN, DBL_MIN, DBL_MIN / 3, DBL_MAX, -DBL_MAX, 0.1, 1.0 / 3,
                        9007199254740993.0, 1e-310, (double)0.1f, nextafter(1.0, 2.0)};
    const int64_t i64[] = {INT64_MIN, INT64_MAX, 0, -1, ((int64_t)1 << 53) + 1};
    const bool b[] = {true, false, true};
    lathe_graph *g = lathe_graph_new();
    lathe_node *cf = lathe_const(g, LATHE_F32, LATHE_DIMS(sizeof f / sizeof f[0]), f);
    lathe_node *cd = lathe_const(g, LATHE_F64, LATHE_DIMS(sizeof d / sizeof d[0]), d);
    lathe_node *ci = lathe_const(g, LATHE_I64, LATHE_DIMS(sizeof i64 / sizeof i64[0]), i64);
    lathe_node *cb = lathe_const(g, LATHE_BOOL, LATHE_DIMS(3), b);
    lathe_node *empty = lathe_const(g, LATHE_F32, LATHE_DIMS(2, 0), NULL);
    lathe_node *s1 = lathe_scalar(g, LATHE_F32, 0.1), *s2 = lathe_scalar(g, LATHE_F64, -0.0);
    lathe_node *s3 = lathe_scalar(g, LATHE_BOOL, 1), *s4 = lathe_scalar(g, LATHE_I64, -7);
    lathe_node *x = lathe_input(g, "x", LATHE_F64, LATHE_DIMS(2));
    static const double exps[] = {0.1, 1e-300, -0.0, 1.0 / 3, INFINITY, -INFINITY, NAN, 2.5};
    for (size_t k = 0; k < sizeof exps / sizeof exps[0]; k++) {
        char name[16];
        snprintf(name, sizeof name, "p%zu", k);
        lathe_output(g, name, lathe_pow_scalar(g, x, exps[k]));
    }
    lathe_output(g, "f", cf);
    lathe_output(g, "d", cd);
    lathe_output(g, "i", ci);
    lathe_output(g, "b", cb);
    lathe_output(g, "e", empty);
    lathe_output(g, "s1", s1);
    lathe_output(g, "s2", s2);
    lathe_output(g, "s3", s3);
    lathe_output(g, "s4", s4);
    assert_graph_ok(g);
    round_trip(g, "consts");
    char *t = to_text(g);
    /* the words, and the shortest digits that read back exactly */
    static const char *want[] = {"[inf, -inf, nan, -nan, -0, 0, ", "%5 = const f32[] 0.1\n",
                                 "%6 = const f64[] -0\n", "%7 = const bool[] true\n",
                                 "%8 = const i64[] -7\n", "[-9223372036854775808, 9223372036854775807,",
                                 "exponent=0.1 ", "exponent=-inf ", "exponent=nan ",
                                 "%4 = const f32[2,0] []\n"};
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++)
        if (!strstr(t, want[k])) fail_msg("missing '%s' in:\n%s", want[k], t);
    free(t);
    lathe_graph_free(g);
}

static void test_forward_references(void **state) {
    (void)state;
    lathe_graph *g = parse_ok("output \"y\" %s\n"
                              "%s = add %a, %b : f32[2]\n"
                              "%b = exp %a\n"
                              "%a = input \"a\" f32[2] grad\n",
                              "fwd.ir");
    char *t = to_text(g);
    assert_string_equal(t, "# lathe ir\n"
                           "%0 = input \"a\" f32[2] grad\n"
                           "%1 = exp %0 : f32[2]\n"
                           "%2 = add %0, %1 : f32[2]\n"
                           "output \"y\" %2\n");
    /* nodes remember their statement's line */
    assert_int_equal(g->nodes[0]->line, 4);
    assert_int_equal(g->nodes[1]->line, 3);
    assert_int_equal(g->nodes[2]->line, 2);
    assert_int_equal(g->nodes[2]->col, 1);
    assert_int_equal(g->cur_line, 0);
    free(t);
    lathe_graph_free(g);
}

/* lathe_set_init's initializers print as init=KIND(A) and parse back to the
 * same kind and the same bits of A. */
static void test_initializers(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *e = lathe_param(g, "wte.weight", LATHE_F32, LATHE_DIMS(5, 4), true);
    lathe_node *w = lathe_param(g, "w", LATHE_F64, LATHE_DIMS(4), false);
    lathe_node *b = lathe_buffer(g, "b", LATHE_F32, LATHE_DIMS(4));
    lathe_node *a = lathe_param(g, "a", LATHE_F32, LATHE_DIMS(4), true); /* AUTO: nothing printed */
    assert_int_equal(lathe_set_init(e, LATHE_LEAF_INIT_NORMAL, 0.02), LATHE_OK);
    assert_int_equal(lathe_set_init(w, LATHE_LEAF_INIT_UNIFORM, 1.0 / 3), LATHE_OK);
    assert_int_equal(lathe_set_init(b, LATHE_LEAF_INIT_CONST, -1.5), LATHE_OK);
    lathe_node *h = lathe_index_select(g, e, 0, lathe_input(g, "t", LATHE_I64, LATHE_DIMS(3)));
    lathe_output(g, "y", lathe_add(g, lathe_mul(g, h, lathe_add(g, b, a)), lathe_cast(g, w, LATHE_F32)));
    assert_graph_ok(g);
    round_trip(g, "initializers");
    char *t = to_text(g);
    assert_non_null(strstr(t, "%0 = param \"wte.weight\" f32[5,4] grad init=normal(0.02)\n"));
    assert_non_null(strstr(t, "%1 = param \"w\" f64[4] init=uniform(0.3333333333333333)\n"));
    assert_non_null(strstr(t, "%2 = buffer \"b\" f32[4] init=const(-1.5)\n"));
    assert_non_null(strstr(t, "%3 = param \"a\" f32[4] grad\n"));
    free(t);
    lathe_graph_free(g);
}

static void test_no_grad_flag(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_input(g, "x", LATHE_F32, LATHE_DIMS(2));
    lathe_set_requires_grad(x, true);
    lathe_no_grad_begin(g);
    lathe_node *y = lathe_exp(g, x);
    lathe_node *c = lathe_scalar(g, LATHE_F32, 2);
    lathe_no_grad_end(g);
    lathe_output(g, "z", lathe_add(g, lathe_mul(g, y, c), x));
    assert_graph_ok(g);
    round_trip(g, "no_grad");
    char *t = to_text(g);
    assert_non_null(strstr(t, "%1 = exp %0 nograd : f32[2]\n"));
    assert_non_null(strstr(t, "%2 = const f32[] 2 nograd\n"));
    lathe_graph *h = parse_ok(t, "no_grad.ir");
    assert_true(h->nodes[1]->no_grad);
    assert_false(lathe_requires_grad(h->nodes[1]));
    assert_false(h->nodes[3]->no_grad);
    assert_true(lathe_requires_grad(h->nodes[4]));
    free(t);
    lathe_graph_free(h);
    lathe_graph_free(g);
}

static void test_names_comments_layout(void **state) {
    (void)state;
    /* comments, blank lines, tabs, CRLF, dotted names, no trailing newline */
    lathe_graph *g = parse_ok("# a model\n"
                              "\n"
                              "   \t\n"
                              "%conv1.weight = param \"conv1.weight\" f32[2] grad   # trainable\r\n"
                              "\t%x_0=input \"x\" f32[2]#no space before the comment\n"
                              "%frozen.b = param \"fc.b\" f32[2]\n"
                              "%y.1 = mul %x_0,%conv1.weight:f32[2]\n"
                              "%z = add %y.1, %frozen.b nograd\n"
                              "# outputs\n"
                              "output \"out.y\" %z",
                              "layout.ir");
    char *t = to_text(g);
    assert_string_equal(t, "# lathe ir\n"
                           "%0 = param \"conv1.weight\" f32[2] grad\n"
                           "%1 = input \"x\" f32[2]\n"
                           "%2 = param \"fc.b\" f32[2]\n"
                           "%3 = mul %1, %0 : f32[2]\n"
                           "%4 = add %3, %2 nograd : f32[2]\n"
                           "output \"out.y\" %4\n");
    free(t);
    lathe_graph_free(g);
    /* an empty file and a file of comments are empty graphs */
    static const char *empties[] = {"", "\n\n", "# nothing\n# here", "   "};
    for (size_t i = 0; i < sizeof empties / sizeof empties[0]; i++) {
        g = parse_ok(empties[i], "empty.ir");
        assert_int_equal(lathe_graph_num_nodes(g), 0);
        lathe_graph_free(g);
    }
}

static void test_string_escapes(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *a = lathe_param(g, "we\"ird\\name", LATHE_F32, LATHE_DIMS(2), true);
    lathe_node *b = lathe_input(g, "tab\there\nnl\x01" "ctl-\xc3\xa9", LATHE_F32, LATHE_DIMS(2));
    lathe_output(g, "out \"quoted\"", lathe_add(g, a, b));
    assert_graph_ok(g);
    round_trip(g, "escapes");
    char *t = to_text(g);
    assert_non_null(strstr(t, "\"we\\\"ird\\\\name\""));
    assert_non_null(strstr(t, "\"tab\\there\\nnl\\x01ctl-\xc3\xa9\""));
    free(t);
    lathe_graph_free(g);
}

static void test_parse_file(void **state) {
    (void)state;
    char path[] = "/tmp/lathe_test_text_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *src = "%0 = input \"a\" f32[2]\n%1 = neg %0\noutput \"y\" %1\n";
    assert_int_equal(write(fd, src, strlen(src)), (ssize_t)strlen(src));
    close(fd);
    lathe_graph *g = lathe_graph_new();
    assert_int_equal(lathe_parse_file(g, path), LATHE_OK);
    assert_int_equal(lathe_graph_num_nodes(g), 2);
    lathe_graph_free(g);
    /* messages name the path */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("%0 = input \"a\" f32[2]\n%1 = nneg %0\n", f);
    fclose(f);
    g = lathe_graph_new();
    assert_int_equal(lathe_parse_file(g, path), LATHE_ERR_PARSE);
    assert_non_null(strstr(lathe_graph_error(g), path));
    assert_non_null(strstr(lathe_graph_error(g), ":2:6: unknown op 'nneg'"));
    lathe_graph_free(g);
    unlink(path);
    g = lathe_graph_new();
    assert_int_equal(lathe_parse_file(g, path), LATHE_ERR_IO);
    assert_non_null(strstr(lathe_graph_error(g), path));
    assert_non_null(strstr(lathe_graph_error(g), "No such file"));
    lathe_graph_free(g);
}

static void test_parse_needs_empty_graph(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_input(g, "x", LATHE_F32, LATHE_DIMS(2));
    const char *src = "%0 = input \"a\" f32[2]\n";
    assert_int_equal(lathe_parse(g, src, strlen(src), "t.ir"), LATHE_ERR_ARG);
    assert_int_equal(lathe_graph_status(g), LATHE_ERR_ARG);
    assert_non_null(strstr(lathe_graph_error(g), "t.ir: lathe_parse needs an empty graph"));
    assert_int_equal(lathe_graph_num_nodes(g), 1);
    lathe_graph_free(g);
}

/* A chain of n negations written last-first, so the walk goes n deep. */
static char *chain_text(int n, bool closed) {
    size_t cap = (size_t)n * 40 + 64, k = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    for (int i = n - 1; i >= 1; i--) k += (size_t)snprintf(s + k, cap - k, "%%n%d = neg %%n%d\n", i, i - 1);
    if (closed) k += (size_t)snprintf(s + k, cap - k, "%%n0 = neg %%n%d\n", n - 1);
    else k += (size_t)snprintf(s + k, cap - k, "%%n0 = input \"x\" f32[1]\n");
    snprintf(s + k, cap - k, "output \"y\" %%n%d\n", n - 1);
    return s;
}

static void test_deep_graph(void **state) {
    (void)state;
    enum { N = 100000 };
    char *s = chain_text(N, false);
    lathe_graph *g = parse_ok(s, "deep.ir");
    assert_int_equal(lathe_graph_num_nodes(g), N);
    assert_string_equal(lathe_node_name(lathe_graph_node(g, 0)), "x");
    assert_int_equal(lathe_node_id(lathe_graph_output(g, 0)), N - 1);
    assert_int_equal(lathe_graph_verify(g), LATHE_OK);
    lathe_graph_free(g);
    free(s);
    s = chain_text(N, true);
    g = lathe_graph_new();
    assert_int_equal(lathe_parse(g, s, strlen(s), "deep.ir"), LATHE_ERR_CYCLE);
    const char *m = lathe_graph_error(g);
    assert_non_null(strstr(m, "cycle: %n99999 -> %n99998 -> "));
    assert_non_null(strstr(m, " -> ... -> "));
    assert_non_null(strstr(m, "-> %n0 -> %n99999\n"));
    lathe_graph_free(g);
    free(s);
}

/* ---- 3. bad inputs --------------------------------------------------------------- */

typedef struct {
    const char *src;
    size_t len;             /* 0: strlen(src) */
    lathe_status status;
    const char *msg[3];     /* substrings the message must contain */
} bad_case;

#define A "%0 = input \"a\" f32[2] grad\n"
#define X4 "%0 = input \"x\" f32[1,1,3,3]\n%1 = param \"w\" f32[1,1,1,1] grad\n"

static const bad_case bad_cases[] = {
    /* ops and attributes */
    {A "%1 = ad %0, %0\n", 0, LATHE_ERR_PARSE, {"t.ir:2:6: unknown op 'ad'\n  %1 = ad %0, %0\n       ^"}},
    {A "%1 = sum %0 axis=[0] keepdim=false\n", 0, LATHE_ERR_PARSE,
     {"t.ir:2:13: unknown attribute 'axis' for sum", "(it has axes=[INTS] keepdim=true|false)"}},
    {A "%1 = add %0, %0 alpha=1\n", 0, LATHE_ERR_PARSE, {"t.ir:2:17: unknown attribute 'alpha': add has no attributes"}},
    {A "%1 = sum %0 axes=[0]\n", 0, LATHE_ERR_PARSE, {"t.ir:2:6: sum: missing attribute 'keepdim'"}},
    {A "%1 = sum %0 axes=[0] keepdim=maybe\n", 0, LATHE_ERR_PARSE,
     {"t.ir:2:30: expected true or false for 'keepdim', got 'maybe'"}},
    {A "%1 = sum %0 axes=[0] keepdim=true keepdim=false\n", 0, LATHE_ERR_PARSE,
     {"t.ir:2:35: attribute 'keepdim' given twice"}},
    {A "%1 = sum %0 axes=0 keepdim=true\n", 0, LATHE_ERR_PARSE, {"t.ir:2:18: expected '[' to start the list of axes, got '0'"}},
    {A "%1 = sum %0 axes=[0,1,2,3,4,5,6] keepdim=true\n", 0, LATHE_ERR_PARSE, {"t.ir:2:31: axes takes at most 6 values"}},
    {A "%1 = sum %0 axes=[0,] keepdim=true\n", 0, LATHE_ERR_PARSE, {"t.ir:2:21: expected an integer in axes, got ']'"}},
    {A "%1 = sum %0 axes keepdim=true\n", 0, LATHE_ERR_PARSE, {"t.ir:2:18: expected '=' after the attribute name"}},
    {X4 "%2 = conv2d %0, %1 stride=[1] padding=[0,0] dilation=[1,1] groups=1\n", 0, LATHE_ERR_PARSE,
     {"t.ir:3:27: stride takes 2 values [h,w], got 1"}},
    {X4 "%2 = conv2d %0, %1 stride=[] padding=[0,0] dilation=[1,1] groups=1\n", 0, LATHE_ERR_PARSE,
     {"t.ir:3:27: stride takes 2 values [h,w], got 0"}},
    {A "%1 = softmax %0 axis=99999999999999999999\n", 0, LATHE_ERR_PARSE,
     {"t.ir:2:22: integer '99999999999999999999' is out of range for int64"}},
    {A "%1 = softmax %0 axis=1.5\n", 0, LATHE_ERR_PARSE, {"t.ir:2:22: expected an integer for 'axis', got '1.5'"}},
    {A "%1 = pow_scalar %0 exponent=1.2.3\n", 0, LATHE_ERR_PARSE, {"t.ir:2:29: malformed number '1.2.3'"}},
    {A "%1 = pow_scalar %0 exponent=1e999\n", 0, LATHE_ERR_PARSE, {"t.ir:2:29: '1e999' is out of range for f64"}},
    {A "%1 = pow_scalar %0 exponent=two\n", 0, LATHE_ERR_PARSE, {"t.ir:2:29: expected a number for 'exponent', got 'two'"}},
    {A "%1 = pow_scalar %0 exponent=0x10\n", 0, LATHE_ERR_PARSE, {"t.ir:2:29: expected a number for 'exponent', got '0x10'"}},
    {A "%1 = cast %0 dtype=f16\n", 0, LATHE_ERR_PARSE, {"t.ir:2:20: unknown dtype 'f16'"}},
    {"%0 = input \"x\" f32[2,2]\n%1 = input \"l\" i64[2]\n%2 = cross_entropy %0, %1 reduction=avg\n", 0,
     LATHE_ERR_PARSE, {"t.ir:3:37: expected none, mean or sum for 'reduction', got 'avg'"}},
    {A "%1 = softmax %0 axis=5\n", 0, LATHE_ERR_ARG, {"t.ir:2:6: softmax: axis 5 out of range"}},
    {A "%1 = layer_norm %0 normalized_shape=[] eps=1e-5\n", 0, LATHE_ERR_ARG,
     {"t.ir:2:6: layer_norm: normalized_shape must list at least one dim (input f32[2])"}},
    {A "%1 = layer_norm %0 normalized_shape=[3] eps=1e-5\n", 0, LATHE_ERR_SHAPE,
     {"t.ir:2:6: layer_norm: normalized_shape [3] does not match the last 1 dims of input f32[2]"}},
    /* names */
    {A "%1 = neg %x\n", 0, LATHE_ERR_NAME, {"t.ir:2:10: undefined name %x"}},
    {A "%0 = input \"b\" f32[2]\n", 0, LATHE_ERR_NAME,
     {"t.ir:2:1: %0 is already defined (first definition at line 1, column 1)"}},
    {A "%1 = input \"a\" f32[2]\n", 0, LATHE_ERR_NAME, {"t.ir:2:6: input: duplicate name 'a'"}},
    {"%0 = input \"\" f32[2]\n", 0, LATHE_ERR_NAME, {"t.ir:1:6: input: empty name"}},
    {A "output \"y\" %9\n", 0, LATHE_ERR_NAME, {"t.ir:2:12: undefined name %9"}},
    {"%0 = buffer \"b\" f32[2]\nupdate %0 %9\n", 0, LATHE_ERR_NAME, {"t.ir:2:11: undefined name %9"}},
    {A "output \"y\" %0\noutput \"y\" %0\n", 0, LATHE_ERR_NAME, {"t.ir:3:1: output: duplicate name 'y'"}},
    {"% = neg\n", 0, LATHE_ERR_PARSE, {"t.ir:1:1: expected a name after '%'"}},
    /* operands and shapes */
    {A "%1 = add %0\n", 0, LATHE_ERR_ARG, {"t.ir:2:6: add: expected 2 operands, got 1"}},
    {A "%1 = add %0 %0\n", 0, LATHE_ERR_PARSE, {"t.ir:2:13: expected ',', an attribute", "got '%0'"}},
    {A "%1 = add %0,\n", 0, LATHE_ERR_PARSE, {"t.ir:2:13: unexpected end of line, expected an operand"}},
    {"%0 = input \"a\" f32[2]\n%1 = input \"b\" f32[3]\n%2 = add %0, %1\n", 0, LATHE_ERR_SHAPE,
     {"t.ir:3:6: add: cannot broadcast f32[2], f32[3]", "\n  %2 = add %0, %1\n       ^"}},
    {A "%1 = neg %0 : f32[3]\n", 0, LATHE_ERR_SHAPE,
     {"t.ir:2:15: type annotation f32[3] does not match the inferred type f32[2]"}},
    {A "%1 = neg %0 : f64[2]\n", 0, LATHE_ERR_DTYPE, {"t.ir:2:15: type annotation f64[2] does not match"}},
    {A "%1 = neg %0 : f32[2] nograd\n", 0, LATHE_ERR_PARSE, {"t.ir:2:22: expected end of line, got 'nograd'"}},
    {A "%1 = neg %0 grad\n", 0, LATHE_ERR_ARG, {"t.ir:2:13: neg cannot take 'grad'"}},
    /* cycles */
    {"%a = neg %b\n%b = neg %a\n", 0, LATHE_ERR_CYCLE, {"t.ir:2:10: cycle: %a -> %b -> %a"}},
    {"%a = neg %a\n", 0, LATHE_ERR_CYCLE, {"t.ir:1:10: cycle: %a -> %a"}},
    {A "%1 = add %0, %3\n%2 = exp %1\n%3 = mul %2, %0\n", 0, LATHE_ERR_CYCLE,
     {"t.ir:3:10: cycle: %1 -> %3 -> %2 -> %1"}},
    /* truncation */
    {"%0 = input \"a\" f32[2", 0, LATHE_ERR_PARSE, {"t.ir:1:21: unexpected end of file, expected ',' or ']'"}},
    {"%0 =", 0, LATHE_ERR_PARSE, {"t.ir:1:5: unexpected end of file, expected an op name"}},
    {"%0 = input\n", 0, LATHE_ERR_PARSE, {"t.ir:1:11: unexpected end of line, expected the tensor name"}},
    {A "%1 = sum %0 axes=[0", 0, LATHE_ERR_PARSE, {"t.ir:2:20: unexpected end of file, expected ','"}},
    {A "output \"y", 0, LATHE_ERR_PARSE, {"t.ir:2:8: unterminated string"}},
    {A "update %0", 0, LATHE_ERR_PARSE, {"t.ir:2:10: unexpected end of file, expected the buffer's new value"}},
    /* types */
    {"%0 = input \"a\" f32 2\n", 0, LATHE_ERR_PARSE, {"t.ir:1:20: expected '[' after the dtype, got '2'"}},
    {"%0 = input \"a\" f32[2 3]\n", 0, LATHE_ERR_PARSE, {"t.ir:1:22: expected ',' or ']' in the shape, got '3'"}},
    {"%0 = input \"a\" f16[2]\n", 0, LATHE_ERR_PARSE, {"t.ir:1:16: unknown dtype 'f16' (expected f32, f64, i64 or bool)"}},
    {"%0 = input \"a\" [2]\n", 0, LATHE_ERR_PARSE, {"t.ir:1:16: expected a type such as f32[2,3], got '['"}},
    {"%0 = input \"a\" f32[1,1,1,1,1,1,1]\n", 0, LATHE_ERR_SHAPE, {"t.ir:1:32: rank exceeds the maximum of 6"}},
    {"%0 = input \"a\" f32[100000000,100000000,100000000]\n", 0, LATHE_ERR_SHAPE,
     {"t.ir:1:6: input 'a': element count of f32[100000000,100000000,100000000] overflows"}},
    {"%0 = input \"a\" f32[1000000000000000000]\n", 0, LATHE_ERR_SHAPE,
     {"t.ir:1:20: dimension 1000000000000000000 exceeds the limit"}},
    {"%0 = input \"a\" f32[99999999999999999999]\n", 0, LATHE_ERR_PARSE, {"t.ir:1:20: integer", "out of range"}},
    {"%0 = input \"a\" f32[-1]\n", 0, LATHE_ERR_SHAPE, {"t.ir:1:6: input 'a': negative dimension in f32[-1]"}},
    {"%0 = input \"l\" i64[2] grad\n", 0, LATHE_ERR_DTYPE,
     {"t.ir:1:6: input 'l': only floating-point tensors can require grad"}},
    {"%0 = buffer \"b\" f32[2] grad\n", 0, LATHE_ERR_ARG, {"t.ir:1:24: buffer cannot take 'grad'"}},
    /* initializers */
    {"%0 = input \"a\" f32[2] init=normal(1)\n", 0, LATHE_ERR_ARG,
     {"t.ir:1:23: input cannot take 'init': only params and buffers are initialized"}},
    {"%0 = param \"w\" f32[2] init=gauss(1)\n", 0, LATHE_ERR_PARSE,
     {"t.ir:1:28: expected an initializer: uniform(A), const(V), normal(STD) or seed(0), got 'gauss'"}},
    {"%0 = param \"w\" f32[2] init=normal 1\n", 0, LATHE_ERR_PARSE,
     {"t.ir:1:35: expected '(' and the initializer's number, got '1'"}},
    {"%0 = param \"w\" f32[2] init=normal(1\n", 0, LATHE_ERR_PARSE,
     {"t.ir:1:36: unexpected end of line, expected ')' after the initializer's number"}},
    {"%0 = param \"w\" f32[2] init=normal(-1)\n", 0, LATHE_ERR_ARG,
     {"t.ir:1:23: set_init 'w': bad initializer normal(-1)", "standard deviation >= 0"}},
    {"%0 = buffer \"b\" f32[2] init=uniform(nan)\n", 0, LATHE_ERR_ARG, {"t.ir:1:24: set_init 'b': bad initializer uniform(nan)"}},
    {"%0 = param \"w\" f32[2] zeros\n", 0, LATHE_ERR_PARSE,
     {"t.ir:1:23: expected 'init=...', 'nograd', ': TYPE' or end of line, got 'zeros'"}},
    /* constants */
    {"%0 = const f32[2,2] [1, 2, 3]\n", 0, LATHE_ERR_SHAPE, {"t.ir:1:21: const f32[2,2] needs 4 values, got 3"}},
    {"%0 = const f32[] [1]\n", 0, LATHE_ERR_PARSE, {"t.ir:1:18: a rank-0 const takes one value without brackets"}},
    {"%0 = const f32[2] 1\n", 0, LATHE_ERR_PARSE, {"t.ir:1:19: expected '[' and the const's values, got '1'"}},
    {"%0 = const i64[2] [1, 2.5]\n", 0, LATHE_ERR_PARSE, {"t.ir:1:23: expected an i64 value (an integer), got '2.5'"}},
    {"%0 = const i64[] 9223372036854775808\n", 0, LATHE_ERR_PARSE, {"t.ir:1:18: integer", "out of range for int64"}},
    {"%0 = const bool[1] [2]\n", 0, LATHE_ERR_PARSE, {"t.ir:1:21: expected a bool value (true or false), got '2'"}},
    {"%0 = const f32[] 1e39\n", 0, LATHE_ERR_PARSE, {"t.ir:1:18: '1e39' is out of range for f32"}},
    {"%0 = const f32[] infinity\n", 0, LATHE_ERR_PARSE, {"t.ir:1:18: expected an f32 value, got 'infinity'"}},
    {"%0 = const f32[2] [1 2]\n", 0, LATHE_ERR_PARSE, {"t.ir:1:22: expected ',' or ']' after a value, got '2'"}},
    {"%0 = const f32[] grad\n", 0, LATHE_ERR_PARSE, {"t.ir:1:18: expected an f32 value, got 'grad'"}},
    {"%0 = const f32[] 1 grad\n", 0, LATHE_ERR_ARG, {"t.ir:1:20: const cannot take 'grad'"}},
    /* statements, strings and stray bytes */
    {"foo bar\n", 0, LATHE_ERR_PARSE, {"t.ir:1:1: expected a statement", "got 'foo'"}},
    {A "output \"y\" %0 %0\n", 0, LATHE_ERR_PARSE, {"t.ir:2:15: expected end of line, got '%0'"}},
    {A "%1 = neg %0 @\n", 0, LATHE_ERR_PARSE, {"t.ir:2:13: unexpected character '@'"}},
    {"%0 = input \"a\" f32[2] \x01\n", 0, LATHE_ERR_PARSE, {"t.ir:1:23: unexpected byte 0x01", "\n  %0 = input \"a\" f32[2] ?\n"}},
    {"%0 = input\0 \"a\" f32[2]\n", 23, LATHE_ERR_PARSE, {"t.ir:1:11: unexpected byte 0x00"}},
    {"\xff\xfe", 0, LATHE_ERR_PARSE, {"t.ir:1:1: unexpected byte 0xff"}},
    {"%0 = input \"a f32[2]\n", 0, LATHE_ERR_PARSE, {"t.ir:1:12: unterminated string"}},
    {"%0 = input \"a\\q\" f32[2]\n", 0, LATHE_ERR_PARSE, {"t.ir:1:14: unknown escape '\\q'"}},
    {"%0 = input \"a\\x0\" f32[2]\n", 0, LATHE_ERR_PARSE, {"t.ir:1:14: bad escape: \\x needs two hex digits"}},
    {"%0 = input \"a\x01\" f32[2]\n", 0, LATHE_ERR_PARSE, {"t.ir:1:14: control character 0x01 in a string"}},
    /* outputs and updates */
    {A "%1 = neg %0\nupdate %0 %1\n", 0, LATHE_ERR_ARG, {"t.ir:3:1: update: target %0"}},
    {"%0 = buffer \"b\" f32[2]\n%1 = const f32[3] [1, 2, 3]\nupdate %0 %1\n", 0, LATHE_ERR_SHAPE,
     {"t.ir:3:1: update 'b': buffer is f32[2] but value is f32[3]"}},
    {"%0 = buffer \"b\" f32[2]\nupdate %0 %0\nupdate %0 %0\n", 0, LATHE_ERR_NAME, {"t.ir:3:1: update: buffer 'b' already has"}},
};

static void test_bad_inputs(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *c = &bad_cases[i];
        lathe_graph *g = lathe_graph_new();
        size_t len = c->len ? c->len : strlen(c->src);
        lathe_status st = lathe_parse(g, c->src, len, "t.ir");
        const char *m = lathe_graph_error(g);
        if (st != c->status || lathe_graph_status(g) != st)
            fail_msg("bad case %zu (%s): status '%s', expected '%s'; message:\n%s", i, c->msg[0],
                     lathe_status_name(st), lathe_status_name(c->status), m);
        if (strncmp(m, "t.ir:", 5) != 0) fail_msg("bad case %zu: message does not start with the file: %s", i, m);
        for (int k = 0; k < 3 && c->msg[k]; k++)
            if (!strstr(m, c->msg[k])) fail_msg("bad case %zu: message lacks '%s':\n%s", i, c->msg[k], m);
        lathe_graph_free(g);
    }
}

/* A long line is cut around the column, and the caret still points at it. */
static void test_long_line_caret(void **state) {
    (void)state;
    char src[4096];
    size_t k = (size_t)snprintf(src, sizeof src, "%%0 = const f32[400] [");
    for (int i = 0; i < 399; i++) k += (size_t)snprintf(src + k, sizeof src - k, "%d, ", i);
    snprintf(src + k, sizeof src - k, "oops]\n");
    lathe_graph *g = lathe_graph_new();
    assert_int_equal(lathe_parse(g, src, strlen(src), "t.ir"), LATHE_ERR_PARSE);
    const char *m = lathe_graph_error(g);
    assert_non_null(strstr(m, "got 'oops'"));
    const char *line = strstr(m, "\n  ..."), *caret = line ? strchr(line + 1, '\n') : NULL;
    assert_non_null(line);
    assert_non_null(caret);
    size_t col = strlen(caret + 1) - 1; /* caret line: spaces then '^' */
    assert_true(caret[1 + col] == '^');
    assert_memory_equal(line + 1 + col, "oops]", 5);
    lathe_graph_free(g);
}

/* ---- 4. fuzz ------------------------------------------------------------------------- */

static int fuzz_runs;

static void fuzz_one(const char *src, size_t len) {
    /* exactly len bytes on the heap, so a read past the end is caught */
    char *buf = malloc(len ? len : 1);
    assert_non_null(buf);
    memcpy(buf, src, len);
    lathe_graph *g = lathe_graph_new();
    lathe_status st = lathe_parse(g, buf, len, "fuzz.ir");
    const char *m = lathe_graph_error(g);
    if (st == LATHE_OK) {
        if (m[0]) fail_msg("ok with a message: %s", m);
        if (lathe_graph_verify(g) != LATHE_OK) fail_msg("parsed graph fails verify: %s", lathe_graph_error(g));
        free(to_text(g));
    } else {
        if (lathe_graph_status(g) != st) fail_msg("status %d but graph has %d", st, lathe_graph_status(g));
        if (strncmp(m, "fuzz.ir:", 8) != 0 || strlen(m) < 12) fail_msg("bad message for status %d: '%s'", st, m);
    }
    lathe_graph_free(g);
    free(buf);
    fuzz_runs++;
}

static void fuzz_text(const char *t, uint64_t seed) {
    size_t len = strlen(t);
    for (size_t k = 0; k <= len; k++) fuzz_one(t, k);
    char *m = malloc(len + 1);
    assert_non_null(m);
    rng r = {seed};
    static const char repl[] = {'\0', '%', '[', ']', ',', '\n', '"', '\\', '#', '-', '9', '=', ':', ' '};
    for (int i = 0; i < 200; i++) {
        size_t pos = (size_t)rng_uniform(&r, 0, (double)len);
        for (size_t v = 0; v < sizeof repl + 4; v++) {
            memcpy(m, t, len);
            unsigned char c = (unsigned char)t[pos];
            size_t n = len;
            if (v < sizeof repl) c = (unsigned char)repl[v];
            else if (v == sizeof repl) c ^= 1;
            else if (v == sizeof repl + 1) c ^= 0x20;
            else if (v == sizeof repl + 2) c = (unsigned char)rng_uniform(&r, 0, 256);
            if (v == sizeof repl + 3) { /* delete the byte */
                memmove(m + pos, m + pos + 1, len - pos - 1);
                n--;
            } else {
                m[pos] = (char)c;
            }
            fuzz_one(m, n);
        }
    }
    free(m);
}

static void test_fuzz(void **state) {
    (void)state;
    static const char *labels[] = {"batch_norm2d/train", "conv2d/hw-depthwise", "const", "concat",
                                   "cross_entropy", "cast/int", "slice/negative", "sum/neg-axes"};
    for (size_t i = 0; i < sizeof labels / sizeof labels[0]; i++) {
        lathe_graph *g = sample_graph(find_sample(labels[i]), i % 2 ? LATHE_F64 : LATHE_F32);
        char *t = to_text(g);
        fuzz_text(t, 1000 + i);
        free(t);
        lathe_graph_free(g);
    }
    /* forward references, escapes, comments, annotations */
    fuzz_text("# header\noutput \"o\\\"k\" %s # the sum\n%s = add %a, %b nograd : f32[2]\n"
              "%b = exp %a\n%a = param \"a.\\x01\" f32[2] grad\n%c = const bool[2] [true, false]\n"
              "%d = const f64[] -nan\n",
              7);
    print_message("%d fuzzed parses\n", fuzz_runs);
}

/* ---- 5. DOT ------------------------------------------------------------------------- */

static char *to_dot(const lathe_graph *g) {
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    assert_non_null(f);
    assert_int_equal(lathe_graph_print_dot(g, f), LATHE_OK);
    fclose(f);
    return buf;
}

/* Braces outside quoted strings balance and never go negative. */
static void assert_dot_shape(const char *d) {
    int depth = 0;
    bool quoted = false;
    for (const char *c = d; *c; c++) {
        if (quoted) {
            if (*c == '\\' && c[1]) c++;
            else if (*c == '"') quoted = false;
        } else if (*c == '"') quoted = true;
        else if (*c == '{') depth++;
        else if (*c == '}' && --depth < 0) fail_msg("unbalanced braces in:\n%s", d);
    }
    if (depth != 0 || quoted) fail_msg("unbalanced braces or quotes in:\n%s", d);
    if (strncmp(d, "digraph lathe {\n  rankdir=TB;\n", 30) != 0) fail_msg("bad header:\n%s", d);
}

/* The attribute line of node n ("  n3 [...];", indented further in a cluster) */
static const char *dot_line(const char *d, int n, char *buf, size_t len) {
    char key[32];
    snprintf(key, sizeof key, "  n%d [label", n);
    const char *p = strstr(d, key);
    if (!p) fail_msg("no node n%d in:\n%s", n, d);
    p++;
    const char *e = strchr(p, '\n');
    snprintf(buf, len, "%.*s", (int)(e - p), p);
    return buf;
}

static void run_dot_tool(const char *d) {
    if (access("/usr/bin/dot", X_OK) != 0) {
        print_message("/usr/bin/dot not found; skipping the Graphviz check\n");
        return;
    }
    char path[] = "/tmp/lathe_test_dot_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, d, strlen(d)), (ssize_t)strlen(d));
    close(fd);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "/usr/bin/dot -Tsvg %s -o /dev/null", path);
    int rc = system(cmd);
    unlink(path);
    assert_int_equal(rc, 0);
}

static void test_dot_autograd_example(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *a = lathe_input(g, "a", LATHE_F32, LATHE_DIMS(2));
    lathe_node *b = lathe_input(g, "b", LATHE_F32, LATHE_DIMS(2));
    lathe_set_requires_grad(a, true);
    lathe_set_requires_grad(b, true);
    lathe_node *three = lathe_scalar(g, LATHE_F32, 3);
    lathe_node *a3 = lathe_pow_scalar(g, a, 3);
    lathe_node *m = lathe_mul(g, three, a3);
    lathe_node *b2 = lathe_pow_scalar(g, b, 2);
    lathe_node *q = lathe_sub(g, m, b2);
    lathe_output(g, "Q", q);
    lathe_node *w = lathe_param(g, "frozen.\"w\\", LATHE_F32, LATHE_DIMS(2), false);
    lathe_output(g, "Qw", lathe_mul(g, q, w));
    assert_graph_ok(g);
    /* a=0 b=1 3=2 a^3=3 3*a^3=4 b^2=5 Q=6 w=7 Q*w=8 */
    char *d = to_dot(g);
    assert_dot_shape(d);
    /* a binary op's edges are numbered in operand order */
    static const char *edges[] = {"n0 -> n3;", "n2 -> n4 [label=\"0\"];", "n3 -> n4 [label=\"1\"];", "n1 -> n5;",
                                  "n4 -> n6 [label=\"0\"];", "n5 -> n6 [label=\"1\"];", "n6 -> n8 [label=\"0\"];",
                                  "n7 -> n8 [label=\"1\"];", "n6 -> out0;", "n8 -> out1;"};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++)
        if (!strstr(d, edges[i])) fail_msg("missing edge %s in:\n%s", edges[i], d);
    char line[256];
    assert_non_null(strstr(dot_line(d, 0, line, sizeof line), "style=filled, fillcolor=lightblue"));
    assert_non_null(strstr(dot_line(d, 0, line, sizeof line), "label=\"%0 input a\\nf32[2]\""));
    assert_non_null(strstr(dot_line(d, 1, line, sizeof line), "fillcolor=lightblue"));
    assert_null(strstr(dot_line(d, 7, line, sizeof line), "lightblue"));
    assert_non_null(strstr(line, "label=\"%7 param frozen.\\\"w\\\\\\nf32[2]\""));
    assert_null(strstr(dot_line(d, 3, line, sizeof line), "lightblue"));
    assert_non_null(strstr(line, "pow_scalar\\nexponent=3\\nf32[2]")); /* its attribute */
    assert_non_null(strstr(dot_line(d, 2, line, sizeof line), "\\n3\""));
    assert_non_null(strstr(d, "out0 [label=\"Q\""));
    run_dot_tool(d);
    free(d);
    lathe_graph_free(g);
}

static void test_dot_samples(void **state) {
    (void)state;
    for (int i = 0; i < nsamples; i++) {
        lathe_graph *g = sample_graph(&samples[i], LATHE_F32);
        char *d = to_dot(g);
        assert_dot_shape(d);
        char line[512];
        for (int k = 0; k < g->nnodes; k++) dot_line(d, k, line, sizeof line);
        if (g->nupd && !strstr(d, "[style=dashed, label=\"update\", constraint=false];"))
            fail_msg("%s: no update edge in:\n%s", samples[i].label, d);
        if (i == 0) run_dot_tool(d);
        free(d);
        lathe_graph_free(g);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_samples),
        cmocka_unit_test(test_every_op_has_a_sample),
        cmocka_unit_test(test_const_values_bit_exact),
        cmocka_unit_test(test_forward_references),
        cmocka_unit_test(test_no_grad_flag),
        cmocka_unit_test(test_initializers),
        cmocka_unit_test(test_names_comments_layout),
        cmocka_unit_test(test_string_escapes),
        cmocka_unit_test(test_parse_file),
        cmocka_unit_test(test_parse_needs_empty_graph),
        cmocka_unit_test(test_deep_graph),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_long_line_caret),
        cmocka_unit_test(test_fuzz),
        cmocka_unit_test(test_dot_autograd_example),
        cmocka_unit_test(test_dot_samples),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
