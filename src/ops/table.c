/* The operator table, and the shape checks every call goes through. */
#include <stdio.h>

#include "ops/ops.h"

extern const op_desc op_linear_desc, op_conv2d_desc, op_maxpool_desc, op_avgpool_desc,
    op_flatten_desc, op_batchnorm_desc, op_layernorm_desc, op_dropout_desc,
    op_activation_desc, op_softmax_desc, op_add_desc, op_concat_desc, op_embedding_desc,
    op_position_desc, op_attention_desc;

static const op_desc *const table[] = {
    [OP_LINEAR] = &op_linear_desc,         [OP_CONV2D] = &op_conv2d_desc,
    [OP_MAXPOOL] = &op_maxpool_desc,       [OP_AVGPOOL] = &op_avgpool_desc,
    [OP_FLATTEN] = &op_flatten_desc,       [OP_BATCHNORM] = &op_batchnorm_desc,
    [OP_LAYERNORM] = &op_layernorm_desc,   [OP_DROPOUT] = &op_dropout_desc,
    [OP_ACTIVATION] = &op_activation_desc, [OP_SOFTMAX] = &op_softmax_desc,
    [OP_ADD] = &op_add_desc,               [OP_CONCAT] = &op_concat_desc,
    [OP_EMBEDDING] = &op_embedding_desc,   [OP_POSITION] = &op_position_desc,
    [OP_ATTENTION] = &op_attention_desc,
};

_Static_assert(sizeof table / sizeof table[0] == OP_COUNT, "one table row per op_kind");

op_attrs op_attrs_default(void)
{
    op_attrs a = {
        .bias = 1,
        .stride = 0, /* conv2d: 1; pools: the window size */
        .dilation = 1,
        .slope = 0.01f,
        .dim = -1,
        .momentum = 0.1f,
        .eps = 1e-5f,
        .norm_dims = 1,
        .heads = 1,
    };
    return a;
}

const op_desc *op_get(op_kind kind)
{
    return (unsigned)kind < OP_COUNT ? table[kind] : NULL;
}

kiln_status op_infer(op_kind kind, const op_attrs *a, const kiln_shape *in, op_shapes *s)
{
    const op_desc *d = op_get(kind);
    if (!d || !a || !in || !s)
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "op_infer: unknown op or missing argument");
    *s = (op_shapes){0};
    return d->infer(a, in, s);
}

/* Infers the shapes of a call from its inputs. */
static kiln_status call_shapes(op_kind kind, const op_args *c, op_shapes *s)
{
    const op_desc *d = op_get(kind);
    if (!d || !c || !c->ctx || !c->attrs)
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "op call: unknown op or missing argument");
    kiln_shape in[OP_MAX_INPUTS];
    for (int i = 0; i < d->n_inputs; i++) {
        if (!c->in[i])
            return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "%s: input %d is missing", d->name, i);
        in[i] = shape_of(c->in[i]);
    }
    kiln_status st = op_infer(kind, c->attrs, in, s);
    for (int i = 0; i < d->n_inputs && st == KILN_OK; i++)
        st = op_check_count(d->name, "an input", c->in[i]->numel);
    if (st == KILN_OK)
        st = op_check_count(d->name, "the output", shape_numel(&s->out));
    return st;
}

static kiln_status check_list(const char *op, const char *what, kiln_tensor *const *ts, int n,
                              const kiln_shape *shapes, int optional)
{
    for (int i = 0; i < n; i++) {
        if (optional && !ts[i])
            continue;
        char name[32];
        snprintf(name, sizeof name, "%s %d", what, i);
        kiln_status st = expect_shape(op, name, ts[i], &shapes[i]);
        if (st != KILN_OK)
            return st;
    }
    return KILN_OK;
}

kiln_status op_forward(op_kind kind, const op_args *c)
{
    op_shapes s;
    kiln_status st = call_shapes(kind, c, &s);
    const char *name = st == KILN_OK ? op_get(kind)->name : "";
    if (st == KILN_OK)
        st = expect_shape(name, "output", c->out, &s.out);
    if (st == KILN_OK)
        st = check_list(name, "parameter", c->param, s.n_params, s.param, 0);
    if (st == KILN_OK)
        st = check_list(name, "buffer", c->buffer, s.n_buffers, s.buffer, 0);
    if (st == KILN_OK)
        st = check_list(name, "saved tensor", c->saved, s.n_saved, s.saved, 0);
    return st == KILN_OK ? op_get(kind)->forward(c) : st;
}

kiln_status op_backward(op_kind kind, const op_args *c)
{
    op_shapes s;
    kiln_status st = call_shapes(kind, c, &s);
    const op_desc *d = st == KILN_OK ? op_get(kind) : NULL;
    if (st == KILN_OK)
        st = expect_shape(d->name, "output", c->out, &s.out);
    if (st == KILN_OK)
        st = expect_shape(d->name, "output gradient", c->dout, &s.out);
    if (st == KILN_OK)
        st = check_list(d->name, "parameter", c->param, s.n_params, s.param, 0);
    if (st == KILN_OK)
        st = check_list(d->name, "saved tensor", c->saved, s.n_saved, s.saved, 0);
    if (st == KILN_OK)
        st = check_list(d->name, "parameter gradient", c->dparam, s.n_params, s.param, 1);
    if (st == KILN_OK) {
        kiln_shape in[OP_MAX_INPUTS];
        for (int i = 0; i < d->n_inputs; i++)
            in[i] = shape_of(c->in[i]);
        st = check_list(d->name, "input gradient", c->din, d->n_inputs, in, 1);
    }
    return st == KILN_OK ? d->backward(c) : st;
}
