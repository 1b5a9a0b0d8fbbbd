/* A model's own text: every section graph_add accepted, as a model file
 * would say it, so that a checkpoint can carry the model it belongs to
 * and models built with kiln_model_add can be written out. The [train]
 * section is written from the model's settings as they are now. */
#include <stdlib.h>
#include <string.h>

#include "graph/graph.h"

/* Appends text to the model's record; 0 when out of memory. */
static int append(kiln_model *m, const char *text)
{
    size_t n = strlen(text);
    if (m->text_len + n + 1 > m->text_cap) {
        size_t cap = m->text_cap ? m->text_cap : 256;
        while (cap < m->text_len + n + 1)
            cap *= 2;
        char *grown = realloc(m->text, cap);
        if (!grown)
            return 0;
        m->text = grown;
        m->text_cap = cap;
    }
    memcpy(m->text + m->text_len, text, n + 1);
    m->text_len += n;
    return 1;
}

kiln_status graph_record(kiln_model *m, const char *kind, const graph_kv *kv, size_t n)
{
    size_t before = m->text_len;
    int ok = append(m, "[") && append(m, kind) && append(m, "]\n");
    for (size_t i = 0; ok && i < n; i++)
        ok = append(m, kv[i].key) && append(m, " = ") && append(m, kv[i].value) &&
             append(m, "\n");
    if (ok)
        return KILN_OK;
    m->text_len = before;
    if (m->text)
        m->text[before] = '\0';
    return error_set(KILN_ERR_OUT_OF_MEMORY, "model: out of memory");
}

int graph_text_fits(const char *value)
{
    return !strpbrk(value, "\r\n");
}

kiln_status kiln_model_text(const kiln_model *m, kiln_write_fn fn, void *user)
{
    if (!m || !fn)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_model_text: a model and a write "
                                                    "function are required");
    if (m->text)
        fn(user, m->text);
    if (m->train_count)
        fn(user, "[train]\n");
    for (size_t i = 0; i < m->train_count; i++) {
        fn(user, m->train[i].key);
        fn(user, " = ");
        fn(user, m->train[i].value);
        fn(user, "\n");
    }
    return KILN_OK;
}
