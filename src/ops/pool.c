/* maxpool and avgpool: square windows, stride (0: the window size) and
 * padding, NCHW. maxpool saves the index of each window's winner. */
#include "ops/ops.h"

size_t op_window_count(size_t in, size_t k, size_t s, size_t p, size_t d);

static size_t pool_stride(const op_attrs *a)
{
    return a->stride ? a->stride : a->kernel;
}

static kiln_status pool_infer(const char *name, const op_attrs *a, const kiln_shape *in,
                              op_shapes *s)
{
    char buf[64];
    if (in[0].ndim != 4)
        return error_set(KILN_ERR_SHAPE, "%s: input is %s; expected (N, C, H, W)", name,
                         shape_str(&in[0], buf, sizeof buf));
    if (a->kernel == 0)
        return error_set(KILN_ERR_SHAPE, "%s: size must be at least 1", name);
    if (2 * a->pad > a->kernel)
        return error_set(KILN_ERR_SHAPE, "%s: padding %zu is more than half the window %zu",
                         name, a->pad, a->kernel);
    size_t oh = op_window_count(in[0].d[2], a->kernel, pool_stride(a), a->pad, 1);
    size_t ow = op_window_count(in[0].d[3], a->kernel, pool_stride(a), a->pad, 1);
    if (oh == 0 || ow == 0)
        return error_set(KILN_ERR_SHAPE, "%s: a %zux%zu window does not fit the input %s", name,
                         a->kernel, a->kernel, shape_str(&in[0], buf, sizeof buf));
    s->out = shape_make(4, in[0].d[0], in[0].d[1], oh, ow);
    return KILN_OK;
}

static kiln_status maxpool_infer(const op_attrs *a, const kiln_shape *in, op_shapes *s)
{
    kiln_status st = pool_infer("maxpool", a, in, s);
    if (st == KILN_OK && in[0].d[2] * in[0].d[3] > (1u << 24))
        return error_set(KILN_ERR_TOO_LARGE, "maxpool: planes of more than 2^24 pixels");
    s->n_saved = 1;
    s->saved[0] = s->out;
    return st;
}

static kiln_status avgpool_infer(const op_attrs *a, const kiln_shape *in, op_shapes *s)
{
    return pool_infer("avgpool", a, in, s);
}

/* pool.cl's 2x2 kernels take their planes as group.cl's sums over planes do. */
#define POOL_SOURCES "group.cl+pool.cl"

/* Whether the pool is 2x2 windows of stride 2 without padding on a device
 * that runs work-groups as loops, for pool.cl's *2_planes kernels. */
static int pool_by_plane(const op_args *c)
{
    const op_attrs *a = c->attrs;
    return device_loops_work_groups(&c->ctx->info) && a->kernel == 2 &&
           pool_stride(a) == 2 && a->pad == 0;
}

/* Launches a *2_planes kernel: the buffers, then the planes and the input's
 * H and W. */
static kiln_status pool_launch_planes(const op_args *c, const char *name, int nbuf, cl_mem b0,
                                      cl_mem b1, cl_mem b2)
{
    cl_kernel k;
    kiln_status st = kernel_get(c->ctx, POOL_SOURCES, "", name, &k);
    if (st != KILN_OK)
        return st;
    const kiln_tensor *x = c->in[0];
    cl_uint planes = x->shape[0] * x->shape[1], h = x->shape[2], w = x->shape[3];
    size_t items = op_plane_items(c->ctx, planes);
    if (nbuf == 3)
        return launch_1d(c->ctx, k, name, items, 1, KARG(b0), KARG(b1), KARG(b2),
                         KARG(planes), KARG(h), KARG(w));
    return launch_1d(c->ctx, k, name, items, 1, KARG(b0), KARG(b1), KARG(planes),
                     KARG(h), KARG(w));
}

/* Launches a pool kernel: forward over (OW, OH, planes) with the input's
 * H, W; backward over (W, H, planes) with the output's OH, OW. The buffers
 * come first, then those two sizes, then K, S, P. */
static kiln_status pool_launch(const op_args *c, const char *name, int backward, int nbuf,
                               cl_mem b0, cl_mem b1, cl_mem b2)
{
    cl_kernel k;
    kiln_status st = kernel_get(c->ctx, POOL_SOURCES, "", name, &k);
    if (st != KILN_OK)
        return st;
    const kiln_tensor *x = c->in[0], *y = c->out;
    const kiln_tensor *range = backward ? x : y, *other = backward ? y : x;
    cl_uint v[5] = {other->shape[2], other->shape[3], c->attrs->kernel, pool_stride(c->attrs),
                    c->attrs->pad};
    size_t w = range->shape[3], h = range->shape[2], planes = range->shape[0] * range->shape[1];
    if (nbuf == 3)
        return launch_3d(c->ctx, k, name, w, h, planes, KARG(b0), KARG(b1), KARG(b2),
                         KARG(v[0]), KARG(v[1]), KARG(v[2]), KARG(v[3]), KARG(v[4]));
    return launch_3d(c->ctx, k, name, w, h, planes, KARG(b0), KARG(b1), KARG(v[0]),
                     KARG(v[1]), KARG(v[2]), KARG(v[3]), KARG(v[4]));
}

static kiln_status maxpool_forward(const op_args *c)
{
    if (pool_by_plane(c))
        return pool_launch_planes(c, "maxpool2_planes", 3, c->in[0]->buf, c->out->buf,
                                  c->saved[0]->buf);
    return pool_launch(c, "maxpool_forward", 0, 3, c->in[0]->buf, c->out->buf,
                       c->saved[0]->buf);
}

/* Windows that do not overlap scatter to their own inputs (after zeroing
 * the inputs no window covers); overlapping ones gather per input. */
static kiln_status maxpool_backward(const op_args *c)
{
    if (!c->din[0])
        return KILN_OK;
    const op_attrs *a = c->attrs;
    const kiln_tensor *x = c->in[0], *y = c->out;
    if (pool_stride(a) < a->kernel)
        return pool_launch(c, "maxpool_backward", 1, 3, c->dout->buf, c->saved[0]->buf,
                           c->din[0]->buf);
    int covered = pool_stride(a) == a->kernel && a->pad == 0 &&
                  y->shape[2] * a->kernel == x->shape[2] && y->shape[3] * a->kernel == x->shape[3];
    kiln_status st = covered ? KILN_OK : kiln_tensor_fill(c->din[0], 0.0f);
    if (st == KILN_OK && pool_by_plane(c))
        return pool_launch_planes(c, "maxpool2_backward_planes", 3, c->dout->buf,
                                  c->saved[0]->buf, c->din[0]->buf);
    return st == KILN_OK ? pool_launch(c, "maxpool_backward_disjoint", 0, 3, c->dout->buf,
                                       c->saved[0]->buf, c->din[0]->buf)
                         : st;
}

/* One window over each whole plane (ResNet's global average pool). */
static int pool_global(const op_args *c)
{
    const kiln_tensor *x = c->in[0];
    return c->attrs->pad == 0 && c->attrs->kernel == x->shape[2] &&
           c->attrs->kernel == x->shape[3];
}

/* avgpool_global (backward 0) or avgpool_global_backward (1). */
static kiln_status pool_launch_global(const op_args *c, int backward)
{
    const char *name = backward ? "avgpool_global_backward" : "avgpool_global";
    cl_kernel k;
    kiln_status st = kernel_get(c->ctx, POOL_SOURCES, "", name, &k);
    const kiln_tensor *x = c->in[0];
    size_t planes = x->shape[0] * x->shape[1];
    cl_uint hw = (cl_uint)(x->shape[2] * x->shape[3]);
    if (st != KILN_OK)
        return st;
    if (backward)
        return launch_3d(c->ctx, k, name, hw, planes, 1, KARG(c->dout->buf),
                         KARG(c->din[0]->buf));
    return launch_1d(c->ctx, k, name, planes, 0, KARG(x->buf), KARG(c->out->buf), KARG(hw));
}

static kiln_status avgpool_forward(const op_args *c)
{
    if (pool_global(c))
        return pool_launch_global(c, 0);
    if (pool_by_plane(c))
        return pool_launch_planes(c, "avgpool2_planes", 2, c->in[0]->buf, c->out->buf, NULL);
    return pool_launch(c, "avgpool_forward", 0, 2, c->in[0]->buf, c->out->buf, NULL);
}

static kiln_status avgpool_backward(const op_args *c)
{
    if (!c->din[0])
        return KILN_OK;
    if (pool_global(c))
        return pool_launch_global(c, 1);
    if (pool_by_plane(c)) {
        const kiln_tensor *x = c->in[0], *y = c->out;
        int covered = y->shape[2] * 2 == x->shape[2] && y->shape[3] * 2 == x->shape[3];
        kiln_status st = covered ? KILN_OK : kiln_tensor_fill(c->din[0], 0.0f);
        return st == KILN_OK ? pool_launch_planes(c, "avgpool2_backward_planes", 2,
                                                  c->dout->buf, c->din[0]->buf, NULL)
                             : st;
    }
    return pool_launch(c, "avgpool_backward", 1, 2, c->dout->buf, c->din[0]->buf, NULL);
}

/* nn.MaxPool2d and nn.AvgPool2d(kernel_size, stride, padding): a square
 * window of side size; stride 0 (unset) is the window size. */
static const op_key pool_keys[] = {
    OP_KEY_NEEDED("size", kernel, 1, 1024),
    OP_KEY_WHOLE("stride", stride, 1, 1024, 0),
    OP_KEY_WHOLE("pad", pad, 0, 1024, 0),
};

#define POOL_ROW(op)                                                                      \
    .name = #op, .n_inputs = 1, .in_ranks = 1u << 4,                                      \
    .in_hint = "expected channels x height x width (e.g. [input] shape = 1x28x28)",       \
    .keys = pool_keys, .n_keys = sizeof pool_keys / sizeof pool_keys[0],                  \
    .infer = op##_infer, .forward = op##_forward, .backward = op##_backward

const op_desc op_maxpool_desc = {POOL_ROW(maxpool)};
const op_desc op_avgpool_desc = {POOL_ROW(avgpool)};
