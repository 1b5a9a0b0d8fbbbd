/* Launching kernels: at once, or recorded while kernels wait for their
 * programs and replayed in order once they are built.
 *
 * While a network holds the program cache (programs_hold), a kernel whose
 * program is not in the context's memory cache is not built at once:
 * kernel_get hands back a placeholder, and every launch from then on is
 * recorded (buffers freed meanwhile are released after them). At the
 * first thing that reaches the queue otherwise (a transfer, a fill or
 * copy, a wait, CLBlast), the launches are enqueued in order; before the
 * first launch of a kernel still waiting, every waiting kernel is built:
 * those of one source and options as one request, and the requests whose
 * sources and options fit together as one program (program_bundle_build).
 * PoCL pays about 0.13 s a program before its kernels' own cost and builds
 * one program at a time, so a network's cold start builds a few programs
 * where it built one per kernel. The grouping is the same in every run of
 * the same network, so the disk cache
 * finds each group's binary under its key, which names the kernels. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"

typedef struct pending_kernel {
    char *source, *options, *kernel;
    cl_kernel real;
    struct pending_kernel *next;
} pending_kernel;

typedef struct recorded_launch {
    cl_kernel kernel; /* a placeholder (a pending_kernel) or a built kernel */
    char *name;
    cl_uint dims;
    size_t global[3], local[3];
    int has_local, nargs;
    kiln_karg *args; /* their values copied after the array, each aligned */
    struct recorded_launch *next;
} recorded_launch;

struct kiln_deferred {
    int busy; /* building and replaying: kernel_get and launches go through */
    pending_kernel *kernels; /* kept for the context's life: a caller may keep
                                a placeholder and launch it after the flush */
    recorded_launch *first, **last;
    cl_mem *buffers; /* released once the launches are enqueued */
    size_t n_buffers, cap_buffers;
    kiln_status failed; /* a flush that no caller could be told of */
    char failed_text[512];
};

int defer_wanted(kiln_ctx *ctx)
{
    return programs_held(ctx) && !(ctx->deferred && ctx->deferred->busy) && !ctx->profile &&
           !ctx->fail_launch;
}

/* Whether launches are being recorded. */
static int pending(const kiln_ctx *ctx)
{
    return ctx->deferred && !ctx->deferred->busy && ctx->deferred->first;
}

static char *dup_text(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    return d ? memcpy(d, s, n) : NULL;
}

kiln_status defer_kernel(kiln_ctx *ctx, const char *source, const char *options,
                         const char *kernel, cl_kernel *out)
{
    kiln_deferred *d = ctx->deferred;
    if (!d && (d = ctx->deferred = calloc(1, sizeof *d)) != NULL)
        d->last = &d->first;
    if (!d)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "kernel %s of %s: out of host memory",
                         kernel, source);
    for (pending_kernel *k = d->kernels; k; k = k->next)
        if (!k->real && !strcmp(k->source, source) && !strcmp(k->options, options) &&
            !strcmp(k->kernel, kernel)) {
            *out = (cl_kernel)(void *)k;
            return KILN_OK;
        }
    pending_kernel *k = calloc(1, sizeof *k);
    if (k) {
        k->source = dup_text(source);
        k->options = dup_text(options);
        k->kernel = dup_text(kernel);
    }
    if (!k || !k->source || !k->options || !k->kernel) {
        if (k) {
            free(k->source);
            free(k->options);
            free(k->kernel);
        }
        free(k);
        return error_set(KILN_ERR_OUT_OF_MEMORY, "kernel %s of %s: out of host memory",
                         kernel, source);
    }
    k->next = d->kernels;
    d->kernels = k;
    *out = (cl_kernel)(void *)k;
    return KILN_OK;
}

#define ARG_ALIGN 16 /* as malloc's, for any argument type (float4, cl_mem) */

static size_t aligned(size_t n)
{
    return (n + ARG_ALIGN - 1) / ARG_ALIGN * ARG_ALIGN;
}

static kiln_status record(kiln_ctx *ctx, cl_kernel kernel, const char *name, cl_uint dims,
                          const size_t *global, const size_t *local, const kiln_karg *args,
                          int nargs)
{
    size_t head = aligned(sizeof(recorded_launch) + (size_t)nargs * sizeof(kiln_karg));
    size_t bytes = head;
    for (int i = 0; i < nargs; i++)
        bytes += args[i].value ? aligned(args[i].size) : 0;
    recorded_launch *r = calloc(1, bytes);
    if (r)
        r->name = dup_text(name);
    if (!r || !r->name) {
        free(r);
        return error_set(KILN_ERR_OUT_OF_MEMORY, "launch of %s: out of host memory", name);
    }
    r->kernel = kernel;
    r->dims = dims;
    r->has_local = local != NULL;
    for (cl_uint i = 0; i < dims; i++) {
        r->global[i] = global[i];
        r->local[i] = local ? local[i] : 0;
    }
    r->nargs = nargs;
    r->args = (kiln_karg *)(r + 1);
    unsigned char *value = (unsigned char *)r + head;
    for (int i = 0; i < nargs; i++) {
        r->args[i] = (kiln_karg){args[i].size, args[i].value ? value : NULL};
        if (args[i].value) {
            memcpy(value, args[i].value, args[i].size);
            value += aligned(args[i].size);
        }
    }
    *ctx->deferred->last = r;
    ctx->deferred->last = &r->next;
    return KILN_OK;
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(pending_kernel *const *)a)->kernel, (*(pending_kernel *const *)b)->kernel);
}

/* Whether k waits to be built from source with options. */
static int waits_with(const pending_kernel *k, const char *source, const char *options)
{
    return !k->real && !strcmp(k->source, source) && !strcmp(k->options, options);
}

/* Whether a and b wait with the same source and options: one request. */
static int same_group(const pending_kernel *a, const pending_kernel *b)
{
    return !a->real && waits_with(b, a->source, a->options);
}

/* The names of the waiting kernels of first's source and options, sorted
 * and separated by spaces (so that the disk cache key does not depend on
 * the order they were asked for); NULL when out of memory. */
static char *group_list(kiln_ctx *ctx, const pending_kernel *first)
{
    size_t n = 0, len = 0;
    for (pending_kernel *k = ctx->deferred->kernels; k; k = k->next)
        if (same_group(k, first))
            n++, len += strlen(k->kernel) + 1;
    pending_kernel **group = malloc(n * sizeof *group);
    char *list = malloc(len + 1);
    if (group && list) {
        n = 0;
        for (pending_kernel *k = ctx->deferred->kernels; k; k = k->next)
            if (same_group(k, first))
                group[n++] = k;
        qsort(group, n, sizeof *group, by_name);
        list[0] = '\0';
        for (size_t i = 0; i < n; i++)
            strcat(strcat(list, i ? " " : ""), group[i]->kernel);
    }
    free(group);
    if (!group)
        free(list);
    return group ? list : NULL;
}

/* The waiting kernel that leads its source and options' group: the one
 * asked for first (the list runs from the newest). */
static int leads_group(const pending_kernel *k)
{
    for (pending_kernel *o = k->next; o; o = o->next)
        if (same_group(o, k))
            return 0;
    return 1;
}

/* Builds every waiting kernel: those of one source and options as one
 * request, and the requests as few programs as program_bundle_build
 * makes. A group that does not build fails with its error when it holds
 * need, and waits for its own launch otherwise. */
static kiln_status build_pending(kiln_ctx *ctx, const pending_kernel *need)
{
    size_t n = 0;
    for (pending_kernel *k = ctx->deferred->kernels; k; k = k->next)
        n += !k->real && leads_group(k);
    const char **sources = calloc(n ? n : 1, sizeof *sources);
    const char **options = calloc(n ? n : 1, sizeof *options);
    char **lists = calloc(n ? n : 1, sizeof *lists);
    kiln_status st = sources && options && lists ? KILN_OK : KILN_ERR_OUT_OF_MEMORY;
    size_t i = n; /* from the oldest group, as the launches asked for them */
    for (pending_kernel *k = ctx->deferred->kernels; k && st == KILN_OK; k = k->next)
        if (!k->real && leads_group(k)) {
            sources[--i] = k->source;
            options[i] = k->options;
            if ((lists[i] = group_list(ctx, k)) == NULL)
                st = KILN_ERR_OUT_OF_MEMORY;
        }
    if (st == KILN_OK)
        st = program_bundle_build(ctx, n, sources, (const char *const *)options,
                                  (const char *const *)lists);
    else
        st = error_set(st, "building the waiting kernels: out of host memory");
    for (i = 0; i < n && st == KILN_OK; i++) {
        int needed = !strcmp(sources[i], need->source) && !strcmp(options[i], need->options);
        kiln_status built = program_group(ctx, sources[i], options[i], lists[i]);
        for (pending_kernel *k = ctx->deferred->kernels; k && built == KILN_OK; k = k->next)
            if (waits_with(k, sources[i], options[i]))
                built = kernel_get(ctx, k->source, k->options, k->kernel, &k->real);
        if (built != KILN_OK && needed)
            st = built;
        else if (built != KILN_OK)
            error_clear(); /* built again, and reported, at its own launch */
    }
    for (i = 0; lists && i < n; i++)
        free(lists[i]);
    free(sources);
    free(options);
    free(lists);
    return st;
}

/* The placeholder that kernel is, or NULL for a built kernel. */
static pending_kernel *placeholder(const kiln_ctx *ctx, cl_kernel kernel)
{
    for (pending_kernel *k = ctx->deferred ? ctx->deferred->kernels : NULL; k; k = k->next)
        if ((cl_kernel)(void *)k == kernel)
            return k;
    return NULL;
}

static kiln_status set_args(cl_kernel kernel, const char *name, const kiln_karg *args,
                            int nargs);
static kiln_status enqueue_now(kiln_ctx *ctx, cl_kernel kernel, const char *name,
                               cl_uint dims, const size_t *global, const size_t *local);

/* The built kernel for a launch, building its group first if it waits. */
static kiln_status real_kernel(kiln_ctx *ctx, cl_kernel kernel, const char *name,
                               cl_kernel *out)
{
    pending_kernel *k = placeholder(ctx, kernel);
    kiln_status st = k && !k->real ? build_pending(ctx, k) : KILN_OK;
    if (st == KILN_OK && k && !k->real)
        st = error_set(KILN_ERR_INVALID_ARGUMENT, "launch of %s: kernel %s of %s was not built",
                       name, k->kernel, k->source);
    *out = k ? k->real : kernel;
    return st;
}

/* Drops the recorded launches and releases the buffers freed meanwhile. */
static void forget_launches(kiln_deferred *d)
{
    for (recorded_launch *r = d->first, *next; r; r = next) {
        next = r->next;
        free(r->name);
        free(r);
    }
    d->first = NULL;
    d->last = &d->first;
    for (size_t i = 0; i < d->n_buffers; i++)
        clReleaseMemObject(d->buffers[i]);
    d->n_buffers = 0;
}

void programs_release_buffer(kiln_ctx *ctx, cl_mem buf)
{
    kiln_deferred *d = ctx->deferred;
    if (pending(ctx) && d->n_buffers == d->cap_buffers) {
        size_t cap = d->cap_buffers ? 2 * d->cap_buffers : 16;
        cl_mem *more = realloc(d->buffers, cap * sizeof *more);
        if (more) {
            d->buffers = more;
            d->cap_buffers = cap;
        } else {
            programs_flush_quietly(ctx);
        }
    }
    if (pending(ctx))
        d->buffers[d->n_buffers++] = buf;
    else
        clReleaseMemObject(buf);
}

kiln_status programs_flush(kiln_ctx *ctx)
{
    kiln_deferred *d = ctx->deferred;
    if (!d || d->busy || (!d->first && d->failed == KILN_OK))
        return KILN_OK;
    kiln_status st = d->failed;
    if (st != KILN_OK)
        error_set(st, "%s", d->failed_text);
    d->failed = KILN_OK;
    d->busy = 1;
    for (recorded_launch *r = d->first; r && st == KILN_OK; r = r->next) {
        cl_kernel k;
        st = real_kernel(ctx, r->kernel, r->name, &k);
        if (st == KILN_OK)
            st = set_args(k, r->name, r->args, r->nargs);
        if (st == KILN_OK)
            st = enqueue_now(ctx, k, r->name, r->dims, r->global, r->has_local ? r->local : NULL);
    }
    /* kernels asked for ahead of their launches build while the queue runs;
     * one that fails is built again, and reported, at its launch */
    for (pending_kernel *k = d->kernels; k && st == KILN_OK; k = k->next)
        if (!k->real) {
            if (build_pending(ctx, k) != KILN_OK) /* builds every one still waiting */
                error_clear();
            break;
        }
    d->busy = 0;
    forget_launches(d);
    return st;
}

void programs_flush_quietly(kiln_ctx *ctx)
{
    kiln_deferred *d = ctx->deferred;
    if (!pending(ctx) || d->failed != KILN_OK)
        return;
    kiln_status st = programs_flush(ctx);
    if (st != KILN_OK) {
        d->failed = st;
        snprintf(d->failed_text, sizeof d->failed_text, "%s", kiln_last_error());
    }
}

void deferred_free(kiln_ctx *ctx)
{
    kiln_deferred *d = ctx->deferred;
    if (!d)
        return;
    forget_launches(d);
    for (pending_kernel *k = d->kernels, *next; k; k = next) {
        next = k->next;
        free(k->source);
        free(k->options);
        free(k->kernel);
        free(k);
    }
    free(d->buffers);
    free(d);
    ctx->deferred = NULL;
}

static kiln_status set_args(cl_kernel kernel, const char *name, const kiln_karg *args,
                            int nargs)
{
    for (int i = 0; i < nargs; i++) {
        cl_int err = clSetKernelArg(kernel, (cl_uint)i, args[i].size, args[i].value);
        if (err != CL_SUCCESS)
            return error_cl_in(err, "clSetKernelArg", "%s, argument %d", name, i);
    }
    return KILN_OK;
}

static kiln_status enqueue_now(kiln_ctx *ctx, cl_kernel kernel, const char *name, cl_uint dims,
                               const size_t *global, const size_t *local)
{
    cl_event event = NULL;
    cl_int err = clEnqueueNDRangeKernel(ctx->queue, kernel, dims, NULL, global, local, 0, NULL,
                                        profile_slot(ctx, &event));
    if (err != CL_SUCCESS)
        return error_cl_in(err, "clEnqueueNDRangeKernel", "%s, %zux%zux%zu items", name,
                           global[0], dims > 1 ? global[1] : 1, dims > 2 ? global[2] : 1);
    profile_add(ctx, event, name);
    return KILN_OK;
}

/* Whether kernel is a placeholder whose program is not built. */
static int waiting(const kiln_ctx *ctx, cl_kernel kernel)
{
    const pending_kernel *k = ctx->deferred && !ctx->deferred->busy ? placeholder(ctx, kernel)
                                                                    : NULL;
    return k && !k->real;
}

/* Sets the arguments and enqueues, or records the launch while kernels
 * wait for their programs; counted and traced either way. */
static kiln_status launch(kiln_ctx *ctx, cl_kernel kernel, const char *name, cl_uint dims,
                          const size_t *global, const size_t *local, const kiln_karg *args,
                          int nargs)
{
    for (cl_uint i = 0; i < dims; i++)
        if (global[i] == 0)
            return KILN_OK;
    kiln_status st;
    if (ctx->fail_launch && ctx->launches + 1 >= ctx->fail_launch)
        st = error_cl_in(CL_OUT_OF_RESOURCES, "clEnqueueNDRangeKernel", "%s, %zux%zux%zu items",
                         name, global[0], dims > 1 ? global[1] : 1, dims > 2 ? global[2] : 1);
    else if (pending(ctx) || waiting(ctx, kernel))
        st = record(ctx, kernel, name, dims, global, local, args, nargs);
    else if ((st = real_kernel(ctx, kernel, name, &kernel)) == KILN_OK &&
             (st = set_args(kernel, name, args, nargs)) == KILN_OK)
        st = enqueue_now(ctx, kernel, name, dims, global, local);
    if (st != KILN_OK)
        return st;
    ctx->launches++;
    if (ctx->trace.fn)
        writef(&ctx->trace, "    kernel %-18s %zu x %zu x %zu\n", name, global[0],
               dims > 1 ? global[1] : 1, dims > 2 ? global[2] : 1);
    return KILN_OK;
}

kiln_status launch_1d_args(kiln_ctx *ctx, cl_kernel kernel, const char *name,
                           size_t global, size_t local, const kiln_karg *args, int nargs)
{
    if (local > 0)
        global = (global + local - 1) / local * local;
    return launch(ctx, kernel, name, 1, &global, local > 0 ? &local : NULL, args, nargs);
}

/* launch_3d's work-group extent along an x of at most a work-group that
 * it divides. */
#define LAUNCH_ROW 64

/* The largest divisor of n that is at most cap. */
static size_t divisor_upto(size_t n, size_t cap)
{
    for (size_t d = n < cap ? n : cap; d > 1; d--)
        if (n % d == 0)
            return d;
    return 1;
}

kiln_status launch_3d_args(kiln_ctx *ctx, cl_kernel kernel, const char *name, size_t x,
                           size_t y, size_t z, const kiln_karg *args, int nargs)
{
    size_t global[3] = {x, y, z}, local[3] = {1, 1, 1};
    /* Where a work-group runs as a loop (PoCL), the driver's own choice of
     * work-group for an odd range such as (14, 14, 8192) is small, and each
     * group costs a dispatch: up to 1024 items a group, as many as will
     * divide the range, fastest axis first (the one the loop vectorizes). */
    int loops = device_loops_work_groups(&ctx->info);
    if (loops) {
        size_t cap = ctx->info.max_work_group_size < 1024 ? ctx->info.max_work_group_size : 1024;
        /* 64 along a plane that it divides: PoCL compiles a kernel anew
         * for each work-group size, and planes of 32x32, 16x16 and 8x8
         * would otherwise each get their own (docs/architecture.md); a
         * long x (an optimizer's parameters) keeps its large groups */
        local[0] = x <= cap && x % LAUNCH_ROW == 0 ? LAUNCH_ROW : divisor_upto(x, cap);
        local[1] = divisor_upto(y, cap / local[0]);
        local[2] = divisor_upto(z, cap / (local[0] * local[1]));
    }
    return launch(ctx, kernel, name, 3, global, loops ? local : NULL, args, nargs);
}

kiln_status launch_groups_args(kiln_ctx *ctx, cl_kernel kernel, const char *name, size_t x,
                               size_t y, size_t z, size_t lx, const kiln_karg *args, int nargs)
{
    size_t global[3] = {(x + lx - 1) / lx * lx, y, z}, local[3] = {lx, 1, 1};
    return launch(ctx, kernel, name, 3, global, local, args, nargs);
}

kiln_status launch_tiles_args(kiln_ctx *ctx, cl_kernel kernel, const char *name, size_t x,
                              size_t y, const kiln_karg *args, int nargs)
{
    size_t global[2] = {x, y}, local[2] = {1, 1};
    return launch(ctx, kernel, name, 2, global, local, args, nargs);
}
