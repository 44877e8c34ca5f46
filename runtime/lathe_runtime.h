/* lathe_runtime.h - the runtime that runs compiled programs, and the table
 * of their named tensors.
 *
 * The runtime depends on neither the IR nor LLVM: a compiled program is
 * plain data - kernel functions in order, each with the size of its parallel
 * range, the copies that apply state updates after the kernels, one arena
 * holding every tensor at an offset planned at compile time, and a table
 * naming the tensors in it (lathe_rt_tensor).  The JIT (compiler/jit.c) fills
 * this in from ORC; a native trainer's generated C holds it as constant data
 * beside its linked object (compiler/aot.c, runtime/trainer.c).  Running a
 * program allocates nothing.  The executor is executor.c; the dtypes and
 * the tensor table are tensors.c. */
#ifndef LATHE_RUNTIME_H
#define LATHE_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The element types of every tensor in the runtime: program tensors,
 * safetensors files, datasets and checkpoints.  The first four are
 * numbered as lathe_dtype (ir/lathe.h), so the compiler stores a node's
 * dtype here as it is; the runtime does not include the IR, so the compiler
 * asserts that they agree.  BOOL is one byte (C's bool), 0 or 1.  U8 and
 * I32 are storage types only, of data on disk (image pixels, token ids):
 * safetensors files and datasets hold them, programs never do (the IR has
 * no such dtype), and a dataset converts them into an input's dtype as it
 * gathers a batch (dataset.h, lathe_ds_gather_input). */
typedef enum {
    LATHE_RT_F32, LATHE_RT_F64, LATHE_RT_I64, LATHE_RT_BOOL,
    LATHE_RT_U8, LATHE_RT_I32,
} lathe_rt_dtype;
#define LATHE_RT_NDTYPES (LATHE_RT_I32 + 1)   /* how many there are */

/* The input of a data-parallel program that holds the process's rank,
 * i64[1] (the IR's LATHE_RANK_NAME): whoever runs the program sets it; 0,
 * the arena's initial value, in one process. */
#define LATHE_RT_RANK_NAME "lathe.rank"

/* Bytes per element (4, 8, 8, 1, 1, 4); 0 for anything else. */
size_t lathe_rt_dtype_size(lathe_rt_dtype dtype);

/* "f32", "f64", "i64", "bool" (lathe_dtype's names), "u8", "i32"; "?" for
 * anything else.  Static storage. */
const char *lathe_rt_dtype_name(lathe_rt_dtype dtype);

/* A kernel computes the elements of its output whose leading flattened
 * index lies in [begin, end). */
typedef void (*lathe_kernel_fn)(uint8_t *arena, int64_t begin, int64_t end);

typedef struct {
    lathe_kernel_fn fn;
    int64_t range;       /* the kernel's parallel range is [0, range) */
} lathe_rt_kernel;

typedef struct {
    int64_t src, dst, bytes; /* arena offsets: after the kernels, dst takes src */
} lathe_rt_copy;

/* Bytes of executor state in the arena of a program of nkernels kernels
 * (at its sync_offset): which chunks of each kernel are taken and done, and
 * the run times that choose the thread count (executor.c). */
int64_t lathe_rt_sync_bytes(int nkernels);

/* A data-parallel program's communication step (docs/INTERNALS.md): an
 * all-gather across the processes of the run.  Each process holds `outer`
 * blocks of `bytes` bytes at src; dst receives outer runs of `parts` blocks,
 * the processes' blocks in rank order within each run (the IR's all_gather
 * along an axis: outer is the product of the dims before it).  It starts in
 * place of kernel `kernel` and is complete before kernel `wait`, the first
 * that reads dst (both kernels' fn NULL): the kernels between run while it
 * is under way, and nothing between writes src or reads dst. */
typedef struct {
    int kernel, wait;    /* the kernels it stands for (their fn is NULL) */
    int64_t src, dst;    /* arena offsets */
    int64_t outer, bytes;
    int parts;           /* the processes: the program was compiled for this many */
} lathe_rt_gather;

/* How the processes of a run talk: set by whoever runs a program with
 * communication steps (the trainer, with runtime/lathe_dist.h).  Each call
 * returns 0, or nonzero with a message in err.  all_gather does step i of
 * the program's gathers at once (arguments as lathe_rt_gather's, parts
 * checked by the caller against the run's size).  start, when set, only
 * starts it (non-blocking), finish completes it, and progress (optional)
 * lets the ones under way advance: the executor calls it between kernels
 * while any is. */
typedef struct lathe_rt_comm {
    int (*all_gather)(struct lathe_rt_comm *c, int i, const uint8_t *src, uint8_t *dst, int64_t outer, int64_t bytes,
                      int parts);
    int (*start)(struct lathe_rt_comm *c, int i, const uint8_t *src, uint8_t *dst, int64_t outer, int64_t bytes, int parts);
    int (*finish)(struct lathe_rt_comm *c, int i);
    void (*progress)(struct lathe_rt_comm *c);
    void *ctx;
    char err[256];
} lathe_rt_comm;

typedef struct {
    uint8_t *arena;      /* 64-byte aligned, arena_size bytes */
    int64_t arena_size;
    const lathe_rt_kernel *kernels;
    int nkernels;
    const lathe_rt_copy *copies;
    int ncopies;
    /* arena offset of the executor's state (lathe_rt_sync_bytes), which the
     * compiler reserves after everything else; 0: none, and the kernels run
     * on the calling thread alone */
    int64_t sync_offset;
    /* false (the default): kernels run with flush-to-zero and
     * denormals-are-zero, results below the smallest normal number are zero
     * and much faster (see runtime/fpenv.h); true: IEEE denormals */
    bool ieee_denormals;
    /* the communication steps, in kernel order (none: a program for one
     * process), and how to do them (NULL: only steps of one part, copies) */
    const lathe_rt_gather *gathers;
    int ngathers;
    lathe_rt_comm *comm;
} lathe_rt_program;

/* Run every kernel in order on up to `threads` threads (0: OpenMP's
 * default), then the copies.  Each kernel's range is split into chunks that
 * the threads take as they come free, a kernel's chunks only once the kernel
 * before is complete; every element is computed by one thread in a fixed
 * order, so the results are the same bits for any thread count.  The first
 * runs of a program use all the threads; later ones time themselves and
 * run on one thread instead while that is faster (another process busy on
 * the machine), trying all of them again now and then (executor.c).  The
 * calling thread's floating-point environment is the same afterwards. */
/* A communication step runs on the calling thread (MPI's FUNNELED level)
 * once the kernel before it is complete; the kernels after it wait for it.
 * Returns 0, or -1 when a communication step failed (its message in
 * p->comm->err, or a step for several processes and no comm): the results
 * are then not to be used. */
int lathe_rt_run(const lathe_rt_program *p, int threads);

/* A zeroed, 64-byte aligned arena of at least size bytes; free with
 * lathe_rt_free_arena.  NULL when out of memory. */
uint8_t *lathe_rt_alloc_arena(int64_t size);
void lathe_rt_free_arena(uint8_t *arena);

/* ---- the tensor table ----------------------------------------------------------- */

/* A compiled program describes its tensors as plain data (lathe_rt_tensor):
 * name (PyTorch state_dict names: "conv1.weight", "bn1.running_mean"), kind,
 * dtype, shape, where it lives in the arena, whether it requires grad, where
 * its gradient is, and how PyTorch would initialize it.  The functions here,
 * the optimizers (lathe_optim.h) and checkpoints (lathe_checkpoint.h) work on
 * that table, so a JIT program and a native trainer share them. */

/* The most dims a program tensor has: the IR's LATHE_MAX_RANK (the compiler
 * asserts that they are equal). */
enum { LATHE_RT_MAX_RANK = 6 };

typedef enum { LATHE_RT_INPUT, LATHE_RT_PARAM, LATHE_RT_BUFFER, LATHE_RT_OUTPUT } lathe_rt_kind;

/* How PyTorch initializes a tensor by default. */
typedef enum {
    LATHE_INIT_NONE,     /* left as it is (inputs, outputs) */
    LATHE_INIT_UNIFORM,  /* uniform(-a, a): conv/linear weights (kaiming-uniform, a = sqrt(5)) and biases */
    LATHE_INIT_CONST,    /* every element a: batch-norm weight 1, bias 0, running_var 1, running_mean 0 */
    LATHE_INIT_NORMAL,   /* normal(0, a): embedding weights (a = 1) */
    LATHE_INIT_SEED,     /* an i64 generator state (seed, 0, ...): the seed of lathe_rt_init, then zeros */
} lathe_init_kind;

typedef struct {
    const char *name;
    lathe_rt_kind kind;
    lathe_rt_dtype dtype;
    int rank;
    int64_t shape[LATHE_RT_MAX_RANK];   /* dims shape[0..rank) */
    int64_t numel;
    int64_t offset;        /* in the arena */
    bool requires_grad;    /* params: trainable; false: frozen */
    int64_t grad_offset;   /* params that get a gradient: its arena offset; else -1 */
    lathe_init_kind init;
    double init_a;
    int64_t index_limit;   /* i64 inputs that hold class or row indices: values must lie in [0, index_limit); 0: any */
    int64_t index_ignore;  /* with index_limit: one more value allowed (a loss's ignore_index); INT64_MIN
                            * or any value in [0, index_limit): none */
} lathe_rt_tensor;

/* The tensor named name (outputs included), or NULL. */
const lathe_rt_tensor *lathe_rt_find(const lathe_rt_tensor *ts, int n, const char *name);

/* Whether every input with an index_limit holds values in [0, limit) or
 * equal to its index_ignore, as a loss or an index_select that indexes with
 * them needs (out of range, a loss and its gradient would silently
 * disagree, a lookup would read another row): 0, or -1 with a message
 * naming the input, the element and the value.  Every path that runs a program calls
 * it on the inputs it was given (lathe_program_run, trainers, TRAINER
 * step). */
int lathe_rt_check_indices(const uint8_t *arena, const lathe_rt_tensor *ts, int n, char *err, size_t errlen);

/* Initialize every parameter and buffer as PyTorch's layers do by default,
 * from a seeded generator: the same seed gives the same bits, and a tensor's
 * values depend only on the seed and its name. */
void lathe_rt_init(uint8_t *arena, const lathe_rt_tensor *ts, int n, uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif
