/* Under MPI, before the first step: every rank checks against rank 0 that
 * it trains the same model, with the same settings, on the same data, so
 * that no rank leaves the loop early and leaves the others waiting, and
 * no two layouts of gradients are summed. */
#include <stdio.h>
#include <stdlib.h>

#include "fit/fit.h"

/* An order-dependent digest of a split's values (the same on every rank
 * for the same data), and of its targets. */
static void digest(const dataset *d, double *x, double *y)
{
    double sx = 0, sy = 0;
    for (size_t i = 0; d->x && i < d->count * d->features; i++)
        sx += (double)d->x[i] * (double)(1 + i % 7);
    if (d->shards) /* its features are on disk: the files and rows it reads */
        sx = (double)data_shards_digest(d);
    for (size_t i = 0; i < d->count * d->targets; i++)
        sy += (double)d->y[i] * (double)(1 + i % 5);
    *x = sx, *y = sy;
}

static void write_split(FILE *f, const char *name, const dataset *d)
{
    double x, y;
    digest(d, &x, &y);
    fprintf(f, "%s samples = %zu\n%s features = %zu\n%s targets = %zu\n%s classes = %zu\n"
               "%s values digest = %.17g\n%s targets digest = %.17g\n",
            name, d->count, name, d->features, name, d->targets, name, d->classes, name, x,
            name, y);
}

static void write_facts(const run *r, const train_state *t, FILE *f)
{
    const train_config *c = &r->c;
    fprintf(f, "batch = %zu\naccumulate = %d\nepochs = %d\nseed = %llu\nval = %.17g\n"
               "limit = %zu\nloss = %s\nlr = %.9g\nschedule = %s\nsync_batchnorm = %d\n"
               "normalize = %d\nshard = %d\n",
            c->batch, c->accumulate, c->epochs, (unsigned long long)c->seed, c->val,
            r->o->limit, loss_name(c->loss), (double)c->optim.lr, sched_name(c->sched.kind),
            c->sync_batchnorm, (int)c->normalize, c->shard);
    fprintf(f, "resume from epoch = %d\nresume from batch = %zu\nresume from step = %llu\n",
            t->epoch, t->batch, (unsigned long long)optim_steps(r->opt));
    write_split(f, "training", &r->train);
    write_split(f, "validation", &r->val);
    write_split(f, "test", &r->test);
    net_write_layout(r->net, f);
}

kiln_status agree_on_run(run *r, const train_state *t, kiln_status mine)
{
    dist_comm *c = r->net->comm;
    if (dist_comm_size(c) == 1)
        return mine;
    dist_comm_set_timeout(c, r->c.dist_timeout);
    dist_comm_watch(c, r->o->stop);
    char *text = NULL;
    size_t len = 0;
    FILE *f = mine == KILN_OK ? open_memstream(&text, &len) : NULL;
    if (f) {
        write_facts(r, t, f);
        fclose(f);
    }
    if (mine == KILN_OK && !text)
        mine = error_set(KILN_ERR_OUT_OF_MEMORY, "out of host memory");
    kiln_status st = dist_agree(c, "the ranks disagree on the run (each checked against "
                                   "rank 0 before training)",
                                text, mine);
    free(text);
    if (st == KILN_OK) /* every rank is here and well: the collectives can start */
        st = finish_normalization(r);
    return st;
}
