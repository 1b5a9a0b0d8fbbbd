/* Whole networks on the device: gradients of four small networks against
 * central differences of the loss, the fused pipeline against the unfused
 * one (same numbers, fewer steps, no more launches), and seeded initialisation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ref_ops.h"
#include "optim/optim.h"
#include "compiler/pipeline.h"

typedef struct {
    const char *label;
    const char *text;
    loss_kind loss;
    size_t classes; /* cross-entropy classes, or the output width for mse */
    int shared;     /* gradients the plan should place in an add's memory */
} net_case;

static const net_case nets[] = {
    {"mlp with batchnorm and dropout",
     "[input]\nshape = 7\n[linear]\nout = 16\n[batchnorm]\n[tanh]\n[dropout]\np = 0.25\n"
     "[linear]\nout = 5\n[sigmoid]\n[linear]\nout = 3\n",
     LOSS_CROSS_ENTROPY, 3, 0},
    {"small cnn",
     "[input]\nshape = 2x7x6\n[conv2d]\nout = 3\nsize = 3\npad = 1\n[tanh]\n[avgpool]\nsize = 2\n"
     "[conv2d]\nout = 4\nsize = 2\nstride = 1\n[batchnorm]\n[gelu]\n[flatten]\n[linear]\n"
     "out = 4\n",
     LOSS_CROSS_ENTROPY, 4, 0},
    {"residual block",
     "[input]\nshape = 6\n[linear]\nout = 8\nname = stem\n[tanh]\nname = a\n[linear]\nout = 8\n"
     "[layernorm]\n[sigmoid]\n[add]\nfrom = a, 4\n[add]\nfrom = 5, a\n[linear]\nout = 8\n"
     "[tanh]\n[concat]\nfrom = 8, stem\n[linear]\nout = 2\n",
     LOSS_MSE, 2, 2},
    {"residual blocks with the activation after the sum",
     "[input]\nshape = 3x5x7\n[conv2d]\nout = 4\nsize = 3\npad = 1\nname = stem\n[conv2d]\n"
     "out = 4\nsize = 3\npad = 1\nbias = false\n[batchnorm]\n[tanh]\n[conv2d]\nout = 4\n"
     "size = 3\npad = 1\nbias = false\n[batchnorm]\nname = main\n[add]\nfrom = main, stem\n"
     "[tanh]\nname = block\n[conv2d]\nout = 4\nsize = 1\n[add]\nfrom = block, 8\n[sigmoid]\n"
     "[flatten]\n[linear]\nout = 3\n",
     LOSS_CROSS_ENTROPY, 3, 3},
    /* a GPT's residual stream: each add's gradient is its branch's and the
     * stream's, whose layernorm adds its own after the branch's backward */
    {"pre-norm residual stream",
     "[input]\nshape = 6\n[linear]\nout = 8\nname = x0\n[layernorm]\n[linear]\nout = 12\n"
     "[gelu]\n[linear]\nout = 8\nname = f1\n[add]\nfrom = x0, f1\nname = x1\n[layernorm]\n"
     "[linear]\nout = 8\nname = f2\n[add]\nfrom = x1, f2\n[tanh]\n[linear]\nout = 3\n",
     LOSS_CROSS_ENTROPY, 3, 3},
    /* x's gradient keeps its own memory: its other reader (s) runs its
     * backward before the branch (t) reads the sum's gradient; and b's,
     * whose tanh rewrites it in place before y reads the outer sum's */
    {"readers the plan must not share with",
     "[input]\nshape = 6\n[linear]\nout = 8\nname = x\n[linear]\nfrom = input\nout = 8\n"
     "[tanh]\nname = t\n[sigmoid]\nfrom = x\nname = s\n[add]\nfrom = x, t\nname = a\n"
     "[linear]\nfrom = input\nout = 8\nname = y\n[add]\nfrom = a, s\n[tanh]\nname = b\n"
     "[add]\nfrom = b, y\n[linear]\nout = 3\n",
     LOSS_CROSS_ENTROPY, 3, 4},
    /* groups nest: a (fused into wa's epilogue) shares b's memory, v a's;
     * v's other reader y adds into it before wb reads b's gradient there */
    {"nested sums, one input read elsewhere",
     "[input]\nshape = 6\n[linear]\nout = 8\nname = v\n[linear]\nfrom = input\nout = 8\n"
     "name = wb\n[tanh]\nfrom = v\nname = y\n[linear]\nout = 8\nname = wa\n[add]\n"
     "from = v, wa\nname = a\n[add]\nfrom = a, wb\nname = b\n[linear]\nout = 3\n",
     LOSS_CROSS_ENTROPY, 3, 2},
    /* the same with plain adds (wa ends in a sigmoid) */
    {"nested plain sums, one input read elsewhere",
     "[input]\nshape = 6\n[linear]\nout = 8\nname = v\n[linear]\nfrom = input\nout = 8\n"
     "name = wb\n[tanh]\nfrom = v\nname = y\n[linear]\nout = 8\n[sigmoid]\nname = wa\n"
     "[add]\nfrom = v, wa\nname = a\n[add]\nfrom = a, wb\nname = b\n[linear]\nout = 3\n",
     LOSS_CROSS_ENTROPY, 3, 3},
    /* v shares a's memory, and so does p, inside a's other input w = p + q;
     * p reads it after v's other reader y has added into it */
    {"a sum's input below the other input's sum",
     "[input]\nshape = 6\n[linear]\nout = 8\nname = v\n[linear]\nfrom = input\nout = 8\n"
     "name = p\n[tanh]\nfrom = v\nname = y\n[linear]\nout = 8\n[sigmoid]\nname = q\n"
     "[add]\nfrom = p, q\nname = w\n[add]\nfrom = v, w\nname = a\n[linear]\nout = 3\n",
     LOSS_CROSS_ENTROPY, 3, 3},
    /* the same with w fused into q's epilogue (q = linear(y) + p) */
    {"a sum's input below the other input's fused sum",
     "[input]\nshape = 6\n[linear]\nout = 8\nname = v\n[linear]\nfrom = input\nout = 8\n"
     "name = p\n[tanh]\nfrom = v\nname = y\n[linear]\nout = 8\nname = q\n"
     "[add]\nfrom = p, q\nname = w\n[add]\nfrom = v, w\nname = a\n[linear]\nout = 3\n",
     LOSS_CROSS_ENTROPY, 3, 2},
    /* y = layernorm(v) shares b's memory and adds its input gradient into
     * v's, which would be that same memory */
    {"a reader adding into its own gradient's memory",
     "[input]\nshape = 6\n[linear]\nout = 8\nname = v\n[layernorm]\nname = y\n"
     "[linear]\nfrom = input\nout = 8\n[sigmoid]\nname = x\n[add]\nfrom = v, x\nname = a\n"
     "[add]\nfrom = a, y\nname = b\n[linear]\nout = 3\n",
     LOSS_CROSS_ENTROPY, 3, 3},
    /* linear(x) + x stays an add: x would get two gradients of one step */
    {"a linear of x plus x",
     "[input]\nshape = 6\n[linear]\nout = 8\nname = x\n[linear]\nout = 8\nname = l\n"
     "[add]\nfrom = l, x\nname = a\n[tanh]\nfrom = x\nname = t\n[add]\nfrom = a, t\n"
     "[tanh]\n[linear]\nout = 3\n",
     LOSS_CROSS_ENTROPY, 3, 3},
    /* x's two gradients from the concat, after t's: each its own partial */
    {"a concat of x and x, x read after it too",
     "[input]\nshape = 6\n[linear]\nout = 8\nname = x\n[concat]\nfrom = x, x\n"
     "[linear]\nout = 8\nname = lc\n[tanh]\nfrom = x\nname = t\n[add]\nfrom = lc, t\n"
     "[tanh]\n[linear]\nout = 3\n",
     LOSS_CROSS_ENTROPY, 3, 2},
    /* downsampling blocks: each 1 x 1 stride-2 shortcut reaches a quarter
     * of its input, so its backward runs after the main path's, adding
     * into the gradient that one wrote (order_backward) */
    {"downsampling blocks with 1 x 1 shortcuts",
     "[input]\nshape = 2x9x8\n[conv2d]\nout = 3\nsize = 3\npad = 1\nname = stem\n[conv2d]\n"
     "out = 4\nsize = 3\nstride = 2\npad = 1\nbias = false\n[batchnorm]\n[tanh]\n[conv2d]\n"
     "out = 4\nsize = 3\npad = 1\nname = main\n[conv2d]\nfrom = stem\nout = 4\nsize = 1\n"
     "stride = 2\nbias = false\n[batchnorm]\nname = short\n[add]\nfrom = main, short\n"
     "[tanh]\nname = block\n[conv2d]\nout = 5\nsize = 3\nstride = 2\npad = 1\nname = m2\n"
     "[conv2d]\nfrom = block\nout = 5\nsize = 1\nstride = 2\nname = s2\n[add]\n"
     "from = m2, s2\n[flatten]\n[linear]\nout = 3\n",
     LOSS_CROSS_ENTROPY, 3, 4},
    /* the model's last layer merges only into the last step (its output):
     * not past a layer that nothing reads, neither a sum into a linear nor
     * an activation */
    {"a last sum past a layer nothing reads",
     "[input]\nshape = 6\n[linear]\nout = 8\n[tanh]\nname = r\n[linear]\nfrom = input\n"
     "out = 8\nname = l\n[linear]\nfrom = input\nout = 3\n[sigmoid]\n[add]\nfrom = l, r\n",
     LOSS_MSE, 8, 2},
    {"a last activation past a layer nothing reads",
     "[input]\nshape = 6\n[linear]\nout = 8\nname = l\n[linear]\nfrom = input\nout = 3\n"
     "[sigmoid]\n[tanh]\nfrom = l\n",
     LOSS_MSE, 8, 0},
};

#define NET_COUNT (int)(sizeof nets / sizeof nets[0])
#define BATCH 5

typedef struct {
    kiln_model *model;
    pipeline *p;
    kiln_tensor *target, *loss;
} net;

static void net_open(net *n, const net_case *c, pipe_options options)
{
    check_ok(kiln_model_parse(c->text, c->label, &n->model));
    check_ok(pipeline_create(test_ctx(), n->model, BATCH, options, 1234, &n->p));
    size_t in = kiln_tensor_numel(n->p->input);
    float *x = test_alloc(in * sizeof *x);
    kiln_rng rng;
    rng_seed(&rng, 99);
    rng_fill(&rng, x, in, -1, 1);
    check_ok(kiln_tensor_upload(n->p->input, x, in));
    free(x);
    int ce = c->loss == LOSS_CROSS_ENTROPY;
    size_t shape[2] = {BATCH, c->classes}, nt = ce ? BATCH : BATCH * c->classes;
    float t[BATCH * 8];
    for (size_t i = 0; i < nt; i++)
        t[i] = ce ? (float)(rng_next(&rng) % c->classes) : (float)rng_uniform(&rng, -1, 1);
    check_ok(kiln_tensor_create(test_ctx(), ce ? 1 : 2, shape, &n->target));
    check_ok(kiln_tensor_upload(n->target, t, nt));
    size_t one = 1;
    check_ok(kiln_tensor_create(test_ctx(), 1, &one, &n->loss));
}

static void net_close(net *n)
{
    pipeline_free(n->p);
    kiln_model_free(n->model);
    kiln_tensor_free(n->target);
    kiln_tensor_free(n->loss);
}

/* The loss of one training forward with the dropout counter held at 1. */
static double loss_at(net *n, const net_case *c)
{
    n->p->counter = 0;
    check_ok(pipeline_forward(n->p, 1));
    check_ok(pipeline_loss(n->p, c->loss, 0, n->target, n->loss));
    float l;
    check_ok(kiln_tensor_download(n->loss, &l, 1));
    return l;
}

static float *download_all(kiln_tensor *t)
{
    float *h = test_alloc(t->numel * sizeof *h);
    check_ok(kiln_tensor_download(t, h, t->numel));
    return h;
}

/* The parameter gradients of a fused, planned pipeline against central
 * differences of its loss, at three coordinates of every parameter. */
static void check_gradients(const net_case *c)
{
    net n;
    net_open(&n, c, (pipe_options){.fuse = 1, .plan = 1});
    loss_at(&n, c);
    check_ok(pipeline_backward(n.p, 1));
    int checked = 0;
    for (size_t s = 0; s < n.p->count; s++) {
        pipe_step *step = &n.p->steps[s];
        for (int k = 0; k < step->shapes.n_params; k++) {
            kiln_tensor *w = step->param[k];
            float *values = download_all(w), *grads = download_all(step->dparam[k]);
            for (int probe = 0; probe < 3; probe++) {
                size_t i = (size_t)(rng_next(test_rng()) % w->numel);
                float keep = values[i], h = 1e-2f;
                values[i] = keep + h;
                check_ok(kiln_tensor_upload(w, values, w->numel));
                double up = loss_at(&n, c);
                values[i] = keep - h;
                check_ok(kiln_tensor_upload(w, values, w->numel));
                double down = loss_at(&n, c);
                values[i] = keep;
                check_ok(kiln_tensor_upload(w, values, w->numel));
                double fd = (up - down) / (2.0 * h);
                ck_assert_msg(fabs(fd - grads[i]) <= 1e-2 * fmax(fabs(fd), 0.05),
                              "%s: step %zu (%s) parameter %d[%zu]: backward %.6g, finite "
                              "differences %.6g",
                              c->label, s, op_get(step->op)->name, k, i, (double)grads[i], fd);
                checked++;
            }
            free(values);
            free(grads);
        }
    }
    ck_assert_int_gt(checked, 6);
    net_close(&n);
}

START_TEST(network_gradients_match_finite_differences)
{
    check_gradients(&nets[_i]);
}
END_TEST

static void expect_same(kiln_tensor *a, kiln_tensor *b, const char *what, const char *label)
{
    float *x = download_all(a), *y = download_all(b);
    double *want = test_alloc(a->numel * sizeof *want);
    for (size_t i = 0; i < a->numel; i++)
        want[i] = y[i];
    check_close(x, want, a->numel, 1e-6, 1e-5, "%s: %s, fused against unfused", label, what);
    free(x);
    free(y);
    free(want);
}

/* The same loss, output, parameters and gradients after one training
 * step, fused and unfused. */
static void expect_same_step(net *fused, net *plain, const char *label)
{
    expect_same(fused->loss, plain->loss, "loss", label);
    expect_same(pipeline_output(fused->p), pipeline_output(plain->p), "output", label);
    /* the same parameters, in the same order, with the same gradients */
    size_t j = 0;
    for (size_t s = 0; s < fused->p->count; s++) {
        pipe_step *a = &fused->p->steps[s];
        for (int k = 0; k < a->shapes.n_params; k++) {
            while (plain->p->steps[j].shapes.n_params == 0)
                j++;
            expect_same(a->param[k], plain->p->steps[j].param[k], "parameter", label);
            expect_same(a->dparam[k], plain->p->steps[j].dparam[k], "gradient", label);
        }
        if (a->shapes.n_params)
            j++;
    }
}

/* Backward runs the steps in reverse, except that a 1 x 1 stride-2
 * convolution runs after the other readers of its input, whose gradient
 * it then adds into: the last net's two shortcuts, and no step of the
 * others. */
START_TEST(sparse_input_gradients_run_backward_after_the_other_readers)
{
    const net_case *c = &nets[_i];
    kiln_model *m;
    pipeline *p;
    check_ok(kiln_model_parse(c->text, c->label, &m));
    check_ok(pipeline_lower(m, BATCH, (pipe_options){.fuse = 1, .plan = 1}, &p));
    int moved = 0, n = (int)p->count;
    for (int s = 0; s < n; s++) {
        const pipe_step *st = &p->steps[s];
        int sparse = st->op == OP_CONV2D && st->attrs.kernel == 1 && st->attrs.stride == 2;
        for (int r = 0; sparse && r < n; r++)
            if (r != s && p->steps[r].inputs[0] == st->inputs[0])
                ck_assert_int_gt(p->back_at[s], p->back_at[r]);
        moved += sparse;
        ck_assert_int_eq(p->back_at[p->back_order[s]], n + 1 + s);
    }
    for (int s = 0; s < n && !moved; s++)
        ck_assert_int_eq(p->back_order[s], n - 1 - s);
    ck_assert_int_eq(moved, strstr(c->label, "1 x 1 shortcuts") ? 2 : 0);
    pipeline_free(p);
    kiln_model_free(m);
}
END_TEST

/* A tensor's values as doubles (NULL for NULL), to be freed. */
static double *doubles_of(kiln_tensor *t)
{
    if (!t)
        return NULL;
    float *f = download_all(t);
    double *d = test_alloc(t->numel * sizeof *d);
    for (size_t i = 0; i < t->numel; i++)
        d[i] = f[i];
    free(f);
    return d;
}

/* Step s's eval forward of x into y by the float64 reference
 * (ref_forward), from the step's own parameters and buffers. */
static void reference_step(const pipe_step *s, const kiln_shape *in, const double *x, double *y)
{
    ref_op r = {.a = &s->attrs, .in_shape = {*in}, .out_shape = s->shapes.out, .in = {x},
                .out = y};
    for (int k = 0; k < OP_MAX_PARAMS; k++)
        r.param[k] = doubles_of(s->param[k]);
    for (int k = 0; k < OP_MAX_BUFFERS; k++)
        r.buffer[k] = doubles_of(s->buffer[k]);
    ref_forward(s->op, &r);
    for (int k = 0; k < OP_MAX_PARAMS; k++)
        free((double *)r.param[k]);
    for (int k = 0; k < OP_MAX_BUFFERS; k++)
        free(r.buffer[k]);
}

/* The same random weights and biases in p[0] and p[1]. */
static void same_random_parameters(pipeline *const *p)
{
    for (int k = 0; k < 2; k++) {
        kiln_rng rng;
        rng_seed(&rng, 5);
        for (size_t i = 0; i < p[k]->count; i++)
            for (int j = 0; j < p[k]->steps[i].shapes.n_params; j++) {
                kiln_tensor *t = p[k]->steps[i].param[j];
                float *v = test_alloc(t->numel * sizeof *v);
                rng_fill(&rng, v, t->numel, -0.5f, 0.5f);
                check_ok(kiln_tensor_upload(t, v, t->numel));
                free(v);
            }
    }
}

/* The model's eval forward of one input of `in` random values, with chains
 * (p[0]) and a launch a layer (p[1], the debug mode `check`): the same
 * bits, p[0] in `launches` launches where chains run; outputs returned. */
static float *forward_chained(const char *text, size_t in, uint64_t launches, float *x,
                              pipeline **p, kiln_model **m)
{
    check_ok(kiln_model_parse(text, "chain", m));
    for (int k = 0; k < 2; k++)
        check_ok(pipeline_create(test_ctx(), *m, 1, (pipe_options){.fuse = 1, .check = k}, 7,
                                 &p[k]));
    rng_fill(test_rng(), x, in, -2.0f, 2.0f);
    same_random_parameters(p);
    for (int k = 0; k < 2; k++) {
        check_ok(kiln_tensor_upload(p[k]->input, x, in));
        check_ok(pipeline_forward(p[k], 0)); /* folds a batchnorm */
    }
    uint64_t before = kiln_ctx_launches(test_ctx());
    check_ok(pipeline_forward(p[0], 0));
    uint64_t used = kiln_ctx_launches(test_ctx()) - before;
    check_ok(pipeline_forward(p[1], 0));
    if (op_linear_chains(test_ctx(), 1, 1))
        ck_assert_uint_eq(used, launches);
    kiln_tensor *out = pipeline_output(p[0]);
    float *got = download_all(out), *one = download_all(pipeline_output(p[1]));
    ck_assert_mem_eq(got, one, out->numel * sizeof *got);
    free(one);
    return got;
}

/* In eval mode a forward of one sample runs consecutive small linear
 * layers in one launch (linear_chain): their outputs are those of a
 * launch each, bit for bit, and a float64 reference's; over every
 * activation, widths of 1, 17 and 1024, four layers in one launch and a
 * fifth in the next, a layer too wide to join (1025 outputs) and one too
 * wide to read (1025 inputs), a dropout passed on between chained layers
 * and a batchnorm folded into the layer before the first chain. A layer
 * whose output another step reads too ends its chain. */
START_TEST(small_layers_of_one_sample_run_in_one_launch)
{
    static const char text[] =
        "[input]\nshape = 61\n[linear]\nout = 9\n[batchnorm]\n[relu]\n[linear]\nout = 17\n"
        "[tanh]\n[linear]\nout = 1\n[sigmoid]\n[linear]\nout = 1024\n[gelu]\n[linear]\n"
        "out = 37\n[leaky_relu]\nslope = 0.2\n[linear]\nout = 5\n[linear]\nout = 1025\n"
        "[silu]\n[linear]\nout = 6\n[gelu]\napprox = tanh\n[linear]\nout = 7\n[relu]\n"
        "[dropout]\n[linear]\nout = 3\n[linear]\nout = 2\n";
    static const char shared[] =
        "[input]\nshape = 5\n[linear]\nout = 4\n[relu]\nname = a\n[linear]\nout = 4\n"
        "[tanh]\n[concat]\nfrom = a, 3\n[linear]\nout = 3\n[linear]\nout = 2\n";
    kiln_model *m;
    pipeline *p[2];
    float x[61];
    /* the folded layer, 17 to 37 chained, 5 alone (its fifth), 1025, 6,
     * then 7, 3 and 2 chained past the dropout */
    float *got = forward_chained(text, 61, 6, x, p, &m);
    double v[16][1025], want[2];
    for (int i = 0; i < 61; i++)
        v[0][i] = x[i];
    ck_assert_uint_lt(p[0]->count, 16);
    for (size_t i = 0; i < p[0]->count; i++)
        reference_step(&p[0]->steps[i], i ? &p[0]->steps[i - 1].shapes.out : &p[0]->input_shape,
                       v[i], v[i + 1]);
    for (int j = 0; j < 2; j++)
        want[j] = v[p[0]->count][j];
    check_close(got, want, 2, 1e-5, 1e-4, "one sample through chained layers");
    free(got);
    for (int k = 0; k < 2; k++)
        pipeline_free(p[k]);
    kiln_model_free(m);
    /* a, its reader 4 (a is read by the concat too), the concat, then 3
     * and 2 chained */
    free(forward_chained(shared, 5, 4, x, p, &m));
    for (int k = 0; k < 2; k++)
        pipeline_free(p[k]);
    kiln_model_free(m);
}
END_TEST

START_TEST(fused_pipeline_matches_unfused_in_no_more_launches)
{
    const net_case *c = &nets[_i];
    net fused, plain;
    net_open(&fused, c, (pipe_options){.fuse = 1});
    net_open(&plain, c, (pipe_options){0});
    kiln_ctx *ctx = test_ctx();
    uint64_t before = kiln_ctx_launches(ctx);
    loss_at(&fused, c);
    check_ok(pipeline_backward(fused.p, 1));
    uint64_t fused_launches = kiln_ctx_launches(ctx) - before;
    before = kiln_ctx_launches(ctx);
    loss_at(&plain, c);
    check_ok(pipeline_backward(plain.p, 1));
    uint64_t plain_launches = kiln_ctx_launches(ctx) - before;
    printf("%s: %llu launches per step fused, %llu unfused\n", c->label,
           (unsigned long long)fused_launches, (unsigned long long)plain_launches);
    ck_assert_uint_lt(fused.p->count, plain.p->count);
    /* no more launches: kiln's GEMM adds a linear layer's bias as it stores
     * (gemm_epilogue), so a linear + tanh takes two launches fused or not */
    ck_assert_uint_le(fused_launches, plain_launches);
    expect_same_step(&fused, &plain, c->label);
    /* eval mode, where batchnorm folds into the layer before it */
    before = kiln_ctx_launches(ctx);
    check_ok(pipeline_forward(fused.p, 0));
    fused_launches = kiln_ctx_launches(ctx) - before;
    before = kiln_ctx_launches(ctx);
    check_ok(pipeline_forward(plain.p, 0));
    plain_launches = kiln_ctx_launches(ctx) - before;
    printf("%s: %llu launches per eval forward fused, %llu unfused\n", c->label,
           (unsigned long long)fused_launches, (unsigned long long)plain_launches);
    ck_assert_uint_le(fused_launches, plain_launches);
    expect_same(pipeline_output(fused.p), pipeline_output(plain.p), "eval output", c->label);
    net_close(&fused);
    net_close(&plain);
}
END_TEST

/* With every arena block filled with NaN when its life ends, a planned
 * pipeline still gives the unplanned one's numbers, step after step: no
 * value is read after the planner let another take its place. */
START_TEST(poisoned_planned_pipeline_matches_unplanned)
{
    const net_case *c = &nets[_i];
    net planned, plain;
    net_open(&planned, c, (pipe_options){.fuse = 1, .plan = 1, .poison = 1});
    net_open(&plain, c, (pipe_options){.fuse = 1});
    size_t arena = planned.p->arena_bytes, unplanned, planned_bytes, params;
    plan_memory(planned.p, &planned_bytes, &unplanned, &params);
    int shared = 0;
    for (size_t i = 0; i < planned.p->n_blocks; i++)
        shared += planned.p->blocks[i].same_as >= 0;
    printf("%s: arena %zu bytes, unplanned %zu, %d gradients in an add's memory\n", c->label,
           arena, unplanned, shared);
    ck_assert_int_eq(shared, c->shared);
    ck_assert_uint_le(arena, unplanned + KILN_ARENA_ALIGN * planned.p->n_blocks);
    for (int step = 0; step < 2; step++) {
        for (int eval = 0; eval < 2; eval++) {
            check_ok(pipeline_forward(planned.p, !eval));
            check_ok(pipeline_forward(plain.p, !eval));
            expect_same(pipeline_output(planned.p), pipeline_output(plain.p), "output", c->label);
        }
        check_ok(pipeline_loss(planned.p, c->loss, 0, planned.target, planned.loss));
        check_ok(pipeline_loss(plain.p, c->loss, 0, plain.target, plain.loss));
        expect_same(planned.loss, plain.loss, "loss", c->label);
        check_ok(pipeline_backward(planned.p, 1));
        check_ok(pipeline_backward(plain.p, 1));
        for (size_t s = 0; s < plain.p->count; s++)
            for (int k = 0; k < plain.p->steps[s].shapes.n_params; k++)
                expect_same(planned.p->steps[s].dparam[k], plain.p->steps[s].dparam[k],
                            "gradient", c->label);
    }
    net_close(&planned);
    net_close(&plain);
}
END_TEST

/* A softmax head is the prediction: cross-entropy trains on the logits
 * before it, so the loss and gradients equal those of the model without it. */
START_TEST(softmax_head_trains_on_logits)
{
    static const char base[] = "[input]\nshape = 6\n[linear]\nout = 5\n[tanh]\n[linear]\n"
                               "out = 4\n";
    char with_head[256];
    snprintf(with_head, sizeof with_head, "%s[softmax]\n", base);
    net_case plain_case = {"logits", base, LOSS_CROSS_ENTROPY, 4, 0};
    net_case head_case = {"softmax head", with_head, LOSS_CROSS_ENTROPY, 4, 0};
    net a, b;
    net_open(&a, &plain_case, (pipe_options){.fuse = 1, .plan = 1, .poison = 1});
    net_open(&b, &head_case, (pipe_options){.fuse = 1, .plan = 1, .poison = 1});
    loss_at(&a, &plain_case);
    loss_at(&b, &head_case);
    expect_same(a.loss, b.loss, "loss", "softmax head");
    check_ok(pipeline_backward(a.p, 1));
    check_ok(pipeline_backward(b.p, 1));
    for (size_t s = 0; s < a.p->count; s++)
        for (int k = 0; k < a.p->steps[s].shapes.n_params; k++)
            expect_same(a.p->steps[s].dparam[k], b.p->steps[s].dparam[k], "gradient",
                        "softmax head");
    /* and its prediction is the softmax of the logits: rows sum to 1 */
    check_ok(pipeline_forward(b.p, 0));
    float *probs = download_all(pipeline_output(b.p));
    for (int r = 0; r < BATCH; r++)
        ck_assert_float_eq_tol(probs[4 * r] + probs[4 * r + 1] + probs[4 * r + 2] +
                                   probs[4 * r + 3],
                               1.0f, 1e-5f);
    free(probs);
    net_close(&a);
    net_close(&b);
}
END_TEST

/* kaiming_normal: N(0, 2 / fan_in), within a 5σ bound on the variance. */
START_TEST(initialisation_follows_the_formula_and_the_seed)
{
    kiln_model *m;
    check_ok(kiln_model_parse("[input]\nshape = 400\n[linear]\nout = 300\n[relu]\n"
                              "[linear]\nout = 200\ninit = xavier_uniform\n",
                              "init.ini", &m));
    pipeline *a, *b;
    check_ok(pipeline_create(test_ctx(), m, 1, (pipe_options){.fuse = 1}, 7, &a));
    check_ok(pipeline_create(test_ctx(), m, 1, (pipe_options){.plan = 1}, 7, &b));
    float *w = download_all(a->steps[0].param[0]), *w2 = download_all(b->steps[0].param[0]);
    size_t n = a->steps[0].param[0]->numel;
    ck_assert(memcmp(w, w2, n * sizeof *w) == 0);
    double sum = 0, sq = 0;
    for (size_t i = 0; i < n; i++) {
        sum += w[i];
        sq += (double)w[i] * w[i];
    }
    double var = sq / (double)n, want = 2.0 / 400;
    ck_assert_msg(fabs(var - want) <= 5 * want * sqrt(2.0 / (double)n), "variance %g, expected "
                  "%g", var, want);
    ck_assert_msg(fabs(sum / (double)n) <= 5 * sqrt(want / (double)n), "mean %g", sum / n);
    float *u = download_all(a->steps[1].param[0]), *bias = download_all(a->steps[1].param[1]);
    double bound = sqrt(6.0 / (300 + 200)), top = 0;
    for (size_t i = 0; i < 300 * 200; i++)
        top = fmax(top, fabs(u[i]));
    ck_assert_msg(top <= bound && top > 0.99 * bound, "xavier_uniform max %g, bound %g", top,
                  bound);
    for (int i = 0; i < 200; i++)
        ck_assert_float_eq(bias[i], 0.0f);
    free(w);
    free(w2);
    free(u);
    free(bias);
    pipeline_free(a);
    pipeline_free(b);
    kiln_model_free(m);
}
END_TEST

/* The same seeded training steps on every device kiln can see give the
 * same losses within a tolerance (float sums differ in order between
 * implementations); prints the largest difference. */
START_TEST(same_training_on_every_device)
{
    kiln_device_info *list;
    size_t n;
    check_ok(kiln_devices(&list, &n));
    static const net_case *nets_used[] = {&nets[0], &nets[1]};
    double worst = 0;
    for (int k = 0; k < 2; k++) {
        const net_case *c = nets_used[k];
        double losses[8][6];
        for (size_t d = 0; d < n && d < 8; d++) {
            char sel[16];
            snprintf(sel, sizeof sel, "%zu", d);
            kiln_ctx *ctx;
            check_ok(kiln_ctx_create(sel, &ctx));
            kiln_model *m;
            check_ok(kiln_model_parse(c->text, c->label, &m));
            pipeline *p;
            check_ok(pipeline_create(ctx, m, BATCH, (pipe_options){.fuse = 1, .plan = 1}, 5, &p));
            optim_config oc = optim_defaults(OPTIM_ADAM);
            optimizer *o;
            check_ok(optim_create(p, &oc, &o));
            kiln_rng rng;
            rng_seed(&rng, 11);
            size_t in = kiln_tensor_numel(p->input);
            float *x = test_alloc(in * sizeof *x), t[BATCH];
            rng_fill(&rng, x, in, -1, 1);
            for (int i = 0; i < BATCH; i++)
                t[i] = (float)(rng_next(&rng) % c->classes);
            size_t tshape = BATCH, one = 1;
            kiln_tensor *target, *loss;
            check_ok(kiln_tensor_create(ctx, 1, &tshape, &target));
            check_ok(kiln_tensor_create(ctx, 1, &one, &loss));
            check_ok(kiln_tensor_upload(target, t, BATCH));
            check_ok(kiln_tensor_upload(p->input, x, in));
            for (int step = 0; step < 6; step++) {
                float l;
                check_ok(pipeline_forward(p, 1));
                check_ok(pipeline_loss(p, c->loss, 0, target, loss));
                check_ok(pipeline_backward(p, 1));
                check_ok(optim_step(o, 1e-2f, NULL));
                check_ok(kiln_tensor_download(loss, &l, 1));
                losses[d][step] = l;
                double diff = fabs(l - losses[0][step]) / fmax(fabs(losses[0][step]), 1e-6);
                worst = fmax(worst, diff);
                ck_assert_msg(diff <= 1e-3, "%s on %s, step %d: loss %.7g against %.7g on %s",
                              c->label, list[d].name, step, l, losses[0][step], list[0].name);
            }
            free(x);
            kiln_tensor_free(target);
            kiln_tensor_free(loss);
            optim_free(o);
            pipeline_free(p);
            kiln_model_free(m);
            kiln_ctx_free(ctx);
        }
    }
    printf("same training on %zu device%s: largest relative loss difference %.2e%s\n", n,
           n == 1 ? "" : "s", worst,
           n == 1 ? " (one device visible: set RUSTICL_ENABLE=llvmpipe to compare two)" : "");
    kiln_free(list);
}
END_TEST

/* ---- every activation of KILN_ACT_LIST with a layer -------------------- */

/* After a conv2d, a batchnorm and a linear, each of which absorbs it where
 * the rows allow (act_info.from_output, op_desc.fuses_act). */
static net_case act_nets[KILN_ACT_COUNT];
static char act_texts[KILN_ACT_COUNT][400];
static int act_net_count;

static void list_act_nets(void)
{
    for (int a = 0; a < KILN_ACT_COUNT; a++) {
        const act_info *info = act_get((kiln_act)a);
        if (!info->layer)
            continue;
        int i = act_net_count++;
        snprintf(act_texts[i], sizeof act_texts[i],
                 "[input]\nshape = 2x5x6\n[conv2d]\nout = 3\nsize = 3\npad = 1\n[%s]\n"
                 "[batchnorm]\n[%s]\n[flatten]\n[linear]\nout = 4\n[%s]\n[linear]\nout = 3\n",
                 info->name, info->name, info->name);
        act_nets[i] = (net_case){info->name, act_texts[i], LOSS_CROSS_ENTROPY, 3, 0};
    }
}

/* Fused where the rows allow (three steps fewer; one, the linear's, for an
 * activation whose gradient needs its input) and not elsewhere, with the
 * unfused numbers; and, for activations without kinks, gradients that
 * match finite differences of the loss. */
START_TEST(every_activation_fuses_where_its_row_allows)
{
    const net_case *c = &act_nets[_i];
    kiln_act act = KILN_ACT_NONE;
    for (int a = 0; a < KILN_ACT_COUNT; a++)
        if (strcmp(act_get((kiln_act)a)->name, c->label) == 0)
            act = (kiln_act)a;
    net fused, plain;
    net_open(&fused, c, (pipe_options){.fuse = 1});
    net_open(&plain, c, (pipe_options){0});
    /* the conv2d, the batchnorm and the linear before each, as their rows say */
    static const op_kind before[] = {OP_CONV2D, OP_BATCHNORM, OP_LINEAR};
    size_t absorbed = 0;
    for (int j = 0; j < 3; j++) {
        absorbed += op_check_fusable(before[j], act) == KILN_OK;
        error_clear();
    }
    ck_assert_uint_eq(absorbed, act_get(act)->from_output ? 3 : 1);
    ck_assert_uint_eq(fused.p->count + absorbed, plain.p->count);
    loss_at(&fused, c);
    check_ok(pipeline_backward(fused.p, 1));
    loss_at(&plain, c);
    check_ok(pipeline_backward(plain.p, 1));
    expect_same_step(&fused, &plain, c->label);
    check_ok(pipeline_forward(fused.p, 0));
    check_ok(pipeline_forward(plain.p, 0));
    expect_same(pipeline_output(fused.p), pipeline_output(plain.p), "eval output", c->label);
    net_close(&fused);
    net_close(&plain);
    if (act_get(act)->smooth)
        check_gradients(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pipeline");
    TCase *tc = tcase_create("pipeline");
    tcase_add_loop_test(tc, network_gradients_match_finite_differences, 0, NET_COUNT);
    tcase_add_loop_test(tc, fused_pipeline_matches_unfused_in_no_more_launches, 0, NET_COUNT);
    tcase_add_loop_test(tc, poisoned_planned_pipeline_matches_unplanned, 0, NET_COUNT);
    tcase_add_loop_test(tc, sparse_input_gradients_run_backward_after_the_other_readers, 0,
                        NET_COUNT);
    tcase_add_test(tc, softmax_head_trains_on_logits);
    tcase_add_test(tc, small_layers_of_one_sample_run_in_one_launch);
    tcase_add_test(tc, initialisation_follows_the_formula_and_the_seed);
    tcase_add_test(tc, same_training_on_every_device);
    list_act_nets();
    tcase_add_loop_test(tc, every_activation_fuses_where_its_row_allows, 0, act_net_count);
    suite_add_tcase(s, tc);
    return test_run(s);
}
