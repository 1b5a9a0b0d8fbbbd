/* Shapes, checks and the deterministic reductions shared by the ops. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"

kiln_status expect_shape(const char *op, const char *what, const kiln_tensor *t,
                         const kiln_shape *want)
{
    char a[64], b[64];
    if (!t)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "%s: %s is missing; expected shape %s", op,
                         what, shape_str(want, b, sizeof b));
    kiln_shape got = shape_of(t);
    if (shape_eq(&got, want))
        return KILN_OK;
    return error_set(KILN_ERR_SHAPE, "%s: %s is %s; expected %s", op, what,
                     shape_str(&got, a, sizeof a), shape_str(want, b, sizeof b));
}

kiln_status op_check_count(const char *op, const char *what, size_t n)
{
    if (n <= UINT32_MAX)
        return KILN_OK;
    return error_set(KILN_ERR_TOO_LARGE, "%s: %s has %zu elements; the operators handle at "
                                         "most %u", op, what, n, UINT32_MAX);
}

kiln_status tensor_of(kiln_ctx *ctx, const kiln_shape *s, kiln_tensor **out)
{
    return kiln_tensor_create(ctx, s->ndim, s->d, out);
}

size_t reduce_group_size(const kiln_ctx *ctx)
{
    /* the tree sum keeps one float per work-item in local memory */
    size_t wg = 64;
    while (wg > 1 && (wg > ctx->info.max_work_group_size ||
                      wg * sizeof(float) * 2 > ctx->info.local_mem_bytes))
        wg /= 2;
    return wg;
}

size_t pointwise_group_size(const kiln_ctx *ctx)
{
    size_t wg = device_loops_work_groups(&ctx->info) ? 1024 : 64;
    while (wg > 1 && wg > ctx->info.max_work_group_size)
        wg /= 2;
    return wg;
}

/* WG, and CHUNKED where work-groups run as loops (PoCL): each work-item
 * then sums a contiguous chunk (group.cl's span_of). */
const char *reduce_options(const kiln_ctx *ctx, char *buf, size_t size)
{
    snprintf(buf, size, "-DWG=%zu%s", reduce_group_size(ctx),
             device_loops_work_groups(&ctx->info) ? " -DCHUNKED" : "");
    return buf;
}

int op_sums_by_plane(const kiln_ctx *ctx, size_t s)
{
    return device_loops_work_groups(&ctx->info) && s >= 16;
}

int op_sums_by_column(const kiln_ctx *ctx, size_t s)
{
    return device_loops_work_groups(&ctx->info) && s == 1;
}

size_t op_column_items(size_t columns)
{
    return (columns + 15) / 16;
}

size_t op_plane_items(const kiln_ctx *ctx, size_t planes)
{
    size_t items = 32 * device_units(&ctx->info);
    return planes < items ? planes : items;
}

/* channel_sums as sums over planes (group.cl): part (rows * cols), then the
 * totals of each channel. */
static kiln_status channel_sums_by_plane(kiln_ctx *ctx, cl_mem x, cl_uint rows, cl_uint cols,
                                         cl_uint inner, cl_mem out)
{
    char opts[32];
    cl_kernel k, total;
    kiln_tensor *part = NULL;
    kiln_shape s = shape_make(1, (size_t)rows * cols, 0, 0, 0);
    cl_uint planes = rows * cols;
    const char *src = "group.cl+reduce.cl", *o = reduce_options(ctx, opts, sizeof opts);
    kiln_status st = kernel_get(ctx, src, o, "plane_sums", &k);
    if (st == KILN_OK)
        st = kernel_get(ctx, src, o, "channel_totals", &total);
    if (st == KILN_OK)
        st = tensor_of(ctx, &s, &part);
    if (st == KILN_OK)
        st = launch_1d(ctx, k, "plane_sums", op_plane_items(ctx, planes), 1, KARG(x),
                       KARG(part->buf), KARG(planes), KARG(inner));
    if (st == KILN_OK)
        st = launch_1d(ctx, total, "channel_totals", cols, 64, KARG(part->buf),
                       KARG(out), KARG(rows), KARG(cols));
    kiln_tensor_free(part);
    return st;
}

kiln_status op_channel_sums(kiln_ctx *ctx, cl_mem x, size_t rows, size_t cols, size_t inner,
                            cl_mem out)
{
    if (op_sums_by_plane(ctx, inner))
        return channel_sums_by_plane(ctx, x, rows, cols, inner, out);
    char opts[32];
    cl_kernel k;
    if (op_sums_by_column(ctx, inner)) {
        cl_uint r = rows, c = cols;
        kiln_status st = kernel_get(ctx, "group.cl+reduce.cl",
                                    reduce_options(ctx, opts, sizeof opts),
                                    "column_totals", &k);
        return st != KILN_OK ? st
                             : launch_1d(ctx, k, "column_totals", op_column_items(cols),
                                         1, KARG(x), KARG(out), KARG(r), KARG(c));
    }
    kiln_status st = kernel_get(ctx, "group.cl+reduce.cl", reduce_options(ctx, opts, sizeof opts),
                                "channel_sums", &k);
    if (st != KILN_OK)
        return st;
    size_t wg = reduce_group_size(ctx);
    cl_uint r = rows, c = cols, s = inner;
    return launch_1d(ctx, k, "channel_sums", cols * wg, wg, KARG(x), KARG(out),
                     KARG(r), KARG(c), KARG(s));
}

/* Sums n values (or their squares) of x into partial[first .. first+groups). */
static kiln_status partial_sums(kiln_ctx *ctx, cl_mem x, size_t n, int square, cl_mem partial,
                                size_t first, size_t groups)
{
    char opts[32];
    cl_kernel k;
    int chunked = device_loops_work_groups(&ctx->info);
    const char *name = chunked ? "chunk_sums" : "partial_sums";
    kiln_status st = kernel_get(ctx, "group.cl+reduce.cl",
                                reduce_options(ctx, opts, sizeof opts), name, &k);
    if (st != KILN_OK)
        return st;
    cl_buffer_region region = {first * sizeof(float), groups * sizeof(float)};
    cl_int err;
    cl_mem view = clCreateSubBuffer(partial, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION,
                                    &region, &err);
    if (err != CL_SUCCESS)
        return error_cl(err, "clCreateSubBuffer");
    size_t wg = chunked ? 1 : reduce_group_size(ctx);
    cl_uint count = n, chunk = (n + groups - 1) / groups;
    cl_int sq = square;
    st = launch_1d(ctx, k, name, groups * wg, wg, KARG(x), KARG(count),
                   KARG(chunk), KARG(view), KARG(sq));
    programs_release_buffer(ctx, view); /* after the launch, if it waits */
    return st;
}

static kiln_status sum_partials(kiln_ctx *ctx, cl_mem partial, size_t count, cl_mem out,
                                float scale)
{
    char opts[32];
    cl_kernel k;
    kiln_status st = kernel_get(ctx, "group.cl+reduce.cl", reduce_options(ctx, opts, sizeof opts),
                                "sum_partials", &k);
    if (st != KILN_OK)
        return st;
    size_t wg = reduce_group_size(ctx);
    cl_uint c = count;
    return launch_1d(ctx, k, "sum_partials", wg, wg, KARG(partial), KARG(c), KARG(out),
                     KARG(scale));
}

/* Groups per tensor: enough to fill a device, few enough for one final pass. */
static size_t groups_for(size_t n)
{
    size_t groups = (n + 4095) / 4096;
    return groups < 1 ? 1 : groups > 256 ? 256 : groups;
}

kiln_status op_sum_all(kiln_ctx *ctx, cl_mem const *xs, const size_t *ns, size_t count,
                       int square, float scale, cl_mem out)
{
    /* Sub-buffer origins must be aligned: each tensor's slots start aligned,
     * and only the last needs no padding after it. */
    size_t align = ctx->info.mem_base_align_bits / 8 / sizeof(float);
    align = align < 1 ? 1 : align;
    size_t slots = 0;
    for (size_t i = 0; i < count; i++)
        slots += i + 1 < count ? (groups_for(ns[i]) + align - 1) / align * align
                               : groups_for(ns[i]);
    kiln_shape s = shape_make(1, slots ? slots : 1, 0, 0, 0);
    kiln_tensor *partial;
    kiln_status st = tensor_of(ctx, &s, &partial);
    if (st != KILN_OK)
        return st;
    /* the alignment gaps between tensors' slots are summed too: zero them */
    if (count > 1)
        st = kiln_tensor_fill(partial, 0.0f);
    size_t first = 0;
    for (size_t i = 0; i < count && st == KILN_OK; i++) {
        size_t groups = groups_for(ns[i]);
        st = partial_sums(ctx, xs[i], ns[i], square, partial->buf, first, groups);
        first += (groups + align - 1) / align * align;
    }
    if (st == KILN_OK)
        st = sum_partials(ctx, partial->buf, slots, out, scale);
    kiln_tensor_free(partial);
    return st;
}

kiln_status op_sum_squares(kiln_ctx *ctx, kiln_tensor *const *tensors, size_t count,
                           kiln_tensor *out)
{
    if (!ctx || !out || (count && !tensors))
        return error_set(KILN_ERR_INVALID_ARGUMENT, "sum_squares: missing tensors");
    if (out->numel != 1)
        return error_set(KILN_ERR_SHAPE, "sum_squares: the result tensor has %zu values; "
                                         "expected 1", out->numel);
    for (size_t i = 0; i < count; i++) {
        kiln_status st = op_check_count("sum_squares", "a tensor", tensors[i]->numel);
        if (st != KILN_OK)
            return st;
    }
    cl_mem *xs = malloc((count + 1) * sizeof *xs);
    size_t *ns = malloc((count + 1) * sizeof *ns);
    kiln_status st = KILN_OK;
    if (!xs || !ns)
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "sum_squares: out of host memory");
    for (size_t i = 0; st == KILN_OK && i < count; i++) {
        xs[i] = tensors[i]->buf;
        ns[i] = tensors[i]->numel;
    }
    if (st == KILN_OK)
        st = op_sum_all(ctx, xs, ns, count, 1, 1.0f, out->buf);
    free(xs);
    free(ns);
    return st;
}
