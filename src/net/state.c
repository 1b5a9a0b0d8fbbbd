/* A network's state by name: parameters and buffers as the state_dict
 * names them, the metadata kept beside them, and safetensors files. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "net/net.h"

/* ---- weights by name and files ------------------------------------------------ */

size_t kiln_net_param_count(const kiln_net *net)
{
    return net && net->magic == NET_MAGIC ? net->n_entries : 0;
}

kiln_status kiln_net_param_info(const kiln_net *net, size_t i, kiln_param_info *out)
{
    kiln_status st = net_check(net, "kiln_net_param_info");
    if (st == KILN_OK && (!out || i >= net->n_entries))
        st = kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_net_param_info: index %zu of %zu "
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
    out->trainable = !e->is_int64 && !strstr(e->name, ".running_");
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
            return kiln_fail(KILN_ERR_SHAPE, "%s: %s has %zu values; %zu given", call, name,
                             numel, count);
        *out = e;
        return KILN_OK;
    }
    char names[1024] = "";
    size_t used = 0;
    for (size_t i = 0; i < net->n_entries && used < sizeof names; i++)
        used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "",
                                 net->entries[i].name);
    return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "%s: the network has no tensor %s; it has %s",
                     call, name ? name : "(NULL)", names);
}

kiln_status kiln_net_get(kiln_net *net, const char *name, float *dst, size_t count)
{
    checkpoint_entry *e;
    kiln_status st = find_entry(net, "kiln_net_get", name, count, &e);
    if (st == KILN_OK && !dst)
        st = kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_net_get: the array is NULL");
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
    if (st == KILN_OK && !src)
        st = kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_net_set: the array is NULL");
    for (size_t i = 0; st == KILN_OK && i < count; i++)
        if (!isfinite(src[i]))
            st = kiln_fail(KILN_ERR_NUMERIC, "kiln_net_set: %s[%zu] is %g", name, i,
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

/* A list of floats as "a,b,c" (%.9g: float32 exactly); NULL when out of
 * memory. */
static char *float_list(const float *v, size_t n)
{
    char *text = malloc(n * 18 + 1), *at = text;
    for (size_t i = 0; text && i < n; i++)
        at += sprintf(at, "%s%.9g", i ? "," : "", (double)v[i]);
    return text;
}

/* Parses "a,b,c" into at most cap floats; the count, or 0 if malformed. */
static size_t parse_floats(const char *text, float *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = text; *p;) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || n == cap || (*end && *end != ','))
            return 0;
        out[n++] = (float)v;
        p = *end ? end + 1 : end;
    }
    return n;
}

void net_meta(const kiln_net *net, checkpoint_meta *meta)
{
    char *mean = float_list(net->mean, net->norm_count), *std = float_list(net->std,
                                                                        net->norm_count);
    checkpoint_meta_set(meta, "normalize_mean", mean ? mean : "0");
    checkpoint_meta_set(meta, "normalize_std", std ? std : "1");
    free(mean);
    free(std);
    checkpoint_meta_set(meta, "format", "pt");
    checkpoint_meta_set(meta, "kiln", KILN_VERSION);
}

kiln_status net_apply_meta(kiln_net *net, const checkpoint_meta *meta)
{
    const char *mean = checkpoint_meta_get(meta, "normalize_mean");
    const char *std = checkpoint_meta_get(meta, "normalize_std");
    if (!mean || !std)
        return KILN_OK;
    size_t in = kiln_net_input_size(net);
    float *m = malloc(in * sizeof *m), *s = malloc(in * sizeof *s);
    kiln_status st = m && s ? KILN_OK
                            : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "loading a checkpoint: out of "
                                                                "memory");
    size_t nm = st == KILN_OK ? parse_floats(mean, m, in) : 0;
    size_t ns = st == KILN_OK ? parse_floats(std, s, in) : 0;
    if (st == KILN_OK && (nm == 0 || nm != ns))
        st = kiln_fail(KILN_ERR_IO, "the checkpoint's normalize_mean and normalize_std are not "
                                    "two lists of the same length of numbers");
    if (st == KILN_OK) /* one scalar pair (older checkpoints), or vectors */
        st = kiln_net_set_normalization(net, m, s, nm);
    free(m);
    free(s);
    return st;
}

kiln_status kiln_net_save(kiln_net *net, const char *path)
{
    kiln_status st = net_check(net, "kiln_net_save");
    if (st == KILN_OK && !path)
        st = kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_net_save: the path is NULL");
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
        st = kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_net_load: the path is NULL");
    checkpoint_meta meta = {0};
    if (st == KILN_OK)
        st = checkpoint_load(net->main.p, path, &meta);
    if (st == KILN_OK)
        st = net_apply_meta(net, &meta);
    checkpoint_meta_free(&meta);
    return st;
}

