/* The kernel program cache: memory hits, disk hits, corrupt and foreign
 * files rebuilt, build errors with their log, cache directory choice,
 * programs of one kernel, and builds that keep the driver's chatter off
 * stderr unless KILN_VERBOSE is set, and kernels that wait while a network
 * holds the cache to be built together, a training step's in one program. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blas/blas.h"
#include "harness.h"
#include "runtime/program_text.h"
#include "runtime/runtime.h"

static char cache_dir[256];

/* Deletes the files of the current test cache directory, then it. */
static void remove_cache_dir(void)
{
    DIR *dir = cache_dir[0] ? opendir(cache_dir) : NULL;
    if (!dir)
        return;
    for (struct dirent *e; (e = readdir(dir)) != NULL;) {
        char path[512];
        if (e->d_name[0] != '.' &&
            snprintf(path, sizeof path, "%s/%s", cache_dir, e->d_name) < (int)sizeof path)
            unlink(path);
    }
    closedir(dir);
    rmdir(cache_dir);
}

/* Points KILN_CACHE_DIR at a fresh, empty directory. */
static void fresh_cache_dir(void)
{
    remove_cache_dir();
    snprintf(cache_dir, sizeof cache_dir, "%s/kiln-test-cache-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(cache_dir));
    setenv("KILN_CACHE_DIR", cache_dir, 1);
}

/* Number of cache files, and the path of the last one found. */
static int cache_files(char *path, size_t size)
{
    DIR *dir = opendir(cache_dir);
    ck_assert_ptr_nonnull(dir);
    int count = 0;
    for (struct dirent *e; (e = readdir(dir)) != NULL;) {
        size_t len = strlen(e->d_name);
        if (len > 4 && strcmp(e->d_name + len - 4, ".bin") == 0) {
            count++;
            if (path)
                snprintf(path, size, "%s/%s", cache_dir, e->d_name);
        }
    }
    closedir(dir);
    return count;
}

static kiln_cache_stats prepare_in_new_ctx(const char *options)
{
    kiln_ctx *ctx;
    check_ok(kiln_ctx_create(NULL, &ctx));
    check_ok(kiln_program_prepare(ctx, "tensor.cl", options));
    kiln_cache_stats stats = kiln_ctx_cache_stats(ctx);
    kiln_ctx_free(ctx);
    return stats;
}

static void overwrite(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, size, f), size);
    fclose(f);
}

START_TEST(second_build_hits_memory_then_disk)
{
    fresh_cache_dir();
    kiln_ctx *ctx;
    check_ok(kiln_ctx_create(NULL, &ctx));
    check_ok(kiln_program_prepare(ctx, "tensor.cl", "-DKILN_TEST_VARIANT=1"));
    check_ok(kiln_program_prepare(ctx, "tensor.cl", "-DKILN_TEST_VARIANT=1"));
    kiln_cache_stats s = kiln_ctx_cache_stats(ctx);
    ck_assert_uint_eq(s.builds, 1);
    ck_assert_uint_eq(s.memory_hits, 1);
    ck_assert_uint_eq(s.disk_hits, 0);
    kiln_ctx_free(ctx);
    ck_assert_int_eq(cache_files(NULL, 0), 1);

    s = prepare_in_new_ctx("-DKILN_TEST_VARIANT=1");
    ck_assert_uint_eq(s.disk_hits, 1);
    ck_assert_uint_eq(s.builds, 0);

    /* Other options are another variant, in another file. */
    s = prepare_in_new_ctx("-DKILN_TEST_VARIANT=2");
    ck_assert_uint_eq(s.builds, 1);
    ck_assert_int_eq(cache_files(NULL, 0), 2);
}
END_TEST

START_TEST(corrupt_or_foreign_cache_files_are_rebuilt)
{
    fresh_cache_dir();
    const char *opts = "-DKILN_TEST_VARIANT=3";
    prepare_in_new_ctx(opts);
    char path[512];
    ck_assert_int_eq(cache_files(path, sizeof path), 1);

    /* One flipped byte near the end (inside the binary): CRC mismatch. */
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    unsigned char *data = test_alloc((size_t)size);
    ck_assert_uint_eq(fread(data, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    data[size - 2] ^= 0x5a;
    overwrite(path, data, (size_t)size);
    kiln_cache_stats s = prepare_in_new_ctx(opts);
    ck_assert_uint_eq(s.disk_rejects, 1);
    ck_assert_uint_eq(s.builds, 1);

    /* The rebuilt file is good again. */
    s = prepare_in_new_ctx(opts);
    ck_assert_uint_eq(s.disk_hits, 1);

    /* Truncated to half, then a file of another program's bytes. */
    data[size - 2] ^= 0x5a;
    overwrite(path, data, (size_t)size / 2);
    s = prepare_in_new_ctx(opts);
    ck_assert_uint_eq(s.disk_rejects, 1);
    ck_assert_uint_eq(s.builds, 1);
    const char garbage[] = "KILNBIN\0not a kiln cache file at all";
    overwrite(path, garbage, sizeof garbage);
    s = prepare_in_new_ctx(opts);
    ck_assert_uint_eq(s.disk_rejects, 1);
    ck_assert_uint_eq(s.builds, 1);
    free(data);
}
END_TEST

START_TEST(build_errors_name_the_call_file_and_log)
{
    kiln_ctx *ctx = test_ctx();
    kiln_status st = kiln_program_prepare(ctx, "tensor.cl", "-Dfloat=no_such_type");
    ck_assert_int_eq(st, KILN_ERR_BUILD);
    const char *msg = kiln_last_error();
    ck_assert_msg(strstr(msg, "clBuildProgram: CL_BUILD_PROGRAM_FAILURE") == msg,
                  "message: %s", msg);
    ck_assert_msg(strstr(msg, "no_such_type") != NULL, "no build log in: %s", msg);
    ck_assert_msg(strstr(msg, "tensor.cl") != NULL, "no file name in: %s", msg);

    ck_assert_int_eq(kiln_program_prepare(ctx, "missing.cl", ""), KILN_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kiln_last_error(), "missing.cl"));
    cl_kernel k;
    ck_assert_int_eq(kernel_get(ctx, "tensor.cl", "", "no_such_kernel", &k),
                     KILN_ERR_OPENCL);
    ck_assert_ptr_nonnull(strstr(kiln_last_error(), "CL_INVALID_KERNEL_NAME"));
}
END_TEST

START_TEST(sources_are_embedded_with_line_markers)
{
    ck_assert_uint_ge(kiln_cl_source_count, 1);
    for (size_t i = 0; i < kiln_cl_source_count; i++) {
        char marker[128];
        snprintf(marker, sizeof marker, "#line 1 \"cl/%s\"\n", kiln_cl_sources[i].name);
        ck_assert_msg(strncmp(kiln_cl_sources[i].text, marker, strlen(marker)) == 0,
                      "%s does not start with %s", kiln_cl_sources[i].name, marker);
    }
}
END_TEST

/* A program keeps only the kernels it was asked for (keep_kernels), and
 * it can drop only kernels declared at a line's start: a kernel made by a
 * macro would be compiled into every program of its source. Kept to no
 * kernel, each embedded source (comments blanked) holds no kernel. */
START_TEST(every_kernel_can_be_left_out_of_a_program)
{
    char **plain = plain_sources();
    ck_assert_ptr_nonnull(plain);
    for (size_t i = 0; i < kiln_cl_source_count; i++) {
        int kept = 0;
        char *text = keep_kernels(plain[i], "", &kept);
        ck_assert_ptr_nonnull(text);
        const char *left = strstr(text, "__kernel");
        ck_assert_msg(!left, "cl/%s: a kernel that keep_kernels cannot leave out: %.60s",
                      kiln_cl_sources[i].name, left ? left : "");
        ck_assert_int_eq(kept, 0);
        free(text);
    }
    plain_free(plain);
}
END_TEST

/* Saves an environment variable's value (NULL when unset) for restore_env. */
static char *save_env(const char *name)
{
    const char *v = getenv(name);
    return v ? strdup(v) : NULL;
}

static void restore_env(const char *name, char *saved)
{
    if (saved)
        setenv(name, saved, 1);
    else
        unsetenv(name);
    free(saved);
}

START_TEST(cache_directory_follows_the_environment)
{
    char buf[512], *kiln = save_env("KILN_CACHE_DIR"), *xdg = save_env("XDG_CACHE_HOME");
    char *home = save_env("HOME");
    setenv("KILN_CACHE_DIR", "/x/kiln-dir", 1);
    check_ok(kiln_cache_dir(buf, sizeof buf));
    ck_assert_str_eq(buf, "/x/kiln-dir");
    unsetenv("KILN_CACHE_DIR");
    setenv("XDG_CACHE_HOME", "/x/xdg", 1);
    check_ok(kiln_cache_dir(buf, sizeof buf));
    ck_assert_str_eq(buf, "/x/xdg/kiln");
    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", "/x/home", 1);
    check_ok(kiln_cache_dir(buf, sizeof buf));
    ck_assert_str_eq(buf, "/x/home/.cache/kiln");
    ck_assert_int_eq(kiln_cache_dir(buf, 8), KILN_ERR_IO);
    restore_env("KILN_CACHE_DIR", kiln);
    restore_env("XDG_CACHE_HOME", xdg);
    restore_env("HOME", home);
}
END_TEST

START_TEST(unwritable_cache_still_builds)
{
    setenv("KILN_CACHE_DIR", "/proc/kiln-cannot-write-here", 1);
    kiln_cache_stats s = prepare_in_new_ctx("-DKILN_TEST_VARIANT=4");
    ck_assert_uint_eq(s.builds, 1);
}
END_TEST

/* Each kernel asked for is a program of its own, cached on disk on its
 * own, and computes as before. */
START_TEST(kernels_are_programs_of_their_own)
{
    fresh_cache_dir();
    const char *opts = "-DKILN_TEST_VARIANT=5";
    kiln_ctx *ctx;
    check_ok(kiln_ctx_create(NULL, &ctx));
    cl_kernel fill, copy, again;
    check_ok(kernel_get(ctx, "tensor.cl", opts, "fill", &fill));
    check_ok(kernel_get(ctx, "tensor.cl", opts, "copy", &copy));
    check_ok(kernel_get(ctx, "tensor.cl", opts, "fill", &again));
    ck_assert_ptr_eq(fill, again);
    kiln_cache_stats s = kiln_ctx_cache_stats(ctx);
    ck_assert_uint_eq(s.builds, 2);
    ck_assert_uint_eq(s.memory_hits, 1);
    size_t shape[1] = {1031}; /* a prime, more than a work-group */
    kiln_tensor *t;
    check_ok(kiln_tensor_create(ctx, 1, shape, &t));
    check_ok(kiln_tensor_fill(t, 2.5f));
    float *host = test_alloc(shape[0] * sizeof *host);
    check_ok(tensor_read(t, host, shape[0], 1));
    for (size_t i = 0; i < shape[0]; i++)
        ck_assert_float_eq(host[i], 2.5f);
    free(host);
    kiln_tensor_free(t);
    kiln_ctx_free(ctx);
    /* fill and copy here; kiln_tensor_fill is the driver's and compiles nothing */
    ck_assert_int_eq(cache_files(NULL, 0), 2);

    check_ok(kiln_ctx_create(NULL, &ctx));
    check_ok(kernel_get(ctx, "tensor.cl", opts, "copy", &copy));
    s = kiln_ctx_cache_stats(ctx);
    ck_assert_uint_eq(s.disk_hits, 1);
    ck_assert_uint_eq(s.builds, 0);
    ck_assert_int_eq(kernel_get(ctx, "tensor.cl", "-Dfloat=no_such_type", "fill", &fill),
                     KILN_ERR_BUILD);
    ck_assert_msg(strstr(kiln_last_error(), "tensor.cl, kernel fill") != NULL, "message: %s",
                  kiln_last_error());
    kiln_ctx_free(ctx);
}
END_TEST

/* While the cache is held (as a network holds it), binaries wait for the
 * last release; without a hold they are written at once. */
START_TEST(held_binaries_wait_for_the_release)
{
    fresh_cache_dir();
    kiln_ctx *ctx;
    check_ok(kiln_ctx_create(NULL, &ctx));
    check_ok(kiln_program_prepare(ctx, "tensor.cl", "-DKILN_TEST_VARIANT=6"));
    ck_assert_int_eq(cache_files(NULL, 0), 1);
    programs_hold(ctx);
    programs_hold(ctx);
    check_ok(kiln_program_prepare(ctx, "tensor.cl", "-DKILN_TEST_VARIANT=7"));
    programs_release(ctx);
    ck_assert_int_eq(cache_files(NULL, 0), 1);
    programs_release(ctx);
    ck_assert_int_eq(cache_files(NULL, 0), 2);
    programs_release(ctx); /* one too many: ignored */
    check_ok(kiln_program_prepare(ctx, "tensor.cl", "-DKILN_TEST_VARIANT=8"));
    ck_assert_int_eq(cache_files(NULL, 0), 3);
    kiln_ctx_free(ctx);
}
END_TEST

/* Fills a tensor of n values with value through tensor.cl's fill kernel k,
 * then copies it to out with copy (the launches tensor.cl's kernels take). */
static void fill_and_copy(kiln_ctx *ctx, cl_kernel fill, cl_kernel copy, kiln_tensor *t,
                          kiln_tensor *out, float value)
{
    cl_ulong n = kiln_tensor_numel(t);
    check_ok(launch_1d(ctx, fill, "fill", n, 0, KARG(t->buf), KARG(value), KARG(n)));
    check_ok(launch_1d(ctx, copy, "copy", n, 0, KARG(t->buf), KARG(out->buf), KARG(n)));
}

/* A new context holding its program cache (as a network does), with two
 * tensors of n values. */
static kiln_ctx *held_ctx(size_t n, kiln_tensor **t, kiln_tensor **out)
{
    kiln_ctx *ctx;
    size_t shape[1] = {n};
    check_ok(kiln_ctx_create(NULL, &ctx));
    programs_hold(ctx);
    check_ok(kiln_tensor_create(ctx, 1, shape, t));
    check_ok(kiln_tensor_create(ctx, 1, shape, out));
    return ctx;
}

/* The tensors freed and the cache released (its binaries written). */
static void free_held(kiln_ctx *ctx, kiln_tensor *t, kiln_tensor *out)
{
    kiln_tensor_free(t);
    kiln_tensor_free(out);
    programs_release(ctx);
}

static void expect_values(const kiln_tensor *t, float value)
{
    size_t n = kiln_tensor_numel(t);
    float *host = test_alloc(n * sizeof *host);
    check_ok(tensor_read(t, host, n, 1));
    for (size_t i = 0; i < n; i++)
        ck_assert_float_eq(host[i], value);
    free(host);
}

/* While a network holds the cache, kernels not built yet wait with the
 * launches after them until something reads the queue; then the kernels of
 * one source and options are built as one program, the launches run in
 * order, a kernel asked for without a launch is built too, and a second
 * context finds both programs' binaries on disk. */
START_TEST(waiting_kernels_build_as_one_program)
{
    fresh_cache_dir();
    const char *opts = "-DKILN_TEST_VARIANT=9", *other = "-DKILN_TEST_VARIANT=11";
    for (int run = 0; run < 2; run++) {
        kiln_tensor *t, *out;
        kiln_ctx *ctx = held_ctx(1031, &t, &out); /* a prime, more than a work-group */
        cl_kernel fill, copy, again, ahead;
        check_ok(kernel_get(ctx, "tensor.cl", opts, "fill", &fill));
        check_ok(kernel_get(ctx, "tensor.cl", opts, "copy", &copy));
        check_ok(kernel_get(ctx, "tensor.cl", opts, "fill", &again));
        check_ok(kernel_get(ctx, "tensor.cl", other, "fill", &ahead));
        ck_assert_ptr_eq(fill, again);
        fill_and_copy(ctx, fill, copy, t, out, 2.5f);
        ck_assert_uint_eq(kiln_ctx_launches(ctx), 2);
        kiln_cache_stats s = kiln_ctx_cache_stats(ctx);
        ck_assert_uint_eq(s.builds + s.disk_hits, 0); /* nothing built before a read */
        expect_values(out, 2.5f);
        s = kiln_ctx_cache_stats(ctx);
        ck_assert_uint_eq(s.builds, run == 0 ? 2 : 0);
        ck_assert_uint_eq(s.disk_hits, run == 0 ? 0 : 2);
        fill_and_copy(ctx, fill, copy, t, out, -1.0f); /* the same handles, built now */
        expect_values(out, -1.0f);
        fill_and_copy(ctx, ahead, copy, t, out, 0.5f);
        expect_values(out, 0.5f);
        s = kiln_ctx_cache_stats(ctx);
        ck_assert_uint_eq(s.builds + s.disk_hits, 2);
        free_held(ctx, t, out);
        ck_assert_int_eq(cache_files(NULL, 0), 2);
        kiln_ctx_free(ctx);
    }
}
END_TEST

/* Waiting kernels of sources and options that fit together build as one
 * program (tensor.cl's with optim.cl's), one whose macro value differs
 * builds apart, and a second context loads both from disk. */
START_TEST(sources_that_fit_build_as_one_program)
{
    fresh_cache_dir();
    const char *opts = "-DKILN_TEST_VARIANT=14", *other = "-DKILN_TEST_VARIANT=15";
    for (int run = 0; run < 2; run++) {
        kiln_tensor *t, *out;
        kiln_ctx *ctx = held_ctx(1031, &t, &out);
        cl_kernel fill, copy, adam, apart;
        check_ok(kernel_get(ctx, "tensor.cl", opts, "fill", &fill));
        check_ok(kernel_get(ctx, "tensor.cl", opts, "copy", &copy));
        check_ok(kernel_get(ctx, "optim.cl", "", "adam_step", &adam));
        check_ok(kernel_get(ctx, "tensor.cl", other, "copy", &apart));
        fill_and_copy(ctx, fill, copy, t, out, 3.5f);
        expect_values(out, 3.5f);
        kiln_cache_stats s = kiln_ctx_cache_stats(ctx);
        ck_assert_uint_eq(s.builds, run == 0 ? 2 : 0);
        ck_assert_uint_eq(s.disk_hits, run == 0 ? 0 : 2);
        ck_assert_uint_eq(s.bundles_split, 0);
        ck_assert(program_built(ctx, "optim.cl", "", "adam_step"));
        ck_assert(program_built(ctx, "tensor.cl", other, "copy"));
        fill_and_copy(ctx, fill, apart, t, out, -2.0f);
        expect_values(out, -2.0f);
        free_held(ctx, t, out);
        ck_assert_int_eq(cache_files(NULL, 0), 2);
        kiln_ctx_free(ctx);
    }
}
END_TEST

/* A training step of a model like the Fashion MLP (batchnorm and ReLU,
 * dropout, cross-entropy, Adam with clipping) builds one program where
 * kiln's GEMM runs: its sources keep their macros' names apart, so that a
 * cold start pays for one build (docs/architecture.md). A clash (two
 * sources defining the same macro) splits it. */
START_TEST(a_training_step_builds_one_program)
{
    fresh_cache_dir();
    const char *text = "[input]\nshape = 37\n[linear]\nout = 19\n[batchnorm]\n[relu]\n"
                       "[dropout]\np = 0.3\n[linear]\nout = 5\n[train]\n"
                       "loss = cross_entropy\noptimizer = adam\nclip_norm = 1.0\n";
    kiln_model *m;
    kiln_ctx *ctx;
    kiln_net *net;
    check_ok(kiln_model_parse(text, "mlp.ini", &m));
    check_ok(kiln_ctx_create(NULL, &ctx));
    check_ok(kiln_net_create(ctx, m, 0, &net));
    float x[13 * 37], y[13] = {0};
    for (size_t i = 0; i < 13 * 37; i++)
        x[i] = (float)(i % 11) / 11.0f;
    check_ok(kiln_net_train_step(net, x, y, 13, NULL));
    check_ok(kiln_ctx_finish(ctx));
    kiln_cache_stats s = kiln_ctx_cache_stats(ctx);
    if (blas_packs(ctx, 64, 64, 64)) /* else CLBlast's programs count too */
        ck_assert_uint_eq(s.builds, 1);
    ck_assert_uint_eq(s.bundles_split, 0);
    kiln_net_free(net);
    kiln_ctx_free(ctx);
    kiln_model_free(m);
}
END_TEST

/* A waiting kernel that does not build fails the read that would have run
 * it, naming the program and kernel; the context goes on working. */
START_TEST(a_waiting_kernel_that_fails_to_build_fails_the_read)
{
    fresh_cache_dir();
    kiln_tensor *t, *out;
    kiln_ctx *ctx = held_ctx(37, &t, &out);
    check_ok(kiln_tensor_fill(out, 7.0f));
    cl_kernel fill, copy;
    check_ok(kernel_get(ctx, "tensor.cl", "-Dfloat=no_such_type", "fill", &fill));
    check_ok(kernel_get(ctx, "tensor.cl", "-Dfloat=no_such_type", "copy", &copy));
    fill_and_copy(ctx, fill, copy, t, out, 1.0f);
    float host[37];
    ck_assert_int_eq(tensor_read(out, host, 37, 1), KILN_ERR_BUILD);
    ck_assert_msg(strstr(kiln_last_error(), "tensor.cl, kernel copy fill") != NULL,
                  "message: %s", kiln_last_error());
    expect_values(out, 7.0f); /* the launches were dropped */
    check_ok(kernel_get(ctx, "tensor.cl", "-DKILN_TEST_VARIANT=10", "fill", &fill));
    check_ok(kernel_get(ctx, "tensor.cl", "-DKILN_TEST_VARIANT=10", "copy", &copy));
    fill_and_copy(ctx, fill, copy, t, out, 4.0f);
    expect_values(out, 4.0f);
    kiln_tensor_free(t);
    kiln_tensor_free(out);
    programs_release(ctx);
    kiln_ctx_free(ctx);
}
END_TEST

/* Runs kiln_program_prepare of tensor.cl with options in a new context
 * while the test's stderr goes to a file; returns what reached it. */
static char *stderr_of_prepare(const char *options)
{
    char path[] = "/tmp/kiln-test-stderr-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);
    kiln_ctx *ctx;
    kiln_status st = kiln_ctx_create(NULL, &ctx);
    if (st == KILN_OK)
        st = kiln_program_prepare(ctx, "tensor.cl", options);
    kiln_ctx_free(ctx);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    check_ok(st);
    char *text = test_alloc(65537);
    ssize_t n = pread(fd, text, 65536, 0);
    close(fd);
    text[n > 0 ? n : 0] = '\0';
    return text;
}

/* Redefining a predefined macro draws a clang warning; PoCL prints "N
 * warnings generated." to stderr itself. Quiet unless KILN_VERBOSE. */
START_TEST(builds_are_quiet_unless_verbose)
{
    fresh_cache_dir();
    unsetenv("KILN_VERBOSE");
    char *text = stderr_of_prepare("-DCL_VERSION_1_2=3");
    ck_assert_msg(text[0] == '\0', "stderr of a quiet build: %s", text);
    free(text);

    setenv("KILN_VERBOSE", "1", 1);
    text = stderr_of_prepare("-DCL_VERSION_1_2=4");
    unsetenv("KILN_VERBOSE");
    ck_assert_msg(strstr(text, "kiln: compiled tensor.cl -DCL_VERSION_1_2=4 in ") != NULL,
                  "stderr of a verbose build: %s", text);
    ck_assert_msg(strstr(text, "kiln: cached tensor.cl -DCL_VERSION_1_2=4 in ") != NULL,
                  "stderr of a verbose build: %s", text);
    free(text);
}
END_TEST

int main(void)
{
    atexit(remove_cache_dir);
    Suite *s = suite_create("program");
    TCase *tc = tcase_create("program");
    tcase_add_test(tc, second_build_hits_memory_then_disk);
    tcase_add_test(tc, corrupt_or_foreign_cache_files_are_rebuilt);
    tcase_add_test(tc, build_errors_name_the_call_file_and_log);
    tcase_add_test(tc, sources_are_embedded_with_line_markers);
    tcase_add_test(tc, every_kernel_can_be_left_out_of_a_program);
    tcase_add_test(tc, cache_directory_follows_the_environment);
    tcase_add_test(tc, unwritable_cache_still_builds);
    tcase_add_test(tc, kernels_are_programs_of_their_own);
    tcase_add_test(tc, builds_are_quiet_unless_verbose);
    tcase_add_test(tc, held_binaries_wait_for_the_release);
    tcase_add_test(tc, waiting_kernels_build_as_one_program);
    tcase_add_test(tc, sources_that_fit_build_as_one_program);
    tcase_add_test(tc, a_training_step_builds_one_program);
    tcase_add_test(tc, a_waiting_kernel_that_fails_to_build_fails_the_read);
    suite_add_tcase(s, tc);
    return test_run(s);
}
