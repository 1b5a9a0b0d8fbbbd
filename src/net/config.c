/* The [train] section: one table of keys, each with how it is read. */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/config.h"

typedef struct {
    const kiln_model *m;
    const graph_setting *s;
    train_config *c;
} key_ctx;

static kiln_status bad(const key_ctx *k, const char *expected)
{
    const char *file = k->m->file[0] ? k->m->file : "model";
    if (k->s->line > 0)
        return error_set(KILN_ERR_MODEL, "%s:%d [train]: %s = %s: expected %s", file,
                         k->s->line, k->s->key, k->s->value, expected);
    return error_set(KILN_ERR_MODEL, "%s [train]: %s = %s: expected %s", file, k->s->key,
                     k->s->value, expected);
}

static int number(const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || *end || errno || !isfinite(x) || x < lo || x > hi)
        return 0;
    *out = x;
    return 1;
}

static int whole(const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi)
        return 0;
    *out = x;
    return 1;
}

/* Matches v against names; returns the index or -1. */
static int choice(const char *v, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(v, names[i]) == 0)
            return i;
    return -1;
}

/* The entry of a list that v names (name_of: the list's names), or -1
 * with "a, b or c" in buf. */
static int listed(const char *v, const char *(*name_of)(int), int n, char *buf, size_t size)
{
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (strcmp(v, name_of(i)) == 0)
            return i;
        size_t used = strlen(buf);
        snprintf(buf + used, size - used, "%s%s", i == 0 ? "" : i + 1 == n ? " or " : ", ",
                 name_of(i));
    }
    return -1;
}

static const char *loss_name_at(int i)
{
    return loss_name((loss_kind)i);
}

static kiln_status key_loss(const key_ctx *k)
{
    char names[256];
    int i = listed(k->s->value, loss_name_at, LOSS_COUNT, names, sizeof names);
    if (i < 0)
        return bad(k, names);
    k->c->loss = (loss_kind)i;
    return KILN_OK;
}

static const char *optim_name_at(int i)
{
    return optim_name((optim_kind)i);
}

static const char *sched_name_at(int i)
{
    return sched_name((sched_kind)i);
}

static kiln_status key_optimizer(const key_ctx *k)
{
    char names[256];
    int i = listed(k->s->value, optim_name_at, OPTIM_COUNT, names, sizeof names);
    if (i < 0)
        return bad(k, names);
    k->c->optim = optim_defaults((optim_kind)i); /* read first; other keys override */
    return KILN_OK;
}

static kiln_status key_schedule(const key_ctx *k)
{
    char names[256];
    int i = listed(k->s->value, sched_name_at, SCHED_COUNT, names, sizeof names);
    if (i < 0)
        return bad(k, names);
    k->c->sched.kind = (sched_kind)i;
    return KILN_OK;
}

static kiln_status key_normalize(const key_ctx *k)
{
    static const char *const names[] = {"standard", "scale", "none", "global"};
    int i = choice(k->s->value, names, 4);
    if (i < 0)
        return bad(k, "standard (mean 0, deviation 1 per feature, or per channel of images), "
                      "global (one mean and deviation), scale ([0, 1] for images) or none");
    k->c->normalize = (normalize_kind)i;
    return KILN_OK;
}

static kiln_status key_betas(const key_ctx *k)
{
    double b1, b2;
    char a[64], b[64];
    if (sscanf(k->s->value, "%63[^,],%63s", a, b) != 2 || !number(a, 0, 0.999999, &b1) ||
        !number(b, 0, 0.999999999, &b2))
        return bad(k, "two numbers from 0 to 1 (not included), such as 0.9, 0.999");
    k->c->optim.beta1 = (float)b1;
    k->c->optim.beta2 = (float)b2;
    return KILN_OK;
}

/* decay = matrices: weight decay on weights of two or more dimensions
 * only, as nanoGPT groups its parameters; all (the default): on every one. */
static kiln_status key_decay(const key_ctx *k)
{
    static const char *const names[] = {"all", "matrices"};
    int i = choice(k->s->value, names, 2);
    if (i < 0)
        return bad(k, "all or matrices");
    if (i == 1 && k->c->optim.kind == OPTIM_SGD)
        return bad(k, "all (sgd decays every parameter; matrices is for adam and adamw)");
    k->c->optim.decay_matrices = i;
    return KILN_OK;
}

static kiln_status key_milestones(const key_ctx *k)
{
    char copy[128];
    snprintf(copy, sizeof copy, "%s", k->s->value);
    sched_config *s = &k->c->sched;
    s->n_milestones = 0;
    long prev = -1, v;
    for (char *save = NULL, *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        if (s->n_milestones == SCHED_MAX_MILESTONES || !whole(t, prev + 1, 1000000, &v))
            return bad(k, "increasing epochs separated by commas (at most 16)");
        s->milestones[s->n_milestones++] = (int)v;
        prev = v;
    }
    return s->n_milestones ? KILN_OK : bad(k, "increasing epochs separated by commas");
}

/* The keys of image folders, read where they are defined (data/folder.c). */
static kiln_status key_image(const key_ctx *k)
{
    const char *expected = "";
    return image_config_key(&k->c->images, k->s->key, k->s->value, &expected) ? bad(k, expected)
                                                                              : KILN_OK;
}

static kiln_status key_class_weight(const key_ctx *k)
{
    train_config *c = k->c;
    c->n_class_weight = 0;
    if (strcmp(k->s->value, "none") == 0)
        return KILN_OK;
    char copy[128];
    snprintf(copy, sizeof copy, "%s", k->s->value);
    double v, total = 0;
    for (char *save = NULL, *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        if (c->n_class_weight == TRAIN_MAX_CLASS_WEIGHTS || !number(t, 0, 1e6, &v))
            return bad(k, "a weight from 0 per class, separated by commas (at most 64), or "
                          "none");
        c->class_weight[c->n_class_weight++] = (float)v;
        total += v;
    }
    return c->n_class_weight && total > 0 ? KILN_OK
                                          : bad(k, "a weight per class, not all 0, or none");
}

/* Keys that are one number into a field. */
typedef enum { F_FLOAT, F_DOUBLE, F_INT, F_SIZE, F_U64, F_BOOL } field_type;

typedef struct {
    const char *key;
    kiln_status (*read)(const key_ctx *k); /* or NULL: a number into a field */
    field_type type;
    size_t offset;
    double lo, hi;
    const char *expected;
} key_def;

#define FIELD(name, type, member, lo, hi, what)                                      \
    {name, NULL, type, offsetof(train_config, member), lo, hi, what}

static const key_def keys[] = {
    {"loss", key_loss, 0, 0, 0, 0, NULL},
    {"optimizer", key_optimizer, 0, 0, 0, 0, NULL},
    {"schedule", key_schedule, 0, 0, 0, 0, NULL},
    {"normalize", key_normalize, 0, 0, 0, 0, NULL},
    {"betas", key_betas, 0, 0, 0, 0, NULL},
    {"milestones", key_milestones, 0, 0, 0, 0, NULL},
    {"class_weight", key_class_weight, 0, 0, 0, 0, NULL},
    {"decay", key_decay, 0, 0, 0, 0, NULL},
    {"resize", key_image, 0, 0, 0, 0, NULL},
    {"random_crop", key_image, 0, 0, 0, 0, NULL},
    {"flip", key_image, 0, 0, 0, 0, NULL},
    {"random_resized_crop", key_image, 0, 0, 0, 0, NULL},
    {"color_jitter", key_image, 0, 0, 0, 0, NULL},
    {"workers", key_image, 0, 0, 0, 0, NULL},
    {"skip_bad", key_image, 0, 0, 0, 0, NULL},
    {"cache", key_image, 0, 0, 0, 0, NULL},
    FIELD("lr", F_FLOAT, optim.lr, 1e-12, 100, "a learning rate above 0, at most 100"),
    FIELD("momentum", F_FLOAT, optim.momentum, 0, 1, "a number from 0 to 1"),
    FIELD("dampening", F_FLOAT, optim.dampening, 0, 1, "a number from 0 to 1"),
    FIELD("nesterov", F_BOOL, optim.nesterov, 0, 1, "true or false"),
    FIELD("eps", F_FLOAT, optim.eps, 1e-30, 1, "a small number above 0"),
    FIELD("weight_decay", F_FLOAT, optim.weight_decay, 0, 10, "a number from 0 to 10"),
    FIELD("clip_norm", F_FLOAT, optim.clip_norm, 1e-12, 1e12, "a norm above 0"),
    FIELD("clip_value", F_FLOAT, optim.clip_value, 1e-12, 1e12, "a value above 0"),
    FIELD("label_smoothing", F_FLOAT, label_smoothing, 0, 1, "a number from 0 to 1"),
    FIELD("epochs", F_INT, epochs, 1, 100000, "a whole number of epochs from 1"),
    FIELD("batch", F_SIZE, batch, 1, 65536, "a batch size from 1 to 65536"),
    FIELD("patience", F_INT, patience, 0, 100000, "a whole number of epochs (0: off)"),
    FIELD("min_delta", F_DOUBLE, min_delta, 0, 1e12, "a number from 0"),
    FIELD("seed", F_U64, seed, 0, 1.8e19, "a whole number"),
    FIELD("val", F_DOUBLE, val, 0, 0.9, "a fraction from 0 to 0.9"),
    FIELD("step", F_INT, sched.step_size, 1, 1000000, "a whole number of epochs from 1"),
    FIELD("gamma", F_DOUBLE, sched.gamma, 1e-12, 1, "a factor above 0, at most 1"),
    FIELD("t_max", F_INT, sched.t_max, 1, 1000000, "a whole number of epochs (steps) from 1"),
    FIELD("eta_min", F_DOUBLE, sched.eta_min, 0, 100, "a learning rate from 0"),
    FIELD("warmup", F_INT, sched.warmup, 0, 1000000, "a whole number of epochs (of steps for "
                                                      "token models)"),
    FIELD("factor", F_DOUBLE, sched.factor, 1e-12, 0.999999, "a factor between 0 and 1"),
    FIELD("plateau_patience", F_INT, sched.patience, 0, 100000, "a whole number of epochs"),
    FIELD("min_lr", F_DOUBLE, sched.min_lr, 0, 100, "a learning rate from 0"),
    FIELD("sync_batchnorm", F_BOOL, sync_batchnorm, 0, 1, "true or false"),
    FIELD("steps", F_INT, steps, 1, 100000000, "a whole number of optimizer steps from 1"),
    FIELD("eval_every", F_INT, eval_every, 1, 100000000, "a whole number of steps from 1"),
    FIELD("eval_batches", F_INT, eval_batches, 1, 1000000, "a whole number of batches from 1"),
    FIELD("dist_timeout", F_DOUBLE, dist_timeout, 0.1, 1e7,
          "seconds a collective may wait for the other ranks, above 0"),
    FIELD("accumulate", F_INT, accumulate, 1, 1000000,
          "a whole number of micro-batches from 1 (the step's batch is batch times it)"),
    FIELD("shard", F_BOOL, shard, 0, 1, "true or false"),
};

static kiln_status read_field(const key_ctx *k, const key_def *d)
{
    char *at = (char *)k->c + d->offset;
    double x;
    if (d->type == F_BOOL) {
        int v = strcmp(k->s->value, "true") == 0 || strcmp(k->s->value, "1") == 0;
        if (!v && strcmp(k->s->value, "false") != 0 && strcmp(k->s->value, "0") != 0)
            return bad(k, d->expected);
        *(int *)at = v;
        return KILN_OK;
    }
    if (!number(k->s->value, d->lo, d->hi, &x))
        return bad(k, d->expected);
    if (d->type != F_FLOAT && d->type != F_DOUBLE && x != floor(x))
        return bad(k, d->expected);
    switch (d->type) {
    case F_FLOAT:
        *(float *)at = (float)x;
        break;
    case F_DOUBLE:
        *(double *)at = x;
        break;
    case F_INT:
        *(int *)at = (int)x;
        break;
    case F_SIZE:
        *(size_t *)at = (size_t)x;
        break;
    default:
        *(uint64_t *)at = (uint64_t)x;
        break;
    }
    return KILN_OK;
}

static kiln_status unknown_key(const key_ctx *k)
{
    char names[1024];
    size_t used = 0;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "",
                                 keys[i].key);
    const char *file = k->m->file[0] ? k->m->file : "model";
    if (k->s->line <= 0) /* set through the API: no line to name */
        return error_set(KILN_ERR_MODEL, "%s [train]: unknown key %s; [train] takes: %s", file,
                         k->s->key, names);
    return error_set(KILN_ERR_MODEL, "%s:%d [train]: unknown key %s; [train] takes: %s", file,
                     k->s->line, k->s->key, names);
}

static const key_def *find_key(const char *key)
{
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strcmp(keys[i].key, key) == 0)
            return &keys[i];
    return NULL;
}

/* Reads one pass of keys: first the optimizer (it sets its defaults), then
 * the rest, so the order in the file does not matter. */
static kiln_status read_pass(const kiln_model *m, train_config *c, int resetting)
{
    for (size_t i = 0; i < m->train_count; i++) {
        key_ctx k = {m, &m->train[i], c};
        const key_def *d = find_key(m->train[i].key);
        if (!d)
            return unknown_key(&k);
        if ((d->read == key_optimizer) != resetting)
            continue;
        kiln_status st = d->read ? d->read(&k) : read_field(&k, d);
        if (st != KILN_OK)
            return st;
    }
    return KILN_OK;
}

kiln_status train_config_read(const kiln_model *m, train_config *c)
{
    memset(c, 0, sizeof *c);
    c->loss = LOSS_CROSS_ENTROPY;
    c->optim = optim_defaults(OPTIM_ADAM);
    c->sched = (sched_config){.kind = SCHED_CONSTANT, .step_size = 10, .gamma = 0.1,
                              .factor = 0.1, .patience = 10, .threshold = 1e-4};
    c->epochs = 10;
    c->batch = 64;
    c->seed = 42;
    c->val = 0.1;
    c->steps = 1000;
    c->eval_every = 250; /* nanoGPT's shakespeare_char, with its CPU run's eval_iters */
    c->eval_batches = 20;
    image_config_defaults(&c->images);
    c->accumulate = 1;
    kiln_status st = read_pass(m, c, 1);
    if (st == KILN_OK)
        st = read_pass(m, c, 0);
    if (st == KILN_OK && c->n_class_weight && c->label_smoothing > 0)
        st = error_set(KILN_ERR_MODEL, "%s [train]: class_weight and label_smoothing together "
                                       "are not supported; use one of them",
                       m->file[0] ? m->file : "model");
    c->sched.base_lr = c->optim.lr; /* t_max 0: the number of epochs, once known */
    return st;
}

kiln_status kiln_model_check_train(const kiln_model *m)
{
    if (!m)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_model_check_train: no model");
    train_config c;
    return train_config_read(m, &c);
}

kiln_status kiln_model_set_train(kiln_model *m, const char *key, const char *value)
{
    if (!m || !key || !value)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_model_set_train: a model, a key and a "
                                                    "value are required");
    graph_setting s = {0};
    if (strlen(key) >= sizeof s.key || strlen(value) >= sizeof s.value)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_model_set_train: %s: key or value "
                                                    "too long", key);
    snprintf(s.key, sizeof s.key, "%s", key);
    snprintf(s.value, sizeof s.value, "%s", value);
    train_config c;
    key_ctx k = {m, &s, &c};
    const key_def *d = find_key(key);
    if (!d)
        return unknown_key(&k);
    kiln_status st = train_config_read(m, &c); /* the value is checked on what is there */
    if (st == KILN_OK)
        st = d->read ? d->read(&k) : read_field(&k, d);
    if (st != KILN_OK)
        return st;
    size_t i = 0;
    while (i < m->train_count && strcmp(m->train[i].key, key) != 0)
        i++;
    int added = i == m->train_count;
    graph_setting was = added ? s : m->train[i];
    if (added) {
        graph_setting *grown = realloc(m->train, (m->train_count + 1) * sizeof *grown);
        if (!grown)
            return error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_model_set_train: out of memory");
        m->train = grown;
        m->train_count++;
    }
    m->train[i] = s;
    st = train_config_read(m, &c); /* keys that exclude each other: the model stays whole */
    if (st != KILN_OK && added)
        m->train_count--;
    else if (st != KILN_OK)
        m->train[i] = was;
    return st;
}

/* One key's value as training reads it, into text. */
static void setting_text(const train_config *c, const key_def *d, char *text, size_t size)
{
    static const char *const normalizers[] = {"standard", "scale", "none", "global"};
    const char *at = (const char *)c + d->offset;
    if (d->read == key_loss)
        snprintf(text, size, "%s", loss_name(c->loss));
    else if (d->read == key_optimizer)
        snprintf(text, size, "%s", optim_name(c->optim.kind));
    else if (d->read == key_schedule)
        snprintf(text, size, "%s", sched_name(c->sched.kind));
    else if (d->read == key_normalize)
        snprintf(text, size, "%s", normalizers[c->normalize]);
    else if (d->read == key_decay)
        snprintf(text, size, "%s", c->optim.decay_matrices ? "matrices" : "all");
    else if (d->read == key_betas)
        snprintf(text, size, "%g, %g", (double)c->optim.beta1, (double)c->optim.beta2);
    else if (d->read == key_milestones) {
        size_t used = (size_t)snprintf(text, size, "%s", c->sched.n_milestones ? "" : "none");
        for (int i = 0; i < c->sched.n_milestones && used < size; i++)
            used += (size_t)snprintf(text + used, size - used, "%s%d", i ? ", " : "",
                                     c->sched.milestones[i]);
    } else if (d->read == key_class_weight) {
        size_t used = (size_t)snprintf(text, size, "%s", c->n_class_weight ? "" : "none");
        for (int i = 0; i < c->n_class_weight && used < size; i++)
            used += (size_t)snprintf(text + used, size - used, "%s%g", i ? ", " : "",
                                     (double)c->class_weight[i]);
    } else if (d->type == F_BOOL)
        snprintf(text, size, "%s", *(const int *)at ? "true" : "false");
    else if (d->type == F_FLOAT)
        snprintf(text, size, "%g", (double)*(const float *)at);
    else if (d->type == F_DOUBLE)
        snprintf(text, size, "%g", *(const double *)at);
    else if (d->type == F_INT)
        snprintf(text, size, "%d", *(const int *)at);
    else if (d->type == F_SIZE)
        snprintf(text, size, "%zu", *(const size_t *)at);
    else
        snprintf(text, size, "%llu", (unsigned long long)*(const uint64_t *)at);
}

kiln_status kiln_model_train_settings(const kiln_model *m, kiln_write_fn fn, void *user)
{
    if (!m || !fn)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_model_train_settings: a model and a "
                                                    "write function are required");
    train_config c;
    kiln_status st = train_config_read(m, &c);
    for (size_t i = 0; st == KILN_OK && i < sizeof keys / sizeof keys[0]; i++) {
        char line[256], value[160];
        setting_text(&c, &keys[i], value, sizeof value);
        snprintf(line, sizeof line, "%s = %s\n", keys[i].key, value);
        fn(user, line);
    }
    return st;
}
