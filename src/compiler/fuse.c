/* Fusion decisions, from the op rows. In eval mode a batchnorm folds into
 * the weights of the op before it when that op's row says folds_batchnorm
 * and nothing else reads it. An activation moves into the epilogue of the
 * op before it when that op's row says fuses_act, the activation's row says
 * from_output (its derivative follows from its output: op_check_fusable)
 * and nothing else reads that op's output (the value before the activation
 * is then never needed). A trailing sigmoid stays a step of its own: it is
 * the prediction head that bce trains through (the loss reads the logits
 * before it). */
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
