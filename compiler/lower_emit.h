/* lower_emit.h - the state and helpers shared by the two halves of the
 * lowering to LLVM IR: lower_llvm.c (kernels as loop nests of scalar
 * expressions, reductions) and lower_tiles.c (contraction kernels as
 * explicit vector tiles).  Internal to those two files. */
#ifndef LATHE_LOWER_EMIT_H
#define LATHE_LOWER_EMIT_H

#include <llvm-c/Core.h>

#include "kernel.h"

/* memo scopes open at once: one per loop being emitted */
enum { CG_MAX_SCOPES = 64 };

typedef struct {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMBuilderRef b;
    LLVMTypeRef i1, i8, i32, i64, f32, f64, ptr;
    const lt_fused *f;
    LLVMValueRef fn, entry_pos;
    LLVMValueRef begin, end;          /* the body's parallel range [begin, end) */
    LLVMValueRef *slot_ptr;           /* buffer -> the body's pointer parameter for it (NULL: not a slot) */
    LLVMBasicBlockRef entry;
    LLVMValueRef *vars;
    LLVMValueRef *memo;
    int *memo_scope;
    int scopes[CG_MAX_SCOPES];
    int nscope, next_scope;
    LLVMMetadataRef tbaa_root, *tbaa; /* one TBAA type per buffer: distinct buffers never alias */
    int in_reduce;                    /* depth of reductions being emitted */
    int *outvar;                      /* expression id -> its highest output dim, -1 none (-2: not yet known) */
    bool *has_reduce;                 /* expression id -> it holds a reduction (once outvar is known) */
    int *seen, walk;                  /* expression id -> the last hoisting walk that saw it */
    unsigned tbaa_kind;
} cg;

static inline LLVMTypeRef ty(cg *c, lathe_dtype t) {
    switch (t) {
    case LATHE_F32: return c->f32;
    case LATHE_F64: return c->f64;
    case LATHE_I64: return c->i64;
    case LATHE_BOOL: return c->i1;
    }
    return c->i64;
}

static inline LLVMValueRef k64(cg *c, int64_t v) { return LLVMConstInt(c->i64, (unsigned long long)v, 1); }

/* An alloca in the function's entry block (mem2reg promotes it). */
LLVMValueRef cg_alloca(cg *c, LLVMTypeRef t);
/* A new memo scope: values computed inside are not reused after pop. */
void cg_push_scope(cg *c);
void cg_pop_scope(cg *c);
/* A counted loop for var over [lo, hi); body is emitted by the callback. */
typedef void (*body_fn)(cg *c, void *arg);
void cg_loop(cg *c, int var, LLVMValueRef lo, LLVMValueRef hi, body_fn body, void *arg);
/* The value of expression e at the current loop variables (memoized). */
LLVMValueRef cg_gen(cg *c, const lt_expr *e);
/* Tag a load or store of buffer buf with the buffer's TBAA type. */
LLVMValueRef cg_tag(cg *c, LLVMValueRef inst, int buf);
/* Pointer to element idx of buffer buf; *mty the type of an element in memory. */
LLVMValueRef cg_elem_ptr(cg *c, int buf, LLVMValueRef idx, LLVMTypeRef *mty);

/* lower_tiles.c: the tile loop of kernel k (which has a contraction plan)
 * over [begin, end); false when the plan cannot be lowered (out of memory),
 * and the caller lowers the expression instead. */
bool lt_lower_tiles(cg *c, const lt_kernel *k, int index);

#endif
