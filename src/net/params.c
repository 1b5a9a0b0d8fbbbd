/* Parameters one at a time: the last step's gradient by name, frozen
 * parameters (no update, no weight decay, no part in gradient clipping),
 * and the input normalization read back. */
#include <stdlib.h>
#include <string.h>

#include "net/net.h"

/* The index of the named entry, or -1 with an error naming the call. */
static long entry_index(const kiln_net *net, const char *call, const char *name)
{
    for (size_t i = 0; name && i < net->n_entries; i++)
        if (strcmp(net->entries[i].name, name) == 0)
            return (long)i;
    error_set(KILN_ERR_INVALID_ARGUMENT, "%s: the network has no tensor %s", call,
              name ? name : "(NULL)");
    return -1;
}

/* The gradient tensor of a parameter view, or NULL for a buffer. */
static kiln_tensor *grad_of(const kiln_net *net, const kiln_tensor *param)
{
    const pipeline *p = net->main.p;
    for (size_t i = 0; param && i < p->count; i++)
        for (int k = 0; k < p->steps[i].shapes.n_params; k++)
            if (p->steps[i].param[k] == param)
                return p->steps[i].dparam[k];
    return NULL;
}

kiln_status kiln_net_grad(kiln_net *net, const char *name, float *dst, size_t count)
{
    kiln_status st = net_check(net, "kiln_net_grad");
    long i = st == KILN_OK ? entry_index(net, "kiln_net_grad", name) : -1;
    if (i < 0)
        return st == KILN_OK ? KILN_ERR_INVALID_ARGUMENT : st;
    kiln_tensor *g = grad_of(net, net->entries[i].tensor);
    if (!g)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_net_grad: %s is a buffer, which "
                                                    "has no gradient", name);
    if (!dst || count != g->numel)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_net_grad: %s has %zu values; %s",
                         name, g->numel, dst ? "another count was given"
                                             : "the array is NULL");
    return kiln_tensor_download(g, dst, count);
}

kiln_status kiln_net_set_frozen(kiln_net *net, const char *name, int frozen)
{
    kiln_status st = net_check(net, "kiln_net_set_frozen");
    long i = st == KILN_OK ? entry_index(net, "kiln_net_set_frozen", name) : -1;
    if (i < 0)
        return st == KILN_OK ? KILN_ERR_INVALID_ARGUMENT : st;
    kiln_tensor *param = net->entries[i].tensor;
    if (!grad_of(net, param))
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_net_set_frozen: %s is a buffer; "
                                                    "only parameters train", name);
    if (!net->frozen && !(net->frozen = calloc(net->n_entries, sizeof *net->frozen)))
        return error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_net_set_frozen: out of memory");
    if (frozen && !net->frozen[i]) /* the copy the optimizer's step is undone from */
        st = kiln_tensor_create(net->ctx, param->ndim, param->shape, &net->frozen[i]);
    else if (!frozen) {
        kiln_tensor_free(net->frozen[i]);
        net->frozen[i] = NULL;
    }
    return st;
}

int kiln_net_frozen(const kiln_net *net, const char *name)
{
    if (net_check(net, "kiln_net_frozen") != KILN_OK)
        return -1;
    long i = entry_index(net, "kiln_net_frozen", name);
    return i < 0 ? -1 : net->frozen && net->frozen[i] != NULL;
}

kiln_status net_class_weights(kiln_net *net)
{
    const train_config *c = &net->c;
    size_t classes = kiln_net_output_size(net);
    kiln_tensor_free(net->class_weight);
    net->class_weight = NULL;
    if (!c->n_class_weight || c->loss != LOSS_CROSS_ENTROPY)
        return KILN_OK;
    if ((size_t)c->n_class_weight != classes)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "[train] class_weight has %d values; the "
                                                    "model has %zu classes",
                         c->n_class_weight, classes);
    size_t shape[1] = {classes};
    kiln_status st = kiln_tensor_create(net->ctx, 1, shape, &net->class_weight);
    if (st == KILN_OK)
        st = kiln_tensor_upload(net->class_weight, c->class_weight, classes);
    return st;
}

void net_free_frozen(kiln_net *net)
{
    for (size_t i = 0; net->frozen && i < net->n_entries; i++)
        kiln_tensor_free(net->frozen[i]);
    free(net->frozen);
    net->frozen = NULL;
    kiln_tensor_free(net->class_weight);
    net->class_weight = NULL;
}

/* The optimizer's step over every parameter at once leaves a frozen one
 * where it was: its gradient is zeroed before (so clipping and the
 * moments see none), and its values are copied back after (so neither the
 * update nor weight decay moves it). */
kiln_status net_optim_step(kiln_net *net, float lr, const kiln_tensor *guard)
{
    kiln_status st = KILN_OK;
    for (size_t i = 0; net->frozen && i < net->n_entries && st == KILN_OK; i++)
        if (net->frozen[i]) {
            st = kiln_tensor_fill(grad_of(net, net->entries[i].tensor), 0.0f);
            if (st == KILN_OK)
                st = kiln_tensor_copy(net->frozen[i], net->entries[i].tensor);
        }
    if (st == KILN_OK)
        st = optim_step(net->opt, lr, guard);
    for (size_t i = 0; net->frozen && i < net->n_entries && st == KILN_OK; i++)
        if (net->frozen[i])
            st = kiln_tensor_copy(net->entries[i].tensor, net->frozen[i]);
    return st;
}

kiln_status net_read_loss(kiln_net *net, const kiln_tensor *loss, float lr, int ahead, float *l)
{
    cl_event read = NULL;
    kiln_status st = ahead ? tensor_read_begin(loss, l, 1, &read)
                           : kiln_tensor_download(loss, l, 1);
    if (st == KILN_OK && ahead)
        st = net_optim_step(net, lr, loss);
    kiln_status waited = tensor_read_end(read);
    return st == KILN_OK ? waited : st;
}

kiln_status kiln_net_normalization(const kiln_net *net, float *mean, float *std, size_t cap,
                                   size_t *count)
{
    kiln_status st = net_check(net, "kiln_net_normalization");
    if (st == KILN_OK && !count)
        st = error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_net_normalization: count is NULL");
    if (st != KILN_OK)
        return st;
    *count = net->norm_count;
    if (!mean && !std)
        return KILN_OK; /* the count alone */
    if (!mean || !std || cap < net->norm_count)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_net_normalization: room for %zu "
                                                    "values; it has %zu", cap, net->norm_count);
    memcpy(mean, net->mean, net->norm_count * sizeof *mean);
    memcpy(std, net->std, net->norm_count * sizeof *std);
    return KILN_OK;
}

/* ---- the optimizer's state, to move a network with it ----------------------- */

size_t kiln_net_optimizer_slots(const kiln_net *net, size_t *count)
{
    if (net_check(net, "kiln_net_optimizer_slots") != KILN_OK)
        return 0;
    optimizer *o = net->opt;
    if (count)
        *count = net->main.p->params->numel;
    return optim_state(o, 1) ? 2 : optim_state(o, 0) ? 1 : 0;
}

/* Slot `slot`'s tensor, checked against count; NULL with an error. */
static kiln_tensor *slot_of(kiln_net *net, const char *call, int slot, const void *array,
                            size_t count)
{
    if (net_check(net, call) != KILN_OK)
        return NULL;
    size_t slots = kiln_net_optimizer_slots(net, NULL);
    kiln_tensor *t = slot >= 0 && (size_t)slot < slots ? optim_state(net->opt, slot) : NULL;
    if (!t)
        error_set(KILN_ERR_INVALID_ARGUMENT, "%s: slot %d; the optimizer keeps %zu", call, slot,
                  slots);
    else if (!array || count != t->numel)
        error_set(KILN_ERR_INVALID_ARGUMENT, "%s: slot %d has %zu values; %s", call, slot,
                  t->numel, array ? "another count was given" : "the array is NULL");
    return t && array && count == t->numel ? t : NULL;
}

kiln_status kiln_net_get_optimizer_state(kiln_net *net, int slot, float *dst, size_t count)
{
    kiln_tensor *t = slot_of(net, "kiln_net_get_optimizer_state", slot, dst, count);
    return t ? kiln_tensor_download(t, dst, count) : KILN_ERR_INVALID_ARGUMENT;
}

kiln_status kiln_net_set_optimizer_state(kiln_net *net, int slot, const float *src, size_t count,
                                         uint64_t steps)
{
    kiln_tensor *t = slot_of(net, "kiln_net_set_optimizer_state", slot, src, count);
    kiln_status st = t ? kiln_tensor_upload(t, src, count) : KILN_ERR_INVALID_ARGUMENT;
    if (st == KILN_OK)
        optim_set_steps(net->opt, steps);
    return st;
}
