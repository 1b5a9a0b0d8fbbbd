/* ONNX export (kiln_net_export_onnx): a network's eval-mode graph with its
 * weights as an ONNX model of opset 17, the input normalization first and
 * the prediction head last, so that it takes raw inputs and gives what
 * `kiln predict` gives.
 *
 * The file is protobuf, written by protobuf-c from ONNX's own schema
 * (onnx.proto beside this header, compiled by protoc-c at build time).
 * builder.c holds the model being built (value names, nodes, attributes,
 * initializers, in one arena); forms.c is the table of ONNX forms, one
 * function per operator kind; onnx.c walks the graph and writes the file.
 *
 * src/export/ may call net/ and everything below it. */
#ifndef KILN_EXPORT_H
#define KILN_EXPORT_H

#include "net/net.h"
#include "export/onnx.pb-c.h"

#define EXPORT_OPSET 17
#define EXPORT_IR_VERSION 8 /* ONNX 1.12's, the first with opset 17 */

/* The model being built. Its calls keep the first failure (out of
 * memory, a device read) and do nothing after one: a form calls them in
 * a row and returns export_status at its end. */
typedef struct export_model export_model;

kiln_status export_begin(kiln_net *net, export_model **out);
void export_free(export_model *x);
kiln_status export_status(const export_model *x);

/* A string that lives as long as the model; NULL after a failure. */
const char *export_name(export_model *x, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Appends the node op(inputs...) -> out, named after out, and returns it
 * for attributes (NULL after a failure). The n_in inputs are value names;
 * a NULL input is an optional one left out (""). */
Onnx__NodeProto *export_node(export_model *x, const char *op, const char *out, int n_in, ...);

void export_attr_int(export_model *x, Onnx__NodeProto *n, const char *key, int64_t v);
void export_attr_float(export_model *x, Onnx__NodeProto *n, const char *key, float v);
void export_attr_list(export_model *x, Onnx__NodeProto *n, const char *key, const int64_t *v,
                      int count);
/* The same value count times (at most 4): both spatial dimensions, or
 * the four pads. */
void export_attr_ints(export_model *x, Onnx__NodeProto *n, const char *key, int64_t v,
                      int count);

/* The state_dict tensor "<layer>.<what>" (kiln_net_get's names) as an
 * initializer of that name and shape; a missing one fails the model.
 * export_optional: NULL when the network has no such tensor (a layer
 * without bias). */
const char *export_weight(export_model *x, const graph_node *n, const char *what);
const char *export_optional(export_model *x, const graph_node *n, const char *what);

/* A float32 initializer: count values of shape dims (ndim 0: a scalar). */
const char *export_constant(export_model *x, const char *name, const float *v, size_t count,
                            int ndim, const int64_t *dims);
const char *export_scalar(export_model *x, const char *name, float v);
/* A 1-d int64 initializer (shapes, Slice's starts and ends). */
const char *export_ints(export_model *x, const char *name, const int64_t *v, size_t count);

/* The whole model: the graph input "input" and output "output" of
 * per-sample shapes in and out behind a symbolic batch dimension, the
 * nodes and initializers added so far. Writes it to path atomically (a
 * temporary file beside it, fsync'd and renamed): never half a file. */
kiln_status export_write(export_model *x, const char *path, const char *graph_name,
                         const kiln_shape *in, const kiln_shape *out);

/* ---- forms (forms.c) ------------------------------------------------------ */

/* One layer to write: the model, the layer, its inputs' value names and
 * per-sample shapes, and the value name its output gets. */
typedef struct {
    const kiln_model *m;
    size_t index;
    const graph_node *node;
    const char *in[OP_MAX_INPUTS];
    kiln_shape in_shape[OP_MAX_INPUTS];
    const char *out;
} export_layer;

/* Writes a layer's ONNX nodes and sets *value to the name that holds its
 * output: l->out, or an input's name for a layer that vanishes in eval
 * mode (dropout). A layer whose settings have no ONNX form is refused with
 * KILN_ERR_UNSUPPORTED, naming it. */
typedef kiln_status (*export_form)(export_model *x, const export_layer *l, const char **value);

/* The ONNX form of an operator; NULL when it has none. */
export_form export_form_of(op_kind op);

/* Refuses layer l: "model.ini:12 [layernorm] (name): <why>; it has no
 * ONNX form". */
kiln_status export_refuse(const export_layer *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif /* KILN_EXPORT_H */
