/* pipeline.c - the compiler's stages, in order, in one function
 * (lt_build_run), and `lathe dump`, which prints what any stage produced.
 *
 *     traced      the caller's graph: C tracing calls, a description (desc.c), text IR
 *     grad        autodiff.c     the marked values' backward pass, appended to the graph
 *     opt         simplify.c     dead code, common subexpressions, constants, algebra
 *     decomposed  decompose.c    composites as primitives, then simplify.c again
 *     fused       fuse.c         which values get a buffer, each kernel's expression;
 *                 contract.c     vector plans and register tiles for the target (target.c)
 *     plan        plan.c         lifetimes, in-place reuse, arena offsets
 *     llvm        lower_llvm.c   kernels to LLVM IR (lower_tiles.c: the tiles), O3 (jit.c)
 *     asm         jit.c          machine code for the target, one object per part
 *     jit         jit.c          ORC LLJIT links the objects in process
 *
 * then program.c makes the program the runtime runs (tensor table, update
 * copies, arena) from the products, or aot.c writes the objects and tables
 * into a native trainer. */
#include <string.h>

#include <llvm-c/Core.h>

#include "lathe_autodiff.h"
#include "pipeline.h"

static const char *const stage_names[LATHE_STAGE_COUNT] = {"traced", "grad", "opt", "decomposed", "fused",
                                                           "plan", "llvm", "asm", "jit"};

const char *lathe_stage_name(lathe_stage s) { return (int)s >= 0 && (int)s < LATHE_STAGE_COUNT ? stage_names[s] : NULL; }

int lathe_stage_from_name(const char *name) {
    for (int i = 0; i < LATHE_STAGE_COUNT; i++)
        if (!strcmp(name, stage_names[i])) return i;
    return -1;
}

/* The status of graph g after a stage made it, its message into b->err. */
static lathe_status graph_status(lt_build *b, const lathe_graph *g) {
    if (!g) {
        snprintf(b->err, sizeof b->err, "out of memory");
        return LATHE_ERR_NOMEM;
    }
    if (g->status != LATHE_OK) snprintf(b->err, sizeof b->err, "%s", g->err);
    return g->status;
}

static lathe_status differentiate(lt_build *b) {
    if (b->g->nmarks > 0) lathe_backward_marked(b->g); /* none: the forward pass alone */
    return graph_status(b, b->g);
}

static lathe_status simplify(lt_build *b) {
    b->opt = lathe_simplify(b->g);
    return graph_status(b, b->opt);
}

/* The decomposed graph's batch reductions as ordered sums of shards, for
 * one process of b->shard.procs (shard.c). */
static lathe_status shard(lt_build *b) {
    lathe_graph *d = b->dec;
    bool *in = calloc((size_t)d->nnodes + 1, sizeof *in);
    if (!in) return graph_status(b, NULL);
    for (int i = 0; i < d->nnodes; i++) in[i] = d->nodes[i]->op == LT_OP_INPUT;
    lathe_graph *sh = lt_shard(d, in, &b->shard, NULL, 0, NULL, b->err, sizeof b->err);
    free(in);
    if (!sh && b->shard.procs == 1) { /* one process: the unsharded program, which the caller sees in shards */
        b->shard.shards = 1;
        b->err[0] = 0;
        return LATHE_OK;
    }
    if (!sh) {
        char head[64], msg[sizeof b->err];
        int n = snprintf(head, sizeof head, "data-parallel program (%d shards, %d processes): ", b->shard.shards, b->shard.procs);
        memcpy(msg, b->err, sizeof msg);
        memcpy(b->err, head, (size_t)n);
        snprintf(b->err + n, sizeof b->err - (size_t)n, "%.*s", (int)(sizeof b->err - (size_t)n - 1), msg);
        lt_fail(d, LATHE_ERR_UNSUPPORTED, "%s", b->err);
        return LATHE_ERR_UNSUPPORTED;
    }
    b->dec = sh;
    lathe_graph_free(d);
    return graph_status(b, sh);
}

static lathe_status decompose(lt_build *b) {
    lathe_graph *d = lt_decompose(b->opt);
    lathe_status st = graph_status(b, d);
    if (st == LATHE_OK) {
        b->dec = lathe_simplify(d);
        st = graph_status(b, b->dec);
        lathe_graph_free(d);
    } else
        b->dec = d; /* keeps the decomposition's error */
    if (st == LATHE_OK && (b->shard.shards > 1 || b->shard.procs > 1)) st = shard(b);
    return st;
}

static lathe_status fuse(lt_build *b) {
    b->f = lt_fuse(b->dec, b->target, b->shard.procs);
    return b->f ? graph_status(b, b->dec) : graph_status(b, NULL);
}

static lathe_status plan(lt_build *b) {
    lt_plan_kernels(b->f);
    return graph_status(b, b->dec);
}

lathe_status lt_build_run(lt_build *b, lathe_stage upto) {
    lathe_status st = LATHE_OK;
    for (int s = b->done + 1; s <= (int)upto && st == LATHE_OK; s++) {
        switch ((lathe_stage)s) {
        case LATHE_STAGE_TRACED: break; /* the caller traced b->g */
        case LATHE_STAGE_GRAD: st = differentiate(b); break;
        case LATHE_STAGE_OPT: st = simplify(b); break;
        case LATHE_STAGE_DECOMPOSED: st = decompose(b); break;
        case LATHE_STAGE_FUSED: st = fuse(b); break;
        case LATHE_STAGE_PLAN: st = plan(b); break;
        case LATHE_STAGE_LLVM: st = lt_codegen_lower(b); break;
        case LATHE_STAGE_ASM: st = lt_codegen_emit(b); break;
        case LATHE_STAGE_JIT: st = lt_jit_link(b); break;
        }
        if (st == LATHE_OK) b->done = s;
    }
    return st;
}

void lt_build_trim(lt_build *b) {
    lt_codegen_free(b, true);
    lathe_graph_free(b->opt);
    b->opt = NULL;
}

void lt_build_free(lt_build *b) {
    lt_codegen_free(b, false);
    lt_fused_free(b->f);
    b->f = NULL;
    lathe_graph_free(b->dec);
    lathe_graph_free(b->opt);
    b->dec = b->opt = NULL;
}

/* ---- dumps -------------------------------------------------------------------------- */

lathe_status lathe_dump(lathe_graph *g, lathe_stage stage, const lathe_target *target, lathe_dump_format format,
                        FILE *out) {
    return lathe_dump_parallel(g, stage, target, 1, 1, false, format, out);
}

lathe_status lathe_dump_parallel(lathe_graph *g, lathe_stage stage, const lathe_target *target, int shards, int procs,
                                 bool local_bn, lathe_dump_format format, FILE *out) {
    if (shards < 1 || procs < 1 || shards % procs)
        return lt_fail(g, LATHE_ERR_ARG, "dump: %d shards on %d processes: the processes must divide the shards", shards,
                       procs), LATHE_ERR_ARG;
    if ((int)stage < 0 || stage >= LATHE_STAGE_JIT)
        return lt_fail(g, LATHE_ERR_ARG, "dump: stage %d has nothing to print (traced .. asm do)", (int)stage), LATHE_ERR_ARG;
    if (format == LATHE_DUMP_DOT && stage > LATHE_STAGE_DECOMPOSED)
        return lt_fail(g, LATHE_ERR_ARG, "dump: DOT is for graph stages (traced, grad, opt, decomposed)"), LATHE_ERR_ARG;
    if (g->status != LATHE_OK) return g->status;
    lt_target t;
    lt_build b = {.g = g, .target = &t, .asm_text = true, .threads = 1, .done = LATHE_STAGE_TRACED,
                  .shard = {shards, procs, local_bn}};
    lathe_status st = stage >= LATHE_STAGE_FUSED ? lt_target_init(&t, target, b.err, sizeof b.err) : LATHE_OK;
    if (st == LATHE_OK) st = lt_build_run(&b, stage);
    if (st == LATHE_OK) switch (stage) {
        case LATHE_STAGE_TRACED:
        case LATHE_STAGE_GRAD:
        case LATHE_STAGE_OPT:
        case LATHE_STAGE_DECOMPOSED: {
            const lathe_graph *p = stage == LATHE_STAGE_OPT ? b.opt : stage == LATHE_STAGE_DECOMPOSED ? b.dec : g;
            st = format == LATHE_DUMP_DOT ? lathe_graph_print_dot(p, out) : lathe_graph_print(p, out);
            break;
        }
        case LATHE_STAGE_FUSED: lt_fused_print(out, b.f); break;
        case LATHE_STAGE_PLAN: lt_fused_print_plan(out, b.f); break;
        case LATHE_STAGE_LLVM:
            for (int i = 0; i < b.nparts; i++) {
                char *s = LLVMPrintModuleToString(b.parts[i].mod);
                fputs(s, out);
                LLVMDisposeMessage(s);
            }
            break;
        case LATHE_STAGE_ASM:
            for (int i = 0; i < b.nparts; i++)
                fwrite(LLVMGetBufferStart(b.parts[i].code), 1, LLVMGetBufferSize(b.parts[i].code), out);
            break;
        case LATHE_STAGE_JIT: break;
        }
    if (st != LATHE_OK && g->status == LATHE_OK) lt_fail(g, st, "%s", b.err);
    lt_build_free(&b);
    return st;
}
