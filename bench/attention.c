/* Attention's register tiles: the forward's time for each choice of query
 * rows per work-item (RQ), and forward + backward, at nanoGPT's
 * shakespeare_char CPU shape (batch 12, block 64, 4 heads of 32) and a
 * longer block, on one device. Every RQ gives the same bits (tests/test_gpt.c);
 * the fastest on PoCL is ATTN_CPU_ROWS in src/ops/attention.c.
 * Usage: bench_attention [--device SEL] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "ops/ops.h"

typedef struct {
    size_t B, T, H, D;
} shape_case;

static kiln_tensor *filled(kiln_ctx *ctx, kiln_shape s, float lo, float hi)
{
    kiln_tensor *t;
    REQUIRE(tensor_of(ctx, &s, &t));
    size_t n = shape_numel(&s);
    float *h = malloc(n * sizeof *h);
    for (size_t i = 0; i < n; i++)
        h[i] = lo + (hi - lo) * (float)((i * 2654435761u) % 10007) / 10007.0f;
    REQUIRE(kiln_tensor_upload(t, h, n));
    free(h);
    return t;
}

/* Best of 5 timings of reps calls, in ms. */
static double time_ms(kiln_ctx *ctx, const op_args *c, int backward, int reps)
{
    REQUIRE(op_forward(OP_ATTENTION, c));
    REQUIRE(kiln_ctx_finish(ctx));
    double best = INFINITY;
    for (int t = 0; t < 5; t++) {
        double t0 = now_seconds();
        for (int i = 0; i < reps; i++) {
            REQUIRE(op_forward(OP_ATTENTION, c));
            if (backward)
                REQUIRE(op_backward(OP_ATTENTION, c));
        }
        REQUIRE(kiln_ctx_finish(ctx));
        best = fmin(best, 1e3 * (now_seconds() - t0) / reps);
    }
    return best;
}

int main(int argc, char **argv)
{
    const char *device = argc > 2 && strcmp(argv[1], "--device") == 0 ? argv[2] : NULL;
    kiln_ctx *ctx;
    REQUIRE(kiln_ctx_create(device, &ctx));
    printf("%s\n", ctx->info.name);
    static const shape_case cases[] = {{12, 64, 4, 32}, {4, 256, 6, 64}, {1, 1024, 4, 32}};
    static const size_t rows[] = {1, 2, 4, 8};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const shape_case *sc = &cases[k];
        size_t C = sc->H * sc->D;
        op_attrs a = op_attrs_default();
        a.heads = sc->H;
        op_args c = {.ctx = ctx, .attrs = &a, .training = 1};
        c.in[0] = filled(ctx, shape_make(3, sc->B, sc->T, 3 * C, 0), -1, 1);
        c.out = filled(ctx, shape_make(3, sc->B, sc->T, C, 0), 0, 0);
        c.saved[0] = filled(ctx, shape_make(3, sc->B, sc->H, sc->T, 0), 0, 0);
        c.dout = filled(ctx, shape_make(3, sc->B, sc->T, C, 0), -1, 1);
        c.din[0] = filled(ctx, shape_make(3, sc->B, sc->T, 3 * C, 0), 0, 0);
        for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
            attention_set_rows(rows[r]);
            printf("B %zu T %4zu H %zu D %2zu  RQ %zu: forward %8.3f ms, forward + backward "
                   "%8.3f ms\n", sc->B, sc->T, sc->H, sc->D, rows[r], time_ms(ctx, &c, 0, 5),
                   time_ms(ctx, &c, 1, 2));
            fflush(stdout);
        }
        kiln_tensor_free((kiln_tensor *)c.in[0]);
        kiln_tensor_free(c.out);
        kiln_tensor_free(c.saved[0]);
        kiln_tensor_free((kiln_tensor *)c.dout);
        kiln_tensor_free(c.din[0]);
    }
    kiln_ctx_free(ctx);
    return 0;
}
