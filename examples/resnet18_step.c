/* resnet18_step.c - the autograd tutorial's training step, compiled.
 *
 * PyTorch:
 *     model = torchvision.models.resnet18()
 *     data = torch.rand(1, 3, 64, 64)
 *     labels = torch.rand(1, 1000)
 *     prediction = model(data)                     # torch.Size([1, 1000])
 *     loss = (prediction - labels).sum()
 *     loss.backward()
 *     optim = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
 *     optim.step()
 *
 * Lathe traces the same ResNet-18 (torchvision's parameter names), writes
 * the backward pass at compile time, JIT-compiles forward and backward
 * together, initializes parameters as PyTorch does, and takes the step. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "lathe_compiler.h"
#include "lathe_models.h"

static void die(const char *what, const char *msg) {
    fprintf(stderr, "resnet18_step: %s: %s\n", what, msg);
    exit(1);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(void) {
    lathe_graph *g = lathe_graph_new();
    lathe_node *data = lathe_input(g, "data", LATHE_F32, LATHE_DIMS(1, 3, 64, 64));
    lathe_node *labels = lathe_input(g, "labels", LATHE_F32, LATHE_DIMS(1, 1000));
    lathe_resnet_config cfg = {LATHE_F32, 1000, 64, true};
    lathe_node *prediction = lathe_resnet18(g, data, &cfg);
    if (!prediction) die("tracing", lathe_graph_error(g));
    lathe_node *loss = lathe_sum(g, lathe_sub(g, prediction, labels), 0, NULL, false);
    lathe_output(g, "prediction", prediction);
    lathe_output(g, "loss", loss);
    if (lathe_backward(g, 1, &loss, NULL) != LATHE_OK) die("backward", lathe_graph_error(g));

    double t0 = now();
    lathe_program *p = lathe_compile(g, LATHE_BACKEND_JIT);
    if (!p) die("compile", lathe_graph_error(g));
    printf("compiled forward + backward in %.2f s, arena %.1f MiB\n", now() - t0,
           (double)lathe_program_arena_bytes(p) / 1048576);

    /* for name, param in model.named_parameters(): print(name, "->", param.requires_grad) */
    const lathe_rt_tensor *ts = lathe_program_tensors(p);
    int nparams = 0;
    for (int i = 0; i < lathe_program_num_tensors(p); i++)
        if (ts[i].kind == LATHE_RT_PARAM) {
            if (nparams < 8) printf("%s-> %s\n", ts[i].name, ts[i].requires_grad ? "True" : "False");
            nparams++;
        }
    printf("... %d parameters in all\n", nparams);

    lathe_program_init(p, 0);
    float *x = malloc(sizeof(float) * 3 * 64 * 64), y[1000];
    srand(1);
    for (int i = 0; i < 3 * 64 * 64; i++) x[i] = (float)rand() / (float)RAND_MAX; /* torch.rand */
    for (int i = 0; i < 1000; i++) y[i] = (float)rand() / (float)RAND_MAX;
    if (lathe_program_set(p, "data", x, sizeof(float) * 3 * 64 * 64) || lathe_program_set(p, "labels", y, sizeof y))
        die("set", lathe_program_error(p));
    free(x);

    lathe_optim_config sgd = lathe_sgd_config(1e-2, 0.9);
    lathe_optimizer *opt = lathe_program_optimizer(p, &sgd);
    if (!opt) die("optimizer", lathe_program_error(p));
    const lathe_rt_tensor *pt = lathe_rt_find(ts, lathe_program_num_tensors(p), "prediction");
    printf("prediction.shape: torch.Size([%lld, %lld])\n", (long long)pt->shape[0], (long long)pt->shape[1]);
    for (int step = 0; step < 3; step++) {
        double t = now();
        lathe_program_run(p); /* forward and backward */
        lathe_optim_step(opt);
        float l;
        lathe_program_get(p, "loss", &l, sizeof l);
        printf("step %d: loss %.4f (%.1f ms)\n", step, l, 1e3 * (now() - t));
    }
    lathe_optim_free(opt);
    lathe_program_free(p);
    lathe_graph_free(g);
    return 0;
}
