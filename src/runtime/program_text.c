/* Program texts: the embedded sources a program joins, each cut down to
 * the kernels it holds, and whether the texts of several programs can be
 * compiled as one (bundles, program.c's program_bundle_build). Text only:
 * nothing here touches OpenCL. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/program_text.h"

static const kiln_cl_source *find_source(const char *name, size_t len)
{
    for (size_t i = 0; i < kiln_cl_source_count; i++)
        if (strlen(kiln_cl_sources[i].name) == len &&
            strncmp(kiln_cl_sources[i].name, name, len) == 0)
            return &kiln_cl_sources[i];
    return NULL;
}

kiln_status program_text_resolve(const char *name, const char *only, program_text *out)
{
    out->name = name;
    out->only = only;
    out->count = 0;
    for (const char *p = name;; p++) {
        const char *end = strchr(p, '+');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const kiln_cl_source *src = find_source(p, len);
        if (!src)
            return error_set(KILN_ERR_INVALID_ARGUMENT, "no embedded kernel source \"%.*s\"",
                             (int)len, p);
        if (out->count == MAX_PARTS)
            return error_set(KILN_ERR_INVALID_ARGUMENT, "program \"%s\" joins more than %d "
                                                        "sources", name, MAX_PARTS);
        out->part[out->count++] = src;
        if (!end)
            return KILN_OK;
        p = end;
    }
}

#define KERNEL_MARK "\n__kernel"

static int ident_char(char c)
{
    return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* The length of the identifier at s. */
static size_t ident_len(const char *s)
{
    size_t n = 0;
    while (ident_char(s[n]))
        n++;
    return n;
}

/* The end of the line at c, a line that a backslash before its break
 * continues included. */
static const char *line_end(const char *c)
{
    while (*c && !(*c == '\n' && c[-1] != '\\'))
        c++;
    return c;
}

/* Just past the comment that starts at c, or c itself where none does: a
 * block comment through its close (an unclosed one to the end of the
 * text), a line comment to its line break. */
static const char *past_comment(const char *c)
{
    if (c[0] == '/' && c[1] == '*') {
        const char *close = strstr(c + 2, "*/");
        return close ? close + 2 : c + strlen(c);
    }
    return c[0] == '/' && c[1] == '/' ? line_end(c) : c;
}

/* Just past the brace that closes the first '{' at or after s, skipping
 * comments; NULL when there is none. */
static const char *body_end(const char *s)
{
    int depth = 0;
    for (const char *c = s; *c;) {
        const char *past = past_comment(c);
        if (past != c) {
            c = past;
            continue;
        }
        if (*c == '{')
            depth++;
        else if (*c == '}' && --depth == 0)
            return c + 1;
        else if (*c == '}' && depth < 0)
            return NULL;
        c++;
    }
    return NULL;
}

/* Whether the space-separated list names the kernel name[0..len). */
int kernel_list_has(const char *list, const char *name, size_t len)
{
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, " ");
        if (n == len && strncmp(p, name, len) == 0)
            return 1;
        p += n;
        p += strspn(p, " ");
    }
    return 0;
}

/* text without the kernels that `keep` (names separated by spaces) does not
 * name (NULL when out of memory); *kept is set when it keeps one. A program
 * pays for its own kernels only: PoCL compiles every kernel of a program to
 * machine code when its binary is asked for.
 * Kernels are declared at the start of a line, "__kernel [attributes]
 * void name(...) {...}"; a dropped kernel leaves its line breaks, so #line
 * markers and build logs still name the right lines of cl/. */
char *keep_kernels(const char *text, const char *keep, int *kept)
{
    char *out = malloc(strlen(text) + 1);
    if (!out)
        return NULL;
    char *o = out;
    const char *p = text, *mark;
    int found = 0;
    while ((mark = strstr(p, KERNEL_MARK)) != NULL) {
        const char *ret = strstr(mark, "void"), *name = ret ? ret + 4 : NULL;
        while (name && (*name == ' ' || *name == '\n'))
            name++;
        size_t len = name ? ident_len(name) : 0;
        const char *end = name ? body_end(name) : NULL;
        int drop = end && !kernel_list_has(keep, name, len);
        found |= end && !drop;
        const char *next = drop ? end : mark + 1;
        memcpy(o, p, (size_t)(mark + 1 - p));
        o += mark + 1 - p;
        for (const char *c = mark + 1; drop && c < end; c++)
            if (*c == '\n')
                *o++ = '\n';
        if (!drop) {
            memcpy(o, mark + 1, (size_t)(next - mark - 1));
            o += next - mark - 1;
        }
        p = next;
    }
    strcpy(o, p);
    *kept |= found;
    return out;
}

/* ---- bundles: the programs of several sources and options as one ----------
 *
 * PoCL spends about 0.13 s on any program before its kernels (clang reads
 * the OpenCL headers, LLVM links the builtin library), and builds one
 * program at a time. Requests whose sources and options cannot change each
 * other's meaning are therefore built as one program: a -D macro that only
 * one request passes is named nowhere in the other's sources, the ones both
 * pass agree, any other flag is passed by both, and no macro or function
 * that a source of only one defines is named in the other's. What this
 * textual check misses fails the build, and those requests build apart. */


/* Whether text names the identifier name[0..len) (in a comment too: a
 * false mention only keeps two programs apart). */
static int mentions(const char *text, const char *name, size_t len)
{
    for (const char *p = text; (p = strstr(p, name)) != NULL; p++)
        if ((p == text || !ident_char(p[-1])) && !ident_char(p[len]))
            return 1;
    return 0;
}

/* Each embedded source with its comments blanked (spaces, so that
 * offsets hold), indexed as kiln_cl_sources, for the checks below: a name
 * in a comment changes nothing. NULL when out of memory (the checks then
 * read the sources as they are). */
char **plain_sources(void)
{
    char **plain = calloc(kiln_cl_source_count, sizeof *plain);
    for (size_t i = 0; plain && i < kiln_cl_source_count; i++) {
        const char *t = kiln_cl_sources[i].text;
        char *p = plain[i] = malloc(strlen(t) + 1);
        if (!p) {
            for (size_t j = 0; j < i; j++)
                free(plain[j]);
            free(plain);
            return NULL;
        }
        for (const char *c = t; *c;) {
            const char *end = past_comment(c);
            if (end == c)
                *p++ = *c++;
            else
                for (; c < end; c++)
                    *p++ = *c == '\n' ? '\n' : ' ';
        }
        *p = '\0';
    }
    return plain;
}

void plain_free(char **plain)
{
    for (size_t i = 0; plain && i < kiln_cl_source_count; i++)
        free(plain[i]);
    free(plain);
}

/* A part's text for the checks: without its comments where plain has it. */
static const char *part_text(const kiln_cl_source *part, char *const *plain)
{
    return plain ? plain[part - kiln_cl_sources] : part->text;
}

/* Whether a part of t names name[0..len). */
static int text_mentions(const program_text *t, const char *name, size_t len,
                         char *const *plain)
{
    char copy[128];
    if (len >= sizeof copy)
        return 1;
    memcpy(copy, name, len);
    copy[len] = '\0';
    for (int i = 0; i < t->count; i++)
        if (mentions(part_text(t->part[i], plain), copy, len))
            return 1;
    return 0;
}

static int has_part(const program_text *t, const kiln_cl_source *part)
{
    for (int i = 0; i < t->count; i++)
        if (t->part[i] == part)
            return 1;
    return 0;
}

/* The token of options (separated by spaces) that is -Dname[=...], or
 * NULL; its length in *len. */
static const char *find_define(const char *options, const char *name, size_t name_len,
                               size_t *len)
{
    for (const char *p = options + strspn(options, " "); *p; p += strspn(p, " ")) {
        size_t n = strcspn(p, " ");
        if (n > 2 && p[0] == '-' && p[1] == 'D' && strncmp(p + 2, name, name_len) == 0 &&
            (p[2 + name_len] == '=' || n == 2 + name_len)) {
            *len = n;
            return p;
        }
        p += n;
    }
    return NULL;
}

/* Whether options (t's) sit with other (u's): each -D macro of options
 * either has the same value in other or is named by no part of u, and
 * each other flag is in other too. */
static int options_fit(const char *options, const char *other, const program_text *u,
                       char *const *plain)
{
    for (const char *p = options + strspn(options, " "); *p; p += strspn(p, " ")) {
        size_t n = strcspn(p, " "), len;
        if (n > 2 && p[0] == '-' && p[1] == 'D') {
            size_t name_len = strcspn(p + 2, "= ");
            const char *there = find_define(other, p + 2, name_len, &len);
            if (there ? len != n || strncmp(there, p, n) != 0
                      : text_mentions(u, p + 2, name_len, plain))
                return 0;
        } else {
            int found = 0;
            for (const char *q = other + strspn(other, " "); *q && !found; q += strspn(q, " ")) {
                size_t m = strcspn(q, " ");
                found = m == n && strncmp(q, p, n) == 0;
                q += m;
            }
            if (!found)
                return 0;
        }
        p += n;
    }
    return 1;
}

/* Whether no macro that a part of t outside u defines or undefines is
 * named by a part of u. */
static int defines_fit(const program_text *t, const program_text *u, char *const *plain)
{
    for (int i = 0; i < t->count; i++) {
        if (has_part(u, t->part[i]))
            continue;
        for (const char *line = part_text(t->part[i], plain); *line;) {
            const char *c = line + strspn(line, " \t");
            if (*c == '#') {
                c += 1 + strspn(c + 1, " \t");
                size_t word = ident_len(c);
                if ((word == 6 && strncmp(c, "define", 6) == 0) ||
                    (word == 5 && strncmp(c, "undef", 5) == 0)) {
                    c += word + strspn(c + word, " \t");
                    if (text_mentions(u, c, ident_len(c), plain))
                        return 0;
                }
            }
            line += strcspn(line, "\n");
            line += *line == '\n';
        }
    }
    return 1;
}

/* Past the comment or preprocessor line at c (a line's first non-blank
 * '#', its continuations included), or c itself when none starts there. */
static const char *skip_aside(const char *c, int line_start)
{
    const char *past = past_comment(c);
    return past == c && c[0] == '#' && line_start ? line_end(c) : past;
}

/* Whether the name c (n characters) has no lower-case letter. */
static int capitals(const char *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (c[i] >= 'a' && c[i] <= 'z')
            return 0;
    return 1;
}

/* Whether no function that a part of t outside u defines at file scope
 * (a name followed by '(' outside any braces and parentheses) is named by
 * a part of u: two sources defining the same helper do not build as one
 * program. A name in capitals there is a macro's use (math.cl's MATH_ERF,
 * which defines the function its first argument names): not a function. */
static int functions_fit(const program_text *t, const program_text *u, char *const *plain)
{
    for (int i = 0; i < t->count; i++) {
        if (has_part(u, t->part[i]))
            continue;
        int depth = 0, line_start = 1;
        for (const char *c = part_text(t->part[i], plain); *c;) {
            const char *past = skip_aside(c, line_start);
            if (past != c) {
                c = past;
                continue;
            }
            if (ident_char(*c)) {
                size_t n = ident_len(c);
                const char *after = c + n;
                after += strspn(after, " \t\n");
                if (depth == 0 && *after == '(' && !(*c >= '0' && *c <= '9') &&
                    strncmp(c, "__", 2) != 0 && !capitals(c, n) && text_mentions(u, c, n, plain))
                    return 0;
                c += n;
                line_start = 0;
                continue;
            }
            depth += (*c == '{' || *c == '(') - (*c == '}' || *c == ')');
            line_start = *c == '\n' || (line_start && (*c == ' ' || *c == '\t'));
            c++;
        }
    }
    return 1;
}


/* Appends the words of list (separated by spaces) that buf does not hold;
 * 0 when buf has no room. */
static int append_words(char *buf, size_t size, const char *list)
{
    size_t used = strlen(buf);
    for (const char *p = list + strspn(list, " "); *p; p += strspn(p, " ")) {
        size_t n = strcspn(p, " ");
        if (!kernel_list_has(buf, p, n)) {
            if (used + n + 2 > size)
                return 0;
            if (used)
                buf[used++] = ' ';
            memcpy(buf + used, p, n);
            buf[used += n] = '\0';
        }
        p += n;
    }
    return 1;
}

/* Adds request r (its text, options and kernels) to b when they fit. */
int bundle_take(program_bundle *b, const program_text *r, const char *options,
                       const char *kernels, char *const *plain)
{
    if (b->requests > 0 &&
        !(options_fit(options, b->options, &b->text, plain) &&
          options_fit(b->options, options, r, plain) && defines_fit(&b->text, r, plain) &&
          defines_fit(r, &b->text, plain) && functions_fit(&b->text, r, plain) &&
          functions_fit(r, &b->text, plain)))
        return 0;
    program_bundle next = *b;
    next.text.only = next.kernels;
    for (int i = 0; i < r->count; i++) {
        if (has_part(&next.text, r->part[i]))
            continue;
        size_t used = strlen(next.name), n = strlen(r->part[i]->name);
        if (next.text.count == MAX_PARTS || used + n + 2 > sizeof next.name)
            return 0;
        next.text.part[next.text.count++] = r->part[i];
        snprintf(next.name + used, sizeof next.name - used, "%s%s", used ? "+" : "",
                 r->part[i]->name);
    }
    if (!append_words(next.options, sizeof next.options, options) ||
        !append_words(next.kernels, sizeof next.kernels, kernels))
        return 0;
    next.requests++;
    *b = next;
    b->text.name = b->name;
    b->text.only = b->kernels;
    return 1;
}
