/* test_dataset.c - datasets: small IDX files written here byte by byte (raw
 * and gzip, through zlib) and read back with hand-checked values, every IDX
 * type, a table of bad files (one row per rule the reader enforces), every
 * prefix of a valid file (raw and gzip) refused, byte flips that never
 * crash, gather and check, datasets from safetensors and from memory, the
 * shuffle against values worked out from the documented algorithm, U8 and
 * I32 data converted as it is gathered, normalization and seeded crops and
 * flips against hand-computed images and against torchvision's transforms
 * (tests/fixtures/recipes.safetensors), and the real Fashion-MNIST test set
 * when Debian's dataset-fashion-mnist is installed. */
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
#include <unistd.h>
#include <cmocka.h>
#include <zlib.h>

#include "dataset.h"
#include "testutil.h"

static char tmpdir[256];

static int setup(void **state) {
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/lathe-ds-XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    DIR *d = opendir(tmpdir);
    char p[512];
    for (struct dirent *e; d && (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    if (d) closedir(d);
    return rmdir(tmpdir);
}

static void path_in_tmp(char *out, size_t len, const char *name) { snprintf(out, len, "%s/%s", tmpdir, name); }

/* Write len bytes to path, raw or through zlib's gzip writer. */
static void write_file(const char *path, const void *bytes, size_t len, bool gzip) {
    if (gzip) {
        gzFile g = gzopen(path, "wb");
        assert_non_null(g);
        if (len) assert_int_equal(gzwrite(g, bytes, (unsigned)len), (int)len);
        assert_int_equal(gzclose(g), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        if (len) assert_int_equal(fwrite(bytes, 1, len, f), len);
        assert_int_equal(fclose(f), 0);
    }
}

/* The whole of path into a new buffer (*len bytes). */
static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    unsigned char *b = malloc(1 << 16);
    assert_non_null(b);
    *len = fread(b, 1, 1 << 16, f);
    fclose(f);
    return b;
}

/* ---- the small files, byte by byte ---- */

/* Three 2x2 unsigned-byte images: magic 00 00, type 08, 3 dims, dims 3 2 2. */
static const unsigned char images_u8[] = {
    0, 0, 0x08, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2,
    0,   255, 51,  128, /* image 0 */
    1,   2,   3,   4,   /* image 1 */
    254, 0,   255, 17,  /* image 2 */
};
/* Three unsigned-byte labels. */
static const unsigned char labels_u8[] = {0, 0, 0x08, 1, 0, 0, 0, 3, 9, 0, 7};

static void write_pair(const char *im, const char *lb, bool gzip) {
    write_file(im, images_u8, sizeof images_u8, gzip);
    write_file(lb, labels_u8, sizeof labels_u8, gzip);
}

static lathe_dataset *load(const char *im, const char *lb, bool scale) {
    char err[512];
    lathe_dataset *d = lathe_ds_load_idx(im, lb, "x", "y", scale, err, sizeof err);
    if (!d) fail_msg("load: %s", err);
    return d;
}

static void test_load_small(void **state) {
    (void)state;
    char im[512], lb[512];
    for (int gz = 0; gz < 2; gz++) {
        /* The names say nothing about the compression: gzip is found by content. */
        path_in_tmp(im, sizeof im, gz ? "images.raw" : "images.gz");
        path_in_tmp(lb, sizeof lb, gz ? "labels" : "labels.gz");
        write_pair(im, lb, gz);
        for (int scale = 0; scale < 2; scale++) {
            lathe_dataset *d = load(im, lb, scale);
            assert_int_equal(lathe_ds_count(d), 3);
            assert_int_equal(lathe_ds_num_tensors(d), 2);
            const lathe_st_tensor *x = lathe_ds_tensor(d, 0), *y = lathe_ds_tensor(d, 1);
            assert_ptr_equal(x, lathe_ds_find(d, "x"));
            assert_ptr_equal(y, lathe_ds_find(d, "y"));
            assert_null(lathe_ds_find(d, "z"));
            assert_null(lathe_ds_tensor(d, 2));
            assert_null(lathe_ds_tensor(d, -1));
            assert_string_equal(lathe_ds_source(d, 0), im);
            assert_string_equal(lathe_ds_source(d, 1), lb);
            assert_string_equal(x->name, "x");
            assert_int_equal(x->dtype, LATHE_RT_F32);
            assert_int_equal(x->rank, 3);
            assert_int_equal(x->shape[0], 3);
            assert_int_equal(x->shape[1], 2);
            assert_int_equal(x->shape[2], 2);
            assert_int_equal(lathe_ds_sample_bytes(x), 16);
            assert_int_equal(y->dtype, LATHE_RT_I64);
            assert_int_equal(y->rank, 1);
            assert_int_equal(y->shape[0], 3);
            assert_int_equal(lathe_ds_sample_bytes(y), 8);
            const float *p = x->data;
            const unsigned char *raw = images_u8 + 16;
            for (int i = 0; i < 12; i++)
                assert_true(p[i] == (scale ? (float)raw[i] / 255.0f : (float)raw[i]));
            if (scale) {
                assert_true(p[1] == 1.0f);  /* 255 is exactly 1 */
                assert_true(p[0] == 0.0f);
                assert_true(p[2] == 0.2f);  /* 51 / 255 rounds to the float nearest 0.2 */
            } else {
                assert_true(p[1] == 255.0f);
                assert_true(p[3] == 128.0f);
            }
            const int64_t *l = y->data;
            assert_int_equal(l[0], 9);
            assert_int_equal(l[1], 0);
            assert_int_equal(l[2], 7);
            lathe_ds_free(d);
        }
        unlink(im);
        unlink(lb);
    }
    lathe_ds_free(NULL);
    assert_int_equal(lathe_ds_count(NULL), 0);
    assert_int_equal(lathe_ds_num_tensors(NULL), 0);
    assert_int_equal(lathe_ds_sample_bytes(NULL), 0);
    /* a sample too large to count, in a tensor with no samples: -1, and no dataset */
    lathe_st_tensor huge = {.name = "x", .dtype = LATHE_RT_F32, .rank = 3, .shape = {0, (int64_t)1 << 40, (int64_t)1 << 40}};
    assert_int_equal(lathe_ds_sample_bytes(&huge), -1);
    char err[256];
    assert_null(lathe_ds_from_tensors(&huge, 1, "mem", err, sizeof err));
    assert_non_null(strstr(err, "mem: tensor 'x' of shape [0, 1099511627776, 1099511627776]: one sample does not fit"));
}

/* Every IDX type, as images (F32) and where it is an integer as labels (I64):
 * big-endian values chosen to catch sign and byte-order mistakes. */
static void test_types(void **state) {
    (void)state;
    static const struct {
        unsigned char type;
        unsigned char data[16];   /* two elements */
        size_t bytes;             /* of data */
        double v0, v1;            /* their values */
    } rows[] = {
        {0x08, {0xFF, 0x80}, 2, 255, 128},
        {0x09, {0xFF, 0x80}, 2, -1, -128},
        {0x0B, {0xFF, 0xFE, 0x01, 0x2C}, 4, -2, 300},
        {0x0C, {0xFF, 0xFE, 0xEE, 0x90, 0x7F, 0xFF, 0xFF, 0xFF}, 8, -70000, 2147483647},
        {0x0D, {0x3F, 0xC0, 0, 0, 0xC0, 0x20, 0, 0}, 8, 1.5, -2.5},
        {0x0E, {0x3F, 0xD0, 0, 0, 0, 0, 0, 0, 0xC0, 0x5E, 0xC0, 0, 0, 0, 0, 0}, 16, 0.25, -123},
    };
    char im[512], lb[512], err[512];
    path_in_tmp(im, sizeof im, "t-images");
    path_in_tmp(lb, sizeof lb, "t-labels");
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        unsigned char f[32] = {0, 0, rows[r].type, 1, 0, 0, 0, 2};
        memcpy(f + 8, rows[r].data, rows[r].bytes);
        write_file(im, f, 8 + rows[r].bytes, r % 2);
        write_file(lb, f, 8 + rows[r].bytes, r % 2);
        bool integer = rows[r].type <= 0x0C;
        lathe_dataset *d = lathe_ds_load_idx(im, lb, "x", "y", false, err, sizeof err);
        if (!integer) {
            assert_null(d);
            assert_non_null(strstr(err, lb));
            assert_non_null(strstr(err, "labels must have an integer IDX type"));
            write_file(lb, "\0\0\x08\x01\0\0\0\x02\x05\x06", 10, false);
            d = lathe_ds_load_idx(im, lb, "x", "y", false, err, sizeof err);
        }
        if (!d) fail_msg("type 0x%02X: %s", rows[r].type, err);
        const float *x = lathe_ds_find(d, "x")->data;
        assert_true(x[0] == (float)rows[r].v0);
        assert_true(x[1] == (float)rows[r].v1);
        if (integer) {
            const int64_t *y = lathe_ds_find(d, "y")->data;
            assert_int_equal(y[0], (int64_t)rows[r].v0);
            assert_int_equal(y[1], (int64_t)rows[r].v1);
        }
        lathe_ds_free(d);
    }
    /* scale applies to unsigned bytes only */
    unsigned char f[] = {0, 0, 0x09, 1, 0, 0, 0, 1, 0x7F};
    write_file(im, f, sizeof f, false);
    write_file(lb, "\0\0\x08\x01\0\0\0\x01\x05", 9, false);
    lathe_dataset *d = lathe_ds_load_idx(im, lb, "x", "y", true, err, sizeof err);
    assert_non_null(d);
    assert_true(((const float *)lathe_ds_tensor(d, 0)->data)[0] == 127.0f);
    lathe_ds_free(d);
    /* empty: N = 0 */
    write_file(im, "\0\0\x08\x03\0\0\0\0\0\0\0\x1c\0\0\0\x1c", 16, true);
    write_file(lb, "\0\0\x08\x01\0\0\0\0", 8, true);
    d = lathe_ds_load_idx(im, lb, "x", "y", true, err, sizeof err);
    if (!d) fail_msg("%s", err);
    assert_int_equal(lathe_ds_count(d), 0);
    assert_non_null(lathe_ds_tensor(d, 0)->data);
    assert_int_equal(lathe_ds_tensor(d, 0)->shape[1], 28);
    lathe_ds_free(d);
    unlink(im);
    unlink(lb);
}

/* ---- bad files ---- */

enum { RAW, GZ, GZ_BYTES }; /* write as given / gzip-compress it / it already is gzip bytes */

typedef struct {
    const char *label;
    int which;              /* 0: the images file is bad, 1: the labels file */
    int how;                /* RAW, GZ, GZ_BYTES */
    const char *bytes;
    size_t len;
    const char *expect;     /* a piece of the message, which starts with the bad file's path */
} bad_file;

#define B(s) s, sizeof s - 1
#define IMG_HDR "\0\0\x08\x03\0\0\0\x03\0\0\0\x02\0\0\0\x02"
#define IMG_DATA "\0\xff\x33\x80\x01\x02\x03\x04\xfe\0\xff\x11"

static const bad_file bad_files[] = {
    {"empty", 0, RAW, B(""), "truncated header: the file has 0 bytes, an IDX header has at least 4"},
    {"3 bytes", 0, RAW, B("\0\0\x08"), "truncated header: the file has 3 bytes"},
    {"3 bytes gzip", 0, GZ, B("\0\0\x08"), "truncated header: the uncompressed data has 3 bytes"},
    {"magic", 0, RAW, B("\x01\0\x08\x01\0\0\0\x03" "abc"), "not an IDX file: bytes 0-1 are 01 00, expected the magic 00 00"},
    {"magic gzip", 0, GZ, B("PK\x03\x04"), "not an IDX file: uncompressed bytes 0-1 are 50 4b"},
    {"magic 00 01", 0, RAW, B("\0\x01"), "bytes 0-1 are 00 01"},
    {"type 0x0A", 0, RAW, B("\0\0\x0a\x01\0\0\0\x03" "abc"),
     "unknown IDX type 0x0A at byte 2 (expected 0x08, 0x09, 0x0B, 0x0C, 0x0D or 0x0E)"},
    {"type 0x00", 0, GZ, B("\0\0\0\x01\0\0\0\x03" "abc"), "unknown IDX type 0x00 at uncompressed byte 2"},
    {"dims 0", 0, RAW, B("\0\0\x08\0"), "IDX dims byte (byte 3) is 0, expected 1 to 8"},
    {"dims 9", 0, RAW, B("\0\0\x08\x09"), "IDX dims byte (byte 3) is 9, expected 1 to 8"},
    {"dims 255 gzip", 1, GZ, B("\0\0\x08\xff"), "IDX dims byte (uncompressed byte 3) is 255"},
    {"cut dims", 0, RAW, B("\0\0\x08\x03\0\0\0\x03\0\0"),
     "truncated header: 3 dims need a 16-byte header, the file has 10 bytes"},
    {"cut dims gzip", 1, GZ, B("\0\0\x08\x01\0\0"),
     "truncated header: 1 dims need a 8-byte header, the uncompressed data has 6 bytes"},
    {"overflow", 0, RAW, B("\0\0\x08\x08" "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
                           "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"),
     "IDX dims [4294967295, 4294967295, 4294967295, 4294967295, 4294967295, 4294967295, 4294967295, "
     "4294967295] (bytes 4-35): the element count overflows 64 bits"},
    {"over 16 GiB", 0, RAW, B("\0\0\x08\x02\0\x01\0\x01\0\x01\0\0"),
     "IDX dims [65537, 65536] hold 4295032832 elements, which as F32 would take more than the "
     "17179869184-byte (16 GiB) limit"},
    {"over 16 GiB labels", 1, GZ, B("\0\0\x0c\x01\x80\0\0\x01"), "IDX dims [2147483649] hold 2147483649 elements, "
                                                               "which as I64 would take more than"},
    /* 12 GiB is allowed (and not allocated up front); this file holds 12 of its bytes */
    {"12 GiB, cut", 0, GZ, B("\0\0\x08\x04\0\0\0\x03\0\0\x04\0\0\0\x04\0\0\0\x04\0" IMG_DATA),
     "truncated data: IDX dims [3, 1024, 1024, 1024] of unsigned byte need 3221225472 bytes of data after "
     "the 20-byte header, the uncompressed data has 12"},
    {"cut data", 0, RAW, B(IMG_HDR "\0\xff\x33\x80\x01\x02\x03\x04\xfe\0"),
     "truncated data: IDX dims [3, 2, 2] of unsigned byte need 12 bytes of data after the 16-byte header, "
     "the file has 10"},
    {"cut data gzip", 0, GZ, B(IMG_HDR "\0\xff\x33"), "need 12 bytes of data after the 16-byte header, "
                                                       "the uncompressed data has 3"},
    {"cut int32 data", 1, RAW, B("\0\0\x0c\x01\0\0\0\x03" "\0\0\0\x01\0\0\0\x02\0\0"),
     "IDX dims [3] of int32 need 12 bytes of data after the 8-byte header, the file has 10"},
    {"trailing", 0, RAW, B(IMG_HDR IMG_DATA "\0\0"), "trailing data: 2 bytes after the end of the IDX data at byte 28"},
    {"trailing gzip", 1, GZ, B("\0\0\x08\x01\0\0\0\x03\x01\x02\x03\x04"),
     "trailing data: 1 bytes after the end of the IDX data at uncompressed byte 11"},
    {"gzip bad method", 0, GZ_BYTES, B("\x1f\x8b\x07\0\0\0\0\0\0\x03" "abcdefgh"),
     "corrupt gzip data: unknown compression method (zlib error -3), detected at compressed byte 4"},
    {"gzip magic only", 0, GZ_BYTES, B("\x1f\x8b"), "corrupt gzip data: unexpected end of file (zlib error -5), detected at compressed byte 2"},
    {"labels 2-D", 1, RAW, B("\0\0\x08\x02\0\0\0\x03\0\0\0\x01\x01\x02\x03"),
     "labels must be 1-D (N), but the IDX dims are [3, 1]"},
    {"labels float64", 1, RAW, B("\0\0\x0e\x01\0\0\0\x03"),
     "labels must have an integer IDX type (0x08, 0x09, 0x0B or 0x0C), not float64 (0x0E)"},
    {"labels N", 1, GZ, B("\0\0\x08\x01\0\0\0\x02\x01\x02"), "2 labels, but the images file "},
};

static void expect_refused(const char *label, const char *im, const char *lb, const char *bad, const char *expect) {
    char err[1024], want[600];
    lathe_dataset *d = lathe_ds_load_idx(im, lb, "x", "y", true, err, sizeof err);
    if (d) fail_msg("row '%s': file accepted", label);
    snprintf(want, sizeof want, "%s: ", bad);
    if (strncmp(err, want, strlen(want)) != 0 || !strstr(err, expect))
        fail_msg("row '%s':\n  message:  %s\n  expected: %s%s", label, err, want, expect);
}

static void test_bad_files(void **state) {
    (void)state;
    char im[512], lb[512];
    path_in_tmp(im, sizeof im, "b-images");
    path_in_tmp(lb, sizeof lb, "b-labels");
    for (size_t i = 0; i < sizeof bad_files / sizeof bad_files[0]; i++) {
        const bad_file *b = &bad_files[i];
        write_pair(im, lb, false);
        write_file(b->which ? lb : im, b->bytes, b->len, b->how == GZ);
        expect_refused(b->label, im, lb, b->which ? lb : im, b->expect);
    }
    /* A real gzip file with a damaged trailer (CRC) or cut short. */
    write_pair(im, lb, true);
    size_t len;
    unsigned char *g = slurp(im, &len);
    char want[256];
    g[len - 8] ^= 1;
    write_file(im, g, len, false);
    snprintf(want, sizeof want, "corrupt gzip data: incorrect data check (zlib error -3), detected at compressed "
                                "byte %zu", len - 4); /* just after the CRC */
    expect_refused("bad crc", im, lb, im, want);
    g[len - 8] ^= 1;
    write_file(im, g, len - 4, false);
    snprintf(want, sizeof want, "corrupt gzip data: unexpected end of file (zlib error -5), detected at compressed "
                                "byte %zu", len - 4);
    expect_refused("no isize", im, lb, im, want);
    write_file(im, g, len / 2, false);
    expect_refused("half gzip", im, lb, im, "unexpected end of file");
    free(g);

    /* The limit is on the converted size: 2^31 labels as I64 are exactly
     * 16 GiB, allowed (both headers pass, then the images are found cut
     * short, without 8 GiB allocated for them); one label more is refused. */
    write_file(im, "\0\0\x08\x01\x80\0\0\0" "abc", 11, true);
    write_file(lb, "\0\0\x09\x01\x80\0\0\0" "abc", 11, true);
    expect_refused("16 GiB labels", im, lb, im, "need 2147483648 bytes of data after the 8-byte header, "
                                                "the uncompressed data has 3");
    write_file(lb, "\0\0\x09\x01\x80\0\0\x01" "abc", 11, false);
    expect_refused("16 GiB + 8 labels", im, lb, lb, "IDX dims [2147483649] hold 2147483649 elements, which as I64 "
                                                    "would take more than the 17179869184-byte (16 GiB) limit");
    /* more than the memory available (here, as the hook says: 40 bytes; the
     * three 2x2 images take 48 as F32): refused before reading the data */
    write_pair(im, lb, true);
    lathe_ds_test_available = 40;
    expect_refused("over available memory", im, lb, im, "IDX dims [3, 2, 2] would take 48 bytes as F32, more than the "
                                                        "40 bytes of memory available (MemAvailable)");
    lathe_ds_test_available = 48;
    lathe_dataset *fits = load(im, lb, false);
    assert_non_null(fits);
    lathe_ds_free(fits);
    lathe_ds_test_available = -1;
    /* No images, each of 2^32-1 x 2^32-1 pixels: a sample's size does not fit
     * (computing it used to overflow) */
    write_file(im, "\0\0\x08\x03\0\0\0\0\xff\xff\xff\xff\xff\xff\xff\xff", 16, false);
    write_file(lb, "\0\0\x08\x01\0\0\0\0", 8, false);
    expect_refused("empty, huge samples", im, lb, im, "one sample does not fit in 63 bits of bytes");
    unlink(im);
    unlink(lb);
}

static void test_io_errors(void **state) {
    (void)state;
    char im[512], lb[512], err[512];
    path_in_tmp(im, sizeof im, "io-images");
    path_in_tmp(lb, sizeof lb, "does-not-exist");
    write_file(im, images_u8, sizeof images_u8, false);
    assert_null(lathe_ds_load_idx(im, lb, "x", "y", true, err, sizeof err));
    assert_non_null(strstr(err, lb));
    assert_non_null(strstr(err, "cannot open"));
    assert_null(lathe_ds_load_idx(tmpdir, im, "x", "y", true, err, sizeof err));
    assert_non_null(strstr(err, "not a regular file"));
    assert_null(lathe_ds_load_idx(NULL, im, "x", "y", true, err, sizeof err));
    assert_non_null(strstr(err, "no path"));
    assert_null(lathe_ds_load_idx(im, im, "x", "x", true, err, sizeof err));
    assert_non_null(strstr(err, "two different names, got 'x' and 'x'"));
    assert_null(lathe_ds_load_idx(im, im, NULL, "x", true, err, sizeof err));
    assert_non_null(strstr(err, "two different names"));
    path_in_tmp(lb, sizeof lb, "fifo");
    assert_int_equal(mkfifo(lb, 0600), 0);
    assert_null(lathe_ds_load_idx(im, lb, "x", "y", true, err, sizeof err)); /* refused at once, not blocked */
    assert_non_null(strstr(err, "not a regular file"));
    unlink(lb);
    assert_null(lathe_ds_load_idx(NULL, NULL, "x", "y", true, NULL, 0)); /* no message buffer: still fine */
    unlink(im);
}

/* Every proper prefix of a valid file, raw and gzip, is refused with a
 * message naming it; every single-bit flip is either accepted or refused,
 * never a crash (ASan and UBSan watch). */
static void test_truncation_and_flips(void **state) {
    (void)state;
    char im[512], lb[512], err[512];
    path_in_tmp(im, sizeof im, "tr-images");
    path_in_tmp(lb, sizeof lb, "tr-labels");
    for (int gz = 0; gz < 2; gz++) {
        for (int which = 0; which < 2; which++) {
            write_pair(im, lb, gz);
            const char *bad = which ? lb : im;
            size_t len;
            unsigned char *full = slurp(bad, &len);
            for (size_t cut = 0; cut < len; cut++) {
                write_file(bad, full, cut, false);
                lathe_dataset *d = lathe_ds_load_idx(im, lb, "x", "y", true, err, sizeof err);
                if (d) fail_msg("%s %s cut to %zu of %zu bytes: accepted", gz ? "gzip" : "raw", bad, cut, len);
                if (strncmp(err, bad, strlen(bad)) != 0)
                    fail_msg("%s cut to %zu: message does not name it: %s", bad, cut, err);
            }
            int accepted = 0;
            for (size_t bit = 0; bit < 8 * len; bit++) {
                full[bit / 8] ^= (unsigned char)(1u << bit % 8);
                write_file(bad, full, len, false);
                full[bit / 8] ^= (unsigned char)(1u << bit % 8);
                lathe_dataset *d = lathe_ds_load_idx(im, lb, "x", "y", true, err, sizeof err);
                if (d) accepted++;
                else if (!strstr(err, bad)) fail_msg("bit %zu: %s", bit, err); /* N mismatch names both */
                lathe_ds_free(d);
            }
            /* raw: flips in the data bytes are fine; gzip: the CRC catches data flips */
            assert_true(accepted > 0);
            free(full);
        }
    }
    unlink(im);
    unlink(lb);
}

/* ---- gather and check ---- */

static void test_gather_check(void **state) {
    (void)state;
    char im[512], lb[512], err[512];
    path_in_tmp(im, sizeof im, "g-images.gz");
    path_in_tmp(lb, sizeof lb, "g-labels.gz");
    write_pair(im, lb, true);
    lathe_dataset *d = load(im, lb, false);
    const int64_t idx[4] = {2, 0, 2, 1};
    float x[4 * 4];
    int64_t y[4];
    assert_int_equal(lathe_ds_gather(d, "x", idx, 4, x, err, sizeof err), 0);
    assert_int_equal(lathe_ds_gather(d, "y", idx, 4, y, err, sizeof err), 0);
    const float want_x[16] = {254, 0, 255, 17, 0, 255, 51, 128, 254, 0, 255, 17, 1, 2, 3, 4};
    for (int i = 0; i < 16; i++) assert_true(x[i] == want_x[i]);
    assert_int_equal(y[0], 7);
    assert_int_equal(y[1], 9);
    assert_int_equal(y[2], 7);
    assert_int_equal(y[3], 0);
    assert_int_equal(lathe_ds_gather(d, "x", NULL, 0, NULL, err, sizeof err), 0);

    /* refused, out untouched */
    static const struct {
        const char *name;
        int64_t idx, batch;
        const char *expect;
    } bad[] = {
        {"y", 3, 1, "gather from tensor 'y': index 3 (idx[1]) is outside [0, 3)"},
        {"x", -1, 1, "gather from tensor 'x': index -1 (idx[1]) is outside [0, 3)"},
        {"y", 0, -1, "gather from tensor 'y': negative batch size"},
        {"z", 0, 1, "no tensor named 'z' in the dataset (it has 'x' from "},
        {NULL, 0, 1, "no tensor name given (NULL)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t out[2] = {-5, -5}, two[2] = {0, bad[i].idx};
        assert_int_equal(lathe_ds_gather(d, bad[i].name, two, bad[i].batch < 0 ? -1 : 2, out, err, sizeof err), -1);
        if (!strstr(err, bad[i].expect)) fail_msg("gather %zu: %s", i, err);
        const char *src = bad[i].name && !strcmp(bad[i].name, "y") ? lb : im;
        assert_true(strncmp(err, src, strlen(src)) == 0);
        assert_int_equal(out[0], -5);
        assert_int_equal(out[1], -5);
    }
    assert_int_equal(lathe_ds_gather(d, "y", NULL, 1, y, err, sizeof err), -1);
    assert_non_null(strstr(err, "no indices (NULL)"));
    assert_int_equal(lathe_ds_gather(d, "y", idx, 1, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "no output buffer (NULL)"));
    assert_int_equal(lathe_ds_gather(NULL, "y", idx, 1, y, err, sizeof err), -1);

    static const int64_t s22[2] = {2, 2}, s122[3] = {1, 2, 2}, s23[2] = {2, 3};
    assert_int_equal(lathe_ds_check(d, "x", LATHE_RT_F32, 2, s22, err, sizeof err), 0);
    assert_int_equal(lathe_ds_check(d, "y", LATHE_RT_I64, 0, NULL, err, sizeof err), 0);
    char want[1024];
    static const struct {
        const char *name;
        int dtype, rank;
        const int64_t *shape;
        const char *expect;
    } checks[] = {
        {"x", LATHE_RT_F32, 3, s122,
         "tensor 'x' has F32 samples of shape [2, 2] (tensor shape [3, 2, 2], N = 3), expected F32 samples of "
         "shape [1, 2, 2]"},
        {"x", LATHE_RT_F32, 2, s23, "has F32 samples of shape [2, 2] (tensor shape [3, 2, 2], N = 3), expected "
                                    "F32 samples of shape [2, 3]"},
        {"x", LATHE_RT_F64, 2, s22, "has F32 samples of shape [2, 2] (tensor shape [3, 2, 2], N = 3), expected "
                                    "F64 samples of shape [2, 2]"},
        {"y", LATHE_RT_F32, 0, NULL, "tensor 'y' has I64 samples of shape [] (tensor shape [3], N = 3), expected "
                                     "F32 samples of shape []"},
        {"y", LATHE_RT_I64, 1, s22, "expected I64 samples of shape [2]"},
        {"y", LATHE_RT_I64, 1, NULL, "bad expected sample rank 1 with no shape (NULL)"},
        {"w", LATHE_RT_I64, 0, NULL, "no tensor named 'w'"},
    };
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        assert_int_equal(lathe_ds_check(d, checks[i].name, checks[i].dtype, checks[i].rank, checks[i].shape, err,
                                        sizeof err),
                         -1);
        snprintf(want, sizeof want, "%s: ", strcmp(checks[i].name, "y") ? im : lb);
        if (strncmp(err, want, strlen(want)) != 0 || !strstr(err, checks[i].expect))
            fail_msg("check %zu:\n  message:  %s\n  expected: %s%s", i, err, want, checks[i].expect);
    }
    lathe_ds_free(d);
    unlink(im);
    unlink(lb);
}

/* ---- safetensors and memory ---- */

static void test_safetensors_and_memory(void **state) {
    (void)state;
    char path[512], err[512];
    path_in_tmp(path, sizeof path, "d.safetensors");
    const float xs[4 * 3] = {0, 1, 2, 10, 11, 12, 20, 21, 22, 30, 31, 32};
    const int64_t ys[4] = {5, 6, 7, 8};
    const unsigned char ms[4] = {1, 0, 0, 1};
    lathe_st_tensor t[3] = {
        {.name = "x", .dtype = LATHE_RT_F32, .rank = 2, .shape = {4, 3}, .data = xs},
        {.name = "y", .dtype = LATHE_RT_I64, .rank = 1, .shape = {4}, .data = ys},
        {.name = "m", .dtype = LATHE_RT_BOOL, .rank = 1, .shape = {4}, .data = ms},
    };
    for (int from_file = 0; from_file < 2; from_file++) {
        lathe_dataset *d;
        if (from_file) {
            assert_int_equal(lathe_st_write(path, t, 3, NULL, NULL, 0, err, sizeof err), 0);
            d = lathe_ds_load_safetensors(path, err, sizeof err);
        } else {
            d = lathe_ds_from_tensors(t, 3, "synthetic", err, sizeof err);
        }
        if (!d) fail_msg("%s", err);
        assert_int_equal(lathe_ds_count(d), 4);
        assert_int_equal(lathe_ds_num_tensors(d), 3);
        assert_string_equal(lathe_ds_source(d, 2), from_file ? path : "synthetic");
        const int64_t idx[2] = {3, 1}, s3[1] = {3};
        float x[6];
        int64_t y[2];
        unsigned char m[2];
        assert_int_equal(lathe_ds_gather(d, "x", idx, 2, x, err, sizeof err), 0);
        assert_int_equal(lathe_ds_gather(d, "y", idx, 2, y, err, sizeof err), 0);
        assert_int_equal(lathe_ds_gather(d, "m", idx, 2, m, err, sizeof err), 0);
        assert_true(x[0] == 30 && x[2] == 32 && x[3] == 10 && x[5] == 12);
        assert_int_equal(y[0], 8);
        assert_int_equal(y[1], 6);
        assert_int_equal(m[0], 1);
        assert_int_equal(m[1], 0);
        assert_int_equal(lathe_ds_check(d, "x", LATHE_RT_F32, 1, s3, err, sizeof err), 0);
        assert_int_equal(lathe_ds_check(d, "m", LATHE_RT_BOOL, 0, NULL, err, sizeof err), 0);
        assert_int_equal(lathe_ds_check(d, "m", LATHE_RT_I64, 0, NULL, err, sizeof err), -1);
        assert_non_null(strstr(err, from_file ? path : "synthetic"));
        lathe_ds_free(d);
    }

    /* refused */
    lathe_st_tensor bad[2] = {t[0], t[1]};
    bad[1].shape[0] = 3;
    assert_int_equal(lathe_st_write(path, bad, 2, NULL, NULL, 0, err, sizeof err), 0);
    assert_null(lathe_ds_load_safetensors(path, err, sizeof err));
    if (!strstr(err, "tensor 'y' has 3 samples (shape [3]) but tensor 'x' has 4 (shape [4, 3]); every tensor of "
                     "a dataset needs the same first dim"))
        fail_msg("%s", err);
    assert_true(strncmp(err, path, strlen(path)) == 0);
    assert_null(lathe_ds_from_tensors(bad, 2, NULL, err, sizeof err));
    assert_true(strncmp(err, "<memory>: tensor 'y' has 3 samples", 34) == 0);

    const int64_t one = 1;
    lathe_st_tensor scalar[2] = {t[1], {.name = "step", .dtype = LATHE_RT_I64, .rank = 0, .data = &one}};
    assert_int_equal(lathe_st_write(path, scalar, 2, NULL, NULL, 0, err, sizeof err), 0);
    assert_null(lathe_ds_load_safetensors(path, err, sizeof err));
    assert_non_null(strstr(err, "tensor 'step' is a scalar; every tensor of a dataset has its samples along"));
    assert_int_equal(lathe_st_write(path, t, 0, NULL, NULL, 0, err, sizeof err), 0);
    assert_null(lathe_ds_load_safetensors(path, err, sizeof err));
    assert_non_null(strstr(err, "no tensors; a dataset needs at least one"));
    write_file(path, "garbage", 7, false);
    assert_null(lathe_ds_load_safetensors(path, err, sizeof err));
    assert_true(strncmp(err, path, strlen(path)) == 0); /* lathe_st_read's message */
    unlink(path);

    lathe_st_tensor dup[2] = {t[1], t[1]};
    assert_null(lathe_ds_from_tensors(dup, 2, "mem", err, sizeof err));
    assert_non_null(strstr(err, "mem: two tensors named 'y'"));
    assert_null(lathe_ds_from_tensors(scalar + 1, 1, "mem", err, sizeof err));
    assert_non_null(strstr(err, "has rank 0; a dataset tensor has rank 1 to 8"));
    lathe_st_tensor nodata = {.name = "z", .dtype = LATHE_RT_F32, .rank = 1, .shape = {2}};
    assert_null(lathe_ds_from_tensors(&nodata, 1, "mem", err, sizeof err));
    assert_non_null(strstr(err, "tensor 'z' has no data (NULL)"));
    nodata.shape[0] = -1;
    assert_null(lathe_ds_from_tensors(&nodata, 1, "mem", err, sizeof err));
    assert_non_null(strstr(err, "negative dim -1"));
    nodata.shape[0] = 0; /* empty: no data needed */
    lathe_dataset *d = lathe_ds_from_tensors(&nodata, 1, "mem", err, sizeof err);
    assert_non_null(d);
    assert_int_equal(lathe_ds_count(d), 0);
    lathe_ds_free(d);
    nodata.dtype = 9;
    assert_null(lathe_ds_from_tensors(&nodata, 1, "mem", err, sizeof err));
    assert_non_null(strstr(err, "unknown dtype 9"));
    assert_null(lathe_ds_from_tensors(NULL, 0, NULL, err, sizeof err));
    assert_non_null(strstr(err, "<memory>: no tensors"));
}

/* ---- shuffling ---- */

static bool is_permutation(const int64_t *p, int64_t n) {
    bool *seen = calloc((size_t)n + 1, 1);
    bool ok = seen != NULL;
    for (int64_t i = 0; ok && i < n; i++) {
        ok = p[i] >= 0 && p[i] < n && !seen[p[i]];
        if (ok) seen[p[i]] = true;
    }
    free(seen);
    return ok;
}

static void test_permutation(void **state) {
    (void)state;
    /* Worked out with a separate Python transcription of the algorithm in
     * dataset.h (whose SplitMix64 gives 6457827717110365317,
     * 3203168211198807973, 9817491932198370423 from state 1234567, the
     * generator's published test vector). */
    static const struct {
        uint64_t seed;
        int64_t epoch, n;
        int64_t perm[10];
    } known[] = {
        {42, 0, 6, {1, 3, 2, 0, 4, 5}},
        {42, 1, 6, {0, 2, 1, 5, 3, 4}},
        {0, 0, 6, {4, 2, 5, 3, 0, 1}},
        {7, -1, 6, {5, 3, 1, 0, 4, 2}},
        {42, 0, 10, {2, 8, 9, 7, 1, 4, 6, 0, 5, 3}},
        {42, 0, 1, {0}},
    };
    int64_t p[1000], q[1000];
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) {
        lathe_ds_permutation(known[k].n, known[k].seed, known[k].epoch, p);
        for (int64_t i = 0; i < known[k].n; i++)
            if (p[i] != known[k].perm[i])
                fail_msg("seed %llu epoch %lld n %lld: perm[%lld] = %lld, expected %lld",
                         (unsigned long long)known[k].seed, (long long)known[k].epoch, (long long)known[k].n,
                         (long long)i, (long long)p[i], (long long)known[k].perm[i]);
    }
    p[0] = -7;
    lathe_ds_permutation(0, 1, 0, p);   /* writes nothing */
    lathe_ds_permutation(-3, 1, 0, p);
    lathe_ds_permutation(5, 1, 0, NULL);
    assert_int_equal(p[0], -7);

    lathe_ds_permutation(1000, 1234, 5, p);
    assert_true(is_permutation(p, 1000));
    lathe_ds_permutation(1000, 1234, 5, q);
    assert_memory_equal(p, q, sizeof p);
    lathe_ds_permutation(1000, 1234, 6, q);
    assert_true(is_permutation(q, 1000));
    assert_true(memcmp(p, q, sizeof p) != 0);
    lathe_ds_permutation(1000, 1235, 5, q);
    assert_true(memcmp(p, q, sizeof p) != 0);
    int64_t fixed = 0;
    for (int i = 0; i < 1000; i++) fixed += p[i] == i;
    assert_true(fixed < 10); /* about 1 expected for a uniform permutation */

    /* Every order of 3 items turns up, about equally often. */
    int count[6] = {0};
    for (int e = 0; e < 6000; e++) {
        lathe_ds_permutation(3, 99, e, p);
        assert_true(is_permutation(p, 3));
        count[p[0] * 2 + (p[1] > p[2])]++;
    }
    for (int i = 0; i < 6; i++) assert_true(count[i] > 850 && count[i] < 1150);
}

/* ---- feeding a model's input: U8 and I32 data, normalization, augmentation ---- */

/* U8 pixels and I32 labels in a safetensors file (written here) stay as
 * stored and are converted as a batch is gathered: pixels to f32 as
 * (float)v / 255.0f (255 exactly 1), or v for a raw input, to f64 as
 * v / 255.0, labels to i64; IDX loaded compactly gives the bits of the IDX
 * loader's f32 and i64. */
static void test_input_conversion(void **state) {
    (void)state;
    static const uint8_t px[3 * 4] = {0, 255, 51, 128, 1, 2, 3, 4, 254, 0, 255, 17};
    static const int32_t lab[3] = {9, -1, 70000};
    lathe_st_tensor ts[2] = {{"image", LATHE_RT_U8, 4, {3, 1, 2, 2}, px}, {"label", LATHE_RT_I32, 1, {3}, lab}};
    char path[512], err[512];
    path_in_tmp(path, sizeof path, "u8.safetensors");
    assert_int_equal(lathe_st_write(path, ts, 2, NULL, NULL, 0, err, sizeof err), 0);
    lathe_dataset *d = lathe_ds_load_safetensors(path, err, sizeof err);
    if (!d) fail_msg("%s", err);
    assert_int_equal(lathe_ds_find(d, "image")->dtype, LATHE_RT_U8); /* kept as stored */
    assert_int_equal(lathe_ds_find(d, "label")->dtype, LATHE_RT_I32);
    lathe_ds_input f32 = {.dtype = LATHE_RT_F32, .rank = 3, .shape = {1, 2, 2}, .scale = true};
    lathe_ds_input lab64 = {.dtype = LATHE_RT_I64, .rank = 0};
    const int64_t idx[2] = {2, 0};
    float x[8];
    assert_int_equal(lathe_ds_gather_input(d, "image", &f32, NULL, 0, idx, 2, x, err, sizeof err), 0);
    assert_true(x[0] == 254.0f / 255.0f && x[1] == 0.0f && x[2] == 1.0f && x[3] == 17.0f / 255.0f);
    assert_true(x[4] == 0.0f && x[5] == 1.0f && x[6] == 0.2f && x[7] == 128.0f / 255.0f);
    f32.scale = false; /* a raw input */
    assert_int_equal(lathe_ds_gather_input(d, "image", &f32, NULL, 0, idx, 2, x, err, sizeof err), 0);
    assert_true(x[0] == 254.0f && x[2] == 255.0f && x[7] == 128.0f);
    lathe_ds_input f64 = {.dtype = LATHE_RT_F64, .rank = 1, .shape = {4}, .scale = true}; /* another shape, same count */
    double xd[4];
    assert_int_equal(lathe_ds_gather_input(d, "image", &f64, NULL, 0, idx + 1, 1, xd, err, sizeof err), 0);
    assert_true(xd[0] == 0.0 && xd[1] == 1.0 && xd[2] == 0.2 && xd[3] == 128.0 / 255.0);
    int64_t y[3];
    const int64_t all[3] = {0, 1, 2};
    assert_int_equal(lathe_ds_gather_input(d, "label", &lab64, NULL, 0, all, 3, y, err, sizeof err), 0);
    assert_true(y[0] == 9 && y[1] == -1 && y[2] == 70000);
    lathe_ds_input u8_64 = {.dtype = LATHE_RT_I64, .rank = 2, .shape = {2, 2}};
    int64_t yy[4];
    assert_int_equal(lathe_ds_gather_input(d, "image", &u8_64, NULL, 0, idx, 1, yy, err, sizeof err), 0);
    assert_true(yy[0] == 254 && yy[1] == 0 && yy[2] == 255 && yy[3] == 17);

    /* refusals, out untouched */
    static const struct {
        const char *tensor;
        lathe_ds_input in;
        lathe_ds_augment aug;
        const char *expect;
    } bad[] = {
        {"image", {.dtype = LATHE_RT_F32, .rank = 2, .shape = {3, 3}}, {0},
         "u8.safetensors: samples of 'image' are u8[1, 2, 2] (4 elements); the model's input 'image' takes f32[3, 3] "
         "(9 elements)"},
        {"label", {.dtype = LATHE_RT_BOOL, .rank = 0}, {0},
         "samples of 'label' are i32[] (1 elements); the model's input 'label' takes bool[] (1 elements); a dataset "
         "converts u8 and i32 to f32, f64 and i64"},
        {"label", {.dtype = LATHE_RT_I64, .rank = 0, .norm = {.channels = 1, .mean = {0}, .std = {1}}}, {0},
         "u8.safetensors: the model's input 'label' is i64[]: normalization applies to float (image) inputs only"},
        {"label", {.dtype = LATHE_RT_I64, .rank = 0}, {.hflip = true},
         "the model's input 'label' is i64[]: augmentation applies to float (image) inputs only"},
        {"image", {.dtype = LATHE_RT_F32, .rank = 3, .shape = {1, 2, 2}, .norm = {.channels = 3, .mean = {0, 0, 0}, .std = {1, 1, 1}}},
         {0},
         "u8.safetensors: normalization with 3 channels, but the model's input 'image' takes f32[1, 2, 2]: 1 channel "
         "(the channels are axis 1 of [N, C, H, W])"},
        {"image", {.dtype = LATHE_RT_F32, .rank = 3, .shape = {1, 2, 2}, .norm = {.channels = 1, .mean = {0}, .std = {0}}},
         {0}, "input 'image': normalization of channel 0: mean 0, std 0 (finite, std > 0)"},
        {"image", {.dtype = LATHE_RT_F32, .rank = 1, .shape = {4}}, {.crop_pad = 1},
         "augmentation crops and flips the last two axes (H, W) of a sample, but the model's input 'image' takes "
         "samples of f32[4]"},
        {"image", {.dtype = LATHE_RT_F32, .rank = 3, .shape = {1, 2, 2}}, {.crop_pad = LATHE_DS_MAX_PAD + 1},
         "random-crop padding 4097 is outside 0..4096"},
        {"nope", {.dtype = LATHE_RT_F32, .rank = 0}, {0}, "no tensor named 'nope'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        float out[16] = {-7};
        err[0] = 0;
        assert_int_equal(lathe_ds_input_check(d, bad[i].tensor, &bad[i].in, &bad[i].aug, err, sizeof err), -1);
        if (!strstr(err, bad[i].expect)) fail_msg("row %zu: message\n  %s\nwithout\n  %s", i, err, bad[i].expect);
        assert_int_equal(lathe_ds_gather_input(d, bad[i].tensor, &bad[i].in, &bad[i].aug, 0, idx, 1, out, err, sizeof err),
                         -1);
        assert_true(out[0] == -7);
    }
    const int64_t outside[2] = {0, 3};
    assert_int_equal(lathe_ds_gather_input(d, "image", &f32, NULL, 0, outside, 2, x, err, sizeof err), -1);
    assert_non_null(strstr(err, "index 3 (idx[1]) is outside [0, 3)"));
    lathe_ds_free(d);

    /* IDX, compactly: U8 images and labels, the same bits after a gather */
    char im[512], lb[512];
    path_in_tmp(im, sizeof im, "c-images");
    path_in_tmp(lb, sizeof lb, "c-labels.gz");
    write_pair(im, lb, false);
    write_file(lb, labels_u8, sizeof labels_u8, true);
    lathe_dataset *c = lathe_ds_load_idx_compact(im, lb, "x", "y", err, sizeof err);
    if (!c) fail_msg("%s", err);
    lathe_dataset *w = load(im, lb, true);
    assert_int_equal(lathe_ds_find(c, "x")->dtype, LATHE_RT_U8);
    assert_int_equal(lathe_ds_find(c, "y")->dtype, LATHE_RT_U8);
    assert_memory_equal(lathe_ds_find(c, "x")->data, images_u8 + 16, 12);
    lathe_ds_input cx = {.dtype = LATHE_RT_F32, .rank = 2, .shape = {2, 2}, .scale = true};
    float a[12], b[12];
    int64_t ya[3], yb[3];
    assert_int_equal(lathe_ds_gather_input(c, "x", &cx, NULL, 0, all, 3, a, err, sizeof err), 0);
    assert_int_equal(lathe_ds_gather(w, "x", all, 3, b, err, sizeof err), 0);
    assert_memory_equal(a, b, sizeof a);
    assert_int_equal(lathe_ds_gather_input(c, "y", &lab64, NULL, 0, all, 3, ya, err, sizeof err), 0);
    assert_int_equal(lathe_ds_gather(w, "y", all, 3, yb, err, sizeof err), 0);
    assert_memory_equal(ya, yb, sizeof ya);
    lathe_ds_free(c);
    lathe_ds_free(w);
    /* int16 images and labels become I32, the images f32 values as load_idx's */
    static const unsigned char i16[] = {0, 0, 0x0B, 2, 0, 0, 0, 2, 0, 0, 0, 1, 0xFF, 0xFE, 0x01, 0x2C};
    static const unsigned char l16[] = {0, 0, 0x0B, 1, 0, 0, 0, 2, 0, 3, 0x7F, 0xFF};
    write_file(im, i16, sizeof i16, false);
    write_file(lb, l16, sizeof l16, false);
    c = lathe_ds_load_idx_compact(im, lb, "x", "y", err, sizeof err);
    if (!c) fail_msg("%s", err);
    assert_int_equal(lathe_ds_find(c, "x")->dtype, LATHE_RT_I32);
    const int32_t *v = lathe_ds_find(c, "x")->data;
    assert_true(v[0] == -2 && v[1] == 300);
    lathe_ds_input one = {.dtype = LATHE_RT_F32, .rank = 1, .shape = {1}, .scale = true};
    assert_int_equal(lathe_ds_gather_input(c, "x", &one, NULL, 0, all, 2, a, err, sizeof err), 0);
    assert_true(a[0] == -2.0f && a[1] == 300.0f); /* never scaled: only unsigned bytes are pixels */
    assert_int_equal(lathe_ds_gather_input(c, "y", &lab64, NULL, 0, all, 2, ya, err, sizeof err), 0);
    assert_true(ya[0] == 3 && ya[1] == 32767);
    lathe_ds_free(c);
    unlink(im);
    unlink(lb);
    unlink(path);
}

/* --normalize's syntax, and torchvision's Normalize on hand values */
static void test_normalize(void **state) {
    (void)state;
    char err[512];
    lathe_ds_normalize n;
    assert_int_equal(lathe_ds_parse_normalize("0.5,0.25", &n, err, sizeof err), 0);
    assert_true(n.channels == 1 && n.mean[0] == 0.5 && n.std[0] == 0.25);
    assert_int_equal(lathe_ds_parse_normalize("0.485,0.456,0.406/0.229,0.224,0.225", &n, err, sizeof err), 0);
    assert_true(n.channels == 3 && n.mean[1] == 0.456 && n.std[2] == 0.225);
    assert_int_equal(lathe_ds_parse_normalize("1e-1/2", &n, err, sizeof err), 0);
    assert_true(n.channels == 1 && n.mean[0] == 0.1 && n.std[0] == 2);
    static const struct {
        const char *spec, *expect;
    } bad[] = {
        {"", "normalization '': 0 numbers"},
        {"0.5", "normalization '0.5': 1 numbers (expected MEAN,STD or M1,...,MC/S1,...,SC; several channels need the slash)"},
        {"1,2,3", "3 numbers"},
        {"0.5,x", "normalization '0.5,x': 'x' is not a finite number"},
        {"nan,1", "'nan' is not a finite number"},
        {"1,inf", "'inf' is not a finite number"},
        {"1,2/3", "normalization '1,2/3': 2 means and 1 standard deviations; one of each per channel"},
        {"1/2/3", "two slashes"},
        {"1,", "a number is missing at the end"},
        {"1/0", "normalization '1/0': standard deviation 0 of channel 0 is not > 0"},
        {"0,0/1,-1", "standard deviation -1 of channel 1 is not > 0"},
        {"1;2", "'1;2' is not a finite number"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        n.channels = -5;
        err[0] = 0;
        assert_int_equal(lathe_ds_parse_normalize(bad[i].spec, &n, err, sizeof err), -1);
        if (!strstr(err, bad[i].expect)) fail_msg("'%s': message\n  %s\nwithout\n  %s", bad[i].spec, err, bad[i].expect);
        assert_int_equal(n.channels, -5); /* untouched */
    }
    char many[2048] = "";
    for (int c = 0; c < 2 * LATHE_DS_MAX_CHANNELS + 2; c++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%s1", c == 0 ? "" : c == LATHE_DS_MAX_CHANNELS + 1 ? "/" : ",");
    assert_int_equal(lathe_ds_parse_normalize(many, &n, err, sizeof err), -1);
    assert_non_null(strstr(err, "more than 64 channels"));

    /* one channel, U8 pixels: (v / 255 - 0.5) / 0.25; 0 and 255 give -2 and 2 exactly */
    static const uint8_t px[4] = {0, 255, 51, 128};
    lathe_st_tensor t = {"x", LATHE_RT_U8, 3, {1, 2, 2}, px};
    lathe_dataset *d = lathe_ds_from_tensors(&t, 1, "mem", err, sizeof err);
    assert_non_null(d);
    lathe_ds_input in = {.dtype = LATHE_RT_F32, .rank = 2, .shape = {2, 2}, .scale = true,
                         .norm = {.channels = 1, .mean = {0.5}, .std = {0.25}}};
    const int64_t zero = 0;
    float x[4];
    assert_int_equal(lathe_ds_gather_input(d, "x", &in, NULL, 0, &zero, 1, x, err, sizeof err), 0);
    assert_true(x[0] == -2.0f && x[1] == 2.0f);
    assert_true(fabsf(x[2] - -1.2f) < 1e-6f && fabsf(x[3] - 0.00784314f) < 1e-6f); /* 0.2 and 128/255 */
    lathe_ds_free(d);

    /* two channels of 1 x 2, raw f32 data: channel 0 (x - 0) / 1, channel 1 (x - 1) / 2 */
    static const float raw[4] = {10, 20, 30, 40};
    lathe_st_tensor r = {"x", LATHE_RT_F32, 2, {1, 4}, raw};
    d = lathe_ds_from_tensors(&r, 1, "mem", err, sizeof err);
    lathe_ds_input two = {.dtype = LATHE_RT_F32, .rank = 3, .shape = {2, 1, 2}, .norm = {.channels = 2, .mean = {0, 1}, .std = {1, 2}}};
    assert_int_equal(lathe_ds_gather_input(d, "x", &two, NULL, 0, &zero, 1, x, err, sizeof err), 0);
    assert_true(x[0] == 10 && x[1] == 20 && x[2] == 14.5f && x[3] == 19.5f);
    lathe_ds_free(d);
    static const double rawd[4] = {10, 20, 30, 40};
    r.dtype = LATHE_RT_F64, r.data = rawd;
    d = lathe_ds_from_tensors(&r, 1, "mem", err, sizeof err);
    two.dtype = LATHE_RT_F64;
    two.norm.mean[1] = 0.1;
    double xd[4];
    assert_int_equal(lathe_ds_gather_input(d, "x", &two, NULL, 0, &zero, 1, xd, err, sizeof err), 0);
    assert_true(xd[0] == 10 && xd[1] == 20 && xd[2] == (30 - 0.1) / 2 && xd[3] == (40 - 0.1) / 2);
    lathe_ds_free(d);
}

/* The draw against a separate Python transcription of dataset.h's
 * algorithm; crops and flips of a 1 x 3 x 3 image with padding 1 worked out
 * by hand; what a sample gets depends on (seed, epoch, sample) only. */
static void test_augment(void **state) {
    (void)state;
    static const struct {
        uint64_t seed;
        int64_t epoch, sample, pad;
        bool hflip;
        int64_t dy, dx;
        bool flip;
    } known[] = {
        {0, 0, 0, 1, true, 0, 2, false},      {0, 0, 1, 1, true, 1, 1, false},
        {42, 3, 17, 4, true, 4, 5, false},    {42, 4, 17, 4, true, 8, 6, true},
        {7, 0, 123456, 2, false, 4, 2, false}, {UINT64_MAX, -1, 5, 1, true, 0, 1, false},
    };
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) {
        lathe_ds_augment a = {.crop_pad = known[k].pad, .hflip = known[k].hflip, .seed = known[k].seed};
        int64_t dy, dx;
        bool flip;
        lathe_ds_augment_draw(&a, known[k].epoch, known[k].sample, &dy, &dx, &flip);
        if (dy != known[k].dy || dx != known[k].dx || flip != known[k].flip)
            fail_msg("row %zu: (%lld, %lld, %d), expected (%lld, %lld, %d)", k, (long long)dy, (long long)dx, flip,
                     (long long)known[k].dy, (long long)known[k].dx, known[k].flip);
    }
    int64_t dy = 9, dx = 9;
    bool flip = true;
    lathe_ds_augment_draw(NULL, 0, 0, &dy, &dx, &flip);
    assert_true(dy == 0 && dx == 0 && !flip);

    /* the image 1..9, 300 copies, as the input f32[1, 3, 3] */
    enum { N = 300 };
    static float img[N][9];
    for (int s = 0; s < N; s++)
        for (int e = 0; e < 9; e++) img[s][e] = (float)(e + 1);
    lathe_st_tensor t = {"x", LATHE_RT_F32, 3, {N, 3, 3}, img};
    char err[512];
    lathe_dataset *d = lathe_ds_from_tensors(&t, 1, "mem", err, sizeof err);
    assert_non_null(d);
    lathe_ds_input in = {.dtype = LATHE_RT_F32, .rank = 3, .shape = {1, 3, 3}};
    lathe_ds_augment aug = {.crop_pad = 1, .hflip = true, .seed = 11};
    /* torchvision: pad with a ring of zeros to 5 x 5, take the 3 x 3 window
     * at row dy, column dx, then mirror the columns if flipped */
    static const struct {
        int dy, dx, flip;
        float out[9];
    } hand[] = {
        {1, 1, 0, {1, 2, 3, 4, 5, 6, 7, 8, 9}},
        {1, 1, 1, {3, 2, 1, 6, 5, 4, 9, 8, 7}},
        {0, 0, 0, {0, 0, 0, 0, 1, 2, 0, 4, 5}},
        {2, 2, 0, {5, 6, 0, 8, 9, 0, 0, 0, 0}},
        {1, 0, 0, {0, 1, 2, 0, 4, 5, 0, 7, 8}},
        {0, 2, 1, {0, 0, 0, 0, 3, 2, 0, 6, 5}},
        {2, 0, 1, {5, 4, 0, 8, 7, 0, 0, 0, 0}},
    };
    int seen[3][3][2] = {{{0}}}, matched[sizeof hand / sizeof hand[0]] = {0};
    int64_t idx[N];
    for (int s = 0; s < N; s++) idx[s] = s;
    static float out[N][9], again[N][9];
    assert_int_equal(lathe_ds_gather_input(d, "x", &in, &aug, 2, idx, N, out, err, sizeof err), 0);
    for (int s = 0; s < N; s++) {
        lathe_ds_augment_draw(&aug, 2, s, &dy, &dx, &flip);
        assert_true(dy >= 0 && dy <= 2 && dx >= 0 && dx <= 2);
        seen[dy][dx][flip]++;
        for (size_t h = 0; h < sizeof hand / sizeof hand[0]; h++)
            if (hand[h].dy == dy && hand[h].dx == dx && hand[h].flip == flip) {
                if (memcmp(out[s], hand[h].out, sizeof hand[h].out))
                    fail_msg("sample %d, crop (%d, %d)%s: not the hand-computed image", s, hand[h].dy, hand[h].dx,
                             hand[h].flip ? " flipped" : "");
                matched[h]++;
            }
    }
    for (size_t h = 0; h < sizeof hand / sizeof hand[0]; h++)
        if (!matched[h]) fail_msg("no sample drew hand case %zu in epoch 2 (the test needs another seed)", h);
    for (int a = 0; a < 3; a++) /* 18 outcomes, about 17 of 300 each */
        for (int b = 0; b < 3; b++)
            for (int f = 0; f < 2; f++) assert_true(seen[a][b][f] >= 4 && seen[a][b][f] <= 40);
    /* the same sample, in any batch and position, gets the same crop; another epoch another one */
    int64_t rev[N];
    for (int s = 0; s < N; s++) rev[s] = N - 1 - s;
    assert_int_equal(lathe_ds_gather_input(d, "x", &in, &aug, 2, rev, N, again, err, sizeof err), 0);
    for (int s = 0; s < N; s++) assert_memory_equal(again[s], out[N - 1 - s], sizeof out[s]);
    assert_int_equal(lathe_ds_gather_input(d, "x", &in, &aug, 3, idx, N, again, err, sizeof err), 0);
    assert_true(memcmp(again, out, sizeof out) != 0);
    /* flip only: every image is the original or its mirror; no augmentation: the original */
    lathe_ds_augment flip_only = {.hflip = true, .seed = 11};
    assert_int_equal(lathe_ds_gather_input(d, "x", &in, &flip_only, 0, idx, N, out, err, sizeof err), 0);
    int flipped = 0;
    for (int s = 0; s < N; s++) {
        bool same = !memcmp(out[s], hand[0].out, sizeof hand[0].out), mirror = !memcmp(out[s], hand[1].out, sizeof hand[1].out);
        assert_true(same || mirror);
        flipped += mirror;
    }
    assert_true(flipped > 110 && flipped < 190); /* p = 0.5 */
    lathe_ds_augment none = {.seed = 11};
    assert_int_equal(lathe_ds_gather_input(d, "x", &in, &none, 0, idx, 1, out, err, sizeof err), 0);
    assert_memory_equal(out[0], hand[0].out, sizeof hand[0].out);
    /* normalized after the crop: the zero padding becomes (0 - 0.5) / 0.5 = -1 */
    in.norm = (lathe_ds_normalize){.channels = 1, .mean = {0.5}, .std = {0.5}};
    assert_int_equal(lathe_ds_gather_input(d, "x", &in, &aug, 2, idx, N, out, err, sizeof err), 0);
    for (int s = 0; s < N; s++) {
        lathe_ds_augment_draw(&aug, 2, s, &dy, &dx, &flip);
        if (dy == 0 && dx == 0 && !flip) {
            static const float want[9] = {-1, -1, -1, -1, 1, 3, -1, 7, 9}; /* (x - 0.5) / 0.5 = 2x - 1 */
            assert_memory_equal(out[s], want, sizeof want);
        }
    }
    lathe_ds_free(d);

    /* U8 pixels, scaled, cropped: the same padding (0) */
    static uint8_t px[N][9];
    for (int s = 0; s < N; s++)
        for (int e = 0; e < 9; e++) px[s][e] = (uint8_t)(255 * (e % 2));
    lathe_st_tensor u = {"x", LATHE_RT_U8, 2, {N, 9}, px};
    d = lathe_ds_from_tensors(&u, 1, "mem", err, sizeof err);
    lathe_ds_input scaled = {.dtype = LATHE_RT_F32, .rank = 3, .shape = {1, 3, 3}, .scale = true};
    assert_int_equal(lathe_ds_gather_input(d, "x", &scaled, &aug, 2, idx, N, out, err, sizeof err), 0);
    for (int s = 0; s < N; s++) {
        lathe_ds_augment_draw(&aug, 2, s, &dy, &dx, &flip);
        if (dy == 2 && dx == 2 && !flip) { /* 0 1 0 / 1 0 1 / 0 1 0 shifted up and left */
            static const float want[9] = {0, 1, 0, 1, 0, 0, 0, 0, 0};
            assert_memory_equal(out[s], want, sizeof want);
        }
    }
    lathe_ds_free(d);
}

/* torchvision's training transforms against lathe_ds_gather_input
 * (tests/fixtures/recipes.safetensors, make_recipe_fixtures.py): u8 images
 * through RandomCrop(size, padding=P) with the offsets Lathe draws,
 * RandomHorizontalFlip as drawn, ToTensor and Normalize, in PyTorch on PIL
 * images, RGB [3, 5, 7] with ImageNet's per-channel mean and std and grey
 * [5, 6] (fed as [1, 5, 6]) with one; the draws against the script's
 * transcription of dataset.h's.  The batch is gathered in reverse order
 * (what a sample gets does not depend on where it lands).  Exact: both
 * compute (float)v / 255 and then (x - mean) / std in f32. */
static void test_transforms_parity(void **state) {
    (void)state;
    lathe_st_file *f = read_fixture("recipes.safetensors");
    static const struct {
        const char *images, *norm;
        uint64_t seed;
        int64_t epoch, pad, shape[3];
    } cases[] = {
        {"img3", "0.485,0.456,0.406/0.229,0.224,0.225", 5, 0, 2, {3, 5, 7}},
        {"img3", "0.485,0.456,0.406/0.229,0.224,0.225", 5, 3, 2, {3, 5, 7}},
        {"img1", "0.286,0.353", 0, 1, 1, {1, 5, 6}},
    };
    char err[512], key[64];
    int flips = 0, edges = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const lathe_st_tensor *img = lathe_st_find(f, cases[c].images);
        snprintf(key, sizeof key, "%s.e%lld", cases[c].images, (long long)cases[c].epoch);
        const lathe_st_tensor *want = lathe_st_find(f, key);
        snprintf(key, sizeof key, "%s.draw.e%lld", cases[c].images, (long long)cases[c].epoch);
        const lathe_st_tensor *draws = lathe_st_find(f, key);
        if (!img || !want || !draws) fail_msg("the fixture lacks %s's case %zu", cases[c].images, c);
        assert_int_equal(img->dtype, LATHE_RT_U8);
        int64_t N = img->shape[0], per = cases[c].shape[0] * cases[c].shape[1] * cases[c].shape[2];
        lathe_st_tensor t = *img;
        t.name = "x";
        lathe_dataset *d = lathe_ds_from_tensors(&t, 1, "recipes", err, sizeof err);
        if (!d) fail_msg("%s", err);
        lathe_ds_input in = {.dtype = LATHE_RT_F32, .rank = 3, .scale = true};
        memcpy(in.shape, cases[c].shape, sizeof cases[c].shape);
        assert_int_equal(lathe_ds_parse_normalize(cases[c].norm, &in.norm, err, sizeof err), 0);
        lathe_ds_augment aug = {.crop_pad = cases[c].pad, .hflip = true, .seed = cases[c].seed};
        const int64_t *dw = draws->data;
        for (int64_t s = 0; s < N; s++) {
            int64_t dy, dx;
            bool flip;
            lathe_ds_augment_draw(&aug, cases[c].epoch, s, &dy, &dx, &flip);
            if (dy != dw[3 * s] || dx != dw[3 * s + 1] || flip != (dw[3 * s + 2] != 0))
                fail_msg("%s epoch %lld sample %lld: draw (%lld, %lld, %d), the script's (%lld, %lld, %lld)", cases[c].images,
                         (long long)cases[c].epoch, (long long)s, (long long)dy, (long long)dx, flip, (long long)dw[3 * s],
                         (long long)dw[3 * s + 1], (long long)dw[3 * s + 2]);
            flips += flip;
            edges += dy == 0 || dx == 2 * cases[c].pad;
        }
        int64_t *idx = malloc(sizeof *idx * (size_t)N);
        float *out = malloc(sizeof *out * (size_t)(N * per));
        for (int64_t s = 0; s < N; s++) idx[s] = N - 1 - s;
        if (lathe_ds_gather_input(d, "x", &in, &aug, cases[c].epoch, idx, N, out, err, sizeof err)) fail_msg("%s", err);
        const float *w = want->data;
        for (int64_t k = 0; k < N; k++)
            for (int64_t e = 0; e < per; e++) {
                float got = out[k * per + e], exp = w[idx[k] * per + e];
                if (memcmp(&got, &exp, sizeof got))
                    fail_msg("%s epoch %lld sample %lld element %lld (c %lld, y %lld, x %lld): %.9g, torchvision %.9g",
                             cases[c].images, (long long)cases[c].epoch, (long long)idx[k], (long long)e,
                             (long long)(e / (cases[c].shape[1] * cases[c].shape[2])),
                             (long long)(e / cases[c].shape[2] % cases[c].shape[1]), (long long)(e % cases[c].shape[2]), got, exp);
            }
        free(idx);
        free(out);
        lathe_ds_free(d);
    }
    assert_true(flips > 0 && edges > 0); /* the script checks each case has both flips and edge crops */
    lathe_st_free(f);
}

/* ---- the real thing ---- */

#define FMNIST "/usr/share/datasets/fashion-mnist"

/* text: byte windows, split by position, written out by hand */
static void test_text(void **state) {
    (void)state;
    char path[512], err[512];
    path_in_tmp(path, sizeof path, "t.txt");
    write_file(path, "abcdefghijklmnopqrst", 20, false); /* 20 bytes: 15 to train, 5 held out (0.25) */
    lathe_dataset *d = lathe_ds_load_text(path, 3, 0.25, false, "x", "y", err, sizeof err);
    if (!d) fail_msg("%s", err);
    assert_int_equal(lathe_ds_count(d), 4); /* (15 - 1) / 3 windows: abcd defg ghij jklm */
    const lathe_st_tensor *x = lathe_ds_find(d, "x"), *y = lathe_ds_find(d, "y");
    assert_int_equal(x->dtype, LATHE_RT_U8); /* the bytes as they are: i64 on gather */
    assert_int_equal(x->shape[1], 3);
    const char *xs = "abcdefghijkl", *ys = "bcdefghijklm";
    for (int i = 0; i < 12; i++) {
        assert_int_equal(((const uint8_t *)x->data)[i], xs[i]);
        assert_int_equal(((const uint8_t *)y->data)[i], ys[i]);
    }
    lathe_ds_free(d);
    d = lathe_ds_load_text(path, 3, 0.25, true, "x", "y", err, sizeof err); /* "pqrst": one window pqrs */
    if (!d) fail_msg("%s", err);
    assert_int_equal(lathe_ds_count(d), 1);
    assert_int_equal(((const uint8_t *)lathe_ds_find(d, "y")->data)[2], 's');
    lathe_ds_free(d);
    /* bytes above 127 are tokens 128..255 */
    write_file(path, "\xc3\xa9\xff\x00z", 5, false);
    d = lathe_ds_load_text(path, 1, 0.2, false, "x", "y", err, sizeof err);
    if (!d) fail_msg("%s", err);
    assert_int_equal(lathe_ds_count(d), 3);
    assert_int_equal(((const uint8_t *)lathe_ds_find(d, "x")->data)[0], 0xc3);
    assert_int_equal(((const uint8_t *)lathe_ds_find(d, "y")->data)[1], 0xff);
    lathe_ds_free(d);
    /* refused: a part shorter than a window, a bad fraction, a missing file */
    assert_null(lathe_ds_load_text(path, 4, 0.2, true, "x", "y", err, sizeof err));
    assert_non_null(strstr(err, "t.txt: the validation part has 1 bytes, fewer than one window of 4 + 1"));
    assert_null(lathe_ds_load_text(path, 4, 1.5, false, "x", "y", err, sizeof err));
    assert_non_null(strstr(err, "held-out fraction 1.5"));
    path_in_tmp(path, sizeof path, "missing.txt");
    assert_null(lathe_ds_load_text(path, 4, 0.1, false, "x", "y", err, sizeof err));
    assert_non_null(strstr(err, "missing.txt"));
    /* a directory: its text files in name order; links and binary files left out */
    char dir[512], f[600];
    path_in_tmp(dir, sizeof dir, "corpus");
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(f, sizeof f, "%s/b", dir);
    write_file(f, "EFGH", 4, false);
    snprintf(f, sizeof f, "%s/a", dir);
    write_file(f, "ABCD", 4, false);
    snprintf(f, sizeof f, "%s/a.dat", dir);
    write_file(f, "\x01\x00zz", 4, false);
    char link[600];
    snprintf(link, sizeof link, "%s/a.u8", dir);
    assert_int_equal(symlink("a", link), 0);
    d = lathe_ds_load_text(dir, 3, 0.2, false, "x", "y", err, sizeof err); /* ABCDEF|GH: 6 bytes to train */
    if (!d) fail_msg("%s", err);
    assert_int_equal(lathe_ds_count(d), 1);
    for (int i = 0; i < 3; i++) assert_int_equal(((const uint8_t *)lathe_ds_find(d, "y")->data)[i], "BCD"[i]);
    lathe_ds_free(d);
    unlink(link);
    snprintf(f, sizeof f, "%s/a.dat", dir), unlink(f);
    snprintf(f, sizeof f, "%s/a", dir), unlink(f);
    snprintf(f, sizeof f, "%s/b", dir), unlink(f);
    assert_null(lathe_ds_load_text(dir, 3, 0.2, false, "x", "y", err, sizeof err));
    assert_non_null(strstr(err, "corpus: no text files in the directory"));
    rmdir(dir);
}

static void test_fashion_mnist(void **state) {
    (void)state;
    struct stat st;
    if (stat(FMNIST "/t10k-images-idx3-ubyte.gz", &st) != 0) {
        print_message("  " FMNIST " not installed (apt-get install dataset-fashion-mnist): skipped\n");
        skip();
    }
    char err[512];
    lathe_dataset *d = lathe_ds_load_idx(FMNIST "/t10k-images-idx3-ubyte.gz", FMNIST "/t10k-labels-idx1-ubyte.gz",
                                         "image", "label", true, err, sizeof err);
    if (!d) fail_msg("%s", err);
    assert_int_equal(lathe_ds_count(d), 10000);
    const int64_t px[2] = {28, 28};
    if (lathe_ds_check(d, "image", LATHE_RT_F32, 2, px, err, sizeof err) != 0) fail_msg("%s", err);
    if (lathe_ds_check(d, "label", LATHE_RT_I64, 0, NULL, err, sizeof err) != 0) fail_msg("%s", err);
    const int64_t *y = lathe_ds_find(d, "label")->data;
    const float *x = lathe_ds_find(d, "image")->data;
    /* The first label, read independently:
     *   zcat t10k-labels-idx1-ubyte.gz | od -A d -t u1 | head -1
     *   0000000   0   0   8   1   0   0  39  16   9   2   1   1 ...
     * byte 8 (after the 8-byte header) is 9 (ankle boot).  The label counts,
     * from `zcat ... | tail -c +9 | od -A n -t u1 -v | ... | sort -n | uniq -c`,
     * are 1000 of each of 0..9. */
    assert_int_equal(y[0], 9);
    assert_int_equal(y[1], 2);
    int64_t counts[10] = {0};
    for (int64_t i = 0; i < 10000; i++) {
        assert_true(y[i] >= 0 && y[i] <= 9);
        counts[y[i]]++;
    }
    for (int c = 0; c < 10; c++) assert_int_equal(counts[c], 1000);
    /* The first nonzero pixel of image 0, read the same way:
     *   zcat t10k-images-idx3-ubyte.gz | od -A d -t u1 -j 16 -N 800
     * is byte 231 of the file = pixel 215 (row 7, column 19), value 3. */
    for (int i = 0; i < 215; i++) assert_true(x[i] == 0.0f);
    assert_true(x[215] == 3.0f / 255.0f);
    for (int64_t i = 0; i < 10000 * 784; i++) assert_true(x[i] >= 0.0f && x[i] <= 1.0f);
    lathe_ds_free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_small),
        cmocka_unit_test(test_types),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_io_errors),
        cmocka_unit_test(test_truncation_and_flips),
        cmocka_unit_test(test_gather_check),
        cmocka_unit_test(test_safetensors_and_memory),
        cmocka_unit_test(test_permutation),
        cmocka_unit_test(test_input_conversion),
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_augment),
        cmocka_unit_test(test_transforms_parity),
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_fashion_mnist),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
