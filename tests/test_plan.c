/* test_plan.c - the static memory plan.
 *
 * Hand-made cases with offsets worked out on paper, one row each; then random
 * buffer sets checked by an independent brute-force checker (no two buffers
 * that live at the same step share a byte unless one takes the other in place
 * under the hint's conditions; offsets aligned; the arena between the most
 * bytes live at one step and the sum of sizes); determinism; the printed
 * table; and 5000 buffers, about twice a ResNet-18 training step. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "plan.h"

enum { IN = -1, OUT = LT_PLAN_FOREVER, MAXB = 8 };

#define B(sz, f, l, ip) {.label = #sz, .size = (sz), .first = (f), .last = (l), .inplace_of = (ip)}

typedef struct {
    const char *name;
    int n;
    lt_buf bufs[MAXB];
    int64_t offsets[MAXB];
    int shared[MAXB];   /* expected shared_with, written NONE or OF(j) */
    int64_t total;
} plan_case;

/* Rows spell shared_with as j + 1, so that a zero-filled row means none. */
#define NONE 0
#define OF(j) ((j) + 1)

static const plan_case cases[] = {
    {"empty", 0, {{0}}, {0}, {0}, 0},
    {"one buffer", 1, {B(100, 0, 0, -1)}, {0}, {NONE}, 128},
    /* A and C do not live together (1 < 2); B lives with both. */
    {"chain: first and third share", 3,
     {B(100, 0, 1, -1), B(100, 1, 2, -1), B(100, 2, 3, -1)}, {0, 128, 0}, {NONE}, 256},
    /* Larger first: Y at 0, X after it at align(3000) = 3008; 3008+1000 -> 4032. */
    {"two overlapping", 2, {B(1000, 0, 5, -1), B(3000, 2, 3, -1)}, {3008, 0}, {NONE}, 4032},
    /* A [0,1] at 0, B [0,3] at 1024, C [2,3] lives only with B: the gap below B. */
    {"small fills the gap", 3,
     {B(1000, 0, 1, -1), B(500, 0, 3, -1), B(400, 2, 3, -1)}, {0, 1024, 0}, {NONE}, 1536},
    /* C lives only with B: the gap below B is exactly C's size. */
    {"exact gap", 3, {B(128, 0, 0, -1), B(128, 0, 1, -1), B(128, 1, 1, -1)}, {0, 128, 0}, {NONE}, 256},
    /* B reads A at step 2 element by element: in place, C beside them. */
    {"in place taken", 3,
     {B(256, IN, 2, -1), B(256, 2, 4, 0), B(256, 0, 3, -1)}, {0, 0, 256}, {NONE, OF(0), NONE}, 512},
    /* Same without the hint: B lives with A (step 2) and C. */
    {"no hint, same buffers", 3,
     {B(256, IN, 2, -1), B(256, 2, 4, -1), B(256, 0, 3, -1)}, {0, 256, 512}, {NONE}, 768},
    {"in place refused: sizes differ", 3,
     {B(256, IN, 2, -1), B(192, 2, 4, 0), B(256, 0, 3, -1)}, {0, 512, 256}, {NONE}, 704},
    /* A's last use (3) is not B's defining step (2). */
    {"in place refused: lifetimes differ", 2,
     {B(256, IN, 3, -1), B(256, 2, 4, 0)}, {0, 256}, {NONE}, 512},
    /* D [2,3] sits at 0 (it does not live with A); B [1,4] lives with D, so
     * A's offset is refused and B goes above D. */
    {"in place refused: a third buffer", 3,
     {B(256, IN, 1, -1), B(256, 1, 4, 0), B(512, 2, 3, -1)}, {0, 512, 0}, {NONE}, 768},
    /* Two candidates for one target: the first takes it. */
    {"in place target taken once", 3,
     {B(256, IN, 2, -1), B(256, 2, 3, 0), B(256, 2, 3, 0)}, {0, 0, 256}, {NONE, OF(0), NONE}, 512},
    /* The candidate (#0) sorts before its target (#1): it waits for it. */
    {"in place target placed later", 3,
     {B(128, 3, 5, 1), B(128, 0, 3, -1), B(128, 1, 4, -1)}, {0, 0, 128}, {OF(1), NONE, NONE}, 256},
    /* relu(relu(x)) in place, then a buffer living throughout. */
    {"in place chain", 4,
     {B(1024, IN, 1, -1), B(1024, 1, 2, 0), B(1024, 2, OUT, 1), B(64, IN, OUT, -1)},
     {0, 0, 0, 1024}, {NONE, OF(0), OF(1), NONE}, 1088},
    /* A cycle of hints (both live only at step 2): placed in order at the end. */
    {"in place cycle", 2, {B(64, 2, 2, 1), B(64, 2, 2, 0)}, {0, 0}, {NONE, OF(0)}, 64},
    {"zero size", 3, {B(0, 0, 5, -1), B(100, 0, 5, -1), B(0, IN, OUT, 1)}, {0, 0, 0}, {NONE}, 128},
    {"only zero size", 2, {B(0, 0, 5, -1), B(0, 0, 5, -1)}, {0, 0}, {NONE}, 0},
    /* All live together; 65 at 0, 63 at 128, 1 at 192, end 193 -> 256. */
    {"odd sizes aligned", 3, {B(1, 0, 0, -1), B(63, 0, 0, -1), B(65, 0, 0, -1)}, {192, 128, 0}, {NONE}, 256},
    {"forever and before", 3,
     {B(64, IN, OUT, -1), B(64, IN, 0, -1), B(64, 1, OUT, -1)}, {0, 64, 64}, {NONE}, 128},
    {"too big", 1, {B(INT64_MAX, 0, 0, -1)}, {0}, {NONE}, -1},
    {"offset overflows", 2, {B(INT64_MAX / 2, 0, 0, -1), B(INT64_MAX / 2, 0, 0, -1)}, {0}, {NONE}, -1},
    {"negative size", 1, {B(-1, 0, 0, -1)}, {0}, {NONE}, -1},
    {"first after last", 1, {B(64, 3, 2, -1)}, {0}, {NONE}, -1},
    {"hint out of range", 1, {B(64, 0, 1, 1)}, {0}, {NONE}, -1},
    {"hint to itself", 1, {B(64, 0, 1, 0)}, {0}, {NONE}, -1},
};

static void test_cases(void **state) {
    (void)state;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const plan_case *pc = &cases[c];
        lt_buf bufs[MAXB];
        memcpy(bufs, pc->bufs, sizeof bufs);
        for (int i = 0; i < pc->n; i++) bufs[i].offset = bufs[i].shared_with = 12345;
        int64_t total = lt_plan(bufs, pc->n);
        if (total != pc->total) fail_msg("%s: total %lld, want %lld", pc->name, (long long)total, (long long)pc->total);
        if (total < 0) continue;
        for (int i = 0; i < pc->n; i++) {
            if (bufs[i].offset != pc->offsets[i])
                fail_msg("%s: #%d at %lld, want %lld", pc->name, i, (long long)bufs[i].offset,
                         (long long)pc->offsets[i]);
            if (bufs[i].shared_with != pc->shared[i] - 1)
                fail_msg("%s: #%d shared_with %d, want %d", pc->name, i, bufs[i].shared_with, pc->shared[i] - 1);
        }
    }
}

/* ---- random sets and the brute-force checker --------------------------- */

static uint64_t next(uint64_t *s) {  /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

static int below(uint64_t *s, int n) { return (int)(next(s) % (uint64_t)n); }

static int64_t round64(int64_t x) { return (x + 63) / 64 * 64; }

/* n buffers over nsteps steps: parameters and inputs (from before the run),
 * outputs (kept after it), intermediates, odd and zero sizes, and hints that
 * can apply (same size, defined where the target dies) mixed with hints that
 * cannot. */
static void random_bufs(lt_buf *b, int n, int nsteps, int64_t maxsize, uint64_t *s) {
    for (int i = 0; i < n; i++) {
        lt_buf *x = &b[i];
        *x = (lt_buf){.label = "r", .inplace_of = -1};
        int kind = below(s, 10);
        x->size = kind == 0 ? 0 : kind == 1 ? 1 + below(s, 200) : 1 + (int64_t)(next(s) % (uint64_t)maxsize);
        if (below(s, 8) == 0) x->size = round64(x->size);
        x->first = below(s, 6) == 0 ? IN : below(s, nsteps);
        int span = below(s, 3) == 0 ? nsteps : 1 + nsteps / 8;
        x->last = x->first + below(s, span);
        if (x->last < x->first) x->last = x->first;
        if (x->last >= nsteps || below(s, 12) == 0) x->last = OUT;
        if (i > 0 && below(s, 3) == 0) {
            int j = below(s, i);
            if (below(s, 4) != 0 && b[j].last < OUT) {  /* a hint that can apply */
                x->size = b[j].size;
                x->first = b[j].last;
                x->last = x->first + below(s, 1 + nsteps / 8);
            }
            x->inplace_of = j;
        }
        /* sometimes point a hint forward (the target sorts later) */
        if (i > 0 && below(s, 10) == 0 && b[i - 1].inplace_of < 0 && x->last < OUT) {
            b[i - 1].inplace_of = i;
            b[i - 1].size = x->size;
            b[i - 1].first = x->last;
            if (b[i - 1].last < b[i - 1].first) b[i - 1].last = b[i - 1].first;
        }
    }
}

static int lives(const lt_buf *a, const lt_buf *b) { return a->first <= b->last && b->first <= a->last; }

/* Checks a plan without trusting the planner's bookkeeping; returns NULL or
 * what is wrong. */
static const char *check_plan(const lt_buf *b, int n, int64_t total, int64_t *peak_out, char *msg, size_t cap) {
    if (total < 0) return "planning failed";
    if (total % LT_PLAN_ALIGN) return "total not aligned";
    int64_t sum = 0, end = 0;
    for (int i = 0; i < n; i++) {
        if (b[i].offset < 0 || b[i].offset % LT_PLAN_ALIGN) {
            snprintf(msg, cap, "#%d at unaligned offset %lld", i, (long long)b[i].offset);
            return msg;
        }
        if (b[i].size == 0 && (b[i].offset != 0 || b[i].shared_with != -1)) return "zero-size buffer placed";
        if (b[i].offset + b[i].size > total) {
            snprintf(msg, cap, "#%d ends at %lld past the total %lld", i, (long long)(b[i].offset + b[i].size),
                     (long long)total);
            return msg;
        }
        if (b[i].size > 0 && b[i].offset + b[i].size > end) end = b[i].offset + b[i].size;
        sum += round64(b[i].size);
        int j = b[i].shared_with;
        if (j == -1) continue;
        if (j < 0 || j >= n || j == i || b[i].inplace_of != j || b[j].size != b[i].size ||
            b[j].last != b[i].first || b[j].offset != b[i].offset) {
            snprintf(msg, cap, "#%d shares #%d against the hint's conditions", i, j);
            return msg;
        }
        for (int k = 0; k < i; k++)
            if (b[k].shared_with == j) {
                snprintf(msg, cap, "#%d and #%d both share #%d", k, i, j);
                return msg;
            }
    }
    if (total != round64(end)) return "total is not the aligned end of the last buffer";
    if (total > sum) return "total above the sum of aligned sizes";
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            const lt_buf *x = &b[i], *y = &b[j];
            if (!x->size || !y->size || !lives(x, y)) continue;
            if (x->offset < y->offset + y->size && y->offset < x->offset + x->size &&
                x->shared_with != j && y->shared_with != i) {
                snprintf(msg, cap, "#%d [%d,%d] @%lld+%lld and #%d [%d,%d] @%lld+%lld overlap", i, x->first,
                         x->last, (long long)x->offset, (long long)x->size, j, y->first, y->last,
                         (long long)y->offset, (long long)y->size);
                return msg;
            }
        }
    /* Lower bound: at each step the bytes of the live buffers, a sharer not
     * counted when its target is live too (they are one block).  The live
     * set only grows at some buffer's first step. */
    int64_t peak = 0;
    for (int t = 0; t < n; t++) {
        int step = b[t].first;
        int64_t live = 0;
        for (int i = 0; i < n; i++) {
            if (b[i].first > step || b[i].last < step) continue;
            int j = b[i].shared_with;
            if (j >= 0 && b[j].first <= step && step <= b[j].last) continue;
            live += b[i].size;
        }
        if (live > peak) peak = live;
    }
    if (peak_out) *peak_out = peak;
    if (total < peak) {
        snprintf(msg, cap, "total %lld below the %lld bytes live at one step", (long long)total, (long long)peak);
        return msg;
    }
    return NULL;
}

static void test_random(void **state) {
    (void)state;
    uint64_t s = 0x1a7e5eedULL;
    lt_buf b[120];
    char msg[256];
    int shared = 0, hinted = 0;
    for (int iter = 0; iter < 2000; iter++) {
        int n = 1 + below(&s, 120), nsteps = 1 + below(&s, 2 * n);
        int64_t maxsize = iter % 3 == 0 ? 300 : iter % 3 == 1 ? 100000 : 1 << 26;
        random_bufs(b, n, nsteps, maxsize, &s);
        int64_t total = lt_plan(b, n);
        const char *err = check_plan(b, n, total, NULL, msg, sizeof msg);
        if (err) fail_msg("iteration %d (n %d): %s", iter, n, err);
        for (int i = 0; i < n; i++) {
            shared += b[i].shared_with >= 0;
            hinted += b[i].inplace_of >= 0;
        }
    }
    /* the generator must exercise the hint both ways */
    assert_true(shared > 1000);
    assert_true(hinted - shared > 1000);
}

static void test_deterministic(void **state) {
    (void)state;
    uint64_t s = 42;
    lt_buf a[300], b[300];
    for (int iter = 0; iter < 20; iter++) {
        random_bufs(a, 300, 200, 1 << 20, &s);
        memcpy(b, a, sizeof a);
        for (int i = 0; i < 300; i++) b[i].offset = -7;  /* stale outputs must not matter */
        int64_t ta = lt_plan(a, 300), tb = lt_plan(b, 300);
        assert_true(ta > 0);
        assert_int_equal(ta, tb);
        for (int i = 0; i < 300; i++) {
            assert_int_equal(a[i].offset, b[i].offset);
            assert_int_equal(a[i].shared_with, b[i].shared_with);
        }
    }
}

/* ---- the printed table -------------------------------------------------- */

static void test_print(void **state) {
    (void)state;
    lt_buf b[] = {
        {.label = "param conv1.weight", .size = 4 << 20, .first = IN, .last = OUT, .inplace_of = -1},
        {.label = "%3 conv2d", .size = 3000, .first = 0, .last = 2, .inplace_of = -1},
        {.label = "%4 relu", .size = 3000, .first = 2, .last = 3, .inplace_of = 1},
        {.label = "%5 sum", .size = 4, .first = 3, .last = OUT, .inplace_of = -1},
        {.label = NULL, .size = 0, .first = 1, .last = 1, .inplace_of = -1},
    };
    int n = (int)(sizeof b / sizeof b[0]);
    int64_t total = lt_plan(b, n);
    assert_int_equal(total, (4 << 20) + 3008 + 64);
    assert_int_equal(b[2].shared_with, 1);

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    lt_plan_print(f, b, n, total);
    fclose(f);

    char want[200];
    snprintf(want, sizeof want, "total: %lld bytes (4.00 MiB) in 5 buffers; sum of sizes %lld bytes (reuse saves",
             (long long)total, (long long)((4 << 20) + 6004));
    if (!strstr(text, want)) fail_msg("no total line %s in:\n%s", want, text);
    for (int i = 0; i < n - 1; i++)
        if (!strstr(text, b[i].label)) fail_msg("no label %s in:\n%s", b[i].label, text);
    const char *bits[] = {"in-place of #1", "in..out", "0..2", "3..out", "4.0 MiB", "2.9 KiB", "4 B"};
    for (size_t i = 0; i < sizeof bits / sizeof bits[0]; i++)
        if (!strstr(text, bits[i])) fail_msg("no %s in:\n%s", bits[i], text);

    /* one header, one line per buffer, the total; labels in one column */
    int lines = 0, col = -1;
    for (char *p = text; *p; lines++) {
        char *nl = strchr(p, '\n');
        assert_non_null(nl);
        if (lines >= 1 && lines <= n - 1) {
            char *at = strstr(p, b[lines - 1].label);
            assert_true(at && at < nl);
            if (col < 0) col = (int)(at - p);
            if ((int)(at - p) != col) fail_msg("label of #%d in column %d, not %d:\n%s", lines - 1, (int)(at - p), col, text);
        }
        if (nl > p && nl[-1] == ' ') fail_msg("trailing blank in line %d:\n%s", lines, text);
        p = nl + 1;
    }
    assert_int_equal(lines, n + 2);
    free(text);

    /* a failed plan still prints */
    f = open_memstream(&text, &len);
    assert_non_null(f);
    lt_plan_print(f, b, n, -1);
    fclose(f);
    assert_non_null(strstr(text, "total: no plan"));
    free(text);
}

/* ---- size --------------------------------------------------------------- */

/* 5000 buffers shaped like a training step: parameters and their gradients
 * live throughout, forward activations until the mirrored backward step,
 * temporaries a step or two, some relus in place. */
static void test_many(void **state) {
    (void)state;
    enum { N = 5000, STEPS = 3000 };
    lt_buf *b = calloc(N, sizeof *b);
    assert_non_null(b);
    uint64_t s = 7;
    for (int i = 0; i < N; i++) {
        lt_buf *x = &b[i];
        *x = (lt_buf){.label = "t", .inplace_of = -1};
        int step = (int)((int64_t)i * STEPS / N);
        x->size = 64 * (1 + below(&s, 1 << 14)) + below(&s, 64);
        switch (below(&s, 6)) {
        case 0: x->first = IN; x->last = OUT; x->size /= 8; break;        /* parameter */
        case 1: x->first = step; x->last = STEPS - 1 - step / 2; break;  /* activation kept for backward */
        default: x->first = step; x->last = step + below(&s, 3); break;  /* temporary */
        }
        if (x->last < x->first) x->last = x->first;
        if (i > 0 && b[i - 1].last == x->first && below(&s, 2) == 0) {
            x->size = b[i - 1].size;
            x->inplace_of = i - 1;
        }
    }
    clock_t t0 = clock();
    int64_t total = lt_plan(b, N);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    char msg[256];
    int64_t peak = 0;
    const char *err = check_plan(b, N, total, &peak, msg, sizeof msg);
    if (err) fail_msg("%s", err);
    int64_t sum = 0;
    for (int i = 0; i < N; i++) sum += b[i].size;
    print_message("5000 buffers planned in %.3f s: arena %.1f MiB, most live at one step %.1f MiB, sum %.1f MiB\n",
                  secs, (double)total / 1048576, (double)peak / 1048576, (double)sum / 1048576);
    free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_print),
        cmocka_unit_test(test_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
