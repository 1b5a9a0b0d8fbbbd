/* Dropout: Philox known answers, the kept fraction within a binomial 5σ
 * bound, exact scaling, identity in eval mode, the same mask for the same
 * (seed, counter), backward applying the forward's mask, and forward and
 * backward against a host reference of the stream at sizes around the
 * kernel's chunk of 64. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ops/ops.h"

#define N_BIG (1u << 20)

static kiln_tensor *make(size_t n, const float *data)
{
    kiln_tensor *t;
    check_ok(kiln_tensor_create(test_ctx(), 1, &n, &t));
    if (data)
        check_ok(kiln_tensor_upload(t, data, n));
    return t;
}

/* Philox4x32-10 on the host: the reference of cl/dropout.cl's. */
static void philox_host(const uint32_t counter[4], uint64_t key, uint32_t out[4])
{
    uint32_t c[4] = {counter[0], counter[1], counter[2], counter[3]};
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        uint64_t p0 = (uint64_t)0xD2511F53u * c[0], p1 = (uint64_t)0xCD9E8D57u * c[2];
        uint32_t c1 = c[1], c3 = c[3];
        c[0] = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        c[1] = (uint32_t)p1;
        c[2] = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c[3] = (uint32_t)p0;
    }
    memcpy(out, c, sizeof c);
}

/* Whether element i is kept: word (i % 64) / 16 of block 16 (i / 64) +
 * i % 16, its top 24 bits as u in [0, 1), against p. */
static int host_kept(size_t i, float p, uint64_t seed, uint64_t counter)
{
    uint32_t c[4] = {(uint32_t)(16 * (i / 64) + i % 16), 0, (uint32_t)counter,
                     (uint32_t)(counter >> 32)},
             w[4];
    philox_host(c, seed, w);
    return (double)(w[i % 64 / 16] >> 8) / 16777216.0 >= (double)p;
}

/* Known-answer vectors of Philox4x32-10 from the Random123 distribution,
 * on the device and on the host. */
START_TEST(philox_known_answers)
{
    static const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d,
         0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09,
         0x94fdcceb, 0x5001e420, 0x24126ea1},
    };
    kiln_ctx *ctx = test_ctx();
    cl_kernel k;
    check_ok(kernel_get(ctx, "dropout.cl", "", "philox_words", &k));
    kiln_tensor *out = make(4, NULL);
    for (int v = 0; v < 3; v++) {
        cl_uint a[6];
        for (int i = 0; i < 6; i++)
            a[i] = kat[v][i];
        check_ok(launch_1d(ctx, k, "philox_words", 1, 1, KARG(out->buf), KARG(a[0]),
                           KARG(a[1]), KARG(a[2]), KARG(a[3]), KARG(a[4]), KARG(a[5])));
        uint32_t got[4], host[4];
        check_ok(kiln_tensor_download(out, (float *)got, 4));
        philox_host(kat[v], (uint64_t)kat[v][5] << 32 | kat[v][4], host);
        for (int i = 0; i < 4; i++) {
            ck_assert_msg(got[i] == kat[v][6 + i], "vector %d word %d: %08x, expected %08x", v,
                          i, got[i], kat[v][6 + i]);
            ck_assert_msg(host[i] == kat[v][6 + i], "host vector %d word %d: %08x, expected "
                          "%08x", v, i, host[i], kat[v][6 + i]);
        }
    }
    kiln_tensor_free(out);
}
END_TEST

typedef struct {
    op_attrs a;
    op_args c;
    kiln_tensor *x, *y, *dy, *dx;
    float *host_x, *host_y;
} drop;

static void drop_setup(drop *d, float p, uint64_t seed, uint64_t counter, int training)
{
    memset(d, 0, sizeof *d);
    d->host_x = test_alloc(N_BIG * sizeof(float));
    d->host_y = test_alloc(N_BIG * sizeof(float));
    rng_fill(test_rng(), d->host_x, N_BIG, 0.5f, 2.0f); /* never zero */
    d->x = make(N_BIG, d->host_x);
    d->y = make(N_BIG, NULL);
    d->a = op_attrs_default();
    d->a.p = p;
    d->a.seed = seed;
    d->a.counter = counter;
    d->c = (op_args){.ctx = test_ctx(), .attrs = &d->a, .training = training, .in = {d->x},
                     .out = d->y};
    check_ok(op_forward(OP_DROPOUT, &d->c));
    check_ok(kiln_tensor_download(d->y, d->host_y, N_BIG));
}

static void drop_teardown(drop *d)
{
    kiln_tensor_free(d->x);
    kiln_tensor_free(d->y);
    free(d->host_x);
    free(d->host_y);
}

START_TEST(kept_fraction_and_scaling)
{
    static const float ps[] = {0.1f, 0.3f, 0.5f, 0.9f};
    float p = ps[_i];
    drop d;
    drop_setup(&d, p, 1234, 0, 1);
    float scale = 1.0f / (1.0f - p);
    size_t kept = 0;
    for (size_t i = 0; i < N_BIG; i++) {
        if (d.host_y[i] == 0.0f)
            continue;
        kept++;
        ck_assert_msg(d.host_y[i] == d.host_x[i] * scale, "element %zu: %.9g is not %.9g * %.9g",
                      i, d.host_y[i], d.host_x[i], scale);
    }
    double mean = (double)N_BIG * (1.0 - p), sigma = sqrt((double)N_BIG * p * (1.0 - p));
    ck_assert_msg(fabs((double)kept - mean) <= 5 * sigma,
                  "p = %g: kept %zu of %u, expected %.0f ± %.0f (5σ)", p, kept, N_BIG, mean,
                  5 * sigma);
    drop_teardown(&d);
}
END_TEST

START_TEST(eval_mode_and_p_zero_are_identity)
{
    drop d;
    drop_setup(&d, 0.5f, 7, 0, 0);
    ck_assert(memcmp(d.host_x, d.host_y, N_BIG * sizeof(float)) == 0);
    drop_teardown(&d);
    drop_setup(&d, 0.0f, 7, 0, 1);
    ck_assert(memcmp(d.host_x, d.host_y, N_BIG * sizeof(float)) == 0);
    drop_teardown(&d);
}
END_TEST

START_TEST(masks_follow_seed_and_counter)
{
    drop a, b;
    drop_setup(&a, 0.5f, 42, 3, 1);
    drop_setup(&b, 0.5f, 42, 3, 1);
    /* the inputs differ; which elements were dropped must not */
    size_t differ = 0;
    for (size_t i = 0; i < N_BIG; i++)
        differ += (a.host_y[i] == 0) != (b.host_y[i] == 0);
    ck_assert_uint_eq(differ, 0);
    drop_teardown(&b);
    drop_setup(&b, 0.5f, 42, 4, 1); /* the next step's mask differs */
    differ = 0;
    for (size_t i = 0; i < N_BIG; i++)
        differ += (a.host_y[i] == 0) != (b.host_y[i] == 0);
    ck_assert_msg(differ > N_BIG / 3, "counter 3 and 4 share %zu of %u mask bits",
                  N_BIG - differ, N_BIG);
    drop_teardown(&a);
    drop_teardown(&b);
}
END_TEST

START_TEST(backward_uses_the_forward_mask)
{
    drop d;
    drop_setup(&d, 0.3f, 99, 17, 1);
    float *ones = test_alloc(N_BIG * sizeof(float)), *dx = test_alloc(N_BIG * sizeof(float));
    for (size_t i = 0; i < N_BIG; i++)
        ones[i] = 1.0f;
    kiln_tensor *dy = make(N_BIG, ones), *dxt = make(N_BIG, NULL);
    d.c.dout = dy;
    d.c.din[0] = dxt;
    check_ok(op_backward(OP_DROPOUT, &d.c));
    check_ok(kiln_tensor_download(dxt, dx, N_BIG));
    float scale = 1.0f / (1.0f - 0.3f);
    for (size_t i = 0; i < N_BIG; i++)
        ck_assert_msg(dx[i] == (d.host_y[i] == 0.0f ? 0.0f : scale),
                      "element %zu: gradient %g where the output was %g", i, dx[i],
                      d.host_y[i]);
    kiln_tensor_free(dy);
    kiln_tensor_free(dxt);
    free(ones);
    free(dx);
    drop_teardown(&d);
}
END_TEST

/* Forward and backward, element by element, against the host's stream, at
 * sizes below, at and around the chunk of 64 (the tail kernel alone, the
 * full kernel alone, both), with both halves of seed and counter used. */
START_TEST(masks_match_the_host_stream)
{
    static const size_t sizes[] = {1, 7, 63, 64, 65, 127, 4099};
    size_t n = sizes[_i];
    const float p = 0.3f, scale = 1.0f / (1.0f - p);
    const uint64_t seed = 0x0123456789ABCDEFull, counter = 0x500000007ull;
    float *x = test_alloc(n * sizeof *x), *dy = test_alloc(n * sizeof *dy);
    float *y = test_alloc(n * sizeof *y), *dx = test_alloc(n * sizeof *dx);
    rng_fill(test_rng(), x, n, 0.5f, 2.0f);
    rng_fill(test_rng(), dy, n, -2.0f, -0.5f);
    kiln_tensor *xt = make(n, x), *yt = make(n, NULL), *dyt = make(n, dy), *dxt = make(n, NULL);
    op_attrs a = op_attrs_default();
    a.p = p;
    a.seed = seed;
    a.counter = counter;
    op_args c = {.ctx = test_ctx(), .attrs = &a, .training = 1, .in = {xt}, .out = yt,
                 .dout = dyt, .din = {dxt}};
    check_ok(op_forward(OP_DROPOUT, &c));
    check_ok(op_backward(OP_DROPOUT, &c));
    check_ok(kiln_tensor_download(yt, y, n));
    check_ok(kiln_tensor_download(dxt, dx, n));
    for (size_t i = 0; i < n; i++) {
        int keep = host_kept(i, p, seed, counter);
        ck_assert_msg(y[i] == (keep ? x[i] * scale : 0.0f),
                      "n = %zu, element %zu: %.9g, expected %s", n, i, y[i],
                      keep ? "kept" : "dropped");
        ck_assert_msg(dx[i] == (keep ? dy[i] * scale : 0.0f),
                      "n = %zu, element %zu: gradient %.9g, expected %s", n, i, dx[i],
                      keep ? "kept" : "dropped");
    }
    kiln_tensor_free(xt);
    kiln_tensor_free(yt);
    kiln_tensor_free(dyt);
    kiln_tensor_free(dxt);
    free(x);
    free(dy);
    free(y);
    free(dx);
}
END_TEST

START_TEST(p_outside_range_is_an_error)
{
    op_attrs a = op_attrs_default();
    kiln_shape in = shape_make(1, 4, 0, 0, 0);
    op_shapes s;
    a.p = 1.0f;
    ck_assert_int_eq(op_infer(OP_DROPOUT, &a, &in, &s), KILN_ERR_INVALID_ARGUMENT);
    a.p = -0.1f;
    ck_assert_int_eq(op_infer(OP_DROPOUT, &a, &in, &s), KILN_ERR_INVALID_ARGUMENT);
    a.p = NAN;
    ck_assert_int_eq(op_infer(OP_DROPOUT, &a, &in, &s), KILN_ERR_INVALID_ARGUMENT);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("dropout");
    TCase *tc = tcase_create("dropout");
    tcase_add_test(tc, philox_known_answers);
    tcase_add_loop_test(tc, kept_fraction_and_scaling, 0, 4);
    tcase_add_test(tc, eval_mode_and_p_zero_are_identity);
    tcase_add_test(tc, masks_follow_seed_and_counter);
    tcase_add_test(tc, backward_uses_the_forward_mask);
    tcase_add_loop_test(tc, masks_match_the_host_stream, 0, 7);
    tcase_add_test(tc, p_outside_range_is_an_error);
    suite_add_tcase(s, tc);
    return test_run(s);
}
