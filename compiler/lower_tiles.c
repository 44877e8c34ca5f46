/* lower_tiles.c - contraction kernels lowered to explicit vector tiles.
 *
 * A kernel with a contraction plan (kernel.h's lt_contract) computes register
 * tiles of its contraction with explicit vector code: the accumulators are
 * <VL x float> (or double) values, the reduction's innermost step is one
 * llvm.fma per accumulator, and each step loads a few vectors and scalar
 * broadcasts that the whole tile reuses.  Padding, tails and partial tiles
 * are masks (masked loads and stores, and the lanes of gathers); a partial
 * tile computes its missing rows from clamped indices and does not store
 * them.  Every output element is computed by one tile, its FMAs in a fixed
 * order, and partial sums held in lanes are added in a fixed tree, so
 * results do not depend on the thread count.  The tile's values then go
 * through the kernel's epilogue (the rest of its expression, lowered by cg_gen
 * with the contraction's value taken from the tile) or, without one,
 * straight to the output with masked vector stores.  A scatter plan
 * (index_select_backward) writes its block of columns itself: zeroes, then
 * the gradient's rows added in index order. */

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Core.h>

#include "kernel.h"
#include "lower_emit.h"

typedef struct {
    cg *c;
    const lt_kernel *k;
    const lt_contract *p;
    int vl, esize;
    LLVMTypeRef et, vt, bt;        /* element, vector, <VL x i1> */
    LLVMTypeRef mt;                /* a mask as the mask table holds it: iVL bits (the target's tiles use
                                    * mask registers: AVX-512), else a vector of VL integers of the element's size */
    LLVMValueRef zero, iota;       /* <VL x et> 0, <VL x i64> 0, 1, ... */
    LLVMValueRef table;            /* contiguous convolutions: a mask per (tap, vector) */
    int64_t nvt;                   /* vectors per tap in the table */
    bool epi;                      /* the kernel's value is more than the contraction */
} vk;

static int64_t cdiv64(int64_t a, int64_t b) { return (a + b - 1) / b; }

typedef struct {
    LLVMValueRef ctr, i;
    LLVMBasicBlockRef head, exit;
} loop;

/* for (i = lo; i < hi; i++) { ... loop_end }: returns i.  A new memo scope. */
static LLVMValueRef loop_begin(cg *c, loop *l, LLVMValueRef lo, LLVMValueRef hi) {
    l->ctr = cg_alloca(c, c->i64);
    LLVMBuildStore(c->b, lo, l->ctr);
    l->head = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "loop");
    LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "body");
    l->exit = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "exit");
    LLVMBuildBr(c->b, l->head);
    LLVMPositionBuilderAtEnd(c->b, l->head);
    l->i = LLVMBuildLoad2(c->b, c->i64, l->ctr, "");
    LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, l->i, hi, ""), body, l->exit);
    LLVMPositionBuilderAtEnd(c->b, body);
    cg_push_scope(c);
    return l->i;
}
static void loop_end(cg *c, loop *l) {
    cg_pop_scope(c);
    LLVMBuildStore(c->b, LLVMBuildNSWAdd(c->b, l->i, k64(c, 1), ""), l->ctr);
    LLVMBuildBr(c->b, l->head);
    LLVMPositionBuilderAtEnd(c->b, l->exit);
}

/* if (cond) { ... if_end } */
static LLVMBasicBlockRef if_begin(cg *c, LLVMValueRef cond) {
    LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "then");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "endif");
    LLVMBuildCondBr(c->b, cond, then, done);
    LLVMPositionBuilderAtEnd(c->b, then);
    cg_push_scope(c);
    return done;
}
static void if_end(cg *c, LLVMBasicBlockRef done) {
    cg_pop_scope(c);
    LLVMBuildBr(c->b, done);
    LLVMPositionBuilderAtEnd(c->b, done);
}

/* i64 index arithmetic */
static LLVMValueRef add_(cg *c, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildNSWAdd(c->b, a, b, ""); }
static LLVMValueRef addk(cg *c, LLVMValueRef a, int64_t k) { return k ? add_(c, a, k64(c, k)) : a; }
static LLVMValueRef mulk(cg *c, LLVMValueRef a, int64_t k) { return k == 1 ? a : LLVMBuildNSWMul(c->b, a, k64(c, k), ""); }
static LLVMValueRef divk(cg *c, LLVMValueRef a, int64_t k) { return k == 1 ? a : LLVMBuildSDiv(c->b, a, k64(c, k), ""); }
static LLVMValueRef remk(cg *c, LLVMValueRef a, int64_t k) { return k == 1 ? k64(c, 0) : LLVMBuildSRem(c->b, a, k64(c, k), ""); }
static LLVMValueRef mink(cg *c, LLVMValueRef a, int64_t k) {
    return LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, a, k64(c, k), ""), a, k64(c, k), "");
}

static LLVMValueRef call_intr(cg *c, const char *name, LLVMTypeRef *tys, unsigned ntys, LLVMValueRef *args, unsigned n) {
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(c->mod, id, tys, ntys);
    return LLVMBuildCall2(c->b, LLVMIntrinsicGetType(c->ctx, id, tys, ntys), fn, args, n, "");
}

static LLVMValueRef splat(vk *v, LLVMValueRef x) {
    cg *c = v->c;
    LLVMTypeRef t = LLVMVectorType(LLVMTypeOf(x), (unsigned)v->vl);
    LLVMValueRef ins = LLVMBuildInsertElement(c->b, LLVMGetPoison(t), x, LLVMConstInt(c->i32, 0, 0), "");
    return LLVMBuildShuffleVector(c->b, ins, LLVMGetPoison(t), LLVMConstNull(LLVMVectorType(c->i32, (unsigned)v->vl)), "");
}
static LLVMValueRef isplat(vk *v, int64_t k) { return splat(v, k64(v->c, k)); }
/* <VL x i32> k, for lane positions computed in 32 bits */
static LLVMValueRef k32(vk *v, int64_t k) { return splat(v, LLVMConstInt(v->c->i32, (unsigned long long)k, 1)); }

/* Vector of buffer buf at element idx: all lanes, or those of mask (others
 * fill). */
static LLVMValueRef vload_fill(vk *v, int buf, LLVMValueRef idx, LLVMValueRef mask, LLVMValueRef fill);
static LLVMValueRef vload(vk *v, int buf, LLVMValueRef idx, LLVMValueRef mask) { return vload_fill(v, buf, idx, mask, v->zero); }
static LLVMValueRef vload_fill(vk *v, int buf, LLVMValueRef idx, LLVMValueRef mask, LLVMValueRef fill) {
    cg *c = v->c;
    LLVMTypeRef mty;
    LLVMValueRef p = cg_elem_ptr(c, buf, idx, &mty), r;
    if (!mask) {
        r = LLVMBuildLoad2(c->b, v->vt, p, "");
        LLVMSetAlignment(r, (unsigned)v->esize);
    } else {
        LLVMTypeRef tys[2] = {v->vt, c->ptr};
        LLVMValueRef args[4] = {p, LLVMConstInt(c->i32, (unsigned)v->esize, 0), mask, fill};
        r = call_intr(c, "llvm.masked.load", tys, 2, args, 4);
    }
    return cg_tag(c, r, buf);
}
/* x to buffer buf at element idx: the lanes of mask, or all (mask NULL). */
static void vstore(vk *v, int buf, LLVMValueRef idx, LLVMValueRef x, LLVMValueRef mask) {
    cg *c = v->c;
    LLVMTypeRef mty;
    LLVMValueRef p = cg_elem_ptr(c, buf, idx, &mty);
    if (!mask) {
        LLVMValueRef st = LLVMBuildStore(c->b, x, p);
        LLVMSetAlignment(st, (unsigned)v->esize);
        cg_tag(c, st, buf);
        return;
    }
    LLVMTypeRef tys[2] = {v->vt, c->ptr};
    LLVMValueRef args[4] = {x, p, LLVMConstInt(c->i32, (unsigned)v->esize, 0), mask};
    cg_tag(c, call_intr(c, "llvm.masked.store", tys, 2, args, 4), buf);
}
/* Lanes of buffer buf at elements base + offs[lane], for the lanes of mask
 * (others fill). */
static LLVMValueRef vgather_fill(vk *v, int buf, LLVMValueRef base, LLVMValueRef offs, LLVMValueRef mask, LLVMValueRef fill);
static LLVMValueRef vgather(vk *v, int buf, LLVMValueRef base, LLVMValueRef offs, LLVMValueRef mask) {
    return vgather_fill(v, buf, base, offs, mask, v->zero);
}
static LLVMValueRef vgather_fill(vk *v, int buf, LLVMValueRef base, LLVMValueRef offs, LLVMValueRef mask, LLVMValueRef fill) {
    cg *c = v->c;
    LLVMTypeRef mty;
    LLVMValueRef p = cg_elem_ptr(c, buf, base, &mty);
    LLVMValueRef ptrs = LLVMBuildGEP2(c->b, v->et, p, &offs, 1, "");
    LLVMTypeRef tys[2] = {v->vt, LLVMTypeOf(ptrs)};
    LLVMValueRef args[4] = {ptrs, LLVMConstInt(c->i32, (unsigned)v->esize, 0), mask, fill};
    return cg_tag(c, call_intr(c, "llvm.masked.gather", tys, 2, args, 4), buf);
}
/* Element idx of buf in every lane. */
static LLVMValueRef bcast(vk *v, int buf, LLVMValueRef idx) {
    LLVMTypeRef mty;
    LLVMValueRef x = cg_tag(v->c, LLVMBuildLoad2(v->c->b, v->et, cg_elem_ptr(v->c, buf, idx, &mty), ""), buf);
    return splat(v, x);
}
static LLVMValueRef vfma(vk *v, LLVMValueRef a, LLVMValueRef b, LLVMValueRef acc) {
    LLVMValueRef args[3] = {a, b, acc};
    return call_intr(v->c, "llvm.fma", &v->vt, 1, args, 3);
}
/* acc[i] = fma(a, b, acc[i]), or only in the lanes of mask */
static void acc_fma(vk *v, LLVMValueRef acc, LLVMValueRef a, LLVMValueRef b, LLVMValueRef mask) {
    cg *c = v->c;
    LLVMValueRef old = LLVMBuildLoad2(c->b, v->vt, acc, "");
    LLVMValueRef x = vfma(v, a, b, old);
    if (mask) x = LLVMBuildSelect(c->b, mask, x, old, "");
    LLVMBuildStore(c->b, x, acc);
}
/* The sum of x's lanes: halves added in a fixed tree. */
static LLVMValueRef hsum(vk *v, LLVMValueRef x) {
    cg *c = v->c;
    for (int w = v->vl / 2; w >= 1; w /= 2) {
        LLVMValueRef lo[LT_TILE_MAX_LANES], hi[LT_TILE_MAX_LANES];
        for (int i = 0; i < w; i++) lo[i] = LLVMConstInt(c->i32, (unsigned)i, 0), hi[i] = LLVMConstInt(c->i32, (unsigned)(w + i), 0);
        LLVMValueRef a = LLVMBuildShuffleVector(c->b, x, LLVMGetPoison(LLVMTypeOf(x)), LLVMConstVector(lo, (unsigned)w), "");
        LLVMValueRef b = LLVMBuildShuffleVector(c->b, x, LLVMGetPoison(LLVMTypeOf(x)), LLVMConstVector(hi, (unsigned)w), "");
        x = LLVMBuildFAdd(c->b, a, b, "");
    }
    return LLVMBuildExtractElement(c->b, x, LLVMConstInt(c->i32, 0, 0), "");
}
/* Lane u of the result: the sum of xs[u]'s lanes, for u < n <= VL (other
 * lanes 0).  A fixed tree: at each level pairs of vectors, whose lanes run
 * in segments (one per source, w lanes each), become one vector of
 * half-width segments, the low halves plus the high halves, until each
 * segment is one lane; sources stay in order. */
static LLVMValueRef hsum_each(vk *v, LLVMValueRef *xs, int n) {
    cg *c = v->c;
    LLVMValueRef cur[LT_TILE_MAX_LANES];
    int m = n;
    for (int u = 0; u < n; u++) cur[u] = xs[u];
    for (int w = v->vl; w > 1; w /= 2) {
        /* each vector holds VL/w segments; paired vectors (a, b) give segments [a's..., b's...] of w/2 */
        int nm = (m + 1) / 2, seg = v->vl / w;
        for (int pi = 0; pi < nm; pi++) {
            LLVMValueRef a = cur[2 * pi], b = 2 * pi + 1 < m ? cur[2 * pi + 1] : v->zero;
            LLVMValueRef lo[LT_TILE_MAX_LANES], hi[LT_TILE_MAX_LANES];
            for (int sgi = 0; sgi < 2 * seg; sgi++) /* output segment sgi: source segment sgi % seg of a or b */
                for (int e = 0; e < w / 2; e++) {
                    int src = (sgi < seg ? 0 : v->vl) + (sgi % seg) * w + e;
                    lo[sgi * (w / 2) + e] = LLVMConstInt(c->i32, (unsigned)src, 0);
                    hi[sgi * (w / 2) + e] = LLVMConstInt(c->i32, (unsigned)(src + w / 2), 0);
                }
            LLVMValueRef l = LLVMBuildShuffleVector(c->b, a, b, LLVMConstVector(lo, (unsigned)v->vl), "");
            LLVMValueRef h = LLVMBuildShuffleVector(c->b, a, b, LLVMConstVector(hi, (unsigned)v->vl), "");
            cur[pi] = LLVMBuildFAdd(c->b, l, h, "");
        }
        m = nm;
    }
    return cur[0];
}

/* Lanes o0 + l < n */
static LLVMValueRef tail_mask(vk *v, LLVMValueRef o0, int64_t n) {
    LLVMValueRef o = LLVMBuildAdd(v->c->b, splat(v, o0), v->iota, "");
    return LLVMBuildICmp(v->c->b, LLVMIntSLT, o, isplat(v, n), "");
}
/* Row `row`, vector j of the mask table. */
static LLVMValueRef table_mask(vk *v, LLVMValueRef row, LLVMValueRef j) {
    cg *c = v->c;
    LLVMValueRef i = add_(c, mulk(c, row, v->nvt), j);
    LLVMValueRef m = LLVMBuildLoad2(c->b, v->mt, LLVMBuildGEP2(c->b, v->mt, v->table, &i, 1, ""), "");
    if (LLVMGetTypeKind(v->mt) == LLVMIntegerTypeKind) return LLVMBuildBitCast(c->b, m, v->bt, "");
    return LLVMBuildICmp(c->b, LLVMIntSLT, m, LLVMConstNull(v->mt), "");
}

/* Whether lane o of vector row `row` of the mask table reads an input.
 * Contiguous plans: row is tap (r, s), o a position of the plane of lanes
 * (oh x ow), set when o is in the plane and its input (oh + beta +
 * r*dbeta, ow + ...) is inside the input plane.  Phase plans: row is
 * (phase (a, b), tap (r, s)), o a position (i, j) of the phase's plane (ih x
 * iw), set when the tap reaches the phase and reads the gradient at (i +
 * (a + beta + r*dbeta)/dv, ...) inside its plane. */
static bool lane_in(const lt_contract *p, int64_t row, int64_t o) {
    int64_t taps = p->taps[0] * p->taps[1], tap = row % taps, ph = row / taps, r = tap / p->taps[1], s = tap % p->taps[1];
    if (!p->phase) {
        if (o >= p->oh * p->ow) return false;
        int64_t h = o / p->ow + p->beta[0] + r * p->dbeta[0], w = o % p->ow + p->beta[1] + s * p->dbeta[1];
        return h >= 0 && h < p->ih && w >= 0 && w < p->iw;
    }
    if (o >= p->ih * p->iw) return false;
    int64_t pos[2] = {o / p->iw, o % p->iw}, at[2] = {ph / p->dv[1], ph % p->dv[1]}, tp[2] = {r, s}, lim[2] = {p->ih, p->iw};
    for (int d = 0; d < 2; d++) {
        int64_t num = at[d] + p->beta[d] + tp[d] * p->dbeta[d];
        if (num % p->dv[d] != 0) return false;
        int64_t x = pos[d] + num / p->dv[d];
        if (x < 0 || x >= lim[d]) return false;
    }
    return true;
}

/* The masks of a contiguous or phase plan as constant data: `rows` rows of
 * nvt vectors (lane_in), bits with mask registers, else vectors. */
static void make_table(vk *v, int index, int64_t rows, int64_t nvt) {
    cg *c = v->c;
    const lt_contract *p = v->p;
    LLVMValueRef *vals = malloc((size_t)(rows * nvt) * sizeof *vals);
    if (!vals) return; /* leaves v->table NULL: the caller falls back */
    for (int64_t row = 0; row < rows; row++)
        for (int64_t j = 0; j < nvt; j++) {
            uint64_t bits = 0;
            for (int l = 0; l < v->vl; l++)
                if (lane_in(p, row, j * v->vl + l)) bits |= 1ull << l;
            if (LLVMGetTypeKind(v->mt) == LLVMIntegerTypeKind) vals[row * nvt + j] = LLVMConstInt(v->mt, bits, 0);
            else {
                LLVMTypeRef it = LLVMGetElementType(v->mt);
                LLVMValueRef lanes[LT_TILE_MAX_LANES];
                for (int l = 0; l < v->vl; l++) lanes[l] = LLVMConstInt(it, bits >> l & 1 ? ~0ull : 0, 0);
                vals[row * nvt + j] = LLVMConstVector(lanes, (unsigned)v->vl);
            }
        }
    char name[48];
    snprintf(name, sizeof name, "lathe_k%d_masks", index);
    LLVMTypeRef at = LLVMArrayType2(v->mt, (uint64_t)(rows * nvt));
    v->table = LLVMAddGlobal(c->mod, at, name);
    LLVMSetInitializer(v->table, LLVMConstArray2(v->mt, vals, (uint64_t)(rows * nvt)));
    LLVMSetGlobalConstant(v->table, 1);
    LLVMSetLinkage(v->table, LLVMPrivateLinkage);
    LLVMSetUnnamedAddress(v->table, LLVMGlobalUnnamedAddr);
    v->nvt = nvt;
    free(vals);
}

/* Gathers for output positions o0 + l of the plane of lanes and tap (r, s):
 * each lane's input row ih*dv = oh*mu + beta + r*dbeta and column alike,
 * offset ih*sh + iw*sw within an input plane, and the mask of the lanes in
 * the plane whose input exists (inside the input, and a multiple of dv). */
static void gather_lanes(vk *v, LLVMValueRef o0, LLVMValueRef r, LLVMValueRef s, int64_t sh, int64_t sw,
                         LLVMValueRef *offs, LLVMValueRef *mask) {
    /* in 32-bit lanes (contract.c checks that the plane's offsets fit): x86 has
     * no 64-bit vector multiply or divide by a constant before AVX-512 */
    cg *c = v->c;
    const lt_contract *p = v->p;
    LLVMBuilderRef b = c->b;
    LLVMTypeRef i32v = LLVMVectorType(c->i32, (unsigned)v->vl);
    LLVMValueRef io[LT_TILE_MAX_LANES];
    for (int l = 0; l < v->vl; l++) io[l] = LLVMConstInt(c->i32, (unsigned)l, 0);
    LLVMValueRef o = LLVMBuildAdd(b, splat(v, LLVMBuildTrunc(b, o0, c->i32, "")), LLVMConstVector(io, (unsigned)v->vl), "");
    LLVMValueRef oh = LLVMBuildUDiv(b, o, k32(v, p->ow), "");
    LLVMValueRef ow = LLVMBuildSub(b, o, LLVMBuildMul(b, oh, k32(v, p->ow), ""), "");
    LLVMValueRef m = LLVMBuildICmp(b, LLVMIntSLT, o, k32(v, p->oh * p->ow), "");
    LLVMValueRef pos[2] = {oh, ow}, tap[2] = {r, s}, in[2];
    int64_t lim[2] = {p->ih, p->iw};
    for (int d = 0; d < 2; d++) {
        LLVMValueRef off = LLVMBuildTrunc(b, add_(c, k64(c, p->beta[d]), mulk(c, tap[d], p->dbeta[d])), c->i32, "");
        LLVMValueRef num = LLVMBuildAdd(b, LLVMBuildMul(b, pos[d], k32(v, p->mu[d]), ""), splat(v, off), "");
        m = LLVMBuildAnd(b, m, LLVMBuildICmp(b, LLVMIntSGE, num, LLVMConstNull(i32v), ""), "");
        m = LLVMBuildAnd(b, m, LLVMBuildICmp(b, LLVMIntSLT, num, k32(v, lim[d] * p->dv[d]), ""), "");
        if (p->dv[d] > 1) {
            LLVMValueRef rem = LLVMBuildSRem(b, num, k32(v, p->dv[d]), "");
            m = LLVMBuildAnd(b, m, LLVMBuildICmp(b, LLVMIntEQ, rem, LLVMConstNull(i32v), ""), "");
            num = LLVMBuildSDiv(b, num, k32(v, p->dv[d]), "");
        }
        in[d] = num;
    }
    *offs = LLVMBuildAdd(b, LLVMBuildMul(b, in[0], k32(v, sh), ""), LLVMBuildMul(b, in[1], k32(v, sw), ""), "");
    *mask = m;
}

/* The kernel's value at one element, stored at linear index lin of its
 * output: raw through the epilogue, whose index variables (c->vars) the
 * caller has set. */
static void store_elem(vk *v, LLVMValueRef raw, LLVMValueRef lin) {
    cg *c = v->c;
    LLVMValueRef x = raw;
    if (v->epi) {
        c->memo[v->p->red->id] = raw;
        c->memo_scope[v->p->red->id] = c->scopes[c->nscope - 1];
        x = cg_gen(c, v->k->value);
    }
    LLVMTypeRef mty;
    LLVMValueRef ptr = cg_elem_ptr(c, v->k->buf, lin, &mty);
    if (c->f->bufs[v->k->buf].dtype == LATHE_BOOL) x = LLVMBuildZExt(c->b, x, c->i8, "");
    cg_tag(c, LLVMBuildStore(c->b, x, ptr), v->k->buf);
}

/* A scratch array of n elements, in the entry block. */
static LLVMValueRef scratch(vk *v, int64_t n) {
    cg *c = v->c;
    LLVMBasicBlockRef cur = LLVMGetInsertBlock(c->b);
    LLVMValueRef first = LLVMGetFirstInstruction(c->entry);
    if (first) LLVMPositionBuilderBefore(c->b, first);
    else LLVMPositionBuilderAtEnd(c->b, c->entry);
    LLVMValueRef a = LLVMBuildAlloca(c->b, LLVMArrayType2(v->et, (uint64_t)n), "");
    LLVMSetAlignment(a, 64);
    LLVMPositionBuilderAtEnd(c->b, cur);
    return a;
}
static LLVMValueRef scratch_at(vk *v, LLVMValueRef s, LLVMValueRef i) { return LLVMBuildGEP2(v->c->b, v->et, s, &i, 1, ""); }

/* Rows of vectors (acc[i*nv + j], row i at output index row0 + i*rstride,
 * vector j at + o0 + j*VL) of a tile of `rows` rows, `count` of them real,
 * each of lanes [o0, olim) of a row: to the output with masked stores, or
 * through scratch and the epilogue, setting vars with set(i, o). */
typedef void (*setvars_fn)(vk *v, void *arg, LLVMValueRef i, LLVMValueRef o);
static void store_rows(vk *v, LLVMValueRef *acc, int rows, int nv, LLVMValueRef count, LLVMValueRef row0,
                       int64_t rstride, LLVMValueRef o0, LLVMValueRef olim, setvars_fn set, void *arg) {
    cg *c = v->c;
    if (!v->epi) {
        LLVMValueRef masks[LT_TILE_MAX_DIM];
        for (int j = 0; j < nv; j++) {
            LLVMValueRef o = LLVMBuildAdd(c->b, splat(v, addk(c, o0, (int64_t)j * v->vl)), v->iota, "");
            masks[j] = LLVMBuildICmp(c->b, LLVMIntSLT, o, splat(v, olim), "");
        }
        for (int i = 0; i < rows; i++) {
            LLVMBasicBlockRef done = i ? if_begin(c, LLVMBuildICmp(c->b, LLVMIntSLT, k64(c, i), count, "")) : NULL;
            for (int j = 0; j < nv; j++) {
                LLVMValueRef x = LLVMBuildLoad2(c->b, v->vt, acc[i * nv + j], "");
                vstore(v, v->k->buf, add_(c, addk(c, row0, i * rstride), addk(c, o0, (int64_t)j * v->vl)), x, masks[j]);
            }
            if (done) if_end(c, done);
        }
        return;
    }
    int64_t w = (int64_t)nv * v->vl;
    LLVMValueRef s = scratch(v, rows * w);
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < nv; j++) {
            LLVMValueRef st = LLVMBuildStore(c->b, LLVMBuildLoad2(c->b, v->vt, acc[i * nv + j], ""),
                                             scratch_at(v, s, k64(c, i * w + (int64_t)j * v->vl)));
            LLVMSetAlignment(st, (unsigned)v->esize);
        }
    loop li, lo;
    LLVMValueRef i = loop_begin(c, &li, k64(c, 0), count);
    LLVMValueRef hi = addk(c, o0, w);
    hi = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, hi, olim, ""), hi, olim, "");
    LLVMValueRef o = loop_begin(c, &lo, o0, hi);
    set(v, arg, i, o);
    LLVMValueRef raw = LLVMBuildLoad2(c->b, v->et, scratch_at(v, s, add_(c, mulk(c, i, w), LLVMBuildSub(c->b, o, o0, ""))), "");
    store_elem(v, raw, add_(c, add_(c, row0, mulk(c, i, rstride)), o));
    loop_end(c, &lo);
    loop_end(c, &li);
}

/* Scalar results sum[i*nc + j] of a tile (rows x nc, counts rc x cc real),
 * element (i, j) at output index lin(i, j) = base + i*si + j*sj: stored, or
 * through scratch and the epilogue. */
static void store_sums(vk *v, LLVMValueRef *sum, int rows, int nc, LLVMValueRef rc, LLVMValueRef cc, LLVMValueRef base,
                       int64_t si, int64_t sj, setvars_fn set, void *arg) {
    cg *c = v->c;
    LLVMValueRef s = scratch(v, rows * nc);
    for (int i = 0; i < rows * nc; i++) LLVMBuildStore(c->b, sum[i], scratch_at(v, s, k64(c, i)));
    loop li, lj;
    LLVMValueRef i = loop_begin(c, &li, k64(c, 0), rc);
    LLVMValueRef j = loop_begin(c, &lj, k64(c, 0), cc);
    if (v->epi) set(v, arg, i, j);
    LLVMValueRef raw = LLVMBuildLoad2(c->b, v->et, scratch_at(v, s, add_(c, mulk(c, i, nc), j)), "");
    store_elem(v, raw, add_(c, base, add_(c, mulk(c, i, si), mulk(c, j, sj))));
    loop_end(c, &lj);
    loop_end(c, &li);
}

static void zero_accs(vk *v, LLVMValueRef *acc, int n) {
    for (int i = 0; i < n; i++) LLVMBuildStore(v->c->b, v->zero, acc[i]);
}

/* Stride 2 along columns (lt_contract.deint): output columns q0 + lanes of
 * output row `orow` read the input at row orow*mu + beta + r*dbeta and
 * columns 2*q + beta + s*dbeta, which are the even lanes of two vectors of
 * the row.  Sets *off (the first element's offset within an input plane)
 * and the two vectors' masks (inside the input and before the row's end at
 * ow); deint_load then loads a plane's lanes. */
static void deint_lanes(vk *v, LLVMValueRef orow, LLVMValueRef q0, LLVMValueRef r, LLVMValueRef s, LLVMValueRef *off,
                        LLVMValueRef *m) {
    cg *c = v->c;
    const lt_contract *p = v->p;
    LLVMBuilderRef b = c->b;
    LLVMValueRef row = add_(c, mulk(c, orow, p->mu[0]), add_(c, k64(c, p->beta[0]), mulk(c, r, p->dbeta[0])));
    LLVMValueRef start = add_(c, mulk(c, q0, 2), add_(c, k64(c, p->beta[1]), mulk(c, s, p->dbeta[1])));
    LLVMValueRef rowok = LLVMBuildAnd(b, LLVMBuildICmp(b, LLVMIntSGE, row, k64(c, 0), ""),
                                      LLVMBuildICmp(b, LLVMIntSLT, row, k64(c, p->ih), ""), "");
    LLVMValueRef rowc = LLVMBuildSelect(b, rowok, row, k64(c, 0), ""); /* addresses stay in the plane */
    for (int h = 0; h < 2; h++) { /* element e = h*VL + lane: column start + e, output column q0 + e/2 */
        LLVMValueRef e = LLVMBuildAdd(b, v->iota, isplat(v, (int64_t)h * v->vl), "");
        LLVMValueRef col = LLVMBuildAdd(b, splat(v, start), e, "");
        LLVMValueRef q = LLVMBuildAdd(b, splat(v, q0), LLVMBuildLShr(b, e, isplat(v, 1), ""), "");
        LLVMValueRef ok = LLVMBuildAnd(b, LLVMBuildICmp(b, LLVMIntSGE, col, isplat(v, 0), ""),
                                       LLVMBuildICmp(b, LLVMIntSLT, col, isplat(v, p->iw), ""), "");
        ok = LLVMBuildAnd(b, ok, LLVMBuildICmp(b, LLVMIntSLT, q, isplat(v, p->ow), ""), "");
        m[h] = LLVMBuildAnd(b, ok, splat(v, rowok), "");
    }
    *off = add_(c, mulk(c, rowc, p->a.st[2]), start);
}
static LLVMValueRef deint_load(vk *v, LLVMValueRef at, LLVMValueRef *m) {
    LLVMValueRef ev[LT_TILE_MAX_LANES];
    for (int l = 0; l < v->vl; l++) ev[l] = LLVMConstInt(v->c->i32, (unsigned)(2 * l), 0);
    LLVMValueRef lo = vload(v, v->p->a.buf, at, m[0]), hi = vload(v, v->p->a.buf, addk(v->c, at, v->vl), m[1]);
    return LLVMBuildShuffleVector(v->c->b, lo, hi, LLVMConstVector(ev, (unsigned)v->vl), "");
}

/* PLANE: out (N, KO, OH, OW); a tile is (n, group, block of tm channels), all
 * of the plane in chunks of tn vectors; per chunk the reduction runs over
 * taps (r, s), then reduced channels ci:
 *   acc[i][j] += a[n, g*cr + ci, lanes of vector j shifted by the tap] * w[ko_i, ci, r, s] */
typedef struct {
    LLVMValueRef n, ko0;
    int64_t ow;
} plane_vars;
static void plane_set(vk *v, void *arg, LLVMValueRef i, LLVMValueRef o) {
    plane_vars *pv = arg;
    cg *c = v->c;
    c->vars[0] = pv->n;
    c->vars[1] = add_(c, pv->ko0, i);
    c->vars[2] = LLVMBuildUDiv(c->b, o, k64(c, pv->ow), "");
    c->vars[3] = LLVMBuildURem(c->b, o, k64(c, pv->ow), "");
}

/* A PLANE tile's images, group and channel block from its index t: the
 * channel block innermost, so a thread's consecutive tiles read one image's
 * input from the cache; or, with lt_contract.n_inner, the image innermost,
 * so they read one block of weights (layers whose weights outgrow an
 * image). */
static void plane_tile(vk *v, LLVMValueRef t, int64_t nkb, LLVMValueRef *n, LLVMValueRef *g, LLVMValueRef *kbi) {
    cg *c = v->c;
    const lt_contract *p = v->p;
    if (p->n_inner) {
        LLVMValueRef rest = divk(c, t, p->n);
        *n = remk(c, t, p->n);
        *kbi = remk(c, rest, nkb);
        *g = divk(c, rest, nkb);
    } else {
        LLVMValueRef ng = divk(c, t, nkb);
        *kbi = remk(c, t, nkb);
        *g = remk(c, ng, p->groups);
        *n = divk(c, ng, p->groups);
    }
}

static void lower_plane(vk *v, LLVMValueRef t) {
    cg *c = v->c;
    const lt_contract *p = v->p;
    const lt_view *A = &p->a, *W = &p->b;
    int kb = p->tm, nv = p->tn, vl = v->vl;
    int64_t ohw = p->oh * p->ow, nvec = cdiv64(ohw, vl), nch = cdiv64(nvec, nv), nkb = cdiv64(p->kog, kb);
    int64_t ko_all = p->groups * p->kog;
    LLVMValueRef kbi, g, n;
    plane_tile(v, t, nkb, &n, &g, &kbi);
    LLVMValueRef kstart = mulk(c, kbi, kb), gk = mulk(c, g, p->kog);
    LLVMValueRef kcount = mink(c, LLVMBuildSub(c->b, k64(c, p->kog), kstart, ""), kb);
    LLVMValueRef wrow[LT_TILE_MAX_DIM];
    for (int i = 0; i < kb; i++) {
        LLVMValueRef kin = mink(c, addk(c, kstart, i), p->kog - 1); /* clamped */
        wrow[i] = p->bwd ? addk(c, add_(c, mulk(c, g, p->cr * W->st[0]), mulk(c, kin, W->st[1])), W->off)
                         : addk(c, mulk(c, add_(c, gk, kin), W->st[0]), W->off);
    }
    int64_t wci = p->bwd ? W->st[0] : W->st[1];
    LLVMValueRef abase = addk(c, add_(c, mulk(c, n, A->st[0]), mulk(c, g, p->cr * A->st[1])), A->off);
    LLVMValueRef row0 = mulk(c, add_(c, add_(c, mulk(c, n, ko_all), gk), kstart), ohw);
    LLVMValueRef acc[LT_TILE_MAX_ACC];
    for (int i = 0; i < kb * nv; i++) acc[i] = cg_alloca(c, v->vt);
    loop lch, lr, ls, lc;
    /* deint: chunks of a row's vectors, rows of lanes [o0, olim) */
    int64_t ncr = cdiv64(cdiv64(p->ow, vl), nv);
    if (p->deint) nch = p->oh * ncr;
    LLVMValueRef ch = loop_begin(c, &lch, k64(c, 0), k64(c, nch));
    LLVMValueRef j0 = mulk(c, ch, nv), o0 = mulk(c, j0, vl), olim = k64(c, ohw), orow = NULL, q0 = NULL;
    if (p->deint) {
        orow = divk(c, ch, ncr);
        q0 = mulk(c, remk(c, ch, ncr), (int64_t)nv * vl);
        o0 = add_(c, mulk(c, orow, p->ow), q0);
        olim = mulk(c, addk(c, orow, 1), p->ow);
    }
    zero_accs(v, acc, kb * nv);
    LLVMValueRef r = loop_begin(c, &lr, k64(c, 0), k64(c, p->taps[0]));
    LLVMValueRef s = loop_begin(c, &ls, k64(c, 0), k64(c, p->taps[1]));
    LLVMValueRef mask[LT_TILE_MAX_DIM], aoff[LT_TILE_MAX_DIM], offs[LT_TILE_MAX_DIM], dm[LT_TILE_MAX_DIM][2];
    for (int j = 0; j < nv && p->deint; j++) {
        deint_lanes(v, orow, addk(c, q0, (int64_t)j * vl), r, s, &aoff[j], dm[j]);
        aoff[j] = add_(c, abase, aoff[j]);
    }
    for (int j = 0; j < nv && !p->deint; j++) {
        LLVMValueRef oj = addk(c, o0, (int64_t)j * vl);
        if (p->contiguous) {
            mask[j] = table_mask(v, add_(c, mulk(c, r, p->taps[1]), s), addk(c, j0, j));
            LLVMValueRef toff = add_(c, mulk(c, addk(c, mulk(c, r, p->dbeta[0]), p->beta[0]), p->iw),
                                     addk(c, mulk(c, s, p->dbeta[1]), p->beta[1]));
            aoff[j] = add_(c, add_(c, abase, oj), toff);
        } else gather_lanes(v, oj, r, s, A->st[2], A->st[3], &offs[j], &mask[j]);
    }
    LLVMValueRef wtap[LT_TILE_MAX_DIM];
    for (int i = 0; i < kb; i++) wtap[i] = add_(c, wrow[i], add_(c, mulk(c, r, W->st[2]), mulk(c, s, W->st[3])));
    LLVMValueRef ci = loop_begin(c, &lc, k64(c, 0), k64(c, p->cr));
    LLVMValueRef av[LT_TILE_MAX_DIM];
    for (int j = 0; j < nv; j++)
        av[j] = p->deint ? deint_load(v, add_(c, aoff[j], mulk(c, ci, A->st[1])), dm[j])
                : p->contiguous ? vload(v, A->buf, add_(c, aoff[j], mulk(c, ci, A->st[1])), mask[j])
                                : vgather(v, A->buf, add_(c, abase, mulk(c, ci, A->st[1])), offs[j], mask[j]);
    for (int i = 0; i < kb; i++) {
        LLVMValueRef w = bcast(v, W->buf, add_(c, wtap[i], mulk(c, ci, wci)));
        /* the input gradient skips the taps of missing inputs (select); where
         * lanes load as vectors (stride 1) they read zeros instead, as a
         * correlation with the zero-padded gradient does (as in PyTorch) */
        for (int j = 0; j < nv; j++) acc_fma(v, acc[i * nv + j], av[j], w, p->bwd && !p->contiguous ? mask[j] : NULL);
    }
    loop_end(c, &lc);
    loop_end(c, &ls);
    loop_end(c, &lr);
    plane_vars pv = {n, add_(c, gk, kstart), p->ow};
    store_rows(v, acc, kb, nv, kcount, row0, ohw, o0, olim, plane_set, &pv);
    loop_end(c, &lch);
}

/* PLANE in phases (the input gradient of a strided convolution,
 * lt_contract.phase): out (N, KO, OH, OW); a tile is (n, group, block of tm
 * channels, phase (a, b)), the phase's plane (ih x iw, output rows
 * dv[0]*i + a) in chunks of tn vectors; per chunk the reduction runs over the
 * taps that reach the phase, r = rho + dv[0]*tr, then reduced channels ci:
 *   acc[i][j] += gy[n, g*cr + ci, lanes of vector j shifted by the tap] * w[ci, ko_i, r, s]
 * The lanes go to the output with masked scatters, or through the
 * epilogue one by one. */
typedef struct {
    LLVMValueRef n, ko0, a, b;
    const lt_contract *p;
} phase_vars;
static void phase_set(vk *v, void *arg, LLVMValueRef i, LLVMValueRef o) {
    phase_vars *pv = arg;
    cg *c = v->c;
    c->vars[0] = pv->n;
    c->vars[1] = add_(c, pv->ko0, i);
    c->vars[2] = add_(c, mulk(c, LLVMBuildUDiv(c->b, o, k64(c, pv->p->iw), ""), pv->p->dv[0]), pv->a);
    c->vars[3] = add_(c, mulk(c, LLVMBuildURem(c->b, o, k64(c, pv->p->iw), ""), pv->p->dv[1]), pv->b);
}

static void lower_plane_phase(vk *v, LLVMValueRef t) {
    cg *c = v->c;
    const lt_contract *p = v->p;
    const lt_view *A = &p->a, *W = &p->b;
    LLVMBuilderRef bld = c->b;
    int kb = p->tm, nv = p->tn, vl = v->vl;
    int64_t nph = p->dv[0] * p->dv[1], taps = p->taps[0] * p->taps[1];
    int64_t ihw = p->ih * p->iw, ohw = p->oh * p->ow, nvec = cdiv64(ihw, vl), nch = cdiv64(nvec, nv);
    int64_t nkb = cdiv64(p->kog, kb), ko_all = p->groups * p->kog;
    LLVMValueRef ph = remk(c, t, nph), t1 = divk(c, t, nph);
    LLVMValueRef kbi, g, n;
    plane_tile(v, t1, nkb, &n, &g, &kbi);
    LLVMValueRef at[2] = {divk(c, ph, p->dv[1]), remk(c, ph, p->dv[1])};
    LLVMValueRef kstart = mulk(c, kbi, kb), gk = mulk(c, g, p->kog);
    LLVMValueRef kcount = mink(c, LLVMBuildSub(bld, k64(c, p->kog), kstart, ""), kb);
    LLVMValueRef wrow[LT_TILE_MAX_DIM];
    for (int i = 0; i < kb; i++) {
        LLVMValueRef kin = mink(c, addk(c, kstart, i), p->kog - 1); /* clamped */
        wrow[i] = addk(c, add_(c, mulk(c, g, p->cr * W->st[0]), mulk(c, kin, W->st[1])), W->off);
    }
    LLVMValueRef abase = addk(c, add_(c, mulk(c, n, A->st[0]), mulk(c, g, p->cr * A->st[1])), A->off);
    LLVMValueRef row0 = mulk(c, add_(c, add_(c, mulk(c, n, ko_all), gk), kstart), ohw);
    /* the taps that reach the phase: tap = rho + dv*t for t < count (all of
     * them along a dim without stride) */
    LLVMValueRef rho[2], cnt[2];
    for (int d = 0; d < 2; d++) {
        if (p->dv[d] == 1) {
            rho[d] = k64(c, 0), cnt[d] = k64(c, p->taps[d]);
            continue;
        }
        rho[d] = remk(c, addk(c, at[d], p->beta[d]), p->dv[d]); /* dbeta is -1: tap = a + beta mod dv */
        cnt[d] = divk(c, LLVMBuildSub(bld, k64(c, p->taps[d] + p->dv[d] - 1), rho[d], ""), p->dv[d]);
    }
    LLVMValueRef acc[LT_TILE_MAX_ACC];
    for (int i = 0; i < kb * nv; i++) acc[i] = cg_alloca(c, v->vt);
    loop lch, lr, ls, lc;
    LLVMValueRef ch = loop_begin(c, &lch, k64(c, 0), k64(c, nch));
    LLVMValueRef j0 = mulk(c, ch, nv), o0 = mulk(c, j0, vl);
    zero_accs(v, acc, kb * nv);
    LLVMValueRef tr = loop_begin(c, &lr, k64(c, 0), cnt[0]);
    LLVMValueRef ts = loop_begin(c, &ls, k64(c, 0), cnt[1]);
    LLVMValueRef tap[2] = {add_(c, rho[0], mulk(c, tr, p->dv[0])), add_(c, rho[1], mulk(c, ts, p->dv[1]))}, shift[2];
    for (int d = 0; d < 2; d++) /* gradient row (column) i + shift: exact division */
        shift[d] = divk(c, add_(c, addk(c, at[d], p->beta[d]), mulk(c, tap[d], p->dbeta[d])), p->dv[d]);
    LLVMValueRef toff = add_(c, mulk(c, shift[0], p->iw), shift[1]);
    LLVMValueRef trow = add_(c, mulk(c, ph, taps), add_(c, mulk(c, tap[0], p->taps[1]), tap[1]));
    LLVMValueRef mask[LT_TILE_MAX_DIM], aoff[LT_TILE_MAX_DIM], wtap[LT_TILE_MAX_DIM];
    for (int j = 0; j < nv; j++) {
        mask[j] = table_mask(v, trow, addk(c, j0, j));
        aoff[j] = add_(c, add_(c, abase, addk(c, o0, (int64_t)j * vl)), toff);
    }
    for (int i = 0; i < kb; i++) wtap[i] = add_(c, wrow[i], add_(c, mulk(c, tap[0], W->st[2]), mulk(c, tap[1], W->st[3])));
    LLVMValueRef ci = loop_begin(c, &lc, k64(c, 0), k64(c, p->cr));
    LLVMValueRef av[LT_TILE_MAX_DIM];
    for (int j = 0; j < nv; j++) av[j] = vload(v, A->buf, add_(c, aoff[j], mulk(c, ci, A->st[1])), mask[j]);
    for (int i = 0; i < kb; i++) {
        LLVMValueRef w = bcast(v, W->buf, add_(c, wtap[i], mulk(c, ci, W->st[0])));
        for (int j = 0; j < nv; j++) acc_fma(v, acc[i * nv + j], av[j], w, NULL);
    }
    loop_end(c, &lc);
    loop_end(c, &ls);
    loop_end(c, &lr);
    if (v->epi) {
        phase_vars pv = {n, add_(c, gk, kstart), at[0], at[1], p};
        int64_t w = (int64_t)nv * vl;
        LLVMValueRef sc = scratch(v, kb * w);
        for (int i = 0; i < kb; i++)
            for (int j = 0; j < nv; j++) {
                LLVMValueRef st = LLVMBuildStore(bld, LLVMBuildLoad2(bld, v->vt, acc[i * nv + j], ""),
                                                 scratch_at(v, sc, k64(c, i * w + (int64_t)j * vl)));
                LLVMSetAlignment(st, (unsigned)v->esize);
            }
        loop li, lo;
        LLVMValueRef i = loop_begin(c, &li, k64(c, 0), kcount);
        LLVMValueRef o = loop_begin(c, &lo, o0, mink(c, addk(c, o0, w), ihw));
        phase_set(v, &pv, i, o);
        LLVMValueRef raw = LLVMBuildLoad2(bld, v->et, scratch_at(v, sc, add_(c, mulk(c, i, w), LLVMBuildSub(bld, o, o0, ""))), "");
        store_elem(v, raw, add_(c, add_(c, row0, mulk(c, i, ohw)), add_(c, mulk(c, c->vars[2], p->ow), c->vars[3])));
        loop_end(c, &lo);
        loop_end(c, &li);
    } else {
        /* lane (i, j) of the phase's plane is output (dv0*i + a, dv1*j + b), in 32 bits (contract.c) */
        LLVMValueRef io[LT_TILE_MAX_LANES];
        for (int l = 0; l < vl; l++) io[l] = LLVMConstInt(c->i32, (unsigned)l, 0);
        LLVMValueRef a32 = LLVMBuildTrunc(bld, at[0], c->i32, ""), b32 = LLVMBuildTrunc(bld, at[1], c->i32, "");
        LLVMValueRef offs[LT_TILE_MAX_DIM], real[LT_TILE_MAX_DIM];
        for (int j = 0; j < nv; j++) {
            LLVMValueRef q = LLVMBuildAdd(bld, splat(v, LLVMBuildTrunc(bld, addk(c, o0, (int64_t)j * vl), c->i32, "")),
                                          LLVMConstVector(io, (unsigned)vl), "");
            LLVMValueRef qi = LLVMBuildUDiv(bld, q, k32(v, p->iw), ""), qj = LLVMBuildSub(bld, q, LLVMBuildMul(bld, qi, k32(v, p->iw), ""), "");
            LLVMValueRef h = LLVMBuildAdd(bld, LLVMBuildMul(bld, qi, k32(v, p->dv[0]), ""), splat(v, a32), "");
            LLVMValueRef wc = LLVMBuildAdd(bld, LLVMBuildMul(bld, qj, k32(v, p->dv[1]), ""), splat(v, b32), "");
            offs[j] = LLVMBuildAdd(bld, LLVMBuildMul(bld, h, k32(v, p->ow), ""), wc, "");
            real[j] = LLVMBuildICmp(bld, LLVMIntSLT, q, k32(v, ihw), "");
        }
        for (int i = 0; i < kb; i++) {
            LLVMBasicBlockRef done = i ? if_begin(c, LLVMBuildICmp(bld, LLVMIntSLT, k64(c, i), kcount, "")) : NULL;
            LLVMTypeRef mty;
            LLVMValueRef base = cg_elem_ptr(c, v->k->buf, add_(c, row0, k64(c, i * ohw)), &mty);
            for (int j = 0; j < nv; j++) {
                LLVMValueRef ptrs = LLVMBuildGEP2(bld, v->et, base, &offs[j], 1, "");
                LLVMTypeRef tys[2] = {v->vt, LLVMTypeOf(ptrs)};
                LLVMValueRef args[4] = {LLVMBuildLoad2(bld, v->vt, acc[i * nv + j], ""), ptrs,
                                        LLVMConstInt(c->i32, (unsigned)v->esize, 0), real[j]};
                cg_tag(c, call_intr(c, "llvm.masked.scatter", tys, 2, args, 4), v->k->buf);
            }
            if (done) if_end(c, done);
        }
    }
    loop_end(c, &lch);
}

/* WGRAD: out (K, Cg, R, S); a tile is (group, tm output channels, tn input
 * channels), every tap:
 *   acc[tap][i][jj] += gy[n, k_i, lanes of j] * x[n, g*cr + c_jj, lanes of j shifted by the tap]
 * The reduction over (image n, vector j of the gradient's plane) goes in
 * chunks that fit the L1 cache: a run of vectors of one image's planes, or,
 * where the planes are small, whole planes of a few images.  Per chunk the
 * taps take turns: a tap's accumulators are registers while it runs over
 * the chunk, and wait in the tile's scratch for the next chunk; so the
 * chunk's planes, loaded once from memory, serve every tap from L1.  The
 * order of the FMAs is fixed by the shapes alone. */
typedef struct {
    LLVMValueRef k0, c0, r, s;
} wgrad_vars;
static void wgrad_set(vk *v, void *arg, LLVMValueRef i, LLVMValueRef j) {
    wgrad_vars *wv = arg;
    cg *c = v->c;
    c->vars[0] = add_(c, wv->k0, i);
    c->vars[1] = add_(c, wv->c0, j);
    c->vars[2] = wv->r;
    c->vars[3] = wv->s;
}

/* Bytes of the planes one wgrad chunk streams: well inside the smallest L1
 * data cache of the x86 cores tiles are sized for (32 KiB). */
enum { LT_WGRAD_CHUNK_BYTES = 16 << 10 };

/* The chunks of lower_wgrad: `img` images of `jv` vectors each (img > 1
 * only when jv is the whole plane). */
static void wgrad_chunk(const lt_contract *p, int vl, int esize, int64_t *img, int64_t *jv) {
    int64_t nvec = cdiv64(p->oh * p->ow, vl);
    int64_t per = (int64_t)(p->tm + p->tn) * vl * esize; /* bytes per vector position */
    int64_t fit = LT_WGRAD_CHUNK_BYTES / per;
    if (fit < 4) fit = 4;
    if (fit >= nvec) {
        *jv = nvec;
        *img = fit / nvec;
        if (*img > p->n) *img = p->n;
    } else {
        *jv = fit;
        *img = 1;
    }
}

/* WGRAD, deint: vector j of the gradient's plane is row j / nq, columns
 * (j % nq)*VL + lanes; xb[jj] is channel jj's image, xv[jj] gets its lanes. */
static void wgrad_deint(vk *v, LLVMValueRef j, int64_t nq, LLVMValueRef r, LLVMValueRef s, LLVMValueRef *xb,
                        LLVMValueRef *xv) {
    cg *c = v->c;
    LLVMValueRef off, m[2];
    deint_lanes(v, divk(c, j, nq), mulk(c, remk(c, j, nq), v->vl), r, s, &off, m);
    for (int jj = 0; jj < v->p->tn; jj++) xv[jj] = deint_load(v, add_(c, xb[jj], off), m);
}

static void lower_wgrad(vk *v, LLVMValueRef t) {
    cg *c = v->c;
    const lt_contract *p = v->p;
    const lt_view *X = &p->a, *G = &p->b;
    int kb = p->tm, cb = p->tn, vl = v->vl, na = kb * cb;
    int64_t taps = p->taps[0] * p->taps[1], ohw = p->oh * p->ow, nvec = cdiv64(ohw, vl), whole = ohw / vl;
    int64_t nq = cdiv64(p->ow, vl); /* deint: vectors per row of the gradient's plane */
    if (p->deint) nvec = whole = p->oh * nq;
    int64_t nkb = cdiv64(p->kog, kb), ncb = cdiv64(p->cr, cb), img, jv;
    wgrad_chunk(p, vl, v->esize, &img, &jv);
    LLVMValueRef cbi = remk(c, t, ncb), t2 = divk(c, t, ncb), kbi = remk(c, t2, nkb), g = divk(c, t2, nkb);
    LLVMValueRef kstart = mulk(c, kbi, kb), cstart = mulk(c, cbi, cb), gk = mulk(c, g, p->kog);
    LLVMValueRef kcount = mink(c, LLVMBuildSub(c->b, k64(c, p->kog), kstart, ""), kb);
    LLVMValueRef ccount = mink(c, LLVMBuildSub(c->b, k64(c, p->cr), cstart, ""), cb);
    LLVMValueRef gyrow[LT_TILE_MAX_DIM], xrow[LT_TILE_MAX_DIM];
    for (int i = 0; i < kb; i++) gyrow[i] = addk(c, mulk(c, add_(c, gk, mink(c, addk(c, kstart, i), p->kog - 1)), G->st[1]), G->off);
    for (int j = 0; j < cb; j++)
        xrow[j] = addk(c, mulk(c, add_(c, mulk(c, g, p->cr), mink(c, addk(c, cstart, j), p->cr - 1)), X->st[1]), X->off);
    /* the taps' accumulators between chunks: (tap, i, jj) vectors */
    LLVMBasicBlockRef cur = LLVMGetInsertBlock(c->b);
    LLVMValueRef first = LLVMGetFirstInstruction(c->entry);
    if (first) LLVMPositionBuilderBefore(c->b, first);
    else LLVMPositionBuilderAtEnd(c->b, c->entry);
    LLVMValueRef part = LLVMBuildAlloca(c->b, LLVMArrayType2(v->vt, (uint64_t)(taps * na)), "");
    LLVMSetAlignment(part, 64);
    LLVMPositionBuilderAtEnd(c->b, cur);
    loop lz, ln, ljc, lt, li, lj, ls;
    /* one chunk (small planes, few images): the taps start from zero, not from the scratch */
    bool one = cdiv64(p->n, img) == 1 && cdiv64(nvec, jv) == 1;
    if (!one) {
        LLVMValueRef z = loop_begin(c, &lz, k64(c, 0), k64(c, taps * na));
        LLVMBuildStore(c->b, v->zero, LLVMBuildGEP2(c->b, v->vt, part, &z, 1, ""));
        loop_end(c, &lz);
    }
    LLVMValueRef acc[LT_TILE_MAX_ACC];
    for (int i = 0; i < na; i++) acc[i] = cg_alloca(c, v->vt);
    /* chunks: images [n0, n0 + img) x vectors [j0, j0 + jv) */
    LLVMValueRef n0 = mulk(c, loop_begin(c, &ln, k64(c, 0), k64(c, cdiv64(p->n, img))), img);
    LLVMValueRef nend = mink(c, addk(c, n0, img), p->n);
    LLVMValueRef j0 = mulk(c, loop_begin(c, &ljc, k64(c, 0), k64(c, cdiv64(nvec, jv))), jv);
    LLVMValueRef jend = mink(c, addk(c, j0, jv), whole); /* whole vectors; the tail after them */
    LLVMValueRef tail = whole < nvec ? LLVMBuildICmp(c->b, LLVMIntSGE, addk(c, j0, jv), k64(c, nvec), "") : NULL;
    LLVMValueRef tap = loop_begin(c, &lt, k64(c, 0), k64(c, taps));
    LLVMValueRef r = divk(c, tap, p->taps[1]), s = remk(c, tap, p->taps[1]);
    LLVMValueRef slot[LT_TILE_MAX_ACC];
    for (int i = 0; i < na; i++) {
        LLVMValueRef at = addk(c, mulk(c, tap, na), i);
        slot[i] = LLVMBuildGEP2(c->b, v->vt, part, &at, 1, "");
        LLVMBuildStore(c->b, one ? v->zero : LLVMBuildLoad2(c->b, v->vt, slot[i], ""), acc[i]);
    }
    LLVMValueRef toff = k64(c, 0);
    if (p->contiguous)
        toff = add_(c, mulk(c, addk(c, mulk(c, r, p->dbeta[0]), p->beta[0]), p->iw), addk(c, mulk(c, s, p->dbeta[1]), p->beta[1]));
    LLVMValueRef n = loop_begin(c, &li, n0, nend);
    LLVMValueRef xb[LT_TILE_MAX_DIM], gb[LT_TILE_MAX_DIM];
    for (int jj = 0; jj < cb; jj++) xb[jj] = add_(c, add_(c, xrow[jj], mulk(c, n, X->st[0])), toff);
    for (int i = 0; i < kb; i++) gb[i] = add_(c, gyrow[i], mulk(c, n, G->st[0]));
    /* the chunk's whole vectors, then the plane's partial last one (gy masked) */
    for (int pass = 0; pass < 2; pass++) {
        if (pass && !tail) continue;
        LLVMBasicBlockRef done = NULL;
        LLVMValueRef j;
        if (pass) {
            done = if_begin(c, tail);
            j = k64(c, whole);
        } else j = loop_begin(c, &lj, j0, jend);
        LLVMValueRef xv[LT_TILE_MAX_DIM];
        if (p->deint) {
            wgrad_deint(v, j, nq, r, s, xb, xv);
            LLVMValueRef q0 = mulk(c, remk(c, j, nq), vl), gm = tail_mask(v, q0, p->ow);
            LLVMValueRef o0 = add_(c, mulk(c, divk(c, j, nq), p->ow), q0);
            for (int i = 0; i < kb; i++) {
                LLVMValueRef gv = vload(v, G->buf, add_(c, gb[i], o0), gm);
                for (int jj = 0; jj < cb; jj++) acc_fma(v, acc[i * cb + jj], gv, xv[jj], NULL);
            }
            if (pass) if_end(c, done);
            else loop_end(c, &lj);
            continue;
        }
        LLVMValueRef o0 = mulk(c, j, vl), xm, gm = pass ? tail_mask(v, o0, ohw) : NULL, offs = NULL;
        if (p->contiguous) xm = table_mask(v, tap, j);
        else gather_lanes(v, o0, r, s, X->st[2], X->st[3], &offs, &xm);
        for (int jj = 0; jj < cb; jj++)
            xv[jj] = p->contiguous ? vload(v, X->buf, add_(c, xb[jj], o0), xm) : vgather(v, X->buf, xb[jj], offs, xm);
        for (int i = 0; i < kb; i++) {
            LLVMValueRef gv = vload(v, G->buf, add_(c, gb[i], o0), gm);
            for (int jj = 0; jj < cb; jj++) acc_fma(v, acc[i * cb + jj], gv, xv[jj], NULL);
        }
        if (pass) if_end(c, done);
        else loop_end(c, &lj);
    }
    loop_end(c, &li);
    for (int i = 0; i < na; i++) LLVMBuildStore(c->b, LLVMBuildLoad2(c->b, v->vt, acc[i], ""), slot[i]);
    loop_end(c, &lt);
    loop_end(c, &ljc);
    loop_end(c, &ln);
    /* each partial's lanes summed, for the tile's real elements: out (K, Cg,
     * R, S) holds (k, c, r, s) at (k*Cg + c)*R*S + tap.  Without an
     * epilogue, a (k, c)'s taps are summed together, VL at a time, into one
     * vector stored whole; else one by one (one loop, so one copy of the
     * epilogue whatever the tile) */
    if (!v->epi) {
        LLVMValueRef q = loop_begin(c, &ls, k64(c, 0), k64(c, na)), i = divk(c, q, cb), jj = remk(c, q, cb);
        LLVMValueRef real = LLVMBuildAnd(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, i, kcount, ""),
                                         LLVMBuildICmp(c->b, LLVMIntSLT, jj, ccount, ""), "");
        LLVMBasicBlockRef done = if_begin(c, real);
        LLVMValueRef out0 = mulk(c, add_(c, mulk(c, add_(c, add_(c, gk, kstart), i), p->cr), add_(c, cstart, jj)), taps);
        for (int64_t t0 = 0; t0 < taps; t0 += vl) {
            int cnt = taps - t0 < vl ? (int)(taps - t0) : vl;
            LLVMValueRef vecs[LT_TILE_MAX_LANES], lanes[LT_TILE_MAX_LANES];
            for (int u = 0; u < cnt; u++) {
                LLVMValueRef at = add_(c, k64(c, (t0 + u) * na), q);
                vecs[u] = LLVMBuildLoad2(c->b, v->vt, LLVMBuildGEP2(c->b, v->vt, part, &at, 1, ""), "");
            }
            for (int l = 0; l < vl; l++) lanes[l] = LLVMConstInt(c->i1, l < cnt, 0);
            vstore(v, v->k->buf, addk(c, out0, t0), hsum_each(v, vecs, cnt), LLVMConstVector(lanes, (unsigned)vl));
        }
        if_end(c, done);
        loop_end(c, &ls);
        return;
    }
    LLVMValueRef at = loop_begin(c, &ls, k64(c, 0), k64(c, taps * na));
    LLVMValueRef q = remk(c, at, na), i = divk(c, q, cb), jj = remk(c, q, cb);
    tap = divk(c, at, na);
    LLVMValueRef real = LLVMBuildAnd(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, i, kcount, ""),
                                     LLVMBuildICmp(c->b, LLVMIntSLT, jj, ccount, ""), "");
    LLVMBasicBlockRef done = if_begin(c, real);
    LLVMValueRef sum = hsum(v, LLVMBuildLoad2(c->b, v->vt, LLVMBuildGEP2(c->b, v->vt, part, &at, 1, ""), ""));
    LLVMValueRef k = add_(c, add_(c, gk, kstart), i), ci = add_(c, cstart, jj);
    wgrad_vars wv = {k, ci, divk(c, tap, p->taps[1]), remk(c, tap, p->taps[1])};
    wgrad_set(v, &wv, k64(c, 0), k64(c, 0));
    store_elem(v, sum, add_(c, mulk(c, add_(c, mulk(c, k, p->cr), ci), taps), tap));
    if_end(c, done);
    loop_end(c, &ls);
}

/* Matmul tiles: (batch, block of tm rows, block of tn vectors or columns). */
typedef struct {
    LLVMValueRef bidx[LATHE_MAX_RANK], m0, n0;
    int nbatch;
} mm_vars;
static void mm_set(vk *v, void *arg, LLVMValueRef i, LLVMValueRef j) {
    mm_vars *mv = arg;
    cg *c = v->c;
    for (int d = 0; d < mv->nbatch; d++) c->vars[d] = mv->bidx[d];
    c->vars[mv->nbatch] = add_(c, mv->m0, i);
    c->vars[mv->nbatch + 1] = v->p->kind == LT_C_MM_BCAST ? j : add_(c, mv->n0, j);
}

static int64_t mm_batches(const lt_contract *p) {
    int64_t nb = 1;
    for (int d = 0; d < p->nbatch; d++) nb *= p->batch[d];
    return nb;
}

/* The batch index bt unravelled, and a's and b's offsets there. */
static void mm_batch(vk *v, LLVMValueRef bt, mm_vars *mv, LLVMValueRef *aoff, LLVMValueRef *boff) {
    cg *c = v->c;
    const lt_contract *p = v->p;
    *aoff = k64(c, p->a.off);
    *boff = k64(c, p->b.off);
    mv->nbatch = p->nbatch;
    for (int d = p->nbatch - 1; d >= 0; d--) {
        mv->bidx[d] = d ? remk(c, bt, p->batch[d]) : bt;
        bt = divk(c, bt, p->batch[d]);
        *aoff = add_(c, *aoff, mulk(c, mv->bidx[d], p->a_bst[d]));
        *boff = add_(c, *boff, mulk(c, mv->bidx[d], p->b_bst[d]));
    }
}

/* MM_BCAST in cache blocks (lt_contract.kc): a tile is (batch, block of mc
 * rows, block of tn vectors of columns).  For each panel of kc rows of b,
 * the panel's columns are packed into a dense scratch (zeros past the last
 * column), then each register tile of tm rows of the block adds the panel's
 * terms to its partial sums, kept in a scratch between panels; the last
 * panel's sums go out.  Each element's terms are added in k order, as
 * unblocked. */
static void lower_mm_blocked(vk *v, LLVMValueRef t) {
    cg *c = v->c;
    const lt_contract *p = v->p;
    LLVMBuilderRef b = c->b;
    int mb = p->tm, nv = p->tn, vl = v->vl;
    int64_t w = (int64_t)nv * vl, nmb = cdiv64(p->m, p->mc), nnb = cdiv64(cdiv64(p->ncol, vl), nv);
    LLVMValueRef nbi = remk(c, t, nnb), t2 = divk(c, t, nnb), mbi = remk(c, t2, nmb), bt = divk(c, t2, nmb);
    mm_vars mv;
    LLVMValueRef aoff, boff;
    mm_batch(v, bt, &mv, &aoff, &boff);
    LLVMValueRef mstart = mulk(c, mbi, p->mc), n0 = mulk(c, nbi, w);
    LLVMValueRef mend = mink(c, addk(c, mstart, p->mc), p->m);
    LLVMValueRef nmask[LT_TILE_MAX_DIM];
    for (int j = 0; j < nv; j++) nmask[j] = tail_mask(v, addk(c, n0, (int64_t)j * vl), p->ncol);
    LLVMValueRef bp = scratch(v, p->kc * w), cs = scratch(v, p->mc * w);
    loop lz, lp, lk, lr, lk2;
    LLVMValueRef z = loop_begin(c, &lz, k64(c, 0), k64(c, p->mc * nv));
    LLVMValueRef zs = LLVMBuildStore(b, v->zero, scratch_at(v, cs, mulk(c, z, vl)));
    LLVMSetAlignment(zs, (unsigned)v->esize);
    loop_end(c, &lz);
    LLVMValueRef acc[LT_TILE_MAX_ACC];
    for (int i = 0; i < mb * nv; i++) acc[i] = cg_alloca(c, v->vt);
    LLVMValueRef k0 = mulk(c, loop_begin(c, &lp, k64(c, 0), k64(c, cdiv64(p->k, p->kc))), p->kc);
    LLVMValueRef klen = mink(c, LLVMBuildSub(b, k64(c, p->k), k0, ""), p->kc);
    /* the panel, packed */
    LLVMValueRef kk = loop_begin(c, &lk, k64(c, 0), klen);
    LLVMValueRef brow = add_(c, add_(c, boff, mulk(c, add_(c, k0, kk), p->bk)), n0);
    for (int j = 0; j < nv; j++) {
        LLVMValueRef x = vload(v, p->b.buf, addk(c, brow, (int64_t)j * vl), nmask[j]);
        LLVMValueRef st = LLVMBuildStore(b, x, scratch_at(v, bp, addk(c, mulk(c, kk, w), (int64_t)j * vl)));
        LLVMSetAlignment(st, (unsigned)v->esize);
    }
    loop_end(c, &lk);
    LLVMValueRef last = LLVMBuildICmp(b, LLVMIntSGE, addk(c, k0, p->kc), k64(c, p->k), "");
    /* the block's register tiles */
    LLVMValueRef m0 = add_(c, mstart, mulk(c, loop_begin(c, &lr, k64(c, 0), divk(c, addk(c, LLVMBuildSub(b, mend, mstart, ""), mb - 1), mb)), mb));
    LLVMValueRef mcount = mink(c, LLVMBuildSub(b, mend, m0, ""), mb);
    LLVMValueRef arow[LT_TILE_MAX_DIM], crow = mulk(c, LLVMBuildSub(b, m0, mstart, ""), w);
    for (int i = 0; i < mb; i++) arow[i] = add_(c, aoff, mulk(c, mink(c, addk(c, m0, i), p->m - 1), p->am));
    for (int i = 0; i < mb; i++)
        for (int j = 0; j < nv; j++) {
            LLVMValueRef x = LLVMBuildLoad2(b, v->vt, scratch_at(v, cs, addk(c, crow, i * w + (int64_t)j * vl)), "");
            LLVMSetAlignment(x, (unsigned)v->esize);
            LLVMBuildStore(b, x, acc[i * nv + j]);
        }
    kk = loop_begin(c, &lk2, k64(c, 0), klen);
    LLVMValueRef bv[LT_TILE_MAX_DIM];
    for (int j = 0; j < nv; j++) {
        bv[j] = LLVMBuildLoad2(b, v->vt, scratch_at(v, bp, addk(c, mulk(c, kk, w), (int64_t)j * vl)), "");
        LLVMSetAlignment(bv[j], (unsigned)v->esize);
    }
    for (int i = 0; i < mb; i++) {
        LLVMValueRef a = bcast(v, p->a.buf, add_(c, arow[i], mulk(c, add_(c, k0, kk), p->ak)));
        for (int j = 0; j < nv; j++) acc_fma(v, acc[i * nv + j], a, bv[j], NULL);
    }
    loop_end(c, &lk2);
    LLVMBasicBlockRef out = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "out");
    LLVMBasicBlockRef keep = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "keep");
    LLVMBasicBlockRef next = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "next");
    LLVMBuildCondBr(b, last, out, keep);
    LLVMPositionBuilderAtEnd(b, keep);
    for (int i = 0; i < mb; i++)
        for (int j = 0; j < nv; j++) {
            LLVMValueRef st = LLVMBuildStore(b, LLVMBuildLoad2(b, v->vt, acc[i * nv + j], ""),
                                             scratch_at(v, cs, addk(c, crow, i * w + (int64_t)j * vl)));
            LLVMSetAlignment(st, (unsigned)v->esize);
        }
    LLVMBuildBr(b, next);
    LLVMPositionBuilderAtEnd(b, out);
    cg_push_scope(c);
    mv.m0 = m0;
    mv.n0 = n0;
    LLVMValueRef row0 = add_(c, mulk(c, bt, p->m * p->ncol), mulk(c, m0, p->ncol));
    store_rows(v, acc, mb, nv, mcount, row0, p->ncol, n0, k64(c, p->ncol), mm_set, &mv);
    cg_pop_scope(c);
    LLVMBuildBr(b, next);
    LLVMPositionBuilderAtEnd(b, next);
    loop_end(c, &lr);
    loop_end(c, &lp);
}

/* MM_BCAST: c[m_i, lanes of vector j] += a[m_i, kk] * b[kk, lanes of vector j] */
static void lower_mm_bcast(vk *v, LLVMValueRef t) {
    cg *c = v->c;
    const lt_contract *p = v->p;
    if (p->kc) {
        lower_mm_blocked(v, t);
        return;
    }
    int mb = p->tm, nv = p->tn, vl = v->vl;
    int64_t nmb = cdiv64(p->m, mb), nnb = cdiv64(cdiv64(p->ncol, vl), nv);
    LLVMValueRef mbi = remk(c, t, nmb), t2 = divk(c, t, nmb), nbi = remk(c, t2, nnb), bt = divk(c, t2, nnb);
    if (p->batch_inner) bt = remk(c, t2, mm_batches(p)), nbi = divk(c, t2, mm_batches(p)); /* b's columns shared */
    mm_vars mv;
    LLVMValueRef aoff, boff;
    mm_batch(v, bt, &mv, &aoff, &boff);
    LLVMValueRef m0 = mulk(c, mbi, mb), n0 = mulk(c, nbi, (int64_t)nv * vl);
    LLVMValueRef mcount = mink(c, LLVMBuildSub(c->b, k64(c, p->m), m0, ""), mb);
    LLVMValueRef arow[LT_TILE_MAX_DIM], nmask[LT_TILE_MAX_DIM];
    for (int i = 0; i < mb; i++) arow[i] = add_(c, aoff, mulk(c, mink(c, addk(c, m0, i), p->m - 1), p->am));
    for (int j = 0; j < nv; j++) nmask[j] = tail_mask(v, addk(c, n0, (int64_t)j * vl), p->ncol);
    LLVMValueRef acc[LT_TILE_MAX_ACC];
    for (int i = 0; i < mb * nv; i++) acc[i] = cg_alloca(c, v->vt);
    zero_accs(v, acc, mb * nv);
    /* tiles whose columns are all inside load without masks */
    bool ragged = p->ncol % ((int64_t)nv * vl) != 0;
    LLVMBasicBlockRef join = NULL, other = NULL;
    if (ragged) {
        LLVMValueRef full = LLVMBuildICmp(c->b, LLVMIntSLE, addk(c, n0, (int64_t)nv * vl), k64(c, p->ncol), "");
        LLVMBasicBlockRef whole = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "whole");
        other = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "ragged");
        join = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "tiled");
        LLVMBuildCondBr(c->b, full, whole, other);
        LLVMPositionBuilderAtEnd(c->b, whole);
    }
    for (int pass = 0; pass < (ragged ? 2 : 1); pass++) {
        if (pass) LLVMPositionBuilderAtEnd(c->b, other);
        cg_push_scope(c);
        loop lk;
        LLVMValueRef kk = loop_begin(c, &lk, k64(c, 0), k64(c, p->k));
        LLVMValueRef bv[LT_TILE_MAX_DIM];
        for (int j = 0; j < nv; j++)
            bv[j] = vload(v, p->b.buf, add_(c, add_(c, boff, mulk(c, kk, p->bk)), addk(c, n0, (int64_t)j * vl)), pass ? nmask[j] : NULL);
        for (int i = 0; i < mb; i++) {
            LLVMValueRef a = bcast(v, p->a.buf, add_(c, arow[i], mulk(c, kk, p->ak)));
            for (int j = 0; j < nv; j++) acc_fma(v, acc[i * nv + j], a, bv[j], NULL);
        }
        loop_end(c, &lk);
        cg_pop_scope(c);
        if (ragged) LLVMBuildBr(c->b, join);
    }
    if (ragged) LLVMPositionBuilderAtEnd(c->b, join);
    mv.m0 = m0;
    mv.n0 = n0;
    LLVMValueRef row0 = add_(c, mulk(c, bt, p->m * p->ncol), mulk(c, m0, p->ncol));
    store_rows(v, acc, mb, nv, mcount, row0, p->ncol, n0, k64(c, p->ncol), mm_set, &mv);
}

/* MM_DOT: c[m_i, n_j] = sum over lanes of a[m_i, k lanes] * b[k lanes, n_j] */
static void lower_mm_dot(vk *v, LLVMValueRef t) {
    cg *c = v->c;
    const lt_contract *p = v->p;
    int mb = p->tm, nb = p->tn, vl = v->vl;
    int64_t nmb = cdiv64(p->m, mb), nnb = cdiv64(p->ncol, nb), kfull = p->k / vl;
    LLVMValueRef nbi = remk(c, t, nnb), t2 = divk(c, t, nnb), mbi = remk(c, t2, nmb), bt = divk(c, t2, nmb);
    if (p->batch_inner) bt = remk(c, t2, mm_batches(p)), mbi = divk(c, t2, mm_batches(p)); /* a's rows shared */
    mm_vars mv;
    LLVMValueRef aoff, boff;
    mm_batch(v, bt, &mv, &aoff, &boff);
    LLVMValueRef m0 = mulk(c, mbi, mb), n0 = mulk(c, nbi, nb);
    LLVMValueRef mcount = mink(c, LLVMBuildSub(c->b, k64(c, p->m), m0, ""), mb);
    LLVMValueRef ncount = mink(c, LLVMBuildSub(c->b, k64(c, p->ncol), n0, ""), nb);
    LLVMValueRef arow[LT_TILE_MAX_DIM], bcol[LT_TILE_MAX_DIM];
    for (int i = 0; i < mb; i++) arow[i] = add_(c, aoff, mulk(c, mink(c, addk(c, m0, i), p->m - 1), p->am));
    for (int j = 0; j < nb; j++) bcol[j] = add_(c, boff, mulk(c, mink(c, addk(c, n0, j), p->ncol - 1), p->bn));
    LLVMValueRef acc[LT_TILE_MAX_ACC];
    for (int i = 0; i < mb * nb; i++) acc[i] = cg_alloca(c, v->vt);
    zero_accs(v, acc, mb * nb);
    for (int pass = 0; pass < 2; pass++) { /* full vectors, then the tail */
        if (pass == 1 && p->k % vl == 0) break;
        loop lk;
        LLVMValueRef kv = pass ? k64(c, kfull) : loop_begin(c, &lk, k64(c, 0), k64(c, kfull));
        LLVMValueRef k0 = mulk(c, kv, vl), mask = pass ? tail_mask(v, k0, p->k) : NULL;
        LLVMValueRef bv[LT_TILE_MAX_DIM];
        for (int j = 0; j < nb; j++) bv[j] = vload(v, p->b.buf, add_(c, bcol[j], k0), mask);
        for (int i = 0; i < mb; i++) {
            LLVMValueRef a = vload(v, p->a.buf, add_(c, arow[i], k0), mask);
            for (int j = 0; j < nb; j++) acc_fma(v, acc[i * nb + j], a, bv[j], NULL);
        }
        if (!pass) loop_end(c, &lk);
    }
    LLVMValueRef sum[LT_TILE_MAX_ACC];
    for (int i = 0; i < mb * nb; i++) sum[i] = hsum(v, LLVMBuildLoad2(c->b, v->vt, acc[i], ""));
    mv.m0 = m0;
    mv.n0 = n0;
    LLVMValueRef base = add_(c, mulk(c, bt, p->m * p->ncol), add_(c, mulk(c, m0, p->ncol), n0));
    store_sums(v, sum, mb, nb, mcount, ncount, base, p->ncol, 1, mm_set, &mv);
}

/* POOL: out (N, C, P, Q); a tile is one plane (n, c), in chunks of tn
 * vectors; missing inputs are -inf, and the maximum follows the scalar
 * rule: NaN propagates, a NaN input wins, ties keep the first. */
static LLVMValueRef max_rule(cg *c, LLVMValueRef acc, LLVMValueRef x) {
    LLVMValueRef m = LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, LLVMRealUGT, x, acc, ""), x, acc, "");
    return LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, LLVMRealUNO, acc, acc, ""), acc, m, "");
}

static void lower_pool(vk *v, LLVMValueRef t) {
    cg *c = v->c;
    const lt_contract *p = v->p;
    const lt_view *A = &p->a;
    int nv = p->tn, vl = v->vl;
    int64_t ohw = p->oh * p->ow, nch = cdiv64(cdiv64(ohw, vl), nv);
    LLVMValueRef n = divk(c, t, p->kog), ch = remk(c, t, p->kog);
    LLVMValueRef abase = addk(c, add_(c, mulk(c, n, A->st[0]), mulk(c, ch, A->st[1])), A->off);
    LLVMValueRef ninf = splat(v, LLVMConstReal(v->et, -INFINITY));
    LLVMValueRef acc[LT_TILE_MAX_DIM];
    for (int j = 0; j < nv; j++) acc[j] = cg_alloca(c, v->vt);
    loop lch, lr, ls;
    LLVMValueRef chk = loop_begin(c, &lch, k64(c, 0), k64(c, nch));
    LLVMValueRef j0 = mulk(c, chk, nv), o0 = mulk(c, j0, vl);
    for (int j = 0; j < nv; j++) LLVMBuildStore(c->b, ninf, acc[j]);
    LLVMValueRef r = loop_begin(c, &lr, k64(c, 0), k64(c, p->taps[0]));
    LLVMValueRef s = loop_begin(c, &ls, k64(c, 0), k64(c, p->taps[1]));
    for (int j = 0; j < nv; j++) {
        LLVMValueRef oj = addk(c, o0, (int64_t)j * vl), x;
        if (p->contiguous) {
            LLVMValueRef mask = table_mask(v, add_(c, mulk(c, r, p->taps[1]), s), addk(c, j0, j));
            LLVMValueRef toff = add_(c, mulk(c, addk(c, r, p->beta[0]), p->iw), addk(c, s, p->beta[1]));
            x = vload_fill(v, A->buf, add_(c, add_(c, abase, oj), toff), mask, ninf);
        } else {
            LLVMValueRef offs, mask;
            gather_lanes(v, oj, r, s, A->st[2], A->st[3], &offs, &mask);
            x = vgather_fill(v, A->buf, abase, offs, mask, ninf);
        }
        LLVMBuildStore(c->b, max_rule(c, LLVMBuildLoad2(c->b, v->vt, acc[j], ""), x), acc[j]);
    }
    loop_end(c, &ls);
    loop_end(c, &lr);
    plane_vars pv = {n, ch, p->ow};
    store_rows(v, acc, 1, nv, k64(c, 1), mulk(c, t, ohw), ohw, o0, k64(c, ohw), plane_set, &pv);
    loop_end(c, &lch);
}

/* POOL_BWD: out (N, C, H, W); a tile is one plane (n, c).  Windows go in
 * vectors (lanes over the output plane, as POOL): each window's arg-max
 * (the scalar rule: the first maximum, a NaN winning, the last NaN last)
 * is found once, with gathers and blends, never branches; then lane by
 * lane, windows in order, the window's gradient goes to the element it
 * points at in a scratch plane (added, when windows overlap), which then
 * goes through the epilogue.  A lane with no real element to point at
 * writes a spare slot past the plane. */
static void lower_pool_bwd(vk *v, LLVMValueRef t) {
    cg *c = v->c;
    const lt_contract *p = v->p;
    const lt_view *X = &p->a, *G = &p->b;
    int vl = v->vl;
    int64_t ihw = p->ih * p->iw, ohw = p->oh * p->ow, nvec = cdiv64(ohw, vl);
    LLVMBuilderRef b = c->b;
    LLVMTypeRef i32v = LLVMVectorType(c->i32, (unsigned)vl);
    LLVMValueRef n = divk(c, t, p->kog), ch = remk(c, t, p->kog);
    LLVMValueRef xbase = addk(c, add_(c, mulk(c, n, X->st[0]), mulk(c, ch, X->st[1])), X->off);
    LLVMValueRef gbase = addk(c, add_(c, mulk(c, n, G->st[0]), mulk(c, ch, G->st[1])), G->off);
    LLVMValueRef sc = scratch(v, ihw + 1), ninf = splat(v, LLVMConstReal(v->et, -INFINITY));
    bool overlap = p->mu[0] < p->taps[0] || p->mu[1] < p->taps[1];
    loop lz, lj, lo;
    LLVMValueRef z = loop_begin(c, &lz, k64(c, 0), k64(c, ihw + 1));
    LLVMBuildStore(b, LLVMConstReal(v->et, 0), scratch_at(v, sc, z));
    loop_end(c, &lz);
    LLVMValueRef j = loop_begin(c, &lj, k64(c, 0), k64(c, nvec));
    LLVMValueRef o0 = mulk(c, j, vl);
    LLVMValueRef io[LT_TILE_MAX_LANES];
    for (int l = 0; l < vl; l++) io[l] = LLVMConstInt(c->i32, (unsigned)l, 0);
    LLVMValueRef o = LLVMBuildAdd(b, splat(v, LLVMBuildTrunc(b, o0, c->i32, "")), LLVMConstVector(io, (unsigned)vl), "");
    LLVMValueRef oh = LLVMBuildUDiv(b, o, k32(v, p->ow), ""), ow = LLVMBuildSub(b, o, LLVMBuildMul(b, oh, k32(v, p->ow), ""), "");
    LLVMValueRef real = LLVMBuildICmp(b, LLVMIntSLT, o, k32(v, ohw), "");
    LLVMValueRef best = ninf, bi = LLVMConstNull(i32v);
    for (int64_t i = 0; i < p->taps[0]; i++)
        for (int64_t jj = 0; jj < p->taps[1]; jj++) {
            LLVMValueRef offs, mask;
            gather_lanes(v, o0, k64(c, i), k64(c, jj), X->st[2], X->st[3], &offs, &mask);
            LLVMValueRef x = vgather_fill(v, X->buf, xbase, offs, mask, ninf);
            LLVMValueRef better = LLVMBuildOr(b, LLVMBuildFCmp(b, LLVMRealOGT, x, best, ""),
                                              LLVMBuildFCmp(b, LLVMRealUNO, x, x, ""), "");
            best = LLVMBuildSelect(b, better, x, best, "");
            bi = LLVMBuildSelect(b, better, k32(v, i * p->taps[1] + jj), bi, "");
        }
    LLVMValueRef g;
    if (G->st[3] == 1 && G->st[2] == p->ow) g = vload(v, G->buf, add_(c, gbase, o0), real);
    else {
        LLVMValueRef offs = LLVMBuildAdd(b, LLVMBuildMul(b, oh, k32(v, G->st[2]), ""), LLVMBuildMul(b, ow, k32(v, G->st[3]), ""), "");
        g = vgather(v, G->buf, gbase, offs, real);
    }
    LLVMValueRef h = LLVMBuildAdd(b, LLVMBuildMul(b, oh, k32(v, p->mu[0]), ""), LLVMBuildAdd(b, k32(v, p->beta[0]), LLVMBuildUDiv(b, bi, k32(v, p->taps[1]), ""), ""), "");
    LLVMValueRef w = LLVMBuildAdd(b, LLVMBuildMul(b, ow, k32(v, p->mu[1]), ""), LLVMBuildAdd(b, k32(v, p->beta[1]), LLVMBuildURem(b, bi, k32(v, p->taps[1]), ""), ""), "");
    LLVMValueRef in = real, pos2[2] = {h, w};
    int64_t lim[2] = {p->ih, p->iw};
    for (int d = 0; d < 2; d++) {
        in = LLVMBuildAnd(b, in, LLVMBuildICmp(b, LLVMIntSGE, pos2[d], LLVMConstNull(i32v), ""), "");
        in = LLVMBuildAnd(b, in, LLVMBuildICmp(b, LLVMIntSLT, pos2[d], k32(v, lim[d]), ""), "");
    }
    LLVMValueRef pos = LLVMBuildSelect(b, in, LLVMBuildAdd(b, LLVMBuildMul(b, h, k32(v, p->iw), ""), w, ""), k32(v, ihw), "");
    for (int l = 0; l < vl; l++) {
        LLVMValueRef li = LLVMConstInt(c->i32, (unsigned)l, 0);
        LLVMValueRef at = scratch_at(v, sc, LLVMBuildSExt(b, LLVMBuildExtractElement(b, pos, li, ""), c->i64, ""));
        LLVMValueRef gl = LLVMBuildExtractElement(b, g, li, "");
        LLVMBuildStore(b, overlap ? LLVMBuildFAdd(b, LLVMBuildLoad2(b, v->et, at, ""), gl, "") : gl, at);
    }
    loop_end(c, &lj);
    o = loop_begin(c, &lo, k64(c, 0), k64(c, ihw));
    if (v->epi) {
        c->vars[0] = n;
        c->vars[1] = ch;
        c->vars[2] = LLVMBuildUDiv(b, o, k64(c, p->iw), "");
        c->vars[3] = LLVMBuildURem(b, o, k64(c, p->iw), "");
    }
    store_elem(v, LLVMBuildLoad2(b, v->et, scratch_at(v, sc, o), ""), add_(c, mulk(c, t, ihw), o));
    loop_end(c, &lo);
}

/* SCATTER: out (pre, rows, post); a tile is pre index p and columns
 * [c0, c0 + tn*VL) of post.  It zeroes them in every row, then for each
 * element j of the index in order loads the row index[j] holds (clamped:
 * inputs are checked before the run) and adds gy's columns (p, j) to it,
 * plain IEEE adds in a fixed order: each element is the sum of its rows in
 * index order whatever the thread count and the tile width.  Masks only in
 * a block at the end of post. */

/* The offset through view strides st of flat index i of the dims shape[0, n). */
static LLVMValueRef unravel_offset(cg *c, LLVMValueRef i, const int64_t *shape, const int64_t *st, int n) {
    LLVMValueRef off = k64(c, 0);
    for (int d = n - 1; d >= 0; d--) {
        LLVMValueRef q = d ? divk(c, i, shape[d]) : i;
        off = add_(c, off, mulk(c, d ? LLVMBuildSub(c->b, i, mulk(c, q, shape[d]), "") : i, st[d]));
        i = q;
    }
    return off;
}

static void scatter_block(vk *v, LLVMValueRef gbase, LLVMValueRef obase, LLVMValueRef c0, bool tail) {
    cg *c = v->c;
    const lt_contract *p = v->p;
    const lt_view *G = &p->a, *X = &p->b;
    int nv = p->tn, out = v->k->buf;
    LLVMValueRef mask[LT_TILE_MAX_DIM];
    for (int u = 0; u < nv; u++) mask[u] = tail ? tail_mask(v, addk(c, c0, (int64_t)u * v->vl), p->post) : NULL;
    loop lz, lj;
    LLVMValueRef r = loop_begin(c, &lz, k64(c, 0), k64(c, p->rows));
    LLVMValueRef o = add_(c, obase, mulk(c, r, p->post));
    for (int u = 0; u < nv; u++) vstore(v, out, addk(c, o, (int64_t)u * v->vl), v->zero, mask[u]);
    loop_end(c, &lz);
    int64_t nidx = 1;
    for (int d = 0; d < p->nidx; d++) nidx *= p->gshape[p->npre + d];
    LLVMValueRef j = loop_begin(c, &lj, k64(c, 0), k64(c, nidx));
    LLVMTypeRef mty;
    LLVMValueRef xo = addk(c, unravel_offset(c, j, p->gshape + p->npre, X->st, p->nidx), X->off);
    LLVMValueRef row = cg_tag(c, LLVMBuildLoad2(c->b, c->i64, cg_elem_ptr(c, X->buf, xo, &mty), ""), X->buf);
    row = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, row, k64(c, 0), ""), k64(c, 0), mink(c, row, p->rows - 1), "");
    LLVMValueRef go = add_(c, gbase, unravel_offset(c, j, p->gshape + p->npre, G->st + p->npre, p->nidx));
    LLVMValueRef oo = add_(c, obase, mulk(c, row, p->post));
    for (int u = 0; u < nv; u++) {
        LLVMValueRef at = addk(c, oo, (int64_t)u * v->vl);
        LLVMValueRef sum = LLVMBuildFAdd(c->b, vload(v, out, at, mask[u]), vload(v, G->buf, addk(c, go, (int64_t)u * v->vl), mask[u]), "");
        vstore(v, out, at, sum, mask[u]);
    }
    loop_end(c, &lj);
}

static void lower_scatter(vk *v, LLVMValueRef t) {
    cg *c = v->c;
    const lt_contract *p = v->p;
    int64_t w = (int64_t)p->tn * v->vl, ncb = cdiv64(p->post, w);
    LLVMValueRef pi = divk(c, t, ncb), c0 = mulk(c, remk(c, t, ncb), w);
    /* gy's post dims are dense: its block starts c0 after the row's start */
    LLVMValueRef gbase = add_(c, addk(c, unravel_offset(c, pi, p->gshape, p->a.st, p->npre), p->a.off), c0);
    LLVMValueRef obase = add_(c, mulk(c, pi, p->rows * p->post), c0);
    if (p->post % w == 0) scatter_block(v, gbase, obase, c0, false);
    else if (ncb == 1) scatter_block(v, gbase, obase, c0, true);
    else {
        LLVMBasicBlockRef full = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "full");
        LLVMBasicBlockRef part = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "tail");
        LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "done");
        LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSLE, addk(c, c0, w), k64(c, p->post), ""), full, part);
        LLVMPositionBuilderAtEnd(c->b, full);
        cg_push_scope(c);
        scatter_block(v, gbase, obase, c0, false);
        cg_pop_scope(c);
        LLVMBuildBr(c->b, done);
        LLVMPositionBuilderAtEnd(c->b, part);
        cg_push_scope(c);
        scatter_block(v, gbase, obase, c0, true);
        cg_pop_scope(c);
        LLVMBuildBr(c->b, done);
        LLVMPositionBuilderAtEnd(c->b, done);
    }
}

typedef struct {
    vk *v;
} tile_state;

static void tile_body(cg *c, void *arg) {
    vk *v = ((tile_state *)arg)->v;
    LLVMValueRef t = c->vars[v->k->nvars];
    switch (v->p->kind) {
    case LT_C_PLANE:
        if (v->p->phase) lower_plane_phase(v, t);
        else lower_plane(v, t);
        break;
    case LT_C_WGRAD: lower_wgrad(v, t); break;
    case LT_C_MM_BCAST: lower_mm_bcast(v, t); break;
    case LT_C_MM_DOT: lower_mm_dot(v, t); break;
    case LT_C_POOL: lower_pool(v, t); break;
    case LT_C_POOL_BWD: lower_pool_bwd(v, t); break;
    case LT_C_SCATTER: lower_scatter(v, t); break;
    }
}

/* The tile loop of a contraction kernel over [begin, end); false when the
 * plan cannot be lowered (out of memory), and the caller lowers the
 * expression instead. */
bool lt_lower_tiles(cg *c, const lt_kernel *k, int index) {
    const lt_contract *p = k->con;
    LT_ASSERT(p->tm >= 1 && p->tm <= LT_TILE_MAX_DIM && p->tn >= 1 && p->tn <= LT_TILE_MAX_DIM &&
              p->tm * p->tn <= LT_TILE_MAX_ACC && p->vl <= LT_TILE_MAX_LANES);
    vk v = {c, k, p, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, false};
    lathe_dtype dt = c->f->bufs[p->a.buf].dtype;
    v.vl = p->vl;
    v.esize = (int)lathe_dtype_size(dt);
    v.et = ty(c, dt);
    v.vt = LLVMVectorType(v.et, (unsigned)v.vl);
    v.bt = LLVMVectorType(c->i1, (unsigned)v.vl);
    /* the target's masks (target.h): bits, as AVX-512's mask registers hold
     * them, or vectors (the plan's table_fits sized the table the same way) */
    const lt_target *tg = c->f->target;
    LT_ASSERT(tg && v.vl * v.esize == tg->tile_bytes);
    v.mt = tg->tile_mask_regs ? LLVMIntTypeInContext(c->ctx, (unsigned)v.vl)
                              : LLVMVectorType(LLVMIntTypeInContext(c->ctx, 8 * (unsigned)v.esize), (unsigned)v.vl);
    v.zero = LLVMConstNull(v.vt);
    LLVMValueRef io[LT_TILE_MAX_LANES];
    for (int i = 0; i < v.vl; i++) io[i] = k64(c, i);
    v.iota = LLVMConstVector(io, (unsigned)v.vl);
    v.epi = k->value != p->red;
    if (tg->tile_bytes == 64) { /* 512-bit vectors stay whole (x86 splits them where 256 is preferred) */
        LLVMAddTargetDependentFunctionAttr(c->fn, "min-legal-vector-width", "512");
        LLVMAddTargetDependentFunctionAttr(c->fn, "prefer-vector-width", "512");
    }
    if ((p->contiguous || p->phase) && p->kind != LT_C_POOL_BWD) {
        int64_t taps = p->taps[0] * p->taps[1];
        int64_t nvec = p->phase ? cdiv64(p->ih * p->iw, v.vl) : cdiv64(p->oh * p->ow, v.vl);
        make_table(&v, index, p->phase ? p->dv[0] * p->dv[1] * taps : taps,
                   p->kind == LT_C_WGRAD ? nvec : cdiv64(nvec, p->tn) * p->tn);
        if (!v.table) return false;
    }
    tile_state ts = {&v};
    cg_loop(c, k->nvars, c->begin, c->end, tile_body, &ts);
    return true;
}