/* kiln summary MODEL.ini: the layers, their shapes and parameter counts. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cli_summary(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: kiln summary MODEL.ini\n");
        return argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)
                   ? 0
                   : 2;
    }
    kiln_model *m;
    if (kiln_model_load(argv[1], &m) != KILN_OK)
        return cli_fail("summary");
    printf("model %s\n", argv[1]);
    kiln_status st = kiln_model_summary(m, stdout);
    kiln_model_free(m);
    return st == KILN_OK ? 0 : cli_fail("summary");
}
