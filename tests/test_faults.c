/* Faults a careful user meets: steps that fail, damaged checkpoints and
 * training states, quoted and unusual CSV, full disks and NULL outputs.
 * Each test checks that the call fails with a message naming what the
 * user must know, and that a failed call changes nothing. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"

/* No batchnorm: every value a step changes is a weight or optimizer state. */
static const char plain[] = "[input]\nshape = 7\n[linear]\nout = 13\n[relu]\n[linear]\nout = 3\n"
                            "[train]\noptimizer = adam\nlr = 0.01\nseed = 5\n";

static kiln_model *model(const char *text)
{
    kiln_model *m;
    check_ok(kiln_model_parse(text, "net.ini", &m));
    return m;
}

static kiln_net *net_of(kiln_model *m, size_t max_batch)
{
    kiln_net *net;
    check_ok(kiln_net_create(test_ctx(), m, max_batch, &net));
    return net;
}


static void data(float *x, float *y, size_t n)
{
    rng_fill(test_rng(), x, n * 7, -1.0f, 1.0f);
    for (size_t i = 0; i < n; i++)
        y[i] = (float)(i % 3);
}

static int same_weights(kiln_net *a, kiln_net *b)
{
    size_t na, nb;
    float *wa = test_net_weights(a, &na), *wb = test_net_weights(b, &nb);
    int same = na == nb && memcmp(wa, wb, na * sizeof *wa) == 0;
    free(wa);
    free(wb);
    return same;
}

/* ---- a failed step changes nothing ------------------------------------------- */

/* A step whose loss is inf reports it and leaves the weights and Adam's
 * state (moments and step count) as they were: a good step after it gives
 * the bits of a network that never saw the bad batch. */
START_TEST(a_failed_train_step_changes_no_weight)
{
    kiln_model *m = model(plain);
    kiln_net *a = net_of(m, 8), *b = net_of(m, 8);
    float x[8 * 7], bad[8 * 7], y[8], l;
    data(x, y, 8);
    memcpy(bad, x, sizeof x);
    for (int i = 0; i < 8 * 7; i++)
        bad[i] = 3e38f; /* finite, but the layers' sums overflow */
    check_ok(kiln_net_train_step(a, x, y, 8, &l));
    check_ok(kiln_net_train_step(b, x, y, 8, &l));
    ck_assert_int_eq(kiln_net_train_step(a, bad, y, 8, &l), KILN_ERR_NUMERIC);
    ck_assert_msg(strstr(kiln_last_error(), "not updated"), "%s", kiln_last_error());
    ck_assert(!isfinite(l));
    ck_assert_uint_eq(kiln_net_steps(a), 1);
    ck_assert_msg(same_weights(a, b), "the failed step changed the weights");
    check_ok(kiln_net_set_detect_anomaly(a, 1)); /* fails in forward, before any update */
    ck_assert_int_eq(kiln_net_train_step(a, bad, y, 8, &l), KILN_ERR_NUMERIC);
    ck_assert_msg(strstr(kiln_last_error(), "NaN or Inf"), "%s", kiln_last_error());
    check_ok(kiln_net_set_detect_anomaly(a, 0));
    ck_assert_msg(same_weights(a, b), "the step failed by anomaly detection changed the weights");
    check_ok(kiln_net_train_step(a, x, y, 8, &l));
    check_ok(kiln_net_train_step(b, x, y, 8, &l));
    ck_assert_msg(same_weights(a, b), "the failed step changed the optimizer's state");
    kiln_net_free(a);
    kiln_net_free(b);
    kiln_model_free(m);
}
END_TEST

/* Weights after each step, as on_step sees them. */
typedef struct {
    kiln_net *net;
    float *last;
    size_t n, steps;
} step_watch;

static int keep_weights(void *user, const kiln_progress *p)
{
    step_watch *w = user;
    (void)p;
    free(w->last);
    w->last = test_net_weights(w->net, &w->n);
    w->steps++;
    return 0;
}

/* kiln_net_fit with a learning rate that makes the loss overflow within a
 * few steps: it fails naming the batch, and the network keeps the weights
 * of the last step that succeeded. */
START_TEST(a_failed_fit_step_changes_no_weight)
{
    enum { N = 64 };
    kiln_model *m = model("[input]\nshape = 7\n[linear]\nout = 5\n[linear]\nout = 1\n"
                          "[train]\nloss = mse\noptimizer = sgd\nlr = 100\nepochs = 50\n"
                          "batch = 8\nval = 0\n");
    kiln_net *net = net_of(m, 8);
    float x[N * 7], y[N];
    rng_fill(test_rng(), x, N * 7, -1.0f, 1.0f);
    rng_fill(test_rng(), y, N, -1e15f, 1e15f);
    kiln_data *d;
    check_ok(kiln_data_from_arrays(x, y, N, 7, 1, &d));
    kiln_train_options o;
    kiln_train_options_init(&o);
    o.train_data = d;
    step_watch w = {.net = net};
    o.on_step = keep_weights;
    o.user = &w;
    kiln_train_report r;
    ck_assert_int_eq(kiln_net_fit(net, &o, &r), KILN_ERR_NUMERIC);
    ck_assert_msg(strstr(kiln_last_error(), "the loss is"), "%s", kiln_last_error());
    ck_assert_msg(w.steps > 0 && w.last, "no step succeeded before the loss overflowed");
    ck_assert_uint_eq(kiln_net_steps(net), w.steps);
    size_t n;
    float *now = test_net_weights(net, &n);
    ck_assert_uint_eq(n, w.n);
    ck_assert_msg(memcmp(now, w.last, n * sizeof *now) == 0,
                  "the failed step changed the weights");
    free(now);
    free(w.last);
    kiln_data_free(d);
    kiln_net_free(net);
    kiln_model_free(m);
}
END_TEST

/* ---- files written whole --------------------------------------------------- */

static kiln_status half_then_fail(void *user, FILE *f)
{
    (void)user;
    fputs("half a fi", f);
    return error_set(KILN_ERR_INVALID_ARGUMENT, "given up");
}

static kiln_status write_text(void *user, FILE *f)
{
    fputs(user, f);
    return KILN_OK;
}

static int temporaries_in(const char *dir)
{
    DIR *d = opendir(dir);
    int found = 0;
    for (struct dirent *e; d && (e = readdir(d)) != NULL;)
        found |= strstr(e->d_name, ".tmp.") != NULL;
    if (d)
        closedir(d);
    return found;
}

/* A writer that gives up leaves the old file and no temporary; one that
 * succeeds replaces it. */
START_TEST(a_file_is_written_whole_or_not_at_all)
{
    char dir[512], path[600], text[64] = "";
    snprintf(dir, sizeof dir, "%s/whole", test_tmpdir());
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/out.txt", dir);
    check_ok(kiln_write_file_atomic(path, write_text, "old\n"));
    ck_assert_int_eq(kiln_write_file_atomic(path, half_then_fail, NULL),
                     KILN_ERR_INVALID_ARGUMENT);
    ck_assert_str_eq(kiln_last_error(), "given up");
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(text, sizeof text, f));
    fclose(f);
    ck_assert_str_eq(text, "old\n");
    ck_assert_msg(!temporaries_in(dir), "a temporary file was left in %s", dir);
    check_ok(kiln_write_file_atomic(path, write_text, "new\n"));
    f = fopen(path, "r");
    ck_assert_ptr_nonnull(fgets(text, sizeof text, f));
    fclose(f);
    ck_assert_str_eq(text, "new\n");
    ck_assert_int_eq(kiln_write_file_atomic(dir, write_text, "x"), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "is a directory"), "%s", kiln_last_error());
    ck_assert_int_eq(kiln_write_file_atomic(NULL, write_text, "x"), KILN_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(kiln_last_error(), "path is NULL"), "%s", kiln_last_error());
}
END_TEST

/* A device that is full (/dev/full takes no byte): the error names the
 * path and the system's reason. */
START_TEST(a_full_disk_names_the_path_and_the_reason)
{
    kiln_model *m = model(plain);
    kiln_net *net = net_of(m, 4);
    ck_assert_int_eq(kiln_net_save(net, "/dev/full"), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "/dev/full") &&
                      strstr(kiln_last_error(), "No space left on device"),
                  "%s", kiln_last_error());
    ck_assert_int_eq(kiln_write_file_atomic("/dev/full", write_text, "x"), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "/dev/full: cannot write (No space left on device)"),
                  "%s", kiln_last_error());
    kiln_net_free(net);
    kiln_model_free(m);
}
END_TEST

/* ---- loading is all or nothing ------------------------------------------- */

static unsigned char *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *data = test_alloc(*size + 1);
    ck_assert_uint_eq(fread(data, 1, *size, f), *size);
    fclose(f);
    return data;
}

/* Writes a copy of the safetensors file src to dst with its JSON header
 * changed by edit (which returns a new, malloc'd header). */
static void edit_header(const char *src, const char *dst, char *(*edit)(const char *header))
{
    size_t size;
    unsigned char *data = read_file(src, &size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | data[i];
    char *header = test_alloc(hlen + 1);
    memcpy(header, data + 8, hlen);
    header[hlen] = '\0';
    char *changed = edit(header);
    size_t len = strlen(changed), padded = (len + 7) / 8 * 8;
    FILE *f = fopen(dst, "wb");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 8; i++)
        fputc((int)((padded >> (8 * i)) & 0xff), f);
    fputs(changed, f);
    for (size_t i = len; i < padded; i++)
        fputc(' ', f);
    fwrite(data + 8 + hlen, 1, size - 8 - hlen, f);
    fclose(f);
    free(changed);
    free(header);
    free(data);
}

/* header with the value of a __metadata__ key (a JSON string) replaced by raw. */
static char *with_meta(const char *header, const char *key, const char *raw)
{
    char quoted[64];
    snprintf(quoted, sizeof quoted, "\"%s\":\"", key);
    const char *at = strstr(header, quoted);
    ck_assert_msg(at, "no %s in %s", key, header);
    const char *value = at + strlen(quoted) - 1, *end = strchr(value + 1, '"') + 1;
    char *out = test_alloc(strlen(header) + strlen(raw) + 1);
    sprintf(out, "%.*s%s%s", (int)(value - header), header, raw, end);
    return out;
}

static char *zero_std(const char *h) { return with_meta(h, "normalize_std", "\"0\""); }
static char *number_mean(const char *h) { return with_meta(h, "normalize_mean", "5"); }
static char *array_mean(const char *h) { return with_meta(h, "normalize_mean", "[0.5]"); }

/* The first tensor's entry again, before __metadata__. */
static char *first_twice(const char *h)
{
    const char *end = strstr(h, "},") + 1, *meta = strstr(h, "\"__metadata__\"");
    size_t entry = (size_t)(end - (h + 1));
    char *out = test_alloc(strlen(h) + entry + 2);
    sprintf(out, "%.*s%.*s,%s", (int)(meta - h), h, (int)entry, h + 1, meta);
    return out;
}

/* A checkpoint whose stored normalization is invalid, whose header names a
 * tensor twice or whose __metadata__ holds a number or an array is refused
 * before anything loads: the network keeps its weights and its scaling. */
START_TEST(a_bad_checkpoint_changes_nothing)
{
    kiln_model *m = model(plain);
    kiln_net *saved = net_of(m, 4), *net = net_of(m, 4);
    float mean = 0.25f, std = 2.0f, x[4 * 7], y[4], before[4 * 3], after[4 * 3], l;
    data(x, y, 4);
    check_ok(kiln_net_set_normalization(saved, &mean, &std, 1));
    check_ok(kiln_net_train_step(net, x, y, 4, &l)); /* weights other than saved's */
    char good[512], bad[540];
    snprintf(good, sizeof good, "%s/good.safetensors", test_tmpdir());
    snprintf(bad, sizeof bad, "%s.bad", good);
    check_ok(kiln_net_save(saved, good));
    check_ok(kiln_net_forward(net, x, 4, before));
    static const struct {
        char *(*edit)(const char *);
        const char *says;
    } cases[] = {{zero_std, "the stored normalization: value 0: mean 0.25, std 0"},
                 {first_twice, "the header names 0.weight twice"},
                 {number_mean, "__metadata__ value normalize_mean is not a string"},
                 {array_mean, "__metadata__ value normalize_mean is not a string"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        edit_header(good, bad, cases[i].edit);
        ck_assert_int_eq(kiln_net_load(net, bad), KILN_ERR_IO);
        ck_assert_msg(strstr(kiln_last_error(), bad) && strstr(kiln_last_error(), cases[i].says),
                      "case %zu: %s", i, kiln_last_error());
        check_ok(kiln_net_forward(net, x, 4, after));
        ck_assert_msg(memcmp(before, after, sizeof after) == 0,
                      "case %zu: a refused checkpoint changed the network", i);
    }
    check_ok(kiln_net_load(net, good));
    ck_assert_msg(same_weights(net, saved), "the good checkpoint did not load");
    kiln_net_free(saved);
    kiln_net_free(net);
    kiln_model_free(m);
}
END_TEST

/* A checkpoint cut short is named as one, not as another model's. */
START_TEST(a_truncated_checkpoint_says_so)
{
    kiln_model *m = model(plain);
    kiln_net *net = net_of(m, 4);
    char path[512];
    snprintf(path, sizeof path, "%s/cut.safetensors", test_tmpdir());
    check_ok(kiln_net_save(net, path));
    size_t size;
    unsigned char *data = read_file(path, &size);
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, size - 100, f);
    fclose(f);
    ck_assert_int_eq(kiln_net_load(net, path), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "cut short") &&
                      !strstr(kiln_last_error(), "another model"),
                  "%s", kiln_last_error());
    free(data);
    kiln_net_free(net);
    kiln_model_free(m);
}
END_TEST

/* ---- resume trusts nothing ------------------------------------------------ */

enum { RN = 64 };
static const char resumable[] = "[input]\nshape = 7\n[linear]\nout = 13\n[relu]\n[linear]\n"
                                "out = 3\n[train]\noptimizer = adam\nlr = 0.01\nseed = 5\n"
                                "val = 0\nbatch = 8\nepochs = 2\n";

typedef struct {
    char text[8192];
    double seconds; /* of the epochs on_epoch saw */
    int bad_loss;   /* an epoch's loss was not finite */
} run_log;

static void log_text(void *user, const char *text)
{
    run_log *l = user;
    size_t used = strlen(l->text);
    snprintf(l->text + used, sizeof l->text - used, "%s", text);
}

static int on_epoch(void *user, const kiln_progress *p)
{
    run_log *l = user;
    l->seconds += p->seconds;
    l->bad_loss |= !isfinite(p->loss);
    return 0;
}

/* A run of the resumable model on data d into dir, resumed from resume
 * (or not), with batch, limit and stop_after as given (0: the defaults). */
static kiln_status fit_run(kiln_data *d, const char *dir, const char *resume, int batch,
                           size_t limit, size_t stop_after, int epochs, run_log *log,
                           kiln_train_report *r)
{
    kiln_model *m = model(resumable);
    kiln_net *net = net_of(m, 16);
    kiln_train_options o;
    kiln_train_options_init(&o);
    o.train_data = d;
    o.out_dir = dir;
    o.resume = resume;
    o.batch = batch;
    o.limit = limit;
    o.stop_after = stop_after;
    o.epochs = epochs;
    o.log = log_text;
    o.log_user = log;
    o.on_epoch = on_epoch;
    o.user = log;
    memset(log, 0, sizeof *log);
    kiln_status st = kiln_net_fit(net, &o, r);
    kiln_net_free(net);
    kiln_model_free(m);
    return st;
}

static kiln_data *resume_data(int seed)
{
    float x[RN * 7], y[RN];
    kiln_rng rng;
    rng_seed(&rng, (uint64_t)seed);
    rng_fill(&rng, x, RN * 7, -1.0f, 1.0f);
    for (int i = 0; i < RN; i++)
        y[i] = (float)(i % 3);
    kiln_data *d;
    check_ok(kiln_data_from_arrays(x, y, RN, 7, 1, &d));
    return d;
}

/* A state saved after 3 of an epoch's 8 batches goes on from batch 4 with
 * the same settings; with another batch size, --limit or data it says so
 * and trains the epoch from its first batch, and no epoch's loss is NaN. */
START_TEST(a_mid_epoch_state_of_other_settings_restarts_the_epoch)
{
    kiln_data *d = resume_data(1), *other = resume_data(2);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/mid", test_tmpdir());
    run_log log;
    kiln_train_report r;
    static const struct {
        int batch;
        size_t limit;
        int other_data;
        const char *says;
    } cases[] = {{0, 0, 0, "resuming after epoch 0 (mid-epoch)"},
                 {16, 0, 0, "its batch size was 8, now 16"},
                 {0, 40, 0, "number of training samples (--limit, val) was 64, now 40"},
                 {0, 0, 1, "the training data differ"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        check_ok(fit_run(d, dir, NULL, 0, 0, 3, 0, &log, &r));
        ck_assert_msg(r.interrupted && r.epochs_run == 0, "case %zu: not stopped mid-epoch", i);
        check_ok(fit_run(cases[i].other_data ? other : d, dir, dir, cases[i].batch,
                         cases[i].limit, 0, 0, &log, &r));
        ck_assert_msg(strstr(log.text, cases[i].says), "case %zu: %s", i, log.text);
        ck_assert_msg(i == 0 || strstr(log.text, "epoch 1 starts again from its first batch"),
                      "case %zu: %s", i, log.text);
        ck_assert_msg(r.epochs_run == 2 && !log.bad_loss, "case %zu: %d epochs, %s", i,
                      r.epochs_run, log.text);
    }
    kiln_data_free(d);
    kiln_data_free(other);
}
END_TEST

static char *step_minus_one(const char *h) { return with_meta(h, "step", "\"-1\""); }
static char *batch_minus_one(const char *h) { return with_meta(h, "batch", "\"-1\""); }
static char *lr_nan(const char *h) { return with_meta(h, "lr", "\"nan\""); }
static char *counter_half(const char *h) { return with_meta(h, "counter", "\"2.5\""); }
static char *epoch_text(const char *h) { return with_meta(h, "epoch", "\"one\""); }
static char *batch_far(const char *h) { return with_meta(h, "batch", "\"8\""); }

/* Every number of last.state is range-checked: a damaged one is refused,
 * naming the key, before training starts; a truncated file says so. */
START_TEST(a_damaged_training_state_is_refused)
{
    kiln_data *d = resume_data(1);
    char dir[512], state[600], saved[620];
    snprintf(dir, sizeof dir, "%s/damaged", test_tmpdir());
    snprintf(state, sizeof state, "%s/last.state.safetensors", dir);
    snprintf(saved, sizeof saved, "%s.good", state);
    run_log log;
    kiln_train_report r;
    check_ok(fit_run(d, dir, NULL, 0, 0, 3, 0, &log, &r));
    ck_assert_int_eq(rename(state, saved), 0);
    static const struct {
        char *(*edit)(const char *);
        const char *says;
    } cases[] = {{step_minus_one, "step is \"-1\"; expected a whole number from 0"},
                 {batch_minus_one, "batch is \"-1\"; expected a whole number from 0"},
                 {lr_nan, "lr is \"nan\"; expected a number from 0"},
                 {counter_half, "counter is \"2.5\"; expected a whole number"},
                 {epoch_text, "epoch is \"one\""},
                 {batch_far, "batch 8 is past the epoch's 8 batches"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        edit_header(saved, state, cases[i].edit);
        ck_assert_int_eq(fit_run(d, dir, dir, 0, 0, 0, 0, &log, &r), KILN_ERR_IO);
        ck_assert_msg(strstr(kiln_last_error(), state) && strstr(kiln_last_error(), cases[i].says),
                      "case %zu: %s", i, kiln_last_error());
    }
    size_t size;
    unsigned char *data = read_file(saved, &size);
    FILE *f = fopen(state, "wb");
    fwrite(data, 1, size - 50, f);
    fclose(f);
    ck_assert_int_eq(fit_run(d, dir, dir, 0, 0, 0, 0, &log, &r), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "cut short") &&
                      !strstr(kiln_last_error(), "another model"),
                  "%s", kiln_last_error());
    free(data);
    kiln_data_free(d);
}
END_TEST

/* After --resume the report's samples/s counts the samples trained in
 * this call over the time of its epochs, not the epochs before it. */
START_TEST(samples_per_second_after_resume_counts_this_run)
{
    kiln_data *d = resume_data(1);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/speed", test_tmpdir());
    run_log log;
    kiln_train_report r;
    check_ok(fit_run(d, dir, NULL, 0, 0, 0, 2, &log, &r));
    check_ok(fit_run(d, dir, dir, 0, 0, 0, 3, &log, &r));
    ck_assert_int_eq(r.epochs_run, 3);
    double samples = r.samples_per_second * log.seconds;
    ck_assert_msg(fabs(samples - RN) < 1e-6 * RN, "samples/s x the epoch's time = %g; %d trained",
                  samples, RN);
    kiln_data_free(d);
}
END_TEST

/* ---- data ------------------------------------------------------------------ */

/* A bad label in the validation data names the validation split, not the
 * training data (both are "arrays of N samples"). */
START_TEST(a_bad_validation_label_names_the_split)
{
    kiln_data *d = resume_data(1), *val;
    float x[10 * 7], y[10];
    data(x, y, 10);
    y[4] = 7;
    check_ok(kiln_data_from_arrays(x, y, 10, 7, 1, &val));
    kiln_model *m = model(resumable);
    kiln_net *net = net_of(m, 16);
    kiln_train_options o;
    kiln_train_options_init(&o);
    o.train_data = d;
    o.val_data = val;
    kiln_train_report r;
    ck_assert_int_eq(kiln_net_fit(net, &o, &r), KILN_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(kiln_last_error(), "arrays of 10 samples (validation): label of sample "
                                            "4 is 7"),
                  "%s", kiln_last_error());
    kiln_net_free(net);
    kiln_model_free(m);
    kiln_data_free(d);
    kiln_data_free(val);
}
END_TEST

/* A last batch of one sample cannot train batchnorm: the run is refused
 * before its first step, naming the batch and the fixes, which work. */
START_TEST(a_last_batch_of_one_with_batchnorm_names_the_fix)
{
    float x[17 * 7], y[17];
    data(x, y, 17);
    kiln_data *d;
    check_ok(kiln_data_from_arrays(x, y, 17, 7, 1, &d));
    kiln_model *m = model("[input]\nshape = 7\n[linear]\nout = 5\n[batchnorm]\n[relu]\n"
                          "[linear]\nout = 3\n[train]\nbatch = 16\nval = 0\nepochs = 1\n");
    kiln_net *net = net_of(m, 16);
    kiln_train_options o;
    kiln_train_options_init(&o);
    o.train_data = d;
    kiln_train_report r;
    ck_assert_int_eq(kiln_net_fit(net, &o, &r), KILN_ERR_SHAPE);
    ck_assert_msg(strstr(kiln_last_error(), "the last batch of each epoch holds 1 sample (17 "
                                            "samples in batches of 16)") &&
                      strstr(kiln_last_error(), "batch 15") &&
                      strstr(kiln_last_error(), "limit 16"),
                  "%s", kiln_last_error());
    ck_assert_uint_eq(kiln_net_steps(net), 0);
    o.batch = 15;
    check_ok(kiln_net_fit(net, &o, &r));
    o.batch = 0;
    o.limit = 16;
    check_ok(kiln_net_fit(net, &o, &r));
    kiln_net_free(net);
    kiln_model_free(m);
    kiln_data_free(d);
}
END_TEST

/* ---- NULL outputs ---------------------------------------------------------- */

#define CHECK_NULL(call, says)                                                              \
    do {                                                                                    \
        ck_assert_int_eq((call), KILN_ERR_INVALID_ARGUMENT);                                \
        ck_assert_msg(strcmp(kiln_last_error(), says) == 0, "%s: %s", #call,                \
                      kiln_last_error());                                                   \
    } while (0)

/* A NULL output pointer is named as the header names it, never taken for
 * a bad index or written through. */
START_TEST(null_outputs_are_named)
{
    kiln_model *m = model(plain);
    kiln_net *net = net_of(m, 4);
    kiln_device_info *devices;
    size_t count;
    float x[7] = {0}, y[1] = {0};
    kiln_data *d;
    check_ok(kiln_data_from_arrays(x, y, 1, 7, 1, &d));
    kiln_tensor *t;
    check_ok(kiln_tensor_create(test_ctx(), 1, (size_t[]){3}, &t));
    kiln_train_options o;
    kiln_train_options_init(&o);
    o.train_data = d;
    CHECK_NULL(kiln_devices(NULL, &count), "kiln_devices: out is NULL");
    CHECK_NULL(kiln_devices(&devices, NULL), "kiln_devices: count is NULL");
    CHECK_NULL(kiln_tensor_create(test_ctx(), 1, (size_t[]){3}, NULL),
               "kiln_tensor_create: out is NULL");
    CHECK_NULL(kiln_tensor_download(t, NULL, 3), "kiln_tensor_download: dst is NULL");
    CHECK_NULL(kiln_tensor_upload(t, NULL, 3), "kiln_tensor_upload: src is NULL");
    CHECK_NULL(kiln_model_parse(plain, "net.ini", NULL), "kiln_model_parse: out is NULL");
    CHECK_NULL(kiln_model_load("net.ini", NULL), "kiln_model_load: out is NULL");
    CHECK_NULL(kiln_net_create(test_ctx(), m, 4, NULL), "kiln_net_create: out is NULL");
    CHECK_NULL(kiln_net_param_info(net, 0, NULL), "kiln_net_param_info: out is NULL");
    CHECK_NULL(kiln_net_get(net, "0.bias", NULL, 13), "kiln_net_get: dst is NULL");
    CHECK_NULL(kiln_net_set(net, "0.bias", NULL, 13), "kiln_net_set: src is NULL");
    CHECK_NULL(kiln_net_forward(net, x, 1, NULL), "kiln_net_forward: y is NULL");
    CHECK_NULL(kiln_net_forward(net, NULL, 1, y), "kiln_net_forward: x is NULL");
    CHECK_NULL(kiln_data_from_arrays(x, y, 1, 7, 1, NULL), "kiln_data_from_arrays: out is NULL");
    CHECK_NULL(kiln_data_load("x.csv", NULL, NULL, NULL), "kiln_data_load: out is NULL");
    CHECK_NULL(kiln_data_load_npz("x.npz", NULL, NULL, NULL), "kiln_data_load_npz: out is NULL");
    CHECK_NULL(kiln_data_copy_features(d, 0, 1, NULL), "kiln_data_copy_features: dst is NULL");
    CHECK_NULL(kiln_data_copy_targets(d, 0, 1, NULL), "kiln_data_copy_targets: dst is NULL");
    CHECK_NULL(kiln_train(test_ctx(), m, &o, NULL), "kiln_train: report is NULL");
    CHECK_NULL(kiln_net_fit(net, &o, NULL), "kiln_net_fit: report is NULL");
    CHECK_NULL(kiln_evaluate(test_ctx(), m, "c.safetensors", &o, NULL),
               "kiln_evaluate: report is NULL");
    kiln_tensor_free(t);
    kiln_data_free(d);
    kiln_net_free(net);
    kiln_model_free(m);
}
END_TEST

/* A bad training label is named by its place in the caller's data, not
 * by its place after the validation split's shuffle (which the seed
 * changes). */
START_TEST(a_bad_training_label_is_named_by_its_place_in_the_data)
{
    float x[RN * 7], y[RN];
    data(x, y, RN);
    y[37] = 7;
    kiln_data *d;
    check_ok(kiln_data_from_arrays(x, y, RN, 7, 1, &d));
    for (int seed = 1; seed <= 2; seed++) {
        char text[512];
        snprintf(text, sizeof text, "%.*sval = 0.25\nseed = %d\n", (int)strlen(plain) - 9, plain,
                 seed);
        kiln_model *m = model(text);
        kiln_net *net = net_of(m, 16);
        kiln_train_options o;
        kiln_train_options_init(&o);
        o.train_data = d;
        kiln_train_report r;
        ck_assert_int_eq(kiln_net_fit(net, &o, &r), KILN_ERR_INVALID_ARGUMENT);
        ck_assert_msg(strstr(kiln_last_error(), "arrays of 64 samples: label of sample 37 is 7"),
                      "seed %d: %s", seed, kiln_last_error());
        kiln_net_free(net);
        kiln_model_free(m);
    }
    kiln_data_free(d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("faults");
    TCase *tc = tcase_create("faults");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, a_failed_train_step_changes_no_weight);
    tcase_add_test(tc, a_failed_fit_step_changes_no_weight);
    tcase_add_test(tc, a_file_is_written_whole_or_not_at_all);
    tcase_add_test(tc, a_full_disk_names_the_path_and_the_reason);
    tcase_add_test(tc, a_bad_checkpoint_changes_nothing);
    tcase_add_test(tc, a_truncated_checkpoint_says_so);
    tcase_add_test(tc, a_mid_epoch_state_of_other_settings_restarts_the_epoch);
    tcase_add_test(tc, a_damaged_training_state_is_refused);
    tcase_add_test(tc, samples_per_second_after_resume_counts_this_run);
    tcase_add_test(tc, a_bad_validation_label_names_the_split);
    tcase_add_test(tc, a_bad_training_label_is_named_by_its_place_in_the_data);
    tcase_add_test(tc, a_last_batch_of_one_with_batchnorm_names_the_fix);
    tcase_add_test(tc, null_outputs_are_named);
    suite_add_tcase(s, tc);
    return test_run(s);
}
