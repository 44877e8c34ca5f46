/* testutil.h - shared test helpers and the op sample table.
 *
 * The sample table is Lathe's OpInfo: for every op, one or more small graphs
 * that use it, built through the public tracing API.  Tests that must cover
 * every op iterate over it: shapes, text round trip and DOT, evaluator
 * agreement, autodiff (gradient checks), simplification and the JIT; and
 * test_every_op_has_a_sample fails when an op is added without one. */
#ifndef LATHE_TESTUTIL_H
#define LATHE_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "ir.h"
#include "safetensors.h"

typedef struct {
    const char *label;  /* "conv2d/stride2-groups2" */
    lt_op op;           /* the op this sample is about */
    /* Builds the sample into g (inputs, params, buffers, consts) and returns
     * its result; the caller marks it as output "y". */
    lathe_node *(*build)(lathe_graph *g, lathe_dtype t);
} sample;

extern const sample samples[];
extern const int nsamples;

/* Build sample s in a fresh graph of float dtype t, with output "y".  Fails the
 * test on any graph error. */
lathe_graph *sample_graph(const sample *s, lathe_dtype t);

/* Deterministic pseudo-random doubles in [lo, hi) (xorshift64*). */
typedef struct {
    uint64_t s;
} rng;
double rng_uniform(rng *r, double lo, double hi);

/* Fills every input/param/buffer leaf of ev's graph with values suited to it:
 * i64 labels in range, bool masks, positive values for running_var, and
 * floats in [-1, 1) otherwise (or [0.5, 2) where the name ends in "pos"). */
void bind_random(lathe_eval *ev, lathe_graph *g, uint64_t seed);

/* Assert helpers that print the graph error on failure. */
#define assert_graph_ok(g)                                                               \
    do {                                                                                 \
        if (lathe_graph_status(g) != LATHE_OK) fail_msg("graph error: %s", lathe_graph_error(g)); \
    } while (0)

/* Element i of a buffer of dtype t, as a double. */
double elem_at(lathe_dtype t, const void *p, int64_t i);

/* The PyTorch ResNet fixture (tests/fixtures/resnet_w4.safetensors, under
 * $LATHE_SRC): its path, and the file read (the test fails if it cannot be). */
const char *resnet_fixture_path(void);
lathe_st_file *resnet_fixture(void);
/* $LATHE_SRC/rel (static buffer), and tests/fixtures/name read. */
const char *src_path(const char *rel);
lathe_st_file *read_fixture(const char *name);

#endif
