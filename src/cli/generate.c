/* kiln generate MODEL.ini CHECKPOINT: text from a token model trained on a
 * text, written as it is sampled. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"

static const cli_flag flags[] = {
    {"prompt", 'p', "TEXT", "a newline", "the text to go on from (its last block of characters)"},
    {"tokens", 'n', "N", "500", "how many characters to write"},
    {"temperature", 't', "T", "0.8", "0 picks the likeliest character; higher is more varied"},
    {"top-k", 'k', "K", "all", "sample among the K likeliest characters only"},
    {"seed", 's', "S", "1337", "the sampling seed: the same seed writes the same text"},
    {"device", 'd', "SEL", "$KILN_DEVICE, else the first GPU, else the first CPU",
     "the OpenCL device"},
    {NULL, 0, NULL, NULL, NULL}};

const cli_command cli_generate_cmd = {
    "generate", cli_generate, "MODEL.ini CHECKPOINT", "write text with a trained token model",
    "Loads a checkpoint of kiln train --data TEXT (it holds the text's characters) and writes "
    "text one character at a time as nanoGPT's sample.py does: from the prompt's last block "
    "of characters, each sampled from the model's distribution with the temperature and "
    "top-k, the window sliding beyond the block. A KV cache makes each character one "
    "position's work until the window fills the block; after that each character runs the "
    "whole window. The text goes to standard output, everything else to standard error.",
    flags};

/* The prompt goes out with the first character, once the prompt is known
 * to be of the vocabulary. */
static void write_text(void *prompt, const char *text)
{
    const char **p = prompt;
    if (*p)
        fputs(*p, stdout);
    *p = NULL;
    fputs(text, stdout);
    fflush(stdout);
}

int cli_generate(int argc, char **argv)
{
    const char *prompt = "", *device = NULL;
    double tokens = 500, temperature = 0.8, top_k = 0, seed = 1337;
    int opt;
    while ((opt = cli_next_flag(argc, argv, &cli_generate_cmd)) != CLI_DONE) {
        switch (opt) {
        case CLI_HELP: return 0;
        case CLI_BAD: return 2;
        case 'p': prompt = optarg; break;
        case 'd': device = optarg; break;
        case 'n':
            if (!cli_whole_arg("--tokens", optarg, 0, 1e9, &tokens))
                return 2;
            break;
        case 't':
            if (!cli_number_arg("--temperature", optarg, 0, 1e6, &temperature))
                return 2;
            break;
        case 'k':
            if (!cli_whole_arg("--top-k", optarg, 1, 1e9, &top_k))
                return 2;
            break;
        case 's':
            if (!cli_whole_arg("--seed", optarg, 0, 9007199254740992.0, &seed))
                return 2;
            break;
        }
    }
    if (argc - optind != 2)
        return cli_usage_error(&cli_generate_cmd);
    kiln_ctx *ctx;
    kiln_model *m;
    int rc = cli_open(argv[optind], device, "generate", stderr, &ctx, &m);
    if (rc)
        return rc;
    kiln_net *net = NULL;
    kiln_status st = kiln_net_create(ctx, m, 1, &net);
    if (st == KILN_OK)
        st = kiln_net_load(net, argv[optind + 1]);
    const char *pending = prompt;
    if (st == KILN_OK)
        st = kiln_net_generate(net, prompt, (size_t)tokens, temperature, (size_t)top_k,
                               (uint64_t)seed, write_text, &pending);
    if (st == KILN_OK)
        printf("%s\n", pending ? pending : ""); /* --tokens 0: the prompt alone */
    rc = st == KILN_OK ? 0 : cli_fail("generate");
    kiln_net_free(net);
    kiln_model_free(m);
    kiln_ctx_free(ctx);
    return rc;
}
