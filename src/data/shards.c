/* Datasets of .npy shards: a list of features files (and as many label
 * files) that together are one dataset, their rows in the order of the
 * list. Every header is read at the start and checked against the first
 * file's; labels are small and read whole; features stay on disk, and a
 * batch reads its own samples (pread), so that under MPI a rank reads
 * only the samples of its slices of each batch. */
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "data/data.h"

typedef struct {
    char *path;
    size_t rows;   /* samples */
    size_t first;  /* its first row in the set */
    size_t offset; /* where its values start */
    int fd;        /* -1 until a batch reads from it */
} shard_file;

struct shard_set {
    shard_file *files;
    size_t count;    /* files */
    size_t rows;     /* samples in all */
    size_t features; /* values per sample */
    char kind;       /* the features' dtype, the same in every file */
    size_t size;
    int refs;        /* datasets sharing the set (training and its validation split) */
};

static void shards_release(shard_set *s)
{
    if (!s || --s->refs > 0)
        return;
    for (size_t i = 0; i < s->count; i++) {
        if (s->files[i].fd >= 0)
            close(s->files[i].fd);
        free(s->files[i].path);
    }
    free(s->files);
    free(s);
}

void data_free_shards(dataset *d)
{
    shards_release(d->shards);
    free(d->rows);
    d->shards = NULL;
    d->rows = NULL;
}

/* ---- the list of files ----------------------------------------------------------- */

typedef struct {
    char **path;
    size_t count, cap;
} path_list;

static void list_free(path_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->path[i]);
    free(l->path);
}

static kiln_status list_add(path_list *l, const char *path)
{
    if (l->count == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        char **grown = realloc(l->path, cap * sizeof *grown);
        if (!grown)
            return error_set(KILN_ERR_OUT_OF_MEMORY, "shards: out of memory");
        l->path = grown, l->cap = cap;
    }
    if (!(l->path[l->count] = strdup(path)))
        return error_set(KILN_ERR_OUT_OF_MEMORY, "shards: out of memory");
    l->count++;
    return KILN_OK;
}

/* One entry of the list: a file, or a pattern and its matches, sorted. */
static kiln_status expand_entry(path_list *l, const char *entry, const char *list,
                                const char *ext)
{
    if (!entry[0])
        return error_set(KILN_ERR_INVALID_ARGUMENT, "shards \"%s\": an empty entry; expected "
                                                    "%s files or patterns, comma-separated",
                         list, ext);
    if (!data_has_ext(entry, ext))
        return error_set(KILN_ERR_INVALID_ARGUMENT, "shards: %s is not a %s file or pattern; "
                                                    "shard = true reads %s shards here",
                         entry, ext, ext);
    if (!strpbrk(entry, "*?["))
        return list_add(l, entry);
    glob_t g;
    int rc = glob(entry, GLOB_ERR, NULL, &g);
    kiln_status st = rc == 0 ? KILN_OK
                     : rc == GLOB_NOMATCH
                         ? error_set(KILN_ERR_IO, "shards: no file matches %s", entry)
                         : error_set(KILN_ERR_IO, "shards: cannot list the files of %s (%s)",
                                     entry, strerror(errno));
    for (size_t i = 0; st == KILN_OK && i < g.gl_pathc; i++)
        st = list_add(l, g.gl_pathv[i]);
    globfree(&g);
    return st;
}

static kiln_status expand_list(const char *list, const char *ext, path_list *l)
{
    if (!list)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "shard = true needs data: %s files or "
                                                    "patterns, comma-separated", ext);
    char *copy = strdup(list);
    if (!copy)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "shards: out of memory");
    kiln_status st = KILN_OK;
    const char *end = copy + strlen(copy);
    for (char *p = copy; st == KILN_OK && p <= end; p += strlen(p) + 1) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        st = expand_entry(l, p, list, ext);
    }
    free(copy);
    return st;
}

kiln_status data_expand_paths(const char *list, const char *ext, char ***paths, size_t *count)
{
    path_list l = {0};
    kiln_status st = expand_list(list, ext, &l);
    if (st != KILN_OK) {
        list_free(&l);
        return st;
    }
    *paths = l.path;
    *count = l.count;
    return KILN_OK;
}

void data_free_paths(char **paths, size_t count)
{
    path_list l = {.path = paths, .count = count};
    list_free(&l);
}

/* ---- headers -------------------------------------------------------------------- */

static const char *dtype_name(char kind, size_t size)
{
    return kind == 'f' ? (size == 4 ? "float32" : "float64")
           : kind == 'u' ? (size == 1 ? "uint8" : "uint16")
                         : (size == 4 ? "int32" : "int64");
}

/* The per-sample shape of a header: "(3, 4)", "()" for one value. */
static const char *sample_shape(const npy_info *h, char *buf, size_t size)
{
    int n = snprintf(buf, size, "(");
    for (int i = 1; i < h->rank && n > 0 && (size_t)n < size; i++)
        n += snprintf(buf + n, size - (size_t)n, "%s%zu", i > 1 ? ", " : "", h->dims[i]);
    if (n > 0 && (size_t)n < size)
        snprintf(buf + n, size - (size_t)n, h->rank == 2 ? ",)" : ")");
    return buf;
}

/* Every features file holds samples of the first file's shape and dtype. */
static kiln_status check_like(const npy_info *h, const npy_info *first, const char *path,
                              const char *first_path)
{
    int same = h->rank == first->rank && h->kind == first->kind && h->size == first->size;
    for (int i = 1; same && i < h->rank; i++)
        same = h->dims[i] == first->dims[i];
    char a[128], b[128];
    if (!same)
        return error_set(KILN_ERR_SHAPE, "%s: samples of shape %s and dtype %s; expected %s "
                                         "and %s, as in %s (every shard holds the same)",
                         path, sample_shape(h, a, sizeof a), dtype_name(h->kind, h->size),
                         sample_shape(first, b, sizeof b), dtype_name(first->kind, first->size),
                         first_path);
    return KILN_OK;
}

static kiln_status read_headers(const path_list *l, shard_set *s)
{
    npy_info first = {0}, h;
    for (size_t i = 0; i < l->count; i++) {
        kiln_status st = data_npy_info(l->path[i], &h);
        if (st == KILN_OK && i == 0)
            first = h;
        if (st == KILN_OK)
            st = check_like(&h, &first, l->path[i], l->path[0]);
        if (st != KILN_OK)
            return st;
        shard_file *f = &s->files[i];
        f->path = l->path[i], f->rows = h.dims[0], f->first = s->rows, f->offset = h.offset;
        f->fd = -1;
        s->rows += f->rows;
        s->count++;
    }
    s->features = first.count / first.dims[0];
    s->kind = first.kind, s->size = first.size;
    return KILN_OK;
}

/* Each label file has as many labels as its features file has samples,
 * and as many targets per sample as the first. */
static kiln_status read_labels(const shard_set *s, const path_list *labels, dataset *d)
{
    d->count = s->rows;
    if (!labels) {
        d->targets = 1;
        d->unlabelled = 1;
        d->y = calloc(s->rows, sizeof *d->y);
        return d->y ? KILN_OK : error_set(KILN_ERR_OUT_OF_MEMORY, "shards: out of memory");
    }
    kiln_status st = KILN_OK;
    for (size_t i = 0; i < s->count && st == KILN_OK; i++) {
        dataset one;
        const shard_file *f = &s->files[i];
        st = data_load_npy_labels(labels->path[i], f->rows, f->path, &one);
        if (st == KILN_OK && i > 0 && one.targets != d->targets)
            st = error_set(KILN_ERR_SHAPE, "%s: %zu targets per sample; expected %zu, as in %s",
                           labels->path[i], one.targets, d->targets, labels->path[0]);
        if (st == KILN_OK && i == 0) {
            d->targets = one.targets;
            d->y = malloc(s->rows * d->targets * sizeof *d->y);
            if (!d->y)
                st = error_set(KILN_ERR_OUT_OF_MEMORY, "shards: out of memory for labels");
        }
        if (st == KILN_OK)
            memcpy(d->y + f->first * d->targets, one.y, f->rows * d->targets * sizeof *d->y);
        data_free(&one);
    }
    if (st == KILN_OK)
        data_label_classes(d);
    return st;
}

static kiln_status load_shards(path_list *x, path_list *y, const char *features, dataset *out)
{
    if (y && y->count != x->count)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "shards: %zu features files but %zu label "
                                                    "files; each features file needs its "
                                                    "labels (paired in sorted order)",
                         x->count, y->count);
    shard_set *s = calloc(1, sizeof *s);
    if (s)
        s->files = calloc(x->count, sizeof *s->files);
    if (!s || !s->files) {
        free(s);
        return error_set(KILN_ERR_OUT_OF_MEMORY, "shards: out of memory");
    }
    s->refs = 1;
    kiln_status st = read_headers(x, s);
    for (size_t i = s->count; i < x->count; i++)
        free(x->path[i]); /* the paths before went to the set */
    x->count = 0;
    out->shards = s;
    if (st == KILN_OK)
        st = read_labels(s, y, out);
    if (st == KILN_OK && !(out->rows = malloc(s->rows * sizeof *out->rows)))
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "shards: out of memory");
    for (size_t i = 0; st == KILN_OK && i < s->rows; i++)
        out->rows[i] = i;
    out->features = s->features;
    snprintf(out->name, sizeof out->name, "%s (%zu shards)", features, s->count);
    return st;
}

kiln_status data_load_npy_shards(const char *features, const char *labels, dataset *out)
{
    memset(out, 0, sizeof *out);
    path_list x = {0}, y = {0};
    kiln_status st = expand_list(features, ".npy", &x);
    if (st == KILN_OK && labels)
        st = expand_list(labels, ".npy", &y);
    if (st == KILN_OK)
        st = load_shards(&x, labels ? &y : NULL, features, out);
    list_free(&x);
    list_free(&y);
    if (st != KILN_OK)
        data_free(out);
    return st;
}

/* ---- samples -------------------------------------------------------------------- */

static shard_file *file_of(shard_set *s, size_t row)
{
    size_t lo = 0, hi = s->count;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (s->files[mid].first <= row)
            lo = mid;
        else
            hi = mid;
    }
    return &s->files[lo];
}

/* Row `row` of the set as floats (uint8 scaled to [0, 1]); buf holds a
 * sample's bytes. */
static kiln_status read_row(shard_set *s, size_t row, unsigned char *buf, float *x)
{
    shard_file *f = file_of(s, row);
    size_t bytes = s->features * s->size, at = row - f->first;
    if (f->fd < 0 && (f->fd = open(f->path, O_RDONLY | O_CLOEXEC)) < 0)
        return error_set(KILN_ERR_IO, "%s: cannot open (%s)", f->path, strerror(errno));
    ssize_t got = pread(f->fd, buf, bytes, (off_t)(f->offset + at * bytes));
    if (got != (ssize_t)bytes)
        return error_set(KILN_ERR_IO, "%s: cannot read sample %zu (%s)", f->path, at,
                         got < 0 ? strerror(errno) : "the file is shorter than its header "
                                                     "said when training started");
    if (s->kind == 'u' && s->size == 1) { /* pixels: scaled as one .npy file's are */
        for (size_t i = 0; i < s->features; i++)
            x[i] = (float)buf[i] / 255.0f;
        return KILN_OK;
    }
    for (size_t i = 0; i < s->features; i++) {
        double v = data_npy_value(s->kind, s->size, buf + i * s->size);
        if (!isfinite(v) || fabs(v) > FLT_MAX)
            return error_set(KILN_ERR_IO, "%s: sample %zu holds %g; expected finite numbers "
                                          "within float32's range", f->path, at, v);
        x[i] = (float)v;
    }
    return KILN_OK;
}

kiln_status shards_gather(const dataset *d, const size_t *order, size_t first, size_t n,
                          float *x)
{
    unsigned char *buf = malloc(d->features * d->shards->size);
    kiln_status st = buf ? KILN_OK : error_set(KILN_ERR_OUT_OF_MEMORY, "shards: out of memory");
    for (size_t i = 0; i < n && st == KILN_OK; i++) {
        size_t s = order ? order[first + i] : first + i;
        st = read_row(d->shards, d->rows[s], buf, x + i * d->features);
    }
    free(buf);
    return st;
}

kiln_status shards_split(dataset *d, const size_t *order, size_t nt, dataset *val)
{
    size_t nv = d->count - nt;
    size_t *rows = malloc(d->count * sizeof *rows);
    float *y = malloc(d->count * d->targets * sizeof *y);
    *val = *d;
    val->rows = malloc(nv * sizeof *val->rows);
    val->y = malloc(nv * d->targets * sizeof *val->y);
    if (!rows || !y || !val->rows || !val->y) {
        free(rows);
        free(y);
        free(val->rows);
        free(val->y);
        memset(val, 0, sizeof *val);
        return error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", d->name);
    }
    for (size_t i = 0; i < d->count; i++) {
        rows[i] = d->rows[order[i]];
        memcpy(y + i * d->targets, d->y + order[i] * d->targets, d->targets * sizeof *y);
    }
    memcpy(val->rows, rows + nt, nv * sizeof *rows);
    memcpy(val->y, y + nt * d->targets, nv * d->targets * sizeof *y);
    free(d->rows);
    free(d->y);
    d->rows = rows, d->y = y, d->count = nt;
    val->count = nv;
    val->class_names = NULL;
    val->files = NULL, val->file_count = 0;
    val->shards->refs++;
    snprintf(val->name, sizeof val->name, "%.200s (validation)", d->name);
    return KILN_OK;
}

uint32_t data_shards_digest(const dataset *d)
{
    const shard_set *s = d->shards;
    uLong c = crc32(0L, Z_NULL, 0);
    for (size_t i = 0; s && i < s->count; i++) {
        uint64_t rows = s->files[i].rows;
        c = crc32(c, (const Bytef *)s->files[i].path, (uInt)strlen(s->files[i].path) + 1);
        c = crc32(c, (const Bytef *)&rows, sizeof rows);
    }
    for (size_t i = 0; s && i < d->count; i++) { /* which rows, in which order */
        uint64_t row = d->rows[i];
        c = crc32(c, (const Bytef *)&row, sizeof row);
    }
    return (uint32_t)c;
}
