/* launch.h - what an MPI launcher says in the environment (launch.c), for
 * dist.c.  Internal to runtime/. */
#ifndef LATHE_LAUNCH_H
#define LATHE_LAUNCH_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    bool launched;       /* some variable of launcher_vars is set */
    long size;           /* the first size announced; 0: none */
    long at_least;       /* 1 + the largest rank announced; 0: none */
    const char *var;     /* the variable that says so (size's, else at_least's) */
    const char *value;
} launcher;

/* The launcher's variables (launch.c's table). */
launcher lt_read_launcher(void);
/* How many processes the launcher started, as words: "4 processes
 * (OMPI_COMM_WORLD_SIZE=4)", "at least 2 processes (PMIX_RANK=1)". */
void lt_launcher_words(const launcher *l, char *buf, size_t len);

#endif
