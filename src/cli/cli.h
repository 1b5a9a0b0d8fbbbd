/* Subcommands of the kiln command and the helpers they share. */
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include <stdio.h>

#include "kiln.h"

int cli_devices(int argc, char **argv);
int cli_check(int argc, char **argv);
int cli_summary(int argc, char **argv);
int cli_train(int argc, char **argv);
int cli_eval(int argc, char **argv);
int cli_predict(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_tune(int argc, char **argv);

/* A kiln_write_fn that writes to the FILE * given as user. */
static inline void cli_write(void *file, const char *text)
{
    fputs(text, (FILE *)file);
}

/* Prints "kiln CMD: <last error>" to stderr and returns the exit code 1. */
int cli_fail(const char *cmd);

/* Prints s as a JSON string, quoted and escaped. */
void cli_json_string(const char *s);

/* Formats a byte count as "1.5 GiB" into buf. */
const char *cli_bytes(uint64_t bytes, char *buf, size_t size);

#endif
