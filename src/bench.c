/* kiln bench: what a device does for kiln, each number the best of a few
 * timed repetitions after a warm-up: SGEMM GFLOPS, copy and elementwise
 * bandwidth, launch latency, host transfers, training throughput. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline.h"
#include "optim.h"

typedef kiln_status (*bench_fn)(void *user);

/* Best seconds per call of fn over `reps` calls, five times. */
static kiln_status best_time(kiln_ctx *ctx, bench_fn fn, void *user, int reps, double *out)
{
    kiln_status st = fn(user);
    if (st == KILN_OK)
        st = kiln_ctx_finish(ctx);
    *out = INFINITY;
    for (int t = 0; t < 5 && st == KILN_OK; t++) {
        double t0 = kiln_seconds();
        for (int i = 0; i < reps && st == KILN_OK; i++)
            st = fn(user);
        if (st == KILN_OK)
            st = kiln_ctx_finish(ctx);
        *out = fmin(*out, (kiln_seconds() - t0) / reps);
    }
    return st;
}

typedef struct {
    kiln_ctx *ctx;
    kiln_tensor *a, *b, *c;
    op_attrs attrs;
    float *host;
    pipeline *p;
    optimizer *opt;
    kiln_tensor *target, *loss;
} bench_state;

static kiln_status run_gemm(void *u)
{
    bench_state *s = u;
    return kiln_gemm(s->ctx, KILN_NO_TRANS, KILN_NO_TRANS, 1.0f, s->a, s->b, 0.0f, s->c);
}

static kiln_status run_copy(void *u)
{
    bench_state *s = u;
    return kiln_tensor_copy(s->b, s->a);
}

static kiln_status run_relu(void *u)
{
    bench_state *s = u;
    op_args c = {.ctx = s->ctx, .attrs = &s->attrs, .in = {s->a}, .out = s->b};
    return op_forward(OP_ACTIVATION, &c);
}

static kiln_status run_upload(void *u)
{
    bench_state *s = u;
    return kiln_tensor_upload(s->a, s->host, s->a->numel);
}

static kiln_status run_download(void *u)
{
    bench_state *s = u;
    return kiln_tensor_download(s->a, s->host, s->a->numel);
}

static kiln_status run_step(void *u)
{
    bench_state *s = u;
    kiln_status st = pipeline_forward(s->p, 1);
    if (st == KILN_OK)
        st = pipeline_loss(s->p, LOSS_CROSS_ENTROPY, 0, s->target, s->loss);
    if (st == KILN_OK)
        st = pipeline_backward(s->p, 1);
    return st == KILN_OK ? optim_step(s->opt, 1e-3f) : st;
}

static void release(bench_state *s)
{
    kiln_tensor_free(s->a);
    kiln_tensor_free(s->b);
    kiln_tensor_free(s->c);
    s->a = s->b = s->c = NULL;
}

static kiln_status square(bench_state *s, size_t n)
{
    size_t shape[2] = {n, n};
    kiln_status st = kiln_tensor_create(s->ctx, 2, shape, &s->a);
    if (st == KILN_OK)
        st = kiln_tensor_create(s->ctx, 2, shape, &s->b);
    if (st == KILN_OK)
        st = kiln_tensor_create(s->ctx, 2, shape, &s->c);
    if (st == KILN_OK)
        st = kiln_tensor_fill(s->a, 0.5f);
    if (st == KILN_OK)
        st = kiln_tensor_fill(s->b, 0.25f);
    return st;
}

static kiln_status bench_gemm(bench_state *s, int quick, kiln_bench_result *r)
{
    static const size_t full[] = {128, 256, 512, 1024}, small[] = {64, 128, 192, 256};
    kiln_status st = KILN_OK;
    for (int i = 0; i < KILN_BENCH_GEMM_SIZES && st == KILN_OK; i++) {
        size_t n = quick ? small[i] : full[i];
        double t = INFINITY;
        st = square(s, n);
        if (st == KILN_OK)
            st = best_time(s->ctx, run_gemm, s, 2, &t);
        r->gemm_n[i] = n;
        r->gemm_gflops[i] = 2.0 * (double)n * (double)n * (double)n / t * 1e-9;
        release(s);
    }
    return st;
}

static kiln_status bench_memory(bench_state *s, int quick, kiln_bench_result *r)
{
    size_t n = quick ? (1u << 18) : (1u << 24), one = 1;
    double t;
    kiln_status st = kiln_tensor_create(s->ctx, 1, &n, &s->a);
    if (st == KILN_OK)
        st = kiln_tensor_create(s->ctx, 1, &n, &s->b);
    if (st == KILN_OK)
        st = kiln_tensor_fill(s->a, -1.0f);
    if (st == KILN_OK && !(s->host = calloc(n, sizeof(float))))
        st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "bench: out of memory");
    double bytes = 2.0 * (double)(n * sizeof(float));
    s->attrs = op_attrs_default();
    s->attrs.act = KILN_ACT_RELU;
    if (st == KILN_OK && (st = best_time(s->ctx, run_copy, s, 5, &t)) == KILN_OK)
        r->copy_gbs = bytes / t * 1e-9;
    if (st == KILN_OK && (st = best_time(s->ctx, run_relu, s, 5, &t)) == KILN_OK)
        r->relu_gbs = bytes / t * 1e-9;
    if (st == KILN_OK && (st = best_time(s->ctx, run_upload, s, 2, &t)) == KILN_OK)
        r->upload_gbs = bytes / 2 / t * 1e-9;
    if (st == KILN_OK && (st = best_time(s->ctx, run_download, s, 2, &t)) == KILN_OK)
        r->download_gbs = bytes / 2 / t * 1e-9;
    release(s);
    if (st == KILN_OK)
        st = kiln_tensor_create(s->ctx, 1, &one, &s->a);
    if (st == KILN_OK)
        st = kiln_tensor_create(s->ctx, 1, &one, &s->b);
    if (st == KILN_OK && (st = best_time(s->ctx, run_relu, s, 50, &t)) == KILN_OK)
        r->launch_us = t * 1e6;
    release(s);
    free(s->host);
    s->host = NULL;
    return st;
}

static const char mlp[] = "[input]\nshape = 784\n[linear]\nout = 256\n[batchnorm]\n[relu]\n"
                          "[dropout]\np = 0.3\n[linear]\nout = 128\n[relu]\n[linear]\nout = 10\n";

static kiln_status bench_training(bench_state *s, int quick, kiln_bench_result *r)
{
    size_t batch = quick ? 16 : 128, one = 1;
    kiln_model *m = NULL;
    kiln_status st = kiln_model_parse(mlp, "fashion_mlp", &m);
    if (st == KILN_OK)
        st = graph_finish(m);
    if (st == KILN_OK)
        st = pipeline_create(s->ctx, m, batch, (pipe_options){.fuse = 1, .plan = 1}, 1, &s->p);
    optim_config oc = optim_defaults(OPTIM_ADAM);
    if (st == KILN_OK)
        st = optim_create(s->p, &oc, &s->opt);
    if (st == KILN_OK)
        st = kiln_tensor_create(s->ctx, 1, &batch, &s->target);
    if (st == KILN_OK)
        st = kiln_tensor_fill(s->target, 3.0f);
    if (st == KILN_OK)
        st = kiln_tensor_fill(s->p->input, 0.5f);
    if (st == KILN_OK)
        st = kiln_tensor_create(s->ctx, 1, &one, &s->loss);
    double t;
    if (st == KILN_OK && (st = best_time(s->ctx, run_step, s, quick ? 2 : 10, &t)) == KILN_OK)
        r->train_samples_per_s = (double)batch / t;
    kiln_tensor_free(s->target);
    kiln_tensor_free(s->loss);
    optim_free(s->opt);
    pipeline_free(s->p);
    kiln_model_free(m);
    return st;
}

kiln_status kiln_bench(kiln_ctx *ctx, int quick, kiln_bench_result *out)
{
    if (!ctx || !out)
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_bench: context and result are "
                                                    "required");
    memset(out, 0, sizeof *out);
    bench_state s = {.ctx = ctx};
    kiln_status st = bench_gemm(&s, quick, out);
    if (st == KILN_OK)
        st = bench_memory(&s, quick, out);
    if (st == KILN_OK)
        st = bench_training(&s, quick, out);
    release(&s);
    free(s.host);
    return st;
}
