/* aot.c - native trainers: a model's training and evaluation programs
 * compiled to object code by LLVM's target machine, their tables written as
 * C data with a main() that calls the runtime's lathe_trainer_main, and the
 * whole linked by the system C compiler with the runtime library - no LLVM
 * at run time.  Also `lathe train` and `lathe step`: the same programs
 * JIT-compiled in process, handed to the same driver. */
#define _XOPEN_SOURCE 700 /* realpath */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <llvm-c/Core.h>

#include "lathe_build.h"
#include "lathe_dist.h"
#include "lathe_trainer.h"
#include "program.h"

/* Where the runtime is (meson.build defines these): relative to the
 * directory of the running program as installed, and in the build tree. */
#ifndef LATHE_BIN_TO_LIB
#define LATHE_BIN_TO_LIB "../lib"
#endif
#ifndef LATHE_BIN_TO_INC
#define LATHE_BIN_TO_INC "../include/lathe"
#endif
#ifndef LATHE_BUILD_ROOT
#define LATHE_BUILD_ROOT ""
#endif
#ifndef LATHE_BUILD_RUNTIME_LIB
#define LATHE_BUILD_RUNTIME_LIB ""
#endif
#ifndef LATHE_BUILD_RUNTIME_INC
#define LATHE_BUILD_RUNTIME_INC ""
#endif
#ifndef LATHE_RUNTIME_LDFLAGS
#define LATHE_RUNTIME_LDFLAGS ""
#endif
#define RUNTIME_ARCHIVE "liblathe_runtime.a"
#define RUNTIME_HEADER "lathe_trainer.h"
enum { RT_PATH_BYTES = 4096 };

static bool readable(const char *dir, const char *file) {
    char path[RT_PATH_BYTES + 64];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    return access(path, R_OK) == 0;
}

/* The runtime archive and its headers' directory, when dir/RUNTIME_ARCHIVE
 * (unless lib is taken already) and inc/RUNTIME_HEADER are there. */
static bool take_runtime(const char *dir, const char *inc, char *lib_out, char *inc_out, bool need_lib, bool need_inc) {
    if ((need_lib && !readable(dir, RUNTIME_ARCHIVE)) || (need_inc && !readable(inc, RUNTIME_HEADER))) return false;
    if (need_lib) snprintf(lib_out, RT_PATH_BYTES, "%s/%s", dir, RUNTIME_ARCHIVE);
    if (need_inc) snprintf(inc_out, RT_PATH_BYTES, "%s", inc);
    return true;
}

/* pkg-config's word for the runtime: the -L directory that holds the
 * archive and the -I directory that holds the headers (system directories
 * included; pkg-config leaves them out by default).  false when pkg-config
 * or lathe-runtime.pc is missing, or names neither. */
static bool runtime_from_pkg_config(char *lib_out, char *inc_out, bool need_lib, bool need_inc) {
    FILE *pc = popen("PKG_CONFIG_ALLOW_SYSTEM_LIBS=1 PKG_CONFIG_ALLOW_SYSTEM_CFLAGS=1 "
                     "${PKG_CONFIG:-pkg-config} --cflags-only-I --libs-only-L lathe-runtime 2>/dev/null",
                     "r");
    if (!pc) return false;
    char words[4 * RT_PATH_BYTES];
    size_t n = fread(words, 1, sizeof words - 1, pc);
    words[n] = 0;
    bool ok = pclose(pc) == 0;
    bool found_lib = !need_lib, found_inc = !need_inc;
    for (char *save = NULL, *w = strtok_r(words, " \t\n", &save); ok && w; w = strtok_r(NULL, " \t\n", &save)) {
        if (!found_lib && !strncmp(w, "-L", 2)) found_lib = take_runtime(w + 2, NULL, lib_out, NULL, true, false);
        if (!found_inc && !strncmp(w, "-I", 2)) found_inc = take_runtime(NULL, w + 2, NULL, inc_out, false, true);
    }
    return ok && found_lib && found_inc;
}

/* The runtime library a trainer links (lib) and the directory of its
 * headers (inc), the first found of:
 *   1. $LATHE_RUNTIME_LIB and $LATHE_RUNTIME_INC, each on its own;
 *   2. beside the running program as `meson install` puts them:
 *      DIR/LATHE_BIN_TO_LIB/liblathe_runtime.a and DIR/LATHE_BIN_TO_INC for
 *      the program in DIR (paths relative to bindir, so a moved installation
 *      still works);
 *   3. the build tree's, when the program runs from its build directory;
 *   4. what `pkg-config lathe-runtime` names.
 * The build tree comes before pkg-config so that a development build never
 * links an installed runtime of another version.  On failure err says
 * where it looked. */
static lathe_status find_runtime(char *lib, char *inc, char *err, size_t errlen) {
    const char *env_lib = getenv("LATHE_RUNTIME_LIB"), *env_inc = getenv("LATHE_RUNTIME_INC");
    bool need_lib = !env_lib || !*env_lib, need_inc = !env_inc || !*env_inc;
    if (!need_lib) snprintf(lib, RT_PATH_BYTES, "%s", env_lib);
    if (!need_inc) snprintf(inc, RT_PATH_BYTES, "%s", env_inc);
    if (!need_lib && !need_inc) return LATHE_OK;

    char exe[RT_PATH_BYTES] = "", bin_lib[RT_PATH_BYTES * 2] = "?", bin_inc[RT_PATH_BYTES * 2] = "?";
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash = len > 0 ? (exe[len] = 0, strrchr(exe, '/')) : NULL;
    if (slash) {
        *slash = 0; /* exe is now its directory */
        if (LATHE_BIN_TO_LIB[0] == '/') snprintf(bin_lib, sizeof bin_lib, "%s", LATHE_BIN_TO_LIB);
        else snprintf(bin_lib, sizeof bin_lib, "%s/%s", exe, LATHE_BIN_TO_LIB);
        if (LATHE_BIN_TO_INC[0] == '/') snprintf(bin_inc, sizeof bin_inc, "%s", LATHE_BIN_TO_INC);
        else snprintf(bin_inc, sizeof bin_inc, "%s/%s", exe, LATHE_BIN_TO_INC);
        if (take_runtime(bin_lib, bin_inc, lib, inc, need_lib, need_inc)) return LATHE_OK;
    }
    /* /proc/self/exe has its symbolic links resolved: so must the build root */
    char build_root[PATH_MAX] = LATHE_BUILD_ROOT;
    if (build_root[0] && !realpath(LATHE_BUILD_ROOT, build_root)) snprintf(build_root, sizeof build_root, "%s", LATHE_BUILD_ROOT);
    size_t root = strlen(build_root);
    bool in_build = slash && root > 0 && !strncmp(exe, build_root, root) && (exe[root] == 0 || exe[root] == '/');
    if (in_build) {
        char build_lib_dir[] = LATHE_BUILD_RUNTIME_LIB;
        char *cut = strrchr(build_lib_dir, '/');
        if (cut) *cut = 0;
        if (cut && take_runtime(build_lib_dir, LATHE_BUILD_RUNTIME_INC, lib, inc, need_lib, need_inc)) return LATHE_OK;
    }
    if (runtime_from_pkg_config(lib, inc, need_lib, need_inc)) return LATHE_OK;
    char looked[RT_PATH_BYTES * 5];
    int k = snprintf(looked, sizeof looked, "looked for");
    if (need_lib) k += snprintf(looked + k, sizeof looked - (size_t)k, " %s in %s", RUNTIME_ARCHIVE, bin_lib);
    if (need_inc)
        k += snprintf(looked + k, sizeof looked - (size_t)k, "%s %s in %s", need_lib ? " and" : "", RUNTIME_HEADER, bin_inc);
    if (in_build) snprintf(looked + k, sizeof looked - (size_t)k, ", in the build tree %s", build_root);
    snprintf(err, errlen,
             "cannot find Lathe's runtime to link the trainer with: %s, and asked pkg-config for lathe-runtime; "
             "install Lathe (meson install), point PKG_CONFIG_PATH at the directory of its lathe-runtime.pc, "
             "or set LATHE_RUNTIME_LIB to the library and LATHE_RUNTIME_INC to its headers' directory",
             looked);
    return LATHE_ERR_IO;
}

static void cstr(FILE *o, const char *s) {
    fputc('"', o);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(o, "\\%c", c);
        else if (c < 32 || c >= 127) fprintf(o, "\\%03o", c);
        else fputc(c, o);
    }
    fputc('"', o);
}

/* The tables of program p as C data named NAME_*, and its lathe_rt_compiled. */
static void write_program(FILE *o, const lathe_program *p, const char *name, const char *prefix) {
    const lt_fused *f = p->b.f;
    for (int i = 0; i < f->nk; i++) fprintf(o, "void %s%d(uint8_t *, int64_t, int64_t);\n", prefix, i);
    fprintf(o, "static const lathe_rt_kernel %s_kernels[] = {\n", name);
    for (int i = 0; i < p->rt.nkernels; i++) {
        int k = p->kfused[i];
        if (k < 0 || f->ks[k].gather) fprintf(o, "    {.fn = 0, .range = 1}, /* communication */\n");
        else fprintf(o, "    {.fn = %s%d, .range = %lld},\n", prefix, k, (long long)p->kernels[i].range);
    }
    fprintf(o, "    {0}};\nstatic const lathe_rt_gather %s_gathers[] = {\n", name);
    for (int i = 0; i < p->rt.ngathers; i++) {
        const lathe_rt_gather *g = &p->gathers[i];
        fprintf(o, "    {.kernel = %d, .wait = %d, .src = %lld, .dst = %lld, .outer = %lld, .bytes = %lld, .parts = %d},\n",
                g->kernel, g->wait, (long long)g->src, (long long)g->dst, (long long)g->outer, (long long)g->bytes, g->parts);
    }
    fprintf(o, "    {0}};\nstatic const lathe_rt_copy %s_copies[] = {\n", name);
    for (int i = 0; i < p->rt.ncopies; i++)
        fprintf(o, "    {.src = %lld, .dst = %lld, .bytes = %lld},\n", (long long)p->copies[i].src,
                (long long)p->copies[i].dst, (long long)p->copies[i].bytes);
    fprintf(o, "    {0}};\nstatic const lathe_rt_tensor %s_tensors[] = {\n", name);
    for (int i = 0; i < p->ntensors; i++) {
        const lathe_rt_tensor *t = &p->tensors[i];
        fputs("    {.name = ", o);
        cstr(o, t->name);
        fprintf(o, ", .kind = %d, .dtype = %d, .rank = %d, .shape = {", (int)t->kind, t->dtype, t->rank);
        for (int d = 0; d < LATHE_RT_MAX_RANK; d++) fprintf(o, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        fprintf(o, "}, .numel = %lld, .offset = %lld, .requires_grad = %d, .grad_offset = %lld, .init = %d, .init_a = %a, "
                   ".index_limit = %lld, .index_ignore = %lld},\n",
                (long long)t->numel, (long long)t->offset, t->requires_grad, (long long)t->grad_offset, (int)t->init,
                t->init_a, (long long)t->index_limit,
                (long long)(t->index_ignore == INT64_MIN ? 0 : t->index_ignore)); /* 0 is in range: no extra value */
    }
    fputs("};\n", o);
    int nconst = 0;
    for (int b = 0; b < f->nbufs; b++) {
        if (f->bufs[b].kind != B_CONST) continue;
        fprintf(o, "static const unsigned char %s_const%d[] = {", name, b);
        const unsigned char *d = f->bufs[b].data;
        for (int64_t k = 0; k < f->plan[b].size; k++) fprintf(o, "%s%s%u", k ? "," : "", k % 24 ? "" : "\n    ", d[k]);
        fputs("};\n", o);
        nconst++;
    }
    fprintf(o, "static const lathe_rt_const %s_consts[] = {\n", name);
    for (int b = 0; b < f->nbufs; b++)
        if (f->bufs[b].kind == B_CONST)
            fprintf(o, "    {.offset = %lld, .bytes = %lld, .data = %s_const%d},\n", (long long)f->plan[b].offset,
                    (long long)f->plan[b].size, name, b);
    fprintf(o, "    {0}};\n");
    fprintf(o,
            "#define %s_PROGRAM {.prog = {.arena = 0, .arena_size = %lld, .kernels = %s_kernels, .nkernels = %d, "
            ".copies = %s_copies, .ncopies = %d, .sync_offset = %lld, .gathers = %s_gathers, .ngathers = %d}, "
            ".tensors = %s_tensors, .ntensors = %d, .consts = %s_consts, .nconsts = %d}\n\n",
            name, (long long)p->rt.arena_size, name, p->rt.nkernels, name, p->rt.ncopies, (long long)p->rt.sync_offset, name,
            p->rt.ngathers, name, p->ntensors, name, nconst);
}

/* Run argv, waiting; 0 when it exits with 0. */
static int run_cmd(char *const *argv, char *err, size_t errlen) {
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "cannot start %s: %s", argv[0], strerror(errno));
        return -1;
    }
    if (pid == 0) {
        execvp(argv[0], argv);
        fprintf(stderr, "lathe: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            snprintf(err, errlen, "waiting for %s: %s", argv[0], strerror(errno));
            return -1;
        }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    if (WIFEXITED(status)) snprintf(err, errlen, "%s failed (exit status %d); the command was:", argv[0], WEXITSTATUS(status));
    else snprintf(err, errlen, "%s was killed by signal %d; the command was:", argv[0], WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    for (int i = 0; argv[i]; i++) {
        size_t n = strlen(err);
        snprintf(err + n, errlen - n, " %s", argv[i]);
    }
    return -1;
}

int lathe_default_shards(int64_t batch) {
    int64_t a = batch > 0 ? batch : 1, b = 12;
    while (b) {
        int64_t t = a % b;
        a = b, b = t;
    }
    return (int)a;
}

/* The programs of a trainer: for one process, the evaluation program, and
 * one per process count in ranks (procs[i], prs[i]). */
typedef struct {
    lathe_program *tr, *ev;
    int n, procs[LATHE_MAX_RANKS];
    lathe_program *pr[LATHE_MAX_RANKS];
    int shards;                   /* what the programs have */
} programs;

static void programs_free(programs *ps) {
    lathe_program_free(ps->tr);
    lathe_program_free(ps->ev);
    for (int i = 0; i < ps->n; i++) lathe_program_free(ps->pr[i]);
    memset(ps, 0, sizeof *ps);
}

/* The programs for target (s->target for objects, this host for the JIT):
 * the one-process training program unless ranks holds exactly the process
 * count of a JIT run (one_only false), the evaluation program, and one
 * training program per count of ranks. */
static lathe_status compile_all(const lathe_trainer_spec *s, int backend, const int *ranks, int nranks, bool one,
                                programs *ps, char *err, size_t errlen) {
    memset(ps, 0, sizeof *ps);
    lt_target t;
    lathe_status st = lt_target_init(&t, backend == LT_BACKEND_OBJECT ? &s->target : NULL, err, errlen);
    if (st != LATHE_OK) return st;
    bool obj = backend == LT_BACKEND_OBJECT;
    int S = s->shards > 0 ? s->shards : lathe_default_shards(s->info.batch);
    ps->shards = S;
    if (nranks > LATHE_MAX_RANKS) {
        snprintf(err, errlen, "--ranks: at most %d process counts", LATHE_MAX_RANKS);
        return LATHE_ERR_ARG;
    }
    for (int i = 0; i < nranks; i++)
        if (ranks[i] < 2 || S % ranks[i] || s->info.batch % ranks[i]) {
            snprintf(err, errlen, "--ranks %d: %s", ranks[i],
                     ranks[i] < 2 ? "a count of processes above 1 (one process always has its program)"
                                  : "the processes must divide the batch's shards");
            if (ranks[i] >= 2 && S % ranks[i]) {
                size_t m = strlen(err);
                snprintf(err + m, errlen - m, " (batch %lld in %d shards%s)", (long long)s->info.batch, S,
                         s->shards > 0 ? "" : ", the default: choose them with --shards");
            }
            return LATHE_ERR_ARG;
        }
    if (s->shards > 0 && s->info.batch % S) {
        snprintf(err, errlen, "--shards %d: a batch of %lld samples does not split into %d shards", S,
                 (long long)s->info.batch, S);
        return LATHE_ERR_ARG;
    }
    lathe_graph *failed = NULL;
    lt_shard_opts o = {S, 1, s->local_bn};
    if (one) {
        ps->tr = lt_compile(s->train, backend, &t, obj ? "lathe_train_k" : NULL, &o);
        if (!ps->tr) failed = s->train;
        else ps->shards = ps->tr->b.shard.shards;
        if (ps->tr && s->shards > 1 && ps->shards == 1) { /* asked for, and the model cannot be sharded */
            snprintf(err, errlen, "--shards %d: %s cannot be sharded: its values mix the samples of the batch otherwise "
                     "than by sums over it (lathe dump %s --procs %d --stage decomposed names the node)", S, s->info.name,
                     s->info.source ? s->info.source : "MODEL", S);
            programs_free(ps);
            return LATHE_ERR_UNSUPPORTED;
        }
    }
    if (!failed && s->eval && !(ps->ev = lt_compile(s->eval, backend, &t, obj ? "lathe_eval_k" : NULL, NULL)))
        failed = s->eval;
    for (int i = 0; i < nranks && !failed; i++) {
        if (ps->shards < 2) {
            snprintf(err, errlen, "%s cannot run on %d processes: its values mix the samples of the batch (it "
                     "cannot be sharded)", s->info.name, ranks[i]);
            programs_free(ps);
            return LATHE_ERR_UNSUPPORTED;
        }
        char prefix[64];
        snprintf(prefix, sizeof prefix, "lathe_train_p%d_k", ranks[i]);
        o.procs = ranks[i];
        ps->procs[i] = ranks[i];
        if (!(ps->pr[i] = lt_compile(s->train, backend, &t, obj ? prefix : NULL, &o))) failed = s->train;
        ps->n = i + 1;
    }
    if (!failed) return LATHE_OK;
    snprintf(err, errlen, "%s", lathe_graph_error(failed));
    st = lathe_graph_status(failed) != LATHE_OK ? lathe_graph_status(failed) : LATHE_ERR_UNSUPPORTED;
    programs_free(ps);
    return st;
}

static void write_model(FILE *o, const lathe_trainer_spec *s, const programs *ps) {
    bool eval = ps->ev != NULL;
    fputs("static const lathe_rt_ranked model_ranked[] = {\n", o);
    for (int i = 0; i < ps->n; i++) fprintf(o, "    {.procs = %d, .train = train_p%d_PROGRAM},\n", ps->procs[i], ps->procs[i]);
    fputs("    {0}};\n", o);
    fputs("static const char *const model_inputs[] = {", o);
    for (int i = 0; i < s->info.ninputs; i++) {
        cstr(o, s->info.inputs[i]);
        fputs(", ", o);
    }
    fputs("0};\nstatic const bool model_raw[] = {", o);
    for (int i = 0; i < s->info.ninputs; i++) fprintf(o, "%d, ", s->info.raw ? s->info.raw[i] : 0);
    fputs("0};\nstatic const lathe_trainer_model model = {.info = {.name = ", o);
    cstr(o, s->info.name);
    fputs(", .source = ", o);
    cstr(o, s->info.source ? s->info.source : "");
    fprintf(o, ", .batch = %lld, .ninputs = %d, .inputs = model_inputs, .raw = model_raw, .label = ", (long long)s->info.batch,
            s->info.ninputs);
    if (s->info.label) cstr(o, s->info.label);
    else fputs("0", o);
    fprintf(o, ", .classes = %lld, .classify = %d}, .train = train_PROGRAM%s, .shards = %d, .local_bn = %d, "
               ".ranked = model_ranked, .nranked = %d};\n",
            (long long)s->info.classes, s->info.classify, eval ? ", .eval = eval_PROGRAM" : "", ps->shards, s->local_bn, ps->n);
    fputs("int main(int argc, char **argv) {\n"
          "    if (argc > 1 && (!strcmp(argv[1], \"step\") || !strcmp(argv[1], \"sample\"))) {\n"
          "        char prog[4096];\n"
          "        int step = argv[1][1] == 't';\n"
          "        snprintf(prog, sizeof prog, \"%s %s\", argv[0], argv[1]);\n"
          "        argv[1] = prog;\n"
          "        return step ? lathe_trainer_step_main(&model, argc - 1, argv + 1)\n"
          "                    : lathe_trainer_sample_main(&model, argc - 1, argv + 1);\n"
          "    }\n"
          "    return lathe_trainer_main(&model, argc, argv);\n}\n", o);
}

lathe_status lathe_build_trainer(const lathe_trainer_spec *s, const char *out, char *err, size_t errlen) {
    programs ps;
    lathe_status st = compile_all(s, LT_BACKEND_OBJECT, s->ranks, s->nranks, true, &ps, err, errlen);
    if (st != LATHE_OK) return st;
    /* every program: the one-process training program, the evaluation
     * program, then one per process count */
    lathe_program *all[LATHE_MAX_RANKS + 2] = {ps.tr, ps.ev};
    const char *kind[LATHE_MAX_RANKS + 2] = {"train", "eval"};
    char names[LATHE_MAX_RANKS][32];
    int nprog = 2;
    for (int i = 0; i < ps.n; i++) {
        snprintf(names[i], sizeof names[i], "train_p%d", ps.procs[i]);
        kind[nprog] = names[i];
        all[nprog++] = ps.pr[i];
    }
    char dir[] = "/tmp/lathe-XXXXXX";
    /* the files: each part's object, then model.c; the link's command line:
     * them, at most MAX_CC_WORDS words of $CC, the sanitizers' flags and a
     * dozen fixed arguments */
    enum { PATH_BYTES = 64, MAX_CC_WORDS = 8, MAX_LDFLAGS = 16, FIXED_ARGS = 12 };
    int maxpaths = 1;
    for (int k = 0; k < nprog; k++) maxpaths += all[k] ? all[k]->b.nparts : 0;
    char (*paths)[PATH_BYTES] = malloc((size_t)maxpaths * sizeof *paths);
    char **argv = malloc((size_t)(maxpaths + MAX_CC_WORDS + MAX_LDFLAGS + FIXED_ARGS) * sizeof *argv);
    int npaths = 0;
    if (!paths || !argv) {
        snprintf(err, errlen, "out of memory");
        st = LATHE_ERR_NOMEM;
        goto done;
    }
    if (!mkdtemp(dir)) {
        snprintf(err, errlen, "cannot make a temporary directory: %s", strerror(errno));
        st = LATHE_ERR_IO;
        goto done;
    }
    /* the objects */
    for (int k = 0; k < nprog && st == LATHE_OK; k++) {
        lathe_program *p = all[k];
        for (int i = 0; p && i < p->b.nparts; i++) {
            LLVMMemoryBufferRef code = p->b.parts[i].code;
            snprintf(paths[npaths], sizeof paths[npaths], "%s/%s_%d.o", dir, kind[k], i);
            FILE *o = fopen(paths[npaths], "wb");
            size_t len = LLVMGetBufferSize(code);
            if (!o || fwrite(LLVMGetBufferStart(code), 1, len, o) != len || fclose(o) != 0) {
                snprintf(err, errlen, "writing %s: %s", paths[npaths], strerror(errno));
                st = LATHE_ERR_IO;
            }
            npaths++;
        }
    }
    /* the tables and main() */
    snprintf(paths[npaths], sizeof paths[npaths], "%s/model.c", dir);
    FILE *o = st == LATHE_OK ? fopen(paths[npaths], "w") : NULL;
    npaths++;
    if (st == LATHE_OK && !o) {
        snprintf(err, errlen, "writing %s: %s", paths[npaths - 1], strerror(errno));
        st = LATHE_ERR_IO;
    }
    if (o) {
        fputs("/* generated by lathe compile */\n#include <stdbool.h>\n#include <stdint.h>\n#include <stdio.h>\n#include <string.h>\n"
              "#include \"lathe_trainer.h\"\n",
              o);
        write_program(o, ps.tr, "train", "lathe_train_k");
        if (ps.ev) write_program(o, ps.ev, "eval", "lathe_eval_k");
        for (int i = 0; i < ps.n; i++) {
            char prefix[64];
            snprintf(prefix, sizeof prefix, "lathe_train_p%d_k", ps.procs[i]);
            write_program(o, ps.pr[i], names[i], prefix);
        }
        write_model(o, s, &ps);
        if (fclose(o) != 0) {
            snprintf(err, errlen, "writing %s: %s", paths[npaths - 1], strerror(errno));
            st = LATHE_ERR_IO;
        }
    }
    char lib[RT_PATH_BYTES], inc[RT_PATH_BYTES];
    if (st == LATHE_OK) st = find_runtime(lib, inc, err, errlen);
    if (st == LATHE_OK) { /* link: cc model.c *.o -I runtime runtime.a -fopenmp -lcjson -lz -lm -o out */
        /* $CC may be a command with arguments ("ccache gcc"): split on spaces */
        char cc[1024];
        snprintf(cc, sizeof cc, "%s", getenv("CC") && *getenv("CC") ? getenv("CC") : "cc");
        char incflag[RT_PATH_BYTES + 8];
        snprintf(incflag, sizeof incflag, "-I%s", inc);
        int n = 0;
        for (char *save = NULL, *t = strtok_r(cc, " ", &save); t && n < MAX_CC_WORDS; t = strtok_r(NULL, " ", &save))
            argv[n++] = t;
        argv[n++] = "-O1";
        argv[n++] = "-w";
        argv[n++] = incflag;
        argv[n++] = paths[npaths - 1];
        for (int i = 0; i < npaths - 1; i++) argv[n++] = paths[i];
        argv[n++] = lib;
        char ldflags[] = LATHE_RUNTIME_LDFLAGS; /* sanitizers of this build, space-separated */
        int nld = 0;
        for (char *save = NULL, *t = strtok_r(ldflags, " ", &save); t && nld < MAX_LDFLAGS; t = strtok_r(NULL, " ", &save))
            argv[n++] = t, nld++;
        argv[n++] = "-fopenmp";
        argv[n++] = "-lcjson";
        argv[n++] = "-lz";
        argv[n++] = "-lm";
        argv[n++] = "-o";
        argv[n++] = (char *)out;
        argv[n] = NULL;
        if (run_cmd(argv, err, errlen) != 0) st = LATHE_ERR_IO;
    }
    for (int i = 0; i < npaths; i++) unlink(paths[i]);
    rmdir(dir);
done:
    free(paths);
    free(argv);
    programs_free(&ps);
    return st;
}

static lathe_rt_compiled compiled(const lathe_program *p) {
    return (lathe_rt_compiled){p->rt, p->tensors, p->ntensors, NULL, 0};
}

int lathe_trainer_jit_main(const lathe_trainer_spec *s, lathe_run_kind kind, int argc, char **argv) {
    programs ps;
    char err[2048];
    /* under an MPI launcher, training needs the program for its process count */
    int P = kind == LATHE_RUN_TRAIN ? lathe_dist_announced(NULL, 0) : 1;
    if (compile_all(s, LATHE_BACKEND_JIT, &P, P > 1, P <= 1, &ps, err, sizeof err) != LATHE_OK) {
        fprintf(stderr, "%s: %s\n", argc > 0 ? argv[0] : "lathe", err);
        return 1;
    }
    lathe_trainer_model m = {.info = s->info, .shards = ps.shards, .local_bn = s->local_bn};
    lathe_rt_ranked r = {0};
    if (ps.n) { /* the program for P processes only: it stands for train too (same tensors, local inputs) */
        r = (lathe_rt_ranked){ps.procs[0], compiled(ps.pr[0])};
        m.train = r.train;
        m.ranked = &r;
        m.nranked = 1;
    } else m.train = compiled(ps.tr);
    if (ps.ev) m.eval = compiled(ps.ev);
    int rc = kind == LATHE_RUN_STEP     ? lathe_trainer_step_main(&m, argc, argv)
             : kind == LATHE_RUN_SAMPLE ? lathe_trainer_sample_main(&m, argc, argv)
                                        : lathe_trainer_main(&m, argc, argv);
    programs_free(&ps);
    return rc;
}
