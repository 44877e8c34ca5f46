/* fuse_print.c - the dumps of fused programs: `lathe dump --stage fused`
 * (each kernel's graph nodes, what it reads, its iteration space) and
 * `--stage plan` (each buffer's offset, size and lifetime). */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "kernel.h"
#include "lathe_autodiff.h"
#include "target.h"

static const char *bkind_name(lt_bkind k) {
    static const char *n[] = {"input", "param", "buffer", "const", "temp"};
    return n[k];
}

static void buf_label(const lt_fused *f, int b, char *s, size_t len) {
    const lt_kbuf *kb = &f->bufs[b];
    char ts[160];
    lt_type_str(kb->dtype, kb->rank, kb->shape, ts, sizeof ts);
    if (kb->name) snprintf(s, len, "#%d %s '%s' %s", b, bkind_name(kb->kind), kb->name, ts);
    else snprintf(s, len, "#%d %%%d %s %s", b, kb->node, lt_ops[f->g->nodes[kb->node]->op].name, ts);
}

/* Which graph nodes are backward: created after the first gradient output's
 * forward part is unknowable after simplification, so a node counts as
 * backward when it reaches a gradient output and no plain output. */
void lt_fused_print(FILE *out, const lt_fused *f) {
    const lathe_graph *g = f->g;
    int n = g->nnodes;
    /* forward / backward: reaches only gradient outputs */
    unsigned char *reach = calloc((size_t)n + 1, 1); /* bit 1: plain output/update, bit 2: gradient */
    bool *seen = calloc((size_t)f->nbufs + 1, sizeof(bool));
    if (!reach || !seen) {
        free(reach);
        free(seen);
        return;
    }
    lt_reach_outputs(g, reach);
    fprintf(out, "# %d kernels, %d buffers; forward nodes are marked F, backward B\n", f->nk, f->nbufs);
    if (f->target) {
        char desc[512];
        lt_target_describe(f->target, desc, sizeof desc);
        fprintf(out, "# target %s\n", desc);
    }
    for (int s = 0; s < f->nk; s++) {
        const lt_kernel *k = &f->ks[s];
        char lb[256], ts[160];
        buf_label(f, k->buf, lb, sizeof lb);
        lt_type_str(f->bufs[k->buf].dtype, k->rank, k->shape, ts, sizeof ts);
        fprintf(out, "kernel k%d: writes %s\n", s, lb);
        if (k->con) {
            static const char *kind[] = {"plane convolution", "weight-gradient convolution", "matmul, lanes over columns",
                                         "matmul, lanes over k", "max-pool, lanes over the plane", "max-pool gradient, per window",
                                         "scatter-add of rows in index order"};
            static const char *unit[] = {"vectors", "sums", "vectors", "sums", "vectors", "planes", "vectors of columns"};
            static_assert(sizeof kind / sizeof kind[0] == LT_C_SCATTER + 1 && sizeof unit / sizeof unit[0] == LT_C_SCATTER + 1,
                          "a name per plan kind");
            fprintf(out, "  space %s, %s: %lld tiles of %dx%d %s", ts, kind[k->con->kind], (long long)k->range,
                    k->con->tm, k->con->tn, unit[k->con->kind]);
            if (k->con->phase) fprintf(out, ", in %lldx%lld phases", (long long)k->con->dv[0], (long long)k->con->dv[1]);
            if (k->con->n_inner) fprintf(out, ", images innermost");
            if (k->con->deint) fprintf(out, ", columns de-interleaved");
            if (k->con->batch_inner) fprintf(out, ", batches innermost");
            if (k->con->kc)
                fprintf(out, ", blocks of %lld rows, panels of %lld", (long long)k->con->mc, (long long)k->con->kc);
            fputc('\n', out);
        } else if (k->gather) {
            const lathe_node *m = g->nodes[k->nodes[0]];
            fprintf(out, "  space %s, communication: all-gather along dim %lld from %lld processes (no code)\n", ts,
                    (long long)m->attr[0].v[0], (long long)m->attr[1].v[0]);
        } else {
            fprintf(out, "  space %s, parallel over the first %d dims (%lld ranges)", ts, k->outer, (long long)k->range);
            if (k->nseg) {
                fprintf(out, ", dim %d in %d pieces at", k->seg_dim, k->nseg);
                for (int i = 1; i < k->nseg; i++) fprintf(out, " %lld", (long long)k->seg_lo[i]);
            }
            fputc('\n', out);
        }
        fprintf(out, "  nodes:");
        for (int j = 0; j < k->nnodes; j++) {
            const lathe_node *m = g->nodes[k->nodes[j]];
            fprintf(out, " %%%d %s%s", m->id, lt_ops[m->op].name, reach[m->id] == 2 ? "(B)" : "(F)");
        }
        fputc('\n', out);
        memset(seen, 0, (size_t)f->nbufs * sizeof(bool));
        lt_expr_loads(k->value, seen);
        fprintf(out, "  reads:");
        for (int b = 0; b < f->nbufs; b++)
            if (seen[b]) {
                buf_label(f, b, lb, sizeof lb);
                fprintf(out, " [%s]", lb);
            }
        fputc('\n', out);
    }
    free(reach);
    free(seen);
}

void lt_fused_print_plan(FILE *out, const lt_fused *f) {
    char *store = calloc((size_t)f->nbufs + 1, 256);
    if (!store) return;
    lt_buf *p = malloc(((size_t)f->nbufs + 1) * sizeof *p);
    if (p) {
        memcpy(p, f->plan, (size_t)f->nbufs * sizeof *p);
        for (int b = 0; b < f->nbufs; b++) {
            buf_label(f, b, store + 256 * (size_t)b, 256);
            p[b].label = store + 256 * (size_t)b;
        }
        lt_plan_print(out, p, f->nbufs, f->arena_size);
        free(p);
    }
    free(store);
}
