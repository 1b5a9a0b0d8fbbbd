/* A model lowered onto a device for one batch size: an ordered list of
 * steps (one operator launch group each) with their tensors. lower.c
 * builds it from the graph (fuse.c decides what merges), init.c fills the
 * parameters, exec.c runs forward, loss and backward on one in-order
 * queue without waiting. */
#ifndef KILN_PIPELINE_H
#define KILN_PIPELINE_H

#include "graph.h"

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
    int grad_ready;                   /* grad written during this backward */
} pipe_step;

typedef struct {
    kiln_ctx *ctx;
    const kiln_model *model;
    size_t batch;
    int fused;
    uint64_t seed;
    uint64_t counter;                 /* advanced by each training forward */
    pipe_step *steps;
    size_t count;
    int *value_of;                    /* graph node -> step holding its value */
    kiln_tensor *input;               /* (batch, input shape) */
} pipeline;

/* Lowers a finished model for a batch size; fuse merges activations into
 * the epilogues of the GEMMs before them. Parameters are initialised from
 * seed (init.c). */
kiln_status pipeline_create(kiln_ctx *ctx, const kiln_model *m, size_t batch, int fuse,
                            uint64_t seed, pipeline **out);
void pipeline_free(pipeline *p);

/* Whether activation node `node` can move into the epilogue of the layer
 * before it, given how many layers read each node (fuse.c). */
int fuse_activation_into(const kiln_model *m, size_t node, const int *readers);

/* Fills every parameter and buffer as PyTorch's initialisers would (init.c). */
kiln_status pipeline_init_params(pipeline *p, uint64_t seed);

/* Runs the forward pass on p->input; training selects batch statistics and
 * dropout, and advances the dropout counter first. */
kiln_status pipeline_forward(pipeline *p, int training);

/* The last step's output: the model's prediction. */
kiln_tensor *pipeline_output(pipeline *p);

/* loss (1 element) of the output against target, and the output gradient
 * that pipeline_backward starts from. */
kiln_status pipeline_loss(pipeline *p, loss_kind kind, float label_smoothing,
                          const kiln_tensor *target, kiln_tensor *loss);

/* Backward from the output gradient left by pipeline_loss, through every
 * step, accumulating where a value feeds several steps; writes dparam. */
kiln_status pipeline_backward(pipeline *p, int training);

#endif /* KILN_PIPELINE_H */
