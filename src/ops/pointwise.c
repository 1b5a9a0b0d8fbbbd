/* Activations, softmax and residual add. */
#include "ops/ops.h"

/* ---- activation: y = act(x) -------------------------------------------- */

static kiln_status same_shape(const op_attrs *a, const kiln_shape *in, op_shapes *s)
{
    (void)a;
    s->out = in[0];
    return KILN_OK;
}

static kiln_status act_forward(const op_args *c)
{
    char opts[32];
    cl_kernel k;
    kiln_status st = kiln_kernel_get(c->ctx, "act.cl",
                                     act_options(c->attrs->act, opts, sizeof opts),
                                     "act_forward", &k);
    if (st != KILN_OK)
        return st;
    cl_uint n = c->out->numel;
    return kiln_launch_1d(c->ctx, k, "act_forward", n, pointwise_group_size(c->ctx), 4, KARG(c->in[0]->buf),
                          KARG(c->out->buf), KARG(n), KARG(c->attrs->slope));
}

kiln_status op_act_backward(kiln_ctx *ctx, kiln_act act, float slope, cl_mem x, cl_mem y,
                            cl_mem dy, cl_mem dx, size_t n)
{
    char opts[32];
    cl_kernel k;
    kiln_status st = kiln_kernel_get(ctx, "act.cl", act_options(act, opts, sizeof opts),
                                     "act_backward", &k);
    if (st != KILN_OK)
        return st;
    cl_uint count = n;
    return kiln_launch_1d(ctx, k, "act_backward", n, pointwise_group_size(ctx), 6, KARG(x), KARG(y), KARG(dy),
                          KARG(dx), KARG(count), KARG(slope));
}

static kiln_status act_backward(const op_args *c)
{
    if (!c->din[0])
        return KILN_OK;
    return op_act_backward(c->ctx, c->attrs->act, c->attrs->slope, c->in[0]->buf,
                           c->out->buf, c->dout->buf, c->din[0]->buf, c->out->numel);
}

/* ---- softmax along attrs->dim -------------------------------------------- */

/* Views a shape as (outer, n, inner) around dimension dim. */
static void split_at(const kiln_shape *s, int dim, cl_uint *outer, cl_uint *n,
                     cl_uint *inner)
{
    *outer = *inner = 1;
    for (int i = 0; i < dim; i++)
        *outer *= s->d[i];
    *n = s->d[dim];
    for (int i = dim + 1; i < s->ndim; i++)
        *inner *= s->d[i];
}

static int softmax_dim(const op_attrs *a, int ndim)
{
    return a->dim < 0 ? ndim + a->dim : a->dim;
}

static kiln_status softmax_infer(const op_attrs *a, const kiln_shape *in, op_shapes *s)
{
    int dim = softmax_dim(a, in[0].ndim);
    if (dim < 0 || dim >= in[0].ndim)
        return kiln_fail(KILN_ERR_SHAPE, "softmax: dim %d is outside the %d dimensions of its "
                                         "input", a->dim, in[0].ndim);
    s->out = in[0];
    return KILN_OK;
}

static kiln_status softmax_launch(const op_args *c, const char *name, int backward)
{
    cl_kernel k;
    kiln_status st = kiln_kernel_get(c->ctx, "softmax.cl", "", name, &k);
    if (st != KILN_OK)
        return st;
    kiln_shape s = shape_of(c->out);
    cl_uint outer, n, inner;
    split_at(&s, softmax_dim(c->attrs, s.ndim), &outer, &n, &inner);
    if (backward)
        return kiln_launch_1d(c->ctx, k, name, outer * inner, 64, 6, KARG(c->out->buf),
                              KARG(c->dout->buf), KARG(c->din[0]->buf), KARG(outer), KARG(n),
                              KARG(inner));
    return kiln_launch_1d(c->ctx, k, name, outer * inner, 64, 5, KARG(c->in[0]->buf),
                          KARG(c->out->buf), KARG(outer), KARG(n), KARG(inner));
}

static kiln_status softmax_forward(const op_args *c)
{
    return softmax_launch(c, "softmax_forward", 0);
}

static kiln_status softmax_backward(const op_args *c)
{
    return c->din[0] ? softmax_launch(c, "softmax_backward", 1) : KILN_OK;
}

/* ---- add: y = act(a + b) -------------------------------------------------- */

static kiln_status add_infer(const op_attrs *a, const kiln_shape *in, op_shapes *s)
{
    if (op_check_fusable("add", a->act) != KILN_OK)
        return KILN_ERR_UNSUPPORTED;
    if (!shape_eq(&in[0], &in[1])) {
        char x[64], y[64];
        return kiln_fail(KILN_ERR_SHAPE, "add: inputs of shapes %s and %s differ",
                         shape_str(&in[0], x, sizeof x), shape_str(&in[1], y, sizeof y));
    }
    s->out = in[0];
    return KILN_OK;
}

static kiln_status add_forward(const op_args *c)
{
    cl_kernel k;
    char opts[32];
    kiln_status st = kiln_kernel_get(c->ctx, "act.cl",
                                     act_options(c->attrs->act, opts, sizeof opts), "add", &k);
    if (st != KILN_OK)
        return st;
    cl_uint n = c->out->numel;
    return kiln_launch_1d(c->ctx, k, "add", n, 64, 5, KARG(c->in[0]->buf), KARG(c->in[1]->buf),
                          KARG(c->out->buf), KARG(n), KARG(c->attrs->slope));
}

/* The gradient flows to both inputs: dout, or act'(z) dout (from the
 * output) with a fused activation, written into the first and copied. */
static kiln_status add_backward(const op_args *c)
{
    kiln_tensor *first = c->din[0] ? c->din[0] : c->din[1], *second = c->din[0] ? c->din[1] : NULL;
    if (!first)
        return KILN_OK;
    kiln_status st = c->attrs->act == KILN_ACT_NONE
                         ? kiln_tensor_copy(first, c->dout)
                         : op_act_backward(c->ctx, c->attrs->act, c->attrs->slope, c->out->buf,
                                           c->out->buf, c->dout->buf, first->buf, first->numel);
    return st == KILN_OK && second ? kiln_tensor_copy(second, first) : st;
}

const op_desc op_activation_desc = {"activation", 1, 0, same_shape, act_forward, act_backward};
const op_desc op_softmax_desc = {"softmax", 1, 0, softmax_infer, softmax_forward,
                                 softmax_backward};
const op_desc op_add_desc = {"add", 2, 1, add_infer, add_forward, add_backward};
