/* The keys of the ops' rows: reading a value by its declaration, and the
 * defaults the declarations give. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"

static const char *const init_names[] = {
#define INIT_NAME(id, name) name,
    INIT_LIST(INIT_NAME)
#undef INIT_NAME
};
_Static_assert(sizeof init_names / sizeof init_names[0] == INIT_COUNT, "one name per init_kind");

const op_choice op_init_choices[INIT_COUNT] = {
#define INIT_CHOICE(id, name) {name, INIT_##id},
    INIT_LIST(INIT_CHOICE)
#undef INIT_CHOICE
};

const char *init_name(init_kind kind)
{
    return (unsigned)kind < INIT_COUNT ? init_names[kind] : NULL;
}

/* The field of a key, as each type stores it. */
static void *field_of(const op_key *k, op_attrs *a)
{
    return (char *)a + k->field;
}

_Static_assert(sizeof(kiln_act) == sizeof(int) && sizeof(init_kind) == sizeof(int),
               "choice keys store enums as int");

static void store(const op_key *k, op_attrs *a, double v)
{
    void *f = field_of(k, a);
    switch (k->type) {
    case KEY_WHOLE:
        *(size_t *)f = (size_t)v;
        break;
    case KEY_FLOAT:
        *(float *)f = (float)v;
        break;
    default: /* int, bool and choices */
        *(int *)f = (int)v;
        break;
    }
}

void op_keys_default(const op_key *keys, int n, op_attrs *a)
{
    for (int i = 0; i < n; i++)
        store(&keys[i], a, keys[i].def);
}

/* A whole number, all of the text: unsigned for KEY_WHOLE. */
static int read_whole(const char *v, int sign, double *out)
{
    if (!*v || (!sign && (*v < '0' || *v > '9')))
        return 0;
    errno = 0;
    char *end;
    long long x = sign ? strtoll(v, &end, 10) : (long long)strtoull(v, &end, 10);
    if (errno || *end || (!sign && x < 0))
        return 0;
    *out = (double)x;
    return 1;
}

static int read_number(const char *v, double *out)
{
    errno = 0;
    char *end;
    double x = strtod(v, &end);
    if (!*v || errno || *end || !isfinite(x))
        return 0;
    *out = x;
    return 1;
}

/* "a, b or c" from the choices. */
static const char *choice_list(const op_key *k, char *buf, size_t size)
{
    int total = 0, seen = 0;
    for (int i = 0; i < k->n_choices; i++)
        total += k->choices[i].name != NULL;
    buf[0] = '\0';
    for (int i = 0; i < k->n_choices; i++) {
        if (!k->choices[i].name)
            continue;
        size_t used = strlen(buf);
        const char *sep = seen == 0 ? "" : seen + 1 == total ? " or " : ", ";
        snprintf(buf + used, size - used, "%s%s", sep, k->choices[i].name);
        seen++;
    }
    return buf;
}

static const char *expected(const op_key *k, char *buf, size_t size)
{
    if (k->expected)
        return k->expected;
    switch (k->type) {
    case KEY_BOOL:
        return "true or false";
    case KEY_CHOICE:
        return choice_list(k, buf, size);
    default:
        snprintf(buf, size, "a whole number from %.0f to %.0f", k->lo, k->hi);
        return buf;
    }
}

static int read_choice(const op_key *k, const char *v, double *out)
{
    for (int i = 0; i < k->n_choices; i++)
        if (k->choices[i].name && strcmp(k->choices[i].name, v) == 0) {
            *out = k->choices[i].value;
            return 1;
        }
    return 0;
}

static int read_value(const op_key *k, const char *v, double *x)
{
    switch (k->type) {
    case KEY_WHOLE:
    case KEY_INT:
        return read_whole(v, k->type == KEY_INT, x) && *x >= k->lo && *x <= k->hi;
    case KEY_FLOAT:
        return read_number(v, x) && *x >= k->lo && *x <= k->hi && !(k->open && *x == k->hi);
    case KEY_BOOL:
        *x = strcmp(v, "true") == 0 || strcmp(v, "1") == 0;
        return *x || strcmp(v, "false") == 0 || strcmp(v, "0") == 0;
    case KEY_CHOICE:
        return read_choice(k, v, x);
    }
    return 0;
}

const char *op_key_read(const op_key *k, op_attrs *a, const char *value, char *buf,
                        size_t size)
{
    double x;
    if (!read_value(k, value, &x))
        return expected(k, buf, size);
    store(k, a, x);
    return NULL;
}
