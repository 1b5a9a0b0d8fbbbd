/* What a network carries beyond its weights: the model's own text (in
 * checkpoints too, so the file alone gives back the model), resolved
 * [train] settings, the last step's gradients, frozen parameters and the
 * normalization read back. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ops/ops.h"

static const char mlp[] = "[input]\nshape = 5\n[linear]\nname = fc1\nout = 6\n[relu]\n"
                          "[linear]\nname = head\nout = 3\n[train]\noptimizer = adamw\n"
                          "lr = 0.05\nweight_decay = 0.1\nseed = 9\n";

static void append(void *user, const char *text)
{
    char *buf = user;
    strncat(buf, text, 8191 - strlen(buf));
}

static kiln_net *net_of(kiln_model *m, size_t batch)
{
    kiln_net *net;
    check_ok(kiln_net_create(test_ctx(), m, batch, &net));
    return net;
}

/* The text of a model read from a file, and of the same model built with
 * kiln_model_add, parse back into the same model; [train] keys set later
 * are in it. */
START_TEST(model_text_round_trips_from_files_and_the_api)
{
    kiln_model *m, *built, *back;
    check_ok(kiln_model_parse(mlp, "m.ini", &m));
    check_ok(kiln_model_set_train(m, "batch", "17"));
    char *text = test_alloc(8192);
    text[0] = '\0';
    check_ok(kiln_model_text(m, append, text));
    ck_assert_msg(strstr(text, "[linear]\nname = fc1\nout = 6\n"), "text: %s", text);
    ck_assert_msg(strstr(text, "batch = 17\n") && strstr(text, "optimizer = adamw\n"),
                  "text: %s", text);
    check_ok(kiln_model_parse(text, "again", &back));
    ck_assert_uint_eq(kiln_model_layer_count(back), kiln_model_layer_count(m));
    ck_assert_uint_eq(kiln_model_param_count(back), kiln_model_param_count(m));
    ck_assert_str_eq(kiln_model_train_setting(back, "batch"), "17");

    check_ok(kiln_model_create(&built));
    const char *input[] = {"shape", "5", NULL}, *fc[] = {"name", "fc1", "out", "6", NULL};
    const char *head[] = {"out", "3", "from", "fc1", NULL}, *bad[] = {"out", "3\n[x]", NULL};
    check_ok(kiln_model_add(built, "input", input));
    check_ok(kiln_model_add(built, "linear", fc));
    ck_assert_int_eq(kiln_model_add(built, "linear", bad), KILN_ERR_MODEL);
    check_ok(kiln_model_add(built, "linear", head));
    char *text2 = test_alloc(8192);
    text2[0] = '\0';
    check_ok(kiln_model_text(built, append, text2));
    ck_assert_msg(!strstr(text2, "[x]"), "a refused layer left text: %s", text2);
    ck_assert_msg(strstr(text2, "from = fc1"), "text: %s", text2);
    kiln_model_free(built);
    kiln_model_free(back);
    kiln_model_free(m);
    free(text);
    free(text2);
}
END_TEST

START_TEST(train_settings_list_every_key_with_defaults)
{
    kiln_model *m;
    check_ok(kiln_model_parse(mlp, "m.ini", &m));
    char *text = test_alloc(8192);
    text[0] = '\0';
    check_ok(kiln_model_train_settings(m, append, text));
    static const char *const want[] = {"loss = cross_entropy\n", "optimizer = adamw\n",
                                       "lr = 0.05\n", "batch = 64\n", "epochs = 10\n",
                                       "normalize = standard\n", "betas = 0.9, 0.999\n"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        ck_assert_msg(strstr(text, want[i]), "no %s in %s", want[i], text);
    ck_assert_int_eq(kiln_model_set_train(m, "frobnicate", "1"), KILN_ERR_MODEL);
    ck_assert_msg(strstr(kiln_last_error(), "m.ini [train]: unknown key frobnicate"),
                  "message: %s", kiln_last_error());
    kiln_model_free(m);
    free(text);
}
END_TEST

/* A checkpoint alone gives back the model, its weights and its
 * normalization, which the metadata keeps as a JSON array; the older
 * comma-separated form still reads. */
START_TEST(a_checkpoint_carries_its_model)
{
    kiln_model *m, *back;
    check_ok(kiln_model_parse(mlp, "m.ini", &m));
    kiln_net *net = net_of(m, 8);
    float mean[5] = {1, 2, 3, 4, 5}, std[5] = {2, 2, 2, 0.5f, 1};
    check_ok(kiln_net_set_normalization(net, mean, std, 5));
    char path[512];
    snprintf(path, sizeof path, "%s/carries.safetensors", test_tmpdir());
    check_ok(kiln_net_save(net, path));
    check_ok(kiln_model_from_checkpoint(path, &back));
    kiln_net *again = net_of(back, 4);
    check_ok(kiln_net_load(again, path));
    float x[10], y1[6], y2[6];
    rng_fill(test_rng(), x, 10, -3.0f, 3.0f);
    check_ok(kiln_net_forward(net, x, 2, y1));
    check_ok(kiln_net_forward(again, x, 2, y2));
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq_tol(y1[i], y2[i], 1e-6f);
    size_t count;
    float got_mean[5], got_std[5];
    check_ok(kiln_net_normalization(again, got_mean, got_std, 5, &count));
    ck_assert_uint_eq(count, 5);
    ck_assert_float_eq(got_std[3], 0.5f);
    ck_assert_float_eq(got_mean[4], 5.0f);
    ck_assert_int_eq(kiln_net_normalization(again, got_mean, got_std, 2, &count),
                     KILN_ERR_INVALID_ARGUMENT);
    /* the metadata as JSON: "[1, 2, 3, 4, 5]" */
    FILE *f = fopen(path, "rb");
    char *head = test_alloc(65536);
    size_t got = fread(head, 1, 65535, f);
    head[got] = '\0';
    fclose(f);
    ck_assert_msg(got > 8 && strstr(head + 8, "\"normalize_mean\":\"[1, 2, 3, 4, 5]\""),
                  "no JSON array for normalize_mean");
    kiln_net_free(again);
    kiln_model_free(back);
    char other[512];
    snprintf(other, sizeof other, "%s/no-such.safetensors", test_tmpdir());
    ck_assert_int_eq(kiln_model_from_checkpoint(other, &back), KILN_ERR_IO);
    ck_assert_int_eq(kiln_model_from_checkpoint(KILN_SOURCE_DIR "/examples/fashion_mlp.ini",
                                                &back), KILN_ERR_IO);
    kiln_net_free(net);
    kiln_model_free(m);
    free(head);
}
END_TEST

/* A frozen parameter keeps its values through steps of adamw with
 * weight decay while the others move; its gradient reads as zeros, an
 * unfrozen one's as the float64 gradient of the head. */
START_TEST(frozen_parameters_stay_and_gradients_read_back)
{
    kiln_model *m;
    check_ok(kiln_model_parse(mlp, "m.ini", &m));
    kiln_net *net = net_of(m, 8);
    float x[40], y[8], before[30], after[30], head_before[18], head_after[18], g[18];
    rng_fill(test_rng(), x, 40, -1.0f, 1.0f);
    for (int i = 0; i < 8; i++)
        y[i] = (float)(i % 3);
    check_ok(kiln_net_set_frozen(net, "fc1.weight", 1));
    ck_assert_int_eq(kiln_net_frozen(net, "fc1.weight"), 1);
    ck_assert_int_eq(kiln_net_frozen(net, "fc1.bias"), 0);
    ck_assert_int_eq(kiln_net_frozen(net, "nope"), -1);
    ck_assert_int_eq(kiln_net_set_frozen(net, "nope", 1), KILN_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(kiln_last_error(), "nope"), "message: %s", kiln_last_error());
    check_ok(kiln_net_get(net, "fc1.weight", before, 30));
    check_ok(kiln_net_get(net, "head.weight", head_before, 18));
    for (int s = 0; s < 3; s++)
        check_ok(kiln_net_train_step(net, x, y, 8, NULL));
    check_ok(kiln_net_get(net, "fc1.weight", after, 30));
    check_ok(kiln_net_get(net, "head.weight", head_after, 18));
    ck_assert_int_eq(memcmp(before, after, sizeof before), 0);
    ck_assert_int_ne(memcmp(head_before, head_after, sizeof head_before), 0);
    check_ok(kiln_net_grad(net, "fc1.weight", after, 30));
    for (int i = 0; i < 30; i++)
        ck_assert_float_eq(after[i], 0.0f);
    /* the head's bias gradient: the batch mean of softmax(z) - onehot(y),
     * from the logits before the step, in double */
    float z[24];
    check_ok(kiln_net_forward(net, x, 8, z));
    check_ok(kiln_net_train_step(net, x, y, 8, NULL));
    check_ok(kiln_net_grad(net, "head.bias", g, 3));
    double want[3] = {0, 0, 0};
    for (int i = 0; i < 8; i++) {
        double mx = fmax(z[i * 3], fmax(z[i * 3 + 1], z[i * 3 + 2])), sum = 0;
        for (int j = 0; j < 3; j++)
            sum += exp(z[i * 3 + j] - mx);
        for (int j = 0; j < 3; j++)
            want[j] += (exp(z[i * 3 + j] - mx) / sum - (j == (int)y[i])) / 8;
    }
    for (int j = 0; j < 3; j++)
        ck_assert_msg(fabs(g[j] - want[j]) < 1e-5, "head.bias gradient %d: %g, expected %g", j,
                      (double)g[j], want[j]);
    ck_assert_int_eq(kiln_net_grad(net, "head.weight", g, 5), KILN_ERR_INVALID_ARGUMENT);
    check_ok(kiln_net_set_frozen(net, "fc1.weight", 0));
    check_ok(kiln_net_train_step(net, x, y, 8, NULL));
    check_ok(kiln_net_get(net, "fc1.weight", after, 30));
    ck_assert_int_ne(memcmp(before, after, sizeof before), 0);
    kiln_net_free(net);
    kiln_model_free(m);
}
END_TEST

/* A network rebuilt elsewhere from weights and optimizer state takes the
 * same next step as the original. */
START_TEST(optimizer_state_moves_with_the_weights)
{
    kiln_model *m;
    check_ok(kiln_model_parse(mlp, "m.ini", &m));
    kiln_net *a = net_of(m, 8), *b = net_of(m, 8);
    float x[40], y[8], wa[18], wb[18];
    rng_fill(test_rng(), x, 40, -1.0f, 1.0f);
    for (int i = 0; i < 8; i++)
        y[i] = (float)(i % 3);
    for (int s = 0; s < 3; s++)
        check_ok(kiln_net_train_step(a, x, y, 8, NULL));
    size_t count, slots = kiln_net_optimizer_slots(a, &count);
    ck_assert_uint_eq(slots, 2); /* adamw */
    float *state = test_alloc(count * sizeof *state);
    test_copy_weights(a, b);
    for (int k = 0; k < 2; k++) {
        check_ok(kiln_net_get_optimizer_state(a, k, state, count));
        check_ok(kiln_net_set_optimizer_state(b, k, state, count, kiln_net_steps(a)));
    }
    ck_assert_int_eq(kiln_net_get_optimizer_state(a, 2, state, count), KILN_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kiln_net_set_optimizer_state(a, 0, state, count - 1, 1),
                     KILN_ERR_INVALID_ARGUMENT);
    check_ok(kiln_net_train_step(a, x, y, 8, NULL));
    check_ok(kiln_net_train_step(b, x, y, 8, NULL));
    check_ok(kiln_net_get(a, "head.weight", wa, 18));
    check_ok(kiln_net_get(b, "head.weight", wb, 18));
    for (int i = 0; i < 18; i++)
        ck_assert_float_eq_tol(wa[i], wb[i], 1e-6f);
    free(state);
    kiln_net_free(a);
    kiln_net_free(b);
    kiln_model_free(m);
}
END_TEST

/* kiln_net_fit says when it trains with smaller batches than [train]
 * asks (the network was made for fewer), and that validation samples
 * came as data rather than held out. */
START_TEST(fit_says_what_it_changed)
{
    kiln_model *m;
    check_ok(kiln_model_parse(mlp, "m.ini", &m)); /* [train] batch: the default 64 */
    kiln_net *net = net_of(m, 8);
    enum { N = 40 };
    float x[N * 5], y[N];
    rng_fill(test_rng(), x, N * 5, -1.0f, 1.0f);
    for (int i = 0; i < N; i++)
        y[i] = (float)(i % 3);
    kiln_data *d;
    check_ok(kiln_data_from_arrays(x, y, N, 5, 1, &d));
    kiln_train_options o;
    kiln_train_options_init(&o);
    ck_assert_int_eq(o.keep_last, 0);
    o.train_data = d;
    o.val_data = d;
    o.epochs = 1;
    char *log = test_alloc(8192);
    log[0] = '\0';
    o.log = append;
    o.log_user = log;
    kiln_train_report r;
    check_ok(kiln_net_fit(net, &o, &r));
    ck_assert_msg(strstr(log, "note: the [train] batch 64 is above the network's max_batch; "
                              "training with batches of 8"), "log: %s", log);
    ck_assert_msg(strstr(log, "(40 in the validation data)"), "log: %s", log);
    kiln_data_free(d);
    kiln_net_free(net);
    kiln_model_free(m);
    free(log);
}
END_TEST

/* Weighted cross-entropy in float64: sum w[t] l / sum w[t]. */
static double weighted_ce(const double *x, const float *t, const float *w, size_t n, size_t c,
                          double *grad)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++)
        den += w[(int)t[i]];
    for (size_t i = 0; i < n; i++) {
        const double *r = x + i * c;
        double m = r[0], s = 0;
        for (size_t j = 1; j < c; j++)
            m = fmax(m, r[j]);
        for (size_t j = 0; j < c; j++)
            s += exp(r[j] - m);
        int k = (int)t[i];
        num += w[k] * (m + log(s) - r[k]);
        for (size_t j = 0; grad && j < c; j++)
            grad[i * c + j] = w[k] * (exp(r[j] - m) / s - (j == (size_t)k)) / den;
    }
    return num / den;
}

/* op_loss_weighted against the float64 reference at awkward sizes (one
 * row, a prime, more rows than a work-group), with a class of weight 0;
 * the reference's gradient against finite differences. */
START_TEST(class_weighted_cross_entropy_matches_the_reference)
{
    static const size_t sizes[][2] = {{1, 1}, {67, 13}, {129, 3}};
    for (int s = 0; s < 3; s++) {
        size_t n = sizes[s][0], c = sizes[s][1];
        float *x = test_alloc(n * c * sizeof *x), *t = test_alloc(n * sizeof *t);
        float *w = test_alloc(c * sizeof *w), *g = test_alloc(n * c * sizeof *g), loss;
        double *xd = test_alloc(n * c * sizeof *xd), *gd = test_alloc(n * c * sizeof *gd);
        rng_fill(test_rng(), x, n * c, -4.0f, 4.0f);
        for (size_t j = 0; j < c; j++)
            w[j] = j == 1 ? 0.0f : 0.5f + (float)j;
        for (size_t i = 0; i < n; i++)
            t[i] = (float)((i * 7) % c);
        for (size_t i = 0; i < n * c; i++)
            xd[i] = x[i];
        double want = weighted_ce(xd, t, w, n, c, gd);
        for (size_t i = 0; i < n * c; i += 1 + n * c / 7) { /* the reference's own gradient */
            double h = 1e-6, keep = xd[i];
            xd[i] = keep + h;
            double up = weighted_ce(xd, t, w, n, c, NULL);
            xd[i] = keep - h;
            double down = weighted_ce(xd, t, w, n, c, NULL);
            xd[i] = keep;
            ck_assert_msg(fabs((up - down) / (2 * h) - gd[i]) < 1e-6, "finite difference %zu",
                          i);
        }
        size_t xs[2] = {n, c}, ns[1] = {n}, cs[1] = {c}, one[1] = {1};
        kiln_tensor *dx, *dt, *dw, *dl, *dg;
        check_ok(kiln_tensor_create(test_ctx(), 2, xs, &dx));
        check_ok(kiln_tensor_create(test_ctx(), 2, xs, &dg));
        check_ok(kiln_tensor_create(test_ctx(), 1, ns, &dt));
        check_ok(kiln_tensor_create(test_ctx(), 1, cs, &dw));
        check_ok(kiln_tensor_create(test_ctx(), 1, one, &dl));
        check_ok(kiln_tensor_upload(dx, x, n * c));
        check_ok(kiln_tensor_upload(dt, t, n));
        check_ok(kiln_tensor_upload(dw, w, c));
        check_ok(op_loss_weighted(test_ctx(), dx, dt, dw, dl, dg));
        check_ok(kiln_tensor_download(dl, &loss, 1));
        check_ok(kiln_tensor_download(dg, g, n * c));
        if (w[(int)t[0]] > 0 || n > 1) {
            ck_assert_msg(fabs(loss - want) < 1e-5 * (1 + fabs(want)), "%zux%zu: loss %g, "
                          "expected %g", n, c, (double)loss, want);
            for (size_t i = 0; i < n * c; i++)
                ck_assert_msg(fabs(g[i] - gd[i]) < 1e-6, "%zux%zu: gradient %zu is %g, "
                              "expected %g", n, c, i, (double)g[i], gd[i]);
        }
        kiln_tensor_free(dx), kiln_tensor_free(dg), kiln_tensor_free(dt);
        kiln_tensor_free(dw), kiln_tensor_free(dl);
        free(x), free(t), free(w), free(g), free(xd), free(gd);
    }
}
END_TEST

/* [train] class_weight trains through kiln_net_train_step as the loss
 * says: a step's loss is the weighted mean, and a count that is not the
 * model's classes is refused, leaving the settings as they were. */
START_TEST(class_weight_setting_reaches_the_step)
{
    kiln_model *m;
    check_ok(kiln_model_parse(mlp, "m.ini", &m));
    kiln_net *net = net_of(m, 8);
    float x[40], y[8], z[24], loss;
    rng_fill(test_rng(), x, 40, -1.0f, 1.0f);
    for (int i = 0; i < 8; i++)
        y[i] = (float)(i % 3);
    ck_assert_int_eq(kiln_net_configure(net, "class_weight", "1, 2"), KILN_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(kiln_last_error(), "class_weight has 2 values; the model has 3"),
                  "message: %s", kiln_last_error());
    const char *cw = kiln_model_train_setting(m, "class_weight"); /* as it was: none */
    ck_assert_msg(!cw || strcmp(cw, "none") == 0, "class_weight = %s", cw);
    check_ok(kiln_net_configure(net, "class_weight", "1, 4, 0.5"));
    check_ok(kiln_net_forward(net, x, 8, z));
    check_ok(kiln_net_train_step(net, x, y, 8, &loss));
    double xd[24];
    for (int i = 0; i < 24; i++)
        xd[i] = z[i];
    const float w[3] = {1, 4, 0.5f};
    double want = weighted_ce(xd, y, w, 8, 3, NULL);
    ck_assert_msg(fabs(loss - want) < 1e-5, "weighted step loss %g, expected %g", (double)loss,
                  want);
    ck_assert_int_eq(kiln_net_configure(net, "label_smoothing", "0.1"), KILN_ERR_MODEL);
    check_ok(kiln_net_configure(net, "class_weight", "none"));
    check_ok(kiln_net_train_step(net, x, y, 8, &loss));
    kiln_net_free(net);
    kiln_model_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("netstate");
    TCase *tc = tcase_create("netstate");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, model_text_round_trips_from_files_and_the_api);
    tcase_add_test(tc, train_settings_list_every_key_with_defaults);
    tcase_add_test(tc, a_checkpoint_carries_its_model);
    tcase_add_test(tc, frozen_parameters_stay_and_gradients_read_back);
    tcase_add_test(tc, optimizer_state_moves_with_the_weights);
    tcase_add_test(tc, fit_says_what_it_changed);
    tcase_add_test(tc, class_weighted_cross_entropy_matches_the_reference);
    tcase_add_test(tc, class_weight_setting_reaches_the_step);
    suite_add_tcase(s, tc);
    return test_run(s);
}
