/* Learning-rate schedules with the closed forms of PyTorch's schedulers,
 * stepped once per epoch (t = the epoch, from 0). */
#include <math.h>

#include "optim/optim.h"

static const char *const names[] = {
#define SCHED_NAME(id, name) name,
    SCHED_LIST(SCHED_NAME)
#undef SCHED_NAME
};
_Static_assert(sizeof names / sizeof names[0] == SCHED_COUNT, "one name per sched_kind");

const char *sched_name(sched_kind kind)
{
    return (unsigned)kind < SCHED_COUNT ? names[kind] : NULL;
}

static double cosine(double base, double eta_min, double t, double t_max)
{
    return eta_min + (base - eta_min) * (1.0 + cos(3.14159265358979323846 * t / t_max)) / 2.0;
}

double sched_lr_at(const sched_config *c, int t)
{
    int passed = 0;
    switch (c->kind) {
    case SCHED_STEP: /* StepLR */
        return c->base_lr * pow(c->gamma, (double)(t / c->step_size));
    case SCHED_MULTISTEP: /* MultiStepLR */
        for (int i = 0; i < c->n_milestones; i++)
            passed += t >= c->milestones[i];
        return c->base_lr * pow(c->gamma, passed);
    case SCHED_EXPONENTIAL: /* ExponentialLR */
        return c->base_lr * pow(c->gamma, t);
    case SCHED_COSINE: /* CosineAnnealingLR */
        return cosine(c->base_lr, c->eta_min, t, c->t_max);
    case SCHED_WARMUP_COSINE: /* linear warm-up to base_lr, then cosine to eta_min */
        if (t < c->warmup)
            return c->base_lr * (t + 1) / c->warmup;
        return c->t_max > c->warmup
                   ? cosine(c->base_lr, c->eta_min, t - c->warmup, c->t_max - c->warmup)
                   : c->eta_min;
    default:
        return c->base_lr;
    }
}

void sched_init(scheduler *s, const sched_config *c)
{
    s->c = *c;
    s->lr = c->base_lr;
    s->best = INFINITY;
    s->bad_epochs = 0;
}

double sched_advance(scheduler *s, int t, double val_loss)
{
    if (s->c.kind != SCHED_PLATEAU) {
        s->lr = sched_lr_at(&s->c, t);
        return s->lr;
    }
    /* ReduceLROnPlateau, mode min, relative threshold, no cooldown */
    if (t == 0 || isnan(val_loss))
        return s->lr;
    if (val_loss < s->best * (1.0 - s->c.threshold)) {
        s->best = val_loss;
        s->bad_epochs = 0;
    } else if (++s->bad_epochs > s->c.patience) {
        s->lr = fmax(s->lr * s->c.factor, s->c.min_lr);
        s->bad_epochs = 0;
    }
    return s->lr;
}
