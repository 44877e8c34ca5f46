/* ops.h - the one table of IR operations.
 *
 * Every op is one line: enum suffix, text name, min and max operand count,
 * kind, and an attribute schema.  The enum, the name table, the arity and
 * kind tables, the text printer and parser, DOT and the verifier are all
 * generated from this list.  The rest of an op is written by hand, in these
 * places, in pipeline order (follow an op of the same kind end to end, e.g.
 * `grep -rn adaptive_avg_pool2d ir compiler tests README.md`):
 *
 *   1. ir/ops.h: its line.  A gradient kernel that only autodiff emits goes
 *      after the "Gradient kernels" marker, with a name ending in _backward
 *      (test_eval's adjoint check and test_random_graphs' coverage rely on
 *      both).
 *   2. ir/infer.c, lt_infer: its shape and dtype rule and the normalization
 *      of its attributes; each error names the op and the operand types.
 *   3. ir/build.c: its builder lathe_NAME, declared in ir/lathe.h's section
 *      for its kind (a gradient kernel has none: autodiff makes it with
 *      lt_make).  ir/graph.c, derives_grad: only if its result never carries
 *      a gradient (as the comparisons and argmax).
 *   4. ir/eval.c, eval_node (elementwise: unary_op or binary_op): the
 *      reference kernel, plain loops in double.
 *   5. compiler/autodiff.c, rule(): its gradient as IR ops, accumulated with
 *      acc() (a new gradient kernel is an op of its own: steps 1-12 again,
 *      its own rule included, for second order).
 *   6. compiler/simplify.c, identity(): its algebraic identities, if it has
 *      any (constant folding runs the evaluator and needs nothing).
 *   7. compiler/decompose.c, expand(): a composite's form in primitives; the
 *      fuser never sees a composite, so steps 8 and 9 are then done.
 *   8. compiler/fuse.c: rule() builds its value at a multi-index
 *      (elementwise ops by kind, the others by op), and is_index_op,
 *      is_pointwise, is_reduction, is_heavy and cheap decide what it inlines
 *      into.  A contraction or window gets vector code through a contraction
 *      plan (kernel.h's lt_contract: lt_plan_contraction or lt_plan_pool in
 *      compiler/contract.c, its lowering in compiler/lower_tiles.c).
 *   9. compiler/lower_llvm.c, gen_unary or gen_binary: an elementwise op's
 *      LLVM code (exp, log, tanh and the like as polynomials from
 *      compiler/mathlib.c, never libm).
 *  10. ir/graph.c, lathe_leaf_init_of: only for an op with parameters whose
 *      default initialization follows PyTorch's for that layer.
 *  11. compiler/desc.h's BUILTINS and compiler/desc_builtins.c's
 *      desc_call_builtin: if the description language offers it.
 *  12. tests: a sample in tests/testutil.c's table (test_shapes and test_text
 *      fail without one; the JIT, autodiff and simplify tests then run it)
 *      with its type in test_shapes.c's expected_types; a hand-computed
 *      case in test_eval.c's hand_cases (test_hand_cases fails without one),
 *      and an adjoint case in adjoint_cases for a gradient kernel; for a
 *      forward op, a generator in test_random_graphs.c's gens (the full run
 *      fails on a forward op never generated); its bad inputs and their
 *      messages in test_shapes.c.
 *  13. README.md: the "Ops" table, and the Functions list for a language
 *      function.
 *
 * Attribute schema: space-separated "name:type" items, where type is
 *   i  one integer            b  bool (true/false)      f  float (double)
 *   l  list of integers       p  pair of integers       t  dtype
 *   r  reduction: none|mean|sum
 * Attributes are stored in the node in schema order (node->attr[k]).
 * max arity -1 means variadic (concat).
 */
#ifndef LATHE_OPS_H
#define LATHE_OPS_H

/*   ENUM            name                   min max kind       attributes */
#define LATHE_OP_LIST(X) \
  X(INPUT,           "input",                0, 0, LEAF,      "") \
  X(PARAM,           "param",                0, 0, LEAF,      "") \
  X(BUFFER,          "buffer",               0, 0, LEAF,      "") \
  X(CONST,           "const",                0, 0, LEAF,      "") \
  X(ADD,             "add",                  2, 2, BINARY,    "") \
  X(SUB,             "sub",                  2, 2, BINARY,    "") \
  X(MUL,             "mul",                  2, 2, BINARY,    "") \
  X(DIV,             "div",                  2, 2, BINARY,    "") \
  X(POW,             "pow",                  2, 2, BINARY,    "") \
  X(MAXIMUM,         "maximum",              2, 2, BINARY,    "") \
  X(MINIMUM,         "minimum",              2, 2, BINARY,    "") \
  X(GT,              "gt",                   2, 2, COMPARE,   "") \
  X(GE,              "ge",                   2, 2, COMPARE,   "") \
  X(LT,              "lt",                   2, 2, COMPARE,   "") \
  X(LE,              "le",                   2, 2, COMPARE,   "") \
  X(EQ,              "eq",                   2, 2, COMPARE,   "") \
  X(NE,              "ne",                   2, 2, COMPARE,   "") \
  X(WHERE,           "where",                3, 3, WHERE,     "") \
  X(NEG,             "neg",                  1, 1, UNARY,     "") \
  X(EXP,             "exp",                  1, 1, UNARY,     "") \
  X(LOG,             "log",                  1, 1, UNARY,     "") \
  X(SQRT,            "sqrt",                 1, 1, UNARY,     "") \
  X(RSQRT,           "rsqrt",                1, 1, UNARY,     "") \
  X(ABS,             "abs",                  1, 1, UNARY,     "") \
  X(RELU,            "relu",                 1, 1, UNARY,     "") \
  X(SIGMOID,         "sigmoid",              1, 1, UNARY,     "") \
  X(TANH,            "tanh",                 1, 1, UNARY,     "") \
  X(ERF,             "erf",                  1, 1, UNARY,     "") \
  X(GELU,            "gelu",                 1, 1, UNARY,     "approximate:b") \
  X(SILU,            "silu",                 1, 1, UNARY,     "") \
  X(SOFTPLUS,        "softplus",             1, 1, UNARY,     "beta:f threshold:f") \
  X(LEAKY_RELU,      "leaky_relu",           1, 1, UNARY,     "negative_slope:f") \
  X(CLAMP,           "clamp",                1, 1, UNARY,     "min:f max:f") \
  X(POW_SCALAR,      "pow_scalar",           1, 1, UNARY,     "exponent:f") \
  X(CAST,            "cast",                 1, 1, UNARY,     "dtype:t") \
  X(SUM,             "sum",                  1, 1, REDUCE,    "axes:l keepdim:b") \
  X(MEAN,            "mean",                 1, 1, REDUCE,    "axes:l keepdim:b") \
  X(MAX,             "max",                  1, 1, REDUCE,    "axes:l keepdim:b") \
  X(MIN,             "min",                  1, 1, REDUCE,    "axes:l keepdim:b") \
  X(ARGMAX,          "argmax",               1, 1, REDUCE,    "axis:i keepdim:b") \
  X(RESHAPE,         "reshape",              1, 1, SHAPE,     "shape:l") \
  X(FLATTEN,         "flatten",              1, 1, SHAPE,     "start:i end:i") \
  X(PERMUTE,         "permute",              1, 1, SHAPE,     "perm:l") \
  X(BROADCAST_TO,    "broadcast_to",         1, 1, SHAPE,     "shape:l") \
  X(CONCAT,          "concat",               1, -1, SHAPE,    "axis:i") \
  X(SLICE,           "slice",                1, 1, SHAPE,     "axis:i start:i end:i step:i") \
  X(INDEX_SELECT,    "index_select",         2, 2, SHAPE,     "axis:i") \
  X(ALL_GATHER,      "all_gather",           1, 1, SHAPE,     "axis:i parts:i") \
  X(MATMUL,          "matmul",               2, 2, CONTRACT,  "") \
  X(LINEAR,          "linear",               2, 3, CONTRACT,  "") \
  X(CONV2D,          "conv2d",               2, 3, CONTRACT,  "stride:p padding:p dilation:p groups:i") \
  X(MAX_POOL2D,      "max_pool2d",           1, 1, POOL,      "kernel:p stride:p padding:p") \
  X(AVG_POOL2D,      "avg_pool2d",           1, 1, POOL,      "kernel:p stride:p padding:p count_include_pad:b") \
  X(ADAPTIVE_AVG_POOL2D, "adaptive_avg_pool2d", 1, 1, POOL,   "size:p") \
  X(BATCH_NORM2D,    "batch_norm2d",         5, 5, NORM,      "training:b momentum:f eps:f") \
  X(SOFTMAX,         "softmax",              1, 1, NORM,      "axis:i") \
  X(LOG_SOFTMAX,     "log_softmax",          1, 1, NORM,      "axis:i") \
  X(CROSS_ENTROPY,   "cross_entropy",        2, 2, LOSS,      "reduction:r ignore_index:i label_smoothing:f") \
  X(NLL_LOSS,        "nll_loss",             2, 2, LOSS,      "reduction:r ignore_index:i") \
  X(MSE_LOSS,        "mse_loss",             2, 2, LOSS,      "reduction:r") \
  X(DROPOUT,         "dropout",              2, 3, NORM,      "p:f salt:i") \
  X(LAYER_NORM,      "layer_norm",           1, 3, NORM,      "normalized_shape:l eps:f") \
  X(ALL_REDUCE,      "all_reduce",           1, 1, NORM,      "parts:i") \
  /* Gradient kernels that autodiff emits (compiler/autodiff.c). */ \
  X(SLICE_BACKWARD,  "slice_backward",       1, 1, SHAPE,     "axis:i start:i end:i step:i size:i") \
  X(CONV2D_BACKWARD_INPUT, "conv2d_backward_input", 2, 2, CONTRACT, "stride:p padding:p dilation:p groups:i size:p") \
  X(CONV2D_BACKWARD_WEIGHT, "conv2d_backward_weight", 2, 2, CONTRACT, "stride:p padding:p dilation:p groups:i kernel:p") \
  X(MAX_POOL2D_BACKWARD, "max_pool2d_backward", 2, 2, POOL,   "kernel:p stride:p padding:p") \
  X(AVG_POOL2D_BACKWARD, "avg_pool2d_backward", 1, 1, POOL,   "kernel:p stride:p padding:p count_include_pad:b size:p") \
  X(ADAPTIVE_AVG_POOL2D_BACKWARD, "adaptive_avg_pool2d_backward", 1, 1, POOL, "size:p") \
  X(INDEX_SELECT_BACKWARD, "index_select_backward", 2, 2, SHAPE, "axis:i size:i")

#endif
