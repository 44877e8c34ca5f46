/* test_plot.c - `lathe plot` (compiler/plot.c) on logs written here by
 * hand: the SVG is well-formed (balanced tags, quoted attributes, escaped
 * text); the points of a log whose axes are exactly [0, 100] x [0, 1] sit
 * where the frame says, computed here from the frame alone; the smoothed
 * line is the EMA worked out here; evaluation points and a log axis agree
 * with the grid lines' values; one point, no evaluations, null/NaN/Infinity
 * values, repeated steps and long logs are drawn; bad logs give LOG:LINE
 * messages and write nothing.  The command line's exit statuses are
 * test_cli.sh's. */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <unistd.h>
#include <cmocka.h>

#include "plot.h"

static char tmpdir[256];

static int setup(void **state) {
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/lathe-plot-XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A log file with this text; its path (static buffer). */
static const char *write_log(const char *name, const char *text, size_t len) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return path;
}

/* The SVG of the log at path (a new string), or NULL with the message in err. */
static char *plot(const char *path, const lt_plot_opts *o, lt_plot_report *r, char *err, size_t errlen) {
    char *svg = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&svg, &len);
    assert_non_null(m);
    int rc = lt_plot_write(path, m, o, r, err, errlen);
    assert_int_equal(fclose(m), 0);
    if (rc != 0) {
        assert_int_equal(len, 0); /* nothing written */
        free(svg);
        return NULL;
    }
    return svg;
}

static char *plot_ok(const char *path, const lt_plot_opts *o, lt_plot_report *r) {
    char err[512];
    char *svg = plot(path, o, r, err, sizeof err);
    if (!svg) fail_msg("%s", err);
    return svg;
}

/* ---- reading the SVG back ---- */

/* Well-formed XML as far as an SVG writer can get it wrong: every tag
 * closed in order, one root <svg>, attribute values quoted, no '<' in
 * them, '&' only as an entity, no control characters. */
static void check_xml(const char *s) {
    char stack[32][32];
    int depth = 0, roots = 0;
    for (const char *p = s; *p; p++) {
        if ((unsigned char)*p < 0x20 && *p != '\n' && *p != '\t') fail_msg("control character at %td", p - s);
        if (*p == '&') {
            static const char *const ents[] = {"&lt;", "&gt;", "&amp;", "&quot;"};
            bool ok = false;
            for (int k = 0; k < 4; k++) ok |= !strncmp(p, ents[k], strlen(ents[k]));
            if (!ok) fail_msg("a bare '&' at %td: %.20s", p - s, p);
        }
        if (*p != '<') continue;
        if (p[1] == '?') {
            p = strstr(p, "?>");
            assert_non_null(p);
            p++;
            continue;
        }
        bool closing = p[1] == '/';
        const char *n = p + 1 + closing;
        size_t nl = strcspn(n, " />\n");
        assert_true(nl > 0 && nl < 32);
        const char *q = n + nl;
        bool in_quote = false;
        for (; *q && (in_quote || *q != '>'); q++) {
            if (*q == '"') in_quote = !in_quote;
            else if (in_quote && *q == '<') fail_msg("'<' in an attribute at %td", q - s);
            else if (!in_quote && *q == '=' && q[1] != '"') fail_msg("unquoted attribute at %td", q - s);
        }
        if (!*q) fail_msg("unterminated tag at %td", p - s);
        if (closing) {
            if (depth == 0 || strncmp(stack[depth - 1], n, nl) || stack[depth - 1][nl])
                fail_msg("</%.*s> closes <%s>", (int)nl, n, depth ? stack[depth - 1] : "(nothing)");
            depth--;
        } else if (q[-1] != '/') {
            if (depth == 0) roots++;
            assert_true(depth < 32);
            memcpy(stack[depth], n, nl);
            stack[depth++][nl] = 0;
            if (depth == 1 && strcmp(stack[0], "svg")) fail_msg("the root is <%s>", stack[0]);
        } else if (depth == 0)
            fail_msg("an element outside <svg>");
        p = q;
    }
    if (depth) fail_msg("<%s> is never closed", stack[depth - 1]);
    assert_int_equal(roots, 1);
}

/* The n-th element (from 0) with class="cls", NULL when there are fewer:
 * a pointer to its '<'. */
static const char *element(const char *svg, const char *cls, int n) {
    char key[64];
    snprintf(key, sizeof key, "class=\"%s\"", cls);
    for (const char *p = strstr(svg, key); p; p = strstr(p + 1, key)) {
        if (n-- > 0) continue;
        while (p > svg && *p != '<') p--;
        return p;
    }
    return NULL;
}

static int count(const char *svg, const char *cls) {
    int n = 0;
    while (element(svg, cls, n)) n++;
    return n;
}

/* Attribute name of the element at e, as a string (static buffer), or NULL. */
static const char *attr(const char *e, const char *name) {
    static char val[1 << 20];
    char key[64];
    snprintf(key, sizeof key, " %s=\"", name);
    const char *end = strchr(e, '>'), *p = strstr(e, key);
    if (!p || p > end) return NULL;
    p += strlen(key);
    size_t n = strcspn(p, "\"");
    assert_true(n < sizeof val);
    memcpy(val, p, n);
    val[n] = 0;
    return val;
}

static double num(const char *e, const char *name) {
    const char *v = attr(e, name);
    if (!v) fail_msg("no attribute %s in %.80s", name, e);
    return atof(v);
}

typedef struct {
    double x, y, w, h;
} box;

/* The frame of panel name. */
static box frame_of(const char *svg, const char *name) {
    for (int i = 0; element(svg, "frame", i); i++) {
        const char *e = element(svg, "frame", i);
        if (!strcmp(attr(e, "data-panel"), name)) return (box){num(e, "x"), num(e, "y"), num(e, "width"), num(e, "height")};
    }
    fail_msg("no frame for panel %s", name);
    return (box){0};
}

/* The points of the first polyline with class cls: up to max pairs into
 * xs, ys; the count. */
static int polyline(const char *svg, const char *cls, double *xs, double *ys, int max) {
    const char *e = element(svg, cls, 0);
    if (!e) fail_msg("no polyline %s", cls);
    const char *p = attr(e, "points");
    assert_non_null(p);
    int n = 0;
    while (*p) {
        char *end;
        double x = strtod(p, &end);
        assert_true(*end == ',');
        double y = strtod(end + 1, &end);
        if (n < max) xs[n] = x, ys[n] = y;
        n++;
        p = end;
        while (*p == ' ') p++;
    }
    return n;
}

/* The grid lines of axis cls ("grid-x", "grid-loss", "grid-accuracy"):
 * values (a trailing % dropped) and positions (x for grid-x, else y). */
static int grid(const char *svg, const char *cls, double *val, double *pos, int max) {
    int n = 0;
    for (const char *e; (e = element(svg, cls, n)) && n < max; n++) {
        val[n] = atof(attr(e, "data-value"));
        pos[n] = num(e, strcmp(cls, "grid-x") ? "y1" : "x1");
    }
    return n;
}

#define NEAR(a, b) (fabs((a) - (b)) <= 0.006) /* two decimals in the file */

/* ---- the tests ---- */

/* Steps 0..100, losses 1..0: the axes are exactly [0, 100] and [0, 1] (a
 * round range is its own nice range), so every point's place follows from
 * the frame: x = left + step / 100 * width, y = bottom - loss * height. */
static void test_points(void **state) {
    (void)state;
    static const double steps[5] = {0, 25, 50, 75, 100}, losses[5] = {1, 0.5, 0.75, 0.25, 0};
    char text[4096] = "";
    for (int i = 0; i < 5; i++)
        snprintf(text + strlen(text), sizeof text - strlen(text),
                 "{\"step\": %g, \"epoch\": %d, \"lr\": 0.1, \"loss\": %g, \"samples_per_s\": 1000}\n", steps[i],
                 i < 3 ? 1 : 2, losses[i]);
    strcat(text, "{\"step\": 50, \"epoch\": 1, \"train_loss\": 0.7, \"test_loss\": 0.5, \"test_accuracy\": 0.8, "
                 "\"test_top5\": 0.95}\n"
                 "{\"step\": 100, \"epoch\": 2, \"train_loss\": 0.3, \"test_loss\": 0.25, \"test_accuracy\": 0.9, "
                 "\"test_top5\": 1}\n");
    const char *path = write_log("points.jsonl", text, strlen(text));
    lt_plot_opts o = {.smooth = 0.5};
    lt_plot_report r;
    char *svg = plot_ok(path, &o, &r);
    check_xml(svg);
    assert_int_equal(r.steps, 5);
    assert_int_equal(r.evals, 2);
    assert_true(r.smooth == 0.5);

    box f = frame_of(svg, "loss");
    double v[64], pos[64];
    int n = grid(svg, "grid-loss", v, pos, 64);
    assert_true(n >= 3 && v[0] == 0 && v[n - 1] == 1); /* the axis is [0, 1] */
    n = grid(svg, "grid-x", v, pos, 64);
    assert_true(n >= 3 && v[0] == 0);
    for (int k = 0; k < n; k++) assert_true(NEAR(pos[k], f.x + v[k] / 100 * f.w)); /* and [0, 100] */
    assert_true(v[n - 1] == 100);
    double xs[16], ys[16];
    assert_int_equal(polyline(svg, "train-loss", xs, ys, 16), 5);
    for (int i = 0; i < 5; i++)
        if (!NEAR(xs[i], f.x + steps[i] / 100 * f.w) || !NEAR(ys[i], f.y + f.h - losses[i] * f.h))
            fail_msg("point %d at (%.2f, %.2f), expected (%.2f, %.2f)", i, xs[i], ys[i], f.x + steps[i] / 100 * f.w,
                     f.y + f.h - losses[i] * f.h);
    /* the EMA with weight 0.5, debiased: 1, (0.25 + 0.25) / 0.75, ... */
    assert_int_equal(polyline(svg, "train-smooth", xs, ys, 16), 5);
    double s = 0, w = 1;
    for (int i = 0; i < 5; i++) {
        s = 0.5 * s + 0.5 * losses[i], w *= 0.5;
        double want = s / (1 - w);
        if (!NEAR(ys[i], f.y + f.h - want * f.h)) fail_msg("smoothed point %d at y %.2f, expected loss %g", i, ys[i], want);
    }
    assert_true(NEAR(ys[1], f.y + f.h - (2.0 / 3) * f.h)); /* by hand: (0.25 + 0.25) / 0.75 */
    /* test losses at steps 50 and 100 */
    assert_int_equal(count(svg, "test-loss"), 2);
    const char *c = element(svg, "test-loss", 0);
    assert_true(NEAR(num(c, "cx"), f.x + 0.5 * f.w) && NEAR(num(c, "cy"), f.y + 0.5 * f.h));
    c = element(svg, "test-loss", 1);
    assert_true(NEAR(num(c, "cx"), f.x + f.w) && NEAR(num(c, "cy"), f.y + 0.75 * f.h));
    /* an epoch ends at step 50 */
    assert_int_equal(count(svg, "epoch"), 1);
    assert_true(NEAR(num(element(svg, "epoch", 0), "x1"), f.x + 0.5 * f.w));

    /* accuracy in percent, on the second panel: its grid lines are round,
     * evenly spaced, cover 80..100, and the points sit on their scale */
    box a = frame_of(svg, "accuracy");
    assert_true(a.y > f.y + f.h);
    n = grid(svg, "grid-accuracy", v, pos, 64);
    assert_true(n >= 3);
    double step = v[1] - v[0], mag = pow(10, floor(log10(step))), m = step / mag;
    assert_true(fabs(m - 1) < 1e-9 || fabs(m - 2) < 1e-9 || fabs(m - 5) < 1e-9);
    assert_true(v[0] <= 80 && v[n - 1] >= 100 && v[n - 1] <= 100 + step);
    assert_true(NEAR(pos[0], a.y + a.h) && NEAR(pos[n - 1], a.y));
    for (int k = 1; k < n; k++) assert_true(fabs(v[k] - v[k - 1] - step) < 1e-9);
    static const struct {
        const char *cls;
        double step, pct;
    } acc[] = {{"test-accuracy", 50, 80}, {"test-accuracy", 100, 90}, {"test-top5", 50, 95}, {"test-top5", 100, 100}};
    for (int i = 0; i < 4; i++) {
        c = element(svg, acc[i].cls, i % 2);
        double want = pos[0] + (acc[i].pct - v[0]) / (v[n - 1] - v[0]) * (pos[n - 1] - pos[0]);
        if (!NEAR(num(c, "cy"), want) || !NEAR(num(c, "cx"), f.x + acc[i].step / 100 * f.w))
            fail_msg("%s %g%% at step %g: (%.2f, %.2f), expected y %.2f", acc[i].cls, acc[i].pct, acc[i].step,
                     num(c, "cx"), num(c, "cy"), want);
    }
    free(svg);
}

/* --log-y: decades, points on their log10, losses <= 0 left out */
static void test_log_axis(void **state) {
    (void)state;
    const char *text = "{\"step\": 1, \"loss\": 10}\n{\"step\": 2, \"loss\": 1}\n{\"step\": 3, \"loss\": 0.1}\n"
                       "{\"step\": 4, \"loss\": 0.01}\n{\"step\": 5, \"loss\": 0}\n{\"step\": 6, \"loss\": -1}\n";
    const char *path = write_log("log.jsonl", text, strlen(text));
    lt_plot_opts o = {.smooth = 0, .log_y = true};
    lt_plot_report r;
    char *svg = plot_ok(path, &o, &r);
    check_xml(svg);
    assert_int_equal(r.steps, 4);
    assert_int_equal(r.nonpositive, 2);
    assert_null(element(svg, "train-smooth", 0)); /* --smooth 0 */
    double v[64], pos[64], xs[8], ys[8];
    int n = grid(svg, "grid-loss", v, pos, 64);
    static const double decades[4] = {0.01, 0.1, 1, 10};
    assert_int_equal(n, 4);
    for (int k = 0; k < 4; k++) assert_true(fabs(v[k] - decades[k]) < 1e-12);
    box f = frame_of(svg, "loss");
    assert_int_equal(polyline(svg, "train-loss", xs, ys, 8), 4);
    for (int i = 0; i < 4; i++) /* evenly spaced, a third of the height apart: 10 at the top */
        assert_true(NEAR(ys[i], f.y + f.h * i / 3.0));
    assert_non_null(strstr(svg, "2 losses &lt;= 0 not on the log axis"));
    free(svg);
}

/* What a log can hold besides a clean run */
static void test_odd_logs(void **state) {
    (void)state;
    lt_plot_report r;
    /* one point: a dot; no evaluation: one panel */
    const char *path = write_log("one.jsonl", "{\"step\": 7, \"loss\": 0.5}\n", 25);
    char *svg = plot_ok(path, NULL, &r);
    check_xml(svg);
    assert_int_equal(r.steps, 1);
    assert_int_equal(count(svg, "frame"), 1);
    assert_null(element(svg, "train-smooth", 0));
    const char *dot = strstr(svg, "<circle class=\"train-loss\"");
    assert_non_null(dot);
    box f = frame_of(svg, "loss");
    double v[64], pos[64];
    int n = grid(svg, "grid-x", v, pos, 64);
    double want = pos[0] + (7 - v[0]) / (v[n - 1] - v[0]) * (pos[n - 1] - pos[0]);
    assert_true(v[0] < 7 && v[n - 1] > 7 && NEAR(num(dot, "cx"), want) && num(dot, "cy") > f.y &&
                num(dot, "cy") < f.y + f.h);
    assert_non_null(strstr(svg, "Training: one.jsonl"));
    free(svg);

    /* null, NaN and Infinity (Python's json) left out and counted; CRLF, blank lines, other lines */
    const char *text = "{\"step\": 1, \"loss\": 2}\r\n\r\n{\"step\": 2, \"loss\": NaN}\r\n"
                       "{\"step\": 3, \"loss\": null, \"note\": \"NaN Infinity\"}\n   \n"
                       "{\"step\": 4, \"loss\": -Infinity}\n{\"step\": 5, \"loss\": 1}\n{\"step\": 5, \"lr\": 0.1}\n"
                       "{\"step\": 6, \"loss\": 1e999}\n";
    path = write_log("nan.jsonl", text, strlen(text));
    svg = plot_ok(path, NULL, &r);
    check_xml(svg);
    assert_int_equal(r.steps, 2);
    assert_int_equal(r.nonfinite, 4);
    assert_int_equal(r.nonfinite_step, 2);
    assert_int_equal(r.ignored, 1);
    assert_non_null(strstr(svg, "4 values not finite, not drawn"));
    free(svg);

    /* a step logged again (a run resumed from an earlier checkpoint): the later line wins */
    char big[8192] = "";
    for (int s = 1; s <= 10; s++) snprintf(big + strlen(big), sizeof big - strlen(big), "{\"step\": %d, \"loss\": 1}\n", s);
    for (int s = 6; s <= 12; s++) snprintf(big + strlen(big), sizeof big - strlen(big), "{\"step\": %d, \"loss\": 2}\n", s);
    path = write_log("resumed.jsonl", big, strlen(big));
    lt_plot_opts o = {.smooth = 0};
    svg = plot_ok(path, &o, &r);
    assert_int_equal(r.steps, 12);
    assert_int_equal(r.duplicates, 5);
    double xs[32], ys[32];
    assert_int_equal(polyline(svg, "train-loss", xs, ys, 32), 12);
    for (int i = 1; i < 12; i++) assert_true(xs[i] > xs[i - 1]); /* in step order */
    for (int i = 0; i < 12; i++) assert_true(NEAR(ys[i], ys[i < 5 ? 0 : 11])); /* steps 6.. at loss 2 */
    assert_true(ys[0] > ys[11]);
    free(svg);

    /* a title with markup is escaped */
    o = (lt_plot_opts){.smooth = -1, .title = "<a & \"b\">"};
    svg = plot_ok(path, &o, &r);
    check_xml(svg);
    assert_non_null(strstr(svg, "&lt;a &amp; &quot;b&quot;&gt;"));
    free(svg);

    /* a long run: at most four points per pixel column, first and last kept */
    enum { N = 20000 };
    FILE *lf;
    char lpath[512];
    snprintf(lpath, sizeof lpath, "%s/long.jsonl", tmpdir);
    assert_non_null(lf = fopen(lpath, "w"));
    for (int s = 1; s <= N; s++) fprintf(lf, "{\"step\": %d, \"loss\": %g}\n", s, 1 + sin(s * 0.01) + (s % 7) * 0.01);
    fclose(lf);
    svg = plot_ok(lpath, NULL, &r);
    check_xml(svg);
    assert_int_equal(r.steps, N);
    static double lx[N], ly[N];
    f = frame_of(svg, "loss");
    n = polyline(svg, "train-loss", lx, ly, N);
    assert_true(n > f.w && n <= 4 * (f.w + 1));
    n = grid(svg, "grid-x", v, pos, 64);
    assert_true(NEAR(lx[0], pos[0] + (1 - v[0]) / (v[n - 1] - v[0]) * (pos[n - 1] - pos[0])));
    assert_int_equal(count(svg, "train-smooth"), 1);
    free(svg);
}

/* Bad logs: LOG:LINE and what is wrong, nothing written */
static void test_errors(void **state) {
    (void)state;
    static const struct {
        const char *text;
        size_t len; /* 0: strlen */
        const char *expect;
    } bad[] = {
        {"{\"step\": 1, \"loss\": 2}\n{\"step\": 2, \"loss\": 1\n", 0,
         "bad.jsonl:2: not valid JSON at column 22 (a --log-file line is one JSON object)"},
        {"not json\n", 0, "bad.jsonl:1: not valid JSON at column 1"},
        {"{\"step\": 1, \"loss\": 2} x\n", 0, "bad.jsonl:1: not valid JSON"},
        {"\n\n[1, 2]\n", 0, "bad.jsonl:3: a JSON value that is not an object"},
        {"{\"loss\": 1}\n", 0, "bad.jsonl:1: no \"step\" number"},
        {"{\"step\": \"1\", \"loss\": 1}\n", 0, "bad.jsonl:1: \"step\" is a string; expected a number or null"},
        {"{\"step\": null, \"loss\": 1}\n", 0, "bad.jsonl:1: no \"step\" number"},
        {"{\"step\": 1, \"loss\": [1]}\n", 0, "bad.jsonl:1: \"loss\" is an array; expected a number or null"},
        {"{\"step\": 1, \"test_accuracy\": true}\n", 0, "\"test_accuracy\" is a boolean"},
        {"{\"step\": 1, \"loss\": 1}\n{\"st\0ep\": 2}\n", 34, "bad.jsonl:2: a NUL byte"},
        {"", 0, "bad.jsonl: nothing to draw: no line with a \"loss\" or a test value (0 lines)"},
        {"{\"step\": 1, \"lr\": 0.1}\n", 0, "nothing to draw: no line with a \"loss\" or a test value (1 line)"},
        {"{\"step\": 1, \"loss\": null}\n{\"step\": 2, \"test_loss\": NaN}\n", 0,
         "bad.jsonl: nothing to draw: every value is null, NaN or infinite"},
    };
    char err[512];
    lt_plot_report r;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *path = write_log("bad.jsonl", bad[i].text, bad[i].len ? bad[i].len : strlen(bad[i].text));
        err[0] = 0;
        char *svg = plot(path, NULL, &r, err, sizeof err);
        if (svg) fail_msg("row %zu: drawn", i);
        if (!strstr(err, bad[i].expect) || strncmp(err, path, strlen(path)))
            fail_msg("row %zu: message\n  %s\nwithout\n  %s", i, err, bad[i].expect);
    }
    char missing[600];
    snprintf(missing, sizeof missing, "%s/missing.jsonl", tmpdir);
    assert_null(plot(missing, NULL, &r, err, sizeof err));
    assert_non_null(strstr(err, "missing.jsonl: cannot open: No such file or directory"));
    const char *path = write_log("ok.jsonl", "{\"step\": 1, \"loss\": 1}\n", 23);
    lt_plot_opts o = {.smooth = 1};
    assert_null(plot(path, &o, &r, err, sizeof err));
    assert_non_null(strstr(err, "smoothing weight 1: expected 0 <= W < 1"));
    /* the automatic weight: a moving average over 1/40 of the points */
    assert_true(lt_plot_smooth_weight(79) == 0);
    assert_true(fabs(lt_plot_smooth_weight(400) - (1 - 2.0 / 11)) < 1e-15);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_points),
        cmocka_unit_test(test_log_axis),
        cmocka_unit_test(test_odd_logs),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
