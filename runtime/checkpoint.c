/* checkpoint.c - parameters, buffers and optimizer state in one safetensors
 * file, written atomically, loaded with every name, dtype and shape checked
 * before anything is copied (a refused file leaves the model untouched).
 *
 * Names: parameters and buffers under their own names (PyTorch's state_dict
 * names, so the file loads with safetensors.torch.load_file and
 * model.load_state_dict); optimizer state as "optimizer.NAME.momentum_buffer",
 * "optimizer.NAME.exp_avg", "optimizer.NAME.exp_avg_sq" and the step count as
 * "optimizer.step" (i64); metadata "format": "lathe" and "optimizer". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lathe_checkpoint.h"
#include "safetensors.h"

static const char *opt_name(lathe_optim_kind k) {
    return k == LATHE_SGD ? "sgd" : k == LATHE_ADAM ? "adam" : "adamw";
}
static const char *state_names[2][2] = {{"momentum_buffer", NULL}, {"exp_avg", "exp_avg_sq"}};

int lathe_rt_save(const char *path, const uint8_t *arena, const lathe_rt_tensor *ts, int n, lathe_optimizer *opt,
                  char *err, size_t errlen) {
    return lathe_rt_save_meta(path, arena, ts, n, opt, NULL, NULL, 0, err, errlen);
}

int lathe_rt_save_meta(const char *path, const uint8_t *arena, const lathe_rt_tensor *ts, int n, lathe_optimizer *opt,
                       const char *const *keys, const char *const *values, int nmeta, char *err, size_t errlen) {
    lathe_st_tensor *out = calloc((size_t)(3 * n + 2), sizeof *out);
    char **names = calloc((size_t)(3 * n + 2), sizeof *names);
    int64_t step = opt ? lathe_optim_steps(opt) : 0;
    int k = 0, rc = -1;
    if (!out || !names) {
        snprintf(err, errlen, "save %s: out of memory", path);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const lathe_rt_tensor *t = &ts[i];
        if (t->kind != LATHE_RT_PARAM && t->kind != LATHE_RT_BUFFER) continue;
        out[k] = (lathe_st_tensor){t->name, t->dtype, t->rank, {0}, arena + t->offset};
        memcpy(out[k].shape, t->shape, sizeof(int64_t) * (size_t)t->rank);
        k++;
        if (!opt || t->kind != LATHE_RT_PARAM) continue;
        int kind = lathe_optim_get_config(opt)->kind == LATHE_SGD ? 0 : 1;
        for (int s = 0; s < 2 && state_names[kind][s]; s++) {
            bool *exists = NULL;
            void *v = lathe_optim_state(opt, t->name, state_names[kind][s], &exists);
            if (!v || (exists && !*exists)) continue;
            size_t len = strlen(t->name) + 40;
            if (!(names[k] = malloc(len))) {
                snprintf(err, errlen, "save %s: out of memory", path);
                goto done;
            }
            snprintf(names[k], len, "optimizer.%s.%s", t->name, state_names[kind][s]);
            out[k] = (lathe_st_tensor){names[k], t->dtype, t->rank, {0}, v};
            memcpy(out[k].shape, t->shape, sizeof(int64_t) * (size_t)t->rank);
            k++;
        }
    }
    if (opt) out[k++] = (lathe_st_tensor){"optimizer.step", LATHE_RT_I64, 0, {0}, &step};
    const char *mk[2 + LATHE_RT_MAX_META] = {"format", "optimizer"};
    const char *mv[2 + LATHE_RT_MAX_META] = {"lathe", opt ? opt_name(lathe_optim_get_config(opt)->kind) : "none"};
    if (nmeta < 0 || nmeta > LATHE_RT_MAX_META) {
        snprintf(err, errlen, "save %s: %d metadata entries (at most %d)", path, nmeta, LATHE_RT_MAX_META);
        goto done;
    }
    for (int i = 0; i < nmeta; i++) {
        if (keys[i] && (!strcmp(keys[i], "format") || !strcmp(keys[i], "optimizer"))) {
            snprintf(err, errlen, "save %s: metadata key '%s' is the checkpoint's own", path, keys[i]);
            goto done;
        }
        mk[2 + i] = keys[i], mv[2 + i] = values[i];
    }
    rc = lathe_st_write(path, out, k, mk, mv, 2 + nmeta, err, errlen);
done:
    for (int i = 0; i < 3 * n + 2 && names; i++) free(names[i]);
    free(names);
    free(out);
    return rc;
}

static bool same_shape(const lathe_st_tensor *s, const lathe_rt_tensor *t) {
    if (s->rank != t->rank || s->dtype != t->dtype) return false;
    for (int d = 0; d < s->rank; d++)
        if (s->shape[d] != t->shape[d]) return false;
    return true;
}

static void type_str(lathe_rt_dtype dtype, int rank, const int64_t *shape, char *buf, size_t len) {
    size_t k = (size_t)snprintf(buf, len, "%s[", lathe_rt_dtype_name(dtype));
    for (int d = 0; d < rank && k < len; d++) k += (size_t)snprintf(buf + k, len - k, d ? ",%lld" : "%lld", (long long)shape[d]);
    if (k < len) snprintf(buf + k, len - k, "]");
}

static void append(char *buf, size_t len, const char *fmt, const char *a, const char *b) {
    size_t k = strlen(buf);
    if (k < len) snprintf(buf + k, len - k, fmt, a, b);
}

int lathe_rt_load(const char *path, uint8_t *arena, const lathe_rt_tensor *ts, int n, lathe_optimizer *opt,
                  bool strict, lathe_load_report *rep, char *err, size_t errlen) {
    lathe_load_report local;
    if (!rep) rep = &local;
    memset(rep, 0, sizeof *rep);
    lathe_st_file *f = lathe_st_read(path, err, errlen);
    if (!f) return -1;
    int rc = -1;
    /* 1: check everything */
    for (int i = 0; i < n; i++) {
        const lathe_rt_tensor *t = &ts[i];
        if (t->kind != LATHE_RT_PARAM && t->kind != LATHE_RT_BUFFER) continue;
        const lathe_st_tensor *s = lathe_st_find(f, t->name);
        if (!s && !strncmp(t->name, "lathe.", 6)) continue; /* Lathe's own state (a generator's): optional */
        if (!s) {
            rep->missing++;
            append(rep->text, sizeof rep->text, "missing: %s%s\n", t->name, "");
            if (strict) {
                snprintf(err, errlen, "load %s: the model's tensor '%s' is missing from the file", path, t->name);
                goto done;
            }
        } else if (!same_shape(s, t)) {
            char a[160], b[160];
            type_str(s->dtype, s->rank, s->shape, a, sizeof a);
            type_str(t->dtype, t->rank, t->shape, b, sizeof b);
            rep->mismatched++;
            append(rep->text, sizeof rep->text, "mismatched: %s (%s in the file)\n", t->name, a);
            if (strict) {
                snprintf(err, errlen, "load %s: tensor '%s' is %s in the file but %s in the model", path, t->name, a, b);
                goto done;
            }
        }
    }
    for (int i = 0; i < lathe_st_count(f); i++) {
        const lathe_st_tensor *s = lathe_st_at(f, i);
        if (strncmp(s->name, "optimizer.", 10) == 0) continue;
        const lathe_rt_tensor *t = lathe_rt_find(ts, n, s->name);
        if (t && (t->kind == LATHE_RT_PARAM || t->kind == LATHE_RT_BUFFER)) continue;
        rep->unexpected++;
        append(rep->text, sizeof rep->text, "unexpected: %s%s\n", s->name, "");
        if (strict) {
            snprintf(err, errlen, "load %s: the file's tensor '%s' is not in the model", path, s->name);
            goto done;
        }
    }
    /* optimizer state: shapes must match where present */
    const lathe_st_tensor *stp = lathe_st_find(f, "optimizer.step");
    if (opt && stp && (stp->dtype != LATHE_RT_I64 || stp->rank != 0 || *(const int64_t *)stp->data < 0)) {
        snprintf(err, errlen, "load %s: 'optimizer.step' must be a rank-0 I64 tensor >= 0", path);
        goto done;
    }
    const char *ofmt = lathe_st_meta(f, "optimizer");
    if (opt && stp && ofmt && strcmp(ofmt, opt_name(lathe_optim_get_config(opt)->kind)) != 0) {
        snprintf(err, errlen, "load %s: the file holds %s optimizer state, but the optimizer is %s", path, ofmt,
                 opt_name(lathe_optim_get_config(opt)->kind));
        goto done;
    }
    int kind = opt && lathe_optim_get_config(opt)->kind != LATHE_SGD ? 1 : 0;
    for (int pass = 0; pass < 2; pass++) /* 0: check, 1: copy */
        for (int i = 0; opt && stp && i < n; i++) {
            const lathe_rt_tensor *t = &ts[i];
            if (t->kind != LATHE_RT_PARAM) continue;
            for (int s = 0; s < 2 && state_names[kind][s]; s++) {
                char key[512];
                snprintf(key, sizeof key, "optimizer.%s.%s", t->name, state_names[kind][s]);
                const lathe_st_tensor *st = lathe_st_find(f, key);
                bool *exists = NULL;
                void *dst = lathe_optim_state(opt, t->name, state_names[kind][s], &exists);
                if (!st || !dst) continue;
                if (!pass && !same_shape(st, t)) {
                    snprintf(err, errlen, "load %s: optimizer state '%s' does not match parameter '%s'", path, key, t->name);
                    goto done;
                }
                if (pass) {
                    memcpy(dst, st->data, (size_t)t->numel * lathe_rt_dtype_size(t->dtype));
                    if (exists) *exists = true;
                }
            }
        }
    /* 2: copy */
    for (int i = 0; i < n; i++) {
        const lathe_rt_tensor *t = &ts[i];
        if (t->kind != LATHE_RT_PARAM && t->kind != LATHE_RT_BUFFER) continue;
        const lathe_st_tensor *s = lathe_st_find(f, t->name);
        if (s && same_shape(s, t)) {
            memcpy(arena + t->offset, s->data, (size_t)t->numel * lathe_rt_dtype_size(t->dtype));
            rep->loaded++;
        }
    }
    if (opt && stp) lathe_optim_set_steps(opt, *(const int64_t *)stp->data);
    rc = 0;
done:
    lathe_st_free(f);
    return rc;
}
