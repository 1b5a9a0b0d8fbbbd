/* The ONNX model being built: protobuf-c messages of ONNX's schema in one
 * arena (every allocation is freed with the model), the graph's nodes and
 * initializers in order, then packed and written whole. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/export.h"

/* One allocation of the arena. */
typedef struct block {
    struct block *next;
    max_align_t data[];
} block;

struct export_model {
    kiln_net *net;
    kiln_status st;
    block *blocks;
    Onnx__NodeProto **nodes;
    size_t n_nodes, cap_nodes;
    Onnx__TensorProto **inits;
    size_t n_inits, cap_inits;
};

static kiln_status out_of_memory(export_model *x)
{
    if (x->st == KILN_OK)
        x->st = error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_net_export_onnx: out of host memory");
    return x->st;
}

/* Zeroed memory that lives as long as the model; NULL after a failure. */
static void *arena(export_model *x, size_t bytes)
{
    if (x->st != KILN_OK)
        return NULL;
    block *b = bytes <= SIZE_MAX - sizeof *b ? calloc(1, sizeof *b + bytes) : NULL;
    if (!b) {
        out_of_memory(x);
        return NULL;
    }
    b->next = x->blocks;
    x->blocks = b;
    return b->data;
}

kiln_status export_begin(kiln_net *net, export_model **out)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_net_export_onnx: out of host memory");
    (*out)->net = net;
    return KILN_OK;
}

void export_free(export_model *x)
{
    if (!x)
        return;
    for (block *b = x->blocks, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(x->nodes);
    free(x->inits);
    free(x);
}

kiln_status export_status(const export_model *x)
{
    return x->st;
}

const char *export_name(export_model *x, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? arena(x, (size_t)n + 1) : NULL;
    if (s) {
        va_start(ap, fmt);
        vsnprintf(s, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    return s;
}

/* Appends item to a growing list of pointers. */
static int append(export_model *x, void ***list, size_t *n, size_t *cap, void *item)
{
    if (!item || x->st != KILN_OK)
        return 0;
    if (*n == *cap) {
        size_t grown = *cap ? 2 * *cap : 64;
        void **l = realloc(*list, grown * sizeof *l);
        if (!l) {
            out_of_memory(x);
            return 0;
        }
        *list = l;
        *cap = grown;
    }
    (*list)[(*n)++] = item;
    return 1;
}

/* ---- nodes and attributes --------------------------------------------------- */

Onnx__NodeProto *export_node(export_model *x, const char *op, const char *out, int n_in, ...)
{
    Onnx__NodeProto *n = arena(x, sizeof *n);
    char **in = arena(x, (size_t)n_in * sizeof *in + 1), **outs = arena(x, sizeof *outs);
    if (!n || !in || !outs || !out)
        return NULL;
    onnx__node_proto__init(n);
    va_list ap;
    va_start(ap, n_in);
    for (int i = 0; i < n_in; i++) {
        const char *name = va_arg(ap, const char *);
        in[i] = (char *)(name ? name : "");
    }
    va_end(ap);
    outs[0] = (char *)out;
    n->op_type = (char *)op;
    n->name = (char *)out; /* value names are unique, so node names are */
    n->n_input = (size_t)n_in;
    n->input = in;
    n->n_output = 1;
    n->output = outs;
    if (!append(x, (void ***)&x->nodes, &x->n_nodes, &x->cap_nodes, n))
        return NULL;
    return n;
}

/* A new attribute of n, of a type. */
static Onnx__AttributeProto *add_attr(export_model *x, Onnx__NodeProto *n, const char *key,
                                      Onnx__AttributeProto__AttributeType type)
{
    if (!n)
        return NULL;
    Onnx__AttributeProto *a = arena(x, sizeof *a);
    Onnx__AttributeProto **list = arena(x, (n->n_attribute + 1) * sizeof *list);
    if (!a || !list)
        return NULL;
    onnx__attribute_proto__init(a);
    a->name = (char *)key;
    a->has_type = 1;
    a->type = type;
    if (n->n_attribute)
        memcpy(list, n->attribute, n->n_attribute * sizeof *list);
    list[n->n_attribute++] = a;
    n->attribute = list;
    return a;
}

void export_attr_int(export_model *x, Onnx__NodeProto *n, const char *key, int64_t v)
{
    Onnx__AttributeProto *a = add_attr(x, n, key, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    if (a) {
        a->has_i = 1;
        a->i = v;
    }
}

void export_attr_float(export_model *x, Onnx__NodeProto *n, const char *key, float v)
{
    Onnx__AttributeProto *a = add_attr(x, n, key, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    if (a) {
        a->has_f = 1;
        a->f = v;
    }
}

void export_attr_list(export_model *x, Onnx__NodeProto *n, const char *key, const int64_t *v,
                      int count)
{
    Onnx__AttributeProto *a = add_attr(x, n, key, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    int64_t *ints = a ? arena(x, (size_t)count * sizeof *ints) : NULL;
    if (!ints)
        return;
    memcpy(ints, v, (size_t)count * sizeof *ints);
    a->n_ints = (size_t)count;
    a->ints = ints;
}

void export_attr_ints(export_model *x, Onnx__NodeProto *n, const char *key, int64_t v,
                      int count)
{
    int64_t same[4] = {v, v, v, v};
    export_attr_list(x, n, key, same, count);
}

/* ---- initializers -------------------------------------------------------------- */

/* An initializer of shape dims and a data type of size bytes per value,
 * its values to fill in *data. */
static const char *add_tensor(export_model *x, const char *name, int32_t type, size_t size,
                              int ndim, const int64_t *dims, size_t count, void **data)
{
    Onnx__TensorProto *t = arena(x, sizeof *t);
    int64_t *d = arena(x, (size_t)ndim * sizeof *d + 1);
    *data = count <= SIZE_MAX / size ? arena(x, count * size) : NULL;
    if (!t || !d || !*data || !name)
        return NULL;
    onnx__tensor_proto__init(t);
    if (ndim)
        memcpy(d, dims, (size_t)ndim * sizeof *d);
    t->name = (char *)name;
    t->n_dims = (size_t)ndim;
    t->dims = d;
    t->has_data_type = 1;
    t->data_type = type;
    t->has_raw_data = 1; /* little-endian values, as the hosts kiln runs on hold them */
    t->raw_data.len = count * size;
    t->raw_data.data = *data;
    return append(x, (void ***)&x->inits, &x->n_inits, &x->cap_inits, t) ? name : NULL;
}

const char *export_constant(export_model *x, const char *name, const float *v, size_t count,
                            int ndim, const int64_t *dims)
{
    void *data;
    name = add_tensor(x, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, sizeof *v, ndim, dims,
                      count, &data);
    if (name)
        memcpy(data, v, count * sizeof *v);
    return name;
}

const char *export_scalar(export_model *x, const char *name, float v)
{
    return export_constant(x, name, &v, 1, 0, NULL);
}

const char *export_ints(export_model *x, const char *name, const int64_t *v, size_t count)
{
    void *data;
    int64_t dims[1] = {(int64_t)count};
    name = add_tensor(x, name, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, sizeof *v, 1, dims, count,
                      &data);
    if (name)
        memcpy(data, v, count * sizeof *v);
    return name;
}

static const checkpoint_entry *find_entry(const kiln_net *net, const char *name)
{
    for (size_t i = 0; i < net->n_entries; i++)
        if (!net->entries[i].is_int64 && strcmp(net->entries[i].name, name) == 0)
            return &net->entries[i];
    return NULL;
}

/* The initializer of that name already written, or NULL. */
static const char *written(const export_model *x, const char *name)
{
    for (size_t i = 0; i < x->n_inits; i++)
        if (strcmp(x->inits[i]->name, name) == 0)
            return x->inits[i]->name;
    return NULL;
}

/* The state_dict tensor n.what as an initializer; NULL when absent (then
 * a failure of the model with required). A weight tied to another layer's
 * (tie =) is written once, under the name it is first read by. */
static const char *state_tensor(export_model *x, const graph_node *n, const char *what,
                                int required)
{
    const char *name = export_name(x, "%s.%s", n->name, what);
    const checkpoint_entry *e = name ? find_entry(x->net, name) : NULL;
    if (!e) {
        if (name && required)
            x->st = error_set(KILN_ERR_MODEL, "kiln_net_export_onnx: the network has no "
                                              "tensor %s", name);
        return NULL;
    }
    const char *twin = e->tied ? written(x, x->net->entries[e->tied - 1].name) : NULL;
    if (twin || (twin = written(x, name)))
        return twin;
    int64_t dims[KILN_MAX_DIMS];
    for (int i = 0; i < e->shape.ndim; i++)
        dims[i] = (int64_t)e->shape.d[i];
    void *data;
    size_t count = shape_numel(&e->shape);
    name = add_tensor(x, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, sizeof(float),
                      e->shape.ndim, dims, count, &data);
    kiln_status st = name ? kiln_tensor_download(e->tensor, data, count) : x->st;
    if (st != KILN_OK) {
        x->st = x->st == KILN_OK ? st : x->st;
        return NULL;
    }
    return name;
}

const char *export_weight(export_model *x, const graph_node *n, const char *what)
{
    return state_tensor(x, n, what, 1);
}

const char *export_optional(export_model *x, const graph_node *n, const char *what)
{
    return state_tensor(x, n, what, 0);
}

/* ---- the model and its file ------------------------------------------------------ */

/* A float tensor's type with a symbolic batch dimension, then shape. */
static Onnx__ValueInfoProto *value_info(export_model *x, const char *name,
                                        const kiln_shape *shape)
{
    Onnx__ValueInfoProto *v = arena(x, sizeof *v);
    Onnx__TypeProto *type = arena(x, sizeof *type);
    Onnx__TypeProto__Tensor *tensor = arena(x, sizeof *tensor);
    Onnx__TensorShapeProto *sp = arena(x, sizeof *sp);
    int ndim = shape->ndim + 1;
    Onnx__TensorShapeProto__Dimension *d = arena(x, (size_t)ndim * sizeof *d);
    Onnx__TensorShapeProto__Dimension **dims = arena(x, (size_t)ndim * sizeof *dims);
    if (!v || !type || !tensor || !sp || !d || !dims)
        return NULL;
    for (int i = 0; i < ndim; i++) {
        onnx__tensor_shape_proto__dimension__init(&d[i]);
        if (i == 0) {
            d[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d[i].dim_param = "batch";
        } else {
            d[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d[i].dim_value = (int64_t)shape->d[i - 1];
        }
        dims[i] = &d[i];
    }
    onnx__tensor_shape_proto__init(sp);
    sp->n_dim = (size_t)ndim;
    sp->dim = dims;
    onnx__type_proto__tensor__init(tensor);
    tensor->has_elem_type = 1;
    tensor->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tensor->shape = sp;
    onnx__type_proto__init(type);
    type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    type->tensor_type = tensor;
    onnx__value_info_proto__init(v);
    v->name = (char *)name;
    v->type = type;
    return v;
}

/* protobuf's own limit on one message: an ONNX file without external data. */
#define PROTOBUF_MAX_BYTES ((size_t)INT32_MAX)

kiln_status export_write(export_model *x, const char *path, const char *graph_name,
                         const kiln_shape *in, const kiln_shape *out)
{
    Onnx__ValueInfoProto *input = value_info(x, "input", in), *output = value_info(x, "output",
                                                                                   out);
    Onnx__OperatorSetIdProto opset, *opsets[1] = {&opset};
    Onnx__GraphProto graph;
    Onnx__ModelProto model;
    if (x->st != KILN_OK)
        return x->st;
    onnx__operator_set_id_proto__init(&opset);
    opset.domain = "";
    opset.has_version = 1;
    opset.version = EXPORT_OPSET;
    onnx__graph_proto__init(&graph);
    graph.name = (char *)graph_name;
    graph.n_node = x->n_nodes;
    graph.node = x->nodes;
    graph.n_initializer = x->n_inits;
    graph.initializer = x->inits;
    graph.n_input = graph.n_output = 1;
    graph.input = &input;
    graph.output = &output;
    onnx__model_proto__init(&model);
    model.has_ir_version = 1;
    model.ir_version = EXPORT_IR_VERSION;
    model.n_opset_import = 1;
    model.opset_import = opsets;
    model.producer_name = "kiln";
    model.producer_version = KILN_VERSION;
    model.graph = &graph;
    size_t n = onnx__model_proto__get_packed_size(&model);
    if (n > PROTOBUF_MAX_BYTES)
        return error_set(KILN_ERR_TOO_LARGE, "kiln_net_export_onnx: the model takes %zu bytes; "
                                             "an ONNX file without external data holds at "
                                             "most 2 GiB", n);
    uint8_t *bytes = malloc(n ? n : 1);
    if (!bytes)
        return out_of_memory(x);
    onnx__model_proto__pack(&model, bytes);
    kiln_status st = write_bytes_output(path, bytes, n);
    free(bytes);
    return st;
}
