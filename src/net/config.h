/* Training: the [train] section read into a configuration
 * (train_config.c) and the loop that runs it (train.c). */
#ifndef KILN_TRAIN_H
#define KILN_TRAIN_H

#include "data/data.h"
#include "data/folder.h"
#include "optim/optim.h"

/* standard: mean 0 and deviation 1 per feature of vector inputs (as
 * scikit-learn's StandardScaler) and per channel of images; global: one
 * mean and deviation over all values; scale and none leave the data. */
typedef enum {
    NORMALIZE_STANDARD,
    NORMALIZE_SCALE,
    NORMALIZE_NONE,
    NORMALIZE_GLOBAL
} normalize_kind;

#define TRAIN_MAX_CLASS_WEIGHTS 64

typedef struct {
    loss_kind loss;
    float label_smoothing;
    optim_config optim;
    sched_config sched;
    int epochs;
    size_t batch;
    int patience;       /* early stopping on the validation loss; 0: off */
    double min_delta;
    uint64_t seed;
    double val;         /* fraction of the training data held out */
    normalize_kind normalize;
    int sync_batchnorm; /* batchnorm statistics of the global batch across ranks */
    int steps;          /* token models train by steps (src/fit/steps.c), not epochs: */
    int eval_every;     /* an evaluation, a log row and checkpoints every eval_every steps, */
    int eval_batches;   /* each on eval_batches random batches of either split */
    image_config images; /* image folders: resize, augmentation, threads, skip_bad */
    int n_class_weight; /* cross_entropy's weight per class (0: none) */
    float class_weight[TRAIN_MAX_CLASS_WEIGHTS];
    double dist_timeout; /* seconds a collective may wait under MPI (0: the default) */
    int accumulate;     /* micro-batches whose gradients are summed into one step */
    int shard;          /* --data lists .npy shards, read as batches ask (data/shards.c) */
} train_config;

/* Reads the model's [train] section over PyTorch-like defaults; every bad
 * key or value names the file, the line and what was expected. A cosine
 * schedule's t_max is left 0 when not given: the number of epochs. */
kiln_status train_config_read(const kiln_model *m, train_config *c);

/* Early stopping on the validation loss: an epoch improves when its loss
 * is below the best by more than min_delta; patience epochs in a row
 * without improvement stop training (patience 0: never). */
typedef struct {
    int patience;
    double min_delta;
    double best;
    int bad;
} early_stop;

typedef enum { ES_IMPROVED, ES_CONTINUE, ES_STOP } es_verdict;

void early_stop_init(early_stop *es, int patience, double min_delta);
es_verdict early_stop_update(early_stop *es, double val_loss);

#endif /* KILN_TRAIN_H */
