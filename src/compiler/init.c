/* Parameter initialisation, from one seeded generator in layer order, so a
 * seed fixes every value. Each op's row names its initialiser (ops/init.c
 * holds PyTorch's formulas); what depends on the model is decided here:
 * kaiming's a is the slope of an activation that reads the layer and takes
 * one (leaky_relu), else 0. */
#include "compiler/pipeline.h"
#include "runtime/rng.h"

/* The slope of an activation with a slope key that reads this node, else 0. */
static double leaky_slope(const kiln_model *m, size_t node)
{
    for (size_t j = node + 1; j < m->count; j++)
        if (m->nodes[j].inputs[0] == (int)node && m->nodes[j].kind->op == OP_ACTIVATION &&
            act_takes_key(m->nodes[j].attrs.act, "slope"))
            return m->nodes[j].attrs.slope;
    return 0;
}

kiln_status pipeline_init_params(pipeline *p, uint64_t seed)
{
    pipeline_params_changed(p);
    kiln_rng rng;
    rng_seed(&rng, seed);
    kiln_status st = KILN_OK;
    for (size_t i = 0; i < p->count && st == KILN_OK; i++) {
        pipe_step *s = &p->steps[i];
        const op_desc *d = op_get(s->op);
        const graph_node *n = &p->model->nodes[s->node];
        if (!d->init) {
            if (s->shapes.n_params || s->shapes.n_buffers)
                st = error_set(KILN_ERR_UNSUPPORTED, "initialisation: %s has parameters but "
                                                     "its row names no initialiser", d->name);
            continue;
        }
        op_init c = {.init = n->attrs.init, .slope = leaky_slope(p->model, s->node),
                     .std = n->attrs.std, .rng = &rng, .shapes = &s->shapes};
        for (int k = 0; k < s->shapes.n_params; k++) /* a tied weight is its owner's */
            c.param[k] = k == 0 && s->tied_to >= 0 ? NULL : s->param[k];
        for (int k = 0; k < s->shapes.n_buffers; k++)
            c.buffer[k] = s->buffer[k];
        st = d->init(&c);
    }
    return st;
}
