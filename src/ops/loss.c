/* Losses, as the mean over the batch (PyTorch's reduction='mean'):
 * mse, cross-entropy from logits with class indices (and label
 * smoothing), binary cross-entropy with logits. */
#include "ops/ops.h"

static const char *const loss_names[] = {
#define LOSS_NAME(id, name, kernel) name,
    LOSS_LIST(LOSS_NAME)
#undef LOSS_NAME
};
_Static_assert(sizeof loss_names / sizeof loss_names[0] == LOSS_COUNT, "one name per loss");

static const char *const loss_kernels[] = {
#define LOSS_KERNEL(id, name, kernel) #kernel,
    LOSS_LIST(LOSS_KERNEL)
#undef LOSS_KERNEL
};

const char *loss_name(loss_kind kind)
{
    return (unsigned)kind < LOSS_COUNT ? loss_names[kind] : "unknown";
}

static kiln_status check_loss_shapes(loss_kind kind, const kiln_tensor *input,
                                     const kiln_tensor *target, const kiln_tensor *loss,
                                     const kiln_tensor *dinput)
{
    const char *name = loss_name(kind);
    kiln_shape in = shape_of(input), want;
    if (kind == LOSS_CROSS_ENTROPY) {
        char buf[64];
        if (in.ndim != 2 && in.ndim != 3)
            return error_set(KILN_ERR_SHAPE, "cross_entropy: logits are %s; expected (batch, "
                                             "classes) or (batch, time, vocabulary)",
                             shape_str(&in, buf, sizeof buf));
        want = in; /* a class per row: (batch), or a token per position: (batch, time) */
        want.ndim--;
    } else {
        want = in;
    }
    kiln_status st = expect_shape(name, "target", target, &want);
    kiln_shape one = shape_make(1, 1, 0, 0, 0);
    if (st == KILN_OK)
        st = expect_shape(name, "loss", loss, &one);
    if (st == KILN_OK && dinput)
        st = expect_shape(name, "input gradient", dinput, &in);
    return st;
}

kiln_status op_loss(kiln_ctx *ctx, loss_kind kind, float label_smoothing,
                    const kiln_tensor *input, const kiln_tensor *target, kiln_tensor *loss,
                    kiln_tensor *dinput)
{
    if (!ctx || !input || (unsigned)kind >= LOSS_COUNT)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "loss: missing input or unknown loss");
    if (!(label_smoothing >= 0.0f && label_smoothing <= 1.0f))
        return error_set(KILN_ERR_INVALID_ARGUMENT, "cross_entropy: label_smoothing = %g; "
                                                    "expected 0 to 1", (double)label_smoothing);
    kiln_status st = check_loss_shapes(kind, input, target, loss, dinput);
    if (st == KILN_OK)
        st = op_check_count(loss_name(kind), "the input", input->numel);
    if (st != KILN_OK)
        return st;
    int ce = kind == LOSS_CROSS_ENTROPY;
    size_t classes = input->shape[input->ndim - 1];
    size_t count = ce ? input->numel / classes : input->numel;
    kiln_shape ts = shape_make(1, count, 0, 0, 0);
    kiln_tensor *terms;
    if ((st = tensor_of(ctx, &ts, &terms)) != KILN_OK)
        return st;
    /* CPUs: a row an item, in vectors, where a row holds sixteen classes */
    int rows16 = ce && classes >= 16 && device_loops_work_groups(&ctx->info);
    const char *name = rows16 ? "ce_rows16" : loss_kernels[kind];
    cl_kernel k;
    st = kernel_get(ctx, "math.cl+loss.cl", "", name, &k);
    float scale = 1.0f / (float)count;
    cl_int has_grad = dinput != NULL;
    cl_mem grad = dinput ? dinput->buf : terms->buf;
    if (st == KILN_OK && ce) {
        cl_uint n = count, c = classes;
        st = launch_1d(ctx, k, name, count, rows16 ? 1 : 64, KARG(input->buf),
                       KARG(target->buf), KARG(terms->buf), KARG(grad), KARG(n), KARG(c),
                       KARG(label_smoothing), KARG(scale), KARG(has_grad));
    } else if (st == KILN_OK) {
        cl_uint n = count;
        st = launch_1d(ctx, k, loss_kernels[kind], count, 64, KARG(input->buf),
                       KARG(target->buf), KARG(terms->buf), KARG(grad), KARG(n),
                       KARG(scale), KARG(has_grad));
    }
    if (st == KILN_OK)
        st = op_sum_all(ctx, &terms->buf, &count, 1, 0, scale, loss->buf);
    kiln_tensor_free(terms);
    return st;
}

kiln_status op_loss_weighted(kiln_ctx *ctx, const kiln_tensor *input, const kiln_tensor *target,
                             const kiln_tensor *weight, kiln_tensor *loss, kiln_tensor *dinput)
{
    if (!ctx || !input || !weight)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "cross_entropy: missing input or weights");
    kiln_status st = check_loss_shapes(LOSS_CROSS_ENTROPY, input, target, loss, dinput);
    kiln_shape classes = shape_make(1, input->shape[input->ndim - 1], 0, 0, 0);
    if (st == KILN_OK)
        st = expect_shape("cross_entropy", "class weights", weight, &classes);
    if (st == KILN_OK)
        st = op_check_count("cross_entropy", "the input", input->numel);
    if (st != KILN_OK)
        return st;
    size_t count = input->numel / classes.d[0]; /* rows: (N, C) or (B, T, C) */
    kiln_shape ts = shape_make(1, count, 0, 0, 0);
    kiln_tensor *terms;
    if ((st = tensor_of(ctx, &ts, &terms)) != KILN_OK)
        return st;
    cl_kernel k;
    st = kernel_get(ctx, "math.cl+loss.cl", "", "ce_rows_weighted", &k);
    cl_int has_grad = dinput != NULL;
    cl_mem grad = dinput ? dinput->buf : terms->buf;
    cl_uint n = (cl_uint)count, c = (cl_uint)classes.d[0];
    if (st == KILN_OK)
        st = launch_1d(ctx, k, "ce_rows_weighted", count, 64, KARG(input->buf),
                       KARG(target->buf), KARG(weight->buf), KARG(terms->buf), KARG(grad),
                       KARG(n), KARG(c), KARG(has_grad));
    if (st == KILN_OK)
        st = op_sum_all(ctx, &terms->buf, &count, 1, 0, 1.0f / (float)count, loss->buf);
    kiln_tensor_free(terms);
    return st;
}
