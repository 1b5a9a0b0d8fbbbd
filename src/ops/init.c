/* Parameter initialisation with PyTorch's formulas (torch.nn.init), from
 * the run's seeded generator:
 *   kaiming_normal   N(0, gain² / fan_in)        gain = sqrt(2 / (1 + a²))
 *   kaiming_uniform  U(±gain sqrt(3 / fan_in))   a = leaky slope, else 0
 *   xavier_normal    N(0, 2 / (fan_in + fan_out))
 *   xavier_uniform   U(±sqrt(6 / (fan_in + fan_out)))
 *   pytorch          U(±1/sqrt(fan_in)) for weight and bias, as nn.Linear and
 *                    nn.Conv2d initialise themselves
 *   normal           N(0, std²): nanoGPT's, and embeddings' default (0.02)
 * Other biases start at zero; batchnorm and layernorm at gamma 1, beta 0,
 * with running mean 0 and running variance 1. */
#include <math.h>
#include <stdlib.h>

#include "ops/ops.h"

/* One value of a weight of the given fans. */
static double weight_value(const op_init *c, double fan_in, double fan_out)
{
    double gain = sqrt(2.0 / (1.0 + c->slope * c->slope));
    switch (c->init) {
    case INIT_KAIMING_UNIFORM:
        return rng_uniform(c->rng, -1, 1) * gain * sqrt(3.0 / fan_in);
    case INIT_XAVIER_NORMAL:
        return rng_normal(c->rng) * sqrt(2.0 / (fan_in + fan_out));
    case INIT_XAVIER_UNIFORM:
        return rng_uniform(c->rng, -1, 1) * sqrt(6.0 / (fan_in + fan_out));
    case INIT_ZEROS:
        return 0;
    case INIT_PYTORCH:
        return rng_uniform(c->rng, -1, 1) / sqrt(fan_in);
    case INIT_KAIMING_NORMAL:
        return rng_normal(c->rng) * gain / sqrt(fan_in);
    case INIT_NORMAL:
        return rng_normal(c->rng) * c->std;
    default:
        return NAN; /* caught below: every initialiser must be named here */
    }
}

static kiln_status init_weight(const op_init *c)
{
    const kiln_shape *w = &c->shapes->param[0];
    size_t count = shape_numel(w), receptive = w->ndim == 4 ? w->d[2] * w->d[3] : 1;
    double fan_in = (double)(w->d[1] * receptive), fan_out = (double)(w->d[0] * receptive);
    float *v = malloc(count * sizeof *v);
    if (!v)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "initialisation: out of memory");
    for (size_t i = 0; i < count; i++) {
        double x = weight_value(c, fan_in, fan_out);
        if (isnan(x)) {
            free(v);
            return error_set(KILN_ERR_INVALID_ARGUMENT, "initialisation: init = %s has no "
                                                        "formula", init_name(c->init));
        }
        v[i] = (float)x;
    }
    kiln_status st = kiln_tensor_upload(c->param[0], v, count);
    free(v);
    return st;
}

/* Zero, or U(±1/sqrt(fan_in)) with init = pytorch. */
static kiln_status init_bias(const op_init *c)
{
    if (c->init != INIT_PYTORCH)
        return kiln_tensor_fill(c->param[1], 0.0f);
    const kiln_shape *w = &c->shapes->param[0];
    double fan_in = (double)(shape_numel(w) / w->d[0]);
    size_t n = c->param[1]->numel;
    float *v = malloc(n * sizeof *v);
    if (!v)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "initialisation: out of memory");
    for (size_t i = 0; i < n; i++)
        v[i] = (float)(rng_uniform(c->rng, -1, 1) / sqrt(fan_in));
    kiln_status st = kiln_tensor_upload(c->param[1], v, n);
    free(v);
    return st;
}

kiln_status op_init_weight_bias(const op_init *c)
{
    kiln_status st = c->param[0] ? init_weight(c) : KILN_OK; /* NULL: a tied weight */
    if (st == KILN_OK && c->param[1])
        st = init_bias(c);
    return st;
}

kiln_status op_init_affine(const op_init *c)
{
    kiln_status st = KILN_OK;
    if (c->buffer[0]) /* running mean 0, running variance 1 */
        st = kiln_tensor_fill(c->buffer[0], 0.0f);
    if (st == KILN_OK && c->buffer[1])
        st = kiln_tensor_fill(c->buffer[1], 1.0f);
    if (st == KILN_OK)
        st = kiln_tensor_fill(c->param[0], 1.0f);
    return st == KILN_OK && c->param[1] ? kiln_tensor_fill(c->param[1], 0.0f) : st;
}
