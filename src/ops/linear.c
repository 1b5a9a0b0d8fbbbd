/* linear: y = act(x Wᵀ + b); x (N, in), W (out, in), b (out), y (N, out).
 * On a sequence x (B, T, in) it acts on the last dimension, as PyTorch's:
 * y (B, T, out), computed as N = B T rows. The GEMMs go through
 * blas_sgemm; bias and activation are one fused pass. With a second input
 * r (the residual of an add after it, fused in: fuses_residual), y = x Wᵀ
 * + b + r, and r's gradient is y's. */
#include "ops/ops.h"

static kiln_status linear_infer(const op_attrs *a, const kiln_shape *in, op_shapes *s)
{
    char buf[64];
    if (in[0].ndim != 2 && in[0].ndim != 3)
        return error_set(KILN_ERR_SHAPE, "linear: input is %s; expected (batch, features) or "
                                         "(batch, time, features) — add a flatten before it",
                         shape_str(&in[0], buf, sizeof buf));
    size_t features = in[0].d[in[0].ndim - 1];
    if (a->out == 0)
        return error_set(KILN_ERR_SHAPE, "linear: out must be at least 1");
    s->out = in[0];
    s->out.d[in[0].ndim - 1] = a->out;
    s->n_params = a->bias ? 2 : 1;
    s->param[0] = shape_make(2, a->out, features, 0, 0);
    s->param[1] = shape_make(1, a->out, 0, 0, 0);
    if (a->act != KILN_ACT_NONE && !act_get(a->act)->from_output) {
        s->n_saved = 1; /* the activation's derivative, for its gradient */
        s->saved[0] = s->out;
    }
    return KILN_OK;
}

/* y = act(y + b[c]) over y viewed as (rows, cols, inner), in place. */
kiln_status op_bias_act(kiln_ctx *ctx, kiln_act act, float slope, kiln_tensor *y,
                        const kiln_tensor *b, size_t cols, size_t inner)
{
    if (!b && act == KILN_ACT_NONE)
        return KILN_OK;
    cl_kernel k;
    const char *name = inner == 1 ? "bias_act_rows" : "bias_act";
    kiln_status st = kernel_get(ctx, ACT_SOURCES, act_options(act), name, &k);
    if (st != KILN_OK)
        return st;
    cl_int has_bias = b != NULL;
    cl_mem bias = b ? b->buf : y->buf;
    size_t rows = y->numel / (cols * inner);
    return inner == 1 ? launch_3d(ctx, k, name, cols, rows, 1, KARG(y->buf), KARG(bias),
                                  KARG(has_bias), KARG(slope))
                      : launch_3d(ctx, k, name, inner, cols, rows, KARG(y->buf),
                                  KARG(bias), KARG(has_bias), KARG(slope));
}

/* Rows and features of x viewed as (N, in). */
static size_t linear_rows(const op_args *c, size_t *in)
{
    *in = c->param[0]->shape[1];
    return c->in[0]->numel / *in;
}

/* One sample on kiln's GEMM (CPUs): product, bias and activation in one
 * launch (act.cl's linear_one), where the launches, not the arithmetic,
 * are a forward's cost. */
static kiln_status linear_one(const op_args *c, size_t in, size_t out)
{
    cl_kernel k;
    kiln_status st = kernel_get(c->ctx, ACT_SOURCES, act_options(c->attrs->act),
                                "linear_one", &k);
    if (st != KILN_OK)
        return st;
    cl_int has_bias = c->attrs->bias;
    cl_mem bias = has_bias ? c->param[1]->buf : c->param[0]->buf;
    cl_uint n = (cl_uint)out, kk = (cl_uint)in;
    float slope = c->attrs->slope;
    return launch_1d(c->ctx, k, "linear_one", out, out < 64 ? out : 64, KARG(c->in[0]->buf),
                     KARG(c->param[0]->buf), KARG(bias), KARG(has_bias), KARG(c->out->buf),
                     KARG(n), KARG(kk), KARG(slope));
}

/* The products a layer in linear_chain may have: one core's share of a
 * launch. At AVX2 on an Emerald Rapids Xeon, one core takes about 5 us for
 * 64K products in linear_one's order (a chain of sixteen-lane FMAs per
 * row), what a launch of its own costs in PoCL (two threads: 4-5 us). */
#define CHAIN_MAX_PRODUCTS 65536

int op_linear_chains(kiln_ctx *ctx, size_t in, size_t out)
{
    return kiln_ctx_gemm(ctx) == KILN_GEMM_KILN && device_loops_work_groups(&ctx->info) &&
           in <= OP_CHAIN_WIDTH && out <= OP_CHAIN_WIDTH && in * out <= CHAIN_MAX_PRODUCTS;
}

/* Items of linear_chain's one work-group: a vector of rows for PoCL's
 * loop over them. */
#define CHAIN_ITEMS 64

kiln_status op_linear_chain(kiln_ctx *ctx, cl_mem x, const op_chain_layer *layers, int count,
                            cl_mem y)
{
    if (count < 1 || count > OP_CHAIN_LAYERS)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "linear_chain: %d layers; it takes 1 to %d",
                         count, OP_CHAIN_LAYERS);
    for (int l = 1; l < count; l++)
        if (layers[l].in != layers[l - 1].out || layers[l].in > OP_CHAIN_WIDTH)
            return error_set(KILN_ERR_SHAPE, "linear_chain: layer %d takes %zu inputs after %zu "
                                             "outputs (at most %d)",
                             l, layers[l].in, layers[l - 1].out, OP_CHAIN_WIDTH);
    cl_kernel k;
    kiln_status st = kernel_get(ctx, ACT_SOURCES, act_options(KILN_ACT_NONE), "linear_chain",
                                &k);
    if (st != KILN_OK)
        return st;
    cl_mem w[OP_CHAIN_LAYERS], b[OP_CHAIN_LAYERS];
    cl_uint4 d[OP_CHAIN_LAYERS];
    float slope[OP_CHAIN_LAYERS];
    for (int l = 0; l < OP_CHAIN_LAYERS; l++) {
        const op_chain_layer *a = &layers[l < count ? l : 0];
        w[l] = a->w;
        b[l] = a->b ? a->b : a->w;
        d[l] = (cl_uint4){{(cl_uint)a->out, (cl_uint)a->in, (cl_uint)a->act, a->b != NULL}};
        slope[l] = a->slope;
    }
    cl_uint n = (cl_uint)count;
    return launch_1d(ctx, k, "linear_chain", CHAIN_ITEMS, CHAIN_ITEMS, KARG(x), KARG(y),
                     KARG(n), KARG(w[0]), KARG(b[0]), KARG(d[0]), KARG(slope[0]), KARG(w[1]),
                     KARG(b[1]), KARG(d[1]), KARG(slope[1]), KARG(w[2]), KARG(b[2]),
                     KARG(d[2]), KARG(slope[2]), KARG(w[3]), KARG(b[3]), KARG(d[3]),
                     KARG(slope[3]));
}

/* y = x W^T, then the epilogue epi (NULL: none): W from its panels where
 * the forward has them (eval). */
static kiln_status product(const op_args *c, size_t n, size_t in, size_t out, cl_mem y,
                           const gemm_epilogue *epi)
{
    if (c->packed)
        return blas_sgemm_packed(c->ctx, n, out, in, c->in[0]->buf, in, c->param[0]->buf,
                                 c->packed, y, out, epi);
    return blas_sgemm_epilogue(c->ctx, KILN_NO_TRANS, KILN_TRANS, n, out, in, 1.0f,
                               c->in[0]->buf, 0, in, c->param[0]->buf, 0, in, 0.0f, y, 0, out,
                               epi);
}

/* The residual input fused in (NULL: none), checked against the output. */
static kiln_status residual_of(const op_args *c, const kiln_tensor **r)
{
    *r = c->in[1];
    if (*r && c->attrs->act != KILN_ACT_NONE)
        return error_set(KILN_ERR_UNSUPPORTED, "linear: a residual with an activation");
    kiln_shape s = shape_of(c->out);
    return *r ? expect_shape("linear", "residual", *r, &s) : KILN_OK;
}

/* The product, its bias and an activation whose gradient needs its input
 * (act_info.from_output 0), its derivative there kept in d (saved tensor 0)
 * for the backward in training: in the epilogue where kiln's GEMM runs the
 * activation there (GELU), else by act.cl's pass after the product. */
static kiln_status product_keeping_grad(const op_args *c, size_t n, size_t in, size_t out,
                                        const kiln_tensor *bias)
{
    kiln_act act = c->attrs->act;
    cl_mem y = c->out->buf, d = c->training ? c->saved[0]->buf : NULL;
    int fused = blas_has_gelu_epilogue(c->ctx) && act == KILN_ACT_GELU;
    gemm_epilogue epi = {bias ? bias->buf : NULL, 0, NULL, 1, d, NULL};
    kiln_status st = product(c, n, in, out, y, fused ? &epi : NULL);
    if (st != KILN_OK || fused)
        return st;
    st = op_bias_act(c->ctx, KILN_ACT_NONE, 0.0f, c->out, bias, out, 1);
    if (st != KILN_OK)
        return st;
    return op_act_forward(c->ctx, act, c->attrs->slope, y, y, d, c->out->numel);
}

static kiln_status linear_forward(const op_args *c)
{
    size_t in, n = linear_rows(c, &in), out = c->attrs->out;
    const kiln_tensor *r;
    kiln_status st = residual_of(c, &r);
    if (st != KILN_OK)
        return st;
    kiln_act act = c->attrs->act;
    const kiln_tensor *bias = c->attrs->bias ? c->param[1] : NULL;
    int keeps = act != KILN_ACT_NONE && !act_get(act)->from_output;
    if (n == 1 && kiln_ctx_gemm(c->ctx) == KILN_GEMM_KILN && in <= UINT32_MAX &&
        out <= UINT32_MAX && !(keeps && c->training))
        st = linear_one(c, in, out);
    else if (keeps)
        return product_keeping_grad(c, n, in, out, bias);
    else {
        int fused = blas_has_epilogue(c->ctx) && (act == KILN_ACT_NONE || act == KILN_ACT_RELU);
        gemm_epilogue epi = {bias ? bias->buf : NULL, act == KILN_ACT_RELU, r ? r->buf : NULL,
                             0, NULL, NULL};
        st = product(c, n, in, out, c->out->buf, fused ? &epi : NULL);
        if (st == KILN_OK && !fused)
            st = op_bias_act(c->ctx, act, c->attrs->slope, c->out, bias, out, 1);
        if (fused || st != KILN_OK)
            return st;
    }
    /* the add's own kernel where the product's epilogue did not add r */
    return st == KILN_OK && r ? op_add_into(c->ctx, c->out, r) : st;
}

kiln_status op_act_grad(const op_args *c, kiln_tensor **dz)
{
    *dz = NULL;
    if (c->attrs->act == KILN_ACT_NONE)
        return KILN_OK;
    kiln_shape s = shape_of(c->out);
    kiln_status st = tensor_of(c->ctx, &s, dz);
    if (st != KILN_OK)
        return st;
    /* the derivative kept (keeps_act_grad) where the gradient needs the
     * input; else from the output (act_info.from_output), y standing in for
     * the input */
    if (!act_get(c->attrs->act)->from_output)
        st = op_times(c->ctx, c->dout->buf, c->saved[0]->buf, (*dz)->buf, c->out->numel);
    else
        st = op_act_backward(c->ctx, c->attrs->act, c->attrs->slope, c->out->buf, c->out->buf,
                             c->dout->buf, (*dz)->buf, c->out->numel);
    if (st != KILN_OK) {
        kiln_tensor_free(*dz);
        *dz = NULL;
    }
    return st;
}

/* dx = g W: (N, out)(out, in), times din_times (the derivative of the
 * activation that x's producer absorbed) where given: in the product's
 * epilogue on kiln's GEMM, else by a pass after it, in place. */
static kiln_status input_grad(const op_args *c, cl_mem g, size_t n, size_t in, size_t out)
{
    const kiln_tensor *times = c->din_times;
    int fused = times && blas_has_epilogue(c->ctx);
    gemm_epilogue epi = {NULL, 0, NULL, 0, NULL, fused ? times->buf : NULL};
    cl_mem dx = c->din[0]->buf;
    kiln_status st = blas_sgemm_epilogue(c->ctx, KILN_NO_TRANS, KILN_NO_TRANS, n, in, out, 1.0f,
                                         g, 0, out, c->param[0]->buf, 0, in, 0.0f, dx, 0, in,
                                         fused ? &epi : NULL);
    if (st != KILN_OK || fused || !times)
        return st;
    return op_times(c->ctx, dx, times->buf, dx, c->din[0]->numel);
}

static kiln_status linear_backward(const op_args *c)
{
    size_t in, n = linear_rows(c, &in), out = c->attrs->out;
    kiln_tensor *dz = NULL;
    kiln_status st = c->dout_past_act ? KILN_OK : op_act_grad(c, &dz);
    if (st != KILN_OK)
        return st;
    cl_mem g = dz ? dz->buf : c->dout->buf;
    if (c->din[1] && !c->din_in_place[1]) /* the residual's: dy */
        st = kiln_tensor_copy(c->din[1], c->dout);
    if (st == KILN_OK && c->din[0])
        st = input_grad(c, g, n, in, out);
    if (st == KILN_OK && c->dparam[0]) /* dW = dyᵀ x: (out, N)(N, in) */
        st = blas_sgemm(c->ctx, KILN_TRANS, KILN_NO_TRANS, out, in, n, 1.0f, g, 0, out,
                        c->in[0]->buf, 0, in, 0.0f, c->dparam[0]->buf, 0, in);
    if (st == KILN_OK && c->attrs->bias && c->dparam[1])
        st = op_channel_sums(c->ctx, g, n, out, 1, c->dparam[1]->buf);
    kiln_tensor_free(dz);
    return st;
}

/* nn.Linear(in, out, bias): out, bias, and the weights' initialiser (std:
 * of init = normal). */
static const op_key linear_keys[] = {
    OP_KEY_NEEDED("out", out, 1, 1000000),
    OP_KEY_BOOL("bias", bias, 1),
    OP_KEY_CHOICE("init", init, INIT_DEFAULT, op_init_choices, INIT_COUNT),
    OP_KEY_FLOAT("std", std, 0, 1e6, 0, 0.02, "a number >= 0 (with init = normal)"),
};

/* Whether the product with W packs it at every call (blas_packs). */
static int linear_packs_weight(const op_args *c)
{
    size_t n = c->param[0]->shape[0], k = c->param[0]->numel / n;
    return blas_packs(c->ctx, c->in[0]->numel / k, n, k);
}

const op_desc op_linear_desc = {
    .name = "linear",
    .n_inputs = 1,
    .fuses_act = 1,
    .keeps_act_grad = 1,
    .grads_through_act = 1,
    .fuses_residual = 1,
    .grads_in_place = 2u, /* the residual's, where it is fused in */
    .folds_batchnorm = 1,
    .tieable = 1,
    .packs_weight = linear_packs_weight,
    .in_ranks = 1u << 2 | 1u << 3,
    .in_hint = "add [flatten] before it",
    .keys = linear_keys,
    .n_keys = sizeof linear_keys / sizeof linear_keys[0],
    .param_names = {"weight", "bias"},
    .init = op_init_weight_bias,
    .infer = linear_infer,
    .forward = linear_forward,
    .backward = linear_backward,
};
