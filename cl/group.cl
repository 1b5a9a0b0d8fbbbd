/* Work-group helpers, compiled before the kernels that use them
 * ("group.cl+reduce.cl"). WG is the work-group size, a power of two. */
#ifndef WG
#define WG 64
#endif

/* Tree sum of one value per work-item, returned to every work-item; safe
 * to call again at once with the same scratch. */
static float group_sum(__local float *scratch, float v)
{
    size_t lid = get_local_id(0);
    scratch[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (size_t step = WG / 2; step > 0; step /= 2) {
        if (lid < step)
            scratch[lid] += scratch[lid + step];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float total = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return total;
}


/* The indices of [0, n) work-item lid of WG visits: begin, begin + step,
 * ... < end. On GPUs every WG-th from lid, so that neighbouring items read
 * neighbouring values; with CHUNKED (CPUs, which run a group's items one
 * after another) one contiguous chunk each, so that every item streams
 * through memory. */
typedef struct {
    uint begin, end, step;
} lane_span;

static lane_span span_of(uint lid, uint n)
{
#ifdef CHUNKED
    uint chunk = (n + WG - 1) / WG, begin = min(n, lid * chunk);
    lane_span l = {begin, min(n, begin + chunk), 1};
#else
    lane_span l = {lid, n, WG};
#endif
    return l;
}

/* The same walk through (rows, inner) as (r, s) = (j / inner, j % inner),
 * stepping without dividing: the per-channel reductions visit
 * x[(r * cols + c) * inner + s] this way. */
typedef struct {
    uint r, s, dr, ds;
} strided_walk;

static strided_walk walk_start(lane_span l, uint inner)
{
    strided_walk w = {l.begin / inner, l.begin % inner, l.step / inner, l.step % inner};
    return w;
}

static void walk_next(strided_walk *w, uint inner)
{
    w->r += w->dr;
    w->s += w->ds;
    if (w->s >= inner) {
        w->s -= inner;
        w->r++;
    }
}

/* The next four indices (r * cols + c) * inner + s of a walk, for loops
 * that keep four partial sums: independent additions keep a CPU's adders
 * busy where one running sum would wait on each addition. */
static uint4 walk_take4(strided_walk *w, uint cols, uint c, uint inner)
{
    uint4 at;
    at.s0 = (w->r * cols + c) * inner + w->s;
    walk_next(w, inner);
    at.s1 = (w->r * cols + c) * inner + w->s;
    walk_next(w, inner);
    at.s2 = (w->r * cols + c) * inner + w->s;
    walk_next(w, inner);
    at.s3 = (w->r * cols + c) * inner + w->s;
    walk_next(w, inner);
    return at;
}

static float sum4(float4 v)
{
    return (v.s0 + v.s1) + (v.s2 + v.s3);
}

/* Whether four more steps of span l from j stay inside it. */
static int four_more(lane_span l, uint j)
{
    return j + 3 * l.step < l.end;
}

/* This work-item's part of the sum over channel c of x (rows, cols, inner)
 * of (x - shift), or of its square: four partial sums along its span,
 * then the rest one by one. */
static float lane_channel_sum(__global const float *x, float shift, int square, uint rows,
                              uint cols, uint c, uint inner)
{
    lane_span l = span_of((uint)get_local_id(0), rows * inner);
    strided_walk w = walk_start(l, inner);
    float4 acc4 = 0.0f;
    uint j = l.begin;
    for (; four_more(l, j); j += 4 * l.step) {
        uint4 at = walk_take4(&w, cols, c, inner);
        float4 d = (float4)(x[at.s0], x[at.s1], x[at.s2], x[at.s3]) - shift;
        if (square) /* as separate statements, d * d may contract into an fma */
            acc4 += d * d;
        else
            acc4 += d;
    }
    float acc = sum4(acc4);
    for (; j < l.end; j += l.step, walk_next(&w, inner)) {
        float d = x[(w.r * cols + c) * inner + w.s] - shift;
        if (square)
            acc += d * d;
        else
            acc += d;
    }
    return acc;
}

/* ---- Sums over planes, for drivers that run a work-group as a loop ----
 * Gathering one channel's values across a work-group is slow on a CPU:
 * every item walks indices and loads one float at a time. There one
 * work-item instead sums whole planes, contiguous runs of S values (one
 * (n, c) of an (N, C, S) tensor), sixteen lanes at a time, and a small
 * second kernel adds each channel's planes in the order n = 0, 1, ...
 * Both orders are fixed, so the sums do not depend on scheduling. Items
 * take planes gid, gid + items, ... */
#define FOR_EACH_PLANE(p, planes) \
    for (uint p = (uint)get_global_id(0); p < (planes); p += (uint)get_global_size(0))

static float lanes_total(float16 v)
{
    float8 a = v.lo + v.hi;
    float4 b = a.lo + a.hi;
    return (b.s0 + b.s1) + (b.s2 + b.s3);
}

/* The sum over a plane of (x - shift), or of its square. */
static float plane_sum(__global const float *x, uint S, float shift, int square)
{
    float16 acc = 0.0f;
    uint j = 0;
    for (; j + 16 <= S; j += 16) {
        float16 d = vload16(0, x + j) - shift;
        acc += square ? d * d : d;
    }
    float tail = 0.0f;
    for (; j < S; j++) {
        float d = x[j] - shift;
        tail += square ? d * d : d;
    }
    return lanes_total(acc) + tail;
}

/* ---- Sums down columns, for (N, C) tensors where work-groups run as loops ----
 * One work-item takes sixteen neighbouring columns c0 .. c0 + 15 and walks
 * the rows in order, sixteen lanes at a time; where C is not a multiple of
 * sixteen, the last item takes its columns one at a time (COLUMN_TAIL).
 * Every column's sum runs over n = 0, 1, ... either way. */
#define COLUMNS_OF_ITEM(c0) uint c0 = 16 * (uint)get_global_id(0)
#define COLUMN_TAIL(c, c0, C) for (uint c = (c0); c < (C); c++)

/* The sums over the rows of columns c0 .. c0 + 15 of x (N, C), with x at
 * c0, of (x - shift) or its square. */
static float16 column_sums16(__global const float *x, uint N, uint C, float16 shift,
                             int square)
{
    float16 acc = 0.0f;
    for (uint n = 0; n < N; n++) {
        float16 d = vload16(0, x + (size_t)n * C) - shift;
        acc += square ? d * d : d;
    }
    return acc;
}

/* The same for one column, x at it. */
static float column_sum(__global const float *x, uint N, uint C, float shift, int square)
{
    float acc = 0.0f;
    for (uint n = 0; n < N; n++) {
        float d = x[(size_t)n * C] - shift;
        acc += square ? d * d : d;
    }
    return acc;
}
