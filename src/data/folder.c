/* Image folders: the [train] keys, the listing of classes and files in
 * ImageFolder's order, one decoding pass that checks every file and sums
 * its pixels for the normalization, splits and statistics (see folder.h). */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "data/folder.h"

/* ---- [train] keys ----------------------------------------------------------- */

void image_config_defaults(image_config *c)
{
    memset(c, 0, sizeof *c);
    c->t.rrc_ratio[0] = 3.0 / 4.0;
    c->t.rrc_ratio[1] = 4.0 / 3.0;
}

/* Up to max numbers separated by commas; returns how many (0: malformed). */
static int numbers(const char *v, double *out, int max)
{
    int n = 0;
    const char *p = v;
    while (*p) {
        char *end;
        errno = 0;
        double x = strtod(p, &end);
        if (end == p || errno || !isfinite(x) || n == max)
            return 0;
        out[n++] = x;
        while (*end == ' ')
            end++;
        if (*end == ',')
            end++;
        else if (*end)
            return 0;
        p = end;
    }
    return n;
}

static int whole_in(double x, double lo, double hi)
{
    return x == floor(x) && x >= lo && x <= hi;
}

int image_config_key(image_config *c, const char *key, const char *value, const char **expected)
{
    double v[4];
    int n = numbers(value, v, 4);
    image_transform *t = &c->t;
    if (strcmp(key, "resize") == 0) {
        *expected = "a size in pixels from 1 to 65536 (the shorter side)";
        return n == 1 && whole_in(v[0], 1, 65536) ? (t->resize = (int)v[0], 0) : 1;
    }
    if (strcmp(key, "random_crop") == 0) {
        *expected = "SIZE or SIZE, PADDING (as RandomCrop(size, padding)), in pixels";
        if (!(n == 1 || n == 2) || !whole_in(v[0], 1, 65536) || (n == 2 && !whole_in(v[1], 0, 4096)))
            return 1;
        t->crop_size = (int)v[0];
        t->crop_pad = n == 2 ? (int)v[1] : 0;
        return 0;
    }
    if (strcmp(key, "flip") == 0) {
        *expected = "horizontal or none";
        int h = strcmp(value, "horizontal") == 0;
        return h || strcmp(value, "none") == 0 ? (t->flip = h, 0) : 1;
    }
    if (strcmp(key, "random_resized_crop") == 0) {
        *expected = "SCALE_MIN, SCALE_MAX[, RATIO_MIN, RATIO_MAX] (as RandomResizedCrop: "
                    "0 < min <= max <= 1, ratios 0 < min <= max), or none";
        if (strcmp(value, "none") == 0)
            return t->rrc_scale[0] = t->rrc_scale[1] = 0, 0;
        if ((n != 2 && n != 4) || !(v[0] > 0 && v[0] <= v[1] && v[1] <= 1) ||
            (n == 4 && !(v[2] > 0 && v[2] <= v[3] && v[3] < 1e6)))
            return 1;
        t->rrc_scale[0] = v[0], t->rrc_scale[1] = v[1];
        if (n == 4)
            t->rrc_ratio[0] = v[2], t->rrc_ratio[1] = v[3];
        return 0;
    }
    if (strcmp(key, "color_jitter") == 0) {
        *expected = "BRIGHTNESS[, CONTRAST] (as ColorJitter's, each from 0 to 1)";
        if ((n != 1 && n != 2) || !(v[0] >= 0 && v[0] <= 1) || (n == 2 && !(v[1] >= 0 && v[1] <= 1)))
            return 1;
        t->brightness = v[0];
        t->contrast = n == 2 ? v[1] : 0;
        return 0;
    }
    if (strcmp(key, "workers") == 0) {
        *expected = "a number of decoding threads from 1 to 256, or 0 for one per core";
        return n == 1 && whole_in(v[0], 0, 256) ? (c->workers = (int)v[0], 0) : 1;
    }
    if (strcmp(key, "skip_bad") == 0 || strcmp(key, "cache") == 0) {
        *expected = "true or false";
        int yes = strcmp(value, "true") == 0 || strcmp(value, "1") == 0;
        if (!yes && strcmp(value, "false") != 0 && strcmp(value, "0") != 0)
            return 1;
        *(key[0] == 's' ? &c->skip_bad : &c->cache) = yes;
        return 0;
    }
    return -1;
}

/* ---- listing ------------------------------------------------------------------ */

static int is_dir(const char *path)
{
    struct stat info;
    return stat(path, &info) == 0 && S_ISDIR(info.st_mode);
}

int data_is_folder(const char *path)
{
    static const char *const idx[] = {"train-images-idx3-ubyte", "train-images-idx3-ubyte.gz",
                                      "t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz"};
    char p[4096];
    if (!path || !is_dir(path))
        return 0;
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", path, idx[i]);
        if (access(p, F_OK) == 0)
            return 0;
    }
    return 1;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct {
    char **names;
    size_t count;
} names;

static void names_free(names *n)
{
    for (size_t i = 0; i < n->count; i++)
        free(n->names[i]);
    free(n->names);
    n->names = NULL;
    n->count = 0;
}

/* The entries of dir in sorted order, hidden ones ("." first) left out. */
static kiln_status list_dir(const char *dir, names *out)
{
    *out = (names){0};
    DIR *d = opendir(dir);
    if (!d)
        return error_set(KILN_ERR_IO, "%s: cannot open the folder (%s)", dir, strerror(errno));
    size_t cap = 0;
    kiln_status st = KILN_OK;
    for (struct dirent *e; st == KILN_OK && (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        if (out->count == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = realloc(out->names, cap * sizeof *grown);
            if (!grown) {
                st = error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
                break;
            }
            out->names = grown;
        }
        if (!(out->names[out->count] = strdup(e->d_name)))
            st = error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
        else
            out->count++;
    }
    closedir(d);
    if (st != KILN_OK)
        names_free(out);
    else if (out->count)
        qsort(out->names, out->count, sizeof *out->names, by_name);
    return st;
}

/* The class folders of dir, sorted (ImageFolder's numbering). */
static kiln_status list_classes(const char *dir, names *out)
{
    kiln_status st = list_dir(dir, out);
    size_t kept = 0, files = 0;
    char path[4096];
    for (size_t i = 0; st == KILN_OK && i < out->count; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, out->names[i]);
        if (is_dir(path))
            out->names[kept++] = out->names[i];
        else
            free(out->names[i]), files++;
    }
    if (st == KILN_OK)
        out->count = kept;
    if (st == KILN_OK && kept == 0)
        st = error_set(KILN_ERR_IO, "%s: no class folders%s; expected one folder per class "
                                    "holding its images (or train/ and val/ folders holding "
                                    "them)", dir, files ? " (only files)" : "");
    return st;
}

typedef struct {
    folder_file *files;
    size_t count, cap;
} file_list;

static kiln_status add_file(file_list *l, const char *path, int label)
{
    if (l->count == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        folder_file *grown = realloc(l->files, cap * sizeof *grown);
        if (!grown)
            return error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
        l->files = grown;
        l->cap = cap;
    }
    folder_file *f = &l->files[l->count];
    memset(f, 0, sizeof *f);
    if (!(f->path = strdup(path)))
        return error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    f->label = label;
    l->count++;
    return KILN_OK;
}

/* Every file under dir, in sorted order, folders walked as os.walk does
 * (to a depth of 8). */
static kiln_status walk(const char *dir, int label, int depth, file_list *l)
{
    names n;
    kiln_status st = list_dir(dir, &n);
    char path[4096];
    for (size_t i = 0; st == KILN_OK && i < n.count; i++) {
        int len = snprintf(path, sizeof path, "%s/%s", dir, n.names[i]);
        struct stat info;
        if (len >= (int)sizeof path)
            st = error_set(KILN_ERR_IO, "%s/%s: the path is too long", dir, n.names[i]);
        else if (stat(path, &info) != 0)
            continue; /* a dangling link */
        else if (S_ISDIR(info.st_mode) && depth < 8)
            st = walk(path, label, depth + 1, l);
        else if (S_ISREG(info.st_mode))
            st = add_file(l, path, label);
    }
    names_free(&n);
    return st;
}

static void files_free(folder_file *f, size_t n)
{
    for (size_t i = 0; f && i < n; i++)
        free(f[i].path);
    free(f);
}

/* The files of split folder dir for the classes of the training folder. */
static kiln_status list_files(const char *dir, const names *classes, int training, file_list *l)
{
    names found;
    kiln_status st = training ? KILN_OK : list_classes(dir, &found);
    for (size_t i = 0; st == KILN_OK && !training && i < found.count; i++)
        if (!bsearch(&found.names[i], classes->names, classes->count, sizeof(char *), by_name))
            st = error_set(KILN_ERR_IO, "%s/%s: a class the training folder does not have",
                           dir, found.names[i]);
    if (!training)
        names_free(&found);
    char path[4096];
    for (size_t c = 0; st == KILN_OK && c < classes->count; c++) {
        snprintf(path, sizeof path, "%s/%s", dir, classes->names[c]);
        size_t before = l->count;
        if (!training && !is_dir(path))
            continue; /* a validation folder may lack classes */
        st = walk(path, (int)c, 0, l);
        if (st == KILN_OK && l->count == before)
            st = error_set(KILN_ERR_IO, "%s: an empty class folder (no files)", path);
    }
    return st;
}

/* ---- decoding pass ------------------------------------------------------------ */

/* File i's image in the model's channels: from the cache (not to free:
 * *owned 0), else decoded. */
static kiln_status get_image(const image_source *s, size_t i, image *im, int *owned)
{
    const folder_file *f = &s->files[i];
    *owned = !(s->cache && f->w);
    if (!*owned) {
        *im = (image){f->w, f->h, s->channels, (unsigned char *)cache_pixels(s->cache, f->at)};
        return KILN_OK;
    }
    kiln_status st = image_read(f->path, im);
    return st == KILN_OK ? image_to_channels(im, s->channels) : st;
}

static kiln_status render(const image_source *s, size_t i, const image *im, int augment,
                          uint64_t epoch, size_t pos, float *x)
{
    kiln_rng rng;
    /* the draw depends on the sample and its place in the epoch, not on threads */
    rng_seed(&rng, s->seed ^ (epoch * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)pos << 32) ^ i);
    kiln_status st = image_render(im, &s->cfg.t, augment, &rng, s->height, s->width, x);
    if (st != KILN_OK) { /* name the file */
        char why[512];
        snprintf(why, sizeof why, "%s", kiln_last_error());
        st = error_set(st, "%s: %s", s->files[i].path, why);
    }
    return st;
}

kiln_status folder_render(const image_source *s, size_t i, int augment, uint64_t epoch,
                          size_t pos, float *x)
{
    image im;
    int owned;
    kiln_status st = get_image(s, i, &im, &owned);
    if (st == KILN_OK)
        st = render(s, i, &im, augment, epoch, pos, x);
    if (owned)
        image_free(&im);
    return st;
}

typedef struct {
    image_source *s;
    float *keep;     /* in memory: every sample's features; else NULL */
    cache_writer *w; /* the cache being written, or NULL */
} scan;

static kiln_status scan_one(void *user, job *j, size_t i)
{
    (void)j;
    scan *sc = user;
    image_source *s = sc->s;
    size_t plane = (size_t)s->height * (size_t)s->width, features = plane * (size_t)s->channels;
    float *x = sc->keep ? sc->keep + i * features : malloc(features * sizeof *x);
    if (!x)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", s->files[i].path);
    folder_file *f = &s->files[i];
    image im;
    int owned;
    kiln_status st = get_image(s, i, &im, &owned);
    if (st == KILN_OK && sc->w)
        cache_put(sc->w, f, &im); /* a failure fails the cache, not the file */
    if (st == KILN_OK)
        st = render(s, i, &im, 0, 0, 0, x);
    if (owned)
        image_free(&im);
    f->bad = st != KILN_OK;
    for (int c = 0; st == KILN_OK && c < s->channels; c++)
        for (size_t k = 0; k < plane; k++) {
            double v = x[(size_t)c * plane + k];
            f->sum[c] += v;
            f->squares[c] += v * v;
        }
    if (!sc->keep)
        free(x);
    return st;
}

/* Drops the bad files (and their samples in keep). */
static size_t drop_bad(image_source *s, float *keep)
{
    size_t kept = 0, features = (size_t)s->channels * s->height * s->width;
    for (size_t i = 0; i < s->count; i++) {
        if (s->files[i].bad) {
            free(s->files[i].path);
            continue;
        }
        if (keep && kept != i)
            memmove(keep + kept * features, keep + i * features, features * sizeof *keep);
        s->files[kept++] = s->files[i];
    }
    size_t dropped = s->count - kept;
    s->count = kept;
    return dropped;
}

/* Decodes every file once on the source's threads (writing the cache
 * file when one is asked for and is missing or stale). */
static kiln_status scan_all(image_source *s, float *keep, const char *cache, size_t *skipped)
{
    int workers = s->cfg.workers ? s->cfg.workers : pool_cores();
    uint64_t key = cache ? cache_key(s) : 0;
    int cached = cache && cache_open(cache, s, key);
    size_t bad = 0;
    for (size_t i = 0; cached && i < s->count; i++)
        bad += s->files[i].bad;
    if (cached && (!bad || s->cfg.skip_bad)) {
        *skipped = drop_bad(s, keep);
        return KILN_OK;
    }
    pool *p = NULL;
    kiln_status st = pool_start(workers, &p);
    scan sc = {s, keep, NULL};
    if (st == KILN_OK && cache)
        st = cache_begin(cache, s->count, &sc.w);
    job j = {.fn = scan_one, .user = &sc, .n = s->count};
    if (st == KILN_OK)
        st = pool_submit(p, &j);
    if (st == KILN_OK)
        pool_wait(p, &j);
    pool_stop(p);
    if (st == KILN_OK && j.failures && !s->cfg.skip_bad)
        st = error_set(j.st, "%s%s", j.error,
                       j.failures > 1 ? " (and more bad files; skip_bad = true skips them)"
                                      : " (skip_bad = true skips bad files)");
    if (st == KILN_OK && sc.w)
        st = cache_finish(sc.w, s, key);
    else
        cache_abort(sc.w);
    if (st == KILN_OK)
        *skipped = drop_bad(s, keep);
    return st;
}

/* ---- loading ------------------------------------------------------------------ */

/* The training folder and the split's folder ("" for a missing test split). */
static void split_dirs(const char *path, const char *split, char *train, char *dir, size_t size)
{
    snprintf(train, size, "%s/train", path);
    if (!is_dir(train)) {
        snprintf(train, size, "%s", path);
        snprintf(dir, size, "%s", strcmp(split, "test") == 0 ? "" : path);
        return;
    }
    if (strcmp(split, "test") != 0) {
        snprintf(dir, size, "%s", train);
        return;
    }
    snprintf(dir, size, "%s/val", path);
    if (!is_dir(dir))
        snprintf(dir, size, "%s/test", path);
    if (!is_dir(dir))
        dir[0] = '\0';
}

static char *classes_json(const names *classes)
{
    cJSON *a = cJSON_CreateStringArray((const char *const *)classes->names, (int)classes->count);
    char *text = a ? cJSON_PrintUnformatted(a) : NULL;
    cJSON_Delete(a);
    return text;
}

/* The sample shape from the first file that decodes, when not given. */
static kiln_status first_shape(image_source *s)
{
    kiln_status st = KILN_OK;
    for (size_t i = 0; i < s->count && (s->channels == 0 || s->height == 0); i++) {
        image im;
        if ((st = image_read(s->files[i].path, &im)) != KILN_OK && s->cfg.skip_bad)
            continue;
        if (st != KILN_OK)
            return st;
        s->channels = s->channels ? s->channels : im.channels;
        s->height = s->height ? s->height : im.height;
        s->width = s->width ? s->width : im.width;
        image_free(&im);
    }
    if (s->channels == 0 && st == KILN_OK)
        st = error_set(KILN_ERR_IO, "no file decodes as an image");
    return st;
}

static kiln_status check_spec(const char *path, const folder_spec *sp)
{
    if (sp->channels != 0 && sp->channels != 1 && sp->channels != 3)
        return error_set(KILN_ERR_SHAPE, "%s: the model's input has %d channels; image folders "
                                         "give 1 (gray) or 3 (RGB)", path, sp->channels);
    int size = sp->cfg.t.crop_size;
    if (size && sp->height && (size != sp->height || size != sp->width))
        return error_set(KILN_ERR_SHAPE, "%s: random_crop = %d makes %d x %d samples, but the "
                                         "model's input is %d x %d", path, size, size, size,
                         sp->height, sp->width);
    return KILN_OK;
}

/* Fills out's labels and names (classes NULL: unlabelled). */
static kiln_status make_dataset(const char *dir, const names *classes, image_source *s,
                                dataset *out)
{
    snprintf(out->name, sizeof out->name, "%s", dir);
    out->count = s->count;
    out->features = (size_t)s->channels * (size_t)s->height * (size_t)s->width;
    out->targets = 1;
    out->classes = classes ? classes->count : 0;
    out->unlabelled = !classes;
    out->y = calloc(s->count ? s->count : 1, sizeof *out->y);
    out->class_names = classes ? classes_json(classes) : NULL;
    if (!out->y || (classes && !out->class_names))
        return error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
    for (size_t i = 0; i < s->count; i++)
        out->y[i] = (float)s->files[i].label;
    return KILN_OK;
}

/* The source's files decoded once (into out->x with in_memory). */
static kiln_status load_files(const char *dir, const names *classes, int in_memory,
                              const char *cache, image_source *s, dataset *out)
{
    kiln_status st = first_shape(s);
    size_t features = (size_t)s->channels * (size_t)s->height * (size_t)s->width;
    if (st == KILN_OK && in_memory && !(out->x = malloc(s->count * features * sizeof *out->x)))
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu images of %zu values",
                       dir, s->count, features);
    if (st == KILN_OK)
        st = scan_all(s, out->x, in_memory ? NULL : cache, &out->skipped);
    if (st == KILN_OK)
        st = make_dataset(dir, classes, s, out);
    if (st == KILN_OK && s->count == 0)
        st = error_set(KILN_ERR_IO, "%s: every file is bad (%zu skipped)", dir, out->skipped);
    return st;
}

static image_source *new_source(const folder_spec *sp, const char *split)
{
    image_source *s = calloc(1, sizeof *s);
    if (s)
        *s = (image_source){.channels = sp->channels, .height = sp->height, .width = sp->width,
                            .cfg = sp->cfg, .seed = sp->seed,
                            .augment = strcmp(split, "train") == 0};
    return s;
}

/* Hands s to out (streaming; in memory, its files' names) or frees it;
 * out is emptied on failure. */
static kiln_status finish_source(kiln_status st, image_source *s, int in_memory, dataset *out)
{
    if (st == KILN_OK && in_memory && s->count) {
        if (!(out->files = malloc(s->count * sizeof *out->files)))
            st = error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", out->name);
        for (size_t i = 0; out->files && i < s->count; i++) { /* the names move */
            out->files[i] = s->files[i].path;
            s->files[i].path = NULL;
        }
        out->file_count = out->files ? s->count : 0;
    }
    if (st == KILN_OK && !in_memory)
        out->images = s;
    else
        folder_free(s);
    if (st != KILN_OK)
        data_free(out);
    return st;
}

kiln_status data_load_folder(const char *path, const char *split, const folder_spec *sp,
                             int in_memory, dataset *out)
{
    char train[4096], dir[4096];
    split = split ? split : "train";
    memset(out, 0, sizeof *out);
    split_dirs(path, split, train, dir, sizeof train);
    snprintf(out->name, sizeof out->name, "%s", dir[0] ? dir : path);
    kiln_status st = check_spec(path, sp);
    if (st != KILN_OK || !dir[0])
        return st; /* no test split: an empty dataset */
    image_source *s = new_source(sp, split);
    if (!s)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    names classes;
    file_list l = {0};
    st = list_classes(train, &classes);
    if (st == KILN_OK)
        st = list_files(dir, &classes, strcmp(train, dir) == 0, &l);
    s->files = l.files;
    s->count = l.count;
    if (st == KILN_OK)
        st = load_files(dir, &classes, in_memory, sp->cache, s, out);
    names_free(&classes);
    return finish_source(st, s, in_memory, out);
}

/* Whether dir holds a folder (a class folder). */
static int has_folders(const char *dir)
{
    names n;
    char p[4096];
    int found = 0;
    if (list_dir(dir, &n) != KILN_OK)
        return 0;
    for (size_t i = 0; i < n.count && !found; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, n.names[i]);
        found = is_dir(p);
    }
    names_free(&n);
    return found;
}

kiln_status data_load_images(const char *path, const char *split, const folder_spec *sp,
                             dataset *out)
{
    folder_spec defaults = {0};
    image_config_defaults(&defaults.cfg);
    sp = sp ? sp : &defaults;
    split = split ? split : "train";
    if (is_dir(path) && has_folders(path)) {
        kiln_status st = data_load_folder(path, split, sp, 1, out);
        if (st == KILN_OK && out->count == 0) /* no val/ folder: all of it */
            st = data_load_folder(path, "train", sp, 1, out);
        return st;
    }
    memset(out, 0, sizeof *out);
    image_source *s = new_source(sp, "test");
    file_list l = {0};
    kiln_status st = s ? KILN_OK : error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    if (st == KILN_OK)
        st = is_dir(path) ? walk(path, 0, 0, &l) : add_file(&l, path, 0);
    if (s) {
        s->files = l.files;
        s->count = l.count;
    }
    if (st == KILN_OK && l.count == 0)
        st = error_set(KILN_ERR_IO, "%s: an empty folder (no class folders, no images)", path);
    if (st == KILN_OK)
        st = load_files(path, NULL, 1, NULL, s, out);
    return finish_source(st, s, 1, out);
}

/* ---- splits and statistics ------------------------------------------------------ */

kiln_status folder_split(dataset *d, const size_t *order, size_t nt, dataset *val)
{
    image_source *s = d->images, *v = calloc(1, sizeof *v);
    size_t n = d->count, nv = n - nt;
    folder_file *files = malloc(n * sizeof *files);
    float *y = malloc(n * sizeof *y);
    if (!v || !files || !y) {
        free(v), free(files), free(y);
        return error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", d->name);
    }
    for (size_t i = 0; i < n; i++) { /* every file moves: none is freed or kept twice */
        files[i] = s->files[order[i]];
        y[i] = d->y[order[i]];
    }
    for (size_t i = n; i < s->count; i++)
        free(s->files[i].path); /* beyond a limit */
    *v = *s;
    v->ahead = NULL;
    v->cache = cache_share(s->cache);
    v->augment = 0;
    v->files = malloc((nv ? nv : 1) * sizeof *v->files);
    *val = *d;
    val->images = v;
    val->class_names = NULL;
    val->count = nv;
    val->y = malloc((nv ? nv : 1) * sizeof *val->y);
    snprintf(val->name, sizeof val->name, "%.200s (validation)", d->name);
    if (!v->files || !val->y) {
        free(v->files), free(v), free(val->y), free(files), free(y);
        memset(val, 0, sizeof *val);
        return error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", d->name);
    }
    memcpy(v->files, files + nt, nv * sizeof *files);
    memcpy(val->y, y + nt, nv * sizeof *y);
    v->count = nv;
    free(s->files);
    free(d->y);
    batches_free(s->ahead);
    s->ahead = NULL;
    s->files = files;
    s->count = nt;
    d->y = y;
    d->count = nt;
    return KILN_OK;
}

void folder_sums(const dataset *d, size_t groups, double *sum)
{
    const image_source *s = d->images;
    for (size_t i = 0; i < d->count; i++)
        for (int c = 0; c < s->channels; c++) {
            size_t g = groups == 1 ? 0 : (size_t)c * groups / (size_t)s->channels;
            sum[g] += s->files[i].sum[c];
            sum[groups + g] += s->files[i].squares[c];
        }
}

void folder_free(image_source *s)
{
    if (!s)
        return;
    batches_free(s->ahead);
    files_free(s->files, s->count);
    cache_release(s->cache);
    free(s);
}

kiln_status folder_decode_rate(const char *path, const folder_spec *s, size_t *images,
                               double *per_second)
{
    dataset d;
    double started = now_seconds();
    kiln_status st = data_load_folder(path, "train", s, 0, &d);
    double t = now_seconds() - started;
    *images = st == KILN_OK ? d.count + d.skipped : 0;
    *per_second = t > 0 ? (double)*images / t : 0;
    data_free(&d);
    return st;
}
