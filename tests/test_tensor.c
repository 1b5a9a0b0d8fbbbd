/* Device tensors: round trips, fill, copy, shape checks and limits. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static const size_t round_trip_sizes[] = {1, 7, 1023, 1u << 20};

static kiln_tensor *tensor_1d(size_t n)
{
    kiln_tensor *t;
    check_ok(kiln_tensor_create(test_ctx(), 1, &n, &t));
    return t;
}

START_TEST(upload_download_round_trip)
{
    size_t n = round_trip_sizes[_i];
    float *host = test_alloc(n * sizeof *host), *back = test_alloc(n * sizeof *back);
    rng_fill(test_rng(), host, n, -1e3f, 1e3f);
    memset(back, 0xff, n * sizeof *back);
    kiln_tensor *t = tensor_1d(n);
    check_ok(kiln_tensor_upload(t, host, n));
    check_ok(kiln_tensor_download(t, back, n));
    ck_assert_msg(memcmp(host, back, n * sizeof *host) == 0, "round trip of %zu floats differs",
                  n);
    kiln_tensor_free(t);
    free(host);
    free(back);
}
END_TEST

START_TEST(fill_and_copy)
{
    size_t n = round_trip_sizes[_i];
    float *back = test_alloc(n * sizeof *back);
    double *want = test_alloc(n * sizeof *want);
    kiln_tensor *a = tensor_1d(n), *b = tensor_1d(n);
    check_ok(kiln_tensor_fill(a, -2.5f));
    check_ok(kiln_tensor_download(a, back, n));
    for (size_t i = 0; i < n; i++)
        want[i] = -2.5;
    check_close(back, want, n, 0.0, 0.0, "fill of %zu values", n);
    check_ok(kiln_tensor_fill(b, 0.0f));
    check_ok(kiln_tensor_copy(b, a));
    check_ok(kiln_tensor_download(b, back, n));
    check_close(back, want, n, 0.0, 0.0, "copy of %zu values", n);
    kiln_tensor_free(a);
    kiln_tensor_free(b);
    free(back);
    free(want);
}
END_TEST

START_TEST(shapes_are_kept_and_printed)
{
    size_t shape[4] = {3, 1, 5, 7};
    kiln_tensor *t;
    check_ok(kiln_tensor_create(test_ctx(), 4, shape, &t));
    ck_assert_int_eq(kiln_tensor_ndim(t), 4);
    ck_assert_uint_eq(kiln_tensor_numel(t), 105);
    for (int i = 0; i < 4; i++)
        ck_assert_uint_eq(kiln_tensor_dim(t, i), shape[i]);
    ck_assert_uint_eq(kiln_tensor_dim(t, 4), 0);
    char buf[64];
    ck_assert_str_eq(kiln_tensor_shape_str(t, buf, sizeof buf), "3x1x5x7");
    kiln_tensor_free(t);
}
END_TEST

START_TEST(bad_shapes_are_clear_errors)
{
    kiln_ctx *ctx = test_ctx();
    kiln_tensor *t = NULL;
    size_t shape[5] = {2, 0, 3, 4, 5};
    ck_assert_int_eq(kiln_tensor_create(ctx, 0, shape, &t), KILN_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kiln_tensor_create(ctx, 5, shape, &t), KILN_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kiln_tensor_create(ctx, 3, shape, &t), KILN_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kiln_last_error(), "2x0x3"));
    ck_assert_ptr_null(t);

    size_t huge[2] = {SIZE_MAX / 2, 4};
    ck_assert_int_eq(kiln_tensor_create(ctx, 2, huge, &t), KILN_ERR_TOO_LARGE);
    size_t over = kiln_ctx_device(ctx)->max_alloc_bytes / sizeof(float) + 1;
    ck_assert_int_eq(kiln_tensor_create(ctx, 1, &over, &t), KILN_ERR_TOO_LARGE);
    ck_assert_msg(strstr(kiln_last_error(), "CL_DEVICE_MAX_MEM_ALLOC_SIZE") != NULL,
                  "message: %s", kiln_last_error());
}
END_TEST

START_TEST(mismatched_counts_are_shape_errors)
{
    size_t shape[2] = {3, 4}, five = 5;
    kiln_tensor *t, *u;
    check_ok(kiln_tensor_create(test_ctx(), 2, shape, &t));
    check_ok(kiln_tensor_create(test_ctx(), 1, &five, &u));
    float host[12] = {0};
    ck_assert_int_eq(kiln_tensor_upload(t, host, 11), KILN_ERR_SHAPE);
    ck_assert_msg(strstr(kiln_last_error(), "3x4") != NULL, "message: %s", kiln_last_error());
    ck_assert_int_eq(kiln_tensor_download(t, host, 13), KILN_ERR_SHAPE);
    ck_assert_int_eq(kiln_tensor_copy(t, u), KILN_ERR_SHAPE);
    ck_assert_msg(strstr(kiln_last_error(), "3x4") && strstr(kiln_last_error(), "5"),
                  "message: %s", kiln_last_error());
    ck_assert_int_eq(kiln_tensor_upload(NULL, host, 12), KILN_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kiln_tensor_upload(t, NULL, 12), KILN_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kiln_tensor_fill(NULL, 1.0f), KILN_ERR_INVALID_ARGUMENT);
    kiln_tensor_free(t);
    kiln_tensor_free(u);
    kiln_tensor_free(NULL);
}
END_TEST

/* first_nonfinite (the check of every input a network reads) against a
 * plain isfinite scan: a NaN or an infinity first, last, in a block of 64
 * and in the tail, among finite extremes (FLT_MAX, denormals, -0). */
START_TEST(first_nonfinite_finds_the_first_bad_value)
{
    static const size_t lengths[] = {1, 63, 64, 65, 200, 1000};
    const float bad[] = {NAN, INFINITY, -INFINITY};
    float *x = test_alloc(1000 * sizeof *x);
    for (size_t l = 0; l < sizeof lengths / sizeof lengths[0]; l++) {
        size_t n = lengths[l];
        rng_fill(test_rng(), x, n, -1.0f, 1.0f);
        x[0] = FLT_MAX;
        x[n / 2] = -FLT_MAX;
        x[n - 1] = FLT_MIN / 8; /* a denormal */
        if (n > 2)
            x[1] = -0.0f;
        ck_assert_uint_eq(first_nonfinite(x, n), n);
        size_t at[] = {0, n / 3, n / 2 + (n > 1), n - 1};
        for (size_t a = 0; a < 4; a++)
            for (size_t b = 0; b < 3; b++) {
                if (at[a] >= n)
                    continue;
                float keep = x[at[a]];
                x[at[a]] = bad[b];
                size_t want = 0;
                while (isfinite(x[want]))
                    want++;
                ck_assert_uint_eq(first_nonfinite(x, n), want);
                x[at[a]] = keep;
            }
    }
    free(x);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tensor");
    TCase *tc = tcase_create("tensor");
    size_t sizes = sizeof round_trip_sizes / sizeof round_trip_sizes[0];
    tcase_add_loop_test(tc, upload_download_round_trip, 0, (int)sizes);
    tcase_add_loop_test(tc, fill_and_copy, 0, (int)sizes);
    tcase_add_test(tc, shapes_are_kept_and_printed);
    tcase_add_test(tc, bad_shapes_are_clear_errors);
    tcase_add_test(tc, mismatched_counts_are_shape_errors);
    tcase_add_test(tc, first_nonfinite_finds_the_first_bad_value);
    suite_add_tcase(s, tc);
    return test_run(s);
}
