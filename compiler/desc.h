/* desc.h - the description parser's internals, shared by its two files:
 * desc.c (tokens, values, statements, block calls) and desc_builtins.c (the
 * table of built-in functions and layers, and their handlers).  Internal to
 * those two files; users see lathe_desc.h. */
#ifndef LATHE_DESC_INTERNAL_H
#define LATHE_DESC_INTERNAL_H

#include <string.h>

#include "ir.h"
#include "lathe_desc.h"

enum { MAX_ARGS = 16, MAX_CALLS = 32, MAX_TOTAL_CALLS = 10000, MAX_NEST = 100, NAME_CAP = 256,
       MAX_LOOP_ITERS = 100000 };

/* ---- built-in functions ------------------------------------------------------------ */

/* id, name, parameters.  "name=default": a default that is not a number, true,
 * false or a dtype ("stride=kernel") means "absent, computed by the function".
 * The layers (they create parameters and need `as NAME`) come last. */
#define BUILTINS(X)                                                                                \
    X(RELU, "relu", "x")                                                                           \
    X(SIGMOID, "sigmoid", "x")                                                                     \
    X(TANH, "tanh", "x")                                                                           \
    X(EXP, "exp", "x")                                                                             \
    X(LOG, "log", "x")                                                                             \
    X(SQRT, "sqrt", "x")                                                                           \
    X(RSQRT, "rsqrt", "x")                                                                         \
    X(ABS, "abs", "x")                                                                             \
    X(NEG, "neg", "x")                                                                             \
    X(ERF, "erf", "x")                                                                             \
    X(SILU, "silu", "x")                                                                           \
    X(GELU, "gelu", "x approximate=none")                                                          \
    X(SOFTPLUS, "softplus", "x beta=1 threshold=20")                                               \
    X(LEAKY_RELU, "leaky_relu", "x negative_slope=0.01")                                           \
    X(CLAMP, "clamp", "x min=none max=none")                                                       \
    X(SOFTMAX, "softmax", "x axis")                                                                \
    X(LOG_SOFTMAX, "log_softmax", "x axis")                                                        \
    X(MAX_POOL2D, "max_pool2d", "x kernel stride=kernel padding=0")                                \
    X(AVG_POOL2D, "avg_pool2d", "x kernel stride=kernel padding=0 count_include_pad=true")         \
    X(ADAPTIVE_AVG_POOL2D, "adaptive_avg_pool2d", "x h w=h")                                       \
    X(FLATTEN, "flatten", "x start=1 end=-1")                                                      \
    X(RESHAPE, "reshape", "x shape")                                                               \
    X(PERMUTE, "permute", "x dims")                                                                \
    X(TRANSPOSE, "transpose", "x dim0 dim1")                                                       \
    X(BROADCAST_TO, "broadcast_to", "x shape")                                                     \
    X(SLICE, "slice", "x axis start end=end step=1")                                               \
    X(CONCAT, "concat", "xs axis=0")                                                               \
    X(SUM, "sum", "x axes=all keepdim=false axis=none")                                            \
    X(MEAN, "mean", "x axes=all keepdim=false axis=none")                                          \
    X(MAX, "max", "x axes=all keepdim=false axis=none")                                            \
    X(MIN, "min", "x axes=all keepdim=false axis=none")                                            \
    X(ARGMAX, "argmax", "x axis keepdim=false")                                                    \
    X(MATMUL, "matmul", "a b")                                                                     \
    X(MAXIMUM, "maximum", "a b")                                                                   \
    X(MINIMUM, "minimum", "a b")                                                                   \
    X(POW, "pow", "x exponent")                                                                    \
    X(WHERE, "where", "cond a b")                                                                  \
    X(CAST, "cast", "x dtype")                                                                     \
    X(TENSOR, "tensor", "values dtype=f32")                                                        \
    X(CROSS_ENTROPY, "cross_entropy", "logits labels reduction=mean ignore_index=-100 label_smoothing=0") \
    X(NLL_LOSS, "nll_loss", "log_probs labels reduction=mean ignore_index=-100")                  \
    X(MSE_LOSS, "mse_loss", "input target reduction=mean")                                         \
    X(DROPOUT, "dropout", "x p=0.5")                                                                \
    X(CHANNELS, "channels", "x")                                                                   \
    X(SHAPE, "shape", "x axis")                                                                    \
    X(RANK, "rank", "x")                                                                           \
    X(INDEX_SELECT, "index_select", "x axis index")                                                \
    X(ARANGE, "arange", "start end=none step=1 dtype=i64")                                         \
    X(ZEROS, "zeros", "shape dtype=f32")                                                           \
    X(ONES, "ones", "shape dtype=f32")                                                             \
    X(FULL, "full", "shape value dtype=f32")                                                       \
    X(TRIL, "tril", "x diagonal=0")                                                                \
    X(TRIU, "triu", "x diagonal=0")                                                                \
    X(CAUSAL_MASK, "causal_mask", "T")                                                             \
    X(MASKED_FILL, "masked_fill", "x mask value")                                                  \
    X(CONV2D, "conv2d", "x out_channels kernel stride=1 padding=0 dilation=1 groups=1 bias=true")  \
    X(CONV1D, "conv1d", "x out_channels kernel stride=1 padding=0 dilation=1 groups=1 bias=true")  \
    X(LINEAR, "linear", "x out_features bias=true")                                                \
    X(BATCH_NORM, "batch_norm", "x eps=1e-5 momentum=0.1")                                          \
    X(EMBEDDING, "embedding", "x num_embeddings embedding_dim dtype=f32")                          \
    X(LAYER_NORM, "layer_norm", "x normalized_shape eps=1e-5 elementwise_affine=true bias=true")

typedef enum {
#define X(e, name, params) B_##e,
    BUILTINS(X)
#undef X
    B_COUNT
} builtin;

typedef struct {
    const char *name, *params;
} builtin_spec;

/* desc_builtins.c: the name and parameters of each built-in */
extern const builtin_spec desc_builtins[B_COUNT];

static inline bool is_layer(builtin b) { return b >= B_CONV2D; }

/* ---- types ------------------------------------------------------------------------ */

typedef struct {
    size_t off;     /* byte offset in the source */
    int line, col;  /* 1-based; col counts bytes */
} loc;

typedef enum { T_EOF, T_NL, T_IDENT, T_NUM, T_PUNCT, T_STR } tkind;
enum { P_POW = 256, P_FLOORDIV, P_EQ, P_NE, P_LE, P_GE, P_DOTDOT };  /* two-character punctuation */

typedef struct {
    tkind kind;
    int op;         /* T_PUNCT: the character or a P_ code */
    loc at;
    const char *s;
    size_t len;
} token;

/* Where the tokenizer is; saved and restored around block calls. */
typedef struct {
    size_t pos, line_start;
    int line;
    int depth;      /* open ( and [: inside them a newline is a space */
    token tok;      /* the current token */
} lexer;

typedef enum { V_NONE, V_NUM, V_TENSOR, V_LIST, V_DTYPE, V_STR } vkind;

typedef struct {
    vkind k;
    double num;        /* V_NUM (true and false are 1 and 0) */
    lathe_node *t;     /* V_TENSOR */
    int first, n;      /* V_LIST: p->items[first .. first + n) */
    lathe_dtype dtype; /* V_DTYPE */
    const char *s;     /* V_STR: the characters between the quotes (no escapes), in the source */
    size_t len;
    loc at;            /* where the expression starts */
} value;

typedef struct {
    const char *s;
    size_t len;
    value v;
    bool constant;     /* let and batch */
    loc at;
} var;

typedef struct {
    const char *s;     /* parameter name */
    size_t len;
    bool required;
    value def;         /* V_NONE: none, or computed by the function */
    const char *deftext;
    size_t deflen;
} pspec;

typedef struct {
    const char *s;
    size_t len;
    loc open;          /* the body's '{' */
    int nparams;
    pspec params[MAX_ARGS];
    lexer body;        /* just after the '{' */
} blockdef;

/* One call being bound: the callee's parameters and the arguments given. */
typedef struct {
    const char *fn;
    int fnlen;
    loc at;            /* the function's name */
    const char *as;    /* `as NAME`, NULL if none; points at asbuf */
    size_t aslen;
    loc asat;
    char asbuf[NAME_CAP]; /* the name with its {EXPR} parts filled in */
    int n;
    pspec ps[MAX_ARGS];
    value v[MAX_ARGS]; /* bound arguments or defaults */
    bool set[MAX_ARGS];
} call;

typedef struct {
    const char *s;
    size_t len;
    double v;
    bool used;
} define;

typedef struct {
    int block;
    loc at;
    const char *as;    /* NULL: called without `as` */
    size_t aslen;
} callframe;

typedef struct {
    lathe_graph *g;
    const char *file, *src;
    size_t len;
    lexer lx;
    bool training;
    int64_t batch_opt;
    lathe_desc_info info;
    var *vars;
    int nvars, capvars;
    int base, gend;          /* the running frame's first variable; end of the globals */
    value *items;            /* list elements; only appended to */
    int nitems, capitems;
    blockdef *blocks;
    int nblocks, capblocks;
    callframe calls[MAX_CALLS]; /* the running block calls, for messages */
    int ncalls, totalcalls;
    int64_t loopiters;       /* for-loop iterations run so far */
    int skip;                /* > 0: read without running */
    bool returned;           /* the running block has executed `return` */
    value ret;
    bool in_def;             /* reading a block's definition */
    int nest, braces;
    char prefix[NAME_CAP];   /* parameter-name prefix: "" or "layer2.1." */
    define *defs;
    int ndefs;
    bool have_model, have_batch, have_loss;
} parser;

static inline bool same(const char *a, size_t la, const char *b, size_t lb) {
    return la == lb && memcmp(a, b, la) == 0;
}

/* ---- desc.c: what the built-in functions use ---------------------------------------------- */

/* Record "FILE:LINE:COL: message", the line, a caret and the block calls that
 * led there; returns false. */
bool desc_err(parser *p, lathe_status st, loc at, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Move an error a builder recorded to the call's location; returns false. */
bool desc_relocate(parser *p, loc at);
/* "FILE: out of memory"; returns false. */
bool desc_oom(parser *p);
/* "the number 3", "a tensor f32[2,3]", "a list of 2", ... for messages. */
const char *desc_kind_str(const value *v, char *buf, size_t cap);
/* An integer that doubles hold exactly. */
bool desc_integral(double d, int64_t *out);
/* *out = the tensor n, or the builder's error moved to at. */
bool desc_built(parser *p, loc at, lathe_node *n, value *out);
/* Nodes remember where they were made. */
void desc_stamp(parser *p, loc at);
/* Two operands as tensors: a number becomes a scalar of the other's dtype. */
bool desc_operands(parser *p, loc at, const char *what, const value *a, const value *b, lathe_node **x,
                   lathe_node **y);
/* a = a OP b; op is a punctuation code, or 'a' / 'o' for and / or. */
bool desc_binop(parser *p, int op, loc at, value *a, const value *b);
/* A layer or block called again under its name shares its parameters: the
 * param (or buffer) `name` made by an earlier call, in *out (NULL when there
 * is none yet); false, with an error at `at` naming both types, when it has
 * another type.  fn: the layer's name for the message, NULL for a block's
 * param statement. */
bool desc_shared_leaf(parser *p, const char *name, bool buffer, lathe_dtype t, int rank, const int64_t *shape, loc at,
                      const char *fn, int fnlen, lathe_node **out);
/* The name of a layer's tensor: prefix, the `as` name, '.', suffix. */
bool desc_leaf_name(parser *p, const char *as, size_t aslen, loc at, const char *suffix, char *buf);

/* ---- desc_builtins.c: the built-in functions ---------------------------------------------- */

/* Built-in by name; -1 if none. */
int desc_find_builtin(const char *s, size_t len);
/* Parameters of built-in b from its spec string, into c. */
void desc_builtin_params(builtin b, call *c);
/* Run built-in b on the bound arguments. */
bool desc_call_builtin(parser *p, builtin b, const call *c, value *out);
/* The loss of built-in b (cross_entropy, nll_loss or mse_loss) on the bound
 * call c.  per_element: reduction none whatever c says (a `loss`
 * statement's evaluation program), and for the class losses *weight is 1
 * where an element counts, 0 where its label is ignore_index (else NULL). */
bool desc_call_loss(parser *p, builtin b, const call *c, bool per_element, value *out, lathe_node **weight);
/* Argument i of c as a tensor, or an error naming the argument. */
bool desc_arg_tensor(parser *p, const call *c, int i, lathe_node **out);
/* A constant of type t and shape from v: a number (every element) or a list
 * of numel numbers (integers for i64).  what names v in messages. */
bool desc_make_const(parser *p, const value *v, lathe_dtype t, int rank, const int64_t *shape, const char *what,
                     lathe_node **out);

#endif
