/* The graph IR: a model is an ordered list of layers, each reading the
 * outputs of earlier layers. Both front ends (model files in parse.c, the
 * C API) build it through graph_add, so they cannot disagree. */
#ifndef KILN_GRAPH_H
#define KILN_GRAPH_H

#include "ops/ops.h"

/* ---- the layer table (layers.c) ------------------------------------------ */

typedef enum {
    INIT_DEFAULT, /* decided by graph_finish from the activation that follows */
    INIT_KAIMING_NORMAL,
    INIT_KAIMING_UNIFORM,
    INIT_XAVIER_NORMAL,
    INIT_XAVIER_UNIFORM,
    INIT_ZEROS,
    INIT_PYTORCH, /* nn.Linear's and nn.Conv2d's own: U(±1/sqrt(fan_in)), biases too */
} init_kind;

typedef struct {
    const char *name;   /* section name in model files: "linear" */
    op_kind op;         /* the operator; OP_COUNT for [input] */
    kiln_act act;       /* for activation layers */
    int n_inputs;       /* 2 for add and concat (from = a, b) */
    const char *keys;   /* the keys it takes besides name and from, space-separated */
    const char *needs;  /* keys it requires */
} layer_kind;

/* NULL when there is no such layer. */
const layer_kind *layer_find(const char *name);

/* "input, linear, ..." into buf, for messages. */
const char *layer_names(char *buf, size_t size);

/* Whether a layer takes a key (name and from included where they apply). */
int layer_takes_key(const layer_kind *k, const char *key);

/* Reads key = value into the node's attributes; NULL when it was good,
 * else what the value should have been ("a whole number from 1 to ..."). */
struct graph_node;
const char *layer_read_key(struct graph_node *n, const char *key, const char *value);

/* Reads a per-sample shape "784" or "1x28x28" (1 to 3 dimensions). */
int layer_read_shape(const char *value, kiln_shape *out);

/* ---- the graph ------------------------------------------------------------ */

#define GRAPH_NAME_MAX 64

typedef struct graph_node {
    const layer_kind *kind;
    char name[GRAPH_NAME_MAX]; /* name = ..., or the layer's index */
    int line;                  /* line in the model file; 0 from the C API */
    int inputs[OP_MAX_INPUTS]; /* indices of earlier layers; -1 is the model input */
    op_attrs attrs;
    init_kind init;
    kiln_shape out;            /* per-sample shape (no batch dimension) */
    op_shapes shapes;          /* with a batch of 1 */
    int has_name;
} graph_node;

typedef struct {
    char key[32];
    char value[128];
    int line;
} graph_setting;

struct kiln_model {
    char file[256];            /* model file, or "" for the C API */
    kiln_shape input;          /* per-sample input shape; ndim 0 until [input] */
    int input_line;
    graph_node *nodes;
    size_t count, capacity;
    graph_setting *train;      /* the [train] section, handed over as is */
    size_t train_count;
    int finished;
    char *text;                /* the sections added, as model-file text (text.c) */
    size_t text_len, text_cap;
};

/* A key = value of one layer, with its line (0 from the C API). */
typedef struct {
    const char *key;
    const char *value;
    int line;
} graph_kv;

/* Adds a layer (or [input]) at a line of the model file (0: C API); infers
 * its shape at once, so every error names the layer where it arises.
 * later_names, when not NULL, lists "name@line" of layers that follow,
 * so that `from` naming a later layer says so. */
kiln_status graph_add(kiln_model *m, const char *kind, const graph_kv *kv, size_t n, int line,
                      const char *const *later_names, size_t n_later);

/* Appends a section that graph_add accepted to the model's text
 * (text.c); graph_text_fits says whether a value can be written there
 * (no line breaks). */
kiln_status graph_record(kiln_model *m, const char *kind, const graph_kv *kv, size_t n);
int graph_text_fits(const char *value);

/* Resolves what depends on the whole graph (default initialisers); the
 * model is then complete. */
kiln_status graph_finish(kiln_model *m);

/* "model.ini:12 [linear]" or "layer 3 [linear]", for messages. */
const char *graph_where(const kiln_model *m, int line, size_t index, const char *kind,
                        char *buf, size_t size);

/* Parameter and buffer counts as PyTorch counts them (batchnorm has a
 * num_batches_tracked buffer of one value). */
uint64_t graph_node_params(const graph_node *n);
uint64_t graph_node_buffers(const graph_node *n);

#endif /* KILN_GRAPH_H */
