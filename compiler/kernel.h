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
#include "target.h"

typedef enum {
    X_CONST,   /* f (floats) or i (i64, bool) */
    X_VAR,     /* loop variable `var` (i64) */
    X_LOAD,    /* buffer `buf` at element index a (i64) */
    X_UN,      /* op(a): a unary lt_op (NEG, EXP, ..., CAST to t), its attributes in
                  f, f2 and i (POW_SCALAR's exponent and LEAKY_RELU's slope in f,
                  SOFTPLUS's beta and threshold and CLAMP's bounds in f and f2,
                  GELU's approximate in i) */
    X_BIN,     /* op(a, b): a binary lathe op or one of the index ops below */
    X_SELECT,  /* a ? b : c */
    X_REDUCE,  /* rk over vars[0..nvars) in [lo, hi) of body */
} lt_xkind;

/* Integer-only binary ops for index arithmetic (beyond ADD SUB MUL MIN MAX
 * which are shared with values). */
enum { XB_IDIV = LT_OP_COUNT + 1, XB_IMOD, XB_AND, XB_OR, XB_XOR, XB_SHR /* logical */ };

/* R_ARGMAX: flat index over the reduction vars of the first maximum, a NaN
 * counting as the maximum and the first NaN winning (torch.argmax).
 * R_ARGMAX_POOL: PyTorch's max-pool rule, `v > best || isnan(v)`, so the last
 * NaN wins. */
typedef enum { R_SUM, R_MAX, R_MIN, R_ARGMAX, R_ARGMAX_POOL } lt_rkind; /* arg-max kinds last */

/* Loops of one reduction: at most one per axis of a tensor (a sum over all
 * of them); convolutions and windows use 3. */
enum { LT_MAX_REDUCE_VARS = LATHE_MAX_RANK };

typedef struct lt_expr lt_expr;
struct lt_expr {
    lt_xkind kind;
    lathe_dtype t;       /* result type; index arithmetic is i64 */
    int op;
    int id;              /* unique per program (codegen memo) */
    double f, f2;
    int64_t i;
    int var, buf;
    bool ident;          /* X_LOAD: index is the kernel's own element index */
    lt_expr *a, *b, *c;
    lt_rkind rk;
    int nvars;
    int vars[LT_MAX_REDUCE_VARS];
    lt_expr *lo[LT_MAX_REDUCE_VARS], *hi[LT_MAX_REDUCE_VARS];
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

/* ---- contractions ------------------------------------------------------------
 *
 * A kernel whose value is a contraction (matmul, conv2d and its two
 * gradients), a max-pool (and its gradient) or a scatter-add
 * (index_select_backward, without an epilogue) at the kernel's own element,
 * possibly under an elementwise epilogue (bias, activation, residual, ...),
 * also gets a plan for the vector lowering (lower_tiles.c): its operands as
 * strided views of buffers, and a register tile sized for the target's
 * vector unit (contract.c, from target.h's tile_bytes).  Its parallel
 * range then counts tiles instead of leading elements; each output element
 * is computed by one tile, in an order that does not depend on the split.
 * The expression tree stays complete: lifetimes and the dumps read it, and
 * the epilogue is lowered from it. */

/* Element (i0, i1, ...) of an operand is element off + sum_d i_d * st[d] of
 * buffer buf. */
typedef struct {
    int buf;
    int64_t off;
    int64_t st[LATHE_MAX_RANK];
} lt_view;

/* Limits of a register tile: contract.c chooses tiles within them and
 * lower_tiles.c sizes its arrays by them. */
enum {
    LT_TILE_MAX_DIM = 8,    /* tm and tn */
    LT_TILE_MAX_ACC = 32,   /* tm * tn accumulators: AVX-512's vector registers */
    LT_TILE_MAX_LANES = 16, /* vl: a 64-byte vector of f32 */
};

typedef enum {
    LT_C_PLANE,    /* conv2d or its input gradient: out (N, KO, OH, OW), lanes over the output plane */
    LT_C_WGRAD,    /* conv2d's weight gradient: out (K, Cg, R, S), lanes over the gradient's planes */
    LT_C_MM_BCAST, /* matmul with b's columns contiguous: lanes over the output columns */
    LT_C_MM_DOT,   /* matmul with a's rows and b's columns contiguous along k: lanes over k */
    LT_C_POOL,     /* max_pool2d: out (N, C, P, Q), lanes over the output plane */
    LT_C_POOL_BWD, /* max_pool2d_backward: out (N, C, H, W), each window's arg-max found once */
    LT_C_SCATTER,  /* index_select_backward: gy's rows added into out at the rows the index names, in order */
} lt_ckind;

typedef struct {
    lt_ckind kind;
    const lt_expr *red;   /* the reduction in the kernel's value that the tile computes */
    lt_view a, b;         /* PLANE: x (or gy) and w; WGRAD: x and gy; matmul: a and b; pools: x and gy */
    int64_t range;        /* tiles */
    int vl;               /* lanes of a vector of the target's tile_bytes (64 with AVX-512, else 32) */
    int tm, tn;           /* register tile: PLANE channels x vectors, WGRAD k x c, BCAST rows x vectors,
                           * DOT rows x columns, POOL 1 x vectors */
    /* convolutions (and pools, as one group of kog = C channels, taps the
     * window): channels per group, output and reduced; planes; taps.  An
     * output position oh reads input row ih where ih*dv = oh*mu + beta + r*dbeta
     * (forward: mu = stride, dv = 1, beta = -pad, dbeta = dil; input gradient:
     * mu = 1, dv = stride, beta = pad, dbeta = -dil); likewise for columns. */
    int64_t n, groups, kog, cr, oh, ow, ih, iw, taps[2];
    int64_t mu[2], dv[2], beta[2], dbeta[2];
    bool bwd;             /* PLANE: the input gradient (weights indexed [k, c] the other way round) */
    bool contiguous;      /* convolutions and pools: a lane's input is the lane's output position
                           * plus a per-tap constant, so lanes load as one masked vector, the
                           * masks a constant table (else: gathers) */
    bool deint;           /* stride 2 along columns (WGRAD; PLANE forward, rows of a vector or more):
                           * lanes over a row of the output (the gradient's) plane, the input's
                           * columns loaded as two vectors and de-interleaved (else: gathers) */
    bool n_inner;         /* PLANE: tiles take images innermost (a tile's block of weights is larger
                           * than its image's input, so consecutive tiles share weights), else
                           * channel blocks (consecutive tiles share an image) */
    bool phase;           /* PLANE, input gradient with a stride: the output is taken in its
                           * dv[0] x dv[1] phases (rows oh = dv*i + a), each a plane the size of
                           * the gradient's, so a phase's taps read the gradient contiguously
                           * (per tap a constant shift, masks in a table) and skip the taps
                           * that do not reach it; the results are scattered to the output */
    /* matmul: out (batch..., m, n); strides of a over (batch..., m, k) and b over (batch..., k, n) */
    int nbatch;
    int64_t batch[LATHE_MAX_RANK], a_bst[LATHE_MAX_RANK], b_bst[LATHE_MAX_RANK];
    int64_t m, ncol, k, am, ak, bk, bn;
    /* MM_BCAST in cache blocks (kc > 0): a tile is mc rows by tn vectors of
     * columns, its reduction in panels of kc, each panel of b packed into a
     * dense scratch that every tm-row register tile of the block reuses from
     * L1, the block's partial sums in a scratch between panels */
    int64_t mc, kc;
    /* matmul, unblocked: the operand the tile reuses (MM_BCAST: b's columns,
     * MM_DOT: a's rows) is the same for every batch, so tiles take batches
     * before moving on, reading it from the cache */
    bool batch_inner;
    /* SCATTER: out (pre, rows, post) row-major; gy (view a) is (pre dims,
     * index dims, post dims) with shape gshape, the pre dims the first npre,
     * the index's (view b) the next nidx, the post dims dense (one run of
     * post elements); a tile is one pre index and a block of tn vectors of
     * post: it zeroes the block in every row, then adds gy's block at each
     * index element j, in order, to the row index[j] holds.  A thread owns
     * its blocks whole, so every sum is in index order whatever the thread
     * count, with no atomics. */
    int npre, nidx;
    int64_t gshape[LATHE_MAX_RANK], rows, post;
} lt_contract;

enum { LT_MAX_SEGS = 8 };

typedef struct {
    int buf;             /* the buffer written */
    int rank;
    int64_t shape[LATHE_MAX_RANK];
    int outer;           /* dims [0, outer) are flattened into the parallel range */
    int64_t range;       /* product of those dims (1 for rank 0); with a plan (con), its tiles */
    lt_expr *value;      /* element value; loop var d is output dim d */
    int *nodes;          /* graph nodes fused into this kernel, in order */
    int nnodes;
    int nvars;           /* loop variables used (output dims + reductions) */
    lt_contract *con;    /* the vector plan of a contraction kernel (owned), or NULL */
    /* Pieces (fuse.c): dim seg_dim's range [0, shape[seg_dim]) cut at
     * seg_lo[1..nseg-1] (seg_lo[0] = 0, seg_lo[nseg] = the dim), piece s
     * computing segv[s], value specialized to that range: the conditions of a
     * concatenation decided, the divisions of a reshape folded.  nseg 0: no
     * pieces, value everywhere.  The space may also split the value's last
     * dim in two (rank one more than the buffer's): [.., n] as [.., n/K, K]
     * when the value divides its index by K, so K contiguous elements share
     * their quotient. */
    int nseg, seg_dim;
    int64_t seg_lo[LT_MAX_SEGS + 1];
    lt_expr *segv[LT_MAX_SEGS];
    /* an all_gather across processes (nodes[0]): the runtime's communication
     * step (lathe_rt_gather), not code; value only reads the operand's buffer
     * (its first element), for the plan.  It starts here and must be complete
     * before kernel wait, the first that reads its result (lt_plan_kernels;
     * nk: none does), and its operand lives until then. */
    bool gather;
    int wait;
} lt_kernel;

typedef struct lt_xchunk lt_xchunk;

/* A fused program: the decomposed graph, its buffers and kernels in order. */
typedef struct {
    lathe_graph *g;      /* decomposed, simplified graph the kernels come from (not owned) */
    const lt_target *target; /* the CPU the tiles are sized for (not owned) */
    lt_kbuf *bufs;
    int nbufs;
    int *buf_of;         /* node id -> buffer, -1 when inlined */
    lt_kernel *ks;
    int nk;
    lt_buf *plan;        /* per buffer: lifetime and offset (lt_plan_kernels) */
    int64_t arena_size;
    lt_xchunk *arena;
    int nexpr;
    int nvars;
} lt_fused;

/* contract.c: the vector plan of contraction n (matmul, conv2d, its input
 * or weight gradient: lt_plan_contraction; max_pool2d or its gradient:
 * lt_plan_pool) whose value at idx, in the kernel of graph node root being
 * built by fuse.c, is the reduction red; NULL when the kernel keeps the
 * scalar lowering (n not at the kernel's own element, operands that are not
 * strided views of buffers, shapes the tiles do not cover) or out of
 * memory.  The caller owns the plan. */
lt_contract *lt_plan_contraction(const lt_fused *f, int root, const lathe_node *n, lt_expr **idx, const lt_expr *red);
lt_contract *lt_plan_pool(const lt_fused *f, int root, const lathe_node *n, lt_expr **idx, const lt_expr *red);
/* contract.c: the scatter plan of index_select_backward n, the kernel's
 * root, whose value is the reduction red; NULL when its operands are not
 * views of buffers with dense rows (lt_is_row_view) or out of memory. */
lt_contract *lt_plan_scatter(const lt_fused *f, int root, const lathe_node *n, const lt_expr *red);
/* Whether graph node n is a strided view of a buffer (a buffer itself, or
 * index ops over one, as a contraction's plan reads its operands), given
 * the buffers fusion has decided so far. */
bool lt_is_view(const lt_fused *f, const lathe_node *n);
/* Whether graph node n is such a view whose dims from `from` on are dense
 * and row-major, as a scatter plan reads its gradient's rows. */
bool lt_is_row_view(const lt_fused *f, const lathe_node *n, int from);
/* Floating-point operations of contraction node n (a multiply and an add
 * each per term of its sums: matmul, conv2d and its two gradients); 0 for
 * other ops.  For benchmarks' GFLOP/s. */
double lt_node_flops(const lathe_node *n);

/* Fuse g (the decomposed graph, which the caller keeps and which must outlive
 * the result) into kernels, their register tiles sized for target.  procs >
 * 1: g is one process's part of a data-parallel program (shard.h), whose
 * kernels must compute as the one-process program's do: choices that
 * depend on how many rows a product has count the whole batch's.  Returns
 * NULL only when out of memory; errors are recorded in g. */
lt_fused *lt_fuse(lathe_graph *g, const lt_target *target, int procs);
/* fuse.c: seen[b] set for every buffer b that e loads. */
void lt_expr_loads(const lt_expr *e, bool *seen);
/* plan.c: every buffer's lifetime from the kernels that write and read it,
 * in-place reuse where a kernel reads a buffer for the last time only at its
 * own element, and the arena offsets (lt_plan).  Errors are recorded in f->g. */
lathe_status lt_plan_kernels(lt_fused *f);
void lt_fused_free(lt_fused *f);
/* --stage fused and --stage plan */
void lt_fused_print(FILE *out, const lt_fused *f);
void lt_fused_print_plan(FILE *out, const lt_fused *f);

/* decompose.c: composite ops into primitives (a new graph). */
lathe_graph *lt_decompose(const lathe_graph *g);

#endif
