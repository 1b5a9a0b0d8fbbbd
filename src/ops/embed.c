/* Token embedding (PyTorch's nn.Embedding) and learned position embedding
 * (nanoGPT's wpe, added to its input).
 *   embedding: ids (B, T) token ids stored as floats, W (V, C) -> (B, T, C)
 *   position:  x (B, T, C), P (P_rows, C), T <= P_rows -> x + P[t]
 * Backward sums in a fixed order (cl/embed.cl): no atomics. */
#include <stdio.h>

#include "ops/ops.h"

static kiln_status embed_infer(const op_attrs *a, const kiln_shape *in, op_shapes *s)
{
    char buf[64];
    if (in[0].ndim < 1 || in[0].ndim >= KILN_MAX_DIMS)
        return error_set(KILN_ERR_SHAPE, "embedding: input is %s; expected (batch, time) "
                                         "token ids", shape_str(&in[0], buf, sizeof buf));
    if (a->rows == 0 || a->out == 0)
        return error_set(KILN_ERR_SHAPE, "embedding: the vocabulary (tokens) and the width "
                                         "(out) must be at least 1");
    s->out = in[0];
    s->out.d[s->out.ndim++] = a->out;
    s->n_params = 1;
    s->param[0] = shape_make(2, a->rows, a->out, 0, 0);
    return KILN_OK;
}

/* Channels an item of embed_backward (EMBED_RUN in cl/embed.cl): 16
 * where items are many and cheap (GPUs), up to 512 where work-groups run
 * as loops (CPUs). The sums are the same either way. */
static size_t embed_run(const op_args *c)
{
    size_t C = c->attrs->out;
    return device_loops_work_groups(&c->ctx->info) ? (C < 512 ? C : 512) : 16;
}

/* A kernel of the token embedding (embed.cl with its EMBED_RUN). */
static kiln_status embed_kernel(const op_args *c, const char *name, cl_kernel *k)
{
    char opts[32];
    snprintf(opts, sizeof opts, "-DEMBED_RUN=%zu", embed_run(c));
    return kernel_get(c->ctx, "embed.cl", opts, name, k);
}

static kiln_status embed_forward(const op_args *c)
{
    cl_kernel k;
    kiln_status st = embed_kernel(c, "embed_forward", &k);
    cl_uint V = c->attrs->rows, C = c->attrs->out;
    if (st != KILN_OK)
        return st;
    return launch_3d(c->ctx, k, "embed_forward", C, c->in[0]->numel, 1,
                     KARG(c->in[0]->buf), KARG(c->param[0]->buf), KARG(c->out->buf),
                     KARG(V), KARG(C));
}

static kiln_status embed_backward(const op_args *c)
{
    kiln_status st = c->din[0] ? kiln_tensor_fill(c->din[0], 0.0f) : KILN_OK; /* ids: none */
    if (st != KILN_OK || !c->dparam[0])
        return st;
    cl_uint N = c->in[0]->numel, V = c->attrs->rows, C = c->attrs->out;
    size_t run = embed_run(c);
    cl_kernel k;
    st = embed_kernel(c, "embed_backward", &k);
    if (st != KILN_OK)
        return st;
    size_t runs = (C + run - 1) / run;
    if (device_loops_work_groups(&c->ctx->info)) /* an item a group: rows over every core */
        return launch_tiles(c->ctx, k, "embed_backward", runs, V, KARG(c->in[0]->buf),
                            KARG(c->dout->buf), KARG(c->dparam[0]->buf), KARG(N), KARG(V),
                            KARG(C));
    return launch_3d(c->ctx, k, "embed_backward", runs, V, 1, KARG(c->in[0]->buf),
                     KARG(c->dout->buf), KARG(c->dparam[0]->buf), KARG(N), KARG(V),
                     KARG(C));
}

static kiln_status pos_infer(const op_attrs *a, const kiln_shape *in, op_shapes *s)
{
    char buf[64];
    if (in[0].ndim != 3)
        return error_set(KILN_ERR_SHAPE, "position: input is %s; expected (batch, time, "
                                         "channels)", shape_str(&in[0], buf, sizeof buf));
    if (in[0].d[1] > a->rows)
        return error_set(KILN_ERR_SHAPE, "position: a block of %zu tokens is longer than the "
                                         "position table (%zu positions)",
                         in[0].d[1], a->rows);
    s->out = in[0];
    s->n_params = 1;
    s->param[0] = shape_make(2, a->rows, in[0].d[2], 0, 0);
    return KILN_OK;
}

static kiln_status pos_forward(const op_args *c)
{
    cl_kernel k;
    kiln_status st = kernel_get(c->ctx, "embed.cl", "", "pos_forward", &k);
    const kiln_tensor *x = c->in[0];
    cl_uint T = x->shape[1], C = x->shape[2], first = (cl_uint)c->at;
    if (st == KILN_OK && c->at + T > c->attrs->rows)
        st = error_set(KILN_ERR_INVALID_ARGUMENT, "position: positions %zu to %zu are past the "
                                                  "table's %zu", c->at, c->at + T - 1,
                       c->attrs->rows);
    if (st != KILN_OK)
        return st;
    return launch_3d(c->ctx, k, "pos_forward", C, T, x->shape[0], KARG(x->buf),
                     KARG(c->param[0]->buf), KARG(c->out->buf), KARG(T), KARG(C),
                     KARG(first));
}

static kiln_status pos_backward(const op_args *c)
{
    kiln_status st = c->din[0] && !c->din_in_place[0] ? kiln_tensor_copy(c->din[0], c->dout)
                                                      : KILN_OK;
    if (st != KILN_OK || !c->dparam[0])
        return st;
    cl_kernel k;
    st = kernel_get(c->ctx, "embed.cl", "", "pos_backward", &k);
    const kiln_tensor *x = c->in[0];
    cl_uint B = x->shape[0], T = x->shape[1], C = x->shape[2];
    if (st != KILN_OK)
        return st;
    return launch_3d(c->ctx, k, "pos_backward", C, c->attrs->rows, 1,
                     KARG(c->dout->buf), KARG(c->dparam[0]->buf), KARG(B), KARG(T),
                     KARG(C));
}

/* Weights N(0, 0.02²) as nanoGPT's (nn.Embedding's own default is N(0, 1)). */
static kiln_status embed_init(const op_init *c)
{
    op_init w = *c;
    w.param[1] = NULL;
    return op_init_weight_bias(&w);
}

/* nn.Embedding(tokens, out); tokens defaults to [input] tokens = */
static const op_key embed_keys[] = {
    OP_KEY_NEEDED("out", out, 1, 1000000),
    OP_KEY_WHOLE("tokens", rows, 1, 16777216, 0),
    OP_KEY_CHOICE("init", init, INIT_NORMAL, op_init_choices, INIT_COUNT),
    OP_KEY_FLOAT("std", std, 0, 1e6, 0, 0.02, "a number >= 0 (with init = normal)"),
};

/* nanoGPT's wpe: positions defaults to [input] block = */
static const op_key pos_keys[] = {
    OP_KEY_WHOLE("positions", rows, 1, 1000000, 0),
    OP_KEY_CHOICE("init", init, INIT_NORMAL, op_init_choices, INIT_COUNT),
    OP_KEY_FLOAT("std", std, 0, 1e6, 0, 0.02, "a number >= 0 (with init = normal)"),
};

const op_desc op_embedding_desc = {
    .name = "embedding",
    .n_inputs = 1,
    .in_ranks = 1u << 2,
    .in_hint = "expected (batch, time) token ids: [input] tokens = and block =",
    .keys = embed_keys,
    .n_keys = sizeof embed_keys / sizeof embed_keys[0],
    .param_names = {"weight"},
    .init = embed_init,
    .infer = embed_infer,
    .forward = embed_forward,
    .backward = embed_backward,
};

const op_desc op_position_desc = {
    .name = "position",
    .n_inputs = 1,
    .in_ranks = 1u << 3,
    .in_hint = "expected (time, channels), as an embedding gives",
    .keys = pos_keys,
    .n_keys = sizeof pos_keys / sizeof pos_keys[0],
    .param_names = {"weight"},
    .init = embed_init,
    .infer = pos_infer,
    .forward = pos_forward,
    .backward = pos_backward,
    .grads_in_place = 1u,
};
