/* Deterministic reductions: every sum runs in a fixed order that depends
 * only on the sizes and the work-group size WG (a power of two), so the
 * same inputs give the same bits on every run.
 *
 *   channel_sums: out[c] = sum_{r,s} x[(r*cols + c)*inner + s]
 *                 one work-group per channel c
 *   partial_sums: partial[g] = sum of x[i] (or x[i]^2) over chunk g of (n)
 *   sum_partials: out[0] = scale * sum of partial[0..count)   one work-group
 * Built after group.cl (group_sum). */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void channel_sums(__global const float *x, __global float *out, const ulong rows,
                  const ulong cols, const ulong inner)
{
    __local float scratch[WG];
    size_t c = get_group_id(0), lid = get_local_id(0);
    ulong count = rows * inner;
    float acc = 0.0f;
    for (ulong j = lid; j < count; j += WG) {
        ulong r = j / inner, s = j % inner;
        acc += x[(r * cols + c) * inner + s];
    }
    float total = group_sum(scratch, acc);
    if (lid == 0)
        out[c] = total;
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void partial_sums(__global const float *x, const ulong n, const ulong chunk,
                  __global float *partial, const int square)
{
    __local float scratch[WG];
    size_t g = get_group_id(0), lid = get_local_id(0);
    ulong begin = g * chunk, end = min(n, begin + chunk);
    float acc = 0.0f;
    for (ulong i = begin + lid; i < end; i += WG)
        acc += square ? x[i] * x[i] : x[i];
    float total = group_sum(scratch, acc);
    if (lid == 0)
        partial[g] = total;
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void sum_partials(__global const float *partial, const ulong count, __global float *out,
                  const float scale)
{
    __local float scratch[WG];
    size_t lid = get_local_id(0);
    float acc = 0.0f;
    for (ulong i = lid; i < count; i += WG)
        acc += partial[i];
    float total = group_sum(scratch, acc);
    if (lid == 0)
        out[0] = total * scale;
}
