/* tensors.c - the runtime's dtypes, and the tensor table of a compiled
 * program: lookup by name, and PyTorch's default initialization drawn from
 * a seeded generator.
 *
 * Each tensor gets its own SplitMix64 stream (splitmix.h), seeded with the
 * run's seed xor an FNV-1a hash of its name, so its values depend on the
 * seed and its name only - not on the order of the table, nor on which other
 * tensors a model has - and a uniform draw takes the top 53 bits of each
 * output.  A
 * normal draw is Box-Muller's: two uniforms give elements 2k and 2k+1 (the
 * C library's log, cos and sin: the same bits wherever it is the same). */
#include <assert.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "lathe_runtime.h"
#include "splitmix.h"

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
    [LATHE_RT_F32] = {"f32", sizeof(float)},
    [LATHE_RT_F64] = {"f64", sizeof(double)},
    [LATHE_RT_I64] = {"i64", sizeof(int64_t)},
    [LATHE_RT_BOOL] = {"bool", sizeof(bool)},
    [LATHE_RT_U8] = {"u8", sizeof(uint8_t)},
    [LATHE_RT_I32] = {"i32", sizeof(int32_t)},
};
static_assert(sizeof dtypes / sizeof dtypes[0] == LATHE_RT_NDTYPES, "one row per dtype");

size_t lathe_rt_dtype_size(lathe_rt_dtype dtype) {
    return dtype >= 0 && dtype < LATHE_RT_NDTYPES ? dtypes[dtype].size : 0;
}

const char *lathe_rt_dtype_name(lathe_rt_dtype dtype) {
    return dtype >= 0 && dtype < LATHE_RT_NDTYPES ? dtypes[dtype].name : "?";
}

const lathe_rt_tensor *lathe_rt_find(const lathe_rt_tensor *ts, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (ts[i].name && strcmp(ts[i].name, name) == 0) return &ts[i];
    return NULL;
}

static uint64_t name_hash(const char *s) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

int lathe_rt_check_indices(const uint8_t *arena, const lathe_rt_tensor *ts, int n, char *err, size_t errlen) {
    for (int i = 0; i < n; i++) {
        const lathe_rt_tensor *t = &ts[i];
        if (t->kind != LATHE_RT_INPUT || t->index_limit <= 0 || t->dtype != LATHE_RT_I64) continue;
        const int64_t *v = (const int64_t *)(const void *)(arena + t->offset);
        for (int64_t e = 0; e < t->numel; e++)
            if ((v[e] < 0 || v[e] >= t->index_limit) && v[e] != t->index_ignore) {
                if (err && errlen)
                    snprintf(err, errlen, "input '%s': element %lld is %lld, outside [0, %lld) (the classes or rows it "
                             "indexes)", t->name, (long long)e, (long long)v[e], (long long)t->index_limit);
                return -1;
            }
    }
    return 0;
}

/* Uniform in [0, 1): the top 53 bits of the next output. */
static double uniform01(uint64_t *s) { return (double)(lt_splitmix64(s) >> 11) / 9007199254740992.0; }

void lathe_rt_init(uint8_t *arena, const lathe_rt_tensor *ts, int n, uint64_t seed) {
    for (int i = 0; i < n; i++) {
        const lathe_rt_tensor *t = &ts[i];
        if (t->kind != LATHE_RT_PARAM && t->kind != LATHE_RT_BUFFER) continue;
        if (t->init == LATHE_INIT_NONE) continue;
        uint64_t s = seed ^ name_hash(t->name);
        uint8_t *p = arena + t->offset;
        if (t->init == LATHE_INIT_SEED && t->dtype == LATHE_RT_I64) {
            for (int64_t j = 0; j < t->numel; j++) ((int64_t *)(void *)p)[j] = j ? 0 : (int64_t)seed;
            continue;
        }
        double spare = 0;
        for (int64_t j = 0; j < t->numel; j++) {
            double v = t->init_a;
            if (t->init == LATHE_INIT_UNIFORM) v = t->init_a * (2.0 * uniform01(&s) - 1.0);
            if (t->init == LATHE_INIT_NORMAL && j % 2 == 1) v = spare;
            else if (t->init == LATHE_INIT_NORMAL) { /* u1 in (0, 1]: the log is finite */
                double u1 = 1.0 - uniform01(&s), u2 = uniform01(&s);
                double r = t->init_a * sqrt(-2.0 * log(u1)), th = 6.283185307179586 * u2;
                v = r * cos(th);
                spare = r * sin(th);
            }
            switch (t->dtype) {
            case LATHE_RT_F32: ((float *)p)[j] = (float)v; break;
            case LATHE_RT_F64: ((double *)p)[j] = v; break;
            case LATHE_RT_I64: ((int64_t *)p)[j] = (int64_t)v; break;
            case LATHE_RT_BOOL: ((bool *)p)[j] = v != 0; break;
            default: break; /* U8, I32: storage types, never a program's */
            }
        }
    }
}
