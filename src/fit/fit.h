/* The training loop's shared state (src/fit/): fit.c runs the epochs,
 * data.c prepares the splits and evaluates them, files.c keeps the run's
 * directory (lock, log, checkpoints, resume state). */
#ifndef KILN_FIT_H
#define KILN_FIT_H

#include <stdio.h>

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
    int by_steps;            /* a token model's run (steps.c): log rows and files by step */
    size_t samples_trained;  /* in this call, for samples/s */
    uint32_t train_crc;      /* the training split's fingerprint, once has_crc */
    int has_crc;
    double *norm_sums;       /* shards under MPI: this rank's normalization sums, until */
    size_t norm_groups;      /* finish_normalization adds them up (2 x norm_groups) */
} run;



/* Where training stands: what a resumed run needs to go on exactly. */
typedef struct {
    scheduler sched;
    early_stop es;
    int epoch;        /* epochs completed */
    size_t batch;     /* next batch of the epoch in progress (0: none in progress) */
    float lr;         /* the learning rate of the epoch in progress */
    double val_loss;  /* of the last completed epoch */
    int lr_set;       /* the epoch in progress restarts from its first batch with lr */
} train_state;

/* fit.c */
int stopping(const run *r);
kiln_status configure(run *r);
void teardown(run *r);
void say(const run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* data.c: the splits, evaluation, the best weights */
kiln_status prepare_data(run *r);
kiln_status prepare_eval_data(run *r);
kiln_status finish_normalization(run *r); /* collective: from agree_on_run */
kiln_status stage_batch(run *r, net_pipe *q, const dataset *d, const size_t *order,
                        size_t first, size_t n, int s, int async);
kiln_status read_logits(run *r, const net_pipe *q, int async);
kiln_status pipe_for(run *r, size_t n, net_pipe **q);
kiln_status evaluate(run *r, const dataset *d, double *loss, double *accuracy,
                     size_t *confusion, double *mae, double *r2);
kiln_status snapshot(run *r, int restore);
kiln_status alloc_snapshot(run *r);
void free_snapshot(run *r);
kiln_status save(run *r, const char *file, int epoch, double val_loss);

/* agree.c: under MPI, the same model, settings and data on every rank
 * (collective; mine is this rank's status so far) */
kiln_status agree_on_run(run *r, const train_state *t, kiln_status mine);

/* files.c: the run's directory */
void remove_stale_temporaries(const char *dir);
kiln_status lock_out_dir(run *r);
kiln_status open_log(run *r);
kiln_status check_writable(const char *path);
kiln_status save_state(run *r, const train_state *t, const kiln_train_report *rep);
kiln_status trim_log(run *r, int epoch);
kiln_status resume(run *r, const char *dir, train_state *t, kiln_train_report *rep);

/* steps.c: token models train by steps on a corpus */
kiln_status fit_steps(run *r, kiln_train_report *rep);
/* --profile: called before every training step, it records steps 2 to 6
 * and then writes the trace; profile_finish writes it after fewer. */
kiln_status profile_step(run *r);
kiln_status profile_finish(run *r);
kiln_status evaluate_tokens(kiln_net *net, const kiln_train_options *o, const char *checkpoint,
                            kiln_eval_report *rep);

#endif
