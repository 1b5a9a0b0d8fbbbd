/* dropout: inverted dropout in training (kept values scaled by 1/(1-p)),
 * identity in eval mode. The mask comes from Philox(seed, counter), so
 * backward regenerates it: call backward with the attrs of the forward. */
#include "ops/ops.h"

/* elements per work-item of cl/dropout.cl's kernel: its CHUNK */
#define DROPOUT_CHUNK 64

static kiln_status dropout_infer(const op_attrs *a, const kiln_shape *in, op_shapes *s)
{
    if (!(a->p >= 0.0f && a->p < 1.0f))
        return error_set(KILN_ERR_INVALID_ARGUMENT, "dropout: p = %g; expected 0 <= p < 1",
                         (double)a->p);
    s->out = in[0];
    return KILN_OK;
}

/* to = mask(seed, counter) * from * scale, or a copy when inactive. */
static kiln_status apply_mask(const op_args *c, const kiln_tensor *from, kiln_tensor *to)
{
    if (!c->training || c->attrs->p == 0.0f)
        return kiln_tensor_copy(to, from);
    cl_kernel full, tail;
    kiln_status st = kernel_get(c->ctx, "dropout.cl", "", "dropout", &full);
    if (st == KILN_OK)
        st = kernel_get(c->ctx, "dropout.cl", "", "dropout_tail", &tail);
    if (st != KILN_OK)
        return st;
    cl_ulong seed = c->attrs->seed, counter = c->attrs->counter;
    cl_uint n = from->numel;
    float p = c->attrs->p, scale = 1.0f / (1.0f - p);
    st = launch_3d(c->ctx, full, "dropout", n / DROPOUT_CHUNK, 1, 1, KARG(from->buf),
                   KARG(to->buf), KARG(p), KARG(scale), KARG(seed), KARG(counter));
    if (st == KILN_OK && n % DROPOUT_CHUNK)
        st = launch_3d(c->ctx, tail, "dropout_tail", 1, 1, 1, KARG(from->buf),
                       KARG(to->buf), KARG(n), KARG(p), KARG(scale), KARG(seed),
                       KARG(counter));
    return st;
}

static kiln_status dropout_forward(const op_args *c)
{
    return apply_mask(c, c->in[0], c->out);
}

static kiln_status dropout_backward(const op_args *c)
{
    return c->din[0] ? apply_mask(c, c->dout, c->din[0]) : KILN_OK;
}

/* nn.Dropout(p) */
static const op_key dropout_keys[] = {
    OP_KEY_FLOAT("p", p, 0, 1, 1, 0.5, "a probability from 0 up to (not including) 1"),
};

const op_desc op_dropout_desc = {
    .name = "dropout",
    .n_inputs = 1,
    .see_through = 1,
    .identity_in_eval = 1,
    .keys = dropout_keys,
    .n_keys = 1,
    .infer = dropout_infer,
    .forward = dropout_forward,
    .backward = dropout_backward,
};
