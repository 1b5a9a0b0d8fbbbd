/* `kiln summary`: the layers of a model and their totals. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/pipeline.h"
#include "runtime/rng.h"

/* 5315 -> "5,315" */
static const char *grouped(uint64_t v, char *buf, size_t size)
{
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%llu", (unsigned long long)v), used = 0;
    for (int i = 0; i < n && used + 2 < (int)size; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            buf[used++] = ',';
        buf[used++] = digits[i];
    }
    buf[used] = '\0';
    return buf;
}

static const char *input_name(const kiln_model *m, int index)
{
    return index < 0 ? "input" : m->nodes[index].name;
}

kiln_status kiln_model_summary(kiln_model *m, kiln_write_fn fn, void *user)
{
    const kiln_writer w = {fn, user}, *out = &w;
    if (!m)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_model_summary: model and stream are "
                                                    "required");
    kiln_status st = graph_finish(m);
    if (st != KILN_OK)
        return st;
    char shape[64], count[32];
    int wname = 14, wfrom = 16; /* wider for long names (transformer.h.0.attn.c_attn) */
    for (size_t i = 0; i < m->count; i++) {
        const graph_node *n = &m->nodes[i];
        int len = n->has_name ? (int)strlen(n->name) : 0, from = 0;
        for (int k = 0; k < n->kind->n_inputs; k++)
            from += (int)strlen(input_name(m, n->inputs[k])) + 2 * k;
        wname = len > wname ? len : wname;
        wfrom = from > wfrom ? from : wfrom;
    }
    writef(out, "%-4s %-12s %-*s %-*s %-14s %12s\n", "#", "layer", wname, "name", wfrom,
            "from", "output", "parameters");
    writef(out, "%-4s %-12s %-*s %-*s %-14s %12s\n", "", "input", wname, "", wfrom, "",
            shape_str(&m->input, shape, sizeof shape), "");
    for (size_t i = 0; i < m->count; i++) {
        const graph_node *n = &m->nodes[i];
        char from[2 * GRAPH_NAME_MAX + 4];
        snprintf(from, sizeof from, "%s%s%s", input_name(m, n->inputs[0]),
                 n->kind->n_inputs > 1 ? ", " : "",
                 n->kind->n_inputs > 1 ? input_name(m, n->inputs[1]) : "");
        writef(out, "%-4zu %-12s %-*s %-*s %-14s %12s%s\n", i, n->kind->name, wname,
                n->has_name ? n->name : "", wfrom, from, shape_str(&n->out, shape, sizeof shape),
                grouped(graph_node_params(n), count, sizeof count),
                n->tie >= 0 ? " (weight tied)" : "");
    }
    writef(out, "trainable parameters: %s\n",
            grouped(kiln_model_param_count(m), count, sizeof count));
    writef(out, "buffer values: %s (batchnorm running statistics and batch counts)\n",
            grouped(kiln_model_buffer_count(m), count, sizeof count));
    const char *loss = kiln_model_train_setting(m, "loss");
    const graph_node *last = m->count ? &m->nodes[m->count - 1] : NULL;
    loss = loss ? loss : "cross_entropy";
    if (last && strcmp(last->kind->name, "softmax") == 0 && last->out.ndim == 1 &&
        strcmp(loss, "cross_entropy") == 0)
        writef(out, "prediction head: layer %zu softmax; cross_entropy trains on the "
                         "logits before it, predictions are probabilities\n", m->count - 1);
    else if (last && strcmp(last->kind->name, "sigmoid") == 0 && strcmp(loss, "bce") == 0)
        writef(out, "prediction head: layer %zu sigmoid; bce trains on the logits before "
                         "it (as BCEWithLogitsLoss), predictions are probabilities\n",
                    m->count - 1);
    return KILN_OK;
}

static double mib(size_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

kiln_status kiln_model_memory(kiln_model *m, size_t batch, kiln_write_fn fn, void *user)
{
    const kiln_writer w = {fn, user}, *out = &w;
    if (!m || batch == 0)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_model_memory: model, batch >= 1 and "
                                                    "stream are required");
    kiln_status st = graph_finish(m);
    for (int fuse = 1; fuse >= 0 && st == KILN_OK; fuse--) {
        pipeline *p;
        st = pipeline_lower(m, batch, (pipe_options){.fuse = fuse, .plan = 1}, &p);
        if (st != KILN_OK)
            break;
        size_t planned, unplanned, params;
        plan_memory(p, &planned, &unplanned, &params);
        writef(out, "%s, batch %zu: %zu steps; activations, gradients and saved tensors "
                     "%.2f MiB planned (%.2f MiB one buffer each); parameters, gradients and "
                     "buffers %.2f MiB\n",
                fuse ? "fused" : "unfused", batch, p->count, mib(planned), mib(unplanned),
                mib(params));
        pipeline_free(p);
    }
    return st;
}

kiln_status kiln_model_dot(kiln_model *m, kiln_write_fn fn, void *user)
{
    const kiln_writer w = {fn, user}, *out = &w;
    if (!m)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_model_dot: model and stream are "
                                                    "required");
    kiln_status st = graph_finish(m);
    pipeline *p = NULL;
    if (st == KILN_OK)
        st = pipeline_lower(m, 1, (pipe_options){.fuse = 1}, &p);
    if (st != KILN_OK)
        return st;
    char shape[64];
    writef(out, "digraph model {\n  rankdir=TB;\n  node [shape=box, fontname=\"sans\"];\n");
    writef(out, "  input [label=\"input\\n%s\", shape=ellipse];\n",
                 shape_str(&m->input, shape, sizeof shape));
    for (size_t i = 0; i < p->count; i++) {
        const pipe_step *s = &p->steps[i];
        kiln_shape sample = shape_without_batch(&s->shapes.out);
        writef(out, "  s%zu [label=\"%s\\n%s\"];\n", i, pipeline_step_name(p, s),
                shape_str(&sample, shape, sizeof shape));
        for (int k = 0; k < s->n_inputs; k++) {
            if (s->inputs[k] < 0)
                writef(out, "  input -> s%zu;\n", i);
            else
                writef(out, "  s%d -> s%zu;\n", s->inputs[k], i);
        }
    }
    writef(out, "}\n");
    pipeline_free(p);
    return KILN_OK;
}

/* A random batch for the pipeline's input and a target for its loss. */
/* Random inputs (token ids below vocab for a sequence model, else uniform
 * in [-1, 1]) and targets: class ids of the last dimension for
 * cross-entropy, (batch) or (batch, time), else uniform in [0, 1]. */
static kiln_status random_batch(pipeline *p, loss_kind loss, size_t vocab, kiln_tensor **target)
{
    kiln_rng rng;
    rng_seed(&rng, 1);
    kiln_shape out = p->steps[p->count - 1].shapes.out;
    int ce = loss == LOSS_CROSS_ENTROPY;
    size_t classes = out.d[out.ndim - 1];
    kiln_shape ts = !ce ? out
                    : out.ndim == 3 ? shape_make(2, out.d[0], out.d[1], 0, 0)
                                    : shape_make(1, out.d[0], 0, 0, 0);
    size_t n = kiln_tensor_numel(p->input), nt = shape_numel(&ts);
    float *x = malloc((n > nt ? n : nt) * sizeof *x);
    if (!x)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "trace: out of host memory");
    rng_fill(&rng, x, n, -1, 1);
    for (size_t i = 0; vocab && i < n; i++)
        x[i] = (float)(rng_next(&rng) % vocab);
    kiln_status st = kiln_tensor_upload(p->input, x, n);
    for (size_t i = 0; i < nt; i++)
        x[i] = ce ? (float)(rng_next(&rng) % classes) : (float)rng_uniform(&rng, 0, 1);
    if (st == KILN_OK)
        st = tensor_of(p->ctx, &ts, target);
    if (st == KILN_OK)
        st = kiln_tensor_upload(*target, x, nt);
    free(x);
    return st;
}

static loss_kind model_loss(const kiln_model *m, const kiln_shape *out)
{
    const char *name = kiln_model_train_setting(m, "loss");
    for (int k = 0; name && k < LOSS_COUNT; k++)
        if (strcmp(name, loss_name((loss_kind)k)) == 0)
            return (loss_kind)k;
    return out->ndim == 2 || kiln_model_vocab(m) > 0 ? LOSS_CROSS_ENTROPY : LOSS_MSE;
}

/* What one_step records: launches printed to trace, GEMM shapes into
 * gemms, a profile of `steps` steps into totals; any may be NULL. */
typedef struct {
    kiln_writer trace;
    gemm_log *gemms;
    kiln_writer totals;
    int steps;
    uint64_t launches;
} step_watch;

/* Training steps (forward, loss, backward) of random data through model m,
 * after one unwatched warm-up step. */
static kiln_status watched_steps(kiln_model *m, kiln_ctx *ctx, size_t batch, int fused,
                                 step_watch *w)
{
    kiln_status st = graph_finish(m);
    pipeline *p = NULL;
    kiln_tensor *target = NULL, *loss = NULL;
    kiln_shape one = shape_make(1, 1, 0, 0, 0);
    if (st == KILN_OK)
        st = pipeline_create(ctx, m, batch, (pipe_options){.fuse = fused, .plan = 1}, 1, &p);
    loss_kind kind = p ? model_loss(m, &p->steps[p->count - 1].shapes.out) : LOSS_MSE;
    if (st == KILN_OK)
        st = random_batch(p, kind, (size_t)kiln_model_vocab(m), &target);
    if (st == KILN_OK)
        st = tensor_of(ctx, &one, &loss);
    int steps = w->steps > 0 ? w->steps : 1;
    for (int i = -1; i < steps && st == KILN_OK; i++) {
        st = kiln_ctx_finish(ctx);
        uint64_t before = kiln_ctx_launches(ctx);
        if (st == KILN_OK && i == 0) {
            kiln_ctx_set_trace(ctx, w->trace.fn, w->trace.user);
            blas_set_log(ctx, w->gemms);
            if (w->totals.fn)
                st = kiln_ctx_profile_begin(ctx);
        }
        if (st == KILN_OK)
            st = pipeline_forward(p, 1);
        if (st == KILN_OK)
            st = pipeline_loss(p, kind, 0, target, loss);
        if (st == KILN_OK)
            st = pipeline_backward(p, 1);
        if (i == 0)
            w->launches = kiln_ctx_launches(ctx) - before;
    }
    kiln_ctx_set_trace(ctx, NULL, NULL);
    blas_set_log(ctx, NULL);
    if (st == KILN_OK && w->totals.fn)
        st = kiln_ctx_profile_end(ctx, NULL, (size_t)steps, w->totals.fn, w->totals.user);
    if (st == KILN_OK)
        st = kiln_ctx_finish(ctx);
    profile_discard(ctx);
    kiln_tensor_free(target);
    kiln_tensor_free(loss);
    pipeline_free(p);
    return st;
}

kiln_status kiln_model_trace_step(kiln_model *m, kiln_ctx *ctx, size_t batch, int fused,
                                  kiln_write_fn fn, void *user)
{
    const kiln_writer out = {fn, user};
    if (!m || !ctx)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_model_trace_step: model, context "
                                                    "and stream are required");
    writef(&out, "one training step, batch %zu, %s:\n", batch, fused ? "fused" : "unfused");
    step_watch w = {.trace = out};
    kiln_status st = watched_steps(m, ctx, batch, fused, &w);
    if (st == KILN_OK)
        writef(&out, "%llu launches\n", (unsigned long long)w.launches);
    return st;
}

kiln_status kiln_model_profile_steps(kiln_model *m, kiln_ctx *ctx, size_t batch, int steps,
                                     kiln_write_fn fn, void *user)
{
    const kiln_writer out = {fn, user};
    if (!m || !ctx || !fn || steps < 1)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_model_profile_steps: model, "
                                                    "context, stream and steps >= 1 are "
                                                    "required");
    step_watch w = {.totals = out, .steps = steps};
    return watched_steps(m, ctx, batch, 1, &w);
}

kiln_status kiln_model_gemm_shapes(kiln_model *m, kiln_ctx *ctx, size_t batch,
                                   kiln_gemm_shape *out, size_t cap, size_t *count)
{
    if (!m || !ctx || !out || !count)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_model_gemm_shapes: model, context "
                                                    "and outputs are required");
    gemm_log log = {.count = 0};
    step_watch w = {.gemms = &log};
    kiln_status st = watched_steps(m, ctx, batch, 1, &w);
    *count = 0;
    for (size_t i = 0; st == KILN_OK && i < log.count && *count < cap; i++, (*count)++) {
        const gemm_shape *g = &log.shapes[i];
        out[i] = (kiln_gemm_shape){g->ta ? KILN_TRANS : KILN_NO_TRANS,
                                   g->tb ? KILN_TRANS : KILN_NO_TRANS, g->m, g->n, g->k};
    }
    return st;
}
