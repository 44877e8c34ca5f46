/* test_desc.c - the model description language (compiler/desc.c).
 *
 * Each example file is checked against something independent of the parser:
 * fashion_cnn.lathe against the same network built by hand with the C API
 * (leaves, forward values, gradients, evaluation outputs), resnet18.lathe
 * against the names and shapes in the PyTorch fixture and against
 * lathe_resnet18, and against PyTorch's logits and loss; autograd_basics
 * against the hand-computed gradients 9a^2 and -2b; evaluation's top-1 and
 * top-5 outputs against torch.topk's.  Bad descriptions are
 * one table of source, status and expected message pieces; a fuzz loop
 * truncates and mutates the examples, each in a buffer of exactly its
 * length so the sanitizers catch any read past the end. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lathe_compiler.h"
#include "lathe_desc.h"
#include "lathe_models.h"
#include "safetensors.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------------------ */

static const char *example_path(const char *name, char *buf, size_t cap) {
    const char *src = getenv("LATHE_SRC");
    snprintf(buf, cap, "%s/examples/%s", src ? src : ".", name);
    return buf;
}

static lathe_graph *parse_example(const char *name, const lathe_desc_options *opt, lathe_desc_info *info) {
    char path[4096];
    lathe_graph *g = lathe_graph_new();
    if (lathe_desc_parse_file(g, example_path(name, path, sizeof path), opt, info) != LATHE_OK)
        fail_msg("%s: %s", name, lathe_graph_error(g));
    assert_int_equal(lathe_graph_verify(g), LATHE_OK);
    return g;
}

static lathe_graph *parse_src(const char *src, const lathe_desc_options *opt, lathe_desc_info *info) {
    lathe_graph *g = lathe_graph_new();
    if (lathe_desc_parse(g, src, strlen(src), "t.lathe", opt, info) != LATHE_OK)
        fail_msg("parse failed: %s", lathe_graph_error(g));
    assert_int_equal(lathe_graph_verify(g), LATHE_OK);
    return g;
}

static bool is_leaf(const lathe_node *n) {
    return !strcmp(lathe_node_op(n), "param") || !strcmp(lathe_node_op(n), "buffer") ||
           !strcmp(lathe_node_op(n), "input");
}

/* Same inputs, params and buffers in the same order: op, name, type, flags. */
static void assert_same_leaves(lathe_graph *a, lathe_graph *b, const char *label) {
    int i = 0, j = 0, na = lathe_graph_num_nodes(a), nb = lathe_graph_num_nodes(b), k = 0;
    for (;; i++, j++, k++) {
        while (i < na && !is_leaf(lathe_graph_node(a, i))) i++;
        while (j < nb && !is_leaf(lathe_graph_node(b, j))) j++;
        if (i == na || j == nb) break;
        const lathe_node *x = lathe_graph_node(a, i), *y = lathe_graph_node(b, j);
        char tx[96], ty[96];
        lathe_node_type_str(x, tx, sizeof tx);
        lathe_node_type_str(y, ty, sizeof ty);
        if (strcmp(lathe_node_name(x), lathe_node_name(y)) || strcmp(lathe_node_op(x), lathe_node_op(y)) ||
            strcmp(tx, ty) || x->requires_grad != y->requires_grad)
            fail_msg("%s: leaf %d: %s %s %s vs %s %s %s", label, k, lathe_node_op(x), lathe_node_name(x), tx,
                     lathe_node_op(y), lathe_node_name(y), ty);
    }
    if (i != na || j != nb) fail_msg("%s: leaf counts differ after %d leaves", label, k);
}

static lathe_eval *run_eval(lathe_graph *g, uint64_t seed) {
    lathe_eval *ev = lathe_eval_new(g);
    if (!ev) fail_msg("eval: %s", lathe_graph_error(g));
    bind_random(ev, g, seed);
    if (lathe_eval_run(ev) != LATHE_OK) fail_msg("eval run: %s", lathe_eval_error(ev));
    return ev;
}

/* The output `name` of both graphs: same type, same values to the bit. */
static void assert_same_output(lathe_graph *a, lathe_eval *ea, lathe_graph *b, lathe_eval *eb, const char *name) {
    const lathe_node *x = lathe_graph_find_output(a, name), *y = lathe_graph_find_output(b, name);
    if (!x || !y) fail_msg("output '%s' missing (%p, %p)", name, (void *)x, (void *)y);
    char tx[96], ty[96];
    lathe_node_type_str(x, tx, sizeof tx);
    lathe_node_type_str(y, ty, sizeof ty);
    if (strcmp(tx, ty)) fail_msg("output '%s': %s vs %s", name, tx, ty);
    const double *u = lathe_eval_value(ea, x), *v = lathe_eval_value(eb, y);
    for (int64_t i = 0; i < lathe_node_numel(x); i++)
        if (memcmp(&u[i], &v[i], sizeof u[i]))
            fail_msg("output '%s'[%lld]: %.17g vs %.17g", name, (long long)i, u[i], v[i]);
}

/* ---- 1. fashion_cnn.lathe against the network built by hand ------------------------------- */

static lathe_node *hb_conv(lathe_graph *g, const char *name, lathe_node *x, int64_t cout) {
    char w[64], b[64];
    snprintf(w, sizeof w, "%s.weight", name);
    snprintf(b, sizeof b, "%s.bias", name);
    int64_t cin = lathe_node_shape(x)[1];
    lathe_node *pw = lathe_param(g, w, LATHE_F32, LATHE_DIMS(cout, cin, 3, 3), true);
    lathe_node *pb = lathe_param(g, b, LATHE_F32, LATHE_DIMS(cout), true);
    return lathe_conv2d(g, x, pw, pb, 1, 1, 1, 1);
}

static lathe_node *hb_bn(lathe_graph *g, const char *name, lathe_node *x, bool training) {
    char s[5][64];
    const char *suffix[] = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"};
    for (int i = 0; i < 5; i++) snprintf(s[i], sizeof s[i], "%s.%s", name, suffix[i]);
    int64_t c = lathe_node_shape(x)[1];
    lathe_node *w = lathe_param(g, s[0], LATHE_F32, LATHE_DIMS(c), true);
    lathe_node *b = lathe_param(g, s[1], LATHE_F32, LATHE_DIMS(c), true);
    lathe_node *rm = lathe_buffer(g, s[2], LATHE_F32, LATHE_DIMS(c)),
               *rv = lathe_buffer(g, s[3], LATHE_F32, LATHE_DIMS(c));
    lathe_node *nbt = lathe_buffer(g, s[4], LATHE_I64, 0, NULL);
    if (training) {
        lathe_no_grad_begin(g);
        lathe_update(g, nbt, lathe_add(g, nbt, lathe_scalar(g, LATHE_I64, 1)));
        lathe_no_grad_end(g);
    }
    return lathe_batch_norm2d(g, x, w, b, rm, rv, training, 0.1, 1e-5);
}

static lathe_node *hb_linear(lathe_graph *g, const char *name, lathe_node *x, int64_t nin, int64_t nout) {
    char w[64], b[64];
    snprintf(w, sizeof w, "%s.weight", name);
    snprintf(b, sizeof b, "%s.bias", name);
    lathe_node *pw = lathe_param(g, w, LATHE_F32, LATHE_DIMS(nout, nin), true);
    return lathe_linear(g, x, pw, lathe_param(g, b, LATHE_F32, LATHE_DIMS(nout), true));
}

static lathe_graph *fashion_by_hand(int64_t n, bool training) {
    lathe_graph *g = lathe_graph_new();
    lathe_node *image = lathe_input(g, "image", LATHE_F32, LATHE_DIMS(n, 1, 28, 28));
    lathe_node *label = lathe_input(g, "label", LATHE_I64, LATHE_DIMS(n));
    lathe_node *h = lathe_relu(g, hb_bn(g, "bn1", hb_conv(g, "conv1", image, 32), training));
    h = lathe_max_pool2d(g, h, 2, 2, 0);
    h = lathe_relu(g, hb_bn(g, "bn2", hb_conv(g, "conv2", h, 64), training));
    h = lathe_max_pool2d(g, h, 2, 2, 0);
    h = lathe_relu(g, hb_linear(g, "fc1", lathe_flatten(g, h, 1, -1), 3136, 128));
    lathe_node *logits = hb_linear(g, "fc2", h, 128, 10);
    lathe_output(g, "logits", logits);
    if (training) {
        lathe_node *loss = lathe_cross_entropy(g, logits, label, LATHE_REDUCE_MEAN);
        lathe_output(g, "loss", loss);
        lathe_backward(g, 1, &loss, NULL);
    } else {
        lathe_output(g, "loss", lathe_cross_entropy(g, logits, label, LATHE_REDUCE_NONE));
        lathe_output(g, "correct", lathe_cast(g, lathe_eq(g, lathe_argmax(g, logits, 1, false), label), LATHE_F32));
    }
    assert_graph_ok(g);
    return g;
}

static void test_fashion_cnn(void **state) {
    (void)state;
    for (int training = 1; training >= 0; training--) {
        lathe_desc_options opt = {.training = training, .batch = 4};
        lathe_desc_info info;
        lathe_graph *d = parse_example("fashion_cnn.lathe", &opt, &info), *h = fashion_by_hand(4, training);
        assert_string_equal(info.model, "fashion_cnn");
        assert_string_equal(info.batch_dim, "N");
        assert_int_equal(info.batch, 4);
        assert_int_equal(info.ninputs, 2);
        assert_string_equal(info.inputs[0].name, "image");
        assert_false(info.inputs[0].raw);
        assert_string_equal(info.inputs[1].name, "label");
        assert_true(info.has_loss && info.classify);
        assert_string_equal(info.label, "label");
        assert_int_equal(lathe_graph_num_marks(d), training);
        assert_int_equal(lathe_graph_num_updates(d), training ? 6 : 0);
        if (training) assert_int_equal(lathe_backward_marked(d), LATHE_OK);
        assert_same_leaves(d, h, training ? "fashion training" : "fashion eval");
        lathe_eval *ed = run_eval(d, 7), *eh = run_eval(h, 7);
        assert_same_output(d, ed, h, eh, "logits");
        assert_same_output(d, ed, h, eh, "loss");
        if (training) {
            int ngrads = 0;
            for (int i = 0; i < lathe_graph_num_outputs(h); i++) {
                const char *name = lathe_graph_output_name(h, i);
                if (strncmp(name, "grad.", 5)) continue;
                assert_same_output(d, ed, h, eh, name);
                ngrads++;
            }
            assert_int_equal(ngrads, 12);
            assert_int_equal(lathe_graph_num_outputs(d), 2 + 12);
            const double *ra = lathe_eval_leaf(ed, "bn2.running_mean"), *rb = lathe_eval_leaf(eh, "bn2.running_mean");
            assert_memory_equal(ra, rb, 64 * sizeof(double));
            assert_true(lathe_eval_leaf(ed, "bn1.num_batches_tracked")[0] ==
                        lathe_eval_leaf(eh, "bn1.num_batches_tracked")[0]);
        } else {
            assert_same_output(d, ed, h, eh, "correct");
            assert_int_equal(lathe_node_rank(lathe_graph_find_output(d, "loss")), 1);
        }
        lathe_eval_free(ed);
        lathe_eval_free(eh);
        lathe_graph_free(d);
        lathe_graph_free(h);
    }
}

/* ---- 2. resnet18.lathe: torchvision's names, and PyTorch's numbers --------------------------- */

static const char *const resnet_w4_defines[] = {"width=4", "size=64", "classes=10"};

static void test_resnet18_names(void **state) {
    (void)state;
    lathe_desc_options opt = {.training = true, .batch = 4, .ndefines = 3, .defines = resnet_w4_defines};
    lathe_desc_info info;
    lathe_graph *d = parse_example("resnet18.lathe", &opt, &info);
    assert_string_equal(info.model, "resnet18");
    /* every param and buffer is an "init.NAME" of the fixture, with its shape, and back */
    lathe_st_file *f = resnet_fixture();
    int nleaves = 0, ninit = 0;
    for (int i = 0; i < lathe_graph_num_nodes(d); i++) {
        const lathe_node *n = lathe_graph_node(d, i);
        if (!is_leaf(n) || !strcmp(lathe_node_op(n), "input")) continue;
        char key[300];
        snprintf(key, sizeof key, "init.%s", lathe_node_name(n));
        const lathe_st_tensor *t = lathe_st_find(f, key);
        if (!t) fail_msg("the fixture has no '%s'", key);
        assert_int_equal(t->rank, lathe_node_rank(n));
        assert_int_equal(t->dtype, (int)lathe_node_dtype(n)); /* LATHE_RT_* follow lathe_dtype */
        for (int k = 0; k < t->rank; k++) assert_int_equal(t->shape[k], lathe_node_shape(n)[k]);
        nleaves++;
    }
    for (int i = 0; i < lathe_st_count(f); i++) ninit += strncmp(lathe_st_at(f, i)->name, "init.", 5) == 0;
    assert_int_equal(nleaves, ninit);
    assert_int_equal(nleaves, 122);
    /* and lathe_resnet18's, in order */
    lathe_graph *h = lathe_graph_new();
    lathe_node *x = lathe_input(h, "x", LATHE_F32, LATHE_DIMS(4, 3, 64, 64));
    lathe_input(h, "labels", LATHE_I64, LATHE_DIMS(4));
    lathe_resnet_config cfg = {LATHE_F32, 10, 4, true};
    assert_non_null(lathe_resnet18(h, x, &cfg));
    assert_same_leaves(d, h, "resnet18 w4");
    lathe_graph_free(h);

    /* PyTorch's logits and loss from the fixture's initial weights and batch */
    lathe_eval *ev = lathe_eval_new(d);
    assert_non_null(ev);
    for (int i = 0; i < lathe_graph_num_nodes(d); i++) {
        const lathe_node *n = lathe_graph_node(d, i);
        if (!is_leaf(n)) continue;
        char key[300];
        snprintf(key, sizeof key, strcmp(lathe_node_op(n), "input") ? "init.%s" : "%s", lathe_node_name(n));
        const lathe_st_tensor *t = lathe_st_find(f, key);
        assert_non_null(t);
        size_t nb = (size_t)lathe_node_numel(n) * lathe_dtype_size(lathe_node_dtype(n));
        if (lathe_eval_set(ev, lathe_node_name(n), t->data, nb)) fail_msg("%s", lathe_eval_error(ev));
    }
    if (lathe_eval_run(ev)) fail_msg("%s", lathe_eval_error(ev));
    const char *outs[] = {"logits", "loss"};
    for (int k = 0; k < 2; k++) {
        const lathe_st_tensor *t = lathe_st_find(f, outs[k]);
        const lathe_node *n = lathe_graph_find_output(d, outs[k]);
        assert_non_null(t);
        assert_non_null(n);
        const double *v = lathe_eval_value(ev, n);
        double scale = 0, e = 0;
        for (int64_t i = 0; i < lathe_node_numel(n); i++) {
            double ref = ((const float *)t->data)[i];
            scale = fmax(scale, fabs(ref));
            e = fmax(e, fabs(v[i] - ref));
        }
        if (e > 1e-4 * scale) fail_msg("%s: max error %g, scale %g", outs[k], e, scale);
    }
    lathe_eval_free(ev);
    lathe_st_free(f);
    lathe_graph_free(d);

    /* the defaults: torchvision's resnet18 at 224x224 */
    d = parse_example("resnet18.lathe", NULL, &info);
    int np = 0, nbuf = 0;
    for (int i = 0; i < lathe_graph_num_nodes(d); i++) {
        np += !strcmp(lathe_node_op(lathe_graph_node(d, i)), "param");
        nbuf += !strcmp(lathe_node_op(lathe_graph_node(d, i)), "buffer");
    }
    assert_int_equal(np, 62);   /* torchvision's resnet18 has 62 parameter tensors */
    assert_int_equal(nbuf, 60); /* 20 batch norms x 3 */
    assert_int_equal(info.batch, 8);
    const lathe_node *in = lathe_graph_find(d, "x"), *w = lathe_graph_find(d, "layer4.1.conv2.weight");
    assert_int_equal(lathe_node_shape(in)[0], 8);
    assert_int_equal(lathe_node_shape(in)[3], 224);
    assert_int_equal(lathe_node_shape(w)[0], 512);
    assert_int_equal(lathe_node_shape(lathe_graph_find(d, "fc.weight"))[0], 1000);
    assert_null(lathe_graph_find(d, "layer1.0.downsample.0.weight"));
    assert_non_null(lathe_graph_find(d, "layer2.0.downsample.1.num_batches_tracked"));
    lathe_graph_free(d);
}

/* ---- 3. the seed, mlp ------------------------------------------------------------------ */

static void test_autograd_basics(void **state) {
    (void)state;
    lathe_desc_info info;
    lathe_graph *g = parse_example("autograd_basics.lathe", NULL, &info);
    assert_false(info.has_loss);
    assert_string_equal(info.batch_dim, "");
    assert_int_equal(lathe_graph_num_marks(g), 1);
    assert_int_equal(lathe_backward_marked(g), LATHE_OK);
    lathe_eval *ev = lathe_eval_new(g);
    assert_non_null(ev);
    assert_int_equal(lathe_eval_set(ev, "a", (float[]){2, 3}, 8), LATHE_OK);
    assert_int_equal(lathe_eval_set(ev, "b", (float[]){6, 4}, 8), LATHE_OK);
    assert_int_equal(lathe_eval_run(ev), LATHE_OK);
    float q[2], ga[2], gb[2];
    assert_int_equal(lathe_eval_get(ev, lathe_graph_find_output(g, "Q"), q, 8), LATHE_OK);
    assert_int_equal(lathe_eval_get(ev, lathe_graph_find_output(g, "grad.a"), ga, 8), LATHE_OK);
    assert_int_equal(lathe_eval_get(ev, lathe_graph_find_output(g, "grad.b"), gb, 8), LATHE_OK);
    /* Q = 3a^3 - b^2 = [24 - 36, 81 - 16]; dQ/da = 9a^2; dQ/db = -2b */
    assert_true(q[0] == -12 && q[1] == 65);
    assert_true(ga[0] == 36 && ga[1] == 81);
    assert_true(gb[0] == -12 && gb[1] == -8);
    lathe_eval_free(ev);
    lathe_graph_free(g);
    /* evaluation mode marks nothing */
    lathe_desc_options opt = {.training = false};
    g = parse_example("autograd_basics.lathe", &opt, NULL);
    assert_int_equal(lathe_graph_num_marks(g), 0);
    lathe_graph_free(g);
}

static void test_mlp(void **state) {
    (void)state;
    const char *defs[] = {"hidden=32"};
    lathe_desc_options opt = {.training = true, .batch = 3, .ndefines = 1, .defines = defs};
    lathe_desc_info info;
    lathe_graph *g = parse_example("mlp.lathe", &opt, &info);
    assert_int_equal(lathe_node_shape(lathe_graph_find(g, "fc1.weight"))[0], 32);
    assert_int_equal(lathe_node_shape(lathe_graph_find(g, "fc1.weight"))[1], 784);
    assert_int_equal(lathe_backward_marked(g), LATHE_OK);
    const char *grads[] = {"grad.fc1.weight", "grad.fc1.bias", "grad.fc2.weight", "grad.fc2.bias"};
    for (int i = 0; i < 4; i++) assert_non_null(lathe_graph_find_output(g, grads[i]));
    lathe_eval *ev = run_eval(g, 3);
    const double *gw = lathe_eval_value(ev, lathe_graph_find_output(g, "grad.fc2.bias"));
    double s = 0;
    for (int i = 0; i < 10; i++) s += gw[i];
    assert_true(fabs(s) < 1e-6); /* cross-entropy: softmax - onehot sums to 0 per sample */
    lathe_eval_free(ev);
    lathe_graph_free(g);
    opt.training = false;
    g = parse_example("mlp.lathe", &opt, &info);
    assert_int_equal(lathe_node_shape(lathe_graph_find_output(g, "correct"))[0], 3);
    assert_int_equal(lathe_graph_num_marks(g), 0);
    lathe_graph_free(g);
}

/* ---- 4. the language's features ----------------------------------------------------------- */

static const char feature_src[] =
    "# every statement kind\n"
    "model features\n"
    "let width = 3\n"
    "let scale = 0.5\n"
    "batch B = 2\n"
    "input x: f32[B, width] requires_grad\n"
    "input img: f32[B, 2, width + 1, 8 / 2] raw\n"
    "input t: f32[B, 4]\n"
    "param w: f32[width, 4] init=uniform(scale)\n"
    "param fw: f32[4] init=const(0.25) frozen\n"
    "buffer counter: f32[4] init=zeros\n"
    "param emb: f32[5, 4] init=normal(scale / 10)\n"
    "\n"
    "block act_block(x, hidden=4, act=1) {\n"
    "    h = linear(x, hidden) as lin\n"
    "    if act == 1 {\n"
    "        h = relu(h)\n"
    "    } else if act == 2 {\n"
    "        h = tanh(h)\n"
    "    } else {\n"
    "        return -h\n"
    "    }\n"
    "    return h\n"
    "}\n"
    "block twice(x) {\n"
    "    return act_block(act_block(x) as first, act=2) as second\n"
    "}\n"
    "a = act_block(x) as blk.0\n"
    "b = act_block(x, act=2, hidden=4) as blk.1\n"
    "c = act_block(x, 4, 3) as blk.2\n"
    "no_grad {\n"
    "    d = matmul(x, w)\n"
    "}\n"
    "e = (a + b + c) * fw + d * 2 - 1\n"
    "f = twice(a) as deep.1\n"
    "k = shape(img, 2)\n"
    "s = reshape(img, [B, channels(img) * k * 4])\n"
    "m = where(x > 0, x, 0.1 * x)\n"
    "cat = concat([a, b], axis=1)\n"
    "r = sum(cat, axes=[1], keepdim=true) + mean(cat, 1, true) + max(cat, axis=-1, keepdim=true)\n"
    "p = pow(x, 2) + 2 ** x + x ** x\n"
    "z = tensor([1, 2, 3, 4], dtype=f32) * counter\n"
    "if rank(x) == 2 and not (width < 3 or width > 3) {\n"
    "    output ok = sum(x)\n"
    "}\n"
    "freeze blk.1.\n"
    "freeze deep.\n"
    "unfreeze deep.1.second.\n"
    "output e\n"
    "output d\n"
    "output f\n"
    "output s\n"
    "output m\n"
    "output r\n"
    "output p\n"
    "output z\n"
    "output c\n"
    "loss mse_loss(e, t)\n";

static void test_features(void **state) {
    (void)state;
    lathe_desc_info info;
    lathe_graph *g = parse_src(feature_src, NULL, &info);
    assert_string_equal(info.model, "features");
    assert_string_equal(info.batch_dim, "B");
    assert_int_equal(info.ninputs, 3);
    assert_false(info.inputs[0].raw);
    assert_true(info.inputs[1].raw);
    assert_true(info.has_loss);
    assert_false(info.classify);
    assert_string_equal(info.label, "t");
    lathe_node *x = lathe_graph_find(g, "x"), *w = lathe_graph_find(g, "w"), *fw = lathe_graph_find(g, "fw");
    assert_true(lathe_requires_grad(x));
    assert_int_equal(w->init, LATHE_LEAF_INIT_UNIFORM);
    assert_true(w->init_a == 0.5);
    assert_true(lathe_requires_grad(w));
    assert_int_equal(fw->init, LATHE_LEAF_INIT_CONST);
    assert_true(fw->init_a == 0.25);
    assert_false(lathe_requires_grad(fw));
    const lathe_node *counter = lathe_graph_find(g, "counter");
    assert_string_equal(lathe_node_op(counter), "buffer");
    assert_int_equal(counter->init, LATHE_LEAF_INIT_CONST);
    assert_true(counter->init_a == 0);
    const lathe_node *emb = lathe_graph_find(g, "emb");
    assert_int_equal(emb->init, LATHE_LEAF_INIT_NORMAL);
    assert_true(emb->init_a == 0.05);
    /* blocks, defaults, keyword arguments, nested prefixes, freeze / unfreeze */
    const char *names[] = {"blk.0.lin.weight", "blk.1.lin.bias", "blk.2.lin.weight", "deep.1.first.lin.weight",
                           "deep.1.second.lin.bias"};
    const bool rg[] = {true, false, true, false, true};
    for (int i = 0; i < 5; i++) {
        const lathe_node *n = lathe_graph_find(g, names[i]);
        if (!n) fail_msg("no '%s'", names[i]);
        assert_true(lathe_requires_grad(n) == rg[i]);
    }
    assert_int_equal(lathe_node_shape(lathe_graph_find(g, "blk.0.lin.weight"))[1], 3);
    /* if / else if / else and return inside a branch */
    assert_string_equal(lathe_node_op(lathe_graph_find_output(g, "c")), "neg");
    assert_string_equal(lathe_node_op(lathe_graph_find_output(g, "f")), "tanh");
    /* no_grad */
    assert_false(lathe_requires_grad(lathe_graph_find_output(g, "d")));
    assert_true(lathe_requires_grad(lathe_graph_find_output(g, "e")));
    /* numbers from shapes, reshape, comparisons, reductions */
    const lathe_node *s = lathe_graph_find_output(g, "s"), *r = lathe_graph_find_output(g, "r");
    assert_int_equal(lathe_node_shape(s)[1], 32);
    assert_int_equal(lathe_node_rank(r), 2);
    assert_int_equal(lathe_node_shape(r)[1], 1);
    assert_non_null(lathe_graph_find_output(g, "ok"));
    /* training: the loss is marked */
    assert_int_equal(lathe_graph_num_marks(g), 1);
    lathe_eval *ev = run_eval(g, 11);
    const double *m = lathe_eval_value(ev, lathe_graph_find_output(g, "m")), *xv = lathe_eval_leaf(ev, "x");
    for (int i = 0; i < 6; i++) assert_true(fabs(m[i] - (xv[i] > 0 ? xv[i] : (float)0.1 * (float)xv[i])) < 1e-6);
    const double *z = lathe_eval_value(ev, lathe_graph_find_output(g, "z")), *cv = lathe_eval_leaf(ev, "counter");
    for (int i = 0; i < 4; i++) assert_true(fabs(z[i] - (i + 1) * cv[i]) < 1e-6);
    lathe_eval_free(ev);
    lathe_graph_free(g);

    /* defines and the batch option */
    const char *defs[] = {"width=5", "scale=0.125", "B=9"};
    lathe_desc_options opt = {.training = false, .ndefines = 3, .defines = defs};
    const char *src = "let width = 3\nlet scale = 0.5\nbatch B = 2\ninput x: f32[B, width]\n"
                      "param w: f32[width] init=uniform(scale)\noutput y = x * w\n";
    g = parse_src(src, &opt, &info);
    assert_int_equal(lathe_node_shape(lathe_graph_find(g, "x"))[0], 9);
    assert_int_equal(lathe_node_shape(lathe_graph_find(g, "x"))[1], 5);
    assert_true(lathe_graph_find(g, "w")->init_a == 0.125);
    assert_int_equal(info.batch, 9);
    lathe_graph_free(g);
    opt.batch = 6; /* the option wins over a define of the batch name */
    g = parse_src(src, &opt, &info);
    assert_int_equal(lathe_node_shape(lathe_graph_find(g, "x"))[0], 6);
    lathe_graph_free(g);
}

static void test_eval_losses(void **state) {
    (void)state;
    lathe_desc_options eval = {.training = false};
    lathe_desc_info info;
    /* mse: per sample, averaged over the non-batch axes */
    lathe_graph *g =
        parse_src("batch N = 3\ninput y: f32[N, 2, 2]\ninput t: f32[N, 2, 2]\nloss mse_loss(y, t)\n", &eval, &info);
    assert_false(info.classify);
    assert_null(lathe_graph_find_output(g, "correct"));
    lathe_eval *ev = run_eval(g, 5);
    const double *l = lathe_eval_value(ev, lathe_graph_find_output(g, "loss"));
    const double *y = lathe_eval_leaf(ev, "y"), *t = lathe_eval_leaf(ev, "t");
    for (int i = 0; i < 3; i++) {
        double want = 0;
        for (int k = 0; k < 4; k++) want += (y[4 * i + k] - t[4 * i + k]) * (y[4 * i + k] - t[4 * i + k]) / 4;
        assert_true(fabs(l[i] - want) < 1e-6);
    }
    lathe_eval_free(ev);
    lathe_graph_free(g);
    /* nll_loss: per sample, and correct */
    g = parse_src("batch N = 4\ninput x: f32[N, 3]\ninput lab: i64[N]\nloss nll_loss(log_softmax(x, 1), lab)\n", &eval,
                  &info);
    assert_true(info.classify);
    assert_string_equal(info.label, "lab");
    ev = run_eval(g, 6);
    const double *c = lathe_eval_value(ev, lathe_graph_find_output(g, "correct"));
    const double *xv = lathe_eval_leaf(ev, "x"), *lab = lathe_eval_leaf(ev, "lab");
    for (int i = 0; i < 4; i++) {
        int best = 0;
        for (int k = 1; k < 3; k++)
            if (xv[3 * i + k] > xv[3 * i + best]) best = k;
        assert_true(c[i] == (best == (int)lab[i]));
    }
    lathe_eval_free(ev);
    lathe_graph_free(g);
    /* per token over (N, C, T), with an ignore index: loss, correct and
     * weight of shape (N, T); the ignored tokens count for nothing */
    const char *seq = "batch N = 2\ninput x: f32[N, 3, 4]\ninput lab: i64[N, 4]\n"
                      "loss cross_entropy(x, lab, ignore_index=1, label_smoothing=0.25)\n";
    g = parse_src(seq, &eval, &info);
    ev = run_eval(g, 7);
    const double *ls = lathe_eval_value(ev, lathe_graph_find_output(g, "loss"));
    const double *cs = lathe_eval_value(ev, lathe_graph_find_output(g, "correct"));
    const double *ws = lathe_eval_value(ev, lathe_graph_find_output(g, "weight"));
    assert_int_equal(lathe_node_numel(lathe_graph_find_output(g, "weight")), 8);
    xv = lathe_eval_leaf(ev, "x"), lab = lathe_eval_leaf(ev, "lab");
    int ignored = 0;
    for (int e = 0; e < 8; e++) { /* element e = (n, t): class k of it at x[n][k][t] */
        int n = e / 4, t = e % 4, best = 0;
        double m = -INFINITY, s = 0, all = 0, xk[3];
        for (int k = 0; k < 3; k++) xk[k] = xv[n * 12 + k * 4 + t];
        for (int k = 0; k < 3; k++) m = fmax(m, xk[k]);
        for (int k = 0; k < 3; k++) s += exp(xk[k] - m), best = xk[k] > xk[best] ? k : best;
        for (int k = 0; k < 3; k++) all += m + log(s) - xk[k];
        bool ign = lab[e] == 1;
        ignored += ign;
        double want = ign ? 0 : 0.75 * (m + log(s) - xk[(int)lab[e]]) + 0.25 / 3 * all;
        if (fabs(ls[e] - want) > 1e-5) fail_msg("loss[%d] = %g, want %g", e, ls[e], want);
        assert_true(ws[e] == !ign);
        assert_true(cs[e] == (!ign && best == (int)lab[e]));
    }
    if (ignored == 0 || ignored == 8) fail_msg("seed 7 gives %d ignored labels of 8: the case is not exercised", ignored);
    lathe_eval_free(ev);
    lathe_graph_free(g);
    /* top-5: the label's logit has fewer than 5 above it (7 classes) */
    g = parse_src("batch N = 6\ninput x: f32[N, 7]\ninput lab: i64[N]\nloss cross_entropy(x, lab)\n", &eval, NULL);
    ev = run_eval(g, 9);
    const double *c5 = lathe_eval_value(ev, lathe_graph_find_output(g, "correct5"));
    xv = lathe_eval_leaf(ev, "x"), lab = lathe_eval_leaf(ev, "lab");
    int hits = 0;
    for (int i = 0; i < 6; i++) {
        int above = 0;
        for (int k = 0; k < 7; k++) above += xv[i * 7 + k] > xv[i * 7 + (int)lab[i]];
        assert_true(c5[i] == (above < 5));
        hits += above < 5;
    }
    if (hits == 0 || hits == 6) fail_msg("seed 9 gives %d top-5 hits of 6: the case is not exercised", hits);
    lathe_eval_free(ev);
    lathe_graph_free(g);
    /* training: reduction="sum" is one number */
    g = parse_src("input x: f32[2, 3]\ninput lab: i64[2]\nloss cross_entropy(x, lab, reduction=\"sum\")\n", NULL, NULL);
    assert_int_equal(lathe_node_rank(lathe_graph_find_output(g, "loss")), 0);
    lathe_graph_free(g);
    /* any other loss is output as it is */
    g = parse_src("input x: f32[4]\nloss mean(x * x)\n", &eval, &info);
    assert_int_equal(lathe_node_rank(lathe_graph_find_output(g, "loss")), 0);
    assert_true(info.has_loss && !info.classify);
    lathe_graph_free(g);
    /* training: a number cotangent, and marks for both */
    g = parse_src("input a: f32[2] requires_grad\nq = a * a\nbackward q, 2\nloss sum(q)\n", NULL, NULL);
    assert_int_equal(lathe_graph_num_marks(g), 2);
    lathe_graph_free(g);
    assert_true(lathe_desc_is_description("x/y.lathe"));
    assert_false(lathe_desc_is_description("y.ir"));
    assert_false(lathe_desc_is_description(".lathe"));
    /* a marked value that nothing trainable reaches: the message says where */
    g = parse_src("input x: f32[2]\nq = sum(x * 2)\nbackward q\n", NULL, NULL);
    assert_int_equal(lathe_backward_marked(g), LATHE_ERR_ARG);
    if (!strstr(lathe_graph_error(g), "t.lathe:2:5: backward: output 0") || !strstr(lathe_graph_error(g), "does not require grad"))
        fail_msg("%s", lathe_graph_error(g));
    lathe_graph_free(g);
    /* by content: text IR's first statement starts with '%' */
    const char *ir = "# lathe ir\n\n  # a comment\n%0 = input \"a\" f32[2]\n";
    const char *de = "# a model\n\nmodel m\ninput a: f32[2]\n";
    assert_false(lathe_desc_is_description_text(ir, strlen(ir)));
    assert_true(lathe_desc_is_description_text(de, strlen(de)));
    assert_true(lathe_desc_is_description_text("x = 1\n", 6));
    assert_false(lathe_desc_is_description_text("# only a comment\n", 17));
    assert_false(lathe_desc_is_description_text("", 0));
}

/* Top-1 and top-5 accuracy against PyTorch (tests/fixtures/recipes.safetensors,
 * make_recipe_fixtures.py): the evaluation outputs "correct", "correct5" and
 * "weight" of cross_entropy on fixed logits, [14, 7] and [2, 6, 3] (class
 * axis 1, one ignored label), on both backends, against torch.topk's as the
 * ImageNet example computes accuracy, and top-1 against torch.argmax.
 * Exact, element by element.  Where the label's logit ties the k-th
 * largest and more than k logits reach it, torch.topk returns some of the
 * tied indices (which, it does not say; 1.13's CPU kernel picks by
 * nth_element, so the all-equal row of 7 gets 3 6 5 4 0, and its top 1 is
 * 5): there Lathe's top-1 is argmax's (the first maximal index, as
 * torch.argmax documents) and its top-5 counts the label (fewer than 5
 * logits above it), which may differ from topk's pick. */
static void test_accuracy_parity(void **state) {
    (void)state;
    lathe_st_file *f = read_fixture("recipes.safetensors");
    static const struct {
        const char *prefix, *src;
    } cases[] = {
        {"acc2", "batch N = 14\ninput x: f32[N, 7]\ninput y: i64[N]\nloss cross_entropy(x, y)\n"},
        {"acc3", "batch N = 2\ninput x: f32[N, 6, 3]\ninput y: i64[N, 3]\nloss cross_entropy(x, y)\n"},
    };
    lathe_desc_options eval = {.training = false};
    int seen[2][2][2] = {{{0}}}; /* [k is 5][tied][torch's answer] */
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char key[64];
#define FIX(what) (snprintf(key, sizeof key, "%s.%s", cases[c].prefix, what), lathe_st_find(f, key))
        const lathe_st_tensor *x = FIX("logits"), *y = FIX("y"), *a1 = FIX("top1_argmax"), *t1 = FIX("top1"),
                              *t5 = FIX("top5"), *tied1 = FIX("tied1"), *tied5 = FIX("tied5"), *w = FIX("weight");
#undef FIX
        if (!x || !y || !a1 || !t1 || !t5 || !tied1 || !tied5 || !w) fail_msg("%s: the fixture lacks a tensor", cases[c].prefix);
        int64_t nx = 1, n = 1;
        for (int d = 0; d < x->rank; d++) nx *= x->shape[d];
        for (int d = 0; d < y->rank; d++) n *= y->shape[d];
        lathe_graph *g = parse_src(cases[c].src, &eval, NULL);
        for (int be = 1; be >= 0; be--) {
            lathe_program *p = lathe_compile(g, be ? LATHE_BACKEND_EVAL : LATHE_BACKEND_JIT);
            if (!p) fail_msg("%s", lathe_graph_error(g));
            assert_int_equal(lathe_program_set(p, "x", x->data, (size_t)nx * sizeof(float)), LATHE_OK);
            assert_int_equal(lathe_program_set(p, "y", y->data, (size_t)n * sizeof(int64_t)), LATHE_OK);
            assert_int_equal(lathe_program_run(p), LATHE_OK);
            const char *outs[3] = {"correct", "correct5", "weight"};
            double v[3][64];
            assert_true(n <= 64);
            for (int o = 0; o < 3; o++) {
                const lathe_rt_tensor *t = lathe_rt_find(lathe_program_tensors(p), lathe_program_num_tensors(p), outs[o]);
                if (!t) fail_msg("no output '%s'", outs[o]);
                assert_int_equal(t->numel, n);
                uint8_t buf[64 * 8];
                assert_int_equal(lathe_program_get(p, outs[o], buf, (size_t)n * lathe_rt_dtype_size(t->dtype)), LATHE_OK);
                for (int64_t e = 0; e < n; e++) v[o][e] = elem_at((lathe_dtype)t->dtype, buf, e);
            }
            for (int64_t e = 0; e < n; e++) {
                const uint8_t *A1 = a1->data, *T1 = t1->data, *T5 = t5->data, *D1 = tied1->data, *D5 = tied5->data,
                              *W = w->data;
                const char *be_name = be ? "evaluator" : "jit";
                if (v[2][e] != W[e]) fail_msg("%s %s [%lld]: weight %g, torch %d", cases[c].prefix, be_name, (long long)e, v[2][e], W[e]);
                if (v[0][e] != A1[e])
                    fail_msg("%s %s [%lld]: correct %g, torch's argmax %d", cases[c].prefix, be_name, (long long)e, v[0][e], A1[e]);
                if (!D1[e] && v[0][e] != T1[e])
                    fail_msg("%s %s [%lld]: correct %g, torch's topk %d", cases[c].prefix, be_name, (long long)e, v[0][e], T1[e]);
                if (v[1][e] != (D5[e] ? 1 : T5[e]))
                    fail_msg("%s %s [%lld]: correct5 %g, torch's topk %d%s", cases[c].prefix, be_name, (long long)e, v[1][e],
                             T5[e], D5[e] ? " (tied: the label counts)" : "");
                if (be == 0) {
                    seen[0][D1[e]][T1[e]]++;
                    seen[1][D5[e]][T5[e]]++;
                }
            }
            lathe_program_free(p);
        }
        lathe_graph_free(g);
    }
    /* the fixture has hits and misses without ties, and ties where topk left the label out */
    for (int k = 0; k < 2; k++)
        if (!seen[k][0][0] || !seen[k][0][1] || !seen[k][1][0])
            fail_msg("top-%d: the fixture lacks a case (untied miss %d, untied hit %d, tied and left out %d)", k ? 5 : 1,
                     seen[k][0][0], seen[k][0][1], seen[k][1][0]);
    lathe_st_free(f);
}

/* ---- loops, shared layers, parameters by name ---------------------------------------------- */

static const char *loops_src =
    "model loops\n"
    "batch N = 4\n"
    "input x: f32[N, 6]\n"
    "block res(x) {\n"
    "    return x + tanh(linear(x, 6) as lin)\n"
    "}\n"
    "h = x\n"
    "for i in 0..3 {\n"
    "    h = res(h) as layers.{i}\n"
    "}\n"
    "for j in range(1, 3) {\n"
    "    h = linear(h, 6, bias=false) as shared     # called twice: one weight\n"
    "}\n"
    "for k in 5..5 {\n"
    "    h = nothing_runs_here(h)\n"
    "}\n"
    "output y = matmul(h, transpose(shared.weight, 0, 1)) * (1 / sqrt(4)) + maximum(1, 2) * j\n";

/* The same network by hand: one shared.weight used three times. */
static lathe_graph *loops_by_hand(void) {
    lathe_graph *g = lathe_graph_new();
    lathe_node *h = lathe_input(g, "x", LATHE_F32, LATHE_DIMS(4, 6));
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "layers.%d.lin", i);
        h = lathe_add(g, h, lathe_tanh(g, hb_linear(g, name, h, 6, 6)));
    }
    lathe_node *w = lathe_param(g, "shared.weight", LATHE_F32, LATHE_DIMS(6, 6), true);
    h = lathe_linear(g, lathe_linear(g, h, w, NULL), w, NULL);
    lathe_node *y = lathe_mul(g, lathe_matmul(g, h, lathe_transpose(g, w, 0, 1)), lathe_scalar(g, LATHE_F32, 0.5));
    lathe_output(g, "y", lathe_add(g, y, lathe_scalar(g, LATHE_F32, 4)));
    assert_graph_ok(g);
    return g;
}

static void test_loops_and_sharing(void **state) {
    (void)state;
    lathe_desc_options opt = {.training = false};
    lathe_graph *d = parse_src(loops_src, &opt, NULL), *h = loops_by_hand();
    assert_same_leaves(d, h, "loops");
    lathe_eval *ed = run_eval(d, 5), *eh = run_eval(h, 5);
    assert_same_output(d, ed, h, eh, "y");
    lathe_eval_free(ed);
    lathe_eval_free(eh);
    lathe_graph_free(d);
    lathe_graph_free(h);
    /* in training too, a layer called twice has one set of parameters */
    opt.training = true;
    d = parse_src("input x: f32[2, 3]\nh = linear(x, 3) as f\nh = linear(h, 3) as f\nloss sum(h)\n", &opt, NULL);
    int params = 0;
    for (int i = 0; i < lathe_graph_num_nodes(d); i++) params += !strcmp(lathe_node_op(lathe_graph_node(d, i)), "param");
    assert_int_equal(params, 2);
    lathe_graph_free(d);
    /* in evaluation, a batch norm called twice shares its parameters and
     * buffers, the rank-0 num_batches_tracked too (whose shape is NULL) */
    opt.training = false;
    d = parse_src("input x: f32[2, 3, 4, 4]\nh = batch_norm(x) as bn\nh = batch_norm(h) as bn\noutput h\n", &opt, NULL);
    int leaves = 0;
    for (int i = 0; i < lathe_graph_num_nodes(d); i++) leaves += !strcmp(lathe_node_op(lathe_graph_node(d, i)), "buffer");
    assert_int_equal(leaves, 3);
    lathe_graph_free(d);
}

/* ---- embeddings: a tiny language model ------------------------------------------------------- */

static const char *lm_src =
    "model tiny_lm\n"
    "batch N = 2\n"
    "let T = 4\n"
    "input tokens: i64[N, T]\n"
    "input targets: i64[N, T]\n"
    "pos = tensor([0, 1, 2, 3], dtype=i64)\n"
    "h = embedding(tokens, 11, 8) as wte + embedding(pos, T, 8) as wpe\n"
    "h = index_select(tanh(linear(h, 8) as proj), -1, tensor([7, 0, 1, 2, 3, 4, 5, 6], dtype=i64))\n"
    "logits = matmul(h, transpose(wte.weight, 0, 1))     # the head tied to the embedding\n"
    "output logits\n"
    "loss cross_entropy(reshape(logits, [N * T, 11]), reshape(targets, [N * T]))\n";

/* The same network by hand: token and position embeddings, a projection
 * whose features are rotated by an index_select, a head tied to wte. */
static lathe_graph *lm_by_hand(void) {
    lathe_graph *g = lathe_graph_new();
    lathe_node *tok = lathe_input(g, "tokens", LATHE_I64, LATHE_DIMS(2, 4));
    lathe_node *tgt = lathe_input(g, "targets", LATHE_I64, LATHE_DIMS(2, 4));
    lathe_node *pos = lathe_const(g, LATHE_I64, LATHE_DIMS(4), (int64_t[]){0, 1, 2, 3});
    lathe_node *wte = lathe_param(g, "wte.weight", LATHE_F32, LATHE_DIMS(11, 8), true);
    lathe_node *h = lathe_index_select(g, wte, 0, tok);
    lathe_node *wpe = lathe_param(g, "wpe.weight", LATHE_F32, LATHE_DIMS(4, 8), true);
    h = lathe_add(g, h, lathe_index_select(g, wpe, 0, pos));
    h = lathe_tanh(g, hb_linear(g, "proj", h, 8, 8));
    h = lathe_index_select(g, h, -1, lathe_const(g, LATHE_I64, LATHE_DIMS(8), (int64_t[]){7, 0, 1, 2, 3, 4, 5, 6}));
    lathe_node *logits = lathe_matmul(g, h, lathe_transpose(g, wte, 0, 1));
    lathe_output(g, "logits", logits);
    lathe_node *loss = lathe_cross_entropy(g, lathe_reshape(g, logits, LATHE_DIMS(8, 11)), lathe_reshape(g, tgt, LATHE_DIMS(8)),
                                           LATHE_REDUCE_MEAN);
    lathe_output(g, "loss", loss);
    lathe_backward(g, 1, &loss, NULL);
    assert_graph_ok(g);
    return g;
}

static void test_embedding_lm(void **state) {
    (void)state;
    lathe_desc_options opt = {.training = true};
    lathe_desc_info info;
    lathe_graph *d = parse_src(lm_src, &opt, &info), *h = lm_by_hand();
    assert_int_equal(lathe_backward_marked(d), LATHE_OK);
    assert_same_leaves(d, h, "tiny_lm");
    double a = 0;
    lathe_node *wte = lathe_graph_find(d, "wte.weight");
    assert_int_equal(wte->init, LATHE_LEAF_INIT_AUTO);
    assert_int_equal(lathe_leaf_init_of(d, wte, &a), LATHE_LEAF_INIT_NORMAL); /* torch.nn.Embedding's normal(0, 1) */
    assert_true(a == 1);
    assert_int_equal(lathe_index_limit(d, lathe_graph_find(d, "tokens")), 11);
    lathe_eval *ed = run_eval(d, 3), *eh = run_eval(h, 3);
    assert_same_output(d, ed, h, eh, "logits");
    assert_same_output(d, ed, h, eh, "loss");
    const char *grads[] = {"grad.wte.weight", "grad.wpe.weight", "grad.proj.weight", "grad.proj.bias"};
    for (int i = 0; i < 4; i++) assert_same_output(d, ed, h, eh, grads[i]);
    lathe_eval_free(ed);
    lathe_eval_free(eh);
    lathe_graph_free(d);
    lathe_graph_free(h);
    /* an f64 table */
    d = parse_src("input t: i64[3]\noutput y = embedding(t, 5, 2, dtype=f64) as e\n", NULL, NULL);
    assert_int_equal(lathe_node_dtype(lathe_graph_find(d, "e.weight")), LATHE_F64);
    assert_int_equal(lathe_node_shape(lathe_graph_find_output(d, "y"))[1], 2);
    lathe_graph_free(d);
}

/* The activations and min reduction of sequence models call the builders
 * with the arguments given (and PyTorch's defaults). */
static void test_activations(void **state) {
    (void)state;
    lathe_desc_options opt = {.training = false};
    lathe_graph *d = parse_src("input x: f32[3, 4]\n"
                               "output a = gelu(x) + gelu(x, approximate=\"tanh\") + silu(x) + erf(x)\n"
                               "output b = softplus(x) + softplus(x, beta=2, threshold=5) + leaky_relu(x) + leaky_relu(x, 0.2)\n"
                               "output c = clamp(x, min=-0.5) + clamp(x, max=0.25) + clamp(x, -0.1, 0.1)\n"
                               "output m = min(x, axis=1) * erf(0.5) * silu(1)\n",
                               &opt, NULL);
    lathe_graph *h = lathe_graph_new();
    lathe_node *x = lathe_input(h, "x", LATHE_F32, LATHE_DIMS(3, 4));
    lathe_node *a = lathe_add(h, lathe_add(h, lathe_add(h, lathe_gelu(h, x, false), lathe_gelu(h, x, true)),
                                           lathe_silu(h, x)), lathe_erf(h, x));
    lathe_node *b = lathe_add(h, lathe_add(h, lathe_add(h, lathe_softplus(h, x, 1, 20), lathe_softplus(h, x, 2, 5)),
                                           lathe_leaky_relu(h, x, 0.01)), lathe_leaky_relu(h, x, 0.2));
    lathe_node *c = lathe_add(h, lathe_add(h, lathe_clamp(h, x, -0.5, INFINITY), lathe_clamp(h, x, -INFINITY, 0.25)),
                              lathe_clamp(h, x, -0.1, 0.1));
    lathe_node *m = lathe_mul(h, lathe_mul(h, lathe_min(h, x, LATHE_AXES(1), false), lathe_scalar(h, LATHE_F32, erf(0.5))),
                              lathe_scalar(h, LATHE_F32, 1 / (1 + exp(-1.0))));
    lathe_output(h, "a", a), lathe_output(h, "b", b), lathe_output(h, "c", c), lathe_output(h, "m", m);
    assert_graph_ok(h);
    lathe_eval *ed = run_eval(d, 3), *eh = run_eval(h, 3);
    const char *outs[] = {"a", "b", "c", "m"};
    for (int i = 0; i < 4; i++) assert_same_output(d, ed, h, eh, outs[i]);
    lathe_eval_free(ed), lathe_eval_free(eh);
    lathe_graph_free(d), lathe_graph_free(h);
}

/* conv1d: PyTorch's weight (out, in / groups, k) and init, and the values
 * of a strided, padded, dilated convolution written out as loops. */
static void test_conv1d(void **state) {
    (void)state;
    lathe_desc_options opt = {.training = false};
    lathe_graph *g = parse_src("input x: f32[2, 4, 9]\noutput y = conv1d(x, 6, 3, stride=2, padding=2, dilation=2, groups=2) as c\n",
                               &opt, NULL);
    lathe_node *w = lathe_graph_find(g, "c.weight"), *y = lathe_graph_find_output(g, "y");
    assert_int_equal(lathe_node_rank(w), 3);
    assert_int_equal(lathe_node_shape(w)[0], 6);
    assert_int_equal(lathe_node_shape(w)[1], 2);
    assert_int_equal(lathe_node_shape(w)[2], 3);
    double a;
    assert_int_equal(lathe_leaf_init_of(g, w, &a), LATHE_LEAF_INIT_UNIFORM);
    assert_true(fabs(a - 1 / sqrt(6.0)) < 1e-12); /* fan_in = 2 * 3 */
    assert_int_equal(lathe_leaf_init_of(g, lathe_graph_find(g, "c.bias"), &a), LATHE_LEAF_INIT_UNIFORM);
    assert_true(fabs(a - 1 / sqrt(6.0)) < 1e-12);
    int64_t L = (9 + 2 * 2 - 2 * (3 - 1) - 1) / 2 + 1; /* 5 */
    assert_int_equal(lathe_node_shape(y)[2], L);
    lathe_eval *ev = run_eval(g, 4);
    const double *xv = lathe_eval_leaf(ev, "x"), *wv = lathe_eval_leaf(ev, "c.weight"), *bv = lathe_eval_leaf(ev, "c.bias");
    const double *yv = lathe_eval_value(ev, y);
    for (int n = 0; n < 2; n++)
        for (int o = 0; o < 6; o++)
            for (int l = 0; l < L; l++) {
                double s = bv[o];
                for (int c = 0; c < 2; c++)
                    for (int k = 0; k < 3; k++) {
                        int pos = l * 2 - 2 + k * 2, ci = (o / 3) * 2 + c;
                        if (pos >= 0 && pos < 9) s += xv[(n * 4 + ci) * 9 + pos] * wv[(o * 2 + c) * 3 + k];
                    }
                double got = yv[(n * 6 + o) * L + l];
                if (fabs(got - s) > 1e-5) fail_msg("y[%d,%d,%d] = %g, want %g", n, o, l, got, s);
            }
    lathe_eval_free(ev);
    lathe_graph_free(g);
}

/* ---- layer norm, sequence-model builders ---------------------------------------------------- */

/* Row r of y against the layer norm worked out here: mean and biased
 * variance of the M values of x's row r, weight w and bias b (NULL: 1, 0). */
static void check_ln_rows(const char *label, const double *x, const double *y, int64_t rows, int64_t M, double eps,
                          const double *w, const double *b) {
    for (int64_t r = 0; r < rows; r++) {
        double mean = 0, var = 0;
        for (int64_t i = 0; i < M; i++) mean += x[r * M + i] / (double)M;
        for (int64_t i = 0; i < M; i++) var += (x[r * M + i] - mean) * (x[r * M + i] - mean) / (double)M;
        for (int64_t i = 0; i < M; i++) {
            double want = (x[r * M + i] - mean) / sqrt(var + eps) * (w ? w[i] : 1) + (b ? b[i] : 0);
            if (fabs(y[r * M + i] - want) > 1e-5 * fmax(1, fabs(want)))
                fail_msg("%s[%lld]: %.9g, want %.9g", label, (long long)(r * M + i), y[r * M + i], want);
        }
    }
}

static const char *ln_src = "input x: f32[2, 3, 4]\n"
                            "a = layer_norm(x, 4) as ln\n"
                            "b = layer_norm(x, [3, 4], eps=0.5) as ln2\n"
                            "c = layer_norm(x, 4, elementwise_affine=false) as plain\n"
                            "d = layer_norm(x, normalized_shape=4, bias=false) as nob\n"
                            "e = layer_norm(a, 4) as ln\n"
                            "output a\noutput b\noutput c\noutput d\noutput e\n";

static void test_layer_norm_layer(void **state) {
    (void)state;
    lathe_desc_options opt = {.training = true};
    lathe_graph *g = parse_src(ln_src, &opt, NULL);
    /* PyTorch's names and shapes; ln called twice shares its two */
    static const struct {
        const char *name, *type;
        double init;
    } leaves[] = {{"ln.weight", "f32[4]", 1}, {"ln.bias", "f32[4]", 0}, {"ln2.weight", "f32[3,4]", 1},
                  {"ln2.bias", "f32[3,4]", 0}, {"nob.weight", "f32[4]", 1}};
    int params = 0;
    for (int i = 0; i < lathe_graph_num_nodes(g); i++) params += !strcmp(lathe_node_op(lathe_graph_node(g, i)), "param");
    assert_int_equal(params, 5);
    for (int i = 0; i < 5; i++) {
        const lathe_node *n = lathe_graph_find(g, leaves[i].name);
        if (!n) fail_msg("no '%s'", leaves[i].name);
        char ts[96];
        lathe_node_type_str(n, ts, sizeof ts);
        assert_string_equal(ts, leaves[i].type);
        assert_true(lathe_requires_grad(n));
        double a = -1; /* ones and zeros, also for a weight of rank 2 (not a linear's) */
        assert_int_equal(lathe_leaf_init_of(g, n, &a), LATHE_LEAF_INIT_CONST);
        assert_true(a == leaves[i].init);
    }
    /* and so a program fills them */
    lathe_program *prog = lathe_compile(g, LATHE_BACKEND_EVAL);
    if (!prog) fail_msg("compile: %s", lathe_graph_error(g));
    lathe_program_init(prog, 5);
    const lathe_rt_tensor *ts = lathe_program_tensors(prog);
    for (int i = 0; i < 5; i++) {
        const lathe_rt_tensor *t = lathe_rt_find(ts, lathe_program_num_tensors(prog), leaves[i].name);
        assert_non_null(t);
        const float *v = (const float *)(lathe_program_arena(prog) + t->offset);
        for (int64_t e = 0; e < t->numel; e++) assert_true(v[e] == leaves[i].init);
    }
    lathe_program_free(prog);
    lathe_eval *ev = run_eval(g, 3);
    const double *x = lathe_eval_leaf(ev, "x");
    const double *w = lathe_eval_leaf(ev, "ln.weight"), *b = lathe_eval_leaf(ev, "ln.bias");
    check_ln_rows("a", x, lathe_eval_value(ev, lathe_graph_find_output(g, "a")), 6, 4, 1e-5, w, b);
    check_ln_rows("b", x, lathe_eval_value(ev, lathe_graph_find_output(g, "b")), 2, 12, 0.5,
                  lathe_eval_leaf(ev, "ln2.weight"), lathe_eval_leaf(ev, "ln2.bias"));
    check_ln_rows("c", x, lathe_eval_value(ev, lathe_graph_find_output(g, "c")), 6, 4, 1e-5, NULL, NULL);
    check_ln_rows("d", x, lathe_eval_value(ev, lathe_graph_find_output(g, "d")), 6, 4, 1e-5,
                  lathe_eval_leaf(ev, "nob.weight"), NULL);
    const double *av = lathe_eval_value(ev, lathe_graph_find_output(g, "a"));
    check_ln_rows("e", av, lathe_eval_value(ev, lathe_graph_find_output(g, "e")), 6, 4, 1e-5, w, b);
    lathe_eval_free(ev);
    lathe_graph_free(g);
}

/* Output `name`: its type and values, worked out by hand. */
static void assert_output(lathe_graph *g, lathe_eval *ev, const char *name, const char *type, int n, const double *want) {
    const lathe_node *y = lathe_graph_find_output(g, name);
    if (!y) fail_msg("no output '%s'", name);
    char ts[96];
    lathe_node_type_str(y, ts, sizeof ts);
    if (strcmp(ts, type)) fail_msg("output '%s' is %s, want %s", name, ts, type);
    if (lathe_node_numel(y) != n) fail_msg("output '%s': %lld values, want %d", name, (long long)lathe_node_numel(y), n);
    const double *v = lathe_eval_value(ev, y);
    for (int i = 0; i < n; i++)
        if (v[i] != want[i]) fail_msg("output '%s'[%d] = %.17g, want %.17g", name, i, v[i], want[i]);
}
#define WANT(...) (int)(sizeof((const double[]){__VA_ARGS__}) / sizeof(double)), (const double[]){__VA_ARGS__}

static void test_constant_builders(void **state) {
    (void)state;
    const char *src = "output a = arange(5)\n"
                      "output b = arange(2, 11, 3)\n"            /* ceil(9/3) = 3 */
                      "output c = arange(1, -1, -0.5, dtype=f32)\n" /* ceil(-2/-0.5) = 4 */
                      "output d = arange(0, 1, 0.3, dtype=f64)\n"   /* ceil(3.33) = 4 */
                      "output e = arange(3, 3)\n"
                      "output z = zeros([2, 3])\n"
                      "output o = ones(3, dtype=i64)\n"
                      "output f = full([2, 1], 7.5, dtype=f64)\n"
                      "output t = full([], true, dtype=bool)\n"
                      "output u = zeros([0, 2], dtype=f64)\n"
                      "output s = ones([2]) * arange(2, dtype=f32) + full(2, -1)\n";
    lathe_desc_options opt = {.training = false};
    lathe_graph *g = parse_src(src, &opt, NULL);
    lathe_eval *ev = run_eval(g, 1);
    assert_output(g, ev, "a", "i64[5]", WANT(0, 1, 2, 3, 4));
    assert_output(g, ev, "b", "i64[3]", WANT(2, 5, 8));
    assert_output(g, ev, "c", "f32[4]", WANT(1, 0.5, 0, -0.5));
    assert_output(g, ev, "d", "f64[4]", WANT(0, 0.3, 0.6, 0.3 * 3));
    assert_output(g, ev, "e", "i64[0]", 0, NULL);
    assert_output(g, ev, "z", "f32[2,3]", WANT(0, 0, 0, 0, 0, 0));
    assert_output(g, ev, "o", "i64[3]", WANT(1, 1, 1));
    assert_output(g, ev, "f", "f64[2,1]", WANT(7.5, 7.5));
    assert_output(g, ev, "t", "bool[]", WANT(1));
    assert_output(g, ev, "u", "f64[0,2]", 0, NULL);
    assert_output(g, ev, "s", "f32[2]", WANT(-1, 0));
    lathe_eval_free(ev);
    lathe_graph_free(g);
}

static void test_mask_builders(void **state) {
    (void)state;
    const char *src = "input x: f32[2, 3, 4]\n"
                      "m = reshape(arange(1, 10, dtype=f32), [3, 3])\n"
                      "output l = tril(m)\n"
                      "output u = triu(m, diagonal=1)\n"
                      "output l1 = tril(m, -1)\n"
                      "output u2 = triu(m, -1)\n"
                      "output wide = tril(ones([2, 4]), 1)\n"
                      "output big = triu(m, 5)\n"
                      "output cm = causal_mask(3)\n"
                      "output cm0 = causal_mask(0)\n"
                      "output mf = masked_fill(m, causal_mask(3), -1e9)\n"
                      "output minf = masked_fill(m, causal_mask(3), -inf)\n"
                      "output finf = full([2], 2 * inf)\n"
                      "output mb = masked_fill(zeros([2, 1]), causal_mask(2), 5)\n"
                      "output mi = masked_fill(arange(3), arange(3) > 0, -7)\n"
                      "output bt = tril(x)\n"
                      "output bu = triu(x, 2)\n"
                      "output p = softmax(masked_fill(matmul(x, transpose(x, 1, 2)), causal_mask(2 + 1), -inf), -1)\n";
    lathe_desc_options opt = {.training = false};
    lathe_graph *g = parse_src(src, &opt, NULL);
    lathe_eval *ev = run_eval(g, 2);
    /* m = [[1,2,3],[4,5,6],[7,8,9]]; tril keeps j - i <= d, triu j - i >= d */
    assert_output(g, ev, "l", "f32[3,3]", WANT(1, 0, 0, 4, 5, 0, 7, 8, 9));
    assert_output(g, ev, "u", "f32[3,3]", WANT(0, 2, 3, 0, 0, 6, 0, 0, 0));
    assert_output(g, ev, "l1", "f32[3,3]", WANT(0, 0, 0, 4, 0, 0, 7, 8, 0));
    assert_output(g, ev, "u2", "f32[3,3]", WANT(1, 2, 3, 4, 5, 6, 0, 8, 9));
    assert_output(g, ev, "wide", "f32[2,4]", WANT(1, 1, 0, 0, 1, 1, 1, 0));
    assert_output(g, ev, "big", "f32[3,3]", WANT(0, 0, 0, 0, 0, 0, 0, 0, 0));
    assert_output(g, ev, "cm", "bool[3,3]", WANT(0, 1, 1, 0, 0, 1, 0, 0, 0)); /* what attention masks out */
    assert_output(g, ev, "cm0", "bool[0,0]", 0, NULL);
    assert_output(g, ev, "mf", "f32[3,3]", WANT(1, -1e9, -1e9, 4, 5, -1e9, 7, 8, 9));
    assert_output(g, ev, "minf", "f32[3,3]", WANT(1, -INFINITY, -INFINITY, 4, 5, -INFINITY, 7, 8, 9));
    assert_output(g, ev, "finf", "f32[2]", WANT(INFINITY, INFINITY));
    assert_output(g, ev, "mb", "f32[2,2]", WANT(0, 5, 0, 0)); /* x [2,1] and mask [2,2] broadcast, as PyTorch */
    assert_output(g, ev, "mi", "i64[3]", WANT(0, -7, -7));
    /* batched: the last two dims of x [2,3,4], (i, j) = ((e / 4) % 3, e % 4) */
    const double *x = lathe_eval_leaf(ev, "x"), *bt = lathe_eval_value(ev, lathe_graph_find_output(g, "bt"));
    const double *bu = lathe_eval_value(ev, lathe_graph_find_output(g, "bu"));
    for (int e = 0; e < 24; e++) {
        int i = e / 4 % 3, j = e % 4;
        assert_true(bt[e] == (j <= i ? x[e] : 0));
        assert_true(bu[e] == (j - i >= 2 ? x[e] : 0));
    }
    /* causal attention weights: nothing above the diagonal, rows sum to 1, the first row all on itself */
    const double *pv = lathe_eval_value(ev, lathe_graph_find_output(g, "p"));
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < 3; i++) {
            double sum = 0;
            for (int j = 0; j < 3; j++) {
                sum += pv[b * 9 + i * 3 + j];
                if (j > i) assert_true(pv[b * 9 + i * 3 + j] == 0);
            }
            assert_true(fabs(sum - 1) < 1e-6);
        }
    assert_true(pv[0] == 1 && pv[9] == 1);
    lathe_eval_free(ev);
    lathe_graph_free(g);
    /* gradients pass where the mask keeps: d sum(tril(x) * w) / dx = w below the diagonal, 0 above */
    g = parse_src("input x: f32[3, 3] requires_grad\ninput w: f32[3, 3]\nloss sum(tril(x) * w)\n", NULL, NULL);
    assert_int_equal(lathe_backward_marked(g), LATHE_OK);
    ev = run_eval(g, 4);
    const double *gx = lathe_eval_value(ev, lathe_graph_find_output(g, "grad.x")), *w = lathe_eval_leaf(ev, "w");
    for (int e = 0; e < 9; e++) assert_true(gx[e] == (e % 3 <= e / 3 ? w[e] : 0));
    lathe_eval_free(ev);
    lathe_graph_free(g);
}

/* ---- 5. bad descriptions --------------------------------------------------------------------- */

typedef struct {
    const char *src;
    const char *define;     /* one "NAME=VALUE", or NULL */
    lathe_status status;
    const char *msg[3];     /* pieces the message must contain */
} bad_case;

#define X2 "input x: f32[2, 3]\n"
#define X4 "input x: f32[2, 3, 8, 8]\n"

static const bad_case bad_cases[] = {
    /* loops, shared layers, names by reference */
    {X2 "for i in 0..2.5 {\n}\n", 0, LATHE_ERR_ARG, {"t.lathe:2:13: a loop's bounds must be integers, got the number 2.5"}},
    {X2 "for i in 0 {\n}\n", 0, LATHE_ERR_PARSE, {"t.lathe:2:12: expected '..' between the loop's bounds, got '{'"}},
    {X2 "for i of 0..2 {\n}\n", 0, LATHE_ERR_PARSE, {"t.lathe:2:7: expected 'in' after the loop variable, got 'of'"}},
    {X2 "for i in 0..200000 {\n}\n", 0, LATHE_ERR_ARG, {"t.lathe:2:10: more than 100000 loop iterations in all"}},
    {X2 "for i in 0..2 {\n y = linear(x, 4) as l.{i / 2}\n}\n",
     0,
     LATHE_ERR_NAME,
     {"t.lathe:3:25: a {...} in a name must be an integer, got the number 0.5"}},
    {X2 "for i in 0..2 {\n y = linear(x, 4) as l.{i\n}\n", 0, LATHE_ERR_PARSE, {"expected '}' after the expression in the name"}},
    {X2 "y = linear(x, 4) as f\ny = linear(y, 5) as f\n",
     0,
     LATHE_ERR_SHAPE,
     {"t.lathe:3:5: linear: 'f.weight' is f32[4,3] (made at line 2), this call needs f32[5,4]",
      "shares its parameters, so their shapes must agree"}},
    {"block f(x, n) {\n    param w: f32[n]\n    return x * w\n}\n" X2 "y = f(x, 3) as a\nz = f(x, 4) as a\n",
     0,
     LATHE_ERR_SHAPE,
     {"t.lathe:2:11: 'a.w' is f32[3] (made at line 2), this call declares f32[4]"}},
    {X2 "y = x * fc.weight\n", 0, LATHE_ERR_NAME, {"t.lathe:2:9: no parameter or buffer named 'fc.weight'"}},
    {X2 "block b(x) {\n return x * fc.weight\n}\ny = b(x) as m\n",
     0,
     LATHE_ERR_NAME,
     {"no parameter or buffer named 'm.fc.weight' or 'fc.weight'"}},
    {X2 "let for = 2\n", 0, LATHE_ERR_PARSE, {"'for' is a keyword"}},
    {X2 "input l: i64[2]\nloss cross_entropy(x, l, reduction=sum)\n",
     0,
     LATHE_ERR_NAME,
     {"t.lathe:3:36: 'sum' is a function, not a value: call it as sum(...) (a string is written in quotes: \"sum\")"}},
    {"param fc.w: f32[2]\n", 0, LATHE_ERR_PARSE, {"t.lathe:1:7: a param's name is one word; dotted names such as fc.weight"}},
    {X2 "y = gelu(x, approximate=\"erf\")\n", 0, LATHE_ERR_ARG, {"gelu: argument 'approximate' must be \"none\" or \"tanh\""}},
    {X2 "y = clamp(x)\n", 0, LATHE_ERR_ARG, {"t.lathe:2:5: clamp: give min, max or both"}},
    {X4 "y = conv1d(x, 4, 3) as c\n", 0, LATHE_ERR_SHAPE, {"t.lathe:2:12: conv1d: x must be (N, C, L), got f32[2,3,8,8]"}},
    /* losses' options and strings */
    {X2 "input l: i64[2]\nloss cross_entropy(x, l, reduction=\"avg\")\n",
     0,
     LATHE_ERR_ARG,
     {"t.lathe:3:36: cross_entropy: argument 'reduction' must be \"none\", \"mean\" or \"sum\", got the string \"avg\""}},
    {X2 "y = \"abc\n", 0, LATHE_ERR_PARSE, {"t.lathe:2:5: unterminated string"}},
    {X2 "input l: i64[2]\nloss cross_entropy(x, l, reduction=\"none\")\n",
     0,
     LATHE_ERR_SHAPE,
     {"the loss must have one element to train, got f32[2]"}},
    {X2 "input l: i64[2]\nloss cross_entropy(x, l, label_smoothing=2)\n",
     0,
     LATHE_ERR_ARG,
     {"t.lathe:3:6: cross_entropy: label_smoothing must lie in [0, 1], got 2"}},
    /* embeddings and index_select */
    {X2 "y = embedding(x, 3, 4) as e\n", 0, LATHE_ERR_DTYPE, {"t.lathe:2:15: embedding: x must hold i64 token ids, got f32[2,3]"}},
    {"input t: i64[2]\ny = embedding(t, 3, 4)\n", 0, LATHE_ERR_NAME, {"t.lathe:2:5: embedding creates parameters and needs a name"}},
    {"input t: i64[2]\ny = embedding(t, 0, 4) as e\n",
     0,
     LATHE_ERR_ARG,
     {"t.lathe:2:18: embedding: argument 'num_embeddings' must be a positive integer, got the number 0"}},
    {"input t: i64[2]\ny = embedding(t, 3, 4, dtype=i64) as e\n",
     0,
     LATHE_ERR_ARG,
     {"t.lathe:2:30: embedding: argument 'dtype' must be f32 or f64, got the dtype i64"}},
    {X2 "y = index_select(x, 2, tensor([0], dtype=i64))\n",
     0,
     LATHE_ERR_ARG,
     {"t.lathe:2:5: index_select: axis 2 out of range [-2, 1] for f32[2,3]"}},
    {X2 "y = index_select(x, 0, tensor([0, 2], dtype=i64))\n",
     0,
     LATHE_ERR_ARG,
     {"t.lathe:2:5: index_select: constant index i64[2] holds 2 at element 1, outside [0, 2) (input f32[2,3], axis 0)"}},
    /* tokens and syntax */
    {X2 "y = x $ 2\n", 0, LATHE_ERR_PARSE, {"t.lathe:2:7: unexpected character '$'", "\n  y = x $ 2\n        ^"}},
    {X2 "y = x ! 2\n", 0, LATHE_ERR_PARSE, {"t.lathe:2:7: unexpected character '!' (write 'not' or '!=')"}},
    {"let a = 1.2.3\n", 0, LATHE_ERR_PARSE, {"t.lathe:1:9: malformed number '1.2.3'"}},
    {"let a = 1e999\n", 0, LATHE_ERR_PARSE, {"t.lathe:1:9: number '1e999' is out of range"}},
    {"let a = 3\nfoo bar\n", 0, LATHE_ERR_PARSE, {"t.lathe:2:5: expected '=' after 'foo', got 'bar'"}},
    {"let loss = 3\n",
     0,
     LATHE_ERR_PARSE,
     {"t.lathe:1:5: 'loss' is a keyword and cannot be used as the constant's name"}},
    {X2 "y = relu(x) relu(x)\n",
     0,
     LATHE_ERR_PARSE,
     {"t.lathe:2:13: expected end of line after the statement, got 'relu'"}},
    {X2 "y = relu(x\n",
     0,
     LATHE_ERR_PARSE,
     {"t.lathe:3:1: unexpected end of file, expected ',' or ')' after the arguments of relu"}},
    {X2 "y = (x + \n", 0, LATHE_ERR_PARSE, {"t.lathe:3:1: unexpected end of file, expected an expression"}},
    {X2 "y = x\nelse {\n}\n", 0, LATHE_ERR_PARSE, {"t.lathe:3:1: 'else' must follow the '}' of an 'if'"}},
    {X2 "}\n", 0, LATHE_ERR_PARSE, {"t.lathe:2:1: '}' without a matching '{'"}},
    /* declarations */
    {"input x f32[2]\n", 0, LATHE_ERR_PARSE, {"t.lathe:1:9: expected ':' and the input's type, got 'f32'"}},
    {"input x: f16[2]\n", 0, LATHE_ERR_PARSE, {"t.lathe:1:10: unknown dtype 'f16' (expected f32, f64, i64 or bool)"}},
    {"input x: f32[2.5]\n",
     0,
     LATHE_ERR_ARG,
     {"t.lathe:1:14: a dimension must be a non-negative integer, got the number 2.5"}},
    {"input x: f32[1, 1, 1, 1, 1, 1, 1]\n", 0, LATHE_ERR_SHAPE, {"t.lathe:1:32: a type has at most 6 dimensions"}},
    {"input x: f32[2] rw\n",
     0,
     LATHE_ERR_PARSE,
     {"t.lathe:1:17: expected raw, requires_grad or end of line, got 'rw'"}},
    {"input l: i64[2] requires_grad\n",
     0,
     LATHE_ERR_DTYPE,
     {"t.lathe:1:17: set_requires_grad 'l': only floating-point tensors can require grad"}},
    {"param w: f32[2] init=gaussian(1)\n",
     0,
     LATHE_ERR_PARSE,
     {"t.lathe:1:22: expected an initializer: auto, zeros, ones, uniform(A), const(V) or normal(STD), got 'gaussian'"}},
    {"param w: f32[2] init=normal(-0.5)\n",
     0,
     LATHE_ERR_ARG,
     {"t.lathe:1:29: normal(STD) draws with standard deviation STD: it must be >= 0, got -0.5"}},
    {"param w: f32[2] init=uniform(-1)\n",
     0,
     LATHE_ERR_ARG,
     {"t.lathe:1:30: uniform(A) draws from [-A, A]: A must be >= 0, got -1"}},
    {"buffer b: f32[2] frozen\n", 0, LATHE_ERR_PARSE, {"t.lathe:1:18: expected init=... or end of line, got 'frozen'"}},
    {"param w: f32[2]\nparam w: f32[2]\n", 0, LATHE_ERR_NAME, {"t.lathe:2:7: param: duplicate name 'w'"}},
    {"batch N = 2\nbatch M = 3\n", 0, LATHE_ERR_PARSE, {"t.lathe:2:1: the batch dimension is already declared"}},
    {"batch N = 0\n", 0, LATHE_ERR_ARG, {"t.lathe:1:11: the batch size must be a positive integer, got the number 0"}},
    {"let a = 1\na = 2\n", 0, LATHE_ERR_NAME, {"t.lathe:2:1: 'a' is already defined as a constant at line 1"}},
    {"let a = 1\nlet a = 2\n", 0, LATHE_ERR_NAME, {"t.lathe:2:5: 'a' is already defined as a constant at line 1"}},
    /* names and calls */
    {X2 "y = relu(xx)\n", 0, LATHE_ERR_NAME, {"t.lathe:2:10: unknown name 'xx' (did you mean 'x'?)"}},
    {X2 "y = rleu(x)\n", 0, LATHE_ERR_NAME, {"t.lathe:2:5: unknown function 'rleu' (did you mean 'relu'?)"}},
    {X2 "y = linear(x, 4)\n",
     0,
     LATHE_ERR_NAME,
     {"t.lathe:2:5: linear creates parameters and needs a name: write linear(...) as NAME"}},
    {X2 "y = relu(x) as r\n",
     0,
     LATHE_ERR_NAME,
     {"t.lathe:2:16: 'as' names the parameters of a layer or block; relu has none"}},
    {X2 "y = x as r\n", 0, LATHE_ERR_NAME, {"t.lathe:2:7: 'as' names a layer or block call", "'x' is not a call"}},
    {X2 "y = linear(x, 4) as fc..w\n", 0, LATHE_ERR_PARSE, {"t.lathe:2:21: malformed name 'fc..w'"}},
    {X2 "y = relu(x, 1)\n", 0, LATHE_ERR_ARG, {"t.lathe:2:13: too many arguments: relu(x) takes 1"}},
    {X2 "y = softmax(x)\n", 0, LATHE_ERR_ARG, {"t.lathe:2:5: missing argument 'axis' of softmax(x, axis)"}},
    {X4 "y = conv2d(x, 4, 3, strid=2) as c\n",
     0,
     LATHE_ERR_ARG,
     {"t.lathe:2:21: conv2d has no argument 'strid' (did you mean 'stride'?); it takes conv2d(x, out_channels, kernel, "
      "stride=1"}},
    {X2 "y = linear(x, 3, out_features=4) as fc\n",
     0,
     LATHE_ERR_ARG,
     {"t.lathe:2:18: argument 'out_features' of linear is given twice"}},
    {X4 "y = max_pool2d(x, kernel=2, 2)\n",
     0,
     LATHE_ERR_ARG,
     {"t.lathe:2:29: a positional argument cannot follow a keyword argument"}},
    {X2 "y = linear(x, 2.5) as fc\n",
     0,
     LATHE_ERR_ARG,
     {"t.lathe:2:15: linear: argument 'out_features' must be an integer, got the number 2.5"}},
    {X4 "y = conv2d(x, 4, [3, 3, 3]) as c\n",
     0,
     LATHE_ERR_ARG,
     {"t.lathe:2:18: conv2d: argument 'kernel' must be an integer or a list of at most 2 integers, got a list of 3"}},
    {X4 "y = conv2d(x, 4, 3, groups=2) as c\n",
     0,
     LATHE_ERR_ARG,
     {"t.lathe:2:28: conv2d: groups 2 must divide the 3 input and 4 output channels"}},
    {X2 "y = batch_norm(x) as bn\n",
     0,
     LATHE_ERR_SHAPE,
     {"t.lathe:2:16: batch_norm: x must be (N, C, H, W), got f32[2,3]"}},
    {X2 "y = reshape(x, [[1]])\n", 0, LATHE_ERR_ARG, {"t.lathe:2:17: lists cannot be nested"}},
    {"a = arange(0, 10, 0)\n", 0, LATHE_ERR_ARG, {"t.lathe:1:19: arange: step must not be 0"}},
    {"a = arange(2.5)\n",
     0,
     LATHE_ERR_ARG,
     {"t.lathe:1:12: arange: 2.5 is not an integer, as dtype i64 needs (pass dtype=f32 for fractions)"}},
    {"a = arange(0, 4, 0.5)\n", 0, LATHE_ERR_ARG, {"t.lathe:1:18: arange: 0.5 is not an integer"}},
    {"a = arange(5, 0)\n", 0, LATHE_ERR_ARG, {"t.lathe:1:5: arange: step 1 goes away from end 0 (start 5)"}},
    {"a = arange(3, dtype=bool)\n", 0, LATHE_ERR_DTYPE, {"t.lathe:1:21: arange: dtype must be f32, f64 or i64, got bool"}},
    {"a = arange(1e9)\n", 0, LATHE_ERR_ARG, {"t.lathe:1:5: arange: 1000000000 values are more than a constant may hold (16777216)"}},
    {X2 "a = arange(x)\n", 0, LATHE_ERR_ARG, {"t.lathe:2:12: arange: argument 'start' must be a number, got a tensor f32[2,3]"}},
    {"a = zeros([2, -1])\n", 0, LATHE_ERR_SHAPE, {"t.lathe:1:11: zeros: the shape's dim 1 is -1; dims must be >= 0"}},
    {X2 "a = zeros(x)\n",
     0,
     LATHE_ERR_ARG,
     {"t.lathe:2:11: zeros: argument 'shape' must be an integer or a list of at most 6 integers, got a tensor f32[2,3]"}},
    {"a = full(3, 0.5, dtype=i64)\n", 0, LATHE_ERR_ARG, {"t.lathe:1:13: full: value 0.5 is not an integer, as dtype i64 needs"}},
    {"a = ones(3, dtype=2)\n",
     0,
     LATHE_ERR_ARG,
     {"t.lathe:1:19: ones: argument 'dtype' must be a dtype (f32, f64, i64 or bool), got the number 2"}},
    {"a = full(3)\n", 0, LATHE_ERR_ARG, {"t.lathe:1:5: missing argument 'value' of full(shape, value, dtype=f32)"}},
    {"a = zeros([100000000, 100000000, 100000000])\n", 0, LATHE_ERR_SHAPE, {"t.lathe:1:5: broadcast_to: element count", "overflows"}},
    {X2 "y = tril(sum(x, 0))\n",
     0,
     LATHE_ERR_SHAPE,
     {"t.lathe:2:10: tril: x must have rank >= 2 (its last two dims are the matrix), got f32[3]"}},
    {X2 "y = triu(x, 0.5)\n", 0, LATHE_ERR_ARG, {"t.lathe:2:13: triu: argument 'diagonal' must be an integer, got the number 0.5"}},
    {"y = tril(3)\n", 0, LATHE_ERR_ARG, {"t.lathe:1:10: tril: argument 'x' must be a tensor, got the number 3"}},
    {"m = causal_mask(-1)\n", 0, LATHE_ERR_ARG, {"t.lathe:1:17: causal_mask: T must be 0 to 16777216, got -1"}},
    {X2 "m = causal_mask(x)\n", 0, LATHE_ERR_ARG, {"t.lathe:2:17: causal_mask: argument 'T' must be an integer, got a tensor"}},
    {X2 "y = masked_fill(x, x, 0)\n",
     0,
     LATHE_ERR_DTYPE,
     {"t.lathe:2:20: masked_fill: mask must be bool, got f32[2,3] (a comparison makes one)"}},
    {X2 "y = masked_fill(x, causal_mask(4), 0)\n",
     0,
     LATHE_ERR_SHAPE,
     {"t.lathe:2:20: masked_fill: mask bool[4,4] does not broadcast with x f32[2,3]"}},
    {X2 "y = masked_fill(x, x > 0, [1])\n",
     0,
     LATHE_ERR_ARG,
     {"t.lathe:2:27: masked_fill: value must be a number or a rank-0 tensor, got a list of 1"}},
    {X2 "y = masked_fill(x, x > 0, x)\n",
     0,
     LATHE_ERR_ARG,
     {"t.lathe:2:27: masked_fill: value must be a number or a rank-0 tensor, got a tensor f32[2,3]"}},
    {"y = masked_fill(arange(3), arange(3) > 0, 0.5)\n",
     0,
     LATHE_ERR_ARG,
     {"t.lathe:1:43: masked_fill: value 0.5 is not an integer, as x i64[3] needs"}},
    {X2 "y = masked_fill(x, x > 0, cast(sum(x), f64))\n",
     0,
     LATHE_ERR_DTYPE,
     {"t.lathe:2:27: masked_fill: value f64[] must have the dtype of x f32[2,3]"}},
    {X2 "y = layer_norm(x, 4) as ln\n",
     0,
     LATHE_ERR_SHAPE,
     {"t.lathe:2:19: layer_norm: normalized_shape [4] is not the last 1 dims of x f32[2,3]", "\n  y = layer_norm(x, 4) as ln\n                    ^"}},
    {X2 "y = layer_norm(x, [1, 2, 3]) as ln\n", 0, LATHE_ERR_SHAPE, {"t.lathe:2:19: layer_norm: normalized_shape [1,2,3] is not the last 3 dims of x f32[2,3]"}},
    {X2 "y = layer_norm(x, 3)\n",
     0,
     LATHE_ERR_NAME,
     {"t.lathe:2:5: layer_norm creates parameters and needs a name: write layer_norm(...) as NAME (for example 'as ln1')"}},
    {X2 "y = layer_norm(x, []) as ln\n",
     0,
     LATHE_ERR_ARG,
     {"t.lathe:2:19: layer_norm: argument 'normalized_shape' must be an integer or a non-empty list of integers, got a list of 0"}},
    {X2 "y = layer_norm(x, 1.5) as ln\n",
     0,
     LATHE_ERR_ARG,
     {"t.lathe:2:19: layer_norm: argument 'normalized_shape' must be an integer or a list of at most 6 integers"}},
    {X2 "y = layer_norm(x, 3, eps=-1) as ln\n", 0, LATHE_ERR_ARG, {"t.lathe:2:5: layer_norm: eps must be a finite number >= 0, got -1"}},
    {X2 "y = layer_norm(x, 3, elementwise_affine=f32) as ln\n",
     0,
     LATHE_ERR_ARG,
     {"t.lathe:2:41: layer_norm: argument 'elementwise_affine' must be a number, got the dtype f32"}},
    {X2 "y = layer_norm(x, 3) as ln\nz = layer_norm(x, [2, 3]) as ln\n",
     0,
     LATHE_ERR_SHAPE,
     {"t.lathe:3:5: layer_norm: 'ln.weight' is f32[3] (made at line 2), this call needs f32[2,3]"}},
    {X2 "n = channels(relu(sum(x)))\n", 0, LATHE_ERR_ARG, {"t.lathe:2:5: channels: f32[] has no axis 1"}},
    /* shapes and dtypes from the builders, at the call or operator */
    {X2 "input y: f32[4]\nz = x + y\n",
     0,
     LATHE_ERR_SHAPE,
     {"t.lathe:3:7: add: cannot broadcast f32[2,3], f32[4]", "\n  z = x + y\n        ^"}},
    {X2 "z = matmul(x, x)\n", 0, LATHE_ERR_SHAPE, {"t.lathe:2:5: matmul:"}},
    {X4 "y = conv2d(x, 4, 9) as c\n", 0, LATHE_ERR_SHAPE, {"t.lathe:2:5: conv2d"}},
    {X2 "input l: i64[2]\nz = x + l\n", 0, LATHE_ERR_DTYPE, {"t.lathe:3:7: add:"}},
    {X4 "y = batch_norm(x) as bn\nz = batch_norm(y) as bn\n",
     0,
     LATHE_ERR_NAME,
     {"t.lathe:3:5: batch_norm: 'bn' is already called; training would update its running statistics twice"}},
    {X2 "z = x // 2\n", 0, LATHE_ERR_ARG, {"t.lathe:2:7: '//' works on numbers only"}},
    {X2 "z = not x\n", 0, LATHE_ERR_ARG, {"t.lathe:2:5: 'not' works on numbers only, got a tensor f32[2,3]"}},
    {"let a = 1 / (2 - 2)\n", 0, LATHE_ERR_ARG, {"t.lathe:1:11: division by zero"}},
    {"let a = inf - inf\n", 0, LATHE_ERR_ARG, {"t.lathe:1:13: inf '-' inf is not a number"}},
    {"let a = 1e300 * 1e300\n", 0, LATHE_ERR_ARG, {"t.lathe:1:15: 1e+300 '*' 1e+300 is not a finite number"}},
    {"let a = log(0)\n", 0, LATHE_ERR_ARG, {"t.lathe:1:9: log(0) is not a finite number"}},
    /* blocks and control flow */
    {"block f(x) {\n    return x\n",
     0,
     LATHE_ERR_PARSE,
     {"t.lathe:3:1: unterminated block: expected '}' to close the '{' at line 1, column 12"}},
    {X2 "if 1 {\n    y = x\n",
     0,
     LATHE_ERR_PARSE,
     {"t.lathe:4:1: unterminated block: expected '}' to close the '{' at line 2, column 6"}},
    {"block f(x) {\n    y = x\n}\n" X2 "z = f(x)\n",
     0,
     LATHE_ERR_ARG,
     {"t.lathe:5:5: block 'f' ended without 'return'"}},
    {X2 "return x\n", 0, LATHE_ERR_PARSE, {"t.lathe:2:1: 'return' outside a block"}},
    {"block f(x) {\n    input y: f32[2]\n    return x\n}\n",
     0,
     LATHE_ERR_PARSE,
     {"t.lathe:2:5: 'input' is only allowed at the top level, not inside a block"}},
    {"block f(x) {\n    return f(x)\n}\n" X2 "y = f(x)\n",
     0,
     LATHE_ERR_ARG,
     {"t.lathe:2:12: blocks are nested more than 32 calls deep (does 'f' call itself?)",
      "called at t.lathe:2:12\n  ... 27 more block calls\n  in block 'f' called at t.lathe:2:12\n  in block 'f' called "
      "at t.lathe:5:5"}},
    {"block f(x, n=1, m) {\n    return x\n}\n",
     0,
     LATHE_ERR_ARG,
     {"t.lathe:1:17: parameter 'm' needs a default, as the ones before it have"}},
    {"block relu(x) {\n    return x\n}\n", 0, LATHE_ERR_NAME, {"t.lathe:1:7: 'relu' is a built-in function"}},
    {"block f(x) {\n    return x\n}\nblock f(y) {\n    return y\n}\n",
     0,
     LATHE_ERR_NAME,
     {"t.lathe:4:7: block 'f' is already defined"}},
    {"block f(x, n) {\n    y = x + zz\n    return y\n}\n" X2 "z = f(x, 3) as a.b\n",
     0,
     LATHE_ERR_NAME,
     {"t.lathe:2:13: unknown name 'zz'", "\n  in block 'f' as a.b called at t.lathe:6:5"}},
    {"block f(x, n) {\n    return linear(x, n) as fc\n}\n" X2 "z = f(x, 3) as a\nw = f(x, 4) as a\n",
     0,
     LATHE_ERR_SHAPE,
     {"t.lathe:2:12: linear: 'a.fc.weight' is f32[3,3] (made at line 2), this call needs f32[4,3]",
      "in block 'f' as a called at t.lathe:6:5"}},
    {"block f(x) {\n    return x\n}\n" X2 "y = f(x, 2)\n",
     0,
     LATHE_ERR_ARG,
     {"t.lathe:5:10: too many arguments: f(x) takes 1"}},
    {X2 "if x {\n}\n", 0, LATHE_ERR_ARG, {"t.lathe:2:4: 'if' needs a number as its condition, got a tensor f32[2,3]"}},
    /* statements */
    {X2 "loss x\n", 0, LATHE_ERR_SHAPE, {"t.lathe:2:6: the loss must have one element to train, got f32[2,3]"}},
    {X2 "loss sum(x)\nloss sum(x)\n", 0, LATHE_ERR_PARSE, {"t.lathe:3:1: the model already has a 'loss'"}},
    {"input q: f32[2] requires_grad\nbackward q, [1.0]\n",
     0,
     LATHE_ERR_SHAPE,
     {"t.lathe:2:13: the cotangent must be a number or a list of 2 numbers, got a list of 1"}},
    {"let n = 3\noutput n\n", 0, LATHE_ERR_ARG, {"t.lathe:2:8: an output must be a tensor, got the number 3"}},
    {X2 "output y\n", 0, LATHE_ERR_NAME, {"t.lathe:2:8: unknown name 'y' (write output NAME = EXPR to define it)"}},
    {X2 "output x\noutput x\n", 0, LATHE_ERR_NAME, {"t.lathe:3:8: output: duplicate name 'x'"}},
    {X2 "y = linear(x, 4) as fc\nfreeze fd.\n",
     0,
     LATHE_ERR_NAME,
     {"t.lathe:3:8: freeze 'fd.': no floating-point parameter name starts with it"}},
    /* defines */
    {"let width = 3\ninput x: f32[width]\n",
     "widht=4",
     LATHE_ERR_NAME,
     {"t.lathe: unknown define 'widht': the file has no 'let widht' (did you mean 'width'?)"}},
    {"let width = 3\n", "width=abc", LATHE_ERR_ARG, {"t.lathe: bad define 'width=abc': expected NAME=NUMBER"}},
    {"let width = 3\n", "3d=1", LATHE_ERR_ARG, {"t.lathe: bad define '3d=1'"}},
    {"let width = 3\ninput x: f32[width]\n",
     "width=2.5",
     LATHE_ERR_ARG,
     {"t.lathe:2:14: a dimension must be a non-negative integer, got the number 2.5"}},
};

static void test_bad_descriptions(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *c = &bad_cases[i];
        lathe_graph *g = lathe_graph_new();
        lathe_desc_options opt = {.training = true, .ndefines = c->define != NULL, .defines = &c->define};
        lathe_status st = lathe_desc_parse(g, c->src, strlen(c->src), "t.lathe", &opt, NULL);
        const char *m = lathe_graph_error(g);
        if (st != c->status || lathe_graph_status(g) != st)
            fail_msg("bad case %zu (%s): status '%s', expected '%s'; message:\n%s", i, c->msg[0], lathe_status_name(st),
                     lathe_status_name(c->status), m);
        for (int k = 0; k < 3 && c->msg[k]; k++)
            if (!strstr(m, c->msg[k])) fail_msg("bad case %zu: message lacks '%s':\n%s", i, c->msg[k], m);
        lathe_graph_free(g);
    }
    print_message("%zu bad descriptions\n", sizeof bad_cases / sizeof bad_cases[0]);
}

static void test_api_misuse(void **state) {
    (void)state;
    lathe_graph *g = lathe_graph_new();
    lathe_desc_info info = {.ninputs = 5};
    assert_int_equal(lathe_desc_parse_file(g, "/nonexistent/x.lathe", NULL, &info), LATHE_ERR_IO);
    assert_int_equal(info.ninputs, 0);
    assert_non_null(strstr(lathe_graph_error(g), "/nonexistent/x.lathe"));
    lathe_graph_free(g);
    g = lathe_graph_new();
    lathe_input(g, "x", LATHE_F32, LATHE_DIMS(2));
    assert_int_equal(lathe_desc_parse(g, "", 0, "t.lathe", NULL, NULL), LATHE_ERR_ARG);
    lathe_graph_free(g);
    g = lathe_graph_new();
    lathe_desc_options opt = {.ndefines = 1, .defines = NULL};
    assert_int_equal(lathe_desc_parse(g, "", 0, "t.lathe", &opt, NULL), LATHE_ERR_ARG);
    lathe_graph_free(g);
    /* an empty description is a valid, empty model named after the file */
    g = lathe_graph_new();
    assert_int_equal(lathe_desc_parse(g, NULL, 0, "dir/empty.lathe", NULL, &info), LATHE_OK);
    assert_string_equal(info.model, "empty");
    lathe_graph_free(g);
    /* a NUL byte */
    g = lathe_graph_new();
    assert_int_equal(lathe_desc_parse(g, "input x: f32[2]\0\n", 17, "t.lathe", NULL, NULL), LATHE_ERR_PARSE);
    assert_non_null(strstr(lathe_graph_error(g), "t.lathe:1:16: unexpected byte 0x00"));
    lathe_graph_free(g);
    /* block calls are bounded: 2^14 calls */
    char calls[2048];
    size_t n = (size_t)snprintf(calls, sizeof calls, "block f0(x) {\n    return x\n}\n");
    for (int i = 1; i <= 14; i++)
        n += (size_t)snprintf(calls + n, sizeof calls - n, "block f%d(x) {\n    return f%d(f%d(x))\n}\n", i, i - 1, i - 1);
    snprintf(calls + n, sizeof calls - n, "input x: f32[2]\ny = f14(x)\n");
    g = lathe_graph_new();
    assert_int_equal(lathe_desc_parse(g, calls, strlen(calls), "t.lathe", NULL, NULL), LATHE_ERR_ARG);
    assert_non_null(strstr(lathe_graph_error(g), "more than 10000 block calls in all"));
    lathe_graph_free(g);
    /* a long line is cut around the column, and the caret still points at it */
    char line[1024];
    n = (size_t)snprintf(line, sizeof line, "let a = ");
    for (int i = 0; i < 100; i++) n += (size_t)snprintf(line + n, sizeof line - n, "1 + ");
    snprintf(line + n, sizeof line - n, "oops + 1\n");
    g = lathe_graph_new();
    assert_int_equal(lathe_desc_parse(g, line, strlen(line), "t.lathe", NULL, NULL), LATHE_ERR_NAME);
    const char *m = lathe_graph_error(g), *l = strstr(m, "\n  ..."), *caret = l ? strchr(l + 1, '\n') : NULL;
    assert_non_null(strstr(m, "t.lathe:1:409: unknown name 'oops'"));
    assert_non_null(caret);
    size_t col = strlen(caret + 1) - 1;
    assert_true(caret[1 + col] == '^');
    assert_memory_equal(l + 1 + col, "oops", 4);
    lathe_graph_free(g);
    /* nesting is bounded */
    char deep[600];
    size_t k = (size_t)snprintf(deep, sizeof deep, "let a = ");
    for (int i = 0; i < 200; i++) deep[k++] = '(';
    deep[k++] = '1';
    for (int i = 0; i < 200; i++) deep[k++] = ')';
    g = lathe_graph_new();
    assert_int_equal(lathe_desc_parse(g, deep, k, "t.lathe", NULL, NULL), LATHE_ERR_PARSE);
    assert_non_null(strstr(lathe_graph_error(g), "nesting is too deep"));
    lathe_graph_free(g);
    /* so is a right-associative '**' chain (50,000 terms overflowed the stack) */
    enum { TERMS = 50000 };
    char *pow = malloc(16 + 5 * TERMS);
    assert_non_null(pow);
    k = (size_t)sprintf(pow, "let b = 2");
    for (int i = 0; i < TERMS; i++) k += (size_t)sprintf(pow + k, " ** 1");
    g = lathe_graph_new();
    assert_int_equal(lathe_desc_parse(g, pow, k, "t.lathe", NULL, NULL), LATHE_ERR_PARSE);
    assert_non_null(strstr(lathe_graph_error(g), "t.lathe:1:"));
    assert_non_null(strstr(lathe_graph_error(g), "nesting is too deep"));
    lathe_graph_free(g);
    free(pow);
    /* a 100,000-term sum parses and traces (left-associative: a loop, not a recursion) */
    char *sum = malloc(64 + 4 * TERMS * 2);
    assert_non_null(sum);
    k = (size_t)sprintf(sum, "model m\nbatch N = 2\ninput x: f32[N, 3]\ny = x");
    for (int i = 0; i < 2 * TERMS; i++) k += (size_t)sprintf(sum + k, " + x");
    k += (size_t)sprintf(sum + k, "\noutput y\n");
    g = lathe_graph_new();
    if (lathe_desc_parse(g, sum, k, "t.lathe", NULL, NULL) != LATHE_OK) fail_msg("%s", lathe_graph_error(g));
    assert_true(lathe_graph_num_nodes(g) > 2 * TERMS);
    lathe_graph_free(g);
    free(sum);
    /* an 'else if' chain of 200,000 arms is a loop too; the right arm is taken */
    enum { ARMS = 200000 };
    char *arms = malloc(128 + 48 * (size_t)ARMS);
    assert_non_null(arms);
    k = (size_t)sprintf(arms, "model m\nbatch N = 2\ninput x: f32[N, 3]\nblock pick(x, v=0) {\n    if v == 0 { return -x }");
    for (int i = 1; i < ARMS; i++)
        k += (size_t)sprintf(arms + k, " else if v == %d { return %s }", i, i == ARMS - 2 ? "relu(x)" : "-x");
    k += (size_t)sprintf(arms + k, " else { return exp(x) }\n}\ny = pick(x, v=%d)\noutput y\n", ARMS - 2);
    g = lathe_graph_new();
    if (lathe_desc_parse(g, arms, k, "t.lathe", NULL, NULL) != LATHE_OK) fail_msg("%s", lathe_graph_error(g));
    assert_string_equal(lathe_node_op(lathe_graph_find_output(g, "y")), "relu");
    lathe_graph_free(g);
    free(arms);
    /* a short chain still parses, right-associative: 2 ** 3 ** 2 = 2 ** 9 = 512, so d divides by
     * zero (a left-associative 64 would not) */
    g = lathe_graph_new();
    const char *ok = "let c = 2 ** 3 ** 2\nlet d = 1 / (c - 512)";
    assert_int_equal(lathe_desc_parse(g, ok, strlen(ok), "t.lathe", NULL, NULL), LATHE_ERR_ARG);
    lathe_graph_free(g);
}

/* ---- 6. fuzz ------------------------------------------------------------------------------------ */

static int fuzz_runs;

static void fuzz_one(const char *src, size_t len, bool training) {
    char *buf = malloc(len ? len : 1); /* exactly len bytes: a read past the end is caught */
    assert_non_null(buf);
    memcpy(buf, src, len);
    lathe_graph *g = lathe_graph_new();
    lathe_desc_options opt = {.training = training, .batch = 2};
    lathe_desc_info info;
    lathe_status st = lathe_desc_parse(g, buf, len, "fuzz.lathe", &opt, &info);
    const char *m = lathe_graph_error(g);
    if (st == LATHE_OK) {
        if (m[0]) fail_msg("ok with a message: %s", m);
        if (lathe_graph_verify(g) != LATHE_OK) fail_msg("traced graph fails verify: %s", lathe_graph_error(g));
    } else {
        if (lathe_graph_status(g) != st) fail_msg("status %d but graph has %d", st, lathe_graph_status(g));
        if (strncmp(m, "fuzz.lathe:", 11) != 0 || strlen(m) < 16) fail_msg("bad message for status %d: '%s'", st, m);
    }
    lathe_graph_free(g);
    free(buf);
    fuzz_runs++;
}

static char *read_example(const char *name, size_t *len) {
    char path[4096];
    FILE *f = fopen(example_path(name, path, sizeof path), "rb");
    if (!f) fail_msg("cannot open %s", path);
    char *buf = malloc(1 << 16);
    assert_non_null(buf);
    *len = fread(buf, 1, 1 << 16, f);
    fclose(f);
    return buf;
}

static void test_fuzz(void **state) {
    (void)state;
    static const char *files[] = {"autograd_basics.lathe", "mlp.lathe", "fashion_cnn.lathe", "resnet18.lathe"};
    static const char repl[] = {'\0', '(', ')', '[', ']', '{', '}', ',', '\n',
                                '#',  '-', '9', '=', ':', ' ', '.', '*', 'x'};
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        size_t len;
        char *t = read_example(files[f], &len);
        for (size_t k = 0; k <= len; k++) fuzz_one(t, k, k % 2);
        char *m = malloc(len);
        assert_non_null(m);
        rng r = {100 + f};
        for (int i = 0; i < 150; i++) {
            size_t pos = (size_t)rng_uniform(&r, 0, (double)len);
            for (size_t v = 0; v < sizeof repl + 3; v++) {
                memcpy(m, t, len);
                size_t n = len;
                if (v < sizeof repl) m[pos] = repl[v];
                else if (v == sizeof repl) m[pos] ^= 0x20;
                else if (v == sizeof repl + 1) m[pos] = (char)rng_uniform(&r, 0, 256);
                else {
                    memmove(m + pos, m + pos + 1, len - pos - 1); /* delete the byte */
                    n--;
                }
                fuzz_one(m, n, v % 2);
            }
        }
        free(m);
        free(t);
    }
    /* the feature file too: every statement kind */
    size_t len = sizeof feature_src - 1;
    for (size_t k = 0; k <= len; k += 3) fuzz_one(feature_src, k, true);
    print_message("%d fuzzed descriptions\n", fuzz_runs);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fashion_cnn),
        cmocka_unit_test(test_resnet18_names),
        cmocka_unit_test(test_autograd_basics),
        cmocka_unit_test(test_mlp),
        cmocka_unit_test(test_features),
        cmocka_unit_test(test_eval_losses),
        cmocka_unit_test(test_accuracy_parity),
        cmocka_unit_test(test_loops_and_sharing),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_conv1d),
        cmocka_unit_test(test_embedding_lm),
        cmocka_unit_test(test_layer_norm_layer),
        cmocka_unit_test(test_constant_builders),
        cmocka_unit_test(test_mask_builders),
        cmocka_unit_test(test_bad_descriptions),
        cmocka_unit_test(test_api_misuse),
        cmocka_unit_test(test_fuzz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
