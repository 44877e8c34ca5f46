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
#include <math.h>
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

#include "jit.h"
#include "kernel.h"
#include "lathe_compiler.h"
#include "lathe_runtime.h"
#include "lathe_optim.h"
#include "lower_llvm.h"

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

/* A target machine for cpu (NULL: this host, its real CPU name and
 * features); PIC code for objects linked into executables. */
static LLVMTargetMachineRef target_machine(const char *want_cpu, bool pic, char *err, size_t errlen) {
#pragma omp critical(lathe_llvm_init)
    {
        LLVMInitializeNativeTarget();
        LLVMInitializeNativeAsmPrinter();
    }
    char *triple = LLVMGetDefaultTargetTriple();
    char *cpu = want_cpu ? LLVMCreateMessage(want_cpu) : LLVMGetHostCPUName();
    char *feat = want_cpu ? LLVMCreateMessage("") : LLVMGetHostCPUFeatures();
    char *msg = NULL;
    LLVMTargetRef target;
    LLVMTargetMachineRef tm = NULL;
    if (LLVMGetTargetFromTriple(triple, &target, &msg)) snprintf(err, errlen, "LLVM target %s: %s", triple, msg);
    else tm = LLVMCreateTargetMachine(target, triple, cpu, feat, LLVMCodeGenLevelAggressive,
                                      pic ? LLVMRelocPIC : LLVMRelocDefault,
                                      pic ? LLVMCodeModelDefault : LLVMCodeModelJITDefault);
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
    for (int i = first; st == LATHE_OK && p->prefix && i < last; i++) { /* the kernels' symbols */
        char name[32], to[160];
        snprintf(name, sizeof name, "lathe_k%d", i);
        snprintf(to, sizeof to, "%s%d", p->prefix, i);
        LLVMValueRef fn = LLVMGetNamedFunction(mod, name);
        if (fn) LLVMSetValueName2(fn, to, strlen(to));
    }
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

static const lathe_node *find_leaf(const lathe_graph *g, const char *name) {
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i]->name && strcmp(g->nodes[i]->name, name) == 0) return g->nodes[i];
    return NULL;
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
    LLVMTargetMachineRef tm0 = target_machine(p->cpu, p->backend == LT_BACKEND_OBJECT, p->err, sizeof p->err); /* LLVM's targets, before the threads */
    if (!tm0) return LATHE_ERR_UNSUPPORTED;
    LLVMDisposeTargetMachine(tm0);
#pragma omp parallel for num_threads(nparts) schedule(static, 1)
    for (int part = 0; part < nparts; part++) {
        lathe_program tmp = {0};
        tmp.prefix = p->prefix;
        pst[part] = LATHE_OK;
        LLVMTargetMachineRef ptm = target_machine(p->cpu, p->backend == LT_BACKEND_OBJECT, tmp.err, sizeof tmp.err);
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
    if (p->backend == LT_BACKEND_OBJECT) { /* the caller takes the objects */
        for (int part = 0; part < nparts; part++) p->objs[part] = objs[part];
        p->nobjs = nparts;
    } else if (st == LATHE_OK) {
        LLVMOrcJITTargetMachineBuilderRef jtmb;
        LLVMErrorRef e = LLVMOrcJITTargetMachineBuilderDetectHost(&jtmb);
        if (!e) {
            LLVMOrcLLJITBuilderRef b = LLVMOrcCreateLLJITBuilder();
            LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(b, jtmb); /* b takes jtmb */
            e = LLVMOrcCreateLLJIT(&p->jit, b);                     /* and the JIT takes b */
        }
        if (e) st = llvm_err(p, e, "creating the LLVM JIT");
    }
    for (int part = 0; part < nparts && p->backend != LT_BACKEND_OBJECT; part++) {
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
        p->kernels[i].range = f->ks[i].range;
        if (p->backend == LT_BACKEND_OBJECT) continue; /* the functions are linked later */
        char name[32];
        snprintf(name, sizeof name, "lathe_k%d", i);
        LLVMOrcExecutorAddress addr;
        LLVMErrorRef e = LLVMOrcLLJITLookup(p->jit, &addr, name);
        if (e) return llvm_err(p, e, "looking up a kernel");
        p->kernels[i].fn = (lathe_kernel_fn)(uintptr_t)addr;
    }
    /* Updates are simultaneous: after the kernels, every new value (and every
     * output that is itself an updated buffer) is first copied to a staging
     * area after the planned arena, then every buffer takes its value from
     * there, so no update reads another's result. */
    const lathe_graph *g = f->g;
    p->copies = calloc((size_t)(2 * g->nupd + g->nout + 1), sizeof *p->copies);
    int64_t *out_stage = calloc((size_t)g->nout + 1, sizeof *out_stage);
    if (!p->copies || !out_stage) {
        free(out_stage);
        return perr(p, LATHE_ERR_NOMEM, "out of memory");
    }
    int nc = 0;
    int64_t stage = (f->arena_size + 63) & ~(int64_t)63;
    for (int i = 0; i < g->nupd; i++) {
        int sb = f->buf_of[g->updates[i].value->id];
        p->copies[nc++] = (lathe_rt_copy){f->plan[sb].offset, stage, f->plan[sb].size};
        stage += (f->plan[sb].size + 63) & ~(int64_t)63;
    }
    for (int i = 0; i < g->nout; i++) {
        out_stage[i] = -1;
        for (int u = 0; u < g->nupd; u++)
            if (g->updates[u].buffer == g->outputs[i].node) {
                int sb = f->buf_of[g->outputs[i].node->id];
                out_stage[i] = stage;
                p->copies[nc++] = (lathe_rt_copy){f->plan[sb].offset, stage, f->plan[sb].size};
                stage += (f->plan[sb].size + 63) & ~(int64_t)63;
                break;
            }
    }
    for (int i = 0; i < g->nupd; i++) {
        int db = f->buf_of[g->updates[i].buffer->id];
        p->copies[nc++] = (lathe_rt_copy){p->copies[i].dst, f->plan[db].offset, f->plan[db].size};
    }
    p->rt.arena = lathe_rt_alloc_arena(stage);
    if (!p->rt.arena) {
        free(out_stage);
        return perr(p, LATHE_ERR_NOMEM, "out of memory for a %lld-byte arena", (long long)stage);
    }
    p->rt.arena_size = stage;
    for (int i = 0; i < p->ntensors; i++) { /* where the plan put each named tensor */
        const lathe_rt_tensor *t = &p->tensors[i];
        const lathe_node *n = t->kind == LATHE_RT_OUTPUT ? lathe_graph_find_output(f->g, t->name) : find_leaf(f->g, t->name);
        LT_ASSERT(n && f->buf_of[n->id] >= 0);
        p->tensors[i].offset = f->plan[f->buf_of[n->id]].offset;
        if (t->kind == LATHE_RT_OUTPUT) /* an updated buffer as an output: its value from the run */
            for (int o = 0; o < g->nout; o++)
                if (!strcmp(g->outputs[o].name, t->name) && out_stage[o] >= 0) p->tensors[i].offset = out_stage[o];
    }
    free(out_stage);
    p->rt.kernels = p->kernels;
    p->rt.nkernels = f->nk;
    p->rt.copies = p->copies;
    p->rt.ncopies = nc;
    for (int b = 0; b < f->nbufs; b++)
        if (f->bufs[b].kind == B_CONST)
            memcpy(p->rt.arena + f->plan[b].offset, f->bufs[b].data, (size_t)f->plan[b].size);
    return LATHE_OK;
}

/* PyTorch's default initialization of a parameter or buffer, from the op
 * that uses it: kaiming-uniform(a = sqrt(5)) weights and uniform(+-1/sqrt(fan_in))
 * biases for conv2d and linear (both bounds are 1/sqrt(fan_in)); batch norm's
 * weight 1, bias 0, running_var 1, running_mean 0. */
static void init_rule(const lathe_graph *g, const lathe_node *leaf, lathe_rt_tensor *t) {
    t->init = LATHE_INIT_CONST;
    t->init_a = 0;
    if (leaf->init != LATHE_LEAF_INIT_AUTO) { /* lathe_set_init */
        t->init = leaf->init == LATHE_LEAF_INIT_UNIFORM ? LATHE_INIT_UNIFORM : LATHE_INIT_CONST;
        t->init_a = leaf->init_a;
        return;
    }
    for (int i = leaf->id + 1; i < g->nnodes; i++) {
        const lathe_node *n = g->nodes[i];
        for (int k = 0; k < n->nin; k++) {
            if (n->in[k] != leaf) continue;
            const lathe_node *w = n->nin > 1 ? n->in[1] : NULL;
            if ((n->op == LT_OP_CONV2D || n->op == LT_OP_LINEAR) && (k == 1 || k == 2)) {
                int64_t fan_in = 1;
                for (int d = 1; d < w->rank; d++) fan_in *= w->shape[d];
                t->init = LATHE_INIT_UNIFORM;
                t->init_a = 1.0 / sqrt((double)(fan_in ? fan_in : 1));
                return;
            }
            if (n->op == LT_OP_BATCH_NORM2D) {
                t->init_a = k == 1 || k == 4 ? 1 : 0;
                return;
            }
        }
    }
    if (leaf->op == LT_OP_PARAM && leaf->rank >= 2) { /* some other use: as a linear layer's weight */
        int64_t fan_in = leaf->numel / (leaf->shape[0] ? leaf->shape[0] : 1);
        t->init = LATHE_INIT_UNIFORM;
        t->init_a = 1.0 / sqrt((double)(fan_in ? fan_in : 1));
    }
}

/* The table of named tensors of g: leaves, then outputs. */
static lathe_status build_table(lathe_program *p) {
    const lathe_graph *g = p->g;
    p->tensors = calloc((size_t)(g->nnodes + g->nout + 1), sizeof *p->tensors);
    p->tnode = calloc((size_t)(g->nnodes + g->nout + 1), sizeof *p->tnode);
    if (!p->tensors || !p->tnode) return perr(p, LATHE_ERR_NOMEM, "out of memory");
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < (pass ? g->nout : g->nnodes); i++) {
            const lathe_node *n = pass ? g->outputs[i].node : g->nodes[i];
            if (!pass && (!n->name || n->op == LT_OP_CONST)) continue;
            lathe_rt_tensor *t = &p->tensors[p->ntensors];
            p->tnode[p->ntensors++] = n;
            t->name = pass ? g->outputs[i].name : n->name;
            t->kind = pass ? LATHE_RT_OUTPUT : n->op == LT_OP_INPUT ? LATHE_RT_INPUT : n->op == LT_OP_PARAM ? LATHE_RT_PARAM : LATHE_RT_BUFFER;
            t->dtype = (int)n->dtype;
            t->rank = n->rank;
            memcpy(t->shape, n->shape, sizeof t->shape);
            t->numel = n->numel;
            t->requires_grad = !pass && n->requires_grad;
            t->grad_offset = -1;
            if (!pass && n->op != LT_OP_INPUT) init_rule(g, n, t);
        }
    return LATHE_OK;
}

/* Gradient offsets, once every tensor has its offset. */
static void link_grads(lathe_program *p) {
    size_t plen = strlen(LATHE_GRAD_PREFIX);
    for (int i = 0; i < p->ntensors; i++) {
        lathe_rt_tensor *o = &p->tensors[i];
        if (o->kind != LATHE_RT_OUTPUT || strncmp(o->name, LATHE_GRAD_PREFIX, plen) != 0) continue;
        for (int j = 0; j < p->ntensors; j++)
            if (p->tensors[j].kind == LATHE_RT_PARAM && strcmp(p->tensors[j].name, o->name + plen) == 0)
                p->tensors[j].grad_offset = o->offset;
    }
}

/* The evaluator's arena: the named tensors one after another. */
static lathe_status eval_arena(lathe_program *p) {
    int64_t off = 0;
    for (int i = 0; i < p->ntensors; i++) {
        p->tensors[i].offset = off;
        off += (p->tensors[i].numel * (int64_t)lathe_dtype_size((lathe_dtype)p->tensors[i].dtype) + 63) & ~(int64_t)63;
    }
    p->rt.arena = lathe_rt_alloc_arena(off);
    p->rt.arena_size = off;
    return p->rt.arena ? LATHE_OK : perr(p, LATHE_ERR_NOMEM, "out of memory");
}

lathe_program *lathe_compile(lathe_graph *g, lathe_backend backend) { return lt_compile(g, (int)backend, NULL, NULL); }

lathe_program *lt_compile(lathe_graph *g, int backend, const char *cpu, const char *prefix) {
    if (lathe_graph_status(g) != LATHE_OK) return NULL;
    if (lathe_graph_verify(g) != LATHE_OK) return NULL;
    lathe_program *p = calloc(1, sizeof *p);
    if (!p) {
        lt_fail(g, LATHE_ERR_NOMEM, "out of memory");
        return NULL;
    }
    p->backend = backend;
    p->g = g;
    p->cpu = cpu;
    p->prefix = prefix;
    lathe_status st = build_table(p);
    if (st == LATHE_OK && backend == LATHE_BACKEND_EVAL) {
        p->ev = lathe_eval_new(g);
        st = p->ev ? eval_arena(p) : lathe_graph_status(g);
        if (!p->ev) perr(p, st, "%s", lathe_graph_error(g));
    } else if (st == LATHE_OK) st = compile_jit(p);
    if (st == LATHE_OK) link_grads(p);
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
    for (int i = 0; i < p->nobjs; i++)
        if (p->objs[i]) LLVMDisposeMemoryBuffer(p->objs[i]);
    lathe_rt_free_arena(p->rt.arena);
    free(p->kernels);
    free(p->copies);
    lt_fused_free(p->f);
    lathe_eval_free(p->ev);
    free(p->tensors);
    free(p->tnode);
    free(p);
}

int lathe_program_num_tensors(const lathe_program *p) { return p->ntensors; }
const lathe_rt_tensor *lathe_program_tensors(const lathe_program *p) { return p->tensors; }
uint8_t *lathe_program_arena(lathe_program *p) { return p->rt.arena; }
void lathe_program_init(lathe_program *p, uint64_t seed) { lathe_rt_init(p->rt.arena, p->tensors, p->ntensors, seed); }
lathe_optimizer *lathe_program_optimizer(lathe_program *p, const lathe_optim_config *cfg) {
    return lathe_optim_new(cfg, p->rt.arena, p->tensors, p->ntensors, p->err, sizeof p->err);
}

const char *lathe_program_error(const lathe_program *p) { return p->err; }
void lathe_program_set_threads(lathe_program *p, int threads) { p->threads = threads; }
const lathe_rt_program *lathe_program_rt(const lathe_program *p) { return &p->rt; }
int64_t lathe_program_arena_bytes(const lathe_program *p) { return p->f ? p->f->arena_size : 0; }

/* The tensor `name`: outputs first when outputs_first, else leaves only. */
static int find_tensor(const lathe_program *p, const char *name, bool outputs_first) {
    for (int pass = outputs_first ? 0 : 1; pass < 2; pass++)
        for (int i = 0; i < p->ntensors; i++)
            if ((p->tensors[i].kind == LATHE_RT_OUTPUT) == (pass == 0) && strcmp(p->tensors[i].name, name) == 0) return i;
    return -1;
}

static size_t tensor_bytes(const lathe_rt_tensor *t) { return (size_t)t->numel * lathe_dtype_size((lathe_dtype)t->dtype); }

/* The tensor *i for set (leaves) or get (outputs first), its byte count
 * checked. */
static lathe_status tensor_for(lathe_program *p, bool get, const char *name, size_t nbytes, int *i) {
    const char *verb = get ? "get" : "set";
    if ((*i = find_tensor(p, name, get)) < 0)
        return perr(p, LATHE_ERR_NAME, "%s: no %s named '%s'", verb, get ? "output or tensor" : "input, param or buffer", name);
    size_t want = tensor_bytes(&p->tensors[*i]);
    if (nbytes == want) return LATHE_OK;
    char ts[160];
    lathe_node_type_str(p->tnode[*i], ts, sizeof ts);
    return perr(p, LATHE_ERR_ARG, "%s '%s' (%s): %zu bytes given, %zu expected", verb, name, ts, nbytes, want);
}

lathe_status lathe_program_set(lathe_program *p, const char *name, const void *data, size_t nbytes) {
    int i;
    lathe_status st = tensor_for(p, false, name, nbytes, &i);
    if (st == LATHE_OK && nbytes) memcpy(p->rt.arena + p->tensors[i].offset, data, nbytes);
    return st;
}

static void from_doubles(lathe_dtype t, const double *v, int64_t n, void *out) {
    for (int64_t i = 0; i < n; i++) switch (t) {
        case LATHE_F32: ((float *)out)[i] = (float)v[i]; break;
        case LATHE_F64: ((double *)out)[i] = v[i]; break;
        case LATHE_I64: ((int64_t *)out)[i] = (int64_t)v[i]; break;
        case LATHE_BOOL: ((bool *)out)[i] = v[i] != 0; break;
        }
}

/* The evaluator reads the leaves from the arena and writes back the outputs
 * and the updated buffers. */
static lathe_status eval_run(lathe_program *p) {
    for (int i = 0; i < p->ntensors; i++) {
        const lathe_rt_tensor *t = &p->tensors[i];
        if (t->kind == LATHE_RT_OUTPUT) continue;
        lathe_status st = lathe_eval_set(p->ev, t->name, p->rt.arena + t->offset, tensor_bytes(t));
        if (st) return perr(p, st, "%s", lathe_eval_error(p->ev));
    }
    lathe_status st = lathe_eval_run(p->ev);
    if (st) return perr(p, st, "%s", lathe_eval_error(p->ev));
    for (int i = 0; i < p->ntensors; i++) {
        const lathe_rt_tensor *t = &p->tensors[i];
        if (t->kind != LATHE_RT_OUTPUT && t->kind != LATHE_RT_BUFFER) continue;
        const double *v = t->kind == LATHE_RT_OUTPUT ? lathe_eval_value(p->ev, p->tnode[i]) : lathe_eval_leaf(p->ev, t->name);
        from_doubles((lathe_dtype)t->dtype, v, t->numel, p->rt.arena + t->offset);
    }
    return LATHE_OK;
}

lathe_status lathe_program_run(lathe_program *p) {
    if (p->backend == LATHE_BACKEND_EVAL) return eval_run(p);
    lathe_rt_run(&p->rt, p->threads);
    return LATHE_OK;
}

lathe_status lathe_program_get(lathe_program *p, const char *name, void *out, size_t nbytes) {
    int i;
    lathe_status st = tensor_for(p, true, name, nbytes, &i);
    if (st == LATHE_OK && nbytes) memcpy(out, p->rt.arena + p->tensors[i].offset, nbytes);
    return st;
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
        LLVMTargetMachineRef tm = target_machine(NULL, false, tmp.err, sizeof tmp.err);
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
