/* test_trainer.c - native trainers and `lathe train`/`lathe step`, end to end,
 * through the command line (LATHE_BIN) on a small Fashion-MNIST subset the
 * test writes itself (IDX, raw and gzip):
 *   - compile, train, evaluate: accuracy well above chance; ldd shows no LLVM;
 *   - the native trainer and `lathe train` (another thread count) write
 *     identical checkpoints; safetensors data equals the same IDX data;
 *   - a run stopped mid-epoch and resumed equals one never stopped, bit for bit,
 *     whether stopped by --steps or by Ctrl-C (SIGINT) mid-run;
 *   - U8/I32 data trains to the bits of f32/i64 data; with normalization,
 *     random crops and flips, resumed and 1- and 2-thread runs agree;
 *   - `lathe step` on the ResNet-18 description matches PyTorch's fixture;
 *   - --accumulate with --no-decay-norm-bias matches PyTorch's recipe;
 *   - bad data, batch sizes and a NaN loss give their errors. */
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <cJSON.h>

#include "safetensors.h"
#include "testutil.h"

static char tmp[256];
static const char *lathe_bin, *src_dir;
static const char *FMNIST = "/usr/share/datasets/fashion-mnist";

/* Run a shell command with stdout and stderr into TMP/out; its exit status. */
static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(cmd + n, sizeof cmd - (size_t)n, " >%s/out 2>&1", tmp);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* TMP/out's text (static buffer). */
static const char *out_text(void) {
    static char buf[65536];
    char path[300];
    snprintf(path, sizeof path, "%s/out", tmp);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    buf[n] = 0;
    if (f) fclose(f);
    return buf;
}

static void expect_out(const char *want) {
    const char *t = out_text();
    if (!strstr(t, want)) fail_msg("expected '%s' in the output:\n%s", want, t);
}

static bool same_file(const char *a, const char *b) {
    char cmd[800];
    snprintf(cmd, sizeof cmd, "cmp -s %s/%s %s/%s", tmp, a, tmp, b);
    return system(cmd) == 0;
}

/* n records of rec bytes after a header of hdr bytes from a gzip IDX file. */
static unsigned char *read_gz(const char *name, int hdr, int rec, int skip, int n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", FMNIST, name);
    gzFile z = gzopen(path, "rb");
    if (!z) fail_msg("cannot open %s (Debian's dataset-fashion-mnist)", path);
    unsigned char *buf = malloc((size_t)(hdr + rec * (skip + n)));
    int want = hdr + rec * (skip + n);
    assert_int_equal(gzread(z, buf, (unsigned)want), want);
    gzclose(z);
    memmove(buf, buf + hdr + rec * skip, (size_t)(rec * n));
    return buf;
}

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16), p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

/* An IDX file: images (u8, n x h x w) raw, or labels (u8, n) gzip. */
static void write_idx(const char *name, const unsigned char *data, int n, int h, int w, bool gz) {
    unsigned char hdr[16] = {0, 0, 8, (unsigned char)(h ? 3 : 1)};
    put_be32(hdr + 4, (uint32_t)n);
    put_be32(hdr + 8, (uint32_t)h);
    put_be32(hdr + 12, (uint32_t)w);
    int hl = h ? 16 : 8;
    size_t bytes = (size_t)n * (size_t)(h ? h * w : 1);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    if (gz) {
        gzFile z = gzopen(path, "wb");
        gzwrite(z, hdr, (unsigned)hl);
        gzwrite(z, data, (unsigned)bytes);
        gzclose(z);
    } else {
        FILE *f = fopen(path, "wb");
        fwrite(hdr, 1, (size_t)hl, f);
        fwrite(data, 1, bytes, f);
        fclose(f);
    }
}

enum { NTRAIN = 1024, NTEST = 512, BATCH = 32 };

/* The subset: train-images.idx, train-labels.idx.gz, test-*, and the same
 * training data as train.safetensors (pixels / 255 as f32). */
static int setup(void **state) {
    (void)state;
    lathe_bin = getenv("LATHE_BIN");
    src_dir = getenv("LATHE_SRC");
    if (!lathe_bin || !src_dir) fail_msg("LATHE_BIN and LATHE_SRC must be set (meson test sets them)");
    snprintf(tmp, sizeof tmp, "/tmp/lathe-test-trainer-XXXXXX");
    if (!mkdtemp(tmp)) fail_msg("mkdtemp");
    unsigned char *ti = read_gz("train-images-idx3-ubyte.gz", 16, 784, 0, NTRAIN);
    unsigned char *tl = read_gz("train-labels-idx1-ubyte.gz", 8, 1, 0, NTRAIN);
    unsigned char *ei = read_gz("t10k-images-idx3-ubyte.gz", 16, 784, 0, NTEST);
    unsigned char *el = read_gz("t10k-labels-idx1-ubyte.gz", 8, 1, 0, NTEST);
    write_idx("train-images.idx", ti, NTRAIN, 28, 28, false);
    write_idx("train-labels.idx.gz", tl, NTRAIN, 0, 0, true);
    write_idx("test-images.idx", ei, NTEST, 28, 28, false);
    write_idx("test-labels.idx", el, NTEST, 0, 0, false);
    write_idx("small-images.idx", ti, NTRAIN, 27, 27, false);            /* wrong sample shape */
    float *x = malloc(sizeof *x * NTRAIN * 784);
    int64_t *y = malloc(sizeof *y * NTRAIN);
    for (int i = 0; i < NTRAIN * 784; i++) x[i] = (float)ti[i] / 255.0f;
    for (int i = 0; i < NTRAIN; i++) y[i] = tl[i];
    lathe_st_tensor ts[2] = {{"image", LATHE_RT_F32, 4, {NTRAIN, 1, 28, 28}, x}, {"label", LATHE_RT_I64, 1, {NTRAIN}, y}};
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/train.safetensors", tmp);
    assert_int_equal(lathe_st_write(path, ts, 2, NULL, NULL, 0, err, sizeof err), 0);
    y[5] = 10; /* a label outside the 10 classes */
    snprintf(path, sizeof path, "%s/badlabel.safetensors", tmp);
    assert_int_equal(lathe_st_write(path, ts, 2, NULL, NULL, 0, err, sizeof err), 0);
    y[5] = tl[5];
    ts[0].shape[0] = ts[1].shape[0] = BATCH; /* one batch, for step */
    snprintf(path, sizeof path, "%s/batch.safetensors", tmp);
    assert_int_equal(lathe_st_write(path, ts, 2, NULL, NULL, 0, err, sizeof err), 0);
    y[3] = -1; /* and a batch with a negative label */
    snprintf(path, sizeof path, "%s/badbatch.safetensors", tmp);
    assert_int_equal(lathe_st_write(path, ts, 2, NULL, NULL, 0, err, sizeof err), 0);
    y[3] = tl[3];
    /* the same training data as stored pixels and token ids: U8 images, I32 labels */
    int32_t *y32 = malloc(sizeof *y32 * NTRAIN);
    for (int i = 0; i < NTRAIN; i++) y32[i] = tl[i];
    lathe_st_tensor ts8[2] = {{"image", LATHE_RT_U8, 4, {NTRAIN, 1, 28, 28}, ti}, {"label", LATHE_RT_I32, 1, {NTRAIN}, y32}};
    snprintf(path, sizeof path, "%s/train_u8.safetensors", tmp);
    assert_int_equal(lathe_st_write(path, ts8, 2, NULL, NULL, 0, err, sizeof err), 0);
    y32[7] = 12;
    snprintf(path, sizeof path, "%s/badlabel_i32.safetensors", tmp);
    assert_int_equal(lathe_st_write(path, ts8, 2, NULL, NULL, 0, err, sizeof err), 0);
    free(y32);
    /* bad files: a wrong magic number, truncated data */
    snprintf(path, sizeof path, "%s/bad-magic.idx", tmp);
    FILE *f = fopen(path, "wb");
    fwrite("\x12\x34\x08\x03", 1, 4, f);
    fclose(f);
    write_idx("trunc-images.idx", ti, NTRAIN, 28, 28, false);
    snprintf(path, sizeof path, "%s/trunc-images.idx", tmp);
    assert_int_equal(truncate(path, 16 + 784 * 100 + 5), 0);
    free(ti), free(tl), free(ei), free(el), free(x), free(y);
    /* the native trainer, compiled once */
    if (run("%s compile %s/examples/fashion_cnn.lathe --batch %d -o %s/fashion", lathe_bin, src_dir, BATCH, tmp) != 0)
        fail_msg("lathe compile failed:\n%s", out_text());
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    return system(cmd) == 0 ? 0 : -1;
}

#define TRAIN_FLAGS "--data %s/train-images.idx,%s/train-labels.idx.gz --lr 0.05 --momentum 0.9 --shuffle --seed 3"

/* compile, train two epochs, evaluate: above chance, no LLVM in the trainer */
static void test_end_to_end(void **state) {
    (void)state;
    int rc = run("%s/fashion " TRAIN_FLAGS " --epochs 2 --eval-data %s/test-images.idx,%s/test-labels.idx --threads 1 "
                 "--save %s/ck_aot",
                 tmp, tmp, tmp, tmp, tmp, tmp);
    if (rc != 0) fail_msg("trainer failed (%d):\n%s", rc, out_text());
    const char *t = out_text(), *a = NULL;
    for (const char *p = strstr(t, "test accuracy "); p; p = strstr(p + 1, "test accuracy ")) a = p; /* the summary's */
    assert_non_null(a);
    double acc = atof(a + strlen("test accuracy "));
    if (acc < 50) fail_msg("test accuracy %.2f%% after 64 steps; chance is 10%%\n%s", acc, t);
    expect_out("epoch 2: train loss");
    expect_out("64 steps (2048 samples, 2 full epochs)");
    assert_int_equal(run("ldd %s/fashion", tmp), 0);
    if (strstr(out_text(), "LLVM")) fail_msg("the trainer links LLVM:\n%s", out_text());
}

/* Evaluation of a per-token loss (cross-entropy over [N*T] tokens): the mean
 * over every token of the test set, the padded rows of the last batch left
 * out.  The weights stay zero (--lr 0), so every token's loss is ln 4 and a
 * token is right exactly when its target is 0 (argmax of equal logits). */
static void test_eval_tokens(void **state) {
    (void)state;
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/tok.lathe", tmp);
    FILE *f = fopen(path, "w");
    fputs("model tok\nbatch N = 2\ninput x: f32[N, 3]\ninput y: i64[N, 3]\nparam w: f32[4] init=zeros\n"
          "logits = reshape(x, [N * 3, 1]) * 0 + w\nloss cross_entropy(logits, reshape(y, [N * 3]))\n", f);
    fclose(f);
    float x[5 * 3] = {0};
    int64_t y[5 * 3] = {1, 0, 2, 3, 3, 3, 0, 0, 1, 2, 2, 2, 0, 0, 0}; /* 3 of the first 12 are 0; the last row all 0 */
    lathe_st_tensor ts[2] = {{"x", LATHE_RT_F32, 2, {5, 3}, x}, {"y", LATHE_RT_I64, 2, {5, 3}, y}};
    snprintf(path, sizeof path, "%s/tok.safetensors", tmp);
    assert_int_equal(lathe_st_write(path, ts, 2, NULL, NULL, 0, err, sizeof err), 0);
    int rc = run("%s train %s/tok.lathe --data %s/tok.safetensors --eval-data %s/tok.safetensors --lr 0 --epochs 1",
                 lathe_bin, tmp, tmp, tmp);
    if (rc != 0) fail_msg("lathe train failed (%d):\n%s", rc, out_text());
    char want[128];
    snprintf(want, sizeof want, "test loss %.4f, test accuracy %.2f%%", log(4.0), 100.0 * 6 / 15);
    expect_out(want);
    /* with ignore_index=3 the three 3s count for nothing: 6 zeros of 12 tokens */
    snprintf(path, sizeof path, "%s/tok.lathe", tmp);
    f = fopen(path, "w");
    fputs("model tok\nbatch N = 2\ninput x: f32[N, 3]\ninput y: i64[N, 3]\nparam w: f32[4] init=zeros\n"
          "logits = reshape(x, [N * 3, 1]) * 0 + w\n"
          "loss cross_entropy(logits, reshape(y, [N * 3]), ignore_index=3)\n", f);
    fclose(f);
    rc = run("%s train %s/tok.lathe --data %s/tok.safetensors --eval-data %s/tok.safetensors --lr 0 --epochs 1",
             lathe_bin, tmp, tmp, tmp);
    if (rc != 0) fail_msg("lathe train failed (%d):\n%s", rc, out_text());
    snprintf(want, sizeof want, "test loss %.4f, test accuracy %.2f%%", log(4.0), 100.0 * 6 / 12);
    expect_out(want);
    /* the class axis 1 of (N, 4, 3) logits: the loss is shaped (N, 3), as the per-token case */
    f = fopen(path, "w");
    fputs("model tok\nbatch N = 2\ninput x: f32[N, 3]\ninput y: i64[N, 3]\nparam w: f32[4] init=zeros\n"
          "logits = reshape(x, [N, 1, 3]) * 0 + reshape(w, [1, 4, 1])\nloss cross_entropy(logits, y)\n", f);
    fclose(f);
    rc = run("%s train %s/tok.lathe --data %s/tok.safetensors --eval-data %s/tok.safetensors --lr 0 --epochs 1",
             lathe_bin, tmp, tmp, tmp);
    if (rc != 0) fail_msg("lathe train failed (%d):\n%s", rc, out_text());
    snprintf(want, sizeof want, "test loss %.4f, test accuracy %.2f%%", log(4.0), 100.0 * 6 / 15);
    expect_out(want);
}

/* text:FILE and sample: a bigram table learns that b follows a and a
 * follows b; greedy sampling continues "a" with "babab..."; a native
 * trainer samples the same text as `lathe sample`, on any thread count. */
static void test_text_and_sample(void **state) {
    (void)state;
    char path[512], codes[2048];
    int k = 0;
    for (int i = 0; i < 256; i++) k += snprintf(codes + k, sizeof codes - (size_t)k, "%s%d", i ? ", " : "", i);
    snprintf(path, sizeof path, "%s/bigram.lathe", tmp);
    FILE *f = fopen(path, "w");
    fprintf(f, "model bigram\nbatch N = 4\ninput x: i64[N, 8]\ninput y: i64[N, 8]\n"
               "param table: f32[256, 256] init=zeros\ncodes = tensor([%s], i64)\n"
               "logits = matmul(cast(reshape(x, [N * 8, 1]) == codes, f32), table)\noutput logits\n"
               "loss cross_entropy(logits, reshape(y, [N * 8]))\n", codes);
    fclose(f);
    snprintf(path, sizeof path, "%s/ab.txt", tmp);
    f = fopen(path, "w");
    for (int i = 0; i < 400; i++) fputs("ab", f);
    fclose(f);
    int rc = run("%s train %s/bigram.lathe --data text:%s/ab.txt --lr 1 --epochs 3 --eval --save %s/bigram.ck", lathe_bin,
                 tmp, tmp, tmp);
    if (rc != 0) fail_msg("lathe train failed (%d):\n%s", rc, out_text());
    expect_out("test accuracy 100.00%"); /* the held-out tail alternates too */
    assert_int_equal(run("%s sample %s/bigram.lathe --load %s/bigram.ck --prompt xa --length 9 --temperature 0",
                         lathe_bin, tmp, tmp), 0);
    expect_out("xababababab\n");
    assert_int_equal(run("%s sample %s/bigram.lathe --load %s/bigram.ck --length 30 --seed 7 --threads 1 > %s/s1",
                         lathe_bin, tmp, tmp, tmp), 0);
    if (run("%s compile %s/bigram.lathe -o %s/bigram", lathe_bin, tmp, tmp) != 0)
        fail_msg("lathe compile failed:\n%s", out_text());
    assert_int_equal(run("%s/bigram sample --load %s/bigram.ck --length 30 --seed 7 --threads 2 > %s/s2", tmp, tmp, tmp),
                     0);
    assert_true(same_file("s1", "s2"));
    /* bad uses: no checkpoint, a model without token inputs */
    assert_int_equal(run("%s/bigram sample --length 3", tmp), 2);
    expect_out("--load CK is required");
    assert_int_equal(run("%s/fashion sample --load %s/bigram.ck", tmp, tmp), 1);
    expect_out("sampling needs a first input of i64[N, T]");
    assert_int_equal(run("%s/fashion --data text:%s/ab.txt", tmp, tmp), 1);
    expect_out("text feeds a model with two inputs of i64[N, T]");
}

/* Dropout's draws depend on the seed and the step, not on the run: a run
 * stopped and resumed equals one never stopped (on other thread counts). */
static void test_dropout_resume(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/drop.lathe", tmp);
    FILE *f = fopen(path, "w");
    fputs("model drop\nbatch N = 8\ninput image: f32[N, 1, 28, 28]\ninput label: i64[N]\n"
          "h = dropout(relu(linear(flatten(image), 32) as fc1), 0.5)\n"
          "loss cross_entropy(linear(h, 10) as fc2, label)\n", f);
    fclose(f);
#define DROP "%s train %s/drop.lathe --data %s/train.safetensors --lr 0.1 --shuffle --seed 5 --epochs 2"
    int rc = run(DROP " --threads 2 --save %s/dk_full", lathe_bin, tmp, tmp, tmp);
    if (rc != 0) fail_msg("dropout run failed (%d):\n%s", rc, out_text());
    rc = run(DROP " --steps 50 --threads 1 --save %s/dk_half", lathe_bin, tmp, tmp, tmp);
    if (rc != 0) fail_msg("first half failed (%d):\n%s", rc, out_text());
    rc = run(DROP " --threads 2 --load %s/dk_half --save %s/dk_half", lathe_bin, tmp, tmp, tmp, tmp);
    if (rc != 0) fail_msg("second half failed (%d):\n%s", rc, out_text());
    assert_true(same_file("dk_full", "dk_half"));
#undef DROP
}

/* An embedding language model learns that b follows a and a follows b;
 * token ids outside its table are refused before anything runs, naming the
 * value: by the trainer for the whole dataset, by step for a batch. */
static void test_embedding_text(void **state) {
    (void)state;
    char path[512], err[512];
    for (int vocab = 256; vocab >= 98; vocab -= 158) {
        snprintf(path, sizeof path, "%s/emb%d.lathe", tmp, vocab);
        FILE *f = fopen(path, "w");
        fprintf(f, "model emb\nbatch N = 4\ninput x: i64[N, 8]\ninput y: i64[N, 8]\n"
                   "h = tanh(embedding(x, %d, 16) as wte)\nlogits = linear(h, 256) as head\noutput logits\n"
                   "loss cross_entropy(reshape(logits, [N * 8, 256]), reshape(y, [N * 8]))\n", vocab);
        fclose(f);
    }
    snprintf(path, sizeof path, "%s/abab.txt", tmp);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 400; i++) fputs("ab", f);
    fclose(f);
    int rc = run("%s train %s/emb256.lathe --data text:%s/abab.txt --lr 0.5 --epochs 3 --eval", lathe_bin, tmp, tmp);
    if (rc != 0) fail_msg("lathe train failed (%d):\n%s", rc, out_text());
    expect_out("test accuracy 100.00%");
    /* 'b' is 98: outside a table of 98 rows */
    assert_int_equal(run("%s train %s/emb98.lathe --data text:%s/abab.txt", lathe_bin, tmp, tmp), 1);
    expect_out("abab.txt: x 98 of sample 0 is outside [0, 98): emb indexes 98 classes or rows with it");
    int64_t x[4 * 8], y[4 * 8];
    for (int i = 0; i < 32; i++) x[i] = y[i] = i % 2 ? 97 : 98;
    lathe_st_tensor ts[2] = {{"x", LATHE_RT_I64, 2, {4, 8}, x}, {"y", LATHE_RT_I64, 2, {4, 8}, y}};
    snprintf(path, sizeof path, "%s/tokbatch.safetensors", tmp);
    assert_int_equal(lathe_st_write(path, ts, 2, NULL, NULL, 0, err, sizeof err), 0);
    assert_int_equal(run("%s step %s/emb98.lathe --batch %s/tokbatch.safetensors -o %s/tokstep", lathe_bin, tmp, tmp, tmp),
                     1);
    expect_out("input 'x': element 0 is 98, outside [0, 98)");
}

/* A dump of the grad or opt stage trains as it is (its gradients are not
 * taken again) and ends with the description's bits; --eval on text IR says
 * why it cannot. */
static void test_train_dumps(void **state) {
    (void)state;
    const char *stages[] = {"grad", "opt"};
    int rc = run("%s train %s/examples/mlp.lathe --batch %d " TRAIN_FLAGS " --steps 20 --save %s/ck_mlp", lathe_bin,
                 src_dir, BATCH, tmp, tmp, tmp);
    if (rc != 0) fail_msg("lathe train failed (%d):\n%s", rc, out_text());
    for (int i = 0; i < 2; i++) {
        rc = run("%s dump %s/examples/mlp.lathe --batch %d --stage %s -o %s/mlp_%s.ir", lathe_bin, src_dir, BATCH,
                 stages[i], tmp, stages[i]);
        if (rc != 0) fail_msg("dump failed (%d):\n%s", rc, out_text());
        rc = run("%s train %s/mlp_%s.ir " TRAIN_FLAGS " --steps 20 --save %s/ck_mlp_%s", lathe_bin, tmp, stages[i], tmp,
                 tmp, tmp, stages[i]);
        if (rc != 0) fail_msg("training the %s dump failed (%d):\n%s", stages[i], rc, out_text());
        char name[64];
        snprintf(name, sizeof name, "ck_mlp_%s", stages[i]);
        assert_true(same_file("ck_mlp", name));
    }
    assert_int_equal(run("%s train %s/mlp_opt.ir " TRAIN_FLAGS " --steps 2 --eval-data %s/test-images.idx,%s/test-labels.idx",
                         lathe_bin, tmp, tmp, tmp, tmp, tmp), 1);
    expect_out("text IR, a dump included, is one graph");
}

/* A learning-rate schedule with a warm-up: a run stopped and resumed ends
 * with the bits of one never stopped (the schedule follows the optimizer's
 * step count), and differs from the same run at a constant rate; malformed
 * specs are refused. */
static void test_lr_schedule_resume(void **state) {
    (void)state;
#define SCHED TRAIN_FLAGS " --lr-schedule step:5:0.5 --warmup 3"
    int rc = run("%s/fashion " SCHED " --steps 20 --save %s/sk_full", tmp, tmp, tmp, tmp);
    if (rc != 0) fail_msg("scheduled run failed (%d):\n%s", rc, out_text());
    rc = run("%s/fashion " SCHED " --steps 9 --save %s/sk_half", tmp, tmp, tmp, tmp);
    if (rc != 0) fail_msg("first half failed (%d):\n%s", rc, out_text());
    rc = run("%s/fashion " SCHED " --steps 20 --load %s/sk_half --save %s/sk_half", tmp, tmp, tmp, tmp, tmp);
    if (rc != 0) fail_msg("second half failed (%d):\n%s", rc, out_text());
    assert_true(same_file("sk_full", "sk_half"));
    rc = run("%s/fashion " TRAIN_FLAGS " --steps 20 --save %s/sk_const", tmp, tmp, tmp, tmp);
    if (rc != 0) fail_msg("constant run failed (%d):\n%s", rc, out_text());
    assert_false(same_file("sk_full", "sk_const"));
#undef SCHED
    /* clipping changes the run (its arithmetic is tested against PyTorch in test_train) */
    rc = run("%s/fashion " TRAIN_FLAGS " --steps 20 --clip-grad-norm 0.01 --save %s/sk_clip", tmp, tmp, tmp, tmp);
    if (rc != 0) fail_msg("clipped run failed (%d):\n%s", rc, out_text());
    assert_false(same_file("sk_clip", "sk_const"));
    /* so does leaving biases and batch-norm weights out of the decay */
    rc = run("%s/fashion --data %s/train.safetensors --steps 5 --optimizer adamw --weight-decay 0.5 --save %s/sk_wd", tmp,
             tmp, tmp);
    if (rc != 0) fail_msg("decayed run failed (%d):\n%s", rc, out_text());
    rc = run("%s/fashion --data %s/train.safetensors --steps 5 --optimizer adamw --weight-decay 0.5 --no-decay-norm-bias "
             "--save %s/sk_wd1", tmp, tmp, tmp);
    if (rc != 0) fail_msg("grouped run failed (%d):\n%s", rc, out_text());
    expect_out("weight decay 0.5 (none on biases and norms)");
    assert_false(same_file("sk_wd", "sk_wd1"));
    assert_int_equal(run("%s/fashion --data %s/train.safetensors --clip-grad-value -1", tmp, tmp), 2);
    expect_out("bad value '-1' for --clip-grad-value");
    assert_int_equal(run("%s/fashion --data %s/train.safetensors --lr-schedule cosine:0", tmp, tmp), 2);
    expect_out("bad --lr-schedule 'cosine:0'");
    assert_int_equal(run("%s/fashion --data %s/train.safetensors --lr-schedule multistep:5,3:0.1", tmp, tmp), 2);
    assert_int_equal(run("%s/fashion --data %s/train.safetensors --warmup 0", tmp, tmp), 2);
    expect_out("bad --warmup '0'");
    assert_int_equal(run("%s/fashion --data %s/train.safetensors --lr-schedule onecycle:0.1 --warmup 3", tmp, tmp), 2);
    expect_out("the one-cycle schedule has its own warm-up");
}

/* --accumulate K: K micro-batches of the compiled batch give the step of the
 * batch of K times the size (the MLP has no batch norm, so the same up to
 * rounding), and a run stopped and resumed ends with the same bits. */
static void test_accumulate(void **state) {
    (void)state;
#define MLP "%s train %s/examples/mlp.lathe --data %s/train.safetensors --lr 0.1 --shuffle --seed 2 --steps 12"
    int rc = run(MLP " --batch 32 --save %s/acc_big", lathe_bin, src_dir, tmp, tmp);
    if (rc != 0) fail_msg("batch 32 failed (%d):\n%s", rc, out_text());
    rc = run(MLP " --batch 8 --accumulate 4 --save %s/acc_micro", lathe_bin, src_dir, tmp, tmp);
    if (rc != 0) fail_msg("batch 8 x 4 failed (%d):\n%s", rc, out_text());
    expect_out("batch 32 (4 x 8 accumulated)");
    char a[512], b[512], err[512];
    snprintf(a, sizeof a, "%s/acc_big", tmp);
    snprintf(b, sizeof b, "%s/acc_micro", tmp);
    lathe_st_file *fa = lathe_st_read(a, err, sizeof err), *fb = lathe_st_read(b, err, sizeof err);
    assert_non_null(fa);
    assert_non_null(fb);
    const char *names[] = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};
    for (int i = 0; i < 4; i++) {
        const lathe_st_tensor *x = lathe_st_find(fa, names[i]), *y = lathe_st_find(fb, names[i]);
        assert_non_null(x);
        assert_non_null(y);
        int64_t n = 1;
        for (int d = 0; d < x->rank; d++) n *= x->shape[d];
        double diff = 0, scale = 0;
        for (int64_t e = 0; e < n; e++) {
            diff = fmax(diff, fabs(((const float *)x->data)[e] - ((const float *)y->data)[e]));
            scale = fmax(scale, fabs(((const float *)x->data)[e]));
        }
        if (diff > 1e-5 * scale) fail_msg("%s: batch 8 x 4 differs from batch 32 by %g (scale %g)", names[i], diff, scale);
    }
    lathe_st_free(fa);
    lathe_st_free(fb);
    rc = run("%s train %s/examples/mlp.lathe --data %s/train.safetensors --lr 0.1 --shuffle --seed 2 --steps 5 --batch 8 "
             "--accumulate 4 --save %s/acc_half", lathe_bin, src_dir, tmp, tmp);
    if (rc != 0) fail_msg("first half failed (%d):\n%s", rc, out_text());
    rc = run(MLP " --batch 8 --accumulate 4 --load %s/acc_half --save %s/acc_half", lathe_bin, src_dir, tmp, tmp, tmp);
    if (rc != 0) fail_msg("second half failed (%d):\n%s", rc, out_text());
    assert_true(same_file("acc_micro", "acc_half"));
#undef MLP
    assert_int_equal(run("%s train %s/examples/mlp.lathe --data %s/train.safetensors --accumulate 0", lathe_bin, src_dir, tmp), 2);
    expect_out("bad value '0' for --accumulate (expected an integer >= 1)");
}

/* --log-file: a JSON line per step with the rate the schedule gave (hand
 * values: step:2:0.5 from 0.1) and one per evaluation, lines a JSON parser
 * reads; a log that cannot be opened stops the run. */
static void test_log_file(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/run.jsonl", tmp);
    unlink(path);
    int rc = run("%s/fashion --data %s/train.safetensors --lr 0.1 --lr-schedule step:2:0.5 --steps 5 --eval-data "
                 "%s/test-images.idx,%s/test-labels.idx --log-file %s",
                 tmp, tmp, tmp, tmp, path);
    if (rc != 0) fail_msg("logged run failed (%d):\n%s", rc, out_text());
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[1024];
    int steps = 0, evals = 0;
    const double lr[5] = {0.1, 0.1, 0.05, 0.05, 0.025};
    while (fgets(line, sizeof line, f)) {
        cJSON *j = cJSON_Parse(line);
        if (!j) fail_msg("not JSON: %s", line);
        const cJSON *s = cJSON_GetObjectItem(j, "step"), *l = cJSON_GetObjectItem(j, "lr");
        assert_true(cJSON_IsNumber(s));
        if (l) {
            assert_int_equal(s->valuedouble, steps + 1);
            if (fabs(l->valuedouble - lr[steps]) > 1e-12) fail_msg("step %d: lr %g, want %g", steps + 1, l->valuedouble, lr[steps]);
            assert_true(cJSON_IsNumber(cJSON_GetObjectItem(j, "loss")));
            steps++;
        } else {
            assert_true(cJSON_IsNumber(cJSON_GetObjectItem(j, "test_accuracy")));
            evals++;
        }
        cJSON_Delete(j);
    }
    fclose(f);
    assert_int_equal(steps, 5);
    assert_int_equal(evals, 1);
    assert_int_equal(run("%s/fashion --data %s/train.safetensors --steps 1 --log-file %s/no/such/dir/x", tmp, tmp, tmp), 1);
    expect_out("--log-file");
}

/* lathe train (JIT, 2 threads) gives the native trainer's bits; so does the
 * same data as safetensors */
static void test_jit_equals_native(void **state) {
    (void)state;
    int rc = run("%s train %s/examples/fashion_cnn.lathe --batch %d " TRAIN_FLAGS " --epochs 2 --threads 2 --save %s/ck_jit",
                 lathe_bin, src_dir, BATCH, tmp, tmp, tmp);
    if (rc != 0) fail_msg("lathe train failed (%d):\n%s", rc, out_text());
    assert_true(same_file("ck_aot", "ck_jit"));
    rc = run("%s/fashion --data %s/train.safetensors --lr 0.05 --momentum 0.9 --shuffle --seed 3 --epochs 2 --save %s/ck_st",
             tmp, tmp, tmp);
    if (rc != 0) fail_msg("trainer on safetensors failed (%d):\n%s", rc, out_text());
    assert_true(same_file("ck_aot", "ck_st"));
}

/* stopped at step 40 (mid second epoch) and resumed == never stopped */
static void test_resume(void **state) {
    (void)state;
    int rc = run("%s/fashion " TRAIN_FLAGS " --epochs 2 --steps 40 --save %s/ck_half", tmp, tmp, tmp, tmp);
    if (rc != 0) fail_msg("first half failed (%d):\n%s", rc, out_text());
    assert_false(same_file("ck_aot", "ck_half"));
    rc = run("%s/fashion " TRAIN_FLAGS " --epochs 2 --load %s/ck_half --save %s/ck_half", tmp, tmp, tmp, tmp, tmp);
    if (rc != 0) fail_msg("second half failed (%d):\n%s", rc, out_text());
    expect_out("resuming after step 40 (epoch 2, 8 of 32 batches done)");
    assert_true(same_file("ck_aot", "ck_half"));
    /* a second trainer saving to the same file is refused while the first
     * holds its lock (here: this process), and runs once it is released */
    char lockpath[512];
    snprintf(lockpath, sizeof lockpath, "%s/ck_locked.lock", tmp);
    int lk = open(lockpath, O_RDWR | O_CREAT, 0666);
    assert_true(lk >= 0);
    assert_int_equal(flock(lk, LOCK_EX | LOCK_NB), 0);
    rc = run("%s/fashion " TRAIN_FLAGS " --steps 1 --save %s/ck_locked", tmp, tmp, tmp, tmp);
    if (rc == 0) fail_msg("a second trainer saved to a locked checkpoint:\n%s", out_text());
    expect_out("ck_locked: another trainer is saving to it");
    close(lk);
    rc = run("%s/fashion " TRAIN_FLAGS " --steps 1 --save %s/ck_locked", tmp, tmp, tmp, tmp);
    if (rc != 0) fail_msg("the run after the lock was released failed (%d):\n%s", rc, out_text());
    /* saves that fail (here: a read-only checkpoint) are reported, training
     * goes on to the end, and the exit status says a save failed */
    char ro[512];
    snprintf(ro, sizeof ro, "%s/ck_ro", tmp);
    FILE *rof = fopen(ro, "w");
    assert_non_null(rof);
    fclose(rof);
    assert_int_equal(chmod(ro, 0444), 0);
    rc = run("%s/fashion " TRAIN_FLAGS " --steps 20 --save-every 8 --save %s", tmp, tmp, tmp, ro);
    if (rc == 0) fail_msg("a run whose saves all failed exited 0:\n%s", out_text());
    expect_out("step 8 not saved; training goes on and saves again at the next save point");
    expect_out("step 16 not saved");
    expect_out("fashion_cnn: 20 steps"); /* the run went to its end */
    expect_out("2 saves of");
    /* a checkpoint already past what is asked: nothing trains, and it says so */
    rc = run("%s/fashion " TRAIN_FLAGS " --steps 30 --load %s/ck_half", tmp, tmp, tmp, tmp);
    if (rc != 0) fail_msg("a run with nothing to train failed (%d):\n%s", rc, out_text());
    expect_out("the run is already at step 64, past the 30 steps asked for");
}

/* Data stored as U8 pixels and I32 labels trains to the bits of the same
 * data as f32 and i64; with --normalize, --random-crop and --hflip, a run
 * stopped mid-epoch and resumed on another thread count ends with the bits
 * of one never stopped, on 1 or 2 threads; bad image flags are refused. */
static void test_augment_resume(void **state) {
    (void)state;
    int rc = run("%s/fashion --data %s/train_u8.safetensors --lr 0.05 --momentum 0.9 --shuffle --seed 3 --epochs 2 "
                 "--threads 2 --save %s/ck_u8", tmp, tmp, tmp);
    if (rc != 0) fail_msg("trainer on U8 data failed (%d):\n%s", rc, out_text());
    assert_true(same_file("ck_aot", "ck_u8"));
#define AUG "%s/fashion " TRAIN_FLAGS " --epochs 2 --normalize 0.286,0.353 --random-crop 2 --hflip"
    rc = run(AUG " --threads 2 --save %s/ck_aug2", tmp, tmp, tmp, tmp);
    if (rc != 0) fail_msg("augmented run failed (%d):\n%s", rc, out_text());
    rc = run(AUG " --threads 1 --save %s/ck_aug1", tmp, tmp, tmp, tmp);
    if (rc != 0) fail_msg("augmented run on 1 thread failed (%d):\n%s", rc, out_text());
    assert_true(same_file("ck_aug1", "ck_aug2"));
    assert_false(same_file("ck_aot", "ck_aug1")); /* the augmentation changed something */
    rc = run(AUG " --steps 40 --threads 1 --save %s/ck_aug_half", tmp, tmp, tmp, tmp);
    if (rc != 0) fail_msg("first half failed (%d):\n%s", rc, out_text());
    rc = run(AUG " --threads 2 --load %s/ck_aug_half --save %s/ck_aug_half", tmp, tmp, tmp, tmp, tmp);
    if (rc != 0) fail_msg("second half failed (%d):\n%s", rc, out_text());
    expect_out("resuming after step 40");
    assert_true(same_file("ck_aug2", "ck_aug_half"));
    /* without the crop, another run: the crop was applied */
    rc = run("%s/fashion " TRAIN_FLAGS " --epochs 2 --normalize 0.286,0.353 --hflip --threads 2 --save %s/ck_flip", tmp,
             tmp, tmp, tmp);
    if (rc != 0) fail_msg("flip-only run failed (%d):\n%s", rc, out_text());
    assert_false(same_file("ck_flip", "ck_aug2"));
    /* resuming with other data flags goes on, and says so */
    rc = run("%s/fashion " TRAIN_FLAGS " --epochs 2 --steps 70 --load %s/ck_aug1", tmp, tmp, tmp, tmp);
    if (rc != 0) fail_msg("resumed run without the data flags failed (%d):\n%s", rc, out_text());
    expect_out("the run's data had normalize 0.286,0.353, random-crop 2, hflip yes; it goes on with normalize none, "
               "random-crop 0, hflip no");
#undef AUG
    /* bad flags: exit status 2 and what was wrong */
    static const struct {
        const char *flags, *expect;
    } bad[] = {
        {"--normalize x", "bad --normalize: normalization 'x': 'x' is not a finite number"},
        {"--normalize 0.5", "bad --normalize: normalization '0.5': 1 numbers"},
        {"--normalize 0.5,0", "standard deviation 0 of channel 0 is not > 0"},
        {"--normalize 0.485,0.456,0.406/0.229,0.224,0.225",
         "--normalize 0.485,0.456,0.406/0.229,0.224,0.225 has 3 channels, but fashion_cnn's input 'image' is "
         "f32[32, 1, 28, 28], with 1 on axis 1 (the channels of [N, C, H, W])"},
        {"--random-crop 0", "bad value '0' for --random-crop (expected the padding, an integer from 1 to 4096)"},
        {"--random-crop -3", "bad value '-3' for --random-crop"},
        {"--random-crop 5000", "bad value '5000' for --random-crop"},
        {"--hflip=1", "--hflip"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rc = run("%s/fashion --data %s/train.safetensors %s", tmp, tmp, bad[i].flags);
        if (rc != 2) fail_msg("'%s': exit status %d, expected 2:\n%s", bad[i].flags, rc, out_text());
        expect_out(bad[i].expect);
    }
    /* a model whose first input is token ids */
    rc = run("%s train %s/examples/char_gpt.lathe -D context=8 -D layers=1 -D width=16 -D heads=2 --batch 4 "
             "--data text:%s/README.md --hflip", lathe_bin, src_dir, src_dir);
    if (rc != 2) fail_msg("--hflip on a language model: exit status %d, expected 2:\n%s", rc, out_text());
    expect_out("--hflip: char_gpt's image input 'x' is i64[4, 8]; normalization and augmentation are for float "
               "images");
    /* a float input without an image's axes */
    rc = run("%s train %s/tok.lathe --data %s/tok.safetensors --random-crop 1", lathe_bin, tmp, tmp);
    if (rc != 2) fail_msg("--random-crop on f32[N, 3]: exit status %d, expected 2:\n%s", rc, out_text());
    expect_out("--random-crop: tok's input 'x' is f32[2, 3]; crops and flips need an image, [N, H, W] or [N, C, H, W]");
    /* I32 labels are checked against the classes as i64 ones are */
    assert_int_equal(run("%s/fashion --data %s/badlabel_i32.safetensors", tmp, tmp), 1);
    expect_out("badlabel_i32.safetensors: label 12 of sample 7 is outside [0, 10)");
}

/* TRAINER step and lathe step write the same file */
static void test_trainer_step(void **state) {
    (void)state;
    int rc = run("%s/fashion step --batch %s/batch.safetensors --lr 0.1 -o %s/step_aot", tmp, tmp, tmp);
    if (rc != 0) fail_msg("TRAINER step failed (%d):\n%s", rc, out_text());
    rc = run("%s step %s/examples/fashion_cnn.lathe --inputs %s/batch.safetensors --lr 0.1 -o %s/step_jit", lathe_bin,
             src_dir, tmp, tmp);
    if (rc != 0) fail_msg("lathe step failed (%d):\n%s", rc, out_text());
    assert_true(same_file("step_aot", "step_jit"));
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/step_aot", tmp);
    lathe_st_file *f = lathe_st_read(path, err, sizeof err);
    if (!f) fail_msg("%s", err);
    const char *names[] = {"loss", "logits", "grad.conv1.weight", "grad.fc2.bias", "conv1.weight", "bn2.running_var",
                           "bn2.num_batches_tracked"};
    for (int i = 0; i < 7; i++)
        if (!lathe_st_find(f, names[i])) fail_msg("no '%s' in lathe step's output", names[i]);
    lathe_st_free(f);
    /* step checks labels as training does, compiled or JIT */
    rc = run("%s/fashion step --batch %s/badbatch.safetensors --lr 0.1 -o %s/step_bad", tmp, tmp, tmp);
    if (rc == 0) fail_msg("TRAINER step took a label of -1:\n%s", out_text());
    expect_out("input 'label': element 3 is -1, outside [0, 10)");
    rc = run("%s step %s/examples/fashion_cnn.lathe --batch %s/badbatch.safetensors --lr 0.1 -o %s/step_bad", lathe_bin,
             src_dir, tmp, tmp);
    if (rc == 0) fail_msg("lathe step took a label of -1:\n%s", out_text());
    expect_out("input 'label': element 3 is -1, outside [0, 10)");
    /* an early failure says what failed, and nothing else */
    rc = run("%s/fashion step --batch %s/step_aot --lr 0.1 -o %s/step_bad", tmp, tmp, tmp);
    if (rc == 0) fail_msg("a batch without the model's inputs was accepted:\n%s", out_text());
    expect_out("no tensor 'image'");
    if (strstr(out_text(), "out of memory")) fail_msg("a false 'out of memory' after an early failure:\n%s", out_text());
}

/* Start the 2-epoch training run in the background, output into TMP/out
 * with a line per step, and send sig once the first line is out: a step is
 * done, so the trainer's handler is in place and most of the run is still
 * ahead.  Its wait status. */
static int train_and_interrupt(int sig) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "exec %s/fashion " TRAIN_FLAGS " --epochs 2 --log-every 1 --save %s/ck_int >%s/out 2>&1",
             tmp, tmp, tmp, tmp, tmp);
    char path[300];
    snprintf(path, sizeof path, "%s/out", tmp);
    FILE *f = fopen(path, "w"); /* no progress line left from an earlier run */
    if (f) fclose(f);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(sig, SIG_DFL); /* whatever the test runner does with it */
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    const struct timespec ms = {0, 1000000};
    for (int waited = 0; !strstr(out_text(), "epoch 1/2 step "); waited++) {
        if (waitpid(pid, &status, WNOHANG) == pid) return status; /* ended (or failed) first */
        if (waited == 600 * 1000) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("no progress line from the trainer in 10 minutes:\n%s", out_text());
        }
        nanosleep(&ms, NULL);
    }
    kill(pid, sig);
    waitpid(pid, &status, 0);
    return status;
}

/* Ctrl-C, SIGTERM or SIGHUP mid-run: the step finishes, the checkpoint is
 * written, exit 128 + the signal; resuming gives the bits of the run that
 * was never stopped.  When the run ends before the signal lands (the
 * machine was faster than the poll), the case is not tested: try again,
 * then skip, saying so. */
static void interrupt_and_resume(int sig, const char *name) {
    enum { STEPS = 64, TRIES = 3 };
    long long at = -1;
    char said[64];
    snprintf(said, sizeof said, "interrupted by %s at step ", name);
    for (int try = 1; at < 0; try++) {
        int st = train_and_interrupt(sig);
        const char *t = out_text(), *msg = strstr(t, said);
        long long step = msg ? atoll(msg + strlen(said)) : -1;
        int rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        /* too late: the run finished, or stopped after its last step, or the
         * signal came after the trainer had printed its summary and restored
         * the default action (killed by the signal before that: no handler) */
        bool killed = WIFSIGNALED(st) && WTERMSIG(st) == sig;
        if (killed && !strstr(t, "full epoch")) fail_msg("%s killed the trainer mid-run:\n%s", name, t);
        bool ended = rc == 0 || (rc == 128 + sig && step == STEPS) || killed;
        if (rc == 128 + sig && step > 0 && step < STEPS) at = step;
        else if (!ended) fail_msg("%s: interrupted run failed (status %#x):\n%s", name, st, t);
        else if (try == TRIES) {
            print_message("test_interrupt: SKIPPED: in %d tries the run ended before %s arrived, so the resume "
                          "from an interrupted run is untested\n", TRIES, name);
            skip();
        }
    }
    int rc = run("%s/fashion " TRAIN_FLAGS " --epochs 2 --load %s/ck_int --save %s/ck_int", tmp, tmp, tmp, tmp, tmp);
    if (rc != 0) fail_msg("%s: resumed run failed (%d):\n%s", name, rc, out_text());
    char want[96];
    snprintf(want, sizeof want, "resuming after step %lld", at);
    expect_out(want);
    assert_true(same_file("ck_aot", "ck_int"));
}

static void test_interrupt(void **state) {
    (void)state;
    interrupt_and_resume(SIGINT, "SIGINT (Ctrl-C)");
    interrupt_and_resume(SIGTERM, "SIGTERM");
    interrupt_and_resume(SIGHUP, "SIGHUP");
}

/* --target-cpu: a trainer for the baseline x86-64 runs here too */
static void test_target_cpu(void **state) {
    (void)state;
    int rc = run("%s compile %s/examples/mlp.lathe --batch 16 --target-cpu x86-64 -o %s/mlp_generic", lathe_bin, src_dir, tmp);
    if (rc != 0) fail_msg("compile failed (%d):\n%s", rc, out_text());
    rc = run("%s/mlp_generic --data %s/train.safetensors --steps 70 --lr 0.1 --log-every 0", tmp, tmp);
    if (rc != 0) fail_msg("the x86-64 trainer failed (%d):\n%s", rc, out_text());
    expect_out("70 steps (1120 samples, 1 full epoch)"); /* --steps alone goes past the first epoch */
}

static void test_bad_inputs(void **state) {
    (void)state;
    const char *model = "fashion";
    assert_int_equal(run("%s/%s --data %s/bad-magic.idx,%s/train-labels.idx.gz", tmp, model, tmp, tmp), 1);
    expect_out("bad-magic.idx");
    expect_out("magic");
    assert_int_equal(run("%s/%s --data %s/trunc-images.idx,%s/train-labels.idx.gz", tmp, model, tmp, tmp), 1);
    expect_out("trunc-images.idx");
    expect_out("truncated");
    assert_int_equal(run("%s/%s --data %s/small-images.idx,%s/train-labels.idx.gz", tmp, model, tmp, tmp), 1);
    expect_out("small-images.idx: samples of 'image' are u8[27, 27] (729 elements); the model's input 'image' takes "
               "f32[1, 28, 28] (784 elements)");
    assert_int_equal(run("%s/%s --data %s/nonexistent", tmp, model, tmp), 1);
    expect_out("no such file or directory");
    assert_int_equal(run("%s/%s --data %s/train.safetensors --batch 16", tmp, model, tmp), 2);
    expect_out("--batch 16: fashion_cnn was compiled for batch 32; compile it again with --batch 16");
    assert_int_equal(run("%s/%s --data %s/train.safetensors --optimizer rmsprop", tmp, model, tmp), 2);
    expect_out("expected sgd, adam or adamw");
    assert_int_equal(run("%s/%s", tmp, model), 2);
    expect_out("--data is required");
    assert_int_equal(run("%s/%s --data %s/badlabel.safetensors", tmp, model, tmp), 1);
    expect_out("badlabel.safetensors: label 10 of sample 5 is outside [0, 10)");
    assert_int_equal(run("%s/%s --data %s/train.safetensors --eval", tmp, model, tmp), 2);
    expect_out("--eval needs --eval-data");
    assert_int_equal(run("%s/%s --data %s/train.safetensors --lr -1", tmp, model, tmp), 2);
    expect_out("--lr must be >= 0");
    assert_int_equal(run("%s/%s --data %s/train.safetensors --nesterov", tmp, model, tmp), 2);
    expect_out("--nesterov needs --momentum > 0");
    assert_int_equal(run("%s/%s --data %s/train.safetensors --lr x", tmp, model, tmp), 2);
    expect_out("bad value 'x' for --lr");
    assert_int_equal(run("%s compile %s/examples/mlp.lathe --target-cpu bogus -o %s/never", lathe_bin, src_dir, tmp), 1);
    expect_out("--target-cpu bogus: not a CPU LLVM 19 knows");
    assert_int_equal(run("%s/%s --help", tmp, model), 0);
    expect_out("--save-every N");
    /* a NaN or Inf loss stops the run; the checkpoint of the step before survives */
    int rc = run("%s/%s --data %s/train.safetensors --lr 1e30 --save %s/ck_nan --save-every 1", tmp, model, tmp, tmp);
    assert_int_equal(rc, 1);
    const char *t = out_text(), *at = strstr(t, " at step ");
    if (!strstr(t, "the loss is") || !at) fail_msg("no NaN message:\n%s", t);
    long bad_step = atol(at + strlen(" at step "));
    expect_out("the last checkpoint");
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/ck_nan", tmp);
    lathe_st_file *f = lathe_st_read(path, err, sizeof err);
    if (!f) fail_msg("%s", err);
    const lathe_st_tensor *st = lathe_st_find(f, "optimizer.step");
    assert_non_null(st);
    assert_int_equal(*(const int64_t *)st->data, bad_step - 1);
    lathe_st_free(f);
}

/* lathe step on ResNet-18 (width 4) against PyTorch: loss, logits, every
 * gradient, and the parameters after one SGD step computed from PyTorch's
 * gradients (p - lr * g: the momentum buffer starts as the gradient). */
static void test_step_parity(void **state) {
    (void)state;
    char path[512], err[512];
    const char *fix = resnet_fixture_path();
    int rc = run("%s step %s/examples/resnet18.lathe -D width=4 -D size=64 -D classes=10 --params %s --params-prefix init. "
                 "--batch %s --lr 0.01 --momentum 0.9 -o %s/step.safetensors",
                 lathe_bin, src_dir, fix, fix, tmp);
    if (rc != 0) fail_msg("lathe step failed (%d):\n%s", rc, out_text());
    lathe_st_file *ref = resnet_fixture();
    snprintf(path, sizeof path, "%s/step.safetensors", tmp);
    lathe_st_file *got = lathe_st_read(path, err, sizeof err);
    if (!got) fail_msg("%s", err);
    int ngrad = 0, nparam = 0;
    for (int i = 0; i < lathe_st_count(got); i++) {
        const lathe_st_tensor *g = lathe_st_at(got, i);
        char key[512];
        const lathe_st_tensor *r = NULL;
        bool updated = false;
        if (!strcmp(g->name, "loss") || !strcmp(g->name, "logits") || !strncmp(g->name, "grad.", 5)) r = lathe_st_find(ref, g->name);
        else {
            snprintf(key, sizeof key, "init.%s", g->name);
            r = lathe_st_find(ref, key);
            snprintf(key, sizeof key, "grad.%s", g->name);
            updated = lathe_st_find(ref, key) != NULL;
        }
        if (!r) fail_msg("%s: no reference", g->name);
        if (g->dtype != LATHE_RT_F32) continue; /* num_batches_tracked: checked below */
        int64_t n = 1;
        for (int d = 0; d < g->rank; d++) n *= g->shape[d];
        const float *gv = g->data, *rv = r->data, *grad = NULL;
        if (updated) {
            snprintf(key, sizeof key, "grad.%s", g->name);
            grad = lathe_st_find(ref, key)->data;
        } else if (strncmp(g->name, "grad.", 5) && strcmp(g->name, "loss") && strcmp(g->name, "logits"))
            continue; /* running statistics: their update is test_parity's */
        double maxref = 0, maxerr = 0;
        for (int64_t k = 0; k < n; k++) {
            double want = grad ? (double)rv[k] - 0.01 * (double)grad[k] : rv[k];
            maxref = fmax(maxref, fabs(want));
            maxerr = fmax(maxerr, fabs((double)gv[k] - want));
        }
        /* gradients: 1e-3 of the tensor's scale (test_parity holds the tight
         * fp64 rule); updated parameters: the step moves them by 0.01 g */
        if (maxerr > 1e-3 * maxref + 1e-6) fail_msg("%s: max error %g, scale %g", g->name, maxerr, maxref);
        if (!strncmp(g->name, "grad.", 5)) ngrad++;
        if (grad) nparam++;
    }
    assert_int_equal(ngrad, 62);
    assert_int_equal(nparam, 62);
    const lathe_st_tensor *nbt = lathe_st_find(got, "layer4.1.bn2.num_batches_tracked");
    assert_non_null(nbt);
    assert_int_equal(*(const int64_t *)nbt->data, 1);
    lathe_st_free(ref);
    lathe_st_free(got);
}

/* The trainer's recipes against PyTorch (tests/fixtures/recipes.safetensors,
 * make_recipe_fixtures.py): tests/fixtures/recipes.lathe trained from the
 * fixture's start on its 24 samples, in order, with --accumulate 3 at
 * batch 4 and --no-decay-norm-bias, two steps of AdamW and of SGD with
 * momentum, against PyTorch's loss / K idiom with the two parameter groups.
 * Tolerance as tests/test_parity.c's: max |lathe - torch| <= 1e-4 max |torch|
 * per tensor; num_batches_tracked (6 micro-batches) equal. */
static void test_recipes_parity(void **state) {
    (void)state;
    lathe_st_file *f = read_fixture("recipes.safetensors");
    char path[512], err[512];
    lathe_st_tensor init[16], data[2];
    int ninit = 0;
    for (int i = 0; i < lathe_st_count(f); i++) {
        const lathe_st_tensor *t = lathe_st_at(f, i);
        if (strncmp(t->name, "init.", 5)) continue;
        assert_true(ninit < 16);
        init[ninit] = *t;
        init[ninit++].name = t->name + 5; /* a state_dict: the names without the prefix */
    }
    assert_int_equal(ninit, 12);
    data[0] = *lathe_st_find(f, "x");
    data[1] = *lathe_st_find(f, "y");
    snprintf(path, sizeof path, "%s/recipe_init.safetensors", tmp);
    assert_int_equal(lathe_st_write(path, init, ninit, NULL, NULL, 0, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/recipe_data.safetensors", tmp);
    assert_int_equal(lathe_st_write(path, data, 2, NULL, NULL, 0, err, sizeof err), 0);
    static const struct {
        const char *opt, *flags;
    } runs[] = {{"adamw", "--optimizer adamw --lr 0.01 --weight-decay 0.1"},
                {"sgd", "--optimizer sgd --lr 0.05 --momentum 0.9 --weight-decay 0.05"}};
    for (int r = 0; r < 2; r++) {
        int rc = run("%s train %s/tests/fixtures/recipes.lathe --data %s/recipe_data.safetensors --batch 4 "
                     "--accumulate 3 --steps 2 %s --no-decay-norm-bias --load %s/recipe_init.safetensors "
                     "--save %s/recipe_%s",
                     lathe_bin, src_dir, tmp, runs[r].flags, tmp, tmp, runs[r].opt);
        if (rc != 0) fail_msg("%s run failed (%d):\n%s", runs[r].opt, rc, out_text());
        expect_out("batch 12 (3 x 4 accumulated)");
        snprintf(path, sizeof path, "%s/recipe_%s", tmp, runs[r].opt);
        lathe_st_file *got = lathe_st_read(path, err, sizeof err);
        if (!got) fail_msg("%s", err);
        for (int i = 0; i < ninit; i++) {
            char key[300];
            snprintf(key, sizeof key, "accum.%s.2.%s", runs[r].opt, init[i].name);
            const lathe_st_tensor *want = lathe_st_find(f, key), *have = lathe_st_find(got, init[i].name);
            if (!want || !have) fail_msg("%s: no '%s' in the fixture or the checkpoint", runs[r].opt, init[i].name);
            assert_int_equal(have->dtype, want->dtype);
            int64_t n = 1;
            for (int d = 0; d < want->rank; d++) n *= want->shape[d];
            double diff = 0, scale = 0;
            for (int64_t e = 0; e < n; e++) {
                double a = elem_at((lathe_dtype)want->dtype, have->data, e), b = elem_at((lathe_dtype)want->dtype, want->data, e);
                diff = fmax(diff, isnan(a) ? INFINITY : fabs(a - b));
                scale = fmax(scale, fabs(b));
            }
            if (want->dtype == LATHE_RT_I64 ? diff != 0 : diff > 1e-4 * scale)
                fail_msg("--optimizer %s: %s differs from PyTorch's by %.3g (max |torch| %.3g)", runs[r].opt,
                         init[i].name, diff, scale);
        }
        lathe_st_free(got);
    }
    lathe_st_free(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_end_to_end),
        cmocka_unit_test(test_eval_tokens),
        cmocka_unit_test(test_text_and_sample),
        cmocka_unit_test(test_dropout_resume),
        cmocka_unit_test(test_train_dumps),
        cmocka_unit_test(test_lr_schedule_resume),
        cmocka_unit_test(test_accumulate),
        cmocka_unit_test(test_recipes_parity),
        cmocka_unit_test(test_log_file),
        cmocka_unit_test(test_embedding_text),
        cmocka_unit_test(test_jit_equals_native),
        cmocka_unit_test(test_resume),
        cmocka_unit_test(test_augment_resume),
        cmocka_unit_test(test_trainer_step),
        cmocka_unit_test(test_interrupt),
        cmocka_unit_test(test_target_cpu),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_step_parity),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
