/* lower_llvm.c - fused kernels to LLVM IR through the LLVM C API.
 *
 * Each kernel becomes `void lathe_kN(i8 *arena, i64 begin, i64 end)`, which
 * calls its body with the places of its buffers in the arena; kernels that
 * differ only in those places share one body (share.c), so that LLVM
 * optimizes and compiles it once.  A body is a loop over the parallel range
 * [begin, end) of its leading dims, nested loops over the rest, and at each
 * element the kernel's expression; its buffers are pointer parameters.  Loop
 * counters and reduction accumulators live in allocas that mem2reg promotes,
 * which keeps the emitter short.
 *
 * Floating-point flags are chosen per instruction.  Inside a reduction
 * (the inner loops that compute one element) arithmetic may contract into
 * FMA and the accumulation may reassociate: that code runs the same way for
 * every element, whatever thread computes it.  Arithmetic in the loops over
 * elements does NOT contract: their vectorized body and scalar remainder
 * would contract differently, and since the thread count moves the chunk
 * boundaries, an element could round differently on 1 and 2 threads.
 * Nothing assumes no NaNs or infinities.  exp, log, tanh, sigmoid, erf and
 * rsqrt come from mathlib.c, never libm.
 *
 * A part of a kernel's value that holds a reduction and reads only the
 * output dims before some dim d (a row statistic, see fuse.c) is computed
 * before the loop over d and reused inside it (hoist_rows), so a row's
 * statistics cost one pass over the row each, not one per element.
 *
 * Two rewrites of the loop nest help LLVM's vectorizers, since the pass
 * pipeline does not unroll: the last two loops of a nest (over elements or
 * in a reduction) run as one loop when the expression reads their variables
 * only as a row-major index (a small plane becomes one long loop), and a
 * reduction inside another's body with a few constant iterations (a
 * window's arg-max) is unrolled.
 *
 * Kernels with a contraction or max-pool plan (kernel.h's lt_contract) are
 * lowered differently, to explicit vector tiles, in lower_tiles.c; the two
 * share the emitter's state and helpers of lower_emit.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>

#include "kernel.h"
#include "lower_emit.h"
#include "lower_llvm.h"
#include "mathlib.h"

LLVMValueRef cg_alloca(cg *c, LLVMTypeRef t) {
    LLVMBasicBlockRef cur = LLVMGetInsertBlock(c->b);
    LLVMValueRef first = LLVMGetFirstInstruction(c->entry);
    if (first) LLVMPositionBuilderBefore(c->b, first);
    else LLVMPositionBuilderAtEnd(c->b, c->entry);
    LLVMValueRef a = LLVMBuildAlloca(c->b, t, "");
    LLVMPositionBuilderAtEnd(c->b, cur);
    return a;
}

static LLVMValueRef flags(LLVMValueRef v, LLVMFastMathFlags fl) {
    if (LLVMCanValueUseFastMathFlags(v)) LLVMSetFastMathFlags(v, fl);
    return v;
}
/* FMA contraction only inside reductions (see the file's comment) */
static LLVMFastMathFlags contract(const cg *c) { return c->in_reduce ? LLVMFastMathAllowContract : 0; }

static LLVMValueRef intrinsic(cg *c, const char *name, LLVMTypeRef t, LLVMValueRef *args, unsigned n) {
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMTypeRef tys[1] = {t};
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(c->mod, id, tys, 1);
    LLVMTypeRef fty = LLVMIntrinsicGetType(c->ctx, id, tys, 1);
    return LLVMBuildCall2(c->b, fty, fn, args, n, "");
}

static bool memo_valid(cg *c, int id) {
    if (!c->memo[id]) return false;
    for (int i = 0; i < c->nscope; i++)
        if (c->scopes[i] == c->memo_scope[id]) return true;
    return false;
}

void cg_push_scope(cg *c) { c->scopes[c->nscope++] = ++c->next_scope; }
void cg_pop_scope(cg *c) { c->nscope--; }

void cg_loop(cg *c, int var, LLVMValueRef lo, LLVMValueRef hi, body_fn body, void *arg) {
    LLVMValueRef ctr = cg_alloca(c, c->i64);
    LLVMBuildStore(c->b, lo, ctr);
    LLVMBasicBlockRef head = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "loop");
    LLVMBasicBlockRef bb = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "body");
    LLVMBasicBlockRef exit = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "exit");
    LLVMBuildBr(c->b, head);
    LLVMPositionBuilderAtEnd(c->b, head);
    LLVMValueRef i = LLVMBuildLoad2(c->b, c->i64, ctr, "");
    LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, i, hi, ""), bb, exit);
    LLVMPositionBuilderAtEnd(c->b, bb);
    c->vars[var] = i;
    cg_push_scope(c);
    body(c, arg);
    cg_pop_scope(c);
    LLVMBuildStore(c->b, LLVMBuildNSWAdd(c->b, i, k64(c, 1), ""), ctr);
    LLVMBuildBr(c->b, head);
    LLVMPositionBuilderAtEnd(c->b, exit);
}

/* Tag a load or store of buffer buf with its own TBAA type, so LLVM knows
 * different buffers do not alias (they are disjoint in the plan, except a
 * buffer computed in place of another, which shares its type). */
LLVMValueRef cg_tag(cg *c, LLVMValueRef inst, int buf) {
    int sw = c->f->plan[buf].shared_with;
    while (sw >= 0) buf = sw, sw = c->f->plan[buf].shared_with;
    if (!c->tbaa[buf]) {
        char name[32];
        snprintf(name, sizeof name, "lathe.buf%d", buf);
        LLVMMetadataRef ops[3] = {LLVMMDStringInContext2(c->ctx, name, strlen(name)), c->tbaa_root,
                                  LLVMValueAsMetadata(k64(c, 0))};
        LLVMMetadataRef type = LLVMMDNodeInContext2(c->ctx, ops, 3);
        LLVMMetadataRef acc[3] = {type, type, LLVMValueAsMetadata(k64(c, 0))};
        c->tbaa[buf] = LLVMMDNodeInContext2(c->ctx, acc, 3);
    }
    LLVMSetMetadata(inst, c->tbaa_kind, LLVMMetadataAsValue(c->ctx, c->tbaa[buf]));
    return inst;
}

LLVMValueRef cg_elem_ptr(cg *c, int buf, LLVMValueRef idx, LLVMTypeRef *mty) {
    const lt_kbuf *kb = &c->f->bufs[buf];
    *mty = kb->dtype == LATHE_BOOL ? c->i8 : ty(c, kb->dtype);
    LT_ASSERT(c->slot_ptr[buf]);
    return LLVMBuildGEP2(c->b, *mty, c->slot_ptr[buf], &idx, 1, "");
}

static LLVMValueRef gen_cast(cg *c, LLVMValueRef v, lathe_dtype from, lathe_dtype to) {
    if (from == to) return v;
    LLVMTypeRef t = ty(c, to);
    bool ff = lt_is_float(from), tf = lt_is_float(to);
    if (to == LATHE_BOOL) {
        if (ff) return LLVMBuildFCmp(c->b, LLVMRealUNE, v, LLVMConstReal(ty(c, from), 0), "");
        return LLVMBuildICmp(c->b, LLVMIntNE, v, LLVMConstInt(ty(c, from), 0, 0), "");
    }
    if (from == LATHE_BOOL) return tf ? LLVMBuildUIToFP(c->b, v, t, "") : LLVMBuildZExt(c->b, v, t, "");
    if (ff && tf) return to == LATHE_F64 ? LLVMBuildFPExt(c->b, v, t, "") : LLVMBuildFPTrunc(c->b, v, t, "");
    if (!ff && tf) return LLVMBuildSIToFP(c->b, v, t, "");
    /* float to i64: saturating, NaN to 0 (as the reference evaluator) */
    unsigned id = LLVMLookupIntrinsicID("llvm.fptosi.sat", 15);
    LLVMTypeRef tys[2] = {c->i64, ty(c, from)};
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(c->mod, id, tys, 2);
    return LLVMBuildCall2(c->b, LLVMIntrinsicGetType(c->ctx, id, tys, 2), fn, &v, 1, "");
}

/* Float arithmetic for the activations, contracted only inside reductions. */
static LLVMValueRef fadd(cg *c, LLVMValueRef a, LLVMValueRef b) { return flags(LLVMBuildFAdd(c->b, a, b, ""), contract(c)); }
static LLVMValueRef fsub(cg *c, LLVMValueRef a, LLVMValueRef b) { return flags(LLVMBuildFSub(c->b, a, b, ""), contract(c)); }
static LLVMValueRef fmul(cg *c, LLVMValueRef a, LLVMValueRef b) { return flags(LLVMBuildFMul(c->b, a, b, ""), contract(c)); }

/* 0.5 x (1 + erf(x / sqrt 2)), or the tanh form 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))),
 * PyTorch's formulas. */
static LLVMValueRef gen_gelu(cg *c, LLVMValueRef x, LLVMTypeRef t, bool approximate) {
    LLVMValueRef s;
    if (approximate) {
        LLVMValueRef x3 = fmul(c, fmul(c, x, x), x);
        LLVMValueRef inner = fmul(c, LLVMConstReal(t, 0.79788456080286535588), fadd(c, x, fmul(c, LLVMConstReal(t, 0.044715), x3)));
        s = lt_emit_tanh(c->mod, c->b, inner);
    } else
        s = lt_emit_erf(c->mod, c->b, fmul(c, x, LLVMConstReal(t, 0.70710678118654752440)));
    return fmul(c, fmul(c, LLVMConstReal(t, 0.5), x), fadd(c, LLVMConstReal(t, 1), s));
}

/* x where beta x > threshold, else log(1 + e^z) / beta with z = beta x,
 * computed as max(z, 0) + log1p(e^-|z|): e^-|z| never overflows, and
 * log1p(u) = log(w) u / (w - 1) with w = 1 + u (u itself where w rounds to
 * 1) keeps tiny results' precision where log(1 + u) would round them away. */
static LLVMValueRef gen_softplus(cg *c, LLVMValueRef x, LLVMTypeRef t, double beta, double threshold) {
    LLVMValueRef zero = LLVMConstReal(t, 0), one = LLVMConstReal(t, 1);
    LLVMValueRef z = beta == 1 ? x : fmul(c, x, LLVMConstReal(t, beta));
    LLVMValueRef u = lt_emit_exp(c->mod, c->b, LLVMBuildFNeg(c->b, intrinsic(c, "llvm.fabs", t, &z, 1), ""));
    LLVMValueRef w = fadd(c, one, u);
    LLVMValueRef l1p = LLVMBuildFDiv(c->b, fmul(c, lt_emit_log(c->mod, c->b, w), u), fsub(c, w, one), "");
    l1p = LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, LLVMRealOEQ, w, one, ""), u, l1p, "");
    LLVMValueRef pos = LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, LLVMRealOGT, z, zero, ""), z, zero, "");
    LLVMValueRef y = fadd(c, pos, l1p); /* NaN flows through u */
    if (beta != 1) y = LLVMBuildFDiv(c->b, y, LLVMConstReal(t, beta), "");
    return LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, LLVMRealOGT, z, LLVMConstReal(t, threshold), ""), x, y, "");
}

static LLVMValueRef gen_unary(cg *c, const lt_expr *e) {
    LLVMValueRef x = cg_gen(c, e->a);
    LLVMTypeRef t = ty(c, e->t);
    bool fl = lt_is_float(e->t);
    switch (e->op) {
    case LT_OP_CAST: return gen_cast(c, x, e->a->t, e->t);
    case LT_OP_NEG: return fl ? LLVMBuildFNeg(c->b, x, "") : LLVMBuildNeg(c->b, x, "");
    case LT_OP_EXP: return lt_emit_exp(c->mod, c->b, x);
    case LT_OP_LOG: return lt_emit_log(c->mod, c->b, x);
    case LT_OP_TANH: return lt_emit_tanh(c->mod, c->b, x);
    case LT_OP_SIGMOID: return lt_emit_sigmoid(c->mod, c->b, x);
    case LT_OP_ERF: return lt_emit_erf(c->mod, c->b, x);
    case LT_OP_GELU: return gen_gelu(c, x, t, e->i != 0);
    case LT_OP_SILU: return fmul(c, x, lt_emit_sigmoid(c->mod, c->b, x));
    case LT_OP_SOFTPLUS: return gen_softplus(c, x, t, e->f, e->f2);
    case LT_OP_LEAKY_RELU: /* NaN fails the compare and gives NaN * slope */
        return LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, LLVMRealOGT, x, LLVMConstReal(t, 0), ""), x,
                               fmul(c, x, LLVMConstReal(t, e->f)), "");
    case LT_OP_CLAMP: { /* llvm.maximum and llvm.minimum keep NaN; an infinite bound is none */
        LLVMValueRef y = x;
        if (e->f != -INFINITY) y = intrinsic(c, "llvm.maximum", t, (LLVMValueRef[]){y, LLVMConstReal(t, e->f)}, 2);
        if (e->f2 != INFINITY) y = intrinsic(c, "llvm.minimum", t, (LLVMValueRef[]){y, LLVMConstReal(t, e->f2)}, 2);
        return y;
    }
    case LT_OP_RSQRT: return lt_emit_rsqrt(c->mod, c->b, x);
    case LT_OP_SQRT: return intrinsic(c, "llvm.sqrt", t, &x, 1);
    case LT_OP_ABS:
        if (fl) return intrinsic(c, "llvm.fabs", t, &x, 1);
        return LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, x, k64(c, 0), ""), LLVMBuildNeg(c->b, x, ""), x, "");
    case LT_OP_RELU: /* relu(NaN) = NaN, as PyTorch */
        if (fl) return LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, LLVMRealUGT, x, LLVMConstReal(t, 0), ""), x, LLVMConstReal(t, 0), "");
        return LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSGT, x, k64(c, 0), ""), x, k64(c, 0), "");
    case LT_OP_POW_SCALAR: {
        double p = e->f;
        if (p == 1) return x;
        if (p == 2) return flags(LLVMBuildFMul(c->b, x, x, ""), contract(c));
        if (p == 3) return flags(LLVMBuildFMul(c->b, flags(LLVMBuildFMul(c->b, x, x, ""), contract(c)), x, ""), contract(c));
        if (p == -1) return LLVMBuildFDiv(c->b, LLVMConstReal(t, 1), x, "");
        LLVMValueRef args[2] = {x, LLVMConstReal(t, p)};
        return intrinsic(c, "llvm.pow", t, args, 2);
    }
    default: break;
    }
    LT_ASSERT(!"unary op without lowering");
    return x;
}

static LLVMValueRef gen_binary(cg *c, const lt_expr *e) {
    LLVMValueRef a = cg_gen(c, e->a), b = cg_gen(c, e->b);
    lathe_dtype ot = e->a->t;
    bool fl = lt_is_float(ot);
    LLVMTypeRef t = ty(c, ot);
    switch (e->op) {
    case LT_OP_ADD: return fl ? flags(LLVMBuildFAdd(c->b, a, b, ""), contract(c)) : LLVMBuildAdd(c->b, a, b, "");
    case LT_OP_SUB: return fl ? flags(LLVMBuildFSub(c->b, a, b, ""), contract(c)) : LLVMBuildSub(c->b, a, b, "");
    case LT_OP_MUL: return fl ? flags(LLVMBuildFMul(c->b, a, b, ""), contract(c)) : LLVMBuildMul(c->b, a, b, "");
    case LT_OP_DIV: return flags(LLVMBuildFDiv(c->b, a, b, ""), contract(c));
    case LT_OP_POW: {
        LLVMValueRef args[2] = {a, b};
        return intrinsic(c, "llvm.pow", t, args, 2);
    }
    case LT_OP_MAXIMUM:
    case LT_OP_MINIMUM: {
        LLVMValueRef args[2] = {a, b};
        bool mx = e->op == LT_OP_MAXIMUM;
        if (fl) return intrinsic(c, mx ? "llvm.maximum" : "llvm.minimum", t, args, 2);
        return intrinsic(c, mx ? "llvm.smax" : "llvm.smin", t, args, 2);
    }
    case LT_OP_GT: case LT_OP_GE: case LT_OP_LT: case LT_OP_LE: case LT_OP_EQ: case LT_OP_NE: {
        static const LLVMRealPredicate fp[] = {LLVMRealOGT, LLVMRealOGE, LLVMRealOLT, LLVMRealOLE, LLVMRealOEQ, LLVMRealUNE};
        static const LLVMIntPredicate ip[] = {LLVMIntSGT, LLVMIntSGE, LLVMIntSLT, LLVMIntSLE, LLVMIntEQ, LLVMIntNE};
        int k = e->op - LT_OP_GT;
        if (fl) return LLVMBuildFCmp(c->b, fp[k], a, b, "");
        if (ot == LATHE_BOOL && k < 4) { /* order bools as 0 < 1 */
            a = LLVMBuildZExt(c->b, a, c->i8, "");
            b = LLVMBuildZExt(c->b, b, c->i8, "");
        }
        return LLVMBuildICmp(c->b, ip[k], a, b, "");
    }
    case XB_IDIV: return LLVMBuildSDiv(c->b, a, b, "");
    case XB_IMOD: return LLVMBuildSRem(c->b, a, b, "");
    case XB_AND: return LLVMBuildAnd(c->b, a, b, "");
    case XB_OR: return LLVMBuildOr(c->b, a, b, "");
    case XB_XOR: return LLVMBuildXor(c->b, a, b, "");
    case XB_SHR: return LLVMBuildLShr(c->b, a, b, "");
    default: break;
    }
    LT_ASSERT(!"binary op without lowering");
    return a;
}

/* ---- loop collapsing ------------------------------------------------------------ */

/* Whether e reads loop variables a and b only as a*w + b (the linear index
 * of a buffer whose rows are w long, as fuse.c builds it), so that their two
 * loops can run as one over a*w + b whose quotient and remainder by w LLVM
 * folds away: the loops over a small plane become one long loop, which
 * vectorizes. */
static bool is_mul_var(const lt_expr *e, int a, int64_t w) {
    return e->kind == X_BIN && e->op == LT_OP_MUL && e->a->kind == X_VAR && e->a->var == a && e->b->kind == X_CONST &&
           e->b->i == w;
}
static bool linear_pair(const lt_expr *e, int a, int b, int64_t w) {
    if (!e) return true;
    if (e->kind == X_VAR) return e->var != a && e->var != b;
    if (e->kind == X_BIN && e->op == LT_OP_ADD && e->t == LATHE_I64 && e->b->kind == X_VAR && e->b->var == b) {
        const lt_expr *l = e->a;
        if (is_mul_var(l, a, w)) return true;
        return l->kind == X_BIN && l->op == LT_OP_ADD && is_mul_var(l->b, a, w) && linear_pair(l->a, a, b, w);
    }
    if (!linear_pair(e->a, a, b, w) || !linear_pair(e->b, a, b, w) || !linear_pair(e->c, a, b, w)) return false;
    if (e->kind != X_REDUCE) return true;
    for (int i = 0; i < e->nvars; i++)
        if (!linear_pair(e->lo[i], a, b, w) || !linear_pair(e->hi[i], a, b, w)) return false;
    return linear_pair(e->body, a, b, w);
}
/* rows of at most this many elements are collapsed */
enum { COLLAPSE_ROW = 256 };

/* ---- reductions ---------------------------------------------------------------- */

typedef struct {
    const lt_expr *e;
    int level;
    LLVMValueRef acc, best_idx, pos;
    LLVMValueRef lo[LT_MAX_REDUCE_VARS], hi[LT_MAX_REDUCE_VARS];
} red_state;

/* Nodes of expression e, counted up to cap. */
static int expr_size(const lt_expr *e, int cap) {
    if (!e || cap <= 0) return 0;
    int n = 1;
    const lt_expr *kids[4] = {e->a, e->b, e->c, e->body};
    for (int i = 0; i < 4 && n < cap; i++) n += expr_size(kids[i], cap - n);
    return n;
}

/* Iterations of e's loops from level on when their bounds are constants
 * and the unrolled body stays small (else -1): windows, not whole planes,
 * since unrolled code costs compile time. */
static int64_t const_trips(const lt_expr *e, int level) {
    int64_t n = 1;
    for (int l = level; l < e->nvars; l++) {
        if (e->lo[l]->kind != X_CONST || e->hi[l]->kind != X_CONST) return -1;
        n *= e->hi[l]->i > e->lo[l]->i ? e->hi[l]->i - e->lo[l]->i : 0;
    }
    if (n > 16 || n * expr_size(e->body, 257) > 256) return -1;
    return n;
}

static void reduce_body(cg *c, void *arg);

/* Whether levels l and l + 1 of e run from 0 over constant extents, the
 * inner one short, and the rest of e reads them as one linear index. */
static bool reduce_pair(const lt_expr *e, int l) {
    if (l + 1 >= e->nvars) return false;
    for (int i = l; i <= l + 1; i++)
        if (e->lo[i]->kind != X_CONST || e->lo[i]->i != 0 || e->hi[i]->kind != X_CONST || e->hi[i]->i < 2) return false;
    int64_t w = e->hi[l + 1]->i;
    if (w >= COLLAPSE_ROW || !linear_pair(e->body, e->vars[l], e->vars[l + 1], w)) return false;
    for (int i = l + 2; i < e->nvars; i++)
        if (!linear_pair(e->lo[i], e->vars[l], e->vars[l + 1], w) || !linear_pair(e->hi[i], e->vars[l], e->vars[l + 1], w))
            return false;
    return true;
}

/* Body of the collapsed loop of levels l, l + 1: split the index. */
static void reduce_pair_body(cg *c, void *arg) {
    red_state *r = arg;
    const lt_expr *e = r->e;
    int l = r->level;
    LLVMValueRef j = c->vars[e->vars[l + 1]], w = k64(c, e->hi[l + 1]->i);
    c->vars[e->vars[l]] = LLVMBuildUDiv(c->b, j, w, "");
    c->vars[e->vars[l + 1]] = LLVMBuildURem(c->b, j, w, "");
    r->level++;
    reduce_body(c, r);
    r->level--;
}

/* The loop of level r->level: collapsed with the next level when they walk
 * a plane (reduce_pair); unrolled, for a reduction inside another's body
 * (a window's arg-max), when it and the loops inside it have constant
 * bounds and few iterations, since the pass pipeline does not unroll.  (At
 * an element's level an unrolled reduction would be straight-line code in
 * the loop over elements, which LLVM vectorizes with a scalar remainder that
 * must not contract differently, and costs compile time.) */
static void reduce_level(cg *c, red_state *r, LLVMValueRef lo, LLVMValueRef hi) {
    const lt_expr *e = r->e;
    int64_t trips = c->in_reduce > 1 ? const_trips(e, r->level) : -1;
    if (trips < 0) {
        if (reduce_pair(e, r->level))
            cg_loop(c, e->vars[r->level + 1], k64(c, 0), k64(c, e->hi[r->level]->i * e->hi[r->level + 1]->i),
                      reduce_pair_body, r);
        else
            cg_loop(c, e->vars[r->level], lo, hi, reduce_body, r);
        return;
    }
    for (int64_t i = e->lo[r->level]->i; i < e->hi[r->level]->i; i++) {
        c->vars[e->vars[r->level]] = k64(c, i);
        cg_push_scope(c);
        reduce_body(c, r);
        cg_pop_scope(c);
    }
}

static void reduce_body(cg *c, void *arg) {
    red_state *r = arg;
    const lt_expr *e = r->e;
    if (r->level + 1 < e->nvars) {
        r->level++;
        LLVMValueRef lo = cg_gen(c, e->lo[r->level]), hi = cg_gen(c, e->hi[r->level]);
        reduce_level(c, r, lo, hi);
        r->level--;
        return;
    }
    LLVMTypeRef t = ty(c, e->rk >= R_ARGMAX ? e->body->t : e->t);
    LLVMValueRef v = cg_gen(c, e->body);
    LLVMValueRef acc = LLVMBuildLoad2(c->b, t, r->acc, "");
    bool fl = lt_is_float(e->body->t);
    LLVMValueRef nacc;
    switch (e->rk) {
    case R_SUM:
        nacc = fl ? flags(LLVMBuildFAdd(c->b, acc, v, ""), LLVMFastMathAllowReassoc | LLVMFastMathAllowContract) : LLVMBuildAdd(c->b, acc, v, "");
        break;
    case R_MAX:
    case R_MIN: {
        bool mx = e->rk == R_MAX;
        if (fl) { /* NaN propagates, +0 is above -0: LLVM's maximum, which loops vectorize */
            LLVMValueRef args[2] = {acc, v};
            nacc = intrinsic(c, mx ? "llvm.maximum" : "llvm.minimum", t, args, 2);
        } else {
            LLVMValueRef args[2] = {acc, v};
            nacc = intrinsic(c, mx ? "llvm.smax" : "llvm.smin", c->i64, args, 2);
        }
        break;
    }
    default: { /* arg-max */
        LLVMValueRef better;
        if (fl) {
            LLVMValueRef gt = LLVMBuildFCmp(c->b, LLVMRealOGT, v, acc, "");
            LLVMValueRef vnan = LLVMBuildFCmp(c->b, LLVMRealUNO, v, v, "");
            if (e->rk == R_ARGMAX) vnan = LLVMBuildAnd(c->b, vnan, LLVMBuildFCmp(c->b, LLVMRealORD, acc, acc, ""), "");
            better = LLVMBuildOr(c->b, gt, vnan, "");
        } else better = LLVMBuildICmp(c->b, LLVMIntSGT, v, acc, "");
        nacc = LLVMBuildSelect(c->b, better, v, acc, "");
        LLVMValueRef pos = LLVMBuildLoad2(c->b, c->i64, r->pos, "");
        LLVMValueRef bi = LLVMBuildLoad2(c->b, c->i64, r->best_idx, "");
        LLVMBuildStore(c->b, LLVMBuildSelect(c->b, better, pos, bi, ""), r->best_idx);
        LLVMBuildStore(c->b, LLVMBuildAdd(c->b, pos, k64(c, 1), ""), r->pos);
    }
    }
    LLVMBuildStore(c->b, nacc, r->acc);
}

static LLVMValueRef gen_reduce(cg *c, const lt_expr *e) {
    red_state r = {e, 0, NULL, NULL, NULL, {0}, {0}};
    lathe_dtype vt = e->rk >= R_ARGMAX ? e->body->t : e->t;
    LLVMTypeRef t = ty(c, vt);
    r.acc = cg_alloca(c, t);
    LLVMValueRef init;
    if (e->rk == R_SUM) init = lt_is_float(vt) ? LLVMConstReal(t, 0) : LLVMConstInt(t, 0, 0);
    else if (e->rk == R_MIN) init = lt_is_float(vt) ? LLVMConstReal(t, INFINITY) : k64(c, INT64_MAX);
    else init = lt_is_float(vt) ? LLVMConstReal(t, -INFINITY) : k64(c, INT64_MIN);
    LLVMBuildStore(c->b, init, r.acc);
    if (e->rk >= R_ARGMAX) {
        r.best_idx = cg_alloca(c, c->i64);
        r.pos = cg_alloca(c, c->i64);
        LLVMBuildStore(c->b, k64(c, 0), r.best_idx);
        LLVMBuildStore(c->b, k64(c, 0), r.pos);
    }
    LLVMValueRef lo0 = e->nvars ? cg_gen(c, e->lo[0]) : NULL, hi0 = e->nvars ? cg_gen(c, e->hi[0]) : NULL;
    c->in_reduce++;
    if (e->nvars == 0) reduce_body(c, &r);
    else reduce_level(c, &r, lo0, hi0);
    c->in_reduce--;
    return e->rk >= R_ARGMAX ? LLVMBuildLoad2(c->b, c->i64, r.best_idx, "") : LLVMBuildLoad2(c->b, t, r.acc, "");
}

LLVMValueRef cg_gen(cg *c, const lt_expr *e) {
    if (memo_valid(c, e->id)) return c->memo[e->id];
    LLVMValueRef v = NULL;
    switch (e->kind) {
    case X_CONST:
        v = lt_is_float(e->t) ? LLVMConstReal(ty(c, e->t), e->f) : LLVMConstInt(ty(c, e->t), (unsigned long long)e->i, 1);
        break;
    case X_VAR: v = c->vars[e->var]; break;
    case X_LOAD: {
        LLVMTypeRef mty;
        LLVMValueRef p = cg_elem_ptr(c, e->buf, cg_gen(c, e->a), &mty);
        v = cg_tag(c, LLVMBuildLoad2(c->b, mty, p, ""), e->buf);
        if (e->t == LATHE_BOOL) v = LLVMBuildICmp(c->b, LLVMIntNE, v, LLVMConstInt(c->i8, 0, 0), "");
        break;
    }
    case X_UN: v = gen_unary(c, e); break;
    case X_BIN: v = gen_binary(c, e); break;
    case X_SELECT: v = LLVMBuildSelect(c->b, cg_gen(c, e->a), cg_gen(c, e->b), cg_gen(c, e->c), ""); break;
    case X_REDUCE: v = gen_reduce(c, e); break;
    }
    /* a reduction's value belongs to the scope it was computed in */
    c->memo[e->id] = v;
    c->memo_scope[e->id] = c->scopes[c->nscope - 1];
    return v;
}

/* ---- row statistics ---------------------------------------------------------------- */

/* The highest output dim (loop variable below rank) that e reads, -1 for
 * none; and whether e holds a reduction.  Memoized per expression. */
static int outvar(cg *c, const lt_expr *e, int rank) {
    if (!e) return -1;
    if (c->outvar[e->id] != -2) return c->outvar[e->id];
    int v = e->kind == X_VAR && e->var < rank ? e->var : -1;
    bool red = e->kind == X_REDUCE;
    const lt_expr *kids[3] = {e->a, e->b, e->c};
    for (int i = 0; i < 3; i++) {
        int w = outvar(c, kids[i], rank);
        v = w > v ? w : v;
        red = red || (kids[i] && c->has_reduce[kids[i]->id]);
    }
    if (e->kind == X_REDUCE) {
        for (int l = 0; l < e->nvars; l++) {
            int lo = outvar(c, e->lo[l], rank), hi = outvar(c, e->hi[l], rank);
            v = lo > v ? lo : v;
            v = hi > v ? hi : v;
        }
        int w = outvar(c, e->body, rank);
        v = w > v ? w : v;
    }
    c->has_reduce[e->id] = red;
    return c->outvar[e->id] = v;
}

static void hoist_walk(cg *c, const lt_expr *e, int dim, int rank) {
    if (!e || c->seen[e->id] == c->walk || memo_valid(c, e->id)) return;
    c->seen[e->id] = c->walk;
    if (outvar(c, e, rank) < dim && c->has_reduce[e->id]) {
        cg_gen(c, e);
        return;
    }
    if (e->kind == X_REDUCE) return; /* its body runs inside it */
    hoist_walk(c, e->a, dim, rank);
    hoist_walk(c, e->b, dim, rank);
    hoist_walk(c, e->c, dim, rank);
}

/* Before the loop over output dim `dim`: every part of the kernel's value
 * outside reductions that holds a reduction and reads only the dims before
 * `dim` -- a row statistic fusion put there (fuse.c), rsqrt(var + eps) of a
 * layer norm -- is computed here, once per row, and the loops inside reuse
 * it (cg_gen's memo). */
static void hoist_rows(cg *c, const lt_kernel *k, int dim) {
    c->walk++;
    hoist_walk(c, k->value, dim, k->rank);
}

/* ---- column reductions ------------------------------------------------------------ */

/* Whether expression e reads loop variable var. */
static bool uses_var(const lt_expr *e, int var) {
    if (!e) return false;
    if (e->kind == X_VAR) return e->var == var;
    if (uses_var(e->a, var) || uses_var(e->b, var) || uses_var(e->c, var) || uses_var(e->body, var)) return true;
    for (int i = 0; e->kind == X_REDUCE && i < e->nvars; i++)
        if (uses_var(e->lo[i], var) || uses_var(e->hi[i], var)) return true;
    return false;
}

/* Whether index expression e is var times *coef plus terms without var. */
static bool lin_coef(const lt_expr *e, int var, int64_t *coef) {
    int64_t a, b;
    if (e->kind == X_VAR) return *coef = e->var == var, true;
    if (e->kind == X_BIN && e->t == LATHE_I64 && (e->op == LT_OP_ADD || e->op == LT_OP_SUB)) {
        if (!lin_coef(e->a, var, &a) || !lin_coef(e->b, var, &b)) return false;
        return *coef = e->op == LT_OP_ADD ? a + b : a - b, true;
    }
    if (e->kind == X_BIN && e->t == LATHE_I64 && e->op == LT_OP_MUL && e->b->kind == X_CONST) {
        if (!lin_coef(e->a, var, &a)) return false;
        return *coef = a * e->b->i, true;
    }
    *coef = 0;
    return !uses_var(e, var);
}

typedef struct {
    int ovar, rvar;          /* the output's last dim, the reduction's innermost loop */
    bool unit_out, unit_red, bad;
} col_scan;

static void scan_loads(const lt_expr *e, col_scan *s) {
    if (!e || s->bad) return;
    if (e->kind == X_REDUCE) {
        s->bad = true;
        return;
    }
    if (e->kind == X_LOAD) {
        int64_t co, cr;
        if (!lin_coef(e->a, s->ovar, &co)) s->bad = true;
        else if (co == 1) s->unit_out = true;
        /* contiguous along the rows and varying along the output: the
         * row loop would vectorize (a row statistic read per row is not) */
        if (lin_coef(e->a, s->rvar, &cr) && (cr == 1 || cr == -1) && uses_var(e->a, s->ovar)) s->unit_red = true;
    }
    scan_loads(e->a, s);
    scan_loads(e->b, s);
    scan_loads(e->c, s);
}

/* A sum over leading rows of operands whose rows are contiguous along the
 * output (a bias's gradient: sum over the tokens of gy[t, c]): the loop over
 * output elements is the one that can run in vector lanes, so it goes
 * innermost, accumulating in the output buffer. */
static bool column_reduction(const lt_kernel *k) {
    const lt_expr *e = k->value;
    if (k->con || e->kind != X_REDUCE || e->rk != R_SUM || !lt_is_float(e->t) || e->nvars == 0 || k->rank == 0 ||
        k->outer != k->rank || k->shape[k->rank - 1] < 8)
        return false;
    for (int l = 0; l < e->nvars; l++)
        if (e->lo[l]->kind != X_CONST || e->hi[l]->kind != X_CONST) return false;
    col_scan s = {k->rank - 1, e->vars[e->nvars - 1], false, false, false};
    scan_loads(e->body, &s);
    return !s.bad && s.unit_out && !s.unit_red;
}

typedef struct {
    const lt_kernel *k;
    LLVMValueRef lo, hi;     /* the block of output elements */
    int level;
} col_state;

/* The flat index at var slot nvars unraveled into dims [0, n) of k. */
static void unravel(cg *c, const lt_kernel *k, int n) {
    LLVMValueRef flat = c->vars[k->nvars];
    int64_t st = 1;
    for (int d = n - 1; d >= 0; d--) {
        LLVMValueRef q = st == 1 ? flat : LLVMBuildSDiv(c->b, flat, k64(c, st), "");
        c->vars[d] = d == 0 ? q : LLVMBuildSRem(c->b, q, k64(c, k->shape[d]), "");
        st *= k->shape[d];
    }
}

/* Output element at var slot nvars: its dims, and its address. */
static LLVMValueRef col_elem(cg *c, const lt_kernel *k, LLVMTypeRef *mty) {
    unravel(c, k, k->rank);
    return cg_elem_ptr(c, k->buf, c->vars[k->nvars], mty);
}

static void col_zero(cg *c, void *arg) {
    col_state *s = arg;
    LLVMTypeRef mty;
    LLVMValueRef p = col_elem(c, s->k, &mty);
    cg_tag(c, LLVMBuildStore(c->b, LLVMConstReal(ty(c, s->k->value->t), 0), p), s->k->buf);
}

static void col_add(cg *c, void *arg) {
    col_state *s = arg;
    const lt_expr *e = s->k->value;
    LLVMTypeRef mty;
    LLVMValueRef p = col_elem(c, s->k, &mty);
    c->in_reduce++;
    LLVMValueRef v = cg_gen(c, e->body);
    c->in_reduce--;
    LLVMValueRef acc = cg_tag(c, LLVMBuildLoad2(c->b, mty, p, ""), s->k->buf);
    cg_tag(c, LLVMBuildStore(c->b, flags(LLVMBuildFAdd(c->b, acc, v, ""), LLVMFastMathAllowContract), p), s->k->buf);
}

/* The reduction's loops in order, the block of output elements innermost:
 * every element is summed in the order of its rows, whatever the split. */
static void col_level(cg *c, void *arg) {
    col_state *s = arg;
    const lt_expr *e = s->k->value;
    if (s->level == e->nvars) {
        cg_loop(c, s->k->nvars, s->lo, s->hi, col_add, s);
        return;
    }
    int l = s->level++;
    cg_loop(c, e->vars[l], k64(c, e->lo[l]->i), k64(c, e->hi[l]->i), col_level, s);
    s->level--;
}

/* Blocks of output elements that stay in L1 while the rows stream past. */
enum { COL_BLOCK = 1024 };

static void col_block(cg *c, void *arg) {
    col_state *s = arg;
    const lt_kernel *k = s->k;
    LLVMValueRef lo = LLVMBuildNSWAdd(c->b, c->begin, LLVMBuildNSWMul(c->b, c->vars[k->nvars + 1], k64(c, COL_BLOCK), ""), "");
    LLVMValueRef hi = LLVMBuildNSWAdd(c->b, lo, k64(c, COL_BLOCK), "");
    hi = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, hi, c->end, ""), hi, c->end, "");
    col_state inner = {k, lo, hi, 0};
    cg_loop(c, k->nvars, lo, hi, col_zero, &inner);
    col_level(c, &inner);
}

static void lower_col_reduce(cg *c, const lt_kernel *k) {
    col_state s = {k, NULL, NULL, 0};
    LLVMValueRef n = LLVMBuildSub(c->b, c->end, c->begin, "");
    LLVMValueRef blocks = LLVMBuildSDiv(c->b, LLVMBuildAdd(c->b, n, k64(c, COL_BLOCK - 1), ""), k64(c, COL_BLOCK), "");
    cg_loop(c, k->nvars + 1, k64(c, 0), blocks, col_block, &s);
}

/* ---- kernels ------------------------------------------------------------------------ */

typedef struct {
    const lt_kernel *k;
    int dim;
    const lt_expr *value; /* the kernel's value, or its piece's */
} out_state;

static void out_body(cg *c, void *arg);

/* Body of the collapsed loop over the last two dims: split the index. */
static void out_pair_body(cg *c, void *arg) {
    out_state *o = arg;
    const lt_kernel *k = o->k;
    int r = k->rank;
    LLVMValueRef j = c->vars[r - 1], w = k64(c, k->shape[r - 1]);
    c->vars[r - 2] = LLVMBuildUDiv(c->b, j, w, "");
    c->vars[r - 1] = LLVMBuildURem(c->b, j, w, "");
    o->dim = r;
    out_body(c, o);
    o->dim = r - 2;
}

static void out_body(cg *c, void *arg) {
    out_state *o = arg;
    const lt_kernel *k = o->k;
    int r = k->rank;
    if (o->dim > 0 && o->dim < r) hoist_rows(c, k, o->dim);
    if (k->nseg && o->dim == k->seg_dim) { /* each piece its own loop and value */
        int d = o->dim++;
        for (int s = 0; s < k->nseg; s++) {
            o->value = k->segv[s];
            cg_loop(c, d, k64(c, k->seg_lo[s]), k64(c, k->seg_lo[s + 1]), out_body, o);
        }
        o->value = k->value;
        o->dim--;
        return;
    }
    if (o->dim == r - 2 && k->shape[r - 1] > 1 && k->shape[r - 1] < COLLAPSE_ROW && k->shape[r - 2] > 1 &&
        linear_pair(o->value, r - 2, r - 1, k->shape[r - 1]) && !(k->nseg && k->seg_dim >= r - 2)) {
        cg_loop(c, r - 1, k64(c, 0), k64(c, k->shape[r - 2] * k->shape[r - 1]), out_pair_body, o);
        return;
    }
    if (o->dim < k->rank) {
        int d = o->dim++;
        cg_loop(c, d, k64(c, 0), k64(c, k->shape[d]), out_body, o);
        o->dim--;
        return;
    }
    LLVMValueRef v = cg_gen(c, o->value);
    int64_t st[LATHE_MAX_RANK];
    lt_strides(k->rank, k->shape, st);
    LLVMValueRef lin = k64(c, 0);
    for (int d = 0; d < k->rank; d++) lin = LLVMBuildNSWAdd(c->b, lin, LLVMBuildNSWMul(c->b, c->vars[d], k64(c, st[d]), ""), "");
    LLVMTypeRef mty;
    LLVMValueRef p = cg_elem_ptr(c, k->buf, lin, &mty);
    if (c->f->bufs[k->buf].dtype == LATHE_BOOL) v = LLVMBuildZExt(c->b, v, c->i8, "");
    cg_tag(c, LLVMBuildStore(c->b, v, p), k->buf);
}

static void outer_body(cg *c, void *arg) {
    out_state *o = arg;
    const lt_kernel *k = o->k;
    unravel(c, k, k->outer); /* the flat outer index into dims [0, outer) */
    o->dim = k->outer;
    out_body(c, o);
}

static void add_attr(cg *c, LLVMValueRef fn, unsigned index, const char *name, uint64_t val) {
    unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
    LLVMAddAttributeAtIndex(fn, index, LLVMCreateEnumAttribute(c->ctx, kind, val));
}

/* The body of kernel index (its own representative): "lathe_bN"(begin,
 * end, slots...), its buffers 64-byte aligned pointers. */
static void lower_body(cg *c, const lt_bodies *bd, int index) {
    const lt_kernel *k = &c->f->ks[index];
    int s0 = bd->slot_start[index], ns = bd->slot_start[index + 1] - s0;
    LLVMTypeRef *params = malloc(((size_t)ns + 2) * sizeof *params);
    LT_ASSERT(params);
    params[0] = params[1] = c->i64;
    for (int j = 0; j < ns; j++) params[2 + j] = c->ptr;
    char name[32];
    snprintf(name, sizeof name, "lathe_b%d", index);
    LLVMTypeRef fty = LLVMFunctionType(LLVMVoidTypeInContext(c->ctx), params, (unsigned)ns + 2, 0);
    free(params);
    c->fn = LLVMAddFunction(c->mod, name, fty);
    LLVMSetLinkage(c->fn, LLVMInternalLinkage);
    add_attr(c, c->fn, LLVMAttributeFunctionIndex, "nounwind", 0);
    add_attr(c, c->fn, LLVMAttributeFunctionIndex, "noinline", 0); /* one body, however many kernels call it */
    if (c->f->target->tile_bytes == 64) /* loops vectorize with the whole 512-bit unit (x86 prefers 256) */
        LLVMAddTargetDependentFunctionAttr(c->fn, "prefer-vector-width", "512");
    for (int j = 0; j < ns; j++) {
        add_attr(c, c->fn, (unsigned)(3 + j), "align", LT_PLAN_ALIGN); /* offsets and the arena are aligned */
        c->slot_ptr[bd->slots[s0 + j]] = LLVMGetParam(c->fn, (unsigned)(2 + j));
    }
    c->begin = LLVMGetParam(c->fn, 0);
    c->end = LLVMGetParam(c->fn, 1);
    c->entry = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "entry");
    LLVMBasicBlockRef start = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "start");
    LLVMPositionBuilderAtEnd(c->b, start);
    c->nscope = 0;
    cg_push_scope(c);
    out_state o = {k, 0, k->value};
    if (column_reduction(k)) lower_col_reduce(c, k);
    else if (!k->con || !lt_lower_tiles(c, k, index))
        cg_loop(c, k->nvars, c->begin, c->end, outer_body, &o);
    LLVMBuildRetVoid(c->b);
    cg_pop_scope(c);
    LLVMPositionBuilderAtEnd(c->b, c->entry);
    LLVMBuildBr(c->b, start);
    for (int j = 0; j < ns; j++) c->slot_ptr[bd->slots[s0 + j]] = NULL;
}

/* "lathe_kN"(arena, begin, end): its body with its buffers' places. */
static void lower_wrapper(cg *c, const lt_bodies *bd, int index) {
    int rep = bd->rep[index], s0 = bd->slot_start[index], ns = bd->slot_start[index + 1] - s0;
    char name[32];
    snprintf(name, sizeof name, "lathe_b%d", rep);
    LLVMValueRef body = LLVMGetNamedFunction(c->mod, name);
    LT_ASSERT(body && ns == bd->slot_start[rep + 1] - bd->slot_start[rep]);
    snprintf(name, sizeof name, "lathe_k%d", index);
    LLVMTypeRef params[3] = {c->ptr, c->i64, c->i64};
    LLVMValueRef fn = LLVMAddFunction(c->mod, name, LLVMFunctionType(LLVMVoidTypeInContext(c->ctx), params, 3, 0));
    add_attr(c, fn, LLVMAttributeFunctionIndex, "nounwind", 0);
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, fn, "entry"));
    LLVMValueRef *args = malloc(((size_t)ns + 2) * sizeof *args);
    LT_ASSERT(args);
    args[0] = LLVMGetParam(fn, 1);
    args[1] = LLVMGetParam(fn, 2);
    LLVMValueRef arena = LLVMGetParam(fn, 0);
    for (int j = 0; j < ns; j++) {
        LLVMValueRef off = k64(c, c->f->plan[bd->slots[s0 + j]].offset);
        args[2 + j] = LLVMBuildGEP2(c->b, c->i8, arena, &off, 1, "");
    }
    LLVMValueRef call = LLVMBuildCall2(c->b, LLVMGlobalGetValueType(body), body, args, (unsigned)ns + 2, "");
    LLVMSetTailCall(call, 1);
    LLVMBuildRetVoid(c->b);
    free(args);
}

lathe_status lt_lower(const lt_fused *f, const lt_bodies *bodies, const int *kernels, int n, LLVMContextRef ctx,
                      LLVMModuleRef mod, char *err, size_t errlen) {
    cg c = {0};
    c.ctx = ctx;
    c.mod = mod;
    c.f = f;
    c.b = LLVMCreateBuilderInContext(ctx);
    c.i1 = LLVMInt1TypeInContext(ctx);
    c.i8 = LLVMInt8TypeInContext(ctx);
    c.i32 = LLVMInt32TypeInContext(ctx);
    c.i64 = LLVMInt64TypeInContext(ctx);
    c.f32 = LLVMFloatTypeInContext(ctx);
    c.f64 = LLVMDoubleTypeInContext(ctx);
    c.ptr = LLVMPointerTypeInContext(ctx, 0);
    c.vars = calloc((size_t)f->nvars + 2, sizeof *c.vars);
    c.memo = calloc((size_t)f->nexpr + 1, sizeof *c.memo);
    c.memo_scope = calloc((size_t)f->nexpr + 1, sizeof *c.memo_scope);
    c.outvar = malloc(((size_t)f->nexpr + 1) * sizeof *c.outvar);
    c.has_reduce = calloc((size_t)f->nexpr + 1, sizeof *c.has_reduce);
    c.seen = calloc((size_t)f->nexpr + 1, sizeof *c.seen);
    for (int i = 0; c.outvar && i <= f->nexpr; i++) c.outvar[i] = -2;
    c.tbaa = calloc((size_t)f->nbufs + 1, sizeof *c.tbaa);
    c.slot_ptr = calloc((size_t)f->nbufs + 1, sizeof *c.slot_ptr);
    c.tbaa_kind = LLVMGetMDKindIDInContext(ctx, "tbaa", 4);
    LLVMMetadataRef root_name = LLVMMDStringInContext2(ctx, "lathe.arena", 11);
    c.tbaa_root = LLVMMDNodeInContext2(ctx, &root_name, 1);
    lathe_status st = LATHE_OK;
    if (!c.vars || !c.memo || !c.memo_scope || !c.outvar || !c.has_reduce || !c.seen || !c.tbaa || !c.slot_ptr) {
        snprintf(err, errlen, "out of memory");
        st = LATHE_ERR_NOMEM;
    }
    for (int i = 0; i < n && st == LATHE_OK; i++) /* the bodies, then the kernels that call them */
        if (bodies->rep[kernels[i]] == kernels[i]) {
            memset(c.memo, 0, (size_t)f->nexpr * sizeof *c.memo);
            lower_body(&c, bodies, kernels[i]);
        }
    for (int i = 0; i < n && st == LATHE_OK; i++) lower_wrapper(&c, bodies, kernels[i]);
    char *msg = NULL;
    if (st == LATHE_OK && LLVMVerifyModule(mod, LLVMReturnStatusAction, &msg)) {
        snprintf(err, errlen, "LLVM module does not verify: %s", msg ? msg : "?");
        st = LATHE_ERR_VERIFY;
    }
    if (msg) LLVMDisposeMessage(msg);
    LLVMDisposeBuilder(c.b);
    free(c.vars);
    free(c.memo);
    free(c.memo_scope);
    free(c.outvar);
    free(c.has_reduce);
    free(c.seen);
    free(c.tbaa);
    free(c.slot_ptr);
    return st;
}
