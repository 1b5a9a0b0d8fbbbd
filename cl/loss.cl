/* Loss terms and input gradients; the mean over the batch is taken by a
 * deterministic sum of the terms afterwards. grad_scale is 1/count, so the
 * gradient is that of the mean. has_grad = 0 leaves grad untouched.
 *   mse_terms: term = (x - t)^2, grad = 2 (x - t) / n
 *   bce_terms: with logits: term = max(x, 0) - x t + log(1 + exp(-|x|)),
 *              grad = (sigmoid(x) - t) / n
 *   ce_rows:   one work-item per row of x (N, C); t holds class indices;
 *              with label smoothing e, q = (1 - e) onehot(t) + e / C:
 *              term = logsumexp(x) - sum q x, grad = (softmax(x) - q) / N;
 *              an index outside [0, C) gives NaN */

__kernel void mse_terms(__global const float *x, __global const float *t,
                        __global float *terms, __global float *grad, const uint n,
                        const float grad_scale, const int has_grad)
{
    uint i = (uint)get_global_id(0);
    if (i >= n)
        return;
    float d = x[i] - t[i];
    terms[i] = d * d;
    if (has_grad)
        grad[i] = 2.0f * d * grad_scale;
}

__kernel void bce_terms(__global const float *x, __global const float *t,
                        __global float *terms, __global float *grad, const uint n,
                        const float grad_scale, const int has_grad)
{
    uint i = (uint)get_global_id(0);
    if (i >= n)
        return;
    float v = x[i], e = exp(-fabs(v));
    terms[i] = fmax(v, 0.0f) - v * t[i] + log1p(e);
    if (has_grad) {
        float s = v >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
        grad[i] = (s - t[i]) * grad_scale;
    }
}

__kernel void ce_rows(__global const float *x, __global const float *t,
                      __global float *terms, __global float *grad, const uint N,
                      const uint C, const float smoothing, const float grad_scale,
                      const int has_grad)
{
    uint r = (uint)get_global_id(0);
    if (r >= N)
        return;
    __global const float *xr = x + r * C;
    float target = t[r];
    int cls = (int)target;
    if (!(target >= 0.0f) || (float)cls != target || cls >= (int)C) {
        terms[r] = NAN;
        for (uint j = 0; has_grad && j < C; j++)
            grad[r * C + j] = NAN;
        return;
    }
    float m = -INFINITY, sum_x = 0.0f;
    for (uint j = 0; j < C; j++) {
        m = fmax(m, xr[j]);
        sum_x += xr[j];
    }
    float sum_e = 0.0f;
    for (uint j = 0; j < C; j++)
        sum_e += exp(xr[j] - m);
    float lse = m + log(sum_e);
    float on = 1.0f - smoothing, off = smoothing / (float)C;
    terms[r] = lse - on * xr[cls] - off * sum_x;
    for (uint j = 0; has_grad && j < C; j++) {
        float q = off + (j == (uint)cls ? on : 0.0f);
        grad[r * C + j] = (exp(xr[j] - lse) - q) * grad_scale;
    }
}
