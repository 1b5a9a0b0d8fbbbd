/* The ONNX form of every operator: one function per op_kind, in a table
 * that must have a row for each (an operator appended to op_kind breaks
 * the build until it has a row here; NULL for none, and such layers are
 * then refused, named).
 * Each writes standard opset-17 nodes of the layer in eval mode, with the
 * state_dict's tensors as initializers under their own names. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "export/export.h"

kiln_status export_refuse(const export_layer *l, const char *fmt, ...)
{
    char why[256], where[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    graph_where(l->m, l->node->line, l->index, l->node->kind->name, where, sizeof where);
    return error_set(KILN_ERR_UNSUPPORTED, "kiln_net_export_onnx: %s%s%s%s: %s; it has no "
                                           "ONNX form, so nothing was written",
                     where, l->node->has_name ? " (" : "",
                     l->node->has_name ? l->node->name : "", l->node->has_name ? ")" : "", why);
}

static kiln_status done(export_model *x, const export_layer *l, const char **value)
{
    *value = l->out;
    return export_status(x);
}

/* A name for a value inside a layer's form: "<layer>/<what>" (layer names
 * have no '/', so these never meet another layer's names). */
static const char *inner(export_model *x, const export_layer *l, const char *what)
{
    return export_name(x, "%s/%s", l->node->name, what);
}

/* ---- linear, conv2d, pools, flatten -------------------------------------------- */

/* y = x W^T + b: Gemm on (N, F); on (N, ..., F) MatMul by the transposed
 * weight (a Transpose that runtimes fold), then Add. */
static kiln_status linear_form(export_model *x, const export_layer *l, const char **value)
{
    const char *w = export_weight(x, l->node, "weight"), *b = export_optional(x, l->node, "bias");
    if (l->in_shape[0].ndim == 1) {
        Onnx__NodeProto *n = export_node(x, "Gemm", l->out, b ? 3 : 2, l->in[0], w, b);
        export_attr_int(x, n, "transB", 1);
        return done(x, l, value);
    }
    const char *wt = inner(x, l, "weight_t"), *product = b ? inner(x, l, "matmul") : l->out;
    Onnx__NodeProto *t = export_node(x, "Transpose", wt, 1, w);
    export_attr_list(x, t, "perm", (const int64_t[]){1, 0}, 2);
    export_node(x, "MatMul", product, 2, l->in[0], wt);
    if (b)
        export_node(x, "Add", l->out, 2, product, b);
    return done(x, l, value);
}

static kiln_status conv2d_form(export_model *x, const export_layer *l, const char **value)
{
    const op_attrs *a = &l->node->attrs;
    const char *w = export_weight(x, l->node, "weight"),
               *b = export_optional(x, l->node, "bias");
    Onnx__NodeProto *n = export_node(x, "Conv", l->out, b ? 3 : 2, l->in[0], w, b);
    export_attr_ints(x, n, "kernel_shape", (int64_t)a->kernel, 2);
    export_attr_ints(x, n, "strides", a->stride ? (int64_t)a->stride : 1, 2);
    export_attr_ints(x, n, "pads", (int64_t)a->pad, 4);
    export_attr_ints(x, n, "dilations", a->dilation ? (int64_t)a->dilation : 1, 2);
    return done(x, l, value);
}

/* Square windows, stride by default the window; avgpool counts the
 * padding, as count_include_pad=True. */
static kiln_status pool_form(export_model *x, const export_layer *l, const char **value,
                             const char *op)
{
    const op_attrs *a = &l->node->attrs;
    Onnx__NodeProto *n = export_node(x, op, l->out, 1, l->in[0]);
    export_attr_ints(x, n, "kernel_shape", (int64_t)a->kernel, 2);
    export_attr_ints(x, n, "strides", (int64_t)(a->stride ? a->stride : a->kernel), 2);
    export_attr_ints(x, n, "pads", (int64_t)a->pad, 4);
    if (l->node->kind->op == OP_AVGPOOL)
        export_attr_int(x, n, "count_include_pad", 1);
    return done(x, l, value);
}

static kiln_status maxpool_form(export_model *x, const export_layer *l, const char **value)
{
    return pool_form(x, l, value, "MaxPool");
}

static kiln_status avgpool_form(export_model *x, const export_layer *l, const char **value)
{
    return pool_form(x, l, value, "AveragePool");
}

static kiln_status flatten_form(export_model *x, const export_layer *l, const char **value)
{
    export_attr_int(x, export_node(x, "Flatten", l->out, 1, l->in[0]), "axis", 1);
    return done(x, l, value);
}

/* ---- normalization, dropout ------------------------------------------------------- */

/* Eval mode: the running statistics, as BatchNormalization's inference. */
static kiln_status batchnorm_form(export_model *x, const export_layer *l, const char **value)
{
    const char *w = export_weight(x, l->node, "weight"),
               *b = export_weight(x, l->node, "bias");
    const char *mean = export_weight(x, l->node, "running_mean"),
               *var = export_weight(x, l->node, "running_var");
    Onnx__NodeProto *n = export_node(x, "BatchNormalization", l->out, 5, l->in[0], w, b, mean,
                                     var);
    export_attr_float(x, n, "epsilon", l->node->attrs.eps);
    return done(x, l, value);
}

static kiln_status layernorm_form(export_model *x, const export_layer *l, const char **value)
{
    int dims = l->node->attrs.norm_dims;
    if (dims > l->in_shape[0].ndim)
        return export_refuse(l, "dims = %d normalizes across the samples of a batch (the input "
                                "has %d dimension%s per sample)",
                             dims, l->in_shape[0].ndim, l->in_shape[0].ndim == 1 ? "" : "s");
    const char *w = export_weight(x, l->node, "weight"),
               *b = export_optional(x, l->node, "bias");
    Onnx__NodeProto *n = export_node(x, "LayerNormalization", l->out, b ? 3 : 2, l->in[0], w,
                                     b);
    export_attr_int(x, n, "axis", -dims);
    export_attr_float(x, n, "epsilon", l->node->attrs.eps);
    return done(x, l, value);
}

/* Nothing in eval mode: the layer's value is its input's. */
static kiln_status dropout_form(export_model *x, const export_layer *l, const char **value)
{
    *value = l->in[0];
    return export_status(x);
}

/* ---- activations ----------------------------------------------------------------- */

/* x Φ(x) = x (1 + erf(x / √2)) / 2, as PyTorch's exporter writes it below
 * opset 20 (where Gelu arrives). */
static void gelu_erf(export_model *x, const export_layer *l)
{
    const char *in = l->in[0], *scaled = inner(x, l, "div"), *erf = inner(x, l, "erf");
    const char *plus = inner(x, l, "add"), *times = inner(x, l, "mul");
    export_node(x, "Div", scaled, 2, in, export_scalar(x, inner(x, l, "sqrt2"), sqrtf(2.0f)));
    export_node(x, "Erf", erf, 1, scaled);
    export_node(x, "Add", plus, 2, erf, export_scalar(x, inner(x, l, "one"), 1.0f));
    export_node(x, "Mul", times, 2, in, plus);
    export_node(x, "Mul", l->out, 2, times, export_scalar(x, inner(x, l, "half"), 0.5f));
}

/* PyTorch's approximate='tanh': x (1 + tanh(√(2/π) (x + 0.044715 x³))) / 2. */
static void gelu_tanh(export_model *x, const export_layer *l)
{
    const char *in = l->in[0], *sq = inner(x, l, "square"), *cube = inner(x, l, "cube");
    const char *c3 = inner(x, l, "cube_scaled"), *sum = inner(x, l, "inner"),
               *arg = inner(x, l, "arg"), *th = inner(x, l, "tanh"),
               *plus = inner(x, l, "add"), *times = inner(x, l, "mul");
    export_node(x, "Mul", sq, 2, in, in);
    export_node(x, "Mul", cube, 2, sq, in);
    export_node(x, "Mul", c3, 2, cube, export_scalar(x, inner(x, l, "k"), 0.044715f));
    export_node(x, "Add", sum, 2, in, c3);
    export_node(x, "Mul", arg, 2, sum,
                export_scalar(x, inner(x, l, "sqrt_2_pi"), 0.7978845608f));
    export_node(x, "Tanh", th, 1, arg);
    export_node(x, "Add", plus, 2, th, export_scalar(x, inner(x, l, "one"), 1.0f));
    export_node(x, "Mul", times, 2, in, plus);
    export_node(x, "Mul", l->out, 2, times, export_scalar(x, inner(x, l, "half"), 0.5f));
}

static kiln_status activation_form(export_model *x, const export_layer *l, const char **value)
{
    static const char *const ops[] = {
        [KILN_ACT_RELU] = "Relu", [KILN_ACT_LEAKY_RELU] = "LeakyRelu",
        [KILN_ACT_SIGMOID] = "Sigmoid", [KILN_ACT_TANH] = "Tanh",
    };
    kiln_act act = l->node->attrs.act;
    if (act == KILN_ACT_GELU)
        gelu_erf(x, l);
    else if (act == KILN_ACT_GELU_TANH)
        gelu_tanh(x, l);
    else if ((size_t)act < sizeof ops / sizeof ops[0] && ops[act]) {
        Onnx__NodeProto *n = export_node(x, ops[act], l->out, 1, l->in[0]);
        if (act == KILN_ACT_LEAKY_RELU)
            export_attr_float(x, n, "alpha", l->node->attrs.slope);
    } else
        return export_refuse(l, "activation %d is not known to the exporter", (int)act);
    return done(x, l, value);
}

static kiln_status softmax_form(export_model *x, const export_layer *l, const char **value)
{
    export_attr_int(x, export_node(x, "Softmax", l->out, 1, l->in[0]), "axis",
                    l->node->attrs.dim);
    return done(x, l, value);
}

/* ---- joins ------------------------------------------------------------------------ */

static kiln_status add_form(export_model *x, const export_layer *l, const char **value)
{
    export_node(x, "Add", l->out, 2, l->in[0], l->in[1]);
    return done(x, l, value);
}

/* Along channels (dim 1), as kiln's concat. */
static kiln_status concat_form(export_model *x, const export_layer *l, const char **value)
{
    export_attr_int(x, export_node(x, "Concat", l->out, 2, l->in[0], l->in[1]), "axis", 1);
    return done(x, l, value);
}

/* ---- sequences ------------------------------------------------------------------------ */

/* Token ids (floats, as kiln takes them) -> Gather's int64 indices into
 * the (V, C) table: (N, T) -> (N, T, C). */
static kiln_status embedding_form(export_model *x, const export_layer *l, const char **value)
{
    const char *w = export_weight(x, l->node, "weight"), *ids = inner(x, l, "ids");
    export_attr_int(x, export_node(x, "Cast", ids, 1, l->in[0]), "to",
                    ONNX__TENSOR_PROTO__DATA_TYPE__INT64);
    export_attr_int(x, export_node(x, "Gather", l->out, 2, w, ids), "axis", 0);
    return done(x, l, value);
}

/* x (N, T, C) + the first T rows of the (P, C) position table. */
static kiln_status position_form(export_model *x, const export_layer *l, const char **value)
{
    const char *w = export_weight(x, l->node, "weight"), *rows = w;
    int64_t t = (int64_t)l->in_shape[0].d[0], zero = 0;
    if ((size_t)t != l->node->attrs.rows) {
        rows = inner(x, l, "rows");
        export_node(x, "Slice", rows, 4, w, export_ints(x, inner(x, l, "start"), &zero, 1),
                    export_ints(x, inner(x, l, "end"), &t, 1),
                    export_ints(x, inner(x, l, "axis"), &zero, 1));
    }
    export_node(x, "Add", l->out, 2, l->in[0], rows);
    return done(x, l, value);
}

/* Columns [from, from + width) of qkv (N, T, 3C) as heads: (N, H, T, D),
 * or (N, H, D, T) with key_order (k, ready for q kᵀ). */
static const char *head_split(export_model *x, const export_layer *l, const char *what,
                              int64_t from, int64_t width, int key_order)
{
    int64_t t = (int64_t)l->in_shape[0].d[0], h = (int64_t)l->node->attrs.heads;
    int64_t to = from + width, axis = 2, shape[4] = {0, t, h, width / h};
    const char *layer = l->node->name;
    const char *part = export_name(x, "%s/%s", layer, what);
    const char *split = export_name(x, "%s/%s_heads", layer, what);
    const char *heads = export_name(x, "%s/%s_t", layer, what);
    export_node(x, "Slice", part, 4, l->in[0],
                export_ints(x, export_name(x, "%s/%s_start", layer, what), &from, 1),
                export_ints(x, export_name(x, "%s/%s_end", layer, what), &to, 1),
                export_ints(x, export_name(x, "%s/%s_axis", layer, what), &axis, 1));
    export_node(x, "Reshape", split, 2, part,
                export_ints(x, export_name(x, "%s/%s_shape", layer, what), shape, 4));
    export_attr_list(x, export_node(x, "Transpose", heads, 1, split), "perm",
                     key_order ? (const int64_t[]){0, 2, 3, 1} : (const int64_t[]){0, 2, 1, 3},
                     4);
    return heads;
}

/* The causal mask of t positions: 0 where a query may see a key (j <= i),
 * -inf after it. NULL after a failure. */
static const char *causal_mask(export_model *x, const export_layer *l, size_t t)
{
    float *mask = t <= SIZE_MAX / sizeof *mask / t ? malloc(t * t * sizeof *mask) : NULL;
    if (!mask) {
        error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_net_export_onnx: out of host memory");
        return NULL;
    }
    for (size_t i = 0; i < t; i++)
        for (size_t j = 0; j < t; j++)
            mask[i * t + j] = j <= i ? 0.0f : -INFINITY;
    const char *name = export_constant(x, inner(x, l, "causal_mask"), mask, t * t, 2,
                                       (const int64_t[]){(int64_t)t, (int64_t)t});
    free(mask);
    return name;
}

/* Causal self-attention on a fused projection, as MatMul and Softmax (the
 * Attention operator arrives in opset 23): qkv (N, T, 3C) -> (N, T, C),
 * softmax(q kᵀ / √D + mask) v per head of D = C / H channels. */
static kiln_status attention_form(export_model *x, const export_layer *l, const char **value)
{
    size_t t = l->in_shape[0].d[0], c = l->in_shape[0].d[1] / 3;
    size_t d = c / l->node->attrs.heads;
    const char *q = head_split(x, l, "q", 0, (int64_t)c, 0);
    const char *k = head_split(x, l, "k", (int64_t)c, (int64_t)c, 1);
    const char *v = head_split(x, l, "v", 2 * (int64_t)c, (int64_t)c, 0);
    const char *mask = causal_mask(x, l, t);
    if (!mask && export_status(x) == KILN_OK)
        return KILN_ERR_OUT_OF_MEMORY;
    const char *scores = inner(x, l, "scores"), *scaled = inner(x, l, "scaled"),
               *masked = inner(x, l, "masked"), *probs = inner(x, l, "probs"),
               *mixed = inner(x, l, "mixed"), *merged = inner(x, l, "merged");
    export_node(x, "MatMul", scores, 2, q, k);
    export_node(x, "Mul", scaled, 2, scores,
                export_scalar(x, inner(x, l, "scale"), (float)(1.0 / sqrt((double)d))));
    export_node(x, "Add", masked, 2, scaled, mask);
    export_attr_int(x, export_node(x, "Softmax", probs, 1, masked), "axis", -1);
    export_node(x, "MatMul", mixed, 2, probs, v);
    export_attr_list(x, export_node(x, "Transpose", merged, 1, mixed), "perm",
                     (const int64_t[]){0, 2, 1, 3}, 4);
    export_node(x, "Reshape", l->out, 2, merged,
                export_ints(x, inner(x, l, "shape"),
                            (const int64_t[]){0, (int64_t)t, (int64_t)c}, 3));
    return done(x, l, value);
}

/* ---- the table ---------------------------------------------------------------------- */

static const export_form forms[] = {
    [OP_LINEAR] = linear_form,         [OP_CONV2D] = conv2d_form,
    [OP_MAXPOOL] = maxpool_form,       [OP_AVGPOOL] = avgpool_form,
    [OP_FLATTEN] = flatten_form,       [OP_BATCHNORM] = batchnorm_form,
    [OP_LAYERNORM] = layernorm_form,   [OP_DROPOUT] = dropout_form,
    [OP_ACTIVATION] = activation_form, [OP_SOFTMAX] = softmax_form,
    [OP_ADD] = add_form,               [OP_CONCAT] = concat_form,
    [OP_EMBEDDING] = embedding_form,   [OP_POSITION] = position_form,
    [OP_ATTENTION] = attention_form,
};

_Static_assert(sizeof forms / sizeof forms[0] == OP_COUNT,
               "one ONNX form (or NULL) per op_kind");

export_form export_form_of(op_kind op)
{
    return (unsigned)op < OP_COUNT ? forms[op] : NULL;
}
