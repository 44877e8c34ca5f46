/* fuzz_desc.c - libFuzzer target: the model description parser with its
 * tracing, then reverse-mode differentiation of what it marks and the
 * simplifier.  Refusals are fine; crashes, leaks and undefined behaviour
 * are not (fuzz/run.sh). */
#include <stdint.h>

#include "lathe_autodiff.h"
#include "lathe_desc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    for (int training = 0; training < 2; training++) {
        lathe_graph *g = lathe_graph_new();
        if (!g) return 0;
        lathe_desc_options opt = {.training = training};
        lathe_desc_info info;
        if (lathe_desc_parse(g, (const char *)data, size, "fuzz.lathe", &opt, &info) == LATHE_OK &&
            lathe_graph_num_marks(g) > 0 && lathe_backward_marked(g) == LATHE_OK) {
            lathe_graph *s = lathe_simplify(g);
            lathe_graph_free(s);
        }
        lathe_graph_free(g);
    }
    return 0;
}
