/* dataset.h - datasets for training: named tensors whose first axis is the
 * sample, read from IDX files (the MNIST family, raw or gzip-compressed) or
 * from a safetensors file, with mini-batch gathering and a deterministic
 * shuffle.
 *
 * Worked example: one epoch of shuffled mini-batches from Fashion-MNIST.
 *
 *     char err[512];
 *     lathe_dataset *d = lathe_ds_load_idx(
 *         "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz",
 *         "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz",
 *         "x", "y", true, err, sizeof err);
 *     if (!d) { fprintf(stderr, "%s\n", err); return 1; }   // names the file
 *     const int64_t px[2] = {28, 28};
 *     if (lathe_ds_check(d, "x", LATHE_RT_F32, 2, px, err, sizeof err) != 0 ||
 *         lathe_ds_check(d, "y", LATHE_RT_I64, 0, NULL, err, sizeof err) != 0)
 *         fprintf(stderr, "%s\n", err);       // "... has F32 samples [28, 28], expected ..."
 *     int64_t n = lathe_ds_count(d), *perm = malloc(n * sizeof *perm);
 *     lathe_ds_permutation(n, seed, epoch, perm);   // same order on any machine
 *     for (int64_t b = 0; b + 64 <= n; b += 64) {
 *         lathe_ds_gather(d, "x", perm + b, 64, x_in, err, sizeof err);  // 64 x 28 x 28 floats
 *         lathe_ds_gather(d, "y", perm + b, 64, y_in, err, sizeof err);  // 64 int64 labels
 *         ...run a step...
 *     }
 *     free(perm);
 *     lathe_ds_free(d);
 *
 * As a trainer feeds its image input: the pixels kept as bytes (a quarter
 * of the memory), each batch scaled to [0, 1], normalized, and cropped and
 * flipped as drawn for (seed, epoch, sample):
 *
 *     lathe_dataset *c = lathe_ds_load_idx_compact(images, labels, "x", "y", err, sizeof err);
 *     lathe_ds_input in = {.dtype = LATHE_RT_F32, .rank = 3, .shape = {1, 28, 28}, .scale = true};
 *     lathe_ds_parse_normalize("0.286,0.353", &in.norm, err, sizeof err);   // mean, std
 *     lathe_ds_augment aug = {.crop_pad = 2, .hflip = true, .seed = seed}; // NULL for test data
 *     lathe_ds_gather_input(c, "x", &in, &aug, epoch, perm + b, 64, x_in, err, sizeof err);
 *
 * IDX (http://yann.lecun.com/exdb/mnist/): two zero bytes, a type byte (0x08
 * unsigned byte, 0x09 signed byte, 0x0B int16, 0x0C int32, 0x0D float32,
 * 0x0E float64), a byte with the number of dims (1..8), the dims as
 * big-endian u32, then the elements, big-endian, row-major, and nothing
 * after them.  A file whose first two bytes are 1f 8b is read as gzip (by
 * content, whatever its name); any other file is read as it is.  As with
 * gunzip, concatenated gzip members are one stream, and bytes after the last
 * member that do not start another are ignored (zlib's gzread skips them);
 * trailing bytes inside the uncompressed data are refused.
 *
 * Tensors use safetensors.h's lathe_st_tensor and the runtime's dtypes
 * (lathe_rt_dtype: F32, F64, I64, BOOL, and U8 and I32 for data stored
 * compactly: pixels, token ids).  A dataset from lathe_ds_load_idx_compact,
 * a safetensors file or text keeps its tensors in the dtype they were stored
 * in (lathe_ds_load_idx converts on load), and lathe_ds_gather_input
 * converts a batch into what a model's input takes as it gathers it (U8
 * pixels to f32 as v / 255, U8 or I32 labels and tokens to i64),
 * normalizing and augmenting on the way: a quarter (pixels) or an eighth
 * (tokens) of the memory of converting the whole dataset up front, for a
 * conversion that costs little next to a training step.
 * Errors are return values (NULL or -1) with a message in err (errlen bytes;
 * err may be NULL) that starts with the file it is about; nothing here exits
 * or aborts on bad input.  Depends on zlib (and cJSON through safetensors.c). */
#ifndef LATHE_DATASET_H
#define LATHE_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An IDX file whose tensor would take more than this many bytes in memory
 * (after conversion to float32 or int64) is refused before anything is
 * allocated: 16 GiB, so a corrupt header cannot exhaust a 24 GiB machine. */
#define LATHE_DS_MAX_BYTES ((int64_t)16 << 30)

/* Test hook: when >= 0, the bytes of memory the IDX loader takes as
 * available instead of Linux's MemAvailable.  -1 (the default) disables it.
 * Not for use outside tests; not thread-safe. */
extern int64_t lathe_ds_test_available;

/* A dataset: tensors with a common first dim N (the samples); opaque. */
typedef struct lathe_dataset lathe_dataset;

/* Load an images file and a labels file (IDX, raw or gzip) as a dataset of
 * two tensors, named image_name and label_name (which must differ):
 *   images: the images file's dims (N, ...), any IDX type, as F32.  With
 *           scale, unsigned-byte elements become v / 255.0f (so 255 is
 *           exactly 1.0f, as torchvision's ToTensor); without it, and for
 *           every other type, elements keep their value (float64 rounds).
 *   labels: the labels file must be 1-D (N) of an integer type (unsigned or
 *           signed byte, int16, int32), as I64.  Label values are not
 *           checked against a class count: the loss does that.
 * Refused, with a message naming the file (and, for the format, the byte
 * offset, counted in the uncompressed data for gzip): a file that cannot be
 * opened or is not a regular file; magic other than 00 00; an unknown type
 * byte; a dims byte of 0 or over 8; a truncated header; dims whose element
 * count overflows or whose tensor would exceed LATHE_DS_MAX_BYTES or the
 * memory available (Linux's MemAvailable: a small gzip file can claim
 * gigabytes, and is refused before any of it is read); truncated
 * data (with the expected and actual byte counts); trailing bytes after the
 * data; a corrupt or truncated gzip stream (with zlib's message); labels
 * that are not 1-D or not integers; images and labels with different N.
 * NULL on error; free the result with lathe_ds_free. */
lathe_dataset *lathe_ds_load_idx(const char *images_path, const char *labels_path, const char *image_name,
                                 const char *label_name, bool scale, char *err, size_t errlen);

/* The same files, each element kept in the smallest dtype that holds it:
 * unsigned bytes as U8, the other integer types as I32, floats as F32
 * (float64 rounds), labels too.  Pixels take a quarter of the memory of
 * lathe_ds_load_idx's F32, and lathe_ds_gather_input converts them as it
 * gathers a batch (with its `scale`, the same bits as load_idx's).  The
 * checks and messages are lathe_ds_load_idx's. */
lathe_dataset *lathe_ds_load_idx_compact(const char *images_path, const char *labels_path, const char *image_name,
                                         const char *label_name, char *err, size_t errlen);

/* Load every tensor of a safetensors file (read and validated by
 * lathe_st_read) as a dataset.  Refused: anything lathe_st_read refuses, a
 * file with no tensors, a scalar tensor, and tensors whose first dims
 * differ.  NULL on error; free with lathe_ds_free. */
lathe_dataset *lathe_ds_load_safetensors(const char *path, char *err, size_t errlen);

/* Byte-level language-modelling windows from a text file, whose bytes are
 * the tokens (0..255), or from a directory: its text files (regular files,
 * not symbolic links, without NUL bytes; Debian's fortunes has 42 next to
 * binary .dat files) concatenated in byte order of their names.  The file is split by position: the first
 * (1 - held_out) of its bytes are the training part, the rest the
 * validation part (validation true), 0 < held_out < 1.  Sample s of a part
 * that starts at byte b is the window of T + 1 bytes at b + s T: tensor
 * input_name ([S, T], U8: the bytes as they are, i64 token ids once
 * lathe_ds_gather_input converts them) holds its first T bytes and
 * target_name its last T (the same tokens one position on), so windows
 * overlap by one byte and S = (part bytes - 1) / T.  Refused, with a message naming the file: T < 1,
 * held_out outside (0, 1), a file that cannot be opened or read or is not a
 * regular file, text over LATHE_DS_MAX_BYTES / 16 bytes, a part shorter
 * than one window.  NULL on error; free with lathe_ds_free. */
lathe_dataset *lathe_ds_load_text(const char *path, int64_t T, double held_out, bool validation,
                                  const char *input_name, const char *target_name, char *err, size_t errlen);

/* A dataset of copies of n tensors held in memory (synthetic data, tests).
 * `what` names the source in messages (NULL: "<memory>").  Refused: n < 1,
 * a NULL or duplicate name, an unknown dtype, rank outside 1..8, a negative
 * dim, a size that overflows, NULL data for a non-empty tensor, first dims
 * that differ.  The caller keeps what it passed; the dataset owns its
 * copies.  NULL on error; free with lathe_ds_free. */
lathe_dataset *lathe_ds_from_tensors(const lathe_st_tensor *tensors, int n, const char *what, char *err,
                                     size_t errlen);

/* N, the number of samples (0 for NULL). */
int64_t lathe_ds_count(const lathe_dataset *d);

/* The number of tensors (0 for NULL). */
int lathe_ds_num_tensors(const lathe_dataset *d);

/* Tensor i, 0 <= i < lathe_ds_num_tensors(d) (NULL otherwise): name, dtype,
 * rank >= 1, shape with shape[0] = N, data (never NULL, aligned for its
 * element type).  For load_idx, tensor 0 is the images, 1 the labels; for
 * load_safetensors, the file's order.  Everything belongs to d and stays
 * valid until lathe_ds_free(d). */
const lathe_st_tensor *lathe_ds_tensor(const lathe_dataset *d, int i);

/* The tensor named name, or NULL.  Owned by d as for lathe_ds_tensor. */
const lathe_st_tensor *lathe_ds_find(const lathe_dataset *d, const char *name);

/* The file a tensor was read from ("<memory>" or the `what` given to
 * lathe_ds_from_tensors), or NULL when i is out of range.  Owned by d. */
const char *lathe_ds_source(const lathe_dataset *d, int i);

/* Bytes of one sample of t: shape[1] x ... x shape[rank-1] x the dtype's
 * size (0 for NULL); -1 when that does not fit in an int64_t (or a dim is
 * negative).  A dataset's tensors always fit: loading refuses the others. */
int64_t lathe_ds_sample_bytes(const lathe_st_tensor *t);

/* Copy samples idx[0], ..., idx[batch-1] of tensor `name`, in that order,
 * into out, which holds batch x lathe_ds_sample_bytes bytes and belongs to
 * the caller (an index may repeat).  Every index is checked before anything
 * is copied: 0, or -1 with a message (no such tensor, batch < 0, NULL idx or
 * out, an index outside [0, N)) and out untouched. */
int lathe_ds_gather(const lathe_dataset *d, const char *name, const int64_t *idx, int64_t batch, void *out,
                    char *err, size_t errlen);

/* Check that tensor `name` exists and that its samples have this dtype and
 * shape: rank dims sample_shape[0..rank) (the tensor's shape without N; rank
 * 0 for scalar samples such as labels, when sample_shape may be NULL).  0, or
 * -1 with a message naming the tensor's file and both sample shapes. */
int lathe_ds_check(const lathe_dataset *d, const char *name, lathe_rt_dtype dtype, int rank,
                   const int64_t *sample_shape, char *err, size_t errlen);

/* ---- feeding a model's input: conversion, normalization, augmentation ---- */

/* The most channels a normalization has. */
#define LATHE_DS_MAX_CHANNELS 64
/* The largest random-crop padding (far beyond any image's use). */
#define LATHE_DS_MAX_PAD 4096

/* Per-channel normalization, as torchvision's Normalize(mean, std):
 * x = (x - mean[c]) / std[c], c the element's channel, after the scaling of
 * U8 pixels (so mean and std are in [0, 1] units, as torchvision's) and
 * after augmentation (so padding is 0 before normalization, black, as when
 * RandomCrop runs before ToTensor and Normalize).  In f32 arithmetic for an
 * f32 input (mean and std rounded to f32 first, as torch's tensors),
 * in f64 for an f64 one. */
typedef struct {
    int channels;  /* 0: none; 1: one mean and std for every element; C > 1: one per channel, the first axis
                    * of a sample (axis 1 of an [N, C, H, W] input), which must then be C */
    double mean[LATHE_DS_MAX_CHANNELS];
    double std[LATHE_DS_MAX_CHANNELS];  /* finite and > 0 */
} lathe_ds_normalize;

/* Parse a normalization: "MEAN,STD" (one channel: every element), or
 * "M1,...,MC/S1,...,SC" (C means, a slash, C standard deviations: ImageNet's
 * "0.485,0.456,0.406/0.229,0.224,0.225"; "M/S" is one channel too).  0, or
 * -1 with a message (not numbers, counts that differ, more than
 * LATHE_DS_MAX_CHANNELS, a standard deviation not > 0, a value not finite)
 * and *out untouched. */
int lathe_ds_parse_normalize(const char *spec, lathe_ds_normalize *out, char *err, size_t errlen);

/* Seeded image augmentation, for training data only, on the last two axes
 * (H, W) of a sample, applied in torchvision's order RandomCrop,
 * RandomHorizontalFlip, then scaling and normalization.  What sample s of
 * the dataset gets in epoch e depends on (seed, e, s) alone - not on the
 * batch it lands in, the thread count, or whether the run was resumed -
 * through lathe_ds_augment_draw. */
typedef struct {
    int64_t crop_pad;  /* > 0: RandomCrop((H, W), padding = crop_pad): zeros around, an H x W window at a
                        * random offset; 0: none; at most LATHE_DS_MAX_PAD */
    bool hflip;        /* RandomHorizontalFlip(p = 0.5): x becomes W - 1 - x */
    uint64_t seed;
} lathe_ds_augment;

/* The draw of sample `sample` in epoch `epoch`: the crop's corner (*dy, *dx)
 * in the padded image, each in [0, 2 crop_pad] (torchvision's i and j; 0
 * without a crop), and whether it is flipped (false without hflip).  Output
 * (y, x) of the H x W sample is input (y + dy - pad, x' + dx - pad), with
 * x' = W - 1 - x when flipped, else x; outside the input it is 0.  Exactly
 * (arithmetic mod 2^64, mix and the SplitMix64 step as for
 * lathe_ds_permutation):
 *     key  = mix(mix(seed ^ 0x6175676D656E7421) + (uint64_t)epoch)
 *     h    = mix(key + ((uint64_t)sample + 1) * 0x9E3779B97F4A7C15)
 *     n    = 2 crop_pad + 1
 *     dy   = ((h >> 40) * n) >> 24,   dx = (((h >> 16) & 0xFFFFFF) * n) >> 24
 *     flip = hflip && (h & 1)
 * aug NULL: no crop, no flip. */
void lathe_ds_augment_draw(const lathe_ds_augment *aug, int64_t epoch, int64_t sample, int64_t *dy, int64_t *dx,
                           bool *flip);

/* A model input, as lathe_ds_gather_input fills it. */
typedef struct {
    lathe_rt_dtype dtype;                /* the input's dtype (F32, F64, I64 or BOOL) */
    int rank;                            /* a sample's dims: the input's shape without N */
    int64_t shape[LATHE_ST_MAX_RANK];
    bool scale;                          /* U8 into a float input: v / 255 (ToTensor); false: v */
    lathe_ds_normalize norm;             /* float inputs only */
} lathe_ds_input;

/* Whether tensor `name` of d can feed `in`, with aug (NULL: none): its
 * samples hold as many elements as in's (their shapes may differ: 28 x 28
 * feeds 1 x 28 x 28), and its dtype is in's or converts to it - U8 to
 * F32/F64 (v / 255 with scale, else v), I32 to F32/F64 (v), U8 or I32 to
 * I64 (v); normalization and augmentation need a float input, a normalization
 * of C > 1 channels a sample whose first dim is C, augmentation a sample of
 * rank 2 or more.  0, or -1 with a message naming the tensor's file
 * ("small.idx: samples of 'image' are f32[27, 27] (729 elements); the
 * model's input 'image' takes f32[1, 28, 28] (784 elements)"). */
int lathe_ds_input_check(const lathe_dataset *d, const char *name, const lathe_ds_input *in,
                         const lathe_ds_augment *aug, char *err, size_t errlen);

/* Samples idx[0..batch) of tensor `name` into out (batch samples of in's
 * dtype and shape, the caller's), each converted, augmented with aug as
 * drawn for (epoch, idx[k]) (aug NULL: not augmented) and normalized.
 * Everything lathe_ds_input_check checks, and every index (as
 * lathe_ds_gather), is checked before anything is written: 0, or -1 with a
 * message and out untouched.  Without conversion, normalization or
 * augmentation it is lathe_ds_gather.  Reads d only: threads may gather from
 * one dataset at once. */
int lathe_ds_gather_input(const lathe_dataset *d, const char *name, const lathe_ds_input *in,
                          const lathe_ds_augment *aug, int64_t epoch, const int64_t *idx, int64_t batch, void *out,
                          char *err, size_t errlen);

/* Free d and everything it owns.  NULL is allowed. */
void lathe_ds_free(lathe_dataset *d);

/* A permutation of 0..n-1 into perm (n elements, the caller's), the same for
 * the same (n, seed, epoch) on any machine, so a resumed run sees the same
 * data order.  The algorithm, exactly (all arithmetic mod 2^64):
 *     mix(z):  z ^= z >> 30; z *= 0xBF58476D1CE4E5B9;
 *              z ^= z >> 27; z *= 0x94D049BB133111EB; z ^= z >> 31
 *     state = mix(mix(seed) + (uint64_t)epoch)
 *     next():  state += 0x9E3779B97F4A7C15; return mix(state)   (SplitMix64)
 *     perm[i] = i for every i
 *     for i = n-1 down to 1:                                    (Fisher-Yates)
 *         do r = next() while r < 2^64 mod (i+1)                (no modulo bias)
 *         j = r mod (i+1); swap perm[i] and perm[j]
 * n <= 0 writes nothing. */
void lathe_ds_permutation(int64_t n, uint64_t seed, int64_t epoch, int64_t *perm);

#ifdef __cplusplus
}
#endif
#endif
