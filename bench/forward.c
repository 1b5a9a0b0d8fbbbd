/* Eval-mode inference through kiln_net_forward: milliseconds per call at
 * batch 1 and at the network's batch, the best of --rounds timings of
 * --calls calls each, and then the device time per layer of each size, the
 * mean of 20 profiled calls (the rest of a call's time is the host's: checks,
 * normalization, uploads, launches and the wait for the read).
 * Usage: bench_forward [--device SEL] [--batch N] [--rounds R] [--calls C]
 *        [--no-profile] MODEL.ini */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#define PROFILED 20

static void write_out(void *user, const char *text)
{
    fputs(text, user);
}

/* Best milliseconds per call of calls forwards of n samples. */
static double best_ms(kiln_net *net, const float *x, size_t n, float *y, int rounds, int calls)
{
    REQUIRE(kiln_net_forward(net, x, n, y)); /* builds what the caches lack */
    double best = 1e30;
    for (int r = 0; r < rounds; r++) {
        double t0 = seconds();
        for (int c = 0; c < calls; c++)
            REQUIRE(kiln_net_forward(net, x, n, y));
        double t = 1e3 * (seconds() - t0) / calls;
        best = t < best ? t : best;
    }
    return best;
}

int main(int argc, char **argv)
{
    const char *device = NULL, *model = NULL;
    size_t batch = 128;
    int rounds = 5, calls = 50, profile = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc)
            device = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            batch = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--calls") && i + 1 < argc)
            calls = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-profile"))
            profile = 0;
        else
            model = argv[i];
    }
    if (!model || batch == 0 || rounds < 1 || calls < 1) {
        fprintf(stderr, "usage: bench_forward [--device SEL] [--batch N] [--rounds R] "
                        "[--calls C] [--no-profile] MODEL.ini\n");
        return 2;
    }
    kiln_ctx *ctx;
    kiln_model *m;
    kiln_net *net;
    REQUIRE(kiln_ctx_create(device, &ctx));
    REQUIRE(kiln_model_load(model, &m));
    REQUIRE(kiln_net_create(ctx, m, batch, &net));
    REQUIRE(kiln_net_set_training(net, 0));
    size_t in = kiln_net_input_size(net), outs = kiln_net_output_size(net);
    float *x = malloc(batch * in * sizeof *x), *y = malloc(batch * outs * sizeof *y);
    if (!x || !y)
        return 1;
    size_t vocab = kiln_model_vocab(m); /* a token model reads token ids */
    for (size_t i = 0; i < batch * in; i++)
        x[i] = vocab ? (float)((i * 2654435761u) % vocab)
                     : (float)((i * 2654435761u) % 1000) / 1000.0f;
    size_t sizes[2] = {1, batch};
    for (int s = 0; s < 2; s++)
        printf("%s: kiln_net_forward of %4zu samples %9.4f ms\n", model, sizes[s],
               best_ms(net, x, sizes[s], y, rounds, calls));
    /* the mean of PROFILED calls: one call's device times spread by half */
    for (int s = 0; profile && s < 2; s++) {
        printf("device time of a forward of %zu samples (mean of %d calls):\n", sizes[s],
               PROFILED);
        REQUIRE(kiln_ctx_profile_begin(ctx));
        for (int c = 0; c < PROFILED; c++)
            REQUIRE(kiln_net_forward(net, x, sizes[s], y));
        REQUIRE(kiln_ctx_profile_end(ctx, getenv("BENCH_TRACE"), PROFILED, write_out, stdout));
    }
    free(x);
    free(y);
    kiln_net_free(net);
    kiln_model_free(m);
    kiln_ctx_free(ctx);
    return 0;
}
