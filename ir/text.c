/* text.c - printer and parser of the text IR.
 *
 * One statement per line ('#' starts a comment):
 *
 *     %0 = input "a" f32[2] grad
 *     %1 = const f32[] 3
 *     %4 = param "wte.weight" f32[256,64] grad init=normal(0.02)
 *     %2 = mul %1, %0 : f32[2]
 *     %3 = sum %2 axes=[0] keepdim=false : f32[]
 *     output "Q" %3
 *     update %buf %val
 *
 * The printer names node i "%i" and writes nodes in id order, which is a
 * topological order, every attribute in schema order and every type.  Floats
 * are printed with the fewest digits that read back to the same bits, so
 * print -> parse -> print is the identity.
 *
 * The parser works in three steps, each over the whole file: read every
 * statement into a table (syntax only; attribute values are checked against
 * the op's schema in ops.h), resolve %names through a hash table, then create
 * nodes by an iterative depth-first walk from each statement in file order,
 * operands first.  That allows forward references, gives a printed file back
 * its ids, finds cycles, and needs no recursion however deep the graph.
 * Nodes are created by lt_make / lt_make_leaf, so the parser applies exactly
 * the shape rules the builders do.  Every error names FILE:LINE:COL and
 * shows the line with a caret under the column, as chibicc and gcc do. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ir.h"

/* ---- printer ------------------------------------------------------------ */

/* The initializers a param or buffer may name, by lathe_leaf_init. */
static const char *const init_names[] = {
    [LATHE_LEAF_INIT_AUTO] = "auto",
    [LATHE_LEAF_INIT_UNIFORM] = "uniform",
    [LATHE_LEAF_INIT_CONST] = "const",
    [LATHE_LEAF_INIT_NORMAL] = "normal",
    [LATHE_LEAF_INIT_SEED] = "seed",
};

/* The shortest of %.15g..%.17g (f64) or %.6g..%.9g (f32) that reads back to
 * the same bits; inf, -inf, nan, -nan as words. */
static void fmt_f64(char *buf, size_t len, double v) {
    if (isnan(v)) snprintf(buf, len, "%s", signbit(v) ? "-nan" : "nan");
    else if (isinf(v)) snprintf(buf, len, "%s", v < 0 ? "-inf" : "inf");
    else
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(buf, len, "%.*g", prec, v);
            double back = strtod(buf, NULL);
            if (memcmp(&back, &v, sizeof v) == 0) break;
        }
}

static void fmt_f32(char *buf, size_t len, float v) {
    if (isnan(v)) snprintf(buf, len, "%s", signbit(v) ? "-nan" : "nan");
    else if (isinf(v)) snprintf(buf, len, "%s", v < 0 ? "-inf" : "inf");
    else
        for (int prec = 6; prec <= 9; prec++) {
            snprintf(buf, len, "%.*g", prec, (double)v);
            float back = strtof(buf, NULL);
            if (memcmp(&back, &v, sizeof v) == 0) break;
        }
}

static void print_string(FILE *out, const char *s) {
    fputc('"', out);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') fprintf(out, "\\%c", *c);
        else if (*c == '\n') fputs("\\n", out);
        else if (*c == '\t') fputs("\\t", out);
        else if (*c < 0x20 || *c == 0x7f) fprintf(out, "\\x%02x", *c);
        else fputc(*c, out);
    }
    fputc('"', out);
}

static void print_type(FILE *out, lathe_dtype t, int rank, const int64_t *shape) {
    fprintf(out, "%s[", lathe_dtype_name(t));
    for (int i = 0; i < rank; i++) fprintf(out, i ? ",%lld" : "%lld", (long long)shape[i]);
    fputc(']', out);
}

/* Element i of a constant. */
static void print_value(FILE *out, lathe_dtype t, const void *data, int64_t i) {
    const unsigned char *p = (const unsigned char *)data + (size_t)i * lathe_dtype_size(t);
    char buf[64];
    switch (t) {
    case LATHE_F32: {
        float v;
        memcpy(&v, p, sizeof v);
        fmt_f32(buf, sizeof buf, v);
        fputs(buf, out);
        break;
    }
    case LATHE_F64: {
        double v;
        memcpy(&v, p, sizeof v);
        fmt_f64(buf, sizeof buf, v);
        fputs(buf, out);
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

void lt_print_attr(FILE *out, lt_atype type, const lt_attr *a) {
    char buf[64];
    switch (type) {
    case LT_A_INT: fprintf(out, "%lld", (long long)a->v[0]); break;
    case LT_A_BOOL: fputs(a->v[0] ? "true" : "false", out); break;
    case LT_A_FLOAT:
        fmt_f64(buf, sizeof buf, a->f);
        fputs(buf, out);
        break;
    case LT_A_LIST:
    case LT_A_PAIR: {
        int n = type == LT_A_PAIR ? 2 : a->n < 0 ? 0 : a->n > LATHE_MAX_RANK ? LATHE_MAX_RANK : a->n;
        fputc('[', out);
        for (int i = 0; i < n; i++) fprintf(out, i ? ",%lld" : "%lld", (long long)a->v[i]);
        fputc(']', out);
        break;
    }
    case LT_A_DTYPE: fputs(lathe_dtype_name((lathe_dtype)a->v[0]), out); break;
    case LT_A_REDUCTION: fputs(lt_reduction_name(a->v[0]), out); break;
    }
}

lathe_status lathe_graph_print(const lathe_graph *g, FILE *out) {
    if (!g || !out) return LATHE_ERR_ARG;
    fputs("# lathe ir\n", out);
    for (int i = 0; i < g->nnodes; i++) {
        const lathe_node *n = g->nodes[i];
        const lt_opinfo *oi = &lt_ops[n->op];
        fprintf(out, "%%%d = %s ", n->id, oi->name);
        if (n->op == LT_OP_CONST) {
            print_type(out, n->dtype, n->rank, n->shape);
            fputc(' ', out);
            if (n->rank == 0) print_value(out, n->dtype, n->data, 0);
            else {
                fputc('[', out);
                for (int64_t k = 0; k < n->numel; k++) {
                    if (k) fputs(", ", out);
                    print_value(out, n->dtype, n->data, k);
                }
                fputc(']', out);
            }
        } else if (oi->kind == LT_LEAF) {
            print_string(out, n->name ? n->name : "");
            fputc(' ', out);
            print_type(out, n->dtype, n->rank, n->shape);
            if ((n->op == LT_OP_INPUT || n->op == LT_OP_PARAM) && n->requires_grad)
                fputs(" grad", out);
            if (n->init != LATHE_LEAF_INIT_AUTO) { /* lathe_set_init's */
                char num[64];
                fmt_f64(num, sizeof num, n->init_a);
                fprintf(out, " init=%s(%s)", init_names[n->init], num);
            }
        } else {
            for (int k = 0; k < n->nin; k++) fprintf(out, k ? ", %%%d" : "%%%d", n->in[k]->id);
            lt_attrspec spec[LT_MAX_ATTRS];
            int na = lt_op_schema(n->op, spec);
            for (int k = 0; k < na; k++) {
                fprintf(out, " %s=", spec[k].name);
                lt_print_attr(out, spec[k].type, &n->attr[k]);
            }
        }
        if (n->no_grad) fputs(" nograd", out);
        if (oi->kind != LT_LEAF) {
            fputs(" : ", out);
            print_type(out, n->dtype, n->rank, n->shape);
        }
        fputc('\n', out);
    }
    for (int i = 0; i < g->nout; i++) {
        fputs("output ", out);
        print_string(out, g->outputs[i].name);
        fprintf(out, " %%%d\n", g->outputs[i].node->id);
    }
    for (int i = 0; i < g->nupd; i++)
        fprintf(out, "update %%%d %%%d\n", g->updates[i].buffer->id, g->updates[i].value->id);
    for (int i = 0; i < g->nmarks; i++) {
        fprintf(out, "backward %%%d", g->marks[i].out->id);
        if (g->marks[i].cot) fprintf(out, " %%%d", g->marks[i].cot->id);
        fputc('\n', out);
    }
    return ferror(out) ? LATHE_ERR_IO : LATHE_OK;
}

char *lathe_graph_to_text(const lathe_graph *g) {
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f) return NULL;
    lathe_status st = lathe_graph_print(g, f);
    if (fclose(f) != 0 || st != LATHE_OK) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* ---- parser: tokens ------------------------------------------------------- */

typedef enum { T_EOF, T_NL, T_NAME, T_IDENT, T_NUM, T_STR, T_PUNCT } tkind;

typedef struct {
    size_t off;     /* byte offset in the source */
    int line, col;  /* 1-based; col counts bytes */
} loc;

typedef struct {
    tkind kind;
    loc at;
    const char *s;  /* T_NAME: after the '%'; T_STR: between the quotes, raw */
    size_t len;
} token;

typedef struct {
    lathe_dtype dtype;
    int rank;
    int64_t shape[LATHE_MAX_RANK];
} ttype;

/* A use of %name: an operand, an output's value, an update's buffer or value. */
typedef struct {
    const char *s;
    size_t len;
    loc at;
    int def;        /* the defining statement, once resolved */
} ref;

typedef enum { S_DEF, S_OUTPUT, S_UPDATE, S_BACKWARD } skind;

typedef struct {
    skind kind;
    lt_op op;
    loc at, opat, annat;  /* statement start, op name, type annotation */
    const char *name;     /* S_DEF: %name without the '%' */
    size_t namelen;
    int ref0, nref;       /* uses in p->refs */
    int attr;             /* index in p->attrs, -1 if the op has none */
    size_t str;           /* tensor or output name: offset in p->pool */
    size_t data;          /* const values: offset in p->pool */
    ttype type;           /* leaves */
    ttype annot;          /* the optional ": TYPE" */
    bool has_annot, grad, nograd;
    lathe_leaf_init init; /* params and buffers: "init=KIND(A)", AUTO if none */
    double init_a;
    loc initat;
    unsigned char state;  /* walk: 0 new, 1 on the stack, 2 made */
    lathe_node *node;
} stmt;

typedef struct {
    lathe_graph *g;
    const char *file, *src;
    size_t len, pos, line_start;
    int line;
    token tok;            /* the current token */
    stmt *st;
    size_t nst, capst;
    ref *refs;
    size_t nrefs, caprefs;
    lt_attr (*attrs)[LT_MAX_ATTRS];
    size_t nattrs, capattrs;
    char *pool;           /* decoded strings and const data */
    size_t npool, cappool;
    int *hash;            /* %name -> defining statement; -1 empty */
    size_t hcap, ndefs;
} parser;

static bool is_digit(int c) { return c >= '0' && c <= '9'; }
static bool is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_namech(int c) { return is_alpha(c) || is_digit(c) || c == '.'; }
static bool is_numch(int c) { return is_namech(c) || c == '+' || c == '-'; }

void lt_show_line(const char *s, size_t len, size_t off, char *line, char *caret, size_t cap) {
    if (off > len) off = len;
    size_t b = off, e = off;
    while (b > 0 && s[b - 1] != '\n') b--;
    while (e < len && s[e] != '\n') e++;
    if (e > b && s[e - 1] == '\r') e--;
    size_t width = cap - 8, from = b, to = e;
    bool pre = false, post = false;
    if (to - from > width) {
        if (off - b > width / 2) {
            from = off - width / 2;
            pre = true;
        }
        if (to - from > width) {
            to = from + width;
            post = true;
        }
    }
    size_t k = 0, c = 0;
    if (pre) {
        memcpy(line, "...", 3);
        memcpy(caret, "   ", 3);
        k = c = 3;
    }
    for (size_t i = from; i < to; i++) {
        unsigned char ch = (unsigned char)s[i];
        line[k++] = (char)(ch == '\t' || (ch >= 0x20 && ch < 0x7f) ? ch : '?');
        if (i < off) caret[c++] = ch == '\t' ? '\t' : ' ';
    }
    if (post) {
        memcpy(line + k, "...", 3);
        k += 3;
    }
    line[k] = 0;
    caret[c++] = '^';
    caret[c] = 0;
}

char *lt_read_all(FILE *f, size_t *len) {
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (cap - n < 65536) {
            cap = cap ? 2 * cap : 65536;
            char *q = cap <= SIZE_MAX / 2 ? realloc(buf, cap) : NULL;
            if (!q) {
                free(buf);
                return NULL;
            }
            buf = q;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    *len = n;
    return buf;
}

lathe_status lt_read_file(lathe_graph *g, const char *path, char **buf, size_t *len) {
    *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return lt_fail(g, LATHE_ERR_IO, "%s: %s", path, strerror(errno)), LATHE_ERR_IO;
    char *b = lt_read_all(f, len);
    int e = b && ferror(f) ? errno : 0;
    fclose(f);
    if (!b) return lt_fail(g, LATHE_ERR_NOMEM, "%s: out of memory", path), LATHE_ERR_NOMEM;
    if (e) {
        free(b);
        return lt_fail(g, LATHE_ERR_IO, "%s: %s", path, strerror(e)), LATHE_ERR_IO;
    }
    *buf = b;
    return LATHE_OK;
}

/* Record "FILE:LINE:COL: message" plus the line and a caret; returns false. */
static bool errv(parser *p, lathe_status st, loc at, const char *fmt, va_list ap) {
    char msg[sizeof p->g->err], line[200], caret[200];
    vsnprintf(msg, sizeof msg, fmt, ap);
    lt_show_line(p->src, p->len, at.off, line, caret, sizeof line);
    lt_fail(p->g, st, "%s:%d:%d: %s\n  %s\n  %s", p->file, at.line, at.col, msg, line, caret);
    return false;
}

static bool err(parser *p, lathe_status st, loc at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool err(parser *p, lathe_status st, loc at, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    errv(p, st, at, fmt, ap);
    va_end(ap);
    return false;
}

static bool oom(parser *p) {
    lt_fail(p->g, LATHE_ERR_NOMEM, "%s: out of memory", p->file);
    return false;
}

/* Grow an array to hold need elements; NULL (error recorded) when out of memory. */
static void *grow(parser *p, void *arr, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return arr;
    size_t c = *cap ? *cap : 16;
    while (c < need) {
        if (c > SIZE_MAX / 4 / elem) return oom(p), NULL;
        c *= 2;
    }
    void *q = realloc(arr, c * elem);
    if (!q) return oom(p), NULL;
    *cap = c;
    return q;
}

static bool reserve_pool(parser *p, size_t more) {
    if (more > SIZE_MAX / 4 - p->npool) return oom(p);
    if (p->npool + more <= p->cappool) return true;
    char *q = grow(p, p->pool, &p->cappool, p->npool + more, 1);
    if (!q) return false;
    p->pool = q;
    return true;
}

/* Read the next token into p->tok. */
static bool next(parser *p) {
    const char *s = p->src;
    size_t n = p->len, i = p->pos;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r')) i++;
    if (i < n && s[i] == '#')
        while (i < n && s[i] != '\n') i++;
    token t = {.at = {i, p->line, (int)(i - p->line_start) + 1}, .s = s + i};
    if (i >= n) {
        t.kind = T_EOF;
    } else {
        unsigned char c = (unsigned char)s[i];
        size_t j = i + 1;
        if (c == '\n') {
            t.kind = T_NL;
            p->line++;
            p->line_start = j;
        } else if (c == '%') {
            while (j < n && is_namech((unsigned char)s[j])) j++;
            if (j == i + 1) return err(p, LATHE_ERR_PARSE, t.at, "expected a name after '%%'");
            t.kind = T_NAME;
            t.s++;
        } else if (is_alpha(c)) {
            while (j < n && (is_alpha((unsigned char)s[j]) || is_digit((unsigned char)s[j]))) j++;
            t.kind = T_IDENT;
        } else if (is_digit(c) ||
                   ((c == '-' || c == '+' || c == '.') && j < n && is_namech((unsigned char)s[j]))) {
            while (j < n && is_numch((unsigned char)s[j])) j++;
            t.kind = T_NUM;
        } else if (c == '"') {
            while (j < n && s[j] != '"' && s[j] != '\n')
                j += s[j] == '\\' && j + 1 < n && s[j + 1] != '\n' ? 2 : 1;
            if (j >= n || s[j] != '"') return err(p, LATHE_ERR_PARSE, t.at, "unterminated string");
            t.kind = T_STR;
            t.s++;
            j++;
        } else if (c == '=' || c == ',' || c == '[' || c == ']' || c == ':' || c == '(' || c == ')') {
            t.kind = T_PUNCT;
        } else if (c > 0x20 && c < 0x7f) {
            return err(p, LATHE_ERR_PARSE, t.at, "unexpected character '%c'", c);
        } else {
            return err(p, LATHE_ERR_PARSE, t.at, "unexpected byte 0x%02x", c);
        }
        t.len = t.kind == T_NAME ? j - i - 1 : t.kind == T_STR ? j - i - 2 : j - i;
        i = j;
    }
    p->pos = i;
    p->tok = t;
    return true;
}

/* "'%x'", "'add'", "end of line" ... for messages */
static const char *describe(const token *t, char *buf, size_t len) {
    switch (t->kind) {
    case T_EOF: return "end of file";
    case T_NL: return "end of line";
    case T_STR: return "a string";
    default: break;
    }
    int n = t->len > 40 ? 40 : (int)t->len;
    snprintf(buf, len, "'%s%.*s%s'", t->kind == T_NAME ? "%" : "", n, t->s, t->len > 40 ? "..." : "");
    return buf;
}

static bool expected(parser *p, const char *what) {
    char b[64];
    if (p->tok.kind == T_EOF)
        return err(p, LATHE_ERR_PARSE, p->tok.at, "unexpected end of file, expected %s", what);
    if (p->tok.kind == T_NL)
        return err(p, LATHE_ERR_PARSE, p->tok.at, "unexpected end of line, expected %s", what);
    return err(p, LATHE_ERR_PARSE, p->tok.at, "expected %s, got %s", what, describe(&p->tok, b, sizeof b));
}

static bool is_punct(const parser *p, char c) { return p->tok.kind == T_PUNCT && p->tok.s[0] == c; }

static bool is_word(const token *t, const char *w) {
    return t->kind == T_IDENT && t->len == strlen(w) && memcmp(t->s, w, t->len) == 0;
}

static bool end_of_stmt(const parser *p) { return p->tok.kind == T_NL || p->tok.kind == T_EOF; }

/* ---- parser: values ----------------------------------------------------------- */

static bool num_text(parser *p, char *buf, size_t len) {
    char b[64];
    if (p->tok.len >= len)
        return err(p, LATHE_ERR_PARSE, p->tok.at, "number %s is too long", describe(&p->tok, b, sizeof b));
    memcpy(buf, p->tok.s, p->tok.len);
    buf[p->tok.len] = 0;
    return true;
}

static bool parse_int(parser *p, int64_t *out, const char *what) {
    char buf[128], b[64];
    if (p->tok.kind != T_NUM) return expected(p, what);
    if (!num_text(p, buf, sizeof buf)) return false;
    const char *d = buf + (buf[0] == '-' || buf[0] == '+');
    bool ok = *d != 0;
    for (const char *c = d; *c; c++) ok = ok && is_digit((unsigned char)*c);
    if (!ok) return expected(p, what);
    errno = 0;
    char *end;
    long long v = strtoll(buf, &end, 10);
    if (errno == ERANGE || *end)
        return err(p, LATHE_ERR_PARSE, p->tok.at, "integer %s is out of range for int64",
                   describe(&p->tok, b, sizeof b));
    *out = v;
    return next(p);
}

/* A float of dtype t (f32 is read with strtof, so it is rounded once) into out. */
static bool parse_float(parser *p, lathe_dtype t, void *out, const char *what) {
    char buf[512], b[64];
    bool word = is_word(&p->tok, "inf") || is_word(&p->tok, "nan");
    if (p->tok.kind != T_NUM && !word) return expected(p, what);
    if (!num_text(p, buf, sizeof buf)) return false;
    bool neg = buf[0] == '-';
    const char *body = buf + (buf[0] == '-' || buf[0] == '+');
    float f = 0;
    double d = 0;
    if (strcmp(body, "inf") == 0 || strcmp(body, "nan") == 0) {
        f = copysignf(body[0] == 'i' ? INFINITY : NAN, neg ? -1.0f : 1.0f);
        d = copysign(body[0] == 'i' ? (double)INFINITY : (double)NAN, neg ? -1.0 : 1.0);
    } else {
        bool ok = is_digit((unsigned char)body[0]) || body[0] == '.';
        for (const char *c = body; *c; c++) ok = ok && strchr("0123456789.eE+-", *c);
        if (!ok) return expected(p, what);
        errno = 0;
        char *end;
        bool range;
        if (t == LATHE_F32) {
            f = strtof(buf, &end);
            range = errno == ERANGE && isinf(f);
        } else {
            d = strtod(buf, &end);
            range = errno == ERANGE && isinf(d);
        }
        if (*end)
            return err(p, LATHE_ERR_PARSE, p->tok.at, "malformed number %s", describe(&p->tok, b, sizeof b));
        if (range)
            return err(p, LATHE_ERR_PARSE, p->tok.at, "%s is out of range for %s",
                       describe(&p->tok, b, sizeof b), lathe_dtype_name(t));
    }
    if (t == LATHE_F32) memcpy(out, &f, sizeof f);
    else memcpy(out, &d, sizeof d);
    return next(p);
}

static bool parse_bool(parser *p, bool *out, const char *what) {
    if (is_word(&p->tok, "true")) *out = true;
    else if (is_word(&p->tok, "false")) *out = false;
    else return expected(p, what);
    return next(p);
}

static bool dtype_of(const token *t, lathe_dtype *out) {
    static const lathe_dtype all[] = {LATHE_F32, LATHE_F64, LATHE_I64, LATHE_BOOL};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (is_word(t, lathe_dtype_name(all[i]))) {
            *out = all[i];
            return true;
        }
    return false;
}

static bool parse_dtype(parser *p, lathe_dtype *out, const char *what) {
    char b[64];
    if (p->tok.kind != T_IDENT) return expected(p, what);
    if (!dtype_of(&p->tok, out))
        return err(p, LATHE_ERR_PARSE, p->tok.at, "unknown dtype %s (expected f32, f64, i64 or bool)",
                   describe(&p->tok, b, sizeof b));
    return next(p);
}

/* "f32[2,3]", "bool[]" */
static bool parse_type(parser *p, ttype *t) {
    if (!parse_dtype(p, &t->dtype, "a type such as f32[2,3]")) return false;
    if (!is_punct(p, '[')) return expected(p, "'[' after the dtype");
    if (!next(p)) return false;
    t->rank = 0;
    if (is_punct(p, ']')) return next(p);
    for (;;) {
        loc at = p->tok.at;
        int64_t d;
        if (!parse_int(p, &d, "an integer dimension")) return false;
        if (t->rank == LATHE_MAX_RANK)
            return err(p, LATHE_ERR_SHAPE, at, "rank exceeds the maximum of %d dimensions", LATHE_MAX_RANK);
        if (d > LT_MAX_NUMEL)
            return err(p, LATHE_ERR_SHAPE, at, "dimension %lld exceeds the limit of 2^48 elements",
                       (long long)d);
        t->shape[t->rank++] = d;
        if (is_punct(p, ']')) return next(p);
        if (!is_punct(p, ',')) return expected(p, "',' or ']' in the shape");
        if (!next(p)) return false;
    }
}

/* "[1,2,3]" with at most max integers */
static bool parse_int_list(parser *p, int64_t *v, int *n, int max, const char *attr) {
    char what[64];
    snprintf(what, sizeof what, "'[' to start the list of %s", attr);
    if (!is_punct(p, '[')) return expected(p, what);
    if (!next(p)) return false;
    *n = 0;
    if (is_punct(p, ']')) return next(p);
    snprintf(what, sizeof what, "an integer in %s", attr);
    for (;;) {
        loc at = p->tok.at;
        int64_t x;
        if (!parse_int(p, &x, what)) return false;
        if (*n == max) return err(p, LATHE_ERR_PARSE, at, "%s takes at most %d values", attr, max);
        v[(*n)++] = x;
        if (is_punct(p, ']')) return next(p);
        if (!is_punct(p, ',')) return expected(p, "',' or ']' in the list");
        if (!next(p)) return false;
    }
}

static bool parse_attr(parser *p, const lt_attrspec *spec, lt_attr *a) {
    char what[80];
    const char *name = spec->name;
    bool b;
    switch (spec->type) {
    case LT_A_INT:
        snprintf(what, sizeof what, "an integer for '%s'", name);
        return parse_int(p, &a->v[0], what);
    case LT_A_BOOL:
        snprintf(what, sizeof what, "true or false for '%s'", name);
        if (!parse_bool(p, &b, what)) return false;
        a->v[0] = b;
        return true;
    case LT_A_FLOAT:
        snprintf(what, sizeof what, "a number for '%s'", name);
        return parse_float(p, LATHE_F64, &a->f, what);
    case LT_A_LIST: return parse_int_list(p, a->v, &a->n, LATHE_MAX_RANK, name);
    case LT_A_PAIR: {
        loc at = p->tok.at;
        if (!parse_int_list(p, a->v, &a->n, 2, name)) return false;
        if (a->n != 2)
            return err(p, LATHE_ERR_PARSE, at, "%s takes 2 values [h,w], got %d", name, a->n);
        return true;
    }
    case LT_A_DTYPE: {
        lathe_dtype t;
        snprintf(what, sizeof what, "a dtype for '%s'", name);
        if (!parse_dtype(p, &t, what)) return false;
        a->v[0] = t;
        return true;
    }
    case LT_A_REDUCTION:
        for (int r = LATHE_REDUCE_NONE; r <= LATHE_REDUCE_SUM; r++)
            if (is_word(&p->tok, lt_reduction_name(r))) {
                a->v[0] = r;
                return next(p);
            }
        snprintf(what, sizeof what, "none, mean or sum for '%s'", name);
        return expected(p, what);
    }
    LT_ASSERT(!"attribute type");
    return false;
}

/* One const value of dtype t, appended to the pool. */
static bool parse_value(parser *p, lathe_dtype t) {
    size_t size = lathe_dtype_size(t);
    if (!reserve_pool(p, size)) return false;
    unsigned char *out = (unsigned char *)p->pool + p->npool;
    switch (t) {
    case LATHE_F32:
    case LATHE_F64:
        if (!parse_float(p, t, out, t == LATHE_F32 ? "an f32 value" : "an f64 value")) return false;
        break;
    case LATHE_I64: {
        int64_t v;
        if (!parse_int(p, &v, "an i64 value (an integer)")) return false;
        memcpy(out, &v, sizeof v);
        break;
    }
    case LATHE_BOOL: {
        bool v;
        if (!parse_bool(p, &v, "a bool value (true or false)")) return false;
        memcpy(out, &v, sizeof v);
        break;
    }
    }
    p->npool += size;
    return true;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decode the current string token into the pool; *off is where it starts. */
static bool parse_string(parser *p, size_t *off) {
    const token *t = &p->tok;
    if (!reserve_pool(p, t->len + 1)) return false;
    char *o = p->pool + p->npool;
    for (size_t i = 0; i < t->len; i++) {
        unsigned char c = (unsigned char)t->s[i];
        loc at = {t->at.off + 1 + i, t->at.line, t->at.col + 1 + (int)i};
        if (c < 0x20 || c == 0x7f) {
            if (c != '\t')
                return err(p, LATHE_ERR_PARSE, at,
                           "control character 0x%02x in a string; write it as \\x%02x", c, c);
        }
        if (c != '\\') {
            *o++ = (char)c;
            continue;
        }
        unsigned char e = i + 1 < t->len ? (unsigned char)t->s[++i] : 0;
        int h1, h2;
        switch (e) {
        case '\\': *o++ = '\\'; break;
        case '"': *o++ = '"'; break;
        case 'n': *o++ = '\n'; break;
        case 't': *o++ = '\t'; break;
        case 'x':
            h1 = i + 1 < t->len ? hex_digit(t->s[i + 1]) : -1;
            h2 = i + 2 < t->len ? hex_digit(t->s[i + 2]) : -1;
            if (h1 < 0 || h2 < 0 || h1 * 16 + h2 == 0)
                return err(p, LATHE_ERR_PARSE, at, "bad escape: \\x needs two hex digits, not 00");
            *o++ = (char)(h1 * 16 + h2);
            i += 2;
            break;
        default:
            if (e > 0x20 && e < 0x7f)
                return err(p, LATHE_ERR_PARSE, at,
                           "unknown escape '\\%c' (use \\\\, \\\", \\n, \\t or \\xHH)", e);
            return err(p, LATHE_ERR_PARSE, at, "unknown escape (use \\\\, \\\", \\n, \\t or \\xHH)");
        }
    }
    *o++ = 0;
    *off = p->npool;
    p->npool = (size_t)(o - p->pool);
    return next(p);
}

/* ---- parser: statements ---------------------------------------------------------- */

static bool add_ref(parser *p) {
    ref *q = grow(p, p->refs, &p->caprefs, p->nrefs + 1, sizeof *q);
    if (!q) return false;
    p->refs = q;
    p->refs[p->nrefs++] = (ref){p->tok.s, p->tok.len, p->tok.at, -1};
    return next(p);
}

static uint64_t hash_name(const char *s, size_t n) {
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

/* The slot holding %name, or the empty slot where it would go. */
static int *slot_of(parser *p, const char *s, size_t n) {
    size_t i = hash_name(s, n) & (p->hcap - 1);
    for (;; i = (i + 1) & (p->hcap - 1)) {
        int d = p->hash[i];
        if (d < 0 || (p->st[d].namelen == n && memcmp(p->st[d].name, s, n) == 0)) return &p->hash[i];
    }
}

static bool define(parser *p, int si) {
    if (2 * (p->ndefs + 1) > p->hcap) {
        size_t cap = p->hcap ? 2 * p->hcap : 256;
        int *h = malloc(cap * sizeof *h), *old = p->hash;
        if (!h) return oom(p);
        for (size_t i = 0; i < cap; i++) h[i] = -1;
        size_t oldcap = p->hcap;
        p->hash = h;
        p->hcap = cap;
        for (size_t i = 0; i < oldcap; i++)
            if (old[i] >= 0) *slot_of(p, p->st[old[i]].name, p->st[old[i]].namelen) = old[i];
        free(old);
    }
    stmt *s = &p->st[si];
    int *slot = slot_of(p, s->name, s->namelen);
    if (*slot >= 0) {
        const stmt *first = &p->st[*slot];
        return err(p, LATHE_ERR_NAME, s->at,
                   "%%%.*s is already defined (first definition at line %d, column %d)", (int)s->namelen,
                   s->name, first->at.line, first->at.col);
    }
    *slot = si;
    p->ndefs++;
    return true;
}

static bool push_stmt(parser *p, const stmt *s) {
    stmt *q = grow(p, p->st, &p->capst, p->nst + 1, sizeof *q);
    if (!q) return false;
    p->st = q;
    p->st[p->nst++] = *s;
    if (p->nst > INT_MAX / 2) return err(p, LATHE_ERR_PARSE, s->at, "too many statements");
    return s->kind == S_DEF ? define(p, (int)p->nst - 1) : true;
}

/* Attribute names and value forms of op, for messages: "axes=[INTS] keepdim=true|false". */
static const char *attr_list(lt_op op, char *buf, size_t len) {
    lt_attrspec spec[LT_MAX_ATTRS];
    int na = lt_op_schema(op, spec);
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < na && k < len; i++) {
        const char *form = "";
        switch (spec[i].type) {
        case LT_A_INT: form = "INT"; break;
        case LT_A_BOOL: form = "true|false"; break;
        case LT_A_FLOAT: form = "NUMBER"; break;
        case LT_A_LIST: form = "[INTS]"; break;
        case LT_A_PAIR: form = "[INT,INT]"; break;
        case LT_A_DTYPE: form = "f32|f64|i64|bool"; break;
        case LT_A_REDUCTION: form = "none|mean|sum"; break;
        }
        int w = snprintf(buf + k, len - k, "%s%s=%s", i ? " " : "", spec[i].name, form);
        k += w > 0 ? (size_t)w : 0;
    }
    return buf;
}

/* Operands and attributes of a non-leaf op. */
static bool parse_operation(parser *p, stmt *s) {
    const char *on = lt_ops[s->op].name;
    s->ref0 = (int)p->nrefs;
    if (p->tok.kind == T_NAME)
        for (;;) {
            if (!add_ref(p)) return false;
            s->nref++;
            if (!is_punct(p, ',')) break;
            if (!next(p)) return false;
            if (p->tok.kind != T_NAME) return expected(p, "an operand (%name) after ','");
        }
    lt_attrspec spec[LT_MAX_ATTRS];
    int na = lt_op_schema(s->op, spec);
    lt_attr a[LT_MAX_ATTRS];
    memset(a, 0, sizeof a);
    bool seen[LT_MAX_ATTRS] = {0};
    char list[200], b[64];
    while (p->tok.kind == T_IDENT && !is_word(&p->tok, "nograd") && !is_word(&p->tok, "grad")) {
        int k = 0;
        while (k < na && !(strlen(spec[k].name) == p->tok.len &&
                           memcmp(spec[k].name, p->tok.s, p->tok.len) == 0))
            k++;
        if (k == na) {
            if (na == 0)
                return err(p, LATHE_ERR_PARSE, p->tok.at, "unknown attribute %s: %s has no attributes",
                           describe(&p->tok, b, sizeof b), on);
            return err(p, LATHE_ERR_PARSE, p->tok.at, "unknown attribute %s for %s (it has %s)",
                       describe(&p->tok, b, sizeof b), on, attr_list(s->op, list, sizeof list));
        }
        if (seen[k]) return err(p, LATHE_ERR_PARSE, p->tok.at, "attribute '%s' given twice", spec[k].name);
        seen[k] = true;
        if (!next(p)) return false;
        if (!is_punct(p, '=')) return expected(p, "'=' after the attribute name");
        if (!next(p) || !parse_attr(p, &spec[k], &a[k])) return false;
    }
    for (int k = 0; k < na; k++)
        if (!seen[k])
            return err(p, LATHE_ERR_PARSE, s->opat, "%s: missing attribute '%s' (%s takes %s)", on,
                       spec[k].name, on, attr_list(s->op, list, sizeof list));
    if (na > 0) {
        lt_attr(*q)[LT_MAX_ATTRS] = grow(p, p->attrs, &p->capattrs, p->nattrs + 1, sizeof *q);
        if (!q) return false;
        p->attrs = q;
        memcpy(p->attrs[p->nattrs], a, sizeof a);
        s->attr = (int)p->nattrs++;
    }
    return true;
}

/* input/param/buffer: "NAME" TYPE; const: TYPE VALUE or TYPE [VALUES] */
static bool parse_leaf(parser *p, stmt *s) {
    if (s->op != LT_OP_CONST) {
        if (p->tok.kind != T_STR) return expected(p, "the tensor name as a string, e.g. \"fc.weight\"");
        return parse_string(p, &s->str) && parse_type(p, &s->type);
    }
    if (!parse_type(p, &s->type)) return false;
    lathe_dtype t = s->type.dtype;
    p->npool = (p->npool + 15) & ~(size_t)15;
    if (!reserve_pool(p, 0)) return false;
    s->data = p->npool;
    loc at = p->tok.at;
    int64_t nvals = 0;
    if (s->type.rank == 0) {
        if (is_punct(p, '['))
            return err(p, LATHE_ERR_PARSE, at, "a rank-0 const takes one value without brackets");
        if (!parse_value(p, t)) return false;
        nvals = 1;
    } else {
        if (!is_punct(p, '[')) return expected(p, "'[' and the const's values");
        if (!next(p)) return false;
        if (!is_punct(p, ']'))
            for (;;) {
                if (!parse_value(p, t)) return false;
                nvals++;
                if (is_punct(p, ']')) break;
                if (!is_punct(p, ',')) return expected(p, "',' or ']' after a value");
                if (!next(p)) return false;
            }
        if (!next(p)) return false;
    }
    int64_t numel = lt_numel(s->type.rank, s->type.shape);
    if (numel >= 0 && numel != nvals) {
        char ts[160];
        lt_type_str(t, s->type.rank, s->type.shape, ts, sizeof ts);
        return err(p, LATHE_ERR_SHAPE, at, "const %s needs %lld value%s, got %lld", ts, (long long)numel,
                   numel == 1 ? "" : "s", (long long)nvals);
    }
    return true;
}

/* "init=uniform(A)", "init=const(V)" or "init=normal(STD)"; the values are
 * checked by lathe_set_init when the node is made. */
static bool parse_init(parser *p, stmt *s) {
    s->initat = p->tok.at;
    if (!next(p)) return false;
    if (!is_punct(p, '=')) return expected(p, "'=' after init");
    if (!next(p)) return false;
    int k = LATHE_LEAF_INIT_UNIFORM;
    while (k <= LATHE_LEAF_INIT_SEED && !is_word(&p->tok, init_names[k])) k++;
    if (k > LATHE_LEAF_INIT_SEED) return expected(p, "an initializer: uniform(A), const(V), normal(STD) or seed(0)");
    s->init = (lathe_leaf_init)k;
    if (!next(p)) return false;
    if (!is_punct(p, '(')) return expected(p, "'(' and the initializer's number");
    if (!next(p) || !parse_float(p, LATHE_F64, &s->init_a, "the initializer's number")) return false;
    if (!is_punct(p, ')')) return expected(p, "')' after the initializer's number");
    return next(p);
}

/* "%name = OP ..." */
static bool parse_def(parser *p) {
    stmt s = {.kind = S_DEF, .at = p->tok.at, .name = p->tok.s, .namelen = p->tok.len, .attr = -1};
    char b[64];
    if (!next(p)) return false;
    if (!is_punct(p, '=')) return expected(p, "'=' after the name");
    if (!next(p)) return false;
    if (p->tok.kind != T_IDENT) return expected(p, "an op name");
    int op = lt_op_lookup(p->tok.s, p->tok.len);
    if (op < 0) return err(p, LATHE_ERR_PARSE, p->tok.at, "unknown op %s", describe(&p->tok, b, sizeof b));
    s.op = (lt_op)op;
    s.opat = p->tok.at;
    if (!next(p)) return false;
    bool leaf = lt_ops[op].kind == LT_LEAF;
    if (!(leaf ? parse_leaf(p, &s) : parse_operation(p, &s))) return false;
    for (;;) {
        if (is_word(&p->tok, "nograd")) s.nograd = true;
        else if (is_word(&p->tok, "grad")) {
            if (s.op != LT_OP_INPUT && s.op != LT_OP_PARAM)
                return err(p, LATHE_ERR_ARG, p->tok.at,
                           "%s cannot take 'grad': only inputs and params require grad", lt_ops[op].name);
            s.grad = true;
        } else if (is_word(&p->tok, "init")) {
            if (s.op != LT_OP_PARAM && s.op != LT_OP_BUFFER)
                return err(p, LATHE_ERR_ARG, p->tok.at,
                           "%s cannot take 'init': only params and buffers are initialized", lt_ops[op].name);
            if (!parse_init(p, &s)) return false;
            continue;
        } else break;
        if (!next(p)) return false;
    }
    if (is_punct(p, ':')) {
        if (!next(p)) return false;
        s.annat = p->tok.at;
        if (!parse_type(p, &s.annot)) return false;
        s.has_annot = true;
    }
    if (!end_of_stmt(p))
        return expected(p, s.has_annot ? "end of line"
                           : s.op == LT_OP_PARAM || s.op == LT_OP_BUFFER ? "'init=...', 'nograd', ': TYPE' or end of line"
                           : leaf ? "'nograd', ': TYPE' or end of line"
                           : s.nref && s.attr < 0 ? "',', an attribute, 'nograd', ': TYPE' or end of line"
                                                : "an attribute, 'nograd', ': TYPE' or end of line");
    return push_stmt(p, &s);
}

/* output "NAME" %value | update %buffer %value */
static bool parse_statement(parser *p) {
    if (p->tok.kind == T_NAME) return parse_def(p);
    stmt s = {.at = p->tok.at, .attr = -1, .ref0 = (int)p->nrefs};
    if (is_word(&p->tok, "output")) {
        s.kind = S_OUTPUT;
        if (!next(p)) return false;
        if (p->tok.kind != T_STR) return expected(p, "the output name as a string");
        if (!parse_string(p, &s.str)) return false;
        if (p->tok.kind != T_NAME) return expected(p, "the output's value (%name)");
        if (!add_ref(p)) return false;
        s.nref = 1;
    } else if (is_word(&p->tok, "update")) {
        s.kind = S_UPDATE;
        if (!next(p)) return false;
        if (p->tok.kind != T_NAME) return expected(p, "the buffer (%name) to update");
        if (!add_ref(p)) return false;
        if (p->tok.kind != T_NAME) return expected(p, "the buffer's new value (%name)");
        if (!add_ref(p)) return false;
        s.nref = 2;
    } else if (is_word(&p->tok, "backward")) {
        s.kind = S_BACKWARD;
        if (!next(p)) return false;
        if (p->tok.kind != T_NAME) return expected(p, "the value (%name) to differentiate");
        if (!add_ref(p)) return false;
        s.nref = 1;
        if (p->tok.kind == T_NAME) {
            if (!add_ref(p)) return false;
            s.nref = 2;
        }
    } else {
        return expected(p, "a statement ('%name = op ...', 'output', 'update' or 'backward')");
    }
    if (!end_of_stmt(p)) return expected(p, "end of line");
    return push_stmt(p, &s);
}

static bool parse_all(parser *p) {
    if (!next(p)) return false;
    while (p->tok.kind != T_EOF) {
        if (p->tok.kind == T_NL) {
            if (!next(p)) return false;
        } else if (!parse_statement(p)) {
            return false;
        }
    }
    return true;
}

/* ---- parser: names and nodes ----------------------------------------------------- */

static bool resolve(parser *p) {
    for (size_t i = 0; i < p->nrefs; i++) {
        ref *r = &p->refs[i];
        int *slot = p->hcap ? slot_of(p, r->s, r->len) : NULL;
        if (!slot || *slot < 0)
            return err(p, LATHE_ERR_NAME, r->at, "undefined name %%%.*s", (int)r->len, r->s);
        r->def = *slot;
    }
    return true;
}

/* Take the error lt_make recorded and record it again with the location. */
static bool relocate(parser *p, loc at) {
    char msg[sizeof p->g->err];
    lathe_status st = lt_take_error(p->g, msg);
    return err(p, st, at, "%s", msg);
}

static bool make_node(parser *p, stmt *s, lathe_node **ins) {
    lathe_graph *g = p->g;
    lathe_node *n;
    g->cur_line = s->at.line;
    g->cur_col = s->at.col;
    if (lt_ops[s->op].kind == LT_LEAF) {
        bool c = s->op == LT_OP_CONST;
        n = lt_make_leaf(g, s->op, c ? NULL : p->pool + s->str, s->type.dtype, s->type.rank, s->type.shape,
                         s->grad, c && p->pool ? p->pool + s->data : NULL);
    } else {
        for (int k = 0; k < s->nref; k++) ins[k] = p->st[p->refs[s->ref0 + k].def].node;
        n = lt_make(g, s->op, s->nref, ins, s->attr >= 0 ? p->attrs[s->attr] : NULL);
    }
    g->cur_line = g->cur_col = 0;
    if (!n) return relocate(p, s->opat);
    if (s->init != LATHE_LEAF_INIT_AUTO && lathe_set_init(n, s->init, s->init_a) != LATHE_OK) return relocate(p, s->initat);
    n->no_grad = s->nograd;
    s->node = n;
    const ttype *a = &s->annot;
    if (s->has_annot && (a->dtype != n->dtype || a->rank != n->rank ||
                         memcmp(a->shape, n->shape, sizeof(int64_t) * (size_t)n->rank) != 0)) {
        char want[160], have[160];
        lt_type_str(a->dtype, a->rank, a->shape, want, sizeof want);
        lathe_node_type_str(n, have, sizeof have);
        return err(p, a->dtype != n->dtype ? LATHE_ERR_DTYPE : LATHE_ERR_SHAPE, s->annat,
                   "type annotation %s does not match the inferred type %s", want, have);
    }
    return true;
}

typedef struct {
    int st, k;  /* statement, next operand to visit */
} frame;

/* The cycle closed by a use of stack[j]'s statement from the top of the stack. */
static bool cycle(parser *p, const frame *stack, int j, int sp, const ref *r) {
    char chain[600];
    size_t k = 0;
    int n = sp - j;
    for (int q = j; q <= sp && k < sizeof chain; q++) {
        if (n > 12 && q == j + 6) {
            k += (size_t)snprintf(chain + k, sizeof chain - k, " -> ...");
            q = sp - 6; /* the last five, then the closing name */
            continue;
        }
        const stmt *s = &p->st[q < sp ? stack[q].st : stack[j].st];
        int w = snprintf(chain + k, sizeof chain - k, "%s%%%.*s", q > j ? " -> " : "",
                         (int)(s->namelen > 60 ? 60 : s->namelen), s->name);
        k += w > 0 ? (size_t)w : 0;
    }
    return err(p, LATHE_ERR_CYCLE, r->at, "cycle: %s", chain);
}

/* Create every node, operands first, by a depth-first walk with an explicit stack. */
static bool make_all(parser *p) {
    int maxin = 1;
    for (size_t i = 0; i < p->nst; i++)
        if (p->st[i].nref > maxin) maxin = p->st[i].nref;
    frame *stack = malloc((p->nst + 1) * sizeof *stack);
    lathe_node **ins = malloc((size_t)maxin * sizeof *ins);
    bool ok = stack && ins;
    if (!ok) oom(p);
    for (size_t i = 0; ok && i < p->nst; i++) {
        if (p->st[i].kind != S_DEF || p->st[i].state == 2) continue;
        int sp = 0;
        stack[sp++] = (frame){(int)i, 0};
        p->st[i].state = 1;
        while (ok && sp > 0) {
            frame *f = &stack[sp - 1];
            stmt *s = &p->st[f->st];
            if (f->k < s->nref) {
                const ref *r = &p->refs[s->ref0 + f->k++];
                stmt *d = &p->st[r->def];
                if (d->state == 1) {
                    int j = sp - 1;
                    while (stack[j].st != r->def) j--;
                    ok = cycle(p, stack, j, sp, r);
                } else if (d->state == 0) {
                    d->state = 1;
                    stack[sp++] = (frame){r->def, 0};
                }
                continue;
            }
            ok = make_node(p, s, ins);
            s->state = 2;
            sp--;
        }
    }
    free(stack);
    free(ins);
    return ok;
}

/* Outputs and updates, in file order. */
static bool finish(parser *p) {
    for (size_t i = 0; i < p->nst; i++) {
        const stmt *s = &p->st[i];
        if (s->kind == S_DEF) continue;
        lathe_node *a = p->st[p->refs[s->ref0].def].node;
        lathe_node *b = s->nref > 1 ? p->st[p->refs[s->ref0 + 1].def].node : NULL;
        lathe_status st = s->kind == S_OUTPUT   ? lathe_output(p->g, p->pool + s->str, a)
                          : s->kind == S_UPDATE ? lathe_update(p->g, a, b)
                                                : lathe_mark_backward(p->g, a, b);
        if (st != LATHE_OK) return relocate(p, s->at);
    }
    return true;
}

lathe_status lathe_parse(lathe_graph *g, const char *src, size_t len, const char *filename) {
    if (!g) return LATHE_ERR_ARG;
    const char *file = filename ? filename : "<input>";
    if (g->status != LATHE_OK) return g->status;
    if (g->nnodes || g->nout || g->nupd || g->nmarks) {
        lt_fail(g, LATHE_ERR_ARG, "%s: lathe_parse needs an empty graph; this one has %d nodes", file,
                g->nnodes);
        return LATHE_ERR_ARG;
    }
    if (!src && len) return lt_fail(g, LATHE_ERR_ARG, "%s: source is NULL", file), LATHE_ERR_ARG;
    g->source = lt_strdup(g, file);
    if (len > INT_MAX / 2)
        return lt_fail(g, LATHE_ERR_PARSE, "%s: %zu bytes is too large for the text format", file, len),
               LATHE_ERR_PARSE;
    parser p = {.g = g, .file = file, .src = src ? src : "", .len = len, .line = 1};
    bool ok = parse_all(&p) && resolve(&p) && make_all(&p) && finish(&p);
    free(p.st);
    free(p.refs);
    free(p.attrs);
    free(p.pool);
    free(p.hash);
    if (!ok) return g->status != LATHE_OK ? g->status : LATHE_ERR_PARSE;
    return LATHE_OK;
}

lathe_status lathe_parse_file(lathe_graph *g, const char *path) {
    if (!g || !path) return LATHE_ERR_ARG;
    char *buf;
    size_t n;
    lathe_status st = lt_read_file(g, path, &buf, &n);
    if (st != LATHE_OK) return st;
    st = lathe_parse(g, buf, n, path);
    free(buf);
    return st;
}
