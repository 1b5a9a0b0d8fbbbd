/* Optimizers on the device over the flat parameter and gradient buffers of
 * a pipeline: one launch updates every parameter (see cl/optim.cl). */
#include <math.h>
#include <stdlib.h>

#include "optim/optim.h"

struct optimizer {
    pipeline *p;
    optim_config cfg;
    kiln_tensor *state[2];           /* momentum, or first and second moments */
    kiln_tensor *scale, *norm, *sumsq;
    kiln_tensor *decay; /* with decay_matrices: 1 over matrices, 0 elsewhere */
    uint64_t t;
};

/* The mask of decay_matrices over the flat parameters: 1 for tensors of
 * two or more dimensions (linear and conv weights, embeddings), 0 for
 * biases and normalization weights, as nanoGPT groups them. */
static kiln_status make_decay_mask(optimizer *o)
{
    const pipeline *p = o->p;
    size_t n = p->params->numel;
    float *mask = calloc(n, sizeof *mask);
    if (!mask)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "optimizer: out of memory");
    for (size_t i = 0; i < p->count; i++) {
        const pipe_step *s = &p->steps[i];
        for (int k = 0; k < s->shapes.n_params; k++)
            if (s->shapes.param[k].ndim >= 2 && !(k == 0 && s->tied_to >= 0))
                for (size_t j = 0; j < shape_numel(&s->shapes.param[k]); j++)
                    mask[s->flat_at[k] + j] = 1.0f;
    }
    kiln_shape flat = shape_of(p->params);
    kiln_status st = tensor_of(p->ctx, &flat, &o->decay);
    if (st == KILN_OK)
        st = kiln_tensor_upload(o->decay, mask, n);
    free(mask);
    return st;
}

static const char *const names[] = {
#define OPTIM_NAME(id, name) name,
    OPTIM_LIST(OPTIM_NAME)
#undef OPTIM_NAME
};
_Static_assert(sizeof names / sizeof names[0] == OPTIM_COUNT, "one name per optim_kind");

const char *optim_name(optim_kind kind)
{
    return (unsigned)kind < OPTIM_COUNT ? names[kind] : NULL;
}

optim_config optim_defaults(optim_kind kind)
{
    optim_config c = {.kind = kind, .lr = kind == OPTIM_SGD ? 0.01f : 1e-3f, .beta1 = 0.9f,
                      .beta2 = 0.999f, .eps = 1e-8f};
    if (kind == OPTIM_ADAMW)
        c.weight_decay = 0.01f;
    return c;
}

/* Values an item of sgd_step and adam_step updates (cl/optim.cl's LANES):
 * the flat parameters fill whole items. */
#define OPTIM_LANES 16
_Static_assert(KILN_ARENA_ALIGN / sizeof(float) % OPTIM_LANES == 0,
               "the flat parameters are whole items of the update");

static const char *step_kernel(const optim_config *c)
{
    return c->kind == OPTIM_SGD ? "sgd_step" : "adam_step";
}

/* Asks for the step's kernels before the first step: while a network holds
 * the program cache, they are built while its first batch runs
 * (runtime/launch.c) instead of after the batch's loss is read. */
static kiln_status ask_for_kernels(optimizer *o)
{
    cl_kernel k;
    kiln_status st = kernel_get(o->p->ctx, "optim.cl", "", step_kernel(&o->cfg), &k);
    if (st == KILN_OK && o->cfg.clip_norm > 0)
        st = kernel_get(o->p->ctx, "optim.cl", "", "clip_scale", &k);
    return st;
}

kiln_status optim_create(pipeline *p, const optim_config *cfg, optimizer **out)
{
    if (p->params->numel % OPTIM_LANES)
        return error_set(KILN_ERR_UNSUPPORTED, "optimizer: %zu parameter values; the update "
                                               "takes them %d at a time",
                         p->params->numel, OPTIM_LANES);
    optimizer *o = calloc(1, sizeof *o);
    if (!o)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "optimizer: out of memory");
    o->p = p;
    o->cfg = *cfg;
    kiln_shape flat = shape_of(p->params), one = shape_make(1, 1, 0, 0, 0);
    int states = cfg->kind == OPTIM_SGD ? (cfg->momentum != 0.0f) : 2;
    kiln_status st = KILN_OK;
    for (int i = 0; i < states && st == KILN_OK; i++) {
        st = tensor_of(p->ctx, &flat, &o->state[i]);
        if (st == KILN_OK)
            st = kiln_tensor_fill(o->state[i], 0.0f);
    }
    if (st == KILN_OK)
        st = tensor_of(p->ctx, &one, &o->scale);
    if (st == KILN_OK)
        st = kiln_tensor_fill(o->scale, 1.0f);
    if (st == KILN_OK)
        st = tensor_of(p->ctx, &one, &o->norm);
    if (st == KILN_OK)
        st = kiln_tensor_fill(o->norm, 0.0f);
    if (st == KILN_OK)
        st = tensor_of(p->ctx, &one, &o->sumsq);
    if (st == KILN_OK && cfg->decay_matrices)
        st = make_decay_mask(o);
    if (st == KILN_OK)
        st = ask_for_kernels(o);
    if (st != KILN_OK) {
        optim_free(o);
        return st;
    }
    *out = o;
    return KILN_OK;
}

kiln_status optim_set_config(optimizer *o, const optim_config *cfg)
{
    int mask = cfg->decay_matrices && !o->decay;
    o->cfg = *cfg;
    return mask ? make_decay_mask(o) : KILN_OK;
}

void optim_free(optimizer *o)
{
    if (!o)
        return;
    kiln_tensor_free(o->state[0]);
    kiln_tensor_free(o->state[1]);
    kiln_tensor_free(o->scale);
    kiln_tensor_free(o->norm);
    kiln_tensor_free(o->sumsq);
    kiln_tensor_free(o->decay);
    free(o);
}

uint64_t optim_steps(const optimizer *o)
{
    return o->t;
}

void optim_set_steps(optimizer *o, uint64_t t)
{
    o->t = t;
}

kiln_tensor *optim_state(optimizer *o, int which)
{
    return which >= 0 && which < 2 ? o->state[which] : NULL;
}

kiln_tensor *optim_grad_norm(optimizer *o)
{
    return o->norm;
}

/* scale = min(1, clip_norm / (||g|| + 1e-6)) on the device. */
static kiln_status clip_norm_scale(optimizer *o)
{
    kiln_ctx *ctx = o->p->ctx;
    kiln_tensor *grads = o->p->grads;
    kiln_status st = op_sum_squares(ctx, &grads, 1, o->sumsq);
    cl_kernel k;
    if (st == KILN_OK)
        st = kernel_get(ctx, "optim.cl", "", "clip_scale", &k);
    if (st != KILN_OK)
        return st;
    return launch_3d(ctx, k, "clip_scale", 1, 1, 1, KARG(o->sumsq->buf),
                     KARG(o->scale->buf), KARG(o->norm->buf), KARG(o->cfg.clip_norm));
}

kiln_status optim_step(optimizer *o, float lr, const kiln_tensor *guard)
{
    kiln_ctx *ctx = o->p->ctx;
    const optim_config *c = &o->cfg;
    o->t++;
    pipeline_params_changed(o->p);
    ctx_set_label(ctx, "optimizer");
    kiln_status st = c->clip_norm > 0 ? clip_norm_scale(o) : KILN_OK;
    cl_kernel k;
    const char *name = step_kernel(c);
    if (st == KILN_OK)
        st = kernel_get(ctx, "optim.cl", "", name, &k);
    if (st != KILN_OK)
        return st;
    size_t items = o->p->params->numel / OPTIM_LANES;
    cl_mem p = o->p->params->buf, g = o->p->grads->buf;
    cl_mem s0 = o->state[0] ? o->state[0]->buf : p, s1 = o->state[1] ? o->state[1]->buf : p;
    cl_mem guard_buf = guard ? guard->buf : p;
    cl_int guarded = guard != NULL;
    if (c->kind == OPTIM_SGD) {
        cl_int nesterov = c->nesterov, first = o->t == 1;
        return launch_3d(ctx, k, name, items, 1, 1, KARG(p), KARG(g), KARG(s0),
                         KARG(o->scale->buf), KARG(lr), KARG(c->momentum),
                         KARG(c->dampening), KARG(c->weight_decay), KARG(nesterov),
                         KARG(first), KARG(c->clip_value), KARG(guard_buf), KARG(guarded));
    }
    cl_int decoupled = c->kind == OPTIM_ADAMW;
    float bc1 = (float)(1.0 - pow(c->beta1, (double)o->t));
    float bc2 = (float)(1.0 - pow(c->beta2, (double)o->t));
    cl_int has_decay = c->decay_matrices && o->decay;
    cl_mem decay = has_decay ? o->decay->buf : p;
    return launch_3d(ctx, k, name, items, 1, 1, KARG(p), KARG(g), KARG(s0), KARG(s1),
                     KARG(o->scale->buf), KARG(lr), KARG(c->beta1), KARG(c->beta2),
                     KARG(c->eps), KARG(c->weight_decay), KARG(decoupled), KARG(bc1),
                     KARG(bc2), KARG(c->clip_value), KARG(decay), KARG(has_decay),
                     KARG(guard_buf), KARG(guarded));
}
