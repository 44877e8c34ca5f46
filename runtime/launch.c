/* launch.c - what an MPI launcher says in the environment (launch.h), apart
 * from dist.c so that a program can ask without linking MPI. */
#include <stdio.h>
#include <stdlib.h>

#include "lathe_dist.h"
#include "launch.h"

/* What launchers put in the environment of the processes they start: Open
 * MPI's mpirun (1.x to 5.x) OMPI_COMM_WORLD_SIZE and _RANK (4.1 also
 * PMIX_RANK, but no PMIX size); MPICH's and Intel MPI's Hydra and Slurm's
 * srun --mpi=pmi2 PMI_SIZE and PMI_RANK; PMIx launchers (srun --mpi=pmix,
 * PRRTE) PMIX_RANK without a size.  A size says how many processes there
 * are; a rank above 0 says there are more than one. */
static const struct {
    const char *size, *rank;
} launcher_vars[] = {
    {"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"},
    {"PMI_SIZE", "PMI_RANK"},
    {NULL, "PMIX_RANK"},
};
enum { NLAUNCHER_VARS = (int)(sizeof launcher_vars / sizeof launcher_vars[0]) };

/* A variable's value as a count or rank: -1 when unset or not a number. */
static long env_long(const char *name) {
    const char *v = getenv(name);
    if (!v || !*v) return -1;
    char *end;
    long x = strtol(v, &end, 10);
    return *end || x < 0 ? -1 : x;
}

launcher lt_read_launcher(void) {
    launcher l = {0};
    for (int i = 0; i < NLAUNCHER_VARS; i++) {
        const char *sv = launcher_vars[i].size, *rv = launcher_vars[i].rank;
        if ((sv && getenv(sv)) || getenv(rv)) l.launched = true;
        long size = sv ? env_long(sv) : -1, rank = env_long(rv);
        if (size > 0 && !l.size) {
            l.size = size;
            l.var = sv;
            l.value = getenv(sv);
        }
        if (rank >= 0 && rank + 1 > l.at_least) {
            l.at_least = rank + 1;
            if (!l.size) {
                l.var = rv;
                l.value = getenv(rv);
            }
        }
    }
    return l;
}

bool lathe_dist_launched(void) { return lt_read_launcher().launched; }

/* How many processes the launcher started, as words: "4 processes
 * (OMPI_COMM_WORLD_SIZE=4)", "at least 2 processes (PMIX_RANK=1)". */
void lt_launcher_words(const launcher *l, char *buf, size_t len) {
    if (l->size)
        snprintf(buf, len, "%ld processes (%s=%s)", l->size, l->var, l->value);
    else
        snprintf(buf, len, "at least %ld processes (%s=%s)", l->at_least, l->var, l->value);
}

int lathe_dist_announced(char *words, size_t len) {
    launcher l = lt_read_launcher();
    long n = l.size ? l.size : l.at_least;
    if (!l.launched) return 0;
    if (n < 1) n = 1; /* a launcher that does not say how many */
    if (words && len) lt_launcher_words(&l, words, len);
    return n > 1000000 ? 1000000 : (int)n;
}
