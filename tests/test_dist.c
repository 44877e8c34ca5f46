/* test_dist.c - lathe_dist.h's layer, run by test_dist.sh as one process
 * and under mpirun with 1, 2 and 3 processes.  Every value a collective
 * should give is worked out from the rank and the process count (each rank
 * contributes numbers that sum exactly in any order), so the same program
 * checks itself at any size.
 *
 *   test_dist info        have_mpi=0|1 launched=0|1 (no initialization)
 *   test_dist check       the collectives against their expected values;
 *                         "test_dist: rank R of P: N checks passed", status 0
 *   test_dist kill|exit|abort
 *                         every rank all-reduces in a loop far longer than
 *                         the test waits, and at its 50th step rank 1 is
 *                         killed by SIGKILL, exits with status 4, or calls
 *                         lathe_dist_abort(3, ...): the others must be ended
 *                         by mpirun (test_dist.sh times it)
 *   test_dist nompi-env   built without MPI (test_dist_nompi, dist.c compiled
 *                         again without LATHE_HAVE_MPI): a table of launcher
 *                         environments, each refused or accepted by
 *                         lathe_dist_init as it should be
 * Messages go to standard error; a failed check names itself and its rank. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lathe_dist.h"

static int passed, failed;
static int rank, size;

#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        if (cond) {                                                               \
            passed++;                                                             \
        } else {                                                                  \
            failed++;                                                             \
            fprintf(stderr, "FAIL (rank %d, %s:%d): ", rank, __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                                         \
            fputc('\n', stderr);                                                  \
        }                                                                         \
    } while (0)

/* A call returning 0, or the check fails with its message. */
#define OK(call) CHECK((call) == 0, "%s: %s", #call, err)

static char err[512];

static void check_before_init(void) {
    CHECK(lathe_dist_rank() == 0 && lathe_dist_size() == 1, "before init: rank %d size %d", lathe_dist_rank(),
          lathe_dist_size());
    float x = 1;
    err[0] = 0;
    CHECK(lathe_dist_allreduce_sum(&x, 1, LATHE_RT_F32, err, sizeof err) == -1 &&
              strstr(err, "lathe_dist_init has not been called"),
          "all-reduce before init: \"%s\"", err);
    CHECK(lathe_dist_barrier(err, sizeof err) == -1, "barrier before init");
}

/* Sums of small integers and halves: exact in f32 and f64 in any order. */
static void check_allreduce(void) {
    enum { N = 1003 };
    static float f[N];
    static double d[N];
    static int64_t q[N];
    for (int i = 0; i < N; i++) {
        f[i] = (float)(rank + 1) + 0.5f * (float)i;
        d[i] = 0.25 * (rank + 1) - 1024.0 * i;
        q[i] = ((int64_t)(rank + 1) << 40) - i;   /* past 32 bits */
    }
    OK(lathe_dist_allreduce_sum(f, N, LATHE_RT_F32, err, sizeof err));
    OK(lathe_dist_allreduce_sum(d, N, LATHE_RT_F64, err, sizeof err));
    OK(lathe_dist_allreduce_sum(q, N, LATHE_RT_I64, err, sizeof err));
    int64_t tri = (int64_t)size * (size + 1) / 2;   /* sum of rank + 1 */
    int bad_f = 0, bad_d = 0, bad_q = 0;
    for (int i = 0; i < N; i++) {
        bad_f += f[i] != (float)tri + 0.5f * (float)size * (float)i;
        bad_d += d[i] != 0.25 * (double)tri - 1024.0 * size * i;
        bad_q += q[i] != (tri << 40) - (int64_t)size * i;
    }
    CHECK(!bad_f, "f32 all-reduce: %d of %d wrong, [1] = %g, expected %g", bad_f, N, f[1], (double)tri + 0.5 * size);
    CHECK(!bad_d, "f64 all-reduce: %d of %d wrong, [1] = %g", bad_d, N, d[1]);
    CHECK(!bad_q, "i64 all-reduce: %d of %d wrong, [1] = %" PRId64, bad_q, N, q[1]);
    OK(lathe_dist_allreduce_sum(NULL, 0, LATHE_RT_F32, err, sizeof err));
    /* refused alike on every rank, before any communication */
    unsigned char b[2] = {1, 0};
    err[0] = 0;
    CHECK(lathe_dist_allreduce_sum(b, 2, LATHE_RT_BOOL, err, sizeof err) == -1 && strstr(err, "cannot sum bool"),
          "bool all-reduce: \"%s\"", err);
}

static void check_allgather(void) {
    enum { B = 12 };
    unsigned char mine[B], all[3 * B + 1];
    for (int j = 0; j < B; j++) mine[j] = (unsigned char)(16 * rank + j);
    memset(all, 0xEE, sizeof all);
    OK(lathe_dist_allgather(mine, B, all, err, sizeof err));
    int bad = 0;
    for (int r = 0; r < size; r++)
        for (int j = 0; j < B; j++) bad += all[r * B + j] != 16 * r + j;
    CHECK(!bad, "all-gather: %d bytes wrong", bad);
    CHECK(all[size * B] == 0xEE, "all-gather wrote past its %d blocks", size);

    /* unequal blocks: rank r gives r + 2 bytes 'a' + r, but rank 1 none */
    size_t n = rank == 1 ? 0 : (size_t)rank + 2, counts[3] = {99, 99, 99};
    char block[8];
    memset(block, 'a' + rank, sizeof block);
    void *got = NULL;
    OK(lathe_dist_allgatherv(n ? block : NULL, n, &got, counts, err, sizeof err));
    size_t at = 0;
    bad = 0;
    for (int r = 0; r < size; r++) {
        size_t want = r == 1 ? 0 : (size_t)r + 2;
        CHECK(counts[r] == want, "all-gather v: counts[%d] = %zu, expected %zu", r, counts[r], want);
        for (size_t j = 0; got && j < want; j++) bad += ((char *)got)[at + j] != 'a' + r;
        at += want;
    }
    CHECK(got && !bad, "all-gather v: %d bytes wrong", bad);
    free(got);
}

static void check_broadcast(void) {
    uint64_t word = rank == size - 1 ? UINT64_C(0x0123456789ABCDEF) : (uint64_t)rank;
    OK(lathe_dist_broadcast(&word, sizeof word, size - 1, err, sizeof err));
    CHECK(word == UINT64_C(0x0123456789ABCDEF), "broadcast from rank %d: %016" PRIx64, size - 1, word);
    char text[40] = "not yet";
    if (rank == 0) snprintf(text, sizeof text, "from rank 0 of %d", size);
    OK(lathe_dist_broadcast(text, sizeof text, 0, err, sizeof err));
    char want[40];
    snprintf(want, sizeof want, "from rank 0 of %d", size);
    CHECK(!strcmp(text, want), "broadcast from rank 0: \"%s\"", text);
    err[0] = 0;
    CHECK(lathe_dist_broadcast(&word, sizeof word, size, err, sizeof err) == -1 && strstr(err, "is not a rank"),
          "broadcast from rank %d (none): \"%s\"", size, err);
}

static int check(void) {
    check_before_init();
    CHECK(lathe_dist_init(err, sizeof err) == 0, "lathe_dist_init: %s", err);
    if (failed) return 1;
    rank = lathe_dist_rank();
    size = lathe_dist_size();
    OK(lathe_dist_init(err, sizeof err));   /* idempotent */
    CHECK(lathe_dist_rank() == rank && lathe_dist_size() == size, "a second init changed rank or size");
    CHECK(size >= 1 && size <= 3 && rank >= 0 && rank < size, "rank %d of %d (test_dist.sh runs 1 to 3)", rank, size);
    if (failed) return 1;   /* the buffers below hold 3 ranks' blocks */
    CHECK(lathe_dist_launched() || size == 1, "%d processes but no launcher seen", size);
    check_allreduce();
    check_allgather();
    check_broadcast();
    OK(lathe_dist_barrier(err, sizeof err));
    bool via_mpi = lathe_dist_have_mpi() && lathe_dist_launched();
    OK(lathe_dist_finalize(err, sizeof err));
    CHECK(lathe_dist_rank() == 0 && lathe_dist_size() == 1, "after finalize: rank %d size %d", lathe_dist_rank(),
          lathe_dist_size());
    /* MPI starts once per process; one process without it starts again */
    err[0] = 0;
    int again = lathe_dist_init(err, sizeof err);
    if (via_mpi)
        CHECK(again == -1 && strstr(err, "cannot start again"), "init after MPI_Finalize: %d \"%s\"", again, err);
    else
        CHECK(again == 0, "init after finalize: %s", err);
    OK(lathe_dist_finalize(err, sizeof err));
    printf("test_dist: rank %d of %d: %d checks passed, %d failed\n", rank, size, passed, failed);
    return failed ? 1 : 0;
}

/* Rank 1 fails at the 50th all-reduce; the others would go on for hours. */
static int fail(const char *how) {
    if (lathe_dist_init(err, sizeof err) != 0) {
        fprintf(stderr, "test_dist: %s\n", err);
        return 1;
    }
    rank = lathe_dist_rank();
    size = lathe_dist_size();
    if (size < 2) {
        fprintf(stderr, "test_dist: %s needs at least 2 processes, not %d\n", how, size);
        return 2;
    }
    double x[64] = {0};
    for (long step = 0; step < 1000000000L; step++) {
        if (rank == 1 && step == 50) {
            fprintf(stderr, "test_dist: rank 1 fails (%s) at step 50\n", how);
            fflush(stderr);
            if (!strcmp(how, "kill")) raise(SIGKILL);
            if (!strcmp(how, "exit")) exit(4);
            lathe_dist_abort(3, "rank %d gives up at step %ld (on purpose)", rank, step);
        }
        if (lathe_dist_allreduce_sum(x, 64, LATHE_RT_F64, err, sizeof err) != 0) {
            /* Open MPI kills the survivors rather than return an error;
             * should it ever return one, that is an end too */
            fprintf(stderr, "test_dist: rank %d: %s\n", rank, err);
            return 5;
        }
    }
    printf("test_dist: rank %d: done, never stopped\n", rank);
    return 0;
}

/* Built without MPI: launcher environments, and what init must say. */
static int nompi_env(void) {
    if (lathe_dist_have_mpi()) {
        fprintf(stderr, "test_dist: nompi-env is for the build without MPI (test_dist_nompi)\n");
        return 2;
    }
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "PMI_SIZE", "PMI_RANK",
                                       "PMIX_RANK"};
    static const struct {
        const char *set[2][2];   /* variables to set (name, value) */
        bool refused;
        const char *words;       /* in the message when refused */
    } cases[] = {
        {{{"OMPI_COMM_WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_RANK", "0"}}, true, "one of 2 processes (OMPI_COMM_WORLD_SIZE=2)"},
        {{{"OMPI_COMM_WORLD_SIZE", "4"}, {"PMIX_RANK", "3"}}, true, "one of 4 processes (OMPI_COMM_WORLD_SIZE=4)"},
        {{{"PMI_SIZE", "3"}, {"PMI_RANK", "0"}}, true, "one of 3 processes (PMI_SIZE=3)"},
        {{{"PMIX_RANK", "1"}}, true, "one of at least 2 processes (PMIX_RANK=1)"},
        {{{"OMPI_COMM_WORLD_SIZE", "1"}, {"OMPI_COMM_WORLD_RANK", "0"}}, false, NULL},   /* mpirun -np 1 */
        {{{"PMIX_RANK", "0"}}, false, NULL},
        {{{NULL}}, false, NULL},                                                          /* no launcher */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (size_t v = 0; v < sizeof vars / sizeof vars[0]; v++) unsetenv(vars[v]);
        for (int k = 0; k < 2 && cases[c].set[k][0]; k++) setenv(cases[c].set[k][0], cases[c].set[k][1], 1);
        err[0] = 0;
        int st = lathe_dist_init(err, sizeof err);
        CHECK(lathe_dist_launched() == (cases[c].set[0][0] != NULL), "case %zu: launched %d", c,
              lathe_dist_launched());
        if (cases[c].refused) {
            CHECK(st == -1 && strstr(err, "built without MPI support") && strstr(err, cases[c].words) &&
                      strstr(err, "-Dmpi=enabled"),
                  "case %zu: %d \"%s\"", c, st, err);
            CHECK(lathe_dist_size() == 1 && lathe_dist_rank() == 0, "case %zu: refused, yet size %d", c,
                  lathe_dist_size());
        } else {
            CHECK(st == 0 && lathe_dist_size() == 1 && lathe_dist_rank() == 0, "case %zu: %d \"%s\" size %d", c, st,
                  err, lathe_dist_size());
            OK(lathe_dist_finalize(err, sizeof err));
        }
    }
    printf("test_dist: nompi-env: %d checks passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "info")) {
        printf("have_mpi=%d launched=%d\n", lathe_dist_have_mpi(), lathe_dist_launched());
        return 0;
    }
    if (!strcmp(mode, "check")) return check();
    if (!strcmp(mode, "kill") || !strcmp(mode, "exit") || !strcmp(mode, "abort")) return fail(mode);
    if (!strcmp(mode, "nompi-env")) return nompi_env();
    fprintf(stderr, "usage: test_dist info|check|kill|exit|abort|nompi-env\n");
    return 2;
}
