/* Datasets (IDX and CSV, good and broken), safetensors checkpoints (round
 * trip and every kind of bad file), early stopping, and a short training
 * run on Fashion-MNIST with an accuracy floor. */
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

static const char *tmp_path(const char *name)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", test_tmpdir(), name);
    return path;
}

static void write_file(const char *path, const void *data, size_t n, int gz)
{
    if (gz) {
        gzFile f = gzopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(gzwrite(f, data, (unsigned)n), (int)n);
        gzclose(f);
        return;
    }
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* An IDX file of unsigned bytes: header for dims, then n bytes. */
static size_t idx_bytes(unsigned char *buf, int rank, const uint32_t *dims, size_t n,
                        unsigned char fill)
{
    unsigned char *p = buf;
    *p++ = 0;
    *p++ = 0;
    *p++ = 0x08;
    *p++ = (unsigned char)rank;
    for (int i = 0; i < rank; i++) {
        *p++ = (unsigned char)(dims[i] >> 24);
        *p++ = (unsigned char)(dims[i] >> 16);
        *p++ = (unsigned char)(dims[i] >> 8);
        *p++ = (unsigned char)dims[i];
    }
    for (size_t i = 0; i < n; i++)
        *p++ = (unsigned char)(fill + i);
    return (size_t)(p - buf);
}

START_TEST(idx_files_load_plain_or_gzipped)
{
    unsigned char img[256], lab[64];
    uint32_t di[3] = {3, 2, 4}, dl[1] = {3};
    size_t ni = idx_bytes(img, 3, di, 24, 10), nl = idx_bytes(lab, 1, dl, 3, 0);
    for (int gz = 0; gz < 2; gz++) {
        const char *ip = gz ? "img.gz" : "img";
        char images[512], labels[512];
        snprintf(images, sizeof images, "%s", tmp_path(ip));
        snprintf(labels, sizeof labels, "%s", tmp_path(gz ? "lab.gz" : "lab"));
        write_file(images, img, ni, gz);
        write_file(labels, lab, nl, gz);
        dataset d;
        check_ok(data_load_idx(images, labels, &d));
        ck_assert_uint_eq(d.count, 3);
        ck_assert_uint_eq(d.features, 8);
        ck_assert_uint_eq(d.classes, 3);
        ck_assert_float_eq_tol(d.x[9], (10 + 9) / 255.0f, 1e-7f);
        ck_assert_float_eq(d.y[2], 2.0f);
        data_free(&d);
    }
}
END_TEST

/* Broken IDX files: each a clear error naming the file. */
START_TEST(broken_idx_files_are_refused)
{
    unsigned char img[256], lab[64], bad[256];
    uint32_t di[2] = {3, 4}, dl[1] = {3}, dl2[1] = {2}, dl2d[2] = {3, 1};
    size_t ni = idx_bytes(img, 2, di, 12, 0), nl = idx_bytes(lab, 1, dl, 3, 0);
    char images[512];
    snprintf(images, sizeof images, "%s", tmp_path("good-img"));
    write_file(images, img, ni, 0);
    char labels[512];
    snprintf(labels, sizeof labels, "%s", tmp_path("bad-lab"));
    dataset d;
    /* wrong magic */
    memcpy(bad, lab, nl);
    bad[2] = 0x42;
    write_file(labels, bad, nl, 0);
    ck_assert_int_eq(data_load_idx(images, labels, &d), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "not an IDX file"), "%s", kiln_last_error());
    /* labels of rank 2 */
    size_t n2 = idx_bytes(bad, 2, dl2d, 3, 0);
    write_file(labels, bad, n2, 0);
    ck_assert_int_eq(data_load_idx(images, labels, &d), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "rank 1"), "%s", kiln_last_error());
    /* counts that disagree */
    n2 = idx_bytes(bad, 1, dl2, 2, 0);
    write_file(labels, bad, n2, 0);
    ck_assert_int_eq(data_load_idx(images, labels, &d), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "has 3 samples but"), "%s", kiln_last_error());
    /* truncated, plain and gzipped */
    for (int gz = 0; gz < 2; gz++) {
        write_file(labels, lab, nl - 1, gz);
        ck_assert_int_eq(data_load_idx(images, labels, &d), KILN_ERR_IO);
        ck_assert_msg(strstr(kiln_last_error(), "ends inside"), "%s", kiln_last_error());
    }
    /* longer than announced */
    memcpy(bad, lab, nl);
    bad[nl] = 7;
    write_file(labels, bad, nl + 1, 0);
    ck_assert_int_eq(data_load_idx(images, labels, &d), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "longer than its IDX header"), "%s",
                  kiln_last_error());
    /* a gzip stream cut short */
    char cut[512];
    snprintf(cut, sizeof cut, "%s", tmp_path("cut.gz"));
    gzFile f = gzopen(cut, "wb");
    gzwrite(f, img, (unsigned)ni);
    gzclose(f);
    FILE *raw = fopen(cut, "rb");
    unsigned char buf[512];
    size_t got = fread(buf, 1, sizeof buf, raw);
    fclose(raw);
    write_file(cut, buf, got / 2, 0);
    ck_assert_int_eq(data_load_idx(cut, labels, &d), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "cut.gz"), "%s", kiln_last_error());
    ck_assert_int_eq(data_load_idx("/nonexistent/images", labels, &d), KILN_ERR_IO);
}
END_TEST

static kiln_status csv(const char *text, const char *label, int header, dataset *d)
{
    write_file(tmp_path("d.csv"), text, strlen(text), 0);
    return data_load_csv(tmp_path("d.csv"), label, header, d);
}

START_TEST(csv_files_load_and_refuse_bad_cells)
{
    dataset d;
    check_ok(csv("a,label,b\n1,0,2\n3.5,2,-4\n\n5,1,6e1\n", "label", 1, &d));
    ck_assert_uint_eq(d.count, 3);
    ck_assert_uint_eq(d.features, 2);
    ck_assert_uint_eq(d.classes, 3);
    ck_assert_float_eq(d.x[2], 3.5f);
    ck_assert_float_eq(d.x[5], 60.0f);
    ck_assert_float_eq(d.y[1], 2.0f);
    data_free(&d);
    check_ok(csv("0.5,1\n0.25,2\n", "0", 0, &d));
    ck_assert_uint_eq(d.classes, 0); /* 0.5 and 0.25 are targets, not classes */
    data_free(&d);
    static const struct {
        const char *text, *label, *message;
    } bad[] = {
        {"a,label\n1,0\n2,1,3\n", "label", "d.csv:3: 3 columns; the first row has 2"},
        {"a,label\n1,0\nx,1\n", "label", "d.csv:3: column 1 is \"x\"; expected a finite"},
        {"a,label\n1,0\nnan,1\n", "label", "d.csv:3: column 1 is \"nan\""},
        {"a,label\n1,0\n1e999,1\n", "label", "d.csv:3: column 1 is \"1e999\""},
        {"", "label", "d.csv: no data rows"},
        {"a,label\n", "label", "d.csv: no data rows"},
        {"a,b\n1,0\n", "label", "d.csv: no column named \"label\""},
        {"a,b\n1,0\n", "5", "d.csv: label column 5 does not exist"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(csv(bad[i].text, bad[i].label, 1, &d), KILN_ERR_IO);
        ck_assert_msg(strstr(kiln_last_error(), bad[i].message), "case %zu: %s", i,
                      kiln_last_error());
    }
}
END_TEST

/* ---- checkpoints ---- */

static pipeline *small_pipeline(kiln_model **m, const char *text)
{
    check_ok(kiln_model_parse(text, "ckpt.ini", m));
    pipeline *p;
    check_ok(pipeline_create(test_ctx(), *m, 2, (pipe_options){.fuse = 1, .plan = 1}, 9, &p));
    return p;
}

static const char net_a[] = "[input]\nshape = 4\n[linear]\nout = 3\n[batchnorm]\n[relu]\n"
                            "[linear]\nout = 2\nname = head\n";

static float *download_flat(pipeline *p)
{
    float *v = test_alloc(p->params->numel * sizeof *v);
    check_ok(kiln_tensor_download(p->params, v, p->params->numel));
    return v;
}

START_TEST(checkpoint_round_trip)
{
    kiln_model *m;
    pipeline *a = small_pipeline(&m, net_a), *b;
    check_ok(pipeline_create(test_ctx(), m, 2, (pipe_options){.fuse = 1}, 77, &b));
    float stats[3] = {0.5f, -1.0f, 2.0f};
    check_ok(kiln_tensor_upload(a->steps[1].buffer[0], stats, 3));
    checkpoint_meta meta = {0};
    checkpoint_meta_set(&meta, "epoch", "7");
    char path[512];
    snprintf(path, sizeof path, "%s", tmp_path("model.safetensors"));
    check_ok(checkpoint_save(a, path, &meta, 12));
    checkpoint_meta back = {0};
    check_ok(checkpoint_load(b, path, &back));
    ck_assert_str_eq(checkpoint_meta_get(&back, "epoch"), "7");
    float *x = download_flat(a), *y = download_flat(b);
    ck_assert(memcmp(x, y, a->params->numel * sizeof *x) == 0);
    float got[3];
    check_ok(kiln_tensor_download(b->steps[1].buffer[0], got, 3));
    ck_assert(memcmp(got, stats, sizeof got) == 0);
    /* names as PyTorch's state_dict: index, or name = */
    FILE *f = fopen(path, "rb");
    char header[2048] = {0};
    ck_assert_uint_gt(fread(header, 1, sizeof header - 1, f), 8);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(header + 8, "\"0.weight\""));
    ck_assert_ptr_nonnull(strstr(header + 8, "\"1.running_var\""));
    ck_assert_ptr_nonnull(strstr(header + 8, "\"1.num_batches_tracked\""));
    ck_assert_ptr_nonnull(strstr(header + 8, "\"head.bias\""));
    free(x);
    free(y);
    pipeline_free(a);
    pipeline_free(b);
    kiln_model_free(m);
}
END_TEST

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    rewind(f);
    unsigned char *d = test_alloc(*n);
    ck_assert_uint_eq(fread(d, 1, *n, f), *n);
    fclose(f);
    return d;
}

/* Two tensors whose bytes overlap are refused, whatever their names. */
START_TEST(overlapping_tensors_are_refused)
{
    static const char header[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                                 "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
    unsigned char file[8 + sizeof header + 16] = {0};
    size_t hlen = sizeof header - 1;
    file[0] = (unsigned char)hlen;
    memcpy(file + 8, header, hlen);
    checkpoint_entry e[2] = {{.name = "a", .shape = shape_make(1, 2, 0, 0, 0), .bytes = 8},
                             {.name = "b", .shape = shape_make(1, 2, 0, 0, 0), .bytes = 8}};
    size_t begins[2];
    ck_assert_int_eq(checkpoint_parse("o.safetensors", file, 8 + hlen + 16, e, 2, begins, NULL),
                     KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "overlap"), "%s", kiln_last_error());
}
END_TEST

START_TEST(bad_checkpoints_are_refused_with_reasons)
{
    kiln_model *m, *other;
    pipeline *p = small_pipeline(&m, net_a);
    pipeline *q = small_pipeline(&other, "[input]\nshape = 4\n[linear]\nout = 5\n[batchnorm]\n"
                                         "[relu]\n[linear]\nout = 2\nname = head\n");
    char good[512], bad[512];
    snprintf(good, sizeof good, "%s", tmp_path("good.safetensors"));
    snprintf(bad, sizeof bad, "%s", tmp_path("bad.safetensors"));
    checkpoint_meta meta = {0};
    check_ok(checkpoint_save(p, good, &meta, 0));
    size_t n;
    unsigned char *d = read_all(good, &n);
    /* another model: the first tensor whose shape differs is named */
    ck_assert_int_eq(checkpoint_load(q, good, NULL), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "tensor 0.weight has shape [3,4]; the model expects "
                                            "5x4"), "%s", kiln_last_error());
    /* truncated in the data, in the header, before the header */
    size_t cuts[] = {n - 5, 40, 5};
    for (int i = 0; i < 3; i++) {
        write_file(bad, d, cuts[i], 0);
        ck_assert_int_eq(checkpoint_load(p, bad, NULL), KILN_ERR_IO);
    }
    /* header length larger than the file */
    unsigned char *e = test_alloc(n);
    memcpy(e, d, n);
    e[6] = 0x7f;
    write_file(bad, e, n, 0);
    ck_assert_int_eq(checkpoint_load(p, bad, NULL), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "runs past the end"), "%s", kiln_last_error());
    /* invalid JSON */
    memcpy(e, d, n);
    e[8] = '[';
    write_file(bad, e, n, 0);
    ck_assert_int_eq(checkpoint_load(p, bad, NULL), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "not a JSON object"), "%s", kiln_last_error());
    /* unknown dtype, out-of-range offsets */
    static const struct {
        const char *from, *to, *message;
    } edits[] = {
        {"\"F32\"", "\"F64\"", "has dtype F64; expected F32"},
        {"\"data_offsets\":[0,", "\"data_offsets\":[9,", "data_offsets"},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        memcpy(e, d, n);
        char *at = strstr((char *)e + 8, edits[i].from);
        ck_assert_ptr_nonnull(at);
        ck_assert_uint_eq(strlen(edits[i].from), strlen(edits[i].to));
        memcpy(at, edits[i].to, strlen(edits[i].to));
        write_file(bad, e, n, 0);
        ck_assert_int_eq(checkpoint_load(p, bad, NULL), KILN_ERR_IO);
        ck_assert_msg(strstr(kiln_last_error(), edits[i].message), "edit %zu: %s", i,
                      kiln_last_error());
    }
    /* a name the model does not have */
    memcpy(e, d, n);
    char *at = strstr((char *)e + 8, "\"head.bias\"");
    memcpy(at, "\"head.bian\"", 11);
    write_file(bad, e, n, 0);
    ck_assert_int_eq(checkpoint_load(p, bad, NULL), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "tensor head.bias is missing"), "%s",
                  kiln_last_error());
    free(d);
    free(e);
    pipeline_free(p);
    pipeline_free(q);
    kiln_model_free(m);
    kiln_model_free(other);
}
END_TEST

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
    snprintf(out, sizeof out, "%s", tmp_path("run"));
    kiln_train_options o = {.size = sizeof(kiln_train_options), .data = "fashion-mnist", .epochs = 3, .limit = 3000,
                            .out_dir = out};
    kiln_train_report r;
    check_ok(kiln_train(test_ctx(), m, &o, &r));
    printf("short run: %d epochs, test accuracy %.2f%%, %.0f samples/s\n", r.epochs_run,
           100 * r.test_accuracy, r.samples_per_second);
    ck_assert_int_eq(r.epochs_run, 3);
    ck_assert_msg(r.test_accuracy > 0.70, "test accuracy %.3f", r.test_accuracy);
    FILE *f = fopen(tmp_path("run/log.csv"), "r");
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
    ck_assert_int_eq(access(tmp_path("run/best.safetensors"), R_OK), 0);
    ck_assert_int_eq(access(tmp_path("run/final.safetensors"), R_OK), 0);
    kiln_eval_report e;
    check_ok(kiln_evaluate(test_ctx(), m, tmp_path("run/final.safetensors"), &o, &e));
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
    snprintf(path, sizeof path, "%s", tmp_path("seed_loop.csv"));
    snprintf(out, sizeof out, "%s", tmp_path("seed_run"));
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "x0,x1,x2,x3,x4,x5,x6,x7,x8,x9,y\n");
    kiln_rng rng;
    kiln_rng_seed(&rng, SEED_LOOP_DATA_SEED);
    for (int r = 0; r < 250; r++)
        for (int c = 0; c < 11; c++)
            fprintf(f, "%.6f%c", kiln_rng_normal(&rng), c == 10 ? '\n' : ',');
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
    snprintf(whole, sizeof whole, "%s", tmp_path("whole"));
    snprintf(parts, sizeof parts, "%s", tmp_path("parts"));
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
    snprintf(out, sizeof out, "%s", tmp_path("sigint"));
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
    snprintf(out, sizeof out, "%s", tmp_path("lost-device"));
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
    snprintf(ref, sizeof ref, "%s", tmp_path("kill-reference"));
    snprintf(out, sizeof out, "%s", tmp_path("kill-victim"));
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
        long ms = kills < planned ? (long)kiln_rng_uniform(test_rng(), 50.0, 1000.0 * span) : 0;
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
    Suite *s = suite_create("train");
    TCase *tc = tcase_create("train");
    tcase_add_test(tc, idx_files_load_plain_or_gzipped);
    tcase_add_test(tc, broken_idx_files_are_refused);
    tcase_add_test(tc, csv_files_load_and_refuse_bad_cells);
    tcase_add_test(tc, checkpoint_round_trip);
    tcase_add_test(tc, bad_checkpoints_are_refused_with_reasons);
    tcase_add_test(tc, overlapping_tensors_are_refused);
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
