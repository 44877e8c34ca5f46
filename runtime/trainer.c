/* trainer.c - the training driver of native trainers and `lathe train`: the
 * command line, datasets fitted to the model's inputs, the training loop
 * with progress, evaluation, checkpoints that resume bit-exactly, and
 * `lathe step`.
 *
 * Resuming: a checkpoint written here holds, besides the parameters,
 * buffers and optimizer state (checkpoint.c), the run's position: the
 * optimizer's step count is the number of batches trained, and the metadata
 * "trainer.seed", "trainer.shuffle", "trainer.batch" and "trainer.samples"
 * fix the data order (the shuffle of epoch e is lathe_ds_permutation(seed,
 * e)).  --epochs and --steps are totals, so a run stopped at any step and
 * resumed with the same flags ends with the same bits as one that was never
 * stopped. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <omp.h>

#include "dataset.h"
#include "lathe_checkpoint.h"
#include "lathe_dist.h"
#include "lathe_trainer.h"
#include "safetensors.h"
#include "splitmix.h"

#define MAX_THREADS 1024   /* --threads above this is refused as a mistake */

typedef struct {
    const char *data, *eval_data, *load, *save;
    bool eval, shuffle, strict, nesterov, epochs_given;
    int64_t epochs, steps, batch, save_every, log_every;
    uint64_t seed;
    bool seed_given;
    int threads;
    bool ieee_denormals;  /* --ieee-denormals: kernels and optimizer keep IEEE denormals */
    bool no_decay_1d;     /* --no-decay-norm-bias */
    lathe_optim_config opt;
    lathe_lr_schedule sched;  /* --lr-schedule, --warmup */
    double clip_norm, clip_value; /* --clip-grad-norm, --clip-grad-value; 0: none */
    int64_t accumulate;       /* --accumulate K: micro-batches per step (1: none) */
    const char *log_file;     /* --log-file: a JSON line per step and per evaluation */
    const char *normalize;    /* --normalize SPEC, parsed into norm */
    lathe_ds_normalize norm;  /* of the image input, training and evaluation data */
    int64_t crop_pad;         /* --random-crop PAD (0: none), training data */
    bool hflip;               /* --hflip, training data */
    bool no_overlap;          /* --no-overlap: each all-gather at once, where it starts */
    const char *optimizer;
    double lr, momentum, weight_decay;
    bool lr_given, momentum_given, wd_given;
} flags;

/* An arena and the program running in it. */
typedef struct {
    const lathe_rt_compiled *c;
    lathe_rt_program prog;
    uint8_t *owned;
} runner;

/* The signal that asked the run to stop (SIGINT, SIGTERM or SIGHUP), or 0. */
static volatile sig_atomic_t interrupted;
static void on_stop_signal(int sig) { interrupted = sig; }

/* What stops a run the way Ctrl-C does: what schedulers, timeout(1),
 * systemd and a closed terminal send. */
static const int stop_signals[] = {SIGINT, SIGTERM, SIGHUP};
enum { NSTOP = (int)(sizeof stop_signals / sizeof stop_signals[0]) };

static const char *signal_name(int sig) {
    return sig == SIGINT ? "SIGINT (Ctrl-C)" : sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : "a signal";
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void fail(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(const char *prog, const char *fmt, ...) {
    char msg[16384]; /* one write: the processes of a run share a terminal */
    int k = snprintf(msg, sizeof msg, "%s: ", prog);
    va_list ap;
    va_start(ap, fmt);
    if (k >= 0 && k < (int)sizeof msg) vsnprintf(msg + k, sizeof msg - (size_t)k, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", msg);
}

void lathe_trainer_usage(FILE *out, const char *prog) {
    bool cli = !strncmp(prog, "lathe train", 11); /* lathe train prints its own usage line */
    if (!cli) fprintf(out, "usage: %s --data SPEC [options]\n\n", prog);
    fprintf(out,
            "Trains the model: mini-batches of the compiled size in order (or shuffled),\n"
            "forward, backward and an optimizer step each; the last partial batch of an\n"
            "epoch is dropped.  Progress goes to standard error (a bar on a terminal, else\n"
            "a line every --log-every steps), the summary to standard output.\n"
            "\n"
            "data (SPEC): a directory in the MNIST layout (train-images-idx3-ubyte[.gz],\n"
            "  train-labels-idx1-ubyte[.gz], t10k-* for --eval), such as Debian's\n"
            "  /usr/share/datasets/fashion-mnist; IMAGES,LABELS: two IDX files (raw or\n"
            "  gzip), fed to the model's first non-label input and its label input; or a\n"
            "  FILE.safetensors holding one tensor per model input, named after it, samples\n"
            "  along the first axis; or text:FILE, byte-level language modelling for a model\n"
            "  with two inputs i64[N, T]: windows of T + 1 bytes of FILE (tokens 0..255;\n"
            "  a directory: its text files in name order, as /usr/share/games/fortunes),\n"
            "  the first T to the first input and the last T to the second, from the first\n"
            "  90%% of the file (its last 10%% for --eval).  Safetensors data may be stored\n"
            "  as U8 or I32 (pixels, token ids): kept so in memory and converted batch by\n"
            "  batch into what the input takes (u8 to f32 or f64, u8 and i32 to i64).\n"
            "  Unsigned-byte pixels are scaled to [0, 1] (v / 255) unless the description\n"
            "  marks the input raw.\n"
            "\n"
            "options:\n"
            "  --data SPEC            the training set (required)\n"
            "  --eval                 after each epoch (and at the end of a run that stops\n"
            "                         mid-epoch), the loss and accuracy on the test set:\n"
            "                         --eval-data, the t10k files of a --data directory or\n"
            "                         the held-out tail of text:FILE; per-token losses are\n"
            "                         averaged over tokens\n"
            "  --eval-data SPEC       the test set (implies --eval)\n"
            "  --epochs N             train N epochs in all (default 1)\n"
            "  --steps N              stop after N steps in all (batches), even mid-epoch;\n"
            "                         alone, it is not limited by the default --epochs 1\n"
            "  --batch B              %s\n"
            "  --optimizer NAME       sgd (default), adam or adamw\n"
            "  --lr X                 learning rate (default 0.01 for sgd, 0.001 otherwise)\n"
            "  --momentum X           SGD momentum (default 0)\n"
            "  --nesterov             SGD with Nesterov momentum\n"
            "  --lr-schedule SPEC     the learning rate per step, as torch.optim.lr_scheduler's\n"
            "                         stepped once per batch: step:SIZE:GAMMA,\n"
            "                         multistep:M1,M2,...:GAMMA, exponential:GAMMA,\n"
            "                         cosine:T_MAX[:ETA_MIN] (the floor), onecycle:MAX_LR[:PCT]\n"
            "                         (over the run's steps; the learning rate only)\n"
            "  --warmup N[:START]     a linear warm-up over the first N steps from START x\n"
            "                         --lr (default 1/3, torch's LinearLR), then the schedule\n"
            "  --accumulate K         each step averages the gradients of K micro-batches of\n"
            "                         the compiled batch: the batch of K times its size, in\n"
            "                         the same order, with the memory of one micro-batch\n"
            "  --clip-grad-norm X     scale the gradients to a total 2-norm of at most X before\n"
            "                         each step (torch.nn.utils.clip_grad_norm_)\n"
            "  --clip-grad-value X    clamp every gradient element to [-X, X] first\n"
            "                         (clip_grad_value_)\n"
            "  --weight-decay X       L2 penalty (sgd, adam) or decoupled decay (adamw;\n"
            "                         default 0.01 there, else 0)\n"
            "  --no-decay-norm-bias   no weight decay on parameters of rank 0 or 1 (biases,\n"
            "                         normalization weights): the recipes' two groups\n"
            "  --seed N               initialization and shuffling seed (default 0)\n"
            "  --shuffle              a new order of the samples every epoch\n"
            "  --load FILE            start from a checkpoint (or a state_dict file): a\n"
            "                         checkpoint of --save resumes exactly where it stopped,\n"
            "                         data order included\n"
            "  --no-strict            --load: load the tensors that match, report the rest\n"
            "  --save FILE            write a checkpoint (atomically) after every epoch, every\n"
            "                         --save-every steps, at the end and on Ctrl-C, SIGTERM\n"
            "                         or SIGHUP (the step finishes; exit status 128 + signal);\n"
            "                         FILE.lock is held meanwhile, so a second trainer saving\n"
            "                         to FILE is refused\n"
            "  --save-every N         also save every N steps\n"
            "  --threads N            threads (default: all cores; results do not depend on it)\n"
            "  --ieee-denormals       keep IEEE denormal numbers in kernels and the optimizer\n"
            "                         (default: flush-to-zero: values below 1.2e-38 in f32 are\n"
            "                         zero, and steps whose values underflow stay fast)\n"
            "  --log-file FILE        append a JSON line per step (step, epoch, lr, loss,\n"
            "                         samples_per_s) and per evaluation (train_loss, test_loss,\n"
            "                         test_accuracy, test_top5) to FILE; lathe plot FILE draws it\n"
            "  --log-every N          steps between log lines when not on a terminal (default 100;\n"
            "                         0: none)\n"
            "  -h, --help             show this help\n"
            "\n"
            "image data (the image input: the model's first input that is not the label):\n"
            "  --normalize SPEC       torchvision's Normalize after the scaling to [0, 1], on\n"
            "                         training and test data: MEAN,STD for every element, or\n"
            "                         M1,...,MC/S1,...,SC per channel (axis 1 of [N, C, H, W]),\n"
            "                         e.g. 0.485,0.456,0.406/0.229,0.224,0.225\n"
            "  --random-crop PAD      training data: RandomCrop with padding PAD: the image\n"
            "                         (last two axes, H x W) padded with PAD zeros on each side,\n"
            "                         an H x W window at a random offset\n"
            "  --hflip                training data: a left-right flip with probability 0.5\n"
            "                         (crops and flips are drawn from --seed, the epoch and\n"
            "                         the sample: the same for a resumed run, any threads)\n"
            "\n"
            "Started by mpirun -np P (Open MPI), P processes train data-parallel with the\n"
            "bits of one process: --batch stays the global batch, of which each process\n"
            "takes its B/P samples; rank 0 prints, logs and saves.  A native trainer needs\n"
            "a program for P (lathe compile --ranks); lathe train compiles one itself.\n"
            "Each process runs on --threads, by default the cores shared among the\n"
            "processes on its machine.  The gradients' all-gathers run while the earlier\n"
            "layers are differentiated;\n"
            "  --no-overlap           does each all-gather at once, where it starts\n"
            "\n"
            "A native trainer also takes one step and writes its results (loss, outputs,\n"
            "gradients, new parameters): TRAINER step --inputs B.safetensors -o OUT.safetensors\n"
            "[--params P.safetensors] (see lathe step --help); and a language model trained\n"
            "on text:FILE writes text: TRAINER sample --load CK [--length N] [--temperature X]\n"
            "[--top-k K] [--prompt TEXT] [--seed S] (see TRAINER sample --help).\n",
            cli ? "the batch size to compile for (default: the description's)"
                : "must equal the compiled batch size (checked)");
}

static bool parse_num(const char *s, double *out);

/* --lr-schedule SPEC (see the usage) into s; false on a malformed SPEC. */
static bool parse_schedule(const char *spec, lathe_lr_schedule *s) {
    char buf[256], *save = NULL;
    if (strlen(spec) >= sizeof buf) return false;
    strcpy(buf, spec);
    char *kind = strtok_r(buf, ":", &save), *a = strtok_r(NULL, ":", &save), *b = strtok_r(NULL, ":", &save);
    char *extra = strtok_r(NULL, ":", &save), *end;
    lathe_lr_schedule z = {.warmup = s->warmup, .warmup_start = s->warmup_start};
    *s = z;
    if (!kind || extra) return false;
    if (!strcmp(kind, "constant")) return !a;
    if (!strcmp(kind, "step")) {
        s->kind = LATHE_LR_STEP;
        return a && b && (s->step_size = strtoll(a, &end, 10)) > 0 && !*end && parse_num(b, &s->gamma);
    }
    if (!strcmp(kind, "multistep")) {
        s->kind = LATHE_LR_MULTISTEP;
        if (!a || !b || !parse_num(b, &s->gamma)) return false;
        for (char *m = strtok_r(a, ",", &save); m; m = strtok_r(NULL, ",", &save)) {
            if (s->nmilestones == LATHE_LR_MAX_MILESTONES) return false;
            int64_t v = strtoll(m, &end, 10);
            if (*end || v < 0 || (s->nmilestones && v <= s->milestones[s->nmilestones - 1])) return false;
            s->milestones[s->nmilestones++] = v;
        }
        return s->nmilestones > 0;
    }
    if (!strcmp(kind, "exponential")) {
        s->kind = LATHE_LR_EXPONENTIAL;
        return a && !b && parse_num(a, &s->gamma);
    }
    if (!strcmp(kind, "cosine")) {
        s->kind = LATHE_LR_COSINE;
        return a && (s->t_max = strtoll(a, &end, 10)) > 0 && !*end && (!b || parse_num(b, &s->eta_min));
    }
    if (!strcmp(kind, "onecycle")) {
        *s = (lathe_lr_schedule){.kind = LATHE_LR_ONECYCLE, .pct_start = 0.3, .div_factor = 25, .final_div_factor = 1e4};
        return a && parse_num(a, &s->max_lr) && s->max_lr > 0 &&
               (!b || (parse_num(b, &s->pct_start) && s->pct_start > 0 && s->pct_start < 1));
    }
    return false;
}

static bool parse_int(const char *s, int64_t lo, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo) return false;
    *out = v;
    return true;
}

static bool parse_num(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return false;
    *out = v;
    return true;
}

/* The optimizer flags, shared by training and `lathe step`.  1: handled, 0:
 * not an optimizer flag, -1: bad value. */
enum { O_OPTIMIZER = 1000, O_LR, O_MOMENTUM, O_WD, O_NESTEROV, O_THREADS, O_IEEE, O_NO_DECAY };
static int optim_flag(int c, const char *arg, flags *f, const char *prog) {
    const char *name = "--threads";
    switch (c) {
    case O_OPTIMIZER: f->optimizer = arg; return 1;
    case O_LR: f->lr_given = true, name = "--lr"; if (parse_num(arg, &f->lr)) return 1; break;
    case O_MOMENTUM: f->momentum_given = true, name = "--momentum"; if (parse_num(arg, &f->momentum)) return 1; break;
    case O_WD: f->wd_given = true, name = "--weight-decay"; if (parse_num(arg, &f->weight_decay)) return 1; break;
    case O_NESTEROV: f->nesterov = true; return 1;
    case O_IEEE: f->ieee_denormals = true; return 1;
    case O_NO_DECAY: f->no_decay_1d = true; return 1;
    case O_THREADS: {
        int64_t t;
        if (parse_int(arg, 1, &t) && t <= MAX_THREADS) {
            f->threads = (int)t;
            return 1;
        }
        break;
    }
    default: return 0;
    }
    fail(prog, "bad value '%s' for %s", arg, name);
    return -1;
}

static bool make_optim(flags *f, const char *prog) {
    const char *o = f->optimizer ? f->optimizer : "sgd";
    if (!strcmp(o, "sgd")) f->opt = lathe_sgd_config(f->lr_given ? f->lr : 0.01, f->momentum);
    else if (!strcmp(o, "adam")) f->opt = lathe_adam_config(f->lr_given ? f->lr : 1e-3);
    else if (!strcmp(o, "adamw")) f->opt = lathe_adamw_config(f->lr_given ? f->lr : 1e-3);
    else {
        fail(prog, "--optimizer %s: expected sgd, adam or adamw", o);
        return false;
    }
    if (f->opt.kind != LATHE_SGD && (f->momentum_given || f->nesterov)) {
        fail(prog, "--momentum and --nesterov are SGD's; --optimizer %s has betas", o);
        return false;
    }
    f->opt.nesterov = f->nesterov;
    f->opt.ieee_denormals = f->ieee_denormals;
    f->opt.no_decay_1d = f->no_decay_1d;
    if (f->wd_given) f->opt.weight_decay = f->weight_decay;
    const char *bad = f->opt.lr < 0 ? "--lr must be >= 0"
                      : f->opt.momentum < 0 ? "--momentum must be >= 0"
                      : f->opt.weight_decay < 0 ? "--weight-decay must be >= 0"
                      : f->opt.nesterov && f->opt.momentum <= 0 ? "--nesterov needs --momentum > 0"
                      : NULL;
    if (bad) {
        fail(prog, "%s", bad);
        return false;
    }
    return true;
}

static const char *opt_label(const lathe_optim_config *c, char *buf, size_t len) {
    const char *ieee = c->ieee_denormals ? ", ieee denormals" : "";
    const char *groups = c->no_decay_1d ? " (none on biases and norms)" : "";
    if (c->kind == LATHE_SGD)
        snprintf(buf, len, "sgd lr %g momentum %g%s weight decay %g%s%s", c->lr, c->momentum, c->nesterov ? " nesterov" : "",
                 c->weight_decay, groups, ieee);
    else
        snprintf(buf, len, "%s lr %g weight decay %g%s%s", c->kind == LATHE_ADAM ? "adam" : "adamw", c->lr, c->weight_decay,
                 groups, ieee);
    return buf;
}

/* ---- programs ------------------------------------------------------------------------ */

static bool runner_init(runner *r, const lathe_rt_compiled *c, const flags *f, const char *prog) {
    r->c = c;
    r->prog = c->prog;
    r->prog.ieee_denormals = f->ieee_denormals;
    r->owned = NULL;
    if (r->prog.arena) return true;
    if (!(r->owned = lathe_rt_alloc_arena(c->prog.arena_size))) {
        fail(prog, "out of memory for a %lld-byte arena", (long long)c->prog.arena_size);
        return false;
    }
    r->prog.arena = r->owned;
    for (int i = 0; i < c->nconsts; i++) memcpy(r->owned + c->consts[i].offset, c->consts[i].data, (size_t)c->consts[i].bytes);
    return true;
}

static const lathe_rt_tensor *find(const runner *r, const char *name, lathe_rt_kind kind) {
    for (int i = 0; i < r->c->ntensors; i++)
        if (r->c->tensors[i].kind == kind && !strcmp(r->c->tensors[i].name, name)) return &r->c->tensors[i];
    return NULL;
}

static double scalar_at(const uint8_t *arena, const lathe_rt_tensor *t, int64_t i) {
    const uint8_t *p = arena + t->offset;
    switch (t->dtype) {
    case LATHE_RT_F32: return ((const float *)p)[i];
    case LATHE_RT_F64: return ((const double *)p)[i];
    case LATHE_RT_I64: return (double)((const int64_t *)p)[i];
    default: return ((const bool *)p)[i];
    }
}

/* ---- processes ---------------------------------------------------------------------- */

/* The processes of the run (lathe_dist.h): one, or P started by an MPI
 * launcher for data-parallel training (docs/INTERNALS.md), each running the
 * training program compiled for P on its part of every batch.  Every process
 * reads the data and --load, computes the same gradients (the program gathers
 * its batch reductions) and takes the same steps; rank 0 alone prints,
 * writes --log-file and saves. */
typedef struct {
    int procs, rank;
    int64_t local;                    /* samples of each (micro-)batch per process: the batch / procs */
    const lathe_rt_compiled *train;   /* the model's training program, or its ranked program for procs */
    bool mpi;                         /* lathe_dist_init was called: lathe_dist_finalize at the end */
} world;

/* False, with a message, under a launcher that started several processes:
 * `step` and `sample` are one-process tools (each process would write the
 * same files). */
static bool one_process(const char *prog, const char *what) {
    char words[160];
    if (lathe_dist_announced(words, sizeof words) <= 1) return true;
    fail(prog, "an MPI launcher started this program as one of %s, but %s runs as one process (each would do the "
               "same work and write the same files): run it without the launcher; training is what runs on several",
         words, what);
    return false;
}

/* "1 process", "1 and 2 processes", "1, 2 and 3 processes": the process
 * counts m was compiled for (plain: "1,2,3", for --ranks, with extra added
 * in order when it is not there). */
static void ranks_of(const lathe_trainer_model *m, int extra, char *words, size_t wlen, char *plain, size_t plen) {
    size_t kw = (size_t)snprintf(words, wlen, "1"), kp = (size_t)snprintf(plain, plen, "1");
    bool added = extra <= 1;
    for (int i = 0; i <= m->nranked; i++) {
        int p = i < m->nranked ? m->ranked[i].procs : INT_MAX;
        if (!added && extra < p) {
            if (kp < plen) kp += (size_t)snprintf(plain + kp, plen - kp, ",%d", extra);
            added = true;
        }
        if (i == m->nranked) break;
        if (kp < plen) kp += (size_t)snprintf(plain + kp, plen - kp, ",%d", p);
        if (kw < wlen) kw += (size_t)snprintf(words + kw, wlen - kw, i == m->nranked - 1 ? " and %d" : ", %d", p);
    }
    if (kw < wlen) snprintf(words + kw, wlen - kw, m->nranked ? " processes" : " process");
}

/* The training program for P processes, or NULL with a message (on rank 0:
 * every process finds the same). */
static const lathe_rt_compiled *program_for(const lathe_trainer_model *m, int P, bool lead, const char *prog) {
    const char *src = m->info.source ? m->info.source : "MODEL";
    if (m->info.batch % P != 0) {
        if (lead)
            fail(prog, "%d processes do not split %s's batch of %lld evenly: start it on a process count that divides "
                       "it", P, m->info.name, (long long)m->info.batch);
        return NULL;
    }
    if (m->shards > 1 && m->shards % P != 0) {
        char have[256], want[256];
        ranks_of(m, P, have, sizeof have, want, sizeof want);
        if (lead)
            fail(prog, "%s's batch reductions are ordered sums of %d shards, which %d processes do not divide: start "
                       "it on a process count that divides %d, or compile it for %d with lathe compile %s -o TRAINER "
                       "--ranks %s --shards S, S a multiple of every count that divides the batch of %lld",
                 m->info.name, m->shards, P, m->shards, P, src, want, (long long)m->info.batch);
        return NULL;
    }
    for (int i = 0; i < m->nranked; i++)
        if (m->ranked[i].procs == P) return &m->ranked[i].train;
    char have[256], want[256];
    ranks_of(m, P, have, sizeof have, want, sizeof want);
    if (lead)
        fail(prog, "%s was compiled for %s, and this run has %d: compile it for them with lathe compile %s -o TRAINER "
                   "--ranks %s (the process counts it will run on), or train it with lathe train, which compiles for "
                   "the processes it is started on", m->info.name, have, P, src, want);
    return NULL;
}

/* Join the run: one process, or (when a launcher started several) MPI's
 * rank and size and the program compiled for them.  0, or the exit status
 * with a message (every process fails alike). */
static int join_run(const lathe_trainer_model *m, world *w, const char *prog) {
    *w = (world){.procs = 1, .local = m->info.batch, .train = &m->train};
    char words[160], err[512];
    if (lathe_dist_announced(words, sizeof words) <= 1) return 0;  /* mpirun -np 1 included: no MPI */
    if (lathe_dist_init(err, sizeof err) != 0) {
        fail(prog, "%s", err);
        return 1;
    }
    w->mpi = true;
    w->procs = lathe_dist_size();
    w->rank = lathe_dist_rank();
    if (w->procs == 1) return 0;
    if (!(w->train = program_for(m, w->procs, w->rank == 0, prog))) return 1;
    w->local = m->info.batch / w->procs;
    return 0;
}

/* The threads of each process: --threads, else (on several processes) the
 * cores this process may use shared among the processes on this machine
 * (Open MPI's OMPI_COMM_WORLD_LOCAL_SIZE; the whole run when it does not
 * say), at least one: two processes of two threads each on two cores would
 * take turns.  Every parallel part of the trainer (the programs, the
 * optimizer) then runs on them. */
static void choose_threads(flags *f, const world *w) {
    if (f->threads == 0 && w->procs > 1) {
        const char *ls = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
        long local = ls ? strtol(ls, NULL, 10) : w->procs;
        if (local < 1) local = w->procs;
        long t = omp_get_num_procs() / local;
        f->threads = t >= 1 ? (int)t : 1;
    }
    if (f->threads > 0) omp_set_num_threads(f->threads);
}

/* Whether every process is ready (ok on each): on several, an all-reduce
 * of the failures, so that all go on or all stop together (one that stopped
 * alone would leave the others waiting in their first all-gather).  The
 * process that failed said why; rank 0 says how many did. */
static bool all_ready(const world *w, bool ok, const char *prog) {
    if (w->procs == 1) return ok;
    int64_t failed = !ok;
    char err[512];
    if (lathe_dist_allreduce_sum(&failed, 1, LATHE_RT_I64, err, sizeof err) != 0) lathe_dist_abort(1, "%s", err);
    if (failed && ok && w->rank == 0)
        fail(prog, "%lld of the %d processes could not start (their messages are above): stopping", (long long)failed,
             w->procs);
    return failed == 0;
}

/* The communication steps of a data-parallel program (lathe_rt_comm)
 * through lathe_dist_allgather, or lathe_dist_iallgather and
 * lathe_dist_wait when they overlap the kernels (the default; --no-overlap:
 * each at once where it starts).  Each process holds [outer][bytes] at src
 * and dst takes [outer][parts][bytes]; MPI gathers [parts][outer * bytes],
 * so a step with outer > 1, or whose src and dst overlap (MPI forbids it),
 * is gathered into its own part of a scratch allocated before training, and
 * rearranged from there once complete. */
typedef struct {
    lathe_rt_comm comm;
    const lathe_rt_program *p;
    uint8_t *scratch;
    size_t cap;
    size_t *at;       /* per step: its part of scratch, or SIZE_MAX: straight into dst */
    int *req;         /* per step under way: lathe_dist_iallgather's */
} gatherer;

static size_t block_of(const lathe_rt_gather *s) { return (size_t)(s->outer * s->bytes); }

/* Step i's blocks from its scratch into dst. */
static void rearrange(gatherer *g, int i) {
    const lathe_rt_gather *s = &g->p->gathers[i];
    if (g->at[i] == SIZE_MAX) return;
    uint8_t *dst = g->p->arena + s->dst, *sc = g->scratch + g->at[i];
    size_t n = (size_t)s->bytes;
    for (int64_t o = 0; o < s->outer; o++)
        for (int q = 0; q < s->parts; q++)
            memcpy(dst + ((size_t)o * (size_t)s->parts + (size_t)q) * n, sc + ((size_t)q * (size_t)s->outer + (size_t)o) * n, n);
}

static int all_gather(lathe_rt_comm *c, int i, const uint8_t *src, uint8_t *dst, int64_t outer, int64_t bytes,
                      int parts) {
    gatherer *g = c->ctx;
    (void)outer, (void)bytes, (void)parts;
    uint8_t *to = g->at[i] == SIZE_MAX ? dst : g->scratch + g->at[i];
    if (lathe_dist_allgather(src, block_of(&g->p->gathers[i]), to, c->err, sizeof c->err) != 0) return -1;
    rearrange(g, i);
    return 0;
}

static int start_gather(lathe_rt_comm *c, int i, const uint8_t *src, uint8_t *dst, int64_t outer, int64_t bytes, int parts) {
    gatherer *g = c->ctx;
    (void)outer, (void)bytes, (void)parts;
    uint8_t *to = g->at[i] == SIZE_MAX ? dst : g->scratch + g->at[i];
    return lathe_dist_iallgather(src, block_of(&g->p->gathers[i]), to, &g->req[i], c->err, sizeof c->err);
}

static int finish_gather(lathe_rt_comm *c, int i) {
    gatherer *g = c->ctx;
    if (lathe_dist_wait(g->req[i], c->err, sizeof c->err) != 0) return -1;
    g->req[i] = -1;
    rearrange(g, i);
    return 0;
}

static void progress_gathers(lathe_rt_comm *c) {
    (void)c;
    lathe_dist_progress();
}

/* g for the communication steps of p, run on w's processes; false with a
 * message for a step that does not fit them. */
static bool gatherer_init(gatherer *g, const lathe_rt_program *p, const world *w, bool overlap, const char *prog) {
    *g = (gatherer){.comm = {.all_gather = all_gather, .ctx = g}, .p = p};
    if (overlap) g->comm.start = start_gather, g->comm.finish = finish_gather, g->comm.progress = progress_gathers;
    g->at = malloc(sizeof *g->at * (size_t)(p->ngathers + 1));
    g->req = malloc(sizeof *g->req * (size_t)(p->ngathers + 1));
    if (!g->at || !g->req) {
        fail(prog, "out of memory");
        return false;
    }
    for (int i = 0; i < p->ngathers; i++) {
        const lathe_rt_gather *s = &p->gathers[i];
        if (s->parts != w->procs || s->outer < 1 || s->bytes < 0 || s->outer * s->bytes > INT_MAX) {
            fail(prog, "the training program for %d processes has an all-gather of %d parts of %lld x %lld bytes, "
                       "which this run cannot do", w->procs, s->parts, (long long)s->outer, (long long)s->bytes);
            return false;
        }
        size_t block = block_of(s), total = block * (size_t)s->parts;
        g->req[i] = -1;
        g->at[i] = SIZE_MAX;
        if (s->outer > 1 || (s->src < s->dst + (int64_t)total && s->dst < s->src + (int64_t)block)) {
            g->at[i] = g->cap; /* its own part: several may be under way */
            g->cap += (total + 63) & ~(size_t)63;
        }
    }
    if (!(g->scratch = malloc(g->cap ? g->cap : 1))) {
        fail(prog, "out of memory for the all-gathers' %zu bytes", g->cap);
        return false;
    }
    return true;
}

/* Run the training program; a failed communication step ends the whole run
 * (the other processes may be waiting in it), naming this process. */
static void run_train(runner *tr, int threads, int64_t step) {
    if (lathe_rt_run(&tr->prog, threads) == 0) return;
    lathe_dist_abort(1, "step %lld: %s: stopping the run", (long long)step,
                     tr->prog.comm ? tr->prog.comm->err : "a communication step without a way to communicate");
}

/* the fraction of a text:FILE held out for validation, by position */
#define TEXT_HELD_OUT 0.1

/* ---- data ------------------------------------------------------------------------------ */

static void type_str(lathe_rt_dtype dtype, int rank, const int64_t *shape, char *buf, size_t len) {
    int k = snprintf(buf, len, "%s[", lathe_rt_dtype_name(dtype));
    for (int d = 0; d < rank && k < (int)len; d++) k += snprintf(buf + k, len - (size_t)k, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (k < (int)len) snprintf(buf + k, len - (size_t)k, "]");
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* path + name, or path + name + ".gz" when only that exists */
static void idx_file(char *out, size_t len, const char *dir, const char *name) {
    snprintf(out, len, "%s/%s", dir, name);
    if (!exists(out)) {
        snprintf(out, len, "%s/%s.gz", dir, name);
        if (!exists(out)) snprintf(out, len, "%s/%s", dir, name); /* the loader names it */
    }
}

/* The image input: the first that is not the label (what IDX images feed,
 * what --normalize and the augmentation apply to), or -1. */
static int image_input(const lathe_model_info *m) {
    for (int i = 0; i < m->ninputs; i++)
        if (!m->label || strcmp(m->inputs[i], m->label) != 0) return i;
    return -1;
}

/* What model input i (tensor t, batch first) takes from a dataset: its
 * dtype and sample shape, pixels scaled unless raw, and --normalize for
 * the image input. */
static lathe_ds_input input_of(const lathe_model_info *m, const lathe_rt_tensor *t, int i, const flags *f) {
    lathe_ds_input in = {.dtype = t->dtype, .rank = t->rank > 0 ? t->rank - 1 : 0, .scale = !(m->raw && m->raw[i])};
    for (int k = 1; k < t->rank; k++) in.shape[k - 1] = t->shape[k];
    if (i == image_input(m)) in.norm = f->norm;
    return in;
}

/* The augmentation of the training data's image input (on false: none). */
static lathe_ds_augment augment_of(const flags *f, bool on) {
    return on ? (lathe_ds_augment){.crop_pad = f->crop_pad, .hflip = f->hflip, .seed = f->seed} : (lathe_ds_augment){0};
}

/* The file tensor t of d was read from. */
static const char *source_of(const lathe_dataset *d, const lathe_st_tensor *t) {
    for (int k = 0; k < lathe_ds_num_tensors(d); k++)
        if (lathe_ds_tensor(d, k) == t) return lathe_ds_source(d, k);
    return "";
}

/* Load SPEC (see the usage) for the model; test: the t10k files of a
 * directory.  Checks that every input is there with samples that fit. */
static lathe_dataset *load_data(const lathe_model_info *m, const runner *r, const char *spec, bool test,
                                const flags *f, const char *prog) {
    char err[1024] = "", images[PATH_MAX], labels[PATH_MAX];
    lathe_dataset *d = NULL;
    size_t n = strlen(spec);
    struct stat st;
    int image = image_input(m);
    const char *image_input = image >= 0 ? m->inputs[image] : NULL;
    bool is_st = n > 12 && !strcmp(spec + n - 12, ".safetensors"), is_text = !strncmp(spec, "text:", 5);
    if (is_st) d = lathe_ds_load_safetensors(spec, err, sizeof err);
    else if (is_text) {
        const lathe_rt_tensor *a = m->ninputs == 2 ? find(r, m->inputs[0], LATHE_RT_INPUT) : NULL,
                              *b = m->ninputs == 2 ? find(r, m->inputs[1], LATHE_RT_INPUT) : NULL;
        if (!a || !b || a->rank != 2 || b->rank != 2 || a->dtype != LATHE_RT_I64 || b->dtype != LATHE_RT_I64 ||
            a->shape[1] != b->shape[1]) {
            fail(prog, "--%s %s: text feeds a model with two inputs of i64[%s, T] (tokens, then the next tokens); "
                 "%s has %d input%s", test ? "eval-data" : "data", spec, "N", m->name, m->ninputs,
                 m->ninputs == 1 ? "" : "s");
            return NULL;
        }
        d = lathe_ds_load_text(spec + 5, a->shape[1], TEXT_HELD_OUT, test, m->inputs[0], m->inputs[1], err,
                               sizeof err);
    } else {
        const char *comma = strchr(spec, ',');
        if (comma) {
            snprintf(images, sizeof images, "%.*s", (int)(comma - spec), spec);
            snprintf(labels, sizeof labels, "%s", comma + 1);
        } else if (stat(spec, &st) == 0 && S_ISDIR(st.st_mode)) {
            idx_file(images, sizeof images, spec, test ? "t10k-images-idx3-ubyte" : "train-images-idx3-ubyte");
            idx_file(labels, sizeof labels, spec, test ? "t10k-labels-idx1-ubyte" : "train-labels-idx1-ubyte");
        } else {
            fail(prog, "--%s %s: expected a directory of IDX files, IMAGES,LABELS (two IDX files) or a .safetensors file%s",
                 test ? "eval-data" : "data", spec, exists(spec) ? "" : " (no such file or directory)");
            return NULL;
        }
        if (m->ninputs != 2 || !m->label || !image_input) {
            fail(prog, "IDX data feeds a model with one input and one label input; %s has %d inputs%s: use a .safetensors file",
                 m->name, m->ninputs, m->label ? "" : " and no label");
            return NULL;
        }
        d = lathe_ds_load_idx_compact(images, labels, image_input, m->label, err, sizeof err);
    }
    if (!d) {
        fail(prog, "%s", err);
        return NULL;
    }
    for (int i = 0; i < m->ninputs; i++) {
        const lathe_rt_tensor *t = find(r, m->inputs[i], LATHE_RT_INPUT);
        char want[256];
        if (!t) continue; /* an input the program does not read */
        type_str(t->dtype, t->rank - 1, t->shape + 1, want, sizeof want);
        if (!lathe_ds_find(d, m->inputs[i])) {
            fail(prog, "%s: no tensor named '%s' (the model's input %s, samples of %s)", is_st ? spec : images,
                 m->inputs[i], m->inputs[i], want);
            lathe_ds_free(d);
            return NULL;
        }
        lathe_ds_input in = input_of(m, t, i, f);
        lathe_ds_augment aug = augment_of(f, !test && i == image);
        if (lathe_ds_input_check(d, m->inputs[i], &in, &aug, err, sizeof err) != 0) {
            fail(prog, "%s", err);
            lathe_ds_free(d);
            return NULL;
        }
    }
    /* class and row indices (lathe_rt_tensor.index_limit: the inputs a loss
     * or an index_select indexes with, through reshapes too), checked once
     * for the whole dataset */
    for (int i = 0; i < m->ninputs; i++) {
        const lathe_rt_tensor *t = find(r, m->inputs[i], LATHE_RT_INPUT);
        const lathe_st_tensor *lab = t && t->index_limit > 0 ? lathe_ds_find(d, m->inputs[i]) : NULL;
        if (!lab || (lab->dtype != LATHE_RT_I64 && lab->dtype != LATHE_RT_I32 && lab->dtype != LATHE_RT_U8)) continue;
        int64_t per = lathe_ds_sample_bytes(lab) / (int64_t)lathe_rt_dtype_size(lab->dtype);
        int64_t count = lathe_ds_count(d) * per;
        for (int64_t e = 0; e < count; e++) {
            int64_t v = lab->dtype == LATHE_RT_I64 ? ((const int64_t *)lab->data)[e]
                        : lab->dtype == LATHE_RT_I32 ? ((const int32_t *)lab->data)[e]
                                                     : ((const uint8_t *)lab->data)[e];
            if ((v < 0 || v >= t->index_limit) && v != t->index_ignore) {
                fail(prog, "%s: %s %lld of sample %lld is outside [0, %lld): %s indexes %lld classes or rows with it",
                     source_of(d, lab), m->inputs[i], (long long)v, (long long)(e / (per ? per : 1)),
                     (long long)t->index_limit, m->name, (long long)t->index_limit);
                lathe_ds_free(d);
                return NULL;
            }
        }
    }
    if (lathe_ds_count(d) < (test ? 1 : m->batch)) {
        fail(prog, "%s: %lld samples, fewer than one batch of %lld", spec, (long long)lathe_ds_count(d), (long long)m->batch);
        lathe_ds_free(d);
        return NULL;
    }
    return d;
}

/* One batch of r's program, samples idx[0..count), into r's inputs:
 * converted, normalized and, for training (train true), augmented as drawn
 * for epoch (and the sample, not its place in the batch).  count is the
 * batch the program was compiled for: the model's, or a process's part of
 * it. */
static bool gather(const lathe_model_info *m, runner *r, const lathe_dataset *d, const int64_t *idx, int64_t count,
                   const flags *f, bool train, int64_t epoch, const char *prog) {
    char err[512];
    int image = image_input(m);
    for (int i = 0; i < m->ninputs; i++) {
        const lathe_rt_tensor *t = find(r, m->inputs[i], LATHE_RT_INPUT);
        if (!t) continue;
        lathe_ds_input in = input_of(m, t, i, f);
        lathe_ds_augment aug = augment_of(f, train && i == image);
        if (lathe_ds_gather_input(d, m->inputs[i], &in, &aug, epoch, idx, count, r->prog.arena + t->offset, err,
                                  sizeof err) != 0) {
            fail(prog, "%s", err);
            return false;
        }
    }
    return true;
}

/* ---- evaluation -------------------------------------------------------------------------- */

/* Copy parameters and buffers by name from the training arena. */
static void sync_eval(runner *ev, const runner *tr) {
    for (int i = 0; i < ev->c->ntensors; i++) {
        const lathe_rt_tensor *t = &ev->c->tensors[i];
        if (t->kind != LATHE_RT_PARAM && t->kind != LATHE_RT_BUFFER) continue;
        const lathe_rt_tensor *s = find(tr, t->name, t->kind);
        if (s && s->numel == t->numel && s->dtype == t->dtype)
            memcpy(ev->prog.arena + t->offset, tr->prog.arena + s->offset, (size_t)t->numel * lathe_rt_dtype_size(t->dtype));
    }
}

/* Sums over the rows of one evaluation batch of a per-sample output t (B x k
 * elements, sample i's at [i k, (i+1) k): one sequence's tokens, say),
 * weighted by w ("weight": 0 where a target is ignored) when there is one.
 * An output whose size is not a multiple of B (a loss the description
 * reduced itself) counts its first element once per sample. */
static void add_rows(const runner *ev, const lathe_rt_tensor *t, const lathe_rt_tensor *w, int64_t B, int64_t rows,
                     double *sum, double *count) {
    if (!t) return;
    int64_t k = t->numel % B == 0 ? t->numel / B : 0;
    if (w && w->numel != t->numel) w = NULL;
    if (k == 0) {
        *sum += (double)rows * scalar_at(ev->prog.arena, t, 0);
        *count += (double)rows;
        return;
    }
    for (int64_t e = 0; e < rows * k; e++) {
        *sum += scalar_at(ev->prog.arena, t, e);
        *count += w ? scalar_at(ev->prog.arena, w, e) : 1;
    }
}

/* With per-process batch norm (--local-bn) the processes' running
 * statistics differ: every process evaluates with rank 0's, the ones its
 * checkpoints hold. */
static void share_buffers(const lathe_trainer_model *m, runner *ev, const world *w) {
    if (w->procs == 1 || !m->local_bn) return;
    char err[512];
    for (int i = 0; i < ev->c->ntensors; i++) {
        const lathe_rt_tensor *t = &ev->c->tensors[i];
        if (t->kind == LATHE_RT_BUFFER &&
            lathe_dist_broadcast(ev->prog.arena + t->offset, (size_t)t->numel * lathe_rt_dtype_size(t->dtype), 0, err,
                                 sizeof err) != 0)
            lathe_dist_abort(1, "evaluation: %s", err);
    }
}

/* What one evaluation batch adds up: the loss's sum and count, and those
 * of "correct" and "correct5". */
enum { EV_LOSS, EV_LOSS_N, EV_CORRECT, EV_CORRECT_N, EV_TOP5, EV_TOP5_N, NSUMS };

/* Mean loss and accuracy over every sample of d: full batches, and the last
 * one padded with copies of the last sample, which are not counted.  With
 * per-token outputs ("loss" of shape [N, T] or [N*T]) the means are over
 * tokens, ignored targets left out.
 * The sums have two levels, whatever the process count: each batch's from
 * zero, then the batches' in order.  Of P processes, rank r evaluates the
 * batches b with b % P == r (with the evaluation program, at the whole
 * batch), and an all-reduce of the per-batch sums gives every process all
 * of them exactly (each is nonzero on one process only): the bits of one
 * process.  False with a message when this process failed (the caller ends
 * the run: the others wait in the all-reduce). */
static bool evaluate(const lathe_trainer_model *m, runner *ev, const runner *tr, const lathe_dataset *d,
                     const flags *f, const world *w, double *loss, double *acc, double *acc5, const char *prog) {
    sync_eval(ev, tr);
    share_buffers(m, ev, w);
    const lathe_rt_tensor *lt = find(ev, "loss", LATHE_RT_OUTPUT), *ct = find(ev, "correct", LATHE_RT_OUTPUT),
                          *wt = find(ev, "weight", LATHE_RT_OUTPUT), *c5 = find(ev, "correct5", LATHE_RT_OUTPUT);
    int64_t n = lathe_ds_count(d), B = m->info.batch, nb = (n + B - 1) / B;
    int64_t *idx = malloc(sizeof *idx * (size_t)B);
    double *sums = calloc((size_t)nb * NSUMS, sizeof *sums), tot[NSUMS] = {0};
    bool ok = idx && sums;
    if (!ok) fail(prog, "out of memory");
    for (int64_t b = w->rank; ok && b < nb; b += w->procs) {
        int64_t b0 = b * B, rows = n - b0 < B ? n - b0 : B;
        double *s = sums + b * NSUMS;
        for (int64_t i = 0; i < B; i++) idx[i] = b0 + (i < rows ? i : rows - 1);
        if (!(ok = gather(&m->info, ev, d, idx, B, f, false, 0, prog))) break;
        if (lathe_rt_run(&ev->prog, f->threads) != 0) {
            fail(prog, "evaluation: the program failed");
            ok = false;
            break;
        }
        add_rows(ev, lt, wt, B, rows, &s[EV_LOSS], &s[EV_LOSS_N]);
        add_rows(ev, ct, wt, B, rows, &s[EV_CORRECT], &s[EV_CORRECT_N]);
        add_rows(ev, c5, wt, B, rows, &s[EV_TOP5], &s[EV_TOP5_N]);
    }
    char err[512];
    if (ok && w->procs > 1 && lathe_dist_allreduce_sum(sums, (size_t)nb * NSUMS, LATHE_RT_F64, err, sizeof err) != 0) {
        fail(prog, "evaluation: %s", err);
        ok = false;
    }
    for (int64_t b = 0; ok && b < nb; b++)
        for (int k = 0; k < NSUMS; k++) tot[k] += sums[b * NSUMS + k];
    free(idx);
    free(sums);
    *loss = lt && tot[EV_LOSS_N] > 0 ? tot[EV_LOSS] / tot[EV_LOSS_N] : NAN;
    *acc = ct && tot[EV_CORRECT_N] > 0 ? tot[EV_CORRECT] / tot[EV_CORRECT_N] : NAN;
    *acc5 = c5 && tot[EV_TOP5_N] > 0 ? tot[EV_TOP5] / tot[EV_TOP5_N] : NAN;
    return ok;
}

/* ---- checkpoints -------------------------------------------------------------------------- */

/* What the data goes through (--normalize, --random-crop, --hflip), for a
 * checkpoint's "trainer.data" and the warning of a resumed run that
 * changes it. */
static const char *data_label(const flags *f, char *buf, size_t len) {
    snprintf(buf, len, "normalize %s, random-crop %lld, hflip %s", f->normalize ? f->normalize : "none",
             (long long)f->crop_pad, f->hflip ? "yes" : "no");
    return buf;
}

static bool save(const char *path, const runner *tr, lathe_optimizer *opt, const flags *f, int64_t samples,
                 int64_t step, const char *prog) {
    char err[1024], seed[32], batch[32], nsamp[32], stp[32], ol[160];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)f->seed);
    snprintf(batch, sizeof batch, "%lld", (long long)(f->batch * f->accumulate)); /* the effective batch */
    snprintf(nsamp, sizeof nsamp, "%lld", (long long)samples);
    snprintf(stp, sizeof stp, "%lld", (long long)step);
    char dl[600];
    const char *keys[] = {"trainer.step", "trainer.seed", "trainer.shuffle", "trainer.batch", "trainer.samples",
                          "trainer.optimizer", "trainer.data"};
    const char *vals[] = {stp, seed, f->shuffle ? "1" : "0", batch, nsamp, opt_label(&f->opt, ol, sizeof ol),
                          data_label(f, dl, sizeof dl)};
    if (lathe_rt_save_meta(path, tr->prog.arena, tr->c->tensors, tr->c->ntensors, opt, keys, vals, 7, err, sizeof err)) {
        fail(prog, "%s", err);
        return false;
    }
    return true;
}

/* A save during the run: on failure (a full disk, say) the previous
 * checkpoint stays as it was, the failure is reported, and training goes
 * on to save again at the next save point (the run's exit status will say a
 * save failed). */
static void save_or_go_on(const flags *f, const runner *tr, lathe_optimizer *opt, int64_t samples, int64_t step,
                          int64_t *saved_at, int64_t *failed, const char *prog) {
    if (save(f->save, tr, opt, f, samples, step, prog)) {
        *saved_at = step;
        return;
    }
    ++*failed;
    if (*saved_at >= 0)
        fprintf(stderr, "%s: step %lld not saved; %s still holds step %lld; training goes on and saves again at the "
                        "next save point\n", prog, (long long)step, f->save, (long long)*saved_at);
    else
        fprintf(stderr, "%s: step %lld not saved; training goes on and saves again at the next save point\n", prog,
                (long long)step);
}

/* --load: the tensors, the optimizer state, and the run's position (*step;
 * 0 for a file without one, such as a state_dict exported from PyTorch).
 * Errors are always reported, notes only when talk (rank 0: every process
 * loads the same file). */
static bool load(flags *f, runner *tr, lathe_optimizer *opt, int64_t samples, int64_t *step, bool talk,
                 const char *prog) {
    char err[1024];
    lathe_load_report rep;
    *step = 0;
    if (lathe_rt_load(f->load, tr->prog.arena, tr->c->tensors, tr->c->ntensors, opt, f->strict, &rep, err, sizeof err)) {
        fail(prog, "%s", err);
        return false;
    }
    if (talk && (rep.missing || rep.unexpected || rep.mismatched))
        fprintf(stderr, "%s: --load %s: %d loaded, %d missing, %d unexpected, %d mismatched:\n%s", prog, f->load,
                rep.loaded, rep.missing, rep.unexpected, rep.mismatched, rep.text);
    lathe_st_file *sf = lathe_st_read(f->load, err, sizeof err);
    if (!sf) {
        fail(prog, "%s", err);
        return false;
    }
    static const char *keys[] = {"trainer.step", "trainer.seed", "trainer.shuffle", "trainer.batch", "trainer.samples"};
    enum { NKEYS = sizeof keys / sizeof keys[0] };   /* all or none of them */
    int64_t v[NKEYS] = {0};
    int found = 0;
    bool ok = true;
    for (int i = 0; i < NKEYS; i++) {
        const char *val = lathe_st_meta(sf, keys[i]);
        if (!val) continue;
        found++;
        if (!parse_int(val, 0, &v[i])) {
            fail(prog, "--load %s: bad metadata %s = '%s'", f->load, keys[i], val);
            ok = false;
        }
    }
    if (ok && found > 0 && found < NKEYS) {
        fail(prog, "--load %s: incomplete trainer metadata (%d of %d entries)", f->load, found, NKEYS);
        ok = false;
    }
    if (ok && found == NKEYS) {
        if (v[3] != f->batch * f->accumulate || v[4] != samples) {
            fail(prog, "--load %s: the run was at batch %lld on %lld samples; this one is batch %lld on %lld samples",
                 f->load, (long long)v[3], (long long)v[4], (long long)(f->batch * f->accumulate), (long long)samples);
            ok = false;
        } else {
            if (talk && ((f->seed_given && (uint64_t)v[1] != f->seed) || (v[2] != 0) != f->shuffle))
                fprintf(stderr, "%s: --load %s: resuming with the checkpoint's seed %lld and %s\n", prog, f->load,
                        (long long)v[1], v[2] ? "--shuffle" : "no shuffle");
            char ol[160];
            const char *was = lathe_st_meta(sf, "trainer.optimizer");
            if (talk && was && strcmp(was, opt_label(&f->opt, ol, sizeof ol)) != 0)
                fprintf(stderr, "%s: --load %s: the run used %s; it goes on with %s\n", prog, f->load, was, ol);
            char dl[600];
            was = lathe_st_meta(sf, "trainer.data");
            if (talk && was && strcmp(was, data_label(f, dl, sizeof dl)) != 0)
                fprintf(stderr, "%s: --load %s: the run's data had %s; it goes on with %s\n", prog, f->load, was, dl);
            f->seed = (uint64_t)v[1];
            f->shuffle = v[2] != 0;
            *step = v[0];
        }
    }
    lathe_st_free(sf);
    return ok;
}

/* ---- the training loop ------------------------------------------------------------------------ */

static void fmt_time(double s, char *buf, size_t len) {
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, len, "%ld:%02ld", t / 60, t % 60);
}

static void progress(bool tty, int64_t epoch, int64_t epochs, int64_t step, int64_t spe, double loss, double rate,
                     double eta) {
    char e[32];
    fmt_time(eta, e, sizeof e);
    if (tty) {
        int w = 24, fill = (int)(w * step / (spe ? spe : 1));
        char bar[32];
        for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '-';
        bar[w] = 0;
        fprintf(stderr, "\repoch %lld/%lld [%s] %lld/%lld  loss %.4f  %.0f samples/s  ETA %s ", (long long)epoch,
                (long long)epochs, bar, (long long)step, (long long)spe, loss, rate, e);
    } else
        fprintf(stderr, "epoch %lld/%lld step %lld/%lld loss %.4f %.0f samples/s ETA %s\n", (long long)epoch,
                (long long)epochs, (long long)step, (long long)spe, loss, rate, e);
    fflush(stderr);
}

/* The lock of checkpoint path: an advisory flock on PATH.lock, held for the
 * run, so that a second trainer saving to the same file is refused instead
 * of overwriting the first's checkpoints.  Its descriptor, or -1 with a
 * message. */
static int lock_checkpoint(const char *path, const char *prog) {
    size_t len = strlen(path) + 6;
    char *lp = malloc(len);
    if (!lp) return fail(prog, "out of memory"), -1;
    snprintf(lp, len, "%s.lock", path);
    int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) {
        fail(prog, "--save %s: cannot open its lock file %s: %s", path, lp, strerror(errno));
    } else if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            fail(prog, "--save %s: another trainer is saving to it (it holds %s); refusing to overwrite its "
                       "checkpoints", path, lp);
        else fail(prog, "--save %s: cannot lock %s: %s", path, lp, strerror(errno));
        close(fd);
        fd = -1;
    }
    free(lp);
    return fd;
}

/* A number for a JSON line (NaN and infinities are null). */
static void json_num(FILE *o, const char *key, double v, bool last) {
    if (isfinite(v)) fprintf(o, "\"%s\": %.9g%s", key, v, last ? "}\n" : ", ");
    else fprintf(o, "\"%s\": null%s", key, last ? "}\n" : ", ");
}

/* An evaluation's JSON line (--log-file); train_loss NaN (null) mid-epoch. */
static void log_eval(FILE *log, int64_t step, int64_t epoch, double train_loss, double test_loss, double test_acc,
                     double test_acc5, bool classify) {
    if (!log) return;
    fprintf(log, "{\"step\": %lld, \"epoch\": %lld, ", (long long)step, (long long)epoch);
    json_num(log, "train_loss", train_loss, false);
    json_num(log, "test_loss", test_loss, !classify);
    if (classify) json_num(log, "test_accuracy", test_acc, !isfinite(test_acc5));
    if (classify && isfinite(test_acc5)) json_num(log, "test_top5", test_acc5, true);
    fflush(log);
}

/* A training run: its processes, programs, data, optimizer and position. */
typedef struct {
    const lathe_trainer_model *m;
    flags *f;
    const world *w;
    const char *prog;
    bool lead;                 /* rank 0: prints, logs and saves */
    bool tty;                  /* progress as a bar */
    runner tr, ev;
    gatherer comm;             /* several processes: the training program's all-gathers */
    lathe_dataset *d, *td;
    lathe_optimizer *opt;
    const lathe_rt_tensor *loss_t;
    int64_t *perm, *idx;       /* the epoch's order; this process's samples of a micro-batch */
    double *acc;               /* --accumulate's gradient sums */
    FILE *log;                 /* --log-file */
    int lock;                  /* --save's lock, or -1 */
    /* a step takes K = --accumulate micro-batches of the compiled batch: the
     * samples of one batch of eb = K times its size, in the same order; spe
     * steps per epoch of n samples; the run's first step, its total, and
     * where it is */
    int64_t K, eb, n, spe, start, total, step;
    int64_t nparams, ntrain;   /* ntrain: the gradients' elements */
} session;

/* Everything before the first step: the checkpoint lock, the programs, the
 * data, the optimizer, --load, the buffers and the log.  False with a
 * message. */
static bool setup(session *s) {
    const lathe_trainer_model *m = s->m;
    flags *f = s->f;
    const char *prog = s->prog;
    char err[1024];
    if (s->lead && f->save && (s->lock = lock_checkpoint(f->save, prog)) < 0) return false;
    if (!runner_init(&s->tr, s->w->train, f, prog)) return false;
    if (s->w->procs > 1) {
        if (!gatherer_init(&s->comm, &s->tr.prog, s->w, !s->f->no_overlap, prog)) return false;
        s->tr.prog.comm = &s->comm.comm;
    }
    /* which part of the batch this process holds (a dropout's draws depend on it) */
    const lathe_rt_tensor *rank_t = find(&s->tr, LATHE_RT_RANK_NAME, LATHE_RT_INPUT);
    if (rank_t && rank_t->dtype == LATHE_RT_I64 && rank_t->numel == 1)
        *(int64_t *)(s->tr.prog.arena + rank_t->offset) = s->w->rank;
    s->loss_t = find(&s->tr, "loss", LATHE_RT_OUTPUT);
    if (!s->loss_t || s->loss_t->numel != 1) {
        fail(prog, "%s has no one-element output 'loss' to train", m->info.name);
        return false;
    }
    if (f->eval && !m->eval.tensors) {
        fail(prog, "--eval: %s was compiled without an evaluation program (one comes from a description with a "
             "loss; text IR, a dump included, is one graph: train it without --eval, or train the description)",
             m->info.name);
        return false;
    }
    if (!(s->d = load_data(&m->info, &s->tr, f->data, false, f, prog))) return false;
    if (f->eval) {
        if (!runner_init(&s->ev, &m->eval, f, prog)) return false;
        if (!(s->td = load_data(&m->info, &s->ev, f->eval_data ? f->eval_data : f->data, true, f, prog))) return false;
    }
    s->K = f->accumulate, s->eb = m->info.batch * s->K, s->n = lathe_ds_count(s->d), s->spe = s->n / s->eb;
    if (s->spe == 0) {
        fail(prog, "%s: %lld samples, fewer than one batch of %lld (%lld x --accumulate %lld)", f->data,
             (long long)s->n, (long long)s->eb, (long long)m->info.batch, (long long)s->K);
        return false;
    }
    lathe_rt_init(s->tr.prog.arena, s->tr.c->tensors, s->tr.c->ntensors, f->seed);
    if (!(s->opt = lathe_optim_new(&f->opt, s->tr.prog.arena, s->tr.c->tensors, s->tr.c->ntensors, err, sizeof err))) {
        fail(prog, "%s", err);
        return false;
    }
    if (f->load && !load(f, &s->tr, s->opt, s->n, &s->step, s->lead, prog)) return false;
    s->start = s->step;
    /* --epochs and --steps are totals; --steps alone is not capped by the default epoch */
    s->total = f->epochs > INT64_MAX / s->spe ? INT64_MAX : f->epochs * s->spe;
    if (f->steps >= 0 && (!f->epochs_given || f->steps < s->total)) s->total = f->steps;
    if (f->sched.kind == LATHE_LR_ONECYCLE && f->sched.total_steps == 0) f->sched.total_steps = s->total;
    for (int i = 0; i < s->tr.c->ntensors; i++)
        if (s->tr.c->tensors[i].kind == LATHE_RT_PARAM) {
            s->nparams += s->tr.c->tensors[i].numel;
            if (s->tr.c->tensors[i].grad_offset >= 0) s->ntrain += s->tr.c->tensors[i].numel;
        }
    s->perm = malloc(sizeof *s->perm * (size_t)s->n);
    s->idx = malloc(sizeof *s->idx * (size_t)s->w->local);
    if (s->K > 1) s->acc = malloc(sizeof *s->acc * (size_t)(s->ntrain > 0 ? s->ntrain : 1));
    if (s->lead && f->log_file && !(s->log = fopen(f->log_file, "a"))) { /* a resumed run goes on in the same log */
        fail(prog, "--log-file %s: %s", f->log_file, strerror(errno));
        return false;
    }
    if (!s->perm || !s->idx || (s->K > 1 && !s->acc)) {
        fail(prog, "out of memory");
        return false;
    }
    return true;
}

static void session_free(session *s) {
    if (s->log) fclose(s->log);
    free(s->perm);
    free(s->idx);
    free(s->acc);
    free(s->comm.scratch);
    free(s->comm.at);
    free(s->comm.req);
    lathe_optim_free(s->opt);
    lathe_ds_free(s->d);
    lathe_ds_free(s->td);
    lathe_rt_free_arena(s->tr.owned);
    lathe_rt_free_arena(s->ev.owned);
    if (s->lock >= 0) close(s->lock); /* releases the lock */
}

/* The run's first lines (rank 0): the model, the batch (on several
 * processes, its shards), the processes. */
static void announce(const session *s) {
    if (!s->lead) return;
    const lathe_trainer_model *m = s->m;
    int threads = s->f->threads ? s->f->threads : omp_get_max_threads(), P = s->w->procs;
    bool shards = P > 1 && m->shards > 1;
    char bdesc[128], pdesc[64], ol[160];
    int k = snprintf(bdesc, sizeof bdesc, "%lld", (long long)s->eb);
    if (s->K > 1 || shards) {
        k += snprintf(bdesc + k, sizeof bdesc - (size_t)k, " (");
        if (s->K > 1)
            k += snprintf(bdesc + k, sizeof bdesc - (size_t)k, "%lld x %lld accumulated%s", (long long)s->K,
                          (long long)m->info.batch, shards ? ", " : "");
        if (shards) k += snprintf(bdesc + k, sizeof bdesc - (size_t)k, "%d shards", m->shards);
        snprintf(bdesc + k, sizeof bdesc - (size_t)k, ")");
    }
    if (P > 1)
        snprintf(pdesc, sizeof pdesc, "%d processes x %d thread%s%s", P, threads, threads > 1 ? "s" : "",
                 m->local_bn ? ", batch norm per process" : "");
    else
        snprintf(pdesc, sizeof pdesc, "%d thread%s", threads, threads > 1 ? "s" : "");
    fprintf(stderr, "%s: %lld parameters (%lld trained), batch %s, %lld samples, %lld steps/epoch, %s, %s\n",
            m->info.name, (long long)s->nparams, (long long)s->ntrain, bdesc, (long long)s->n, (long long)s->spe,
            opt_label(&s->f->opt, ol, sizeof ol), pdesc);
    int64_t step = s->step, spe = s->spe;
    if (step > 0) fprintf(stderr, "%s: resuming after step %lld (epoch %lld, %lld of %lld batches done)\n", s->prog,
                          (long long)step, (long long)(step / spe + 1), (long long)(step % spe), (long long)spe);
    if (step > 0 && step >= s->total) /* --epochs and --steps are totals: say why nothing trains */
        fprintf(stderr, "%s: the run is already at step %lld, %s the %lld steps asked for (--epochs and --steps count "
                        "from the first run): nothing to train\n",
                s->prog, (long long)step, step == s->total ? "at" : "past", (long long)s->total);
}

/* What the processes agree on before each update: how many saw a loss that
 * is not finite (the loss is gathered, so all or none; agreed on anyway,
 * since a process that stopped alone would leave the others waiting), and
 * how many caught each stop signal.  Returns the signal they all stop for
 * (the first of stop_signals that any caught), 0 for none; *finite.  One
 * process reads its own. */
static int agree(const world *w, double loss, bool *finite) {
    if (w->procs == 1) {
        *finite = isfinite(loss);
        return interrupted;
    }
    int64_t v[1 + NSTOP] = {!isfinite(loss)};
    int sig = interrupted;
    for (int i = 0; i < NSTOP; i++) v[1 + i] = sig == stop_signals[i];
    char err[512];
    if (lathe_dist_allreduce_sum(v, 1 + NSTOP, LATHE_RT_I64, err, sizeof err) != 0)
        lathe_dist_abort(1, "agreeing on the end of a step: %s", err);
    *finite = v[0] == 0;
    for (int i = 0; i < NSTOP; i++)
        if (v[1 + i]) return stop_signals[i];
    return 0;
}

/* The signal the run stops for before its next step: one process reads
 * its flag, several act on what they agreed at the last step (agree). */
static int stopping(const world *w, int agreed) { return w->procs == 1 ? interrupted : agreed; }

/* Step s->step + 1 of epoch: this process's part of each micro-batch through
 * the training program, their gradients summed in order (--accumulate),
 * the processes' agreement, clipping and the update.  0 after the update,
 * or 1 with a message: a loss that is not finite (no update), or data that
 * could not be gathered (several processes: the run ends here).  *loss:
 * the step's loss; *sig: the stop signal agreed on. */
static int train_step(session *s, int64_t epoch, double *loss, int *sig) {
    const flags *f = s->f;
    const world *w = s->w;
    runner *tr = &s->tr;
    int64_t b = s->step % s->spe, B = s->m->info.batch;
    double l = 0;
    for (int64_t k = 0; k < s->K; k++) { /* the micro-batches, their gradients summed in order */
        memcpy(s->idx, s->perm + (b * s->K + k) * B + w->rank * w->local, sizeof *s->idx * (size_t)w->local);
        if (!gather(&s->m->info, tr, s->d, s->idx, w->local, f, true, epoch, s->prog)) {
            if (w->procs > 1) lathe_dist_abort(1, "step %lld: this process's samples could not be gathered (above)",
                                               (long long)s->step + 1);
            return 1;
        }
        run_train(tr, f->threads, s->step + 1);
        double lk = scalar_at(tr->prog.arena, s->loss_t, 0);
        l = isfinite(lk) ? l + lk / (double)s->K : lk;
        /* several processes run every micro-batch: the others wait in its all-gathers */
        if (!isfinite(lk) && w->procs == 1) break;
        if (s->K > 1) lathe_accumulate_grads(tr->prog.arena, tr->c->tensors, tr->c->ntensors, s->acc, k, s->K);
    }
    bool finite;
    *sig = agree(w, l, &finite);
    *loss = l;
    if (!finite) {
        if (s->lead) {
            if (s->tty) fputc('\n', stderr);
            fail(s->prog, "the loss is %s at step %lld (epoch %lld, batch %lld): stopping before the update%s%s%s",
                 isnan(l) ? "NaN" : isinf(l) ? "infinite" : "not finite on another process", (long long)s->step + 1,
                 (long long)epoch + 1, (long long)b + 1, f->save ? "; the last checkpoint " : "",
                 f->save ? f->save : "", f->save ? " is kept" : "");
        }
        return 1;
    }
    if (f->clip_value > 0) lathe_clip_grad_value(tr->prog.arena, tr->c->tensors, tr->c->ntensors, f->clip_value);
    if (f->clip_norm > 0) lathe_clip_grad_norm(tr->prog.arena, tr->c->tensors, tr->c->ntensors, f->clip_norm);
    if (f->sched.kind != LATHE_LR_CONSTANT || f->sched.warmup > 0)
        lathe_optim_set_lr(s->opt, lathe_lr_at(&f->sched, f->opt.lr, lathe_optim_steps(s->opt)));
    lathe_optim_step(s->opt);
    return 0;
}

/* Evaluate on every process (the batches shared out, evaluate), print and
 * log on rank 0.  False with a message; of several processes, one that
 * failed ends the run (the others wait in the evaluation's all-reduce). */
static bool eval_now(session *s, double *loss, double *acc, double *acc5) {
    if (evaluate(s->m, &s->ev, &s->tr, s->td, s->f, s->w, loss, acc, acc5, s->prog)) return true;
    if (s->w->procs > 1) lathe_dist_abort(1, "the evaluation failed on this process (above)");
    return false;
}

static int train(const lathe_trainer_model *m, flags *f, const world *w, const char *prog) {
    session s = {.m = m, .f = f, .w = w, .prog = prog, .lead = w->rank == 0, .lock = -1};
    int rc = 1;
    if (!all_ready(w, setup(&s), prog)) goto done;
    announce(&s);
    s.tty = s.lead && isatty(STDERR_FILENO);
    /* Ctrl-C, SIGTERM, SIGHUP: finish the step, save, stop (a signal that
     * was ignored, as SIGHUP under nohup, stays ignored); several
     * processes stop after the same step (agree) */
    struct sigaction sa = {0}, old_sa[NSTOP];
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < NSTOP; i++) sigaddset(&sa.sa_mask, stop_signals[i]);
    interrupted = 0;
    for (int i = 0; i < NSTOP; i++) {
        sigaction(stop_signals[i], NULL, &old_sa[i]);
        if (old_sa[i].sa_handler != SIG_IGN) sigaction(stop_signals[i], &sa, NULL);
    }
    int64_t saved_at = -1, evaluated_at = -1, failed_saves = 0, spe = s.spe, eb = s.eb;
    double t0 = now(), last_draw = 0, last_loss = NAN, epoch_loss = NAN, test_loss = NAN, test_acc = NAN, test_acc5 = NAN;
    int64_t epochs_done = 0;
    int agreed = 0, sig = 0;
    if (spe > 0 && s.total > INT64_MAX - spe) s.total = INT64_MAX - spe; /* (total + spe - 1) below */
    rc = 0;
    while (s.step < s.total && !stopping(w, agreed)) {
        int64_t epoch = s.step / spe, s0 = s.step;
        if (f->shuffle) lathe_ds_permutation(s.n, f->seed, epoch, s.perm);
        else for (int64_t i = 0; i < s.n; i++) s.perm[i] = i;
        double lsum = 0, te = now();
        int64_t nl = 0;
        while (s.step < s.total && s.step / spe == epoch && !stopping(w, agreed)) {
            int64_t b = s.step % spe;
            double l;
            if (train_step(&s, epoch, &l, &agreed) != 0) {
                rc = 1;
                goto stop;
            }
            int64_t step = ++s.step;
            lsum += l;
            nl++;
            last_loss = l;
            double t = now(), rate = (double)((step - s0) * eb) / (t - te > 1e-9 ? t - te : 1e-9);
            double eta = (double)(s.total - step) * (double)eb / (rate > 0 ? rate : 1);
            if (s.log) {
                fprintf(s.log, "{\"step\": %lld, \"epoch\": %lld, ", (long long)step, (long long)epoch + 1);
                json_num(s.log, "lr", lathe_optim_get_config(s.opt)->lr, false);
                json_num(s.log, "loss", l, false);
                json_num(s.log, "samples_per_s", rate, true);
                fflush(s.log);
            }
            bool end = step == s.total || step % spe == 0;
            if (s.lead && (s.tty ? (t - last_draw > 0.1 || end) : (f->log_every > 0 && (step % f->log_every == 0 || end)))) {
                progress(s.tty, epoch + 1, (s.total + spe - 1) / spe, b + 1, spe, lsum / (double)nl, rate, eta);
                last_draw = t;
            }
            if (s.lead && f->save && f->save_every > 0 && step % f->save_every == 0)
                save_or_go_on(f, &s.tr, s.opt, s.n, step, &saved_at, &failed_saves, prog);
        }
        if (s.tty) fputc('\n', stderr);
        if (s.step % spe != 0) break; /* stopped mid-epoch */
        epochs_done++;
        epoch_loss = nl ? lsum / (double)nl : NAN;
        if (f->eval) {
            evaluated_at = s.step;
            double te0 = now();
            if (!eval_now(&s, &test_loss, &test_acc, &test_acc5)) {
                rc = 1;
                goto stop;
            }
            if (s.lead) {
                fprintf(stderr, "epoch %lld: train loss %.4f, test loss %.4f", (long long)epoch + 1, epoch_loss, test_loss);
                if (m->info.classify) fprintf(stderr, ", test accuracy %.2f%%", 100 * test_acc);
                if (isfinite(test_acc5)) fprintf(stderr, ", top-5 %.2f%%", 100 * test_acc5);
                fprintf(stderr, " (%lld samples, %.1f s)\n", (long long)lathe_ds_count(s.td), now() - te0);
            }
            log_eval(s.log, s.step, epoch + 1, epoch_loss, test_loss, test_acc, test_acc5, m->info.classify);
        }
        if (s.lead && f->save && saved_at != s.step)
            save_or_go_on(f, &s.tr, s.opt, s.n, s.step, &saved_at, &failed_saves, prog);
    }
    /* a run that ends mid-epoch is evaluated at its end */
    sig = stopping(w, agreed);
    if (rc == 0 && f->eval && evaluated_at != s.step && s.step > s.start && !sig) {
        if (!eval_now(&s, &test_loss, &test_acc, &test_acc5)) rc = 1;
        else log_eval(s.log, s.step, s.step / spe + 1, NAN, test_loss, test_acc, test_acc5, m->info.classify);
    }
stop:
    bool ended = rc == 0; /* not by a failure (a failed save at the end still reports the signal) */
    if (ended && s.lead) {
        int64_t step = s.step;
        if (f->save && saved_at != step) {
            if (save(f->save, &s.tr, s.opt, f, s.n, step, prog)) saved_at = step;
            else rc = 1;
        }
        double t = now() - t0;
        int64_t trained = (step - s.start) * eb;
        printf("%s: %lld step%s (%lld samples, %lld full epoch%s) in %.1f s, %.0f samples/s; final loss %.4f\n",
               m->info.name, (long long)(step - s.start), step - s.start == 1 ? "" : "s", (long long)trained,
               (long long)epochs_done, epochs_done == 1 ? "" : "s", t, (double)trained / (t > 1e-9 ? t : 1e-9),
               last_loss);
        if (!isnan(test_loss)) {
            printf("test loss %.4f", test_loss);
            if (m->info.classify) printf(", test accuracy %.2f%%", 100 * test_acc);
            if (isfinite(test_acc5)) printf(", top-5 %.2f%%", 100 * test_acc5);
            printf("\n");
        }
        if (saved_at >= 0) printf("saved %s at step %lld\n", f->save, (long long)saved_at);
        if (failed_saves) { /* the exit status says so, even when a later save caught up */
            fprintf(stderr, "%s: %lld save%s of %s failed during the run; %s\n", prog, (long long)failed_saves,
                    failed_saves == 1 ? "" : "s", f->save,
                    saved_at == step ? "the last one, at the end, holds every step" : "see above");
            rc = 1;
        }
    }
    if (ended && sig) {
        if (s.lead)
            fprintf(stderr, "%s: interrupted by %s at step %lld; resume with --load %s\n", prog, signal_name(sig),
                    (long long)s.step, f->save ? f->save : "(nothing saved: no --save)");
        rc = 128 + sig; /* the shell's status for a process the signal ended */
    }
    for (int i = 0; i < NSTOP; i++)
        if (old_sa[i].sa_handler != SIG_IGN) sigaction(stop_signals[i], &old_sa[i], NULL);
done:
    session_free(&s);
    return rc;
}

/* --normalize, --random-crop and --hflip against the model's image input
 * (the data is checked again when it is loaded); false with a message. */
static bool check_image_flags(const lathe_model_info *m, const lathe_rt_compiled *c, const flags *f, const char *prog) {
    const char *flag = f->normalize ? "--normalize" : f->crop_pad ? "--random-crop" : f->hflip ? "--hflip" : NULL;
    if (!flag) return true;
    int i = image_input(m);
    const lathe_rt_tensor *t = i >= 0 ? lathe_rt_find(c->tensors, c->ntensors, m->inputs[i]) : NULL;
    char ty[256] = "";
    if (t) type_str(t->dtype, t->rank, t->shape, ty, sizeof ty);
    if (!t || (t->dtype != LATHE_RT_F32 && t->dtype != LATHE_RT_F64)) {
        if (t)
            fail(prog, "%s: %s's image input '%s' is %s; normalization and augmentation are for float images", flag,
                 m->name, m->inputs[i], ty);
        else
            fail(prog, "%s: %s has no image input (an input that is not the label)", flag, m->name);
        return false;
    }
    int C = f->norm.channels;
    if (C > 1 && (t->rank < 2 || t->shape[1] != C)) {
        fail(prog, "--normalize %s has %d channels, but %s's input '%s' is %s, with %lld on axis 1 (the channels of "
             "[N, C, H, W])", f->normalize, C, m->name, m->inputs[i], ty, (long long)(t->rank < 2 ? 1 : t->shape[1]));
        return false;
    }
    if ((f->crop_pad || f->hflip) && t->rank < 3) {
        fail(prog, "%s: %s's input '%s' is %s; crops and flips need an image, [N, H, W] or [N, C, H, W]",
             f->crop_pad ? "--random-crop" : "--hflip", m->name, m->inputs[i], ty);
        return false;
    }
    return true;
}

static void flags_default(flags *f, const lathe_trainer_model *m) {
    memset(f, 0, sizeof *f);
    f->epochs = 1;
    f->steps = -1;
    f->batch = m ? m->info.batch : 0;
    f->strict = true;
    f->log_every = 100;
    f->lr = -1;
    f->accumulate = 1;
}

int lathe_trainer_main(const lathe_trainer_model *m, int argc, char **argv) {
    enum { O_DATA = 2000, O_EVAL, O_EVAL_DATA, O_EPOCHS, O_STEPS, O_BATCH, O_SEED, O_SHUFFLE, O_LOAD, O_NOSTRICT,
           O_SAVE, O_SAVE_EVERY, O_LOG_EVERY, O_SCHED, O_WARMUP, O_CLIP_NORM, O_CLIP_VALUE, O_ACCUMULATE, O_LOG_FILE,
           O_NORMALIZE, O_RANDOM_CROP, O_HFLIP, O_NO_OVERLAP };
    static const struct option opts[] = {
        {"data", required_argument, 0, O_DATA}, {"eval", no_argument, 0, O_EVAL},
        {"eval-data", required_argument, 0, O_EVAL_DATA}, {"epochs", required_argument, 0, O_EPOCHS},
        {"steps", required_argument, 0, O_STEPS}, {"batch", required_argument, 0, O_BATCH},
        {"optimizer", required_argument, 0, O_OPTIMIZER}, {"lr", required_argument, 0, O_LR},
        {"momentum", required_argument, 0, O_MOMENTUM}, {"weight-decay", required_argument, 0, O_WD},
        {"nesterov", no_argument, 0, O_NESTEROV}, {"seed", required_argument, 0, O_SEED},
        {"no-decay-norm-bias", no_argument, 0, O_NO_DECAY},
        {"shuffle", no_argument, 0, O_SHUFFLE}, {"load", required_argument, 0, O_LOAD},
        {"no-strict", no_argument, 0, O_NOSTRICT}, {"save", required_argument, 0, O_SAVE},
        {"save-every", required_argument, 0, O_SAVE_EVERY}, {"threads", required_argument, 0, O_THREADS},
        {"log-every", required_argument, 0, O_LOG_EVERY}, {"ieee-denormals", no_argument, 0, O_IEEE},
        {"lr-schedule", required_argument, 0, O_SCHED}, {"warmup", required_argument, 0, O_WARMUP},
        {"clip-grad-norm", required_argument, 0, O_CLIP_NORM}, {"clip-grad-value", required_argument, 0, O_CLIP_VALUE},
        {"accumulate", required_argument, 0, O_ACCUMULATE}, {"log-file", required_argument, 0, O_LOG_FILE},
        {"normalize", required_argument, 0, O_NORMALIZE}, {"random-crop", required_argument, 0, O_RANDOM_CROP},
        {"hflip", no_argument, 0, O_HFLIP}, {"no-overlap", no_argument, 0, O_NO_OVERLAP},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *prog = argc > 0 ? argv[0] : "trainer";
    flags f;
    flags_default(&f, m);
    int c;
    optind = 1;
    opterr = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int64_t v;
        int r = optim_flag(c, optarg, &f, prog);
        if (r < 0) return 2;
        if (r > 0) continue;
        switch (c) {
        case O_DATA: f.data = optarg; break;
        case O_EVAL: f.eval = true; break;
        case O_EVAL_DATA: f.eval_data = optarg, f.eval = true; break;
        case O_SHUFFLE: f.shuffle = true; break;
        case O_LOAD: f.load = optarg; break;
        case O_NOSTRICT: f.strict = false; break;
        case O_SAVE: f.save = optarg; break;
        case O_LOG_FILE: f.log_file = optarg; break;
        case O_HFLIP: f.hflip = true; break;
        case O_NO_OVERLAP: f.no_overlap = true; break;
        case O_NORMALIZE: {
            char err[512];
            if (lathe_ds_parse_normalize(optarg, &f.norm, err, sizeof err) != 0) {
                fail(prog, "bad --normalize: %s", err);
                return 2;
            }
            f.normalize = optarg;
            break;
        }
        case O_RANDOM_CROP:
            if (!parse_int(optarg, 1, &v) || v > LATHE_DS_MAX_PAD) {
                fail(prog, "bad value '%s' for --random-crop (expected the padding, an integer from 1 to %d)", optarg,
                     LATHE_DS_MAX_PAD);
                return 2;
            }
            f.crop_pad = v;
            break;
        case O_SCHED:
            if (!parse_schedule(optarg, &f.sched)) {
                fail(prog, "bad --lr-schedule '%s' (expected step:SIZE:GAMMA, multistep:M1,M2,...:GAMMA, "
                     "exponential:GAMMA, cosine:T_MAX[:ETA_MIN] or onecycle:MAX_LR[:PCT])", optarg);
                return 2;
            }
            break;
        case O_CLIP_NORM:
        case O_CLIP_VALUE: {
            double v;
            if (!parse_num(optarg, &v) || !(v > 0)) {
                fail(prog, "bad value '%s' for --%s (expected a number > 0)", optarg,
                     c == O_CLIP_NORM ? "clip-grad-norm" : "clip-grad-value");
                return 2;
            }
            *(c == O_CLIP_NORM ? &f.clip_norm : &f.clip_value) = v;
            break;
        }
        case O_WARMUP: {
            char *end;
            long long w = strtoll(optarg, &end, 10);
            double st = 1.0 / 3;
            if (w < 1 || (*end && (*end != ':' || !parse_num(end + 1, &st) || st < 0 || st > 1))) {
                fail(prog, "bad --warmup '%s' (expected N[:START], N >= 1, START in [0, 1])", optarg);
                return 2;
            }
            f.sched.warmup = w, f.sched.warmup_start = st;
            break;
        }
        case O_EPOCHS: case O_STEPS: case O_BATCH: case O_SEED: case O_SAVE_EVERY: case O_LOG_EVERY: case O_ACCUMULATE:
            if (!parse_int(optarg, c == O_BATCH || c == O_ACCUMULATE ? 1 : 0, &v)) {
                const char *name = "?";
                for (int k = 0; opts[k].name; k++)
                    if (opts[k].val == c) name = opts[k].name;
                fail(prog, "bad value '%s' for --%s (expected an integer >= %d)", optarg, name,
                     c == O_BATCH || c == O_ACCUMULATE ? 1 : 0);
                return 2;
            }
            if (c == O_EPOCHS) f.epochs = v, f.epochs_given = true;
            else if (c == O_STEPS) f.steps = v;
            else if (c == O_BATCH) f.batch = v;
            else if (c == O_SEED) f.seed = (uint64_t)v, f.seed_given = true;
            else if (c == O_SAVE_EVERY) f.save_every = v;
            else if (c == O_ACCUMULATE) f.accumulate = v;
            else f.log_every = v;
            break;
        case 'h': lathe_trainer_usage(stdout, prog); return 0;
        default: lathe_trainer_usage(stderr, prog); return 2;
        }
    }
    if (optind < argc) {
        fail(prog, "unexpected argument '%s'", argv[optind]);
        return 2;
    }
    if (!f.data) {
        fail(prog, "--data is required (try --help)");
        return 2;
    }
    if (f.sched.kind == LATHE_LR_ONECYCLE && f.sched.warmup > 0) {
        fail(prog, "--warmup with --lr-schedule onecycle: the one-cycle schedule has its own warm-up (PCT)");
        return 2;
    }
    struct stat st;
    if (f.eval && !f.eval_data && strncmp(f.data, "text:", 5) && !(stat(f.data, &st) == 0 && S_ISDIR(st.st_mode))) {
        fail(prog, "--eval needs --eval-data SPEC: only a --data directory (its t10k-* files) or text:FILE (its last "
             "10%%) has its own test set");
        return 2;
    }
    if (f.save_every && !f.save) {
        fail(prog, "--save-every needs --save FILE");
        return 2;
    }
    if (!f.strict && !f.load) {
        fail(prog, "--no-strict is about --load, which is not given");
        return 2;
    }
    if (f.batch != m->info.batch) {
        fail(prog, "--batch %lld: %s was compiled for batch %lld; compile it again with --batch %lld", (long long)f.batch,
             m->info.name, (long long)m->info.batch, (long long)f.batch);
        return 2;
    }
    if (!make_optim(&f, prog)) return 2;
    if (!check_image_flags(&m->info, &m->train, &f, prog)) return 2;
    world w;
    int rc = join_run(m, &w, prog);
    char named[256]; /* the other processes' messages say whose they are */
    if (w.rank > 0) snprintf(named, sizeof named, "%s (rank %d of %d)", prog, w.rank, w.procs), prog = named;
    if (rc == 0) choose_threads(&f, &w);
    if (rc == 0) rc = train(m, &f, &w, prog);
    /* every process gets here at the same point (all_ready, agree), or
     * never (lathe_dist_abort) */
    char err[512];
    if (w.mpi && lathe_dist_finalize(err, sizeof err) != 0) {
        fail(prog, "%s", err);
        if (rc == 0) rc = 1;
    }
    return rc;
}

/* ---- lathe step -------------------------------------------------------------------------------- */

static const char *step_usage =
    "usage: %s --inputs B.safetensors -o OUT.safetensors [options]\n"
    "\n"
    "One training step of the model, for checking a compiled model against another\n"
    "framework.  B.safetensors holds one tensor per\n"
    "model input, named after it, with the input's exact dtype and shape.  OUT gets\n"
    "'loss', the model's outputs, 'grad.NAME' (the gradient of every trainable\n"
    "parameter NAME) and every parameter and buffer after the optimizer step\n"
    "(buffers such as batch norm's running statistics after the forward pass).\n"
    "\n"
    "options:\n"
    "  --params P.safetensors  every parameter and buffer, named PREFIX + its name\n"
    "                          (default: PyTorch's initialization with seed 0)\n"
    "  --params-prefix PREFIX  the prefix of those names (default none)\n"
    "  --inputs B.safetensors  the inputs (required; --batch B.safetensors is its old\n"
    "                          name)\n"
    "  -o, --output OUT        where to write the results (required)\n"
    "  --optimizer NAME        sgd (default), adam or adamw\n"
    "  --lr X, --momentum X, --nesterov, --weight-decay X   as for lathe train\n"
    "  --threads N             threads (results do not depend on it)\n"
    "  --ieee-denormals        keep IEEE denormals (default: flush-to-zero, as lathe train)\n"
    "  -h, --help              show this help\n"
    "%s";

int lathe_trainer_step_main(const lathe_trainer_model *m, int argc, char **argv) {
    enum { O_PARAMS = 2000, O_BATCHFILE, O_OUT, O_PREFIX };
    static const struct option opts[] = {
        {"params", required_argument, 0, O_PARAMS}, {"inputs", required_argument, 0, O_BATCHFILE},
        {"batch", required_argument, 0, O_BATCHFILE},
        {"output", required_argument, 0, 'o'}, {"params-prefix", required_argument, 0, O_PREFIX},
        {"optimizer", required_argument, 0, O_OPTIMIZER}, {"lr", required_argument, 0, O_LR},
        {"momentum", required_argument, 0, O_MOMENTUM}, {"weight-decay", required_argument, 0, O_WD},
        {"nesterov", no_argument, 0, O_NESTEROV}, {"threads", required_argument, 0, O_THREADS},
        {"no-decay-norm-bias", no_argument, 0, O_NO_DECAY},
        {"ieee-denormals", no_argument, 0, O_IEEE}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *prog = argc > 0 ? argv[0] : "step";
    if (!one_process(prog, "step")) return 1;
    const char *params = NULL, *batch = NULL, *out = NULL, *prefix = "";
    flags f;
    flags_default(&f, m);
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        int r = optim_flag(c, optarg, &f, prog);
        if (r < 0) return 2;
        if (r > 0) continue;
        switch (c) {
        case O_PARAMS: params = optarg; break;
        case O_BATCHFILE: batch = optarg; break;
        case 'o': out = optarg; break;
        case O_PREFIX: prefix = optarg; break;
        case 'h': {
            bool cli = !strncmp(prog, "lathe step", 10); /* else a native trainer's step */
            printf(step_usage, cli ? "lathe step MODEL [-D NAME=VALUE]..." : prog,
                   cli ? "\nMODEL: a .lathe description or text IR; -D NAME=VALUE overrides its 'let NAME'.\n" : "");
            return 0;
        }
        default: return 2;
        }
    }
    if (optind < argc || !batch || !out) {
        fail(prog, optind < argc ? "unexpected argument '%s'" : "--inputs FILE and -o OUT are required%s",
             optind < argc ? argv[optind] : "");
        return 2;
    }
    if (!make_optim(&f, prog)) return 2;
    runner tr;
    if (!runner_init(&tr, &m->train, &f, prog)) return 1;
    int rc = 1, nout = 0;
    char err[1024];
    lathe_optimizer *opt = NULL;
    lathe_st_file *pf = NULL, *bf = NULL;
    lathe_st_tensor *ts = NULL;
    char **names = NULL;
    const lathe_rt_compiled *cp = &m->train;
    lathe_rt_init(tr.prog.arena, cp->tensors, cp->ntensors, 0);
    if (params) { /* every parameter and buffer, as PREFIX + name */
        if (!(pf = lathe_st_read(params, err, sizeof err))) {
            fail(prog, "%s", err);
            goto done;
        }
        for (int i = 0; i < cp->ntensors; i++) {
            const lathe_rt_tensor *t = &cp->tensors[i];
            if (t->kind != LATHE_RT_PARAM && t->kind != LATHE_RT_BUFFER) continue;
            char key[512], want[256], got[256];
            snprintf(key, sizeof key, "%s%s", prefix, t->name);
            const lathe_st_tensor *s = lathe_st_find(pf, key);
            type_str(t->dtype, t->rank, t->shape, want, sizeof want);
            if (!s && !strncmp(t->name, "lathe.", 6)) continue; /* Lathe's own state: optional */
            if (!s) {
                fail(prog, "--params %s: no tensor '%s' (the model's %s %s)", params, key,
                     t->kind == LATHE_RT_PARAM ? "parameter" : "buffer", want);
                goto done;
            }
            type_str(s->dtype, s->rank, s->shape, got, sizeof got);
            if (strcmp(got, want) != 0) {
                fail(prog, "--params %s: '%s' is %s; the model's %s is %s", params, key, got, t->name, want);
                goto done;
            }
            memcpy(tr.prog.arena + t->offset, s->data, (size_t)t->numel * lathe_rt_dtype_size(t->dtype));
        }
    }
    if (!(bf = lathe_st_read(batch, err, sizeof err))) {
        fail(prog, "%s", err);
        goto done;
    }
    for (int i = 0; i < cp->ntensors; i++) {
        const lathe_rt_tensor *t = &cp->tensors[i];
        if (t->kind != LATHE_RT_INPUT) continue;
        const lathe_st_tensor *s = lathe_st_find(bf, t->name);
        char want[256], got[256];
        type_str(t->dtype, t->rank, t->shape, want, sizeof want);
        if (!s) {
            fail(prog, "--batch %s: no tensor '%s' (the model's input %s)", batch, t->name, want);
            goto done;
        }
        type_str(s->dtype, s->rank, s->shape, got, sizeof got);
        if (strcmp(got, want) != 0) {
            fail(prog, "--batch %s: '%s' is %s; the model's input takes %s", batch, t->name, got, want);
            goto done;
        }
        memcpy(tr.prog.arena + t->offset, s->data, (size_t)t->numel * lathe_rt_dtype_size(t->dtype));
    }
    if (lathe_rt_check_indices(tr.prog.arena, cp->tensors, cp->ntensors, err, sizeof err)) {
        fail(prog, "--batch %s: %s", batch, err);
        goto done;
    }
    if (!(opt = lathe_optim_new(&f.opt, tr.prog.arena, cp->tensors, cp->ntensors, err, sizeof err))) {
        fail(prog, "%s", err);
        goto done;
    }
    lathe_rt_run(&tr.prog, f.threads);
    /* outputs (gradients included) are copied before the step changes the arena */
    ts = calloc((size_t)cp->ntensors * 2 + 1, sizeof *ts);
    names = calloc((size_t)cp->ntensors + 1, sizeof *names);
    if (!ts || !names) {
        fail(prog, "out of memory");
        goto done;
    }
    for (int i = 0; i < cp->ntensors; i++) {
        const lathe_rt_tensor *t = &cp->tensors[i];
        if (t->kind != LATHE_RT_OUTPUT) continue;
        size_t bytes = (size_t)t->numel * lathe_rt_dtype_size(t->dtype);
        void *copy = malloc(bytes ? bytes : 1);
        if (!copy) {
            fail(prog, "out of memory");
            goto done;
        }
        memcpy(copy, tr.prog.arena + t->offset, bytes);
        names[i] = copy;
        ts[nout] = (lathe_st_tensor){t->name, t->dtype, t->rank, {0}, copy};
        memcpy(ts[nout].shape, t->shape, sizeof(int64_t) * (size_t)t->rank);
        nout++;
    }
    const lathe_rt_tensor *lt = find(&tr, "loss", LATHE_RT_OUTPUT);
    bool finite = !lt || isfinite(scalar_at(tr.prog.arena, lt, 0));
    lathe_optim_step(opt);
    for (int i = 0; i < cp->ntensors; i++) {
        const lathe_rt_tensor *t = &cp->tensors[i];
        if (t->kind != LATHE_RT_PARAM && t->kind != LATHE_RT_BUFFER) continue;
        ts[nout] = (lathe_st_tensor){t->name, t->dtype, t->rank, {0}, tr.prog.arena + t->offset};
        memcpy(ts[nout].shape, t->shape, sizeof(int64_t) * (size_t)t->rank);
        nout++;
    }
    const char *keys[] = {"format", "optimizer"};
    char ol[160];
    const char *vals[] = {"lathe step", opt_label(&f.opt, ol, sizeof ol)};
    if (lathe_st_write(out, ts, nout, keys, vals, 2, err, sizeof err) != 0) {
        fail(prog, "%s", err);
        goto done;
    }
    rc = 0;
    if (!finite) { /* written anyway: the file shows where it went wrong */
        fail(prog, "the loss is not finite (the results are in %s)", out);
        rc = 1;
    }
done:
    for (int i = 0; names && i < cp->ntensors; i++) free(names[i]);
    free(names);
    free(ts);
    lathe_st_free(pf);
    lathe_st_free(bf);
    lathe_optim_free(opt);
    lathe_rt_free_arena(tr.owned);
    return rc;
}

/* ---- sampling ------------------------------------------------------------------------------ */

static const char *sample_usage =
    "usage: %s --load CK [options]\n"
    "%s"
    "Generates text from a byte-level language model trained on text:FILE: the\n"
    "evaluation program runs on the last T tokens (the model's first input is\n"
    "i64[N, T]; row 0 holds the context, the rest is zeros), the next byte is drawn\n"
    "from the model's logits at the context's last position, and it is appended.\n"
    "The logits are the output named \"logits\" (else the first output that is not\n"
    "loss, correct or weight), of shape [N, T, V] or [N*T, V].  The prompt, then\n"
    "the generated bytes, go to standard output.\n"
    "\n"
    "options:\n"
    "  --load CK              the trained parameters (a checkpoint of --save)\n"
    "  --length N             bytes to generate (default 200)\n"
    "  --temperature X        divide the logits by X before the softmax (default 1;\n"
    "                         0: always the most likely byte)\n"
    "  --top-k K              draw from the K most likely bytes only (default: all)\n"
    "  --prompt TEXT          the text to continue (default: a newline)\n"
    "  --seed N               the draws' seed (default 0): same seed, same text\n"
    "  --threads N            threads (default: all cores)\n"
    "  --batch B              the compiled batch size (checked)\n";

static int desc_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

/* The next token from the V logits at element `at` of lt: divided by the
 * temperature, only those not below the K-th largest, one uniform draw from
 * rng.  p holds 2 V doubles of scratch. */
static int64_t draw(const runner *ev, const lathe_rt_tensor *lt, int64_t at, int64_t V, double temp, int64_t topk,
                    uint64_t *rng, double *p) {
    int64_t best = 0;
    for (int64_t v = 0; v < V; v++) {
        p[v] = scalar_at(ev->prog.arena, lt, at + v);
        if (p[v] > p[best]) best = v;
    }
    if (temp <= 0) return best;
    double kth = -INFINITY;
    if (topk > 0 && topk < V) {
        memcpy(p + V, p, sizeof *p * (size_t)V);
        qsort(p + V, (size_t)V, sizeof *p, desc_double);
        kth = p[V + topk - 1];
    }
    double top = p[best], sum = 0;
    for (int64_t v = 0; v < V; v++) sum += p[v] = p[v] >= kth ? exp((p[v] - top) / temp) : 0;
    double u = (double)(lt_splitmix64(rng) >> 11) * 0x1p-53 * sum;
    for (int64_t v = 0; v < V; v++) {
        if (u < p[v]) return v;
        u -= p[v];
    }
    return best;
}

int lathe_trainer_sample_main(const lathe_trainer_model *m, int argc, char **argv) {
    enum { O_LOAD = 2000, O_LENGTH, O_TEMP, O_TOPK, O_PROMPT, O_SEED, O_BATCH };
    static const struct option opts[] = {
        {"load", required_argument, 0, O_LOAD},     {"length", required_argument, 0, O_LENGTH},
        {"temperature", required_argument, 0, O_TEMP}, {"top-k", required_argument, 0, O_TOPK},
        {"prompt", required_argument, 0, O_PROMPT}, {"seed", required_argument, 0, O_SEED},
        {"threads", required_argument, 0, O_THREADS}, {"batch", required_argument, 0, O_BATCH},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *prog = argc > 0 ? argv[0] : "sample";
    if (!one_process(prog, "sample")) return 1;
    const char *load = NULL, *prompt = "\n";
    int64_t length = 200, topk = 0, seed = 0;
    double temp = 1;
    flags f;
    flags_default(&f, m);
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int64_t v;
        if (c == O_THREADS) {
            if (optim_flag(c, optarg, &f, prog) < 0) return 2;
            continue;
        }
        switch (c) {
        case O_LOAD: load = optarg; break;
        case O_PROMPT: prompt = optarg; break;
        case O_TEMP:
            if (!parse_num(optarg, &temp) || temp < 0) {
                fail(prog, "bad value '%s' for --temperature (expected a number >= 0)", optarg);
                return 2;
            }
            break;
        case O_BATCH:
            if (m && (!parse_int(optarg, 1, &v) || v != m->info.batch)) {
                fail(prog, "--batch %s: this trainer is compiled for batch %lld", optarg, (long long)m->info.batch);
                return 2;
            }
            break;
        case O_LENGTH: case O_TOPK: case O_SEED:
            if (!parse_int(optarg, 0, &v)) {
                fail(prog, "bad value '%s' for --%s (expected an integer >= 0)", optarg,
                     c == O_LENGTH ? "length" : c == O_TOPK ? "top-k" : "seed");
                return 2;
            }
            *(c == O_LENGTH ? &length : c == O_TOPK ? &topk : &seed) = v;
            break;
        case 'h': {
            bool cli = !strncmp(prog, "lathe sample", 12);
            printf(sample_usage, cli ? "lathe sample MODEL [-D NAME=VALUE]... [--batch B]" : prog,
                   cli ? "\nMODEL: a .lathe description; --batch 1 compiles it for one sequence (faster).\n\n" : "\n");
            return 0;
        }
        default: return 2;
        }
    }
    if (optind < argc || !load) {
        fail(prog, optind < argc ? "unexpected argument '%s'" : "--load CK is required%s", optind < argc ? argv[optind] : "");
        return 2;
    }
    if (!m->eval.tensors) {
        fail(prog, "%s has no evaluation program (a description needs a loss for one)", m->info.name);
        return 1;
    }
    runner ev;
    if (!runner_init(&ev, &m->eval, &f, prog)) return 1;
    int rc = 1;
    int64_t *ctx = NULL;
    double *p = NULL;
    const lathe_rt_tensor *in = m->info.ninputs > 0 ? find(&ev, m->info.inputs[0], LATHE_RT_INPUT) : NULL, *lt = NULL;
    lt = find(&ev, "logits", LATHE_RT_OUTPUT);
    for (int i = 0; !lt && i < ev.c->ntensors; i++) {
        const lathe_rt_tensor *t = &ev.c->tensors[i];
        if (t->kind == LATHE_RT_OUTPUT && strcmp(t->name, "loss") && strcmp(t->name, "correct") &&
            strcmp(t->name, "weight"))
            lt = t;
    }
    if (!in || in->rank != 2 || in->dtype != LATHE_RT_I64) {
        fail(prog, "%s: sampling needs a first input of i64[N, T] (tokens)", m->info.name);
        goto done;
    }
    int64_t B = in->shape[0], T = in->shape[1], V = lt && lt->rank >= 2 ? lt->shape[lt->rank - 1] : 0;
    if (!lt || V < 1 || lt->numel != B * T * V || (lt->dtype != LATHE_RT_F32 && lt->dtype != LATHE_RT_F64)) {
        fail(prog, "%s: sampling needs logits of [%lld, %lld, V] or [%lld, V] (an output named logits)", m->info.name,
             (long long)B, (long long)T, (long long)(B * T));
        goto done;
    }
    lathe_rt_init(ev.prog.arena, ev.c->tensors, ev.c->ntensors, 0);
    char err[1024];
    lathe_load_report rep;
    if (lathe_rt_load(load, ev.prog.arena, ev.c->tensors, ev.c->ntensors, NULL, false, &rep, err, sizeof err)) {
        fail(prog, "%s", err);
        goto done;
    }
    if (rep.missing || rep.mismatched) {
        fail(prog, "--load %s does not fit %s:\n%s", load, m->info.name, rep.text);
        goto done;
    }
    size_t np = strlen(prompt);
    int64_t n = 0, cap = (int64_t)np + length;
    ctx = malloc(sizeof *ctx * (size_t)(cap > 0 ? cap : 1));
    p = malloc(sizeof *p * (size_t)V * 2);
    if (!ctx || !p) {
        fail(prog, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < np; i++) ctx[n++] = (unsigned char)prompt[i];
    fwrite(prompt, 1, np, stdout);
    uint64_t rng = (uint64_t)seed;
    int64_t *tok = (int64_t *)(ev.prog.arena + in->offset);
    for (int64_t g = 0; g < length; g++) {
        int64_t w = n < T ? n : T;
        memset(tok, 0, sizeof *tok * (size_t)(B * T));
        if (w > 0) memcpy(tok, ctx + n - w, sizeof *tok * (size_t)w);
        lathe_rt_run(&ev.prog, f.threads);
        int64_t next = draw(&ev, lt, (w > 0 ? w - 1 : 0) * V, V, temp, topk, &rng, p);
        ctx[n++] = next;
        putchar((int)(next & 255));
        if (next == '\n') fflush(stdout);
    }
    putchar('\n');
    rc = 0;
done:
    free(ctx);
    free(p);
    lathe_rt_free_arena(ev.owned);
    return rc;
}
