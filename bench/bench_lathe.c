/* bench_lathe.c - one Lathe workload per run, timed, for bench/run.py, which
 * runs it interleaved with the same workload in PyTorch (bench_torch.py).
 *
 *     bench_lathe resnet18 --batch 8 --size 224 --threads 2
 *     bench_lathe fashion | matmul --n 2048 | compile | peak | target | spin
 *
 * A training step is what a trainer runs: the compiled program (forward,
 * backward, batch-norm updates) and the SGD step with momentum 0.9, the
 * step torch.optim.SGD takes.  Each step is timed on its own after warm-up
 * steps; the line printed at the end is
 *
 *     result workload=resnet18 batch=8 size=224 threads=2 steps=5 median_ms=... min_ms=...
 *            gflop=... arena_mb=... maxrss_mb=... compile_s=...
 *
 * gflop counts the contractions of one run (matmul, conv2d and its two
 * gradients, from the compiled graph); maxrss_mb is the process's peak
 * resident memory, compilation included. */
#include <getopt.h>
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <omp.h>

#include "lathe_compiler.h"
#include "timing.h"
#include "lathe_desc.h"
#include "program.h"

#ifndef LATHE_EXAMPLES
#define LATHE_EXAMPLES "examples"
#endif

typedef struct {
    const char *workload;
    int threads, steps, warmup;
    int64_t batch, size, n;
    bool same_batch, ieee;
} options;

static double maxrss_mb(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (double)r.ru_maxrss / 1024.0; /* kilobytes on Linux */
}

/* xorshift64*: uniform in [0, 1) */
static double rnd(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (double)((*s * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

static int fail(const char *what, const char *msg) {
    fprintf(stderr, "bench_lathe: %s: %s\n", what, msg);
    return 1;
}

/* Contraction FLOPs of one run of p. */
static double program_flops(const lathe_program *p) {
    const lathe_graph *g = p->b.dec;
    double fl = 0;
    for (int i = 0; g && i < g->nnodes; i++) fl += lt_node_flops(g->nodes[i]);
    return fl;
}

/* Every input of p random: floats uniform in [-1, 1), integers (labels) in
 * [0, 10), which every model here has as classes. */
static int bind_inputs(lathe_program *p, uint64_t seed) {
    const lathe_rt_tensor *t = lathe_program_tensors(p);
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (int i = 0; i < lathe_program_num_tensors(p); i++) {
        if (t[i].kind != LATHE_RT_INPUT) continue;
        size_t nb = (size_t)t[i].numel * lathe_rt_dtype_size(t[i].dtype);
        void *buf = malloc(nb ? nb : 1);
        if (!buf) return fail("inputs", "out of memory");
        for (int64_t j = 0; j < t[i].numel; j++) {
            if (t[i].dtype == LATHE_RT_F32) ((float *)buf)[j] = (float)(2 * rnd(&s) - 1);
            else if (t[i].dtype == LATHE_RT_F64) ((double *)buf)[j] = 2 * rnd(&s) - 1;
            else if (t[i].dtype == LATHE_RT_I64) ((int64_t *)buf)[j] = (int64_t)(10 * rnd(&s));
            else ((bool *)buf)[j] = rnd(&s) < 0.5;
        }
        lathe_status st = lathe_program_set(p, t[i].name, buf, nb);
        free(buf);
        if (st != LATHE_OK) return fail("inputs", lathe_program_error(p));
    }
    return 0;
}

/* A description from examples/ traced for training at o->batch. */
static lathe_graph *trace(const char *file, const options *o, int ndefs, const char *const *defs) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", LATHE_EXAMPLES, file);
    lathe_graph *g = lathe_graph_new();
    lathe_desc_options d = {.training = true, .batch = o->batch, .ndefines = ndefs, .defines = defs};
    if (!g || lathe_desc_parse_file(g, path, &d, NULL) != LATHE_OK) {
        fail(path, g ? lathe_graph_error(g) : "out of memory");
        lathe_graph_free(g);
        return NULL;
    }
    return g;
}

/* Training steps of g: compile, initialize, SGD(lr 0.01, momentum 0.9), and
 * time each step (run + optimizer) after the warm-up. */
static int train_steps(const options *o, lathe_graph *g, const char *extra) {
    double t0 = now();
    lathe_program *p = lathe_compile(g, LATHE_BACKEND_JIT);
    double compile_s = now() - t0;
    if (!p) return fail("compile", lathe_graph_error(g));
    lathe_program_set_threads(p, o->threads);
    lathe_program_set_ieee_denormals(p, o->ieee);
    lathe_program_init(p, 0);
    lathe_optim_config cfg = lathe_sgd_config(0.01, 0.9);
    lathe_optimizer *opt = lathe_program_optimizer(p, &cfg);
    double *v = calloc((size_t)o->steps, sizeof *v);
    int rc = 1;
    if (!opt || !v) {
        fail("optimizer", opt ? "out of memory" : lathe_program_error(p));
        goto done;
    }
    for (int i = 0; i < o->warmup + o->steps; i++) {
        /* a new batch every step (not timed): a batch seen again and again is
         * memorized, and its vanishing gradients time denormals instead */
        if ((i == 0 || !o->same_batch) && bind_inputs(p, (uint64_t)i + 1)) goto done;
        double t = now();
        lathe_program_run(p);
        lathe_optim_step(opt);
        if (i >= o->warmup) v[i - o->warmup] = now() - t;
    }
    float loss = NAN;
    lathe_program_get(p, "loss", &loss, sizeof loss);
    double mn = v[0];
    for (int i = 1; i < o->steps; i++) mn = fmin(mn, v[i]);
    printf("result workload=%s %s%s%s threads=%d steps=%d median_ms=%.3f min_ms=%.3f gflop=%.3f arena_mb=%.1f maxrss_mb=%.1f "
           "compile_s=%.3f loss=%.4g\n",
           o->workload, extra, o->same_batch ? " same_batch=1" : "", o->ieee ? " ieee_denormals=1" : "", o->threads, o->steps, 1e3 * median(v, o->steps), 1e3 * mn, program_flops(p) / 1e9,
           (double)lathe_program_arena_bytes(p) / 1048576.0, maxrss_mb(), compile_s, loss);
    rc = 0;
done:
    free(v);
    lathe_optim_free(opt);
    lathe_program_free(p);
    return rc;
}

static int bench_resnet18(const options *o) {
    char size[64], extra[128];
    snprintf(size, sizeof size, "size=%lld", (long long)o->size);
    const char *defs[] = {size};
    lathe_graph *g = trace("resnet18.lathe", o, 1, defs);
    if (!g) return 1;
    snprintf(extra, sizeof extra, "batch=%lld size=%lld", (long long)o->batch, (long long)o->size);
    int rc = train_steps(o, g, extra);
    lathe_graph_free(g);
    return rc;
}

static int bench_fashion(const options *o) {
    lathe_graph *g = trace("fashion_cnn.lathe", o, 0, NULL);
    if (!g) return 1;
    char extra[64];
    snprintf(extra, sizeof extra, "batch=%lld", (long long)o->batch);
    int rc = train_steps(o, g, extra);
    lathe_graph_free(g);
    return rc;
}

/* c = a @ b, f32 n x n, as numpy's a @ b. */
static int bench_matmul(const options *o) {
    int64_t n = o->n;
    lathe_graph *g = lathe_graph_new();
    lathe_node *a = lathe_input(g, "a", LATHE_F32, LATHE_DIMS(n, n)), *b = lathe_input(g, "b", LATHE_F32, LATHE_DIMS(n, n));
    lathe_output(g, "c", lathe_matmul(g, a, b));
    double t0 = now();
    lathe_program *p = lathe_compile(g, LATHE_BACKEND_JIT);
    double compile_s = now() - t0;
    if (!p) {
        fail("matmul", lathe_graph_error(g));
        lathe_graph_free(g);
        return 1;
    }
    lathe_program_set_threads(p, o->threads);
    double *v = calloc((size_t)o->steps, sizeof *v);
    int rc = v ? bind_inputs(p, 2) : fail("matmul", "out of memory");
    for (int i = 0; rc == 0 && i < o->warmup + o->steps; i++) {
        double t = now();
        lathe_program_run(p);
        if (i >= o->warmup) v[i - o->warmup] = now() - t;
    }
    if (rc == 0) {
        double mn = v[0];
        for (int i = 1; i < o->steps; i++) mn = fmin(mn, v[i]);
        double md = median(v, o->steps);
        printf("result workload=matmul n=%lld threads=%d steps=%d median_ms=%.3f min_ms=%.3f gflop=%.3f gflops=%.1f "
               "maxrss_mb=%.1f compile_s=%.3f\n",
               (long long)n, o->threads, o->steps, 1e3 * md, 1e3 * mn, 2.0 * n * n * n / 1e9, 2.0 * n * n * n / md / 1e9,
               maxrss_mb(), compile_s);
    }
    free(v);
    lathe_program_free(p);
    lathe_graph_free(g);
    return rc;
}

/* Compile time of the ResNet-18 training graph at o->batch and o->size:
 * the first compile in the process (cold, if the code cache,
 * $LATHE_CACHE_DIR, does not hold it yet) and a second one (warm: the code
 * from the cache). */
static int bench_compile(const options *o) {
    char size[64];
    snprintf(size, sizeof size, "size=%lld", (long long)o->size);
    const char *defs[] = {size};
    double t[2] = {0, 0};
    int nk = 0;
    for (int i = 0; i < 2; i++) {
        lathe_graph *g = trace("resnet18.lathe", o, 1, defs);
        if (!g) return 1;
        double t0 = now();
        lathe_program *p = lathe_compile(g, LATHE_BACKEND_JIT);
        t[i] = now() - t0;
        if (!p) {
            fail("compile", lathe_graph_error(g));
            lathe_graph_free(g);
            return 1;
        }
        nk = p->b.f->nk;
        lathe_program_free(p);
        lathe_graph_free(g);
    }
    printf("result workload=compile batch=%lld size=%lld threads=%d kernels=%d cold_s=%.3f warm_s=%.3f maxrss_mb=%.1f\n",
           (long long)o->batch, (long long)o->size, omp_get_max_threads(), nk, t[0], t[1], maxrss_mb());
    return 0;
}

/* The fp32 FMA peak: 24 independent accumulators (latency 4, two FMA ports:
 * 8 are enough to fill them) of the widest vectors the CPU has, on every
 * thread. */
enum { PEAK_ACC = 24 };
__attribute__((target("avx512f"))) static double fma_loop512(int64_t iters) {
    __m512 acc[PEAK_ACC], m = _mm512_set1_ps(0.999999f), a = _mm512_set1_ps(1e-6f);
    for (int k = 0; k < PEAK_ACC; k++) acc[k] = _mm512_set1_ps((float)k);
    for (int64_t i = 0; i < iters; i++)
#pragma GCC unroll 32
        for (int k = 0; k < PEAK_ACC; k++) acc[k] = _mm512_fmadd_ps(acc[k], m, a);
    float s = 0;
    for (int k = 0; k < PEAK_ACC; k++) s += _mm512_reduce_add_ps(acc[k]);
    return s;
}
__attribute__((target("avx2,fma"))) static double fma_loop256(int64_t iters) {
    __m256 acc[PEAK_ACC], m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-6f);
    for (int k = 0; k < PEAK_ACC / 2; k++) acc[k] = _mm256_set1_ps((float)k);
    for (int64_t i = 0; i < iters; i++)
#pragma GCC unroll 32
        for (int k = 0; k < PEAK_ACC / 2; k++) acc[k] = _mm256_fmadd_ps(acc[k], m, a);
    float s = 0, tmp[8];
    for (int k = 0; k < PEAK_ACC / 2; k++) {
        _mm256_storeu_ps(tmp, acc[k]);
        for (int l = 0; l < 8; l++) s += tmp[l];
    }
    return s;
}

static int bench_peak(const options *o) {
    __builtin_cpu_init();
    bool z = __builtin_cpu_supports("avx512f"), y = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (!z && !y) return fail("peak", "neither AVX-512 nor AVX2 with FMA: no peak measured");
    int lanes = z ? 16 : 8, accs = z ? PEAK_ACC : PEAK_ACC / 2, nt = o->threads > 0 ? o->threads : omp_get_max_threads();
    int64_t iters = 1 << 22;
    double *v = calloc((size_t)o->steps, sizeof *v), sink = 0;
    for (int r = 0; r < o->warmup + o->steps; r++) {
        double t = now();
#pragma omp parallel num_threads(nt) reduction(+ : sink)
        sink += z ? fma_loop512(iters) : fma_loop256(iters);
        if (r >= o->warmup) v[r - o->warmup] = now() - t;
    }
    double flops = 2.0 * lanes * accs * (double)iters * nt;
    double md = median(v, o->steps);
    printf("result workload=peak threads=%d vector_bytes=%d gflops=%.1f best_gflops=%.1f sink=%g\n", nt, 4 * lanes,
           flops / md / 1e9, flops / v[0] / 1e9, sink);
    free(v);
    return 0;
}

int main(int argc, char **argv) {
    static const struct option opts[] = {{"threads", required_argument, 0, 't'}, {"steps", required_argument, 0, 's'},
                                         {"warmup", required_argument, 0, 'w'}, {"batch", required_argument, 0, 'b'},
                                         {"size", required_argument, 0, 'z'},   {"n", required_argument, 0, 'n'},
                                         {"same-batch", no_argument, 0, 'S'},   {"ieee-denormals", no_argument, 0, 'I'},
                                         {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    static const char *usage =
        "usage: bench_lathe WORKLOAD [--threads T] [--steps N] [--warmup N] [--batch B] [--size S] [--n N]\n"
        "                            [--same-batch] [--ieee-denormals]\n"
        "\n"
        "One workload, timed; prints one 'result key=value ...' line (bench/run.py reads it).\n"
        "  resnet18   ResNet-18 training step (SGD momentum), --batch (1) x 3 x --size (64)^2\n"
        "  fashion    the Fashion-MNIST CNN's training step, --batch (64)\n"
        "  matmul     c = a @ b in f32, --n (1024) square\n"
        "  compile    JIT compile time of the ResNet-18 training graph, first and second (the\n"
        "             second's code from the cache; set LATHE_CACHE_DIR to an empty directory)\n"
        "  peak       the fp32 FMA peak in GFLOP/s on --threads\n"
        "  target     the target description of this host\n"
        "  spin       burn one core until killed (the busy neighbour)\n"
        "--threads: 0 (default) is OpenMP's default; --steps: timed steps (5); --warmup: untimed (2).\n"
        "Training steps: --same-batch trains on one batch again and again (it is memorized, and the\n"
        "gradients underflow), --ieee-denormals keeps IEEE denormals (default: flush-to-zero).\n";
    options o = {.threads = 0, .steps = 5, .warmup = 2, .batch = 0, .size = 64, .n = 1024};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 't': o.threads = atoi(optarg); break;
        case 's': o.steps = atoi(optarg); break;
        case 'w': o.warmup = atoi(optarg); break;
        case 'b': o.batch = atoll(optarg); break;
        case 'z': o.size = atoll(optarg); break;
        case 'n': o.n = atoll(optarg); break;
        case 'S': o.same_batch = true; break;
        case 'I': o.ieee = true; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (optind != argc - 1 || o.steps < 1 || o.warmup < 0 || o.threads < 0 || o.size < 1 || o.n < 1 || o.batch < 0) {
        fputs(usage, stderr);
        return 2;
    }
    o.workload = argv[optind];
    if (!strcmp(o.workload, "resnet18")) {
        if (!o.batch) o.batch = 1;
        return bench_resnet18(&o);
    }
    if (!strcmp(o.workload, "fashion")) {
        if (!o.batch) o.batch = 64;
        return bench_fashion(&o);
    }
    if (!strcmp(o.workload, "matmul")) return bench_matmul(&o);
    if (!strcmp(o.workload, "compile")) {
        if (!o.batch) o.batch = 1;
        return bench_compile(&o);
    }
    if (!strcmp(o.workload, "peak")) return bench_peak(&o);
    if (!strcmp(o.workload, "target")) {
        lt_target t;
        char err[4096], d[512];
        if (lt_target_init(&t, NULL, err, sizeof err) != LATHE_OK) return fail("target", err);
        lt_target_describe(&t, d, sizeof d);
        printf("result workload=target desc=%s\n", d);
        return 0;
    }
    if (!strcmp(o.workload, "spin")) {
        for (volatile uint64_t x = 0;; x++) {
        }
    }
    fprintf(stderr, "bench_lathe: unknown workload '%s'\n%s", o.workload, usage);
    return 2;
}
