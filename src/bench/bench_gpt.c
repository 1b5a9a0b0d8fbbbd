/* kiln bench for token models (GPTs): training tokens per second through
 * kiln_net_train_step, the share of a training step that the attention
 * kernels take (each attention layer's forward and backward timed alone at
 * the step's shapes), and generation tokens per second through
 * kiln_net_generate with its KV cache and with every token running the
 * whole window (net_generate's cache = 0). Random weights and tokens: the
 * work per token does not depend on what the model learned. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/pipeline.h"
#include "data/text.h"
#include "net/net.h"

typedef struct {
    kiln_ctx *ctx;
    op_attrs attrs;
    op_args args;
} attn_state;

static kiln_status attn_pass(attn_state *s)
{
    kiln_status st = op_forward(OP_ATTENTION, &s->args);
    if (st == KILN_OK)
        st = op_backward(OP_ATTENTION, &s->args);
    return st;
}

/* Seconds of one attention layer's forward and backward on (batch, T, 3C)
 * values drawn from [-1, 1], the best of three after a warm-up. */
static kiln_status time_attention(kiln_ctx *ctx, const pipe_step *step, double *seconds)
{
    attn_state s = {ctx, step->attrs, {0}};
    s.args = (op_args){.ctx = ctx, .attrs = &s.attrs, .training = 1};
    kiln_shape in = step->shapes.out, out = step->shapes.out;
    in.d[2] *= 3;
    kiln_tensor *t[5] = {NULL};
    kiln_status st = KILN_OK;
    const kiln_shape *shapes[5] = {&in, &out, &step->shapes.saved[0], &out, &in};
    for (int i = 0; i < 5 && st == KILN_OK; i++)
        st = tensor_of(ctx, shapes[i], &t[i]);
    float *h = st == KILN_OK ? malloc(t[0]->numel * sizeof *h) : NULL;
    if (st == KILN_OK && !h)
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_bench_gpt: out of host memory");
    for (size_t i = 0; st == KILN_OK && i < t[0]->numel; i++)
        h[i] = (float)((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
    if (st == KILN_OK)
        st = tensor_write(t[0], h, t[0]->numel, 1);
    if (st == KILN_OK)
        st = tensor_write(t[3], h, t[3]->numel, 1);
    s.args.in[0] = t[0];
    s.args.out = t[1];
    s.args.saved[0] = t[2];
    s.args.dout = t[3];
    s.args.din[0] = t[4];
    *seconds = INFINITY;
    for (int r = 0; r < 4 && st == KILN_OK; r++) {
        double t0 = now_seconds();
        st = attn_pass(&s);
        if (st == KILN_OK)
            st = kiln_ctx_finish(ctx);
        if (r > 0)
            *seconds = fmin(*seconds, now_seconds() - t0);
    }
    free(h);
    for (int i = 0; i < 5; i++)
        kiln_tensor_free(t[i]);
    return st;
}

/* A vocabulary of V characters from '!' up, so that generate can write. */
static kiln_status bench_vocab(kiln_net *net, size_t V)
{
    char *v = malloc(4 * V + 1);
    if (!v)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_bench_gpt: out of host memory");
    size_t n = 0;
    for (size_t i = 0; i < V; i++)
        n += utf8_encode((uint32_t)(0x21 + i + (0x21 + i >= 0xd800 ? 0x800 : 0)), v + n);
    v[n] = '\0';
    kiln_status st = kiln_net_set_vocab(net, v);
    free(v);
    return st;
}

/* Tokens per second of `tokens` tokens generated from an empty prompt. */
static kiln_status time_generation(kiln_net *net, size_t tokens, int cache, double *per_s)
{
    kiln_status st = net_generate(net, "", 2, 1.0, 0, 1, cache, NULL, NULL); /* warm-up */
    double t0 = now_seconds();
    if (st == KILN_OK)
        st = net_generate(net, "", tokens, 1.0, 0, 1, cache, NULL, NULL);
    *per_s = st == KILN_OK ? (double)tokens / (now_seconds() - t0) : 0;
    return st;
}

/* Training steps timed, the best taken (bench/gpt_speed.py times as many
 * of PyTorch's): a shared machine's slow spells last some tenths of a
 * second, longer than three steps. */
#define GPT_TIMED_STEPS 10

static kiln_status train_tokens(kiln_net *net, size_t batch, size_t T, size_t V,
                                kiln_bench_gpt_result *r)
{
    float *x = malloc(batch * T * sizeof *x), *y = malloc(batch * T * sizeof *y);
    kiln_status st = x && y ? KILN_OK
                            : error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_bench_gpt: out of "
                                                                "host memory");
    for (size_t i = 0; st == KILN_OK && i < batch * T; i++) {
        x[i] = (float)((i * 2654435761u) % V);
        y[i] = (float)((i * 40503u + 7) % V);
    }
    float loss;
    if (st == KILN_OK)
        st = kiln_net_train_step(net, x, y, batch, &loss); /* builds the kernels */
    double best = INFINITY;
    for (int rep = 0; rep < GPT_TIMED_STEPS && st == KILN_OK; rep++) {
        double t0 = now_seconds();
        st = kiln_net_train_step(net, x, y, batch, &loss);
        best = fmin(best, now_seconds() - t0);
    }
    r->step_ms = st == KILN_OK ? 1e3 * best : 0;
    r->train_tokens_per_s = st == KILN_OK ? (double)(batch * T) / best : 0;
    free(x);
    free(y);
    return st;
}

kiln_status kiln_bench_gpt(kiln_ctx *ctx, kiln_model *m, size_t batch,
                           kiln_bench_gpt_result *r)
{
    if (!ctx || !m || !r)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_bench_gpt: context, model and result "
                                                    "are required");
    memset(r, 0, sizeof *r);
    size_t V = kiln_model_vocab(m), T = kiln_model_block(m);
    if (V == 0)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_bench_gpt: the model takes no tokens");
    kiln_net *net = NULL;
    kiln_status st = kiln_net_create(ctx, m, batch, &net);
    batch = st == KILN_OK ? kiln_net_max_batch(net) : 0;
    r->batch = batch;
    r->block = T;
    if (st == KILN_OK)
        st = train_tokens(net, batch, T, V, r);
    double attn = 0;
    for (size_t i = 0; st == KILN_OK && i < net->main.p->count; i++) {
        double s = 0;
        if (net->main.p->steps[i].op == OP_ATTENTION)
            st = time_attention(ctx, &net->main.p->steps[i], &s);
        attn += s;
    }
    r->attention_share = st == KILN_OK && r->step_ms > 0 ? 1e3 * attn / r->step_ms : 0;
    r->generated = T > 1 ? T - 1 : 1; /* within the block: the cache's case */
    if (st == KILN_OK)
        st = bench_vocab(net, V);
    if (st == KILN_OK)
        st = time_generation(net, r->generated, 1, &r->generate_tokens_per_s);
    if (st == KILN_OK)
        st = time_generation(net, r->generated, 0, &r->window_tokens_per_s);
    kiln_net_free(net);
    return st;
}
