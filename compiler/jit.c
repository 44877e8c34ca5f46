/* jit.c - compiling graphs into programs: decompose, fuse, plan, lower to
 * LLVM, optimize at O3 for the host CPU, and JIT-compile with ORC LLJIT.
 *
 * lathe_compile is the pipeline's driver; every stage is one call here, in
 * order:
 *
 *     lt_fuse        decompose composites, simplify, fuse into kernels, plan
 *     lt_lower       kernels to LLVM IR, LLVMVerifyModule
 *     optimize       the new pass manager's default<O3> for the host CPU
 *     emit           object code, by the host's target machine
 *     LLJIT          link the objects in process; look up each kernel
 *
 * The kernels are split into one module per thread, each with its own
 * context and target machine, so optimization and code generation run in
 * parallel; LLJIT then only links.
 * The same lathe_program answers for the reference evaluator
 * (LATHE_BACKEND_EVAL), so any user can compare the two.  One LLVMContext per
 * compilation; ownership of the module moves to the JIT (see add_module). */
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include <omp.h>

#include "kernel.h"
#include "lathe_compiler.h"
#include "lathe_runtime.h"
#include "lower_llvm.h"

struct lathe_program {
    lathe_backend backend;
    lathe_graph *g;            /* the caller's graph (not owned) */
    char err[1024];
    int threads;
    /* JIT */
    lt_fused *f;
    LLVMOrcLLJITRef jit;
    lathe_rt_program rt;
    lathe_rt_kernel *kernels;
    lathe_rt_copy *copies;
    /* evaluator */
    lathe_eval *ev;
};

static lathe_status perr(lathe_program *p, lathe_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static lathe_status perr(lathe_program *p, lathe_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof p->err, fmt, ap);
    va_end(ap);
    return st;
}

static lathe_status llvm_err(lathe_program *p, LLVMErrorRef e, const char *what) {
    char *m = LLVMGetErrorMessage(e); /* consumes e */
    perr(p, LATHE_ERR_UNSUPPORTED, "%s: %s", what, m);
    LLVMDisposeErrorMessage(m);
    return LATHE_ERR_UNSUPPORTED;
}

/* A target machine for this host: its real CPU name and features. */
static LLVMTargetMachineRef host_machine(char *err, size_t errlen) {
#pragma omp critical(lathe_llvm_init)
    {
        LLVMInitializeNativeTarget();
        LLVMInitializeNativeAsmPrinter();
    }
    char *triple = LLVMGetDefaultTargetTriple(), *cpu = LLVMGetHostCPUName(), *feat = LLVMGetHostCPUFeatures();
    char *msg = NULL;
    LLVMTargetRef target;
    LLVMTargetMachineRef tm = NULL;
    if (LLVMGetTargetFromTriple(triple, &target, &msg)) snprintf(err, errlen, "LLVM target %s: %s", triple, msg);
    else tm = LLVMCreateTargetMachine(target, triple, cpu, feat, LLVMCodeGenLevelAggressive, LLVMRelocDefault,
                                      LLVMCodeModelJITDefault);
    LLVMDisposeMessage(msg);
    LLVMDisposeMessage(triple);
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(feat);
    return tm;
}

/* Build and optimize the module of kernels [first, last) of f in ctx. */
static lathe_status build_module(lathe_program *p, const lt_fused *f, int first, int last, LLVMContextRef ctx,
                                 LLVMModuleRef *out, LLVMTargetMachineRef tm) {
    LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("lathe", ctx);
    char *triple = LLVMGetTargetMachineTriple(tm);
    LLVMSetTarget(mod, triple);
    LLVMDisposeMessage(triple);
    LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
    LLVMSetModuleDataLayout(mod, td);
    LLVMDisposeTargetData(td);
    lathe_status st = lt_lower(f, first, last, ctx, mod, p->err, sizeof p->err);
    if (st == LATHE_OK) {
        LLVMPassBuilderOptionsRef opt = LLVMCreatePassBuilderOptions();
        LLVMPassBuilderOptionsSetLoopVectorization(opt, 1);
        LLVMPassBuilderOptionsSetSLPVectorization(opt, 1);
        LLVMPassBuilderOptionsSetLoopUnrolling(opt, 0); /* code size: compile time */
        LLVMErrorRef e = LLVMRunPasses(mod, "default<O3>", tm, opt);
        LLVMDisposePassBuilderOptions(opt);
        if (e) st = llvm_err(p, e, "LLVM optimization");
    }
    if (st != LATHE_OK) {
        LLVMDisposeModule(mod);
        return st;
    }
    *out = mod;
    return LATHE_OK;
}

static lathe_status compile_jit(lathe_program *p) {
    p->f = lt_fuse(p->g);
    if (!p->f) return perr(p, LATHE_ERR_NOMEM, "out of memory");
    if (p->f->g->status != LATHE_OK)
        return perr(p, p->f->g->status, "%s", lathe_graph_error(p->f->g));
    const lt_fused *f = p->f;
    /* one part per thread: lower, optimize and emit an object in parallel */
    int nparts = omp_get_max_threads();
    if (nparts > f->nk) nparts = f->nk > 0 ? f->nk : 1;
    if (nparts > 64) nparts = 64;
    LLVMMemoryBufferRef objs[64] = {0};
    lathe_status pst[64];
    char (*perrs)[1024] = calloc(64, sizeof *perrs);
    if (!perrs) return perr(p, LATHE_ERR_NOMEM, "out of memory");
    LLVMTargetMachineRef tm0 = host_machine(p->err, sizeof p->err); /* LLVM's targets, before the threads */
    if (!tm0) return LATHE_ERR_UNSUPPORTED;
    LLVMDisposeTargetMachine(tm0);
#pragma omp parallel for num_threads(nparts) schedule(static, 1)
    for (int part = 0; part < nparts; part++) {
        lathe_program tmp = {0};
        pst[part] = LATHE_OK;
        LLVMTargetMachineRef ptm = host_machine(tmp.err, sizeof tmp.err);
        LLVMContextRef pctx = LLVMContextCreate();
        LLVMModuleRef pmod = NULL;
        int first = (int)((int64_t)f->nk * part / nparts), last = (int)((int64_t)f->nk * (part + 1) / nparts);
        if (!ptm) pst[part] = LATHE_ERR_UNSUPPORTED;
        else pst[part] = build_module(&tmp, f, first, last, pctx, &pmod, ptm);
        if (pst[part] == LATHE_OK) {
            char *msg = NULL;
            if (LLVMTargetMachineEmitToMemoryBuffer(ptm, pmod, LLVMObjectFile, &msg, &objs[part])) {
                pst[part] = perr(&tmp, LATHE_ERR_UNSUPPORTED, "emitting code: %s", msg ? msg : "?");
                objs[part] = NULL;
            }
            LLVMDisposeMessage(msg);
        }
        snprintf(perrs[part], sizeof perrs[part], "%s", tmp.err);
        if (pmod) LLVMDisposeModule(pmod);
        LLVMContextDispose(pctx);
        if (ptm) LLVMDisposeTargetMachine(ptm);
    }
    lathe_status st = LATHE_OK;
    for (int part = 0; part < nparts && st == LATHE_OK; part++)
        if (pst[part] != LATHE_OK) st = perr(p, pst[part], "%s", perrs[part]);
    free(perrs);
    if (st == LATHE_OK) {
        LLVMOrcJITTargetMachineBuilderRef jtmb;
        LLVMErrorRef e = LLVMOrcJITTargetMachineBuilderDetectHost(&jtmb);
        if (!e) {
            LLVMOrcLLJITBuilderRef b = LLVMOrcCreateLLJITBuilder();
            LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(b, jtmb); /* b takes jtmb */
            e = LLVMOrcCreateLLJIT(&p->jit, b);                     /* and the JIT takes b */
        }
        if (e) st = llvm_err(p, e, "creating the LLVM JIT");
    }
    for (int part = 0; part < nparts; part++) {
        if (!objs[part]) continue;
        if (st == LATHE_OK) {
            /* the JIT takes the object buffer */
            LLVMErrorRef e = LLVMOrcLLJITAddObjectFile(p->jit, LLVMOrcLLJITGetMainJITDylib(p->jit), objs[part]);
            if (e) st = llvm_err(p, e, "adding code to the JIT");
        } else LLVMDisposeMemoryBuffer(objs[part]);
    }
    if (st != LATHE_OK) return st;
    p->kernels = calloc((size_t)f->nk + 1, sizeof *p->kernels);
    if (!p->kernels) return perr(p, LATHE_ERR_NOMEM, "out of memory");
    for (int i = 0; i < f->nk; i++) {
        char name[32];
        snprintf(name, sizeof name, "lathe_k%d", i);
        LLVMOrcExecutorAddress addr;
        LLVMErrorRef e = LLVMOrcLLJITLookup(p->jit, &addr, name);
        if (e) return llvm_err(p, e, "looking up a kernel");
        p->kernels[i].fn = (lathe_kernel_fn)(uintptr_t)addr;
        p->kernels[i].range = f->ks[i].range;
    }
    /* updates: after the kernels, each buffer takes its new value */
    const lathe_graph *g = f->g;
    p->copies = calloc((size_t)g->nupd + 1, sizeof *p->copies);
    if (!p->copies) return perr(p, LATHE_ERR_NOMEM, "out of memory");
    for (int i = 0; i < g->nupd; i++) {
        int sb = f->buf_of[g->updates[i].value->id], db = f->buf_of[g->updates[i].buffer->id];
        p->copies[i] = (lathe_rt_copy){f->plan[sb].offset, f->plan[db].offset, f->plan[db].size};
    }
    p->rt.arena = lathe_rt_alloc_arena(f->arena_size);
    if (!p->rt.arena) return perr(p, LATHE_ERR_NOMEM, "out of memory for a %lld-byte arena", (long long)f->arena_size);
    p->rt.arena_size = f->arena_size;
    p->rt.kernels = p->kernels;
    p->rt.nkernels = f->nk;
    p->rt.copies = p->copies;
    p->rt.ncopies = g->nupd;
    for (int b = 0; b < f->nbufs; b++)
        if (f->bufs[b].kind == B_CONST)
            memcpy(p->rt.arena + f->plan[b].offset, f->bufs[b].data, (size_t)f->plan[b].size);
    return LATHE_OK;
}

lathe_program *lathe_compile(lathe_graph *g, lathe_backend backend) {
    if (lathe_graph_status(g) != LATHE_OK) return NULL;
    if (lathe_graph_verify(g) != LATHE_OK) return NULL;
    lathe_program *p = calloc(1, sizeof *p);
    if (!p) {
        lt_fail(g, LATHE_ERR_NOMEM, "out of memory");
        return NULL;
    }
    p->backend = backend;
    p->g = g;
    lathe_status st;
    if (backend == LATHE_BACKEND_EVAL) {
        p->ev = lathe_eval_new(g);
        st = p->ev ? LATHE_OK : lathe_graph_status(g);
        if (!p->ev) perr(p, st, "%s", lathe_graph_error(g));
    } else st = compile_jit(p);
    if (st != LATHE_OK) {
        lt_fail(g, st, "compile: %s", p->err);
        lathe_program_free(p);
        return NULL;
    }
    return p;
}

void lathe_program_free(lathe_program *p) {
    if (!p) return;
    if (p->jit) LLVMOrcDisposeLLJIT(p->jit);
    lathe_rt_free_arena(p->rt.arena);
    free(p->kernels);
    free(p->copies);
    lt_fused_free(p->f);
    lathe_eval_free(p->ev);
    free(p);
}

const char *lathe_program_error(const lathe_program *p) { return p->err; }
void lathe_program_set_threads(lathe_program *p, int threads) { p->threads = threads; }
int64_t lathe_program_arena_bytes(const lathe_program *p) { return p->f ? p->f->arena_size : 0; }

/* The buffer of a leaf by name, or of an output by name (outputs first when
 * want_output). */
static const lathe_node *find_node(const lathe_program *p, const char *name, bool outputs_first) {
    const lathe_graph *g = p->backend == LATHE_BACKEND_JIT ? p->f->g : p->g;
    if (outputs_first) {
        lathe_node *o = lathe_graph_find_output(g, name);
        if (o) return o;
    }
    for (int i = 0; i < lathe_graph_num_nodes(g); i++) {
        lathe_node *n = lathe_graph_node(g, i);
        if (n->name && strcmp(n->name, name) == 0) return n;
    }
    return NULL;
}

lathe_status lathe_program_set(lathe_program *p, const char *name, const void *data, size_t nbytes) {
    if (p->backend == LATHE_BACKEND_EVAL) {
        lathe_status st = lathe_eval_set(p->ev, name, data, nbytes);
        if (st) perr(p, st, "%s", lathe_eval_error(p->ev));
        return st;
    }
    const lathe_node *n = find_node(p, name, false);
    if (!n || n->op == LT_OP_CONST) return perr(p, LATHE_ERR_NAME, "set: no input, param or buffer named '%s'", name);
    int b = p->f->buf_of[n->id];
    size_t want = (size_t)p->f->plan[b].size;
    if (nbytes != want) {
        char ts[160];
        lathe_node_type_str(n, ts, sizeof ts);
        return perr(p, LATHE_ERR_ARG, "set '%s' (%s): %zu bytes given, %zu expected", name, ts, nbytes, want);
    }
    if (nbytes) memcpy(p->rt.arena + p->f->plan[b].offset, data, nbytes);
    return LATHE_OK;
}

lathe_status lathe_program_run(lathe_program *p) {
    if (p->backend == LATHE_BACKEND_EVAL) {
        lathe_status st = lathe_eval_run(p->ev);
        if (st) perr(p, st, "%s", lathe_eval_error(p->ev));
        return st;
    }
    lathe_rt_run(&p->rt, p->threads);
    return LATHE_OK;
}

static void to_dtype(lathe_dtype t, const double *v, int64_t n, void *out) {
    for (int64_t i = 0; i < n; i++) switch (t) {
        case LATHE_F32: ((float *)out)[i] = (float)v[i]; break;
        case LATHE_F64: ((double *)out)[i] = v[i]; break;
        case LATHE_I64: ((int64_t *)out)[i] = (int64_t)v[i]; break;
        case LATHE_BOOL: ((bool *)out)[i] = v[i] != 0; break;
        }
}

lathe_status lathe_program_get(lathe_program *p, const char *name, void *out, size_t nbytes) {
    const lathe_node *n = find_node(p, name, true);
    if (!n) return perr(p, LATHE_ERR_NAME, "get: no output or tensor named '%s'", name);
    size_t want = (size_t)n->numel * lathe_dtype_size(n->dtype);
    if (nbytes != want) {
        char ts[160];
        lathe_node_type_str(n, ts, sizeof ts);
        return perr(p, LATHE_ERR_ARG, "get '%s' (%s): %zu bytes given, %zu expected", name, ts, nbytes, want);
    }
    if (p->backend == LATHE_BACKEND_EVAL) {
        const double *v = lt_ops[n->op].kind == LT_LEAF && n->op != LT_OP_CONST ? lathe_eval_leaf(p->ev, name)
                                                                              : lathe_eval_value(p->ev, n);
        if (!v) return perr(p, LATHE_ERR_ARG, "get '%s': %s", name, lathe_eval_error(p->ev));
        to_dtype(n->dtype, v, n->numel, out);
        return LATHE_OK;
    }
    int b = p->f->buf_of[n->id];
    if (want) memcpy(out, p->rt.arena + p->f->plan[b].offset, want);
    return LATHE_OK;
}

/* ---- dumps -------------------------------------------------------------------------- */

lathe_status lathe_dump_stage(lathe_graph *g, const char *stage, FILE *out) {
    lathe_program tmp = {0};
    lt_fused *f = lt_fuse(g);
    if (!f) return lt_fail(g, LATHE_ERR_NOMEM, "out of memory"), LATHE_ERR_NOMEM;
    lathe_status st = f->g->status;
    if (st != LATHE_OK) {
        lt_fail(g, st, "%s", lathe_graph_error(f->g));
    } else if (!strcmp(stage, "fused")) {
        lt_fused_print(out, f);
    } else if (!strcmp(stage, "plan")) {
        lt_fused_print_plan(out, f);
    } else {
        LLVMTargetMachineRef tm = host_machine(tmp.err, sizeof tmp.err);
        if (!tm) st = LATHE_ERR_UNSUPPORTED;
        LLVMContextRef ctx = LLVMContextCreate();
        LLVMModuleRef mod = NULL;
        if (st == LATHE_OK) st = build_module(&tmp, f, 0, f->nk, ctx, &mod, tm);
        if (st == LATHE_OK && !strcmp(stage, "llvm")) {
            char *s = LLVMPrintModuleToString(mod);
            fputs(s, out);
            LLVMDisposeMessage(s);
        } else if (st == LATHE_OK) {
            char *msg = NULL;
            LLVMMemoryBufferRef buf;
            if (LLVMTargetMachineEmitToMemoryBuffer(tm, mod, LLVMAssemblyFile, &msg, &buf)) {
                st = perr(&tmp, LATHE_ERR_UNSUPPORTED, "emitting assembly: %s", msg ? msg : "?");
            } else {
                fwrite(LLVMGetBufferStart(buf), 1, LLVMGetBufferSize(buf), out);
                LLVMDisposeMemoryBuffer(buf);
            }
            LLVMDisposeMessage(msg);
        }
        if (mod) LLVMDisposeModule(mod);
        LLVMContextDispose(ctx);
        if (tm) LLVMDisposeTargetMachine(tm);
        if (st != LATHE_OK) lt_fail(g, st, "%s", tmp.err);
    }
    lt_fused_free(f);
    return st;
}
