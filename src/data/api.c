/* Datasets behind kiln_data: host arrays, NumPy archives and the files
 * kiln_data_load reads. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/data.h"
#include "data/folder.h"

/* ---- datasets ------------------------------------------------------------------ */

kiln_status kiln_data_from_arrays(const float *x, const float *y, size_t n, size_t features,
                                  size_t targets, kiln_data **out)
{
    kiln_status required = require_args("kiln_data_from_arrays", ARG(x), ARG(out), NULL);
    if (required != KILN_OK)
        return required;
    if (n == 0 || features == 0 || (y && targets == 0))
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_data_from_arrays: n %zu, features "
                                                    "%zu, targets %zu; expected at least one "
                                                    "sample of at least one feature, and "
                                                    "targets per sample with y",
                         n, features, targets);
    *out = NULL;
    size_t i = first_nonfinite(x, n * features), t = y ? targets : 1;
    if (i < n * features)
        return error_set(KILN_ERR_NUMERIC, "kiln_data_from_arrays: feature %zu of sample "
                                           "%zu is %g", i % features, i / features,
                         (double)x[i]);
    i = y ? first_nonfinite(y, n * t) : n * t;
    if (i < n * t)
        return error_set(KILN_ERR_NUMERIC, "kiln_data_from_arrays: target %zu of sample "
                                           "%zu is %g", i % t, i / t, (double)y[i]);
    kiln_data *d = calloc(1, sizeof *d);
    float *dx = malloc(n * features * sizeof *dx), *dy = calloc(n * t, sizeof *dy);
    if (!d || !dx || !dy) {
        free(d), free(dx), free(dy);
        return error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_data_from_arrays: out of host memory "
                                                 "for %zu samples", n);
    }
    memcpy(dx, x, n * features * sizeof *dx);
    if (y)
        memcpy(dy, y, n * t * sizeof *dy);
    snprintf(d->d.name, sizeof d->d.name, "arrays of %zu samples", n);
    d->d.count = n;
    d->d.features = features;
    d->d.targets = t;
    d->d.unlabelled = !y;
    d->d.x = dx;
    d->d.y = dy;
    int classes = y && t == 1;
    float top = 0;
    for (size_t i = 0; classes && i < n; i++) {
        classes = dy[i] >= 0 && dy[i] == floorf(dy[i]) && dy[i] < 16777216.0f;
        top = dy[i] > top ? dy[i] : top;
    }
    d->d.classes = classes ? (size_t)top + 1 : 0;
    *out = d;
    return KILN_OK;
}

/* The split of an .npz: one the file lacks is an error here. */
static kiln_status npz_split(const char *path, const char *keys, const char *split, dataset *d)
{
    split = split ? split : "train";
    kiln_status st = data_load_npz(path, keys, split, d);
    if (st == KILN_OK && d->count == 0)
        st = error_set(KILN_ERR_IO, "%s: no %s split (the arrays x_test and y_test, or the "
                                    "third and fourth of the keys)", path, split);
    return st;
}

kiln_status kiln_data_load_npz(const char *path, const char *keys, const char *split,
                               kiln_data **out)
{
    kiln_status required = require_args("kiln_data_load_npz", ARG(path), ARG(out), NULL);
    if (required != KILN_OK)
        return required;
    *out = NULL;
    kiln_data *d = calloc(1, sizeof *d);
    if (!d)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_data_load_npz: out of host memory");
    kiln_status st = npz_split(path, keys, split, &d->d);
    if (st != KILN_OK) {
        data_free(&d->d);
        free(d);
        return st;
    }
    *out = d;
    return KILN_OK;
}

kiln_status kiln_data_load(const char *source, const char *split, const char *label,
                           kiln_data **out)
{
    kiln_status required = require_args("kiln_data_load", ARG(source), ARG(out), NULL);
    if (required != KILN_OK)
        return required;
    *out = NULL;
    kiln_data *d = calloc(1, sizeof *d);
    if (!d)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_data_load: out of host memory");
    kiln_status st;
    struct stat info;
    if (data_has_ext(source, ".csv"))
        st = data_load_csv(source, label ? label : "label", 1, &d->d);
    else if (data_has_ext(source, ".npy"))
        st = data_load_npy(source, label, &d->d);
    else if (data_has_ext(source, ".npz"))
        st = npz_split(source, NULL, split, &d->d);
    else if (data_is_folder(source))
        st = data_load_images(source, split, NULL, &d->d);
    else if (stat(source, &info) == 0 && S_ISREG(info.st_mode))
        st = data_load_idx_images(source, &d->d);
    else
        st = data_load_named(source, split ? split : "train", &d->d);
    if (st != KILN_OK) {
        data_free(&d->d);
        free(d);
        return st;
    }
    *out = d;
    return KILN_OK;
}

void kiln_data_free(kiln_data *d)
{
    if (!d)
        return;
    data_free(&d->d);
    free(d);
}

size_t kiln_data_count(const kiln_data *d)
{
    return d ? d->d.count : 0;
}

size_t kiln_data_features(const kiln_data *d)
{
    return d ? d->d.features : 0;
}

size_t kiln_data_targets(const kiln_data *d)
{
    return d ? d->d.targets : 0;
}

size_t kiln_data_classes(const kiln_data *d)
{
    return d ? d->d.classes : 0;
}

int kiln_data_labelled(const kiln_data *d)
{
    return d && !d->d.unlabelled;
}

static kiln_status copy_rows(const kiln_data *d, size_t first, size_t count, float *dst,
                             int targets, const char *call)
{
    kiln_status required = require_args(call, ARG(d), ARG(dst), NULL);
    if (required != KILN_OK)
        return required;
    if (first > d->d.count || count > d->d.count - first)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "%s: samples %zu to %zu of %zu", call,
                         first, first + count, d ? d->d.count : 0);
    size_t per = targets ? d->d.targets : d->d.features;
    memcpy(dst, (targets ? d->d.y : d->d.x) + first * per, count * per * sizeof *dst);
    return KILN_OK;
}

kiln_status kiln_data_copy_features(const kiln_data *d, size_t first, size_t count, float *dst)
{
    return copy_rows(d, first, count, dst, 0, "kiln_data_copy_features");
}

kiln_status kiln_data_copy_targets(const kiln_data *d, size_t first, size_t count, float *dst)
{
    return copy_rows(d, first, count, dst, 1, "kiln_data_copy_targets");
}


const char *kiln_data_file(const kiln_data *d, size_t i)
{
    return d && d->d.files && i < d->d.file_count ? d->d.files[i] : NULL;
}
