/* kiln plot RUN_DIR [-o FILE.svg]: the training curves of a run (its
 * log.csv) as an SVG image. kiln train already keeps RUN_DIR/curves.svg up
 * to date; this draws it again, elsewhere, or from a log.csv alone. */
#include <getopt.h>
#include <stdio.h>
#include <sys/stat.h>

#include "cli/cli.h"

static const cli_flag flags[] = {
    {"output", 'o', "FILE.svg", "RUN_DIR/curves.svg", "where the image goes"},
    {NULL, 0, NULL, NULL, NULL}};

const cli_command cli_plot_cmd = {
    "plot", cli_plot, "RUN_DIR|LOG.csv", "draw a run's training curves as an SVG image",
    "Reads the log.csv that kiln train writes (a line per epoch) and draws loss, accuracy (for "
    "mse: validation MAE and R\xc2\xb2) and learning rate against epoch, the best epoch (lowest "
    "validation loss) marked. kiln train redraws RUN_DIR/curves.svg after every epoch; this "
    "command draws it again, or elsewhere. A malformed log is an error naming its line.",
    flags};

int cli_plot(int argc, char **argv)
{
    const char *svg = NULL;
    int opt;
    while ((opt = cli_next_flag(argc, argv, &cli_plot_cmd)) != CLI_DONE) {
        if (opt < 0)
            return CLI_EXIT(opt);
        svg = optarg; /* -o, the only flag */
    }
    if (optind != argc - 1)
        return cli_usage_error(&cli_plot_cmd);
    const char *run = argv[optind];
    if (kiln_plot(run, svg) != KILN_OK)
        return cli_fail("plot");
    struct stat info;
    if (svg && stat(svg, &info) == 0 && !S_ISREG(info.st_mode))
        return 0; /* -o /dev/stdout: the image alone */
    if (svg)
        printf("training curves written to %s\n", svg);
    else if (stat(run, &info) == 0 && S_ISDIR(info.st_mode))
        printf("training curves written to %s/curves.svg\n", run);
    else
        printf("training curves written to curves.svg beside %s\n", run);
    return 0;
}
