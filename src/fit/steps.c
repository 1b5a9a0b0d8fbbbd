/* Training by steps, for token models ([input] tokens and block): each
 * step trains on a batch of random windows of the corpus (src/data/text.c)
 * at the learning rate the schedule gives that step (warmup and t_max
 * count steps), and every eval_every steps both splits are scored on
 * eval_batches batches of windows drawn once, a row goes to log.csv,
 * curves.svg is redrawn and the checkpoints are written, as nanoGPT's
 * train.py does. A step's windows come from a generator seeded by the
 * seed and the step, so a resumed run draws what the whole run would have.
 * Ctrl-C (the options' stop) and --resume work as for epochs. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/text.h"
#include "fit/fit.h"

/* A run's corpus and its host arrays. */
typedef struct {
    corpus text;
    size_t block, batch;
    float *x, *y;                  /* one training batch */
    float *eval_x[2], *eval_y[2];  /* the windows every evaluation scores: train, val */
    double train_seconds;          /* in this call, evaluations left out */
    uint64_t trained;              /* steps taken in this call */
} tokens;

/* Where a run stands: what a resumed run needs to go on exactly. */
typedef struct {
    uint64_t done;        /* steps completed */
    double val_loss;      /* of the last evaluation */
    double best_val_loss; /* and the best of them */
    uint64_t best_step;
    early_stop es;
} step_state;

static const char *const state_names[] = {"optimizer.0", "optimizer.1"};

static void tokens_free(tokens *k)
{
    corpus_free(&k->text);
    free(k->x);
    free(k->y);
    for (int s = 0; s < 2; s++) {
        free(k->eval_x[s]);
        free(k->eval_y[s]);
    }
}

/* The corpus, checked against the model, its vocabulary given to the
 * network, and the host arrays. */
static kiln_status prepare_tokens(run *r, tokens *k)
{
    k->block = kiln_model_block(r->m);
    k->batch = r->c.batch;
    kiln_status st = r->c.shard ? corpus_load_shards(r->o->data, &k->text)
                                : corpus_load(r->o->data, &k->text);
    if (st == KILN_OK)
        st = corpus_check(&k->text, kiln_model_vocab(r->m), k->block);
    if (st == KILN_OK && k->text.vocab && r->net->vocab) { /* e.g. weights loaded before */
        checkpoint_meta text = {0};
        checkpoint_meta_set(&text, "vocab", k->text.vocab);
        st = net_check_vocab(r->net, &text, r->o->data, "the network");
        checkpoint_meta_free(&text);
    }
    if (st == KILN_OK && k->text.vocab)
        st = kiln_net_set_vocab(r->net, k->text.vocab);
    size_t one = k->batch * k->block, all = one * (size_t)r->c.eval_batches;
    if (st != KILN_OK)
        return st;
    k->x = malloc(one * sizeof *k->x);
    k->y = malloc(one * sizeof *k->y);
    for (int s = 0; s < 2; s++) {
        k->eval_x[s] = malloc(all * sizeof *k->eval_x[s]);
        k->eval_y[s] = malloc(all * sizeof *k->eval_y[s]);
        if (!k->eval_x[s] || !k->eval_y[s])
            return error_set(KILN_ERR_OUT_OF_MEMORY, "training: out of host memory for %d "
                                                     "evaluation batches", r->c.eval_batches);
        kiln_rng rng;
        rng_seed(&rng, r->c.seed * 2654435761u + 17u + (uint64_t)s);
        st = token_windows(s ? &k->text.val : &k->text.train, kiln_model_vocab(r->m), k->block,
                           (size_t)r->c.eval_batches * k->batch, &rng, k->eval_x[s],
                           k->eval_y[s]);
        if (st != KILN_OK)
            return st;
    }
    if (!k->x || !k->y)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "training: out of host memory");
    return KILN_OK;
}

/* The run's step settings: --steps over [train] steps; a cosine's t_max
 * is the number of steps unless given. */
static kiln_status configure_steps(run *r)
{
    kiln_status st = configure(r);
    if (r->o->steps > 0)
        r->c.steps = r->o->steps;
    if (r->net->c.sched.t_max == 0)
        r->c.sched.t_max = r->c.steps;
    if (st == KILN_OK && r->c.sched.kind == SCHED_PLATEAU)
        st = error_set(KILN_ERR_INVALID_ARGUMENT, "schedule = plateau steps once per epoch; "
                                                  "token models train by steps (use "
                                                  "warmup_cosine, cosine, step or constant)");
    if (st == KILN_OK && r->o->epochs > 0)
        st = error_set(KILN_ERR_INVALID_ARGUMENT, "token models train by steps: give --steps "
                                                  "(or [train] steps), not epochs");
    return st;
}

/* Mean loss and accuracy of one split's evaluation windows, in eval mode. */
static kiln_status score(run *r, const tokens *k, int split, double *loss, double *acc)
{
    size_t one = k->batch * k->block;
    double l_sum = 0, a_sum = 0;
    kiln_status st = KILN_OK;
    for (int i = 0; i < r->c.eval_batches && st == KILN_OK; i++) {
        double l = 0, a = 0;
        st = kiln_net_evaluate(r->net, k->eval_x[split] + (size_t)i * one,
                               k->eval_y[split] + (size_t)i * one, k->batch, &l, &a);
        l_sum += l;
        a_sum += a;
    }
    *loss = l_sum / r->c.eval_batches;
    *acc = a_sum / r->c.eval_batches;
    return st;
}

static kiln_status save_step_state(run *r, const step_state *t)
{
    if (!r->o->out_dir)
        return KILN_OK;
    kiln_status st = save(r, "last.safetensors", (int)t->done, t->val_loss);
    checkpoint_meta m = {0};
    meta_number(&m, "steps_done", (double)t->done);
    meta_number(&m, "val_loss", t->val_loss);
    meta_number(&m, "best_val_loss", t->best_val_loss);
    meta_number(&m, "best_step", (double)t->best_step);
    meta_number(&m, "es_best", t->es.best);
    meta_number(&m, "es_bad", t->es.bad);
    meta_number(&m, "step", (double)optim_steps(r->opt));
    meta_number(&m, "counter", (double)r->p->counter);
    net_meta(r->net, &m);
    kiln_tensor *tensors[2] = {optim_state(r->opt, 0), optim_state(r->opt, 1)};
    size_t n = tensors[1] ? 2 : tensors[0] ? 1 : 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/last.state.safetensors", r->o->out_dir);
    if (st == KILN_OK)
        st = checkpoint_save_state(r->p, path, state_names, tensors, n, &m,
                                   (int64_t)optim_steps(r->opt));
    checkpoint_meta_free(&m);
    return st;
}

static double meta_read(const checkpoint_meta *m, const char *key)
{
    const char *v = checkpoint_meta_get(m, key);
    return v ? strtod(v, NULL) : NAN;
}

/* Goes on from the state save_step_state wrote in dir; the state's
 * vocabulary must be the corpus's. */
static kiln_status resume_steps(run *r, const char *dir, step_state *t)
{
    char path[4096];
    checkpoint_meta m = {0};
    snprintf(path, sizeof path, "%s/last.state.safetensors", dir);
    kiln_status st = checkpoint_read_meta(path, &m); /* checked before any weight changes */
    if (st == KILN_OK && isnan(meta_read(&m, "steps_done")))
        st = error_set(KILN_ERR_IO, "%s: not the state of a run by steps (a token model's)",
                       path);
    if (st == KILN_OK)
        st = net_check_vocab(r->net, &m, path, r->o->data);
    checkpoint_meta_free(&m);
    snprintf(path, sizeof path, "%s/best.safetensors", dir);
    if (st == KILN_OK && access(path, R_OK) == 0) { /* the best weights, kept on the host */
        st = checkpoint_load(r->p, path, NULL);
        if (st == KILN_OK)
            st = snapshot(r, 0);
    }
    kiln_tensor *tensors[2] = {optim_state(r->opt, 0), optim_state(r->opt, 1)};
    size_t n = tensors[1] ? 2 : tensors[0] ? 1 : 0;
    snprintf(path, sizeof path, "%s/last.state.safetensors", dir);
    if (st == KILN_OK)
        st = checkpoint_load_state(r->p, path, state_names, tensors, n, &m);
    if (st != KILN_OK) {
        checkpoint_meta_free(&m);
        return st;
    }
    t->done = (uint64_t)meta_read(&m, "steps_done");
    t->val_loss = meta_read(&m, "val_loss");
    t->best_val_loss = meta_read(&m, "best_val_loss");
    t->best_step = (uint64_t)meta_read(&m, "best_step");
    t->es.best = meta_read(&m, "es_best");
    t->es.bad = (int)meta_read(&m, "es_bad");
    optim_set_steps(r->opt, (uint64_t)meta_read(&m, "step"));
    r->p->counter = (uint64_t)meta_read(&m, "counter");
    checkpoint_meta_free(&m);
    st = trim_log(r, (int)t->done);
    if (st == KILN_OK)
        say(r, "resuming after step %llu of %d\n", (unsigned long long)t->done, r->c.steps);
    return st;
}

static void progress_line(const run *r, const tokens *k, uint64_t done, double loss)
{
    if (!r->o->log || !r->o->progress)
        return;
    double rate = k->train_seconds > 0
                      ? (double)(k->trained * k->batch * k->block) / k->train_seconds
                      : 0;
    double left = (double)((uint64_t)r->c.steps - done) * (double)(k->batch * k->block);
    say(r, "\r  step %llu/%d  loss %.4f  %.0f tokens/s  ETA %.0fs ", (unsigned long long)done,
        r->c.steps, loss, rate, rate > 0 ? left / rate : 0);
}

/* One training step: the windows of step t, this rank's share of them. */
static kiln_status train_step(run *r, tokens *k, uint64_t t, double *loss)
{
    kiln_rng rng;
    rng_seed(&rng, r->c.seed * 1000003u + t + 1);
    kiln_status st = token_windows(&k->text.train, kiln_model_vocab(r->m), k->block, k->batch,
                                   &rng, k->x, k->y);
    size_t first, mine;
    dist_slice(r->net->comm, 0, k->batch, &first, &mine);
    if (st == KILN_OK)
        st = kiln_net_set_lr(r->net, sched_lr_at(&r->c.sched, (int)t));
    float l = NAN;
    if (st == KILN_OK)
        st = profile_step(r);
    double started = now_seconds();
    if (st == KILN_OK)
        st = kiln_net_train_step(r->net, k->x + first * k->block, k->y + first * k->block,
                                 mine, &l);
    k->train_seconds += now_seconds() - started;
    k->trained++;
    if (st != KILN_OK) {
        char what[1024];
        snprintf(what, sizeof what, "%s", kiln_last_error());
        return error_set(st, "step %llu: %s", (unsigned long long)t + 1, what);
    }
    *loss = l;
    return KILN_OK;
}

/* An evaluation: both splits scored, the log row, the callback, the
 * checkpoints. */
static kiln_status evaluate_step(run *r, tokens *k, step_state *t, double seconds)
{
    double tl, ta, vl, va;
    kiln_status st = score(r, k, 0, &tl, &ta);
    if (st == KILN_OK)
        st = score(r, k, 1, &vl, &va);
    if (st != KILN_OK)
        return st;
    double lr = sched_lr_at(&r->c.sched, (int)t->done - 1);
    t->val_loss = vl;
    es_verdict v = early_stop_update(&t->es, vl);
    say(r, "step %llu/%d  lr %.3g  train loss %.4f  val loss %.4f  %.1f s\n",
        (unsigned long long)t->done, r->c.steps, lr, tl, vl, seconds);
    if (r->csv)
        fprintf(r->csv, "%llu,%.9g,%.9g,%.9g,%.9g,%.9g,,,%.3f\n", (unsigned long long)t->done,
                lr, tl, ta, vl, va, seconds),
            fflush(r->csv);
    if (r->csv && ferror(r->csv))
        return error_set(KILN_ERR_IO, "%s/log.csv: cannot write (%s)", r->o->out_dir,
                         strerror(errno));
    int evals = (r->c.steps + r->c.eval_every - 1) / r->c.eval_every;
    kiln_progress p = {.epoch = (int)((t->done + (uint64_t)r->c.eval_every - 1) /
                                      (uint64_t)r->c.eval_every),
                       .epochs = evals, .batch = t->done, .batches = (size_t)r->c.steps,
                       .step = optim_steps(r->opt), .loss = tl, .accuracy = ta, .val_loss = vl,
                       .val_accuracy = va, .lr = lr, .seconds = seconds,
                       .best = v == ES_IMPROVED};
    if (r->o->on_epoch && r->o->on_epoch(r->o->user, &p))
        r->stop = 1;
    if (r->csv && !r->plot_failed && kiln_plot(r->o->out_dir, NULL) != KILN_OK) {
        r->plot_failed = 1;
        say(r, "warning: no training curves: %s\n", kiln_last_error());
    }
    if (v == ES_IMPROVED) {
        t->best_step = t->done;
        t->best_val_loss = vl;
        st = snapshot(r, 0);
        if (st == KILN_OK)
            st = save(r, "best.safetensors", (int)t->done, vl);
    }
    if (st == KILN_OK)
        st = save_step_state(r, t);
    if (st == KILN_OK && v == ES_STOP) {
        say(r, "early stopping: no improvement of the validation loss in %d evaluations\n",
            t->es.bad);
        r->stop = 2;
    }
    return st;
}

/* The steps from where t stands. */
static kiln_status run_steps(run *r, tokens *k, step_state *t, kiln_train_report *rep)
{
    kiln_status st = KILN_OK;
    double since = now_seconds();
    while (st == KILN_OK && t->done < (uint64_t)r->c.steps && !stopping(r)) {
        double loss = NAN;
        st = train_step(r, k, t->done, &loss);
        if (st != KILN_OK)
            break;
        t->done++;
        if (r->o->stop_after && ++r->batches_run >= r->o->stop_after)
            r->stop = 1;
        if (r->o->on_step) {
            kiln_progress p = {.epoch = 1, .epochs = 1, .batch = t->done,
                               .batches = (size_t)r->c.steps, .step = optim_steps(r->opt),
                               .loss = loss, .accuracy = NAN, .val_loss = NAN,
                               .val_accuracy = NAN, .lr = kiln_net_lr(r->net)};
            if (r->o->on_step(r->o->user, &p))
                r->stop = 1;
        }
        if (t->done % 8 == 0 || t->done == (uint64_t)r->c.steps)
            progress_line(r, k, t->done, loss);
        if (t->done % (uint64_t)r->c.eval_every == 0 || t->done == (uint64_t)r->c.steps) {
            if (r->o->log && r->o->progress)
                say(r, "\r%*s\r", 100, "");
            st = evaluate_step(r, k, t, now_seconds() - since);
            since = now_seconds();
            rep->epochs_run++;
        }
    }
    if (r->o->log && r->o->progress)
        say(r, "\r%*s\r", 100, "");
    rep->stopped_early = r->stop == 2;
    if (r->stop == 2)
        r->stop = 0;
    return st;
}

kiln_status fit_steps(run *r, kiln_train_report *rep)
{
    tokens k = {0};
    r->by_steps = 1;
    r->ctx = r->net->ctx;
    r->m = r->net->m;
    r->p = r->net->main.p;
    r->opt = r->net->opt;
    kiln_status st = r->o->data ? configure_steps(r)
                                : error_set(KILN_ERR_INVALID_ARGUMENT,
                                            "a token model trains on a corpus named by data (a "
                                            "UTF-8 text, nanoGPT's train.bin and val.bin, or a "
                                            ".npy of token ids); on arrays in memory, call "
                                            "train_step on windows of them");
    if (st == KILN_OK && r->o->profile)
        st = check_writable(r->o->profile);
    if (st == KILN_OK)
        st = prepare_tokens(r, &k);
    if (st == KILN_OK)
        st = alloc_snapshot(r);
    if (st == KILN_OK)
        st = open_log(r);
    step_state t = {.val_loss = NAN, .best_val_loss = NAN};
    early_stop_init(&t.es, r->c.patience, r->c.min_delta);
    char used[64]; /* mapped files: ids checked as read (a scan would read them all) */
    if (k.text.vocab_size)
        snprintf(used, sizeof used, "%zu of %zu", k.text.vocab_size, kiln_model_vocab(r->m));
    else
        snprintf(used, sizeof used, "%zu, ids checked as read", kiln_model_vocab(r->m));
    if (st == KILN_OK)
        say(r, "training on %s: %zu tokens (%zu held out for validation), vocabulary %s, "
               "batch %zu x block %zu, %d steps, %s, %s\n", r->o->data, k.text.train.count,
            k.text.val.count, used, k.batch, k.block,
            r->c.steps,
            r->c.optim.kind == OPTIM_SGD ? "sgd" : r->c.optim.kind == OPTIM_ADAM ? "adam" : "adamw",
            sched_name(r->c.sched.kind));
    if (st == KILN_OK && r->o->resume)
        st = resume_steps(r, r->o->resume, &t);
    if (st == KILN_OK)
        st = run_steps(r, &k, &t, rep);
    if (st == KILN_OK && stopping(r)) {
        rep->interrupted = 1;
        st = save_step_state(r, &t);
        say(r, "stopped on request; resume with --resume %s\n",
            r->o->out_dir ? r->o->out_dir : "(no output directory: nothing was saved)");
    }
    rep->steps_run = t.done;
    rep->best_step = t.best_step;
    rep->best_epoch = (int)t.best_step;
    rep->best_val_loss = t.best_val_loss;
    if (st == KILN_OK && t.best_step > 0 && !r->o->keep_last)
        st = snapshot(r, 1); /* the best weights are the final ones */
    if (st == KILN_OK && t.best_step > 0)
        st = save(r, "final.safetensors", (int)t.best_step, t.best_val_loss);
    rep->test_loss = rep->test_accuracy = NAN;
    double tokens_run = (double)(k.trained * k.batch * k.block);
    rep->tokens_per_second = k.train_seconds > 0 ? tokens_run / k.train_seconds : 0;
    rep->samples_per_second = k.train_seconds > 0 ? tokens_run / (double)k.block /
                                                        k.train_seconds
                                                  : 0;
    tokens_free(&k);
    teardown(r);
    return st;
}

/* kiln_evaluate of a token model: the checkpoint's loss and accuracy per
 * token over the whole validation split, in consecutive windows (starts
 * 0, T, 2T, ... while a window of T + 1 tokens fits). */
kiln_status evaluate_tokens(kiln_net *net, const kiln_train_options *o, const char *checkpoint,
                            kiln_eval_report *rep)
{
    corpus c;
    size_t block = kiln_model_block(net->m), b = kiln_net_max_batch(net);
    kiln_status st = net->c.shard ? corpus_load_shards(o->data, &c) : corpus_load(o->data, &c);
    if (st == KILN_OK)
        st = corpus_check(&c, kiln_model_vocab(net->m), block);
    if (st == KILN_OK && c.vocab) /* a checkpoint of another vocabulary is refused */
        st = kiln_net_set_vocab(net, c.vocab);
    if (st == KILN_OK)
        st = kiln_net_load(net, checkpoint);
    size_t windows = st == KILN_OK ? (c.val.count - 1) / block : 0;
    if (o->limit && windows > o->limit)
        windows = o->limit;
    float *x = st == KILN_OK ? malloc(b * block * sizeof *x) : NULL;
    float *y = st == KILN_OK ? malloc(b * block * sizeof *y) : NULL;
    if (st == KILN_OK && (!x || !y))
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "evaluation: out of host memory");
    double loss = 0, right = 0;
    for (size_t first = 0; first < windows && st == KILN_OK; first += b) {
        size_t n = windows - first < b ? windows - first : b;
        size_t vocab = kiln_model_vocab(net->m);
        for (size_t i = 0; i < n * block && st == KILN_OK; i++) {
            size_t at = (first + i / block) * block + i % block;
            uint32_t a = 0, b = 0;
            st = token_get(&c.val, at, vocab, &a);
            if (st == KILN_OK)
                st = token_get(&c.val, at + 1, vocab, &b);
            x[i] = (float)a, y[i] = (float)b;
        }
        double l = 0, a = 0;
        if (st == KILN_OK)
            st = kiln_net_evaluate(net, x, y, n, &l, &a);
        loss += l * (double)n;
        right += a * (double)n;
    }
    rep->samples = windows;
    rep->classes = kiln_model_vocab(net->m);
    rep->loss = windows ? loss / (double)windows : NAN;
    rep->accuracy = windows ? right / (double)windows : NAN;
    rep->mae = rep->r2 = NAN;
    free(x);
    free(y);
    corpus_free(&c);
    return st;
}
