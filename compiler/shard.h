/* shard.h - batch reductions as ordered sums of per-shard partials (the
 * second step of data-parallel training, docs/INTERNALS.md; not yet in the
 * pipeline).
 *
 * The batch is S shards of B/S samples.  Every batch reduction of a
 * decomposed graph (batch.h) -- a sum over the batch axis, a matmul that
 * contracts it, a convolution's weight gradient, an embedding gradient's
 * scatter -- becomes S partials, each over one shard, then their sum over
 * the shard axis.  A program for B/P samples (S/P shards) computes the same
 * partials as the program for B with the same kernels, so once the partials
 * are gathered every process can add them in the same order and get the
 * bits of one process.  Max, min and arg-max over the batch are left alone:
 * their result does not depend on the order.  Internal to compiler/. */
#ifndef LATHE_SHARD_H
#define LATHE_SHARD_H

#include <stdbool.h>
#include <stddef.h>

#include "ir.h"

/* A copy of g with its batch reductions sharded into S.  batch_input[id]
 * marks g's per-sample inputs (batch.h).  The partials' node ids in the
 * copy, in node order, go to partial[0 .. *npartial) (at most cap).  NULL,
 * with a message in err, when a value cannot be sharded, S does not divide
 * the batch, or a reshape would exceed LATHE_MAX_RANK. */
lathe_graph *lt_shard(const lathe_graph *g, const bool *batch_input, int S, int *partial, int cap, int *npartial,
                      char *err, size_t errlen);

#endif
