/* The shared test harness: one context on the device KILN_DEVICE selects,
 * one seeded generator, and a checker against float64 references. */
#ifndef KILN_TEST_HARNESS_H
#define KILN_TEST_HARNESS_H

#include <check.h>

/* Check's assertions record every one that passes (_mark_point): a
 * message through a temporary file and a malloc, which a test asserting
 * each element of a million-element buffer pays a million times (under
 * AddressSanitizer's DWARF unwinder, most of a minute per suite). Tests run
 * in one process (test_run), where a crash ends the run however far the
 * marks got, so they assert without the mark (ck_assert_int_eq and the
 * rest expand to ck_assert_msg); failures read the same. */
#define KILN_CK_ASSERT(expr, ...)                                                      \
    ((expr) ? (void)0                                                                  \
            : _ck_assert_failed(__FILE__, __LINE__, "Assertion '" #expr "' failed",    \
                                ##__VA_ARGS__))
#undef ck_assert_msg
#define ck_assert_msg(expr, ...) KILN_CK_ASSERT(expr, ##__VA_ARGS__)

#include "runtime/runtime.h"
#include "ref/ref.h"

/* The context every test shares (opened on first use, closed at exit). */
kiln_ctx *test_ctx(void);

/* The generator, seeded from $KILN_TEST_SEED or a fixed default, and the
 * seed itself (printed by every failure of check_close). */
kiln_rng *test_rng(void);
uint64_t test_seed(void);

/* Fails the test unless got[i] is within atol + rtol |want[i]| of want[i]
 * for every i; the message names what, the worst index, both values, the
 * tolerance and the seed. */
#define check_close(got, want, n, atol, rtol, ...)                                    \
    check_close_at(__FILE__, __LINE__, got, want, n, atol, rtol, __VA_ARGS__)
void check_close_at(const char *file, int line, const float *got, const double *want,
                    size_t n, double atol, double rtol, const char *fmt, ...)
    __attribute__((format(printf, 8, 9)));

/* Fails unless a kiln call succeeded, printing kiln_last_error(). */
#define check_ok(call)                                                                 \
    do {                                                                               \
        kiln_status check_ok_st = (call);                                              \
        ck_assert_msg(check_ok_st == KILN_OK, "%s failed: %s: %s", #call,              \
                      kiln_status_str(check_ok_st), kiln_last_error());                \
    } while (0)

/* A fresh directory for this test program, removed with its contents at
 * exit. */
const char *test_tmpdir(void);
/* test_tmpdir()/name, in one of four static buffers (the fifth call reuses
 * the first). */
const char *test_tmp_path(const char *name);
/* Writes n bytes to path, gzip-compressed with gz; fails the test on error. */
void test_write_file(const char *path, const void *data, size_t n, int gz);

/* malloc that fails the test when memory runs out. */
void *test_alloc(size_t bytes);
/* Every weight and buffer of a network, concatenated in state_dict order
 * (test_alloc'd); *count gets their number. */
float *test_net_weights(kiln_net *net, size_t *count);
/* Sets every weight and buffer of to to from's, by name. */
void test_copy_weights(kiln_net *from, kiln_net *to);

/* Runs a suite; returns the process exit status. Tests run in-process
 * (CK_NOFORK) unless $CK_FORK says otherwise, so they share the context. */
int test_run(Suite *suite);

#endif
