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

/* number_arg for counts: a whole number (--epochs 1.9 is refused). */
static int whole_arg(const char *flag, const char *v, double lo, double hi, double *out)
{
    if (!number_arg(flag, v, lo, hi, out))
        return 0;
    if (*out != floor(*out)) {
        fprintf(stderr, "kiln: %s %s: expected a whole number from %g to %g\n", flag, v, lo,
                hi);
        return 0;
    }
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
            if (!whole_arg("--epochs", optarg, 1, 100000, &v))
                return 2;
            c->o.epochs = (int)v;
            break;
        case 'b':
            if (!whole_arg("--batch", optarg, 1, 65536, &v))
                return 2;
            c->o.batch = (int)v;
            break;
        case 'l':
            if (!number_arg("--lr", optarg, 1e-12, 100, &v))
                return 2;
            c->o.lr = v;
            break;
        case 'n':
            if (!whole_arg("--limit", optarg, 1, 1e9, &v))
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

static volatile sig_atomic_t stop_requested;

/* Ctrl-C (or SIGTERM, SIGHUP) asks training to stop after the current
 * batch and save its state; the handler resets itself, so a second one
 * ends the process at once without saving. */
static void on_interrupt(int sig)
{
    (void)sig;
    stop_requested = 1;
    static const char note[] = "\nkiln: stopping after this batch and saving the state; "
                               "press Ctrl-C again to abort without saving\n";
    ssize_t ignored = write(STDERR_FILENO, note, sizeof note - 1);
    (void)ignored;
}

static void catch_stops(int on)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on ? on_interrupt : SIG_DFL;
    sa.sa_flags = on ? SA_RESETHAND : 0;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

/* Training output to stdout; once stdout is gone (a closed pipe, as with
 * `kiln train | head -1`), training goes on quietly and saves as usual. */
static int console_lost;

static void write_stdout(void *user, const char *text)
{
    (void)user;
    if (console_lost)
        return;
    if (fputs(text, stdout) < 0 || fflush(stdout) != 0) {
        console_lost = 1;
        fprintf(stderr, "kiln train: standard output is closed; training goes on without "
                        "console output\n");
    }
}

/* Opens the device and the model; prints which device. */
/* Under mpirun: this process's rank and local rank, and the job's size
 * (0, 0, 1 otherwise). */
static void mpi_place(int *rank, int *local, int *size)
{
    const char *r = getenv("OMPI_COMM_WORLD_RANK"), *l = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    const char *n = getenv("OMPI_COMM_WORLD_SIZE");
    *rank = r ? atoi(r) : 0;
    *local = l ? atoi(l) : *rank;
    *size = n ? atoi(n) : 1;
}

/* A device selector for this rank: one selector for every rank, or a
 * comma-separated list from which local rank r takes entry r (mod its
 * length). */
static const char *rank_selector(const char *selector, int local, char *buf, size_t size)
{
    if (!selector || !*selector)
        selector = getenv("KILN_DEVICE");
    if (!selector || !strchr(selector, ','))
        return selector;
    int entries = 1;
    for (const char *p = selector; *p; p++)
        entries += *p == ',';
    const char *p = selector;
    for (int k = local % entries; k > 0; k--)
        p = strchr(p, ',') + 1;
    snprintf(buf, size, "%.*s", (int)strcspn(p, ","), p);
    return buf;
}

/* cli_fail, naming the rank under mpirun (mpirun then ends the others). */
static int rank_fail(const char *cmd, int rank, int size)
{
    if (size == 1)
        return cli_fail(cmd);
    fprintf(stderr, "kiln %s: rank %d of %d failed: %s\n", cmd, rank, size, kiln_last_error());
    return 1;
}

static int open_all(const cli_options *c, const char *cmd, kiln_ctx **ctx, kiln_model **m)
{
    int rank, local, size;
    mpi_place(&rank, &local, &size);
    char chosen[256];
    const char *selector = rank_selector(c->device, local, chosen, sizeof chosen);
    if (kiln_model_load(c->model, m) != KILN_OK)
        return rank_fail(cmd, rank, size);
    if (kiln_ctx_create(selector, ctx) != KILN_OK) {
        kiln_model_free(*m);
        return rank_fail(cmd, rank, size);
    }
    const kiln_device_info *d = kiln_ctx_device(*ctx);
    /* rank 0 alone prints; it lists every rank's device when training starts */
    if (size > 1 && rank > 0 && !freopen("/dev/null", "w", stdout))
        return rank_fail(cmd, rank, size);
    printf("device: %s / %s\n", d->platform, d->name);
    return 0;
}

int cli_train(int argc, char **argv)
{
    cli_options c;
    memset(&c, 0, sizeof c);
    kiln_train_options_init(&c.o);
    int rc = parse(argc, argv, 1, train_usage, &c);
    if (rc)
        return rc < 0 ? 0 : rc;
    kiln_ctx *ctx;
    kiln_model *m;
    if ((rc = open_all(&c, "train", &ctx, &m)) != 0)
        return rc;
    c.o.log = write_stdout;
    c.o.progress = isatty(STDOUT_FILENO);
    c.o.stop = &stop_requested;
    signal(SIGPIPE, SIG_IGN); /* a closed stdout is an error to report, not a death */
    catch_stops(1);
    kiln_train_report r;
    kiln_status st = kiln_train(ctx, m, &c.o, &r);
    catch_stops(0);
    if (st != KILN_OK) {
        rc = cli_fail("train");
    } else {
        if (r.epochs_run == 0)
            printf("stopped before the first epoch ended; no best or final weights were "
                   "written\n");
        else
            printf("best epoch %d of %d (validation loss %.4f)%s; %.1f s in all, %.0f "
                   "samples/s in training\n",
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
    kiln_train_options_init(&c.o);
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
        if (isnan(r.accuracy))
            printf("%zu samples: loss %.4f, mean absolute error %.4f, R² %.4f\n", r.samples,
                   r.loss, r.mae, r.r2);
        else
            printf("%zu samples: loss %.4f, accuracy %.2f%%\n", r.samples, r.loss,
                   100 * r.accuracy);
        if (r.confusion)
            print_confusion(&r);
    }
    kiln_free(r.confusion);
    kiln_model_free(m);
    kiln_ctx_free(ctx);
    return rc;
}

/* One prediction as text: the class and its probabilities for a softmax
 * head, each label's decision (p >= 0.5) for a sigmoid head, the outputs
 * otherwise. */
static void print_prediction(size_t i, const float *y, size_t outputs, kiln_head head)
{
    if (head == KILN_HEAD_SIGMOID && outputs == 1) {
        printf("sample %zu: class %d (p = %.3f)\n", i, y[0] >= 0.5f, (double)y[0]);
        return;
    }
    if (head == KILN_HEAD_SIGMOID) {
        printf("sample %zu: labels", i);
        for (size_t j = 0; j < outputs; j++)
            printf(" %d", y[j] >= 0.5f);
        printf(" |");
        for (size_t j = 0; j < outputs; j++)
            printf(" %.3f", (double)y[j]);
        printf("\n");
        return;
    }
    if (head != KILN_HEAD_SOFTMAX) {
        printf("sample %zu:", i);
        for (size_t j = 0; j < outputs; j++)
            printf("%s%.5g", j ? " " : " ", (double)y[j]);
        printf("\n");
        return;
    }
    size_t best = 0;
    for (size_t j = 1; j < outputs; j++)
        if (y[j] > y[best])
            best = j;
    printf("sample %zu: class %zu (%.1f%%) |", i, best, 100.0 * y[best]);
    for (size_t j = 0; j < outputs; j++)
        printf(" %.3f", (double)y[j]);
    printf("\n");
}

/* Logits to probabilities in place (a classifier without a softmax layer,
 * trained with cross_entropy as PyTorch's models are). */
static void softmax_row(float *z, size_t n)
{
    double mx = z[0], sum = 0;
    for (size_t j = 1; j < n; j++)
        mx = z[j] > mx ? z[j] : mx;
    for (size_t j = 0; j < n; j++)
        sum += exp((double)z[j] - mx);
    for (size_t j = 0; j < n; j++)
        z[j] = (float)(exp((double)z[j] - mx) / sum);
}

/* Predictions of the first count samples of input with a checkpoint,
 * through the library's network API. */
static int predict(kiln_ctx *ctx, kiln_model *m, const char *checkpoint, const char *input,
                   const char *label, size_t count)
{
    kiln_data *d = NULL;
    kiln_net *net = NULL;
    float *x = NULL, *y = NULL;
    kiln_status st = kiln_data_load(input, "test", label, &d);
    size_t n = d && kiln_data_count(d) < count ? kiln_data_count(d) : count;
    if (st == KILN_OK)
        st = kiln_net_create(ctx, m, n < 256 ? n : 256, &net);
    if (st == KILN_OK)
        st = kiln_net_load(net, checkpoint);
    size_t in = kiln_net_input_size(net), outs = kiln_net_output_size(net);
    if (st == KILN_OK && kiln_data_features(d) != in)
        return kiln_data_free(d), kiln_net_free(net),
               fprintf(stderr, "kiln predict: %s has %zu values per sample; the model takes "
                               "%zu\n", input, kiln_data_features(d), in), 1;
    if (st == KILN_OK) {
        x = malloc(n * in * sizeof *x);
        y = malloc(n * outs * sizeof *y);
        if (!x || !y)
            st = KILN_ERR_OUT_OF_MEMORY;
    }
    if (st == KILN_OK)
        st = kiln_data_copy_features(d, 0, n, x);
    if (st == KILN_OK)
        st = kiln_net_forward(net, x, n, y);
    kiln_head head = kiln_net_head(net);
    const char *loss = kiln_model_train_setting(m, "loss");
    if (head == KILN_HEAD_NONE && outs > 1 && (!loss || strcmp(loss, "cross_entropy") == 0)) {
        for (size_t i = 0; st == KILN_OK && i < n; i++) /* logits of a classifier */
            softmax_row(y + i * outs, outs);
        head = KILN_HEAD_SOFTMAX;
    }
    for (size_t i = 0; st == KILN_OK && i < n; i++)
        print_prediction(i, y + i * outs, outs, head);
    free(x);
    free(y);
    kiln_net_free(net);
    kiln_data_free(d);
    return st == KILN_OK ? 0 : cli_fail("predict");
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
        if (opt == 'c' && whole_arg("--count", optarg, 1, 1e12, &count))
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
    rc = predict(ctx, m, argv[optind + 1], argv[optind + 2], c.o.label, (size_t)count);
    kiln_model_free(m);
    kiln_ctx_free(ctx);
    return rc;
}
