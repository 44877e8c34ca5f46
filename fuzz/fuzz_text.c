/* fuzz_text.c - libFuzzer target: Lathe's text IR parser, the verifier and
 * the printer.  Any input must be refused with a message or parse to a
 * graph that verifies and prints; never a crash (fuzz/run.sh). */
#include <stdint.h>
#include <stdio.h>

#include "ir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lathe_graph *g = lathe_graph_new();
    if (!g) return 0;
    if (lathe_parse(g, (const char *)data, size, "fuzz.ir") == LATHE_OK && lathe_graph_verify(g) == LATHE_OK) {
        FILE *out = fopen("/dev/null", "w");
        if (out) {
            lathe_graph_print(g, out);
            lathe_graph_print_dot(g, out);
            fclose(out);
        }
    }
    lathe_graph_free(g);
    return 0;
}
