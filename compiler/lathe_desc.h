/* lathe_desc.h - Lathe's model description language (*.lathe files).
 *
 * A description is a short text file that the parser traces into an IR
 * graph through the public tracing API (lathe.h), the way a PyTorch module's
 * forward() is traced:
 *
 *     # fashion_cnn.lathe
 *     batch N = 64
 *     input image: f32[N, 1, 28, 28]
 *     input label: i64[N]
 *     h = relu(batch_norm(conv2d(image, 32, 3, padding=1) as conv1) as bn1)
 *     h = max_pool2d(h, 2)
 *     logits = linear(flatten(h), 10) as fc
 *     output logits
 *     loss cross_entropy(logits, label)
 *
 * From C:
 *
 *     lathe_graph *g = lathe_graph_new();
 *     const char *defs[] = {"width=4"};
 *     lathe_desc_options opt = {.training = true, .batch = 4, .ndefines = 1, .defines = defs};
 *     lathe_desc_info info;
 *     if (lathe_desc_parse_file(g, "examples/resnet18.lathe", &opt, &info) != LATHE_OK)
 *         fprintf(stderr, "%s\n", lathe_graph_error(g));   // FILE:LINE:COL: ... line, caret
 *     lathe_backward_marked(g);                            // training: the loss's gradients
 *
 * The language (a full reference is in README.md):
 *
 *     model NAME                          the model's name
 *     batch N = 64                        the batch dimension's name and default size
 *     let NAME = EXPR                     a number, overridable with a define "NAME=VALUE"
 *     input NAME: DTYPE[DIMS] [raw] [requires_grad]
 *     param NAME: DTYPE[DIMS] [init=auto|zeros|ones|uniform(A)|const(V)] [frozen]
 *     buffer NAME: DTYPE[DIMS] [init=...]
 *     NAME = EXPR                         + - * / // ** comparisons, and or not, calls
 *     CALL as PREFIX                      names a layer's or block's parameters (conv1, layer2.1)
 *     block NAME(ARG, ARG=DEFAULT) { ... return EXPR }
 *     if COND { ... } else { ... }        COND is a number (channels(x) != planes)
 *     no_grad { ... }                     values built inside are constants for autodiff
 *     freeze PREFIX | unfreeze PREFIX     e.g. freeze layer1.   (* for every parameter)
 *     output NAME [= EXPR]
 *     loss EXPR                           the output "loss"
 *     backward EXPR [, COTANGENT]         e.g. backward Q, [1.0, 1.0]
 *
 * Errors.  Nothing aborts or exits.  A bad description, a shape error from a
 * builder or a bad define returns the status and records in the graph
 * "FILE:LINE:COL: what was expected", then the offending line and a caret
 * under the column (each indented by two spaces, as the text IR parser
 * does), then one line per block call that led there.
 *
 * Ownership.  The graph owns every node; src and the options are only read
 * during the call. */
#ifndef LATHE_DESC_H
#define LATHE_DESC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lathe.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    /* true: batch norm uses batch statistics and records its running-statistic
     * updates; the loss is the one-element output "loss", marked for backward
     * (lathe_mark_backward) so the caller runs lathe_backward_marked;
     * `backward` statements are marked too.
     * false (evaluation): batch norm uses running statistics, no updates and
     * no marks; the loss is per sample: the output "loss" of shape [N] (the
     * loss built with reduction none, mse additionally averaged over the
     * non-batch axes), and for cross_entropy and nll_loss also the output
     * "correct" of shape [N], f32 1 or 0 (argmax over axis 1 == label).  A
     * loss statement that is not one of those calls outputs its value as is. */
    bool training;
    /* Size of the batch dimension; 0: the file's default (or a define of the
     * batch name).  Ignored when the file declares no batch dimension. */
    int64_t batch;
    /* Overrides of top-level `let` constants (and of the batch default), each
     * "NAME=NUMBER", as a command line's -D NAME=VALUE.  A name the file does
     * not define with `let` or `batch` is an error. */
    int ndefines;
    const char *const *defines;
} lathe_desc_options;

typedef struct {
    char model[64];                 /* the `model NAME` statement, else the file's stem */
    char batch_dim[32];             /* the batch dimension's name, "" if none declared */
    int64_t batch;                  /* its value in this graph (0 if none) */
    int ninputs;                    /* inputs in declaration order */
    struct {
        char name[64];
        bool raw;                   /* integer pixel data is NOT scaled to [0, 1] */
    } inputs[16];
    bool has_loss;                  /* a `loss` statement exists */
    bool classify;                  /* the loss is cross_entropy or nll_loss: evaluation has "correct" */
    char label[64];                 /* the input used as the loss's target, "" if none */
} lathe_desc_info;

/* Trace the description src (len bytes; filename names it in messages) into
 * g, which must be empty.  opt may be NULL: training mode, the file's
 * defaults.  info, which may be NULL, receives what a driver needs to feed
 * and run the graph; it is zeroed on failure.  On error returns the status
 * and g holds the message "FILE:LINE:COL: what was expected\n  <the line>\n
 * <caret>".  In training mode the caller differentiates the marked values
 * with lathe_backward_marked (lathe_compiler.h). */
lathe_status lathe_desc_parse(lathe_graph *g, const char *src, size_t len, const char *filename,
                              const lathe_desc_options *opt, lathe_desc_info *info);

/* Read the file at path and lathe_desc_parse it; messages name path.
 * LATHE_ERR_IO when it cannot be read. */
lathe_status lathe_desc_parse_file(lathe_graph *g, const char *path, const lathe_desc_options *opt,
                                   lathe_desc_info *info);

/* True when path holds a description rather than text IR: its name ends in
 * ".lathe", or its text is one (lathe_desc_is_description_text; a file that
 * cannot be read is not, and its reader reports why). */
bool lathe_desc_is_description(const char *path);
/* True when src (len bytes) is a description: text IR's first statement
 * (after blank lines and # comments) starts with '%', a description's never
 * does (model, let, batch, input, an assignment, ...).  Empty text is IR. */
bool lathe_desc_is_description_text(const char *src, size_t len);

#ifdef __cplusplus
}
#endif
#endif
