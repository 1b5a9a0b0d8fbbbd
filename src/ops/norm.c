/* batchnorm (1d and 2d by rank) and layernorm, with PyTorch's semantics:
 * batchnorm normalizes with the batch mean and biased variance in training
 * and updates running statistics with the unbiased variance; eval mode
 * uses the running statistics. */
#include <stdio.h>
#include <stdlib.h>

#include "ops/ops.h"

/* The norm program for an activation epilogue, and BN_ROWS for batchnorm1d. */
static kiln_status norm_kernel_for(kiln_ctx *ctx, kiln_act act, int rows, const char *name,
                                   cl_kernel *k)
{
    char opts[ACT_OPTIONS_MAX + 64], reduce[48];
    snprintf(opts, sizeof opts, "%s %s%s", reduce_options(ctx, reduce, sizeof reduce),
             act_options(act), rows ? " -DBN_ROWS" : "");
    return kernel_get(ctx, "group.cl+" ACT_SOURCES "+norm.cl", opts, name, k);
}

kiln_status op_norm_kernel(kiln_ctx *ctx, const char *name, cl_kernel *k)
{
    return norm_kernel_for(ctx, KILN_ACT_NONE, 0, name, k);
}

/* The statistics kernels ahead of BN_ROWS and the activation in norm.cl,
 * built with the options of the layer's other kernels: one program for a
 * batchnorm's kernels, which a cold start builds together. */
static kiln_status bn_stats_kernel(const op_args *c, size_t s, const char *name, cl_kernel *k)
{
    return norm_kernel_for(c->ctx, c->attrs->act, s == 1, name, k);
}

/* ---- batchnorm: x (N, C) or (N, C, S...) --------------------------------- */

static kiln_status bn_infer(const op_attrs *a, const kiln_shape *in, op_shapes *s)
{
    char buf[64];
    (void)a;
    if (in[0].ndim < 2)
        return error_set(KILN_ERR_SHAPE, "batchnorm: input is %s; expected (N, C) or "
                                         "(N, C, H, W)", shape_str(&in[0], buf, sizeof buf));
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

/* ---- sync_batchnorm: statistics and gradient sums of the whole batch ---- */

/* Every process must reach the same verdict, so the check of the values
 * per channel is made on the totals. */
static kiln_status bn_check_count(double m)
{
    if (m >= 2)
        return KILN_OK;
    return error_set(KILN_ERR_SHAPE, "batchnorm: expected more than 1 value per channel when "
                                     "training, got %.0f across the processes (sync_batchnorm)",
                     m);
}

/* The whole batch's mean and biased variance from the parts' counts,
 * sums and sums of squares per channel (v: count, C sums, C sums of
 * squares). In double, the sum of squares loses nothing to the mean. */
static void bn_combine(const double *v, size_t channels, float *mean, float *var)
{
    for (size_t k = 0; k < channels; k++) {
        double mu = v[1 + k] / v[0], sq = v[1 + channels + k] / v[0] - mu * mu;
        mean[k] = (float)mu;
        var[k] = sq > 0 ? (float)sq : 0.0f;
    }
}

/* This process's mean and variance per channel go to the host, become
 * count, sum and sum of squares, are summed across the processes, and
 * come back as the whole batch's mean and rstd; the running statistics
 * are updated with them. idle: this process has no samples, and adds
 * nothing. */
static kiln_status bn_sync_statistics(const op_args *c, bn_dims d, int idle)
{
    size_t n = 1 + 2 * (size_t)d.c;
    double *v = calloc(n, sizeof *v);
    float *h = malloc(2 * (size_t)d.c * sizeof *h);
    kiln_status st = v && h ? KILN_OK
                            : error_set(KILN_ERR_OUT_OF_MEMORY, "batchnorm: out of host memory");
    size_t wg = reduce_group_size(c->ctx);
    cl_kernel k;
    if (st == KILN_OK && !idle)
        st = bn_stats_kernel(c, d.s, "bn_moments", &k);
    if (st == KILN_OK && !idle)
        st = launch_1d(c->ctx, k, "bn_moments", d.c * wg, wg, KARG(c->in[0]->buf),
                       KARG(c->saved[0]->buf), KARG(c->saved[1]->buf), KARG(d.n),
                       KARG(d.c), KARG(d.s));
    if (st == KILN_OK && !idle)
        st = kiln_tensor_download(c->saved[0], h, d.c);
    if (st == KILN_OK && !idle)
        st = kiln_tensor_download(c->saved[1], h + d.c, d.c);
    double m = (double)d.n * (double)d.s;
    if (st == KILN_OK && !idle)
        v[0] = m;
    for (size_t j = 0; st == KILN_OK && !idle && j < d.c; j++) {
        double mu = h[j];
        v[1 + j] = m * mu;
        v[1 + d.c + j] = m * ((double)h[d.c + j] + mu * mu);
    }
    if (st == KILN_OK)
        st = c->sync->sum(c->sync->user, v, n, 0);
    if (st == KILN_OK)
        st = bn_check_count(v[0]);
    if (st == KILN_OK) {
        bn_combine(v, d.c, h, h + d.c);
        st = kiln_tensor_upload(c->saved[0], h, d.c);
    }
    if (st == KILN_OK)
        st = kiln_tensor_upload(c->saved[1], h + d.c, d.c);
    if (st == KILN_OK)
        st = bn_stats_kernel(c, d.s, "bn_finish", &k);
    cl_uint total = st == KILN_OK ? (cl_uint)v[0] : 0;
    if (st == KILN_OK)
        st = launch_1d(c->ctx, k, "bn_finish", d.c, 64, KARG(c->saved[0]->buf),
                       KARG(c->saved[1]->buf), KARG(c->buffer[0]->buf),
                       KARG(c->buffer[1]->buf), KARG(d.c), KARG(total),
                       KARG(c->attrs->eps), KARG(c->attrs->momentum));
    free(v);
    free(h);
    return st;
}

/* dbeta and dgamma of the whole batch for bn_dx, into sums[0] (dgamma)
 * and sums[1] (dbeta): this process's, weighted by its share of the batch
 * and summed across the processes. With those, bn_dx over this process's
 * M values gives its part of dx (its gradients being those of a mean over
 * its own samples). dg and db keep this process's own sums: they are
 * parameter gradients, averaged with the others later. */
static kiln_status bn_sync_sums(const op_args *c, const kiln_tensor *dg, const kiln_tensor *db,
                                kiln_tensor **sums)
{
    size_t n = dg->numel;
    kiln_shape cs = shape_make(1, n, 0, 0, 0);
    double *v = malloc(2 * n * sizeof *v);
    float *h = malloc(2 * n * sizeof *h);
    kiln_status st = v && h ? KILN_OK
                            : error_set(KILN_ERR_OUT_OF_MEMORY, "batchnorm: out of host memory");
    if (st == KILN_OK)
        st = kiln_tensor_download(dg, h, n);
    if (st == KILN_OK)
        st = kiln_tensor_download(db, h + n, n);
    for (size_t j = 0; st == KILN_OK && j < 2 * n; j++)
        v[j] = h[j];
    if (st == KILN_OK)
        st = c->sync->sum(c->sync->user, v, 2 * n, 1);
    for (size_t j = 0; st == KILN_OK && j < 2 * n; j++)
        h[j] = (float)v[j];
    for (int t = 0; t < 2 && st == KILN_OK; t++)
        if ((st = tensor_of(c->ctx, &cs, &sums[t])) == KILN_OK)
            st = kiln_tensor_upload(sums[t], h + (size_t)t * n, n);
    free(v);
    free(h);
    return st;
}

kiln_status op_batchnorm_sync_idle(const op_args *c, int backward)
{
    if (!backward)
        return bn_sync_statistics(c, bn_dims_of(c->in[0]), 1);
    size_t n = 2 * c->param[0]->numel;
    double *v = calloc(n, sizeof *v);
    kiln_status st = v ? c->sync->sum(c->sync->user, v, n, 1)
                       : error_set(KILN_ERR_OUT_OF_MEMORY, "batchnorm: out of host memory");
    free(v);
    return st;
}

/* Per plane (n, c), two values, for the sums over planes (group.cl). */
static kiln_status plane_parts(const op_args *c, bn_dims d, kiln_tensor **part)
{
    kiln_shape s = shape_make(1, 2 * (size_t)d.n * d.c, 0, 0, 0);
    return tensor_of(c->ctx, &s, part);
}

/* bn_stats as sums over planes: bn_plane_moments, then bn_stats_planes. */
static kiln_status bn_stats_by_plane(const op_args *c, bn_dims d)
{
    cl_kernel moments, stats;
    kiln_tensor *part = NULL;
    cl_uint planes = d.n * d.c;
    cl_int update = 1;
    kiln_status st = bn_stats_kernel(c, d.s, "bn_plane_moments", &moments);
    if (st == KILN_OK)
        st = bn_stats_kernel(c, d.s, "bn_stats_planes", &stats);
    if (st == KILN_OK)
        st = plane_parts(c, d, &part);
    if (st == KILN_OK)
        st = launch_1d(c->ctx, moments, "bn_plane_moments", op_plane_items(c->ctx, planes),
                       1, KARG(c->in[0]->buf), KARG(part->buf), KARG(planes), KARG(d.s));
    if (st == KILN_OK)
        st = launch_1d(c->ctx, stats, "bn_stats_planes", d.c, 64, KARG(part->buf),
                       KARG(c->saved[0]->buf), KARG(c->saved[1]->buf),
                       KARG(c->buffer[0]->buf), KARG(c->buffer[1]->buf), KARG(d.n),
                       KARG(d.c), KARG(d.s), KARG(c->attrs->eps),
                       KARG(c->attrs->momentum), KARG(update));
    kiln_tensor_free(part);
    return st;
}

static kiln_status bn_statistics(const op_args *c, bn_dims d)
{
    cl_kernel k;
    kiln_status st;
    if (c->training && c->sync)
        return bn_sync_statistics(c, d, 0);
    if (!c->training) {
        st = bn_stats_kernel(c, d.s, "bn_running", &k);
        return st != KILN_OK ? st
                             : launch_1d(c->ctx, k, "bn_running", d.c, 64,
                                         KARG(c->buffer[0]->buf), KARG(c->buffer[1]->buf),
                                         KARG(c->saved[0]->buf), KARG(c->saved[1]->buf),
                                         KARG(d.c), KARG(c->attrs->eps));
    }
    if (d.n * d.s < 2) {
        char buf[64];
        kiln_shape s = shape_of(c->in[0]);
        return error_set(KILN_ERR_SHAPE, "batchnorm: expected more than 1 value per channel "
                                         "when training, got input of shape %s",
                         shape_str(&s, buf, sizeof buf));
    }
    cl_int update = 1;
    if (op_sums_by_plane(c->ctx, d.s))
        return bn_stats_by_plane(c, d);
    if (op_sums_by_column(c->ctx, d.s)) {
        st = bn_stats_kernel(c, d.s, "bn_stats_columns", &k);
        return st != KILN_OK ? st
                             : launch_1d(c->ctx, k, "bn_stats_columns",
                                         op_column_items(d.c), 1,
                                         KARG(c->in[0]->buf), KARG(c->saved[0]->buf),
                                         KARG(c->saved[1]->buf), KARG(c->buffer[0]->buf),
                                         KARG(c->buffer[1]->buf), KARG(d.n), KARG(d.c),
                                         KARG(c->attrs->eps), KARG(c->attrs->momentum),
                                         KARG(update));
    }
    st = bn_stats_kernel(c, d.s, "bn_stats", &k);
    if (st != KILN_OK)
        return st;
    size_t wg = reduce_group_size(c->ctx);
    return launch_1d(c->ctx, k, "bn_stats", d.c * wg, wg, KARG(c->in[0]->buf),
                     KARG(c->saved[0]->buf), KARG(c->saved[1]->buf),
                     KARG(c->buffer[0]->buf), KARG(c->buffer[1]->buf), KARG(d.n),
                     KARG(d.c), KARG(d.s), KARG(c->attrs->eps), KARG(c->attrs->momentum),
                     KARG(update));
}

/* The range of an elementwise batchnorm kernel: (S, C, N), or (C, N, 1)
 * for batchnorm1d, compiled with BN_ROWS. */
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
    return launch_3d(c->ctx, k, "bn_apply", r[0], r[1], r[2], KARG(c->in[0]->buf),
                     KARG(c->out->buf), KARG(c->saved[0]->buf), KARG(c->saved[1]->buf),
                     KARG(c->param[0]->buf), KARG(c->param[1]->buf),
                     KARG(c->attrs->slope));
}

/* bn_grad_sums as sums over planes: bn_plane_grads, then bn_grads_planes. */
static kiln_status bn_grad_sums_by_plane(const op_args *c, bn_dims d, kiln_tensor *dg,
                                         kiln_tensor *db)
{
    cl_kernel grads, sums;
    kiln_tensor *part = NULL;
    cl_uint planes = d.n * d.c;
    kiln_status st = norm_kernel_for(c->ctx, c->attrs->act, 0, "bn_plane_grads", &grads);
    if (st == KILN_OK)
        st = norm_kernel_for(c->ctx, c->attrs->act, 0, "bn_grads_planes", &sums);
    if (st == KILN_OK)
        st = plane_parts(c, d, &part);
    if (st == KILN_OK)
        st = launch_1d(c->ctx, grads, "bn_plane_grads", op_plane_items(c->ctx, planes), 1,
                       KARG(c->in[0]->buf), KARG(c->out->buf), KARG(c->dout->buf),
                       KARG(c->saved[0]->buf), KARG(part->buf), KARG(d.c), KARG(planes),
                       KARG(d.s), KARG(c->attrs->slope));
    if (st == KILN_OK)
        st = launch_1d(c->ctx, sums, "bn_grads_planes", d.c, 64, KARG(part->buf),
                       KARG(c->saved[1]->buf), KARG(dg->buf), KARG(db->buf), KARG(d.n),
                       KARG(d.c));
    kiln_tensor_free(part);
    return st;
}

/* bn_grad_sums of batchnorm1d down columns: bn_grads_columns. */
static kiln_status bn_grad_sums_by_column(const op_args *c, bn_dims d, kiln_tensor *dg,
                                          kiln_tensor *db)
{
    cl_kernel k;
    kiln_status st = norm_kernel_for(c->ctx, c->attrs->act, 1, "bn_grads_columns", &k);
    return st != KILN_OK ? st
                         : launch_1d(c->ctx, k, "bn_grads_columns",
                                     op_column_items(d.c), 1,
                                     KARG(c->in[0]->buf), KARG(c->out->buf),
                                     KARG(c->dout->buf), KARG(c->saved[0]->buf),
                                     KARG(c->saved[1]->buf), KARG(dg->buf), KARG(db->buf),
                                     KARG(d.n), KARG(d.c), KARG(c->attrs->slope));
}

/* Per channel: dgamma and dbeta, in the shape that suits the device. */
static kiln_status bn_grad_sums(const op_args *c, bn_dims d, kiln_tensor *dg, kiln_tensor *db)
{
    if (op_sums_by_plane(c->ctx, d.s))
        return bn_grad_sums_by_plane(c, d, dg, db);
    if (op_sums_by_column(c->ctx, d.s))
        return bn_grad_sums_by_column(c, d, dg, db);
    cl_kernel k;
    kiln_status st = norm_kernel_for(c->ctx, c->attrs->act, d.s == 1, "bn_grad_sums", &k);
    if (st != KILN_OK)
        return st;
    size_t wg = reduce_group_size(c->ctx);
    return launch_1d(c->ctx, k, "bn_grad_sums", d.c * wg, wg, KARG(c->in[0]->buf),
                     KARG(c->out->buf), KARG(c->dout->buf), KARG(c->saved[0]->buf),
                     KARG(c->saved[1]->buf), KARG(dg->buf), KARG(db->buf), KARG(d.n),
                     KARG(d.c), KARG(d.s), KARG(c->attrs->slope));
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
    if (st == KILN_OK)
        st = bn_grad_sums(c, d, dg, db);
    cl_kernel k;
    kiln_tensor *sums[2] = {dg, db}, *whole[2] = {NULL, NULL};
    if (st == KILN_OK && c->din[0] && c->training && c->sync) {
        st = bn_sync_sums(c, dg, db, whole);
        sums[0] = whole[0];
        sums[1] = whole[1];
    }
    if (st == KILN_OK && c->din[0])
        st = norm_kernel_for(c->ctx, c->attrs->act, d.s == 1, "bn_dx", &k);
    if (st == KILN_OK && c->din[0]) {
        cl_int training = c->training;
        size_t r[3];
        bn_range(d, r);
        st = launch_3d(c->ctx, k, "bn_dx", r[0], r[1], r[2], KARG(c->in[0]->buf),
                       KARG(c->out->buf), KARG(c->dout->buf), KARG(c->saved[0]->buf),
                       KARG(c->saved[1]->buf), KARG(c->param[0]->buf),
                       KARG(sums[0]->buf), KARG(sums[1]->buf), KARG(c->din[0]->buf),
                       KARG(training), KARG(c->attrs->slope));
    }
    for (int t = 0; t < 2; t++) {
        kiln_tensor_free(tmp[t]);
        kiln_tensor_free(whole[t]);
    }
    return st;
}

/* ---- layernorm over the trailing norm_dims dimensions ---------------------- */

static kiln_status ln_infer(const op_attrs *a, const kiln_shape *in, op_shapes *s)
{
    char buf[64];
    if (a->norm_dims < 1 || a->norm_dims > in[0].ndim)
        return error_set(KILN_ERR_SHAPE, "layernorm: cannot normalize over the last %d "
                                         "dimensions of an input of shape %s",
                         a->norm_dims, shape_str(&in[0], buf, sizeof buf));
    int lead = in[0].ndim - a->norm_dims;
    kiln_shape norm = {.ndim = a->norm_dims};
    for (int i = 0; i < a->norm_dims; i++)
        norm.d[i] = in[0].d[lead + i];
    size_t rows = shape_numel(&in[0]) / shape_numel(&norm);
    s->out = in[0];
    s->n_params = a->bias ? 2 : 1; /* nanoGPT's LayerNorm(bias=False) has a weight only */
    s->n_saved = 2;
    s->param[0] = s->param[1] = norm;
    s->saved[0] = s->saved[1] = shape_make(1, rows, 0, 0, 0);
    return KILN_OK;
}

/* Where work-groups run as loops (CPUs), layernorm takes a row per
 * work-item and its parameter gradients down columns (the _rows and
 * _columns kernels); elsewhere a work-group per row and per column. */
/* The grid of a layernorm kernel over rows: a row per work-item where
 * work-groups run as loops (the _rows kernels), else a work-group a row. */
static void ln_row_grid(const op_args *c, size_t rows, size_t *items, size_t *local)
{
    size_t wg = reduce_group_size(c->ctx);
    int rows_each = device_loops_work_groups(&c->ctx->info);
    *items = rows_each ? op_plane_items(c->ctx, rows) : rows * wg;
    *local = rows_each ? 1 : wg;
}

static kiln_status ln_forward(const op_args *c)
{
    const char *name = device_loops_work_groups(&c->ctx->info) ? "ln_forward_rows"
                                                                : "ln_forward";
    cl_kernel k;
    kiln_status st = op_norm_kernel(c->ctx, name, &k);
    if (st != KILN_OK)
        return st;
    size_t rows = c->saved[0]->numel, items, local;
    cl_uint dim = c->in[0]->numel / rows, r = rows;
    cl_int has_beta = c->attrs->bias;
    cl_mem beta = has_beta ? c->param[1]->buf : c->param[0]->buf;
    ln_row_grid(c, rows, &items, &local);
    return launch_1d(c->ctx, k, name, items, local, KARG(c->in[0]->buf), KARG(c->out->buf),
                     KARG(c->param[0]->buf), KARG(beta), KARG(c->saved[0]->buf),
                     KARG(c->saved[1]->buf), KARG(r), KARG(dim), KARG(c->attrs->eps),
                     KARG(has_beta));
}

static kiln_status ln_dx(const op_args *c, size_t rows, cl_uint dim)
{
    size_t items, local;
    cl_uint r = rows;
    cl_int add = c->din_add[0];
    cl_kernel k;
    kiln_status st = op_norm_kernel(c->ctx, "ln_dx", &k);
    if (st != KILN_OK)
        return st;
    ln_row_grid(c, rows, &items, &local);
    return launch_1d(c->ctx, k, "ln_dx", items, local, KARG(c->in[0]->buf), KARG(c->dout->buf),
                     KARG(c->param[0]->buf), KARG(c->saved[0]->buf), KARG(c->saved[1]->buf),
                     KARG(c->din[0]->buf), KARG(r), KARG(dim), KARG(add));
}

/* Where work-groups run as loops: dx by rows, each item also summing its
 * rows' parameter gradients where params is set (ln_dx_rows), then those
 * partial sums added down their columns (column_totals): the rows are read
 * once. */
static kiln_status ln_dx_rows(const op_args *c, size_t rows, cl_uint dim, int params)
{
    size_t items, local;
    ln_row_grid(c, rows, &items, &local);
    cl_int sums = params, has_beta = params && c->attrs->bias;
    kiln_shape ps = shape_make(2, items, dim, 0, 0);
    kiln_tensor *part[2] = {NULL, NULL};
    cl_kernel k;
    kiln_status st = KILN_OK;
    for (int i = 0; i < 1 + has_beta && st == KILN_OK; i++)
        st = tensor_of(c->ctx, &ps, &part[i]);
    if (st == KILN_OK)
        st = op_norm_kernel(c->ctx, "ln_dx_rows", &k);
    cl_uint r = rows;
    cl_int add = c->din_add[0];
    cl_mem pg = part[0] ? part[0]->buf : c->din[0]->buf, pb = part[1] ? part[1]->buf : pg;
    if (st == KILN_OK)
        st = launch_1d(c->ctx, k, "ln_dx_rows", items, local, KARG(c->in[0]->buf),
                       KARG(c->dout->buf), KARG(c->param[0]->buf), KARG(c->saved[0]->buf),
                       KARG(c->saved[1]->buf), KARG(c->din[0]->buf), KARG(r), KARG(dim),
                       KARG(add), KARG(pg), KARG(pb), KARG(sums), KARG(has_beta));
    for (int i = 0; i < 1 + has_beta && st == KILN_OK && params; i++)
        st = op_channel_sums(c->ctx, part[i]->buf, items, dim, 1, c->dparam[i]->buf);
    kiln_tensor_free(part[0]);
    kiln_tensor_free(part[1]);
    return st;
}

static kiln_status ln_backward(const op_args *c)
{
    size_t rows = c->saved[0]->numel, wg = reduce_group_size(c->ctx);
    cl_uint dim = c->in[0]->numel / rows, r = rows;
    cl_int has_beta = c->attrs->bias;
    int params = c->dparam[0] && (!has_beta || c->dparam[1]);
    if (c->din[0] && device_loops_work_groups(&c->ctx->info))
        return ln_dx_rows(c, rows, dim, params); /* the parameter gradients too */
    kiln_status st = c->din[0] ? ln_dx(c, rows, dim) : KILN_OK;
    if (st != KILN_OK || !params)
        return st;
    int columns = device_loops_work_groups(&c->ctx->info);
    const char *name = columns ? "ln_param_grads_columns" : "ln_param_grads";
    cl_kernel k;
    st = op_norm_kernel(c->ctx, name, &k);
    if (st != KILN_OK)
        return st;
    cl_mem dbeta = has_beta ? c->dparam[1]->buf : c->dparam[0]->buf;
    size_t items = columns ? op_column_items(dim) : dim * wg, local = columns ? 1 : wg;
    return launch_1d(c->ctx, k, name, items, local, KARG(c->in[0]->buf),
                     KARG(c->dout->buf), KARG(c->saved[0]->buf), KARG(c->saved[1]->buf),
                     KARG(c->dparam[0]->buf), KARG(dbeta), KARG(r), KARG(dim),
                     KARG(has_beta));
}

/* nn.BatchNorm1d/2d(num_features, eps, momentum), by the input's rank */
static const op_key bn_keys[] = {
    OP_KEY_FLOAT("momentum", momentum, 0, 1, 0, 0.1, "a number from 0 to 1"),
    OP_KEY_FLOAT("eps", eps, 1e-30, 1, 0, 1e-5, "a number above 0"),
};

/* nn.LayerNorm over the last dims dimensions, with eps; bias = false
 * (nanoGPT's LayerNorm) has a weight only */
static const op_key ln_keys[] = {
    OP_KEY_FLOAT("eps", eps, 1e-30, 1, 0, 1e-5, "a number above 0"),
    OP_KEY_BOOL("bias", bias, 1),
    OP_KEY_INT("dims", norm_dims, 1, 3, 1, "1, 2 or 3 (how many trailing dimensions to normalize)"),
};

const op_desc op_batchnorm_desc = {
    .name = "batchnorm",
    .n_inputs = 1,
    .fuses_act = 1,
    .see_through = 1,
    .in_ranks = 1u << 2 | 1u << 4,
    .in_hint = "batchnorm takes features (1d) or channels x height x width (2d)",
    .keys = bn_keys,
    .n_keys = sizeof bn_keys / sizeof bn_keys[0],
    .param_names = {"weight", "bias"},
    .buffer_names = {"running_mean", "running_var"},
    .counter = "num_batches_tracked",
    .init = op_init_affine,
    .infer = bn_infer,
    .forward = bn_forward,
    .backward = bn_backward,
};

const op_desc op_layernorm_desc = {
    .name = "layernorm",
    .n_inputs = 1,
    .see_through = 1,
    .adds_input_grads = 1, /* a transformer's residual stream: no add pass */
    .keys = ln_keys,
    .n_keys = sizeof ln_keys / sizeof ln_keys[0],
    .param_names = {"weight", "bias"},
    .init = op_init_affine,
    .infer = ln_infer,
    .forward = ln_forward,
    .backward = ln_backward,
};
