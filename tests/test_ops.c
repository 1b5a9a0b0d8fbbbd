/* Every operator of the table, forward and backward, on the test device
 * against the float64 reference, at awkward sizes; the reference backward
 * against central finite differences of the reference forward; and, for
 * smooth ops, the device backward against finite differences of the
 * device forward. One table of cases drives it all. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ref_ops.h"

typedef struct {
    const char *label;
    op_kind kind;
    int training;
    int n_in;
    kiln_shape in[OP_MAX_INPUTS];
    size_t out, kernel, stride, pad, dilation;
    kiln_act act;
    int dim, norm_dims, no_bias;
    size_t rows, heads; int tokens; /* embedding, position; attention; ids in [0, rows) */
    double tol;   /* relative to the largest magnitude of the compared array */
    double range; /* inputs are uniform in [-range, range]; 0: [-1, 1] */
} op_case;

#define S1(a) {.ndim = 1, .d = {a}}
#define S2(a, b) {.ndim = 2, .d = {a, b}}
#define S3(a, b, c) {.ndim = 3, .d = {a, b, c}}
#define S4(n, c, h, w) {.ndim = 4, .d = {n, c, h, w}}

static const op_case cases[] = {
    {"linear 1x1->1", OP_LINEAR, 1, 1, {S2(1, 1)}, .out = 1},
    {"linear 3x17->5", OP_LINEAR, 1, 1, {S2(3, 17)}, .out = 5},
    {"linear 129x33->7 relu", OP_LINEAR, 1, 1, {S2(129, 33)}, .out = 7, .act = KILN_ACT_RELU},
    {"linear 5x3->131", OP_LINEAR, 1, 1, {S2(5, 3)}, .out = 131},
    {"linear 3x7->4 sigmoid no bias", OP_LINEAR, 1, 1, {S2(3, 7)}, .out = 4,
     .act = KILN_ACT_SIGMOID, .no_bias = 1},
    {"linear 3x5->3 leaky_relu", OP_LINEAR, 1, 1, {S2(3, 5)}, .out = 3,
     .act = KILN_ACT_LEAKY_RELU},
    {"linear 2x17x33->7 (batch, time, features)", OP_LINEAR, 1, 1, {S3(2, 17, 33)}, .out = 7},
    {"linear 3x1x5->131 no bias", OP_LINEAR, 1, 1, {S3(3, 1, 5)}, .out = 131, .no_bias = 1},
    /* one sample: linear_one on CPUs (product, bias and activation in one
     * launch), past a work-group of outputs and with a tail of k */
    {"linear 1x37->67 relu", OP_LINEAR, 1, 1, {S2(1, 37)}, .out = 67, .act = KILN_ACT_RELU},
    {"linear 1x16->3 no bias", OP_LINEAR, 1, 1, {S2(1, 16)}, .out = 3, .no_bias = 1},
    {"conv 1x1x5x7 k1", OP_CONV2D, 1, 1, {S4(1, 1, 5, 7)}, .out = 1, .kernel = 1, .tol = 1e-4},
    {"conv 3x3x5x7 k3 p1 ->4", OP_CONV2D, 1, 1, {S4(3, 3, 5, 7)}, .out = 4, .kernel = 3,
     .pad = 1},
    {"conv 1x3x28x28 k5 s2 p2 ->5 relu", OP_CONV2D, 1, 1, {S4(1, 3, 28, 28)}, .out = 5,
     .kernel = 5, .stride = 2, .pad = 2, .act = KILN_ACT_RELU},
    {"conv 3x3x5x7 k3 d2 tanh", OP_CONV2D, 1, 1, {S4(3, 3, 5, 7)}, .out = 2, .kernel = 3,
     .dilation = 2, .act = KILN_ACT_TANH},
    {"conv 3x17x5x7 k3 p2 no bias", OP_CONV2D, 1, 1, {S4(3, 17, 5, 7)}, .out = 3,
     .kernel = 3, .pad = 2, .no_bias = 1},
    {"conv 129x1x5x7 k3 p1", OP_CONV2D, 1, 1, {S4(129, 1, 5, 7)}, .out = 2, .kernel = 3,
     .pad = 1},
    {"conv 3x1x1x1 k1", OP_CONV2D, 1, 1, {S4(3, 1, 1, 1)}, .out = 17, .kernel = 1},
    {"conv 7x2x9x9 k3 p1 ->11 leaky_relu", OP_CONV2D, 1, 1, {S4(7, 2, 9, 9)}, .out = 11,
     .kernel = 3, .pad = 1, .act = KILN_ACT_LEAKY_RELU},
    {"conv 2x3x17x16 k3 ->5", OP_CONV2D, 1, 1, {S4(2, 3, 17, 16)}, .out = 5, .kernel = 3},
    {"conv 2x2x11x13 k3 s3 p2 d2 ->3", OP_CONV2D, 1, 1, {S4(2, 2, 11, 13)}, .out = 3,
     .kernel = 3, .stride = 3, .pad = 2, .dilation = 2},
    {"conv 3x33x6x37 k3 p1 ->7", OP_CONV2D, 1, 1, {S4(3, 33, 6, 37)}, .out = 7, .kernel = 3,
     .pad = 1},
    {"conv 2x4x9x40 k5 p2 ->3", OP_CONV2D, 1, 1, {S4(2, 4, 9, 40)}, .out = 3, .kernel = 5,
     .pad = 2},
    {"conv 2x3x11x12 k3 p2 d2 ->4 relu", OP_CONV2D, 1, 1, {S4(2, 3, 11, 12)}, .out = 4,
     .kernel = 3, .pad = 2, .dilation = 2, .act = KILN_ACT_RELU},
    {"conv 3x7x9x8 k3 s2 p1 ->11", OP_CONV2D, 1, 1, {S4(3, 7, 9, 8)}, .out = 11, .kernel = 3,
     .stride = 2, .pad = 1},
    {"conv 2x5x10x9 k1 s2 ->6 no bias", OP_CONV2D, 1, 1, {S4(2, 5, 10, 9)}, .out = 6,
     .kernel = 1, .stride = 2, .no_bias = 1},
    {"conv 3x4x9x10 k3 s2 ->6", OP_CONV2D, 1, 1, {S4(3, 4, 9, 10)}, .out = 6, .kernel = 3,
     .stride = 2},
    {"conv 5x37x13x11 k3 s2 p1 ->67", OP_CONV2D, 1, 1, {S4(5, 37, 13, 11)}, .out = 67,
     .kernel = 3, .stride = 2, .pad = 1},
    /* conv_pixels on CPUs (few outputs, 32 taps or more): strided, dilated
     * and padded; and unpadded, read in place */
    {"conv 2x9x13x11 k3 s2 p2 d2 ->5", OP_CONV2D, 1, 1, {S4(2, 9, 13, 11)}, .out = 5,
     .kernel = 3, .stride = 2, .pad = 2, .dilation = 2},
    {"conv 2x8x9x7 k3 ->6", OP_CONV2D, 1, 1, {S4(2, 8, 9, 7)}, .out = 6, .kernel = 3},
    {"conv 17x35x6x6 k3 p1 ->33", OP_CONV2D, 1, 1, {S4(17, 35, 6, 6)}, .out = 33, .kernel = 3,
     .pad = 1},
    {"conv 3x13x9x8 k3 s2 p1 ->5", OP_CONV2D, 1, 1, {S4(3, 13, 9, 8)}, .out = 5, .kernel = 3,
     .stride = 2, .pad = 1},
    {"conv 2x9x7x10 k1 s2 ->4", OP_CONV2D, 1, 1, {S4(2, 9, 7, 10)}, .out = 4, .kernel = 1,
     .stride = 2},
    {"conv 2x5x11x13 k3 s3 p2 d2 ->3", OP_CONV2D, 1, 1, {S4(2, 5, 11, 13)}, .out = 3,
     .kernel = 3, .stride = 3, .pad = 2, .dilation = 2},
    {"conv 2x130x3x3 k3 p1 ->120 no bias", OP_CONV2D, 1, 1, {S4(2, 130, 3, 3)}, .out = 120,
     .kernel = 3, .pad = 1, .no_bias = 1},
    /* the ResNet's 1 x 1 stride-2 shortcut, from 32 taps: conv_pixels */
    {"conv 3x37x9x8 k1 s2 ->11", OP_CONV2D, 1, 1, {S4(3, 37, 9, 8)}, .out = 11, .kernel = 1,
     .stride = 2},
    /* rows of 8 outputs at stride 2 (conv_pixels_lines2 with the 8-row
     * tile; the input gradient's column phases stored together,
     * conv_phase_pairs), and a 1 x 1 one whose input gradient reaches one
     * phase */
    {"conv 2x5x9x16 k3 s2 p1 ->7", OP_CONV2D, 1, 1, {S4(2, 5, 9, 16)}, .out = 7, .kernel = 3,
     .stride = 2, .pad = 1},
    {"conv 3x33x5x16 k1 s2 ->9", OP_CONV2D, 1, 1, {S4(3, 33, 5, 16)}, .out = 9, .kernel = 1,
     .stride = 2},
    /* both column phases' tiles stored together (conv_phase_pairs) with
     * the 6-row tile of AVX2 (W a multiple of 12) */
    {"conv 2x6x7x12 k3 s2 p1 ->5", OP_CONV2D, 1, 1, {S4(2, 6, 7, 12)}, .out = 5, .kernel = 3,
     .stride = 2, .pad = 1},
    {"maxpool 3x3x5x7 k2", OP_MAXPOOL, 1, 1, {S4(3, 3, 5, 7)}, .kernel = 2},
    {"maxpool 1x1x28x28 k3 s2 p1", OP_MAXPOOL, 1, 1, {S4(1, 1, 28, 28)}, .kernel = 3,
     .stride = 2, .pad = 1},
    {"maxpool 2x3x9x11 k2 s3 p1", OP_MAXPOOL, 1, 1, {S4(2, 3, 9, 11)}, .kernel = 2,
     .stride = 3, .pad = 1},
    {"maxpool 128x16x28x28 k2", OP_MAXPOOL, 1, 1, {S4(128, 16, 28, 28)}, .kernel = 2},
    {"maxpool 129x17x1x1 k1", OP_MAXPOOL, 1, 1, {S4(129, 17, 1, 1)}, .kernel = 1},
    {"maxpool 5x7x13x17 k2", OP_MAXPOOL, 1, 1, {S4(5, 7, 13, 17)}, .kernel = 2},
    {"maxpool 2x3x6x35 k2", OP_MAXPOOL, 1, 1, {S4(2, 3, 6, 35)}, .kernel = 2},
    {"maxpool 3x2x14x13 k2", OP_MAXPOOL, 1, 1, {S4(3, 2, 14, 13)}, .kernel = 2},
    {"maxpool 3x17x5x7 k5 s1 p2", OP_MAXPOOL, 1, 1, {S4(3, 17, 5, 7)}, .kernel = 5,
     .stride = 1, .pad = 2},
    {"avgpool 3x3x5x7 k2", OP_AVGPOOL, 1, 1, {S4(3, 3, 5, 7)}, .kernel = 2},
    {"avgpool 2x5x9x22 k2", OP_AVGPOOL, 1, 1, {S4(2, 5, 9, 22)}, .kernel = 2},
    {"avgpool 3x2x8x10 k2", OP_AVGPOOL, 1, 1, {S4(3, 2, 8, 10)}, .kernel = 2},
    {"avgpool 1x1x28x28 k3 s2 p1", OP_AVGPOOL, 1, 1, {S4(1, 1, 28, 28)}, .kernel = 3,
     .stride = 2, .pad = 1},
    {"avgpool 3x17x5x7 k5 s1 p2", OP_AVGPOOL, 1, 1, {S4(3, 17, 5, 7)}, .kernel = 5,
     .stride = 1, .pad = 2},
    /* one window a plane (avgpool_global): ResNet's, planes past a
     * work-group, and 1 x 1 planes */
    {"avgpool 3x7x8x8 k8", OP_AVGPOOL, 1, 1, {S4(3, 7, 8, 8)}, .kernel = 8},
    {"avgpool 2x131x13x13 k13 s2", OP_AVGPOOL, 1, 1, {S4(2, 131, 13, 13)}, .kernel = 13,
     .stride = 2},
    {"avgpool 5x3x1x1 k1", OP_AVGPOOL, 1, 1, {S4(5, 3, 1, 1)}, .kernel = 1},
    {"batchnorm1d 3x17", OP_BATCHNORM, 1, 1, {S2(3, 17)}, .tol = 0},
    {"batchnorm1d 129x5", OP_BATCHNORM, 1, 1, {S2(129, 5)}, .tol = 0},
    {"batchnorm2d 3x3x5x7", OP_BATCHNORM, 1, 1, {S4(3, 3, 5, 7)}, .tol = 0},
    {"batchnorm2d 1x1x28x28", OP_BATCHNORM, 1, 1, {S4(1, 1, 28, 28)}, .tol = 0},
    {"batchnorm2d 5x13x7x11 leaky_relu", OP_BATCHNORM, 1, 1, {S4(5, 13, 7, 11)},
     .act = KILN_ACT_LEAKY_RELU},
    {"batchnorm2d 2x67x4x4 sigmoid", OP_BATCHNORM, 1, 1, {S4(2, 67, 4, 4)},
     .act = KILN_ACT_SIGMOID},
    {"batchnorm2d 3x3x5x7 eval", OP_BATCHNORM, 0, 1, {S4(3, 3, 5, 7)}, .tol = 0},
    {"batchnorm1d 1x17 eval", OP_BATCHNORM, 0, 1, {S2(1, 17)}, .tol = 0},
    {"batchnorm2d 3x3x5x7 relu", OP_BATCHNORM, 1, 1, {S4(3, 3, 5, 7)}, .act = KILN_ACT_RELU},
    {"batchnorm1d 129x5 tanh", OP_BATCHNORM, 1, 1, {S2(129, 5)}, .act = KILN_ACT_TANH},
    {"batchnorm1d 7x131 relu", OP_BATCHNORM, 1, 1, {S2(7, 131)}, .act = KILN_ACT_RELU},
    {"batchnorm1d 6x67 leaky_relu", OP_BATCHNORM, 1, 1, {S2(6, 67)},
     .act = KILN_ACT_LEAKY_RELU},
    {"batchnorm1d 3x17 sigmoid eval", OP_BATCHNORM, 0, 1, {S2(3, 17)},
     .act = KILN_ACT_SIGMOID},
    {"layernorm 3x17", OP_LAYERNORM, 1, 1, {S2(3, 17)}, .norm_dims = 1},
    {"layernorm 3x3x5x7 over 3", OP_LAYERNORM, 1, 1, {S4(3, 3, 5, 7)}, .norm_dims = 3},
    {"layernorm 1x257", OP_LAYERNORM, 1, 1, {S2(1, 257)}, .norm_dims = 1},
    {"layernorm 129x3", OP_LAYERNORM, 1, 1, {S2(129, 3)}, .norm_dims = 1},
    {"layernorm 2x17x32 no bias", OP_LAYERNORM, 1, 1, {S3(2, 17, 32)}, .norm_dims = 1,
     .no_bias = 1},
    {"layernorm 3x1x67", OP_LAYERNORM, 1, 1, {S3(3, 1, 67)}, .norm_dims = 1},
    {"softmax 2x17x13 over the vocabulary", OP_SOFTMAX, 1, 1, {S3(2, 17, 13)}, .dim = -1},
    {"relu 3x17x5x7", OP_ACTIVATION, 1, 1, {S4(3, 17, 5, 7)}, .act = KILN_ACT_RELU},
    {"leaky_relu 129x33", OP_ACTIVATION, 1, 1, {S2(129, 33)}, .act = KILN_ACT_LEAKY_RELU},
    {"sigmoid 1", OP_ACTIVATION, 1, 1, {S1(1)}, .act = KILN_ACT_SIGMOID},
    {"sigmoid 3x17", OP_ACTIVATION, 1, 1, {S2(3, 17)}, .act = KILN_ACT_SIGMOID},
    {"tanh 3x17", OP_ACTIVATION, 1, 1, {S2(3, 17)}, .act = KILN_ACT_TANH},
    {"gelu 3x17x5x7", OP_ACTIVATION, 1, 1, {S4(3, 17, 5, 7)}, .act = KILN_ACT_GELU},
    {"gelu tanh 129x3", OP_ACTIVATION, 1, 1, {S2(129, 3)}, .act = KILN_ACT_GELU_TANH},
    /* past erf's clamp (|x| > 4 sqrt 2), tanh's (|u| > 7.9, x > 3.6) and
     * the flushing of the pdf's exp (|x| > 13.2), over more than one
     * work-group */
    {"gelu 1", OP_ACTIVATION, 1, 1, {S1(1)}, .act = KILN_ACT_GELU},
    {"gelu 4099 in +-16", OP_ACTIVATION, 1, 1, {S1(4099)}, .act = KILN_ACT_GELU, .range = 16},
    {"gelu tanh 1", OP_ACTIVATION, 1, 1, {S1(1)}, .act = KILN_ACT_GELU_TANH},
    {"gelu tanh 4099 in +-16", OP_ACTIVATION, 1, 1, {S1(4099)}, .act = KILN_ACT_GELU_TANH,
     .range = 16},
    {"softmax 3x17", OP_SOFTMAX, 1, 1, {S2(3, 17)}, .dim = -1},
    {"softmax 3x3x5x7 dim 1", OP_SOFTMAX, 1, 1, {S4(3, 3, 5, 7)}, .dim = 1},
    {"softmax 1x1", OP_SOFTMAX, 1, 1, {S2(1, 1)}, .dim = -1},
    {"softmax 129x10", OP_SOFTMAX, 1, 1, {S2(129, 10)}, .dim = -1},
    {"add 3x17", OP_ADD, 1, 2, {S2(3, 17), S2(3, 17)}, .tol = 0},
    {"add 129x3x5x7", OP_ADD, 1, 2, {S4(129, 3, 5, 7), S4(129, 3, 5, 7)}, .tol = 0},
    {"concat 3x1x5x7 + 3x17x5x7", OP_CONCAT, 1, 2, {S4(3, 1, 5, 7), S4(3, 17, 5, 7)}, .tol = 0},
    {"concat 129x3 + 129x17", OP_CONCAT, 1, 2, {S2(129, 3), S2(129, 17)}, .tol = 0},
    {"flatten 3x3x5x7", OP_FLATTEN, 1, 1, {S4(3, 3, 5, 7)}, .tol = 0},
    {"dropout eval 3x17", OP_DROPOUT, 0, 1, {S2(3, 17)}, .tol = 0},
    {"embedding 3x17 of 13 ->33", OP_EMBEDDING, 1, 1, {S2(3, 17)}, .out = 33, .rows = 13,
     .tokens = 1},
    {"position 2x17x33 of 19", OP_POSITION, 1, 1, {S3(2, 17, 33)}, .rows = 19},
    {"attention 2x17x30, 2 heads of 5", OP_ATTENTION, 1, 1, {S3(2, 17, 30)}, .heads = 2},
    /* a 1 x 1 stride-2 shortcut over even rows of 16 and 32 (the input
     * gradient as conv_stride2_points on CPUs: tiles of an image's
     * pixels, across output rows of 8 and of 16) */
    {"conv 3x13x16x16 k1 s2 ->7 no bias", OP_CONV2D, 1, 1, {S4(3, 13, 16, 16)}, .out = 7,
     .kernel = 1, .stride = 2, .no_bias = 1},
    {"conv 2x9x8x32 k1 s2 ->5", OP_CONV2D, 1, 1, {S4(2, 9, 8, 32)}, .out = 5, .kernel = 1,
     .stride = 2},
};

#define CASE_COUNT (int)(sizeof cases / sizeof cases[0])

static op_attrs attrs_of(const op_case *tc)
{
    op_attrs a = op_attrs_default();
    a.out = tc->out;
    a.kernel = tc->kernel;
    a.stride = tc->stride;
    a.pad = tc->pad;
    a.dilation = tc->dilation ? tc->dilation : 1;
    a.act = tc->act;
    a.dim = tc->dim;
    a.norm_dims = tc->norm_dims ? tc->norm_dims : 1;
    a.bias = !tc->no_bias;
    a.p = 0.5f;
    a.rows = tc->rows;
    a.heads = tc->heads;
    return a;
}

/* One host array in float (for the device) and double (for the reference). */
typedef struct {
    size_t n;
    float *f;
    double *d;
} host;

static host host_make(const kiln_shape *s)
{
    host h = {shape_numel(s), NULL, NULL};
    h.f = test_alloc(h.n * sizeof *h.f);
    h.d = test_alloc(h.n * sizeof *h.d);
    return h;
}

static host host_random(const kiln_shape *s, double lo, double hi)
{
    host h = host_make(s);
    rng_fill(test_rng(), h.f, h.n, (float)lo, (float)hi);
    for (size_t i = 0; i < h.n; i++)
        h.d[i] = h.f[i];
    return h;
}

static void host_free(host *h)
{
    free(h->f);
    free(h->d);
    h->f = NULL;
    h->d = NULL;
}

static kiln_tensor *device_of(const kiln_shape *s, const host *h)
{
    kiln_tensor *t;
    check_ok(tensor_of(test_ctx(), s, &t));
    if (h)
        check_ok(kiln_tensor_upload(t, h->f, h->n));
    return t;
}

/* A device tensor of NaNs for a gradient that the op must write whole:
 * a value it leaves unwritten shows, where a reused buffer could hold
 * the right value from an earlier run. */
static kiln_tensor *poisoned(const kiln_shape *s)
{
    kiln_tensor *t = device_of(s, NULL);
    size_t n = shape_numel(s);
    float *nan = test_alloc(n * sizeof *nan);
    for (size_t i = 0; i < n; i++)
        nan[i] = NAN;
    check_ok(kiln_tensor_upload(t, nan, n));
    free(nan);
    return t;
}

/* Compares a device tensor with a reference array; returns the error
 * relative to the array's largest magnitude. */
static double compare(const char *label, const char *what, kiln_tensor *t, const double *want,
                      double tol)
{
    size_t n = t->numel;
    float *got = test_alloc(n * sizeof *got);
    check_ok(kiln_tensor_download(t, got, n));
    double scale = 1e-30, worst = 0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(want[i]));
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)got[i] - want[i]) / scale);
    check_close(got, want, n, tol * fmax(scale, 1e-3), tol, "%s: %s", label, what);
    free(got);
    return worst;
}

/* Everything one case allocates. */
typedef struct {
    const op_case *tc;
    op_attrs a;
    op_shapes s;
    host in[OP_MAX_INPUTS], param[OP_MAX_PARAMS], buffer[OP_MAX_BUFFERS], dout;
    kiln_tensor *din_t[OP_MAX_INPUTS], *dparam_t[OP_MAX_PARAMS];
    op_args args;
} fixture;

static void random_params(fixture *f)
{
    for (int i = 0; i < f->s.n_params; i++) {
        int norm = f->tc->kind == OP_BATCHNORM || f->tc->kind == OP_LAYERNORM;
        double lo = norm && i == 0 ? 0.5 : -1, hi = norm && i == 0 ? 1.5 : 1;
        f->param[i] = host_random(&f->s.param[i], lo, hi);
    }
    for (int i = 0; i < f->s.n_buffers; i++) /* running mean, then variance */
        f->buffer[i] = host_random(&f->s.buffer[i], i ? 0.5 : -0.2, i ? 1.5 : 0.2);
}

static void fixture_setup(fixture *f, const op_case *tc)
{
    memset(f, 0, sizeof *f);
    f->tc = tc;
    f->a = attrs_of(tc);
    check_ok(op_infer(tc->kind, &f->a, tc->in, &f->s));
    kiln_ctx *ctx = test_ctx();
    f->args.ctx = ctx;
    f->args.attrs = &f->a;
    f->args.training = tc->training;
    for (int i = 0; i < tc->n_in; i++) {
        double range = tc->range > 0 ? tc->range : 1;
        f->in[i] = host_random(&tc->in[i], -range, range);
        for (size_t j = 0; tc->tokens && i == 0 && j < f->in[i].n; j++)
            f->in[i].d[j] = f->in[i].f[j] = (float)(rng_next(test_rng()) % tc->rows);
        f->args.in[i] = device_of(&tc->in[i], &f->in[i]);
    }
    random_params(f);
    for (int i = 0; i < f->s.n_params; i++)
        f->args.param[i] = device_of(&f->s.param[i], &f->param[i]);
    for (int i = 0; i < f->s.n_buffers; i++)
        f->args.buffer[i] = device_of(&f->s.buffer[i], &f->buffer[i]);
    for (int i = 0; i < f->s.n_saved; i++)
        f->args.saved[i] = device_of(&f->s.saved[i], NULL);
    f->args.out = device_of(&f->s.out, NULL);
    f->dout = host_random(&f->s.out, -1, 1);
    f->args.dout = device_of(&f->s.out, &f->dout);
}

static void fixture_teardown(fixture *f)
{
    for (int i = 0; i < OP_MAX_INPUTS; i++) {
        kiln_tensor_free((kiln_tensor *)f->args.in[i]);
        kiln_tensor_free(f->din_t[i]);
        host_free(&f->in[i]);
    }
    for (int i = 0; i < OP_MAX_PARAMS; i++) {
        kiln_tensor_free(f->args.param[i]);
        kiln_tensor_free(f->dparam_t[i]);
        host_free(&f->param[i]);
    }
    for (int i = 0; i < OP_MAX_BUFFERS; i++) {
        kiln_tensor_free(f->args.buffer[i]);
        host_free(&f->buffer[i]);
    }
    for (int i = 0; i < OP_MAX_SAVED; i++)
        kiln_tensor_free(f->args.saved[i]);
    kiln_tensor_free(f->args.out);
    kiln_tensor_free((kiln_tensor *)f->args.dout);
    host_free(&f->dout);
}

/* A reference call over the fixture's double arrays; buffers are copies
 * (the caller frees them) so that repeated forwards start alike. */
static ref_op ref_call(const fixture *f, double *out, double **buffers)
{
    ref_op r = {.a = &f->a, .training = f->tc->training, .out_shape = f->s.out, .out = out};
    for (int i = 0; i < f->tc->n_in; i++) {
        r.in_shape[i] = f->tc->in[i];
        r.in[i] = f->in[i].d;
    }
    for (int i = 0; i < f->s.n_params; i++)
        r.param[i] = f->param[i].d;
    for (int i = 0; i < f->s.n_buffers; i++) {
        buffers[i] = test_alloc(f->buffer[i].n * sizeof(double));
        memcpy(buffers[i], f->buffer[i].d, f->buffer[i].n * sizeof(double));
        r.buffer[i] = buffers[i];
    }
    r.dout = f->dout.d;
    return r;
}

/* L = sum dout * forward(current arrays), in double. */
static double ref_objective(const fixture *f)
{
    size_t n = shape_numel(&f->s.out);
    double *out = test_alloc(n * sizeof *out), *buffers[OP_MAX_BUFFERS] = {0}, l = 0;
    ref_op r = ref_call(f, out, buffers);
    ref_forward(f->tc->kind, &r);
    for (size_t i = 0; i < n; i++)
        l += f->dout.d[i] * out[i];
    for (int i = 0; i < OP_MAX_BUFFERS; i++)
        free(buffers[i]);
    free(out);
    return l;
}

/* Central differences of the reference at a few coordinates of x. */
static void check_fd_reference(fixture *f, host *x, const double *grad, const char *what)
{
    for (int k = 0; k < 6; k++) {
        size_t i = (size_t)(rng_next(test_rng()) % x->n);
        double keep = x->d[i], h = 1e-6 * fmax(1.0, fabs(keep));
        x->d[i] = keep + h;
        double up = ref_objective(f);
        x->d[i] = keep - h;
        double down = ref_objective(f);
        x->d[i] = keep;
        double fd = (up - down) / (2 * h);
        ck_assert_msg(fabs(fd - grad[i]) <= 1e-5 * fmax(1.0, fabs(fd)),
                      "%s: reference d/d%s[%zu] = %.10g but finite differences give %.10g "
                      "(KILN_TEST_SEED=%llu)",
                      f->tc->label, what, i, grad[i], fd, (unsigned long long)test_seed());
    }
}

/* Device L = sum dout * forward, computed from a download. */
static double device_objective(fixture *f)
{
    size_t n = shape_numel(&f->s.out);
    float *out = test_alloc(n * sizeof *out);
    check_ok(op_forward(f->tc->kind, &f->args));
    check_ok(kiln_tensor_download(f->args.out, out, n));
    double l = 0;
    for (size_t i = 0; i < n; i++)
        l += f->dout.d[i] * out[i];
    free(out);
    return l;
}

/* Central differences of the device forward (float32, so a coarse step
 * and a loose bound) against the device's input gradient. */
static void check_fd_device(fixture *f)
{
    host *x = &f->in[0];
    float *grad = test_alloc(x->n * sizeof *grad);
    check_ok(kiln_tensor_download(f->din_t[0], grad, x->n));
    for (int k = 0; k < 3; k++) {
        size_t i = (size_t)(rng_next(test_rng()) % x->n);
        float keep = x->f[i], h = 1e-2f;
        x->f[i] = keep + h;
        check_ok(kiln_tensor_upload((kiln_tensor *)f->args.in[0], x->f, x->n));
        double up = device_objective(f);
        x->f[i] = keep - h;
        check_ok(kiln_tensor_upload((kiln_tensor *)f->args.in[0], x->f, x->n));
        double down = device_objective(f);
        x->f[i] = keep;
        check_ok(kiln_tensor_upload((kiln_tensor *)f->args.in[0], x->f, x->n));
        double fd = (up - down) / (2.0 * h);
        ck_assert_msg(fabs(fd - grad[i]) <= 2e-2 * fmax(1.0, fabs(fd)),
                      "%s: device dx[%zu] = %.6g but device finite differences give %.6g",
                      f->tc->label, i, (double)grad[i], fd);
    }
    free(grad);
}

static int smooth(const op_case *tc)
{
    return tc->kind != OP_MAXPOOL && act_get(tc->act)->smooth && !tc->tokens;
}

static void report(const char *label, const char *what, double err)
{
    printf("%-36s %-10s worst |error| / max |value| = %.2e\n", label, what, err);
}

/* One case forward and backward against the float64 reference, and the
 * reference against finite differences. */
static void check_case(const op_case *tc)
{
    fixture f;
    fixture_setup(&f, tc);
    double tol = tc->tol > 0 ? tc->tol : 2e-5;
    size_t nout = shape_numel(&f.s.out);

    /* forward, and the running statistics it updates */
    double *want = test_alloc(nout * sizeof *want), *buffers[OP_MAX_BUFFERS] = {0};
    ref_op r = ref_call(&f, want, buffers);
    ref_forward(tc->kind, &r);
    check_ok(op_forward(tc->kind, &f.args));
    report(tc->label, "forward", compare(tc->label, "forward", f.args.out, want, tol));
    for (int i = 0; tc->training && i < f.s.n_buffers; i++)
        compare(tc->label, i ? "running var" : "running mean", f.args.buffer[i], buffers[i],
                tol);

    /* backward: every input and parameter gradient */
    double *din[OP_MAX_INPUTS] = {0}, *dparam[OP_MAX_PARAMS] = {0};
    for (int i = 0; i < tc->n_in; i++) {
        din[i] = test_alloc(f.in[i].n * sizeof(double));
        r.din[i] = din[i];
        f.din_t[i] = poisoned(&tc->in[i]);
        f.args.din[i] = f.din_t[i];
    }
    for (int i = 0; i < f.s.n_params; i++) {
        dparam[i] = test_alloc(f.param[i].n * sizeof(double));
        r.dparam[i] = dparam[i];
        f.dparam_t[i] = poisoned(&f.s.param[i]);
        f.args.dparam[i] = f.dparam_t[i];
    }
    ref_backward(tc->kind, &r);
    check_ok(op_backward(tc->kind, &f.args));
    double worst = 0;
    for (int i = 0; i < tc->n_in; i++)
        worst = fmax(worst, compare(tc->label, "input gradient", f.din_t[i], din[i], tol));
    for (int i = 0; i < f.s.n_params; i++)
        worst = fmax(worst, compare(tc->label, "parameter gradient", f.dparam_t[i], dparam[i],
                                    tol));
    report(tc->label, "backward", worst);

    /* the reference's own backward against its finite differences */
    for (int i = 0; i < tc->n_in; i++)
        check_fd_reference(&f, &f.in[i], din[i], "input");
    for (int i = 0; i < f.s.n_params; i++)
        check_fd_reference(&f, &f.param[i], dparam[i], "parameter");
    if (smooth(tc))
        check_fd_device(&f);

    for (int i = 0; i < OP_MAX_INPUTS; i++)
        free(din[i]);
    for (int i = 0; i < OP_MAX_PARAMS; i++)
        free(dparam[i]);
    for (int i = 0; i < OP_MAX_BUFFERS; i++)
        free(buffers[i]);
    free(want);
    fixture_teardown(&f);
}

START_TEST(operator_matches_reference)
{
    check_case(&cases[_i]);
}
END_TEST

/* ---- every activation alone, and fused into every op that absorbs it ---- */

/* One input of each op whose row says fuses_act, at awkward sizes: an op
 * that gains fuses_act needs a line here (fusing_ops_have_samples). */
static const op_case fusing_samples[] = {
    {"linear 67x33->7", OP_LINEAR, 1, 1, {S2(67, 33)}, .out = 7},
    {"conv 3x5x7x9 k3 p1 ->4", OP_CONV2D, 1, 1, {S4(3, 5, 7, 9)}, .out = 4, .kernel = 3,
     .pad = 1},
    {"batchnorm1d 67x5", OP_BATCHNORM, 1, 1, {S2(67, 5)}, .tol = 0},
    {"batchnorm2d 3x5x7x9", OP_BATCHNORM, 1, 1, {S4(3, 5, 7, 9)}, .tol = 0},
    {"batchnorm1d 3x17 eval", OP_BATCHNORM, 0, 1, {S2(3, 17)}, .tol = 0},
    {"add 3x5x7x9", OP_ADD, 1, 2, {S4(3, 5, 7, 9), S4(3, 5, 7, 9)}, .tol = 0},
};

/* Activations alone: more than a work-group, one value, a wide range. */
static const op_case alone_samples[] = {
    {"3x17x5x7", OP_ACTIVATION, 1, 1, {S4(3, 17, 5, 7)}, .tol = 0},
    {"1", OP_ACTIVATION, 1, 1, {S1(1)}, .tol = 0},
    {"4099 in +-8", OP_ACTIVATION, 1, 1, {S1(4099)}, .range = 8},
};

#define N_FUSING (int)(sizeof fusing_samples / sizeof fusing_samples[0])
#define N_ALONE (int)(sizeof alone_samples / sizeof alone_samples[0])
#define MAX_ACT_CASES (KILN_ACT_COUNT * (N_FUSING + N_ALONE))

static op_case act_cases[MAX_ACT_CASES];
static char act_labels[MAX_ACT_CASES][96];
static int act_case_count;

static void add_act_case(const op_case *sample, kiln_act act)
{
    int i = act_case_count++;
    act_cases[i] = *sample;
    act_cases[i].act = act;
    snprintf(act_labels[i], sizeof act_labels[i], "%s %s", act_get(act)->name, sample->label);
    act_cases[i].label = act_labels[i];
}

/* From KILN_ACT_LIST and the op table: a new activation or a new fusing
 * op is covered without a line here. */
static void list_act_cases(void)
{
    for (int a = 1; a < KILN_ACT_COUNT; a++) {
        for (int i = 0; i < N_ALONE; i++)
            add_act_case(&alone_samples[i], (kiln_act)a);
        for (int i = 0; i < N_FUSING; i++)
            if (op_check_fusable(fusing_samples[i].kind, (kiln_act)a) == KILN_OK)
                add_act_case(&fusing_samples[i], (kiln_act)a);
            else
                error_clear();
    }
}

START_TEST(activation_matches_reference)
{
    check_case(&act_cases[_i]);
}
END_TEST

START_TEST(fusing_ops_have_samples)
{
    for (int k = 0; k < OP_COUNT; k++) {
        int found = 0;
        for (int i = 0; i < N_FUSING; i++)
            found |= fusing_samples[i].kind == (op_kind)k;
        ck_assert_msg(found == op_get((op_kind)k)->fuses_act,
                      "%s: fuses_act is %d; fusing_samples must list exactly the fusing ops",
                      op_get((op_kind)k)->name, op_get((op_kind)k)->fuses_act);
    }
}
END_TEST

/* An activation whose gradient needs its input is refused by every op's
 * epilogue but those that keep that input (keeps_act_grad: linear),
 * naming both; ops without fuses_act refuse every activation. */
START_TEST(epilogues_refuse_what_they_cannot_absorb)
{
    int refused = 0;
    for (int i = 0; i < N_FUSING; i++)
        for (int a = 1; a < KILN_ACT_COUNT; a++) {
            const op_case *tc = &fusing_samples[i];
            op_attrs attrs = attrs_of(tc);
            attrs.act = (kiln_act)a;
            op_shapes s;
            kiln_status st = op_infer(tc->kind, &attrs, tc->in, &s);
            if (act_get((kiln_act)a)->from_output || op_get(tc->kind)->keeps_act_grad) {
                ck_assert_int_eq(st, KILN_OK);
                continue;
            }
            ck_assert_int_eq(st, KILN_ERR_UNSUPPORTED);
            ck_assert_msg(strstr(kiln_last_error(), act_get((kiln_act)a)->name) &&
                              strstr(kiln_last_error(), op_get(tc->kind)->name),
                          "message: %s", kiln_last_error());
            refused++;
        }
    for (int k = 0; k < OP_COUNT; k++)
        if (!op_get((op_kind)k)->fuses_act && k != OP_ACTIVATION)
            ck_assert_int_eq(op_check_fusable((op_kind)k, KILN_ACT_RELU), KILN_ERR_UNSUPPORTED);
    printf("%d pairs of an epilogue and an activation refused\n", refused);
}
END_TEST

/* Every op that the cases give parameters or buffers names them for the
 * state_dict and has an initialiser; every op of the table has a case. */
START_TEST(rows_name_their_state_and_initialiser)
{
    int covered[OP_COUNT] = {0};
    for (int i = 0; i < CASE_COUNT; i++) {
        const op_case *tc = &cases[i];
        const op_desc *d = op_get(tc->kind);
        op_attrs a = attrs_of(tc);
        op_shapes s;
        check_ok(op_infer(tc->kind, &a, tc->in, &s));
        covered[tc->kind] = 1;
        for (int k = 0; k < s.n_params; k++)
            ck_assert_msg(d->param_names[k], "%s: parameter %d has no name", d->name, k);
        for (int k = 0; k < s.n_buffers; k++)
            ck_assert_msg(d->buffer_names[k], "%s: buffer %d has no name", d->name, k);
        ck_assert_msg(d->init || s.n_params + s.n_buffers == 0,
                      "%s: parameters but no initialiser", d->name);
    }
    /* The sequence ops take token ids or heads, which cases[] cannot say:
     * tests/test_gpt.c checks them against float64 and finite differences. */
    covered[OP_EMBEDDING] = covered[OP_POSITION] = covered[OP_ATTENTION] = 1;
    for (int k = 0; k < OP_COUNT; k++)
        ck_assert_msg(covered[k], "%s: no case in cases[] or tests/test_gpt.c",
                      op_get((op_kind)k)->name);
}
END_TEST

/* Every initialiser of INIT_LIST fills a weight with finite values that
 * spread (zeros: none), and none is left to a default formula. */
START_TEST(every_initialiser_has_a_formula)
{
    kiln_shape ws = shape_make(2, 64, 48, 0, 0), bs = shape_make(1, 64, 0, 0, 0);
    op_shapes shapes = {.n_params = 2, .param = {ws, bs}};
    kiln_tensor *w = device_of(&ws, NULL), *b = device_of(&bs, NULL);
    size_t n = shape_numel(&ws);
    float *v = test_alloc(n * sizeof *v);
    for (int kind = 1; kind < INIT_COUNT; kind++) {
        kiln_rng rng;
        rng_seed(&rng, 5);
        op_init c = {.init = (init_kind)kind, .rng = &rng, .shapes = &shapes, .param = {w, b},
                     .std = 0.02f};
        check_ok(op_init_weight_bias(&c));
        check_ok(kiln_tensor_download(w, v, n));
        double sq = 0;
        for (size_t i = 0; i < n; i++) {
            ck_assert_msg(isfinite(v[i]), "init = %s: weight %zu is %g",
                          init_name((init_kind)kind), i, (double)v[i]);
            sq += (double)v[i] * v[i];
        }
        double sd = sqrt(sq / (double)n);
        printf("init = %-16s weight deviation %.4f\n", init_name((init_kind)kind), sd);
        if (kind == INIT_ZEROS)
            ck_assert(sd == 0);
        else
            ck_assert_msg(sd > 1e-3 && sd < 1, "init = %s: deviation %g for fan-in 48",
                          init_name((init_kind)kind), sd);
    }
    free(v);
    kiln_tensor_free(w);
    kiln_tensor_free(b);
}
END_TEST

/* The gradients of a convolution, downloaded after one backward. */
static void conv_grads(fixture *f, float *dx, float *dw)
{
    check_ok(op_backward(OP_CONV2D, &f->args));
    check_ok(kiln_tensor_download(f->din_t[0], dx, f->in[0].n));
    check_ok(kiln_tensor_download(f->dparam_t[0], dw, f->param[0].n));
}

/* A convolution's backward gives the same bits on a second run: the
 * weight gradient's partial sums are added in a fixed order. A third run
 * that adds its input gradient to the one din holds (din_add, as for a
 * value two layers read) gives exactly twice it, on every path. */
static void check_conv_bits(const op_case *tc)
{
    fixture f;
    fixture_setup(&f, tc);
    check_ok(op_forward(OP_CONV2D, &f.args));
    f.din_t[0] = f.args.din[0] = device_of(&tc->in[0], NULL);
    f.dparam_t[0] = f.args.dparam[0] = device_of(&f.s.param[0], NULL);
    size_t nx = f.in[0].n, nw = f.param[0].n;
    float *dx = test_alloc(2 * nx * sizeof *dx), *dw = test_alloc(2 * nw * sizeof *dw);
    conv_grads(&f, dx, dw);
    conv_grads(&f, dx + nx, dw + nw);
    ck_assert_msg(memcmp(dx, dx + nx, nx * sizeof *dx) == 0, "%s: input gradients differ",
                  tc->label);
    ck_assert_msg(memcmp(dw, dw + nw, nw * sizeof *dw) == 0, "%s: weight gradients differ",
                  tc->label);
    f.args.din_add[0] = 1;
    conv_grads(&f, dx + nx, dw + nw);
    for (size_t i = 0; i < nx; i++)
        ck_assert_msg(dx[nx + i] == 2 * dx[i], "%s: added input gradient %zu is %g, not %g",
                      tc->label, i, (double)dx[nx + i], 2.0 * dx[i]);
    free(dx);
    free(dw);
    fixture_teardown(&f);
}

START_TEST(convolution_backward_gives_the_same_bits)
{
    if (cases[_i].kind == OP_CONV2D)
        check_conv_bits(&cases[_i]);
}
END_TEST

/* The other ops whose backward adds its input gradient to the one din
 * holds (adds_input_grads: layernorm, in a transformer's residual stream)
 * give exactly twice their own gradient when din holds it already. */
START_TEST(input_gradients_add_to_another_readers)
{
    const op_case *tc = &cases[_i];
    if (tc->kind == OP_CONV2D || !op_get(tc->kind)->adds_input_grads)
        return;
    fixture f;
    fixture_setup(&f, tc);
    check_ok(op_forward(tc->kind, &f.args));
    f.din_t[0] = f.args.din[0] = device_of(&tc->in[0], NULL);
    size_t nx = f.in[0].n;
    float *dx = test_alloc(2 * nx * sizeof *dx);
    check_ok(op_backward(tc->kind, &f.args));
    check_ok(kiln_tensor_download(f.din_t[0], dx, nx));
    f.args.din_add[0] = 1;
    check_ok(op_backward(tc->kind, &f.args));
    check_ok(kiln_tensor_download(f.din_t[0], dx + nx, nx));
    for (size_t i = 0; i < nx; i++)
        ck_assert_msg(dx[nx + i] == 2 * dx[i], "%s: added input gradient %zu is %g, not %g",
                      tc->label, i, (double)dx[nx + i], 2.0 * dx[i]);
    free(dx);
    fixture_teardown(&f);
}
END_TEST

/* Where kiln's GEMM runs the convolutions (PoCL), they also at the tiles
 * of AVX2 (6 x 16) and of 128-bit vectors (4 x 8), whose panels of 16 and
 * 8 columns take other paths through the packing. */
/* Past 64 input channels a strided input gradient keeps conv_phase_tiles
 * and phase_weights on CPUs (O <= C). A test of its own, after the
 * list's: a case in the list would move the random inputs of every test
 * after it. */
START_TEST(strided_input_gradient_past_64_channels)
{
    static const op_case tc = {"conv 2x67x9x8 k3 s2 p1 ->5", OP_CONV2D, 1, 1,
                               {S4(2, 67, 9, 8)}, .out = 5, .kernel = 3, .stride = 2,
                               .pad = 1};
    check_case(&tc);
    check_conv_bits(&tc);
}
END_TEST

/* The tiles kiln's GEMM takes by default on AVX-512 (8 x 32), AVX2 (6 x
 * 16) and 128-bit vectors (4 x 8). */
static const gemm_tile isa_tiles[] = {{8, 16, 0}, {6, 8, 0}, {4, 4, 0}};
#define ISA_TILES (sizeof isa_tiles / sizeof isa_tiles[0])

/* Into out: isa_tiles but the machine's own, then `extra`; how many. A
 * machine runs every instruction set's tile, the wider ones with their
 * vectors split by the compiler, so that a machine without AVX-512
 * checks its tile too. */
static size_t other_tiles(gemm_tile *out, gemm_tile extra)
{
    gemm_tile d = gemm_tile_default(test_ctx());
    size_t n = 0;
    for (size_t i = 0; i < ISA_TILES; i++)
        if (isa_tiles[i].mr != d.mr || isa_tiles[i].v != d.v)
            out[n++] = isa_tiles[i];
    out[n++] = extra;
    return n;
}

/* Convolution cases checked (check_case, check_conv_bits) at each of
 * tiles where kiln's GEMM runs them, else once. */
static void check_conv_cases_at_tiles(const op_case *tcs, size_t count, const gemm_tile *tiles,
                                      size_t ntiles)
{
    kiln_ctx *ctx = test_ctx();
    for (size_t i = 0; i < ntiles; i++) {
        if (kiln_ctx_gemm(ctx) == KILN_GEMM_KILN)
            check_ok(gemm_tile_set(ctx, tiles[i]));
        for (size_t j = 0; j < count; j++) {
            check_case(&tcs[j]);
            check_conv_bits(&tcs[j]);
        }
        if (kiln_ctx_gemm(ctx) != KILN_GEMM_KILN)
            break;
    }
    if (kiln_ctx_gemm(ctx) == KILN_GEMM_KILN)
        check_ok(gemm_tile_set(ctx, (gemm_tile){0, 0, 0}));
}

/* conv_phase_pairs stages the rows of g its next phase rows read, from
 * the rows of at least 128 inputs: a phase of 38 rows of 48 inputs is
 * staged 3 rows at a time, several times an item on 2 cores; with and
 * without padding; with taps that reach 2 rows below a phase row but
 * pad g by 1 (5 x 5, padding 3) and taps that reach the zero row above
 * (3 x 3, padding 0); at each instruction set's tile (other_tiles)
 * (pairs of 2 x 48 columns; 4 channels: the weight gradient from rows
 * of pixels). A test of its own, after the list's (see above). */
START_TEST(strided_input_gradient_staged_in_chunks)
{
    static const op_case tcs[] = {
        {"conv 4x4x75x96 k3 s2 p1 ->4", OP_CONV2D, 1, 1, {S4(4, 4, 75, 96)}, .out = 4,
         .kernel = 3, .stride = 2, .pad = 1},
        {"conv 4x4x75x96 k1 s2 ->5", OP_CONV2D, 1, 1, {S4(4, 4, 75, 96)}, .out = 5,
         .kernel = 1, .stride = 2},
        {"conv 2x4x37x96 k5 s2 p3 ->3", OP_CONV2D, 1, 1, {S4(2, 4, 37, 96)}, .out = 3,
         .kernel = 5, .stride = 2, .pad = 3},
        {"conv 2x4x37x96 k3 s2 ->3", OP_CONV2D, 1, 1, {S4(2, 4, 37, 96)}, .out = 3,
         .kernel = 3, .stride = 2},
    };
    gemm_tile tiles[ISA_TILES + 1];
    check_conv_cases_at_tiles(tcs, sizeof tcs / sizeof tcs[0], tiles,
                              other_tiles(tiles, (gemm_tile){0, 0, 0}));
}
END_TEST

/* conv_pixels holds a pixel's tap offsets (C K K) in a table of 4608:
 * at 4608 taps it fills it, past them the convolution keeps conv_tiles
 * on CPUs. Both reach kiln's convolution kernels only with a k block of
 * at least their taps (the default is at most 4096; past it the forward
 * is an im2col product), so at 6- and 4-row tiles with a k block of
 * 8192. A test of its own, after the list's (see above). */
START_TEST(convolution_past_the_pixel_taps_table)
{
    static const op_case tcs[] = {
        {"conv 1x512x3x4 k3 p1 ->3", OP_CONV2D, 1, 1, {S4(1, 512, 3, 4)}, .out = 3,
         .kernel = 3, .pad = 1},
        {"conv 1x513x3x4 k3 p1 ->3", OP_CONV2D, 1, 1, {S4(1, 513, 3, 4)}, .out = 3,
         .kernel = 3, .pad = 1},
    };
    static const gemm_tile tiles[] = {{6, 8, 8192}, {4, 4, 8192}};
    check_conv_cases_at_tiles(tcs, sizeof tcs / sizeof tcs[0], tiles,
                              sizeof tiles / sizeof tiles[0]);
}
END_TEST

/* conv_weight_pixels holds a chunk's pixels' offsets in a table of
 * 4608: output rows of 4608 pixels take it, one of 4609 the weight
 * gradient's other path (gemm_cpu_conv_weights_pay, asked by conv2d's
 * backward, and gemm_cpu_conv_weights agree on it). A test of its own,
 * after the list's (see above). */
START_TEST(weight_gradient_of_rows_past_the_pixel_table)
{
    static const op_case tcs[] = {
        {"conv 1x4x3x4610 k3 ->2", OP_CONV2D, 1, 1, {S4(1, 4, 3, 4610)}, .out = 2, .kernel = 3},
        {"conv 1x4x3x4611 k3 ->2", OP_CONV2D, 1, 1, {S4(1, 4, 3, 4611)}, .out = 2, .kernel = 3},
    };
    for (size_t i = 0; i < sizeof tcs / sizeof tcs[0]; i++)
        check_case(&tcs[i]);
}
END_TEST

/* conv_weight_pixels sums several whole images a pass where they are
 * small (up to 128 pixels), x read in place where it is not padded, else
 * each image's rows staged: 64 images of 4 x 3 outputs, 2 or more of them
 * a pass of an item (256 rows over 4 items a compute unit, up to 8
 * units). A test of its own, after the list's (see above). */
START_TEST(weight_gradient_of_small_images_together)
{
    static const op_case tcs[] = {
        {"conv 64x4x6x5 k3 ->3", OP_CONV2D, 1, 1, {S4(64, 4, 6, 5)}, .out = 3, .kernel = 3},
        {"conv 64x4x4x3 k3 p1 ->3", OP_CONV2D, 1, 1, {S4(64, 4, 4, 3)}, .out = 3, .kernel = 3,
         .pad = 1},
    };
    for (size_t i = 0; i < sizeof tcs / sizeof tcs[0]; i++)
        check_case(&tcs[i]);
}
END_TEST

/* conv_phase_pairs where the tile's rows do not divide a phase row's WB
 * inputs: the row's last tile moves back to end at the row's end and
 * stores only what the one before it did not (at most an eighth more
 * inputs computed: WB 16 and 17 at the 6-row tile, 25 at the 4-row one,
 * 60 at the 8-row one, there with taps that reach a row above a phase
 * row: 5 x 5, padding 2), with and without adding to dx
 * (check_conv_bits). A test of its own, after the list's (see above). */
START_TEST(strided_input_gradient_pairs_past_whole_tiles)
{
    static const op_case tcs[] = {
        {"conv 2x5x9x32 k3 s2 p1 ->7", OP_CONV2D, 1, 1, {S4(2, 5, 9, 32)}, .out = 7,
         .kernel = 3, .stride = 2, .pad = 1},
        {"conv 2x5x9x34 k3 s2 p1 ->7", OP_CONV2D, 1, 1, {S4(2, 5, 9, 34)}, .out = 7,
         .kernel = 3, .stride = 2, .pad = 1},
        {"conv 3x9x8x32 k1 s2 ->6", OP_CONV2D, 1, 1, {S4(3, 9, 8, 32)}, .out = 6, .kernel = 1,
         .stride = 2},
        {"conv 2x6x11x50 k3 s2 p1 ->4", OP_CONV2D, 1, 1, {S4(2, 6, 11, 50)}, .out = 4,
         .kernel = 3, .stride = 2, .pad = 1},
        {"conv 2x3x9x120 k5 s2 p2 ->3", OP_CONV2D, 1, 1, {S4(2, 3, 9, 120)}, .out = 3,
         .kernel = 5, .stride = 2, .pad = 2},
    };
    gemm_tile tiles[ISA_TILES + 1];
    check_conv_cases_at_tiles(tcs, sizeof tcs / sizeof tcs[0], tiles,
                              other_tiles(tiles, (gemm_tile){0, 0, 0}));
}
END_TEST

START_TEST(convolution_at_other_tiles)
{
    const op_case *tc = &cases[_i];
    kiln_ctx *ctx = test_ctx();
    if (tc->kind != OP_CONV2D || kiln_ctx_gemm(ctx) != KILN_GEMM_KILN)
        return;
    /* and 3 x 16 with a k block of 37: the weight gradient's reduction in
     * several blocks per item, and products past the block */
    gemm_tile tiles[ISA_TILES + 1];
    size_t n = other_tiles(tiles, (gemm_tile){3, 8, 37});
    for (size_t i = 0; i < n; i++) {
        check_ok(gemm_tile_set(ctx, tiles[i]));
        check_case(tc);
    }
    check_ok(gemm_tile_set(ctx, (gemm_tile){0, 0, 0}));
}
END_TEST


/* Running statistics after three training steps follow PyTorch's update
 * (momentum 0.1, unbiased variance); eval mode then normalizes with them. */
START_TEST(batchnorm_running_statistics_after_three_steps)
{
    kiln_shape xs = shape_make(4, 5, 3, 2, 2), cs = shape_make(1, 3, 0, 0, 0);
    size_t n = shape_numel(&xs), per = n / 3;
    op_attrs a = op_attrs_default();
    host x = host_make(&xs), gamma = host_random(&cs, 0.5, 1.5), beta = host_random(&cs, -1, 1);
    double run_mean[3] = {0, 0, 0}, run_var[3] = {1, 1, 1};
    float zeros[3] = {0, 0, 0}, ones[3] = {1, 1, 1};
    kiln_tensor *tx = device_of(&xs, NULL), *ty = device_of(&xs, NULL);
    kiln_tensor *rm = device_of(&cs, NULL), *rv = device_of(&cs, NULL);
    kiln_tensor *g = device_of(&cs, &gamma), *b = device_of(&cs, &beta);
    kiln_tensor *mean = device_of(&cs, NULL), *rstd = device_of(&cs, NULL);
    check_ok(kiln_tensor_upload(rm, zeros, 3));
    check_ok(kiln_tensor_upload(rv, ones, 3));
    op_args c = {.ctx = test_ctx(), .attrs = &a, .training = 1, .in = {tx}, .out = ty,
                 .param = {g, b}, .buffer = {rm, rv}, .saved = {mean, rstd}};
    for (int step = 0; step < 4; step++) {
        rng_fill(test_rng(), x.f, n, (float)step - 2, (float)step * 2 + 1);
        check_ok(kiln_tensor_upload(tx, x.f, n));
        c.training = step < 3;
        check_ok(op_forward(OP_BATCHNORM, &c));
        for (size_t ch = 0; ch < 3 && step < 3; ch++) {
            double sum = 0, sq = 0;
            for (size_t i = 0; i < n; i++)
                if ((i / 4) % 3 == ch)
                    sum += x.f[i];
            double mu = sum / (double)per;
            for (size_t i = 0; i < n; i++)
                if ((i / 4) % 3 == ch)
                    sq += (x.f[i] - mu) * (x.f[i] - mu);
            run_mean[ch] = 0.9 * run_mean[ch] + 0.1 * mu;
            run_var[ch] = 0.9 * run_var[ch] + 0.1 * sq / (double)(per - 1);
        }
    }
    float got[3];
    check_ok(kiln_tensor_download(rm, got, 3));
    check_close(got, run_mean, 3, 1e-6, 1e-5, "running mean after three steps");
    check_ok(kiln_tensor_download(rv, got, 3));
    check_close(got, run_var, 3, 1e-6, 1e-5, "running var after three steps");
    double *want = test_alloc(n * sizeof *want);
    for (size_t i = 0; i < n; i++) {
        size_t ch = (i / 4) % 3;
        want[i] = (x.f[i] - run_mean[ch]) / sqrt(run_var[ch] + 1e-5) * gamma.d[ch] + beta.d[ch];
    }
    compare("batchnorm eval after training", "output", ty, want, 2e-5);
    free(want);
    host_free(&x);
    host_free(&gamma);
    host_free(&beta);
    kiln_tensor *all[] = {tx, ty, rm, rv, g, b, mean, rstd};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        kiln_tensor_free(all[i]);
}
END_TEST

/* An error names the op and both shapes. */
static void expect_infer_error(op_kind kind, op_attrs a, kiln_shape in0, kiln_shape in1,
                               const char *needle)
{
    kiln_shape in[2] = {in0, in1};
    op_shapes s;
    ck_assert_int_ne(op_infer(kind, &a, in, &s), KILN_OK);
    ck_assert_msg(strstr(kiln_last_error(), needle) != NULL, "expected \"%s\" in: %s", needle,
                  kiln_last_error());
}

START_TEST(bad_shapes_name_both_shapes)
{
    op_attrs a = op_attrs_default();
    kiln_shape none = {0};
    a.out = 4;
    expect_infer_error(OP_LINEAR, a, shape_make(4, 2, 3, 5, 5), none, "input is 2x3x5x5");
    a.kernel = 3;
    expect_infer_error(OP_CONV2D, a, shape_make(2, 3, 5, 0, 0), none, "expected (N, C, H, W)");
    a.kernel = 9;
    expect_infer_error(OP_CONV2D, a, shape_make(4, 1, 1, 5, 7), none, "does not fit the input "
                       "1x1x5x7");
    expect_infer_error(OP_MAXPOOL, a, shape_make(4, 1, 1, 5, 7), none, "1x1x5x7");
    expect_infer_error(OP_ADD, a, shape_make(2, 3, 4, 0, 0), shape_make(2, 3, 5, 0, 0),
                       "shapes 3x4 and 3x5 differ");
    expect_infer_error(OP_CONCAT, a, shape_make(4, 2, 3, 5, 5), shape_make(4, 2, 3, 5, 6),
                       "2x3x5x5 and 2x3x5x6");
    a.act = KILN_ACT_GELU;
    a.kernel = 3;
    expect_infer_error(OP_CONV2D, a, shape_make(4, 2, 3, 5, 5), none, "gelu cannot be fused");

    /* a call with tensors of the wrong shape says which tensor */
    op_attrs l = op_attrs_default();
    l.out = 4;
    kiln_shape xs = shape_make(2, 3, 5, 0, 0), ws = shape_make(2, 4, 6, 0, 0);
    kiln_shape bs = shape_make(1, 4, 0, 0, 0), ys = shape_make(2, 3, 4, 0, 0);
    kiln_tensor *x = device_of(&xs, NULL), *w = device_of(&ws, NULL), *b = device_of(&bs, NULL);
    kiln_tensor *y = device_of(&ys, NULL);
    op_args c = {.ctx = test_ctx(), .attrs = &l, .in = {x}, .out = y, .param = {w, b}};
    ck_assert_int_eq(op_forward(OP_LINEAR, &c), KILN_ERR_SHAPE);
    ck_assert_msg(strstr(kiln_last_error(), "linear: parameter 0 is 4x6; expected 4x5"),
                  "message: %s", kiln_last_error());
    kiln_tensor_free(x);
    kiln_tensor_free(w);
    kiln_tensor_free(b);
    kiln_tensor_free(y);
}
END_TEST

/* The global sum of squares (for clipping by norm) against float64, and
 * bit-for-bit the same on a second run. */
START_TEST(sum_of_squares_is_accurate_and_deterministic)
{
    static const size_t sizes[] = {1, 7, 4097, (1u << 20) + 3, 129};
    kiln_tensor *ts[5];
    double want = 0;
    for (int i = 0; i < 5; i++) {
        kiln_shape s = shape_make(1, sizes[i], 0, 0, 0);
        host h = host_random(&s, -1, 1);
        for (size_t j = 0; j < h.n; j++)
            want += h.d[j] * h.d[j];
        ts[i] = device_of(&s, &h);
        host_free(&h);
    }
    kiln_shape one = shape_make(1, 1, 0, 0, 0);
    kiln_tensor *out = device_of(&one, NULL);
    float first, second;
    check_ok(op_sum_squares(test_ctx(), ts, 5, out));
    check_ok(kiln_tensor_download(out, &first, 1));
    check_ok(op_sum_squares(test_ctx(), ts, 5, out));
    check_ok(kiln_tensor_download(out, &second, 1));
    ck_assert_msg(fabs(first - want) <= 1e-5 * want, "sum of squares %.9g, expected %.9g", first,
                  want);
    ck_assert_msg(memcmp(&first, &second, sizeof first) == 0, "two runs differ: %.9g %.9g",
                  first, second);
    for (int i = 0; i < 5; i++)
        kiln_tensor_free(ts[i]);
    kiln_tensor_free(out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ops");
    TCase *tc = tcase_create("ops");
    tcase_add_loop_test(tc, operator_matches_reference, 0, CASE_COUNT);
    tcase_add_loop_test(tc, convolution_at_other_tiles, 0, CASE_COUNT);
    tcase_add_loop_test(tc, convolution_backward_gives_the_same_bits, 0, CASE_COUNT);
    tcase_add_loop_test(tc, input_gradients_add_to_another_readers, 0, CASE_COUNT);
    list_act_cases();
    tcase_add_loop_test(tc, activation_matches_reference, 0, act_case_count);
    tcase_add_test(tc, fusing_ops_have_samples);
    tcase_add_test(tc, epilogues_refuse_what_they_cannot_absorb);
    tcase_add_test(tc, rows_name_their_state_and_initialiser);
    tcase_add_test(tc, every_initialiser_has_a_formula);
    tcase_add_test(tc, batchnorm_running_statistics_after_three_steps);
    tcase_add_test(tc, bad_shapes_name_both_shapes);
    tcase_add_test(tc, sum_of_squares_is_accurate_and_deterministic);
    tcase_add_test(tc, strided_input_gradient_past_64_channels);
    tcase_add_test(tc, convolution_past_the_pixel_taps_table);
    tcase_add_test(tc, weight_gradient_of_small_images_together);
    tcase_add_test(tc, weight_gradient_of_rows_past_the_pixel_table);
    tcase_add_test(tc, strided_input_gradient_staged_in_chunks);
    tcase_add_test(tc, strided_input_gradient_pairs_past_whole_tiles);
    suite_add_tcase(s, tc);
    return test_run(s);
}
