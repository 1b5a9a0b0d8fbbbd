/* Parameter initialisation with PyTorch's formulas (torch.nn.init), from
 * one seeded generator in layer order, so a seed fixes every value:
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

#include "compiler/pipeline.h"
#include "runtime/rng.h"

/* The slope of a leaky_relu that reads this node, else 0. */
static double leaky_slope(const kiln_model *m, size_t node)
{
    for (size_t j = node + 1; j < m->count; j++)
        if (m->nodes[j].inputs[0] == (int)node && m->nodes[j].attrs.act == KILN_ACT_LEAKY_RELU)
            return m->nodes[j].attrs.slope;
    return 0;
}

static kiln_status init_weight(const kiln_model *m, const pipe_step *s, kiln_rng *rng)
{
    const graph_node *n = &m->nodes[s->node];
    const kiln_shape *w = &s->shapes.param[0];
    size_t count = shape_numel(w), receptive = w->ndim == 4 ? w->d[2] * w->d[3] : 1;
    double fan_in = (double)(w->d[1] * receptive), fan_out = (double)(w->d[0] * receptive);
    double a = leaky_slope(m, s->node), gain = sqrt(2.0 / (1.0 + a * a));
    float *v = malloc(count * sizeof *v);
    if (!v)
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "initialisation: out of memory");
    for (size_t i = 0; i < count; i++) {
        double x;
        switch (n->init) {
        case INIT_KAIMING_UNIFORM:
            x = kiln_rng_uniform(rng, -1, 1) * gain * sqrt(3.0 / fan_in);
            break;
        case INIT_XAVIER_NORMAL:
            x = kiln_rng_normal(rng) * sqrt(2.0 / (fan_in + fan_out));
            break;
        case INIT_XAVIER_UNIFORM:
            x = kiln_rng_uniform(rng, -1, 1) * sqrt(6.0 / (fan_in + fan_out));
            break;
        case INIT_ZEROS:
            x = 0;
            break;
        case INIT_PYTORCH:
            x = kiln_rng_uniform(rng, -1, 1) / sqrt(fan_in);
            break;
        case INIT_NORMAL:
            x = kiln_rng_normal(rng) * n->std;
            break;
        default: /* kaiming_normal */
            x = kiln_rng_normal(rng) * gain / sqrt(fan_in);
            break;
        }
        v[i] = (float)x;
    }
    kiln_status st = kiln_tensor_upload(s->param[0], v, count);
    free(v);
    return st;
}

/* Zero, or U(±1/sqrt(fan_in)) with init = pytorch. */
static kiln_status init_bias(const kiln_model *m, const pipe_step *s, kiln_rng *rng)
{
    if (m->nodes[s->node].init != INIT_PYTORCH)
        return kiln_tensor_fill(s->param[1], 0.0f);
    const kiln_shape *w = &s->shapes.param[0];
    double fan_in = (double)(shape_numel(w) / w->d[0]);
    size_t n = s->param[1]->numel;
    float *v = malloc(n * sizeof *v);
    if (!v)
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "initialisation: out of memory");
    for (size_t i = 0; i < n; i++)
        v[i] = (float)(kiln_rng_uniform(rng, -1, 1) / sqrt(fan_in));
    kiln_status st = kiln_tensor_upload(s->param[1], v, n);
    free(v);
    return st;
}

/* gamma 1, beta 0 */
static kiln_status init_affine(pipe_step *s)
{
    kiln_status st = kiln_tensor_fill(s->param[0], 1.0f);
    return st == KILN_OK && s->param[1] ? kiln_tensor_fill(s->param[1], 0.0f) : st;
}

kiln_status pipeline_init_params(pipeline *p, uint64_t seed)
{
    pipeline_params_changed(p);
    kiln_rng rng;
    kiln_rng_seed(&rng, seed);
    kiln_status st = KILN_OK;
    for (size_t i = 0; i < p->count && st == KILN_OK; i++) {
        pipe_step *s = &p->steps[i];
        switch (s->op) {
        case OP_EMBEDDING:
        case OP_POSITION:
            st = init_weight(p->model, s, &rng);
            break;
        case OP_LINEAR:
        case OP_CONV2D:
            if (s->tied_to < 0) /* a tied weight is its owner's */
                st = init_weight(p->model, s, &rng);
            if (st == KILN_OK && s->param[1])
                st = init_bias(p->model, s, &rng);
            break;
        case OP_BATCHNORM:
            st = kiln_tensor_fill(s->buffer[0], 0.0f);
            if (st == KILN_OK)
                st = kiln_tensor_fill(s->buffer[1], 1.0f);
            if (st == KILN_OK)
                st = init_affine(s);
            break;
        case OP_LAYERNORM:
            st = init_affine(s);
            break;
        default:
            break;
        }
    }
    return st;
}
