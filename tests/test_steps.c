/* Token models trained by steps on a text (src/fit/steps.c): a run that is
 * stopped and resumed ends with the same bits as one that is not, the
 * schedule counts steps, log.csv has a row per evaluation, checkpoints keep
 * the vocabulary, and every bad corpus or vocabulary is refused with a
 * message that says what and where. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "net/checkpoint.h"

#ifndef KILN_SOURCE_DIR
#define KILN_SOURCE_DIR "."
#endif

#define MODEL KILN_SOURCE_DIR "/tests/data/gpt_sonnets.ini"
#define TEXT KILN_SOURCE_DIR "/tests/data/sonnets.txt"
#define SONNET_CHARS "\n !',-.:;?ABCDFHILMNOPRSTUVWXYabcdefghijklmnopqrstuvwxyz"


static kiln_model *model(void)
{
    kiln_model *m;
    check_ok(kiln_model_load(MODEL, &m));
    return m;
}

/* Trains a fresh network of the test model; the caller frees it. */
static kiln_status fit(kiln_model *m, kiln_train_options *o, kiln_train_report *rep,
                       kiln_net **net)
{
    check_ok(kiln_net_create(test_ctx(), m, 0, net));
    return kiln_net_fit(*net, o, rep);
}

static float *weights(kiln_net *net, size_t *n)
{
    kiln_param_info info;
    check_ok(kiln_net_param_info(net, 0, &info)); /* transformer.wte.weight: the tied table */
    float *w = test_alloc(info.numel * sizeof *w);
    check_ok(kiln_net_get(net, info.name, w, info.numel));
    *n = info.numel;
    return w;
}

static void expect_error(kiln_status st, kiln_status want, const char *needle)
{
    ck_assert_msg(st == want, "expected %s, got %s: %s", kiln_status_str(want),
                  kiln_status_str(st), kiln_last_error());
    ck_assert_msg(strstr(kiln_last_error(), needle), "\"%s\" not in: %s", needle,
                  kiln_last_error());
}

START_TEST(stopped_and_resumed_equals_straight_through)
{
    kiln_model *m = model();
    kiln_train_options o;
    kiln_train_report rep;
    kiln_net *a, *b;
    kiln_train_options_init(&o);
    o.data = TEXT;
    o.steps = 30;
    o.out_dir = test_tmp_path("straight");
    check_ok(fit(m, &o, &rep, &a));
    ck_assert_uint_eq(rep.steps_run, 30);
    ck_assert_int_eq(rep.epochs_run, 2); /* evaluations at steps 20 and 30 */
    ck_assert(rep.tokens_per_second > 0);
    ck_assert(rep.best_val_loss < log(56.0)); /* it learned something */

    o.out_dir = test_tmp_path("stopped");
    o.stop_after = 13; /* between two evaluations */
    check_ok(fit(m, &o, &rep, &b));
    ck_assert(rep.interrupted);
    ck_assert_uint_eq(rep.steps_run, 13);
    kiln_net_free(b);
    o.stop_after = 0;
    o.resume = test_tmp_path("stopped");
    check_ok(fit(m, &o, &rep, &b));
    ck_assert(!rep.interrupted);
    ck_assert_uint_eq(rep.steps_run, 30);
    ck_assert_uint_eq(kiln_net_steps(b), 30);
    size_t na, nb;
    float *wa = weights(a, &na), *wb = weights(b, &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert_msg(memcmp(wa, wb, na * sizeof *wa) == 0, "resumed weights differ");
    free(wa);
    free(wb);

    /* a row per evaluation, by step; the same rows as the straight run */
    char path[600], line[256];
    snprintf(path, sizeof path, "%s/log.csv", test_tmp_path("stopped"));
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    ck_assert_str_eq(line, "step,lr,train_loss,train_accuracy,val_loss,val_accuracy,val_mae,"
                           "val_r2,seconds\n");
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    ck_assert_int_eq(atoi(line), 20);
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    ck_assert_int_eq(atoi(line), 30);
    ck_assert_ptr_null(fgets(line, sizeof line, f));
    fclose(f);

    /* the checkpoints keep the text's characters */
    checkpoint_meta meta;
    snprintf(path, sizeof path, "%s/final.safetensors", test_tmp_path("stopped"));
    check_ok(checkpoint_read_meta(path, &meta));
    ck_assert_str_eq(checkpoint_meta_get(&meta, "vocab"), SONNET_CHARS);
    checkpoint_meta_free(&meta);
    ck_assert_str_eq(kiln_net_vocab(b), SONNET_CHARS);
    kiln_net_free(a);
    kiln_net_free(b);
    kiln_model_free(m);
}
END_TEST

typedef struct {
    double lr[64];
    int n;
} lr_log;

static int log_lr(void *user, const kiln_progress *p)
{
    lr_log *l = user;
    if (l->n < 64)
        l->lr[l->n++] = p->lr;
    return 0;
}

START_TEST(the_schedule_counts_steps)
{
    kiln_model *m = model();
    kiln_train_options o;
    kiln_train_report rep;
    kiln_net *net;
    lr_log l = {.n = 0};
    kiln_train_options_init(&o);
    o.data = TEXT;
    o.steps = 40;
    o.on_step = log_lr;
    o.user = &l;
    check_ok(fit(m, &o, &rep, &net));
    ck_assert_int_eq(l.n, 40);
    /* warmup_cosine, warmup 5, lr 3e-3 -> eta_min 3e-4 over t_max = steps = 40 */
    for (int t = 0; t < 40; t++) {
        double want = t < 5 ? 3e-3 * (t + 1) / 5
                            : 3e-4 + (3e-3 - 3e-4) * (1 + cos(3.14159265358979323846 * (t - 5) / 35.0)) / 2;
        ck_assert_msg(fabs(l.lr[t] - want) < 1e-9 * 3e-3 + 1e-7 * want,
                      "step %d: lr %g, expected %g", t, l.lr[t], want);
    }
    kiln_net_free(net);
    kiln_model_free(m);
}
END_TEST

START_TEST(bad_corpora_are_refused)
{
    kiln_model *m = model();
    kiln_train_options o;
    kiln_train_report rep;
    kiln_net *net;
    kiln_train_options_init(&o);
    o.steps = 2;

    o.data = test_tmp_path("empty.txt");
    test_write_file(o.data, "", 0, 0);
    expect_error(fit(m, &o, &rep, &net), KILN_ERR_IO, "the corpus is empty");
    kiln_net_free(net);

    char text[120];
    for (int i = 0; i < 120; i++)
        text[i] = "abcdefg "[i % 8];
    o.data = test_tmp_path("short.txt");
    test_write_file(o.data, text, 120, 0); /* 12 characters validate: fewer than block + 1 = 17 */
    expect_error(fit(m, &o, &rep, &net), KILN_ERR_INVALID_ARGUMENT,
                 "(validation split): 12 tokens, shorter than one window of block + 1 = 17");
    kiln_net_free(net);

    text[50] = (char)0xE9; /* Latin-1 'é' */
    o.data = test_tmp_path("latin1.txt");
    test_write_file(o.data, text, 120, 0);
    expect_error(fit(m, &o, &rep, &net), KILN_ERR_IO, "byte offset 50 is not UTF-8");
    kiln_net_free(net);

    unsigned char ids[2 * 400];
    for (int i = 0; i < 400; i++)
        ids[2 * i] = (unsigned char)(i % 50), ids[2 * i + 1] = 0;
    ids[2 * 123] = 56; /* one id at the vocabulary's end */
    test_write_file(test_tmp_path("train.bin"), ids, sizeof ids, 0);
    test_write_file(test_tmp_path("val.bin"), ids, sizeof ids, 0);
    o.data = test_tmp_path("train.bin");
    /* mapped, not scanned: the first window that reads it names the file and offset */
    expect_error(fit(m, &o, &rep, &net), KILN_ERR_INVALID_ARGUMENT,
                 ".bin: the token id at byte offset 246 is 56, at or beyond the model's "
                 "vocabulary of 56");
    kiln_net_free(net);

    o.data = TEXT;
    o.epochs = 3;
    expect_error(fit(m, &o, &rep, &net), KILN_ERR_INVALID_ARGUMENT,
                 "token models train by steps");
    kiln_net_free(net);
    kiln_model_free(m);
}
END_TEST

START_TEST(another_vocabulary_is_refused)
{
    kiln_model *m = model();
    kiln_train_options o;
    kiln_train_report rep;
    kiln_net *net, *other;
    kiln_train_options_init(&o);
    o.data = TEXT;
    o.steps = 20;
    o.out_dir = test_tmp_path("vocab-run");
    check_ok(fit(m, &o, &rep, &net));
    kiln_net_free(net);

    /* 56 other characters: the same shapes, other meanings */
    char text[2000];
    const char *chars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrst";
    for (int i = 0; i < 2000; i++)
        text[i] = chars[(i * 7) % 56];
    o.data = test_tmp_path("other.txt");
    test_write_file(o.data, text, sizeof text, 0);
    o.resume = test_tmp_path("vocab-run");
    o.out_dir = test_tmp_path("vocab-run-2");
    expect_error(fit(m, &o, &rep, &net), KILN_ERR_INVALID_ARGUMENT, "another vocabulary");
    kiln_net_free(net);

    /* kiln_net_load: a network of another vocabulary refuses the file and keeps its weights */
    char path[600];
    snprintf(path, sizeof path, "%s/final.safetensors", test_tmp_path("vocab-run"));
    check_ok(kiln_net_create(test_ctx(), m, 0, &other));
    check_ok(kiln_net_set_vocab(other, chars));
    size_t n0, n1;
    float *before = weights(other, &n0);
    expect_error(kiln_net_load(other, path), KILN_ERR_INVALID_ARGUMENT,
                 "final.safetensors: another vocabulary: 56 characters");
    float *after = weights(other, &n1);
    ck_assert_int_eq(memcmp(before, after, n0 * sizeof *before), 0);
    free(before);
    free(after);
    /* a network without a vocabulary takes the file's */
    check_ok(kiln_net_set_vocab(other, NULL));
    check_ok(kiln_net_load(other, path));
    ck_assert_str_eq(kiln_net_vocab(other), SONNET_CHARS);
    expect_error(kiln_net_set_vocab(other, "ba"), KILN_ERR_IO, "not distinct characters in order");
    kiln_net_free(other);

    /* kiln_evaluate scores the whole validation split, and refuses the other text */
    kiln_eval_report ev;
    kiln_train_options_init(&o);
    o.data = TEXT;
    check_ok(kiln_evaluate(test_ctx(), m, path, &o, &ev));
    ck_assert_uint_eq(ev.samples, (5604 - (size_t)(5604 * 0.9) - 1) / 16);
    ck_assert(ev.loss > 0 && ev.loss < log(56.0));
    o.data = test_tmp_path("other.txt");
    expect_error(kiln_evaluate(test_ctx(), m, path, &o, &ev), KILN_ERR_INVALID_ARGUMENT,
                 "another vocabulary");
    kiln_model_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("steps");
    TCase *tc = tcase_create("steps");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, stopped_and_resumed_equals_straight_through);
    tcase_add_test(tc, the_schedule_counts_steps);
    tcase_add_test(tc, bad_corpora_are_refused);
    tcase_add_test(tc, another_vocabulary_is_refused);
    suite_add_tcase(s, tc);
    return test_run(s);
}
