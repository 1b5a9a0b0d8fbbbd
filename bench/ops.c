/* Forward and backward time of every operator at a typical size (batch
 * 128, 256 features; conv 32 -> 64 channels on 28x28), with the bytes each
 * moves against a plain device copy of the same bytes, measured in the
 * same run. Usage: bench_ops [--device SEL] [--batch N] [--only TEXT] (the
 * cases whose label holds TEXT) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "ops/ops.h"
#include "ref/ref.h"

typedef struct {
    const char *label;
    op_kind kind;
    kiln_shape in;
    size_t out, kernel, stride, pad;
    kiln_act act;
    int no_bias; /* as the ResNet's convolutions (batchnorm follows) */
} bench_case;

static kiln_ctx *ctx;
static kiln_rng rng;

static kiln_tensor *random_tensor(const kiln_shape *s)
{
    kiln_tensor *t;
    REQUIRE(tensor_of(ctx, s, &t));
    size_t n = shape_numel(s);
    float *h = malloc(n * sizeof *h);
    rng_fill(&rng, h, n, -1, 1);
    REQUIRE(kiln_tensor_upload(t, h, n));
    free(h);
    return t;
}

/* Seconds per call: the best of 5 timings of reps calls after a warm-up. */
static double seconds_per_call(kiln_status (*run)(op_kind, const op_args *), op_kind kind,
                               const op_args *c, int reps)
{
    REQUIRE(run(kind, c));
    REQUIRE(kiln_ctx_finish(ctx));
    double best = 1e30;
    for (int t = 0; t < 5; t++) {
        double t0 = ref_seconds();
        for (int i = 0; i < reps; i++)
            REQUIRE(run(kind, c));
        REQUIRE(kiln_ctx_finish(ctx));
        double each = (ref_seconds() - t0) / reps;
        best = each < best ? each : best;
    }
    return best;
}

static kiln_status copy_op(op_kind kind, const op_args *c)
{
    (void)kind;
    return kiln_tensor_copy(c->out, c->in[0]);
}

/* Device copy bandwidth in GB/s (read + write) over bytes. */
static double copy_bandwidth(size_t bytes)
{
    kiln_shape s = shape_make(1, bytes / sizeof(float), 0, 0, 0);
    kiln_tensor *a = random_tensor(&s), *b = random_tensor(&s);
    op_args c = {.ctx = ctx, .in = {a}, .out = b};
    double t = seconds_per_call(copy_op, OP_FLATTEN, &c, 20);
    kiln_tensor_free(a);
    kiln_tensor_free(b);
    return 2.0 * (double)bytes / t * 1e-9;
}

static void run_case(const bench_case *bc, double copy_gbs)
{
    op_attrs a = op_attrs_default();
    a.out = bc->out;
    a.kernel = bc->kernel;
    a.stride = bc->stride;
    a.pad = bc->pad;
    a.act = bc->act;
    a.bias = !bc->no_bias;
    a.p = 0.3f;
    kiln_shape in[2] = {bc->in, bc->in};
    op_shapes s;
    REQUIRE(op_infer(bc->kind, &a, in, &s));
    int n_in = op_get(bc->kind)->n_inputs;
    /* a 1 x 1 of stride 2 is a block's shortcut, whose backward adds its
     * input gradient to the one the block's other branch wrote */
    int shortcut = bc->kind == OP_CONV2D && bc->kernel == 1 && bc->stride > 1;
    op_args c = {.ctx = ctx, .attrs = &a, .training = 1, .din_add = {shortcut}};
    for (int i = 0; i < n_in; i++) {
        c.in[i] = random_tensor(&in[i]);
        c.din[i] = random_tensor(&in[i]);
    }
    for (int i = 0; i < s.n_params; i++) {
        c.param[i] = random_tensor(&s.param[i]);
        c.dparam[i] = random_tensor(&s.param[i]);
    }
    for (int i = 0; i < s.n_buffers; i++)
        c.buffer[i] = random_tensor(&s.buffer[i]);
    for (int i = 0; i < s.n_saved; i++)
        c.saved[i] = random_tensor(&s.saved[i]);
    c.out = random_tensor(&s.out);
    c.dout = random_tensor(&s.out);
    double fwd = seconds_per_call(op_forward, bc->kind, &c, 3);
    double bwd = seconds_per_call(op_backward, bc->kind, &c, 3);
    /* the least traffic a forward could have: read inputs, write output */
    double bytes = (double)(n_in * shape_numel(&in[0]) + shape_numel(&s.out)) * sizeof(float);
    double gbs = bytes / fwd * 1e-9;
    printf("%-34s forward %9.3f ms  backward %9.3f ms (%.2fx)  forward %6.2f GB/s = %.2f of "
           "copy\n",
           bc->label, fwd * 1e3, bwd * 1e3, bwd / fwd, gbs, gbs / copy_gbs);
    for (int i = 0; i < n_in; i++) {
        kiln_tensor_free((kiln_tensor *)c.in[i]);
        kiln_tensor_free(c.din[i]);
    }
    for (int i = 0; i < OP_MAX_PARAMS; i++) {
        kiln_tensor_free(c.param[i]);
        kiln_tensor_free(c.dparam[i]);
    }
    for (int i = 0; i < OP_MAX_BUFFERS; i++)
        kiln_tensor_free(c.buffer[i]);
    for (int i = 0; i < OP_MAX_SAVED; i++)
        kiln_tensor_free(c.saved[i]);
    kiln_tensor_free(c.out);
    kiln_tensor_free((kiln_tensor *)c.dout);
}

int main(int argc, char **argv)
{
    const char *device = NULL, *only = "";
    size_t batch = 128;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--device") == 0)
            device = argv[i + 1];
        else if (strcmp(argv[i], "--batch") == 0)
            batch = (size_t)strtoul(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--only") == 0)
            only = argv[i + 1];
    }
    REQUIRE(kiln_ctx_create(device, &ctx));
    rng_seed(&rng, 1);
    printf("device: %s / %s, batch %zu\n", kiln_ctx_device(ctx)->platform,
           kiln_ctx_device(ctx)->name, batch);
    kiln_shape feat = shape_make(2, batch, 256, 0, 0);
    kiln_shape img32 = shape_make(4, batch, 32, 28, 28), img64 = shape_make(4, batch, 64, 28, 28);
    kiln_shape img64s = shape_make(4, batch, 64, 14, 14), pixels = shape_make(2, batch, 784, 0, 0);
    /* examples/resnet_cifar.ini's convolutions over 32 x 32 and 16 x 16 */
    kiln_shape res32 = shape_make(4, batch, 32, 32, 32), res64 = shape_make(4, batch, 64, 16, 16);
    kiln_shape res128 = shape_make(4, batch, 128, 8, 8);
    const bench_case cases[] = {
        {"linear 256->256 relu", OP_LINEAR, feat, 256, 0, 0, 0, KILN_ACT_RELU, 0},
        {"linear 784->256", OP_LINEAR, pixels, 256, 0, 0, 0, KILN_ACT_NONE, 0},
        {"conv2d 32->64 3x3 pad 1 relu", OP_CONV2D, img32, 64, 3, 1, 1, KILN_ACT_RELU, 0},
        {"resnet conv 32->32 3x3 (32x32)", OP_CONV2D, res32, 32, 3, 1, 1, KILN_ACT_NONE, 1},
        {"resnet conv 32->64 3x3 stride 2", OP_CONV2D, res32, 64, 3, 2, 1, KILN_ACT_NONE, 1},
        {"resnet conv 32->64 1x1 stride 2", OP_CONV2D, res32, 64, 1, 2, 0, KILN_ACT_NONE, 1},
        {"resnet conv 64->64 3x3 (16x16)", OP_CONV2D, res64, 64, 3, 1, 1, KILN_ACT_NONE, 1},
        {"resnet conv 64->128 3x3 stride 2", OP_CONV2D, res64, 128, 3, 2, 1, KILN_ACT_NONE, 1},
        {"resnet conv 64->128 1x1 stride 2", OP_CONV2D, res64, 128, 1, 2, 0, KILN_ACT_NONE, 1},
        {"resnet conv 128->128 3x3 (8x8)", OP_CONV2D, res128, 128, 3, 1, 1, KILN_ACT_NONE, 1},
        {"maxpool 2x2 (64 channels)", OP_MAXPOOL, img64, 0, 2, 0, 0, KILN_ACT_NONE, 0},
        {"maxpool 2x2 (64x14x14)", OP_MAXPOOL, img64s, 0, 2, 0, 0, KILN_ACT_NONE, 0},
        {"avgpool 2x2 (64 channels)", OP_AVGPOOL, img64, 0, 2, 0, 0, KILN_ACT_NONE, 0},
        {"batchnorm1d 256", OP_BATCHNORM, feat, 0, 0, 0, 0, KILN_ACT_NONE, 0},
        {"batchnorm2d 64x28x28", OP_BATCHNORM, img64, 0, 0, 0, 0, KILN_ACT_NONE, 0},
        {"layernorm 256", OP_LAYERNORM, feat, 0, 0, 0, 0, KILN_ACT_NONE, 0},
        {"dropout 64x28x28", OP_DROPOUT, img64, 0, 0, 0, 0, KILN_ACT_NONE, 0},
        {"relu 64x28x28", OP_ACTIVATION, img64, 0, 0, 0, 0, KILN_ACT_RELU, 0},
        {"gelu 64x28x28", OP_ACTIVATION, img64, 0, 0, 0, 0, KILN_ACT_GELU, 0},
        {"softmax 256", OP_SOFTMAX, feat, 0, 0, 0, 0, KILN_ACT_NONE, 0},
        {"add 64x28x28", OP_ADD, img64, 0, 0, 0, 0, KILN_ACT_NONE, 0},
        {"concat 64+64 x28x28", OP_CONCAT, img64, 0, 0, 0, 0, KILN_ACT_NONE, 0},
    };
    double copy_gbs = copy_bandwidth(shape_numel(&img64) * sizeof(float));
    printf("plain device copy of %zu MB: %.2f GB/s (read + write)\n",
           shape_numel(&img64) * sizeof(float) >> 20, copy_gbs);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (strstr(cases[i].label, only))
            run_case(&cases[i], copy_gbs);
    kiln_ctx_free(ctx);
    return 0;
}
