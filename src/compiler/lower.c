/* Lowering: a finished graph becomes an ordered list of steps for one batch
 * size, each with the shapes it reads and writes; then the tensors are
 * allocated on a device, one by one or placed in a planned arena. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/pipeline.h"

/* How many layers read each node; the last node is also read by the loss. */
static int *count_readers(const kiln_model *m)
{
    int *readers = calloc(m->count, sizeof *readers);
    if (!readers)
        return NULL;
    for (size_t i = 0; i < m->count; i++)
        for (int k = 0; k < m->nodes[i].kind->n_inputs; k++)
            if (m->nodes[i].inputs[k] >= 0)
                readers[m->nodes[i].inputs[k]]++;
    readers[m->count - 1]++;
    return readers;
}

/* The shapes of step s from its attrs and its inputs' shapes. */
static kiln_status infer_step(pipeline *p, pipe_step *s)
{
    kiln_shape in[OP_MAX_INPUTS];
    for (int k = 0; k < s->n_inputs; k++)
        in[k] = s->inputs[k] < 0 ? p->input_shape : p->steps[s->inputs[k]].shapes.out;
    return op_infer(s->op, &s->attrs, in, &s->shapes);
}

/* A new step for graph node i, shapes only. */
static kiln_status add_step(pipeline *p, size_t i)
{
    const graph_node *n = &p->model->nodes[i];
    pipe_step *s = &p->steps[p->count];
    memset(s, 0, sizeof *s);
    s->node = i;
    s->fused_node = s->bn_step = s->folded_into = s->tied_to = s->tie_from = s->grad_with = -1;
    s->act_grad_by = -1;
    s->op = n->kind->op;
    s->attrs = n->attrs;
    s->n_inputs = n->kind->n_inputs;
    for (int k = 0; k < s->n_inputs; k++) {
        int from = n->inputs[k];
        s->inputs[k] = from < 0 ? -1 : p->value_of[from];
        if (from >= 0)
            p->steps[s->inputs[k]].uses++;
    }
    if (n->tie >= 0) {
        s->tied_to = p->value_of[n->tie];
        p->steps[s->tied_to].tie_from = (int)p->count;
    }
    p->value_of[i] = (int)p->count++;
    return infer_step(p, s);
}

/* Whether node i may merge into step `step`: the model's last node only
 * into the last step so far, which the pipeline's output is (a layer that
 * nothing reads may come between). */
static int merges_into(const pipeline *p, size_t i, int step)
{
    return i + 1 < p->model->count || step == (int)p->count - 1;
}

static kiln_status lower_steps(pipeline *p)
{
    const kiln_model *m = p->model;
    int *readers = count_readers(m);
    if (!readers)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "lowering: out of memory");
    kiln_status st = KILN_OK;
    for (size_t i = 0; i < m->count && st == KILN_OK; i++) {
        int from;
        if (p->options.fuse && fuse_residual_into(p, i, readers, &from) &&
            merges_into(p, i, p->value_of[m->nodes[i].inputs[from]])) {
            const graph_node *n = &m->nodes[i];
            pipe_step *s = &p->steps[p->value_of[n->inputs[from]]];
            int r = n->inputs[1 - from];
            s->inputs[1] = r < 0 ? -1 : p->value_of[r];
            s->n_inputs = 2;
            if (r >= 0)
                p->steps[s->inputs[1]].uses++;
            s->fused_node = (int)i;
            p->value_of[i] = p->value_of[n->inputs[from]];
            continue;
        }
        if (p->options.fuse && fuse_activation_into(m, i, readers) &&
            merges_into(p, i, p->value_of[m->nodes[i].inputs[0]])) {
            int step = p->value_of[m->nodes[i].inputs[0]];
            p->steps[step].attrs.act = m->nodes[i].attrs.act;
            p->steps[step].attrs.slope = m->nodes[i].attrs.slope;
            p->steps[step].fused_node = (int)i;
            p->value_of[i] = step;
            st = infer_step(p, &p->steps[step]); /* the activation's input may be kept */
            continue;
        }
        st = add_step(p, i);
        if (st == KILN_OK && p->options.fuse && fold_batchnorm_into(m, i, readers)) {
            int before = p->value_of[m->nodes[i].inputs[0]];
            p->steps[before].bn_step = (int)p->count - 1;
            p->steps[p->count - 1].folded_into = before;
        }
    }
    free(readers);
    if (st == KILN_OK && p->options.fuse)
        fuse_act_grads(p);
    return st;
}

/* Whether step s waits in order_backward: its input gradient is sparse
 * and another step reads its input too. */
static int waits_for_others(const pipeline *p, const pipe_step *s)
{
    int (*sparse)(const op_attrs *) = op_get(s->op)->sparse_input_grads;
    return s->n_inputs == 1 && s->inputs[0] >= 0 && p->steps[s->inputs[0]].uses > 1 &&
           sparse && sparse(&s->attrs);
}

/* Whether step s may run backward: every reader of it has (left[s]) and
 * the step whose weight it lends (tie_from), which adds its gradient
 * to s's in s's backward. */
static int backward_ready(const pipeline *p, const int *left, const char *done, int s)
{
    int tie = p->steps[s].tie_from;
    return !done[s] && left[s] == 0 && (tie < 0 || done[tie]);
}

/* back_order: from the last step down, each step once its readers have
 * run, the highest ready one first, but one that waits_for_others only
 * when no other step is ready, so that it adds its gradient into what its
 * input's other readers wrote (touching only the inputs it reaches)
 * instead of writing zeros to the rest. Where none waits, the reverse of
 * the steps. */
static kiln_status order_backward(pipeline *p)
{
    int n = (int)p->count, *left = calloc(p->count + 1, sizeof *left);
    char *done = calloc(p->count + 1, 1);
    p->back_order = calloc(p->count + 1, sizeof *p->back_order);
    p->back_at = calloc(p->count + 1, sizeof *p->back_at);
    if (!left || !done || !p->back_order || !p->back_at) {
        free(left);
        free(done);
        return error_set(KILN_ERR_OUT_OF_MEMORY, "lowering: out of memory");
    }
    for (int s = 0; s < n; s++)
        left[s] = p->steps[s].uses;
    for (int at = 0; at < n; at++) {
        int pick = -1;
        for (int s = n; s-- > 0 && pick < 0;)
            if (backward_ready(p, left, done, s) && !waits_for_others(p, &p->steps[s]))
                pick = s;
        for (int s = n; s-- > 0 && pick < 0;)
            if (backward_ready(p, left, done, s))
                pick = s;
        if (pick < 0) { /* cannot happen: the highest step not done is ready */
            free(left);
            free(done);
            return error_set(KILN_ERR_MODEL, "lowering: no step is ready to run backward");
        }
        done[pick] = 1;
        p->back_order[at] = pick;
        p->back_at[pick] = n + 1 + at;
        for (int k = 0; k < p->steps[pick].n_inputs; k++)
            if (p->steps[pick].inputs[k] >= 0)
                left[p->steps[pick].inputs[k]]--;
    }
    free(left);
    free(done);
    return KILN_OK;
}

/* The steps of m for an input of shape `input` (batch included). */
static kiln_status lower_shaped(const kiln_model *m, kiln_shape input, pipe_options options,
                                pipeline **out);

kiln_status pipeline_lower(const kiln_model *m, size_t batch, pipe_options options,
                           pipeline **out)
{
    if (!m || !out || batch == 0)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "pipeline: model, batch >= 1 and out are "
                                                    "required");
    return lower_shaped(m, shape_with_batch(&m->input, batch), options, out);
}

static kiln_status lower_shaped(const kiln_model *m, kiln_shape input, pipe_options options,
                                pipeline **out)
{
    size_t batch = input.d[0];
    if (!m->finished)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "pipeline: the model is not finished");
    pipeline *p = calloc(1, sizeof *p);
    if (!p)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "pipeline: out of memory");
    p->model = m;
    p->batch = batch;
    p->options = options;
    p->input_shape = input;
    p->loss_step = (int)m->count - 1; /* set by each loss; the last step until then */
    p->steps = calloc(m->count, sizeof *p->steps);
    p->value_of = calloc(m->count, sizeof *p->value_of);
    kiln_status st = p->steps && p->value_of
                         ? lower_steps(p)
                         : error_set(KILN_ERR_OUT_OF_MEMORY, "pipeline: out of memory");
    if (st == KILN_OK)
        st = order_backward(p);
    if (st == KILN_OK && options.plan)
        st = plan_pipeline(p, KILN_ARENA_ALIGN);
    if (st != KILN_OK) {
        pipeline_free(p);
        return st;
    }
    *out = p;
    return KILN_OK;
}

/* ---- allocation ------------------------------------------------------------- */

static kiln_status alloc_one(pipeline *p, kiln_tensor **t, const kiln_shape *s)
{
    return *t ? KILN_OK : tensor_of(p->ctx, s, t);
}

static kiln_status alloc_list(pipeline *p, kiln_tensor **ts, const kiln_shape *shapes, int n)
{
    kiln_status st = KILN_OK;
    for (int i = 0; i < n && st == KILN_OK; i++)
        st = alloc_one(p, &ts[i], &shapes[i]);
    return st;
}

/* Sub-buffer offsets are multiples of KILN_ARENA_ALIGN: enough for any
 * device seen so far, and checked against this one. */
static kiln_status check_alignment(const pipeline *p)
{
    size_t align = p->ctx->info.mem_base_align_bits / 8;
    if (align <= KILN_ARENA_ALIGN && KILN_ARENA_ALIGN % (align ? align : 1) == 0)
        return KILN_OK;
    return error_set(KILN_ERR_UNSUPPORTED, "%s aligns sub-buffers to %zu bytes; kiln places "
                                           "them at multiples of %d", p->ctx->info.name, align,
                     KILN_ARENA_ALIGN);
}

/* Places the planned blocks as views into one arena buffer. */
static kiln_status alloc_arena(pipeline *p)
{
    const kiln_device_info *d = &p->ctx->info;
    if (p->arena_bytes > d->max_alloc_bytes || p->arena_bytes > d->global_mem_bytes / 2) {
        uint64_t limit = d->max_alloc_bytes < d->global_mem_bytes / 2 ? d->max_alloc_bytes
                                                                       : d->global_mem_bytes / 2;
        size_t fits = (size_t)((double)p->batch * (double)limit / (double)p->arena_bytes);
        return error_set(KILN_ERR_TOO_LARGE, "batch %zu needs %.1f MiB of activations, "
                                             "gradients and saved tensors in one buffer; %s "
                                             "allows %.1f MiB per buffer and has %.1f MiB in "
                                             "all; try --batch %zu or less",
                         p->batch, (double)p->arena_bytes / 1048576.0, d->name,
                         (double)d->max_alloc_bytes / 1048576.0,
                         (double)d->global_mem_bytes / 1048576.0, fits ? fits : 1);
    }
    cl_int err;
    p->arena = clCreateBuffer(p->ctx->context, CL_MEM_READ_WRITE, p->arena_bytes, NULL, &err);
    if (err != CL_SUCCESS)
        return error_cl_in(err, "clCreateBuffer", "arena of %zu bytes", p->arena_bytes);
    kiln_status st = KILN_OK;
    for (size_t i = 0; i < p->n_blocks && st == KILN_OK; i++) {
        plan_block *b = &p->blocks[i];
        st = tensor_view(p->ctx, p->arena, b->offset, b->shape.ndim, b->shape.d,
                         b->tensor);
    }
    return st;
}

/* A tied weight (tie =) is a view of its owner's place in the flat
 * parameters; its gradient is a tensor of its own, added to the owner's
 * after the owner's backward (exec.c). */
static kiln_status alloc_tied(pipeline *p, pipe_step *s)
{
    const kiln_shape *ps = &s->shapes.param[0];
    size_t at = p->steps[s->tied_to].flat_at[0];
    s->flat_at[0] = at;
    kiln_status st = tensor_view(p->ctx, p->params->buf, at * sizeof(float), ps->ndim,
                                 ps->d, &s->param[0]);
    return st == KILN_OK ? tensor_of(p->ctx, ps, &s->dparam[0]) : st;
}

static int is_tied(const pipe_step *s, int k)
{
    return k == 0 && s->tied_to >= 0;
}

/* Places every parameter and its gradient in the two flat buffers. */
static kiln_status alloc_flat(pipeline *p)
{
    size_t align = KILN_ARENA_ALIGN / sizeof(float), total = 0;
    for (size_t i = 0; i < p->count; i++)
        for (int k = 0; k < p->steps[i].shapes.n_params; k++)
            if (!is_tied(&p->steps[i], k))
                total += (shape_numel(&p->steps[i].shapes.param[k]) + align - 1) / align * align;
    kiln_shape flat = shape_make(1, total ? total : align, 0, 0, 0);
    kiln_status st = tensor_of(p->ctx, &flat, &p->params);
    if (st == KILN_OK)
        st = tensor_of(p->ctx, &flat, &p->grads);
    if (st == KILN_OK)
        st = kiln_tensor_fill(p->grads, 0.0f);
    if (st == KILN_OK)
        st = kiln_tensor_fill(p->params, 0.0f);
    size_t at = 0;
    for (size_t i = 0; i < p->count && st == KILN_OK; i++) {
        pipe_step *s = &p->steps[i];
        for (int k = 0; k < s->shapes.n_params && st == KILN_OK; k++) {
            const kiln_shape *ps = &s->shapes.param[k];
            if (is_tied(s, k)) {
                st = alloc_tied(p, s);
                continue;
            }
            s->flat_at[k] = at;
            st = tensor_view(p->ctx, p->params->buf, at * sizeof(float), ps->ndim, ps->d,
                             &s->param[k]);
            if (st == KILN_OK)
                st = tensor_view(p->ctx, p->grads->buf, at * sizeof(float), ps->ndim,
                                 ps->d, &s->dparam[k]);
            at += (shape_numel(ps) + align - 1) / align * align;
        }
    }
    return st;
}

/* Every tensor of every step: values, gradients, partials and saved ones
 * in the arena when planned, else each its own; then persistent ones. */
static kiln_status allocate(pipeline *p)
{
    kiln_status st = check_alignment(p);
    if (st == KILN_OK)
        st = tensor_of(p->ctx, &p->input_shape, &p->input);
    if (st == KILN_OK && p->options.plan)
        st = alloc_arena(p);
    for (size_t i = 0; i < p->count && st == KILN_OK && !p->options.plan; i++) {
        pipe_step *s = &p->steps[i];
        st = alloc_one(p, &s->out, &s->shapes.out);
        if (st == KILN_OK)
            st = alloc_one(p, &s->grad, &s->shapes.out);
        if (st == KILN_OK && s->uses > 1)
            st = alloc_one(p, &s->partial, &s->shapes.out);
        if (st == KILN_OK)
            st = alloc_list(p, s->saved, s->shapes.saved, s->shapes.n_saved);
    }
    if (st == KILN_OK && !p->owner)
        st = alloc_flat(p);
    for (size_t i = 0; i < p->count && st == KILN_OK; i++) {
        pipe_step *s = &p->steps[i];
        if (s->bn_step >= 0)
            st = alloc_one(p, &s->folded[0], &s->shapes.param[0]);
        /* the folded bias exists even where the layer has none */
        if (st == KILN_OK && s->bn_step >= 0)
            st = alloc_one(p, &s->folded[1], &p->steps[s->bn_step].shapes.param[1]);
        if (st == KILN_OK && !p->owner)
            st = alloc_list(p, s->buffer, s->shapes.buffer, s->shapes.n_buffers);
    }
    return st;
}

/* A pipeline made by pipeline_create_shared takes its owner's parameters,
 * gradients and buffers: the same tensors, freed by the owner alone. */
static void share_owner_tensors(pipeline *p)
{
    const pipeline *o = p->owner;
    p->params = o->params;
    p->grads = o->grads;
    for (size_t i = 0; i < p->count; i++) {
        memcpy(p->steps[i].param, o->steps[i].param, sizeof p->steps[i].param);
        memcpy(p->steps[i].dparam, o->steps[i].dparam, sizeof p->steps[i].dparam);
        memcpy(p->steps[i].buffer, o->steps[i].buffer, sizeof p->steps[i].buffer);
    }
}

kiln_status pipeline_create(kiln_ctx *ctx, const kiln_model *m, size_t batch,
                            pipe_options options, uint64_t seed, pipeline **out)
{
    if (!ctx)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "pipeline: a context is required");
    pipeline *p;
    kiln_status st = pipeline_lower(m, batch, options, &p);
    if (st != KILN_OK)
        return st;
    p->ctx = ctx;
    p->seed = seed;
    p->own_version = 1;
    p->param_version = &p->own_version;
    for (size_t i = 0; i < p->count; i++) /* a dropout stream per layer */
        p->steps[i].attrs.seed = seed * 0x9e3779b97f4a7c15ull + p->steps[i].node;
    st = allocate(p);
    if (st == KILN_OK)
        st = pipeline_init_params(p, seed);
    if (st != KILN_OK) {
        pipeline_free(p);
        return st;
    }
    *out = p;
    return KILN_OK;
}

/* The caches of a decoding pipeline: (block, 2 x channels) per attention. */
static kiln_status alloc_caches(pipeline *p)
{
    kiln_status st = KILN_OK;
    for (size_t i = 0; i < p->count && st == KILN_OK; i++) {
        pipe_step *s = &p->steps[i];
        kiln_shape kv = shape_make(2, p->model->input.d[0], 2 * s->shapes.out.d[2], 0, 0);
        if (s->op == OP_ATTENTION)
            st = tensor_of(p->ctx, &kv, &s->cache);
    }
    return st;
}

static kiln_status create_shared(const pipeline *owner, kiln_shape input, pipeline **out);

kiln_status pipeline_create_shared(const pipeline *owner, size_t batch, pipeline **out)
{
    if (batch == 0)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "pipeline: batch >= 1 is required");
    return create_shared(owner, shape_with_batch(&owner->model->input, batch), out);
}

kiln_status pipeline_create_decode(const pipeline *owner, pipeline **out)
{
    const kiln_model *m = owner->model;
    if (!m->vocab || m->input.ndim != 1)
        return error_set(KILN_ERR_UNSUPPORTED, "decoding: the model does not take tokens");
    kiln_shape one = shape_make(2, 1, 1, 0, 0);
    pipeline *p;
    kiln_status st = create_shared(owner, one, &p);
    if (st == KILN_OK) {
        p->decode = 1;
        st = alloc_caches(p);
        if (st != KILN_OK)
            pipeline_free(p);
    }
    if (st == KILN_OK)
        *out = p;
    return st;
}

static kiln_status create_shared(const pipeline *owner, kiln_shape input, pipeline **out)
{
    pipeline *p;
    size_t batch = input.d[0];
    kiln_status st = lower_shaped(owner->model, input, owner->options, &p);
    if (st != KILN_OK)
        return st;
    if (p->count != owner->count) { /* lowering does not depend on the batch */
        pipeline_free(p);
        return error_set(KILN_ERR_MODEL, "pipeline at batch %zu has %zu steps, at batch %zu "
                                         "%zu", batch, p->count, owner->batch, owner->count);
    }
    p->ctx = owner->ctx;
    p->seed = owner->seed;
    p->counter = owner->counter;
    p->owner = owner;
    p->param_version = owner->param_version;
    for (size_t i = 0; i < p->count; i++)
        p->steps[i].attrs.seed = owner->steps[i].attrs.seed;
    share_owner_tensors(p);
    st = allocate(p);
    if (st != KILN_OK) {
        pipeline_free(p);
        return st;
    }
    *out = p;
    return KILN_OK;
}

void pipeline_free(pipeline *p)
{
    if (!p)
        return;
    if (p->owner) { /* the owner's tensors stay with the owner */
        for (size_t i = 0; i < p->count; i++) {
            memset(p->steps[i].param, 0, sizeof p->steps[i].param);
            memset(p->steps[i].dparam, 0, sizeof p->steps[i].dparam);
            memset(p->steps[i].buffer, 0, sizeof p->steps[i].buffer);
        }
        p->params = p->grads = NULL;
    }
    for (size_t i = 0; i < p->count; i++) {
        pipe_step *s = &p->steps[i];
        kiln_tensor_free(s->out);
        kiln_tensor_free(s->grad);
        kiln_tensor_free(s->partial);
        for (int k = 0; k < OP_MAX_PARAMS; k++) {
            kiln_tensor_free(s->param[k]);
            kiln_tensor_free(s->dparam[k]);
            kiln_tensor_free(s->folded[k]);
        }
        for (int k = 0; k < OP_MAX_BUFFERS; k++)
            kiln_tensor_free(s->buffer[k]);
        for (int k = 0; k < OP_MAX_SAVED; k++)
            kiln_tensor_free(s->saved[k]);
        kiln_tensor_free(s->cache);
        blas_packed_free(&s->packed);
    }
    if (p->arena)
        clReleaseMemObject(p->arena);
    kiln_tensor_free(p->params);
    kiln_tensor_free(p->grads);
    kiln_tensor_free(p->input);
    free(p->steps);
    free(p->value_of);
    free(p->back_order);
    free(p->back_at);
    free(p->blocks);
    free(p);
}

const char *pipeline_step_name(const pipeline *p, const pipe_step *s)
{
    static _Thread_local char name[96];
    const graph_node *n = &p->model->nodes[s->node];
    snprintf(name, sizeof name, "%zu %s%s%s", s->node, n->kind->name,
             s->fused_node >= 0 ? "+" : "",
             s->fused_node >= 0 ? p->model->nodes[s->fused_node].kind->name : "");
    return name;
}
