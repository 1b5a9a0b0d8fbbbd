/* Platforms and devices through the ICD loader, device selection, and the
 * context (OpenCL context + in-order queue + kernel cache) on one device,
 * with, on PoCL, its basic device beside it as the inline lane. */
#include <ctype.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"

#define MAX_PLATFORMS 16
#define MAX_DEVICES_PER_PLATFORM 64

const char *kiln_version(void)
{
    return KILN_VERSION;
}

void kiln_free(void *ptr)
{
    free(ptr);
}

const char *kiln_device_type_str(kiln_device_type type)
{
    switch (type) {
    case KILN_DEVICE_CPU:
        return "CPU";
    case KILN_DEVICE_GPU:
        return "GPU";
    case KILN_DEVICE_ACCELERATOR:
        return "accelerator";
    default:
        return "other";
    }
}

static const char no_driver_help[] =
    "no OpenCL driver is installed: the ICD loader found no platform with a device "
    "(drivers are listed in /etc/OpenCL/vendors). To run on the CPU, install PoCL: "
    "apt-get install pocl-opencl-icd (or Mesa's rusticl: apt-get install mesa-opencl-icd "
    "and set RUSTICL_ENABLE=llvmpipe). For a GPU, install its vendor's OpenCL driver.";

/* The ICD files the loader reads ($OCL_ICD_VENDORS, else
 * /etc/OpenCL/vendors), listed into buf; how many there are. */
static int installed_drivers(char *buf, size_t size)
{
    const char *dir = getenv("OCL_ICD_VENDORS");
    DIR *d = opendir(dir && *dir ? dir : "/etc/OpenCL/vendors");
    int n = 0;
    size_t used = 0;
    buf[0] = '\0';
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 4, ".icd") != 0)
            continue;
        if (used < size)
            used += (size_t)snprintf(buf + used, size - used, "%s%s", n ? ", " : "", e->d_name);
        n++;
    }
    if (d)
        closedir(d);
    return n;
}

/* ---- PoCL's basic device, the inline lane ----------------------------------- */

static int inline_wanted(void)
{
    const char *v = getenv("KILN_INLINE");
    return !v || strcmp(v, "0") != 0;
}

/* Whether kiln asked PoCL for its basic device itself (then kiln hides it). */
static int basic_added;

/* PoCL lists its pthread device alone unless POCL_DEVICES says otherwise,
 * and reads it once, when the ICD loader first asks for platforms. Where
 * it is unset, kiln asks for the basic device beside pthread for its first
 * OpenCL calls, and unsets it again: processes this one starts (ranks, a
 * child kiln) see the environment they were given. */
static void add_basic_device(void)
{
    if (!inline_wanted() || getenv("POCL_DEVICES") ||
        setenv("POCL_DEVICES", "pthread basic", 0) != 0)
        return;
    basic_added = 1;
    cl_platform_id ids[MAX_PLATFORMS];
    cl_uint n = 0, devices;
    if (clGetPlatformIDs(MAX_PLATFORMS, ids, &n) == CL_SUCCESS)
        for (cl_uint i = 0; i < n && i < MAX_PLATFORMS; i++)
            clGetDeviceIDs(ids[i], CL_DEVICE_TYPE_ALL, 0, NULL, &devices);
    unsetenv("POCL_DEVICES");
}

static kiln_status list_platforms(cl_platform_id *ids, cl_uint *count)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, add_basic_device);
    cl_int err = clGetPlatformIDs(MAX_PLATFORMS, ids, count);
    char drivers[512];
    if ((err == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || (err == CL_SUCCESS && *count == 0)) &&
        installed_drivers(drivers, sizeof drivers) > 0)
        return error_set(KILN_ERR_NO_PLATFORM, "OpenCL drivers are installed (%s) but none of "
                                               "them started: the ICD loader found no "
                                               "platform. Out of memory (ulimit -v)? "
                                               "`clinfo` shows what the drivers say", drivers);
    if (err == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || (err == CL_SUCCESS && *count == 0))
        return error_set(KILN_ERR_NO_PLATFORM, "%s", no_driver_help);
    if (err != CL_SUCCESS)
        return error_cl(err, "clGetPlatformIDs");
    if (*count > MAX_PLATFORMS)
        *count = MAX_PLATFORMS;
    return KILN_OK;
}

static void platform_string(cl_platform_id p, cl_platform_info what, char *buf, size_t size)
{
    if (clGetPlatformInfo(p, what, size, buf, NULL) != CL_SUCCESS)
        snprintf(buf, size, "?");
    buf[size - 1] = '\0';
}

static void device_string(cl_device_id d, cl_device_info what, char *buf, size_t size)
{
    if (clGetDeviceInfo(d, what, size, buf, NULL) != CL_SUCCESS)
        snprintf(buf, size, "?");
    buf[size - 1] = '\0';
}

static int name_starts(cl_device_id d, const char *prefix)
{
    char name[256];
    device_string(d, CL_DEVICE_NAME, name, sizeof name);
    return strncmp(name, prefix, strlen(prefix)) == 0;
}

static int is_pocl(cl_platform_id p)
{
    char name[256];
    platform_string(p, CL_PLATFORM_NAME, name, sizeof name);
    return strstr(name, "Portable Computing Language") != NULL;
}

/* The basic device kiln added: not listed, not selectable. */
static int hidden(cl_platform_id p, cl_device_id d)
{
    return basic_added && is_pocl(p) && name_starts(d, "basic-");
}

static uint64_t device_u64(cl_device_id d, cl_device_info what)
{
    cl_ulong v = 0;
    clGetDeviceInfo(d, what, sizeof v, &v, NULL);
    return v;
}

static unsigned device_uint(cl_device_id d, cl_device_info what)
{
    cl_uint v = 0;
    clGetDeviceInfo(d, what, sizeof v, &v, NULL);
    return v;
}

static kiln_device_type device_type(cl_device_id d)
{
    cl_device_type t = 0;
    clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof t, &t, NULL);
    if (t & CL_DEVICE_TYPE_GPU)
        return KILN_DEVICE_GPU;
    if (t & CL_DEVICE_TYPE_CPU)
        return KILN_DEVICE_CPU;
    if (t & CL_DEVICE_TYPE_ACCELERATOR)
        return KILN_DEVICE_ACCELERATOR;
    return KILN_DEVICE_OTHER;
}

static int has_extension(cl_device_id d, const char *ext)
{
    size_t size = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, 0, NULL, &size) != CL_SUCCESS || size == 0)
        return 0;
    char *all = malloc(size + 1);
    if (!all)
        return 0;
    int found = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, size, all, NULL) == CL_SUCCESS) {
        all[size] = '\0';
        size_t n = strlen(ext);
        for (const char *p = strstr(all, ext); p && !found; p = strstr(p + 1, ext))
            found = (p[n] == ' ' || p[n] == '\0') && (p == all || p[-1] == ' ');
    }
    free(all);
    return found;
}

static void describe(cl_platform_id p, cl_device_id d, kiln_device_info *info)
{
    platform_string(p, CL_PLATFORM_NAME, info->platform, sizeof info->platform);
    platform_string(p, CL_PLATFORM_VERSION, info->platform_version,
                    sizeof info->platform_version);
    device_string(d, CL_DEVICE_NAME, info->name, sizeof info->name);
    device_string(d, CL_DEVICE_VENDOR, info->vendor, sizeof info->vendor);
    device_string(d, CL_DRIVER_VERSION, info->driver_version, sizeof info->driver_version);
    device_string(d, CL_DEVICE_VERSION, info->device_version, sizeof info->device_version);
    device_string(d, CL_DEVICE_OPENCL_C_VERSION, info->opencl_c_version,
                  sizeof info->opencl_c_version);
    info->type = device_type(d);
    info->compute_units = device_uint(d, CL_DEVICE_MAX_COMPUTE_UNITS);
    info->global_mem_bytes = device_u64(d, CL_DEVICE_GLOBAL_MEM_SIZE);
    info->local_mem_bytes = device_u64(d, CL_DEVICE_LOCAL_MEM_SIZE);
    info->max_alloc_bytes = device_u64(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE);
    info->mem_base_align_bits = device_uint(d, CL_DEVICE_MEM_BASE_ADDR_ALIGN);
    size_t wg = 0;
    clGetDeviceInfo(d, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof wg, &wg, NULL);
    info->max_work_group_size = wg;
    cl_device_fp_config fp64 = 0;
    clGetDeviceInfo(d, CL_DEVICE_DOUBLE_FP_CONFIG, sizeof fp64, &fp64, NULL);
    info->fp64 = fp64 != 0;
    info->fp16 = has_extension(d, "cl_khr_fp16");
}

/* Calls visit(platform, device, info) for each device until it returns
 * nonzero; fills the indices of info. */
typedef int (*device_visitor)(cl_platform_id, cl_device_id, const kiln_device_info *, void *);

static kiln_status each_device(device_visitor visit, void *user, int *stopped)
{
    cl_platform_id platforms[MAX_PLATFORMS];
    cl_uint np = 0;
    kiln_status st = list_platforms(platforms, &np);
    if (st != KILN_OK)
        return st;
    unsigned global = 0;
    *stopped = 0;
    for (cl_uint pi = 0; pi < np && !*stopped; pi++) {
        cl_device_id devices[MAX_DEVICES_PER_PLATFORM];
        cl_uint nd = 0;
        cl_int err = clGetDeviceIDs(platforms[pi], CL_DEVICE_TYPE_ALL,
                                    MAX_DEVICES_PER_PLATFORM, devices, &nd);
        if (err == CL_DEVICE_NOT_FOUND)
            continue; /* e.g. rusticl without RUSTICL_ENABLE */
        if (err != CL_SUCCESS)
            return error_cl(err, "clGetDeviceIDs");
        if (nd > MAX_DEVICES_PER_PLATFORM)
            nd = MAX_DEVICES_PER_PLATFORM;
        for (cl_uint di = 0, shown = 0; di < nd && !*stopped; di++) {
            if (hidden(platforms[pi], devices[di]))
                continue;
            kiln_device_info info;
            memset(&info, 0, sizeof info);
            describe(platforms[pi], devices[di], &info);
            info.platform_index = pi;
            info.device_index = shown++;
            info.global_index = global++;
            *stopped = visit(platforms[pi], devices[di], &info, user);
        }
    }
    return KILN_OK;
}

typedef struct {
    kiln_device_info *items;
    size_t count, capacity;
    int failed;
} device_list;

static int collect(cl_platform_id p, cl_device_id d, const kiln_device_info *info, void *user)
{
    (void)p;
    (void)d;
    device_list *list = user;
    if (list->count == list->capacity) {
        size_t cap = list->capacity ? 2 * list->capacity : 8;
        kiln_device_info *grown = realloc(list->items, cap * sizeof *grown);
        if (!grown) {
            list->failed = 1;
            return 1;
        }
        list->items = grown;
        list->capacity = cap;
    }
    list->items[list->count++] = *info;
    return 0;
}

kiln_status kiln_devices(kiln_device_info **out, size_t *count)
{
    kiln_status required = require_args("kiln_devices", ARG(out), ARG(count), NULL);
    if (required != KILN_OK)
        return required;
    device_list list = {0};
    int stopped;
    kiln_status st = each_device(collect, &list, &stopped);
    if (st == KILN_OK && list.failed)
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_devices: out of host memory");
    if (st == KILN_OK && list.count == 0)
        st = error_set(KILN_ERR_NO_PLATFORM, "%s", no_driver_help);
    if (st != KILN_OK) {
        free(list.items);
        return st;
    }
    *out = list.items;
    *count = list.count;
    return KILN_OK;
}

/* ---- selection ------------------------------------------------------------ */

static int contains_nocase(const char *haystack, const char *needle)
{
    size_t n = strlen(needle);
    for (; *haystack; haystack++) {
        size_t i = 0;
        while (i < n && haystack[i] &&
               tolower((unsigned char)haystack[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n)
            return 1;
    }
    return n == 0;
}

/* Parses "12" into *a (returns 1) or "1:0" into *a, *b (returns 2). */
static int parse_index(const char *s, unsigned long *a, unsigned long *b)
{
    char *end;
    if (!isdigit((unsigned char)s[0]))
        return 0;
    *a = strtoul(s, &end, 10);
    if (*end == '\0')
        return 1;
    if (*end != ':' || !isdigit((unsigned char)end[1]))
        return 0;
    *b = strtoul(end + 1, &end, 10);
    return *end == '\0' ? 2 : 0;
}

/* The platform's vendor ("The pocl project") and ICD suffix ("POCL"),
 * which selectors match too: PoCL's platform is called "Portable Computing
 * Language" and its devices carry the CPU's vendor. */
static int platform_alias_matches(unsigned index, const char *selector)
{
    cl_platform_id ids[MAX_PLATFORMS];
    cl_uint count = 0;
    if (clGetPlatformIDs(MAX_PLATFORMS, ids, &count) != CL_SUCCESS || index >= count)
        return 0;
    char vendor[256], suffix[64];
    platform_string(ids[index], CL_PLATFORM_VENDOR, vendor, sizeof vendor);
    platform_string(ids[index], 0x0920 /* CL_PLATFORM_ICD_SUFFIX_KHR */, suffix, sizeof suffix);
    return contains_nocase(vendor, selector) || (suffix[0] && contains_nocase(suffix, selector));
}

static int matches(const kiln_device_info *d, const char *selector)
{
    unsigned long a = 0, b = 0;
    switch (parse_index(selector, &a, &b)) {
    case 1:
        return d->global_index == a;
    case 2:
        return d->platform_index == a && d->device_index == b;
    default:
        return contains_nocase(d->platform, selector) || contains_nocase(d->name, selector) ||
               contains_nocase(d->vendor, selector) ||
               contains_nocase(kiln_device_type_str(d->type), selector) ||
               platform_alias_matches(d->platform_index, selector);
    }
}

static const kiln_device_info *default_device(const kiln_device_info *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (list[i].type == KILN_DEVICE_GPU)
            return &list[i];
    for (size_t i = 0; i < n; i++)
        if (list[i].type == KILN_DEVICE_CPU)
            return &list[i];
    return &list[0];
}

static kiln_status no_match(const char *selector, const char *origin,
                            const kiln_device_info *list, size_t n)
{
    error_set(KILN_ERR_NO_DEVICE,
              "no OpenCL device matches %s \"%s\" (an index such as 0, a platform:device "
              "pair such as 1:0, or part of a platform, device or vendor name, or gpu/cpu). "
              "Devices found:",
              origin, selector);
    for (size_t i = 0; i < n; i++) {
        error_append("\n  %u (%u:%u)  %s / %s  [%s]", list[i].global_index,
                     list[i].platform_index, list[i].device_index, list[i].platform,
                     list[i].name, kiln_device_type_str(list[i].type));
    }
    return KILN_ERR_NO_DEVICE;
}

kiln_status kiln_device_select(const char *selector, kiln_device_info *out)
{
    if (!out)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_device_select: out is required");
    const char *origin = "--device";
    if (!selector || !*selector) {
        selector = getenv("KILN_DEVICE");
        origin = "KILN_DEVICE";
    }
    kiln_device_info *list;
    size_t n;
    kiln_status st = kiln_devices(&list, &n);
    if (st != KILN_OK)
        return st;
    const kiln_device_info *pick = NULL;
    if (!selector || !*selector) {
        pick = default_device(list, n);
    } else {
        for (size_t i = 0; i < n && !pick; i++)
            if (matches(&list[i], selector))
                pick = &list[i];
    }
    if (!pick) {
        st = no_match(selector, origin, list, n);
        free(list);
        return st;
    }
    *out = *pick;
    free(list);
    return KILN_OK;
}

typedef struct {
    const kiln_device_info *want;
    cl_platform_id platform;
    cl_device_id device;
    int found;
} id_query;

static int find_id(cl_platform_id p, cl_device_id d, const kiln_device_info *info, void *user)
{
    id_query *q = user;
    if (info->platform_index != q->want->platform_index ||
        info->device_index != q->want->device_index)
        return 0;
    q->platform = p;
    q->device = d;
    q->found = 1;
    return 1;
}

static kiln_status lookup(const kiln_device_info *info, cl_platform_id *platform,
                          cl_device_id *device)
{
    id_query q = {.want = info};
    int stopped;
    kiln_status st = each_device(find_id, &q, &stopped);
    if (st != KILN_OK)
        return st;
    if (!q.found)
        return error_set(KILN_ERR_NO_DEVICE, "device %u:%u (%s) is no longer listed",
                         info->platform_index, info->device_index, info->name);
    *platform = q.platform;
    *device = q.device;
    return KILN_OK;
}

kiln_status device_id(const kiln_device_info *info, cl_device_id *out)
{
    cl_platform_id p;
    return lookup(info, &p, out);
}

/* ---- context ---------------------------------------------------------------- */

/* PoCL's basic device on the platform of the pthread device ctx runs on,
 * or NULL. */
static cl_device_id inline_device(const kiln_ctx *ctx)
{
    cl_device_id devices[MAX_DEVICES_PER_PLATFORM];
    cl_uint n = 0;
    if (!inline_wanted() || !is_pocl(ctx->platform) || !name_starts(ctx->device, "pthread-") ||
        clGetDeviceIDs(ctx->platform, CL_DEVICE_TYPE_CPU, MAX_DEVICES_PER_PLATFORM, devices,
                       &n) != CL_SUCCESS)
        return NULL;
    for (cl_uint i = 0; i < n && i < MAX_DEVICES_PER_PLATFORM; i++)
        if (name_starts(devices[i], "basic-"))
            return devices[i];
    return NULL;
}

static kiln_status open_lane(kiln_ctx *ctx, kiln_lane *lane)
{
    cl_int err;
    lane->queue = clCreateCommandQueue(ctx->context, lane->device, CL_QUEUE_PROFILING_ENABLE,
                                       &err);
    if (err != CL_SUCCESS)
        return error_cl(err, "clCreateCommandQueue");
    return program_cache_create(ctx, lane->device, &lane->programs);
}

/* The OpenCL context on ctx's device (and its inline device), with a queue
 * and a kernel cache for each. Where the inline device cannot join, the
 * context opens without it. */
static kiln_status open_context(kiln_ctx *ctx)
{
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)ctx->platform,
                                     0};
    cl_device_id both[2] = {ctx->device, inline_device(ctx)};
    cl_int err = CL_INVALID_DEVICE;
    if (both[1])
        ctx->context = clCreateContext(props, 2, both, NULL, NULL, &err);
    if (err != CL_SUCCESS) {
        both[1] = NULL;
        ctx->context = clCreateContext(props, 1, both, NULL, NULL, &err);
    }
    if (err != CL_SUCCESS)
        return error_cl(err, "clCreateContext");
    kiln_lane own = {.device = ctx->device};
    kiln_status st = open_lane(ctx, &own);
    ctx->queue = own.queue;
    ctx->programs = own.programs;
    ctx->inline_lane.device = both[1];
    if (st == KILN_OK && both[1] && open_lane(ctx, &ctx->inline_lane) != KILN_OK) {
        error_clear(); /* the device's own queue works without it */
        if (ctx->inline_lane.queue)
            clReleaseCommandQueue(ctx->inline_lane.queue);
        ctx->inline_lane = (kiln_lane){NULL, NULL, NULL, NULL};
    }
    return st;
}

int ctx_has_inline(const kiln_ctx *ctx)
{
    return ctx->inline_lane.device && ctx->inline_lane.queue && ctx->inline_lane.programs;
}

static void swap_lanes(kiln_ctx *ctx)
{
    kiln_lane *o = &ctx->inline_lane, own = {ctx->device, ctx->queue, ctx->programs,
                                             ctx->deferred};
    ctx->device = o->device;
    ctx->queue = o->queue;
    ctx->programs = o->programs;
    ctx->deferred = o->deferred;
    *o = own;
    ctx->inlined = !ctx->inlined;
}

kiln_status ctx_enter_inline(kiln_ctx *ctx)
{
    kiln_status st = programs_flush(ctx);
    cl_int err = st == KILN_OK ? clFinish(ctx->queue) : CL_SUCCESS;
    if (st == KILN_OK && err != CL_SUCCESS)
        st = error_cl(err, "clFinish");
    if (st == KILN_OK) {
        swap_lanes(ctx);
        ctx->inline_runs++;
    }
    return st;
}

void ctx_leave_inline(kiln_ctx *ctx)
{
    if (ctx->inlined)
        swap_lanes(ctx);
}

int device_loops_work_groups(const kiln_device_info *d)
{
    return d->type == KILN_DEVICE_CPU && !strstr(d->platform, "rusticl");
}

size_t device_units(const kiln_device_info *d)
{
    return d->compute_units ? d->compute_units : 1;
}

kiln_status ctx_open_device(const char *selector, kiln_ctx **out)
{
    if (!out)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_ctx_create: out is required");
    *out = NULL;
    kiln_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_ctx_create: out of host memory");
    kiln_status st = kiln_device_select(selector, &ctx->info);
    if (st == KILN_OK)
        st = lookup(&ctx->info, &ctx->platform, &ctx->device);
    if (st == KILN_OK)
        st = open_context(ctx);
    if (st != KILN_OK) {
        kiln_ctx_free(ctx);
        return st;
    }
    *out = ctx;
    return KILN_OK;
}

void ctx_attach(kiln_ctx *ctx, int slot, void *state, void (*free_fn)(void *state))
{
    kiln_ctx_slot *s = &ctx->slots[slot];
    if (s->state && s->free_fn)
        s->free_fn(s->state);
    s->state = state;
    s->free_fn = free_fn;
}

void *ctx_attached(const kiln_ctx *ctx, int slot)
{
    return ctx->slots[slot].state;
}

/* The launches, programs and queue of ctx's current lane. */
static void lane_free(kiln_ctx *ctx)
{
    deferred_free(ctx); /* launches of a batch that never ended */
    if (ctx->queue)
        clFinish(ctx->queue);
    program_cache_free(ctx->programs);
    ctx->programs = NULL;
}

void kiln_ctx_free(kiln_ctx *ctx)
{
    if (!ctx)
        return;
    ctx_leave_inline(ctx);
    lane_free(ctx);
    swap_lanes(ctx);
    lane_free(ctx);
    swap_lanes(ctx);
    for (int i = KILN_CTX_SLOTS - 1; i >= 0; i--)
        ctx_attach(ctx, i, NULL, NULL);
    profile_discard(ctx);
    spares_free(ctx);
    if (ctx->queue)
        clReleaseCommandQueue(ctx->queue);
    if (ctx->inline_lane.queue)
        clReleaseCommandQueue(ctx->inline_lane.queue);
    if (ctx->context)
        clReleaseContext(ctx->context);
    free(ctx);
}

const kiln_device_info *kiln_ctx_device(const kiln_ctx *ctx)
{
    return ctx ? &ctx->info : NULL;
}

/* Waits for event and releases it; call names the command in an error. */
static kiln_status event_wait(cl_event event, const char *call)
{
    cl_int state = CL_QUEUED, err = clWaitForEvents(1, &event);
    if (err == CL_SUCCESS)
        err = clGetEventInfo(event, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof state, &state,
                             NULL);
    if (err == CL_SUCCESS && state < 0)
        err = state; /* the command's own error */
    clReleaseEvent(event);
    return err == CL_SUCCESS ? KILN_OK : error_cl(err, call);
}

kiln_status kiln_ctx_finish(kiln_ctx *ctx)
{
    if (!ctx)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_ctx_finish: ctx is NULL");
    kiln_status st = programs_flush(ctx);
    /* a marker's event, not clFinish: Mesa 22.3's rusticl returns from
     * clFinish while a non-blocking read's event is still CL_SUBMITTED
     * and its data has not reached the host */
    cl_event done;
    cl_int err = clEnqueueMarkerWithWaitList(ctx->queue, 0, NULL, &done);
    if (st != KILN_OK) { /* a deferred build failed: what was queued still ends first */
        if (err == CL_SUCCESS) {
            clWaitForEvents(1, &done);
            clReleaseEvent(done);
        }
        return st;
    }
    return err == CL_SUCCESS ? event_wait(done, "clEnqueueMarkerWithWaitList")
                             : error_cl(err, "clEnqueueMarkerWithWaitList");
}

void kiln_ctx_set_trace(kiln_ctx *ctx, kiln_write_fn fn, void *user)
{
    if (ctx)
        ctx->trace = (kiln_writer){fn, user};
}

uint64_t kiln_ctx_launches(const kiln_ctx *ctx)
{
    return ctx ? ctx->launches : 0;
}

kiln_cache_stats kiln_ctx_cache_stats(const kiln_ctx *ctx)
{
    kiln_cache_stats none = {0};
    return ctx ? ctx->stats : none;
}
