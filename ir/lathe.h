/* lathe.h - Lathe's public IR and tracing API.
 *
 * Lathe is a static computation-graph compiler for training neural networks.
 * A model is traced into an IR graph by calling one function per op; each
 * call checks shapes and dtypes at once.  The graph can be verified, printed
 * as text that parses back, drawn as Graphviz DOT, and run by the reference
 * evaluator.
 *
 * Worked example: the seed's Q = 3a^3 - b^2.
 *
 *     lathe_graph *g = lathe_graph_new();
 *     lathe_node *a = lathe_input(g, "a", LATHE_F32, LATHE_DIMS(2));
 *     lathe_node *b = lathe_input(g, "b", LATHE_F32, LATHE_DIMS(2));
 *     lathe_set_requires_grad(a, true);
 *     lathe_set_requires_grad(b, true);
 *     lathe_node *q = lathe_sub(g,
 *         lathe_mul(g, lathe_scalar(g, LATHE_F32, 3), lathe_pow_scalar(g, a, 3)),
 *         lathe_pow_scalar(g, b, 2));
 *     lathe_output(g, "Q", q);
 *     if (lathe_graph_status(g) != LATHE_OK) {
 *         fprintf(stderr, "%s\n", lathe_graph_error(g));   // names op and shapes
 *         ...
 *     }
 *     lathe_graph_print(g, stdout);                        // text IR
 *
 *     lathe_eval *ev = lathe_eval_new(g);
 *     lathe_eval_set(ev, "a", (float[]){2, 3}, sizeof(float[2]));
 *     lathe_eval_set(ev, "b", (float[]){6, 4}, sizeof(float[2]));
 *     lathe_eval_run(ev);
 *     float out[2];
 *     lathe_eval_get(ev, q, out, sizeof out);              // {-12, 65}
 *     lathe_eval_free(ev);
 *     lathe_graph_free(g);                                 // frees every node
 *
 * Errors.  Builders never abort or exit.  On a bad call a builder returns NULL
 * and records the first error in the graph: lathe_graph_status() and
 * lathe_graph_error() read it.  The error is sticky: a builder given a NULL
 * operand returns NULL without overwriting it, so a whole model can be traced
 * and checked once at the end.  lathe_graph_clear_error() resets it.
 *
 * Ownership.  A graph owns all its nodes (one arena); lathe_graph_free frees
 * them at once.  Node pointers stay valid until then.  Strings and arrays
 * passed in are copied.  Buffers returned by *_to_text are malloc'd and the
 * caller frees them with free().
 *
 * Conventions.  Shapes are (rank, const int64_t *dims); LATHE_DIMS(2, 3)
 * expands to both.  Axes may be negative (counted from the end, as in
 * PyTorch) and are stored normalized.  Broadcasting follows NumPy.  Operands
 * of a binary op must have the same dtype (no implicit promotion: use
 * lathe_cast).
 */
#ifndef LATHE_H
#define LATHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- types ------------------------------------------------------------ */

typedef enum { LATHE_F32, LATHE_F64, LATHE_I64, LATHE_BOOL } lathe_dtype;
enum { LATHE_MAX_RANK = 6 };

/* Status codes returned by library calls.  LATHE_OK is 0. */
typedef enum {
    LATHE_OK = 0,
    LATHE_ERR_SHAPE,    /* shapes do not fit the op */
    LATHE_ERR_DTYPE,    /* dtype not allowed or operands differ */
    LATHE_ERR_ARG,      /* bad attribute or argument (axis, stride, ...) */
    LATHE_ERR_NAME,     /* undefined, duplicate or missing name */
    LATHE_ERR_PARSE,    /* text input is malformed */
    LATHE_ERR_CYCLE,    /* the text defines a cycle */
    LATHE_ERR_VERIFY,   /* graph invariant broken */
    LATHE_ERR_IO,       /* file could not be read or written */
    LATHE_ERR_NOMEM,    /* out of memory */
    LATHE_ERR_UNSUPPORTED
} lathe_status;

typedef enum { LATHE_REDUCE_NONE, LATHE_REDUCE_MEAN, LATHE_REDUCE_SUM } lathe_reduction;

typedef struct lathe_graph lathe_graph;   /* owns every node */
typedef struct lathe_node lathe_node;     /* one value in the graph */

/* Rank and dims in one go: lathe_input(g, "x", LATHE_F32, LATHE_DIMS(5, 5)). */
#define LATHE_DIMS(...) \
    (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}
/* Count and list in one go, for axes: lathe_sum(g, x, LATHE_AXES(0, 2), false). */
#define LATHE_AXES(...) LATHE_DIMS(__VA_ARGS__)

/* Name of a dtype ("f32", "f64", "i64", "bool") and of a status. */
const char *lathe_dtype_name(lathe_dtype t);
const char *lathe_status_name(lathe_status s);
/* Size in bytes of one element (bool is one byte, C's bool). */
size_t lathe_dtype_size(lathe_dtype t);

/* ---- graphs ----------------------------------------------------------- */

/* New empty graph; NULL only when out of memory.  Free with lathe_graph_free. */
lathe_graph *lathe_graph_new(void);
/* Frees the graph and every node in it.  NULL is allowed. */
void lathe_graph_free(lathe_graph *g);
/* The first error recorded since creation or the last clear; LATHE_OK if none. */
lathe_status lathe_graph_status(const lathe_graph *g);
/* Message of that error, naming the op, shapes and location; "" if none. */
const char *lathe_graph_error(const lathe_graph *g);
/* Forget the recorded error so tracing can go on. */
void lathe_graph_clear_error(lathe_graph *g);
/* Check every invariant (operand order, shapes, dtypes, names, outputs,
 * updates).  Returns LATHE_OK or records and returns the error. */
lathe_status lathe_graph_verify(lathe_graph *g);

/* ---- leaves ----------------------------------------------------------- */

/* A graph input, fed at run time.  Inputs do not require grad unless
 * lathe_set_requires_grad says so (like torch.tensor(..., requires_grad=True)).
 * Names are unique among inputs, params and buffers. */
lathe_node *lathe_input(lathe_graph *g, const char *name, lathe_dtype dtype, int rank,
                        const int64_t *shape);
/* A trainable parameter with a dotted state_dict name such as
 * "layer1.0.conv1.weight".  requires_grad false freezes it.  Integer and bool
 * parameters cannot require grad. */
lathe_node *lathe_param(lathe_graph *g, const char *name, lathe_dtype dtype, int rank,
                        const int64_t *shape, bool requires_grad);
/* Non-trainable state such as batch-norm running statistics. */
lathe_node *lathe_buffer(lathe_graph *g, const char *name, lathe_dtype dtype, int rank,
                         const int64_t *shape);
/* A constant tensor; data holds numel elements of dtype and is copied. */
lathe_node *lathe_const(lathe_graph *g, lathe_dtype dtype, int rank, const int64_t *shape,
                        const void *data);
/* A rank-0 constant (converted to dtype; bool is v != 0). */
lathe_node *lathe_scalar(lathe_graph *g, lathe_dtype dtype, double v);

/* Set requires_grad on an input or parameter (the seed's requires_grad=True,
 * or freezing: param.requires_grad = False).  Values computed from it see the
 * change, since requires_grad of non-leaves is derived, not stored. */
lathe_status lathe_set_requires_grad(lathe_node *leaf, bool requires_grad);
/* Freeze (false) or unfreeze (true) every parameter whose name starts with
 * prefix ("" for all; "layer4." for a stage; "fc." for the classifier).
 * Returns how many parameters matched. */
int lathe_set_requires_grad_prefix(lathe_graph *g, const char *prefix, bool requires_grad);
/* How lathe_program_init (and a trainer) fills a param or buffer.  AUTO, the
 * default, follows PyTorch's layer defaults from the op that uses it
 * (kaiming-uniform conv/linear weights, uniform(+-1/sqrt(fan_in)) biases,
 * batch norm's 1, 0, running mean 0, running var 1, layer norm's 1, 0, an
 * embedding's normal(0, 1)); UNIFORM draws from uniform(-a, a); CONST sets every element to a;
 * NORMAL draws from a normal distribution of mean 0 and standard deviation
 * a (a >= 0, as UNIFORM's bound); SEED (an i64 buffer: a generator state)
 * puts the run's seed in element 0 and zeros after it. */
typedef enum {
    LATHE_LEAF_INIT_AUTO,
    LATHE_LEAF_INIT_UNIFORM,
    LATHE_LEAF_INIT_CONST,
    LATHE_LEAF_INIT_NORMAL,
    LATHE_LEAF_INIT_SEED
} lathe_leaf_init;
lathe_status lathe_set_init(lathe_node *leaf, lathe_leaf_init kind, double a);
/* The initializer that param or buffer leaf gets: UNIFORM, CONST, NORMAL or
 * SEED, with the bound, value or standard deviation in *a.  lathe_set_init's
 * when one was set; for AUTO, PyTorch's default for the first op that uses
 * it: a conv2d or linear weight or bias draws from uniform(-1/sqrt(fan_in),
 * 1/sqrt(fan_in)) (for weights, what kaiming-uniform with a = sqrt(5)
 * gives); batch norm's weight and running_var are 1, its bias and
 * running_mean 0; layer norm's weight is 1 and its bias 0; the table an index_select picks rows from (an
 * embedding's weight) draws from normal(0, 1), as torch.nn.Embedding's;
 * dropout's generator state is SEED; a param of rank 2 or more used another
 * way is treated as a linear weight; anything else is 0.  The runtime draws
 * the values (lathe_rt_init). */
lathe_leaf_init lathe_leaf_init_of(const lathe_graph *g, const lathe_node *leaf, double *a);
/* The values integer input `input` may take when it holds indices: the
 * smallest count C of the rows it picks among - the classes of the
 * cross_entropy and nll_loss targets it is, the axis of the index_select
 * (and index_select_backward) index it is - reached directly or through
 * reshapes, flattens, permutes, slices and broadcasts, so every value must
 * lie in [0, C); 0 when it reaches none.  Every path that runs a program
 * checks its inputs against this (lathe_rt_check_indices). */
int64_t lathe_index_limit(const lathe_graph *g, const lathe_node *input);
/* The value outside [0, C) that the losses reading input all ignore (their
 * ignore_index: labels equal to it count for nothing), or INT64_MIN when
 * they do not agree on one or an index_select reads it too. */
int64_t lathe_index_ignore(const lathe_graph *g, const lathe_node *input);
/* PyTorch's x.requires_grad: true for a leaf marked so, and for a value of
 * floating dtype with an operand that requires grad, unless it was built in a
 * no_grad region or is a comparison, argmax or integer result. */
bool lathe_requires_grad(const lathe_node *n);
/* torch.no_grad(): values built between begin and end are constants for
 * autodiff.  Regions nest. */
void lathe_no_grad_begin(lathe_graph *g);
void lathe_no_grad_end(lathe_graph *g);

/* ---- elementwise (NumPy broadcasting) ---------------------------------- */

lathe_node *lathe_add(lathe_graph *g, lathe_node *a, lathe_node *b);
lathe_node *lathe_sub(lathe_graph *g, lathe_node *a, lathe_node *b);
lathe_node *lathe_mul(lathe_graph *g, lathe_node *a, lathe_node *b);
/* Floating dtypes only (true division). */
lathe_node *lathe_div(lathe_graph *g, lathe_node *a, lathe_node *b);
/* a ** b with a tensor exponent; floating dtypes only. */
lathe_node *lathe_pow(lathe_graph *g, lathe_node *a, lathe_node *b);
/* x ** exponent with a scalar exponent; floating dtypes only. */
lathe_node *lathe_pow_scalar(lathe_graph *g, lathe_node *x, double exponent);
/* Elementwise max/min; NaN in either operand gives NaN (torch.maximum). */
lathe_node *lathe_maximum(lathe_graph *g, lathe_node *a, lathe_node *b);
lathe_node *lathe_minimum(lathe_graph *g, lathe_node *a, lathe_node *b);
/* Comparisons give bool. */
lathe_node *lathe_gt(lathe_graph *g, lathe_node *a, lathe_node *b);
lathe_node *lathe_ge(lathe_graph *g, lathe_node *a, lathe_node *b);
lathe_node *lathe_lt(lathe_graph *g, lathe_node *a, lathe_node *b);
lathe_node *lathe_le(lathe_graph *g, lathe_node *a, lathe_node *b);
lathe_node *lathe_eq(lathe_graph *g, lathe_node *a, lathe_node *b);
lathe_node *lathe_ne(lathe_graph *g, lathe_node *a, lathe_node *b);
/* cond ? a : b; cond is bool, a and b share a dtype; all three broadcast. */
lathe_node *lathe_where(lathe_graph *g, lathe_node *cond, lathe_node *a, lathe_node *b);
lathe_node *lathe_neg(lathe_graph *g, lathe_node *x);
lathe_node *lathe_abs(lathe_graph *g, lathe_node *x);
/* relu keeps NaN, as PyTorch does. */
lathe_node *lathe_relu(lathe_graph *g, lathe_node *x);
/* Floating dtypes only: */
lathe_node *lathe_exp(lathe_graph *g, lathe_node *x);
lathe_node *lathe_log(lathe_graph *g, lathe_node *x);
lathe_node *lathe_sqrt(lathe_graph *g, lathe_node *x);
lathe_node *lathe_rsqrt(lathe_graph *g, lathe_node *x);
lathe_node *lathe_sigmoid(lathe_graph *g, lathe_node *x);
lathe_node *lathe_tanh(lathe_graph *g, lathe_node *x);
/* The error function, 2/sqrt(pi) times the integral of exp(-t^2) from 0 to x. */
lathe_node *lathe_erf(lathe_graph *g, lathe_node *x);
/* Activations with PyTorch's semantics (torch.nn.functional): gelu is
 * x Phi(x) = 0.5 x (1 + erf(x/sqrt 2)), or with approximate its tanh form
 * 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); silu is x sigmoid(x);
 * softplus is log(1 + exp(beta x)) / beta, or x where beta x > threshold
 * (PyTorch's defaults: beta 1, threshold 20; beta finite and nonzero);
 * leaky_relu is x for x > 0, else negative_slope x (default 0.01). */
lathe_node *lathe_gelu(lathe_graph *g, lathe_node *x, bool approximate);
lathe_node *lathe_silu(lathe_graph *g, lathe_node *x);
lathe_node *lathe_softplus(lathe_graph *g, lathe_node *x, double beta, double threshold);
lathe_node *lathe_leaky_relu(lathe_graph *g, lathe_node *x, double negative_slope);
/* min(max(x, min), max), as torch.clamp: -INFINITY or INFINITY for no
 * bound; min > max gives max everywhere; NaN stays NaN.  Its gradient is
 * 1 where min <= x <= max, else 0. */
lathe_node *lathe_clamp(lathe_graph *g, lathe_node *x, double min, double max);
/* Convert between dtypes (float to int truncates toward zero; to bool is != 0). */
lathe_node *lathe_cast(lathe_graph *g, lathe_node *x, lathe_dtype dtype);

/* ---- reductions --------------------------------------------------------- */

/* Reduce over naxes axes (naxes 0 means every axis).  keepdim keeps them as
 * size 1.  Duplicate axes are an error.  sum works on f32/f64/i64; mean on
 * floating dtypes; max and min need a non-empty reduced extent (NaN wins in
 * both, as torch.amax and torch.amin; +0 counts as above -0, as IEEE 754's
 * maximum and minimum, so the result does not depend on the order). */
lathe_node *lathe_sum(lathe_graph *g, lathe_node *x, int naxes, const int64_t *axes, bool keepdim);
lathe_node *lathe_mean(lathe_graph *g, lathe_node *x, int naxes, const int64_t *axes, bool keepdim);
lathe_node *lathe_max(lathe_graph *g, lathe_node *x, int naxes, const int64_t *axes, bool keepdim);
lathe_node *lathe_min(lathe_graph *g, lathe_node *x, int naxes, const int64_t *axes, bool keepdim);
/* Index (i64) of the first maximum along axis. */
lathe_node *lathe_argmax(lathe_graph *g, lathe_node *x, int64_t axis, bool keepdim);

/* ---- shape ops ------------------------------------------------------------ */

/* New shape with the same element count; one dim may be -1 (inferred). */
lathe_node *lathe_reshape(lathe_graph *g, lathe_node *x, int rank, const int64_t *shape);
/* Merge dims start..end (inclusive) into one, as torch.flatten. */
lathe_node *lathe_flatten(lathe_graph *g, lathe_node *x, int64_t start, int64_t end);
/* Reorder dims: output dim i is input dim perm[i]; n must equal the rank. */
lathe_node *lathe_permute(lathe_graph *g, lathe_node *x, int n, const int64_t *perm);
/* Swap two dims (a permute). */
lathe_node *lathe_transpose(lathe_graph *g, lathe_node *x, int64_t dim0, int64_t dim1);
/* Broadcast to a shape, as torch.Tensor.expand / numpy.broadcast_to. */
lathe_node *lathe_broadcast_to(lathe_graph *g, lathe_node *x, int rank, const int64_t *shape);
/* Join n tensors along axis; other dims and dtypes must agree. */
lathe_node *lathe_concat(lathe_graph *g, int n, lathe_node *const *xs, int64_t axis);
/* x[start:end:step] along axis, with Python's rules for negative and
 * out-of-range bounds; step >= 1. */
lathe_node *lathe_slice(lathe_graph *g, lathe_node *x, int64_t axis, int64_t start, int64_t end,
                        int64_t step);
/* Rows of x along axis picked by index, an i64 tensor of any shape:
 * x (A..., n, B...), index (I...) -> (A..., I..., B...), as jnp.take and a
 * generalized torch.index_select; an embedding lookup is
 * lathe_index_select(g, weight, 0, tokens).  Every index must lie in
 * [0, n): a constant is checked here, an input on every run
 * (lathe_index_limit), and the evaluator refuses one out of range (one
 * computed in the graph, compiled code clamps into [0, n)).  The gradient
 * adds each row of the cotangent back where it came from. */
lathe_node *lathe_index_select(lathe_graph *g, lathe_node *x, int64_t axis, lathe_node *index);
/* Data-parallel communication: the values x of `parts` processes (ranks
 * 0..parts-1) joined along axis in rank order, every process getting the
 * whole: x's shape with dim axis times parts; x of rank >= 1, any dtype,
 * 1 <= parts <= INT_MAX.  The data-parallel pass places gathers in a
 * program, and a program with parts > 1 runs its gathers through the
 * runtime's lathe_rt_comm (runtime/lathe_runtime.h).  The evaluator is a
 * world of one process: parts 1 is the identity, more is an error of
 * lathe_eval_run.  The gradient of parts 1 is the cotangent; with more,
 * autodiff refuses: data-parallel programs gather after differentiation. */
lathe_node *lathe_all_gather(lathe_graph *g, lathe_node *x, int axis, int parts);

/* ---- contractions ----------------------------------------------------------- */

/* a (..., M, K) @ b (..., K, N) -> (..., M, N); both rank >= 2, batch dims
 * broadcast. Floating dtypes. */
lathe_node *lathe_matmul(lathe_graph *g, lathe_node *a, lathe_node *b);
/* x (..., in) . w (out, in)^T + bias (out); bias may be NULL. */
lathe_node *lathe_linear(lathe_graph *g, lathe_node *x, lathe_node *w, lathe_node *bias);
/* x (N, C, H, W) * w (K, C/groups, R, S) + bias (K) -> (N, K, P, Q), as
 * torch.nn.functional.conv2d; bias may be NULL; stride and dilation >= 1,
 * padding >= 0, groups divides C and K. */
lathe_node *lathe_conv2d(lathe_graph *g, lathe_node *x, lathe_node *w, lathe_node *bias,
                         int64_t stride, int64_t padding, int64_t dilation, int64_t groups);
/* The same with separate (height, width) values. */
lathe_node *lathe_conv2d_hw(lathe_graph *g, lathe_node *x, lathe_node *w, lathe_node *bias,
                            const int64_t stride[2], const int64_t padding[2],
                            const int64_t dilation[2], int64_t groups);

/* ---- pooling (x is N, C, H, W; floor mode; padding <= kernel/2) --------------- */

/* Max over each window; padding counts as -inf. */
lathe_node *lathe_max_pool2d(lathe_graph *g, lathe_node *x, int64_t kernel, int64_t stride,
                             int64_t padding);
lathe_node *lathe_max_pool2d_hw(lathe_graph *g, lathe_node *x, const int64_t kernel[2],
                                const int64_t stride[2], const int64_t padding[2]);
/* Mean over each window; count_include_pad as in PyTorch (default true). */
lathe_node *lathe_avg_pool2d(lathe_graph *g, lathe_node *x, int64_t kernel, int64_t stride,
                             int64_t padding, bool count_include_pad);
lathe_node *lathe_avg_pool2d_hw(lathe_graph *g, lathe_node *x, const int64_t kernel[2],
                                const int64_t stride[2], const int64_t padding[2],
                                bool count_include_pad);
/* Output (N, C, out_h, out_w) with PyTorch's adaptive bins. */
lathe_node *lathe_adaptive_avg_pool2d(lathe_graph *g, lathe_node *x, int64_t out_h,
                                      int64_t out_w);

/* ---- normalization and losses ---------------------------------------------- */

/* Batch norm over (N, H, W) for x (N, C, H, W); weight, bias, running_mean,
 * running_var have shape (C).  Training mode normalizes with the batch
 * statistics (biased variance) and, when running_mean and running_var are
 * buffers, records updates new = (1 - momentum) * old + momentum * stat, with
 * the unbiased variance, as PyTorch does (see lathe_update).  Eval mode
 * normalizes with the running statistics. */
lathe_node *lathe_batch_norm2d(lathe_graph *g, lathe_node *x, lathe_node *weight,
                               lathe_node *bias, lathe_node *running_mean,
                               lathe_node *running_var, bool training, double momentum,
                               double eps);
/* torch.nn.functional.dropout in training: each element is zeroed with
 * probability p, the others scaled by 1/(1 - p).  The draws are a hash of
 * the generator state (the buffer LATHE_RNG_NAME, i64[2]: the run's seed and
 * the step, which every run of the program advances), the dropout's number
 * in the graph (its salt) and the element's index: the same bits on any
 * thread count, a run resumed from a checkpoint (which holds the state)
 * draws what the unbroken run draws, and the gradient re-draws the same
 * mask instead of storing it.  The draw of element i, exactly (uint64
 * arithmetic mod 2^64; mix is SplitMix64's finalizer: z ^= z >> 30, z *=
 * 0xBF58476D1CE4E5B9, z ^= z >> 27, z *= 0x94D049BB133111EB, z ^= z >> 31):
 *     k = mix(seed ^ mix(step * 0x9E3779B97F4A7C15 + salt))
 *     keep = (mix(k + (i + 1) * 0x9E3779B97F4A7C15) >> 32) >= round(p * 2^32)
 * An evaluation graph simply leaves dropout out.  The IR's dropout takes an
 * optional third operand, one i64: the index in the whole tensor of x's
 * first element, added to i (the data-parallel pass gives each process's
 * part of a batch its place in the global batch: LATHE_RANK_NAME times the
 * part's size). */
#define LATHE_RNG_NAME "lathe.rng"
/* The input of a data-parallel program (one process's part) that holds the
 * process's rank, i64[1]: the trainer sets it. */
#define LATHE_RANK_NAME "lathe.rank"
lathe_node *lathe_dropout(lathe_graph *g, lathe_node *x, double p);
/* The graph's generator state: the buffer LATHE_RNG_NAME (created on first
 * use, initialized to (seed, 0) by the runtime, its step advanced by one per
 * run).  Lathe's own state: loading a file without it keeps it as it is. */
lathe_node *lathe_rng_state(lathe_graph *g);
/* Layer norm over the last n dims of x, which must equal normalized_shape,
 * as torch.nn.functional.layer_norm: per row of those dims,
 * (x - mean) / sqrt(var + eps) * weight + bias with the biased variance.
 * weight and bias have shape normalized_shape; NULL leaves them out (both
 * NULL: elementwise_affine=False), but a bias needs a weight.  eps >= 0. */
lathe_node *lathe_layer_norm(lathe_graph *g, lathe_node *x, int n, const int64_t *normalized_shape,
                             lathe_node *weight, lathe_node *bias, double eps);
lathe_node *lathe_softmax(lathe_graph *g, lathe_node *x, int64_t axis);
lathe_node *lathe_log_softmax(lathe_graph *g, lathe_node *x, int64_t axis);
/* The elementwise sum of x over `parts` processes (ranks 0..parts-1), on
 * every process; x is f32, f64 or i64 of any shape, 1 <= parts <= INT_MAX.
 * A composite: x gathered along a new leading axis (lathe_all_gather), then
 * summed over it in rank order, so every process adds the same values in
 * the same order (an all-reduce in MPI's order would not give the same bits
 * for every process count).  The evaluator is a world of one process, as
 * for lathe_all_gather: parts 1 is the identity, more is an error of
 * lathe_eval_run.  The gradient is the all_reduce of the cotangent over the
 * same processes. */
lathe_node *lathe_all_reduce(lathe_graph *g, lathe_node *x, int parts);
/* torch.nn.functional.cross_entropy: logits (N, C) or (N, C, d1, ...)
 * floating, labels (N) or (N, d1, ...) i64 in [0, C), the class axis 1.
 * Per element: -log_softmax(logits, 1)[label], or with label smoothing e,
 * (1 - e) of that plus e/C times the sum over classes of -log_softmax.
 * Elements whose label is ignore_index lose 0 and are not counted: mean
 * divides by the number of the others (0/0 = NaN when all are ignored), as
 * PyTorch.  lathe_cross_entropy: ignore_index LATHE_IGNORE_INDEX (-100,
 * PyTorch's default), no smoothing. */
#define LATHE_IGNORE_INDEX (-100)
lathe_node *lathe_cross_entropy(lathe_graph *g, lathe_node *logits, lathe_node *labels,
                                lathe_reduction reduction);
lathe_node *lathe_cross_entropy_ex(lathe_graph *g, lathe_node *logits, lathe_node *labels,
                                   lathe_reduction reduction, int64_t ignore_index, double label_smoothing);
/* torch.nn.functional.nll_loss: log_probs shaped as cross_entropy's logits;
 * per element -log_probs[label]; ignore_index as cross_entropy's. */
lathe_node *lathe_nll_loss(lathe_graph *g, lathe_node *log_probs, lathe_node *labels,
                           lathe_reduction reduction);
lathe_node *lathe_nll_loss_ex(lathe_graph *g, lathe_node *log_probs, lathe_node *labels,
                              lathe_reduction reduction, int64_t ignore_index);
/* (a - b)^2, same shapes. */
lathe_node *lathe_mse_loss(lathe_graph *g, lathe_node *a, lathe_node *b,
                           lathe_reduction reduction);

/* ---- outputs and state updates --------------------------------------------- */

/* Prefix of gradient output names: the gradient of parameter "fc.weight" is
 * the output "grad.fc.weight" (autodiff names them so; dumps and programs
 * tell gradients from other outputs by it). */
#define LATHE_GRAD_PREFIX "grad."

/* Name a value as a graph output (names are unique among outputs). */
lathe_status lathe_output(lathe_graph *g, const char *name, lathe_node *value);
/* After each run, buffer takes value (same dtype and shape).  One update per
 * buffer. */
lathe_status lathe_update(lathe_graph *g, lathe_node *buffer, lathe_node *value);

/* Mark a value for differentiation, as loss.backward() or
 * Q.backward(gradient=cot) does in PyTorch: cot is a node of the value's
 * type, or NULL for a one-element value (an implied 1).  The compiler's
 * lathe_backward_marked (lathe_compiler.h) and `lathe dump --stage grad`
 * differentiate the marked values.  Printed as `backward %out [%cot]`. */
lathe_status lathe_mark_backward(lathe_graph *g, lathe_node *out, lathe_node *cot);
int lathe_graph_num_marks(const lathe_graph *g);
void lathe_graph_mark(const lathe_graph *g, int i, lathe_node **out, lathe_node **cot);
/* Forget the marks (the compiler does so once it has differentiated them). */
void lathe_graph_clear_marks(lathe_graph *g);

/* ---- introspection ------------------------------------------------------- */

int lathe_graph_num_nodes(const lathe_graph *g);
/* Nodes in creation order, which is a topological order. */
lathe_node *lathe_graph_node(const lathe_graph *g, int i);
/* The input, param or buffer with this name, else the output with this name;
 * NULL if none. */
lathe_node *lathe_graph_find(const lathe_graph *g, const char *name);
/* The output with this name; NULL if none. */
lathe_node *lathe_graph_find_output(const lathe_graph *g, const char *name);
int lathe_graph_num_outputs(const lathe_graph *g);
lathe_node *lathe_graph_output(const lathe_graph *g, int i);
const char *lathe_graph_output_name(const lathe_graph *g, int i);
int lathe_graph_num_updates(const lathe_graph *g);
void lathe_graph_update(const lathe_graph *g, int i, lathe_node **buffer, lathe_node **value);

int lathe_node_id(const lathe_node *n);
/* The op's text name ("conv2d"). */
const char *lathe_node_op(const lathe_node *n);
lathe_dtype lathe_node_dtype(const lathe_node *n);
int lathe_node_rank(const lathe_node *n);
const int64_t *lathe_node_shape(const lathe_node *n);
int64_t lathe_node_numel(const lathe_node *n);
/* Tensor name of an input, param or buffer; NULL for other nodes. */
const char *lathe_node_name(const lathe_node *n);
int lathe_node_num_inputs(const lathe_node *n);
lathe_node *lathe_node_input(const lathe_node *n, int i);
/* Writes "f32[2,3]" into buf (at most len bytes, NUL-terminated). */
void lathe_node_type_str(const lathe_node *n, char *buf, size_t len);

/* ---- text and DOT ---------------------------------------------------------- */

/* Print the graph as text IR; lathe_parse reads it back into an identical
 * graph. */
lathe_status lathe_graph_print(const lathe_graph *g, FILE *out);
/* The same text, malloc'd; the caller frees it.  NULL when out of memory. */
char *lathe_graph_to_text(const lathe_graph *g);
/* Parse text IR (len bytes of src; filename is used in messages) into g,
 * which must be empty.  Errors name file:line:column and what was expected. */
lathe_status lathe_parse(lathe_graph *g, const char *src, size_t len, const char *filename);
/* Read and parse a file. */
lathe_status lathe_parse_file(lathe_graph *g, const char *path);
/* Graphviz DOT of the DAG in the direction of the forward pass; leaves that
 * require grad are drawn blue, as in the autograd tutorial's figure. */
lathe_status lathe_graph_print_dot(const lathe_graph *g, FILE *out);

/* ---- reference evaluator ---------------------------------------------------- */

/* Runs any graph in plain C.  Every value is computed in double and rounded
 * to its dtype after each op, so f32 graphs see f32 storage and f64 graphs
 * full precision (i64 is exact up to 2^53).  It is the oracle that compiled
 * code is tested against: simple, not fast. */
typedef struct lathe_eval lathe_eval;

/* Verifies g and makes an evaluator; NULL with the error in g on failure.
 * The graph must outlive the evaluator and not change while it lives. */
lathe_eval *lathe_eval_new(lathe_graph *g);
void lathe_eval_free(lathe_eval *ev);
/* Bind the input, param or buffer `name` to data in its own dtype; nbytes must
 * equal numel * dtype size.  Data is copied.  Buffers keep their value across
 * runs and take their updates after each run. */
lathe_status lathe_eval_set(lathe_eval *ev, const char *name, const void *data, size_t nbytes);
/* The same from doubles (numel of them), converted to the leaf's dtype. */
lathe_status lathe_eval_set_f64(lathe_eval *ev, const char *name, const double *data);
/* Run the graph.  Every input and parameter must be bound; buffers must be
 * bound too.  Errors (unbound tensor, label out of range) name the tensor. */
lathe_status lathe_eval_run(lathe_eval *ev);
/* Copy a node's value after a run, in its dtype (nbytes as for set). */
lathe_status lathe_eval_get(lathe_eval *ev, const lathe_node *n, void *out, size_t nbytes);
/* A node's value as doubles (numel of them), valid until the next run or free. */
const double *lathe_eval_value(lathe_eval *ev, const lathe_node *n);
/* The value of a buffer (after updates) or other leaf by name, as doubles. */
const double *lathe_eval_leaf(lathe_eval *ev, const char *name);
/* Message of the last error; "" if none. */
const char *lathe_eval_error(const lathe_eval *ev);

#ifdef __cplusplus
}
#endif
#endif
