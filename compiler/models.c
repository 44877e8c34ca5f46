/* models.c - ResNet-18 traced with the public API, named as torchvision's
 * state_dict. */
#include <stdio.h>

#include "lathe_models.h"

typedef struct {
    lathe_graph *g;
    const lathe_resnet_config *cfg;
} net;

static lathe_node *conv(net *n, const char *name, lathe_node *x, int64_t cout, int64_t k, int64_t stride,
                        int64_t pad) {
    char w[128];
    snprintf(w, sizeof w, "%s.weight", name);
    int64_t cin = lathe_node_shape(x)[1];
    lathe_node *p = lathe_param(n->g, w, n->cfg->dtype, LATHE_DIMS(cout, cin, k, k), true);
    return lathe_conv2d(n->g, x, p, NULL, stride, pad, 1, 1);
}

static lathe_node *bn(net *n, const char *name, lathe_node *x) {
    char s[5][128];
    const char *suffix[] = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"};
    for (int i = 0; i < 5; i++) snprintf(s[i], sizeof s[i], "%s.%s", name, suffix[i]);
    int64_t c = lathe_node_shape(x)[1];
    lathe_graph *g = n->g;
    lathe_dtype t = n->cfg->dtype;
    lathe_node *w = lathe_param(g, s[0], t, LATHE_DIMS(c), true), *b = lathe_param(g, s[1], t, LATHE_DIMS(c), true);
    lathe_node *rm = lathe_buffer(g, s[2], t, LATHE_DIMS(c)), *rv = lathe_buffer(g, s[3], t, LATHE_DIMS(c));
    lathe_node *nbt = lathe_buffer(g, s[4], LATHE_I64, 0, NULL);
    if (n->cfg->training) {
        lathe_no_grad_begin(g);
        lathe_update(g, nbt, lathe_add(g, nbt, lathe_scalar(g, LATHE_I64, 1)));
        lathe_no_grad_end(g);
    }
    return lathe_batch_norm2d(g, x, w, b, rm, rv, n->cfg->training, 0.1, 1e-5);
}

/* torchvision's BasicBlock */
static lathe_node *block(net *n, const char *name, lathe_node *x, int64_t planes, int64_t stride) {
    char s[160];
    lathe_graph *g = n->g;
    snprintf(s, sizeof s, "%s.conv1", name);
    lathe_node *h = conv(n, s, x, planes, 3, stride, 1);
    snprintf(s, sizeof s, "%s.bn1", name);
    h = lathe_relu(g, bn(n, s, h));
    snprintf(s, sizeof s, "%s.conv2", name);
    h = conv(n, s, h, planes, 3, 1, 1);
    snprintf(s, sizeof s, "%s.bn2", name);
    h = bn(n, s, h);
    lathe_node *id = x;
    if (stride != 1 || lathe_node_shape(x)[1] != planes) {
        snprintf(s, sizeof s, "%s.downsample.0", name);
        id = conv(n, s, x, planes, 1, stride, 0);
        snprintf(s, sizeof s, "%s.downsample.1", name);
        id = bn(n, s, id);
    }
    return lathe_relu(g, lathe_add(g, h, id));
}

lathe_node *lathe_resnet18(lathe_graph *g, lathe_node *x, const lathe_resnet_config *cfg) {
    net n = {g, cfg};
    int64_t w = cfg->width;
    lathe_node *h = conv(&n, "conv1", x, w, 7, 2, 3);
    h = lathe_relu(g, bn(&n, "bn1", h));
    h = lathe_max_pool2d(g, h, 3, 2, 1);
    for (int layer = 1; layer <= 4; layer++) {
        int64_t planes = w << (layer - 1);
        for (int b = 0; b < 2; b++) {
            char name[32];
            snprintf(name, sizeof name, "layer%d.%d", layer, b);
            h = block(&n, name, h, planes, layer > 1 && b == 0 ? 2 : 1);
        }
    }
    h = lathe_flatten(g, lathe_adaptive_avg_pool2d(g, h, 1, 1), 1, -1);
    lathe_node *fw = lathe_param(g, "fc.weight", cfg->dtype, LATHE_DIMS(cfg->num_classes, 8 * w), true);
    lathe_node *fb = lathe_param(g, "fc.bias", cfg->dtype, LATHE_DIMS(cfg->num_classes), true);
    lathe_node *y = lathe_linear(g, h, fw, fb);
    return lathe_graph_status(g) == LATHE_OK ? y : NULL;
}
