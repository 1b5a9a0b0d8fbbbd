/* Datasets in host memory: IDX files (MNIST, Fashion-MNIST; gzipped or
 * not), CSV files, NumPy .npy and .npz files, normalization, seeded splits and shuffles, and
 * batches gathered for upload. */
#ifndef KILN_DATA_H
#define KILN_DATA_H

#include "runtime/runtime.h"
#include "runtime/rng.h"

typedef struct image_source image_source; /* image folders (folder.h) */
typedef struct shard_set shard_set;       /* .npy shards read as batches ask (shards.c) */

typedef struct {
    char name[256];   /* where it came from, for messages */
    size_t count;     /* samples */
    size_t features;  /* values per sample */
    size_t targets;   /* values per target: 1 for class indices */
    size_t classes;   /* for class indices: 1 + the largest label; else 0 */
    float *x;         /* count x features */
    float *y;         /* count x targets */
    int unlabelled;   /* features only (y all 0): fit to predict, not to train */
    size_t *lines;    /* CSV: each sample's file line, for messages (NULL after a split) */
    image_source *images; /* image folders: x is NULL and batches decode their samples */
    char *class_names; /* image folders: the class names as a JSON array (else NULL) */
    size_t skipped;   /* image folders: bad files skipped (skip_bad) */
    char **files;     /* images in memory: each sample's file (file_count of them), or NULL */
    size_t file_count;
    shard_set *shards; /* shards: x is NULL and batches read their samples from the files */
    size_t *rows;      /* shards: sample i is the shard set's row rows[i] */
} dataset;

void data_free(dataset *d);

/* Reads an IDX images file (any unsigned-byte or float IDX of rank >= 1,
 * one sample per first-dimension entry) and its labels file (IDX rank 1,
 * unsigned bytes). Both may be gzipped. Pixels are scaled to [0, 1]. */
kiln_status data_load_idx(const char *images, const char *labels, dataset *out);

/* An IDX images file alone (labels all 0), for predictions. */
kiln_status data_load_idx_images(const char *images, dataset *out);

/* A dataset by name: "fashion-mnist" or "mnist" (Debian's
 * dataset-fashion-mnist / the same layout under $KILN_DATA_DIR), or a
 * directory holding {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz].
 * split is "train" or "test". */
kiln_status data_load_named(const char *name, const char *split, dataset *out);

/* Reads a CSV file of numbers: label is the name (with a header row) or
 * the 0-based index of the label column; header says whether the first
 * row names the columns. Every other column is a feature. Labels that are
 * all whole numbers from 0 are class indices; otherwise targets. A label
 * of "" or "none": the file has no label column (unlabelled). */
kiln_status data_load_csv(const char *path, const char *label, int header, dataset *out);

/* Reads NumPy arrays (src/train/npy.c): .npy format 1.0, 2.0 or 3.0,
 * little-endian float32, float64, uint8, int32 or int64 in C order. The
 * features, of shape (n, ...), are flattened per sample; uint8 features
 * are scaled to [0, 1] as IDX pixels are. Labels of shape (n,) or (n, 1)
 * that are all whole numbers from 0 are class indices (as CSV labels);
 * other labels, and (n, k), are targets. labels NULL: unlabelled. */
kiln_status data_load_npy(const char *features, const char *labels, dataset *out);

/* Shards (shards.c): features is a comma-separated list of .npy files or
 * glob patterns (each pattern's matches in sorted order), labels NULL or
 * a list of as many label files, paired in order. Every header is read
 * and checked (the same sample shape and dtype in every features file,
 * as many labels as samples, the same label shape), the labels are read
 * whole, and features stay on disk: batches read them (data_gather). */
kiln_status data_load_npy_shards(const char *features, const char *labels, dataset *out);

/* The files of a list as shards name them: comma-separated files or glob
 * patterns (each pattern's matches sorted), every entry ending in ext; a
 * pattern matching nothing is an error. Free with data_free_paths. */
kiln_status data_expand_paths(const char *list, const char *ext, char ***paths, size_t *count);
void data_free_paths(char **paths, size_t count);

/* data_sums over samples first .. first + n of d only (not for image
 * folders); reading shards may fail. */
kiln_status data_sums_of(const dataset *d, size_t first, size_t n, size_t groups, double *sum);

/* What data.c calls for datasets of shards (shards.c). */
kiln_status shards_gather(const dataset *d, const size_t *order, size_t first, size_t n,
                          float *x);
kiln_status shards_split(dataset *d, const size_t *order, size_t nt, dataset *val);
void data_free_shards(dataset *d);
/* A digest of a dataset of shards: the files' names and sample counts,
 * and which rows it holds in which order (0 for other datasets). */
uint32_t data_shards_digest(const dataset *d);

/* A .npy file's header, checked, with the file's length: values of kind
 * ('f', 'u', 'i') and size bytes, start at offset. */
typedef struct {
    char kind;
    size_t size;
    int rank;
    size_t dims[8];
    size_t count;
    size_t offset;
} npy_info;
kiln_status data_npy_info(const char *path, npy_info *info);

/* One little-endian .npy value at p as a double. */
double data_npy_value(char kind, size_t size, const unsigned char *p);

/* The labels .npy of count samples (of the file features, for messages)
 * into d->y, d->targets and d->classes (data_label_classes). */
kiln_status data_load_npy_labels(const char *path, size_t count, const char *features,
                                 dataset *d);

/* classes of d's labels: 1 + the largest when all are whole numbers from
 * 0 (below 65536) and one a sample, else 0 (regression targets). */
void data_label_classes(dataset *d);

/* A 1-d .npy array of token ids (any integer type above, or uint16) into
 * ids (to free). */
kiln_status data_load_npy_tokens(const char *path, uint32_t **ids, size_t *count);

/* Reads an .npz archive (np.savez, stored, or np.savez_compressed,
 * deflated). keys is "FEATURES[,LABELS[,TEST_FEATURES,TEST_LABELS]]" (a
 * ".npy" suffix may be given or not); NULL or "": x and y, else x_train
 * and y_train (Keras' layout), and x_test and y_test for split "test",
 * with labels optional. split is "train" or "test"; a test split the file
 * lacks is an empty dataset (count 0), not an error. */
kiln_status data_load_npz(const char *path, const char *keys, const char *split, dataset *out);

/* Whether path ends with ext (".csv", ".npy", ".npz") and has a name. */
int data_has_ext(const char *path, const char *ext);

/* Moves the last fraction of a shuffled copy of d into val (seeded). */
kiln_status data_split(dataset *d, double fraction, uint64_t seed, dataset *val);

/* The mean and standard deviation over every feature of every sample
 * (1 where it is 0), and x = (x - mean) / std with them: compute them on
 * the training set and apply them to every split. */
void data_moments(const dataset *d, double *mean, double *std);
void data_normalize(dataset *d, double mean, double std);

/* The order of an epoch: a seeded permutation of 0 .. count-1. */
void data_shuffle(size_t *order, size_t count, kiln_rng *rng);

/* Copies the samples order[first .. first + n) into x and y (order NULL:
 * first .. first + n); images are decoded here, which may fail. */
kiln_status data_gather(const dataset *d, const size_t *order, size_t first, size_t n, float *x,
                        float *y);

/* Sums of every value of every sample per group of the features (groups
 * is 1, or divides them): sum[g] and, at sum[groups + g], their squares. */
void data_sums(const dataset *d, size_t groups, double *sum);

/* In-memory datasets behind kiln_data (api.c). */
struct kiln_data {
    dataset d;
};

/* A whole regular file of at most limit bytes, read into *buf (malloc'd;
 * what names such files in the message about the limit). */
kiln_status data_read_file(const char *path, unsigned long long limit, const char *what,
                           unsigned char **buf, size_t *size);

#endif /* KILN_DATA_H */
