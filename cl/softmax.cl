/* Softmax along one dimension. x is viewed as (outer, n, inner); one
 * work-item per (outer, inner) pair walks the n values (max-subtracted, so
 * any finite logits give finite results).
 *   softmax_forward:  y = exp(x - max) / sum exp(x - max)
 *   softmax_backward: dx = y * (dy - sum(dy * y)) */

__kernel void softmax_forward(__global const float *x, __global float *y, const uint outer,
                              const uint n, const uint inner)
{
    uint id = (uint)get_global_id(0);
    if (id >= outer * inner)
        return;
    uint base = (id / inner) * n * inner + id % inner;
    float m = -INFINITY;
    for (uint j = 0; j < n; j++)
        m = fmax(m, x[base + j * inner]);
    float sum = 0.0f;
    for (uint j = 0; j < n; j++) {
        float e = exp(x[base + j * inner] - m);
        y[base + j * inner] = e;
        sum += e;
    }
    float inv = 1.0f / sum;
    for (uint j = 0; j < n; j++)
        y[base + j * inner] *= inv;
}

__kernel void softmax_backward(__global const float *y, __global const float *dy,
                               __global float *dx, const uint outer, const uint n,
                               const uint inner)
{
    uint id = (uint)get_global_id(0);
    if (id >= outer * inner)
        return;
    uint base = (id / inner) * n * inner + id % inner;
    float dot = 0.0f;
    for (uint j = 0; j < n; j++)
        dot += dy[base + j * inner] * y[base + j * inner];
    for (uint j = 0; j < n; j++) {
        uint at = base + j * inner;
        dx[at] = y[at] * (dy[at] - dot);
    }
}
