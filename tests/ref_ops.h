/* Float64 host references of every operator, forward and backward, with
 * the semantics of PyTorch's documentation. Used only by the tests. */
#ifndef KILN_REF_OPS_H
#define KILN_REF_OPS_H

#include "ops/ops.h"

typedef struct {
    const op_attrs *a;
    int training;
    kiln_shape in_shape[OP_MAX_INPUTS], out_shape;
    const double *in[OP_MAX_INPUTS];
    double *out;
    const double *param[OP_MAX_PARAMS];
    double *buffer[OP_MAX_BUFFERS]; /* running stats: read, and updated in training */
    const double *dout;
    double *din[OP_MAX_INPUTS];     /* written when not NULL */
    double *dparam[OP_MAX_PARAMS];
} ref_op;

/* Dropout is not here: its mask comes from the device's generator. */
void ref_forward(op_kind kind, ref_op *r);
void ref_backward(op_kind kind, ref_op *r);

double ref_act(kiln_act act, double x, double slope);

/* Mean losses as op_loss computes them; dinput may be NULL. */
double ref_loss(loss_kind kind, double smoothing, const kiln_shape *in, const double *x,
                const double *t, double *dinput);

#endif
