/* fuzz_idx.c - libFuzzer target: loading an IDX image file and an IDX
 * label file, raw or gzip (zlib), into a dataset, as it is (F32 and I64) or
 * compactly (as stored, converted, normalized and augmented as a sample is
 * gathered).  The input's first two bytes say where the images end (and
 * their low bits choose the variant); the rest is the labels file
 * (fuzz/run.sh). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "dataset.h"
#include "memfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    size_t split = (size_t)data[0] | (size_t)data[1] << 8;
    data += 2, size -= 2;
    if (split > size) split = size;
    char ip[64], lp[64], err[1024];
    int fi = memfile(data, split, ip, sizeof ip), fl = memfile(data + split, size - split, lp, sizeof lp);
    if (fi >= 0 && fl >= 0) {
        bool compact = (split & 2) != 0; /* as a trainer loads it, converted on gather */
        lathe_dataset *d = compact ? lathe_ds_load_idx_compact(ip, lp, "image", "label", err, sizeof err)
                                   : lathe_ds_load_idx(ip, lp, "image", "label", (split & 1) != 0, err, sizeof err);
        if (d && lathe_ds_count(d) > 0) { /* read a sample back: the sizes it reports must hold */
            int64_t idx = lathe_ds_count(d) - 1;
            const lathe_st_tensor *t = lathe_ds_find(d, "image");
            int64_t sb = lathe_ds_sample_bytes(t), n = sb / (int64_t)lathe_rt_dtype_size(t->dtype);
            void *out = sb > 0 && sb < (16 << 20) ? malloc((size_t)n * 8) : NULL;
            if (out && !compact) lathe_ds_gather(d, "image", &idx, 1, out, err, sizeof err);
            if (out && compact) { /* to f32, normalized, cropped and flipped where there are two axes */
                lathe_ds_input in = {.dtype = LATHE_RT_F32, .rank = t->rank - 1, .scale = (split & 1) != 0,
                                     .norm = {.channels = 1, .mean = {0.5}, .std = {0.25}}};
                for (int k = 1; k < t->rank; k++) in.shape[k - 1] = t->shape[k];
                lathe_ds_augment aug = {.crop_pad = t->rank >= 3 ? 1 + (split >> 2) % 3 : 0, .hflip = t->rank >= 3,
                                        .seed = split};
                lathe_ds_gather_input(d, "image", &in, &aug, (int64_t)split, &idx, 1, out, err, sizeof err);
                lathe_ds_input lab = {.dtype = LATHE_RT_I64, .rank = 0};
                int64_t y;
                lathe_ds_gather_input(d, "label", &lab, NULL, 0, &idx, 1, &y, err, sizeof err);
            }
            free(out);
        }
        lathe_ds_free(d);
    }
    if (fi >= 0) close(fi);
    if (fl >= 0) close(fl);
    return 0;
}
