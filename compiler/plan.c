/* plan.c - the static memory plan: a byte offset for every buffer in one
 * arena, from buffer lifetimes.
 *
 * Greedy by size, as in TensorFlow Lite's arena planner: buffers are placed
 * largest first (ties by index, so the plan is deterministic), each at the
 * lowest 64-byte aligned offset where it overlaps no already placed buffer
 * whose lifetime intersects its own.  Big buffers placed first leave gaps that
 * the small ones fill, which in practice lands close to the lower bound (the
 * most bytes live at any one step).  Placed buffers are kept sorted by offset,
 * so the lowest free offset is one walk over them: O(n) per buffer, O(n^2) in
 * all, milliseconds for the ~2000 buffers of a ResNet-18 training step.
 *
 * Lifetimes are closed intervals of kernel steps, [first, last]; first = -1
 * (data present before the run) and last = LT_PLAN_FOREVER (data kept after
 * it) are just the smallest and largest values.  Two intervals intersect iff
 * a.first <= b.last && b.first <= a.last, so a buffer last read at step s and
 * one first written at step s do intersect: the kernel at step s reads one
 * while it writes the other.
 *
 * The one exception is the in-place hint: buffer i with inplace_of = j takes
 * exactly j's offset when the sizes are equal, j's last use is i's defining
 * step, no other buffer already shares j, and nothing else placed overlaps i
 * there.  A candidate whose target has not been placed yet (equal sizes sort
 * by index, so the target may come later) waits for it and is placed right
 * after it; candidates still waiting at the end (a cycle of hints) are placed
 * in order then.
 *
 * lt_plan returns -1 on int64 overflow, on invalid input (n < 0, a negative
 * size, first > last, inplace_of outside [-1, n) or naming itself) and when
 * out of memory; the offsets are then unspecified.
 *
 * lt_plan_kernels, at the end, plans a fused program (kernel.h): each
 * buffer's lifetime from the kernels that write and read it, the in-place
 * hints, then lt_plan. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "kernel.h"
#include "plan.h"

typedef struct {
    lt_buf *b;
    int *placed;   /* placed buffers of nonzero size, sorted by (offset, index) */
    int nplaced;
    bool *done;    /* placed (zero-size buffers count as placed from the start) */
    bool *taken;   /* some buffer already shares this one in place */
    int *wait_head, *wait_next; /* candidates waiting for their in-place target */
} planner;

typedef struct {
    int64_t size;
    int index;
} by_size;

static int cmp_by_size(const void *pa, const void *pb) {
    const by_size *a = pa, *b = pb;
    if (a->size != b->size) return a->size > b->size ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

/* x rounded up to LT_PLAN_ALIGN, for x >= 0; false on overflow. */
static bool align_up(int64_t x, int64_t *r) {
    if (x > INT64_MAX - (LT_PLAN_ALIGN - 1)) return false;
    *r = (x + LT_PLAN_ALIGN - 1) / LT_PLAN_ALIGN * LT_PLAN_ALIGN;
    return true;
}

/* a + b for a, b >= 0; false on overflow. */
static bool add(int64_t a, int64_t b, int64_t *r) {
    if (b > INT64_MAX - a) return false;
    *r = a + b;
    return true;
}

static bool lives_with(const lt_buf *a, const lt_buf *b) {
    return a->first <= b->last && b->first <= a->last;
}

/* The in-place target of i if the hint can apply at all (sizes equal, the
 * target's last use is i's defining step), else -1. */
static int hint_target(const planner *p, int i) {
    int j = p->b[i].inplace_of;
    if (j < 0) return -1;
    if (p->b[j].size != p->b[i].size || p->b[j].last != p->b[i].first) return -1;
    return j;
}

/* May i sit at j's offset?  Only if j is placed, not yet shared, and no other
 * placed buffer that lives with i overlaps it there. */
static bool fits_in_place(const planner *p, int i, int j) {
    if (!p->done[j] || p->taken[j]) return false;
    const lt_buf *bi = &p->b[i];
    int64_t off = p->b[j].offset, end = off + bi->size; /* j's end, already checked */
    for (int k = 0; k < p->nplaced; k++) {
        const lt_buf *bk = &p->b[p->placed[k]];
        if (bk->offset >= end) break;  /* sorted by offset: nothing further overlaps */
        if (p->placed[k] == j || !lives_with(bi, bk)) continue;
        if (bk->offset + bk->size > off) return false;
    }
    return true;
}

/* The lowest aligned offset where i overlaps nothing that lives with it. */
static bool lowest_fit(const planner *p, int i, int64_t *offset) {
    const lt_buf *bi = &p->b[i];
    int64_t cand = 0, end;
    for (int k = 0; k < p->nplaced; k++) {
        const lt_buf *bk = &p->b[p->placed[k]];
        if (!lives_with(bi, bk)) continue;
        if (!add(cand, bi->size, &end)) return false;
        if (bk->offset >= end) break;  /* the gap before bk is big enough */
        int64_t kend = bk->offset + bk->size;  /* checked when bk was placed */
        if (kend > cand && !align_up(kend, &cand)) return false;
    }
    if (!add(cand, bi->size, &end)) return false;
    *offset = cand;
    return true;
}

static bool place(planner *p, int i) {
    lt_buf *bi = &p->b[i];
    int j = hint_target(p, i);
    if (j >= 0 && fits_in_place(p, i, j)) {
        bi->offset = p->b[j].offset;
        bi->shared_with = j;
        p->taken[j] = true;
    } else if (!lowest_fit(p, i, &bi->offset)) {
        return false;
    }
    /* insert into the offset-sorted list, after equal (offset, smaller index) */
    int lo = 0, hi = p->nplaced;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        const lt_buf *bm = &p->b[p->placed[mid]];
        if (bm->offset < bi->offset || (bm->offset == bi->offset && p->placed[mid] < i))
            lo = mid + 1;
        else
            hi = mid;
    }
    memmove(p->placed + lo + 1, p->placed + lo, (size_t)(p->nplaced - lo) * sizeof *p->placed);
    p->placed[lo] = i;
    p->nplaced++;
    p->done[i] = true;
    return true;
}

/* Place i, then every candidate that waited for it, and theirs in turn
 * (breadth first, in the order they started waiting). */
static bool place_with_waiters(planner *p, int i, int *queue) {
    int head = 0, tail = 0;
    queue[tail++] = i;
    while (head < tail) {
        int x = queue[head++];
        if (p->done[x]) continue;  /* a cycle of hints comes back round */
        if (!place(p, x)) return false;
        for (int w = p->wait_head[x]; w >= 0; w = p->wait_next[w])
            if (!p->done[w]) queue[tail++] = w;
    }
    return true;
}

int64_t lt_plan(lt_buf *bufs, int n) {
    if (n < 0) return -1;
    for (int i = 0; i < n; i++) {
        const lt_buf *b = &bufs[i];
        if (b->size < 0 || b->first > b->last) return -1;
        if (b->inplace_of < -1 || b->inplace_of >= n || b->inplace_of == i) return -1;
    }
    for (int i = 0; i < n; i++) {
        bufs[i].offset = 0;
        bufs[i].shared_with = -1;
    }
    if (n == 0) return 0;

    int64_t total = -1;
    size_t un = (size_t)n;
    planner p = {.b = bufs};
    by_size *order = malloc(un * sizeof *order);
    int *queue = malloc(un * sizeof *queue), *wait_tail = malloc(un * sizeof *wait_tail);
    p.placed = malloc(un * sizeof *p.placed);
    p.done = calloc(un, sizeof *p.done);
    p.taken = calloc(un, sizeof *p.taken);
    p.wait_head = malloc(un * sizeof *p.wait_head);
    p.wait_next = malloc(un * sizeof *p.wait_next);
    if (!order || !queue || !wait_tail || !p.placed || !p.done || !p.taken || !p.wait_head ||
        !p.wait_next)
        goto out;

    for (int i = 0; i < n; i++) {
        order[i] = (by_size){bufs[i].size, i};
        p.wait_head[i] = p.wait_next[i] = wait_tail[i] = -1;
        p.done[i] = bufs[i].size == 0;  /* offset 0, conflicts with nothing */
    }
    qsort(order, un, sizeof *order, cmp_by_size);

    for (int k = 0; k < n; k++) {
        int i = order[k].index;
        if (p.done[i]) continue;
        int j = hint_target(&p, i);
        if (j >= 0 && !p.done[j]) {  /* wait for the target, in order */
            if (wait_tail[j] < 0)
                p.wait_head[j] = i;
            else
                p.wait_next[wait_tail[j]] = i;
            wait_tail[j] = i;
            continue;
        }
        if (!place_with_waiters(&p, i, queue)) goto out;
    }
    for (int k = 0; k < n; k++)  /* cycles of hints: nobody placed their target */
        if (!p.done[order[k].index] && !place_with_waiters(&p, order[k].index, queue)) goto out;

    int64_t end = 0;
    for (int i = 0; i < n; i++)
        if (bufs[i].size > 0 && bufs[i].offset + bufs[i].size > end) end = bufs[i].offset + bufs[i].size;
    if (!align_up(end, &total)) total = -1;
out:
    free(order);
    free(queue);
    free(wait_tail);
    free(p.placed);
    free(p.done);
    free(p.taken);
    free(p.wait_head);
    free(p.wait_next);
    return total;
}

/* ---- printing ----------------------------------------------------------- */

static void human(char *s, size_t cap, int64_t bytes) {
    if (bytes < 1024)
        snprintf(s, cap, "%lld B", (long long)bytes);
    else if (bytes < 1024 * 1024)
        snprintf(s, cap, "%.1f KiB", (double)bytes / 1024);
    else if (bytes < 1024LL * 1024 * 1024)
        snprintf(s, cap, "%.1f MiB", (double)bytes / (1024 * 1024));
    else
        snprintf(s, cap, "%.2f GiB", (double)bytes / (1024.0 * 1024 * 1024));
}

static void lifetime(char *s, size_t cap, const lt_buf *b) {
    char a[16], z[16];
    if (b->first < 0)
        snprintf(a, sizeof a, "in");
    else
        snprintf(a, sizeof a, "%d", b->first);
    if (b->last >= LT_PLAN_FOREVER)
        snprintf(z, sizeof z, "out");
    else
        snprintf(z, sizeof z, "%d", b->last);
    snprintf(s, cap, "%s..%s", a, z);
}

static void sharing(char *s, size_t cap, const lt_buf *b) {
    if (b->shared_with >= 0)
        snprintf(s, cap, "in-place of #%d", b->shared_with);
    else
        s[0] = 0;
}

static int width(int w, const char *s) {
    int l = (int)strlen(s);
    return l > w ? l : w;
}

/* One row, trailing blanks dropped (an empty label or sharing column). */
static void row(FILE *out, const int *w, const char *idx, const char *off, const char *size,
                const char *hum, const char *life, const char *shr, const char *label) {
    char line[512];
    int len = snprintf(line, sizeof line, "%*s  %*s  %*s %*s  %*s  %-*s  %s", w[0], idx, w[1], off,
                       w[2], size, w[3], hum, w[4], life, w[5], shr, label);
    if (len < 0) return;
    if ((size_t)len >= sizeof line) {  /* a long label: print it unclipped */
        fprintf(out, "%*s  %*s  %*s %*s  %*s  %-*s  %s\n", w[0], idx, w[1], off, w[2], size, w[3],
                hum, w[4], life, w[5], shr, label);
        return;
    }
    while (len > 0 && line[len - 1] == ' ') line[--len] = 0;
    fprintf(out, "%s\n", line);
}

/* The text of buffer i's columns (sizes as declared in lt_plan_print). */
static void cells(int i, const lt_buf *b, char idx[16], char off[24], char size[24], char hum[24], char life[40],
                  char shr[32]) {
    snprintf(idx, 16, "%d", i);
    snprintf(off, 24, "%lld", (long long)b->offset);
    snprintf(size, 24, "%lld", (long long)b->size);
    human(hum, 24, b->size);
    lifetime(life, 40, b);
    sharing(shr, 32, b);
}

void lt_plan_print(FILE *out, const lt_buf *bufs, int n, int64_t total) {
    /* column widths: #, offset, size, human size, lifetime, in-place */
    int w[6] = {1, 6, 4, 0, 8, 0};
    char idx[16], off[24], size[24], hum[24], life[40], shr[32];
    int64_t sum = 0;
    bool sum_ok = true;
    for (int i = 0; i < n; i++) {
        const lt_buf *b = &bufs[i];
        cells(i, b, idx, off, size, hum, life, shr);
        w[0] = width(w[0], idx);
        w[1] = width(w[1], off);
        w[2] = width(w[2], size);
        w[3] = width(w[3], hum);
        w[4] = width(w[4], life);
        w[5] = width(w[5], shr);
        if (b->size < 0 || !add(sum, b->size, &sum)) sum_ok = false;
    }
    if (w[5] > 0) w[5] = width(w[5], "in-place");
    row(out, w, "#", "offset", "size", "", "lifetime", w[5] ? "in-place" : "", "label");
    for (int i = 0; i < n; i++) {
        const lt_buf *b = &bufs[i];
        cells(i, b, idx, off, size, hum, life, shr);
        row(out, w, idx, off, size, hum, life, shr, b->label ? b->label : "");
    }
    if (total < 0) {
        fprintf(out, "total: no plan (overflow or invalid input) for %d buffers\n", n);
        return;
    }
    double saves = sum_ok && sum > 0 ? 100.0 * ((double)sum - (double)total) / (double)sum : 0.0;
    if (sum_ok)
        fprintf(out, "total: %lld bytes (%.2f MiB) in %d buffers; sum of sizes %lld bytes (reuse saves %.1f%%)\n",
                (long long)total, (double)total / (1024 * 1024), n, (long long)sum, saves);
    else
        fprintf(out, "total: %lld bytes (%.2f MiB) in %d buffers; sum of sizes overflows\n",
                (long long)total, (double)total / (1024 * 1024), n);
}

/* ---- plans of fused programs ------------------------------------------------------ */

/* Extend the lifetime of every buffer e loads to step. */
static void mark_loads(const lt_expr *e, int step, lt_buf *plan) {
    if (!e) return;
    if (e->kind == X_LOAD && plan[e->buf].last < step) plan[e->buf].last = step;
    mark_loads(e->a, step, plan);
    mark_loads(e->b, step, plan);
    mark_loads(e->c, step, plan);
    mark_loads(e->body, step, plan);
    for (int i = 0; e->kind == X_REDUCE && i < e->nvars; i++) mark_loads(e->lo[i], step, plan), mark_loads(e->hi[i], step, plan);
}

/* How e reads buf: 0 not at all, 1 only at the kernel's own element, 2 other
 * elements too (an index that is not the identity, or inside a reduction). */
static int reads(const lt_expr *e, int buf, bool in_reduce) {
    if (!e) return 0;
    int r = 0;
    if (e->kind == X_LOAD && e->buf == buf) r = e->ident && !in_reduce ? 1 : 2;
    bool inner = in_reduce || e->kind == X_REDUCE;
    const lt_expr *kids[3] = {e->a, e->b, e->c};
    for (int i = 0; i < 3; i++) {
        int k = reads(kids[i], buf, in_reduce);
        r = k > r ? k : r;
    }
    int k = reads(e->body, buf, inner);
    r = k > r ? k : r;
    for (int i = 0; e->kind == X_REDUCE && i < e->nvars; i++) {
        int a = reads(e->lo[i], buf, true), b = reads(e->hi[i], buf, true);
        r = a > r ? a : r;
        r = b > r ? b : r;
    }
    return r;
}

lathe_status lt_plan_kernels(lt_fused *f) {
    lathe_graph *g = f->g;
    f->plan = calloc((size_t)f->nbufs + 1, sizeof *f->plan);
    if (!f->plan) return lt_fail(g, LATHE_ERR_NOMEM, "out of memory"), LATHE_ERR_NOMEM;
    for (int b = 0; b < f->nbufs; b++) {
        lt_kbuf *kb = &f->bufs[b];
        lt_buf *p = &f->plan[b];
        p->size = kb->numel * (int64_t)lathe_dtype_size(kb->dtype);
        p->first = kb->kind == B_TEMP ? 0 : -1;
        p->last = kb->kind == B_TEMP ? 0 : LT_PLAN_FOREVER;
        p->inplace_of = -1;
        p->shared_with = -1;
    }
    for (int s = 0; s < f->nk; s++) {
        lt_kernel *k = &f->ks[s];
        f->plan[k->buf].first = s;
        if (f->plan[k->buf].last < s) f->plan[k->buf].last = s;
        mark_loads(k->value, s, f->plan);
    }
    /* a gather runs from its step until the first kernel that reads its result
     * (the runtime waits for it there): its operand lives until then */
    for (int s = 0; s < f->nk; s++) {
        lt_kernel *k = &f->ks[s];
        if (!k->gather) continue;
        k->wait = f->nk;
        for (int j = s + 1; j < f->nk && k->wait == f->nk; j++)
            if (reads(f->ks[j].value, k->buf, false)) k->wait = j;
        int src = f->buf_of[g->nodes[k->nodes[0]]->in[0]->id];
        if (f->plan[src].last < k->wait) f->plan[src].last = k->wait;
    }
    for (int i = 0; i < g->nout; i++) f->plan[f->buf_of[g->outputs[i].node->id]].last = LT_PLAN_FOREVER;
    for (int i = 0; i < g->nupd; i++) f->plan[f->buf_of[g->updates[i].value->id]].last = LT_PLAN_FOREVER;
    /* in place: a temp read only at the kernel's own element, for the last time */
    for (int s = 0; s < f->nk; s++) {
        lt_kernel *k = &f->ks[s];
        for (int b = 0; b < f->nbufs; b++) {
            lt_buf *p = &f->plan[b];
            if (f->bufs[b].kind != B_TEMP || p->last != s || p->first >= s || b == k->buf) continue;
            if (p->size == f->plan[k->buf].size && reads(k->value, b, false) == 1) {
                f->plan[k->buf].inplace_of = b;
                break;
            }
        }
    }
    f->arena_size = lt_plan(f->plan, f->nbufs);
    if (f->arena_size < 0) return lt_fail(g, LATHE_ERR_NOMEM, "memory plan: the arena size overflows"), LATHE_ERR_NOMEM;
    return LATHE_OK;
}
