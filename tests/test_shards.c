/* Datasets of .npy shards (src/data/shards.c): shards of awkward sizes
 * (1, 7 and 13 samples) read as one dataset, in the list's order and each
 * pattern's sorted order, equal to the same samples in one file: every
 * gathered sample, the seeded validation split and the normalization
 * sums, also added up from slices as ranks add theirs. Bad shards are
 * refused at load time, naming the file and what was expected. Host only. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "data/data.h"

#define FEATURES 6
#define SAMPLES 21 /* 1 + 7 + 13 */

static const size_t shard_sizes[] = {1, 7, 13};

/* Writes the values v (n of them) as a .npy of dtype descr ("<f4", "<f8",
 * "|u1" or "<i8") and shape (a Python tuple). */
static void write_npy(const char *path, const char *descr, const char *shape, const double *v,
                      size_t n)
{
    size_t size = (size_t)(descr[2] - '0');
    unsigned char *buf = test_alloc(128 + n * size);
    char dict[128];
    int len = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                       descr, shape);
    size_t head = (size_t)len + 1;
    head += (64 - (10 + head) % 64) % 64;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)head, buf[9] = (unsigned char)(head >> 8);
    memset(buf + 10, ' ', head);
    memcpy(buf + 10, dict, (size_t)len);
    buf[10 + head - 1] = '\n';
    unsigned char *p = buf + 10 + head;
    for (size_t i = 0; i < n; i++, p += size) {
        uint64_t u;
        float f = (float)v[i];
        if (descr[1] == 'f' && size == 4)
            memcpy(&u, &f, 4), u &= 0xffffffffu;
        else if (descr[1] == 'f')
            memcpy(&u, &v[i], 8);
        else
            u = (uint64_t)(int64_t)v[i];
        for (size_t b = 0; b < size; b++)
            p[b] = (unsigned char)(u >> (8 * b));
    }
    test_write_file(path, buf, 10 + head + n * size, 0);
    free(buf);
}

/* Sample s's features and label, whatever shard it is in. */
static double value(size_t s, size_t i)
{
    return (double)((s * 37 + i * 11) % 23) - 7.5;
}

static double label(size_t s)
{
    return (double)((s * 5) % 4);
}

/* The shards x_K.npy and y_K.npy (K from 0), and all.npy and all_y.npy
 * holding the same samples in one file. */
static void write_shards(void)
{
    double x[SAMPLES * FEATURES], y[SAMPLES];
    for (size_t s = 0; s < SAMPLES; s++) {
        for (size_t i = 0; i < FEATURES; i++)
            x[s * FEATURES + i] = value(s, i);
        y[s] = label(s);
    }
    size_t first = 0;
    for (size_t k = 0; k < 3; k++) {
        char name[32], shape[32];
        size_t n = shard_sizes[k];
        snprintf(name, sizeof name, "x_%zu.npy", k);
        snprintf(shape, sizeof shape, "(%zu, 2, 3)", n);
        write_npy(test_tmp_path(name), "<f4", shape, x + first * FEATURES, n * FEATURES);
        snprintf(name, sizeof name, "y_%zu.npy", k);
        snprintf(shape, sizeof shape, "(%zu,)", n);
        write_npy(test_tmp_path(name), "<i8", shape, y + first, n);
        first += n;
    }
    write_npy(test_tmp_path("all.npy"), "<f4", "(21, 2, 3)", x, SAMPLES * FEATURES);
    write_npy(test_tmp_path("all_y.npy"), "<i8", "(21,)", y, SAMPLES);
}

/* x and y (NULL: unlabelled) hold up to three %s for the directory. */
static void load_shards(const char *x, const char *y, dataset *d)
{
    char xs[1024], ys[1024];
    snprintf(xs, sizeof xs, x, test_tmpdir(), test_tmpdir(), test_tmpdir());
    snprintf(ys, sizeof ys, y ? y : "", test_tmpdir(), test_tmpdir(), test_tmpdir());
    check_ok(data_load_npy_shards(xs, y ? ys : NULL, d));
}

/* Every sample of a, in the order `order`, equals b's. */
static void check_same(const dataset *a, const dataset *b, const size_t *order)
{
    float xa[SAMPLES * FEATURES], ya[SAMPLES], xb[SAMPLES * FEATURES], yb[SAMPLES];
    ck_assert_uint_eq(a->count, b->count);
    check_ok(data_gather(a, order, 0, a->count, xa, ya));
    check_ok(data_gather(b, order, 0, b->count, xb, yb));
    ck_assert(memcmp(xa, xb, a->count * FEATURES * sizeof *xa) == 0);
    ck_assert(memcmp(ya, yb, a->count * sizeof *ya) == 0);
}

START_TEST(shards_read_as_one_dataset)
{
    write_shards();
    dataset all, d;
    check_ok(data_load_npy(test_tmp_path("all.npy"), test_tmp_path("all_y.npy"), &all));
    load_shards("%s/x_*.npy", "%s/y_*.npy", &d);
    ck_assert_uint_eq(d.count, SAMPLES);
    ck_assert_uint_eq(d.features, FEATURES);
    ck_assert_uint_eq(d.classes, all.classes);
    ck_assert_ptr_null(d.x); /* features stay on disk */
    size_t order[SAMPLES];
    for (size_t i = 0; i < SAMPLES; i++) /* a sample of each shard, across the bounds */
        order[i] = (i * 8 + 3) % SAMPLES;
    check_same(&d, &all, order);
    check_same(&d, &all, NULL);
    float x[FEATURES], y;
    check_ok(data_gather(&d, NULL, 8, 1, x, &y)); /* the first of the last shard */
    for (size_t i = 0; i < FEATURES; i++)
        ck_assert_float_eq(x[i], (float)value(8, i));
    ck_assert_float_eq(y, (float)label(8));
    data_free(&d);
    /* a list: its order is the dataset's (shard 2 first) */
    load_shards("%s/x_2.npy,%s/x_0.npy,%s/x_1.npy", "%s/y_2.npy,%s/y_0.npy,%s/y_1.npy", &d);
    check_ok(data_gather(&d, NULL, 0, 1, x, &y));
    ck_assert_float_eq(x[1], (float)value(8, 1));
    check_ok(data_gather(&d, NULL, 13, 1, x, &y));
    ck_assert_float_eq(x[1], (float)value(0, 1));
    data_free(&d);
    data_free(&all);
}
END_TEST

/* uint8 shards are scaled to [0, 1] as one uint8 file is, bit for bit. */
START_TEST(uint8_shards_scale_as_one_file)
{
    double v[SAMPLES * FEATURES], y[SAMPLES] = {0};
    for (size_t i = 0; i < SAMPLES * FEATURES; i++)
        v[i] = (double)((i * 37) % 256);
    write_npy(test_tmp_path("p_0.npy"), "|u1", "(8, 6)", v, 8 * FEATURES);
    write_npy(test_tmp_path("p_1.npy"), "|u1", "(13, 6)", v + 8 * FEATURES, 13 * FEATURES);
    write_npy(test_tmp_path("p_all.npy"), "|u1", "(21, 6)", v, SAMPLES * FEATURES);
    write_npy(test_tmp_path("p_y.npy"), "<i8", "(21,)", y, SAMPLES);
    dataset all, d;
    check_ok(data_load_npy(test_tmp_path("p_all.npy"), test_tmp_path("p_y.npy"), &all));
    load_shards("%s/p_[01].npy", NULL, &d);
    ck_assert_int_eq(d.unlabelled, 1);
    float x[SAMPLES * FEATURES], yy[SAMPLES];
    check_ok(data_gather(&d, NULL, 0, SAMPLES, x, yy));
    ck_assert(memcmp(x, all.x, sizeof x) == 0);
    data_free(&d);
    data_free(&all);
}
END_TEST

/* The seeded validation split and the normalization sums are those of
 * the same samples in one file; sums of two slices add up to the whole. */
START_TEST(shards_split_and_sum_as_one_file)
{
    write_shards();
    dataset all, val_all, d, val;
    check_ok(data_load_npy(test_tmp_path("all.npy"), test_tmp_path("all_y.npy"), &all));
    load_shards("%s/x_*.npy", "%s/y_*.npy", &d);
    check_ok(data_split(&all, 0.3, 42, &val_all));
    check_ok(data_split(&d, 0.3, 42, &val));
    check_same(&d, &all, NULL);
    check_same(&val, &val_all, NULL);
    double whole[4] = {0}, parts[4] = {0}, want[4] = {0};
    data_sums(&all, 2, want);
    data_sums(&d, 2, whole);
    check_ok(data_sums_of(&d, 0, 5, 2, parts));
    check_ok(data_sums_of(&d, 5, d.count - 5, 2, parts));
    for (int i = 0; i < 4; i++) {
        ck_assert_double_eq(whole[i], want[i]);
        ck_assert_double_eq_tol(parts[i], want[i], 1e-9 * fabs(want[i]) + 1e-12);
    }
    data_free(&val); /* the split shares the files: either may go first */
    check_same(&d, &all, NULL);
    data_free(&d);
    data_free(&val_all);
    data_free(&all);
}
END_TEST

static void refused(const char *x, const char *y, const char *want1, const char *want2)
{
    char xs[1024], ys[1024];
    snprintf(xs, sizeof xs, x, test_tmpdir(), test_tmpdir(), test_tmpdir());
    snprintf(ys, sizeof ys, y ? y : "", test_tmpdir(), test_tmpdir(), test_tmpdir());
    dataset d;
    ck_assert_int_ne(data_load_npy_shards(xs, y ? ys : NULL, &d), KILN_OK);
    ck_assert_msg(strstr(kiln_last_error(), want1) && strstr(kiln_last_error(), want2),
                  "%s: expected \"%s\" and \"%s\"", kiln_last_error(), want1, want2);
    ck_assert_ptr_null(d.shards);
    ck_assert_ptr_null(d.y);
}

START_TEST(bad_shards_are_refused_naming_the_file)
{
    write_shards();
    double v[40] = {0}, two[8] = {0};
    write_npy(test_tmp_path("short_y.npy"), "<i8", "(6,)", v, 6);
    write_npy(test_tmp_path("wide.npy"), "<f4", "(2, 3, 2)", v, 12);
    write_npy(test_tmp_path("f8.npy"), "<f8", "(2, 2, 3)", v, 12);
    write_npy(test_tmp_path("two_y.npy"), "<f4", "(4, 2)", two, 8);
    refused("%s/x_0.npy,%s/x_1.npy", "%s/y_0.npy,%s/short_y.npy", "x_1.npy has 7 samples",
            "short_y.npy has 6 labels");
    refused("%s/x_0.npy,%s/wide.npy", NULL, "wide.npy: samples of shape (3, 2) and dtype "
            "float32; expected (2, 3) and float32", "x_0.npy");
    refused("%s/x_0.npy,%s/f8.npy", NULL, "f8.npy: samples of shape (2, 3) and dtype float64; "
            "expected (2, 3) and float32", "x_0.npy");
    write_npy(test_tmp_path("two_x.npy"), "<f4", "(4, 2, 3)", v, 24);
    refused("%s/x_0.npy,%s/two_x.npy", "%s/y_0.npy,%s/two_y.npy",
            "two_y.npy: 2 targets per sample; expected 1", "y_0.npy");
    refused("%s/x_*.npy", "%s/y_0.npy", "3 features files but 1 label files", "");
    refused("%s/none_*.npy", NULL, "no file matches", "none_*.npy");
    refused("%s/x_0.npy,%s/y.csv", NULL, "y.csv is not a .npy file", "");
    refused("%s/x_0.npy,", NULL, "an empty entry", "");
    refused("%s/missing.npy", NULL, "missing.npy: cannot open", "");
    FILE *f = fopen(test_tmp_path("cut.npy"), "wb"); /* x_1.npy less its last bytes */
    unsigned char buf[4096];
    FILE *in = fopen(test_tmp_path("x_1.npy"), "rb");
    size_t n = fread(buf, 1, sizeof buf, in);
    fclose(in);
    ck_assert_uint_eq(fwrite(buf, 1, n - 5, f), n - 5);
    fclose(f);
    refused("%s/x_0.npy,%s/cut.npy", NULL, "cut.npy: shape (7, 2, 3) of '<f4' needs 168 bytes",
            "the file is truncated");
}
END_TEST

/* A shard cut short after loading fails the batch that reads past its
 * end, naming the file; the samples before it still read. */
START_TEST(a_shard_cut_after_loading_fails_its_batch)
{
    write_shards();
    dataset d;
    load_shards("%s/x_*.npy", "%s/y_*.npy", &d);
    ck_assert_int_eq(truncate(test_tmp_path("x_2.npy"), 200), 0);
    float x[SAMPLES * FEATURES], y[SAMPLES];
    check_ok(data_gather(&d, NULL, 0, 8, x, y));
    ck_assert_int_ne(data_gather(&d, NULL, 0, SAMPLES, x, y), KILN_OK);
    ck_assert_msg(strstr(kiln_last_error(), "x_2.npy: cannot read sample"), "%s",
                  kiln_last_error());
    data_free(&d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("shards");
    TCase *tc = tcase_create("shards");
    tcase_add_test(tc, shards_read_as_one_dataset);
    tcase_add_test(tc, uint8_shards_scale_as_one_file);
    tcase_add_test(tc, shards_split_and_sum_as_one_file);
    tcase_add_test(tc, bad_shards_are_refused_naming_the_file);
    tcase_add_test(tc, a_shard_cut_after_loading_fails_its_batch);
    suite_add_tcase(s, tc);
    return test_run(s);
}
