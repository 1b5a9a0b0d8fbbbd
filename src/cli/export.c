/* kiln export MODEL.ini CHECKPOINT -o FILE.onnx: the network with a
 * checkpoint's weights and normalization as an ONNX model
 * (kiln_net_export_onnx). */
#include <getopt.h>
#include <stdio.h>

#include "cli/cli.h"

static const cli_flag flags[] = {
    {"output", 'o', "FILE.onnx", NULL, "where the ONNX model goes (required)"},
    {"device", 'd', "SEL", "$KILN_DEVICE, else the first GPU, else the first CPU",
     "the OpenCL device the weights are loaded on"},
    {NULL, 0, NULL, NULL, NULL}};

const cli_command cli_export_cmd = {
    "export", cli_export, "MODEL.ini CHECKPOINT -o FILE.onnx",
    "write a trained network as an ONNX model",
    "Writes the network with the checkpoint's weights as an ONNX model (opset 17, standard "
    "operators, the weights inside) for ONNX Runtime and other ONNX readers: the graph in "
    "eval mode (no dropout, batchnorm with its running statistics), the checkpoint's input "
    "normalization as a first Sub and Div, so that the model takes raw inputs as kiln predict "
    "does, and a symbolic batch dimension. Its input is \"input\" (batch, then the model's "
    "[input] shape) and its output \"output\" is what kiln predict gives: probabilities for "
    "a classifier (a Softmax is added after logits trained with cross_entropy), the last "
    "layer's values otherwise. The file is written whole or not at all; a layer with no ONNX "
    "form is refused, naming it.",
    flags};

static int export_model(kiln_ctx *ctx, kiln_model *m, const char *checkpoint, const char *out)
{
    kiln_net *net = NULL;
    kiln_status st = kiln_net_create(ctx, m, 1, &net);
    if (st == KILN_OK)
        st = kiln_net_load(net, checkpoint);
    if (st == KILN_OK)
        st = kiln_net_export_onnx(net, out);
    size_t in = kiln_net_input_size(net), outs = kiln_net_output_size(net);
    kiln_net_free(net);
    if (st != KILN_OK)
        return cli_fail("export");
    printf("%s: ONNX opset 17, input \"input\" of %zu value%s per sample, output \"output\" of "
           "%zu\n", out, in, in == 1 ? "" : "s", outs);
    return 0;
}

int cli_export(int argc, char **argv)
{
    const char *out = NULL, *device = NULL;
    int opt;
    while ((opt = cli_next_flag(argc, argv, &cli_export_cmd)) != CLI_DONE) {
        if (opt < 0)
            return CLI_EXIT(opt);
        if (opt == 'o')
            out = optarg;
        else
            device = optarg;
    }
    if (argc - optind != 2 || !out) {
        if (argc - optind == 2)
            fprintf(stderr, "kiln export: -o FILE.onnx is required\n");
        return cli_usage_error(&cli_export_cmd);
    }
    kiln_ctx *ctx;
    kiln_model *m;
    /* the device line goes to stderr: stdout says what was written */
    int rc = cli_open(argv[optind], device, "export", stderr, &ctx, &m);
    if (rc != 0)
        return rc;
    rc = export_model(ctx, m, argv[optind + 1], out);
    kiln_model_free(m);
    kiln_ctx_free(ctx);
    return rc;
}
