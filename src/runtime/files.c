/* Small system helpers: directories, full writes and files written whole
 * (checkpoints, logs, plots, tuning records, the kernel cache, predictions),
 * and the clock for training and benchmarks. */
#define _GNU_SOURCE /* fopencookie */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime/runtime.h"

void dir_of(const char *path, char *dir, size_t size)
{
    snprintf(dir, size, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    else
        snprintf(dir, size, ".");
}

int make_dirs(const char *dir)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return -1;
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(path, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

int write_all(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

kiln_status fail_write(const char *path, int err)
{
    return error_set(KILN_ERR_IO, "%s: cannot write (%s)", path, strerror(err));
}

/* Makes a rename durable: fsync of the directory that holds path (best
 * effort; some file systems refuse it). */
static void sync_directory_of(const char *path)
{
    char dir[4096];
    dir_of(path, dir, sizeof dir);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static kiln_status write_in_place(const char *path, file_fill fill, void *user)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return fail_write(path, errno);
    kiln_status st = fill(fd, path, user);
    if (close(fd) != 0 && st == KILN_OK)
        st = fail_write(path, errno);
    return st;
}

kiln_status write_file_atomic(const char *path, file_fill fill, void *user)
{
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path) >= (int)sizeof tmp)
        return error_set(KILN_ERR_IO, "%s: path too long", path);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return error_set(KILN_ERR_IO, "%s: cannot write there (no temporary file could be made "
                                      "beside it: %s)", path, strerror(errno));
    kiln_status st = fchmod(fd, 0644) == 0 ? KILN_OK : fail_write(path, errno);
    if (st == KILN_OK)
        st = fill(fd, path, user);
    if (st == KILN_OK && fsync(fd) != 0)
        st = fail_write(path, errno);
    if (close(fd) != 0 && st == KILN_OK)
        st = fail_write(path, errno);
    if (st == KILN_OK && rename(tmp, path) != 0)
        st = error_set(KILN_ERR_IO, "%s: cannot replace it with %s (%s)", path, tmp,
                       strerror(errno));
    if (st == KILN_OK)
        sync_directory_of(path);
    else
        unlink(tmp);
    return st;
}

kiln_status write_output(const char *path, file_fill fill, void *user)
{
    struct stat info;
    int exists = stat(path, &info) == 0;
    if (exists && S_ISDIR(info.st_mode))
        return error_set(KILN_ERR_IO, "%s: is a directory; expected a file name", path);
    if (exists && !S_ISREG(info.st_mode))
        return write_in_place(path, fill, user);
    return write_file_atomic(path, fill, user);
}

typedef struct {
    const void *data;
    size_t n;
} bytes;

static kiln_status fill_bytes(int fd, const char *path, void *user)
{
    const bytes *b = user;
    return write_all(fd, b->data, b->n) == 0 ? KILN_OK : fail_write(path, errno);
}

kiln_status write_bytes_atomic(const char *path, const void *data, size_t n)
{
    bytes b = {data, n};
    return write_file_atomic(path, fill_bytes, &b);
}

kiln_status write_bytes_output(const char *path, const void *data, size_t n)
{
    bytes b = {data, n};
    return write_output(path, fill_bytes, &b);
}

/* A stream over a file descriptor that keeps the reason of its first
 * failed write (a FILE's error flag alone loses errno). */
typedef struct {
    int fd, err;
} sink;

static ssize_t sink_write(void *cookie, const char *data, size_t n)
{
    sink *s = cookie;
    if (s->err || write_all(s->fd, data, n) != 0) {
        s->err = s->err ? s->err : errno ? errno : EIO;
        return -1;
    }
    return (ssize_t)n;
}

typedef struct {
    kiln_fill_fn fill;
    void *user;
} stream_fill;

static kiln_status fill_stream(int fd, const char *path, void *user)
{
    const stream_fill *w = user;
    sink s = {fd, 0};
    FILE *f = fopencookie(&s, "w", (cookie_io_functions_t){.write = sink_write});
    if (!f)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of host memory", path);
    kiln_status st = w->fill(w->user, f);
    fclose(f); /* flushes; a failure lands in s.err */
    return s.err ? fail_write(path, s.err) : st;
}

kiln_status kiln_write_file_atomic(const char *path, kiln_fill_fn fill, void *user)
{
    if (!path || !fill)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_write_file_atomic: %s is NULL",
                         !path ? "path" : "fill");
    stream_fill w = {fill, user};
    return write_output(path, fill_stream, &w);
}

double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
