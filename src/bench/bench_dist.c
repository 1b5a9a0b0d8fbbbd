/* kiln bench under mpirun: what data parallelism costs on this job's
 * ranks. The allreduce of float sums at a few sizes (time and bus
 * bandwidth, 2(N-1)/N of the bytes in and out of each rank, as NCCL's
 * tests count it), then, for each model, one training step of the global
 * batch split across the ranks and its gradient exchange alone (read
 * back, allreduce in buckets, upload). Every rank measures; rank 0
 * writes. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "net/net.h"

#define REPS 10

static void say(const dist_comm *c, kiln_write_fn fn, void *user, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void say(const dist_comm *c, kiln_write_fn fn, void *user, const char *fmt, ...)
{
    if (dist_comm_rank(c) != 0 || !fn)
        return;
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    fn(user, text);
}

/* The slowest rank's time, as every rank sees it (each adds its own in
 * its own slot of a sum). */
static kiln_status slowest(dist_comm *c, double *t)
{
    size_t n = (size_t)dist_comm_size(c);
    double *all = calloc(n, sizeof *all);
    if (!all)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_bench_dist: out of host memory");
    all[dist_comm_rank(c)] = *t;
    kiln_status st = dist_sum_doubles(c, all, n, "the ranks' times");
    for (size_t k = 0; k < n; k++)
        *t = fmax(*t, all[k]);
    free(all);
    return st;
}

static kiln_status bench_allreduce(dist_comm *c, kiln_write_fn fn, void *user)
{
    static const size_t kib[] = {1, 16, 64, 256, 1024, 4096, 16384}; /* latency to bandwidth */
    size_t count = sizeof kib / sizeof kib[0];
    size_t most = kib[count - 1] * 1024 / sizeof(float), ranks = (size_t)dist_comm_size(c);
    float *v = calloc(most, sizeof *v);
    kiln_status st = v ? KILN_OK
                       : error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_bench_dist: out of host memory");
    for (size_t i = 0; i < count && st == KILN_OK; i++) {
        size_t n = kib[i] * 1024 / sizeof(float);
        double best = INFINITY;
        for (int r = -2; r < REPS && st == KILN_OK; r++) { /* two warm-ups */
            double t0 = now_seconds();
            st = dist_sum_floats(c, v, n, "the benchmark's buffer");
            if (r >= 0)
                best = fmin(best, now_seconds() - t0);
        }
        if (st == KILN_OK)
            st = slowest(c, &best);
        double bus = 2.0 * (double)(ranks - 1) / (double)ranks * (double)(n * sizeof(float));
        say(c, fn, user, "  allreduce %6zu KiB %12.3f ms %10.2f GB/s\n", kib[i], 1e3 * best,
            bus / best / 1e9);
    }
    free(v);
    return st;
}

/* Best of REPS calls of a training step of the global batch (this rank
 * passes its share of x) and of its gradient exchange alone. */
static kiln_status time_step(kiln_net *net, const float *x, const float *y, size_t mine,
                             double *step, double *exchange)
{
    kiln_status st = KILN_OK;
    *step = *exchange = INFINITY;
    for (int r = -2; r < REPS && st == KILN_OK; r++) {
        double t0 = now_seconds();
        st = kiln_net_train_step(net, x, y, mine, NULL);
        double t1 = now_seconds();
        if (st == KILN_OK)
            st = net_reduce_gradients(net, mine);
        if (r >= 0) {
            *step = fmin(*step, t1 - t0);
            *exchange = fmin(*exchange, now_seconds() - t1);
        }
    }
    kiln_status a = st == KILN_OK ? slowest(net->comm, step) : st;
    return a == KILN_OK ? slowest(net->comm, exchange) : a;
}

static kiln_status bench_model(kiln_ctx *ctx, dist_comm *c, const char *path, kiln_write_fn fn,
                               void *user)
{
    kiln_model *m = NULL;
    kiln_net *net = NULL;
    kiln_status st = kiln_model_load(path, &m);
    if (st == KILN_OK)
        st = kiln_net_create(ctx, m, 0, &net);
    size_t b = net ? kiln_net_max_batch(net) : 0, in = kiln_net_input_size(net), first, mine;
    dist_slice(c, 0, b, &first, &mine);
    float *x = calloc(b * in + 1, sizeof *x), *y = calloc(b * kiln_net_output_size(net) + 1,
                                                          sizeof *y);
    if (st == KILN_OK && (!x || !y))
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_bench_dist: out of host memory");
    for (size_t i = 0; st == KILN_OK && i < b * in; i++)
        x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f;
    if (st == KILN_OK)
        net->comm = c; /* the job's ranks, not owned */
    double step = 0, exchange = 0;
    if (st == KILN_OK)
        st = time_step(net, x + first * in, y, mine, &step, &exchange);
    size_t count = net ? net->main.p->grads->numel : 0;
    if (st == KILN_OK)
        say(c, fn, user, "  %s: step %.2f ms (batch %zu, %zu per rank), of which the exchange "
                         "of %.2f MB of gradients alone %.2f ms (read back, allreduce, upload)\n",
            path, 1e3 * step, b, mine, (double)count * sizeof(float) / 1e6, 1e3 * exchange);
    if (net)
        net->comm = NULL;
    free(x);
    free(y);
    kiln_net_free(net);
    kiln_model_free(m);
    return st;
}

kiln_status kiln_bench_dist(const char *selector, const char *const *models, size_t n_models,
                            kiln_write_fn fn, void *user, int *ranks)
{
    if (!ranks)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_bench_dist: ranks is required");
    kiln_status st = dist_start();
    dist_comm *c = dist_world();
    *ranks = dist_comm_size(c);
    if (st != KILN_OK || *ranks == 1)
        return st;
    kiln_ctx *ctx = NULL;
    st = kiln_ctx_create(selector, &ctx);
    say(c, fn, user, "data parallelism over MPI, %d ranks\n", *ranks);
    if (st == KILN_OK)
        st = bench_allreduce(c, fn, user);
    for (size_t i = 0; i < n_models && st == KILN_OK; i++)
        st = bench_model(ctx, c, models[i], fn, user);
    kiln_ctx_free(ctx);
    return st; /* a failed rank: `kiln bench` ends the job */
}
