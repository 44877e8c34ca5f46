/* consumer.c - Lathe from a C project of its own, built only with
 * `pkg-config lathe` (Makefile beside it): one SGD step of a linear model,
 * numbers small enough to check by hand.
 *
 *   loss = (w . x - t)^2, w = [1, 2], x = [3, 4], t = 10
 *   w . x = 11, so loss = 1 and grad.w = 2 (w . x - t) x = [6, 8];
 *   SGD with lr 0.1: w = [1 - 0.6, 2 - 0.8] = [0.4, 1.2], then w . x = 6
 *   and loss = (6 - 10)^2 = 16. */
#include <stdio.h>

#include <lathe_compiler.h>

int main(void) {
    lathe_graph *g = lathe_graph_new();
    lathe_node *w = lathe_param(g, "w", LATHE_F32, LATHE_DIMS(2), true);
    lathe_node *x = lathe_input(g, "x", LATHE_F32, LATHE_DIMS(2));
    lathe_node *t = lathe_input(g, "t", LATHE_F32, 0, NULL);
    lathe_node *r = lathe_sub(g, lathe_sum(g, lathe_mul(g, w, x), LATHE_AXES(0), false), t);
    lathe_node *loss = lathe_mul(g, r, r);
    lathe_output(g, "loss", loss);
    lathe_backward(g, 1, &loss, NULL);                 /* adds the output grad.w */
    lathe_program *p = lathe_compile(g, LATHE_BACKEND_JIT);
    if (!p) {
        fprintf(stderr, "consumer: %s\n", lathe_graph_error(g));
        lathe_graph_free(g);
        return 1;
    }
    lathe_optim_config sgd = lathe_sgd_config(0.1, 0);
    lathe_optimizer *opt = lathe_program_optimizer(p, &sgd);
    lathe_program_set(p, "w", (float[]){1, 2}, 2 * sizeof(float));
    lathe_program_set(p, "x", (float[]){3, 4}, 2 * sizeof(float));
    lathe_program_set(p, "t", (float[]){10}, sizeof(float));
    float l, gw[2], wn[2];
    lathe_program_run(p);                              /* forward and backward */
    lathe_program_get(p, "loss", &l, sizeof l);
    lathe_program_get(p, "grad.w", gw, sizeof gw);
    printf("loss %g grad.w %g %g\n", l, gw[0], gw[1]);
    lathe_optim_step(opt);
    lathe_program_run(p);
    lathe_program_get(p, "w", wn, sizeof wn);
    lathe_program_get(p, "loss", &l, sizeof l);
    printf("after one SGD step: w %g %g loss %g\n", wn[0], wn[1], l);
    lathe_optim_free(opt);
    lathe_program_free(p);
    lathe_graph_free(g);
    return 0;
}
