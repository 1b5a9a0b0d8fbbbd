/* Training curves: a run's log.csv drawn as an SVG image, one panel each
 * for loss, accuracy (or, for mse, validation MAE and R²) and learning
 * rate against epoch, the best epoch marked.
 *
 * The SVG is written by hand. A plotting library such as cairo would add
 * a heavy dependency for three line charts, and its SVG surface draws text
 * as glyph outlines: files many times larger, whose labels cannot be
 * searched, selected or read by a test. Plain <polyline> and <text>
 * elements are small, readable by any browser, and checked by
 * tests/check_curves.py with an XML parser. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/runtime.h"

/* ---- log.csv ----------------------------------------------------------------- */

/* The columns drawn; others in the header are ignored. */
enum { C_EPOCH, C_LR, C_TRAIN_LOSS, C_TRAIN_ACC, C_VAL_LOSS, C_VAL_ACC, C_VAL_MAE, C_VAL_R2,
       C_COUNT };
static const char *const column_names[C_COUNT] = {
    "epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_mae",
    "val_r2"};

/* One array per column, NaN where a cell is empty or its column absent. */
typedef struct {
    double *v[C_COUNT];
    size_t rows, cap;
    const char *x_name; /* "epoch", or "step" for runs by steps (token models) */
} log_table;

static void table_free(log_table *t)
{
    for (int c = 0; c < C_COUNT; c++)
        free(t->v[c]);
}

static kiln_status table_grow(log_table *t, const char *path)
{
    if (t->rows < t->cap)
        return KILN_OK;
    size_t cap = t->cap ? 2 * t->cap : 64;
    for (int c = 0; c < C_COUNT; c++) {
        double *v = realloc(t->v[c], cap * sizeof *v);
        if (!v)
            return error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
        t->v[c] = v;
    }
    t->cap = cap;
    return KILN_OK;
}

/* The line without its end ("\n" or "\r\n"); whether anything but spaces
 * is left. */
static int chomp(char *line)
{
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    return line[strspn(line, " \t")] != '\0';
}

/* The next comma-separated field of *cursor, trimmed of spaces. */
static char *next_field(char **cursor)
{
    char *f = *cursor + strspn(*cursor, " \t"), *comma = strchr(f, ',');
    *cursor = comma ? comma + 1 : NULL;
    char *end = comma ? comma : f + strlen(f);
    while (end > f && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *end = '\0';
    return f;
}

/* Maps each field of the header to a column (or -1); *fields is their count. */
static kiln_status read_header(char *line, const char *path, long lineno, int **map,
                               size_t *fields, log_table *t)
{
    size_t n = 1;
    for (const char *p = line; *p; p++)
        n += *p == ',';
    if (!(*map = malloc(n * sizeof **map)))
        return error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    int seen[C_COUNT] = {0};
    char *cursor = line;
    for (size_t i = 0; i < n; i++) {
        const char *name = next_field(&cursor);
        (*map)[i] = -1;
        int step = strcmp(name, "step") == 0; /* the x column of a run by steps */
        if (step)
            t->x_name = "step";
        for (int c = 0; c < C_COUNT; c++)
            if (strcmp(name, column_names[c]) == 0 || (step && c == C_EPOCH)) {
                if (seen[c]++)
                    return error_set(KILN_ERR_IO, "%s:%ld: column %s appears twice", path,
                                     lineno, name);
                (*map)[i] = c;
            }
    }
    *fields = n;
    if (!seen[C_EPOCH])
        return error_set(KILN_ERR_IO, "%s:%ld: the header has no epoch (or step) column "
                                      "(expected epoch,lr,train_loss,... as kiln train writes)",
                         path, lineno);
    return KILN_OK;
}

/* A cell's number: NaN when empty, or when beyond what an axis can span
 * (kiln logs floats, at most 3.4e38; inf and nan are read as such and
 * not drawn either). */
static int parse_cell(const char *cell, double *out)
{
    char *end;
    *out = *cell ? strtod(cell, &end) : NAN;
    if (fabs(*out) > 1e100)
        *out = NAN;
    return !*cell || (end != cell && *end == '\0');
}

static kiln_status read_row(char *line, const char *path, long lineno, const int *map,
                            size_t fields, log_table *t)
{
    kiln_status st = table_grow(t, path);
    if (st != KILN_OK)
        return st;
    size_t r = t->rows, found = 0;
    for (int c = 0; c < C_COUNT; c++)
        t->v[c][r] = NAN;
    for (char *cursor = line; cursor; found++) {
        const char *cell = next_field(&cursor);
        if (found >= fields || map[found] < 0)
            continue;
        if (!parse_cell(cell, &t->v[map[found]][r]))
            return error_set(KILN_ERR_IO, "%s:%ld: %s is \"%.40s\"; expected a number", path,
                             lineno, column_names[map[found]], cell);
    }
    if (found != fields)
        return error_set(KILN_ERR_IO, "%s:%ld: %zu fields; the header has %zu", path, lineno,
                         found, fields);
    if (!(fabs(t->v[C_EPOCH][r]) <= 1e9))
        return error_set(KILN_ERR_IO, "%s:%ld: the epoch is missing or beyond 1e9", path,
                         lineno);
    t->rows++;
    return KILN_OK;
}

static kiln_status read_log(const char *path, log_table *t)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return error_set(KILN_ERR_IO, "%s: cannot read (%s)", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0, fields = 0;
    int *map = NULL;
    kiln_status st = KILN_OK;
    long lineno = 0;
    while (st == KILN_OK && getline(&line, &cap, f) != -1) {
        lineno++;
        if (!chomp(line))
            continue;
        st = map ? read_row(line, path, lineno, map, fields, t)
                 : read_header(line, path, lineno, &map, &fields, t);
    }
    if (st == KILN_OK && ferror(f))
        st = error_set(KILN_ERR_IO, "%s: cannot read (%s)", path, strerror(errno));
    if (st == KILN_OK && !map)
        st = error_set(KILN_ERR_IO, "%s: the file is empty; expected a header line and a line "
                                    "per epoch", path);
    if (st == KILN_OK && t->rows == 0)
        st = error_set(KILN_ERR_IO, "%s: no epoch is logged yet", path);
    free(map);
    free(line);
    fclose(f);
    return st;
}

/* ---- the SVG text ------------------------------------------------------------ */

typedef struct {
    char *s;
    size_t len, cap;
    int failed; /* out of memory */
} svg_text;

static void put(svg_text *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(svg_text *b, const char *fmt, ...)
{
    for (int tries = 0; !b->failed && tries < 2; tries++) { /* formats once if it fits */
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            b->failed = 1;
        else if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        } else {
            size_t cap = 2 * (b->len + (size_t)n + 1);
            char *s = realloc(b->s, cap);
            b->failed = !s;
            b->s = s ? s : b->s;
            b->cap = s ? cap : b->cap;
        }
    }
}

/* The length of the well-formed UTF-8 sequence at s, or 0. */
static int utf8_length(const unsigned char *s)
{
    int n = s[0] < 0x80 ? 1 : s[0] >= 0xC2 && s[0] <= 0xDF ? 2 : s[0] >= 0xE0 && s[0] <= 0xEF ? 3
          : s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] >= 0xA0) ||
        (s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] >= 0x90))
        return 0; /* overlong, a surrogate, or beyond U+10FFFF */
    return n;
}

/* Text content or an attribute value, XML-escaped; control characters are
 * left out and bytes that are not UTF-8 (a path in another encoding)
 * become '?', so that the file stays well-formed XML. */
static void put_escaped(svg_text *b, const char *text)
{
    for (const unsigned char *s = (const unsigned char *)text; *s;) {
        int n = utf8_length(s);
        const char *e = *s == '&' ? "&amp;" : *s == '<' ? "&lt;" : *s == '>' ? "&gt;"
                      : *s == '"' ? "&quot;" : *s == '\'' ? "&apos;" : NULL;
        if (e)
            put(b, "%s", e);
        else if (n == 0)
            put(b, "?");
        else if (*s >= 0x20 || *s == '\t')
            put(b, "%.*s", n, (const char *)s);
        s += n ? n : 1;
    }
}

/* <text ATTRS>TEXT</text> */
static void put_text(svg_text *b, const char *attrs, const char *text)
{
    put(b, "<text %s>", attrs);
    put_escaped(b, text);
    put(b, "</text>\n");
}

/* The width of a label at the 13 px font, in pixels, roughly: what the
 * layout needs to keep labels apart. */
static double text_width(const char *s)
{
    size_t chars = 0;
    for (; *s; s++)
        chars += ((unsigned char)*s & 0xC0) != 0x80; /* UTF-8: count characters */
    return 7.8 * (double)chars;
}

/* ---- axes -------------------------------------------------------------------- */

/* A range and the step of its ticks, which sit on the multiples of step. */
typedef struct {
    double lo, hi, step;
} axis;

/* 1, 2 or 5 times a power of ten, near span / 5. */
static double nice_step(double span)
{
    double raw = span / 5, mag = pow(10, floor(log10(raw))), norm = raw / mag;
    return (norm < 1.5 ? 1 : norm < 3.5 ? 2 : norm < 7.5 ? 5 : 10) * mag;
}

/* The range of values min..max with a margin of pad on each side (none
 * below 0 when from_zero); a single value gets spread on each side. */
static axis make_axis(double min, double max, double pad, int from_zero, double spread)
{
    if (from_zero && min > 0)
        min = 0;
    if (max - min <= 1e-12 * fabs(max)) {
        min -= from_zero && min == 0 ? 0 : spread;
        max += spread;
    }
    double span = max - min;
    axis a = {from_zero && min == 0 ? 0 : min - pad * span, max + pad * span, 0};
    a.step = nice_step(a.hi - a.lo);
    return a;
}

/* A tick's label with the decimals that tell the axis's ticks apart
 * (0.05 needs 2); an axis of large values, or of steps below 1e-8, in
 * exponent form, with the digits that do the same. */
static void format_tick(double v, const axis *a, char *buf, size_t size)
{
    double largest = fmax(fabs(a->lo), fabs(a->hi));
    int decimals = a->step >= 1 ? 0 : (int)ceil(-log10(a->step) - 1e-9);
    int digits = (int)(floor(log10(largest)) - floor(log10(a->step) + 1e-9));
    int fixed = largest < 1e6 && decimals <= 8, zero = fabs(v) < 1e-9 * a->step;
    if (fixed)
        snprintf(buf, size, "%.*f", decimals, zero ? 0.0 : v); /* never "-0.0" */
    else if (zero)
        snprintf(buf, size, "0");
    else
        snprintf(buf, size, "%.*e", digits < 0 ? 0 : digits > 12 ? 12 : digits, v);
}

/* Tick k runs from first_tick(a) to last_tick(a); its value is k * step. */
static long first_tick(const axis *a)
{
    return (long)ceil(a->lo / a->step - 1e-9);
}

static long last_tick(const axis *a)
{
    return (long)floor(a->hi / a->step + 1e-9);
}

/* ---- panels ------------------------------------------------------------------ */

enum { PANEL_W = 400, PANEL_H = 320, PLOT_TOP = 62, PLOT_BOTTOM = PANEL_H - 46,
       MARKER_LIMIT = 40 /* points drawn as dots up to this many epochs */ };

typedef struct {
    int column;
    const char *label, *colour;
} series_def;

typedef struct {
    const char *id, *title, *ylabel;
    double scale;   /* accuracy is drawn in percent */
    int from_zero;  /* the learning rate's axis starts at 0 */
    series_def series[2];
} panel_def;

/* Every panel with a value to draw is drawn, in this order: a run with
 * accuracy has no MAE and R², a regression run no accuracy. */
static const panel_def panels[] = {
    {"loss", "loss", "loss", 1, 0,
     {{C_TRAIN_LOSS, "train", "#1f77b4"}, {C_VAL_LOSS, "validation", "#ff7f0e"}}},
    {"accuracy", "accuracy", "accuracy (%)", 100, 0,
     {{C_TRAIN_ACC, "train", "#1f77b4"}, {C_VAL_ACC, "validation", "#ff7f0e"}}},
    {"mae", "validation MAE", "mean absolute error", 1, 0,
     {{C_VAL_MAE, "validation MAE", "#2ca02c"}, {-1, NULL, NULL}}},
    {"r2", "validation R²", "R²", 1, 0,
     {{C_VAL_R2, "validation R²", "#9467bd"}, {-1, NULL, NULL}}},
    {"lr", "learning rate", "learning rate", 1, 1,
     {{C_LR, "learning rate", "#8c564b"}, {-1, NULL, NULL}}},
};
#define PANEL_COUNT (sizeof panels / sizeof panels[0])

/* Where a panel draws: its plot area in pixels and its two axes. */
typedef struct {
    double left;           /* the panel's left edge */
    double x0, x1, y0, y1; /* its plot area */
    axis x, y;
    const char *x_name;    /* the x axis: epoch or step */
} frame;

static double px(const frame *f, double v)
{
    return f->x0 + (v - f->x.lo) / (f->x.hi - f->x.lo) * (f->x1 - f->x0);
}

static double py(const frame *f, double v)
{
    return f->y1 - (v - f->y.lo) / (f->y.hi - f->y.lo) * (f->y1 - f->y0);
}

static int has_values(const log_table *t, int column)
{
    for (size_t r = 0; column >= 0 && r < t->rows; r++)
        if (isfinite(t->v[column][r]))
            return 1;
    return 0;
}

static int panel_has_values(const log_table *t, const panel_def *p)
{
    return has_values(t, p->series[0].column) || has_values(t, p->series[1].column);
}

/* The epochs' axis, shared by every panel. */
static axis epoch_axis(const log_table *t)
{
    double min = INFINITY, max = -INFINITY;
    for (size_t r = 0; r < t->rows; r++) {
        min = fmin(min, t->v[C_EPOCH][r]);
        max = fmax(max, t->v[C_EPOCH][r]);
    }
    axis a = make_axis(min, max, 0.03, 0, 1);
    a.step = fmax(a.step, 1); /* epochs are whole numbers */
    return a;
}

/* The plot area of the panel at left, fitted to its y tick labels. */
static frame panel_frame(const log_table *t, const panel_def *p, double left, axis x)
{
    double min = INFINITY, max = -INFINITY;
    for (int s = 0; s < 2; s++)
        for (size_t r = 0; p->series[s].column >= 0 && r < t->rows; r++) {
            double v = p->scale * t->v[p->series[s].column][r];
            if (isfinite(v)) {
                min = fmin(min, v);
                max = fmax(max, v);
            }
        }
    /* a single value gets a tenth of itself on each side */
    axis y = make_axis(min, max, 0.05, p->from_zero, fmax(fabs(max) / 10, 1e-3));
    frame f = {.left = left, .x = x, .y = y, .x_name = t->x_name ? t->x_name : "epoch"};
    double widest = 0;
    for (long k = first_tick(&f.y); k <= last_tick(&f.y); k++) {
        char label[32];
        format_tick((double)k * f.y.step, &f.y, label, sizeof label);
        widest = fmax(widest, text_width(label));
    }
    f.x0 = left + 30 + widest;
    f.x1 = left + PANEL_W - 20;
    f.y0 = PLOT_TOP;
    f.y1 = PLOT_BOTTOM;
    return f;
}

static void draw_axes(svg_text *b, const frame *f, const panel_def *p)
{
    char label[32], attrs[160];
    for (long k = first_tick(&f->y); k <= last_tick(&f->y); k++) {
        double v = (double)k * f->y.step, y = py(f, v);
        put(b, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
               "stroke=\"#e4e4e4\"/>\n", f->x0, y, f->x1, y);
        format_tick(v, &f->y, label, sizeof label);
        snprintf(attrs, sizeof attrs, "class=\"ytick\" x=\"%.1f\" y=\"%.1f\" "
                                      "text-anchor=\"end\"", f->x0 - 6, y + 4);
        put_text(b, attrs, label);
    }
    for (long k = first_tick(&f->x); k <= last_tick(&f->x); k++) {
        double v = (double)k * f->x.step, x = px(f, v);
        put(b, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
               "stroke=\"#e4e4e4\"/>\n", x, f->y0, x, f->y1);
        format_tick(v, &f->x, label, sizeof label);
        snprintf(attrs, sizeof attrs, "class=\"xtick\" x=\"%.1f\" y=\"%.1f\" "
                                      "text-anchor=\"middle\"", x, f->y1 + 16);
        put_text(b, attrs, label);
    }
    put(b, "<rect class=\"area\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
           "fill=\"none\" stroke=\"#888888\"/>\n", f->x0, f->y0, f->x1 - f->x0, f->y1 - f->y0);
    snprintf(attrs, sizeof attrs, "class=\"xlabel\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\"",
             (f->x0 + f->x1) / 2, f->y1 + 36);
    put_text(b, attrs, f->x_name);
    double x = f->left + 16, y = (f->y0 + f->y1) / 2;
    snprintf(attrs, sizeof attrs, "class=\"ylabel\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" "
                                  "transform=\"rotate(-90 %.1f %.1f)\"", x, y, x, y);
    put_text(b, attrs, p->ylabel);
}

static void draw_series(svg_text *b, const frame *f, const log_table *t, const series_def *s,
                        double scale)
{
    put(b, "<polyline class=\"series\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" "
           "stroke-linejoin=\"round\" points=\"", s->colour);
    size_t points = 0;
    for (size_t r = 0; r < t->rows; r++) {
        double v = scale * t->v[s->column][r];
        if (isfinite(v))
            put(b, "%s%.2f,%.2f", points++ ? " " : "", px(f, t->v[C_EPOCH][r]), py(f, v));
    }
    put(b, "\"/>\n");
    for (size_t r = 0; points <= MARKER_LIMIT && r < t->rows; r++) {
        double v = scale * t->v[s->column][r];
        if (isfinite(v))
            put(b, "<circle class=\"point\" cx=\"%.2f\" cy=\"%.2f\" r=\"2.5\" fill=\"%s\"/>\n",
                px(f, t->v[C_EPOCH][r]), py(f, v), s->colour);
    }
}

/* One entry of the legend row above the plot area; returns the next x. */
static double legend_entry(svg_text *b, double x, double y, const char *colour, int dashed,
                           const char *label)
{
    put(b, "<line class=\"swatch\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
           "stroke=\"%s\" stroke-width=\"2\"%s/>\n", x, y - 4, x + 18, y - 4, colour,
        dashed ? " stroke-dasharray=\"4 3\"" : "");
    char attrs[96];
    snprintf(attrs, sizeof attrs, "class=\"legend\" x=\"%.1f\" y=\"%.1f\"", x + 23, y);
    put_text(b, attrs, label);
    return x + 23 + text_width(label) + 14;
}

/* The row of the epoch with the lowest validation loss, or -1. */
static long best_row(const log_table *t)
{
    long best = -1;
    for (size_t r = 0; r < t->rows; r++)
        if (isfinite(t->v[C_VAL_LOSS][r]) &&
            (best < 0 || t->v[C_VAL_LOSS][r] < t->v[C_VAL_LOSS][best]))
            best = (long)r;
    return best;
}

static void draw_panel(svg_text *b, const log_table *t, const panel_def *p, double left,
                       axis x, long best)
{
    frame f = panel_frame(t, p, left, x);
    put(b, "<g class=\"panel\" id=\"%s\">\n", p->id);
    char attrs[96];
    snprintf(attrs, sizeof attrs, "class=\"title\" x=\"%.1f\" y=\"22\" font-size=\"15\" "
                                  "font-weight=\"bold\"", f.x0);
    put_text(b, attrs, p->title);
    draw_axes(b, &f, p);
    double legend_x = f.x0;
    for (int s = 0; s < 2; s++)
        if (has_values(t, p->series[s].column)) {
            draw_series(b, &f, t, &p->series[s], p->scale);
            legend_x = legend_entry(b, legend_x, f.y0 - 14, p->series[s].colour, 0,
                                    p->series[s].label);
        }
    if (best >= 0) {
        double bx = px(&f, t->v[C_EPOCH][best]);
        put(b, "<line class=\"best\" x1=\"%.2f\" y1=\"%.1f\" x2=\"%.2f\" y2=\"%.1f\" "
               "stroke=\"#555555\" stroke-dasharray=\"4 3\"/>\n", bx, f.y0, bx, f.y1);
        char label[64];
        snprintf(label, sizeof label, "best %s %.0f", f.x_name, t->v[C_EPOCH][best]);
        legend_entry(b, legend_x, f.y0 - 14, "#555555", 1, label);
    }
    put(b, "</g>\n");
}

static void draw(svg_text *b, const log_table *t, const char *log_path)
{
    size_t drawn = 0;
    for (size_t i = 0; i < PANEL_COUNT; i++)
        drawn += (size_t)panel_has_values(t, &panels[i]);
    put(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
           "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%zu\" height=\"%d\" "
           "viewBox=\"0 0 %zu %d\" font-family=\"DejaVu Sans, Verdana, sans-serif\" "
           "font-size=\"13\" fill=\"#222222\">\n<title>",
        drawn * PANEL_W, PANEL_H, drawn * PANEL_W, PANEL_H);
    put_escaped(b, "training curves of ");
    put_escaped(b, log_path);
    put(b, "</title>\n<rect width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n");
    axis x = epoch_axis(t);
    long best = best_row(t);
    double left = 0;
    for (size_t i = 0; i < PANEL_COUNT; i++)
        if (panel_has_values(t, &panels[i])) {
            draw_panel(b, t, &panels[i], left, x, best);
            left += PANEL_W;
        }
    put(b, "</svg>\n");
}

/* ---- files ------------------------------------------------------------------- */

kiln_status kiln_plot(const char *run, const char *svg_path)
{
    if (!run)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_plot: run is NULL; expected a run "
                                                    "directory or a log.csv path");
    char log_path[4096], dir[4096], default_svg[4200];
    struct stat info;
    if (stat(run, &info) != 0)
        return error_set(KILN_ERR_IO, "%s: no such run directory or log.csv (%s)", run,
                         strerror(errno));
    int is_dir = S_ISDIR(info.st_mode);
    if (snprintf(log_path, sizeof log_path, is_dir ? "%s/log.csv" : "%s", run) >=
        (int)sizeof log_path)
        return error_set(KILN_ERR_IO, "%s: path too long", run);
    dir_of(log_path, dir, sizeof dir);
    snprintf(default_svg, sizeof default_svg, "%s/curves.svg", dir);
    log_table t = {0};
    kiln_status st = read_log(log_path, &t);
    svg_text b = {0};
    if (st == KILN_OK)
        draw(&b, &t, log_path);
    if (st == KILN_OK && b.failed)
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory for the SVG", log_path);
    if (st == KILN_OK)
        st = write_bytes_output(svg_path ? svg_path : default_svg, b.s, b.len);
    free(b.s);
    table_free(&t);
    return st;
}
