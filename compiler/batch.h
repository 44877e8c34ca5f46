/* batch.h - which axis of each value runs over the batch (the groundwork of
 * data-parallel training, docs/INTERNALS.md's plan for issue 15).
 *
 * Data parallelism gives each process a contiguous range of the samples of
 * a global batch.  That is only possible for values whose samples are a
 * range of one axis: axis `axis` of a value is batch-major with block
 * `inner` when index i along it belongs to sample i / inner (an input's
 * leading axis: inner 1; its reshape [N*T, D]: inner T).  A value is
 *   LT_BATCH_NONE  independent of the batch (parameters, constants), or the
 *                  result of a reduction over it (the same on every process
 *                  once the reduction's partial sums are combined);
 *   LT_BATCH_AXIS  batch-major along `axis`, block `inner`;
 *   LT_BATCH_MIXED depends on the samples in some other way (the batch
 *                  axis split inside a sample, concatenated along, or merged
 *                  under another axis): it cannot be sharded.
 * A node whose operands are batch-major and whose value is not is a batch
 * reduction: a sum, mean, max or min over the batch axis, a matmul that
 * contracts it (a weight gradient), a convolution's weight gradient, an
 * embedding gradient's scatter over tokens.  Those are where sharded
 * programs communicate.  Internal to compiler/. */
#ifndef LATHE_BATCH_H
#define LATHE_BATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "ir.h"

typedef enum { LT_BATCH_NONE, LT_BATCH_AXIS, LT_BATCH_MIXED } lt_batch_kind;

typedef struct {
    lt_batch_kind kind;
    int axis;       /* LT_BATCH_AXIS: the axis */
    int64_t inner;  /* LT_BATCH_AXIS: consecutive indices along it per sample */
    bool reduces;   /* the node is a batch reduction (its value is NONE) */
    bool indexed;   /* a dropout over a batch-major value: its mask hashes each element's
                     * index, which a process holding a range of samples must offset */
} lt_batch;

/* The batch state of every node of g (out[id], g->nnodes entries), given
 * which nodes are per-sample inputs (batch_input[id]: the node's axis 0 is
 * the batch, one sample per index).  Returns the number of MIXED nodes
 * (0: every value can be sharded), or -1 when g is in error. */
int lt_batch_axes(const lathe_graph *g, const bool *batch_input, lt_batch *out);

#endif
