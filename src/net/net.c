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
        return error_set(KILN_ERR_INVALID_ARGUMENT, "%s: the network is NULL", call);
    if (net->magic != NET_MAGIC)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "%s: not a live network (freed, or never "
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
    kiln_shape ts = out;
    if (net->c.loss == LOSS_CROSS_ENTROPY) { /* a class per row: the logits less their last dim */
        ts = shape_of(net_logits(net, q->p));
        ts.ndim--;
    }
    kiln_tensor_free(q->target);
    q->target = NULL;
    kiln_status st = tensor_of(net->ctx, &ts, &q->target);
    if (st == KILN_OK && !q->loss)
        st = tensor_of(net->ctx, &one, &q->loss);
    return st;
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
    (*out)->p->class_weight = net->class_weight;
    (*out)->p->on_backward = shared && !net->accumulating ? buckets_hook(net->buckets) : NULL;
    return KILN_OK;
}

kiln_tensor *net_logits(const kiln_net *net, const pipeline *p)
{
    int at = pipeline_loss_step(p, net->c.loss);
    return at >= 0 ? p->steps[at].out : p->input;
}

static int normalization_is_identity(const kiln_net *net)
{
    return net->norm_count == 1 && net->mean[0] == 0.0f && net->std[0] == 1.0f;
}

void net_normalize(const kiln_net *net, const float *x, size_t n, float *dst)
{
    size_t in = shape_numel(&net->m->input), group = in / net->norm_count;
    if (normalization_is_identity(net)) {
        if (dst != x)
            memcpy(dst, x, n * in * sizeof *dst);
        return;
    }
    /* a group's values lie together: no division to find the group, and
     * a loop the compiler vectorizes (one value a group: across groups) */
    for (size_t s = 0; s < n; s++, x += in, dst += in) {
        if (group == 1)
            for (size_t i = 0; i < in; i++)
                dst[i] = (x[i] - net->mean[i]) / net->std[i];
        else
            for (size_t g = 0; g < net->norm_count; g++) {
                float mean = net->mean[g], std = net->std[g];
                for (size_t i = g * group; i < (g + 1) * group; i++)
                    dst[i] = (x[i] - mean) / std;
            }
    }
}

size_t net_norm_groups(const kiln_net *net, int per_feature)
{
    const kiln_shape *s = &net->m->input;
    if (!per_feature)
        return 1;
    return s->ndim == 3 ? s->d[0] : shape_numel(s);
}

size_t net_classes(const kiln_net *net)
{
    const kiln_tensor *z = net_logits(net, net->main.p);
    return z->shape[z->ndim - 1];
}

size_t net_positions(const kiln_net *net)
{
    size_t classes = net_classes(net);
    return net->c.loss == LOSS_CROSS_ENTROPY && classes
               ? kiln_tensor_numel(net_logits(net, net->main.p)) / net->max_batch / classes
               : 1;
}

/* Token ids of a sequence model: whole numbers in [0, V). */
static kiln_status check_tokens(const kiln_net *net, const float *y, size_t n, const char *what,
                                const char *role)
{
    size_t T = net_positions(net), V = net->m->vocab ? net->m->vocab : net_classes(net);
    for (size_t i = 0; i < n * T; i++)
        if (!(y[i] >= 0 && y[i] < (float)V) || y[i] != floorf(y[i]))
            return error_set(KILN_ERR_INVALID_ARGUMENT, "%s: %s %zu of sample %zu is %g; token "
                                                        "ids are whole numbers from 0 to %zu "
                                                        "(a vocabulary of %zu)",
                             what, role, i % T, i / T, (double)y[i], V - 1, V);
    return KILN_OK;
}

/* Whether v is a target the loss takes (one class index, or a value). */
static int target_ok(const kiln_net *net, float v)
{
    if (net->c.loss == LOSS_BCE)
        return v >= 0 && v <= 1;
    if (net->c.loss != LOSS_CROSS_ENTROPY)
        return isfinite(v);
    return v >= 0 && v < (float)kiln_net_output_size(net) && v == floorf(v);
}

kiln_status net_check_targets(const kiln_net *net, const float *y, size_t n, const char *what,
                              const size_t *lines)
{
    if (net->c.loss == LOSS_CROSS_ENTROPY && net->m->vocab)
        return check_tokens(net, y, n, what, "target token");
    size_t outputs = kiln_net_output_size(net);
    size_t width = net->c.loss == LOSS_CROSS_ENTROPY ? 1 : outputs, i = 0;
    while (i < n * width && target_ok(net, y[i]))
        i++;
    if (i == n * width)
        return KILN_OK;
    size_t sample = i / width, j = i % width;
    char at[600], of[64] = ""; /* "FILE:LINE", or "DATA" and " of sample N" */
    if (lines)
        snprintf(at, sizeof at, "%s:%zu", what, lines[sample]);
    else
        snprintf(at, sizeof at, "%s", what), snprintf(of, sizeof of, " of sample %zu", sample);
    if (net->c.loss == LOSS_BCE)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "%s: target %zu%s is %g; bce needs targets "
                                                    "from 0 to 1",
                         at, j, of, (double)y[i]);
    if (net->c.loss != LOSS_CROSS_ENTROPY)
        return error_set(KILN_ERR_NUMERIC, "%s: target %zu%s is %g", at, j, of, (double)y[i]);
    return error_set(KILN_ERR_INVALID_ARGUMENT, "%s: label%s is %g; cross_entropy needs class "
                                                "indices 0 to %zu (the model's outputs)",
                     at, of, (double)y[i], outputs - 1);
}

/* Cross-entropy of each of the positions (rows of z) against its label. */
static void score_positions(const float *z, const float *y, size_t positions, size_t classes,
                            double *loss, size_t *correct, size_t *confusion)
{
    double sum = 0;
    for (size_t t = 0; t < positions; t++, z += classes) {
        double label_f = y[t];
        size_t best = 0;
        for (size_t j = 1; j < classes; j++)
            if (z[j] > z[best])
                best = j;
        if (!(label_f >= 0 && label_f < (double)classes)) { /* never indexes out of range */
            *loss = NAN;
            return;
        }
        size_t label = (size_t)label_f;
        double mx = z[best], e = 0;
        for (size_t j = 0; j < classes; j++)
            e += exp((double)z[j] - mx);
        sum += mx + log(e) - z[label];
        *correct += best == label;
        if (confusion)
            confusion[label * classes + best]++;
    }
    *loss += sum / (double)positions;
}

void net_score(const kiln_net *net, const float *z, const float *y, size_t n, double *loss,
               size_t *correct, size_t *confusion)
{
    size_t classes = kiln_net_output_size(net);
    if (net->c.loss == LOSS_CROSS_ENTROPY) {
        size_t positions = net_positions(net);
        classes = net_classes(net);
        for (size_t i = 0; i < n; i++)
            score_positions(z + i * positions * classes, y + i * positions, positions, classes,
                            loss, correct, confusion);
        return;
    }
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
    kiln_status required = require_args("kiln_net_create", ARG(ctx), ARG(m), ARG(out), NULL);
    if (required != KILN_OK)
        return required;
    *out = NULL;
    kiln_net *net = calloc(1, sizeof *net);
    if (!net)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_net_create: out of host memory");
    net->magic = NET_MAGIC;
    net->ctx = ctx;
    programs_hold(ctx); /* released by kiln_net_free */
    net->m = m;
    net->sync = (op_sync){net_sync_sum, net};
    kiln_status st = train_config_read(m, &net->c);
    if (st == KILN_OK)
        st = graph_finish(m);
    if (st == KILN_OK && m->count == 0)
        st = error_set(KILN_ERR_MODEL, "kiln_net_create: the model has no layers");
    net->max_batch = max_batch ? max_batch : net->c.batch;
    if (st == KILN_OK && net->max_batch > 65536)
        st = error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_net_create: max_batch %zu is above "
                                                  "65536", net->max_batch);
    net->lr = net->c.optim.lr;
    if (st == KILN_OK)
        st = pipeline_create(ctx, m, net->max_batch, (pipe_options){.fuse = 1, .plan = 1},
                             net->c.seed, &net->main.p);
    if (st == KILN_OK)
        st = alloc_targets(net, &net->main);
    if (st == KILN_OK)
        st = net_reset_optimizer(net);
    if (st == KILN_OK)
        st = net_class_weights(net);
    size_t in = shape_numel(&m->input), outs = net->main.p ? kiln_net_output_size(net) : 0;
    net->norm_count = 1;
    net->mean = calloc(1, sizeof *net->mean);
    net->std = malloc(sizeof *net->std);
    net->x = malloc(net->max_batch * in * sizeof *net->x);
    net->y = malloc(net->max_batch * (outs ? outs : 1) * sizeof *net->y);
    if (st == KILN_OK && (!net->mean || !net->std || !net->x || !net->y))
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_net_create: out of host memory");
    if (net->std)
        net->std[0] = 1.0f;
    if (st == KILN_OK && !(net->entries = checkpoint_entries(net->main.p, &net->n_entries)))
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_net_create: out of host memory");
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
    net_free_frozen(net);
    free(net->entries);
    free(net->vocab);
    net_free_classes(net);
    buckets_free(net->buckets);
    free(net->acc);
    free(net->acc_read);
    dist_comm_free(net->comm);
    if (net->ctx)
        programs_release(net->ctx);
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
        return error_set(KILN_ERR_INVALID_ARGUMENT, "%s: x is NULL", call);
    if (net->m->vocab)
        return check_tokens(net, x, n, call, "input token");
    /* always: one NaN in a training step turns every weight into NaN while
     * ReLU hides it from the loss (a pass over the host array is cheap) */
    size_t i = first_nonfinite(x, n * in);
    if (i < n * in)
        return error_set(KILN_ERR_NUMERIC, "%s: input %zu of sample %zu is %g", call, i % in,
                         i / in, (double)x[i]);
    return KILN_OK;
}

/* Enqueues the upload of n normalized samples into q's input. It returns
 * at once: every caller ends with a blocking read on the same in-order
 * queue before it returns, so the staging memory (and the caller's
 * arrays) outlive the copy, and the host does not wait twice per step.
 * Without a normalization the caller's array is uploaded as it is. */
static kiln_status stage_inputs(kiln_net *net, net_pipe *q, const float *x, size_t n)
{
    const float *src = x;
    if (!normalization_is_identity(net)) {
        net_normalize(net, x, n, net->x);
        src = net->x;
    }
    return tensor_write(q->p->input, src, n * kiln_net_input_size(net), 0);
}

/* ... if they start at a multiple of this many bytes where CLBlast runs
 * the products: its kernels read their buffers through vector pointers
 * (float16 at most) and assume a buffer's start aligned so. kiln's own
 * kernels read vectors with vloadn, from any float. */
#define BORROW_ALIGN_CLBLAST 64

/* Where work-groups run as loops (PoCL's CPUs, whose buffers are host
 * memory), a forward reads an un-normalized input where the caller's
 * array lies: the pipeline's input tensor takes a buffer over it
 * (CL_MEM_USE_HOST_PTR) for the call, and the caller gets its own buffer
 * back to put in place again. The Fashion MLP's forward of 128 samples
 * (400 KB) took 0.214 ms instead of 0.259 with the copy; of 1 sample
 * (3 KB), 31.5 us instead of 35.8, creating the buffer costing less than
 * the copy's command (AVX2, Emerald Rapids Xeon). NULL where the input is
 * copied. */
static cl_mem borrow_input(kiln_net *net, net_pipe *q, const float *x, size_t n)
{
    size_t bytes = n * kiln_net_input_size(net) * sizeof(float);
    size_t align = kiln_ctx_gemm(net->ctx) == KILN_GEMM_KILN ? sizeof(float)
                                                             : BORROW_ALIGN_CLBLAST;
    if (!device_loops_work_groups(&net->ctx->info) || !normalization_is_identity(net) ||
        (uintptr_t)x % align)
        return NULL;
    cl_int err;
    cl_mem m = clCreateBuffer(net->ctx->context, CL_MEM_READ_ONLY | CL_MEM_USE_HOST_PTR, bytes,
                              (void *)(uintptr_t)x, &err);
    if (err != CL_SUCCESS)
        return NULL; /* copied instead */
    cl_mem own = q->p->input->buf;
    q->p->input->buf = m;
    return own;
}

/* Multiply-adds up to which a forward runs on the inline lane, where
 * there is one: on the calling thread, without handing each launch to
 * PoCL's workers and the read back (tens of microseconds each way on a
 * 2-core VM). On the AMD EPYC (Zen 3, 2 cores), the Fashion MLP (235K a
 * sample) crossed over at about 32 samples, the CNN (4.3M) at 2, the
 * ResNet (49M) ran slower inline at 1; the GPT's one position (0.8M)
 * took 0.17 ms instead of 0.30-0.57. */
#define INLINE_MACS 8e6

int net_runs_inline(const kiln_net *net, const pipeline *p)
{
    return ctx_has_inline(net->ctx) && !net->ctx->profile &&
           pipeline_forward_macs(p) <= INLINE_MACS;
}

/* One chunk of at most max_batch samples forward; what: "outputs" reads
 * the prediction, "logits" what the loss reads. */
static kiln_status forward_chunk(kiln_net *net, const float *x, size_t n, int training,
                                 int logits, float *y, net_pipe **used)
{
    net_pipe *q;
    cl_mem own = NULL;
    kiln_status st = net_pipe_for(net, n, &q);
    if (st == KILN_OK && net_runs_inline(net, q->p))
        st = ctx_enter_inline(net->ctx);
    if (st == KILN_OK && !(own = borrow_input(net, q, x, n)))
        st = stage_inputs(net, q, x, n);
    q = st == KILN_OK ? q : NULL;
    if (st == KILN_OK) {
        q->p->counter = net->main.p->counter;
        st = pipeline_forward(q->p, training);
        net->main.p->counter = q->p->counter;
    }
    if (st == KILN_OK) {
        const kiln_tensor *t = logits ? net_logits(net, q->p) : pipeline_output(q->p);
        st = tensor_read(t, y, kiln_tensor_numel(t), 1);
    }
    if (st != KILN_OK && q)
        kiln_ctx_finish(q->p->ctx); /* the upload may read x yet: not past this call */
    if (own) { /* nothing queued reads the borrowed buffer now */
        clReleaseMemObject(q->p->input->buf);
        q->p->input->buf = own;
    }
    ctx_leave_inline(net->ctx);
    if (used)
        *used = q;
    return st;
}

kiln_status kiln_net_forward(kiln_net *net, const float *x, size_t n, float *y)
{
    kiln_status st = net_check(net, "kiln_net_forward");
    if (st == KILN_OK && (!y || n == 0))
        st = error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_net_forward: %s",
                       y ? "n is 0; at least one sample is needed" : "y is NULL");
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
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_net_train_step: %.0f other rank%s "
                                                    "refused %s part of the batch; no rank "
                                                    "trained",
                         v[1], v[1] > 1 ? "s" : "", v[1] > 1 ? "their" : "its");
    if (v[0] == 0)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_net_train_step: no rank has samples "
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
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_net_train_step: %zu samples; a step "
                                                    "takes %d to %zu (the network's max_batch)",
                         n, shared ? 0 : 1, net->max_batch);
    if (n == 0)
        return KILN_OK;
    if (!y)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_net_train_step: the target array is "
                                                    "NULL");
    kiln_status st = check_inputs(net, x, n, "kiln_net_train_step");
    return st == KILN_OK ? net_check_targets(net, y, n, "kiln_net_train_step", NULL) : st;
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
        st = tensor_write(q->target, y, kiln_tensor_numel(q->target), 0);
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
    uint64_t counter = net->main.p->counter; /* dropout's: kept when the step fails */
    st = agree_on_step(net, check_step(net, x, y, n), n, &total);
    net_pipe *q = NULL;
    if (st == KILN_OK && n)
        st = run_step(net, x, y, n, &q);
    else if (st == KILN_OK) /* no samples here: the other ranks' sync_batchnorm waits */
        st = net_idle_step(net);
    if (st == KILN_OK)
        st = net_reduce_gradients(net, n);
    /* On one process the update is enqueued behind the loss's read and
     * skipped on the device where the loss is not finite, so the device
     * runs on while the host waits for the loss; ranks agree on the mean
     * loss first, so there the update waits for it. Either way a step
     * whose loss is not finite leaves the weights as they were. */
    int local = dist_comm_size(net->comm) <= 1 && n > 0;
    float l = 0;
    uint64_t t = optim_steps(net->opt);
    if (st == KILN_OK && n)
        st = net_read_loss(net, q->loss, net->lr, local, &l);
    double sum = (double)l * (double)n; /* the whole batch's mean loss */
    if (st == KILN_OK && !local)
        st = dist_sum_doubles(net->comm, &sum, 1, "the step's loss");
    l = st == KILN_OK ? (float)(sum / (double)total) : NAN;
    if (st == KILN_OK && !isfinite(l))
        st = error_set(KILN_ERR_NUMERIC, "kiln_net_train_step: the loss is %g; the weights "
                                         "were not updated; lower the learning rate or clip "
                                         "gradients (clip_norm)",
                       (double)l);
    if (st == KILN_OK && !local)
        st = net_optim_step(net, net->lr, NULL);
    if (st != KILN_OK) { /* the target upload may still read the caller's array */
        kiln_ctx_finish(net->ctx);
        net->main.p->counter = counter;
        optim_set_steps(net->opt, t);
    }
    if (loss)
        *loss = l;
    return st;
}


kiln_status kiln_net_evaluate(kiln_net *net, const float *x, const float *y, size_t n,
                              double *loss, double *accuracy)
{
    kiln_status st = net_check(net, "kiln_net_evaluate");
    if (st == KILN_OK && (n == 0 || !y))
        st = error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_net_evaluate: %s",
                       y ? "n is 0; at least one sample is needed" : "y is NULL");
    if (st == KILN_OK)
        st = check_inputs(net, x, n, "kiln_net_evaluate");
    if (st == KILN_OK)
        st = net_check_targets(net, y, n, "kiln_net_evaluate", NULL);
    size_t in = kiln_net_input_size(net), outs = kiln_net_output_size(net), correct = 0;
    size_t per_target = net->c.loss == LOSS_CROSS_ENTROPY ? net_positions(net) : outs;
    float *z = st == KILN_OK ? malloc(net->max_batch * outs * sizeof *z) : NULL;
    if (st == KILN_OK && !z)
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_net_evaluate: out of host memory");
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
                        ? (double)correct / (double)(n * (per_target == outs ? 1 : per_target))
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
    const char *old = kiln_model_train_setting(net->m, key);
    char was[128];
    snprintf(was, sizeof was, "%s", old ? old : "");
    st = kiln_model_set_train(net->m, key, value);
    if (st == KILN_OK)
        st = train_config_read(net->m, &net->c);
    if (st == KILN_OK && strcmp(key, "class_weight") == 0)
        st = net_class_weights(net);
    if (st != KILN_OK) {
        if (strcmp(key, "class_weight") == 0 && net->c.n_class_weight) { /* as it was */
            char why[512];
            snprintf(why, sizeof why, "%s", kiln_last_error());
            kiln_model_set_train(net->m, key, old ? was : "none");
            net->c = before;
            net_class_weights(net);
            error_set(st, "%s", why);
        }
        net->c = before;
        return st;
    }
    if (net->c.loss != before.loss && st == KILN_OK)
        st = net_class_weights(net);
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
            st = optim_set_config(net->opt, &net->c.optim);
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
        st = error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_net_set_lr: %g; a learning rate is "
                                                  "above 0 and at most 100", lr);
    if (st == KILN_OK)
        net->lr = (float)lr;
    return st;
}

uint64_t kiln_net_steps(const kiln_net *net)
{
    return net && net->magic == NET_MAGIC ? optim_steps(net->opt) : 0;
}

kiln_status net_check_normalization(const kiln_net *net, const float *mean, const float *std,
                                    size_t count, const char *what)
{
    size_t in = kiln_net_input_size(net), channels = net_norm_groups(net, 1);
    if (!mean || !std || (count != 1 && count != in && count != channels))
        return error_set(KILN_ERR_INVALID_ARGUMENT, "%s: mean and std of %zu values; expected "
                                                    "1, %zu (one per input value)%s",
                         what, count, in, channels != in ? " or one per channel" : "");
    for (size_t i = 0; net->m->vocab && i < count; i++)
        if (mean[i] != 0.0f || std[i] != 1.0f)
            return error_set(KILN_ERR_INVALID_ARGUMENT, "%s: the inputs are token ids, which "
                                                        "are not normalized (mean 0 and std 1 "
                                                        "only)",
                             what);
    for (size_t i = 0; i < count; i++)
        if (!isfinite(mean[i]) || !(std[i] > 0) || !isfinite(std[i]))
            return error_set(KILN_ERR_INVALID_ARGUMENT, "%s: value %zu: mean %g, std %g; the "
                                                        "mean must be finite and the deviation "
                                                        "above 0",
                             what, i, (double)mean[i], (double)std[i]);
    return KILN_OK;
}

kiln_status kiln_net_set_normalization(kiln_net *net, const float *mean, const float *std,
                                       size_t count)
{
    kiln_status st = net_check(net, "kiln_net_set_normalization");
    if (st == KILN_OK)
        st = net_check_normalization(net, mean, std, count, "kiln_net_set_normalization");
    if (st != KILN_OK)
        return st;
    float *m = malloc(count * sizeof *m), *s = malloc(count * sizeof *s);
    if (!m || !s) {
        free(m), free(s);
        return error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_net_set_normalization: out of memory");
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

kiln_head kiln_net_head(const kiln_net *net)
{
    if (!net || net->magic != NET_MAGIC)
        return KILN_HEAD_NONE;
    if (pipeline_softmax_head(net->main.p))
        return KILN_HEAD_SOFTMAX;
    return pipeline_sigmoid_head(net->main.p) ? KILN_HEAD_SIGMOID : KILN_HEAD_NONE;
}
