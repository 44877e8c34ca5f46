/* contract.c - plans for the vector lowering of contraction kernels
 * (kernel.h's lt_contract): matmul, conv2d and its two gradients, max-pool
 * and its gradient, computed at their kernel's own element with operands
 * that are strided views of buffers, and the scatter-add of
 * index_select_backward.  A plan holds the operands as views,
 * the shape of the contraction, and a register tile chosen by a small cost
 * model of the target's vector unit; fuse.c asks for a plan while it builds a
 * kernel's expression, and lower_tiles.c lowers it. */
#include <stdlib.h>
#include <string.h>

#include "kernel.h"

/* Strides of a view of shape os, strides ost, reshaped to ns, as torch's
 * view computes them (THTensor_compute_stride); false when the reshape would
 * need a copy. */
static bool view_reshape(int orank, const int64_t *os, const int64_t *ost, int nrank, const int64_t *ns, int64_t *nst) {
    if (orank == 0 || nrank == 0) return false;
    int vd = nrank - 1;
    int64_t base = ost[orank - 1], tnum = 1, vnum = 1;
    for (int td = orank - 1; td >= 0; td--) {
        tnum *= os[td];
        if (td == 0 || (os[td - 1] != 1 && ost[td - 1] != tnum * base)) {
            while (vd >= 0 && (vnum < tnum || ns[vd] == 1)) {
                nst[vd] = vnum * base;
                vnum *= ns[vd];
                vd--;
            }
            if (vnum != tnum) return false;
            if (td > 0) {
                base = ost[td - 1];
                tnum = vnum = 1;
            }
        }
    }
    return vd == -1;
}

/* Node n as a strided view of a buffer, through the index ops inlined into
 * the kernel being built; false for anything else. */
static bool view_of(const lt_fused *f, int root, const lathe_node *n, lt_view *v) {
    int b = f->buf_of[n->id];
    if (b >= 0) {
        if (n->id == root) return false;
        v->buf = b;
        v->off = 0;
        lt_strides(n->rank, n->shape, v->st);
        return true;
    }
    const lathe_node *x = n->nin ? n->in[0] : NULL;
    lt_view u;
    if (!x || lt_ops[n->op].kind == LT_LEAF || !view_of(f, root, x, &u)) return false;
    *v = u;
    switch (n->op) {
    case LT_OP_RESHAPE:
    case LT_OP_FLATTEN: return view_reshape(x->rank, x->shape, u.st, n->rank, n->shape, v->st);
    case LT_OP_PERMUTE:
        for (int i = 0; i < n->rank; i++) v->st[i] = u.st[n->attr[0].v[i]];
        return true;
    case LT_OP_BROADCAST_TO:
        for (int d = 0; d < n->rank; d++) {
            int xd = d - (n->rank - x->rank);
            v->st[d] = xd < 0 || x->shape[xd] == 1 ? 0 : u.st[xd];
        }
        return true;
    case LT_OP_SLICE: {
        int64_t ax = n->attr[0].v[0];
        v->off = u.off + n->attr[1].v[0] * u.st[ax];
        v->st[ax] = u.st[ax] * n->attr[3].v[0];
        return true;
    }
    default: return false;
    }
}

bool lt_is_view(const lt_fused *f, const lathe_node *n) {
    lt_view v;
    return view_of(f, -1, n, &v);
}

/* Dims [from, rank) of a view of shape `shape` are one dense row-major run
 * (size-1 dims take any stride). */
static bool dense_from(int rank, const int64_t *shape, const lt_view *v, int from) {
    int64_t want = 1;
    for (int d = rank - 1; d >= from; d--) {
        if (shape[d] != 1 && v->st[d] != want) return false;
        want *= shape[d];
    }
    return true;
}

bool lt_is_row_view(const lt_fused *f, const lathe_node *n, int from) {
    lt_view v;
    return view_of(f, -1, n, &v) && dense_from(n->rank, n->shape, &v, from);
}

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Gathers compute a plane's positions and offsets in 32-bit lanes: the
 * output plane, the input rows and columns (times the divisor), and the
 * offsets from the plane's start through view v must fit. */
static bool lanes_fit(const lt_contract *c, const lt_view *v) {
    int64_t lim = (int64_t)1 << 30;
    int64_t s2 = v->st[2] < 0 ? -v->st[2] : v->st[2], s3 = v->st[3] < 0 ? -v->st[3] : v->st[3];
    return c->oh * c->ow < lim && c->oh * c->mu[0] + c->ih * c->dv[0] + c->taps[0] * (c->dbeta[0] < 0 ? -c->dbeta[0] : c->dbeta[0]) < lim &&
           c->ow * c->mu[1] + c->iw * c->dv[1] + c->taps[1] * (c->dbeta[1] < 0 ? -c->dbeta[1] : c->dbeta[1]) < lim &&
           c->ih * s2 + c->iw * s3 < lim;
}

/* The vector unit tiles are sized for, from the target (target.h): with
 * AVX-512, 32 registers of 64 bytes and mask registers; else (AVX2, and
 * narrower units, which LLVM splits the vectors for) 16 of 32 bytes, masks
 * held in vector registers and masked loads slower.  The code is correct on
 * any target; lathe_target.vector_bytes forces either kind of tile (to test
 * both on one machine). */
typedef struct {
    int bytes, regs;
    bool kmask;
} vunit;

static vunit target_vunit(const lt_target *t) { return (vunit){t->tile_bytes, t->tile_regs, t->tile_mask_regs}; }

/* A contiguous plan's mask table (lower_llvm.c's make_table: a mask per tap
 * and vector of the plane, bits with mask registers, else a vector) stays
 * small constant data. */
static bool table_fits(const lt_contract *c, const vunit *u) {
    int64_t nvec = cdiv(c->oh * c->ow, c->vl), nvt = c->kind == LT_C_WGRAD ? nvec : cdiv(nvec, c->tn) * c->tn;
    int64_t entry = u->kmask ? (c->vl + 7) / 8 : u->bytes;
    return c->taps[0] * c->taps[1] * nvt * entry <= (256 << 10);
}

/* The input gradient of a strided convolution in phases (kernel.h's
 * lt_contract.phase): each phase of the output (oh, ow) is a plane the
 * size of the gradient's (ih, iw), read contiguously (the gradient's planes
 * dense, dilation 1 along strided dims), scattered in 32-bit lanes, its
 * mask table (a row per phase and tap) small. */
static bool phase_fits(const lt_contract *c, const vunit *u) {
    if (c->a.st[3] != 1 || c->a.st[2] != c->iw || c->oh != c->dv[0] * c->ih || c->ow != c->dv[1] * c->iw) return false;
    for (int d = 0; d < 2; d++)
        if (c->dv[d] > 1 && c->dbeta[d] != -1) return false;
    if (c->oh * c->ow >= (int64_t)1 << 30) return false;
    int64_t nvt = cdiv(cdiv(c->ih * c->iw, c->vl), c->tn) * c->tn, entry = u->kmask ? (c->vl + 7) / 8 : u->bytes;
    return c->dv[0] * c->dv[1] * c->taps[0] * c->taps[1] * nvt * entry <= (256 << 10);
}

/* Cycles of one reduction step of a register tile: `fma` FMAs at 2 a cycle,
 * loads at 2 a cycle, a masked load counting 1.5 without mask registers. */
static double step_cycles(const vunit *u, int fma, int masked, int plain) {
    double f = fma / 2.0, l = (masked * (u->kmask ? 1.0 : 1.5) + plain) / 2.0;
    return f > l ? f : l;
}

/* Register tiles (tm x tn accumulators) that fit the registers with the
 * step's live loads and masks, scored by cycles (waste included). */
static void tile_plane(lt_contract *c, const vunit *u) {
    int64_t nvec = cdiv(c->oh * c->ow, c->vl), taps = c->taps[0] * c->taps[1], rowv = nvec;
    if (c->deint) rowv = cdiv(c->ow, c->vl), nvec = c->oh * rowv; /* a tile's vectors are in one row */
    double best = -1;
    for (int kb = 1; kb <= LT_TILE_MAX_DIM && kb <= c->kog; kb++)
        for (int nv = 1; nv <= 6 && nv <= rowv; nv++) {
            int live = kb * nv + nv + 1 + (u->kmask ? 0 : nv);
            if (live > u->regs && !(kb == 1 && nv == 1)) continue;
            double tiles = (double)cdiv(c->kog, kb) * (double)cdiv(nvec, nv) * (double)taps;
            double cost = tiles * ((double)c->cr * (step_cycles(u, kb * nv, nv, kb) + 0.5) + nv + 2);
            if (best < 0 || cost < best) best = cost, c->tm = kb, c->tn = nv;
        }
}
static void tile_wgrad(lt_contract *c, const vunit *u) {
    double best = -1;
    for (int kb = 1; kb <= LT_TILE_MAX_DIM && kb <= c->kog; kb++)
        for (int cb = 1; cb <= LT_TILE_MAX_DIM && cb <= c->cr; cb++) {
            int live = kb * cb + cb + 1 + (u->kmask ? 0 : 2);
            if (live > u->regs && !(kb == 1 && cb == 1)) continue;
            double tiles = (double)cdiv(c->kog, kb) * (double)cdiv(c->cr, cb) * (double)(c->taps[0] * c->taps[1]);
            /* the planes' vectors start anywhere in a cache line (taps shift the input;
             * planes need not be whole lines): each load touches two lines, a
             * de-interleaved input's two loads four */
            int loads = 2 * kb + (c->deint ? 4 : 2) * cb;
            double cost = tiles * ((double)c->n * ((double)cdiv(c->oh * c->ow, c->vl) * (step_cycles(u, kb * cb, 0, loads) + 0.5) +
                                                   2 * kb * cb) + kb * cb * 8);
            if (best < 0 || cost < best) best = cost, c->tm = kb, c->tn = cb;
        }
}
static void tile_matmul(lt_contract *c, const vunit *u) {
    double best = -1;
    int64_t kvec = cdiv(c->k, c->vl), nvec = cdiv(c->ncol, c->vl);
    for (int mb = 1; mb <= LT_TILE_MAX_DIM && mb <= c->m; mb++)
        for (int nb = 1; nb <= LT_TILE_MAX_DIM; nb++) {
            int live = mb * nb + nb + 1;
            if (live > u->regs && !(mb == 1 && nb == 1)) continue;
            double cost;
            if (c->kind == LT_C_MM_BCAST) {
                if (nb > nvec) continue;
                cost = (double)cdiv(c->m, mb) * (double)cdiv(nvec, nb) * ((double)c->k * (step_cycles(u, mb * nb, 0, mb + nb) + 0.5) + 4);
            } else {
                if (nb > c->ncol) continue;
                cost = (double)cdiv(c->m, mb) * (double)cdiv(c->ncol, nb) *
                       ((double)kvec * (step_cycles(u, mb * nb, 0, mb + nb) + 0.5) + mb * nb * 8 + 4);
            }
            if (best < 0 || cost < best) best = cost, c->tm = mb, c->tn = nb;
        }
}

/* Cache blocks of a large MM_BCAST (lt_contract.mc, kc): a panel of b
 * (kc rows of the tile's tn vectors) fits in L1 beside a's rows, a block
 * of a (mc rows, all of k) in three quarters of the target's L2, so a
 * thread's consecutive tiles (the next columns of the same rows) read it
 * from there.  Small products keep the plain tiles. */
enum { LT_MM_PANEL_BYTES = 24 << 10, LT_MM_MAX_MC = 256 };
static void block_matmul(lt_contract *c, int esize, int64_t l2) {
    int64_t w = (int64_t)c->tn * c->vl;
    if (c->k < 64 || c->m < 4 * c->tm || c->ncol < w) return;
    int64_t kc = LT_MM_PANEL_BYTES / (w * esize) / 8 * 8;
    if (kc < 16) kc = 16;
    if (kc > c->k) kc = c->k;
    int64_t mc = l2 * 3 / 4 / (c->k * esize) / c->tm * c->tm;
    if (mc > LT_MM_MAX_MC) mc = LT_MM_MAX_MC / c->tm * c->tm;
    if (mc < c->tm) mc = c->tm;
    if (mc > c->m) mc = cdiv(c->m, c->tm) * c->tm;
    c->kc = kc;
    c->mc = mc;
}

/* Whether idx, n's index in the kernel being built, is the kernel's own
 * element: var d in dim d (or 0, where the dim is 1). */
static bool at_own_element(const lathe_node *n, lt_expr **idx) {
    for (int d = 0; d < n->rank; d++) {
        bool var = idx[d]->kind == X_VAR && idx[d]->var == d;
        bool zero = n->shape[d] == 1 && idx[d]->kind == X_CONST && idx[d]->i == 0;
        if (!var && !zero) return false;
    }
    return true;
}

/* Plan the lowering of max_pool2d (vector lanes over the output plane) or
 * its gradient (each window's arg-max found once, its gradient added where
 * it points), as plan_contraction does. */
lt_contract *lt_plan_pool(const lt_fused *f, int root, const lathe_node *n, lt_expr **idx, const lt_expr *red) {
    const lathe_node *r = f->g->nodes[root];
    if ((n->dtype != LATHE_F32 && n->dtype != LATHE_F64) || n->numel == 0) return NULL;
    if (r->rank != n->rank || memcmp(r->shape, n->shape, sizeof(int64_t) * (size_t)n->rank)) return NULL;
    if (!at_own_element(n, idx)) return NULL;
    bool bwd = n->op == LT_OP_MAX_POOL2D_BACKWARD;
    const lathe_node *x = bwd ? n->in[1] : n->in[0], *y = bwd ? n->in[0] : n;
    lt_contract c = {0};
    c.red = red;
    if (!view_of(f, root, x, &c.a) || (bwd && !view_of(f, root, n->in[0], &c.b))) return NULL;
    const int64_t *k = n->attr[0].v, *st = n->attr[1].v, *pad = n->attr[2].v;
    c.kind = bwd ? LT_C_POOL_BWD : LT_C_POOL;
    c.n = x->shape[0], c.groups = 1, c.kog = x->shape[1], c.cr = 1;
    c.oh = y->shape[2], c.ow = y->shape[3], c.ih = x->shape[2], c.iw = x->shape[3];
    c.taps[0] = k[0], c.taps[1] = k[1];
    for (int d = 0; d < 2; d++) c.mu[d] = st[d], c.dv[d] = 1, c.beta[d] = -pad[d], c.dbeta[d] = 1;
    if (c.oh * c.ow == 0 || c.ih * c.iw == 0) return NULL;
    if (bwd && (c.ih * c.iw * (int64_t)lathe_dtype_size(n->dtype) > (256 << 10) || k[0] * k[1] > 16))
        return NULL; /* the plane's scratch on the stack, the window unrolled */
    vunit u = target_vunit(f->target);
    c.vl = u.bytes / (int)lathe_dtype_size(n->dtype);
    c.contiguous = st[0] == 1 && st[1] == 1 && c.ow == c.iw && c.a.st[3] == 1 && c.a.st[2] == c.iw;
    int64_t nvec = cdiv(c.oh * c.ow, c.vl);
    c.tm = 1, c.tn = nvec < 4 ? (int)nvec : 4;
    if (bwd) c.contiguous = false; /* windows' inputs are gathered */
    if (c.contiguous && !table_fits(&c, &u)) c.contiguous = false;
    if (!c.contiguous && !lanes_fit(&c, &c.a)) return NULL;
    if (bwd && (c.oh * (c.b.st[2] < 0 ? -c.b.st[2] : c.b.st[2]) + c.ow * (c.b.st[3] < 0 ? -c.b.st[3] : c.b.st[3]) >= (int64_t)1 << 30 ||
                c.ih * c.iw >= (int64_t)1 << 30))
        return NULL; /* the gradient's offsets and the plane's positions in 32-bit lanes */
    c.range = c.n * c.kog;
    lt_contract *p = malloc(sizeof *p);
    if (p) *p = c;
    return p;
}

/* Plan index_select_backward n (out (pre, rows, post)) as a scatter: tiles
 * of a pre index and a block of post's columns, a block at least a cache
 * line (64 bytes: threads rarely write the same line) and at most 4
 * vectors, halved while there are fewer than 32 tiles to share among
 * threads; within a tile every element sums its rows in index order. */
enum { LT_SCATTER_MAX_VECS = 4, LT_SCATTER_TILES = 32 };
lt_contract *lt_plan_scatter(const lt_fused *f, int root, const lathe_node *n, const lt_expr *red) {
    if (n->id != root || (n->dtype != LATHE_F32 && n->dtype != LATHE_F64) || n->numel == 0) return NULL;
    const lathe_node *gy = n->in[0], *ix = n->in[1];
    lt_contract c = {0};
    c.kind = LT_C_SCATTER;
    c.red = red;
    int ax = (int)n->attr[0].v[0];
    if (!view_of(f, root, gy, &c.a) || !view_of(f, root, ix, &c.b) || !dense_from(gy->rank, gy->shape, &c.a, ax + ix->rank))
        return NULL;
    c.npre = ax;
    c.nidx = ix->rank;
    memcpy(c.gshape, gy->shape, sizeof c.gshape);
    c.rows = n->shape[ax];
    c.post = 1;
    int64_t pre = 1;
    for (int d = 0; d < ax; d++) pre *= n->shape[d];
    for (int d = ax + 1; d < n->rank; d++) c.post *= n->shape[d];
    vunit u = target_vunit(f->target);
    int esize = (int)lathe_dtype_size(n->dtype);
    c.vl = u.bytes / esize;
    int64_t nvec = cdiv(c.post, c.vl);
    int minv = 64 / u.bytes > 1 ? 64 / u.bytes : 1, nv = LT_SCATTER_MAX_VECS;
    while (nv > minv && pre * cdiv(nvec, nv) < LT_SCATTER_TILES) nv /= 2;
    if (nv > nvec) nv = (int)nvec;
    c.tm = 1;
    c.tn = nv;
    c.range = pre * cdiv(nvec, nv);
    lt_contract *p = malloc(sizeof *p);
    if (p) *p = c;
    return p;
}

/* Plan the vector lowering of contraction n, whose value at idx is the
 * reduction red, when it is computed at the kernel's own element and its
 * operands are strided views of buffers.  Otherwise the kernel keeps the
 * scalar lowering. */
lt_contract *lt_plan_contraction(const lt_fused *f, int root, const lathe_node *n, lt_expr **idx, const lt_expr *red) {
    const lathe_node *r = f->g->nodes[root];
    if ((n->dtype != LATHE_F32 && n->dtype != LATHE_F64) || n->numel == 0) return NULL;
    if (r->rank != n->rank || memcmp(r->shape, n->shape, sizeof(int64_t) * (size_t)n->rank)) return NULL;
    if (!at_own_element(n, idx)) return NULL;
    lt_contract c = {0};
    c.red = red;
    if (!view_of(f, root, n->in[0], &c.a) || !view_of(f, root, n->in[1], &c.b)) return NULL;
    vunit u = target_vunit(f->target);
    int vl = c.vl = u.bytes / (int)lathe_dtype_size(n->dtype);
    if (n->op == LT_OP_MATMUL) {
        const lathe_node *a = n->in[0], *b = n->in[1];
        int rk = n->rank, ra = a->rank, rb = b->rank;
        c.nbatch = rk - 2;
        for (int d = 0; d < c.nbatch; d++) {
            int da = d - (rk - ra), db = d - (rk - rb);
            c.batch[d] = n->shape[d];
            c.a_bst[d] = da < 0 || a->shape[da] == 1 ? 0 : c.a.st[da];
            c.b_bst[d] = db < 0 || b->shape[db] == 1 ? 0 : c.b.st[db];
        }
        c.m = n->shape[rk - 2], c.ncol = n->shape[rk - 1], c.k = a->shape[ra - 1];
        c.am = c.a.st[ra - 2], c.ak = c.a.st[ra - 1], c.bk = c.b.st[rb - 2], c.bn = c.b.st[rb - 1];
        if (c.k == 0) return NULL;
        bool dot = c.ak == 1 && c.bk == 1;
        if (c.bn == 1 && (c.ncol >= vl / 2 || !dot)) c.kind = LT_C_MM_BCAST;
        else if (dot) c.kind = LT_C_MM_DOT;
        else return NULL;
        tile_matmul(&c, &u);
        int64_t nb = 1;
        for (int d = 0; d < c.nbatch; d++) nb *= c.batch[d];
        c.range = nb * cdiv(c.m, c.tm) * (c.kind == LT_C_MM_BCAST ? cdiv(cdiv(c.ncol, vl), c.tn) : cdiv(c.ncol, c.tn));
        if (c.kind == LT_C_MM_BCAST) block_matmul(&c, (int)lathe_dtype_size(n->dtype), f->target->l2_bytes);
        if (c.kc) c.range = nb * cdiv(c.m, c.mc) * cdiv(cdiv(c.ncol, vl), c.tn);
        else if (nb > 1) {
            c.batch_inner = true;
            for (int d = 0; d < c.nbatch; d++)
                if ((c.kind == LT_C_MM_BCAST ? c.b_bst[d] : c.a_bst[d]) != 0) c.batch_inner = false;
        }
    } else {
        const int64_t *st = n->attr[0].v, *pad = n->attr[1].v, *dil = n->attr[2].v;
        const lathe_node *x = n->in[0];
        c.groups = n->attr[3].v[0];
        for (int d = 0; d < 2; d++) {
            c.mu[d] = st[d], c.dv[d] = 1, c.beta[d] = -pad[d], c.dbeta[d] = dil[d];
            if (n->op == LT_OP_CONV2D_BACKWARD_INPUT) c.mu[d] = 1, c.dv[d] = st[d], c.beta[d] = pad[d], c.dbeta[d] = -dil[d];
        }
        if (n->op == LT_OP_CONV2D) { /* x (N,C,H,W) * w (K,Cg,R,S) -> (N,K,P,Q) */
            const lathe_node *w = n->in[1];
            c.kind = LT_C_PLANE;
            c.n = x->shape[0], c.kog = w->shape[0] / c.groups, c.cr = w->shape[1];
            c.oh = n->shape[2], c.ow = n->shape[3], c.ih = x->shape[2], c.iw = x->shape[3];
            c.taps[0] = w->shape[2], c.taps[1] = w->shape[3];
        } else if (n->op == LT_OP_CONV2D_BACKWARD_INPUT) { /* gy (N,K,P,Q), w (K,Cg,R,S) -> (N,C,H,W) */
            const lathe_node *w = n->in[1];
            c.kind = LT_C_PLANE;
            c.bwd = true;
            c.n = x->shape[0], c.kog = w->shape[1], c.cr = w->shape[0] / c.groups;
            c.oh = n->shape[2], c.ow = n->shape[3], c.ih = x->shape[2], c.iw = x->shape[3];
            c.taps[0] = w->shape[2], c.taps[1] = w->shape[3];
        } else if (n->op == LT_OP_CONV2D_BACKWARD_WEIGHT) { /* x (N,C,H,W), gy (N,K,P,Q) -> (K,Cg,R,S) */
            const lathe_node *gy = n->in[1];
            c.kind = LT_C_WGRAD;
            c.n = x->shape[0], c.kog = n->shape[0] / c.groups, c.cr = n->shape[1];
            c.oh = gy->shape[2], c.ow = gy->shape[3], c.ih = x->shape[2], c.iw = x->shape[3];
            c.taps[0] = n->shape[2], c.taps[1] = n->shape[3];
            if (c.b.st[3] != 1 || c.b.st[2] != c.ow) return NULL; /* gy's planes are read as vectors */
        } else return NULL;
        if (c.cr == 0 || c.oh * c.ow == 0 || c.ih * c.iw == 0) return NULL;
        c.contiguous = c.mu[0] == 1 && c.mu[1] == 1 && c.dv[0] == 1 && c.dv[1] == 1 && c.ow == c.iw &&
                       c.a.st[3] == 1 && c.a.st[2] == c.iw;
        if (!c.contiguous && !lanes_fit(&c, &c.a)) return NULL;
        /* stride 2 along a dense input's columns: de-interleaved vectors, not gathers */
        c.deint = !c.contiguous && c.mu[1] == 2 && c.dv[0] == 1 && c.dv[1] == 1 && c.a.st[3] == 1 &&
                  (c.kind == LT_C_WGRAD || c.ow >= vl); /* a plane's rows hold at least a vector */
        if (c.kind == LT_C_PLANE) {
            tile_plane(&c, &u);
            c.range = c.n * c.groups * cdiv(c.kog, c.tm);
            /* a tile reads its block of weights and its image's input (of the
             * group) a few times each: the larger stays in the cache across a
             * run of tiles */
            c.n_inner = (int64_t)c.tm * c.taps[0] * c.taps[1] > c.ih * c.iw;
        } else {
            if (c.taps[0] * c.taps[1] > 64) return NULL; /* the taps' accumulators live on the stack */
            tile_wgrad(&c, &u);
            c.range = c.groups * cdiv(c.kog, c.tm) * cdiv(c.cr, c.tn);
        }
        if (c.contiguous && !table_fits(&c, &u)) { /* gathers instead */
            c.contiguous = false;
            if (!lanes_fit(&c, &c.a)) return NULL;
        }
        if (c.kind == LT_C_PLANE && c.bwd && !c.contiguous && phase_fits(&c, &u)) {
            c.phase = true;
            c.range *= c.dv[0] * c.dv[1];
        }
    }
    lt_contract *p = malloc(sizeof *p);
    if (p) *p = c;
    return p;
}

double lt_node_flops(const lathe_node *n) {
    const lathe_node *a = n->nin > 0 ? n->in[0] : NULL, *b = n->nin > 1 ? n->in[1] : NULL;
    switch (n->op) {
    case LT_OP_MATMUL: return 2.0 * (double)n->numel * (double)a->shape[a->rank - 1];
    case LT_OP_CONV2D: return 2.0 * (double)n->numel * (double)(b->numel / b->shape[0]); /* y (N,K,P,Q), w (K,Cg,R,S) */
    case LT_OP_CONV2D_BACKWARD_INPUT: /* gy (N,K,P,Q), w (K,Cg,R,S) */
        return 2.0 * (double)a->numel * (double)(b->numel / b->shape[0]);
    case LT_OP_CONV2D_BACKWARD_WEIGHT: /* x, gy (N,K,P,Q) -> dw (K,Cg,R,S) */
        return 2.0 * (double)b->numel * (double)(n->numel / n->shape[0]);
    default: return 0;
    }
}
