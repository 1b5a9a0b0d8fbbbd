/* safetensors checkpoints of a pipeline's parameters and buffers. */
#ifndef KILN_CHECKPOINT_H
#define KILN_CHECKPOINT_H

#include "compiler/pipeline.h"

#define CHECKPOINT_META_MAX 32

/* String metadata stored in the header's __metadata__ (epoch, step, ...).
 * Values of 128 characters or more (per-feature normalization vectors)
 * live on the heap: checkpoint_meta_free releases them. */
typedef struct {
    size_t count;
    char keys[CHECKPOINT_META_MAX][32];
    char values[CHECKPOINT_META_MAX][128];
    char *long_values[CHECKPOINT_META_MAX];
} checkpoint_meta;

void checkpoint_meta_set(checkpoint_meta *m, const char *key, const char *value);
void checkpoint_meta_free(checkpoint_meta *m);
const char *checkpoint_meta_get(const checkpoint_meta *m, const char *key);

/* One tensor a checkpoint must hold, with what it must be. */
typedef struct {
    char name[GRAPH_NAME_MAX + 32];
    kiln_shape shape;
    int is_int64;        /* num_batches_tracked: an int64 scalar */
    int is_buffer;       /* a buffer (running statistics), not trained */
    size_t bytes;
    kiln_tensor *tensor; /* where it loads to; NULL for the int64 scalars */
    int tied;            /* 1 + the index of the entry sharing its values (tie =), or 0:
                            a file may hold either of the two (PyTorch's save_model
                            keeps one of a tied pair) */
} checkpoint_entry;

/* Checks size bytes of a safetensors file (path names it in errors) against
 * the n entries: every name, dtype, shape and offset, no tensor missing,
 * extra or overlapping; begins[i] is where entry i's bytes start in data.
 * Reads no device; the file loaders and the fuzz harness use it. */
kiln_status checkpoint_parse(const char *path, const unsigned char *data, size_t size,
                             const checkpoint_entry *e, size_t n, size_t *begins,
                             checkpoint_meta *meta);

/* The state_dict entries of a pipeline, in layer order (to free). */
checkpoint_entry *checkpoint_entries(const pipeline *p, size_t *n);

/* Writes path atomically; batches is each batchnorm's num_batches_tracked. */
kiln_status checkpoint_save(const pipeline *p, const char *path, const checkpoint_meta *meta,
                            int64_t batches);

/* Reads path into the pipeline after checking every tensor; meta may be NULL. */
kiln_status checkpoint_load(pipeline *p, const char *path, checkpoint_meta *meta);

/* The __metadata__ of a safetensors file alone, without its tensors. */
kiln_status checkpoint_read_meta(const char *path, checkpoint_meta *meta);
/* A check of the metadata that runs after the file is checked and before
 * any tensor is replaced: a file it refuses changes nothing. */
typedef struct {
    kiln_status (*fn)(void *user, const char *path, const checkpoint_meta *meta);
    void *user;
} checkpoint_check;
kiln_status checkpoint_load_checked(pipeline *p, const char *path, checkpoint_meta *meta,
                                    const checkpoint_check *check);

/* The whole training state in one file: the pipeline's tensors under
 * "model." names and the named extras (optimizer state), so that weights
 * and optimizer state always come from the same step. */
kiln_status checkpoint_save_state(const pipeline *p, const char *path, const char *const *names,
                                  kiln_tensor *const *tensors, size_t n,
                                  const checkpoint_meta *meta, int64_t batches);
kiln_status checkpoint_load_state(pipeline *p, const char *path, const char *const *names,
                                  kiln_tensor *const *tensors, size_t n, checkpoint_meta *meta);

#endif /* KILN_CHECKPOINT_H */
