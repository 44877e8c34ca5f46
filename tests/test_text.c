#include "testutil.h"
static void test_samples_build(void **state) {
    (void)state;
    for (int i = 0; i < nsamples; i++) lathe_graph_free(sample_graph(&samples[i], LATHE_F64));
}
int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_samples_build)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
