/* safetensors.h - reading and writing safetensors files.
 *
 * The format (https://github.com/huggingface/safetensors): an 8-byte
 * little-endian unsigned header length N, N bytes of UTF-8 JSON, then the
 * data section.  The JSON is an object mapping each tensor name to
 * {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, offsets
 * relative to the data section; an optional "__metadata__" member maps
 * strings to strings.  Tensors are stored contiguously, little-endian,
 * row-major, with no gaps.
 *
 * Worked example: save two parameters, read them back.
 *
 *     float w[6] = {...};  int64_t step = 1000;
 *     lathe_st_tensor t[2] = {
 *         {.name = "fc.weight", .dtype = LATHE_RT_F32, .rank = 2, .shape = {2, 3}, .data = w},
 *         {.name = "step", .dtype = LATHE_RT_I64, .rank = 0, .data = &step},
 *     };
 *     const char *k[] = {"format"}, *v[] = {"pt"};
 *     char err[256];
 *     if (lathe_st_write("ckpt.safetensors", t, 2, k, v, 1, err, sizeof err) != 0)
 *         fprintf(stderr, "%s\n", err);                   // names the path
 *
 *     lathe_st_file *f = lathe_st_read("ckpt.safetensors", err, sizeof err);
 *     if (!f) fprintf(stderr, "%s\n", err);               // names tensor or offset
 *     const lathe_st_tensor *fw = lathe_st_find(f, "fc.weight");
 *     const float *p = fw->data;                          // 6 floats, aligned
 *     lathe_st_free(f);                                   // p is gone now
 *
 * Only F32, F64, I64, BOOL (one byte, 0 or 1), U8 and I32 are supported:
 * the runtime's dtypes (lathe_rt_dtype, lathe_runtime.h; the last two are
 * for data: image pixels, token ids).
 * The reader validates everything (see lathe_st_read) and never trusts a
 * length it has not checked.  Depends on cJSON. */
#ifndef LATHE_SAFETENSORS_H
#define LATHE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "lathe_runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The most dims a tensor may have here: in the files read and written, and
 * in datasets (dataset.h). */
#define LATHE_ST_MAX_RANK 8
/* Headers longer than this are refused, as the reference implementation does. */
#define LATHE_ST_MAX_HEADER (100u * 1000u * 1000u)

/* One tensor: row-major dims shape[0..rank), little-endian elements.
 * Rank 0 is a scalar (one element); a zero in shape makes it empty. */
typedef struct {
    const char *name;
    lathe_rt_dtype dtype;
    int rank;                           /* 0..LATHE_ST_MAX_RANK */
    int64_t shape[LATHE_ST_MAX_RANK];
    const void *data;                   /* element count x dtype size bytes */
} lathe_st_tensor;

/* Write n tensors, laid out in the order given, and nmeta string pairs
 * (stored as "__metadata__", omitted when nmeta is 0) to path.  The header is
 * compact JSON - "__metadata__" first, then the tensors in order, keys
 * "dtype", "shape", "data_offsets" - padded with spaces so the data section
 * starts at a multiple of 8 bytes.
 *
 * Atomic: the bytes go to a new temporary file "<path>.tmp.<pid>.<k>" in the
 * same directory, which is fsynced, renamed over path, and then the directory
 * is fsynced.  A crash at any point leaves either the old file or the new one,
 * never a mix (a crash may leave the temporary file behind; an error removes
 * it).  A new file gets mode 0666 minus the umask; a file written over
 * keeps its mode, and a read-only one (no write bit for its owner, or not
 * writable by the caller) is not replaced
 * (an error).  A symbolic link is written through: the file it leads to is
 * replaced, the link stays.  Temporaries of the same file left by writers
 * that died (PATH.tmp.PID.K, PID no longer running) are removed.
 *
 * Refuses (returning -1, path untouched) a NULL or duplicate name, the
 * name "__metadata__", names and metadata strings that are not UTF-8 (an
 * empty name is allowed), an unknown dtype, rank outside 0..8, a negative
 * dim, an element count or byte size that overflows, NULL data for a
 * non-empty tensor, BOOL bytes other than 0 and 1, NULL or duplicate
 * metadata keys and NULL values.  Returns 0, or -1 with a message in err (errlen bytes, may be NULL)
 * that names the path or the tensor.  The caller keeps ownership of
 * everything passed in. */
int lathe_st_write(const char *path, const lathe_st_tensor *tensors, int n,
                   const char *const *meta_keys, const char *const *meta_values, int nmeta,
                   char *err, size_t errlen);

/* Test hook, for simulating a crash or a full disk: when >= 0, lathe_st_write
 * stops after writing this many bytes of its temporary file and fails as a
 * write error would (removing the temporary file, leaving path untouched).
 * -1 (the default) disables it.  Not for use outside tests; not thread-safe. */
extern int64_t lathe_st_test_fail_after;

/* A file read into memory; opaque. */
typedef struct lathe_st_file lathe_st_file;

/* Read and validate the whole file at path.  Refuses, with a message in err
 * naming the path and the offending tensor and/or byte offset: a file
 * shorter than 8 bytes or not a regular file; a header length larger than
 * the rest of the file or than LATHE_ST_MAX_HEADER; a header that is not
 * UTF-8, not strict JSON (RFC 8259; "\u0000" is refused too), or not an
 * object; a tensor entry that is not an object or has a missing, duplicate or
 * wrong-typed "dtype" (a string), "shape" (non-negative integers) or
 * "data_offsets" (two non-negative integers) - integers written as 1.5 or 1e3,
 * or beyond int64, are refused; a dtype that is unsupported (a real
 * safetensors dtype such as F16 or BF16) or unknown; rank > 8; begin > end;
 * an element count that overflows or whose bytes differ from end - begin;
 * data that does not start at 0, leaves gaps, overlaps or runs past the end
 * of the file; trailing bytes after the last tensor; duplicate tensor names;
 * "__metadata__" that is not an object of strings or repeats a key; BOOL
 * bytes other than 0 and 1.  Unknown fields in a tensor entry are ignored,
 * as the reference implementation does.
 *
 * Each tensor's data is copied to its own 64-byte aligned place, so it may be
 * read through a pointer of its element type.  Returns NULL on error; free
 * the result with lathe_st_free. */
lathe_st_file *lathe_st_read(const char *path, char *err, size_t errlen);

/* The same from len bytes in memory, which are copied (the caller keeps
 * them).  `what` names the source in messages (NULL: "<memory>"). */
lathe_st_file *lathe_st_read_mem(const void *bytes, size_t len, const char *what,
                                 char *err, size_t errlen);

/* The number of tensors (0 for NULL). */
int lathe_st_count(const lathe_st_file *f);

/* Tensor i, 0 <= i < count, in file order (the order of data offsets; empty
 * tensors at the same offset keep their JSON order); NULL when out of range.
 * The tensor, its name and its data belong to f and stay valid until
 * lathe_st_free(f). */
const lathe_st_tensor *lathe_st_at(const lathe_st_file *f, int i);

/* The tensor named name, or NULL.  Owned by f as for lathe_st_at. */
const lathe_st_tensor *lathe_st_find(const lathe_st_file *f, const char *name);

/* The "__metadata__" value for key, or NULL if absent.  Owned by f. */
const char *lathe_st_meta(const lathe_st_file *f, const char *key);

/* Free f and everything it owns (tensors, names, data, metadata).  NULL is
 * allowed. */
void lathe_st_free(lathe_st_file *f);

/* The safetensors name of a dtype: "F32", "F64", "I64", "BOOL", "U8",
 * "I32"; "?" for anything else.  Static storage.  (Its size:
 * lathe_rt_dtype_size.) */
const char *lathe_st_dtype_name(lathe_rt_dtype dtype);

#ifdef __cplusplus
}
#endif
#endif
