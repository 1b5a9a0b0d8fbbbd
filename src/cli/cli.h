/* Subcommands of the kiln command and the helpers they share. */
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include <stdio.h>

#include "kiln_tools.h"

/* One flag of a command. */
typedef struct {
    const char *name; /* the long flag without "--" */
    int key;          /* what cli_next_flag returns for it (also its short form) */
    const char *arg;  /* the value's name as help shows it ("N"); NULL for a switch */
    const char *def;  /* the default as help shows it; NULL: none */
    const char *help; /* what it does; NULL: internal, not shown */
} cli_flag;

/* A subcommand: its function, its arguments and flags, and its help. */
typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *args;      /* the positional arguments as usage shows them; NULL: none */
    const char *summary;   /* one line for the list of commands */
    const char *text;      /* the help's paragraph; NULL: the summary */
    const cli_flag *flags; /* ends with an entry whose name is NULL; NULL: none */
} cli_command;

int cli_devices(int argc, char **argv);
int cli_check(int argc, char **argv);
int cli_summary(int argc, char **argv);
int cli_train(int argc, char **argv);
int cli_eval(int argc, char **argv);
int cli_predict(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_tune(int argc, char **argv);
int cli_plot(int argc, char **argv);
int cli_export(int argc, char **argv);
int cli_generate(int argc, char **argv);

extern const cli_command cli_devices_cmd, cli_check_cmd, cli_summary_cmd, cli_train_cmd,
    cli_eval_cmd, cli_predict_cmd, cli_bench_cmd, cli_tune_cmd;
extern const cli_command cli_plot_cmd, cli_export_cmd, cli_generate_cmd;

/* cli_next_flag's results besides a flag's key. */
enum { CLI_DONE = -1, CLI_HELP = -2, CLI_BAD = -3 };
/* The exit code for CLI_HELP (0) or CLI_BAD (2). */
#define CLI_EXIT(opt) ((opt) == CLI_HELP ? 0 : 2)

/* getopt_long over cmd's flags and --help: the next flag's key (its value
 * in optarg), CLI_DONE after the last; --help prints the help and returns
 * CLI_HELP; an unknown flag or a missing value is reported with the usage
 * and returns CLI_BAD. optind then indexes the positional arguments. */
int cli_next_flag(int argc, char **argv, const cli_command *cmd);

/* Prints the usage line to stderr; returns the exit code 2. */
int cli_usage_error(const cli_command *cmd);

/* `kiln help CMD`: usage, what the command does, every flag with its
 * meaning and default. */
void cli_print_help(const cli_command *cmd, FILE *f);

/* An environment variable kiln reads, for help and the man page. */
typedef struct {
    const char *name, *help;
} cli_env;

/* The kiln(1) man page in roff, from the same tables as the help. */
void cli_print_man(FILE *f, const cli_command *const *cmds, size_t n, const cli_env *env,
                   const char *date);

/* A kiln_write_fn that writes to the FILE * given as user. */
static inline void cli_write(void *file, const char *text)
{
    fputs(text, (FILE *)file);
}

/* Parses a flag's value as a number from lo to hi (cli_whole_arg: a
 * whole number); 0 after printing what was expected. */
int cli_number_arg(const char *flag, const char *v, double lo, double hi, double *out);
int cli_whole_arg(const char *flag, const char *v, double lo, double hi, double *out);

/* Whether a file is a safetensors checkpoint (a length, then JSON). */
int cli_is_checkpoint(const char *path);

/* Loads the model (a model file, or the model a checkpoint carries),
 * checking its [train] section, and opens the device (this rank's under
 * mpirun), and prints the device to out; 0 or the exit code after
 * reporting the error. */
int cli_open(const char *model, const char *device, const char *cmd, FILE *out,
             kiln_ctx **ctx, kiln_model **m);

/* kiln bench's start-up figures (startup.c): the seconds from a fresh
 * process to its first trained batch of model, with empty kernel caches
 * (cold) and then with the caches that run left (warm); 0 or 1 after
 * printing why a run failed. The worker is `kiln bench
 * --first-batch-worker MODEL`. */
int cli_first_batch(const char *model, const char *device, double *cold, double *warm);
int cli_first_batch_worker(const char *model, const char *device);

/* Prints "kiln CMD: <last error>" to stderr and returns the exit code 1. */
int cli_fail(const char *cmd);

/* Prints s as a JSON string, quoted and escaped. */
void cli_json_string(const char *s);

/* Formats a byte count as "1.5 GiB" into buf. */
const char *cli_bytes(uint64_t bytes, char *buf, size_t size);

#endif
