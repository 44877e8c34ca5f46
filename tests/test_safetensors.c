/* test_safetensors.c - the safetensors reader and writer: round trips, the
 * writer against bytes written out by hand from the format's description, a
 * hand-built file in another encoder's style, a table of bad files (one row
 * per rule the reader enforces), a table of bad writer inputs, truncation and
 * byte-flip fuzzing, and atomic replacement. */
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "safetensors.h"

static char tmpdir[256];

static int setup(void **state) {
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/lathe-st-XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

/* Names of the entries of tmpdir, other than . and .., joined by spaces. */
static int list_dir(char *out, size_t len) {
    DIR *d = opendir(tmpdir);
    int n = 0;
    out[0] = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        size_t at = strlen(out);
        snprintf(out + at, len - at, "%s%s", n ? " " : "", e->d_name);
        n++;
    }
    if (d) closedir(d);
    return n;
}

static void empty_dir(void) {
    DIR *d = opendir(tmpdir);
    char p[512];
    for (struct dirent *e; d && (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    if (d) closedir(d);
}

static int teardown(void **state) {
    (void)state;
    empty_dir();
    return rmdir(tmpdir);
}

static void path_in_tmp(char *out, size_t len, const char *name) {
    snprintf(out, len, "%s/%s", tmpdir, name);
}

static unsigned char *slurp(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return b;
}

static void spit(const char *path, const void *b, size_t len) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(b, 1, len, fp), len);
    fclose(fp);
}

/* A file: the 8-byte little-endian length of json, json, then data. */
static unsigned char *make_file(const char *json, const void *data, size_t dlen, size_t *len) {
    size_t jl = strlen(json);
    unsigned char *b = malloc(8 + jl + dlen + 1);
    assert_non_null(b);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)jl >> (8 * i));
    memcpy(b + 8, json, jl);
    if (dlen) memcpy(b + 8 + jl, data, dlen);
    *len = 8 + jl + dlen;
    return b;
}

static uint32_t f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

/* ---- round trip ---- */

static void assert_same_tensor(const lathe_st_tensor *got, const lathe_st_tensor *want) {
    assert_non_null(got);
    assert_string_equal(got->name, want->name);
    assert_int_equal(got->dtype, want->dtype);
    assert_int_equal(got->rank, want->rank);
    int64_t count = 1;
    for (int d = 0; d < want->rank; d++) {
        assert_int_equal(got->shape[d], want->shape[d]);
        count *= want->shape[d];
    }
    assert_non_null(got->data);
    assert_int_equal((uintptr_t)got->data % 64, 0);
    size_t bytes = (size_t)count * lathe_rt_dtype_size(want->dtype);
    if (bytes) assert_memory_equal(got->data, want->data, bytes);
}

static void test_round_trip(void **state) {
    (void)state;
    uint32_t fbits[6] = {0x7fc00001u /* NaN with payload */, 0x80000000u /* -0 */, 0x7f800000u /* inf */,
                         0x00000001u /* denormal */, f32_bits(1.5f), f32_bits(-3.25f)};
    uint64_t dbits[4] = {0x7ff8000000000123ull, 0x8000000000000000ull, 0x7fefffffffffffffull, 1};
    int64_t ints[3] = {INT64_MIN, INT64_MAX, -1};
    unsigned char bools[4] = {1, 0, 0, 1}, bytes8[5] = {0, 1, 127, 128, 255};
    int32_t i32[3] = {INT32_MIN, INT32_MAX, -1};
    float scalar = 3.5f, one = 1;
    lathe_st_tensor t[] = {
        {.name = "f32", .dtype = LATHE_RT_F32, .rank = 2, .shape = {2, 3}, .data = fbits},
        {.name = "f64", .dtype = LATHE_RT_F64, .rank = 1, .shape = {4}, .data = dbits},
        {.name = "i64", .dtype = LATHE_RT_I64, .rank = 1, .shape = {3}, .data = ints},
        {.name = "bool", .dtype = LATHE_RT_BOOL, .rank = 2, .shape = {2, 2}, .data = bools},
        {.name = "u8", .dtype = LATHE_RT_U8, .rank = 1, .shape = {5}, .data = bytes8},
        {.name = "i32", .dtype = LATHE_RT_I32, .rank = 1, .shape = {3}, .data = i32},
        {.name = "scalar", .dtype = LATHE_RT_F32, .rank = 0, .data = &scalar},
        {.name = "empty", .dtype = LATHE_RT_F64, .rank = 1, .shape = {0}, .data = NULL},
        {.name = "empty2", .dtype = LATHE_RT_I64, .rank = 3, .shape = {3, 0, 2}, .data = NULL},
        {.name = "layer1.0.bn1.running_mean", .dtype = LATHE_RT_F32, .rank = 8,
         .shape = {1, 1, 1, 1, 1, 1, 1, 1}, .data = &one},
        {.name = "\xc3\xbcn\xc3\xaf" "c\xc3\xb8" "d\xc3\xa9 \"q\"\\\n", .dtype = LATHE_RT_F32, .rank = 1,
         .shape = {1}, .data = &one},
        {.name = "", .dtype = LATHE_RT_BOOL, .rank = 0, .data = bools},
    };
    int n = (int)(sizeof t / sizeof t[0]);
    const char *keys[] = {"format", "note", "empty"};
    const char *vals[] = {"pt", "a \"quoted\"\\ value\twith \xc3\xbcnicode\n", ""};
    char path[512], err[512];
    path_in_tmp(path, sizeof path, "round.safetensors");
    assert_int_equal(lathe_st_write(path, t, n, keys, vals, 3, err, sizeof err), 0);

    size_t len;
    unsigned char *bytes = slurp(path, &len);
    for (int pass = 0; pass < 2; pass++) {
        lathe_st_file *f = pass == 0 ? lathe_st_read(path, err, sizeof err)
                                     : lathe_st_read_mem(bytes, len, "mem", err, sizeof err);
        if (!f) fail_msg("%s", err);
        assert_int_equal(lathe_st_count(f), n);
        for (int i = 0; i < n; i++) {
            assert_same_tensor(lathe_st_at(f, i), &t[i]);
            assert_ptr_equal(lathe_st_find(f, t[i].name), lathe_st_at(f, i));
        }
        assert_null(lathe_st_at(f, -1));
        assert_null(lathe_st_at(f, n));
        assert_null(lathe_st_find(f, "nope"));
        for (int i = 0; i < 3; i++) assert_string_equal(lathe_st_meta(f, keys[i]), vals[i]);
        assert_null(lathe_st_meta(f, "missing"));
        assert_float_equal(*(const float *)lathe_st_find(f, "scalar")->data, 3.5, 0);
        assert_int_equal(((const int64_t *)lathe_st_find(f, "i64")->data)[0], INT64_MIN);
        lathe_st_free(f);
    }
    /* header length is a multiple of 8, and the data follows it */
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | bytes[i];
    assert_int_equal(hl % 8, 0);
    assert_memory_equal(bytes + 8, "{\"__metadata__\":", 16);
    free(bytes);

    /* no tensors, no metadata: "{}" and six spaces */
    assert_int_equal(lathe_st_write(path, NULL, 0, NULL, NULL, 0, err, sizeof err), 0);
    lathe_st_file *f = lathe_st_read(path, err, sizeof err);
    assert_non_null(f);
    assert_int_equal(lathe_st_count(f), 0);
    assert_null(lathe_st_meta(f, "format"));
    lathe_st_free(f);
    unlink(path);

    /* the NULL-tolerant accessors */
    assert_int_equal(lathe_st_count(NULL), 0);
    assert_null(lathe_st_at(NULL, 0));
    assert_null(lathe_st_find(NULL, "a"));
    assert_null(lathe_st_meta(NULL, "a"));
    lathe_st_free(NULL);
}

/* ---- the writer against the format, byte for byte ---- */

static void test_writer_matches_spec(void **state) {
    (void)state;
    float a[2] = {1.0f, -2.0f};
    unsigned char b = 1;
    lathe_st_tensor t[2] = {
        {.name = "a", .dtype = LATHE_RT_F32, .rank = 1, .shape = {2}, .data = a},
        {.name = "b", .dtype = LATHE_RT_BOOL, .rank = 0, .data = &b},
    };
    const char *k[] = {"format"}, *v[] = {"pt"};
    char path[512], err[256];
    path_in_tmp(path, sizeof path, "spec.safetensors");
    assert_int_equal(lathe_st_write(path, t, 2, k, v, 1, err, sizeof err), 0);

    /* 138 bytes of JSON + 6 spaces = 144 = 0x90; then 1.0f, -2.0f, true */
    static const char expected[] =
        "\x90\0\0\0\0\0\0\0"
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"b\":{\"dtype\":\"BOOL\",\"shape\":[],\"data_offsets\":[8,9]}}"
        "      "
        "\x00\x00\x80\x3f" "\x00\x00\x00\xc0"
        "\x01";
    size_t len;
    unsigned char *got = slurp(path, &len);
    assert_int_equal(len, sizeof expected - 1);
    assert_int_equal(len, 8 + 144 + 9);
    assert_memory_equal(got, expected, len);
    free(got);

    /* nothing at all: {} and six spaces */
    assert_int_equal(lathe_st_write(path, NULL, 0, NULL, NULL, 0, err, sizeof err), 0);
    got = slurp(path, &len);
    assert_int_equal(len, 16);
    assert_memory_equal(got, "\x08\0\0\0\0\0\0\0{}      ", 16);
    free(got);

    /* a large dim prints as an integer, not 1e+16 */
    lathe_st_tensor big = {.name = "z", .dtype = LATHE_RT_I64, .rank = 2, .shape = {0, 10000000000000000}};
    assert_int_equal(lathe_st_write(path, &big, 1, NULL, NULL, 0, err, sizeof err), 0);
    got = slurp(path, &len);
    static const char bigjson[] =
        "{\"z\":{\"dtype\":\"I64\",\"shape\":[0,10000000000000000],\"data_offsets\":[0,0]}}";
    assert_memory_equal(got + 8, bigjson, sizeof bigjson - 1);
    free(got);
    lathe_st_file *f = lathe_st_read(path, err, sizeof err);
    if (!f) fail_msg("%s", err);
    assert_int_equal(lathe_st_at(f, 0)->shape[1], 10000000000000000);
    lathe_st_free(f);
    unlink(path);
}

/* ---- a file in another encoder's style ---- */

/* Pretty-printed, keys in another order, entries in JSON order different
 * from data order, metadata in the middle, an unknown field (ignored), no
 * padding, so the data section starts at an odd offset. */
static void test_foreign_file(void **state) {
    (void)state;
    static const char json[] =
        "{\n"
        "  \"second\": {\"data_offsets\": [8, 24], \"shape\": [2], \"dtype\": \"F64\"},\n"
        "  \"__metadata__\": {\"note\": \"hand-built\"},\n"
        "  \"first\": {\"dtype\": \"I64\", \"shape\": [], \"data_offsets\": [0, 8],\n"
        "            \"extra\": {\"ignored\": [1.5, true, null, -2e-3, \"\\ud83d\\ude00\"]}},\n"
        "  \"flag\": {\"dtype\": \"BOOL\", \"shape\": [2, 1], \"data_offsets\": [24, 26]},\n"
        "  \"empty\": {\"dtype\": \"BOOL\", \"shape\": [0, 3], \"data_offsets\": [24, 24]}\n"
        "}\n";
    static const unsigned char data[26] = {
        0xfb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* first: -5 */
        0, 0, 0, 0, 0, 0, 0xf0, 0x3f,                   /* second: 1.0 */
        0, 0, 0, 0, 0, 0, 0xe0, 0xbf,                   /* -0.5 */
        1, 0,                                           /* flag */
    };
    assert_int_not_equal((sizeof json - 1) % 8, 0);
    size_t len;
    unsigned char *b = make_file(json, data, sizeof data, &len);
    char err[512];
    lathe_st_file *f = lathe_st_read_mem(b, len, "foreign", err, sizeof err);
    if (!f) fail_msg("%s", err);
    assert_int_equal(lathe_st_count(f), 4);
    const char *order[] = {"first", "second", "empty", "flag"};
    for (int i = 0; i < 4; i++) assert_string_equal(lathe_st_at(f, i)->name, order[i]);
    const lathe_st_tensor *t = lathe_st_find(f, "first");
    assert_int_equal(t->dtype, LATHE_RT_I64);
    assert_int_equal(t->rank, 0);
    assert_int_equal(*(const int64_t *)t->data, -5);
    t = lathe_st_find(f, "second");
    assert_int_equal(t->dtype, LATHE_RT_F64);
    assert_int_equal(t->shape[0], 2);
    assert_true(((const double *)t->data)[0] == 1.0 && ((const double *)t->data)[1] == -0.5);
    t = lathe_st_find(f, "flag");
    assert_memory_equal(t->data, "\x01\x00", 2);
    t = lathe_st_find(f, "empty");
    assert_int_equal(t->rank, 2);
    assert_int_equal(t->shape[1], 3);
    assert_string_equal(lathe_st_meta(f, "note"), "hand-built");
    lathe_st_free(f);
    free(b);
}

/* U8 and I32 (pixels, token ids) as another encoder writes them: numpy's
 * uint8 and int32, little-endian, the I32 tensor at an offset that is not a
 * multiple of 4 in the file (the reader aligns it). */
static void test_u8_i32_by_hand(void **state) {
    (void)state;
    static const char json[] = "{\"px\":{\"dtype\":\"U8\",\"shape\":[1,3],\"data_offsets\":[0,3]},"
                               "\"tok\":{\"dtype\":\"I32\",\"shape\":[3],\"data_offsets\":[3,15]}}";
    static const unsigned char data[15] = {
        0, 128, 255,                                    /* px */
        0xff, 0xff, 0xff, 0xff, 0x2c, 0x01, 0, 0, 0, 0, 0, 0x80, /* tok: -1, 300, INT32_MIN */
    };
    size_t len;
    unsigned char *b = make_file(json, data, sizeof data, &len);
    char err[512];
    lathe_st_file *f = lathe_st_read_mem(b, len, "u8i32", err, sizeof err);
    if (!f) fail_msg("%s", err);
    const lathe_st_tensor *t = lathe_st_find(f, "px");
    assert_int_equal(t->dtype, LATHE_RT_U8);
    assert_int_equal(t->rank, 2);
    assert_memory_equal(t->data, "\x00\x80\xff", 3);
    t = lathe_st_find(f, "tok");
    assert_int_equal(t->dtype, LATHE_RT_I32);
    assert_int_equal((uintptr_t)t->data % 4, 0);
    const int32_t *v = t->data;
    assert_true(v[0] == -1 && v[1] == 300 && v[2] == INT32_MIN);
    lathe_st_free(f);
    free(b);
}

/* ---- bad files ---- */

#define F32A(off) "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":" off "}"
#define ENTRY(name, dtype, shape, off) \
    "\"" name "\":{\"dtype\":" dtype ",\"shape\":" shape ",\"data_offsets\":" off "}"
#define D8 "\x01\x02\x03\x04\x05\x06\x07\x08"
#define D16 D8 D8

typedef struct {
    const char *label;
    const char *json;  /* NULL: data is the whole file */
    const char *data;
    size_t dlen;
    const char *expect; /* a piece of the message */
} bad_file;

static const bad_file bad_files[] = {
    /* the 8-byte length */
    {"empty file", NULL, "", 0, "file is 0 bytes, shorter than the 8-byte header length"},
    {"7 bytes", NULL, "\x02\0\0\0\0\0\0", 7, "file is 7 bytes, shorter than the 8-byte header length"},
    {"length past end", NULL, "\x64\0\0\0\0\0\0\0{}", 10,
     "header length 100 (file bytes [0, 8)) is larger than the 2 bytes after it"},
    {"length over limit", NULL, "\x00\xc2\xeb\x0b\0\0\0\0{}", 10,
     "header length 200000000 (file bytes [0, 8)) is over the limit of 100000000 bytes"},
    {"length 2^64-1", NULL, "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10, "is over the limit"},
    {"length 0", NULL, "\0\0\0\0\0\0\0\0", 8, "not valid JSON: unexpected end at the end of the header"},
    /* UTF-8 */
    {"bad utf-8", "{\"a\xff\":1}", "", 0, "header is not valid UTF-8 at header byte 3 (file offset 11)"},
    {"overlong utf-8", "{\"\xc0\xaf\":1}", "", 0, "not valid UTF-8 at header byte 2"},
    {"surrogate utf-8", "{\"\xed\xa0\x80\":1}", "", 0, "not valid UTF-8 at header byte 2"},
    {"past U+10FFFF", "{\"\xf4\x90\x80\x80\":1}", "", 0, "not valid UTF-8 at header byte 2"},
    {"cut utf-8", "{}\xe2\x82", "", 0, "not valid UTF-8 at header byte 2"},
    /* JSON */
    {"unfinished", "{\"a\":", "", 0, "not valid JSON: unexpected end"},
    {"single quotes", "{'a':1}", "", 0, "not valid JSON: expected a string key at header byte 1"},
    {"trailing garbage", "{} x", "", 0, "trailing characters after the JSON value at header byte 3"},
    {"trailing comma", "{\"a\":1,}", "", 0, "expected a string key at header byte 7"},
    {"missing colon", "{\"a\" 1}", "", 0, "expected ':'"},
    {"missing comma", "[1 2]", "", 0, "expected ',' or ']'"},
    {"leading zero", "{" ENTRY("a", "\"F32\"", "[01]", "[0,4]") "}", "abcd", 4, "leading zero"},
    {"bare minus", "[-]", "", 0, "bad number at header byte 1"},
    {"bad fraction", "[1.]", "", 0, "bad number"},
    {"bad exponent", "[1e]", "", 0, "bad number"},
    {"control char", "{\"a\tb\":1}", "", 0, "control character in a string at header byte 3"},
    {"NUL escape", "{\"a\\u0000\":1}", "", 0, "\\u0000 (NUL) in a string is not supported"},
    {"lone low surrogate", "{\"\\udc00\":1}", "", 0, "lone low surrogate"},
    {"lone high surrogate", "{\"\\ud800x\":1}", "", 0, "high surrogate escape without a low surrogate"},
    {"bad escape", "{\"\\x\":1}", "", 0, "bad escape"},
    {"bad hex", "{\"\\u12g4\":1}", "", 0, "bad escape"},
    {"unterminated string", "{\"abc", "", 0, "unterminated string at header byte 1"},
    {"nan", "{\"a\":nan}", "", 0, "unexpected character at header byte 5"},
    {"tru", "[tru]", "", 0, "unexpected character"},
    {"long number", "[10000000000000000000000000000000000000000000000000000000000000000000000]", "", 0,
     "number longer than 63 characters"},
    /* not an object */
    {"array header", "[]", "", 0, "header is an array, not a JSON object"},
    {"string header", "\"x\"", "", 0, "header is a string, not a JSON object"},
    {"number header", "3", "", 0, "header is a number, not a JSON object"},
    {"spaces only", "        ", "", 0, "unexpected end"},
    /* entries */
    {"entry not object", "{\"a\":[1]}", "", 0, "tensor 'a': entry is an array, not an object"},
    {"entry null", "{\"a\":null}", "", 0, "tensor 'a': entry is null, not an object"},
    {"missing dtype", "{\"a\":{\"shape\":[],\"data_offsets\":[0,0]}}", "", 0, "tensor 'a': missing \"dtype\""},
    {"missing shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,0]}}", "", 0, "tensor 'a': missing \"shape\""},
    {"missing offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[]}}", "", 0, "tensor 'a': missing \"data_offsets\""},
    {"duplicate field", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", "abcd", 4,
     "tensor 'a': duplicate field \"dtype\""},
    {"dtype number", "{" ENTRY("a", "4", "[2]", "[0,8]") "}", D8, 8, "tensor 'a': \"dtype\" is a number, not a string"},
    {"dtype F16", "{" ENTRY("a", "\"F16\"", "[2]", "[0,4]") "}", "abcd", 4,
     "tensor 'a': dtype \"F16\" is unsupported (Lathe reads F32, F64, I64, BOOL, U8 and I32)"},
    {"dtype BF16", "{" ENTRY("a", "\"BF16\"", "[2]", "[0,4]") "}", "abcd", 4, "dtype \"BF16\" is unsupported"},
    {"dtype U16", "{" ENTRY("a", "\"U16\"", "[2]", "[0,4]") "}", "abcd", 4, "dtype \"U16\" is unsupported"},
    {"dtype I8", "{" ENTRY("a", "\"I8\"", "[2]", "[0,2]") "}", "ab", 2, "dtype \"I8\" is unsupported"},
    {"I32 size", "{" ENTRY("a", "\"I32\"", "[2]", "[0,4]") "}", "abcd", 4,
     "tensor 'a': shape [2] of I32 needs 8 bytes but data_offsets [0, 4] span 4"},
    {"U8 size", "{" ENTRY("a", "\"U8\"", "[3]", "[0,4]") "}", "abcd", 4, "shape [3] of U8 needs 3 bytes but"},
    {"dtype unknown", "{" ENTRY("a", "\"F33\"", "[2]", "[0,8]") "}", D8, 8, "tensor 'a': unknown dtype \"F33\""},
    {"dtype lowercase", "{" ENTRY("a", "\"f32\"", "[2]", "[0,8]") "}", D8, 8, "unknown dtype \"f32\""},
    {"dtype empty", "{" ENTRY("a", "\"\"", "[2]", "[0,8]") "}", D8, 8, "unknown dtype \"\""},
    {"shape number", "{" ENTRY("a", "\"F32\"", "2", "[0,8]") "}", D8, 8,
     "tensor 'a': \"shape\" is a number, not an array of non-negative integers"},
    {"shape object", "{" ENTRY("a", "\"F32\"", "{}", "[0,8]") "}", D8, 8, "\"shape\" is an object"},
    {"shape negative", "{" ENTRY("a", "\"F32\"", "[2,-1]", "[0,8]") "}", D8, 8,
     "tensor 'a': shape[1] is -1 (header byte 31), negative; it must be a non-negative integer"},
    {"shape 1.5", "{" ENTRY("a", "\"F32\"", "[1.5]", "[0,8]") "}", D8, 8, "tensor 'a': shape[0] is 1.5 (header byte 29), not an integer"},
    {"shape 2.0", "{" ENTRY("a", "\"F32\"", "[2.0]", "[0,8]") "}", D8, 8, "shape[0] is 2.0 (header byte 29), not an integer"},
    {"shape 2e0", "{" ENTRY("a", "\"F32\"", "[2e0]", "[0,8]") "}", D8, 8, "shape[0] is 2e0 (header byte 29), not an integer"},
    {"shape string", "{" ENTRY("a", "\"F32\"", "[\"2\"]", "[0,8]") "}", D8, 8,
     "tensor 'a': shape[0] is a string, not a non-negative integer"},
    {"shape null", "{" ENTRY("a", "\"F32\"", "[null]", "[0,8]") "}", D8, 8, "shape[0] is null"},
    {"shape bool", "{" ENTRY("a", "\"F32\"", "[true]", "[0,8]") "}", D8, 8, "shape[0] is a boolean"},
    {"shape 2^63", "{" ENTRY("a", "\"F32\"", "[9223372036854775808]", "[0,8]") "}", D8, 8,
     "shape[0] is 9223372036854775808 (header byte 29), out of range"},
    {"shape 2^64", "{" ENTRY("a", "\"F32\"", "[18446744073709551616]", "[0,8]") "}", D8, 8, "out of range"},
    {"rank 9", "{" ENTRY("a", "\"F32\"", "[1,1,1,1,1,1,1,1,2]", "[0,8]") "}", D8, 8,
     "tensor 'a': rank 9 is more than the maximum of 8"},
    {"offsets string", "{" ENTRY("a", "\"F32\"", "[2]", "\"0,8\"") "}", D8, 8,
     "tensor 'a': \"data_offsets\" is a string, not an array of two non-negative integers [begin, end]"},
    {"offsets one", "{" ENTRY("a", "\"F32\"", "[2]", "[8]") "}", D8, 8, "\"data_offsets\" is an array of 1, not an array of two"},
    {"offsets three", "{" ENTRY("a", "\"F32\"", "[2]", "[0,4,8]") "}", D8, 8, "\"data_offsets\" is an array of 3"},
    {"offsets empty", "{" ENTRY("a", "\"F32\"", "[2]", "[]") "}", D8, 8, "\"data_offsets\" is an array of 0"},
    {"offset float", "{" ENTRY("a", "\"F32\"", "[2]", "[0,8.0]") "}", D8, 8,
     "tensor 'a': data_offsets[1] is 8.0 (header byte 50), not an integer"},
    {"offset 1.5", "{" ENTRY("a", "\"F32\"", "[2]", "[0.5,8]") "}", D8, 8, "data_offsets[0] is 0.5"},
    {"offset negative", "{" ENTRY("a", "\"F32\"", "[2]", "[-8,0]") "}", D8, 8, "data_offsets[0] is -8 (header byte 48), negative"},
    {"offset string", "{" ENTRY("a", "\"F32\"", "[2]", "[0,\"8\"]") "}", D8, 8, "data_offsets[1] is a string"},
    {"offset 2^63", "{" ENTRY("a", "\"F32\"", "[2]", "[0,9223372036854775808]") "}", D8, 8, "data_offsets[1] is 9223372036854775808 (header byte 50), out of range"},
    {"begin > end", "{" ENTRY("a", "\"F32\"", "[2]", "[8,0]") "}", D8, 8, "tensor 'a': data_offsets [8, 0] have begin > end"},
    {"size mismatch", "{" ENTRY("a", "\"F32\"", "[2]", "[0,4]") "}", "abcd", 4,
     "tensor 'a': shape [2] of F32 needs 8 bytes but data_offsets [0, 4] span 4"},
    {"scalar mismatch", "{" ENTRY("a", "\"F64\"", "[]", "[0,4]") "}", "abcd", 4, "shape [] of F64 needs 8 bytes"},
    {"empty mismatch", "{" ENTRY("a", "\"I64\"", "[3,0]", "[0,8]") "}", D8, 8, "shape [3, 0] of I64 needs 0 bytes"},
    {"count overflow", "{" ENTRY("a", "\"F32\"", "[4294967296,4294967296,4294967296]", "[0,0]") "}", "", 0,
     "tensor 'a': shape [4294967296, 4294967296, 4294967296] of F32 overflows"},
    {"bytes overflow", "{" ENTRY("a", "\"F32\"", "[4611686018427387904]", "[0,0]") "}", "", 0,
     "shape [4611686018427387904] of F32 overflows"},
    {"huge offsets", "{" ENTRY("a", "\"BOOL\"", "[9223372036854775807]", "[0,9223372036854775807]") "}", "", 0,
     "tensor 'a': data_offsets [0, 9223372036854775807] run past the end of the file"},
    /* layout */
    {"not at 0", "{" ENTRY("a", "\"F32\"", "[1]", "[4,8]") "}", D8, 8,
     "tensor 'a': the data starts at data offset 4 (file offset 66), not 0"},
    {"gap", "{" ENTRY("a", "\"F32\"", "[1]", "[0,4]") "," ENTRY("b", "\"F32\"", "[1]", "[8,12]") "}", D8 "abcd", 12,
     "gap of 4 bytes (file bytes [120, 124)) between tensor 'a' and tensor 'b'"},
    {"overlap", "{" ENTRY("a", "\"F32\"", "[2]", "[0,8]") "," ENTRY("b", "\"F32\"", "[1]", "[4,8]") "}", D8, 8,
     "tensor 'b': data_offsets [4, 8] overlap tensor 'a' [0, 8]"},
    {"same offsets", "{" ENTRY("a", "\"F32\"", "[1]", "[0,4]") "," ENTRY("b", "\"F32\"", "[1]", "[0,4]") "}", "abcd", 4,
     "tensor 'b': data_offsets [0, 4] overlap tensor 'a' [0, 4]"},
    {"empty inside", "{" ENTRY("a", "\"F32\"", "[2]", "[0,8]") "," ENTRY("b", "\"F32\"", "[0]", "[4,4]") "}", D8, 8,
     "tensor 'b': data_offsets [4, 4] overlap tensor 'a' [0, 8]"},
    {"past end", "{" F32A("[0,8]") "}", "abcd", 4,
     "tensor 'a': data_offsets [0, 8] run past the end of the file (the data section has 4 bytes, file bytes [62, 66))"},
    {"no data", "{" F32A("[0,8]") "}", "", 0, "run past the end of the file"},
    {"trailing", "{" ENTRY("a", "\"F32\"", "[1]", "[0,4]") "}", D8, 8,
     "4 trailing bytes after the last tensor (file bytes [66, 70))"},
    {"trailing no tensors", "{}", "x", 1, "1 trailing bytes after the last tensor (file bytes [10, 11))"},
    {"duplicate name", "{" ENTRY("a", "\"F32\"", "[1]", "[0,4]") "," ENTRY("a", "\"F32\"", "[1]", "[4,8]") "}", D8, 8,
     "duplicate tensor name 'a'"},
    /* metadata */
    {"metadata string", "{\"__metadata__\":\"x\"}", "", 0, "\"__metadata__\" is a string, not an object of strings"},
    {"metadata array", "{\"__metadata__\":[\"x\"]}", "", 0, "\"__metadata__\" is an array, not an object of strings"},
    {"metadata number value", "{\"__metadata__\":{\"k\":1}}", "", 0, "\"__metadata__\" value for key 'k' is a number, not a string"},
    {"metadata object value", "{\"__metadata__\":{\"k\":{}}}", "", 0, "value for key 'k' is an object"},
    {"metadata twice", "{\"__metadata__\":{},\"__metadata__\":{}}", "", 0, "header has \"__metadata__\" twice"},
    {"metadata key twice", "{\"__metadata__\":{\"k\":\"a\",\"j\":\"b\",\"k\":\"c\"}}", "", 0, "\"__metadata__\" has key 'k' twice"},
    /* data */
    {"bool 2", "{" ENTRY("m", "\"BOOL\"", "[3]", "[0,3]") "}", "\x00\x01\x02", 3,
     "tensor 'm': element 2 is byte 0x02 (file offset 65), not a BOOL (0 or 1)"},
    {"bool ff", "{" ENTRY("m", "\"BOOL\"", "[]", "[0,1]") "}", "\xff", 1, "element 0 is byte 0xff"},
};

static void check_bad(const bad_file *b, const unsigned char *bytes, size_t len) {
    char err[512], path[512], want[600];
    memset(err, 'x', sizeof err);
    lathe_st_file *f = lathe_st_read_mem(bytes, len, b->label, err, sizeof err);
    if (f) fail_msg("row '%s': accepted", b->label);
    snprintf(want, sizeof want, "%s: ", b->label);
    if (strncmp(err, want, strlen(want)) != 0 || !strstr(err, b->expect))
        fail_msg("row '%s':\n  message:  %s\n  expected: %s", b->label, err, b->expect);
    /* the same through a file */
    path_in_tmp(path, sizeof path, "bad.safetensors");
    spit(path, bytes, len);
    f = lathe_st_read(path, err, sizeof err);
    if (f) fail_msg("row '%s': file accepted", b->label);
    snprintf(want, sizeof want, "%s: ", path);
    if (strncmp(err, want, strlen(want)) != 0 || !strstr(err, b->expect))
        fail_msg("row '%s' (file):\n  message:  %s\n  expected: %s", b->label, err, b->expect);
    unlink(path);
}

static void test_bad_files(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof bad_files / sizeof bad_files[0]; i++) {
        const bad_file *b = &bad_files[i];
        size_t len = b->dlen;
        unsigned char *bytes = b->json ? make_file(b->json, b->data, b->dlen, &len) : NULL;
        check_bad(b, bytes ? bytes : (const unsigned char *)b->data, len);
        free(bytes);
    }
}

/* Nesting: 64 levels inside an ignored field is fine, deeper is refused
 * (no recursion without bound). */
static void test_deep_nesting(void **state) {
    (void)state;
    size_t n = 100000;
    char *json = malloc(n + 1);
    assert_non_null(json);
    memset(json, '[', n);
    json[n] = 0;
    bad_file b = {"deep", json, "", 0, "nesting deeper than 64 levels at header byte 64"};
    size_t len;
    unsigned char *bytes = make_file(json, "", 0, &len);
    check_bad(&b, bytes, len);
    free(bytes);
    free(json);

    char ok[512];
    int at = snprintf(ok, sizeof ok, "{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4],\"x\":");
    for (int i = 0; i < 62; i++) ok[at++] = '[';
    for (int i = 0; i < 62; i++) ok[at++] = ']';
    snprintf(ok + at, sizeof ok - (size_t)at, "}}");
    bytes = make_file(ok, "abcd", 4, &len);
    char err[256];
    lathe_st_file *f = lathe_st_read_mem(bytes, len, NULL, err, sizeof err);
    if (!f) fail_msg("%s", err);
    lathe_st_free(f);
    free(bytes);
}

static void test_io_errors(void **state) {
    (void)state;
    char path[512], err[512];
    path_in_tmp(path, sizeof path, "does-not-exist.safetensors");
    assert_null(lathe_st_read(path, err, sizeof err));
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "cannot open"));
    assert_null(lathe_st_read(tmpdir, err, sizeof err));
    assert_non_null(strstr(err, "not a regular file"));
    path_in_tmp(path, sizeof path, "fifo");
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_null(lathe_st_read(path, err, sizeof err)); /* refused at once, not blocked */
    assert_non_null(strstr(err, "not a regular file"));
    unlink(path);
    assert_null(lathe_st_read_mem("", 0, NULL, err, sizeof err));
    assert_non_null(strstr(err, "<memory>: file is 0 bytes"));
    assert_null(lathe_st_read_mem("", 0, NULL, NULL, 0)); /* no message buffer: still fine */
}

/* ---- the writer refuses bad input ---- */

static const float ones[8] = {1, 1, 1, 1, 1, 1, 1, 1};
static const unsigned char bool2[2] = {1, 2};

typedef struct {
    const char *label;
    lathe_st_tensor t[2];
    int n;
    const char *mk[2], *mv[2];
    int nmeta;
    const char *expect;
} bad_write;

#define W(nm) {.name = nm, .dtype = LATHE_RT_F32, .rank = 1, .shape = {2}, .data = ones}

static const bad_write bad_writes[] = {
    {"duplicate", {W("w"), W("w")}, 2, {0}, {0}, 0, "duplicate tensor name 'w'"},
    {"no name", {W("a"), W(NULL)}, 2, {0}, {0}, 0, "tensor 1 has no name"},
    {"reserved", {W("__metadata__")}, 1, {0}, {0}, 0, "the name \"__metadata__\" is reserved"},
    {"bad utf-8 name", {W("a\xff")}, 1, {0}, {0}, 0, "tensor 0: name is not valid UTF-8"},
    {"dtype 6", {{.name = "a", .dtype = 6, .data = ones}}, 1, {0}, {0}, 0, "tensor 'a': unknown dtype 6"},
    {"dtype -1", {{.name = "a", .dtype = -1, .data = ones}}, 1, {0}, {0}, 0, "unknown dtype -1"},
    {"rank 9", {{.name = "a", .rank = 9, .data = ones}}, 1, {0}, {0}, 0, "tensor 'a': rank 9 is outside 0..8"},
    {"rank -1", {{.name = "a", .rank = -1, .data = ones}}, 1, {0}, {0}, 0, "rank -1 is outside"},
    {"negative dim", {{.name = "a", .rank = 2, .shape = {2, -3}, .data = ones}}, 1, {0}, {0}, 0,
     "tensor 'a': shape[1] is negative (-3)"},
    {"overflow", {{.name = "a", .rank = 3, .shape = {1 << 30, 1 << 30, 1 << 30}, .data = ones}}, 1, {0}, {0}, 0,
     "tensor 'a': size overflows"},
    {"total overflow", {{.name = "a", .rank = 1, .shape = {INT64_MAX / 4}, .data = ones},
                        {.name = "b", .rank = 1, .shape = {1}, .data = ones}},
     2, {0}, {0}, 0, "tensor 'b': size overflows"},
    {"NULL data", {{.name = "a", .rank = 1, .shape = {2}}}, 1, {0}, {0}, 0, "tensor 'a': data is NULL"},
    {"bool 2", {{.name = "m", .dtype = LATHE_RT_BOOL, .rank = 1, .shape = {2}, .data = bool2}}, 1, {0}, {0}, 0,
     "tensor 'm': element 1 is byte 0x02, not a BOOL (0 or 1)"},
    {"duplicate key", {W("a")}, 1, {"k", "k"}, {"1", "2"}, 2, "duplicate metadata key 'k'"},
    {"NULL value", {W("a")}, 1, {"k"}, {NULL}, 1, "metadata 0 has a NULL key or value"},
    {"bad utf-8 value", {W("a")}, 1, {"k"}, {"\xc0\x80"}, 1, "metadata 'k' is not valid UTF-8"},
    {"negative n", {W("a")}, -1, {0}, {0}, 0, "bad arguments (n -1, nmeta 0)"},
};

static void test_bad_writes(void **state) {
    (void)state;
    char path[512], err[512], want[600], list[512];
    path_in_tmp(path, sizeof path, "rejected.safetensors");
    for (size_t i = 0; i < sizeof bad_writes / sizeof bad_writes[0]; i++) {
        const bad_write *b = &bad_writes[i];
        int rc = lathe_st_write(path, b->t, b->n, b->mk, b->mv, b->nmeta, err, sizeof err);
        if (rc != -1) fail_msg("row '%s': accepted", b->label);
        snprintf(want, sizeof want, "%s: ", path);
        if (strncmp(err, want, strlen(want)) != 0 || !strstr(err, b->expect))
            fail_msg("row '%s':\n  message:  %s\n  expected: %s", b->label, err, b->expect);
        if (list_dir(list, sizeof list) != 0) fail_msg("row '%s' left files: %s", b->label, list);
    }
    assert_int_equal(lathe_st_write("", NULL, 0, NULL, NULL, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "empty path"));
    assert_int_equal(lathe_st_write(NULL, NULL, 0, NULL, NULL, 0, NULL, 0), -1);
}

/* ---- fuzzing ---- */

/* A valid file with every dtype, metadata and an empty tensor. */
static unsigned char *sample_file(size_t *len) {
    float f[3] = {1, -2, 0.5f};
    double d[2] = {3, -4};
    int64_t i[2] = {5, -6};
    unsigned char b[3] = {1, 0, 1}, u[2] = {0, 255};
    int32_t i32[2] = {-7, 70000};
    lathe_st_tensor t[] = {
        {.name = "f", .dtype = LATHE_RT_F32, .rank = 2, .shape = {1, 3}, .data = f},
        {.name = "e", .dtype = LATHE_RT_F32, .rank = 1, .shape = {0}},
        {.name = "d", .dtype = LATHE_RT_F64, .rank = 1, .shape = {2}, .data = d},
        {.name = "i", .dtype = LATHE_RT_I64, .rank = 0, .data = i},
        {.name = "b", .dtype = LATHE_RT_BOOL, .rank = 1, .shape = {3}, .data = b},
        {.name = "u", .dtype = LATHE_RT_U8, .rank = 2, .shape = {2, 1}, .data = u},
        {.name = "n", .dtype = LATHE_RT_I32, .rank = 1, .shape = {2}, .data = i32},
    };
    const char *k[] = {"format"}, *v[] = {"pt"};
    char path[512], err[256];
    path_in_tmp(path, sizeof path, "sample.safetensors");
    assert_int_equal(lathe_st_write(path, t, 7, k, v, 1, err, sizeof err), 0);
    unsigned char *bytes = slurp(path, len);
    unlink(path);
    return bytes;
}

/* Whatever the reader accepts must be self-consistent. */
static void check_accepted(const lathe_st_file *f, size_t len) {
    int n = lathe_st_count(f);
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        const lathe_st_tensor *t = lathe_st_at(f, i);
        assert_true(t->dtype >= LATHE_RT_F32 && t->dtype < LATHE_RT_NDTYPES);
        assert_true(t->rank >= 0 && t->rank <= 8);
        int64_t count = 1;
        for (int d = 0; d < t->rank; d++) {
            assert_true(t->shape[d] >= 0);
            count *= t->shape[d];
        }
        int64_t bytes = count * (int64_t)lathe_rt_dtype_size(t->dtype);
        total += bytes;
        volatile unsigned char sum = 0;
        for (int64_t j = 0; j < bytes; j++) sum += ((const unsigned char *)t->data)[j];
        (void)sum; /* reading every byte lets ASan check the extent */
        if (t->dtype == LATHE_RT_BOOL)
            for (int64_t j = 0; j < bytes; j++) assert_true(((const unsigned char *)t->data)[j] <= 1);
        assert_ptr_equal(lathe_st_find(f, t->name), t);
    }
    assert_true(total <= (int64_t)len);
}

static void test_truncation_fuzz(void **state) {
    (void)state;
    size_t len;
    unsigned char *full = sample_file(&len);
    char err[512], path[512];
    path_in_tmp(path, sizeof path, "cut.safetensors");
    for (size_t cut = 0; cut <= len; cut++) {
        unsigned char *copy = malloc(cut ? cut : 1); /* exact size: ASan sees any overread */
        memcpy(copy, full, cut);
        err[0] = 0;
        lathe_st_file *f = lathe_st_read_mem(copy, cut, "cut", err, sizeof err);
        if (cut < len) {
            if (f) fail_msg("prefix of %zu of %zu bytes accepted", cut, len);
            assert_true(strlen(err) > 5);
        } else {
            if (!f) fail_msg("%s", err);
            check_accepted(f, len);
        }
        lathe_st_free(f);
        spit(path, copy, cut);
        f = lathe_st_read(path, err, sizeof err);
        assert_true(cut < len ? f == NULL && strstr(err, path) : f != NULL);
        lathe_st_free(f);
        free(copy);
    }
    /* one byte more is refused too */
    unsigned char *longer = malloc(len + 1);
    memcpy(longer, full, len);
    longer[len] = 0;
    assert_null(lathe_st_read_mem(longer, len + 1, "long", err, sizeof err));
    assert_non_null(strstr(err, "1 trailing bytes after the last tensor"));
    free(longer);
    unlink(path);
    free(full);
}

static uint64_t xorshift(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void test_byte_flip_fuzz(void **state) {
    (void)state;
    size_t len;
    unsigned char *full = sample_file(&len), *copy = malloc(len);
    char err[512];
    static const unsigned char sets[] = {'"', '\\', '{', '}', '[', ']', ',', ':', '-', '.', 'e', '0', '9',
                                         ' ', 0, 0x80, 0xc3, 0xff, 'u', 'n'};
    int accepted = 0, refused = 0;
    for (size_t pos = 0; pos < len; pos++) {
        for (int m = 0; m < 8 + (int)sizeof sets; m++) {
            memcpy(copy, full, len);
            if (m < 8) copy[pos] ^= (unsigned char)(1u << m);
            else copy[pos] = sets[m - 8];
            if (!memcmp(copy, full, len)) continue;
            lathe_st_file *f = lathe_st_read_mem(copy, len, "flip", err, sizeof err);
            if (f) {
                check_accepted(f, len);
                accepted++;
            } else {
                assert_true(strlen(err) > 6);
                refused++;
            }
            lathe_st_free(f);
        }
    }
    /* several random changes at once, and random lengths */
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(copy, full, len);
        int k = 1 + (int)(xorshift(&s) % 4);
        for (int j = 0; j < k; j++) copy[xorshift(&s) % len] = (unsigned char)xorshift(&s);
        size_t l = iter % 5 ? len : (size_t)(xorshift(&s) % (len + 1));
        lathe_st_file *f = lathe_st_read_mem(copy, l, "random", err, sizeof err);
        if (f) check_accepted(f, l), accepted++;
        else refused++;
        lathe_st_free(f);
    }
    assert_true(accepted > 0); /* flips in float data stay valid */
    assert_true(refused > 0);
    free(copy);
    free(full);
}

/* ---- atomic replacement ---- */

static void test_atomic_write(void **state) {
    (void)state;
    char path[512], err[512], list[512];
    path_in_tmp(path, sizeof path, "ckpt.safetensors");
    float a[4] = {1, 2, 3, 4}, b[6] = {9, 8, 7, 6, 5, 4};
    lathe_st_tensor ta = {.name = "w", .dtype = LATHE_RT_F32, .rank = 1, .shape = {4}, .data = a};
    lathe_st_tensor tb = {.name = "w", .dtype = LATHE_RT_F32, .rank = 2, .shape = {2, 3}, .data = b};
    const char *k[] = {"v"}, *va[] = {"A"}, *vb[] = {"B"};
    assert_int_equal(lathe_st_write(path, &ta, 1, k, va, 1, err, sizeof err), 0);
    size_t alen, blen;
    unsigned char *abytes = slurp(path, &alen);

    /* how long B is, written elsewhere */
    char other[512];
    path_in_tmp(other, sizeof other, "other.safetensors");
    assert_int_equal(lathe_st_write(other, &tb, 1, k, vb, 1, err, sizeof err), 0);
    free(slurp(other, &blen));
    unlink(other);

    int64_t stops[] = {0, 1, 7, 8, 20, (int64_t)blen - 24, (int64_t)blen - 1};
    for (size_t i = 0; i < sizeof stops / sizeof stops[0]; i++) {
        lathe_st_test_fail_after = stops[i];
        int rc = lathe_st_write(path, &tb, 1, k, vb, 1, err, sizeof err);
        lathe_st_test_fail_after = -1;
        assert_int_equal(rc, -1);
        assert_non_null(strstr(err, path));
        assert_non_null(strstr(err, "stopped by the test hook"));
        size_t len;
        unsigned char *now = slurp(path, &len);
        assert_int_equal(len, alen);
        assert_memory_equal(now, abytes, alen);
        free(now);
        assert_int_equal(list_dir(list, sizeof list), 1);
        assert_string_equal(list, "ckpt.safetensors");
    }

    /* a stop past the end does not trigger; the file is replaced whole */
    lathe_st_test_fail_after = (int64_t)blen;
    assert_int_equal(lathe_st_write(path, &tb, 1, k, vb, 1, err, sizeof err), 0);
    lathe_st_test_fail_after = -1;
    lathe_st_file *f = lathe_st_read(path, err, sizeof err);
    if (!f) fail_msg("%s", err);
    assert_string_equal(lathe_st_meta(f, "v"), "B");
    assert_int_equal(lathe_st_at(f, 0)->rank, 2);
    lathe_st_free(f);
    assert_int_equal(list_dir(list, sizeof list), 1);

    /* an interrupted first write leaves nothing at all */
    unlink(path);
    lathe_st_test_fail_after = 10;
    assert_int_equal(lathe_st_write(path, &ta, 1, NULL, NULL, 0, err, sizeof err), -1);
    lathe_st_test_fail_after = -1;
    assert_int_equal(list_dir(list, sizeof list), 0);
    free(abytes);
}

static void test_write_missing_dir(void **state) {
    (void)state;
    char path[512], err[512], list[512];
    path_in_tmp(path, sizeof path, "no-such-dir/ckpt.safetensors");
    float a = 1;
    lathe_st_tensor t = {.name = "a", .dtype = LATHE_RT_F32, .data = &a};
    assert_int_equal(lathe_st_write(path, &t, 1, NULL, NULL, 0, err, sizeof err), -1);
    if (strncmp(err, path, strlen(path)) != 0) fail_msg("message does not start with the path: %s", err);
    assert_non_null(strstr(err, "No such file or directory"));
    assert_int_equal(list_dir(list, sizeof list), 0);
    /* a path that is a directory: refused before any temporary is made */
    assert_int_equal(lathe_st_write(tmpdir, &t, 1, NULL, NULL, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "is not a regular file; not replacing it"));
    assert_int_equal(list_dir(list, sizeof list), 0);
}

static mode_t mode_of(const char *path) {
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

/* Writing over a file keeps its mode and refuses a read-only one; a
 * symbolic link is written through; temporaries of writers that died are
 * removed, a live writer's are not. */
static void test_write_over(void **state) {
    (void)state;
    empty_dir();
    char path[512], link[512], real[512], stale[600], live[600], other[600], err[512];
    float a = 1, b = 2;
    lathe_st_tensor ta = {.name = "a", .dtype = LATHE_RT_F32, .data = &a}, tb = {.name = "a", .dtype = LATHE_RT_F32, .data = &b};
    path_in_tmp(path, sizeof path, "ck");
    assert_int_equal(lathe_st_write(path, &ta, 1, NULL, NULL, 0, err, sizeof err), 0);
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(lathe_st_write(path, &tb, 1, NULL, NULL, 0, err, sizeof err), 0);
    assert_int_equal(mode_of(path), 0600);
    assert_int_equal(chmod(path, 0444), 0); /* refused even as root: its owner made it read-only */
    assert_int_equal(lathe_st_write(path, &ta, 1, NULL, NULL, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "is read-only (mode 0444); not replacing it"));
    assert_int_equal(chmod(path, 0600), 0);
    /* through a relative symbolic link: the link stays, its target changes */
    path_in_tmp(real, sizeof real, "real");
    path_in_tmp(link, sizeof link, "link");
    assert_int_equal(lathe_st_write(real, &ta, 1, NULL, NULL, 0, err, sizeof err), 0);
    assert_int_equal(symlink("real", link), 0);
    assert_int_equal(lathe_st_write(link, &tb, 1, NULL, NULL, 0, err, sizeof err), 0);
    struct stat st;
    assert_int_equal(lstat(link, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    lathe_st_file *f = lathe_st_read(real, err, sizeof err);
    assert_non_null(f);
    assert_true(((const float *)lathe_st_find(f, "a")->data)[0] == 2);
    lathe_st_free(f);
    /* a dead writer's temporary goes on the next write; a live one's (this
     * process's parent) and another file's stay */
    pid_t dead = fork();
    assert_true(dead >= 0);
    if (dead == 0) _exit(0);
    waitpid(dead, NULL, 0);
    snprintf(stale, sizeof stale, "%s.tmp.%ld.0", path, (long)dead);
    snprintf(live, sizeof live, "%s.tmp.%ld.0", path, (long)getppid());
    snprintf(other, sizeof other, "%s/real.tmp.%ld.0", tmpdir, (long)dead);
    const char *made[3] = {stale, live, other};
    for (int i = 0; i < 3; i++) {
        FILE *t = fopen(made[i], "w");
        assert_non_null(t);
        fclose(t);
    }
    assert_int_equal(lathe_st_write(path, &ta, 1, NULL, NULL, 0, err, sizeof err), 0);
    assert_int_equal(access(stale, F_OK), -1);
    assert_int_equal(access(live, F_OK), 0);
    assert_int_equal(access(other, F_OK), 0);
    empty_dir();
}

static void test_dtype_names(void **state) {
    (void)state;
    static const char *names[] = {"F32", "F64", "I64", "BOOL", "U8", "I32"}, *rt[] = {"f32", "f64", "i64", "bool", "u8", "i32"};
    static const size_t sizes[] = {4, 8, 8, 1, 1, 4};
    assert_int_equal(LATHE_RT_NDTYPES, 6);
    for (int i = 0; i < 6; i++) {
        assert_string_equal(lathe_st_dtype_name(i), names[i]);
        assert_string_equal(lathe_rt_dtype_name(i), rt[i]);
        assert_int_equal(lathe_rt_dtype_size(i), sizes[i]);
    }
    assert_string_equal(lathe_st_dtype_name(6), "?");
    assert_string_equal(lathe_st_dtype_name(-1), "?");
    assert_int_equal(lathe_rt_dtype_size(6), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_writer_matches_spec),
        cmocka_unit_test(test_foreign_file),
        cmocka_unit_test(test_u8_i32_by_hand),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_io_errors),
        cmocka_unit_test(test_bad_writes),
        cmocka_unit_test(test_truncation_fuzz),
        cmocka_unit_test(test_byte_flip_fuzz),
        cmocka_unit_test(test_atomic_write),
        cmocka_unit_test(test_write_missing_dir),
        cmocka_unit_test(test_write_over),
        cmocka_unit_test(test_dtype_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
