/* The model-file front end: INI read by inih, one section per layer, in
 * order. inih hands over key = value pairs; a line-counting reader around
 * it sees every raw line, so it knows where each section starts (even one
 * with no keys) and which line every key is on. The sections are then fed
 * to graph_add in order. */
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/graph.h"

typedef struct {
    char kind[64];
    int line;
    graph_kv *kv;
    size_t n, capacity;
} section;

typedef struct {
    FILE *file;
    const char *path;
    int line;
    int bad_line;       /* a line the reader refused, and why */
    const char *why;
    section *sections;
    size_t count, capacity;
} parse_state;

static char *dup_text(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    return d ? memcpy(d, s, n) : NULL;
}

static void free_sections(parse_state *ps)
{
    for (size_t i = 0; i < ps->count; i++) {
        for (size_t j = 0; j < ps->sections[i].n; j++) {
            free((char *)ps->sections[i].kv[j].key);
            free((char *)ps->sections[i].kv[j].value);
        }
        free(ps->sections[i].kv);
    }
    free(ps->sections);
}

/* Notes a section header "[name]" at the current line. */
static int start_section(parse_state *ps, const char *text)
{
    const char *close = strchr(text, ']');
    if (!close)
        return 1; /* inih reports the unterminated header */
    if (ps->count == ps->capacity) {
        size_t cap = ps->capacity ? 2 * ps->capacity : 16;
        section *grown = realloc(ps->sections, cap * sizeof *grown);
        if (!grown)
            return 0;
        ps->sections = grown;
        ps->capacity = cap;
    }
    section *s = &ps->sections[ps->count++];
    memset(s, 0, sizeof *s);
    size_t len = (size_t)(close - text - 1);
    while (len > 0 && text[1] == ' ')
        text++, len--;
    while (len > 0 && text[len] == ' ')
        len--;
    snprintf(s->kind, sizeof s->kind, "%.*s", (int)len, text + 1);
    s->line = ps->line;
    return 1;
}

/* inih's reader: one line per call, counted, checked for length and for
 * binary data, with section headers noted. */
static char *read_line(char *buf, int size, void *stream)
{
    parse_state *ps = stream;
    if (ps->why)
        return NULL;
    int c = 0, used = 0;
    while (used < size - 1 && (c = fgetc(ps->file)) != EOF) {
        if (c == '\0') {
            ps->why = "binary data (a zero byte) where text was expected";
            ps->bad_line = ps->line + 1;
            return NULL;
        }
        buf[used++] = (char)c;
        if (c == '\n')
            break;
    }
    if (used == 0)
        return NULL;
    buf[used] = '\0';
    ps->line++;
    if (used == size - 1 && c != '\n' && fgetc(ps->file) != EOF) {
        ps->why = "the line is too long";
        ps->bad_line = ps->line;
        return NULL;
    }
    const char *p = buf;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '[' && !start_section(ps, p)) {
        ps->why = "out of memory";
        ps->bad_line = ps->line;
        return NULL;
    }
    return buf;
}

static int on_key(void *user, const char *section_name, const char *key, const char *value)
{
    parse_state *ps = user;
    (void)section_name;
    if (ps->count == 0) {
        ps->why = "a key outside any section; start the file with [input]";
        ps->bad_line = ps->line;
        return 0;
    }
    section *s = &ps->sections[ps->count - 1];
    if (s->n == s->capacity) {
        size_t cap = s->capacity ? 2 * s->capacity : 8;
        graph_kv *grown = realloc(s->kv, cap * sizeof *grown);
        if (!grown)
            return 0;
        s->kv = grown;
        s->capacity = cap;
    }
    s->kv[s->n] = (graph_kv){dup_text(key), dup_text(value), ps->line};
    if (!s->kv[s->n].key || !s->kv[s->n].value) {
        free((char *)s->kv[s->n].key);
        free((char *)s->kv[s->n].value);
        return 0;
    }
    s->n++;
    return 1;
}

/* "name@line" of every named section after index i, for messages. */
static kiln_status build(parse_state *ps, kiln_model *m)
{
    kiln_status st = KILN_OK;
    char (*names)[GRAPH_NAME_MAX + 16] = calloc(ps->count + 1, sizeof *names);
    const char **later = calloc(ps->count + 1, sizeof *later);
    if (!names || !later)
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", ps->path);
    size_t named = 0;
    for (size_t i = 0; st == KILN_OK && i < ps->count; i++)
        for (size_t j = 0; j < ps->sections[i].n; j++)
            if (strcmp(ps->sections[i].kv[j].key, "name") == 0)
                snprintf(names[i], sizeof names[i], "%.*s@%d", GRAPH_NAME_MAX,
                         ps->sections[i].kv[j].value, ps->sections[i].kv[j].line);
    for (size_t i = 0; st == KILN_OK && i < ps->count; i++) {
        named = 0;
        for (size_t j = i + 1; j < ps->count; j++)
            if (names[j][0])
                later[named++] = names[j];
        st = graph_add(m, ps->sections[i].kind, ps->sections[i].kv, ps->sections[i].n,
                       ps->sections[i].line, later, named);
    }
    free(names);
    free(later);
    return st;
}

static kiln_status parse_file(FILE *f, const char *path, kiln_model **out)
{
    parse_state ps = {.file = f, .path = path};
    int bad = ini_parse_stream(read_line, &ps, on_key, &ps);
    kiln_status st = KILN_OK;
    if (ps.why)
        st = error_set(KILN_ERR_MODEL, "%s:%d: %s", path, ps.bad_line, ps.why);
    else if (bad == -2)
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    else if (bad > 0)
        st = error_set(KILN_ERR_MODEL, "%s:%d: cannot read this line; expected [layer], "
                                       "key = value, or a comment starting with ; or #",
                       path, bad);
    kiln_model *m = NULL;
    if (st == KILN_OK)
        st = kiln_model_create(&m);
    if (st == KILN_OK) {
        snprintf(m->file, sizeof m->file, "%s", path);
        st = build(&ps, m);
    }
    if (st == KILN_OK)
        st = graph_finish(m);
    free_sections(&ps);
    if (st != KILN_OK) {
        kiln_model_free(m);
        return st;
    }
    *out = m;
    return KILN_OK;
}

kiln_status kiln_model_load(const char *path, kiln_model **out)
{
    kiln_status required = require_args("kiln_model_load", ARG(path), ARG(out), NULL);
    if (required != KILN_OK)
        return required;
    FILE *f = fopen(path, "rb");
    if (!f)
        return error_set(KILN_ERR_IO, "%s: cannot open the model file", path);
    kiln_status st = parse_file(f, path, out);
    fclose(f);
    return st;
}

kiln_status kiln_model_parse(const char *text, const char *name, kiln_model **out)
{
    kiln_status required = require_args("kiln_model_parse", ARG(text), ARG(out), NULL);
    if (required != KILN_OK)
        return required;
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    if (!f)
        return error_set(KILN_ERR_IO, "kiln_model_parse: cannot read the text");
    kiln_status st = parse_file(f, name ? name : "<model>", out);
    fclose(f);
    return st;
}
