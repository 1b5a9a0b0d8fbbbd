/* kiln bench: one device, or every device side by side (--all-devices);
 * a table, or JSON (--json). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MAX_BENCH_DEVICES 16

typedef struct {
    kiln_device_info info;
    kiln_bench_result r;
} measured;

static void print_json(const measured *m, size_t n)
{
    printf("[");
    for (size_t i = 0; i < n; i++) {
        const kiln_bench_result *r = &m[i].r;
        char name[300];
        snprintf(name, sizeof name, "%s / %s", m[i].info.platform, m[i].info.name);
        printf("%s\n  {\"device\": ", i ? "," : "");
        cli_json_string(name);
        printf(", \"sgemm_gflops\": {");
        for (int k = 0; k < KILN_BENCH_GEMM_SIZES; k++)
            printf("%s\"%zu\": %.3f", k ? ", " : "", r->gemm_n[k], r->gemm_gflops[k]);
        printf("}, \"copy_gbs\": %.3f, \"relu_gbs\": %.3f, \"relu_over_copy\": %.3f, "
               "\"launch_us\": %.2f, \"upload_gbs\": %.3f, \"download_gbs\": %.3f, "
               "\"train_samples_per_s\": %.1f}",
               r->copy_gbs, r->relu_gbs, r->relu_gbs / r->copy_gbs, r->launch_us,
               r->upload_gbs, r->download_gbs, r->train_samples_per_s);
    }
    printf("\n]\n");
}

static void row(const char *label, const measured *m, size_t n, double (*get)(const measured *),
                const char *format)
{
    printf("%-34s", label);
    for (size_t i = 0; i < n; i++)
        printf(format, get(&m[i]));
    printf("\n");
}

#define GETTER(name, expr)                                                     \
    static double name(const measured *m)                                      \
    {                                                                          \
        return (expr);                                                         \
    }
GETTER(g0, m->r.gemm_gflops[0])
GETTER(g1, m->r.gemm_gflops[1])
GETTER(g2, m->r.gemm_gflops[2])
GETTER(g3, m->r.gemm_gflops[3])
GETTER(copy, m->r.copy_gbs)
GETTER(relu, m->r.relu_gbs)
GETTER(relu_ratio, m->r.relu_gbs / m->r.copy_gbs)
GETTER(launch, m->r.launch_us)
GETTER(up, m->r.upload_gbs)
GETTER(down, m->r.download_gbs)
GETTER(train, m->r.train_samples_per_s)

static void print_table(const measured *m, size_t n)
{
    printf("%-34s", "");
    for (size_t i = 0; i < n; i++)
        printf(" %22.22s", m[i].info.name);
    printf("\n");
    double (*const gemm[])(const measured *) = {g0, g1, g2, g3};
    for (int k = 0; k < KILN_BENCH_GEMM_SIZES; k++) {
        char label[64];
        snprintf(label, sizeof label, "sgemm n=%zu (GFLOPS)", m[0].r.gemm_n[k]);
        row(label, m, n, gemm[k], " %22.1f");
    }
    row("device copy (GB/s)", m, n, copy, " %22.2f");
    row("relu (GB/s)", m, n, relu, " %22.2f");
    row("relu / copy", m, n, relu_ratio, " %22.2f");
    row("launch latency (us)", m, n, launch, " %22.1f");
    row("host to device (GB/s)", m, n, up, " %22.2f");
    row("device to host (GB/s)", m, n, down, " %22.2f");
    row("training, Fashion MLP (samples/s)", m, n, train, " %22.0f");
}

static int measure(const char *selector, measured *out, int quick)
{
    kiln_ctx *ctx;
    if (kiln_ctx_create(selector, &ctx) != KILN_OK)
        return cli_fail("bench");
    out->info = *kiln_ctx_device(ctx);
    fprintf(stderr, "measuring %s / %s ...\n", out->info.platform, out->info.name);
    int rc = kiln_bench(ctx, quick, &out->r) == KILN_OK ? 0 : cli_fail("bench");
    kiln_ctx_free(ctx);
    return rc;
}

int cli_bench(int argc, char **argv)
{
    static const struct option options[] = {{"device", required_argument, NULL, 'd'},
                                             {"all-devices", no_argument, NULL, 'a'},
                                             {"quick", no_argument, NULL, 'q'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *device = NULL;
    int all = 0, quick = 0, json = 0, opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "d:aqjh", options, NULL)) != -1) {
        if (opt == 'd')
            device = optarg;
        else if (opt == 'a')
            all = 1;
        else if (opt == 'q')
            quick = 1;
        else if (opt == 'j')
            json = 1;
        else {
            fprintf(opt == 'h' ? stdout : stderr,
                    "usage: kiln bench [--device SEL | --all-devices] [--quick] [--json]\n");
            return opt == 'h' ? 0 : 2;
        }
    }
    measured m[MAX_BENCH_DEVICES];
    size_t n = 0;
    int rc = 0;
    if (all) {
        kiln_device_info *list;
        size_t count;
        if (kiln_devices(&list, &count) != KILN_OK)
            return cli_fail("bench");
        for (size_t i = 0; i < count && i < MAX_BENCH_DEVICES && rc == 0; i++) {
            char sel[16];
            snprintf(sel, sizeof sel, "%u", list[i].global_index);
            rc = measure(sel, &m[n++], quick);
        }
        kiln_free(list);
    } else {
        rc = measure(device, &m[n++], quick);
    }
    if (rc)
        return rc;
    if (json)
        print_json(m, n);
    else
        print_table(m, n);
    return 0;
}
