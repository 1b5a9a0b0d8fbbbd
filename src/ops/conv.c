/* conv2d: y = act(conv(x, W) + b); x (N, C, H, W), W (O, C, K, K), b (O),
 * y (N, O, OH, OW). One im2col over the batch, one CLBlast GEMM, and the
 * fused bias + activation; backward recomputes the columns rather than
 * keeping them between passes. */
#include "ops/ops.h"

kiln_status op_swap01(kiln_ctx *ctx, cl_mem x, cl_mem y, size_t a, size_t b, size_t p);

typedef struct {
    size_t n, c, h, w, o, oh, ow, k, s, p, d;
} conv_dims;

/* Stride and dilation, where 0 means the default 1. */
static size_t one_if_zero(size_t v)
{
    return v ? v : 1;
}

/* One output size: floor((in + 2p - d(k - 1) - 1) / s) + 1, or 0 if none. */
size_t op_window_count(size_t in, size_t k, size_t s, size_t p, size_t d)
{
    size_t span = d * (k - 1) + 1;
    if (in + 2 * p < span || s == 0)
        return 0;
    return (in + 2 * p - span) / s + 1;
}

static kiln_status conv_infer(const op_attrs *a, const kiln_shape *in, op_shapes *s)
{
    char buf[64];
    if (in[0].ndim != 4)
        return error_set(KILN_ERR_SHAPE, "conv2d: input is %s; expected (N, C, H, W)",
                         shape_str(&in[0], buf, sizeof buf));
    if (a->out == 0 || a->kernel == 0)
        return error_set(KILN_ERR_SHAPE, "conv2d: out and size must be at least 1");
    size_t stride = one_if_zero(a->stride), dilation = one_if_zero(a->dilation);
    size_t oh = op_window_count(in[0].d[2], a->kernel, stride, a->pad, dilation);
    size_t ow = op_window_count(in[0].d[3], a->kernel, stride, a->pad, dilation);
    if (oh == 0 || ow == 0)
        return error_set(KILN_ERR_SHAPE, "conv2d: a %zux%zu kernel (dilation %zu, padding %zu) "
                                         "does not fit the input %s",
                         a->kernel, a->kernel, dilation, a->pad,
                         shape_str(&in[0], buf, sizeof buf));
    s->out = shape_make(4, in[0].d[0], a->out, oh, ow);
    s->n_params = a->bias ? 2 : 1;
    s->param[0] = shape_make(4, a->out, in[0].d[1], a->kernel, a->kernel);
    s->param[1] = shape_make(1, a->out, 0, 0, 0);
    return KILN_OK;
}

static conv_dims dims_of(const op_args *c)
{
    const kiln_tensor *x = c->in[0];
    conv_dims d = {x->shape[0], x->shape[1], x->shape[2], x->shape[3], c->attrs->out,
                   c->out->shape[2], c->out->shape[3], c->attrs->kernel,
                   one_if_zero(c->attrs->stride), c->attrs->pad,
                   one_if_zero(c->attrs->dilation)};
    return d;
}

/* x (N, C, H, W) -> col (C*K*K, N*OH*OW), over (OW, OH, N). */
static kiln_status im2col(kiln_ctx *ctx, const conv_dims *d, cl_mem x, cl_mem col)
{
    cl_kernel k;
    kiln_status st = kernel_get(ctx, "conv.cl", "", "im2col", &k);
    if (st != KILN_OK)
        return st;
    cl_uint v[7] = {d->c, d->h, d->w, d->k, d->s, d->p, d->d};
    return launch_3d(ctx, k, "im2col", d->ow, d->oh, d->n, KARG(x), KARG(col),
                     KARG(v[0]), KARG(v[1]), KARG(v[2]), KARG(v[3]), KARG(v[4]),
                     KARG(v[5]), KARG(v[6]));
}

/* dcol (C*K*K, N*OH*OW) -> dx (N, C, H, W): over (W, H, N*C), or with
 * kiln's CPU GEMM one item per plane (col2im_planes). */
static kiln_status col2im(kiln_ctx *ctx, const conv_dims *d, cl_mem dcol, cl_mem dx)
{
    cl_kernel k;
    if (kiln_ctx_gemm(ctx) == KILN_GEMM_KILN) {
        cl_uint v[10] = {d->n, d->c, d->h, d->w, d->oh, d->ow, d->k, d->s, d->p, d->d};
        kiln_status st = kernel_get(ctx, "conv.cl", "", "col2im_planes", &k);
        return st == KILN_OK
                   ? launch_1d(ctx, k, "col2im_planes", d->n * d->c, 1, KARG(dcol),
                               KARG(dx), KARG(v[0]), KARG(v[1]), KARG(v[2]), KARG(v[3]),
                               KARG(v[4]), KARG(v[5]), KARG(v[6]), KARG(v[7]), KARG(v[8]),
                               KARG(v[9]))
                   : st;
    }
    kiln_status st = kernel_get(ctx, "conv.cl", "", "col2im", &k);
    if (st != KILN_OK)
        return st;
    cl_uint v[8] = {d->n, d->c, d->oh, d->ow, d->k, d->s, d->p, d->d};
    return launch_3d(ctx, k, "col2im", d->w, d->h, d->n * d->c, KARG(dcol), KARG(dx),
                     KARG(v[0]), KARG(v[1]), KARG(v[2]), KARG(v[3]), KARG(v[4]),
                     KARG(v[5]), KARG(v[6]), KARG(v[7]));
}

/* col2im into din, or (din_add) into a temporary then added to din. */
static kiln_status col2im_into(const op_args *c, const conv_dims *d, cl_mem dcol)
{
    if (!c->din_add[0])
        return col2im(c->ctx, d, dcol, c->din[0]->buf);
    kiln_shape s = shape_of(c->din[0]);
    kiln_tensor *part;
    kiln_status st = tensor_of(c->ctx, &s, &part);
    if (st == KILN_OK)
        st = col2im(c->ctx, d, dcol, part->buf);
    if (st == KILN_OK)
        st = op_add_into(c->ctx, c->din[0], part);
    kiln_tensor_free(part);
    return st;
}

static kiln_status make_columns(kiln_ctx *ctx, const conv_dims *d, cl_mem x, kiln_tensor **col)
{
    kiln_shape s = shape_make(2, d->c * d->k * d->k, d->n * d->oh * d->ow, 0, 0);
    *col = NULL;
    kiln_status st = op_check_count("conv2d", "the column matrix", shape_numel(&s));
    if (st == KILN_OK)
        st = tensor_of(ctx, &s, col);
    if (st == KILN_OK)
        st = im2col(ctx, d, x, (*col)->buf);
    if (st != KILN_OK) {
        kiln_tensor_free(*col);
        *col = NULL;
    }
    return st;
}

/* out = a (O rows) times the column matrix of x (transposed = 0: col,
 * CKK x N*P, giving O x N*P) or its transpose (1: colᵀ, N*P x CKK, giving
 * O x CKK). kiln's GEMM packs the columns straight from the image; CLBlast
 * gets the column matrix written out. */
static kiln_status times_columns(const op_args *c, const conv_dims *d, cl_mem a, cl_mem out,
                                 int transposed)
{
    size_t ckk = d->c * d->k * d->k, np = d->n * d->oh * d->ow;
    size_t n = transposed ? ckk : np, k = transposed ? np : ckk;
    if (kiln_ctx_gemm(c->ctx) == KILN_GEMM_KILN) {
        gemm_im2col x = {c->in[0]->buf, d->n, d->c, d->h, d->w, d->k, d->s, d->p, d->d,
                         d->oh, d->ow};
        return gemm_cpu_sgemm_im2col(c->ctx, d->o, 1.0f, a, k, &x, transposed, 0.0f, out, n);
    }
    kiln_tensor *col = NULL;
    kiln_status st = make_columns(c->ctx, d, c->in[0]->buf, &col);
    if (st == KILN_OK)
        st = blas_sgemm(c->ctx, KILN_NO_TRANS, transposed ? KILN_TRANS : KILN_NO_TRANS, d->o,
                        n, k, 1.0f, a, 0, k, col->buf, 0, np, 0.0f, out, 0, n);
    kiln_tensor_free(col);
    return st;
}

/* Whether the CPU-shaped convolution kernels apply: kiln's GEMM on a
 * device that runs work-groups as loops (PoCL). */
static int cpu_shaped(const op_args *c)
{
    return kiln_ctx_gemm(c->ctx) == KILN_GEMM_KILN &&
           device_loops_work_groups(&c->ctx->info);
}

/* Whether a convolution over C channels runs as gemm_cpu_conv: on CPUs
 * with kiln's GEMM, where a panel of its C K K rows fits the k block. */
static int fused_fits(const op_args *c, const conv_dims *d, size_t channels)
{
    return cpu_shaped(c) && gemm_cpu_conv_fits(c->ctx, channels * d->k * d->k);
}

/* The input gradient as a convolution of g (N, O, OH, OW) with the
 * flipped weights, for stride 1 and padding up to the kernel's span. */
static int input_grads_fused(const op_args *c, const conv_dims *d)
{
    return d->s == 1 && d->d * (d->k - 1) >= d->p && fused_fits(c, d, d->o);
}

/* Whether the input gradient runs phase by phase of its inputs, each
 * phase a convolution of g by the taps that reach it (strided
 * convolutions, and those conv_tiles does not take): on CPUs, with up to
 * 64 input channels as conv_phase_pixels (g read in place), else where the
 * taps of a phase fit the k block and the layer does not widen (packing
 * g's panels, with O > C conv_phase_tiles packs more than the
 * column-gradient GEMM and measured slower, docs/gemm.md). rusticl's
 * llvmpipe crashed compiling conv_phase_tiles for some shapes, so it stays
 * on the col2im path. */
static int input_grads_phased(const op_args *c, const conv_dims *d, const gemm_im2col *dx)
{
    return cpu_shaped(c) && (gemm_cpu_phase_pixels_pay(d->c) ||
                             (d->o <= d->c && gemm_cpu_conv_phases_fit(c->ctx, d->o, dx)));
}

static kiln_status fused_input_grads(const op_args *c, const conv_dims *d, cl_mem g)
{
    kiln_shape s = shape_make(2, d->c, d->o * d->k * d->k, 0, 0);
    kiln_tensor *wf = NULL;
    cl_kernel k;
    kiln_status st = kernel_get(c->ctx, "conv.cl", "", "flip_weights", &k);
    if (st == KILN_OK)
        st = tensor_of(c->ctx, &s, &wf);
    if (st == KILN_OK)
        st = launch_3d(c->ctx, k, "flip_weights", d->k * d->k, d->o, d->c,
                       KARG(c->param[0]->buf), KARG(wf->buf));
    gemm_im2col x = {g, d->n, d->o, d->oh, d->ow, d->k, 1, d->d * (d->k - 1) - d->p, d->d,
                     d->h, d->w};
    if (st == KILN_OK)
        st = gemm_cpu_conv(c->ctx, d->c, wf->buf, NULL, &x, c->din[0]->buf, c->din_add[0]);
    kiln_tensor_free(wf);
    return st;
}

static kiln_status conv_forward(const op_args *c)
{
    conv_dims d = dims_of(c);
    size_t np = d.n * d.oh * d.ow;
    kiln_tensor *tmp = NULL;
    kiln_status st = KILN_OK;
    if (fused_fits(c, &d, d.c)) {
        gemm_im2col x = {c->in[0]->buf, d.n, d.c, d.h, d.w, d.k, d.s, d.p, d.d, d.oh, d.ow};
        st = gemm_cpu_conv(c->ctx, d.o, c->param[0]->buf, c->packed, &x, c->out->buf, 0);
        return st != KILN_OK ? st
                             : op_bias_act(c->ctx, c->attrs->act, c->attrs->slope, c->out,
                                           c->attrs->bias ? c->param[1] : NULL, d.o,
                                           d.oh * d.ow);
    }
    /* (O, N*P) = W (O, CKK) col (CKK, N*P); with N = 1 that is y itself. */
    if (d.n > 1) {
        kiln_shape s = shape_make(2, d.o, np, 0, 0);
        st = tensor_of(c->ctx, &s, &tmp);
    }
    cl_mem product = tmp ? tmp->buf : c->out->buf;
    if (st == KILN_OK)
        st = times_columns(c, &d, c->param[0]->buf, product, 0);
    if (st == KILN_OK && tmp)
        st = op_swap01(c->ctx, tmp->buf, c->out->buf, d.o, d.n, d.oh * d.ow);
    if (st == KILN_OK)
        st = op_bias_act(c->ctx, c->attrs->act, c->attrs->slope, c->out,
                         c->attrs->bias ? c->param[1] : NULL, d.o, d.oh * d.ow);
    kiln_tensor_free(tmp);
    return st;
}

static kiln_status conv_backward(const op_args *c)
{
    conv_dims d = dims_of(c);
    size_t ckk = d.c * d.k * d.k, np = d.n * d.oh * d.ow;
    kiln_tensor *dz = NULL, *dzt = NULL, *dcol = NULL;
    kiln_status st = op_act_grad(c, &dz);
    cl_mem g = dz ? dz->buf : c->dout->buf; /* (N, O, P) */
    if (st == KILN_OK && c->attrs->bias && c->dparam[1])
        st = op_channel_sums(c->ctx, g, d.n, d.o, d.oh * d.ow, c->dparam[1]->buf);
    int slotted = c->dparam[0] && kiln_ctx_gemm(c->ctx) == KILN_GEMM_KILN &&
                  gemm_cpu_conv_weights_pay(d.o, d.c * d.k * d.k, d.ow);
    int fused = c->din[0] && input_grads_fused(c, &d);
    gemm_im2col x = {c->in[0]->buf, d.n, d.c, d.h, d.w, d.k, d.s, d.p, d.d, d.oh, d.ow};
    gemm_im2col dx = {c->din[0] ? c->din[0]->buf : NULL, d.n, d.c, d.h, d.w, d.k, d.s, d.p,
                      d.d, d.oh, d.ow};
    int phased = c->din[0] && !fused && input_grads_phased(c, &d, &dx);
    /* gt: the gradient as (O, N*P), the GEMM's layout */
    if (st == KILN_OK && d.n > 1 &&
        ((c->dparam[0] && !slotted) || (c->din[0] && !fused && !phased))) {
        kiln_shape s = shape_make(2, d.o, np, 0, 0);
        st = tensor_of(c->ctx, &s, &dzt);
        if (st == KILN_OK)
            st = op_swap01(c->ctx, g, dzt->buf, d.n, d.o, d.oh * d.ow);
    }
    cl_mem gt = dzt ? dzt->buf : g;
    if (st == KILN_OK && slotted)
        st = gemm_cpu_conv_weights(c->ctx, g, &x, d.o, c->dparam[0]->buf);
    else if (st == KILN_OK && c->dparam[0]) /* dW (O, CKK) = gt colᵀ */
        st = times_columns(c, &d, gt, c->dparam[0]->buf, 1);
    if (st == KILN_OK && fused)
        st = fused_input_grads(c, &d, g);
    else if (st == KILN_OK && phased)
        st = gemm_cpu_conv_phases(c->ctx, d.o, c->param[0]->buf, g, &dx, c->din_add[0]);
    else if (st == KILN_OK && c->din[0]) { /* dcol (CKK, N*P) = Wᵀ gt, then col2im */
        kiln_shape s = shape_make(2, ckk, np, 0, 0);
        st = tensor_of(c->ctx, &s, &dcol);
        if (st == KILN_OK)
            st = blas_sgemm(c->ctx, KILN_TRANS, KILN_NO_TRANS, ckk, np, d.o, 1.0f,
                            c->param[0]->buf, 0, ckk, gt, 0, np, 0.0f, dcol->buf, 0, np);
        if (st == KILN_OK)
            st = col2im_into(c, &d, dcol->buf);
    }
    kiln_tensor_free(dz);
    kiln_tensor_free(dzt);
    kiln_tensor_free(dcol);
    return st;
}

/* Some inputs get no gradient where a residue of the stride has no tap
 * landing on it: a 1 x 1 convolution of stride 2 reaches one input in
 * four, and adding its gradient touches only those (conv_phase_pixels). */
static int conv_sparse_input_grads(const op_attrs *a)
{
    gemm_im2col x = {.k = a->kernel, .s = one_if_zero(a->stride), .p = a->pad,
                     .d = one_if_zero(a->dilation)};
    return gemm_conv_tapless_phase(&x);
}

/* Whether the forward runs as gemm_cpu_conv and that packs the weights
 * at every call. */
static int conv_packs_weight(const op_args *c)
{
    conv_dims d = dims_of(c);
    return fused_fits(c, &d, d.c) && gemm_cpu_conv_packs(d.o, d.c * d.k * d.k);
}

/* nn.Conv2d(in, out, kernel_size, stride, padding, dilation, bias), with
 * a square kernel of side size. */
static const op_key conv_keys[] = {
    OP_KEY_NEEDED("out", out, 1, 1000000),
    OP_KEY_NEEDED("size", kernel, 1, 1024),
    OP_KEY_WHOLE("stride", stride, 1, 1024, 1),
    OP_KEY_WHOLE("pad", pad, 0, 1024, 0),
    OP_KEY_WHOLE("dilation", dilation, 1, 1024, 1),
    OP_KEY_BOOL("bias", bias, 1),
    OP_KEY_CHOICE("init", init, INIT_DEFAULT, op_init_choices, INIT_COUNT),
};

const op_desc op_conv2d_desc = {
    .name = "conv2d",
    .n_inputs = 1,
    .fuses_act = 1,
    .folds_batchnorm = 1,
    .adds_input_grads = 1,
    .sparse_input_grads = conv_sparse_input_grads,
    .packs_weight = conv_packs_weight,
    .in_ranks = 1u << 4,
    .in_hint = "expected channels x height x width (e.g. [input] shape = 1x28x28)",
    .keys = conv_keys,
    .n_keys = sizeof conv_keys / sizeof conv_keys[0],
    .param_names = {"weight", "bias"},
    .init = op_init_weight_bias,
    .infer = conv_infer,
    .forward = conv_forward,
    .backward = conv_backward,
};
