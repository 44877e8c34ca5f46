/* autograd_basics.c - the seed's autograd example, traced with Lathe.
 *
 * PyTorch:
 *     a = torch.tensor([2., 3.], requires_grad=True)
 *     b = torch.tensor([6., 4.], requires_grad=True)
 *     Q = 3*a**3 - b**2
 *
 * Lathe traces the same computation into an IR graph, prints the graph, and
 * runs it with the reference evaluator.  (Gradients arrive with autodiff.) */
#include <stdio.h>
#include <stdlib.h>

#include "lathe.h"

static void die(const char *what, const char *msg) {
    fprintf(stderr, "autograd_basics: %s: %s\n", what, msg);
    exit(1);
}

int main(void) {
    lathe_graph *g = lathe_graph_new();
    if (!g) die("graph", "out of memory");
    lathe_node *a = lathe_input(g, "a", LATHE_F32, LATHE_DIMS(2));
    lathe_node *b = lathe_input(g, "b", LATHE_F32, LATHE_DIMS(2));
    lathe_set_requires_grad(a, true);
    lathe_set_requires_grad(b, true);
    lathe_node *three = lathe_scalar(g, LATHE_F32, 3);
    lathe_node *q = lathe_sub(g, lathe_mul(g, three, lathe_pow_scalar(g, a, 3)), lathe_pow_scalar(g, b, 2));
    lathe_output(g, "Q", q);
    if (lathe_graph_status(g) != LATHE_OK) die("tracing", lathe_graph_error(g));

    printf("# Q = 3*a**3 - b**2, traced into Lathe's IR\n");
    lathe_graph_print(g, stdout);
    printf("\nQ.requires_grad: %s\n", lathe_requires_grad(q) ? "True" : "False");

    lathe_eval *ev = lathe_eval_new(g);
    if (!ev) die("evaluator", lathe_graph_error(g));
    const float av[2] = {2, 3}, bv[2] = {6, 4};
    float qv[2];
    if (lathe_eval_set(ev, "a", av, sizeof av) || lathe_eval_set(ev, "b", bv, sizeof bv) ||
        lathe_eval_run(ev) || lathe_eval_get(ev, q, qv, sizeof qv))
        die("evaluation", lathe_eval_error(ev));
    printf("a = [%g, %g]\nb = [%g, %g]\nQ = [%g, %g]\n", av[0], av[1], bv[0], bv[1], qv[0], qv[1]);
    lathe_eval_free(ev);
    lathe_graph_free(g);
    return 0;
}
