/* lathe_models.h - reference models built with the tracing API.
 *
 * ResNet-18 as torchvision defines it, with the same parameter and buffer
 * names as its state_dict (conv1.weight, bn1.running_mean,
 * layer2.0.downsample.0.weight, fc.bias, ...), so weights move between
 * Lathe and PyTorch. */
#ifndef LATHE_MODELS_H
#define LATHE_MODELS_H

#include "lathe.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    lathe_dtype dtype;      /* LATHE_F32 usually */
    int64_t num_classes;    /* torchvision's default: 1000 */
    int64_t width;          /* channels of the first stage: 64 in torchvision; smaller for tests */
    bool training;          /* batch norm with batch statistics and running-statistics updates */
} lathe_resnet_config;

/* Trace ResNet-18 on x (N, 3, H, W) into g and return the logits
 * (N, num_classes).  Parameters require grad; batch-norm buffers are
 * running_mean, running_var and num_batches_tracked (i64), updated in
 * training mode as PyTorch does.  NULL with the error in g on failure. */
lathe_node *lathe_resnet18(lathe_graph *g, lathe_node *x, const lathe_resnet_config *cfg);

#ifdef __cplusplus
}
#endif
#endif
