/* fuzz_safetensors.c - libFuzzer target: reading a safetensors file (header
 * JSON, dtypes, shapes, offsets, the data's bounds), from memory as from a
 * file (fuzz/run.sh). */
#include <stdint.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    lathe_st_file *f = lathe_st_read_mem(data, size, "fuzz.safetensors", err, sizeof err);
    lathe_st_free(f);
    return 0;
}
