/* NumPy .npy files and .npz archives of them (see data.h): the header
 * checked key by key, then little-endian float32, float64, uint8, int32 or
 * int64 values in C order converted to floats. The zip container of .npz
 * is libzip's to read. Every malformed input is an error naming the file
 * (for an archive, file:member) and what was expected. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zip.h>

#include "data/data.h"

#define NPY_MAX_RANK 8
#define NPY_MAX_BYTES (8ull << 30) /* per array, as for CSV files */
#define NPY_NAME 128               /* an .npz member's name, and a file:member label */

typedef struct {
    char kind;    /* 'f' float, 'u' unsigned, 'i' signed */
    size_t size;  /* bytes per value */
    int rank;
    size_t dims[NPY_MAX_RANK];
    size_t count; /* product of dims */
    char descr[16];
    const unsigned char *data;
} npy_array;

int data_has_ext(const char *path, const char *ext)
{
    size_t n = strlen(path), e = strlen(ext);
    return n > e && strcmp(path + n - e, ext) == 0;
}

/* ---- the header ------------------------------------------------------------- */

static const char *skip_space(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/* A quoted string of at most cap - 1 characters; NULL when there is none. */
static const char *parse_string(const char *p, char *out, size_t cap)
{
    char quote = *p;
    size_t n = 0;
    if (quote != '\'' && quote != '"')
        return NULL;
    for (p++; *p && *p != quote; p++) {
        if (n + 1 >= cap)
            return NULL;
        out[n++] = *p;
    }
    out[n] = '\0';
    return *p == quote ? p + 1 : NULL;
}

static const char *parse_bool(const char *p, int *out)
{
    if (strncmp(p, "True", 4) == 0 || strncmp(p, "False", 5) == 0) {
        *out = *p == 'T';
        return p + (*out ? 4 : 5);
    }
    return NULL;
}

/* A tuple of whole numbers: (), (3,), (3, 4) (and Python 2's 3L). */
static const char *parse_shape(const char *p, npy_array *a)
{
    if (*p != '(')
        return NULL;
    p = skip_space(p + 1);
    a->rank = 0;
    while (*p != ')') {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        if (*p < '0' || *p > '9' || errno || v > SIZE_MAX || a->rank == NPY_MAX_RANK)
            return NULL;
        a->dims[a->rank++] = (size_t)v;
        p = skip_space(*end == 'L' ? end + 1 : end);
        if (*p == ',')
            p = skip_space(p + 1);
        else if (*p != ')')
            return NULL;
    }
    return p + 1;
}

static kiln_status header_error(const char *name, const char *what, const char *at)
{
    return error_set(KILN_ERR_IO, "%s: the .npy header %s (at \"%.24s\"); expected a dict such "
                                  "as {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}",
                     name, what, at);
}

/* The header's dict: the keys descr, fortran_order and shape, each once. */
static kiln_status parse_header(const char *text, const char *name, char *descr, size_t cap,
                                int *fortran, npy_array *a)
{
    static const char *const keys[] = {"descr", "fortran_order", "shape"};
    static const char *const bad[] = {("has a descr that is not a type string such as '<f4' "
                                       "(structured dtypes are not supported)"),
                                      "has a fortran_order that is not True or False",
                                      "has a shape that is not a tuple of whole numbers"};
    const char *p = skip_space(text);
    int seen = 0;
    if (*p != '{')
        return header_error(name, "does not start with '{'", p);
    for (p = skip_space(p + 1); *p != '}'; p = skip_space(p)) {
        char key[32];
        const char *q = parse_string(p, key, sizeof key);
        if (!q)
            return header_error(name, "has a key that is not a quoted name", p);
        int k = 0;
        while (k < 3 && strcmp(key, keys[k]) != 0)
            k++;
        if (k == 3)
            return error_set(KILN_ERR_IO, "%s: the .npy header has the key '%s'; expected "
                                          "descr, fortran_order and shape", name, key);
        if (seen & 1 << k)
            return error_set(KILN_ERR_IO, "%s: the .npy header has '%s' twice", name, key);
        seen |= 1 << k;
        p = skip_space(q);
        if (*p != ':')
            return header_error(name, "has a key without ':'", p);
        p = skip_space(p + 1);
        q = k == 0 ? parse_string(p, descr, cap) : k == 1 ? parse_bool(p, fortran)
                                                           : parse_shape(p, a);
        if (!q)
            return header_error(name, bad[k], p);
        p = skip_space(q);
        if (*p == ',')
            p++;
        else if (*p != '}')
            return header_error(name, "has no ',' or '}' after a value", p);
    }
    if (*skip_space(p + 1))
        return header_error(name, "goes on after its dict", p + 1);
    for (int k = 0; k < 3; k++)
        if (!(seen & 1 << k))
            return error_set(KILN_ERR_IO, "%s: the .npy header lacks '%s'; expected the keys "
                                          "descr, fortran_order and shape", name, keys[k]);
    return KILN_OK;
}

static kiln_status parse_dtype(const char *descr, const char *name, npy_array *a)
{
    static const struct {
        const char *descr;
        char kind;
        size_t size;
    } types[] = {
        {"<f4", 'f', 4}, {"<f8", 'f', 8}, {"|u1", 'u', 1},
        {"<u1", 'u', 1}, {"<i8", 'i', 8}, {"<i4", 'i', 4}, {"<u2", 'u', 2},
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strcmp(descr, types[i].descr) == 0) {
            a->kind = types[i].kind;
            a->size = types[i].size;
            return KILN_OK;
        }
    if (descr[0] == '>')
        return error_set(KILN_ERR_IO, "%s: dtype '%s' is big-endian; kiln reads little-endian "
                                      "arrays (in NumPy: a.astype(a.dtype.newbyteorder('<')))",
                         name, descr);
    return error_set(KILN_ERR_IO, "%s: dtype '%s' is not supported; expected float32 ('<f4'), "
                                  "float64 ('<f8'), uint8 ('|u1'), uint16 ('<u2', token "
                                  "ids), int64 ('<i8') or int32 ('<i4')", name, descr);
}

static const char *shape_text(const npy_array *a, char *buf, size_t size)
{
    int n = snprintf(buf, size, "(");
    for (int i = 0; i < a->rank && n > 0 && (size_t)n < size; i++)
        n += snprintf(buf + n, size - (size_t)n, "%s%zu", i ? ", " : "", a->dims[i]);
    if (n > 0 && (size_t)n < size)
        snprintf(buf + n, size - (size_t)n, a->rank == 1 ? ",)" : ")");
    return buf;
}

/* The shape's product, at most NPY_MAX_BYTES of data, and one sample or more. */
static kiln_status check_shape(const char *name, npy_array *a)
{
    char shape[128];
    if (a->rank == 0)
        return error_set(KILN_ERR_IO, "%s: a scalar (shape ()); expected an array with one row "
                                      "per sample", name);
    a->count = 1;
    for (int i = 0; i < a->rank; i++) {
        if (a->dims[i] && a->count > NPY_MAX_BYTES / a->size / a->dims[i])
            return error_set(KILN_ERR_IO, "%s: shape %s is more than kiln reads from one array "
                                          "(8 GiB)", name, shape_text(a, shape, sizeof shape));
        a->count *= a->dims[i];
    }
    if (a->count == 0)
        return error_set(KILN_ERR_IO, "%s: shape %s holds no values; expected one sample or "
                                      "more", name, shape_text(a, shape, sizeof shape));
    return KILN_OK;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Checks the magic, version and header of a .npy image whose first size
 * bytes are in buf (the header at least) and sets *data_at to where its
 * values start. */
static kiln_status npy_header(const unsigned char *buf, size_t size, const char *name,
                              npy_array *a, size_t *data_at)
{
    memset(a, 0, sizeof *a);
    if (size < 10 || memcmp(buf, "\x93NUMPY", 6) != 0)
        return error_set(KILN_ERR_IO, "%s: not a .npy file (expected the magic bytes \\x93NUMPY "
                                      "at the start)", name);
    int major = buf[6], minor = buf[7];
    if (major < 1 || major > 3 || minor != 0)
        return error_set(KILN_ERR_IO, "%s: .npy format version %d.%d; kiln reads versions 1.0, "
                                      "2.0 and 3.0", name, major, minor);
    size_t start = major == 1 ? 10 : 12;
    size_t len = size < start ? 0 : major == 1 ? (size_t)(buf[8] | buf[9] << 8) : le32(buf + 8);
    if (size < start || len > size - start)
        return error_set(KILN_ERR_IO, "%s: the file ends inside the .npy header (%zu bytes "
                                      "announced, %zu there)", name, len,
                         size < start ? 0 : size - start);
    char *text = malloc(len + 1), descr[64] = "";
    if (!text)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", name);
    memcpy(text, buf + start, len);
    text[len] = '\0';
    int fortran = 0;
    kiln_status st = strlen(text) != len
                         ? error_set(KILN_ERR_IO, "%s: the .npy header holds a zero byte", name)
                         : parse_header(text, name, descr, sizeof descr, &fortran, a);
    free(text);
    if (st == KILN_OK)
        st = parse_dtype(descr, name, a);
    if (st == KILN_OK && fortran)
        st = error_set(KILN_ERR_IO, "%s: fortran_order is True; kiln reads C-order arrays (in "
                                    "NumPy: np.save(path, np.ascontiguousarray(a)))", name);
    if (st == KILN_OK)
        st = check_shape(name, a);
    snprintf(a->descr, sizeof a->descr, "%s", descr);
    *data_at = start + len;
    return st;
}

/* The values after the header are exactly what its shape needs. */
static kiln_status check_length(const npy_array *a, const char *name, size_t have)
{
    size_t want = a->count * a->size;
    char shape[128];
    if (have != want)
        return error_set(KILN_ERR_IO, "%s: shape %s of '%s' needs %zu bytes of data, but %zu "
                                      "follow the header (%s)", name,
                         shape_text(a, shape, sizeof shape), a->descr, want, have, have < want ? "the file is truncated"
                                                 : "the file is too long");
    return KILN_OK;
}

/* Checks a whole .npy image in memory and points a at its values. */
static kiln_status npy_parse(const unsigned char *buf, size_t size, const char *name,
                             npy_array *a)
{
    size_t at = 0;
    kiln_status st = npy_header(buf, size, name, a, &at);
    if (st == KILN_OK)
        st = check_length(a, name, size - at);
    if (st == KILN_OK)
        a->data = buf + at;
    return st;
}

kiln_status data_npy_info(const char *path, npy_info *info)
{
    memset(info, 0, sizeof *info);
    FILE *f = fopen(path, "rb");
    if (!f)
        return error_set(KILN_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    unsigned char head[12] = {0}, *buf = NULL;
    size_t got = fread(head, 1, sizeof head, f), want = got;
    if (got >= 10 && head[6] == 1)
        want = 10 + (size_t)(head[8] | head[9] << 8);
    else if (got == 12)
        want = 12 + (size_t)le32(head + 8);
    kiln_status st = want <= (1u << 24) && (buf = malloc(want ? want : 1)) != NULL
                         ? KILN_OK
                         : error_set(KILN_ERR_IO, "%s: a .npy header of %zu bytes is more "
                                                  "than kiln reads (16 MiB)", path, want);
    if (st == KILN_OK) {
        memcpy(buf, head, got < want ? got : want);
        got = got < want ? got + fread(buf + got, 1, want - got, f) : want;
    }
    struct stat s;
    npy_array a;
    size_t at = 0;
    if (st == KILN_OK)
        st = npy_header(buf, got, path, &a, &at);
    if (st == KILN_OK && fstat(fileno(f), &s) != 0)
        st = error_set(KILN_ERR_IO, "%s: cannot stat (%s)", path, strerror(errno));
    if (st == KILN_OK)
        st = check_length(&a, path, (size_t)s.st_size - at);
    free(buf);
    fclose(f);
    if (st != KILN_OK)
        return st;
    info->kind = a.kind;
    info->size = a.size;
    info->rank = a.rank;
    memcpy(info->dims, a.dims, sizeof a.dims);
    info->count = a.count;
    info->offset = at;
    return KILN_OK;
}

/* ---- values ------------------------------------------------------------------ */

double data_npy_value(char kind, size_t size, const unsigned char *p)
{
    uint64_t u = 0;
    for (size_t b = size; b-- > 0;)
        u = u << 8 | p[b];
    if (kind == 'u')
        return (double)u;
    if (kind == 'i')
        return size == 4 ? (double)(int32_t)(uint32_t)u : (double)(int64_t)u;
    if (size == 4) {
        uint32_t bits = (uint32_t)u;
        float f;
        memcpy(&f, &bits, 4);
        return f;
    }
    double d;
    memcpy(&d, &u, 8);
    return d;
}

static double npy_value(const npy_array *a, size_t i)
{
    return data_npy_value(a->kind, a->size, a->data + i * a->size);
}

/* Every value as a float: finite and within float32's range. uint8 and
 * (on little-endian hosts) float32 arrays take a direct path. */
static kiln_status npy_floats(const npy_array *a, const char *name, float **out)
{
    float *v = malloc(a->count * sizeof *v);
    if (!v)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu values", name,
                         a->count);
    int bytes = a->kind == 'u' && a->size == 1, floats = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    floats = a->kind == 'f' && a->size == 4;
#endif
    for (size_t i = 0; bytes && i < a->count; i++)
        v[i] = a->data[i];
    if (floats)
        memcpy(v, a->data, a->count * sizeof *v);
    for (size_t i = 0; i < a->count; i++) {
        double d = bytes || floats ? v[i] : npy_value(a, i);
        if (!isfinite(d) || fabs(d) > FLT_MAX) {
            free(v);
            return error_set(KILN_ERR_IO, "%s: value %zu is %g; expected a finite number "
                                          "within float32's range", name, i, d);
        }
        v[i] = (float)d;
    }
    *out = v;
    return KILN_OK;
}

/* Labels: (n,) or (n, 1) whole numbers from 0 are class indices (as CSV
 * labels are); other values, or (n, k), are regression targets. */
static kiln_status npy_labels(const npy_array *y, const char *name, size_t count,
                              const char *features, dataset *d)
{
    char shape[128];
    if (y->rank > 2)
        return error_set(KILN_ERR_IO, "%s: labels of shape %s; expected (n,) class indices or "
                                      "(n, k) targets", name, shape_text(y, shape, sizeof shape));
    if (y->dims[0] != count)
        return error_set(KILN_ERR_IO, "%s has %zu samples but %s has %zu labels", features,
                         count, name, y->dims[0]);
    kiln_status st = npy_floats(y, name, &d->y);
    if (st != KILN_OK)
        return st;
    d->targets = y->count / count;
    d->count = count;
    data_label_classes(d);
    return KILN_OK;
}

void data_label_classes(dataset *d)
{
    int integral = d->targets == 1;
    d->classes = 0;
    for (size_t i = 0; integral && i < d->count; i++)
        integral = d->y[i] >= 0 && d->y[i] == floorf(d->y[i]) && d->y[i] < 65536;
    for (size_t i = 0; integral && i < d->count; i++)
        if ((size_t)d->y[i] + 1 > d->classes)
            d->classes = (size_t)d->y[i] + 1;
}

kiln_status data_load_npy_labels(const char *path, size_t count, const char *features,
                                 dataset *d)
{
    memset(d, 0, sizeof *d);
    unsigned char *b = NULL;
    size_t n = 0;
    npy_array y;
    kiln_status st = data_read_file(path, NPY_MAX_BYTES + 4096, ".npy files", &b, &n);
    if (st == KILN_OK)
        st = npy_parse(b, n, path, &y);
    if (st == KILN_OK)
        st = npy_labels(&y, path, count, features, d);
    free(b);
    return st;
}

/* A dataset from a features array (one sample per first index, uint8
 * scaled to [0, 1] as IDX pixels are) and a labels array, or none. */
static kiln_status npy_dataset(const npy_array *x, const char *xname, const npy_array *y,
                               const char *yname, dataset *d)
{
    memset(d, 0, sizeof *d);
    kiln_status st = npy_floats(x, xname, &d->x);
    d->count = x->dims[0];
    d->features = x->count / x->dims[0];
    for (size_t i = 0; st == KILN_OK && x->kind == 'u' && x->size == 1 && i < x->count; i++)
        d->x[i] /= 255.0f;
    if (st == KILN_OK && y)
        st = npy_labels(y, yname, d->count, xname, d);
    if (st == KILN_OK && !y) {
        d->targets = 1;
        d->unlabelled = 1;
        d->y = calloc(d->count, sizeof *d->y);
        if (!d->y)
            st = error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", xname);
    }
    if (st != KILN_OK)
        data_free(d);
    else
        snprintf(d->name, sizeof d->name, "%s", xname);
    return st;
}

/* ---- .npy files ------------------------------------------------------------- */


kiln_status data_load_npy(const char *features, const char *labels, dataset *out)
{
    memset(out, 0, sizeof *out);
    unsigned char *bx = NULL, *by = NULL;
    size_t nx = 0, ny = 0;
    npy_array x, y;
    kiln_status st = data_read_file(features, NPY_MAX_BYTES + 4096, ".npy files", &bx, &nx);
    if (st == KILN_OK)
        st = npy_parse(bx, nx, features, &x);
    if (st == KILN_OK && labels)
        st = data_read_file(labels, NPY_MAX_BYTES + 4096, ".npy files", &by, &ny);
    if (st == KILN_OK && labels)
        st = npy_parse(by, ny, labels, &y);
    if (st == KILN_OK)
        st = npy_dataset(&x, features, labels ? &y : NULL, labels, out);
    free(bx);
    free(by);
    return st;
}

kiln_status data_load_npy_tokens(const char *path, uint32_t **ids, size_t *count)
{
    unsigned char *b = NULL;
    size_t n = 0;
    npy_array a;
    char shape[128];
    kiln_status st = data_read_file(path, NPY_MAX_BYTES + 4096, ".npy files", &b, &n);
    if (st == KILN_OK)
        st = npy_parse(b, n, path, &a);
    if (st == KILN_OK && (a.rank != 1 || a.kind == 'f'))
        st = error_set(KILN_ERR_IO, "%s: %s of shape %s; token ids are a 1-d integer array "
                                    "(uint16, int32 or int64)", path,
                       a.kind == 'f' ? "floats" : "integers", shape_text(&a, shape, sizeof shape));
    uint32_t *v = st == KILN_OK ? malloc(a.count * sizeof *v) : NULL;
    if (st == KILN_OK && !v)
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    for (size_t i = 0; st == KILN_OK && i < a.count; i++) {
        double d = npy_value(&a, i);
        if (d < 0 || d > 4294967295.0)
            st = error_set(KILN_ERR_IO, "%s: token %zu is %.0f; token ids are from 0", path, i,
                           d);
        else
            v[i] = (uint32_t)d;
    }
    free(b);
    if (st != KILN_OK) {
        free(v);
        return st;
    }
    *ids = v;
    *count = a.count;
    return KILN_OK;
}

/* ---- .npz archives ------------------------------------------------------------ */

/* The members' names without .npy, comma-separated, for messages. */
static void npz_members(zip_t *z, char *buf, size_t size)
{
    zip_int64_t n = zip_get_num_entries(z, 0);
    size_t used = 0;
    buf[0] = '\0';
    for (zip_int64_t i = 0; i < n && used < size; i++) {
        const char *m = zip_get_name(z, (zip_uint64_t)i, 0);
        int len = m ? (int)strlen(m) : 0;
        if (m && data_has_ext(m, ".npy"))
            len -= 4;
        int w = snprintf(buf + used, size - used, "%s%.*s", used ? ", " : "", len, m ? m : "?");
        used += w > 0 ? (size_t)w : 0;
    }
    if (n == 0)
        snprintf(buf, size, "no members");
}

/* Reads the `want` bytes an entry claims, growing the buffer as they
 * arrive, so a damaged entry that claims gigabytes costs only what it holds. */
static kiln_status read_stream(zip_file_t *f, zip_uint64_t want, const char *label,
                               unsigned char **buf, size_t *size)
{
    size_t cap = 0, used = 0;
    zip_int64_t got = 1;
    while (used < want && got > 0) {
        if (used == cap) {
            size_t next = cap ? cap * 2 : (size_t)1 << 20;
            next = next < want ? next : (size_t)want;
            unsigned char *grown = realloc(*buf, next);
            if (!grown)
                return error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu bytes",
                                 label, next);
            *buf = grown;
            cap = next;
        }
        got = zip_fread(f, *buf + used, cap - used);
        used += got > 0 ? (size_t)got : 0;
    }
    *size = used;
    if (got < 0)
        return error_set(KILN_ERR_IO, "%s: the member is damaged (%s)", label,
                         zip_file_strerror(f));
    if (used != want)
        return error_set(KILN_ERR_IO, "%s: the member is damaged (shorter than its entry says)",
                         label);
    if (!*buf)
        *buf = malloc(1);
    return *buf ? KILN_OK : error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
}

/* Reads member key.npy whole; label names it in messages. */
static kiln_status read_member(zip_t *z, const char *path, const char *key, const char *label,
                               unsigned char **buf, size_t *size)
{
    char member[NPY_NAME + 8], names[512];
    snprintf(member, sizeof member, "%s.npy", key);
    zip_int64_t i = zip_name_locate(z, member, 0);
    zip_stat_t s;
    zip_stat_init(&s);
    *buf = NULL;
    if (i < 0) {
        npz_members(z, names, sizeof names);
        return error_set(KILN_ERR_IO, "%s: no array '%s'; the file has: %s", path, key, names);
    }
    if (zip_stat_index(z, (zip_uint64_t)i, 0, &s) != 0)
        return error_set(KILN_ERR_IO, "%s: cannot read the member's entry (%s)", label,
                         zip_strerror(z));
    /* deflate packs at most about 1032 bytes into one */
    if (s.size > NPY_MAX_BYTES + 4096 || s.size / 1032 > s.comp_size + 1)
        return error_set(KILN_ERR_IO, "%s: %llu bytes from %llu compressed; expected an array "
                                      "of at most 8 GiB that deflate could have made",
                         label, (unsigned long long)s.size, (unsigned long long)s.comp_size);
    zip_file_t *f = zip_fopen_index(z, (zip_uint64_t)i, 0);
    if (!f)
        return error_set(KILN_ERR_IO, "%s: cannot open the member (%s)", label, zip_strerror(z));
    kiln_status st = read_stream(f, s.size, label, buf, size);
    zip_fclose(f);
    if (st != KILN_OK) {
        free(*buf);
        *buf = NULL;
    }
    return st;
}

static int has_member(zip_t *z, const char *key)
{
    char member[NPY_NAME + 8];
    snprintf(member, sizeof member, "%s.npy", key);
    return zip_name_locate(z, member, 0) >= 0;
}

/* Splits keys "FEATURES[,LABELS[,TEST_FEATURES,TEST_LABELS]]" into names
 * (".npy" dropped); returns how many, or 0 when malformed. */
static int split_keys(const char *keys, char names[4][NPY_NAME])
{
    int n = 0;
    for (const char *p = keys;; n++) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        while (len && (*p == ' ' || *p == '\t'))
            p++, len--;
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len > 4 && strncmp(p + len - 4, ".npy", 4) == 0)
            len -= 4;
        if (n == 4 || len == 0 || len >= NPY_NAME)
            return 0;
        memcpy(names[n], p, len);
        names[n][len] = '\0';
        if (!comma)
            return n == 2 ? 0 : n + 1;
        p = comma + 1;
    }
}

/* The features and labels members of a split ("" labels: none; "" features:
 * the file has no such split). */
static kiln_status npz_split(zip_t *z, const char *path, const char *keys, int test,
                             char x[NPY_NAME], char y[NPY_NAME])
{
    char names[4][NPY_NAME] = {"", "", "", ""}, members[512];
    x[0] = y[0] = '\0';
    if (keys && *keys) {
        int n = split_keys(keys, names);
        if (n == 0)
            return error_set(KILN_ERR_INVALID_ARGUMENT, "%s: npz keys \"%s\"; expected "
                                                        "FEATURES, FEATURES,LABELS or "
                                                        "FEATURES,LABELS,TEST_FEATURES,"
                                                        "TEST_LABELS", path, keys);
        int at = test ? 2 : 0;
        snprintf(x, NPY_NAME, "%s", names[at]);
        snprintf(y, NPY_NAME, "%s", names[at + 1]);
        return KILN_OK;
    }
    const char *fx = test ? "x_test" : has_member(z, "x") ? "x" : "x_train";
    const char *fy = test ? "y_test" : has_member(z, "x") ? "y" : "y_train";
    if (has_member(z, fx)) {
        snprintf(x, NPY_NAME, "%s", fx);
        snprintf(y, NPY_NAME, "%s", has_member(z, fy) ? fy : "");
    } else if (!test) {
        npz_members(z, members, sizeof members);
        return error_set(KILN_ERR_IO, "%s: no array 'x' or 'x_train'; the file has: %s (name "
                                      "the arrays with npz keys \"FEATURES,LABELS\")",
                         path, members);
    }
    return KILN_OK;
}

static kiln_status npz_arrays(zip_t *z, const char *path, const char *kx, const char *ky,
                              const char *split, dataset *out)
{
    char lx[sizeof out->name], ly[sizeof out->name];
    snprintf(lx, sizeof lx, "%.200s:%s.npy", path, kx);
    snprintf(ly, sizeof ly, "%.200s:%s.npy", path, ky);
    unsigned char *bx = NULL, *by = NULL;
    size_t nx = 0, ny = 0;
    npy_array x, y;
    kiln_status st = read_member(z, path, kx, lx, &bx, &nx);
    if (st == KILN_OK && *ky)
        st = read_member(z, path, ky, ly, &by, &ny);
    if (st == KILN_OK)
        st = npy_parse(bx, nx, lx, &x);
    if (st == KILN_OK && *ky)
        st = npy_parse(by, ny, ly, &y);
    if (st == KILN_OK)
        st = npy_dataset(&x, lx, *ky ? &y : NULL, ly, out);
    if (st == KILN_OK && strcmp(split, "test") == 0)
        snprintf(out->name, sizeof out->name, "%.200s (test)", path);
    else if (st == KILN_OK)
        snprintf(out->name, sizeof out->name, "%s", path);
    free(bx);
    free(by);
    return st;
}

kiln_status data_load_npz(const char *path, const char *keys, const char *split, dataset *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%.200s (test)", path);
    int err = 0;
    zip_t *z = zip_open(path, ZIP_RDONLY, &err);
    if (!z) {
        zip_error_t e;
        zip_error_init_with_code(&e, err);
        kiln_status st = error_set(KILN_ERR_IO, "%s: cannot read as an .npz (zip) archive (%s)",
                                   path, zip_error_strerror(&e));
        zip_error_fini(&e);
        return st;
    }
    char kx[NPY_NAME], ky[NPY_NAME];
    int test = strcmp(split, "test") == 0;
    kiln_status st = npz_split(z, path, keys, test, kx, ky);
    if (st == KILN_OK && *kx)
        st = npz_arrays(z, path, kx, ky, split, out);
    zip_discard(z);
    return st;
}
