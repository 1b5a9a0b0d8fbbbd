/* The training loop: epochs of shuffled batches (forward, loss, backward,
 * optimizer step, all enqueued before the loss is read), validation,
 * schedules, early stopping with the best weights kept, checkpoints and a
 * per-epoch log; then the test split with the best weights. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "train/checkpoint.h"
#include "train/train.h"

static volatile sig_atomic_t stop_requested;

void kiln_request_stop(void)
{
    stop_requested = 1;
}

/* Everything a run holds. */
typedef struct {
    kiln_ctx *ctx;
    kiln_model *m;
    const kiln_train_options *o;
    train_config c;
    dataset train, val, test;
    pipeline *p;
    optimizer *opt;
    kiln_tensor *target, *loss;
    float *x[2], *y[2];      /* two staging slots: one batch uploads while one trains */
    float *out;              /* the logits of one batch */
    size_t *order;
    size_t batches_run;      /* in this call, for stop_after */
    size_t steps_run;        /* in this call, for profile */
    double mean, std;        /* the normalization of the features */
    float *best_params;      /* the best weights: flat parameters and buffers */
    float **best_buffers;
    FILE *csv;
} run;

/* ---- data ------------------------------------------------------------------ */

static kiln_status load(const kiln_train_options *o, const char *split, dataset *d)
{
    size_t n = strlen(o->data);
    if (n > 4 && strcmp(o->data + n - 4, ".csv") == 0)
        return data_load_csv(o->data, o->label ? o->label : "label", 1, d);
    return data_load_named(o->data, split, d);
}

static kiln_status check_fit(const run *r, const dataset *d, int labelled)
{
    size_t in = shape_numel(&r->m->input);
    const graph_node *last = &r->m->nodes[r->m->count - 1];
    size_t outputs = shape_numel(&last->out);
    char shape[64];
    if (d->features != in)
        return kiln_fail(KILN_ERR_SHAPE, "%s has %zu values per sample, but the model's input "
                                         "is %s (%zu values)",
                         d->name, d->features, shape_str(&r->m->input, shape, sizeof shape), in);
    if (!labelled)
        return KILN_OK;
    if (r->c.loss == LOSS_CROSS_ENTROPY && d->classes > outputs)
        return kiln_fail(KILN_ERR_SHAPE, "%s has labels up to %zu, but the model's last layer "
                                         "has %zu outputs", d->name, d->classes - 1, outputs);
    if (r->c.loss == LOSS_CROSS_ENTROPY && d->classes == 0)
        return kiln_fail(KILN_ERR_SHAPE, "%s: cross_entropy needs class indices as labels",
                         d->name);
    return KILN_OK;
}

static kiln_status prepare_data(run *r)
{
    kiln_status st = load(r->o, "train", &r->train);
    if (st == KILN_OK && r->c.val > 0)
        st = data_split(&r->train, r->c.val, r->c.seed, &r->val);
    size_t n = strlen(r->o->data);
    int csv = n > 4 && strcmp(r->o->data + n - 4, ".csv") == 0;
    if (st == KILN_OK && !csv)
        st = load(r->o, "test", &r->test);
    if (r->o->limit) {
        r->train.count = r->train.count < r->o->limit ? r->train.count : r->o->limit;
        r->val.count = r->val.count < r->o->limit ? r->val.count : r->o->limit;
        r->test.count = r->test.count < r->o->limit ? r->test.count : r->o->limit;
    }
    if (st == KILN_OK)
        st = check_fit(r, &r->train, 1);
    r->mean = 0;
    r->std = 1;
    if (st == KILN_OK && r->c.normalize == NORMALIZE_STANDARD) {
        data_moments(&r->train, &r->mean, &r->std);
        data_normalize(&r->train, r->mean, r->std);
        data_normalize(&r->val, r->mean, r->std);
        data_normalize(&r->test, r->mean, r->std);
    }
    if (st == KILN_OK && r->train.count < r->c.batch)
        st = kiln_fail(KILN_ERR_INVALID_ARGUMENT, "%s: %zu training samples is less than one "
                                                  "batch of %zu", r->train.name, r->train.count,
                       r->c.batch);
    return st;
}

/* ---- one batch ----------------------------------------------------------------- */

/* Gathers samples into staging slot s and enqueues their upload; with
 * async it returns at once, and the slot stays untouched until the next
 * blocking read on the queue (the in-order queue runs the upload after the
 * work enqueued before it). */
static kiln_status stage_batch(run *r, const dataset *d, const size_t *order, size_t first,
                               size_t n, int s, int async)
{
    size_t b = r->c.batch;
    float *x = r->x[s], *y = r->y[s];
    data_gather(d, order, first, n, x, y);
    for (size_t i = n; i < b; i++) { /* pad a short last batch with its first sample */
        memcpy(x + i * d->features, x, d->features * sizeof *x);
        memcpy(y + i * d->targets, y, d->targets * sizeof *y);
    }
    kiln_status st = kiln_tensor_write(r->p->input, x, b * d->features, !async);
    if (st == KILN_OK)
        st = kiln_tensor_write(r->target, y, kiln_tensor_numel(r->target), !async);
    return st;
}

/* Loss sum and correct predictions of the first n rows, on the host, from
 * the logits (the input of a softmax head) in r->out and the targets of
 * staging slot s. */
static void score(const run *r, int s, size_t n, size_t classes, double *loss, size_t *correct,
                  size_t *confusion)
{
    const float *y = r->y[s];
    for (size_t i = 0; i < n; i++) {
        const float *z = r->out + i * classes;
        if (r->c.loss != LOSS_CROSS_ENTROPY) {
            for (size_t j = 0; j < classes; j++) {
                double v = z[j], t = y[i * classes + j];
                *loss += r->c.loss == LOSS_MSE ? (v - t) * (v - t) / (double)classes
                                               : (fmax(v, 0) - v * t + log1p(exp(-fabs(v)))) /
                                                     (double)classes;
            }
            continue;
        }
        size_t best = 0, label = (size_t)y[i];
        double mx = z[0], sum = 0;
        for (size_t j = 1; j < classes; j++)
            if (z[j] > z[best])
                best = j;
        mx = z[best];
        for (size_t j = 0; j < classes; j++)
            sum += exp((double)z[j] - mx);
        *loss += mx + log(sum) - z[label];
        *correct += best == label;
        if (confusion)
            confusion[label * classes + best]++;
    }
}

/* The logits of the last forward into r->out (async: complete at the next
 * blocking read). */
static kiln_status read_logits(run *r, int async)
{
    pipe_step *last = &r->p->steps[r->p->count - 1];
    const kiln_tensor *z = pipeline_softmax_head(r->p) && last->inputs[0] >= 0
                               ? r->p->steps[last->inputs[0]].out
                               : last->out;
    return kiln_tensor_read(z, r->out, kiln_tensor_numel(z), !async);
}

/* Mean loss and accuracy of a dataset in eval mode. */
static kiln_status evaluate(run *r, const dataset *d, double *loss, double *accuracy,
                            size_t *confusion)
{
    size_t b = r->c.batch, classes = kiln_tensor_numel(pipeline_output(r->p)) / b, correct = 0;
    double total = 0;
    kiln_status st = KILN_OK;
    for (size_t first = 0; first < d->count && st == KILN_OK; first += b) {
        size_t n = d->count - first < b ? d->count - first : b;
        st = stage_batch(r, d, NULL, first, n, 0, 0);
        if (st == KILN_OK)
            st = pipeline_forward(r->p, 0);
        if (st == KILN_OK)
            st = read_logits(r, 0);
        if (st == KILN_OK)
            score(r, 0, n, classes, &total, &correct, confusion);
    }
    *loss = d->count ? total / (double)d->count : NAN;
    *accuracy = d->count ? (double)correct / (double)d->count : NAN;
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

static void meta_number(checkpoint_meta *m, const char *key, double v)
{
    char text[64];
    snprintf(text, sizeof text, "%.17g", v);
    checkpoint_meta_set(m, key, text);
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
    meta_number(&meta, "normalize_mean", r->mean);
    meta_number(&meta, "normalize_std", r->std);
    checkpoint_meta_set(&meta, "format", "pt");
    checkpoint_meta_set(&meta, "kiln", KILN_VERSION);
    return checkpoint_save(r->p, path, &meta, (int64_t)optim_steps(r->opt));
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

static void progress(const run *r, int epoch, size_t done, size_t total, double loss,
                     double started)
{
    if (!r->o->log || !r->o->progress)
        return;
    double t = kiln_seconds() - started, rate = t > 0 ? (double)(done * r->c.batch) / t : 0;
    int width = 24, filled = (int)(width * done / total);
    fprintf(r->o->log, "\r  epoch %d [%.*s%*s] %zu/%zu  loss %.4f  %.0f samples/s  ETA %.0fs ",
            epoch, filled, "########################", width - filled, "", done, total, loss,
            rate, rate > 0 ? (double)((total - done) * r->c.batch) / rate : 0);
    fflush(r->o->log);
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
    FILE *log = r->o->log;
    if (log)
        fprintf(log, "%sprofile of %d training steps written to %s\n",
                r->o->progress ? "\r" : "", PROFILE_STEPS, r->o->profile);
    return kiln_ctx_profile_end(r->ctx, r->o->profile, PROFILE_STEPS, log);
}

/* One epoch of training from batch *next (0: the start); returns mean loss
 * and accuracy, and in *next the batch to go on from when stopped on
 * request (else the number of batches). */
static kiln_status train_epoch(run *r, int epoch, float lr, size_t *next, double *loss,
                               double *acc, double *seconds)
{
    size_t b = r->c.batch, batches = r->train.count / b, correct = 0, seen = 0, i = *next;
    size_t classes = kiln_tensor_numel(pipeline_output(r->p)) / b;
    kiln_rng rng;
    kiln_rng_seed(&rng, r->c.seed * 1000003u + (uint64_t)epoch);
    data_shuffle(r->order, r->train.count, &rng);
    double total = 0, started = kiln_seconds();
    kiln_status st = i < batches ? stage_batch(r, &r->train, r->order, i * b, b, i % 2, 1)
                                 : KILN_OK;
    /* Each step is enqueued whole, the next batch is gathered and its upload
     * enqueued behind it while the device works, and the host waits once,
     * for the loss. */
    for (; i < batches && st == KILN_OK && !stop_requested; i++) {
        st = profile_steps(r);
        if (st == KILN_OK)
            st = pipeline_forward(r->p, 1);
        if (st == KILN_OK)
            st = pipeline_loss(r->p, r->c.loss, r->c.label_smoothing, r->target, r->loss);
        if (st == KILN_OK)
            st = read_logits(r, 1); /* before backward, which reuses the arena */
        if (st == KILN_OK)
            st = pipeline_backward(r->p, 1);
        if (st == KILN_OK)
            st = optim_step(r->opt, lr);
        if (st == KILN_OK && i + 1 < batches)
            st = stage_batch(r, &r->train, r->order, (i + 1) * b, b, (int)((i + 1) % 2), 1);
        if (st == KILN_ERR_NUMERIC) {
            char what[1024];
            snprintf(what, sizeof what, "%s", kiln_last_error());
            st = kiln_fail(KILN_ERR_NUMERIC, "epoch %d, batch %zu: %s", epoch, i + 1, what);
        }
        float l = NAN;
        if (st == KILN_OK)
            st = kiln_tensor_download(r->loss, &l, 1);
        if (st == KILN_OK && !isfinite(l))
            st = kiln_fail(KILN_ERR_NUMERIC, "epoch %d, batch %zu: the loss is %g; lower the "
                                             "learning rate or clip gradients (clip_norm); "
                                             "--detect-anomaly finds the first layer that "
                                             "made a NaN or Inf",
                           epoch, i + 1, (double)l);
        double ignored = 0;
        score(r, (int)(i % 2), b, classes, &ignored, &correct, NULL);
        if (r->o->stop_after && ++r->batches_run >= r->o->stop_after)
            kiln_request_stop();
        total += l;
        seen++;
        if (i % 8 == 0 || i + 1 == batches)
            progress(r, epoch, i + 1, batches, total / (double)seen, started);
    }
    if (r->o->log && r->o->progress)
        fprintf(r->o->log, "\r%*s\r", 100, "");
    *next = i;
    *loss = seen ? total / (double)seen : NAN;
    *acc = seen ? (double)correct / (double)(seen * b) : NAN;
    *seconds = kiln_seconds() - started;
    return st;
}

static kiln_status open_log(run *r)
{
    if (!r->o->out_dir)
        return KILN_OK;
    if (kiln_make_dirs(r->o->out_dir) != 0)
        return kiln_fail(KILN_ERR_IO, "%s: cannot create the output directory (%s)",
                         r->o->out_dir, strerror(errno));
    char path[4096];
    snprintf(path, sizeof path, "%s/log.csv", r->o->out_dir);
    int append = r->o->resume && access(path, F_OK) == 0;
    if (!(r->csv = fopen(path, append ? "a" : "w")))
        return kiln_fail(KILN_ERR_IO, "%s: cannot write", path);
    if (!append)
        fprintf(r->csv, "epoch,lr,train_loss,train_accuracy,val_loss,val_accuracy,seconds\n");
    return KILN_OK;
}

static kiln_status setup(run *r)
{
    kiln_status st = train_config_read(r->m, &r->c);
    if (r->o->epochs > 0)
        r->c.epochs = r->o->epochs;
    if (r->o->batch > 0)
        r->c.batch = (size_t)r->o->batch;
    if (r->o->lr > 0)
        r->c.optim.lr = (float)r->o->lr;
    r->c.sched.base_lr = r->c.optim.lr;
    if (r->c.sched.t_max == 0)
        r->c.sched.t_max = r->c.epochs;
    if (st == KILN_OK)
        st = graph_finish(r->m);
    if (st == KILN_OK)
        st = prepare_data(r);
    if (st == KILN_OK)
        st = pipeline_create(r->ctx, r->m, r->c.batch,
                             (pipe_options){.fuse = 1, .plan = 1, .check = r->o->detect_anomaly},
                             r->c.seed, &r->p);
    if (st == KILN_OK)
        st = optim_create(r->p, &r->c.optim, &r->opt);
    kiln_shape one = shape_make(1, 1, 0, 0, 0), out = r->p ? shape_of(pipeline_output(r->p))
                                                            : one;
    kiln_shape ts = r->c.loss == LOSS_CROSS_ENTROPY ? shape_make(1, r->c.batch, 0, 0, 0) : out;
    if (st == KILN_OK)
        st = tensor_of(r->ctx, &ts, &r->target);
    if (st == KILN_OK)
        st = tensor_of(r->ctx, &one, &r->loss);
    if (st == KILN_OK) {
        for (int k = 0; k < 2; k++) {
            r->x[k] = malloc(r->c.batch * r->train.features * sizeof *r->x[k]);
            r->y[k] = malloc(shape_numel(&out) * sizeof *r->y[k]);
        }
        r->out = malloc(shape_numel(&out) * sizeof *r->out);
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
    if (r->ctx && r->ctx->queue)
        clFinish(r->ctx->queue);
    free_snapshot(r);
    optim_free(r->opt);
    pipeline_free(r->p);
    kiln_tensor_free(r->target);
    kiln_tensor_free(r->loss);
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
}

static void say(const run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(const run *r, const char *fmt, ...)
{
    if (!r->o->log)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(r->o->log, fmt, ap);
    va_end(ap);
    fflush(r->o->log);
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
    say(r, "resuming after epoch %d%s\n", t->epoch, t->batch ? " (mid-epoch)" : "");
    return KILN_OK;
}

static void report_epoch(run *r, int e, float lr, double loss, double acc, double val_loss,
                         double val_acc, double secs)
{
    if (r->c.loss == LOSS_CROSS_ENTROPY)
        say(r, "epoch %d/%d  lr %.3g  train loss %.4f acc %.2f%%  val loss %.4f acc "
               "%.2f%%  %.1f s, %.0f samples/s\n",
            e, r->c.epochs, (double)lr, loss, 100 * acc, val_loss, 100 * val_acc, secs,
            (double)(r->train.count / r->c.batch * r->c.batch) / secs);
    else
        say(r, "epoch %d/%d  lr %.3g  train loss %.4f  val loss %.4f  %.2f s\n", e,
            r->c.epochs, (double)lr, loss, val_loss, secs);
    if (r->csv)
        fprintf(r->csv, "%d,%.9g,%.9g,%.9g,%.9g,%.9g,%.3f\n", e, (double)lr, loss, acc,
                val_loss, val_acc, secs), fflush(r->csv);
}

/* Runs the epochs from where t stands; fills the report's training fields. */
static kiln_status epochs(run *r, train_state *t, kiln_train_report *rep)
{
    double train_time = 0;
    kiln_status st = KILN_OK;
    for (int e = t->epoch; e < r->c.epochs && st == KILN_OK && !stop_requested; e++) {
        if (t->batch == 0)
            t->lr = (float)sched_advance(&t->sched, e, t->val_loss);
        double loss, acc, val_acc = NAN, secs, val_loss;
        size_t next = t->batch;
        st = train_epoch(r, e + 1, t->lr, &next, &loss, &acc, &secs);
        train_time += secs;
        if (st == KILN_OK && stop_requested) {
            t->batch = next;
            break;
        }
        if (st == KILN_OK && r->val.count)
            st = evaluate(r, &r->val, &val_loss, &val_acc, NULL);
        else
            val_loss = loss;
        if (st != KILN_OK)
            break;
        rep->epochs_run = e + 1;
        t->epoch = e + 1;
        t->batch = 0;
        t->val_loss = val_loss;
        report_epoch(r, e + 1, t->lr, loss, acc, val_loss, val_acc, secs);
        es_verdict v = early_stop_update(&t->es, val_loss);
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
        train_time > 0 ? (double)(rep->epochs_run * (r->train.count / r->c.batch) * r->c.batch) /
                             train_time
                       : 0;
    return st;
}

kiln_status kiln_train(kiln_ctx *ctx, kiln_model *m, const kiln_train_options *o,
                       kiln_train_report *rep)
{
    if (!ctx || !m || !o || !o->data || !rep)
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_train: context, model, options with "
                                                    "data, and report are required");
    memset(rep, 0, sizeof *rep);
    stop_requested = 0;
    run r = {.ctx = ctx, .m = m, .o = o};
    double started = kiln_seconds();
    kiln_status st = setup(&r);
    if (st == KILN_OK)
        say(&r, "training on %zu samples (%zu held out for validation), batch %zu, %d epochs, "
                "%s, %s\n", r.train.count, r.val.count, r.c.batch, r.c.epochs,
            r.c.optim.kind == OPTIM_SGD ? "sgd" : r.c.optim.kind == OPTIM_ADAM ? "adam" : "adamw",
            sched_name(r.c.sched.kind));
    train_state t = {.val_loss = NAN};
    sched_init(&t.sched, &r.c.sched);
    early_stop_init(&t.es, r.c.patience, r.c.min_delta);
    if (st == KILN_OK && o->resume)
        st = resume(&r, o->resume, &t, rep);
    if (st == KILN_OK)
        st = epochs(&r, &t, rep);
    if (st == KILN_OK && ctx->profile) /* fewer steps than a profile's */
        st = kiln_ctx_profile_end(ctx, o->profile,
                                  r.steps_run > PROFILE_FIRST ? r.steps_run - PROFILE_FIRST : 1,
                                  o->log);
    if (st == KILN_OK && stop_requested) {
        rep->interrupted = 1;
        st = save_state(&r, &t, rep);
        say(&r, "stopped on request; resume with --resume %s\n",
            o->out_dir ? o->out_dir : "(no output directory: nothing was saved)");
    }
    if (st == KILN_OK && rep->best_epoch > 0)
        st = snapshot(&r, 1); /* the best weights are the final ones */
    if (st == KILN_OK)
        st = save(&r, "final.safetensors", rep->best_epoch, rep->best_val_loss);
    rep->test_loss = rep->test_accuracy = NAN;
    if (st == KILN_OK && r.test.count)
        st = evaluate(&r, &r.test, &rep->test_loss, &rep->test_accuracy, NULL);
    rep->seconds = kiln_seconds() - started;
    kiln_profile_discard(ctx);
    teardown(&r);
    return st;
}

kiln_status kiln_evaluate(kiln_ctx *ctx, kiln_model *m, const char *checkpoint,
                          const kiln_train_options *o, kiln_eval_report *rep)
{
    if (!ctx || !m || !checkpoint || !o || !o->data || !rep)
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_evaluate: context, model, checkpoint, "
                                                    "options with data, and report are "
                                                    "required");
    memset(rep, 0, sizeof *rep);
    run r = {.ctx = ctx, .m = m, .o = o};
    kiln_train_options quiet = *o;
    quiet.out_dir = NULL;
    r.o = &quiet;
    kiln_status st = setup(&r);
    if (st == KILN_OK)
        st = checkpoint_load(r.p, checkpoint, NULL);
    const dataset *d = r.test.count ? &r.test : &r.val;
    size_t classes = r.p ? kiln_tensor_numel(pipeline_output(r.p)) / r.c.batch : 0;
    if (st == KILN_OK && r.c.loss == LOSS_CROSS_ENTROPY &&
        !(rep->confusion = calloc(classes * classes, sizeof *rep->confusion)))
        st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "evaluation: out of memory");
    if (st == KILN_OK)
        st = evaluate(&r, d, &rep->loss, &rep->accuracy, rep->confusion);
    rep->samples = d->count;
    rep->classes = classes;
    teardown(&r);
    return st;
}

/* ---- predictions ------------------------------------------------------------------ */

static kiln_status load_input(const char *input, const char *label, dataset *d)
{
    size_t n = strlen(input);
    if (n > 4 && strcmp(input + n - 4, ".csv") == 0)
        return data_load_csv(input, label ? label : "label", 1, d);
    return data_load_idx_images(input, d);
}

/* Softmax of one row of logits, in double. */
static void softmax_row(const float *z, size_t n, double *p)
{
    double mx = z[0], sum = 0;
    for (size_t j = 1; j < n; j++)
        mx = fmax(mx, z[j]);
    for (size_t j = 0; j < n; j++)
        sum += p[j] = exp((double)z[j] - mx);
    for (size_t j = 0; j < n; j++)
        p[j] /= sum;
}

static void print_prediction(FILE *out, size_t i, const float *z, size_t classes, int probs)
{
    double p[1024] = {0};
    size_t best = 0;
    if (probs)
        softmax_row(z, classes, p);
    for (size_t j = 0; j < classes; j++)
        if (z[j] > z[best])
            best = j;
    fprintf(out, "sample %zu: class %zu", i, best);
    if (probs) {
        fprintf(out, " (%.1f%%) |", 100 * p[best]);
        for (size_t j = 0; j < classes; j++)
            fprintf(out, " %.3f", p[j]);
    } else {
        for (size_t j = 0; j < classes; j++)
            fprintf(out, "%s%.5g", j ? " " : " | ", (double)z[j]);
    }
    fprintf(out, "\n");
}

kiln_status kiln_predict(kiln_ctx *ctx, kiln_model *m, const char *checkpoint, const char *input,
                         const char *label, size_t count, FILE *out)
{
    if (!ctx || !m || !checkpoint || !input || !out || count == 0 || count > 4096)
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_predict: context, model, checkpoint, "
                                                    "input, 1 to 4096 samples and a stream are "
                                                    "required");
    run r = {.ctx = ctx, .m = m};
    kiln_status st = train_config_read(m, &r.c);
    if (st == KILN_OK)
        st = graph_finish(m);
    if (st == KILN_OK)
        st = load_input(input, label, &r.test);
    if (st == KILN_OK && r.test.count < count)
        count = r.test.count;
    r.c.batch = count;
    if (st == KILN_OK)
        st = check_fit(&r, &r.test, 0);
    if (st == KILN_OK)
        st = pipeline_create(ctx, m, count, (pipe_options){.fuse = 1, .plan = 1}, 0, &r.p);
    checkpoint_meta meta = {0};
    if (st == KILN_OK)
        st = checkpoint_load(r.p, checkpoint, &meta);
    const char *mean = checkpoint_meta_get(&meta, "normalize_mean");
    const char *std = checkpoint_meta_get(&meta, "normalize_std");
    if (st == KILN_OK && mean && std)
        data_normalize(&r.test, strtod(mean, NULL), strtod(std, NULL));
    else if (st == KILN_OK && r.c.normalize == NORMALIZE_STANDARD)
        fprintf(out, "note: %s records no feature normalization; the inputs are used as they "
                     "are\n", checkpoint);
    kiln_shape one = shape_make(1, count, 0, 0, 0);
    size_t outputs = r.p ? kiln_tensor_numel(pipeline_output(r.p)) : 0;
    r.x[0] = st == KILN_OK ? malloc(count * r.test.features * sizeof *r.x[0]) : NULL;
    r.y[0] = st == KILN_OK ? malloc(outputs * sizeof *r.y[0]) : NULL;
    r.out = st == KILN_OK ? malloc(outputs * sizeof *r.out) : NULL;
    if (st == KILN_OK && (!r.x[0] || !r.y[0] || !r.out))
        st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "predict: out of host memory");
    if (st == KILN_OK)
        st = tensor_of(ctx, &one, &r.target);
    if (st == KILN_OK)
        st = stage_batch(&r, &r.test, NULL, 0, count, 0, 0);
    if (st == KILN_OK)
        st = pipeline_forward(r.p, 0);
    if (st == KILN_OK)
        st = read_logits(&r, 0);
    size_t classes = count ? outputs / count : 0;
    for (size_t i = 0; st == KILN_OK && i < count; i++)
        print_prediction(out, i, r.out + i * classes, classes,
                         r.c.loss == LOSS_CROSS_ENTROPY && classes <= 1024);
    teardown(&r);
    return st;
}
