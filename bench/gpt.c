/* kiln_bench_gpt on a model file, one JSON object on stdout (for
 * bench/gpt_speed.py). Usage: bench_gpt MODEL.ini [--device SEL] */
#include <stdio.h>
#include <string.h>

#include "bench.h"

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_gpt MODEL.ini [--device SEL]\n");
        return 2;
    }
    const char *device = argc > 3 && strcmp(argv[2], "--device") == 0 ? argv[3] : NULL;
    kiln_ctx *ctx;
    kiln_model *m;
    kiln_bench_gpt_result r;
    REQUIRE(kiln_ctx_create(device, &ctx));
    REQUIRE(kiln_model_load(argv[1], &m));
    REQUIRE(kiln_bench_gpt(ctx, m, 0, &r));
    printf("{\"train_tokens_per_s\": %.3f, \"step_ms\": %.3f, \"attention_share\": %.4f, "
           "\"generate_tokens_per_s\": %.3f, \"window_tokens_per_s\": %.3f, \"generated\": %zu, "
           "\"batch\": %zu, \"block\": %zu}\n",
           r.train_tokens_per_s, r.step_ms, r.attention_share, r.generate_tokens_per_s,
           r.window_tokens_per_s, r.generated, r.batch, r.block);
    kiln_model_free(m);
    kiln_ctx_free(ctx);
    return 0;
}
