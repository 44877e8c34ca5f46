/* dist.c - the processes of a data-parallel run (lathe_dist.h): MPI when
 * the build has it (LATHE_HAVE_MPI, meson's `mpi` feature) and a launcher
 * started this process, one process otherwise.
 *
 * One process is not a special case of MPI here: it is the same state with
 * size 1, and every collective of one process is a copy or nothing.  So a
 * trainer run on its own never starts Open MPI's runtime (a singleton
 * MPI_Init forks a helper daemon and takes half a second), and the build
 * without MPI is this file with the MPI branches left out - the tests
 * compile it both ways in one build (tests/meson.build, test_dist_nompi).
 *
 * The one thing the build without MPI must not do is run quietly under
 * mpirun -np 4: four trainers, each on the whole data, each writing the same
 * checkpoint.  So both builds read the launcher's variables, and this one
 * refuses.  The build with MPI reads them too, to catch the opposite
 * mistake: another MPI's launcher, under which each process initializes
 * MPI as a singleton of size 1.
 *
 * Errors: the communicator is a duplicate of MPI_COMM_WORLD with
 * MPI_ERRORS_RETURN, and every MPI call's status becomes a message.  What
 * happens when a process dies is mpirun's business (lathe_dist.h says what
 * Open MPI 4.1 does); nothing here waits with a timeout. */
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef LATHE_HAVE_MPI
#include <mpi.h>
#endif

#include "fileerr.h"
#include "lathe_dist.h"
#include "launch.h"

/* The launcher, from the environment: launch.c (which needs no MPI). */

/* ---- state ------------------------------------------------------------------- */

/* The process's one run (MPI's state is the process's, and so is this). */
static struct {
    bool up;             /* lathe_dist_init succeeded, no lathe_dist_finalize since */
    bool mpi;            /* collectives go through comm */
    int rank, size;
#ifdef LATHE_HAVE_MPI
    MPI_Comm comm;
#endif
} dist = {.size = 1};

#ifdef LATHE_HAVE_MPI
/* lathe_dist_init called MPI_Init (and lathe_dist_finalize calls
 * MPI_Finalize); kept across a failed init, which may be retried. */
static bool owns_mpi;
#endif

bool lathe_dist_have_mpi(void) {
#ifdef LATHE_HAVE_MPI
    return true;
#else
    return false;
#endif
}

int lathe_dist_rank(void) { return dist.rank; }
int lathe_dist_size(void) { return dist.size; }

static int not_initialized(const char *what, char *err, size_t errlen) {
    lt_errf(err, errlen, "%s: lathe_dist_init has not been called (or lathe_dist_finalize has)", what);
    return -1;
}

#ifdef LATHE_HAVE_MPI
/* "WHAT: MPI's message for rc", and -1. */
static int mpi_fail(int rc, char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int mpi_fail(int rc, char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return -1;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= errlen) return -1;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) len = snprintf(text, sizeof text, "MPI error %d", rc);
    snprintf(err + k, errlen - (size_t)k, ": %.*s", len, text);
    return -1;
}

/* The MPI library's name and version, as its first words say ("Open MPI
 * v4.1.4"). */
static void mpi_library(char *buf, size_t len) {
    char v[MPI_MAX_LIBRARY_VERSION_STRING];
    int n = 0;
    if (MPI_Get_library_version(v, &n) != MPI_SUCCESS) n = 0;
    v[n < (int)sizeof v ? n : (int)sizeof v - 1] = 0;
    int words = (int)strcspn(v, ",\n");
    snprintf(buf, len, "%.*s", words ? words : 14, words ? v : "an unknown MPI");
}

/* Initialize MPI when own (else the program did), take the communicator,
 * and check that MPI sees the processes the launcher started. */
static int init_mpi(const launcher *l, bool own, char *err, size_t errlen) {
    int rc;
    if (own) {
        int provided;
        rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, err, errlen, "MPI_Init_thread");
        owns_mpi = true;
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    }
    MPI_Comm comm;
    rc = MPI_Comm_dup(MPI_COMM_WORLD, &comm);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, err, errlen, "MPI_Comm_dup of MPI_COMM_WORLD");
    int rank = 0, size = 1;
    if ((rc = MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN)) != MPI_SUCCESS ||
        (rc = MPI_Comm_rank(comm, &rank)) != MPI_SUCCESS || (rc = MPI_Comm_size(comm, &size)) != MPI_SUCCESS) {
        mpi_fail(rc, err, errlen, "setting up the communicator");
        MPI_Comm_free(&comm);
        return -1;
    }
    if ((l->size && l->size != size) || l->at_least > size) {
        char words[160], lib[128];
        lt_launcher_words(l, words, sizeof words);
        mpi_library(lib, sizeof lib);
        lt_errf(err, errlen,
                "the launcher started %s but MPI sees %d: start this program with the mpirun of the MPI it was "
                "built with (%s), not another MPI's",
                words, size, lib);
        MPI_Comm_free(&comm);
        return -1;
    }
    dist.comm = comm;
    dist.mpi = true;
    dist.rank = rank;
    dist.size = size;
    return 0;
}
#endif

int lathe_dist_init(char *err, size_t errlen) {
    if (dist.up) return 0;
    launcher l = lt_read_launcher();
#ifdef LATHE_HAVE_MPI
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (finalized) {
        lt_errf(err, errlen, "MPI was finalized in this process already and cannot start again");
        return -1;
    }
    if (inited || l.launched) {
        if (init_mpi(&l, !inited, err, errlen) != 0) return -1;
        dist.up = true;
        return 0;
    }
#else
    if (l.size > 1 || l.at_least > 1) {
        char words[160];
        lt_launcher_words(&l, words, sizeof words);
        lt_errf(err, errlen,
                "this program was built without MPI support, but an MPI launcher started it as one of %s: each "
                "would train alone on all the data.  Rebuild Lathe with MPI (on Debian: apt-get install "
                "libopenmpi-dev openmpi-bin, then meson setup --reconfigure BUILDDIR -Dmpi=enabled and ninja -C "
                "BUILDDIR), compile the trainer again with that lathe, and start it with Open MPI's mpirun",
                words);
        return -1;
    }
#endif
    dist.mpi = false;
    dist.rank = 0;
    dist.size = 1;
    dist.up = true;
    return 0;
}

int lathe_dist_finalize(char *err, size_t errlen) {
    if (!dist.up) return 0;
    int status = 0;
#ifdef LATHE_HAVE_MPI
    if (dist.mpi) {
        int rc = MPI_Comm_free(&dist.comm);
        if (rc != MPI_SUCCESS) status = mpi_fail(rc, err, errlen, "MPI_Comm_free");
        if (owns_mpi) {
            rc = MPI_Finalize();
            if (rc != MPI_SUCCESS && status == 0) status = mpi_fail(rc, err, errlen, "MPI_Finalize");
            owns_mpi = false;
        }
    }
#else
    (void)err;
    (void)errlen;
#endif
    dist.up = false;
    dist.mpi = false;
    dist.rank = 0;
    dist.size = 1;
    return status;
}

/* ---- collectives --------------------------------------------------------------- */

int lathe_dist_allreduce_sum(void *buf, size_t n, lathe_rt_dtype dtype, char *err, size_t errlen) {
    if (dtype != LATHE_RT_F32 && dtype != LATHE_RT_F64 && dtype != LATHE_RT_I64) {
        lt_errf(err, errlen, "all-reduce: cannot sum %s elements (F32, F64 or I64)", lathe_rt_dtype_name(dtype));
        return -1;
    }
    if (!dist.up) return not_initialized("all-reduce", err, errlen);
    if (n && !buf) {
        lt_errf(err, errlen, "all-reduce: NULL buffer of %zu elements", n);
        return -1;
    }
    if (!dist.mpi || n == 0) return 0;  /* the sum over one process */
#ifdef LATHE_HAVE_MPI
    MPI_Datatype type = dtype == LATHE_RT_F32 ? MPI_FLOAT : dtype == LATHE_RT_F64 ? MPI_DOUBLE : MPI_INT64_T;
    size_t es = lathe_rt_dtype_size(dtype);
    for (size_t at = 0; at < n;) {
        int k = n - at > INT_MAX ? INT_MAX : (int)(n - at);
        int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)buf + at * es, k, type, MPI_SUM, dist.comm);
        if (rc != MPI_SUCCESS)
            return mpi_fail(rc, err, errlen, "all-reduce of %zu %s elements (rank %d of %d)", n,
                            lathe_rt_dtype_name(dtype), dist.rank, dist.size);
        at += (size_t)k;
    }
#endif
    return 0;
}

/* What an all-gather of equal blocks does before MPI: -1 with a message
 * for bad arguments, 0 when that was all (no bytes; one process without MPI:
 * its block copied), 1 when MPI has the rest to do. */
static int gather_start(const void *send, size_t nbytes, void *recv, char *err, size_t errlen) {
    if (!dist.up) return not_initialized("all-gather", err, errlen);
    if (nbytes > INT_MAX) {
        lt_errf(err, errlen, "all-gather: blocks of %zu bytes, more than INT_MAX", nbytes);
        return -1;
    }
    if (nbytes && (!send || !recv)) {
        lt_errf(err, errlen, "all-gather: NULL buffer for blocks of %zu bytes", nbytes);
        return -1;
    }
    if (nbytes == 0) return 0;
    if (!dist.mpi) {
        memcpy(recv, send, nbytes);
        return 0;
    }
    return 1;
}

int lathe_dist_allgather(const void *send, size_t nbytes, void *recv, char *err, size_t errlen) {
    int go = gather_start(send, nbytes, recv, err, errlen);
    if (go <= 0) return go;
#ifdef LATHE_HAVE_MPI
    /* one element of nbytes bytes per rank: the total may pass INT_MAX */
    MPI_Datatype block;
    int rc = MPI_Type_contiguous((int)nbytes, MPI_BYTE, &block);
    if (rc == MPI_SUCCESS && (rc = MPI_Type_commit(&block)) == MPI_SUCCESS) {
        rc = MPI_Allgather(send, 1, block, recv, 1, block, dist.comm);
        MPI_Type_free(&block);
    }
    if (rc != MPI_SUCCESS)
        return mpi_fail(rc, err, errlen, "all-gather of blocks of %zu bytes (rank %d of %d)", nbytes, dist.rank,
                        dist.size);
#endif
    return 0;
}

/* The all-gathers under way: MPI's requests and their block types, by the
 * number lathe_dist_iallgather gave. */
#ifdef LATHE_HAVE_MPI
static MPI_Request pending[LATHE_DIST_MAX_PENDING];
static MPI_Datatype pending_type[LATHE_DIST_MAX_PENDING];
static int npending;
#endif
static bool pending_on[LATHE_DIST_MAX_PENDING];

int lathe_dist_iallgather(const void *send, size_t nbytes, void *recv, int *req, char *err, size_t errlen) {
    *req = -1;
    int go = gather_start(send, nbytes, recv, err, errlen);
    if (go <= 0) return go;
#ifdef LATHE_HAVE_MPI
    int slot = 0;
    while (slot < LATHE_DIST_MAX_PENDING && pending_on[slot]) slot++;
    if (slot == LATHE_DIST_MAX_PENDING) {
        lt_errf(err, errlen, "all-gather: more than %d under way", LATHE_DIST_MAX_PENDING);
        return -1;
    }
    int rc = MPI_Type_contiguous((int)nbytes, MPI_BYTE, &pending_type[slot]);
    if (rc == MPI_SUCCESS && (rc = MPI_Type_commit(&pending_type[slot])) == MPI_SUCCESS) {
        rc = MPI_Iallgather(send, 1, pending_type[slot], recv, 1, pending_type[slot], dist.comm, &pending[slot]);
        if (rc != MPI_SUCCESS) MPI_Type_free(&pending_type[slot]);
    }
    if (rc != MPI_SUCCESS)
        return mpi_fail(rc, err, errlen, "all-gather of blocks of %zu bytes (rank %d of %d)", nbytes, dist.rank,
                        dist.size);
    pending_on[slot] = true;
    npending++;
    *req = slot;
#endif
    return 0;
}

int lathe_dist_wait(int req, char *err, size_t errlen) {
    if (req < 0 || req >= LATHE_DIST_MAX_PENDING || !pending_on[req]) return 0;
#ifdef LATHE_HAVE_MPI
    int rc = MPI_Wait(&pending[req], MPI_STATUS_IGNORE);
    MPI_Type_free(&pending_type[req]);
    pending_on[req] = false;
    npending--;
    if (rc != MPI_SUCCESS) return mpi_fail(rc, err, errlen, "all-gather (rank %d of %d)", dist.rank, dist.size);
#else
    (void)err, (void)errlen;
#endif
    return 0;
}

void lathe_dist_progress(void) {
#ifdef LATHE_HAVE_MPI
    if (npending == 0) return;
    for (int i = 0; i < LATHE_DIST_MAX_PENDING; i++)
        if (pending_on[i] && pending[i] != MPI_REQUEST_NULL) { /* MPI_Test nulls a finished one; its wait then returns */
            int done = 0;
            MPI_Test(&pending[i], &done, MPI_STATUS_IGNORE);
            return;
        }
#endif
}

int lathe_dist_allgatherv(const void *send, size_t nbytes, void **recv, size_t *counts, char *err, size_t errlen) {
    if (!recv || !counts) {
        lt_errf(err, errlen, "all-gather: NULL %s", !recv ? "recv" : "counts");
        return -1;
    }
    *recv = NULL;
    if (!dist.up) return not_initialized("all-gather", err, errlen);
    if (nbytes && !send) {
        lt_errf(err, errlen, "all-gather: NULL buffer for a block of %zu bytes", nbytes);
        return -1;
    }
    if (!dist.mpi) {
        if (nbytes > INT_MAX) {  /* as with MPI, so that the limit does not depend on the run */
            lt_errf(err, errlen, "all-gather: blocks totalling %zu bytes, more than INT_MAX", nbytes);
            return -1;
        }
        if (!(*recv = malloc(nbytes ? nbytes : 1))) {
            lt_errf(err, errlen, "all-gather: out of memory for %zu bytes", nbytes);
            return -1;
        }
        if (nbytes) memcpy(*recv, send, nbytes);
        counts[0] = nbytes;
        return 0;
    }
#ifdef LATHE_HAVE_MPI
    /* the sizes first, so that every rank knows the total and the offsets */
    size_t p = (size_t)dist.size;
    uint64_t mine = nbytes, total = 0, *all = malloc(p * sizeof *all);
    int *cnt = malloc(p * sizeof *cnt), *displ = malloc(p * sizeof *displ);
    char *out = NULL;
    int status = 0;
    if (!all || !cnt || !displ) {
        lt_errf(err, errlen, "all-gather: out of memory for the sizes of %zu blocks", p);
        status = -1;
        goto done;
    }
    int rc = MPI_Allgather(&mine, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, dist.comm);
    if (rc != MPI_SUCCESS) {
        status = mpi_fail(rc, err, errlen, "all-gather of the block sizes (rank %d of %d)", dist.rank, dist.size);
        goto done;
    }
    for (size_t r = 0; r < p; r++) {
        if (all[r] > (uint64_t)INT_MAX - total) {
            lt_errf(err, errlen, "all-gather: blocks totalling more than INT_MAX bytes (rank %zu gives %" PRIu64 ")",
                    r, all[r]);
            status = -1;
            goto done;
        }
        displ[r] = (int)total;
        cnt[r] = (int)all[r];
        total += all[r];
    }
    if (!(out = malloc(total ? total : 1))) {
        lt_errf(err, errlen, "all-gather: out of memory for %" PRIu64 " bytes", total);
        status = -1;
        goto done;
    }
    static const char none;  /* a buffer for 0 bytes: send may be NULL */
    rc = MPI_Allgatherv(nbytes ? send : &none, (int)nbytes, MPI_BYTE, out, cnt, displ, MPI_BYTE, dist.comm);
    if (rc != MPI_SUCCESS) {
        free(out);
        status = mpi_fail(rc, err, errlen, "all-gather of %" PRIu64 " bytes (rank %d of %d)", total, dist.rank,
                          dist.size);
        goto done;
    }
    for (size_t r = 0; r < p; r++) counts[r] = all[r];
    *recv = out;
done:
    free(all);
    free(cnt);
    free(displ);
    return status;
#else
    return 0;
#endif
}

int lathe_dist_broadcast(void *buf, size_t nbytes, int root, char *err, size_t errlen) {
    if (!dist.up) return not_initialized("broadcast", err, errlen);
    if (root < 0 || root >= dist.size) {
        lt_errf(err, errlen, "broadcast: root %d is not a rank (0 to %d)", root, dist.size - 1);
        return -1;
    }
    if (nbytes && !buf) {
        lt_errf(err, errlen, "broadcast: NULL buffer of %zu bytes", nbytes);
        return -1;
    }
    if (!dist.mpi || nbytes == 0) return 0;  /* root's bytes are already here */
#ifdef LATHE_HAVE_MPI
    for (size_t at = 0; at < nbytes;) {
        int k = nbytes - at > INT_MAX ? INT_MAX : (int)(nbytes - at);
        int rc = MPI_Bcast((char *)buf + at, k, MPI_BYTE, root, dist.comm);
        if (rc != MPI_SUCCESS)
            return mpi_fail(rc, err, errlen, "broadcast of %zu bytes from rank %d (rank %d of %d)", nbytes, root,
                            dist.rank, dist.size);
        at += (size_t)k;
    }
#endif
    return 0;
}

int lathe_dist_barrier(char *err, size_t errlen) {
    if (!dist.up) return not_initialized("barrier", err, errlen);
#ifdef LATHE_HAVE_MPI
    if (dist.mpi) {
        int rc = MPI_Barrier(dist.comm);
        if (rc != MPI_SUCCESS)
            return mpi_fail(rc, err, errlen, "barrier (rank %d of %d)", dist.rank, dist.size);
    }
#endif
    return 0;
}

void lathe_dist_abort(int status, const char *fmt, ...) {
    if (status == 0) status = 1;
    fprintf(stderr, "lathe: rank %d of %d: ", dist.rank, dist.size);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    fflush(stdout);
#ifdef LATHE_HAVE_MPI
    if (dist.mpi) MPI_Abort(dist.comm, status);
#endif
    exit(status);
}
