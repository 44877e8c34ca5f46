/* bench_jit.c - how fast Lathe's LLVM JIT is, against baselines measured in
 * the same invocation:
 *
 *   1. a fused chain of 8 elementwise ops over a large f32 tensor, in GB/s,
 *      against memcpy of the same bytes on the same number of threads;
 *   2. JIT compile time of a ResNet-18 training graph (forward + backward)
 *      and the time of one training step (forward and backward, no optimizer);
 *   3. the JIT against the reference evaluator on small gradient-check graphs;
 *   4. ("fashion") one training step of the README's Fashion-MNIST CNN, batch
 *      64, with the time of every kernel on its own and the GFLOP/s of the
 *      contractions.
 *
 * Every figure is the median of several timed runs after a warm-up run.  Run
 * with --help for the flags.  Exits non-zero when anything fails. */
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <llvm-c/Core.h>
#include <omp.h>

#include "lathe_compiler.h"
#include "timing.h"
#include "lathe_models.h"
#include "program.h" /* the program's kernels (section 4) */

typedef struct {
    int threads;     /* threads used by the JIT and the baselines */
    int repeat;      /* timed runs per figure */
    int64_t size_mb; /* section 1 input size */
    bool quick;
    unsigned sections; /* bit i: run section i (1..4) */
} options;

/* ---- small helpers ------------------------------------------------------------------ */

/* xorshift64*: uniform in [lo, hi) */
static double rnd(uint64_t *s, double lo, double hi) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    uint64_t x = *s * 2685821657736338717ULL;
    return lo + (hi - lo) * (double)(x >> 11) / 9007199254740992.0;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Bind every input, param and buffer of g in each of the n programs to the
 * same random values: floats uniform in [-scale, scale) (running_var and
 * names ending in "pos": [0.5, 2)), i64 in [0, int_hi), bool half and half. */
static bool bind_random(lathe_graph *g, lathe_program **progs, int n, uint64_t seed, double scale, int64_t int_hi) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (int i = 0; i < lathe_graph_num_nodes(g); i++) {
        lathe_node *node = lathe_graph_node(g, i);
        const char *name = lathe_node_name(node);
        if (!name) continue;
        lathe_dtype t = lathe_node_dtype(node);
        int64_t k = lathe_node_numel(node);
        size_t nb = (size_t)k * lathe_dtype_size(t);
        void *buf = malloc(nb ? nb : 1);
        if (!buf) {
            fprintf(stderr, "bench_jit: out of memory binding %s\n", name);
            return false;
        }
        bool pos = ends_with(name, "pos") || strstr(name, "running_var") != NULL;
        bool zero = strstr(name, "running_mean") != NULL || strstr(name, "num_batches_tracked") != NULL;
        for (int64_t j = 0; j < k; j++) {
            double v = zero ? 0 : pos ? rnd(&s, 0.5, 2) : rnd(&s, -scale, scale);
            switch (t) {
            case LATHE_F32: ((float *)buf)[j] = (float)v; break;
            case LATHE_F64: ((double *)buf)[j] = v; break;
            case LATHE_I64: ((int64_t *)buf)[j] = zero ? 0 : (int64_t)floor(rnd(&s, 0, (double)int_hi)); break;
            case LATHE_BOOL: ((bool *)buf)[j] = rnd(&s, 0, 1) < 0.5; break;
            }
        }
        for (int p = 0; p < n; p++)
            if (lathe_program_set(progs[p], name, buf, nb) != LATHE_OK) {
                fprintf(stderr, "bench_jit: set %s: %s\n", name, lathe_program_error(progs[p]));
                free(buf);
                return false;
            }
        free(buf);
    }
    return true;
}

/* Seconds per run of p: one warm-up run, then `repeat` samples, each of
 * enough back-to-back runs to last at least min_s; the median sample.  <0 on
 * failure. */
static double time_runs(lathe_program *p, int repeat, double min_s, const char *what) {
    if (lathe_program_run(p) != LATHE_OK) {
        fprintf(stderr, "bench_jit: %s: run: %s\n", what, lathe_program_error(p));
        return -1;
    }
    double *v = malloc((size_t)repeat * sizeof *v);
    if (!v) return -1;
    for (int r = 0; r < repeat; r++) {
        int iters = 0;
        double t0 = now(), t;
        do {
            if (lathe_program_run(p) != LATHE_OK) {
                fprintf(stderr, "bench_jit: %s: run: %s\n", what, lathe_program_error(p));
                free(v);
                return -1;
            }
            iters++;
            t = now() - t0;
        } while (t < min_s);
        v[r] = t / iters;
    }
    double m = median(v, repeat);
    free(v);
    return m;
}

/* ---- machine -------------------------------------------------------------------------- */

static double load1(void) {
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1;
        fclose(f);
    }
    return l;
}

/* Busy and total jiffies of all CPUs, from /proc/stat; false if unreadable. */
static bool cpu_jiffies(double *busy, double *total) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return false;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
                   &v[7]);
    fclose(f);
    if (n < 5) return false;
    *total = 0;
    for (int i = 0; i < 8; i++) *total += (double)v[i];
    *busy = *total - (double)v[3] - (double)v[4]; /* less idle and iowait */
    return true;
}

/* Cores' worth of CPU that other processes used over the last half second
 * (this one sleeps meanwhile); -1 if unknown. */
static double others_busy(void) {
    double b0, t0, b1, t1;
    if (!cpu_jiffies(&b0, &t0)) return -1;
    nanosleep(&(struct timespec){0, 500000000}, NULL);
    if (!cpu_jiffies(&b1, &t1) || t1 <= t0) return -1;
    return (b1 - b0) / (t1 - t0) * omp_get_num_procs();
}

static void print_machine(const options *o) {
    char model[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "model name", 10)) {
                char *c = strchr(line, ':');
                if (c) {
                    c++;
                    while (*c == ' ' || *c == '\t') c++;
                    c[strcspn(c, "\n")] = 0;
                    snprintf(model, sizeof model, "%s", c);
                }
                break;
            }
        fclose(f);
    }
    char load[128] = "unknown";
    f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fgets(load, sizeof load, f)) load[strcspn(load, "\n")] = 0;
        fclose(f);
    }
    char *host = LLVMGetHostCPUName();
    char date[64];
    time_t t = time(NULL);
    struct tm tmv;
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S %Z", localtime_r(&t, &tmv));
    printf("machine: %s, %d cores, LLVM host CPU %s\n", model, omp_get_num_procs(), host ? host : "?");
    printf("threads: %d   repeat: %d (median of that many timed runs)%s\n", o->threads, o->repeat,
           o->quick ? "   [--quick]" : "");
    printf("date: %s   load average: %s\n", date, load);
    LLVMDisposeMessage(host);
    double busy = others_busy();
    if (busy >= 0) printf("other processes' CPU use at the start: %.2f of %d cores\n", busy, omp_get_num_procs());
    if (busy > 0.25)
        printf("warning: the machine is busy: figures are noisy, and OpenMP barriers wait for descheduled\n"
               "         threads when threads > idle cores\n");
}

/* ---- 1. fused elementwise bandwidth -------------------------------------------------- */

/* The chain, in C, for checking: the same ops in the same order. */
static float chain_ref(float x) {
    float v = x * 1.5f;
    v = v + 0.25f;
    v = v > 0 ? v : 0;
    v = v - 0.5f;
    v = v * x;
    v = fabsf(v);
    v = v + x;
    return v > 0.1f ? v : 0.1f;
}

static void par_memcpy(float *dst, const float *src, int64_t n, int threads) {
    if (threads <= 1) {
        memcpy(dst, src, (size_t)n * sizeof *dst);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int64_t lo = n * t / nt, hi = n * (t + 1) / nt;
        memcpy(dst + lo, src + lo, (size_t)(hi - lo) * sizeof *dst);
    }
}

/* y = max(2.5*x, 0.1)-like one-pass loop in plain C (a streaming read and
 * write with normal stores, as a compiled kernel does). */
static void par_scale(float *dst, const float *src, int64_t n, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float v = src[i] * 2.5f;
        dst[i] = v > 0.1f ? v : 0.1f;
    }
}

static int bench_elementwise(const options *o) {
    int64_t n = o->size_mb * 1024 * 1024 / (int64_t)sizeof(float);
    double bytes = 2.0 * (double)n * sizeof(float); /* one read, one write */
    printf("\n== 1. fused elementwise chain: %lld MB f32 in (%lld elements), 8 ops ==\n", (long long)o->size_mb,
           (long long)n);
    int rc = 1;
    lathe_graph *g = lathe_graph_new();
    float *src = NULL, *dst = NULL, *out = NULL;
    lathe_program *p = NULL;
    if (!g) goto done;
    lathe_node *x = lathe_input(g, "x", LATHE_F32, LATHE_DIMS(n));
    lathe_node *v = lathe_mul(g, x, lathe_scalar(g, LATHE_F32, 1.5));  /* f1 */
    v = lathe_add(g, v, lathe_scalar(g, LATHE_F32, 0.25));             /* f2 */
    v = lathe_relu(g, v);                                               /* f3 */
    v = lathe_sub(g, v, lathe_scalar(g, LATHE_F32, 0.5));              /* f4 */
    v = lathe_mul(g, v, x);                                             /* f5 */
    v = lathe_abs(g, v);                                                /* f6 */
    v = lathe_add(g, v, x);                                             /* f7 */
    v = lathe_maximum(g, v, lathe_scalar(g, LATHE_F32, 0.1));          /* f8 */
    lathe_output(g, "y", v);
    if (lathe_graph_status(g) != LATHE_OK) {
        fprintf(stderr, "bench_jit: elementwise graph: %s\n", lathe_graph_error(g));
        goto done;
    }
    double t0 = now();
    p = lathe_compile(g, LATHE_BACKEND_JIT);
    double tc = now() - t0;
    if (!p) {
        fprintf(stderr, "bench_jit: elementwise chain: %s\n", lathe_graph_error(g));
        goto done;
    }
    lathe_program_set_threads(p, o->threads);
    src = aligned_alloc(64, (size_t)n * sizeof *src);
    dst = aligned_alloc(64, (size_t)n * sizeof *dst);
    out = malloc((size_t)n * sizeof *out);
    if (!src || !dst || !out) {
        fprintf(stderr, "bench_jit: out of memory for %lld MB buffers\n", (long long)o->size_mb);
        goto done;
    }
    uint64_t s = 42;
    for (int64_t i = 0; i < n; i++) src[i] = (float)rnd(&s, -2, 2);
    memset(dst, 0, (size_t)n * sizeof *dst); /* fault the pages in */
    if (lathe_program_set(p, "x", src, (size_t)n * sizeof *src) != LATHE_OK) {
        fprintf(stderr, "bench_jit: set x: %s\n", lathe_program_error(p));
        goto done;
    }
    /* JIT */
    double jit_s = time_runs(p, o->repeat, 0.0, "elementwise");
    if (jit_s < 0) goto done;
    if (lathe_program_get(p, "y", out, (size_t)n * sizeof *out) != LATHE_OK) {
        fprintf(stderr, "bench_jit: get y: %s\n", lathe_program_error(p));
        goto done;
    }
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i += 997) {
        float want = chain_ref(src[i]);
        if (!(fabsf(out[i] - want) <= 1e-5f * fabsf(want) + 1e-6f)) {
            if (!bad) fprintf(stderr, "bench_jit: elementwise y[%lld] = %.9g, want %.9g\n", (long long)i, out[i], want);
            bad++;
        }
    }
    if (bad) goto done;
    /* baselines: memcpy, and a one-op C loop, on the same threads */
    double *tv = malloc((size_t)o->repeat * sizeof *tv), *tl = malloc((size_t)o->repeat * sizeof *tl);
    if (!tv || !tl) {
        fprintf(stderr, "bench_jit: out of memory\n");
        free(tv);
        free(tl);
        goto done;
    }
    par_memcpy(dst, src, n, o->threads);
    for (int r = 0; r < o->repeat; r++) {
        double a = now();
        par_memcpy(dst, src, n, o->threads);
        tv[r] = now() - a;
    }
    par_scale(dst, src, n, o->threads);
    for (int r = 0; r < o->repeat; r++) {
        double a = now();
        par_scale(dst, src, n, o->threads);
        tl[r] = now() - a;
    }
    double mc_s = median(tv, o->repeat), loop_s = median(tl, o->repeat);
    free(tv);
    free(tl);
    double ab = (double)lathe_program_arena_bytes(p);
    printf("kernels: %d   arena: %.1f MB = %.3f x (in + out = %.0f MB): %s\n", p->b.f->nk, ab / 1048576.0,
           ab / bytes, bytes / 1048576.0, ab <= bytes * 1.01 ? "no intermediate buffers" : "INTERMEDIATES ALLOCATED");
    printf("compile: %.3f s   result checked against C on every 997th element\n", tc);
    printf("%-44s %8.2f ms  %7.2f GB/s\n", "JIT fused chain (8 ops)", jit_s * 1e3, bytes / jit_s / 1e9);
    printf("%-44s %8.2f ms  %7.2f GB/s\n",
           o->threads > 1 ? "baseline memcpy (OpenMP, 1 chunk per thread)" : "baseline memcpy (1 thread)", mc_s * 1e3,
           bytes / mc_s / 1e9);
    printf("%-44s %8.2f ms  %7.2f GB/s\n", "C loop y=max(2.5x,0.1), same threads", loop_s * 1e3, bytes / loop_s / 1e9);
    printf("ratio JIT / memcpy: %.1f%%   JIT / C loop: %.1f%%   (bytes = read + written, GB = 1e9 B)\n",
           100 * mc_s / jit_s, 100 * loop_s / jit_s);
    rc = 0;
done:
    free(src);
    free(dst);
    free(out);
    lathe_program_free(p);
    lathe_graph_free(g);
    return rc;
}

/* ---- 2. ResNet-18 training graph ------------------------------------------------------ */

static int bench_resnet(const options *o) {
    const int64_t hw = 64, classes = 1000;
    printf("\n== 2. ResNet-18 training graph: f32, input 1x3x%lldx%lld, %lld classes, width 64 ==\n", (long long)hw,
           (long long)hw, (long long)classes);
    int rc = 1;
    lathe_program *p = NULL;
    lathe_graph *g = lathe_graph_new();
    if (!g) goto done;
    double t0 = now();
    lathe_node *x = lathe_input(g, "x", LATHE_F32, LATHE_DIMS(1, 3, hw, hw));
    lathe_resnet_config cfg = {.dtype = LATHE_F32, .num_classes = classes, .width = 64, .training = true};
    lathe_node *logits = lathe_resnet18(g, x, &cfg);
    lathe_node *labels = lathe_input(g, "labels", LATHE_F32, LATHE_DIMS(1, classes));
    /* loss = (prediction - labels).sum(); loss.backward() */
    lathe_node *loss = lathe_sum(g, lathe_sub(g, logits, labels), 0, NULL, false);
    lathe_output(g, "loss", loss);
    if (lathe_graph_status(g) != LATHE_OK) {
        fprintf(stderr, "bench_jit: resnet18: %s\n", lathe_graph_error(g));
        goto done;
    }
    int fwd_nodes = lathe_graph_num_nodes(g);
    if (lathe_backward(g, 1, &loss, NULL) != LATHE_OK) {
        fprintf(stderr, "bench_jit: resnet18 backward: %s\n", lathe_graph_error(g));
        goto done;
    }
    double trace_s = now() - t0;
    int ncomp = o->quick ? 1 : 3;
    double tc[3];
    for (int i = 0; i < ncomp; i++) {
        lathe_program_free(p);
        t0 = now();
        p = lathe_compile(g, LATHE_BACKEND_JIT);
        tc[i] = now() - t0;
        if (!p) {
            fprintf(stderr, "bench_jit: resnet18: %s\n", lathe_graph_error(g));
            goto done;
        }
    }
    double compile_s = median(tc, ncomp);
    printf("graph: %d nodes (%d forward), %d outputs, %d kernels; traced + differentiated in %.3f s\n",
           lathe_graph_num_nodes(g), fwd_nodes, lathe_graph_num_outputs(g), p->b.f->nk, trace_s);
    printf("compile (lathe_compile, JIT): %.3f s, median of %d (min %.3f, max %.3f)   [aim <= 1.5 s]\n", compile_s,
           ncomp, tc[0], tc[ncomp - 1]);
    if (!o->quick) { /* where compile time goes, through the dump stages (one module, this thread) */
        double ts[2];
        const lathe_stage stages[2] = {LATHE_STAGE_FUSED, LATHE_STAGE_LLVM};
        for (int i = 0; i < 2; i++) {
            FILE *f = fopen("/dev/null", "w");
            t0 = now();
            lathe_status st = f ? lathe_dump(g, stages[i], NULL, LATHE_DUMP_TEXT, f) : LATHE_ERR_IO;
            ts[i] = now() - t0;
            if (f) fclose(f);
            if (st != LATHE_OK) {
                fprintf(stderr, "bench_jit: dump --stage %s: %s\n", lathe_stage_name(stages[i]), lathe_graph_error(g));
                goto done;
            }
        }
        printf("  breakdown (dump stages, one module on one thread): decompose+fuse+plan %.3f s,"
               " + lower + O3 %.3f s;\n  the rest of a compile is machine-code emission and JIT linking"
               " (split over %d thread(s) in lathe_compile)\n",
               ts[0], ts[1], omp_get_max_threads());
    }
    printf("arena: %.1f MB\n", (double)lathe_program_arena_bytes(p) / 1048576.0);
    lathe_program_set_threads(p, o->threads);
    if (!bind_random(g, &p, 1, 11, 0.05, 1)) goto done;
    double step = time_runs(p, o->repeat, 0.0, "resnet18 step");
    if (step < 0) goto done;
    float lv = 0;
    if (lathe_program_get(p, "loss", &lv, sizeof lv) != LATHE_OK) {
        fprintf(stderr, "bench_jit: get loss: %s\n", lathe_program_error(p));
        goto done;
    }
    float gb[1000];
    if (lathe_program_get(p, "grad.conv1.weight", NULL, 0) == LATHE_ERR_NAME ||
        lathe_program_get(p, "grad.fc.bias", gb, sizeof gb) != LATHE_OK) {
        fprintf(stderr, "bench_jit: resnet18 gradients: %s\n", lathe_program_error(p));
        goto done;
    }
    if (!isfinite(lv) || !isfinite(gb[0])) {
        fprintf(stderr, "bench_jit: resnet18 loss %g, grad.fc.bias[0] %g: not finite\n", lv, gb[0]);
        goto done;
    }
    printf("training step (forward + backward, no optimizer): %.2f ms   (loss %.4g)\n", step * 1e3, lv);
    printf("  for reference (DESIGN.md): PyTorch 1.13 eager, bs 1, 2 threads, with SGD momentum: ~33 ms\n");
    rc = 0;
done:
    lathe_program_free(p);
    lathe_graph_free(g);
    return rc;
}

/* ---- 3. JIT against the reference evaluator ------------------------------------------- */

#define D LATHE_DIMS
static lathe_node *in(lathe_graph *g, const char *name, int r, const int64_t *s) {
    lathe_node *n = lathe_input(g, name, LATHE_F32, r, s);
    if (n) lathe_set_requires_grad(n, true);
    return n;
}
static lathe_node *prm(lathe_graph *g, const char *name, int r, const int64_t *s) {
    return lathe_param(g, name, LATHE_F32, r, s, true);
}

static lathe_node *g_conv(lathe_graph *g) {
    lathe_node *y = lathe_conv2d(g, in(g, "x", D(2, 8, 16, 16)), prm(g, "conv.weight", D(16, 8, 3, 3)),
                                 prm(g, "conv.bias", D(16)), 1, 1, 1, 1);
    return lathe_sum(g, lathe_relu(g, y), 0, NULL, false);
}
static lathe_node *g_bn(lathe_graph *g) {
    return lathe_batch_norm2d(g, in(g, "x", D(4, 16, 8, 8)), prm(g, "bn.weight", D(16)), prm(g, "bn.bias", D(16)),
                              lathe_buffer(g, "bn.running_mean", LATHE_F32, D(16)),
                              lathe_buffer(g, "bn.running_var", LATHE_F32, D(16)), true, 0.1, 1e-5);
}
static lathe_node *g_ce(lathe_graph *g) {
    lathe_node *l = lathe_matmul(g, in(g, "x", D(16, 64)), prm(g, "w", D(64, 32)));
    lathe_node *p = lathe_softmax(g, l, 1);
    lathe_node *ce = lathe_cross_entropy(g, l, lathe_input(g, "labels", LATHE_I64, D(16)), LATHE_REDUCE_MEAN);
    return lathe_add(g, ce, lathe_sum(g, lathe_mul(g, p, p), 0, NULL, false));
}
static lathe_node *g_maxpool(lathe_graph *g) { return lathe_max_pool2d(g, in(g, "x", D(2, 8, 32, 32)), 3, 2, 1); }
static lathe_node *g_chain(lathe_graph *g) {
    lathe_node *x = in(g, "x", D(64, 256)), *y = in(g, "y", D(256));
    lathe_node *v = lathe_tanh(g, lathe_mul(g, lathe_add(g, x, y), x));
    v = lathe_sub(g, lathe_exp(g, lathe_neg(g, lathe_abs(g, v))), lathe_sigmoid(g, y));
    return lathe_div(g, v, in(g, "z_pos", D(64, 256)));
}
static lathe_node *g_pool_fc(lathe_graph *g) {
    lathe_node *h = lathe_flatten(g, lathe_adaptive_avg_pool2d(g, in(g, "x", D(4, 64, 8, 8)), 1, 1), 1, -1);
    return lathe_linear(g, h, prm(g, "fc.weight", D(10, 64)), prm(g, "fc.bias", D(10)));
}

typedef struct {
    const char *label;
    lathe_node *(*build)(lathe_graph *);
    int64_t int_hi; /* labels in [0, int_hi) */
} vs_graph;

static int bench_vs_eval(const options *o) {
    static const vs_graph graphs[] = {
        {"conv2d+bias+relu+sum  x[2,8,16,16] w[16,8,3,3]", g_conv, 1},
        {"batch_norm2d train    x[4,16,8,8]", g_bn, 1},
        {"matmul+softmax+CE     [16,64]@[64,32]", g_ce, 32},
        {"max_pool2d k3 s2 p1   x[2,8,32,32]", g_maxpool, 1},
        {"elementwise chain     [64,256] (exp,tanh,...)", g_chain, 1},
        {"adaptive_avg+linear   x[4,64,8,8] -> 10", g_pool_fc, 1},
    };
    const int ng = (int)(sizeof graphs / sizeof graphs[0]);
    double min_s = o->quick ? 0.005 : 0.05;
    printf("\n== 3. JIT vs reference evaluator, forward + backward (random cotangent) ==\n");
    printf("(evaluator: 1 thread, double arithmetic; JIT: %d thread(s); each figure the median of %d samples of\n"
           " back-to-back runs lasting >= %.0f ms)\n",
           o->threads, o->repeat, min_s * 1e3);
    printf("%-48s %6s %12s %12s %9s\n", "graph", "nodes", "eval ms", "JIT ms", "speedup");
    int rc = 0;
    double logsum = 0;
    int nok = 0;
    for (int i = 0; i < ng; i++) {
        lathe_graph *g = lathe_graph_new();
        lathe_program *pr[2] = {NULL, NULL};
        bool ok = false;
        if (!g) goto next;
        lathe_node *y = graphs[i].build(g);
        if (y) lathe_output(g, "y", y);
        if (lathe_graph_status(g) != LATHE_OK) {
            fprintf(stderr, "bench_jit: %s: %s\n", graphs[i].label, lathe_graph_error(g));
            goto next;
        }
        {
            int64_t k = lathe_node_numel(y);
            float *c = malloc((size_t)(k ? k : 1) * sizeof *c);
            if (!c) goto next;
            uint64_t s = 7 + (uint64_t)i;
            for (int64_t j = 0; j < k; j++) c[j] = (float)rnd(&s, -1, 1);
            lathe_node *cot = lathe_const(g, LATHE_F32, lathe_node_rank(y), lathe_node_shape(y), c);
            free(c);
            if (lathe_backward(g, 1, &y, &cot) != LATHE_OK) {
                fprintf(stderr, "bench_jit: %s: backward: %s\n", graphs[i].label, lathe_graph_error(g));
                goto next;
            }
        }
        pr[0] = lathe_compile(g, LATHE_BACKEND_EVAL);
        pr[1] = pr[0] ? lathe_compile(g, LATHE_BACKEND_JIT) : NULL;
        if (!pr[0] || !pr[1]) {
            fprintf(stderr, "bench_jit: %s: %s\n", graphs[i].label, lathe_graph_error(g));
            goto next;
        }
        lathe_program_set_threads(pr[1], o->threads);
        if (!bind_random(g, pr, 2, 100 + (uint64_t)i, 1.0, graphs[i].int_hi)) goto next;
        double te = time_runs(pr[0], o->repeat, min_s, graphs[i].label);
        double tj = te < 0 ? -1 : time_runs(pr[1], o->repeat, min_s, graphs[i].label);
        if (tj < 0) goto next;
        printf("%-48s %6d %12.4f %12.4f %8.1fx\n", graphs[i].label, lathe_graph_num_nodes(g), te * 1e3, tj * 1e3,
               te / tj);
        logsum += log(te / tj);
        nok++;
        ok = true;
    next:
        if (!ok) rc = 1;
        lathe_program_free(pr[0]);
        lathe_program_free(pr[1]);
        lathe_graph_free(g);
    }
    if (nok) printf("geometric mean speedup: %.1fx over %d graphs\n", exp(logsum / nok), nok);
    return rc;
}

/* ---- 4. the Fashion-MNIST CNN's training step ------------------------------------------ */

/* The README's model, traced with the C API: conv 1->32 3x3 pad 1, batch norm
 * (training, running statistics updated), relu, maxpool 2; conv 32->64 the
 * same; flatten; linear 3136->128, relu, linear 128->10; cross-entropy;
 * backward for every parameter.  Names follow a torch.nn.Sequential. */
static lathe_node *fashion_bn(lathe_graph *g, const char *name, lathe_node *x) {
    char s[5][64];
    const char *suffix[] = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"};
    for (int i = 0; i < 5; i++) snprintf(s[i], sizeof s[i], "%s.%s", name, suffix[i]);
    int64_t c = lathe_node_shape(x)[1];
    lathe_node *w = lathe_param(g, s[0], LATHE_F32, D(c), true), *b = lathe_param(g, s[1], LATHE_F32, D(c), true);
    lathe_node *rm = lathe_buffer(g, s[2], LATHE_F32, D(c)), *rv = lathe_buffer(g, s[3], LATHE_F32, D(c));
    lathe_node *nbt = lathe_buffer(g, s[4], LATHE_I64, 0, NULL);
    lathe_no_grad_begin(g);
    lathe_update(g, nbt, lathe_add(g, nbt, lathe_scalar(g, LATHE_I64, 1)));
    lathe_no_grad_end(g);
    return lathe_batch_norm2d(g, x, w, b, rm, rv, true, 0.1, 1e-5);
}

static lathe_node *fashion_model(lathe_graph *g, int64_t batch) {
    lathe_node *x = lathe_input(g, "x", LATHE_F32, D(batch, 1, 28, 28));
    lathe_node *labels = lathe_input(g, "labels", LATHE_I64, D(batch));
    lathe_node *h = lathe_conv2d(g, x, lathe_param(g, "0.weight", LATHE_F32, D(32, 1, 3, 3), true),
                                 lathe_param(g, "0.bias", LATHE_F32, D(32), true), 1, 1, 1, 1);
    h = lathe_max_pool2d(g, lathe_relu(g, fashion_bn(g, "1", h)), 2, 2, 0);
    h = lathe_conv2d(g, h, lathe_param(g, "4.weight", LATHE_F32, D(64, 32, 3, 3), true),
                     lathe_param(g, "4.bias", LATHE_F32, D(64), true), 1, 1, 1, 1);
    h = lathe_max_pool2d(g, lathe_relu(g, fashion_bn(g, "5", h)), 2, 2, 0);
    h = lathe_flatten(g, h, 1, -1);
    h = lathe_relu(g, lathe_linear(g, h, lathe_param(g, "9.weight", LATHE_F32, D(128, 3136), true),
                                   lathe_param(g, "9.bias", LATHE_F32, D(128), true)));
    h = lathe_linear(g, h, lathe_param(g, "11.weight", LATHE_F32, D(10, 128), true),
                     lathe_param(g, "11.bias", LATHE_F32, D(10), true));
    lathe_node *loss = lathe_cross_entropy(g, h, labels, LATHE_REDUCE_MEAN);
    if (loss) lathe_output(g, "loss", loss);
    return loss;
}

/* Floating-point operations of a kernel's contraction (2 per multiply-add,
 * the nominal count: a strided backward-input counts as its forward); 0 when
 * it has none. */
static double kernel_flops(const lt_fused *f, const lt_kernel *k) {
    double fl = 0;
    for (int j = 0; j < k->nnodes; j++) fl += lt_node_flops(f->g->nodes[k->nodes[j]]);
    return fl;
}

/* "conv2d+add+relu": the ops fused into k, root last, at most len chars. */
static void kernel_label(const lt_fused *f, const lt_kernel *k, char *s, size_t len) {
    size_t used = 0;
    s[0] = 0;
    for (int j = 0; j < k->nnodes && used + 1 < len; j++) {
        const lathe_node *n = f->g->nodes[k->nodes[j]];
        if (lt_ops[n->op].kind == LT_SHAPE && n->op != LT_OP_SLICE_BACKWARD && j + 1 < k->nnodes) continue;
        int w = snprintf(s + used, len - used, "%s%s", used ? "+" : "", lt_ops[n->op].name);
        if (w < 0) break;
        used += (size_t)w;
    }
    if (used >= len && len > 4) strcpy(s + len - 4, "...");
}

/* Run kernel fn over [0, range) as the executor does: each of nt threads
 * its contiguous share, or thread 0 alone when the range is too small. */
static void run_kernel(lathe_kernel_fn fn, int64_t range, uint8_t *arena, int nt) {
    if (nt <= 1 || range < 2 * nt) {
        if (range > 0) fn(arena, 0, range);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        int64_t lo = range * t / n, hi = range * (t + 1) / n;
        if (lo < hi) fn(arena, lo, hi);
    }
}

/* Per kernel: the median over `repeat` samples of back-to-back calls lasting
 * >= min_s, each sample starting from the arena of a real step (kernels that
 * write in place would otherwise feed on their own output). */
static int fashion_kernels(const options *o, lathe_program *p, double step_s) {
    const lt_fused *f = p->b.f; /* the program's own kernels, in its plan's arena */
    int rc = 1;
    double *ms = calloc((size_t)f->nk + 1, sizeof *ms), *mn = calloc((size_t)f->nk + 1, sizeof *mn);
    double *v = calloc((size_t)o->repeat, sizeof *v);
    size_t asz = (size_t)((f->arena_size + 63) & ~(int64_t)63);
    uint8_t *snap = aligned_alloc(64, asz ? asz : 64), *arena = aligned_alloc(64, asz ? asz : 64);
    if (!ms || !mn || !v || !snap || !arena) {
        fprintf(stderr, "bench_jit: out of memory\n");
        goto done;
    }
    const lathe_rt_kernel *kt = lathe_program_rt(p)->kernels;
    memcpy(snap, lathe_program_arena(p), (size_t)f->arena_size);
    double min_s = o->quick ? 0.002 : 0.02, total = 0;
    for (int i = 0; i < f->nk; i++) {
        for (int r = 0; r < o->repeat; r++) {
            memcpy(arena, snap, (size_t)f->arena_size);
            run_kernel(kt[i].fn, kt[i].range, arena, o->threads); /* warm */
            int iters = 0;
            double t0 = now(), t;
            do {
                run_kernel(kt[i].fn, kt[i].range, arena, o->threads);
                iters++;
                t = now() - t0;
            } while (t < min_s);
            v[r] = t / iters;
        }
        ms[i] = median(v, o->repeat) * 1e3; /* sorts v */
        mn[i] = v[0] * 1e3;
        total += ms[i];
    }
    /* all kernels in order, as a step runs them (no buffer updates) */
    for (int r = 0; r < o->repeat; r++) {
        memcpy(arena, snap, (size_t)f->arena_size);
        int iters = 0;
        double t0 = now(), t;
        do {
            for (int i = 0; i < f->nk; i++) run_kernel(kt[i].fn, kt[i].range, arena, o->threads);
            iters++;
            t = now() - t0;
        } while (t < min_s * 5);
        v[r] = t / iters;
    }
    double seq = median(v, o->repeat);
    printf("per kernel (each on its own, %d thread(s), median of %d; sorted by time):\n", o->threads, o->repeat);
    printf("  %-5s %-34s %-18s %9s %9s %6s %9s\n", "k", "ops (index ops omitted)", "writes", "ms", "min ms", "%", "GFLOP/s");
    int *order = malloc((size_t)f->nk * sizeof *order);
    if (!order) goto done;
    for (int i = 0; i < f->nk; i++) order[i] = i;
    for (int i = 1; i < f->nk; i++) /* insertion sort, slowest first */
        for (int j = i; j > 0 && ms[order[j]] > ms[order[j - 1]]; j--) {
            int tmp = order[j];
            order[j] = order[j - 1];
            order[j - 1] = tmp;
        }
    double shown = 0;
    int hidden = 0;
    for (int r = 0; r < f->nk; r++) {
        int i = order[r];
        const lt_kernel *k = &f->ks[i];
        if (r >= 16 && ms[i] < 0.01 * total) {
            hidden++;
            continue;
        }
        char lb[64], ts[64], name[16];
        kernel_label(f, k, lb, sizeof lb);
        lt_type_str(f->bufs[k->buf].dtype, k->rank, k->shape, ts, sizeof ts);
        snprintf(name, sizeof name, "k%d", i);
        double fl = kernel_flops(f, k);
        char gf[16] = "";
        if (fl > 0) snprintf(gf, sizeof gf, "%.1f", fl / (ms[i] * 1e-3) / 1e9);
        printf("  %-5s %-34.34s %-18.18s %9.3f %9.3f %5.1f%% %9s\n", name, lb, ts, ms[i], mn[i], 100 * ms[i] / total, gf);
        shown += ms[i];
    }
    if (hidden) printf("  (%d more kernels, under 1%% each: %.3f ms)\n", hidden, total - shown);
    printf("  sum of kernels %.3f ms; all of them in order %.3f ms; the step %.3f ms\n", total, seq * 1e3, step_s * 1e3);
    free(order);
    rc = 0;
done:
    free(ms);
    free(mn);
    free(v);
    free(snap);
    free(arena);
    return rc;
}

static int bench_fashion(const options *o) {
    const int64_t batch = 64;
    printf("\n== 4. Fashion-MNIST CNN training step: f32, batch %lld, 1x28x28 -> conv32 bn relu pool -> conv64 bn"
           " relu pool\n      -> linear 128 relu -> linear 10 -> cross-entropy, backward for every parameter ==\n",
           (long long)batch);
    int rc = 1;
    lathe_program *p = NULL;
    lathe_graph *g = lathe_graph_new();
    if (!g) goto done;
    lathe_node *loss = fashion_model(g, batch);
    if (!loss || lathe_backward(g, 1, &loss, NULL) != LATHE_OK) {
        fprintf(stderr, "bench_jit: fashion: %s\n", lathe_graph_error(g));
        goto done;
    }
    int ncomp = o->quick ? 1 : 3;
    double tc[3];
    for (int i = 0; i < ncomp; i++) {
        lathe_program_free(p);
        double t0 = now();
        p = lathe_compile(g, LATHE_BACKEND_JIT);
        tc[i] = now() - t0;
        if (!p) {
            fprintf(stderr, "bench_jit: fashion: %s\n", lathe_graph_error(g));
            goto done;
        }
    }
    printf("graph: %d nodes, %d kernels; compile (lathe_compile, JIT): %.3f s, median of %d\n",
           lathe_graph_num_nodes(g), p->b.f->nk, median(tc, ncomp), ncomp);
    printf("arena: %.1f MB\n", (double)lathe_program_arena_bytes(p) / 1048576.0);
    lathe_program_set_threads(p, o->threads);
    if (!bind_random(g, &p, 1, 21, 0.5, 10)) goto done;
    double step = time_runs(p, o->repeat, o->quick ? 0.05 : 0.5, "fashion step");
    if (step < 0) goto done;
    float lv = 0;
    if (lathe_program_get(p, "loss", &lv, sizeof lv) != LATHE_OK || !isfinite(lv)) {
        fprintf(stderr, "bench_jit: fashion: loss %g: %s\n", lv, lathe_program_error(p));
        goto done;
    }
    printf("training step (forward + backward, no optimizer): %.3f ms   (loss %.4g)\n", step * 1e3, lv);
    printf("  one epoch of 60000 samples (938 steps) at this rate: %.1f s\n", 938 * step);
    rc = fashion_kernels(o, p, step);
done:
    lathe_program_free(p);
    lathe_graph_free(g);
    return rc;
}

/* ---- main ------------------------------------------------------------------------------ */

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench_jit [--threads N] [--repeat N] [--size-mb N] [--quick]\n"
            "\n"
            "Benchmarks Lathe's LLVM JIT, each figure against a baseline run in the same\n"
            "invocation, as medians of repeated runs after a warm-up:\n"
            "  1. a fused chain of 8 elementwise ops over an f32 tensor, in GB/s (bytes read +\n"
            "     written), against memcpy of the same bytes on the same threads (OpenMP\n"
            "     chunks when threads > 1) and a one-op C loop;\n"
            "  2. JIT compile time of a ResNet-18 training graph (1x3x64x64, 1000 classes,\n"
            "     forward + backward) and its ms per training step;\n"
            "  3. the JIT against the reference evaluator on small graphs with backward;\n"
            "  4. (\"fashion\") a training step of the README's Fashion-MNIST CNN, batch 64,\n"
            "     and the time and GFLOP/s of each of its kernels on its own.\n"
            "\n"
            "  --threads N   threads for the JIT programs and the baselines (default: OpenMP's\n"
            "                default, normally every core)\n"
            "  --repeat N    timed runs per figure, median reported (default 5)\n"
            "  --size-mb N   input size of the elementwise chain in MB (default 64)\n"
            "  --section N   run only section N (1, 2, 3, or 4 = fashion); may be repeated;\n"
            "                sections 1-3 run by default\n"
            "  --quick       smoke run: 16 MB, 3 repeats, one ResNet compile, short samples\n"
            "                (explicit --size-mb/--repeat still win)\n"
            "  -h, --help    this text\n");
}

int main(int argc, char **argv) {
    options o = {.threads = 0, .repeat = -1, .size_mb = -1, .quick = false, .sections = 0};
    static const struct option longopts[] = {
        {"threads", required_argument, NULL, 't'}, {"repeat", required_argument, NULL, 'r'},
        {"size-mb", required_argument, NULL, 's'}, {"quick", no_argument, NULL, 'q'},
        {"section", required_argument, NULL, 'S'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        char *end = NULL;
        long v = 0;
        if (c == 'S' && !strcmp(optarg, "fashion")) optarg = "4";
        if (c == 't' || c == 'r' || c == 's' || c == 'S') {
            v = strtol(optarg, &end, 10);
            if (!*optarg || *end || v < (c == 't' ? 0 : 1) || v > (c == 'S' ? 4 : 1000000)) {
                fprintf(stderr, "bench_jit: bad value '%s' for --%s\n", optarg,
                        c == 't' ? "threads" : c == 'r' ? "repeat" : c == 's' ? "size-mb" : "section");
                return 2;
            }
        }
        switch (c) {
        case 't': o.threads = (int)v; break;
        case 'r': o.repeat = (int)v; break;
        case 's': o.size_mb = v; break;
        case 'q': o.quick = true; break;
        case 'S': o.sections |= 1u << v; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "bench_jit: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* figures and errors in order when both go to a terminal or file */
    if (o.threads == 0) o.threads = omp_get_max_threads();
    if (o.repeat < 0) o.repeat = o.quick ? 3 : 5;
    if (o.size_mb < 0) o.size_mb = o.quick ? 16 : 64;
    if (!o.sections) o.sections = 0xe;

    print_machine(&o);
    int fails = 0;
    if (o.sections & 2) fails += bench_elementwise(&o);
    if (o.sections & 4) fails += bench_resnet(&o);
    if (o.sections & 8) fails += bench_vs_eval(&o);
    if (o.sections & 16) fails += bench_fashion(&o);
    double busy = others_busy();
    printf("\nload average at the end: %.2f; other processes' CPU use: %.2f cores\n", load1(), busy);
    if (fails) fprintf(stderr, "bench_jit: %d section(s) failed\n", fails);
    else printf("\nall sections ran\n");
    return fails ? 1 : 0;
}
