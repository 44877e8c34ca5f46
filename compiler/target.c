/* target.c - the target description (target.h): a CPU name and feature
 * string checked against LLVM's lists, and the capabilities that fusion and
 * lowering need, read from what LLVM's code generator makes of a few probe
 * functions for that CPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Core.h>
#include <llvm-c/IRReader.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>

#include "target.h"

/* The CPU and feature names LLVM 19 knows for this build's target, from
 * `llc -mcpu=help` and `llc -mattr=help` at configure time (meson.build),
 * as " name name ... ". */
#ifndef LATHE_KNOWN_CPUS
#define LATHE_KNOWN_CPUS "" /* unknown: every name is passed to LLVM */
#endif
#ifndef LATHE_KNOWN_FEATURES
#define LATHE_KNOWN_FEATURES ""
#endif

static void llvm_init(void) {
#pragma omp critical(lathe_llvm_init)
    {
        LLVMInitializeNativeTarget();
        LLVMInitializeNativeAsmPrinter();
    }
}

/* Is name (n bytes) one of list's " a b c "?  An empty list knows every name. */
static bool known(const char *list, const char *name, size_t n) {
    if (n == 0) return false;
    if (strlen(list) < 2) return true;
    for (const char *p = strstr(list, " "); p; p = strstr(p + 1, " "))
        if (!strncmp(p + 1, name, n) && p[1 + n] == ' ') return true;
    return false;
}

/* Each item of a feature string must be +NAME or -NAME with a known NAME. */
static bool check_features(const char *s, char *err, size_t errlen) {
    if (!*s) return true;
    for (const char *p = s;;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n < 2 || (p[0] != '+' && p[0] != '-') || memchr(p, ' ', n) || !known(LATHE_KNOWN_FEATURES, p + 1, n - 1)) {
            snprintf(err, errlen, "--target-features %s: '%.*s' is not +FEATURE or -FEATURE with a feature LLVM 19 knows "
                     "for this target; it knows:%s", s, (int)n, p, LATHE_KNOWN_FEATURES);
            return false;
        }
        if (!end) return true;
        p = end + 1;
    }
}

LLVMTargetMachineRef lt_target_machine(const lt_target *t, bool pic, char *err, size_t errlen) {
    llvm_init();
    char *msg = NULL;
    LLVMTargetRef target;
    LLVMTargetMachineRef tm = NULL;
    if (LLVMGetTargetFromTriple(t->triple, &target, &msg))
        snprintf(err, errlen, "LLVM target %s: %s", t->triple, msg ? msg : "?");
    else
        tm = LLVMCreateTargetMachine(target, t->triple, t->cpu, t->features, LLVMCodeGenLevelAggressive,
                                     pic ? LLVMRelocPIC : LLVMRelocDefault,
                                     pic ? LLVMCodeModelDefault : LLVMCodeModelJITDefault);
    if (!tm && !msg) snprintf(err, errlen, "LLVM cannot make code for CPU %s", t->cpu);
    LLVMDisposeMessage(msg);
    return tm;
}

/* The probes: a 512-bit FMA (zmm registers and vfmadd instructions appear
 * only when the CPU has them, even with 512-bit vectors preferred), a masked
 * load (AVX-512 masks it with a k register, AVX with vmaskmov, older CPUs
 * branch), and a conversion to bf16 (one instruction with AVX512-BF16). */
static const char probe_ir[] =
    "define <16 x float> @fma(<16 x float> %a, <16 x float> %b, <16 x float> %c) #0 {\n"
    "  %r = call <16 x float> @llvm.fma.v16f32(<16 x float> %a, <16 x float> %b, <16 x float> %c)\n"
    "  ret <16 x float> %r\n}\n"
    "define <8 x float> @masked(ptr %p, <8 x i1> %k) #0 {\n"
    "  %r = call <8 x float> @llvm.masked.load.v8f32.p0(ptr %p, i32 4, <8 x i1> %k, <8 x float> zeroinitializer)\n"
    "  ret <8 x float> %r\n}\n"
    "define <16 x bfloat> @bf16(<16 x float> %a) #0 {\n"
    "  %r = fptrunc <16 x float> %a to <16 x bfloat>\n"
    "  ret <16 x bfloat> %r\n}\n"
    "declare <16 x float> @llvm.fma.v16f32(<16 x float>, <16 x float>, <16 x float>)\n"
    "declare <8 x float> @llvm.masked.load.v8f32.p0(ptr, i32, <8 x i1>, <8 x float>)\n"
    "attributes #0 = { nounwind \"min-legal-vector-width\"=\"512\" \"prefer-vector-width\"=\"512\" }\n";

static lathe_status probe(lt_target *t, char *err, size_t errlen) {
    LLVMTargetMachineRef tm = lt_target_machine(t, false, err, errlen);
    if (!tm) return LATHE_ERR_UNSUPPORTED;
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMMemoryBufferRef src = LLVMCreateMemoryBufferWithMemoryRangeCopy(probe_ir, sizeof probe_ir - 1, "probe");
    LLVMModuleRef mod = NULL;
    LLVMMemoryBufferRef out = NULL;
    char *msg = NULL;
    lathe_status st = LATHE_OK;
    if (LLVMParseIRInContext(ctx, src, &mod, &msg)) /* takes src */
        st = LATHE_ERR_UNSUPPORTED;
    else {
        LLVMSetTarget(mod, t->triple);
        if (LLVMTargetMachineEmitToMemoryBuffer(tm, mod, LLVMAssemblyFile, &msg, &out)) st = LATHE_ERR_UNSUPPORTED;
    }
    if (st != LATHE_OK) {
        snprintf(err, errlen, "probing CPU %s: %s", t->cpu, msg ? msg : "?");
    } else {
        /* the assembly as a string (the buffer need not end in a NUL) */
        size_t n = LLVMGetBufferSize(out);
        char *s = malloc(n + 1);
        if (!s) {
            snprintf(err, errlen, "out of memory");
            st = LATHE_ERR_NOMEM;
        } else {
            memcpy(s, LLVMGetBufferStart(out), n);
            s[n] = 0;
            bool zmm = strstr(s, "%zmm") != NULL, ymm = strstr(s, "%ymm") != NULL;
            t->vector_bytes = zmm ? 64 : ymm ? 32 : 16;
            t->vector_regs = zmm ? 32 : 16;
            t->fma = strstr(s, "vfmadd") != NULL;
            t->mask_regs = strstr(s, "{%k") != NULL;
            t->masked_loads = t->mask_regs || strstr(s, "vmaskmov") != NULL;
            t->bf16 = strstr(s, "vcvtneps2bf16") != NULL;
            free(s);
        }
    }
    LLVMDisposeMessage(msg);
    if (out) LLVMDisposeMemoryBuffer(out);
    if (mod) LLVMDisposeModule(mod);
    LLVMContextDispose(ctx);
    LLVMDisposeTargetMachine(tm);
    return st;
}

/* This host's per-core L2 in bytes, from sysfs (cpu0's level-2 data or
 * unified cache); the default where Linux does not say. */
static int64_t host_l2(void) {
    for (int i = 0; i < 8; i++) {
        char path[96], level[16] = "", type[32] = "", size[32] = "";
        const char *what[3] = {"level", "type", "size"};
        char *into[3] = {level, type, size};
        for (int k = 0; k < 3; k++) {
            snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/%s", i, what[k]);
            FILE *f = fopen(path, "r");
            if (!f) break;
            if (!fgets(into[k], 16, f)) into[k][0] = 0;
            fclose(f);
        }
        if (atoi(level) != 2 || !strncmp(type, "Instruction", 11)) continue;
        char *end;
        long long v = strtoll(size, &end, 10);
        if (v <= 0) break;
        if (*end == 'K') v <<= 10;
        else if (*end == 'M') v <<= 20;
        return v;
    }
    return LT_TARGET_L2_DEFAULT;
}

lathe_status lt_target_init(lt_target *t, const lathe_target *opt, char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
    llvm_init();
    const char *cpu = opt ? opt->cpu : NULL, *feat = opt && opt->features ? opt->features : "";
    int force = opt ? opt->vector_bytes : 0;
    if (force != 0 && force != 32 && force != 64) {
        snprintf(err, errlen, "vector_bytes %d: expected 0 (the target's), 32 or 64", force);
        return LATHE_ERR_ARG;
    }
    if (cpu && (!known(LATHE_KNOWN_CPUS, cpu, strlen(cpu)) || strchr(cpu, ' ') || strlen(cpu) >= sizeof t->cpu)) {
        snprintf(err, errlen, "--target-cpu %s: not a CPU LLVM 19 knows for this target; it knows:%s", cpu, LATHE_KNOWN_CPUS);
        return LATHE_ERR_ARG;
    }
    if (!check_features(feat, err, errlen)) return LATHE_ERR_ARG;
    char *triple = LLVMGetDefaultTargetTriple();
    snprintf(t->triple, sizeof t->triple, "%s", triple);
    LLVMDisposeMessage(triple);
    t->host = !cpu;
    if (cpu) {
        snprintf(t->cpu, sizeof t->cpu, "%s", cpu);
        snprintf(t->features, sizeof t->features, "%s", feat);
    } else {
        char *hc = LLVMGetHostCPUName(), *hf = LLVMGetHostCPUFeatures();
        snprintf(t->cpu, sizeof t->cpu, "%s", hc);
        /* the host's features, then the caller's (later items win) */
        int n = snprintf(t->features, sizeof t->features, "%s%s%s", hf ? hf : "", *feat && hf && *hf ? "," : "", feat);
        LLVMDisposeMessage(hc);
        LLVMDisposeMessage(hf);
        if (n < 0 || (size_t)n >= sizeof t->features) {
            snprintf(err, errlen, "the host's CPU features do not fit in %d bytes", LT_TARGET_FEATURES);
            return LATHE_ERR_UNSUPPORTED;
        }
    }
    lathe_status st = probe(t, err, errlen);
    if (st != LATHE_OK) return st;
    t->l2_bytes = opt && opt->l2_bytes > 0 ? (int64_t)opt->l2_bytes : t->host ? host_l2() : LT_TARGET_L2_DEFAULT;
    /* AMX: the last +amx-tile or -amx-tile of the string decides */
    for (const char *p = t->features; *p;) {
        size_t n = strcspn(p, ",");
        if (n == 9 && !strncmp(p + 1, "amx-tile", 8)) t->amx = p[0] == '+';
        p += n + (p[n] == ',');
    }
    /* Tiles are 64 or 32 bytes wide: 64 with AVX-512's registers and masks,
     * else 32 (what AVX2 has; LLVM splits them on narrower units). */
    int bytes = force ? force : t->vector_bytes >= 64 ? 64 : 32;
    t->tile_bytes = bytes;
    t->tile_regs = bytes == 64 ? 32 : 16;
    t->tile_mask_regs = bytes == 64;
    return LATHE_OK;
}

void lt_target_describe(const lt_target *t, char *buf, size_t len) {
    snprintf(buf, len, "%s%s%s: %d-byte vectors, %d registers%s%s%s%s%s; tiles of %d-byte vectors; L2 %lld KiB", t->cpu,
             t->host ? " (this host)" : "", !t->host && *t->features ? " with the given features" : "", t->vector_bytes,
             t->vector_regs, t->fma ? ", FMA" : "", t->masked_loads ? ", masked loads" : "",
             t->mask_regs ? ", mask registers" : "", t->bf16 ? ", bf16" : "", t->amx ? ", AMX" : "", t->tile_bytes,
             (long long)(t->l2_bytes >> 10));
}
