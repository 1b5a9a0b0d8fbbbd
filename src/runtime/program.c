/* Kernel programs: embedded cl/ sources built per (source, options), kept in
 * a per-context memory cache and as device binaries in an on-disk cache
 * (written at once, or later while held; see save_unsaved).
 *
 * A disk cache file is trusted only when its magic, format version, full
 * key (device, driver, platform, kiln version, source hash, options),
 * length and CRC all match; anything else is ignored and rebuilt. Files are
 * written whole (write_file_atomic), so a reader never sees half a file. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "runtime/program_text.h"
#include "runtime/runtime.h"

#define CACHE_MAGIC "KILNBIN"
#define CACHE_FORMAT 1u
#define CACHE_MAX_FILE (256u << 20)
#define BASE_OPTIONS "-cl-std=CL1.2"
#define PATH_CAP 4096

typedef struct kernel_entry {
    char *name;
    cl_kernel kernel;
    struct kernel_entry *next;
} kernel_entry;

typedef struct program_entry {
    char *source;
    char *options;
    char *kernel;  /* the kernels it holds, separated by spaces; "" for all */
    char *unsaved; /* "path\0key" of a binary to write when the cache is freed */
    cl_program program;
    kernel_entry *kernels;
    struct program_entry *next;
} program_entry;

struct kiln_program_cache {
    kiln_ctx *ctx;
    cl_device_id device; /* the programs' device in ctx's context */
    char device_name[256]; /* in the disk cache's keys */
    program_entry *programs;
};

kiln_status program_cache_create(kiln_ctx *ctx, cl_device_id device, kiln_program_cache **out)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "program cache: out of memory");
    (*out)->ctx = ctx;
    (*out)->device = device;
    if (clGetDeviceInfo(device, CL_DEVICE_NAME, sizeof (*out)->device_name,
                        (*out)->device_name, NULL) != CL_SUCCESS)
        snprintf((*out)->device_name, sizeof (*out)->device_name, "%s", ctx->info.name);
    (*out)->device_name[sizeof (*out)->device_name - 1] = '\0';
    return KILN_OK;
}

static void save_unsaved(kiln_program_cache *cache, program_entry *p);

void program_cache_free(kiln_program_cache *cache)
{
    if (!cache)
        return;
    for (program_entry *p = cache->programs; p; p = p->next)
        save_unsaved(cache, p);
    program_entry *p = cache->programs;
    while (p) {
        kernel_entry *k = p->kernels;
        while (k) {
            kernel_entry *next = k->next;
            clReleaseKernel(k->kernel);
            free(k->name);
            free(k);
            k = next;
        }
        program_entry *next = p->next;
        clReleaseProgram(p->program);
        free(p->source);
        free(p->options);
        free(p->kernel);
        free(p->unsaved);
        free(p);
        p = next;
    }
    free(cache);
}

/* ---- the on-disk cache ------------------------------------------------------ */

uint64_t fnv1a64(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static uint32_t crc(const void *data, size_t n)
{
    uLong c = crc32(0L, Z_NULL, 0);
    const unsigned char *p = data;
    while (n > 0) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return (uint32_t)c;
}

kiln_status kiln_cache_dir(char *buf, size_t size)
{
    const char *dir = getenv("KILN_CACHE_DIR");
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    int n;
    if (dir && *dir)
        n = snprintf(buf, size, "%s", dir);
    else if (xdg && *xdg)
        n = snprintf(buf, size, "%s/kiln", xdg);
    else if (home && *home)
        n = snprintf(buf, size, "%s/.cache/kiln", home);
    else
        return error_set(KILN_ERR_IO, "kernel cache: neither KILN_CACHE_DIR, XDG_CACHE_HOME "
                                      "nor HOME is set");
    if (n < 0 || (size_t)n >= size)
        return error_set(KILN_ERR_IO, "kernel cache: directory name too long");
    return KILN_OK;
}

/* The complete cache key of a program variant, as text. */
static void cache_key(const kiln_ctx *ctx, const program_text *src, const char *options,
                      char *key, size_t size)
{
    int used = snprintf(key, size,
                        "kiln %s\nplatform %s %s\ndevice %s\ndevice-version %s\ndriver %s\n"
                        "options %s %s\n",
                        KILN_VERSION, ctx->info.platform, ctx->info.platform_version,
                        ctx->programs->device_name, ctx->info.device_version,
                        ctx->info.driver_version,
                        BASE_OPTIONS, options);
    if (src->only && used > 0 && (size_t)used < size)
        used += snprintf(key + used, size - (size_t)used, "kernel %s\n", src->only);
    for (int i = 0; i < src->count && used > 0 && (size_t)used < size; i++) {
        const char *text = src->part[i]->text;
        size_t len = strlen(text);
        used += snprintf(key + used, size - (size_t)used, "source %s %zu %016llx %08x\n",
                         src->part[i]->name, len, (unsigned long long)fnv1a64(text, len),
                         (unsigned)crc(text, len));
    }
}

static int cache_path(const char *key, char *path, size_t size)
{
    char dir[PATH_CAP];
    if (kiln_cache_dir(dir, sizeof dir) != KILN_OK) {
        error_clear();
        return -1;
    }
    int n = snprintf(path, size, "%s/%016llx.bin", dir,
                     (unsigned long long)fnv1a64(key, strlen(key)));
    return n > 0 && (size_t)n < size ? 0 : -1;
}

/* Reads the whole file (at most CACHE_MAX_FILE bytes); NULL if unreadable. */
static unsigned char *read_file(const char *path, size_t *size)
{
    /* O_NONBLOCK: a FIFO or device put where a cache file belongs must not
     * block the open; only regular files are read */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "rb") : NULL;
    if (!f) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    unsigned char *data = NULL;
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
        st.st_size <= CACHE_MAX_FILE) {
        *size = (size_t)st.st_size;
        data = malloc(*size);
        if (data && fread(data, 1, *size, f) != *size) {
            free(data);
            data = NULL;
        }
    }
    fclose(f);
    return data;
}

/* Checks a cache file image against key; on success points *bin at the
 * binary inside data. Layout: magic[8] u32 format u32 keylen key
 * u64 binlen u32 crc binary. */
static int parse_cache_file(const unsigned char *data, size_t size, const char *key,
                            const unsigned char **bin, size_t *bin_len)
{
    size_t key_len = strlen(key);
    size_t head = 8 + 4 + 4;
    uint32_t format, stored_key_len, stored_crc;
    uint64_t stored_bin_len;
    if (size < head || memcmp(data, CACHE_MAGIC, 8) != 0)
        return -1;
    memcpy(&format, data + 8, 4);
    memcpy(&stored_key_len, data + 12, 4);
    if (format != CACHE_FORMAT || stored_key_len != key_len || size < head + key_len + 12)
        return -1;
    if (memcmp(data + head, key, key_len) != 0)
        return -1;
    memcpy(&stored_bin_len, data + head + key_len, 8);
    memcpy(&stored_crc, data + head + key_len + 8, 4);
    size_t offset = head + key_len + 12;
    if (stored_bin_len == 0 || stored_bin_len != size - offset)
        return -1;
    if (crc(data + offset, (size_t)stored_bin_len) != stored_crc)
        return -1;
    *bin = data + offset;
    *bin_len = (size_t)stored_bin_len;
    return 0;
}

typedef struct {
    const char *key;
    const unsigned char *bin;
    size_t bin_len;
} cache_entry;

static kiln_status fill_cache(int fd, const char *path, void *user)
{
    const cache_entry *c = user;
    uint32_t format = CACHE_FORMAT, key_len = (uint32_t)strlen(c->key);
    uint32_t sum = crc(c->bin, c->bin_len);
    uint64_t len64 = c->bin_len;
    int bad = write_all(fd, CACHE_MAGIC, 8) || write_all(fd, &format, 4) ||
              write_all(fd, &key_len, 4) || write_all(fd, c->key, key_len) ||
              write_all(fd, &len64, 8) || write_all(fd, &sum, 4) ||
              write_all(fd, c->bin, c->bin_len);
    return bad ? fail_write(path, errno) : KILN_OK;
}

/* Writes the cache file whole; failures only cost a rebuild later. */
static void store_cache_file(const char *path, const char *key, const unsigned char *bin,
                             size_t bin_len)
{
    char dir[PATH_CAP];
    dir_of(path, dir, sizeof dir);
    if (make_dirs(dir) != 0)
        return;
    cache_entry c = {key, bin, bin_len};
    write_file_atomic(path, fill_cache, &c);
}

/* ---- building ----------------------------------------------------------------- */

/* The build log when it holds more than white space (malloc'd), or NULL. */
static char *build_log(kiln_ctx *ctx, cl_program program)
{
    size_t size = 0;
    if (clGetProgramBuildInfo(program, ctx->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &size) !=
            CL_SUCCESS ||
        size <= 1)
        return NULL;
    char *log = malloc(size + 1);
    if (log && clGetProgramBuildInfo(program, ctx->device, CL_PROGRAM_BUILD_LOG, size, log,
                                     NULL) == CL_SUCCESS) {
        log[size] = '\0';
        if (log[strspn(log, " \t\r\n")] != '\0')
            return log;
    }
    free(log);
    return NULL;
}

/* A failed build's error names the program, its kernel, options and
 * device, followed by the build log and what the driver printed. */
static kiln_status build_failed(kiln_ctx *ctx, cl_program program, cl_int err,
                                const program_text *src, const char *options,
                                const char *printed)
{
    kiln_status st = error_cl_in(err, "clBuildProgram", "%s%s%s, options \"%s\", on %s",
                                 src->name, src->only ? ", kernel " : "",
                                 src->only ? src->only : "", options, ctx->info.name);
    char *log = build_log(ctx, program);
    if (log)
        error_append("\n%s", log);
    if (printed)
        error_append("\n%s", printed);
    free(log);
    return st;
}

/* After a good build: its log (warnings) with KILN_VERBOSE, and whatever
 * else reached stderr meanwhile. */
static void build_succeeded(kiln_ctx *ctx, cl_program program, const program_text *src,
                            const char *printed)
{
    char *log = verbose_builds() ? build_log(ctx, program) : NULL;
    if (log) { /* every line marked as kiln's, so that nothing reads as driver chatter */
        fprintf(stderr, "kiln: build log of %s%s%s:\n", src->name, src->only ? ":" : "",
                src->only ? src->only : "");
        for (char *line = log, *end; *line; line = *end ? end + 1 : end) {
            end = line + strcspn(line, "\n");
            fprintf(stderr, "kiln:   %.*s\n", (int)(end - line), line);
        }
    }
    if (printed)
        fputs(printed, stderr);
    free(log);
}

static void full_options(const char *options, char *buf, size_t size)
{
    snprintf(buf, size, "%s %s", BASE_OPTIONS, options);
}

static cl_program load_binary(kiln_ctx *ctx, const char *path, const char *key,
                              const char *options)
{
    size_t size = 0;
    unsigned char *data = read_file(path, &size);
    if (!data)
        return NULL;
    const unsigned char *bin;
    size_t bin_len;
    cl_program program = NULL;
    if (parse_cache_file(data, size, key, &bin, &bin_len) == 0) {
        cl_int status, err;
        program = clCreateProgramWithBinary(ctx->context, 1, &ctx->device, &bin_len, &bin,
                                            &status, &err);
        if (err != CL_SUCCESS || status != CL_SUCCESS) {
            program = NULL;
        } else if (clBuildProgram(program, 1, &ctx->device, options, NULL, NULL) !=
                   CL_SUCCESS) {
            clReleaseProgram(program);
            program = NULL;
        }
    }
    free(data);
    if (!program)
        ctx->stats.disk_rejects++;
    return program;
}

/* Writes device's binary of program to the disk cache. A program built
 * from source belongs to every device of the context: OpenCL gives a
 * binary for each, in the order of CL_PROGRAM_DEVICES; PoCL 3.1 gives the
 * built ones alone, and writes each to its pointer, NULL or not. */
static void save_binary(cl_device_id device, cl_program program, const char *path,
                        const char *key)
{
    enum { MAX_PROGRAM_DEVICES = 4 };
    cl_device_id devices[MAX_PROGRAM_DEVICES];
    size_t lens[MAX_PROGRAM_DEVICES] = {0}, n_devices = 0, n_lens = 0;
    if (clGetProgramInfo(program, CL_PROGRAM_DEVICES, sizeof devices, devices, &n_devices) !=
            CL_SUCCESS ||
        clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof lens, lens, &n_lens) !=
            CL_SUCCESS)
        return;
    n_devices /= sizeof devices[0];
    n_lens /= sizeof lens[0];
    size_t at = 0; /* the device's binary among those given */
    while (at < n_devices && devices[at] != device)
        at++;
    if (n_lens == 1)
        at = 0;
    else if (n_lens != n_devices)
        return;
    unsigned char *bins[MAX_PROGRAM_DEVICES] = {NULL};
    int complete = at < n_lens && lens[at] > 0;
    for (size_t i = 0; i < n_lens && complete; i++)
        complete = lens[i] <= CACHE_MAX_FILE && (!lens[i] || (bins[i] = malloc(lens[i])));
    if (complete && clGetProgramInfo(program, CL_PROGRAM_BINARIES, n_lens * sizeof bins[0], bins,
                                     NULL) == CL_SUCCESS)
        store_cache_file(path, key, bins[at], lens[at]);
    for (size_t i = 0; i < n_lens; i++)
        free(bins[i]);
}

static kiln_status compile_source(kiln_ctx *ctx, const program_text *src,
                                  const char *options, const char *full, cl_program *out)
{
    cl_int err = CL_SUCCESS;
    const char *texts[MAX_PARTS];
    char *own[MAX_PARTS] = {NULL};
    int kept = 0;
    for (int i = 0; i < src->count; i++) {
        texts[i] = src->part[i]->text;
        if (src->only && (texts[i] = own[i] = keep_kernels(texts[i], src->only, &kept)) == NULL)
            err = CL_OUT_OF_HOST_MEMORY;
    }
    /* no kernel of the list in any part: the whole sources, so that
     * clCreateKernel says CL_INVALID_KERNEL_NAME (a program without kernels
     * fails on rusticl as CL_INVALID_PROGRAM_EXECUTABLE instead) */
    for (int i = 0; i < src->count && src->only && !kept; i++)
        texts[i] = src->part[i]->text;
    cl_program program = err == CL_SUCCESS ? clCreateProgramWithSource(
                                                 ctx->context, (cl_uint)src->count, texts, NULL, &err)
                                           : NULL;
    for (int i = 0; i < src->count; i++)
        free(own[i]);
    if (err != CL_SUCCESS)
        return error_cl_in(err, "clCreateProgramWithSource", "%s", src->name);
    kiln_quiet quiet;
    quiet_begin(&quiet);
    err = clBuildProgram(program, 1, &ctx->device, full, NULL, NULL);
    char *printed = quiet_end(&quiet);
    if (err != CL_SUCCESS) {
        kiln_status st = build_failed(ctx, program, err, src, options, printed);
        free(printed);
        clReleaseProgram(program);
        return st;
    }
    build_succeeded(ctx, program, src, printed);
    free(printed);
    ctx->stats.builds++;
    *out = program;
    return KILN_OK;
}

/* KILN_VERBOSE=1 (any value but "" and "0"): one line per program on
 * stderr, with where it came from and how long it took. */
int verbose_builds(void)
{
    const char *v = getenv("KILN_VERBOSE");
    return v && *v && strcmp(v, "0") != 0;
}

static void report_build(const program_text *src, const char *options, const char *how,
                         double seconds)
{
    if (verbose_builds())
        fprintf(stderr, "kiln: %s %s%s%s%s%s in %.3f s\n", how, src->name,
                src->only ? ":" : "", src->only ? src->only : "", *options ? " " : "", options,
                seconds);
}

/* "path\0key" in one allocation, or NULL. */
static char *path_and_key(const char *path, const char *key)
{
    size_t np = strlen(path) + 1, nk = strlen(key) + 1;
    char *s = malloc(np + nk);
    if (s) {
        memcpy(s, path, np);
        memcpy(s + np, key, nk);
    }
    return s;
}

/* Writes the binary of a program compiled from source to the disk cache:
 * at once, or while the cache is held, at the last release. Asking PoCL for
 * a binary compiles the program's kernel for any work-group size, which at
 * once would cost a network's cold start seconds before its first batch;
 * saved later, the binary also holds the work-group sizes that ran. */
static void save_unsaved(kiln_program_cache *cache, program_entry *p)
{
    if (!p->unsaved)
        return;
    const char *path = p->unsaved, *key = path + strlen(path) + 1;
    double start = now_seconds();
    save_binary(cache->device, p->program, path, key);
    if (verbose_builds())
        fprintf(stderr, "kiln: cached %s%s%s%s%s in %.3f s\n", p->source, *p->kernel ? ":" : "",
                p->kernel, *p->options ? " " : "", p->options, now_seconds() - start);
    free(p->unsaved);
    p->unsaved = NULL;
}

static kiln_status build_program(kiln_ctx *ctx, const program_text *src, const char *options,
                                 cl_program *out, char **unsaved)
{
    char key[4096], path[PATH_CAP], full[1024];
    double start = now_seconds();
    full_options(options, full, sizeof full);
    cache_key(ctx, src, options, key, sizeof key);
    int cacheable = cache_path(key, path, sizeof path) == 0;
    if (cacheable && (*out = load_binary(ctx, path, key, full)) != NULL) {
        ctx->stats.disk_hits++;
        report_build(src, options, "loaded", now_seconds() - start);
        return KILN_OK;
    }
    kiln_status st = compile_source(ctx, src, options, full, out);
    if (st == KILN_OK)
        report_build(src, options, "compiled", now_seconds() - start);
    if (st == KILN_OK && cacheable)
        *unsaved = path_and_key(path, key);
    return st;
}

static char *dup_string(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    return d ? memcpy(d, s, n) : NULL;
}

/* The program of source and options holding the kernels of the list
 * (names separated by spaces), or every kernel of the source when it is
 * "". A program built for several kernels also serves each of them. */
static program_entry *find_program(const kiln_ctx *ctx, const char *source,
                                   const char *options, const char *kernel)
{
    for (program_entry *p = ctx->programs->programs; p; p = p->next)
        if (strcmp(p->source, source) == 0 && strcmp(p->options, options) == 0 &&
            (strcmp(p->kernel, kernel) == 0 ||
             (*kernel && !strchr(kernel, ' ') && kernel_list_has(p->kernel, kernel, strlen(kernel)))))
            return p;
    return NULL;
}

int program_built(const kiln_ctx *ctx, const char *source, const char *options,
                  const char *kernel)
{
    return find_program(ctx, source, options ? options : "", kernel) != NULL;
}

/* Enters program, built for the kernels of source and options, into the
 * memory cache (taking program and unsaved, even on failure). */
static kiln_status add_entry(kiln_ctx *ctx, const char *source, const char *options,
                             const char *kernel, cl_program program, char *unsaved,
                             program_entry **out)
{
    program_entry *entry = calloc(1, sizeof *entry);
    if (entry) {
        entry->source = dup_string(source);
        entry->options = dup_string(options);
        entry->kernel = dup_string(kernel);
    }
    if (!entry || !entry->source || !entry->options || !entry->kernel) {
        if (entry) {
            free(entry->source);
            free(entry->options);
            free(entry->kernel);
        }
        free(entry);
        free(unsaved);
        clReleaseProgram(program);
        return error_set(KILN_ERR_OUT_OF_MEMORY, "program cache: out of memory");
    }
    entry->program = program;
    entry->unsaved = unsaved;
    entry->next = ctx->programs->programs;
    ctx->programs->programs = entry;
    if (ctx->program_holds == 0)
        save_unsaved(ctx->programs, entry);
    if (out)
        *out = entry;
    return KILN_OK;
}

static kiln_status get_program(kiln_ctx *ctx, const char *source, const char *options,
                               const char *kernel, program_entry **out)
{
    program_entry *found = find_program(ctx, source, options, kernel);
    if (found) {
        ctx->stats.memory_hits++;
        *out = found;
        return KILN_OK;
    }
    program_text src;
    kiln_status st = program_text_resolve(source, *kernel ? kernel : NULL, &src);
    if (st != KILN_OK)
        return st;
    if (strlen(options) > 800)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "build options for %s longer than 800 "
                                                    "characters", source);
    cl_program program;
    char *unsaved = NULL;
    st = build_program(ctx, &src, options, &program, &unsaved);
    return st == KILN_OK ? add_entry(ctx, source, options, kernel, program, unsaved, out) : st;
}

/* Bundles: the requests gathered greedily, in order, into the first
 * bundle that takes each (bundle_take in program_text.c says when texts
 * fit); bundles of two or more built, each request entered with its
 * share of the program. */
kiln_status program_bundle_build(kiln_ctx *ctx, size_t n, const char *const *sources,
                                 const char *const *options, const char *const *kernels)
{
    program_bundle *b = calloc(n ? n : 1, sizeof *b);
    int *home = calloc(n ? n : 1, sizeof *home);
    kiln_status first = b && home ? KILN_OK : error_set(KILN_ERR_OUT_OF_MEMORY,
                                                         "program cache: out of memory");
    size_t bundles = 0;
    char **plain = n > 1 ? plain_sources() : NULL; /* one request fits alone: no checks */
    for (size_t i = 0; i < n && first == KILN_OK; i++) {
        program_text r;
        home[i] = -1;
        if (!*kernels[i] || find_program(ctx, sources[i], options[i], kernels[i]) ||
            program_text_resolve(sources[i], kernels[i], &r) != KILN_OK) {
            error_clear(); /* every kernel, built already, or an error its own build reports */
            continue;
        }
        for (size_t j = 0; j <= bundles && home[i] < 0; j++)
            if (bundle_take(&b[j], &r, options[i], kernels[i], plain))
                home[i] = (int)j;
        bundles += home[i] == (int)bundles;
    }
    for (size_t j = 0; j < bundles && first == KILN_OK; j++) {
        cl_program program;
        char *unsaved = NULL;
        if (b[j].requests < 2 || build_program(ctx, &b[j].text, b[j].options, &program,
                                               &unsaved) != KILN_OK) {
            if (b[j].requests >= 2) {
                ctx->stats.bundles_split++;
                if (verbose_builds())
                    fprintf(stderr, "kiln: %s did not build as one program, built apart: "
                                    "%.600s\n", b[j].name, kiln_last_error());
                error_clear(); /* each request builds alone, where its error is reported */
            }
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            if (home[i] != (int)j)
                continue;
            clRetainProgram(program);
            kiln_status st = add_entry(ctx, sources[i], options[i], kernels[i], program,
                                       unsaved, NULL);
            unsaved = NULL; /* the first request's entry writes the binary */
            first = first == KILN_OK ? st : first;
        }
        clReleaseProgram(program);
    }
    plain_free(plain);
    free(b);
    free(home);
    return first;
}

void programs_hold(kiln_ctx *ctx)
{
    ctx->program_holds++;
}

int programs_held(const kiln_ctx *ctx)
{
    return ctx->program_holds > 0;
}

void programs_release(kiln_ctx *ctx)
{
    if (ctx->program_holds == 1)
        programs_flush_quietly(ctx);
    if (ctx->program_holds == 0 || --ctx->program_holds > 0)
        return;
    kiln_program_cache *caches[] = {ctx->programs, ctx->inline_lane.programs};
    for (size_t i = 0; i < sizeof caches / sizeof caches[0]; i++)
        for (program_entry *p = caches[i] ? caches[i]->programs : NULL; p; p = p->next)
            save_unsaved(caches[i], p);
}

kiln_status kiln_program_prepare(kiln_ctx *ctx, const char *source, const char *options)
{
    if (!ctx || !source)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_program_prepare: ctx and source "
                                                    "are required");
    program_entry *entry;
    return get_program(ctx, source, options ? options : "", "", &entry);
}

kiln_status program_group(kiln_ctx *ctx, const char *source, const char *options,
                          const char *kernels)
{
    program_entry *entry;
    return get_program(ctx, source, options ? options : "", kernels, &entry);
}

kiln_status kernel_get(kiln_ctx *ctx, const char *source, const char *options,
                       const char *kernel, cl_kernel *out)
{
    if (!ctx || !source || !kernel)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kernel_get: ctx, source and kernel "
                                                    "are required");
    if (defer_wanted(ctx) && !program_built(ctx, source, options ? options : "", kernel))
        return defer_kernel(ctx, source, options ? options : "", kernel, out);
    program_entry *p;
    kiln_status st = get_program(ctx, source, options ? options : "", kernel, &p);
    if (st != KILN_OK)
        return st;
    for (kernel_entry *k = p->kernels; k; k = k->next) {
        if (strcmp(k->name, kernel) == 0) {
            *out = k->kernel;
            return KILN_OK;
        }
    }
    kernel_entry *k = calloc(1, sizeof *k);
    cl_int err = CL_OUT_OF_HOST_MEMORY;
    if (k && (k->name = dup_string(kernel)) != NULL)
        k->kernel = clCreateKernel(p->program, kernel, &err);
    if (err != CL_SUCCESS) {
        if (k)
            free(k->name);
        free(k);
        return error_cl_in(err, "clCreateKernel", "kernel \"%s\" of %s", kernel, source);
    }
    k->next = p->kernels;
    p->kernels = k;
    *out = k->kernel;
    return KILN_OK;
}
