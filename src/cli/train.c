/* kiln train MODEL.ini and kiln eval MODEL.ini CHECKPOINT. */
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

#include "cli/cli.h"

#define DATA_FLAG                                                                         \
    {"data", 'D', "SOURCE", "fashion-mnist",                                              \
     "the data: fashion-mnist or mnist (Debian's dataset packages, or $KILN_DATA_DIR), a " \
     "directory of IDX files, a CSV file with a header row, a NumPy .npy file of "        \
     "features (its labels in --label FILE.npy), an .npz archive (x and y, else "        \
     "x_train and y_train, with x_test and y_test as the test split), or an image "       \
     "folder of PNG and JPEG files: one folder per class, or train/ and val/ holding "    \
     "them (val/ is the test split); for token models, a UTF-8 text (characters are the " \
     "tokens), nanoGPT's train.bin and val.bin (their directory, or train.bin), a .npy "  \
     "of token ids, or shakespeare (the corpus tools/shakespeare.sh downloads)"}
#define LABEL_FLAG                                                                        \
    {"label", 'L', "COLUMN", "label",                                                     \
     "the CSV column holding the labels or targets, by name or index from 0; for a .npy " \
     "--data, the .npy file of labels or targets"}
#define NPZ_FLAG                                                                          \
    {"npz-keys", 'K', "X,Y[,XTEST,YTEST]", "x,y (else x_train,y_train)",                  \
     "the .npz arrays of features and labels, and of the test split"}
#define SHARD_FLAG                                                                        \
    {"shard", 'S', NULL, "the model's [train] shard, else off",                          \
     "--data (and --label) list .npy shards: files or glob patterns, comma-separated, "   \
     "paired in sorted order; samples are read from disk as batches need them, and "      \
     "under mpirun each rank reads only its own"}
#define DEVICE_FLAG                                                                       \
    {"device", 'd', "SEL", "$KILN_DEVICE, else the first GPU, else the first CPU",         \
     "the OpenCL device: an index, platform:device, or part of a platform, vendor or "    \
     "device name or type (pocl, rusticl, nvidia, gpu, cpu); under mpirun a comma-separated " \
     "list, one entry per local rank"}
#define END_FLAGS {NULL, 0, NULL, NULL, NULL}

static const cli_flag train_flags[] = {
    DATA_FLAG,
    LABEL_FLAG,
    NPZ_FLAG,
    SHARD_FLAG,
    {"epochs", 'e', "N", "the model's [train] epochs, else 10", "epochs to train"},
    {"batch", 'b', "N", "the model's [train] batch, else 64", "samples per optimizer step"},
    {"steps", 's', "N", "the model's [train] steps, else 1000",
     "optimizer steps (token models train by steps, evaluating every [train] eval_every)"},
    {"lr", 'l', "X", "the model's [train] lr", "the learning rate"},
    {"limit", 'n', "N", "all", "use at most N samples of each split (for quick runs)"},
    {"accumulate", 'k', "K", "the model's [train] accumulate, else 1",
     "sum the gradients of K batches into each optimizer step: a step of batch times K samples "
     "with the memory of one batch"},
    {"out", 'o', "DIR", "runs/latest",
     "where checkpoints (best, last and final .safetensors), log.csv and curves.svg go"},
    {"resume", 'r', "DIR", NULL,
     "go on exactly from the last state saved in DIR, an earlier run's --out"},
    {"json", 'j', NULL, NULL,
     "print one JSON object per epoch and one for the result on stdout (and the other "
     "lines on stderr), for scripts and notebooks"},
    {"detect-anomaly", 'A', NULL, NULL,
     "check every value and gradient for NaN and Inf as it is made and name the first "
     "layer that makes one (slow)"},
    {"profile", 'P', "TRACE.json", NULL,
     "write a Chrome trace of training steps 2 to 6 and print device time per layer "
     "and each layer's backward against its forward"},
    DEVICE_FLAG,
    END_FLAGS};

static const cli_flag eval_flags[] = {
    DATA_FLAG,
    LABEL_FLAG,
    NPZ_FLAG,
    SHARD_FLAG,
    {"batch", 'b', "N", "the model's [train] batch, else 64", "samples per forward pass"},
    {"limit", 'n', "N", "all", "use at most N samples"},
    DEVICE_FLAG,
    END_FLAGS};

const cli_command cli_train_cmd = {
    "train", cli_train, "MODEL.ini", "train a model",
    "Trains the model as its [train] section says (loss, optimizer, schedule, clipping, "
    "early stopping, seed) on the data, keeps the weights of the best validation loss and "
    "reports their test accuracy. Each epoch appends to log.csv and redraws curves.svg in "
    "the --out directory. Ctrl-C stops after the current batch and saves the state for "
    "--resume. Under mpirun -np N, the N ranks train one model, each on its share of every "
    "global batch.",
    train_flags};

const cli_command cli_eval_cmd = {
    "eval", cli_eval, "[MODEL.ini] CHECKPOINT", "evaluate a checkpoint",
    "Loss and accuracy (or mean absolute error and R² for mse) of a checkpoint on the test "
    "split of a dataset, or on every row of a CSV file, with the normalization stored in the "
    "checkpoint, and the confusion matrix of a classifier. Without MODEL.ini, the model is "
    "the one the checkpoint carries (kiln writes it into every checkpoint).",
    eval_flags};

typedef struct {
    kiln_train_options o;
    const char *device;
    const char *model, *checkpoint;
    const char *accumulate; /* --accumulate, set into the model's [train] */
    int shard;              /* --shard, set into the model's [train] */
    int json;
} cli_options;

int cli_number_arg(const char *flag, const char *v, double lo, double hi, double *out)
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

/* cli_number_arg for counts: a whole number (--epochs 1.9 is refused). */
int cli_whole_arg(const char *flag, const char *v, double lo, double hi, double *out)
{
    if (!cli_number_arg(flag, v, lo, hi, out))
        return 0;
    if (*out != floor(*out)) {
        fprintf(stderr, "kiln: %s %s: expected a whole number from %g to %g\n", flag, v, lo,
                hi);
        return 0;
    }
    return 1;
}

/* 0, or the exit code (-1: help was printed). positional: how many file
 * arguments to expect. */
static int parse(int argc, char **argv, int positional, const cli_command *cmd, cli_options *c)
{
    c->o.data = "fashion-mnist";
    c->o.out_dir = "runs/latest";
    int opt;
    double v;
    while ((opt = cli_next_flag(argc, argv, cmd)) != CLI_DONE) {
        switch (opt) {
        case CLI_HELP: return -1;
        case CLI_BAD: return 2;
        case 'j': c->json = 1; break;
        case 'S': c->shard = 1; break;
        case 'D': c->o.data = optarg; break;
        case 'L': c->o.label = optarg; break;
        case 'K': c->o.npz_keys = optarg; break;
        case 'o': c->o.out_dir = optarg; break;
        case 'd': c->device = optarg; break;
        case 'r': c->o.resume = optarg; break;
        case 'A': c->o.detect_anomaly = 1; break;
        case 'P': c->o.profile = optarg; break;
        case 'e':
            if (!cli_whole_arg("--epochs", optarg, 1, 100000, &v))
                return 2;
            c->o.epochs = (int)v;
            break;
        case 'b':
            if (!cli_whole_arg("--batch", optarg, 1, 65536, &v))
                return 2;
            c->o.batch = (int)v;
            break;
        case 's':
            if (!cli_whole_arg("--steps", optarg, 1, 1e8, &v))
                return 2;
            c->o.steps = (int)v;
            break;
        case 'l':
            if (!cli_number_arg("--lr", optarg, 1e-12, 100, &v))
                return 2;
            c->o.lr = v;
            break;
        case 'n':
            if (!cli_whole_arg("--limit", optarg, 1, 1e9, &v))
                return 2;
            c->o.limit = (size_t)v;
            break;
        case 'k':
            if (!cli_whole_arg("--accumulate", optarg, 1, 1e6, &v))
                return 2;
            c->accumulate = optarg;
            break;
        }
    }
    int given = argc - optind; /* eval: the model may be left to the checkpoint */
    if (given != positional && !(positional == 2 && given == 1))
        return cli_usage_error(cmd);
    c->model = argv[optind];
    c->checkpoint = positional > 1 ? argv[optind + given - 1] : NULL;
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

/* With no selector, under a launcher, on a node with several GPUs: local
 * rank r takes GPU r (mod their number), by its index; else NULL (the
 * default device). */
static const char *local_gpu(const kiln_job *job, char *buf, size_t size)
{
    kiln_device_info *list;
    size_t n, gpus = 0;
    if (job->size == 1 || kiln_devices(&list, &n) != KILN_OK)
        return NULL;
    for (size_t i = 0; i < n; i++)
        gpus += list[i].type == KILN_DEVICE_GPU;
    for (size_t i = 0, k = 0; gpus > 1 && i < n; i++)
        if (list[i].type == KILN_DEVICE_GPU && k++ == (size_t)job->local_rank % gpus)
            snprintf(buf, size, "%u", list[i].global_index);
    kiln_free(list);
    return gpus > 1 ? buf : NULL;
}

/* A device selector for this rank: one selector for every rank, or a
 * comma-separated list from which local rank r takes entry r (mod its
 * length); with none, one GPU per local rank where a node has several. */
static const char *rank_selector(const char *selector, const kiln_job *job, char *buf,
                                 size_t size)
{
    if (!selector || !*selector)
        selector = getenv("KILN_DEVICE");
    if (!selector || !*selector)
        return local_gpu(job, buf, size);
    if (!strchr(selector, ','))
        return selector;
    int entries = 1;
    for (const char *p = selector; *p; p++)
        entries += *p == ',';
    const char *p = selector;
    for (int k = job->local_rank % entries; k > 0; k--)
        p = strchr(p, ',') + 1;
    snprintf(buf, size, "%.*s", (int)strcspn(p, ","), p);
    return buf;
}

int cli_is_checkpoint(const char *path)
{
    unsigned char head[9];
    FILE *f = fopen(path, "rb");
    int yes = f && fread(head, 1, 9, f) == 9 && head[8] == '{'; /* length, then JSON */
    if (f)
        fclose(f);
    return yes;
}

int cli_open(const char *model, const char *device, const char *cmd, FILE *out,
             kiln_ctx **ctx, kiln_model **m)
{
    kiln_job job; /* under mpirun or srun: this rank's device and output */
    kiln_job_place(NULL, &job);
    char chosen[256];
    const char *selector = rank_selector(device, &job, chosen, sizeof chosen);
    if ((cli_is_checkpoint(model) ? kiln_model_from_checkpoint(model, m)
                                  : kiln_model_load(model, m)) != KILN_OK)
        return cli_fail(cmd);
    if (kiln_model_check_train(*m) != KILN_OK) { /* before the device, which takes seconds */
        kiln_model_free(*m);
        return cli_fail(cmd);
    }
    if (kiln_ctx_create(selector, ctx) != KILN_OK) {
        kiln_model_free(*m);
        return cli_fail(cmd);
    }
    const kiln_device_info *d = kiln_ctx_device(*ctx);
    /* rank 0 alone prints; it lists every rank's device when training starts */
    if (job.size > 1 && job.rank > 0 && !freopen("/dev/null", "w", stdout))
        return cli_fail(cmd);
    if (job.rank == 0)
        fprintf(out, "device: %s / %s\n", d->platform, d->name);
    return 0;
}

/* --json: training's text goes to stderr, and stdout holds one JSON object
 * per line (cJSON prints NaN as null). */
static void write_stderr(void *user, const char *text)
{
    (void)user;
    fputs(text, stderr);
}

static void json_line(cJSON *o)
{
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    if (text) {
        write_stdout(NULL, text);
        write_stdout(NULL, "\n");
    }
    cJSON_free(text);
    cJSON_Delete(o);
}

static int json_epoch(void *user, const kiln_progress *p)
{
    (void)user;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "event", "epoch");
    cJSON_AddNumberToObject(o, "epoch", p->epoch);
    cJSON_AddNumberToObject(o, "epochs", p->epochs);
    cJSON_AddNumberToObject(o, "step", (double)p->step);
    cJSON_AddNumberToObject(o, "lr", p->lr);
    cJSON_AddNumberToObject(o, "loss", p->loss);
    cJSON_AddNumberToObject(o, "accuracy", p->accuracy);
    cJSON_AddNumberToObject(o, "val_loss", p->val_loss);
    cJSON_AddNumberToObject(o, "val_accuracy", p->val_accuracy);
    cJSON_AddNumberToObject(o, "seconds", p->seconds);
    cJSON_AddBoolToObject(o, "best", p->best);
    json_line(o);
    return 0;
}

static void json_result(const kiln_train_report *r, const char *out_dir)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "event", "result");
    cJSON_AddNumberToObject(o, "epochs_run", r->epochs_run);
    cJSON_AddNumberToObject(o, "best_epoch", r->best_epoch);
    cJSON_AddNumberToObject(o, "best_val_loss", r->best_val_loss);
    cJSON_AddNumberToObject(o, "test_loss", r->test_loss);
    cJSON_AddNumberToObject(o, "test_accuracy", r->test_accuracy);
    cJSON_AddBoolToObject(o, "stopped_early", r->stopped_early);
    cJSON_AddBoolToObject(o, "interrupted", r->interrupted);
    cJSON_AddNumberToObject(o, "seconds", r->seconds);
    cJSON_AddNumberToObject(o, "samples_per_second", r->samples_per_second);
    if (r->steps_run) {
        cJSON_AddNumberToObject(o, "steps_run", (double)r->steps_run);
        cJSON_AddNumberToObject(o, "best_step", (double)r->best_step);
        cJSON_AddNumberToObject(o, "tokens_per_second", r->tokens_per_second);
    }
    cJSON_AddStringToObject(o, "out", out_dir);
    json_line(o);
}

static void print_result(FILE *f, const kiln_train_report *r, const char *out_dir)
{
    if (r->steps_run && r->best_step == 0)
        fprintf(f, "stopped after %llu steps, before the first evaluation; no best or final "
                   "weights were written\n", (unsigned long long)r->steps_run);
    else if (r->steps_run)
        fprintf(f, "best at step %llu of %llu (validation loss %.4f)%s; %.1f s in all, %.0f "
                   "tokens/s in training\n", (unsigned long long)r->best_step,
                (unsigned long long)r->steps_run, r->best_val_loss,
                r->stopped_early ? ", stopped early" : "", r->seconds, r->tokens_per_second);
    else if (r->epochs_run == 0)
        fprintf(f, "stopped before the first epoch ended; no best or final weights were "
                   "written\n");
    else
        fprintf(f, "best epoch %d of %d (validation loss %.4f)%s; %.1f s in all, %.0f "
                   "samples/s in training\n",
                r->best_epoch, r->epochs_run, r->best_val_loss,
                r->stopped_early ? ", stopped early" : "", r->seconds, r->samples_per_second);
    if (!isnan(r->test_accuracy))
        fprintf(f, "test accuracy %.2f%% (loss %.4f) with the best weights\n",
                100 * r->test_accuracy, r->test_loss);
    fprintf(f, "checkpoints, log.csv and curves.svg in %s\n", out_dir);
}

int cli_train(int argc, char **argv)
{
    cli_options c;
    memset(&c, 0, sizeof c);
    kiln_train_options_init(&c.o);
    int rc = parse(argc, argv, 1, &cli_train_cmd, &c);
    if (rc)
        return rc < 0 ? 0 : rc;
    kiln_ctx *ctx;
    kiln_model *m;
    FILE *text = c.json ? stderr : stdout;
    if ((rc = cli_open(c.model, c.device, "train", text, &ctx, &m)) != 0)
        return rc;
    if ((c.accumulate && kiln_model_set_train(m, "accumulate", c.accumulate) != KILN_OK) ||
        (c.shard && kiln_model_set_train(m, "shard", "true") != KILN_OK)) {
        kiln_model_free(m);
        kiln_ctx_free(ctx);
        return cli_fail("train");
    }
    c.o.log = c.json ? write_stderr : write_stdout;
    /* mpirun hands every rank a pseudo-terminal, whatever its own output is */
    kiln_job job;
    kiln_job_place(NULL, &job);
    c.o.progress = isatty(fileno(text)) && job.size == 1;
    if (c.json)
        c.o.on_epoch = json_epoch;
    c.o.stop = &stop_requested;
    signal(SIGPIPE, SIG_IGN); /* a closed stdout is an error to report, not a death */
    catch_stops(1);
    kiln_train_report r;
    kiln_status st = kiln_train(ctx, m, &c.o, &r);
    catch_stops(0);
    if (st != KILN_OK) {
        rc = cli_fail("train");
    } else {
        print_result(text, &r, c.o.out_dir);
        if (c.json)
            json_result(&r, c.o.out_dir);
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
    int rc = parse(argc, argv, 2, &cli_eval_cmd, &c);
    if (rc)
        return rc < 0 ? 0 : rc;
    kiln_ctx *ctx;
    kiln_model *m;
    if ((rc = cli_open(c.model, c.device, "eval", stdout, &ctx, &m)) != 0)
        return rc;
    if (c.shard && kiln_model_set_train(m, "shard", "true") != KILN_OK) {
        kiln_model_free(m);
        kiln_ctx_free(ctx);
        return cli_fail("eval");
    }
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
