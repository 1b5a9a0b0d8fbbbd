/* kiln tune's parts: the shapes it times, its worker processes (each
 * candidate runs in one, tune_worker.c) and attention's query rows
 * (tune_attention.c); the search and the command are tune.c. */
#ifndef KILN_CLI_TUNE_H
#define KILN_CLI_TUNE_H

#include "cli/cli.h"

#define MAX_SHAPES 40
#define MAX_LINE 4096
#define DIRECT_ALWAYS 1000000 /* XGEMM_MIN_INDIRECT_SIZE that never goes indirect */
#define KILN_SEARCH_S 60.0     /* kiln's GEMM: the most seconds of its search */
#define KILN_FIRST_KC 1024     /* the k block the tiles are compared at */

typedef struct {
    kiln_gemm_shape s[MAX_SHAPES];
    size_t count;
} shape_set;

typedef struct {
    const char *device;
    double budget;
    int show, worker, batch;
    const char *engine, *xgemm, *min_indirect, *shapes, *kiln_tile;
} tune_args;

typedef struct {
    int ok;
    double times[MAX_SHAPES]; /* seconds a product, per shape */
    char why[256];
} outcome;

/* Attention's rows per work-item or work-group timed (tune_attention.c). */
#define ATTN_CANDIDATES KILN_ATTN_CHOICES
typedef struct {
    size_t rows[ATTN_CANDIDATES]; /* 0: not tried (out of time) */
    double ms[ATTN_CANDIDATES];   /* forward + backward over the shapes, each shape's
                                     best of the rounds; 0: failed */
    size_t best;                  /* the fastest rows; 0: none measured */
    double best_ms;
} attn_result;

/* Times each choice of rows on device, starting no new one after `seconds`. */
void tune_attention(const char *device, double seconds, attn_result *r);

void shape_text(const kiln_gemm_shape *g, char *buf, size_t size);
int parse_shapes(const char *text, shape_set *set);
void add_shape(shape_set *set, kiln_gemm_shape g);
/* A candidate, run in this process (kiln tune --worker). */
int tune_worker(const tune_args *a);
/* Runs a candidate in a worker process, killed after timeout seconds. */
void run_worker(const char *device, const char *engine, const kiln_tuning *t,
                const char *shapes, size_t count, double timeout, outcome *o);

#endif
