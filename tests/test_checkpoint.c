/* test_checkpoint.c - checkpoints of a compiled program: save and load give
 * identical bits (optimizer state and step count included, so a resumed run
 * continues exactly); every bad file is refused with a message naming the
 * tensor and leaves the model untouched; an interrupted write keeps the old
 * file; non-strict loading reports missing, unexpected and mismatched
 * names. */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "lathe_checkpoint.h"
#include "lathe_compiler.h"
#include "safetensors.h"
#include "testutil.h"

/* A small conv + batch norm + linear classifier. */
static lathe_graph *model(int64_t classes) {
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_input(g, "x", LATHE_F32, LATHE_DIMS(2, 2, 4, 4));
    lathe_node *labels = lathe_input(g, "labels", LATHE_I64, LATHE_DIMS(2));
    /* one statement per parameter: argument order is unspecified in C */
    lathe_node *cw = lathe_param(g, "conv.weight", LATHE_F32, LATHE_DIMS(3, 2, 3, 3), true);
    lathe_node *bw = lathe_param(g, "bn.weight", LATHE_F32, LATHE_DIMS(3), true);
    lathe_node *bb = lathe_param(g, "bn.bias", LATHE_F32, LATHE_DIMS(3), true);
    lathe_node *rm = lathe_buffer(g, "bn.running_mean", LATHE_F32, LATHE_DIMS(3));
    lathe_node *rv = lathe_buffer(g, "bn.running_var", LATHE_F32, LATHE_DIMS(3));
    lathe_node *h = lathe_conv2d(g, x, cw, NULL, 1, 1, 1, 1);
    h = lathe_batch_norm2d(g, h, bw, bb, rm, rv, true, 0.1, 1e-5);
    h = lathe_flatten(g, lathe_adaptive_avg_pool2d(g, lathe_relu(g, h), 1, 1), 1, -1);
    lathe_node *fw = lathe_param(g, "fc.weight", LATHE_F32, LATHE_DIMS(classes, 3), true);
    lathe_node *fb = lathe_param(g, "fc.bias", LATHE_F32, LATHE_DIMS(classes), true);
    lathe_node *y = lathe_linear(g, h, fw, fb);
    lathe_node *loss = lathe_cross_entropy(g, y, labels, LATHE_REDUCE_MEAN);
    lathe_output(g, "loss", loss);
    lathe_backward(g, 1, &loss, NULL);
    assert_graph_ok(g);
    return g;
}

static void feed(lathe_program *p) {
    float x[64];
    for (int i = 0; i < 64; i++) x[i] = (float)sin(i * 0.7);
    lathe_program_set(p, "x", x, sizeof x);
    lathe_program_set(p, "labels", (int64_t[]){1, 0}, 16);
}

static char tmpdir[] = "/tmp/lathe_ckpt_XXXXXX";
static char path[256];

static int setup(void **state) {
    (void)state;
    if (!mkdtemp(tmpdir)) return -1;
    snprintf(path, sizeof path, "%s/model.safetensors", tmpdir);
    return 0;
}
static int teardown(void **state) {
    (void)state;
    unlink(path);
    return rmdir(tmpdir);
}

#define P(p) lathe_program_arena(p), lathe_program_tensors(p), lathe_program_num_tensors(p)

/* Train 2 steps, save, train 2 more; a fresh program that loads the
 * checkpoint and trains 2 steps ends with the same bits. */
static void test_resume_bit_exact(void **state) {
    (void)state;
    for (int k = 0; k < 2; k++) {
        lathe_optim_config cfg = k ? lathe_adamw_config(0.01) : lathe_sgd_config(0.1, 0.9);
        lathe_graph *g = model(2);
        lathe_program *a = lathe_compile(g, LATHE_BACKEND_JIT), *b = lathe_compile(g, LATHE_BACKEND_JIT);
        lathe_optimizer *oa = lathe_program_optimizer(a, &cfg), *ob = lathe_program_optimizer(b, &cfg);
        lathe_program_init(a, 1);
        lathe_program_init(b, 99); /* different, to be overwritten by the load */
        feed(a);
        feed(b);
        char err[512];
        for (int s = 0; s < 2; s++) lathe_program_run(a), lathe_optim_step(oa);
        assert_int_equal(lathe_rt_save(path, P(a), oa, err, sizeof err), 0);
        for (int s = 0; s < 2; s++) lathe_program_run(a), lathe_optim_step(oa);
        lathe_load_report rep;
        if (lathe_rt_load(path, P(b), ob, true, &rep, err, sizeof err)) fail_msg("%s", err);
        assert_int_equal(rep.loaded, 7); /* 5 params, 2 buffers */
        assert_int_equal(lathe_optim_steps(ob), 2);
        for (int s = 0; s < 2; s++) lathe_program_run(b), lathe_optim_step(ob);
        const lathe_rt_tensor *ts = lathe_program_tensors(a);
        for (int i = 0; i < lathe_program_num_tensors(a); i++) {
            if (ts[i].kind != LATHE_RT_PARAM && ts[i].kind != LATHE_RT_BUFFER) continue;
            if (memcmp(lathe_program_arena(a) + ts[i].offset, lathe_program_arena(b) + ts[i].offset, (size_t)ts[i].numel * 4))
                fail_msg("%s: %s differs after resuming", k ? "adamw" : "sgd", ts[i].name);
        }
        /* the file is a plain safetensors file with PyTorch's names */
        lathe_st_file *f = lathe_st_read(path, err, sizeof err);
        assert_non_null(f);
        assert_non_null(lathe_st_find(f, "bn.running_var"));
        assert_non_null(lathe_st_find(f, k ? "optimizer.fc.weight.exp_avg_sq" : "optimizer.fc.weight.momentum_buffer"));
        assert_string_equal(lathe_st_meta(f, "format"), "lathe");
        lathe_st_free(f);
        lathe_optim_free(oa);
        lathe_optim_free(ob);
        lathe_program_free(a);
        lathe_program_free(b);
        lathe_graph_free(g);
    }
}

/* Files that do not fit the model are refused, naming the tensor, and the
 * model keeps its values; non-strict loading reports the names. */
static void test_mismatches(void **state) {
    (void)state;
    char err[512];
    lathe_graph *g10 = model(10), *g2 = model(2);
    lathe_program *p10 = lathe_compile(g10, LATHE_BACKEND_JIT), *p2 = lathe_compile(g2, LATHE_BACKEND_JIT);
    lathe_program_init(p10, 5);
    lathe_program_init(p2, 6);
    assert_int_equal(lathe_rt_save(path, P(p10), NULL, err, sizeof err), 0);
    size_t bytes = (size_t)lathe_program_arena_bytes(p2);
    uint8_t *snap = malloc(bytes);
    memcpy(snap, lathe_program_arena(p2), bytes);
    assert_int_equal(lathe_rt_load(path, P(p2), NULL, true, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "tensor 'fc.weight' is f32[10,3] in the file but f32[2,3] in the model"));
    assert_memory_equal(snap, lathe_program_arena(p2), bytes); /* untouched */
    lathe_load_report rep;
    assert_int_equal(lathe_rt_load(path, P(p2), NULL, false, &rep, err, sizeof err), 0);
    assert_int_equal(rep.mismatched, 2);
    assert_int_equal(rep.loaded, 5);
    assert_non_null(strstr(rep.text, "mismatched: fc.bias (f32[10] in the file)"));
    /* a file missing a tensor, and one with an extra tensor */
    lathe_st_tensor t[2] = {{"conv.weight", LATHE_RT_F32, 4, {3, 2, 3, 3}, lathe_program_arena(p2)},
                            {"extra", LATHE_RT_F32, 1, {1}, lathe_program_arena(p2)}};
    assert_int_equal(lathe_st_write(path, t, 2, NULL, NULL, 0, err, sizeof err), 0);
    assert_int_equal(lathe_rt_load(path, P(p2), NULL, true, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "the model's tensor 'bn.weight' is missing from the file"));
    assert_int_equal(lathe_rt_load(path, P(p2), NULL, false, &rep, err, sizeof err), 0);
    assert_int_equal(rep.unexpected, 1);
    assert_non_null(strstr(rep.text, "unexpected: extra"));
    /* a corrupt file: the reader's message comes through, naming the offset */
    FILE *f = fopen(path, "wb");
    fwrite("\x10\0\0\0\0\0\0\0{\"a\":", 1, 13, f);
    fclose(f);
    assert_int_equal(lathe_rt_load(path, P(p2), NULL, false, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, path));
    free(snap);
    lathe_program_free(p10);
    lathe_program_free(p2);
    lathe_graph_free(g10);
    lathe_graph_free(g2);
}

/* A model with dropout holds Lathe's generator state ("lathe.rng"): a
 * checkpoint saves and restores it, and a file without it (a state_dict from
 * PyTorch) loads strictly, the state keeping its value. */
static void test_generator_state(void **state) {
    (void)state;
    char err[512];
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_input(g, "x", LATHE_F32, LATHE_DIMS(2, 3));
    lathe_node *w = lathe_param(g, "w", LATHE_F32, LATHE_DIMS(3), true);
    lathe_node *loss = lathe_sum(g, lathe_dropout(g, lathe_mul(g, x, w), 0.5), 0, NULL, false);
    lathe_output(g, "loss", loss);
    lathe_backward(g, 1, &loss, NULL);
    assert_graph_ok(g);
    lathe_program *p = lathe_compile(g, LATHE_BACKEND_JIT);
    assert_non_null(p);
    lathe_program_init(p, 77);
    const lathe_rt_tensor *r = lathe_rt_find(lathe_program_tensors(p), lathe_program_num_tensors(p), LATHE_RNG_NAME);
    assert_non_null(r);
    int64_t *st = (int64_t *)(void *)(lathe_program_arena(p) + r->offset);
    assert_true(st[0] == 77 && st[1] == 0); /* (seed, step) */
    float xv[6] = {1, 2, 3, 4, 5, 6};
    lathe_program_set(p, "x", xv, sizeof xv);
    for (int i = 0; i < 3; i++) assert_int_equal(lathe_program_run(p), LATHE_OK);
    assert_true(st[0] == 77 && st[1] == 3); /* one step per run */
    assert_int_equal(lathe_rt_save(path, P(p), NULL, err, sizeof err), 0);
    st[1] = 0;
    assert_int_equal(lathe_rt_load(path, P(p), NULL, true, NULL, err, sizeof err), 0);
    assert_true(st[1] == 3);
    lathe_st_tensor t[1] = {{"w", LATHE_RT_F32, 1, {3}, xv}};
    assert_int_equal(lathe_st_write(path, t, 1, NULL, NULL, 0, err, sizeof err), 0);
    if (lathe_rt_load(path, P(p), NULL, true, NULL, err, sizeof err) != 0) fail_msg("%s", err);
    assert_true(st[0] == 77 && st[1] == 3);
    lathe_program_free(p);
    lathe_graph_free(g);
}

/* An interrupted save leaves the previous checkpoint intact. */
static void test_interrupted_save(void **state) {
    (void)state;
    char err[512];
    lathe_graph *g = model(2);
    lathe_program *p = lathe_compile(g, LATHE_BACKEND_JIT);
    lathe_program_init(p, 1);
    assert_int_equal(lathe_rt_save(path, P(p), NULL, err, sizeof err), 0);
    lathe_st_file *before = lathe_st_read(path, err, sizeof err);
    float w0 = ((const float *)lathe_st_find(before, "fc.weight")->data)[0];
    lathe_program_init(p, 2);
    lathe_st_test_fail_after = 100;
    assert_int_equal(lathe_rt_save(path, P(p), NULL, err, sizeof err), -1);
    lathe_st_test_fail_after = -1;
    lathe_st_file *after = lathe_st_read(path, err, sizeof err);
    assert_non_null(after);
    assert_true(((const float *)lathe_st_find(after, "fc.weight")->data)[0] == w0);
    lathe_st_free(before);
    lathe_st_free(after);
    lathe_program_free(p);
    lathe_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_bit_exact),
        cmocka_unit_test(test_mismatches),
        cmocka_unit_test(test_interrupted_save),
        cmocka_unit_test(test_generator_state),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
