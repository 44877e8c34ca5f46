/* main.c - the lathe command-line tool.
 *
 * One function per verb; each parses its own flags with getopt_long and
 * prints errors as "lathe VERB: message".  Exit status: 0 success, 1 the
 * input was bad (the message says where), 2 the command line was bad. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"
#include "lathe_compiler.h"
#include "lathe_desc.h"
#include "lathe_trainer.h"
#include "plot.h"
#include "safetensors.h"

static const char *main_usage =
    "usage: lathe VERB [options] [args]\n"
    "\n"
    "Lathe is a static computation-graph compiler for training neural networks.\n"
    "\n"
    "verbs:\n"
    "  compile MODEL -o TRAINER   compile a model into a standalone native trainer\n"
    "  train MODEL [flags]        train a model in process (JIT), as a trainer would\n"
    "  step MODEL --inputs B.safetensors -o OUT.safetensors\n"
    "                             one training step: loss, outputs, gradients, new parameters\n"
    "  sample MODEL --load CK     generate text from a language model trained on text:FILE\n"
    "  dump FILE                  check a model and print it at a compiler stage (text or DOT)\n"
    "  plot LOG -o OUT.svg        draw a trainer's --log-file: loss and accuracy curves\n"
    "\n"
    "MODEL and FILE: a model description or Lathe's text IR, told apart by their\n"
    "text (IR statements start with '%'; a NAME.lathe is always a description).\n"
    "'lathe VERB --help' describes each verb.\n"
    "\n"
    "options:\n"
    "  -h, --help     show this help (or 'lathe VERB --help' for a verb)\n"
    "  -V, --version  print the version\n";

static const char *dump_usage =
    "usage: lathe dump FILE [--stage STAGE] [--loss NAME] [--format text|dot] [-o OUT]\n"
    "                       [-D NAME=VALUE] [--batch B] [--eval]\n"
    "                       [--target-cpu CPU] [--target-features FEATURES]\n"
    "                       [--shards S] [--procs P] [--local-bn]\n"
    "\n"
    "Reads FILE (a model description or Lathe's text IR, told apart by their text;\n"
    "'-' reads standard input), checks every op's operands, shapes and attributes,\n"
    "verifies the graph, runs the compiler up to the chosen stage, and prints what\n"
    "that stage made: exactly what a compiled program is built from.  A description\n"
    "is traced in training mode, its loss marked for backward.\n"
    "\n"
    "options:\n"
    "  -s, --stage STAGE      traced: the graph as read (default)\n"
    "                         grad: forward and backward; the values to differentiate\n"
    "                         are the file's 'backward %value [%cotangent]' statements\n"
    "                         or --loss; each gradient is an output named\n"
    "                         'grad.' + the input or parameter name\n"
    "                         opt: grad, then simplified (dead code, common\n"
    "                         subexpressions, constants, algebraic identities)\n"
    "                         decomposed: opt with composites (batch norm, softmax,\n"
    "                         losses, ...) as primitives, simplified again; the node\n"
    "                         ids that fused and plan cite are this graph's.  From\n"
    "                         here on, a file with nothing to differentiate is\n"
    "                         compiled as a forward pass\n"
    "                         fused: the kernels: the target, then each kernel's\n"
    "                         graph nodes, forward (F) or backward (B), the buffers it\n"
    "                         reads, its iteration space and register tiles\n"
    "                         plan: every buffer's arena offset, size and lifetime\n"
    "                         in kernel steps, and the total (peak memory)\n"
    "                         llvm: the kernels as LLVM IR after O3\n"
    "                         asm: the kernels as machine code for the target\n"
    "  -l, --loss NAME        differentiate the output NAME (one element) as the loss,\n"
    "                         in addition to the file's 'backward' statements\n"
    "  -f, --format text|dot  text: the IR in canonical form, which parses back into\n"
    "                         an identical graph (default); dot: a Graphviz digraph in\n"
    "                         the direction of the forward pass, leaves that require\n"
    "                         grad drawn blue (render with: dot -Tpng -o g.png);\n"
    "                         graph stages only (traced, grad, opt, decomposed)\n"
    "  -o, --output OUT       write to OUT instead of standard output\n"
    "  -D, --define NAME=VALUE  descriptions: override the constant 'let NAME'\n"
    "  -b, --batch B          descriptions: the batch size (default: the file's)\n"
    "  -e, --eval             descriptions: the evaluation graph (batch norm on running\n"
    "                         statistics, per-sample loss and correct outputs)\n"
    "  --target-cpu CPU       fused, plan, llvm, asm: compile for this CPU, as LLVM\n"
    "                         names it (znver4, skylake-avx512, x86-64-v3; default:\n"
    "                         this host), as lathe compile --target-cpu does\n"
    "  --target-features F    LLVM CPU features to add (+f) or remove (-f), after the\n"
    "                         CPU's own, comma-separated (+avx512f,-fma)\n"
    "  --shards S             decomposed on: the data-parallel program (lathe compile\n"
    "                         --shards): every reduction over the batch an ordered sum\n"
    "                         of S partials, the file's inputs taken as per-sample data\n"
    "  --procs P              ... and one process's part of P (its B/P samples, the\n"
    "                         all_gathers of the partials; S defaults to P)\n"
    "  --local-bn             ... with batch norm's statistics per process\n"
    "  -h, --help             show this help\n"
    "\n"
    "Errors name FILE:LINE:COLUMN and what was expected; the exit status is 1.\n";

static const char *compile_usage =
    "usage: lathe compile MODEL -o TRAINER [--batch B] [-D NAME=VALUE]... [--target-cpu CPU]\n"
    "                     [--target-features FEATURES] [--ranks P,...] [--shards S] [--local-bn]\n"
    "\n"
    "Compiles MODEL (a .lathe description, or text IR with an output 'loss') into the\n"
    "standalone executable TRAINER: the training program (forward, backward, buffer\n"
    "updates) and the evaluation program are compiled to machine code by LLVM and\n"
    "linked with Lathe's runtime by the C compiler ($CC, default cc).  TRAINER needs no\n"
    "LLVM at run time; run 'TRAINER --help' for its flags (the same as lathe train's),\n"
    "and 'TRAINER step ...' for lathe step's.\n"
    "\n"
    "options:\n"
    "  -o, --output TRAINER     the executable to write (required)\n"
    "  -b, --batch B            the batch size compiled in (default: the description's)\n"
    "  -D, --define NAME=VALUE  override the description's constant 'let NAME'\n"
    "  --target-cpu CPU         the CPU to compile for, as LLVM names it (znver4,\n"
    "                           skylake-avx512, x86-64-v3, x86-64; default: this host);\n"
    "                           register tiles are sized for its vector unit\n"
    "  --target-features F      LLVM CPU features to add (+f) or remove (-f), after the\n"
    "                           CPU's own, comma-separated (+avx512f,-fma; default: none)\n"
    "  --ranks P,...            also compile the training program for data-parallel runs\n"
    "                           on P processes ('mpirun -np P TRAINER ...'; each P above\n"
    "                           1 divides the shards; at most 8 counts; default: none)\n"
    "  --shards S               every reduction over the batch (gradients, the loss, batch\n"
    "                           norm's statistics) is an ordered sum of S partial sums of\n"
    "                           B/S samples, so P processes give the bits of one (default:\n"
    "                           gcd(B, 12), e.g. 4 for batch 64; 1: none, one process only)\n"
    "  --local-bn               batch norm's statistics over each process's own samples\n"
    "                           (PyTorch DDP's default); without it they are over the\n"
    "                           global batch, as SyncBatchNorm's\n"
    "  -h, --help               show this help\n"
    "\n"
    "The runtime library and its headers: $LATHE_RUNTIME_LIB and $LATHE_RUNTIME_INC\n"
    "if set, else those installed beside this lathe (../lib/.../liblathe_runtime.a and\n"
    "../include/lathe, wherever the installation was moved), else this build's when\n"
    "run from its build directory, else those that 'pkg-config lathe-runtime' names.\n"
    "\n"
    "environment: CC (the C compiler that links, default cc), LATHE_RUNTIME_LIB and\n"
    "LATHE_RUNTIME_INC (the runtime library and its headers' directory), PKG_CONFIG\n"
    "(default pkg-config) and PKG_CONFIG_PATH, LATHE_CACHE_DIR (compiled code cached\n"
    "there; default $XDG_CACHE_HOME/lathe or ~/.cache/lathe; off: no cache).\n";

static const char *train_usage_head =
    "usage: lathe train MODEL [-D NAME=VALUE]... [--batch B] --data SPEC [options]\n"
    "\n"
    "JIT-compiles MODEL for this host and trains it in process: the same flags and\n"
    "the same results as a trainer from 'lathe compile MODEL'.  -D NAME=VALUE\n"
    "overrides the description's constant 'let NAME'; --batch sets the batch size.\n"
    "Compiled code is cached in LATHE_CACHE_DIR (default $XDG_CACHE_HOME/lathe or\n"
    "~/.cache/lathe; off: no cache), so training the same model again starts at once.\n"
    "Under 'mpirun -np P' it trains data-parallel, compiling the program for P\n"
    "processes.  --shards S and --local-bn are lathe compile's (see lathe compile\n"
    "--help).  The trainer's flags:\n\n";

/* ---- models: descriptions or text IR ------------------------------------------ */

enum { MAX_DEFINES = 64 };
typedef struct {
    const char *defs[MAX_DEFINES];
    int ndefs;
    int64_t batch; /* 0: the file's */
} model_opts;

/* Take -D NAME=VALUE (-DNAME=VALUE, --define NAME=VALUE, --define=NAME=VALUE)
 * out of argv, in place.  The new argc, or -1 after a message. */
static int take_defines(int argc, char **argv, model_opts *mo, const char *verb) {
    int k = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "--")) { /* the rest are operands */
            while (i < argc) argv[k++] = argv[i++];
            break;
        }
        if (!strcmp(a, "-D") || !strcmp(a, "--define")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "lathe %s: %s needs NAME=VALUE\n", verb, a);
                return -1;
            }
            v = argv[++i];
        } else if (!strncmp(a, "-D", 2)) v = a + 2;
        else if (!strncmp(a, "--define=", 9)) v = a + 9;
        if (!v) {
            argv[k++] = argv[i];
            continue;
        }
        if (!strchr(v, '=') || mo->ndefs == MAX_DEFINES) {
            fprintf(stderr, "lathe %s: -D %s: expected NAME=VALUE%s\n", verb, v, mo->ndefs == MAX_DEFINES ? " (too many)" : "");
            return -1;
        }
        mo->defs[mo->ndefs++] = v;
    }
    argv[k] = NULL;
    return k;
}

typedef struct {
    lathe_graph *train, *eval;
    lathe_desc_info info;
    const char *inputs[16];
    bool raw[16];
    lathe_trainer_spec spec;
} model;

static void model_free(model *m) {
    lathe_graph_free(m->train);
    lathe_graph_free(m->eval);
}

/* Trace path (training, with backward; and the evaluation graph when
 * want_eval and the description has a loss) into m.  0, or 1 after a
 * message. */
static int load_model(const char *verb, const char *path, const model_opts *mo, bool want_eval, model *m) {
    memset(m, 0, sizeof *m);
    lathe_desc_options o = {.training = true, .batch = mo->batch, .ndefines = mo->ndefs, .defines = mo->defs};
    m->train = lathe_graph_new();
    if (!m->train) return fprintf(stderr, "lathe %s: out of memory\n", verb), 1;
    lathe_status st;
    lathe_graph *bad = m->train;
    if (lathe_desc_is_description(path)) {
        st = lathe_desc_parse_file(m->train, path, &o, &m->info);
        if (st == LATHE_OK && want_eval && m->info.has_loss) {
            o.training = false;
            if (!(m->eval = lathe_graph_new())) st = LATHE_ERR_NOMEM;
            else if ((st = lathe_desc_parse_file(m->eval, path, &o, NULL)) != LATHE_OK) bad = m->eval;
        }
    } else {
        if (mo->ndefs || mo->batch) {
            fprintf(stderr, "lathe %s: %s is text IR, which has no constants or batch size to set (-D, --batch)\n", verb, path);
            model_free(m);
            return 1;
        }
        st = lathe_parse_file(m->train, path);
        const char *slash = strrchr(path, '/');
        snprintf(m->info.model, sizeof m->info.model, "%s", slash ? slash + 1 : path);
        for (int i = 0; st == LATHE_OK && i < lathe_graph_num_nodes(m->train); i++) {
            lathe_node *n = lathe_graph_node(m->train, i);
            if (strcmp(lathe_node_op(n), "input") != 0) continue;
            if (m->info.ninputs == 16 || strlen(lathe_node_name(n)) >= 64) {
                fprintf(stderr, "lathe %s: %s: input '%s': a trainer takes at most 16 inputs with names under 64 bytes\n",
                        verb, path, lathe_node_name(n));
                model_free(m);
                return 1;
            }
            snprintf(m->info.inputs[m->info.ninputs++].name, 64, "%s", lathe_node_name(n));
            if (lathe_node_rank(n) > 0 && !m->info.batch) m->info.batch = lathe_node_shape(n)[0];
            char ts[160];
            lathe_node_type_str(n, ts, sizeof ts);
            if (!strncmp(ts, "i64", 3)) snprintf(m->info.label, sizeof m->info.label, "%s", lathe_node_name(n));
        }
        lathe_node *loss = lathe_graph_find_output(m->train, "loss");
        m->info.has_loss = loss != NULL;
        /* a dump of the grad stage or later holds its gradients already
         * (outputs grad.NAME): trained as it is, not differentiated again */
        bool has_grads = false;
        for (int i = 0; i < lathe_graph_num_outputs(m->train); i++)
            has_grads = has_grads || !strncmp(lathe_graph_output_name(m->train, i), "grad.", 5);
        if (st == LATHE_OK && loss && !has_grads && lathe_graph_num_marks(m->train) == 0)
            st = lathe_mark_backward(m->train, loss, NULL);
    }
    /* the compiler's pipeline differentiates the marked loss (its grad stage) */
    if (st != LATHE_OK) {
        fprintf(stderr, "lathe %s: %s\n", verb, *lathe_graph_error(bad) ? lathe_graph_error(bad) : lathe_status_name(st));
        model_free(m);
        return 1;
    }
    for (int i = 0; i < m->info.ninputs; i++) {
        m->inputs[i] = m->info.inputs[i].name;
        m->raw[i] = m->info.inputs[i].raw;
    }
    /* the class count, from the classification loss that reads the labels */
    int64_t classes = 0;
    for (int i = 0; i < lathe_graph_num_nodes(m->train); i++) {
        lathe_node *n = lathe_graph_node(m->train, i);
        if (strcmp(lathe_node_op(n), "cross_entropy") != 0 && strcmp(lathe_node_op(n), "nll_loss") != 0) continue;
        const char *lname = lathe_node_name(lathe_node_input(n, 1));
        lathe_node *logits = lathe_node_input(n, 0);
        if (lname && !strcmp(lname, m->info.label) && lathe_node_rank(logits) >= 2) classes = lathe_node_shape(logits)[1];
    }
    m->spec = (lathe_trainer_spec){.info = {.name = m->info.model, .source = path, .batch = m->info.batch,
                                            .ninputs = m->info.ninputs, .inputs = m->inputs, .raw = m->raw,
                                            .label = m->info.label[0] ? m->info.label : NULL,
                                            .classify = m->info.classify, .classes = classes},
                                   .train = m->train, .eval = m->eval};
    return 0;
}

static bool parse_batch(const char *verb, const char *s, int64_t *out) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || v < 1) {
        fprintf(stderr, "lathe %s: --batch %s: expected a positive integer\n", verb, s);
        return false;
    }
    *out = v;
    return true;
}

/* --shards S (or another count, flag): false with a message when S is not
 * an integer from 1 to 4096. */
static bool parse_count(const char *verb, const char *flag, const char *s, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > 4096) {
        fprintf(stderr, "lathe %s: %s %s: expected an integer from 1 to 4096\n", verb, flag, s);
        return false;
    }
    *out = (int)v;
    return true;
}

/* --ranks P,...: process counts above 1. */
static bool parse_ranks(const char *s, int *ranks, int *n) {
    *n = 0;
    for (const char *p = s; *p;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 1 || v > 4096 || (*end && *end != ',') || *n >= LATHE_MAX_RANKS) {
            fprintf(stderr, "lathe compile: --ranks %s: expected up to %d process counts, comma-separated (2,4)\n", s,
                    LATHE_MAX_RANKS);
            return false;
        }
        if (v > 1) ranks[(*n)++] = (int)v; /* one process always has its program */
        p = *end ? end + 1 : end;
    }
    return true;
}

static int cmd_compile(int argc, char **argv) {
    enum { O_RANKS = 1000, O_SHARDS, O_LOCAL_BN };
    static const struct option opts[] = {{"output", required_argument, 0, 'o'}, {"batch", required_argument, 0, 'b'},
                                         {"target-cpu", required_argument, 0, 'c'},
                                         {"target-features", required_argument, 0, 'F'}, {"help", no_argument, 0, 'h'},
                                         {"ranks", required_argument, 0, O_RANKS}, {"shards", required_argument, 0, O_SHARDS},
                                         {"local-bn", no_argument, 0, O_LOCAL_BN}, {0, 0, 0, 0}};
    int ranks[LATHE_MAX_RANKS], nranks = 0, shards = 0;
    bool local_bn = false;
    model_opts mo = {0};
    if ((argc = take_defines(argc, argv, &mo, "compile")) < 0) return 2;
    const char *out = NULL;
    lathe_target target = {0};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:b:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'b': if (!parse_batch("compile", optarg, &mo.batch)) return 2; break;
        case 'c': target.cpu = optarg; break;
        case 'F': target.features = optarg; break;
        case O_RANKS: if (!parse_ranks(optarg, ranks, &nranks)) return 2; break;
        case O_SHARDS: if (!parse_count("compile", "--shards", optarg, &shards)) return 2; break;
        case O_LOCAL_BN: local_bn = true; break;
        case 'h': fputs(compile_usage, stdout); return 0;
        default: fputs(compile_usage, stderr); return 2;
        }
    }
    if (optind != argc - 1 || !out) {
        fprintf(stderr, "lathe compile: expected one MODEL and -o TRAINER\n%s", compile_usage);
        return 2;
    }
    model m;
    if (load_model("compile", argv[optind], &mo, true, &m)) return 1;
    if (!m.info.has_loss) {
        fprintf(stderr, "lathe compile: %s has no loss to train (a 'loss' statement, or an output 'loss' in text IR)\n",
                argv[optind]);
        model_free(&m);
        return 1;
    }
    m.spec.target = target;
    m.spec.ranks = ranks, m.spec.nranks = nranks, m.spec.shards = shards, m.spec.local_bn = local_bn;
    char err[4096];
    lathe_status st = lathe_build_trainer(&m.spec, out, err, sizeof err);
    if (st != LATHE_OK) fprintf(stderr, "lathe compile: %s\n", err);
    else fprintf(stderr, "lathe compile: wrote %s (%s, batch %lld)\n", out, m.info.model, (long long)m.info.batch);
    model_free(&m);
    return st == LATHE_OK ? 0 : 1;
}

/* The value of flag (or an abbreviation getopt_long accepts: --bat 32,
 * --ba=32 for --batch) at argv[i], or NULL. */
static const char *flag_value(int argc, char **argv, int i, const char *flag) {
    const char *a = argv[i], *eq = strchr(a, '=');
    size_t n = eq ? (size_t)(eq - a) : strlen(a);
    if (n < 3 || strncmp(a, "--", 2) != 0 || strncmp(a, flag, n) != 0) return NULL;
    return eq ? eq + 1 : i + 1 < argc ? argv[i + 1] : NULL;
}

/* lathe train, lathe step and lathe sample: MODEL is the first operand; the
 * rest goes to the driver with MODEL removed. */
static int cmd_run(int argc, char **argv, lathe_run_kind kind) {
    bool step = kind == LATHE_RUN_STEP;
    const char *verb = step ? "step" : kind == LATHE_RUN_SAMPLE ? "sample" : "train";
    model_opts mo = {0};
    if ((argc = take_defines(argc, argv, &mo, verb)) < 0) return 2;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            if (kind == LATHE_RUN_TRAIN) {
                fputs(train_usage_head, stdout);
                lathe_trainer_usage(stdout, "lathe train MODEL");
                return 0;
            }
            char *h[] = {step ? "lathe step" : "lathe sample", "--help", NULL};
            return step ? lathe_trainer_step_main(NULL, 2, h) : lathe_trainer_sample_main(NULL, 2, h);
        }
    int mi = 1;
    if (argc < 2 || argv[1][0] == '-') {
        fprintf(stderr, "lathe %s: expected MODEL first (try lathe %s --help)\n", verb, verb);
        return 2;
    }
    const char *path = argv[mi];
    for (int i = mi; i < argc; i++) argv[i] = argv[i + 1];
    argc--;
    char prog[64];
    snprintf(prog, sizeof prog, "lathe %s", verb);
    argv[0] = prog;
    /* the batch size: --batch N for train and sample; the first input of the
     * inputs file (--inputs, or its old name --batch) for step */
    for (int i = 1; i < argc; i++) {
        const char *v = flag_value(argc, argv, i, "--batch");
        if (step && !v) v = flag_value(argc, argv, i, "--inputs");
        if (v && !step && !parse_batch(verb, v, &mo.batch)) return 2;
        if (v && step) { /* peek at the inputs file */
            model probe;
            if (load_model(verb, path, &mo, false, &probe)) return 1;
            char err[1024];
            lathe_st_file *f = probe.info.ninputs ? lathe_st_read(v, err, sizeof err) : NULL;
            const lathe_st_tensor *t = f ? lathe_st_find(f, probe.info.inputs[0].name) : NULL;
            if (t && t->rank > 0 && probe.info.batch_dim[0]) mo.batch = t->shape[0];
            lathe_st_free(f);
            model_free(&probe);
        }
    }
    /* lathe compile's --shards S and --local-bn, taken out before the driver's flags */
    int shards = 0;
    bool local_bn = false;
    for (int i = 1; i < argc; i++) {
        int drop = 0;
        if (!strncmp(argv[i], "--shards=", 9)) {
            if (!parse_count(verb, "--shards", argv[i] + 9, &shards)) return 2;
            drop = 1;
        } else if (!strcmp(argv[i], "--shards")) {
            if (i + 1 >= argc || !parse_count(verb, "--shards", argv[i + 1], &shards)) {
                if (i + 1 >= argc) fprintf(stderr, "lathe %s: --shards needs a value\n", verb);
                return 2;
            }
            drop = 2;
        } else if (!strcmp(argv[i], "--local-bn")) local_bn = true, drop = 1;
        if (!drop) continue;
        for (int j = i; j + drop <= argc; j++) argv[j] = argv[j + drop];
        argc -= drop, i--;
    }
    model m;
    if (load_model(verb, path, &mo, !step, &m)) return 1;
    m.spec.shards = shards, m.spec.local_bn = local_bn;
    int rc = lathe_trainer_jit_main(&m.spec, kind, argc, argv);
    model_free(&m);
    return rc;
}

static int cmd_dump(int argc, char **argv) {
    static const struct option opts[] = {{"format", required_argument, 0, 'f'},
                                         {"stage", required_argument, 0, 's'},
                                         {"batch", required_argument, 0, 'b'},
                                         {"eval", no_argument, 0, 'e'},
                                         {"loss", required_argument, 0, 'l'},
                                         {"output", required_argument, 0, 'o'},
                                         {"target-cpu", required_argument, 0, 'c'},
                                         {"target-features", required_argument, 0, 'F'},
                                         {"help", no_argument, 0, 'h'},
                                         {"shards", required_argument, 0, 1000},
                                         {"procs", required_argument, 0, 1001},
                                         {"local-bn", no_argument, 0, 1002},
                                         {0, 0, 0, 0}};
    const char *format = "text", *out_path = NULL, *stage_name = "traced", *loss = NULL;
    int shards = 1, procs = 1;
    bool local_bn = false;
    model_opts mo = {0};
    lathe_target target = {0};
    bool eval = false;
    if ((argc = take_defines(argc, argv, &mo, "dump")) < 0) return 2;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "f:o:s:l:b:eh", opts, NULL)) != -1) {
        switch (c) {
        case 'b': if (!parse_batch("dump", optarg, &mo.batch)) return 2; break;
        case 'e': eval = true; break;
        case 'f': format = optarg; break;
        case 's': stage_name = optarg; break;
        case 'l': loss = optarg; break;
        case 'o': out_path = optarg; break;
        case 'c': target.cpu = optarg; break;
        case 'F': target.features = optarg; break;
        case 1000: if (!parse_count("dump", "--shards", optarg, &shards)) return 2; break;
        case 1001: if (!parse_count("dump", "--procs", optarg, &procs)) return 2; break;
        case 1002: local_bn = true; break;
        case 'h': fputs(dump_usage, stdout); return 0;
        default: fputs(dump_usage, stderr); return 2;
        }
    }
    if (strcmp(format, "text") != 0 && strcmp(format, "dot") != 0) {
        fprintf(stderr, "lathe dump: unknown format '%s' (expected text or dot)\n", format);
        return 2;
    }
    int stage = lathe_stage_from_name(stage_name);
    if (stage < 0 || stage == LATHE_STAGE_JIT) {
        fprintf(stderr, "lathe dump: unknown stage '%s' (expected traced, grad, opt, decomposed, fused, plan, llvm or asm)\n",
                stage_name);
        return 2;
    }
    if (stage > LATHE_STAGE_DECOMPOSED && strcmp(format, "text") != 0) {
        fprintf(stderr, "lathe dump: --format dot is for graph stages (traced, grad, opt, decomposed)\n");
        return 2;
    }
    if (optind != argc - 1) {
        fprintf(stderr, "lathe dump: expected one FILE, got %d\n%s", argc - optind, dump_usage);
        return 2;
    }
    const char *path = argv[optind];
    lathe_graph *g = lathe_graph_new();
    if (!g) {
        fprintf(stderr, "lathe dump: out of memory\n");
        return 1;
    }
    lathe_status st;
    if (strcmp(path, "-") == 0) { /* a description or text IR, told apart by their text */
        size_t len;
        char *src = lt_read_all(stdin, &len);
        bool desc = src && lathe_desc_is_description_text(src, len);
        if (src && !desc && (mo.ndefs || mo.batch || eval)) {
            fprintf(stderr, "lathe dump: -D, --batch and --eval are for model descriptions; standard input holds text IR\n");
            free(src);
            lathe_graph_free(g);
            return 2;
        }
        lathe_desc_options o = {.training = !eval, .batch = mo.batch, .ndefines = mo.ndefs, .defines = mo.defs};
        st = !src ? LATHE_ERR_NOMEM : desc ? lathe_desc_parse(g, src, len, "<stdin>", &o, NULL) : lathe_parse(g, src, len, "<stdin>");
        free(src);
    } else if (lathe_desc_is_description(path)) {
        lathe_desc_options o = {.training = !eval, .batch = mo.batch, .ndefines = mo.ndefs, .defines = mo.defs};
        st = lathe_desc_parse_file(g, path, &o, NULL);
    } else if (mo.ndefs || mo.batch || eval) {
        fprintf(stderr, "lathe dump: -D, --batch and --eval are for model descriptions (.lathe); %s is text IR\n", path);
        lathe_graph_free(g);
        return 2;
    } else {
        st = lathe_parse_file(g, path);
    }
    if (st == LATHE_OK) st = lathe_graph_verify(g);
    if (st == LATHE_OK && stage != LATHE_STAGE_TRACED && loss) {
        lathe_node *l = NULL;
        for (int i = 0; i < lathe_graph_num_outputs(g); i++)
            if (strcmp(lathe_graph_output_name(g, i), loss) == 0) l = lathe_graph_output(g, i);
        if (!l) {
            fprintf(stderr, "lathe dump: --loss %s: %s has no output named '%s'\n", loss, path, loss);
            lathe_graph_free(g);
            return 1;
        }
        st = lathe_mark_backward(g, l, NULL);
    }
    /* The gradient of a file that marks nothing to differentiate is an error;
     * the stages from decomposed on compile its forward pass alone, as the
     * compiler does. */
    if (st == LATHE_OK && (stage == LATHE_STAGE_GRAD || stage == LATHE_STAGE_OPT) && lathe_graph_num_marks(g) == 0)
        st = lathe_backward_marked(g);
    FILE *out = stdout;
    if (st == LATHE_OK && out_path && !(out = fopen(out_path, "w"))) {
        perror(out_path);
        lathe_graph_free(g);
        return 1;
    }
    if (procs > 1 && shards == 1) shards = procs; /* --procs P alone: P shards */
    if (st == LATHE_OK)
        st = lathe_dump_parallel(g, (lathe_stage)stage, &target, shards, procs, local_bn,
                                 strcmp(format, "dot") == 0 ? LATHE_DUMP_DOT : LATHE_DUMP_TEXT, out);
    if (out != stdout && fclose(out) != 0 && st == LATHE_OK) st = LATHE_ERR_IO;
    if (st != LATHE_OK && *lathe_graph_error(g)) fprintf(stderr, "lathe dump: %s\n", lathe_graph_error(g));
    else if (st != LATHE_OK) fprintf(stderr, "lathe dump: writing failed: %s\n", lathe_status_name(st));
    lathe_graph_free(g);
    return st == LATHE_OK ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(main_usage, stderr);
        return 2;
    }
    const char *verb = argv[1];
    if (!strcmp(verb, "-h") || !strcmp(verb, "--help") || !strcmp(verb, "help")) {
        fputs(main_usage, stdout);
        return 0;
    }
    if (!strcmp(verb, "-V") || !strcmp(verb, "--version")) {
        puts("lathe 0.1.0");
        return 0;
    }
    if (!strcmp(verb, "dump")) return cmd_dump(argc - 1, argv + 1);
    if (!strcmp(verb, "compile")) return cmd_compile(argc - 1, argv + 1);
    if (!strcmp(verb, "train")) return cmd_run(argc - 1, argv + 1, LATHE_RUN_TRAIN);
    if (!strcmp(verb, "step")) return cmd_run(argc - 1, argv + 1, LATHE_RUN_STEP);
    if (!strcmp(verb, "sample")) return cmd_run(argc - 1, argv + 1, LATHE_RUN_SAMPLE);
    if (!strcmp(verb, "plot")) return lt_plot_main(argc - 1, argv + 1);
    fprintf(stderr, "lathe: unknown verb '%s'\n%s", verb, main_usage);
    return 2;
}
