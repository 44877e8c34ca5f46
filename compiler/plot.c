/* plot.c - `lathe plot`: a trainer's --log-file (JSON Lines) drawn as an
 * SVG picture, in plain C with cJSON.  plot.h gives the picture's
 * geometry.
 *
 * lt_plot_write runs the phases in order, one function each:
 *   read_log   the lines into training points (step, epoch, loss) and
 *              evaluations (step, test loss, accuracy, top-5), with
 *              file:line messages for lines that are not a log's
 *   tidy       each in step order, a step logged twice keeping its last
 *              line (a resumed run redoes the steps after its checkpoint);
 *              values that are not finite (or, on a log axis, not > 0)
 *              left out and counted
 *   smooth     the training loss's exponential moving average
 *   layout     the panels and their axes, with ticks at round values
 *   draw       the SVG
 * The picture is made in memory and written at the end, so a failure
 * leaves no half-written file. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "plot.h"

/* ---- the picture's constants ---- */

enum {
    WIDTH = 800,
    LEFT = 76,            /* frame's left edge: room for the loss labels */
    RIGHT = 24,           /* margin right of the frames */
    TOP = 70,             /* first frame's top: the title, the summary and epoch labels above */
    LOSS_H = 300,         /* the loss panel's height */
    GAP = 28,             /* between the panels */
    ACC_H = 170,          /* the accuracy panel's height */
    BOTTOM = 52,          /* below the last frame: tick labels and "step" */
    MAX_EPOCH_MARKS = 40, /* more epochs than this: no marks */
};
static const char *const C_RAW = "#9ecae1", *const C_SMOOTH = "#08519c", *const C_TEST = "#e6550d",
                         *const C_ACC = "#31a354", *const C_TOP5 = "#756bb1", *const C_GRID = "#e6e6e6",
                         *const C_EPOCH = "#bbbbbb";

/* ---- the log ---- */

typedef struct {
    double step, epoch, loss;
    int64_t line;
} tpoint;

typedef struct {
    double step, test_loss, acc, top5;
    int64_t line;
    bool has_loss; /* the line has "test_loss" (null or not) */
} epoint;

typedef struct {
    tpoint *t;
    int64_t nt, capt;
    epoint *e;
    int64_t ne, cape;
    double *smooth; /* nt, after smooth() */
} plot_log;

static void plot_log_free(plot_log *L) {
    free(L->t);
    free(L->e);
    free(L->smooth);
}

static void errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* s with the bare words NaN, Infinity and -Infinity outside strings made
 * null (Python's json.dumps writes them; JSON has no such numbers); a new
 * string, NULL when out of memory. */
static char *nan_to_null(const char *s) {
    size_t n = strlen(s);
    char *o = malloc(2 * n + 1), *w = o;
    if (!o) return NULL;
    bool in_str = false;
    for (size_t i = 0; i < n;) {
        if (in_str) {
            if (s[i] == '\\' && i + 1 < n) *w++ = s[i++];
            else if (s[i] == '"') in_str = false;
            *w++ = s[i++];
            continue;
        }
        static const char *const words[] = {"-Infinity", "Infinity", "NaN"};
        bool hit = false;
        for (int k = 0; k < 3 && !hit; k++) {
            size_t len = strlen(words[k]);
            if (!strncmp(s + i, words[k], len)) {
                memcpy(w, "null", 4), w += 4, i += len, hit = true;
            }
        }
        if (hit) continue;
        if (s[i] == '"') in_str = true;
        *w++ = s[i++];
    }
    *w = 0;
    return o;
}

/* j's member key as a number: true with *v (NAN for null or absent, and
 * *present says which), false when it is something else. */
static bool number_or_null(const cJSON *j, const char *key, double *v, bool *present) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, key);
    *v = NAN;
    *present = m != NULL;
    if (!m || cJSON_IsNull(m)) return true;
    if (!cJSON_IsNumber(m)) return false;
    *v = m->valuedouble;
    return true;
}

static const char *json_kind(const cJSON *m) {
    return cJSON_IsString(m) ? "a string" : cJSON_IsBool(m) ? "a boolean" : cJSON_IsArray(m) ? "an array"
         : cJSON_IsObject(m) ? "an object" : "not a number";
}

static bool grow(void **p, int64_t *cap, int64_t n, size_t size) {
    if (n < *cap) return true;
    int64_t c = *cap ? 2 * *cap : 256;
    void *q = realloc(*p, (size_t)c * size);
    if (!q) return false;
    *p = q, *cap = c;
    return true;
}

/* One line (no newline) of the log into L; false with a message. */
static bool read_line(const char *path, int64_t no, const char *text, plot_log *L, lt_plot_report *r, char *err,
                      size_t errlen) {
    char *clean = nan_to_null(text);
    if (!clean) return errf(err, errlen, "%s:%lld: out of memory", path, (long long)no), false;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(clean, &end, 1);
    if (!j) {
        const char *at = cJSON_GetErrorPtr();
        long col = at && at >= clean && at <= clean + strlen(clean) ? (long)(at - clean) + 1 : 1;
        errf(err, errlen, "%s:%lld: not valid JSON at column %ld (a --log-file line is one JSON object)", path,
             (long long)no, col);
        free(clean);
        return false;
    }
    free(clean);
    bool ok = false;
    static const char *const keys[] = {"step", "epoch", "loss", "test_loss", "test_accuracy", "test_top5"};
    double v[6];
    bool has[6];
    if (!cJSON_IsObject(j)) {
        errf(err, errlen, "%s:%lld: a JSON value that is not an object (a --log-file line is one object)", path,
             (long long)no);
        goto done;
    }
    for (int k = 0; k < 6; k++)
        if (!number_or_null(j, keys[k], &v[k], &has[k])) {
            errf(err, errlen, "%s:%lld: \"%s\" is %s; expected a number or null", path, (long long)no, keys[k],
                 json_kind(cJSON_GetObjectItemCaseSensitive(j, keys[k])));
            goto done;
        }
    if (!has[0] || !isfinite(v[0])) {
        errf(err, errlen, "%s:%lld: no \"step\" number", path, (long long)no);
        goto done;
    }
    if (has[2]) {
        if (!grow((void **)&L->t, &L->capt, L->nt, sizeof *L->t)) goto oom;
        L->t[L->nt++] = (tpoint){v[0], v[1], v[2], no};
    } else if (has[3] || has[4] || has[5]) {
        if (!grow((void **)&L->e, &L->cape, L->ne, sizeof *L->e)) goto oom;
        L->e[L->ne++] = (epoint){v[0], v[3], v[4], v[5], no, has[3]};
    } else
        r->ignored++;
    ok = true;
    goto done;
oom:
    errf(err, errlen, "%s:%lld: out of memory", path, (long long)no);
done:
    cJSON_Delete(j);
    return ok;
}

static bool read_log(const char *path, plot_log *L, lt_plot_report *r, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) return errf(err, errlen, "%s: cannot open: %s", path, strerror(errno)), false;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int64_t no = 0;
    bool ok = true;
    while (ok && (n = getline(&line, &cap, f)) >= 0) {
        no++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        if ((size_t)n != strlen(line)) {
            errf(err, errlen, "%s:%lld: a NUL byte (a --log-file is text)", path, (long long)no);
            ok = false;
            break;
        }
        if (strspn(line, " \t") == (size_t)n) continue; /* blank */
        ok = read_line(path, no, line, L, r, err, errlen);
    }
    if (ok && ferror(f)) {
        errf(err, errlen, "%s: read error: %s", path, strerror(errno));
        ok = false;
    }
    free(line);
    fclose(f);
    if (ok && L->nt == 0 && L->ne == 0) {
        errf(err, errlen, "%s: nothing to draw: no line with a \"loss\" or a test value (%lld line%s)", path,
             (long long)no, no == 1 ? "" : "s");
        ok = false;
    }
    return ok;
}

/* ---- tidying ---- */

static int by_step_t(const void *a, const void *b) {
    const tpoint *x = a, *y = b;
    return x->step < y->step ? -1 : x->step > y->step ? 1 : (x->line > y->line) - (x->line < y->line);
}

static int by_step_e(const void *a, const void *b) {
    const epoint *x = a, *y = b;
    return x->step < y->step ? -1 : x->step > y->step ? 1 : (x->line > y->line) - (x->line < y->line);
}

static void left_out(lt_plot_report *r, double step) {
    if (r->nonfinite++ == 0 || step < (double)r->nonfinite_step) r->nonfinite_step = (int64_t)step;
}

/* Whether v is drawn on the loss axis; else counted. */
static bool loss_drawn(double v, double step, bool log_y, lt_plot_report *r) {
    if (!isfinite(v)) return left_out(r, step), false;
    if (log_y && v <= 0) return r->nonpositive++, false;
    return true;
}

static void tidy(plot_log *L, bool log_y, lt_plot_report *r) {
    if (L->nt) qsort(L->t, (size_t)L->nt, sizeof *L->t, by_step_t);
    if (L->ne) qsort(L->e, (size_t)L->ne, sizeof *L->e, by_step_e);
    int64_t k = 0;
    for (int64_t i = 0; i < L->nt; i++) {
        if (i + 1 < L->nt && L->t[i + 1].step == L->t[i].step) { /* a later line for the same step */
            r->duplicates++;
            continue;
        }
        if (loss_drawn(L->t[i].loss, L->t[i].step, log_y, r)) L->t[k++] = L->t[i];
    }
    L->nt = k;
    k = 0;
    for (int64_t i = 0; i < L->ne; i++) {
        if (i + 1 < L->ne && L->e[i + 1].step == L->e[i].step) {
            r->duplicates++;
            continue;
        }
        epoint e = L->e[i];
        if (e.has_loss && !loss_drawn(e.test_loss, e.step, log_y, r)) e.test_loss = NAN;
        if (!isfinite(e.acc)) e.acc = NAN;
        if (!isfinite(e.top5)) e.top5 = NAN;
        if (!isnan(e.test_loss) || !isnan(e.acc) || !isnan(e.top5)) L->e[k++] = e;
    }
    L->ne = k;
    r->steps = L->nt;
    r->evals = L->ne;
}

/* ---- smoothing ---- */

double lt_plot_smooth_weight(int64_t n) {
    double k = (double)n / 40;
    return k < 2 ? 0 : 1 - 2 / (k + 1);
}

static bool smooth(plot_log *L, double w) {
    if (!(L->smooth = malloc(sizeof *L->smooth * (size_t)(L->nt ? L->nt : 1)))) return false;
    double s = 0, wi = 1;
    for (int64_t i = 0; i < L->nt; i++) {
        s = w * s + (1 - w) * L->t[i].loss;
        wi *= w;
        L->smooth[i] = s / (1 - wi);
    }
    return true;
}

/* ---- axes and layout ---- */

enum { MAX_TICKS = 64 };

typedef struct {
    double lo, hi;              /* the axis range (log10 of it for a log axis) */
    bool log;
    int nticks;
    double tick[MAX_TICKS];     /* values (not log10) */
    char label[MAX_TICKS][24];
} axis;

/* A round tick step for range: 1, 2 or 5 times a power of ten, about
 * range / target. */
static double nice_step(double range, int target) {
    double raw = range / target, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

/* A linear axis over [lo, hi] (integer: ticks at whole numbers). */
static void linear_axis(axis *a, double lo, double hi, int target, bool integer, const char *suffix) {
    if (!(hi > lo)) { /* one value: a range around it */
        double d = integer ? 1 : lo != 0 ? fabs(lo) * 0.1 : 1;
        lo -= d, hi += d;
    }
    double step = nice_step(hi - lo, target);
    if (integer && step < 1) step = 1;
    a->log = false;
    a->lo = floor(lo / step + 1e-9) * step;
    a->hi = ceil(hi / step - 1e-9) * step;
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    a->nticks = 0;
    for (int k = 0; a->nticks < MAX_TICKS; k++) {
        double v = a->lo + k * step;
        if (v > a->hi + step * 1e-6) break;
        if (fabs(v) < step * 1e-9) v = 0; /* no "-0.0" */
        a->tick[a->nticks] = v;
        snprintf(a->label[a->nticks], sizeof a->label[0], "%.*f%s", dec, v, suffix);
        a->nticks++;
    }
}

/* A log axis over [lo, hi] (both > 0): whole decades, ticks at powers of
 * ten, and at 2 and 5 times them when there are at most two decades. */
static void log_axis(axis *a, double lo, double hi) {
    double dlo = floor(log10(lo) + 1e-9), dhi = ceil(log10(hi) - 1e-9);
    if (dhi <= dlo) dhi = dlo + 1;
    a->log = true;
    a->lo = dlo, a->hi = dhi;
    a->nticks = 0;
    bool fine = dhi - dlo <= 2;
    for (double d = dlo; d <= dhi && a->nticks < MAX_TICKS - 3; d++)
        for (int m = 1; m <= 5; m++) {
            if (m != 1 && (!fine || d == dhi || (m != 2 && m != 5))) continue;
            double v = m * pow(10, d);
            a->tick[a->nticks] = v;
            snprintf(a->label[a->nticks], sizeof a->label[0], "%g", v);
            a->nticks++;
        }
}

typedef struct {
    double x, y, w, h;          /* the frame */
} frame;

typedef struct {
    int height;
    frame loss, acc;
    bool has_acc, has_top5;
    axis x, y_loss, y_acc;
} layout_t;

/* Where value v of axis a falls in [p0, p0 + len] (p0 at a->lo). */
static double place(const axis *a, double v, double p0, double len) {
    double t = a->log ? log10(v) : v;
    return p0 + (t - a->lo) / (a->hi - a->lo) * len;
}

static double px(const layout_t *l, double step) { return place(&l->x, step, l->loss.x, l->loss.w); }
static double py(const axis *a, const frame *f, double v) { return f->y + f->h - place(a, v, 0, f->h); }

static void layout(const plot_log *L, bool log_y, layout_t *l) {
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY, alo = INFINITY, ahi = -INFINITY;
    for (int64_t i = 0; i < L->nt; i++) {
        xlo = fmin(xlo, L->t[i].step), xhi = fmax(xhi, L->t[i].step);
        ylo = fmin(ylo, L->t[i].loss), yhi = fmax(yhi, L->t[i].loss);
    }
    l->has_acc = l->has_top5 = false;
    for (int64_t i = 0; i < L->ne; i++) {
        const epoint *e = &L->e[i];
        xlo = fmin(xlo, e->step), xhi = fmax(xhi, e->step);
        if (!isnan(e->test_loss)) ylo = fmin(ylo, e->test_loss), yhi = fmax(yhi, e->test_loss);
        if (!isnan(e->acc)) alo = fmin(alo, 100 * e->acc), ahi = fmax(ahi, 100 * e->acc), l->has_acc = true;
        if (!isnan(e->top5)) alo = fmin(alo, 100 * e->top5), ahi = fmax(ahi, 100 * e->top5), l->has_top5 = true;
    }
    if (ylo > yhi) ylo = yhi = log_y ? 1 : 0; /* no loss at all: an empty panel */
    l->loss = (frame){LEFT, TOP, WIDTH - LEFT - RIGHT, LOSS_H};
    l->acc = (frame){LEFT, TOP + LOSS_H + GAP, WIDTH - LEFT - RIGHT, ACC_H};
    bool two = l->has_acc || l->has_top5;
    l->height = (int)((two ? l->acc.y + l->acc.h : l->loss.y + l->loss.h) + BOTTOM);
    linear_axis(&l->x, xlo, xhi, 8, true, "");
    if (log_y) log_axis(&l->y_loss, ylo, yhi);
    else linear_axis(&l->y_loss, ylo, yhi, 6, false, "");
    if (two) { /* room around the points, within 0..100% */
        double pad = fmax(0.1 * (ahi - alo), 1);
        linear_axis(&l->y_acc, fmax(alo - pad, fmin(alo, 0)), ahi <= 100 ? fmin(ahi + pad, 100) : ahi + pad, 4,
                    false, "%");
    }
}

/* ---- drawing ---- */

static void xml_text(FILE *o, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", o); break;
        case '>': fputs("&gt;", o); break;
        case '&': fputs("&amp;", o); break;
        case '"': fputs("&quot;", o); break;
        default:
            if ((unsigned char)*s >= 0x20 || *s == '\t') fputc(*s, o); /* no control characters in XML */
        }
    }
}

/* A panel: grid lines and labels of both axes, the frame, the y title. */
static void draw_panel(FILE *o, const layout_t *l, const frame *f, const axis *y, const char *name, const char *title,
                       bool x_labels) {
    for (int k = 0; k < l->x.nticks; k++) {
        double x = px(l, l->x.tick[k]);
        fprintf(o, "<line class=\"grid-x\" data-value=\"%s\" x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\"/>\n",
                l->x.label[k], x, f->y, x, f->y + f->h, C_GRID);
        if (x_labels)
            fprintf(o, "<text class=\"tick-x\" x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">%s</text>\n", x,
                    f->y + f->h + 16, l->x.label[k]);
    }
    for (int k = 0; k < y->nticks; k++) {
        double yy = py(y, f, y->tick[k]);
        fprintf(o, "<line class=\"grid-%s\" data-value=\"%s\" x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\"/>\n",
                name, y->label[k], f->x, yy, f->x + f->w, yy, C_GRID);
        fprintf(o, "<text class=\"tick-%s\" x=\"%.2f\" y=\"%.2f\" text-anchor=\"end\">%s</text>\n", name, f->x - 6,
                yy + 4, y->label[k]);
    }
    fprintf(o, "<rect class=\"frame\" data-panel=\"%s\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" "
               "stroke=\"#444\"/>\n", name, f->x, f->y, f->w, f->h);
    fprintf(o, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\" transform=\"rotate(-90 %.2f %.2f)\">%s</text>\n",
            f->x - 56, f->y + f->h / 2, f->x - 56, f->y + f->h / 2, title);
}

/* Dashed lines at the last step of each epoch but the last, labelled
 * above the frame with the epoch that starts there. */
static void draw_epochs(FILE *o, const plot_log *L, const layout_t *l, bool two) {
    int64_t marks = 0;
    for (int64_t i = 0; i + 1 < L->nt; i++) marks += L->t[i + 1].epoch > L->t[i].epoch;
    if (marks == 0 || marks > MAX_EPOCH_MARKS) return;
    double bottom = two ? l->acc.y + l->acc.h : l->loss.y + l->loss.h;
    for (int64_t i = 0; i + 1 < L->nt; i++) {
        if (!(L->t[i + 1].epoch > L->t[i].epoch)) continue;
        double x = px(l, L->t[i].step);
        fprintf(o, "<line class=\"epoch\" x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\" "
                   "stroke-dasharray=\"4 3\"/>\n", x, l->loss.y, x, bottom, C_EPOCH);
        if (marks <= 12)
            fprintf(o, "<text x=\"%.2f\" y=\"%.2f\" font-size=\"10\" fill=\"#888\" text-anchor=\"middle\">"
                       "epoch %g</text>\n", x, l->loss.y - 4, L->t[i + 1].epoch);
    }
}

/* A training line (values v, one per training point); with more points
 * than twice the frame's width, the first, lowest, highest and last point
 * of each pixel column, in step order. */
static void draw_train(FILE *o, const plot_log *L, const layout_t *l, const double *v, const char *cls,
                       const char *color, double width) {
    if (L->nt == 0) return;
    fprintf(o, "<polyline class=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"%g\" stroke-linejoin=\"round\" "
               "points=\"", cls, color, width);
    bool thin = L->nt > 2 * (int64_t)l->loss.w;
    for (int64_t i = 0; i < L->nt;) {
        int64_t j = i + 1;
        if (thin) /* the points of this pixel column: [i, j) */
            while (j < L->nt && floor(px(l, L->t[j].step)) == floor(px(l, L->t[i].step))) j++;
        int64_t lo = i, hi = i;
        for (int64_t k = i; k < j; k++) {
            if (v[k] < v[lo]) lo = k;
            if (v[k] > v[hi]) hi = k;
        }
        int64_t keep[4] = {i, lo < hi ? lo : hi, lo < hi ? hi : lo, j - 1};
        for (int q = 0; q < 4; q++) {
            if (q > 0 && keep[q] == keep[q - 1]) continue;
            fprintf(o, "%s%.2f,%.2f", i == 0 && q == 0 ? "" : " ", px(l, L->t[keep[q]].step),
                    py(&l->y_loss, &l->loss, v[keep[q]]));
        }
        i = j;
    }
    fputs("\"/>\n", o);
    if (L->nt == 1) /* a line of one point shows nothing */
        fprintf(o, "<circle class=\"%s\" cx=\"%.2f\" cy=\"%.2f\" r=\"3\" fill=\"%s\"/>\n", cls, px(l, L->t[0].step),
                py(&l->y_loss, &l->loss, v[0]), color);
}

/* The values of one evaluation series (which: 0 test loss, 1 accuracy, 2
 * top-5) as a line and circles. */
static void draw_evals(FILE *o, const plot_log *L, const layout_t *l, int which, const char *cls, const char *color) {
    const axis *a = which == 0 ? &l->y_loss : &l->y_acc;
    const frame *f = which == 0 ? &l->loss : &l->acc;
    double scale = which == 0 ? 1 : 100;
    int64_t n = 0;
    for (int64_t i = 0; i < L->ne; i++) n += !isnan(which == 0 ? L->e[i].test_loss : which == 1 ? L->e[i].acc : L->e[i].top5);
    if (n == 0) return;
    if (n > 1) {
        fprintf(o, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\"%s points=\"", color,
                which == 2 ? " stroke-dasharray=\"5 3\"" : "");
        bool first = true;
        for (int64_t i = 0; i < L->ne; i++) {
            double v = which == 0 ? L->e[i].test_loss : which == 1 ? L->e[i].acc : L->e[i].top5;
            if (isnan(v)) continue;
            fprintf(o, "%s%.2f,%.2f", first ? "" : " ", px(l, L->e[i].step), py(a, f, scale * v));
            first = false;
        }
        fputs("\"/>\n", o);
    }
    for (int64_t i = 0; i < L->ne; i++) {
        double v = which == 0 ? L->e[i].test_loss : which == 1 ? L->e[i].acc : L->e[i].top5;
        if (isnan(v)) continue;
        double x = px(l, L->e[i].step), y = py(a, f, scale * v);
        fprintf(o, "<circle class=\"%s\" cx=\"%.2f\" cy=\"%.2f\" r=\"3.5\" fill=\"%s\"/>\n", cls, x, y, color);
        if (which == 1 && n <= 10) /* a few top-1 accuracies: their values */
            fprintf(o, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"end\" font-size=\"11\" fill=\"%s\">%.2f%%</text>\n",
                    x - 7, y - 6, color, 100 * v);
    }
}

typedef struct {
    const char *text, *color;
    int kind; /* 0 a thin line, 1 a thick line, 2 a dot, 3 a dashed line and a dot */
} legend_item;

/* Whether pixel (x, y) lies in the box [x0, x1] x [y0, y1], widened by 4. */
static bool inside(double x, double y, double x0, double y0, double x1, double y1) {
    return x >= x0 - 4 && x <= x1 + 4 && y >= y0 - 4 && y <= y1 + 4;
}

/* How much of what panel acc (false: the loss panel) shows lies in the box
 * [x0, x1] x [y0, y1]: its points, and points along the evaluation lines. */
static int64_t covered(const plot_log *L, const layout_t *l, bool acc, double x0, double y0, double x1, double y1) {
    int64_t n = 0;
    for (int64_t i = 0; !acc && i < L->nt; i++) {
        double x = px(l, L->t[i].step);
        n += inside(x, py(&l->y_loss, &l->loss, L->t[i].loss), x0, y0, x1, y1);
        if (L->smooth) n += inside(x, py(&l->y_loss, &l->loss, L->smooth[i]), x0, y0, x1, y1);
    }
    for (int which = acc ? 1 : 0; which <= (acc ? 2 : 0); which++) {
        const axis *a = acc ? &l->y_acc : &l->y_loss;
        const frame *f = acc ? &l->acc : &l->loss;
        double scale = acc ? 100 : 1, lx = NAN, ly = NAN;
        for (int64_t i = 0; i < L->ne; i++) {
            double v = which == 0 ? L->e[i].test_loss : which == 1 ? L->e[i].acc : L->e[i].top5;
            if (isnan(v)) continue;
            double x = px(l, L->e[i].step), y = py(a, f, scale * v);
            for (int k = 0; k <= 16; k++) /* the segment from the previous point, or the point */
                if (k == 16 || !isnan(lx)) n += 4 * inside(isnan(lx) ? x : lx + (x - lx) * k / 16,
                                                            isnan(ly) ? y : ly + (y - ly) * k / 16, x0, y0, x1, y1);
            lx = x, ly = y;
        }
    }
    return n;
}

/* A legend in the corner of panel acc (false: loss) that covers least of
 * what it shows, trying the corners in the order given ("tr", "bl", ...). */
static void draw_legend(FILE *o, const plot_log *L, const layout_t *l, bool acc, const legend_item *items, int n,
                        const char *const order[4]) {
    if (n == 0) return;
    const frame *f = acc ? &l->acc : &l->loss;
    double w = 0;
    for (int i = 0; i < n; i++) w = fmax(w, 6.3 * (double)strlen(items[i].text));
    w += 44;
    double h = 18.0 * n + 8, x = 0, y = 0;
    int64_t best = INT64_MAX;
    for (int c = 0; c < 4 && best > 0; c++) {
        double cx = order[c][1] == 'r' ? f->x + f->w - w - 10 : f->x + 10;
        double cy = order[c][0] == 'b' ? f->y + f->h - h - 10 : f->y + 10;
        int64_t k = covered(L, l, acc, cx, cy, cx + w, cy + h);
        if (k < best) best = k, x = cx, y = cy;
    }
    fprintf(o, "<g class=\"legend\"><rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"white\" "
               "fill-opacity=\"0.85\" stroke=\"#ccc\"/>\n", x, y, w, h);
    for (int i = 0; i < n; i++) {
        double yy = y + 14 + 18.0 * i;
        const legend_item *it = &items[i];
        if (it->kind != 2)
            fprintf(o, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\" stroke-width=\"%s\"%s/>\n",
                    x + 8, yy - 4, x + 30, yy - 4, it->color, it->kind == 1 ? "2.2" : "1.5",
                    it->kind == 3 ? " stroke-dasharray=\"5 3\"" : "");
        if (it->kind >= 2)
            fprintf(o, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3.5\" fill=\"%s\"/>\n", x + 19, yy - 4, it->color);
        fprintf(o, "<text x=\"%.2f\" y=\"%.2f\">", x + 36, yy);
        xml_text(o, it->text);
        fputs("</text>\n", o);
    }
    fputs("</g>\n", o);
}

/* The line under the title: what the run came to, and what was left out. */
static void summary(const plot_log *L, const lt_plot_report *r, char *buf, size_t len) {
    size_t at = 0;
#define ADD(...) at += (size_t)snprintf(buf + at, at < len ? len - at : 0, __VA_ARGS__)
    buf[0] = 0;
    if (L->nt) {
        ADD("%lld step%s, last %lld", (long long)L->nt, L->nt == 1 ? "" : "s", (long long)L->t[L->nt - 1].step);
        ADD(", final loss %.4f", L->smooth && r->smooth > 0 ? L->smooth[L->nt - 1] : L->t[L->nt - 1].loss);
        if (r->smooth > 0) ADD(" (smoothed)");
    }
    for (int64_t i = L->ne - 1; i >= 0; i--) {
        const epoint *e = &L->e[i];
        ADD("%stest at step %lld:", at ? "; " : "", (long long)e->step);
        if (!isnan(e->test_loss)) ADD(" loss %.4f", e->test_loss);
        if (!isnan(e->acc)) ADD("%s accuracy %.2f%%", isnan(e->test_loss) ? "" : ",", 100 * e->acc);
        if (!isnan(e->top5)) ADD(", top-5 %.2f%%", 100 * e->top5);
        break;
    }
    if (r->nonfinite) ADD("; %lld value%s not finite, not drawn", (long long)r->nonfinite, r->nonfinite == 1 ? "" : "s");
    if (r->nonpositive) ADD("; %lld loss%s <= 0 not on the log axis", (long long)r->nonpositive,
                            r->nonpositive == 1 ? "" : "es");
#undef ADD
}

static void draw(FILE *o, const plot_log *L, const layout_t *l, const lt_plot_opts *opt, const char *log_path,
                 const lt_plot_report *r) {
    bool two = l->has_acc || l->has_top5;
    fprintf(o, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"sans-serif\" font-size=\"12\" fill=\"#222\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            WIDTH, l->height, WIDTH, l->height);
    const char *base = strrchr(log_path, '/');
    base = base ? base + 1 : log_path;
    /* a long title gets a smaller font (bold sans-serif: about 0.62 em a character) */
    size_t tl = opt->title ? strlen(opt->title) : strlen(base) + 10;
    double fs = fmin(17, (WIDTH - 30) / (0.62 * (double)(tl ? tl : 1)));
    fprintf(o, "<text class=\"title\" x=\"%d\" y=\"26\" text-anchor=\"middle\" font-size=\"%.1f\" "
               "font-weight=\"bold\">", WIDTH / 2, fs);
    if (opt->title) xml_text(o, opt->title);
    else fputs("Training: ", o), xml_text(o, base);
    char sum[512];
    summary(L, r, sum, sizeof sum);
    fprintf(o, "</text>\n<text class=\"summary\" x=\"%d\" y=\"46\" text-anchor=\"middle\" fill=\"#555\">", WIDTH / 2);
    xml_text(o, sum);
    fputs("</text>\n", o);

    draw_panel(o, l, &l->loss, &l->y_loss, "loss", opt->log_y ? "loss (log scale)" : "loss", !two);
    if (two) draw_panel(o, l, &l->acc, &l->y_acc, "accuracy", "test accuracy", true);
    const frame *last = two ? &l->acc : &l->loss;
    fprintf(o, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">step</text>\n", last->x + last->w / 2,
            last->y + last->h + 38);
    draw_epochs(o, L, l, two);

    double *raw = malloc(sizeof *raw * (size_t)(L->nt ? L->nt : 1));
    if (raw) { /* without memory for it, no raw line: the rest still draws */
        for (int64_t i = 0; i < L->nt; i++) raw[i] = L->t[i].loss;
        draw_train(o, L, l, raw, "train-loss", C_RAW, 1);
        free(raw);
    }
    bool smoothed = r->smooth > 0 && L->nt >= 2;
    if (smoothed) draw_train(o, L, l, L->smooth, "train-smooth", C_SMOOTH, 2.2);
    draw_evals(o, L, l, 0, "test-loss", C_TEST);
    if (two) {
        draw_evals(o, L, l, 1, "test-accuracy", C_ACC);
        draw_evals(o, L, l, 2, "test-top5", C_TOP5);
    }

    legend_item items[3];
    char sl[64];
    int n = 0;
    if (L->nt) items[n++] = (legend_item){"training loss (each step)", C_RAW, 0};
    snprintf(sl, sizeof sl, "smoothed (EMA %.3g)", r->smooth);
    if (smoothed) items[n++] = (legend_item){sl, C_SMOOTH, 1};
    bool test_loss = false;
    for (int64_t i = 0; i < L->ne; i++) test_loss |= !isnan(L->e[i].test_loss);
    if (test_loss) items[n++] = (legend_item){"test loss", C_TEST, 2};
    static const char *const loss_corners[4] = {"tr", "tl", "br", "bl"}, *const acc_corners[4] = {"br", "tl", "bl", "tr"};
    draw_legend(o, L, l, false, items, n, loss_corners);
    n = 0;
    if (l->has_acc) items[n++] = (legend_item){"test accuracy (top-1)", C_ACC, 2};
    if (l->has_top5) items[n++] = (legend_item){"top-5", C_TOP5, 3};
    if (two) draw_legend(o, L, l, true, items, n, acc_corners);
    fputs("</svg>\n", o);
}

/* ---- the whole ---- */

int lt_plot_write(const char *log_path, FILE *out, const lt_plot_opts *o, lt_plot_report *rep, char *err,
                  size_t errlen) {
    lt_plot_opts def = {.smooth = -1};
    lt_plot_report r = {0};
    plot_log L = {0};
    layout_t l;
    if (err && errlen) err[0] = 0;
    if (!o) o = &def;
    if (!log_path) return errf(err, errlen, "no log (NULL)"), -1;
    if (o->smooth >= 1 || isnan(o->smooth))
        return errf(err, errlen, "smoothing weight %g: expected 0 <= W < 1", o->smooth), -1;
    int rc = -1;
    if (!read_log(log_path, &L, &r, err, errlen)) goto done;
    tidy(&L, o->log_y, &r);
    if (L.nt == 0 && L.ne == 0) {
        errf(err, errlen, "%s: nothing to draw: every value is %s", log_path,
             o->log_y ? "left out (not finite, or <= 0 on the log axis)" : "null, NaN or infinite");
        goto done;
    }
    r.smooth = o->smooth >= 0 ? o->smooth : lt_plot_smooth_weight(L.nt);
    if (!smooth(&L, r.smooth)) {
        errf(err, errlen, "%s: out of memory", log_path);
        goto done;
    }
    layout(&L, o->log_y, &l);
    draw(out, &L, &l, o, log_path, &r);
    rc = 0;
done:
    if (rep) *rep = r;
    plot_log_free(&L);
    return rc;
}

/* ---- the verb ---- */

static const char *plot_usage =
    "usage: lathe plot LOG [-o OUT.svg] [--title TEXT] [--smooth W] [--log-y]\n"
    "\n"
    "Draws a trainer's --log-file (JSON Lines: a line per step, a line per\n"
    "evaluation) as an SVG picture: the training loss against the step (each\n"
    "step's, light, and a smoothed line over it) with the test loss at each\n"
    "evaluation, and below, the test accuracy (top-1 and top-5) in percent;\n"
    "dashed lines mark the epochs.  Null, NaN and infinite values are left out\n"
    "and counted (in a note here and in the picture); a step logged twice (a\n"
    "resumed run redoes the steps after its last checkpoint) is drawn with its\n"
    "last line.  Any browser shows the SVG.\n"
    "\n"
    "options:\n"
    "  -o, --output OUT   the SVG to write (default: LOG with .svg for its extension;\n"
    "                     - for standard output)\n"
    "  --title TEXT       the title (default: \"Training: \" and LOG's file name)\n"
    "  --smooth W         the smoothed line's weight, 0 <= W < 1: s = W s + (1 - W) loss,\n"
    "                     divided by 1 - W^i as TensorBoard's (default: as wide as a\n"
    "                     moving average over 1/40 of the steps; 0: no smoothed line)\n"
    "  --log-y            a logarithmic loss axis (losses <= 0 are left out, counted)\n"
    "  -h, --help         show this help\n"
    "\n"
    "Exit status: 0 written; 1 a log that cannot be read, a line that is not a log's\n"
    "(the message says LOG:LINE and why), nothing to draw, or OUT not written;\n"
    "2 a bad command line.\n";

/* LOG with its extension (.jsonl, .json, .log, .txt) replaced by .svg. */
static char *default_output(const char *log) {
    size_t n = strlen(log);
    const char *dot = strrchr(log, '.'), *slash = strrchr(log, '/');
    if (dot && (!slash || dot > slash + 1) &&
        (!strcmp(dot, ".jsonl") || !strcmp(dot, ".json") || !strcmp(dot, ".log") || !strcmp(dot, ".txt")))
        n = (size_t)(dot - log);
    char *o = malloc(n + 5);
    if (o) memcpy(o, log, n), memcpy(o + n, ".svg", 5);
    return o;
}

int lt_plot_main(int argc, char **argv) {
    enum { O_TITLE = 1000, O_SMOOTH, O_LOG_Y };
    static const struct option opts[] = {{"output", required_argument, 0, 'o'}, {"title", required_argument, 0, O_TITLE},
                                         {"smooth", required_argument, 0, O_SMOOTH}, {"log-y", no_argument, 0, O_LOG_Y},
                                         {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    lt_plot_opts o = {.smooth = -1};
    const char *out = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case O_TITLE: o.title = optarg; break;
        case O_LOG_Y: o.log_y = true; break;
        case O_SMOOTH: {
            char *end;
            errno = 0;
            o.smooth = strtod(optarg, &end);
            if (end == optarg || *end || errno || !(o.smooth >= 0 && o.smooth < 1)) {
                fprintf(stderr, "lathe plot: bad value '%s' for --smooth (expected a weight, 0 <= W < 1)\n", optarg);
                return 2;
            }
            break;
        }
        case 'h': fputs(plot_usage, stdout); return 0;
        default: fputs(plot_usage, stderr); return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "lathe plot: expected one LOG (a --log-file), got %d\n%s", argc - optind, plot_usage);
        return 2;
    }
    const char *log = argv[optind];
    char *def = out ? NULL : default_output(log);
    if (!out) out = def;
    if (!out) return fputs("lathe plot: out of memory\n", stderr), 1;
    /* the picture in memory first: a failure leaves no half-written file */
    char *svg = NULL, err[1024];
    size_t len = 0;
    FILE *mem = open_memstream(&svg, &len);
    lt_plot_report r;
    int rc = 1;
    if (!mem) {
        fprintf(stderr, "lathe plot: out of memory\n");
        goto done;
    }
    int st = lt_plot_write(log, mem, &o, &r, err, sizeof err);
    if (fclose(mem) != 0 && st == 0) {
        fprintf(stderr, "lathe plot: out of memory\n");
        goto done;
    }
    if (st != 0) {
        fprintf(stderr, "lathe plot: %s\n", err);
        goto done;
    }
    bool to_stdout = !strcmp(out, "-");
    FILE *f = to_stdout ? stdout : fopen(out, "w");
    if (!f || fwrite(svg, 1, len, f) != len || (to_stdout ? fflush(f) : fclose(f)) != 0) {
        fprintf(stderr, "lathe plot: cannot write %s: %s\n", out, strerror(errno));
        if (f && !to_stdout) remove(out);
        goto done;
    }
    if (r.nonfinite)
        fprintf(stderr, "lathe plot: %s: %lld null, NaN or infinite value%s left out (the first at step %lld)\n", log,
                (long long)r.nonfinite, r.nonfinite == 1 ? "" : "s", (long long)r.nonfinite_step);
    if (r.nonpositive)
        fprintf(stderr, "lathe plot: %s: %lld loss%s <= 0 left out of the log axis\n", log, (long long)r.nonpositive,
                r.nonpositive == 1 ? "" : "es");
    if (r.duplicates)
        fprintf(stderr, "lathe plot: %s: %lld line%s for steps logged before (a resumed run): the last of each is "
                        "drawn\n", log, (long long)r.duplicates, r.duplicates == 1 ? "" : "s");
    if (r.ignored)
        fprintf(stderr, "lathe plot: %s: %lld line%s with neither a loss nor a test value ignored\n", log,
                (long long)r.ignored, r.ignored == 1 ? "" : "s");
    if (!to_stdout)
        fprintf(stderr, "lathe plot: wrote %s (%lld step%s, %lld evaluation%s)\n", out, (long long)r.steps,
                r.steps == 1 ? "" : "s", (long long)r.evals, r.evals == 1 ? "" : "s");
    rc = 0;
done:
    free(svg);
    free(def);
    return rc;
}
