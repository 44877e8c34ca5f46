/* verify.c - the graph verifier.
 *
 * Re-checks every invariant that builders establish, so a pass that rewrites
 * a graph (autodiff, simplification) is caught the moment it breaks one:
 * operands come earlier in the node order (hence no cycles), each node's type
 * is what its shape rule gives, leaves have unique names, only floating
 * tensors require grad, and outputs and updates are well-formed. */
#include <string.h>

#include "ir.h"

static lathe_status bad(lathe_graph *g, const lathe_node *n, const char *fmt, const char *detail) {
    char where[64] = "";
    if (n && n->line) snprintf(where, sizeof where, " (line %d:%d)", n->line, n->col);
    lt_fail(g, LATHE_ERR_VERIFY, "verify: node %%%d (%s)%s: %s%s", n ? n->id : -1,
            n ? lt_ops[n->op].name : "?", where, fmt, detail ? detail : "");
    return LATHE_ERR_VERIFY;
}

lathe_status lathe_graph_verify(lathe_graph *g) {
    if (g->status != LATHE_OK) return g->status;
    for (int i = 0; i < g->nnodes; i++) {
        lathe_node *n = g->nodes[i];
        if (n->id != i || n->g != g) return bad(g, n, "id or owner is inconsistent", NULL);
        if ((unsigned)n->op >= LT_OP_COUNT) return bad(g, n, "unknown op", NULL);
        const lt_opinfo *oi = &lt_ops[n->op];
        if (n->nin < oi->min_args || (oi->max_args >= 0 && n->nin > oi->max_args))
            return bad(g, n, "wrong operand count", NULL);
        for (int k = 0; k < n->nin; k++) {
            if (!n->in[k] || n->in[k]->g != g) return bad(g, n, "operand outside the graph", NULL);
            if (n->in[k]->id >= n->id)
                return bad(g, n, "operand defined after its use (cycle or bad order)", NULL);
        }
        if (oi->kind == LT_LEAF) {
            if (n->requires_grad && !lt_is_float(n->dtype))
                return bad(g, n, "non-floating tensor requires grad", NULL);
            if ((n->op == LT_OP_CONST) != (n->name == NULL))
                return bad(g, n, "constants have no name; other leaves have one", NULL);
            if (n->name)
                for (int j = 0; j < i; j++)
                    if (g->nodes[j]->name && strcmp(g->nodes[j]->name, n->name) == 0)
                        return bad(g, n, "duplicate name ", n->name);
            if (lt_numel(n->rank, n->shape) != n->numel) return bad(g, n, "element count is stale", NULL);
            continue;
        }
        lt_attr a[LT_MAX_ATTRS];
        memcpy(a, n->attr, sizeof a);
        lt_type t;
        if (lt_infer(g, n->op, n->nin, n->in, a, &t) != LATHE_OK) {
            char msg[sizeof g->err];
            memcpy(msg, g->err, sizeof msg);
            lathe_graph_clear_error(g);
            return bad(g, n, "", msg);
        }
        char want[160], have[160];
        lt_type_str(t.dtype, t.rank, t.shape, want, sizeof want);
        lathe_node_type_str(n, have, sizeof have);
        if (strcmp(want, have) != 0) {
            char d[400];
            snprintf(d, sizeof d, "type %s but its rule gives %s", have, want);
            return bad(g, n, "", d);
        }
        if (memcmp(a, n->attr, sizeof a) != 0) return bad(g, n, "attributes are not normalized", NULL);
    }
    for (int i = 0; i < g->nout; i++)
        if (!g->outputs[i].node || g->outputs[i].node->g != g)
            return lt_fail(g, LATHE_ERR_VERIFY, "verify: output '%s' is not in the graph", g->outputs[i].name),
                   LATHE_ERR_VERIFY;
    for (int i = 0; i < g->nupd; i++) {
        lt_update u = g->updates[i];
        if (u.buffer->op != LT_OP_BUFFER || u.buffer->dtype != u.value->dtype ||
            u.buffer->rank != u.value->rank ||
            memcmp(u.buffer->shape, u.value->shape, sizeof(int64_t) * (size_t)u.buffer->rank))
            return bad(g, u.buffer, "update does not match its buffer", NULL);
    }
    for (int i = 0; i < g->nmarks; i++) {
        lt_mark m = g->marks[i];
        if (!m.out || m.out->g != g || (m.cot && (m.cot->g != g || m.cot->dtype != m.out->dtype ||
                                                   m.cot->rank != m.out->rank ||
                                                   memcmp(m.cot->shape, m.out->shape, sizeof(int64_t) * (size_t)m.out->rank))))
            return bad(g, m.out, "backward mark's cotangent does not match its value", NULL);
    }
    return LATHE_OK;
}
