/* test_mathlib.c - the emitted exp, log, tanh, sigmoid, erf and rsqrt against libm.
 *
 * One module holds a loop kernel per function and dtype,
 *     void k_exp_f32(float *in, float *out, i64 n)  // out[i] = exp(in[i])
 * twice: once optimized with default<O3> for the host (the loops must
 * vectorize and call nothing but intrinsics), once left as emitted (the math
 * functions stay out-of-line calls).  Both are JIT-compiled with ORC LLJIT.
 * Each function is swept over dense grids of its useful range, over bit
 * patterns spread across every exponent, and over the special values and the
 * overflow and underflow thresholds; the error is measured in ulp of the
 * output type against libm in higher precision (double for f32, long double
 * for f64).  Both builds must give the same bits, the error must stay under
 * the bound in the table, and special values must come out exactly.
 *
 * Under sanitizers (detected at compile time, or LATHE_SANITIZE set) the
 * sweeps are 8x sparser. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "mathlib.h"
#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

/* ---- the functions under test ------------------------------------------- */

static double sigmoid_d(double x) {
    double e = exp(-fabs(x));
    return (x < 0 ? e : 1.0) / (1.0 + e);
}
static long double sigmoid_l(long double x) {
    long double e = expl(-fabsl(x));
    return (x < 0 ? e : 1.0L) / (1.0L + e);
}
static double rsqrt_d(double x) { return 1.0 / sqrt(x); }
static long double rsqrt_l(long double x) { return 1.0L / sqrtl(x); }

typedef struct {
    double lo, hi;
} range;

enum { F_EXP, F_LOG, F_TANH, F_SIGMOID, F_ERF, F_RSQRT, NFN };

/* Per function: the emitter, the references, two dense ranges per dtype, a
 * flag for sweeping positive bit patterns only, and the ulp bound per dtype
 * on hosts with FMA (one more without: the corrections in sigmoid need
 * exact products). */
static const struct {
    const char *name;
    LLVMValueRef (*emit)(LLVMModuleRef, LLVMBuilderRef, LLVMValueRef);
    double (*ref32)(double);
    long double (*ref64)(long double);
    range r32[2], r64[2];
    int positive;
    double bound[2];
} fns[NFN] = {
    [F_EXP] = {"exp", lt_emit_exp, exp, expl, {{-104, 89}, {-1, 1}}, {{-746, 710}, {-1, 1}}, 0, {1.5, 1.5}},
    [F_LOG] = {"log", lt_emit_log, log, logl, {{0, 3}, {0.984375, 1.015625}}, {{0, 3}, {0.984375, 1.015625}}, 1,
               {1.5, 1.5}},
    [F_TANH] = {"tanh", lt_emit_tanh, tanh, tanhl, {{-30, 30}, {-1, 1}}, {{-30, 30}, {-1, 1}}, 0, {2, 2}},
    [F_SIGMOID] = {"sigmoid", lt_emit_sigmoid, sigmoid_d, sigmoid_l, {{-30, 30}, {-110, 100}},
                   {{-30, 30}, {-750, 750}}, 0, {2, 2}},
    [F_ERF] = {"erf", lt_emit_erf, erf, erfl, {{-5, 5}, {-1.5, 1.5}}, {{-7, 7}, {-1.5, 1.5}}, 0, {2, 2}},
    [F_RSQRT] = {"rsqrt", lt_emit_rsqrt, rsqrt_d, rsqrt_l, {{0, 16}, {0.25, 4}}, {{0, 16}, {0.25, 4}}, 1, {2, 2}},
};

/* ---- building and JIT-compiling the kernels ------------------------------ */

typedef void (*kernel)(const void *in, void *out, int64_t n);

typedef struct {
    LLVMOrcLLJITRef jit;
    kernel opt[NFN][2], plain[NFN][2]; /* [function][0 f32, 1 f64] */
    char *text[NFN][2];                /* optimized IR of each opt kernel */
    char *plain_text;                  /* the unoptimized module */
    int sanitize;
    int fma; /* the host has FMA: fmuladd fuses, and the bounds hold as listed */
} fixture;

/* void <name>(T *in, T *out, i64 n) { for (i = 0; i < n; i++) out[i] = f(in[i]); } */
static void build_kernel(LLVMModuleRef m, const char *name, LLVMTypeRef t,
                         LLVMValueRef (*emit)(LLVMModuleRef, LLVMBuilderRef, LLVMValueRef)) {
    LLVMContextRef ctx = LLVMGetModuleContext(m);
    LLVMTypeRef ptr = LLVMPointerTypeInContext(ctx, 0), i64 = LLVMInt64TypeInContext(ctx);
    LLVMTypeRef params[] = {ptr, ptr, i64};
    LLVMValueRef fn = LLVMAddFunction(m, name, LLVMFunctionType(LLVMVoidTypeInContext(ctx), params, 3, 0));
    unsigned noalias = LLVMGetEnumAttributeKindForName("noalias", 7);
    for (unsigned i = 1; i <= 2; i++) LLVMAddAttributeAtIndex(fn, i, LLVMCreateEnumAttribute(ctx, noalias, 0));
    LLVMValueRef in = LLVMGetParam(fn, 0), out = LLVMGetParam(fn, 1), n = LLVMGetParam(fn, 2);

    LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(ctx, fn, "entry");
    LLVMBasicBlockRef loop = LLVMAppendBasicBlockInContext(ctx, fn, "loop");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(ctx, fn, "done");
    LLVMBuilderRef b = LLVMCreateBuilderInContext(ctx);
    LLVMPositionBuilderAtEnd(b, entry);
    LLVMValueRef zero = LLVMConstInt(i64, 0, 0);
    LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSGT, n, zero, ""), loop, done);

    LLVMPositionBuilderAtEnd(b, loop);
    LLVMValueRef i = LLVMBuildPhi(b, i64, "i");
    LLVMValueRef x = LLVMBuildLoad2(b, t, LLVMBuildInBoundsGEP2(b, t, in, &i, 1, ""), "x");
    LLVMValueRef y = emit(m, b, x);
    LLVMBuildStore(b, y, LLVMBuildInBoundsGEP2(b, t, out, &i, 1, ""));
    LLVMValueRef next = LLVMBuildNUWAdd(b, i, LLVMConstInt(i64, 1, 0), "");
    LLVMAddIncoming(i, (LLVMValueRef[]){zero, next}, (LLVMBasicBlockRef[]){entry, loop}, 2);
    LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, next, n, ""), loop, done);

    LLVMPositionBuilderAtEnd(b, done);
    LLVMBuildRetVoid(b);
    LLVMDisposeBuilder(b);
}

static LLVMModuleRef build_module(LLVMContextRef ctx, const char *prefix, LLVMTargetMachineRef tm,
                                  const char *triple) {
    LLVMModuleRef m = LLVMModuleCreateWithNameInContext(prefix, ctx);
    LLVMSetTarget(m, triple);
    LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(tm);
    LLVMSetModuleDataLayout(m, dl);
    LLVMDisposeTargetData(dl);
    for (int f = 0; f < NFN; f++)
        for (int d = 0; d < 2; d++) {
            char name[64];
            snprintf(name, sizeof name, "%s_%s_%s", prefix, fns[f].name, d ? "f64" : "f32");
            build_kernel(m, name, d ? LLVMDoubleTypeInContext(ctx) : LLVMFloatTypeInContext(ctx), fns[f].emit);
        }
    return m;
}

static int verify(LLVMModuleRef m, const char *what) {
    char *msg = NULL;
    int bad = LLVMVerifyModule(m, LLVMReturnStatusAction, &msg);
    if (bad) print_error("%s module does not verify: %s\n", what, msg);
    LLVMDisposeMessage(msg);
    return !bad;
}

/* Whether the comma-separated list holds exactly f ("+fma", not "+fma4"). */
static int has_feature(const char *list, const char *f) {
    size_t n = strlen(f);
    for (const char *p = list; p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (strncmp(p, f, n) == 0 && (p[n] == ',' || p[n] == '\0')) return 1;
    return 0;
}

static int group_setup(void **state) {
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx) return -1;
    const char *env = getenv("LATHE_SANITIZE");
    fx->sanitize = SANITIZED || (env && *env && strcmp(env, "0") != 0);

    int ok = 0;
    char *msg = NULL;
    LLVMErrorRef err = NULL;
    LLVMTargetMachineRef tm = NULL;
    LLVMPassBuilderOptionsRef pbo = NULL;
    LLVMOrcThreadSafeContextRef tsc = NULL;
    LLVMModuleRef mods[2] = {NULL, NULL}; /* opt, plain */
    LLVMOrcJITTargetMachineBuilderRef jtmb = NULL;
    LLVMOrcLLJITBuilderRef jb = NULL;

    LLVMInitializeNativeTarget();
    LLVMInitializeNativeAsmPrinter();
    char *triple = LLVMGetDefaultTargetTriple(), *cpu = LLVMGetHostCPUName(), *features = LLVMGetHostCPUFeatures();
    LLVMTargetRef target;
    if (LLVMGetTargetFromTriple(triple, &target, &msg)) goto cleanup;
    tm = LLVMCreateTargetMachine(target, triple, cpu, features, LLVMCodeGenLevelAggressive, LLVMRelocDefault,
                                 LLVMCodeModelJITDefault);
    fx->fma = has_feature(features, "+fma");
    print_message("host %s, cpu %s%s\n", triple, cpu, fx->fma ? "" : ", no FMA: bounds +1 ulp");

    /* One fresh context for the compilation, owned by the thread-safe context. */
    tsc = LLVMOrcCreateNewThreadSafeContext();
    LLVMContextRef ctx = LLVMOrcThreadSafeContextGetContext(tsc);
    mods[0] = build_module(ctx, "opt", tm, triple);
    mods[1] = build_module(ctx, "plain", tm, triple);
    if (!verify(mods[0], "emitted") || !verify(mods[1], "emitted")) goto cleanup;
    fx->plain_text = LLVMPrintModuleToString(mods[1]);

    pbo = LLVMCreatePassBuilderOptions();
    if ((err = LLVMRunPasses(mods[0], "default<O3>", tm, pbo))) goto cleanup;
    if (!verify(mods[0], "optimized")) goto cleanup;
    for (int f = 0; f < NFN; f++)
        for (int d = 0; d < 2; d++) {
            char name[64];
            snprintf(name, sizeof name, "opt_%s_%s", fns[f].name, d ? "f64" : "f32");
            LLVMValueRef fn = LLVMGetNamedFunction(mods[0], name);
            if (!fn) goto cleanup;
            fx->text[f][d] = LLVMPrintValueToString(fn);
        }

    if ((err = LLVMOrcJITTargetMachineBuilderDetectHost(&jtmb))) goto cleanup;
    jb = LLVMOrcCreateLLJITBuilder();
    LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(jb, jtmb); /* jb owns jtmb now */
    jtmb = NULL;
    err = LLVMOrcCreateLLJIT(&fx->jit, jb); /* consumes jb, even on error */
    jb = NULL;
    if (err) goto cleanup;
    for (int i = 0; i < 2; i++) {
        LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(mods[i], tsc); /* owns the module */
        mods[i] = NULL;
        /* The JIT owns tsm from here, even on error. */
        if ((err = LLVMOrcLLJITAddLLVMIRModule(fx->jit, LLVMOrcLLJITGetMainJITDylib(fx->jit), tsm))) goto cleanup;
    }
    for (int f = 0; f < NFN; f++)
        for (int d = 0; d < 2; d++)
            for (int p = 0; p < 2; p++) {
                char name[64];
                snprintf(name, sizeof name, "%s_%s_%s", p ? "plain" : "opt", fns[f].name, d ? "f64" : "f32");
                LLVMOrcExecutorAddress addr = 0;
                if ((err = LLVMOrcLLJITLookup(fx->jit, &addr, name))) goto cleanup;
                kernel k = (kernel)(uintptr_t)addr;
                if (p) fx->plain[f][d] = k;
                else fx->opt[f][d] = k;
            }
    ok = 1;

cleanup:
    if (err) {
        char *s = LLVMGetErrorMessage(err); /* consumes err */
        print_error("LLVM: %s\n", s);
        LLVMDisposeErrorMessage(s);
    }
    if (msg) print_error("LLVM: %s\n", msg);
    LLVMDisposeMessage(msg);
    for (int i = 0; i < 2; i++)
        if (mods[i]) LLVMDisposeModule(mods[i]);
    if (jtmb) LLVMOrcDisposeJITTargetMachineBuilder(jtmb);
    if (jb) LLVMOrcDisposeLLJITBuilder(jb);
    if (tsc) LLVMOrcDisposeThreadSafeContext(tsc); /* the modules keep it alive */
    if (pbo) LLVMDisposePassBuilderOptions(pbo);
    if (tm) LLVMDisposeTargetMachine(tm);
    LLVMDisposeMessage(triple);
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(features);
    *state = fx;
    return ok ? 0 : -1;
}

static int group_teardown(void **state) {
    fixture *fx = *state;
    int rc = 0;
    if (fx->jit) {
        LLVMErrorRef err = LLVMOrcDisposeLLJIT(fx->jit);
        if (err) {
            char *s = LLVMGetErrorMessage(err);
            print_error("LLVM: %s\n", s);
            LLVMDisposeErrorMessage(s);
            rc = -1;
        }
    }
    for (int f = 0; f < NFN; f++)
        for (int d = 0; d < 2; d++) LLVMDisposeMessage(fx->text[f][d]);
    LLVMDisposeMessage(fx->plain_text);
    free(fx);
    return rc;
}

/* Runs the kernel on n values of dtype d held as doubles (exact floats for
 * f32); returns the seconds the kernel took. */
static double run(kernel k, int d, const double *x, double *y, size_t n) {
    clock_t t0;
    if (d) {
        k(x, y, (int64_t)n); /* once to fault the pages in, once timed */
        t0 = clock();
        k(x, y, (int64_t)n);
        return (double)(clock() - t0) / CLOCKS_PER_SEC;
    }
    float *xf = malloc(n * sizeof *xf + 1), *yf = malloc(n * sizeof *yf + 1);
    assert_non_null(xf);
    assert_non_null(yf);
    for (size_t i = 0; i < n; i++) xf[i] = (float)x[i];
    k(xf, yf, (int64_t)n);
    t0 = clock();
    k(xf, yf, (int64_t)n);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    for (size_t i = 0; i < n; i++) y[i] = yf[i];
    free(xf);
    free(yf);
    return secs;
}

static int same_bits(double a, double b) { return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0; }

/* ---- error measure ------------------------------------------------------ */

/* |y - r| in units of the last place at r of the format with p-bit
 * significands and exponents in [emin, emax]: the spacing is floored at the
 * subnormals', and an infinity counts as 2^(emax+1), so returning inf for a
 * value just past the largest finite one costs under one ulp.  NaN must meet
 * NaN. */
static double ulp_error(long double y, long double r, int p, int emin, int emax) {
    if (isnan(y) || isnan(r)) return isnan(y) && isnan(r) ? 0 : INFINITY;
    long double big = ldexpl(1, emax + 1);
    if (isinf(y)) y = copysignl(big, y);
    if (isinf(r) || fabsl(r) > big) r = copysignl(big, r);
    if (y == r) return 0;
    int e = r == 0 ? emin : ilogbl(r);
    e = e < emin ? emin : e > emax ? emax : e;
    return (double)(fabsl(y - r) / ldexpl(1, e - (p - 1)));
}

/* ---- inputs ------------------------------------------------------------- */

typedef struct {
    double *x;
    size_t n, cap;
} vec;

static void push(vec *v, int d, double x) {
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 1024;
        v->x = realloc(v->x, v->cap * sizeof *v->x);
        assert_non_null(v->x);
    }
    v->x[v->n++] = d ? x : (double)(float)x;
}

static uint64_t mix(uint64_t z) { /* splitmix64's finalizer */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* x and the k representable neighbours on either side. */
static void push_around(vec *v, int d, double x, int k) {
    double a = x, b = x;
    push(v, d, x);
    for (int i = 0; i < k; i++) {
        a = d ? nextafter(a, INFINITY) : nextafterf((float)a, INFINITY);
        b = d ? nextafter(b, -INFINITY) : nextafterf((float)b, -INFINITY);
        push(v, d, a);
        push(v, d, b);
    }
}

/* The sweep for function f in dtype d: specials, thresholds, two dense
 * grids, and bit patterns spread over every exponent (with random low bits). */
static vec inputs(int f, int d, size_t count) {
    vec v = {0};
    const double specials[] = {0.0, -0.0, INFINITY, -INFINITY, NAN, -NAN, 1, -1, 0.5, 2, 0.625, -0.625,
                               FLT_MAX, -FLT_MAX, FLT_MIN, -FLT_MIN, FLT_TRUE_MIN, -FLT_TRUE_MIN,
                               DBL_MAX, -DBL_MAX, DBL_MIN, -DBL_MIN, DBL_TRUE_MIN, -DBL_TRUE_MIN};
    for (size_t i = 0; i < sizeof specials / sizeof *specials; i++) push_around(&v, d, specials[i], 4);
    /* exp overflows past log(MAX), reaches the subnormals below log(MIN) and
     * 0 below log(TRUE_MIN/2); sigmoid's tiny results follow the same
     * thresholds, negated.  tanh switches formulas at 0.625 and saturates. */
    const double t32[] = {88.72283935546875, 88.7228317, -87.3365479, -103.972076, -103.278931, 89, -104, 9.01, 10};
    const double t64[] = {709.782712893384, -708.3964185322641, -745.1332191019411, -744.4400719213812,
                          710, -746, 19.06, 20};
    for (size_t i = 0; i < (d ? sizeof t64 / sizeof *t64 : sizeof t32 / sizeof *t32); i++) {
        double t = d ? t64[i] : t32[i];
        push_around(&v, d, t, 16);
        push_around(&v, d, -t, 16);
    }
    if (f == F_LOG) push_around(&v, d, 1.0, 4096);
    /* erf switches formulas at 1 (and 2.5 in f64) and is capped at 4 (6) */
    if (f == F_ERF)
        for (int s = -1; s <= 1; s += 2) {
            push_around(&v, d, s * 1.0, 1024);
            push_around(&v, d, s * 2.5, 256);
            push_around(&v, d, s * (d ? 6.0 : 4.0), 256);
            push_around(&v, d, s * (d ? 5.921 : 3.919), 256); /* where erf starts to round to 1 */
        }
    for (int r = 0; r < 2; r++) {
        range g = d ? fns[f].r64[r] : fns[f].r32[r];
        size_t n = r == 0 ? count : count / 4;
        for (size_t i = 0; i < n; i++) push(&v, d, g.lo + (g.hi - g.lo) * (double)i / (double)(n - 1));
    }
    for (size_t i = 0; i < count; i++) {
        if (d) {
            uint64_t stride = UINT64_MAX / count, u = i * stride + mix(i) % stride;
            if (fns[f].positive) u >>= 1;
            double x;
            memcpy(&x, &u, sizeof x);
            push(&v, d, x);
        } else {
            uint32_t stride = (uint32_t)(UINT32_MAX / count), u = (uint32_t)(i * stride + mix(i) % stride);
            if (fns[f].positive) u >>= 1;
            float x;
            memcpy(&x, &u, sizeof x);
            push(&v, d, x);
        }
    }
    return v;
}

/* ---- the sweep ---------------------------------------------------------- */

static void sweep(fixture *fx, int f, int d) {
    size_t count = (size_t)(d ? 1 << 19 : 1 << 20) / (fx->sanitize ? 8 : 1);
    vec v = inputs(f, d, count);
    double *y = malloc(v.n * sizeof *y), *yp = malloc(v.n * sizeof *yp);
    assert_non_null(y);
    assert_non_null(yp);
    double secs = run(fx->opt[f][d], d, v.x, y, v.n);
    double secs_plain = run(fx->plain[f][d], d, v.x, yp, v.n);

    double worst = 0, worst_x = 0, worst_y = 0;
    long double worst_r = 0;
    size_t mismatches = 0;
    for (size_t i = 0; i < v.n; i++) {
        double x = v.x[i];
        long double r = d ? fns[f].ref64(x) : fns[f].ref32(x);
        double e = d ? ulp_error(y[i], r, 53, -1022, 1023) : ulp_error(y[i], r, 24, -126, 127);
        if (e > worst || isnan(e)) worst = e, worst_x = x, worst_y = y[i], worst_r = r;
        if (!same_bits(y[i], yp[i])) {
            if (mismatches++ < 5)
                print_error("%s.%s(%a): vectorized %a, scalar %a\n", fns[f].name, d ? "f64" : "f32", x, y[i], yp[i]);
        }
    }
    printf("  %-7s %s: max %.3f ulp at %a (got %a, want %La); %zu inputs, %.2f ns each vectorized, %.2f scalar\n",
           fns[f].name, d ? "f64" : "f32", worst, worst_x, worst_y, worst_r, v.n, 1e9 * secs / (double)v.n,
           1e9 * secs_plain / (double)v.n);
    free(v.x);
    free(y);
    free(yp);
    if (mismatches) fail_msg("%s.%s: %zu results differ between the vectorized and scalar builds", fns[f].name,
                             d ? "f64" : "f32", mismatches);
    double bound = fns[f].bound[d] + (fx->fma ? 0 : 1);
    if (!(worst <= bound))
        fail_msg("%s.%s: %.3f ulp at %a exceeds %.1f", fns[f].name, d ? "f64" : "f32", worst, worst_x, bound);
}

static void test_exp(void **state) { sweep(*state, F_EXP, 0), sweep(*state, F_EXP, 1); }
static void test_log(void **state) { sweep(*state, F_LOG, 0), sweep(*state, F_LOG, 1); }
static void test_tanh(void **state) { sweep(*state, F_TANH, 0), sweep(*state, F_TANH, 1); }
static void test_sigmoid(void **state) { sweep(*state, F_SIGMOID, 0), sweep(*state, F_SIGMOID, 1); }
static void test_erf(void **state) { sweep(*state, F_ERF, 0), sweep(*state, F_ERF, 1); }
static void test_rsqrt(void **state) { sweep(*state, F_RSQRT, 0), sweep(*state, F_RSQRT, 1); }

/* ---- exact special values ----------------------------------------------- */

static const struct {
    int f;
    double x, y; /* y NaN: any NaN; zeros must match in sign */
} exact[] = {
    {F_EXP, NAN, NAN}, {F_EXP, -INFINITY, 0}, {F_EXP, INFINITY, INFINITY}, {F_EXP, 0, 1}, {F_EXP, -0.0, 1},
    {F_EXP, 1e4, INFINITY}, {F_EXP, -1e4, 0}, {F_EXP, FLT_MAX, INFINITY}, {F_EXP, -FLT_MAX, 0},
    {F_EXP, FLT_TRUE_MIN, 1}, {F_EXP, -FLT_TRUE_MIN, 1}, {F_EXP, 1000, INFINITY}, {F_EXP, -1000, 0},

    {F_LOG, NAN, NAN}, {F_LOG, 0, -INFINITY}, {F_LOG, -0.0, -INFINITY}, {F_LOG, -1, NAN},
    {F_LOG, -INFINITY, NAN}, {F_LOG, INFINITY, INFINITY}, {F_LOG, 1, 0}, {F_LOG, -FLT_TRUE_MIN, NAN},
    {F_LOG, -FLT_MAX, NAN},

    {F_TANH, NAN, NAN}, {F_TANH, 0, 0}, {F_TANH, -0.0, -0.0}, {F_TANH, INFINITY, 1}, {F_TANH, -INFINITY, -1},
    {F_TANH, 1e4, 1}, {F_TANH, -1e4, -1}, {F_TANH, FLT_MAX, 1}, {F_TANH, -FLT_MAX, -1}, {F_TANH, 25, 1},
    {F_TANH, FLT_TRUE_MIN, FLT_TRUE_MIN}, {F_TANH, -FLT_TRUE_MIN, -FLT_TRUE_MIN},

    {F_SIGMOID, NAN, NAN}, {F_SIGMOID, INFINITY, 1}, {F_SIGMOID, -INFINITY, 0}, {F_SIGMOID, 0, 0.5},
    {F_SIGMOID, -0.0, 0.5}, {F_SIGMOID, 1e4, 1}, {F_SIGMOID, -1e4, 0}, {F_SIGMOID, FLT_MAX, 1},
    {F_SIGMOID, -FLT_MAX, 0},

    {F_ERF, NAN, NAN}, {F_ERF, 0, 0}, {F_ERF, -0.0, -0.0}, {F_ERF, INFINITY, 1}, {F_ERF, -INFINITY, -1},
    {F_ERF, 6, 1}, {F_ERF, -6, -1}, {F_ERF, 1e4, 1}, {F_ERF, -1e4, -1}, {F_ERF, FLT_MAX, 1}, {F_ERF, -FLT_MAX, -1},

    {F_RSQRT, NAN, NAN}, {F_RSQRT, 0, INFINITY}, {F_RSQRT, -0.0, -INFINITY}, {F_RSQRT, INFINITY, 0},
    {F_RSQRT, -1, NAN}, {F_RSQRT, -INFINITY, NAN}, {F_RSQRT, 1, 1}, {F_RSQRT, 4, 0.5}, {F_RSQRT, 0.25, 2},
};

static void check_exact(int f, int d, const char *how, double x, double got, double want) {
    int ok = isnan(want) ? isnan(got) : same_bits(got, want);
    if (!ok) fail_msg("%s.%s(%a) %s: got %a, want %a", fns[f].name, d ? "f64" : "f32", x, how, got, want);
}

static void test_special_values(void **state) {
    fixture *fx = *state;
    enum { N = sizeof exact / sizeof *exact, REP = 256 };
    double x[REP], y[REP], yp[REP];
    for (int d = 0; d < 2; d++)
        for (int f = 0; f < NFN; f++) {
            int idx[N], k = 0;
            for (int i = 0; i < N; i++)
                if (exact[i].f == f) idx[k++] = i;
            /* Repeated so most go through the vector body, then one at a time
             * through the scalar remainder. */
            for (int i = 0; i < REP; i++) x[i] = exact[idx[i % k]].x;
            run(fx->opt[f][d], d, x, y, REP);
            run(fx->plain[f][d], d, x, yp, REP);
            for (int i = 0; i < REP; i++) {
                check_exact(f, d, "vectorized", x[i], y[i], exact[idx[i % k]].y);
                check_exact(f, d, "scalar", x[i], yp[i], exact[idx[i % k]].y);
            }
            for (int i = 0; i < k; i++) {
                double one;
                run(fx->opt[f][d], d, &exact[idx[i]].x, &one, 1);
                check_exact(f, d, "remainder", exact[idx[i]].x, one, exact[idx[i]].y);
            }
        }
}

/* ---- the IR ------------------------------------------------------------- */

/* The widest <N x float> or <N x double> in s, 0 if none. */
static int vector_width(const char *s, int d) {
    const char *el = d ? " x double>" : " x float>";
    int best = 0;
    for (const char *p = strstr(s, el); p; p = strstr(p + 1, el)) {
        const char *q = p;
        while (q > s && q[-1] >= '0' && q[-1] <= '9') q--;
        if (q > s && q[-1] == '<' && q < p) {
            int w = atoi(q);
            if (w > best) best = w;
        }
    }
    return best;
}

/* Every call in the optimized kernels is to an llvm.* intrinsic: nothing
 * from libm, and the math functions are inlined. */
static void test_vectorized(void **state) {
    fixture *fx = *state;
    for (int f = 0; f < NFN; f++)
        for (int d = 0; d < 2; d++) {
            const char *s = fx->text[f][d];
            int w = vector_width(s, d);
            printf("  %-7s %s: loop vectorized to <%d x %s>\n", fns[f].name, d ? "f64" : "f32", w,
                   d ? "double" : "float");
            if (w < 4 - 2 * d) fail_msg("%s.%s did not vectorize:\n%s", fns[f].name, d ? "f64" : "f32", s);
            for (const char *p = strstr(s, "call "); p; p = strstr(p + 1, "call ")) {
                const char *eol = strchr(p, '\n'), *at = strchr(p, '@');
                if (!at || (eol && at > eol) || strncmp(at, "@llvm.", 6) != 0)
                    fail_msg("%s.%s calls something other than an intrinsic:\n%s", fns[f].name,
                             d ? "f64" : "f32", s);
            }
        }
}

/* Unoptimized: one internal always-inline function per function and dtype
 * (tanh and sigmoid share exp's), emitted once however often it is called,
 * with no libm declaration. */
static void test_emitted_functions(void **state) {
    fixture *fx = *state;
    const char *s = fx->plain_text;
    for (int f = 0; f < NFN; f++)
        for (int d = 0; d < 2; d++) {
            char def[96];
            snprintf(def, sizeof def, "define internal %s @lathe.%s.%s(", d ? "double" : "float", fns[f].name,
                     d ? "f64" : "f32");
            const char *p = strstr(s, def);
            if (!p) fail_msg("missing %s in\n%s", def, s);
            assert_null(strstr(p + 1, def));
        }
    for (const char *p = strstr(s, "declare "); p; p = strstr(p + 1, "declare ")) {
        const char *eol = strchr(p, '\n'), *at = strchr(p, '@');
        if (!at || (eol && at > eol) || strncmp(at, "@llvm.", 6) != 0) fail_msg("declares a non-intrinsic:\n%s", s);
    }
    /* The attributes: look them up on the group of one definition. */
    const char *def = strstr(s, "define internal float @lathe.exp.f32(");
    assert_non_null(def);
    const char *hash = strchr(def, '#');
    assert_non_null(hash);
    char group[32];
    snprintf(group, sizeof group, "attributes #%d = {", atoi(hash + 1));
    const char *attrs = strstr(s, group);
    assert_non_null(attrs);
    const char *end = strchr(attrs, '}');
    for (const char *want = "alwaysinline\0nounwind\0willreturn\0memory(none)\0"; *want; want += strlen(want) + 1) {
        const char *a = strstr(attrs, want);
        if (!a || a > end) fail_msg("lathe.exp.f32 lacks %s: %.*s", want, (int)(end - attrs + 1), attrs);
    }
}

/* The builder stays where the caller left it, and a second call reuses the
 * function. */
static void test_builder_position(void **state) {
    (void)state;
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMModuleRef m = LLVMModuleCreateWithNameInContext("t", ctx);
    LLVMTypeRef f32 = LLVMFloatTypeInContext(ctx);
    LLVMValueRef fn = LLVMAddFunction(m, "f", LLVMFunctionType(f32, &f32, 1, 0));
    LLVMBuilderRef b = LLVMCreateBuilderInContext(ctx);
    LLVMBasicBlockRef bb = LLVMAppendBasicBlockInContext(ctx, fn, "entry");
    LLVMPositionBuilderAtEnd(b, bb);
    LLVMValueRef y = lt_emit_tanh(m, b, LLVMGetParam(fn, 0));
    y = lt_emit_exp(m, b, y);
    y = lt_emit_tanh(m, b, y);
    LLVMBuildRet(b, y);
    assert_ptr_equal(LLVMGetInsertBlock(b), bb);
    int nfn = 0;
    for (LLVMValueRef g = LLVMGetFirstFunction(m); g; g = LLVMGetNextFunction(g)) nfn += LLVMGetFirstBasicBlock(g) != NULL;
    assert_int_equal(nfn, 3); /* f, lathe.tanh.f32, lathe.exp.f32 */
    char *msg = NULL;
    if (LLVMVerifyModule(m, LLVMReturnStatusAction, &msg)) fail_msg("%s", msg);
    LLVMDisposeMessage(msg);
    LLVMDisposeBuilder(b);
    LLVMDisposeModule(m);
    LLVMContextDispose(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builder_position),
        cmocka_unit_test(test_emitted_functions),
        cmocka_unit_test(test_vectorized),
        cmocka_unit_test(test_special_values),
        cmocka_unit_test(test_exp),
        cmocka_unit_test(test_log),
        cmocka_unit_test(test_tanh),
        cmocka_unit_test(test_sigmoid),
        cmocka_unit_test(test_erf),
        cmocka_unit_test(test_rsqrt),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
