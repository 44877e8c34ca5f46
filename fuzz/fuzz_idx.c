/* fuzz_idx.c - libFuzzer target: loading an IDX image file and an IDX
 * label file, raw or gzip (zlib), into a dataset.  The input's first two
 * bytes say where the images end; the rest is the labels file
 * (fuzz/run.sh). */
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
        lathe_dataset *d = lathe_ds_load_idx(ip, lp, "image", "label", (split & 1) != 0, err, sizeof err);
        if (d && lathe_ds_count(d) > 0) { /* read a sample back: the sizes it reports must hold */
            int64_t idx = lathe_ds_count(d) - 1;
            const lathe_st_tensor *t = lathe_ds_find(d, "image");
            int64_t sb = lathe_ds_sample_bytes(t);
            void *out = sb > 0 && sb < (64 << 20) ? malloc((size_t)sb) : NULL;
            if (out) lathe_ds_gather(d, "image", &idx, 1, out, err, sizeof err);
            free(out);
        }
        lathe_ds_free(d);
    }
    if (fi >= 0) close(fi);
    if (fl >= 0) close(fl);
    return 0;
}
