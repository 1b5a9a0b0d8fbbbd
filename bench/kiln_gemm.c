/* kiln's own GEMM against the host's OpenBLAS, tile by tile and k block by
 * k block, at the squares and the example models' training shapes. Every
 * round times OpenBLAS and then each configuration (in an order rotated
 * from round to round) back to back, and the ratios are taken within the
 * round, since the machine may be shared; the medians and the best of the
 * rounds are printed.
 * Usage: bench_kiln_gemm [--device SEL] [--rounds N] [--only I,J...] [MRxNR[/KC] ...]
 * (--only: the shapes at those positions of the list below, from 0)
 * (KC "max": no blocking; no configuration: the device's default) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "blas/blas.h"
#include "cli/host_blas.h"

#define MAX_CONFIGS 12
#define MAX_ROUNDS 32

static const kiln_gemm_shape shapes[] = {
    {KILN_NO_TRANS, KILN_NO_TRANS, 1024, 1024, 1024},
    {KILN_NO_TRANS, KILN_NO_TRANS, 2048, 2048, 2048},
    {KILN_NO_TRANS, KILN_TRANS, 128, 256, 784},
    {KILN_TRANS, KILN_NO_TRANS, 256, 784, 128},
    {KILN_NO_TRANS, KILN_NO_TRANS, 64, 25088, 288},
    {KILN_NO_TRANS, KILN_TRANS, 64, 288, 25088},
    {KILN_TRANS, KILN_NO_TRANS, 288, 25088, 64},
    /* the GPT's (gpt_char.ini, 768 tokens a step): c_fc and c_attn forward,
     * c_proj's input gradient, c_fc's weight gradient */
    {KILN_NO_TRANS, KILN_TRANS, 768, 512, 128},
    {KILN_NO_TRANS, KILN_TRANS, 768, 384, 128},
    {KILN_NO_TRANS, KILN_NO_TRANS, 768, 128, 512},
    {KILN_TRANS, KILN_NO_TRANS, 512, 128, 768},
    /* the Fashion MLP's inference: its first layer at batch 4 and 12
     * (gemv_rows on CPUs), its second at batch 128 */
    {KILN_NO_TRANS, KILN_TRANS, 4, 256, 784},
    {KILN_NO_TRANS, KILN_TRANS, 12, 256, 784},
    {KILN_NO_TRANS, KILN_TRANS, 128, 128, 256},
};
#define SHAPES (sizeof shapes / sizeof shapes[0])

static gemm_tile parse_config(const char *text)
{
    char tile[32];
    gemm_tile t = {0, 0, 0};
    snprintf(tile, sizeof tile, "%s", text);
    char *slash = strchr(tile, '/');
    if (slash)
        *slash = '\0';
    REQUIRE(gemm_tile_parse(tile, "tile", &t));
    if (slash && strcmp(slash + 1, "max") == 0)
        t.kc = GEMM_KC_MAX;
    else if (slash)
        REQUIRE(gemm_kc_parse(slash + 1, "k block", &t.kc));
    return t;
}

/* Whether the comma-separated list holds item. */
static int listed(const char *list, const char *item)
{
    size_t n = strlen(item);
    for (const char *p = list; p; p = strchr(p, ','), p = p ? p + 1 : NULL)
        if (strncmp(p, item, n) == 0 && (p[n] == ',' || p[n] == '\0'))
            return 1;
    return 0;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    const char *device = NULL, *only = NULL;
    int rounds = 3, n_configs = 0;
    gemm_tile configs[MAX_CONFIGS];
    char names[MAX_CONFIGS][32];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--device") == 0 && i + 1 < argc)
            device = argv[++i];
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (n_configs < MAX_CONFIGS) {
            configs[n_configs] = parse_config(argv[i]);
            snprintf(names[n_configs++], sizeof names[0], "%.31s", argv[i]);
        }
    }
    rounds = rounds < 1 ? 1 : rounds > MAX_ROUNDS ? MAX_ROUNDS : rounds;
    char core[128] = "";
    host_sgemm_fn host = host_blas_load(core, sizeof core);
    if (!host) {
        fprintf(stderr, "bench_kiln_gemm: libopenblas.so.0 not found\n");
        return 1;
    }
    kiln_ctx *ctx;
    REQUIRE(kiln_ctx_create(device, &ctx));
    kiln_ctx_set_gemm(ctx, KILN_GEMM_KILN);
    if (n_configs == 0) {
        REQUIRE(gemm_tile_get(ctx, &configs[0]));
        snprintf(names[0], sizeof names[0], "%dx%d/%zu", configs[0].mr, 2 * configs[0].v,
                 configs[0].kc);
        n_configs = 1;
    }
    printf("%s / %s against %s, %d rounds; GFLOPS best of the rounds, ratio of bests to "
           "OpenBLAS's, [median ratio within a round]\n",
           kiln_ctx_device(ctx)->platform, kiln_ctx_device(ctx)->name, core, rounds);
    printf("%-20s %8s", "shape", "OpenBLAS");
    for (int c = 0; c < n_configs; c++)
        printf(" %20s", names[c]);
    printf("\n");
    for (size_t i = 0; i < SHAPES; i++) {
        const kiln_gemm_shape *g = &shapes[i];
        char at[8];
        snprintf(at, sizeof at, "%zu", i);
        if (only && !listed(only, at))
            continue;
        double host_best = 0, best[MAX_CONFIGS] = {0}, ratio[MAX_CONFIGS][MAX_ROUNDS];
        for (int r = 0; r < rounds; r++) {
            double h = host_blas_gflops(host, g);
            host_best = fmax(host_best, h);
            for (int j = 0; j < n_configs; j++) {
                int c = (j + r) % n_configs;
                double k;
                REQUIRE(gemm_tile_set(ctx, configs[c]));
                REQUIRE(kiln_bench_gemm(ctx, g, &k));
                best[c] = fmax(best[c], k);
                ratio[c][r] = k / h;
            }
        }
        printf("%c%c %5zux%5zux%5zu %8.1f", g->ta == KILN_TRANS ? 'T' : 'N',
               g->tb == KILN_TRANS ? 'T' : 'N', g->m, g->n, g->k, host_best);
        for (int c = 0; c < n_configs; c++) {
            qsort(ratio[c], (size_t)rounds, sizeof(double), by_value);
            printf("  %6.1f %5.2f [%4.2f]", best[c], best[c] / host_best, ratio[c][rounds / 2]);
        }
        printf("\n");
        fflush(stdout);
    }
    kiln_ctx_free(ctx);
    return 0;
}
