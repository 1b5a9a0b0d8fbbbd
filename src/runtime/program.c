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
    program_entry *programs;
    int holds; /* programs_hold calls not yet released */
};

kiln_status program_cache_create(kiln_ctx *ctx, kiln_program_cache **out)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "program cache: out of memory");
    (*out)->ctx = ctx;
    return KILN_OK;
}

static void save_unsaved(kiln_ctx *ctx, program_entry *p);

void program_cache_free(kiln_program_cache *cache)
{
    if (!cache)
        return;
    for (program_entry *p = cache->programs; p; p = p->next)
        save_unsaved(cache->ctx, p);
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

static const kiln_cl_source *find_source(const char *name, size_t len)
{
    for (size_t i = 0; i < kiln_cl_source_count; i++)
        if (strlen(kiln_cl_sources[i].name) == len &&
            strncmp(kiln_cl_sources[i].name, name, len) == 0)
            return &kiln_cl_sources[i];
    return NULL;
}

/* A program's text: one embedded source, or several joined by '+'
 * ("group.cl+norm.cl"), compiled together in that order; with `only`, the
 * program holds those kernels alone (keep_kernels): one name, or several
 * separated by spaces. */
#define MAX_PARTS 16

typedef struct {
    const char *name;
    const char *only; /* NULL: every kernel; else names separated by spaces */
    const kiln_cl_source *part[MAX_PARTS];
    int count;
} program_text;

static kiln_status resolve(const char *name, const char *only, program_text *out)
{
    out->name = name;
    out->only = only;
    out->count = 0;
    for (const char *p = name;; p++) {
        const char *end = strchr(p, '+');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const kiln_cl_source *src = find_source(p, len);
        if (!src)
            return error_set(KILN_ERR_INVALID_ARGUMENT, "no embedded kernel source \"%.*s\"",
                             (int)len, p);
        if (out->count == MAX_PARTS)
            return error_set(KILN_ERR_INVALID_ARGUMENT, "program \"%s\" joins more than %d "
                                                        "sources", name, MAX_PARTS);
        out->part[out->count++] = src;
        if (!end)
            return KILN_OK;
        p = end;
    }
}

#define KERNEL_MARK "\n__kernel"

/* The length of the identifier at s. */
static size_t ident_len(const char *s)
{
    size_t n = 0;
    while (s[n] == '_' || (s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') ||
           (s[n] >= '0' && s[n] <= '9'))
        n++;
    return n;
}

/* Just past the brace that closes the first '{' at or after s, skipping
 * comments; NULL when there is none. */
static const char *body_end(const char *s)
{
    int depth = 0;
    for (const char *c = s; *c; c++) {
        if (c[0] == '/' && c[1] == '*') {
            const char *close = strstr(c + 2, "*/");
            if (!close)
                return NULL;
            c = close + 1;
        } else if (c[0] == '/' && c[1] == '/') {
            c += strcspn(c, "\n");
            if (!*c)
                return NULL;
        } else if (*c == '{') {
            depth++;
        } else if (*c == '}' && --depth == 0) {
            return c + 1;
        } else if (*c == '}' && depth < 0) {
            return NULL;
        }
    }
    return NULL;
}

/* Whether the space-separated list names the kernel name[0..len). */
static int list_has(const char *list, const char *name, size_t len)
{
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, " ");
        if (n == len && strncmp(p, name, len) == 0)
            return 1;
        p += n;
        p += strspn(p, " ");
    }
    return 0;
}

/* text without the kernels that `keep` (names separated by spaces) does not
 * name (NULL when out of memory); *kept is set when it keeps one. A program
 * pays for its own kernels only: PoCL compiles every kernel of a program to
 * machine code when its binary is asked for.
 * Kernels are declared at the start of a line, "__kernel [attributes]
 * void name(...) {...}"; a dropped kernel leaves its line breaks, so #line
 * markers and build logs still name the right lines of cl/. */
static char *keep_kernels(const char *text, const char *keep, int *kept)
{
    char *out = malloc(strlen(text) + 1);
    if (!out)
        return NULL;
    char *o = out;
    const char *p = text, *mark;
    int found = 0;
    while ((mark = strstr(p, KERNEL_MARK)) != NULL) {
        const char *ret = strstr(mark, "void"), *name = ret ? ret + 4 : NULL;
        while (name && (*name == ' ' || *name == '\n'))
            name++;
        size_t len = name ? ident_len(name) : 0;
        const char *end = name ? body_end(name) : NULL;
        int drop = end && !list_has(keep, name, len);
        found |= end && !drop;
        const char *next = drop ? end : mark + 1;
        memcpy(o, p, (size_t)(mark + 1 - p));
        o += mark + 1 - p;
        for (const char *c = mark + 1; drop && c < end; c++)
            if (*c == '\n')
                *o++ = '\n';
        if (!drop) {
            memcpy(o, mark + 1, (size_t)(next - mark - 1));
            o += next - mark - 1;
        }
        p = next;
    }
    strcpy(o, p);
    *kept |= found;
    return out;
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
                        ctx->info.name, ctx->info.device_version, ctx->info.driver_version,
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

static void save_binary(kiln_ctx *ctx, cl_program program, const char *path, const char *key)
{
    size_t bin_len = 0;
    if (clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof bin_len, &bin_len, NULL) !=
            CL_SUCCESS ||
        bin_len == 0 || bin_len > CACHE_MAX_FILE)
        return;
    unsigned char *bin = malloc(bin_len);
    if (bin && clGetProgramInfo(program, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL) ==
                   CL_SUCCESS)
        store_cache_file(path, key, bin, bin_len);
    free(bin);
    (void)ctx;
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
static void save_unsaved(kiln_ctx *ctx, program_entry *p)
{
    if (!p->unsaved)
        return;
    const char *path = p->unsaved, *key = path + strlen(path) + 1;
    double start = now_seconds();
    save_binary(ctx, p->program, path, key);
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
             (*kernel && !strchr(kernel, ' ') && list_has(p->kernel, kernel, strlen(kernel)))))
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
    if (ctx->programs->holds == 0)
        save_unsaved(ctx, entry);
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
    kiln_status st = resolve(source, *kernel ? kernel : NULL, &src);
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

/* ---- bundles: the programs of several sources and options as one ----------
 *
 * PoCL spends about 0.13 s on any program before its kernels (clang reads
 * the OpenCL headers, LLVM links the builtin library), and builds one
 * program at a time. Requests whose sources and options cannot change each
 * other's meaning are therefore built as one program: a -D macro that only
 * one request passes is named nowhere in the other's sources, the ones both
 * pass agree, any other flag is passed by both, and no macro or function
 * that a source of only one defines is named in the other's. What this
 * textual check misses fails the build, and those requests build apart. */

#define BUNDLE_OPTIONS_MAX 800
#define BUNDLE_KERNELS_MAX 2048
#define BUNDLE_NAME_MAX 512

static int ident_char(char c)
{
    return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Whether text names the identifier name[0..len) (in a comment too: a
 * false mention only keeps two programs apart). */
static int mentions(const char *text, const char *name, size_t len)
{
    for (const char *p = text; (p = strstr(p, name)) != NULL; p++)
        if ((p == text || !ident_char(p[-1])) && !ident_char(p[len]))
            return 1;
    return 0;
}

/* Each embedded source with its comments blanked (spaces, so that
 * offsets hold), indexed as kiln_cl_sources, for the checks below: a name
 * in a comment changes nothing. NULL when out of memory (the checks then
 * read the sources as they are). */
static char **plain_sources(void)
{
    char **plain = calloc(kiln_cl_source_count, sizeof *plain);
    for (size_t i = 0; plain && i < kiln_cl_source_count; i++) {
        const char *t = kiln_cl_sources[i].text;
        char *p = plain[i] = malloc(strlen(t) + 1);
        if (!p) {
            for (size_t j = 0; j < i; j++)
                free(plain[j]);
            free(plain);
            return NULL;
        }
        for (const char *c = t; *c;) {
            const char *end = c[0] == '/' && c[1] == '*'   ? strstr(c + 2, "*/")
                              : c[0] == '/' && c[1] == '/' ? c + strcspn(c, "\n")
                                                           : NULL;
            if (end && c[1] == '*')
                end += 2;
            for (const char *stop = end ? end : c + 1; c < stop && *c; c++)
                *p++ = end && *c != '\n' ? ' ' : *c;
        }
        *p = '\0';
    }
    return plain;
}

static void plain_free(char **plain)
{
    for (size_t i = 0; plain && i < kiln_cl_source_count; i++)
        free(plain[i]);
    free(plain);
}

/* A part's text for the checks: without its comments where plain has it. */
static const char *part_text(const kiln_cl_source *part, char *const *plain)
{
    return plain ? plain[part - kiln_cl_sources] : part->text;
}

/* Whether a part of t names name[0..len). */
static int text_mentions(const program_text *t, const char *name, size_t len,
                         char *const *plain)
{
    char copy[128];
    if (len >= sizeof copy)
        return 1;
    memcpy(copy, name, len);
    copy[len] = '\0';
    for (int i = 0; i < t->count; i++)
        if (mentions(part_text(t->part[i], plain), copy, len))
            return 1;
    return 0;
}

static int has_part(const program_text *t, const kiln_cl_source *part)
{
    for (int i = 0; i < t->count; i++)
        if (t->part[i] == part)
            return 1;
    return 0;
}

/* The token of options (separated by spaces) that is -Dname[=...], or
 * NULL; its length in *len. */
static const char *find_define(const char *options, const char *name, size_t name_len,
                               size_t *len)
{
    for (const char *p = options + strspn(options, " "); *p; p += strspn(p, " ")) {
        size_t n = strcspn(p, " ");
        if (n > 2 && p[0] == '-' && p[1] == 'D' && strncmp(p + 2, name, name_len) == 0 &&
            (p[2 + name_len] == '=' || n == 2 + name_len)) {
            *len = n;
            return p;
        }
        p += n;
    }
    return NULL;
}

/* Whether options (t's) sit with other (u's): each -D macro of options
 * either has the same value in other or is named by no part of u, and
 * each other flag is in other too. */
static int options_fit(const char *options, const char *other, const program_text *u,
                       char *const *plain)
{
    for (const char *p = options + strspn(options, " "); *p; p += strspn(p, " ")) {
        size_t n = strcspn(p, " "), len;
        if (n > 2 && p[0] == '-' && p[1] == 'D') {
            size_t name_len = strcspn(p + 2, "= ");
            const char *there = find_define(other, p + 2, name_len, &len);
            if (there ? len != n || strncmp(there, p, n) != 0
                      : text_mentions(u, p + 2, name_len, plain))
                return 0;
        } else {
            int found = 0;
            for (const char *q = other + strspn(other, " "); *q && !found; q += strspn(q, " ")) {
                size_t m = strcspn(q, " ");
                found = m == n && strncmp(q, p, n) == 0;
                q += m;
            }
            if (!found)
                return 0;
        }
        p += n;
    }
    return 1;
}

/* Whether no macro that a part of t outside u defines or undefines is
 * named by a part of u. */
static int defines_fit(const program_text *t, const program_text *u, char *const *plain)
{
    for (int i = 0; i < t->count; i++) {
        if (has_part(u, t->part[i]))
            continue;
        for (const char *line = part_text(t->part[i], plain); *line;) {
            const char *c = line + strspn(line, " \t");
            if (*c == '#') {
                c += 1 + strspn(c + 1, " \t");
                size_t word = ident_len(c);
                if ((word == 6 && strncmp(c, "define", 6) == 0) ||
                    (word == 5 && strncmp(c, "undef", 5) == 0)) {
                    c += word + strspn(c + word, " \t");
                    if (text_mentions(u, c, ident_len(c), plain))
                        return 0;
                }
            }
            line += strcspn(line, "\n");
            line += *line == '\n';
        }
    }
    return 1;
}

/* Past the comment or preprocessor line at c (a line's first non-blank
 * '#', its continuations included), or c itself when none starts there. */
static const char *skip_aside(const char *c, int line_start)
{
    if (c[0] == '/' && c[1] == '*') {
        const char *close = strstr(c + 2, "*/");
        return close ? close + 2 : c + strlen(c);
    }
    if ((c[0] == '/' && c[1] == '/') || (c[0] == '#' && line_start)) {
        while (*c && !(*c == '\n' && c[-1] != '\\'))
            c++;
        return c;
    }
    return c;
}

/* Whether no function that a part of t outside u defines at file scope
 * (a name followed by '(' outside any braces and parentheses) is named by
 * a part of u: two sources defining the same helper do not build as one
 * program. */
static int functions_fit(const program_text *t, const program_text *u, char *const *plain)
{
    for (int i = 0; i < t->count; i++) {
        if (has_part(u, t->part[i]))
            continue;
        int depth = 0, line_start = 1;
        for (const char *c = part_text(t->part[i], plain); *c;) {
            const char *past = skip_aside(c, line_start);
            if (past != c) {
                c = past;
                continue;
            }
            if (ident_char(*c)) {
                size_t n = ident_len(c);
                const char *after = c + n;
                after += strspn(after, " \t\n");
                if (depth == 0 && *after == '(' && !(*c >= '0' && *c <= '9') &&
                    strncmp(c, "__", 2) != 0 && text_mentions(u, c, n, plain))
                    return 0;
                c += n;
                line_start = 0;
                continue;
            }
            depth += (*c == '{' || *c == '(') - (*c == '}' || *c == ')');
            line_start = *c == '\n' || (line_start && (*c == ' ' || *c == '\t'));
            c++;
        }
    }
    return 1;
}

typedef struct {
    program_text text;
    char name[BUNDLE_NAME_MAX];
    char options[BUNDLE_OPTIONS_MAX + 1];
    char kernels[BUNDLE_KERNELS_MAX];
    int requests;
} program_bundle;

/* Appends the words of list (separated by spaces) that buf does not hold;
 * 0 when buf has no room. */
static int append_words(char *buf, size_t size, const char *list)
{
    size_t used = strlen(buf);
    for (const char *p = list + strspn(list, " "); *p; p += strspn(p, " ")) {
        size_t n = strcspn(p, " ");
        if (!list_has(buf, p, n)) {
            if (used + n + 2 > size)
                return 0;
            if (used)
                buf[used++] = ' ';
            memcpy(buf + used, p, n);
            buf[used += n] = '\0';
        }
        p += n;
    }
    return 1;
}

/* Adds request r (its text, options and kernels) to b when they fit. */
static int bundle_take(program_bundle *b, const program_text *r, const char *options,
                       const char *kernels, char *const *plain)
{
    if (b->requests > 0 &&
        !(options_fit(options, b->options, &b->text, plain) &&
          options_fit(b->options, options, r, plain) && defines_fit(&b->text, r, plain) &&
          defines_fit(r, &b->text, plain) && functions_fit(&b->text, r, plain) &&
          functions_fit(r, &b->text, plain)))
        return 0;
    program_bundle next = *b;
    next.text.only = next.kernels;
    for (int i = 0; i < r->count; i++) {
        if (has_part(&next.text, r->part[i]))
            continue;
        size_t used = strlen(next.name), n = strlen(r->part[i]->name);
        if (next.text.count == MAX_PARTS || used + n + 2 > sizeof next.name)
            return 0;
        next.text.part[next.text.count++] = r->part[i];
        snprintf(next.name + used, sizeof next.name - used, "%s%s", used ? "+" : "",
                 r->part[i]->name);
    }
    if (!append_words(next.options, sizeof next.options, options) ||
        !append_words(next.kernels, sizeof next.kernels, kernels))
        return 0;
    next.requests++;
    *b = next;
    b->text.name = b->name;
    b->text.only = b->kernels;
    return 1;
}

kiln_status program_bundle_build(kiln_ctx *ctx, size_t n, const char *const *sources,
                                 const char *const *options, const char *const *kernels)
{
    program_bundle *b = calloc(n ? n : 1, sizeof *b);
    int *home = calloc(n ? n : 1, sizeof *home);
    kiln_status first = b && home ? KILN_OK : error_set(KILN_ERR_OUT_OF_MEMORY,
                                                         "program cache: out of memory");
    size_t bundles = 0;
    char **plain = plain_sources();
    for (size_t i = 0; i < n && first == KILN_OK; i++) {
        program_text r;
        home[i] = -1;
        if (!*kernels[i] || find_program(ctx, sources[i], options[i], kernels[i]) ||
            resolve(sources[i], kernels[i], &r) != KILN_OK) {
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
    ctx->programs->holds++;
}

int programs_held(const kiln_ctx *ctx)
{
    return ctx->programs->holds > 0;
}

void programs_release(kiln_ctx *ctx)
{
    if (ctx->programs->holds == 1)
        programs_flush_quietly(ctx);
    if (ctx->programs->holds > 0 && --ctx->programs->holds == 0)
        for (program_entry *p = ctx->programs->programs; p; p = p->next)
            save_unsaved(ctx, p);
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
