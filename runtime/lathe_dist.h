/* lathe_dist.h - the processes of a data-parallel run: which one this is,
 * how many there are, and the collectives a trainer needs to shard a global
 * batch and sum its gradients (dist.c).
 *
 * Worked example: three processes started by `mpirun -np 3 ./train`, each
 * with its own gradient, all end with the sum (and rank 0's seed):
 *
 *     char err[512];
 *     if (lathe_dist_init(err, sizeof err) != 0) {   // built without MPI but
 *         fprintf(stderr, "%s\n", err);              // under mpirun -np 3: says
 *         return 1;                                  // so, and how to rebuild
 *     }
 *     int rank = lathe_dist_rank(), size = lathe_dist_size();   // 0..2, 3
 *     float grad[2] = {rank, 10 * rank};                        // rank 2: {2, 20}
 *     if (lathe_dist_allreduce_sum(grad, 2, LATHE_RT_F32, err, sizeof err) != 0)
 *         lathe_dist_abort(1, "%s", err);            // every rank: {3, 30}
 *     uint64_t seed = rank == 0 ? 42 : 0;
 *     if (lathe_dist_broadcast(&seed, sizeof seed, 0, err, sizeof err) != 0)
 *         lathe_dist_abort(1, "%s", err);            // every rank: 42
 *     int32_t mine = 100 + rank, all[3];
 *     if (lathe_dist_allgather(&mine, sizeof mine, all, err, sizeof err) != 0)
 *         lathe_dist_abort(1, "%s", err);            // every rank: {100, 101, 102}
 *     ...
 *     if (lathe_dist_finalize(err, sizeof err) != 0) { fprintf(stderr, "%s\n", err); return 1; }
 *     return 0;
 *
 * The same program started on its own is one process (rank 0, size 1), and
 * every collective is a copy: a trainer needs no second code path.
 *
 * Builds.  With MPI (meson's `mpi` feature, on when Open MPI's development
 * files are found, -Dmpi=disabled to leave it out) the processes are MPI's
 * ranks; lathe_dist_have_mpi says which build this is.  Without MPI there is
 * only ever one process, and lathe_dist_init refuses to run under a launcher
 * that started several (each would train alone, on the whole data).
 * lathe_dist_init uses MPI only when the environment shows a launcher (or the
 * program initialized MPI itself): a trainer run on its own starts no MPI
 * runtime.
 *
 * State.  MPI's state belongs to the process, so this layer's is global too:
 * one initialization per process, shared by every caller, used from one
 * thread at a time (the thread that called lathe_dist_init; MPI is set up
 * as MPI_THREAD_FUNNELED, so OpenMP regions must not call in here).  This
 * layer communicates on its own duplicate of MPI_COMM_WORLD, which returns
 * errors (MPI_ERRORS_RETURN) instead of aborting.
 *
 * Errors are return values: 0, or -1 with a message in err (errlen bytes,
 * cut to fit; err may be NULL).  Nothing here exits or aborts but
 * lathe_dist_abort.  Collectives must be called by every process, in the same
 * order, with matching arguments (the same nbytes for lathe_dist_allgather and
 * lathe_dist_broadcast, the same n, dtype and root); a mismatch is MPI's
 * undefined behaviour - an error on some ranks at best, a hang at worst.
 * A collective that failed may have completed on other ranks, or left them
 * waiting in it: after a failure, report it and call lathe_dist_abort (or
 * exit with a non-zero status: mpirun then ends the others, see below)
 * rather than carry on.
 *
 * When a process dies.  Under Open MPI 4.1's mpirun, when one process is
 * killed (even by SIGKILL), exits with a non-zero status, or exits with 0
 * without lathe_dist_finalize, mpirun kills the others (SIGTERM, then
 * SIGKILL about a second later, so a SIGTERM handler cannot hold the end
 * off) and exits with that process's status and a message naming its rank;
 * here they were all gone within 1.5 s (2.5 s with a SIGTERM handler), over
 * shared memory and TCP alike.  The survivors get no error from the
 * collective they wait in: they are killed in it, so MPI_ERRORS_RETURN does
 * not help here - it turns a bad argument or a broken message into a
 * status.  lathe_dist_abort ends the whole job in about half a second (its
 * message is printed before MPI_Abort; mpirun's own banner after it is lost
 * now and then).  This rests on mpirun's orte_abort_on_non_zero_status,
 * on by default: with it off (--mca, OMPI_MCA_ or an MCA parameter file),
 * the others wait forever even for a killed process, and only
 * lathe_dist_abort still ends the run.  No launcher notices a process that
 * hangs without dying (a deadlock, a stopped process): the others wait for
 * it.  mpirun itself killed by SIGKILL: the processes end within about 3 s.
 *
 * CPU binding.  Open MPI 4.1's mpirun binds each process to one core when it
 * starts at most 2 (to a socket or NUMA domain above that), and the threads
 * of a trainer's OpenMP kernels share that core; `mpirun --bind-to none`, or
 * --map-by with PE=N, gives a process more. */
#ifndef LATHE_DIST_H
#define LATHE_DIST_H

#include <stdbool.h>
#include <stddef.h>

#include "lathe_runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Whether this runtime was built with MPI (meson's `mpi` feature). */
bool lathe_dist_have_mpi(void);

/* Whether the environment shows that an MPI launcher started this process
 * (mpirun/mpiexec of Open MPI, MPICH or Intel MPI, or srun with PMI or PMIx:
 * OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMI_RANK or PMIX_RANK is set), whatever
 * the number of processes it started.  Needs no lathe_dist_init. */
bool lathe_dist_launched(void);

/* How many processes the environment says a launcher started (0: no
 * launcher; 1 when a launcher does not say how many, at least 2 when only a
 * rank above 0 shows it), with words saying so in words (len bytes, may be
 * NULL): "2 processes (OMPI_COMM_WORLD_SIZE=2)".  Needs no lathe_dist_init
 * and does not link MPI: trainers call it to refuse what they cannot do yet. */
int lathe_dist_announced(char *words, size_t len);

/* Set up this process's part in the run.  Idempotent: after a success,
 * further calls return 0 and change nothing; after a failure, it may be
 * called again.
 *   - With MPI, when a launcher started this process: initializes MPI
 *     (MPI_Init_thread, MPI_THREAD_FUNNELED) unless the program already did,
 *     and takes a duplicate of MPI_COMM_WORLD with MPI_ERRORS_RETURN.  Fails
 *     when MPI was finalized already (MPI cannot start twice), or when the
 *     launcher announced more processes than MPI sees (an mpirun of another
 *     MPI than this trainer's, whose processes would each train alone).
 *     Open MPI ends the process itself, with its own message, when
 *     MPI_Init fails.
 *   - Without MPI, or with it but no launcher: one process.  Fails, with a
 *     message saying the trainer was built without MPI and how to rebuild
 *     it, when a launcher started more than one process. */
int lathe_dist_init(char *err, size_t errlen);

/* This process's rank, 0 to lathe_dist_size() - 1; 0 before lathe_dist_init,
 * after a failed one and after lathe_dist_finalize. */
int lathe_dist_rank(void);

/* The number of processes; 1 before lathe_dist_init, after a failed one and
 * after lathe_dist_finalize. */
int lathe_dist_size(void);

/* Sum n elements of buf (F32, F64 or I64 - the runtime's dtypes of
 * parameters and gradients) over every process, in place: afterwards every
 * process holds the same sums.  The order in which MPI adds the
 * floating-point terms is its own (the same on every rank of one run, not
 * fixed across process counts); signed overflow is undefined, as in C.
 * Any n (MPI's int counts are split into pieces); n 0 does nothing. */
int lathe_dist_allreduce_sum(void *buf, size_t n, lathe_rt_dtype dtype, char *err, size_t errlen);

/* Gather every process's nbytes bytes from send into recv, which holds
 * lathe_dist_size() * nbytes bytes: rank r's block at r * nbytes.  Every
 * process passes the same nbytes (at most INT_MAX); nbytes 0 does nothing.
 * send and recv must not overlap. */
int lathe_dist_allgather(const void *send, size_t nbytes, void *recv, char *err, size_t errlen);

/* lathe_dist_allgather started, not waited for (MPI_Iallgather): *req
 * names it for lathe_dist_wait, which must come before recv is read or send
 * written.  At most LATHE_DIST_MAX_PENDING may be under way at once. */
enum { LATHE_DIST_MAX_PENDING = 256 };
int lathe_dist_iallgather(const void *send, size_t nbytes, void *recv, int *req, char *err, size_t errlen);

/* Wait for the all-gather req of lathe_dist_iallgather (a req of -1, or of
 * one already waited for: nothing to do). */
int lathe_dist_wait(int req, char *err, size_t errlen);

/* Let the all-gathers under way advance (MPI progresses them only inside
 * its calls): a test of the oldest.  Cheap when none is. */
void lathe_dist_progress(void);

/* lathe_dist_allgather for blocks of different sizes: each process gives
 * its own nbytes.  On success counts (lathe_dist_size() entries) holds each
 * rank's nbytes and *recv a buffer of malloc (at least 1 byte, the caller
 * frees it) with the blocks one after another in rank order; on failure
 * *recv is NULL.  The blocks may total at most INT_MAX bytes (every rank
 * refuses a larger total alike). */
int lathe_dist_allgatherv(const void *send, size_t nbytes, void **recv, size_t *counts, char *err, size_t errlen);

/* Copy nbytes of buf on process root into buf on every other process.
 * Every process passes the same nbytes and root (0 to lathe_dist_size() - 1;
 * any other root is refused on every rank alike). */
int lathe_dist_broadcast(void *buf, size_t nbytes, int root, char *err, size_t errlen);

/* Return once every process has called it. */
int lathe_dist_barrier(char *err, size_t errlen);

/* End the whole run: print "lathe: rank R of P: " and the printf of fmt to
 * standard error, then make every process exit - MPI_Abort with status (1
 * when status is 0) under MPI, which mpirun reports and exits with; exit
 * with status otherwise.  For an error one process cannot recover from
 * while the others may be waiting for it in a collective.  Before
 * lathe_dist_init, or under a launcher without MPI, ends this process only
 * (mpirun then ends the others, as for any process that exits non-zero). */
void lathe_dist_abort(int status, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));

/* End this process's part: frees the communicator, and finalizes MPI when
 * lathe_dist_init initialized it (a program that initialized MPI itself
 * finalizes it itself).  Call it once every process is done, before a
 * normal exit: Open MPI's mpirun counts a process that exits without it as
 * failed and ends the others.  Collective under MPI (every process calls
 * it).  Not on an error path: MPI_Finalize may wait for processes that are
 * blocked elsewhere - exit non-zero or call lathe_dist_abort instead.  Does
 * nothing when not initialized.  Afterwards rank and size are 0 and 1, and
 * with MPI lathe_dist_init fails (MPI starts once per process). */
int lathe_dist_finalize(char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
