/* Losses against the float64 reference and finite differences, their
 * stability at extreme logits, and the chapter's worked example. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ref_ops.h"

typedef struct {
    loss_kind kind;
    size_t rows, cols;
    float smoothing;
} loss_case;

static const loss_case cases[] = {
    {LOSS_MSE, 1, 1, 0},          {LOSS_MSE, 129, 17, 0},    {LOSS_BCE, 1, 1, 0},
    {LOSS_BCE, 3, 17, 0},         {LOSS_CROSS_ENTROPY, 1, 1, 0},
    {LOSS_CROSS_ENTROPY, 3, 10, 0}, {LOSS_CROSS_ENTROPY, 129, 17, 0.1f},
    {LOSS_CROSS_ENTROPY, 7, 3, 1.0f},
    /* rows of sixteen classes or more (ce_rows16 on CPUs): one sixteen,
     * a GPT's 84 (five and a tail), smoothing */
    {LOSS_CROSS_ENTROPY, 5, 16, 0},  {LOSS_CROSS_ENTROPY, 13, 84, 0.05f},
};

#define CASE_COUNT (int)(sizeof cases / sizeof cases[0])

static kiln_tensor *upload(const kiln_shape *s, const float *data)
{
    kiln_tensor *t;
    check_ok(tensor_of(test_ctx(), s, &t));
    if (data)
        check_ok(kiln_tensor_upload(t, data, shape_numel(s)));
    return t;
}

static float download_one(const kiln_tensor *t)
{
    float v;
    check_ok(kiln_tensor_download(t, &v, 1));
    return v;
}

/* Targets: class indices for cross-entropy, values in [0, 1] otherwise. */
static void make_targets(const loss_case *c, float *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        t[i] = c->kind == LOSS_CROSS_ENTROPY
                   ? (float)(rng_next(test_rng()) % c->cols)
                   : (float)rng_uniform(test_rng(), 0, 1);
}

static void to_double(const float *f, double *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        d[i] = f[i];
}

START_TEST(loss_matches_reference_and_finite_differences)
{
    const loss_case *c = &cases[_i];
    kiln_shape in = shape_make(2, c->rows, c->cols, 0, 0);
    kiln_shape ts = c->kind == LOSS_CROSS_ENTROPY ? shape_make(1, c->rows, 0, 0, 0) : in;
    kiln_shape one = shape_make(1, 1, 0, 0, 0);
    size_t n = shape_numel(&in), nt = shape_numel(&ts);
    float *x = test_alloc(n * sizeof *x), *t = test_alloc(nt * sizeof *t);
    float *grad = test_alloc(n * sizeof *grad);
    double *xd = test_alloc(n * sizeof *xd), *td = test_alloc(nt * sizeof *td);
    double *want = test_alloc(n * sizeof *want);
    rng_fill(test_rng(), x, n, -3, 3);
    make_targets(c, t, nt);
    to_double(x, xd, n);
    to_double(t, td, nt);

    kiln_tensor *dx = upload(&in, x), *dt = upload(&ts, t), *dl = upload(&one, NULL);
    kiln_tensor *dg = upload(&in, NULL);
    check_ok(op_loss(test_ctx(), c->kind, c->smoothing, dx, dt, dl, dg));
    double loss = ref_loss(c->kind, c->smoothing, &in, xd, td, want);
    float got = download_one(dl);
    ck_assert_msg(fabs(got - loss) <= 1e-5 * fmax(1, fabs(loss)), "%s %zux%zu: loss %.9g, "
                  "expected %.9g", loss_name(c->kind), c->rows, c->cols, got, loss);
    check_ok(kiln_tensor_download(dg, grad, n));
    check_close(grad, want, n, 1e-6, 1e-5, "%s %zux%zu gradient", loss_name(c->kind), c->rows,
                c->cols);

    /* the reference gradient against central differences of the reference */
    for (int k = 0; k < 8; k++) {
        size_t i = (size_t)(rng_next(test_rng()) % n);
        double keep = xd[i], h = 1e-6;
        xd[i] = keep + h;
        double up = ref_loss(c->kind, c->smoothing, &in, xd, td, NULL);
        xd[i] = keep - h;
        double down = ref_loss(c->kind, c->smoothing, &in, xd, td, NULL);
        xd[i] = keep;
        double fd = (up - down) / (2 * h);
        ck_assert_msg(fabs(fd - want[i]) <= 1e-6 * fmax(1, fabs(fd)),
                      "%s: reference gradient %.10g, finite differences %.10g",
                      loss_name(c->kind), want[i], fd);
    }
    /* without a gradient tensor the loss is the same */
    check_ok(op_loss(test_ctx(), c->kind, c->smoothing, dx, dt, dl, NULL));
    ck_assert_float_eq(download_one(dl), got);

    kiln_tensor_free(dx);
    kiln_tensor_free(dt);
    kiln_tensor_free(dl);
    kiln_tensor_free(dg);
    free(x);
    free(t);
    free(grad);
    free(xd);
    free(td);
    free(want);
}
END_TEST

/* Logits of +-1e4 keep softmax, cross-entropy and bce finite; sigmoid and
 * tanh saturate to their limits without NaN. */
START_TEST(extreme_logits_stay_finite)
{
    kiln_ctx *ctx = test_ctx();
    float x[6] = {1e4f, -1e4f, 0.0f, -1e4f, 1e4f, 3.0f}, t[2] = {1, 0}, bt[6] = {1, 0, 1, 0, 1, 0};
    kiln_shape in = shape_make(2, 2, 3, 0, 0), ts = shape_make(1, 2, 0, 0, 0);
    kiln_shape one = shape_make(1, 1, 0, 0, 0);
    kiln_tensor *dx = upload(&in, x), *dt = upload(&ts, t), *dl = upload(&one, NULL);
    kiln_tensor *dg = upload(&in, NULL), *bce_t = upload(&in, bt), *y = upload(&in, NULL);
    float out[6];
    check_ok(op_loss(ctx, LOSS_CROSS_ENTROPY, 0.1f, dx, dt, dl, dg));
    /* row 0: target 1 has logit -1e4 against 1e4: loss about 2e4 */
    float ce = download_one(dl);
    ck_assert_msg(isfinite(ce) && ce > 9e3f, "cross-entropy %g", ce);
    check_ok(kiln_tensor_download(dg, out, 6));
    for (int i = 0; i < 6; i++)
        ck_assert_msg(isfinite(out[i]), "cross-entropy gradient[%d] = %g", i, out[i]);
    check_ok(op_loss(ctx, LOSS_BCE, 0, dx, bce_t, dl, dg));
    ck_assert_msg(isfinite(download_one(dl)), "bce not finite");

    op_attrs a = op_attrs_default();
    op_args args = {.ctx = ctx, .attrs = &a, .training = 1, .in = {dx}, .out = y};
    check_ok(op_forward(OP_SOFTMAX, &args));
    check_ok(kiln_tensor_download(y, out, 6));
    for (int i = 0; i < 6; i++)
        ck_assert_msg(isfinite(out[i]) && out[i] >= 0 && out[i] <= 1, "softmax[%d] = %g", i,
                      out[i]);
    static const kiln_act acts[] = {KILN_ACT_SIGMOID, KILN_ACT_TANH};
    for (int k = 0; k < 2; k++) {
        a.act = acts[k];
        check_ok(op_forward(OP_ACTIVATION, &args));
        check_ok(kiln_tensor_download(y, out, 6));
        ck_assert_float_eq_tol(out[0], 1.0f, 1e-6f);
        ck_assert_float_eq_tol(out[1], acts[k] == KILN_ACT_SIGMOID ? 0.0f : -1.0f, 1e-6f);
    }
    kiln_tensor_free(dx);
    kiln_tensor_free(dt);
    kiln_tensor_free(dl);
    kiln_tensor_free(dg);
    kiln_tensor_free(bce_t);
    kiln_tensor_free(y);
}
END_TEST

START_TEST(bad_targets_and_shapes_are_reported)
{
    kiln_ctx *ctx = test_ctx();
    float x[6] = {0}, t[2] = {0, 3};
    kiln_shape in = shape_make(2, 2, 3, 0, 0), ts = shape_make(1, 2, 0, 0, 0);
    kiln_shape one = shape_make(1, 1, 0, 0, 0), wrong = shape_make(1, 3, 0, 0, 0);
    kiln_tensor *dx = upload(&in, x), *dt = upload(&ts, t), *dl = upload(&one, NULL);
    kiln_tensor *bad = upload(&wrong, NULL);
    check_ok(op_loss(ctx, LOSS_CROSS_ENTROPY, 0, dx, dt, dl, NULL));
    ck_assert_msg(isnan(download_one(dl)), "class index 3 of 3 classes must give NaN");
    float wide[2 * 20] = {0}, wide_t[2] = {19, 20}, g[2 * 20];
    kiln_shape ws = shape_make(2, 2, 20, 0, 0);
    kiln_tensor *wx = upload(&ws, wide), *wt = upload(&ts, wide_t), *wg = upload(&ws, NULL);
    check_ok(op_loss(ctx, LOSS_CROSS_ENTROPY, 0, wx, wt, dl, wg));
    ck_assert_msg(isnan(download_one(dl)), "class index 20 of 20 classes must give NaN");
    check_ok(kiln_tensor_download(wg, g, 2 * 20));
    ck_assert_msg(!isnan(g[19]) && isnan(g[20]) && isnan(g[39]), "NaN rows of the gradient");
    kiln_tensor_free(wx);
    kiln_tensor_free(wt);
    kiln_tensor_free(wg);
    ck_assert_int_eq(op_loss(ctx, LOSS_CROSS_ENTROPY, 0, dx, bad, dl, NULL), KILN_ERR_SHAPE);
    ck_assert_msg(strstr(kiln_last_error(), "target is 3; expected 2") != NULL, "message: %s",
                  kiln_last_error());
    ck_assert_int_eq(op_loss(ctx, LOSS_MSE, 0, dx, dt, dl, NULL), KILN_ERR_SHAPE);
    ck_assert_int_eq(op_loss(ctx, LOSS_CROSS_ENTROPY, 1.5f, dx, dt, dl, NULL),
                     KILN_ERR_INVALID_ARGUMENT);
    kiln_tensor_free(dx);
    kiln_tensor_free(dt);
    kiln_tensor_free(dl);
    kiln_tensor_free(bad);
}
END_TEST

/* The chapter's worked example: one neuron, x = 2, w = 0.5, b = 0.5, ReLU,
 * target 1, MSE: loss 0.25, dL/dw = 2, and SGD with lr 0.1 gives w = 0.3. */
START_TEST(chapter_single_neuron_example)
{
    kiln_ctx *ctx = test_ctx();
    float xv = 2.0f, wv = 0.5f, bv = 0.5f, target = 1.0f;
    kiln_shape s11 = shape_make(2, 1, 1, 0, 0), s1 = shape_make(1, 1, 0, 0, 0);
    kiln_tensor *x = upload(&s11, &xv), *w = upload(&s11, &wv), *b = upload(&s1, &bv);
    kiln_tensor *y = upload(&s11, NULL), *t = upload(&s11, &target), *loss = upload(&s1, NULL);
    kiln_tensor *dy = upload(&s11, NULL), *dw = upload(&s11, NULL), *db = upload(&s1, NULL);
    op_attrs a = op_attrs_default();
    a.out = 1;
    a.act = KILN_ACT_RELU;
    op_args c = {.ctx = ctx, .attrs = &a, .training = 1, .in = {x}, .out = y,
                 .param = {w, b}, .dout = dy, .dparam = {dw, db}};
    check_ok(op_forward(OP_LINEAR, &c));
    check_ok(op_loss(ctx, LOSS_MSE, 0, y, t, loss, dy));
    check_ok(op_backward(OP_LINEAR, &c));
    ck_assert_float_eq_tol(download_one(y), 1.5f, 1e-7f);
    ck_assert_float_eq_tol(download_one(loss), 0.25f, 1e-7f);
    float grad_w = download_one(dw);
    ck_assert_float_eq_tol(grad_w, 2.0f, 1e-6f);
    ck_assert_float_eq_tol(download_one(db), 1.0f, 1e-6f);
    ck_assert_float_eq_tol(wv - 0.1f * grad_w, 0.3f, 1e-6f);
    kiln_tensor *all[] = {x, w, b, y, t, loss, dy, dw, db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        kiln_tensor_free(all[i]);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("loss");
    TCase *tc = tcase_create("loss");
    tcase_add_loop_test(tc, loss_matches_reference_and_finite_differences, 0, CASE_COUNT);
    tcase_add_test(tc, extreme_logits_stay_finite);
    tcase_add_test(tc, bad_targets_and_shapes_are_reported);
    tcase_add_test(tc, chapter_single_neuron_example);
    suite_add_tcase(s, tc);
    return test_run(s);
}
