/* The operator library: forward and backward of every layer, described
 * once each in the table of ops.c (name, shape rule, forward, backward,
 * parameters, saved tensors and the epilogue it can absorb), so that the
 * graph compiler, `kiln summary` and the tests read one table.
 *
 * Layouts are PyTorch's: activations NCHW, (N, F) or (B, T, C) for
 * sequences (linear, layernorm, pointwise ops act on the last dim); linear weight
 * [out, in]; conv weight [out, in, kh, kw]. Backward writes (does not
 * accumulate) every gradient it is given; a NULL gradient is not computed.
 *
 * src/ops/ owns the operators and their table; it may call blas/ (every
 * matrix product) and runtime/, nothing above. */
#ifndef KILN_OPS_H
#define KILN_OPS_H

#include "runtime/runtime.h"
#include "blas/blas.h"
#include "runtime/rng.h"

#include <stddef.h>

/* Weight initialisers, as model files name them (init = ...). DEFAULT is
 * decided from the activation the layer feeds (act_info.init). */
#define INIT_LIST(X)                                                                      \
    X(DEFAULT, NULL)                                                                      \
    X(KAIMING_NORMAL, "kaiming_normal")                                                   \
    X(KAIMING_UNIFORM, "kaiming_uniform")                                                 \
    X(XAVIER_NORMAL, "xavier_normal")                                                     \
    X(XAVIER_UNIFORM, "xavier_uniform")                                                   \
    X(ZEROS, "zeros")                                                                     \
    X(PYTORCH, "pytorch") /* nn.Linear's and nn.Conv2d's own: U(±1/sqrt(fan_in)), biases too */ \
    X(NORMAL, "normal")   /* N(0, std²), biases zero: nanoGPT's (std = 0.02) */

typedef enum {
#define INIT_ENUM(id, name) INIT_##id,
    INIT_LIST(INIT_ENUM)
#undef INIT_ENUM
    INIT_COUNT
} init_kind;

/* "kaiming_normal", ...; NULL for INIT_DEFAULT and outside the list. */
const char *init_name(init_kind kind);

/* Activations, also the epilogues that linear, conv2d and batchnorm can
 * absorb. One row each, in the order of their ACT values (the kernels see
 * them as -DACT=<value> with -DACT_<ID>=<value> for every row, and
 * -DACT_FROM_OUTPUT=1 where it holds):
 *   id, name     KILN_ACT_<id>; the name of model files and messages
 *   layer        1: a layer of its own in model files ([relu])
 *   from_output  1: act'(x) follows from y = act(x) alone, so an op can
 *                absorb it into its epilogue and still compute its
 *                gradient; 0: it stays a step of its own
 *   smooth       1: no kinks (device finite differences are meaningful)
 *   init         the initialiser of a linear or conv2d that feeds it
 *   keys         the activation op's keys that it takes (space-separated) */
#define KILN_ACT_LIST(X)                                                                  \
    X(NONE, "none", 0, 1, 1, KAIMING_NORMAL, "")                                          \
    X(RELU, "relu", 1, 1, 0, KAIMING_NORMAL, "")                                          \
    X(LEAKY_RELU, "leaky_relu", 1, 1, 0, KAIMING_NORMAL, "slope")                         \
    X(SIGMOID, "sigmoid", 1, 1, 1, XAVIER_UNIFORM, "")                                    \
    X(TANH, "tanh", 1, 1, 1, XAVIER_UNIFORM, "")                                          \
    X(GELU, "gelu", 1, 0, 1, KAIMING_NORMAL, "approx") /* x Φ(x), with erf */             \
    X(GELU_TANH, "gelu_tanh", 0, 0, 1, KAIMING_NORMAL, "") /* gelu approx = tanh */     \
    X(SILU, "silu", 1, 0, 1, KAIMING_NORMAL, "") /* x σ(x), nn.SiLU */

typedef enum {
#define KILN_ACT_ENUM(id, ...) KILN_ACT_##id,
    KILN_ACT_LIST(KILN_ACT_ENUM)
#undef KILN_ACT_ENUM
    KILN_ACT_COUNT
} kiln_act;

typedef struct {
    const char *name;
    int layer, from_output, smooth;
    init_kind init;
    const char *keys;
} act_info;

/* The row of an activation; NULL outside the list. */
const act_info *act_get(kiln_act act);

/* Whether an activation takes a key of the activation op ("slope"). */
int act_takes_key(kiln_act act, const char *key);

/* The ops, in the order of the table (and of the layers in messages):
 * X(ID, row) is OP_<ID>, whose row is op_<row>_desc in the op's own file. */
#define OP_LIST(X)                                                                        \
    X(LINEAR, linear)                                                                     \
    X(CONV2D, conv2d)                                                                     \
    X(MAXPOOL, maxpool)                                                                   \
    X(AVGPOOL, avgpool)                                                                   \
    X(FLATTEN, flatten)                                                                   \
    X(BATCHNORM, batchnorm)                                                               \
    X(LAYERNORM, layernorm)                                                               \
    X(DROPOUT, dropout)                                                                   \
    X(ACTIVATION, activation)                                                             \
    X(SOFTMAX, softmax)                                                                   \
    X(ADD, add)                                                                           \
    X(CONCAT, concat)                                                                     \
    X(EMBEDDING, embedding)                                                               \
    X(POSITION, position)                                                                 \
    X(ATTENTION, attention)

typedef enum {
#define OP_ENUM(id, row) OP_##id,
    OP_LIST(OP_ENUM)
#undef OP_ENUM
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
    init_kind init;       /* linear, conv2d: the weights' initialiser */
    float std;            /* init = normal: the standard deviation */
    size_t rows;          /* embedding: vocabulary; position: positions in the table */
    size_t heads;         /* attention: heads */
} op_attrs;

/* ---- keys: what a layer of a model file may set ------------------------- */

typedef enum {
    KEY_WHOLE,  /* size_t field, a whole number in [lo, hi] */
    KEY_INT,    /* int field, a whole number (sign allowed) in [lo, hi] */
    KEY_FLOAT,  /* float field in [lo, hi] (open: 1 leaves hi out) */
    KEY_BOOL,   /* int field: true/false, 1/0 */
    KEY_CHOICE, /* int-sized enum field: one of choices (NULL names skipped) */
} op_key_type;

typedef struct {
    const char *name;
    int value;
} op_choice;

/* One key of an op, declared once in the op's row: the keyword PyTorch
 * gives that layer, where it goes in op_attrs, its range and default (the
 * parsing, the checks, the messages and op_attrs_for derive from this). */
typedef struct {
    const char *name;
    op_key_type type;
    size_t field;             /* offsetof(op_attrs, ...) */
    double lo, hi, def;
    int open;                 /* KEY_FLOAT: 1 leaves hi out of the range */
    int required;
    const op_choice *choices; /* KEY_CHOICE */
    int n_choices;
    const char *expected;     /* what a bad value should have been; NULL: derived */
} op_key;

/* Declarations: a whole number with a default, or one the layer needs. */
#define OP_KEY_WHOLE(key, f, lo, hi, d)                                                   \
    {key, KEY_WHOLE, offsetof(op_attrs, f), lo, hi, d, 0, 0, NULL, 0, NULL}
#define OP_KEY_NEEDED(key, f, lo, hi)                                                     \
    {key, KEY_WHOLE, offsetof(op_attrs, f), lo, hi, 0, 0, 1, NULL, 0, NULL}
#define OP_KEY_INT(key, f, lo, hi, d, text)                                               \
    {key, KEY_INT, offsetof(op_attrs, f), lo, hi, d, 0, 0, NULL, 0, text}
#define OP_KEY_FLOAT(key, f, lo, hi, open, d, text)                                       \
    {key, KEY_FLOAT, offsetof(op_attrs, f), lo, hi, d, open, 0, NULL, 0, text}
#define OP_KEY_BOOL(key, f, d) {key, KEY_BOOL, offsetof(op_attrs, f), 0, 1, d, 0, 0, NULL, 0, NULL}
#define OP_KEY_CHOICE(key, f, d, list, n)                                                 \
    {key, KEY_CHOICE, offsetof(op_attrs, f), 0, 0, d, 0, 0, list, n, NULL}

/* Reads value into a's field; NULL when it was good, else what it should
 * have been ("a whole number from 1 to 1024"), in buf. */
const char *op_key_read(const op_key *k, op_attrs *a, const char *value, char *buf,
                        size_t size);

/* Every key's default put in a's field. */
void op_keys_default(const op_key *keys, int n, op_attrs *a);

/* The choices of the initialiser key (init = kaiming_normal, ...). */
extern const op_choice op_init_choices[INIT_COUNT];

/* The attributes of an op with every default of its keys, and of the
 * activation op's keys where act is not KILN_ACT_NONE (an epilogue). */
op_attrs op_attrs_for(op_kind kind, kiln_act act);

/* The defaults of every key of every op, where the ops that share a field
 * agree on it (others keep 0, which the ops read as their own default):
 * slope 0.01, momentum 0.1, eps 1e-5, dilation 1, bias on, p 0.5,
 * softmax over the last dim, layernorm over the last. */
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
    /* Backward: din[k] holds another reader's gradient already, and this
     * op's is added to it (set only for ops whose row says
     * adds_input_grads). */
    int din_add[OP_MAX_INPUTS];
    /* Backward: din[k] is dout's memory (set only where the op's row says
     * grads_in_place for input k): the op leaves that input's gradient
     * there, in place over dout, and writes the other inputs' after. */
    int din_in_place[OP_MAX_INPUTS];
    /* Backward, where the op's row says grads_through_act: din[0] is to
     * hold its gradient times din_times elementwise (NULL: the plain
     * gradient), the derivative of the activation its input's producer
     * absorbed and kept. The producer then gets dout_past_act: its dout is
     * its activation's input's gradient already, and it skips that pass. */
    const kiln_tensor *din_times;
    int dout_past_act;
    /* Decoding (forward only): the input's first row is position `at` of
     * the sequence (position adds that row of its table), and attention
     * keeps the keys and values of every position in cache, (positions,
     * 2 x channels): it writes the new rows' there and reads the earlier
     * ones. cache NULL: a whole window from position 0. */
    size_t at;
    kiln_tensor *cache;
    /* Eval-mode forward of a linear layer: param[0] in kiln's GEMM panels
     * (blas_packed), or NULL where the product packs it itself. */
    const blas_packed *packed;
} op_args;

/* What an initialiser gets: the tensors of one op, the layer's init =
 * (never INIT_DEFAULT here), kaiming's a and the run's generator. A NULL
 * param[0] is a weight another layer owns and initialises (tie =). */
typedef struct {
    init_kind init;
    double slope;
    float std;          /* init = normal */
    kiln_rng *rng;
    const op_shapes *shapes;
    kiln_tensor *param[OP_MAX_PARAMS];
    kiln_tensor *buffer[OP_MAX_BUFFERS];
} op_init;

/* The initialisers (init.c): PyTorch's formulas for a weight and bias,
 * and gamma 1, beta 0 (with running mean 0 and variance 1 where there are
 * buffers) for the normalizations. */
kiln_status op_init_weight_bias(const op_init *c);
kiln_status op_init_affine(const op_init *c);

/* One row of the op table: everything about an op. */
typedef struct {
    const char *name;   /* as in model files: "linear", "conv2d", ... */
    int n_inputs;       /* 2 for add and concat */
    /* absorbs an activation epilogue (one with act_info.from_output) */
    int fuses_act;
    /* absorbs the others too, keeping the activation's derivative at its
     * input (what its gradient needs) as saved tensor 0 */
    int keeps_act_grad;
    /* its input gradient can take the gradient of the activation that its
     * input's producer absorbed (din_times), as kiln's GEMM stores it */
    int grads_through_act;
    /* absorbs an add after it that alone reads its output: the add's other
     * input becomes its second input, added to its output as it is stored
     * (compiler/fuse.c) */
    int fuses_residual;
    /* in eval mode, a batchnorm that only it feeds folds into its weights */
    int folds_batchnorm;
    /* the default initialiser of a layer before it looks past it to the
     * activation after (normalization, dropout) */
    int see_through;
    /* eval mode passes its input on unchanged (dropout): the pipeline then
     * skips it, and its readers read its input */
    int identity_in_eval;
    /* its weight (param[0]) may be another layer's, as lm_head's is wte's
     * (tie = in model files): the gradients add */
    int tieable;
    /* its backward adds its input gradient into din where din_add says so,
     * each value rounded as an add op would (the pipeline then needs no
     * partial gradient and no add pass for a value read twice) */
    int adds_input_grads;
    /* the inputs (bit k for input k) whose gradient its backward can leave
     * in dout's own memory, where din_in_place says so (an add passes dout
     * on, a position embedding too: the planner then gives that input's
     * gradient dout's memory, plan.c) */
    unsigned grads_in_place;
    /* whether some of its inputs get no gradient with these attrs (a
     * stride past its taps): its backward then costs least adding into a
     * gradient another reader wrote first, so backward runs it after its
     * input's other readers (compiler/lower.c); NULL: never */
    int (*sparse_input_grads)(const op_attrs *a);
    /* in eval mode, whether its forward would pack its weight (param[0])
     * into the GEMM's panels at every call: the pipeline then packs it once
     * per version of the parameters and passes it as c->packed
     * (compiler/exec.c); NULL: never */
    int (*packs_weight)(const op_args *c);
    /* the input ranks (batch included) it takes, bit n for rank n (0: any),
     * and what a model file should do otherwise */
    unsigned in_ranks;
    const char *in_hint;
    const op_key *keys; /* the keys of its layer, besides name and from */
    int n_keys;
    /* state_dict names of its parameters and buffers, and of a one-value
     * int64 entry (batchnorm's num_batches_tracked) or NULL */
    const char *param_names[OP_MAX_PARAMS];
    const char *buffer_names[OP_MAX_BUFFERS];
    const char *counter;
    /* fills its parameters and buffers; NULL for ops that have none */
    kiln_status (*init)(const op_init *c);
    kiln_status (*infer)(const op_attrs *a, const kiln_shape *in, op_shapes *s);
    kiln_status (*forward)(const op_args *c);
    kiln_status (*backward)(const op_args *c);
} op_desc;

const op_desc *op_get(op_kind kind);

/* The op of a model file's section name; OP_COUNT when there is none. */
op_kind op_find(const char *name);

/* Infers shapes, with the attribute defaults filled in (e.g. pool stride). */
kiln_status op_infer(op_kind kind, const op_attrs *a, const kiln_shape *in, op_shapes *s);

/* Checks every tensor of a call against the inferred shapes, then runs. */
kiln_status op_forward(op_kind kind, const op_args *c);
kiln_status op_backward(op_kind kind, const op_args *c);

/* ---- losses: the mean over the batch, as PyTorch's default ------------- */

/* X(ID, name, kernel): LOSS_<ID>, its name in [train] loss =, and the
 * kernel of loss.cl that computes its terms. */
#define LOSS_LIST(X)                                                                      \
    X(MSE, "mse", mse_terms)                                                              \
    X(CROSS_ENTROPY, "cross_entropy", ce_rows)                                            \
    X(BCE, "bce", bce_terms)

typedef enum {
#define LOSS_ENUM(id, name, kernel) LOSS_##id,
    LOSS_LIST(LOSS_ENUM)
#undef LOSS_ENUM
    LOSS_COUNT
} loss_kind;

/* loss (1 element) = L(input, target) and dinput = dL/dinput (may be NULL).
 * mse, bce: target has input's shape; bce takes logits. cross_entropy:
 * input (N, C) logits, target (N) class indices stored as floats; an index
 * outside [0, C) makes the loss NaN. Per token: input (B, T, V), target
 * (B, T), the mean over B T positions (PyTorch's on the (B T, V) view). */
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

/* Attention's kernels take `rows` rows per work-item (CPUs: one a vector
 * lane, rounded down to 1, 2, 4, 8 or 16) or per work-group's local tile
 * (GPUs) in every context (0: the context's choice), before
 * $KILN_ATTN_ROWS and the tuning record; returns the override it
 * replaces. For tests and benchmarks: every choice gives the same bits. */
size_t attention_set_rows(size_t rows);
/* The rows attention runs with on ctx (attention.c). */
size_t attention_rows(const kiln_ctx *ctx);

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

/* The kernel `name` of norm.cl's program without an activation epilogue (as
 * the batchnorm fold in compiler/exec.c asks for it). */
kiln_status op_norm_kernel(kiln_ctx *ctx, const char *name, cl_kernel *k);

/* y += x, in place, as the add op (each value y + x): a second gradient
 * added into the first, or a tied weight's. */
kiln_status op_add_into(kiln_ctx *ctx, kiln_tensor *y, const kiln_tensor *x);

/* y = act(y + b[c]) in place over y viewed as (rows, cols, inner); b may be
 * NULL. The fused epilogue of linear and conv2d. */
kiln_status op_bias_act(kiln_ctx *ctx, kiln_act act, float slope, kiln_tensor *y,
                        const kiln_tensor *b, size_t cols, size_t inner);

/* y = act(x) over n values (pointwise.c), and where d is given (not NULL)
 * d = act'(x) too (y may be x); y = a b elementwise. */
kiln_status op_act_forward(kiln_ctx *ctx, kiln_act act, float slope, cl_mem x, cl_mem y,
                           cl_mem d, size_t n);
kiln_status op_times(kiln_ctx *ctx, cl_mem a, cl_mem b, cl_mem y, size_t n);
/* dx = act'(x) dy over n values, y = act(x) (pointwise.c). */
kiln_status op_act_backward(kiln_ctx *ctx, kiln_act act, float slope, cl_mem x, cl_mem y,
                            cl_mem dy, cl_mem dx, size_t n);

/* For an op with a fused activation: *dz = act'(z) dout computed from the
 * output (a new tensor, to be freed), or NULL when there is no activation. */
kiln_status op_act_grad(const op_args *c, kiln_tensor **dz);

/* A linear layer of a one-sample forward, as linear_chain runs it: its
 * weights (out, in) and bias (or NULL), its activation. */
typedef struct {
    cl_mem w, b;
    size_t in, out;
    kiln_act act;
    float slope;
} op_chain_layer;

/* Layers linear_chain runs in one launch, and the most outputs one of
 * them may have (act.cl's linear_chain: four, CHAIN_WIDTH). */
#define OP_CHAIN_LAYERS 4
#define OP_CHAIN_WIDTH 1024

/* Whether a linear layer of one sample may run in linear_chain with the
 * layers beside it: on kiln's GEMM on a CPU, where one core computes it
 * in less time than a launch of its own costs (in x out products). */
int op_linear_chains(kiln_ctx *ctx, size_t in, size_t out);

/* x (one sample) through `count` layers (1 to OP_CHAIN_LAYERS) into y, in
 * one launch of one work-group, each layer's outputs kept in local memory
 * for the next: the sums of linear_one, so the same bits. */
kiln_status op_linear_chain(kiln_ctx *ctx, cl_mem x, const op_chain_layer *layers, int count,
                            cl_mem y);

/* Fails unless op kind absorbs activation epilogues and act is one whose
 * derivative follows from its output (act_info.from_output). */
kiln_status op_check_fusable(op_kind kind, kiln_act act);

/* act.cl's program: the math it calls (math.cl) joined before it. */
#define ACT_SOURCES "math.cl+act.cl"

/* Build options naming an activation: "-DACT=1 -DACT_NONE=0 -DACT_RELU=1
 * ... -DACT_FROM_OUTPUT=1", from KILN_ACT_LIST; "" for a value outside kiln_act. */
#define ACT_OPTIONS_MAX 512
const char *act_options(kiln_act act);

#endif /* KILN_OPS_H */
