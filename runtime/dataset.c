/* dataset.c - datasets: IDX and safetensors loading, gathering, shuffling.
 *
 * An IDX file is read through zlib's gzread, which decompresses gzip and
 * passes any other file through unchanged; whether a file is gzip is decided
 * here from its first two bytes (1f 8b), only so that messages can say
 * "uncompressed byte" where that is what they count.  The header is read
 * and checked whole before any data: the element count is checked for
 * overflow and the converted size against LATHE_DS_MAX_BYTES before anything
 * is allocated, and for load_idx both headers are checked (and the two N
 * compared) before either file's data is read.  Data is then streamed in
 * chunks and converted as it arrives, big-endian to native, into a buffer
 * that grows with what has actually been read, so a header that promises
 * more than the file holds costs no more memory than the file's real data.
 * The file is read to its end, which is how zlib gets to check the gzip
 * trailer (CRC and length) and how trailing bytes are found.
 *
 * The permutation is SplitMix64 driving Fisher-Yates, with rejection instead
 * of a plain modulo so every permutation is equally likely; dataset.h gives
 * the algorithm to the bit, since resumed runs depend on it. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "dataset.h"
#include "fileerr.h"
#include "splitmix.h"

#define CHUNK ((int64_t)1 << 20)   /* bytes read per gzread; a multiple of every element size */

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

/* ---- the dataset ---- */

struct lathe_dataset {
    int n;
    int64_t count;         /* N */
    lathe_st_tensor *t;    /* n; names and data below, or in st */
    char **source;         /* n, owned: the file each tensor came from */
    char **name;           /* n, owned, or NULL entries when st owns the names */
    void **data;           /* n, owned, or NULL entries when st owns the data */
    lathe_st_file *st;     /* load_safetensors: the file, which owns names and data */
};

void lathe_ds_free(lathe_dataset *d) {
    if (!d) return;
    for (int i = 0; i < d->n; i++) {
        if (d->source) free(d->source[i]);
        if (d->name) free(d->name[i]);
        if (d->data) free(d->data[i]);
    }
    free(d->t);
    free(d->source);
    free(d->name);
    free(d->data);
    lathe_st_free(d->st);
    free(d);
}

/* A dataset of n zeroed entries; NULL when out of memory. */
static lathe_dataset *ds_new(int n) {
    lathe_dataset *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->n = n;
    d->t = calloc((size_t)n, sizeof *d->t);
    d->source = calloc((size_t)n, sizeof *d->source);
    d->name = calloc((size_t)n, sizeof *d->name);
    d->data = calloc((size_t)n, sizeof *d->data);
    if (!d->t || !d->source || !d->name || !d->data) {
        lathe_ds_free(d);
        return NULL;
    }
    return d;
}

int64_t lathe_ds_count(const lathe_dataset *d) { return d ? d->count : 0; }

int lathe_ds_num_tensors(const lathe_dataset *d) { return d ? d->n : 0; }

const lathe_st_tensor *lathe_ds_tensor(const lathe_dataset *d, int i) {
    return d && i >= 0 && i < d->n ? &d->t[i] : NULL;
}

static int find_index(const lathe_dataset *d, const char *name) {
    if (!d || !name) return -1;
    for (int i = 0; i < d->n; i++)
        if (strcmp(d->t[i].name, name) == 0) return i;
    return -1;
}

const lathe_st_tensor *lathe_ds_find(const lathe_dataset *d, const char *name) {
    int i = find_index(d, name);
    return i < 0 ? NULL : &d->t[i];
}

const char *lathe_ds_source(const lathe_dataset *d, int i) {
    return d && i >= 0 && i < d->n ? d->source[i] : NULL;
}

int64_t lathe_ds_sample_bytes(const lathe_st_tensor *t) {
    if (!t) return 0;
    int64_t b = (int64_t)lathe_rt_dtype_size(t->dtype);
    for (int i = 1; i < t->rank; i++) {
        if (t->shape[i] < 0) return -1;
        if (t->shape[i] == 0) return 0;
    }
    for (int i = 1; i < t->rank; i++) {
        if (b > INT64_MAX / t->shape[i]) return -1;
        b *= t->shape[i];
    }
    return b;
}

/* Whether t's samples, and all of them, have a size in bytes that fits
 * (a tensor with no samples can still claim huge ones); else a message. */
static bool samples_fit(const lathe_st_tensor *t, const char *what, char *err, size_t errlen) {
    int64_t sb = lathe_ds_sample_bytes(t);
    if (sb >= 0 && (sb == 0 || t->shape[0] <= INT64_MAX / sb) && (uint64_t)sb <= SIZE_MAX) return true;
    char s[256];
    lt_format_shape(s, sizeof s, t->rank, t->shape);
    lt_errf(err, errlen, "%s: tensor '%.*s' of shape %s: %s does not fit in 63 bits of bytes", what, SHOW(t->name),
            s, sb < 0 ? "one sample" : "the whole tensor");
    return false;
}

/* The index of tensor `name`, or -1 with a message listing what there is. */
static int lookup(const lathe_dataset *d, const char *name, char *err, size_t errlen) {
    if (!d) {
        lt_errf(err, errlen, "no dataset (NULL)");
        return -1;
    }
    int i = find_index(d, name);
    if (i >= 0) return i;
    char have[512];
    size_t at = 0;
    have[0] = 0;
    for (int k = 0; k < d->n && at < sizeof have; k++)
        at += (size_t)snprintf(have + at, sizeof have - at, "%s'%.*s' from %s", k ? ", " : "",
                               SHOW(d->t[k].name), d->source[k]);
    if (name)
        lt_errf(err, errlen, "%s: no tensor named '%.*s' in the dataset (it has %s)", d->source[0],
                SHOW(name), have);
    else
        lt_errf(err, errlen, "%s: no tensor name given (NULL); the dataset has %s", d->source[0], have);
    return -1;
}

/* 0 when every tensor has rank >= 1 and the same first dim (then d->count
 * is set), else -1 with a message naming the file and both tensors. */
static int check_first_dims(lathe_dataset *d, char *err, size_t errlen) {
    char s0[256], s1[256];
    for (int i = 0; i < d->n; i++) {
        if (d->t[i].rank < 1) {
            lt_errf(err, errlen,
                    "%s: tensor '%.*s' is a scalar; every tensor of a dataset has its samples along "
                    "its first dim",
                    d->source[i], SHOW(d->t[i].name));
            return -1;
        }
        if (d->t[i].shape[0] != d->t[0].shape[0]) {
            lt_format_shape(s0, sizeof s0, d->t[0].rank, d->t[0].shape);
            lt_format_shape(s1, sizeof s1, d->t[i].rank, d->t[i].shape);
            lt_errf(err, errlen,
                    "%s: tensor '%.*s' has %" PRId64 " samples (shape %s) but tensor '%.*s' has %" PRId64
                    " (shape %s); every tensor of a dataset needs the same first dim",
                    d->source[i], SHOW(d->t[i].name), d->t[i].shape[0], s1, SHOW(d->t[0].name),
                    d->t[0].shape[0], s0);
            return -1;
        }
    }
    d->count = d->n ? d->t[0].shape[0] : 0;
    return 0;
}

/* ---- IDX ---- */

static const struct {
    int code;
    const char *name;
    int size;
    bool integer;
} idx_types[] = {
    {0x08, "unsigned byte", 1, true}, {0x09, "signed byte", 1, true}, {0x0B, "int16", 2, true},
    {0x0C, "int32", 4, true},         {0x0D, "float32", 4, false},    {0x0E, "float64", 8, false},
};
#define NIDX_TYPES (int)(sizeof idx_types / sizeof idx_types[0])

typedef struct {
    const char *path;
    char *err;
    size_t errlen;
    gzFile gz;
    bool gzip;
    const char *byte;      /* "byte" or "uncompressed byte", in messages */
    int type;              /* index into idx_types */
    int rank;
    int64_t shape[LATHE_ST_MAX_RANK];
    int64_t elements;
    int64_t header;        /* header bytes: 4 + 4 x rank */
    int64_t pos;           /* bytes of (uncompressed) data read so far */
    lathe_rt_dtype dtype;  /* what the elements become in memory */
} idx_file;

static void ifail(idx_file *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ifail(idx_file *f, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    lt_file_verrf(f->err, f->errlen, f->path, fmt, ap);
    va_end(ap);
}

static void idx_close(idx_file *f) {
    if (f->gz) gzclose(f->gz);
    f->gz = NULL;
}

/* Read up to len bytes at f->pos; the count read (short only at the end of
 * the data), or -1 with a message on a read or gzip error. */
static int64_t idx_read(idx_file *f, void *buf, int64_t len) {
    int64_t got = 0;
    while (got < len) {
        unsigned want = (unsigned)(len - got > CHUNK ? CHUNK : len - got);
        int k = gzread(f->gz, (char *)buf + got, want);
        if (k > 0) got += k;
        if (k == (int)want) continue;
        int errnum = Z_OK;
        const char *msg = gzerror(f->gz, &errnum);
        if (errnum == Z_ERRNO) {
            ifail(f, "read error after %s %" PRId64 ": %s", f->byte, f->pos + got, strerror(errno));
            return -1;
        }
        if (errnum == Z_MEM_ERROR) {
            ifail(f, "out of memory in zlib");
            return -1;
        }
        if (msg && msg[0] == '<' && strstr(msg, ": ")) msg = strstr(msg, ": ") + 2; /* zlib's "<fd:3>: " */
        if (errnum != Z_OK || k < 0) {
            /* zlib inflates ahead of what has been asked for, so where it
             * stopped in the compressed file is the position that means
             * something, not f->pos. */
            ifail(f, "corrupt gzip data: %s (zlib error %d), detected at compressed byte %lld",
                  msg && *msg ? msg : "unknown error", errnum, (long long)gzoffset(f->gz));
            return -1;
        }
        break; /* end of file */
    }
    f->pos += got;
    return got;
}

int64_t lathe_ds_test_available = -1;

/* Bytes of memory available to a new allocation (Linux's MemAvailable), or
 * -1 when unknown. */
static int64_t available_memory(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return -1;
    char line[256];
    long long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1) break;
    fclose(f);
    return kb >= 0 && kb < INT64_MAX / 1024 ? (int64_t)kb * 1024 : -1;
}

/* What IDX elements of type index `type` become: as_dtype (F32 or I64), or,
 * for IDX_COMPACT, the smallest runtime dtype that holds them (U8 for
 * unsigned bytes, I32 for the other integers, F32 for floats). */
#define IDX_COMPACT ((lathe_rt_dtype)-1)
static lathe_rt_dtype idx_dtype(int type, lathe_rt_dtype as_dtype) {
    if (as_dtype != IDX_COMPACT) return as_dtype;
    return idx_types[type].code == 0x08 ? LATHE_RT_U8 : idx_types[type].integer ? LATHE_RT_I32 : LATHE_RT_F32;
}

/* Open path and read and check its header into f, for reading as dtype
 * (F32, I64 or IDX_COMPACT: the size limit depends on it); false with a
 * message. */
static bool idx_open(idx_file *f, const char *path, lathe_rt_dtype dtype, char *err, size_t errlen) {
    *f = (idx_file){.path = path ? path : "(null)", .err = err, .errlen = errlen, .byte = "byte"};
    struct stat st;
    int fd = lt_open_file(path, &st, err, errlen);
    if (fd < 0) return false;
    unsigned char m[2];
    ssize_t k;
    do k = pread(fd, m, 2, 0);
    while (k < 0 && errno == EINTR);
    if (k < 0) {
        ifail(f, "read error: %s", strerror(errno));
        close(fd);
        return false;
    }
    f->gzip = k == 2 && m[0] == 0x1f && m[1] == 0x8b;
    if (f->gzip) f->byte = "uncompressed byte";
    if (!(f->gz = gzdopen(fd, "rb"))) { /* from now on gzclose closes fd */
        ifail(f, "out of memory");
        close(fd);
        return false;
    }
    gzbuffer(f->gz, 1u << 18);

    unsigned char h[4 + 4 * LATHE_ST_MAX_RANK];
    int64_t got = idx_read(f, h, 4);
    if (got < 0) return false;
    const char *what = f->gzip ? "the uncompressed data" : "the file";
    if (got >= 2 && (h[0] || h[1])) {
        ifail(f, "not an IDX file: %ss 0-1 are %02x %02x, expected the magic 00 00", f->byte, h[0], h[1]);
        return false;
    }
    if (got >= 3) {
        for (f->type = 0; f->type < NIDX_TYPES && idx_types[f->type].code != h[2]; f->type++) {}
        if (f->type == NIDX_TYPES) {
            ifail(f, "unknown IDX type 0x%02X at %s 2 (expected 0x08, 0x09, 0x0B, 0x0C, 0x0D or 0x0E)", h[2],
                  f->byte);
            return false;
        }
    }
    if (got >= 4 && (h[3] == 0 || h[3] > LATHE_ST_MAX_RANK)) {
        ifail(f, "IDX dims byte (%s 3) is %d, expected 1 to %d", f->byte, h[3], LATHE_ST_MAX_RANK);
        return false;
    }
    if (got < 4) {
        ifail(f, "truncated header: %s has %" PRId64 " bytes, an IDX header has at least 4", what, got);
        return false;
    }
    f->rank = h[3];
    f->header = 4 + 4 * (int64_t)f->rank;
    f->dtype = dtype = idx_dtype(f->type, dtype);
    got = idx_read(f, h + 4, 4 * (int64_t)f->rank);
    if (got < 0) return false;
    if (got < 4 * (int64_t)f->rank) {
        ifail(f, "truncated header: %d dims need a %" PRId64 "-byte header, %s has %" PRId64 " bytes", f->rank,
              f->header, what, f->pos);
        return false;
    }
    bool overflow = false;
    f->elements = 1;
    for (int i = 0; i < f->rank; i++) {
        const unsigned char *p = h + 4 + 4 * i;
        f->shape[i] = (int64_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
        if (!overflow && f->shape[i] && f->elements > INT64_MAX / f->shape[i]) overflow = true;
        if (!overflow) f->elements *= f->shape[i];
    }
    for (int i = 0; i < f->rank; i++)
        if (f->shape[i] == 0) overflow = false, f->elements = 0;
    if (overflow) {
        char s[256];
        lt_format_shape(s, sizeof s, f->rank, f->shape);
        ifail(f, "IDX dims %s (%ss 4-%" PRId64 "): the element count overflows 64 bits", s, f->byte,
              f->header - 1);
        return false;
    }
    if (f->elements > LATHE_DS_MAX_BYTES / (int64_t)lathe_rt_dtype_size(dtype)) {
        char s[256];
        lt_format_shape(s, sizeof s, f->rank, f->shape);
        ifail(f, "IDX dims %s hold %" PRId64 " elements, which as %s would take more than the %" PRId64
                 "-byte (16 GiB) limit",
              s, f->elements, lathe_st_dtype_name(dtype), LATHE_DS_MAX_BYTES);
        return false;
    }
    /* a small gzip file can claim gigabytes: refuse what memory cannot hold
     * (before reading any of it) rather than take the machine down */
    int64_t need = f->elements * (int64_t)lathe_rt_dtype_size(dtype);
    int64_t avail = lathe_ds_test_available >= 0 ? lathe_ds_test_available : available_memory();
    if (avail >= 0 && need > avail) {
        char s[256];
        lt_format_shape(s, sizeof s, f->rank, f->shape);
        ifail(f, "IDX dims %s would take %" PRId64 " bytes as %s, more than the %" PRId64
                 " bytes of memory available (MemAvailable)",
              s, need, lathe_st_dtype_name(dtype), avail);
        return false;
    }
    return true;
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Convert k big-endian elements of IDX type code at s into out[0..k) of
 * dtype (F32, or I64, U8 or I32 from integer types that fit). */
static void convert(const unsigned char *s, int64_t k, int code, lathe_rt_dtype dtype, bool scale, void *out) {
    float *f = out;
    int64_t *l = out;
    for (int64_t i = 0; i < k; i++) {
        int64_t v = 0;   /* integer types */
        double x = 0;    /* float types */
        bool integer = true;
        switch (code) {
        case 0x08: v = s[i]; break;
        case 0x09: v = (int64_t)s[i] - (s[i] & 0x80 ? 256 : 0); break;
        case 0x0B: {
            int64_t u = (int64_t)s[2 * i] << 8 | s[2 * i + 1];
            v = u - (u & 0x8000 ? 65536 : 0);
            break;
        }
        case 0x0C: {
            int64_t u = be32(s + 4 * i);
            v = u - (u & 0x80000000 ? (int64_t)1 << 32 : 0);
            break;
        }
        case 0x0D: {
            uint32_t u = be32(s + 4 * i);
            float y;
            memcpy(&y, &u, 4);
            x = y, integer = false;
            break;
        }
        default: { /* 0x0E */
            uint64_t u = (uint64_t)be32(s + 8 * i) << 32 | be32(s + 8 * i + 4);
            memcpy(&x, &u, 8);
            integer = false;
            break;
        }
        }
        if (dtype == LATHE_RT_I64) l[i] = v;
        else if (dtype == LATHE_RT_U8) ((uint8_t *)out)[i] = (uint8_t)v;
        else if (dtype == LATHE_RT_I32) ((int32_t *)out)[i] = (int32_t)v;
        else if (!integer) f[i] = (float)x;
        else if (code == 0x08 && scale) f[i] = (float)v / 255.0f;
        else f[i] = (float)v;
    }
}

/* Read the data of f as f->dtype into *t (name set by the caller); the
 * buffer goes to *data.  False with a message. */
static bool idx_data(idx_file *f, bool scale, lathe_st_tensor *t, void **data) {
    lathe_rt_dtype dtype = f->dtype;
    int esize = idx_types[f->type].size;
    int64_t osize = (int64_t)lathe_rt_dtype_size(dtype);
    char s[256];
    lt_format_shape(s, sizeof s, f->rank, f->shape);
    int64_t need = f->elements * esize, done = 0, cap = 0, trailing = 0;
    unsigned char *chunk = malloc((size_t)CHUNK);
    unsigned char *out = NULL;
    if (!chunk) goto oom;
    while (done < need) {
        int64_t want = need - done < CHUNK ? need - done : CHUNK;
        int64_t got = idx_read(f, chunk, want);
        if (got < 0) goto fail;
        int64_t k = got / esize, have = (done / esize + k) * osize;
        if (have > cap) { /* grow with what has been read, up to the final size */
            int64_t full = f->elements * osize;
            int64_t ncap = cap * 2 > have ? cap * 2 : have;
            if (ncap > full) ncap = full;
            unsigned char *p = realloc(out, (size_t)ncap);
            if (!p) goto oom;
            out = p, cap = ncap;
        }
        if (k) convert(chunk, k, idx_types[f->type].code, dtype, scale, out + done / esize * osize);
        done += got;
        if (got < want) {
            ifail(f, "truncated data: IDX dims %s of %s need %" PRId64 " bytes of data after the %" PRId64
                     "-byte header, %s has %" PRId64,
                  s, idx_types[f->type].name, need, f->header, f->gzip ? "the uncompressed data" : "the file",
                  done);
            goto fail;
        }
    }
    for (int64_t got; (got = idx_read(f, chunk, CHUNK)) != 0; trailing += got)
        if (got < 0) goto fail;
    if (trailing) {
        ifail(f, "trailing data: %" PRId64 " bytes after the end of the IDX data at %s %" PRId64, trailing,
              f->byte, f->header + need);
        goto fail;
    }
    free(chunk);
    chunk = NULL;
    if (!out && !(out = malloc((size_t)osize))) goto oom; /* no elements: data is still not NULL */
    t->dtype = dtype;
    t->rank = f->rank;
    memcpy(t->shape, f->shape, sizeof t->shape);
    t->data = out;
    *data = out;
    return true;
oom:
    ifail(f, "out of memory");
fail:
    free(chunk);
    free(out);
    return false;
}

/* load_idx and load_idx_compact: images as image_dtype, labels as
 * label_dtype (IDX_COMPACT: as idx_dtype says). */
static lathe_dataset *load_idx(const char *images_path, const char *labels_path, const char *image_name,
                               const char *label_name, lathe_rt_dtype image_dtype, lathe_rt_dtype label_dtype,
                               bool scale, char *err, size_t errlen) {
    idx_file im = {0}, lb = {0};
    lathe_dataset *d = NULL;
    char s0[256], s1[256];
    if (err && errlen) err[0] = 0;
    if (!image_name || !label_name || strcmp(image_name, label_name) == 0) {
        const char *a = image_name ? image_name : "(null)", *b = label_name ? label_name : "(null)";
        lt_errf(err, errlen, "%s: the image and label tensors need two different names, got '%.*s' and '%.*s'",
                images_path ? images_path : "(null)", SHOW(a), SHOW(b));
        return NULL;
    }
    if (!idx_open(&im, images_path, image_dtype, err, errlen)) goto fail;
    if (!idx_open(&lb, labels_path, label_dtype, err, errlen)) goto fail;
    lt_format_shape(s1, sizeof s1, lb.rank, lb.shape);
    if (lb.rank != 1) {
        ifail(&lb, "labels must be 1-D (N), but the IDX dims are %s", s1);
        goto fail;
    }
    if (!idx_types[lb.type].integer) {
        ifail(&lb, "labels must have an integer IDX type (0x08, 0x09, 0x0B or 0x0C), not %s (0x%02X)",
              idx_types[lb.type].name, idx_types[lb.type].code);
        goto fail;
    }
    if (im.shape[0] != lb.shape[0]) {
        lt_format_shape(s0, sizeof s0, im.rank, im.shape);
        lt_errf(err, errlen,
                "%s: %" PRId64 " labels, but the images file %s has %" PRId64 " images (dims %s); "
                "images and labels need the same N",
                lb.path, lb.shape[0], im.path, im.shape[0], s0);
        goto fail;
    }
    if (!(d = ds_new(2))) {
        lt_errf(err, errlen, "%s: out of memory", im.path);
        goto fail;
    }
    if (!(d->source[0] = dup_str(im.path)) || !(d->source[1] = dup_str(lb.path)) ||
        !(d->name[0] = dup_str(image_name)) || !(d->name[1] = dup_str(label_name))) {
        lt_errf(err, errlen, "%s: out of memory", im.path);
        goto fail;
    }
    d->t[0].name = d->name[0];
    d->t[1].name = d->name[1];
    if (!idx_data(&im, scale, &d->t[0], &d->data[0])) goto fail;
    if (!samples_fit(&d->t[0], im.path, err, errlen)) goto fail;
    if (!idx_data(&lb, false, &d->t[1], &d->data[1])) goto fail;
    d->count = im.shape[0];
    idx_close(&im);
    idx_close(&lb);
    return d;
fail:
    idx_close(&im);
    idx_close(&lb);
    lathe_ds_free(d);
    return NULL;
}

lathe_dataset *lathe_ds_load_idx(const char *images_path, const char *labels_path, const char *image_name,
                                 const char *label_name, bool scale, char *err, size_t errlen) {
    return load_idx(images_path, labels_path, image_name, label_name, LATHE_RT_F32, LATHE_RT_I64, scale, err,
                    errlen);
}

lathe_dataset *lathe_ds_load_idx_compact(const char *images_path, const char *labels_path, const char *image_name,
                                         const char *label_name, char *err, size_t errlen) {
    return load_idx(images_path, labels_path, image_name, label_name, IDX_COMPACT, IDX_COMPACT, false, err, errlen);
}

/* ---- safetensors and memory ---- */

lathe_dataset *lathe_ds_load_safetensors(const char *path, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    lathe_st_file *st = lathe_st_read(path, err, errlen);
    if (!st) return NULL;
    int n = lathe_st_count(st);
    if (n == 0) {
        lt_errf(err, errlen, "%s: no tensors; a dataset needs at least one", path);
        lathe_st_free(st);
        return NULL;
    }
    lathe_dataset *d = ds_new(n);
    if (!d) {
        lt_errf(err, errlen, "%s: out of memory", path);
        lathe_st_free(st);
        return NULL;
    }
    d->st = st;
    for (int i = 0; i < n; i++) {
        d->t[i] = *lathe_st_at(st, i);
        if (!(d->source[i] = dup_str(path))) {
            lt_errf(err, errlen, "%s: out of memory", path);
            lathe_ds_free(d);
            return NULL;
        }
    }
    if (check_first_dims(d, err, errlen) != 0) {
        lathe_ds_free(d);
        return NULL;
    }
    return d;
}

lathe_dataset *lathe_ds_from_tensors(const lathe_st_tensor *tensors, int n, const char *what, char *err,
                                     size_t errlen) {
    what = what ? what : "<memory>";
    if (err && errlen) err[0] = 0;
    if (n < 1 || !tensors) {
        lt_errf(err, errlen, "%s: no tensors; a dataset needs at least one", what);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        const lathe_st_tensor *t = &tensors[i];
        if (!t->name) {
            lt_errf(err, errlen, "%s: tensor %d has no name (NULL)", what, i);
            return NULL;
        }
        for (int k = 0; k < i; k++)
            if (strcmp(tensors[k].name, t->name) == 0) {
                lt_errf(err, errlen, "%s: two tensors named '%.*s'", what, SHOW(t->name));
                return NULL;
            }
        if (lathe_rt_dtype_size(t->dtype) == 0) {
            lt_errf(err, errlen, "%s: tensor '%.*s' has unknown dtype %d", what, SHOW(t->name), (int)t->dtype);
            return NULL;
        }
        if (t->rank < 1 || t->rank > LATHE_ST_MAX_RANK) {
            lt_errf(err, errlen, "%s: tensor '%.*s' has rank %d; a dataset tensor has rank 1 to %d (samples first)",
                    what, SHOW(t->name), t->rank, LATHE_ST_MAX_RANK);
            return NULL;
        }
        int64_t bytes = (int64_t)lathe_rt_dtype_size(t->dtype);
        bool zero = false;
        for (int k = 0; k < t->rank; k++) {
            if (t->shape[k] < 0) {
                lt_errf(err, errlen, "%s: tensor '%.*s' has negative dim %" PRId64, what, SHOW(t->name), t->shape[k]);
                return NULL;
            }
            zero |= t->shape[k] == 0;
        }
        for (int k = 0; k < t->rank && !zero; k++) {
            if (bytes > INT64_MAX / t->shape[k] || (uint64_t)bytes * (uint64_t)t->shape[k] > SIZE_MAX) {
                lt_errf(err, errlen, "%s: tensor '%.*s': size overflows", what, SHOW(t->name));
                return NULL;
            }
            bytes *= t->shape[k];
        }
        if (!zero && !t->data) {
            lt_errf(err, errlen, "%s: tensor '%.*s' has no data (NULL)", what, SHOW(t->name));
            return NULL;
        }
        if (!samples_fit(t, what, err, errlen)) return NULL;
    }
    lathe_dataset *d = ds_new(n);
    if (!d) goto oom;
    for (int i = 0; i < n; i++) {
        d->t[i] = tensors[i];
        int64_t bytes = lathe_ds_sample_bytes(&tensors[i]) * tensors[i].shape[0];
        if (!(d->source[i] = dup_str(what)) || !(d->name[i] = dup_str(tensors[i].name)) ||
            !(d->data[i] = malloc(bytes ? (size_t)bytes : 1)))
            goto oom;
        if (bytes) memcpy(d->data[i], tensors[i].data, (size_t)bytes);
        d->t[i].name = d->name[i];
        d->t[i].data = d->data[i];
    }
    if (check_first_dims(d, err, errlen) == 0) return d;
    lathe_ds_free(d);
    return NULL;
oom:
    lt_errf(err, errlen, "%s: out of memory", what);
    lathe_ds_free(d);
    return NULL;
}

/* ---- using a dataset ---- */

/* Append the bytes of file path to *text (*size bytes so far, *cap
 * allocated).  0, 1 when skip_binary and the file holds a NUL byte (left
 * out), or -1 with a message. */
static int append_file(const char *path, bool skip_binary, unsigned char **text, int64_t *size, int64_t *cap,
                       char *err, size_t errlen) {
    struct stat st;
    int fd = lt_open_file(path, &st, err, errlen);
    if (fd < 0) return -1;
    int64_t n = (int64_t)st.st_size;
    if (n > LATHE_DS_MAX_BYTES / 16 - *size) {
        lt_errf(err, errlen, "%s: %lld bytes of text would take more than %lld bytes as windows", path,
                (long long)(*size + n), (long long)LATHE_DS_MAX_BYTES);
        close(fd);
        return -1;
    }
    if (*size + n + 1 > *cap) {
        int64_t c = (*size + n + 1) * 2;
        unsigned char *t = realloc(*text, (size_t)c);
        if (!t) {
            lt_errf(err, errlen, "%s: out of memory", path);
            close(fd);
            return -1;
        }
        *text = t, *cap = c;
    }
    int64_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, *text + *size + got, (size_t)(n - got));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            lt_errf(err, errlen, "%s: read error at byte %lld: %s", path, (long long)got,
                    k < 0 ? strerror(errno) : "the file got shorter");
            close(fd);
            return -1;
        }
        got += k;
    }
    close(fd);
    if (skip_binary && memchr(*text + *size, 0, (size_t)n)) return 1;
    *size += n;
    return 0;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The text of path: a file, or the text files of a directory (regular files,
 * not symbolic links, without NUL bytes) in byte order of their names. */
static unsigned char *read_text(const char *path, int64_t *size, char *err, size_t errlen) {
    unsigned char *text = NULL;
    int64_t cap = 0;
    *size = 0;
    struct stat st;
    if (!path || stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        if (append_file(path, false, &text, size, &cap, err, errlen) < 0) {
            free(text);
            return NULL;
        }
        return text ? text : calloc(1, 1);
    }
    DIR *d = opendir(path);
    if (!d) {
        lt_errf(err, errlen, "%s: cannot open the directory: %s", path, strerror(errno));
        return NULL;
    }
    char **names = NULL;
    size_t n = 0, ncap = 0;
    bool ok = true;
    for (struct dirent *e; ok && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        if (n == ncap) {
            char **t = realloc(names, sizeof *names * (ncap = ncap ? 2 * ncap : 64));
            if (!t) ok = false;
            else names = t;
        }
        if (ok && !(names[n++] = dup_str(e->d_name))) ok = false, n--;
    }
    closedir(d);
    if (!ok) lt_errf(err, errlen, "%s: out of memory", path);
    if (n > 1) qsort(names, n, sizeof *names, cmp_names);
    int files = 0;
    for (size_t i = 0; ok && i < n; i++) {
        char full[PATH_MAX];
        snprintf(full, sizeof full, "%s/%s", path, names[i]);
        if (lstat(full, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        int r = append_file(full, true, &text, size, &cap, err, errlen);
        if (r < 0) ok = false;
        files += r == 0;
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    if (ok && files == 0) {
        lt_errf(err, errlen, "%s: no text files in the directory", path);
        ok = false;
    }
    if (!ok) {
        free(text);
        return NULL;
    }
    return text;
}

lathe_dataset *lathe_ds_load_text(const char *path, int64_t T, double held_out, bool validation,
                                  const char *input_name, const char *target_name, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    if (T < 1 || !(held_out > 0 && held_out < 1) || !input_name || !target_name) {
        lt_errf(err, errlen, "%s: bad text windows (context %lld, held-out fraction %g)", path ? path : "(null)",
                (long long)T, held_out);
        return NULL;
    }
    int64_t size;
    unsigned char *text = read_text(path, &size, err, errlen);
    if (!text) return NULL;
    int64_t split = (int64_t)((double)size * (1 - held_out));
    int64_t begin = validation ? split : 0, len = validation ? size - split : split, S = len > 0 ? (len - 1) / T : 0;
    if (S < 1) {
        lt_errf(err, errlen, "%s: the %s part has %lld bytes, fewer than one window of %lld + 1", path,
                validation ? "validation" : "training", (long long)len, (long long)T);
        free(text);
        return NULL;
    }
    uint8_t *x = malloc((size_t)(S * T)), *y = malloc((size_t)(S * T));
    lathe_dataset *d = NULL;
    if (x && y) {
        for (int64_t s = 0; s < S; s++)
            for (int64_t t = 0; t < T; t++) {
                x[s * T + t] = text[begin + s * T + t];
                y[s * T + t] = text[begin + s * T + t + 1];
            }
        lathe_st_tensor ts[2] = {{input_name, LATHE_RT_U8, 2, {S, T}, x}, {target_name, LATHE_RT_U8, 2, {S, T}, y}};
        d = lathe_ds_from_tensors(ts, 2, path, err, errlen);
    } else {
        lt_errf(err, errlen, "%s: out of memory", path);
    }
    free(x);
    free(y);
    free(text);
    return d;
}

/* The arguments of a gather from tensor i: 0, or -1 with a message. */
static int check_gather(const lathe_dataset *d, int i, const int64_t *idx, int64_t batch, const void *out, char *err,
                        size_t errlen) {
    const char *name = d->t[i].name;
    if (batch < 0 || (batch > 0 && (!idx || !out))) {
        lt_errf(err, errlen, "%s: gather from tensor '%.*s': %s", d->source[i], SHOW(name),
                batch < 0 ? "negative batch size" : !idx ? "no indices (NULL)" : "no output buffer (NULL)");
        return -1;
    }
    for (int64_t k = 0; k < batch; k++)
        if (idx[k] < 0 || idx[k] >= d->count) {
            lt_errf(err, errlen,
                    "%s: gather from tensor '%.*s': index %" PRId64 " (idx[%" PRId64 "]) is outside [0, %" PRId64 ")",
                    d->source[i], SHOW(name), idx[k], k, d->count);
            return -1;
        }
    return 0;
}

int lathe_ds_gather(const lathe_dataset *d, const char *name, const int64_t *idx, int64_t batch, void *out,
                    char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    int i = lookup(d, name, err, errlen);
    if (i < 0 || check_gather(d, i, idx, batch, out, err, errlen) != 0) return -1;
    const lathe_st_tensor *t = &d->t[i];
    size_t sb = (size_t)lathe_ds_sample_bytes(t);
    const unsigned char *src = t->data;
    for (int64_t k = 0; k < batch; k++) memcpy((unsigned char *)out + (size_t)k * sb, src + (size_t)idx[k] * sb, sb);
    return 0;
}

int lathe_ds_check(const lathe_dataset *d, const char *name, lathe_rt_dtype dtype, int rank,
                   const int64_t *sample_shape, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    int i = lookup(d, name, err, errlen);
    if (i < 0) return -1;
    const lathe_st_tensor *t = &d->t[i];
    if (rank < 0 || rank >= LATHE_ST_MAX_RANK || (rank > 0 && !sample_shape)) {
        lt_errf(err, errlen, "%s: check of tensor '%.*s': bad expected sample rank %d%s", d->source[i], SHOW(name),
                rank, rank > 0 && !sample_shape ? " with no shape (NULL)" : "");
        return -1;
    }
    bool same = t->dtype == dtype && t->rank - 1 == rank;
    for (int k = 0; same && k < rank; k++) same = t->shape[k + 1] == sample_shape[k];
    if (same) return 0;
    char have[256], want[256], full[256];
    lt_format_shape(have, sizeof have, t->rank - 1, t->shape + 1);
    lt_format_shape(want, sizeof want, rank, sample_shape);
    lt_format_shape(full, sizeof full, t->rank, t->shape);
    lt_errf(err, errlen,
            "%s: tensor '%.*s' has %s samples of shape %s (tensor shape %s, N = %" PRId64 "), "
            "expected %s samples of shape %s",
            d->source[i], SHOW(name), lathe_st_dtype_name(t->dtype), have, full, d->count, lathe_st_dtype_name(dtype),
            want);
    return -1;
}

/* ---- feeding a model's input ---- */

int lathe_ds_parse_normalize(const char *spec, lathe_ds_normalize *out, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    lathe_ds_normalize n = {0};
    double v[2 * LATHE_DS_MAX_CHANNELS + 1];
    int count = 0, slash = -1; /* slash: the values before the '/' */
    const char *p = spec ? spec : "";
    const char *want = "expected MEAN,STD or M1,...,MC/S1,...,SC";
    while (*p) {
        if (count == 2 * LATHE_DS_MAX_CHANNELS + 1) {
            lt_errf(err, errlen, "normalization '%.*s': more than %d channels", SHOW(spec), LATHE_DS_MAX_CHANNELS);
            return -1;
        }
        char *end;
        errno = 0;
        double x = strtod(p, &end);
        if (end == p || errno || !isfinite(x) || (*end && *end != ',' && *end != '/')) {
            lt_errf(err, errlen, "normalization '%.*s': '%.*s' is not a finite number (%s)", SHOW(spec),
                    (int)strcspn(p, ",/"), p, want);
            return -1;
        }
        v[count++] = x;
        p = end;
        if (*p == '/') {
            if (slash >= 0) {
                lt_errf(err, errlen, "normalization '%.*s': two slashes (%s)", SHOW(spec), want);
                return -1;
            }
            slash = count;
        }
        if (*p && !*++p) { /* a trailing separator */
            lt_errf(err, errlen, "normalization '%.*s': a number is missing at the end (%s)", SHOW(spec), want);
            return -1;
        }
    }
    int means = slash >= 0 ? slash : count / 2;
    if (count == 0 || (slash < 0 && count != 2) || (slash >= 0 && count != 2 * slash)) {
        if (slash >= 0)
            lt_errf(err, errlen, "normalization '%.*s': %d means and %d standard deviations; one of each per channel",
                    SHOW(spec), slash, count - slash);
        else
            lt_errf(err, errlen, "normalization '%.*s': %d numbers (%s; several channels need the slash)",
                    SHOW(spec), count, want);
        return -1;
    }
    if (means > LATHE_DS_MAX_CHANNELS) {
        lt_errf(err, errlen, "normalization '%.*s': %d channels, more than %d", SHOW(spec), means,
                LATHE_DS_MAX_CHANNELS);
        return -1;
    }
    n.channels = means;
    for (int c = 0; c < means; c++) {
        n.mean[c] = v[c];
        n.std[c] = v[means + c];
        if (!(n.std[c] > 0)) {
            lt_errf(err, errlen, "normalization '%.*s': standard deviation %g of channel %d is not > 0", SHOW(spec),
                    n.std[c], c);
            return -1;
        }
    }
    *out = n;
    return 0;
}

#define AUG_SALT 0x6175676D656E7421ull /* "augment!" */

void lathe_ds_augment_draw(const lathe_ds_augment *aug, int64_t epoch, int64_t sample, int64_t *dy, int64_t *dx,
                           bool *flip) {
    *dy = *dx = 0;
    *flip = false;
    if (!aug) return;
    uint64_t key = lt_mix64(lt_mix64(aug->seed ^ AUG_SALT) + (uint64_t)epoch);
    uint64_t h = lt_mix64(key + ((uint64_t)sample + 1) * LT_GOLDEN64);
    if (aug->crop_pad > 0 && aug->crop_pad <= LATHE_DS_MAX_PAD) {
        uint64_t n = 2 * (uint64_t)aug->crop_pad + 1;
        *dy = (int64_t)(((h >> 40) * n) >> 24);
        *dx = (int64_t)((((h >> 16) & 0xFFFFFF) * n) >> 24);
    }
    *flip = aug->hflip && (h & 1);
}

/* Whether src converts into dst (see lathe_ds_input_check). */
static bool converts(lathe_rt_dtype src, lathe_rt_dtype dst) {
    if (src == dst) return true;
    bool from_int = src == LATHE_RT_U8 || src == LATHE_RT_I32;
    return from_int && (dst == LATHE_RT_F32 || dst == LATHE_RT_F64 || dst == LATHE_RT_I64);
}

static bool is_float(lathe_rt_dtype t) { return t == LATHE_RT_F32 || t == LATHE_RT_F64; }

static bool augments(const lathe_ds_augment *aug) { return aug && (aug->crop_pad != 0 || aug->hflip); }

int lathe_ds_input_check(const lathe_dataset *d, const char *name, const lathe_ds_input *in,
                         const lathe_ds_augment *aug, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    int i = lookup(d, name, err, errlen);
    if (i < 0) return -1;
    const lathe_st_tensor *t = &d->t[i];
    const char *src = d->source[i];
    if (!in || in->rank < 0 || in->rank >= LATHE_ST_MAX_RANK || lathe_rt_dtype_size(in->dtype) == 0) {
        lt_errf(err, errlen, "%s: tensor '%.*s': bad input description (%s)", src, SHOW(name),
                !in ? "NULL" : lathe_rt_dtype_size(in->dtype) == 0 ? "unknown dtype" : "rank outside 0..7");
        return -1;
    }
    int64_t want = 1, per = 1;
    for (int k = 0; k < in->rank; k++) {
        if (in->shape[k] < 0 || (in->shape[k] && want > INT64_MAX / in->shape[k])) {
            lt_errf(err, errlen, "%s: tensor '%.*s': bad input shape", src, SHOW(name));
            return -1;
        }
        want *= in->shape[k];
    }
    for (int k = 1; k < t->rank; k++) per *= t->shape[k]; /* fits: the dataset checked its sizes */
    char have[300], wants[300];
    snprintf(have, sizeof have, "%s", lathe_rt_dtype_name(t->dtype));
    lt_format_shape(have + strlen(have), sizeof have - strlen(have), t->rank - 1, t->shape + 1);
    snprintf(wants, sizeof wants, "%s", lathe_rt_dtype_name(in->dtype));
    lt_format_shape(wants + strlen(wants), sizeof wants - strlen(wants), in->rank, in->shape);
    if (per != want || !converts(t->dtype, in->dtype)) {
        lt_errf(err, errlen, "%s: samples of '%.*s' are %s (%" PRId64 " elements); the model's input '%.*s' takes %s (%" PRId64
                " elements)%s",
                src, SHOW(name), have, per, SHOW(name), wants, want,
                per != want ? ""
                            : "; a dataset converts u8 and i32 to f32, f64 and i64 (u8 pixels to floats as v / 255 "
                              "unless raw); other dtypes must be the input's");
        return -1;
    }
    const lathe_ds_normalize *n = &in->norm;
    bool aug_on = augments(aug);
    if ((n->channels != 0 || aug_on) && !is_float(in->dtype)) {
        lt_errf(err, errlen, "%s: the model's input '%.*s' is %s: %s applies to float (image) inputs only", src,
                SHOW(name), wants, n->channels ? "normalization" : "augmentation");
        return -1;
    }
    if (n->channels < 0 || n->channels > LATHE_DS_MAX_CHANNELS) {
        lt_errf(err, errlen, "%s: input '%.*s': normalization of %d channels (0 to %d)", src, SHOW(name), n->channels,
                LATHE_DS_MAX_CHANNELS);
        return -1;
    }
    for (int c = 0; c < n->channels; c++)
        if (!isfinite(n->mean[c]) || !(n->std[c] > 0) || !isfinite(n->std[c])) {
            lt_errf(err, errlen, "%s: input '%.*s': normalization of channel %d: mean %g, std %g (finite, std > 0)",
                    src, SHOW(name), c, n->mean[c], n->std[c]);
            return -1;
        }
    if (n->channels > 1 && (in->rank < 1 || in->shape[0] != n->channels)) {
        char ch[64] = "no channel axis";
        if (in->rank >= 1)
            snprintf(ch, sizeof ch, "%" PRId64 " channel%s", in->shape[0], in->shape[0] == 1 ? "" : "s");
        lt_errf(err, errlen,
                "%s: normalization with %d channels, but the model's input '%.*s' takes %s: %s (the channels are "
                "axis 1 of [N, C, H, W])", src, n->channels, SHOW(name), wants, ch);
        return -1;
    }
    if (aug_on && (in->rank < 2 || aug->crop_pad < 0 || aug->crop_pad > LATHE_DS_MAX_PAD)) {
        if (in->rank < 2)
            lt_errf(err, errlen, "%s: augmentation crops and flips the last two axes (H, W) of a sample, but the "
                    "model's input '%.*s' takes samples of %s", src, SHOW(name), wants);
        else
            lt_errf(err, errlen, "%s: input '%.*s': random-crop padding %" PRId64 " is outside 0..%d", src, SHOW(name),
                    aug->crop_pad, LATHE_DS_MAX_PAD);
        return -1;
    }
    return 0;
}

/* Element e of a sample of dtype t at p, as an f32 and as an f64 (U8 scaled
 * by 1/255 when scale: (float)v / 255.0f, so 255 is exactly 1.0f, as the IDX
 * loader; v / 255.0 in f64). */
static float f32_at(lathe_rt_dtype t, const void *p, int64_t e, bool scale) {
    switch (t) {
    case LATHE_RT_U8: return scale ? (float)((const uint8_t *)p)[e] / 255.0f : (float)((const uint8_t *)p)[e];
    case LATHE_RT_I32: return (float)((const int32_t *)p)[e];
    default: return ((const float *)p)[e];
    }
}

static double f64_at(lathe_rt_dtype t, const void *p, int64_t e, bool scale) {
    switch (t) {
    case LATHE_RT_U8: return scale ? (double)((const uint8_t *)p)[e] / 255.0 : (double)((const uint8_t *)p)[e];
    case LATHE_RT_I32: return (double)((const int32_t *)p)[e];
    default: return ((const double *)p)[e];
    }
}

/* One sample of n elements from src (dtype t) into dst for input `in`,
 * cropped at (dy, dx) and flipped as drawn (pad 0 and no flip: as it is).
 * Output element e = (plane, y, x) of the H x W planes reads input element
 * (plane, y + dy - pad, x' + dx - pad), x' = W - 1 - x when flipped; outside
 * the input it is 0, before normalization. */
static void convert_sample(lathe_rt_dtype t, const void *src, int64_t n, const lathe_ds_input *in, int64_t pad,
                           int64_t dy, int64_t dx, bool flip, void *dst) {
    int64_t H = in->rank >= 2 ? in->shape[in->rank - 2] : 1, W = in->rank >= 1 ? in->shape[in->rank - 1] : n;
    bool moved = pad > 0 || flip;
    int C = in->norm.channels;
    int64_t inner = C > 1 ? n / C : n; /* elements per channel */
    if (in->dtype == LATHE_RT_I64) {
        int64_t *o = dst;
        for (int64_t e = 0; e < n; e++)
            o[e] = t == LATHE_RT_U8 ? ((const uint8_t *)src)[e] : ((const int32_t *)src)[e];
        return;
    }
    for (int64_t e = 0; e < n; e++) {
        int64_t from = e;
        if (moved && W > 0 && H > 0) {
            int64_t x = e % W, y = e / W % H, plane = e / (W * H);
            int64_t sy = y + dy - pad, sx = (flip ? W - 1 - x : x) + dx - pad;
            from = sy < 0 || sy >= H || sx < 0 || sx >= W ? -1 : (plane * H + sy) * W + sx;
        }
        int c = C > 1 ? (int)(e / inner) : 0;
        if (in->dtype == LATHE_RT_F32) {
            float v = from < 0 ? 0.0f : f32_at(t, src, from, in->scale);
            if (C) v = (v - (float)in->norm.mean[c]) / (float)in->norm.std[c];
            ((float *)dst)[e] = v;
        } else {
            double v = from < 0 ? 0.0 : f64_at(t, src, from, in->scale);
            if (C) v = (v - in->norm.mean[c]) / in->norm.std[c];
            ((double *)dst)[e] = v;
        }
    }
}

int lathe_ds_gather_input(const lathe_dataset *d, const char *name, const lathe_ds_input *in,
                          const lathe_ds_augment *aug, int64_t epoch, const int64_t *idx, int64_t batch, void *out,
                          char *err, size_t errlen) {
    if (lathe_ds_input_check(d, name, in, aug, err, errlen) != 0) return -1;
    const lathe_st_tensor *t = lathe_ds_find(d, name);
    if (!augments(aug)) aug = NULL;
    if (t->dtype == in->dtype && !aug && in->norm.channels == 0)
        return lathe_ds_gather(d, name, idx, batch, out, err, errlen);
    if (check_gather(d, find_index(d, name), idx, batch, out, err, errlen) != 0) return -1;
    size_t sb = (size_t)lathe_ds_sample_bytes(t), ob = lathe_rt_dtype_size(in->dtype);
    int64_t n = 1;
    for (int k = 0; k < in->rank; k++) n *= in->shape[k];
    for (int64_t k = 0; k < batch; k++) {
        int64_t dy, dx;
        bool flip;
        lathe_ds_augment_draw(aug, epoch, idx[k], &dy, &dx, &flip);
        convert_sample(t->dtype, (const unsigned char *)t->data + (size_t)idx[k] * sb, n, in, aug ? aug->crop_pad : 0,
                       dy, dx, flip, (unsigned char *)out + (size_t)k * (size_t)n * ob);
    }
    return 0;
}

/* ---- shuffling ---- */

void lathe_ds_permutation(int64_t n, uint64_t seed, int64_t epoch, int64_t *perm) {
    if (n <= 0 || !perm) return;
    uint64_t state = lt_mix64(lt_mix64(seed) + (uint64_t)epoch);
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        uint64_t bound = (uint64_t)i + 1, threshold = (0 - bound) % bound, r; /* 2^64 mod bound */
        do r = lt_splitmix64(&state);
        while (r < threshold);
        int64_t j = (int64_t)(r % bound), tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
}
