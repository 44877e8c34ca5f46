/* ir.h - Lathe's internal IR: node and graph layout, the op table, helpers
 * shared by the IR files (graph.c, infer.c, build.c, text.c, dot.c, verify.c,
 * eval.c) and used by compiler/ and the tests, which work inside nodes.  Not
 * installed; users see only lathe.h. */
#ifndef LATHE_IR_H
#define LATHE_IR_H

#include <stdarg.h>
#include <stdlib.h>

#include "lathe.h"
#include "ops.h"

/* Internal invariant failures (never a user's mistake) go through here. */
#define LT_ASSERT(c)                                                                     \
    do {                                                                                 \
        if (!(c)) lt_assert_fail(__FILE__, __LINE__, #c);                                \
    } while (0)
_Noreturn void lt_assert_fail(const char *file, int line, const char *cond);

/* ---- op table ---------------------------------------------------------- */

typedef enum {
#define X(e, name, lo, hi, kind, attrs) LT_OP_##e,
    LATHE_OP_LIST(X)
#undef X
    LT_OP_COUNT
} lt_op;

typedef enum { LT_LEAF, LT_UNARY, LT_BINARY, LT_COMPARE, LT_WHERE, LT_REDUCE, LT_SHAPE,
               LT_CONTRACT, LT_POOL, LT_NORM, LT_LOSS } lt_kind;

typedef struct {
    const char *name;
    int min_args, max_args; /* max -1: variadic */
    lt_kind kind;
    const char *schema;     /* "name:type ..." see ops.h */
} lt_opinfo;

extern const lt_opinfo lt_ops[LT_OP_COUNT];

/* ---- attributes -------------------------------------------------------- */

enum { LT_MAX_ATTRS = 5 };

typedef enum { LT_A_INT = 'i', LT_A_BOOL = 'b', LT_A_FLOAT = 'f', LT_A_LIST = 'l',
               LT_A_PAIR = 'p', LT_A_DTYPE = 't', LT_A_REDUCTION = 'r' } lt_atype;

/* One attribute value.  int/bool/dtype/reduction: v[0]; pair: v[0], v[1];
 * list: n and v[0..n); float: f. */
typedef struct {
    int n;
    int64_t v[LATHE_MAX_RANK];
    double f;
} lt_attr;

typedef struct {
    char name[24];
    lt_atype type;
} lt_attrspec;

/* Parse an op's schema; returns the attribute count (<= LT_MAX_ATTRS). */
int lt_op_schema(lt_op op, lt_attrspec spec[LT_MAX_ATTRS]);
/* For each node, which outputs it reaches (reach: nnodes bytes, zeroed by
 * the caller): bit 1 a plain output or a buffer update, bit 2 a gradient
 * output (LATHE_GRAD_PREFIX).  2 alone: the node is the backward pass. */
void lt_reach_outputs(const lathe_graph *g, unsigned char *reach);
/* An attribute's value as the text IR writes it ([1,2], 0.5, true, f32, mean). */
void lt_print_attr(FILE *out, lt_atype type, const lt_attr *a);
/* Op by text name; -1 if unknown. */
int lt_op_lookup(const char *name, size_t len);
const char *lt_reduction_name(int64_t r);

/* ---- nodes and graphs -------------------------------------------------- */

struct lathe_node {
    int id;                  /* index in g->nodes: operands always have smaller ids */
    lt_op op;
    lathe_dtype dtype;
    int rank;
    int64_t shape[LATHE_MAX_RANK];
    int64_t numel;
    int nin;
    lathe_node **in;
    lt_attr attr[LT_MAX_ATTRS];
    const char *name;        /* leaves: tensor name */
    bool requires_grad;      /* leaves: the user's flag; derived for others */
    bool no_grad;            /* built inside a no_grad region */
    lathe_leaf_init init;    /* params and buffers: lathe_set_init */
    double init_a;
    void *data;              /* const: numel elements of dtype */
    int line, col;           /* where the text defined it; 0 from the C API */
    lathe_graph *g;
};

typedef struct lt_chunk lt_chunk;

typedef struct {
    const char *name;
    lathe_node *node;
} lt_output;

typedef struct {
    lathe_node *buffer, *value;
} lt_update;

typedef struct {
    lathe_node *out, *cot;   /* cot NULL: an implied 1 */
} lt_mark;

struct lathe_graph {
    lt_chunk *arena;
    lathe_node **nodes;
    int nnodes, capnodes;
    lt_output *outputs;
    int nout, capout;
    lt_update *updates;
    int nupd, capupd;
    lt_mark *marks;          /* values to differentiate (lathe_mark_backward) */
    int nmarks, capmarks;
    lathe_status status;
    char err[1024];
    int no_grad_depth;
    int cur_line, cur_col;   /* location stamped on new nodes (parser) */
    const char *source;      /* the file a parser read the graph from (in the arena); NULL from the C API:
                              * later stages name file:line:col with the nodes' line and col */
};

/* Arena allocation owned by the graph; zeroed; NULL when out of memory. */
void *lt_alloc(lathe_graph *g, size_t size);
char *lt_strdup(lathe_graph *g, const char *s);

/* Record an error (the first one wins) and return NULL. */
void *lt_fail(lathe_graph *g, lathe_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
lathe_status lt_failv(lathe_graph *g, lathe_status st, const char *fmt, va_list ap);
/* Take the recorded error out of g (msg holds sizeof g->err bytes) and clear
 * it, so a parser can record it again with its location; the status
 * (LATHE_ERR_ARG if none was recorded). */
lathe_status lt_take_error(lathe_graph *g, char *msg);

/* "f32[2,3]" into buf. */
void lt_type_str(lathe_dtype t, int rank, const int64_t *shape, char *buf, size_t len);
/* Element count of a shape, or -1 when a dim is negative or it overflows the
 * limit LT_MAX_NUMEL. */
int64_t lt_numel(int rank, const int64_t *shape);
#define LT_MAX_NUMEL ((int64_t)1 << 48)

bool lt_is_float(lathe_dtype t);

/* Result type of an op, computed by infer.c.  attrs is normalized in place
 * (negative axes wrapped, -1 in reshape resolved, slice bounds clamped). */
typedef struct {
    lathe_dtype dtype;
    int rank;
    int64_t shape[LATHE_MAX_RANK];
} lt_type;

/* Check operands and attributes of op and compute its result type.  On error
 * records a message naming the op, the operand types and what was expected. */
lathe_status lt_infer(lathe_graph *g, lt_op op, int nin, lathe_node *const *in, lt_attr *attrs,
                      lt_type *out);

/* Make a non-leaf node: checks arity, NULL operands (sticky error), operand
 * graphs, then lt_infer.  attrs may be NULL for ops without attributes. */
lathe_node *lt_make(lathe_graph *g, lt_op op, int nin, lathe_node *const *in, const lt_attr *attrs);
/* Make a leaf node (input, param, buffer, const). */
lathe_node *lt_make_leaf(lathe_graph *g, lt_op op, const char *name, lathe_dtype dtype, int rank,
                         const int64_t *shape, bool requires_grad, const void *data);

/* requires_grad of every node, derived in one pass: out[id]. */
void lt_requires_grad_all(const lathe_graph *g, bool *out);

/* Strides of a contiguous row-major shape. */
void lt_strides(int rank, const int64_t *shape, int64_t *strides);

/* The source line of s (len bytes) around byte off, sanitized and cut to
 * fit cap bytes (with "..." where cut), and a caret line pointing at off:
 * the excerpt of every FILE:LINE:COL message (text.c, compiler/desc.c). */
void lt_show_line(const char *s, size_t len, size_t off, char *line, char *caret, size_t cap);

/* All of f, read to its end, in a buffer the caller frees; *len gets the byte
 * count.  NULL only when out of memory: a read error ends the read early and
 * leaves ferror(f) set, with errno saying why. */
char *lt_read_all(FILE *f, size_t *len);
/* The whole file at path in *buf (the caller frees it), for the parsers
 * (text.c, compiler/desc.c).  On failure *buf is NULL and g records
 * "PATH: reason": LATHE_ERR_IO, or LATHE_ERR_NOMEM ("PATH: out of memory"). */
lathe_status lt_read_file(lathe_graph *g, const char *path, char **buf, size_t *len);

#endif
