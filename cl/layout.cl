/* Moving data between layouts.
 *   swap01: y (B, A, P) from x (A, B, P): y[b, a, p] = x[a, b, p]
 *   concat: y (N, C0 + C1, S) from a (N, C0, S) and b (N, C1, S)
 *   split:  the inverse of concat, for the gradients */

__kernel void swap01(__global const float *x, __global float *y, const ulong A,
                     const ulong B, const ulong P)
{
    size_t id = get_global_id(0);
    if (id >= A * B * P)
        return;
    ulong p = id % P, a = (id / P) % A, b = id / (P * A);
    y[id] = x[(a * B + b) * P + p];
}

__kernel void concat(__global const float *a, __global const float *b, __global float *y,
                     const ulong N, const ulong C0, const ulong C1, const ulong S)
{
    size_t id = get_global_id(0);
    ulong C = C0 + C1;
    if (id >= N * C * S)
        return;
    ulong s = id % S, c = (id / S) % C, n = id / (S * C);
    y[id] = c < C0 ? a[(n * C0 + c) * S + s] : b[(n * C1 + (c - C0)) * S + s];
}

/* part = the channels [first, first + Cp) of y (N, C, S) */
__kernel void split(__global const float *y, __global float *part, const ulong N,
                    const ulong C, const ulong Cp, const ulong first, const ulong S)
{
    size_t id = get_global_id(0);
    if (id >= N * Cp * S)
        return;
    ulong s = id % S, c = (id / S) % Cp, n = id / (S * Cp);
    part[id] = y[(n * C + first + c) * S + s];
}
