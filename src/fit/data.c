/* The training loop's data: the splits, their normalization, evaluation
 * and the best weights. */
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

#include "fit/fit.h"

/* ---- data ------------------------------------------------------------------ */

/* The split of o->data: a CSV file (label: its label column), a .npy
 * features file (label: the labels .npy), an .npz archive (npz_keys), an
 * image folder, or a dataset by name. */
static kiln_status load(const run *r, const char *split, dataset *d)
{
    const kiln_train_options *o = r->o;
    if (r->c.shard)
        return data_load_npy_shards(o->data, o->label, d);
    if (data_has_ext(o->data, ".npy") && strpbrk(o->data, ",*?[") && access(o->data, F_OK) != 0)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "%s: a list or pattern of .npy files is "
                                                    "read as shards: set shard = true in "
                                                    "[train] (or --shard)", o->data);
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
static int one_split(const run *r)
{
    const kiln_train_options *o = r->o;
    return r->c.shard ||
           (o->data && (data_has_ext(o->data, ".csv") || data_has_ext(o->data, ".npy")));
}

/* A copy of an in-memory dataset (training normalizes and splits its own);
 * role ("validation", "test", or NULL for training) joins its name. */
static kiln_status copy_data(const kiln_data *from, dataset *d, const char *role)
{
    if (!from)
        return KILN_OK;
    *d = from->d;
    if (role)
        snprintf(d->name, sizeof d->name, "%.200s (%s)", from->d.name, role);
    d->x = malloc(d->count * d->features * sizeof *d->x);
    d->y = malloc(d->count * d->targets * sizeof *d->y);
    d->lines = from->d.lines ? malloc(d->count * sizeof *d->lines) : NULL;
    if (d->lines)
        memcpy(d->lines, from->d.lines, d->count * sizeof *d->lines);
    if (!d->x || !d->y || (from->d.lines && !d->lines)) {
        data_free(d);
        return error_set(KILN_ERR_OUT_OF_MEMORY, "training: out of host memory for %s",
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
        return error_set(KILN_ERR_INVALID_ARGUMENT, "%s has no labels; training needs a label "
                                                    "column (CSV: the label column's name; "
                                                    ".npy: a labels .npy file as label; .npz: "
                                                    "a labels array)", d->name);
    if (d->features != in)
        return error_set(KILN_ERR_SHAPE, "%s has %zu values per sample, but the model's input "
                                         "is %s (%zu values)",
                         d->name, d->features, shape_str(&r->m->input, shape, sizeof shape), in);
    if (!labelled)
        return KILN_OK;
    if (r->c.loss == LOSS_CROSS_ENTROPY && d->targets != 1)
        return error_set(KILN_ERR_SHAPE, "%s: cross_entropy needs one class index per sample, "
                                         "not %zu targets", d->name, d->targets);
    if (r->c.loss != LOSS_CROSS_ENTROPY && d->targets != outputs)
        return error_set(KILN_ERR_SHAPE, "%s has %zu target%s per sample, but %s compares "
                                         "them with the model's %zu outputs",
                         d->name, d->targets, d->targets == 1 ? "" : "s",
                         loss_name(r->c.loss), outputs);
    return net_check_targets(r->net, d->y, d->count, d->name, d->lines);
}

/* The mean and deviation per group from the sums of count samples (a
 * deviation of 0 taken as 1; fit 0: mean 0, deviation 1), set as the
 * network's normalization. */
static kiln_status set_normalization(run *r, const double *sum, size_t groups, size_t count,
                                     int fit)
{
    size_t per = r->train.features / groups;
    float *mean = calloc(groups, sizeof *mean), *std = malloc(groups * sizeof *std);
    kiln_status st = mean && std ? KILN_OK
                                 : error_set(KILN_ERR_OUT_OF_MEMORY, "normalization: out of "
                                                                     "memory");
    for (size_t g = 0; st == KILN_OK && g < groups; g++) {
        double n = (double)count * (double)per, m = fit ? sum[g] / n : 0;
        double var = fit ? sum[groups + g] / n - m * m : 1;
        mean[g] = (float)m;
        std[g] = var > 1e-12 ? (float)sqrt(var) : 1.0f;
    }
    if (st == KILN_OK)
        st = kiln_net_set_normalization(r->net, mean, std, groups);
    free(mean);
    free(std);
    return st;
}

/* The training split's mean and deviation per normalization group (every
 * feature, every channel of an image, or all values together), in double.
 * Shards under MPI: each rank sums its slice (dist_slice) of the split,
 * and finish_normalization adds the slices up once the ranks agree. */
static kiln_status fit_normalization(run *r)
{
    int standard = r->c.normalize == NORMALIZE_STANDARD;
    int fit = standard || r->c.normalize == NORMALIZE_GLOBAL;
    size_t groups = fit ? net_norm_groups(r->net, standard) : 1;
    size_t first = 0, n = r->train.count;
    double *sum = calloc(2 * groups, sizeof *sum);
    if (!sum)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "normalization: out of memory");
    if (r->train.shards)
        dist_slice(r->net->comm, 0, r->train.count, &first, &n);
    kiln_status st = KILN_OK;
    if (fit && r->train.shards)
        st = data_sums_of(&r->train, first, n, groups, sum);
    else if (fit)
        data_sums(&r->train, groups, sum);
    if (st == KILN_OK && fit && r->train.shards && dist_comm_size(r->net->comm) > 1) {
        r->norm_sums = sum, r->norm_groups = groups; /* finish_normalization */
        return KILN_OK;
    }
    if (st == KILN_OK)
        st = set_normalization(r, sum, groups, r->train.count, fit);
    free(sum);
    return st;
}

kiln_status finish_normalization(run *r)
{
    if (!r->norm_sums)
        return KILN_OK;
    kiln_status st = dist_sum_doubles(r->net->comm, r->norm_sums, 2 * r->norm_groups,
                                      "the normalization's sums");
    if (st == KILN_OK)
        st = set_normalization(r, r->norm_sums, r->norm_groups, r->train.count, 1);
    free(r->norm_sums);
    r->norm_sums = NULL;
    return st;
}

/* Applies the network's normalization to a split in place. */
static void normalize_split(const run *r, dataset *d)
{
    if (d->count && d->x) /* images and shards: batch by batch, in stage_batch */
        net_normalize(r->net, d->x, d->count, d->x);
}

/* What kiln_evaluate scores: the test split of a dataset directory, or the
 * whole CSV file (or the in-memory test data, else train data), normalized
 * as the network's checkpoint says, never by the data's own statistics. */
kiln_status prepare_eval_data(run *r)
{
    const kiln_train_options *o = r->o;
    const kiln_data *given = o->test_data ? o->test_data : o->train_data;
    kiln_status st = given ? copy_data(given, &r->test, NULL)
                           : load(r, one_split(r) ? "train" : "test", &r->test);
    if (st == KILN_OK && !given && r->test.count == 0 &&
        (data_has_ext(o->data, ".npz") || data_is_folder(o->data)))
        st = load(r, "train", &r->test); /* no test arrays or val/ folder: all of it */
    if (st == KILN_OK && o->limit && r->test.count > o->limit)
        r->test.count = o->limit;
    if (st == KILN_OK && r->test.count == 0)
        st = error_set(KILN_ERR_INVALID_ARGUMENT, "%s: no samples to evaluate", r->test.name);
    if (st == KILN_OK)
        st = check_fit(r, &r->test, 1);
    if (st == KILN_OK)
        normalize_split(r, &r->test);
    r->train.features = r->test.features; /* staging is sized from it */
    r->train.count = r->test.count;
    return st;
}

kiln_status prepare_data(run *r)
{
    const kiln_train_options *o = r->o;
    int memory = o->train_data != NULL;
    if (r->evaluating)
        return prepare_eval_data(r);
    kiln_status st = memory ? copy_data(o->train_data, &r->train, NULL)
                            : load(r, "train", &r->train);
    if (st == KILN_OK) /* in the file's order: a bad label's sample is the file's */
        st = check_fit(r, &r->train, 1);
    if (st == KILN_OK && memory && o->val_data)
        st = copy_data(o->val_data, &r->val, "validation");
    else if (st == KILN_OK && r->c.val > 0)
        st = data_split(&r->train, r->c.val, r->c.seed, &r->val);
    if (st == KILN_OK && memory)
        st = copy_data(o->test_data, &r->test, "test");
    else if (st == KILN_OK && !one_split(r))
        st = load(r, "test", &r->test);
    if (o->limit) {
        r->train.count = r->train.count < o->limit ? r->train.count : o->limit;
        r->val.count = r->val.count < o->limit ? r->val.count : o->limit;
        r->test.count = r->test.count < o->limit ? r->test.count : o->limit;
    }
    if (st == KILN_OK && r->train.count == 0)
        st = error_set(KILN_ERR_INVALID_ARGUMENT, "%s: no training samples", r->train.name);
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
kiln_status stage_batch(run *r, net_pipe *q, const dataset *d, const size_t *order,
                        size_t first, size_t n, int s, int async)
{
    float *x = r->x[s], *y = r->y[s];
    kiln_status st = data_gather(d, order, first, n, x, y);
    if (st == KILN_OK && !d->x) /* decoded or read now: normalized now */
        net_normalize(r->net, x, n, x);
    if (st == KILN_OK)
        st = tensor_write(q->p->input, x, n * d->features, !async);
    if (st == KILN_OK)
        st = tensor_write(q->target, y, kiln_tensor_numel(q->target), !async);
    return st;
}

/* The logits of the last forward of q into r->out (async: complete at the
 * next blocking read). */
kiln_status read_logits(run *r, const net_pipe *q, int async)
{
    const kiln_tensor *z = net_logits(r->net, q->p);
    return tensor_read(z, r->out, kiln_tensor_numel(z), !async);
}

/* The pipe for a batch of n samples. */
kiln_status pipe_for(run *r, size_t n, net_pipe **q)
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
        return error_set(KILN_ERR_OUT_OF_MEMORY, "evaluation: out of host memory");
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
kiln_status evaluate(run *r, const dataset *d, double *loss, double *accuracy,
                     size_t *confusion, double *mae, double *r2)
{
    size_t b = r->c.batch, correct = 0, outs = kiln_net_output_size(r->net);
    double total = 0;
    regression g = {.outputs = outs};
    double *stats = r->c.loss == LOSS_MSE ? calloc(3 * outs, sizeof *stats) : NULL;
    kiln_status st = r->c.loss == LOSS_MSE && !stats
                         ? error_set(KILN_ERR_OUT_OF_MEMORY, "evaluation: out of host memory")
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

kiln_status snapshot(run *r, int restore)
{
    pipeline *p = r->p;
    if (restore)
        pipeline_params_changed(p);
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

kiln_status alloc_snapshot(run *r)
{
    pipeline *p = r->p;
    size_t nb = 0;
    for (size_t i = 0; i < p->count; i++)
        nb += (size_t)p->steps[i].shapes.n_buffers;
    r->best_params = malloc(p->params->numel * sizeof(float));
    r->best_buffers = calloc(nb + 1, sizeof *r->best_buffers);
    if (!r->best_params || !r->best_buffers)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "training: out of host memory");
    size_t k = 0;
    for (size_t i = 0; i < p->count; i++)
        for (int j = 0; j < p->steps[i].shapes.n_buffers; j++, k++)
            if (!(r->best_buffers[k] = malloc(p->steps[i].buffer[j]->numel * sizeof(float))))
                return error_set(KILN_ERR_OUT_OF_MEMORY, "training: out of host memory");
    return KILN_OK;
}

void free_snapshot(run *r)
{
    size_t k = 0;
    for (size_t i = 0; r->p && r->best_buffers && i < r->p->count; i++)
        for (int j = 0; j < r->p->steps[i].shapes.n_buffers; j++, k++)
            free(r->best_buffers[k]);
    free(r->best_buffers);
    free(r->best_params);
}

kiln_status save(run *r, const char *file, int epoch, double val_loss)
{
    if (!r->o->out_dir)
        return KILN_OK;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", r->o->out_dir, file);
    checkpoint_meta meta = {0};
    meta_number(&meta, r->by_steps ? "steps_done" : "epoch", epoch);
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

