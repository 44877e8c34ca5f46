/* safetensors.c - the safetensors reader and writer.
 *
 * Reading trusts nothing.  The header length is checked against the file
 * size, the header is checked as UTF-8 and then as strict JSON by a small
 * validating scanner of our own, and only then parsed into a tree by cJSON.
 * The scanner also records where every number token is, because cJSON keeps
 * numbers only as doubles: 1.0 would pass for 1 and 2^53 + 1 would round.  Each
 * tree number is tied to its token by document order (its valueint becomes
 * the token index), and shapes and offsets are read from the token text.
 * Entries are then checked field by field, sorted by data offset and checked
 * to tile the data section exactly; only then is data copied, each tensor to
 * its own 64-byte aligned slot of one allocation, and BOOL bytes checked.
 *
 * Writing builds the header with cJSON (numbers go in as raw text, so large
 * ones print as integers, never as 1e+16), pads it with spaces to a multiple
 * of 8, and writes header and data to a temporary file that is fsynced and
 * renamed over the target, then fsyncs the directory. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#include "fileerr.h"
#include "safetensors.h"

/* Tensor bytes are copied as they are: the data is little-endian on disk. */
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data is little-endian and is copied without swapping");
#else
#error "cannot tell the byte order; safetensors.c assumes little-endian"
#endif

int64_t lathe_st_test_fail_after = -1;

#define ALIGN 64           /* each tensor's data starts at a multiple of this */
#define MAX_DEPTH 64       /* JSON nesting; a valid header needs 3 */
#define MAX_NUMBER 63      /* longest number token (cJSON truncates longer ones) */

/* ---- dtypes ---- */

/* The safetensors names of the runtime's dtypes (their sizes: lathe_rt_dtype_size). */
static const char *const dtype_names[] = {
    [LATHE_RT_F32] = "F32",
    [LATHE_RT_F64] = "F64",
    [LATHE_RT_I64] = "I64",
    [LATHE_RT_BOOL] = "BOOL",
    [LATHE_RT_U8] = "U8",
    [LATHE_RT_I32] = "I32",
};
static_assert(sizeof dtype_names / sizeof dtype_names[0] == LATHE_RT_NDTYPES, "one name per dtype");

/* Real safetensors dtypes that Lathe does not read. */
static const char *const unsupported_dtypes[] = {
    "F16", "BF16", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4",
    "I8", "I16", "U16", "U32", "U64", "C64",
};

const char *lathe_st_dtype_name(lathe_rt_dtype dtype) {
    return dtype >= 0 && dtype < LATHE_RT_NDTYPES ? dtype_names[dtype] : "?";
}

/* ---- small helpers ---- */

/* Index of the first byte of s[0..n) that does not begin a well-formed UTF-8
 * sequence (no overlongs, surrogates or code points past U+10FFFF), or n. */
static size_t utf8_check(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F;
        else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07;
        else return i;
        if (n - i < len) return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return i;
        if (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) return i;
        i += len;
    }
    return n;
}

/* a * b and a + b for non-negative int64, false on overflow. */
static bool mul64(int64_t a, int64_t b, int64_t *out) {
    if (a != 0 && b > INT64_MAX / a) return false;
    *out = a * b;
    return true;
}
static bool add64(int64_t a, int64_t b, int64_t *out) {
    if (b > INT64_MAX - a) return false;
    *out = a + b;
    return true;
}

/* Bytes of a tensor with this shape and dtype; false on overflow.  A zero
 * dim makes it 0 whatever the others are. */
static bool tensor_bytes(int rank, const int64_t *shape, lathe_rt_dtype dtype, int64_t *out) {
    int64_t count = 1;
    for (int i = 0; i < rank; i++)
        if (shape[i] == 0) {
            *out = 0;
            return true;
        }
    for (int i = 0; i < rank; i++)
        if (!mul64(count, shape[i], &count)) return false;
    return mul64(count, (int64_t)lathe_rt_dtype_size(dtype), out);
}

static void put_le64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint64_t get_le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* ---- the file ---- */

struct lathe_st_file {
    int n;
    lathe_st_tensor *t;    /* n, in data-offset order */
    int64_t *begin;        /* n: each tensor's offset in the data section */
    int *by_name;          /* n indices into t, sorted by name */
    int nmeta;
    const char **meta;     /* 2 * nmeta: key, value, ... sorted by key */
    char *strings;         /* every name, key and value */
    unsigned char *data;   /* ALIGN-aligned; each tensor at a multiple of ALIGN */
    int64_t data_start;    /* file offset of the data section */
};

void lathe_st_free(lathe_st_file *f) {
    if (!f) return;
    free(f->t);
    free(f->begin);
    free(f->by_name);
    free(f->meta);
    free(f->strings);
    free(f->data);
    free(f);
}

int lathe_st_count(const lathe_st_file *f) { return f ? f->n : 0; }

const lathe_st_tensor *lathe_st_at(const lathe_st_file *f, int i) {
    return f && i >= 0 && i < f->n ? &f->t[i] : NULL;
}

const lathe_st_tensor *lathe_st_find(const lathe_st_file *f, const char *name) {
    if (!f || !name) return NULL;
    int lo = 0, hi = f->n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(name, f->t[f->by_name[mid]].name);
        if (c == 0) return &f->t[f->by_name[mid]];
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

const char *lathe_st_meta(const lathe_st_file *f, const char *key) {
    if (!f || !key) return NULL;
    int lo = 0, hi = f->nmeta;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(key, f->meta[2 * mid]);
        if (c == 0) return f->meta[2 * mid + 1];
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

/* ---- reading: context and messages ---- */

typedef struct {
    uint32_t at;           /* header byte of the token */
    uint8_t len;
    bool is_int;           /* no fraction or exponent */
} numtok;

typedef struct {
    const char *what;      /* the source, first in every message */
    char *err;
    size_t errlen;
    const char *hdr;       /* header text, NUL-terminated copy */
    size_t hlen, pos;      /* pos: the JSON scanner's position */
    int depth;
    numtok *num;           /* number tokens in document order */
    size_t nnum, numcap;
} reader;

static void rfail(reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rfail(reader *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    lt_file_verrf(r->err, r->errlen, r->what, fmt, ap);
    va_end(ap);
}

/* ---- reading: a strict JSON scanner (RFC 8259) ---- */

static bool jfail(reader *r, size_t at, const char *msg) {
    if (at >= r->hlen)
        rfail(r, "header is not valid JSON: %s at the end of the header (header byte %zu, "
                 "file offset %zu)", msg, at, at + 8);
    else
        rfail(r, "header is not valid JSON: %s at header byte %zu (file offset %zu)",
              msg, at, at + 8);
    return false;
}

static void jspace(reader *r) {
    while (r->pos < r->hlen) {
        char c = r->hdr[r->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        r->pos++;
    }
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static bool hex4(const reader *r, size_t at, unsigned *out) {
    if (at > r->hlen || r->hlen - at < 4) return false;
    unsigned v = 0;
    for (size_t i = at; i < at + 4; i++) {
        char c = r->hdr[i];
        int d = is_digit(c) ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return false;
        v = v << 4 | (unsigned)d;
    }
    *out = v;
    return true;
}

static bool jstring(reader *r) {
    size_t i = r->pos + 1; /* past the quote */
    for (;;) {
        if (i >= r->hlen) return jfail(r, r->pos, "unterminated string");
        unsigned char c = (unsigned char)r->hdr[i];
        if (c == '"') {
            r->pos = i + 1;
            return true;
        }
        if (c < 0x20) return jfail(r, i, "control character in a string");
        if (c != '\\') {
            i++;
            continue;
        }
        if (i + 1 >= r->hlen) return jfail(r, i, "unterminated escape");
        char e = r->hdr[i + 1];
        if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't') {
            i += 2;
            continue;
        }
        unsigned u, lo;
        if (e != 'u' || !hex4(r, i + 2, &u)) return jfail(r, i, "bad escape");
        if (u == 0) return jfail(r, i, "\\u0000 (NUL) in a string is not supported");
        if (u >= 0xDC00 && u <= 0xDFFF) return jfail(r, i, "lone low surrogate escape");
        if (u >= 0xD800 && u <= 0xDBFF) {
            if (i + 7 >= r->hlen || r->hdr[i + 6] != '\\' || r->hdr[i + 7] != 'u' ||
                !hex4(r, i + 8, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                return jfail(r, i, "high surrogate escape without a low surrogate");
            i += 6;
        }
        i += 6;
    }
}

static bool jnumber(reader *r) {
    const char *s = r->hdr;
    size_t start = r->pos, i = start, n = r->hlen;
    bool is_int = true;
    if (s[i] == '-') i++;
    if (i >= n || !is_digit(s[i])) return jfail(r, start, "bad number");
    if (s[i] == '0') {
        i++;
        if (i < n && is_digit(s[i])) return jfail(r, start, "number with a leading zero");
    } else
        while (i < n && is_digit(s[i])) i++;
    if (i < n && s[i] == '.') {
        is_int = false;
        i++;
        if (i >= n || !is_digit(s[i])) return jfail(r, start, "bad number");
        while (i < n && is_digit(s[i])) i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        is_int = false;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= n || !is_digit(s[i])) return jfail(r, start, "bad number");
        while (i < n && is_digit(s[i])) i++;
    }
    if (i - start > MAX_NUMBER) return jfail(r, start, "number longer than 63 characters");
    if (r->nnum == r->numcap) {
        size_t cap = r->numcap ? 2 * r->numcap : 64;
        numtok *p = realloc(r->num, cap * sizeof *p);
        if (!p) return jfail(r, start, "out of memory");
        r->num = p;
        r->numcap = cap;
    }
    r->num[r->nnum++] = (numtok){(uint32_t)start, (uint8_t)(i - start), is_int};
    r->pos = i;
    return true;
}

static bool jvalue(reader *r);

/* An object or array, at its opening bracket. */
static bool jcontainer(reader *r, bool object) {
    char close = object ? '}' : ']';
    if (++r->depth > MAX_DEPTH) return jfail(r, r->pos, "nesting deeper than 64 levels");
    r->pos++;
    jspace(r);
    if (r->pos < r->hlen && r->hdr[r->pos] == close) {
        r->pos++;
        r->depth--;
        return true;
    }
    for (;;) {
        if (object) {
            jspace(r);
            if (r->pos >= r->hlen || r->hdr[r->pos] != '"') return jfail(r, r->pos, "expected a string key");
            if (!jstring(r)) return false;
            jspace(r);
            if (r->pos >= r->hlen || r->hdr[r->pos] != ':') return jfail(r, r->pos, "expected ':'");
            r->pos++;
        }
        if (!jvalue(r)) return false;
        jspace(r);
        if (r->pos < r->hlen && r->hdr[r->pos] == ',') {
            r->pos++;
            continue;
        }
        if (r->pos < r->hlen && r->hdr[r->pos] == close) {
            r->pos++;
            r->depth--;
            return true;
        }
        return jfail(r, r->pos, object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static bool jliteral(reader *r, const char *word) {
    size_t len = strlen(word);
    if (r->hlen - r->pos < len || memcmp(r->hdr + r->pos, word, len) != 0)
        return jfail(r, r->pos, "unexpected character");
    r->pos += len;
    return true;
}

static bool jvalue(reader *r) {
    jspace(r);
    if (r->pos >= r->hlen) return jfail(r, r->pos, "unexpected end");
    char c = r->hdr[r->pos];
    switch (c) {
    case '{': return jcontainer(r, true);
    case '[': return jcontainer(r, false);
    case '"': return jstring(r);
    case 't': return jliteral(r, "true");
    case 'f': return jliteral(r, "false");
    case 'n': return jliteral(r, "null");
    default:
        if (c == '-' || is_digit(c)) return jnumber(r);
        return jfail(r, r->pos, "unexpected character");
    }
}

/* Tie each number in the tree to its token: document order is the same. */
static void tie_numbers(cJSON *node, size_t *k) {
    if (cJSON_IsNumber(node)) node->valueint = (int)(*k)++;
    for (cJSON *c = node->child; c; c = c->next) tie_numbers(c, k);
}

/* ---- reading: the header's entries ---- */

typedef struct {
    const char *name;      /* cJSON's key, copied into the file later */
    int dtype, rank, index; /* dtype: a lathe_rt_dtype, -1 until known; index: position among the entries in the JSON */
    int64_t shape[LATHE_ST_MAX_RANK];
    int64_t begin, end;
} entry;

static const char *json_kind(const cJSON *v) {
    if (cJSON_IsObject(v)) return "an object";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    return "null";
}

/* v as a non-negative int64 read from its token; NULL, or why not. */
static const char *read_int(const reader *r, const cJSON *v, int64_t *out) {
    if (!cJSON_IsNumber(v)) return json_kind(v);
    numtok t = r->num[v->valueint];
    const char *p = r->hdr + t.at;
    if (p[0] == '-') return "negative";
    if (!t.is_int) return "not an integer";
    int64_t x = 0;
    for (int i = 0; i < t.len; i++) {
        int d = p[i] - '0';
        if (x > (INT64_MAX - d) / 10) return "out of range";
        x = x * 10 + d;
    }
    *out = x;
    return NULL;
}

/* "shape[1] is 1.5 (header byte 40), not an integer" and the like. */
static bool bad_int(reader *r, const char *name, const char *field, int i, const cJSON *v,
                    const char *why) {
    if (cJSON_IsNumber(v)) {
        numtok t = r->num[v->valueint];
        rfail(r, "tensor '%.*s': %s[%d] is %.*s (header byte %u), %s; it must be a non-negative "
                 "integer", SHOW(name), field, i, (int)t.len, r->hdr + t.at, (unsigned)t.at, why);
    } else
        rfail(r, "tensor '%.*s': %s[%d] is %s, not a non-negative integer", SHOW(name), field, i, why);
    return false;
}

static bool read_entry(reader *r, const cJSON *e, entry *out) {
    const char *name = e->string;
    out->name = name;
    if (!cJSON_IsObject(e))
        return rfail(r, "tensor '%.*s': entry is %s, not an object", SHOW(name), json_kind(e)), false;
    const cJSON *dt = NULL, *sh = NULL, *off = NULL;
    for (const cJSON *c = e->child; c; c = c->next) {
        const cJSON **slot = !strcmp(c->string, "dtype") ? &dt
                           : !strcmp(c->string, "shape") ? &sh
                           : !strcmp(c->string, "data_offsets") ? &off : NULL;
        if (!slot) continue; /* unknown fields are ignored, as the reference does */
        if (*slot)
            return rfail(r, "tensor '%.*s': duplicate field \"%s\"", SHOW(name), c->string), false;
        *slot = c;
    }
    const char *missing = !dt ? "dtype" : !sh ? "shape" : !off ? "data_offsets" : NULL;
    if (missing) return rfail(r, "tensor '%.*s': missing \"%s\"", SHOW(name), missing), false;

    if (!cJSON_IsString(dt))
        return rfail(r, "tensor '%.*s': \"dtype\" is %s, not a string", SHOW(name), json_kind(dt)), false;
    out->dtype = -1;
    for (int i = 0; i < LATHE_RT_NDTYPES; i++)
        if (!strcmp(dt->valuestring, dtype_names[i])) out->dtype = i;
    if (out->dtype < 0) {
        for (size_t i = 0; i < sizeof unsupported_dtypes / sizeof *unsupported_dtypes; i++)
            if (!strcmp(dt->valuestring, unsupported_dtypes[i]))
                return rfail(r, "tensor '%.*s': dtype \"%s\" is unsupported (Lathe reads F32, F64, "
                                "I64, BOOL, U8 and I32)", SHOW(name), dt->valuestring), false;
        return rfail(r, "tensor '%.*s': unknown dtype \"%.*s\"", SHOW(name), SHOW(dt->valuestring)),
               false;
    }

    if (!cJSON_IsArray(sh))
        return rfail(r, "tensor '%.*s': \"shape\" is %s, not an array of non-negative integers",
                     SHOW(name), json_kind(sh)), false;
    int rank = 0;
    for (const cJSON *c = sh->child; c; c = c->next) rank++;
    if (rank > LATHE_ST_MAX_RANK)
        return rfail(r, "tensor '%.*s': rank %d is more than the maximum of %d", SHOW(name), rank,
                     LATHE_ST_MAX_RANK), false;
    out->rank = rank;
    int i = 0;
    for (const cJSON *c = sh->child; c; c = c->next, i++) {
        const char *why = read_int(r, c, &out->shape[i]);
        if (why) return bad_int(r, name, "shape", i, c, why);
    }

    int noff = 0;
    for (const cJSON *c = cJSON_IsArray(off) ? off->child : NULL; c; c = c->next) noff++;
    if (!cJSON_IsArray(off) || noff != 2) {
        char what[32];
        if (cJSON_IsArray(off)) snprintf(what, sizeof what, "an array of %d", noff);
        else snprintf(what, sizeof what, "%s", json_kind(off));
        return rfail(r, "tensor '%.*s': \"data_offsets\" is %s, not an array of two non-negative "
                        "integers [begin, end]", SHOW(name), what), false;
    }
    int64_t be[2];
    i = 0;
    for (const cJSON *c = off->child; c; c = c->next, i++) {
        const char *why = read_int(r, c, &be[i]);
        if (why) return bad_int(r, name, "data_offsets", i, c, why);
    }
    out->begin = be[0];
    out->end = be[1];
    if (out->begin > out->end)
        return rfail(r, "tensor '%.*s': data_offsets [%" PRId64 ", %" PRId64 "] have begin > end",
                     SHOW(name), out->begin, out->end), false;

    char shape[256];
    lt_format_shape(shape, sizeof shape, rank, out->shape);
    int64_t bytes;
    if (!tensor_bytes(rank, out->shape, out->dtype, &bytes))
        return rfail(r, "tensor '%.*s': shape %s of %s overflows: its size in bytes does not fit in "
                        "64 bits", SHOW(name), shape, dtype_names[out->dtype]), false;
    if (bytes != out->end - out->begin)
        return rfail(r, "tensor '%.*s': shape %s of %s needs %" PRId64 " bytes but data_offsets [%"
                        PRId64 ", %" PRId64 "] span %" PRId64, SHOW(name), shape,
                     dtype_names[out->dtype], bytes, out->begin, out->end, out->end - out->begin),
               false;
    return true;
}

static int by_offset(const void *a, const void *b) {
    const entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

typedef struct {
    const char *name;
    int index;
    const char *value;     /* metadata only */
} named;

static int by_name(const void *a, const void *b) {
    const named *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

static size_t round_up(size_t x) { return (x + ALIGN - 1) / ALIGN * ALIGN; }

/* Check the header r->hdr and lay out the file: everything but the tensor
 * bytes, whose slots are allocated.  data_len: bytes after the header. */
static lathe_st_file *read_header(reader *r, int64_t data_len) {
    lathe_st_file *f = NULL;
    cJSON *root = NULL;
    entry *ents = NULL;
    named *names = NULL, *metas = NULL;

    size_t bad = utf8_check((const unsigned char *)r->hdr, r->hlen);
    if (bad < r->hlen) {
        rfail(r, "header is not valid UTF-8 at header byte %zu (file offset %zu)", bad, bad + 8);
        goto fail;
    }
    r->pos = 0;
    if (!jvalue(r)) goto fail;
    jspace(r);
    if (r->pos < r->hlen) {
        jfail(r, r->pos, "trailing characters after the JSON value");
        goto fail;
    }
    root = cJSON_ParseWithLength(r->hdr, r->hlen);
    size_t tied = 0;
    if (root) tie_numbers(root, &tied);
    if (!root || tied != r->nnum) {
        rfail(r, "header: cJSON could not parse it (out of memory?)");
        goto fail;
    }
    if (!cJSON_IsObject(root)) {
        rfail(r, "header is %s, not a JSON object", json_kind(root));
        goto fail;
    }

    /* Entries and metadata, in JSON order. */
    size_t nent = 0, strbytes = 0;
    const cJSON *meta = NULL;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (strcmp(c->string, "__metadata__") != 0) {
            nent++;
            strbytes += strlen(c->string) + 1;
            continue;
        }
        if (meta) {
            rfail(r, "header has \"__metadata__\" twice");
            goto fail;
        }
        meta = c;
        if (!cJSON_IsObject(c)) {
            rfail(r, "\"__metadata__\" is %s, not an object of strings", json_kind(c));
            goto fail;
        }
        for (const cJSON *m = c->child; m; m = m->next) {
            if (!cJSON_IsString(m)) {
                rfail(r, "\"__metadata__\" value for key '%.*s' is %s, not a string", SHOW(m->string),
                      json_kind(m));
                goto fail;
            }
            strbytes += strlen(m->string) + strlen(m->valuestring) + 2;
        }
    }
    if (nent > INT_MAX) {
        rfail(r, "header has too many tensors");
        goto fail;
    }
    int n = (int)nent, nmeta = 0;
    for (const cJSON *m = meta ? meta->child : NULL; m; m = m->next) nmeta++;

    ents = calloc(nent ? nent : 1, sizeof *ents);
    names = calloc(nent ? nent : 1, sizeof *names);
    metas = calloc(nmeta ? (size_t)nmeta : 1, sizeof *metas);
    if (!ents || !names || !metas) {
        rfail(r, "out of memory");
        goto fail;
    }
    int k = 0;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (c == meta) continue;
        ents[k].index = k;
        if (!read_entry(r, c, &ents[k])) goto fail;
        k++;
    }
    k = 0;
    for (const cJSON *m = meta ? meta->child : NULL; m; m = m->next, k++)
        metas[k] = (named){m->string, k, m->valuestring};
    qsort(metas, (size_t)nmeta, sizeof *metas, by_name);
    for (int i = 1; i < nmeta; i++)
        if (!strcmp(metas[i - 1].name, metas[i].name)) {
            rfail(r, "\"__metadata__\" has key '%.*s' twice", SHOW(metas[i].name));
            goto fail;
        }

    /* File order, then names (the sort by name keeps file order on ties). */
    qsort(ents, nent, sizeof *ents, by_offset);
    for (int i = 0; i < n; i++) names[i] = (named){ents[i].name, i, NULL};
    qsort(names, nent, sizeof *names, by_name);
    for (int i = 1; i < n; i++)
        if (!strcmp(names[i - 1].name, names[i].name)) {
            rfail(r, "duplicate tensor name '%.*s'", SHOW(names[i].name));
            goto fail;
        }

    /* The data section must be tiled exactly: from 0, no gaps, no overlaps,
     * nothing past the end and nothing after the last tensor. */
    int64_t expect = 0, ds = 8 + (int64_t)r->hlen;
    for (int i = 0; i < n; i++) {
        const entry *e = &ents[i];
        if (e->end > data_len) {
            rfail(r, "tensor '%.*s': data_offsets [%" PRId64 ", %" PRId64 "] run past the end of the "
                     "file (the data section has %" PRId64 " bytes, file bytes [%" PRId64 ", %" PRId64
                     "))", SHOW(e->name), e->begin, e->end, data_len, ds, ds + data_len);
            goto fail;
        }
        if (e->begin < expect) {
            const entry *p = &ents[i - 1];
            rfail(r, "tensor '%.*s': data_offsets [%" PRId64 ", %" PRId64 "] overlap tensor '%.*s' [%"
                     PRId64 ", %" PRId64 "] (file offset %" PRId64 ")", SHOW(e->name), e->begin,
                  e->end, SHOW(p->name), p->begin, p->end, ds + e->begin);
            goto fail;
        }
        if (e->begin > expect && i == 0) {
            rfail(r, "tensor '%.*s': the data starts at data offset %" PRId64 " (file offset %" PRId64
                     "), not 0", SHOW(e->name), e->begin, ds + e->begin);
            goto fail;
        }
        if (e->begin > expect) {
            rfail(r, "gap of %" PRId64 " bytes (file bytes [%" PRId64 ", %" PRId64 ")) between tensor "
                     "'%.*s' and tensor '%.*s'", e->begin - expect, ds + expect, ds + e->begin,
                  SHOW(ents[i - 1].name), SHOW(e->name));
            goto fail;
        }
        expect = e->end;
    }
    if (expect < data_len) {
        rfail(r, "%" PRId64 " trailing bytes after the last tensor (file bytes [%" PRId64 ", %" PRId64
                 "))", data_len - expect, ds + expect, ds + data_len);
        goto fail;
    }

    /* Lay out the file: strings, slots, lookup tables. */
    size_t datasize = ALIGN;
    for (int i = 0; i < n; i++) datasize += round_up((size_t)(ents[i].end - ents[i].begin));
    f = calloc(1, sizeof *f);
    if (!f) {
        rfail(r, "out of memory");
        goto fail;
    }
    f->n = n;
    f->nmeta = nmeta;
    f->data_start = ds;
    f->t = calloc(nent ? nent : 1, sizeof *f->t);
    f->begin = calloc(nent ? nent : 1, sizeof *f->begin);
    f->by_name = calloc(nent ? nent : 1, sizeof *f->by_name);
    f->meta = calloc(nmeta ? 2 * (size_t)nmeta : 1, sizeof *f->meta);
    f->strings = malloc(strbytes ? strbytes : 1);
    f->data = aligned_alloc(ALIGN, datasize);
    if (!f->t || !f->begin || !f->by_name || !f->meta || !f->strings || !f->data) {
        rfail(r, "out of memory (%zu bytes of tensor data)", datasize);
        goto fail;
    }
    char *s = f->strings;
    size_t slot = 0;
    for (int i = 0; i < n; i++) {
        const entry *e = &ents[i];
        lathe_st_tensor *t = &f->t[i];
        size_t len = strlen(e->name) + 1;
        memcpy(s, e->name, len);
        t->name = s;
        s += len;
        t->dtype = e->dtype;
        t->rank = e->rank;
        memcpy(t->shape, e->shape, sizeof t->shape);
        t->data = f->data + slot;
        slot += round_up((size_t)(e->end - e->begin));
        f->begin[i] = e->begin;
        f->by_name[i] = names[i].index;
    }
    for (int i = 0; i < nmeta; i++) {
        size_t kl = strlen(metas[i].name) + 1, vl = strlen(metas[i].value) + 1;
        memcpy(s, metas[i].name, kl);
        f->meta[2 * i] = s;
        s += kl;
        memcpy(s, metas[i].value, vl);
        f->meta[2 * i + 1] = s;
        s += vl;
    }
    cJSON_Delete(root);
    free(ents);
    free(names);
    free(metas);
    return f;

fail:
    cJSON_Delete(root);
    free(ents);
    free(names);
    free(metas);
    lathe_st_free(f);
    return NULL;
}

static int64_t tensor_size(const lathe_st_file *f, int i) {
    int64_t bytes = 0;
    tensor_bytes(f->t[i].rank, f->t[i].shape, f->t[i].dtype, &bytes);
    return bytes;
}

/* BOOL bytes must be 0 or 1. */
static bool check_bools(reader *r, const lathe_st_file *f) {
    for (int i = 0; i < f->n; i++) {
        if (f->t[i].dtype != LATHE_RT_BOOL) continue;
        const unsigned char *p = f->t[i].data;
        int64_t bytes = tensor_size(f, i);
        for (int64_t j = 0; j < bytes; j++)
            if (p[j] > 1) {
                rfail(r, "tensor '%.*s': element %" PRId64 " is byte 0x%02x (file offset %" PRId64
                         "), not a BOOL (0 or 1)", SHOW(f->t[i].name), j, p[j],
                      f->data_start + f->begin[i] + j);
                return false;
            }
    }
    return true;
}

/* The 8-byte length: checked against the bytes after it and the limit. */
static bool check_length(reader *r, uint64_t size, const unsigned char *first8, size_t *hlen) {
    if (size < 8) {
        rfail(r, "file is %" PRIu64 " bytes, shorter than the 8-byte header length", size);
        return false;
    }
    uint64_t n = get_le64(first8);
    if (n > LATHE_ST_MAX_HEADER) {
        rfail(r, "header length %" PRIu64 " (file bytes [0, 8)) is over the limit of %u bytes", n,
              LATHE_ST_MAX_HEADER);
        return false;
    }
    if (n > size - 8) {
        rfail(r, "header length %" PRIu64 " (file bytes [0, 8)) is larger than the %" PRIu64
                 " bytes after it", n, size - 8);
        return false;
    }
    *hlen = (size_t)n;
    return true;
}

static void reader_done(reader *r) { free(r->num); }

lathe_st_file *lathe_st_read_mem(const void *bytes, size_t len, const char *what, char *err,
                                 size_t errlen) {
    reader r = {.what = what ? what : "<memory>", .err = err, .errlen = errlen};
    const unsigned char *b = bytes;
    lathe_st_file *f = NULL;
    char *hdr = NULL;
    size_t hlen;
    if (err && errlen) err[0] = 0;
    if (!bytes && len) {
        rfail(&r, "NULL bytes");
        return NULL;
    }
    if (!check_length(&r, len, b, &hlen)) return NULL;
    if (!(hdr = malloc(hlen + 1))) {
        rfail(&r, "out of memory");
        return NULL;
    }
    memcpy(hdr, b + 8, hlen);
    hdr[hlen] = 0;
    r.hdr = hdr;
    r.hlen = hlen;
    f = read_header(&r, (int64_t)(len - 8 - hlen));
    if (f) {
        for (int i = 0; i < f->n; i++)
            memcpy((void *)f->t[i].data, b + f->data_start + f->begin[i], (size_t)tensor_size(f, i));
        if (!check_bools(&r, f)) {
            lathe_st_free(f);
            f = NULL;
        }
    }
    free(hdr);
    reader_done(&r);
    return f;
}

/* Read up to len bytes; the count read (short only at end of file), or -1. */
static int64_t read_full(int fd, void *buf, size_t len) {
    size_t got = 0;
    while (got < len) {
        size_t want = len - got > (1u << 30) ? (1u << 30) : len - got;
        ssize_t k = read(fd, (char *)buf + got, want);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return -1;
        if (k == 0) break;
        got += (size_t)k;
    }
    return (int64_t)got;
}

lathe_st_file *lathe_st_read(const char *path, char *err, size_t errlen) {
    reader r = {.what = path ? path : "(null)", .err = err, .errlen = errlen};
    lathe_st_file *f = NULL;
    char *hdr = NULL;
    unsigned char first8[8];
    size_t hlen;
    struct stat st;
    if (err && errlen) err[0] = 0;
    int fd = lt_open_file(path, &st, err, errlen);
    if (fd < 0) return NULL;
    uint64_t size = (uint64_t)st.st_size;
    int64_t got = read_full(fd, first8, size < 8 ? (size_t)size : 8);
    if (got < 0 || (uint64_t)got < (size < 8 ? size : 8)) {
        rfail(&r, got < 0 ? "read error: %s" : "file shrank while reading%s", got < 0 ? strerror(errno) : "");
        goto done;
    }
    if (!check_length(&r, size, first8, &hlen)) goto done;
    if (!(hdr = malloc(hlen + 1))) {
        rfail(&r, "out of memory");
        goto done;
    }
    got = read_full(fd, hdr, hlen);
    if (got != (int64_t)hlen) {
        rfail(&r, got < 0 ? "read error in the header: %s" : "file shrank while reading the header%s",
              got < 0 ? strerror(errno) : "");
        goto done;
    }
    hdr[hlen] = 0;
    r.hdr = hdr;
    r.hlen = hlen;
    f = read_header(&r, (int64_t)(size - 8 - hlen));
    if (!f) goto done;
    /* The tensors tile the data section in order: read them one after another. */
    for (int i = 0; i < f->n; i++) {
        int64_t bytes = tensor_size(f, i);
        got = read_full(fd, (void *)f->t[i].data, (size_t)bytes);
        if (got != bytes) {
            rfail(&r, "tensor '%.*s': %s at file offset %" PRId64, SHOW(f->t[i].name),
                  got < 0 ? strerror(errno) : "file shrank while reading",
                  f->data_start + f->begin[i] + (got > 0 ? got : 0));
            goto fail;
        }
    }
    char extra;
    if (read_full(fd, &extra, 1) != 0) {
        rfail(&r, "file grew or could not be read after the last tensor");
        goto fail;
    }
    if (!check_bools(&r, f)) goto fail;
    goto done;
fail:
    lathe_st_free(f);
    f = NULL;
done:
    close(fd);
    free(hdr);
    reader_done(&r);
    return f;
}

/* ---- writing ---- */

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A duplicate among strs[0..n), or NULL. */
static const char *find_duplicate(const char *const *strs, int n, bool *oom) {
    *oom = false;
    if (n < 2) return NULL;
    const char **s = malloc((size_t)n * sizeof *s);
    if (!s) {
        *oom = true;
        return NULL;
    }
    memcpy(s, strs, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_str);
    const char *dup = NULL;
    for (int i = 1; i < n && !dup; i++)
        if (!strcmp(s[i - 1], s[i])) dup = s[i];
    free(s);
    return dup;
}

/* Add item to obj (key) or arr (key NULL); false, deleting item, on failure. */
static bool add(cJSON *to, const char *key, cJSON *item) {
    if (item && (key ? cJSON_AddItemToObject(to, key, item) : cJSON_AddItemToArray(to, item)))
        return true;
    cJSON_Delete(item);
    return false;
}

static cJSON *int_array(const int64_t *v, int n) {
    cJSON *a = cJSON_CreateArray();
    char buf[32];
    for (int i = 0; a && i < n; i++) {
        snprintf(buf, sizeof buf, "%" PRId64, v[i]);
        if (!add(a, NULL, cJSON_CreateRaw(buf))) {
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

/* The header: 8-byte length, compact JSON, spaces up to a multiple of 8.
 * NULL when out of memory. */
static unsigned char *build_header(const lathe_st_tensor *t, int n, const int64_t *offsets,
                                   const char *const *mk, const char *const *mv, int nmeta,
                                   size_t *len) {
    cJSON *root = cJSON_CreateObject();
    bool ok = root != NULL;
    if (ok && nmeta > 0) {
        cJSON *m = cJSON_CreateObject();
        ok = add(root, "__metadata__", m);
        for (int i = 0; ok && i < nmeta; i++) ok = add(m, mk[i], cJSON_CreateString(mv[i]));
    }
    for (int i = 0; ok && i < n; i++) {
        cJSON *e = cJSON_CreateObject();
        ok = add(root, t[i].name, e) && add(e, "dtype", cJSON_CreateString(dtype_names[t[i].dtype])) &&
             add(e, "shape", int_array(t[i].shape, t[i].rank)) &&
             add(e, "data_offsets", int_array(&offsets[2 * i], 2));
    }
    char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!json) return NULL;
    size_t jl = strlen(json), pad = (8 - jl % 8) % 8;
    unsigned char *h = malloc(8 + jl + pad);
    if (h) {
        put_le64(h, jl + pad);
        memcpy(h + 8, json, jl);
        memset(h + 8 + jl, ' ', pad);
        *len = 8 + jl + pad;
    }
    cJSON_free(json);
    return h;
}

/* Checks the arguments; fills offsets[2n] (begin, end pairs). */
static bool check_write(const char *path, const lathe_st_tensor *t, int n, const char *const *mk,
                        const char *const *mv, int nmeta, int64_t *offsets, char *err, size_t errlen) {
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        const char *name = t[i].name;
        if (!name) return lt_errf(err, errlen, "%s: tensor %d has no name", path, i), false;
        if (utf8_check((const unsigned char *)name, strlen(name)) < strlen(name))
            return lt_errf(err, errlen, "%s: tensor %d: name is not valid UTF-8", path, i), false;
        if (!strcmp(name, "__metadata__"))
            return lt_errf(err, errlen, "%s: tensor %d: the name \"__metadata__\" is reserved", path, i),
                   false;
        if (t[i].dtype < 0 || t[i].dtype >= LATHE_RT_NDTYPES)
            return lt_errf(err, errlen, "%s: tensor '%.*s': unknown dtype %d", path, SHOW(name),
                           (int)t[i].dtype), false;
        if (t[i].rank < 0 || t[i].rank > LATHE_ST_MAX_RANK)
            return lt_errf(err, errlen, "%s: tensor '%.*s': rank %d is outside 0..%d", path, SHOW(name),
                           t[i].rank, LATHE_ST_MAX_RANK), false;
        for (int d = 0; d < t[i].rank; d++)
            if (t[i].shape[d] < 0)
                return lt_errf(err, errlen, "%s: tensor '%.*s': shape[%d] is negative (%" PRId64 ")",
                               path, SHOW(name), d, t[i].shape[d]), false;
        int64_t bytes;
        if (!tensor_bytes(t[i].rank, t[i].shape, t[i].dtype, &bytes) || (uint64_t)bytes > SIZE_MAX ||
            !add64(at, bytes, &offsets[2 * i + 1]))
            return lt_errf(err, errlen, "%s: tensor '%.*s': size overflows", path, SHOW(name)), false;
        offsets[2 * i] = at;
        at = offsets[2 * i + 1];
        if (bytes > 0 && !t[i].data)
            return lt_errf(err, errlen, "%s: tensor '%.*s': data is NULL", path, SHOW(name)), false;
        if (t[i].dtype == LATHE_RT_BOOL)
            for (int64_t j = 0; j < bytes; j++)
                if (((const unsigned char *)t[i].data)[j] > 1)
                    return lt_errf(err, errlen, "%s: tensor '%.*s': element %" PRId64 " is byte 0x%02x, "
                                   "not a BOOL (0 or 1)", path, SHOW(name), j,
                                   ((const unsigned char *)t[i].data)[j]), false;
    }
    for (int i = 0; i < nmeta; i++) {
        if (!mk[i] || !mv[i])
            return lt_errf(err, errlen, "%s: metadata %d has a NULL key or value", path, i), false;
        if (utf8_check((const unsigned char *)mk[i], strlen(mk[i])) < strlen(mk[i]) ||
            utf8_check((const unsigned char *)mv[i], strlen(mv[i])) < strlen(mv[i]))
            return lt_errf(err, errlen, "%s: metadata '%.*s' is not valid UTF-8", path, SHOW(mk[i])),
                   false;
    }
    bool oom1, oom2;
    const char **names = malloc((n ? (size_t)n : 1) * sizeof *names);
    if (!names) return lt_errf(err, errlen, "%s: out of memory", path), false;
    for (int i = 0; i < n; i++) names[i] = t[i].name;
    const char *dup = find_duplicate(names, n, &oom1), *mdup = find_duplicate(mk, nmeta, &oom2);
    if (dup) lt_errf(err, errlen, "%s: duplicate tensor name '%.*s'", path, SHOW(dup));
    else if (mdup) lt_errf(err, errlen, "%s: duplicate metadata key '%.*s'", path, SHOW(mdup));
    else if (oom1 || oom2) lt_errf(err, errlen, "%s: out of memory", path);
    free(names);
    return !dup && !mdup && !oom1 && !oom2;
}

/* Write len bytes, counting them against the test hook; 0, -1 with errno,
 * or -2 when the hook stops it. */
static int write_counted(int fd, const void *buf, size_t len, int64_t *written) {
    bool hooked = false;
    int64_t limit = lathe_st_test_fail_after;
    if (limit >= 0 && (uint64_t)*written + len > (uint64_t)limit) {
        len = *written < limit ? (size_t)(limit - *written) : 0;
        hooked = true;
    }
    const char *p = buf;
    while (len > 0) {
        ssize_t k = write(fd, p, len > (1u << 30) ? (1u << 30) : len);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return -1;
        p += k;
        len -= (size_t)k;
        *written += k;
    }
    return hooked ? -2 : 0;
}

/* fsync the directory holding path, so the rename is durable. */
static int sync_dir(const char *path, char *dir, size_t dirlen) {
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, dirlen, ".");
    else if (slash == path) snprintf(dir, dirlen, "/");
    else snprintf(dir, dirlen, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* The file that writing path replaces: path, or where its chain of
 * symbolic links ends (a link is written through, as editors do, not
 * replaced by a file).  A new string, or NULL when out of memory or the
 * chain is too long (a loop). */
enum { LINK_DEPTH = 40 };
static char *write_target(const char *path) {
    char *p = strdup(path);
    for (int depth = 0; p; depth++) {
        struct stat st;
        if (lstat(p, &st) != 0 || !S_ISLNK(st.st_mode)) return p;
        char link[PATH_MAX];
        ssize_t k = readlink(p, link, sizeof link - 1);
        if (k < 0 || depth == LINK_DEPTH) {
            free(p);
            return NULL;
        }
        link[k] = 0;
        const char *slash = strrchr(p, '/');
        size_t dl = link[0] == '/' || !slash ? 0 : (size_t)(slash - p) + 1;
        char *q = malloc(dl + (size_t)k + 1);
        if (q) memcpy(q, p, dl), memcpy(q + dl, link, (size_t)k + 1);
        free(p);
        p = q;
    }
    return NULL;
}

/* Remove temporaries of target left by writers that died (kill -9, a crash):
 * TARGET.tmp.PID.K in its directory, PID no longer running.  Best effort. */
static void remove_stale_temporaries(const char *target) {
    const char *slash = strrchr(target, '/');
    const char *base = slash ? slash + 1 : target;
    size_t bl = strlen(base);
    char dir[PATH_MAX];
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == target) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - target), target);
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (strncmp(e->d_name, base, bl) != 0 || strncmp(e->d_name + bl, ".tmp.", 5) != 0) continue;
        char *end;
        long pid = strtol(e->d_name + bl + 5, &end, 10);
        if (end == e->d_name + bl + 5 || *end != '.' || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive, or not ours to judge */
        char full[PATH_MAX];
        if (snprintf(full, sizeof full, "%s/%s", dir, e->d_name) < (int)sizeof full) unlink(full);
    }
    closedir(d);
}

int lathe_st_write(const char *path, const lathe_st_tensor *tensors, int n,
                   const char *const *meta_keys, const char *const *meta_values, int nmeta,
                   char *err, size_t errlen) {
    static atomic_uint counter;
    if (err && errlen) err[0] = 0;
    if (!path || !*path) return lt_errf(err, errlen, "lathe_st_write: empty path"), -1;
    if (n < 0 || nmeta < 0 || (n > 0 && !tensors) || (nmeta > 0 && (!meta_keys || !meta_values)))
        return lt_errf(err, errlen, "%s: bad arguments (n %d, nmeta %d)", path, n, nmeta), -1;

    int64_t *offsets = malloc((n ? 2 * (size_t)n : 1) * sizeof *offsets);
    unsigned char *head = NULL;
    char *tmp = NULL, *dir = NULL, *target = NULL;
    int fd = -1, rc = -1;
    bool created = false; /* tmp exists and is ours to remove */
    size_t hlen = 0;
    if (!offsets) {
        lt_errf(err, errlen, "%s: out of memory", path);
        goto done;
    }
    if (!check_write(path, tensors, n, meta_keys, meta_values, nmeta, offsets, err, errlen)) goto done;
    head = build_header(tensors, n, offsets, meta_keys, meta_values, nmeta, &hlen);
    if (!head) {
        lt_errf(err, errlen, "%s: out of memory building the header", path);
        goto done;
    }
    if (hlen - 8 > LATHE_ST_MAX_HEADER) {
        lt_errf(err, errlen, "%s: the header would be %zu bytes, over the %u-byte limit readers "
                "accept", path, hlen - 8, LATHE_ST_MAX_HEADER);
        goto done;
    }

    /* The file replaced: path, or the end of its symbolic links.  An existing
     * file keeps its mode; one its owner made read-only is not replaced. */
    target = write_target(path);
    if (!target) {
        lt_errf(err, errlen, "%s: out of memory, or symbolic links nested more than %d deep", path, LINK_DEPTH);
        goto done;
    }
    struct stat old;
    bool existed = stat(target, &old) == 0;
    if (existed && !S_ISREG(old.st_mode)) {
        lt_errf(err, errlen, "%s: %s is not a regular file; not replacing it", path, target);
        goto done;
    }
    if (existed && (!(old.st_mode & S_IWUSR) || (access(target, W_OK) != 0 && errno == EACCES))) {
        /* no write permission for its owner (even for root, as editors do) or for us */
        lt_errf(err, errlen, "%s: %s is read-only (mode %04o); not replacing it", path, target,
                (unsigned)(old.st_mode & 07777));
        goto done;
    }
    remove_stale_temporaries(target);
    /* A new file beside the target; O_EXCL so that nobody else's file is reused. */
    size_t tmplen = strlen(target) + 48;
    tmp = malloc(tmplen);
    dir = malloc(strlen(target) + 2);
    if (!tmp || !dir) {
        lt_errf(err, errlen, "%s: out of memory", path);
        goto done;
    }
    for (int tries = 0; fd < 0 && tries < 100; tries++) {
        snprintf(tmp, tmplen, "%s.tmp.%ld.%u", target, (long)getpid(), atomic_fetch_add(&counter, 1));
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        lt_errf(err, errlen, "%s: cannot create the temporary file %s: %s", path, tmp, strerror(errno));
        goto done;
    }
    created = true;
    if (existed && fchmod(fd, old.st_mode & 07777) != 0) {
        lt_errf(err, errlen, "%s: cannot give %s the mode of %s (%04o): %s", path, tmp, target,
                (unsigned)(old.st_mode & 07777), strerror(errno));
        goto done;
    }

    int64_t written = 0;
    int w = write_counted(fd, head, hlen, &written);
    for (int i = 0; w == 0 && i < n; i++)
        w = write_counted(fd, tensors[i].data, (size_t)(offsets[2 * i + 1] - offsets[2 * i]), &written);
    if (w == -2) {
        lt_errf(err, errlen, "%s: writing %s stopped by the test hook after %" PRId64 " bytes", path,
                tmp, written);
        goto done;
    }
    if (w != 0 || fsync(fd) != 0) {
        lt_errf(err, errlen, "%s: cannot %s %s: %s", path, w ? "write" : "fsync", tmp, strerror(errno));
        goto done;
    }
    int cl = close(fd);
    fd = -1;
    if (cl != 0) {
        lt_errf(err, errlen, "%s: cannot close %s: %s", path, tmp, strerror(errno));
        goto done;
    }
    if (rename(tmp, target) != 0) {
        lt_errf(err, errlen, "%s: cannot rename %s over %s: %s", path, tmp, target, strerror(errno));
        goto done;
    }
    created = false; /* renamed: nothing to remove */
    if (sync_dir(target, dir, strlen(target) + 2) != 0) {
        lt_errf(err, errlen, "%s: written, but the directory %s could not be fsynced: %s", path, dir,
                strerror(errno));
        goto done;
    }
    rc = 0;
done:
    if (fd >= 0) close(fd);
    if (created) unlink(tmp);
    free(offsets);
    free(head);
    free(tmp);
    free(dir);
    free(target);
    return rc;
}
