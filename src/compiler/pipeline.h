/* A model lowered onto a device for one batch size: an ordered list of
 * steps (one operator launch group each) with their tensors. lower.c
 * builds it from the graph (fuse.c decides what merges, plan.c places the
 * tensors), init.c fills the parameters, exec.c runs forward, loss and
 * backward on one in-order queue without waiting; summary.c describes it
 * for `kiln summary`.
 *
 * src/compiler/ owns the passes from a finished graph to running steps. It
 * may call graph/, ops/, blas/ and runtime/, nothing above. Within it,
 * calls go one way: exec.c -> lower.c -> fuse.c, plan.c, init.c. */
#ifndef KILN_PIPELINE_H
#define KILN_PIPELINE_H

#include "graph/graph.h"

typedef struct {
    size_t node;                      /* graph node the step computes */
    op_kind op;
    op_attrs attrs;                   /* node attrs, plus a fused activation */
    int inputs[OP_MAX_INPUTS];        /* step indices; -1: the pipeline input */
    int n_inputs;
    op_shapes shapes;                 /* with the batch dimension */
    kiln_tensor *out, *grad;          /* value and dL/dvalue */
    kiln_tensor *param[OP_MAX_PARAMS], *dparam[OP_MAX_PARAMS];
    kiln_tensor *buffer[OP_MAX_BUFFERS], *saved[OP_MAX_SAVED];
    kiln_tensor *partial;             /* a second contribution to grad, then added */
    int uses;                         /* how many step inputs read this value */
    int fused_node;                   /* graph node of a fused activation or add, or -1 */
    int bn_step;                      /* eval: the batchnorm step folded into this one */
    int folded_into;                  /* eval: this batchnorm runs inside that step */
    kiln_tensor *folded[OP_MAX_PARAMS]; /* eval: weight and bias with the batchnorm in */
    uint64_t folded_at;               /* the *param_version folded[] was computed at */
    blas_packed packed;               /* eval: a linear's weight (folded or not) in the
                                         GEMM's panels, at a *param_version */
    int grad_ready;                   /* grad written during this backward */
    int act_grad_by;                  /* the step whose backward applies this step's
                                         activation's gradient (its one reader,
                                         grads_through_act), or -1 */
    int grad_with;                    /* planned: the step whose grad memory this
                                         step's grad shares (its reader, an op
                                         with grads_in_place), or -1 */
    int tied_to;                      /* step whose weight param[0] is (tie =), or -1 */
    int tie_from;                     /* the step tied to this one's weight, or -1: its
                                         weight gradient is added to this one's */
    size_t flat_at[OP_MAX_PARAMS];    /* where each parameter sits in the flat buffers */
    kiln_tensor *cache;               /* decoding: attention's keys and values by position */
} pipe_step;

/* How a pipeline is built. */
typedef struct {
    int fuse;      /* merge activations into the GEMM epilogues before them */
    int plan;      /* place values, gradients and saved tensors in one arena */
    int poison;    /* debug: fill each arena block with NaN when it dies */
    int check;     /* debug: stop at the first NaN/Inf value or gradient */
} pipe_options;

/* Arena offsets are multiples of this: at least any device's
 * CL_DEVICE_MEM_BASE_ADDR_ALIGN, as sub-buffers require. */
#define KILN_ARENA_ALIGN 4096

/* Where one arena block lives on the step timeline: forward of step s is
 * at s, the loss at count, backward of step s at back_at[s] (count + 1 +
 * its place in back_order; 2 * count - s where backward is the reverse of
 * the steps). */
typedef struct {
    kiln_tensor **tensor; /* the tensor placed there */
    kiln_shape shape;
    size_t bytes;
    int start, end;
    size_t offset;
    int same_as; /* the block whose memory this one shares (it outlives this
                    one), or -1 */
} plan_block;

/* Told by pipeline_backward after each step's launches are enqueued,
 * with the lowest step whose backward and every later step's are
 * enqueued, so that gradients can leave the device while the rest of
 * backward runs. */
typedef struct {
    kiln_status (*enqueued)(void *user, size_t done_from);
    void *user;
} pipe_backward_hook;

typedef struct pipeline {
    kiln_ctx *ctx;
    const kiln_model *model;
    size_t batch;
    pipe_options options;
    uint64_t seed;
    uint64_t counter;                 /* advanced by each training forward */
    pipe_step *steps;
    size_t count;
    int *value_of;                    /* graph node -> step holding its value */
    kiln_shape input_shape;           /* (batch, input shape) */
    kiln_tensor *input;
    int loss_step;                    /* the step whose gradient the loss wrote */
    /* The steps in the order backward runs them: the reverse of the steps,
     * except that a step with sparse input gradients runs after its
     * input's other readers (order_backward in lower.c); back_at: each
     * step's backward on the plan's timeline. */
    int *back_order, *back_at;
    plan_block *blocks;               /* with options.plan */
    size_t n_blocks;
    size_t arena_bytes;               /* with options.plan: the arena's size */
    cl_mem arena;
    /* Every parameter and its gradient are views into two flat buffers of
     * flat_count floats (zero between tensors), so that the optimizer and
     * gradient clipping are one launch each over all of them. */
    kiln_tensor *params, *grads;
    const struct pipeline *owner;   /* pipeline_create_shared: whose parameters these are */
    /* Moves at every write of the parameters or buffers (the owner's
     * counter, shared): eval mode folds a batchnorm into the layer before
     * it once per version, not once per forward. */
    uint64_t *param_version, own_version;
    const op_sync *sync;            /* sync_batchnorm across processes, or NULL */
    const kiln_tensor *class_weight; /* cross_entropy's class weights, or NULL */
    const pipe_backward_hook *on_backward; /* or NULL */
    int decode;                     /* pipeline_create_decode: one new token a forward */
    size_t at;                      /* decoding: the position of the input token */
} pipeline;

/* Lowers a finished model for a batch size and allocates it on ctx;
 * parameters are initialised from seed (init.c). */
kiln_status pipeline_create(kiln_ctx *ctx, const kiln_model *m, size_t batch,
                            pipe_options options, uint64_t seed, pipeline **out);

/* The steps and shapes alone, with no device (for kiln summary). */
kiln_status pipeline_lower(const kiln_model *m, size_t batch, pipe_options options,
                           pipeline **out);
void pipeline_free(pipeline *p);

/* The same model at another batch size, sharing owner's parameters,
 * gradients and buffers (running statistics): a step on either trains the
 * same weights, and owner's optimizer updates them. owner must outlive it;
 * nothing is initialised. */
kiln_status pipeline_create_shared(const pipeline *owner, size_t batch, pipeline **out);

/* Called after anything writes p's parameters or buffers (an optimizer
 * step, a training forward's running statistics, weights loaded or set). */
static inline void pipeline_params_changed(pipeline *p)
{
    if (p->param_version)
        ++*p->param_version;
}

/* A token model decoding one token a forward (batch 1, one position),
 * sharing owner's parameters: each attention layer keeps the keys and
 * values of the positions before p->at in a cache of its own (block x 2
 * channels), adds the input token's at p->at, and attends to them; the
 * position layer adds row p->at of its table. Forward from p->at = 0 up,
 * one token at a time, gives the logits a whole window would give at those
 * positions, for one position's work each. Inference only. */
kiln_status pipeline_create_decode(const pipeline *owner, pipeline **out);

/* Whether the model ends in a softmax over the classes of a (batch,
 * classes) output, or the vocabulary of a (batch, time, vocabulary) one:
 * its prediction head. Here, not in lower.c, so that
 * plan.c (which lower.c calls) reads it without calling back. */
static inline int pipeline_softmax_head(const pipeline *p)
{
    const pipe_step *last = &p->steps[p->count - 1];
    int ndim = last->shapes.out.ndim;
    int dim = last->attrs.dim < 0 ? ndim + last->attrs.dim : last->attrs.dim;
    return last->op == OP_SOFTMAX && (ndim == 2 || ndim == 3) && dim == ndim - 1;
}

/* Whether the model ends in a sigmoid (not fused into the layer before
 * it), its prediction head for bce: the loss then takes the logits before
 * it, as BCEWithLogitsLoss does, which is Sigmoid + BCELoss made stable. */
static inline int pipeline_sigmoid_head(const pipeline *p)
{
    const pipe_step *last = &p->steps[p->count - 1];
    return last->op == OP_ACTIVATION && last->attrs.act == KILN_ACT_SIGMOID &&
           last->fused_node < 0 && last->inputs[0] >= 0;
}

/* The step whose output a loss of this kind reads: the logits before a
 * softmax head for cross_entropy, before a sigmoid head for bce, else the
 * last step. -1 is the pipeline's input. */
static inline int pipeline_loss_step(const pipeline *p, loss_kind kind)
{
    int last = (int)p->count - 1;
    if ((kind == LOSS_CROSS_ENTROPY && pipeline_softmax_head(p)) ||
        (kind == LOSS_BCE && pipeline_sigmoid_head(p)))
        return p->steps[last].inputs[0];
    return last;
}

/* "3 linear+relu": the step's first layer index and the kinds it merges. */
const char *pipeline_step_name(const pipeline *p, const pipe_step *s);

/* ---- memory planning (plan.c) ---- */

/* The blocks of every value, gradient, partial and saved tensor, with
 * their lifetimes; placed so that blocks alive at once never overlap.
 * Returns the arena size; align is the offset alignment in bytes. */
kiln_status plan_pipeline(pipeline *p, size_t align);

/* Bytes of values, gradients and saved tensors: planned (the arena) and
 * unplanned (each its own buffer); parameters and their gradients apart. */
void plan_memory(const pipeline *p, size_t *planned, size_t *unplanned, size_t *params);

/* With options.poison: fills with NaN the blocks whose life ends at t. */
kiln_status plan_poison(pipeline *p, int t);

/* Whether activation node `node` can move into the epilogue of the layer
 * before it, given how many layers read each node (fuse.c). */
int fuse_activation_into(const kiln_model *m, size_t node, const int *readers);

/* Whether add node `node` can move into the epilogue of the linear step
 * computing its input *from, the other input becoming that step's second
 * (fuse.c). */
int fuse_residual_into(const pipeline *p, size_t node, const int *readers, int *from);

/* Sets act_grad_by where a step's one reader applies the gradient of the
 * activation the step absorbed (fuse.c). */
void fuse_act_grads(pipeline *p);

/* Whether batchnorm node `node` can fold into the linear or conv2d before
 * it in eval mode (fuse.c). */
int fold_batchnorm_into(const kiln_model *m, size_t node, const int *readers);

/* Eval mode: computes the folded weight and bias of step s (exec.c). */
kiln_status pipeline_fold(pipeline *p, pipe_step *s);

/* Fills every parameter and buffer as PyTorch's initialisers would (init.c). */
kiln_status pipeline_init_params(pipeline *p, uint64_t seed);

/* Runs the forward pass on p->input; training selects batch statistics and
 * dropout, and advances the dropout counter first. */
kiln_status pipeline_forward(pipeline *p, int training);

/* About the multiply-adds of a forward: each step with a weight computes
 * every output from one row of it (a linear layer's or a convolution's). */
double pipeline_forward_macs(const pipeline *p);

/* The last step's output: the model's prediction. With a planned arena it
 * is valid until the next backward pass reuses its memory. */
kiln_tensor *pipeline_output(pipeline *p);

/* loss (1 element) of the output against target, and the output gradient
 * that pipeline_backward starts from. A model that ends in a softmax over
 * its classes is trained with cross-entropy on the logits before it (the
 * softmax is its prediction head): cross_entropy takes logits, as
 * PyTorch's does, and applying it to probabilities would be a mistake. */
kiln_status pipeline_loss(pipeline *p, loss_kind kind, float label_smoothing,
                          const kiln_tensor *target, kiln_tensor *loss);

/* Backward from the output gradient left by pipeline_loss, through every
 * step, accumulating where a value feeds several steps; writes dparam. */
kiln_status pipeline_backward(pipeline *p, int training);

/* With p->sync, on a process that has no samples in a training step: the
 * sums its batchnorm layers would take part in during forward and
 * backward (with a loss of this kind), made with nothing of its own, in
 * the order the other processes make them; the running statistics are
 * updated as theirs are. */
kiln_status pipeline_sync_idle(pipeline *p, loss_kind kind);

#endif /* KILN_PIPELINE_H */
