/* float32 device tensors: shape, buffer, upload/download, fill, copy. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"

kiln_shape shape_of(const kiln_tensor *t)
{
    kiln_shape s = {.ndim = t->ndim};
    for (int i = 0; i < t->ndim; i++)
        s.d[i] = t->shape[i];
    return s;
}

kiln_shape shape_make(int ndim, size_t d0, size_t d1, size_t d2, size_t d3)
{
    kiln_shape s = {.ndim = ndim, .d = {d0, d1, d2, d3}};
    for (int i = ndim; i < KILN_MAX_DIMS; i++)
        s.d[i] = 0;
    return s;
}

size_t shape_numel(const kiln_shape *s)
{
    size_t n = 1;
    for (int i = 0; i < s->ndim; i++)
        n *= s->d[i];
    return n;
}

const char *shape_str(const kiln_shape *s, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < s->ndim && used < size; i++) {
        int n = snprintf(buf + used, size - used, i ? "x%zu" : "%zu", s->d[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    return buf;
}

int shape_eq(const kiln_shape *a, const kiln_shape *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->d[i] != b->d[i])
            return 0;
    return 1;
}

kiln_shape shape_with_batch(const kiln_shape *sample, size_t batch)
{
    kiln_shape b = {.ndim = sample->ndim + 1, .d = {batch}};
    for (int i = 0; i < sample->ndim; i++)
        b.d[i + 1] = sample->d[i];
    return b;
}

kiln_shape shape_without_batch(const kiln_shape *batched)
{
    kiln_shape s = {.ndim = batched->ndim - 1};
    for (int i = 1; i < batched->ndim; i++)
        s.d[i - 1] = batched->d[i];
    return s;
}

const char *kiln_tensor_shape_str(const kiln_tensor *t, char *buf, size_t size)
{
    kiln_shape s = t ? shape_of(t) : (kiln_shape){0};
    return shape_str(&s, buf, size);
}

static void shape_text(int ndim, const size_t *shape, char *buf, size_t size)
{
    kiln_shape s = {.ndim = ndim};
    for (int i = 0; i < ndim; i++)
        s.d[i] = shape[i];
    shape_str(&s, buf, size);
}

/* Checks the shape and computes the element count without overflow. */
static kiln_status check_shape(const kiln_ctx *ctx, int ndim, const size_t *shape,
                               size_t *numel)
{
    if (ndim < 1 || ndim > KILN_MAX_DIMS || !shape)
        return error_set(KILN_ERR_INVALID_ARGUMENT,
                         "kiln_tensor_create: %d dimensions; expected 1 to %d", ndim,
                         KILN_MAX_DIMS);
    char text[128];
    shape_text(ndim, shape, text, sizeof text);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == 0)
            return error_set(KILN_ERR_INVALID_ARGUMENT,
                             "kiln_tensor_create: shape %s has a zero dimension (axis %d); "
                             "every dimension must be at least 1",
                             text, i);
        if (n > SIZE_MAX / sizeof(float) / shape[i])
            return error_set(KILN_ERR_TOO_LARGE,
                             "kiln_tensor_create: shape %s overflows the address space", text);
        n *= shape[i];
    }
    uint64_t bytes = (uint64_t)n * sizeof(float);
    if (bytes > ctx->info.max_alloc_bytes)
        return error_set(KILN_ERR_TOO_LARGE,
                         "kiln_tensor_create: shape %s needs %llu bytes, but %s allows at most "
                         "%llu bytes in one buffer (CL_DEVICE_MAX_MEM_ALLOC_SIZE)",
                         text, (unsigned long long)bytes, ctx->info.name,
                         (unsigned long long)ctx->info.max_alloc_bytes);
    *numel = n;
    return KILN_OK;
}

/* A tensor struct for a checked shape, with buf to be set by the caller. */
static kiln_status tensor_new(kiln_ctx *ctx, int ndim, const size_t *shape, kiln_tensor **out)
{
    if (!ctx || !out)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_tensor_create: ctx and out are "
                                                    "required");
    *out = NULL;
    size_t numel = 0;
    kiln_status st = check_shape(ctx, ndim, shape, &numel);
    if (st != KILN_OK)
        return st;
    kiln_tensor *t = calloc(1, sizeof *t);
    if (!t)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_tensor_create: out of host memory");
    t->ctx = ctx;
    t->ndim = ndim;
    t->numel = numel;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    *out = t;
    return KILN_OK;
}

/* ---- spare buffers (runtime.h's kiln_spares) ---------------------------- */

#define SPARE_MIN_BYTES (64u << 10) /* smaller buffers are cheap to make */

/* At most an eighth of the device's memory, and 1 GiB, is kept spare. */
static size_t spare_limit(const kiln_ctx *ctx)
{
    uint64_t limit = ctx->info.global_mem_bytes / 8;
    return limit < (1u << 30) ? (size_t)limit : (size_t)1 << 30;
}

static void spare_remove(kiln_spares *s, int i)
{
    s->total -= s->bytes[i];
    s->count--;
    memmove(&s->buf[i], &s->buf[i + 1], (size_t)(s->count - i) * sizeof s->buf[0]);
    memmove(&s->bytes[i], &s->bytes[i + 1], (size_t)(s->count - i) * sizeof s->bytes[0]);
}

/* A spare buffer of exactly bytes, the newest, or NULL. */
static cl_mem spare_take(kiln_ctx *ctx, size_t bytes)
{
    kiln_spares *s = &ctx->spares;
    for (int i = s->count - 1; i >= 0; i--)
        if (s->bytes[i] == bytes) {
            cl_mem buf = s->buf[i];
            spare_remove(s, i);
            return buf;
        }
    return NULL;
}

/* Keeps buf for reuse, making room by releasing the oldest, or releases it. */
static void spare_put(kiln_ctx *ctx, cl_mem buf, size_t bytes)
{
    kiln_spares *s = &ctx->spares;
    size_t limit = spare_limit(ctx);
    if (bytes < SPARE_MIN_BYTES || bytes > limit) {
        programs_release_buffer(ctx, buf);
        return;
    }
    while (s->count == KILN_SPARE_BUFFERS || s->total + bytes > limit) {
        programs_release_buffer(ctx, s->buf[0]);
        spare_remove(s, 0);
    }
    s->buf[s->count] = buf;
    s->bytes[s->count++] = bytes;
    s->total += bytes;
}

void spares_free(kiln_ctx *ctx)
{
    while (ctx->spares.count > 0) {
        clReleaseMemObject(ctx->spares.buf[0]);
        spare_remove(&ctx->spares, 0);
    }
}

kiln_status kiln_tensor_create(kiln_ctx *ctx, int ndim, const size_t *shape, kiln_tensor **out)
{
    kiln_tensor *t;
    kiln_status st = require_args("kiln_tensor_create", ARG(out), NULL);
    if (st == KILN_OK)
        st = tensor_new(ctx, ndim, shape, &t);
    if (st != KILN_OK)
        return st;
    cl_int err = CL_SUCCESS;
    t->buf = spare_take(ctx, t->numel * sizeof(float));
    if (!t->buf)
        t->buf = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, t->numel * sizeof(float), NULL,
                                &err);
    if (err != CL_SUCCESS) {
        char text[128];
        kiln_tensor_shape_str(t, text, sizeof text);
        free(t);
        return error_cl_in(err, "clCreateBuffer", "tensor of shape %s", text);
    }
    *out = t;
    return KILN_OK;
}

kiln_status tensor_view(kiln_ctx *ctx, cl_mem parent, size_t offset, int ndim,
                        const size_t *shape, kiln_tensor **out)
{
    kiln_tensor *t;
    kiln_status st = tensor_new(ctx, ndim, shape, &t);
    if (st != KILN_OK)
        return st;
    cl_buffer_region region = {offset, t->numel * sizeof(float)};
    cl_int err;
    t->view = 1;
    t->buf = clCreateSubBuffer(parent, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &region,
                               &err);
    if (err != CL_SUCCESS) {
        free(t);
        return error_cl_in(err, "clCreateSubBuffer", "view of %zu bytes at offset %zu",
                           region.size, offset);
    }
    *out = t;
    return KILN_OK;
}

void kiln_tensor_free(kiln_tensor *t)
{
    if (!t)
        return;
    if (t->view)
        programs_release_buffer(t->ctx, t->buf);
    else
        spare_put(t->ctx, t->buf, t->numel * sizeof(float));
    free(t);
}

int kiln_tensor_ndim(const kiln_tensor *t)
{
    return t ? t->ndim : 0;
}

size_t kiln_tensor_dim(const kiln_tensor *t, int axis)
{
    if (!t || axis < 0 || axis >= t->ndim)
        return 0;
    return t->shape[axis];
}

size_t kiln_tensor_numel(const kiln_tensor *t)
{
    return t ? t->numel : 0;
}

static kiln_status check_count(const kiln_tensor *t, const void *host, size_t count,
                               const char *call, const char *host_name)
{
    if (!t || !host)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "%s: %s is NULL", call, !t ? "t" : host_name);
    if (count != t->numel) {
        char text[128];
        return error_set(KILN_ERR_SHAPE, "%s: %zu values given for a tensor of shape %s (%zu "
                                         "values)",
                         call, count, kiln_tensor_shape_str(t, text, sizeof text), t->numel);
    }
    return KILN_OK;
}

/* Four floats and their bits: GCC's and Clang's vector extensions, which
 * every x86-64 and ARM64 target holds in one register. */
typedef float floats4 __attribute__((vector_size(16)));
typedef uint32_t bits4 __attribute__((vector_size(16)));

/* The bits of x - x for x[0..3]: 0 where finite, NaN's where not. */
static bits4 nonfinite_bits4(const float *x)
{
    floats4 v, d;
    bits4 b;
    memcpy(&v, x, sizeof v);
    d = v - v;
    memcpy(&b, &d, sizeof b);
    return b;
}

size_t first_nonfinite(const float *x, size_t n)
{
    size_t i = 0;
    /* x - x is +0 for a finite x (bits 0) and NaN for an infinity or a NaN:
     * the bits ORed over blocks of 1024 in four vectors of four, and a
     * block that has one scanned again value by value below. Written as
     * vectors because -O2 left the plain loop scalar: 35 us for a batch of
     * 128 Fashion-MNIST images on an AVX-512 Xeon (a tenth of a
     * 128-sample forward); this way 6 us. */
    for (; i + 1024 <= n; i += 1024) {
        bits4 a = {0}, b = {0}, c = {0}, d = {0};
        for (size_t j = i; j < i + 1024; j += 16) {
            a |= nonfinite_bits4(x + j);
            b |= nonfinite_bits4(x + j + 4);
            c |= nonfinite_bits4(x + j + 8);
            d |= nonfinite_bits4(x + j + 12);
        }
        bits4 any = (a | b) | (c | d);
        if (any[0] | any[1] | any[2] | any[3])
            break;
    }
    for (; i < n; i++)
        if (!isfinite(x[i]))
            return i;
    return n;
}

kiln_status tensor_write(kiln_tensor *t, const float *src, size_t count, int blocking)
{
    kiln_status st = check_count(t, src, count, "kiln_tensor_upload", "src");
    if (st == KILN_OK)
        st = programs_flush(t->ctx);
    if (st != KILN_OK)
        return st;
    cl_int err = clEnqueueWriteBuffer(t->ctx->queue, t->buf, blocking ? CL_TRUE : CL_FALSE, 0,
                                      count * sizeof(float), src, 0, NULL, NULL);
    return err == CL_SUCCESS ? KILN_OK : error_cl(err, "clEnqueueWriteBuffer");
}

kiln_status tensor_read(const kiln_tensor *t, float *dst, size_t count, int blocking)
{
    kiln_status st = check_count(t, dst, count, "kiln_tensor_download", "dst");
    if (st == KILN_OK)
        st = programs_flush(t->ctx);
    if (st != KILN_OK)
        return st;
    cl_int err = clEnqueueReadBuffer(t->ctx->queue, t->buf, blocking ? CL_TRUE : CL_FALSE, 0,
                                     count * sizeof(float), dst, 0, NULL, NULL);
    return err == CL_SUCCESS ? KILN_OK : error_cl(err, "clEnqueueReadBuffer");
}

kiln_status tensor_read_begin(const kiln_tensor *t, float *dst, size_t count, cl_event *done)
{
    *done = NULL;
    kiln_status st = check_count(t, dst, count, "tensor_read_begin", "dst");
    if (st == KILN_OK)
        st = programs_flush(t->ctx);
    if (st != KILN_OK)
        return st;
    cl_int err = clEnqueueReadBuffer(t->ctx->queue, t->buf, CL_FALSE, 0, count * sizeof(float),
                                     dst, 0, NULL, done);
    if (err == CL_SUCCESS)
        err = clFlush(t->ctx->queue);
    return err == CL_SUCCESS ? KILN_OK : error_cl(err, "clEnqueueReadBuffer");
}

kiln_status tensor_read_end(cl_event done)
{
    if (!done)
        return KILN_OK;
    cl_int err = clWaitForEvents(1, &done);
    clReleaseEvent(done);
    return err == CL_SUCCESS ? KILN_OK : error_cl(err, "clWaitForEvents");
}

kiln_status kiln_tensor_upload(kiln_tensor *t, const float *src, size_t count)
{
    return tensor_write(t, src, count, 1);
}

kiln_status kiln_tensor_download(const kiln_tensor *t, float *dst, size_t count)
{
    return tensor_read(t, dst, count, 1);
}

kiln_status kiln_tensor_fill(kiln_tensor *t, float value)
{
    if (!t)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_tensor_fill: tensor is NULL");
    if (t->numel == 0)
        return KILN_OK;
    kiln_status st = programs_flush(t->ctx);
    if (st != KILN_OK)
        return st;
    /* the driver's fill, not a kernel: nothing to compile before a
     * network's first batch (a cold start built tensor.cl for it) */
    cl_int err = clEnqueueFillBuffer(t->ctx->queue, t->buf, &value, sizeof value, 0,
                                     t->numel * sizeof(float), 0, NULL, NULL);
    t->ctx->launches++;
    if (t->ctx->trace.fn)
        writef(&t->ctx->trace, "    fill   %zu values\n", t->numel);
    return err == CL_SUCCESS ? KILN_OK : error_cl(err, "clEnqueueFillBuffer");
}

kiln_status kiln_tensor_copy(kiln_tensor *dst, const kiln_tensor *src)
{
    if (!dst || !src)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_tensor_copy: tensors are required");
    if (dst->ctx != src->ctx)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_tensor_copy: tensors belong to "
                                                    "different contexts");
    if (dst->numel != src->numel) {
        char a[128], b[128];
        return error_set(KILN_ERR_SHAPE, "kiln_tensor_copy: source of shape %s (%zu values) "
                                         "does not fit destination of shape %s (%zu values)",
                         kiln_tensor_shape_str(src, a, sizeof a), src->numel,
                         kiln_tensor_shape_str(dst, b, sizeof b), dst->numel);
    }
    if (dst == src)
        return KILN_OK;
    kiln_status st = programs_flush(dst->ctx);
    if (st != KILN_OK)
        return st;
    cl_int err = clEnqueueCopyBuffer(dst->ctx->queue, src->buf, dst->buf, 0, 0,
                                     src->numel * sizeof(float), 0, NULL, NULL);
    dst->ctx->launches++;
    if (dst->ctx->trace.fn)
        writef(&dst->ctx->trace, "    copy   %zu bytes\n", src->numel * sizeof(float));
    return err == CL_SUCCESS ? KILN_OK : error_cl(err, "clEnqueueCopyBuffer");
}
