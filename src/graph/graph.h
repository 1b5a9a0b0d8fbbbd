/* The graph IR: a model is an ordered list of layers, each reading the
 * outputs of earlier layers. Both front ends (model files in parse.c, the
 * C API) build it through graph_add, so they cannot disagree. */
#ifndef KILN_GRAPH_H
#define KILN_GRAPH_H

#include "ops/ops.h"

/* ---- the layers a model file can name (layers.c) ----------------------- */

/* One section name: [input], an op of the table, an activation of
 * KILN_ACT_LIST with a layer of its own, or [transformer_block] (the
 * layers of a block, graph/block.c; op OP_COUNT as [input]). Everything else about it is in
 * the op's row. */
typedef struct {
    const char *name;   /* section name in model files: "linear" */
    op_kind op;         /* the operator; OP_COUNT for [input] */
    kiln_act act;       /* for activation layers */
    int n_inputs;       /* 2 for add and concat (from = a, b) */
    char keys[160];     /* the keys it takes, space-separated, for messages */
} layer_kind;

/* NULL when there is no such layer. */
const layer_kind *layer_find(const char *name);

/* "input, linear, ..." into buf, for messages. */
const char *layer_names(char *buf, size_t size);

/* The declaration of a key the layer takes (besides name and from), or
 * NULL. */
const op_key *layer_key(const layer_kind *k, const char *key);

/* Reads a per-sample shape "784" or "1x28x28" (1 to 3 dimensions). */
int layer_read_shape(const char *value, kiln_shape *out);

/* ---- the graph ------------------------------------------------------------ */

#define GRAPH_NAME_MAX 64

typedef struct graph_node {
    const layer_kind *kind;
    char name[GRAPH_NAME_MAX]; /* name = ..., or the layer's index */
    int line;                  /* line in the model file; 0 from the C API */
    int inputs[OP_MAX_INPUTS]; /* indices of earlier layers; -1 is the model input */
    op_attrs attrs;            /* attrs.init: INIT_DEFAULT until graph_finish */
    int tie;                   /* the node whose weight it uses (tie =), or -1 */
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
    size_t vocab;              /* [input] tokens = V: token ids of a V-word vocabulary */
    size_t blocks;             /* transformer blocks added so far (transformer.h.N) */
    int input_line;
    graph_node *nodes;
    size_t count, capacity;
    graph_setting *train;      /* the [train] section, handed over as is */
    size_t train_count;
    int finished;
    char *text;                /* the sections added, as model-file text (text.c) */
    size_t text_len, text_cap;
    int quiet_text;            /* inside a section that adds layers of its own */
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

/* Adds count transformer blocks (nanoGPT's Block: pre-LN causal
 * self-attention and a GELU MLP, with residuals), as the layers they are
 * made of, named transformer.h.N.ln_1 ... (block.c). */
kiln_status graph_add_blocks(kiln_model *m, const graph_kv *kv, size_t n, int line);

/* Fails with KILN_ERR_MODEL: "<where>: <message>" (graph.c). */
kiln_status graph_fail_at(const kiln_model *m, int line, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Parameter and buffer counts as PyTorch counts them (batchnorm has a
 * num_batches_tracked buffer of one value; a tied weight counts once, with
 * the layer it belongs to). */
uint64_t graph_node_params(const graph_node *n);
uint64_t graph_node_buffers(const graph_node *n);

#endif /* KILN_GRAPH_H */
