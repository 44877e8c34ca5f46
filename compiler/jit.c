/* jit.c - the pipeline's LLVM stages (pipeline.h): kernels lowered to LLVM
 * IR and optimized, machine code made for the target, and the code linked
 * in process by ORC LLJIT.
 *
 * Kernels that differ only in where their buffers are share one body
 * (share.c).  The bodies are split into parts, one per thread, each an LLVM
 * module with its own context and target machine holding its bodies and the
 * kernels that call them, so lowering, the new pass manager's default<O3>
 * and code generation run in parallel; a part whose code is in the on-disk
 * cache (cache.c) skips the last two.  LLJIT then only links the objects.
 * Native trainers (aot.c) take the objects instead.
 * Ownership: each part's module stays with the part; an object moves to the
 * JIT when it is added (lt_jit_link). */
#include <string.h>

#include <llvm-c/Core.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include <omp.h>

#include "lower_llvm.h"
#include "pipeline.h"

static lathe_status llvm_err(char *err, size_t errlen, LLVMErrorRef e, const char *what) {
    char *m = LLVMGetErrorMessage(e); /* consumes e */
    snprintf(err, errlen, "%s: %s", what, m);
    LLVMDisposeErrorMessage(m);
    return LATHE_ERR_UNSUPPORTED;
}

/* Lower part p's kernels into a new module, give them their symbols, and
 * optimize it at O3 for the target. */
static lathe_status lower_part(const lt_build *b, lt_part *p, char *err, size_t errlen) {
    p->ctx = LLVMContextCreate();
    p->tm = lt_target_machine(b->target, b->pic, err, errlen);
    if (!p->tm) return LATHE_ERR_UNSUPPORTED;
    p->mod = LLVMModuleCreateWithNameInContext("lathe", p->ctx);
    char *triple = LLVMGetTargetMachineTriple(p->tm);
    LLVMSetTarget(p->mod, triple);
    LLVMDisposeMessage(triple);
    LLVMTargetDataRef td = LLVMCreateTargetDataLayout(p->tm);
    LLVMSetModuleDataLayout(p->mod, td);
    LLVMDisposeTargetData(td);
    lathe_status st = lt_lower(b->f, &b->bodies, p->kernels, p->nkernels, p->ctx, p->mod, err, errlen);
    for (int i = 0; st == LATHE_OK && b->prefix && i < p->nkernels; i++) { /* the kernels' symbols */
        char name[32], to[160];
        snprintf(name, sizeof name, "lathe_k%d", p->kernels[i]);
        snprintf(to, sizeof to, "%s%d", b->prefix, p->kernels[i]);
        LLVMValueRef fn = LLVMGetNamedFunction(p->mod, name);
        if (fn) LLVMSetValueName2(fn, to, strlen(to));
    }
    if (st != LATHE_OK) return st;
    if (b->use_cache && b->cache.on) { /* the cached object skips O3 and code generation */
        lt_cache_key(b->target, b->pic, p->mod, p->key);
        if ((p->code = lt_cache_get(&b->cache, p->key))) {
            p->cached = true;
            return LATHE_OK;
        }
    }
    LLVMPassBuilderOptionsRef opt = LLVMCreatePassBuilderOptions();
    LLVMPassBuilderOptionsSetLoopVectorization(opt, 1);
    LLVMPassBuilderOptionsSetSLPVectorization(opt, 1);
    LLVMPassBuilderOptionsSetLoopUnrolling(opt, 0); /* code size: compile time */
    LLVMErrorRef e = LLVMRunPasses(p->mod, "default<O3>", p->tm, opt);
    LLVMDisposePassBuilderOptions(opt);
    return e ? llvm_err(err, errlen, e, "LLVM optimization") : LATHE_OK;
}

static lathe_status emit_part(const lt_build *b, lt_part *p, char *err, size_t errlen) {
    if (p->cached) return LATHE_OK;
    char *msg = NULL;
    lathe_status st = LATHE_OK;
    if (LLVMTargetMachineEmitToMemoryBuffer(p->tm, p->mod, b->asm_text ? LLVMAssemblyFile : LLVMObjectFile, &msg,
                                            &p->code)) {
        snprintf(err, errlen, "emitting code: %s", msg ? msg : "?");
        p->code = NULL;
        st = LATHE_ERR_UNSUPPORTED;
    }
    LLVMDisposeMessage(msg);
    if (st == LATHE_OK && b->use_cache && !b->asm_text) lt_cache_put(&b->cache, p->key, p->code);
    return st;
}

/* Run step on every part, one thread each; the first failure (in part
 * order) goes to b->err. */
static lathe_status each_part(lt_build *b, lathe_status (*step)(const lt_build *, lt_part *, char *, size_t)) {
    int n = b->nparts;
    lathe_status *pst = calloc((size_t)n, sizeof *pst);
    char (*perr)[sizeof b->err] = calloc((size_t)n, sizeof *perr);
    if (!pst || !perr) {
        free(pst);
        free(perr);
        snprintf(b->err, sizeof b->err, "out of memory");
        return LATHE_ERR_NOMEM;
    }
#pragma omp parallel for num_threads(n) schedule(static, 1)
    for (int i = 0; i < n; i++) pst[i] = step(b, &b->parts[i], perr[i], sizeof perr[i]);
    lathe_status st = LATHE_OK;
    for (int i = 0; i < n && st == LATHE_OK; i++)
        if (pst[i] != LATHE_OK) st = pst[i], snprintf(b->err, sizeof b->err, "%s", perr[i]);
    free(pst);
    free(perr);
    return st;
}

/* Bodies to parts: in order of their kernels, each part the next slice of
 * the estimated work (a contraction's body costs about four others; a
 * kernel calling a body, next to nothing), a part's kernels in order. */
static lathe_status split_parts(lt_build *b, int n) {
    const lt_fused *f = b->f;
    const lt_bodies *bd = &b->bodies;
    double *cost = calloc((size_t)f->nk + 1, sizeof *cost), total = 0;
    int *part = calloc((size_t)f->nk + 1, sizeof *part);
    if (!cost || !part) {
        free(cost);
        free(part);
        return LATHE_ERR_NOMEM;
    }
    for (int i = 0; i < f->nk; i++) {
        double c = bd->rep[i] == i ? (f->ks[i].con ? 4.0 : 1.0) : 0.05;
        cost[bd->rep[i]] += c;
        total += c;
    }
    double run = 0;
    for (int i = 0; i < f->nk; i++) /* a body's part: where its cost starts */
        if (bd->rep[i] == i) {
            int p = total > 0 ? (int)(run / total * n) : 0;
            part[i] = p < n ? p : n - 1;
            run += cost[i];
        }
    lathe_status st = LATHE_OK;
    for (int i = 0; i < f->nk; i++) b->parts[part[bd->rep[i]]].nkernels++;
    for (int p = 0; p < n && st == LATHE_OK; p++)
        if (!(b->parts[p].kernels = malloc(((size_t)b->parts[p].nkernels + 1) * sizeof(int)))) st = LATHE_ERR_NOMEM;
        else b->parts[p].nkernels = 0;
    for (int i = 0; i < f->nk && st == LATHE_OK; i++) {
        lt_part *p = &b->parts[part[bd->rep[i]]];
        p->kernels[p->nkernels++] = i;
    }
    free(cost);
    free(part);
    return st;
}

lathe_status lt_codegen_lower(lt_build *b) {
    const lt_fused *f = b->f;
    if (lt_find_bodies(f, &b->bodies) != LATHE_OK) {
        snprintf(b->err, sizeof b->err, "out of memory");
        return LATHE_ERR_NOMEM;
    }
    int n = b->threads > 0 ? b->threads : omp_get_max_threads();
    if (n > b->bodies.nreps) n = b->bodies.nreps > 0 ? b->bodies.nreps : 1;
    b->parts = calloc((size_t)n, sizeof *b->parts);
    if (b->parts) b->nparts = n;
    if (!b->parts || split_parts(b, n) != LATHE_OK) {
        snprintf(b->err, sizeof b->err, "out of memory");
        return LATHE_ERR_NOMEM;
    }
    if (b->use_cache && !b->asm_text) lt_cache_open(&b->cache);
    else b->cache.on = false;
    return each_part(b, lower_part);
}

lathe_status lt_codegen_emit(lt_build *b) {
    lathe_status st = each_part(b, emit_part);
    for (int i = 0; i < b->nparts; i++) b->cache_hits += b->parts[i].cached;
    return st;
}

lathe_status lt_jit_link(lt_build *b) {
    LLVMOrcJITTargetMachineBuilderRef jtmb;
    LLVMErrorRef e = LLVMOrcJITTargetMachineBuilderDetectHost(&jtmb);
    if (!e) {
        LLVMOrcLLJITBuilderRef lb = LLVMOrcCreateLLJITBuilder();
        LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(lb, jtmb); /* lb takes jtmb */
        e = LLVMOrcCreateLLJIT(&b->jit, lb);                     /* and the JIT takes lb */
    }
    if (e) return llvm_err(b->err, sizeof b->err, e, "creating the LLVM JIT");
    for (int i = 0; i < b->nparts; i++) {
        if (!b->parts[i].code) continue;
        /* the JIT takes the object buffer */
        e = LLVMOrcLLJITAddObjectFile(b->jit, LLVMOrcLLJITGetMainJITDylib(b->jit), b->parts[i].code);
        b->parts[i].code = NULL;
        if (e) return llvm_err(b->err, sizeof b->err, e, "adding code to the JIT");
    }
    b->fns = calloc((size_t)b->f->nk + 1, sizeof *b->fns);
    if (!b->fns) {
        snprintf(b->err, sizeof b->err, "out of memory");
        return LATHE_ERR_NOMEM;
    }
    for (int i = 0; i < b->f->nk; i++) {
        char name[160];
        snprintf(name, sizeof name, "%s%d", b->prefix ? b->prefix : "lathe_k", i);
        LLVMOrcExecutorAddress addr;
        if ((e = LLVMOrcLLJITLookup(b->jit, &addr, name))) return llvm_err(b->err, sizeof b->err, e, "looking up a kernel");
        b->fns[i] = (lathe_kernel_fn)(uintptr_t)addr;
    }
    return LATHE_OK;
}

void lt_codegen_free(lt_build *b, bool keep_code) {
    for (int i = 0; i < b->nparts; i++) {
        lt_part *p = &b->parts[i];
        if (p->mod) LLVMDisposeModule(p->mod);
        if (p->ctx) LLVMContextDispose(p->ctx);
        if (p->tm) LLVMDisposeTargetMachine(p->tm);
        p->mod = NULL, p->ctx = NULL, p->tm = NULL;
        if (p->code && !keep_code) LLVMDisposeMemoryBuffer(p->code), p->code = NULL;
    }
    if (keep_code) return;
    for (int i = 0; i < b->nparts; i++) free(b->parts[i].kernels);
    free(b->parts);
    lt_bodies_free(&b->bodies);
    b->parts = NULL;
    b->nparts = 0;
    if (b->jit) LLVMOrcDisposeLLJIT(b->jit);
    b->jit = NULL;
    free(b->fns);
    b->fns = NULL;
}
