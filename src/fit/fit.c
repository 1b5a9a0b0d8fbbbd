/* The training loop: epochs of shuffled batches (forward, loss, backward,
 * optimizer step, all enqueued before the loss is read), validation,
 * schedules, early stopping with the best weights kept, checkpoints and a
 * per-epoch log; then the test split with the best weights. */
#include <dirent.h>
#include <errno.h>
#include <sys/file.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dist/dist.h"
#include "net/net.h"

/* Everything a run holds. */
typedef struct {
    kiln_net *net;
    kiln_ctx *ctx;
    kiln_model *m;
    const kiln_train_options *o;
    train_config c;          /* the network's settings with the options' overrides */
    dataset train, val, test;
    pipeline *p;             /* the network's pipeline at its largest batch */
    optimizer *opt;
    float *x[2], *y[2];      /* two staging slots: one batch uploads while one trains */
    float *out;              /* the logits of one batch */
    size_t *order;
    size_t batches_run;      /* in this call, for stop_after */
    size_t steps_run;        /* in this call, for profile */
    int stop;                /* a callback or stop_after asked to stop */
    int evaluating;          /* kiln_evaluate: no training split, the network's normalization */
    float *best_params;      /* the best weights: flat parameters and buffers */
    float **best_buffers;
    FILE *csv;
    int plot_failed;         /* curves.svg could not be drawn: warned once, not retried */
    int lock;                /* the output directory's lock file, held for the run (or -1) */
} run;

/* Whether training should stop after the current batch. */
static int stopping(const run *r)
{
    return r->stop || (r->o->stop && *r->o->stop);
}

void kiln_train_options_init(kiln_train_options *o)
{
    if (o) {
        memset(o, 0, sizeof *o);
        o->size = sizeof *o;
    }
}

/* ---- data ------------------------------------------------------------------ */

/* The split of o->data: a CSV file (label: its label column), a .npy
 * features file (label: the labels .npy), an .npz archive (npz_keys), an
 * image folder, or a dataset by name. */
static kiln_status load(const run *r, const char *split, dataset *d)
{
    const kiln_train_options *o = r->o;
    if (data_is_folder(o->data))
        return net_load_folder(r->net, &r->c, o->data, split, o->out_dir, d);
    if (data_has_ext(o->data, ".csv"))
        return data_load_csv(o->data, o->label ? o->label : "label", 1, d);
    if (data_has_ext(o->data, ".npy"))
        return data_load_npy(o->data, o->label, d);
    if (data_has_ext(o->data, ".npz"))
        return data_load_npz(o->data, o->npz_keys, split, d);
    return data_load_named(o->data, split, d);
}

/* CSV and .npy files hold one split: training holds out its validation
 * share and has no test split; evaluation scores every sample. */
static int one_split(const kiln_train_options *o)
{
    return o->data && (data_has_ext(o->data, ".csv") || data_has_ext(o->data, ".npy"));
}

/* A copy of an in-memory dataset (training normalizes and splits its own). */
static kiln_status copy_data(const kiln_data *from, dataset *d)
{
    if (!from)
        return KILN_OK;
    *d = from->d;
    d->x = malloc(d->count * d->features * sizeof *d->x);
    d->y = malloc(d->count * d->targets * sizeof *d->y);
    if (!d->x || !d->y) {
        data_free(d);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "training: out of host memory for %s",
                         from->d.name);
    }
    memcpy(d->x, from->d.x, d->count * d->features * sizeof *d->x);
    memcpy(d->y, from->d.y, d->count * d->targets * sizeof *d->y);
    d->class_names = NULL;
    d->files = NULL, d->file_count = 0;
    return KILN_OK;
}

/* Every split kiln reads must fit the model: features, and targets for the
 * loss (class indices within the outputs, or one target per output). */
static kiln_status check_fit(const run *r, const dataset *d, int labelled)
{
    size_t in = shape_numel(&r->m->input), outputs = kiln_net_output_size(r->net);
    char shape[64];
    if (d->count == 0)
        return KILN_OK;
    if (labelled && d->unlabelled)
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "%s has no labels; training needs a label "
                                                    "column (CSV: the label column's name; "
                                                    ".npy: a labels .npy file as label; .npz: "
                                                    "a labels array)", d->name);
    if (d->features != in)
        return kiln_fail(KILN_ERR_SHAPE, "%s has %zu values per sample, but the model's input "
                                         "is %s (%zu values)",
                         d->name, d->features, shape_str(&r->m->input, shape, sizeof shape), in);
    if (!labelled)
        return KILN_OK;
    if (r->c.loss == LOSS_CROSS_ENTROPY && d->targets != 1)
        return kiln_fail(KILN_ERR_SHAPE, "%s: cross_entropy needs one class index per sample, "
                                         "not %zu targets", d->name, d->targets);
    if (r->c.loss != LOSS_CROSS_ENTROPY && d->targets != outputs)
        return kiln_fail(KILN_ERR_SHAPE, "%s has %zu target%s per sample, but %s compares "
                                         "them with the model's %zu outputs",
                         d->name, d->targets, d->targets == 1 ? "" : "s",
                         loss_name(r->c.loss), outputs);
    return net_check_targets(r->net, d->y, d->count, d->name);
}

/* The training split's mean and deviation per normalization group (every
 * feature, every channel of an image, or all values together), in double,
 * with a deviation of 0 taken as 1; set as the network's normalization. */
static kiln_status fit_normalization(run *r)
{
    int standard = r->c.normalize == NORMALIZE_STANDARD;
    size_t groups = standard || r->c.normalize == NORMALIZE_GLOBAL
                        ? net_norm_groups(r->net, standard)
                        : 1;
    size_t in = r->train.features, per = in / groups;
    double *sum = calloc(2 * groups, sizeof *sum);
    float *mean = calloc(groups, sizeof *mean), *std = malloc(groups * sizeof *std);
    kiln_status st = sum && mean && std ? KILN_OK
                                        : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "normalization: "
                                                                            "out of memory");
    int fit = st == KILN_OK && (standard || r->c.normalize == NORMALIZE_GLOBAL);
    if (fit)
        data_sums(&r->train, groups, sum);
    for (size_t g = 0; st == KILN_OK && g < groups; g++) {
        double n = (double)r->train.count * (double)per, m = fit ? sum[g] / n : 0;
        double var = fit ? sum[groups + g] / n - m * m : 1;
        mean[g] = (float)m;
        std[g] = var > 1e-12 ? (float)sqrt(var) : 1.0f;
    }
    if (st == KILN_OK)
        st = kiln_net_set_normalization(r->net, mean, std, groups);
    free(sum);
    free(mean);
    free(std);
    return st;
}

/* Applies the network's normalization to a split in place. */
static void normalize_split(const run *r, dataset *d)
{
    if (d->count && !d->images) /* images: batch by batch, in stage_batch */
        net_normalize(r->net, d->x, d->count, d->x);
}

/* What kiln_evaluate scores: the test split of a dataset directory, or the
 * whole CSV file (or the in-memory test data, else train data), normalized
 * as the network's checkpoint says, never by the data's own statistics. */
static kiln_status prepare_eval_data(run *r)
{
    const kiln_train_options *o = r->o;
    const kiln_data *given = o->test_data ? o->test_data : o->train_data;
    kiln_status st = given ? copy_data(given, &r->test)
                           : load(r, one_split(o) ? "train" : "test", &r->test);
    if (st == KILN_OK && !given && r->test.count == 0 &&
        (data_has_ext(o->data, ".npz") || data_is_folder(o->data)))
        st = load(r, "train", &r->test); /* no test arrays or val/ folder: all of it */
    if (st == KILN_OK && o->limit && r->test.count > o->limit)
        r->test.count = o->limit;
    if (st == KILN_OK && r->test.count == 0)
        st = kiln_fail(KILN_ERR_INVALID_ARGUMENT, "%s: no samples to evaluate", r->test.name);
    if (st == KILN_OK)
        st = check_fit(r, &r->test, 1);
    if (st == KILN_OK)
        normalize_split(r, &r->test);
    r->train.features = r->test.features; /* staging is sized from it */
    r->train.count = r->test.count;
    return st;
}

static kiln_status prepare_data(run *r)
{
    const kiln_train_options *o = r->o;
    int memory = o->train_data != NULL;
    if (r->evaluating)
        return prepare_eval_data(r);
    kiln_status st = memory ? copy_data(o->train_data, &r->train) : load(r, "train", &r->train);
    if (st == KILN_OK && memory && o->val_data)
        st = copy_data(o->val_data, &r->val);
    else if (st == KILN_OK && r->c.val > 0)
        st = data_split(&r->train, r->c.val, r->c.seed, &r->val);
    if (st == KILN_OK && memory)
        st = copy_data(o->test_data, &r->test);
    else if (st == KILN_OK && !one_split(o))
        st = load(r, "test", &r->test);
    if (o->limit) {
        r->train.count = r->train.count < o->limit ? r->train.count : o->limit;
        r->val.count = r->val.count < o->limit ? r->val.count : o->limit;
        r->test.count = r->test.count < o->limit ? r->test.count : o->limit;
    }
    if (st == KILN_OK && r->train.count == 0)
        st = kiln_fail(KILN_ERR_INVALID_ARGUMENT, "%s: no training samples", r->train.name);
    if (st == KILN_OK)
        st = check_fit(r, &r->train, 1);
    if (st == KILN_OK)
        st = check_fit(r, &r->val, 1);
    if (st == KILN_OK)
        st = check_fit(r, &r->test, 1);
    if (st == KILN_OK)
        st = net_set_classes(r->net, r->train.class_names);
    if (st == KILN_OK)
        st = fit_normalization(r);
    if (st == KILN_OK) {
        normalize_split(r, &r->train);
        normalize_split(r, &r->val);
        normalize_split(r, &r->test);
    }
    return st;
}

/* ---- one batch ----------------------------------------------------------------- */

/* Gathers n samples into staging slot s and enqueues their upload into
 * pipe q; with async it returns at once, and the slot stays untouched
 * until the next blocking read on the queue (the in-order queue runs the
 * upload after the work enqueued before it). */
static kiln_status stage_batch(run *r, net_pipe *q, const dataset *d, const size_t *order,
                               size_t first, size_t n, int s, int async)
{
    float *x = r->x[s], *y = r->y[s];
    kiln_status st = data_gather(d, order, first, n, x, y);
    if (st == KILN_OK && d->images) /* decoded now: normalized now */
        net_normalize(r->net, x, n, x);
    if (st == KILN_OK)
        st = kiln_tensor_write(q->p->input, x, n * d->features, !async);
    if (st == KILN_OK)
        st = kiln_tensor_write(q->target, y, kiln_tensor_numel(q->target), !async);
    return st;
}

/* The logits of the last forward of q into r->out (async: complete at the
 * next blocking read). */
static kiln_status read_logits(run *r, const net_pipe *q, int async)
{
    const kiln_tensor *z = net_logits(r->net, q->p);
    return kiln_tensor_read(z, r->out, kiln_tensor_numel(z), !async);
}

/* The pipe for a batch of n samples. */
static kiln_status pipe_for(run *r, size_t n, net_pipe **q)
{
    return net_pipe_for(r->net, n, q);
}

/* Regression metrics of mse models: mean absolute error over every
 * output, and R² per output averaged (as scikit-learn's r2_score). */
typedef struct {
    size_t outputs, count;
    double abs_sum, *sum, *sum2, *sse;
} regression;

static void regression_add(regression *g, const float *z, const float *y, size_t n)
{
    for (size_t i = 0; i < n * g->outputs; i++) {
        size_t j = i % g->outputs;
        double e = (double)z[i] - y[i];
        g->abs_sum += fabs(e);
        g->sum[j] += y[i];
        g->sum2[j] += (double)y[i] * y[i];
        g->sse[j] += e * e;
    }
    g->count += n;
}

static void regression_result(const regression *g, double *mae, double *r2)
{
    double total = 0;
    for (size_t j = 0; j < g->outputs; j++) {
        double sst = g->sum2[j] - g->sum[j] * g->sum[j] / (double)g->count;
        total += sst > 0 ? 1 - g->sse[j] / sst : NAN;
    }
    *mae = g->abs_sum / (double)(g->count * g->outputs);
    *r2 = total / (double)g->outputs;
}

/* Under mpirun, where each rank scored its share of every batch: the sums
 * of all ranks (loss, correct answers and the regression sums). */
static kiln_status evaluate_sum(run *r, double *total, size_t *correct, regression *g,
                                int regressing)
{
    size_t outs = regressing ? g->outputs : 0, n = 4 + 3 * outs;
    double *v = calloc(n, sizeof *v);
    if (!v)
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "evaluation: out of host memory");
    v[0] = *total, v[1] = (double)*correct, v[2] = g->abs_sum, v[3] = (double)g->count;
    for (size_t j = 0; j < outs; j++)
        v[4 + j] = g->sum[j], v[4 + outs + j] = g->sum2[j], v[4 + 2 * outs + j] = g->sse[j];
    kiln_status st = dist_sum_doubles(r->net->comm, v, n, "the evaluation's sums");
    *total = v[0], *correct = (size_t)v[1], g->abs_sum = v[2], g->count = (size_t)v[3];
    for (size_t j = 0; j < outs; j++)
        g->sum[j] = v[4 + j], g->sum2[j] = v[4 + outs + j], g->sse[j] = v[4 + 2 * outs + j];
    free(v);
    return st;
}

/* Mean loss and accuracy (for mse: MAE and R² in mae and r2, which may be
 * NULL) of a dataset in eval mode. Under mpirun (without a confusion
 * matrix) every rank scores its share of each batch with rank 0's running
 * statistics, and the sums are added up. */
static kiln_status evaluate(run *r, const dataset *d, double *loss, double *accuracy,
                            size_t *confusion, double *mae, double *r2)
{
    size_t b = r->c.batch, correct = 0, outs = kiln_net_output_size(r->net);
    double total = 0;
    regression g = {.outputs = outs};
    double *stats = r->c.loss == LOSS_MSE ? calloc(3 * outs, sizeof *stats) : NULL;
    kiln_status st = r->c.loss == LOSS_MSE && !stats
                         ? kiln_fail(KILN_ERR_OUT_OF_MEMORY, "evaluation: out of host memory")
                         : KILN_OK;
    if (stats)
        g.sum = stats, g.sum2 = stats + outs, g.sse = stats + 2 * outs;
    int split = !confusion && dist_comm_size(r->net->comm) > 1;
    if (st == KILN_OK && split)
        st = net_take_rank0_buffers(r->net);
    for (size_t first = 0; first < d->count && st == KILN_OK; first += b) {
        size_t at = first, n = d->count - first < b ? d->count - first : b;
        if (split)
            dist_slice(r->net->comm, first, n, &at, &n);
        net_pipe *q;
        if (n == 0)
            continue;
        st = pipe_for(r, n, &q);
        if (st == KILN_OK)
            st = stage_batch(r, q, d, NULL, at, n, 0, 0);
        if (st == KILN_OK)
            st = pipeline_forward(q->p, 0);
        if (st == KILN_OK)
            st = read_logits(r, q, 0);
        if (st == KILN_OK)
            net_score(r->net, r->out, r->y[0], n, &total, &correct, confusion);
        if (st == KILN_OK && stats)
            regression_add(&g, r->out, r->y[0], n);
    }
    if (st == KILN_OK && split)
        st = evaluate_sum(r, &total, &correct, &g, stats != NULL);
    *loss = d->count ? total / (double)d->count : NAN;
    *accuracy = d->count && r->c.loss != LOSS_MSE ? (double)correct / (double)d->count
                                                            : NAN;
    double m = NAN, q2 = NAN;
    if (stats && g.count)
        regression_result(&g, &m, &q2);
    if (mae)
        *mae = m;
    if (r2)
        *r2 = q2;
    free(stats);
    return st;
}

/* ---- the best weights ------------------------------------------------------------- */

static kiln_status snapshot(run *r, int restore)
{
    pipeline *p = r->p;
    kiln_status st = restore ? kiln_tensor_upload(p->params, r->best_params, p->params->numel)
                             : kiln_tensor_download(p->params, r->best_params, p->params->numel);
    size_t k = 0;
    for (size_t i = 0; i < p->count && st == KILN_OK; i++)
        for (int j = 0; j < p->steps[i].shapes.n_buffers && st == KILN_OK; j++, k++) {
            kiln_tensor *b = p->steps[i].buffer[j];
            st = restore ? kiln_tensor_upload(b, r->best_buffers[k], b->numel)
                         : kiln_tensor_download(b, r->best_buffers[k], b->numel);
        }
    return st;
}

static kiln_status alloc_snapshot(run *r)
{
    pipeline *p = r->p;
    size_t nb = 0;
    for (size_t i = 0; i < p->count; i++)
        nb += (size_t)p->steps[i].shapes.n_buffers;
    r->best_params = malloc(p->params->numel * sizeof(float));
    r->best_buffers = calloc(nb + 1, sizeof *r->best_buffers);
    if (!r->best_params || !r->best_buffers)
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "training: out of host memory");
    size_t k = 0;
    for (size_t i = 0; i < p->count; i++)
        for (int j = 0; j < p->steps[i].shapes.n_buffers; j++, k++)
            if (!(r->best_buffers[k] = malloc(p->steps[i].buffer[j]->numel * sizeof(float))))
                return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "training: out of host memory");
    return KILN_OK;
}

static void free_snapshot(run *r)
{
    size_t k = 0;
    for (size_t i = 0; r->p && r->best_buffers && i < r->p->count; i++)
        for (int j = 0; j < r->p->steps[i].shapes.n_buffers; j++, k++)
            free(r->best_buffers[k]);
    free(r->best_buffers);
    free(r->best_params);
}

static kiln_status save(run *r, const char *file, int epoch, double val_loss)
{
    if (!r->o->out_dir)
        return KILN_OK;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", r->o->out_dir, file);
    checkpoint_meta meta = {0};
    meta_number(&meta, "epoch", epoch);
    meta_number(&meta, "step", (double)optim_steps(r->opt));
    meta_number(&meta, "val_loss", val_loss);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)r->c.seed); /* all 64 bits */
    checkpoint_meta_set(&meta, "seed", seed);
    net_meta(r->net, &meta);
    kiln_status st = checkpoint_save(r->p, path, &meta, (int64_t)optim_steps(r->opt));
    checkpoint_meta_free(&meta);
    return st;
}

/* ---- the loop ---------------------------------------------------------------------- */

void early_stop_init(early_stop *es, int patience, double min_delta)
{
    es->patience = patience;
    es->min_delta = min_delta;
    es->best = INFINITY;
    es->bad = 0;
}

es_verdict early_stop_update(early_stop *es, double val_loss)
{
    if (val_loss < es->best - es->min_delta) {
        es->best = val_loss;
        es->bad = 0;
        return ES_IMPROVED;
    }
    return es->patience > 0 && ++es->bad >= es->patience ? ES_STOP : ES_CONTINUE;
}

static void say(const run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(const run *r, const char *fmt, ...)
{
    if (!r->o->log)
        return;
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    r->o->log(r->o->log_user, text);
}

static void progress(const run *r, int epoch, size_t done, size_t total, double loss,
                     size_t samples, double started)
{
    if (!r->o->log || !r->o->progress)
        return;
    double t = kiln_seconds() - started, rate = t > 0 ? (double)samples / t : 0;
    int width = 24, filled = (int)(width * done / total);
    say(r, "\r  epoch %d [%.*s%*s] %zu/%zu  loss %.4f  %.0f samples/s  ETA %.0fs ", epoch,
        filled, "########################", width - filled, "", done, total, loss, rate,
        rate > 0 ? (double)(r->train.count - samples) / rate : 0);
}

static void write_to_log(void *run_, const char *text)
{
    const run *r = run_;
    say(r, "%s", text);
}

/* With --profile: records steps 2 to 6 (the first builds kernels), then
 * writes the trace and prints the per-layer table. */
#define PROFILE_FIRST 1
#define PROFILE_STEPS 5
static kiln_status profile_steps(run *r)
{
    size_t step = r->steps_run++;
    if (!r->o->profile)
        return KILN_OK;
    if (step == PROFILE_FIRST)
        return kiln_ctx_profile_begin(r->ctx);
    if (step != PROFILE_FIRST + PROFILE_STEPS)
        return KILN_OK;
    say(r, "%sprofile of %d training steps written to %s\n", r->o->progress ? "\r" : "",
        PROFILE_STEPS, r->o->profile);
    return kiln_ctx_profile_end(r->ctx, r->o->profile, PROFILE_STEPS, write_to_log, r);
}

/* Samples in batch i of an epoch: the last one may be short. */
static size_t batch_size(const run *r, size_t i)
{
    size_t b = r->c.batch, left = r->train.count - i * b;
    return left < b ? left : b;
}

/* Tells on_step about a batch; a nonzero answer stops training. */
static void report_step(run *r, int epoch, size_t i, size_t batches, double loss, size_t correct,
                        size_t n, float lr)
{
    if (!r->o->on_step)
        return;
    kiln_progress p = {.epoch = epoch, .epochs = r->c.epochs, .batch = i + 1,
                       .batches = batches, .step = optim_steps(r->opt), .loss = loss,
                       .accuracy = r->c.loss != LOSS_MSE ? (double)correct / (double)n
                                                                   : NAN,
                       .val_loss = NAN, .val_accuracy = NAN, .lr = lr};
    if (r->o->on_step(r->o->user, &p))
        r->stop = 1;
}

/* This rank's samples of batch i: the whole batch, or under mpirun its
 * share of it (*count may be 0 for a short batch and many ranks). */
static void batch_slice(const run *r, size_t i, size_t *first, size_t *count)
{
    dist_slice(r->net->comm, i * r->c.batch, batch_size(r, i), first, count);
}

/* Enqueues the upload of this rank's samples of batch i into slot s and
 * returns the pipe that runs them (NULL when this rank has none). */
static kiln_status stage_step(run *r, size_t i, int s, net_pipe **q)
{
    size_t first, n;
    batch_slice(r, i, &first, &n);
    *q = NULL;
    if (n == 0)
        return KILN_OK;
    kiln_status st = pipe_for(r, n, q);
    if (st == KILN_OK && (*q)->p != r->p)
        (*q)->p->counter = r->p->counter;
    return st == KILN_OK ? stage_batch(r, *q, &r->train, r->order, first, n, s, 1) : st;
}

/* One epoch of training from batch *next (0: the start); returns mean loss
 * and accuracy, and in *next the batch to go on from when stopped on
 * request (else the number of batches). Every sample trains once: the
 * last batch may be short, and runs on a pipeline of its size. */
static kiln_status train_epoch(run *r, int epoch, float lr, size_t *next, double *loss,
                               double *acc, double *seconds)
{
    size_t b = r->c.batch, batches = (r->train.count + b - 1) / b, correct = 0, seen = 0;
    size_t samples = 0, i = *next;
    kiln_rng rng;
    kiln_rng_seed(&rng, r->c.seed * 1000003u + (uint64_t)epoch);
    data_shuffle(r->order, r->train.count, &rng);
    double total = 0, started = kiln_seconds();
    net_pipe *q = NULL, *after = NULL;
    kiln_status st = i < batches ? stage_step(r, i, (int)(i % 2), &q) : KILN_OK;
    int stop = 0;
    /* Each step is enqueued whole, the next batch is gathered and its upload
     * enqueued behind it while the device works, and the host waits once,
     * for the loss. */
    for (; i < batches && st == KILN_OK && !stop; i++, q = after) {
        size_t n = batch_size(r, i), first, mine;
        batch_slice(r, i, &first, &mine);
        st = profile_steps(r);
        net_dist_step(r->net, mine, n);
        if (st == KILN_OK && !q) /* no samples here: the others' sync_batchnorm waits */
            st = net_idle_step(r->net);
        if (st == KILN_OK && q)
            st = pipeline_forward(q->p, 1);
        if (st == KILN_OK && q)
            st = pipeline_loss(q->p, r->c.loss, r->c.label_smoothing, q->target, q->loss);
        if (st == KILN_OK && q)
            st = read_logits(r, q, 1); /* before backward, which reuses the arena */
        if (st == KILN_OK && q)
            st = pipeline_backward(q->p, 1);
        if (st == KILN_OK)
            st = net_reduce_gradients(r->net, mine);
        if (st == KILN_OK)
            st = optim_step(r->opt, lr);
        if (q && q->p != r->p) /* a short batch ran on its own pipeline */
            r->p->counter = q->p->counter;
        after = NULL;
        if (st == KILN_OK && i + 1 < batches)
            st = stage_step(r, i + 1, (int)((i + 1) % 2), &after);
        if (st == KILN_ERR_NUMERIC) {
            char what[1024];
            snprintf(what, sizeof what, "%s", kiln_last_error());
            st = kiln_fail(KILN_ERR_NUMERIC, "epoch %d, batch %zu: %s", epoch, i + 1, what);
        }
        float l = 0;
        if (st == KILN_OK && q)
            st = kiln_tensor_download(q->loss, &l, 1);
        double ignored = 0;
        size_t right = 0;
        if (st == KILN_OK && q)
            net_score(r->net, r->out, r->y[i % 2], mine, &ignored, &right, NULL);
        if (r->o->stop_after && ++r->batches_run >= r->o->stop_after)
            r->stop = 1;
        /* the global batch's loss, correct answers and stop, the same on every rank */
        double shared[3] = {(double)l * (double)mine, (double)right, stopping(r)};
        if (st == KILN_OK)
            st = dist_sum_doubles(r->net->comm, shared, 3, "the step's loss");
        double batch_loss = shared[0] / (double)n;
        stop = shared[2] > 0;
        if (st == KILN_OK && !isfinite(batch_loss))
            st = kiln_fail(KILN_ERR_NUMERIC, "epoch %d, batch %zu: the loss is %g; lower the "
                                             "learning rate or clip gradients (clip_norm); "
                                             "--detect-anomaly finds the first layer that "
                                             "made a NaN or Inf",
                           epoch, i + 1, batch_loss);
        correct += (size_t)shared[1];
        total += shared[0]; /* the epoch's loss is a mean over samples */
        samples += n;
        seen++;
        if (st == KILN_OK)
            report_step(r, epoch, i, batches, batch_loss, (size_t)shared[1], n, lr);
        if (i % 8 == 0 || i + 1 == batches)
            progress(r, epoch, i + 1, batches, total / (double)samples, samples, started);
    }
    if (stop)
        r->stop = 1;
    if (r->o->log && r->o->progress)
        say(r, "\r%*s\r", 100, "");
    *next = i;
    *loss = samples ? total / (double)samples : NAN;
    *acc = samples && r->c.loss != LOSS_MSE ? (double)correct / (double)samples : NAN;
    *seconds = kiln_seconds() - started;
    return st;
}

/* Files a killed run left half-written (kiln writes NAME.tmp.XXXXXX and
 * renames it): removed once the directory is ours. */
static void remove_stale_temporaries(const char *dir)
{
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        const char *tmp = strstr(e->d_name, ".tmp.");
        if (!tmp || strlen(tmp) != 11 ||
            (strncmp(e->d_name, "log.csv", 7) != 0 && strncmp(e->d_name, "curves.svg", 10) != 0 &&
             !strstr(e->d_name, ".safetensors.tmp.")))
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
}

/* One run at a time writes into an output directory: an exclusive flock
 * on DIR/.lock, held until the run ends (and released by the kernel if it
 * dies), holding the owner's pid for the message. */
static kiln_status lock_out_dir(run *r)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/.lock", r->o->out_dir);
    r->lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (r->lock < 0)
        return kiln_fail(KILN_ERR_IO, "%s: cannot create (%s)", path, strerror(errno));
    if (flock(r->lock, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = "";
        ssize_t n = pread(r->lock, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(r->lock);
        r->lock = -1;
        return kiln_fail(KILN_ERR_IO, "%s is in use by another training run (process %s); "
                                      "give this one another --out", r->o->out_dir,
                         pid[0] ? pid : "unknown");
    }
    remove_stale_temporaries(r->o->out_dir);
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(r->lock, 0) != 0 || pwrite(r->lock, pid, (size_t)n, 0) != n)
        return kiln_fail(KILN_ERR_IO, "%s: cannot write (%s)", path, strerror(errno));
    return KILN_OK;
}

static kiln_status open_log(run *r)
{
    if (!r->o->out_dir)
        return KILN_OK;
    if (kiln_make_dirs(r->o->out_dir) != 0)
        return kiln_fail(KILN_ERR_IO, "%s: cannot create the output directory (%s)",
                         r->o->out_dir, strerror(errno));
    kiln_status st = lock_out_dir(r);
    if (st != KILN_OK)
        return st;
    char path[4096];
    snprintf(path, sizeof path, "%s/log.csv", r->o->out_dir);
    int append = r->o->resume && access(path, F_OK) == 0;
    if (!(r->csv = fopen(path, append ? "a" : "w")))
        return kiln_fail(KILN_ERR_IO, "%s: cannot write", path);
    if (!append)
        fprintf(r->csv, "epoch,lr,train_loss,train_accuracy,val_loss,val_accuracy,val_mae,"
                        "val_r2,seconds\n");
    return KILN_OK;
}

/* A file that will be written later in the run can be: its directory
 * exists and is writable (checked before training, not after it). */
static kiln_status check_writable(const char *path)
{
    char dir[4096];
    kiln_dir_of(path, dir, sizeof dir);
    struct stat info;
    if (stat(path, &info) == 0 && S_ISDIR(info.st_mode))
        return kiln_fail(KILN_ERR_IO, "%s: is a directory; give a file name", path);
    if (access(dir, W_OK) != 0)
        return kiln_fail(KILN_ERR_IO, "%s: cannot be written (%s: %s)", path, dir,
                         strerror(errno));
    return KILN_OK;
}

/* The run's settings: the network's, with the options' overrides. */
static kiln_status configure(run *r)
{
    r->c = r->net->c;
    if (r->o->epochs > 0)
        r->c.epochs = r->o->epochs;
    if (r->o->batch > 0)
        r->c.batch = (size_t)r->o->batch;
    if (r->o->lr > 0)
        r->c.optim.lr = (float)r->o->lr;
    r->c.sched.base_lr = r->c.optim.lr;
    if (r->c.sched.t_max == 0)
        r->c.sched.t_max = r->c.epochs;
    if (r->o->batch <= 0 && r->c.batch > r->net->max_batch)
        r->c.batch = r->net->max_batch; /* the network was made for smaller batches */
    if (r->c.batch > r->net->max_batch)
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "training: batch %zu is larger than the "
                                                    "network's max_batch %zu",
                         r->c.batch, r->net->max_batch);
    return KILN_OK;
}

static kiln_status setup(run *r)
{
    r->ctx = r->net->ctx;
    r->m = r->net->m;
    r->p = r->net->main.p;
    r->opt = r->net->opt;
    kiln_status st = configure(r);
    if (st == KILN_OK && r->o->profile)
        st = check_writable(r->o->profile);
    if (st == KILN_OK)
        st = kiln_net_set_detect_anomaly(r->net, r->o->detect_anomaly);
    if (st == KILN_OK)
        st = prepare_data(r);
    size_t outs = kiln_net_output_size(r->net), b = r->c.batch;
    if (st == KILN_OK) {
        for (int k = 0; k < 2; k++) {
            r->x[k] = malloc(b * r->train.features * sizeof *r->x[k]);
            r->y[k] = malloc(b * outs * sizeof *r->y[k]);
        }
        r->out = malloc(b * outs * sizeof *r->out);
        r->order = malloc(r->train.count * sizeof *r->order);
        if (!r->x[0] || !r->x[1] || !r->y[0] || !r->y[1] || !r->out || !r->order)
            st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "training: out of host memory");
    }
    if (st == KILN_OK)
        st = alloc_snapshot(r);
    if (st == KILN_OK)
        st = open_log(r);
    return st;
}

static void teardown(run *r)
{
    /* uploads from the staging buffers and reads into r->out may still be
     * queued when a step failed: the host memory must outlive them */
    if (r->ctx)
        kiln_ctx_finish(r->ctx);
    free_snapshot(r);
    data_free(&r->train);
    data_free(&r->val);
    data_free(&r->test);
    for (int k = 0; k < 2; k++) {
        free(r->x[k]);
        free(r->y[k]);
    }
    free(r->out);
    free(r->order);
    if (r->csv)
        fclose(r->csv);
    if (r->lock >= 0)
        close(r->lock);
}

/* Where training stands: what a resumed run needs to go on exactly. */
typedef struct {
    scheduler sched;
    early_stop es;
    int epoch;        /* epochs completed */
    size_t batch;     /* next batch of the epoch in progress (0: none in progress) */
    float lr;         /* the learning rate of the epoch in progress */
    double val_loss;  /* of the last completed epoch */
} train_state;

static const char *const state_names[] = {"optimizer.0", "optimizer.1"};

static double meta_read(const checkpoint_meta *m, const char *key)
{
    const char *v = checkpoint_meta_get(m, key);
    return v ? strtod(v, NULL) : NAN;
}

/* last.safetensors (the weights, for users) and last.state.safetensors
 * (weights, optimizer state and where training stands, in one file: a
 * kill between the two writes leaves a state that is whole). */
static kiln_status save_state(run *r, const train_state *t, const kiln_train_report *rep)
{
    if (!r->o->out_dir)
        return KILN_OK;
    kiln_status st = save(r, "last.safetensors", t->epoch, t->val_loss);
    checkpoint_meta m = {0};
    meta_number(&m, "epoch", t->epoch);
    meta_number(&m, "batch", (double)t->batch);
    meta_number(&m, "lr", t->lr);
    meta_number(&m, "val_loss", t->val_loss);
    meta_number(&m, "step", (double)optim_steps(r->opt));
    meta_number(&m, "counter", (double)r->p->counter);
    meta_number(&m, "sched_lr", t->sched.lr);
    meta_number(&m, "sched_best", t->sched.best);
    meta_number(&m, "sched_bad", t->sched.bad_epochs);
    meta_number(&m, "es_best", t->es.best);
    meta_number(&m, "es_bad", t->es.bad);
    meta_number(&m, "best_epoch", rep->best_epoch);
    meta_number(&m, "best_val_loss", rep->best_val_loss);
    kiln_tensor *tensors[2] = {optim_state(r->opt, 0), optim_state(r->opt, 1)};
    size_t n = tensors[1] ? 2 : tensors[0] ? 1 : 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/last.state.safetensors", r->o->out_dir);
    if (st == KILN_OK)
        st = checkpoint_save_state(r->p, path, state_names, tensors, n, &m,
                                   (int64_t)optim_steps(r->opt));
    return st;
}

/* A run that died after logging an epoch but before saving its state
 * repeats that epoch when resumed: log.csv keeps only the epochs the
 * state holds, so no epoch appears twice. */
static kiln_status trim_log(run *r, int epoch)
{
    if (!r->csv)
        return KILN_OK;
    char path[4096], tmp[4200], *line = NULL;
    size_t cap = 0;
    snprintf(path, sizeof path, "%s/log.csv", r->o->out_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path);
    fclose(r->csv);
    r->csv = NULL;
    int fd = mkstemp(tmp);
    FILE *in = fopen(path, "r"), *out = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (fd >= 0 && !out)
        close(fd);
    int ok = in && out;
    for (long n = 0; ok && getline(&line, &cap, in) != -1; n++)
        if (n == 0 || atol(line) <= epoch)
            ok = fputs(line, out) >= 0;
    free(line);
    if (in)
        fclose(in);
    ok = out && fclose(out) == 0 && ok && rename(tmp, path) == 0;
    if (!ok) {
        unlink(tmp);
        return kiln_fail(KILN_ERR_IO, "%s: cannot rewrite (%s)", path, strerror(errno));
    }
    return (r->csv = fopen(path, "a")) ? KILN_OK
                                       : kiln_fail(KILN_ERR_IO, "%s: cannot write", path);
}

/* Loads a run saved by save_state from directory dir. */
static kiln_status resume(run *r, const char *dir, train_state *t, kiln_train_report *rep)
{
    char path[4096];
    checkpoint_meta m = {0};
    kiln_tensor *tensors[2] = {optim_state(r->opt, 0), optim_state(r->opt, 1)};
    size_t n = tensors[1] ? 2 : tensors[0] ? 1 : 0;
    snprintf(path, sizeof path, "%s/best.safetensors", dir);
    kiln_status st = KILN_OK;
    if (access(path, R_OK) == 0) { /* the best weights first, kept on the host */
        st = checkpoint_load(r->p, path, NULL);
        if (st == KILN_OK)
            st = snapshot(r, 0);
    }
    snprintf(path, sizeof path, "%s/last.state.safetensors", dir);
    if (st == KILN_OK)
        st = checkpoint_load_state(r->p, path, state_names, tensors, n, &m);
    if (st != KILN_OK)
        return st;
    t->epoch = (int)meta_read(&m, "epoch");
    t->batch = (size_t)meta_read(&m, "batch");
    t->lr = (float)meta_read(&m, "lr");
    t->val_loss = meta_read(&m, "val_loss");
    t->sched.lr = meta_read(&m, "sched_lr");
    t->sched.best = meta_read(&m, "sched_best");
    t->sched.bad_epochs = (int)meta_read(&m, "sched_bad");
    t->es.best = meta_read(&m, "es_best");
    t->es.bad = (int)meta_read(&m, "es_bad");
    optim_set_steps(r->opt, (uint64_t)meta_read(&m, "step"));
    r->p->counter = (uint64_t)meta_read(&m, "counter");
    rep->best_epoch = (int)meta_read(&m, "best_epoch");
    rep->best_val_loss = meta_read(&m, "best_val_loss");
    rep->epochs_run = t->epoch;
    if (t->epoch < 0 || isnan(t->lr) || isnan(t->sched.lr))
        return kiln_fail(KILN_ERR_IO, "%s: not a kiln training state", path);
    kiln_status trimmed = trim_log(r, t->epoch);
    if (trimmed != KILN_OK)
        return trimmed;
    say(r, "resuming after epoch %d%s\n", t->epoch, t->batch ? " (mid-epoch)" : "");
    return KILN_OK;
}

/* What one epoch measured. */
typedef struct {
    double loss, acc, seconds;             /* training */
    double val_loss, val_acc, val_mae, val_r2; /* validation (mae, r2: mse only) */
} epoch_result;

static void report_epoch(run *r, int e, float lr, const epoch_result *m, int best)
{
    if (r->c.loss != LOSS_MSE)
        say(r, "epoch %d/%d  lr %.3g  train loss %.4f acc %.2f%%  val loss %.4f acc "
               "%.2f%%  %.1f s, %.0f samples/s\n",
            e, r->c.epochs, (double)lr, m->loss, 100 * m->acc, m->val_loss, 100 * m->val_acc,
            m->seconds, (double)r->train.count / m->seconds);
    else
        say(r, "epoch %d/%d  lr %.3g  train loss %.4f  val loss %.4f  MAE %.4f  R² %.4f  "
               "%.2f s\n", e, r->c.epochs, (double)lr, m->loss, m->val_loss, m->val_mae,
            m->val_r2, m->seconds);
    if (r->csv)
        fprintf(r->csv, "%d,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.3f\n", e, (double)lr,
                m->loss, m->acc, m->val_loss, m->val_acc, m->val_mae, m->val_r2, m->seconds),
            fflush(r->csv);
    kiln_progress p = {.epoch = e, .epochs = r->c.epochs, .step = optim_steps(r->opt),
                       .loss = m->loss, .accuracy = m->acc,
                       .val_loss = r->val.count ? m->val_loss : NAN,
                       .val_accuracy = r->val.count ? m->val_acc : NAN, .lr = lr,
                       .seconds = m->seconds, .best = best};
    if (r->o->on_epoch && r->o->on_epoch(r->o->user, &p))
        r->stop = 1;
}

/* Runs the epochs from where t stands; fills the report's training fields. */
static kiln_status epochs(run *r, train_state *t, kiln_train_report *rep)
{
    double train_time = 0;
    kiln_status st = KILN_OK;
    for (int e = t->epoch; e < r->c.epochs && st == KILN_OK && !stopping(r); e++) {
        if (t->batch == 0)
            t->lr = (float)sched_advance(&t->sched, e, t->val_loss);
        epoch_result m = {.val_acc = NAN, .val_mae = NAN, .val_r2 = NAN};
        size_t next = t->batch;
        st = train_epoch(r, e + 1, t->lr, &next, &m.loss, &m.acc, &m.seconds);
        train_time += m.seconds;
        if (st == KILN_OK && next < (r->train.count + r->c.batch - 1) / r->c.batch) {
            t->batch = next; /* stopped mid-epoch */
            break;
        }
        if (st == KILN_OK && r->val.count)
            st = evaluate(r, &r->val, &m.val_loss, &m.val_acc, NULL, &m.val_mae, &m.val_r2);
        else
            m.val_loss = m.loss;
        double val_loss = m.val_loss;
        if (st != KILN_OK)
            break;
        rep->epochs_run = e + 1;
        t->epoch = e + 1;
        t->batch = 0;
        t->val_loss = val_loss;
        es_verdict v = early_stop_update(&t->es, val_loss);
        report_epoch(r, e + 1, t->lr, &m, v == ES_IMPROVED);
        if (r->csv && ferror(r->csv)) {
            st = kiln_fail(KILN_ERR_IO, "%s/log.csv: cannot write (%s)", r->o->out_dir,
                           strerror(errno));
            break;
        }
        if (r->csv && !r->plot_failed && kiln_plot(r->o->out_dir, NULL) != KILN_OK) {
            r->plot_failed = 1; /* the curves are a view of log.csv: training goes on */
            say(r, "warning: no training curves: %s\n", kiln_last_error());
        }
        if (v == ES_IMPROVED) {
            rep->best_epoch = e + 1;
            rep->best_val_loss = val_loss;
            st = snapshot(r, 0);
            if (st == KILN_OK)
                st = save(r, "best.safetensors", e + 1, val_loss);
        }
        if (st == KILN_OK)
            st = save_state(r, t, rep);
        if (v == ES_STOP) {
            say(r, "early stopping: no improvement of the validation loss for %d epochs\n",
                t->es.bad);
            rep->stopped_early = 1;
            break;
        }
    }
    rep->samples_per_second =
        train_time > 0 ? (double)rep->epochs_run * (double)r->train.count / train_time : 0;
    return st;
}

/* The caller's options as this library knows them: fields of a newer
 * header are ignored, fields an older caller lacks keep their defaults. */
static kiln_status read_options(const kiln_train_options *o, kiln_train_options *out,
                                const char *call)
{
    kiln_train_options_init(out);
    if (!o || o->size < offsetof(kiln_train_options, train_data))
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "%s: options are required, initialised "
                                                    "with kiln_train_options_init", call);
    memcpy(out, o, o->size < sizeof *out ? o->size : sizeof *out);
    out->size = sizeof *out;
    if (!out->data && !out->train_data)
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "%s: options name no data (data or "
                                                    "train_data)", call);
    return KILN_OK;
}

kiln_status kiln_net_fit(kiln_net *net, const kiln_train_options *options,
                         kiln_train_report *rep)
{
    kiln_train_options o;
    kiln_status st = net_check(net, "kiln_net_fit");
    if (st == KILN_OK)
        st = read_options(options, &o, "kiln_net_fit");
    if (st == KILN_OK && !rep)
        st = kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_net_fit: a report is required");
    if (st == KILN_OK)
        st = dist_start();
    if (st != KILN_OK)
        return st;
    int borrowed = !net->comm && dist_world(); /* under mpirun: the job's ranks */
    if (borrowed)
        net->comm = dist_world();
    if (dist_comm_rank(net->comm) > 0) { /* rank 0 alone writes files and the console */
        o.out_dir = NULL;
        o.log = NULL;
        o.profile = NULL;
    }
    memset(rep, 0, sizeof *rep);
    run r = {.net = net, .o = &o, .lock = -1};
    double started = kiln_seconds();
    char *ranks = NULL; /* MPI: rank 0 lists every rank's device */
    st = dist_check(dist_devices(kiln_ctx_device(net->ctx), &ranks));
    if (ranks)
        say(&r, "%s", ranks);
    free(ranks);
    if (st == KILN_OK)
        st = setup(&r);
    if (st == KILN_OK)
        say(&r, "training on %zu samples (%zu held out for validation), batch %zu, %d epochs, "
                "%s, %s\n", r.train.count, r.val.count, r.c.batch, r.c.epochs,
            r.c.optim.kind == OPTIM_SGD ? "sgd" : r.c.optim.kind == OPTIM_ADAM ? "adam" : "adamw",
            sched_name(r.c.sched.kind));
    if (st == KILN_OK && r.train.skipped + r.test.skipped)
        say(&r, "skipped %zu bad image files (skip_bad)\n", r.train.skipped + r.test.skipped);
    train_state t = {.val_loss = NAN};
    sched_init(&t.sched, &r.c.sched);
    early_stop_init(&t.es, r.c.patience, r.c.min_delta);
    if (st == KILN_OK && o.resume)
        st = resume(&r, o.resume, &t, rep);
    if (st == KILN_OK)
        st = epochs(&r, &t, rep);
    if (st == KILN_OK && r.ctx->profile) /* fewer steps than a profile's */
        st = kiln_ctx_profile_end(r.ctx, o.profile,
                                  r.steps_run > PROFILE_FIRST ? r.steps_run - PROFILE_FIRST : 1,
                                  o.log ? write_to_log : NULL, &r);
    if (st == KILN_OK && stopping(&r)) {
        rep->interrupted = 1;
        st = save_state(&r, &t, rep);
        say(&r, "stopped on request; resume with --resume %s\n",
            o.out_dir ? o.out_dir : "(no output directory: nothing was saved)");
    }
    if (st == KILN_OK && rep->best_epoch > 0)
        st = snapshot(&r, 1); /* the best weights are the final ones */
    if (st == KILN_OK && rep->best_epoch > 0) /* never untrained weights over a run's */
        st = save(&r, "final.safetensors", rep->best_epoch, rep->best_val_loss);
    rep->test_loss = rep->test_accuracy = NAN;
    if (st == KILN_OK && r.test.count)
        st = evaluate(&r, &r.test, &rep->test_loss, &rep->test_accuracy, NULL, NULL, NULL);
    if (t.lr > 0)
        net->lr = t.lr;
    rep->seconds = kiln_seconds() - started;
    if (r.ctx)
        kiln_profile_discard(r.ctx);
    teardown(&r);
    if (borrowed)
        net->comm = NULL;
    return dist_check(st); /* MPI: a rank that fails stops every rank, never a hang */
}

/* The batch a run of the model trains with: the options', else [train]'s. */
static kiln_status run_batch(kiln_model *m, const kiln_train_options *o, size_t *batch)
{
    train_config c;
    kiln_status st = train_config_read(m, &c);
    *batch = o && o->size > offsetof(kiln_train_options, batch) && o->batch > 0
                 ? (size_t)o->batch
                 : c.batch;
    return st;
}

kiln_status kiln_train(kiln_ctx *ctx, kiln_model *m, const kiln_train_options *o,
                       kiln_train_report *rep)
{
    if (!ctx || !m || !rep)
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_train: context, model, options and "
                                                    "report are required");
    size_t batch;
    kiln_net *net = NULL;
    kiln_status st = run_batch(m, o, &batch);
    if (st == KILN_OK)
        st = kiln_net_create(ctx, m, batch, &net);
    if (st == KILN_OK)
        st = kiln_net_fit(net, o, rep);
    kiln_net_free(net);
    return st;
}

kiln_status kiln_evaluate(kiln_ctx *ctx, kiln_model *m, const char *checkpoint,
                          const kiln_train_options *options, kiln_eval_report *rep)
{
    kiln_train_options o;
    if (!ctx || !m || !checkpoint || !rep)
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_evaluate: context, model, checkpoint, "
                                                    "options with data, and report are "
                                                    "required");
    kiln_status st = read_options(options, &o, "kiln_evaluate");
    if (st != KILN_OK)
        return st;
    memset(rep, 0, sizeof *rep);
    o.out_dir = NULL;
    size_t batch;
    kiln_net *net = NULL;
    st = run_batch(m, &o, &batch);
    if (st == KILN_OK)
        st = kiln_net_create(ctx, m, batch, &net);
    run r = {.net = net, .o = &o, .evaluating = 1, .lock = -1};
    if (st == KILN_OK) /* first: the checkpoint holds the normalization of the inputs */
        st = kiln_net_load(net, checkpoint);
    if (st == KILN_OK)
        st = setup(&r);
    const dataset *d = &r.test;
    size_t classes = net ? kiln_net_output_size(net) : 0;
    if (st == KILN_OK && r.c.loss == LOSS_CROSS_ENTROPY &&
        !(rep->confusion = calloc(classes * classes, sizeof *rep->confusion)))
        st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "evaluation: out of memory");
    if (st == KILN_OK)
        st = evaluate(&r, d, &rep->loss, &rep->accuracy, rep->confusion, &rep->mae, &rep->r2);
    rep->samples = d->count;
    rep->classes = classes;
    teardown(&r);
    kiln_net_free(net);
    return st;
}
