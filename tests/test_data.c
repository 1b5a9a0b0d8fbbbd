/* Datasets from files: IDX (plain and gzipped, and broken ones) and CSV
 * (good and bad cells). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "data/data.h"
#include "harness.h"

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
        snprintf(images, sizeof images, "%s", test_tmp_path(ip));
        snprintf(labels, sizeof labels, "%s", test_tmp_path(gz ? "lab.gz" : "lab"));
        test_write_file(images, img, ni, gz);
        test_write_file(labels, lab, nl, gz);
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

/* Values wider than a byte (int16, big-endian) load as they are, unscaled. */
START_TEST(idx_files_of_wider_values_load_unscaled)
{
    static const unsigned char img[] = {0, 0, 0x0B, 2, 0, 0, 0, 2, 0, 0, 0, 2,
                                        0, 1, 0xFF, 0xFE, 0x01, 0x2C, 0, 7};
    char path[512];
    snprintf(path, sizeof path, "%s", test_tmp_path("wide.idx"));
    test_write_file(path, img, sizeof img, 0);
    dataset d;
    check_ok(data_load_idx_images(path, &d));
    static const float want[4] = {1, -2, 300, 7};
    for (int i = 0; i < 4; i++)
        ck_assert_float_eq(d.x[i], want[i]);
    data_free(&d);
}
END_TEST

/* The normalization's sums over a range of samples, globally, a channel
 * at a time (10 values each) and a value at a time, against float64 sums
 * taken in the same order: the same bits. */
START_TEST(normalization_sums_by_group)
{
    enum { N = 9, IN = 30 };
    float x[N * IN];
    rng_fill(test_rng(), x, N * IN, -3, 3);
    dataset d;
    memset(&d, 0, sizeof d);
    d.x = x;
    d.count = N;
    d.features = IN;
    static const size_t groups[] = {1, 3, IN};
    for (int c = 0; c < 3; c++) {
        size_t gs = groups[c], per = IN / gs;
        double got[2 * IN] = {0}, want[2 * IN] = {0};
        check_ok(data_sums_of(&d, 2, N - 3, gs, got));
        for (size_t s = 2; s < N - 1; s++)
            for (size_t i = 0; i < IN; i++) {
                double v = x[s * IN + i];
                want[i / per] += v;
                want[gs + i / per] += v * v;
            }
        for (size_t g = 0; g < 2 * gs; g++)
            ck_assert_msg(got[g] == want[g], "%zu groups: sum %zu is %.17g, expected %.17g", gs,
                          g, got[g], want[g]);
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
    snprintf(images, sizeof images, "%s", test_tmp_path("good-img"));
    test_write_file(images, img, ni, 0);
    char labels[512];
    snprintf(labels, sizeof labels, "%s", test_tmp_path("bad-lab"));
    dataset d;
    /* wrong magic */
    memcpy(bad, lab, nl);
    bad[2] = 0x42;
    test_write_file(labels, bad, nl, 0);
    ck_assert_int_eq(data_load_idx(images, labels, &d), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "not an IDX file"), "%s", kiln_last_error());
    /* labels of rank 2 */
    size_t n2 = idx_bytes(bad, 2, dl2d, 3, 0);
    test_write_file(labels, bad, n2, 0);
    ck_assert_int_eq(data_load_idx(images, labels, &d), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "rank 1"), "%s", kiln_last_error());
    /* counts that disagree */
    n2 = idx_bytes(bad, 1, dl2, 2, 0);
    test_write_file(labels, bad, n2, 0);
    ck_assert_int_eq(data_load_idx(images, labels, &d), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "has 3 samples but"), "%s", kiln_last_error());
    /* truncated, plain and gzipped */
    for (int gz = 0; gz < 2; gz++) {
        test_write_file(labels, lab, nl - 1, gz);
        ck_assert_int_eq(data_load_idx(images, labels, &d), KILN_ERR_IO);
        ck_assert_msg(strstr(kiln_last_error(), "ends inside"), "%s", kiln_last_error());
    }
    /* longer than announced */
    memcpy(bad, lab, nl);
    bad[nl] = 7;
    test_write_file(labels, bad, nl + 1, 0);
    ck_assert_int_eq(data_load_idx(images, labels, &d), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "longer than its IDX header"), "%s",
                  kiln_last_error());
    /* a gzip stream cut short */
    char cut[512];
    snprintf(cut, sizeof cut, "%s", test_tmp_path("cut.gz"));
    gzFile f = gzopen(cut, "wb");
    gzwrite(f, img, (unsigned)ni);
    gzclose(f);
    FILE *raw = fopen(cut, "rb");
    unsigned char buf[512];
    size_t got = fread(buf, 1, sizeof buf, raw);
    fclose(raw);
    test_write_file(cut, buf, got / 2, 0);
    ck_assert_int_eq(data_load_idx(cut, labels, &d), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "cut.gz"), "%s", kiln_last_error());
    ck_assert_int_eq(data_load_idx("/nonexistent/images", labels, &d), KILN_ERR_IO);
}
END_TEST

static kiln_status csv(const char *text, const char *label, int header, dataset *d)
{
    test_write_file(test_tmp_path("d.csv"), text, strlen(text), 0);
    return data_load_csv(test_tmp_path("d.csv"), label, header, d);
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


int main(void)
{
    Suite *s = suite_create("data");
    TCase *tc = tcase_create("data");
    tcase_add_test(tc, idx_files_load_plain_or_gzipped);
    tcase_add_test(tc, idx_files_of_wider_values_load_unscaled);
    tcase_add_test(tc, normalization_sums_by_group);
    tcase_add_test(tc, broken_idx_files_are_refused);
    tcase_add_test(tc, csv_files_load_and_refuse_bad_cells);
    suite_add_tcase(s, tc);
    return test_run(s);
}
