/* test_parity.c - Lathe against PyTorch on a reduced-width ResNet-18.
 *
 * tests/fixtures/resnet_w4.safetensors was written by
 * tests/fixtures/make_fixtures.py with PyTorch 1.13 (torchvision's
 * BasicBlock, the same state_dict names, width 4, 10 classes, training
 * mode, batch 4 of 3x64x64, cross-entropy loss).  For both backends we load the initial weights,
 * run forward and backward, and compare the logits, the loss and every
 * gradient; then two SGD-momentum steps and two AdamW steps from the same
 * start, comparing every parameter and buffer (batch-norm running
 * statistics and num_batches_tracked included).
 *
 * Tolerance, per tensor, in the max norm (elementwise relative error is
 * meaningless for gradients near zero): max |lathe - torch| <= 1e-4 *
 * max |torch|; or else the fp64 rule of PyTorch's own compiled-vs-eager
 * checks: against the same computation in float64 (f64.* in the fixture),
 * Lathe's error may be at most twice PyTorch's own f32 error plus 1e-5 of
 * the scale.  The rule matters where batch norm sees few values per
 * channel: it amplifies f32 rounding in both frameworks.
 * Integers must be equal.  The f64 evaluator must match the f64 reference
 * to 1e-9, which shows the gradients themselves are right. */
#include <math.h>
#include <string.h>

#include "lathe_compiler.h"
#include "lathe_desc.h"
#include "lathe_models.h"
#include "safetensors.h"
#include "testutil.h"

static lathe_graph *resnet_graph(void) {
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_input(g, "x", LATHE_F32, LATHE_DIMS(4, 3, 64, 64));
    lathe_node *labels = lathe_input(g, "labels", LATHE_I64, LATHE_DIMS(4));
    lathe_resnet_config cfg = {LATHE_F32, 10, 4, true};
    lathe_node *logits = lathe_resnet18(g, x, &cfg);
    lathe_node *loss = lathe_cross_entropy(g, logits, labels, LATHE_REDUCE_MEAN);
    lathe_output(g, "logits", logits);
    lathe_output(g, "loss", loss);
    lathe_backward(g, 1, &loss, NULL);
    assert_graph_ok(g);
    return g;
}

static const lathe_st_tensor *need(lathe_st_file *f, const char *name) {
    const lathe_st_tensor *t = lathe_st_find(f, name);
    if (!t) fail_msg("fixture has no tensor '%s'", name);
    return t;
}

/* Load "init.NAME" into every param and buffer, and the batch. */
static void load_init(lathe_program *p, lathe_st_file *f) {
    const lathe_rt_tensor *ts = lathe_program_tensors(p);
    char key[256];
    for (int i = 0; i < lathe_program_num_tensors(p); i++) {
        const lathe_rt_tensor *t = &ts[i];
        if (t->kind == LATHE_RT_OUTPUT) continue;
        if (t->kind == LATHE_RT_INPUT) snprintf(key, sizeof key, "%s", t->name);
        else snprintf(key, sizeof key, "init.%s", t->name);
        const lathe_st_tensor *s = need(f, key);
        size_t nb = (size_t)t->numel * lathe_rt_dtype_size(s->dtype);
        assert_int_equal(s->dtype, t->dtype);
        if (lathe_program_set(p, t->name, s->data, nb)) fail_msg("%s", lathe_program_error(p));
    }
}

static double as_double(int dtype, const void *p, int64_t i) {
    switch (dtype) {
    case LATHE_RT_F32: return ((const float *)p)[i];
    case LATHE_RT_F64: return ((const double *)p)[i];
    case LATHE_RT_I64: return (double)((const int64_t *)p)[i];
    default: return ((const bool *)p)[i];
    }
}

/* Compare tensor `name` of the program with fixture entry `key` (see the
 * tolerance above; f64.key is the float64 reference). */
static void compare(const char *label, lathe_program *p, const char *name, lathe_st_file *f, const char *key) {
    const lathe_st_tensor *s = need(f, key);
    char rkey[300];
    snprintf(rkey, sizeof rkey, "f64.%s", key);
    const lathe_st_tensor *ref = strncmp(key, "init.", 5) && strcmp(key, "loss") ? lathe_st_find(f, rkey) : NULL;
    int64_t n = 1;
    for (int d = 0; d < s->rank; d++) n *= s->shape[d];
    size_t nb = (size_t)n * lathe_rt_dtype_size(s->dtype);
    void *buf = malloc(nb + 8);
    if (lathe_program_get(p, name, buf, nb)) fail_msg("%s: %s", label, lathe_program_error(p));
    double scale = 0, err = 0, lerr = 0, terr = 0;
    for (int64_t i = 0; i < n; i++) {
        double a = as_double(s->dtype, buf, i), b = as_double(s->dtype, s->data, i);
        scale = fmax(scale, fabs(b));
        err = fmax(err, fabs(a - b));
        if (isnan(a) != isnan(b)) err = INFINITY;
        if (ref) {
            double r = as_double(ref->dtype, ref->data, i);
            lerr = fmax(lerr, fabs(a - r));
            terr = fmax(terr, fabs(b - r));
        }
    }
    bool ok = s->dtype == LATHE_RT_I64 ? err == 0 : err <= 1e-4 * fmax(scale, 1e-30);
    if (!ok && ref) ok = lerr <= 2 * terr + 1e-5 * scale;
    if (!ok) fail_msg("%s: %s differs from PyTorch's %s: max error %.3g, max |torch| %.3g; against float64: lathe %.3g, torch %.3g",
                      label, name, key, err, scale, lerr, terr);
    free(buf);
}

/* Load the fixture's start, run forward and backward, compare the logits,
 * the loss and every parameter's gradient; the number of gradients. */
static int forward_backward(const char *label, lathe_program *p, lathe_st_file *f) {
    load_init(p, f);
    assert_int_equal(lathe_program_run(p), LATHE_OK);
    compare(label, p, "logits", f, "logits");
    compare(label, p, "loss", f, "loss");
    int ngrads = 0;
    const lathe_rt_tensor *ts = lathe_program_tensors(p);
    for (int i = 0; i < lathe_program_num_tensors(p); i++) {
        if (ts[i].kind != LATHE_RT_PARAM) continue;
        char name[256];
        snprintf(name, sizeof name, "grad.%s", ts[i].name);
        compare(label, p, name, f, name);
        ngrads++;
    }
    return ngrads;
}

static void test_forward_backward(void **state) {
    (void)state;
    lathe_st_file *f = resnet_fixture();
    lathe_graph *g = resnet_graph();
    for (int be = 1; be >= 0; be--) { /* the evaluator first: the oracle's own agreement */
        const char *label = be ? "evaluator" : "jit";
        lathe_program *p = lathe_compile(g, be ? LATHE_BACKEND_EVAL : LATHE_BACKEND_JIT);
        if (!p) fail_msg("%s", lathe_graph_error(g));
        assert_int_equal(forward_backward(label, p, f), 62);
        lathe_program_free(p);
    }
    lathe_graph_free(g);
    lathe_st_free(f);
}

/* The same network in float64 on the evaluator against PyTorch in float64. */
static void test_f64_reference(void **state) {
    (void)state;
    lathe_st_file *f = resnet_fixture();
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_input(g, "x", LATHE_F64, LATHE_DIMS(4, 3, 64, 64));
    lathe_node *labels = lathe_input(g, "labels", LATHE_I64, LATHE_DIMS(4));
    lathe_resnet_config cfg = {LATHE_F64, 10, 4, true};
    lathe_node *logits = lathe_resnet18(g, x, &cfg);
    lathe_node *loss = lathe_cross_entropy(g, logits, labels, LATHE_REDUCE_MEAN);
    lathe_output(g, "logits", logits);
    lathe_backward(g, 1, &loss, NULL);
    lathe_program *p = lathe_compile(g, LATHE_BACKEND_EVAL);
    assert_non_null(p);
    const lathe_rt_tensor *ts = lathe_program_tensors(p);
    for (int i = 0; i < lathe_program_num_tensors(p); i++) {
        const lathe_rt_tensor *t = &ts[i];
        if (t->kind == LATHE_RT_OUTPUT) continue;
        char key[256];
        snprintf(key, sizeof key, t->kind == LATHE_RT_INPUT ? "%s" : "init.%s", t->name);
        const lathe_st_tensor *s = need(f, key);
        if (s->dtype == LATHE_RT_I64) {
            lathe_program_set(p, t->name, s->data, (size_t)t->numel * 8);
            continue;
        }
        double *d = malloc((size_t)t->numel * sizeof *d + 8);
        for (int64_t j = 0; j < t->numel; j++) d[j] = ((const float *)s->data)[j];
        lathe_program_set(p, t->name, d, (size_t)t->numel * sizeof *d);
        free(d);
    }
    assert_int_equal(lathe_program_run(p), LATHE_OK);
    for (int i = -1; i < lathe_program_num_tensors(p); i++) {
        if (i >= 0 && ts[i].kind != LATHE_RT_PARAM) continue;
        char name[256], key[300];
        snprintf(name, sizeof name, i < 0 ? "logits" : "grad.%s", i < 0 ? "" : ts[i].name);
        snprintf(key, sizeof key, "f64.%s", name);
        const lathe_st_tensor *r = need(f, key);
        int64_t n = 1;
        for (int d = 0; d < r->rank; d++) n *= r->shape[d];
        double *v = malloc((size_t)n * sizeof *v + 8), err = 0, scale = 0;
        lathe_program_get(p, name, v, (size_t)n * sizeof *v);
        for (int64_t j = 0; j < n; j++) {
            scale = fmax(scale, fabs(((const double *)r->data)[j]));
            err = fmax(err, fabs(v[j] - ((const double *)r->data)[j]));
        }
        if (err > 1e-9 * scale) fail_msg("f64: %s: max error %.3g, scale %.3g", name, err, scale);
        free(v);
    }
    lathe_program_free(p);
    lathe_graph_free(g);
    lathe_st_free(f);
}

static void two_steps(const char *tag, lathe_optim_config cfg) {
    lathe_st_file *f = resnet_fixture();
    lathe_graph *g = resnet_graph();
    for (int be = 0; be < 2; be++) {
        char label[64];
        snprintf(label, sizeof label, "%s %s", tag, be ? "evaluator" : "jit");
        lathe_program *p = lathe_compile(g, be ? LATHE_BACKEND_EVAL : LATHE_BACKEND_JIT);
        load_init(p, f);
        lathe_optimizer *o = lathe_program_optimizer(p, &cfg);
        assert_non_null(o);
        for (int s = 0; s < 2; s++) {
            assert_int_equal(lathe_program_run(p), LATHE_OK);
            lathe_optim_step(o);
        }
        const lathe_rt_tensor *ts = lathe_program_tensors(p);
        for (int i = 0; i < lathe_program_num_tensors(p); i++) {
            if (ts[i].kind != LATHE_RT_PARAM && ts[i].kind != LATHE_RT_BUFFER) continue;
            char key[256];
            snprintf(key, sizeof key, "%s.%s", tag, ts[i].name);
            compare(label, p, ts[i].name, f, key);
        }
        lathe_optim_free(o);
        lathe_program_free(p);
    }
    lathe_graph_free(g);
    lathe_st_free(f);
}

static void test_sgd_momentum(void **state) {
    (void)state;
    two_steps("sgd", lathe_sgd_config(0.01, 0.9));
}

static void test_adamw(void **state) {
    (void)state;
    two_steps("adamw", lathe_adamw_config(1e-3));
}

/* ---- sequence models: examples traced from their descriptions ------------------------ */

static lathe_graph *example_graph(const char *file, int ndefs, const char **defs, int64_t batch) {
    char rel[256];
    snprintf(rel, sizeof rel, "examples/%s", file);
    lathe_graph *g = lathe_graph_new();
    lathe_desc_options opt = {.training = true, .batch = batch, .ndefines = ndefs, .defines = defs};
    if (lathe_desc_parse_file(g, src_path(rel), &opt, NULL) != LATHE_OK) fail_msg("%s", lathe_graph_error(g));
    assert_graph_ok(g);
    return g;
}

/* Forward, backward and two AdamW steps of g against a fixture of
 * make_seq_fixtures.py, on the evaluator and the JIT. */
static void sequence_parity(const char *fixture, lathe_graph *g, int nparams) {
    lathe_st_file *f = read_fixture(fixture);
    for (int be = 1; be >= 0; be--) {
        char label[96];
        snprintf(label, sizeof label, "%s %s", fixture, be ? "evaluator" : "jit");
        lathe_program *p = lathe_compile(g, be ? LATHE_BACKEND_EVAL : LATHE_BACKEND_JIT);
        if (!p) fail_msg("%s", lathe_graph_error(g));
        assert_int_equal(forward_backward(label, p, f), nparams);
        const lathe_rt_tensor *ts = lathe_program_tensors(p);
        load_init(p, f);
        lathe_optim_config cfg = lathe_adamw_config(1e-3);
        lathe_optimizer *o = lathe_program_optimizer(p, &cfg);
        assert_non_null(o);
        for (int s = 0; s < 2; s++) {
            assert_int_equal(lathe_program_run(p), LATHE_OK);
            lathe_optim_step(o);
        }
        for (int i = 0; i < lathe_program_num_tensors(p); i++) {
            if (ts[i].kind != LATHE_RT_PARAM) continue;
            char key[256];
            snprintf(key, sizeof key, "adamw.%s", ts[i].name);
            compare(label, p, ts[i].name, f, key);
        }
        lathe_optim_free(o);
        lathe_program_free(p);
    }
    lathe_st_free(f);
}

/* examples/gru.lathe (its loop, its shared cell) against torch.nn.GRU */
static void test_gru(void **state) {
    (void)state;
    const char *defs[] = {"hidden=8", "rows=6", "cols=5", "classes=3"};
    lathe_graph *g = example_graph("gru.lathe", 4, defs, 4);
    sequence_parity("gru.safetensors", g, 6);
    lathe_graph_free(g);
}

/* examples/char_gpt.lathe with one transformer block (embeddings, layer
 * norms, causal multi-head attention, GELU MLP, head) against PyTorch */
static void test_gpt_block(void **state) {
    (void)state;
    const char *defs[] = {"vocab=13", "context=6", "layers=1", "heads=2", "width=16", "dropout_p=0"};
    lathe_graph *g = example_graph("char_gpt.lathe", 6, defs, 3);
    sequence_parity("gpt_block.safetensors", g, 17);
    lathe_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f64_reference),
        cmocka_unit_test(test_forward_backward),
        cmocka_unit_test(test_sgd_momentum),
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_gru),
        cmocka_unit_test(test_gpt_block),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
