/* Gradient buckets: with several ranks, the flat gradient buffer is cut
 * into ranges of whole layers, the last layers' first (backward writes
 * them first). As soon as backward has enqueued a bucket's layers, its
 * range is read back without waiting (an event marks its arrival); once
 * backward is all enqueued, each bucket is weighted by this rank's share
 * and its allreduce started (MPI_Iallreduce) as soon as it has arrived,
 * while the device is still computing the earlier layers' gradients. The
 * optimizer (and clipping, on the global gradient) runs after all of them
 * are summed and uploaded. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "net/net.h"

/* A bucket closes before a layer that would take it past this many KiB
 * ($KILN_BUCKET_KB overrides it). */
#define BUCKET_KB 512

static size_t bucket_bytes(void)
{
    const char *env = getenv("KILN_BUCKET_KB");
    long kb = env ? atol(env) : 0;
    return (size_t)(kb > 0 ? kb : BUCKET_KB) * 1024;
}

typedef struct {
    size_t first_step; /* its lowest step: read once every step from it up has run */
    size_t lo, hi;     /* floats [lo, hi) of the flat buffer */
    cl_event ready;    /* its read back, while in flight (or NULL) */
} bucket;

struct grad_buckets {
    kiln_tensor *grads; /* the network's flat gradients */
    float *host;
    bucket *b;
    size_t count, next; /* next: the first bucket not yet read back */
    dist_batch *pending;
    pipe_backward_hook hook;
    int poll; /* progress MPI while waiting for a read (wait_travelling) */
};

/* Where step s's gradients start in the flat buffer, in floats. */
static kiln_status step_offset(const pipe_step *s, size_t *at)
{
    size_t bytes = 0;
    cl_int err = clGetMemObjectInfo(s->dparam[0]->buf, CL_MEM_OFFSET, sizeof bytes, &bytes, NULL);
    *at = bytes / sizeof(float);
    return err == CL_SUCCESS ? KILN_OK : error_cl(err, "clGetMemObjectInfo");
}

/* Buckets of whole steps from the last one back, each ending where the
 * one after it starts; the first bucket reaches the buffer's end, the
 * last its start. */
static kiln_status plan(grad_buckets *g, const pipeline *p)
{
    size_t total = p->grads->numel, hi = total, lo = total, first = 0, n = 0;
    size_t cap = bucket_bytes();
    int open = 0;
    kiln_status st = KILN_OK;
    for (size_t i = p->count; i-- > 0 && st == KILN_OK;) {
        size_t at;
        if (p->steps[i].shapes.n_params == 0 || (st = step_offset(&p->steps[i], &at)) != KILN_OK)
            continue;
        if (open && (hi - at) * sizeof(float) > cap) {
            g->b[n++] = (bucket){.first_step = first, .lo = lo, .hi = hi};
            hi = lo;
        }
        open = 1;
        first = i;
        lo = at;
    }
    if (open)
        g->b[n++] = (bucket){.first_step = first, .lo = 0, .hi = hi};
    g->count = n;
    return st;
}

/* Enqueues the read of every bucket whose layers are all enqueued (those
 * from step done_from up). */
static kiln_status enqueued(void *user, size_t done_from)
{
    grad_buckets *g = user;
    kiln_ctx *ctx = g->grads->ctx;
    while (g->next < g->count && done_from <= g->b[g->next].first_step) {
        bucket *b = &g->b[g->next++];
        cl_int err = clEnqueueReadBuffer(ctx->queue, g->grads->buf, CL_FALSE,
                                         b->lo * sizeof(float), (b->hi - b->lo) * sizeof(float),
                                         g->host + b->lo, 0, NULL, &b->ready);
        if (err != CL_SUCCESS)
            return error_cl(err, "clEnqueueReadBuffer of a gradient bucket");
        if ((err = clFlush(ctx->queue)) != CL_SUCCESS)
            return error_cl(err, "clFlush");
    }
    return KILN_OK;
}

/* Events of a step that never reached buckets_reduce (it failed). */
static void forget_reads(grad_buckets *g)
{
    for (size_t k = 0; k < g->count; k++)
        if (g->b[k].ready) {
            clReleaseEvent(g->b[k].ready);
            g->b[k].ready = NULL;
        }
    g->next = 0;
}

void buckets_free(grad_buckets *g)
{
    if (!g)
        return;
    forget_reads(g);
    dist_batch_free(g->pending);
    free(g->b);
    free(g->host);
    free(g);
}

kiln_status buckets_create(const pipeline *p, grad_buckets **out)
{
    grad_buckets *g = calloc(1, sizeof *g);
    size_t steps = p->count ? p->count : 1;
    kiln_status st = KILN_OK;
    if (!g || !(g->b = calloc(steps, sizeof *g->b)) ||
        !(g->host = malloc(p->grads->numel * sizeof *g->host)))
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "out of host memory for the gradients");
    if (st == KILN_OK) {
        g->grads = p->grads;
        g->hook = (pipe_backward_hook){enqueued, g};
        g->poll = p->grads->ctx->info.type != KILN_DEVICE_CPU;
        st = plan(g, p);
    }
    if (st == KILN_OK)
        st = dist_batch_open(g->count ? g->count : 1, &g->pending);
    if (st != KILN_OK) {
        buckets_free(g);
        return st;
    }
    *out = g;
    return KILN_OK;
}

const pipe_backward_hook *buckets_hook(grad_buckets *g)
{
    forget_reads(g);
    return &g->hook;
}

/* Waits for a bucket's read while the buckets before it travel: MPI
 * moves them only inside its calls, so it is called every POLL_US. Not
 * where the device is the host's CPU: there the waking rank takes time
 * from the device's threads on its cores (one core per rank, the CNN's
 * step: 70-75 ms blocking, 90-95 ms polling every 50 us; the MLP's 2.3 ms
 * against 2.5), and MPI still moves the buckets when the next one starts. */
#define POLL_US 50
static cl_int wait_travelling(grad_buckets *g, cl_event ready, dist_comm *comm)
{
    while (g->poll && dist_batch_pending(g->pending)) {
        cl_int status = CL_COMPLETE;
        cl_int err = clGetEventInfo(ready, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status,
                                    &status, NULL);
        if (err != CL_SUCCESS || status == CL_COMPLETE || status < 0)
            break;
        if (dist_batch_progress(g->pending, comm) != KILN_OK)
            break; /* dist_batch_wait reports it */
        nanosleep(&(struct timespec){0, POLL_US * 1000}, NULL);
    }
    return clWaitForEvents(1, &ready);
}

/* Bucket b of this rank's gradients on the host, times share: read back
 * during backward (or now, if backward did not reach the hook). */
static kiln_status arrived(grad_buckets *g, bucket *b, float share, dist_comm *comm)
{
    kiln_status st = KILN_OK;
    if (b->ready) {
        cl_int err = wait_travelling(g, b->ready, comm);
        clReleaseEvent(b->ready);
        b->ready = NULL;
        if (err != CL_SUCCESS)
            st = error_cl(err, "clWaitForEvents of a gradient bucket");
    } else {
        cl_int err = clEnqueueReadBuffer(g->grads->ctx->queue, g->grads->buf, CL_TRUE,
                                         b->lo * sizeof(float), (b->hi - b->lo) * sizeof(float),
                                         g->host + b->lo, 0, NULL, NULL);
        if (err != CL_SUCCESS)
            st = error_cl(err, "clEnqueueReadBuffer of a gradient bucket");
    }
    for (size_t k = b->lo; k < b->hi; k++)
        g->host[k] *= share;
    return st;
}

kiln_status buckets_reduce(grad_buckets *g, dist_comm *comm, size_t mine, double share)
{
    kiln_status st = KILN_OK;
    if (!mine) /* no samples here: nothing of its own, in the others' order */
        memset(g->host, 0, g->grads->numel * sizeof *g->host);
    for (size_t k = 0; k < g->count && st == KILN_OK; k++) {
        bucket *b = &g->b[k];
        if (mine)
            st = arrived(g, b, (float)share, comm);
        if (st == KILN_OK)
            st = dist_batch_start(g->pending, comm, g->host + b->lo, b->hi - b->lo);
    }
    forget_reads(g); /* after a failure: events not waited for */
    kiln_status waited = dist_batch_wait(g->pending, comm);
    st = st == KILN_OK ? waited : st;
    return st == KILN_OK ? kiln_tensor_upload(g->grads, g->host, g->grads->numel) : st;
}
