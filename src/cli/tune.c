/* kiln tune: searches CLBlast's Xgemm parameters for one device, finds the
 * size from which CLBlast's indirect GEMM beats its direct one, on CPU
 * devices searches the tile and k block of kiln's own GEMM and picks the
 * faster engine, times attention's rows per work-item or work-group, and
 * stores the result as the device's tuning record, applied whenever kiln
 * opens it.
 *
 * Every candidate runs in a worker process (this program, re-executed with
 * --worker): a kernel that takes too long to compile, crashes the driver
 * or computes wrong results costs that worker only. Workers check the
 * product against a float64 reference at awkward sizes and all transposes
 * before they time the shapes; the parent kills one that outlives its
 * share of the budget. */
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

static const cli_flag flags[] = {
    {"budget", 'B', "TIME", "3m", "how long to search, in seconds or as 90s, 3m or 1h"},
    {"batch", 'b', "N", "128", "the batch of the models' GEMM shapes"},
    {"show", 's', NULL, NULL, "print the device's tuning record instead of tuning"},
    {"device", 'd', "SEL", "$KILN_DEVICE, else the first GPU, else the first CPU",
     "the device to tune"},
    /* internal: a candidate run in a worker process */
    {"worker", 'W', NULL, NULL, NULL},
    {"engine", 'E', "ENGINE", NULL, NULL},
    {"xgemm", 'X', "PARAMS", NULL, NULL},
    {"min-indirect", 'I', "N", NULL, NULL},
    {"shapes", 'S', "SHAPES", NULL, NULL},
    {"kiln-tile", 'K', "MRxNR/KC", NULL, NULL},
    {NULL, 0, NULL, NULL, NULL}};

const cli_command cli_tune_cmd = {
    "tune", cli_tune, "[MODEL.ini ...]", "tune the GEMM and attention for the device",
    "Searches the GEMM parameters for the device on the models' GEMM shapes (the examples' "
    "when none are given) and on squares, checks every candidate against a float64 "
    "reference before timing it, times attention's rows per work-item, one a vector lane "
    "(2, 4, 8, 16 on CPUs), or per work-group sharing a tile of keys in local memory (1, 16, "
    "32, 64 on GPUs) forward + backward at nanoGPT's shape, and keeps the best in the "
    "device's tuning record, which every later run on the device applies (KILN_TUNE=off "
    "ignores it).",
    flags};

/* ---- the search space ------------------------------------------------------ */

#define XGEMM_SHORT(name) name = KILN_XGEMM_##name,
enum { KILN_XGEMM_PARAM_LIST(XGEMM_SHORT) }; /* the parameters by their own names */

/* CLBlast's constraints for Xgemm kernel 0, and the device's limits. */
static int valid(const size_t *x, const kiln_device_info *d)
{
    size_t threads = x[MDIMC] * x[NDIMC];
    size_t local = (x[SA] * x[KWG] * x[MWG] + x[SB] * x[KWG] * x[NWG]) * sizeof(float);
    return x[GEMMK] == 0 && x[KREG] == 1 && x[KWG] % x[KWI] == 0 &&
           x[MWG] % (x[MDIMC] * x[VWM]) == 0 && x[NWG] % (x[NDIMC] * x[VWN]) == 0 &&
           x[MWG] % (x[MDIMA] * x[VWM]) == 0 && x[NWG] % (x[NDIMB] * x[VWN]) == 0 &&
           threads % x[MDIMA] == 0 && threads % x[NDIMB] == 0 &&
           x[KWG] % (threads / x[MDIMA]) == 0 && x[KWG] % (threads / x[NDIMB]) == 0 &&
           threads <= d->max_work_group_size && local <= d->local_mem_bytes;
}

static size_t pick(kiln_rng *rng, const size_t *values, size_t n)
{
    return values[rng_next(rng) % n];
}

/* A random valid candidate; CPUs like wide vectors, big tiles and no
 * local memory, GPUs more threads and local memory: the space holds both. */
static int sample(kiln_rng *rng, const kiln_device_info *d, size_t *x)
{
    static const size_t wg[] = {16, 32, 64, 128}, kwg[] = {16, 32}, dim[] = {4, 8, 16, 32},
                        kwi[] = {2, 8}, vw[] = {1, 2, 4, 8}, bit[] = {0, 1};
    for (int tries = 0; tries < 100000; tries++) {
        x[GEMMK] = 0;
        x[KREG] = 1;
        x[MWG] = pick(rng, wg, 4);
        x[NWG] = pick(rng, wg, 4);
        x[KWG] = pick(rng, kwg, 2);
        x[MDIMC] = pick(rng, dim, 4);
        x[NDIMC] = pick(rng, dim, 4);
        x[MDIMA] = pick(rng, dim, 4);
        x[NDIMB] = pick(rng, dim, 4);
        x[KWI] = pick(rng, kwi, 2);
        x[VWM] = pick(rng, vw, 4);
        x[VWN] = pick(rng, vw, 4);
        x[SA] = pick(rng, bit, 2);
        x[SB] = pick(rng, bit, 2);
        x[STRM] = pick(rng, bit, 2);
        x[STRN] = pick(rng, bit, 2);
        if (valid(x, d))
            return 1;
    }
    return 0;
}

/* Starting points: a CPU-shaped set (wide vectors, 8x8 threads, no local
 * memory) and a GPU-shaped one. */
static const size_t seeds[2][KILN_XGEMM_PARAMS] = {
    {0, 1, 16, 2, 8, 8, 128, 8, 8, 128, 0, 0, 0, 0, 8, 8},
    {0, 1, 32, 2, 16, 16, 64, 16, 16, 64, 1, 1, 0, 0, 2, 2},
};

/* ---- the search ------------------------------------------------------------ */

static void describe(const size_t *x, char *buf, size_t size)
{
    buf[0] = '\0';
    for (int i = 0; i < KILN_XGEMM_PARAMS; i++)
        snprintf(buf + strlen(buf), size - strlen(buf), "%s%s=%zu", i ? " " : "",
                 kiln_xgemm_param_name(i), x[i]);
}

static double gflops(const shape_set *set, const double *times, size_t i)
{
    const kiln_gemm_shape *g = &set->s[i];
    return 2.0 * (double)g->m * (double)g->n * (double)g->k / times[i] * 1e-9;
}

/* The geometric mean of o's GFLOPS (the shapes' geometric mean), by which candidates
 * are compared: each shape counts the same. Their total time let the
 * largest square decide alone (1024^3 is 2.1 GFLOP, the Fashion MLP's
 * largest product 51 MFLOP): on a 2-core AMD EPYC (AVX2) it chose a
 * 4 x 16 tile that ran the model's products at 0.90-0.94 of the 6 x 16's
 * speed, within the noise of the square it won on. */
static double mean_gflops(const shape_set *set, const outcome *o)
{
    double logs = 0;
    for (size_t i = 0; i < set->count; i++)
        logs += log(gflops(set, o->times, i));
    return set->count ? exp(logs / (double)set->count) : 0;
}

/* Whether a (run) is faster than b by mean_gflops; b not run: yes. */
static int faster(const shape_set *set, const outcome *a, const outcome *b)
{
    return a->ok && (!b->ok || mean_gflops(set, a) > mean_gflops(set, b));
}

typedef struct {
    const char *device;
    const kiln_device_info *info;
    shape_set set;
    char shapes[MAX_LINE];
    double started, budget;
    outcome clblast_default, kiln, best;
    kiln_tuning tuning;
    int tried;
    attn_result attn;
} search;

static double left(const search *s)
{
    return s->budget - (ref_seconds() - s->started);
}

/* The time a worker may take: what is left, but at least 30 s. */
static double allowance(const search *s)
{
    return fmax(30.0, left(s));
}

static void candidates(search *s)
{
    kiln_rng rng;
    rng_seed(&rng, 2024);
    size_t x[KILN_XGEMM_PARAMS];
    for (int i = 0; left(s) > 0; i++) {
        if (i < 2)
            memcpy(x, seeds[i], sizeof x);
        else if (!sample(&rng, s->info, x))
            break;
        if (!valid(x, s->info))
            continue;
        kiln_tuning t = {.has_xgemm = 1};
        memcpy(t.xgemm, x, sizeof x);
        outcome o;
        run_worker(s->device, "clblast", &t, s->shapes, s->set.count, allowance(s), &o);
        s->tried++;
        char text[400];
        describe(x, text, sizeof text);
        if (!o.ok) {
            printf("  candidate %d: %s\n    skipped: %s\n", s->tried, text, o.why);
            continue;
        }
        int better = faster(&s->set, &o, &s->best);
        printf("  candidate %d: %s\n    %.1f GFLOPS (the shapes' geometric mean)%s\n",
               s->tried, text, mean_gflops(&s->set, &o), better ? " (best so far)" : "");
        fflush(stdout);
        if (better) {
            s->best = o;
            s->tuning.has_xgemm = 1;
            memcpy(s->tuning.xgemm, x, sizeof x);
        }
    }
}

/* ---- kiln's own GEMM: tiles and k blocks ------------------------------------ */

/* The tiles worth timing: MR x 2V with V the CPU's vector width or half of
 * it, and the 2 MR accumulators, two vectors of B and a broadcast within
 * its vector registers (32 of 16 floats with AVX-512, 16 of 8 with AVX2,
 * 16 of 4 otherwise); the largest MR that fits and two fewer. */
static int tile_shapes(int *mr, int *v)
{
    int lanes = 4, registers = 16, n = 0;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        lanes = 16, registers = 32;
    else if (__builtin_cpu_supports("avx2"))
        lanes = 8;
#elif defined(__aarch64__)
    registers = 32;
#endif
    for (int w = lanes; w >= 4 && w >= lanes / 2; w /= 2) {
        int most = ((registers - 1) - 2) / 2;
        most = most > 8 ? 8 : most;
        for (int m = most; m >= most - 2 && m >= 1; m -= 2) {
            mr[n] = m;
            v[n++] = w;
        }
    }
    return n;
}

/* One configuration of kiln's GEMM and its best time per shape so far. */
typedef struct {
    kiln_tuning t;
    outcome o;
} kiln_config;

/* Times kiln's GEMM with c's tile and k block once more; each shape keeps
 * its best time of the runs, as a busy machine only ever slows one down. */
static void tile_time(search *s, kiln_config *c, double until)
{
    outcome o;
    run_worker(s->device, "kiln", &c->t, s->shapes, s->set.count,
               fmax(10.0, until - ref_seconds()), &o);
    printf("  kiln's GEMM %dx%d, k block %zu: ", c->t.kiln_mr, c->t.kiln_nr, c->t.kiln_kc);
    if (!o.ok) {
        printf("skipped: %s\n", o.why);
        if (!c->o.ok)
            c->o = o;
        return;
    }
    for (size_t i = 0; c->o.ok && i < s->set.count; i++)
        o.times[i] = fmin(o.times[i], c->o.times[i]);
    c->o = o;
    printf("%.1f GFLOPS (the shapes' geometric mean)\n", mean_gflops(&s->set, &o));
    fflush(stdout);
}

static kiln_config *tile_fastest(const shape_set *set, kiln_config *c, int n,
                                 const kiln_config *but)
{
    kiln_config *best = NULL;
    for (int i = 0; i < n; i++)
        if (&c[i] != but && (!best ? c[i].o.ok : faster(set, &c[i].o, &best->o)))
            best = &c[i];
    return best;
}

static void tile_add(kiln_config *c, int *n, int mr, int nr, size_t kc)
{
    c[(*n)++] = (kiln_config){{.engine = KILN_GEMM_KILN, .has_kiln_tile = 1, .kiln_mr = mr,
                               .kiln_nr = nr, .kiln_kc = kc}, {0}};
}

/* The tiles at the first k block, then other k blocks with the fastest
 * tile, then the two fastest once more, within a minute (a third of the
 * budget when that is less): each candidate compiles kiln's GEMM (about a
 * second) and runs the shapes. */
static void tile_search(search *s)
{
    static const size_t blocks[] = {512, 2048, 4096};
    kiln_config c[16];
    int mr[8], v[8], tiles = tile_shapes(mr, v), n = 0, runs = 0;
    double started = ref_seconds(), until = started + fmin(KILN_SEARCH_S, s->budget / 3);
    for (int i = 0; i < tiles && ref_seconds() < until; i++) {
        tile_add(c, &n, mr[i], 2 * v[i], KILN_FIRST_KC);
        tile_time(s, &c[n - 1], until);
        runs++;
    }
    kiln_config *best = tile_fastest(&s->set, c, n, NULL);
    for (int i = 0; i < 3 && best && ref_seconds() < until; i++) {
        tile_add(c, &n, best->t.kiln_mr, best->t.kiln_nr, blocks[i]);
        tile_time(s, &c[n - 1], until);
        runs++;
    }
    best = tile_fastest(&s->set, c, n, NULL);
    kiln_config *second = tile_fastest(&s->set, c, n, best);
    for (int i = 0; i < 2; i++)
        if ((i ? second : best) && ref_seconds() < until) {
            tile_time(s, i ? second : best, until);
            runs++;
        }
    best = tile_fastest(&s->set, c, n, NULL);
    if (!best)
        return;
    s->kiln = best->o;
    s->tuning.has_kiln_tile = 1;
    s->tuning.kiln_mr = best->t.kiln_mr;
    s->tuning.kiln_nr = best->t.kiln_nr;
    s->tuning.kiln_kc = best->t.kiln_kc;
    printf("  kiln's GEMM: %dx%d, k block %zu, %.1f GFLOPS (the shapes' geometric mean; %d "
           "runs in %.0f s)\n",
           best->t.kiln_mr, best->t.kiln_nr, best->t.kiln_kc, mean_gflops(&s->set, &best->o),
           runs, ref_seconds() - started);
}

/* The smallest square size from which the indirect GEMM (with the tuned
 * parameters) beats the direct one. */
static void direct_threshold(search *s)
{
    static const size_t sizes[] = {64, 128, 256, 512};
    char shapes[256] = "";
    for (int i = 0; i < 4; i++)
        snprintf(shapes + strlen(shapes), sizeof shapes - strlen(shapes), "%sNN:%zux%zux%zu",
                 i ? "," : "", sizes[i], sizes[i], sizes[i]);
    kiln_tuning direct = s->tuning, indirect = s->tuning;
    direct.has_min_indirect = indirect.has_min_indirect = 1;
    direct.min_indirect = DIRECT_ALWAYS;
    indirect.min_indirect = 0;
    outcome od, oi;
    run_worker(s->device, "clblast", &direct, shapes, 4, allowance(s), &od);
    run_worker(s->device, "clblast", &indirect, shapes, 4, allowance(s), &oi);
    if (!od.ok || !oi.ok) {
        printf("  direct vs indirect: not measured (%s)\n", od.ok ? oi.why : od.why);
        return;
    }
    s->tuning.has_min_indirect = 1;
    s->tuning.min_indirect = DIRECT_ALWAYS;
    for (int i = 3; i >= 0 && oi.times[i] < od.times[i]; i--)
        s->tuning.min_indirect = sizes[i];
    for (int i = 0; i < 4; i++)
        printf("  n=%-4zu direct %.2f ms, indirect %.2f ms\n", sizes[i], od.times[i] * 1e3,
               oi.times[i] * 1e3);
    printf("  CLBlast's indirect GEMM from size %zu on\n", s->tuning.min_indirect);
}

/* The record's "measured" part, as JSON text. */
static char *measured_json(const search *s)
{
    size_t size = 16384;
    char *j = malloc(size);
    if (!j)
        return NULL;
    int used = snprintf(j, size, "{\"budget_s\": %.0f, \"candidates\": %d, \"shapes\": [",
                        s->budget, s->tried);
    for (size_t i = 0; i < s->set.count; i++) {
        char t[64];
        shape_text(&s->set.s[i], t, sizeof t);
        used += snprintf(j + used, size - (size_t)used, "%s{\"shape\": \"%s\"", i ? ", " : "",
                         t);
        const outcome *os[3] = {&s->clblast_default, &s->best, &s->kiln};
        const char *names[3] = {"clblast_default", "clblast_tuned", "kiln"};
        for (int k = 0; k < 3; k++)
            if (os[k]->ok)
                used += snprintf(j + used, size - (size_t)used, ", \"%s_gflops\": %.2f",
                                 names[k], gflops(&s->set, os[k]->times, i));
        used += snprintf(j + used, size - (size_t)used, "}");
    }
    used += snprintf(j + used, size - (size_t)used, "], \"attention_ms\": {");
    for (int i = 0, n = 0; i < ATTN_CANDIDATES; i++)
        if (s->attn.ms[i] > 0)
            used += snprintf(j + used, size - (size_t)used, "%s\"%zu\": %.3f", n++ ? ", " : "",
                             s->attn.rows[i], s->attn.ms[i]);
    snprintf(j + used, size - (size_t)used, "}}");
    return j;
}

static void report(const search *s)
{
    printf("\n%-22s %16s %16s %16s\n", "GFLOPS", "CLBlast default", "CLBlast tuned", "kiln");
    for (size_t i = 0; i < s->set.count; i++) {
        char t[64];
        shape_text(&s->set.s[i], t, sizeof t);
        printf("%-22s", t);
        const outcome *os[3] = {&s->clblast_default, &s->best, &s->kiln};
        for (int k = 0; k < 3; k++)
            os[k]->ok ? printf(" %16.1f", gflops(&s->set, os[k]->times, i))
                      : printf(" %16s", "-");
        printf("\n");
    }
}

/* ---- the command ------------------------------------------------------------ */

static int parse_budget(const char *v, double *out)
{
    char *end;
    double x = strtod(v, &end);
    double unit = strcmp(end, "m") == 0 ? 60 : strcmp(end, "h") == 0 ? 3600 : 1;
    if (end == v || !(strcmp(end, "") == 0 || strcmp(end, "s") == 0 || unit > 1) || !(x > 0)) {
        fprintf(stderr, "kiln tune: --budget %s: expected a duration such as 90s, 5m or 1h\n", v);
        return 0;
    }
    *out = x * unit;
    return 1;
}

static int show(const char *device)
{
    kiln_device_info info;
    char path[4096];
    if (kiln_device_select(device, &info) != KILN_OK ||
        kiln_tuning_path(&info, path, sizeof path) != KILN_OK)
        return cli_fail("tune");
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("no tuning record for %s / %s (would be %s); run kiln tune\n", info.platform,
               info.name, path);
        return 0;
    }
    printf("tuning record for %s / %s: %s\n", info.platform, info.name, path);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        fwrite(buf, 1, n, stdout);
    fclose(f);
    printf("\n");
    return 0;
}

/* The GEMMs of the given models (or of the examples, when run from kiln's
 * source tree) and square sizes. */
static int collect_shapes(const tune_args *a, char **models, int n_models, search *s)
{
    static const char *const examples[] = {"examples/fashion_mlp.ini", "examples/fashion_cnn.ini"};
    static const size_t squares[] = {256, 512, 1024};
    kiln_ctx *ctx;
    if (kiln_ctx_create(a->device, &ctx) != KILN_OK)
        return 0;
    kiln_ctx_set_gemm(ctx, KILN_GEMM_CLBLAST); /* the products CLBlast would be given */
    int use_examples = n_models == 0;
    int count = use_examples ? 2 : n_models;
    for (int i = 0; i < count; i++) {
        const char *path = use_examples ? examples[i] : models[i];
        if (use_examples && access(path, R_OK) != 0)
            continue;
        kiln_model *m;
        kiln_gemm_shape g[MAX_SHAPES];
        size_t n = 0;
        if (kiln_model_load(path, &m) != KILN_OK ||
            kiln_model_gemm_shapes(m, ctx, (size_t)a->batch, g, MAX_SHAPES, &n) != KILN_OK) {
            kiln_ctx_free(ctx);
            return 0;
        }
        kiln_model_free(m);
        printf("  %s: %zu matrix products a step at batch %d\n", path, n, a->batch);
        for (size_t k = 0; k < n; k++)
            add_shape(&s->set, g[k]);
    }
    for (int i = 0; i < 3; i++)
        add_shape(&s->set, (kiln_gemm_shape){KILN_NO_TRANS, KILN_NO_TRANS, squares[i],
                                             squares[i], squares[i]});
    kiln_ctx_free(ctx);
    s->shapes[0] = '\0';
    for (size_t i = 0; i < s->set.count; i++) {
        char t[64];
        shape_text(&s->set.s[i], t, sizeof t);
        snprintf(s->shapes + strlen(s->shapes), sizeof s->shapes - strlen(s->shapes), "%s%s",
                 i ? "," : "", t);
    }
    return 1;
}
/* The engine the record names: the faster of the two by mean_gflops. On
 * a CPU, where kiln's GEMM is searched, a search that gave it no figure
 * (a budget shorter than its first compile, on a busy machine) leaves
 * the engine to the device's default: the comparison read it as slower,
 * and a 20 s search recorded CLBlast for PoCL, 9-18 times slower there. */
static kiln_gemm_engine chosen_engine(const search *s, const kiln_device_info *info)
{
    const outcome *clblast = s->best.ok ? &s->best : &s->clblast_default;
    if (info->type == KILN_DEVICE_CPU && !s->kiln.ok)
        return KILN_GEMM_AUTO;
    return faster(&s->set, &s->kiln, clblast) ? KILN_GEMM_KILN : KILN_GEMM_CLBLAST;
}


static int tune(const tune_args *a, char **models, int n_models)
{
    kiln_device_info info;
    if (kiln_device_select(a->device, &info) != KILN_OK)
        return cli_fail("tune");
    search s = {.info = &info, .budget = a->budget};
    char device[32];
    snprintf(device, sizeof device, "%u", info.global_index);
    s.device = device;
    printf("tuning the GEMM for %s / %s, budget %.0f s\n", info.platform, info.name, a->budget);
    if (!collect_shapes(a, models, n_models, &s))
        return cli_fail("tune");
    s.started = ref_seconds();
    setenv("KILN_TUNE", "off", 1); /* workers measure from CLBlast's defaults */
    run_worker(device, "clblast", NULL, s.shapes, s.set.count, allowance(&s), &s.clblast_default);
    printf("  CLBlast default: %s%.1f GFLOPS (the shapes' geometric mean)\n",
           s.clblast_default.ok ? "" : "failed; ",
           s.clblast_default.ok ? mean_gflops(&s.set, &s.clblast_default) : 0.0);
    if (info.type == KILN_DEVICE_CPU)
        tile_search(&s);
    tune_attention(device, fmin(KILN_SEARCH_S, s.budget / 6), &s.attn);
    s.tuning.attn_rows = s.attn.best;
    candidates(&s);
    if (s.best.ok && left(&s) > 0)
        direct_threshold(&s);
    s.tuning.engine = chosen_engine(&s, &info);
    if (s.tuning.engine == KILN_GEMM_AUTO)
        printf("  kiln's GEMM gave no figure (above): the record leaves the GEMM engine to "
               "the device's default\n");
    report(&s);
    char *measured = measured_json(&s), path[4096];
    kiln_status st = kiln_tuning_save(&info, &s.tuning, measured, path, sizeof path);
    free(measured);
    if (st != KILN_OK)
        return cli_fail("tune");
    printf("\n%d candidates in %.0f s; GEMM engine: %s; attention rows: %zu; record written "
           "to %s\n", s.tried, ref_seconds() - s.started,
           kiln_gemm_engine_str((kiln_gemm_engine)s.tuning.engine), s.tuning.attn_rows, path);
    return 0;
}

int cli_tune(int argc, char **argv)
{
    tune_args a = {.budget = 180, .batch = 128, .engine = "clblast"};
    int opt;
    while ((opt = cli_next_flag(argc, argv, &cli_tune_cmd)) != CLI_DONE) {
        switch (opt) {
        case CLI_HELP:
        case CLI_BAD: return CLI_EXIT(opt);
        case 'B':
            if (!parse_budget(optarg, &a.budget))
                return 2;
            break;
        case 'd': a.device = optarg; break;
        case 's': a.show = 1; break;
        case 'b': a.batch = atoi(optarg); break;
        case 'W': a.worker = 1; break;
        case 'E': a.engine = optarg; break;
        case 'X': a.xgemm = optarg; break;
        case 'I': a.min_indirect = optarg; break;
        case 'S': a.shapes = optarg; break;
        case 'K': a.kiln_tile = optarg; break;
        }
    }
    if (a.batch < 1 || a.batch > 65536) {
        fprintf(stderr, "kiln tune: --batch: expected 1 to 65536\n");
        return 2;
    }
    if (a.worker)
        return a.shapes ? tune_worker(&a) : 2;
    if (a.show)
        return show(a.device);
    return tune(&a, argv + optind, argc - optind);
}
