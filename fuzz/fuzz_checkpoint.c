/* fuzz_checkpoint.c - libFuzzer target: loading a checkpoint (a safetensors
 * file) into a small model's parameters and buffers, strict and not: it is
 * validated completely before anything is copied (fuzz/run.sh). */
#include <stdint.h>
#include <stdlib.h>

#include "lathe_checkpoint.h"
#include "memfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const lathe_rt_tensor ts[] = {
        {.name = "fc.weight", .kind = LATHE_RT_PARAM, .dtype = LATHE_RT_F32, .rank = 2, .shape = {2, 3}, .numel = 6,
         .offset = 0, .requires_grad = true, .grad_offset = -1},
        {.name = "fc.bias", .kind = LATHE_RT_PARAM, .dtype = LATHE_RT_F32, .rank = 1, .shape = {2}, .numel = 2,
         .offset = 64, .requires_grad = true, .grad_offset = -1},
        {.name = "bn.num_batches_tracked", .kind = LATHE_RT_BUFFER, .dtype = LATHE_RT_I64, .rank = 0, .numel = 1,
         .offset = 128, .grad_offset = -1},
    };
    char path[64], err[1024];
    int fd = memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    uint8_t *arena = aligned_alloc(64, 192);
    if (arena) {
        lathe_load_report rep;
        for (int strict = 0; strict < 2; strict++)
            lathe_rt_load(path, arena, ts, 3, NULL, strict, &rep, err, sizeof err);
        free(arena);
    }
    close(fd);
    return 0;
}
