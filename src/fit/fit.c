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

#include "fit/fit.h"

/* Whether training should stop after the current batch. */
int stopping(const run *r)
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

void say(const run *r, const char *fmt, ...)
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
    double t = now_seconds() - started, rate = t > 0 ? (double)samples / t : 0;
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
kiln_status profile_step(run *r)
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

kiln_status profile_finish(run *r)
{
    if (!r->ctx->profile) /* fewer steps than a profile's, or none */
        return KILN_OK;
    return kiln_ctx_profile_end(r->ctx, r->o->profile,
                                r->steps_run > PROFILE_FIRST ? r->steps_run - PROFILE_FIRST : 1,
                                r->o->log ? write_to_log : NULL, r);
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

/* With accumulate = K, batches are micro-batches and K of them make a step:
 * whether batch i ends its step, and its share of the step's samples. */
static int ends_step(const run *r, size_t i, size_t batches)
{
    return (i + 1) % (size_t)r->c.accumulate == 0 || i + 1 == batches;
}

static double step_part(const run *r, size_t i)
{
    size_t per = r->c.batch * (size_t)r->c.accumulate, first = i / (size_t)r->c.accumulate * per;
    size_t end = first + per < r->train.count ? first + per : r->train.count;
    return (double)batch_size(r, i) / (double)(end - first);
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
    rng_seed(&rng, r->c.seed * 1000003u + (uint64_t)epoch);
    data_shuffle(r->order, r->train.count, &rng);
    double total = 0, started = now_seconds();
    net_pipe *q = NULL, *after = NULL;
    kiln_status st = i < batches ? stage_step(r, i, (int)(i % 2), &q) : KILN_OK;
    int stop = 0;
    /* Forward, loss and backward are enqueued, the next batch is gathered
     * and its upload enqueued behind them while the device works, and the
     * host waits once, for the loss. On one process the update is enqueued
     * behind the loss's read and skipped on the device where the loss is
     * not finite; with several ranks it is enqueued once they agree on a
     * finite loss. Either way it runs ahead of the next batch's forward. */
    for (; i < batches && st == KILN_OK && !stop; i++, q = after) {
        size_t n = batch_size(r, i), first, mine;
        batch_slice(r, i, &first, &mine);
        st = profile_step(r);
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
        int last = ends_step(r, i, batches); /* of the micro-batches of one step */
        if (st == KILN_OK && r->c.accumulate > 1)
            st = net_accumulate(r->net, mine, step_part(r, i));
        if (st == KILN_OK && last)
            st = net_reduce_gradients(r->net, mine);
        if (q && q->p != r->p) /* a short batch ran on its own pipeline */
            r->p->counter = q->p->counter;
        after = NULL;
        if (st == KILN_OK && i + 1 < batches)
            st = stage_step(r, i + 1, (int)((i + 1) % 2), &after);
        if (st == KILN_ERR_NUMERIC) {
            char what[1024];
            snprintf(what, sizeof what, "%s", kiln_last_error());
            st = error_set(KILN_ERR_NUMERIC, "epoch %d, batch %zu: %s", epoch, i + 1, what);
        }
        /* one process: the update ahead, behind the loss's read, as
         * kiln_net_train_step does (ranks agree on the loss first) */
        int ahead = st == KILN_OK && q && last && dist_comm_size(r->net->comm) <= 1;
        uint64_t steps = optim_steps(r->opt);
        float l = 0;
        if (st == KILN_OK && q)
            st = net_read_loss(r->net, q->loss, lr, ahead, &l);
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
        stop = shared[2] > 0 && last; /* a step's micro-batches are never split */
        if (st == KILN_OK && !isfinite(batch_loss))
            st = error_set(KILN_ERR_NUMERIC, "epoch %d, batch %zu: the loss is %g; lower the "
                                             "learning rate or clip gradients (clip_norm); "
                                             "--detect-anomaly finds the first layer that "
                                             "made a NaN or Inf",
                           epoch, i + 1, batch_loss);
        /* with several ranks, after the loss is known: a failed step changes no weight */
        if (st == KILN_OK && last && !ahead)
            st = net_optim_step(r->net, lr, NULL);
        if (st != KILN_OK && ahead) { /* the update kept every value; nor does it count */
            kiln_ctx_finish(r->net->ctx);
            optim_set_steps(r->opt, steps);
        }
        correct += (size_t)shared[1];
        total += shared[0]; /* the epoch's loss is a mean over samples */
        samples += n;
        r->samples_trained += n;
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
    *seconds = now_seconds() - started;
    return st;
}

/* The run's settings: the network's, with the options' overrides. */
kiln_status configure(run *r)
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
    if (r->o->batch <= 0 && r->c.batch > r->net->max_batch) { /* made for smaller batches */
        say(r, "note: the [train] batch %zu is above the network's max_batch; training with "
               "batches of %zu\n", r->c.batch, r->net->max_batch);
        r->c.batch = r->net->max_batch;
    }
    if (r->c.batch > r->net->max_batch)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "training: batch %zu is larger than the "
                                                    "network's max_batch %zu",
                         r->c.batch, r->net->max_batch);
    return KILN_OK;
}

/* A last batch too small for batchnorm in training (fewer than two values
 * per channel) is refused before the first epoch, naming the fixes, as
 * PyTorch's DataLoader(drop_last=True) or another batch size would. */
static kiln_status check_last_batch(const run *r)
{
    size_t last = r->train.count % r->c.batch;
    for (size_t i = 0; last && i < r->p->count; i++) {
        const pipe_step *s = &r->p->steps[i];
        kiln_shape shape = shape_of(s->out);
        if (s->op != OP_BATCHNORM || shape.ndim < 2 ||
            last * (shape_numel(&shape) / ((size_t)shape.d[0] * (size_t)shape.d[1])) >= 2)
            continue;
        size_t other = r->c.batch - 1;
        while (other > 2 && r->train.count % other == 1)
            other--;
        return error_set(KILN_ERR_SHAPE, "training: the last batch of each epoch holds %zu "
                                         "sample (%zu samples in batches of %zu), but batchnorm "
                                         "(layer %s) needs more than 1 value per channel in "
                                         "training; use another batch size (batch %zu) or one "
                                         "sample fewer (limit %zu)",
                         last, r->train.count, r->c.batch, pipeline_step_name(r->p, s), other,
                         r->train.count - 1);
    }
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
    if (st == KILN_OK && !r->evaluating)
        st = check_last_batch(r);
    size_t outs = kiln_net_output_size(r->net), b = r->c.batch;
    if (st == KILN_OK) {
        for (int k = 0; k < 2; k++) {
            r->x[k] = malloc(b * r->train.features * sizeof *r->x[k]);
            r->y[k] = malloc(b * outs * sizeof *r->y[k]);
        }
        r->out = malloc(b * outs * sizeof *r->out);
        r->order = malloc(r->train.count * sizeof *r->order);
        if (!r->x[0] || !r->x[1] || !r->y[0] || !r->y[1] || !r->out || !r->order)
            st = error_set(KILN_ERR_OUT_OF_MEMORY, "training: out of host memory");
    }
    r->net->accumulating = r->c.accumulate > 1;
    if (st == KILN_OK)
        st = alloc_snapshot(r);
    if (st == KILN_OK)
        st = open_log(r);
    return st;
}

void teardown(run *r)
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
    free(r->norm_sums);
    if (r->csv)
        fclose(r->csv);
    if (r->lock >= 0)
        close(r->lock);
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
                       .seconds = m->seconds, .best = best,
                       .val_mae = r->val.count ? m->val_mae : NAN,
                       .val_r2 = r->val.count ? m->val_r2 : NAN};
    if (r->o->on_epoch && r->o->on_epoch(r->o->user, &p))
        r->stop = 1;
}

/* Runs the epochs from where t stands; fills the report's training fields. */
static kiln_status epochs(run *r, train_state *t, kiln_train_report *rep)
{
    double train_time = 0;
    kiln_status st = KILN_OK;
    for (int e = t->epoch; e < r->c.epochs && st == KILN_OK && !stopping(r); e++) {
        if (t->batch == 0 && !t->lr_set)
            t->lr = (float)sched_advance(&t->sched, e, t->val_loss);
        t->lr_set = 0;
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
            st = error_set(KILN_ERR_IO, "%s/log.csv: cannot write (%s)", r->o->out_dir,
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
    rep->samples_per_second = train_time > 0 ? (double)r->samples_trained / train_time : 0;
    return st;
}

/* The caller's options as this library knows them: fields of a newer
 * header are ignored, fields an older caller lacks keep their defaults. */
static kiln_status read_options(const kiln_train_options *o, kiln_train_options *out,
                                const char *call)
{
    kiln_train_options_init(out);
    if (!o || o->size < offsetof(kiln_train_options, train_data))
        return error_set(KILN_ERR_INVALID_ARGUMENT, "%s: options are required, initialised "
                                                    "with kiln_train_options_init", call);
    memcpy(out, o, o->size < sizeof *out ? o->size : sizeof *out);
    out->size = sizeof *out;
    if (!out->data && !out->train_data)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "%s: options name no data (data or "
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
        st = error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_net_fit: report is NULL");
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
    double started = now_seconds();
    char *ranks = NULL; /* MPI: rank 0 lists every rank's device */
    st = dist_devices(kiln_ctx_device(net->ctx), &ranks);
    int talking = st == KILN_OK; /* the ranks reach each other: they can agree */
    if (ranks)
        say(&r, "%s", ranks);
    free(ranks);
    if (st == KILN_OK && kiln_model_vocab(net->m) > 0) { /* token models: steps.c */
        st = fit_steps(&r, rep);
        if (st == KILN_OK)
            st = profile_finish(&r);
        rep->seconds = now_seconds() - started;
        if (borrowed)
            net->comm = NULL;
        return st;
    }
    if (st == KILN_OK)
        st = setup(&r);
    if (st == KILN_OK)
        say(&r, "training on %zu samples (%zu %s), batch %zu, %d epochs, %s, %s\n",
            r.train.count, r.val.count, o.val_data ? "in the validation data"
                                                   : "held out for validation",
            r.c.batch, r.c.epochs,
            optim_name(r.c.optim.kind),
            sched_name(r.c.sched.kind));
    if (st == KILN_OK && r.train.skipped + r.test.skipped)
        say(&r, "skipped %zu bad image files (skip_bad)\n", r.train.skipped + r.test.skipped);
    train_state t = {.val_loss = NAN};
    sched_init(&t.sched, &r.c.sched);
    early_stop_init(&t.es, r.c.patience, r.c.min_delta);
    if (st == KILN_OK && o.resume)
        st = resume(&r, o.resume, &t, rep);
    if (talking) /* MPI: the same model, settings and data everywhere, or no rank starts */
        st = agree_on_run(&r, &t, st);
    if (st == KILN_OK)
        st = epochs(&r, &t, rep);
    if (st == KILN_OK)
        st = profile_finish(&r);
    if (st == KILN_OK && stopping(&r)) {
        rep->interrupted = 1;
        st = save_state(&r, &t, rep);
        say(&r, "stopped on request; resume with --resume %s\n",
            o.out_dir ? o.out_dir : "(no output directory: nothing was saved)");
    }
    if (st == KILN_OK && rep->best_epoch > 0 && !o.keep_last)
        st = snapshot(&r, 1); /* the best weights are the final ones */
    if (st == KILN_OK && rep->best_epoch > 0) /* never untrained weights over a run's */
        st = save(&r, "final.safetensors", rep->best_epoch, rep->best_val_loss);
    rep->test_loss = rep->test_accuracy = NAN;
    if (st == KILN_OK && r.test.count)
        st = evaluate(&r, &r.test, &rep->test_loss, &rep->test_accuracy, NULL, NULL, NULL);
    if (t.lr > 0)
        net->lr = t.lr;
    rep->seconds = now_seconds() - started;
    if (r.ctx)
        profile_discard(r.ctx);
    teardown(&r);
    dist_comm_watch(net->comm, NULL);
    net->accumulating = net->acc_filled = 0;
    if (borrowed)
        net->comm = NULL;
    return st; /* MPI: `kiln train` ends the job when a rank fails */
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
    kiln_status required = require_args("kiln_train", ARG(ctx), ARG(m), ARG(o), "report",
                                        (const void *)rep, NULL);
    if (required != KILN_OK)
        return required;
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
    kiln_status st = require_args("kiln_evaluate", ARG(ctx), ARG(m), ARG(checkpoint), "report",
                                  (const void *)rep, NULL);
    if (st == KILN_OK)
        st = read_options(options, &o, "kiln_evaluate");
    if (st != KILN_OK)
        return st;
    memset(rep, 0, sizeof *rep);
    o.out_dir = NULL;
    size_t batch;
    kiln_net *net = NULL;
    st = run_batch(m, &o, &batch);
    if (st == KILN_OK)
        st = kiln_net_create(ctx, m, batch, &net);
    if (st == KILN_OK && kiln_model_vocab(m) > 0) { /* token models: steps.c */
        st = evaluate_tokens(net, &o, checkpoint, rep);
        kiln_net_free(net);
        return st;
    }
    run r = {.net = net, .o = &o, .evaluating = 1, .lock = -1};
    if (st == KILN_OK) /* first: the checkpoint holds the normalization of the inputs */
        st = kiln_net_load(net, checkpoint);
    if (st == KILN_OK)
        st = setup(&r);
    const dataset *d = &r.test;
    size_t classes = net ? kiln_net_output_size(net) : 0;
    if (st == KILN_OK && r.c.loss == LOSS_CROSS_ENTROPY &&
        !(rep->confusion = calloc(classes * classes, sizeof *rep->confusion)))
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "evaluation: out of memory");
    if (st == KILN_OK)
        st = evaluate(&r, d, &rep->loss, &rep->accuracy, rep->confusion, &rep->mae, &rep->r2);
    rep->samples = d->count;
    rep->classes = classes;
    teardown(&r);
    kiln_net_free(net);
    return st;
}
