/* A network's side of image folders: the sample shape and [train] settings
 * they are read with, and the class names a checkpoint keeps. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "net/net.h"

void net_free_classes(kiln_net *net)
{
    for (size_t i = 0; i < net->class_count; i++)
        free(net->class_names[i]);
    free(net->class_names);
    free(net->classes);
    net->class_names = NULL;
    net->classes = NULL;
    net->class_count = 0;
}

kiln_status net_set_classes(kiln_net *net, const char *json)
{
    if (!json)
        return KILN_OK; /* data without names leaves the network's */
    cJSON *a = cJSON_Parse(json);
    size_t n = cJSON_IsArray(a) ? (size_t)cJSON_GetArraySize(a) : 0;
    char **names = calloc(n ? n : 1, sizeof *names), *copy = strdup(json);
    kiln_status st = cJSON_IsArray(a) ? KILN_OK
                                      : error_set(KILN_ERR_IO, "the checkpoint's classes are not "
                                                               "a JSON array of names");
    if (st == KILN_OK && (!names || !copy))
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "class names: out of memory");
    for (size_t i = 0; st == KILN_OK && i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(a, (int)i);
        if (!cJSON_IsString(e))
            st = error_set(KILN_ERR_IO, "the checkpoint's class %zu is not a name", i);
        else if (!(names[i] = strdup(e->valuestring)))
            st = error_set(KILN_ERR_OUT_OF_MEMORY, "class names: out of memory");
    }
    cJSON_Delete(a);
    if (st != KILN_OK) {
        for (size_t i = 0; names && i < n; i++)
            free(names[i]);
        free(names);
        free(copy);
        return st;
    }
    net_free_classes(net);
    net->classes = copy;
    net->class_names = names;
    net->class_count = n;
    return KILN_OK;
}

const char *kiln_net_class_name(const kiln_net *net, size_t i)
{
    if (!net || net->magic != NET_MAGIC || i >= net->class_count)
        return NULL;
    return net->class_names[i];
}

/* The sample shape of net's input (C x H x W, 1 or 3 channels). */
static kiln_status image_spec(const kiln_net *net, const train_config *c, const char *path,
                              folder_spec *s)
{
    const kiln_shape *in = &net->m->input;
    char shape[64];
    if (in->ndim != 3 || (in->d[0] != 1 && in->d[0] != 3) || in->d[1] > 65536 ||
        in->d[2] > 65536)
        return error_set(KILN_ERR_SHAPE, "%s: images need a model input of shape CxHxW with 1 "
                                         "(gray) or 3 (RGB) channels; the model's is %s",
                         path, shape_str(in, shape, sizeof shape));
    *s = (folder_spec){.channels = (int)in->d[0], .height = (int)in->d[1],
                       .width = (int)in->d[2], .cfg = c->images, .seed = c->seed};
    return KILN_OK;
}

kiln_status net_load_folder(const kiln_net *net, const train_config *c, const char *path,
                            const char *split, const char *run_dir, dataset *out)
{
    folder_spec s;
    char cache[4096];
    memset(out, 0, sizeof *out);
    kiln_status st = image_spec(net, c, path, &s);
    if (c->images.cache && run_dir) { /* beside the run's checkpoints */
        snprintf(cache, sizeof cache, "%s/images-%s.cache", run_dir, split ? split : "train");
        s.cache = cache;
    }
    return st == KILN_OK ? data_load_folder(path, split, &s, 0, out) : st;
}

kiln_status net_load_images(const kiln_net *net, const char *path, const char *split,
                            dataset *out)
{
    folder_spec s;
    memset(out, 0, sizeof *out);
    kiln_status st = image_spec(net, &net->c, path, &s);
    s.cfg.t.crop_size = 0; /* augmentation is for training */
    return st == KILN_OK ? data_load_images(path, split, &s, out) : st;
}

kiln_status kiln_net_load_images(const kiln_net *net, const char *path, kiln_data **out)
{
    kiln_status st = net_check(net, "kiln_net_load_images");
    if (st == KILN_OK && (!path || !out))
        st = error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_net_load_images: a path and an output "
                                                  "pointer are required");
    if (st != KILN_OK)
        return st;
    *out = NULL;
    kiln_data *d = calloc(1, sizeof *d);
    if (!d)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_net_load_images: out of host memory");
    st = net_load_images(net, path, "test", &d->d);
    if (st != KILN_OK) {
        data_free(&d->d);
        free(d);
        return st;
    }
    *out = d;
    return KILN_OK;
}
