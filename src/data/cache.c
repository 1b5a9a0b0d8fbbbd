/* The decoded-image cache ([train] cache = true): a file beside the run
 * holding every image of a split as decoded and converted to the model's
 * channels (before resizing and augmentation), with the statistics of the
 * first pass, so that a later run over the same files decodes nothing:
 *
 *   header  "KILNIMG1", key (u64), count (u64), channels (u32), 0 (u32)
 *   index   count entries: offset (u64), width, height (u32), bad (u32),
 *           0 (u32), per-channel sums and sums of squares (6 doubles)
 *   pixels  each image's bytes, where its entry says
 *
 * The key hashes every file's path, size, time and label, the channels,
 * the model's height and width and resize: a file that changed, or
 * another model, makes the cache stale, and it is written anew (through a
 * temporary file and a rename). Host byte order: a cache is local. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/folder.h"

#define HEADER 32
#define ENTRY 72

struct image_cache {
    int refs;
    unsigned char *map;
    size_t size;
};

struct cache_writer {
    pthread_mutex_t lock;
    int fd;
    uint64_t end; /* where the next image's bytes go */
    int failed;   /* a write failed: the cache is not finished */
    char error[512];
    char tmp[4200], path[4096];
};

uint64_t cache_key(const image_source *s)
{
    uint64_t h = fnv1a64("kiln image cache", 16);
    int shape[4] = {s->channels, s->height, s->width, s->cfg.t.resize};
    h ^= fnv1a64(shape, sizeof shape);
    for (size_t i = 0; i < s->count; i++) {
        struct stat info;
        int64_t facts[3] = {-1, -1, s->files[i].label};
        if (stat(s->files[i].path, &info) == 0)
            facts[0] = (int64_t)info.st_size, facts[1] = (int64_t)info.st_mtime;
        h = h * 1099511628211ull ^ fnv1a64(s->files[i].path, strlen(s->files[i].path));
        h = h * 1099511628211ull ^ fnv1a64(facts, sizeof facts);
    }
    return h;
}

void cache_release(image_cache *c)
{
    if (c && --c->refs == 0) {
        munmap(c->map, c->size);
        free(c);
    }
}

const unsigned char *cache_pixels(const image_cache *c, uint64_t at)
{
    return c->map + at;
}

image_cache *cache_share(image_cache *c)
{
    if (c)
        c->refs++;
    return c;
}

/* Maps path; NULL when missing or unreadable. */
static image_cache *map_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat info;
    image_cache *c = NULL;
    if (fd >= 0 && fstat(fd, &info) == 0 && info.st_size >= HEADER && (c = calloc(1, sizeof *c))) {
        c->size = (size_t)info.st_size;
        c->map = mmap(NULL, c->size, PROT_READ, MAP_PRIVATE, fd, 0);
        c->refs = 1;
        if (c->map == MAP_FAILED) {
            free(c);
            c = NULL;
        }
    }
    if (fd >= 0)
        close(fd);
    return c;
}

int cache_open(const char *path, image_source *s, uint64_t key)
{
    image_cache *c = map_file(path);
    uint64_t head[2];
    uint32_t channels;
    int ok = c != NULL && memcmp(c->map, "KILNIMG1", 8) == 0;
    if (ok) {
        memcpy(head, c->map + 8, 16);
        memcpy(&channels, c->map + 24, 4);
        ok = head[0] == key && head[1] == s->count && channels == (uint32_t)s->channels &&
             s->count <= (c->size - HEADER) / ENTRY;
    }
    for (size_t i = 0; ok && i < s->count; i++) {
        const unsigned char *e = c->map + HEADER + i * ENTRY;
        uint64_t at;
        uint32_t wh[3];
        memcpy(&at, e, 8);
        memcpy(wh, e + 8, 12);
        folder_file *f = &s->files[i];
        ok = wh[2] || (wh[0] && wh[1] && at <= c->size &&
                       (uint64_t)wh[0] * wh[1] * (uint64_t)channels <= c->size - at);
        f->bad = wh[2] != 0;
        f->at = at, f->w = (int)wh[0], f->h = (int)wh[1];
        memcpy(f->sum, e + 24, 24);
        memcpy(f->squares, e + 48, 24);
    }
    if (!ok) {
        for (size_t i = 0; i < s->count; i++) { /* as the listing left them */
            folder_file *f = &s->files[i];
            f->w = f->h = f->bad = 0;
            f->at = 0;
            memset(f->sum, 0, sizeof f->sum);
            memset(f->squares, 0, sizeof f->squares);
        }
        cache_release(c);
        return 0;
    }
    s->cache = c;
    return 1;
}

kiln_status cache_begin(const char *path, size_t count, cache_writer **out)
{
    cache_writer *w = calloc(1, sizeof *w);
    *out = NULL;
    if (!w)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    char dir[4096];
    dir_of(path, dir, sizeof dir);
    snprintf(w->path, sizeof w->path, "%s", path);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp.XXXXXX", path);
    if (make_dirs(dir) != 0 || (w->fd = mkstemp(w->tmp)) < 0) {
        free(w);
        return error_set(KILN_ERR_IO, "%s: cannot write the image cache (%s)", path,
                         strerror(errno));
    }
    pthread_mutex_init(&w->lock, NULL);
    w->end = HEADER + (uint64_t)count * ENTRY;
    *out = w;
    return KILN_OK;
}

kiln_status cache_put(cache_writer *w, folder_file *f, const image *im)
{
    size_t n = (size_t)im->width * (size_t)im->height * (size_t)im->channels;
    pthread_mutex_lock(&w->lock);
    uint64_t at = w->end;
    w->end += n;
    pthread_mutex_unlock(&w->lock);
    const unsigned char *p = im->pixels;
    for (size_t done = 0; done < n;) {
        ssize_t k = pwrite(w->fd, p + done, n - done, (off_t)(at + done));
        if (k <= 0) {
            pthread_mutex_lock(&w->lock);
            if (!w->failed)
                snprintf(w->error, sizeof w->error, "%s", strerror(errno));
            w->failed = 1;
            pthread_mutex_unlock(&w->lock);
            return error_set(KILN_ERR_IO, "%s: cannot write the image cache", w->path);
        }
        done += (size_t)k;
    }
    f->at = at, f->w = im->width, f->h = im->height;
    return KILN_OK;
}

void cache_abort(cache_writer *w)
{
    if (!w)
        return;
    close(w->fd);
    unlink(w->tmp);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

kiln_status cache_finish(cache_writer *w, image_source *s, uint64_t key)
{
    size_t size = HEADER + s->count * ENTRY;
    unsigned char *index = calloc(1, size);
    kiln_status st = index ? KILN_OK
                           : error_set(KILN_ERR_OUT_OF_MEMORY, "image cache: out of memory");
    if (w->failed)
        st = error_set(KILN_ERR_IO, "%s: cannot write the image cache (%s)", w->path, w->error);
    uint64_t head[2] = {key, s->count};
    uint32_t channels = (uint32_t)s->channels;
    if (index) {
        memcpy(index, "KILNIMG1", 8);
        memcpy(index + 8, head, 16);
        memcpy(index + 24, &channels, 4);
    }
    for (size_t i = 0; index && i < s->count; i++) {
        unsigned char *e = index + HEADER + i * ENTRY;
        const folder_file *f = &s->files[i];
        uint32_t wh[3] = {(uint32_t)f->w, (uint32_t)f->h, (uint32_t)f->bad};
        memcpy(e, &f->at, 8);
        memcpy(e + 8, wh, 12);
        memcpy(e + 24, f->sum, 24);
        memcpy(e + 48, f->squares, 24);
    }
    if (st == KILN_OK && (write_all(w->fd, index, size) != 0 || fsync(w->fd) != 0 ||
                          rename(w->tmp, w->path) != 0))
        st = error_set(KILN_ERR_IO, "%s: cannot write the image cache (%s)", w->path,
                       strerror(errno));
    free(index);
    if (st == KILN_OK && !(s->cache = map_file(w->path)))
        st = error_set(KILN_ERR_IO, "%s: cannot read the image cache back", w->path);
    if (st != KILN_OK)
        for (size_t i = 0; i < s->count; i++)
            s->files[i].w = 0;
    cache_abort(w); /* closes; the temporary name is gone after the rename */
    return st;
}
