/* Attention's rows timed: the fused attention kernels with a given number
 * of rows per work-item (CPUs, one a vector lane) or per work-group's
 * local tile (GPUs) on random data, forward alone and forward + backward.
 * bench/bench_attention prints them for every choice and `kiln tune` keeps
 * the fastest in the device's record. */
#include <math.h>
#include <stdlib.h>

#include "ops/ops.h"

typedef struct {
    kiln_ctx *ctx;
    op_attrs attrs;
    op_args args;
    kiln_tensor *t[5]; /* qkv, y, lse, dy, dqkv */
} attn_bench;

/* Values in [-1, 1] that do not repeat within a row. */
static kiln_status fill(kiln_tensor *t)
{
    float *h = malloc(t->numel * sizeof *h);
    if (!h)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_bench_attention: out of host memory");
    for (size_t i = 0; i < t->numel; i++)
        h[i] = (float)((i * 2654435761u) % 10007) / 5003.5f - 1.0f;
    kiln_status st = tensor_write(t, h, t->numel, 1);
    free(h);
    return st;
}

static kiln_status attn_setup(attn_bench *b, size_t B, size_t T, size_t H, size_t D)
{
    b->attrs = op_attrs_default();
    b->attrs.heads = H;
    b->args = (op_args){.ctx = b->ctx, .attrs = &b->attrs, .training = 1};
    kiln_shape in = shape_make(3, B, T, 3 * H * D, 0), out = shape_make(3, B, T, H * D, 0),
               lse = shape_make(3, B, H, T, 0);
    const kiln_shape *shapes[5] = {&in, &out, &lse, &out, &in};
    kiln_status st = KILN_OK;
    for (int i = 0; i < 5 && st == KILN_OK; i++)
        st = tensor_of(b->ctx, shapes[i], &b->t[i]);
    if (st == KILN_OK)
        st = fill(b->t[0]);
    if (st == KILN_OK)
        st = fill(b->t[3]);
    b->args.in[0] = b->t[0];
    b->args.out = b->t[1];
    b->args.saved[0] = b->t[2];
    b->args.dout = b->t[3];
    b->args.din[0] = b->t[4];
    return st;
}

/* Best ms per pass of `reps` passes, five times, after a warm-up pass. */
static kiln_status attn_time(attn_bench *b, int backward, int reps, double *ms)
{
    kiln_status st = KILN_OK;
    *ms = INFINITY;
    for (int t = 0; t < 6 && st == KILN_OK; t++) {
        double t0 = now_seconds();
        for (int i = 0; i < (t ? reps : 1) && st == KILN_OK; i++) {
            st = op_forward(OP_ATTENTION, &b->args);
            if (st == KILN_OK && backward)
                st = op_backward(OP_ATTENTION, &b->args);
        }
        if (st == KILN_OK)
            st = kiln_ctx_finish(b->ctx);
        if (t > 0)
            *ms = fmin(*ms, 1e3 * (now_seconds() - t0) / reps);
    }
    return st;
}

const size_t *kiln_attention_choices(const kiln_ctx *ctx)
{
    static const size_t registers[KILN_ATTN_CHOICES] = {2, 4, 8, 16};
    static const size_t tiles[KILN_ATTN_CHOICES] = {1, 16, 32, 64};
    return ctx && device_loops_work_groups(&ctx->info) ? registers : tiles;
}

kiln_status kiln_bench_attention(kiln_ctx *ctx, size_t B, size_t T, size_t H, size_t D,
                                 size_t rows, double *forward_ms, double *step_ms)
{
    if (!ctx || !forward_ms || !step_ms)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_bench_attention: NULL argument");
    if (!B || !T || !H || !D || D > 256 || rows < 1 || rows > ATTN_ROWS_MAX)
        return error_set(KILN_ERR_INVALID_ARGUMENT,
                         "kiln_bench_attention: batch %zu, block %zu, %zu heads of %zu, %zu "
                         "rows; expected each at least 1, heads of at most 256 and 1 to %d "
                         "rows", B, T, H, D, rows, ATTN_ROWS_MAX);
    attn_bench b = {.ctx = ctx};
    size_t was = attention_set_rows(rows);
    kiln_status st = attn_setup(&b, B, T, H, D);
    if (st == KILN_OK)
        st = attn_time(&b, 0, 5, forward_ms);
    if (st == KILN_OK)
        st = attn_time(&b, 1, 2, step_ms);
    attention_set_rows(was);
    for (int i = 0; i < 5; i++)
        kiln_tensor_free(b.t[i]);
    return st;
}
