/* share.c - kernels that can share one body of machine code.
 *
 * A network repeats itself (ResNet-18's blocks within a stage have the same
 * shapes, and so do their gradients), so many kernels differ only in where
 * their buffers are.  Such kernels get one body, compiled once, that takes
 * its buffers as pointer parameters (slots), and each kernel is a wrapper
 * that passes its own buffers' places: LLVM's optimizer and code generator,
 * nearly all of a compile, then run once per distinct body.
 *
 * Two kernels share a body when their signatures are equal byte for byte.
 * A signature is everything the lowering reads, with buffers replaced by
 * slots in the order the walk meets them: the kernel's shape and parallel
 * range; its expression as a DAG (every node's fields, a node met again as a
 * reference to its first visit, since the lowering emits a shared node once);
 * its contraction plan field by field; and per slot the element type and
 * the aliasing class (buffers computed in place share one, which the
 * lowering's TBAA types follow).  Buffer offsets are not in it: that is the
 * point. */
#include <stdlib.h>
#include <string.h>

#include "lower_llvm.h"

typedef struct {
    const lt_fused *f;
    uint8_t *bytes;
    size_t n, cap;
    bool oom;
    int *visit;       /* expression id -> its visit number + 1, for this kernel (stamped) */
    int *visit_stamp;
    int nvisit;
    int *slot;        /* buffer -> slot + 1, for this kernel (stamped) */
    int *slot_stamp;
    int *slots;       /* slot -> buffer */
    int nslots;
    int stamp;
} sig;

static void put(sig *s, const void *p, size_t n) {
    if (s->oom) return;
    if (s->n + n > s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 1024;
        while (cap < s->n + n) cap *= 2;
        uint8_t *b = realloc(s->bytes, cap);
        if (!b) {
            s->oom = true;
            return;
        }
        s->bytes = b, s->cap = cap;
    }
    memcpy(s->bytes + s->n, p, n);
    s->n += n;
}
static void put_i(sig *s, int64_t v) { put(s, &v, sizeof v); }
static void put_f(sig *s, double v) { put(s, &v, sizeof v); }

/* Buffer b as a slot: its number, and the first time its type and alias
 * class (the buffer it shares memory with, as a slot). */
static void put_buf(sig *s, int b) {
    if (s->slot_stamp[b] != s->stamp) {
        s->slot_stamp[b] = s->stamp;
        s->slot[b] = ++s->nslots;
        s->slots[s->nslots - 1] = b;
        int root = b, sw = s->f->plan[b].shared_with;
        while (sw >= 0) root = sw, sw = s->f->plan[root].shared_with;
        put_i(s, -1);
        put_i(s, s->f->bufs[b].dtype);
        if (root != b) put_buf(s, root);
        else put_i(s, -2);
    }
    put_i(s, s->slot[b]);
}

static void put_expr(sig *s, const lt_expr *e) {
    if (!e) {
        put_i(s, -3);
        return;
    }
    if (s->visit_stamp[e->id] == s->stamp) { /* met before: a reference */
        put_i(s, -4);
        put_i(s, s->visit[e->id]);
        return;
    }
    s->visit_stamp[e->id] = s->stamp;
    s->visit[e->id] = ++s->nvisit;
    put_i(s, e->kind);
    put_i(s, e->t);
    put_i(s, e->op);
    put_f(s, e->f);
    put_f(s, e->f2);
    put_i(s, e->i);
    put_i(s, e->var);
    put_i(s, e->ident);
    put_i(s, e->rk);
    if (e->kind == X_LOAD) put_buf(s, e->buf);
    put_expr(s, e->a);
    put_expr(s, e->b);
    put_expr(s, e->c);
    if (e->kind == X_REDUCE) {
        put_i(s, e->nvars);
        for (int i = 0; i < e->nvars; i++) {
            put_i(s, e->vars[i]);
            put_expr(s, e->lo[i]);
            put_expr(s, e->hi[i]);
        }
        put_expr(s, e->body);
    }
}

static void put_view(sig *s, const lt_view *v, int rank) {
    put_buf(s, v->buf);
    put_i(s, v->off);
    for (int d = 0; d < rank; d++) put_i(s, v->st[d]);
}

static void put_contract(sig *s, const lt_contract *c) {
    if (!c) {
        put_i(s, -5);
        return;
    }
    put_i(s, c->kind);
    put_i(s, c->red ? s->visit[c->red->id] : 0); /* the reduction, visited with the value */
    put_view(s, &c->a, LATHE_MAX_RANK);
    put_view(s, &c->b, LATHE_MAX_RANK);
    const int64_t v[] = {c->range, c->vl, c->tm, c->tn, c->n, c->groups, c->kog, c->cr, c->oh, c->ow, c->ih, c->iw,
                         c->taps[0], c->taps[1], c->mu[0], c->mu[1], c->dv[0], c->dv[1], c->beta[0], c->beta[1],
                         c->dbeta[0], c->dbeta[1], c->bwd, c->contiguous, c->phase, c->n_inner, c->deint, c->nbatch, c->m, c->ncol, c->k, c->am,
                         c->ak, c->bk, c->bn, c->mc, c->kc, c->batch_inner, c->npre, c->nidx, c->rows, c->post};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) put_i(s, v[i]);
    for (int d = 0; d < c->npre + c->nidx; d++) put_i(s, c->gshape[d]);
    for (int d = 0; d < c->nbatch; d++) {
        put_i(s, c->batch[d]);
        put_i(s, c->a_bst[d]);
        put_i(s, c->b_bst[d]);
    }
}

/* Kernel k's signature in s->bytes[0, s->n) and its slots. */
static void signature(sig *s, const lt_kernel *k) {
    s->n = 0;
    s->nvisit = 0;
    s->nslots = 0;
    s->stamp++;
    put_i(s, k->rank);
    for (int d = 0; d < k->rank; d++) put_i(s, k->shape[d]);
    put_i(s, k->outer);
    put_i(s, k->range);
    put_i(s, k->nvars);
    put_buf(s, k->buf);
    put_expr(s, k->value);
    put_i(s, k->nseg);
    put_i(s, k->seg_dim);
    for (int i = 0; i < k->nseg; i++) {
        put_i(s, k->seg_lo[i + 1]);
        put_expr(s, k->segv[i]);
    }
    put_contract(s, k->con);
}

static uint64_t fnv(const uint8_t *p, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

lathe_status lt_find_bodies(const lt_fused *f, lt_bodies *b) {
    memset(b, 0, sizeof *b);
    sig s = {.f = f};
    int nk = f->nk;
    size_t *len = calloc((size_t)nk + 1, sizeof *len);
    uint8_t **sigs = calloc((size_t)nk + 1, sizeof *sigs);
    uint64_t *hash = calloc((size_t)nk + 1, sizeof *hash);
    s.visit = calloc((size_t)f->nexpr + 1, sizeof(int));
    s.visit_stamp = calloc((size_t)f->nexpr + 1, sizeof(int));
    s.slot = calloc((size_t)f->nbufs + 1, sizeof(int));
    s.slot_stamp = calloc((size_t)f->nbufs + 1, sizeof(int));
    s.slots = calloc((size_t)f->nbufs + 1, sizeof(int));
    b->rep = calloc((size_t)nk + 1, sizeof *b->rep);
    b->slot_start = calloc((size_t)nk + 2, sizeof *b->slot_start);
    lathe_status st = LATHE_OK;
    if (!len || !sigs || !hash || !s.visit || !s.visit_stamp || !s.slot || !s.slot_stamp || !s.slots || !b->rep ||
        !b->slot_start)
        st = LATHE_ERR_NOMEM;
    /* signatures and slots; the slots of all kernels one after another */
    int *slots = NULL;
    size_t nslots = 0, cap = 0;
    for (int i = 0; i < nk && st == LATHE_OK; i++) {
        signature(&s, &f->ks[i]);
        if (s.oom || !(sigs[i] = malloc(s.n ? s.n : 1))) {
            st = LATHE_ERR_NOMEM;
            break;
        }
        memcpy(sigs[i], s.bytes, s.n);
        len[i] = s.n;
        hash[i] = fnv(s.bytes, s.n);
        if (nslots + (size_t)s.nslots > cap) {
            cap = 2 * (nslots + (size_t)s.nslots) + 64;
            int *ns = realloc(slots, cap * sizeof *ns);
            if (!ns) {
                st = LATHE_ERR_NOMEM;
                break;
            }
            slots = ns;
        }
        memcpy(slots + nslots, s.slots, (size_t)s.nslots * sizeof *slots);
        b->slot_start[i] = (int)nslots;
        nslots += (size_t)s.nslots;
        b->slot_start[i + 1] = (int)nslots;
    }
    b->slots = slots;
    /* the first kernel with the same signature; quadratic only within equal hashes */
    for (int i = 0; i < nk && st == LATHE_OK; i++) {
        b->rep[i] = i;
        for (int j = 0; j < i; j++)
            if (b->rep[j] == j && hash[j] == hash[i] && len[j] == len[i] && !memcmp(sigs[j], sigs[i], len[i])) {
                b->rep[i] = j;
                break;
            }
        b->nreps += b->rep[i] == i;
    }
    for (int i = 0; i < nk; i++) free(sigs ? sigs[i] : NULL);
    free(sigs);
    free(len);
    free(hash);
    free(s.bytes);
    free(s.visit);
    free(s.visit_stamp);
    free(s.slot);
    free(s.slot_stamp);
    free(s.slots);
    if (st != LATHE_OK) lt_bodies_free(b);
    return st;
}

void lt_bodies_free(lt_bodies *b) {
    free(b->rep);
    free(b->slot_start);
    free(b->slots);
    memset(b, 0, sizeof *b);
}
