/* dot.c - Graphviz DOT of a graph, drawn in the direction of the forward pass.
 *
 * Each node is a box labelled "%ID op", its attributes (a pow_scalar's
 * exponent, a convolution's stride and padding, ...) and its type; a leaf
 * shows its tensor name, a constant of at most 4 elements its values.  An
 * edge runs from each operand to its user, so arrows follow the data as in
 * the PyTorch autograd tutorial's DAG figure; an op with several operands
 * numbers its edges in operand order.  As in the tutorial, leaves that
 * require grad are filled light blue; inputs and params that do not are
 * gray, buffers yellow.  Nodes that only gradients need (the backward pass:
 * they reach a "grad." output and no other) are drawn in orange with an
 * orange fill.  Outputs are extra double-bordered boxes named after the
 * output; an update is a dashed edge from the new value back to its buffer.
 * Parameters and the ops that read them are grouped in a box per layer (the
 * parameter's name without its last part: layer1.0.conv1), so a large
 * network reads by its layers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

/* Text inside a quoted DOT string: quotes and backslashes escaped, control
 * characters replaced. */
static void put_escaped(FILE *out, const char *s, size_t n) {
    for (const unsigned char *c = (const unsigned char *)s; n-- && *c; c++) {
        if (*c == '"' || *c == '\\') fprintf(out, "\\%c", *c);
        else if (*c < 0x20 || *c == 0x7f) fputc('?', out);
        else fputc(*c, out);
    }
}

static void put_elem(FILE *out, const lathe_node *n, int64_t i) {
    const unsigned char *p = (const unsigned char *)n->data + (size_t)i * lathe_dtype_size(n->dtype);
    switch (n->dtype) {
    case LATHE_F32: {
        float v;
        memcpy(&v, p, sizeof v);
        fprintf(out, "%.6g", (double)v);
        break;
    }
    case LATHE_F64: {
        double v;
        memcpy(&v, p, sizeof v);
        fprintf(out, "%.6g", v);
        break;
    }
    case LATHE_I64: {
        int64_t v;
        memcpy(&v, p, sizeof v);
        fprintf(out, "%lld", (long long)v);
        break;
    }
    case LATHE_BOOL: fputs(*p ? "true" : "false", out); break;
    }
}

/* The layer a leaf belongs to: its name up to the last '.', or NULL. */
static const char *layer_of(const lathe_node *n, size_t *len) {
    const char *dot = n->name ? strrchr(n->name, '.') : NULL;
    if (!dot || dot == n->name) return NULL;
    *len = (size_t)(dot - n->name);
    return n->name;
}

/* A layer leaf for sorting: its layer name and its id. */
typedef struct {
    const char *s;
    size_t len;
    int id;
} layer_key;

static int by_layer(const void *a, const void *b) {
    const layer_key *x = a, *y = b;
    int c = memcmp(x->s, y->s, x->len < y->len ? x->len : y->len);
    if (c) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* One node's box (indent: inside a cluster). */
static void put_node(FILE *out, const lathe_node *m, const unsigned char *reach, const char *indent) {
    char ts[160];
    lathe_node_type_str(m, ts, sizeof ts);
    fprintf(out, "%s  n%d [label=\"%%%d ", indent, m->id, m->id);
    switch (m->op) {
    case LT_OP_INPUT:
    case LT_OP_PARAM:
    case LT_OP_BUFFER:
        fprintf(out, "%s ", lt_ops[m->op].name);
        put_escaped(out, m->name ? m->name : "", (size_t)-1);
        fprintf(out, "\\n%s\"", ts);
        if (m->op == LT_OP_BUFFER) fputs(", style=filled, fillcolor=lightyellow", out);
        else if (m->requires_grad) fputs(", style=filled, fillcolor=lightblue", out);
        else fputs(", style=filled, fillcolor=lightgray", out);
        break;
    case LT_OP_CONST:
        fprintf(out, "const\\n%s", ts);
        if (m->numel <= 4 && m->data) {
            fputs("\\n", out);
            for (int64_t e = 0; e < m->numel; e++) {
                if (e) fputs(", ", out);
                put_elem(out, m, e);
            }
        }
        fputs("\", shape=note", out);
        break;
    default: {
        fputs(lt_ops[m->op].name, out);
        lt_attrspec spec[LT_MAX_ATTRS];
        int na = lt_op_schema(m->op, spec);
        for (int k = 0; k < na; k++) {
            fprintf(out, "\\n%s=", spec[k].name);
            lt_print_attr(out, spec[k].type, &m->attr[k]);
        }
        fprintf(out, "\\n%s\"", ts);
        if (reach[m->id] == 2) fputs(", color=darkorange, style=filled, fillcolor=\"#fff0e0\"", out);
        else if (m->no_grad) fputs(", style=dashed", out);
        break;
    }
    }
    fputs("];\n", out);
}

lathe_status lathe_graph_print_dot(const lathe_graph *g, FILE *out) {
    if (!g || !out) return LATHE_ERR_ARG;
    int n = g->nnodes;
    /* bit 1: reaches a plain output or update; bit 2: a gradient output */
    unsigned char *reach = calloc((size_t)n + 1, 1);
    int *layer = malloc(((size_t)n + 1) * sizeof *layer); /* node -> the leaf naming its layer, or -1 */
    if (!reach || !layer) {
        free(reach);
        free(layer);
        return LATHE_ERR_NOMEM;
    }
    lt_reach_outputs(g, reach);
    for (int i = 0; i < n; i++) {
        const lathe_node *m = g->nodes[i];
        size_t len = 0;
        layer[i] = -1;
        if (m->op == LT_OP_PARAM || m->op == LT_OP_BUFFER) layer[i] = layer_of(m, &len) ? i : -1;
        for (int k = 0; k < m->nin && layer[i] < 0 && lt_ops[m->op].kind != LT_LEAF; k++)
            if (m->in[k]->op == LT_OP_PARAM && layer_of(m->in[k], &len)) layer[i] = m->in[k]->id;
    }

    /* clusters: the layers' leaves sorted by name, a group per layer name */
    int nl = 0;
    layer_key *leaves = malloc(((size_t)n + 1) * sizeof *leaves);
    int *group = malloc(((size_t)n + 1) * sizeof *group);
    int *count = calloc((size_t)n + 2, sizeof *count), *member = malloc(((size_t)n + 1) * sizeof *member);
    if (!leaves || !group || !count || !member) {
        free(reach), free(layer), free(leaves), free(group), free(count), free(member);
        return LATHE_ERR_NOMEM;
    }
    for (int i = 0; i < n; i++)
        if (layer[i] == i) {
            leaves[nl] = (layer_key){.id = i};
            leaves[nl].s = layer_of(g->nodes[i], &leaves[nl].len);
            nl++;
        }
    if (nl > 1) qsort(leaves, (size_t)nl, sizeof *leaves, by_layer);
    int ngroups = 0;
    for (int k = 0; k < nl; k++) {
        if (k == 0 || leaves[k - 1].len != leaves[k].len || memcmp(leaves[k - 1].s, leaves[k].s, leaves[k].len)) ngroups++;
        group[leaves[k].id] = ngroups - 1;
    }
    /* nodes by group (counting sort, in node order within each), then by first appearance */
    for (int i = 0; i < n; i++)
        if (layer[i] >= 0) count[group[layer[i]] + 1]++;
    for (int k = 0; k < ngroups; k++) count[k + 1] += count[k];
    int *fill = malloc(((size_t)ngroups + 1) * sizeof *fill);
    if (!fill) {
        free(reach), free(layer), free(leaves), free(group), free(count), free(member);
        return LATHE_ERR_NOMEM;
    }
    memcpy(fill, count, (size_t)ngroups * sizeof *fill);
    for (int i = 0; i < n; i++)
        if (layer[i] >= 0) member[fill[group[layer[i]]]++] = i;

    fputs("digraph lathe {\n  rankdir=TB;\n  node [shape=box, fontname=\"Helvetica\"];\n", out);
    for (int i = 0; i < n; i++) {
        if (layer[i] >= 0) {
            int gr = group[layer[i]];
            if (member[count[gr]] != i) continue; /* the cluster is written at its first node */
            size_t llen = 0;
            const char *lname = layer_of(g->nodes[layer[i]], &llen);
            fprintf(out, "  subgraph cluster_%d {\n    label=\"", gr);
            put_escaped(out, lname, llen);
            fputs("\";\n    style=rounded;\n    color=gray60;\n", out);
            for (int k = count[gr]; k < count[gr + 1]; k++) put_node(out, g->nodes[member[k]], reach, "  ");
            fputs("  }\n", out);
        } else {
            put_node(out, g->nodes[i], reach, "");
        }
    }
    free(fill);
    free(leaves);
    free(group);
    free(count);
    free(member);
    for (int i = 0; i < n; i++) {
        const lathe_node *m = g->nodes[i];
        for (int k = 0; k < m->nin; k++) {
            fprintf(out, "  n%d -> n%d", m->in[k]->id, m->id);
            if (m->nin > 1) fprintf(out, " [label=\"%d\"]", k);
            fputs(";\n", out);
        }
    }
    for (int i = 0; i < g->nout; i++) {
        fprintf(out, "  out%d [label=\"", i);
        put_escaped(out, g->outputs[i].name, (size_t)-1);
        fprintf(out, "\", peripheries=2];\n  n%d -> out%d;\n", g->outputs[i].node->id, i);
    }
    for (int i = 0; i < g->nupd; i++)
        fprintf(out, "  n%d -> n%d [style=dashed, label=\"update\", constraint=false];\n",
                g->updates[i].value->id, g->updates[i].buffer->id);
    fputs("}\n", out);
    free(reach);
    free(layer);
    return ferror(out) ? LATHE_ERR_IO : LATHE_OK;
}
