/* What the benchmarks share. */
#ifndef KILN_BENCH_H
#define KILN_BENCH_H

#include <stdio.h>
#include <stdlib.h>

#include "kiln_tools.h"

/* Runs a kiln call; on failure prints it with kiln's message and exits. */
#define REQUIRE(call)                                                              \
    do {                                                                           \
        if ((call) != KILN_OK) {                                                   \
            fprintf(stderr, "%s: %s: %s\n", __FILE__, #call, kiln_last_error());   \
            exit(1);                                                               \
        }                                                                          \
    } while (0)

#endif
