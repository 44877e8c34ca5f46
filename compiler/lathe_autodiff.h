/* lathe_autodiff.h - Lathe's passes on IR graphs: reverse-mode autodiff at
 * compile time (autodiff.c) and simplification (simplify.c).  Includes
 * lathe.h.
 *
 * Worked example (the seed's Q.backward(gradient=external_grad)):
 *
 *     lathe_node *ext = lathe_const(g, LATHE_F32, LATHE_DIMS(2), (float[]){1, 1});
 *     lathe_backward(g, 1, &q, &ext);          // appends the backward pass as IR
 *     lathe_node *ga = lathe_grad(g, a);       // output "grad.a": 9 a^2
 *     lathe_graph *opt = lathe_simplify(g);    // DCE, CSE, folding, algebra
 *
 * The backward pass is ordinary IR: it prints, parses, evaluates, and can be
 * differentiated again (second order) with lathe_gradients. */
#ifndef LATHE_AUTODIFF_H
#define LATHE_AUTODIFF_H

#include "lathe.h"

#ifdef __cplusplus
extern "C" {
#endif

/* LATHE_GRAD_PREFIX (lathe.h): the gradient of parameter "fc.weight" is the
 * output "grad.fc.weight". */

/* torch.autograd.grad: append to g the nodes computing the vector-Jacobian
 * product sum_i <outs[i], cots[i]> differentiated with respect to each
 * wrt[j]; grads[j] receives the gradient node, or NULL when wrt[j] does not
 * require grad or no path leads to it.  cots may be NULL, or have NULL
 * entries, for outputs with one element (the cotangent is then 1).  Only
 * values that require grad get gradient nodes: frozen parameters and
 * everything that depends only on them or on constants cost nothing.  A value
 * used several times gets the sum of its gradients.  An op without a rule is
 * an error naming it.  Returns the status; errors are recorded in g. */
lathe_status lathe_gradients(lathe_graph *g, int nout, lathe_node *const *outs,
                             lathe_node *const *cots, int nwrt, lathe_node *const *wrt,
                             lathe_node **grads);

/* loss.backward() / Q.backward(gradient=cot): gradients for every input and
 * parameter that requires grad, added as outputs named LATHE_GRAD_PREFIX +
 * name.  Leaves with no path from the outputs get no gradient output (as
 * PyTorch leaves .grad None).  cots as in lathe_gradients. */
lathe_status lathe_backward(lathe_graph *g, int nout, lathe_node *const *outs,
                            lathe_node *const *cots);

/* lathe_backward on the values marked with lathe_mark_backward (a text file's
 * `backward` statements), then forget the marks.  LATHE_ERR_ARG when there
 * are none. */
lathe_status lathe_backward_marked(lathe_graph *g);

/* The gradient output recorded by lathe_backward for an input or param; NULL
 * if it has none. */
lathe_node *lathe_grad(const lathe_graph *g, const lathe_node *leaf);
/* The index of that output (lathe_graph_output), or -1.  Passes that copy a
 * graph (lathe_simplify, the compiler's) keep the outputs in order, so the
 * index also finds the gradient in their copies. */
int lathe_grad_output(const lathe_graph *g, const lathe_node *leaf);

/* Simplified copy of g: dead-code elimination (nodes that reach no output or
 * update; named leaves are kept), common-subexpression elimination, constant
 * folding, and algebraic identities (x*1, x+0, x-0, x/1, double negation and
 * transpose, reshapes of reshapes, no-op reshapes, permutes and broadcasts,
 * sums of broadcasts).  Never changes a result: identities that could change
 * NaN or infinity (x*0) are applied only to constants.  The verifier runs on
 * the result.  Returns NULL only when out of memory; an error is recorded in
 * the returned graph. */
lathe_graph *lathe_simplify(const lathe_graph *g);

#ifdef __cplusplus
}
#endif
#endif
