/* Tuning records: what `kiln tune` measured best for one device (CLBlast's
 * Xgemm parameters, the size from which CLBlast's indirect GEMM beats its
 * direct one, which GEMM engine to use, the tile and k block of kiln's own
 * GEMM, and attention's rows per work-item or work-group), one JSON file per
 * device in kiln's cache directory, applied whenever a context opens that
 * device.
 * A record names the device, driver, platform and CLBlast version it was
 * measured with; a record for anything else, or one that does not parse,
 * is ignored with a warning. A context's record is applied when its blas
 * state is created (blas.c), on first use. */
#include <clblast_c.h>
#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blas/blas.h"

static const char *const xgemm_names[] = {
#define XGEMM_NAME(name) #name,
    KILN_XGEMM_PARAM_LIST(XGEMM_NAME)
#undef XGEMM_NAME
};
_Static_assert(sizeof xgemm_names / sizeof xgemm_names[0] == KILN_XGEMM_PARAMS,
               "one name per Xgemm parameter");

const char *kiln_xgemm_param_name(int i)
{
    return i >= 0 && i < KILN_XGEMM_PARAMS ? xgemm_names[i] : NULL;
}

/* What a record must match, one line each. */
static void identity(const kiln_device_info *d, char *buf, size_t size)
{
    snprintf(buf, size, "%s|%s|%s|%s|CLBlast %s", d->platform, d->name, d->driver_version,
             d->device_version, KILN_CLBLAST_VERSION);
}

kiln_status kiln_tuning_path(const kiln_device_info *d, char *buf, size_t size)
{
    char dir[3072], id[1024];
    kiln_status st = kiln_cache_dir(dir, sizeof dir);
    if (st != KILN_OK)
        return st;
    identity(d, id, sizeof id);
    int n = snprintf(buf, size, "%s/tune-%016llx.json", dir,
                     (unsigned long long)fnv1a64(id, strlen(id)));
    return n > 0 && (size_t)n < size ? KILN_OK
                                     : error_set(KILN_ERR_IO, "tune: cache path too long");
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *text = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n >= 0 && n < (1 << 20) && fseek(f, 0, SEEK_SET) == 0 &&
            (text = malloc((size_t)n + 1)) != NULL) {
            if (fread(text, 1, (size_t)n, f) == (size_t)n)
                text[n] = '\0';
            else {
                free(text);
                text = NULL;
            }
        }
    }
    fclose(f);
    return text;
}

static int whole_number(const cJSON *o, const char *key, double lo, double hi, size_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || v->valuedouble < lo || v->valuedouble > hi ||
        v->valuedouble != floor(v->valuedouble))
        return 0;
    *out = (size_t)v->valuedouble;
    return 1;
}

/* The record's "kiln_gemm": {"tile": "8x32", "kc": 2048} into t, when
 * there; 0 with *why set when it is there and not a tile kiln's GEMM can
 * compile (records written before it was measured have none). */
static int tile_from_json(const cJSON *root, kiln_tuning *t, const char **why)
{
    const cJSON *kiln = cJSON_GetObjectItemCaseSensitive(root, "kiln_gemm");
    if (!kiln)
        return 1;
    const cJSON *tile = cJSON_GetObjectItemCaseSensitive(kiln, "tile");
    gemm_tile g = {0, 0, 0};
    *why = "its kiln_gemm is not {\"tile\": \"MRxNR\" (MR 1 to 8, NR 8, 16 or 32), "
           "\"kc\": 1 to 65536}";
    if (!cJSON_IsString(tile) ||
        gemm_tile_parse(tile->valuestring, "kiln_gemm.tile", &g) != KILN_OK ||
        !whole_number(kiln, "kc", 1, GEMM_KC_MAX, &g.kc)) {
        error_clear();
        return 0;
    }
    t->has_kiln_tile = 1;
    t->kiln_mr = g.mr;
    t->kiln_nr = 2 * g.v;
    t->kiln_kc = g.kc;
    return 1;
}

/* The record's "attention": {"width": N} into t, when there; 0 with *why
 * set when it is there and not 1 to ATTN_ROWS_MAX rows. Records of
 * before 2026-12-06 say {"rows": N}, which on CPUs counted rows kept in
 * registers, not vector lanes: their attention is left to the device's
 * default (kiln tune measures it again). */
static int attention_from_json(const cJSON *root, kiln_tuning *t, const char **why)
{
    const cJSON *attn = cJSON_GetObjectItemCaseSensitive(root, "attention");
    if (!attn || !cJSON_GetObjectItemCaseSensitive(attn, "width"))
        return 1;
    *why = "its attention is not {\"width\": 1 to 64}";
    return whole_number(attn, "width", 1, ATTN_ROWS_MAX, &t->attn_rows);
}

/* Fills t from a parsed record; 0 with *why set if it is not one. */
static int from_json(const cJSON *root, const kiln_device_info *d, kiln_tuning *t,
                     const char **why)
{
    char id[1024];
    identity(d, id, sizeof id);
    const cJSON *who = cJSON_GetObjectItemCaseSensitive(root, "device");
    const cJSON *engine = cJSON_GetObjectItemCaseSensitive(root, "gemm_engine");
    const cJSON *xgemm = cJSON_GetObjectItemCaseSensitive(root, "xgemm");
    memset(t, 0, sizeof *t);
    *why = "it does not parse as a kiln tuning record";
    if (!cJSON_IsString(who) || !cJSON_IsString(engine))
        return 0;
    if (strcmp(who->valuestring, id) != 0) {
        *why = "it was measured with another device, driver or CLBlast version";
        return 0;
    }
    kiln_gemm_engine e;
    if (gemm_engine_parse(engine->valuestring, "gemm_engine", &e) != KILN_OK) {
        error_clear();
        return 0;
    }
    t->engine = (int)e;
    if (cJSON_IsObject(xgemm)) {
        for (int i = 0; i < KILN_XGEMM_PARAMS; i++)
            if (!whole_number(xgemm, xgemm_names[i], 0, 1024, &t->xgemm[i]))
                return 0;
        t->has_xgemm = 1;
    }
    t->has_min_indirect = whole_number(root, "xgemm_min_indirect_size", 0, 1e9, &t->min_indirect);
    return tile_from_json(root, t, why) && attention_from_json(root, t, why);
}

int kiln_tuning_load(const kiln_device_info *d, kiln_tuning *t)
{
    char path[4096];
    if (kiln_tuning_path(d, path, sizeof path) != KILN_OK) {
        error_clear();
        return 0;
    }
    char *text = read_text(path);
    if (!text)
        return 0;
    cJSON *root = cJSON_Parse(text);
    const char *why = "it is not JSON";
    int ok = root && from_json(root, d, t, &why);
    if (!ok)
        fprintf(stderr, "kiln: warning: ignoring the tuning record %s: %s; run kiln tune "
                        "again\n", path, why);
    cJSON_Delete(root);
    free(text);
    return ok;
}

kiln_status kiln_tuning_save(const kiln_device_info *d, const kiln_tuning *t,
                             const char *measured, char *path, size_t size)
{
    char id[1024], dir[3072];
    identity(d, id, sizeof id);
    kiln_status st = kiln_tuning_path(d, path, size);
    if (st == KILN_OK)
        st = kiln_cache_dir(dir, sizeof dir);
    if (st == KILN_OK && make_dirs(dir) != 0)
        st = error_set(KILN_ERR_IO, "%s: cannot create the directory (%s)", dir,
                       strerror(errno));
    if (st != KILN_OK)
        return st;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "device", id);
    cJSON_AddStringToObject(root, "kiln", KILN_VERSION);
    cJSON_AddStringToObject(root, "gemm_engine", kiln_gemm_engine_str((kiln_gemm_engine)t->engine));
    if (t->has_xgemm) {
        cJSON *x = cJSON_AddObjectToObject(root, "xgemm");
        for (int i = 0; i < KILN_XGEMM_PARAMS; i++)
            cJSON_AddNumberToObject(x, xgemm_names[i], (double)t->xgemm[i]);
    }
    if (t->has_min_indirect)
        cJSON_AddNumberToObject(root, "xgemm_min_indirect_size", (double)t->min_indirect);
    if (t->has_kiln_tile) {
        char tile[32];
        snprintf(tile, sizeof tile, "%dx%d", t->kiln_mr, t->kiln_nr);
        cJSON *k = cJSON_AddObjectToObject(root, "kiln_gemm");
        cJSON_AddStringToObject(k, "tile", tile);
        cJSON_AddNumberToObject(k, "kc", (double)t->kiln_kc);
    }
    if (t->attn_rows)
        cJSON_AddNumberToObject(cJSON_AddObjectToObject(root, "attention"), "width",
                                (double)t->attn_rows);
    cJSON *m = measured ? cJSON_Parse(measured) : NULL;
    if (m)
        cJSON_AddItemToObject(root, "measured", m);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    st = text ? write_bytes_atomic(path, text, strlen(text))
               : error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of host memory", path);
    free(text);
    return st;
}

/* CLBlast keeps compiled kernels per routine; after an override they must
 * be rebuilt with the new parameters. */
static kiln_status override(kiln_ctx *ctx, const char *kernel, size_t n, const char **names,
                            const size_t *values)
{
    CLBlastStatusCode code = CLBlastOverrideParameters(ctx->device, kernel,
                                                       CLBlastPrecisionSingle, n, names, values);
    if (code != CLBlastSuccess)
        return error_set(KILN_ERR_BLAS, "CLBlastOverrideParameters(%s): CLBlast status %d",
                         kernel, (int)code);
    CLBlastClearCache();
    return KILN_OK;
}

kiln_status tuning_apply_state(kiln_ctx *ctx, blas_state *s, const kiln_tuning *t)
{
    if (t->attn_rows > ATTN_ROWS_MAX)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_tuning: attention's %zu query rows "
                                                    "per work-item; expected 1 to %d",
                         t->attn_rows, ATTN_ROWS_MAX);
    kiln_status st = KILN_OK;
    if (t->has_xgemm)
        st = override(ctx, "Xgemm", KILN_XGEMM_PARAMS, (const char **)xgemm_names,
                      t->xgemm);
    if (st == KILN_OK && t->has_min_indirect) {
        const char *name = "XGEMM_MIN_INDIRECT_SIZE";
        st = override(ctx, "GemmRoutine", 1, &name, &t->min_indirect);
    }
    const char *env = getenv("KILN_GEMM");
    if (st == KILN_OK && !(env && *env) && t->engine != KILN_GEMM_AUTO)
        s->engine = gemm_engine_resolve(ctx, (kiln_gemm_engine)t->engine);
    if (st == KILN_OK && t->has_kiln_tile)
        st = gemm_tile_tuned(ctx, s, t->kiln_mr, t->kiln_nr, t->kiln_kc);
    if (st == KILN_OK && t->attn_rows)
        ctx->attn_rows = t->attn_rows;
    return st;
}

kiln_status kiln_tuning_apply(kiln_ctx *ctx, const kiln_tuning *t)
{
    /* the state first, so that the context's own record (applied when the
     * state is created) cannot come after this one */
    blas_state *s;
    kiln_status st = blas_state_get(ctx, &s);
    return st == KILN_OK ? tuning_apply_state(ctx, s, t) : st;
}
