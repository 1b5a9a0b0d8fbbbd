/* Attention's tiles: the forward's time for each choice of rows
 * (kiln_attention_choices: query rows per work-item on CPUs, rows of a
 * work-group's local tile on GPUs), and forward + backward, at nanoGPT's
 * shakespeare_char CPU shape (batch 12, block 64, 4 heads of 32) and
 * longer blocks, on one device, through kiln_bench_attention (what
 * `kiln tune` times to pick the device's rows). Every choice gives the same bits
 * (tests/test_gpt.c).
 * Usage: bench_attention [--device SEL] */
#include <stdio.h>
#include <string.h>

#include "bench.h"

typedef struct {
    size_t B, T, H, D;
} shape_case;

int main(int argc, char **argv)
{
    const char *device = argc > 2 && strcmp(argv[1], "--device") == 0 ? argv[2] : NULL;
    kiln_ctx *ctx;
    REQUIRE(kiln_ctx_create(device, &ctx));
    printf("%s\n", kiln_ctx_device(ctx)->name);
    static const shape_case cases[] = {{12, 64, 4, 32}, {4, 256, 6, 64}, {1, 1024, 4, 32}};
    const size_t *rows = kiln_attention_choices(ctx);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const shape_case *sc = &cases[k];
        for (size_t r = 0; r < KILN_ATTN_CHOICES; r++) {
            double forward, step;
            REQUIRE(kiln_bench_attention(ctx, sc->B, sc->T, sc->H, sc->D, rows[r], &forward,
                                         &step));
            printf("B %zu T %4zu H %zu D %2zu  rows %2zu: forward %8.3f ms, forward + backward "
                   "%8.3f ms\n", sc->B, sc->T, sc->H, sc->D, rows[r], forward, step);
            fflush(stdout);
        }
    }
    kiln_ctx_free(ctx);
    return 0;
}
