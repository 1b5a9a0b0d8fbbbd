/* The training loop: early stopping, a short run on Fashion-MNIST with an
 * accuracy floor, resume after a stop, a kill or a lost device, the same
 * seed giving the same curve, and anomalies named by layer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "net/checkpoint.h"
#include "harness.h"
#include "net/config.h"

#define SEED_LOOP_DATA_SEED 2

#ifndef KILN_SOURCE_DIR
#define KILN_SOURCE_DIR "."
#endif

START_TEST(early_stopping_on_a_scripted_sequence)
{
    static const double losses[] = {1.0, 0.8, 0.79, 0.81, 0.7, 0.7, 0.71, 0.72, 0.5};
    early_stop es;
    early_stop_init(&es, 3, 0.02);
    /* 0.79 is not 0.02 better than 0.8; 0.7 is; then three epochs without */
    static const es_verdict want[] = {ES_IMPROVED, ES_IMPROVED, ES_CONTINUE, ES_CONTINUE,
                                      ES_IMPROVED, ES_CONTINUE, ES_CONTINUE, ES_STOP};
    for (int i = 0; i < 8; i++)
        ck_assert_msg(early_stop_update(&es, losses[i]) == want[i], "epoch %d", i + 1);
    early_stop_init(&es, 0, 0);
    for (int i = 0; i < 9; i++)
        ck_assert_int_ne(early_stop_update(&es, 1.0), ES_STOP);
}
END_TEST

/* A short run on a Fashion-MNIST subset: the loss falls and the test
 * accuracy clears a floor; best.safetensors and final.safetensors exist. */
START_TEST(short_training_run_learns_fashion_mnist)
{
    kiln_model *m;
    check_ok(kiln_model_load(KILN_SOURCE_DIR "/examples/fashion_mlp.ini", &m));
    char out[512];
    snprintf(out, sizeof out, "%s", test_tmp_path("run"));
    kiln_train_options o = {.size = sizeof(kiln_train_options), .data = "fashion-mnist", .epochs = 3, .limit = 3000,
                            .out_dir = out};
    kiln_train_report r;
    check_ok(kiln_train(test_ctx(), m, &o, &r));
    printf("short run: %d epochs, test accuracy %.2f%%, %.0f samples/s\n", r.epochs_run,
           100 * r.test_accuracy, r.samples_per_second);
    ck_assert_int_eq(r.epochs_run, 3);
    ck_assert_msg(r.test_accuracy > 0.70, "test accuracy %.3f", r.test_accuracy);
    FILE *f = fopen(test_tmp_path("run/log.csv"), "r");
    ck_assert_ptr_nonnull(f);
    char line[256];
    double first = 0, last = 0;
    for (int i = 0; fgets(line, sizeof line, f); i++) {
        double loss;
        if (i > 0 && sscanf(line, "%*d,%*f,%lf", &loss) == 1) {
            if (i == 1)
                first = loss;
            last = loss;
        }
    }
    fclose(f);
    ck_assert_msg(last < first, "training loss went from %g to %g", first, last);
    ck_assert_int_eq(access(test_tmp_path("run/best.safetensors"), R_OK), 0);
    ck_assert_int_eq(access(test_tmp_path("run/final.safetensors"), R_OK), 0);
    kiln_eval_report e;
    check_ok(kiln_evaluate(test_ctx(), m, test_tmp_path("run/final.safetensors"), &o, &e));
    ck_assert_msg(fabs(e.accuracy - r.test_accuracy) < 1e-9, "eval %.4f, train's test %.4f",
                  e.accuracy, r.test_accuracy);
    kiln_free(e.confusion);
    /* predictions for test images through the network API, in batches of
     * 64 and a short last one, agree with its evaluation of the same images */
    char final[600];
    snprintf(final, sizeof final, "%s/final.safetensors", out);
    kiln_data *images;
    check_ok(kiln_data_load("fashion-mnist", "test", NULL, &images));
    kiln_net *net;
    check_ok(kiln_net_create(test_ctx(), m, 64, &net));
    check_ok(kiln_net_load(net, final));
    ck_assert_int_eq(kiln_net_head(net), KILN_HEAD_NONE); /* the MLP ends in a linear */
    enum { N = 203 };
    float *x = test_alloc(N * 784 * sizeof *x), *y = test_alloc(N * 10 * sizeof *y), labels[N];
    check_ok(kiln_data_copy_features(images, 0, N, x));
    check_ok(kiln_data_copy_targets(images, 0, N, labels));
    check_ok(kiln_net_forward(net, x, N, y));
    int right = 0;
    for (int i = 0; i < N; i++) {
        int best = 0;
        for (int j = 1; j < 10; j++)
            best = y[i * 10 + j] > y[i * 10 + best] ? j : best;
        right += best == (int)labels[i];
    }
    double loss, accuracy;
    check_ok(kiln_net_evaluate(net, x, labels, N, &loss, &accuracy));
    ck_assert_msg(fabs(accuracy - right / (double)N) < 1e-9 && accuracy > 0.6,
                  "forward gives %d of %d right, evaluate %.4f", right, N, accuracy);
    free(x);
    free(y);
    kiln_net_free(net);
    kiln_data_free(images);
    kiln_model_free(m);
}
END_TEST

/* The chapter's Example 3 (examples/seed_loop.ini) on random data: it
 * stops early, and the final weights are those of the best epoch. The
 * data seed is one for which this data overfits within 50 epochs, as the
 * chapter's does. */
START_TEST(seed_loop_stops_early_and_keeps_the_best)
{
    char path[512], out[512];
    snprintf(path, sizeof path, "%s", test_tmp_path("seed_loop.csv"));
    snprintf(out, sizeof out, "%s", test_tmp_path("seed_run"));
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "x0,x1,x2,x3,x4,x5,x6,x7,x8,x9,y\n");
    kiln_rng rng;
    rng_seed(&rng, SEED_LOOP_DATA_SEED);
    for (int r = 0; r < 250; r++)
        for (int c = 0; c < 11; c++)
            fprintf(f, "%.6f%c", rng_normal(&rng), c == 10 ? '\n' : ',');
    fclose(f);
    kiln_model *m;
    check_ok(kiln_model_load(KILN_SOURCE_DIR "/examples/seed_loop.ini", &m));
    kiln_train_options o = {.size = sizeof(kiln_train_options), .data = path, .label = "y", .out_dir = out};
    kiln_train_report r;
    check_ok(kiln_train(test_ctx(), m, &o, &r));
    printf("seed loop: best epoch %d of %d, validation loss %.4f\n", r.best_epoch,
           r.epochs_run, r.best_val_loss);
    ck_assert(r.stopped_early);
    ck_assert_int_eq(r.epochs_run, r.best_epoch + 5);
    /* the final checkpoint holds the best epoch's weights */
    char final[600], best[600];
    snprintf(final, sizeof final, "%s/final.safetensors", out);
    snprintf(best, sizeof best, "%s/best.safetensors", out);
    kiln_net *a, *b;
    check_ok(kiln_net_create(test_ctx(), m, 1, &a));
    check_ok(kiln_net_create(test_ctx(), m, 1, &b));
    check_ok(kiln_net_load(a, final));
    check_ok(kiln_net_load(b, best));
    for (size_t i = 0; i < kiln_net_param_count(a); i++) {
        kiln_param_info p;
        check_ok(kiln_net_param_info(a, i, &p));
        float *wa = test_alloc(p.numel * sizeof *wa), *wb = test_alloc(p.numel * sizeof *wb);
        check_ok(kiln_net_get(a, p.name, wa, p.numel));
        check_ok(kiln_net_get(b, p.name, wb, p.numel));
        ck_assert_msg(p.is_int64 || memcmp(wa, wb, p.numel * sizeof *wa) == 0,
                      "%s differs between final and best", p.name);
        free(wa);
        free(wb);
    }
    kiln_net_free(a);
    kiln_net_free(b);
    kiln_model_free(m);
}
END_TEST

static float *final_weights(kiln_model *m, const char *dir)
{
    pipeline *p;
    check_ok(pipeline_create(test_ctx(), m, 1, (pipe_options){.fuse = 1}, 0, &p));
    char path[600];
    snprintf(path, sizeof path, "%s/final.safetensors", dir);
    check_ok(checkpoint_load(p, path, NULL));
    float *w = test_alloc(p->params->numel * sizeof *w);
    check_ok(kiln_tensor_download(p->params, w, p->params->numel));
    pipeline_free(p);
    return w;
}

/* Stopped in the middle of an epoch and resumed, a run ends with the same
 * weights, bit for bit, as one that was never stopped. */
START_TEST(resumed_run_matches_uninterrupted_run)
{
    kiln_model *m;
    check_ok(kiln_model_load(KILN_SOURCE_DIR "/examples/fashion_mlp.ini", &m));
    char whole[512], parts[512];
    snprintf(whole, sizeof whole, "%s", test_tmp_path("whole"));
    snprintf(parts, sizeof parts, "%s", test_tmp_path("parts"));
    kiln_train_options o = {.size = sizeof(kiln_train_options), .data = "fashion-mnist", .epochs = 3, .limit = 2000, .out_dir = whole};
    kiln_train_report r;
    check_ok(kiln_train(test_ctx(), m, &o, &r));
    ck_assert(!r.interrupted);
    o.out_dir = parts;
    o.stop_after = 20; /* 15 batches an epoch: stops inside the second */
    check_ok(kiln_train(test_ctx(), m, &o, &r));
    ck_assert(r.interrupted);
    ck_assert_int_eq(r.epochs_run, 1);
    o.stop_after = 0;
    o.resume = parts;
    check_ok(kiln_train(test_ctx(), m, &o, &r));
    ck_assert(!r.interrupted);
    ck_assert_int_eq(r.epochs_run, 3);
    size_t n = 0;
    pipeline *probe;
    check_ok(pipeline_create(test_ctx(), m, 1, (pipe_options){0}, 0, &probe));
    n = probe->params->numel;
    pipeline_free(probe);
    float *a = final_weights(m, whole), *b = final_weights(m, parts);
    ck_assert_msg(memcmp(a, b, n * sizeof *a) == 0, "resumed weights differ");
    free(a);
    free(b);
    kiln_model_free(m);
}
END_TEST

/* Two runs with the same seed give the same loss curve, bit for bit. */
START_TEST(same_seed_same_curve)
{
    kiln_model *m;
    check_ok(kiln_model_load(KILN_SOURCE_DIR "/examples/fashion_mlp.ini", &m));
    char logs[2][8192];
    for (int i = 0; i < 2; i++) {
        char out[512], path[600];
        snprintf(out, sizeof out, "%s/seeded%d", test_tmpdir(), i);
        kiln_train_options o = {.size = sizeof(kiln_train_options), .data = "fashion-mnist", .epochs = 2, .limit = 1000,
                                .out_dir = out};
        kiln_train_report r;
        check_ok(kiln_train(test_ctx(), m, &o, &r));
        snprintf(path, sizeof path, "%s/log.csv", out);
        FILE *f = fopen(path, "r");
        ck_assert_ptr_nonnull(f);
        size_t len = fread(logs[i], 1, sizeof logs[i] - 1, f);
        fclose(f);
        logs[i][len] = '\0';
        for (char *line = logs[i]; (line = strchr(line, '\n')) != NULL; line++) {
            char *comma = line; /* drop the seconds column */
            while (comma > logs[i] && *comma != ',')
                comma--;
            if (*comma == ',')
                memset(comma, ' ', (size_t)(line - comma));
        }
    }
    ck_assert_str_eq(logs[0], logs[1]);
    kiln_model_free(m);
}
END_TEST

/* examples/fashion_cnn.ini runs: one short epoch, a finite loss. */
START_TEST(cnn_example_trains_briefly)
{
    kiln_model *m;
    check_ok(kiln_model_load(KILN_SOURCE_DIR "/examples/fashion_cnn.ini", &m));
    kiln_train_options o = {.size = sizeof(kiln_train_options), .data = "fashion-mnist", .epochs = 1, .limit = 256, .batch = 64};
    kiln_train_report r;
    check_ok(kiln_train(test_ctx(), m, &o, &r));
    ck_assert_int_eq(r.epochs_run, 1);
    ck_assert_msg(isfinite(r.best_val_loss) && isfinite(r.test_loss), "losses %g %g",
                  r.best_val_loss, r.test_loss);
    kiln_model_free(m);
}
END_TEST

#ifdef KILN_EXE
/* Ctrl-C during `kiln train` stops after the current batch, saves the
 * state and exits with 130; --resume then finishes the run. */
START_TEST(interrupt_saves_a_resumable_state)
{
    char out[512], log[600], state[600];
    snprintf(out, sizeof out, "%s", test_tmp_path("sigint"));
    snprintf(log, sizeof log, "%s/log.csv", out);
    snprintf(state, sizeof state, "%s/last.state.safetensors", out);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stdout))
            _exit(126);
        execl(KILN_EXE, KILN_EXE, "train", KILN_SOURCE_DIR "/examples/fashion_mlp.ini",
              "--epochs", "40", "--limit", "3000", "--out", out, (char *)NULL);
        _exit(127);
    }
    /* wait for the first epoch's line, then interrupt the second epoch */
    for (int i = 0; i < 600; i++) {
        FILE *f = fopen(log, "r");
        int lines = 0;
        for (int c; f && (c = fgetc(f)) != EOF;)
            lines += c == '\n';
        if (f)
            fclose(f);
        if (lines >= 2)
            break;
        struct timespec pause = {0, 100000000};
        nanosleep(&pause, NULL);
    }
    kill(pid, SIGINT);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 130, "exit status %d",
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    ck_assert_int_eq(access(state, R_OK), 0);
    kiln_model *m;
    check_ok(kiln_model_load(KILN_SOURCE_DIR "/examples/fashion_mlp.ini", &m));
    kiln_train_options o = {.size = sizeof(kiln_train_options), .data = "fashion-mnist", .epochs = 2, .limit = 3000,
                            .out_dir = out, .resume = out};
    kiln_train_report r;
    check_ok(kiln_train(test_ctx(), m, &o, &r));
    ck_assert(!r.interrupted);
    kiln_model_free(m);
}
END_TEST
/* A device that stops answering in the middle of the second epoch: training
 * fails with the OpenCL error named, the state saved after the first epoch
 * stays whole, and a resumed run on a working device finishes from it. */
START_TEST(lost_device_keeps_the_last_good_state)
{
    kiln_model *m;
    check_ok(kiln_model_load(KILN_SOURCE_DIR "/examples/fashion_mlp.ini", &m));
    char out[512];
    snprintf(out, sizeof out, "%s", test_tmp_path("lost-device"));
    kiln_ctx *ctx;
    check_ok(kiln_ctx_create(NULL, &ctx));
    kiln_train_options o = {.size = sizeof(kiln_train_options), .data = "fashion-mnist", .epochs = 3, .limit = 1000, .out_dir = out};
    kiln_train_report r;
    check_ok(kiln_train(ctx, m, &o, &r)); /* counts the launches of three epochs */
    uint64_t per_run = kiln_ctx_launches(ctx);
    kiln_ctx_free(ctx);
    check_ok(kiln_ctx_create(NULL, &ctx));
    ctx->fail_launch = per_run / 2; /* inside the second of three epochs */
    char fresh[600];
    snprintf(fresh, sizeof fresh, "%s-2", out);
    o.out_dir = fresh;
    ck_assert_int_eq(kiln_train(ctx, m, &o, &r), KILN_ERR_OPENCL);
    ck_assert_msg(strstr(kiln_last_error(), "CL_OUT_OF_RESOURCES") &&
                      strstr(kiln_last_error(), "clEnqueueNDRangeKernel"),
                  "%s", kiln_last_error());
    kiln_ctx_free(ctx);
    o.resume = fresh;
    check_ok(kiln_train(test_ctx(), m, &o, &r));
    ck_assert_int_eq(r.epochs_run, 3);
    kiln_model_free(m);
}
END_TEST

/* Starts `kiln train` on the fashion MLP into out (resuming when resume),
 * output discarded. */
static pid_t start_training(const char *out, int resume)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
            _exit(126);
        execl(KILN_EXE, KILN_EXE, "train", KILN_SOURCE_DIR "/examples/fashion_mlp.ini",
              "--epochs", "12", "--limit", "400", "--batch", "64", "--out", out,
              resume ? "--resume" : (char *)NULL, out, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Every checkpoint in dir that exists loads whole. */
static void check_loadable(kiln_model *m, const char *dir)
{
    static const char *const files[] = {"best", "last", "final"};
    pipeline *p;
    check_ok(pipeline_create(test_ctx(), m, 1, (pipe_options){.fuse = 1}, 0, &p));
    char path[700];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s.safetensors", dir, files[i]);
        if (access(path, F_OK) == 0)
            ck_assert_msg(checkpoint_load(p, path, NULL) == KILN_OK, "torn checkpoint: %s",
                          kiln_last_error());
    }
    pipeline_free(p);
}

/* SIGKILL at random moments, many times (20 where a run takes under 5 s),
 * while `kiln train` writes a checkpoint every few batches: every file left is whole, and resuming
 * from whatever state survived ends with the weights, bit for bit, of a
 * run that was never killed. */
START_TEST(killed_training_resumes_to_the_same_weights)
{
    char ref[512], out[512], state[700];
    snprintf(ref, sizeof ref, "%s", test_tmp_path("kill-reference"));
    snprintf(out, sizeof out, "%s", test_tmp_path("kill-victim"));
    snprintf(state, sizeof state, "%s/last.state.safetensors", out);
    int status;
    /* the first run compiles what the caches lack; the span of a run is
     * timed on a second one, into the same directory, with warm caches */
    double started = 0;
    for (int run = 0; run < 2; run++) {
        started = ref_seconds();
        pid_t first = start_training(ref, 0);
        ck_assert_int_eq(waitpid(first, &status, 0), first);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "reference run failed");
    }
    pid_t pid;
    /* kills land anywhere in a run's span; a slow device (rusticl takes ten
     * times PoCL's time) gets fewer of them */
    double span = ref_seconds() - started;
    int planned = span < 5.0 ? 20 : 3;
    kiln_model *m;
    check_ok(kiln_model_load(KILN_SOURCE_DIR "/examples/fashion_mlp.ini", &m));
    int kills = 0, finished = 0;
    for (int attempt = 0; attempt < 60 && !finished; attempt++) {
        pid = start_training(out, access(state, R_OK) == 0);
        /* the last attempts run to the end */
        long ms = kills < planned ? (long)rng_uniform(test_rng(), 50.0, 1000.0 * span) : 0;
        struct timespec pause = {ms / 1000, (ms % 1000) * 1000000};
        if (ms > 0) {
            nanosleep(&pause, NULL);
            kills += kill(pid, SIGKILL) == 0;
        }
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        finished = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        ck_assert_msg(finished || WIFSIGNALED(status), "kiln train exited with %d",
                      WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        check_loadable(m, out);
    }
    ck_assert(finished);
    pipeline *probe;
    check_ok(pipeline_create(test_ctx(), m, 1, (pipe_options){0}, 0, &probe));
    size_t n = probe->params->numel;
    pipeline_free(probe);
    float *a = final_weights(m, ref), *b = final_weights(m, out);
    ck_assert_msg(memcmp(a, b, n * sizeof *a) == 0, "weights after %d kills differ", kills);
    printf("kill test: %d kills survived; the resumed run ends with the reference weights\n",
           kills);
    free(a);
    free(b);
    kiln_model_free(m);
}
END_TEST
#endif

/* A learning rate of 100 blows the network up: the loss check stops it
 * with a clear message, and --detect-anomaly names the first layer. */
START_TEST(anomalies_stop_training_with_the_layer)
{
    kiln_model *m;
    check_ok(kiln_model_parse("[input]\nshape = 784\n[linear]\nout = 32\n[relu]\n[linear]\n"
                              "out = 10\n[train]\noptimizer = sgd\nlr = 100\nbatch = 64\n",
                              "explode.ini", &m));
    kiln_train_options o = {.size = sizeof(kiln_train_options), .data = "fashion-mnist", .epochs = 3, .limit = 2000};
    kiln_train_report r;
    ck_assert_int_eq(kiln_train(test_ctx(), m, &o, &r), KILN_ERR_NUMERIC);
    ck_assert_msg(strstr(kiln_last_error(), "the loss is") &&
                      strstr(kiln_last_error(), "--detect-anomaly"),
                  "%s", kiln_last_error());
    o.detect_anomaly = 1;
    ck_assert_int_eq(kiln_train(test_ctx(), m, &o, &r), KILN_ERR_NUMERIC);
    ck_assert_msg(strstr(kiln_last_error(), "epoch 1, batch ") &&
                      strstr(kiln_last_error(), "layer ") &&
                      strstr(kiln_last_error(), "NaN or Inf"),
                  "%s", kiln_last_error());
    printf("anomaly: %s\n", kiln_last_error());
    kiln_model_free(m);
}
END_TEST


int main(void)
{
    Suite *s = suite_create("fit");
    TCase *tc = tcase_create("fit");
    tcase_add_test(tc, early_stopping_on_a_scripted_sequence);
    tcase_add_test(tc, short_training_run_learns_fashion_mnist);
    tcase_add_test(tc, seed_loop_stops_early_and_keeps_the_best);
    tcase_add_test(tc, resumed_run_matches_uninterrupted_run);
    tcase_add_test(tc, same_seed_same_curve);
    tcase_add_test(tc, cnn_example_trains_briefly);
    tcase_add_test(tc, anomalies_stop_training_with_the_layer);
#ifdef KILN_EXE
    tcase_add_test(tc, interrupt_saves_a_resumable_state);
    tcase_add_test(tc, killed_training_resumes_to_the_same_weights);
    tcase_add_test(tc, lost_device_keeps_the_last_good_state);
#endif
    suite_add_tcase(s, tc);
    return test_run(s);
}
