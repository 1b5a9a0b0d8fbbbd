/* The operator table, and the shape checks every call goes through. */
#include <stdio.h>
#include <string.h>

#include "ops/ops.h"

#define OP_EXTERN(id, row) extern const op_desc op_##row##_desc;
OP_LIST(OP_EXTERN)
#undef OP_EXTERN

static const op_desc *const table[] = {
#define OP_ROW(id, row) [OP_##id] = &op_##row##_desc,
    OP_LIST(OP_ROW)
#undef OP_ROW
};

_Static_assert(sizeof table / sizeof table[0] == OP_COUNT, "one table row per op_kind");

const op_desc *op_get(op_kind kind)
{
    return (unsigned)kind < OP_COUNT ? table[kind] : NULL;
}

op_kind op_find(const char *name)
{
    for (int k = 0; k < OP_COUNT; k++)
        if (strcmp(table[k]->name, name) == 0)
            return (op_kind)k;
    return OP_COUNT;
}

op_attrs op_attrs_for(op_kind kind, kiln_act act)
{
    op_attrs a = {0};
    const op_desc *d = op_get(kind);
    if (d)
        op_keys_default(d->keys, d->n_keys, &a);
    if (act != KILN_ACT_NONE && kind != OP_ACTIVATION)
        op_keys_default(op_activation_desc.keys, op_activation_desc.n_keys, &a);
    a.act = act;
    return a;
}

op_attrs op_attrs_default(void)
{
    op_attrs a = {0}, first = {0};
    unsigned char size[sizeof a] = {0}, clash[sizeof a] = {0};
    for (int k = 0; k < OP_COUNT; k++)
        for (int i = 0; i < table[k]->n_keys; i++) {
            const op_key *key = &table[k]->keys[i];
            op_attrs one = first;
            op_keys_default(key, 1, &one);
            size_t at = key->field;
            if (!size[at]) {
                first = one;
                size[at] = key->type == KEY_WHOLE   ? sizeof(size_t)
                           : key->type == KEY_FLOAT ? sizeof(float)
                                                    : sizeof(int);
            } else if (memcmp((char *)&first + at, (char *)&one + at, size[at]) != 0) {
                clash[at] = 1;
            }
        }
    for (size_t at = 0; at < sizeof a; at++)
        if (size[at] && !clash[at])
            memcpy((char *)&a + at, (char *)&first + at, size[at]);
    a.act = KILN_ACT_NONE; /* gelu's approx sets the activation, not a default */
    return a;
}

kiln_status op_check_fusable(op_kind kind, kiln_act act)
{
    const op_desc *d = op_get(kind);
    const act_info *ai = act_get(act);
    if (!d || !ai)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "unknown op or activation");
    if (act == KILN_ACT_NONE || (d->fuses_act && (ai->from_output || d->keeps_act_grad)))
        return KILN_OK;
    if (!d->fuses_act)
        return error_set(KILN_ERR_UNSUPPORTED, "%s: cannot absorb an activation (%s)", d->name,
                         ai->name);
    return error_set(KILN_ERR_UNSUPPORTED, "%s: %s cannot be fused into the epilogue (its "
                                           "gradient needs its input); apply it as its own "
                                           "layer", d->name, ai->name);
}

kiln_status op_infer(op_kind kind, const op_attrs *a, const kiln_shape *in, op_shapes *s)
{
    const op_desc *d = op_get(kind);
    if (!d || !a || !in || !s)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "op_infer: unknown op or missing argument");
    *s = (op_shapes){0};
    if (kind != OP_ACTIVATION && op_check_fusable(kind, a->act) != KILN_OK)
        return KILN_ERR_UNSUPPORTED;
    return d->infer(a, in, s);
}

/* Infers the shapes of a call from its inputs. */
static kiln_status call_shapes(op_kind kind, const op_args *c, op_shapes *s)
{
    const op_desc *d = op_get(kind);
    if (!d || !c || !c->ctx || !c->attrs)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "op call: unknown op or missing argument");
    kiln_shape in[OP_MAX_INPUTS];
    for (int i = 0; i < d->n_inputs; i++) {
        if (!c->in[i])
            return error_set(KILN_ERR_INVALID_ARGUMENT, "%s: input %d is missing", d->name, i);
        in[i] = shape_of(c->in[i]);
    }
    kiln_status st = op_infer(kind, c->attrs, in, s);
    for (int i = 0; i < d->n_inputs && st == KILN_OK; i++)
        st = op_check_count(d->name, "an input", c->in[i]->numel);
    if (st == KILN_OK)
        st = op_check_count(d->name, "the output", shape_numel(&s->out));
    return st;
}

static kiln_status check_list(const char *op, const char *what, kiln_tensor *const *ts, int n,
                              const kiln_shape *shapes, int optional)
{
    for (int i = 0; i < n; i++) {
        if (optional && !ts[i])
            continue;
        if (ts[i]) {
            kiln_shape got = shape_of(ts[i]);
            if (shape_eq(&got, &shapes[i]))
                continue; /* the name is written only for the error */
        }
        char name[32];
        snprintf(name, sizeof name, "%s %d", what, i);
        return expect_shape(op, name, ts[i], &shapes[i]);
    }
    return KILN_OK;
}

kiln_status op_forward(op_kind kind, const op_args *c)
{
    op_shapes s;
    kiln_status st = call_shapes(kind, c, &s);
    const char *name = st == KILN_OK ? op_get(kind)->name : "";
    if (st == KILN_OK)
        st = expect_shape(name, "output", c->out, &s.out);
    if (st == KILN_OK)
        st = check_list(name, "parameter", c->param, s.n_params, s.param, 0);
    if (st == KILN_OK)
        st = check_list(name, "buffer", c->buffer, s.n_buffers, s.buffer, 0);
    if (st == KILN_OK)
        st = check_list(name, "saved tensor", c->saved, s.n_saved, s.saved, 0);
    return st == KILN_OK ? op_get(kind)->forward(c) : st;
}

kiln_status op_backward(op_kind kind, const op_args *c)
{
    op_shapes s;
    kiln_status st = call_shapes(kind, c, &s);
    const op_desc *d = st == KILN_OK ? op_get(kind) : NULL;
    if (st == KILN_OK)
        st = expect_shape(d->name, "output", c->out, &s.out);
    if (st == KILN_OK)
        st = expect_shape(d->name, "output gradient", c->dout, &s.out);
    if (st == KILN_OK)
        st = check_list(d->name, "parameter", c->param, s.n_params, s.param, 0);
    if (st == KILN_OK)
        st = check_list(d->name, "saved tensor", c->saved, s.n_saved, s.saved, 0);
    if (st == KILN_OK)
        st = check_list(d->name, "parameter gradient", c->dparam, s.n_params, s.param, 1);
    if (st == KILN_OK) {
        kiln_shape in[OP_MAX_INPUTS];
        for (int i = 0; i < d->n_inputs; i++)
            in[i] = shape_of(c->in[i]);
        st = check_list(d->name, "input gradient", c->din, d->n_inputs, in, 1);
    }
    return st == KILN_OK ? d->backward(c) : st;
}
