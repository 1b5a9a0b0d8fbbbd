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

kiln_status open_log(run *r)
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
kiln_status check_writable(const char *path)
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

static const char *const state_names[] = {"optimizer.0", "optimizer.1"};

static double meta_read(const checkpoint_meta *m, const char *key)
{
    const char *v = checkpoint_meta_get(m, key);
    return v ? strtod(v, NULL) : NAN;
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
