/* main.c - the lathe command-line tool.
 *
 * One function per verb; each parses its own flags with getopt_long and
 * prints errors as "lathe VERB: message".  Exit status: 0 success, 1 the
 * input was bad (the message says where), 2 the command line was bad. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lathe_compiler.h"

static const char *main_usage =
    "usage: lathe VERB [options] [args]\n"
    "\n"
    "Lathe is a static computation-graph compiler for training neural networks.\n"
    "\n"
    "verbs:\n"
    "  dump FILE    read a text IR file, check it, and print it back (text or DOT)\n"
    "\n"
    "options:\n"
    "  -h, --help     show this help (or 'lathe VERB --help' for a verb)\n"
    "  -V, --version  print the version\n";

static const char *dump_usage =
    "usage: lathe dump FILE [--stage STAGE] [--loss NAME] [--format text|dot] [-o OUT]\n"
    "\n"
    "Reads FILE (Lathe's text IR; '-' reads standard input), checks every op's\n"
    "operands, shapes and attributes, verifies the graph, runs the compiler up to\n"
    "the chosen stage, and prints the graph.\n"
    "\n"
    "options:\n"
    "  -s, --stage STAGE      traced: the graph as read (default)\n"
    "                         grad: forward and backward; the values to differentiate\n"
    "                         are the file's 'backward %value [%cotangent]' statements\n"
    "                         or --loss; each gradient is an output named\n"
    "                         'grad.' + the input or parameter name\n"
    "                         opt: grad, then simplified (dead code, common\n"
    "                         subexpressions, constants, algebraic identities)\n"
    "                         fused: the kernels of opt (composites decomposed):\n"
    "                         each kernel's graph nodes, forward (F) or backward\n"
    "                         (B), the buffers it reads and its iteration space\n"
    "                         plan: every buffer's arena offset, size and lifetime\n"
    "                         in kernel steps, and the total (peak memory)\n"
    "                         llvm: the kernels as LLVM IR after O3\n"
    "                         asm: the kernels as machine code for this CPU\n"
    "  -l, --loss NAME        differentiate the output NAME (one element) as the loss,\n"
    "                         in addition to the file's 'backward' statements\n"
    "  -f, --format text|dot  text: the IR in canonical form, which parses back into\n"
    "                         an identical graph (default); dot: a Graphviz digraph in\n"
    "                         the direction of the forward pass, leaves that require\n"
    "                         grad drawn blue (render with: dot -Tpng -o g.png)\n"
    "  -o, --output OUT       write to OUT instead of standard output\n"
    "  -h, --help             show this help\n"
    "\n"
    "Errors name FILE:LINE:COLUMN and what was expected; the exit status is 1.\n";

static char *read_all(FILE *f, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        char *p = realloc(buf, cap * 2);
        if (!p) {
            free(buf);
            return NULL;
        }
        buf = p;
        cap *= 2;
    }
    *len = n;
    return buf;
}

static int cmd_dump(int argc, char **argv) {
    static const struct option opts[] = {{"format", required_argument, 0, 'f'},
                                         {"stage", required_argument, 0, 's'},
                                         {"loss", required_argument, 0, 'l'},
                                         {"output", required_argument, 0, 'o'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *format = "text", *out_path = NULL, *stage = "traced", *loss = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "f:o:s:l:h", opts, NULL)) != -1) {
        switch (c) {
        case 'f': format = optarg; break;
        case 's': stage = optarg; break;
        case 'l': loss = optarg; break;
        case 'o': out_path = optarg; break;
        case 'h': fputs(dump_usage, stdout); return 0;
        default: fputs(dump_usage, stderr); return 2;
        }
    }
    if (strcmp(format, "text") != 0 && strcmp(format, "dot") != 0) {
        fprintf(stderr, "lathe dump: unknown format '%s' (expected text or dot)\n", format);
        return 2;
    }
    static const char *stages[] = {"traced", "grad", "opt", "fused", "plan", "llvm", "asm"};
    int stage_no = -1;
    for (int i = 0; i < 7; i++)
        if (strcmp(stage, stages[i]) == 0) stage_no = i;
    if (stage_no < 0) {
        fprintf(stderr, "lathe dump: unknown stage '%s' (expected traced, grad, opt, fused, plan, llvm or asm)\n", stage);
        return 2;
    }
    if (stage_no >= 3 && strcmp(format, "text") != 0) {
        fprintf(stderr, "lathe dump: --format dot is for graph stages (traced, grad, opt)\n");
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
    if (strcmp(path, "-") == 0) {
        size_t len;
        char *src = read_all(stdin, &len);
        st = src ? lathe_parse(g, src, len, "<stdin>") : LATHE_ERR_NOMEM;
        free(src);
    } else {
        st = lathe_parse_file(g, path);
    }
    if (st == LATHE_OK) st = lathe_graph_verify(g);
    if (st == LATHE_OK && strcmp(stage, "traced") != 0) {
        if (loss) {
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
        /* a file without 'backward' compiles its forward pass alone */
        if (st == LATHE_OK && (stage_no <= 2 || lathe_graph_num_marks(g) > 0)) st = lathe_backward_marked(g);
        if (st == LATHE_OK && stage_no >= 2) {
            lathe_graph *s = lathe_simplify(g);
            lathe_graph_free(g);
            g = s;
            st = g ? lathe_graph_status(g) : LATHE_ERR_NOMEM;
            if (!g) {
                fprintf(stderr, "lathe dump: out of memory\n");
                return 1;
            }
        }
    }
    if (st != LATHE_OK) {
        fprintf(stderr, "lathe dump: %s\n", *lathe_graph_error(g) ? lathe_graph_error(g) : lathe_status_name(st));
        lathe_graph_free(g);
        return 1;
    }
    FILE *out = stdout;
    if (out_path && !(out = fopen(out_path, "w"))) {
        perror(out_path);
        lathe_graph_free(g);
        return 1;
    }
    if (stage_no >= 3) {
        st = lathe_dump_stage(g, stage, out);
        if (st != LATHE_OK) fprintf(stderr, "lathe dump: %s\n", lathe_graph_error(g));
    } else
        st = strcmp(format, "dot") == 0 ? lathe_graph_print_dot(g, out) : lathe_graph_print(g, out);
    if (out != stdout && fclose(out) != 0) st = LATHE_ERR_IO;
    if (st != LATHE_OK) fprintf(stderr, "lathe dump: writing failed: %s\n", lathe_status_name(st));
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
    fprintf(stderr, "lathe: unknown verb '%s'\n%s", verb, main_usage);
    return 2;
}
