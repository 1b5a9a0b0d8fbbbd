/* Causal multi-head self-attention on the output of a fused QKV projection
 * (nanoGPT's c_attn), before the output projection (c_proj):
 *   qkv (B, T, 3C) -> y (B, T, C), saved lse (B, H, T)
 * y = softmax(q kᵀ / sqrt(D) + causal mask) v per head of D = C / H
 * channels. The kernels (cl/attention.cl) never store the T x T scores:
 * the forward keeps one log-sum-exp per query row and the backward
 * recomputes each score from it, so memory grows linearly with T. This
 * file is the interface; the kernels can change beneath it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "ops/ops.h"

#define ATTN_MAX_HEAD_DIM 256 /* per-item arrays of the kernels */

static kiln_status attn_infer(const op_attrs *a, const kiln_shape *in, op_shapes *s)
{
    char buf[64];
    if (in[0].ndim != 3)
        return error_set(KILN_ERR_SHAPE, "attention: input is %s; expected (batch, time, "
                                         "3 x channels) from a fused q, k, v projection",
                         shape_str(&in[0], buf, sizeof buf));
    size_t heads = a->heads, width = in[0].d[2];
    if (heads == 0 || width % (3 * heads) != 0)
        return error_set(KILN_ERR_SHAPE, "attention: %zu input channels do not split into "
                                         "q, k and v of %zu heads each",
                         width, heads);
    size_t C = width / 3, D = C / heads;
    if (D > ATTN_MAX_HEAD_DIM)
        return error_set(KILN_ERR_UNSUPPORTED, "attention: a head of %zu channels; at most %d",
                         D, ATTN_MAX_HEAD_DIM);
    s->out = shape_make(3, in[0].d[0], in[0].d[1], C, 0);
    s->n_saved = 1;
    s->saved[0] = shape_make(3, in[0].d[0], heads, in[0].d[1], 0);
    return KILN_OK;
}

/* Rows per work-item or work-group: where work-groups run as loops
 * (PoCL's CPUs), the rows an item of cl/attention_lanes.cl takes, one a
 * vector lane (attn_lanes); elsewhere (GPUs), the
 * rows of a work-group sharing each tile of keys and values in local
 * memory (TILE; 1: no tile, every item reads global memory). First found
 * of: attention_set_rows (tests, kiln_bench_attention), $KILN_ATTN_ROWS
 * (1 to ATTN_ROWS_MAX), the device's tuning record (`kiln tune` times
 * each), and the device's default: ATTN_CPU_ROWS on PoCL's CPUs,
 * ATTN_GPU_TILE on GPUs (fewer where local memory does not hold it), and 1
 * elsewhere: on rusticl's llvmpipe, whose local memory and barriers cost
 * more than they save, a tile of 32 took 1.25-1.6x the time of none.
 * Every choice gives the same bits. */
/* 16 lanes, forward + backward at nanoGPT's shape on an AVX-512 Xeon:
 * 0.65 ms; 8: 0.65-0.87, 4: 1.0-1.1, 2: 2.5-2.7 */
#define ATTN_CPU_ROWS 16
#define ATTN_GPU_TILE 32
static size_t rows_override; /* attention_set_rows: 0 for the device's choice */

size_t attention_set_rows(size_t rows)
{
    size_t was = rows_override;
    rows_override = rows;
    return was;
}

size_t attention_rows(const kiln_ctx *ctx)
{
    if (rows_override)
        return rows_override;
    const char *env = getenv("KILN_ATTN_ROWS");
    long rows = env ? strtol(env, NULL, 10) : 0;
    if (rows >= 1 && rows <= ATTN_ROWS_MAX)
        return (size_t)rows;
    if (ctx->attn_rows)
        return ctx->attn_rows;
    if (device_loops_work_groups(&ctx->info))
        return ATTN_CPU_ROWS;
    return ctx->info.type == KILN_DEVICE_GPU ? ATTN_GPU_TILE : 1;
}

/* The tile of a work-group for heads of D channels: the chosen rows, fewer
 * where the device's work-groups or local memory (keys and values, or
 * queries, gradients and two statistics, a row of each per item) do not
 * hold them; 0 where work-groups run as loops (rows in vector lanes
 * instead) or for a tile of 1. */
static size_t attn_tile(const kiln_ctx *ctx, size_t D)
{
    if (device_loops_work_groups(&ctx->info))
        return 0;
    size_t rows = attention_rows(ctx), local = ctx->info.local_mem_bytes;
    while (rows > 1 && (rows > ctx->info.max_work_group_size ||
                        rows * (2 * D + 2) * sizeof(float) > local))
        rows /= 2;
    return rows > 1 ? rows : 0;
}

/* Keys a chunk (KB in cl/attention.cl) when decoding: 8 where work-groups
 * run as loops (a vector exp and one rescaling per chunk), else 1. */
static int attn_chunk(const kiln_ctx *ctx)
{
    return device_loops_work_groups(&ctx->info) ? 8 : 1;
}

static size_t head_dim(const op_args *c)
{
    return c->out->shape[2] / c->attrs->heads;
}

/* Private floats an item of cl/attention_lanes.cl may hold a row-vector
 * array of (it holds four of LANES x HD: a wider head takes fewer lanes,
 * 8 at HD 256, so that an item's arrays stay in L1). */
#define ATTN_LANES_FLOATS 2048

/* The rows an item of cl/attention_lanes.cl takes for heads of D
 * channels, one a lane: the chosen rows rounded down to a vector width
 * (1, 2, 4, 8 or 16), fewer where lanes x D would pass ATTN_LANES_FLOATS. */
static size_t attn_lanes(const kiln_ctx *ctx, size_t D)
{
    size_t lanes = 16;
    while (lanes > 1 && (lanes > attention_rows(ctx) || lanes * D > ATTN_LANES_FLOATS))
        lanes /= 2;
    return lanes;
}

/* The kernel `name` for heads of D channels: rows in vector lanes where
 * work-groups run as loops (CPUs), else a local tile of `tile` rows, or
 * neither (tile 0). */
static kiln_status attn_kernel(const op_args *c, size_t tile, const char *name, cl_kernel *k)
{
    char opts[80];
    size_t D = head_dim(c);
    if (device_loops_work_groups(&c->ctx->info)) {
        snprintf(opts, sizeof opts, "-DHD=%zu -DLANES=%zu", D, attn_lanes(c->ctx, D));
        return kernel_get(c->ctx, "math.cl+attention_lanes.cl", opts, name, k);
    }
    if (tile)
        snprintf(opts, sizeof opts, "-DHD=%zu -DTILE=%zu", D, tile);
    else
        snprintf(opts, sizeof opts, "-DHD=%zu", D);
    return kernel_get(c->ctx, "attention.cl", opts, name, k);
}

/* Launches a kernel over query (or key) rows, heads and the batch: an
 * item of attn_lanes rows a work-group (CPUs), groups of `tile` rows, or
 * an item a row (tile 0). */
static kiln_status attn_launch(const op_args *c, size_t tile, cl_kernel k, const char *name,
                               const kiln_karg *args, int nargs)
{
    size_t T = c->out->shape[1], H = c->attrs->heads, B = c->out->shape[0];
    if (device_loops_work_groups(&c->ctx->info)) {
        size_t lanes = attn_lanes(c->ctx, head_dim(c));
        return launch_groups_args(c->ctx, k, name, (T + lanes - 1) / lanes, H, B, 1, args,
                                  nargs);
    }
    if (tile)
        return launch_groups_args(c->ctx, k, name, T, H, B, tile, args, nargs);
    return launch_3d_args(c->ctx, k, name, T, H, B, args, nargs);
}
#define ATTN_LAUNCH(c, tile, k, name, ...) attn_launch(c, tile, k, name, KARGS(__VA_ARGS__))

static float attn_scale(const op_args *c)
{
    return (float)(1.0 / sqrt((double)head_dim(c)));
}

/* Decoding: the new rows' keys and values into the cache, then each new
 * row attends to every cached position up to its own. */
static kiln_status attn_decode(const op_args *c)
{
    cl_uint T = c->out->shape[1], H = c->attrs->heads, C = c->out->shape[2];
    cl_uint at = (cl_uint)c->at;
    const kiln_tensor *kv = c->cache;
    if (c->out->shape[0] != 1 || kv->ndim != 2 || kv->shape[1] != 2 * (size_t)C ||
        c->at + T > kv->shape[0])
        return error_set(KILN_ERR_SHAPE, "attention: decoding %u rows of batch %zu at position "
                                         "%zu with a cache of %zu x %zu; expected batch 1, %u "
                                         "channels and room for them",
                         T, c->out->shape[0], c->at, kv->shape[0],
                         kv->ndim == 2 ? kv->shape[1] : 0, 2 * C);
    char opts[48]; /* KB 1 is attention.cl's default: the forward's program on rusticl */
    int kb = attn_chunk(c->ctx);
    snprintf(opts, sizeof opts, kb > 1 ? "-DHD=%zu -DKB=%d" : "-DHD=%zu", head_dim(c), kb);
    cl_kernel store, k;
    kiln_status st = kernel_get(c->ctx, "attention.cl", opts, "attn_cache_store", &store);
    if (st == KILN_OK)
        st = kernel_get(c->ctx, "attention.cl", opts, "attn_decode", &k);
    float scale = attn_scale(c);
    if (st == KILN_OK)
        st = launch_3d(c->ctx, store, "attn_cache_store", 2 * C, T, 1,
                       KARG(c->in[0]->buf), KARG(kv->buf), KARG(at), KARG(C));
    if (st == KILN_OK)
        st = launch_3d(c->ctx, k, "attn_decode", T, H, 1, KARG(c->in[0]->buf),
                       KARG(kv->buf), KARG(c->out->buf), KARG(at), KARG(H), KARG(scale));
    return st;
}

static kiln_status attn_forward(const op_args *c)
{
    if (c->cache)
        return attn_decode(c);
    cl_kernel k;
    size_t tile = attn_tile(c->ctx, head_dim(c));
    kiln_status st = attn_kernel(c, tile, "attn_forward", &k);
    cl_uint T = c->out->shape[1], H = c->attrs->heads;
    float scale = attn_scale(c);
    if (st != KILN_OK)
        return st;
    return ATTN_LAUNCH(c, tile, k, "attn_forward", KARG(c->in[0]->buf), KARG(c->out->buf),
                       KARG(c->saved[0]->buf), KARG(T), KARG(H), KARG(scale));
}

static kiln_status attn_backward(const op_args *c)
{
    if (!c->din[0])
        return KILN_OK;
    cl_kernel kq, kkv;
    size_t tile = attn_tile(c->ctx, head_dim(c));
    kiln_status st = attn_kernel(c, tile, "attn_backward_q", &kq);
    if (st == KILN_OK)
        st = attn_kernel(c, tile, "attn_backward_kv", &kkv);
    kiln_shape ds = shape_of(c->saved[0]);
    kiln_tensor *delta = NULL;
    if (st == KILN_OK)
        st = tensor_of(c->ctx, &ds, &delta);
    cl_uint T = c->out->shape[1], H = c->attrs->heads;
    float scale = attn_scale(c);
    if (st == KILN_OK)
        st = ATTN_LAUNCH(c, tile, kq, "attn_backward_q", KARG(c->in[0]->buf),
                         KARG(c->out->buf), KARG(c->dout->buf), KARG(c->saved[0]->buf),
                         KARG(delta->buf), KARG(c->din[0]->buf), KARG(T), KARG(H),
                         KARG(scale));
    if (st == KILN_OK)
        st = ATTN_LAUNCH(c, tile, kkv, "attn_backward_kv", KARG(c->in[0]->buf),
                         KARG(c->dout->buf), KARG(c->saved[0]->buf), KARG(delta->buf),
                         KARG(c->din[0]->buf), KARG(T), KARG(H), KARG(scale));
    kiln_tensor_free(delta);
    return st;
}

/* the heads of nanoGPT's CausalSelfAttention (n_head) */
static const op_key attn_keys[] = {
    OP_KEY_NEEDED("heads", heads, 1, 4096),
};

const op_desc op_attention_desc = {
    .name = "attention",
    .n_inputs = 1,
    .in_ranks = 1u << 3,
    .in_hint = "expected (time, 3 x channels) from a fused q, k, v projection",
    .keys = attn_keys,
    .n_keys = sizeof attn_keys / sizeof attn_keys[0],
    .infer = attn_infer,
    .forward = attn_forward,
    .backward = attn_backward,
};
