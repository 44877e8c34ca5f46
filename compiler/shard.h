/* shard.h - batch reductions as ordered sums of per-shard partials, and
 * one process's part of a data-parallel program (docs/INTERNALS.md).
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

/* What to make of a graph traced at the global batch. */
typedef struct {
    int shards;        /* S: every batch reduction an ordered sum of S partials */
    int procs;         /* P (dividing S): the copy is one process's program, for
                        * B/P samples: batch inputs and every value along the
                        * batch hold its S/P shards, and each sum gathers the
                        * partials of all P (all_gather along the shard axis)
                        * before adding them in shard order.  1: the whole batch */
    bool local_stats;  /* a batch reduction whose result is used by per-sample
                        * values or a buffer's update (batch norm's statistics,
                        * their gradients, its running statistics) sums this
                        * process's partials alone, times P: the mean over its
                        * own samples (PyTorch DDP's batch norm; the processes'
                        * buffers then differ, and a trainer keeps rank 0's);
                        * false: over the global batch (SyncBatchNorm) */
} lt_shard_opts;

/* A copy of g with its batch reductions sharded as o says.  batch_input[id]
 * marks g's per-sample inputs (batch.h).  The partials' node ids in the
 * copy, in node order, go to partial[0 .. *npartial) (at most cap).  NULL,
 * with a message in err, when a value cannot be sharded, S does not divide
 * the batch or P does not divide S, a reshape would exceed LATHE_MAX_RANK,
 * or (P > 1) the graph takes a max, min or arg-max over the batch or a
 * dropout over it (its mask would need this process's first sample). */
lathe_graph *lt_shard(const lathe_graph *g, const bool *batch_input, const lt_shard_opts *o, int *partial, int cap,
                      int *npartial, char *err, size_t errlen);

#endif
