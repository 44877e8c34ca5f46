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
 * come from mathlib.c, never libm. */
#include <math.h>
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
    LLVMTypeRef i1, i8, i64, f32, f64, ptr;
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

/* ---- reductions ---------------------------------------------------------------- */

typedef struct {
    const lt_expr *e;
    int level;
    LLVMValueRef acc, best_idx, pos;
    LLVMValueRef lo[8], hi[8];
} red_state;

static void reduce_body(cg *c, void *arg) {
    red_state *r = arg;
    const lt_expr *e = r->e;
    if (r->level + 1 < e->nvars) {
        r->level++;
        LLVMValueRef lo = gen(c, e->lo[r->level]), hi = gen(c, e->hi[r->level]);
        emit_loop(c, e->vars[r->level], lo, hi, reduce_body, r);
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
    else emit_loop(c, e->vars[0], lo0, hi0, reduce_body, &r);
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

/* ---- kernels ------------------------------------------------------------------------ */

typedef struct {
    const lt_kernel *k;
    int dim;
} out_state;

static void out_body(cg *c, void *arg) {
    out_state *o = arg;
    const lt_kernel *k = o->k;
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
