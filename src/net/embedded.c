/* The model a checkpoint carries: kiln_net_save and kiln train store the
 * model's text in the safetensors metadata ("model"), so that the file
 * alone gives back the model with its weights. */
#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/net.h"

#define MAX_HEADER (100u << 20) /* as safetensors' own reader */

/* The JSON header of a safetensors file, parsed; NULL with an error. */
static cJSON *read_header(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        error_set(KILN_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
        return NULL;
    }
    unsigned char size_le[8];
    uint64_t n = 0;
    int ok = fread(size_le, 1, 8, f) == 8;
    for (int i = 7; ok && i >= 0; i--)
        n = n << 8 | size_le[i];
    char *text = ok && n > 0 && n <= MAX_HEADER ? malloc((size_t)n) : NULL;
    ok = text && fread(text, 1, (size_t)n, f) == n;
    fclose(f);
    cJSON *root = ok ? cJSON_ParseWithLength(text, (size_t)n) : NULL;
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        error_set(KILN_ERR_IO, "%s: not a safetensors file (no JSON header)", path);
        return NULL;
    }
    return root;
}

kiln_status kiln_model_from_checkpoint(const char *path, kiln_model **out)
{
    if (!path || !out)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_model_from_checkpoint: %s is NULL",
                         path ? "out" : "the path");
    *out = NULL;
    cJSON *root = read_header(path);
    if (!root)
        return KILN_ERR_IO;
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(meta, "model");
    kiln_status st = KILN_OK;
    if (!cJSON_IsString(text))
        st = error_set(KILN_ERR_MODEL, "%s: the checkpoint carries no model (written by an "
                                       "older kiln, or by another program); give the model "
                                       "file too", path);
    char name[300];
    snprintf(name, sizeof name, "%s (its model)", path);
    if (st == KILN_OK)
        st = kiln_model_parse(text->valuestring, name, out);
    cJSON_Delete(root);
    return st;
}
