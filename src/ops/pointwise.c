/* Activations, softmax and residual add. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "ops/ops.h"

/* ---- the activations' rows (KILN_ACT_LIST) ------------------------------- */

static const act_info acts[] = {
#define ACT_ROW(id, name, layer, from_output, smooth, init, keys)                            \
    {name, layer, from_output, smooth, INIT_##init, keys},
    KILN_ACT_LIST(ACT_ROW)
#undef ACT_ROW
};
_Static_assert(sizeof acts / sizeof acts[0] == KILN_ACT_COUNT, "one row per kiln_act");

const act_info *act_get(kiln_act act)
{
    return (unsigned)act < KILN_ACT_COUNT ? &acts[act] : NULL;
}

int act_takes_key(kiln_act act, const char *key)
{
    const act_info *a = act_get(act);
    size_t n = strlen(key);
    if (!a || n == 0)
        return 0;
    for (const char *p = strstr(a->keys, key); p; p = strstr(p + 1, key))
        if ((p == a->keys || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return 1;
    return 0;
}

/* act_options' texts, one an activation, written once: a forward of one
 * sample asked for them at every launch, nine snprintf calls each. */
static char act_texts[KILN_ACT_COUNT][ACT_OPTIONS_MAX];
static pthread_once_t act_texts_once = PTHREAD_ONCE_INIT;

static void act_texts_write(void)
{
    for (int act = 0; act < KILN_ACT_COUNT; act++) {
        char *buf = act_texts[act];
        size_t size = sizeof act_texts[act];
        int used = snprintf(buf, size, "-DACT=%d", act);
#define ACT_DEFINE(id, ...)                                                                 \
    if (used > 0 && (size_t)used < size)                                                    \
        used += snprintf(buf + used, size - used, " -DACT_" #id "=%d", (int)KILN_ACT_##id);
        KILN_ACT_LIST(ACT_DEFINE)
#undef ACT_DEFINE
        const act_info *a = act_get((kiln_act)act);
        if (a && a->from_output && used > 0 && (size_t)used < size)
            snprintf(buf + used, size - used, " -DACT_FROM_OUTPUT=1");
    }
}

const char *act_options(kiln_act act)
{
    pthread_once(&act_texts_once, act_texts_write);
    return (unsigned)act < KILN_ACT_COUNT ? act_texts[act] : "";
}

/* ---- activation: y = act(x) -------------------------------------------- */

static kiln_status same_shape(const op_attrs *a, const kiln_shape *in, op_shapes *s)
{
    (void)a;
    s->out = in[0];
    return KILN_OK;
}

kiln_status op_act_forward(kiln_ctx *ctx, kiln_act act, float slope, cl_mem x, cl_mem y,
                           cl_mem d, size_t n)
{
    const char *name = d ? "act_forward_grad" : "act_forward";
    cl_kernel k;
    kiln_status st = kernel_get(ctx, ACT_SOURCES, act_options(act), name, &k);
    if (st != KILN_OK)
        return st;
    cl_uint count = n;
    size_t wg = pointwise_group_size(ctx);
    return d ? launch_1d(ctx, k, name, n, wg, KARG(x), KARG(y), KARG(d), KARG(count),
                         KARG(slope))
             : launch_1d(ctx, k, name, n, wg, KARG(x), KARG(y), KARG(count), KARG(slope));
}

kiln_status op_times(kiln_ctx *ctx, cl_mem a, cl_mem b, cl_mem y, size_t n)
{
    cl_kernel k;
    kiln_status st = kernel_get(ctx, ACT_SOURCES, act_options(KILN_ACT_NONE), "times", &k);
    if (st != KILN_OK)
        return st;
    cl_uint count = n;
    return launch_1d(ctx, k, "times", n, pointwise_group_size(ctx), KARG(a), KARG(b), KARG(y),
                     KARG(count));
}

static kiln_status act_forward(const op_args *c)
{
    return op_act_forward(c->ctx, c->attrs->act, c->attrs->slope, c->in[0]->buf, c->out->buf,
                          NULL, c->out->numel);
}

kiln_status op_add_into(kiln_ctx *ctx, kiln_tensor *y, const kiln_tensor *x)
{
    op_attrs a = op_attrs_default();
    op_args c = {.ctx = ctx, .attrs = &a, .in = {y, x}, .out = y};
    return op_forward(OP_ADD, &c);
}

kiln_status op_act_backward(kiln_ctx *ctx, kiln_act act, float slope, cl_mem x, cl_mem y,
                            cl_mem dy, cl_mem dx, size_t n)
{
    cl_kernel k;
    cl_uint count = n;
    if (act == KILN_ACT_GELU && device_loops_work_groups(&ctx->info)) { /* act.cl */
        kiln_status st = kernel_get(ctx, ACT_SOURCES, act_options(act), "gelu_backward16", &k);
        return st != KILN_OK ? st
                             : launch_1d(ctx, k, "gelu_backward16", (n + 15) / 16,
                                         pointwise_group_size(ctx), KARG(x), KARG(dy),
                                         KARG(dx), KARG(count));
    }
    kiln_status st = kernel_get(ctx, ACT_SOURCES, act_options(act), "act_backward", &k);
    if (st != KILN_OK)
        return st;
    return launch_1d(ctx, k, "act_backward", n, pointwise_group_size(ctx), KARG(x),
                     KARG(y), KARG(dy), KARG(dx), KARG(count), KARG(slope));
}

static kiln_status act_backward(const op_args *c)
{
    if (!c->din[0])
        return KILN_OK;
    return op_act_backward(c->ctx, c->attrs->act, c->attrs->slope, c->in[0]->buf,
                           c->out->buf, c->dout->buf, c->din[0]->buf, c->out->numel);
}

/* ---- softmax along attrs->dim -------------------------------------------- */

/* Views a shape as (outer, n, inner) around dimension dim. */
static void split_at(const kiln_shape *s, int dim, cl_uint *outer, cl_uint *n,
                     cl_uint *inner)
{
    *outer = *inner = 1;
    for (int i = 0; i < dim; i++)
        *outer *= s->d[i];
    *n = s->d[dim];
    for (int i = dim + 1; i < s->ndim; i++)
        *inner *= s->d[i];
}

static int softmax_dim(const op_attrs *a, int ndim)
{
    return a->dim < 0 ? ndim + a->dim : a->dim;
}

static kiln_status softmax_infer(const op_attrs *a, const kiln_shape *in, op_shapes *s)
{
    int dim = softmax_dim(a, in[0].ndim);
    if (dim < 0 || dim >= in[0].ndim)
        return error_set(KILN_ERR_SHAPE, "softmax: dim %d is outside the %d dimensions of its "
                                         "input", a->dim, in[0].ndim);
    s->out = in[0];
    return KILN_OK;
}

static kiln_status softmax_launch(const op_args *c, const char *name, int backward)
{
    cl_kernel k;
    kiln_status st = kernel_get(c->ctx, "softmax.cl", "", name, &k);
    if (st != KILN_OK)
        return st;
    kiln_shape s = shape_of(c->out);
    cl_uint outer, n, inner;
    split_at(&s, softmax_dim(c->attrs, s.ndim), &outer, &n, &inner);
    if (backward)
        return launch_1d(c->ctx, k, name, outer * inner, 64, KARG(c->out->buf),
                         KARG(c->dout->buf), KARG(c->din[0]->buf), KARG(outer), KARG(n),
                         KARG(inner));
    return launch_1d(c->ctx, k, name, outer * inner, 64, KARG(c->in[0]->buf),
                     KARG(c->out->buf), KARG(outer), KARG(n), KARG(inner));
}

static kiln_status softmax_forward(const op_args *c)
{
    return softmax_launch(c, "softmax_forward", 0);
}

static kiln_status softmax_backward(const op_args *c)
{
    return c->din[0] ? softmax_launch(c, "softmax_backward", 1) : KILN_OK;
}

/* ---- add: y = act(a + b) -------------------------------------------------- */

static kiln_status add_infer(const op_attrs *a, const kiln_shape *in, op_shapes *s)
{
    (void)a;
    if (!shape_eq(&in[0], &in[1])) {
        char x[64], y[64];
        return error_set(KILN_ERR_SHAPE, "add: inputs of shapes %s and %s differ",
                         shape_str(&in[0], x, sizeof x), shape_str(&in[1], y, sizeof y));
    }
    s->out = in[0];
    return KILN_OK;
}

static kiln_status add_forward(const op_args *c)
{
    cl_kernel k;
    kiln_status st = kernel_get(c->ctx, ACT_SOURCES, act_options(c->attrs->act), "add", &k);
    if (st != KILN_OK)
        return st;
    cl_uint n = c->out->numel;
    return launch_1d(c->ctx, k, "add", n, 64, KARG(c->in[0]->buf), KARG(c->in[1]->buf),
                     KARG(c->out->buf), KARG(n), KARG(c->attrs->slope));
}

/* The gradient flows to both inputs: dout, or act'(z) dout (from the
 * output) with a fused activation. An input whose gradient the plan left in
 * dout's memory (din_in_place) needs no copy; with an activation, act'(z)
 * dout is computed there in place first. */
static kiln_status add_backward(const op_args *c)
{
    int in_place = c->din_in_place[0] || c->din_in_place[1];
    cl_mem dout = c->dout->buf;
    kiln_status st = KILN_OK;
    const kiln_tensor *from = c->dout;
    if (c->attrs->act != KILN_ACT_NONE) {
        kiln_tensor *dz = in_place ? (kiln_tensor *)c->dout : c->din[0] ? c->din[0] : c->din[1];
        if (!dz)
            return KILN_OK;
        st = op_act_backward(c->ctx, c->attrs->act, c->attrs->slope, c->out->buf, c->out->buf,
                             dout, dz->buf, dz->numel);
        from = dz;
    }
    for (int k = 0; k < 2 && st == KILN_OK; k++)
        if (c->din[k] && !c->din_in_place[k] && c->din[k] != from)
            st = kiln_tensor_copy(c->din[k], from);
    return st;
}

/* The activations' keys; each activation takes those its row names
 * (nn.LeakyReLU(negative_slope), nn.GELU(approximate)). */
static const op_choice gelu_approx[] = {{"none", KILN_ACT_GELU}, {"tanh", KILN_ACT_GELU_TANH}};

static const op_key act_keys[] = {
    OP_KEY_FLOAT("slope", slope, 0, 1e6, 0, 0.01, "a number >= 0"),
    OP_KEY_CHOICE("approx", act, KILN_ACT_GELU, gelu_approx, 2),
};

/* nn.Softmax(dim) */
static const op_key softmax_keys[] = {
    OP_KEY_INT("dim", dim, -4, 3, -1, "a dimension from -4 to 3 (PyTorch's numbering, batch "
                                      "first)"),
};

const op_desc op_activation_desc = {
    .name = "activation",
    .n_inputs = 1,
    .keys = act_keys,
    .n_keys = sizeof act_keys / sizeof act_keys[0],
    .infer = same_shape,
    .forward = act_forward,
    .backward = act_backward,
};

const op_desc op_softmax_desc = {
    .name = "softmax",
    .n_inputs = 1,
    .keys = softmax_keys,
    .n_keys = 1,
    .infer = softmax_infer,
    .forward = softmax_forward,
    .backward = softmax_backward,
};

const op_desc op_add_desc = {
    .name = "add",
    .n_inputs = 2,
    .fuses_act = 1, /* a residual sum and the ReLU after it: one kernel */
    .grads_in_place = 3u,
    .infer = add_infer,
    .forward = add_forward,
    .backward = add_backward,
};
