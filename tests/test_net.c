/* The network API (kiln_net_*): training steps on host arrays, short
 * batches, weights by name, files of other models, bad input, and
 * networks training in separate threads. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "net/net.h"

static const char mlp[] = "[input]\nshape = 7\n[linear]\nout = 13\n[batchnorm]\n[relu]\n"
                          "[linear]\nout = 3\n[train]\noptimizer = sgd\nlr = 0.1\n"
                          "momentum = 0.9\nseed = 5\n";

static kiln_model *model(const char *text)
{
    kiln_model *m;
    check_ok(kiln_model_parse(text, "net.ini", &m));
    return m;
}

/* n samples of 7 features and labels 0..2. */
static void data(float *x, float *y, size_t n)
{
    rng_fill(test_rng(), x, n * 7, -1.0f, 1.0f);
    for (size_t i = 0; i < n; i++)
        y[i] = (float)(i % 3);
}


/* A step on 5 samples through a network made for 16 (a short batch on a
 * pipeline that shares its weights) gives exactly the weights of a
 * network made for 5: batch statistics and the mean loss are the short
 * batch's own. */
START_TEST(short_batches_train_as_their_own_batch)
{
    kiln_model *m = model(mlp);
    kiln_net *big, *small;
    check_ok(kiln_net_create(test_ctx(), m, 16, &big));
    check_ok(kiln_net_create(test_ctx(), m, 5, &small));
    float x[16 * 7], y[16], lb, ls;
    data(x, y, 16);
    for (int step = 0; step < 3; step++) {
        check_ok(kiln_net_train_step(big, x, y, 5, &lb));
        check_ok(kiln_net_train_step(small, x, y, 5, &ls));
        ck_assert_msg(lb == ls, "step %d: loss %g against %g", step, lb, ls);
    }
    size_t nb, ns;
    float *wb = test_net_weights(big, &nb), *ws = test_net_weights(small, &ns);
    ck_assert_uint_eq(nb, ns);
    ck_assert_msg(memcmp(wb, ws, nb * sizeof *wb) == 0, "short batches changed other weights");
    check_ok(kiln_net_train_step(big, x, y, 16, &lb)); /* and the full batch still works */
    ck_assert(isfinite(lb));
    kiln_net_free(big);
    kiln_net_free(small);
    free(wb);
    free(ws);
    kiln_model_free(m);
}
END_TEST

/* Weights by name: a set value reads back, and forward uses it. */
START_TEST(weights_by_name_round_trip)
{
    kiln_model *m = model(mlp);
    kiln_net *net;
    check_ok(kiln_net_create(test_ctx(), m, 4, &net));
    ck_assert_uint_eq(kiln_net_input_size(net), 7);
    ck_assert_uint_eq(kiln_net_output_size(net), 3);
    ck_assert_uint_eq(kiln_net_param_count(net), 9); /* 2 linear x 2, batchnorm 5 */
    kiln_param_info p;
    check_ok(kiln_net_param_info(net, 0, &p));
    ck_assert_str_eq(p.name, "0.weight");
    ck_assert_uint_eq(p.shape[0], 13);
    ck_assert_uint_eq(p.shape[1], 7);
    ck_assert(p.trainable);
    check_ok(kiln_net_param_info(net, 6, &p));
    ck_assert_str_eq(p.name, "1.num_batches_tracked");
    ck_assert(p.is_int64 && !p.trainable);
    float w[39], back[39];
    rng_fill(test_rng(), w, 39, -1.0f, 1.0f);
    check_ok(kiln_net_set(net, "3.weight", w, 39));
    check_ok(kiln_net_get(net, "3.weight", back, 39));
    ck_assert(memcmp(w, back, sizeof w) == 0);
    float zero[3] = {0, 0, 0}, x[7] = {0}, y[3];
    check_ok(kiln_net_set(net, "3.bias", zero, 3));
    memset(w, 0, sizeof w);
    check_ok(kiln_net_set(net, "3.weight", w, 39));
    check_ok(kiln_net_forward(net, x, 1, y));
    ck_assert(y[0] == 0 && y[1] == 0 && y[2] == 0);
    ck_assert_int_eq(kiln_net_get(net, "3.weight", back, 38), KILN_ERR_SHAPE);
    ck_assert_int_eq(kiln_net_get(net, "fc.weight", back, 39), KILN_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(kiln_last_error(), "it has 0.weight, 0.bias"), "%s",
                  kiln_last_error());
    w[3] = NAN;
    ck_assert_int_eq(kiln_net_set(net, "3.weight", w, 39), KILN_ERR_NUMERIC);
    kiln_net_free(net);
    kiln_model_free(m);
}
END_TEST

/* A fresh network with every weight and buffer of net. */
static kiln_net *copy_of(kiln_net *net, kiln_model *m, size_t batch)
{
    kiln_net *copy;
    check_ok(kiln_net_create(test_ctx(), m, batch, &copy));
    test_copy_weights(net, copy);
    return copy;
}

/* Samples of eval_forward_follows_every_change_of_the_weights: more rows
 * than gemv_rows takes, so that kiln's GEMM reads the linear layers'
 * weights from panels packed once per change (blas_packed). */
#define EVAL_BATCH 24

/* The models of that test: the MLP, and a convolution over 4 channels
 * (36 taps a pixel: conv_pixels, whose weights are packed once too) with
 * a batchnorm, both folded in eval mode. */
static const struct {
    const char *text;
    size_t in, bn; /* inputs a sample; the batchnorm's channels (node 1) */
} evaluated[] = {
    {mlp, 7, 13},
    {"[input]\nshape = 4x5x5\n[conv2d]\nout = 6\nsize = 3\npad = 1\n[batchnorm]\n[relu]\n"
     "[flatten]\n[linear]\nout = 3\n[train]\noptimizer = sgd\nlr = 0.1\nmomentum = 0.9\n",
     100, 6},
};

/* net's eval-mode outputs at n = batch and n = 3 (a second pipeline) are
 * those of a fresh copy that never ran: the batchnorm folded into the
 * layer before it, and the weights' packed panels, are recomputed after
 * every change of the weights. */
static void expect_eval_as_fresh(kiln_net *net, kiln_model *m, const float *x, const char *after)
{
    kiln_net *copy = copy_of(net, m, EVAL_BATCH);
    check_ok(kiln_net_set_training(net, 0));
    check_ok(kiln_net_set_training(copy, 0));
    float y[EVAL_BATCH * 3], want[EVAL_BATCH * 3];
    for (size_t n = EVAL_BATCH; n > 0; n = n == EVAL_BATCH ? 3 : 0) {
        check_ok(kiln_net_forward(net, x, n, y));
        check_ok(kiln_net_forward(copy, x, n, want));
        ck_assert_msg(memcmp(y, want, n * 3 * sizeof *y) == 0,
                      "eval output at batch %zu after %s differs from a fresh network's", n,
                      after);
    }
    kiln_net_free(copy);
}

START_TEST(eval_forward_follows_every_change_of_the_weights)
{
    kiln_model *m = model(evaluated[_i].text);
    kiln_net *net;
    size_t in = evaluated[_i].in, bn = evaluated[_i].bn;
    check_ok(kiln_net_create(test_ctx(), m, EVAL_BATCH, &net));
    float *x = test_alloc(EVAL_BATCH * in * sizeof *x), y[EVAL_BATCH];
    rng_fill(test_rng(), x, EVAL_BATCH * in, -1.0f, 1.0f);
    for (size_t i = 0; i < EVAL_BATCH; i++)
        y[i] = (float)(i % 3);
    expect_eval_as_fresh(net, m, x, "creation");
    check_ok(kiln_net_set_training(net, 1));
    check_ok(kiln_net_train_step(net, x, y, EVAL_BATCH, NULL));
    expect_eval_as_fresh(net, m, x, "a training step");
    check_ok(kiln_net_set_training(net, 1));
    check_ok(kiln_net_train_step(net, x, y, 3, NULL));
    expect_eval_as_fresh(net, m, x, "a short training step");
    char path[512];
    snprintf(path, sizeof path, "%s/eval_fold.safetensors", test_tmpdir());
    check_ok(kiln_net_save(net, path));
    float *var = test_alloc(bn * sizeof *var);
    for (size_t i = 0; i < bn; i++)
        var[i] = 0.25f + (float)i;
    check_ok(kiln_net_set(net, "1.running_var", var, bn));
    free(var);
    expect_eval_as_fresh(net, m, x, "kiln_net_set");
    check_ok(kiln_net_load(net, path));
    expect_eval_as_fresh(net, m, x, "kiln_net_load");
    free(x);
    kiln_net_free(net);
    kiln_model_free(m);
}
END_TEST

/* On PoCL, small forwards run on its basic device, on the calling thread
 * (net.c, INLINE_MACS): each output bit for bit what the pthread device
 * computes, before and after training steps there, in eval and in
 * training mode (dropout's draws and batch statistics). The other network
 * is on a context that KILN_INLINE=0 leaves without the inline lane; both
 * start from the same weights. Elsewhere (rusticl, GPUs) there is no lane
 * and nothing to compare. */
START_TEST(small_forwards_run_inline_with_the_same_bits)
{
    kiln_ctx *ctx = test_ctx(), *plain;
    if (!ctx_has_inline(ctx))
        return;
    setenv("KILN_INLINE", "0", 1);
    kiln_status opened = kiln_ctx_create(NULL, &plain);
    unsetenv("KILN_INLINE");
    check_ok(opened);
    ck_assert_msg(!ctx_has_inline(plain), "KILN_INLINE=0 still opened the inline lane");
    kiln_model *m = model("[input]\nshape = 7\n[linear]\nout = 13\n[batchnorm]\n[relu]\n"
                          "[dropout]\np = 0.3\n[linear]\nout = 3\n[train]\noptimizer = sgd\n"
                          "lr = 0.1\nmomentum = 0.9\nseed = 5\n");
    kiln_net *net, *other;
    check_ok(kiln_net_create(ctx, m, 8, &net));
    check_ok(kiln_net_create(plain, m, 8, &other));
    float x[8 * 7], y[8], a[8 * 3], b[8 * 3];
    data(x, y, 8);
    test_copy_weights(net, other);
    for (int round = 0; round < 3; round++) {
        check_ok(kiln_net_train_step(net, x, y, 8, NULL));
        check_ok(kiln_net_train_step(other, x, y, 8, NULL));
        for (int training = 0; training < 2; training++) {
            check_ok(kiln_net_set_training(net, training));
            check_ok(kiln_net_set_training(other, training));
            uint64_t before = ctx->inline_runs;
            for (size_t n = 2; n <= 8; n += 3) { /* batchnorm trains on 2 or more */
                check_ok(kiln_net_forward(net, x, n, a));
                check_ok(kiln_net_forward(other, x, n, b));
                ck_assert_msg(memcmp(a, b, n * 3 * sizeof *a) == 0, "round %d, %s mode: %zu "
                              "samples inline differ from the pthread device's", round,
                              training ? "training" : "eval", n);
                ck_assert_msg(!ctx->inlined, "the forward left the inline lane in place");
            }
            ck_assert_uint_eq(ctx->inline_runs - before, 3);
        }
    }
    ck_assert_uint_eq(plain->inline_runs, 0);
    kiln_net_free(net);
    kiln_net_free(other);
    kiln_ctx_free(plain);
    kiln_model_free(m);
}
END_TEST

/* An input (256 x 97 floats, 97 KB) is read where it lies on CPUs
 * (net.c, borrow_input; where CLBlast runs the products, only from a
 * start at a multiple of 64 bytes) and copied elsewhere: either way the
 * outputs are those of one sample at a time (through linear_one and
 * linear_chain), a change of the caller's array between calls is seen, and the
 * network's own input buffer is back in place for the copies and
 * training steps after. Round 1 takes the array one float past an
 * aligned start. */
START_TEST(large_inputs_give_the_outputs_of_one_sample_at_a_time)
{
    enum { N = 256, IN = 97 };
    kiln_model *m = model("[input]\nshape = 97\n[linear]\nout = 5\n[relu]\n[linear]\nout = 3\n"
                          "[train]\noptimizer = sgd\nlr = 0.1\n");
    kiln_net *net;
    check_ok(kiln_net_create(test_ctx(), m, N, &net));
    float *buf = aligned_alloc(64, (N * IN + 16) * sizeof *buf), *y = test_alloc(N * 3 * sizeof *y);
    ck_assert_ptr_nonnull(buf);
    float one[3], t[N], *x = buf;
    for (int round = 0; round < 2; round++) {
        x = buf + round;
        rng_fill(test_rng(), x, N * IN, -1.0f, 1.0f);
        check_ok(kiln_net_forward(net, x, N, y));
        for (size_t i = 0; i < N; i += 51) {
            check_ok(kiln_net_forward(net, x + i * IN, 1, one));
            for (int k = 0; k < 3; k++)
                ck_assert_msg(fabsf(one[k] - y[i * 3 + k]) <= 1e-5f * (1.0f + fabsf(one[k])),
                              "round %d, sample %zu output %d: %g alone, %g in the batch",
                              round, i, k, (double)one[k], (double)y[i * 3 + k]);
        }
    }
    for (size_t i = 0; i < N; i++)
        t[i] = (float)(i % 3);
    check_ok(kiln_net_set_training(net, 1));
    float before, after;
    check_ok(kiln_net_train_step(net, x, t, N, &before));
    for (int s = 0; s < 20; s++)
        check_ok(kiln_net_train_step(net, x, t, N, &after));
    ck_assert_msg(after < before, "the loss went from %g to %g", (double)before, (double)after);
    free(buf);
    free(y);
    kiln_net_free(net);
    kiln_model_free(m);
}
END_TEST

/* In eval mode a dropout passes its input on without a launch, whether it
 * sits between layers, before a softmax head (whose logits a loss reads)
 * or last: the outputs are those of the model without it, bit for bit,
 * and the middle one costs no launch. */
START_TEST(eval_skips_dropout_without_a_launch)
{
    static const char *const with[] = {
        "[input]\nshape = 7\n[linear]\nout = 13\n[relu]\n[dropout]\np = 0.5\n"
        "[linear]\nout = 3\n[softmax]\n",
        "[input]\nshape = 7\n[linear]\nout = 13\n[relu]\n[linear]\nout = 3\n"
        "[dropout]\np = 0.5\n[softmax]\n",
        "[input]\nshape = 7\n[linear]\nout = 13\n[relu]\n[linear]\nout = 3\n"
        "[dropout]\np = 0.5\n",
    };
    static const char *const without[] = {
        "[input]\nshape = 7\n[linear]\nout = 13\n[relu]\n[linear]\nout = 3\n[softmax]\n",
        "[input]\nshape = 7\n[linear]\nout = 13\n[relu]\n[linear]\nout = 3\n[softmax]\n",
        "[input]\nshape = 7\n[linear]\nout = 13\n[relu]\n[linear]\nout = 3\n",
    };
    float x[5 * 7], y[5], got[5 * 3], want[5 * 3];
    data(x, y, 5);
    for (int i = 0; i < 3; i++) {
        kiln_model *a = model(with[i]), *b = model(without[i]);
        kiln_net *na, *nb;
        check_ok(kiln_net_create(test_ctx(), a, 5, &na));
        check_ok(kiln_net_create(test_ctx(), b, 5, &nb));
        float w0[13 * 7], b0[13], w1[3 * 13], b1[3];
        rng_fill(test_rng(), w0, 13 * 7, -0.5f, 0.5f);
        rng_fill(test_rng(), b0, 13, -0.5f, 0.5f);
        rng_fill(test_rng(), w1, 3 * 13, -0.5f, 0.5f);
        rng_fill(test_rng(), b1, 3, -0.5f, 0.5f);
        const char *second = i == 0 ? "3" : "2";
        char wname[32], bname[32];
        snprintf(wname, sizeof wname, "%s.weight", second);
        snprintf(bname, sizeof bname, "%s.bias", second);
        kiln_net *nets[2] = {na, nb};
        for (int k = 0; k < 2; k++) {
            check_ok(kiln_net_set(nets[k], "0.weight", w0, 13 * 7));
            check_ok(kiln_net_set(nets[k], "0.bias", b0, 13));
            check_ok(kiln_net_set(nets[k], k == 0 ? wname : "2.weight", w1, 3 * 13));
            check_ok(kiln_net_set(nets[k], k == 0 ? bname : "2.bias", b1, 3));
        }
        check_ok(kiln_net_forward(nb, x, 5, want));
        uint64_t before = kiln_ctx_launches(test_ctx());
        check_ok(kiln_net_forward(na, x, 5, got));
        uint64_t with_dropout = kiln_ctx_launches(test_ctx()) - before;
        before = kiln_ctx_launches(test_ctx());
        check_ok(kiln_net_forward(nb, x, 5, want));
        uint64_t plain = kiln_ctx_launches(test_ctx()) - before;
        ck_assert_msg(memcmp(got, want, sizeof got) == 0, "model %d: eval with dropout differs",
                      i);
        if (i == 0)
            ck_assert_msg(with_dropout == plain, "a dropout in eval launched %llu times more",
                          (unsigned long long)(with_dropout - plain));
        kiln_net_free(na);
        kiln_net_free(nb);
        kiln_model_free(a);
        kiln_model_free(b);
    }
}
END_TEST

/* Bad input is refused with a message, never a crash. */
START_TEST(bad_input_is_refused_with_a_message)
{
    kiln_model *m = model(mlp);
    kiln_net *net;
    check_ok(kiln_net_create(test_ctx(), m, 4, &net));
    float x[8 * 7], y[8];
    data(x, y, 8);
    ck_assert_int_eq(kiln_net_train_step(net, x, y, 5, NULL), KILN_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(kiln_last_error(), "1 to 4"), "%s", kiln_last_error());
    ck_assert_int_eq(kiln_net_train_step(net, x, y, 0, NULL), KILN_ERR_INVALID_ARGUMENT);
    y[2] = 3;
    ck_assert_int_eq(kiln_net_train_step(net, x, y, 4, NULL), KILN_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(kiln_last_error(), "label of sample 2 is 3"), "%s", kiln_last_error());
    y[2] = 0.5f;
    ck_assert_int_eq(kiln_net_train_step(net, x, y, 4, NULL), KILN_ERR_INVALID_ARGUMENT);
    y[2] = 2;
    x[9] = NAN; /* refused before it can reach the weights, anomaly checks on or off */
    ck_assert_int_eq(kiln_net_train_step(net, x, y, 4, NULL), KILN_ERR_NUMERIC);
    check_ok(kiln_net_set_detect_anomaly(net, 1));
    ck_assert_int_eq(kiln_net_forward(net, x, 4, y), KILN_ERR_NUMERIC);
    ck_assert_msg(strstr(kiln_last_error(), "input 2 of sample 1 is nan"), "%s",
                  kiln_last_error());
    ck_assert_int_eq(kiln_net_forward(NULL, x, 1, y), KILN_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kiln_net_configure(net, "optimizer", "lbfgs"), KILN_ERR_MODEL);
    ck_assert_int_eq(kiln_net_configure(net, "lr", "-1"), KILN_ERR_MODEL);
    ck_assert_int_eq(kiln_net_configure(net, "no_such_key", "1"), KILN_ERR_MODEL);
    check_ok(kiln_net_configure(net, "lr", "0.05"));
    ck_assert(fabs(kiln_net_lr(net) - 0.05) < 1e-7);
    float bad_std = 0, mean = 0;
    ck_assert_int_eq(kiln_net_set_normalization(net, &mean, &bad_std, 1),
                     KILN_ERR_INVALID_ARGUMENT);
    kiln_net_free(net);
    kiln_model_free(m);
}
END_TEST

/* Without a communicator (NULL) a network is alone, and sync_batchnorm
 * changes nothing; a kiln built without MPI refuses a communicator. */
START_TEST(a_communicator_needs_mpi_and_alone_is_the_default)
{
    kiln_model *m = model(mlp);
    kiln_net *a, *b;
    check_ok(kiln_net_create(test_ctx(), m, 6, &a));
    check_ok(kiln_net_create(test_ctx(), m, 6, &b));
    check_ok(kiln_net_set_comm(a, NULL));
    ck_assert_int_eq(kiln_net_configure(a, "sync_batchnorm", "maybe"), KILN_ERR_MODEL);
    ck_assert_msg(strstr(kiln_last_error(), "true or false"), "%s", kiln_last_error());
    check_ok(kiln_net_configure(a, "sync_batchnorm", "true"));
    float x[6 * 7], y[6];
    data(x, y, 6);
    ck_assert_int_eq(kiln_net_train_step(a, x, y, 0, NULL), KILN_ERR_INVALID_ARGUMENT);
    check_ok(kiln_net_train_step(a, x, y, 6, NULL));
    check_ok(kiln_net_train_step(b, x, y, 6, NULL));
    size_t na, nb;
    float *wa = test_net_weights(a, &na), *wb = test_net_weights(b, &nb);
    ck_assert(na == nb && memcmp(wa, wb, na * sizeof *wa) == 0);
#ifndef KILN_MPI
    int comm = 0; /* stands for an MPI_Comm */
    ck_assert_int_eq(kiln_net_set_comm(a, &comm), KILN_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(kiln_last_error(), "without MPI"), "%s", kiln_last_error());
#endif
    ck_assert_int_eq(kiln_net_set_comm(NULL, NULL), KILN_ERR_INVALID_ARGUMENT);
    free(wa);
    free(wb);
    kiln_net_free(a);
    kiln_net_free(b);
    kiln_model_free(m);
}
END_TEST

/* A checkpoint of another model is refused, naming every difference. */
START_TEST(another_models_checkpoint_names_every_difference)
{
    kiln_model *a = model(mlp);
    kiln_model *b = model("[input]\nshape = 7\n[linear]\nout = 12\n[relu]\n[linear]\nout = 3\n"
                          "name = head\n");
    kiln_net *na, *nb;
    check_ok(kiln_net_create(test_ctx(), a, 2, &na));
    check_ok(kiln_net_create(test_ctx(), b, 2, &nb));
    char path[512];
    snprintf(path, sizeof path, "%s/other.safetensors", test_tmpdir());
    check_ok(kiln_net_save(nb, path));
    ck_assert_int_eq(kiln_net_load(na, path), KILN_ERR_IO);
    const char *e = kiln_last_error();
    ck_assert_msg(strstr(e, "0.weight has shape [12,7]; the model expects 13x7") &&
                      strstr(e, "1.running_mean is missing") && strstr(e, "3.bias is missing") &&
                      strstr(e, "head.weight is not in the model"),
                  "%s", e);
    check_ok(kiln_net_save(na, path)); /* and its own loads back */
    check_ok(kiln_net_load(na, path));
    kiln_net_free(na);
    kiln_net_free(nb);
    kiln_model_free(a);
    kiln_model_free(b);
}
END_TEST

typedef struct {
    kiln_model *m;
    float *w;
    size_t n;
    kiln_status st;
} thread_job;

/* Opens a context of its own, trains 20 steps and keeps the weights. */
static void *train_alone(void *arg)
{
    thread_job *j = arg;
    kiln_ctx *ctx = NULL;
    kiln_net *net = NULL;
    float x[32 * 7], y[32], loss;
    kiln_rng rng;
    rng_seed(&rng, 99);
    rng_fill(&rng, x, 32 * 7, -1.0f, 1.0f);
    for (int i = 0; i < 32; i++)
        y[i] = (float)(i % 3);
    j->st = kiln_ctx_create(NULL, &ctx);
    if (j->st == KILN_OK)
        j->st = kiln_net_create(ctx, j->m, 32, &net);
    for (int s = 0; s < 20 && j->st == KILN_OK; s++)
        j->st = kiln_net_train_step(net, x, y, s % 2 ? 32 : 19, &loss);
    if (j->st == KILN_OK) {
        j->n = 13 * 7;
        j->w = malloc(j->n * sizeof *j->w);
        j->st = kiln_net_get(net, "0.weight", j->w, j->n);
    }
    kiln_net_free(net);
    kiln_ctx_free(ctx);
    return NULL;
}

/* Networks on separate contexts train in separate threads at once, and
 * each ends with the weights it has when trained alone. */
START_TEST(networks_train_in_separate_threads)
{
    kiln_model *m1 = model(mlp), *m2 = model(mlp);
    thread_job alone = {.m = m1}, jobs[2] = {{.m = m1}, {.m = m2}};
    train_alone(&alone);
    check_ok(alone.st);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, train_alone, &jobs[i]), 0);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        ck_assert_msg(jobs[i].st == KILN_OK, "thread %d failed", i);
        ck_assert_msg(memcmp(jobs[i].w, alone.w, alone.n * sizeof *alone.w) == 0,
                      "thread %d ends with other weights than a run alone", i);
        free(jobs[i].w);
    }
    free(alone.w);
    kiln_model_free(m1);
    kiln_model_free(m2);
}
END_TEST

/* kiln_net_fit on arrays: a separable problem is learnt, callbacks see
 * every epoch and step (the last batch short), and a callback stops. */
static int count_calls(void *user, const kiln_progress *p)
{
    int *calls = user;
    calls[p->batch ? 0 : 1]++;
    return 0;
}

static int stop_at_epoch_2(void *user, const kiln_progress *p)
{
    (void)user;
    return p->epoch == 2;
}

START_TEST(fit_on_arrays_with_callbacks)
{
    kiln_model *m = model(mlp);
    kiln_net *net;
    check_ok(kiln_net_create(test_ctx(), m, 32, &net));
    enum { N = 300 };
    float *x = test_alloc(N * 7 * sizeof *x), y[N];
    rng_fill(test_rng(), x, N * 7, -1.0f, 1.0f);
    for (int i = 0; i < N; i++)
        y[i] = x[i * 7] > 0.3f ? 2.0f : x[i * 7] > -0.3f ? 1.0f : 0.0f;
    kiln_data *train;
    check_ok(kiln_data_from_arrays(x, y, N, 7, 1, &train));
    ck_assert_uint_eq(kiln_data_classes(train), 3);
    int calls[2] = {0, 0};
    kiln_train_options o;
    kiln_train_options_init(&o);
    o.train_data = train;
    o.test_data = train;
    o.epochs = 8;
    o.on_step = count_calls;
    o.on_epoch = count_calls;
    o.user = calls;
    kiln_train_report r;
    check_ok(kiln_net_fit(net, &o, &r));
    /* 270 training samples after the 10 % validation share: 8 full batches and one of 14 */
    ck_assert_int_eq(calls[0], 8 * 9);
    ck_assert_int_eq(calls[1], 8);
    ck_assert_msg(r.test_accuracy > 0.9, "accuracy %g", r.test_accuracy);
    o.on_step = NULL;
    o.on_epoch = stop_at_epoch_2;
    check_ok(kiln_net_fit(net, &o, &r));
    ck_assert(r.interrupted && r.epochs_run == 2);
    kiln_train_options unset = {0};
    ck_assert_int_eq(kiln_net_fit(net, &unset, &r), KILN_ERR_INVALID_ARGUMENT);
    kiln_data_free(train);
    free(x);
    kiln_net_free(net);
    kiln_model_free(m);
}
END_TEST

/* The chapter's perceptron: a trailing sigmoid with bce is the prediction
 * head. One SGD step's gradient equals PyTorch's BCELoss(Sigmoid(z)) in
 * float64, the model learns separable data to at least 98 %, and forward
 * gives probabilities that agree with the evaluation. */
START_TEST(sigmoid_head_trains_as_bce_with_logits)
{
    kiln_model *m = model("[input]\nshape = 2\n[linear]\nout = 1\n[sigmoid]\n[train]\n"
                          "loss = bce\noptimizer = sgd\nlr = 0.5\nbatch = 16\n"
                          "normalize = none\nepochs = 30\n");
    kiln_net *net;
    check_ok(kiln_net_create(test_ctx(), m, 16, &net));
    ck_assert_int_eq(kiln_net_head(net), KILN_HEAD_SIGMOID);
    enum { N = 400 };
    float *x = test_alloc(N * 2 * sizeof *x), y[N], w[2], b, w2[2], b2;
    rng_fill(test_rng(), x, N * 2, -1.0f, 1.0f);
    for (int i = 0; i < N; i++)
        y[i] = x[2 * i] + 2 * x[2 * i + 1] > 0.1f;
    /* the gradient of one step on 11 samples, against float64 */
    check_ok(kiln_net_get(net, "0.weight", w, 2));
    check_ok(kiln_net_get(net, "0.bias", &b, 1));
    float loss;
    check_ok(kiln_net_train_step(net, x, y, 11, &loss));
    check_ok(kiln_net_get(net, "0.weight", w2, 2));
    check_ok(kiln_net_get(net, "0.bias", &b2, 1));
    double gw[2] = {0, 0}, gb = 0, want_loss = 0;
    for (int i = 0; i < 11; i++) {
        double z = (double)w[0] * x[2 * i] + (double)w[1] * x[2 * i + 1] + b;
        double p = 1 / (1 + exp(-z)), t = y[i];
        want_loss -= (t * log(p) + (1 - t) * log(1 - p)) / 11; /* BCELoss(Sigmoid(z)) */
        gw[0] += (p - t) * x[2 * i] / 11;
        gw[1] += (p - t) * x[2 * i + 1] / 11;
        gb += (p - t) / 11;
    }
    double got[3] = {(w[0] - w2[0]) / 0.5, (w[1] - w2[1]) / 0.5, (b - b2) / 0.5};
    double want[3] = {gw[0], gw[1], gb};
    for (int k = 0; k < 3; k++)
        ck_assert_msg(fabs(got[k] - want[k]) < 1e-5, "gradient %d: %g, float64 %g", k, got[k],
                      want[k]);
    ck_assert_msg(fabs(loss - want_loss) < 1e-5, "loss %g, float64 %g", loss, want_loss);
    kiln_data *d;
    check_ok(kiln_data_from_arrays(x, y, N, 2, 1, &d));
    kiln_train_options o;
    kiln_train_options_init(&o);
    o.train_data = d;
    o.test_data = d;
    kiln_train_report r;
    check_ok(kiln_net_fit(net, &o, &r));
    ck_assert_msg(r.test_accuracy >= 0.98, "perceptron accuracy %g", r.test_accuracy);
    float *p = test_alloc(N * sizeof *p);
    check_ok(kiln_net_forward(net, x, N, p));
    int right = 0;
    for (int i = 0; i < N; i++) {
        ck_assert(p[i] >= 0 && p[i] <= 1);
        right += (p[i] >= 0.5f) == (y[i] == 1);
    }
    ck_assert_msg(fabs(right / (double)N - r.test_accuracy) < 1e-9, "forward %d right, fit %g",
                  right, r.test_accuracy);
    y[3] = 2;
    ck_assert_int_eq(kiln_net_train_step(net, x, y, 5, NULL), KILN_ERR_INVALID_ARGUMENT);
    kiln_data_free(d);
    free(x);
    free(p);
    kiln_net_free(net);
    kiln_model_free(m);
}
END_TEST

/* Three sigmoid outputs train on three target columns (multi-label); a
 * sigmoid that is not last stays an ordinary activation. */
START_TEST(multi_label_sigmoid_outputs_train_on_three_targets)
{
    kiln_model *m = model("[input]\nshape = 4\n[linear]\nout = 16\n[sigmoid]\n[linear]\n"
                          "out = 3\n[sigmoid]\n[train]\nloss = bce\noptimizer = adam\n"
                          "lr = 0.05\nbatch = 32\nepochs = 40\nval = 0\n");
    kiln_net *net;
    check_ok(kiln_net_create(test_ctx(), m, 32, &net));
    ck_assert_int_eq(kiln_net_head(net), KILN_HEAD_SIGMOID);
    enum { N = 300 };
    float *x = test_alloc(N * 4 * sizeof *x), *y = test_alloc(N * 3 * sizeof *y);
    rng_fill(test_rng(), x, N * 4, -1.0f, 1.0f);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < 3; j++)
            y[i * 3 + j] = x[i * 4 + j] > x[i * 4 + j + 1];
    kiln_data *d;
    check_ok(kiln_data_from_arrays(x, y, N, 4, 3, &d));
    kiln_train_options o;
    kiln_train_options_init(&o);
    o.train_data = d;
    o.test_data = d;
    kiln_train_report r;
    check_ok(kiln_net_fit(net, &o, &r));
    ck_assert_msg(r.test_accuracy > 0.85, "all three labels right for %g of samples",
                  r.test_accuracy);
    kiln_data *one;
    check_ok(kiln_data_from_arrays(x, y, N, 4, 1, &one)); /* one target per sample: refused */
    o.train_data = one;
    o.test_data = NULL;
    ck_assert_int_eq(kiln_net_fit(net, &o, &r), KILN_ERR_SHAPE);
    ck_assert_msg(strstr(kiln_last_error(), "1 target per sample, but bce compares them with "
                         "the model's 3 outputs"), "%s", kiln_last_error());
    kiln_data_free(one);
    kiln_data_free(d);
    free(x);
    free(y);
    kiln_net_free(net);
    kiln_model_free(m);
}
END_TEST

/* kiln_evaluate of an mse model reports the mean absolute error and R²
 * of every row of the file, as computed here in float64 from the
 * network's own predictions with the checkpoint's normalization. */
START_TEST(regression_metrics_match_a_float64_reference)
{
    char csv[512], out[512], final[600];
    snprintf(csv, sizeof csv, "%s/regression.csv", test_tmpdir());
    snprintf(out, sizeof out, "%s/regression-run", test_tmpdir());
    snprintf(final, sizeof final, "%s/final.safetensors", out);
    enum { N = 211 };
    float x[N * 3], y[N];
    rng_fill(test_rng(), x, N * 3, -2.0f, 2.0f);
    FILE *f = fopen(csv, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "a,b,c,y\n");
    for (int i = 0; i < N; i++) {
        y[i] = 3 * x[i * 3] - x[i * 3 + 1] * x[i * 3 + 2] + 1;
        fprintf(f, "%.9g,%.9g,%.9g,%.9g\n", x[i * 3], x[i * 3 + 1], x[i * 3 + 2], y[i]);
    }
    fclose(f);
    kiln_model *m = model("[input]\nshape = 3\n[linear]\nout = 16\n[relu]\n[linear]\nout = 1\n"
                          "[train]\nloss = mse\nlr = 0.01\nepochs = 5\nbatch = 32\n");
    kiln_train_options o;
    kiln_train_options_init(&o);
    o.data = csv;
    o.label = "y";
    o.out_dir = out;
    kiln_train_report r;
    check_ok(kiln_train(test_ctx(), m, &o, &r));
    kiln_eval_report e;
    check_ok(kiln_evaluate(test_ctx(), m, final, &o, &e));
    ck_assert_uint_eq(e.samples, N);
    ck_assert(isnan(e.accuracy));
    kiln_net *net;
    check_ok(kiln_net_create(test_ctx(), m, 64, &net));
    check_ok(kiln_net_load(net, final));
    float p[N];
    check_ok(kiln_net_forward(net, x, N, p));
    double abs = 0, sse = 0, mean = 0, sst = 0;
    for (int i = 0; i < N; i++)
        mean += y[i] / (double)N;
    for (int i = 0; i < N; i++) {
        abs += fabs((double)p[i] - y[i]) / N;
        sse += ((double)p[i] - y[i]) * ((double)p[i] - y[i]);
        sst += (y[i] - mean) * (y[i] - mean);
    }
    ck_assert_msg(fabs(e.mae - abs) < 1e-5 * (1 + abs), "MAE %g, float64 %g", e.mae, abs);
    ck_assert_msg(fabs(e.r2 - (1 - sse / sst)) < 1e-5, "R² %g, float64 %g", e.r2,
                  1 - sse / sst);
    ck_assert_msg(fabs(e.loss - sse / N) < 1e-5 * (1 + sse / N), "loss %g, float64 %g", e.loss,
                  sse / N);
    kiln_net_free(net);
    kiln_model_free(m);
}
END_TEST

/* net_normalize against (x - mean) / std value by value, to the bit: one
 * pair for every value, one a channel (10 values each) and one a value;
 * into another array and in place. */
START_TEST(normalization_is_applied_value_by_value)
{
    enum { N = 7, IN = 30 };
    kiln_model *m = model("[input]\nshape = 3x2x5\n[flatten]\n[linear]\nout = 2\n");
    kiln_net *net;
    check_ok(kiln_net_create(test_ctx(), m, 4, &net));
    static const size_t counts[] = {1, 3, IN};
    float x[N * IN], got[N * IN], mean[IN], std[IN];
    rng_fill(test_rng(), x, N * IN, -3, 3);
    for (int c = 0; c < 3; c++) {
        size_t count = counts[c], group = IN / count;
        rng_fill(test_rng(), mean, count, -1, 1);
        rng_fill(test_rng(), std, count, 0.5f, 2);
        check_ok(kiln_net_set_normalization(net, mean, std, count));
        for (int in_place = 0; in_place < 2; in_place++) {
            if (in_place)
                memcpy(got, x, sizeof got);
            net_normalize(net, in_place ? got : x, N, got);
            for (size_t i = 0; i < N * IN; i++) {
                size_t g = i % IN / group;
                float want = (x[i] - mean[g]) / std[g];
                ck_assert_msg(got[i] == want, "%zu pairs%s: value %zu is %.9g, expected %.9g",
                              count, in_place ? ", in place" : "", i, (double)got[i],
                              (double)want);
            }
        }
    }
    kiln_net_free(net);
    kiln_model_free(m);
}
END_TEST

/* Tabular features of very different scales: normalize = standard scales
 * each feature (as StandardScaler), stores the vectors in the checkpoint,
 * and a network loaded from it predicts exactly as the trained one; an
 * older checkpoint's single mean and deviation still load. */
START_TEST(per_feature_normalization_is_learnt_stored_and_applied)
{
    enum { N = 400 };
    static const float scale[4] = {1000.0f, 0.001f, 1.0f, 50.0f};
    float *x = test_alloc(N * 4 * sizeof *x), y[N];
    rng_fill(test_rng(), x, N * 4, -1.0f, 1.0f);
    for (int i = 0; i < N; i++) {
        y[i] = x[i * 4] + x[i * 4 + 1] > 0 ? 1.0f : 0.0f;
        for (int j = 0; j < 4; j++)
            x[i * 4 + j] = x[i * 4 + j] * scale[j] + 3 * scale[j];
    }
    kiln_model *m = model("[input]\nshape = 4\n[linear]\nout = 16\n[relu]\n[linear]\nout = 2\n"
                          "[train]\nepochs = 20\nbatch = 32\nlr = 0.01\n");
    kiln_net *net;
    check_ok(kiln_net_create(test_ctx(), m, 32, &net));
    kiln_data *d;
    check_ok(kiln_data_from_arrays(x, y, N, 4, 1, &d));
    kiln_train_options o;
    kiln_train_options_init(&o);
    o.train_data = d;
    o.test_data = d;
    kiln_train_report r;
    check_ok(kiln_net_fit(net, &o, &r));
    ck_assert_msg(r.test_accuracy > 0.93, "per-feature scaling reached %g", r.test_accuracy);
    char path[512];
    snprintf(path, sizeof path, "%s/scaled.safetensors", test_tmpdir());
    check_ok(kiln_net_save(net, path));
    kiln_net *back;
    check_ok(kiln_net_create(test_ctx(), m, 7, &back));
    check_ok(kiln_net_load(back, path));
    float *p1 = test_alloc(N * 2 * sizeof *p1), *p2 = test_alloc(N * 2 * sizeof *p2);
    check_ok(kiln_net_forward(net, x, N, p1));
    check_ok(kiln_net_forward(back, x, N, p2));
    for (int i = 0; i < N * 2; i++)
        ck_assert_msg(fabsf(p1[i] - p2[i]) < 1e-5f, "output %d: %g after loading, %g before", i,
                      p2[i], p1[i]);
    float mean = 2, std = 4; /* one pair, as older checkpoints hold */
    check_ok(kiln_net_set_normalization(back, &mean, &std, 1));
    check_ok(kiln_net_save(back, path));
    check_ok(kiln_net_load(net, path));
    float three[3] = {0, 0, 0};
    ck_assert_int_eq(kiln_net_set_normalization(net, three, three, 3), KILN_ERR_INVALID_ARGUMENT);
    kiln_net_free(back);
    kiln_net_free(net);
    kiln_data_free(d);
    free(x);
    free(p1);
    free(p2);
    kiln_model_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("net");
    TCase *tc = tcase_create("net");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, short_batches_train_as_their_own_batch);
    tcase_add_test(tc, weights_by_name_round_trip);
    tcase_add_loop_test(tc, eval_forward_follows_every_change_of_the_weights, 0,
                        (int)(sizeof evaluated / sizeof evaluated[0]));
    tcase_add_test(tc, eval_skips_dropout_without_a_launch);
    tcase_add_test(tc, small_forwards_run_inline_with_the_same_bits);
    tcase_add_test(tc, large_inputs_give_the_outputs_of_one_sample_at_a_time);
    tcase_add_test(tc, bad_input_is_refused_with_a_message);
    tcase_add_test(tc, another_models_checkpoint_names_every_difference);
    tcase_add_test(tc, a_communicator_needs_mpi_and_alone_is_the_default);
    tcase_add_test(tc, networks_train_in_separate_threads);
    tcase_add_test(tc, fit_on_arrays_with_callbacks);
    tcase_add_test(tc, sigmoid_head_trains_as_bce_with_logits);
    tcase_add_test(tc, multi_label_sigmoid_outputs_train_on_three_targets);
    tcase_add_test(tc, regression_metrics_match_a_float64_reference);
    tcase_add_test(tc, normalization_is_applied_value_by_value);
    tcase_add_test(tc, per_feature_normalization_is_learnt_stored_and_applied);
    suite_add_tcase(s, tc);
    return test_run(s);
}
