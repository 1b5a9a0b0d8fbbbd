/* flatten and concat (along channels), and the layout helpers conv2d uses. */
#include "ops/ops.h"

kiln_status op_swap01(kiln_ctx *ctx, cl_mem x, cl_mem y, size_t a, size_t b, size_t p)
{
    cl_kernel k;
    int planes = op_sums_by_plane(ctx, p); /* long planes, work-groups as loops */
    kiln_status st = kernel_get(ctx, "layout.cl", "", planes ? "swap01_planes" : "swap01",
                                &k);
    if (st != KILN_OK)
        return st;
    cl_uint A = a, B = b, P = p;
    if (planes)
        return launch_1d(ctx, k, "swap01_planes", op_plane_items(ctx, a * b), 1,
                         KARG(x), KARG(y), KARG(A), KARG(B), KARG(P));
    return launch_3d(ctx, k, "swap01", p, a, b, KARG(x), KARG(y));
}

/* ---- flatten: (N, ...) -> (N, product of the rest) ------------------------- */

static kiln_status flatten_infer(const op_attrs *a, const kiln_shape *in, op_shapes *s)
{
    (void)a;
    s->out = shape_make(2, in[0].d[0], in[0].ndim > 1 ? shape_numel(&in[0]) / in[0].d[0] : 1,
                        0, 0);
    return KILN_OK;
}

static kiln_status flatten_forward(const op_args *c)
{
    return kiln_tensor_copy(c->out, c->in[0]);
}

static kiln_status flatten_backward(const op_args *c)
{
    return c->din[0] ? kiln_tensor_copy(c->din[0], c->dout) : KILN_OK;
}

/* ---- concat along dim 1 ----------------------------------------------------- */

/* Sizes as (N, channels, rest). */
static void ncs(const kiln_shape *s, size_t *n, size_t *ch, size_t *rest)
{
    *n = s->d[0];
    *ch = s->d[1];
    *rest = shape_numel(s) / (*n * *ch);
}

static kiln_status concat_infer(const op_attrs *a, const kiln_shape *in, op_shapes *s)
{
    (void)a;
    int fits = in[0].ndim >= 2 && in[0].ndim == in[1].ndim && in[0].d[0] == in[1].d[0];
    for (int i = 2; fits && i < in[0].ndim; i++)
        fits = in[0].d[i] == in[1].d[i];
    if (!fits) {
        char x[64], y[64];
        return error_set(KILN_ERR_SHAPE, "concat: inputs of shapes %s and %s differ in more "
                                         "than their channel dimension (dim 1)",
                         shape_str(&in[0], x, sizeof x), shape_str(&in[1], y, sizeof y));
    }
    s->out = in[0];
    s->out.d[1] = in[0].d[1] + in[1].d[1];
    return KILN_OK;
}

static kiln_status concat_forward(const op_args *c)
{
    cl_kernel k;
    kiln_status st = kernel_get(c->ctx, "layout.cl", "", "concat", &k);
    if (st != KILN_OK)
        return st;
    kiln_shape s0 = shape_of(c->in[0]), s1 = shape_of(c->in[1]);
    size_t n, c0, c1, rest;
    ncs(&s0, &n, &c0, &rest);
    ncs(&s1, &n, &c1, &rest);
    cl_uint C0 = c0;
    return launch_3d(c->ctx, k, "concat", rest, c0 + c1, n, KARG(c->in[0]->buf),
                     KARG(c->in[1]->buf), KARG(c->out->buf), KARG(C0));
}

static kiln_status concat_backward(const op_args *c)
{
    cl_kernel k;
    kiln_status st = kernel_get(c->ctx, "layout.cl", "", "split", &k);
    kiln_shape so = shape_of(c->out);
    size_t n, ch, rest, first = 0;
    ncs(&so, &n, &ch, &rest);
    for (int i = 0; i < 2 && st == KILN_OK; i++) {
        size_t part = c->in[i]->shape[1];
        cl_uint C = ch, F = first;
        if (c->din[i])
            st = launch_3d(c->ctx, k, "split", rest, part, n, KARG(c->dout->buf),
                           KARG(c->din[i]->buf), KARG(C), KARG(F));
        first += part;
    }
    return st;
}

const op_desc op_flatten_desc = {
    .name = "flatten",
    .n_inputs = 1,
    .infer = flatten_infer,
    .forward = flatten_forward,
    .backward = flatten_backward,
};

/* torch.cat(dim = 1) of the two layers named by from */
const op_desc op_concat_desc = {
    .name = "concat",
    .n_inputs = 2,
    .infer = concat_infer,
    .forward = concat_forward,
    .backward = concat_backward,
};
