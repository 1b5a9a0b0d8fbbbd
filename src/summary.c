/* `kiln summary`: the layers of a model and their totals. */
#include <stdio.h>

#include "graph.h"

/* 5315 -> "5,315" */
static const char *grouped(uint64_t v, char *buf, size_t size)
{
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%llu", (unsigned long long)v), used = 0;
    for (int i = 0; i < n && used + 2 < (int)size; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            buf[used++] = ',';
        buf[used++] = digits[i];
    }
    buf[used] = '\0';
    return buf;
}

static const char *input_name(const kiln_model *m, int index)
{
    return index < 0 ? "input" : m->nodes[index].name;
}

kiln_status kiln_model_summary(kiln_model *m, FILE *out)
{
    if (!m || !out)
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_model_summary: model and stream are "
                                                    "required");
    kiln_status st = graph_finish(m);
    if (st != KILN_OK)
        return st;
    char shape[64], count[32];
    fprintf(out, "%-4s %-12s %-14s %-16s %-14s %12s\n", "#", "layer", "name", "from",
            "output", "parameters");
    fprintf(out, "%-4s %-12s %-14s %-16s %-14s %12s\n", "", "input", "", "",
            shape_str(&m->input, shape, sizeof shape), "");
    for (size_t i = 0; i < m->count; i++) {
        const graph_node *n = &m->nodes[i];
        char from[2 * GRAPH_NAME_MAX + 4];
        snprintf(from, sizeof from, "%s%s%s", input_name(m, n->inputs[0]),
                 n->kind->n_inputs > 1 ? ", " : "",
                 n->kind->n_inputs > 1 ? input_name(m, n->inputs[1]) : "");
        fprintf(out, "%-4zu %-12s %-14s %-16s %-14s %12s\n", i, n->kind->name,
                n->has_name ? n->name : "", from, shape_str(&n->out, shape, sizeof shape),
                grouped(graph_node_params(n), count, sizeof count));
    }
    fprintf(out, "trainable parameters: %s\n",
            grouped(kiln_model_param_count(m), count, sizeof count));
    fprintf(out, "buffer values: %s (batchnorm running statistics and batch counts)\n",
            grouped(kiln_model_buffer_count(m), count, sizeof count));
    return KILN_OK;
}
