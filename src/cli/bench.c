/* kiln bench: one device (or each of them, --all-devices) as a table or
 * JSON (--json): GEMM GFLOPS through every engine beside the host's
 * OpenBLAS, fused kernels against a copy kernel, latency, transfers,
 * training throughput of models and, for models named on the command
 * line, the device time of each layer. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/host_blas.h"

#define MAX_MODELS 8

typedef struct {
    const char *device;
    int all, quick, json, layers, worker;
    const char *images;             /* --images DIR */
    const char *models[MAX_MODELS];
    int n_models;
} bench_args;

typedef struct {
    kiln_device_info info;
    kiln_bench_result r;
    double train[MAX_MODELS];
    double api_step[MAX_MODELS];    /* kiln_net_train_step loop, samples/s */
    double api_forward[MAX_MODELS]; /* kiln_net_forward of one sample, ms */
    double first_cold[MAX_MODELS];  /* seconds to the first trained batch, empty caches */
    double first_warm[MAX_MODELS];  /* the same with the caches the cold run left */
    double images[MAX_MODELS];      /* --images: images decoded per second for the model */
    size_t image_count;
    int image_workers;
} measured;

/* ---- printing ---------------------------------------------------------------------- */

static void shape_label(const kiln_gemm_shape *g, char *buf, size_t size)
{
    if (g->m == g->n && g->n == g->k && g->ta == KILN_NO_TRANS && g->tb == KILN_NO_TRANS)
        snprintf(buf, size, "n=%zu", g->m);
    else
        snprintf(buf, size, "%c%c %zux%zux%zu", g->ta == KILN_TRANS ? 'T' : 'N',
                 g->tb == KILN_TRANS ? 'T' : 'N', g->m, g->n, g->k);
}

static void cell(double v, const char *fmt)
{
    if (v > 0)
        printf(fmt, v);
    else
        printf("%10s", "-");
}

static void print_table(const measured *m, const bench_args *a, const char *host)
{
    const kiln_bench_result *r = &m->r;
    printf("%s / %s\n\n", m->info.platform, m->info.name);
    printf("SGEMM, GFLOPS           %10s %10s %10s %10s %10s\n", "CLBlast", "tuned", "kiln",
           "host", "best/host");
    for (size_t i = 0; i < r->gemm_count; i++) {
        char label[64];
        shape_label(&r->gemm[i], label, sizeof label);
        double best = fmax(fmax(r->gemm_default[i], r->gemm_tuned[i]), r->gemm_kiln[i]);
        printf("  %-21s", label);
        cell(r->gemm_default[i], " %10.1f");
        cell(r->gemm_tuned[i], " %10.1f");
        cell(r->gemm_kiln[i], " %10.1f");
        cell(r->gemm_host[i], " %10.1f");
        cell(r->gemm_host[i] > 0 ? best / r->gemm_host[i] : 0, " %10.2f");
        printf("\n");
    }
    printf("  (tuned: the device's kiln tune record; host: %s)\n\n", host[0] ? host : "none");
    printf("memory-bound kernels    %10s %10s\n", "GB/s", "of copy");
    printf("  %-21s %10.2f %10.2f\n", "copy", r->copy_gbs, 1.0);
    for (size_t i = 0; i < r->kernel_count; i++)
        printf("  %-21s %10.2f %10.2f\n", r->kernel_name[i], r->kernel_gbs[i],
               r->kernel_gbs[i] / r->copy_gbs);
    printf("\nlaunch latency          %10.1f us\n", r->launch_us);
    printf("host to device          %10.2f GB/s\n", r->upload_gbs);
    printf("device to host          %10.2f GB/s\n", r->download_gbs);
    for (int i = 0; i < a->n_models; i++)
        printf("training %-34s %10.0f samples/s\n"
               "  through kiln_net_train_step   %10.0f samples/s (%.2f of the pipeline's)\n"
               "  kiln_net_forward of 1 sample  %10.3f ms\n",
               a->models[i], m->train[i], m->api_step[i],
               m->train[i] > 0 ? m->api_step[i] / m->train[i] : 0, m->api_forward[i]);
    if (a->n_models > 0)
        printf("\nfirst trained batch of a new process  %10s %10s\n", "cold", "warm");
    for (int i = 0; i < a->n_models; i++)
        printf("  %-36s %8.2f s %8.2f s\n", a->models[i], m->first_cold[i], m->first_warm[i]);
    if (a->n_models > 0)
        printf("  (cold: empty kernel caches; warm: the caches the cold run left)\n");
    if (a->images)
        printf("\n%s: %zu images decoded and resized on %d threads\n", a->images,
               m->image_count, m->image_workers);
    for (int i = 0; a->images && i < a->n_models; i++)
        printf("  for %-34s %10.0f images/s (training %.0f samples/s)\n", a->models[i],
               m->images[i], m->train[i]);
}

static void json_column(const char *key, const double *v, size_t n)
{
    printf(", \"%s\": [", key);
    for (size_t i = 0; i < n; i++)
        printf("%s%.3f", i ? ", " : "", v[i]);
    printf("]");
}

static void print_json(const measured *m, size_t n, const bench_args *a, const char *host)
{
    printf("[");
    for (size_t d = 0; d < n; d++) {
        const kiln_bench_result *r = &m[d].r;
        char name[300];
        snprintf(name, sizeof name, "%s / %s", m[d].info.platform, m[d].info.name);
        printf("%s\n  {\"device\": ", d ? "," : "");
        cli_json_string(name);
        printf(", \"host_blas\": ");
        cli_json_string(host);
        printf(", \"gemm_shapes\": [");
        for (size_t i = 0; i < r->gemm_count; i++) {
            char label[64];
            shape_label(&r->gemm[i], label, sizeof label);
            printf("%s", i ? ", " : "");
            cli_json_string(label);
        }
        printf("]");
        json_column("gemm_clblast_gflops", r->gemm_default, r->gemm_count);
        json_column("gemm_tuned_gflops", r->gemm_tuned, r->gemm_count);
        json_column("gemm_kiln_gflops", r->gemm_kiln, r->gemm_count);
        json_column("gemm_host_gflops", r->gemm_host, r->gemm_count);
        printf(", \"copy_gbs\": %.3f, \"kernels\": {", r->copy_gbs);
        for (size_t i = 0; i < r->kernel_count; i++) {
            printf("%s", i ? ", " : "");
            cli_json_string(r->kernel_name[i]);
            printf(": {\"gbs\": %.3f, \"of_copy\": %.3f}", r->kernel_gbs[i],
                   r->kernel_gbs[i] / r->copy_gbs);
        }
        printf("}, \"launch_us\": %.2f, \"upload_gbs\": %.3f, \"download_gbs\": %.3f, "
               "\"train_samples_per_s\": {",
               r->launch_us, r->upload_gbs, r->download_gbs);
        for (int i = 0; i < a->n_models; i++) {
            printf("%s", i ? ", " : "");
            cli_json_string(a->models[i]);
            printf(": %.1f", m[d].train[i]);
        }
        printf("}, \"api_step_samples_per_s\": {");
        for (int i = 0; i < a->n_models; i++) {
            printf("%s", i ? ", " : "");
            cli_json_string(a->models[i]);
            printf(": %.1f", m[d].api_step[i]);
        }
        printf("}, \"api_forward_one_ms\": {");
        for (int i = 0; i < a->n_models; i++) {
            printf("%s", i ? ", " : "");
            cli_json_string(a->models[i]);
            printf(": %.4f", m[d].api_forward[i]);
        }
        printf("}, \"first_batch_s\": {");
        for (int i = 0; i < a->n_models; i++) {
            printf("%s", i ? ", " : "");
            cli_json_string(a->models[i]);
            printf(": {\"cold\": %.3f, \"warm\": %.3f}", m[d].first_cold[i], m[d].first_warm[i]);
        }
        printf("}, \"images_per_s\": {");
        for (int i = 0; a->images && i < a->n_models; i++) {
            printf("%s", i ? ", " : "");
            cli_json_string(a->models[i]);
            printf(": %.1f", m[d].images[i]);
        }
        printf("}}");
    }
    printf("\n]\n");
}

/* ---- measuring --------------------------------------------------------------------- */

/* A token model: training and generation tokens per second and
 * attention's share of a step, printed as measured (to stderr with --json). */
static int gpt(kiln_ctx *ctx, kiln_model *m, const bench_args *a, int i, size_t batch,
               measured *out)
{
    kiln_bench_gpt_result r;
    if (kiln_bench_gpt(ctx, m, batch, &r) != KILN_OK)
        return cli_fail("bench");
    FILE *f = a->json ? stderr : stdout;
    fprintf(f, "%s: training %.0f tokens/s (batch %zu x block %zu, %.1f ms a step), "
               "attention %.0f %% of a step; generation %.1f tokens/s with the KV cache, "
               "%.1f re-running the window (%zu tokens from an empty prompt)\n",
            a->models[i], r.train_tokens_per_s, r.batch, r.block, r.step_ms,
            100 * r.attention_share, r.generate_tokens_per_s, r.window_tokens_per_s,
            r.generated);
    out->train[i] = out->api_step[i] = r.train_tokens_per_s / (double)r.block;
    out->api_forward[i] = 1e3 / r.window_tokens_per_s;
    return 0;
}

/* Training throughput of each model (profile 0), or its per-layer device
 * time (profile 1), on the device as kiln_ctx_create opens it (tuned). */
static int models(const char *selector, const bench_args *a, int profile, measured *out)
{
    kiln_ctx *ctx;
    if (a->n_models == 0)
        return 0;
    if (kiln_ctx_create(selector, &ctx) != KILN_OK)
        return cli_fail("bench");
    int rc = 0;
    for (int i = 0; i < a->n_models && rc == 0; i++) {
        kiln_model *m;
        if (kiln_model_load(a->models[i], &m) != KILN_OK) {
            rc = cli_fail("bench");
            break;
        }
        size_t batch = a->quick ? 16 : 0;
        if (!profile && kiln_model_vocab(m) > 0) {
            rc = gpt(ctx, m, a, i, batch, out);
            kiln_model_free(m);
            continue;
        }
        if (!profile && (kiln_bench_training(ctx, m, batch, &out->train[i]) != KILN_OK ||
                         kiln_bench_net(ctx, m, batch, &out->api_forward[i],
                                        &out->api_step[i]) != KILN_OK))
            rc = cli_fail("bench");
        if (!profile && rc == 0 && a->images &&
            kiln_bench_images(m, a->images, &out->images[i], &out->image_count,
                              &out->image_workers) != KILN_OK)
            rc = cli_fail("bench");
        if (profile) {
            const char *own = kiln_model_train_setting(m, "batch");
            batch = batch ? batch : own ? (size_t)strtoul(own, NULL, 10) : 128;
            printf("\n%s: device time of one training step by layer, batch %zu\n",
                   a->models[i], batch);
            if (kiln_model_profile_steps(m, ctx, batch, 5, cli_write, stdout) != KILN_OK)
                rc = cli_fail("bench");
        }
        kiln_model_free(m);
    }
    kiln_ctx_free(ctx);
    return rc;
}

static int measure(const char *selector, const bench_args *a, host_sgemm_fn host, measured *out)
{
    kiln_device_info info;
    if (kiln_device_select(selector, &info) != KILN_OK)
        return cli_fail("bench");
    out->info = info;
    fprintf(stderr, "measuring %s / %s ...\n", info.platform, info.name);
    char sel[16];
    snprintf(sel, sizeof sel, "%u", info.global_index);
    if (kiln_bench(sel, a->quick, &out->r) != KILN_OK)
        return cli_fail("bench");
    for (size_t i = 0; host && i < out->r.gemm_count; i++)
        out->r.gemm_host[i] = host_blas_gflops(host, &out->r.gemm[i]);
    int rc = models(sel, a, 0, out);
    for (int i = 0; i < a->n_models && rc == 0; i++)
        rc = cli_first_batch(a->models[i], sel, &out->first_cold[i], &out->first_warm[i]);
    return rc;
}

static const cli_flag flags[] = {
    {"device", 'd', "SEL", "$KILN_DEVICE, else the first GPU, else the first CPU",
     "the device to measure"},
    {"all-devices", 'a', NULL, NULL, "measure every OpenCL device in turn"},
    {"quick", 'q', NULL, NULL, "small sizes and few repetitions (a smoke test, not figures)"},
    {"json", 'j', NULL, NULL, "print the results as one JSON document"},
    {"images", 'i', "DIR", NULL,
     "also decode the image folder DIR (its training split) for each model, as training "
     "would before its first epoch, and report images decoded per second beside the "
     "training samples per second"},
    {"first-batch-worker", 'W', NULL, NULL, NULL},
    {NULL, 0, NULL, NULL, NULL}};

const cli_command cli_bench_cmd = {
    "bench", cli_bench, "[MODEL.ini ...]",
    "GEMM, bandwidth, latency and training speed of devices",
    "Measures a device: GEMM GFLOPS with CLBlast (untuned and tuned) and kiln's GEMM beside "
    "the host's OpenBLAS in the same run, the bandwidth of kiln's kernels against a plain "
    "copy, launch latency, transfers, and the training throughput of models (the examples' "
    "Fashion-MNIST models when run from kiln's source tree, or the given model files, with "
    "device time per layer, and each layer's backward against its forward) and the time a "
    "new process takes to its first trained batch, with empty kernel caches and with warm "
    "ones. Every ratio is taken within one run.",
    flags};

static int parse(int argc, char **argv, bench_args *a)
{
    int opt;
    while ((opt = cli_next_flag(argc, argv, &cli_bench_cmd)) != CLI_DONE) {
        if (opt < 0)
            return opt == CLI_HELP ? -1 : 2;
        if (opt == 'd')
            a->device = optarg;
        else if (opt == 'a')
            a->all = 1;
        else if (opt == 'q')
            a->quick = 1;
        else if (opt == 'j')
            a->json = 1;
        else if (opt == 'W')
            a->worker = 1;
        else if (opt == 'i')
            a->images = optarg;
    }
    for (int i = optind; i < argc && a->n_models < MAX_MODELS; i++)
        a->models[a->n_models++] = argv[i];
    a->layers = a->n_models > 0;
    static const char *const examples[] = {"examples/fashion_mlp.ini", "examples/fashion_cnn.ini"};
    for (int i = 0; a->n_models == 0 && !a->quick && i < 2; i++)
        if (access(examples[i], R_OK) == 0)
            a->models[a->n_models++] = examples[i];
    if (a->n_models == 0 && access(examples[0], R_OK) == 0)
        a->models[a->n_models++] = examples[0];
    return 0;
}

int cli_bench(int argc, char **argv)
{
    bench_args a = {0};
    int rc = parse(argc, argv, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (a.worker)
        return a.n_models == 1 ? cli_first_batch_worker(a.models[0], a.device)
                               : cli_usage_error(&cli_bench_cmd);
    int ranks = 1; /* under mpirun: what data parallelism costs, and nothing else */
    if (kiln_bench_dist(a.device, a.models, (size_t)a.n_models, cli_write, stdout, &ranks))
        return cli_fail("bench");
    if (ranks > 1)
        return 0;
    char core[128] = "";
    host_sgemm_fn host = host_blas_load(core, sizeof core);
    static measured m[16];
    size_t n = 0;
    if (a.all) {
        kiln_device_info *list;
        size_t count;
        if (kiln_devices(&list, &count) != KILN_OK)
            return cli_fail("bench");
        for (size_t i = 0; i < count && i < 16 && rc == 0; i++) {
            char sel[16];
            snprintf(sel, sizeof sel, "%u", list[i].global_index);
            rc = measure(sel, &a, host, &m[n++]);
        }
        kiln_free(list);
    } else {
        rc = measure(a.device, &a, host, &m[n++]);
    }
    if (rc)
        return rc;
    if (a.json)
        print_json(m, n, &a, core);
    for (size_t i = 0; !a.json && i < n && rc == 0; i++) {
        printf("%s", i ? "\n" : "");
        print_table(&m[i], &a, core);
        if (a.layers) {
            char sel[16];
            snprintf(sel, sizeof sel, "%u", m[i].info.global_index);
            rc = models(sel, &a, 1, &m[i]);
        }
    }
    return rc;
}
