/* Checkpoints as safetensors files: an 8-byte little-endian header length,
 * a JSON header (cJSON) padded with spaces to a multiple of 8, then the
 * tensors' bytes. Names follow PyTorch's state_dict for the same model
 * ("0.weight", "1.running_mean", or the layer's name =), so that
 * safetensors.torch.load_file + load_state_dict read them. Files are written
 * whole or not at all (write_file_atomic). Loading
 * checks every name, dtype, shape and offset and says which one is wrong. */
#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/checkpoint.h"

#define MAX_CHECKPOINT (4ull << 30)

typedef checkpoint_entry entry;

static void set_tensor(entry *e, kiln_tensor *t)
{
    e->tensor = t;
    e->shape = shape_of(t);
    e->bytes = t->numel * sizeof(float);
}

/* The state_dict of a pipeline, in layer order. */
static size_t list_entries(const pipeline *p, entry *out)
{
    size_t n = 0, *first = calloc(p->count + 1, sizeof *first); /* a step's first entry */
    for (size_t i = 0; i < p->count; i++) {
        const pipe_step *s = &p->steps[i];
        const char *layer = p->model->nodes[s->node].name;
        const op_desc *d = op_get(s->op);
        if (first)
            first[i] = n;
        for (int k = 0; k < s->shapes.n_params; k++) {
            snprintf(out[n].name, sizeof out[n].name, "%s.%s", layer, d->param_names[k]);
            set_tensor(&out[n], s->param[k]);
            if (k == 0 && s->tied_to >= 0 && first) { /* a weight with two names */
                out[n].tied = (int)first[s->tied_to] + 1;
                out[first[s->tied_to]].tied = (int)n + 1;
            }
            n++;
        }
        for (int k = 0; k < s->shapes.n_buffers; k++) {
            snprintf(out[n].name, sizeof out[n].name, "%s.%s", layer, d->buffer_names[k]);
            set_tensor(&out[n], s->buffer[k]);
            out[n].is_buffer = 1;
            n++;
        }
        if (d->counter) {
            snprintf(out[n].name, sizeof out[n].name, "%s.%s", layer, d->counter);
            out[n].tensor = NULL;
            out[n].is_int64 = 1;
            out[n].shape.ndim = 0;
            out[n].bytes = 8;
            n++;
        }
    }
    free(first);
    return n;
}

static entry *entries_of(const pipeline *p, size_t *n)
{
    entry *e = calloc(3 * p->count * (OP_MAX_PARAMS + OP_MAX_BUFFERS) + 1, sizeof *e);
    *n = e ? list_entries(p, e) : 0;
    return e;
}

checkpoint_entry *checkpoint_entries(const pipeline *p, size_t *n)
{
    return entries_of(p, n);
}

static cJSON *header_json(const entry *e, size_t n, const checkpoint_meta *meta)
{
    cJSON *root = cJSON_CreateObject();
    size_t offset = 0;
    for (size_t i = 0; root && i < n; i++) {
        cJSON *t = cJSON_AddObjectToObject(root, e[i].name);
        cJSON_AddStringToObject(t, "dtype", e[i].is_int64 ? "I64" : "F32");
        cJSON *shape = cJSON_AddArrayToObject(t, "shape");
        for (int d = 0; d < e[i].shape.ndim; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)e[i].shape.d[d]));
        cJSON *offsets = cJSON_AddArrayToObject(t, "data_offsets");
        cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)offset));
        cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)(offset + e[i].bytes)));
        offset += e[i].bytes;
    }
    cJSON *m = root ? cJSON_AddObjectToObject(root, "__metadata__") : NULL;
    for (size_t i = 0; m && i < meta->count; i++)
        cJSON_AddStringToObject(m, meta->keys[i], checkpoint_meta_get(meta, meta->keys[i]));
    return root;
}

/* A checkpoint's header and tensors, for write_file_atomic. */
typedef struct {
    const entry *e;
    size_t n;
    const char *json;
    int64_t batches;
} body;

static kiln_status write_body(int fd, const char *path, void *user)
{
    const body *b = user;
    const entry *e = b->e;
    size_t len = strlen(b->json), padded = (len + 7) / 8 * 8;
    unsigned char size_le[8];
    for (int i = 0; i < 8; i++)
        size_le[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    if (write_all(fd, size_le, 8) || write_all(fd, b->json, len) ||
        write_all(fd, "        ", padded - len))
        return fail_write(path, errno);
    kiln_status st = KILN_OK;
    for (size_t i = 0; i < b->n && st == KILN_OK; i++) {
        if (!e[i].tensor) {
            unsigned char v[8];
            for (int k = 0; k < 8; k++)
                v[k] = (unsigned char)((uint64_t)b->batches >> (8 * k));
            if (write_all(fd, v, 8))
                st = fail_write(path, errno);
            continue;
        }
        float *host = malloc(e[i].bytes);
        if (!host)
            return error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of host memory", path);
        st = kiln_tensor_download(e[i].tensor, host, e[i].tensor->numel);
        if (st == KILN_OK && write_all(fd, host, e[i].bytes)) /* little-endian hosts */
            st = fail_write(path, errno);
        free(host);
    }
    return st;
}

static kiln_status save_entries(const char *path, const entry *e, size_t n,
                                const checkpoint_meta *meta, int64_t batches)
{
    cJSON *root = header_json(e, n, meta);
    char *json = root ? cJSON_PrintUnformatted(root) : NULL;
    body b = {e, n, json, batches};
    kiln_status st = json ? write_output(path, write_body, &b)
                          : error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of host memory", path);
    free(json);
    cJSON_Delete(root);
    return st;
}

kiln_status checkpoint_save(const pipeline *p, const char *path, const checkpoint_meta *meta,
                            int64_t batches)
{
    size_t n;
    entry *e = entries_of(p, &n);
    kiln_status st = e ? save_entries(path, e, n, meta, batches)
                       : error_set(KILN_ERR_OUT_OF_MEMORY, "checkpoint: out of memory");
    free(e);
    return st;
}

/* The pipeline's entries under "model." names, then the named extras. */
static entry *state_entries(const pipeline *p, const char *const *names,
                            kiln_tensor *const *tensors, size_t extra, size_t *n)
{
    entry *e = entries_of(p, n);
    entry *all = e ? calloc(*n + extra + 1, sizeof *all) : NULL;
    for (size_t i = 0; all && i < *n; i++) {
        all[i] = e[i];
        snprintf(all[i].name, sizeof all[i].name, "model.%s", e[i].name);
    }
    for (size_t i = 0; all && i < extra; i++) {
        snprintf(all[*n + i].name, sizeof all[*n + i].name, "%s", names[i]);
        set_tensor(&all[*n + i], tensors[i]);
    }
    *n += extra;
    free(e);
    return all;
}

kiln_status checkpoint_save_state(const pipeline *p, const char *path, const char *const *names,
                                  kiln_tensor *const *tensors, size_t n,
                                  const checkpoint_meta *meta, int64_t batches)
{
    size_t count;
    entry *e = state_entries(p, names, tensors, n, &count);
    kiln_status st = e ? save_entries(path, e, count, meta, batches)
                       : error_set(KILN_ERR_OUT_OF_MEMORY, "checkpoint: out of memory");
    free(e);
    return st;
}

/* ---- loading ------------------------------------------------------------------- */

static unsigned char *read_whole(const char *path, size_t *size, kiln_status *st)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *st = error_set(KILN_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    unsigned char *data = NULL;
    if (fstat(fileno(f), &sb) != 0 || sb.st_size < 8 || (uint64_t)sb.st_size > MAX_CHECKPOINT)
        *st = error_set(KILN_ERR_IO, "%s: %lld bytes is not a safetensors file", path,
                        (long long)sb.st_size);
    else if (!(data = malloc((size_t)sb.st_size)))
        *st = error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    else if (fread(data, 1, (size_t)sb.st_size, f) != (size_t)sb.st_size) {
        *st = error_set(KILN_ERR_IO, "%s: read failed", path);
        free(data);
        data = NULL;
    }
    *size = (size_t)sb.st_size;
    fclose(f);
    return data;
}

/* Checks one header entry against what the model expects. */
static kiln_status check_entry(const char *path, const cJSON *t, const entry *want,
                               size_t data_size, size_t *begin)
{
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(t, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(t, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
    const char *want_dtype = want->is_int64 ? "I64" : "F32";
    if (!cJSON_IsString(dtype) || strcmp(dtype->valuestring, want_dtype) != 0)
        return error_set(KILN_ERR_IO, "%s: tensor %s has dtype %s; expected %s", path,
                         want->name, cJSON_IsString(dtype) ? dtype->valuestring : "(none)",
                         want_dtype);
    int ndim = cJSON_IsArray(shape) ? cJSON_GetArraySize(shape) : -1;
    int fits = ndim == want->shape.ndim;
    for (int d = 0; fits && d < ndim; d++) {
        const cJSON *v = cJSON_GetArrayItem(shape, d);
        fits = cJSON_IsNumber(v) && v->valuedouble == (double)want->shape.d[d];
    }
    if (!fits) {
        char got[256], expected[64];
        char *printed = shape ? cJSON_PrintUnformatted(shape) : NULL;
        snprintf(got, sizeof got, "%s", printed ? printed : "(none)");
        free(printed);
        if (want->shape.ndim)
            shape_str(&want->shape, expected, sizeof expected);
        else
            snprintf(expected, sizeof expected, "a scalar");
        return error_set(KILN_ERR_IO, "%s: tensor %s has shape %s; the model expects %s", path,
                         want->name, got, expected);
    }
    const cJSON *b = cJSON_IsArray(offs) ? cJSON_GetArrayItem(offs, 0) : NULL;
    const cJSON *e = cJSON_IsArray(offs) ? cJSON_GetArrayItem(offs, 1) : NULL;
    if (!cJSON_IsNumber(b) || !cJSON_IsNumber(e) || cJSON_GetArraySize(offs) != 2 ||
        b->valuedouble < 0 || e->valuedouble > (double)data_size ||
        e->valuedouble - b->valuedouble != (double)want->bytes)
        return error_set(KILN_ERR_IO, "%s: tensor %s has data_offsets outside the file or of "
                                      "the wrong length (%zu bytes expected)",
                         path, want->name, want->bytes);
    *begin = (size_t)b->valuedouble;
    return KILN_OK;
}

/* By start, then end: the empty span of a tied weight read under its
 * twin's name sorts before any span it starts with. */
static int by_begin(const void *a, const void *b)
{
    const size_t *x = a, *y = b;
    return x[0] != y[0] ? (x[0] < y[0] ? -1 : 1) : (x[1] < y[1] ? -1 : x[1] > y[1]);
}

/* Checks the header against the model and that no two tensors overlap;
 * names every missing, extra or mismatched tensor, not just the first. */
static kiln_status check_header(const char *path, const cJSON *root, const entry *e, size_t n,
                                size_t data_size, size_t (*spans)[2])
{
    char problems[2048] = "";
    size_t used = 0, count = 0;
#define PROBLEM(...)                                                                      \
    do {                                                                                  \
        if (used < sizeof problems)                                                       \
            used += (size_t)snprintf(problems + used, sizeof problems - used, "%s",       \
                                     count ? "; " : "");                                  \
        if (used < sizeof problems)                                                       \
            used += (size_t)snprintf(problems + used, sizeof problems - used, __VA_ARGS__); \
        count++;                                                                          \
    } while (0)
    kiln_status st = KILN_OK;
    for (size_t i = 0; i < n; i++) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, e[i].name);
        spans[i][0] = spans[i][1] = 0;
        if (!cJSON_IsObject(t) && e[i].tied &&
            cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root, e[e[i].tied - 1].name)))
            continue; /* the file holds its tied twin */
        if (!cJSON_IsObject(t)) {
            PROBLEM("tensor %s is missing", e[i].name);
        } else if ((st = check_entry(path, t, &e[i], data_size, &spans[i][0])) != KILN_OK) {
            const char *msg = kiln_last_error(), *skip = strstr(msg, ": ");
            PROBLEM("%s", skip && strncmp(msg, path, strlen(path)) == 0 ? skip + 2 : msg);
        }
        spans[i][1] = spans[i][0] + e[i].bytes;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, root)
    {
        if (strcmp(item->string, "__metadata__") == 0)
            continue;
        int known = 0;
        for (size_t i = 0; i < n && !known; i++)
            known = strcmp(e[i].name, item->string) == 0;
        if (!known)
            PROBLEM("tensor %s is not in the model", item->string);
    }
#undef PROBLEM
    if (count)
        return error_set(KILN_ERR_IO, "%s: %zu problem%s%s: %s", path, count,
                         count == 1 ? "" : "s",
                         count > 1 ? " (is it the checkpoint of another model?)" : "", problems);
    qsort(spans, n, sizeof *spans, by_begin);
    for (size_t i = 1; i < n && st == KILN_OK; i++)
        if (spans[i][0] < spans[i - 1][1])
            st = error_set(KILN_ERR_IO, "%s: tensors overlap in the data section", path);
    return st;
}

/* A name that appears twice in one object (the format disallows it;
 * cJSON keeps both). */
static const char *repeated_name(const cJSON *object)
{
    for (const cJSON *a = object ? object->child : NULL; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (a->string && b->string && strcmp(a->string, b->string) == 0)
                return a->string;
    return NULL;
}

/* The header's own shape, before its tensors are compared with the model:
 * no name twice, __metadata__ an object of strings, and a data section as
 * long as the offsets say (a truncated file is named as one). */
static kiln_status check_layout(const char *path, const cJSON *root, size_t data_size)
{
    const char *twice = repeated_name(root);
    if (twice)
        return error_set(KILN_ERR_IO, "%s: the header names %s twice", path, twice);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "__metadata__"), *item;
    if (m && !cJSON_IsObject(m))
        return error_set(KILN_ERR_IO, "%s: the header's __metadata__ is not an object of "
                                      "strings", path);
    if ((twice = repeated_name(m)) != NULL)
        return error_set(KILN_ERR_IO, "%s: the header's __metadata__ names %s twice", path,
                         twice);
    cJSON_ArrayForEach(item, m)
    {
        if (!cJSON_IsString(item))
            return error_set(KILN_ERR_IO, "%s: the header's __metadata__ value %s is not a "
                                          "string",
                             path, item->string);
    }
    double end = 0;
    cJSON_ArrayForEach(item, root)
    {
        const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
        const cJSON *e = cJSON_IsArray(offs) ? cJSON_GetArrayItem(offs, 1) : NULL;
        if (item != m && cJSON_IsNumber(e) && e->valuedouble > end)
            end = e->valuedouble;
    }
    if (end > (double)data_size)
        return error_set(KILN_ERR_IO, "%s: the file is cut short: its header describes %.0f "
                                      "bytes of tensors, it holds %zu (an interrupted copy?)",
                         path, end, data_size);
    return KILN_OK;
}

kiln_status checkpoint_parse(const char *path, const unsigned char *data, size_t size,
                             const checkpoint_entry *e, size_t n, size_t *begins,
                             checkpoint_meta *meta)
{
    if (meta)
        memset(meta, 0, sizeof *meta);
    if (size < 8)
        return error_set(KILN_ERR_IO, "%s: %zu bytes is not a safetensors file", path, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | data[i];
    cJSON *root = NULL;
    kiln_status st = KILN_OK;
    if (hlen > size - 8)
        st = error_set(KILN_ERR_IO, "%s: the header length %llu runs past the end of the file "
                                    "(%zu bytes)", path, (unsigned long long)hlen, size);
    else if (!(root = cJSON_ParseWithLength((const char *)data + 8, (size_t)hlen)) ||
             !cJSON_IsObject(root))
        st = error_set(KILN_ERR_IO, "%s: the header is not a JSON object", path);
    size_t(*spans)[2] = calloc(n + 1, sizeof *spans);
    if (st == KILN_OK && !spans)
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    if (st == KILN_OK)
        st = check_layout(path, root, size - 8 - (size_t)hlen);
    if (st == KILN_OK)
        st = check_header(path, root, e, n, size - 8 - (size_t)hlen, spans);
    for (size_t i = 0; i < n && st == KILN_OK; i++) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, e[i].name);
        if (!t) /* a tied weight the file holds under its twin's name */
            t = cJSON_GetObjectItemCaseSensitive(root, e[e[i].tied - 1].name);
        const cJSON *offs = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
        begins[i] = 8 + (size_t)hlen + (size_t)cJSON_GetArrayItem(offs, 0)->valuedouble;
    }
    const cJSON *m = root ? cJSON_GetObjectItemCaseSensitive(root, "__metadata__") : NULL;
    const cJSON *item;
    cJSON_ArrayForEach(item, m)
    {
        if (st == KILN_OK && meta && cJSON_IsString(item) && meta->count < CHECKPOINT_META_MAX &&
            strlen(item->string) < sizeof meta->keys[0]) {
            checkpoint_meta_set(meta, item->string, item->valuestring);
        }
    }
    free(spans);
    cJSON_Delete(root);
    return st;
}

static kiln_status load_entries(const char *path, entry *e, size_t n, checkpoint_meta *meta,
                                const checkpoint_check *check)
{
    size_t size = 0;
    kiln_status st = KILN_OK;
    unsigned char *data = read_whole(path, &size, &st);
    size_t *begins = data ? calloc(n + 1, sizeof *begins) : NULL;
    if (data && !begins)
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    if (begins)
        st = checkpoint_parse(path, data, size, e, n, begins, meta);
    if (st == KILN_OK && check) /* before any tensor is replaced */
        st = check->fn(check->user, path, meta);
    for (size_t i = 0; i < n && st == KILN_OK; i++) {
        if (!e[i].tensor)
            continue;
        float *host = malloc(e[i].bytes); /* the body need not be aligned for floats */
        if (!host) {
            st = error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
            break;
        }
        memcpy(host, data + begins[i], e[i].bytes);
        st = kiln_tensor_upload(e[i].tensor, host, e[i].tensor->numel);
        free(host);
    }
    free(begins);
    free(data);
    return st;
}

kiln_status checkpoint_load(pipeline *p, const char *path, checkpoint_meta *meta)
{
    return checkpoint_load_checked(p, path, meta, NULL);
}

kiln_status checkpoint_load_checked(pipeline *p, const char *path, checkpoint_meta *meta,
                                    const checkpoint_check *check)
{
    size_t n;
    pipeline_params_changed(p);
    entry *e = entries_of(p, &n);
    kiln_status st = e ? load_entries(path, e, n, meta, check)
                       : error_set(KILN_ERR_OUT_OF_MEMORY, "checkpoint: out of memory");
    free(e);
    return st;
}

kiln_status checkpoint_load_state(pipeline *p, const char *path, const char *const *names,
                                  kiln_tensor *const *tensors, size_t n, checkpoint_meta *meta)
{
    size_t count;
    pipeline_params_changed(p);
    entry *e = state_entries(p, names, tensors, n, &count);
    kiln_status st = e ? load_entries(path, e, count, meta, NULL)
                       : error_set(KILN_ERR_OUT_OF_MEMORY, "checkpoint: out of memory");
    free(e);
    return st;
}

/* Stores value in slot i: in place when short, on the heap when long. */
static void meta_store(checkpoint_meta *m, size_t i, const char *value)
{
    free(m->long_values[i]);
    m->long_values[i] = NULL;
    m->values[i][0] = '\0';
    if (strlen(value) < sizeof m->values[i])
        snprintf(m->values[i], sizeof m->values[i], "%s", value);
    else
        m->long_values[i] = strdup(value); /* NULL when out of memory: the value is "" */
}

void checkpoint_meta_set(checkpoint_meta *m, const char *key, const char *value)
{
    for (size_t i = 0; i < m->count; i++)
        if (strcmp(m->keys[i], key) == 0) {
            meta_store(m, i, value);
            return;
        }
    if (m->count == CHECKPOINT_META_MAX)
        return;
    snprintf(m->keys[m->count], sizeof m->keys[0], "%s", key);
    m->long_values[m->count] = NULL;
    meta_store(m, m->count, value);
    m->count++;
}

const char *checkpoint_meta_get(const checkpoint_meta *m, const char *key)
{
    for (size_t i = 0; i < m->count; i++)
        if (strcmp(m->keys[i], key) == 0)
            return m->long_values[i] ? m->long_values[i] : m->values[i];
    return NULL;
}

void checkpoint_meta_free(checkpoint_meta *m)
{
    for (size_t i = 0; m && i < CHECKPOINT_META_MAX; i++) {
        free(m->long_values[i]);
        m->long_values[i] = NULL;
    }
}

kiln_status checkpoint_read_meta(const char *path, checkpoint_meta *meta)
{
    memset(meta, 0, sizeof *meta);
    FILE *f = fopen(path, "rb");
    if (!f)
        return error_set(KILN_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    unsigned char len[8];
    uint64_t hlen = 0;
    kiln_status st = fread(len, 1, 8, f) == 8 ? KILN_OK
                                               : error_set(KILN_ERR_IO, "%s: not a safetensors "
                                                                        "file", path);
    for (int i = 7; i >= 0 && st == KILN_OK; i--)
        hlen = hlen << 8 | len[i];
    if (st == KILN_OK && hlen > 100u << 20)
        st = error_set(KILN_ERR_IO, "%s: a header of %llu bytes", path, (unsigned long long)hlen);
    char *text = st == KILN_OK ? malloc((size_t)hlen + 1) : NULL;
    if (st == KILN_OK && (!text || fread(text, 1, (size_t)hlen, f) != hlen))
        st = error_set(KILN_ERR_IO, "%s: the header is cut short", path);
    fclose(f);
    cJSON *root = st == KILN_OK ? cJSON_ParseWithLength(text, (size_t)hlen) : NULL;
    if (st == KILN_OK && !cJSON_IsObject(root))
        st = error_set(KILN_ERR_IO, "%s: the header is not a JSON object", path);
    const cJSON *m = root ? cJSON_GetObjectItemCaseSensitive(root, "__metadata__") : NULL, *item;
    cJSON_ArrayForEach(item, m)
    {
        if (cJSON_IsString(item) && strlen(item->string) < sizeof meta->keys[0])
            checkpoint_meta_set(meta, item->string, item->valuestring);
    }
    cJSON_Delete(root);
    free(text);
    return st;
}
