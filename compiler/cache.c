/* cache.c - machine code cached on disk, so that compiling a model again
 * (a trainer restarted, a test run twice, `lathe train` after `lathe dump`)
 * skips LLVM's O3 and code generation, which are nearly all of a compile.
 *
 * The key of a part (jit.c) is a BLAKE3 hash of everything its object code
 * depends on: a format tag, LLVM's version, the target (triple, CPU, feature
 * string, PIC or not) and the part's LLVM module as bitcode, written after
 * lowering and before optimization.  An entry is DIR/KEY.o holding a magic
 * word, the BLAKE3 hash of the object and the object; it is written to a
 * temporary file and renamed into place, so a reader sees a whole entry or
 * none, and one whose hash does not match (a torn or damaged file) is a miss
 * that the next compile overwrites.  Every failure to read or write is a
 * miss: the cache can make a compile faster, never fail it.
 *
 * DIR is $LATHE_CACHE_DIR, else $XDG_CACHE_HOME/lathe, else
 * $HOME/.cache/lathe; LATHE_CACHE_DIR set to "" or "off" turns the cache
 * off.  Nothing removes old entries (each is the size of the object, a few
 * kilobytes to a few megabytes a model): delete the directory to empty it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <llvm-c/BitWriter.h>
#include <llvm-c/Core.h>
#include <llvm-c/blake3.h>

#include "pipeline.h"

static const char magic[8] = {'L', 'A', 'T', 'H', 'E', 'O', 'B', '1'};

/* mkdir -p path; false on failure. */
static bool make_dirs(char *path) {
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        bool ok = mkdir(path, 0755) == 0 || errno == EEXIST;
        *p = '/';
        if (!ok) return false;
    }
    return mkdir(path, 0755) == 0 || errno == EEXIST;
}

bool lt_cache_open(lt_cache *c) {
    const char *env = getenv("LATHE_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (env) n = snprintf(c->dir, sizeof c->dir, "%s", env);
    else if (xdg && *xdg) n = snprintf(c->dir, sizeof c->dir, "%s/lathe", xdg);
    else if (home && *home) n = snprintf(c->dir, sizeof c->dir, "%s/.cache/lathe", home);
    else n = 0;
    c->on = n > 0 && (size_t)n < sizeof c->dir - 80 && strcmp(c->dir, "off") != 0 && make_dirs(c->dir);
    return c->on;
}

void lt_cache_key(const lt_target *t, bool pic, LLVMModuleRef mod, uint8_t key[LT_CACHE_KEY]) {
    llvm_blake3_hasher h;
    llvm_blake3_hasher_init(&h);
    unsigned v[3];
    LLVMGetVersion(&v[0], &v[1], &v[2]);
    char head[LT_TARGET_FEATURES + 256];
    int n = snprintf(head, sizeof head, "lathe object cache 1|llvm %u.%u.%u|%s|%s|%s|%s", v[0], v[1], v[2], t->triple,
                     t->cpu, t->features, pic ? "pic" : "jit");
    llvm_blake3_hasher_update(&h, head, (size_t)n + 1);
    LLVMMemoryBufferRef bc = LLVMWriteBitcodeToMemoryBuffer(mod);
    llvm_blake3_hasher_update(&h, LLVMGetBufferStart(bc), LLVMGetBufferSize(bc));
    LLVMDisposeMemoryBuffer(bc);
    llvm_blake3_hasher_finalize(&h, key, LT_CACHE_KEY);
}

static void entry_path(const lt_cache *c, const uint8_t key[LT_CACHE_KEY], char *path, size_t len) {
    char hex[2 * LT_CACHE_KEY + 1];
    for (int i = 0; i < LT_CACHE_KEY; i++) snprintf(hex + 2 * i, 3, "%02x", key[i]);
    snprintf(path, len, "%s/%s.o", c->dir, hex);
}

static void hash_of(const void *data, size_t n, uint8_t out[LT_CACHE_KEY]) {
    llvm_blake3_hasher h;
    llvm_blake3_hasher_init(&h);
    llvm_blake3_hasher_update(&h, data, n);
    llvm_blake3_hasher_finalize(&h, out, LT_CACHE_KEY);
}

LLVMMemoryBufferRef lt_cache_get(const lt_cache *c, const uint8_t key[LT_CACHE_KEY]) {
    if (!c->on) return NULL;
    char path[sizeof c->dir + 80];
    entry_path(c, key, path, sizeof path);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    LLVMMemoryBufferRef obj = NULL;
    char m[sizeof magic];
    uint8_t want[LT_CACHE_KEY], got[LT_CACHE_KEY];
    long size = -1;
    if (fread(m, 1, sizeof m, f) == sizeof m && !memcmp(m, magic, sizeof m) && fread(want, 1, sizeof want, f) == sizeof want &&
        fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) > (long)(sizeof m + sizeof want) &&
        fseek(f, (long)(sizeof m + sizeof want), SEEK_SET) == 0) {
        size_t n = (size_t)size - sizeof m - sizeof want;
        char *data = malloc(n);
        if (data && fread(data, 1, n, f) == n) {
            hash_of(data, n, got);
            if (!memcmp(got, want, sizeof got)) obj = LLVMCreateMemoryBufferWithMemoryRangeCopy(data, n, "lathe-cache");
        }
        free(data);
    }
    fclose(f);
    return obj;
}

void lt_cache_put(const lt_cache *c, const uint8_t key[LT_CACHE_KEY], LLVMMemoryBufferRef obj) {
    if (!c->on || !obj) return;
    char path[sizeof c->dir + 80], tmp[sizeof path + 32];
    entry_path(c, key, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    const char *data = LLVMGetBufferStart(obj);
    size_t n = LLVMGetBufferSize(obj);
    uint8_t sum[LT_CACHE_KEY];
    hash_of(data, n, sum);
    FILE *f = fopen(tmp, "wb");
    if (!f) return;
    bool ok = fwrite(magic, 1, sizeof magic, f) == sizeof magic && fwrite(sum, 1, sizeof sum, f) == sizeof sum &&
              fwrite(data, 1, n, f) == n;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) unlink(tmp);
}
