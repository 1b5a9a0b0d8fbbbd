/* safetensors checkpoints of a pipeline's parameters and buffers. */
#ifndef KILN_CHECKPOINT_H
#define KILN_CHECKPOINT_H

#include "pipeline.h"

#define CHECKPOINT_META_MAX 32

/* String metadata stored in the header's __metadata__ (epoch, step, ...). */
typedef struct {
    size_t count;
    char keys[CHECKPOINT_META_MAX][32];
    char values[CHECKPOINT_META_MAX][128];
} checkpoint_meta;

void checkpoint_meta_set(checkpoint_meta *m, const char *key, const char *value);
const char *checkpoint_meta_get(const checkpoint_meta *m, const char *key);

/* Writes path atomically; batches is each batchnorm's num_batches_tracked. */
kiln_status checkpoint_save(const pipeline *p, const char *path, const checkpoint_meta *meta,
                            int64_t batches);

/* Reads path into the pipeline after checking every tensor; meta may be NULL. */
kiln_status checkpoint_load(pipeline *p, const char *path, checkpoint_meta *meta);

/* The same for any named tensors (training state beside a checkpoint). */
kiln_status checkpoint_save_tensors(const char *path, const char *const *names,
                                    kiln_tensor *const *tensors, size_t n,
                                    const checkpoint_meta *meta);
kiln_status checkpoint_load_tensors(const char *path, const char *const *names,
                                    kiln_tensor *const *tensors, size_t n,
                                    checkpoint_meta *meta);

#endif /* KILN_CHECKPOINT_H */
