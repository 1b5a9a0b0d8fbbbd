/* Program texts (program_text.c), for program.c: which embedded sources a
 * program joins, and whether several programs' texts can build as one. */
#ifndef KILN_RUNTIME_PROGRAM_TEXT_H
#define KILN_RUNTIME_PROGRAM_TEXT_H

#include "runtime/runtime.h"

/* A program's text: one embedded source, or several joined by '+'
 * ("group.cl+norm.cl"), compiled together in that order; with `only`, the
 * program holds those kernels alone (keep_kernels): one name, or several
 * separated by spaces. */
#define MAX_PARTS 16

typedef struct {
    const char *name;
    const char *only; /* NULL: every kernel; else names separated by spaces */
    const kiln_cl_source *part[MAX_PARTS];
    int count;
} program_text;

/* The parts of name ("group.cl+norm.cl") into out, keeping only (NULL:
 * every kernel); an error names a source that is not embedded. */
kiln_status program_text_resolve(const char *name, const char *only, program_text *out);

/* Whether the space-separated list names the kernel name[0..len). */
int kernel_list_has(const char *list, const char *name, size_t len);

/* text without the kernels that keep (names separated by spaces) does not
 * name, NULL when out of memory; *kept is set when it keeps one. */
char *keep_kernels(const char *text, const char *keep, int *kept);

#define BUNDLE_OPTIONS_MAX 800
#define BUNDLE_KERNELS_MAX 2048
#define BUNDLE_NAME_MAX 512

/* Several requests' texts gathered into one program: its parts, a name
 * joining theirs, the union of their options and of their kernels. */
typedef struct {
    program_text text;
    char name[BUNDLE_NAME_MAX];
    char options[BUNDLE_OPTIONS_MAX + 1];
    char kernels[BUNDLE_KERNELS_MAX];
    int requests;
} program_bundle;

/* Each embedded source with its comments blanked, indexed as
 * kiln_cl_sources (NULL when out of memory: the checks then read the
 * sources as they are); plain_free frees it. */
char **plain_sources(void);
void plain_free(char **plain);

/* Adds request r (its text, options and kernels) to b when their sources
 * and options cannot change each other's meaning; 0 when they could, or
 * when b has no room. */
int bundle_take(program_bundle *b, const program_text *r, const char *options,
                const char *kernels, char *const *plain);

#endif
