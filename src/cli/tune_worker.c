/* kiln tune's worker processes: a candidate checked against a float64
 * reference and timed in a process of its own, and the parent's side that
 * starts one, reads its answer and kills it when it outlives its share of
 * the budget. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>


#include "cli/tune.h"
#include "ref/ref.h"
#include "runtime/rng.h"

extern char **environ;

/* ---- shapes as text: "NT:128x256x784,NN:..." ---------------------------- */

void shape_text(const kiln_gemm_shape *g, char *buf, size_t size)
{
    snprintf(buf, size, "%c%c:%zux%zux%zu", g->ta == KILN_TRANS ? 'T' : 'N',
             g->tb == KILN_TRANS ? 'T' : 'N', g->m, g->n, g->k);
}

int parse_shapes(const char *text, shape_set *set)
{
    set->count = 0;
    for (const char *p = text; *p && set->count < MAX_SHAPES;) {
        char a, b;
        size_t m, n, k;
        int used = 0;
        if (sscanf(p, "%c%c:%zux%zux%zu%n", &a, &b, &m, &n, &k, &used) != 5 || !m || !n || !k)
            return 0;
        set->s[set->count++] = (kiln_gemm_shape){a == 'T' ? KILN_TRANS : KILN_NO_TRANS,
                                                 b == 'T' ? KILN_TRANS : KILN_NO_TRANS, m, n, k};
        p += used;
        p += *p == ',';
    }
    return set->count > 0;
}

void add_shape(shape_set *set, kiln_gemm_shape g)
{
    for (size_t i = 0; i < set->count; i++)
        if (memcmp(&set->s[i], &g, sizeof g) == 0)
            return;
    if (set->count < MAX_SHAPES)
        set->s[set->count++] = g;
}

/* ---- the worker ------------------------------------------------------------ */

static kiln_tensor *random_matrix(kiln_ctx *ctx, size_t rows, size_t cols, kiln_rng *rng,
                                  float *host)
{
    size_t shape[2] = {rows, cols};
    kiln_tensor *t = NULL;
    rng_fill(rng, host, rows * cols, -1.0f, 1.0f);
    if (kiln_tensor_create(ctx, 2, shape, &t) != KILN_OK ||
        kiln_tensor_upload(t, host, rows * cols) != KILN_OK) {
        kiln_tensor_free(t);
        return NULL;
    }
    return t;
}

/* Runs one product and compares it with the float64 reference: *err is
 * its largest difference. */
static kiln_status check_product(kiln_ctx *ctx, const kiln_gemm_shape *g, double *err)
{
    kiln_rng rng;
    rng_seed(&rng, 7);
    size_t na = g->m * g->k, nb = g->k * g->n, nc = g->m * g->n;
    float *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b), *c = calloc(nc, sizeof *c);
    double *want = malloc(nc * sizeof *want);
    kiln_tensor *ta = NULL, *tb = NULL, *tc = NULL;
    kiln_status st = a && b && c && want ? KILN_OK : KILN_ERR_OUT_OF_MEMORY;
    if (st == KILN_OK) {
        ta = g->ta == KILN_TRANS ? random_matrix(ctx, g->k, g->m, &rng, a)
                                 : random_matrix(ctx, g->m, g->k, &rng, a);
        tb = g->tb == KILN_TRANS ? random_matrix(ctx, g->n, g->k, &rng, b)
                                 : random_matrix(ctx, g->k, g->n, &rng, b);
        tc = random_matrix(ctx, g->m, g->n, &rng, c);
        st = ta && tb && tc ? KILN_OK : KILN_ERR_OPENCL;
    }
    if (st == KILN_OK)
        st = kiln_gemm(ctx, g->ta, g->tb, 1.0f, ta, tb, 0.0f, tc);
    if (st == KILN_OK)
        st = kiln_tensor_download(tc, c, nc);
    if (st == KILN_OK) {
        ref_gemm(g->ta == KILN_TRANS, g->tb == KILN_TRANS, g->m, g->n, g->k, 1.0, a, b, 0.0, c,
                 want);
        *err = 0;
        for (size_t i = 0; i < nc && !isnan(*err); i++) /* a NaN stays: it fails the check */
            *err = isnan(c[i]) ? NAN : fmax(*err, fabs(c[i] - want[i]));
    }
    kiln_tensor_free(ta);
    kiln_tensor_free(tb);
    kiln_tensor_free(tc);
    free(a);
    free(b);
    free(c);
    free(want);
    return st;
}

static int parse_list(const char *text, size_t *out, int count)
{
    for (int i = 0; i < count; i++) {
        char *end;
        out[i] = strtoul(text, &end, 10);
        if (end == text || (i + 1 < count && *end != ','))
            return 0;
        text = end + 1;
    }
    return 1;
}

/* "MRxNR/KC" (8x32/256), kiln's GEMM tile and k block, into t. */
static int parse_kiln_tile(const char *text, kiln_tuning *t)
{
    int used = 0;
    if (sscanf(text, "%dx%d/%zu%n", &t->kiln_mr, &t->kiln_nr, &t->kiln_kc, &used) != 3 ||
        text[used] != '\0')
        return 0;
    t->has_kiln_tile = 1;
    return 1;
}

/* Prints "ok SECONDS..." (one per shape) or "fail REASON". */
int tune_worker(const tune_args *a)
{
    shape_set set;
    kiln_tuning t = {.engine = KILN_GEMM_CLBLAST};
    kiln_ctx *ctx = NULL;
    if (!parse_shapes(a->shapes, &set) ||
        (a->xgemm && !(t.has_xgemm = parse_list(a->xgemm, t.xgemm, KILN_XGEMM_PARAMS))) ||
        (a->min_indirect &&
         !(t.has_min_indirect = parse_list(a->min_indirect, &t.min_indirect, 1)))) {
        printf("fail bad worker arguments\n");
        return 2;
    }
    if (strcmp(a->engine, "kiln") == 0)
        t.engine = KILN_GEMM_KILN;
    if (a->kiln_tile && !parse_kiln_tile(a->kiln_tile, &t)) {
        printf("fail bad worker arguments\n");
        return 2;
    }
    kiln_status st = kiln_ctx_create(a->device, &ctx);
    if (st == KILN_OK)
        st = kiln_tuning_apply(ctx, &t);
    kiln_gemm_shape checks[6] = {{KILN_NO_TRANS, KILN_NO_TRANS, 67, 45, 33},
                                 {KILN_TRANS, KILN_NO_TRANS, 33, 67, 45},
                                 {KILN_NO_TRANS, KILN_TRANS, 45, 33, 67},
                                 {KILN_TRANS, KILN_TRANS, 129, 31, 70}};
    size_t n_checks = 4;
    if (t.has_kiln_tile) { /* k past one block and not a multiple of it */
        size_t kc = t.kiln_kc;
        checks[n_checks++] = (kiln_gemm_shape){KILN_NO_TRANS, KILN_TRANS, 19, 37, 2 * kc + 5};
        checks[n_checks++] = (kiln_gemm_shape){KILN_TRANS, KILN_NO_TRANS, 23, 41, kc + 1};
    }
    double err = 0;
    for (size_t i = 0; st == KILN_OK && i < n_checks; i++) {
        st = check_product(ctx, &checks[i], &err);
        /* float32 sums of k products of values up to 1 */
        if (st == KILN_OK && !(err < 1e-3 * fmax(1.0, (double)checks[i].k / 64.0))) {
            char s[64];
            shape_text(&checks[i], s, sizeof s);
            printf("fail wrong results: %s differs from the reference by %g\n", s, err);
            kiln_ctx_free(ctx);
            return 1;
        }
    }
    double times[MAX_SHAPES];
    for (size_t i = 0; st == KILN_OK && i < set.count; i++) {
        const kiln_gemm_shape *g = &set.s[i];
        double gflops = 0;
        st = kiln_bench_gemm(ctx, g, &gflops);
        times[i] = 2.0 * (double)g->m * (double)g->n * (double)g->k / (gflops * 1e9);
    }
    if (st != KILN_OK) {
        printf("fail %s\n", kiln_last_error());
        kiln_ctx_free(ctx);
        return 1;
    }
    printf("ok");
    for (size_t i = 0; i < set.count; i++)
        printf(" %.9g", times[i]);
    printf("\n");
    kiln_ctx_free(ctx);
    return 0;
}

/* ---- running workers ------------------------------------------------------- */


/* Reads the worker's output until it exits or the deadline passes. */
static void collect(int fd, pid_t pid, double deadline, char *line, size_t size, int *killed)
{
    size_t used = 0;
    *killed = 0;
    for (;;) {
        double left = deadline - ref_seconds();
        if (left <= 0) {
            kill(pid, SIGKILL);
            *killed = 1;
            break;
        }
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, (int)fmin(left * 1000.0, 1000.0) + 1);
        if (r < 0 && errno != EINTR)
            break;
        if (r <= 0)
            continue;
        ssize_t n = read(fd, line + used, size - 1 - used);
        if (n <= 0)
            break;
        used += (size_t)n;
    }
    line[used] = '\0';
}

void run_worker(const char *device, const char *engine, const kiln_tuning *t,
                const char *shapes, size_t count, double timeout, outcome *o)
{
    char xgemm[256] = "", indirect[32] = "", tile[64] = "";
    if (t && t->has_kiln_tile)
        snprintf(tile, sizeof tile, "%dx%d/%zu", t->kiln_mr, t->kiln_nr, t->kiln_kc);
    for (int i = 0; t && t->has_xgemm && i < KILN_XGEMM_PARAMS; i++)
        snprintf(xgemm + strlen(xgemm), sizeof xgemm - strlen(xgemm), "%s%zu", i ? "," : "",
                 t->xgemm[i]);
    if (t && t->has_min_indirect)
        snprintf(indirect, sizeof indirect, "%zu", t->min_indirect);
    char *argv[16];
    int n = 0;
    argv[n++] = "kiln";
    argv[n++] = "tune";
    argv[n++] = "--worker";
    argv[n++] = "--engine";
    argv[n++] = (char *)engine;
    argv[n++] = "--shapes";
    argv[n++] = (char *)shapes;
    argv[n++] = "--device";
    argv[n++] = (char *)device;
    if (xgemm[0]) {
        argv[n++] = "--xgemm";
        argv[n++] = xgemm;
    }
    if (indirect[0]) {
        argv[n++] = "--min-indirect";
        argv[n++] = indirect;
    }
    if (tile[0]) {
        argv[n++] = "--kiln-tile";
        argv[n++] = tile;
    }
    argv[n] = NULL;
    memset(o, 0, sizeof *o);
    int pipefd[2];
    if (pipe(pipefd) != 0) {
        snprintf(o->why, sizeof o->why, "pipe: %s", strerror(errno));
        return;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, pipefd[0]);
    pid_t pid;
    int err = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pipefd[1]);
    if (err != 0) {
        close(pipefd[0]);
        snprintf(o->why, sizeof o->why, "cannot start a worker: %s", strerror(err));
        return;
    }
    char line[MAX_LINE];
    int killed;
    collect(pipefd[0], pid, ref_seconds() + timeout, line, sizeof line, &killed);
    close(pipefd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (killed) {
        snprintf(o->why, sizeof o->why, "no result within %.0f s (compile or run too slow)",
                 timeout);
        return;
    }
    if (strncmp(line, "ok", 2) != 0) {
        line[strcspn(line, "\n")] = '\0';
        const char *why = line[0] ? line + (strncmp(line, "fail ", 5) == 0 ? 5 : 0)
                                  : WIFSIGNALED(status) ? "the worker crashed" : "no output";
        snprintf(o->why, sizeof o->why, "%.200s", why);
        return;
    }
    char *p = line + 2;
    for (size_t i = 0; i < count; i++) {
        char *end;
        o->times[i] = strtod(p, &end);
        if (end == p || !(o->times[i] > 0)) {
            snprintf(o->why, sizeof o->why, "unreadable worker output");
            return;
        }
        p = end;
    }
    o->ok = 1;
}

