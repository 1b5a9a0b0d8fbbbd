/* Step profiles: while a context records, every launch keeps its OpenCL
 * event and the name of the kernel and of the layer that enqueued it;
 * afterwards the device's start and end times become a Chrome trace
 * (chrome://tracing, Perfetto) or per-layer totals. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "runtime/runtime.h"

typedef struct {
    cl_event event;
    char kernel[40];
    char layer[64];
} profile_entry;

struct kiln_profile {
    profile_entry *entries;
    size_t count, cap;
};

void ctx_set_label(kiln_ctx *ctx, const char *fmt, ...)
{
    if (!ctx->profile && !ctx->trace.fn)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->label, sizeof ctx->label, fmt, ap);
    va_end(ap);
}

cl_event *profile_slot(kiln_ctx *ctx, cl_event *slot)
{
    *slot = NULL;
    return ctx->profile ? slot : NULL;
}

/* Keeps event (or releases it when there is no room: a profile with a
 * missing launch is still a profile). */
void profile_add(kiln_ctx *ctx, cl_event event, const char *kernel)
{
    kiln_profile *p = ctx->profile;
    if (!event)
        return;
    if (p && p->count == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 256;
        profile_entry *grown = realloc(p->entries, cap * sizeof *grown);
        if (grown) {
            p->entries = grown;
            p->cap = cap;
        }
    }
    if (!p || p->count == p->cap) {
        clReleaseEvent(event);
        return;
    }
    profile_entry *e = &p->entries[p->count++];
    e->event = event;
    snprintf(e->kernel, sizeof e->kernel, "%s", kernel);
    snprintf(e->layer, sizeof e->layer, "%s", ctx->label);
}

kiln_status kiln_ctx_profile_begin(kiln_ctx *ctx)
{
    if (!ctx)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_ctx_profile_begin: ctx is NULL");
    kiln_status st = programs_flush(ctx); /* launches waiting for programs go unprofiled */
    if (st != KILN_OK)
        return st;
    if (!ctx->profile && !(ctx->profile = calloc(1, sizeof *ctx->profile)))
        return error_set(KILN_ERR_OUT_OF_MEMORY, "profile: out of host memory");
    return KILN_OK;
}

static void profile_free(kiln_profile *p)
{
    for (size_t i = 0; p && i < p->count; i++)
        clReleaseEvent(p->entries[i].event);
    if (p)
        free(p->entries);
    free(p);
}

void profile_discard(kiln_ctx *ctx)
{
    profile_free(ctx->profile);
    ctx->profile = NULL;
}

/* Start and end of entry i in nanoseconds of the device's clock. */
static kiln_status times(const profile_entry *e, cl_ulong *start, cl_ulong *end)
{
    cl_int err = clGetEventProfilingInfo(e->event, CL_PROFILING_COMMAND_START, sizeof *start,
                                         start, NULL);
    if (err == CL_SUCCESS)
        err = clGetEventProfilingInfo(e->event, CL_PROFILING_COMMAND_END, sizeof *end, end,
                                      NULL);
    return err == CL_SUCCESS ? KILN_OK
                             : error_cl_in(err, "clGetEventProfilingInfo", "%s", e->kernel);
}

static cJSON *trace_event(const profile_entry *e, double ts, double dur)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *args = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", e->kernel);
    cJSON_AddStringToObject(o, "cat", e->layer[0] ? e->layer : "kiln");
    cJSON_AddStringToObject(o, "ph", "X");
    cJSON_AddNumberToObject(o, "ts", ts);
    cJSON_AddNumberToObject(o, "dur", dur);
    cJSON_AddNumberToObject(o, "pid", 1);
    cJSON_AddNumberToObject(o, "tid", 1);
    cJSON_AddStringToObject(args, "layer", e->layer);
    cJSON_AddItemToObject(o, "args", args);
    return o;
}

static cJSON *thread_name(const kiln_ctx *ctx)
{
    cJSON *o = cJSON_CreateObject(), *args = cJSON_CreateObject();
    char name[300];
    snprintf(name, sizeof name, "queue (%s)", ctx->info.name);
    cJSON_AddStringToObject(o, "name", "thread_name");
    cJSON_AddStringToObject(o, "ph", "M");
    cJSON_AddNumberToObject(o, "pid", 1);
    cJSON_AddNumberToObject(o, "tid", 1);
    cJSON_AddStringToObject(args, "name", name);
    cJSON_AddItemToObject(o, "args", args);
    return o;
}

static kiln_status write_trace(const kiln_ctx *ctx, const char *path)
{
    const kiln_profile *p = ctx->profile;
    cJSON *root = cJSON_CreateObject(), *events = cJSON_AddArrayToObject(root, "traceEvents");
    cJSON_AddItemToArray(events, thread_name(ctx));
    cl_ulong origin = 0, start, end;
    kiln_status st = KILN_OK;
    for (size_t i = 0; i < p->count && st == KILN_OK; i++) {
        st = times(&p->entries[i], &start, &end);
        if (i == 0)
            origin = start;
        if (st == KILN_OK)
            cJSON_AddItemToArray(events, trace_event(&p->entries[i], (double)(start - origin) * 1e-3,
                                                     (double)(end - start) * 1e-3));
    }
    cJSON_AddStringToObject(root, "displayTimeUnit", "ms");
    char *text = st == KILN_OK ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (st != KILN_OK)
        return st;
    st = text ? write_bytes_output(path, text, strlen(text))
              : error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of host memory", path);
    free(text);
    return st;
}

typedef struct {
    const char *layer;
    double ms;
    size_t launches;
} layer_total;

static int by_time(const void *a, const void *b)
{
    double x = ((const layer_total *)a)->ms, y = ((const layer_total *)b)->ms;
    return (x < y) - (x > y);
}

/* The layer a label names after its pass ("forward 3 conv2d": "3
 * conv2d"), where it begins with pass and a space; else NULL. */
static const char *layer_of(const char *label, const char *pass)
{
    size_t n = strlen(pass);
    return strncmp(label, pass, n) == 0 && label[n] == ' ' ? label + n + 1 : NULL;
}

/* Each layer's backward against its forward, where a step ran both (t
 * sorted as the totals: the longest backward first). */
static void write_ratios(const layer_total *t, size_t n, double steps, const kiln_writer *out)
{
    int header = 0;
    for (size_t j = 0; j < n; j++) {
        const char *layer = layer_of(t[j].layer, "backward"), *f;
        for (size_t i = 0; layer && i < n; i++) {
            if (!(f = layer_of(t[i].layer, "forward")) || strcmp(f, layer) != 0 || !(t[i].ms > 0))
                continue;
            if (!header)
                writef(out, "\n%-36s %10s %10s %9s\n", "backward against forward", "forward",
                       "backward", "ratio");
            header = 1;
            writef(out, "%-36s %10.3f %10.3f %9.2f\n", layer, t[i].ms / steps, t[j].ms / steps,
                   t[j].ms / t[i].ms);
        }
    }
}

/* Device time per layer label, largest first, with its share; then each
 * layer's backward against its forward. */
static kiln_status write_totals(const kiln_ctx *ctx, size_t steps, const kiln_writer *out)
{
    const kiln_profile *p = ctx->profile;
    layer_total *t = calloc(p->count + 1, sizeof *t);
    if (!t)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "profile: out of host memory");
    size_t n = 0;
    double all = 0;
    kiln_status st = KILN_OK;
    for (size_t i = 0; i < p->count && st == KILN_OK; i++) {
        cl_ulong start, end;
        st = times(&p->entries[i], &start, &end);
        size_t j = 0;
        while (j < n && strcmp(t[j].layer, p->entries[i].layer) != 0)
            j++;
        if (j == n)
            t[n++].layer = p->entries[i].layer;
        t[j].ms += (double)(end - start) * 1e-6;
        t[j].launches++;
        all += (double)(end - start) * 1e-6;
    }
    qsort(t, n, sizeof *t, by_time);
    steps = steps ? steps : 1;
    writef(out, "%-36s %10s %9s %7s\n", "layer", "ms/step", "launches", "share");
    for (size_t j = 0; j < n && st == KILN_OK; j++)
        writef(out, "%-36s %10.3f %9zu %6.1f%%\n", t[j].layer[0] ? t[j].layer : "(other)",
                t[j].ms / (double)steps, t[j].launches / steps, 100.0 * t[j].ms / all);
    if (st == KILN_OK) {
        writef(out, "%-36s %10.3f %9zu\n", "total (device time)", all / (double)steps,
                p->count / steps);
        write_ratios(t, n, (double)steps, out);
    }
    free(t);
    return st;
}

kiln_status kiln_ctx_profile_end(kiln_ctx *ctx, const char *trace_path, size_t steps,
                                 kiln_write_fn totals, void *user)
{
    if (!ctx || !ctx->profile)
        return error_set(KILN_ERR_INVALID_ARGUMENT,
                         "kiln_ctx_profile_end: the context is not recording a profile");
    kiln_status st = kiln_ctx_finish(ctx);
    if (st == KILN_OK && trace_path)
        st = write_trace(ctx, trace_path);
    kiln_writer out = {totals, user};
    if (st == KILN_OK && totals)
        st = write_totals(ctx, steps, &out);
    profile_discard(ctx);
    return st;
}
