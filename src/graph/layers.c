/* The layers a model file can name: [input], every op of the table and
 * every activation with a layer of its own, in the table's order (the
 * activations where the activation op stands). Their keys, ranges and
 * defaults are the op rows' (ops/keys.c reads them). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/graph.h"

#define SIZE_MAX_KEY 1000000u /* far beyond any real layer; keeps products in range */

static layer_kind layers[2 + OP_COUNT + KILN_ACT_COUNT];
static size_t layer_count;
static pthread_once_t built = PTHREAD_ONCE_INIT;

/* Whether a layer takes an op key: every key of its op, but an activation
 * only those its row names. */
static int takes(const layer_kind *k, const op_key *key)
{
    return k->op != OP_ACTIVATION || act_takes_key(k->act, key->name);
}

static void add_layer(const char *name, op_kind op, kiln_act act)
{
    layer_kind *k = &layers[layer_count++];
    const op_desc *d = op_get(op);
    *k = (layer_kind){.name = name, .op = op, .act = act, .n_inputs = d ? d->n_inputs : 0};
    if (!d) { /* [input], [transformer_block] */
        snprintf(k->keys, sizeof k->keys, "%s",
                 strcmp(name, "input") == 0 ? "shape tokens block" : "count heads bias dropout");
        return;
    }
    for (int i = 0; i < d->n_keys; i++)
        if (takes(k, &d->keys[i])) {
            size_t used = strlen(k->keys);
            snprintf(k->keys + used, sizeof k->keys - used, "%s ", d->keys[i].name);
        }
    size_t used = strlen(k->keys);
    snprintf(k->keys + used, sizeof k->keys - used, "%sname from", d->tieable ? "tie " : "");
}

static void build(void)
{
    add_layer("input", OP_COUNT, KILN_ACT_NONE);
    for (int op = 0; op < OP_COUNT; op++) {
        if (op != OP_ACTIVATION) {
            add_layer(op_get((op_kind)op)->name, (op_kind)op, KILN_ACT_NONE);
            continue;
        }
        for (int a = 0; a < KILN_ACT_COUNT; a++)
            if (act_get((kiln_act)a)->layer)
                add_layer(act_get((kiln_act)a)->name, OP_ACTIVATION, (kiln_act)a);
    }
    add_layer("transformer_block", OP_COUNT, KILN_ACT_NONE);
}

const layer_kind *layer_find(const char *name)
{
    pthread_once(&built, build);
    for (size_t i = 0; i < layer_count; i++)
        if (strcmp(layers[i].name, name) == 0)
            return &layers[i];
    return NULL;
}

const char *layer_names(char *buf, size_t size)
{
    pthread_once(&built, build);
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < layer_count && used < size; i++) {
        int n = snprintf(buf + used, size - used, "%s%s", i ? ", " : "", layers[i].name);
        used += n > 0 ? (size_t)n : 0;
    }
    return buf;
}

const op_key *layer_key(const layer_kind *k, const char *key)
{
    const op_desc *d = op_get(k->op);
    for (int i = 0; d && i < d->n_keys; i++)
        if (strcmp(d->keys[i].name, key) == 0 && takes(k, &d->keys[i]))
            return &d->keys[i];
    return NULL;
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
