/* Lowering: a finished graph becomes an ordered list of steps on one
 * device for one batch size, each with the tensors it reads and writes. */
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"

static kiln_shape batched(const kiln_shape *s, size_t batch)
{
    kiln_shape b = {.ndim = s->ndim + 1, .d = {batch}};
    for (int i = 0; i < s->ndim; i++)
        b.d[i + 1] = s->d[i];
    return b;
}

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

static kiln_status alloc_list(kiln_ctx *ctx, kiln_tensor **ts, const kiln_shape *shapes, int n)
{
    kiln_status st = KILN_OK;
    for (int i = 0; i < n && st == KILN_OK; i++)
        st = tensor_of(ctx, &shapes[i], &ts[i]);
    return st;
}

/* A new step for graph node i. */
static kiln_status add_step(pipeline *p, size_t i)
{
    const graph_node *n = &p->model->nodes[i];
    pipe_step *s = &p->steps[p->count];
    memset(s, 0, sizeof *s);
    s->node = i;
    s->op = n->kind->op;
    s->attrs = n->attrs;
    s->attrs.seed = p->seed * 0x9e3779b97f4a7c15ull + i; /* a dropout stream per layer */
    s->n_inputs = n->kind->n_inputs;
    kiln_shape in[OP_MAX_INPUTS];
    for (int k = 0; k < s->n_inputs; k++) {
        int from = n->inputs[k];
        s->inputs[k] = from < 0 ? -1 : p->value_of[from];
        in[k] = from < 0 ? shape_of(p->input) : shape_of(p->steps[s->inputs[k]].out);
    }
    kiln_status st = op_infer(s->op, &s->attrs, in, &s->shapes);
    if (st == KILN_OK)
        st = tensor_of(p->ctx, &s->shapes.out, &s->out);
    if (st == KILN_OK)
        st = tensor_of(p->ctx, &s->shapes.out, &s->grad);
    if (st == KILN_OK)
        st = alloc_list(p->ctx, s->param, s->shapes.param, s->shapes.n_params);
    if (st == KILN_OK)
        st = alloc_list(p->ctx, s->dparam, s->shapes.param, s->shapes.n_params);
    if (st == KILN_OK)
        st = alloc_list(p->ctx, s->buffer, s->shapes.buffer, s->shapes.n_buffers);
    if (st == KILN_OK)
        st = alloc_list(p->ctx, s->saved, s->shapes.saved, s->shapes.n_saved);
    p->value_of[i] = (int)p->count++;
    return st;
}

static kiln_status lower(pipeline *p, int fuse)
{
    const kiln_model *m = p->model;
    int *readers = count_readers(m);
    if (!readers)
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "lowering: out of memory");
    kiln_status st = KILN_OK;
    for (size_t i = 0; i < m->count && st == KILN_OK; i++) {
        if (fuse && fuse_activation_into(m, i, readers)) {
            int step = p->value_of[m->nodes[i].inputs[0]];
            p->steps[step].attrs.act = m->nodes[i].attrs.act;
            p->steps[step].attrs.slope = m->nodes[i].attrs.slope;
            p->value_of[i] = step;
            continue;
        }
        st = add_step(p, i);
    }
    free(readers);
    return st;
}

kiln_status pipeline_create(kiln_ctx *ctx, const kiln_model *m, size_t batch, int fuse,
                            uint64_t seed, pipeline **out)
{
    if (!ctx || !m || !out || batch == 0)
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "pipeline: context, model, batch >= 1 and "
                                                    "out are required");
    if (!m->finished)
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "pipeline: the model is not finished");
    pipeline *p = calloc(1, sizeof *p);
    if (!p)
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "pipeline: out of memory");
    p->ctx = ctx;
    p->model = m;
    p->batch = batch;
    p->fused = fuse;
    p->seed = seed;
    p->steps = calloc(m->count, sizeof *p->steps);
    p->value_of = calloc(m->count, sizeof *p->value_of);
    kiln_status st = p->steps && p->value_of
                         ? KILN_OK
                         : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "pipeline: out of memory");
    kiln_shape in = batched(&m->input, batch);
    if (st == KILN_OK)
        st = tensor_of(ctx, &in, &p->input);
    if (st == KILN_OK)
        st = lower(p, fuse);
    if (st == KILN_OK)
        st = pipeline_init_params(p, seed);
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
    for (size_t i = 0; i < p->count; i++) {
        pipe_step *s = &p->steps[i];
        kiln_tensor_free(s->out);
        kiln_tensor_free(s->grad);
        kiln_tensor_free(s->partial);
        for (int k = 0; k < OP_MAX_PARAMS; k++) {
            kiln_tensor_free(s->param[k]);
            kiln_tensor_free(s->dparam[k]);
        }
        for (int k = 0; k < OP_MAX_BUFFERS; k++)
            kiln_tensor_free(s->buffer[k]);
        for (int k = 0; k < OP_MAX_SAVED; k++)
            kiln_tensor_free(s->saved[k]);
    }
    kiln_tensor_free(p->input);
    free(p->steps);
    free(p->value_of);
    free(p);
}
