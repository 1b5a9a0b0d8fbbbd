/* A network's state by name: parameters and buffers as the state_dict
 * names them, the metadata kept beside them, and safetensors files. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "data/text.h"
#include "net/net.h"

/* ---- weights by name and files ------------------------------------------------ */

size_t kiln_net_param_count(const kiln_net *net)
{
    return net && net->magic == NET_MAGIC ? net->n_entries : 0;
}

kiln_status kiln_net_param_info(const kiln_net *net, size_t i, kiln_param_info *out)
{
    kiln_status st = net_check(net, "kiln_net_param_info");
    if (st == KILN_OK)
        st = require_args("kiln_net_param_info", ARG(out), NULL);
    if (st == KILN_OK && i >= net->n_entries)
        st = error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_net_param_info: index %zu of %zu "
                                                  "tensors", i, net->n_entries);
    if (st != KILN_OK)
        return st;
    const checkpoint_entry *e = &net->entries[i];
    memset(out, 0, sizeof *out);
    out->name = e->name;
    out->ndim = e->shape.ndim;
    for (int d = 0; d < e->shape.ndim; d++)
        out->shape[d] = e->shape.d[d];
    out->numel = e->is_int64 ? 1 : shape_numel(&e->shape);
    out->is_int64 = e->is_int64;
    out->trainable = !e->is_int64 && !e->is_buffer;
    return KILN_OK;
}

static kiln_status find_entry(kiln_net *net, const char *call, const char *name, size_t count,
                              checkpoint_entry **out)
{
    kiln_status st = net_check(net, call);
    if (st != KILN_OK)
        return st;
    for (size_t i = 0; name && i < net->n_entries; i++) {
        checkpoint_entry *e = &net->entries[i];
        if (strcmp(e->name, name) != 0)
            continue;
        size_t numel = e->is_int64 ? 1 : shape_numel(&e->shape);
        if (count != numel)
            return error_set(KILN_ERR_SHAPE, "%s: %s has %zu values; %zu given", call, name,
                             numel, count);
        *out = e;
        return KILN_OK;
    }
    char names[1024] = "";
    size_t used = 0;
    for (size_t i = 0; i < net->n_entries && used < sizeof names; i++)
        used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "",
                                 net->entries[i].name);
    return error_set(KILN_ERR_INVALID_ARGUMENT, "%s: the network has no tensor %s; it has %s",
                     call, name ? name : "(NULL)", names);
}

kiln_status kiln_net_get(kiln_net *net, const char *name, float *dst, size_t count)
{
    checkpoint_entry *e;
    kiln_status st = find_entry(net, "kiln_net_get", name, count, &e);
    if (st == KILN_OK)
        st = require_args("kiln_net_get", ARG(dst), NULL);
    if (st != KILN_OK)
        return st;
    if (e->is_int64) {
        dst[0] = (float)optim_steps(net->opt);
        return KILN_OK;
    }
    return kiln_tensor_download(e->tensor, dst, count);
}

kiln_status kiln_net_set(kiln_net *net, const char *name, const float *src, size_t count)
{
    checkpoint_entry *e;
    kiln_status st = find_entry(net, "kiln_net_set", name, count, &e);
    if (st == KILN_OK)
        st = require_args("kiln_net_set", ARG(src), NULL);
    size_t i = st == KILN_OK ? first_nonfinite(src, count) : count;
    if (i < count)
        st = error_set(KILN_ERR_NUMERIC, "kiln_net_set: %s[%zu] is %g", name, i,
                       (double)src[i]);
    if (st != KILN_OK || e->is_int64) /* num_batches_tracked follows the step count */
        return st;
    pipeline_params_changed(net->main.p);
    return kiln_tensor_upload(e->tensor, src, count);
}

void meta_number(checkpoint_meta *m, const char *key, double v)
{
    char text[64];
    snprintf(text, sizeof text, "%.17g", v);
    checkpoint_meta_set(m, key, text);
}

/* A list of floats as a JSON array "[a, b, c]" (%.9g: float32 exactly);
 * NULL when out of memory. */
static char *float_list(const float *v, size_t n)
{
    char *text = malloc(n * 18 + 3), *at = text;
    if (text)
        at += sprintf(at, "[");
    for (size_t i = 0; text && i < n; i++)
        at += sprintf(at, "%s%.9g", i ? ", " : "", (double)v[i]);
    if (text)
        sprintf(at, "]");
    return text;
}

/* Parses a JSON array of numbers "[a, b]", or "a,b,c" as older
 * checkpoints wrote it, into at most cap floats; the count, or 0 if
 * malformed. */
static size_t parse_floats(const char *text, float *out, size_t cap)
{
    size_t n = 0;
    while (*text == ' ')
        text++;
    int bracketed = *text == '[';
    const char *p = text + bracketed;
    for (;;) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || n == cap)
            return 0;
        out[n++] = (float)v;
        while (*end == ' ')
            end++;
        if (*end == ',') {
            p = end + 1;
            continue;
        }
        if (bracketed && *end == ']')
            end++;
        else if (bracketed)
            return 0;
        while (*end == ' ')
            end++;
        return *end ? 0 : n;
    }
}

static void write_text(void *user, const char *text)
{
    char **buf = user;
    if (!*buf)
        return;
    size_t have = strlen(*buf), add = strlen(text);
    char *grown = realloc(*buf, have + add + 1);
    if (!grown) {
        free(*buf);
        *buf = NULL;
        return;
    }
    memcpy(grown + have, text, add + 1);
    *buf = grown;
}

void net_meta(const kiln_net *net, checkpoint_meta *meta)
{
    char *mean = float_list(net->mean, net->norm_count), *std = float_list(net->std,
                                                                        net->norm_count);
    checkpoint_meta_set(meta, "normalize_mean", mean ? mean : "0");
    checkpoint_meta_set(meta, "normalize_std", std ? std : "1");
    free(mean);
    free(std);
    if (net->vocab)
        checkpoint_meta_set(meta, "vocab", net->vocab);
    if (net->classes)
        checkpoint_meta_set(meta, "classes", net->classes);
    checkpoint_meta_set(meta, "format", "pt");
    checkpoint_meta_set(meta, "kiln", KILN_VERSION);
    char *model = calloc(1, 1); /* the model itself: the file alone gives it back */
    kiln_model_text(net->m, write_text, &model);
    if (model)
        checkpoint_meta_set(meta, "model", model);
    free(model);
}

/* A checkpoint's stored normalization, read and checked before any of its
 * tensors is loaded. */
typedef struct {
    kiln_net *net;
    float *mean, *std;
    size_t count;        /* 0: the file stores none */
    const char *classes; /* image folders' class names (a JSON array), or NULL */
} stored_norm;

/* Whether text is a JSON array of strings. */
static int names_array(const char *text)
{
    cJSON *a = cJSON_Parse(text);
    int ok = cJSON_IsArray(a);
    for (const cJSON *e = ok ? a->child : NULL; e; e = e->next)
        ok = ok && cJSON_IsString(e);
    cJSON_Delete(a);
    return ok;
}

static kiln_status read_norm(void *user, const char *path, const checkpoint_meta *meta)
{
    stored_norm *n = user;
    n->classes = checkpoint_meta_get(meta, "classes");
    if (n->classes && !names_array(n->classes))
        return error_set(KILN_ERR_IO, "%s: the stored classes are not a JSON array of names",
                         path);
    const char *mean = checkpoint_meta_get(meta, "normalize_mean");
    const char *std = checkpoint_meta_get(meta, "normalize_std");
    if (!mean && !std)
        return KILN_OK;
    size_t in = kiln_net_input_size(n->net);
    n->mean = malloc(in * sizeof *n->mean);
    n->std = malloc(in * sizeof *n->std);
    if (!n->mean || !n->std)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of host memory", path);
    size_t nm = mean ? parse_floats(mean, n->mean, in) : 0;
    size_t ns = std ? parse_floats(std, n->std, in) : 0;
    if (nm == 0 || nm != ns)
        return error_set(KILN_ERR_IO, "%s: the stored normalize_mean and normalize_std are not "
                                      "two lists of the same length of numbers", path);
    if (net_check_normalization(n->net, n->mean, n->std, nm, "normalization") != KILN_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", kiln_last_error());
        return error_set(KILN_ERR_IO, "%s: the stored %s", path, why);
    }
    n->count = nm;
    return KILN_OK;
}

/* One scalar pair (older checkpoints), or vectors. */
static kiln_status apply_norm(stored_norm *n, kiln_status st)
{
    if (st == KILN_OK && n->count)
        st = kiln_net_set_normalization(n->net, n->mean, n->std, n->count);
    if (st == KILN_OK)
        st = net_set_classes(n->net, n->classes);
    free(n->mean);
    free(n->std);
    return st;
}

kiln_status kiln_net_save(kiln_net *net, const char *path)
{
    kiln_status st = net_check(net, "kiln_net_save");
    if (st == KILN_OK && !path)
        st = error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_net_save: the path is NULL");
    if (st != KILN_OK)
        return st;
    checkpoint_meta meta = {0};
    meta_number(&meta, "step", (double)optim_steps(net->opt));
    net_meta(net, &meta);
    st = checkpoint_save(net->main.p, path, &meta, (int64_t)optim_steps(net->opt));
    checkpoint_meta_free(&meta);
    return st;
}

kiln_status kiln_net_load(kiln_net *net, const char *path)
{
    kiln_status st = net_check(net, "kiln_net_load");
    if (st == KILN_OK && !path)
        st = error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_net_load: the path is NULL");
    checkpoint_meta meta = {0};
    if (st == KILN_OK && net->vocab) /* another vocabulary: refused before any load */
        st = checkpoint_read_meta(path, &meta);
    if (st == KILN_OK && net->vocab)
        st = net_check_vocab(net, &meta, path, "this network");
    checkpoint_meta_free(&meta);
    stored_norm n = {net, NULL, NULL, 0, NULL};
    checkpoint_check check = {read_norm, &n};
    if (st == KILN_OK) /* all or nothing: the metadata is checked before any tensor loads */
        st = checkpoint_load_checked(net->main.p, path, &meta, &check);
    st = apply_norm(&n, st);
    const char *vocab = st == KILN_OK ? checkpoint_meta_get(&meta, "vocab") : NULL;
    if (st == KILN_OK && vocab && !net->vocab) /* a network without one takes the file's */
        st = kiln_net_set_vocab(net, vocab);
    checkpoint_meta_free(&meta);
    return st;
}


void net_write_layout(const kiln_net *net, FILE *f)
{
    fprintf(f, "tensors = %zu\n", net->n_entries);
    for (size_t i = 0; i < net->n_entries; i++) {
        char shape[64];
        fprintf(f, "tensor %s = %s\n", net->entries[i].name,
                shape_str(&net->entries[i].shape, shape, sizeof shape));
    }
}

kiln_status net_agree_on_layout(kiln_net *net, kiln_status mine)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f) {
        net_write_layout(net, f);
        fclose(f);
    }
    if (!text && mine == KILN_OK)
        mine = error_set(KILN_ERR_OUT_OF_MEMORY, "out of host memory");
    kiln_status st = dist_agree(net->comm, "the ranks' models differ (checked against rank 0)",
                                text, mine);
    free(text);
    return st;
}

/* ---- the vocabulary of a text ---------------------------------------------------- */

const char *kiln_net_vocab(const kiln_net *net)
{
    return net && net->magic == NET_MAGIC ? net->vocab : NULL;
}

kiln_status kiln_net_set_vocab(kiln_net *net, const char *vocab)
{
    kiln_status st = net_check(net, "kiln_net_set_vocab");
    uint32_t *chars = NULL;
    size_t n = 0, v = kiln_model_vocab(net ? net->m : NULL);
    if (st == KILN_OK && vocab)
        st = vocab_chars(vocab, "kiln_net_set_vocab", &chars, &n);
    free(chars);
    if (st == KILN_OK && vocab && n > v)
        st = error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_net_set_vocab: %zu characters, more "
                                                  "than the model's vocabulary of %zu ([input] "
                                                  "tokens)", n, v);
    char *copy = st == KILN_OK && vocab ? strdup(vocab) : NULL;
    if (st == KILN_OK && vocab && !copy)
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_net_set_vocab: out of memory");
    if (st != KILN_OK)
        return st;
    free(net->vocab);
    net->vocab = copy;
    return KILN_OK;
}

/* The first characters of a vocabulary, for messages. */
static const char *vocab_head(const char *v, char *buf, size_t size)
{
    size_t n = strlen(v), cut = n < size - 4 ? n : size - 4;
    while (cut > 0 && cut < n && ((unsigned char)v[cut] & 0xC0) == 0x80)
        cut--; /* not inside a character */
    snprintf(buf, size, "%.*s%s", (int)cut, v, cut < n ? "..." : "");
    for (char *p = buf; *p; p++)
        if (*p == '\n')
            *p = ' ';
    return buf;
}

kiln_status net_check_vocab(const kiln_net *net, const checkpoint_meta *meta, const char *path,
                            const char *what)
{
    const char *theirs = checkpoint_meta_get(meta, "vocab");
    if (!net->vocab || !theirs || strcmp(theirs, net->vocab) == 0)
        return KILN_OK;
    uint32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    char ha[80], hb[80];
    vocab_chars(theirs, path, &a, &na);
    vocab_chars(net->vocab, what, &b, &nb);
    free(a);
    free(b);
    return error_set(KILN_ERR_INVALID_ARGUMENT, "%s: another vocabulary: %zu characters "
                                                "(\"%s\") where %s has %zu (\"%s\"); "
                                                "token ids would mean other characters", path,
                     na,
                     vocab_head(theirs, ha, sizeof ha), what, nb,
                     vocab_head(net->vocab, hb, sizeof hb));
}
