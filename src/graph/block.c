/* [transformer_block]: nanoGPT's Block, written once and repeated:
 *   x = x + attn.c_proj(attention(attn.c_attn(ln_1(x))))
 *   x = x + mlp.c_proj(gelu(mlp.c_fc(ln_2(x))))
 * added as the layers it is made of, named as nanoGPT's state_dict names
 * them (transformer.h.N.ln_1, .attn.c_attn, .attn.c_proj, .ln_2,
 * .mlp.c_fc, .mlp.c_proj), so checkpoints move both ways. Weights start as
 * nanoGPT's: N(0, 0.02²), and the c_proj layers N(0, (0.02 / sqrt(2 L))²)
 * for L = count blocks; biases zero. dropout adds nanoGPT's residual
 * dropouts after each c_proj (attention dropout is not implemented). */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "graph/graph.h"

typedef struct {
    size_t count, heads;
    char bias[8];
    char dropout[32];
    char proj_std[32];
} block_keys;

static int probability(const char *v)
{
    char *end;
    double p = strtod(v, &end);
    return *v && !*end && p >= 0 && p < 1;
}

static kiln_status read_block_keys(kiln_model *m, const graph_kv *kv, size_t n, int line,
                                   block_keys *b)
{
    *b = (block_keys){.count = 1};
    snprintf(b->bias, sizeof b->bias, "true");
    snprintf(b->dropout, sizeof b->dropout, "0");
    for (size_t i = 0; i < n; i++) {
        const char *k = kv[i].key, *v = kv[i].value;
        int at = kv[i].line ? kv[i].line : line;
        kiln_shape s;
        int whole = layer_read_shape(v, &s) && s.ndim == 1;
        if (strcmp(k, "count") == 0 && whole && s.d[0] <= 1000)
            b->count = s.d[0];
        else if (strcmp(k, "heads") == 0 && whole && s.d[0] <= 4096)
            b->heads = s.d[0];
        else if (strcmp(k, "bias") == 0 && (!strcmp(v, "true") || !strcmp(v, "false")))
            snprintf(b->bias, sizeof b->bias, "%s", v);
        else if (strcmp(k, "dropout") == 0 && strlen(v) < sizeof b->dropout && probability(v))
            snprintf(b->dropout, sizeof b->dropout, "%s", v);
        else if (!strcmp(k, "dropout"))
            return graph_fail_at(m, at, "transformer_block", "dropout = %s: expected a "
                                 "probability from 0 up to (not including) 1", v);
        else if (!strcmp(k, "count") || !strcmp(k, "heads") || !strcmp(k, "bias"))
            return graph_fail_at(m, at, "transformer_block", "%s = %s: expected %s", k, v,
                                 strcmp(k, "bias") == 0 ? "true or false"
                                 : strcmp(k, "count") == 0 ? "a whole number from 1 to 1000"
                                                           : "a whole number from 1 to 4096");
        else
            return graph_fail_at(m, at, "transformer_block", "unknown key %s; "
                                 "[transformer_block] takes: count heads bias dropout", k);
    }
    if (!b->heads)
        return graph_fail_at(m, line, "transformer_block", "the key heads is required");
    snprintf(b->proj_std, sizeof b->proj_std, "%.9g", 0.02 / sqrt(2.0 * (double)b->count));
    return KILN_OK;
}

/* One layer of a block: kind, then key, value pairs ending in NULL. */
static kiln_status add_layer(kiln_model *m, int line, const char *kind, ...)
{
    graph_kv kv[8];
    size_t n = 0;
    va_list ap;
    va_start(ap, kind);
    for (const char *k; n < 8 && (k = va_arg(ap, const char *));) {
        const char *v = va_arg(ap, const char *);
        kv[n++] = (graph_kv){k, v, line};
    }
    va_end(ap);
    return graph_add(m, kind, kv, n, line, NULL, 0);
}

static kiln_status add_block(kiln_model *m, const block_keys *b, int line)
{
    if (m->count == 0 || m->nodes[m->count - 1].out.ndim != 2)
        return graph_fail_at(m, line, "transformer_block", "expected (time, channels) from "
                                                           "the layer above (an embedding)");
    size_t C = m->nodes[m->count - 1].out.d[1];
    char p[32], x[2 * GRAPH_NAME_MAX], name[2 * GRAPH_NAME_MAX], from[6 * GRAPH_NAME_MAX];
    char c1[24], c3[24], c4[24], std[16];
    snprintf(p, sizeof p, "transformer.h.%zu", m->blocks);
    snprintf(x, sizeof x, "%s", m->nodes[m->count - 1].name);
    snprintf(c1, sizeof c1, "%zu", C);
    snprintf(c3, sizeof c3, "%zu", 3 * C);
    snprintf(c4, sizeof c4, "%zu", 4 * C);
    snprintf(std, sizeof std, "%zu", b->heads);
    int drop = strtod(b->dropout, NULL) != 0.0;
#define NAME(suffix) (snprintf(name, sizeof name, "%s.%s", p, suffix), name)
    kiln_status st = add_layer(m, line, "layernorm", "name", NAME("ln_1"), "bias", b->bias, NULL);
    if (st == KILN_OK)
        st = add_layer(m, line, "linear", "name", NAME("attn.c_attn"), "out", c3, "bias",
                       b->bias, "std", "0.02", NULL);
    if (st == KILN_OK)
        st = add_layer(m, line, "attention", "name", NAME("attn"), "heads", std, NULL);
    if (st == KILN_OK)
        st = add_layer(m, line, "linear", "name", NAME("attn.c_proj"), "out", c1, "bias",
                       b->bias, "std", b->proj_std, NULL);
    if (st == KILN_OK && drop)
        st = add_layer(m, line, "dropout", "name", NAME("attn.resid_dropout"), "p", b->dropout,
                       NULL);
    snprintf(from, sizeof from, "%s, %s", x, m->nodes[m->count - 1].name);
    if (st == KILN_OK)
        st = add_layer(m, line, "add", "name", NAME("residual_1"), "from", from, NULL);
    snprintf(x, sizeof x, "%s", name);
    if (st == KILN_OK)
        st = add_layer(m, line, "layernorm", "name", NAME("ln_2"), "bias", b->bias, NULL);
    if (st == KILN_OK)
        st = add_layer(m, line, "linear", "name", NAME("mlp.c_fc"), "out", c4, "bias", b->bias,
                       "std", "0.02", NULL);
    if (st == KILN_OK)
        st = add_layer(m, line, "gelu", "name", NAME("mlp.gelu"), NULL);
    if (st == KILN_OK)
        st = add_layer(m, line, "linear", "name", NAME("mlp.c_proj"), "out", c1, "bias",
                       b->bias, "std", b->proj_std, NULL);
    if (st == KILN_OK && drop)
        st = add_layer(m, line, "dropout", "name", NAME("mlp.dropout"), "p", b->dropout, NULL);
    snprintf(from, sizeof from, "%s, %s", x, m->nodes[m->count - 1].name);
    if (st == KILN_OK)
        st = add_layer(m, line, "add", "name", NAME("residual_2"), "from", from, NULL);
#undef NAME
    return st;
}

kiln_status graph_add_blocks(kiln_model *m, const graph_kv *kv, size_t n, int line)
{
    block_keys b;
    kiln_status st = read_block_keys(m, kv, n, line, &b);
    size_t first = m->count, blocks = m->blocks;
    for (size_t i = 0; i < b.count && st == KILN_OK; i++, m->blocks++)
        st = add_block(m, &b, line);
    if (st != KILN_OK) { /* a failed section adds nothing */
        m->count = first;
        m->blocks = blocks;
    }
    return st;
}
