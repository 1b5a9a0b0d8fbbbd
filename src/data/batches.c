/* Batches of an image folder decoded ahead: when the loop asks for the
 * batch at position first of an epoch's order, the next AHEAD - 1 batches
 * of the same order are queued on the worker threads, each into a slot of
 * its own, so the threads decode while the device trains. A request that
 * no slot holds (the first of an epoch, or evaluation) cancels the slots
 * and decodes at once. Memory: AHEAD batches, never the dataset. */
#include <stdlib.h>
#include <string.h>

#include "data/folder.h"

#define AHEAD 3

typedef struct {
    job j;
    const image_source *s;
    uint64_t epoch;      /* a key of the epoch's order */
    size_t first, n;     /* positions in the epoch */
    size_t *samples;     /* n sample indices */
    float *x;            /* n x features */
    size_t cap;          /* samples x and samples hold */
    int used;
} slot;

struct batches {
    pool *p;
    slot slots[AHEAD];
};

static kiln_status decode_one(void *user, job *j, size_t i)
{
    (void)j;
    slot *b = user;
    const image_source *s = b->s;
    size_t features = (size_t)s->channels * (size_t)s->height * (size_t)s->width;
    return folder_render(s, b->samples[i], s->augment, b->epoch, b->first + i,
                         b->x + i * features);
}

void batches_free(struct batches *b)
{
    if (!b)
        return;
    for (int k = 0; k < AHEAD; k++)
        if (b->slots[k].used)
            pool_cancel(b->p, &b->slots[k].j);
    pool_stop(b->p);
    for (int k = 0; k < AHEAD; k++) {
        free(b->slots[k].samples);
        free(b->slots[k].x);
    }
    free(b);
}

static kiln_status start(image_source *s)
{
    struct batches *b = calloc(1, sizeof *b);
    if (!b)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "image loading: out of memory");
    kiln_status st = pool_start(s->cfg.workers ? s->cfg.workers : pool_cores(), &b->p);
    if (st != KILN_OK) {
        free(b);
        return st;
    }
    s->ahead = b;
    return KILN_OK;
}

/* An epoch's key: its order's first samples (the order is a seeded
 * permutation per epoch), so a resumed run draws what the first drew. */
static uint64_t epoch_key(const size_t *order, size_t count)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; order && i < count && i < 8; i++)
        h = (h ^ order[i]) * 1099511628211ull;
    return order ? h : 0;
}

/* Queues positions first .. first + n of order into slot b. */
static kiln_status queue(struct batches *bs, slot *b, const image_source *s, const size_t *order,
                         uint64_t epoch, size_t first, size_t n)
{
    size_t features = (size_t)s->channels * (size_t)s->height * (size_t)s->width;
    if (n > b->cap) {
        free(b->samples);
        free(b->x);
        b->samples = malloc(n * sizeof *b->samples);
        b->x = malloc(n * features * sizeof *b->x);
        b->cap = b->samples && b->x ? n : 0;
        if (!b->cap)
            return error_set(KILN_ERR_OUT_OF_MEMORY, "image loading: out of memory for a batch "
                                                     "of %zu", n);
    }
    for (size_t i = 0; i < n; i++)
        b->samples[i] = order ? order[first + i] : first + i;
    b->s = s;
    b->epoch = epoch;
    b->first = first;
    b->n = n;
    b->j = (job){.fn = decode_one, .user = b, .n = n};
    kiln_status st = pool_submit(bs->p, &b->j);
    b->used = st == KILN_OK;
    return st;
}

static slot *holding(struct batches *bs, const size_t *order, uint64_t epoch, size_t first,
                     size_t n)
{
    for (int k = 0; k < AHEAD; k++) {
        slot *b = &bs->slots[k];
        int same = b->used && b->epoch == epoch && b->first == first && b->n == n;
        for (size_t i = 0; same && i < n; i++)
            same = b->samples[i] == (order ? order[first + i] : first + i);
        if (same)
            return b;
    }
    return NULL;
}

static slot *free_slot(struct batches *bs)
{
    for (int k = 0; k < AHEAD; k++)
        if (!bs->slots[k].used)
            return &bs->slots[k];
    return NULL;
}

/* Queues the batches after first + n that no slot holds yet. */
static kiln_status look_ahead(struct batches *bs, const dataset *d, const size_t *order,
                              uint64_t epoch, size_t first, size_t n)
{
    kiln_status st = KILN_OK;
    for (size_t k = 1; k < AHEAD && st == KILN_OK; k++) {
        size_t f = first + k * n;
        if (f >= d->count)
            break;
        size_t m = d->count - f < n ? d->count - f : n;
        slot *b = holding(bs, order, epoch, f, m) ? NULL : free_slot(bs);
        if (b)
            st = queue(bs, b, d->images, order, epoch, f, m);
    }
    return st;
}

kiln_status folder_gather(const dataset *d, const size_t *order, size_t first, size_t n,
                          float *x)
{
    image_source *s = d->images;
    kiln_status st = s->ahead ? KILN_OK : start(s);
    if (st != KILN_OK)
        return st;
    struct batches *bs = s->ahead;
    uint64_t epoch = epoch_key(order, d->count);
    slot *b = holding(bs, order, epoch, first, n);
    if (!b) { /* not foreseen: whatever was queued is of no use */
        for (int k = 0; k < AHEAD; k++)
            if (bs->slots[k].used)
                pool_cancel(bs->p, &bs->slots[k].j), bs->slots[k].used = 0;
        b = &bs->slots[0];
        st = queue(bs, b, s, order, epoch, first, n);
    }
    if (st == KILN_OK)
        st = look_ahead(bs, d, order, epoch, first, n); /* before waiting: no idle threads */
    if (st != KILN_OK)
        return st;
    pool_wait(bs->p, &b->j);
    b->used = 0;
    if (b->j.failures)
        return error_set(b->j.st, "%s", b->j.error);
    size_t features = (size_t)s->channels * (size_t)s->height * (size_t)s->width;
    memcpy(x, b->x, n * features * sizeof *x);
    return look_ahead(bs, d, order, epoch, first, n);
}

