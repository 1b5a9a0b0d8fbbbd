/* ONNX export (kiln_net_export_onnx): the files read back with protobuf-c
 * through ONNX's schema: opset, input and output, standard operators only,
 * a graph whose every input is defined before it is read, the weights and
 * normalization as kiln_net_get gives them, the heads, and what is
 * refused. ONNX Runtime's numbers are checked by python/tests/test_onnx.py. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "export/export.h"

/* Every operator kind, with residuals and concatenations; the test below
 * checks that it holds each kind, so a new operator needs a layer here. */
static const char every_op[] =
    "[input]\nshape = 2x6x5\n"
    "[conv2d]\nout = 3\nsize = 3\npad = 1\n"
    "[batchnorm]\n"
    "[leaky_relu]\nslope = 0.2\nname = a\n"
    "[conv2d]\nout = 3\nsize = 3\npad = 2\ndilation = 2\n"
    "[add]\nfrom = a, 3\n"
    "[concat]\nfrom = 4, input\n"
    "[maxpool]\nsize = 2\nstride = 2\npad = 1\n"
    "[avgpool]\nsize = 3\nstride = 1\npad = 1\n"
    "[layernorm]\ndims = 3\n"
    "[gelu]\n"
    "[flatten]\n"
    "[linear]\nout = 9\n"
    "[batchnorm]\n"
    "[tanh]\n"
    "[dropout]\np = 0.3\n"
    "[gelu]\napprox = tanh\n"
    "[sigmoid]\n"
    "[linear]\nout = 4\nbias = false\n"
    "[relu]\n"
    "[softmax]\n"
    "[train]\nloss = mse\n";

/* The sequence operators: token and position embeddings, a transformer
 * block, a plain attention on its own projection, a head tied to the
 * token embedding. */
static const char every_sequence_op[] =
    "[input]\ntokens = 11\nblock = 6\n"
    "[embedding]\nout = 8\nname = wte\n"
    "[position]\npositions = 9\n"
    "[dropout]\np = 0.1\n"
    "[transformer_block]\ncount = 1\nheads = 2\nbias = false\ndropout = 0.1\n"
    "[layernorm]\n"
    "[linear]\nout = 24\n"
    "[attention]\nheads = 4\n"
    "[linear]\nout = 11\nbias = false\ntie = wte\n";

static const char *const standard_ops[] = {
    "Gemm", "MatMul", "Conv", "MaxPool", "AveragePool", "BatchNormalization",
    "LayerNormalization", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Erf", "Softmax", "Add",
    "Concat", "Flatten", "Sub", "Div", "Mul", "Identity", "Transpose", "Reshape", "Slice",
    "Cast", "Gather", NULL};

static kiln_net *net_of(const char *text, kiln_model **m)
{
    kiln_net *net;
    check_ok(kiln_model_parse(text, "export.ini", m));
    check_ok(kiln_net_create(test_ctx(), *m, 3, &net));
    return net;
}

static const char *path_in_tmp(const char *name)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", test_tmpdir(), name);
    return path;
}

/* The file unpacked; free with onnx__model_proto__free_unpacked. */
static Onnx__ModelProto *read_model(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s was not written", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *bytes = test_alloc((size_t)n + 1);
    ck_assert(fread(bytes, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    Onnx__ModelProto *model = onnx__model_proto__unpack(NULL, (size_t)n, bytes);
    free(bytes);
    ck_assert_msg(model != NULL, "%s is not an ONNX ModelProto", path);
    return model;
}

static const Onnx__TensorProto *initializer(const Onnx__GraphProto *g, const char *name)
{
    for (size_t i = 0; i < g->n_initializer; i++)
        if (strcmp(g->initializer[i]->name, name) == 0)
            return g->initializer[i];
    return NULL;
}

/* Whether name is the input, an initializer or the output of a node
 * before node `before`. */
static int defined(const Onnx__GraphProto *g, const char *name, size_t before)
{
    if (strcmp(name, "input") == 0 || !*name || initializer(g, name))
        return 1;
    for (size_t i = 0; i < before; i++)
        if (strcmp(g->node[i]->output[0], name) == 0)
            return 1;
    return 0;
}

/* Standard operators only, each value defined once and before it is read,
 * and "output" made by the last node. */
static void check_graph(const Onnx__ModelProto *model)
{
    ck_assert_int_eq(model->ir_version, EXPORT_IR_VERSION);
    ck_assert_uint_eq(model->n_opset_import, 1);
    ck_assert_str_eq(model->opset_import[0]->domain, "");
    ck_assert_int_eq(model->opset_import[0]->version, 17);
    const Onnx__GraphProto *g = model->graph;
    ck_assert_uint_ge(g->n_node, 1);
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *n = g->node[i];
        int standard = 0;
        for (const char *const *op = standard_ops; *op; op++)
            standard |= strcmp(n->op_type, *op) == 0;
        ck_assert_msg(standard, "node %zu is %s", i, n->op_type);
        ck_assert_msg(!n->domain || !*n->domain, "node %zu: domain %s", i, n->domain);
        ck_assert_uint_eq(n->n_output, 1);
        ck_assert_msg(!defined(g, n->output[0], i), "node %zu (%s) writes %s, which is "
                      "already defined", i, n->op_type, n->output[0]);
        for (size_t k = 0; k < n->n_input; k++)
            ck_assert_msg(defined(g, n->input[k], i), "node %zu (%s) reads %s before it is "
                          "defined", i, n->op_type, n->input[k]);
    }
    ck_assert_str_eq(g->node[g->n_node - 1]->output[0], "output");
}

static const char *last_op(const Onnx__ModelProto *model)
{
    return model->graph->node[model->graph->n_node - 1]->op_type;
}

/* Dimensions of the graph's input or output: "batch", then the sizes. */
static void check_dims(const Onnx__ValueInfoProto *v, const char *name, int ndim,
                       const int64_t *dims)
{
    ck_assert_str_eq(v->name, name);
    const Onnx__TensorShapeProto *s = v->type->tensor_type->shape;
    ck_assert_int_eq(v->type->tensor_type->elem_type, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
    ck_assert_uint_eq(s->n_dim, (size_t)ndim + 1);
    ck_assert_int_eq(s->dim[0]->value_case,
                     ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM);
    ck_assert_str_eq(s->dim[0]->dim_param, "batch");
    for (int i = 0; i < ndim; i++)
        ck_assert_int_eq(s->dim[i + 1]->dim_value, dims[i]);
}

/* Every state_dict tensor is an initializer of its name, shape and values
 * (a tied weight once, under its twin's name if that came first). */
static void check_weights(kiln_net *net, const Onnx__GraphProto *g)
{
    for (size_t i = 0; i < kiln_net_param_count(net); i++) {
        kiln_param_info p;
        check_ok(kiln_net_param_info(net, i, &p));
        if (p.is_int64)
            continue;
        const Onnx__TensorProto *t = initializer(g, p.name);
        int tied = net->entries[i].tied;
        if (!t && tied)
            t = initializer(g, net->entries[tied - 1].name);
        ck_assert_msg(t != NULL, "no initializer %s", p.name);
        ck_assert_uint_eq(t->n_dims, (size_t)p.ndim);
        for (int d = 0; d < p.ndim; d++)
            ck_assert_int_eq(t->dims[d], (int64_t)p.shape[d]);
        float *want = test_alloc(p.numel * sizeof *want);
        check_ok(kiln_net_get(net, p.name, want, p.numel));
        ck_assert_uint_eq(t->raw_data.len, p.numel * sizeof *want);
        ck_assert_msg(memcmp(t->raw_data.data, want, t->raw_data.len) == 0, "%s differs",
                      p.name);
        free(want);
    }
}

/* The two models hold every operator kind between them. */
START_TEST(the_models_hold_every_operator)
{
    int seen[OP_COUNT] = {0};
    const char *texts[] = {every_op, every_sequence_op};
    for (int k = 0; k < 2; k++) {
        kiln_model *m;
        check_ok(kiln_model_parse(texts[k], "export.ini", &m));
        for (size_t i = 0; i < m->count; i++)
            seen[m->nodes[i].kind->op] = 1;
        kiln_model_free(m);
    }
    for (int op = 0; op < OP_COUNT; op++)
        ck_assert_msg(seen[op], "no test model has a %s layer", op_get((op_kind)op)->name);
}
END_TEST

START_TEST(every_operator_exports_as_standard_onnx)
{
    kiln_model *m;
    kiln_net *net = net_of(every_op, &m);
    float mean[2] = {0.5f, -2}, std[2] = {3, 0.25f};
    check_ok(kiln_net_set_normalization(net, mean, std, 2));
    check_ok(kiln_net_set_training(net, 1)); /* the export is of eval mode all the same */
    const char *path = path_in_tmp("every.onnx");
    check_ok(kiln_net_export_onnx(net, path));
    Onnx__ModelProto *model = read_model(path);
    check_graph(model);
    const Onnx__GraphProto *g = model->graph;
    ck_assert_str_eq(g->name, "export");
    check_dims(g->input[0], "input", 3, (const int64_t[]){2, 6, 5});
    check_dims(g->output[0], "output", 1, (const int64_t[]){4});
    check_weights(net, g);
    ck_assert_str_eq(g->node[0]->op_type, "Sub");
    ck_assert_str_eq(g->node[1]->op_type, "Div");
    const Onnx__TensorProto *t = initializer(g, "input/std");
    ck_assert(t && t->n_dims == 3 && t->dims[0] == 2 && t->dims[1] == 1 && t->dims[2] == 1);
    ck_assert(memcmp(t->raw_data.data, std, sizeof std) == 0);
    for (size_t i = 0; i < g->n_node; i++)
        ck_assert_str_ne(g->node[i]->op_type, "Dropout");
    ck_assert_str_eq(last_op(model), "Softmax"); /* the model's own, no second one */
    ck_assert_str_eq(g->node[g->n_node - 2]->op_type, "Relu");
    onnx__model_proto__free_unpacked(model, NULL);
    kiln_net_free(net);
    kiln_model_free(m);
}
END_TEST

/* Tokens in, through Cast and Gather; positions sliced to the block; the
 * tied head's weight written once; a Softmax per token after the logits. */
START_TEST(sequence_operators_export_as_standard_onnx)
{
    kiln_model *m;
    kiln_net *net = net_of(every_sequence_op, &m);
    const char *path = path_in_tmp("sequence.onnx");
    check_ok(kiln_net_export_onnx(net, path));
    Onnx__ModelProto *model = read_model(path);
    check_graph(model);
    const Onnx__GraphProto *g = model->graph;
    check_dims(g->input[0], "input", 1, (const int64_t[]){6});
    check_dims(g->output[0], "output", 2, (const int64_t[]){6, 11});
    check_weights(net, g);
    ck_assert_ptr_null(initializer(g, "lm_head.weight"));
    ck_assert_str_eq(g->node[0]->op_type, "Cast");
    ck_assert_str_eq(last_op(model), "Softmax");
    int slices = 0, softmaxes = 0;
    for (size_t i = 0; i < g->n_node; i++) {
        slices += strcmp(g->node[i]->op_type, "Slice") == 0;
        softmaxes += strcmp(g->node[i]->op_type, "Softmax") == 0;
    }
    ck_assert_int_eq(slices, 1 + 3 * 2); /* the position table; q, k, v of two attentions */
    ck_assert_int_eq(softmaxes, 3);
    const Onnx__TensorProto *mask = initializer(g, "17/causal_mask");
    ck_assert_msg(mask && mask->n_dims == 2 && mask->dims[0] == 6, "no 6x6 mask");
    const float *v = (const float *)mask->raw_data.data;
    ck_assert(v[0] == 0 && isinf(v[1]) && v[1] < 0 && v[6 + 1] == 0 && v[35] == 0);
    onnx__model_proto__free_unpacked(model, NULL);
    kiln_net_free(net);
    kiln_model_free(m);
}
END_TEST

/* What comes last: a Softmax after a cross_entropy classifier's logits (as
 * kiln predict shows them), nothing after mse's values or a sigmoid head,
 * an Identity after a trailing dropout; layers named like tensors keep
 * the graph's names apart. */
START_TEST(heads_and_names)
{
    static const struct {
        const char *text, *last;
    } cases[] = {
        {"[input]\nshape = 3\n[linear]\nout = 4\n", "Softmax"},
        {"[input]\nshape = 3\n[linear]\nout = 4\n[train]\nloss = mse\n", "Gemm"},
        {"[input]\nshape = 3\n[linear]\nout = 1\n[sigmoid]\n[train]\nloss = bce\n",
         "Sigmoid"},
        {"[input]\nshape = 3\n[linear]\nout = 2\n[dropout]\n[train]\nloss = mse\n", "Identity"},
        {"[input]\nshape = 3\n[linear]\nout = 3\nname = fc\n[relu]\nname = output\n"
         "[linear]\nout = 3\nname = fc.weight\nfrom = fc\n[tanh]\n"
         "[add]\nfrom = output, 3\n[train]\nloss = mse\n", "Add"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        kiln_model *m;
        kiln_net *net = net_of(cases[c].text, &m);
        const char *path = path_in_tmp("head.onnx");
        check_ok(kiln_net_export_onnx(net, path));
        Onnx__ModelProto *model = read_model(path);
        check_graph(model);
        check_weights(net, model->graph);
        ck_assert_msg(strcmp(last_op(model), cases[c].last) == 0, "case %zu ends in %s", c,
                      last_op(model));
        ck_assert_uint_eq(model->graph->n_input, 1); /* no normalization: input as it is */
        ck_assert_str_eq(model->graph->node[0]->input[0], "input");
        onnx__model_proto__free_unpacked(model, NULL);
        kiln_net_free(net);
        kiln_model_free(m);
    }
}
END_TEST

/* No file with a name that begins with prefix in the test directory. */
static int files_starting(const char *prefix)
{
    DIR *d = opendir(test_tmpdir());
    int count = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        count += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    if (d)
        closedir(d);
    return count;
}

/* A layer with no ONNX form is refused by name, and an unwritable path
 * named; the file that was there stays as it was, and no temporary file
 * is left. */
START_TEST(refusals_leave_nothing_behind)
{
    const char *path = path_in_tmp("kept.onnx");
    FILE *f = fopen(path, "w");
    ck_assert(f && fputs("before", f) >= 0 && fclose(f) == 0);
    kiln_model *m;
    /* layernorm over more dimensions than a sample has reaches across the
     * batch, which a model with a symbolic batch cannot express */
    kiln_net *net = net_of("[input]\nshape = 4\n[relu]\n[layernorm]\ndims = 2\nname = ln\n"
                           "[linear]\nout = 2\n", &m);
    ck_assert_int_eq(kiln_net_export_onnx(net, path), KILN_ERR_UNSUPPORTED);
    const char *e = kiln_last_error();
    ck_assert_msg(strstr(e, "export.ini:4 [layernorm] (ln)") && strstr(e, "no ONNX form"),
                  "%s", e);
    char text[16] = {0};
    f = fopen(path, "r");
    ck_assert(f && fread(text, 1, sizeof text - 1, f) == 6 && fclose(f) == 0);
    ck_assert_str_eq(text, "before");
    ck_assert_int_eq(files_starting("kept.onnx.tmp"), 0);
    kiln_net_free(net);
    kiln_model_free(m);

    net = net_of("[input]\nshape = 3\n[linear]\nout = 2\n", &m);
    char bad[4200];
    snprintf(bad, sizeof bad, "%s/m.onnx", path); /* a directory that is a file */
    ck_assert_int_eq(kiln_net_export_onnx(net, bad), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), bad) && strstr(kiln_last_error(), "cannot write"),
                  "%s", kiln_last_error());
    ck_assert_int_eq(kiln_net_export_onnx(net, NULL), KILN_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kiln_net_export_onnx(net, ""), KILN_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kiln_net_export_onnx(NULL, path), KILN_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(files_starting("kept.onnx.tmp"), 0);
    kiln_net_free(net);
    kiln_model_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("export");
    TCase *tc = tcase_create("export");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, the_models_hold_every_operator);
    tcase_add_test(tc, every_operator_exports_as_standard_onnx);
    tcase_add_test(tc, sequence_operators_export_as_standard_onnx);
    tcase_add_test(tc, heads_and_names);
    tcase_add_test(tc, refusals_leave_nothing_behind);
    suite_add_tcase(s, tc);
    return test_run(s);
}
