/* Moving data between layouts. Each kernel runs over an exact 3-d range
 * (x fastest) and reads its indices from it, so nothing divides.
 *   swap01 over (P, A, B): y (B, A, P)[b, a, p] = x (A, B, P)[a, b, p]
 *   concat over (S, C0 + C1, N): y (N, C0 + C1, S) from a (N, C0, S), b (N, C1, S)
 *   split over (S, Cp, N): part (N, Cp, S) = channels [first, first + Cp) of
 *                          y (N, C, S), for the gradients of concat
 *   swap01_planes: swap01 where work-groups run as loops: items take whole
 *                  planes of P (in x's order) and copy them sixteen at a time */

__kernel void swap01(__global const float *x, __global float *y)
{
    uint p = get_global_id(0), a = get_global_id(1), b = get_global_id(2);
    uint P = get_global_size(0), A = get_global_size(1), B = get_global_size(2);
    y[(b * A + a) * P + p] = x[(a * B + b) * P + p];
}

__kernel void concat(__global const float *a, __global const float *b, __global float *y,
                     const uint C0)
{
    uint s = get_global_id(0), c = get_global_id(1), n = get_global_id(2);
    uint S = get_global_size(0), C = get_global_size(1), C1 = C - C0;
    y[(n * C + c) * S + s] = c < C0 ? a[(n * C0 + c) * S + s] : b[(n * C1 + (c - C0)) * S + s];
}

__kernel void split(__global const float *y, __global float *part, const uint C,
                    const uint first)
{
    uint s = get_global_id(0), c = get_global_id(1), n = get_global_id(2);
    uint S = get_global_size(0), Cp = get_global_size(1);
    part[(n * Cp + c) * S + s] = y[(n * C + first + c) * S + s];
}

__kernel void swap01_planes(__global const float *x, __global float *y, const uint A,
                            const uint B, const uint P)
{
    for (uint i = (uint)get_global_id(0); i < A * B; i += (uint)get_global_size(0)) {
        __global const float *from = x + (size_t)i * P;
        __global float *to = y + ((size_t)(i % B) * A + i / B) * P;
        uint j = 0;
        for (; j + 16 <= P; j += 16)
            vstore16(vload16(0, from + j), 0, to + j);
        for (; j < P; j++)
            to[j] = from[j];
    }
}
