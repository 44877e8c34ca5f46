/* kernel.h - fused kernels: the compiler's loop-level IR.
 *
 * A kernel computes one materialized graph value: a loop nest over the
 * value's elements, and at each element an expression tree of scalar ops,
 * loads from buffers at computed indices, and reductions (inner loops with
 * an accumulator).  Fusion (fuse.c) decides which graph values get a buffer
 * and inlines the rest into the expressions of their consumers; lowering
 * (lower_llvm.c) turns each kernel into one LLVM function
 *
 *     void kernel(uint8_t *arena, int64_t begin, int64_t end)
 *
 * that computes the elements whose leading ("outer") flattened index lies
 * in [begin, end), so the runtime can split a kernel across threads.  Every
 * element is computed by exactly one thread in a fixed order, so results do
 * not depend on the thread count. */
#ifndef LATHE_KERNEL_H
#define LATHE_KERNEL_H

#include <stdio.h>

#include "ir.h"
#include "plan.h"

typedef enum {
    X_CONST,   /* f (floats) or i (i64, bool) */
    X_VAR,     /* loop variable `var` (i64) */
    X_LOAD,    /* buffer `buf` at element index a (i64) */
    X_UN,      /* op(a): a unary lt_op (NEG, EXP, ..., POW_SCALAR with f, CAST to t) */
    X_BIN,     /* op(a, b): a binary lathe op or one of the index ops below */
    X_SELECT,  /* a ? b : c */
    X_REDUCE,  /* rk over vars[0..nvars) in [lo, hi) of body */
} lt_xkind;

/* Integer-only binary ops for index arithmetic (beyond ADD SUB MUL MIN MAX
 * which are shared with values). */
enum { XB_IDIV = LT_OP_COUNT + 1, XB_IMOD, XB_AND, XB_OR };

/* R_ARGMAX: flat index over the reduction vars of the first maximum, a NaN
 * counting as the maximum and the first NaN winning (torch.argmax).
 * R_ARGMAX_POOL: PyTorch's max-pool rule, `v > best || isnan(v)`, so the last
 * NaN wins. */
typedef enum { R_SUM, R_MAX, R_ARGMAX, R_ARGMAX_POOL } lt_rkind;

typedef struct lt_expr lt_expr;
struct lt_expr {
    lt_xkind kind;
    lathe_dtype t;       /* result type; index arithmetic is i64 */
    int op;
    int id;              /* unique per program (codegen memo) */
    double f;
    int64_t i;
    int var, buf;
    bool ident;          /* X_LOAD: index is the kernel's own element index */
    lt_expr *a, *b, *c;
    lt_rkind rk;
    int nvars;
    int vars[8];
    lt_expr *lo[8], *hi[8];
    lt_expr *body;
};

typedef enum { B_INPUT, B_PARAM, B_BUFFER, B_CONST, B_TEMP } lt_bkind;

typedef struct {
    lt_bkind kind;
    lathe_dtype dtype;
    int rank;
    int64_t shape[LATHE_MAX_RANK];
    int64_t numel;
    int node;            /* node id in the kernel graph */
    const char *name;    /* leaves; NULL for temps */
    const void *data;    /* consts */
} lt_kbuf;

typedef struct {
    int buf;             /* the buffer written */
    int rank;
    int64_t shape[LATHE_MAX_RANK];
    int outer;           /* dims [0, outer) are flattened into the parallel range */
    int64_t range;       /* product of those dims (1 for rank 0) */
    lt_expr *value;      /* element value; loop var d is output dim d */
    int *nodes;          /* graph nodes fused into this kernel, in order */
    int nnodes;
    int nvars;           /* loop variables used (output dims + reductions) */
} lt_kernel;

typedef struct lt_xchunk lt_xchunk;

/* A fused program: the decomposed graph, its buffers and kernels in order. */
typedef struct {
    lathe_graph *g;      /* decomposed, simplified graph the kernels come from (owned) */
    lt_kbuf *bufs;
    int nbufs;
    int *buf_of;         /* node id -> buffer, -1 when inlined */
    lt_kernel *ks;
    int nk;
    lt_buf *plan;        /* per buffer: lifetime and offset */
    int64_t arena_size;
    lt_xchunk *arena;
    int nexpr;
    int nvars;
} lt_fused;

/* Fuse g (which the caller keeps) into kernels and plan their memory.
 * Returns NULL only when out of memory; errors go to *err (a graph status
 * recorded in the returned program's graph). */
lt_fused *lt_fuse(const lathe_graph *g);
void lt_fused_free(lt_fused *f);
/* --stage fused and --stage plan */
void lt_fused_print(FILE *out, const lt_fused *f);
void lt_fused_print_plan(FILE *out, const lt_fused *f);

/* decompose.c: composite ops into primitives (a new graph). */
lathe_graph *lt_decompose(const lathe_graph *g);

#endif
