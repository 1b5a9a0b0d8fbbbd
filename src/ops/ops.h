/* The operator library: forward and backward of every layer, described
 * once each in the table of ops.c (name, shape rule, forward, backward,
 * parameters, saved tensors and the epilogue it can absorb), so that the
 * graph compiler, `kiln summary` and the tests read one table.
 *
 * Layouts are PyTorch's: activations NCHW or (N, F); linear weight
 * [out, in]; conv weight [out, in, kh, kw]. Backward writes (does not
 * accumulate) every gradient it is given; a NULL gradient is not computed.
 *
 * src/ops/ owns the operators and their table; it may call blas/ (every
 * matrix product) and runtime/, nothing above. */
#ifndef KILN_OPS_H
#define KILN_OPS_H

#include "runtime/runtime.h"
#include "blas/blas.h"

/* Activations, also the epilogues that linear and conv2d can absorb. The
 * numbers are the ACT values the kernels are compiled with. */
typedef enum {
    KILN_ACT_NONE = 0,
    KILN_ACT_RELU = 1,
    KILN_ACT_LEAKY_RELU = 2,
    KILN_ACT_SIGMOID = 3,
    KILN_ACT_TANH = 4,
    KILN_ACT_GELU = 5,      /* x Φ(x), with erf */
    KILN_ACT_GELU_TANH = 6, /* PyTorch's approximate='tanh' */
} kiln_act;

typedef enum {
    OP_LINEAR,
    OP_CONV2D,
    OP_MAXPOOL,
    OP_AVGPOOL,
    OP_FLATTEN,
    OP_BATCHNORM,
    OP_LAYERNORM,
    OP_DROPOUT,
    OP_ACTIVATION,
    OP_SOFTMAX,
    OP_ADD,
    OP_CONCAT,
    OP_COUNT
} op_kind;

/* Every attribute any operator takes; each op reads its own. */
typedef struct {
    size_t out;           /* linear: out features; conv2d: out channels */
    int bias;             /* linear, conv2d: has a bias */
    size_t kernel;        /* conv2d, pools: square kernel size */
    size_t stride;        /* conv2d, pools (pools: 0 means = kernel) */
    size_t pad;
    size_t dilation;      /* conv2d; 0 means 1 */
    kiln_act act;         /* activation, and fused epilogue of linear/conv2d */
    float slope;          /* leaky_relu negative slope */
    int dim;              /* softmax: dimension, negative counts from the end */
    float p;              /* dropout probability */
    uint64_t seed;        /* dropout: Philox key */
    uint64_t counter;     /* dropout: Philox counter, advanced per step */
    float momentum;       /* batchnorm running-statistics momentum */
    float eps;            /* batchnorm, layernorm */
    int norm_dims;        /* layernorm: number of trailing dims normalized */
} op_attrs;

/* Defaults as PyTorch's: slope 0.01, momentum 0.1, eps 1e-5, stride 1,
 * dilation 1, bias on, softmax over the last dim, layernorm over the last. */
op_attrs op_attrs_default(void);

#define OP_MAX_INPUTS 2
#define OP_MAX_PARAMS 2
#define OP_MAX_BUFFERS 2
#define OP_MAX_SAVED 2

/* The shapes an op needs, from its input shapes. */
typedef struct {
    kiln_shape out;
    int n_params, n_buffers, n_saved;
    kiln_shape param[OP_MAX_PARAMS];   /* weight, bias / gamma, beta */
    kiln_shape buffer[OP_MAX_BUFFERS]; /* running mean, running var */
    kiln_shape saved[OP_MAX_SAVED];    /* forward -> backward (argmax, mean, rstd) */
} op_shapes;

/* sync_batchnorm: how a training batchnorm combines its per-channel sums
 * with those of the other processes that train the same network on other
 * parts of the batch. sum adds n doubles across the processes, in place,
 * giving every process the same totals; with weighted, each process's
 * values count by its share of the global batch first (its gradients are
 * those of a mean over its own samples). */
typedef struct {
    kiln_status (*sum)(void *user, double *v, size_t n, int weighted);
    void *user;
} op_sync;

/* The tensors of one call. Forward reads in, param, buffer (writes buffer
 * in training mode) and writes out and saved; backward reads in, out,
 * param, saved and dout, and writes din and dparam where not NULL. sync
 * (NULL: this process's batch alone) is read by a training batchnorm. */
typedef struct {
    kiln_ctx *ctx;
    const op_attrs *attrs;
    int training;
    const op_sync *sync;
    const kiln_tensor *in[OP_MAX_INPUTS];
    kiln_tensor *out;
    kiln_tensor *param[OP_MAX_PARAMS];
    kiln_tensor *buffer[OP_MAX_BUFFERS];
    kiln_tensor *saved[OP_MAX_SAVED];
    const kiln_tensor *dout;
    kiln_tensor *din[OP_MAX_INPUTS];
    kiln_tensor *dparam[OP_MAX_PARAMS];
} op_args;

typedef struct {
    const char *name;   /* as in model files: "linear", "conv2d", ... */
    int n_inputs;       /* 2 for add and concat */
    int fuses_act;      /* can absorb an activation epilogue */
    kiln_status (*infer)(const op_attrs *a, const kiln_shape *in, op_shapes *s);
    kiln_status (*forward)(const op_args *c);
    kiln_status (*backward)(const op_args *c);
} op_desc;

const op_desc *op_get(op_kind kind);

/* Infers shapes, with the attribute defaults filled in (e.g. pool stride). */
kiln_status op_infer(op_kind kind, const op_attrs *a, const kiln_shape *in, op_shapes *s);

/* Checks every tensor of a call against the inferred shapes, then runs. */
kiln_status op_forward(op_kind kind, const op_args *c);
kiln_status op_backward(op_kind kind, const op_args *c);

/* ---- losses: the mean over the batch, as PyTorch's default ------------- */

typedef enum { LOSS_MSE, LOSS_CROSS_ENTROPY, LOSS_BCE, LOSS_COUNT } loss_kind;

/* loss (1 element) = L(input, target) and dinput = dL/dinput (may be NULL).
 * mse, bce: target has input's shape; bce takes logits. cross_entropy:
 * input (N, C) logits, target (N) class indices stored as floats; an index
 * outside [0, C) makes the loss NaN. */
kiln_status op_loss(kiln_ctx *ctx, loss_kind kind, float label_smoothing,
                    const kiln_tensor *input, const kiln_tensor *target, kiln_tensor *loss,
                    kiln_tensor *dinput);

/* cross_entropy with class weights (C values, weight (C)), as PyTorch's
 * CrossEntropyLoss(weight=): the weighted mean sum w[t_i] l_i / sum w[t_i]
 * and its gradient; a batch whose weights sum to 0 gives NaN. */
kiln_status op_loss_weighted(kiln_ctx *ctx, const kiln_tensor *input, const kiln_tensor *target,
                             const kiln_tensor *weight, kiln_tensor *loss, kiln_tensor *dinput);

const char *loss_name(loss_kind kind);

/* sync_batchnorm on a process with no samples in a training step: the
 * batchnorm call c (of a pipeline at any batch size, with c->sync) takes
 * part in the sums of its forward (backward: of its backward) with nothing
 * of its own, as the other processes wait for it, and updates its running
 * statistics as they do. */
kiln_status op_batchnorm_sync_idle(const op_args *c, int backward);

/* ---- reductions --------------------------------------------------------- */

/* out (1 element) = sum over all tensors of the sum of their squares, in a
 * fixed order (the same bits on every run). */
kiln_status op_sum_squares(kiln_ctx *ctx, kiln_tensor *const *tensors, size_t count,
                           kiln_tensor *out);

/* out[0] = scale * the sum over the count buffers xs[i] of ns[i] values
 * each (or of their squares), in a fixed order. */
kiln_status op_sum_all(kiln_ctx *ctx, cl_mem const *xs, const size_t *ns, size_t count,
                       int square, float scale, cl_mem out);

/* out[c] = sum over r, s of x[(r * cols + c) * inner + s], deterministic. */
kiln_status op_channel_sums(kiln_ctx *ctx, cl_mem x, size_t rows, size_t cols, size_t inner,
                            cl_mem out);

/* ---- helpers shared by the op files ------------------------------------- */


/* Fails with KILN_ERR_SHAPE unless t has shape want: "<op>: <what> is 3x4;
 * expected 3x5". */
kiln_status expect_shape(const char *op, const char *what, const kiln_tensor *t,
                         const kiln_shape *want);

/* Kernels index with 32-bit integers (64-bit division is several times
 * slower on CPUs): fails with KILN_ERR_TOO_LARGE naming what when n
 * elements do not fit. */
kiln_status op_check_count(const char *op, const char *what, size_t n);

/* A device tensor of a given shape for temporaries. */
kiln_status tensor_of(kiln_ctx *ctx, const kiln_shape *s, kiln_tensor **out);

/* A work-group size for reductions: a power of two <= 64 the device allows. */
size_t reduce_group_size(const kiln_ctx *ctx);
/* A work-group size for one-item-per-element kernels: large where a
 * work-group runs as a loop (PoCL), whose vectorized body it then feeds. */
size_t pointwise_group_size(const kiln_ctx *ctx);
/* The build options of programs that include group.cl (WG, CHUNKED). */
const char *reduce_options(const kiln_ctx *ctx, char *buf, size_t size);
/* Whether per-channel sums over (N, C, S) run as group.cl's sums over
 * planes: where work-groups run as loops, for planes of 16 values or more. */
int op_sums_by_plane(const kiln_ctx *ctx, size_t s);
/* Whether they run down columns instead, one work-item per channel: where
 * work-groups run as loops and s = 1 (the (N, C) of linear layers). */
int op_sums_by_column(const kiln_ctx *ctx, size_t s);
/* The items of a kernel that sums down columns (group.cl's
 * COLUMNS_OF_ITEM): sixteen columns each. */
size_t op_column_items(size_t columns);
/* How many items a kernel that takes planes with FOR_EACH_PLANE (group.cl)
 * gets: launched in single-item work-groups, a few per compute unit for
 * balance. */
size_t op_plane_items(const kiln_ctx *ctx, size_t planes);

/* y = act(y + b[c]) in place over y viewed as (rows, cols, inner); b may be
 * NULL. The fused epilogue of linear and conv2d. */
kiln_status op_bias_act(kiln_ctx *ctx, kiln_act act, float slope, kiln_tensor *y,
                        const kiln_tensor *b, size_t cols, size_t inner);

/* dx = act'(x) dy over n values, y = act(x) (pointwise.c). */
kiln_status op_act_backward(kiln_ctx *ctx, kiln_act act, float slope, cl_mem x, cl_mem y,
                            cl_mem dy, cl_mem dx, size_t n);

/* For an op with a fused activation: *dz = act'(z) dout computed from the
 * output (a new tensor, to be freed), or NULL when there is no activation. */
kiln_status op_act_grad(const op_args *c, kiln_tensor **dz);

/* Fails unless act can be fused into name's epilogue (its derivative must
 * follow from the output: not gelu). */
kiln_status op_check_fusable(const char *name, kiln_act act);

/* Build options naming an activation: "-DACT=1". */
const char *act_options(kiln_act act, char *buf, size_t size);

#endif /* KILN_OPS_H */
