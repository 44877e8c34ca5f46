/* test_jit.c - the LLVM JIT against the reference evaluator: every op
 * sample, forward and backward, in f32 and f64; 1 thread against 2 threads
 * bit for bit; runs repeated with new inputs; state updates; errors. */
#include <math.h>
#include <string.h>

#include "lathe_compiler.h"
#include "testutil.h"

/* Bind the same random values in both programs (through an evaluator that
 * draws them, so the values are exactly those bind_random gives). */
static void bind_both(lathe_graph *g, lathe_program *a, lathe_program *b, uint64_t seed) {
    lathe_eval *ev = lathe_eval_new(g);
    bind_random(ev, g, seed);
    for (int i = 0; i < lathe_graph_num_nodes(g); i++) {
        lathe_node *n = lathe_graph_node(g, i);
        if (!n->name) continue;
        size_t nb = (size_t)n->numel * lathe_dtype_size(n->dtype);
        void *buf = malloc(nb + 8);
        const double *v = lathe_eval_leaf(ev, n->name);
        for (int64_t j = 0; j < n->numel; j++) switch (n->dtype) {
            case LATHE_F32: ((float *)buf)[j] = (float)v[j]; break;
            case LATHE_F64: ((double *)buf)[j] = v[j]; break;
            case LATHE_I64: ((int64_t *)buf)[j] = (int64_t)v[j]; break;
            case LATHE_BOOL: ((bool *)buf)[j] = v[j] != 0; break;
            }
        if (lathe_program_set(a, n->name, buf, nb)) fail_msg("set %s: %s", n->name, lathe_program_error(a));
        if (b && lathe_program_set(b, n->name, buf, nb)) fail_msg("set %s: %s", n->name, lathe_program_error(b));
        free(buf);
    }
    lathe_eval_free(ev);
}

static double elem(lathe_dtype t, const void *p, int64_t i) {
    switch (t) {
    case LATHE_F32: return ((const float *)p)[i];
    case LATHE_F64: return ((const double *)p)[i];
    case LATHE_I64: return (double)((const int64_t *)p)[i];
    case LATHE_BOOL: return ((const bool *)p)[i];
    }
    return 0;
}

/* Every output (and every buffer, after updates) of the JIT program agrees
 * with the evaluator: f64 to 1e-9 relative, f32 to 1e-4 relative (with an
 * absolute floor scaled by the output's magnitude), integers exactly, NaN
 * only where NaN. */
static void agree(const char *label, lathe_graph *g, lathe_program *jit, lathe_program *ref) {
    for (int i = 0; i < lathe_graph_num_nodes(g) + lathe_graph_num_outputs(g); i++) {
        const char *name;
        lathe_node *n;
        if (i < lathe_graph_num_outputs(g)) {
            name = lathe_graph_output_name(g, i);
            n = lathe_graph_output(g, i);
        } else {
            n = lathe_graph_node(g, i - lathe_graph_num_outputs(g));
            if (n->op != LT_OP_BUFFER) continue;
            name = n->name;
        }
        size_t nb = (size_t)n->numel * lathe_dtype_size(n->dtype);
        void *x = malloc(nb + 8), *y = malloc(nb + 8);
        if (lathe_program_get(jit, name, x, nb)) fail_msg("%s: get %s: %s", label, name, lathe_program_error(jit));
        if (lathe_program_get(ref, name, y, nb)) fail_msg("%s: get %s: %s", label, name, lathe_program_error(ref));
        double scale = 0;
        for (int64_t e = 0; e < n->numel; e++) scale = fmax(scale, fabs(elem(n->dtype, y, e)));
        for (int64_t e = 0; e < n->numel; e++) {
            double u = elem(n->dtype, x, e), v = elem(n->dtype, y, e);
            bool ok;
            if (isnan(u) || isnan(v)) ok = isnan(u) && isnan(v);
            else if (n->dtype == LATHE_F64) ok = fabs(u - v) <= 1e-9 * fabs(v) + 1e-12 * (1 + scale);
            else if (n->dtype == LATHE_F32) ok = fabs(u - v) <= 1e-4 * fabs(v) + 1e-5 * (1 + scale);
            else ok = u == v;
            if (!ok) fail_msg("%s: %s[%lld]: jit %.9g, evaluator %.9g", label, name, (long long)e, u, v);
        }
        free(x);
        free(y);
    }
}

static lathe_program *compile_or_fail(const char *label, lathe_graph *g, lathe_backend be) {
    lathe_program *p = lathe_compile(g, be);
    if (!p) fail_msg("%s: compile: %s", label, lathe_graph_error(g));
    return p;
}

/* The sample with a random cotangent's gradients appended. */
static lathe_graph *sample_with_grads(const sample *s, lathe_dtype t, uint64_t seed) {
    lathe_graph *g = sample_graph(s, t);
    lathe_node *y = lathe_graph_output(g, 0);
    if (!lathe_requires_grad(y) || s->op == LT_OP_MAX_POOL2D_BACKWARD) return g;
    rng r = {seed};
    double *c = malloc((size_t)(y->numel + 1) * sizeof *c);
    float *cf = malloc((size_t)(y->numel + 1) * sizeof *cf);
    for (int64_t i = 0; i < y->numel; i++) c[i] = rng_uniform(&r, -1, 1), cf[i] = (float)c[i];
    lathe_node *cot = lathe_const(g, t, y->rank, y->shape, t == LATHE_F32 ? (void *)cf : (void *)c);
    free(c);
    free(cf);
    if (lathe_backward(g, 1, &y, &cot) != LATHE_OK) fail_msg("%s: backward: %s", s->label, lathe_graph_error(g));
    return g;
}

static void test_samples_forward_backward(void **state) {
    (void)state;
    for (int i = 0; i < nsamples; i++)
        for (int t = LATHE_F32; t <= LATHE_F64; t++) {
            char label[128];
            snprintf(label, sizeof label, "%s/%s", samples[i].label, t == LATHE_F32 ? "f32" : "f64");
            lathe_graph *g = sample_with_grads(&samples[i], (lathe_dtype)t, 7);
            lathe_program *jit = compile_or_fail(label, g, LATHE_BACKEND_JIT);
            lathe_program *ref = compile_or_fail(label, g, LATHE_BACKEND_EVAL);
            for (uint64_t seed = 1; seed <= 2; seed++) { /* run again with new inputs, no recompiling */
                bind_both(g, jit, ref, seed);
                if (lathe_program_run(jit) || lathe_program_run(ref)) fail_msg("%s: run", label);
                agree(label, g, jit, ref);
            }
            lathe_program_free(jit);
            lathe_program_free(ref);
            lathe_graph_free(g);
        }
}

/* Same bits on 1 and 2 threads, for every sample graph with its gradients. */
static void test_threads_same_bits(void **state) {
    (void)state;
    for (int i = 0; i < nsamples; i++) {
        lathe_graph *g = sample_with_grads(&samples[i], LATHE_F32, 3);
        lathe_program *a = compile_or_fail(samples[i].label, g, LATHE_BACKEND_JIT);
        lathe_program *b = compile_or_fail(samples[i].label, g, LATHE_BACKEND_JIT);
        lathe_program_set_threads(a, 1);
        lathe_program_set_threads(b, 2);
        bind_both(g, a, b, 5);
        assert_int_equal(lathe_program_run(a), LATHE_OK);
        assert_int_equal(lathe_program_run(b), LATHE_OK);
        for (int k = 0; k < lathe_graph_num_outputs(g); k++) {
            lathe_node *n = lathe_graph_output(g, k);
            size_t nb = (size_t)n->numel * lathe_dtype_size(n->dtype);
            void *x = malloc(nb + 1), *y = malloc(nb + 1);
            lathe_program_get(a, lathe_graph_output_name(g, k), x, nb);
            lathe_program_get(b, lathe_graph_output_name(g, k), y, nb);
            if (nb && memcmp(x, y, nb)) fail_msg("%s: output %s differs between 1 and 2 threads", samples[i].label, lathe_graph_output_name(g, k));
            free(x);
            free(y);
        }
        lathe_program_free(a);
        lathe_program_free(b);
        lathe_graph_free(g);
    }
}

static void test_errors(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_input(g, "x", LATHE_F32, LATHE_DIMS(2, 3));
    lathe_output(g, "y", lathe_exp(g, x));
    lathe_program *p = lathe_compile(g, LATHE_BACKEND_JIT);
    assert_non_null(p);
    float v[6] = {0}, w[5];
    assert_int_equal(lathe_program_set(p, "nope", v, sizeof v), LATHE_ERR_NAME);
    assert_non_null(strstr(lathe_program_error(p), "no input, param or buffer named 'nope'"));
    assert_int_equal(lathe_program_set(p, "x", v, 20), LATHE_ERR_ARG);
    assert_non_null(strstr(lathe_program_error(p), "set 'x' (f32[2,3]): 20 bytes given, 24 expected"));
    assert_int_equal(lathe_program_run(p), LATHE_OK);
    assert_int_equal(lathe_program_get(p, "y", w, sizeof w), LATHE_ERR_ARG);
    assert_int_equal(lathe_program_get(p, "y", v, sizeof v), LATHE_OK);
    assert_true(v[0] == 1.0f); /* exp(0) */
    assert_true(lathe_program_arena_bytes(p) >= 48);
    lathe_program_free(p);
    /* a graph with an error does not compile, and keeps its error */
    lathe_add(g, x, lathe_input(g, "z", LATHE_F32, LATHE_DIMS(4)));
    assert_null(lathe_compile(g, LATHE_BACKEND_JIT));
    assert_non_null(strstr(lathe_graph_error(g), "cannot broadcast"));
    lathe_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_samples_forward_backward),
        cmocka_unit_test(test_threads_same_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
