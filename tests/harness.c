/* The shared test harness (see harness.h). */
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "harness.h"

static kiln_ctx *shared_ctx;
static kiln_rng rng;
static uint64_t seed;
static int seeded;

static void close_ctx(void)
{
    kiln_ctx_free(shared_ctx);
    shared_ctx = NULL;
}

kiln_ctx *test_ctx(void)
{
    if (!shared_ctx) {
        kiln_status st = kiln_ctx_create(NULL, &shared_ctx);
        ck_assert_msg(st == KILN_OK, "cannot open the test device: %s", kiln_last_error());
        atexit(close_ctx);
    }
    return shared_ctx;
}

uint64_t test_seed(void)
{
    if (!seeded) {
        const char *env = getenv("KILN_TEST_SEED");
        seed = env && *env ? strtoull(env, NULL, 0) : 20261126u;
        rng_seed(&rng, seed);
        seeded = 1;
    }
    return seed;
}

kiln_rng *test_rng(void)
{
    test_seed();
    return &rng;
}

static char tmpdir[256];

static void remove_tree(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        for (struct dirent *e; (e = readdir(d)) != NULL;) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char child[1024];
            snprintf(child, sizeof child, "%s/%s", path, e->d_name);
            remove_tree(child);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void remove_tmpdir(void)
{
    remove_tree(tmpdir);
}

const char *test_tmpdir(void)
{
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "%s/kiln-test-XXXXXX",
                 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        ck_assert_ptr_nonnull(mkdtemp(tmpdir));
        atexit(remove_tmpdir);
    }
    return tmpdir;
}

void *test_alloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    ck_assert_msg(p != NULL, "out of host memory for %zu bytes", bytes);
    return p;
}

void check_close_at(const char *file, int line, const float *got, const double *want,
                    size_t n, double atol, double rtol, const char *fmt, ...)
{
    ref_compare r = ref_compare_arrays(got, want, n, atol, rtol);
    if (r.failures == 0)
        return;
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    ck_abort_msg("%s:%d: %s: %zu of %zu values out of tolerance; worst at index %zu: got "
                 "%.9g, expected %.9g (|diff| %.3g, tolerance %.3g + %.3g*|expected|); "
                 "KILN_TEST_SEED=%llu",
                 file, line, what, r.failures, n, r.index, r.got, r.want, r.abs_err, atol, rtol,
                 (unsigned long long)test_seed());
}

int test_run(Suite *suite)
{
    SRunner *runner = srunner_create(suite);
    if (!getenv("CK_FORK"))
        srunner_set_fork_status(runner, CK_NOFORK);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

const char *test_tmp_path(const char *name)
{
    static char path[4][512];
    static int next;
    next = (next + 1) % 4;
    snprintf(path[next], sizeof path[next], "%s/%s", test_tmpdir(), name);
    return path[next];
}

void test_write_file(const char *path, const void *data, size_t n, int gz)
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

/* Every weight and buffer of a network, concatenated. */
float *test_net_weights(kiln_net *net, size_t *count)
{
    size_t total = 0;
    for (size_t i = 0; i < kiln_net_param_count(net); i++) {
        kiln_param_info p;
        check_ok(kiln_net_param_info(net, i, &p));
        total += p.numel;
    }
    float *w = test_alloc(total * sizeof *w);
    size_t at = 0;
    for (size_t i = 0; i < kiln_net_param_count(net); i++) {
        kiln_param_info p;
        check_ok(kiln_net_param_info(net, i, &p));
        check_ok(kiln_net_get(net, p.name, w + at, p.numel));
        at += p.numel;
    }
    *count = total;
    return w;
}

void test_copy_weights(kiln_net *from, kiln_net *to)
{
    for (size_t i = 0; i < kiln_net_param_count(from); i++) {
        kiln_param_info p;
        check_ok(kiln_net_param_info(from, i, &p));
        float *w = test_alloc(p.numel * sizeof *w);
        check_ok(kiln_net_get(from, p.name, w, p.numel));
        check_ok(kiln_net_set(to, p.name, w, p.numel));
        free(w);
    }
}
