/* SGEMM through both engines, CLBlast and kiln's own, against the float64
 * reference: all four transpose combinations at awkward sizes (edges that
 * are not multiples of kiln's tiles, powers of two), with alpha and beta,
 * and on sub-matrices at offsets with padded leading dimensions; kiln's
 * GEMM with each tile `kiln tune` may pick and in blocks of k (k past a
 * block, not a multiple of it, 1), the convolution's packing from the
 * image included; tuning records, kiln's tile and attention's rows in them
 * included. */
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blas/blas.h"
#include "ops/ops.h"
#include "harness.h"

typedef struct {
    size_t m, n, k;
} gemm_size;

static const gemm_size sizes[] = {
    {1, 1, 1}, {7, 7, 7}, {33, 33, 33}, {129, 129, 129}, {257, 257, 257},
    {1000, 1000, 1}, {1000, 1, 1000}, {1, 1000, 1000}, {7, 129, 33}, {8, 32, 64},
    {16, 31, 2}, {9, 33, 65}, {256, 256, 256}, {3, 100, 513},
    {37, 301, 67}, {128, 263, 5}, /* few rows, many panels: gemm_slots on CPUs */
    {37, 1153, 67},               /* more panels than items: unequal runs of them an item */
    {1, 67, 13}, {1, 131, 47},     /* one row (a linear layer's is linear_one on CPUs); up to
                                    * 16 rows with B transposed: gemv_rows */
};

static const kiln_gemm_engine engines[] = {KILN_GEMM_CLBLAST, KILN_GEMM_KILN};

#define SIZE_COUNT (int)(sizeof sizes / sizeof sizes[0])

static kiln_tensor *matrix(size_t rows, size_t cols, const float *data)
{
    size_t shape[2] = {rows, cols};
    kiln_tensor *t;
    check_ok(kiln_tensor_create(test_ctx(), 2, shape, &t));
    check_ok(kiln_tensor_upload(t, data, rows * cols));
    return t;
}

/* Runs one product and compares it with ref_gemm. */
static void gemm_case(gemm_size s, int ta, int tb, float alpha, float beta)
{
    size_t na = s.m * s.k, nb = s.k * s.n, nc = s.m * s.n;
    float *a = test_alloc(na * sizeof *a), *b = test_alloc(nb * sizeof *b);
    float *c = test_alloc(nc * sizeof *c), *got = test_alloc(nc * sizeof *got);
    double *want = test_alloc(nc * sizeof *want);
    rng_fill(test_rng(), a, na, -1.0f, 1.0f);
    rng_fill(test_rng(), b, nb, -1.0f, 1.0f);
    rng_fill(test_rng(), c, nc, -1.0f, 1.0f);
    kiln_tensor *da = ta ? matrix(s.k, s.m, a) : matrix(s.m, s.k, a);
    kiln_tensor *db = tb ? matrix(s.n, s.k, b) : matrix(s.k, s.n, b);
    kiln_tensor *dc = matrix(s.m, s.n, c);
    check_ok(kiln_gemm(test_ctx(), ta ? KILN_TRANS : KILN_NO_TRANS,
                       tb ? KILN_TRANS : KILN_NO_TRANS, alpha, da, db, beta, dc));
    check_ok(kiln_tensor_download(dc, got, nc));
    ref_gemm(ta, tb, s.m, s.n, s.k, alpha, a, b, beta, c, want);
    /* float32 accumulation over k terms of magnitude <= 1 */
    double atol = 1e-6 * (double)(s.k + 1) * fabs(alpha) + 1e-6;
    check_close(got, want, nc, atol, 1e-5, "sgemm m=%zu n=%zu k=%zu trans_a=%d trans_b=%d "
                "alpha=%g beta=%g", s.m, s.n, s.k, ta, tb, alpha, beta);
    kiln_tensor_free(da);
    kiln_tensor_free(db);
    kiln_tensor_free(dc);
    free(a);
    free(b);
    free(c);
    free(got);
    free(want);
}

START_TEST(sgemm_matches_reference)
{
    gemm_size s = sizes[_i % SIZE_COUNT];
    kiln_ctx_set_gemm(test_ctx(), engines[_i / SIZE_COUNT]);
    for (int t = 0; t < 4; t++)
        gemm_case(s, t & 1, t >> 1, t == 0 ? 1.0f : 1.5f, t == 0 ? 0.0f : -0.5f);
    kiln_ctx_set_gemm(test_ctx(), KILN_GEMM_AUTO);
}
END_TEST

START_TEST(sgemm_with_zero_alpha_scales_c)
{
    gemm_size s = {5, 7, 3};
    kiln_ctx_set_gemm(test_ctx(), engines[_i]);
    gemm_case(s, 0, 0, 0.0f, 2.0f);
    gemm_case(s, 1, 1, 0.0f, 0.0f);
    kiln_ctx_set_gemm(test_ctx(), KILN_GEMM_AUTO);
}
END_TEST

/* A product of sub-matrices: each operand starts at an offset inside a
 * larger buffer and has a leading dimension wider than its columns, as the
 * convolution's per-sample products and views use them. */
static void offset_case(kiln_ctx *ctx, int ta, int tb, size_t m, size_t n, size_t wide_lda)
{
    size_t k = 37, pad = 3, off = 11;
    size_t lda = wide_lda ? wide_lda : (ta ? m : k) + pad, ldb = (tb ? k : n) + pad;
    size_t ldc = n + pad;
    size_t na = off + (ta ? k : m) * lda, nb = off + (tb ? n : k) * ldb, nc = off + m * ldc;
    float *a = test_alloc(na * sizeof *a), *b = test_alloc(nb * sizeof *b);
    float *c = test_alloc(nc * sizeof *c), *got = test_alloc(nc * sizeof *got);
    rng_fill(test_rng(), a, na, -1.0f, 1.0f);
    rng_fill(test_rng(), b, nb, -1.0f, 1.0f);
    rng_fill(test_rng(), c, nc, -1.0f, 1.0f);
    kiln_tensor *da = matrix(1, na, a), *db = matrix(1, nb, b), *dc = matrix(1, nc, c);
    check_ok(blas_sgemm(ctx, ta ? KILN_TRANS : KILN_NO_TRANS, tb ? KILN_TRANS : KILN_NO_TRANS,
                        m, n, k, 0.75f, da->buf, off, lda, db->buf, off, ldb, 0.25f, dc->buf,
                        off, ldc));
    check_ok(kiln_tensor_download(dc, got, nc));
    double worst = 0;
    for (size_t i = 0; i < nc; i++) {
        size_t r = i < off ? 0 : (i - off) / ldc, col = i < off ? 0 : (i - off) % ldc;
        double want = c[i];
        if (i >= off && col < n) {
            double sum = 0;
            for (size_t l = 0; l < k; l++)
                sum += (double)a[off + (ta ? l * lda + r : r * lda + l)] *
                       b[off + (tb ? col * ldb + l : l * ldb + col)];
            want = 0.75 * sum + 0.25 * c[i];
        }
        worst = fmax(worst, fabs(got[i] - want));
    }
    ck_assert_msg(worst < 1e-4, "%s m=%zu lda=%zu trans_a=%d trans_b=%d: worst error %g "
                  "(padding must stay untouched)", kiln_gemm_engine_str(kiln_ctx_gemm(ctx)), m,
                  lda, ta, tb, worst);
    kiln_tensor_free(da);
    kiln_tensor_free(db);
    kiln_tensor_free(dc);
    free(a);
    free(b);
    free(c);
    free(got);
}

START_TEST(sgemm_on_submatrices_at_offsets)
{
    kiln_ctx *ctx = test_ctx();
    kiln_ctx_set_gemm(ctx, engines[_i / 4]);
    offset_case(ctx, _i & 1, (_i >> 1) & 1, 19, 301, 0); /* n 301: gemm_slots on CPUs */
    offset_case(ctx, _i & 1, (_i >> 1) & 1, 1, 301, 0); /* one row */
    /* rows of A 2 KiB apart, which kiln's GEMM reads in place for A^T (k 37) */
    offset_case(ctx, _i & 1, (_i >> 1) & 1, 19, 301, 512);
    /* whole panels of B, its rows 99 apart, which kiln's GEMM reads in place */
    offset_case(ctx, _i & 1, (_i >> 1) & 1, 131, 96, 0);
    kiln_ctx_set_gemm(ctx, KILN_GEMM_AUTO);
}
END_TEST

START_TEST(gemm_engine_names_round_trip)
{
    kiln_gemm_engine e;
    for (int i = KILN_GEMM_AUTO; i <= KILN_GEMM_KILN; i++) {
        check_ok(gemm_engine_parse(kiln_gemm_engine_str((kiln_gemm_engine)i), "test", &e));
        ck_assert_int_eq(e, i);
    }
    ck_assert_int_eq(gemm_engine_parse("openblas", "KILN_GEMM", &e),
                     KILN_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(kiln_last_error(), "KILN_GEMM") && strstr(kiln_last_error(), "openblas"),
                  "message: %s", kiln_last_error());
    kiln_ctx_set_gemm(test_ctx(), KILN_GEMM_AUTO);
    ck_assert_int_eq(kiln_ctx_gemm(test_ctx()),
                     device_loops_work_groups(kiln_ctx_device(test_ctx())) ? KILN_GEMM_KILN
                                                                                : KILN_GEMM_CLBLAST);
}
END_TEST

START_TEST(sgemm_shape_mismatch_names_all_shapes)
{
    float zeros[64] = {0};
    kiln_tensor *a = matrix(2, 3, zeros), *b = matrix(4, 5, zeros), *c = matrix(2, 5, zeros);
    ck_assert_int_eq(kiln_gemm(test_ctx(), KILN_NO_TRANS, KILN_NO_TRANS, 1, a, b, 0, c),
                     KILN_ERR_SHAPE);
    const char *msg = kiln_last_error();
    ck_assert_msg(strstr(msg, "2x3") && strstr(msg, "4x5") && strstr(msg, "2x5"),
                  "message: %s", msg);
    size_t v = 6;
    kiln_tensor *flat;
    check_ok(kiln_tensor_create(test_ctx(), 1, &v, &flat));
    ck_assert_int_eq(kiln_gemm(test_ctx(), KILN_NO_TRANS, KILN_NO_TRANS, 1, flat, b, 0, c),
                     KILN_ERR_SHAPE);
    ck_assert_int_eq(kiln_gemm(test_ctx(), KILN_NO_TRANS, KILN_NO_TRANS, 1, NULL, b, 0, c),
                     KILN_ERR_INVALID_ARGUMENT);
    kiln_tensor_free(a);
    kiln_tensor_free(b);
    kiln_tensor_free(c);
    kiln_tensor_free(flat);
}
END_TEST

static int same_tuning(const kiln_tuning *a, const kiln_tuning *b)
{
    return a->has_xgemm == b->has_xgemm && a->has_min_indirect == b->has_min_indirect &&
           a->min_indirect == b->min_indirect && a->engine == b->engine &&
           memcmp(a->xgemm, b->xgemm, sizeof a->xgemm) == 0 &&
           a->has_kiln_tile == b->has_kiln_tile && a->kiln_mr == b->kiln_mr &&
           a->kiln_nr == b->kiln_nr && a->kiln_kc == b->kiln_kc && a->attn_rows == b->attn_rows;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* A tuning record survives a save and load; a corrupt one, or one of
 * another device or driver, is ignored. */
START_TEST(tuning_records_round_trip_and_bad_ones_are_ignored)
{
    char dir[600], path[4096];
    snprintf(dir, sizeof dir, "%s/tuning", test_tmpdir());
    setenv("KILN_CACHE_DIR", dir, 1);
    const kiln_device_info *d = kiln_ctx_device(test_ctx());
    kiln_tuning t = {.has_xgemm = 1,
                     .xgemm = {0, 1, 16, 2, 8, 8, 128, 8, 8, 128, 0, 0, 0, 0, 8, 8},
                     .has_min_indirect = 1,
                     .min_indirect = 384,
                     .engine = KILN_GEMM_KILN},
                back;
    /* a record without kiln's tile, as written before it was tuned */
    check_ok(kiln_tuning_save(d, &t, "{\"note\": 1}", path, sizeof path));
    ck_assert_int_eq(kiln_tuning_load(d, &back), 1);
    ck_assert(same_tuning(&t, &back) && !back.has_kiln_tile);
    t.has_kiln_tile = 1;
    t.kiln_mr = 6;
    t.kiln_nr = 16;
    t.kiln_kc = 192;
    check_ok(kiln_tuning_save(d, &t, NULL, path, sizeof path));
    ck_assert_int_eq(kiln_tuning_load(d, &back), 1);
    ck_assert(same_tuning(&t, &back));
    kiln_device_info other = *d;
    snprintf(other.driver_version, sizeof other.driver_version, "another driver");
    ck_assert_int_eq(kiln_tuning_load(&other, &back), 0);
    FILE *f = fopen(path, "r");
    char text[8192];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    char *id = strstr(text, d->driver_version);
    ck_assert_ptr_nonnull(id);
    id[0] ^= 1; /* a record whose device line names another driver */
    write_text(path, text);
    ck_assert_int_eq(kiln_tuning_load(d, &back), 0);
    write_text(path, "{\"device\": 3, ");
    ck_assert_int_eq(kiln_tuning_load(d, &back), 0);
    unsetenv("KILN_CACHE_DIR");
}
END_TEST

/* What kiln_tuning_load writes to stderr, in buf. */
static int load_quoting_stderr(const kiln_device_info *d, kiln_tuning *t, char *buf, size_t size)
{
    char path[700];
    snprintf(path, sizeof path, "%s/stderr.txt", test_tmpdir());
    fflush(stderr);
    int saved = dup(STDERR_FILENO), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert(saved >= 0 && fd >= 0);
    dup2(fd, STDERR_FILENO);
    close(fd);
    int loaded = kiln_tuning_load(d, t);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, size - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        fclose(f);
    return loaded;
}

/* A record's kiln tile is applied when a context opens, and a record whose
 * tile kiln's GEMM cannot compile is refused with a warning naming it. */
START_TEST(tuning_record_sets_kiln_tile)
{
    char dir[600], path[4096], text[8192], said[2048];
    snprintf(dir, sizeof dir, "%s/tuning-tile", test_tmpdir());
    setenv("KILN_CACHE_DIR", dir, 1);
    const kiln_device_info *d = kiln_ctx_device(test_ctx());
    kiln_tuning t = {.engine = KILN_GEMM_AUTO, .has_kiln_tile = 1, .kiln_mr = 3, .kiln_nr = 16,
                     .kiln_kc = 77},
                back;
    check_ok(kiln_tuning_save(d, &t, NULL, path, sizeof path));
    const char *env = getenv("KILN_GEMM_TILE"), *env_kc = getenv("KILN_GEMM_KC");
    if (!(env && *env) && !(env_kc && *env_kc)) {
        kiln_ctx *ctx;
        gemm_tile got;
        check_ok(ctx_open(NULL, 1, &ctx));
        check_ok(gemm_tile_get(ctx, &got));
        ck_assert_msg(got.mr == 3 && got.v == 8 && got.kc == 77, "tile %dx%d/%zu", got.mr,
                      2 * got.v, got.kc);
        kiln_ctx_free(ctx);
    }
    FILE *f = fopen(path, "r");
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    char *tile = strstr(text, "\"3x16\"");
    ck_assert_ptr_nonnull(tile);
    memcpy(tile, "\"9x16\"", 6); /* MR 9 does not fit any register file */
    write_text(path, text);
    ck_assert_int_eq(load_quoting_stderr(d, &back, said, sizeof said), 0);
    ck_assert_msg(strstr(said, path) && strstr(said, "kiln_gemm"), "warning: %s", said);
    t.kiln_nr = 12;
    ck_assert_int_eq(kiln_tuning_apply(test_ctx(), &t), KILN_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(kiln_last_error(), "12"), "message: %s", kiln_last_error());
    unsetenv("KILN_CACHE_DIR");
}
END_TEST

/* The record at path with its attention rows' value (after "width") made
 * `value`, or with `key` for "width" where key is not NULL. */
static void set_attention_rows(const char *path, const char *value, const char *key_as)
{
    char text[8192], out[8400];
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    char *key = strstr(text, "\"width\"");
    ck_assert_ptr_nonnull(key);
    char *v = key + strlen("\"width\"");
    v += strspn(v, ": \t\n");
    size_t old = strcspn(v, " \t\n,}");
    snprintf(out, sizeof out, "%.*s%s: %s%s", (int)(key - text), text,
             key_as ? key_as : "\"width\"", value, v + old);
    write_text(path, out);
}

/* A record's attention rows survive a save and load and are what a new
 * context's attention runs with, below attention_set_rows; a record whose
 * rows are not 1 to 64 is refused with a warning naming it, an older
 * record's rows are left out, and a kiln_tuning of 65 rows handed to
 * kiln_tuning_apply is refused. */
START_TEST(tuning_record_sets_attention_rows)
{
    char dir[600], path[4096], said[2048];
    snprintf(dir, sizeof dir, "%s/tuning-attention", test_tmpdir());
    setenv("KILN_CACHE_DIR", dir, 1);
    const kiln_device_info *d = kiln_ctx_device(test_ctx());
    kiln_tuning t = {.engine = KILN_GEMM_AUTO, .attn_rows = 5}, back;
    check_ok(kiln_tuning_save(d, &t, NULL, path, sizeof path));
    ck_assert_int_eq(kiln_tuning_load(d, &back), 1);
    ck_assert(same_tuning(&t, &back));
    const char *env = getenv("KILN_ATTN_ROWS");
    if (!(env && *env)) {
        kiln_ctx *ctx;
        check_ok(ctx_open(NULL, 1, &ctx));
        ck_assert_uint_eq(attention_rows(ctx), 5);
        ck_assert_uint_eq(attention_set_rows(3), 0);
        ck_assert_uint_eq(attention_rows(ctx), 3);
        ck_assert_uint_eq(attention_set_rows(0), 3);
        kiln_ctx_free(ctx);
        check_ok(ctx_open(NULL, 0, &ctx)); /* KILN_TUNE=off: the device's default */
        ck_assert_uint_ne(attention_rows(ctx), 5);
        kiln_ctx_free(ctx);
    }
    static const char *const bad[] = {"0", "65", "\"four\"", "2.5", "-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        set_attention_rows(path, bad[i], NULL);
        ck_assert_int_eq(load_quoting_stderr(d, &back, said, sizeof said), 0);
        ck_assert_msg(strstr(said, path) && strstr(said, "attention"), "rows %s: %s", bad[i],
                      said);
    }
    set_attention_rows(path, "64", NULL);
    ck_assert_int_eq(kiln_tuning_load(d, &back), 1);
    ck_assert_uint_eq(back.attn_rows, 64);
    /* a record of before the lanes ({"rows": N}, rows in registers on
     * CPUs) loads with its attention left to the device */
    set_attention_rows(path, "2", "\"rows\"");
    ck_assert_int_eq(kiln_tuning_load(d, &back), 1);
    ck_assert_uint_eq(back.attn_rows, 0);
    size_t before = attention_rows(test_ctx());
    t.attn_rows = 65;
    ck_assert_int_eq(kiln_tuning_apply(test_ctx(), &t), KILN_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(kiln_last_error(), "65"), "message: %s", kiln_last_error());
    ck_assert_uint_eq(attention_rows(test_ctx()), before);
    unsetenv("KILN_CACHE_DIR");
}
END_TEST

/* kiln_bench_attention times a small attention with the rows asked for,
 * leaves attention_set_rows as it was, and refuses rows out of 1 to 64. */
START_TEST(bench_attention_times_one_tile)
{
    double forward = 0, step = 0;
    check_ok(kiln_bench_attention(test_ctx(), 2, 17, 1, 3, 2, &forward, &step));
    ck_assert(forward > 0 && step > 0 && isfinite(step));
    ck_assert_uint_eq(attention_set_rows(0), 0);
    ck_assert_int_eq(kiln_bench_attention(test_ctx(), 2, 17, 1, 3, 65, &forward, &step),
                     KILN_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(kiln_last_error(), "65 rows"), "message: %s", kiln_last_error());
}
END_TEST

/* CLBlast with parameters handed over by a tuning record (a CPU-shaped
 * set) still computes the right products. */
START_TEST(tuned_clblast_parameters_give_correct_products)
{
    kiln_tuning t = {.has_xgemm = 1,
                     .xgemm = {0, 1, 16, 2, 8, 8, 64, 8, 8, 64, 0, 0, 0, 0, 4, 4},
                     .has_min_indirect = 1,
                     .min_indirect = 0, /* always the indirect kernel, the tuned one */
                     .engine = KILN_GEMM_CLBLAST};
    check_ok(kiln_tuning_apply(test_ctx(), &t));
    gemm_size s = {67, 45, 33};
    for (int tr = 0; tr < 4; tr++)
        gemm_case(s, tr & 1, tr >> 1, 1.25f, 0.5f);
    kiln_ctx_set_gemm(test_ctx(), KILN_GEMM_AUTO);
}
END_TEST

/* The tiles of kiln's GEMM forced in turn, each that `kiln tune` may pick
 * on AVX-512, AVX2, NEON or SSE (tune.c: tile_shapes): a few sizes at edges
 * of each. Where kiln's GEMM is not the device's engine (rusticl, whose
 * llvmpipe takes a minute to compile a tile) only the default tile runs. */
static const gemm_tile forced[] = {{8, 16, 0}, {6, 16, 0}, {8, 8, 0}, {6, 8, 0},
                                   {4, 8, 0},  {8, 4, 0},  {6, 4, 0}, {4, 4, 0}};
#define FORCED (int)(sizeof forced / sizeof forced[0])

static int tile_skipped(int i)
{
    gemm_tile d = gemm_tile_default(test_ctx());
    return !device_loops_work_groups(kiln_ctx_device(test_ctx())) &&
           (d.mr != forced[i].mr || d.v != forced[i].v);
}

START_TEST(sgemm_with_each_tile)
{
    static const gemm_size few[] = {{1, 1, 1}, {13, 45, 37}, {25, 17, 3}, {6, 16, 9}};
    kiln_ctx *ctx = test_ctx();
    gemm_tile t;
    if (tile_skipped(_i))
        return;
    check_ok(gemm_tile_set(ctx, forced[_i]));
    check_ok(gemm_tile_get(ctx, &t));
    ck_assert(t.mr == forced[_i].mr && t.v == forced[_i].v);
    kiln_ctx_set_gemm(ctx, KILN_GEMM_KILN);
    for (size_t i = 0; i < sizeof few / sizeof few[0]; i++)
        for (int tr = 0; tr < 4; tr++)
            gemm_case(few[i], tr & 1, tr >> 1, tr == 0 ? 1.0f : 1.5f, tr == 0 ? 0.0f : -0.5f);
    kiln_ctx_set_gemm(ctx, KILN_GEMM_AUTO);
    check_ok(gemm_tile_set(ctx, (gemm_tile){0, 0, 0}));
}
END_TEST

/* kiln's GEMM on ctx, its default tile in k blocks of kc (0: the tile's). */
static void use_kiln_gemm(kiln_ctx *ctx, size_t kc)
{
    gemm_tile t = gemm_tile_default(ctx);
    t.kc = kc;
    check_ok(gemm_tile_set(ctx, t));
    kiln_ctx_set_gemm(ctx, KILN_GEMM_KILN);
}

/* Products in blocks of k: k past the block and not a multiple of it, k a
 * multiple, one more than the block, shorter than it, 1; beta must scale
 * C once, not once per block. */
START_TEST(sgemm_in_blocks_of_k)
{
    /* {11, 64, 45}: B read in place (whole panels), from each block's row */
    static const gemm_size few[] = {{13, 45, 37}, {9, 33, 32}, {7, 17, 17}, {25, 40, 5},
                                    {6, 16, 1},   {17, 70, 300}, {11, 64, 45}};
    static const size_t blocks[] = {16, 1, 7};
    kiln_ctx *ctx = test_ctx();
    use_kiln_gemm(ctx, blocks[_i]);
    for (size_t i = 0; i < sizeof few / sizeof few[0]; i++)
        if (blocks[_i] > 1 || few[i].k < 64) /* a block of 1: one launch per k */
            for (int tr = 0; tr < 4; tr++)
                gemm_case(few[i], tr & 1, tr >> 1, tr == 0 ? 1.0f : 1.5f, tr == 0 ? 0.0f : -0.5f);
    kiln_ctx_set_gemm(ctx, KILN_GEMM_AUTO);
    check_ok(gemm_tile_set(ctx, (gemm_tile){0, 0, 0}));
}
END_TEST

/* kiln's GEMM with a linear layer's epilogue (the bias of each column,
 * from the second size on a residual, then max(v, 0)), in one block of k
 * and in blocks of 7: the float64 reference, and the same bits as the
 * product followed by act.cl's bias_act (and add); CLBlast, which has no
 * epilogue, refuses one. */
START_TEST(sgemm_epilogue_adds_bias_and_relu)
{
    static const gemm_size few[] = {{5, 17, 3}, {128, 263, 5}, {1, 67, 13}, {131, 70, 29}};
    kiln_ctx *ctx = test_ctx();
    size_t kc = _i ? 7 : 0;
    use_kiln_gemm(ctx, kc);
    for (size_t i = 0; i < sizeof few / sizeof few[0]; i++) {
        gemm_size z = few[i];
        float *a = test_alloc(z.m * z.k * sizeof *a), *w = test_alloc(z.n * z.k * sizeof *w);
        float *bias = test_alloc(z.n * sizeof *bias), *zero = test_alloc(z.m * z.n * 4);
        float *got = test_alloc(z.m * z.n * 4), *plain = test_alloc(z.m * z.n * 4);
        float *r = test_alloc(z.m * z.n * 4);
        double *want = test_alloc(z.m * z.n * sizeof *want);
        rng_fill(test_rng(), a, z.m * z.k, -1.0f, 1.0f);
        rng_fill(test_rng(), w, z.n * z.k, -1.0f, 1.0f);
        rng_fill(test_rng(), bias, z.n, -1.0f, 1.0f);
        int residual = i > 0; /* through gemm_slots, gemv_rows and gemm_tile */
        if (residual)
            rng_fill(test_rng(), r, z.m * z.n, -1.0f, 1.0f);
        else
            memset(r, 0, z.m * z.n * 4);
        memset(zero, 0, z.m * z.n * 4);
        kiln_tensor *da = matrix(z.m, z.k, a), *dw = matrix(z.n, z.k, w);
        kiln_tensor *db = matrix(1, z.n, bias), *dc = matrix(z.m, z.n, zero);
        kiln_tensor *dr = matrix(z.m, z.n, r);
        gemm_epilogue epi = {db->buf, 1, residual ? dr->buf : NULL, 0, NULL, NULL};
        check_ok(blas_sgemm_epilogue(ctx, KILN_NO_TRANS, KILN_TRANS, z.m, z.n, z.k, 1.0f, da->buf,
                                     0, z.k, dw->buf, 0, z.k, 0.0f, dc->buf, 0, z.n, &epi));
        check_ok(kiln_tensor_download(dc, got, z.m * z.n));
        check_ok(blas_sgemm(ctx, KILN_NO_TRANS, KILN_TRANS, z.m, z.n, z.k, 1.0f, da->buf, 0, z.k,
                            dw->buf, 0, z.k, 0.0f, dc->buf, 0, z.n));
        check_ok(op_bias_act(ctx, residual ? KILN_ACT_NONE : KILN_ACT_RELU, 0.0f, dc, db, z.n, 1));
        if (residual) {
            check_ok(op_add_into(ctx, dc, dr));
            check_ok(op_bias_act(ctx, KILN_ACT_RELU, 0.0f, dc, NULL, z.n, 1));
        }
        check_ok(kiln_tensor_download(dc, plain, z.m * z.n));
        ck_assert_msg(memcmp(got, plain, z.m * z.n * 4) == 0,
                      "m=%zu n=%zu k=%zu kc=%zu: not the bits of the product then bias_act",
                      z.m, z.n, z.k, kc);
        ref_gemm(0, 1, z.m, z.n, z.k, 1.0f, a, w, 0.0f, zero, want);
        for (size_t e = 0; e < z.m * z.n; e++)
            want[e] = fmax(want[e] + bias[e % z.n] + r[e], 0.0);
        check_close(got, want, z.m * z.n, 1e-6 * (double)(z.k + 2), 1e-5,
                    "epilogue m=%zu n=%zu k=%zu kc=%zu", z.m, z.n, z.k, kc);
        kiln_ctx_set_gemm(ctx, KILN_GEMM_CLBLAST);
        ck_assert_int_eq(blas_sgemm_epilogue(ctx, KILN_NO_TRANS, KILN_TRANS, z.m, z.n, z.k, 1.0f,
                                             da->buf, 0, z.k, dw->buf, 0, z.k, 0.0f, dc->buf, 0,
                                             z.n, &epi),
                         KILN_ERR_INVALID_ARGUMENT);
        kiln_ctx_set_gemm(ctx, KILN_GEMM_KILN);
        kiln_tensor_free(da);
        kiln_tensor_free(dw);
        kiln_tensor_free(db);
        kiln_tensor_free(dc);
        kiln_tensor_free(dr);
        free(a);
        free(w);
        free(bias);
        free(zero);
        free(got);
        free(plain);
        free(r);
        free(want);
    }
    kiln_ctx_set_gemm(ctx, KILN_GEMM_AUTO);
    check_ok(gemm_tile_set(ctx, (gemm_tile){0, 0, 0}));
}
END_TEST

/* max(A W^T + bias, 0) on A and W uploaded from host arrays into got: W
 * from p's panels where blas_sgemm_packed takes them, or (p NULL) as
 * blas_sgemm_epilogue packs it itself. */
static void linear_relu(kiln_ctx *ctx, gemm_size z, const float *a, const float *w,
                        const float *bias, const blas_packed *p, float *got)
{
    kiln_tensor *da = matrix(z.m, z.k, a), *dw = matrix(z.n, z.k, w);
    kiln_tensor *db = matrix(1, z.n, bias), *dc = matrix(z.m, z.n, got);
    gemm_epilogue epi = {db->buf, 1, NULL, 0, NULL, NULL};
    if (p)
        check_ok(blas_sgemm_packed(ctx, z.m, z.n, z.k, da->buf, z.k, dw->buf, p, dc->buf, z.n,
                                   &epi));
    else
        check_ok(blas_sgemm_epilogue(ctx, KILN_NO_TRANS, KILN_TRANS, z.m, z.n, z.k, 1.0f, da->buf,
                                     0, z.k, dw->buf, 0, z.k, 0.0f, dc->buf, 0, z.n, &epi));
    check_ok(kiln_tensor_download(dc, got, z.m * z.n));
    kiln_tensor_free(da);
    kiln_tensor_free(dw);
    kiln_tensor_free(db);
    kiln_tensor_free(dc);
}

/* linear_relu with W packed into p first at version v. */
static void packed_case(kiln_ctx *ctx, gemm_size z, const float *a, const float *w,
                        const float *bias, blas_packed *p, uint64_t v, float *got)
{
    kiln_tensor *dw = matrix(z.n, z.k, w);
    check_ok(blas_pack_weight(ctx, dw->buf, z.n, z.k, v, p));
    kiln_tensor_free(dw);
    linear_relu(ctx, z, a, w, bias, p, got);
}

/* got against max(A W^T + bias, 0) in float64. */
static void check_linear_relu(gemm_size z, const float *a, const float *w, const float *bias,
                              const float *got, const char *what)
{
    size_t nc = z.m * z.n;
    float *zero = calloc(nc, sizeof *zero);
    double *want = test_alloc(nc * sizeof *want);
    ref_gemm(0, 1, z.m, z.n, z.k, 1.0f, a, w, 0.0f, zero, want);
    for (size_t e = 0; e < nc; e++)
        want[e] = fmax(want[e] + bias[e % z.n], 0.0);
    check_close(got, want, nc, 1e-6 * (double)(z.k + 2), 1e-5, "%s m=%zu n=%zu k=%zu", what,
                z.m, z.n, z.k);
    free(zero);
    free(want);
}

/* A linear layer's weight packed once for many products (eval forwards):
 * through gemm_slots and gemm_tile, columns past the last whole panel, k
 * prime; the same bits as the product that packs W itself, and the
 * float64 reference. A new version of W repacks; the same version does
 * not (the caller's promise that W did not change); too few rows, k past
 * a block or CLBlast: not packed. */
START_TEST(sgemm_from_packed_weights)
{
    static const gemm_size few[] = {{17, 23, 29}, {128, 263, 5}, {131, 70, 29}, {37, 10, 97}};
    kiln_ctx *ctx = test_ctx();
    use_kiln_gemm(ctx, 0);
    for (size_t i = 0; i < sizeof few / sizeof few[0]; i++) {
        gemm_size z = few[i];
        size_t nc = z.m * z.n;
        float *a = test_alloc(z.m * z.k * 4), *w = test_alloc(z.n * z.k * 4);
        float *w2 = test_alloc(z.n * z.k * 4), *bias = test_alloc(z.n * 4);
        float *got = calloc(nc, 4), *plain = calloc(nc, 4);
        rng_fill(test_rng(), a, z.m * z.k, -1.0f, 1.0f);
        rng_fill(test_rng(), w, z.n * z.k, -1.0f, 1.0f);
        rng_fill(test_rng(), w2, z.n * z.k, -1.0f, 1.0f);
        rng_fill(test_rng(), bias, z.n, -1.0f, 1.0f);
        ck_assert_msg(blas_packs(ctx, z.m, z.n, z.k), "m=%zu: not packed", z.m);
        blas_packed p = {0};
        packed_case(ctx, z, a, w, bias, &p, 1, got);
        ck_assert(p.panels && p.version == 1);
        linear_relu(ctx, z, a, w, bias, NULL, plain);
        ck_assert_msg(memcmp(got, plain, nc * 4) == 0,
                      "m=%zu n=%zu k=%zu: packed once, not the bits of packing per product",
                      z.m, z.n, z.k);
        check_linear_relu(z, a, w, bias, got, "packed");
        /* the same version: the old panels (W unchanged, as promised) */
        packed_case(ctx, z, a, w2, bias, &p, 1, got);
        ck_assert_msg(memcmp(got, plain, nc * 4) == 0, "the same version packed again");
        /* a new version: W2's */
        packed_case(ctx, z, a, w2, bias, &p, 2, got);
        check_linear_relu(z, a, w2, bias, got, "repacked");
        blas_packed_free(&p);
        ck_assert(!p.panels);
        free(a);
        free(w);
        free(w2);
        free(bias);
        free(got);
        free(plain);
    }
    ck_assert(!blas_packs(ctx, 16, 64, 64)); /* gemv_rows reads W in place */
    use_kiln_gemm(ctx, 16);
    ck_assert(!blas_packs(ctx, 64, 64, 17)); /* past one block of k */
    kiln_ctx_set_gemm(ctx, KILN_GEMM_CLBLAST);
    ck_assert(!blas_packs(ctx, 64, 64, 64));
    kiln_ctx_set_gemm(ctx, KILN_GEMM_AUTO);
    check_ok(gemm_tile_set(ctx, (gemm_tile){0, 0, 0}));
}
END_TEST

/* A tile of another width chosen after the packing: the product reads W
 * itself (PoCL: a second tile's programs cost llvmpipe minutes). */
START_TEST(sgemm_packed_for_another_tile_reads_w)
{
    kiln_ctx *ctx = test_ctx();
    if (!device_loops_work_groups(kiln_ctx_device(ctx)))
        return;
    gemm_size z = {19, 40, 11};
    float *a = test_alloc(z.m * z.k * 4), *w = test_alloc(z.n * z.k * 4);
    float *bias = test_alloc(z.n * 4), *got = calloc(z.m * z.n, 4);
    rng_fill(test_rng(), a, z.m * z.k, -1.0f, 1.0f);
    rng_fill(test_rng(), w, z.n * z.k, -1.0f, 1.0f);
    rng_fill(test_rng(), bias, z.n, -1.0f, 1.0f);
    blas_packed p = {0};
    use_kiln_gemm(ctx, 0);
    packed_case(ctx, z, a, w, bias, &p, 1, got);
    gemm_tile t = gemm_tile_default(ctx);
    check_ok(gemm_tile_set(ctx, (gemm_tile){4, t.v == 4 ? 8 : 4, 0}));
    ck_assert(!gemm_packed_fits(ctx, &p, z.m, z.n, z.k));
    linear_relu(ctx, z, a, w, bias, &p, got);
    check_linear_relu(z, a, w, bias, got, "another tile");
    blas_packed_free(&p);
    free(a);
    free(w);
    free(bias);
    free(got);
    kiln_ctx_set_gemm(ctx, KILN_GEMM_AUTO);
    check_ok(gemm_tile_set(ctx, (gemm_tile){0, 0, 0}));
}
END_TEST

/* The GELU epilogue of a linear layer whose activation needs its input:
 * GELU of the product and bias stored in C, its derivative there kept in a
 * second tensor; then a product times that tensor (an input gradient
 * through the GELU). Through gemv_rows, gemm_slots and gemm_tile (tails
 * too), in one block of k and in blocks of 7: the float64 reference, and
 * the same bits as the product followed by bias_act and act.cl's
 * act_forward_grad, or by times. */
START_TEST(sgemm_epilogue_keeps_the_derivative_of_gelu)
{
    static const gemm_size few[] = {{1, 67, 13}, {128, 263, 5}, {131, 70, 29}};
    kiln_ctx *ctx = test_ctx();
    kiln_ctx_set_gemm(ctx, KILN_GEMM_KILN);
    if (!blas_has_gelu_epilogue(ctx)) {
        printf("GELU's epilogues: not on %s (blas_has_gelu_epilogue)\n", ctx->info.name);
        kiln_ctx_set_gemm(ctx, KILN_GEMM_AUTO);
        return;
    }
    size_t kc = _i ? 7 : 0;
    use_kiln_gemm(ctx, kc);
    for (size_t i = 0; i < sizeof few / sizeof few[0]; i++) {
        gemm_size z = few[i];
        size_t mn = z.m * z.n;
        float *a = test_alloc(z.m * z.k * sizeof *a), *w = test_alloc(z.n * z.k * sizeof *w);
        float *bias = test_alloc(z.n * sizeof *bias), *zero = test_alloc(mn * 4);
        float *got = test_alloc(mn * 4), *kept = test_alloc(mn * 4), *plain = test_alloc(mn * 4);
        double *want = test_alloc(mn * sizeof *want);
        rng_fill(test_rng(), a, z.m * z.k, -1.0f, 1.0f);
        rng_fill(test_rng(), w, z.n * z.k, -1.0f, 1.0f);
        rng_fill(test_rng(), bias, z.n, -1.0f, 1.0f);
        memset(zero, 0, mn * 4);
        kiln_tensor *da = matrix(z.m, z.k, a), *dw = matrix(z.n, z.k, w);
        kiln_tensor *db = matrix(1, z.n, bias), *dc = matrix(z.m, z.n, zero);
        kiln_tensor *dk = matrix(z.m, z.n, zero);
        gemm_epilogue epi = {db->buf, 0, NULL, 1, dk->buf, NULL};
        check_ok(blas_sgemm_epilogue(ctx, KILN_NO_TRANS, KILN_TRANS, z.m, z.n, z.k, 1.0f, da->buf,
                                     0, z.k, dw->buf, 0, z.k, 0.0f, dc->buf, 0, z.n, &epi));
        check_ok(kiln_tensor_download(dc, got, mn));
        check_ok(kiln_tensor_download(dk, kept, mn));
        kiln_tensor *dd = matrix(z.m, z.n, zero);
        check_ok(blas_sgemm(ctx, KILN_NO_TRANS, KILN_TRANS, z.m, z.n, z.k, 1.0f, da->buf, 0, z.k,
                            dw->buf, 0, z.k, 0.0f, dc->buf, 0, z.n));
        check_ok(op_bias_act(ctx, KILN_ACT_NONE, 0.0f, dc, db, z.n, 1));
        check_ok(op_act_forward(ctx, KILN_ACT_GELU, 0.0f, dc->buf, dc->buf, dd->buf, mn));
        check_ok(kiln_tensor_download(dc, plain, mn));
        ck_assert_msg(memcmp(got, plain, mn * 4) == 0,
                      "m=%zu n=%zu k=%zu kc=%zu: not the bits of the product, bias and GELU",
                      z.m, z.n, z.k, kc);
        check_ok(kiln_tensor_download(dd, plain, mn));
        ck_assert_msg(memcmp(kept, plain, mn * 4) == 0,
                      "m=%zu n=%zu k=%zu kc=%zu: not the bits of act_forward_grad's derivative",
                      z.m, z.n, z.k, kc);
        double *x = test_alloc(mn * sizeof *x);
        ref_gemm(0, 1, z.m, z.n, z.k, 1.0f, a, w, 0.0f, zero, x);
        for (size_t e = 0; e < mn; e++) {
            x[e] += bias[e % z.n];
            want[e] = 0.5 * x[e] * (1.0 + erf(x[e] / sqrt(2.0)));
        }
        check_close(got, want, mn, 1e-6 * (double)(z.k + 2), 1e-5,
                    "gelu m=%zu n=%zu k=%zu kc=%zu", z.m, z.n, z.k, kc);
        for (size_t e = 0; e < mn; e++)
            want[e] = 0.5 * (1.0 + erf(x[e] / sqrt(2.0))) +
                      x[e] * exp(-0.5 * x[e] * x[e]) / sqrt(2.0 * 3.14159265358979323846);
        check_close(kept, want, mn, 1e-6 * (double)(z.k + 2), 1e-5,
                    "derivative m=%zu n=%zu k=%zu kc=%zu", z.m, z.n, z.k, kc);
        /* the same product times the derivative kept */
        gemm_epilogue by = {NULL, 0, NULL, 0, NULL, dk->buf};
        check_ok(blas_sgemm_epilogue(ctx, KILN_NO_TRANS, KILN_TRANS, z.m, z.n, z.k, 1.0f, da->buf,
                                     0, z.k, dw->buf, 0, z.k, 0.0f, dc->buf, 0, z.n, &by));
        check_ok(kiln_tensor_download(dc, got, mn));
        check_ok(blas_sgemm(ctx, KILN_NO_TRANS, KILN_TRANS, z.m, z.n, z.k, 1.0f, da->buf, 0, z.k,
                            dw->buf, 0, z.k, 0.0f, dc->buf, 0, z.n));
        check_ok(op_times(ctx, dc->buf, dk->buf, dc->buf, mn));
        check_ok(kiln_tensor_download(dc, plain, mn));
        ck_assert_msg(memcmp(got, plain, mn * 4) == 0,
                      "m=%zu n=%zu k=%zu kc=%zu: not the bits of the product, then times",
                      z.m, z.n, z.k, kc);
        ref_gemm(0, 1, z.m, z.n, z.k, 1.0f, a, w, 0.0f, zero, x);
        for (size_t e = 0; e < mn; e++)
            x[e] *= kept[e];
        check_close(got, x, mn, 1e-6 * (double)(z.k + 2), 1e-5, "times m=%zu n=%zu k=%zu kc=%zu",
                    z.m, z.n, z.k, kc);
        kiln_tensor_free(dd);
        free(x);
        kiln_tensor_free(da);
        kiln_tensor_free(dw);
        kiln_tensor_free(db);
        kiln_tensor_free(dc);
        kiln_tensor_free(dk);
        free(a);
        free(w);
        free(bias);
        free(zero);
        free(got);
        free(kept);
        free(plain);
        free(want);
    }
    kiln_ctx_set_gemm(ctx, KILN_GEMM_AUTO);
    check_ok(gemm_tile_set(ctx, (gemm_tile){0, 0, 0}));
}
END_TEST

/* The convolution's operand packed straight from the image into panels as
 * wide as the tile's NR, both ways (the forward product and the weight
 * gradient's), against a host im2col. */
START_TEST(im2col_panels_follow_the_tile)
{
    kiln_ctx *ctx = test_ctx();
    int which = _i % FORCED;
    if (tile_skipped(which))
        return;
    gemm_tile tile = forced[which];
    tile.kc = _i < FORCED ? 0 : 16; /* the device's k block (one here), or blocks of 16 */
    check_ok(gemm_tile_set(ctx, tile));
    enum { N = 2, C = 3, H = 7, W = 6, K = 3, S = 1, P = 1, D = 1, OH = 7, OW = 6, M = 5 };
    size_t rows = C * K * K, cols = N * OH * OW, nx = N * C * H * W;
    float *x = test_alloc(nx * sizeof *x), *col = test_alloc(rows * cols * sizeof *col);
    rng_fill(test_rng(), x, nx, -1.0f, 1.0f);
    for (size_t r = 0; r < rows; r++)
        for (size_t q = 0; q < cols; q++) {
            size_t c = r / (K * K), kh = r / K % K, kw = r % K;
            size_t n = q / (OH * OW), oh = q / OW % OH, ow = q % OW;
            long ih = (long)(oh * S + kh * D) - P, iw = (long)(ow * S + kw * D) - P;
            col[r * cols + q] = ih >= 0 && ih < H && iw >= 0 && iw < W
                                    ? x[((n * C + c) * H + (size_t)ih) * W + (size_t)iw]
                                    : 0.0f;
        }
    kiln_tensor *dx = matrix(1, nx, x);
    gemm_im2col im = {dx->buf, N, C, H, W, K, S, P, D, OH, OW};
    for (int transposed = 0; transposed < 2; transposed++) {
        size_t n = transposed ? rows : cols, k = transposed ? cols : rows;
        float *a = test_alloc(M * k * sizeof *a), *got = test_alloc(M * n * sizeof *got);
        double *want = test_alloc(M * n * sizeof *want);
        rng_fill(test_rng(), a, M * k, -1.0f, 1.0f);
        rng_fill(test_rng(), got, M * n, -1.0f, 1.0f); /* beta 0: never read */
        kiln_tensor *da = matrix(M, k, a), *dc = matrix(M, n, got);
        check_ok(gemm_cpu_sgemm_im2col(ctx, M, 1.0f, da->buf, k, &im, transposed, 0.0f,
                                       dc->buf, n));
        check_ok(kiln_tensor_download(dc, got, M * n));
        ref_gemm(0, transposed, M, n, k, 1.0, a, col, 0.0, got, want);
        check_close(got, want, M * n, 1e-6 * (double)(k + 1) + 1e-6, 1e-5,
                    "im2col tile %dx%d k block %zu transposed=%d", tile.mr, 2 * tile.v,
                    tile.kc, transposed);
        kiln_tensor_free(da);
        kiln_tensor_free(dc);
        free(a);
        free(got);
        free(want);
    }
    check_ok(gemm_tile_set(ctx, (gemm_tile){0, 0, 0}));
    kiln_tensor_free(dx);
    free(x);
    free(col);
}
END_TEST

/* Tiles by name: KILN_GEMM_TILE's syntax, the device's default, the setter. */
START_TEST(gemm_tiles_parse_and_default)
{
    gemm_tile t;
    check_ok(gemm_tile_parse("6x16", "test", &t));
    ck_assert(t.mr == 6 && t.v == 8);
    check_ok(gemm_tile_parse("8x32", "test", &t));
    ck_assert(t.mr == 8 && t.v == 16);
    check_ok(gemm_tile_parse("1x8", "test", &t));
    ck_assert(t.mr == 1 && t.v == 4);
    static const char *const bad[] = {"9x32", "0x8", "6x12", "6x64", "6x16x", "6", "", "ax16"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_int_eq(gemm_tile_parse(bad[i], "KILN_GEMM_TILE", &t),
                         KILN_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(kiln_last_error(), "KILN_GEMM_TILE"), "message: %s", kiln_last_error());
    ck_assert_int_eq(gemm_tile_set(test_ctx(), (gemm_tile){3, 5, 0}),
                     KILN_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(gemm_tile_set(test_ctx(), (gemm_tile){4, 4, GEMM_KC_MAX + 1}),
                     KILN_ERR_INVALID_ARGUMENT);
    size_t kc;
    check_ok(gemm_kc_parse("192", "test", &kc));
    ck_assert_uint_eq(kc, 192);
    static const char *const bad_kc[] = {"0", "-5", "65537", "12x", "", "k"};
    for (size_t i = 0; i < sizeof bad_kc / sizeof bad_kc[0]; i++)
        ck_assert_int_eq(gemm_kc_parse(bad_kc[i], "KILN_GEMM_KC", &kc),
                         KILN_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(kiln_last_error(), "KILN_GEMM_KC"), "message: %s", kiln_last_error());
    t = gemm_tile_default(test_ctx());
    ck_assert(t.mr >= 1 && t.mr <= 8 && (t.v == 4 || t.v == 8 || t.v == 16));
    ck_assert(t.kc >= 1 && t.kc <= GEMM_KC_MAX);
    /* without the override, the context's tile is the device's default */
    const char *env = getenv("KILN_GEMM_TILE");
    if (!(env && *env)) {
        gemm_tile now;
        check_ok(gemm_tile_set(test_ctx(), (gemm_tile){0, 0, 0}));
        check_ok(gemm_tile_get(test_ctx(), &now));
        ck_assert(now.mr == t.mr && now.v == t.v);
        if (!getenv("KILN_GEMM_KC"))
            ck_assert(now.kc == t.kc);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("blas");
    TCase *tc = tcase_create("sgemm");
    tcase_add_loop_test(tc, sgemm_matches_reference, 0, 2 * SIZE_COUNT);
    tcase_add_loop_test(tc, sgemm_with_zero_alpha_scales_c, 0, 2);
    tcase_add_loop_test(tc, sgemm_on_submatrices_at_offsets, 0, 8);
    tcase_add_test(tc, gemm_engine_names_round_trip);
    tcase_add_test(tc, tuning_records_round_trip_and_bad_ones_are_ignored);
    tcase_add_test(tc, tuned_clblast_parameters_give_correct_products);
    tcase_add_test(tc, sgemm_shape_mismatch_names_all_shapes);
    tcase_add_test(tc, tuning_record_sets_kiln_tile);
    tcase_add_test(tc, tuning_record_sets_attention_rows);
    tcase_add_test(tc, bench_attention_times_one_tile);
    tcase_add_loop_test(tc, sgemm_with_each_tile, 0, FORCED);
    tcase_add_loop_test(tc, sgemm_in_blocks_of_k, 0, 3);
    tcase_add_loop_test(tc, sgemm_epilogue_adds_bias_and_relu, 0, 2);
    tcase_add_loop_test(tc, sgemm_epilogue_keeps_the_derivative_of_gelu, 0, 2);
    tcase_add_test(tc, sgemm_from_packed_weights);
    tcase_add_test(tc, sgemm_packed_for_another_tile_reads_w);
    tcase_add_loop_test(tc, im2col_panels_follow_the_tile, 0, 2 * FORCED);
    tcase_add_test(tc, gemm_tiles_parse_and_default);
    suite_add_tcase(s, tc);
    return test_run(s);
}
