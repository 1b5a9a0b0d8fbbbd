/* kiln_net_export_onnx: the network's graph in eval mode, layer by layer
 * through the forms of forms.c, between the input normalization and the
 * prediction head, so that the ONNX model maps raw inputs to what `kiln
 * predict` prints. The whole model is built in memory first: a refused
 * layer or a failed read leaves no file behind. */
#include <stdlib.h>
#include <string.h>

#include "export/export.h"

/* Whether a layer's name is taken by a tensor of the graph: the input,
 * the output, or a state_dict name ("fc.weight" is a possible layer name). */
static int name_taken(const kiln_net *net, const char *name)
{
    if (strcmp(name, "input") == 0 || strcmp(name, "output") == 0)
        return 1;
    for (size_t i = 0; i < net->n_entries; i++)
        if (strcmp(net->entries[i].name, name) == 0)
            return 1;
    return 0;
}

/* The value name of layer i: its own name, unless a tensor has it. */
static const char *layer_value(export_model *x, const kiln_net *net, size_t i)
{
    const char *name = net->m->nodes[i].name;
    return name_taken(net, name) ? export_name(x, "%s/out", name) : name;
}

/* (x - mean) / std with the network's normalization, as kiln_net_forward
 * applies it: one pair for every value, one per channel of an image, or
 * one per input value. Returns the name of the normalized input. */
static const char *add_normalization(export_model *x, const kiln_net *net)
{
    size_t n = net->norm_count;
    int identity = 1;
    for (size_t i = 0; i < n; i++)
        identity &= net->mean[i] == 0.0f && net->std[i] == 1.0f;
    if (identity)
        return "input";
    const kiln_shape *in = &net->m->input;
    int64_t dims[KILN_MAX_DIMS] = {0};
    int ndim = 0;
    if (n == shape_numel(in) && n > 1) {
        for (ndim = 0; ndim < in->ndim; ndim++)
            dims[ndim] = (int64_t)in->d[ndim];
    } else if (n > 1) { /* per channel of (C, H, W) */
        ndim = in->ndim;
        dims[0] = (int64_t)n;
        for (int d = 1; d < ndim; d++)
            dims[d] = 1;
    }
    const char *mean = export_constant(x, "input/mean", net->mean, n, ndim, dims);
    const char *std = export_constant(x, "input/std", net->std, n, ndim, dims);
    export_node(x, "Sub", "input/centered", 2, "input", mean);
    export_node(x, "Div", "input/normalized", 2, "input/centered", std);
    return "input/normalized";
}

/* Whether kiln predict turns the outputs into probabilities: a classifier
 * trained with cross_entropy on logits, without a softmax layer of its own
 * (as PyTorch's models are). */
static int logits_classifier(const kiln_net *net)
{
    return net->c.loss == LOSS_CROSS_ENTROPY && kiln_net_head(net) == KILN_HEAD_NONE &&
           kiln_net_output_size(net) > 1;
}

/* Every layer through its form; values[i] gets the name of layer i's value. */
static kiln_status add_layers(export_model *x, const kiln_net *net, const char *input,
                              int head, const char **values)
{
    const kiln_model *m = net->m;
    for (size_t i = 0; i < m->count; i++) {
        const graph_node *node = &m->nodes[i];
        export_layer l = {.m = m, .index = i, .node = node};
        for (int k = 0; k < node->kind->n_inputs; k++) {
            int from = node->inputs[k];
            l.in[k] = from < 0 ? input : values[from];
            l.in_shape[k] = from < 0 ? m->input : m->nodes[from].out;
        }
        l.out = i + 1 == m->count && !head ? "output" : layer_value(x, net, i);
        export_form form = export_form_of(node->kind->op);
        kiln_status st = form ? form(x, &l, &values[i])
                              : export_refuse(&l, "kiln has no ONNX form for %s layers",
                                              node->kind->name);
        if (st != KILN_OK)
            return st;
    }
    return export_status(x);
}

/* The file's graph name: the model file's name without its folder and
 * extension, or "kiln" for a model built through the C API. */
static const char *graph_name(export_model *x, const kiln_model *m)
{
    const char *base = strrchr(m->file, '/');
    base = base ? base + 1 : m->file;
    size_t len = strcspn(base, ".");
    return len ? export_name(x, "%.*s", (int)len, base) : "kiln";
}

static kiln_status build_and_write(export_model *x, const kiln_net *net, const char *path)
{
    const kiln_model *m = net->m;
    const char **values = calloc(m->count, sizeof *values);
    if (!values)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_net_export_onnx: out of host memory");
    int head = logits_classifier(net);
    const char *input = add_normalization(x, net);
    kiln_status st = add_layers(x, net, input, head, values);
    const char *last = st == KILN_OK ? values[m->count - 1] : NULL;
    if (st == KILN_OK && head)
        export_attr_int(x, export_node(x, "Softmax", "output", 1, last), "axis", -1);
    else if (st == KILN_OK && strcmp(last, "output") != 0) /* a trailing dropout */
        export_node(x, "Identity", "output", 1, last);
    if (st == KILN_OK)
        st = export_write(x, path, graph_name(x, m), &m->input, &m->nodes[m->count - 1].out);
    free(values);
    return st;
}

kiln_status kiln_net_export_onnx(kiln_net *net, const char *path)
{
    kiln_status st = net_check(net, "kiln_net_export_onnx");
    if (st == KILN_OK && (!path || !*path))
        st = error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_net_export_onnx: the path is %s",
                       path ? "empty" : "NULL");
    export_model *x = NULL;
    if (st == KILN_OK)
        st = export_begin(net, &x);
    if (st == KILN_OK)
        st = build_and_write(x, net, path);
    export_free(x);
    return st;
}
