/* SGEMM throughput through kiln_gemm (CLBlast) and transfer rates on one
 * device. Ratios are taken in the same run: each GEMM against the device's
 * own buffer-copy bandwidth is meaningless, so GEMMs are reported in GFLOPS
 * and as a fraction of the largest size's rate; transfers against the
 * device copy. Usage: bench_gemm [--device SEL] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "kiln_tools.h"
#include "ref/ref.h"

static kiln_tensor *square(kiln_ctx *ctx, size_t n)
{
    size_t shape[2] = {n, n};
    kiln_tensor *t;
    REQUIRE(kiln_tensor_create(ctx, 2, shape, &t));
    REQUIRE(kiln_tensor_fill(t, 0.5f));
    return t;
}

/* Best of a few timed repetitions after one warm-up call. */
static double gemm_seconds(kiln_ctx *ctx, size_t n)
{
    kiln_tensor *a = square(ctx, n), *b = square(ctx, n), *c = square(ctx, n);
    REQUIRE(kiln_gemm(ctx, KILN_NO_TRANS, KILN_NO_TRANS, 1.0f, a, b, 0.0f, c));
    REQUIRE(kiln_ctx_finish(ctx));
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = ref_seconds();
        REQUIRE(kiln_gemm(ctx, KILN_NO_TRANS, KILN_NO_TRANS, 1.0f, a, b, 0.0f, c));
        REQUIRE(kiln_ctx_finish(ctx));
        double t = ref_seconds() - t0;
        best = t < best ? t : best;
    }
    kiln_tensor_free(a);
    kiln_tensor_free(b);
    kiln_tensor_free(c);
    return best;
}

static void transfers(kiln_ctx *ctx)
{
    size_t n = 16u << 20; /* 64 MiB of floats */
    float *host = calloc(n, sizeof *host);
    kiln_tensor *a, *b;
    REQUIRE(kiln_tensor_create(ctx, 1, &n, &a));
    REQUIRE(kiln_tensor_create(ctx, 1, &n, &b));
    REQUIRE(kiln_tensor_fill(a, 1.0f));
    REQUIRE(kiln_tensor_copy(b, a));
    REQUIRE(kiln_ctx_finish(ctx));
    double t0 = ref_seconds();
    REQUIRE(kiln_tensor_copy(b, a));
    REQUIRE(kiln_ctx_finish(ctx));
    double copy = 2.0 * (double)(n * sizeof(float)) / (ref_seconds() - t0) * 1e-9;
    t0 = ref_seconds();
    REQUIRE(kiln_tensor_upload(a, host, n));
    double up = (double)(n * sizeof(float)) / (ref_seconds() - t0) * 1e-9;
    t0 = ref_seconds();
    REQUIRE(kiln_tensor_download(a, host, n));
    double down = (double)(n * sizeof(float)) / (ref_seconds() - t0) * 1e-9;
    printf("device copy   %8.2f GB/s (read + write)\n", copy);
    printf("host->device  %8.2f GB/s  (%.2f of device copy)\n", up, up / copy);
    printf("device->host  %8.2f GB/s  (%.2f of device copy)\n", down, down / copy);
    kiln_tensor_free(a);
    kiln_tensor_free(b);
    free(host);
}

int main(int argc, char **argv)
{
    const char *device = argc > 2 && strcmp(argv[1], "--device") == 0 ? argv[2] : NULL;
    kiln_ctx *ctx;
    REQUIRE(kiln_ctx_create(device, &ctx));
    printf("device: %s / %s\n", kiln_ctx_device(ctx)->platform, kiln_ctx_device(ctx)->name);
    static const size_t ns[] = {128, 256, 512, 1024};
    double gflops[4];
    for (int i = 0; i < 4; i++) {
        double n = (double)ns[i];
        gflops[i] = 2.0 * n * n * n / gemm_seconds(ctx, ns[i]) * 1e-9;
    }
    for (int i = 0; i < 4; i++)
        printf("sgemm n=%-5zu %8.1f GFLOPS  (%.2f of n=1024)\n", ns[i], gflops[i],
               gflops[i] / gflops[3]);
    transfers(ctx);
    kiln_ctx_free(ctx);
    return 0;
}
