/* Fusion decisions, from the op rows. In eval mode a batchnorm folds into
 * the weights of the op before it when that op's row says folds_batchnorm
 * and nothing else reads it. An activation moves into the epilogue of the
 * op before it when that op's row says fuses_act, the activation's row says
 * from_output (its derivative follows from its output: op_check_fusable)
 * and nothing else reads that op's output (the value before the activation
 * is then never needed). A trailing sigmoid stays a step of its own: it is
 * the prediction head that bce trains through (the loss reads the logits
 * before it). An add moves into the epilogue of the linear that computes
 * one of its inputs when that linear's row says fuses_residual, nothing
 * else reads it and no activation would rather fuse into the add (a
 * ResNet's add + ReLU stays one kernel): the linear then adds the other
 * input as it stores (a GPT's residual stream). And where a step keeps its
 * activation's derivative (keeps_act_grad) and its one reader's row says
 * grads_through_act, the reader's backward applies that activation's
 * gradient as it computes its input gradient (a GPT's GELU, in the
 * epilogue of the product after it). */
#include "compiler/pipeline.h"

int fuse_activation_into(const kiln_model *m, size_t node, const int *readers)
{
    const graph_node *n = &m->nodes[node];
    if (n->kind->op != OP_ACTIVATION || n->inputs[0] < 0)
        return 0;
    if (n->attrs.act == KILN_ACT_SIGMOID && node + 1 == m->count)
        return 0;
    const graph_node *before = &m->nodes[n->inputs[0]];
    if (readers[n->inputs[0]] != 1)
        return 0;
    if (op_check_fusable(before->kind->op, n->attrs.act) != KILN_OK) {
        error_clear();
        return 0;
    }
    return 1;
}

int fold_batchnorm_into(const kiln_model *m, size_t node, const int *readers)
{
    const graph_node *n = &m->nodes[node];
    if (n->kind->op != OP_BATCHNORM || n->inputs[0] < 0)
        return 0;
    const graph_node *before = &m->nodes[n->inputs[0]];
    return op_get(before->kind->op)->folds_batchnorm && readers[n->inputs[0]] == 1;
}

/* The shape of the value of node `node` (-1: the input) in p. */
static const kiln_shape *value_shape(const pipeline *p, int node)
{
    return node < 0 ? &p->input_shape : &p->steps[p->value_of[node]].shapes.out;
}

int fuse_residual_into(const pipeline *p, size_t node, const int *readers, int *from)
{
    const kiln_model *m = p->model;
    const graph_node *n = &m->nodes[node];
    if (n->kind->op != OP_ADD || n->attrs.act != KILN_ACT_NONE)
        return 0;
    for (size_t j = node + 1; j < m->count; j++)
        if (m->nodes[j].inputs[0] == (int)node && fuse_activation_into(m, j, readers))
            return 0;
    for (int k = 1; k >= 0; k--) {
        int l = n->inputs[k], r = n->inputs[1 - k];
        if (l < 0 || l == r || readers[l] != 1)
            continue;
        const pipe_step *s = &p->steps[p->value_of[l]];
        if (!op_get(s->op)->fuses_residual || s->attrs.act != KILN_ACT_NONE ||
            s->n_inputs != 1 || s->fused_node >= 0)
            continue;
        /* the other input is ready when the linear runs, and the add's shape;
         * not linear(x) + x, whose x would get two gradients of one step */
        if (r >= 0 && (p->value_of[r] >= p->value_of[l] || p->value_of[r] == s->inputs[0]))
            continue;
        if (!shape_eq(value_shape(p, r), &s->shapes.out))
            continue;
        *from = k;
        return 1;
    }
    return 0;
}

void fuse_act_grads(pipeline *p)
{
    for (size_t r = 0; r < p->count; r++) {
        const pipe_step *reader = &p->steps[r];
        int from = reader->inputs[0];
        if (from < 0 || !op_get(reader->op)->grads_through_act ||
            (reader->n_inputs > 1 && reader->inputs[1] == from))
            continue;
        pipe_step *s = &p->steps[from];
        kiln_act act = s->attrs.act;
        if (s->uses == 1 && op_get(s->op)->keeps_act_grad && act != KILN_ACT_NONE &&
            !act_get(act)->from_output)
            s->act_grad_by = (int)r;
    }
}
