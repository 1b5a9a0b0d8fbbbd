/* Optimizers on the device (optim.c) and learning-rate schedules on the
 * host (sched.c), with PyTorch's formulas so that the same start gives the
 * same weights. */
#ifndef KILN_OPTIM_H
#define KILN_OPTIM_H

#include "compiler/pipeline.h"

/* The optimizers, as [train] optimizer = names them. */
#define OPTIM_LIST(X) X(SGD, "sgd") X(ADAM, "adam") X(ADAMW, "adamw")

typedef enum {
#define OPTIM_ENUM(id, name) OPTIM_##id,
    OPTIM_LIST(OPTIM_ENUM)
#undef OPTIM_ENUM
    OPTIM_COUNT
} optim_kind;

/* "sgd", ...; NULL outside the list. */
const char *optim_name(optim_kind kind);

typedef struct {
    optim_kind kind;
    float lr;
    float momentum, dampening; /* sgd */
    int nesterov;              /* sgd */
    float beta1, beta2, eps;   /* adam, adamw */
    float weight_decay;        /* L2 for sgd and adam, decoupled for adamw */
    int decay_matrices;        /* adam, adamw: decay only weights of 2 or more dimensions
                                  (nanoGPT's parameter groups); else every parameter */
    float clip_norm;           /* > 0: clip the global L2 norm of all gradients */
    float clip_value;          /* > 0: clamp each gradient to [-v, v] */
} optim_config;

/* PyTorch's defaults: sgd momentum 0; adam betas (0.9, 0.999), eps 1e-8;
 * weight decay 0 (adamw: 0.01). */
optim_config optim_defaults(optim_kind kind);

typedef struct optimizer optimizer;

kiln_status optim_create(pipeline *p, const optim_config *cfg, optimizer **out);
void optim_free(optimizer *o);

/* New hyperparameters for an optimizer of the same kind and state (same
 * kind, and for sgd momentum staying zero or nonzero), keeping its state. */
kiln_status optim_set_config(optimizer *o, const optim_config *cfg);

/* One update of every parameter from the gradients of the last backward,
 * at learning rate lr; one launch (three more with clip_norm). With a
 * guard (a device scalar, NULL: none), the device skips the update where
 * the guard is not finite: the step is enqueued before the loss is read. */
kiln_status optim_step(optimizer *o, float lr, const kiln_tensor *guard);

/* The step count, and the device tensors of the state for checkpoints:
 * sgd's momentum buffer, or adam's first and second moments (NULL where
 * there is none). Each has the layout of the pipeline's flat parameters. */
uint64_t optim_steps(const optimizer *o);
void optim_set_steps(optimizer *o, uint64_t t);
kiln_tensor *optim_state(optimizer *o, int which);

/* The global gradient norm before clipping, of the last step with
 * clip_norm (a device scalar), for logs and anomaly checks. */
kiln_tensor *optim_grad_norm(optimizer *o);

/* ---- schedules ------------------------------------------------------------ */

/* The schedules, as [train] schedule = names them. */
#define SCHED_LIST(X)                                                                     \
    X(CONSTANT, "constant")                                                               \
    X(STEP, "step")                                                                       \
    X(MULTISTEP, "multistep")                                                             \
    X(EXPONENTIAL, "exponential")                                                         \
    X(COSINE, "cosine")                                                                   \
    X(WARMUP_COSINE, "warmup_cosine")                                                     \
    X(PLATEAU, "plateau")

typedef enum {
#define SCHED_ENUM(id, name) SCHED_##id,
    SCHED_LIST(SCHED_ENUM)
#undef SCHED_ENUM
    SCHED_COUNT
} sched_kind;

#define SCHED_MAX_MILESTONES 16

typedef struct {
    sched_kind kind;
    double base_lr;
    int step_size;                       /* step */
    double gamma;                        /* step, multistep, exponential */
    int milestones[SCHED_MAX_MILESTONES]; /* multistep, increasing */
    int n_milestones;
    int t_max;                           /* cosine, warmup_cosine */
    double eta_min;
    int warmup;                          /* warmup_cosine: epochs of linear warm-up */
    double factor;                       /* plateau */
    int patience;                        /* plateau */
    double threshold;                    /* plateau: relative improvement */
    double min_lr;                       /* plateau */
} sched_config;

typedef struct {
    sched_config c;
    double lr;
    double best;
    int bad_epochs;
} scheduler;

void sched_init(scheduler *s, const sched_config *c);

/* The learning rate for epoch t (from 0), as PyTorch's scheduler gives it
 * after t calls of step(); plateau keeps its own state instead. */
double sched_lr_at(const sched_config *c, int t);

/* Advances to epoch t given the last validation loss (plateau reads it);
 * returns the learning rate for epoch t. */
double sched_advance(scheduler *s, int t, double val_loss);

/* "constant", ...; NULL outside the list. */
const char *sched_name(sched_kind kind);

#endif /* KILN_OPTIM_H */
