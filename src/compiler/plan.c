/* Memory planning. Every value, gradient, gradient partial and saved
 * tensor of a training step gets a lifetime on the step timeline (forward
 * of step s at s, the loss at n, backward of step s at B(s) = back_at[s],
 * after n in the order of back_order: 2n - s where that is the reverse of
 * the steps) and a place in one arena, such that blocks alive at the same
 * time never overlap:
 * greedy, largest first, each at the lowest offset that fits between the
 * blocks it must not touch.
 *
 *   value of s      [s, B(s)]        read by s's readers and by its backward
 *   saved of s      [s, B(s)]
 *   gradient of s   [first writer, B(s)]: the backward of its reader that
 *                   runs first (or the loss, for the last step)
 *   partial of s    [that backward, its last reader's backward]
 *
 * An add passes its output's gradient on to its inputs unchanged (or
 * act'(z) times it, in place), so an input's gradient may take the
 * memory of the add's instead of a copy (share_gradients): one block
 * then holds both, alive as long as the longest of them. */
#include <math.h>
#include <stdlib.h>

#include "compiler/pipeline.h"

static plan_block *add_block(pipeline *p, kiln_tensor **t, const kiln_shape *s, int start,
                             int end)
{
    plan_block *b = &p->blocks[p->n_blocks++];
    b->tensor = t;
    b->shape = *s;
    b->bytes = shape_numel(s) * sizeof(float);
    b->start = start;
    b->end = end;
    b->offset = 0;
    b->same_as = -1;
    return b;
}

static int overlaps_in_time(const plan_block *a, const plan_block *b)
{
    return a->start <= b->end && b->start <= a->end;
}

static int by_size_desc(const void *x, const void *y)
{
    const plan_block *a = *(const plan_block *const *)x, *b = *(const plan_block *const *)y;
    return a->bytes < b->bytes ? 1 : a->bytes > b->bytes ? -1 : 0;
}

static size_t round_up(size_t v, size_t align)
{
    return (v + align - 1) / align * align;
}

/* The lowest aligned offset where b fits beside the placed blocks it
 * shares time with. */
static size_t first_fit(plan_block *const *placed, size_t n, const plan_block *b, size_t align)
{
    size_t offset = 0;
    for (int moved = 1; moved;) {
        moved = 0;
        for (size_t i = 0; i < n; i++) {
            const plan_block *o = placed[i];
            if (!overlaps_in_time(o, b))
                continue;
            if (offset < o->offset + o->bytes && o->offset < offset + b->bytes) {
                offset = round_up(o->offset + o->bytes, align);
                moved = 1;
            }
        }
    }
    return offset;
}

static kiln_status place(pipeline *p, size_t align)
{
    plan_block **order = malloc(p->n_blocks * sizeof *order);
    if (!order)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "memory planning: out of memory");
    size_t n = 0;
    for (size_t i = 0; i < p->n_blocks; i++)
        if (p->blocks[i].same_as < 0)
            order[n++] = &p->blocks[i];
    qsort(order, n, sizeof *order, by_size_desc);
    p->arena_bytes = align;
    for (size_t i = 0; i < n; i++) {
        order[i]->offset = first_fit(order, i, order[i], align);
        if (order[i]->offset + order[i]->bytes > p->arena_bytes)
            p->arena_bytes = round_up(order[i]->offset + order[i]->bytes, align);
    }
    for (size_t i = 0; i < p->n_blocks; i++)
        if (p->blocks[i].same_as >= 0)
            p->blocks[i].offset = p->blocks[p->blocks[i].same_as].offset;
    free(order);
    return KILN_OK;
}

/* The step other than a that reads v and runs backward first, or -1. */
static int other_reader(const pipeline *p, int v, int a)
{
    int first = -1;
    for (int r = 0; r < (int)p->count; r++)
        for (int k = 0; k < p->steps[r].n_inputs; k++)
            if (r != a && p->steps[r].inputs[k] == v &&
                (first < 0 || p->back_at[r] < p->back_at[first]))
                first = r;
    return first;
}

/* Whether step a may leave the gradient of its input k in its own
 * gradient's memory (its op's row says grads_in_place for k: the
 * gradient is dout, or act'(z) dout computed in place). Its backward reads
 * that memory, then its inputs' backwards do: no write may come between.
 *   - An input only a reads: its gradient is a's, read by its backward.
 *   - An input others read too, when a's backward writes its gradient
 *     first: the others add theirs into that memory later, so only after
 *     the backward of a's other input where that one reads the memory too
 *     (an add's, if a alone reads it: their backwards after that input's).
 *   - One that rewrites its own gradient in place (an add with an
 *     activation) keeps its own memory, and a's activation, computed in
 *     place, must not reach a memory that another add shares. */
static int shares_gradient(const pipeline *p, int a, int k, const int *first_writer)
{
    const pipe_step *s = &p->steps[a];
    unsigned passes = op_get(s->op)->grads_in_place;
    int v = s->inputs[k], other = s->n_inputs == 2 ? s->inputs[1 - k] : -1;
    if (v < 0 || v == other || !(passes >> k & 1u))
        return 0;
    int w = other >= 0 && (passes >> (1 - k) & 1u) ? other : -1; /* reads dout's memory too */
    const pipe_step *in = &p->steps[v];
    unsigned its_own = op_get(in->op)->grads_in_place & ((1u << in->n_inputs) - 1u);
    if (its_own && in->attrs.act != KILN_ACT_NONE)
        return 0;
    if (in->uses == 1)
        return 1;
    if (first_writer[v] != p->back_at[a] || (w >= 0 && p->steps[w].uses > 1))
        return 0; /* a first writer; at most one such input */
    int o = other_reader(p, v, a);
    return w < 0 || o < 0 || p->back_at[o] > p->back_at[w];
}

/* Whether step m's gradient reaches step v's memory through grad_with (m
 * is v or below it). */
static int below(const pipeline *p, int m, int v)
{
    for (; m >= 0; m = p->steps[m].grad_with)
        if (m == v)
            return 1;
    return 0;
}

static int root_of(const pipeline *p, int s)
{
    while (p->steps[s].grad_with >= 0)
        s = p->steps[s].grad_with;
    return s;
}

/* Whether shared input v, read by others too, breaks its memory's group:
 * those others add their gradients into the memory at their backwards
 * (from the first of them on), so every other step whose gradient is that
 * memory, neither above v nor below it, must have read it before (its
 * backward earlier). Groups nest (an add's own gradient shared with a
 * later add's), so a single add's inputs do not tell. */
static int breaks_group(const pipeline *p, const int *root, int v)
{
    int o = other_reader(p, v, p->steps[v].grad_with);
    for (int m = 0; o >= 0 && m < (int)p->count; m++)
        if (m != v && p->back_at[m] >= p->back_at[o] && root[m] == root[v] && !below(p, m, v) &&
            !below(p, v, m))
            return 1;
    return 0;
}

/* Decides grad_with for every step, from the last step down, so that an
 * add knows whether its own gradient is shared before it shares it; then
 * takes back the sharing of inputs read by others that would break their
 * groups, until none does (taking one back only splits a group). */
static kiln_status share_gradients(pipeline *p, const int *first_writer)
{
    int n = (int)p->count;
    for (int a = n; a-- > 0;)
        for (int k = 0; k < p->steps[a].n_inputs; k++)
            if (shares_gradient(p, a, k, first_writer))
                p->steps[p->steps[a].inputs[k]].grad_with = a;
    int *root = malloc(p->count * sizeof *root);
    if (!root)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "memory planning: out of memory");
    for (int changed = 1; changed;) {
        changed = 0;
        for (int s = 0; s < n; s++)
            root[s] = root_of(p, s);
        for (int v = 0; v < n && !changed; v++)
            if (p->steps[v].grad_with >= 0 && p->steps[v].uses > 1 && breaks_group(p, root, v)) {
                p->steps[v].grad_with = -1;
                changed = 1;
            }
    }
    free(root);
    return KILN_OK;
}

kiln_status plan_pipeline(pipeline *p, size_t align)
{
    int n = (int)p->count;
    p->blocks = calloc(4 * p->count + 1, sizeof *p->blocks);
    int *first_writer = malloc(p->count * sizeof *first_writer);
    int *last_reader_bwd = malloc(p->count * sizeof *last_reader_bwd);
    int *grad_block = malloc(p->count * sizeof *grad_block); /* step -> its gradient's */
    if (!p->blocks || !first_writer || !last_reader_bwd || !grad_block) {
        free(first_writer);
        free(last_reader_bwd);
        free(grad_block);
        return error_set(KILN_ERR_OUT_OF_MEMORY, "memory planning: out of memory");
    }
    /* the reader whose backward runs first writes first */
    for (int s = 0; s < n; s++)
        first_writer[s] = last_reader_bwd[s] = p->back_at[s];
    first_writer[n - 1] = n;
    if ((pipeline_softmax_head(p) || pipeline_sigmoid_head(p)) && p->steps[n - 1].inputs[0] >= 0)
        first_writer[p->steps[n - 1].inputs[0]] = n; /* a loss on the logits */
    for (int r = 0; r < n; r++)
        for (int k = 0; k < p->steps[r].n_inputs; k++) {
            int s = p->steps[r].inputs[k];
            if (s < 0)
                continue;
            int b = p->back_at[r];
            if (b < first_writer[s])
                first_writer[s] = b;
            if (last_reader_bwd[s] == p->back_at[s] || b > last_reader_bwd[s])
                last_reader_bwd[s] = b;
        }
    kiln_status shared = share_gradients(p, first_writer);
    for (int s = n; shared == KILN_OK && s-- > 0;) { /* an add's block exists before its inputs' */
        pipe_step *st = &p->steps[s];
        /* a batchnorm folded into an earlier step is written there in eval */
        int b = p->back_at[s];
        add_block(p, &st->out, &st->shapes.out, st->folded_into >= 0 ? st->folded_into : s, b);
        grad_block[s] = (int)p->n_blocks;
        plan_block *g = add_block(p, &st->grad, &st->shapes.out, first_writer[s], b);
        if (st->grad_with >= 0) { /* the shared block outlives every sharer */
            const plan_block *with = &p->blocks[grad_block[st->grad_with]];
            g->same_as = with->same_as >= 0 ? with->same_as : grad_block[st->grad_with];
            plan_block *root = &p->blocks[g->same_as];
            root->end = root->end > g->end ? root->end : g->end;
        }
        if (st->uses > 1)
            add_block(p, &st->partial, &st->shapes.out, first_writer[s], last_reader_bwd[s]);
        for (int k = 0; k < st->shapes.n_saved; k++)
            add_block(p, &st->saved[k], &st->shapes.saved[k], s, b);
    }
    free(first_writer);
    free(last_reader_bwd);
    free(grad_block);
    return shared == KILN_OK ? place(p, align) : shared;
}

void plan_memory(const pipeline *p, size_t *planned, size_t *unplanned, size_t *params)
{
    *planned = p->arena_bytes;
    *unplanned = *params = 0;
    for (size_t i = 0; i < p->count; i++) {
        const pipe_step *s = &p->steps[i];
        size_t out = shape_numel(&s->shapes.out) * sizeof(float);
        *unplanned += 2 * out + (s->uses > 1 ? out : 0);
        for (int k = 0; k < s->shapes.n_saved; k++)
            *unplanned += shape_numel(&s->shapes.saved[k]) * sizeof(float);
        for (int k = 0; k < s->shapes.n_params; k++)
            *params += 2 * shape_numel(&s->shapes.param[k]) * sizeof(float);
        for (int k = 0; k < s->shapes.n_buffers; k++)
            *params += shape_numel(&s->shapes.buffer[k]) * sizeof(float);
    }
}

kiln_status plan_poison(pipeline *p, int t)
{
    kiln_status st = KILN_OK;
    for (size_t i = 0; i < p->n_blocks && st == KILN_OK; i++)
        if (p->blocks[i].end == t && p->blocks[i].same_as < 0)
            st = kiln_tensor_fill(*p->blocks[i].tensor, NAN);
    return st;
}
