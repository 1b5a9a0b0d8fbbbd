/* The sequence operators (embedding, position, attention) on the test
 * device against their float64 references (ref_gpt.c) at awkward sizes
 * (T = 1, 17, 257, one head, head dimensions 1, 5, 7, 12), the references'
 * backward against central finite differences, the device's backward
 * against finite differences of the device's forward, bit-identical
 * gradients from run to run, and the errors of bad shapes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ref_gpt.h"
#include "ops/ops.h"

typedef struct {
    size_t n;
    float *f;
    double *d;
} host;

static host host_random(size_t n, double lo, double hi)
{
    host h = {n, test_alloc(n * sizeof(float)), test_alloc(n * sizeof(double))};
    rng_fill(test_rng(), h.f, n, (float)lo, (float)hi);
    for (size_t i = 0; i < n; i++)
        h.d[i] = h.f[i];
    return h;
}

/* n token ids in [0, V). */
static host host_ids(size_t n, size_t V)
{
    host h = host_random(n, 0, 1);
    for (size_t i = 0; i < n; i++)
        h.d[i] = h.f[i] = (float)(rng_next(test_rng()) % V);
    return h;
}

static void host_free(host *h)
{
    free(h->f);
    free(h->d);
}

static kiln_tensor *device(const kiln_shape *s, const host *h)
{
    kiln_tensor *t;
    check_ok(tensor_of(test_ctx(), s, &t));
    if (h)
        check_ok(kiln_tensor_upload(t, h->f, h->n));
    return t;
}

static float *download(const kiln_tensor *t)
{
    float *v = test_alloc(t->numel * sizeof *v);
    check_ok(kiln_tensor_download(t, v, t->numel));
    return v;
}

/* Device against reference, relative to the reference's largest value. */
static void compare(const char *label, const char *what, const kiln_tensor *t, const double *want,
                    double tol)
{
    float *got = download(t);
    double scale = 1e-30, worst = 0;
    for (size_t i = 0; i < t->numel; i++)
        scale = fmax(scale, fabs(want[i]));
    for (size_t i = 0; i < t->numel; i++)
        worst = fmax(worst, fabs((double)got[i] - want[i]) / scale);
    printf("%-34s %-16s worst |error| / max |value| = %.2e\n", label, what, worst);
    check_close(got, want, t->numel, tol * fmax(scale, 1e-3), tol, "%s: %s", label, what);
    free(got);
}

/* ---- attention --------------------------------------------------------------- */

typedef struct {
    size_t B, T, H, D;
} attn_case;

static const attn_case attn_cases[] = {
    {1, 1, 1, 1},  {2, 17, 2, 5},  {1, 17, 1, 16},  {3, 13, 3, 7},
    {2, 67, 2, 12}, {1, 257, 1, 3}, {2, 64, 4, 32}, {1, 17, 1, 256}, /* the widest head */
};

static op_attrs attn_attrs(const attn_case *c)
{
    op_attrs a = op_attrs_default();
    a.heads = c->H;
    return a;
}

/* sum dout * y of the reference, for finite differences. */
static double ref_objective(const attn_case *c, const double *qkv, const double *dout)
{
    size_t C = c->H * c->D, n = c->B * c->T * C;
    double *y = test_alloc(n * sizeof *y), l = 0;
    ref_attention(qkv, c->B, c->T, C, c->H, y);
    for (size_t i = 0; i < n; i++)
        l += dout[i] * y[i];
    free(y);
    return l;
}

static void attention_case(const attn_case *c)
{
    char label[64];
    snprintf(label, sizeof label, "attention B%zu T%zu H%zu D%zu", c->B, c->T, c->H, c->D);
    size_t C = c->H * c->D, nin = c->B * c->T * 3 * C, nout = c->B * c->T * C;
    op_attrs a = attn_attrs(c);
    kiln_shape in = shape_make(3, c->B, c->T, 3 * C, 0);
    op_shapes s;
    check_ok(op_infer(OP_ATTENTION, &a, &in, &s));
    host x = host_random(nin, -1.5, 1.5), dy = host_random(nout, -1, 1);
    op_args args = {.ctx = test_ctx(), .attrs = &a, .training = 1};
    args.in[0] = device(&in, &x);
    args.out = device(&s.out, NULL);
    args.saved[0] = device(&s.saved[0], NULL);
    args.dout = device(&s.out, &dy);
    args.din[0] = device(&in, NULL);

    double *want = test_alloc(nout * sizeof *want), *dwant = test_alloc(nin * sizeof *dwant);
    ref_attention(x.d, c->B, c->T, C, c->H, want);
    check_ok(op_forward(OP_ATTENTION, &args));
    compare(label, "forward", args.out, want, 2e-5);
    ref_attention_backward(x.d, dy.d, c->B, c->T, C, c->H, dwant);
    check_ok(op_backward(OP_ATTENTION, &args));
    compare(label, "input gradient", args.din[0], dwant, 5e-5);

    /* the same bits on a second run */
    float *first = download(args.din[0]);
    check_ok(op_backward(OP_ATTENTION, &args));
    float *second = download(args.din[0]);
    ck_assert_msg(memcmp(first, second, nin * sizeof *first) == 0,
                  "%s: the input gradient differs between two runs", label);

    /* the reference's backward against its finite differences */
    for (int k = 0; k < 6; k++) {
        size_t i = (size_t)(rng_next(test_rng()) % nin);
        double keep = x.d[i], h = 1e-6;
        x.d[i] = keep + h;
        double up = ref_objective(c, x.d, dy.d);
        x.d[i] = keep - h;
        double down = ref_objective(c, x.d, dy.d);
        x.d[i] = keep;
        double fd = (up - down) / (2 * h);
        ck_assert_msg(fabs(fd - dwant[i]) <= 1e-5 * fmax(1.0, fabs(fd)),
                      "%s: reference d/dqkv[%zu] = %.10g, finite differences %.10g", label, i,
                      dwant[i], fd);
    }

    /* the device's backward against the device's forward */
    for (int k = 0; k < 3; k++) {
        size_t i = (size_t)(rng_next(test_rng()) % nin);
        float keep = x.f[i], h = 1e-2f;
        double l[2];
        for (int side = 0; side < 2; side++) {
            x.f[i] = keep + (side ? -h : h);
            check_ok(kiln_tensor_upload((kiln_tensor *)args.in[0], x.f, nin));
            check_ok(op_forward(OP_ATTENTION, &args));
            float *y = download(args.out);
            l[side] = 0;
            for (size_t j = 0; j < nout; j++)
                l[side] += dy.d[j] * y[j];
            free(y);
        }
        x.f[i] = keep;
        double fd = (l[0] - l[1]) / (2.0 * h);
        ck_assert_msg(fabs(fd - first[i]) <= 2e-2 * fmax(1.0, fabs(fd)),
                      "%s: device dqkv[%zu] = %.6g, device finite differences %.6g", label, i,
                      (double)first[i], fd);
    }
    free(first);
    free(second);
    free(want);
    free(dwant);
    host_free(&x);
    host_free(&dy);
    kiln_tensor_free((kiln_tensor *)args.in[0]);
    kiln_tensor_free(args.out);
    kiln_tensor_free(args.saved[0]);
    kiln_tensor_free((kiln_tensor *)args.dout);
    kiln_tensor_free(args.din[0]);
}

START_TEST(attention_matches_reference)
{
    attention_case(&attn_cases[_i]);
}
END_TEST

/* Every vector width (rows an item takes, one a lane, CPUs) and every
 * local tile (rows of a work-group, GPUs) gives the bits of one row per
 * item and no tile, forward and backward, at every case's size. */
START_TEST(attention_tiles_give_the_same_bits)
{
    const attn_case *c = &attn_cases[_i];
    size_t C = c->H * c->D, nin = c->B * c->T * 3 * C, nout = c->B * c->T * C;
    op_attrs a = attn_attrs(c);
    kiln_shape in = shape_make(3, c->B, c->T, 3 * C, 0);
    op_shapes s;
    check_ok(op_infer(OP_ATTENTION, &a, &in, &s));
    host x = host_random(nin, -3, 3), dy = host_random(nout, -1, 1);
    op_args args = {.ctx = test_ctx(), .attrs = &a, .training = 1};
    args.in[0] = device(&in, &x);
    args.out = device(&s.out, NULL);
    args.saved[0] = device(&s.saved[0], NULL);
    args.dout = device(&s.out, &dy);
    args.din[0] = device(&in, NULL);
    const kiln_tensor *results[3] = {args.out, args.saved[0], args.din[0]};
    static const char *names[3] = {"output", "log-sum-exp", "input gradient"};
    float *one[3] = {NULL, NULL, NULL};
    /* 1: one row an item and no local tile; 5: 4 lanes, or a tile past
     * some T; 16: PoCL's lanes; 32: the local tile GPUs (and rusticl)
     * take by default */
    static const size_t rows[] = {1, 2, 5, 8, 16, 32};
    int tiles = !device_loops_work_groups(&args.ctx->info);
    for (size_t r = 0; r < sizeof rows / sizeof rows[0] - !tiles; r++) {
        attention_set_rows(rows[r]);
        check_ok(op_forward(OP_ATTENTION, &args));
        check_ok(op_backward(OP_ATTENTION, &args));
        for (int k = 0; k < 3; k++) {
            float *got = download(results[k]);
            if (r == 0) {
                one[k] = got;
                continue;
            }
            ck_assert_msg(memcmp(one[k], got, results[k]->numel * sizeof *got) == 0,
                          "B%zu T%zu H%zu D%zu: %zu rows per item change the %s", c->B, c->T,
                          c->H, c->D, rows[r], names[k]);
            free(got);
        }
    }
    attention_set_rows(0);
    for (int k = 0; k < 3; k++)
        free(one[k]);
    host_free(&x);
    host_free(&dy);
    kiln_tensor_free((kiln_tensor *)args.in[0]);
    kiln_tensor_free(args.out);
    kiln_tensor_free(args.saved[0]);
    kiln_tensor_free((kiln_tensor *)args.dout);
    kiln_tensor_free(args.din[0]);
}
END_TEST

/* ---- embeddings ------------------------------------------------------------------ */

typedef struct {
    size_t B, T, V, C, rows; /* rows: positions in the table (position embedding) */
} embed_case;

static const embed_case embed_cases[] = {
    {1, 1, 1, 1, 1}, {3, 17, 13, 33, 19}, {2, 5, 131, 7, 5}, {4, 64, 65, 128, 64},
    {2, 3, 5, 517, 3}, /* channels past one run of 512 */
};

static void embedding_case(const embed_case *c)
{
    char label[64];
    snprintf(label, sizeof label, "embedding %zux%zu V%zu C%zu", c->B, c->T, c->V, c->C);
    size_t N = c->B * c->T;
    op_attrs a = op_attrs_default();
    a.rows = c->V;
    a.out = c->C;
    kiln_shape in = shape_make(2, c->B, c->T, 0, 0);
    op_shapes s;
    check_ok(op_infer(OP_EMBEDDING, &a, &in, &s));
    host ids = host_ids(N, c->V), w = host_random(c->V * c->C, -1, 1);
    host dy = host_random(N * c->C, -1, 1);
    op_args args = {.ctx = test_ctx(), .attrs = &a, .training = 1};
    args.in[0] = device(&in, &ids);
    args.param[0] = device(&s.param[0], &w);
    args.out = device(&s.out, NULL);
    args.dout = device(&s.out, &dy);
    args.dparam[0] = device(&s.param[0], NULL);
    double *want = test_alloc(N * c->C * sizeof *want);
    double *dw = test_alloc(c->V * c->C * sizeof *dw);
    ref_embedding(ids.d, N, w.d, c->C, want);
    ref_embedding_backward(ids.d, N, dy.d, c->V, c->C, dw);
    check_ok(op_forward(OP_EMBEDDING, &args));
    compare(label, "forward", args.out, want, 0);
    check_ok(op_backward(OP_EMBEDDING, &args));
    compare(label, "weight gradient", args.dparam[0], dw, 1e-6);
    float *first = download(args.dparam[0]);
    check_ok(op_backward(OP_EMBEDDING, &args));
    float *second = download(args.dparam[0]);
    ck_assert_msg(!memcmp(first, second, c->V * c->C * sizeof *first),
                  "%s: the weight gradient differs between two runs", label);
    free(first);
    free(second);
    free(want);
    free(dw);
    host_free(&ids);
    host_free(&w);
    host_free(&dy);
    kiln_tensor_free((kiln_tensor *)args.in[0]);
    kiln_tensor_free(args.param[0]);
    kiln_tensor_free(args.out);
    kiln_tensor_free((kiln_tensor *)args.dout);
    kiln_tensor_free(args.dparam[0]);
}

static void position_case(const embed_case *c)
{
    char label[64];
    snprintf(label, sizeof label, "position %zux%zux%zu of %zu", c->B, c->T, c->C, c->rows);
    size_t n = c->B * c->T * c->C;
    op_attrs a = op_attrs_default();
    a.rows = c->rows;
    kiln_shape in = shape_make(3, c->B, c->T, c->C, 0);
    op_shapes s;
    check_ok(op_infer(OP_POSITION, &a, &in, &s));
    host x = host_random(n, -1, 1), p = host_random(c->rows * c->C, -1, 1);
    host dy = host_random(n, -1, 1);
    op_args args = {.ctx = test_ctx(), .attrs = &a, .training = 1};
    args.in[0] = device(&in, &x);
    args.param[0] = device(&s.param[0], &p);
    args.out = device(&s.out, NULL);
    args.dout = device(&s.out, &dy);
    args.din[0] = device(&in, NULL);
    args.dparam[0] = device(&s.param[0], NULL);
    check_ok(kiln_tensor_fill(args.dparam[0], NAN)); /* rows past T must be written too */
    double *want = test_alloc(n * sizeof *want), *dp = test_alloc(c->rows * c->C * sizeof *dp);
    ref_position(x.d, c->B, c->T, c->C, p.d, want);
    ref_position_backward(dy.d, c->B, c->T, c->C, c->rows, dp);
    check_ok(op_forward(OP_POSITION, &args));
    compare(label, "forward", args.out, want, 1e-7);
    check_ok(op_backward(OP_POSITION, &args));
    compare(label, "input gradient", args.din[0], dy.d, 0);
    compare(label, "table gradient", args.dparam[0], dp, 1e-6);
    free(want);
    free(dp);
    host_free(&x);
    host_free(&p);
    host_free(&dy);
    kiln_tensor_free((kiln_tensor *)args.in[0]);
    kiln_tensor_free(args.param[0]);
    kiln_tensor_free(args.out);
    kiln_tensor_free((kiln_tensor *)args.dout);
    kiln_tensor_free(args.din[0]);
    kiln_tensor_free(args.dparam[0]);
}

START_TEST(embeddings_match_reference)
{
    embedding_case(&embed_cases[_i]);
    position_case(&embed_cases[_i]);
}
END_TEST

/* Token ids outside the vocabulary give NaN rows on the device (the
 * network API refuses them before they get there). */
START_TEST(embedding_of_a_bad_id_is_nan)
{
    op_attrs a = op_attrs_default();
    a.rows = 5;
    a.out = 3;
    kiln_shape in = shape_make(2, 1, 4, 0, 0);
    op_shapes s;
    check_ok(op_infer(OP_EMBEDDING, &a, &in, &s));
    host ids = host_ids(4, 5), w = host_random(15, -1, 1);
    ids.f[1] = 5.0f;
    ids.f[2] = 1.5f;
    ids.f[3] = -1.0f;
    op_args args = {.ctx = test_ctx(), .attrs = &a};
    args.in[0] = device(&in, &ids);
    args.param[0] = device(&s.param[0], &w);
    args.out = device(&s.out, NULL);
    check_ok(op_forward(OP_EMBEDDING, &args));
    float *y = download(args.out);
    for (int i = 0; i < 12; i++)
        ck_assert_msg(i < 3 ? isfinite(y[i]) : isnan(y[i]), "value %d is %g", i, y[i]);
    free(y);
    host_free(&ids);
    host_free(&w);
    kiln_tensor_free((kiln_tensor *)args.in[0]);
    kiln_tensor_free(args.param[0]);
    kiln_tensor_free(args.out);
}
END_TEST

START_TEST(bad_shapes_are_named)
{
    op_attrs a = op_attrs_default();
    op_shapes s;
    a.rows = 16;
    kiln_shape long_block = shape_make(3, 2, 17, 8, 0);
    ck_assert_int_eq(op_infer(OP_POSITION, &a, &long_block, &s), KILN_ERR_SHAPE);
    ck_assert_msg(strstr(kiln_last_error(), "17 tokens") &&
                      strstr(kiln_last_error(), "16 positions"),
                  "%s", kiln_last_error());
    a.heads = 5;
    kiln_shape qkv = shape_make(3, 2, 17, 96, 0);
    ck_assert_int_eq(op_infer(OP_ATTENTION, &a, &qkv, &s), KILN_ERR_SHAPE);
    ck_assert_msg(strstr(kiln_last_error(), "5 heads"), "%s", kiln_last_error());
    kiln_shape flat = shape_make(2, 2, 96, 0, 0);
    a.heads = 2;
    ck_assert_int_eq(op_infer(OP_ATTENTION, &a, &flat, &s), KILN_ERR_SHAPE);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("gpt");
    TCase *tc = tcase_create("gpt");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, attention_matches_reference, 0,
                        (int)(sizeof attn_cases / sizeof attn_cases[0]));
    tcase_add_loop_test(tc, attention_tiles_give_the_same_bits, 0,
                        sizeof attn_cases / sizeof attn_cases[0]);
    tcase_add_loop_test(tc, embeddings_match_reference, 0,
                        (int)(sizeof embed_cases / sizeof embed_cases[0]));
    tcase_add_test(tc, embedding_of_a_bad_id_is_nan);
    tcase_add_test(tc, bad_shapes_are_named);
    suite_add_tcase(s, tc);
    return test_run(s);
}
