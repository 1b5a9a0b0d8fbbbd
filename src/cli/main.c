/* The kiln command: one table of subcommands, each a function. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln.h"
#include "cli/cli.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *usage;
    const char *help;
} command;

static int cmd_help(int argc, char **argv);
static int cmd_version(int argc, char **argv);

static const command commands[] = {
    {"devices", cli_devices, "kiln devices [--json]", "list every OpenCL device"},
    {"check", cli_check, "kiln check [--device SEL] [--size N]",
     "run a GEMM on the device and compare it with the host"},
    {"summary", cli_summary, "kiln summary MODEL.ini [--kernels] [--dot F]",
     "print the layers, memory and launches of a model"},
    {"train", cli_train, "kiln train MODEL.ini [--data fashion-mnist]", "train a model"},
    {"eval", cli_eval, "kiln eval MODEL.ini CHECKPOINT", "evaluate a checkpoint"},
    {"predict", cli_predict, "kiln predict MODEL.ini CHECKPOINT INPUT",
     "class probabilities for a few samples"},
    {"bench", cli_bench, "kiln bench [--all-devices] [--json]",
     "GEMM, bandwidth, latency and training speed of devices"},
    {"tune", cli_tune, "kiln tune [MODEL.ini ...] [--budget 3m] [--show]",
     "tune the GEMM for the device and keep the result"},
    {"version", cmd_version, "kiln version", "print kiln's version"},
    {"help", cmd_help, "kiln help", "print this help"},
};

#define COMMAND_COUNT (sizeof commands / sizeof commands[0])

static int cmd_help(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("kiln %s: train neural networks on any OpenCL device\n\nusage:\n", kiln_version());
    for (size_t i = 0; i < COMMAND_COUNT; i++)
        printf("  %-44s %s%s\n", commands[i].usage, commands[i].help,
               commands[i].run ? "" : " (not in this version)");
    printf("\nThe device is picked by --device SEL or $KILN_DEVICE: an index (0), a\n"
           "platform:device pair (1:0), or part of a name or type (pocl, rusticl, nvidia,\n"
           "gpu, cpu). By default the first GPU, else the first CPU device.\n");
    return 0;
}

static int cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("kiln %s\n", kiln_version());
    return 0;
}

/* Every byte written must have reached its file: a full disk or a closed
 * pipe is an error (exit 1), not a silently truncated result. */
static int finish_output(const char *cmd, int rc)
{
    errno = 0;
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "kiln %s: writing the output failed (%s)\n", cmd,
                errno ? strerror(errno) : "write error");
        return rc ? rc : 1;
    }
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)
        return cmd_help(0, NULL) == 0 && argc >= 2 ? 0 : 2;
    for (size_t i = 0; i < COMMAND_COUNT; i++) {
        if (strcmp(argv[1], commands[i].name) != 0)
            continue;
        if (!commands[i].run) {
            fprintf(stderr, "kiln %s: not available in kiln %s yet\n", commands[i].name,
                    kiln_version());
            return 2;
        }
        int rc = commands[i].run(argc - 1, argv + 1);
        return finish_output(commands[i].name, rc);
    }
    fprintf(stderr, "kiln: unknown command \"%s\"; run \"kiln help\" for the list\n", argv[1]);
    return 2;
}
