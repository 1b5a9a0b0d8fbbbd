/* kiln summary MODEL.ini: the layers, their shapes and parameter counts,
 * the memory of a training step; --kernels lists the launches of one step
 * on the device, --dot writes the fused graph for Graphviz. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const cli_flag flags[] = {
    {"batch", 'b', "N", "the [train] batch, else 128", "the batch size for the memory figures"},
    {"kernels", 'k', NULL, NULL,
     "also run one training step on the device and list its kernel launches"},
    {"unfused", 'u', NULL, NULL, "with --kernels: list the launches without fusion"},
    {"dot", 'g', "FILE", NULL, "write the fused graph for Graphviz (dot -Tsvg FILE)"},
    {"device", 'd', "SEL", "KILN_DEVICE, else the first GPU, else the first CPU",
     "the device for --kernels"},
    {NULL, 0, NULL, NULL, NULL}};

const cli_command cli_summary_cmd = {
    "summary", cli_summary, "MODEL.ini", "check a model file and print its layers and memory",
    "Reads a model file and checks every layer and the [train] section (an error names the "
    "file and line), then prints each layer with its output shape and parameters, and the "
    "device memory of a training step.",
    flags};

typedef struct {
    const char *path, *dot, *device;
    long batch;
    int kernels, unfused;
} summary_args;

/* 0 on success, else the exit code. */
static int parse_args(int argc, char **argv, summary_args *a)
{
    int opt;
    while ((opt = cli_next_flag(argc, argv, &cli_summary_cmd)) != CLI_DONE) {
        char *end = NULL;
        if (opt < 0)
            return opt == CLI_HELP ? -1 : 2;
        if (opt == 'b' && ((a->batch = strtol(optarg, &end, 10)) < 1 || *end || a->batch > 65536)) {
            fprintf(stderr, "kiln summary: --batch %s: expected a whole number from 1 to 65536\n",
                    optarg);
            return 2;
        }
        if (opt == 'k')
            a->kernels = 1;
        else if (opt == 'u')
            a->unfused = 1;
        else if (opt == 'g')
            a->dot = optarg;
        else if (opt == 'd')
            a->device = optarg;
    }
    if (optind != argc - 1)
        return cli_usage_error(&cli_summary_cmd);
    a->path = argv[optind];
    return 0;
}

static kiln_status fill_dot(void *m, FILE *f)
{
    return kiln_model_dot(m, cli_write, f);
}

static int write_dot(kiln_model *m, const char *path)
{
    if (kiln_write_file_atomic(path, fill_dot, m) != KILN_OK)
        return cli_fail("summary");
    printf("graph written to %s (render with: dot -Tsvg %s -o model.svg)\n", path, path);
    return 0;
}

static int trace(kiln_model *m, const summary_args *a)
{
    kiln_ctx *ctx;
    if (kiln_ctx_create(a->device, &ctx) != KILN_OK)
        return cli_fail("summary");
    printf("device: %s / %s\n", kiln_ctx_device(ctx)->platform, kiln_ctx_device(ctx)->name);
    int rc = kiln_model_trace_step(m, ctx, (size_t)a->batch, !a->unfused, cli_write, stdout) == KILN_OK
                 ? 0
                 : cli_fail("summary");
    kiln_ctx_free(ctx);
    return rc;
}

int cli_summary(int argc, char **argv)
{
    summary_args a = {.batch = 0};
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    kiln_model *m;
    if (kiln_model_load(a.path, &m) != KILN_OK)
        return cli_fail("summary");
    if (kiln_model_check_train(m) != KILN_OK) {
        kiln_model_free(m);
        return cli_fail("summary");
    }
    const char *train_batch = kiln_model_train_setting(m, "batch");
    if (!a.batch)
        a.batch = train_batch && atol(train_batch) > 0 ? atol(train_batch) : 128;
    printf("model %s\n", a.path);
    if (kiln_model_summary(m, cli_write, stdout) != KILN_OK ||
        kiln_model_memory(m, (size_t)a.batch, cli_write, stdout))
        rc = cli_fail("summary");
    if (rc == 0 && a.dot)
        rc = write_dot(m, a.dot);
    if (rc == 0 && a.kernels)
        rc = trace(m, &a);
    kiln_model_free(m);
    return rc;
}
