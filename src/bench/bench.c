/* kiln bench: what a device does for kiln, each number the best of a few
 * timed repetitions after a warm-up: SGEMM GFLOPS through every engine
 * (CLBlast untuned, CLBlast tuned, kiln's own), fused kernels against a
 * plain copy kernel of the same bytes, launch latency, host transfers and
 * training throughput.
 *
 * src/bench/ holds the library's entry points that sit above training:
 * kiln_bench and kiln_bench_* (the `kiln bench` command's library side,
 * also used by `kiln tune`'s workers). It may call every layer below it
 * (train/, compiler/, graph/, ops/, blas/, runtime/). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "blas/blas.h"
#include "compiler/pipeline.h"
#include "optim/optim.h"
#include "net/config.h"

typedef kiln_status (*bench_fn)(void *user);

/* Best seconds per call of fn over `reps` calls, five times. */
static kiln_status best_time(kiln_ctx *ctx, bench_fn fn, void *user, int reps, double *out)
{
    kiln_status st = fn(user);
    if (st == KILN_OK)
        st = kiln_ctx_finish(ctx);
    *out = INFINITY;
    for (int t = 0; t < 5 && st == KILN_OK; t++) {
        double t0 = now_seconds();
        for (int i = 0; i < reps && st == KILN_OK; i++)
            st = fn(user);
        if (st == KILN_OK)
            st = kiln_ctx_finish(ctx);
        *out = fmin(*out, (now_seconds() - t0) / reps);
    }
    return st;
}

/* ---- GEMM ------------------------------------------------------------------ */

typedef struct {
    kiln_ctx *ctx;
    kiln_gemm_shape g;
    kiln_tensor *a, *b, *c;
} gemm_state;

static kiln_status run_gemm(void *u)
{
    gemm_state *s = u;
    return kiln_gemm(s->ctx, s->g.ta, s->g.tb, 1.0f, s->a, s->b, 0.0f, s->c);
}

static kiln_status matrix(kiln_ctx *ctx, size_t rows, size_t cols, kiln_tensor **out)
{
    size_t shape[2] = {rows, cols};
    kiln_status st = kiln_tensor_create(ctx, 2, shape, out);
    return st == KILN_OK ? kiln_tensor_fill(*out, 0.5f) : st;
}

kiln_status kiln_bench_gemm(kiln_ctx *ctx, const kiln_gemm_shape *g, double *gflops)
{
    gemm_state s = {.ctx = ctx, .g = *g};
    int ta = g->ta == KILN_TRANS, tb = g->tb == KILN_TRANS;
    kiln_status st = matrix(ctx, ta ? g->k : g->m, ta ? g->m : g->k, &s.a);
    if (st == KILN_OK)
        st = matrix(ctx, tb ? g->n : g->k, tb ? g->k : g->n, &s.b);
    if (st == KILN_OK)
        st = matrix(ctx, g->m, g->n, &s.c);
    double flops = 2.0 * (double)g->m * (double)g->n * (double)g->k, t;
    int reps = (int)fmax(1.0, fmin(20.0, 1e9 / flops));
    if (st == KILN_OK)
        st = best_time(ctx, run_gemm, &s, reps, &t);
    *gflops = st == KILN_OK ? flops / t * 1e-9 : 0;
    kiln_tensor_free(s.a);
    kiln_tensor_free(s.b);
    kiln_tensor_free(s.c);
    return st;
}

/* Square sizes, then the largest products of a training step of the two
 * Fashion-MNIST examples at batch 128 (forward, weight and input
 * gradients of the first linear layer and of the second convolution). */
static void gemm_shapes(int quick, kiln_bench_result *r)
{
    static const size_t full[] = {128, 256, 512, 1024, 2048}, small[] = {64, 96};
    static const kiln_gemm_shape models[] = {
        {KILN_NO_TRANS, KILN_TRANS, 128, 256, 784},    {KILN_TRANS, KILN_NO_TRANS, 256, 784, 128},
        {KILN_NO_TRANS, KILN_NO_TRANS, 64, 25088, 288}, {KILN_NO_TRANS, KILN_TRANS, 64, 288, 25088},
        {KILN_TRANS, KILN_NO_TRANS, 288, 25088, 64},
    };
    size_t nsq = quick ? 2 : 5;
    r->gemm_count = 0;
    for (size_t i = 0; i < nsq; i++) {
        size_t n = quick ? small[i] : full[i];
        r->gemm[r->gemm_count++] = (kiln_gemm_shape){KILN_NO_TRANS, KILN_NO_TRANS, n, n, n};
    }
    for (size_t i = 0; !quick && i < sizeof models / sizeof models[0]; i++)
        r->gemm[r->gemm_count++] = models[i];
}

static kiln_status gemm_column(kiln_ctx *ctx, kiln_gemm_engine engine, kiln_bench_result *r,
                               double *column)
{
    kiln_ctx_set_gemm(ctx, engine);
    kiln_status st = KILN_OK;
    for (size_t i = 0; i < r->gemm_count && st == KILN_OK; i++)
        st = kiln_bench_gemm(ctx, &r->gemm[i], &column[i]);
    kiln_ctx_set_gemm(ctx, KILN_GEMM_AUTO);
    return st;
}

/* ---- memory-bound kernels ------------------------------------------------------ */

typedef struct {
    kiln_ctx *ctx;
    kiln_tensor *a, *b, *c, *bias;
    op_attrs attrs;
    cl_kernel copy;
    pipeline *p;
    optimizer *opt;
} kernel_state;

static kiln_status run_copy(void *u)
{
    kernel_state *s = u;
    cl_ulong n = s->a->numel;
    return launch_1d(s->ctx, s->copy, "copy", n, 0, KARG(s->a->buf), KARG(s->b->buf),
                     KARG(n));
}

/* kind with s->attrs (act stays only on the activation op, which reads it). */
static kiln_status run_op(kernel_state *s, op_kind kind, int two_inputs)
{
    if (kind != OP_ACTIVATION)
        s->attrs.act = KILN_ACT_NONE;
    op_args c = {.ctx = s->ctx, .attrs = &s->attrs, .training = 1, .in = {s->a, two_inputs ? s->c : NULL},
                 .out = s->b};
    return op_forward(kind, &c);
}

static kiln_status run_relu(void *u)
{
    kernel_state *s = u;
    s->attrs.act = KILN_ACT_RELU;
    return run_op(s, OP_ACTIVATION, 0);
}

static kiln_status run_gelu(void *u)
{
    kernel_state *s = u;
    s->attrs.act = KILN_ACT_GELU;
    return run_op(s, OP_ACTIVATION, 0);
}

static kiln_status run_add(void *u)
{
    kernel_state *s = u;
    s->attrs.act = KILN_ACT_NONE; /* the kernels before set one */
    return run_op(s, OP_ADD, 1);
}

static kiln_status run_dropout(void *u)
{
    kernel_state *s = u;
    s->attrs.act = KILN_ACT_NONE;
    s->attrs.p = 0.3f;
    s->attrs.counter++;
    return run_op(s, OP_DROPOUT, 0);
}

/* In place, as the linear and conv2d epilogues run. */
static kiln_status run_bias_relu(void *u)
{
    kernel_state *s = u;
    return op_bias_act(s->ctx, KILN_ACT_RELU, 0, s->b, s->bias, s->bias->numel,
                       s->b->numel / s->bias->numel / 128);
}

static kiln_status run_adam(void *u)
{
    kernel_state *s = u;
    return optim_step(s->opt, 1e-3f, NULL);
}

/* A linear layer with n parameters (n a multiple of 1024), for the
 * optimizer's kernel. */
static kiln_status adam_state(kernel_state *s, size_t n)
{
    char text[128];
    snprintf(text, sizeof text, "[input]\nshape = 1024\n[linear]\nout = %zu\nbias = false\n",
             n / 1024);
    kiln_model *m = NULL;
    kiln_status st = kiln_model_parse(text, "bench", &m);
    if (st == KILN_OK)
        st = graph_finish(m);
    if (st == KILN_OK)
        st = pipeline_create(s->ctx, m, 1, (pipe_options){.fuse = 1}, 1, &s->p);
    optim_config oc = optim_defaults(OPTIM_ADAM);
    if (st == KILN_OK)
        st = optim_create(s->p, &oc, &s->opt);
    if (st == KILN_OK)
        st = kiln_tensor_fill(s->p->grads, 0.01f);
    kiln_model_free(m);
    return st;
}

typedef struct {
    const char *name;
    bench_fn fn;
    double bytes; /* what the kernel must read and write per element */
} kernel_case;

static kiln_status bench_kernels(kiln_ctx *ctx, int quick, kiln_bench_result *r)
{
    /* 256 MiB a tensor: past the last-level cache of most machines (300 MiB on
     * some cloud CPUs), so that in-place kernels are not measured in cache */
    size_t n = quick ? (1u << 16) : (1u << 26), channels = 256;
    kernel_state s = {.ctx = ctx, .attrs = op_attrs_default()};
    kiln_shape planes = shape_make(4, 128, channels, n / 128 / channels, 1);
    kiln_status st = kernel_get(ctx, "tensor.cl", "", "copy", &s.copy);
    if (st == KILN_OK)
        st = tensor_of(ctx, &planes, &s.a);
    if (st == KILN_OK)
        st = tensor_of(ctx, &planes, &s.b);
    if (st == KILN_OK)
        st = tensor_of(ctx, &planes, &s.c);
    if (st == KILN_OK)
        st = kiln_tensor_create(ctx, 1, &channels, &s.bias);
    if (st == KILN_OK)
        st = kiln_tensor_fill(s.a, -0.5f);
    if (st == KILN_OK)
        st = kiln_tensor_fill(s.c, 0.25f);
    if (st == KILN_OK)
        st = kiln_tensor_fill(s.bias, 0.1f);
    if (st == KILN_OK)
        st = adam_state(&s, n);
    double t;
    if (st == KILN_OK && (st = best_time(ctx, run_copy, &s, 5, &t)) == KILN_OK)
        r->copy_gbs = 8.0 * (double)n / t * 1e-9;
    const kernel_case cases[] = {
        {"relu", run_relu, 8},           {"gelu", run_gelu, 8},
        {"add", run_add, 12},            {"dropout", run_dropout, 8},
        {"bias + relu", run_bias_relu, 8}, {"adam", run_adam, 28}, /* p g m v in, p m v out */
    };
    r->kernel_count = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0] && st == KILN_OK; i++) {
        st = best_time(ctx, cases[i].fn, &s, 5, &t);
        double elements = cases[i].fn == run_adam ? (double)s.p->params->numel : (double)n;
        r->kernel_name[r->kernel_count] = cases[i].name;
        r->kernel_gbs[r->kernel_count++] = cases[i].bytes * elements / t * 1e-9;
    }
    optim_free(s.opt);
    pipeline_free(s.p);
    kiln_tensor_free(s.a);
    kiln_tensor_free(s.b);
    kiln_tensor_free(s.c);
    kiln_tensor_free(s.bias);
    return st;
}

/* ---- latency and transfers ------------------------------------------------------- */

typedef struct {
    kiln_tensor *t;
    float *host;
    kernel_state k;
} transfer_state;

static kiln_status run_upload(void *u)
{
    transfer_state *s = u;
    return kiln_tensor_upload(s->t, s->host, s->t->numel);
}

static kiln_status run_download(void *u)
{
    transfer_state *s = u;
    return kiln_tensor_download(s->t, s->host, s->t->numel);
}

static kiln_status bench_transfers(kiln_ctx *ctx, int quick, kiln_bench_result *r)
{
    size_t n = quick ? (1u << 16) : (1u << 24), one = 1;
    transfer_state s = {.k = {.ctx = ctx, .attrs = op_attrs_default()}};
    double t;
    kiln_status st = kiln_tensor_create(ctx, 1, &n, &s.t);
    if (st == KILN_OK && !(s.host = calloc(n, sizeof(float))))
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "bench: out of memory");
    if (st == KILN_OK && (st = best_time(ctx, run_upload, &s, 2, &t)) == KILN_OK)
        r->upload_gbs = 4.0 * (double)n / t * 1e-9;
    if (st == KILN_OK && (st = best_time(ctx, run_download, &s, 2, &t)) == KILN_OK)
        r->download_gbs = 4.0 * (double)n / t * 1e-9;
    if (st == KILN_OK)
        st = kiln_tensor_create(ctx, 1, &one, &s.k.a);
    if (st == KILN_OK)
        st = kiln_tensor_create(ctx, 1, &one, &s.k.b);
    if (st == KILN_OK && (st = best_time(ctx, run_relu, &s.k, 50, &t)) == KILN_OK)
        r->launch_us = t * 1e6;
    kiln_tensor_free(s.k.a);
    kiln_tensor_free(s.k.b);
    kiln_tensor_free(s.t);
    free(s.host);
    return st;
}

kiln_status kiln_bench(const char *selector, int quick, kiln_bench_result *out)
{
    if (!out)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_bench: result is required");
    memset(out, 0, sizeof *out);
    kiln_ctx *ctx;
    kiln_status st = ctx_open(selector, 0, &ctx);
    if (st != KILN_OK)
        return st;
    gemm_shapes(quick, out);
    st = gemm_column(ctx, KILN_GEMM_CLBLAST, out, out->gemm_default);
    if (st == KILN_OK && ctx->info.type == KILN_DEVICE_CPU)
        st = gemm_column(ctx, KILN_GEMM_KILN, out, out->gemm_kiln);
    kiln_tuning tuning;
    if (st == KILN_OK && kiln_tuning_load(&ctx->info, &tuning) && tuning.has_xgemm) {
        st = kiln_tuning_apply(ctx, &tuning);
        if (st == KILN_OK)
            st = gemm_column(ctx, KILN_GEMM_CLBLAST, out, out->gemm_tuned);
        if (st == KILN_OK)
            st = kiln_tuning_apply(ctx, &tuning); /* its engine choice too */
    }
    if (st == KILN_OK)
        st = bench_kernels(ctx, quick, out);
    if (st == KILN_OK)
        st = bench_transfers(ctx, quick, out);
    kiln_ctx_free(ctx);
    return st;
}

/* ---- training ----------------------------------------------------------------- */

typedef struct {
    pipeline *p;
    optimizer *opt;
    loss_kind loss;
    kiln_tensor *target, *value;
} step_state;

static kiln_status run_step(void *u)
{
    step_state *s = u;
    kiln_status st = pipeline_forward(s->p, 1);
    if (st == KILN_OK)
        st = pipeline_loss(s->p, s->loss, 0, s->target, s->value);
    if (st == KILN_OK)
        st = pipeline_backward(s->p, 1);
    return st == KILN_OK ? optim_step(s->opt, 1e-3f, NULL) : st;
}

/* Steps per timing: as many as last a tenth of a second, from 5 to 20
 * (bench/pytorch_steps.py times PyTorch's in 20s), from the second of two
 * warm-up steps (best_time runs a third, as PyTorch's side warms up with
 * three): a shared machine's slow spells last some tenths of a second,
 * longer than five fast steps. */
static kiln_status training_reps(kiln_ctx *ctx, step_state *s, int *reps)
{
    kiln_status st = run_step(s);
    if (st == KILN_OK)
        st = kiln_ctx_finish(ctx);
    double t0 = now_seconds();
    if (st == KILN_OK)
        st = run_step(s);
    if (st == KILN_OK)
        st = kiln_ctx_finish(ctx);
    double step = now_seconds() - t0;
    *reps = step > 0.1 / 5 ? 5 : step < 0.1 / 20 ? 20 : (int)ceil(0.1 / step);
    return st;
}

kiln_status kiln_bench_training(kiln_ctx *ctx, kiln_model *m, size_t batch,
                                double *samples_per_s)
{
    if (!ctx || !m || !samples_per_s)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_bench_training: context, model and "
                                                    "result are required");
    train_config c;
    step_state s = {0};
    kiln_status st = train_config_read(m, &c);
    if (st == KILN_OK)
        st = graph_finish(m);
    batch = batch ? batch : c.batch;
    if (st == KILN_OK)
        st = pipeline_create(ctx, m, batch, (pipe_options){.fuse = 1, .plan = 1}, 1, &s.p);
    if (st == KILN_OK)
        st = optim_create(s.p, &c.optim, &s.opt);
    kiln_shape out = st == KILN_OK ? s.p->steps[s.p->count - 1].shapes.out : shape_make(1, 1, 0, 0, 0);
    kiln_shape target = c.loss == LOSS_CROSS_ENTROPY ? shape_make(1, batch, 0, 0, 0) : out;
    kiln_shape one = shape_make(1, 1, 0, 0, 0);
    s.loss = c.loss;
    if (st == KILN_OK)
        st = tensor_of(ctx, &target, &s.target);
    if (st == KILN_OK)
        st = kiln_tensor_fill(s.target, 1.0f); /* class 1, or targets of 1 */
    if (st == KILN_OK)
        st = tensor_of(ctx, &one, &s.value);
    if (st == KILN_OK)
        st = kiln_tensor_fill(s.p->input, 0.5f);
    double t = 0;
    int reps = 5;
    if (st == KILN_OK)
        st = training_reps(ctx, &s, &reps);
    if (st == KILN_OK)
        st = best_time(ctx, run_step, &s, reps, &t);
    *samples_per_s = st == KILN_OK ? (double)batch / t : 0;
    kiln_tensor_free(s.target);
    kiln_tensor_free(s.value);
    optim_free(s.opt);
    pipeline_free(s.p);
    return st;
}

/* Best of reps timings of fn over the network. */
typedef kiln_status (*net_timed)(kiln_net *net, const float *x, const float *y, size_t n,
                                 float *out);

static kiln_status time_net(kiln_net *net, net_timed fn, const float *x, const float *y,
                            size_t n, float *out, int reps, int calls, double *best)
{
    kiln_status st = fn(net, x, y, n, out); /* builds what the caches lack */
    *best = INFINITY;
    for (int r = 0; r < reps && st == KILN_OK; r++) {
        double t0 = now_seconds();
        for (int c = 0; c < calls && st == KILN_OK; c++)
            st = fn(net, x, y, n, out);
        double t = (now_seconds() - t0) / calls;
        *best = t < *best ? t : *best;
    }
    return st;
}

static kiln_status forward_call(kiln_net *net, const float *x, const float *y, size_t n,
                                float *out)
{
    (void)y;
    return kiln_net_forward(net, x, n, out);
}

static kiln_status step_call(kiln_net *net, const float *x, const float *y, size_t n,
                             float *out)
{
    return kiln_net_train_step(net, x, y, n, out);
}

kiln_status kiln_bench_net(kiln_ctx *ctx, kiln_model *m, size_t batch, double *forward_ms,
                           double *step_samples_per_s)
{
    if (!ctx || !m || !forward_ms || !step_samples_per_s)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_bench_net: context, model and "
                                                    "results are required");
    kiln_net *net = NULL;
    kiln_status st = kiln_net_create(ctx, m, batch, &net);
    size_t b = kiln_net_max_batch(net), in = kiln_net_input_size(net);
    size_t outs = kiln_net_output_size(net);
    float *x = st == KILN_OK ? malloc(b * in * sizeof *x) : NULL;
    float *y = st == KILN_OK ? calloc(b * outs, sizeof *y) : NULL; /* class 0, or targets 0 */
    float *out = st == KILN_OK ? malloc(b * outs * sizeof *out) : NULL;
    if (st == KILN_OK && (!x || !y || !out))
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_bench_net: out of host memory");
    for (size_t i = 0; st == KILN_OK && i < b * in; i++)
        x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f;
    double t = 0;
    if (st == KILN_OK)
        st = time_net(net, forward_call, x, y, 1, out, 5, 20, &t);
    *forward_ms = st == KILN_OK ? 1e3 * t : 0;
    if (st == KILN_OK)
        st = time_net(net, step_call, x, y, b, out, 5, 5, &t);
    *step_samples_per_s = st == KILN_OK ? (double)b / t : 0;
    free(x);
    free(y);
    free(out);
    kiln_net_free(net);
    return st;
}
