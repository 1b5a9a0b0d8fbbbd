/* The kiln command: one table of subcommands, each with its flags (cli_command). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln_tools.h"
#include "cli/cli.h"

/* The man page's date: that of the version, not of the build. */
#define KILN_RELEASE_DATE "December 2026"

static int cmd_help(int argc, char **argv);
static int cmd_version(int argc, char **argv);

static const cli_flag help_flags[] = {
    {"man", 'm', NULL, NULL, "print the kiln(1) manual page in roff instead"},
    {NULL, 0, NULL, NULL, NULL}};
static const cli_command help_cmd = {
    "help", cmd_help, "[COMMAND]", "print the commands, or one command's flags",
    "Without a command: the list of commands and the environment variables kiln reads. "
    "With one: its usage, what it does, and every flag with its meaning and default (the "
    "same as \"kiln COMMAND --help\").",
    help_flags};
static const cli_command version_cmd = {"version", cmd_version, NULL, "print kiln's version",
                                        NULL, NULL};

static const cli_command *const commands[] = {
    &cli_devices_cmd, &cli_check_cmd, &cli_summary_cmd, &cli_train_cmd, &cli_eval_cmd,
    &cli_predict_cmd, &cli_export_cmd, &cli_generate_cmd, &cli_bench_cmd, &cli_tune_cmd,
    &cli_plot_cmd, &version_cmd, &help_cmd,
};

#define COMMAND_COUNT (sizeof commands / sizeof commands[0])

static const cli_env environment[] = {
    {"KILN_DEVICE", "The device, as --device takes it: an index (0), a platform:device pair "
                    "(1:0), or part of a platform, vendor, ICD suffix, device name or type "
                    "(pocl, rusticl, nvidia, gpu, cpu); under mpirun or srun a "
                    "comma-separated list from which each local rank takes its entry. By "
                    "default the first GPU (under mpirun or srun, local rank r takes GPU r "
                    "of a node's GPUs), else the first CPU device."},
    {"KILN_DIST_TIMEOUT", "Under mpirun or srun: the seconds one collective may wait for the "
                          "other ranks before the job ends, naming the ranks that did not "
                          "answer (overrides [train] dist_timeout; default 300)."},
    {"KILN_CACHE_DIR", "Where compiled kernels and tuning records are kept (default: "
                       "$XDG_CACHE_HOME/kiln, else ~/.cache/kiln)."},
    {"KILN_DATA_DIR", "Where the named datasets (fashion-mnist, mnist) are looked for first."},
    {"KILN_GEMM", "The matrix-product engine: kiln (kiln's GEMM for CPUs), clblast, or auto "
                  "(default: the faster one for the device)."},
    {"KILN_GEMM_TILE", "Register tile of kiln's GEMM as ROWSxCOLUMNS (default: by the "
                       "device's vector ISA, or its tuning record)."},
    {"KILN_TUNE", "off: ignore the device's tuning record."},
    {"KILN_VERBOSE", "1: also print each kernel build and the OpenCL compiler's warnings."},
    {"OPENBLAS_CORETYPE", "The host BLAS core that kiln bench compares against."},
    {NULL, NULL}};

static const cli_command *find_command(const char *name)
{
    for (size_t i = 0; i < COMMAND_COUNT; i++)
        if (strcmp(name, commands[i]->name) == 0)
            return commands[i];
    return NULL;
}

static void print_overview(void)
{
    printf("kiln %s: train neural networks on any OpenCL device\n\nusage: kiln COMMAND "
           "[ARGUMENTS] [flags]\n\ncommands:\n", kiln_version());
    for (size_t i = 0; i < COMMAND_COUNT; i++)
        printf("  %-10s %s\n", commands[i]->name, commands[i]->summary);
    printf("\n\"kiln help COMMAND\" or \"kiln COMMAND --help\" prints a command's flags.\n\n"
           "environment:\n");
    for (const cli_env *e = environment; e->name; e++)
        printf("  %s\n", e->name);
    printf("(\"kiln help --man | man -l -\" describes each.)\n");
}

static int cmd_help(int argc, char **argv)
{
    int opt, man = 0;
    while ((opt = cli_next_flag(argc, argv, &help_cmd)) != CLI_DONE) {
        if (opt < 0)
            return CLI_EXIT(opt);
        man = 1;
    }
    if (man) {
        /* the date of the release rather than of the build, so that builds repeat */
        cli_print_man(stdout, commands, COMMAND_COUNT, environment, KILN_RELEASE_DATE);
        return 0;
    }
    if (optind == argc) {
        print_overview();
        return 0;
    }
    const cli_command *c = argc - optind == 1 ? find_command(argv[optind]) : NULL;
    if (!c) {
        fprintf(stderr, "kiln help: %s is not a command; run \"kiln help\" for the list\n",
                argv[optind]);
        return 2;
    }
    cli_print_help(c, stdout);
    return 0;
}

static int cmd_version(int argc, char **argv)
{
    int opt = cli_next_flag(argc, argv, &version_cmd);
    if (opt != CLI_DONE)
        return CLI_EXIT(opt);
    if (optind != argc)
        return cli_usage_error(&version_cmd);
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

/* A rank of an MPI job that failed ends the whole job: it exits at once,
 * without MPI_Finalize (which would wait for the other ranks), and mpirun
 * or srun end the others, which would otherwise wait for it. The library
 * only returns errors; ending the job is the command's decision. (An
 * interrupted run, 130, stops on every rank together and finalizes.) */
static int end_job_on_failure(int rc)
{
    kiln_job job;
    kiln_job_place(NULL, &job);
    if (rc == 0 || rc == 130 || job.size == 1)
        return rc;
    fprintf(stderr, "kiln: rank %d of %d failed; ending the job\n", job.rank, job.size);
    fflush(stdout);
    fflush(stderr);
    _exit(rc);
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        print_overview();
        return argc < 2 ? 2 : 0;
    }
    const cli_command *c = find_command(argv[1]);
    if (c)
        return end_job_on_failure(finish_output(c->name, c->run(argc - 1, argv + 1)));
    fprintf(stderr, "kiln: unknown command \"%s\"; run \"kiln help\" for the list\n", argv[1]);
    return 2;
}
