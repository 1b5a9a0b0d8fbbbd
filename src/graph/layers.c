/* The layer table: every layer a model can name, the operator behind it,
 * the keys it takes, and how each key is read. The parser, the C API,
 * `kiln summary` and the compiler passes read this table. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/graph.h"

#define COMMON "name from"

static const layer_kind layers[] = {
    {"input", OP_COUNT, KILN_ACT_NONE, 0, "shape tokens block", ""},
    {"linear", OP_LINEAR, KILN_ACT_NONE, 1, "out bias init std tie " COMMON, "out"},
    {"conv2d", OP_CONV2D, KILN_ACT_NONE, 1, "out size stride pad dilation bias init " COMMON,
     "out size"},
    {"maxpool", OP_MAXPOOL, KILN_ACT_NONE, 1, "size stride pad " COMMON, "size"},
    {"avgpool", OP_AVGPOOL, KILN_ACT_NONE, 1, "size stride pad " COMMON, "size"},
    {"flatten", OP_FLATTEN, KILN_ACT_NONE, 1, COMMON, ""},
    {"batchnorm", OP_BATCHNORM, KILN_ACT_NONE, 1, "momentum eps " COMMON, ""},
    {"layernorm", OP_LAYERNORM, KILN_ACT_NONE, 1, "eps dims bias " COMMON, ""},
    {"dropout", OP_DROPOUT, KILN_ACT_NONE, 1, "p " COMMON, ""},
    {"relu", OP_ACTIVATION, KILN_ACT_RELU, 1, COMMON, ""},
    {"leaky_relu", OP_ACTIVATION, KILN_ACT_LEAKY_RELU, 1, "slope " COMMON, ""},
    {"sigmoid", OP_ACTIVATION, KILN_ACT_SIGMOID, 1, COMMON, ""},
    {"tanh", OP_ACTIVATION, KILN_ACT_TANH, 1, COMMON, ""},
    {"gelu", OP_ACTIVATION, KILN_ACT_GELU, 1, "approx " COMMON, ""},
    {"softmax", OP_SOFTMAX, KILN_ACT_NONE, 1, "dim " COMMON, ""},
    {"add", OP_ADD, KILN_ACT_NONE, 2, COMMON, "from"},
    {"concat", OP_CONCAT, KILN_ACT_NONE, 2, COMMON, "from"},
    {"embedding", OP_EMBEDDING, KILN_ACT_NONE, 1, "out tokens init std " COMMON, "out"},
    {"position", OP_POSITION, KILN_ACT_NONE, 1, "positions init std " COMMON, ""},
    {"attention", OP_ATTENTION, KILN_ACT_NONE, 1, "heads " COMMON, "heads"},
    {"transformer_block", OP_COUNT, KILN_ACT_NONE, 1, "count heads bias dropout", "heads"},
};

#define LAYER_COUNT (sizeof layers / sizeof layers[0])

const layer_kind *layer_find(const char *name)
{
    for (size_t i = 0; i < LAYER_COUNT; i++)
        if (strcmp(layers[i].name, name) == 0)
            return &layers[i];
    return NULL;
}

const char *layer_names(char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < LAYER_COUNT && used < size; i++) {
        int n = snprintf(buf + used, size - used, "%s%s", i ? ", " : "", layers[i].name);
        used += n > 0 ? (size_t)n : 0;
    }
    return buf;
}

int layer_takes_key(const layer_kind *k, const char *key)
{
    size_t n = strlen(key);
    if (n == 0)
        return 0;
    for (const char *p = strstr(k->keys, key); p; p = strstr(p + 1, key))
        if ((p == k->keys || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return 1;
    return 0;
}

/* ---- reading values ------------------------------------------------------ */

/* A whole number in [lo, hi], all of the text. */
static int read_size(const char *v, size_t lo, size_t hi, size_t *out)
{
    if (*v < '0' || *v > '9')
        return 0;
    errno = 0;
    char *end;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || *end || x < lo || x > hi)
        return 0;
    *out = (size_t)x;
    return 1;
}

static int read_float(const char *v, double lo, double hi, int hi_open, float *out)
{
    errno = 0;
    char *end;
    double x = strtod(v, &end);
    if (!*v || errno || *end || !isfinite(x) || x < lo || x > hi || (hi_open && x == hi))
        return 0;
    *out = (float)x;
    return 1;
}

#define SIZE_MAX_KEY 1000000u /* far beyond any real layer; keeps products in range */

static const char *key_out(graph_node *n, const char *v)
{
    return read_size(v, 1, SIZE_MAX_KEY, &n->attrs.out) ? NULL : "a whole number from 1 to 1000000";
}

static const char *key_size(graph_node *n, const char *v)
{
    return read_size(v, 1, 1024, &n->attrs.kernel) ? NULL : "a whole number from 1 to 1024";
}

static const char *key_stride(graph_node *n, const char *v)
{
    return read_size(v, 1, 1024, &n->attrs.stride) ? NULL : "a whole number from 1 to 1024";
}

static const char *key_pad(graph_node *n, const char *v)
{
    return read_size(v, 0, 1024, &n->attrs.pad) ? NULL : "a whole number from 0 to 1024";
}

static const char *key_dilation(graph_node *n, const char *v)
{
    return read_size(v, 1, 1024, &n->attrs.dilation) ? NULL : "a whole number from 1 to 1024";
}

static const char *key_dims(graph_node *n, const char *v)
{
    size_t d;
    if (!read_size(v, 1, 3, &d))
        return "1, 2 or 3 (how many trailing dimensions to normalize)";
    n->attrs.norm_dims = (int)d;
    return NULL;
}

static const char *key_bias(graph_node *n, const char *v)
{
    if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
        n->attrs.bias = 1;
    else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
        n->attrs.bias = 0;
    else
        return "true or false";
    return NULL;
}

static const char *key_init(graph_node *n, const char *v)
{
    static const char *const names[] = {"kaiming_normal", "kaiming_uniform", "xavier_normal",
                                        "xavier_uniform", "zeros", "pytorch", "normal"};
    for (int i = 0; i < 7; i++)
        if (strcmp(v, names[i]) == 0) {
            n->init = (init_kind)(INIT_KAIMING_NORMAL + i);
            return NULL;
        }
    return "kaiming_normal, kaiming_uniform, xavier_normal, xavier_uniform, zeros, pytorch or "
           "normal";
}

static const char *key_slope(graph_node *n, const char *v)
{
    return read_float(v, 0, 1e6, 0, &n->attrs.slope) ? NULL : "a number >= 0";
}

static const char *key_p(graph_node *n, const char *v)
{
    return read_float(v, 0, 1, 1, &n->attrs.p) ? NULL : "a probability from 0 up to (not including) 1";
}

static const char *key_momentum(graph_node *n, const char *v)
{
    return read_float(v, 0, 1, 0, &n->attrs.momentum) ? NULL : "a number from 0 to 1";
}

static const char *key_eps(graph_node *n, const char *v)
{
    return read_float(v, 1e-30, 1, 0, &n->attrs.eps) && n->attrs.eps > 0 ? NULL
                                                                        : "a number above 0";
}

static const char *key_approx(graph_node *n, const char *v)
{
    if (strcmp(v, "none") == 0)
        n->attrs.act = KILN_ACT_GELU;
    else if (strcmp(v, "tanh") == 0)
        n->attrs.act = KILN_ACT_GELU_TANH;
    else
        return "none or tanh";
    return NULL;
}

static const char *key_dim(graph_node *n, const char *v)
{
    char *end;
    errno = 0;
    long d = strtol(v, &end, 10);
    if (!*v || *end || errno || d < -4 || d > 3)
        return "a dimension from -4 to 3 (PyTorch's numbering, batch first)";
    n->attrs.dim = (int)d;
    return NULL;
}

static const char *key_rows(graph_node *n, const char *v)
{
    return read_size(v, 1, SIZE_MAX_KEY, &n->attrs.rows) ? NULL
                                                         : "a whole number from 1 to 1000000";
}

static const char *key_heads(graph_node *n, const char *v)
{
    return read_size(v, 1, 4096, &n->attrs.heads) ? NULL : "a whole number from 1 to 4096";
}

static const char *key_std(graph_node *n, const char *v)
{
    if (!read_float(v, 0, 1e6, 0, &n->std))
        return "a number >= 0";
    n->init = INIT_NORMAL;
    return NULL;
}

static const struct {
    const char *key;
    const char *(*read)(graph_node *n, const char *value);
} readers[] = {
    {"out", key_out},         {"size", key_size},     {"stride", key_stride},
    {"pad", key_pad},         {"dilation", key_dilation}, {"dims", key_dims},
    {"bias", key_bias},       {"init", key_init},     {"slope", key_slope},
    {"p", key_p},             {"momentum", key_momentum}, {"eps", key_eps},
    {"approx", key_approx},   {"dim", key_dim},       {"tokens", key_rows},
    {"positions", key_rows},  {"heads", key_heads},   {"std", key_std},
};

const char *layer_read_key(graph_node *n, const char *key, const char *value)
{
    for (size_t i = 0; i < sizeof readers / sizeof readers[0]; i++)
        if (strcmp(readers[i].key, key) == 0)
            return readers[i].read(n, value);
    return "a key this layer takes";
}

int layer_read_shape(const char *v, kiln_shape *out)
{
    kiln_shape s = {0};
    const char *p = v;
    while (*p) {
        char *end;
        if (*p < '0' || *p > '9' || s.ndim == KILN_MAX_DIMS - 1)
            return 0;
        errno = 0;
        unsigned long long d = strtoull(p, &end, 10);
        if (errno || d < 1 || d > SIZE_MAX_KEY)
            return 0;
        s.d[s.ndim++] = (size_t)d;
        p = end;
        if (*p == 'x' || *p == 'X' || *p == '*')
            p++;
        else if (*p)
            return 0;
    }
    if (s.ndim == 0 || p[-1] == 'x' || p[-1] == 'X' || p[-1] == '*')
        return 0;
    *out = s;
    return 1;
}
