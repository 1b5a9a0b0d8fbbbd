/* Running a pipeline: forward, loss and backward are enqueued on the
 * context's in-order queue; nothing waits until a result is read. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/pipeline.h"

/* With options.check: fails at a NaN or Inf in t, naming the step. */
static kiln_status check_finite(pipeline *p, const pipe_step *s, const kiln_tensor *t,
                                const char *what)
{
    if (!p->options.check || !t)
        return KILN_OK;
    float *h = malloc(t->numel * sizeof *h);
    if (!h)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "anomaly check: out of host memory");
    kiln_status st = kiln_tensor_download(t, h, t->numel);
    size_t bad = 0;
    float lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; st == KILN_OK && i < t->numel; i++) {
        if (!isfinite(h[i]))
            bad++;
        else {
            lo = fminf(lo, h[i]);
            hi = fmaxf(hi, h[i]);
        }
    }
    free(h);
    if (st == KILN_OK && bad)
        st = error_set(KILN_ERR_NUMERIC, "layer %s: the %s has %zu NaN or Inf values of %zu "
                                         "(finite ones from %g to %g)",
                       pipeline_step_name(p, s), what, bad, t->numel, (double)lo, (double)hi);
    return st;
}

/* Whether eval mode skips step i: it passes its input on unchanged, and
 * its output is neither the pipeline's nor the logits a loss or a caller
 * reads before a head (pipeline_loss_step). Forward outputs live until
 * their backward (plan.c), so its input outlives every reader of it. */
static int skipped_in_eval(const pipeline *p, size_t i)
{
    const pipe_step *last = &p->steps[p->count - 1];
    for (int k = 0; k < last->n_inputs; k++)
        if (last->inputs[k] == (int)i)
            return 0;
    return i + 1 < p->count && op_get(p->steps[i].op)->identity_in_eval;
}

/* The tensor a reader of step's output reads (step -1: the input). */
static const kiln_tensor *value(const pipeline *p, int step, int training)
{
    while (!training && step >= 0 && skipped_in_eval(p, (size_t)step))
        step = p->steps[step].inputs[0];
    return step < 0 ? p->input : p->steps[step].out;
}

static op_args step_args(pipeline *p, pipe_step *s, int training)
{
    op_args c = {.ctx = p->ctx, .attrs = &s->attrs, .training = training, .out = s->out,
                 .sync = training ? p->sync : NULL, .at = p->at, .cache = s->cache};
    for (int k = 0; k < s->n_inputs; k++)
        c.in[k] = value(p, s->inputs[k], training);
    for (int k = 0; k < OP_MAX_PARAMS; k++)
        c.param[k] = s->param[k];
    for (int k = 0; k < OP_MAX_BUFFERS; k++)
        c.buffer[k] = s->buffer[k];
    for (int k = 0; k < OP_MAX_SAVED; k++)
        c.saved[k] = s->saved[k];
    return c;
}

kiln_status pipeline_fold(pipeline *p, pipe_step *s)
{
    pipe_step *bn = &p->steps[s->bn_step];
    cl_kernel k;
    kiln_status st = op_norm_kernel(p->ctx, "bn_fold", &k);
    if (st != KILN_OK)
        return st;
    size_t out = s->param[0]->shape[0], row = s->param[0]->numel / out;
    cl_int has_bias = s->attrs.bias;
    cl_mem bias = has_bias ? s->param[1]->buf : s->param[0]->buf;
    return launch_3d(p->ctx, k, "bn_fold", row, out, 1, KARG(s->param[0]->buf),
                     KARG(bias), KARG(has_bias), KARG(bn->param[0]->buf),
                     KARG(bn->param[1]->buf), KARG(bn->buffer[0]->buf),
                     KARG(bn->buffer[1]->buf), KARG(bn->attrs.eps), KARG(s->folded[0]->buf),
                     KARG(s->folded[1]->buf));
}

/* Eval mode: a layer's weight (c->param[0], folded or its own) packed
 * into the GEMM's panels once per version of the parameters, where its
 * op says its forward would pack it at every call (packs_weight);
 * c->packed then points there. */
static kiln_status pack_weight(pipeline *p, pipe_step *s, op_args *c)
{
    int (*packs)(const op_args *) = op_get(s->op)->packs_weight;
    if (c->training || !packs || !packs(c))
        return KILN_OK;
    const kiln_tensor *w = c->param[0];
    size_t n = w->shape[0], k = w->numel / n;
    kiln_status st = blas_pack_weight(p->ctx, w->buf, n, k, *p->param_version, &s->packed);
    c->packed = st == KILN_OK ? &s->packed : NULL;
    return st;
}

/* Eval mode: the layer with its batchnorm folded in, writing the
 * batchnorm's output with the batchnorm's activation. */
static kiln_status forward_folded(pipeline *p, pipe_step *s)
{
    pipe_step *bn = &p->steps[s->bn_step];
    kiln_status st = KILN_OK;
    if (s->folded_at != *p->param_version) {
        st = pipeline_fold(p, s);
        s->folded_at = st == KILN_OK ? *p->param_version : 0;
    }
    op_attrs a = s->attrs;
    a.bias = 1;
    a.act = bn->attrs.act;
    a.slope = bn->attrs.slope;
    op_args c = step_args(p, s, 0);
    c.attrs = &a;
    c.out = bn->out;
    c.param[0] = s->folded[0];
    c.param[1] = s->folded[1];
    if (st == KILN_OK)
        st = pack_weight(p, s, &c);
    return st == KILN_OK ? op_forward(s->op, &c) : st;
}

/* The profile's and the trace's label for a step's launches; the name is
 * written only when something reads it (a forward of one sample wrote it
 * at every step). */
static void label_step(pipeline *p, const char *pass, const pipe_step *s)
{
    if (p->ctx->profile || p->ctx->trace.fn)
        ctx_set_label(p->ctx, "%s %s", pass, pipeline_step_name(p, s));
}

/* Whether eval mode runs step i (not folded into another, not passed
 * on). */
static int runs_in_eval(const pipeline *p, size_t i)
{
    return p->steps[i].folded_into < 0 && !skipped_in_eval(p, i);
}

/* Step i as a layer of linear_chain: a linear layer on one sample with no
 * second input and no batchnorm folded in, small enough to share a
 * launch (op_linear_chains). */
static int chain_layer(const pipeline *p, size_t i, op_chain_layer *l)
{
    const pipe_step *s = &p->steps[i];
    if (s->op != OP_LINEAR || s->n_inputs != 1 || s->bn_step >= 0 ||
        shape_numel(&s->shapes.out) != s->attrs.out)
        return 0;
    size_t in = s->param[0]->shape[1];
    *l = (op_chain_layer){s->param[0]->buf, s->attrs.bias ? s->param[1]->buf : NULL, in,
                          s->attrs.out, s->attrs.act, s->attrs.slope};
    return op_linear_chains(p->ctx, in, s->attrs.out);
}

/* Whether step j reads step i's output and nothing else does: its input
 * is i, or steps that eval mode passes on from i, each read once. */
static int reads_alone(const pipeline *p, size_t i, size_t j)
{
    int v = p->steps[j].inputs[0];
    while (v >= 0 && v != (int)i && p->steps[v].uses == 1 && !runs_in_eval(p, (size_t)v))
        v = p->steps[v].inputs[0];
    return v == (int)i && p->steps[i].uses == 1;
}

/* Eval mode, one sample: the run of layers from step i that linear_chain
 * takes in one launch (their outputs but the last never leave it), the
 * steps between them passed on; 0 or 1 where no chain starts at i. */
static int chain_from(const pipeline *p, size_t i, op_chain_layer *layers, size_t *last)
{
    if (p->options.check || p->options.poison || !chain_layer(p, i, &layers[0]))
        return 0;
    int count = 1;
    *last = i;
    for (size_t j = i + 1; j < p->count && count < OP_CHAIN_LAYERS; j++) {
        if (!runs_in_eval(p, j))
            continue;
        if (!reads_alone(p, *last, j) || !chain_layer(p, j, &layers[count]))
            break;
        *last = j;
        count++;
    }
    return count;
}

/* Steps from..last as one launch of linear_chain. */
static kiln_status forward_chain(pipeline *p, size_t from, size_t last,
                                 const op_chain_layer *layers, int count)
{
    label_step(p, "forward", &p->steps[from]);
    for (size_t i = from; i <= last && p->ctx->trace.fn; i++)
        if (runs_in_eval(p, i))
            writef(&p->ctx->trace, "  forward  %s (one launch with the layers beside it)\n",
                   pipeline_step_name(p, &p->steps[i]));
    return op_linear_chain(p->ctx, value(p, p->steps[from].inputs[0], 0)->buf, layers, count,
                           p->steps[last].out->buf);
}

kiln_status pipeline_forward(pipeline *p, int training)
{
    if (training && p->decode)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "pipeline: a decoding pipeline does not "
                                                    "train");
    if (training) {
        p->counter++;
        pipeline_params_changed(p); /* batchnorm's running statistics */
    }
    kiln_status st = KILN_OK;
    for (size_t i = 0; i < p->count && st == KILN_OK; i++) {
        pipe_step *s = &p->steps[i];
        s->attrs.counter = p->counter;
        if (!training && !runs_in_eval(p, i))
            continue; /* computed inside the layer it folds into, or passed on */
        op_chain_layer layers[OP_CHAIN_LAYERS];
        size_t last;
        int chained = training ? 0 : chain_from(p, i, layers, &last);
        if (chained > 1) {
            st = forward_chain(p, i, last, layers, chained);
            i = last;
            continue;
        }
        op_args c = step_args(p, s, training);
        label_step(p, "forward", s);
        if (p->ctx->trace.fn)
            writef(&p->ctx->trace, "  forward  %s%s\n", pipeline_step_name(p, s),
                    !training && s->bn_step >= 0 ? " (batchnorm folded in)" : "");
        if (!training && s->bn_step >= 0)
            st = forward_folded(p, s);
        else if ((st = pack_weight(p, s, &c)) == KILN_OK)
            st = op_forward(s->op, &c);
        if (st == KILN_OK)
            st = check_finite(p, s, !training && s->bn_step >= 0 ? p->steps[s->bn_step].out
                                                                 : s->out,
                              "forward output");
        if (st == KILN_OK && p->options.poison)
            st = plan_poison(p, (int)i);
    }
    return st;
}

double pipeline_forward_macs(const pipeline *p)
{
    double macs = 0;
    for (size_t i = 0; i < p->count; i++) {
        const kiln_tensor *w = p->steps[i].param[0], *out = p->steps[i].out;
        if (w && out && w->ndim >= 1 && w->shape[0])
            macs += (double)out->numel * (double)(w->numel / w->shape[0]);
    }
    return macs;
}

kiln_tensor *pipeline_output(pipeline *p)
{
    return p->steps[p->count - 1].out;
}

kiln_status pipeline_loss(pipeline *p, loss_kind kind, float label_smoothing,
                          const kiln_tensor *target, kiln_tensor *loss)
{
    int at = pipeline_loss_step(p, kind);
    p->loss_step = at;
    const kiln_tensor *logits = at < 0 ? p->input : p->steps[at].out;
    ctx_set_label(p->ctx, "loss %s", loss_name(kind));
    if (p->ctx->trace.fn)
        writef(&p->ctx->trace, "  loss     %s%s\n", loss_name(kind),
                at != (int)p->count - 1 ? " (on the logits before the prediction head)" : "");
    kiln_tensor *grad = at < 0 ? NULL : p->steps[at].grad;
    kiln_status st = kind == LOSS_CROSS_ENTROPY && p->class_weight
                         ? op_loss_weighted(p->ctx, logits, target, p->class_weight, loss, grad)
                         : op_loss(p->ctx, kind, label_smoothing, logits, target, loss, grad);
    if (st == KILN_OK && p->options.poison)
        st = plan_poison(p, (int)p->count);
    return st;
}

/* Where input k of step s sends its gradient: left in dout's memory where
 * the plan gave it that (*in_place), straight into the grad of the value
 * it read if nothing has written it yet in this pass, else added to it by
 * the op itself (adds_input_grads: *add) or into a partial that is added
 * afterwards (*accumulate). */
static kiln_status gradient_target(pipeline *p, pipe_step *s, int k, kiln_tensor **out,
                                   int *in_place, int *add, int *accumulate)
{
    *out = NULL;
    *in_place = *add = *accumulate = 0;
    int from = s->inputs[k];
    if (from < 0)
        return KILN_OK;
    pipe_step *v = &p->steps[from];
    if (v->grad_with == (int)(s - p->steps)) { /* its gradient is in dout's memory */
        *out = v->grad;
        *in_place = 1;
        return KILN_OK;
    }
    int taken = v->grad_ready || (k == 1 && s->inputs[0] == from);
    if (!taken || op_get(s->op)->adds_input_grads) {
        *out = v->grad;
        *add = taken;
        return KILN_OK;
    }
    *accumulate = 1;
    *out = v->partial; /* allocated for every value read more than once */
    return KILN_OK;
}

static kiln_status backward_step(pipeline *p, pipe_step *s, int training)
{
    op_args c = step_args(p, s, training);
    c.dout = s->grad;
    c.dout_past_act = s->act_grad_by >= 0; /* its reader applied act' */
    const pipe_step *from = s->inputs[0] >= 0 ? &p->steps[s->inputs[0]] : NULL;
    if (from && from->act_grad_by == (int)(s - p->steps))
        c.din_times = from->saved[0];
    int accumulate[OP_MAX_INPUTS] = {0};
    kiln_status st = KILN_OK;
    for (int k = 0; k < s->n_inputs && st == KILN_OK; k++)
        st = gradient_target(p, s, k, &c.din[k], &c.din_in_place[k], &c.din_add[k],
                             &accumulate[k]);
    for (int k = 0; k < OP_MAX_PARAMS; k++)
        c.dparam[k] = s->dparam[k];
    /* a value read twice (concat(x, x)) whose gradient another reader
     * wrote first: its second gradient goes to a tensor of its own, not to
     * the partial the first fills */
    kiln_tensor *second = NULL;
    if (st == KILN_OK && s->n_inputs == 2 && s->inputs[0] == s->inputs[1] && accumulate[0] &&
        accumulate[1]) {
        kiln_shape shape = shape_of(c.din[1]);
        st = tensor_of(p->ctx, &shape, &second);
        c.din[1] = second;
    }
    if (st == KILN_OK)
        st = op_backward(s->op, &c);
    if (st == KILN_OK && s->tie_from >= 0 && s->dparam[0]) /* a tied weight's gradients add */
        st = op_add_into(p->ctx, s->dparam[0], p->steps[s->tie_from].dparam[0]);
    for (int k = 0; k < s->n_inputs && st == KILN_OK; k++) {
        if (s->inputs[k] < 0)
            continue;
        pipe_step *v = &p->steps[s->inputs[k]];
        if (accumulate[k])
            st = op_add_into(p->ctx, v->grad, k == 1 && second ? second : v->partial);
        v->grad_ready = 1;
    }
    kiln_tensor_free(second);
    return st;
}

kiln_status pipeline_backward(pipeline *p, int training)
{
    if (p->decode)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "pipeline: a decoding pipeline has no "
                                                    "backward");
    for (size_t i = 0; i < p->count; i++)
        p->steps[i].grad_ready = 0;
    if (p->loss_step >= 0)
        p->steps[p->loss_step].grad_ready = 1;
    kiln_status st = KILN_OK;
    size_t done_from = p->count; /* every step from here up has run */
    for (size_t at = 0; at < p->count && st == KILN_OK; at++) {
        size_t i = (size_t)p->back_order[at];
        if (p->steps[i].grad_ready && p->ctx->trace.fn)
            writef(&p->ctx->trace, "  backward %s\n", pipeline_step_name(p, &p->steps[i]));
        if (p->steps[i].grad_ready)
            st = check_finite(p, &p->steps[i], p->steps[i].grad, "gradient of its output");
        label_step(p, "backward", &p->steps[i]);
        if (st == KILN_OK && p->steps[i].grad_ready)
            st = backward_step(p, &p->steps[i], training);
        for (int k = 0; st == KILN_OK && p->steps[i].grad_ready && k < OP_MAX_PARAMS; k++)
            st = check_finite(p, &p->steps[i], p->steps[i].dparam[k],
                              k ? "bias gradient" : "weight gradient");
        if (st == KILN_OK && p->options.poison)
            st = plan_poison(p, p->back_at[i]);
        while (done_from > 0 && p->back_at[done_from - 1] <= p->back_at[i])
            done_from--;
        if (st == KILN_OK && p->on_backward) /* it reads gradients from the queue */
            st = programs_flush(p->ctx);
        if (st == KILN_OK && p->on_backward)
            st = p->on_backward->enqueued(p->on_backward->user, done_from);
    }
    if (st == KILN_OK && p->on_backward) /* read from the queue after it, too */
        st = programs_flush(p->ctx);
    return st;
}

static kiln_status idle_batchnorm(pipeline *p, pipe_step *s, int backward)
{
    op_args c = step_args(p, s, 1);
    ctx_set_label(p->ctx, "%s %s (no samples here)", backward ? "backward" : "forward",
                  pipeline_step_name(p, s));
    return op_batchnorm_sync_idle(&c, backward);
}

/* The batchnorm steps of a training step, forward in order, then those
 * whose backward computes an input gradient (the ones that reach the
 * loss's gradient and read another step), in backward's order. */
kiln_status pipeline_sync_idle(pipeline *p, loss_kind kind)
{
    kiln_status st = KILN_OK;
    for (size_t i = 0; i < p->count && st == KILN_OK; i++)
        if (p->steps[i].op == OP_BATCHNORM)
            st = idle_batchnorm(p, &p->steps[i], 0);
    char *ready = calloc(p->count, 1);
    if (st == KILN_OK && !ready)
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "out of host memory");
    int at = pipeline_loss_step(p, kind);
    if (ready && at >= 0)
        ready[at] = 1;
    for (size_t j = 0; j < p->count && st == KILN_OK; j++) {
        size_t i = (size_t)p->back_order[j];
        const pipe_step *s = &p->steps[i];
        if (!ready[i])
            continue;
        for (int k = 0; k < s->n_inputs; k++)
            if (s->inputs[k] >= 0)
                ready[s->inputs[k]] = 1;
        if (s->op == OP_BATCHNORM && s->inputs[0] >= 0)
            st = idle_batchnorm(p, &p->steps[i], 1);
    }
    free(ready);
    if (st == KILN_OK) /* the gradient buckets read the queue next */
        st = programs_flush(p->ctx);
    return st;
}
