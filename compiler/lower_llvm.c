/* lower_llvm.c - fused kernels to LLVM IR through the LLVM C API.
 *
 * Each kernel becomes `void lathe_kN(i8 *arena, i64 begin, i64 end)`: a loop
 * over the parallel range [begin, end) of its leading dims, nested loops
 * over the rest, and at each element the kernel's expression.  Loop counters
 * and reduction accumulators live in allocas that mem2reg promotes, which
 * keeps the emitter short.  Buffers are at constant offsets in the arena.
 *
 * Floating-point flags are chosen per instruction.  Inside a reduction
 * (the inner loops that compute one element) arithmetic may contract into
 * FMA and the accumulation may reassociate: that code runs the same way for
 * every element, whatever thread computes it.  Arithmetic in the loops over
 * elements does NOT contract: their vectorized body and scalar remainder
 * would contract differently, and since the thread count moves the chunk
 * boundaries, an element could round differently on 1 and 2 threads.
 * Nothing assumes no NaNs or infinities.  exp, log, tanh, sigmoid and rsqrt
 * come from mathlib.c, never libm.
 *
 * Two rewrites of the loop nest help LLVM's vectorizers, since the pass
 * pipeline does not unroll: the last two loops of a nest (over elements or
 * in a reduction) run as one loop when the expression reads their variables
 * only as a row-major index (a small plane becomes one long loop), and a
 * reduction inside another's body with a few constant iterations (a
 * window's arg-max) is unrolled.
 *
 * Kernels with a contraction or max-pool plan (kernel.h's lt_contract) are
 * lowered differently, to explicit vector tiles; see "contraction kernels"
 * below. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>

#include "kernel.h"
#include "lower_llvm.h"
#include "mathlib.h"

typedef struct {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMBuilderRef b;
    LLVMTypeRef i1, i8, i32, i64, f32, f64, ptr;
    const lt_fused *f;
    LLVMValueRef fn, arena, entry_pos;
    LLVMBasicBlockRef entry;
    LLVMValueRef *vars;
    LLVMValueRef *memo;
    int *memo_scope;
    int scopes[64];
    int nscope, next_scope;
    LLVMMetadataRef tbaa_root, *tbaa; /* one TBAA type per buffer: distinct buffers never alias */
    int in_reduce;                    /* depth of reductions being emitted */
    unsigned tbaa_kind;
} cg;

static LLVMTypeRef ty(cg *c, lathe_dtype t) {
    switch (t) {
    case LATHE_F32: return c->f32;
    case LATHE_F64: return c->f64;
    case LATHE_I64: return c->i64;
    case LATHE_BOOL: return c->i1;
    }
    return c->i64;
}

static LLVMValueRef k64(cg *c, int64_t v) { return LLVMConstInt(c->i64, (unsigned long long)v, 1); }

static LLVMValueRef entry_alloca(cg *c, LLVMTypeRef t) {
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
#define CONTRACT (c->in_reduce ? LLVMFastMathAllowContract : 0)

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

static void push_scope(cg *c) { c->scopes[c->nscope++] = ++c->next_scope; }
static void pop_scope(cg *c) { c->nscope--; }

/* A counted loop for var over [lo, hi); body is emitted by the callback. */
typedef void (*body_fn)(cg *c, void *arg);
static void emit_loop(cg *c, int var, LLVMValueRef lo, LLVMValueRef hi, body_fn body, void *arg) {
    LLVMValueRef ctr = entry_alloca(c, c->i64);
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
    push_scope(c);
    body(c, arg);
    pop_scope(c);
    LLVMBuildStore(c->b, LLVMBuildNSWAdd(c->b, i, k64(c, 1), ""), ctr);
    LLVMBuildBr(c->b, head);
    LLVMPositionBuilderAtEnd(c->b, exit);
}

static LLVMValueRef gen(cg *c, const lt_expr *e);

/* Tag a load or store of buffer buf with its own TBAA type, so LLVM knows
 * different buffers do not alias (they are disjoint in the plan, except a
 * buffer computed in place of another, which shares its type). */
static LLVMValueRef tag(cg *c, LLVMValueRef inst, int buf) {
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

static LLVMValueRef elem_ptr(cg *c, int buf, LLVMValueRef idx, LLVMTypeRef *mty) {
    const lt_kbuf *kb = &c->f->bufs[buf];
    *mty = kb->dtype == LATHE_BOOL ? c->i8 : ty(c, kb->dtype);
    LLVMValueRef off = k64(c, c->f->plan[buf].offset);
    LLVMValueRef base = LLVMBuildGEP2(c->b, c->i8, c->arena, &off, 1, "");
    return LLVMBuildGEP2(c->b, *mty, base, &idx, 1, "");
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

static LLVMValueRef gen_unary(cg *c, const lt_expr *e) {
    LLVMValueRef x = gen(c, e->a);
    LLVMTypeRef t = ty(c, e->t);
    bool fl = lt_is_float(e->t);
    switch (e->op) {
    case LT_OP_CAST: return gen_cast(c, x, e->a->t, e->t);
    case LT_OP_NEG: return fl ? LLVMBuildFNeg(c->b, x, "") : LLVMBuildNeg(c->b, x, "");
    case LT_OP_EXP: return lt_emit_exp(c->mod, c->b, x);
    case LT_OP_LOG: return lt_emit_log(c->mod, c->b, x);
    case LT_OP_TANH: return lt_emit_tanh(c->mod, c->b, x);
    case LT_OP_SIGMOID: return lt_emit_sigmoid(c->mod, c->b, x);
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
        if (p == 2) return flags(LLVMBuildFMul(c->b, x, x, ""), CONTRACT);
        if (p == 3) return flags(LLVMBuildFMul(c->b, flags(LLVMBuildFMul(c->b, x, x, ""), CONTRACT), x, ""), CONTRACT);
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
    LLVMValueRef a = gen(c, e->a), b = gen(c, e->b);
    lathe_dtype ot = e->a->t;
    bool fl = lt_is_float(ot);
    LLVMTypeRef t = ty(c, ot);
    switch (e->op) {
    case LT_OP_ADD: return fl ? flags(LLVMBuildFAdd(c->b, a, b, ""), CONTRACT) : LLVMBuildAdd(c->b, a, b, "");
    case LT_OP_SUB: return fl ? flags(LLVMBuildFSub(c->b, a, b, ""), CONTRACT) : LLVMBuildSub(c->b, a, b, "");
    case LT_OP_MUL: return fl ? flags(LLVMBuildFMul(c->b, a, b, ""), CONTRACT) : LLVMBuildMul(c->b, a, b, "");
    case LT_OP_DIV: return flags(LLVMBuildFDiv(c->b, a, b, ""), CONTRACT);
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
    LLVMValueRef lo[8], hi[8];
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
            emit_loop(c, e->vars[r->level + 1], k64(c, 0), k64(c, e->hi[r->level]->i * e->hi[r->level + 1]->i),
                      reduce_pair_body, r);
        else
            emit_loop(c, e->vars[r->level], lo, hi, reduce_body, r);
        return;
    }
    for (int64_t i = e->lo[r->level]->i; i < e->hi[r->level]->i; i++) {
        c->vars[e->vars[r->level]] = k64(c, i);
        push_scope(c);
        reduce_body(c, r);
        pop_scope(c);
    }
}

static void reduce_body(cg *c, void *arg) {
    red_state *r = arg;
    const lt_expr *e = r->e;
    if (r->level + 1 < e->nvars) {
        r->level++;
        LLVMValueRef lo = gen(c, e->lo[r->level]), hi = gen(c, e->hi[r->level]);
        reduce_level(c, r, lo, hi);
        r->level--;
        return;
    }
    LLVMTypeRef t = ty(c, e->rk >= R_ARGMAX ? e->body->t : e->t);
    LLVMValueRef v = gen(c, e->body);
    LLVMValueRef acc = LLVMBuildLoad2(c->b, t, r->acc, "");
    bool fl = lt_is_float(e->body->t);
    LLVMValueRef nacc;
    switch (e->rk) {
    case R_SUM:
        nacc = fl ? flags(LLVMBuildFAdd(c->b, acc, v, ""), LLVMFastMathAllowReassoc | LLVMFastMathAllowContract) : LLVMBuildAdd(c->b, acc, v, "");
        break;
    case R_MAX:
        if (fl) { /* NaN propagates: once acc is NaN it stays */
            LLVMValueRef take = LLVMBuildFCmp(c->b, LLVMRealUGT, v, acc, "");
            LLVMValueRef m = LLVMBuildSelect(c->b, take, v, acc, "");
            nacc = LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, LLVMRealUNO, acc, acc, ""), acc, m, "");
        } else {
            LLVMValueRef args[2] = {acc, v};
            nacc = intrinsic(c, "llvm.smax", c->i64, args, 2);
        }
        break;
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
    r.acc = entry_alloca(c, t);
    LLVMValueRef init;
    if (e->rk == R_SUM) init = lt_is_float(vt) ? LLVMConstReal(t, 0) : LLVMConstInt(t, 0, 0);
    else init = lt_is_float(vt) ? LLVMConstReal(t, -INFINITY) : k64(c, INT64_MIN);
    LLVMBuildStore(c->b, init, r.acc);
    if (e->rk >= R_ARGMAX) {
        r.best_idx = entry_alloca(c, c->i64);
        r.pos = entry_alloca(c, c->i64);
        LLVMBuildStore(c->b, k64(c, 0), r.best_idx);
        LLVMBuildStore(c->b, k64(c, 0), r.pos);
    }
    LLVMValueRef lo0 = e->nvars ? gen(c, e->lo[0]) : NULL, hi0 = e->nvars ? gen(c, e->hi[0]) : NULL;
    c->in_reduce++;
    if (e->nvars == 0) reduce_body(c, &r);
    else reduce_level(c, &r, lo0, hi0);
    c->in_reduce--;
    return e->rk >= R_ARGMAX ? LLVMBuildLoad2(c->b, c->i64, r.best_idx, "") : LLVMBuildLoad2(c->b, t, r.acc, "");
}

static LLVMValueRef gen(cg *c, const lt_expr *e) {
    if (memo_valid(c, e->id)) return c->memo[e->id];
    LLVMValueRef v = NULL;
    switch (e->kind) {
    case X_CONST:
        v = lt_is_float(e->t) ? LLVMConstReal(ty(c, e->t), e->f) : LLVMConstInt(ty(c, e->t), (unsigned long long)e->i, 1);
        break;
    case X_VAR: v = c->vars[e->var]; break;
    case X_LOAD: {
        LLVMTypeRef mty;
        LLVMValueRef p = elem_ptr(c, e->buf, gen(c, e->a), &mty);
        v = tag(c, LLVMBuildLoad2(c->b, mty, p, ""), e->buf);
        if (e->t == LATHE_BOOL) v = LLVMBuildICmp(c->b, LLVMIntNE, v, LLVMConstInt(c->i8, 0, 0), "");
        break;
    }
    case X_UN: v = gen_unary(c, e); break;
    case X_BIN: v = gen_binary(c, e); break;
    case X_SELECT: v = LLVMBuildSelect(c->b, gen(c, e->a), gen(c, e->b), gen(c, e->c), ""); break;
    case X_REDUCE: v = gen_reduce(c, e); break;
    }
    /* a reduction's value belongs to the scope it was computed in */
    c->memo[e->id] = v;
    c->memo_scope[e->id] = c->scopes[c->nscope - 1];
    return v;
}

/* ---- contraction kernels -------------------------------------------------------------
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
 * through the kernel's epilogue (the rest of its expression, lowered by gen
 * with the contraction's value taken from the tile) or, without one,
 * straight to the output with masked vector stores. */

typedef struct {
    cg *c;
    const lt_kernel *k;
    const lt_contract *p;
    int vl, esize;
    LLVMTypeRef et, vt, bt;        /* element, vector, <VL x i1> */
    LLVMTypeRef mt;                /* a mask as the mask table holds it: iVL bits (64-byte vectors, AVX-512's
                                    * mask registers), else a vector of VL integers of the element's size */
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
    l->ctr = entry_alloca(c, c->i64);
    LLVMBuildStore(c->b, lo, l->ctr);
    l->head = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "loop");
    LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "body");
    l->exit = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "exit");
    LLVMBuildBr(c->b, l->head);
    LLVMPositionBuilderAtEnd(c->b, l->head);
    l->i = LLVMBuildLoad2(c->b, c->i64, l->ctr, "");
    LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, l->i, hi, ""), body, l->exit);
    LLVMPositionBuilderAtEnd(c->b, body);
    push_scope(c);
    return l->i;
}
static void loop_end(cg *c, loop *l) {
    pop_scope(c);
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
    push_scope(c);
    return done;
}
static void if_end(cg *c, LLVMBasicBlockRef done) {
    pop_scope(c);
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

/* Vector of buffer buf at element idx: all lanes, or those of mask (others
 * fill). */
static LLVMValueRef vload_fill(vk *v, int buf, LLVMValueRef idx, LLVMValueRef mask, LLVMValueRef fill);
static LLVMValueRef vload(vk *v, int buf, LLVMValueRef idx, LLVMValueRef mask) { return vload_fill(v, buf, idx, mask, v->zero); }
static LLVMValueRef vload_fill(vk *v, int buf, LLVMValueRef idx, LLVMValueRef mask, LLVMValueRef fill) {
    cg *c = v->c;
    LLVMTypeRef mty;
    LLVMValueRef p = elem_ptr(c, buf, idx, &mty), r;
    if (!mask) {
        r = LLVMBuildLoad2(c->b, v->vt, p, "");
        LLVMSetAlignment(r, (unsigned)v->esize);
    } else {
        LLVMTypeRef tys[2] = {v->vt, c->ptr};
        LLVMValueRef args[4] = {p, LLVMConstInt(c->i32, (unsigned)v->esize, 0), mask, fill};
        r = call_intr(c, "llvm.masked.load", tys, 2, args, 4);
    }
    return tag(c, r, buf);
}
static void vstore(vk *v, int buf, LLVMValueRef idx, LLVMValueRef x, LLVMValueRef mask) {
    cg *c = v->c;
    LLVMTypeRef mty;
    LLVMValueRef p = elem_ptr(c, buf, idx, &mty);
    LLVMTypeRef tys[2] = {v->vt, c->ptr};
    LLVMValueRef args[4] = {x, p, LLVMConstInt(c->i32, (unsigned)v->esize, 0), mask};
    tag(c, call_intr(c, "llvm.masked.store", tys, 2, args, 4), buf);
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
    LLVMValueRef p = elem_ptr(c, buf, base, &mty);
    LLVMValueRef ptrs = LLVMBuildGEP2(c->b, v->et, p, &offs, 1, "");
    LLVMTypeRef tys[2] = {v->vt, LLVMTypeOf(ptrs)};
    LLVMValueRef args[4] = {ptrs, LLVMConstInt(c->i32, (unsigned)v->esize, 0), mask, fill};
    return tag(c, call_intr(c, "llvm.masked.gather", tys, 2, args, 4), buf);
}
/* Element idx of buf in every lane. */
static LLVMValueRef bcast(vk *v, int buf, LLVMValueRef idx) {
    LLVMTypeRef mty;
    LLVMValueRef x = tag(v->c, LLVMBuildLoad2(v->c->b, v->et, elem_ptr(v->c, buf, idx, &mty), ""), buf);
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
        LLVMValueRef lo[32], hi[32];
        for (int i = 0; i < w; i++) lo[i] = LLVMConstInt(c->i32, (unsigned)i, 0), hi[i] = LLVMConstInt(c->i32, (unsigned)(w + i), 0);
        LLVMValueRef a = LLVMBuildShuffleVector(c->b, x, LLVMGetPoison(LLVMTypeOf(x)), LLVMConstVector(lo, (unsigned)w), "");
        LLVMValueRef b = LLVMBuildShuffleVector(c->b, x, LLVMGetPoison(LLVMTypeOf(x)), LLVMConstVector(hi, (unsigned)w), "");
        x = LLVMBuildFAdd(c->b, a, b, "");
    }
    return LLVMBuildExtractElement(c->b, x, LLVMConstInt(c->i32, 0, 0), "");
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

/* A contiguous convolution's masks as constant data: row tap (r, s), vector
 * j, lane l is output position o = j*VL + l of the plane of lanes (oh x
 * ow), set when o is in the plane and its input (oh + beta + r*dbeta, ow +
 * ...) is inside the input plane. */
static void make_table(vk *v, int index, int64_t nvt) {
    cg *c = v->c;
    const lt_contract *p = v->p;
    int64_t rows = p->taps[0] * p->taps[1], ohw = p->oh * p->ow;
    LLVMValueRef *vals = malloc((size_t)(rows * nvt) * sizeof *vals);
    if (!vals) return; /* leaves v->table NULL: the caller falls back */
    for (int64_t row = 0; row < rows; row++)
        for (int64_t j = 0; j < nvt; j++) {
            uint64_t bits = 0;
            for (int l = 0; l < v->vl; l++) {
                int64_t o = j * v->vl + l;
                if (o >= ohw) continue;
                int64_t h = o / p->ow + p->beta[0] + (row / p->taps[1]) * p->dbeta[0];
                int64_t w = o % p->ow + p->beta[1] + (row % p->taps[1]) * p->dbeta[1];
                if (h >= 0 && h < p->ih && w >= 0 && w < p->iw) bits |= 1ull << l;
            }
            if (LLVMGetTypeKind(v->mt) == LLVMIntegerTypeKind) vals[row * nvt + j] = LLVMConstInt(v->mt, bits, 0);
            else {
                LLVMTypeRef it = LLVMGetElementType(v->mt);
                LLVMValueRef lanes[16];
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
    /* in 32-bit lanes (fuse.c checks that the plane's offsets fit): x86 has
     * no 64-bit vector multiply or divide by a constant before AVX-512 */
    cg *c = v->c;
    const lt_contract *p = v->p;
    LLVMBuilderRef b = c->b;
    LLVMTypeRef i32v = LLVMVectorType(c->i32, (unsigned)v->vl);
    LLVMValueRef io[16];
    for (int l = 0; l < v->vl; l++) io[l] = LLVMConstInt(c->i32, (unsigned)l, 0);
#define K32(x) splat(v, LLVMConstInt(c->i32, (unsigned long long)(x), 1))
    LLVMValueRef o = LLVMBuildAdd(b, splat(v, LLVMBuildTrunc(b, o0, c->i32, "")), LLVMConstVector(io, (unsigned)v->vl), "");
    LLVMValueRef oh = LLVMBuildUDiv(b, o, K32(p->ow), "");
    LLVMValueRef ow = LLVMBuildSub(b, o, LLVMBuildMul(b, oh, K32(p->ow), ""), "");
    LLVMValueRef m = LLVMBuildICmp(b, LLVMIntSLT, o, K32(p->oh * p->ow), "");
    LLVMValueRef pos[2] = {oh, ow}, tap[2] = {r, s}, in[2];
    int64_t lim[2] = {p->ih, p->iw};
    for (int d = 0; d < 2; d++) {
        LLVMValueRef off = LLVMBuildTrunc(b, add_(c, k64(c, p->beta[d]), mulk(c, tap[d], p->dbeta[d])), c->i32, "");
        LLVMValueRef num = LLVMBuildAdd(b, LLVMBuildMul(b, pos[d], K32(p->mu[d]), ""), splat(v, off), "");
        m = LLVMBuildAnd(b, m, LLVMBuildICmp(b, LLVMIntSGE, num, LLVMConstNull(i32v), ""), "");
        m = LLVMBuildAnd(b, m, LLVMBuildICmp(b, LLVMIntSLT, num, K32(lim[d] * p->dv[d]), ""), "");
        if (p->dv[d] > 1) {
            LLVMValueRef rem = LLVMBuildSRem(b, num, K32(p->dv[d]), "");
            m = LLVMBuildAnd(b, m, LLVMBuildICmp(b, LLVMIntEQ, rem, LLVMConstNull(i32v), ""), "");
            num = LLVMBuildSDiv(b, num, K32(p->dv[d]), "");
        }
        in[d] = num;
    }
    *offs = LLVMBuildAdd(b, LLVMBuildMul(b, in[0], K32(sh), ""), LLVMBuildMul(b, in[1], K32(sw), ""), "");
#undef K32
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
        x = gen(c, v->k->value);
    }
    LLVMTypeRef mty;
    LLVMValueRef ptr = elem_ptr(c, v->k->buf, lin, &mty);
    if (c->f->bufs[v->k->buf].dtype == LATHE_BOOL) x = LLVMBuildZExt(c->b, x, c->i8, "");
    tag(c, LLVMBuildStore(c->b, x, ptr), v->k->buf);
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
                       int64_t rstride, LLVMValueRef o0, int64_t olim, setvars_fn set, void *arg) {
    cg *c = v->c;
    if (!v->epi) {
        LLVMValueRef masks[8];
        for (int j = 0; j < nv; j++) masks[j] = tail_mask(v, addk(c, o0, (int64_t)j * v->vl), olim);
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
    LLVMValueRef hi = mink(c, addk(c, o0, w), olim);
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

static void lower_plane(vk *v, LLVMValueRef t) {
    cg *c = v->c;
    const lt_contract *p = v->p;
    const lt_view *A = &p->a, *W = &p->b;
    int kb = p->tm, nv = p->tn, vl = v->vl;
    int64_t ohw = p->oh * p->ow, nvec = cdiv64(ohw, vl), nch = cdiv64(nvec, nv), nkb = cdiv64(p->kog, kb);
    int64_t ko_all = p->groups * p->kog;
    LLVMValueRef kbi = remk(c, t, nkb), ng = divk(c, t, nkb), g = remk(c, ng, p->groups), n = divk(c, ng, p->groups);
    LLVMValueRef kstart = mulk(c, kbi, kb), gk = mulk(c, g, p->kog);
    LLVMValueRef kcount = mink(c, LLVMBuildSub(c->b, k64(c, p->kog), kstart, ""), kb);
    LLVMValueRef wrow[8];
    for (int i = 0; i < kb; i++) {
        LLVMValueRef kin = mink(c, addk(c, kstart, i), p->kog - 1); /* clamped */
        wrow[i] = p->bwd ? addk(c, add_(c, mulk(c, g, p->cr * W->st[0]), mulk(c, kin, W->st[1])), W->off)
                         : addk(c, mulk(c, add_(c, gk, kin), W->st[0]), W->off);
    }
    int64_t wci = p->bwd ? W->st[0] : W->st[1];
    LLVMValueRef abase = addk(c, add_(c, mulk(c, n, A->st[0]), mulk(c, g, p->cr * A->st[1])), A->off);
    LLVMValueRef row0 = mulk(c, add_(c, add_(c, mulk(c, n, ko_all), gk), kstart), ohw);
    LLVMValueRef acc[32];
    for (int i = 0; i < kb * nv; i++) acc[i] = entry_alloca(c, v->vt);
    loop lch, lr, ls, lc;
    LLVMValueRef ch = loop_begin(c, &lch, k64(c, 0), k64(c, nch));
    LLVMValueRef j0 = mulk(c, ch, nv), o0 = mulk(c, j0, vl);
    zero_accs(v, acc, kb * nv);
    LLVMValueRef r = loop_begin(c, &lr, k64(c, 0), k64(c, p->taps[0]));
    LLVMValueRef s = loop_begin(c, &ls, k64(c, 0), k64(c, p->taps[1]));
    LLVMValueRef mask[8], aoff[8], offs[8];
    for (int j = 0; j < nv; j++) {
        LLVMValueRef oj = addk(c, o0, (int64_t)j * vl);
        if (p->contiguous) {
            mask[j] = table_mask(v, add_(c, mulk(c, r, p->taps[1]), s), addk(c, j0, j));
            LLVMValueRef toff = add_(c, mulk(c, addk(c, mulk(c, r, p->dbeta[0]), p->beta[0]), p->iw),
                                     addk(c, mulk(c, s, p->dbeta[1]), p->beta[1]));
            aoff[j] = add_(c, add_(c, abase, oj), toff);
        } else gather_lanes(v, oj, r, s, A->st[2], A->st[3], &offs[j], &mask[j]);
    }
    LLVMValueRef wtap[8];
    for (int i = 0; i < kb; i++) wtap[i] = add_(c, wrow[i], add_(c, mulk(c, r, W->st[2]), mulk(c, s, W->st[3])));
    LLVMValueRef ci = loop_begin(c, &lc, k64(c, 0), k64(c, p->cr));
    LLVMValueRef av[8];
    for (int j = 0; j < nv; j++)
        av[j] = p->contiguous ? vload(v, A->buf, add_(c, aoff[j], mulk(c, ci, A->st[1])), mask[j])
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
    store_rows(v, acc, kb, nv, kcount, row0, ohw, o0, ohw, plane_set, &pv);
    loop_end(c, &lch);
}

/* WGRAD: out (K, Cg, R, S); a tile is (group, tm output channels, tn input
 * channels), every tap; its reduction runs over images n, then taps, then
 * vectors j of the gradient's plane:
 *   acc[tap][i][jj] += gy[n, k_i, lanes of j] * x[n, g*cr + c_jj, lanes of j shifted by the tap]
 * The accumulators of a tap are registers while its j loop runs, and wait in
 * the tile's scratch for the next image; so an image's planes, loaded once
 * from memory, serve every tap from the cache. */
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

static void lower_wgrad(vk *v, LLVMValueRef t) {
    cg *c = v->c;
    const lt_contract *p = v->p;
    const lt_view *X = &p->a, *G = &p->b;
    int kb = p->tm, cb = p->tn, vl = v->vl, na = kb * cb;
    int64_t taps = p->taps[0] * p->taps[1], ohw = p->oh * p->ow, nvec = cdiv64(ohw, vl);
    int64_t nkb = cdiv64(p->kog, kb), ncb = cdiv64(p->cr, cb);
    LLVMValueRef cbi = remk(c, t, ncb), t2 = divk(c, t, ncb), kbi = remk(c, t2, nkb), g = divk(c, t2, nkb);
    LLVMValueRef kstart = mulk(c, kbi, kb), cstart = mulk(c, cbi, cb), gk = mulk(c, g, p->kog);
    LLVMValueRef kcount = mink(c, LLVMBuildSub(c->b, k64(c, p->kog), kstart, ""), kb);
    LLVMValueRef ccount = mink(c, LLVMBuildSub(c->b, k64(c, p->cr), cstart, ""), cb);
    LLVMValueRef gyrow[8], xrow[8];
    for (int i = 0; i < kb; i++) gyrow[i] = addk(c, mulk(c, add_(c, gk, mink(c, addk(c, kstart, i), p->kog - 1)), G->st[1]), G->off);
    for (int j = 0; j < cb; j++)
        xrow[j] = addk(c, mulk(c, add_(c, mulk(c, g, p->cr), mink(c, addk(c, cstart, j), p->cr - 1)), X->st[1]), X->off);
    /* the taps' accumulators between images: (tap, i, jj) vectors */
    LLVMBasicBlockRef cur = LLVMGetInsertBlock(c->b);
    LLVMValueRef first = LLVMGetFirstInstruction(c->entry);
    if (first) LLVMPositionBuilderBefore(c->b, first);
    else LLVMPositionBuilderAtEnd(c->b, c->entry);
    LLVMValueRef part = LLVMBuildAlloca(c->b, LLVMArrayType2(v->vt, (uint64_t)(taps * na)), "");
    LLVMSetAlignment(part, 64);
    LLVMPositionBuilderAtEnd(c->b, cur);
    loop lz, ln, lt, lj, ls;
    LLVMValueRef z = loop_begin(c, &lz, k64(c, 0), k64(c, taps * na));
    LLVMBuildStore(c->b, v->zero, LLVMBuildGEP2(c->b, v->vt, part, &z, 1, ""));
    loop_end(c, &lz);
    LLVMValueRef acc[32];
    for (int i = 0; i < na; i++) acc[i] = entry_alloca(c, v->vt);
    LLVMValueRef n = loop_begin(c, &ln, k64(c, 0), k64(c, p->n));
    LLVMValueRef tap = loop_begin(c, &lt, k64(c, 0), k64(c, taps));
    LLVMValueRef r = divk(c, tap, p->taps[1]), s = remk(c, tap, p->taps[1]);
    LLVMValueRef slot[32];
    for (int i = 0; i < na; i++) {
        LLVMValueRef at = addk(c, mulk(c, tap, na), i);
        slot[i] = LLVMBuildGEP2(c->b, v->vt, part, &at, 1, "");
        LLVMBuildStore(c->b, LLVMBuildLoad2(c->b, v->vt, slot[i], ""), acc[i]);
    }
    LLVMValueRef toff = k64(c, 0);
    if (p->contiguous)
        toff = add_(c, mulk(c, addk(c, mulk(c, r, p->dbeta[0]), p->beta[0]), p->iw), addk(c, mulk(c, s, p->dbeta[1]), p->beta[1]));
    /* the plane's whole vectors, then its partial last one (gy masked) */
    int64_t whole = ohw / vl;
    for (int pass = 0; pass < 2; pass++) {
        if (pass ? whole == nvec : whole == 0) continue;
        LLVMValueRef j = pass ? k64(c, whole) : loop_begin(c, &lj, k64(c, 0), k64(c, whole));
        if (pass) push_scope(c);
        LLVMValueRef o0 = mulk(c, j, vl), xm, gm = pass ? tail_mask(v, o0, ohw) : NULL, offs = NULL;
        if (p->contiguous) xm = table_mask(v, tap, j);
        else gather_lanes(v, o0, r, s, X->st[2], X->st[3], &offs, &xm);
        LLVMValueRef xv[8];
        for (int jj = 0; jj < cb; jj++) {
            LLVMValueRef base = add_(c, add_(c, xrow[jj], mulk(c, n, X->st[0])), toff);
            xv[jj] = p->contiguous ? vload(v, X->buf, add_(c, base, o0), xm) : vgather(v, X->buf, base, offs, xm);
        }
        for (int i = 0; i < kb; i++) {
            LLVMValueRef gv = vload(v, G->buf, add_(c, add_(c, gyrow[i], mulk(c, n, G->st[0])), o0), gm);
            for (int jj = 0; jj < cb; jj++) acc_fma(v, acc[i * cb + jj], gv, xv[jj], NULL);
        }
        if (pass) pop_scope(c);
        else loop_end(c, &lj);
    }
    for (int i = 0; i < na; i++) LLVMBuildStore(c->b, LLVMBuildLoad2(c->b, v->vt, acc[i], ""), slot[i]);
    loop_end(c, &lt);
    loop_end(c, &ln);
    /* each partial's lanes summed, for the tile's real elements: out (K, Cg,
     * R, S) holds (k, c, r, s) at (k*Cg + c)*R*S + tap (one loop, so one
     * copy of the code whatever the tile) */
    LLVMValueRef at = loop_begin(c, &ls, k64(c, 0), k64(c, taps * na));
    LLVMValueRef q = remk(c, at, na), i = divk(c, q, cb), jj = remk(c, q, cb);
    tap = divk(c, at, na);
    LLVMValueRef real = LLVMBuildAnd(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, i, kcount, ""),
                                     LLVMBuildICmp(c->b, LLVMIntSLT, jj, ccount, ""), "");
    LLVMBasicBlockRef done = if_begin(c, real);
    LLVMValueRef sum = hsum(v, LLVMBuildLoad2(c->b, v->vt, LLVMBuildGEP2(c->b, v->vt, part, &at, 1, ""), ""));
    LLVMValueRef k = add_(c, add_(c, gk, kstart), i), ci = add_(c, cstart, jj);
    if (v->epi) {
        wgrad_vars wv = {k, ci, divk(c, tap, p->taps[1]), remk(c, tap, p->taps[1])};
        wgrad_set(v, &wv, k64(c, 0), k64(c, 0));
    }
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

/* MM_BCAST: c[m_i, lanes of vector j] += a[m_i, kk] * b[kk, lanes of vector j] */
static void lower_mm_bcast(vk *v, LLVMValueRef t) {
    cg *c = v->c;
    const lt_contract *p = v->p;
    int mb = p->tm, nv = p->tn, vl = v->vl;
    int64_t nmb = cdiv64(p->m, mb), nnb = cdiv64(cdiv64(p->ncol, vl), nv);
    LLVMValueRef mbi = remk(c, t, nmb), t2 = divk(c, t, nmb), nbi = remk(c, t2, nnb), bt = divk(c, t2, nnb);
    mm_vars mv;
    LLVMValueRef aoff, boff;
    mm_batch(v, bt, &mv, &aoff, &boff);
    LLVMValueRef m0 = mulk(c, mbi, mb), n0 = mulk(c, nbi, (int64_t)nv * vl);
    LLVMValueRef mcount = mink(c, LLVMBuildSub(c->b, k64(c, p->m), m0, ""), mb);
    LLVMValueRef arow[8], nmask[8];
    for (int i = 0; i < mb; i++) arow[i] = add_(c, aoff, mulk(c, mink(c, addk(c, m0, i), p->m - 1), p->am));
    for (int j = 0; j < nv; j++) nmask[j] = tail_mask(v, addk(c, n0, (int64_t)j * vl), p->ncol);
    LLVMValueRef acc[32];
    for (int i = 0; i < mb * nv; i++) acc[i] = entry_alloca(c, v->vt);
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
        push_scope(c);
        loop lk;
        LLVMValueRef kk = loop_begin(c, &lk, k64(c, 0), k64(c, p->k));
        LLVMValueRef bv[8];
        for (int j = 0; j < nv; j++)
            bv[j] = vload(v, p->b.buf, add_(c, add_(c, boff, mulk(c, kk, p->bk)), addk(c, n0, (int64_t)j * vl)), pass ? nmask[j] : NULL);
        for (int i = 0; i < mb; i++) {
            LLVMValueRef a = bcast(v, p->a.buf, add_(c, arow[i], mulk(c, kk, p->ak)));
            for (int j = 0; j < nv; j++) acc_fma(v, acc[i * nv + j], a, bv[j], NULL);
        }
        loop_end(c, &lk);
        pop_scope(c);
        if (ragged) LLVMBuildBr(c->b, join);
    }
    if (ragged) LLVMPositionBuilderAtEnd(c->b, join);
    mv.m0 = m0;
    mv.n0 = n0;
    LLVMValueRef row0 = add_(c, mulk(c, bt, p->m * p->ncol), mulk(c, m0, p->ncol));
    store_rows(v, acc, mb, nv, mcount, row0, p->ncol, n0, p->ncol, mm_set, &mv);
}

/* MM_DOT: c[m_i, n_j] = sum over lanes of a[m_i, k lanes] * b[k lanes, n_j] */
static void lower_mm_dot(vk *v, LLVMValueRef t) {
    cg *c = v->c;
    const lt_contract *p = v->p;
    int mb = p->tm, nb = p->tn, vl = v->vl;
    int64_t nmb = cdiv64(p->m, mb), nnb = cdiv64(p->ncol, nb), kfull = p->k / vl;
    LLVMValueRef nbi = remk(c, t, nnb), t2 = divk(c, t, nnb), mbi = remk(c, t2, nmb), bt = divk(c, t2, nmb);
    mm_vars mv;
    LLVMValueRef aoff, boff;
    mm_batch(v, bt, &mv, &aoff, &boff);
    LLVMValueRef m0 = mulk(c, mbi, mb), n0 = mulk(c, nbi, nb);
    LLVMValueRef mcount = mink(c, LLVMBuildSub(c->b, k64(c, p->m), m0, ""), mb);
    LLVMValueRef ncount = mink(c, LLVMBuildSub(c->b, k64(c, p->ncol), n0, ""), nb);
    LLVMValueRef arow[8], bcol[8];
    for (int i = 0; i < mb; i++) arow[i] = add_(c, aoff, mulk(c, mink(c, addk(c, m0, i), p->m - 1), p->am));
    for (int j = 0; j < nb; j++) bcol[j] = add_(c, boff, mulk(c, mink(c, addk(c, n0, j), p->ncol - 1), p->bn));
    LLVMValueRef acc[32];
    for (int i = 0; i < mb * nb; i++) acc[i] = entry_alloca(c, v->vt);
    zero_accs(v, acc, mb * nb);
    for (int pass = 0; pass < 2; pass++) { /* full vectors, then the tail */
        if (pass == 1 && p->k % vl == 0) break;
        loop lk;
        LLVMValueRef kv = pass ? k64(c, kfull) : loop_begin(c, &lk, k64(c, 0), k64(c, kfull));
        LLVMValueRef k0 = mulk(c, kv, vl), mask = pass ? tail_mask(v, k0, p->k) : NULL;
        LLVMValueRef bv[8];
        for (int j = 0; j < nb; j++) bv[j] = vload(v, p->b.buf, add_(c, bcol[j], k0), mask);
        for (int i = 0; i < mb; i++) {
            LLVMValueRef a = vload(v, p->a.buf, add_(c, arow[i], k0), mask);
            for (int j = 0; j < nb; j++) acc_fma(v, acc[i * nb + j], a, bv[j], NULL);
        }
        if (!pass) loop_end(c, &lk);
    }
    LLVMValueRef sum[32];
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
    LLVMValueRef acc[8];
    for (int j = 0; j < nv; j++) acc[j] = entry_alloca(c, v->vt);
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
    store_rows(v, acc, 1, nv, k64(c, 1), mulk(c, t, ohw), ohw, o0, ohw, plane_set, &pv);
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
#define K32(x) splat(v, LLVMConstInt(c->i32, (unsigned long long)(x), 1))
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
    LLVMValueRef io[16];
    for (int l = 0; l < vl; l++) io[l] = LLVMConstInt(c->i32, (unsigned)l, 0);
    LLVMValueRef o = LLVMBuildAdd(b, splat(v, LLVMBuildTrunc(b, o0, c->i32, "")), LLVMConstVector(io, (unsigned)vl), "");
    LLVMValueRef oh = LLVMBuildUDiv(b, o, K32(p->ow), ""), ow = LLVMBuildSub(b, o, LLVMBuildMul(b, oh, K32(p->ow), ""), "");
    LLVMValueRef real = LLVMBuildICmp(b, LLVMIntSLT, o, K32(ohw), "");
    LLVMValueRef best = ninf, bi = LLVMConstNull(i32v);
    for (int64_t i = 0; i < p->taps[0]; i++)
        for (int64_t jj = 0; jj < p->taps[1]; jj++) {
            LLVMValueRef offs, mask;
            gather_lanes(v, o0, k64(c, i), k64(c, jj), X->st[2], X->st[3], &offs, &mask);
            LLVMValueRef x = vgather_fill(v, X->buf, xbase, offs, mask, ninf);
            LLVMValueRef better = LLVMBuildOr(b, LLVMBuildFCmp(b, LLVMRealOGT, x, best, ""),
                                              LLVMBuildFCmp(b, LLVMRealUNO, x, x, ""), "");
            best = LLVMBuildSelect(b, better, x, best, "");
            bi = LLVMBuildSelect(b, better, K32(i * p->taps[1] + jj), bi, "");
        }
    LLVMValueRef g;
    if (G->st[3] == 1 && G->st[2] == p->ow) g = vload(v, G->buf, add_(c, gbase, o0), real);
    else {
        LLVMValueRef offs = LLVMBuildAdd(b, LLVMBuildMul(b, oh, K32(G->st[2]), ""), LLVMBuildMul(b, ow, K32(G->st[3]), ""), "");
        g = vgather(v, G->buf, gbase, offs, real);
    }
    LLVMValueRef h = LLVMBuildAdd(b, LLVMBuildMul(b, oh, K32(p->mu[0]), ""), LLVMBuildAdd(b, K32(p->beta[0]), LLVMBuildUDiv(b, bi, K32(p->taps[1]), ""), ""), "");
    LLVMValueRef w = LLVMBuildAdd(b, LLVMBuildMul(b, ow, K32(p->mu[1]), ""), LLVMBuildAdd(b, K32(p->beta[1]), LLVMBuildURem(b, bi, K32(p->taps[1]), ""), ""), "");
    LLVMValueRef in = real, pos2[2] = {h, w};
    int64_t lim[2] = {p->ih, p->iw};
    for (int d = 0; d < 2; d++) {
        in = LLVMBuildAnd(b, in, LLVMBuildICmp(b, LLVMIntSGE, pos2[d], LLVMConstNull(i32v), ""), "");
        in = LLVMBuildAnd(b, in, LLVMBuildICmp(b, LLVMIntSLT, pos2[d], K32(lim[d]), ""), "");
    }
    LLVMValueRef pos = LLVMBuildSelect(b, in, LLVMBuildAdd(b, LLVMBuildMul(b, h, K32(p->iw), ""), w, ""), K32(ihw), "");
    for (int l = 0; l < vl; l++) {
        LLVMValueRef li = LLVMConstInt(c->i32, (unsigned)l, 0);
        LLVMValueRef at = scratch_at(v, sc, LLVMBuildSExt(b, LLVMBuildExtractElement(b, pos, li, ""), c->i64, ""));
        LLVMValueRef gl = LLVMBuildExtractElement(b, g, li, "");
        LLVMBuildStore(b, overlap ? LLVMBuildFAdd(b, LLVMBuildLoad2(b, v->et, at, ""), gl, "") : gl, at);
    }
#undef K32
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

typedef struct {
    vk *v;
} tile_state;

static void tile_body(cg *c, void *arg) {
    vk *v = ((tile_state *)arg)->v;
    LLVMValueRef t = c->vars[v->k->nvars];
    switch (v->p->kind) {
    case LT_C_PLANE: lower_plane(v, t); break;
    case LT_C_WGRAD: lower_wgrad(v, t); break;
    case LT_C_MM_BCAST: lower_mm_bcast(v, t); break;
    case LT_C_MM_DOT: lower_mm_dot(v, t); break;
    case LT_C_POOL: lower_pool(v, t); break;
    case LT_C_POOL_BWD: lower_pool_bwd(v, t); break;
    }
}

/* The tile loop of a contraction kernel over [begin, end); false when the
 * plan cannot be lowered (out of memory), and the caller lowers the
 * expression instead. */
static bool lower_contraction(cg *c, const lt_kernel *k, int index) {
    const lt_contract *p = k->con;
    LT_ASSERT(p->tm >= 1 && p->tm <= 8 && p->tn >= 1 && p->tn <= 8 && p->tm * p->tn <= 32 && p->vl <= 16);
    vk v = {c, k, p, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, false};
    lathe_dtype dt = c->f->bufs[p->a.buf].dtype;
    v.vl = p->vl;
    v.esize = (int)lathe_dtype_size(dt);
    v.et = ty(c, dt);
    v.vt = LLVMVectorType(v.et, (unsigned)v.vl);
    v.bt = LLVMVectorType(c->i1, (unsigned)v.vl);
    v.mt = v.vl * v.esize == 64 ? LLVMIntTypeInContext(c->ctx, (unsigned)v.vl)
                                : LLVMVectorType(LLVMIntTypeInContext(c->ctx, 8 * (unsigned)v.esize), (unsigned)v.vl);
    v.zero = LLVMConstNull(v.vt);
    LLVMValueRef io[16];
    for (int i = 0; i < v.vl; i++) io[i] = k64(c, i);
    v.iota = LLVMConstVector(io, (unsigned)v.vl);
    v.epi = k->value != p->red;
    if (v.vl * v.esize == 64) { /* 512-bit vectors stay whole (x86 splits them where 256 is preferred) */
        LLVMAddTargetDependentFunctionAttr(c->fn, "min-legal-vector-width", "512");
        LLVMAddTargetDependentFunctionAttr(c->fn, "prefer-vector-width", "512");
    }
    if (p->contiguous && p->kind != LT_C_POOL_BWD) {
        int64_t nvec = cdiv64(p->oh * p->ow, v.vl);
        make_table(&v, index, p->kind == LT_C_WGRAD ? nvec : cdiv64(nvec, p->tn) * p->tn);
        if (!v.table) return false;
    }
    tile_state ts = {&v};
    emit_loop(c, k->nvars, LLVMGetParam(c->fn, 1), LLVMGetParam(c->fn, 2), tile_body, &ts);
    return true;
}

/* ---- kernels ------------------------------------------------------------------------ */

typedef struct {
    const lt_kernel *k;
    int dim;
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
    if (o->dim == r - 2 && k->shape[r - 1] > 1 && k->shape[r - 1] < COLLAPSE_ROW && k->shape[r - 2] > 1 &&
        linear_pair(k->value, r - 2, r - 1, k->shape[r - 1])) {
        emit_loop(c, r - 1, k64(c, 0), k64(c, k->shape[r - 2] * k->shape[r - 1]), out_pair_body, o);
        return;
    }
    if (o->dim < k->rank) {
        int d = o->dim++;
        emit_loop(c, d, k64(c, 0), k64(c, k->shape[d]), out_body, o);
        o->dim--;
        return;
    }
    LLVMValueRef v = gen(c, k->value);
    int64_t st[LATHE_MAX_RANK];
    lt_strides(k->rank, k->shape, st);
    LLVMValueRef lin = k64(c, 0);
    for (int d = 0; d < k->rank; d++) lin = LLVMBuildNSWAdd(c->b, lin, LLVMBuildNSWMul(c->b, c->vars[d], k64(c, st[d]), ""), "");
    LLVMTypeRef mty;
    LLVMValueRef p = elem_ptr(c, k->buf, lin, &mty);
    if (c->f->bufs[k->buf].dtype == LATHE_BOOL) v = LLVMBuildZExt(c->b, v, c->i8, "");
    tag(c, LLVMBuildStore(c->b, v, p), k->buf);
}

static void outer_body(cg *c, void *arg) {
    out_state *o = arg;
    const lt_kernel *k = o->k;
    /* unravel the flat outer index (var slot nvars) into dims [0, outer) */
    LLVMValueRef flat = c->vars[k->nvars];
    int64_t st = 1;
    for (int d = k->outer - 1; d >= 0; d--) {
        LLVMValueRef q = st == 1 ? flat : LLVMBuildSDiv(c->b, flat, k64(c, st), "");
        c->vars[d] = d == 0 ? q : LLVMBuildSRem(c->b, q, k64(c, k->shape[d]), "");
        st *= k->shape[d];
    }
    o->dim = k->outer;
    out_body(c, o);
}

static void lower_kernel(cg *c, const lt_kernel *k, int index) {
    char name[32];
    snprintf(name, sizeof name, "lathe_k%d", index);
    LLVMTypeRef params[3] = {c->ptr, c->i64, c->i64};
    LLVMTypeRef fty = LLVMFunctionType(LLVMVoidTypeInContext(c->ctx), params, 3, 0);
    c->fn = LLVMAddFunction(c->mod, name, fty);
    unsigned nounwind = LLVMGetEnumAttributeKindForName("nounwind", 8);
    LLVMAddAttributeAtIndex(c->fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(c->ctx, nounwind, 0));
    c->arena = LLVMGetParam(c->fn, 0);
    c->entry = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "entry");
    LLVMBasicBlockRef start = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "start");
    LLVMPositionBuilderAtEnd(c->b, start);
    c->nscope = 0;
    push_scope(c);
    out_state o = {k, 0};
    if (!k->con || !lower_contraction(c, k, index))
        emit_loop(c, k->nvars, LLVMGetParam(c->fn, 1), LLVMGetParam(c->fn, 2), outer_body, &o);
    LLVMBuildRetVoid(c->b);
    pop_scope(c);
    LLVMPositionBuilderAtEnd(c->b, c->entry);
    LLVMBuildBr(c->b, start);
}

lathe_status lt_lower(const lt_fused *f, int first, int last, LLVMContextRef ctx, LLVMModuleRef mod, char *err,
                      size_t errlen) {
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
    c.tbaa = calloc((size_t)f->nbufs + 1, sizeof *c.tbaa);
    c.tbaa_kind = LLVMGetMDKindIDInContext(ctx, "tbaa", 4);
    LLVMMetadataRef root_name = LLVMMDStringInContext2(ctx, "lathe.arena", 11);
    c.tbaa_root = LLVMMDNodeInContext2(ctx, &root_name, 1);
    lathe_status st = LATHE_OK;
    if (!c.vars || !c.memo || !c.memo_scope || !c.tbaa) {
        snprintf(err, errlen, "out of memory");
        st = LATHE_ERR_NOMEM;
    }
    for (int i = first; i < last && st == LATHE_OK; i++) {
        memset(c.memo, 0, (size_t)f->nexpr * sizeof *c.memo);
        lower_kernel(&c, &f->ks[i], i);
    }
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
    free(c.tbaa);
    return st;
}
