/* Datasets: IDX and CSV readers, splits, normalization, batches (see
 * data.h). Every malformed input is an error naming the file and what was
 * wrong with it. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "data/data.h"
#include "data/folder.h"

void data_free(dataset *d)
{
    if (!d)
        return;
    free(d->x);
    free(d->y);
    free(d->lines);
    d->lines = NULL;
    folder_free(d->images);
    data_free_shards(d);
    free(d->class_names);
    for (size_t i = 0; d->files && i < d->file_count; i++)
        free(d->files[i]);
    free(d->files);
    d->files = NULL;
    d->file_count = 0;
    d->x = d->y = NULL;
    d->images = NULL;
    d->class_names = NULL;
    d->count = 0;
}

/* ---- IDX ------------------------------------------------------------------ */

typedef struct {
    int type;         /* 0x08 ubyte ... 0x0E double */
    int rank;
    uint32_t dims[4];
    size_t count;     /* product of dims */
} idx_header;

static size_t idx_type_size(int type)
{
    switch (type) {
    case 0x08:
    case 0x09:
        return 1;
    case 0x0B:
        return 2;
    case 0x0C:
    case 0x0D:
        return 4;
    case 0x0E:
        return 8;
    default:
        return 0;
    }
}

static kiln_status read_exact(gzFile f, void *buf, size_t n, const char *path, const char *what)
{
    unsigned char *p = buf;
    while (n > 0) {
        unsigned chunk = n > (1u << 30) ? (1u << 30) : (unsigned)n;
        int got = gzread(f, p, chunk);
        if (got <= 0) {
            int zerr = Z_OK;
            const char *msg = gzerror(f, &zerr);
            return error_set(KILN_ERR_IO, "%s: the file ends inside the %s (%s)", path, what,
                             got < 0 || zerr != Z_OK ? msg : "truncated");
        }
        p += got;
        n -= (size_t)got;
    }
    return KILN_OK;
}

static kiln_status read_idx_header(gzFile f, const char *path, idx_header *h)
{
    unsigned char magic[4];
    kiln_status st = read_exact(f, magic, 4, path, "IDX header");
    if (st != KILN_OK)
        return st;
    h->type = magic[2];
    h->rank = magic[3];
    if (magic[0] || magic[1] || !idx_type_size(h->type))
        return error_set(KILN_ERR_IO, "%s: not an IDX file (magic bytes %02x %02x %02x %02x; "
                                      "expected 00 00, a type from 08 to 0E, and the rank)",
                         path, magic[0], magic[1], magic[2], magic[3]);
    if (h->rank < 1 || h->rank > 4)
        return error_set(KILN_ERR_IO, "%s: IDX rank %d; expected 1 to 4", path, h->rank);
    h->count = 1;
    for (int i = 0; i < h->rank; i++) {
        unsigned char b[4];
        st = read_exact(f, b, 4, path, "IDX header");
        if (st != KILN_OK)
            return st;
        h->dims[i] = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
        if (h->dims[i] == 0 || h->count > (SIZE_MAX >> 4) / h->dims[i])
            return error_set(KILN_ERR_IO, "%s: IDX dimension %d is %u", path, i, h->dims[i]);
        h->count *= h->dims[i];
    }
    if (h->count > (1ull << 32))
        return error_set(KILN_ERR_IO, "%s: %zu values is more than kiln reads from one IDX file",
                         path, h->count);
    return KILN_OK;
}

/* Converts big-endian IDX values of any type to floats. */
static float idx_value(const unsigned char *p, int type)
{
    uint64_t u = 0;
    size_t size = idx_type_size(type);
    for (size_t i = 0; i < size; i++)
        u = u << 8 | p[i];
    switch (type) {
    case 0x08:
        return (float)u;
    case 0x09:
        return (float)(int8_t)u;
    case 0x0B:
        return (float)(int16_t)u;
    case 0x0C:
        return (float)(int32_t)u;
    case 0x0D: {
        uint32_t bits = (uint32_t)u;
        float f;
        memcpy(&f, &bits, 4);
        return f;
    }
    default: {
        double d;
        memcpy(&d, &u, 8);
        return (float)d;
    }
    }
}

/* Reads the rest of f, but at most limit bytes, into a buffer grown as data
 * arrives (so a header that announces more than the file holds allocates
 * only what is there); *got is the count read. */
static kiln_status read_rest(gzFile f, size_t limit, const char *path, unsigned char **out,
                             size_t *got)
{
    size_t cap = limit < (1u << 20) ? limit : (1u << 20);
    unsigned char *buf = malloc(cap ? cap : 1);
    *got = 0;
    while (buf) {
        if (*got == cap) {
            if (cap == limit)
                break;
            cap = cap > limit / 2 ? limit : 2 * cap;
            unsigned char *grown = realloc(buf, cap);
            if (!grown) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
        }
        size_t want = cap - *got;
        int n = gzread(f, buf + *got, want > (1u << 30) ? (1u << 30) : (unsigned)want);
        if (n < 0) {
            int zerr = Z_OK;
            kiln_status st = error_set(KILN_ERR_IO, "%s: %s", path, gzerror(f, &zerr));
            free(buf);
            return st;
        }
        if (n == 0)
            break;
        *got += (size_t)n;
    }
    if (!buf)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory after %zu bytes", path, *got);
    *out = buf;
    return KILN_OK;
}

/* Reads a whole IDX file into floats. */
static kiln_status read_idx(const char *path, idx_header *h, float **out)
{
    gzFile f = gzopen(path, "rb");
    if (!f)
        return error_set(KILN_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    *out = NULL;
    kiln_status st = read_idx_header(f, path, h);
    size_t size = st == KILN_OK ? idx_type_size(h->type) : 0, got = 0;
    unsigned char *raw = NULL;
    /* one byte more than announced tells a file that is too long */
    if (st == KILN_OK)
        st = read_rest(f, h->count * size + 1, path, &raw, &got);
    if (st == KILN_OK && got < h->count * size)
        st = error_set(KILN_ERR_IO, "%s: the file ends inside the data the header announces "
                                    "(%zu values of %zu bytes, but %zu bytes follow the "
                                    "header)", path, h->count, size, got);
    else if (st == KILN_OK && got > h->count * size)
        st = error_set(KILN_ERR_IO, "%s: the file is longer than its IDX header says (%zu "
                                    "values)", path, h->count);
    if (st == KILN_OK && !(*out = malloc(h->count * sizeof **out)))
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu values", path,
                       h->count);
    if (st == KILN_OK && h->type == 0x08) /* bytes (the MNIST files): always finite */
        for (size_t i = 0; i < h->count; i++)
            (*out)[i] = raw[i];
    else
        for (size_t i = 0; st == KILN_OK && i < h->count; i++) {
            (*out)[i] = idx_value(raw + i * size, h->type);
            if (!isfinite((*out)[i]))
                st = error_set(KILN_ERR_IO, "%s: value %zu is not a finite number", path, i);
        }
    free(raw);
    gzclose(f);
    if (st != KILN_OK) {
        free(*out);
        *out = NULL;
    }
    return st;
}

/* Pixels of unsigned-byte images are scaled to [0, 1]. */
static void scale_pixels(const idx_header *h, float *x)
{
    if (h->type == 0x08)
        for (size_t i = 0; i < h->count; i++)
            x[i] /= 255.0f;
}

kiln_status data_load_idx_images(const char *images, dataset *out)
{
    memset(out, 0, sizeof *out);
    idx_header h;
    float *x = NULL;
    kiln_status st = read_idx(images, &h, &x);
    if (st != KILN_OK)
        return st;
    scale_pixels(&h, x);
    out->y = calloc(h.dims[0], sizeof *out->y);
    if (!out->y) {
        free(x);
        return error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", images);
    }
    snprintf(out->name, sizeof out->name, "%s", images);
    out->count = h.dims[0];
    out->features = h.count / h.dims[0];
    out->targets = 1;
    out->unlabelled = 1;
    out->x = x;
    return KILN_OK;
}

kiln_status data_load_idx(const char *images, const char *labels, dataset *out)
{
    memset(out, 0, sizeof *out);
    idx_header hx, hy;
    float *x = NULL, *y = NULL;
    kiln_status st = read_idx(images, &hx, &x);
    if (st == KILN_OK)
        st = read_idx(labels, &hy, &y);
    if (st == KILN_OK && hy.rank != 1)
        st = error_set(KILN_ERR_IO, "%s: labels must be an IDX file of rank 1, not %d", labels,
                       hy.rank);
    if (st == KILN_OK && hy.dims[0] != hx.dims[0])
        st = error_set(KILN_ERR_IO, "%s has %u samples but %s has %u labels", images,
                       hx.dims[0], labels, hy.dims[0]);
    size_t classes = 0;
    for (size_t i = 0; st == KILN_OK && i < hy.count; i++) {
        if (y[i] < 0 || y[i] != floorf(y[i]) || y[i] > 65535)
            st = error_set(KILN_ERR_IO, "%s: label %zu is %g; expected a class index", labels,
                           i, (double)y[i]);
        else if ((size_t)y[i] + 1 > classes)
            classes = (size_t)y[i] + 1;
    }
    if (st != KILN_OK) {
        free(x);
        free(y);
        return st;
    }
    scale_pixels(&hx, x);
    snprintf(out->name, sizeof out->name, "%s", images);
    out->count = hx.dims[0];
    out->features = hx.count / hx.dims[0];
    out->targets = 1;
    out->classes = classes;
    out->x = x;
    out->y = y;
    return KILN_OK;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* dir/prefix-kind-ubyte, with or without .gz */
static void idx_path(const char *dir, const char *prefix, const char *kind, char *buf,
                     size_t size)
{
    snprintf(buf, size, "%s/%s-%s-ubyte.gz", dir, prefix, kind);
    if (!exists(buf))
        snprintf(buf, size, "%s/%s-%s-ubyte", dir, prefix, kind);
}

kiln_status data_load_named(const char *name, const char *split, dataset *out)
{
    char dir[1024];
    const char *root = getenv("KILN_DATA_DIR");
    if (is_dir(name))
        snprintf(dir, sizeof dir, "%s", name);
    else if (strcmp(name, "fashion-mnist") == 0 || strcmp(name, "mnist") == 0)
        snprintf(dir, sizeof dir, "%s/%s", root && *root ? root : "/usr/share/datasets", name);
    else
        return error_set(KILN_ERR_IO, "data \"%s\": expected fashion-mnist, mnist, a directory "
                                      "of IDX files, or a CSV file", name);
    if (!is_dir(dir))
        return error_set(KILN_ERR_IO, "data \"%s\": %s does not exist (on Debian: apt-get "
                                      "install dataset-fashion-mnist, or set KILN_DATA_DIR)",
                         name, dir);
    const char *prefix = strcmp(split, "test") == 0 ? "t10k" : "train";
    char images[1100], labels[1100];
    idx_path(dir, prefix, "images-idx3", images, sizeof images);
    idx_path(dir, prefix, "labels-idx1", labels, sizeof labels);
    return data_load_idx(images, labels, out);
}

/* ---- CSV -------------------------------------------------------------------- */

/* Splits a record at commas, as RFC 4180 reads it (and R, Excel and
 * pandas write it): a field in double quotes may hold commas, line breaks
 * and "" for a quote, unquoted in place; spaces around a field are
 * trimmed. */
static size_t split_row(char *line, char **cells, size_t max)
{
    size_t n = 0;
    char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        char *cell = p, *end;
        if (*p == '"') { /* quoted: copy down over the quotes */
            char *to = p;
            for (p++; *p && !(*p == '"' && p[1] != '"'); p++)
                *to++ = *p == '"' ? *++p : *p;
            end = to;
            p += *p == '"';
            p += strcspn(p, ","); /* anything after the closing quote is dropped */
        } else {
            p += strcspn(p, ",");
            end = p;
        }
        int more = *p == ',';
        while (end > cell && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' ||
                              end[-1] == '\n'))
            end--;
        *end = '\0';
        if (n < max)
            cells[n] = cell;
        n++;
        if (!more)
            return n;
        p++;
    }
}

/* Whether a record is still inside a quoted field at the end of text (a
 * quoted line break: the record goes on on the next line). */
static int open_quote(const char *text)
{
    int open = 0;
    for (const char *p = text; *p; p++)
        open ^= *p == '"';
    return open;
}

static kiln_status grow_floats(float **v, size_t *capacity, size_t need, const char *path)
{
    if (need <= *capacity)
        return KILN_OK;
    size_t cap = *capacity ? *capacity : 1024;
    while (cap < need)
        cap *= 2;
    float *grown = realloc(*v, cap * sizeof *grown);
    if (!grown)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    *v = grown;
    *capacity = cap;
    return KILN_OK;
}

static kiln_status grow_lines(size_t **v, size_t *capacity, size_t need, const char *path)
{
    if (need <= *capacity)
        return KILN_OK;
    size_t cap = *capacity ? *capacity * 2 : 1024;
    size_t *grown = realloc(*v, cap * sizeof *grown);
    if (!grown)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    *v = grown;
    *capacity = cap;
    return KILN_OK;
}

/* One record: a line, and the lines after it while a quoted field is open
 * (at most 64 KiB of them); *lineno advances past them. */
static ssize_t read_record(FILE *f, char **line, size_t *cap, long *lineno)
{
    ssize_t len = getline(line, cap, f);
    if (len == -1)
        return -1;
    ++*lineno;
    char *more = NULL;
    size_t more_cap = 0;
    ssize_t n;
    while ((size_t)len == strlen(*line) && len < 65536 && open_quote(*line) &&
           (n = getline(&more, &more_cap, f)) != -1) {
        ++*lineno;
        char *joined = realloc(*line, (size_t)(len + n) + 1);
        if (!joined)
            break;
        memcpy(joined + len, more, (size_t)n + 1);
        *line = joined;
        *cap = (size_t)(len + n) + 1;
        len += n;
    }
    free(more);
    return len;
}

#define CSV_MAX_COLUMNS 65536

/* The label column from a name (header) or an index. */
static kiln_status label_column(const char *path, const char *label, char **names, size_t n,
                                int header, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long idx = strtoul(label, &end, 10);
    if (*label >= '0' && *label <= '9' && !*end && !errno) {
        if (idx >= n)
            return error_set(KILN_ERR_IO, "%s: label column %lu does not exist (the file has "
                                          "%zu columns)", path, idx, n);
        *out = idx;
        return KILN_OK;
    }
    for (size_t i = 0; header && i < n; i++)
        if (strcmp(names[i], label) == 0) {
            *out = i;
            return KILN_OK;
        }
    return error_set(KILN_ERR_IO, "%s: no column named \"%s\"%s", path, label,
                     header ? "" : " (the file has no header row; give the column's index)");
}

/* A label of "" or "none": the file has no label column. */
static int no_label(const char *label)
{
    return !*label || strcmp(label, "none") == 0;
}

/* CSV files kiln reads: regular files (a device such as /dev/zero or a
 * pipe never ends) of at most this many bytes. */
#define CSV_MAX_BYTES (8ull << 30)

kiln_status data_load_csv(const char *path, const char *label, int header, dataset *out)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (!f)
        return error_set(KILN_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    struct stat info;
    int regular = fstat(fileno(f), &info) == 0 && S_ISREG(info.st_mode);
    if (!regular || (unsigned long long)info.st_size > CSV_MAX_BYTES) {
        fclose(f);
        if (!regular)
            return error_set(KILN_ERR_IO, "%s: not a regular file (kiln reads a CSV file to its "
                                          "end; copy a stream to a file first)", path);
        return error_set(KILN_ERR_IO, "%s: %llu bytes; kiln reads CSV files of at most 8 GiB",
                         path, (unsigned long long)info.st_size);
    }
    char **cells = malloc(CSV_MAX_COLUMNS * sizeof *cells);
    char *line = NULL;
    int unlabelled = no_label(label);
    size_t line_cap = 0, columns = 0, label_at = SIZE_MAX, rows = 0, xcap = 0, ycap = 0;
    size_t least = unlabelled ? 1 : 2, features = 0;
    long lineno = 0;
    int integral = 1;
    float *x = NULL, *y = NULL;
    kiln_status st = cells ? KILN_OK : error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    ssize_t len;
    size_t *lines = NULL, lines_cap = 0;
    long first_line = 1; /* of the record */
    while (st == KILN_OK &&
           (first_line = lineno + 1, len = read_record(f, &line, &line_cap, &lineno)) != -1) {
        if (strlen(line) != (size_t)len) {
            st = error_set(KILN_ERR_IO, "%s:%ld: binary data (a zero byte)", path, lineno);
            break;
        }
        if (first_line == 1 && strncmp(line, "\xEF\xBB\xBF", 3) == 0) /* a UTF-8 byte order mark */
            memmove(line, line + 3, (size_t)len - 2);
        if (line[strspn(line, " \t\r\n")] == '\0')
            continue;
        size_t n = split_row(line, cells, CSV_MAX_COLUMNS);
        if (n > CSV_MAX_COLUMNS || n < least) {
            st = error_set(KILN_ERR_IO, "%s:%ld: %zu columns; expected %zu to %d", path,
                           first_line, n, least, CSV_MAX_COLUMNS);
            break;
        }
        if (columns == 0) {
            columns = n;
            features = n - (unlabelled ? 0 : 1);
            if (!unlabelled)
                st = label_column(path, label, cells, n, header, &label_at);
            if (header || st != KILN_OK)
                continue;
        }
        if (n != columns) {
            st = error_set(KILN_ERR_IO, "%s:%ld: %zu columns; the first row has %zu", path,
                           first_line, n, columns);
            break;
        }
        st = grow_floats(&x, &xcap, (rows + 1) * features, path);
        if (st == KILN_OK)
            st = grow_floats(&y, &ycap, rows + 1, path);
        if (st == KILN_OK)
            st = grow_lines(&lines, &lines_cap, rows + 1, path);
        if (st == KILN_OK)
            lines[rows] = (size_t)first_line;
        for (size_t c = 0, k = 0; st == KILN_OK && c < n; c++) {
            char *end;
            double v = strtod(cells[c], &end); /* an underflow reads as 0 or a denormal */
            if (!*cells[c] || *end || !isfinite(v))
                st = error_set(KILN_ERR_IO, "%s:%ld: column %zu is \"%s\"; expected a finite "
                                            "number", path, first_line, c + 1, cells[c]);
            else if (fabs(v) > FLT_MAX)
                st = error_set(KILN_ERR_IO, "%s:%ld: column %zu is %s, beyond the range of "
                                            "float32 (about 3.4e38); rescale the column",
                               path, first_line, c + 1, cells[c]);
            else if (c == label_at) {
                y[rows] = (float)v;
                integral &= v >= 0 && v == floor(v) && v < 65536;
            } else
                x[rows * features + k++] = (float)v;
        }
        if (st == KILN_OK && unlabelled)
            y[rows] = 0;
        rows++;
    }
    if (st == KILN_OK && rows == 0)
        st = error_set(KILN_ERR_IO, "%s: no data rows", path);
    free(line);
    free(cells);
    fclose(f);
    if (st != KILN_OK) {
        free(x);
        free(y);
        free(lines);
        return st;
    }
    snprintf(out->name, sizeof out->name, "%s", path);
    out->lines = lines;
    out->count = rows;
    out->features = features;
    out->targets = 1;
    out->unlabelled = unlabelled;
    out->x = x;
    out->y = y;
    for (size_t i = 0; integral && !unlabelled && i < rows; i++)
        if ((size_t)y[i] + 1 > out->classes)
            out->classes = (size_t)y[i] + 1;
    return KILN_OK;
}

/* ---- splits, normalization, batches --------------------------------------------- */

void data_shuffle(size_t *order, size_t count, kiln_rng *rng)
{
    for (size_t i = 0; i < count; i++)
        order[i] = i;
    for (size_t i = count; i > 1; i--) { /* Fisher-Yates */
        size_t j = (size_t)(rng_next(rng) % i), t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
}

kiln_status data_gather(const dataset *d, const size_t *order, size_t first, size_t n, float *x,
                        float *y)
{
    for (size_t i = 0; i < n; i++) {
        size_t s = order ? order[first + i] : first + i;
        if (d->x)
            memcpy(x + i * d->features, d->x + s * d->features, d->features * sizeof *x);
        memcpy(y + i * d->targets, d->y + s * d->targets, d->targets * sizeof *y);
    }
    if (d->shards)
        return shards_gather(d, order, first, n, x);
    return d->images ? folder_gather(d, order, first, n, x) : KILN_OK;
}

/* sum[g] += every value of group g, sum[groups + g] += its square, sample
 * by sample in order; a group's values lie together (per of them), so no
 * value needs a division to find its group. */
static void add_sums(const float *x, size_t n, size_t in, size_t groups, double *sum)
{
    size_t per = in / groups;
    double *sq = sum + groups;
    for (size_t s = 0; s < n; s++, x += in) {
        if (per == 1)
            for (size_t i = 0; i < in; i++) {
                double v = x[i];
                sum[i] += v;
                sq[i] += v * v;
            }
        else
            for (size_t g = 0; g < groups; g++)
                for (size_t i = g * per; i < (g + 1) * per; i++) {
                    double v = x[i];
                    sum[g] += v;
                    sq[g] += v * v;
                }
    }
}

void data_sums(const dataset *d, size_t groups, double *sum)
{
    if (d->images)
        folder_sums(d, groups, sum);
    else
        data_sums_of(d, 0, d->count, groups, sum);
}

kiln_status data_sums_of(const dataset *d, size_t first, size_t n, size_t groups, double *sum)
{
    if (!d->shards) {
        add_sums(d->x + first * d->features, n, d->features, groups, sum);
        return KILN_OK;
    }
    size_t chunk = 256, y_size = chunk * d->targets;
    float *x = malloc(chunk * d->features * sizeof *x), *y = malloc(y_size * sizeof *y);
    kiln_status st = x && y ? KILN_OK
                            : error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", d->name);
    for (size_t at = first; st == KILN_OK && at < first + n; at += chunk) {
        size_t m = first + n - at < chunk ? first + n - at : chunk;
        st = data_gather(d, NULL, at, m, x, y);
        if (st == KILN_OK)
            add_sums(x, m, d->features, groups, sum);
    }
    free(x);
    free(y);
    return st;
}

kiln_status data_split(dataset *d, double fraction, uint64_t seed, dataset *val)
{
    memset(val, 0, sizeof *val);
    size_t nv = (size_t)((double)d->count * fraction), nt = d->count - nv;
    if (!(fraction > 0 && fraction < 1) || nv == 0 || nt == 0)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "%s: a validation split of %g leaves no "
                                                    "samples on one side", d->name, fraction);
    size_t *order = malloc(d->count * sizeof *order);
    if (order && (d->images || d->shards)) {
        kiln_rng rng;
        rng_seed(&rng, seed ^ 0x5eedull);
        data_shuffle(order, d->count, &rng);
        kiln_status st = d->images ? folder_split(d, order, nt, val)
                                   : shards_split(d, order, nt, val);
        free(order);
        return st;
    }
    float *x = malloc(d->count * d->features * sizeof *x);
    float *y = malloc(d->count * d->targets * sizeof *y);
    if (!order || !x || !y) {
        free(order);
        free(x);
        free(y);
        return error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", d->name);
    }
    kiln_rng rng;
    rng_seed(&rng, seed ^ 0x5eedull);
    data_shuffle(order, d->count, &rng);
    data_gather(d, order, 0, d->count, x, y);
    free(d->lines); /* the samples leave the file's order */
    d->lines = NULL;
    free(order);
    *val = *d;
    val->class_names = NULL;
    val->files = NULL; /* names are for predictions, which split nothing */
    val->file_count = 0;
    snprintf(val->name, sizeof val->name, "%.200s (validation)", d->name);
    val->count = nv;
    val->x = malloc(nv * d->features * sizeof *x);
    val->y = malloc(nv * d->targets * sizeof *y);
    if (!val->x || !val->y) {
        free(x);
        free(y);
        data_free(val);
        return error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", d->name);
    }
    memcpy(val->x, x + nt * d->features, nv * d->features * sizeof *x);
    memcpy(val->y, y + nt * d->targets, nv * d->targets * sizeof *y);
    free(d->x);
    free(d->y);
    d->x = x;
    d->y = y;
    d->count = nt;
    return KILN_OK;
}

void data_moments(const dataset *d, double *mean, double *std)
{
    double sum = 0, sq = 0;
    size_t n = d->count * d->features;
    for (size_t i = 0; i < n; i++)
        sum += d->x[i];
    *mean = n ? sum / (double)n : 0;
    for (size_t i = 0; i < n; i++)
        sq += (d->x[i] - *mean) * (d->x[i] - *mean);
    *std = n ? sqrt(sq / (double)n) : 1;
    if (*std == 0)
        *std = 1;
}

void data_normalize(dataset *d, double mean, double std)
{
    for (size_t i = 0; i < d->count * d->features; i++)
        d->x[i] = (float)((d->x[i] - mean) / std);
}

/* ---- whole files ---------------------------------------------------------- */

kiln_status data_read_file(const char *path, unsigned long long limit, const char *what,
                           unsigned char **buf, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return error_set(KILN_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    struct stat info;
    kiln_status st = KILN_OK;
    if (fstat(fileno(f), &info) != 0 || !S_ISREG(info.st_mode))
        st = error_set(KILN_ERR_IO, "%s: not a regular file", path);
    else if ((unsigned long long)info.st_size > limit)
        st = error_set(KILN_ERR_IO, "%s: %lld bytes; kiln reads %s of at most %llu GiB", path,
                       (long long)info.st_size, what, limit >> 30);
    *size = st == KILN_OK ? (size_t)info.st_size : 0;
    *buf = st == KILN_OK ? malloc(*size ? *size : 1) : NULL;
    if (st == KILN_OK && !*buf)
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu bytes", path, *size);
    if (st == KILN_OK && fread(*buf, 1, *size, f) != *size)
        st = error_set(KILN_ERR_IO, "%s: read error (%s)", path, strerror(errno));
    fclose(f);
    if (st != KILN_OK) {
        free(*buf);
        *buf = NULL;
    }
    return st;
}
