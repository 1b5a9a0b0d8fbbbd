/* kiln predict MODEL.ini CHECKPOINT INPUT: the network's outputs for every
 * sample of INPUT, streamed batch by batch as text, CSV or JSON. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"

static const cli_flag flags[] = {
    {"format", 'f', "text|csv|json",
     "text on a terminal, else csv; json or csv when --out ends in .json or .csv",
     "text: a line per sample for people; csv: a header row and a row per sample; json: an "
     "array of one object per sample. csv and json give every value in full float "
     "precision (%.9g)"},
    {"out", 'o', "FILE", "standard output",
     "write the predictions to FILE (written whole or not at all)"},
    {"count", 'c', "N", "every sample", "predict only the first N samples"},
    {"batch", 'b', "N", "256", "samples per forward pass"},
    {"label", 'L', "COLUMN", "label when the CSV has a column more than the model's inputs",
     "the CSV's label column, which is left out of the inputs; a CSV with exactly as many "
     "columns as the model has inputs needs none"},
    {"npz-keys", 'K', "FEATURES", "x, else x_train", "the .npz array holding the features"},
    {"device", 'd', "SEL", "$KILN_DEVICE, else the first GPU, else the first CPU",
     "the OpenCL device"},
    {NULL, 0, NULL, NULL, NULL}};

const cli_command cli_predict_cmd = {
    "predict", cli_predict, "[MODEL.ini] CHECKPOINT INPUT", "predict the outputs of every sample",
    "Runs the network with a checkpoint's weights (and its stored normalization; without "
    "MODEL.ini, the model the checkpoint carries) on every "
    "sample of INPUT, an IDX images file (gzipped or not), a CSV file with a header row "
    "(with or without a label column), a NumPy .npy file, an .npz archive, a PNG or JPEG "
    "image, or a folder of them (or an image folder: its val/ images), in batches, and "
    "writes each "
    "sample's prediction: for a softmax classifier (or logits trained with cross_entropy) "
    "the class (and its name when trained on an image folder) and its probabilities, for a "
    "sigmoid head each label's decision and "
    "probability, otherwise the outputs.",
    flags};

typedef enum { FORMAT_TEXT, FORMAT_CSV, FORMAT_JSON } format;

typedef struct {
    const char *model, *checkpoint, *input, *label, *device, *out, *npz_keys;
    format fmt;
    int fmt_given;
    size_t count, batch;
} predict_args;

/* ---- one sample's prediction in each format -------------------------------- */

/* What the outputs are: probabilities of one class (softmax), of labels
 * (sigmoid), or plain values. */
typedef struct {
    kiln_head head;
    size_t outputs;
    FILE *f;
    format fmt;
    size_t written;
    const kiln_net *net; /* class names, when trained on an image folder */
    const kiln_data *d;  /* file names, for images */
} writer;

/* Class c's name, or NULL. */
static const char *class_name(const writer *w, size_t c)
{
    return kiln_net_class_name(w->net, c);
}

/* Writes s as a JSON string (names of class folders may hold anything). */
static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static size_t argmax(const float *y, size_t n)
{
    size_t best = 0;
    for (size_t j = 1; j < n; j++)
        if (y[j] > y[best])
            best = j;
    return best;
}

static void text_row(const writer *w, size_t i, const float *y)
{
    size_t n = w->outputs;
    if (w->head == KILN_HEAD_SOFTMAX) {
        size_t c = argmax(y, n);
        const char *name = class_name(w, c);
        const char *file = kiln_data_file(w->d, i);
        fprintf(w->f, "sample %zu%s%s%s: class %zu%s%s (%.1f%%) |", i, file ? " (" : "",
                file ? file : "", file ? ")" : "", c, name ? " " : "", name ? name : "",
                100.0 * y[c]);
    } else if (w->head == KILN_HEAD_SIGMOID) {
        fprintf(w->f, "sample %zu: %s", i, n == 1 ? "class" : "labels");
        for (size_t j = 0; j < n; j++)
            fprintf(w->f, " %d", y[j] >= 0.5f);
        fprintf(w->f, " |");
    } else {
        fprintf(w->f, "sample %zu:", i);
    }
    for (size_t j = 0; j < n; j++)
        fprintf(w->f, w->head == KILN_HEAD_NONE ? " %.5g" : " %.3f", (double)y[j]);
    fputc('\n', w->f);
}

/* s as a CSV field, quoted as RFC 4180 says. */
static void csv_text(FILE *f, const char *s)
{
    fputs(",\"", f);
    for (; *s; s++)
        fprintf(f, *s == '"' ? "\"\"" : "%c", *s);
    fputc('"', f);
}

static void csv_header(const writer *w)
{
    fprintf(w->f, kiln_data_file(w->d, 0) ? "sample,file" : "sample");
    if (w->head == KILN_HEAD_SOFTMAX)
        fprintf(w->f, class_name(w, 0) ? ",class,class_name" : ",class");
    for (size_t j = 0; w->head == KILN_HEAD_SIGMOID && j < w->outputs; j++)
        fprintf(w->f, w->outputs == 1 ? ",class" : ",label_%zu", j);
    for (size_t j = 0; j < w->outputs; j++)
        fprintf(w->f, w->head == KILN_HEAD_NONE ? ",output_%zu" : ",p_%zu", j);
    fputc('\n', w->f);
}

static void csv_row(const writer *w, size_t i, const float *y)
{
    fprintf(w->f, "%zu", i);
    size_t c = argmax(y, w->outputs);
    if (kiln_data_file(w->d, i))
        csv_text(w->f, kiln_data_file(w->d, i));
    if (w->head == KILN_HEAD_SOFTMAX)
        fprintf(w->f, ",%zu", c);
    if (w->head == KILN_HEAD_SOFTMAX && class_name(w, 0))
        csv_text(w->f, class_name(w, c) ? class_name(w, c) : "");
    for (size_t j = 0; w->head == KILN_HEAD_SIGMOID && j < w->outputs; j++)
        fprintf(w->f, ",%d", y[j] >= 0.5f);
    for (size_t j = 0; j < w->outputs; j++)
        fprintf(w->f, ",%.9g", (double)y[j]);
    fputc('\n', w->f);
}

static void json_values(FILE *f, const char *key, const float *y, size_t n)
{
    fprintf(f, ", \"%s\": [", key);
    for (size_t j = 0; j < n; j++) {
        if (isfinite(y[j]))
            fprintf(f, "%s%.9g", j ? ", " : "", (double)y[j]);
        else
            fprintf(f, "%snull", j ? ", " : "");
    }
    fputc(']', f);
}

static void json_row(const writer *w, size_t i, const float *y)
{
    fprintf(w->f, "%s{\"sample\": %zu", w->written ? ",\n" : "[\n", i);
    if (kiln_data_file(w->d, i)) {
        fprintf(w->f, ", \"file\": ");
        json_string(w->f, kiln_data_file(w->d, i));
    }
    size_t c = argmax(y, w->outputs);
    if (w->head == KILN_HEAD_SOFTMAX)
        fprintf(w->f, ", \"class\": %zu", c);
    if (w->head == KILN_HEAD_SOFTMAX && class_name(w, c)) {
        fprintf(w->f, ", \"class_name\": ");
        json_string(w->f, class_name(w, c));
    }
    if (w->head == KILN_HEAD_SIGMOID) {
        fprintf(w->f, ", \"labels\": [");
        for (size_t j = 0; j < w->outputs; j++)
            fprintf(w->f, "%s%d", j ? ", " : "", y[j] >= 0.5f);
        fputc(']', w->f);
    }
    json_values(w->f, w->head == KILN_HEAD_NONE ? "outputs" : "probabilities", y, w->outputs);
    fputc('}', w->f);
}

static void write_row(writer *w, size_t i, const float *y)
{
    if (w->fmt == FORMAT_TEXT)
        text_row(w, i, y);
    else if (w->fmt == FORMAT_CSV)
        csv_row(w, i, y);
    else
        json_row(w, i, y);
    w->written++;
}

static void write_end(const writer *w)
{
    if (w->fmt == FORMAT_JSON)
        fprintf(w->f, w->written ? "\n]\n" : "[]\n");
}

/* ---- the network over the input ----------------------------------------- */

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

/* The head as predictions show it: logits of a cross_entropy classifier
 * are turned into probabilities. */
static kiln_head shown_head(const kiln_net *net, const kiln_model *m, int *logits)
{
    kiln_head head = kiln_net_head(net);
    const char *loss = kiln_model_train_setting(m, "loss");
    *logits = head == KILN_HEAD_NONE && kiln_net_output_size(net) > 1 &&
              (!loss || strcmp(loss, "cross_entropy") == 0);
    return *logits ? KILN_HEAD_SOFTMAX : head;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Whether dir holds IDX files (a dataset directory, not images). */
static int idx_dir(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte.gz", dir);
    if (access(path, F_OK) == 0)
        return 1;
    snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte", dir);
    return access(path, F_OK) == 0;
}

/* INPUT's features: an .npz's features array, a .npy file, or a CSV with
 * its label column left out (a CSV may carry one column more than the
 * model's inputs, the label, or exactly as many). */
static kiln_status load_input(const predict_args *a, const kiln_net *net, kiln_data **d)
{
    size_t inputs = kiln_net_input_size(net);
    struct stat info;
    if (ends_with(a->input, ".png") || ends_with(a->input, ".jpg") ||
        ends_with(a->input, ".jpeg") || ends_with(a->input, ".PNG") ||
        ends_with(a->input, ".JPG") || ends_with(a->input, ".JPEG") ||
        (stat(a->input, &info) == 0 && S_ISDIR(info.st_mode) && !idx_dir(a->input)))
        return kiln_net_load_images(net, a->input, d);
    if (ends_with(a->input, ".npz"))
        return kiln_data_load_npz(a->input, a->npz_keys, NULL, d);
    if (ends_with(a->input, ".npy"))
        return kiln_data_load(a->input, NULL, NULL, d);
    if (a->label)
        return kiln_data_load(a->input, "test", a->label, d);
    kiln_status st = kiln_data_load(a->input, "test", "none", d);
    if (st != KILN_OK || kiln_data_features(*d) != inputs + 1)
        return st;
    kiln_data_free(*d);
    *d = NULL;
    return kiln_data_load(a->input, "test", NULL, d);
}

static kiln_status check_input(const predict_args *a, const kiln_data *d, size_t inputs)
{
    if (kiln_data_features(d) == inputs)
        return KILN_OK;
    fprintf(stderr, "kiln predict: %s has %zu values per sample; the model takes %zu%s\n",
            a->input, kiln_data_features(d), inputs,
            a->label ? "" : " (a CSV may have one column more, its label)");
    return KILN_ERR_INVALID_ARGUMENT;
}

/* Every sample through the network, a batch at a time, into w; why gets
 * the reason of a failure that is not kiln's (it has no last error). */
static kiln_status run_batches(kiln_net *net, const kiln_data *d, size_t count, int logits,
                               writer *w, char *why, size_t why_size)
{
    size_t batch = kiln_net_max_batch(net), in = kiln_net_input_size(net);
    float *x = malloc(batch * in * sizeof *x), *y = malloc(batch * w->outputs * sizeof *y);
    kiln_status st = x && y ? KILN_OK : KILN_ERR_OUT_OF_MEMORY;
    if (st != KILN_OK)
        snprintf(why, why_size, "out of host memory for a batch of %zu", batch);
    for (size_t first = 0; st == KILN_OK && first < count; first += batch) {
        size_t n = count - first < batch ? count - first : batch;
        st = kiln_data_copy_features(d, first, n, x);
        if (st == KILN_OK)
            st = kiln_net_forward(net, x, n, y);
        for (size_t i = 0; st == KILN_OK && i < n; i++) {
            if (logits)
                softmax_row(y + i * w->outputs, w->outputs);
            write_row(w, first + i, y + i * w->outputs);
        }
        if (st == KILN_OK && ferror(w->f)) /* kiln, or for stdout main, says why */
            st = KILN_ERR_IO;
    }
    free(x);
    free(y);
    return st;
}

/* What run_batches needs to write the predictions. */
typedef struct {
    kiln_net *net;
    const kiln_data *d;
    size_t count;
    int logits;
    writer w;
    char why[256]; /* a failure of this command's own */
} job;

static kiln_status write_predictions(void *user, FILE *f)
{
    job *j = user;
    j->w.f = f;
    if (j->w.fmt == FORMAT_CSV)
        csv_header(&j->w);
    kiln_status st = run_batches(j->net, j->d, j->count, j->logits, &j->w, j->why,
                                 sizeof j->why);
    if (st == KILN_OK)
        write_end(&j->w);
    return st;
}

static int predict(kiln_ctx *ctx, kiln_model *m, const predict_args *a)
{
    kiln_data *d = NULL;
    kiln_net *net = NULL;
    kiln_status st = kiln_net_create(ctx, m, a->batch, &net);
    if (st == KILN_OK)
        st = kiln_net_load(net, a->checkpoint);
    if (st == KILN_OK)
        st = load_input(a, net, &d);
    if (st != KILN_OK) {
        kiln_net_free(net);
        kiln_data_free(d);
        return cli_fail("predict");
    }
    int ok = check_input(a, d, kiln_net_input_size(net)) == KILN_OK, logits = 0;
    size_t count = kiln_data_count(d) < a->count ? kiln_data_count(d) : a->count;
    job j = {net, d, count, 0, {shown_head(net, m, &logits), kiln_net_output_size(net), NULL,
                                a->fmt, 0, net, d}, ""};
    j.logits = logits;
    if (ok && a->out) /* written whole or not at all */
        st = kiln_write_file_atomic(a->out, write_predictions, &j);
    else if (ok)
        st = write_predictions(&j, stdout);
    kiln_net_free(net);
    kiln_data_free(d);
    if (st == KILN_ERR_IO && !a->out)
        return 1; /* standard output failed: main says why */
    if (st != KILN_OK && j.why[0])
        fprintf(stderr, "kiln predict: %s\n", j.why);
    else if (st != KILN_OK)
        return cli_fail("predict");
    return ok && st == KILN_OK ? 0 : 1;
}

/* ---- flags --------------------------------------------------------------- */

static int parse_format(const char *v, format *f)
{
    static const char *const names[] = {"text", "csv", "json"};
    for (int i = 0; i < 3; i++)
        if (strcmp(v, names[i]) == 0) {
            *f = (format)i;
            return 1;
        }
    fprintf(stderr, "kiln predict: --format %s: expected text, csv or json\n", v);
    return 0;
}

/* The format when --format is not given: from --out's extension, else text
 * for a terminal and csv for a pipe or file. */
static format default_format(const char *out)
{
    if (out)
        return ends_with(out, ".json") ? FORMAT_JSON : FORMAT_CSV;
    return isatty(STDOUT_FILENO) ? FORMAT_TEXT : FORMAT_CSV;
}

static int parse(int argc, char **argv, predict_args *a)
{
    int opt;
    double v;
    while ((opt = cli_next_flag(argc, argv, &cli_predict_cmd)) != CLI_DONE) {
        if (opt < 0)
            return opt == CLI_HELP ? -1 : 2;
        if (opt == 'f' && !parse_format(optarg, &a->fmt))
            return 2;
        a->fmt_given |= opt == 'f';
        if ((opt == 'c' && !cli_whole_arg("--count", optarg, 1, 1e15, &v)) ||
            (opt == 'b' && !cli_whole_arg("--batch", optarg, 1, 65536, &v)))
            return 2;
        if (opt == 'c')
            a->count = (size_t)v;
        else if (opt == 'b')
            a->batch = (size_t)v;
        else if (opt == 'o')
            a->out = optarg;
        else if (opt == 'L')
            a->label = optarg;
        else if (opt == 'K')
            a->npz_keys = optarg;
        else if (opt == 'd')
            a->device = optarg;
    }
    int given = argc - optind; /* the model may be left to the checkpoint */
    if (given != 3 && given != 2)
        return cli_usage_error(&cli_predict_cmd);
    a->model = argv[optind];
    a->checkpoint = argv[optind + given - 2];
    a->input = argv[optind + given - 1];
    if (!a->fmt_given)
        a->fmt = default_format(a->out);
    return 0;
}

int cli_predict(int argc, char **argv)
{
    predict_args a = {.count = (size_t)-1, .batch = 256};
    int rc = parse(argc, argv, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    kiln_ctx *ctx;
    kiln_model *m;
    /* the device line goes to stderr: stdout holds the predictions alone */
    if ((rc = cli_open(a.model, a.device, "predict", stderr, &ctx, &m)) != 0)
        return rc;
    rc = predict(ctx, m, &a);
    kiln_model_free(m);
    kiln_ctx_free(ctx);
    return rc;
}
