/* desc.c - the model description language (*.lathe files).
 *
 * A small tokenizer and a recursive-descent parser whose functions are named
 * after what they read (chibicc's parse.c).  The parser traces as it reads:
 * every expression is evaluated at once into a value -- a number, a tensor
 * (lathe_node *), a list or a dtype -- by calling the public tracing API, so
 * the builders check shapes and their errors are reported at the call.
 *
 * Code that must not run -- a branch not taken, a block's body while it is
 * being defined, statements after `return` -- is read with `skip` set: its
 * syntax, arity and `as` names are checked, but nothing is built and names
 * are not looked up (they are resolved when the code runs, as in Python).
 * A block definition remembers where its body starts; a call binds the
 * arguments in a new frame, extends the parameter-name prefix with the
 * call's `as` name and reads the body again from there.
 *
 * Errors name FILE:LINE:COL, show the line with a caret as the text IR
 * parser does (ir/text.c), and list the block calls that led there.
 *
 * The built-in functions and layers (their table and handlers) are in
 * desc_builtins.c; desc.h holds the types and helpers the two files share. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "desc.h"

static const char *const keywords[] = {"model", "batch", "let", "input", "param", "buffer", "block", "if",
                                       "else", "for", "no_grad", "freeze", "unfreeze", "output", "loss", "backward",
                                       "return", "as", "and", "or", "not", "true", "false",
                                       "f32", "f64", "i64", "bool"};

typedef struct {
    const char *kw;    /* NULL: positional */
    size_t kwlen;
    loc kwat;
    value v;
} arg;

static bool live(const parser *p) { return p->skip == 0 && !p->returned; }

/* ---- messages ------------------------------------------------------------------------ */

/* Record "FILE:LINE:COL: message", the line, a caret and the block calls that
 * led there; returns false. */
bool desc_err(parser *p, lathe_status st, loc at, const char *fmt, ...) {
    char msg[sizeof p->g->err], line[200], caret[200], trace[400] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lt_show_line(p->src, p->len, at.off, line, caret, sizeof line);
    size_t k = 0;
    for (int i = p->ncalls - 1; i >= 0 && k < sizeof trace; i--) {
        if (p->ncalls > 6 && i == p->ncalls - 4) { /* the innermost three, then the outermost two */
            int w = snprintf(trace + k, sizeof trace - k, "\n  ... %d more block calls", p->ncalls - 5);
            k += w > 0 ? (size_t)w : 0;
            i = 2;
            continue;
        }
        const blockdef *b = &p->blocks[p->calls[i].block];
        int w = snprintf(trace + k, sizeof trace - k, "\n  in block '%.*s'%s%.*s called at %s:%d:%d",
                         (int)b->len, b->s, p->calls[i].as ? " as " : "", (int)p->calls[i].aslen,
                         p->calls[i].as ? p->calls[i].as : "", p->file, p->calls[i].at.line, p->calls[i].at.col);
        k += w > 0 ? (size_t)w : 0;
    }
    lt_fail(p->g, st, "%s:%d:%d: %s\n  %s\n  %s%s", p->file, at.line, at.col, msg, line, caret, trace);
    return false;
}

/* Move an error a builder recorded to the call's location. */
bool desc_relocate(parser *p, loc at) {
    char msg[sizeof p->g->err];
    lathe_status st = lt_take_error(p->g, msg);
    return desc_err(p, st, at, "%s", msg);
}

bool desc_oom(parser *p) {
    lt_fail(p->g, LATHE_ERR_NOMEM, "%s: out of memory", p->file);
    return false;
}

/* Grow *arr to hold need elements. */
static bool grow(parser *p, void **arr, int *cap, int need, size_t elem) {
    if (need <= *cap) return true;
    int c = *cap ? *cap : 16;
    while (c < need) {
        if (c > INT_MAX / 4) return desc_oom(p);
        c *= 2;
    }
    void *q = realloc(*arr, (size_t)c * elem);
    if (!q) return desc_oom(p);
    *arr = q;
    *cap = c;
    return true;
}

/* Levenshtein distance, for "did you mean" (names up to 31 bytes). */
static size_t distance(const char *a, size_t la, const char *b, size_t lb) {
    if (la > 31 || lb > 31) return 99;
    size_t row[32];
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[lb];
}

/* Keeps the closest candidate to name within two edits. */
typedef struct {
    const char *name;
    size_t len;
    const char *best;
    size_t bestlen, d;
} suggestion;

static void consider(suggestion *s, const char *cand, size_t len) {
    size_t d = distance(s->name, s->len, cand, len);
    if (d > 0 && d <= 2 && d < s->len && d < s->d) {
        s->best = cand;
        s->bestlen = len;
        s->d = d;
    }
}

static const char *did_you_mean(const suggestion *s, char *buf, size_t cap) {
    if (!s->best) return "";
    snprintf(buf, cap, " (did you mean '%.*s'?)", (int)s->bestlen, s->best);
    return buf;
}

/* ---- tokens ---------------------------------------------------------------------------- */

static bool is_digit(int c) { return c >= '0' && c <= '9'; }
static bool is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_alnum(int c) { return is_alpha(c) || is_digit(c); }

/* Read the next token into p->lx.tok. */
static bool next(parser *p) {
    lexer *x = &p->lx;
    const char *s = p->src;
    size_t n = p->len, i = x->pos;
    for (;;) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r')) i++;
        if (i < n && s[i] == '#')
            while (i < n && s[i] != '\n') i++;
        if (i < n && s[i] == '\n' && x->depth > 0) {
            x->line++;
            x->line_start = ++i;
            continue;
        }
        break;
    }
    token t = {.at = {i, x->line, (int)(i - x->line_start) + 1}, .s = s + i};
    size_t j = i + 1;
    if (i >= n) {
        t.kind = T_EOF;
        j = i;
    } else {
        unsigned char c = (unsigned char)s[i];
        unsigned char d = j < n ? (unsigned char)s[j] : 0;
        if (c == '\n') {
            t.kind = T_NL;
            x->line++;
            x->line_start = j;
        } else if (is_alpha(c)) {
            while (j < n && is_alnum((unsigned char)s[j])) j++;
            t.kind = T_IDENT;
        } else if (is_digit(c) || (c == '.' && is_digit(d))) {
            /* greedy; number() checks the form when the token is used */
            while (j < n && (is_alnum((unsigned char)s[j]) || (s[j] == '.' && (j + 1 == n || s[j + 1] != '.')) ||
                             ((s[j] == '+' || s[j] == '-') && (s[j - 1] == 'e' || s[j - 1] == 'E'))))
                j++;
            t.kind = T_NUM;
        } else if (c == '"') { /* a string: "none", no escapes, on one line */
            while (j < n && s[j] != '"' && s[j] != '\n') j++;
            if (j == n || s[j] != '"')
                return desc_err(p, LATHE_ERR_PARSE, t.at, "unterminated string (a string ends with '\"' on its line)");
            j++;
            t.kind = T_STR;
        } else if (c == '.') { /* '..' in a loop's range; '.' only inside dotted names */
            t.kind = T_PUNCT;
            t.op = c;
            if (d == '.') {
                t.op = P_DOTDOT;
                j++;
            }
        } else if (c && strchr("()[]{},:=+-*/<>!", c)) {
            t.kind = T_PUNCT;
            t.op = c;
            static const struct {
                char a, b;
                int op;
            } two[] = {{'*', '*', P_POW}, {'/', '/', P_FLOORDIV}, {'=', '=', P_EQ},
                       {'!', '=', P_NE},  {'<', '=', P_LE},       {'>', '=', P_GE}};
            for (size_t k = 0; k < sizeof two / sizeof two[0]; k++)
                if (c == two[k].a && d == two[k].b) {
                    t.op = two[k].op;
                    j++;
                }
            if (t.op == '!')
                return desc_err(p, LATHE_ERR_PARSE, t.at, "unexpected character '!' (write 'not' or '!=')");
            if (c == '(' || c == '[') x->depth++;
            if ((c == ')' || c == ']') && x->depth > 0) x->depth--;
        } else if (c > 0x20 && c < 0x7f) {
            return desc_err(p, LATHE_ERR_PARSE, t.at, "unexpected character '%c'", c);
        } else {
            return desc_err(p, LATHE_ERR_PARSE, t.at, "unexpected byte 0x%02x", c);
        }
    }
    t.len = j - i;
    x->pos = j;
    x->tok = t;
    return true;
}


static bool is_punct(const parser *p, int op) { return p->lx.tok.kind == T_PUNCT && p->lx.tok.op == op; }

static bool is_word(const parser *p, const char *w) {
    return p->lx.tok.kind == T_IDENT && p->lx.tok.len == strlen(w) && memcmp(p->lx.tok.s, w, p->lx.tok.len) == 0;
}

static bool is_keyword(const char *s, size_t len) {
    for (size_t i = 0; i < sizeof keywords / sizeof keywords[0]; i++)
        if (same(s, len, keywords[i], strlen(keywords[i]))) return true;
    return false;
}

static bool end_of_stmt(const parser *p) { return p->lx.tok.kind == T_NL || p->lx.tok.kind == T_EOF || is_punct(p, '}'); }

/* "'foo'", "end of line", ... for messages */
static const char *describe(const token *t, char *buf, size_t len) {
    if (t->kind == T_EOF) return "end of file";
    if (t->kind == T_NL) return "end of line";
    int n = t->len > 40 ? 40 : (int)t->len;
    snprintf(buf, len, "'%.*s%s'", n, t->s, t->len > 40 ? "..." : "");
    return buf;
}

static bool expected(parser *p, const char *what) {
    char b[64];
    if (p->lx.tok.kind == T_EOF) return desc_err(p, LATHE_ERR_PARSE, p->lx.tok.at, "unexpected end of file, expected %s", what);
    if (p->lx.tok.kind == T_NL) return desc_err(p, LATHE_ERR_PARSE, p->lx.tok.at, "unexpected end of line, expected %s", what);
    return desc_err(p, LATHE_ERR_PARSE, p->lx.tok.at, "expected %s, got %s", what, describe(&p->lx.tok, b, sizeof b));
}

static bool expect(parser *p, int op, const char *what) {
    if (!is_punct(p, op)) return expected(p, what);
    return next(p);
}

/* A name that is not a keyword; *s and *len point into the source. */
static bool ident(parser *p, const char *what, const char **s, size_t *len, loc *at) {
    if (p->lx.tok.kind != T_IDENT) return expected(p, what);
    if (is_keyword(p->lx.tok.s, p->lx.tok.len))
        return desc_err(p, LATHE_ERR_PARSE, p->lx.tok.at, "'%.*s' is a keyword and cannot be used as %s", (int)p->lx.tok.len, p->lx.tok.s,
                        what);
    *s = p->lx.tok.s;
    *len = p->lx.tok.len;
    if (at) *at = p->lx.tok.at;
    return next(p);
}

/* A dotted name read as one word from the source: layer2.1, downsample.0, or
 * with trailing_dot a prefix such as layer1. */
static bool dotted(parser *p, const char *what, bool trailing_dot, const char **s, size_t *len, loc *at) {
    if (p->lx.tok.kind != T_IDENT && p->lx.tok.kind != T_NUM) return expected(p, what);
    const char *src = p->src;
    size_t i = p->lx.tok.at.off, j = i;
    while (j < p->len && (is_alnum((unsigned char)src[j]) || src[j] == '.')) j++;
    for (size_t k = i; k < j; k++)
        if (src[k] == '.' && (k == i || src[k - 1] == '.' || (k + 1 == j && !trailing_dot)))
            return desc_err(p, LATHE_ERR_PARSE, p->lx.tok.at,
                            "malformed name '%.*s' in %s (parts are separated by single dots)",
                            (int)(j - i > 60 ? 60 : j - i), src + i, what);
    *s = src + i;
    *len = j - i;
    *at = p->lx.tok.at;
    p->lx.pos = j;
    return next(p);
}

/* The value of a T_NUM token: digits, an optional fraction and exponent. */
static bool number(parser *p, double *out) {
    char buf[64];
    bool ok = p->lx.tok.len < sizeof buf;
    if (ok) {
        memcpy(buf, p->lx.tok.s, p->lx.tok.len);
        buf[p->lx.tok.len] = 0;
    }
    for (size_t i = 0; ok && i < p->lx.tok.len; i++) ok = strchr("0123456789.eE+-", buf[i]) != NULL;
    char *end = NULL;
    double d = ok ? strtod(buf, &end) : 0;
    if (!ok || *end)
        return desc_err(p, LATHE_ERR_PARSE, p->lx.tok.at, "malformed number '%.*s'", (int)(p->lx.tok.len > 40 ? 40 : p->lx.tok.len),
                        p->lx.tok.s);
    if (!isfinite(d)) return desc_err(p, LATHE_ERR_PARSE, p->lx.tok.at, "number '%.*s' is out of range", (int)p->lx.tok.len, p->lx.tok.s);
    *out = d;
    return next(p);
}

/* ---- values and variables ---------------------------------------------------------------- */

const char *desc_kind_str(const value *v, char *buf, size_t cap) {
    char ts[96];
    switch (v->k) {
    case V_NUM: snprintf(buf, cap, "the number %g", v->num); break;
    case V_TENSOR:
        lathe_node_type_str(v->t, ts, sizeof ts);
        snprintf(buf, cap, "a tensor %s", ts);
        break;
    case V_LIST: snprintf(buf, cap, "a list of %d", v->n); break;
    case V_DTYPE: snprintf(buf, cap, "the dtype %s", lathe_dtype_name(v->dtype)); break;
    case V_STR: snprintf(buf, cap, "the string \"%.*s\"", (int)(v->len > 40 ? 40 : v->len), v->s); break;
    default: snprintf(buf, cap, "no value"); break;
    }
    return buf;
}

/* An integer that doubles hold exactly. */
bool desc_integral(double d, int64_t *out) {
    if (d != floor(d) || fabs(d) > 9007199254740992.0) return false;
    *out = (int64_t)d;
    return true;
}

static var *lookup(parser *p, const char *s, size_t len) {
    for (int i = p->nvars - 1; i >= p->base; i--)
        if (same(p->vars[i].s, p->vars[i].len, s, len)) return &p->vars[i];
    if (p->ncalls > 0)
        for (int i = p->gend - 1; i >= 0; i--)
            if (same(p->vars[i].s, p->vars[i].len, s, len)) return &p->vars[i];
    return NULL;
}

/* Bind name in the running frame. */
static bool set_var(parser *p, const char *s, size_t len, loc at, value v, bool constant) {
    for (int i = p->base; i < p->nvars; i++) {
        var *w = &p->vars[i];
        if (!same(w->s, w->len, s, len)) continue;
        if (w->constant || constant)
            return desc_err(p, LATHE_ERR_NAME, at, "'%.*s' is already defined as a constant at line %d", (int)len, s,
                            w->at.line);
        w->v = v;
        return true;
    }
    if (!grow(p, (void **)&p->vars, &p->capvars, p->nvars + 1, sizeof *p->vars)) return false;
    p->vars[p->nvars++] = (var){s, len, v, constant, at};
    return true;
}

bool desc_built(parser *p, loc at, lathe_node *n, value *out) {
    if (!n || lathe_graph_status(p->g) != LATHE_OK) return desc_relocate(p, at);
    *out = (value){.k = V_TENSOR, .t = n, .at = at};
    return true;
}

static bool status_ok(parser *p, loc at, lathe_status st) {
    return st == LATHE_OK && lathe_graph_status(p->g) == LATHE_OK ? true : desc_relocate(p, at);
}

/* Nodes remember where they were made. */
void desc_stamp(parser *p, loc at) {
    p->g->cur_line = at.line;
    p->g->cur_col = at.col;
}

/* Two operands as tensors: a number becomes a scalar of the other's dtype. */
bool desc_operands(parser *p, loc at, const char *what, const value *a, const value *b, lathe_node **x,
                   lathe_node **y) {
    char k[128];
    for (int i = 0; i < 2; i++) {
        const value *v = i ? b : a;
        if (v->k != V_NUM && v->k != V_TENSOR)
            return desc_err(p, LATHE_ERR_ARG, v->at, "%s needs numbers or tensors, got %s", what,
                            desc_kind_str(v, k, sizeof k));
    }
    if (a->k == V_NUM && b->k == V_NUM)
        return desc_err(p, LATHE_ERR_ARG, at, "%s needs a tensor operand; both are numbers", what);
    desc_stamp(p, at);
    *x = a->k == V_TENSOR ? a->t : lathe_scalar(p->g, lathe_node_dtype(b->t), a->num);
    *y = b->k == V_TENSOR ? b->t : lathe_scalar(p->g, lathe_node_dtype(a->t), b->num);
    return *x && *y ? true : desc_relocate(p, at);
}

static const char *op_name(int op) {
    switch (op) {
    case P_POW: return "'**'";
    case P_FLOORDIV: return "'//'";
    case P_EQ: return "'=='";
    case P_NE: return "'!='";
    case P_LE: return "'<='";
    case P_GE: return "'>='";
    case '+': return "'+'";
    case '-': return "'-'";
    case '*': return "'*'";
    case '/': return "'/'";
    case '<': return "'<'";
    case '>': return "'>'";
    case 'a': return "'and'";
    case 'o': return "'or'";
    default: return "an operator";
    }
}

/* a = a OP b; op is a punctuation code, or 'a' / 'o' for and / or. */
bool desc_binop(parser *p, int op, loc at, value *a, const value *b) {
    if (!live(p)) {
        a->k = V_NONE;
        return true;
    }
    if (a->k == V_NUM && b->k == V_NUM) {
        double x = a->num, y = b->num, r;
        switch (op) {
        case '+': r = x + y; break;
        case '-': r = x - y; break;
        case '*': r = x * y; break;
        case '/':
        case P_FLOORDIV:
            if (y == 0) return desc_err(p, LATHE_ERR_ARG, at, "division by zero");
            r = op == '/' ? x / y : floor(x / y);
            break;
        case P_POW: r = pow(x, y); break;
        case P_EQ: r = x == y; break;
        case P_NE: r = x != y; break;
        case '<': r = x < y; break;
        case '>': r = x > y; break;
        case P_LE: r = x <= y; break;
        case P_GE: r = x >= y; break;
        case 'a': r = x != 0 && y != 0; break;
        default: r = x != 0 || y != 0; break;
        }
        /* infinities stay infinite (-inf, 2 * inf); nothing finite overflows to one */
        if (isnan(r) || (!isfinite(r) && isfinite(x) && isfinite(y)))
            return desc_err(p, LATHE_ERR_ARG, at, "%g %s %g is not %s number", x, op_name(op), y,
                            isnan(r) ? "a" : "a finite");
        a->num = r;
        return true;
    }
    if (op == 'a' || op == 'o' || op == P_FLOORDIV)
        return desc_err(p, LATHE_ERR_ARG, at, "%s works on numbers only", op_name(op));
    lathe_graph *g = p->g;
    lathe_node *x, *y, *r;
    loc start = a->at;
    if (op == P_POW && a->k == V_TENSOR && b->k == V_NUM) {
        desc_stamp(p, at);
        if (!desc_built(p, at, lathe_pow_scalar(g, a->t, b->num), a)) return false;
        a->at = start;
        return true;
    }
    if (!desc_operands(p, at, op_name(op), a, b, &x, &y)) return false;
    switch (op) {
    case '+': r = lathe_add(g, x, y); break;
    case '-': r = lathe_sub(g, x, y); break;
    case '*': r = lathe_mul(g, x, y); break;
    case '/': r = lathe_div(g, x, y); break;
    case P_POW: r = lathe_pow(g, x, y); break;
    case P_EQ: r = lathe_eq(g, x, y); break;
    case P_NE: r = lathe_ne(g, x, y); break;
    case '<': r = lathe_lt(g, x, y); break;
    case '>': r = lathe_gt(g, x, y); break;
    case P_LE: r = lathe_le(g, x, y); break;
    default: r = lathe_ge(g, x, y); break;
    }
    if (!desc_built(p, at, r, a)) return false;
    a->at = start;
    return true;
}

/* ---- expressions --------------------------------------------------------------------------- */

static bool parse_expr(parser *p, value *out);
static bool parse_unary(parser *p, value *out);
static bool parse_stmts(parser *p, bool braces, loc open);

static bool enter(parser *p) {
    if (++p->nest > MAX_NEST) return desc_err(p, LATHE_ERR_PARSE, p->lx.tok.at, "nesting is too deep (limit %d)", MAX_NEST);
    return true;
}

/* '[' [EXPR {',' EXPR} [',']] ']' */
static bool parse_list(parser *p, value *out) {
    loc at = p->lx.tok.at;
    value *tmp = NULL;
    int n = 0, cap = 0;
    bool ok = next(p);
    while (ok && !is_punct(p, ']')) {
        value v;
        ok = parse_expr(p, &v);
        if (ok && v.k == V_LIST) ok = desc_err(p, LATHE_ERR_ARG, v.at, "lists cannot be nested");
        if (ok) ok = grow(p, (void **)&tmp, &cap, n + 1, sizeof *tmp);
        if (ok) tmp[n++] = v;
        if (ok && is_punct(p, ',')) ok = next(p);
        else if (ok && !is_punct(p, ']')) ok = expected(p, "',' or ']' in the list");
    }
    if (ok) ok = next(p);
    if (ok && live(p)) ok = grow(p, (void **)&p->items, &p->capitems, p->nitems + n, sizeof *p->items);
    if (ok && live(p)) {
        if (n) memcpy(p->items + p->nitems, tmp, (size_t)n * sizeof *tmp);
        *out = (value){.k = V_LIST, .first = p->nitems, .n = n, .at = at};
        p->nitems += n;
    } else {
        *out = (value){.k = V_NONE, .at = at};
    }
    free(tmp);
    return ok;
}

/* ---- calls: binding and argument types ------------------------------------------------------- */

/* "conv2d(x, out_channels, kernel, stride=1, ...)" */
static const char *signature(const call *c, char *buf, size_t cap) {
    size_t k = 0;
    int w = snprintf(buf, cap, "%.*s(", c->fnlen, c->fn);
    k = w > 0 ? (size_t)w : 0;
    for (int i = 0; i < c->n && k < cap; i++) {
        const pspec *ps = &c->ps[i];
        w = snprintf(buf + k, cap - k, "%s%.*s%s%.*s", i ? ", " : "", (int)ps->len, ps->s, ps->required ? "" : "=",
                     (int)(ps->deflen > 20 ? 20 : ps->deflen), ps->required ? "" : ps->deftext);
        k += w > 0 ? (size_t)w : 0;
    }
    if (k < cap) snprintf(buf + k, cap - k, ")");
    return buf;
}

/* Match arguments to parameters: positional first, then keywords. */
static bool bind(parser *p, call *c, const arg *a, int na) {
    char sig[300], sug[96];
    for (int i = 0; i < c->n; i++) {
        c->set[i] = false;
        c->v[i] = c->ps[i].def;
        c->v[i].at = c->at;
    }
    int pos = 0;
    for (int i = 0; i < na; i++) {
        int k = pos;
        if (!a[i].kw) {
            if (pos >= c->n)
                return desc_err(p, LATHE_ERR_ARG, a[i].v.at, "too many arguments: %s takes %d",
                                signature(c, sig, sizeof sig), c->n);
            pos++;
        } else {
            suggestion s = {a[i].kw, a[i].kwlen, NULL, 0, 99};
            for (k = 0; k < c->n && !same(c->ps[k].s, c->ps[k].len, a[i].kw, a[i].kwlen); k++)
                consider(&s, c->ps[k].s, c->ps[k].len);
            if (k == c->n)
                return desc_err(p, LATHE_ERR_ARG, a[i].kwat, "%.*s has no argument '%.*s'%s; it takes %s", c->fnlen,
                                c->fn, (int)a[i].kwlen, a[i].kw, did_you_mean(&s, sug, sizeof sug),
                                signature(c, sig, sizeof sig));
        }
        if (c->set[k])
            return desc_err(p, LATHE_ERR_ARG, a[i].kw ? a[i].kwat : a[i].v.at, "argument '%.*s' of %.*s is given twice",
                            (int)c->ps[k].len, c->ps[k].s, c->fnlen, c->fn);
        c->set[k] = true;
        c->v[k] = a[i].v;
    }
    for (int i = 0; i < c->n; i++)
        if (c->ps[i].required && !c->set[i])
            return desc_err(p, LATHE_ERR_ARG, c->at, "missing argument '%.*s' of %s", (int)c->ps[i].len, c->ps[i].s,
                            signature(c, sig, sizeof sig));
    return true;
}

bool desc_shared_leaf(parser *p, const char *name, bool buffer, lathe_dtype t, int rank, const int64_t *shape, loc at,
                      const char *fn, int fnlen, lathe_node **out) {
    lathe_node *n = lathe_graph_find(p->g, name);
    *out = n && n->op == (buffer ? LT_OP_BUFFER : LT_OP_PARAM) ? n : NULL;
    if (!*out || (n->dtype == t && n->rank == rank && (rank == 0 || !memcmp(n->shape, shape, sizeof *shape * (size_t)rank))))
        return true;
    char was[160], now[160];
    lathe_node_type_str(n, was, sizeof was);
    lt_type_str(t, rank, shape, now, sizeof now);
    return desc_err(p, LATHE_ERR_SHAPE, at,
                    "%.*s%s'%s' is %s (made at line %d), this call %s %s; a %s called again under one name shares its "
                    "parameters, so their shapes must agree",
                    fn ? fnlen : 0, fn ? fn : "", fn ? ": " : "", name, was, n->line, fn ? "needs" : "declares", now,
                    fn ? "layer" : "block");
}

/* The name of a layer's tensor: prefix, the `as` name, '.', suffix. */
bool desc_leaf_name(parser *p, const char *as, size_t aslen, loc at, const char *suffix, char *buf) {
    int k = snprintf(buf, NAME_CAP, "%s%.*s%s%s", p->prefix, (int)aslen, as, suffix ? "." : "", suffix ? suffix : "");
    if (k < 0 || k >= NAME_CAP)
        return desc_err(p, LATHE_ERR_NAME, at, "the name '%s%.*s' is too long (limit %d bytes)", p->prefix, (int)aslen,
                        as, NAME_CAP - 1);
    return true;
}

/* Run block bi: a new frame with the arguments, the prefix extended by `as`,
 * and the body read again from its start. */
static bool call_block(parser *p, int bi, const call *c, value *out) {
    const blockdef *b = &p->blocks[bi];
    if (p->ncalls == MAX_CALLS)
        return desc_err(p, LATHE_ERR_ARG, c->at, "blocks are nested more than %d calls deep (does '%.*s' call itself?)",
                        MAX_CALLS, (int)b->len, b->s);
    size_t plen = strlen(p->prefix);
    if (c->as && plen + c->aslen + 2 > sizeof p->prefix)
        return desc_err(p, LATHE_ERR_NAME, c->asat, "the prefix '%s%.*s' is too long", p->prefix, (int)c->aslen, c->as);
    if (++p->totalcalls > MAX_TOTAL_CALLS)
        return desc_err(p, LATHE_ERR_ARG, c->at, "more than %d block calls in all", MAX_TOTAL_CALLS);
    lexer lx = p->lx;
    int base = p->base, gend = p->gend, nvars = p->nvars;
    bool returned = p->returned;
    value ret = p->ret;
    if (p->ncalls == 0) p->gend = p->nvars;
    p->base = p->nvars;
    p->calls[p->ncalls++] = (callframe){bi, c->at, c->as, c->aslen};
    if (c->as) snprintf(p->prefix + plen, sizeof p->prefix - plen, "%.*s.", (int)c->aslen, c->as);
    p->lx = b->body;
    p->returned = false;
    p->ret = (value){0};
    bool ok = true;
    for (int i = 0; ok && i < c->n; i++) ok = set_var(p, c->ps[i].s, c->ps[i].len, c->v[i].at, c->v[i], false);
    ok = ok && parse_stmts(p, true, b->open);
    value r = p->ret;
    bool did = p->returned;
    p->ncalls--;
    p->lx = lx;
    p->base = base;
    p->gend = gend;
    p->nvars = nvars;
    p->returned = returned;
    p->ret = ret;
    p->prefix[plen] = 0;
    if (!ok) return false;
    if (!did) return desc_err(p, LATHE_ERR_ARG, c->at, "block '%.*s' ended without 'return'", (int)b->len, b->s);
    *out = r;
    out->at = c->at;
    return true;
}

static int find_block(const parser *p, const char *s, size_t len) {
    for (int i = 0; i < p->nblocks; i++)
        if (same(p->blocks[i].s, p->blocks[i].len, s, len)) return i;
    return -1;
}

/* The name after 'as', into c->asbuf: a dotted name whose parts may be
 * {EXPR}, an integer filled in (h.{i} in a loop). */
static bool as_name(parser *p, call *c) {
    const char *what = "the name after 'as'", *src = p->src;
    if (p->lx.tok.kind != T_IDENT && p->lx.tok.kind != T_NUM && !is_punct(p, '{')) return expected(p, what);
    c->asat = p->lx.tok.at;
    size_t i = p->lx.tok.at.off, n = 0;
    char *buf = c->asbuf;
    for (;;) {
        size_t j = i;
        while (j < p->len && (is_alnum((unsigned char)src[j]) || src[j] == '.')) j++;
        if (n + (j - i) >= NAME_CAP) goto too_long;
        memcpy(buf + n, src + i, j - i);
        n += j - i;
        if (j == p->len || src[j] != '{') {
            p->lx.pos = j;
            break;
        }
        value v;
        p->lx.pos = j + 1;
        if (!next(p) || !parse_expr(p, &v)) return false;
        if (!is_punct(p, '}')) return expected(p, "'}' after the expression in the name");
        int64_t k = 0;
        char kb[128];
        if (live(p) && (v.k != V_NUM || !desc_integral(v.num, &k)))
            return desc_err(p, LATHE_ERR_NAME, v.at, "a {...} in a name must be an integer, got %s",
                            desc_kind_str(&v, kb, sizeof kb));
        int w = snprintf(buf + n, NAME_CAP - n, "%lld", (long long)k);
        if (w < 0 || n + (size_t)w >= NAME_CAP) goto too_long;
        n += (size_t)w;
        i = p->lx.tok.at.off + 1;
    }
    buf[n] = 0;
    for (size_t k = 0; k <= n; k++)
        if (n == 0 || (buf[k] == '.' && (k == 0 || buf[k - 1] == '.' || k + 1 == n)))
            return desc_err(p, LATHE_ERR_PARSE, c->asat, "malformed name '%.60s' in %s (parts are separated by single dots)",
                            buf, what);
    c->as = buf;
    c->aslen = n;
    return next(p);
too_long:
    return desc_err(p, LATHE_ERR_NAME, c->asat, "the name after 'as' is too long (limit %d bytes)", NAME_CAP - 1);
}

/* '(' [ARG {',' ARG}] ')' ['as' DOTTED]; ARG is EXPR or NAME '=' EXPR.  The
 * current token is the '('. */
static bool parse_args(parser *p, call *c, arg *a, int *na) {
    *na = 0;
    if (!next(p)) return false;
    while (!is_punct(p, ')')) {
        if (*na == MAX_ARGS) return desc_err(p, LATHE_ERR_ARG, p->lx.tok.at, "too many arguments (at most %d)", MAX_ARGS);
        arg *x = &a[(*na)++];
        *x = (arg){0};
        if (p->lx.tok.kind == T_IDENT) {
            lexer save = p->lx;
            if (!next(p)) return false;
            bool kw = is_punct(p, '=');
            p->lx = save;
            if (kw) {
                x->kw = p->lx.tok.s;
                x->kwlen = p->lx.tok.len;
                x->kwat = p->lx.tok.at;
                if (!next(p) || !next(p)) return false;
            }
        }
        if (!x->kw && *na > 1 && a[*na - 2].kw)
            return desc_err(p, LATHE_ERR_ARG, p->lx.tok.at, "a positional argument cannot follow a keyword argument");
        if (!parse_expr(p, &x->v)) return false;
        if (!is_punct(p, ',')) break;
        if (!next(p)) return false;
    }
    char b[96];
    snprintf(b, sizeof b, "',' or ')' after the arguments of %.*s", c->fnlen, c->fn);
    if (!expect(p, ')', b)) return false;
    if (is_word(p, "as")) return next(p) && as_name(p, c);
    return true;
}

/* A call: NAME '(' args ')' ['as' NAME].  name is the function's token, the
 * current token the '('. */
static bool parse_call(parser *p, token name, value *out) {
    call c = {.fn = name.s, .fnlen = (int)name.len, .at = name.at};
    arg a[MAX_ARGS];
    int na;
    if (!parse_args(p, &c, a, &na)) return false;
    *out = (value){.k = V_NONE, .at = name.at};
    int bi = find_block(p, name.s, name.len), fi = desc_find_builtin(name.s, name.len);
    if (bi >= 0) {
        const blockdef *b = &p->blocks[bi];
        c.n = b->nparams;
        memcpy(c.ps, b->params, sizeof c.ps);
        if (!bind(p, &c, a, na)) return false;
        return live(p) ? call_block(p, bi, &c, out) : true;
    }
    if (fi < 0) {
        if (!live(p)) return true; /* resolved when it runs: a block may be defined later */
        char sug[96];
        suggestion s = {name.s, name.len, NULL, 0, 99};
        for (int i = 0; i < B_COUNT; i++) consider(&s, desc_builtins[i].name, strlen(desc_builtins[i].name));
        for (int i = 0; i < p->nblocks; i++) consider(&s, p->blocks[i].s, p->blocks[i].len);
        return desc_err(p, LATHE_ERR_NAME, name.at, "unknown function '%.*s'%s", (int)name.len, name.s,
                        did_you_mean(&s, sug, sizeof sug));
    }
    if (is_layer(fi) && !c.as)
        return desc_err(p, LATHE_ERR_NAME, name.at,
                        "%s creates parameters and needs a name: write %s(...) as NAME (for example 'as %s1')",
                        desc_builtins[fi].name, desc_builtins[fi].name,
                        fi == B_CONV2D || fi == B_CONV1D ? "conv" : fi == B_LINEAR ? "fc"
                        : fi == B_LAYER_NORM ? "ln" : fi == B_EMBEDDING ? "wte" : "bn");
    if (!is_layer(fi) && c.as)
        return desc_err(p, LATHE_ERR_NAME, c.asat, "'as' names the parameters of a layer or block; %s has none",
                        desc_builtins[fi].name);
    desc_builtin_params(fi, &c);
    if (!bind(p, &c, a, na)) return false;
    return live(p) ? desc_call_builtin(p, fi, &c, out) : true;
}

/* A parameter or buffer by its dotted name (tok.weight, to tie a head to an
 * embedding): inside a block the block's prefix is tried first. */
static bool leaf_ref(parser *p, value *out) {
    const char *s;
    size_t len;
    loc at;
    if (!dotted(p, "a parameter's name", false, &s, &len, &at)) return false;
    if (!live(p)) return true;
    char name[NAME_CAP];
    lathe_node *n = NULL;
    if (p->prefix[0] && desc_leaf_name(p, s, len, at, NULL, name)) n = lathe_graph_find(p->g, name);
    if (!n || (n->op != LT_OP_PARAM && n->op != LT_OP_BUFFER)) {
        snprintf(name, sizeof name, "%.*s", (int)len, s);
        n = lathe_graph_find(p->g, name);
    }
    if (!n || (n->op != LT_OP_PARAM && n->op != LT_OP_BUFFER))
        return desc_err(p, LATHE_ERR_NAME, at,
                        "no parameter or buffer named '%s%.*s'%s%.*s%s (a layer's parameters exist once it has "
                        "been called)", p->prefix, (int)len, s, p->prefix[0] ? " or '" : "",
                        p->prefix[0] ? (int)len : 0, s, p->prefix[0] ? "'" : "");
    *out = (value){.k = V_TENSOR, .t = n, .at = at};
    return true;
}

/* NUM | true | false | DTYPE | NAME | CALL | '(' EXPR ')' | LIST | DOTTED */
static bool parse_primary(parser *p, value *out) {
    token t = p->lx.tok;
    *out = (value){.k = V_NONE, .at = t.at};
    if (t.kind == T_NUM) {
        out->k = V_NUM;
        return number(p, &out->num);
    }
    if (t.kind == T_STR) {
        *out = (value){.k = V_STR, .s = t.s + 1, .len = t.len - 2, .at = t.at};
        return next(p);
    }
    if (is_punct(p, '(')) {
        if (!next(p) || !parse_expr(p, out)) return false;
        out->at = t.at;
        return expect(p, ')', "')'");
    }
    if (is_punct(p, '[')) return parse_list(p, out);
    if (t.kind != T_IDENT) return expected(p, "an expression");
    static const lathe_dtype dtypes[] = {LATHE_F32, LATHE_F64, LATHE_I64, LATHE_BOOL};
    for (int i = 0; i < 4; i++)
        if (is_word(p, lathe_dtype_name(dtypes[i]))) *out = (value){.k = V_DTYPE, .dtype = dtypes[i], .at = t.at};
    if (is_word(p, "true") || is_word(p, "false")) *out = (value){.k = V_NUM, .num = t.s[0] == 't', .at = t.at};
    if (out->k != V_NONE) return next(p);
    if (is_keyword(t.s, t.len)) return expected(p, "an expression");
    size_t end = t.at.off + t.len;
    if (end + 1 < p->len && p->src[end] == '.' && is_alnum((unsigned char)p->src[end + 1])) return leaf_ref(p, out);
    if (!next(p)) return false;
    if (is_punct(p, '(')) return parse_call(p, t, out);
    if (is_word(p, "as"))
        return desc_err(p, LATHE_ERR_NAME, p->lx.tok.at,
                        "'as' names a layer or block call such as conv2d(...) as conv1; '%.*s' is not a call",
                        (int)t.len, t.s);
    if (!live(p)) return true;
    const var *v = lookup(p, t.s, t.len);
    if (!v && t.len == 3 && !memcmp(t.s, "inf", 3)) { /* infinity, unless a name says otherwise */
        *out = (value){.k = V_NUM, .num = INFINITY, .at = t.at};
        return true;
    }
    if (!v && (desc_find_builtin(t.s, t.len) >= 0 || find_block(p, t.s, t.len) >= 0))
        return desc_err(p, LATHE_ERR_NAME, t.at,
                        "'%.*s' is a function, not a value: call it as %.*s(...) (a string is written in quotes: \"%.*s\")",
                        (int)t.len, t.s, (int)t.len, t.s, (int)t.len, t.s);
    if (!v) {
        char sug[96];
        suggestion s = {t.s, t.len, NULL, 0, 99};
        for (int i = p->base; i < p->nvars; i++) consider(&s, p->vars[i].s, p->vars[i].len);
        for (int i = 0; p->ncalls > 0 && i < p->gend; i++) consider(&s, p->vars[i].s, p->vars[i].len);
        return desc_err(p, LATHE_ERR_NAME, t.at, "unknown name '%.*s'%s", (int)t.len, t.s,
                        did_you_mean(&s, sug, sizeof sug));
    }
    *out = v->v;
    out->at = t.at;
    return true;
}

/* PRIMARY ['**' UNARY]: right-associative, tighter than unary minus. */
static bool parse_power(parser *p, value *out) {
    if (!parse_primary(p, out)) return false;
    if (!is_punct(p, P_POW)) return true;
    loc at = p->lx.tok.at;
    value b;
    /* the right operand recurses: a long chain counts against the nesting limit */
    if (!enter(p) || !next(p) || !parse_unary(p, &b)) return false;
    p->nest--;
    return desc_binop(p, P_POW, at, out, &b);
}

/* '-' UNARY | POWER */
static bool parse_unary(parser *p, value *out) {
    if (!is_punct(p, '-')) return parse_power(p, out);
    loc at = p->lx.tok.at;
    if (!enter(p) || !next(p) || !parse_unary(p, out)) return false;
    p->nest--;
    if (!live(p)) return true;
    char k[128];
    if (out->k == V_NUM) out->num = -out->num;
    else if (out->k != V_TENSOR)
        return desc_err(p, LATHE_ERR_ARG, at, "unary '-' needs a number or a tensor, got %s",
                        desc_kind_str(out, k, sizeof k));
    else {
        desc_stamp(p, at);
        if (!desc_built(p, at, lathe_neg(p->g, out->t), out)) return false;
    }
    out->at = at;
    return true;
}

/* UNARY {('*' | '/' | '//') UNARY} */
static bool parse_term(parser *p, value *out) {
    if (!parse_unary(p, out)) return false;
    while (is_punct(p, '*') || is_punct(p, '/') || is_punct(p, P_FLOORDIV)) {
        int op = p->lx.tok.op;
        loc at = p->lx.tok.at;
        value b;
        if (!next(p) || !parse_unary(p, &b) || !desc_binop(p, op, at, out, &b)) return false;
    }
    return true;
}

/* TERM {('+' | '-') TERM} */
static bool parse_sum(parser *p, value *out) {
    if (!parse_term(p, out)) return false;
    while (is_punct(p, '+') || is_punct(p, '-')) {
        int op = p->lx.tok.op;
        loc at = p->lx.tok.at;
        value b;
        if (!next(p) || !parse_term(p, &b) || !desc_binop(p, op, at, out, &b)) return false;
    }
    return true;
}

/* SUM [('==' | '!=' | '<' | '>' | '<=' | '>=') SUM]: numbers give 1 or 0,
 * tensors a bool tensor. */
static bool parse_cmp(parser *p, value *out) {
    if (!parse_sum(p, out)) return false;
    if (!(is_punct(p, P_EQ) || is_punct(p, P_NE) || is_punct(p, '<') || is_punct(p, '>') || is_punct(p, P_LE) ||
          is_punct(p, P_GE)))
        return true;
    int op = p->lx.tok.op;
    loc at = p->lx.tok.at;
    value b;
    return next(p) && parse_sum(p, &b) && desc_binop(p, op, at, out, &b);
}

/* 'not' NOT | CMP */
static bool parse_not(parser *p, value *out) {
    if (!is_word(p, "not")) return parse_cmp(p, out);
    loc at = p->lx.tok.at;
    if (!enter(p) || !next(p) || !parse_not(p, out)) return false;
    p->nest--;
    if (!live(p)) return true;
    char k[128];
    if (out->k != V_NUM)
        return desc_err(p, LATHE_ERR_ARG, at, "'not' works on numbers only, got %s", desc_kind_str(out, k, sizeof k));
    out->num = out->num == 0;
    out->at = at;
    return true;
}

/* NOT {'and' NOT} {'or' ...}: 'and' binds tighter than 'or'. */
static bool parse_and(parser *p, value *out) {
    if (!parse_not(p, out)) return false;
    while (is_word(p, "and")) {
        loc at = p->lx.tok.at;
        value b;
        if (!next(p) || !parse_not(p, &b) || !desc_binop(p, 'a', at, out, &b)) return false;
    }
    return true;
}

static bool parse_expr(parser *p, value *out) {
    if (!enter(p) || !parse_and(p, out)) return false;
    while (is_word(p, "or")) {
        loc at = p->lx.tok.at;
        value b;
        if (!next(p) || !parse_and(p, &b) || !desc_binop(p, 'o', at, out, &b)) return false;
    }
    p->nest--;
    return true;
}

/* ---- statements ------------------------------------------------------------------------------ */

static bool top_level(parser *p, token t) {
    if (p->in_def || p->ncalls > 0)
        return desc_err(p, LATHE_ERR_PARSE, t.at, "'%.*s' is only allowed at the top level, not inside a block",
                        (int)t.len, t.s);
    return true;
}

/* The value of a define NAME=VALUE for a let or batch name, if there is one. */
static void apply_define(parser *p, const char *s, size_t len, double *v) {
    for (int i = 0; i < p->ndefs; i++)
        if (same(p->defs[i].s, p->defs[i].len, s, len)) {
            *v = p->defs[i].v;
            p->defs[i].used = true;
        }
}

/* A number that must be an integer from lo (0 or 1) to 2^48. */
static bool int_value(parser *p, const value *v, int64_t lo, const char *what, int64_t *out) {
    char k[128];
    if (v->k != V_NUM || !desc_integral(v->num, out) || *out < lo || *out > LT_MAX_NUMEL)
        return desc_err(p, LATHE_ERR_ARG, v->at, "%s must be a %s integer, got %s", what,
                        lo ? "positive" : "non-negative", desc_kind_str(v, k, sizeof k));
    return true;
}

/* DTYPE '[' [EXPR {',' EXPR}] ']' */
static bool parse_type(parser *p, lathe_dtype *t, int *rank, int64_t *shape) {
    static const lathe_dtype dtypes[] = {LATHE_F32, LATHE_F64, LATHE_I64, LATHE_BOOL};
    int i = 0;
    while (i < 4 && !is_word(p, lathe_dtype_name(dtypes[i]))) i++;
    if (p->lx.tok.kind == T_IDENT && i == 4)
        return desc_err(p, LATHE_ERR_PARSE, p->lx.tok.at, "unknown dtype '%.*s' (expected f32, f64, i64 or bool)",
                        (int)p->lx.tok.len, p->lx.tok.s);
    if (i == 4) return expected(p, "a type such as f32[N, 3]");
    *t = dtypes[i];
    *rank = 0;
    if (!next(p) || !expect(p, '[', "'[' and the dimensions after the dtype")) return false;
    while (!is_punct(p, ']')) {
        value d;
        if (*rank == LATHE_MAX_RANK)
            return desc_err(p, LATHE_ERR_SHAPE, p->lx.tok.at, "a type has at most %d dimensions", LATHE_MAX_RANK);
        if (!parse_expr(p, &d)) return false;
        if (live(p) && !int_value(p, &d, 0, "a dimension", &shape[*rank])) return false;
        (*rank)++;
        if (!is_punct(p, ',')) break;
        if (!next(p)) return false;
    }
    return expect(p, ']', "',' or ']' in the dimensions");
}

/* init=auto | zeros | ones | uniform(A) | const(V) | normal(STD) */
static bool parse_init(parser *p, lathe_leaf_init *kind, double *a) {
    static const char *const names[] = {"auto", "zeros", "ones", "uniform", "const", "normal"};
    int i = 0;
    while (i < 6 && !is_word(p, names[i])) i++;
    if (i == 6) return expected(p, "an initializer: auto, zeros, ones, uniform(A), const(V) or normal(STD)");
    *kind = i == 0 ? LATHE_LEAF_INIT_AUTO : i == 3 ? LATHE_LEAF_INIT_UNIFORM : i == 5 ? LATHE_LEAF_INIT_NORMAL
                                                                                       : LATHE_LEAF_INIT_CONST;
    *a = i == 2;
    if (!next(p)) return false;
    if (i < 3) return true;
    value v;
    if (!expect(p, '(', "'(' and the initializer's number") || !parse_expr(p, &v) ||
        !expect(p, ')', "')' after the initializer's number"))
        return false;
    if (!live(p)) return true;
    char k[128];
    if (v.k != V_NUM)
        return desc_err(p, LATHE_ERR_ARG, v.at, "%s needs a number, got %s", names[i], desc_kind_str(&v, k, sizeof k));
    if (i == 3 && v.num < 0)
        return desc_err(p, LATHE_ERR_ARG, v.at, "uniform(A) draws from [-A, A]: A must be >= 0, got %g", v.num);
    if (i == 5 && v.num < 0)
        return desc_err(p, LATHE_ERR_ARG, v.at, "normal(STD) draws with standard deviation STD: it must be >= 0, got %g",
                        v.num);
    *a = v.num;
    return true;
}

/* input NAME ':' TYPE {raw | requires_grad} */
static bool parse_input(parser *p, token kw) {
    const char *s;
    size_t len;
    loc at, rgat = {0};
    lathe_dtype t;
    int rank;
    int64_t shape[LATHE_MAX_RANK];
    bool raw = false, rg = false;
    if (!top_level(p, kw) || !next(p) || !ident(p, "the input's name", &s, &len, &at) ||
        !expect(p, ':', "':' and the input's type") || !parse_type(p, &t, &rank, shape))
        return false;
    while (!end_of_stmt(p)) {
        if (is_word(p, "raw")) raw = true;
        else if (is_word(p, "requires_grad")) {
            rg = true;
            rgat = p->lx.tok.at;
        } else return expected(p, "raw, requires_grad or end of line");
        if (!next(p)) return false;
    }
    if (!live(p)) return true;
    if (p->info.ninputs == (int)(sizeof p->info.inputs / sizeof p->info.inputs[0]))
        return desc_err(p, LATHE_ERR_ARG, at, "too many inputs (at most %d)", p->info.ninputs);
    if (len >= sizeof p->info.inputs[0].name)
        return desc_err(p, LATHE_ERR_NAME, at, "the input name is too long (limit %zu bytes)",
                        sizeof p->info.inputs[0].name - 1);
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)len, s);
    value v;
    if (!desc_built(p, at, lathe_input(p->g, name, t, rank, shape), &v)) return false;
    if (rg && !status_ok(p, rgat, lathe_set_requires_grad(v.t, true))) return false;
    memcpy(p->info.inputs[p->info.ninputs].name, name, sizeof name);
    p->info.inputs[p->info.ninputs++].raw = raw;
    return set_var(p, s, len, at, v, false);
}

/* param NAME ':' TYPE [init=...] [frozen]  |  buffer NAME ':' TYPE [init=...] */
static bool parse_leaf(parser *p, bool buffer) {
    const char *s;
    size_t len;
    loc at, initat = {0};
    lathe_dtype t;
    int rank;
    int64_t shape[LATHE_MAX_RANK];
    bool frozen = false, has_init = false;
    lathe_leaf_init kind = LATHE_LEAF_INIT_AUTO;
    double a = 0;
    if (!next(p) || !ident(p, buffer ? "the buffer's name" : "the parameter's name", &s, &len, &at)) return false;
    if (is_punct(p, '.'))
        return desc_err(p, LATHE_ERR_PARSE, at,
                        "a %s's name is one word; dotted names such as fc.weight come from the block it is declared "
                        "in, called as fc (or from a layer called as fc)", buffer ? "buffer" : "param");
    if (!expect(p, ':', "':' and the type") || !parse_type(p, &t, &rank, shape))
        return false;
    while (!end_of_stmt(p)) {
        if (is_word(p, "init")) {
            initat = p->lx.tok.at;
            has_init = true;
            if (!next(p) || !expect(p, '=', "'=' after init") || !parse_init(p, &kind, &a)) return false;
            continue;
        }
        if (!buffer && is_word(p, "frozen")) frozen = true;
        else return expected(p, buffer ? "init=... or end of line" : "init=..., frozen or end of line");
        if (!next(p)) return false;
    }
    if (!live(p)) return true;
    char name[NAME_CAP];
    value v;
    if (!desc_leaf_name(p, s, len, at, NULL, name)) return false;
    desc_stamp(p, at);
    lathe_node *n = NULL; /* a block called again under its name shares its parameters */
    if (p->ncalls > 0 && !desc_shared_leaf(p, name, buffer, t, rank, shape, at, NULL, 0, &n)) return false;
    if (n) return set_var(p, s, len, at, (value){.k = V_TENSOR, .t = n, .at = at}, false);
    n = buffer ? lathe_buffer(p->g, name, t, rank, shape)
               : lathe_param(p->g, name, t, rank, shape, !frozen && lt_is_float(t));
    if (!desc_built(p, at, n, &v)) return false;
    if (has_init && !status_ok(p, initat, lathe_set_init(n, kind, a))) return false;
    return set_var(p, s, len, at, v, false);
}

/* let NAME '=' EXPR  |  batch NAME '=' EXPR */
static bool parse_let(parser *p, token kw, bool batch) {
    const char *s;
    size_t len;
    loc at;
    value v;
    if (!top_level(p, kw)) return false;
    if (batch && p->have_batch) return desc_err(p, LATHE_ERR_PARSE, kw.at, "the batch dimension is already declared");
    if (!next(p) || !ident(p, batch ? "the batch dimension's name" : "the constant's name", &s, &len, &at) ||
        !expect(p, '=', batch ? "'=' and the default batch size" : "'=' and the constant's value") ||
        !parse_expr(p, &v))
        return false;
    if (!live(p)) return true;
    char k[128];
    if (v.k != V_NUM)
        return desc_err(p, LATHE_ERR_ARG, v.at, "'%.*s' must be a number, got %s", (int)len, s,
                        desc_kind_str(&v, k, sizeof k));
    apply_define(p, s, len, &v.num);
    if (batch) {
        int64_t n;
        if (p->batch_opt > 0) v.num = (double)p->batch_opt;
        if (!int_value(p, &v, 1, "the batch size", &n)) return false;
        if (len >= sizeof p->info.batch_dim)
            return desc_err(p, LATHE_ERR_NAME, at, "the batch dimension's name is too long (limit %zu bytes)",
                            sizeof p->info.batch_dim - 1);
        snprintf(p->info.batch_dim, sizeof p->info.batch_dim, "%.*s", (int)len, s);
        p->info.batch = n;
        p->have_batch = true;
    }
    return set_var(p, s, len, at, v, true);
}

/* block NAME '(' [PARAM ['=' EXPR] {',' ...}] ')' '{' STMTS '}' */
static bool parse_block(parser *p, token kw) {
    blockdef b = {0};
    loc at;
    if (!top_level(p, kw)) return false;
    if (p->braces > 0)
        return desc_err(p, LATHE_ERR_PARSE, kw.at, "blocks are defined at the top level, not inside '{ }'");
    if (!next(p) || !ident(p, "the block's name", &b.s, &b.len, &at)) return false;
    if (desc_find_builtin(b.s, b.len) >= 0)
        return desc_err(p, LATHE_ERR_NAME, at, "'%.*s' is a built-in function; choose another name", (int)b.len, b.s);
    if (find_block(p, b.s, b.len) >= 0)
        return desc_err(p, LATHE_ERR_NAME, at, "block '%.*s' is already defined", (int)b.len, b.s);
    if (!expect(p, '(', "'(' and the block's parameters")) return false;
    while (!is_punct(p, ')')) {
        if (b.nparams == MAX_ARGS)
            return desc_err(p, LATHE_ERR_ARG, p->lx.tok.at, "a block takes at most %d parameters", MAX_ARGS);
        pspec *ps = &b.params[b.nparams++];
        loc pat;
        if (!ident(p, "a parameter name", &ps->s, &ps->len, &pat)) return false;
        for (int i = 0; i < b.nparams - 1; i++)
            if (same(b.params[i].s, b.params[i].len, ps->s, ps->len))
                return desc_err(p, LATHE_ERR_NAME, pat, "parameter '%.*s' is given twice", (int)ps->len, ps->s);
        ps->required = true;
        if (is_punct(p, '=')) {
            if (!next(p)) return false;
            ps->deftext = p->lx.tok.s;
            if (!parse_expr(p, &ps->def)) return false;
            size_t n = (size_t)(p->src + p->lx.tok.at.off - ps->deftext);
            while (ps->deflen < n && ps->deftext[ps->deflen] != '#' && ps->deftext[ps->deflen] != '\n') ps->deflen++;
            while (ps->deflen && strchr(" \t\r", ps->deftext[ps->deflen - 1])) ps->deflen--;
            ps->required = false;
        } else if (b.nparams > 1 && !b.params[b.nparams - 2].required) {
            return desc_err(p, LATHE_ERR_ARG, pat, "parameter '%.*s' needs a default, as the ones before it have",
                            (int)ps->len, ps->s);
        }
        if (!is_punct(p, ',')) break;
        if (!next(p)) return false;
    }
    if (!expect(p, ')', "',' or ')' after the block's parameters")) return false;
    b.open = p->lx.tok.at;
    if (!expect(p, '{', "'{' and the block's body")) return false;
    b.body = p->lx;
    p->in_def = true;
    p->skip++;
    bool ok = parse_stmts(p, true, b.open);
    p->skip--;
    p->in_def = false;
    if (!ok || !next(p)) return false;
    if (!live(p)) return true;
    if (!grow(p, (void **)&p->blocks, &p->capblocks, p->nblocks + 1, sizeof *p->blocks)) return false;
    p->blocks[p->nblocks++] = b;
    return true;
}

/* '{' STMTS '}' */
static bool parse_body(parser *p) {
    loc open = p->lx.tok.at;
    if (!expect(p, '{', "'{'") || !enter(p)) return false;
    p->braces++;
    bool ok = parse_stmts(p, true, open) && next(p);
    p->braces--;
    p->nest--;
    return ok;
}

/* if EXPR BODY [else (IF | BODY)] */
static bool parse_if(parser *p) {
    /* an 'else if' chain is a loop, not a recursion (a generated chain can be
     * long); the arms after a taken one are skipped until the chain ends */
    int skipped = 0;
    bool ok;
    for (;;) {
        value c;
        if (!next(p) || !parse_expr(p, &c)) {
            ok = false;
            break;
        }
        bool run = live(p);
        char k[128];
        if (run && c.k != V_NUM) {
            ok = desc_err(p, LATHE_ERR_ARG, c.at, "'if' needs a number as its condition, got %s (for tensors use where())",
                          desc_kind_str(&c, k, sizeof k));
            break;
        }
        bool taken = run && c.num != 0;
        p->skip += !taken;
        ok = parse_body(p);
        p->skip -= !taken;
        if (!ok || !is_word(p, "else")) break;
        p->skip += !run || taken;
        skipped += !run || taken;
        if (!next(p)) {
            ok = false;
            break;
        }
        if (!is_word(p, "if")) {
            ok = parse_body(p);
            break;
        }
    }
    p->skip -= skipped;
    return ok;
}

/* An integer bound of a for loop. */
static bool loop_bound(parser *p, const value *v, int64_t *out) {
    char k[128];
    if (v->k == V_NUM && desc_integral(v->num, out)) return true;
    return desc_err(p, LATHE_ERR_ARG, v->at, "a loop's bounds must be integers, got %s", desc_kind_str(v, k, sizeof k));
}

/* for NAME in (EXPR '..' EXPR | range '(' EXPR [',' EXPR] ')') BODY: the body
 * runs once per integer from the first bound up to (not including) the
 * second, unrolled while tracing, with NAME set to it.  Names the body binds
 * stay bound after the loop, as in Python. */
static bool parse_for(parser *p) {
    const char *s;
    size_t len;
    loc at;
    value lo = {.k = V_NUM}, hi;
    if (!next(p) || !ident(p, "the loop variable's name", &s, &len, &at)) return false;
    if (!is_word(p, "in")) return expected(p, "'in' after the loop variable");
    if (!next(p)) return false;
    lo.at = p->lx.tok.at;
    if (is_word(p, "range")) {
        if (!next(p) || !expect(p, '(', "'(' after range") || !parse_expr(p, &hi)) return false;
        if (is_punct(p, ',')) {
            lo = hi;
            if (!next(p) || !parse_expr(p, &hi)) return false;
        }
        if (!expect(p, ')', "')' after range's bounds")) return false;
    } else if (!parse_expr(p, &lo) || !expect(p, P_DOTDOT, "'..' between the loop's bounds") ||
               !parse_expr(p, &hi)) {
        return false;
    }
    if (!is_punct(p, '{')) return expected(p, "'{' and the loop's body");
    int64_t a = 0, b = 0;
    if (live(p) && (!loop_bound(p, &lo, &a) || !loop_bound(p, &hi, &b))) return false;
    if (!live(p) || b <= a) {
        p->skip++;
        bool ok = parse_body(p);
        p->skip--;
        return ok;
    }
    if (b - a > MAX_LOOP_ITERS - p->loopiters)
        return desc_err(p, LATHE_ERR_ARG, lo.at, "more than %d loop iterations in all", MAX_LOOP_ITERS);
    p->loopiters += b - a;
    lexer body = p->lx;
    for (int64_t i = a; i < b; i++) {
        p->lx = body;
        if (!set_var(p, s, len, at, (value){.k = V_NUM, .num = (double)i, .at = at}, false) || !parse_body(p))
            return false;
        if (p->returned) break;
    }
    return true;
}

/* no_grad BODY */
static bool parse_no_grad(parser *p) {
    bool run = live(p);
    if (!next(p)) return false;
    if (run) lathe_no_grad_begin(p->g);
    bool ok = parse_body(p);
    if (run) lathe_no_grad_end(p->g);
    return ok;
}

/* freeze PREFIX | unfreeze PREFIX; '*' is every parameter */
static bool parse_freeze(parser *p, bool freeze) {
    const char *s = "";
    size_t len = 0;
    loc at;
    if (!next(p)) return false;
    at = p->lx.tok.at;
    if (is_punct(p, '*')) {
        if (!next(p)) return false;
    } else if (!dotted(p, "a parameter-name prefix such as layer1. (or * for all)", true, &s, &len, &at)) {
        return false;
    }
    if (!live(p)) return true;
    char prefix[NAME_CAP];
    if (!desc_leaf_name(p, s, len, at, NULL, prefix)) return false;
    if (lathe_set_requires_grad_prefix(p->g, prefix, !freeze) == 0)
        return desc_err(p, LATHE_ERR_NAME, at, "%s '%s': no floating-point parameter name starts with it (yet)",
                        freeze ? "freeze" : "unfreeze", prefix);
    return true;
}

/* output NAME ['=' EXPR] */
static bool parse_output(parser *p, token kw) {
    const char *s;
    size_t len;
    loc at;
    value v = {0};
    if (!top_level(p, kw) || !next(p) || !ident(p, "the output's name", &s, &len, &at)) return false;
    bool assign = is_punct(p, '=');
    if (assign && (!next(p) || !parse_expr(p, &v))) return false;
    if (!live(p)) return true;
    if (!assign) {
        const var *w = lookup(p, s, len);
        if (!w)
            return desc_err(p, LATHE_ERR_NAME, at, "unknown name '%.*s' (write output NAME = EXPR to define it)",
                            (int)len, s);
        v = w->v;
        v.at = at;
    }
    char k[128], name[NAME_CAP];
    if (v.k != V_TENSOR)
        return desc_err(p, LATHE_ERR_ARG, v.at, "an output must be a tensor, got %s", desc_kind_str(&v, k, sizeof k));
    snprintf(name, sizeof name, "%.*s", (int)len, s);
    if (!status_ok(p, at, lathe_output(p->g, name, v.t))) return false;
    return !assign || set_var(p, s, len, at, v, false);
}

/* Is the statement's expression one call to a loss (with nothing after it)?
 * Then evaluation rebuilds it per sample. */
static int loss_call_ahead(parser *p) {
    int fi = p->lx.tok.kind == T_IDENT ? desc_find_builtin(p->lx.tok.s, p->lx.tok.len) : -1;
    if (fi != B_CROSS_ENTROPY && fi != B_NLL_LOSS && fi != B_MSE_LOSS) return -1;
    lexer save = p->lx;
    int depth = 0, r = -1;
    lathe_status st = lathe_graph_status(p->g);
    while (next(p) && p->lx.tok.kind != T_EOF) {
        if (is_punct(p, '(')) depth++;
        else if (is_punct(p, ')') && --depth == 0) {
            if (next(p) && end_of_stmt(p)) r = fi;
            break;
        } else if (depth == 0) break;
    }
    /* a token error found here is reported again when the statement is read */
    if (st == LATHE_OK) lathe_graph_clear_error(p->g);
    p->lx = save;
    return r;
}

/* Whether the label's logit is among the 5 largest along the class axis 1
 * (fewer than 5 logits above it; ties count for the label, as torch.topk
 * may take either), times weight, as f32: top-5 accuracy's elements. */
static lathe_node *top5(lathe_graph *g, lathe_node *x, lathe_node *y, lathe_node *weight) {
    int r = lathe_node_rank(x);
    int64_t C = lathe_node_shape(x)[1], s[LATHE_MAX_RANK], is[LATHE_MAX_RANK];
    for (int d = 0; d < r; d++) s[d] = d == 1 ? 1 : lathe_node_shape(x)[d], is[d] = d == 1 ? C : 1;
    int64_t *iota = malloc(sizeof *iota * (size_t)(C ? C : 1));
    if (!iota) return NULL;
    for (int64_t i = 0; i < C; i++) iota[i] = i;
    lathe_node *ar = lathe_const(g, LATHE_I64, r, is, iota);
    free(iota);
    lathe_node *hit = lathe_eq(g, lathe_reshape(g, y, r, s), ar);
    lathe_node *lab = lathe_sum(g, lathe_where(g, hit, x, lathe_scalar(g, lathe_node_dtype(x), 0)), LATHE_AXES(1), true);
    lathe_node *above = lathe_sum(g, lathe_cast(g, lathe_gt(g, x, lab), LATHE_F32), LATHE_AXES(1), false);
    lathe_node *in5 = lathe_cast(g, lathe_lt(g, above, lathe_scalar(g, LATHE_F32, 5)), LATHE_F32);
    return lathe_mul(g, in5, lathe_cast(g, weight, LATHE_F32));
}

/* loss EXPR: the output "loss" (see lathe_desc_options). */
static bool parse_loss(parser *p, token kw) {
    if (!top_level(p, kw)) return false;
    if (p->have_loss) return desc_err(p, LATHE_ERR_PARSE, kw.at, "the model already has a 'loss'");
    if (!next(p)) return false;
    loc at = p->lx.tok.at;
    int fi = loss_call_ahead(p);
    value v;
    lathe_node *correct = NULL, *correct5 = NULL, *weight = NULL;
    if (fi < 0) {
        if (!parse_expr(p, &v)) return false;
    } else {
        token name = p->lx.tok;
        call c = {.fn = name.s, .fnlen = (int)name.len, .at = name.at};
        arg a[MAX_ARGS];
        int na;
        lathe_node *x, *y;
        lathe_graph *g = p->g;
        desc_builtin_params(fi, &c);
        if (!next(p) || !parse_args(p, &c, a, &na) || !bind(p, &c, a, na)) return false;
        if (!live(p)) return true;
        if (!desc_call_loss(p, fi, &c, !p->training, &v, &weight)) return false;
        x = c.v[0].t, y = c.v[1].t;
        lathe_node *l = v.t;
        if (!p->training && fi == B_MSE_LOSS && lathe_node_rank(l) > 1) {
            int64_t axes[LATHE_MAX_RANK];
            for (int i = 1; i < lathe_node_rank(l); i++) axes[i - 1] = i;
            l = lathe_mean(g, l, lathe_node_rank(l) - 1, axes, false);
        }
        if (l && !p->training && fi != B_MSE_LOSS) {
            correct = lathe_cast(g, lathe_eq(g, lathe_argmax(g, x, 1, false), y), lathe_node_dtype(weight));
            correct = lathe_mul(g, correct, weight);
            correct = lathe_cast(g, correct, LATHE_F32);
            correct5 = top5(g, x, y, weight);
        }
        if (!desc_built(p, c.at, l, &v)) return false;
        p->info.classify = fi != B_MSE_LOSS;
        if (lathe_node_name(y) && !strcmp(lathe_node_op(y), "input"))
            snprintf(p->info.label, sizeof p->info.label, "%s", lathe_node_name(y));
    }
    if (!live(p)) return true;
    char k[128];
    if (v.k != V_TENSOR)
        return desc_err(p, LATHE_ERR_ARG, at, "the loss must be a tensor, got %s", desc_kind_str(&v, k, sizeof k));
    if (p->training && lathe_node_numel(v.t) != 1) {
        lathe_node_type_str(v.t, k, sizeof k);
        return desc_err(p, LATHE_ERR_SHAPE, at,
                        "the loss must have one element to train, got %s (reduce it with mean())", k);
    }
    p->have_loss = p->info.has_loss = true;
    if (!status_ok(p, at, lathe_output(p->g, "loss", v.t))) return false;
    if (correct && !status_ok(p, at, lathe_output(p->g, "correct", correct))) return false;
    if (weight && !status_ok(p, at, lathe_output(p->g, "weight", weight))) return false;
    if (correct5 && !status_ok(p, at, lathe_output(p->g, "correct5", correct5))) return false;
    return !p->training || status_ok(p, at, lathe_mark_backward(p->g, v.t, NULL));
}

/* backward EXPR [',' COTANGENT]; the cotangent is a tensor, a number or a list
 * of numbers with the value's shape. */
static bool parse_backward(parser *p, token kw) {
    value v, cv = {0};
    if (!top_level(p, kw) || !next(p) || !parse_expr(p, &v)) return false;
    bool has_cot = is_punct(p, ',');
    if (has_cot && (!next(p) || !parse_expr(p, &cv))) return false;
    if (!live(p)) return true;
    char k[128];
    if (v.k != V_TENSOR)
        return desc_err(p, LATHE_ERR_ARG, v.at, "backward needs a tensor, got %s", desc_kind_str(&v, k, sizeof k));
    lathe_dtype t = lathe_node_dtype(v.t);
    if (!lt_is_float(t)) {
        lathe_node_type_str(v.t, k, sizeof k);
        return desc_err(p, LATHE_ERR_DTYPE, v.at, "backward needs a floating-point value, got %s", k);
    }
    lathe_node *cot = cv.k == V_TENSOR ? cv.t : NULL;
    if (has_cot && !cot &&
        !desc_make_const(p, &cv, t, lathe_node_rank(v.t), lathe_node_shape(v.t), "the cotangent", &cot))
        return false;
    return !p->training || status_ok(p, kw.at, lathe_mark_backward(p->g, v.t, cot));
}

/* NAME '=' EXPR */
static bool parse_assign(parser *p) {
    const char *s;
    size_t len;
    loc at;
    value v;
    if (!ident(p, "a statement", &s, &len, &at)) return false;
    if (!is_punct(p, '=')) {
        char b[64];
        return desc_err(p, LATHE_ERR_PARSE, p->lx.tok.at,
                        "expected '=' after '%.*s', got %s (a statement is NAME = EXPR or starts with a keyword "
                        "such as output)",
                        (int)len, s, describe(&p->lx.tok, b, sizeof b));
    }
    if (!next(p) || !parse_expr(p, &v)) return false;
    return !live(p) || set_var(p, s, len, at, v, false);
}

static bool parse_stmt(parser *p) {
    token t = p->lx.tok;
    desc_stamp(p, t.at);
    if (t.kind != T_IDENT) return expected(p, "a statement");
    if (is_word(p, "model")) {
        const char *s;
        size_t len;
        loc at;
        if (!top_level(p, t)) return false;
        if (p->have_model) return desc_err(p, LATHE_ERR_PARSE, t.at, "the model is already named");
        if (!next(p) || !dotted(p, "the model's name", false, &s, &len, &at)) return false;
        if (live(p)) snprintf(p->info.model, sizeof p->info.model, "%.*s", (int)len, s);
        p->have_model = true;
        return true;
    }
    if (is_word(p, "batch")) return parse_let(p, t, true);
    if (is_word(p, "let")) return parse_let(p, t, false);
    if (is_word(p, "input")) return parse_input(p, t);
    if (is_word(p, "param")) return parse_leaf(p, false);
    if (is_word(p, "buffer")) return parse_leaf(p, true);
    if (is_word(p, "block")) return parse_block(p, t);
    if (is_word(p, "if")) return parse_if(p);
    if (is_word(p, "for")) return parse_for(p);
    if (is_word(p, "no_grad")) return parse_no_grad(p);
    if (is_word(p, "freeze") || is_word(p, "unfreeze")) return parse_freeze(p, t.s[0] == 'f');
    if (is_word(p, "output")) return parse_output(p, t);
    if (is_word(p, "loss")) return parse_loss(p, t);
    if (is_word(p, "backward")) return parse_backward(p, t);
    if (is_word(p, "return")) {
        value v;
        if (!p->in_def && p->ncalls == 0) return desc_err(p, LATHE_ERR_PARSE, t.at, "'return' outside a block");
        if (!next(p) || !parse_expr(p, &v)) return false;
        if (live(p)) {
            p->ret = v;
            p->returned = true;
        }
        return true;
    }
    if (is_word(p, "else"))
        return desc_err(p, LATHE_ERR_PARSE, t.at, "'else' must follow the '}' of an 'if' on the same line");
    return parse_assign(p);
}

/* Statements up to the end of the file, or with braces up to the '}' that
 * closes the '{' at open (which is left as the current token). */
static bool parse_stmts(parser *p, bool braces, loc open) {
    for (;;) {
        while (p->lx.tok.kind == T_NL)
            if (!next(p)) return false;
        if (p->lx.tok.kind == T_EOF) {
            if (!braces) return true;
            return desc_err(p, LATHE_ERR_PARSE, p->lx.tok.at,
                            "unterminated block: expected '}' to close the '{' at line %d, column %d", open.line,
                            open.col);
        }
        if (is_punct(p, '}')) {
            if (braces) return true;
            return desc_err(p, LATHE_ERR_PARSE, p->lx.tok.at, "'}' without a matching '{'");
        }
        if (!parse_stmt(p)) return false;
        if (!end_of_stmt(p)) return expected(p, "end of line after the statement");
    }
}

/* ---- entry points -------------------------------------------------------------------------------- */

/* Check "NAME=NUMBER" defines before reading the file. */
static bool read_defines(parser *p, const lathe_desc_options *opt) {
    if (opt->ndefines <= 0) return true;
    if (!opt->defines)
        return lt_fail(p->g, LATHE_ERR_ARG, "%s: %d defines but the list is NULL", p->file, opt->ndefines), false;
    p->defs = calloc((size_t)opt->ndefines, sizeof *p->defs);
    if (!p->defs) return desc_oom(p);
    for (int i = 0; i < opt->ndefines; i++) {
        const char *d = opt->defines[i] ? opt->defines[i] : "", *eq = strchr(d, '=');
        size_t n = eq ? (size_t)(eq - d) : 0;
        bool ok = n > 0 && is_alpha((unsigned char)d[0]);
        for (size_t k = 1; ok && k < n; k++) ok = is_alnum((unsigned char)d[k]);
        char *end = NULL;
        double v = ok ? strtod(eq + 1, &end) : 0;
        if (!ok || end == eq + 1 || *end || !isfinite(v))
            return lt_fail(p->g, LATHE_ERR_ARG, "%s: bad define '%s': expected NAME=NUMBER (such as width=64)", p->file,
                           d),
                   false;
        p->defs[p->ndefs++] = (define){d, n, v, false};
    }
    return true;
}

/* Defines that matched no let or batch. */
static bool check_defines(parser *p) {
    for (int i = 0; i < p->ndefs; i++) {
        if (p->defs[i].used) continue;
        char sug[96];
        suggestion s = {p->defs[i].s, p->defs[i].len, NULL, 0, 99};
        for (int k = 0; k < p->nvars; k++)
            if (p->vars[k].constant) consider(&s, p->vars[k].s, p->vars[k].len);
        return lt_fail(p->g, LATHE_ERR_NAME, "%s: unknown define '%.*s': the file has no 'let %.*s'%s", p->file,
                       (int)p->defs[i].len, p->defs[i].s, (int)p->defs[i].len, p->defs[i].s,
                       did_you_mean(&s, sug, sizeof sug)),
               false;
    }
    return true;
}

lathe_status lathe_desc_parse(lathe_graph *g, const char *src, size_t len, const char *filename,
                              const lathe_desc_options *opt, lathe_desc_info *info) {
    static const lathe_desc_options defaults = {.training = true};
    if (info) memset(info, 0, sizeof *info);
    if (!g) return LATHE_ERR_ARG;
    const char *file = filename ? filename : "<input>";
    if (!opt) opt = &defaults;
    if (g->status != LATHE_OK) return g->status;
    if (g->nnodes || g->nout || g->nupd || g->nmarks)
        return lt_fail(g, LATHE_ERR_ARG, "%s: lathe_desc_parse needs an empty graph; this one has %d nodes", file,
                       g->nnodes),
               LATHE_ERR_ARG;
    if (!src && len) return lt_fail(g, LATHE_ERR_ARG, "%s: source is NULL", file), LATHE_ERR_ARG;
    g->source = lt_strdup(g, file);
    if (len > INT_MAX / 2) return lt_fail(g, LATHE_ERR_PARSE, "%s: %zu bytes is too large", file, len), LATHE_ERR_PARSE;
    if (opt->batch < 0)
        return lt_fail(g, LATHE_ERR_ARG, "%s: batch size %lld is negative", file, (long long)opt->batch), LATHE_ERR_ARG;
    parser p = {.g = g, .file = file, .src = src ? src : "", .len = len, .training = opt->training,
                .batch_opt = opt->batch, .lx = {.line = 1}};
    /* the model's name defaults to the file's stem */
    const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file, *dot = strrchr(base, '.');
    snprintf(p.info.model, sizeof p.info.model, "%.*s", (int)(dot && dot > base ? dot - base : (int)strlen(base)),
             base);
    bool ok = read_defines(&p, opt) && next(&p) && parse_stmts(&p, false, (loc){0}) && check_defines(&p);
    g->cur_line = g->cur_col = 0;
    free(p.vars);
    free(p.items);
    free(p.blocks);
    free(p.defs);
    if (!ok) return g->status != LATHE_OK ? g->status : LATHE_ERR_PARSE;
    if (info) *info = p.info;
    return LATHE_OK;
}

lathe_status lathe_desc_parse_file(lathe_graph *g, const char *path, const lathe_desc_options *opt,
                                   lathe_desc_info *info) {
    if (info) memset(info, 0, sizeof *info);
    if (!g || !path) return LATHE_ERR_ARG;
    char *buf;
    size_t n;
    lathe_status st = lt_read_file(g, path, &buf, &n);
    if (st != LATHE_OK) return st;
    st = lathe_desc_parse(g, buf, n, path, opt, info);
    free(buf);
    return st;
}

bool lathe_desc_is_description_text(const char *src, size_t len) {
    size_t i = 0;
    for (;;) {
        while (i < len && strchr(" \t\r\n", src[i])) i++;
        if (i < len && src[i] == '#') {
            while (i < len && src[i] != '\n') i++;
            continue;
        }
        break;
    }
    return i < len && src[i] != '%';
}

bool lathe_desc_is_description(const char *path) {
    size_t n = path ? strlen(path) : 0;
    if (n > 6 && strcmp(path + n - 6, ".lathe") == 0) return true;
    FILE *f = n ? fopen(path, "rb") : NULL;
    if (!f) return false;
    char buf[4096];
    size_t k = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return lathe_desc_is_description_text(buf, k);
}
