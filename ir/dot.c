/* dot.c - Graphviz DOT of a graph, drawn in the direction of the forward pass.
 *
 * Each node is a box labelled with its op and type (leaves: tensor name and
 * type; rank-0 constants also show their value), and an edge runs from each
 * operand to its user, so arrows follow the data as in the PyTorch autograd
 * tutorial's DAG figure.  As there, leaves that require grad are filled light
 * blue; inputs and params that do not are gray, buffers yellow.  Outputs are
 * extra double-bordered boxes named after the output; an update is a dashed
 * edge from the new value back to its buffer. */
#include <stdio.h>
#include <string.h>

#include "ir.h"

/* Text inside a quoted DOT string: quotes and backslashes escaped, control
 * characters replaced. */
static void put_escaped(FILE *out, const char *s) {
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') fprintf(out, "\\%c", *c);
        else if (*c < 0x20 || *c == 0x7f) fputc('?', out);
        else fputc(*c, out);
    }
}

static void put_scalar(FILE *out, const lathe_node *n) {
    switch (n->dtype) {
    case LATHE_F32: {
        float v;
        memcpy(&v, n->data, sizeof v);
        fprintf(out, "%.6g", (double)v);
        break;
    }
    case LATHE_F64: {
        double v;
        memcpy(&v, n->data, sizeof v);
        fprintf(out, "%.6g", v);
        break;
    }
    case LATHE_I64: {
        int64_t v;
        memcpy(&v, n->data, sizeof v);
        fprintf(out, "%lld", (long long)v);
        break;
    }
    case LATHE_BOOL: fputs(*(const unsigned char *)n->data ? "true" : "false", out); break;
    }
}

lathe_status lathe_graph_print_dot(const lathe_graph *g, FILE *out) {
    if (!g || !out) return LATHE_ERR_ARG;
    fputs("digraph lathe {\n  rankdir=TB;\n  node [shape=box, fontname=\"Helvetica\"];\n", out);
    for (int i = 0; i < g->nnodes; i++) {
        const lathe_node *n = g->nodes[i];
        char ts[160];
        lathe_node_type_str(n, ts, sizeof ts);
        fprintf(out, "  n%d [label=\"", n->id);
        switch (n->op) {
        case LT_OP_INPUT:
        case LT_OP_PARAM:
        case LT_OP_BUFFER:
            put_escaped(out, n->name ? n->name : "");
            fprintf(out, "\\n%s\"", ts);
            if (n->op == LT_OP_BUFFER) fputs(", style=filled, fillcolor=lightyellow", out);
            else if (n->requires_grad) fputs(", style=filled, fillcolor=lightblue", out);
            else fputs(", style=filled, fillcolor=lightgray", out);
            break;
        case LT_OP_CONST:
            fprintf(out, "const\\n%s", ts);
            if (n->rank == 0) {
                fputs("\\n", out);
                put_scalar(out, n);
            }
            fputs("\", shape=note", out);
            break;
        default:
            fprintf(out, "%s\\n%s\"", lt_ops[n->op].name, ts);
            if (n->no_grad) fputs(", style=dashed", out);
            break;
        }
        fputs("];\n", out);
    }
    for (int i = 0; i < g->nnodes; i++) {
        const lathe_node *n = g->nodes[i];
        for (int k = 0; k < n->nin; k++) fprintf(out, "  n%d -> n%d;\n", n->in[k]->id, n->id);
    }
    for (int i = 0; i < g->nout; i++) {
        fprintf(out, "  out%d [label=\"", i);
        put_escaped(out, g->outputs[i].name);
        fprintf(out, "\", peripheries=2];\n  n%d -> out%d;\n", g->outputs[i].node->id, i);
    }
    for (int i = 0; i < g->nupd; i++)
        fprintf(out, "  n%d -> n%d [style=dashed, label=\"update\", constraint=false];\n",
                g->updates[i].value->id, g->updates[i].buffer->id);
    fputs("}\n", out);
    return ferror(out) ? LATHE_ERR_IO : LATHE_OK;
}
