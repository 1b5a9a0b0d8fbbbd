/* The run's directory: its lock, log.csv, checkpoints and the state a
 * resumed run goes on from. */
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
#include <zlib.h>

#include "dist/dist.h"

#include "fit/fit.h"


/* Files a killed run left half-written (kiln writes NAME.tmp.XXXXXX and
 * renames it): removed once the directory is ours. */
void remove_stale_temporaries(const char *dir)
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
kiln_status lock_out_dir(run *r)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/.lock", r->o->out_dir);
    r->lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (r->lock < 0)
        return error_set(KILN_ERR_IO, "%s: cannot create (%s)", path, strerror(errno));
    if (flock(r->lock, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = "";
        ssize_t n = pread(r->lock, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(r->lock);
        r->lock = -1;
        return error_set(KILN_ERR_IO, "%s is in use by another training run (process %s); "
                                      "give this one another --out", r->o->out_dir,
                         pid[0] ? pid : "unknown");
    }
    remove_stale_temporaries(r->o->out_dir);
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(r->lock, 0) != 0 || pwrite(r->lock, pid, (size_t)n, 0) != n)
        return error_set(KILN_ERR_IO, "%s: cannot write (%s)", path, strerror(errno));
    return KILN_OK;
}

kiln_status open_log(run *r)
{
    if (!r->o->out_dir)
        return KILN_OK;
    if (make_dirs(r->o->out_dir) != 0)
        return error_set(KILN_ERR_IO, "%s: cannot create the output directory (%s)",
                         r->o->out_dir, strerror(errno));
    kiln_status st = lock_out_dir(r);
    if (st != KILN_OK)
        return st;
    char path[4096];
    snprintf(path, sizeof path, "%s/log.csv", r->o->out_dir);
    int append = r->o->resume && access(path, F_OK) == 0;
    if (!(r->csv = fopen(path, append ? "a" : "w")))
        return error_set(KILN_ERR_IO, "%s: cannot write", path);
    if (!append)
        fprintf(r->csv, "%s,lr,", r->by_steps ? "step" : "epoch");
    if (!append)
        fprintf(r->csv, "train_loss,train_accuracy,val_loss,val_accuracy,val_mae,"
                        "val_r2,seconds\n");
    return KILN_OK;
}

/* A file that will be written later in the run can be: its directory
 * exists and is writable (checked before training, not after it). */
kiln_status check_writable(const char *path)
{
    char dir[4096];
    dir_of(path, dir, sizeof dir);
    struct stat info;
    if (stat(path, &info) == 0 && S_ISDIR(info.st_mode))
        return error_set(KILN_ERR_IO, "%s: is a directory; give a file name", path);
    if (access(dir, W_OK) != 0)
        return error_set(KILN_ERR_IO, "%s: cannot be written (%s: %s)", path, dir,
                         strerror(errno));
    return KILN_OK;
}

static const char *const state_names[] = {"optimizer.0", "optimizer.1"};

/* zlib's crc32 over n bytes (it takes at most 4 GiB a call). */
static uLong crc_of(uLong c, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t step; n > 0; p += step, n -= step) {
        step = n < (1u << 30) ? n : 1u << 30;
        c = crc32(c, p, (uInt)step);
    }
    return c;
}

/* The training split's fingerprint (CRC-32 of its features and targets):
 * a state saved mid-epoch goes on only over the same samples. */
static uint32_t train_crc(run *r)
{
    const dataset *d = &r->train;
    if (!r->has_crc) {
        uLong c = d->x ? crc_of(crc32(0L, Z_NULL, 0), d->x, d->count * d->features * sizeof *d->x)
                       : data_shards_digest(d); /* shards: their files and rows */
        r->train_crc = (uint32_t)crc_of(c, d->y, d->count * d->targets * sizeof *d->y);
        r->has_crc = 1;
    }
    return r->train_crc;
}

/* last.safetensors (the weights, for users) and last.state.safetensors
 * (weights, optimizer state and where training stands, in one file: a
 * kill between the two writes leaves a state that is whole). */
kiln_status save_state(run *r, const train_state *t, const kiln_train_report *rep)
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
    meta_number(&m, "batch_size", (double)r->c.batch); /* what a mid-epoch resume needs */
    meta_number(&m, "train_samples", (double)r->train.count);
    meta_number(&m, "train_crc", (double)train_crc(r));
    meta_number(&m, "seed", (double)r->c.seed);
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
kiln_status trim_log(run *r, int epoch)
{
    if (!r->csv)
        return KILN_OK;
    char path[4096], *line = NULL, *kept = NULL;
    size_t cap = 0, size = 0;
    snprintf(path, sizeof path, "%s/log.csv", r->o->out_dir);
    fclose(r->csv);
    r->csv = NULL;
    FILE *in = fopen(path, "r"), *out = open_memstream(&kept, &size);
    int ok = in && out, err = errno;
    for (long n = 0; ok && getline(&line, &cap, in) != -1; n++)
        if (n == 0 || atol(line) <= epoch)
            ok = fputs(line, out) >= 0;
    ok = ok && !ferror(in);
    err = ok ? 0 : errno;
    free(line);
    if (in)
        fclose(in);
    ok = out && fclose(out) == 0 && ok;
    kiln_status st = ok ? write_bytes_atomic(path, kept, size)
                        : error_set(KILN_ERR_IO, "%s: cannot read (%s)", path, strerror(err));
    free(kept);
    if (st == KILN_OK && !(r->csv = fopen(path, "a")))
        st = fail_write(path, errno);
    return st;
}

enum { WHOLE = 1, LOSS = 2 }; /* a whole number; a loss (NaN: none yet, else 0 to inf) */

/* One number of a saved state, within [lo, hi]. */
static kiln_status state_number(const char *path, const checkpoint_meta *m, const char *key,
                                double lo, double hi, int kind, double *out)
{
    const char *v = checkpoint_meta_get(m, key);
    char *end = NULL;
    double x = v ? strtod(v, &end) : NAN;
    int ok = v && end != v && *end == '\0' &&
             ((x >= lo && x <= hi && (!(kind & WHOLE) || x == floor(x))) ||
              ((kind & LOSS) && isnan(x)));
    if (!ok)
        return error_set(KILN_ERR_IO, "%s: %s is %s%s%s; expected %s from %.17g to %.17g (is it "
                                      "a kiln training state, and whole?)",
                         path, key, v ? "\"" : "", v ? v : "missing", v ? "\"" : "",
                         kind & WHOLE ? "a whole number" : "a number", lo, hi);
    *out = x;
    return KILN_OK;
}

/* Every number of the state, range-checked before any is used. */
static kiln_status read_numbers(const char *path, const checkpoint_meta *m, double *v)
{
    static const struct {
        const char *key;
        double lo, hi;
        int kind;
    } keys[] = {{"epoch", 0, 1e9, WHOLE},
                {"batch", 0, 1e15, WHOLE},
                {"lr", 0, 1e9, 0},
                {"val_loss", 0, INFINITY, LOSS},
                {"step", 0, 9007199254740992.0, WHOLE},
                {"counter", 0, 18446744073709549568.0, WHOLE},
                {"sched_lr", 0, 1e9, 0},
                {"sched_best", 0, INFINITY, LOSS},
                {"sched_bad", 0, 1e9, WHOLE},
                {"es_best", 0, INFINITY, LOSS},
                {"es_bad", 0, 1e9, WHOLE},
                {"best_epoch", 0, 1e9, WHOLE},
                {"best_val_loss", 0, INFINITY, LOSS}};
    kiln_status st = KILN_OK;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0] && st == KILN_OK; i++)
        st = state_number(path, m, keys[i].key, keys[i].lo, keys[i].hi, keys[i].kind, &v[i]);
    if (st == KILN_OK && v[11] > v[0])
        st = error_set(KILN_ERR_IO, "%s: best_epoch %.0f is after epoch %.0f", path, v[11], v[0]);
    return st;
}

/* A state saved mid-epoch goes on from its batch only with the same batch
 * size, training samples and seed; else why not, to say. */
static int same_epoch(run *r, const checkpoint_meta *m, char *why, size_t size)
{
    static const char *const keys[] = {"batch_size", "train_samples", "train_crc", "seed"};
    static const char *const what[] = {"batch size", "number of training samples (--limit, val)",
                                       "training data", "seed"};
    double now[] = {(double)r->c.batch, (double)r->train.count, (double)train_crc(r),
                    (double)r->c.seed};
    for (int i = 0; i < 4; i++) {
        const char *v = checkpoint_meta_get(m, keys[i]);
        if (v && strtod(v, NULL) == now[i])
            continue;
        if (!v)
            snprintf(why, size, "the state does not record its %s", what[i]);
        else if (i == 2)
            snprintf(why, size, "the training data differ");
        else
            snprintf(why, size, "its %s was %s, now %.17g", what[i], v, now[i]);
        return 0;
    }
    return 1;
}

/* Loads a run saved by save_state from directory dir. */
kiln_status resume(run *r, const char *dir, train_state *t, kiln_train_report *rep)
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
    double v[13];
    if (st == KILN_OK)
        st = read_numbers(path, &m, v);
    char why[256];
    int restart = st == KILN_OK && v[1] > 0 && !same_epoch(r, &m, why, sizeof why);
    size_t batches = (r->train.count + r->c.batch - 1) / r->c.batch;
    if (st == KILN_OK && !restart && v[1] >= (double)batches)
        st = error_set(KILN_ERR_IO, "%s: batch %.0f is past the epoch's %zu batches", path, v[1],
                       batches);
    if (st != KILN_OK) {
        checkpoint_meta_free(&m);
        return st;
    }
    t->epoch = (int)v[0];
    t->batch = restart ? 0 : (size_t)v[1];
    t->lr = (float)v[2];
    t->lr_set = restart;
    t->val_loss = v[3];
    optim_set_steps(r->opt, (uint64_t)v[4]);
    r->p->counter = (uint64_t)v[5];
    t->sched.lr = v[6];
    t->sched.best = v[7];
    t->sched.bad_epochs = (int)v[8];
    t->es.best = v[9];
    t->es.bad = (int)v[10];
    rep->best_epoch = (int)v[11];
    rep->best_val_loss = v[12];
    rep->epochs_run = t->epoch;
    checkpoint_meta_free(&m);
    kiln_status trimmed = trim_log(r, t->epoch);
    if (trimmed != KILN_OK)
        return trimmed;
    if (restart)
        say(r, "resuming after epoch %d: the state was saved in the middle of epoch %d, but %s; "
               "epoch %d starts again from its first batch\n",
            t->epoch, t->epoch + 1, why, t->epoch + 1);
    else
        say(r, "resuming after epoch %d%s\n", t->epoch, t->batch ? " (mid-epoch)" : "");
    return KILN_OK;
}
