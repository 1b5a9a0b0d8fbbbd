/* Device enumeration and selection, status codes and error names. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static kiln_device_info *devices(size_t *n)
{
    kiln_device_info *list;
    check_ok(kiln_devices(&list, n));
    ck_assert_uint_ge(*n, 1);
    return list;
}

START_TEST(lists_devices_with_sane_limits)
{
    size_t n;
    kiln_device_info *list = devices(&n);
    for (size_t i = 0; i < n; i++) {
        const kiln_device_info *d = &list[i];
        ck_assert_uint_eq(d->global_index, i);
        ck_assert_str_ne(d->name, "");
        ck_assert_str_ne(d->platform, "");
        ck_assert_uint_ge(d->compute_units, 1);
        ck_assert_uint_ge(d->max_work_group_size, 1);
        ck_assert_uint_gt(d->max_alloc_bytes, 0);
        ck_assert_uint_le(d->max_alloc_bytes, d->global_mem_bytes);
        ck_assert_msg(strncmp(d->opencl_c_version, "OpenCL C ", 9) == 0,
                      "device %s reports OpenCL C version \"%s\"", d->name,
                      d->opencl_c_version);
        if (i > 0 && list[i - 1].platform_index == d->platform_index)
            ck_assert_uint_eq(d->device_index, list[i - 1].device_index + 1);
    }
    kiln_free(list);
}
END_TEST

START_TEST(selects_by_index_pair_and_name)
{
    size_t n;
    kiln_device_info *list = devices(&n);
    for (size_t i = 0; i < n; i++) {
        kiln_device_info got;
        char sel[32];
        snprintf(sel, sizeof sel, "%zu", i);
        check_ok(kiln_device_select(sel, &got));
        ck_assert_uint_eq(got.global_index, i);
        snprintf(sel, sizeof sel, "%u:%u", list[i].platform_index, list[i].device_index);
        check_ok(kiln_device_select(sel, &got));
        ck_assert_uint_eq(got.global_index, i);
    }
    /* A substring of the name, in another case, finds the first device with it. */
    char upper[128];
    snprintf(upper, sizeof upper, "%s", list[0].name);
    for (char *p = upper; *p; p++)
        *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    kiln_device_info got;
    check_ok(kiln_device_select(upper, &got));
    ck_assert_str_eq(got.name, list[0].name);
    check_ok(kiln_device_select(kiln_device_type_str(list[0].type), &got));
    ck_assert_int_eq(got.type, list[0].type);
    kiln_free(list);
}
END_TEST

/* The names users type: "pocl" matches PoCL's platform vendor ("The pocl
 * project") and ICD suffix, though its platform is "Portable Computing
 * Language" and its device carries the CPU's vendor; "rusticl" and "mesa"
 * match Mesa's. Checked against whatever drivers this machine has. */
START_TEST(selects_by_the_names_users_type)
{
    kiln_device_info *list;
    size_t n;
    check_ok(kiln_devices(&list, &n));
    for (size_t i = 0; i < n; i++) {
        kiln_device_info got;
        if (strstr(list[i].platform, "Portable Computing Language")) {
            check_ok(kiln_device_select("pocl", &got));
            ck_assert_str_eq(got.platform, "Portable Computing Language");
            check_ok(kiln_device_select("POCL", &got));
            ck_assert_str_eq(got.platform, "Portable Computing Language");
        }
        if (strcmp(list[i].platform, "rusticl") == 0) {
            check_ok(kiln_device_select("mesa", &got));
            ck_assert_str_eq(got.platform, "rusticl");
        }
        if (list[i].type == KILN_DEVICE_CPU) {
            check_ok(kiln_device_select("cpu", &got));
            ck_assert_int_eq(got.type, KILN_DEVICE_CPU);
        }
    }
    kiln_free(list);
}
END_TEST

START_TEST(unknown_device_lists_what_exists)
{
    size_t n;
    kiln_device_info *list = devices(&n), got;
    ck_assert_int_eq(kiln_device_select("no-such-device-anywhere", &got), KILN_ERR_NO_DEVICE);
    const char *msg = kiln_last_error();
    ck_assert_msg(strstr(msg, "no-such-device-anywhere") != NULL, "message: %s", msg);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(strstr(msg, list[i].name) != NULL, "message lacks %s: %s", list[i].name,
                      msg);
    char sel[32];
    snprintf(sel, sizeof sel, "%zu", n);
    ck_assert_int_eq(kiln_device_select(sel, &got), KILN_ERR_NO_DEVICE);
    ck_assert_int_eq(kiln_device_select("0:99", &got), KILN_ERR_NO_DEVICE);
    ck_assert_int_eq(kiln_device_select("1:", &got), KILN_ERR_NO_DEVICE);
    kiln_free(list);
}
END_TEST

START_TEST(default_prefers_gpu_then_cpu_and_honours_env)
{
    size_t n;
    kiln_device_info *list = devices(&n), got;
    const char *saved = getenv("KILN_DEVICE");
    char *restore = saved ? strdup(saved) : NULL;
    unsetenv("KILN_DEVICE");
    check_ok(kiln_device_select(NULL, &got));
    const kiln_device_info *want = NULL;
    for (size_t i = 0; i < n && !want; i++)
        if (list[i].type == KILN_DEVICE_GPU)
            want = &list[i];
    for (size_t i = 0; i < n && !want; i++)
        if (list[i].type == KILN_DEVICE_CPU)
            want = &list[i];
    ck_assert_uint_eq(got.global_index, want ? want->global_index : 0);
    char sel[32];
    snprintf(sel, sizeof sel, "%zu", n - 1);
    setenv("KILN_DEVICE", sel, 1);
    check_ok(kiln_device_select("", &got));
    ck_assert_uint_eq(got.global_index, n - 1);
    if (restore) {
        setenv("KILN_DEVICE", restore, 1);
        free(restore);
    } else {
        unsetenv("KILN_DEVICE");
    }
    kiln_free(list);
}
END_TEST

START_TEST(context_opens_on_the_selected_device)
{
    kiln_ctx *ctx = test_ctx();
    const kiln_device_info *d = kiln_ctx_device(ctx);
    kiln_device_info want;
    check_ok(kiln_device_select(NULL, &want));
    ck_assert_str_eq(d->name, want.name);
    ck_assert_uint_eq(d->global_index, want.global_index);
    check_ok(kiln_ctx_finish(ctx));
}
END_TEST

START_TEST(status_codes_and_opencl_errors_have_names)
{
    for (int s = 0; s < KILN_STATUS_COUNT; s++) {
        ck_assert_str_ne(kiln_status_str((kiln_status)s), "");
        for (int t = 0; t < s; t++)
            ck_assert_str_ne(kiln_status_str((kiln_status)s), kiln_status_str((kiln_status)t));
    }
    ck_assert_str_eq(kiln_status_str((kiln_status)999), "unknown status");
    ck_assert_str_eq(cl_error_name(-5), "CL_OUT_OF_RESOURCES");
    ck_assert_str_eq(cl_error_name(-11), "CL_BUILD_PROGRAM_FAILURE");
    ck_assert_str_eq(cl_error_name(-63), "CL_INVALID_GLOBAL_WORK_SIZE");
    ck_assert_ptr_nonnull(strstr(cl_error_name(-9999), "-9999"));
    ck_assert_int_eq(error_cl(-4, "clCreateBuffer"), KILN_ERR_OUT_OF_MEMORY);
    ck_assert_str_eq(kiln_last_error(), "clCreateBuffer: CL_MEM_OBJECT_ALLOCATION_FAILURE");
}
END_TEST

START_TEST(bad_arguments_are_errors_not_crashes)
{
    ck_assert_int_eq(kiln_devices(NULL, NULL), KILN_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kiln_device_select("0", NULL), KILN_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kiln_ctx_create(NULL, NULL), KILN_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kiln_ctx_finish(NULL), KILN_ERR_INVALID_ARGUMENT);
    kiln_ctx *ctx = (kiln_ctx *)1;
    ck_assert_int_eq(kiln_ctx_create("no-such-device-anywhere", &ctx), KILN_ERR_NO_DEVICE);
    ck_assert_ptr_null(ctx);
    kiln_ctx_free(NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("device");
    TCase *tc = tcase_create("device");
    tcase_add_test(tc, lists_devices_with_sane_limits);
    tcase_add_test(tc, selects_by_index_pair_and_name);
    tcase_add_test(tc, selects_by_the_names_users_type);
    tcase_add_test(tc, unknown_device_lists_what_exists);
    tcase_add_test(tc, default_prefers_gpu_then_cpu_and_honours_env);
    tcase_add_test(tc, context_opens_on_the_selected_device);
    tcase_add_test(tc, status_codes_and_opencl_errors_have_names);
    tcase_add_test(tc, bad_arguments_are_errors_not_crashes);
    suite_add_tcase(s, tc);
    return test_run(s);
}
