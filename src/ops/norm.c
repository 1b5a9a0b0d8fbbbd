/* batchnorm (1d and 2d by rank) and layernorm, with PyTorch's semantics:
 * batchnorm normalizes with the batch mean and biased variance in training
 * and updates running statistics with the unbiased variance; eval mode
 * uses the running statistics. */
#include <stdio.h>

#include "ops/ops.h"

/* The norm program for an activation epilogue, and ROWS for batchnorm1d. */
static kiln_status norm_kernel_for(kiln_ctx *ctx, kiln_act act, int rows, const char *name,
                                   cl_kernel *k)
{
    char opts[96], reduce[48];
    snprintf(opts, sizeof opts, "%s -DACT=%d%s", reduce_options(ctx, reduce, sizeof reduce),
             (int)act, rows ? " -DROWS" : "");
    return kiln_kernel_get(ctx, "group.cl+act.cl+norm.cl", opts, name, k);
}

static kiln_status norm_kernel(kiln_ctx *ctx, const char *name, cl_kernel *k)
{
    return norm_kernel_for(ctx, KILN_ACT_NONE, 0, name, k);
}

/* ---- batchnorm: x (N, C) or (N, C, S...) --------------------------------- */

static kiln_status bn_infer(const op_attrs *a, const kiln_shape *in, op_shapes *s)
{
    char buf[64];
    (void)a;
    if (in[0].ndim < 2)
        return kiln_fail(KILN_ERR_SHAPE, "batchnorm: input is %s; expected (N, C) or "
                                         "(N, C, H, W)", shape_str(&in[0], buf, sizeof buf));
    if (op_check_fusable("batchnorm", a->act) != KILN_OK)
        return KILN_ERR_UNSUPPORTED;
    kiln_shape c = shape_make(1, in[0].d[1], 0, 0, 0);
    s->out = in[0];
    s->n_params = s->n_buffers = s->n_saved = 2;
    s->param[0] = s->param[1] = s->buffer[0] = s->buffer[1] = s->saved[0] = s->saved[1] = c;
    return KILN_OK;
}

typedef struct {
    cl_uint n, c, s;
} bn_dims;

static bn_dims bn_dims_of(const kiln_tensor *x)
{
    bn_dims d = {x->shape[0], x->shape[1], x->numel / (x->shape[0] * x->shape[1])};
    return d;
}

static kiln_status bn_statistics(const op_args *c, bn_dims d)
{
    cl_kernel k;
    kiln_status st;
    if (!c->training) {
        st = norm_kernel(c->ctx, "bn_running", &k);
        return st != KILN_OK ? st
                             : kiln_launch_1d(c->ctx, k, "bn_running", d.c, 64, 6,
                                              KARG(c->buffer[0]->buf), KARG(c->buffer[1]->buf),
                                              KARG(c->saved[0]->buf), KARG(c->saved[1]->buf),
                                              KARG(d.c), KARG(c->attrs->eps));
    }
    if (d.n * d.s < 2) {
        char buf[64];
        kiln_shape s = shape_of(c->in[0]);
        return kiln_fail(KILN_ERR_SHAPE, "batchnorm: expected more than 1 value per channel "
                                         "when training, got input of shape %s",
                         shape_str(&s, buf, sizeof buf));
    }
    st = norm_kernel(c->ctx, "bn_stats", &k);
    if (st != KILN_OK)
        return st;
    size_t wg = reduce_group_size(c->ctx);
    cl_int update = 1;
    return kiln_launch_1d(c->ctx, k, "bn_stats", d.c * wg, wg, 11, KARG(c->in[0]->buf),
                          KARG(c->saved[0]->buf), KARG(c->saved[1]->buf),
                          KARG(c->buffer[0]->buf), KARG(c->buffer[1]->buf), KARG(d.n),
                          KARG(d.c), KARG(d.s), KARG(c->attrs->eps), KARG(c->attrs->momentum),
                          KARG(update));
}

/* The range of an elementwise batchnorm kernel: (S, C, N), or (C, N, 1)
 * for batchnorm1d, compiled with ROWS. */
static void bn_range(bn_dims d, size_t r[3])
{
    r[0] = d.s == 1 ? d.c : d.s;
    r[1] = d.s == 1 ? d.n : d.c;
    r[2] = d.s == 1 ? 1 : d.n;
}

static kiln_status bn_forward(const op_args *c)
{
    bn_dims d = bn_dims_of(c->in[0]);
    kiln_status st = bn_statistics(c, d);
    cl_kernel k;
    if (st == KILN_OK)
        st = norm_kernel_for(c->ctx, c->attrs->act, d.s == 1, "bn_apply", &k);
    if (st != KILN_OK)
        return st;
    size_t r[3];
    bn_range(d, r);
    return kiln_launch_3d(c->ctx, k, "bn_apply", r[0], r[1], r[2], 7, KARG(c->in[0]->buf),
                          KARG(c->out->buf), KARG(c->saved[0]->buf), KARG(c->saved[1]->buf),
                          KARG(c->param[0]->buf), KARG(c->param[1]->buf),
                          KARG(c->attrs->slope));
}

static kiln_status bn_backward(const op_args *c)
{
    bn_dims d = bn_dims_of(c->in[0]);
    kiln_tensor *tmp[2] = {NULL, NULL};
    kiln_tensor *dg = c->dparam[0], *db = c->dparam[1];
    kiln_shape cs = shape_make(1, d.c, 0, 0, 0);
    kiln_status st = KILN_OK;
    if (!dg && (st = tensor_of(c->ctx, &cs, &tmp[0])) == KILN_OK)
        dg = tmp[0];
    if (st == KILN_OK && !db && (st = tensor_of(c->ctx, &cs, &tmp[1])) == KILN_OK)
        db = tmp[1];
    cl_kernel k;
    if (st == KILN_OK)
        st = norm_kernel_for(c->ctx, c->attrs->act, d.s == 1, "bn_grad_sums", &k);
    if (st == KILN_OK) {
        size_t wg = reduce_group_size(c->ctx);
        st = kiln_launch_1d(c->ctx, k, "bn_grad_sums", d.c * wg, wg, 11, KARG(c->in[0]->buf),
                            KARG(c->out->buf), KARG(c->dout->buf), KARG(c->saved[0]->buf),
                            KARG(c->saved[1]->buf), KARG(dg->buf), KARG(db->buf), KARG(d.n),
                            KARG(d.c), KARG(d.s), KARG(c->attrs->slope));
    }
    if (st == KILN_OK && c->din[0])
        st = norm_kernel_for(c->ctx, c->attrs->act, d.s == 1, "bn_dx", &k);
    if (st == KILN_OK && c->din[0]) {
        cl_int training = c->training;
        size_t r[3];
        bn_range(d, r);
        st = kiln_launch_3d(c->ctx, k, "bn_dx", r[0], r[1], r[2], 11, KARG(c->in[0]->buf),
                            KARG(c->out->buf), KARG(c->dout->buf), KARG(c->saved[0]->buf),
                            KARG(c->saved[1]->buf), KARG(c->param[0]->buf), KARG(dg->buf),
                            KARG(db->buf), KARG(c->din[0]->buf), KARG(training),
                            KARG(c->attrs->slope));
    }
    kiln_tensor_free(tmp[0]);
    kiln_tensor_free(tmp[1]);
    return st;
}

/* ---- layernorm over the trailing norm_dims dimensions ---------------------- */

static kiln_status ln_infer(const op_attrs *a, const kiln_shape *in, op_shapes *s)
{
    char buf[64];
    if (a->norm_dims < 1 || a->norm_dims > in[0].ndim)
        return kiln_fail(KILN_ERR_SHAPE, "layernorm: cannot normalize over the last %d "
                                         "dimensions of an input of shape %s",
                         a->norm_dims, shape_str(&in[0], buf, sizeof buf));
    int lead = in[0].ndim - a->norm_dims;
    kiln_shape norm = {.ndim = a->norm_dims};
    for (int i = 0; i < a->norm_dims; i++)
        norm.d[i] = in[0].d[lead + i];
    size_t rows = shape_numel(&in[0]) / shape_numel(&norm);
    s->out = in[0];
    s->n_params = s->n_saved = 2;
    s->param[0] = s->param[1] = norm;
    s->saved[0] = s->saved[1] = shape_make(1, rows, 0, 0, 0);
    return KILN_OK;
}

static kiln_status ln_forward(const op_args *c)
{
    cl_kernel k;
    kiln_status st = norm_kernel(c->ctx, "ln_forward", &k);
    if (st != KILN_OK)
        return st;
    size_t rows = c->saved[0]->numel, wg = reduce_group_size(c->ctx);
    cl_uint dim = c->in[0]->numel / rows;
    return kiln_launch_1d(c->ctx, k, "ln_forward", rows * wg, wg, 8, KARG(c->in[0]->buf),
                          KARG(c->out->buf), KARG(c->param[0]->buf), KARG(c->param[1]->buf),
                          KARG(c->saved[0]->buf), KARG(c->saved[1]->buf), KARG(dim),
                          KARG(c->attrs->eps));
}

static kiln_status ln_backward(const op_args *c)
{
    size_t rows = c->saved[0]->numel, wg = reduce_group_size(c->ctx);
    cl_uint dim = c->in[0]->numel / rows, r = rows;
    cl_kernel k;
    kiln_status st = KILN_OK;
    if (c->din[0] && (st = norm_kernel(c->ctx, "ln_dx", &k)) == KILN_OK)
        st = kiln_launch_1d(c->ctx, k, "ln_dx", rows * wg, wg, 7, KARG(c->in[0]->buf),
                            KARG(c->dout->buf), KARG(c->param[0]->buf), KARG(c->saved[0]->buf),
                            KARG(c->saved[1]->buf), KARG(c->din[0]->buf), KARG(dim));
    if (st != KILN_OK || !c->dparam[0] || !c->dparam[1])
        return st;
    st = norm_kernel(c->ctx, "ln_param_grads", &k);
    if (st != KILN_OK)
        return st;
    return kiln_launch_1d(c->ctx, k, "ln_param_grads", dim * wg, wg, 8, KARG(c->in[0]->buf),
                          KARG(c->dout->buf), KARG(c->saved[0]->buf), KARG(c->saved[1]->buf),
                          KARG(c->dparam[0]->buf), KARG(c->dparam[1]->buf), KARG(r),
                          KARG(dim));
}

const op_desc op_batchnorm_desc = {"batchnorm", 1, 0, bn_infer, bn_forward, bn_backward};
const op_desc op_layernorm_desc = {"layernorm", 1, 0, ln_infer, ln_forward, ln_backward};
