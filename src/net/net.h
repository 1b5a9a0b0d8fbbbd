/* Networks (kiln_net, net.c): a model compiled onto a context with its
 * optimizer, training settings, input normalization and mode, working on
 * host arrays. kiln_net_fit (train.c) runs whole trainings on one. */
#ifndef KILN_NET_H
#define KILN_NET_H

#include <stdio.h>

#include "net/checkpoint.h"
#include "dist/dist.h"
#include "net/config.h"

/* A pipeline at one batch size with its loss target and value. */
typedef struct {
    pipeline *p;
    kiln_tensor *target, *loss;
    uint64_t used; /* when it last ran, for replacing the least recent */
} net_pipe;

#define NET_EXTRA_PIPES 2

/* Gradient buckets (buckets.c): with several ranks, the flat gradients
 * leave the device in ranges of whole layers, last layers first, each
 * read back as soon as backward has enqueued its layers and summed
 * across the ranks without waiting for the rest of backward. */
typedef struct grad_buckets grad_buckets;
kiln_status buckets_create(const pipeline *p, grad_buckets **out);
void buckets_free(grad_buckets *g);
/* The hook for the next backward (reads of an earlier, failed step are
 * forgotten). */
const pipe_backward_hook *buckets_hook(grad_buckets *g);
/* The global batch's mean gradient on the device of every rank, from this
 * rank's mean over its mine samples (0: none), weighted by share. */
kiln_status buckets_reduce(grad_buckets *g, dist_comm *comm, size_t mine, double share);

struct kiln_net {
    uint32_t magic;          /* NET_MAGIC while alive: calls on a freed net are refused */
    kiln_ctx *ctx;
    kiln_model *m;
    train_config c;          /* the [train] settings, with kiln_net_configure's */
    size_t max_batch;
    net_pipe main;           /* at max_batch: owns the parameters */
    net_pipe extra[NET_EXTRA_PIPES]; /* smaller batches, sharing main's parameters */
    uint64_t clock;
    optimizer *opt;
    float lr;
    int training;            /* the mode of kiln_net_forward */
    int check;               /* detect anomalies */
    float *mean, *std;       /* normalization, norm_count values each: 1, one per channel of
                                an image input, or one per input value */
    size_t norm_count;
    float *x, *y;            /* host staging for max_batch samples */
    checkpoint_entry *entries; /* the state_dict, for weights by name */
    size_t n_entries;
    dist_comm *comm;         /* the ranks that train this network together (NULL: alone) */
    double share;            /* this rank's part of the global batch of the step running */
    grad_buckets *buckets;   /* the flat gradients' way across the ranks, with a comm */
    op_sync sync;            /* sync_batchnorm through comm */
    char *vocab;             /* a text's characters (kiln_net_vocab), or NULL */
    char *classes;           /* class names as a JSON array (image folders), or NULL */
    char **class_names;      /* the same, parsed: class_count names */
    size_t class_count;
    kiln_tensor **frozen;    /* per entry: a frozen parameter's copy (params.c); NULL: none */
    kiln_tensor *class_weight; /* [train] class_weight on the device, or NULL (params.c) */
    int accumulating;        /* kiln_net_fit with accumulate > 1: steps of several batches */
    float *acc, *acc_read;   /* the step's gradients so far, and one batch's, on the host */
    int acc_filled;          /* acc holds a batch's gradients not yet applied */
};

#define NET_MAGIC 0x6b6e6574u /* "knet" */

/* Refuses NULL and freed networks, naming the call. */
kiln_status net_check(const kiln_net *net, const char *call);

/* The pipeline for a batch of n (1 <= n <= max_batch), made on first use. */
kiln_status net_pipe_for(kiln_net *net, size_t n, net_pipe **out);
/* Whether a forward of p runs on the context's inline lane (ctx_enter_inline):
 * where there is one, for forwards of a few million multiply-adds. */
int net_runs_inline(const kiln_net *net, const pipeline *p);

/* With a communicator of several ranks, for a training step whose global
 * batch has n samples, mine of them on this rank: this rank's share of
 * its gradients (what sync_batchnorm and net_reduce_gradients weight by). */
void net_dist_step(kiln_net *net, size_t mine, size_t n);
/* The batchnorm sums a training step shares (ranks.c): sync_batchnorm's, or
 * NULL. */
const op_sync *net_sync(const kiln_net *net);
/* sync_batchnorm's sum across the ranks (an op_sync's function). */
kiln_status net_sync_sum(void *user, double *v, size_t n, int weighted);

/* With a communicator of several ranks: the mean gradient of the step's
 * global batch on every rank, from this rank's mean over its own samples
 * (mine of them; 0: none, and its gradients are not read). */
kiln_status net_reduce_gradients(kiln_net *net, size_t mine);
/* Gradient accumulation: adds part times this rank's share (net_dist_step)
 * of the gradients of its last backward (none when mine is 0) to the
 * step's sum on the host; net_reduce_gradients then sums that across the
 * ranks and hands it to the optimizer. part is the batch's samples over
 * the step's. */
kiln_status net_accumulate(kiln_net *net, size_t mine, double part);
/* Under mpirun: rank 0's buffers (batchnorm's running statistics) on every
 * rank, as DistributedDataParallel's broadcast of buffers; collective. */
kiln_status net_take_rank0_buffers(kiln_net *net);

/* The parameter layout (every tensor's name and shape) as lines of
 * "key = value", for dist_agree. */
void net_write_layout(const kiln_net *net, FILE *f);
/* With a communicator: every rank checks its layout against rank 0's
 * (dist_agree); mine is this rank's status so far. Collective. */
kiln_status net_agree_on_layout(kiln_net *net, kiln_status mine);

/* A training step in which this rank has no samples: the sync_batchnorm
 * sums that the other ranks' forward and backward wait for. */
kiln_status net_idle_step(kiln_net *net);

/* Normalizes n samples of x into dst with the network's normalization. */
void net_normalize(const kiln_net *net, const float *x, size_t n, float *dst);

/* How many normalization groups an input takes for a kind of
 * normalization: 1 (global), the channels of an image, or every value. */
size_t net_norm_groups(const kiln_net *net, int per_feature);

/* For cross_entropy: the classes of a prediction (the last dimension of
 * the logits: the vocabulary of a sequence model) and the predictions per
 * sample (1, or T for a sequence model, whose targets are (n, T) token ids). */
size_t net_classes(const kiln_net *net);
size_t net_positions(const kiln_net *net);

/* Checks n samples' targets for the loss: class indices within the outputs
 * for cross_entropy (token ids for a sequence model), from 0 to 1 for bce,
 * finite values otherwise; what names the data, and lines (NULL: none)
 * each sample's line in that file. */
kiln_status net_check_targets(const kiln_net *net, const float *y, size_t n, const char *what,
                              const size_t *lines);

/* Loss sum (and correct predictions) of n rows of logits z against
 * targets y on the host, in double; confusion may be NULL. For a sequence
 * model, a sample's loss is the mean over its positions, and correct
 * counts right tokens (net_positions per sample). A bce sample
 * is correct when every label's decision (logit >= 0, probability >= 0.5)
 * matches its target: binary accuracy for one output, exact-match
 * accuracy for several. */
void net_score(const kiln_net *net, const float *z, const float *y, size_t n, double *loss,
               size_t *correct, size_t *confusion);

/* The tensor the loss reads: the logits before a prediction head (softmax
 * for cross_entropy, sigmoid for bce), else the output. */
kiln_tensor *net_logits(const kiln_net *net, const pipeline *p);

/* The optimizer's step at lr, frozen parameters left as they are
 * (params.c); net_free_frozen releases what freezing holds. guard: as
 * optim_step's. */
kiln_status net_optim_step(kiln_net *net, float lr, const kiln_tensor *guard);

/* The step's loss (one value) into *l; with ahead (one process), the
 * update at lr enqueued behind its read and skipped on the device where
 * the loss is not finite, so that the device runs on while the host
 * waits. A caller whose step then fails restores the optimizer's count. */
kiln_status net_read_loss(kiln_net *net, const kiln_tensor *loss, float lr, int ahead, float *l);
void net_free_frozen(kiln_net *net);

/* The class weights of the settings on the device (or none), checked
 * against the model's outputs. */
kiln_status net_class_weights(kiln_net *net);

/* Rebuilds the optimizer for the current settings (state reset). */
kiln_status net_reset_optimizer(kiln_net *net);

/* The checkpoint metadata kiln writes beside the weights. */
void net_meta(const kiln_net *net, checkpoint_meta *meta);
/* Refuses a normalization kiln_net_set_normalization would refuse; what
 * names it in the message. */
kiln_status net_check_normalization(const kiln_net *net, const float *mean, const float *std,
                                    size_t count, const char *what);

void meta_number(checkpoint_meta *m, const char *key, double v);

/* A checkpoint's vocabulary against the network's: another one is an
 * error naming path (what the network's came from: what). */
kiln_status net_check_vocab(const kiln_net *net, const checkpoint_meta *meta, const char *path,
                            const char *what);
/* Class names (images.c): json is a JSON array of strings (NULL: none);
 * they go into checkpoints as the metadata "classes". */
kiln_status net_set_classes(kiln_net *net, const char *json);
void net_free_classes(kiln_net *net);

/* A split of an image folder shaped for the network's input, with c's
 * resize, augmentation and threads, decoded batch by batch (training);
 * with c's cache, decoded images are kept in run_dir/images-SPLIT.cache
 * (run_dir NULL: no cache). */
kiln_status net_load_folder(const kiln_net *net, const train_config *c, const char *path,
                            const char *split, const char *run_dir, dataset *out);

/* Images in memory for net: an image folder's split, a folder of images
 * or one image file (unlabelled), shaped for its input. */
kiln_status net_load_images(const kiln_net *net, const char *path, const char *split,
                            dataset *out);

/* kiln_net_generate, with its KV cache (cache = 1) or with every token
 * running the whole window (0: the reference the cache is tested against). */
kiln_status net_generate(kiln_net *net, const char *prompt, size_t tokens, double temperature,
                         size_t top_k, uint64_t seed, int cache, kiln_write_fn out, void *user);

#endif /* KILN_NET_H */
