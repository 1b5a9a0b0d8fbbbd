/* Optimizers against float64 references of PyTorch's formulas, gradient
 * clipping, and learning-rate schedules against their formulas. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "net/config.h"
#include "optim/optim.h"

typedef struct {
    kiln_model *m;
    pipeline *p;
    size_t n;
} small_net;

static void net_open(small_net *s)
{
    check_ok(kiln_model_parse("[input]\nshape = 5\n[linear]\nout = 7\n[batchnorm]\n[tanh]\n"
                              "[linear]\nout = 3\n",
                              "opt.ini", &s->m));
    check_ok(pipeline_create(test_ctx(), s->m, 4, (pipe_options){.fuse = 1, .plan = 1}, 3,
                             &s->p));
    s->n = s->p->params->numel;
}

static void net_close(small_net *s)
{
    pipeline_free(s->p);
    kiln_model_free(s->m);
}

static double *download_d(kiln_tensor *t)
{
    float *f = test_alloc(t->numel * sizeof *f);
    double *d = test_alloc(t->numel * sizeof *d);
    check_ok(kiln_tensor_download(t, f, t->numel));
    for (size_t i = 0; i < t->numel; i++)
        d[i] = f[i];
    free(f);
    return d;
}

/* Random gradients in the flat buffer (padding included: it must stay
 * harmless). */
static double *random_grads(small_net *s)
{
    float *g = test_alloc(s->n * sizeof *g);
    rng_fill(test_rng(), g, s->n, -1, 1);
    check_ok(kiln_tensor_upload(s->p->grads, g, s->n));
    free(g);
    return download_d(s->p->grads);
}

typedef struct {
    const char *label;
    optim_config c;
} optim_case;

static optim_case optim_cases[7];
#define OPTIM_CASES (int)(sizeof optim_cases / sizeof optim_cases[0])

static void make_cases(void)
{
    optim_config sgd = optim_defaults(OPTIM_SGD);
    sgd.lr = 0.1f;
    optim_cases[0] = (optim_case){"sgd", sgd};
    sgd.momentum = 0.9f;
    sgd.weight_decay = 0.01f;
    sgd.dampening = 0.1f;
    optim_cases[1] = (optim_case){"sgd momentum dampening weight decay", sgd};
    sgd.nesterov = 1;
    sgd.dampening = 0;
    optim_cases[2] = (optim_case){"sgd nesterov", sgd};
    optim_config adam = optim_defaults(OPTIM_ADAM);
    adam.lr = 0.01f;
    optim_cases[3] = (optim_case){"adam", adam};
    adam.weight_decay = 0.1f;
    optim_cases[4] = (optim_case){"adam weight decay", adam};
    optim_config adamw = optim_defaults(OPTIM_ADAMW);
    adamw.lr = 0.01f;
    optim_cases[5] = (optim_case){"adamw", adamw};
    adamw.decay_matrices = 1;
    optim_cases[6] = (optim_case){"adamw, matrices only", adamw};
}

/* One step of the reference over n values. */
static void ref_step(const optim_config *c, int t, double *p, const double *g, double *s0,
                     double *s1, const double *decay, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double grad = g[i], wd = c->weight_decay * (decay ? decay[i] : 1);
        if (c->kind == OPTIM_SGD) {
            grad += wd * p[i];
            if (c->momentum != 0) {
                s0[i] = t == 1 ? grad : c->momentum * s0[i] + (1 - c->dampening) * grad;
                grad = c->nesterov ? grad + c->momentum * s0[i] : s0[i];
            }
            p[i] -= c->lr * grad;
            continue;
        }
        if (c->kind == OPTIM_ADAMW)
            p[i] *= 1 - c->lr * wd;
        else
            grad += wd * p[i];
        s0[i] = c->beta1 * s0[i] + (1 - c->beta1) * grad;
        s1[i] = c->beta2 * s1[i] + (1 - c->beta2) * grad * grad;
        double mhat = s0[i] / (1 - pow(c->beta1, t)), vhat = s1[i] / (1 - pow(c->beta2, t));
        p[i] -= c->lr * mhat / (sqrt(vhat) + c->eps);
    }
}

/* The decay mask of a matrices-only optimizer: 1 at every value of the
 * linear layers' weights, 0 elsewhere (biases, batchnorm); NULL without. */
static double *decay_mask(const small_net *s, const optim_config *c)
{
    if (!c->decay_matrices)
        return NULL;
    double *mask = calloc(s->n, sizeof *mask);
    for (size_t i = 0; i < s->p->count; i++) {
        const pipe_step *st = &s->p->steps[i];
        if (st->shapes.n_params > 0 && st->shapes.param[0].ndim == 2)
            for (size_t j = 0; j < shape_numel(&st->shapes.param[0]); j++)
                mask[st->flat_at[0] + j] = 1;
    }
    return mask;
}

/* Three steps of each optimizer against float64. */
START_TEST(optimizer_steps_match_pytorch_formulas)
{
    make_cases();
    const optim_case *oc = &optim_cases[_i];
    small_net s;
    net_open(&s);
    optimizer *o;
    check_ok(optim_create(s.p, &oc->c, &o));
    double *p = download_d(s.p->params), *decay = decay_mask(&s, &oc->c);
    double *s0 = calloc(s.n, sizeof *s0), *s1 = calloc(s.n, sizeof *s1);
    for (int t = 1; t <= 3; t++) {
        double *g = random_grads(&s);
        check_ok(optim_step(o, oc->c.lr, NULL));
        ref_step(&oc->c, t, p, g, s0, s1, decay, s.n);
        float *got = test_alloc(s.n * sizeof *got);
        check_ok(kiln_tensor_download(s.p->params, got, s.n));
        check_close(got, p, s.n, 1e-6, 1e-5, "%s, step %d", oc->label, t);
        free(got);
        free(g);
    }
    ck_assert_uint_eq(optim_steps(o), 3);
    free(p);
    free(decay);
    free(s0);
    free(s1);
    optim_free(o);
    net_close(&s);
}
END_TEST

/* Every value of every buffer as bits, to compare whole states. */
static float *snapshot(small_net *s, optimizer *o)
{
    float *all = test_alloc(3 * s->n * sizeof *all);
    memset(all, 0, 3 * s->n * sizeof *all); /* the states an optimizer lacks */
    check_ok(kiln_tensor_download(s->p->params, all, s->n));
    for (int k = 0; k < 2; k++)
        if (optim_state(o, k))
            check_ok(kiln_tensor_download(optim_state(o, k), all + (k + 1) * s->n, s->n));
    return all;
}

/* A guard (the step's loss) that is not finite, NaN or infinite, keeps
 * every parameter and state as it was; a finite one updates as without a
 * guard, to the bit. */
START_TEST(a_guard_that_is_not_finite_keeps_everything)
{
    make_cases();
    const optim_case *oc = &optim_cases[_i];
    small_net s, plain;
    net_open(&s);
    net_open(&plain);
    optimizer *o, *po;
    check_ok(optim_create(s.p, &oc->c, &o));
    check_ok(optim_create(plain.p, &oc->c, &po));
    size_t one = 1;
    kiln_tensor *guard;
    check_ok(kiln_tensor_create(test_ctx(), 1, &one, &guard));
    float *g = test_alloc(s.n * sizeof *g);
    for (int t = 1; t <= 4; t++) {
        rng_fill(test_rng(), g, s.n, -1, 1);
        check_ok(kiln_tensor_upload(s.p->grads, g, s.n));
        check_ok(kiln_tensor_upload(plain.p->grads, g, s.n));
        float *before = snapshot(&s, o);
        int kept = t == 2 || t == 3; /* a NaN loss, then an infinite one */
        check_ok(kiln_tensor_fill(guard, t == 2 ? NAN : t == 3 ? INFINITY : 0.5f));
        check_ok(optim_step(o, oc->c.lr, guard));
        float *after = snapshot(&s, o);
        if (kept) {
            ck_assert_msg(!memcmp(before, after, 3 * s.n * sizeof *after),
                          "%s, step %d: a guard of %g changed a value", oc->label, t,
                          t == 2 ? NAN : INFINITY);
            optim_set_steps(o, optim_steps(o) - 1); /* as kiln_net_train_step does */
        } else {
            check_ok(optim_step(po, oc->c.lr, NULL));
            float *want = snapshot(&plain, po);
            ck_assert_msg(!memcmp(want, after, 3 * s.n * sizeof *after),
                          "%s, step %d: a finite guard changed the update", oc->label, t);
            free(want);
        }
        free(before);
        free(after);
    }
    free(g);
    kiln_tensor_free(guard);
    optim_free(o);
    optim_free(po);
    net_close(&s);
    net_close(&plain);
}
END_TEST

/* A network without parameters still has whole items of the update. */
START_TEST(an_optimizer_without_parameters_steps)
{
    kiln_model *m;
    pipeline *p;
    check_ok(kiln_model_parse("[input]\nshape = 4\n[relu]\n", "none.ini", &m));
    check_ok(pipeline_create(test_ctx(), m, 2, (pipe_options){.fuse = 1, .plan = 1}, 3, &p));
    for (int k = 0; k < 2; k++) {
        optim_config c = optim_defaults(k ? OPTIM_ADAM : OPTIM_SGD);
        optimizer *o;
        check_ok(optim_create(p, &c, &o));
        check_ok(optim_step(o, c.lr, NULL));
        optim_free(o);
    }
    pipeline_free(p);
    kiln_model_free(m);
}
END_TEST

/* clip_norm scales every gradient by max_norm / (||g|| + 1e-6) when the
 * norm is larger, as clip_grad_norm_; clip_value clamps. */
START_TEST(gradient_clipping_is_exact)
{
    small_net s;
    net_open(&s);
    for (int mode = 0; mode < 3; mode++) {
        optim_config c = optim_defaults(OPTIM_SGD);
        c.lr = 1.0f;
        c.clip_norm = mode == 0 ? 0.5f : mode == 1 ? 1e6f : 0;
        c.clip_value = mode == 2 ? 0.25f : 0;
        optimizer *o;
        check_ok(optim_create(s.p, &c, &o));
        double *p = download_d(s.p->params), *g = random_grads(&s), norm = 0;
        for (size_t i = 0; i < s.n; i++)
            norm += g[i] * g[i];
        norm = sqrt(norm);
        double scale = c.clip_norm > 0 ? fmin(1.0, c.clip_norm / (norm + 1e-6)) : 1.0;
        check_ok(optim_step(o, c.lr, NULL));
        for (size_t i = 0; i < s.n; i++) {
            double step = g[i] * scale;
            if (c.clip_value > 0)
                step = fmax(-c.clip_value, fmin(c.clip_value, step));
            p[i] -= step;
        }
        float *got = test_alloc(s.n * sizeof *got);
        check_ok(kiln_tensor_download(s.p->params, got, s.n));
        check_close(got, p, s.n, 1e-6, 1e-5, "clipping mode %d (norm %.4f)", mode, norm);
        if (c.clip_norm > 0) {
            float measured;
            check_ok(kiln_tensor_download(optim_grad_norm(o), &measured, 1));
            ck_assert_msg(fabs(measured - norm) <= 1e-5 * norm, "norm %g, expected %g",
                          measured, norm);
        }
        free(got);
        free(p);
        free(g);
        optim_free(o);
    }
    net_close(&s);
}
END_TEST

/* Each schedule for 100 epochs against its formula, written out anew. */
START_TEST(schedules_follow_their_formulas)
{
    const double base = 0.1, pi = 3.14159265358979323846;
    sched_config c = {.base_lr = base, .step_size = 7, .gamma = 0.5, .t_max = 40,
                      .eta_min = 0.001, .warmup = 5, .n_milestones = 3,
                      .milestones = {10, 30, 60}};
    for (int kind = SCHED_CONSTANT; kind <= SCHED_WARMUP_COSINE; kind++) {
        c.kind = (sched_kind)kind;
        scheduler s;
        sched_init(&s, &c);
        for (int t = 0; t < 100; t++) {
            double want = base;
            if (kind == SCHED_STEP)
                want = base * pow(0.5, t / 7);
            else if (kind == SCHED_MULTISTEP)
                want = base * pow(0.5, (t >= 10) + (t >= 30) + (t >= 60));
            else if (kind == SCHED_EXPONENTIAL)
                want = base * pow(0.5, t);
            else if (kind == SCHED_COSINE)
                want = 0.001 + (base - 0.001) * (1 + cos(pi * t / 40)) / 2;
            else if (kind == SCHED_WARMUP_COSINE)
                want = t < 5 ? base * (t + 1) / 5
                             : 0.001 + (base - 0.001) * (1 + cos(pi * (t - 5) / 35)) / 2;
            double got = sched_advance(&s, t, 1.0);
            ck_assert_msg(fabs(got - want) <= 1e-12 * fmax(1, want), "%s epoch %d: %.12g, "
                          "expected %.12g", sched_name((sched_kind)kind), t, got, want);
        }
    }
}
END_TEST

/* ReduceLROnPlateau on a scripted loss sequence: patience 2, factor 0.5. */
START_TEST(plateau_reduces_after_patience)
{
    sched_config c = {.kind = SCHED_PLATEAU, .base_lr = 1.0, .factor = 0.5, .patience = 2,
                      .threshold = 1e-4};
    scheduler s;
    sched_init(&s, &c);
    static const double losses[] = {1.0, 0.9, 0.9, 0.95, 0.91, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8};
    static const double want[] = {1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25};
    for (int t = 0; t < 11; t++) {
        double lr = sched_advance(&s, t + 1, losses[t]);
        ck_assert_msg(fabs(lr - want[t]) < 1e-12, "after epoch %d (loss %g): lr %g, expected "
                      "%g", t, losses[t], lr, want[t]);
    }
}
END_TEST

/* Every optimizer, schedule and loss of the lists is read back by its
 * name from a [train] section, and a wrong name lists them all. */
static train_config read_train(const char *key, const char *value, kiln_status want)
{
    char text[256];
    snprintf(text, sizeof text, "[input]\nshape = 3\n[linear]\nout = 2\n[train]\n%s = %s\n",
             key, value);
    kiln_model *m;
    check_ok(kiln_model_parse(text, "lists.ini", &m));
    train_config c;
    ck_assert_int_eq(train_config_read(m, &c), want);
    kiln_model_free(m);
    return c;
}

START_TEST(every_listed_name_is_read_back)
{
    for (int k = 0; k < OPTIM_COUNT; k++)
        ck_assert_int_eq(read_train("optimizer", optim_name((optim_kind)k), KILN_OK).optim.kind, k);
    for (int k = 0; k < SCHED_COUNT; k++)
        ck_assert_int_eq(read_train("schedule", sched_name((sched_kind)k), KILN_OK).sched.kind, k);
    for (int k = 0; k < LOSS_COUNT; k++)
        ck_assert_int_eq(read_train("loss", loss_name((loss_kind)k), KILN_OK).loss, k);
    read_train("optimizer", "lamb", KILN_ERR_MODEL);
    for (int k = 0; k < OPTIM_COUNT; k++)
        ck_assert_msg(strstr(kiln_last_error(), optim_name((optim_kind)k)), "%s",
                      kiln_last_error());
}
END_TEST

int main(void)
{
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("optim");
    tcase_add_loop_test(tc, optimizer_steps_match_pytorch_formulas, 0, OPTIM_CASES);
    tcase_add_loop_test(tc, a_guard_that_is_not_finite_keeps_everything, 0, OPTIM_CASES);
    tcase_add_test(tc, an_optimizer_without_parameters_steps);
    tcase_add_test(tc, gradient_clipping_is_exact);
    tcase_add_test(tc, schedules_follow_their_formulas);
    tcase_add_test(tc, plateau_reduces_after_patience);
    tcase_add_test(tc, every_listed_name_is_read_back);
    suite_add_tcase(s, tc);
    return test_run(s);
}
