/* Building the graph, layer by layer, with shape inference at each step
 * (see graph.h), and the public model API on top of it. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/graph.h"

kiln_status kiln_model_create(kiln_model **out)
{
    if (!out)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_model_create: out is required");
    *out = calloc(1, sizeof **out);
    return *out ? KILN_OK : error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_model_create: out of memory");
}

void kiln_model_free(kiln_model *m)
{
    if (!m)
        return;
    free(m->nodes);
    free(m->train);
    free(m->text);
    free(m);
}

const char *graph_where(const kiln_model *m, int line, size_t index, const char *kind,
                        char *buf, size_t size)
{
    if (m->file[0] && line > 0)
        snprintf(buf, size, "%s:%d [%s]", m->file, line, kind);
    else
        snprintf(buf, size, "layer %zu [%s]", index, kind);
    return buf;
}

#define fail_at graph_fail_at

kiln_status graph_fail_at(const kiln_model *m, int line, const char *kind, const char *fmt, ...)
{
    char where[320], text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    return error_set(KILN_ERR_MODEL, "%s: %s",
                     graph_where(m, line, m->count, kind, where, sizeof where), text);
}

/* ---- names and `from` ---------------------------------------------------- */

static int valid_name(const char *v)
{
    if (!*v || strlen(v) >= GRAPH_NAME_MAX || isdigit((unsigned char)*v))
        return 0;
    for (const char *p = v; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
            return 0;
    return 1;
}

static int find_node(const kiln_model *m, const char *name)
{
    for (size_t i = 0; i < m->count; i++)
        if (strcmp(m->nodes[i].name, name) == 0)
            return (int)i;
    return -2;
}

/* Resolves one name of `from`: an earlier layer's name or index, or
 * "input". */
static kiln_status resolve_from(const kiln_model *m, int line, const char *kind,
                                const char *name, const char *const *later, size_t n_later,
                                int *out)
{
    if (strcmp(name, "input") == 0) {
        *out = -1;
        return KILN_OK;
    }
    if ((*out = find_node(m, name)) >= 0)
        return KILN_OK;
    size_t len = strlen(name);
    for (size_t i = 0; i < n_later; i++)
        if (strncmp(later[i], name, len) == 0 && later[i][len] == '@')
            return fail_at(m, line, kind, "from = %s names a layer that comes later (line %s); "
                                          "a layer can only read layers above it",
                           name, later[i] + len + 1);
    return fail_at(m, line, kind, "from = %s names no layer above this one (layers are named "
                                  "by name = or by their index from 0; the model input is "
                                  "\"input\")", name);
}

/* Splits "a, b" into the node's inputs. */
static kiln_status read_from(const kiln_model *m, graph_node *n, int line, const char *value,
                             const char *const *later, size_t n_later)
{
    char copy[128];
    snprintf(copy, sizeof copy, "%s", value);
    int count = 0;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*tok))
            tok++;
        for (char *e = tok + strlen(tok); e > tok && isspace((unsigned char)e[-1]);)
            *--e = '\0';
        if (count == n->kind->n_inputs)
            return fail_at(m, line, n->kind->name, "from = %s names more than %d layer%s",
                           value, n->kind->n_inputs, n->kind->n_inputs > 1 ? "s" : "");
        kiln_status st = resolve_from(m, line, n->kind->name, tok, later, n_later,
                                      &n->inputs[count++]);
        if (st != KILN_OK)
            return st;
    }
    if (count != n->kind->n_inputs)
        return fail_at(m, line, n->kind->name, "from = %s: expected %d layer name%s", value,
                       n->kind->n_inputs, n->kind->n_inputs > 1 ? "s separated by commas" : "");
    return KILN_OK;
}

/* ---- keys ----------------------------------------------------------------- */

static int given(const graph_kv *kv, size_t count, const char *key)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(kv[i].key, key) == 0)
            return 1;
    return 0;
}

static kiln_status read_keys(kiln_model *m, graph_node *n, const graph_kv *kv, size_t count,
                             const char *const *later, size_t n_later)
{
    const char *kind = n->kind->name;
    for (size_t i = 0; i < count; i++) {
        int line = kv[i].line ? kv[i].line : n->line;
        for (size_t j = 0; j < i; j++)
            if (strcmp(kv[j].key, kv[i].key) == 0)
                return fail_at(m, line, kind, "key %s is given twice", kv[i].key);
        int common = strcmp(kv[i].key, "name") == 0 || strcmp(kv[i].key, "from") == 0 ||
                     (strcmp(kv[i].key, "tie") == 0 && op_get(n->kind->op)->tieable);
        const op_key *key = common ? NULL : layer_key(n->kind, kv[i].key);
        if (!common && !key)
            return fail_at(m, line, kind, "unknown key %s; [%s] takes: %s", kv[i].key, kind,
                           n->kind->keys);
        if (!kv[i].value || !*kv[i].value)
            return fail_at(m, line, kind, "key %s has no value", kv[i].key);
        kiln_status st = KILN_OK;
        if (strcmp(kv[i].key, "name") == 0) {
            if (!valid_name(kv[i].value))
                return fail_at(m, line, kind, "name = %s: expected letters, digits, _ - or ., "
                                              "not starting with a digit", kv[i].value);
            if (strcmp(kv[i].value, "input") == 0 || find_node(m, kv[i].value) >= 0)
                return fail_at(m, line, kind, "name = %s is already taken", kv[i].value);
            snprintf(n->name, sizeof n->name, "%s", kv[i].value);
            n->has_name = 1;
        } else if (strcmp(kv[i].key, "from") == 0) {
            st = read_from(m, n, line, kv[i].value, later, n_later);
        } else if (strcmp(kv[i].key, "tie") == 0) {
            n->tie = find_node(m, kv[i].value);
            if (n->tie < 0)
                st = fail_at(m, line, kind, "tie = %s names no layer above this one",
                             kv[i].value);
        } else {
            char buf[256];
            const char *expected = op_key_read(key, &n->attrs, kv[i].value, buf, sizeof buf);
            if (expected)
                st = fail_at(m, line, kind, "%s = %s: expected %s", kv[i].key, kv[i].value,
                             expected);
        }
        if (st != KILN_OK)
            return st;
    }
    if (given(kv, count, "std") && n->attrs.init == INIT_DEFAULT) /* std = implies normal */
        n->attrs.init = INIT_NORMAL;
    if (given(kv, count, "std") && n->attrs.init != INIT_NORMAL)
        return fail_at(m, n->line, kind, "std = is the deviation of init = normal, not of "
                                         "init = %s", init_name(n->attrs.init));
    return KILN_OK;
}

/* The keys the op's row marks required, and from where it reads two layers. */
static kiln_status check_required(const kiln_model *m, const graph_node *n, const graph_kv *kv,
                                  size_t count)
{
    const op_desc *d = op_get(n->kind->op);
    for (int i = 0; i < d->n_keys; i++)
        if (d->keys[i].required && layer_key(n->kind, d->keys[i].name) &&
            !given(kv, count, d->keys[i].name))
            return fail_at(m, n->line, n->kind->name, "the key %s is required",
                           d->keys[i].name);
    if (n->kind->n_inputs > 1 && !given(kv, count, "from"))
        return fail_at(m, n->line, n->kind->name, "the key from is required");
    return KILN_OK;
}

/* ---- shapes ----------------------------------------------------------------- */

static const kiln_shape *input_shape(const kiln_model *m, int index)
{
    return index < 0 ? &m->input : &m->nodes[index].out;
}

static kiln_status infer(kiln_model *m, graph_node *n)
{
    const char *kind = n->kind->name;
    kiln_shape in[OP_MAX_INPUTS];
    char buf[64];
    for (int i = 0; i < n->kind->n_inputs; i++)
        in[i] = shape_with_batch(input_shape(m, n->inputs[i]), 1);
    const op_desc *d = op_get(n->kind->op);
    if (d->in_ranks && !(d->in_ranks >> in[0].ndim & 1u))
        return fail_at(m, n->line, kind, "input is %s; %s",
                       shape_str(input_shape(m, n->inputs[0]), buf, sizeof buf), d->in_hint);
    if (op_infer(n->kind->op, &n->attrs, in, &n->shapes) != KILN_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", kiln_last_error());
        return fail_at(m, n->line, kind, "%s", msg);
    }
    n->out = shape_without_batch(&n->shapes.out);
    if (n->tie >= 0) {
        const graph_node *t = &m->nodes[n->tie];
        char want[64];
        if (t->shapes.n_params < 1 || !shape_eq(&t->shapes.param[0], &n->shapes.param[0]))
            return fail_at(m, n->line, kind, "tie = %s: its weight is %s; this layer's is %s",
                           t->name,
                           t->shapes.n_params ? shape_str(&t->shapes.param[0], want, sizeof want)
                                              : "missing",
                           shape_str(&n->shapes.param[0], buf, sizeof buf));
    }
    if (graph_node_params(n) > (1ull << 32) || shape_numel(&n->out) > (1ull << 31))
        return fail_at(m, n->line, kind, "the layer is too large (%llu parameters, output %s)",
                       (unsigned long long)graph_node_params(n),
                       shape_str(&n->out, buf, sizeof buf));
    return KILN_OK;
}

uint64_t graph_node_params(const graph_node *n)
{
    uint64_t total = 0;
    for (int i = n->tie >= 0 ? 1 : 0; i < n->shapes.n_params; i++)
        total += shape_numel(&n->shapes.param[i]);
    return total;
}

uint64_t graph_node_buffers(const graph_node *n)
{
    uint64_t total = op_get(n->kind->op)->counter ? 1 : 0; /* num_batches_tracked */
    for (int i = 0; i < n->shapes.n_buffers; i++)
        total += shape_numel(&n->shapes.buffer[i]);
    return total;
}

/* ---- adding layers ------------------------------------------------------------- */

/* [input] tokens = V, block = T: each sample is T token ids. */
static kiln_status add_token_input(kiln_model *m, const graph_kv *shape, const graph_kv *tokens,
                                   const graph_kv *block, int line)
{
    if (shape || !tokens || !block)
        return fail_at(m, line, "input", shape ? "shape cannot be given with tokens and block"
                                               : "a token input needs both tokens = (the "
                                                 "vocabulary size) and block = (tokens per "
                                                 "sample)");
    kiln_shape v, t;
    if (!layer_read_shape(tokens->value, &v) || v.ndim != 1 || v.d[0] > (1u << 24))
        return fail_at(m, tokens->line ? tokens->line : line, "input",
                       "tokens = %s: expected a vocabulary size from 1 to 16777216",
                       tokens->value);
    if (!layer_read_shape(block->value, &t) || t.ndim != 1)
        return fail_at(m, block->line ? block->line : line, "input",
                       "block = %s: expected a whole number from 1 to 1000000", block->value);
    m->vocab = v.d[0];
    m->input = t;
    m->input_line = line;
    return KILN_OK;
}

static kiln_status add_input(kiln_model *m, const graph_kv *kv, size_t n, int line)
{
    if (m->input.ndim)
        return fail_at(m, line, "input", "the model has an [input] already (line %d)",
                       m->input_line);
    if (m->count)
        return fail_at(m, line, "input", "[input] must come before every layer");
    const graph_kv *shape = NULL, *tokens = NULL, *block = NULL;
    for (size_t i = 0; i < n; i++) {
        const graph_kv **slot = strcmp(kv[i].key, "shape") == 0    ? &shape
                                : strcmp(kv[i].key, "tokens") == 0 ? &tokens
                                : strcmp(kv[i].key, "block") == 0  ? &block
                                                                   : NULL;
        if (!slot || *slot)
            return fail_at(m, kv[i].line ? kv[i].line : line, "input",
                           slot ? "key %s is given twice" : "unknown key %s; [input] takes: "
                                                            "shape, or tokens and block",
                           kv[i].key);
        *slot = &kv[i];
    }
    if (tokens || block)
        return add_token_input(m, shape, tokens, block, line);
    if (!shape)
        return fail_at(m, line, "input", "the key shape is required (or tokens and block for "
                                         "a sequence model)");
    if (!layer_read_shape(shape->value, &m->input))
        return fail_at(m, shape->line ? shape->line : line, "input",
                       "shape = %s: expected a per-sample shape such as 784 or 1x28x28 (1 to 3 "
                       "whole numbers from 1 to 1000000)", shape->value);
    m->input_line = line;
    return KILN_OK;
}

static kiln_status add_train(kiln_model *m, const graph_kv *kv, size_t n, int line)
{
    if (m->train)
        return fail_at(m, line, "train", "the model has a [train] section already");
    m->train = calloc(n ? n : 1, sizeof *m->train);
    if (!m->train)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "model: out of memory");
    for (size_t i = 0; i < n; i++) {
        if (strlen(kv[i].key) >= sizeof m->train[i].key ||
            strlen(kv[i].value) >= sizeof m->train[i].value)
            return fail_at(m, kv[i].line ? kv[i].line : line, "train", "%s: key or value too "
                                                                       "long", kv[i].key);
        snprintf(m->train[i].key, sizeof m->train[i].key, "%s", kv[i].key);
        snprintf(m->train[i].value, sizeof m->train[i].value, "%s", kv[i].value);
        m->train[i].line = kv[i].line ? kv[i].line : line;
    }
    m->train_count = n;
    return KILN_OK;
}

static kiln_status grow(kiln_model *m)
{
    if (m->count < m->capacity)
        return KILN_OK;
    size_t cap = m->capacity ? 2 * m->capacity : 16;
    if (cap > 100000)
        return error_set(KILN_ERR_MODEL, "model: more than 100000 layers");
    graph_node *nodes = realloc(m->nodes, cap * sizeof *nodes);
    if (!nodes)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "model: out of memory");
    m->nodes = nodes;
    m->capacity = cap;
    return KILN_OK;
}

kiln_status graph_add(kiln_model *m, const char *kind, const graph_kv *kv, size_t n, int line,
                      const char *const *later, size_t n_later)
{
    if (m->finished)
        return error_set(KILN_ERR_MODEL, "model: layers cannot be added once it is in use");
    for (size_t i = 0; i < n; i++)
        if (!graph_text_fits(kv[i].value))
            return fail_at(m, kv[i].line ? kv[i].line : line, kind, "%s: a value is one line",
                           kv[i].key);
    if (strcmp(kind, "train") == 0)
        return add_train(m, kv, n, line);
    const layer_kind *k = layer_find(kind);
    if (!k) {
        char names[512];
        return fail_at(m, line, kind, "unknown section; expected one of: %s, train",
                       layer_names(names, sizeof names));
    }
    kiln_status st;
    if (k->op == OP_COUNT && strcmp(kind, "input") == 0) {
        st = add_input(m, kv, n, line);
        return st == KILN_OK ? graph_record(m, kind, kv, n) : st;
    }
    if (!m->input.ndim)
        return fail_at(m, line, kind, "the model needs an [input] section (shape = ...) "
                                      "before its first layer");
    if (k->op == OP_COUNT) { /* the text keeps the section, not the layers it makes */
        m->quiet_text++;
        st = graph_add_blocks(m, kv, n, line);
        m->quiet_text--;
        return st == KILN_OK ? graph_record(m, kind, kv, n) : st;
    }
    st = grow(m);
    if (st != KILN_OK)
        return st;
    graph_node *node = &m->nodes[m->count];
    memset(node, 0, sizeof *node);
    node->kind = k;
    node->line = line;
    node->attrs = op_attrs_for(k->op, k->act);
    node->inputs[0] = (int)m->count - 1;
    node->tie = -1;
    if (k->op == OP_EMBEDDING) /* the vocabulary and block of a token input */
        node->attrs.rows = m->vocab;
    if (k->op == OP_POSITION)
        node->attrs.rows = m->vocab ? m->input.d[0] : 0;
    snprintf(node->name, sizeof node->name, "%zu", m->count);
    st = read_keys(m, node, kv, n, later, n_later);
    if (st == KILN_OK && (k->op == OP_EMBEDDING || k->op == OP_POSITION) && !node->attrs.rows)
        st = fail_at(m, line, kind, k->op == OP_EMBEDDING
                                        ? "the vocabulary size is unknown: give tokens = here "
                                          "or in [input]"
                                        : "the table size is unknown: give positions = here "
                                          "or block = in [input]");
    if (st == KILN_OK)
        st = check_required(m, node, kv, n);
    if (st == KILN_OK)
        st = infer(m, node);
    if (st == KILN_OK && !m->quiet_text)
        st = graph_record(m, kind, kv, n);
    if (st == KILN_OK)
        m->count++;
    return st;
}

/* ---- finishing ----------------------------------------------------------------- */

/* The first activation the output of node i reaches, looking through the
 * ops whose rows say see_through (normalization, dropout);
 * KILN_ACT_NONE when there is none. */
static kiln_act next_activation(const kiln_model *m, size_t i)
{
    for (size_t j = i + 1; j < m->count; j++) {
        const graph_node *n = &m->nodes[j];
        if (n->inputs[0] != (int)i && (n->kind->n_inputs < 2 || n->inputs[1] != (int)i))
            continue;
        if (n->kind->op == OP_ACTIVATION)
            return n->attrs.act;
        if (op_get(n->kind->op)->see_through)
            return next_activation(m, j);
        return KILN_ACT_NONE;
    }
    return KILN_ACT_NONE;
}

kiln_status graph_finish(kiln_model *m)
{
    if (m->finished)
        return KILN_OK;
    if (!m->input.ndim)
        return error_set(KILN_ERR_MODEL, "%s: the model has no [input] section",
                         m->file[0] ? m->file : "model");
    if (m->count == 0)
        return error_set(KILN_ERR_MODEL, "%s: the model has no layers",
                         m->file[0] ? m->file : "model");
    for (size_t i = 0; i < m->count; i++) {
        graph_node *n = &m->nodes[i];
        if (n->attrs.init == INIT_DEFAULT) /* from the activation it feeds */
            n->attrs.init = act_get(next_activation(m, i))->init;
    }
    m->finished = 1;
    return KILN_OK;
}

/* ---- the public model API ------------------------------------------------------- */

kiln_status kiln_model_add(kiln_model *m, const char *layer, const char *const *kv)
{
    if (!m || !layer)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_model_add: model and layer are "
                                                    "required");
    graph_kv pairs[32];
    size_t n = 0;
    for (; kv && kv[2 * n]; n++) {
        if (n == 32)
            return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_model_add: more than 32 keys");
        pairs[n] = (graph_kv){kv[2 * n], kv[2 * n + 1] ? kv[2 * n + 1] : "", 0};
    }
    return graph_add(m, layer, pairs, n, 0, NULL, 0);
}

size_t kiln_model_layer_count(const kiln_model *m)
{
    return m ? m->count : 0;
}

uint64_t kiln_model_param_count(const kiln_model *m)
{
    uint64_t total = 0;
    for (size_t i = 0; m && i < m->count; i++)
        total += graph_node_params(&m->nodes[i]);
    return total;
}

uint64_t kiln_model_buffer_count(const kiln_model *m)
{
    uint64_t total = 0;
    for (size_t i = 0; m && i < m->count; i++)
        total += graph_node_buffers(&m->nodes[i]);
    return total;
}

const char *kiln_model_train_setting(const kiln_model *m, const char *key)
{
    for (size_t i = 0; m && key && i < m->train_count; i++)
        if (strcmp(m->train[i].key, key) == 0)
            return m->train[i].value;
    return NULL;
}

size_t kiln_model_vocab(const kiln_model *m)
{
    return m ? m->vocab : 0;
}

size_t kiln_model_block(const kiln_model *m)
{
    return m && m->vocab ? m->input.d[0] : 0;
}
