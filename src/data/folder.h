/* Image folders (folder.c, batches.c): one folder per class, or train/
 * and val/ (or test/) folders holding them, as torchvision's ImageFolder
 * reads them. Samples are decoded on worker threads as batches ask for
 * them, a few batches ahead, never the whole dataset at once. */
#ifndef KILN_FOLDER_H
#define KILN_FOLDER_H

#include "data/data.h"
#include "data/image.h"
#include "data/pool.h"

/* The [train] keys of image folders. */
typedef struct {
    image_transform t;
    int workers;   /* decoding threads; 0: one per core */
    int skip_bad;  /* bad files are skipped and counted instead of failing */
    int cache;     /* keep decoded images in a cache file beside the run (cache.c) */
} image_config;

void image_config_defaults(image_config *c);

/* Reads one [train] key into c: -1 when key is not an image folder's,
 * 0 when read, 1 for a bad value, with *expected saying what was. */
int image_config_key(image_config *c, const char *key, const char *value,
                     const char **expected);

/* What a folder is read for. */
typedef struct {
    int channels, height, width; /* the model's sample shape; 0: the first image's */
    image_config cfg;
    uint64_t seed;               /* augmentation draws */
    const char *cache;           /* the cache file of cfg.cache (NULL: none) */
} folder_spec;

/* Whether path is a directory that is not a directory of IDX files. */
int data_is_folder(const char *path);

/* Reads split "train" or "test" (val/ or test/; a folder without them has
 * no test split: count 0) of the folder at path. Every file is decoded
 * once here, to find bad ones and for the normalization statistics; with
 * in_memory the samples are kept in out->x, else they are decoded again as
 * batches ask (out->images) and the training split is augmented. */
kiln_status data_load_folder(const char *path, const char *split, const folder_spec *s,
                             int in_memory, dataset *out);

/* Images in memory: a split of an image folder (its "test" split, where
 * the folder has none, is all of it), a folder of image files or one
 * image file (both unlabelled), decoded without augmentation; s NULL:
 * the first image's shape and channels, default settings. */
kiln_status data_load_images(const char *path, const char *split, const folder_spec *s,
                             dataset *out);

/* ---- what data.c calls for datasets with images ---- */

/* One sample of the source's list (folder.c). */
typedef struct {
    char *path;
    int label;
    int bad;
    double sum[3], squares[3]; /* of the deterministic render, per channel */
    uint64_t at;               /* where its pixels are in the cache, when w > 0 */
    int w, h;
} folder_file;

typedef struct image_cache image_cache;
typedef struct cache_writer cache_writer;

struct image_source {
    folder_file *files;  /* sample i is files[i] */
    size_t count;
    int channels, height, width;
    image_config cfg;
    uint64_t seed;
    int augment;         /* the training split */
    struct batches *ahead; /* batches.c: the threads and batches decoded ahead */
    image_cache *cache;  /* cache.c: decoded images, or NULL */
};

/* Sample i's pixels rendered into x (features floats); augment with the
 * draw of the sample at position pos of an epoch keyed by epoch. */
kiln_status folder_render(const image_source *s, size_t i, int augment, uint64_t epoch,
                          size_t pos, float *x);

kiln_status folder_gather(const dataset *d, const size_t *order, size_t first, size_t n,
                          float *x);
kiln_status folder_split(dataset *d, const size_t *order, size_t nt, dataset *val);
void folder_sums(const dataset *d, size_t groups, double *sum);
void folder_free(image_source *s);
void batches_free(struct batches *b);

/* The cache file (cache.c): the key of a source's files and shape; open
 * fills each file's place, size and statistics from a cache of that key
 * (returns 0, changing nothing, for a missing or stale one); a writer
 * takes each decoded image from the first pass (any thread) and, once
 * every file is done, writes the index and maps the file as s's cache. */
uint64_t cache_key(const image_source *s);
int cache_open(const char *path, image_source *s, uint64_t key);
kiln_status cache_begin(const char *path, size_t count, cache_writer **w);
kiln_status cache_put(cache_writer *w, folder_file *f, const image *im);
kiln_status cache_finish(cache_writer *w, image_source *s, uint64_t key);
void cache_abort(cache_writer *w);
const unsigned char *cache_pixels(const image_cache *c, uint64_t at);
image_cache *cache_share(image_cache *c);
void cache_release(image_cache *c);

/* Images per second of data_load_folder's decoding pass over a folder
 * (every thread decoding), for kiln bench. */
kiln_status folder_decode_rate(const char *path, const folder_spec *s, size_t *images,
                               double *per_second);

#endif /* KILN_FOLDER_H */
