/* finetune.c - the autograd tutorial's finetuning, compiled.
 *
 * PyTorch:
 *     model = torchvision.models.resnet18(pretrained=True)
 *     for param in model.parameters():
 *         param.requires_grad = False
 *     model.fc = nn.Linear(512, 10)
 *     optimizer = optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
 *
 * Usage: finetune [WEIGHTS.safetensors]
 * WEIGHTS holds ResNet-18 weights under torchvision's names (for example
 * exported from PyTorch).  Without it (this machine cannot download
 * torchvision's weights) the example first writes stand-in "pretrained"
 * weights: a 1000-class ResNet-18 initialized as PyTorch does, saved to
 * resnet18_pretrained.safetensors in the current directory.
 *
 * Lathe traces ResNet-18 with the new 10-class fc, freezes everything but
 * fc, and writes the backward pass: frozen layers get no gradient nodes, so
 * the compiled backward holds no convolution gradient at all.  The
 * optimizer is given every parameter; one step changes only fc.weight and
 * fc.bias. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lathe_checkpoint.h"
#include "lathe_compiler.h"
#include "lathe_models.h"

static void die(const char *what, const char *msg) {
    fprintf(stderr, "finetune: %s: %s\n", what, msg);
    exit(1);
}

static lathe_graph *trace(int64_t classes, bool backward) {
    lathe_graph *g = lathe_graph_new();
    lathe_node *x = lathe_input(g, "data", LATHE_F32, LATHE_DIMS(2, 3, 64, 64));
    lathe_resnet_config cfg = {LATHE_F32, classes, 64, true};
    lathe_node *logits = lathe_resnet18(g, x, &cfg);
    if (!logits) die("tracing", lathe_graph_error(g));
    lathe_output(g, "logits", logits);
    if (backward) {
        /* for param in model.parameters(): param.requires_grad = False;
         * model.fc = nn.Linear(512, 10) is new, so it trains */
        lathe_set_requires_grad_prefix(g, "", false);
        lathe_set_requires_grad_prefix(g, "fc.", true);
        lathe_node *labels = lathe_input(g, "labels", LATHE_I64, LATHE_DIMS(2));
        lathe_node *loss = lathe_cross_entropy(g, logits, labels, LATHE_REDUCE_MEAN);
        lathe_output(g, "loss", loss);
        if (lathe_backward(g, 1, &loss, NULL) != LATHE_OK) die("backward", lathe_graph_error(g));
    }
    return g;
}

int main(int argc, char **argv) {
    char err[1024];
    const char *weights = argc > 1 ? argv[1] : "resnet18_pretrained.safetensors";
    if (argc <= 1) { /* stand-in pretrained weights */
        lathe_graph *g0 = trace(1000, false);
        lathe_program *p0 = lathe_compile(g0, LATHE_BACKEND_JIT);
        if (!p0) die("compile", lathe_graph_error(g0));
        lathe_program_init(p0, 2024);
        if (lathe_rt_save(weights, lathe_program_arena(p0), lathe_program_tensors(p0), lathe_program_num_tensors(p0),
                          NULL, err, sizeof err))
            die("save", err);
        printf("wrote stand-in pretrained weights to %s\n", weights);
        lathe_program_free(p0);
        lathe_graph_free(g0);
    }

    lathe_graph *g = trace(10, true);
    int convgrads = 0, bw = 0, first_bw = -1;
    for (int i = 0; i < lathe_graph_num_nodes(g); i++) {
        const char *op = lathe_node_op(lathe_graph_node(g, i));
        if (first_bw < 0 && !strcmp(op, "cross_entropy")) first_bw = i + 1;
        if (first_bw >= 0 && i >= first_bw) bw++;
        convgrads += !strncmp(op, "conv2d_backward", 15);
    }
    printf("backward pass: %d nodes, %d convolution gradients\n", bw, convgrads);

    lathe_program *p = lathe_compile(g, LATHE_BACKEND_JIT);
    if (!p) die("compile", lathe_graph_error(g));
    const lathe_rt_tensor *ts = lathe_program_tensors(p);
    int n = lathe_program_num_tensors(p);
    uint8_t *arena = lathe_program_arena(p);
    lathe_program_init(p, 7); /* the new fc's initialization */
    lathe_load_report rep;
    if (lathe_rt_load(weights, arena, ts, n, NULL, false, &rep, err, sizeof err)) die("load", err);
    printf("loaded %d tensors from %s; not loaded (the replaced fc):\n%s", rep.loaded, weights, rep.text);

    /* a batch of two random images with labels among the 10 new classes */
    float *x = malloc(sizeof(float) * 2 * 3 * 64 * 64);
    srand(3);
    for (int i = 0; i < 2 * 3 * 64 * 64; i++) x[i] = (float)rand() / (float)RAND_MAX;
    int64_t labels[2] = {3, 7};
    lathe_program_set(p, "data", x, sizeof(float) * 2 * 3 * 64 * 64);
    lathe_program_set(p, "labels", labels, sizeof labels);
    free(x);

    /* optimizer = optim.SGD(model.parameters(), lr=1e-2, momentum=0.9) */
    lathe_optim_config sgd = lathe_sgd_config(1e-2, 0.9);
    lathe_optimizer *opt = lathe_program_optimizer(p, &sgd);
    if (!opt) die("optimizer", lathe_program_error(p));
    uint8_t *before = malloc((size_t)lathe_program_arena_bytes(p));
    memcpy(before, arena, (size_t)lathe_program_arena_bytes(p));
    lathe_program_run(p);
    lathe_optim_step(opt);
    float loss;
    lathe_program_get(p, "loss", &loss, sizeof loss);
    printf("loss %.4f; parameters changed by the step:", loss);
    int changed = 0;
    for (int i = 0; i < n; i++) {
        if (ts[i].kind != LATHE_RT_PARAM) continue;
        size_t bytes = (size_t)ts[i].numel * sizeof(float);
        if (memcmp(before + ts[i].offset, arena + ts[i].offset, bytes) != 0) {
            printf(" %s", ts[i].name);
            changed++;
        }
    }
    printf(" (%d of them)\n", changed);
    free(before);
    lathe_optim_free(opt);
    lathe_program_free(p);
    lathe_graph_free(g);
    return convgrads == 0 && changed == 2 ? 0 : 1;
}
