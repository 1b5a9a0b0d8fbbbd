/* Model files and the C API: shapes and parameter counts, the two front
 * ends giving the same graph, and a table of malformed models that each
 * get the expected file:line message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "compiler/pipeline.h"

#ifndef KILN_SOURCE_DIR
#define KILN_SOURCE_DIR "."
#endif

START_TEST(robust_mlp_counts_like_pytorch)
{
    kiln_model *m;
    check_ok(kiln_model_load(KILN_SOURCE_DIR "/examples/robust_mlp.ini", &m));
    ck_assert_uint_eq(kiln_model_layer_count(m), 9);
    ck_assert_uint_eq(kiln_model_param_count(m), 5315);
    ck_assert_uint_eq(kiln_model_buffer_count(m), 258);
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    check_ok(kiln_model_summary(m, write_to_file, f));
    fclose(f);
    ck_assert_msg(strstr(text, "trainable parameters: 5,315"), "summary:\n%s", text);
    ck_assert_msg(strstr(text, "4,160"), "summary:\n%s", text);
    free(text);
    kiln_model_free(m);
}
END_TEST

static const char cnn_text[] = "[input]\nshape = 1x28x28\n"
                               "[conv2d]\nout = 8\nsize = 3\npad = 1\nname = c1\n"
                               "[relu]\n[maxpool]\nsize = 2\n"
                               "[conv2d]\nout = 8\nsize = 3\npad = 1\n"
                               "[add]\nfrom = 2, 3\n"
                               "[flatten]\n[linear]\nout = 10\n"
                               "[train]\nloss = cross_entropy\nlr = 0.01\n";

/* The same network through the C API. */
static kiln_model *cnn_from_api(void)
{
    kiln_model *m;
    check_ok(kiln_model_create(&m));
    check_ok(kiln_model_add(m, "input", (const char *[]){"shape", "1x28x28", NULL}));
    check_ok(kiln_model_add(m, "conv2d", (const char *[]){"out", "8", "size", "3", "pad", "1",
                                                          "name", "c1", NULL}));
    check_ok(kiln_model_add(m, "relu", NULL));
    check_ok(kiln_model_add(m, "maxpool", (const char *[]){"size", "2", NULL}));
    check_ok(kiln_model_add(m, "conv2d", (const char *[]){"out", "8", "size", "3", "pad", "1",
                                                          NULL}));
    check_ok(kiln_model_add(m, "add", (const char *[]){"from", "2, 3", NULL}));
    check_ok(kiln_model_add(m, "flatten", NULL));
    check_ok(kiln_model_add(m, "linear", (const char *[]){"out", "10", NULL}));
    check_ok(kiln_model_add(m, "train", (const char *[]){"loss", "cross_entropy", "lr", "0.01",
                                                         NULL}));
    return m;
}

START_TEST(file_and_api_build_the_same_graph)
{
    kiln_model *a, *b = cnn_from_api();
    check_ok(kiln_model_parse(cnn_text, "cnn.ini", &a));
    check_ok(graph_finish(b));
    ck_assert_uint_eq(a->count, b->count);
    ck_assert_msg(shape_eq(&a->input, &b->input), "input shapes differ");
    for (size_t i = 0; i < a->count; i++) {
        const graph_node *x = &a->nodes[i], *y = &b->nodes[i];
        ck_assert_ptr_eq(x->kind, y->kind);
        ck_assert_str_eq(x->name, y->name);
        ck_assert_int_eq(x->inputs[0], y->inputs[0]);
        ck_assert_int_eq(x->inputs[1], y->inputs[1]);
        ck_assert_msg(x->attrs.out == y->attrs.out && x->attrs.kernel == y->attrs.kernel &&
                          x->attrs.pad == y->attrs.pad && x->attrs.stride == y->attrs.stride &&
                          x->attrs.act == y->attrs.act && x->attrs.bias == y->attrs.bias &&
                          x->attrs.p == y->attrs.p && x->attrs.eps == y->attrs.eps,
                      "layer %zu: attributes differ", i);
        ck_assert_int_eq(x->attrs.init, y->attrs.init);
        ck_assert_msg(shape_eq(&x->out, &y->out), "layer %zu shapes differ", i);
    }
    ck_assert_str_eq(kiln_model_train_setting(a, "lr"), "0.01");
    ck_assert_str_eq(kiln_model_train_setting(b, "loss"), "cross_entropy");
    ck_assert_ptr_null(kiln_model_train_setting(a, "epochs"));
    /* conv 8x28x28 (80 params), pool 8x14x14, conv 8x14x14 (584), add, flatten 1568, linear */
    ck_assert_uint_eq(kiln_model_param_count(a), 80 + 584 + 1568 * 10 + 10);
    char shape[32];
    ck_assert_str_eq(shape_str(&a->nodes[5].out, shape, sizeof shape), "1568");
    ck_assert_int_eq(a->nodes[0].attrs.init, INIT_KAIMING_NORMAL);
    kiln_model_free(a);
    kiln_model_free(b);
}
END_TEST

/* Both front ends lower to the same steps and give the same bits. */
START_TEST(file_and_api_compile_to_identical_pipelines)
{
    kiln_model *a, *b = cnn_from_api();
    check_ok(kiln_model_parse(cnn_text, "cnn.ini", &a));
    check_ok(graph_finish(b));
    pipeline *pa, *pb;
    pipe_options o = {.fuse = 1, .plan = 1};
    check_ok(pipeline_create(test_ctx(), a, 3, o, 5, &pa));
    check_ok(pipeline_create(test_ctx(), b, 3, o, 5, &pb));
    ck_assert_uint_eq(pa->count, pb->count);
    ck_assert_uint_eq(pa->arena_bytes, pb->arena_bytes);
    size_t n = kiln_tensor_numel(pa->input);
    float *x = test_alloc(n * sizeof *x);
    rng_fill(test_rng(), x, n, -1, 1);
    check_ok(kiln_tensor_upload(pa->input, x, n));
    check_ok(kiln_tensor_upload(pb->input, x, n));
    for (size_t i = 0; i < pa->count; i++) {
        ck_assert_int_eq(pa->steps[i].op, pb->steps[i].op);
        ck_assert_int_eq(pa->steps[i].attrs.act, pb->steps[i].attrs.act);
        ck_assert_int_eq(pa->steps[i].inputs[0], pb->steps[i].inputs[0]);
    }
    for (int training = 1; training >= 0; training--) {
        check_ok(pipeline_forward(pa, training));
        check_ok(pipeline_forward(pb, training));
        size_t m = kiln_tensor_numel(pipeline_output(pa));
        float *ya = test_alloc(m * sizeof *ya), *yb = test_alloc(m * sizeof *yb);
        check_ok(kiln_tensor_download(pipeline_output(pa), ya, m));
        check_ok(kiln_tensor_download(pipeline_output(pb), yb, m));
        ck_assert_msg(memcmp(ya, yb, m * sizeof *ya) == 0, "outputs differ (training %d)",
                      training);
        free(ya);
        free(yb);
    }
    free(x);
    pipeline_free(pa);
    pipeline_free(pb);
    kiln_model_free(a);
    kiln_model_free(b);
}
END_TEST

START_TEST(default_init_follows_the_activation)
{
    kiln_model *m;
    check_ok(kiln_model_parse("[input]\nshape = 4\n[linear]\nout = 3\n[batchnorm]\n[tanh]\n"
                              "[linear]\nout = 2\n[relu]\n[linear]\nout = 1\ninit = zeros\n",
                              "init.ini", &m));
    ck_assert_int_eq(m->nodes[0].attrs.init, INIT_XAVIER_UNIFORM);
    ck_assert_int_eq(m->nodes[3].attrs.init, INIT_KAIMING_NORMAL);
    ck_assert_int_eq(m->nodes[5].attrs.init, INIT_ZEROS);
    kiln_model_free(m);
}
END_TEST

typedef struct {
    const char *text;
    const char *message; /* expected within the error */
} bad_model;

#define IN "[input]\nshape = 10\n"

static const bad_model bad_models[] = {
    {"", "bad.ini: the model has no [input] section"},
    {IN, "bad.ini: the model has no layers"},
    {IN "[linaer]\nout = 3\n", "bad.ini:3 [linaer]: unknown section; expected one of: input, "
                               "linear"},
    {IN "[linear]\nouts = 3\n", "bad.ini:4 [linear]: unknown key outs; [linear] takes: out bias"},
    {IN "[linear]\n", "bad.ini:3 [linear]: the key out is required"},
    {IN "[linear]\nout = three\n", "bad.ini:4 [linear]: out = three: expected a whole number"},
    {IN "[linear]\nout = 0\n", "bad.ini:4 [linear]: out = 0: expected a whole number from 1"},
    {IN "[linear]\nout = -5\n", "bad.ini:4 [linear]: out = -5"},
    {IN "[linear]\nout = 99999999999999999999999\n", "bad.ini:4 [linear]: out = 9999"},
    {IN "[linear]\nout = 3\nout = 4\n", "bad.ini:5 [linear]: key out is given twice"},
    {IN "[linear]\nout =\n", "bad.ini:4 [linear]: key out has no value"},
    {IN "[dropout]\np = 1\n", "bad.ini:4 [dropout]: p = 1: expected a probability"},
    {IN "[dropout]\np = -0.1\n", "bad.ini:4 [dropout]: p = -0.1"},
    {IN "[dropout]\np = nan\n", "bad.ini:4 [dropout]: p = nan"},
    {IN "[relu]\nfrom = nowhere\n", "bad.ini:4 [relu]: from = nowhere names no layer above"},
    {IN "[relu]\nfrom = later\n[relu]\nname = later\n",
     "bad.ini:4 [relu]: from = later names a layer that comes later (line 6)"},
    {IN "[relu]\nname = a\nfrom = a\n", "bad.ini:5 [relu]: from = a names no layer above"},
    {IN "[relu]\n[add]\nfrom = 0\n", "bad.ini:5 [add]: from = 0: expected 2 layer names"},
    {IN "[add]\n", "bad.ini:3 [add]: the key from is required"},
    {IN "[relu]\nname = x\n[relu]\nname = x\n", "bad.ini:6 [relu]: name = x is already taken"},
    {"[input]\nshape = 1x28x28\n[linear]\nout = 10\n",
     "bad.ini:3 [linear]: input is 1x28x28; add [flatten] before it"},
    {IN "[conv2d]\nout = 4\nsize = 3\n", "bad.ini:3 [conv2d]: input is 10; expected channels"},
    {"[input]\nshape = 1x5x5\n[conv2d]\nout = 4\nsize = 7\n",
     "bad.ini:3 [conv2d]: conv2d: a 7x7 kernel (dilation 1, padding 0) does not fit"},
    {"[input]\nshape = 3x8x8\n[relu]\nname = a\n[maxpool]\nsize = 2\n[add]\nfrom = a, 1\n",
     "bad.ini:7 [add]: add: inputs of shapes 1x3x8x8 and 1x3x4x4 differ"},
    {"[input]\nshape = 0\n", "bad.ini:2 [input]: shape = 0: expected a per-sample shape"},
    {"[input]\nshape = 1x2x3x4\n", "bad.ini:2 [input]: shape = 1x2x3x4"},
    {"[input]\nshape = 10x\n", "bad.ini:2 [input]: shape = 10x"},
    {"[relu]\n", "bad.ini:1 [relu]: the model needs an [input] section"},
    {IN "[input]\nshape = 3\n", "bad.ini:3 [input]: the model has an [input] already"},
    {"shape = 10\n", "bad.ini:1: a key outside any section"},
    {IN "this is not ini\n", "bad.ini:3: cannot read this line"},
    {IN "[linear\nout = 3\n", "bad.ini:3: cannot read this line"},
    {IN "[gelu]\napprox = fast\n", "bad.ini:4 [gelu]: approx = fast: expected none or tanh"},
    {IN "[linear]\nout = 3\nbias = maybe\n", "bad.ini:5 [linear]: bias = maybe: expected true"},
    {IN "[linear]\nout = 3\ninit = he\n", "bad.ini:5 [linear]: init = he: expected kaiming"},
    {IN "[linear]\nout = 1000000\n[linear]\nout = 1000000\n",
     "bad.ini:5 [linear]: the layer is too large"},
    {IN "[linear]\nout = 4\nactivation = gelu\n", "bad.ini:5 [linear]: unknown key activation"},
    {IN "[softmax]\ndim = 7\n", "bad.ini:4 [softmax]: dim = 7: expected a dimension"},
    {IN "[softmax]\ndim = 3\n", "bad.ini:3 [softmax]: softmax: dim 3 is outside the 2"},
    {IN "[train]\nlr = 1\n[train]\nlr = 2\n", "bad.ini:5 [train]: the model has a [train]"},
};

#define BAD_COUNT (int)(sizeof bad_models / sizeof bad_models[0])

START_TEST(malformed_models_name_file_line_and_key)
{
    const bad_model *b = &bad_models[_i];
    kiln_model *m = NULL;
    kiln_status st = kiln_model_parse(b->text, "bad.ini", &m);
    ck_assert_msg(st == KILN_ERR_MODEL, "case %d: status %s (%s) for:\n%s", _i,
                  kiln_status_str(st), kiln_last_error(), b->text);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(kiln_last_error(), b->message) != NULL,
                  "case %d: expected \"%s\" in \"%s\"", _i, b->message, kiln_last_error());
}
END_TEST

/* Lines too long, binary data: a clear message, never a crash. */
START_TEST(long_lines_and_binary_garbage)
{
    size_t n = 10u << 20;
    char *text = test_alloc(n + 64);
    strcpy(text, "[input]\nshape = ");
    size_t used = strlen(text);
    memset(text + used, '1', n);
    strcpy(text + used + n, "\n");
    kiln_model *m = NULL;
    ck_assert_int_eq(kiln_model_parse(text, "long.ini", &m), KILN_ERR_MODEL);
    ck_assert_msg(strstr(kiln_last_error(), "long.ini:2: the line is too long"), "%s",
                  kiln_last_error());
    free(text);

    char garbage[256];
    for (int i = 0; i < 256; i++)
        garbage[i] = (char)(i * 37 + 11);
    garbage[255] = '\0';
    kiln_status st = kiln_model_parse(garbage, "garbage.ini", &m);
    ck_assert_int_eq(st, KILN_ERR_MODEL);
    ck_assert_ptr_nonnull(strstr(kiln_last_error(), "garbage.ini"));

    ck_assert_int_eq(kiln_model_load("/nonexistent/model.ini", &m), KILN_ERR_IO);
    ck_assert_ptr_nonnull(strstr(kiln_last_error(), "/nonexistent/model.ini"));
}
END_TEST

START_TEST(api_errors_name_the_layer_index)
{
    kiln_model *m;
    check_ok(kiln_model_create(&m));
    check_ok(kiln_model_add(m, "input", (const char *[]){"shape", "8", NULL}));
    check_ok(kiln_model_add(m, "relu", NULL));
    ck_assert_int_eq(kiln_model_add(m, "linear", (const char *[]){"out", "x", NULL}),
                     KILN_ERR_MODEL);
    ck_assert_str_eq(kiln_last_error(), "layer 1 [linear]: out = x: expected a whole number "
                                        "from 1 to 1000000");
    ck_assert_uint_eq(kiln_model_layer_count(m), 1);
    kiln_model_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("model");
    tcase_add_test(tc, robust_mlp_counts_like_pytorch);
    tcase_add_test(tc, file_and_api_build_the_same_graph);
    tcase_add_test(tc, file_and_api_compile_to_identical_pipelines);
    tcase_add_test(tc, default_init_follows_the_activation);
    tcase_add_loop_test(tc, malformed_models_name_file_line_and_key, 0, BAD_COUNT);
    tcase_add_test(tc, long_lines_and_binary_garbage);
    tcase_add_test(tc, api_errors_name_the_layer_index);
    suite_add_tcase(s, tc);
    return test_run(s);
}
