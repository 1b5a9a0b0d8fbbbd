/* Fusion decisions. In eval mode a batchnorm folds into the weights of the
 * linear or conv2d before it when nothing else reads that layer.
 * An activation moves into the epilogue of the linear,
 * conv2d, batchnorm or add (a residual sum) before it when nothing else reads that layer's output (the value
 * before the activation is then never needed) and its derivative follows
 * from its output (op_check_fusable). A trailing sigmoid stays a step of
 * its own: it is the prediction head that bce trains through (the loss
 * reads the logits before it). */
#include "compiler/pipeline.h"

int fuse_activation_into(const kiln_model *m, size_t node, const int *readers)
{
    const graph_node *n = &m->nodes[node];
    if (n->kind->op != OP_ACTIVATION || n->inputs[0] < 0)
        return 0;
    if (n->attrs.act == KILN_ACT_SIGMOID && node + 1 == m->count)
        return 0;
    const graph_node *before = &m->nodes[n->inputs[0]];
    if (before->kind->op != OP_LINEAR && before->kind->op != OP_CONV2D &&
        before->kind->op != OP_BATCHNORM && before->kind->op != OP_ADD)
        return 0;
    if (readers[n->inputs[0]] != 1)
        return 0;
    if (op_check_fusable(before->kind->name, n->attrs.act) != KILN_OK) {
        kiln_error_clear();
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
    return (before->kind->op == OP_LINEAR || before->kind->op == OP_CONV2D) &&
           readers[n->inputs[0]] == 1;
}
