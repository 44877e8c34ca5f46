/* plot.h - `lathe plot`: a trainer's --log-file drawn as an SVG picture
 * (internal to the lathe command; plot.c).
 *
 * The log is JSON Lines as runtime/trainer.c writes it: a line per step,
 *     {"step": 12, "epoch": 1, "lr": 0.05, "loss": 0.6931, "samples_per_s": 2200}
 * and a line per evaluation,
 *     {"step": 937, "epoch": 1, "train_loss": 0.51, "test_loss": 0.35,
 *      "test_accuracy": 0.8752, "test_top5": 0.998}
 * (any of the values may be null: not finite).  The picture has two panels
 * over the same step axis: the losses (each step's training loss, light, a
 * smoothed line over it, and the test loss at each evaluation), and below,
 * when the log has evaluations with an accuracy, the test accuracy in
 * percent (top-1 and top-5).  Dashed vertical lines mark where an epoch
 * ends.
 *
 * Geometry, for whoever reads the SVG back (tests/test_plot.c does): every
 * panel is a <rect class="frame" data-panel="loss|accuracy">; a value v maps
 * linearly from the panel's axis range [lo, hi] onto the frame, x from the
 * frame's left edge, y from its bottom edge up (for --log-y, log10 v from
 * log10 lo).  Each tick is a grid line <line class="grid-x|grid-loss|
 * grid-accuracy" data-value="V"> at its value's place, with a label.  The
 * axes span the values drawn, widened to multiples of a tick step of 1, 2
 * or 5 times a power of ten (powers of ten on a log axis).  The data:
 * <polyline class="train-loss"> and <polyline class="train-smooth">
 * (points "x,y ..."), <circle class="test-loss|test-accuracy|test-top5">
 * (cx, cy), coordinates with two decimals.  A training line of more points
 * than twice the frame's width in pixels keeps the first, lowest, highest
 * and last point of each pixel column. */
#ifndef LATHE_PLOT_H
#define LATHE_PLOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* How to draw. */
typedef struct {
    const char *title;  /* NULL: "Training: " and the log's file name */
    double smooth;      /* the smoothed line's weight W in [0, 1), < 0: automatic (see lt_plot_smooth_weight) */
    bool log_y;         /* a logarithmic loss axis */
} lt_plot_opts;

/* What was drawn and what was left out, for the notes the verb prints. */
typedef struct {
    int64_t steps, evals;          /* training points and evaluations drawn */
    int64_t nonfinite;             /* values left out: null, NaN or infinite losses and test values */
    int64_t nonfinite_step;        /* the step of the first of them */
    int64_t nonpositive;           /* --log-y: losses <= 0 left out */
    int64_t duplicates;            /* lines for a step logged before: the last one is drawn */
    int64_t ignored;               /* lines with neither a loss nor a test value */
    double smooth;                 /* the weight used */
} lt_plot_report;

/* The smoothing weight for n training points when none is given: that of
 * an exponential moving average as wide as a moving average of k = n / 40
 * points, W = 1 - 2 / (k + 1), or 0 (no smoothing) for k < 2. */
double lt_plot_smooth_weight(int64_t n);

/* The smoothed training loss, TensorBoard's: s_0 = 0,
 * s_i = W s_(i-1) + (1 - W) loss_i, drawn as s_i / (1 - W^i) (i from 1),
 * over the losses drawn, in step order. */

/* Read the log at log_path and write the SVG to out.  0, or -1 with a
 * message in err (errlen bytes) that names the log and, for a bad line,
 * its number: "run.jsonl:7: not valid JSON at column 12"; a file that
 * cannot be opened; a line that is not a JSON object, has no number
 * "step", or a value that is neither a number nor null; a log with
 * nothing to draw.  Bare NaN, Infinity and -Infinity (Python's json
 * writes them) are read as null.  rep (may be NULL) gets what was drawn. */
int lt_plot_write(const char *log_path, FILE *out, const lt_plot_opts *o, lt_plot_report *rep, char *err,
                  size_t errlen);

/* `lathe plot`'s command line (argv[0] "plot"): the exit status, 0 written, 1
 * bad input, 2 a bad command line; messages on standard error. */
int lt_plot_main(int argc, char **argv);

#endif
