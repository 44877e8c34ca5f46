/* test_jit.c - the LLVM JIT against the reference evaluator: every op
 * sample, forward and backward, in f32 and f64; 1 thread against 2 threads
 * bit for bit; runs repeated with new inputs; state updates; errors; the
 * vector tiles of convolutions, matmuls and max-pools over a table of
 * shapes; layer norms and a causal attention block. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lathe_compiler.h"
#include "lathe_desc.h"
#include "program.h"
#include "target.h"
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

/* Every output (and every buffer, after updates) of the JIT program agrees
 * with the evaluator: f64 to 1e-9 relative, f32 to 1e-4 relative (with an
 * absolute floor scaled by the output's magnitude), integers exactly, NaN
 * only where NaN, an infinity only where the same infinity. */
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
        for (int64_t e = 0; e < n->numel; e++)
            if (isfinite(elem_at(n->dtype, y, e))) scale = fmax(scale, fabs(elem_at(n->dtype, y, e)));
        for (int64_t e = 0; e < n->numel; e++) {
            double u = elem_at(n->dtype, x, e), v = elem_at(n->dtype, y, e);
            bool ok;
            if (isnan(u) || isnan(v)) ok = isnan(u) && isnan(v);
            else if (isinf(u) || isinf(v)) ok = u == v;
            else if (n->dtype == LATHE_F64) ok = fabs(u - v) <= 1e-9 * fabs(v) + 1e-12 * (1 + scale);
            else if (n->dtype == LATHE_F32) ok = fabs(u - v) <= 1e-4 * fabs(v) + 1e-5 * (1 + scale);
            else ok = u == v;
            if (!ok) fail_msg("%s: %s[%lld]: jit %.9g, evaluator %.9g", label, name, (long long)e, u, v);
        }
        free(x);
        free(y);
    }
}

/* What the JIT compiles for: this host, its tiles sized for tile_target's
 * vector_bytes when the vector tests force a width (0: the host's). */
static lathe_target tile_target;

static lathe_program *compile_or_fail(const char *label, lathe_graph *g, lathe_backend be) {
    lathe_program *p = lathe_compile_for(g, be, &tile_target);
    if (!p) fail_msg("%s: compile: %s", label, lathe_graph_error(g));
    return p;
}

/* jit's outputs (and buffers) agree with the evaluator's on g with inputs
 * drawn from seed, and its outputs have the same bits on 2 threads as on 1;
 * frees jit. */
static void agrees_with_eval(const char *label, lathe_graph *g, lathe_program *jit, uint64_t seed) {
    lathe_program *ref = compile_or_fail(label, g, LATHE_BACKEND_EVAL);
    bind_both(g, jit, ref, seed);
    int nout = lathe_graph_num_outputs(g);
    void **two = calloc((size_t)nout + 1, sizeof *two);
    size_t *nb = calloc((size_t)nout + 1, sizeof *nb);
    assert_true(two && nb);
    lathe_program_set_threads(jit, 2);
    assert_int_equal(lathe_program_run(jit), LATHE_OK);
    for (int k = 0; k < nout; k++) {
        lathe_node *n = lathe_graph_output(g, k);
        nb[k] = (size_t)n->numel * lathe_dtype_size(n->dtype);
        two[k] = malloc(nb[k] + 1);
        assert_int_equal(lathe_program_get(jit, lathe_graph_output_name(g, k), two[k], nb[k]), LATHE_OK);
    }
    lathe_program_set_threads(jit, 1);
    assert_int_equal(lathe_program_run(jit), LATHE_OK);
    for (int k = 0; k < nout; k++) {
        void *one = malloc(nb[k] + 1);
        assert_int_equal(lathe_program_get(jit, lathe_graph_output_name(g, k), one, nb[k]), LATHE_OK);
        if (memcmp(one, two[k], nb[k])) fail_msg("%s: output %s differs on 1 and 2 threads", label, lathe_graph_output_name(g, k));
        free(one);
        free(two[k]);
    }
    free(two);
    free(nb);
    assert_int_equal(lathe_program_run(ref), LATHE_OK);
    agree(label, g, jit, ref);
    lathe_program_free(jit);
    lathe_program_free(ref);
}

/* body with 32-byte tiles, then with 64-byte ones (whatever this host has). */
static void at_both_widths(void (*body)(void)) {
    for (int w = 32; w <= 64; w *= 2) {
        tile_target.vector_bytes = w;
        body();
    }
    tile_target.vector_bytes = 0;
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
/* conv1d as descriptions lower it: a conv2d over planes of height 1 with a
 * (1, k) kernel, strided, padded and dilated along the width, grouped;
 * forward and both gradients against the evaluator. */
static void test_conv1d_planes(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_input(g, "x", LATHE_F32, LATHE_DIMS(3, 8, 1, 37));
    lathe_node *w = lathe_param(g, "w", LATHE_F32, LATHE_DIMS(12, 4, 1, 5), true);
    lathe_node *b = lathe_param(g, "b", LATHE_F32, LATHE_DIMS(12), true);
    lathe_set_requires_grad(x, true);
    int64_t st[2] = {1, 2}, pd[2] = {0, 3}, dl[2] = {1, 2};
    lathe_node *y = lathe_conv2d_hw(g, x, w, b, st, pd, dl, 2);
    lathe_node *loss = lathe_sum(g, lathe_mul(g, y, y), 0, NULL, false);
    lathe_output(g, "y", y);
    lathe_output(g, "loss", loss);
    lathe_backward(g, 1, &loss, NULL);
    assert_graph_ok(g);
    lathe_program *jit = compile_or_fail("conv1d", g, LATHE_BACKEND_JIT);
    agrees_with_eval("conv1d", g, jit, 23);
    lathe_graph_free(g);
}

/* Sums over leading rows whose operands run along the output (bias and
 * layer-norm weight gradients: the column lowering, output elements in
 * vector lanes), a linear layer over many rows (its weight transposed into a
 * buffer of its own), in f32 and f64 against the evaluator with 32- and
 * 64-byte tiles, the same bits on 1 and 3 threads; the fused dump shows the
 * transposed weight's kernel. */
static void test_column_sums(void **state) {
    (void)state;
    for (int c = 0; c < 4; c++) {
        lathe_dtype t = c % 2 ? LATHE_F64 : LATHE_F32;
        tile_target.vector_bytes = c < 2 ? 32 : 64;
        lathe_graph *g = lathe_graph_new();
        lathe_node *x = lathe_input(g, "x", t, LATHE_DIMS(300, 37));
        lathe_node *w = lathe_param(g, "fc.weight", t, LATHE_DIMS(1029, 37), true);
        lathe_node *b = lathe_param(g, "fc.bias", t, LATHE_DIMS(1029), true);
        lathe_node *s = lathe_param(g, "s", t, LATHE_DIMS(300, 1), true);
        lathe_node *y = lathe_mul(g, lathe_linear(g, x, w, b), s); /* the bias's gradient: a sum over 300 rows of 1029 */
        lathe_node *loss = lathe_sum(g, lathe_mul(g, y, y), 0, NULL, false);
        lathe_output(g, "loss", loss);
        lathe_output(g, "colsum", lathe_sum(g, lathe_mul(g, y, s), LATHE_AXES(0), false));
        lathe_backward(g, 1, &loss, NULL);
        assert_graph_ok(g);
        lathe_program *jit = compile_or_fail("column sums", g, LATHE_BACKEND_JIT);
        lathe_program *jit3 = compile_or_fail("column sums", g, LATHE_BACKEND_JIT);
        lathe_program *ref = compile_or_fail("column sums", g, LATHE_BACKEND_EVAL);
        lathe_program_set_threads(jit, 1);
        lathe_program_set_threads(jit3, 3);
        bind_both(g, jit, ref, 29);
        bind_both(g, jit3, NULL, 29);
        assert_int_equal(lathe_program_run(jit), LATHE_OK);
        assert_int_equal(lathe_program_run(jit3), LATHE_OK);
        assert_int_equal(lathe_program_run(ref), LATHE_OK);
        agree("column sums", g, jit, ref);
        size_t nb = 1029 * lathe_dtype_size(t);
        void *g1 = malloc(nb), *g3 = malloc(nb);
        lathe_program_get(jit, "grad.fc.bias", g1, nb);
        lathe_program_get(jit3, "grad.fc.bias", g3, nb);
        assert_memory_equal(g1, g3, nb);
        free(g1), free(g3);
        lathe_program_free(jit);
        lathe_program_free(jit3);
        lathe_program_free(ref);
        if (t == LATHE_F32) {
            char *dump = NULL;
            size_t len = 0;
            FILE *f = open_memstream(&dump, &len);
            assert_int_equal(lathe_dump(g, LATHE_STAGE_FUSED, NULL, LATHE_DUMP_TEXT, f), LATHE_OK);
            fclose(f);
            if (!strstr(dump, "permute f32[37,1029]")) fail_msg("the weight was not transposed into a buffer:\n%s", dump);
            free(dump);
        }
        lathe_graph_free(g);
    }
    tile_target.vector_bytes = 0;
}

/* A concat of more operands than any fixed table holds (fusion once read
 * only the first 256): every element from its own operand, against the
 * evaluator. */
static void test_concat_many(void **state) {
    (void)state;
    enum { N = 300 };
    lathe_graph *g = lathe_graph_new();
    lathe_node *xs[N];
    for (int i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof name, "x%d", i);
        xs[i] = lathe_input(g, name, LATHE_F32, LATHE_DIMS(1 + i % 2, 3));
    }
    lathe_output(g, "y", lathe_exp(g, lathe_concat(g, N, xs, 0)));
    assert_graph_ok(g);
    lathe_program *jit = compile_or_fail("concat of 300", g, LATHE_BACKEND_JIT);
    agrees_with_eval("concat of 300", g, jit, 17);
    lathe_graph_free(g);
}

/* Every element of every output of g agrees between the two programs to
 * rtol relative plus atol absolute; NaN and infinities exactly. */
static void agree_each(const char *label, lathe_graph *g, lathe_program *jit, lathe_program *ref, double rtol,
                       double atol) {
    for (int i = 0; i < lathe_graph_num_outputs(g); i++) {
        const char *name = lathe_graph_output_name(g, i);
        lathe_node *n = lathe_graph_output(g, i);
        size_t nb = (size_t)n->numel * lathe_dtype_size(n->dtype);
        void *x = malloc(nb + 8), *y = malloc(nb + 8);
        assert_int_equal(lathe_program_get(jit, name, x, nb), LATHE_OK);
        assert_int_equal(lathe_program_get(ref, name, y, nb), LATHE_OK);
        for (int64_t e = 0; e < n->numel; e++) {
            double u = elem_at(n->dtype, x, e), v = elem_at(n->dtype, y, e);
            bool ok = isnan(u) || isnan(v) ? isnan(u) && isnan(v)
                      : isinf(u) || isinf(v) ? u == v
                                             : fabs(u - v) <= rtol * fabs(v) + atol;
            if (!ok) fail_msg("%s: %s[%lld]: jit %.17g, evaluator %.17g", label, name, (long long)e, u, v);
        }
        free(x);
        free(y);
    }
}

/* erf and the activations at their edges, in f32 and f64, against the
 * evaluator (libm in double): zeros, the points where the JIT's formulas
 * switch, values where the results saturate, underflow (kernels flush
 * denormals) or overflow (x^3 in gelu's tanh form), infinities and NaN; and
 * min over rows holding them.  The absolute floor covers gelu below about
 * -3, where 1 + erf(x/sqrt 2) cancels in the JIT as in PyTorch (the
 * evaluator uses erfc). */
static void test_activation_edges(void **state) {
    (void)state;
    static const double xs[] = {0, -0.0, 0.5, -0.5, 1, -1, 1.0000001, 2.5, -2.5, 3.9, -4, 5, -5.95, 10, -10,
                                30, -30, 100, -100, 1e30, -1e30, 1e-30, -1e-30, INFINITY, -INFINITY, NAN};
    enum { N = sizeof xs / sizeof *xs, COLS = 2 };
    for (int t = LATHE_F32; t <= LATHE_F64; t++) {
        lathe_graph *g = lathe_graph_new();
        lathe_node *x = lathe_input(g, "x", (lathe_dtype)t, LATHE_DIMS(N));
        lathe_output(g, "erf", lathe_erf(g, x));
        lathe_output(g, "gelu", lathe_gelu(g, x, false));
        lathe_output(g, "gelu_tanh", lathe_gelu(g, x, true));
        lathe_output(g, "silu", lathe_silu(g, x));
        lathe_output(g, "softplus", lathe_softplus(g, x, 1, 20));
        lathe_output(g, "softplus_beta", lathe_softplus(g, x, 0.5, INFINITY));
        lathe_output(g, "softplus_neg_beta", lathe_softplus(g, x, -3, 2));
        lathe_output(g, "leaky_relu", lathe_leaky_relu(g, x, 0.01));
        lathe_output(g, "clamp", lathe_clamp(g, x, -1, 2));
        lathe_output(g, "clamp_low", lathe_clamp(g, x, -2.5, INFINITY));
        lathe_output(g, "min", lathe_min(g, lathe_reshape(g, x, LATHE_DIMS(N / COLS, COLS)), LATHE_AXES(1), false));
        lathe_output(g, "min_all", lathe_min(g, lathe_slice(g, x, 0, 0, N - 1, 1), 0, NULL, false)); /* -inf */
        assert_graph_ok(g);
        const char *label = t == LATHE_F32 ? "activation edges f32" : "activation edges f64";
        lathe_program *jit = compile_or_fail(label, g, LATHE_BACKEND_JIT);
        lathe_program *ref = compile_or_fail(label, g, LATHE_BACKEND_EVAL);
        float f[N];
        for (int i = 0; i < N; i++) f[i] = (float)xs[i];
        const void *buf = t == LATHE_F32 ? (const void *)f : (const void *)xs;
        size_t nb = t == LATHE_F32 ? sizeof f : sizeof xs;
        assert_int_equal(lathe_program_set(jit, "x", buf, nb), LATHE_OK);
        assert_int_equal(lathe_program_set(ref, "x", buf, nb), LATHE_OK);
        assert_int_equal(lathe_program_run(jit), LATHE_OK);
        assert_int_equal(lathe_program_run(ref), LATHE_OK);
        agree_each(label, g, jit, ref, t == LATHE_F32 ? 1e-5 : 1e-12, t == LATHE_F32 ? 1e-6 : 1e-14);
        lathe_program_free(jit);
        lathe_program_free(ref);
        lathe_graph_free(g);
    }
}

/* The executor (runtime/executor.c) claims chunks dynamically, runs small
 * kernels as one unit, and after its first runs times itself and may run on
 * one thread: a conv/batch-norm/relu/pool/linear network with its backward
 * pass, run 100 times on 3 threads with the same inputs, gives the bits of a
 * one-thread run every time, and they agree with the evaluator. */
static void test_executor_runs(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_input(g, "x", LATHE_F32, LATHE_DIMS(2, 3, 9, 9));
    lathe_node *w = lathe_param(g, "w", LATHE_F32, LATHE_DIMS(8, 3, 3, 3), true);
    lathe_node *gm = lathe_param(g, "bn.weight", LATHE_F32, LATHE_DIMS(8), true);
    lathe_node *bt = lathe_param(g, "bn.bias", LATHE_F32, LATHE_DIMS(8), true);
    lathe_node *rm = lathe_buffer(g, "bn.running_mean", LATHE_F32, LATHE_DIMS(8));
    lathe_node *rv = lathe_buffer(g, "bn.running_var", LATHE_F32, LATHE_DIMS(8));
    lathe_node *h = lathe_conv2d(g, x, w, NULL, 1, 1, 1, 1);
    h = lathe_max_pool2d(g, lathe_relu(g, lathe_batch_norm2d(g, h, gm, bt, rm, rv, true, 0.1, 1e-5)), 2, 2, 0);
    lathe_node *fw = lathe_param(g, "fc.weight", LATHE_F32, LATHE_DIMS(5, 128), true);
    lathe_node *y = lathe_linear(g, lathe_flatten(g, h, 1, 3), fw, NULL);
    lathe_node *loss = lathe_sum(g, lathe_mul(g, y, y), 0, NULL, false);
    lathe_output(g, "loss", loss);
    assert_graph_ok(g);
    assert_int_equal(lathe_backward(g, 1, &loss, NULL), LATHE_OK);
    lathe_program *jit = compile_or_fail("executor", g, LATHE_BACKEND_JIT);
    lathe_program *ref = compile_or_fail("executor", g, LATHE_BACKEND_EVAL);
    bind_both(g, jit, ref, 23);
    /* the outputs (loss and gradients) do not depend on the running
     * statistics, which every run updates */
    int nout = lathe_graph_num_outputs(g);
    void *want[16] = {0};
    assert_true(nout <= 16);
    lathe_program_set_threads(jit, 1);
    assert_int_equal(lathe_program_run(jit), LATHE_OK);
    assert_int_equal(lathe_program_run(ref), LATHE_OK);
    agree("executor", g, jit, ref);
    for (int k = 0; k < nout; k++) {
        lathe_node *n = lathe_graph_output(g, k);
        size_t nb = (size_t)n->numel * lathe_dtype_size(n->dtype);
        want[k] = malloc(nb + 1);
        assert_int_equal(lathe_program_get(jit, lathe_graph_output_name(g, k), want[k], nb), LATHE_OK);
    }
    lathe_program_set_threads(jit, 3);
    for (int run = 0; run < 100; run++) {
        assert_int_equal(lathe_program_run(jit), LATHE_OK);
        for (int k = 0; k < nout; k++) {
            lathe_node *n = lathe_graph_output(g, k);
            size_t nb = (size_t)n->numel * lathe_dtype_size(n->dtype);
            void *got = malloc(nb + 1);
            assert_int_equal(lathe_program_get(jit, lathe_graph_output_name(g, k), got, nb), LATHE_OK);
            if (nb && memcmp(got, want[k], nb))
                fail_msg("run %d on 3 threads: output %s differs from one thread's", run, lathe_graph_output_name(g, k));
            free(got);
        }
    }
    for (int k = 0; k < nout; k++) free(want[k]);
    lathe_program_free(jit);
    lathe_program_free(ref);
    lathe_graph_free(g);
}

/* Denormals: kernels flush them by default (flush-to-zero for results,
 * denormals-are-zero for operands), keep them as IEEE says when asked, on
 * one thread and on two, and leave the caller's floating-point mode as it
 * was.  1e-20 * 1e-20 = 1e-40 is a denormal f32 (the smallest normal is
 * about 1.18e-38); 1e-40 * 2 reads one. */
static void test_denormals(void **state) {
    (void)state;
    enum { N = 64 };
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_input(g, "x", LATHE_F32, LATHE_DIMS(N)), *d = lathe_input(g, "d", LATHE_F32, LATHE_DIMS(N));
    lathe_output(g, "under", lathe_mul(g, x, x));                               /* a denormal result */
    lathe_output(g, "twice", lathe_mul(g, d, lathe_scalar(g, LATHE_F32, 2)));  /* a denormal operand */
    assert_graph_ok(g);
    float xs[N], ds[N], under[N], twice[N];
    for (int i = 0; i < N; i++) xs[i] = 1e-20f, ds[i] = 1e-40f;
    assert_true(ds[0] > 0 && ds[0] < 1.1754944e-38f); /* the test's premise: a denormal input */
    for (int ieee = 0; ieee < 2; ieee++)
        for (int threads = 1; threads <= 2; threads++) {
            lathe_program *p = compile_or_fail("denormals", g, LATHE_BACKEND_JIT);
            if (ieee) lathe_program_set_ieee_denormals(p, true);
            lathe_program_set_threads(p, threads);
            assert_int_equal(lathe_program_set(p, "x", xs, sizeof xs), LATHE_OK);
            assert_int_equal(lathe_program_set(p, "d", ds, sizeof ds), LATHE_OK);
            unsigned before = __builtin_ia32_stmxcsr();
            assert_int_equal(lathe_program_run(p), LATHE_OK);
            assert_int_equal(__builtin_ia32_stmxcsr(), before);
            assert_int_equal(lathe_program_get(p, "under", under, sizeof under), LATHE_OK);
            assert_int_equal(lathe_program_get(p, "twice", twice, sizeof twice), LATHE_OK);
            for (int i = 0; i < N; i++) {
                float want_u = ieee ? (float)(1e-20f * (double)1e-20f) : 0, want_t = ieee ? 2 * 1e-40f : 0;
                if (under[i] != want_u || twice[i] != want_t)
                    fail_msg("%s denormals, %d thread(s): [%d] %g and %g, expected %g and %g", ieee ? "IEEE" : "flushed",
                             threads, i, under[i], twice[i], want_u, want_t);
            }
            lathe_program_free(p);
        }
    lathe_graph_free(g);
}

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

/* ---- vector lowering of contractions and pools ------------------------------------------
 *
 * Kernels with a contraction or max-pool plan (kernel.h) are lowered to
 * explicit vector tiles.  Each case is checked against the evaluator
 * (forward and every gradient, f32 and f64), for identical bits on 1, 2 and
 * 3 threads, and that the plan was taken at all, with both kinds of tile
 * (32- and 64-byte vectors, whatever the host). */

/* The fused dump of g holds `what` `count` times or more. */
static int count_in_fused(lathe_graph *g, const char *what) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    assert_int_equal(lathe_dump(g, LATHE_STAGE_FUSED, &tile_target, LATHE_DUMP_TEXT, f), LATHE_OK);
    fclose(f);
    int n = 0;
    for (const char *p = text; (p = strstr(p, what)); p++) n++;
    free(text);
    return n;
}

/* y's gradients for a random cotangent appended to g, y an output. */
static void add_grads(lathe_graph *g, lathe_node *y, lathe_dtype t, uint64_t seed) {
    rng r = {seed};
    double *c = malloc((size_t)(y->numel + 1) * sizeof *c);
    float *cf = malloc((size_t)(y->numel + 1) * sizeof *cf);
    for (int64_t i = 0; i < y->numel; i++) c[i] = rng_uniform(&r, -1, 1), cf[i] = (float)c[i];
    lathe_node *cot = lathe_const(g, t, y->rank, y->shape, t == LATHE_F32 ? (void *)cf : (void *)c);
    free(c);
    free(cf);
    if (lathe_backward(g, 1, &y, &cot) != LATHE_OK) fail_msg("backward: %s", lathe_graph_error(g));
}

/* Compile g with the JIT and the evaluator, bind the same inputs, and check
 * agreement, then the same bits on 1, 2 and 3 threads. */
static void check_vector_case(const char *label, lathe_graph *g) {
    lathe_program *jit = compile_or_fail(label, g, LATHE_BACKEND_JIT);
    lathe_program *ref = compile_or_fail(label, g, LATHE_BACKEND_EVAL);
    bind_both(g, jit, ref, 11);
    if (lathe_program_run(jit) || lathe_program_run(ref)) fail_msg("%s: run", label);
    agree(label, g, jit, ref);
    void *first[64] = {0};
    int nout = lathe_graph_num_outputs(g);
    assert_true(nout <= 64);
    for (int threads = 1; threads <= 3; threads++) {
        lathe_program_set_threads(jit, threads);
        assert_int_equal(lathe_program_run(jit), LATHE_OK);
        for (int k = 0; k < nout; k++) {
            lathe_node *n = lathe_graph_output(g, k);
            size_t nb = (size_t)n->numel * lathe_dtype_size(n->dtype);
            void *x = malloc(nb + 1);
            assert_int_equal(lathe_program_get(jit, lathe_graph_output_name(g, k), x, nb), LATHE_OK);
            if (threads == 1) first[k] = x;
            else {
                if (nb && memcmp(first[k], x, nb))
                    fail_msg("%s: output %s differs between 1 and %d threads", label, lathe_graph_output_name(g, k), threads);
                free(x);
            }
        }
    }
    for (int k = 0; k < nout; k++) free(first[k]);
    lathe_program_free(jit);
    lathe_program_free(ref);
}

typedef struct {
    const char *label;
    int64_t n, c, h, w, k, r, s;
    int64_t stride[2], pad[2], dil[2], groups;
    bool bias, relu, residual;
} conv_case;

static const conv_case conv_cases[] = {
    /* same padding: lanes load as vectors (masks at the borders), odd plane */
    {"3x3 s1 p1, 7x9, C3 K5, bias relu", 2, 3, 7, 9, 5, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, true, true, false},
    /* stride 2: gathers; the input gradient's taps skip by stride */
    {"3x3 s2 p1, 8x8, C4 K6", 2, 4, 8, 8, 6, 3, 3, {2, 2}, {1, 1}, {1, 1}, 1, false, false, false},
    {"1x1 s1 p0, 5x5, C17 K33, bias", 1, 17, 5, 5, 33, 1, 1, {1, 1}, {0, 0}, {1, 1}, 1, true, false, false},
    {"1x1 s2 p0, 9x9, C8 K16", 2, 8, 9, 9, 16, 1, 1, {2, 2}, {0, 0}, {1, 1}, 1, false, false, false},
    {"3x3 dil2 p2, 10x10, C4 K4, groups 2", 2, 4, 10, 10, 4, 3, 3, {1, 1}, {2, 2}, {2, 2}, 2, true, false, false},
    {"3x3 p1 depthwise, 6x6, C8 K8 groups 8", 2, 8, 6, 6, 8, 3, 3, {1, 1}, {1, 1}, {1, 1}, 8, false, true, false},
    {"3x3 p1, 28x28, C1 K32, bias", 2, 1, 28, 28, 32, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, true, false, false},
    {"3x3 p1, 6x6, C64 K64, residual", 2, 64, 6, 6, 64, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, false, false, true},
    {"7x7 s2 p3, 16x16, C3 K8", 1, 3, 16, 16, 8, 7, 7, {2, 2}, {3, 3}, {1, 1}, 1, false, true, false},
    {"3x3 p0 (valid), 9x9, C2 K3", 2, 2, 9, 9, 3, 3, 3, {1, 1}, {0, 0}, {1, 1}, 1, true, false, false},
    {"2x3 s(1,2) p(0,1) dil(2,1), 7x8, C3 K6 groups 3", 2, 3, 7, 8, 6, 2, 3, {1, 2}, {0, 1}, {2, 1}, 3, false, false, false},
    {"3x3 p1, 13x11, N3 C5 K7, bias relu residual", 3, 5, 13, 11, 7, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, true, true, true},
    /* a plane the weight gradient takes in several L1 chunks, the last with the partial vector */
    {"3x3 p1, 37x29, N2 C3 K4", 2, 3, 37, 29, 4, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, false, false, false},
    /* input gradients in phases: 1x1 stride 2 (taps reach one phase of four), stride along columns
     * only with dilated rows, stride 3 with a 2x2 kernel (phases no tap reaches), a plane of many vectors */
    {"1x1 s2 p0, 8x8, C8 K16, bias", 2, 8, 8, 8, 16, 1, 1, {2, 2}, {0, 0}, {1, 1}, 1, true, false, false},
    {"3x3 s(1,2) p(2,1) dil(2,1), 6x10, C3 K5", 2, 3, 6, 10, 5, 3, 3, {1, 2}, {2, 1}, {2, 1}, 1, false, false, false},
    {"2x2 s3 p0, 9x12, C4 K4 groups 2", 1, 4, 9, 12, 4, 2, 2, {3, 3}, {0, 0}, {1, 1}, 2, false, false, false},
    {"3x3 s2 p1, 40x34, C2 K3", 1, 2, 40, 34, 3, 3, 3, {2, 2}, {1, 1}, {1, 1}, 1, false, false, false},
    /* a small plane and many channels: tiles take images innermost */
    {"3x3 p1, 5x5, N3 C64 K128, bias", 3, 64, 5, 5, 128, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, true, false, false},
    /* output planes of at most 16 elements: weight gradients as im2col and a matmul */
    {"3x3 s2 p1, 4x4, N2 C5 K6", 2, 5, 4, 4, 6, 3, 3, {2, 2}, {1, 1}, {1, 1}, 1, false, true, false},
    {"2x3 dil(2,1) p(1,0), 3x5, N1 C7 K9", 1, 7, 3, 5, 9, 2, 3, {1, 1}, {1, 0}, {2, 1}, 1, true, false, false},
    {"1x1 s2, 3x3, N3 C4 K20", 3, 4, 3, 3, 20, 1, 1, {2, 2}, {0, 0}, {1, 1}, 1, false, false, true},
};

/* Whether the input gradient of cc is planned in phases: a stride, the
 * input plane exactly stride times the output's, no dilation along a
 * strided dim (contract.c's rule, derived again from the shapes). */
static bool expect_phases(const conv_case *cc) {
    int64_t hw[2] = {cc->h, cc->w}, rs[2] = {cc->r, cc->s};
    bool strided = false;
    for (int d = 0; d < 2; d++) {
        int64_t out = (hw[d] + 2 * cc->pad[d] - cc->dil[d] * (rs[d] - 1) - 1) / cc->stride[d] + 1;
        if (hw[d] != cc->stride[d] * out || (cc->stride[d] > 1 && cc->dil[d] != 1)) return false;
        strided = strided || cc->stride[d] > 1;
    }
    return strided;
}

static lathe_graph *conv_graph(const conv_case *cc, lathe_dtype t) {
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_input(g, "x", t, LATHE_DIMS(cc->n, cc->c, cc->h, cc->w));
    lathe_set_requires_grad(x, true);
    lathe_node *w = lathe_param(g, "conv.weight", t, LATHE_DIMS(cc->k, cc->c / cc->groups, cc->r, cc->s), true);
    lathe_node *b = cc->bias ? lathe_param(g, "conv.bias", t, LATHE_DIMS(cc->k), true) : NULL;
    lathe_node *y = lathe_conv2d_hw(g, x, w, b, cc->stride, cc->pad, cc->dil, cc->groups);
    if (cc->relu) y = lathe_relu(g, y);
    if (cc->residual) {
        lathe_node *res = lathe_input(g, "res", t, lathe_node_rank(y), lathe_node_shape(y));
        lathe_set_requires_grad(res, true);
        y = lathe_add(g, y, res);
    }
    lathe_output(g, "y", y);
    assert_graph_ok(g);
    add_grads(g, y, t, 5);
    assert_graph_ok(g);
    return g;
}

static void test_vector_convs(void **state) {
    (void)state;
    static const char *widths[] = {"32", "64"};
    for (int wi = 0; wi < 2; wi++) {
        tile_target.vector_bytes = atoi(widths[wi]);
        for (size_t i = 0; i < sizeof conv_cases / sizeof conv_cases[0]; i++)
            for (int t = LATHE_F32; t <= LATHE_F64; t++) {
                char label[160];
                snprintf(label, sizeof label, "conv %s/%s/%s-byte vectors", conv_cases[i].label,
                         t == LATHE_F32 ? "f32" : "f64", widths[wi]);
                lathe_graph *g = conv_graph(&conv_cases[i], (lathe_dtype)t);
                /* forward and input gradient are plane kernels, the weight gradient its own, or, for
                 * output planes of at most 16 elements, all three matmuls over im2col */
                const conv_case *cc = &conv_cases[i];
                int64_t oh = (cc->h + 2 * cc->pad[0] - cc->dil[0] * (cc->r - 1) - 1) / cc->stride[0] + 1;
                int64_t owd = (cc->w + 2 * cc->pad[1] - cc->dil[1] * (cc->s - 1) - 1) / cc->stride[1] + 1;
                bool small = oh * owd <= 16 && cc->groups == 1;
                if (small ? count_in_fused(g, "matmul, lanes") < 3 || count_in_fused(g, "convolution") > 0
                          : count_in_fused(g, "plane convolution") < 2 || count_in_fused(g, "weight-gradient convolution") < 1)
                    fail_msg("%s: the vector plans were not taken", label);
                /* a 5x5 plane and 128 output channels: a tile's weights outweigh its image's input; a
                 * 37x29 plane and 4: the other way round */
                bool ninner = count_in_fused(g, "images innermost") > 0;
                if ((conv_cases[i].h == 5 && conv_cases[i].k == 128 && !ninner) || (conv_cases[i].h == 37 && ninner))
                    fail_msg("%s: images %s innermost", label, ninner ? "are" : "are not");
                /* rows of 17 outputs hold a vector of any width: the forward convolution de-interleaves too */
                int64_t ow = (conv_cases[i].w + 2 * conv_cases[i].pad[1] - conv_cases[i].dil[1] * (conv_cases[i].s - 1) - 1) /
                                 conv_cases[i].stride[1] + 1;
                if (conv_cases[i].stride[1] == 2 && ow >= 16 && !small && count_in_fused(g, "de-interleaved") < 2)
                    fail_msg("%s: the forward convolution does not de-interleave its input's columns", label);
                /* the weight gradient de-interleaves, the forward where rows hold a vector (unless matmuls) */
                bool deint = cc->stride[1] == 2 && !small;
                if ((count_in_fused(g, "de-interleaved") > 0) != deint)
                    fail_msg("%s: the convolutions %s their input's columns", label, deint ? "do not de-interleave" : "de-interleave");
                bool phases = expect_phases(cc) && !small;
                if ((count_in_fused(g, "phases") > 0) != phases)
                    fail_msg("%s: the input gradient %s planned in phases", label, phases ? "was not" : "was");
                check_vector_case(label, g);
                lathe_graph_free(g);
            }
    }
    tile_target.vector_bytes = 0;
}

/* Fusion's buffer rules for graph g: at least `matmuls` matmuls with vector
 * plans, no kernel line matching `absent` (NULL: none), and agreement with
 * the evaluator.  Frees g. */
static void check_buffers(const char *label, lathe_graph *g, int matmuls, const char *absent, const char *why) {
    assert_graph_ok(g);
    if (count_in_fused(g, "matmul, lanes") < matmuls) fail_msg("%s: the matmuls did not all take vector plans", label);
    if (absent && count_in_fused(g, absent) > 0) fail_msg("%s: %s", label, why);
    check_vector_case(label, g);
    lathe_graph_free(g);
}

static void test_buffer_rules(void **state) {
    (void)state;
    /* an operand of a matmul that is not a strided view of a buffer (a permute
     * then a reshape merging the permuted dims, used once) gets a buffer of its
     * own, so the matmul keeps its vector plan */
    lathe_graph *g = lathe_graph_new();
    lathe_node *a = lathe_input(g, "a", LATHE_F32, LATHE_DIMS(4, 6, 5));
    lathe_node *b = lathe_param(g, "b", LATHE_F32, LATHE_DIMS(20, 7), false);
    const int64_t perm[3] = {1, 0, 2};
    lathe_node *av = lathe_reshape(g, lathe_permute(g, lathe_exp(g, a), 3, perm), LATHE_DIMS(6, 20));
    lathe_output(g, "y", lathe_matmul(g, av, b));
    check_buffers("permuted, reshaped operand", g, 1, NULL, NULL);

    /* a strided view read by two matmuls (a reshape of an input) stays a view */
    g = lathe_graph_new();
    a = lathe_input(g, "a", LATHE_F32, LATHE_DIMS(6, 4, 5));
    lathe_node *v = lathe_reshape(g, a, LATHE_DIMS(6, 20));
    lathe_output(g, "y1", lathe_matmul(g, v, lathe_param(g, "b1", LATHE_F32, LATHE_DIMS(20, 7), false)));
    lathe_output(g, "y2", lathe_matmul(g, v, lathe_param(g, "b2", LATHE_F32, LATHE_DIMS(20, 3), false)));
    check_buffers("shared view", g, 2, " reshape(F)\n", "the shared reshape was copied by a kernel of its own");

    /* an output that reshapes a kernel's result is that kernel's buffer (no
     * copy), and other outputs of the same value read it too */
    g = lathe_graph_new();
    a = lathe_input(g, "a", LATHE_F32, LATHE_DIMS(6, 20));
    lathe_node *y = lathe_matmul(g, a, lathe_param(g, "b", LATHE_F32, LATHE_DIMS(20, 8), false));
    lathe_output(g, "y4", lathe_reshape(g, y, LATHE_DIMS(3, 2, 4, 2)));
    lathe_output(g, "y", y);
    lathe_output(g, "z", lathe_exp(g, lathe_reshape(g, y, LATHE_DIMS(48))));
    check_buffers("reshaped output", g, 1, " reshape(F)\n", "the reshaped output was copied by a kernel of its own");
}

/* Four i64 values bound to input `name` are refused by a run, with msg. */
static void refused(lathe_program *p, int backend, const char *name, const int64_t v[4], const char *msg) {
    assert_int_equal(lathe_program_set(p, name, v, 4 * sizeof *v), LATHE_OK);
    assert_int_equal(lathe_program_run(p), LATHE_ERR_ARG);
    if (!strstr(lathe_program_error(p), msg)) fail_msg("backend %d: %s", backend, lathe_program_error(p));
}

/* Class indices are checked on every run, through a reshape too, on both
 * backends: out of range, the run is refused with the input, element and
 * value named, and nothing runs. */
static void test_label_check(void **state) {
    (void)state;
    for (int backend = LATHE_BACKEND_JIT; backend <= LATHE_BACKEND_EVAL; backend++) {
        lathe_graph *g = lathe_graph_new();
        lathe_node *x = lathe_input(g, "x", LATHE_F32, LATHE_DIMS(4, 3));
        lathe_node *lab = lathe_input(g, "labels", LATHE_I64, LATHE_DIMS(2, 2));
        lathe_node *loss = lathe_cross_entropy(g, x, lathe_reshape(g, lab, LATHE_DIMS(4)), LATHE_REDUCE_MEAN);
        lathe_output(g, "loss", loss);
        assert_graph_ok(g);
        lathe_program *p = lathe_compile(g, (lathe_backend)backend);
        assert_non_null(p);
        float xv[12] = {0};
        int64_t good[4] = {0, 1, 2, 1}, bad[4] = {0, 1, 3, 1};
        assert_int_equal(lathe_program_set(p, "x", xv, sizeof xv), LATHE_OK);
        assert_int_equal(lathe_program_set(p, "labels", good, sizeof good), LATHE_OK);
        assert_int_equal(lathe_program_run(p), LATHE_OK);
        refused(p, backend, "labels", bad, "input 'labels': element 2 is 3, outside [0, 3)");
        /* the ignore index (PyTorch's default -100) is allowed, and left out of the mean */
        float xs[12] = {0, 0, 5, 1, 1, 1, 0, 0, 0, 2, 2, 2}, loss_v = 0;
        int64_t ignored[4] = {-100, 1, -100, 0}, other[4] = {-100, 1, -99, 0};
        assert_int_equal(lathe_program_set(p, "x", xs, sizeof xs), LATHE_OK);
        assert_int_equal(lathe_program_set(p, "labels", ignored, sizeof ignored), LATHE_OK);
        assert_int_equal(lathe_program_run(p), LATHE_OK);
        assert_int_equal(lathe_program_get(p, "loss", &loss_v, sizeof loss_v), LATHE_OK);
        if (fabs(loss_v - log(3.0)) > 1e-6) fail_msg("backend %d: loss %.9g, want ln 3", backend, loss_v);
        refused(p, backend, "labels", other, "input 'labels': element 2 is -99, outside [0, 3)");
        lathe_program_free(p);
        lathe_graph_free(g);
    }
}

/* Dropout at scale: about a fraction p dropped, the rest scaled by 1/(1-p);
 * the same bits on 1 and 2 threads and as the evaluator; a new mask every
 * run (the state's step advances), the same one for the same state; the
 * gradient drops exactly the forward's elements. */
static void test_dropout(void **state) {
    (void)state;
    enum { R = 96, C = 1000 };
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_input(g, "x", LATHE_F32, LATHE_DIMS(R, C));
    lathe_set_requires_grad(x, true);
    lathe_node *y = lathe_dropout(g, x, 0.3);
    lathe_output(g, "y", y);
    lathe_node *loss = lathe_sum(g, lathe_mul(g, y, x), 0, NULL, false); /* d/dx = mask * scale * x + y */
    lathe_output(g, "loss", loss);
    lathe_backward(g, 1, &loss, NULL);
    assert_graph_ok(g);
    float *xv = malloc(sizeof *xv * R * C), *y1 = malloc(sizeof *y1 * R * C), *y2 = malloc(sizeof *y2 * R * C),
          *gx = malloc(sizeof *gx * R * C);
    for (int i = 0; i < R * C; i++) xv[i] = 1.0f + (float)(i % 7);
    float scale = (float)(1 / 0.7);
    lathe_program *p[2];
    for (int k = 0; k < 2; k++) {
        p[k] = lathe_compile(g, LATHE_BACKEND_JIT);
        assert_non_null(p[k]);
        lathe_program_init(p[k], 11);
        lathe_program_set_threads(p[k], k + 1);
        assert_int_equal(lathe_program_set(p[k], "x", xv, sizeof *xv * R * C), LATHE_OK);
        assert_int_equal(lathe_program_run(p[k]), LATHE_OK);
    }
    assert_int_equal(lathe_program_get(p[0], "y", y1, sizeof *y1 * R * C), LATHE_OK);
    assert_int_equal(lathe_program_get(p[1], "y", y2, sizeof *y2 * R * C), LATHE_OK);
    assert_memory_equal(y1, y2, sizeof *y1 * R * C);
    assert_int_equal(lathe_program_get(p[0], "grad.x", gx, sizeof *gx * R * C), LATHE_OK);
    long dropped = 0;
    for (int i = 0; i < R * C; i++) {
        bool kept = y1[i] != 0;
        dropped += !kept;
        if (kept && y1[i] != xv[i] * scale) fail_msg("y[%d] = %g, want %g", i, y1[i], xv[i] * scale);
        float want = kept ? xv[i] * scale + y1[i] : 0;
        if (fabsf(gx[i] - want) > 1e-5f * fabsf(want)) fail_msg("grad[%d] = %g, want %g", i, gx[i], want);
    }
    /* 96000 draws at p = 0.3: the standard deviation of the count is 142 */
    if (labs(dropped - 28800) > 1000) fail_msg("%ld of 96000 dropped at p = 0.3", dropped);
    /* the next run: a new mask, as many dropped */
    assert_int_equal(lathe_program_run(p[0]), LATHE_OK);
    assert_int_equal(lathe_program_get(p[0], "y", y2, sizeof *y2 * R * C), LATHE_OK);
    long same = 0;
    for (int i = 0; i < R * C; i++) same += (y1[i] != 0) == (y2[i] != 0);
    if (same > 96000 * 0.62 || same < 96000 * 0.54) fail_msg("%ld of 96000 elements agree between steps", same); /* 0.58 */
    /* the evaluator, from the same state (seed 11, step 0), gives the same bits */
    lathe_eval *ev = lathe_eval_new(g);
    assert_non_null(ev);
    double *xd = malloc(sizeof *xd * R * C), rng[2] = {11, 0};
    for (int i = 0; i < R * C; i++) xd[i] = xv[i];
    lathe_eval_set_f64(ev, "x", xd);
    lathe_eval_set_f64(ev, LATHE_RNG_NAME, rng);
    assert_int_equal(lathe_eval_run(ev), LATHE_OK);
    const double *ye = lathe_eval_value(ev, y);
    for (int i = 0; i < R * C; i++)
        if ((float)ye[i] != y1[i]) fail_msg("evaluator y[%d] = %g, jit %g", i, ye[i], y1[i]);
    lathe_eval_free(ev);
    for (int k = 0; k < 2; k++) lathe_program_free(p[k]);
    lathe_graph_free(g);
    free(xv), free(y1), free(y2), free(gx), free(xd);
}

/* Token indices of an embedding lookup (index_select) are checked the same
 * way, through a reshape, and the smallest table an input indexes sets the
 * range: out of range, the run is refused and nothing runs. */
static void test_token_check(void **state) {
    (void)state;
    for (int backend = LATHE_BACKEND_JIT; backend <= LATHE_BACKEND_EVAL; backend++) {
        lathe_graph *g = lathe_graph_new();
        lathe_node *wte = lathe_param(g, "wte.weight", LATHE_F32, LATHE_DIMS(5, 3), true);
        lathe_node *wpe = lathe_param(g, "wpe.weight", LATHE_F32, LATHE_DIMS(4, 3), true);
        lathe_node *tok = lathe_input(g, "tokens", LATHE_I64, LATHE_DIMS(2, 2));
        lathe_node *flat = lathe_reshape(g, tok, LATHE_DIMS(4));
        lathe_node *pos = lathe_reshape(g, lathe_index_select(g, wpe, 0, tok), LATHE_DIMS(4, 3));
        lathe_node *h = lathe_add(g, lathe_index_select(g, wte, 0, flat), pos);
        lathe_output(g, "h", h);
        assert_graph_ok(g);
        assert_int_equal(lathe_index_limit(g, tok), 4);
        lathe_program *p = lathe_compile(g, (lathe_backend)backend);
        assert_non_null(p);
        lathe_program_init(p, 1);
        int64_t good[4] = {0, 3, 2, 1}, bad[4] = {0, 3, 4, 1}, neg[4] = {0, -1, 2, 1};
        assert_int_equal(lathe_program_set(p, "tokens", good, sizeof good), LATHE_OK);
        assert_int_equal(lathe_program_run(p), LATHE_OK);
        refused(p, backend, "tokens", bad, "input 'tokens': element 2 is 4, outside [0, 4)");
        refused(p, backend, "tokens", neg, "input 'tokens': element 1 is -1, outside [0, 4)");
        lathe_program_free(p);
        lathe_graph_free(g);
    }
}

/* A chain of 100,000 elementwise ops compiles (fusion cuts it into kernels
 * of bounded expressions: building, lowering and printing them recurse) and
 * agrees with the evaluator. */
static void test_long_chain(void **state) {
    (void)state;
    enum { OPS = 100000 };
    lathe_graph *g = lathe_graph_new();
    lathe_node *h = lathe_input(g, "x", LATHE_F32, LATHE_DIMS(8));
    lathe_node *half = lathe_scalar(g, LATHE_F32, 0.5), *one = lathe_scalar(g, LATHE_F32, 1);
    for (int i = 0; i < OPS / 2; i++) h = lathe_add(g, lathe_mul(g, h, half), one); /* tends to 2 */
    lathe_output(g, "y", h);
    assert_graph_ok(g);
    int kernels = count_in_fused(g, "kernel k");
    if (kernels < OPS / 256) fail_msg("%d kernels for %d ops: the expressions are not bounded", kernels, OPS);
    check_vector_case("100,000 ops", g);
    lathe_graph_free(g);
}

/* The input gradient of a strided convolution in phases, under an
 * epilogue (the gradient of the relu before it, fused into its kernel):
 * lanes go through the epilogue one by one instead of scatters. */
static void test_phase_epilogue(void **state) {
    (void)state;
    static const char *widths[] = {"32", "64"};
    for (int wi = 0; wi < 2; wi++) {
        tile_target.vector_bytes = atoi(widths[wi]);
        char label[96];
        snprintf(label, sizeof label, "relu, 3x3 s2 p1 conv, 12x10, %s-byte vectors", widths[wi]);
        lathe_graph *g = lathe_graph_new();
        lathe_node *x = lathe_input(g, "x", LATHE_F32, LATHE_DIMS(2, 5, 12, 10));
        lathe_set_requires_grad(x, true);
        lathe_node *w = lathe_param(g, "conv.weight", LATHE_F32, LATHE_DIMS(7, 5, 3, 3), true);
        const int64_t st[2] = {2, 2}, pad[2] = {1, 1}, dil[2] = {1, 1};
        lathe_node *y = lathe_conv2d_hw(g, lathe_relu(g, x), w, NULL, st, pad, dil, 1);
        lathe_output(g, "y", y);
        add_grads(g, y, LATHE_F32, 7);
        assert_graph_ok(g);
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        assert_non_null(f);
        assert_int_equal(lathe_dump(g, LATHE_STAGE_FUSED, &tile_target, LATHE_DUMP_TEXT, f), LATHE_OK);
        fclose(f);
        /* the kernel in phases is the one that writes the relu's gradient (a where) */
        const char *k = strstr(text, "in 2x2 phases");
        const char *start = k;
        while (start && start > text && strncmp(start, "kernel k", 8)) start--;
        if (!k || !strstr(start, "where") || strstr(start, "where") > k) fail_msg("%s: no fused epilogue in phases:\n%s", label, text);
        free(text);
        check_vector_case(label, g);
        lathe_graph_free(g);
    }
    tile_target.vector_bytes = 0;
}

typedef struct {
    const char *label;
    int ra, rb;
    int64_t sa[4], sb[4];
    bool ta, tb; /* operand given transposed (its last two dims swapped) */
    const char *expect;
} mm_case;

static const mm_case mm_cases[] = {
    {"[5,37] @ [37,19]", 2, 2, {5, 37}, {37, 19}, false, false, "matmul, lanes over columns"},
    {"[6,40] @ [23,40]^T (linear)", 2, 2, {6, 40}, {23, 40}, false, true, "matmul, lanes over k"},
    {"[3,4,9] @ [9,21]", 3, 2, {3, 4, 9}, {9, 21}, false, false, "batches innermost"},
    {"[1,4,9] @ [2,9,5]", 3, 3, {1, 4, 9}, {2, 9, 5}, false, false, "matmul"},
    {"[33,7]^T @ [33,18]", 2, 2, {33, 7}, {33, 18}, true, false, "matmul, lanes over columns"},
    {"[7,1] @ [1,9]", 2, 2, {7, 1}, {1, 9}, false, false, "matmul, lanes over columns"},
    {"[2,100] @ [100,3]", 2, 2, {2, 100}, {100, 3}, false, false, "matmul"},
    {"[2,3,17] @ [2,5,17]^T", 3, 3, {2, 3, 17}, {2, 5, 17}, false, true, "matmul, lanes over k"},
    /* cache blocks: two blocks of rows (the second short), panels of k (the last short), ragged
     * columns; its gradient for b blocks a transposed a */
    {"[130,1100] @ [1100,200]", 2, 2, {130, 1100}, {1100, 200}, false, false, "panels of"},
    {"[2,40,130] @ [130,150]", 3, 2, {2, 40, 130}, {130, 150}, false, false, "panels of"},
    /* a shared by the batches of b: tiles take batches before the next rows */
    {"[7,40] @ [3,6,40]^T", 2, 3, {7, 40}, {3, 6, 40}, false, true, "batches innermost"},
};

static void test_vector_matmuls(void **state) {
    (void)state;
    static const char *widths[] = {"32", "64"};
    tile_target.l2_bytes = 256 << 10; /* blocks of fewer rows than the large case has, on any host */
    for (int wi = 0; wi < 2; wi++) {
        tile_target.vector_bytes = atoi(widths[wi]);
        for (size_t i = 0; i < sizeof mm_cases / sizeof mm_cases[0]; i++)
            for (int t = LATHE_F32; t <= LATHE_F64; t++) {
                const mm_case *mc = &mm_cases[i];
                char label[160];
                snprintf(label, sizeof label, "matmul %s/%s/%s-byte vectors", mc->label, t == LATHE_F32 ? "f32" : "f64",
                         widths[wi]);
                lathe_graph *g = lathe_graph_new();
                lathe_node *a = lathe_input(g, "a", (lathe_dtype)t, mc->ra, mc->sa);
                lathe_node *b = lathe_param(g, "b", (lathe_dtype)t, mc->rb, mc->sb, true);
                lathe_set_requires_grad(a, true);
                lathe_node *av = mc->ta ? lathe_transpose(g, a, mc->ra - 2, mc->ra - 1) : a;
                lathe_node *bv = mc->tb ? lathe_transpose(g, b, mc->rb - 2, mc->rb - 1) : b;
                lathe_node *y = lathe_relu(g, lathe_matmul(g, av, bv));
                lathe_output(g, "y", y);
                assert_graph_ok(g);
                add_grads(g, y, (lathe_dtype)t, 9);
                assert_graph_ok(g);
                if (count_in_fused(g, mc->expect) < 1) fail_msg("%s: the vector plan was not taken", label);
                check_vector_case(label, g);
                lathe_graph_free(g);
            }
    }
    tile_target.vector_bytes = 0;
    tile_target.l2_bytes = 0;
}

typedef struct {
    const char *label;
    int64_t n, c, h, w, k[2], st[2], pad[2];
    bool nan; /* some inputs NaN and -inf */
} pool_case;

static const pool_case pool_cases[] = {
    {"k2 s2, 8x8", 2, 4, 8, 8, {2, 2}, {2, 2}, {0, 0}, false},
    {"k3 s2 p1, 9x7", 2, 3, 9, 7, {3, 3}, {2, 2}, {1, 1}, false},
    {"k3 s1 p1, 6x6 (vector loads)", 1, 2, 6, 6, {3, 3}, {1, 1}, {1, 1}, false},
    {"k2 s1, 5x5 (overlapping)", 2, 2, 5, 5, {2, 2}, {1, 1}, {0, 0}, false},
    {"k(2,3) s(2,1) p(0,1), 4x6", 2, 1, 4, 6, {2, 3}, {2, 1}, {0, 1}, false},
    {"k2 s2, 28x28, NaN and -inf", 2, 3, 28, 28, {2, 2}, {2, 2}, {0, 0}, true},
    {"k3 s2 p1, 11x11, NaN and -inf", 1, 2, 11, 11, {3, 3}, {2, 2}, {1, 1}, true},
};

static void test_vector_pools(void **state) {
    (void)state;
    static const char *widths[] = {"32", "64"};
    for (int wi = 0; wi < 2; wi++) {
        tile_target.vector_bytes = atoi(widths[wi]);
        for (size_t i = 0; i < sizeof pool_cases / sizeof pool_cases[0]; i++)
            for (int t = LATHE_F32; t <= LATHE_F64; t++) {
                const pool_case *pc = &pool_cases[i];
                char label[160];
                snprintf(label, sizeof label, "max_pool2d %s/%s/%s-byte vectors", pc->label, t == LATHE_F32 ? "f32" : "f64",
                         widths[wi]);
                lathe_graph *g = lathe_graph_new();
                lathe_node *x = lathe_input(g, "x", (lathe_dtype)t, LATHE_DIMS(pc->n, pc->c, pc->h, pc->w));
                lathe_set_requires_grad(x, true);
                lathe_node *h = x;
                if (pc->nan) { /* x * m + e: m is 1 or NaN, e 0 or -inf */
                    rng r = {77};
                    int64_t numel = pc->n * pc->c * pc->h * pc->w;
                    double *m = malloc((size_t)numel * sizeof *m), *e = malloc((size_t)numel * sizeof *e);
                    float *mf = malloc((size_t)numel * sizeof *mf), *ef = malloc((size_t)numel * sizeof *ef);
                    for (int64_t j = 0; j < numel; j++) {
                        double u = rng_uniform(&r, 0, 1);
                        m[j] = u < 0.05 ? NAN : 1, e[j] = u > 0.9 ? -INFINITY : 0;
                        mf[j] = (float)m[j], ef[j] = (float)e[j];
                    }
                    bool f = t == LATHE_F32;
                    h = lathe_add(g, lathe_mul(g, x, lathe_const(g, (lathe_dtype)t, LATHE_DIMS(pc->n, pc->c, pc->h, pc->w), f ? (void *)mf : (void *)m)),
                                  lathe_const(g, (lathe_dtype)t, LATHE_DIMS(pc->n, pc->c, pc->h, pc->w), f ? (void *)ef : (void *)e));
                    free(m), free(e), free(mf), free(ef);
                }
                lathe_node *y = lathe_max_pool2d_hw(g, lathe_relu(g, h), pc->k, pc->st, pc->pad);
                lathe_output(g, "y", y);
                assert_graph_ok(g);
                add_grads(g, y, (lathe_dtype)t, 13);
                assert_graph_ok(g);
                if (count_in_fused(g, "max-pool, lanes") < 1 || count_in_fused(g, "max-pool gradient") < 1)
                    fail_msg("%s: the pool plans were not taken", label);
                check_vector_case(label, g);
                lathe_graph_free(g);
            }
    }
    tile_target.vector_bytes = 0;
}

/* Embedding lookups (index_select) and their gradients, a scatter-add
 * planned per block of columns (contract.c's lt_plan_scatter): against the
 * evaluator, the same bits on 1, 2 and 3 threads and, where no matmul
 * joins the gradient, with 32- and 64-byte tiles; token ids over the whole
 * vocabulary, half of them from a few frequent ones, so rows repeat. */
typedef struct {
    const char *label;
    int64_t xs[3], is[2];
    int xrank, irank, axis;
    bool tied;     /* x is also a linear head's weight: its gradient adds a matmul's */
    bool permuted; /* the lookup's result is permuted: its gradient is not a view with dense rows */
} emb_case;

static const emb_case emb_cases[] = {
    {"vocab 300, dim 48, tokens [4,33]", {300, 48}, {4, 33}, 2, 2, 0, false, false},
    {"vocab 300, dim 48, tokens [4,33], tied head", {300, 48}, {4, 33}, 2, 2, 0, true, false},
    {"vocab 257, dim 50 (a partial block), tokens [130]", {257, 50}, {130}, 2, 1, 0, false, false},
    {"vocab 40, dim 1000 (blocks and a partial one), tokens [3,20]", {40, 1000}, {3, 20}, 2, 2, 0, false, false},
    {"middle axis: x [3,40,20], index [5,7]", {3, 40, 20}, {5, 7}, 3, 2, 1, false, false},
    {"last axis: x [6,33], index [9]", {6, 33}, {9}, 2, 1, 1, false, false},
    {"permuted result: x [50,24], tokens [3,8]", {50, 24}, {3, 8}, 2, 2, 0, false, true},
    {"no tokens: x [7,20], tokens [0]", {7, 20}, {0}, 2, 1, 0, false, false},
};

static lathe_graph *emb_graph(const emb_case *ec, lathe_dtype t) {
    lathe_graph *g = lathe_graph_new();
    lathe_node *w = lathe_param(g, "wte.weight", t, ec->xrank, ec->xs, true);
    lathe_node *tok = lathe_input(g, "tokens", LATHE_I64, ec->irank, ec->is);
    lathe_node *h = lathe_index_select(g, w, ec->axis, tok);
    int64_t d = lathe_node_shape(h)[lathe_node_rank(h) - 1];
    lathe_node *y = lathe_mul(g, h, lathe_param(g, "scale", t, LATHE_DIMS(d), true));
    if (ec->permuted) y = lathe_permute(g, h, LATHE_AXES(2, 0, 1));
    if (ec->tied) y = lathe_linear(g, lathe_reshape(g, y, LATHE_DIMS(-1, d)), w, NULL);
    lathe_output(g, "y", y);
    assert_graph_ok(g);
    add_grads(g, y, t, 19);
    assert_graph_ok(g);
    return g;
}

/* Random floats in [-1, 1); tokens in [0, rows), half of them among the first 8. */
static void bind_tokens(lathe_graph *g, lathe_program *a, lathe_program *b, int64_t rows) {
    rng r = {4242};
    for (int i = 0; i < lathe_graph_num_nodes(g); i++) {
        lathe_node *n = lathe_graph_node(g, i);
        if (!n->name || n->op == LT_OP_CONST) continue;
        size_t nb = (size_t)n->numel * lathe_dtype_size(n->dtype);
        void *buf = malloc(nb + 8);
        for (int64_t j = 0; j < n->numel; j++) {
            double u = rng_uniform(&r, -1, 1);
            if (n->dtype == LATHE_I64) {
                int64_t hot = rows < 8 ? rows : 8, v = (int64_t)rng_uniform(&r, 0, (double)(u < 0 ? hot : rows));
                ((int64_t *)buf)[j] = v < rows ? v : rows - 1;
            } else if (n->dtype == LATHE_F32) ((float *)buf)[j] = (float)u;
            else ((double *)buf)[j] = u;
        }
        if (lathe_program_set(a, n->name, buf, nb)) fail_msg("set %s: %s", n->name, lathe_program_error(a));
        if (b && lathe_program_set(b, n->name, buf, nb)) fail_msg("set %s: %s", n->name, lathe_program_error(b));
        free(buf);
    }
}

/* Output k of p, malloc'd. */
static void *get_output(lathe_graph *g, lathe_program *p, int k, size_t *nb) {
    lathe_node *n = lathe_graph_output(g, k);
    *nb = (size_t)n->numel * lathe_dtype_size(n->dtype);
    void *x = malloc(*nb + 1);
    assert_int_equal(lathe_program_get(p, lathe_graph_output_name(g, k), x, *nb), LATHE_OK);
    return x;
}

static void test_vector_embeddings(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof emb_cases / sizeof emb_cases[0]; i++)
        for (int t = LATHE_F32; t <= LATHE_F64; t++) {
            const emb_case *ec = &emb_cases[i];
            lathe_graph *g = emb_graph(ec, (lathe_dtype)t);
            int nout = lathe_graph_num_outputs(g);
            assert_true(nout <= 8);
            void *first[8] = {0};
            for (int wi = 0; wi < 2; wi++) {
                tile_target.vector_bytes = wi ? 64 : 32;
                char label[192];
                snprintf(label, sizeof label, "embedding %s/%s/%d-byte vectors", ec->label, t == LATHE_F32 ? "f32" : "f64",
                         tile_target.vector_bytes);
                if (count_in_fused(g, "scatter-add of rows in index order") != 1)
                    fail_msg("%s: the gradient is not one scatter kernel", label);
                lathe_program *jit = compile_or_fail(label, g, LATHE_BACKEND_JIT);
                lathe_program *ref = compile_or_fail(label, g, LATHE_BACKEND_EVAL);
                bind_tokens(g, jit, ref, ec->xs[ec->axis]);
                lathe_program_set_threads(jit, 1);
                if (lathe_program_run(jit) || lathe_program_run(ref)) fail_msg("%s: run", label);
                agree(label, g, jit, ref);
                for (int threads = 1; threads <= 3; threads++) {
                    lathe_program_set_threads(jit, threads);
                    assert_int_equal(lathe_program_run(jit), LATHE_OK);
                    for (int k = 0; k < nout; k++) {
                        size_t nb;
                        void *x = get_output(g, jit, k, &nb);
                        bool widths = !ec->tied; /* a matmul's sums depend on its tiles */
                        if (!first[k]) first[k] = x;
                        else {
                            if (nb && memcmp(first[k], x, nb) && (threads > 1 || widths))
                                fail_msg("%s, %d threads: output %s differs from %s", label, threads,
                                         lathe_graph_output_name(g, k), threads > 1 ? "one thread's" : "32-byte tiles'");
                            free(x);
                        }
                    }
                    if (ec->tied && threads == 3) /* next width: compare threads again from its own first run */
                        for (int k = 0; k < nout; k++) free(first[k]), first[k] = NULL;
                }
                lathe_program_free(jit);
                lathe_program_free(ref);
            }
            for (int k = 0; k < nout; k++) free(first[k]);
            lathe_graph_free(g);
        }
    tile_target.vector_bytes = 0;
}

/* ---- layer norm ------------------------------------------------------------------------
 *
 * A composite (decompose.c) of a row mean, a row rstd and the normalized
 * affine map.  Fused, its forward is two kernels when the rows fill the
 * parallel chunks: the mean, and the map with the rstd computed per row in
 * it (fuse.c's row statistics); three when training, since the backward
 * reads the rstd too.  Its backward is the input gradient (its two row means
 * inside), the weight gradient and the bias gradient.  With few rows every
 * row statistic is a kernel: two more each way.  Checked as the vector
 * cases are, at transformer-like shapes, over the last dim and the last
 * two, after a linear layer (its matmul plan takes the tile width) or
 * alone. */
typedef struct {
    const char *label;
    int rank;
    int64_t shape[3];
    int k;          /* normalized dims */
    bool affine, linear;
    int fwd, train_fwd, train_bwd; /* kernels: inference; training, forward and backward */
} ln_case;

static const ln_case ln_cases[] = {
    {"[64,128] over [128]", 2, {64, 128}, 1, true, false, 2, 3, 3},
    /* and the linear's matmul, and the gradients of its input and weight */
    {"[64,128] over [128], no affine, after a linear", 2, {64, 128}, 1, false, true, 3, 4, 3},
    {"[4,16,96] over [96]", 3, {4, 16, 96}, 1, true, false, 2, 3, 3},
    /* 4 rows */
    {"[4,16,96] over [16,96]", 3, {4, 16, 96}, 2, true, false, 3, 3, 5},
    {"[4,16,96] over [16,96], after a linear", 3, {4, 16, 96}, 2, true, true, 4, 4, 7},
};

/* The kernels of g's fused dump that compute forward values and those that
 * compute gradients: a kernel's last node, the one it writes, is marked (F)
 * or (B). */
static void count_kernels(lathe_graph *g, int *fwd, int *bwd) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    assert_int_equal(lathe_dump(g, LATHE_STAGE_FUSED, &tile_target, LATHE_DUMP_TEXT, f), LATHE_OK);
    fclose(f);
    *fwd = *bwd = 0;
    for (const char *p = text; (p = strstr(p, "\n  nodes: ")); p++) {
        const char *end = strchr(p + 1, '\n');
        if (end && end - p > 3 && end[-2] == 'B') ++*bwd;
        else if (end && end - p > 3 && end[-2] == 'F') ++*fwd;
    }
    free(text);
}

static lathe_graph *ln_graph(const ln_case *lc, lathe_dtype t, bool grads) {
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_input(g, "x", t, lc->rank, lc->shape);
    lathe_set_requires_grad(x, true);
    int64_t D = lc->shape[lc->rank - 1];
    if (lc->linear) x = lathe_linear(g, x, lathe_param(g, "fc.weight", t, LATHE_DIMS(D, D), true), NULL);
    const int64_t *ns = lc->shape + lc->rank - lc->k;
    lathe_node *w = lc->affine ? lathe_param(g, "ln.weight", t, lc->k, ns, true) : NULL;
    lathe_node *b = lc->affine ? lathe_param(g, "ln.bias", t, lc->k, ns, true) : NULL;
    lathe_node *y = lathe_layer_norm(g, x, lc->k, ns, w, b, 1e-5);
    lathe_output(g, "y", y);
    assert_graph_ok(g);
    if (grads) { /* a cotangent that is an input, as a loss's gradient is: nothing folds */
        lathe_node *gy = lathe_input(g, "gy", t, lc->rank, lathe_node_shape(y));
        if (lathe_backward(g, 1, &y, &gy) != LATHE_OK) fail_msg("backward: %s", lathe_graph_error(g));
    }
    assert_graph_ok(g);
    return g;
}

static void test_layer_norms(void **state) {
    (void)state;
    static const char *widths[] = {"32", "64"};
    for (int wi = 0; wi < 2; wi++) {
        tile_target.vector_bytes = atoi(widths[wi]);
        for (size_t i = 0; i < sizeof ln_cases / sizeof ln_cases[0]; i++)
            for (int t = LATHE_F32; t <= LATHE_F64; t++) {
                const ln_case *lc = &ln_cases[i];
                char label[160];
                snprintf(label, sizeof label, "layer_norm %s/%s/%s-byte vectors", lc->label,
                         t == LATHE_F32 ? "f32" : "f64", widths[wi]);
                int kf, kb, kt;
                lathe_graph *f = ln_graph(lc, (lathe_dtype)t, false);
                count_kernels(f, &kf, &kb);
                lathe_graph_free(f);
                lathe_graph *g = ln_graph(lc, (lathe_dtype)t, true);
                count_kernels(g, &kt, &kb);
                if (kf != lc->fwd || kt != lc->train_fwd || kb != lc->train_bwd)
                    fail_msg("%s: %d kernels, and %d forward and %d backward when training; want %d, %d and %d", label,
                             kf, kt, kb, lc->fwd, lc->train_fwd, lc->train_bwd);
                if (lc->linear && count_in_fused(g, "matmul, lanes") < 3) fail_msg("%s: the matmul plans were not taken", label);
                check_vector_case(label, g);
                lathe_graph_free(g);
            }
    }
    tile_target.vector_bytes = 0;
}

/* A causal self-attention block from the description language: layer
 * norms, the causal mask and masked_fill, tril, arange, ones; forward and
 * backward against the evaluator and the same bits on 1 to 3 threads. */
static void test_attention_block(void **state) {
    (void)state;
    const char *src = "batch N = 2\n"
                      "let T = 12\n"
                      "let D = 32\n"
                      "input tokens: f32[N, T, D]\n"
                      "input target: f32[N, T, D]\n"
                      "h = layer_norm(tokens, D) as ln1\n"
                      "s = matmul(linear(h, D) as q, transpose(linear(h, D) as k, 1, 2)) / sqrt(D)\n"
                      "a = tril(softmax(masked_fill(s, causal_mask(T), -1e9), -1))\n"
                      "pos = reshape(cast(arange(T), f32), [T, 1]) * ones(D) / T\n"
                      "y = layer_norm(tokens + pos + matmul(a, linear(h, D) as v), [T, D]) as ln2\n"
                      "output y\n"
                      "loss mse_loss(y, target)\n";
    lathe_graph *g = lathe_graph_new();
    if (lathe_desc_parse(g, src, strlen(src), "attn.lathe", NULL, NULL) != LATHE_OK || lathe_backward_marked(g) != LATHE_OK)
        fail_msg("attention block: %s", lathe_graph_error(g));
    check_vector_case("attention block", g);
    lathe_graph_free(g);
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

/* ---- targets -------------------------------------------------------------------------
 *
 * The target description is read from LLVM's code generator (target.c's
 * probes); these CPUs' vector units are documented facts: x86-64 is SSE2
 * (16-byte vectors, no FMA), x86-64-v3 is AVX2 with FMA (32-byte vectors,
 * masks in vector registers), skylake-avx512 has AVX-512 (64-byte vectors,
 * 32 registers, mask registers), AVX512-BF16 came with cooperlake. */
static void test_target_descriptions(void **state) {
    (void)state;
    static const struct {
        const char *cpu, *features;
        int bytes, regs, tile;
        bool fma, masked, kmask, bf16;
    } cases[] = {
        {"x86-64", NULL, 16, 16, 32, false, false, false, false},
        {"x86-64-v3", NULL, 32, 16, 32, true, true, false, false},
        {"skylake-avx512", NULL, 64, 32, 64, true, true, true, false},
        {"cooperlake", NULL, 64, 32, 64, true, true, true, true},
        {"skylake-avx512", "-avx512f", 32, 16, 32, true, true, false, false},
        {"x86-64", "+avx2,+fma", 32, 16, 32, true, true, false, false},
    };
    char err[4096];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lt_target t;
        lathe_target opt = {.cpu = cases[i].cpu, .features = cases[i].features};
        if (lt_target_init(&t, &opt, err, sizeof err) != LATHE_OK) fail_msg("%s: %s", cases[i].cpu, err);
        char d[512];
        lt_target_describe(&t, d, sizeof d);
        if (t.vector_bytes != cases[i].bytes || t.vector_regs != cases[i].regs || t.tile_bytes != cases[i].tile ||
            t.fma != cases[i].fma || t.masked_loads != cases[i].masked || t.mask_regs != cases[i].kmask ||
            t.bf16 != cases[i].bf16)
            fail_msg("%s %s: got %s", cases[i].cpu, cases[i].features ? cases[i].features : "", d);
    }
    /* a forced tile width, the host, and what is refused */
    lt_target t;
    assert_int_equal(lt_target_init(&t, &(lathe_target){.cpu = "x86-64", .vector_bytes = 64}, err, sizeof err), LATHE_OK);
    assert_int_equal(t.tile_bytes, 64);
    assert_int_equal(t.vector_bytes, 16);
    assert_int_equal(lt_target_init(&t, NULL, err, sizeof err), LATHE_OK);
    assert_true(t.host && t.vector_bytes >= 16);
    /* the host's features, then the caller's: the later item wins */
    assert_int_equal(lt_target_init(&t, &(lathe_target){.features = "-avx512f"}, err, sizeof err), LATHE_OK);
    assert_true(t.host && t.vector_bytes <= 32 && !t.mask_regs && t.tile_bytes == 32);
    assert_int_equal(lt_target_init(&t, &(lathe_target){.cpu = "x86-64", .features = "+avx avx2"}, err, sizeof err),
                     LATHE_ERR_ARG);
    assert_int_equal(lt_target_init(&t, &(lathe_target){.cpu = "pentium9"}, err, sizeof err), LATHE_ERR_ARG);
    assert_non_null(strstr(err, "--target-cpu pentium9: not a CPU LLVM 19 knows"));
    assert_int_equal(lt_target_init(&t, &(lathe_target){.cpu = "x86-64", .features = "+avx9000"}, err, sizeof err),
                     LATHE_ERR_ARG);
    assert_non_null(strstr(err, "'+avx9000' is not +FEATURE or -FEATURE"));
    assert_int_equal(lt_target_init(&t, &(lathe_target){.features = "avx2"}, err, sizeof err), LATHE_ERR_ARG);
    assert_int_equal(lt_target_init(&t, &(lathe_target){.vector_bytes = 48}, err, sizeof err), LATHE_ERR_ARG);
    assert_non_null(strstr(err, "vector_bytes 48"));
    /* the public call records the refusal in the graph */
    lathe_graph *g = lathe_graph_new();
    lathe_output(g, "y", lathe_exp(g, lathe_input(g, "x", LATHE_F32, LATHE_DIMS(3))));
    assert_null(lathe_compile_for(g, LATHE_BACKEND_JIT, &(lathe_target){.cpu = "pentium9"}));
    assert_non_null(strstr(lathe_graph_error(g), "not a CPU LLVM 19 knows"));
    lathe_graph_free(g);
}

/* The register tiles in g's fused dump for target t: its kernels' "space" lines. */
static char *tile_lines(lathe_graph *g, const lathe_target *t) {
    char *text = NULL, *lines = NULL;
    size_t len = 0, llen = 0;
    FILE *f = open_memstream(&text, &len), *l = open_memstream(&lines, &llen);
    assert_true(f && l);
    assert_int_equal(lathe_dump(g, LATHE_STAGE_FUSED, t, LATHE_DUMP_TEXT, f), LATHE_OK);
    fclose(f);
    for (char *p = text; p && *p;) {
        char *e = strchr(p, '\n');
        if (e) *e = 0;
        if (!strncmp(p, "  space ", 8) && strstr(p, " tiles of ")) fprintf(l, "%s\n", p); /* kernels, not the target line */
        p = e ? e + 1 : NULL;
    }
    fclose(l);
    free(text);
    return lines;
}

/* Tiles are sized for --target-cpu, not for the host: an AVX2 CPU and an
 * AVX-512 CPU get different tiles for the same graphs, whatever machine
 * compiles, and each program gives the evaluator's answers where this host
 * can run its instructions. */
static void test_target_tiles(void **state) {
    (void)state;
    const lathe_target avx2 = {.cpu = "x86-64-v3"}, avx512 = {.cpu = "skylake-avx512"};
    lt_target host;
    char err[4096];
    assert_int_equal(lt_target_init(&host, NULL, err, sizeof err), LATHE_OK);
    bool run2 = host.vector_bytes >= 32 && host.fma, run512 = host.vector_bytes == 64 && host.mask_regs;
    const conv_case *cases[] = {&conv_cases[0], &conv_cases[7]};
    for (int i = 0; i < 2; i++) {
        lathe_graph *g = conv_graph(cases[i], LATHE_F32);
        char *a = tile_lines(g, &avx2), *b = tile_lines(g, &avx512);
        if (!*a || !*b) fail_msg("%s: no tiled kernels", cases[i]->label);
        if (!strcmp(a, b)) fail_msg("%s: x86-64-v3 and skylake-avx512 got the same tiles:\n%s", cases[i]->label, a);
        free(a);
        free(b);
        for (int k = 0; k < 2; k++) {
            const lathe_target *t = k ? &avx512 : &avx2;
            if (!(k ? run512 : run2)) {
                print_message("skipping the run for %s: this host's vector unit cannot run it\n", t->cpu);
                continue;
            }
            char label[200];
            snprintf(label, sizeof label, "%s for %s", cases[i]->label, t->cpu);
            lathe_program *jit = lathe_compile_for(g, LATHE_BACKEND_JIT, t);
            if (!jit) fail_msg("%s: compile: %s", label, lathe_graph_error(g));
            lathe_program *ref = compile_or_fail(label, g, LATHE_BACKEND_EVAL);
            bind_both(g, jit, ref, 13);
            if (lathe_program_run(jit) || lathe_program_run(ref)) fail_msg("%s: run", label);
            agree(label, g, jit, ref);
            lathe_program_free(jit);
            lathe_program_free(ref);
        }
        lathe_graph_free(g);
    }
}

/* Kernels that differ only in where their buffers are share one body of
 * code (share.c): two relu(x + y) over inputs of one shape share, a third
 * over another shape and a fourth with another op do not; every output
 * agrees with the evaluator. */
static void test_shared_bodies(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    const char *names[4][2] = {{"a", "b"}, {"c", "d"}, {"e", "f"}, {"p", "q"}};
    int64_t len[4] = {100, 100, 101, 100};
    for (int i = 0; i < 4; i++) {
        lathe_node *x = lathe_input(g, names[i][0], LATHE_F32, LATHE_DIMS(len[i]));
        lathe_node *y = lathe_input(g, names[i][1], LATHE_F32, LATHE_DIMS(len[i]));
        char out[8];
        snprintf(out, sizeof out, "y%d", i);
        lathe_output(g, out, i == 3 ? lathe_relu(g, lathe_sub(g, x, y)) : lathe_relu(g, lathe_add(g, x, y)));
    }
    assert_graph_ok(g);
    lathe_program *jit = compile_or_fail("shared bodies", g, LATHE_BACKEND_JIT);
    lathe_program *ref = compile_or_fail("shared bodies", g, LATHE_BACKEND_EVAL);
    const lt_fused *f = jit->b.f;
    const lt_bodies *bd = &jit->b.bodies;
    assert_int_equal(f->nk, 4);
    int k[4];
    for (int i = 0; i < 4; i++) { /* kernel of output i */
        k[i] = -1;
        for (int j = 0; j < f->nk; j++)
            if (f->ks[j].buf == f->buf_of[f->g->outputs[i].node->id]) k[i] = j;
        assert_true(k[i] >= 0);
    }
    assert_int_equal(bd->rep[k[0]], bd->rep[k[1]]);
    assert_true(bd->rep[k[2]] != bd->rep[k[0]] && bd->rep[k[3]] != bd->rep[k[0]] && bd->rep[k[3]] != bd->rep[k[2]]);
    assert_int_equal(bd->nreps, 3);
    bind_both(g, jit, ref, 31);
    assert_int_equal(lathe_program_run(jit), LATHE_OK);
    assert_int_equal(lathe_program_run(ref), LATHE_OK);
    agree("shared bodies", g, jit, ref);
    lathe_program_free(jit);
    lathe_program_free(ref);
    lathe_graph_free(g);
}

/* Index arithmetic simplified with the loop variables' ranges (fuse.c):
 * each kernel's loads of the input are evaluated at every element against
 * the index worked out by hand, with no division left for LLVM to turn into
 * a gather: a merge of leading dims reads its input at r*512 + c, and heads
 * permuted back to rows run over [2048, 4, 32], the head a loop of its own. */
static int64_t eval_index(const lt_expr *e, const int64_t *var) {
    switch (e->kind) {
    case X_CONST: return e->i;
    case X_VAR: return var[e->var];
    case X_SELECT: return eval_index(e->a, var) ? eval_index(e->b, var) : eval_index(e->c, var);
    case X_BIN: {
        int64_t a = eval_index(e->a, var), b = eval_index(e->b, var);
        switch (e->op) {
        case LT_OP_ADD: return a + b;
        case LT_OP_SUB: return a - b;
        case LT_OP_MUL: return a * b;
        case LT_OP_MINIMUM: return a < b ? a : b;
        case LT_OP_MAXIMUM: return a > b ? a : b;
        case LT_OP_LT: return a < b;
        case LT_OP_GE: return a >= b;
        case LT_OP_EQ: return a == b;
        case XB_IDIV: return a / b;
        case XB_IMOD: return a % b;
        case XB_AND: return a && b;
        default: fail_msg("index op %d", e->op);
        }
    }
    default: fail_msg("index kind %d", e->kind);
    }
    return 0;
}
static bool uses_var(const lt_expr *e, int v) {
    return e && ((e->kind == X_VAR && e->var == v) || uses_var(e->a, v) || uses_var(e->b, v) || uses_var(e->c, v));
}
/* a division of an index holding variable v (v < 0: of any index) */
static bool has_div(const lt_expr *e, int v) {
    if (!e) return false;
    if (e->kind == X_BIN && (e->op == XB_IDIV || e->op == XB_IMOD) && (v < 0 || uses_var(e->a, v))) return true;
    return has_div(e->a, v) || has_div(e->b, v) || has_div(e->c, v);
}
static const lt_expr *load_of(const lt_expr *e, int buf) {
    if (!e) return NULL;
    if (e->kind == X_LOAD && e->buf == buf) return e;
    const lt_expr *l = load_of(e->a, buf);
    if (!l) l = load_of(e->b, buf);
    if (!l) l = load_of(e->c, buf);
    return l ? l : load_of(e->body, buf);
}

static void index_simplification_cases(void) {
    for (int which = 0; which < 2; which++) {
        lathe_graph *g = lathe_graph_new();
        lathe_node *x, *y;
        if (which == 0) { /* [32, 64, 512] -> [2048, 512] */
            x = lathe_input(g, "x", LATHE_F32, LATHE_DIMS(32, 64, 512));
            y = lathe_reshape(g, lathe_exp(g, x), 2, (int64_t[]){2048, 512});
        } else { /* attention heads back to rows: [32, 4, 64, 32] -> [2048, 128] */
            x = lathe_input(g, "x", LATHE_F32, LATHE_DIMS(32, 4, 64, 32));
            lathe_node *p = lathe_permute(g, lathe_exp(g, x), 4, (int64_t[]){0, 2, 1, 3});
            y = lathe_reshape(g, p, 2, (int64_t[]){2048, 128});
        }
        lathe_output(g, "y", lathe_tanh(g, y));
        assert_graph_ok(g);
        lathe_program *jit = compile_or_fail("index simplification", g, LATHE_BACKEND_JIT);
        const lt_fused *f = jit->b.f;
        int xb = f->buf_of[x->id], ncols = which == 0 ? 512 : 128;
        assert_int_equal(f->nk, 1);
        const lt_expr *ld = load_of(f->ks[0].value, xb);
        assert_non_null(ld);
        /* case 1 runs over [2048, 4, 32]: the division by 32 is the space's */
        const lt_kernel *k = &f->ks[0];
        assert_int_equal(k->rank, which == 0 ? 2 : 3);
        if (which == 1) assert_true(k->shape[1] == 4 && k->shape[2] == 32);
        if (which == 0) assert_false(has_div(ld->a, -1));
        else assert_false(has_div(ld->a, 1) || has_div(ld->a, 2)); /* only the row's r / 64, r % 64 */
        for (int64_t r = 0; r < 2048; r++)
            for (int64_t c = 0; c < ncols; c++) {
                int64_t v[3] = {r, which == 0 ? c : c / 32, c % 32};
                int64_t want = which == 0 ? r * 512 + c
                                          : (r / 64) * 8192 + (c / 32) * 2048 + (r % 64) * 32 + c % 32;
                int64_t got = eval_index(ld->a, v);
                if (got != want) fail_msg("case %d: (%lld, %lld) reads %lld, not %lld", which, (long long)r,
                                          (long long)c, (long long)got, (long long)want);
            }
        agrees_with_eval("index simplification", g, jit, 41);
        lathe_graph_free(g);
    }
}
static void test_index_simplification(void **state) {
    (void)state;
    at_both_widths(index_simplification_cases);
}

/* max and min reductions order zeros as IEEE 754's maximum and minimum
 * (+0 above -0) and keep NaN, whichever order the row holds them in, in the
 * vectorized loop (rows of 64) and the short one (rows of 3), on the JIT and
 * on the evaluator alike. */
static void max_signed_zeros_cases(void) {
    for (int len = 3; len <= 64; len += 61) {
        lathe_graph *g = lathe_graph_new();
        lathe_node *x = lathe_input(g, "x", LATHE_F32, LATHE_DIMS(6, len));
        int64_t ax = 1;
        lathe_output(g, "mx", lathe_max(g, x, 1, &ax, false));
        lathe_output(g, "mn", lathe_min(g, x, 1, &ax, false));
        assert_graph_ok(g);
        /* rows 0-1: {-0, +0, -1...} and {+0, -0, -1...}: max +0; rows 2-3:
         * {-0, +0, 1...} and {+0, -0, 1...}: min -0; row 4: -0, -1..., NaN
         * last: NaN; row 5: -1..., -0 last: max -0 */
        float *in = calloc((size_t)(6 * len), sizeof *in);
        for (int j = 0; j < len; j++) {
            float z0 = j == 0 ? -0.0f : 0.0f, z1 = j == 0 ? 0.0f : -0.0f;
            in[0 * len + j] = j < 2 ? z0 : -1.0f;
            in[1 * len + j] = j < 2 ? z1 : -1.0f;
            in[2 * len + j] = j < 2 ? z0 : 1.0f;
            in[3 * len + j] = j < 2 ? z1 : 1.0f;
            in[4 * len + j] = j == 0 ? -0.0f : j == len - 1 ? NAN : -1.0f;
            in[5 * len + j] = j == len - 1 ? -0.0f : -1.0f;
        }
        for (int be = 0; be < 2; be++) {
            lathe_program *p = compile_or_fail("signed zeros", g, be ? LATHE_BACKEND_EVAL : LATHE_BACKEND_JIT);
            assert_int_equal(lathe_program_set(p, "x", in, sizeof(float) * 6 * (size_t)len), LATHE_OK);
            assert_int_equal(lathe_program_run(p), LATHE_OK);
            float mx[6], mn[6];
            assert_int_equal(lathe_program_get(p, "mx", mx, sizeof mx), LATHE_OK);
            assert_int_equal(lathe_program_get(p, "mn", mn, sizeof mn), LATHE_OK);
            const char *who = be ? "evaluator" : "JIT";
            for (int r = 0; r < 2; r++)
                if (mx[r] != 0 || signbit(mx[r])) fail_msg("%s, rows of %d: max of row %d is %g", who, len, r, mx[r]);
            for (int r = 2; r < 4; r++)
                if (mn[r] != 0 || !signbit(mn[r])) fail_msg("%s, rows of %d: min of row %d is %g", who, len, r, mn[r]);
            if (!isnan(mx[4]) || !isnan(mn[4])) fail_msg("%s, rows of %d: NaN lost: %g, %g", who, len, mx[4], mn[4]);
            if (mx[5] != 0 || !signbit(mx[5]) || mn[5] != -1.0f)
                fail_msg("%s, rows of %d: row 5 gives %g, %g", who, len, mx[5], mn[5]);
            lathe_program_free(p);
        }
        free(in);
        lathe_graph_free(g);
    }
}
static void test_max_signed_zeros(void **state) {
    (void)state;
    at_both_widths(max_signed_zeros_cases);
}

/* A matmul's epilogue through reshapes (fuse.c): y = reshape(tanh(reshape(a
 * @ b, [4, 16, 24])) * z, [64, 24]) is one kernel with the matmul's vector
 * plan; when the chain ends in another shape ([4, 16, 24]), the matmul gets
 * a kernel of its own.  Both agree with the evaluator. */
static void epilogue_through_reshape_cases(void) {
    for (int back = 0; back < 2; back++) {
        lathe_graph *g = lathe_graph_new();
        lathe_node *a = lathe_input(g, "a", LATHE_F32, LATHE_DIMS(64, 40));
        lathe_node *b = lathe_input(g, "b", LATHE_F32, LATHE_DIMS(40, 24));
        lathe_node *z = lathe_input(g, "z", LATHE_F32, LATHE_DIMS(4, 16, 24));
        lathe_node *m = lathe_reshape(g, lathe_matmul(g, a, b), 3, (int64_t[]){4, 16, 24});
        lathe_node *y = lathe_mul(g, lathe_tanh(g, m), z);
        if (back) y = lathe_reshape(g, y, 2, (int64_t[]){64, 24});
        lathe_output(g, "y", y);
        assert_graph_ok(g);
        lathe_program *jit = compile_or_fail("epilogue through reshape", g, LATHE_BACKEND_JIT);
        const lt_fused *f = jit->b.f;
        if (back) {
            assert_int_equal(f->nk, 1);
            assert_non_null(f->ks[0].con);
        } else assert_int_equal(f->nk, 2);
        agrees_with_eval("epilogue through reshape", g, jit, 43);
        lathe_graph_free(g);
    }
}
static void test_epilogue_through_reshape(void **state) {
    (void)state;
    at_both_widths(epilogue_through_reshape_cases);
}

/* Pieces (fuse.c): attention's heads of q, k and v put back as rows and
 * concatenated along the columns, [8, 4, 8, 32] x 3 -> [64, 384], run over
 * [64, 12, 32] with the head dim cut at 4 and 8, each piece a plain copy
 * (no select, no division of the columns); a concat of plain [64, 10] and
 * [64, 22] is cut at column 10 without a split.  Both agree with the
 * evaluator.  (64 rows: the parallel range takes the rows alone.) */
static void pieces_cases(void) {
    for (int which = 0; which < 2; which++) {
        lathe_graph *g = lathe_graph_new();
        lathe_node *parts[3];
        int n = which == 0 ? 3 : 2;
        for (int i = 0; i < n; i++) {
            char name[4] = {(char)('p' + i), 0};
            if (which == 0) {
                lathe_node *x = lathe_input(g, name, LATHE_F32, LATHE_DIMS(8, 4, 8, 32));
                parts[i] = lathe_reshape(g, lathe_permute(g, x, 4, (int64_t[]){0, 2, 1, 3}), 2, (int64_t[]){64, 128});
            } else parts[i] = lathe_input(g, name, LATHE_F32, LATHE_DIMS(64, i == 0 ? 10 : 22));
        }
        lathe_output(g, "y", lathe_concat(g, n, parts, 1));
        assert_graph_ok(g);
        lathe_program *jit = compile_or_fail("pieces", g, LATHE_BACKEND_JIT);
        const lt_fused *f = jit->b.f;
        assert_int_equal(f->nk, 1);
        const lt_kernel *k = &f->ks[0];
        if (which == 0) {
            assert_int_equal(k->rank, 3);
            assert_true(k->shape[1] == 12 && k->shape[2] == 32);
            assert_int_equal(k->nseg, 3);
            assert_true(k->seg_dim == 1 && k->seg_lo[1] == 4 && k->seg_lo[2] == 8 && k->seg_lo[3] == 12);
        } else {
            assert_int_equal(k->rank, 2);
            assert_int_equal(k->nseg, 2);
            assert_true(k->seg_dim == 1 && k->seg_lo[1] == 10 && k->seg_lo[2] == 32);
        }
        for (int sgi = 0; sgi < k->nseg; sgi++) {
            const lt_expr *v = k->segv[sgi];
            if (v->kind != X_LOAD) fail_msg("case %d piece %d: a load, not kind %d", which, sgi, v->kind);
            if (has_div(v->a, k->rank - 1) || has_div(v->a, k->rank - 2))
                fail_msg("case %d piece %d divides its columns", which, sgi);
        }
        agrees_with_eval("pieces", g, jit, 47);
        lathe_graph_free(g);
    }
}
static void test_pieces(void **state) {
    (void)state;
    at_both_widths(pieces_cases);
}

/* q @ k^T with k^T a permuted view (attention's scores, k of 8 per head):
 * k^T is copied once so the matmul broadcasts along its contiguous columns
 * (a plan of lanes over columns, not dot products over the short k); the
 * result agrees with the evaluator. */
static void permuted_rhs_cases(void) {
    lathe_graph *g = lathe_graph_new();
    lathe_node *q = lathe_input(g, "q", LATHE_F32, LATHE_DIMS(2, 4, 16, 8));
    lathe_node *k = lathe_input(g, "k", LATHE_F32, LATHE_DIMS(2, 16, 4, 8));
    lathe_node *kt = lathe_permute(g, k, 4, (int64_t[]){0, 2, 3, 1}); /* [2, 4, 8, 16] */
    lathe_output(g, "s", lathe_matmul(g, q, kt));
    assert_graph_ok(g);
    lathe_program *jit = compile_or_fail("permuted rhs", g, LATHE_BACKEND_JIT);
    const lt_fused *f = jit->b.f;
    assert_int_equal(f->nk, 2);
    assert_null(f->ks[0].con);
    assert_non_null(f->ks[1].con);
    assert_int_equal(f->ks[1].con->kind, LT_C_MM_BCAST);
    agrees_with_eval("permuted rhs", g, jit, 53);
    lathe_graph_free(g);
}
static void test_permuted_rhs(void **state) {
    (void)state;
    at_both_widths(permuted_rhs_cases);
}

/* Random reassemblies of heads (permutes and reshapes, concatenated, then
 * sliced with a step, under an elementwise op), at sizes where kernels are
 * cut into pieces and their columns split: the JIT against the evaluator,
 * 40 cases with each tile width; at least some of them must have been cut. */
static void pieces_random_cases(void) {
    uint64_t rs = 12345;
    int cut = 0, split = 0;
    for (int c = 0; c < 40; c++) {
#define RND(n) ((int)((rs = rs * 6364136223846793005ULL + 1442695040888963407ULL) >> 33) % (n))
        lathe_graph *g = lathe_graph_new();
        int np = 1 + RND(3);
        int64_t a = 8 * (1 + RND(3)), b = 8 * (1 + RND(2)); /* a * b >= 64 rows */
        lathe_node *parts[3];
        int64_t cols = 0;
        for (int i = 0; i < np; i++) {
            int64_t h = 1 + RND(4), d = 8 << RND(3);
            char name[4] = {(char)('p' + i), 0};
            lathe_node *x = lathe_input(g, name, LATHE_F32, LATHE_DIMS(a, h, b, d));
            static const int64_t perms[3][4] = {{0, 2, 1, 3}, {2, 0, 1, 3}, {0, 2, 3, 1}};
            int pk = RND(3);
            lathe_node *p = lathe_permute(g, x, 4, perms[pk]);
            parts[i] = lathe_reshape(g, p, 2, (int64_t[]){a * b, h * d});
            cols += h * d;
        }
        lathe_node *y = np > 1 ? lathe_concat(g, np, parts, 1) : parts[0];
        if (RND(2)) {
            int64_t st = RND((int)(cols / 2)), step = 1 + RND(3);
            y = lathe_slice(g, y, 1, st, cols, step);
        }
        lathe_output(g, "y", RND(2) ? lathe_exp(g, y) : y);
        assert_graph_ok(g);
        char label[32];
        snprintf(label, sizeof label, "pieces %d", c);
        lathe_program *jit = compile_or_fail(label, g, LATHE_BACKEND_JIT);
        const lt_fused *f = jit->b.f;
        for (int k = 0; k < f->nk; k++) {
            cut += f->ks[k].nseg > 0;
            split += f->ks[k].rank > f->bufs[f->ks[k].buf].rank;
        }
        agrees_with_eval(label, g, jit, (uint64_t)c + 61);
        lathe_graph_free(g);
#undef RND
    }
    if (cut < 5 || split < 5) fail_msg("only %d kernels in pieces and %d split: the cases miss their point", cut, split);
}
static void test_pieces_random(void **state) {
    (void)state;
    at_both_widths(pieces_random_cases);
}

/* The object cache (compiler/cache.c): a second compile of the same graph
 * takes every part's code from the cache and gives the same bits; a damaged
 * entry is a miss, recompiled and rewritten; "off" caches nothing. */
static lathe_program *cache_compile(lathe_graph *g, int *hits) {
    lathe_program *p = compile_or_fail("cache", g, LATHE_BACKEND_JIT);
    *hits = p->b.cache_hits;
    return p;
}

static void test_cache(void **state) {
    (void)state;
    char dir[] = "/tmp/lathe-cache-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    const char *was = getenv("LATHE_CACHE_DIR");
    char *saved = was ? strdup(was) : NULL;
    setenv("LATHE_CACHE_DIR", dir, 1);
    lathe_graph *g = conv_graph(&conv_cases[0], LATHE_F32);
    int h0, h1, h2, h3;
    lathe_program *a = cache_compile(g, &h0), *b = cache_compile(g, &h1);
    assert_int_equal(h0, 0);
    if (h1 != a->b.nparts || h1 < 1) fail_msg("second compile: %d of %d parts from the cache", h1, a->b.nparts);
    lathe_program *ref = compile_or_fail("cache", g, LATHE_BACKEND_EVAL);
    bind_both(g, a, ref, 29);
    bind_both(g, b, ref, 29);
    assert_int_equal(lathe_program_run(a), LATHE_OK);
    assert_int_equal(lathe_program_run(b), LATHE_OK);
    assert_int_equal(lathe_program_run(ref), LATHE_OK);
    agree("cached code", g, b, ref);
    for (int k = 0; k < lathe_graph_num_outputs(g); k++) {
        lathe_node *n = lathe_graph_output(g, k);
        size_t nb = (size_t)n->numel * lathe_dtype_size(n->dtype);
        void *x = malloc(nb + 1), *y = malloc(nb + 1);
        assert_int_equal(lathe_program_get(a, lathe_graph_output_name(g, k), x, nb), LATHE_OK);
        assert_int_equal(lathe_program_get(b, lathe_graph_output_name(g, k), y, nb), LATHE_OK);
        if (nb && memcmp(x, y, nb)) fail_msg("cached code: output %s differs", lathe_graph_output_name(g, k));
        free(x);
        free(y);
    }
    /* damage every entry: one byte of each object flipped */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "for f in %s/*.o; do printf '\\377' | dd of=$f bs=1 seek=100 conv=notrunc 2>/dev/null; done", dir);
    assert_int_equal(system(cmd), 0);
    lathe_program *c = cache_compile(g, &h2), *d = cache_compile(g, &h3);
    assert_int_equal(h2, 0);            /* every damaged entry a miss */
    assert_int_equal(h3, d->b.nparts);  /* and rewritten */
    bind_both(g, c, ref, 29);
    assert_int_equal(lathe_program_run(c), LATHE_OK);
    agree("recompiled after damage", g, c, ref);
    /* off */
    setenv("LATHE_CACHE_DIR", "off", 1);
    lathe_program *e = cache_compile(g, &h0);
    assert_int_equal(h0, 0);
    assert_false(e->b.cache.on);
    lathe_program *progs[] = {a, b, c, d, e, ref};
    for (size_t i = 0; i < sizeof progs / sizeof progs[0]; i++) lathe_program_free(progs[i]);
    lathe_graph_free(g);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    if (saved) setenv("LATHE_CACHE_DIR", saved, 1);
    else unsetenv("LATHE_CACHE_DIR");
    free(saved);
}

/* An all_gather over one process that reaches fusion (simplification,
 * which removes it, does not run on a graph given to lt_fuse directly):
 * a kernel computes it as the identity (fuse.c's rule), no error. */
static void test_gather_of_one_fuses(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_input(g, "x", LATHE_F32, LATHE_DIMS(4, 3));
    lathe_node *y = lathe_mul(g, lathe_all_gather(g, lathe_exp(g, x), -1, 1), x);
    lathe_output(g, "y", y);
    assert_graph_ok(g);
    lt_target t;
    char err[1024];
    assert_int_equal(lt_target_init(&t, &tile_target, err, sizeof err), LATHE_OK);
    lt_fused *f = lt_fuse(g, &t, 1);
    if (!f || lathe_graph_status(g) != LATHE_OK) fail_msg("fuse: %s", lathe_graph_error(g));
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    lt_fused_print(out, f);
    fclose(out);
    if (!strstr(text, "%2 all_gather(F)")) fail_msg("the gather is in no kernel:\n%s", text);
    free(text);
    lt_fused_free(f);
    lathe_graph_free(g);
}

/* all_reduce decomposes into x gathered along a new leading axis and a sum
 * over it (ordered: rank 0 first); a rank-6 x merges its first two dims to
 * make room and the sum is reshaped back. */
static void test_all_reduce_decomposes(void **state) {
    (void)state;
    static const struct {
        int rank;
        int64_t shape[LATHE_MAX_RANK];
        const char *want[3];
    } cases[] = {
        {2, {2, 3}, {"= all_gather %1 axis=0 parts=4 : f32[4,2,3]", "= sum %2 axes=[0] keepdim=false : f32[2,3]"}},
        {6, {2, 3, 1, 1, 1, 2}, {"= reshape %0 shape=[1,6,1,1,1,2]", "= all_gather %1 axis=0 parts=4 : f32[4,6,1,1,1,2]",
                                 "= reshape %3 shape=[2,3,1,1,1,2]"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lathe_graph *g = lathe_graph_new();
        lathe_node *x = lathe_input(g, "x", LATHE_F32, cases[i].rank, cases[i].shape);
        lathe_output(g, "y", lathe_all_reduce(g, x, 4));
        assert_graph_ok(g);
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        assert_non_null(f);
        if (lathe_dump(g, LATHE_STAGE_DECOMPOSED, NULL, LATHE_DUMP_TEXT, f) != LATHE_OK) fail_msg("%s", lathe_graph_error(g));
        fclose(f);
        for (int k = 0; k < 3 && cases[i].want[k]; k++)
            if (!strstr(text, cases[i].want[k])) fail_msg("case %zu lacks \"%s\":\n%s", i, cases[i].want[k], text);
        free(text);
        lathe_graph_free(g);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_samples_forward_backward),
        cmocka_unit_test(test_threads_same_bits),
        cmocka_unit_test(test_concat_many),
        cmocka_unit_test(test_denormals),
        cmocka_unit_test(test_activation_edges),
        cmocka_unit_test(test_executor_runs),
        cmocka_unit_test(test_vector_convs),
        cmocka_unit_test(test_phase_epilogue),
        cmocka_unit_test(test_buffer_rules),
        cmocka_unit_test(test_label_check),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_conv1d_planes),
        cmocka_unit_test(test_column_sums),
        cmocka_unit_test(test_gather_of_one_fuses),
        cmocka_unit_test(test_all_reduce_decomposes),
        cmocka_unit_test(test_layer_norms),
        cmocka_unit_test(test_attention_block),
        cmocka_unit_test(test_token_check),
        cmocka_unit_test(test_long_chain),
        cmocka_unit_test(test_vector_matmuls),
        cmocka_unit_test(test_vector_pools),
        cmocka_unit_test(test_vector_embeddings),
        cmocka_unit_test(test_target_descriptions),
        cmocka_unit_test(test_target_tiles),
        cmocka_unit_test(test_cache),
        cmocka_unit_test(test_shared_bodies),
        cmocka_unit_test(test_index_simplification),
        cmocka_unit_test(test_max_signed_zeros),
        cmocka_unit_test(test_epilogue_through_reshape),
        cmocka_unit_test(test_pieces),
        cmocka_unit_test(test_permuted_rhs),
        cmocka_unit_test(test_pieces_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
