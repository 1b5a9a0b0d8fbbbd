/* kiln check: one SGEMM on the device, compared with a float64 host
 * reference, to prove that the driver, CLBlast and kiln work together. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "ref/ref.h"

/* Runs C = A·B on the device (n x n); returns 0 when it matches the host. */
static int gemm_check(kiln_ctx *ctx, size_t n)
{
    size_t shape[2] = {n, n}, count = n * n;
    float *a = malloc(count * sizeof *a), *b = malloc(count * sizeof *b);
    float *c = malloc(count * sizeof *c);
    double *want = malloc(count * sizeof *want);
    kiln_tensor *ta = NULL, *tb = NULL, *tc = NULL;
    int rc = 1;
    if (!a || !b || !c || !want) {
        fprintf(stderr, "kiln check: out of host memory\n");
        goto done;
    }
    kiln_rng rng;
    rng_seed(&rng, 42);
    rng_fill(&rng, a, count, -1.0f, 1.0f);
    rng_fill(&rng, b, count, -1.0f, 1.0f);
    if (kiln_tensor_create(ctx, 2, shape, &ta) || kiln_tensor_create(ctx, 2, shape, &tb) ||
        kiln_tensor_create(ctx, 2, shape, &tc) || kiln_tensor_upload(ta, a, count) ||
        kiln_tensor_upload(tb, b, count)) {
        rc = cli_fail("check");
        goto done;
    }
    double t0 = ref_seconds();
    if (kiln_gemm(ctx, KILN_NO_TRANS, KILN_NO_TRANS, 1.0f, ta, tb, 0.0f, tc) ||
        kiln_tensor_download(tc, c, count)) {
        rc = cli_fail("check");
        goto done;
    }
    double first = ref_seconds() - t0;
    t0 = ref_seconds();
    int reps = 5;
    for (int i = 0; i < reps; i++)
        if (kiln_gemm(ctx, KILN_NO_TRANS, KILN_NO_TRANS, 1.0f, ta, tb, 0.0f, tc)) {
            rc = cli_fail("check");
            goto done;
        }
    if (kiln_ctx_finish(ctx)) {
        rc = cli_fail("check");
        goto done;
    }
    double each = (ref_seconds() - t0) / reps;
    ref_gemm(0, 0, n, n, n, 1.0, a, b, 0.0, NULL, want);
    double atol = 4e-7 * (double)n, rtol = 1e-5;
    ref_compare r = ref_compare_arrays(c, want, count, atol, rtol);
    printf("SGEMM %zux%zux%zu: first call %.2f s (kernel compile or cache), then %.2f ms, "
           "%.1f GFLOPS\n",
           n, n, n, first, each * 1e3, 2.0 * (double)n * n * n / each * 1e-9);
    printf("largest difference from the float64 host result: %.3g at element %zu "
           "(tolerance %.3g + %.1g relative)\n",
           r.abs_err, r.index, atol, rtol);
    if (r.failures) {
        printf("GEMM check FAILED: %zu elements outside tolerance; element %zu is %.9g, "
               "expected %.9g\n",
               r.failures, r.index, r.got, r.want);
    } else {
        printf("GEMM check passed\n");
        rc = 0;
    }
done:
    kiln_tensor_free(ta);
    kiln_tensor_free(tb);
    kiln_tensor_free(tc);
    free(a);
    free(b);
    free(c);
    free(want);
    return rc;
}

static const cli_flag flags[] = {
    {"device", 'd', "SEL", "KILN_DEVICE, else the first GPU, else the first CPU",
     "the device: an index, platform:device, or part of a name or type"},
    {"size", 'n', "N", "257", "the matrices' size, 1 to 8192"},
    {NULL, 0, NULL, NULL, NULL}};

const cli_command cli_check_cmd = {
    "check", cli_check, NULL, "run a GEMM on the device and compare it with the host",
    "Multiplies two random N x N matrices on the device with the engine kiln picks for it "
    "and compares the result with a float64 product on the host.",
    flags};

int cli_check(int argc, char **argv)
{
    const char *device = NULL;
    long n = 257;
    int opt;
    while ((opt = cli_next_flag(argc, argv, &cli_check_cmd)) != CLI_DONE) {
        char *end = NULL;
        if (opt < 0)
            return CLI_EXIT(opt);
        if (opt == 'd') {
            device = optarg;
        } else if ((n = strtol(optarg, &end, 10)) < 1 || n > 8192 || *end) {
            fprintf(stderr, "kiln check: --size %s: expected a whole number from 1 to 8192\n",
                    optarg);
            return 2;
        }
    }
    if (optind != argc)
        return cli_usage_error(&cli_check_cmd);
    kiln_ctx *ctx;
    if (kiln_ctx_create(device, &ctx) != KILN_OK)
        return cli_fail("check");
    const kiln_device_info *d = kiln_ctx_device(ctx);
    printf("device %u (%u:%u): %s / %s, driver %s\n", d->global_index, d->platform_index,
           d->device_index, d->platform, d->name, d->driver_version);
    int rc = gemm_check(ctx, (size_t)n);
    kiln_ctx_free(ctx);
    return rc;
}
