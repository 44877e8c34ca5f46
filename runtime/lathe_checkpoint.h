/* lathe_checkpoint.h - checkpoints of a compiled program: parameters,
 * buffers and optimizer state in one safetensors file (checkpoint.c). */
#ifndef LATHE_CHECKPOINT_H
#define LATHE_CHECKPOINT_H

#include "lathe_optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Write every parameter and buffer of the table (under its own name) and,
 * when opt is not NULL, the optimizer's state, to path atomically: a crash
 * mid-write leaves the previous file intact.  0, or -1 with a message. */
int lathe_rt_save(const char *path, const uint8_t *arena, const lathe_rt_tensor *ts, int n, lathe_optimizer *opt,
                  char *err, size_t errlen);

/* The most metadata strings lathe_rt_save_meta adds to the checkpoint's own. */
#define LATHE_RT_MAX_META 16

/* lathe_rt_save with nmeta (at most LATHE_RT_MAX_META) more metadata strings,
 * such as a trainer's position in its run (keys other than "format" and
 * "optimizer"). */
int lathe_rt_save_meta(const char *path, const uint8_t *arena, const lathe_rt_tensor *ts, int n, lathe_optimizer *opt,
                       const char *const *keys, const char *const *values, int nmeta, char *err, size_t errlen);

typedef struct {
    int loaded, missing, unexpected, mismatched;
    char text[4096];   /* one line per missing, unexpected or mismatched name; cut at its size */
} lathe_load_report;

/* Load path into the table's parameters and buffers (and the optimizer's
 * state when opt is not NULL and the file has it).  Strict: every parameter
 * and buffer must be in the file with its dtype and shape (but for Lathe's
 * own state, buffers named "lathe.*" such as dropout's generator, which keep
 * their values when the file lacks them: a PyTorch state_dict loads), and
 * the file may hold nothing else.  Not strict: matching tensors load; the report lists
 * missing, unexpected and mismatched names (PyTorch's strict=False).  The
 * file is validated completely first (see lathe_st_read) and nothing is
 * copied unless it is accepted, so a refused file leaves the model as it
 * was.  0, or -1 with a message naming the file and the tensor. */
int lathe_rt_load(const char *path, uint8_t *arena, const lathe_rt_tensor *ts, int n, lathe_optimizer *opt,
                  bool strict, lathe_load_report *report, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
