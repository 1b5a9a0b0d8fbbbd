/* kiln train MODEL.ini and kiln eval MODEL.ini CHECKPOINT. */
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

static const char train_usage[] =
    "usage: kiln train MODEL.ini [--data fashion-mnist|DIR|FILE.csv] [--label COLUMN] "
    "[--epochs N] [--batch N] [--lr X] [--limit N] [--out DIR] [--resume DIR] "
    "[--detect-anomaly] [--profile TRACE.json] [--device SEL]\n";
static const char eval_usage[] =
    "usage: kiln eval MODEL.ini CHECKPOINT [--data ...] [--label COLUMN] [--batch N] "
    "[--device SEL]\n";

typedef struct {
    kiln_train_options o;
    const char *device;
    const char *model, *checkpoint;
} cli_options;

static int number_arg(const char *flag, const char *v, double lo, double hi, double *out)
{
    char *end;
    double x = strtod(v, &end);
    if (!*v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "kiln: %s %s: expected a number from %g to %g\n", flag, v, lo, hi);
        return 0;
    }
    *out = x;
    return 1;
}

/* 0, or the exit code. positional: how many file arguments to expect. */
static int parse(int argc, char **argv, int positional, const char *usage, cli_options *c)
{
    static const struct option options[] = {
        {"data", required_argument, NULL, 'D'},  {"label", required_argument, NULL, 'L'},
        {"epochs", required_argument, NULL, 'e'}, {"batch", required_argument, NULL, 'b'},
        {"lr", required_argument, NULL, 'l'},    {"out", required_argument, NULL, 'o'},
        {"device", required_argument, NULL, 'd'}, {"limit", required_argument, NULL, 'n'},
        {"resume", required_argument, NULL, 'r'},
        {"detect-anomaly", no_argument, NULL, 'A'}, {"profile", required_argument, NULL, 'P'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0}};
    c->o.data = "fashion-mnist";
    c->o.out_dir = "runs/latest";
    int opt;
    double v;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "D:L:e:b:l:o:d:n:r:AP:h", options, NULL)) != -1) {
        switch (opt) {
        case 'D': c->o.data = optarg; break;
        case 'L': c->o.label = optarg; break;
        case 'o': c->o.out_dir = optarg; break;
        case 'd': c->device = optarg; break;
        case 'r': c->o.resume = optarg; break;
        case 'A': c->o.detect_anomaly = 1; break;
        case 'P': c->o.profile = optarg; break;
        case 'e':
            if (!number_arg("--epochs", optarg, 1, 100000, &v))
                return 2;
            c->o.epochs = (int)v;
            break;
        case 'b':
            if (!number_arg("--batch", optarg, 1, 65536, &v))
                return 2;
            c->o.batch = (int)v;
            break;
        case 'l':
            if (!number_arg("--lr", optarg, 1e-12, 100, &v))
                return 2;
            c->o.lr = v;
            break;
        case 'n':
            if (!number_arg("--limit", optarg, 1, 1e9, &v))
                return 2;
            c->o.limit = (size_t)v;
            break;
        default:
            fputs(usage, opt == 'h' ? stdout : stderr);
            return opt == 'h' ? -1 : 2;
        }
    }
    if (argc - optind != positional) {
        fputs(usage, stderr);
        return 2;
    }
    c->model = argv[optind];
    c->checkpoint = positional > 1 ? argv[optind + 1] : NULL;
    return 0;
}

static void on_interrupt(int sig)
{
    (void)sig;
    kiln_request_stop();
}

/* Opens the device and the model; prints which device. */
static int open_all(const cli_options *c, const char *cmd, kiln_ctx **ctx, kiln_model **m)
{
    if (kiln_model_load(c->model, m) != KILN_OK)
        return cli_fail(cmd);
    if (kiln_ctx_create(c->device, ctx) != KILN_OK) {
        kiln_model_free(*m);
        return cli_fail(cmd);
    }
    printf("device: %s / %s\n", kiln_ctx_device(*ctx)->platform, kiln_ctx_device(*ctx)->name);
    return 0;
}

int cli_train(int argc, char **argv)
{
    cli_options c;
    memset(&c, 0, sizeof c);
    int rc = parse(argc, argv, 1, train_usage, &c);
    if (rc)
        return rc < 0 ? 0 : rc;
    kiln_ctx *ctx;
    kiln_model *m;
    if ((rc = open_all(&c, "train", &ctx, &m)) != 0)
        return rc;
    c.o.log = stdout;
    c.o.progress = isatty(STDOUT_FILENO);
    signal(SIGINT, on_interrupt);
    kiln_train_report r;
    kiln_status st = kiln_train(ctx, m, &c.o, &r);
    signal(SIGINT, SIG_DFL);
    if (st != KILN_OK) {
        rc = cli_fail("train");
    } else {
        printf("best epoch %d of %d (validation loss %.4f)%s; %.1f s in all, %.0f samples/s "
               "in training\n",
               r.best_epoch, r.epochs_run, r.best_val_loss,
               r.stopped_early ? ", stopped early" : "", r.seconds, r.samples_per_second);
        if (!isnan(r.test_accuracy))
            printf("test accuracy %.2f%% (loss %.4f) with the best weights\n",
                   100 * r.test_accuracy, r.test_loss);
        printf("checkpoints and log.csv in %s\n", c.o.out_dir);
        rc = r.interrupted ? 130 : 0;
    }
    kiln_model_free(m);
    kiln_ctx_free(ctx);
    return rc;
}

static void print_confusion(const kiln_eval_report *r)
{
    printf("per-class accuracy and confusion matrix (rows: true class, columns: predicted)\n");
    for (size_t i = 0; i < r->classes; i++) {
        size_t total = 0;
        for (size_t j = 0; j < r->classes; j++)
            total += r->confusion[i * r->classes + j];
        printf("  class %-3zu %6.2f%% |", i,
               total ? 100.0 * (double)r->confusion[i * r->classes + i] / (double)total : 0.0);
        for (size_t j = 0; j < r->classes; j++)
            printf(" %5zu", r->confusion[i * r->classes + j]);
        printf("\n");
    }
}

int cli_eval(int argc, char **argv)
{
    cli_options c;
    memset(&c, 0, sizeof c);
    int rc = parse(argc, argv, 2, eval_usage, &c);
    if (rc)
        return rc < 0 ? 0 : rc;
    kiln_ctx *ctx;
    kiln_model *m;
    if ((rc = open_all(&c, "eval", &ctx, &m)) != 0)
        return rc;
    kiln_eval_report r;
    if (kiln_evaluate(ctx, m, c.checkpoint, &c.o, &r) != KILN_OK) {
        rc = cli_fail("eval");
    } else {
        printf("%zu samples: loss %.4f, accuracy %.2f%%\n", r.samples, r.loss, 100 * r.accuracy);
        if (r.confusion)
            print_confusion(&r);
    }
    kiln_free(r.confusion);
    kiln_model_free(m);
    kiln_ctx_free(ctx);
    return rc;
}

int cli_predict(int argc, char **argv)
{
    static const struct option options[] = {{"count", required_argument, NULL, 'c'},
                                             {"label", required_argument, NULL, 'L'},
                                             {"device", required_argument, NULL, 'd'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    static const char usage[] = "usage: kiln predict MODEL.ini CHECKPOINT INPUT "
                                "[--count N] [--label COLUMN] [--device SEL]\n"
                                "INPUT is an IDX images file (gzipped or not) or a CSV file\n";
    cli_options c;
    memset(&c, 0, sizeof c);
    double count = 5;
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:L:d:h", options, NULL)) != -1) {
        if (opt == 'c' && number_arg("--count", optarg, 1, 4096, &count))
            continue;
        if (opt == 'L')
            c.o.label = optarg;
        else if (opt == 'd')
            c.device = optarg;
        else {
            fputs(usage, opt == 'h' ? stdout : stderr);
            return opt == 'h' ? 0 : 2;
        }
    }
    if (argc - optind != 3) {
        fputs(usage, stderr);
        return 2;
    }
    c.model = argv[optind];
    kiln_ctx *ctx;
    kiln_model *m;
    int rc = open_all(&c, "predict", &ctx, &m);
    if (rc)
        return rc;
    if (kiln_predict(ctx, m, argv[optind + 1], argv[optind + 2], c.o.label, (size_t)count,
                     stdout) != KILN_OK)
        rc = cli_fail("predict");
    kiln_model_free(m);
    kiln_ctx_free(ctx);
    return rc;
}
