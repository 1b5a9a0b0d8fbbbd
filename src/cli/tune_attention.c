/* kiln tune's attention part: the fused attention kernels' rows (query
 * rows per work-item on CPUs, one a vector lane; rows of a work-group's tile
 * in local memory on GPUs; kiln_attention_choices) timed at nanoGPT's CPU
 * shape (batch 12, block 64, 4 heads of 32) and a longer block, forward +
 * backward, for each in turn; the fastest goes into the device's tuning
 * record. Every choice gives the same bits, so nothing needs checking
 * here. */
#include <math.h>
#include <stdio.h>

#include "cli/tune.h"
#include "ref/ref.h"

typedef struct {
    size_t B, T, H, D;
} attn_shape;

static const attn_shape attn_shapes[] = {{12, 64, 4, 32}, {2, 256, 4, 32}};
#define ATTN_SHAPES (sizeof attn_shapes / sizeof attn_shapes[0])

/* Times forward + backward of each shape with `rows` rows once more,
 * each shape keeping its best of the rounds (a busy machine only ever
 * slows one down); 0 on failure (printed). */
static int rows_time(kiln_ctx *ctx, size_t rows, double *best)
{
    printf("  attention, %zu rows:", rows);
    for (size_t i = 0; i < ATTN_SHAPES; i++) {
        const attn_shape *a = &attn_shapes[i];
        double forward, step;
        if (kiln_bench_attention(ctx, a->B, a->T, a->H, a->D, rows, &forward, &step) !=
            KILN_OK) {
            printf(" skipped: %s\n", kiln_last_error());
            return 0;
        }
        printf("%s forward %.2f ms, forward + backward %.2f ms at B %zu T %zu", i ? ";" : "",
               forward, step, a->B, a->T);
        best[i] = best[i] > 0 ? fmin(best[i], step) : step;
    }
    printf("\n");
    fflush(stdout);
    return 1;
}

/* Two rounds through the device's choices (the second only while there is time),
 * so that a moment of load does not decide. */
void tune_attention(const char *device, double seconds, attn_result *r)
{
    double until = ref_seconds() + seconds, best[ATTN_CANDIDATES][ATTN_SHAPES] = {{0}};
    int failed[ATTN_CANDIDATES] = {0};
    *r = (attn_result){0};
    kiln_ctx *ctx;
    if (kiln_ctx_create(device, &ctx) != KILN_OK) {
        printf("  attention: not measured (%s)\n", kiln_last_error());
        return;
    }
    const size_t *rows = kiln_attention_choices(ctx);
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < ATTN_CANDIDATES && (i + round == 0 || ref_seconds() < until); i++)
            if (!failed[i]) {
                r->rows[i] = rows[i];
                failed[i] = !rows_time(ctx, rows[i], best[i]);
            }
    kiln_ctx_free(ctx);
    for (int i = 0; i < ATTN_CANDIDATES; i++) {
        for (size_t k = 0; r->rows[i] && !failed[i] && k < ATTN_SHAPES; k++)
            r->ms[i] += best[i][k];
        if (r->ms[i] > 0 && (!r->best || r->ms[i] < r->best_ms)) {
            r->best = rows[i];
            r->best_ms = r->ms[i];
        }
    }
    if (r->best)
        printf("  attention: %zu query rows per work-item, %.2f ms over the shapes\n", r->best,
               r->best_ms);
}
