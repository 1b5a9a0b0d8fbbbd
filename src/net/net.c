/* Networks on host arrays: a model compiled at its largest batch (which
 * owns the parameters) plus pipelines at smaller batches that share them,
 * so that a short batch trains and predicts exactly, with its own batch
 * statistics and a mean over its own samples. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "net/net.h"

kiln_status net_check(const kiln_net *net, const char *call)
{
    if (!net)
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "%s: the network is NULL", call);
    if (net->magic != NET_MAGIC)
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "%s: not a live network (freed, or never "
                                                    "made by kiln_net_create)", call);
    return KILN_OK;
}

static void free_pipe(net_pipe *q)
{
    pipeline_free(q->p);
    kiln_tensor_free(q->target);
    kiln_tensor_free(q->loss);
    memset(q, 0, sizeof *q);
}

/* Target and loss tensors of a pipe for the loss in use. */
static kiln_status alloc_targets(kiln_net *net, net_pipe *q)
{
    kiln_shape out = shape_of(pipeline_output(q->p)), one = shape_make(1, 1, 0, 0, 0);
    kiln_shape ts = net->c.loss == LOSS_CROSS_ENTROPY ? shape_make(1, q->p->batch, 0, 0, 0)
                                                      : out;
    kiln_tensor_free(q->target);
    q->target = NULL;
    kiln_status st = tensor_of(net->ctx, &ts, &q->target);
    if (st == KILN_OK && !q->loss)
        st = tensor_of(net->ctx, &one, &q->loss);
    return st;
}

/* The batchnorm statistics a training step shares: through the
 * communicator with sync_batchnorm, else none. */
static const op_sync *net_sync(const kiln_net *net)
{
    return net->c.sync_batchnorm && dist_comm_size(net->comm) > 1 ? &net->sync : NULL;
}

static kiln_status sync_sum(void *user, double *v, size_t n, int weighted)
{
    kiln_net *net = user;
    for (size_t k = 0; weighted && k < n; k++)
        v[k] *= net->share;
    return dist_sum_doubles(net->comm, v, n, weighted ? "batchnorm gradient sums"
                                                      : "batchnorm statistics");
}

void net_dist_step(kiln_net *net, size_t mine, size_t n)
{
    net->share = n ? (double)mine / (double)n : 0;
}

kiln_status net_reduce_gradients(kiln_net *net, size_t mine)
{
    if (dist_comm_size(net->comm) == 1)
        return KILN_OK;
    kiln_status st = net->buckets ? KILN_OK : buckets_create(net->main.p, &net->buckets);
    return st == KILN_OK ? buckets_reduce(net->buckets, net->comm, mine, net->share) : st;
}

kiln_status net_idle_step(kiln_net *net)
{
    net->main.p->counter++; /* as a forward would: dropout masks stay in step */
    net->main.p->sync = net_sync(net);
    return net->main.p->sync ? pipeline_sync_idle(net->main.p, net->c.loss) : KILN_OK;
}

static kiln_status pick_pipe(kiln_net *net, size_t n, net_pipe **out)
{
    net->clock++;
    if (n == net->max_batch) {
        net->main.used = net->clock;
        *out = &net->main;
        return KILN_OK;
    }
    net_pipe *oldest = &net->extra[0];
    for (int i = 0; i < NET_EXTRA_PIPES; i++) {
        net_pipe *q = &net->extra[i];
        if (q->p && q->p->batch == n) {
            q->used = net->clock;
            q->p->options = net->main.p->options;
            *out = q;
            return KILN_OK;
        }
        if (q->used < oldest->used)
            oldest = q;
    }
    free_pipe(oldest);
    kiln_status st = pipeline_create_shared(net->main.p, n, &oldest->p);
    if (st == KILN_OK)
        st = alloc_targets(net, oldest);
    if (st != KILN_OK) {
        free_pipe(oldest);
        return st;
    }
    oldest->used = net->clock;
    *out = oldest;
    return KILN_OK;
}

kiln_status net_pipe_for(kiln_net *net, size_t n, net_pipe **out)
{
    kiln_status st = pick_pipe(net, n, out);
    int shared = dist_comm_size(net->comm) > 1;
    if (st == KILN_OK && shared && !net->buckets)
        st = buckets_create(net->main.p, &net->buckets);
    if (st != KILN_OK)
        return st;
    (*out)->p->sync = net_sync(net);
    (*out)->p->on_backward = shared ? buckets_hook(net->buckets) : NULL;
    return KILN_OK;
}

kiln_tensor *net_logits(const kiln_net *net, const pipeline *p)
{
    int at = pipeline_loss_step(p, net->c.loss);
    return at >= 0 ? p->steps[at].out : p->input;
}

void net_normalize(const kiln_net *net, const float *x, size_t n, float *dst)
{
    size_t in = shape_numel(&net->m->input), group = in / net->norm_count;
    if (net->norm_count == 1 && net->mean[0] == 0.0f && net->std[0] == 1.0f) {
        if (dst != x)
            memcpy(dst, x, n * in * sizeof *dst);
        return;
    }
    for (size_t s = 0; s < n; s++)
        for (size_t i = 0; i < in; i++) {
            size_t g = i / group;
            dst[s * in + i] = (x[s * in + i] - net->mean[g]) / net->std[g];
        }
}

size_t net_norm_groups(const kiln_net *net, int per_feature)
{
    const kiln_shape *s = &net->m->input;
    if (!per_feature)
        return 1;
    return s->ndim == 3 ? s->d[0] : shape_numel(s);
}

kiln_status net_check_targets(const kiln_net *net, const float *y, size_t n, const char *what)
{
    size_t outputs = kiln_net_output_size(net);
    if (net->c.loss == LOSS_BCE) {
        for (size_t i = 0; i < n * outputs; i++)
            if (!(y[i] >= 0 && y[i] <= 1))
                return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "%s: target %zu of sample %zu is "
                                                            "%g; bce needs targets from 0 to 1",
                                 what, i % outputs, i / outputs, (double)y[i]);
        return KILN_OK;
    }
    if (net->c.loss != LOSS_CROSS_ENTROPY) {
        for (size_t i = 0; i < n * outputs; i++)
            if (!isfinite(y[i]))
                return kiln_fail(KILN_ERR_NUMERIC, "%s: target %zu of sample %zu is %g",
                                 what, i % outputs, i / outputs, (double)y[i]);
        return KILN_OK;
    }
    for (size_t i = 0; i < n; i++)
        if (!(y[i] >= 0 && y[i] < (float)outputs) || y[i] != floorf(y[i]))
            return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "%s: label of sample %zu is %g; "
                                                        "cross_entropy needs class indices "
                                                        "0 to %zu (the model's outputs)",
                             what, i, (double)y[i], outputs - 1);
    return KILN_OK;
}

void net_score(const kiln_net *net, const float *z, const float *y, size_t n, double *loss,
               size_t *correct, size_t *confusion)
{
    size_t classes = kiln_net_output_size(net);
    for (size_t i = 0; i < n; i++, z += classes) {
        if (net->c.loss != LOSS_CROSS_ENTROPY) {
            int all_right = 1; /* bce: every label's decision (logit >= 0) is right */
            for (size_t j = 0; j < classes; j++) {
                double v = z[j], t = y[i * classes + j];
                *loss += net->c.loss == LOSS_MSE ? (v - t) * (v - t) / (double)classes
                                                 : (fmax(v, 0) - v * t + log1p(exp(-fabs(v)))) /
                                                       (double)classes;
                all_right &= (v >= 0) == (t >= 0.5);
            }
            *correct += net->c.loss == LOSS_BCE && all_right;
            continue;
        }
        double label_f = y[i];
        size_t best = 0;
        for (size_t j = 1; j < classes; j++)
            if (z[j] > z[best])
                best = j;
        if (!(label_f >= 0 && label_f < (double)classes)) { /* never indexes out of range */
            *loss = NAN;
            continue;
        }
        size_t label = (size_t)label_f;
        double mx = z[best], sum = 0;
        for (size_t j = 0; j < classes; j++)
            sum += exp((double)z[j] - mx);
        *loss += mx + log(sum) - z[label];
        *correct += best == label;
        if (confusion)
            confusion[label * classes + best]++;
    }
}

kiln_status net_reset_optimizer(kiln_net *net)
{
    optim_free(net->opt);
    net->opt = NULL;
    return optim_create(net->main.p, &net->c.optim, &net->opt);
}

/* ---- creation ------------------------------------------------------------------ */

kiln_status kiln_net_create(kiln_ctx *ctx, kiln_model *m, size_t max_batch, kiln_net **out)
{
    if (!ctx || !m || !out)
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_net_create: a context, a model and "
                                                    "an output pointer are required");
    *out = NULL;
    kiln_net *net = calloc(1, sizeof *net);
    if (!net)
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "kiln_net_create: out of host memory");
    net->magic = NET_MAGIC;
    net->ctx = ctx;
    kiln_programs_hold(ctx); /* released by kiln_net_free */
    net->m = m;
    net->sync = (op_sync){sync_sum, net};
    kiln_status st = train_config_read(m, &net->c);
    if (st == KILN_OK)
        st = graph_finish(m);
    if (st == KILN_OK && m->count == 0)
        st = kiln_fail(KILN_ERR_MODEL, "kiln_net_create: the model has no layers");
    net->max_batch = max_batch ? max_batch : net->c.batch;
    if (st == KILN_OK && net->max_batch > 65536)
        st = kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_net_create: max_batch %zu is above "
                                                  "65536", net->max_batch);
    net->lr = net->c.optim.lr;
    if (st == KILN_OK)
        st = pipeline_create(ctx, m, net->max_batch, (pipe_options){.fuse = 1, .plan = 1},
                             net->c.seed, &net->main.p);
    if (st == KILN_OK)
        st = alloc_targets(net, &net->main);
    if (st == KILN_OK)
        st = net_reset_optimizer(net);
    size_t in = shape_numel(&m->input), outs = net->main.p ? kiln_net_output_size(net) : 0;
    net->norm_count = 1;
    net->mean = calloc(1, sizeof *net->mean);
    net->std = malloc(sizeof *net->std);
    net->x = malloc(net->max_batch * in * sizeof *net->x);
    net->y = malloc(net->max_batch * (outs ? outs : 1) * sizeof *net->y);
    if (st == KILN_OK && (!net->mean || !net->std || !net->x || !net->y))
        st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "kiln_net_create: out of host memory");
    if (net->std)
        net->std[0] = 1.0f;
    if (st == KILN_OK && !(net->entries = checkpoint_entries(net->main.p, &net->n_entries)))
        st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "kiln_net_create: out of host memory");
    if (st != KILN_OK) {
        kiln_net_free(net);
        return st;
    }
    *out = net;
    return KILN_OK;
}

void kiln_net_free(kiln_net *net)
{
    if (!net || net->magic != NET_MAGIC)
        return;
    if (net->ctx)
        kiln_ctx_finish(net->ctx); /* nothing queued may read freed host memory */
    optim_free(net->opt);
    for (int i = 0; i < NET_EXTRA_PIPES; i++)
        free_pipe(&net->extra[i]);
    free_pipe(&net->main);
    free(net->mean);
    free(net->std);
    free(net->x);
    free(net->y);
    free(net->entries);
    net_free_classes(net);
    buckets_free(net->buckets);
    dist_comm_free(net->comm);
    if (net->ctx)
        kiln_programs_release(net->ctx);
    net->magic = 0;
    free(net);
}

size_t kiln_net_input_size(const kiln_net *net)
{
    return net && net->magic == NET_MAGIC ? shape_numel(&net->m->input) : 0;
}

size_t kiln_net_output_size(const kiln_net *net)
{
    if (!net || net->magic != NET_MAGIC || !net->main.p)
        return 0;
    return kiln_tensor_numel(pipeline_output(net->main.p)) / net->max_batch;
}

size_t kiln_net_max_batch(const kiln_net *net)
{
    return net && net->magic == NET_MAGIC ? net->max_batch : 0;
}

kiln_status kiln_net_set_training(kiln_net *net, int training)
{
    kiln_status st = net_check(net, "kiln_net_set_training");
    if (st == KILN_OK)
        net->training = training != 0;
    return st;
}

kiln_status kiln_net_set_detect_anomaly(kiln_net *net, int on)
{
    kiln_status st = net_check(net, "kiln_net_set_detect_anomaly");
    if (st != KILN_OK)
        return st;
    net->check = on != 0;
    net->main.p->options.check = net->check;
    for (int i = 0; i < NET_EXTRA_PIPES; i++)
        if (net->extra[i].p)
            net->extra[i].p->options.check = net->check;
    return KILN_OK;
}

/* ---- forward and training steps -------------------------------------------- */

static kiln_status check_inputs(const kiln_net *net, const float *x, size_t n, const char *call)
{
    size_t in = kiln_net_input_size(net);
    if (!x)
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "%s: the input array is NULL", call);
    /* always: one NaN in a training step turns every weight into NaN while
     * ReLU hides it from the loss (a pass over the host array is cheap) */
    for (size_t i = 0; i < n * in; i++)
        if (!isfinite(x[i]))
            return kiln_fail(KILN_ERR_NUMERIC, "%s: input %zu of sample %zu is %g", call,
                             i % in, i / in, (double)x[i]);
    return KILN_OK;
}

/* Enqueues the upload of n normalized samples into q's input. It returns
 * at once: every caller ends with a blocking read on the same in-order
 * queue before it returns, so the staging memory (and the caller's
 * arrays) outlive the copy, and the host does not wait twice per step. */
static kiln_status stage_inputs(kiln_net *net, net_pipe *q, const float *x, size_t n)
{
    net_normalize(net, x, n, net->x);
    return kiln_tensor_write(q->p->input, net->x, n * kiln_net_input_size(net), 0);
}

/* One chunk of at most max_batch samples forward; what: "outputs" reads
 * the prediction, "logits" what the loss reads. */
static kiln_status forward_chunk(kiln_net *net, const float *x, size_t n, int training,
                                 int logits, float *y, net_pipe **used)
{
    net_pipe *q;
    kiln_status st = net_pipe_for(net, n, &q);
    if (st == KILN_OK)
        st = stage_inputs(net, q, x, n);
    q = st == KILN_OK ? q : NULL;
    if (st == KILN_OK) {
        q->p->counter = net->main.p->counter;
        st = pipeline_forward(q->p, training);
        net->main.p->counter = q->p->counter;
    }
    if (st == KILN_OK) {
        const kiln_tensor *t = logits ? net_logits(net, q->p) : pipeline_output(q->p);
        st = kiln_tensor_read(t, y, kiln_tensor_numel(t), 1);
    }
    if (used)
        *used = q;
    return st;
}

kiln_status kiln_net_forward(kiln_net *net, const float *x, size_t n, float *y)
{
    kiln_status st = net_check(net, "kiln_net_forward");
    if (st == KILN_OK && (!y || n == 0))
        st = kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_net_forward: %s",
                       y ? "n is 0; at least one sample is needed" : "the output array is NULL");
    if (st == KILN_OK)
        st = check_inputs(net, x, n, "kiln_net_forward");
    size_t in = kiln_net_input_size(net), outs = kiln_net_output_size(net);
    for (size_t first = 0; st == KILN_OK && first < n; first += net->max_batch) {
        size_t k = n - first < net->max_batch ? n - first : net->max_batch;
        st = forward_chunk(net, x + first * in, k, net->training, 0, y + first * outs, NULL);
    }
    return st;
}

/* With a communicator: every rank learns the size of the global batch,
 * and whether any rank refused its part (then every rank fails, instead
 * of waiting for it). st is this rank's verdict on its own part. */
static kiln_status agree_on_step(kiln_net *net, kiln_status st, size_t n, size_t *total)
{
    *total = n;
    if (dist_comm_size(net->comm) == 1)
        return st;
    double v[2] = {st == KILN_OK ? (double)n : 0, st == KILN_OK ? 0 : 1};
    kiln_status summed = dist_sum_doubles(net->comm, v, 2, "the step's batch sizes");
    if (st != KILN_OK || summed != KILN_OK)
        return st != KILN_OK ? st : summed;
    if (v[1] > 0)
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_net_train_step: %.0f other rank%s "
                                                    "refused %s part of the batch; no rank "
                                                    "trained",
                         v[1], v[1] > 1 ? "s" : "", v[1] > 1 ? "their" : "its");
    if (v[0] == 0)
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_net_train_step: no rank has samples "
                                                    "in this step");
    *total = (size_t)v[0];
    net_dist_step(net, n, *total);
    return KILN_OK;
}

/* This rank's checks of its part of a step: n samples (0 only with other
 * ranks) and their targets. */
static kiln_status check_step(const kiln_net *net, const float *x, const float *y, size_t n)
{
    int shared = dist_comm_size(net->comm) > 1;
    if ((n == 0 && !shared) || n > net->max_batch)
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_net_train_step: %zu samples; a step "
                                                    "takes %d to %zu (the network's max_batch)",
                         n, shared ? 0 : 1, net->max_batch);
    if (n == 0)
        return KILN_OK;
    if (!y)
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_net_train_step: the target array is "
                                                    "NULL");
    kiln_status st = check_inputs(net, x, n, "kiln_net_train_step");
    return st == KILN_OK ? net_check_targets(net, y, n, "kiln_net_train_step") : st;
}

/* Forward, loss and backward of n samples (n >= 1) in training mode. */
static kiln_status run_step(kiln_net *net, const float *x, const float *y, size_t n,
                            net_pipe **used)
{
    net_pipe *q = NULL;
    kiln_status st = net_pipe_for(net, n, &q);
    if (st == KILN_OK)
        st = stage_inputs(net, q, x, n);
    if (st == KILN_OK)
        st = kiln_tensor_write(q->target, y, kiln_tensor_numel(q->target), 0);
    if (st == KILN_OK) {
        q->p->counter = net->main.p->counter;
        st = pipeline_forward(q->p, 1);
        net->main.p->counter = q->p->counter;
    }
    if (st == KILN_OK)
        st = pipeline_loss(q->p, net->c.loss, net->c.label_smoothing, q->target, q->loss);
    if (st == KILN_OK)
        st = pipeline_backward(q->p, 1);
    *used = q;
    return st;
}

kiln_status kiln_net_train_step(kiln_net *net, const float *x, const float *y, size_t n,
                                float *loss)
{
    kiln_status st = net_check(net, "kiln_net_train_step");
    if (st != KILN_OK)
        return st;
    size_t total;
    st = agree_on_step(net, check_step(net, x, y, n), n, &total);
    net_pipe *q = NULL;
    if (st == KILN_OK && n)
        st = run_step(net, x, y, n, &q);
    else if (st == KILN_OK) /* no samples here: the other ranks' sync_batchnorm waits */
        st = net_idle_step(net);
    if (st == KILN_OK)
        st = net_reduce_gradients(net, n);
    if (st == KILN_OK)
        st = optim_step(net->opt, net->lr);
    float l = 0;
    if (st == KILN_OK && n)
        st = kiln_tensor_download(q->loss, &l, 1);
    double sum = (double)l * (double)n; /* the whole batch's mean loss */
    if (st == KILN_OK && dist_comm_size(net->comm) > 1)
        st = dist_sum_doubles(net->comm, &sum, 1, "the step's loss");
    l = st == KILN_OK ? (float)(sum / (double)total) : NAN;
    if (st == KILN_OK && !isfinite(l))
        st = kiln_fail(KILN_ERR_NUMERIC, "kiln_net_train_step: the loss is %g; lower the "
                                         "learning rate or clip gradients (clip_norm)",
                       (double)l);
    if (st != KILN_OK) /* the target upload may still read the caller's array */
        kiln_ctx_finish(net->ctx);
    if (loss)
        *loss = l;
    return st;
}

/* Rank 0's copy of t on every rank of the network's communicator. */
static kiln_status broadcast_tensor(kiln_net *net, kiln_tensor *t, float *h)
{
    kiln_status st = kiln_tensor_download(t, h, t->numel);
    if (st == KILN_OK)
        st = dist_broadcast_floats(net->comm, h, t->numel, "rank 0's weights");
    return st == KILN_OK ? kiln_tensor_upload(t, h, t->numel) : st;
}

/* Rank 0's parameters (with params) and buffers on every rank. */
static kiln_status take_rank0(kiln_net *net, int params)
{
    pipeline *p = net->main.p;
    float *h = malloc(p->params->numel * sizeof *h);
    kiln_status st = !h ? kiln_fail(KILN_ERR_OUT_OF_MEMORY, "rank 0's weights: out of host "
                                                            "memory")
                     : params ? broadcast_tensor(net, p->params, h)
                              : KILN_OK;
    for (size_t i = 0; i < p->count && st == KILN_OK; i++)
        for (int j = 0; j < p->steps[i].shapes.n_buffers && st == KILN_OK; j++) {
            kiln_tensor *b = p->steps[i].buffer[j];
            float *grown = b->numel > p->params->numel ? realloc(h, b->numel * sizeof *h) : h;
            if (!grown)
                st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "rank 0's weights: out of host memory");
            else
                st = broadcast_tensor(net, b, h = grown);
        }
    free(h);
    return st;
}

/* Every rank starts from rank 0's parameters and buffers, as PyTorch's
 * DistributedDataParallel does. */
static kiln_status take_rank0_weights(kiln_net *net)
{
    return take_rank0(net, 1);
}

kiln_status net_take_rank0_buffers(kiln_net *net)
{
    return take_rank0(net, 0);
}

kiln_status kiln_net_set_comm(kiln_net *net, const void *mpi_comm)
{
    kiln_status st = net_check(net, "kiln_net_set_comm");
    dist_comm *c = NULL;
    if (st == KILN_OK && mpi_comm)
        st = dist_comm_open(mpi_comm, &c);
    if (st != KILN_OK)
        return st;
    dist_comm_free(net->comm);
    net->comm = c;
    return c ? take_rank0_weights(net) : KILN_OK;
}

kiln_status kiln_net_evaluate(kiln_net *net, const float *x, const float *y, size_t n,
                              double *loss, double *accuracy)
{
    kiln_status st = net_check(net, "kiln_net_evaluate");
    if (st == KILN_OK && (n == 0 || !y))
        st = kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_net_evaluate: %s",
                       y ? "n is 0; at least one sample is needed" : "the target array is NULL");
    if (st == KILN_OK)
        st = check_inputs(net, x, n, "kiln_net_evaluate");
    if (st == KILN_OK)
        st = net_check_targets(net, y, n, "kiln_net_evaluate");
    size_t in = kiln_net_input_size(net), outs = kiln_net_output_size(net), correct = 0;
    size_t per_target = net->c.loss == LOSS_CROSS_ENTROPY ? 1 : outs;
    float *z = st == KILN_OK ? malloc(net->max_batch * outs * sizeof *z) : NULL;
    if (st == KILN_OK && !z)
        st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "kiln_net_evaluate: out of host memory");
    double total = 0;
    for (size_t first = 0; st == KILN_OK && first < n; first += net->max_batch) {
        size_t k = n - first < net->max_batch ? n - first : net->max_batch;
        st = forward_chunk(net, x + first * in, k, 0, 1, z, NULL);
        if (st == KILN_OK)
            net_score(net, z, y + first * per_target, k, &total, &correct, NULL);
    }
    free(z);
    if (loss)
        *loss = st == KILN_OK ? total / (double)n : NAN;
    if (accuracy)
        *accuracy = st == KILN_OK && net->c.loss != LOSS_MSE
                        ? (double)correct / (double)n
                        : NAN;
    return st;
}

/* ---- settings ------------------------------------------------------------------ */

kiln_status kiln_net_configure(kiln_net *net, const char *key, const char *value)
{
    kiln_status st = net_check(net, "kiln_net_configure");
    if (st != KILN_OK)
        return st;
    train_config before = net->c;
    st = kiln_model_set_train(net->m, key, value);
    if (st == KILN_OK)
        st = train_config_read(net->m, &net->c);
    if (st != KILN_OK) {
        net->c = before;
        return st;
    }
    if (net->c.loss != before.loss) {
        st = alloc_targets(net, &net->main);
        for (int i = 0; i < NET_EXTRA_PIPES && st == KILN_OK; i++)
            if (net->extra[i].p)
                st = alloc_targets(net, &net->extra[i]);
    }
    if (st == KILN_OK && strcmp(key, "lr") == 0)
        net->lr = net->c.optim.lr;
    if (st == KILN_OK && memcmp(&net->c.optim, &before.optim, sizeof before.optim) != 0) {
        if (net->c.optim.kind != before.optim.kind ||
            (net->c.optim.momentum != 0) != (before.optim.momentum != 0))
            st = net_reset_optimizer(net);
        else
            optim_set_config(net->opt, &net->c.optim);
    }
    return st;
}

double kiln_net_lr(const kiln_net *net)
{
    return net && net->magic == NET_MAGIC ? net->lr : NAN;
}

kiln_status kiln_net_set_lr(kiln_net *net, double lr)
{
    kiln_status st = net_check(net, "kiln_net_set_lr");
    if (st == KILN_OK && !(lr > 0 && lr <= 100))
        st = kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_net_set_lr: %g; a learning rate is "
                                                  "above 0 and at most 100", lr);
    if (st == KILN_OK)
        net->lr = (float)lr;
    return st;
}

uint64_t kiln_net_steps(const kiln_net *net)
{
    return net && net->magic == NET_MAGIC ? optim_steps(net->opt) : 0;
}

kiln_status kiln_net_set_normalization(kiln_net *net, const float *mean, const float *std,
                                       size_t count)
{
    kiln_status st = net_check(net, "kiln_net_set_normalization");
    if (st != KILN_OK)
        return st;
    size_t in = kiln_net_input_size(net), channels = net_norm_groups(net, 1);
    if (!mean || !std || (count != 1 && count != in && count != channels))
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_net_set_normalization: mean and std "
                                                    "of %zu values; expected 1, %zu (one per "
                                                    "input value)%s",
                         count, in, channels != in ? " or one per channel" : "");
    for (size_t i = 0; i < count; i++)
        if (!isfinite(mean[i]) || !(std[i] > 0) || !isfinite(std[i]))
            return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_net_set_normalization: value %zu: "
                                                        "mean %g, std %g; the mean must be "
                                                        "finite and the deviation above 0",
                             i, (double)mean[i], (double)std[i]);
    float *m = malloc(count * sizeof *m), *s = malloc(count * sizeof *s);
    if (!m || !s) {
        free(m), free(s);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "kiln_net_set_normalization: out of memory");
    }
    memcpy(m, mean, count * sizeof *m);
    memcpy(s, std, count * sizeof *s);
    free(net->mean);
    free(net->std);
    net->mean = m;
    net->std = s;
    net->norm_count = count;
    return KILN_OK;
}

/* ---- weights by name and files ------------------------------------------------ */

size_t kiln_net_param_count(const kiln_net *net)
{
    return net && net->magic == NET_MAGIC ? net->n_entries : 0;
}

kiln_status kiln_net_param_info(const kiln_net *net, size_t i, kiln_param_info *out)
{
    kiln_status st = net_check(net, "kiln_net_param_info");
    if (st == KILN_OK && (!out || i >= net->n_entries))
        st = kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_net_param_info: index %zu of %zu "
                                                  "tensors", i, net->n_entries);
    if (st != KILN_OK)
        return st;
    const checkpoint_entry *e = &net->entries[i];
    memset(out, 0, sizeof *out);
    out->name = e->name;
    out->ndim = e->shape.ndim;
    for (int d = 0; d < e->shape.ndim; d++)
        out->shape[d] = e->shape.d[d];
    out->numel = e->is_int64 ? 1 : shape_numel(&e->shape);
    out->is_int64 = e->is_int64;
    out->trainable = !e->is_int64 && !strstr(e->name, ".running_");
    return KILN_OK;
}

static kiln_status find_entry(kiln_net *net, const char *call, const char *name, size_t count,
                              checkpoint_entry **out)
{
    kiln_status st = net_check(net, call);
    if (st != KILN_OK)
        return st;
    for (size_t i = 0; name && i < net->n_entries; i++) {
        checkpoint_entry *e = &net->entries[i];
        if (strcmp(e->name, name) != 0)
            continue;
        size_t numel = e->is_int64 ? 1 : shape_numel(&e->shape);
        if (count != numel)
            return kiln_fail(KILN_ERR_SHAPE, "%s: %s has %zu values; %zu given", call, name,
                             numel, count);
        *out = e;
        return KILN_OK;
    }
    char names[1024] = "";
    size_t used = 0;
    for (size_t i = 0; i < net->n_entries && used < sizeof names; i++)
        used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "",
                                 net->entries[i].name);
    return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "%s: the network has no tensor %s; it has %s",
                     call, name ? name : "(NULL)", names);
}

kiln_status kiln_net_get(kiln_net *net, const char *name, float *dst, size_t count)
{
    checkpoint_entry *e;
    kiln_status st = find_entry(net, "kiln_net_get", name, count, &e);
    if (st == KILN_OK && !dst)
        st = kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_net_get: the array is NULL");
    if (st != KILN_OK)
        return st;
    if (e->is_int64) {
        dst[0] = (float)optim_steps(net->opt);
        return KILN_OK;
    }
    return kiln_tensor_download(e->tensor, dst, count);
}

kiln_status kiln_net_set(kiln_net *net, const char *name, const float *src, size_t count)
{
    checkpoint_entry *e;
    kiln_status st = find_entry(net, "kiln_net_set", name, count, &e);
    if (st == KILN_OK && !src)
        st = kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_net_set: the array is NULL");
    for (size_t i = 0; st == KILN_OK && i < count; i++)
        if (!isfinite(src[i]))
            st = kiln_fail(KILN_ERR_NUMERIC, "kiln_net_set: %s[%zu] is %g", name, i,
                           (double)src[i]);
    if (st != KILN_OK || e->is_int64) /* num_batches_tracked follows the step count */
        return st;
    return kiln_tensor_upload(e->tensor, src, count);
}

void meta_number(checkpoint_meta *m, const char *key, double v)
{
    char text[64];
    snprintf(text, sizeof text, "%.17g", v);
    checkpoint_meta_set(m, key, text);
}

/* A list of floats as "a,b,c" (%.9g: float32 exactly); NULL when out of
 * memory. */
static char *float_list(const float *v, size_t n)
{
    char *text = malloc(n * 18 + 1), *at = text;
    for (size_t i = 0; text && i < n; i++)
        at += sprintf(at, "%s%.9g", i ? "," : "", (double)v[i]);
    return text;
}

/* Parses "a,b,c" into at most cap floats; the count, or 0 if malformed. */
static size_t parse_floats(const char *text, float *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = text; *p;) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || n == cap || (*end && *end != ','))
            return 0;
        out[n++] = (float)v;
        p = *end ? end + 1 : end;
    }
    return n;
}

void net_meta(const kiln_net *net, checkpoint_meta *meta)
{
    char *mean = float_list(net->mean, net->norm_count), *std = float_list(net->std,
                                                                        net->norm_count);
    checkpoint_meta_set(meta, "normalize_mean", mean ? mean : "0");
    checkpoint_meta_set(meta, "normalize_std", std ? std : "1");
    free(mean);
    free(std);
    if (net->classes)
        checkpoint_meta_set(meta, "classes", net->classes);
    checkpoint_meta_set(meta, "format", "pt");
    checkpoint_meta_set(meta, "kiln", KILN_VERSION);
}

kiln_status net_apply_meta(kiln_net *net, const checkpoint_meta *meta)
{
    const char *mean = checkpoint_meta_get(meta, "normalize_mean");
    const char *std = checkpoint_meta_get(meta, "normalize_std");
    kiln_status named = net_set_classes(net, checkpoint_meta_get(meta, "classes"));
    if (named != KILN_OK || !mean || !std)
        return named;
    size_t in = kiln_net_input_size(net);
    float *m = malloc(in * sizeof *m), *s = malloc(in * sizeof *s);
    kiln_status st = m && s ? KILN_OK
                            : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "loading a checkpoint: out of "
                                                                "memory");
    size_t nm = st == KILN_OK ? parse_floats(mean, m, in) : 0;
    size_t ns = st == KILN_OK ? parse_floats(std, s, in) : 0;
    if (st == KILN_OK && (nm == 0 || nm != ns))
        st = kiln_fail(KILN_ERR_IO, "the checkpoint's normalize_mean and normalize_std are not "
                                    "two lists of the same length of numbers");
    if (st == KILN_OK) /* one scalar pair (older checkpoints), or vectors */
        st = kiln_net_set_normalization(net, m, s, nm);
    free(m);
    free(s);
    return st;
}

kiln_status kiln_net_save(kiln_net *net, const char *path)
{
    kiln_status st = net_check(net, "kiln_net_save");
    if (st == KILN_OK && !path)
        st = kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_net_save: the path is NULL");
    if (st != KILN_OK)
        return st;
    checkpoint_meta meta = {0};
    meta_number(&meta, "step", (double)optim_steps(net->opt));
    net_meta(net, &meta);
    st = checkpoint_save(net->main.p, path, &meta, (int64_t)optim_steps(net->opt));
    checkpoint_meta_free(&meta);
    return st;
}

kiln_status kiln_net_load(kiln_net *net, const char *path)
{
    kiln_status st = net_check(net, "kiln_net_load");
    if (st == KILN_OK && !path)
        st = kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_net_load: the path is NULL");
    checkpoint_meta meta = {0};
    if (st == KILN_OK)
        st = checkpoint_load(net->main.p, path, &meta);
    if (st == KILN_OK)
        st = net_apply_meta(net, &meta);
    checkpoint_meta_free(&meta);
    return st;
}

/* ---- datasets ------------------------------------------------------------------ */

kiln_status kiln_data_from_arrays(const float *x, const float *y, size_t n, size_t features,
                                  size_t targets, kiln_data **out)
{
    if (!x || !out || n == 0 || features == 0 || (y && targets == 0))
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_data_from_arrays: x, at least one "
                                                    "sample of at least one feature, targets "
                                                    "per sample with y, and an output pointer "
                                                    "are required");
    *out = NULL;
    for (size_t i = 0; i < n * features; i++)
        if (!isfinite(x[i]))
            return kiln_fail(KILN_ERR_NUMERIC, "kiln_data_from_arrays: feature %zu of sample "
                                               "%zu is %g", i % features, i / features,
                             (double)x[i]);
    size_t t = y ? targets : 1;
    for (size_t i = 0; y && i < n * t; i++)
        if (!isfinite(y[i]))
            return kiln_fail(KILN_ERR_NUMERIC, "kiln_data_from_arrays: target %zu of sample "
                                               "%zu is %g", i % t, i / t, (double)y[i]);
    kiln_data *d = calloc(1, sizeof *d);
    float *dx = malloc(n * features * sizeof *dx), *dy = calloc(n * t, sizeof *dy);
    if (!d || !dx || !dy) {
        free(d), free(dx), free(dy);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "kiln_data_from_arrays: out of host memory "
                                                 "for %zu samples", n);
    }
    memcpy(dx, x, n * features * sizeof *dx);
    if (y)
        memcpy(dy, y, n * t * sizeof *dy);
    snprintf(d->d.name, sizeof d->d.name, "arrays of %zu samples", n);
    d->d.count = n;
    d->d.features = features;
    d->d.targets = t;
    d->d.unlabelled = !y;
    d->d.x = dx;
    d->d.y = dy;
    int classes = y && t == 1;
    float top = 0;
    for (size_t i = 0; classes && i < n; i++) {
        classes = dy[i] >= 0 && dy[i] == floorf(dy[i]) && dy[i] < 16777216.0f;
        top = dy[i] > top ? dy[i] : top;
    }
    d->d.classes = classes ? (size_t)top + 1 : 0;
    *out = d;
    return KILN_OK;
}

/* The split of an .npz: one the file lacks is an error here. */
static kiln_status npz_split(const char *path, const char *keys, const char *split, dataset *d)
{
    split = split ? split : "train";
    kiln_status st = data_load_npz(path, keys, split, d);
    if (st == KILN_OK && d->count == 0)
        st = kiln_fail(KILN_ERR_IO, "%s: no %s split (the arrays x_test and y_test, or the "
                                    "third and fourth of the keys)", path, split);
    return st;
}

kiln_status kiln_data_load_npz(const char *path, const char *keys, const char *split,
                               kiln_data **out)
{
    if (!path || !out)
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_data_load_npz: a path and an output "
                                                    "pointer are required");
    *out = NULL;
    kiln_data *d = calloc(1, sizeof *d);
    if (!d)
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "kiln_data_load_npz: out of host memory");
    kiln_status st = npz_split(path, keys, split, &d->d);
    if (st != KILN_OK) {
        data_free(&d->d);
        free(d);
        return st;
    }
    *out = d;
    return KILN_OK;
}

kiln_status kiln_data_load(const char *source, const char *split, const char *label,
                           kiln_data **out)
{
    if (!source || !out)
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_data_load: a source and an output "
                                                    "pointer are required");
    *out = NULL;
    kiln_data *d = calloc(1, sizeof *d);
    if (!d)
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "kiln_data_load: out of host memory");
    kiln_status st;
    struct stat info;
    if (data_has_ext(source, ".csv"))
        st = data_load_csv(source, label ? label : "label", 1, &d->d);
    else if (data_has_ext(source, ".npy"))
        st = data_load_npy(source, label, &d->d);
    else if (data_has_ext(source, ".npz"))
        st = npz_split(source, NULL, split, &d->d);
    else if (data_is_folder(source))
        st = net_load_images(NULL, source, split, &d->d);
    else if (stat(source, &info) == 0 && S_ISREG(info.st_mode))
        st = data_load_idx_images(source, &d->d);
    else
        st = data_load_named(source, split ? split : "train", &d->d);
    if (st != KILN_OK) {
        data_free(&d->d);
        free(d);
        return st;
    }
    *out = d;
    return KILN_OK;
}

void kiln_data_free(kiln_data *d)
{
    if (!d)
        return;
    data_free(&d->d);
    free(d);
}

size_t kiln_data_count(const kiln_data *d)
{
    return d ? d->d.count : 0;
}

size_t kiln_data_features(const kiln_data *d)
{
    return d ? d->d.features : 0;
}

size_t kiln_data_targets(const kiln_data *d)
{
    return d ? d->d.targets : 0;
}

size_t kiln_data_classes(const kiln_data *d)
{
    return d ? d->d.classes : 0;
}

int kiln_data_labelled(const kiln_data *d)
{
    return d && !d->d.unlabelled;
}

static kiln_status copy_rows(const kiln_data *d, size_t first, size_t count, float *dst,
                             int targets, const char *call)
{
    if (!d || !dst || first > d->d.count || count > d->d.count - first)
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "%s: samples %zu to %zu of %zu", call,
                         first, first + count, d ? d->d.count : 0);
    size_t per = targets ? d->d.targets : d->d.features;
    memcpy(dst, (targets ? d->d.y : d->d.x) + first * per, count * per * sizeof *dst);
    return KILN_OK;
}

kiln_status kiln_data_copy_features(const kiln_data *d, size_t first, size_t count, float *dst)
{
    return copy_rows(d, first, count, dst, 0, "kiln_data_copy_features");
}

kiln_status kiln_data_copy_targets(const kiln_data *d, size_t first, size_t count, float *dst)
{
    return copy_rows(d, first, count, dst, 1, "kiln_data_copy_targets");
}

kiln_head kiln_net_head(const kiln_net *net)
{
    if (!net || net->magic != NET_MAGIC)
        return KILN_HEAD_NONE;
    if (pipeline_softmax_head(net->main.p))
        return KILN_HEAD_SOFTMAX;
    return pipeline_sigmoid_head(net->main.p) ? KILN_HEAD_SIGMOID : KILN_HEAD_NONE;
}
