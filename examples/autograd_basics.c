/* autograd_basics.c - the autograd tutorial's "Differentiation in Autograd"
 * and "Exclusion from the DAG" sections, compiled ahead of time by Lathe.
 *
 * PyTorch:
 *     a = torch.tensor([2., 3.], requires_grad=True)
 *     b = torch.tensor([6., 4.], requires_grad=True)
 *     Q = 3*a**3 - b**2
 *     external_grad = torch.tensor([1., 1.])
 *     Q.backward(gradient=external_grad)
 *     print(9*a**2 == a.grad)          # tensor([True, True])
 *     print(-2*b == b.grad)            # tensor([True, True])
 *
 * Lathe traces Q into an IR graph, writes its backward pass as IR before
 * anything runs (a vector-Jacobian product with the external gradient),
 * simplifies it, and runs it with the reference evaluator.  The checks
 * 9a^2 == a.grad and -2b == b.grad are ops in the same graph. */
#include <stdio.h>
#include <stdlib.h>

#include "lathe_compiler.h"

static void die(const char *what, const char *msg) {
    fprintf(stderr, "autograd_basics: %s: %s\n", what, msg);
    exit(1);
}

static void print_bools(const char *label, const double *v, int n) {
    printf("%s tensor([", label);
    for (int i = 0; i < n; i++) printf("%s%s", i ? ", " : "", v[i] != 0 ? "True" : "False");
    printf("])\n");
}

static const char *yes(bool b) { return b ? "True" : "False"; }

int main(void) {
    lathe_graph *g = lathe_graph_new();
    if (!g) die("graph", "out of memory");

    /* a = torch.tensor([2., 3.], requires_grad=True), likewise b */
    lathe_node *a = lathe_input(g, "a", LATHE_F32, LATHE_DIMS(2));
    lathe_node *b = lathe_input(g, "b", LATHE_F32, LATHE_DIMS(2));
    lathe_set_requires_grad(a, true);
    lathe_set_requires_grad(b, true);

    /* Q = 3*a**3 - b**2 */
    lathe_node *a3 = lathe_pow_scalar(g, a, 3);
    lathe_node *t = lathe_mul(g, lathe_scalar(g, LATHE_F32, 3), a3);
    lathe_node *b2 = lathe_pow_scalar(g, b, 2);
    lathe_node *q = lathe_sub(g, t, b2);
    lathe_output(g, "Q", q);

    /* Q.backward(gradient=external_grad) */
    lathe_node *ext = lathe_input(g, "external_grad", LATHE_F32, LATHE_DIMS(2));
    lathe_backward(g, 1, &q, &ext);
    lathe_node *ga = lathe_grad(g, a), *gb = lathe_grad(g, b);

    /* 9*a**2 == a.grad and -2*b == b.grad, as ops on the gradients */
    lathe_node *ca = lathe_eq(g, lathe_mul(g, lathe_scalar(g, LATHE_F32, 9), lathe_pow_scalar(g, a, 2)), ga);
    lathe_node *cb = lathe_eq(g, lathe_mul(g, lathe_scalar(g, LATHE_F32, -2), b), gb);
    lathe_output(g, "check_a", ca);
    lathe_output(g, "check_b", cb);
    if (lathe_graph_status(g) != LATHE_OK) die("tracing", lathe_graph_error(g));

    lathe_graph *opt = lathe_simplify(g);
    if (!opt || lathe_graph_status(opt) != LATHE_OK) die("simplify", opt ? lathe_graph_error(opt) : "out of memory");
    printf("# Q = 3*a**3 - b**2 and its backward pass, as Lathe IR (simplified)\n");
    lathe_graph_print(opt, stdout);

    lathe_eval *ev = lathe_eval_new(opt);
    if (!ev) die("evaluator", lathe_graph_error(opt));
    const float av[2] = {2, 3}, bv[2] = {6, 4}, one[2] = {1, 1};
    if (lathe_eval_set(ev, "a", av, sizeof av) || lathe_eval_set(ev, "b", bv, sizeof bv) ||
        lathe_eval_set(ev, "external_grad", one, sizeof one) || lathe_eval_run(ev))
        die("evaluation", lathe_eval_error(ev));
    const double *qv = lathe_eval_value(ev, lathe_graph_find_output(opt, "Q"));
    const double *gav = lathe_eval_value(ev, lathe_graph_find_output(opt, "grad.a"));
    const double *gbv = lathe_eval_value(ev, lathe_graph_find_output(opt, "grad.b"));
    printf("\nQ = [%g, %g]\n", qv[0], qv[1]);
    printf("a.grad = [%g, %g]\nb.grad = [%g, %g]\n", gav[0], gav[1], gbv[0], gbv[1]);
    print_bools("9*a**2 == a.grad:", lathe_eval_value(ev, lathe_graph_find_output(opt, "check_a")), 2);
    print_bools("-2*b == b.grad:  ", lathe_eval_value(ev, lathe_graph_find_output(opt, "check_b")), 2);
    lathe_eval_free(ev);
    lathe_graph_free(opt);
    lathe_graph_free(g);

    /* Exclusion from the DAG: requires_grad propagates from any operand. */
    lathe_graph *h = lathe_graph_new();
    lathe_node *x = lathe_input(h, "x", LATHE_F32, LATHE_DIMS(5, 5));
    lathe_node *y = lathe_input(h, "y", LATHE_F32, LATHE_DIMS(5, 5));
    lathe_node *z = lathe_input(h, "z", LATHE_F32, LATHE_DIMS(5, 5));
    lathe_set_requires_grad(z, true);
    printf("\nDoes `a` require gradients? : %s\n", yes(lathe_requires_grad(lathe_add(h, x, y))));
    printf("Does `b` require gradients?: %s\n", yes(lathe_requires_grad(lathe_add(h, x, z))));
    /* with torch.no_grad(): c = x + z */
    lathe_no_grad_begin(h);
    lathe_node *c = lathe_add(h, x, z);
    lathe_no_grad_end(h);
    printf("Inside no_grad, does `x + z` require gradients?: %s\n", yes(lathe_requires_grad(c)));
    if (lathe_graph_status(h) != LATHE_OK) die("tracing", lathe_graph_error(h));
    lathe_graph_free(h);
    return 0;
}
