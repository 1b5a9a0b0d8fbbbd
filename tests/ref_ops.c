/* Float64 references of the operators (see ref_ops.h). Plain loops, as
 * close to the textbook definitions as possible. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref_gpt.h"
#include "ref_ops.h"

static const double inv_sqrt2 = 0.70710678118654752440;
static const double sqrt_2_over_pi = 0.79788456080286535588;

/* A row of KILN_ACT_LIST without its reference here stops the tests. */
static double no_reference(kiln_act act)
{
    fprintf(stderr, "ref_ops.c: no float64 reference for activation %s\n",
            act_get(act) ? act_get(act)->name : "(outside the list)");
    abort();
}

double ref_act(kiln_act act, double x, double slope)
{
    switch (act) {
    case KILN_ACT_NONE:
        return x;
    case KILN_ACT_RELU:
        return x > 0 ? x : 0;
    case KILN_ACT_LEAKY_RELU:
        return x > 0 ? x : slope * x;
    case KILN_ACT_SIGMOID:
        return 1.0 / (1.0 + exp(-x));
    case KILN_ACT_TANH:
        return tanh(x);
    case KILN_ACT_GELU:
        return 0.5 * x * (1.0 + erf(x * inv_sqrt2));
    case KILN_ACT_GELU_TANH:
        return 0.5 * x * (1.0 + tanh(sqrt_2_over_pi * (x + 0.044715 * x * x * x)));
    case KILN_ACT_SILU:
        return x / (1.0 + exp(-x));
    default:
        return no_reference(act);
    }
}

static double act_deriv(kiln_act act, double x, double slope)
{
    switch (act) {
    case KILN_ACT_NONE:
        return 1;
    case KILN_ACT_RELU:
        return x > 0 ? 1 : 0;
    case KILN_ACT_LEAKY_RELU:
        return x > 0 ? 1 : slope;
    case KILN_ACT_SIGMOID: {
        double s = 1.0 / (1.0 + exp(-x));
        return s * (1 - s);
    }
    case KILN_ACT_TANH:
        return 1 - tanh(x) * tanh(x);
    case KILN_ACT_GELU:
        return 0.5 * (1 + erf(x * inv_sqrt2)) + x * exp(-0.5 * x * x) / 2.50662827463100050242;
    case KILN_ACT_GELU_TANH: {
        double u = sqrt_2_over_pi * (x + 0.044715 * x * x * x);
        double du = sqrt_2_over_pi * (1 + 3 * 0.044715 * x * x);
        return 0.5 * (1 + tanh(u)) + 0.5 * x * (1 - tanh(u) * tanh(u)) * du;
    }
    case KILN_ACT_SILU: {
        double s = 1.0 / (1.0 + exp(-x));
        return s * (1 + x * (1 - s));
    }
    default:
        return no_reference(act);
    }
}

static size_t numel(const kiln_shape *s)
{
    return shape_numel(s);
}

/* ---- linear ------------------------------------------------------------ */

/* x viewed as (n, in): a sequence (B, T, in) is B T rows. */
static size_t linear_rows(const ref_op *r, size_t *in)
{
    *in = r->in_shape[0].d[r->in_shape[0].ndim - 1];
    return numel(&r->in_shape[0]) / *in;
}

static void linear_fwd(ref_op *r)
{
    size_t in, n = linear_rows(r, &in), out = r->a->out;
    for (size_t i = 0; i < n; i++)
        for (size_t o = 0; o < out; o++) {
            double z = r->a->bias ? r->param[1][o] : 0;
            for (size_t k = 0; k < in; k++)
                z += r->in[0][i * in + k] * r->param[0][o * in + k];
            r->out[i * out + o] = ref_act(r->a->act, z, r->a->slope);
        }
}

/* dz = act'(z) dy where z is recovered by recomputing the pre-activation. */
static void linear_bwd(ref_op *r)
{
    size_t in, n = linear_rows(r, &in), out = r->a->out;
    double *dz = malloc(n * out * sizeof *dz);
    for (size_t i = 0; i < n; i++)
        for (size_t o = 0; o < out; o++) {
            double z = r->a->bias ? r->param[1][o] : 0;
            for (size_t k = 0; k < in; k++)
                z += r->in[0][i * in + k] * r->param[0][o * in + k];
            dz[i * out + o] = r->dout[i * out + o] * act_deriv(r->a->act, z, r->a->slope);
        }
    if (r->din[0])
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < in; k++) {
                double s = 0;
                for (size_t o = 0; o < out; o++)
                    s += dz[i * out + o] * r->param[0][o * in + k];
                r->din[0][i * in + k] = s;
            }
    for (size_t o = 0; o < out; o++) {
        for (size_t k = 0; r->dparam[0] && k < in; k++) {
            double s = 0;
            for (size_t i = 0; i < n; i++)
                s += dz[i * out + o] * r->in[0][i * in + k];
            r->dparam[0][o * in + k] = s;
        }
        if (r->a->bias && r->dparam[1]) {
            double s = 0;
            for (size_t i = 0; i < n; i++)
                s += dz[i * out + o];
            r->dparam[1][o] = s;
        }
    }
    free(dz);
}

/* ---- conv2d --------------------------------------------------------------- */

typedef struct {
    size_t n, c, h, w, o, oh, ow, k, s, p, d;
} cdims;

static cdims conv_dims(const ref_op *r)
{
    const kiln_shape *x = &r->in_shape[0];
    cdims d = {x->d[0], x->d[1], x->d[2], x->d[3], r->a->out, r->out_shape.d[2],
               r->out_shape.d[3], r->a->kernel, r->a->stride ? r->a->stride : 1, r->a->pad,
               r->a->dilation ? r->a->dilation : 1};
    return d;
}

/* Input index of tap (kh, kw) of output (oh, ow), or -1 in the padding. */
static long tap(const cdims *d, size_t oh, size_t ow, size_t kh, size_t kw)
{
    long ih = (long)(oh * d->s + kh * d->d) - (long)d->p;
    long iw = (long)(ow * d->s + kw * d->d) - (long)d->p;
    if (ih < 0 || iw < 0 || ih >= (long)d->h || iw >= (long)d->w)
        return -1;
    return ih * (long)d->w + iw;
}

static double conv_z(const ref_op *r, const cdims *d, size_t n, size_t o, size_t oh, size_t ow)
{
    double z = r->a->bias ? r->param[1][o] : 0;
    for (size_t c = 0; c < d->c; c++)
        for (size_t kh = 0; kh < d->k; kh++)
            for (size_t kw = 0; kw < d->k; kw++) {
                long at = tap(d, oh, ow, kh, kw);
                if (at >= 0)
                    z += r->in[0][(n * d->c + c) * d->h * d->w + (size_t)at] *
                         r->param[0][((o * d->c + c) * d->k + kh) * d->k + kw];
            }
    return z;
}

static void conv_fwd(ref_op *r)
{
    cdims d = conv_dims(r);
    for (size_t n = 0; n < d.n; n++)
        for (size_t o = 0; o < d.o; o++)
            for (size_t oh = 0; oh < d.oh; oh++)
                for (size_t ow = 0; ow < d.ow; ow++)
                    r->out[((n * d.o + o) * d.oh + oh) * d.ow + ow] =
                        ref_act(r->a->act, conv_z(r, &d, n, o, oh, ow), r->a->slope);
}

static void conv_bwd(ref_op *r)
{
    cdims d = conv_dims(r);
    size_t wn = d.o * d.c * d.k * d.k;
    if (r->din[0])
        memset(r->din[0], 0, numel(&r->in_shape[0]) * sizeof(double));
    if (r->dparam[0])
        memset(r->dparam[0], 0, wn * sizeof(double));
    if (r->a->bias && r->dparam[1])
        memset(r->dparam[1], 0, d.o * sizeof(double));
    for (size_t n = 0; n < d.n; n++)
        for (size_t o = 0; o < d.o; o++)
            for (size_t oh = 0; oh < d.oh; oh++)
                for (size_t ow = 0; ow < d.ow; ow++) {
                    size_t at_y = ((n * d.o + o) * d.oh + oh) * d.ow + ow;
                    double g = r->dout[at_y] * act_deriv(r->a->act, conv_z(r, &d, n, o, oh, ow),
                                                         r->a->slope);
                    if (r->a->bias && r->dparam[1])
                        r->dparam[1][o] += g;
                    for (size_t c = 0; c < d.c; c++)
                        for (size_t kh = 0; kh < d.k; kh++)
                            for (size_t kw = 0; kw < d.k; kw++) {
                                long at = tap(&d, oh, ow, kh, kw);
                                if (at < 0)
                                    continue;
                                size_t xi = (n * d.c + c) * d.h * d.w + (size_t)at;
                                size_t wi = ((o * d.c + c) * d.k + kh) * d.k + kw;
                                if (r->din[0])
                                    r->din[0][xi] += g * r->param[0][wi];
                                if (r->dparam[0])
                                    r->dparam[0][wi] += g * r->in[0][xi];
                            }
                }
}

/* ---- pools ---------------------------------------------------------------------- */

static cdims pool_dims(const ref_op *r)
{
    cdims d = conv_dims(r);
    d.o = d.c;
    d.s = r->a->stride ? r->a->stride : r->a->kernel;
    d.d = 1;
    d.oh = r->out_shape.d[2];
    d.ow = r->out_shape.d[3];
    return d;
}

/* Index of the max in a window (first of equals), as the device picks. */
static long window_max(const ref_op *r, const cdims *d, size_t plane, size_t oh, size_t ow)
{
    long best = -1;
    for (size_t kh = 0; kh < d->k; kh++)
        for (size_t kw = 0; kw < d->k; kw++) {
            long at = tap(d, oh, ow, kh, kw);
            if (at >= 0 && (best < 0 || r->in[0][plane * d->h * d->w + (size_t)at] >
                                            r->in[0][plane * d->h * d->w + (size_t)best]))
                best = at;
        }
    return best;
}

static void pool_fwd(ref_op *r, int max)
{
    cdims d = pool_dims(r);
    for (size_t plane = 0; plane < d.n * d.c; plane++)
        for (size_t oh = 0; oh < d.oh; oh++)
            for (size_t ow = 0; ow < d.ow; ow++) {
                double v = 0;
                if (max) {
                    v = r->in[0][plane * d.h * d.w + (size_t)window_max(r, &d, plane, oh, ow)];
                } else {
                    for (size_t kh = 0; kh < d.k; kh++)
                        for (size_t kw = 0; kw < d.k; kw++) {
                            long at = tap(&d, oh, ow, kh, kw);
                            v += at >= 0 ? r->in[0][plane * d.h * d.w + (size_t)at] : 0;
                        }
                    v /= (double)(d.k * d.k);
                }
                r->out[(plane * d.oh + oh) * d.ow + ow] = v;
            }
}

static void pool_bwd(ref_op *r, int max)
{
    cdims d = pool_dims(r);
    if (!r->din[0])
        return;
    memset(r->din[0], 0, numel(&r->in_shape[0]) * sizeof(double));
    for (size_t plane = 0; plane < d.n * d.c; plane++)
        for (size_t oh = 0; oh < d.oh; oh++)
            for (size_t ow = 0; ow < d.ow; ow++) {
                double g = r->dout[(plane * d.oh + oh) * d.ow + ow];
                if (max) {
                    r->din[0][plane * d.h * d.w + (size_t)window_max(r, &d, plane, oh, ow)] += g;
                    continue;
                }
                for (size_t kh = 0; kh < d.k; kh++)
                    for (size_t kw = 0; kw < d.k; kw++) {
                        long at = tap(&d, oh, ow, kh, kw);
                        if (at >= 0)
                            r->din[0][plane * d.h * d.w + (size_t)at] += g / (double)(d.k * d.k);
                    }
            }
}

/* ---- batchnorm --------------------------------------------------------------------- */

static void bn_stats(const ref_op *r, size_t c, double *mean, double *var)
{
    const kiln_shape *x = &r->in_shape[0];
    size_t n = x->d[0], ch = x->d[1], s = numel(x) / (n * ch);
    double sum = 0, sq = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < s; j++)
            sum += r->in[0][(i * ch + c) * s + j];
    *mean = sum / (double)(n * s);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < s; j++) {
            double dv = r->in[0][(i * ch + c) * s + j] - *mean;
            sq += dv * dv;
        }
    *var = sq / (double)(n * s);
}

static void bn_fwd(ref_op *r)
{
    const kiln_shape *x = &r->in_shape[0];
    size_t n = x->d[0], ch = x->d[1], s = numel(x) / (n * ch), m = n * s;
    for (size_t c = 0; c < ch; c++) {
        double mean, var;
        if (r->training) {
            bn_stats(r, c, &mean, &var);
            double mom = r->a->momentum;
            r->buffer[0][c] = (1 - mom) * r->buffer[0][c] + mom * mean;
            r->buffer[1][c] = (1 - mom) * r->buffer[1][c] + mom * var * (double)m / (double)(m - 1);
        } else {
            mean = r->buffer[0][c];
            var = r->buffer[1][c];
        }
        double rstd = 1 / sqrt(var + r->a->eps);
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < s; j++) {
                size_t at = (i * ch + c) * s + j;
                r->out[at] = ref_act(r->a->act,
                                     (r->in[0][at] - mean) * rstd * r->param[0][c] + r->param[1][c],
                                     r->a->slope);
            }
    }
}

static void bn_bwd(ref_op *r)
{
    const kiln_shape *x = &r->in_shape[0];
    size_t n = x->d[0], ch = x->d[1], s = numel(x) / (n * ch), m = n * s;
    for (size_t c = 0; c < ch; c++) {
        double mean, var;
        if (r->training)
            bn_stats(r, c, &mean, &var);
        else {
            mean = r->buffer[0][c];
            var = r->buffer[1][c];
        }
        double rstd = 1 / sqrt(var + r->a->eps), db = 0, dg = 0;
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < s; j++) {
                size_t at = (i * ch + c) * s + j;
                double xhat = (r->in[0][at] - mean) * rstd;
                double dz = r->dout[at] * act_deriv(r->a->act, xhat * r->param[0][c] + r->param[1][c],
                                                    r->a->slope);
                db += dz;
                dg += dz * xhat;
            }
        if (r->dparam[0])
            r->dparam[0][c] = dg;
        if (r->dparam[1])
            r->dparam[1][c] = db;
        for (size_t i = 0; r->din[0] && i < n; i++)
            for (size_t j = 0; j < s; j++) {
                size_t at = (i * ch + c) * s + j;
                double xhat = (r->in[0][at] - mean) * rstd, g = r->param[0][c] * rstd;
                double dz = r->dout[at] * act_deriv(r->a->act, xhat * r->param[0][c] + r->param[1][c],
                                                    r->a->slope);
                r->din[0][at] = r->training ? g / (double)m * ((double)m * dz - db - xhat * dg)
                                            : g * dz;
            }
    }
}

/* ---- layernorm --------------------------------------------------------------------- */

static size_t ln_dim(const ref_op *r)
{
    size_t d = 1;
    for (int i = r->in_shape[0].ndim - r->a->norm_dims; i < r->in_shape[0].ndim; i++)
        d *= r->in_shape[0].d[i];
    return d;
}

static void ln_row(const ref_op *r, size_t row, size_t dim, double *mean, double *rstd)
{
    double sum = 0, sq = 0;
    for (size_t j = 0; j < dim; j++)
        sum += r->in[0][row * dim + j];
    *mean = sum / (double)dim;
    for (size_t j = 0; j < dim; j++)
        sq += (r->in[0][row * dim + j] - *mean) * (r->in[0][row * dim + j] - *mean);
    *rstd = 1 / sqrt(sq / (double)dim + r->a->eps);
}

static void ln_fwd(ref_op *r)
{
    size_t dim = ln_dim(r), rows = numel(&r->in_shape[0]) / dim;
    for (size_t i = 0; i < rows; i++) {
        double mean, rstd;
        ln_row(r, i, dim, &mean, &rstd);
        for (size_t j = 0; j < dim; j++)
            r->out[i * dim + j] =
                (r->in[0][i * dim + j] - mean) * rstd * r->param[0][j] +
                (r->a->bias ? r->param[1][j] : 0);
    }
}

static void ln_bwd(ref_op *r)
{
    size_t dim = ln_dim(r), rows = numel(&r->in_shape[0]) / dim;
    for (size_t j = 0; j < dim; j++) {
        if (r->dparam[0])
            r->dparam[0][j] = 0;
        if (r->a->bias && r->dparam[1])
            r->dparam[1][j] = 0;
    }
    for (size_t i = 0; i < rows; i++) {
        double mean, rstd, mg = 0, mgx = 0;
        ln_row(r, i, dim, &mean, &rstd);
        for (size_t j = 0; j < dim; j++) {
            double xhat = (r->in[0][i * dim + j] - mean) * rstd, dy = r->dout[i * dim + j];
            mg += dy * r->param[0][j] / (double)dim;
            mgx += dy * r->param[0][j] * xhat / (double)dim;
            if (r->dparam[0])
                r->dparam[0][j] += dy * xhat;
            if (r->a->bias && r->dparam[1])
                r->dparam[1][j] += dy;
        }
        for (size_t j = 0; r->din[0] && j < dim; j++) {
            double xhat = (r->in[0][i * dim + j] - mean) * rstd;
            r->din[0][i * dim + j] =
                rstd * (r->dout[i * dim + j] * r->param[0][j] - mg - xhat * mgx);
        }
    }
}

/* ---- softmax, activation, add, concat, flatten ------------------------------------- */

static void softmax_split(const ref_op *r, size_t *outer, size_t *n, size_t *inner)
{
    const kiln_shape *s = &r->in_shape[0];
    int dim = r->a->dim < 0 ? s->ndim + r->a->dim : r->a->dim;
    *outer = *inner = 1;
    for (int i = 0; i < dim; i++)
        *outer *= s->d[i];
    *n = s->d[dim];
    for (int i = dim + 1; i < s->ndim; i++)
        *inner *= s->d[i];
}

static void softmax_fwd(ref_op *r)
{
    size_t outer, n, inner;
    softmax_split(r, &outer, &n, &inner);
    for (size_t o = 0; o < outer; o++)
        for (size_t s = 0; s < inner; s++) {
            size_t base = o * n * inner + s;
            double m = -INFINITY, sum = 0;
            for (size_t j = 0; j < n; j++)
                m = fmax(m, r->in[0][base + j * inner]);
            for (size_t j = 0; j < n; j++)
                sum += exp(r->in[0][base + j * inner] - m);
            for (size_t j = 0; j < n; j++)
                r->out[base + j * inner] = exp(r->in[0][base + j * inner] - m) / sum;
        }
}

static void softmax_bwd(ref_op *r)
{
    size_t outer, n, inner;
    softmax_split(r, &outer, &n, &inner);
    double *y = malloc(numel(&r->in_shape[0]) * sizeof *y), *saved = r->out;
    r->out = y;
    softmax_fwd(r);
    r->out = saved;
    for (size_t o = 0; r->din[0] && o < outer; o++)
        for (size_t s = 0; s < inner; s++) {
            size_t base = o * n * inner + s;
            double dot = 0;
            for (size_t j = 0; j < n; j++)
                dot += r->dout[base + j * inner] * y[base + j * inner];
            for (size_t j = 0; j < n; j++)
                r->din[0][base + j * inner] = y[base + j * inner] * (r->dout[base + j * inner] - dot);
        }
    free(y);
}

static void concat_sizes(const ref_op *r, size_t *n, size_t *c0, size_t *c1, size_t *s)
{
    *n = r->in_shape[0].d[0];
    *c0 = r->in_shape[0].d[1];
    *c1 = r->in_shape[1].d[1];
    *s = numel(&r->in_shape[0]) / (*n * *c0);
}

static void concat_fwd(ref_op *r)
{
    size_t n, c0, c1, s;
    concat_sizes(r, &n, &c0, &c1, &s);
    for (size_t i = 0; i < n; i++) {
        memcpy(r->out + i * (c0 + c1) * s, r->in[0] + i * c0 * s, c0 * s * sizeof(double));
        memcpy(r->out + (i * (c0 + c1) + c0) * s, r->in[1] + i * c1 * s, c1 * s * sizeof(double));
    }
}

static void concat_bwd(ref_op *r)
{
    size_t n, c0, c1, s;
    concat_sizes(r, &n, &c0, &c1, &s);
    for (size_t i = 0; i < n; i++) {
        if (r->din[0])
            memcpy(r->din[0] + i * c0 * s, r->dout + i * (c0 + c1) * s, c0 * s * sizeof(double));
        if (r->din[1])
            memcpy(r->din[1] + i * c1 * s, r->dout + (i * (c0 + c1) + c0) * s,
                   c1 * s * sizeof(double));
    }
}

/* The sequence ops through ref_gpt.c: embedding, position, attention. */
static void sequence_fwd(op_kind kind, ref_op *r)
{
    const size_t *d = r->in_shape[0].d, n = numel(&r->in_shape[0]);
    if (kind == OP_EMBEDDING)
        ref_embedding(r->in[0], n, r->param[0], r->a->out, r->out);
    else if (kind == OP_POSITION)
        ref_position(r->in[0], d[0], d[1], d[2], r->param[0], r->out);
    else
        ref_attention(r->in[0], d[0], d[1], d[2] / 3, r->a->heads, r->out);
}

static void sequence_bwd(op_kind kind, ref_op *r)
{
    const size_t *d = r->in_shape[0].d, n = numel(&r->in_shape[0]);
    if (kind == OP_EMBEDDING) { /* token ids have no gradient */
        if (r->din[0])
            memset(r->din[0], 0, n * sizeof(double));
        if (r->dparam[0])
            ref_embedding_backward(r->in[0], n, r->dout, r->a->rows, r->a->out, r->dparam[0]);
    } else if (kind == OP_POSITION) {
        if (r->din[0])
            memcpy(r->din[0], r->dout, n * sizeof(double));
        if (r->dparam[0])
            ref_position_backward(r->dout, d[0], d[1], d[2], r->a->rows, r->dparam[0]);
    } else if (r->din[0]) {
        ref_attention_backward(r->in[0], r->dout, d[0], d[1], d[2] / 3, r->a->heads,
                               r->din[0]);
    }
}

void ref_forward(op_kind kind, ref_op *r)
{
    size_t n = numel(&r->in_shape[0]);
    switch (kind) {
    case OP_EMBEDDING:
    case OP_POSITION:
    case OP_ATTENTION:
        sequence_fwd(kind, r);
        break;
    case OP_LINEAR:
        linear_fwd(r);
        break;
    case OP_CONV2D:
        conv_fwd(r);
        break;
    case OP_MAXPOOL:
    case OP_AVGPOOL:
        pool_fwd(r, kind == OP_MAXPOOL);
        break;
    case OP_BATCHNORM:
        bn_fwd(r);
        break;
    case OP_LAYERNORM:
        ln_fwd(r);
        break;
    case OP_SOFTMAX:
        softmax_fwd(r);
        break;
    case OP_CONCAT:
        concat_fwd(r);
        break;
    case OP_ACTIVATION:
        for (size_t i = 0; i < n; i++)
            r->out[i] = ref_act(r->a->act, r->in[0][i], r->a->slope);
        break;
    case OP_ADD: /* with the activation it absorbs */
        for (size_t i = 0; i < n; i++)
            r->out[i] = ref_act(r->a->act, r->in[0][i] + r->in[1][i], r->a->slope);
        break;
    default: /* flatten; dropout in eval mode */
        memcpy(r->out, r->in[0], n * sizeof(double));
        break;
    }
}

void ref_backward(op_kind kind, ref_op *r)
{
    size_t n = numel(&r->in_shape[0]);
    switch (kind) {
    case OP_EMBEDDING:
    case OP_POSITION:
    case OP_ATTENTION:
        sequence_bwd(kind, r);
        break;
    case OP_LINEAR:
        linear_bwd(r);
        break;
    case OP_CONV2D:
        conv_bwd(r);
        break;
    case OP_MAXPOOL:
    case OP_AVGPOOL:
        pool_bwd(r, kind == OP_MAXPOOL);
        break;
    case OP_BATCHNORM:
        bn_bwd(r);
        break;
    case OP_LAYERNORM:
        ln_bwd(r);
        break;
    case OP_SOFTMAX:
        softmax_bwd(r);
        break;
    case OP_CONCAT:
        concat_bwd(r);
        break;
    case OP_ACTIVATION:
        for (size_t i = 0; r->din[0] && i < n; i++)
            r->din[0][i] = r->dout[i] * act_deriv(r->a->act, r->in[0][i], r->a->slope);
        break;
    case OP_ADD:
        for (int k = 0; k < 2; k++)
            for (size_t i = 0; r->din[k] && i < n; i++)
                r->din[k][i] = r->dout[i] * act_deriv(r->a->act, r->in[0][i] + r->in[1][i],
                                                      r->a->slope);
        break;
    default:
        if (r->din[0])
            memcpy(r->din[0], r->dout, n * sizeof(double));
        break;
    }
}

double ref_loss(loss_kind kind, double smoothing, const kiln_shape *in, const double *x,
                const double *t, double *dinput)
{
    size_t n = shape_numel(in);
    double total = 0;
    if (kind != LOSS_CROSS_ENTROPY) {
        for (size_t i = 0; i < n; i++) {
            double v = x[i], term, grad;
            if (kind == LOSS_MSE) {
                term = (v - t[i]) * (v - t[i]);
                grad = 2 * (v - t[i]);
            } else {
                term = fmax(v, 0) - v * t[i] + log1p(exp(-fabs(v)));
                grad = 1 / (1 + exp(-v)) - t[i];
            }
            total += term;
            if (dinput)
                dinput[i] = grad / (double)n;
        }
        return total / (double)n;
    }
    size_t rows = in->d[0], c = in->d[1];
    for (size_t r = 0; r < rows; r++) {
        const double *xr = x + r * c;
        double m = -INFINITY, sum = 0, sum_x = 0;
        for (size_t j = 0; j < c; j++) {
            m = fmax(m, xr[j]);
            sum_x += xr[j];
        }
        for (size_t j = 0; j < c; j++)
            sum += exp(xr[j] - m);
        double lse = m + log(sum);
        size_t cls = (size_t)t[r];
        total += lse - (1 - smoothing) * xr[cls] - smoothing / (double)c * sum_x;
        for (size_t j = 0; dinput && j < c; j++) {
            double q = smoothing / (double)c + (j == cls ? 1 - smoothing : 0);
            dinput[r * c + j] = (exp(xr[j] - lse) - q) / (double)rows;
        }
    }
    return total / (double)rows;
}
