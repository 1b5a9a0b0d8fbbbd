/* Deterministic reductions: every sum runs in a fixed order that depends
 * only on the sizes and the work-group size WG (a power of two), so the
 * same inputs give the same bits on every run.
 *
 *   channel_sums: out[c] = sum_{r,s} x[(r*cols + c)*inner + s]
 *                 one work-group per channel c
 *   partial_sums: partial[g] = sum of x[i] (or x[i]^2) over chunk g of (n)
 *   sum_partials: out[0] = scale * sum of partial[0..count)   one work-group
 *   plane_sums, channel_totals: channel_sums where work-groups run as
 *                 loops (group.cl's sums over planes)
 *   column_totals: the same where inner = 1, down columns (group.cl)
 *   chunk_sums:   partial_sums where work-groups run as loops, one
 *                 work-item per chunk in sixteen lanes
 * Built after group.cl (group_sum). */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void channel_sums(__global const float *x, __global float *out, const uint rows,
                  const uint cols, const uint inner)
{
    __local float scratch[WG];
    uint c = (uint)get_group_id(0), lid = (uint)get_local_id(0);
    float acc = lane_channel_sum(x, 0.0f, 0, rows, cols, c, inner);
    float total = group_sum(scratch, acc);
    if (lid == 0)
        out[c] = total;
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void partial_sums(__global const float *x, const uint n, const uint chunk,
                  __global float *partial, const int square)
{
    __local float scratch[WG];
    uint g = (uint)get_group_id(0), lid = (uint)get_local_id(0);
    uint begin = g * chunk, end = min(n, begin + chunk);
    float acc = 0.0f;
    lane_span l = span_of(lid, end > begin ? end - begin : 0);
    for (uint i = begin + l.begin; i < begin + l.end; i += l.step)
        acc += square ? x[i] * x[i] : x[i];
    float total = group_sum(scratch, acc);
    if (lid == 0)
        partial[g] = total;
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void sum_partials(__global const float *partial, const uint count, __global float *out,
                  const float scale)
{
    __local float scratch[WG];
    uint lid = (uint)get_local_id(0);
    float acc = 0.0f;
    lane_span l = span_of(lid, count);
    for (uint i = l.begin; i < l.end; i += l.step)
        acc += partial[i];
    float total = group_sum(scratch, acc);
    if (lid == 0)
        out[0] = total * scale;
}

/* part[p] = the sum of plane p of x (planes, S) */
__kernel void plane_sums(__global const float *x, __global float *part, const uint planes,
                         const uint S)
{
    FOR_EACH_PLANE(p, planes)
        part[p] = plane_sum(x + (size_t)p * S, S, 0.0f, 0);
}

/* out[c] = sum over n of part[n * C + c], in order */
__kernel void channel_totals(__global const float *part, __global float *out, const uint N,
                             const uint C)
{
    uint c = (uint)get_global_id(0);
    if (c >= C)
        return;
    float acc = 0.0f;
    for (uint n = 0; n < N; n++)
        acc += part[n * C + c];
    out[c] = acc;
}

/* partial[g] = the sum of chunk g of x (n), or of its squares */
__kernel void chunk_sums(__global const float *x, const uint n, const uint chunk,
                         __global float *partial, const int square)
{
    uint g = (uint)get_global_id(0), begin = g * chunk;
    partial[g] = begin < n ? plane_sum(x + begin, min(chunk, n - begin), 0.0f, square) : 0.0f;
}

/* out[c] = sum over n of x[n * C + c], sixteen columns an item */
__kernel void column_totals(__global const float *x, __global float *out, const uint N,
                            const uint C)
{
    COLUMNS_OF_ITEM(c0);
    if (c0 + 16 <= C) {
        vstore16(column_sums16(x + c0, N, C, 0.0f, 0), 0, out + c0);
        return;
    }
    COLUMN_TAIL(c, c0, C)
        out[c] = column_sum(x + c, N, C, 0.0f, 0);
}
