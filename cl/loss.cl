/* Loss terms and input gradients; the mean over the batch is taken by a
 * deterministic sum of the terms afterwards. grad_scale is 1/count, so the
 * gradient is that of the mean. has_grad = 0 leaves grad untouched.
 *   mse_terms: term = (x - t)^2, grad = 2 (x - t) / n
 *   bce_terms: with logits: term = max(x, 0) - x t + log(1 + exp(-|x|)),
 *              grad = (sigmoid(x) - t) / n
 *   ce_rows:   one work-item per row of x (N, C); t holds class indices;
 *              with label smoothing e, q = (1 - e) onehot(t) + e / C:
 *              term = logsumexp(x) - sum q x, grad = (softmax(x) - q) / N;
 *              an index outside [0, C) gives NaN
 *   ce_rows16: ce_rows where work-groups run as loops (CPUs): an item a
 *              row (work-groups of one), its classes sixteen at a time
 * exp is math.cl's (its arguments are at most 0 here; the program is
 * "math.cl+loss.cl"). The logarithms are taken before any branch: libclc's log reads a table
 * that rusticl passes as a hidden kernel argument, and llvmpipe warns on
 * stderr when a kernel argument is read inside control flow. Out-of-range
 * items compute on the last row and store nothing. */

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
    uint i = (uint)get_global_id(0), at = min(i, n - 1);
    float v = x[at], target = t[at], e = exp(-fabs(v));
    float term = fmax(v, 0.0f) - v * target + log1p(e);
    float s = v >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
    if (i >= n)
        return;
    terms[i] = term;
    if (has_grad)
        grad[i] = (s - target) * grad_scale;
}

__kernel void ce_rows(__global const float *x, __global const float *t,
                      __global float *terms, __global float *grad, const uint N,
                      const uint C, const float smoothing, const float grad_scale,
                      const int has_grad)
{
    uint r = (uint)get_global_id(0), row = min(r, N - 1);
    __global const float *xr = x + row * C;
    float target = t[row];
    int cls = (int)target;
    int valid = target >= 0.0f && (float)cls == target && cls < (int)C;
    float m = -INFINITY, sum_x = 0.0f;
    for (uint j = 0; j < C; j++) {
        m = fmax(m, xr[j]);
        sum_x += xr[j];
    }
    float sum_e = 0.0f;
    for (uint j = 0; j < C; j++)
        sum_e += exp_nonpositive(xr[j] - m);
    float lse = m + log(sum_e);
    if (r >= N)
        return;
    if (!valid) {
        terms[r] = NAN;
        for (uint j = 0; has_grad && j < C; j++)
            grad[r * C + j] = NAN;
        return;
    }
    float on = 1.0f - smoothing, off = smoothing / (float)C;
    terms[r] = lse - on * xr[cls] - off * sum_x;
    for (uint j = 0; has_grad && j < C; j++) {
        float q = off + (j == (uint)cls ? on : 0.0f);
        grad[r * C + j] = (exp_nonpositive(xr[j] - lse) - q) * grad_scale;
    }
}

/* Sixteen values' max and sum, in a fixed order. */
static float max16(float16 v)
{
    float8 a = fmax(v.lo, v.hi);
    float4 b = fmax(a.lo, a.hi);
    float2 c = fmax(b.lo, b.hi);
    return fmax(c.x, c.y);
}

static float sum16(float16 v)
{
    float8 a = v.lo + v.hi;
    float4 b = a.lo + a.hi;
    float2 c = b.lo + b.hi;
    return c.x + c.y;
}

/* The row's classes from j in sixteens, the last sixteen ending at C
 * (C >= 16): v the values, at their classes, fresh the lanes not below j
 * (those below were counted by the sixteen before). */
#define CE_CHUNKS(j, xr, C, BODY)                                                       \
    for (uint j = 0; j < (C); j += 16) {                                               \
        uint at_ = min(j, (C) - 16u);                                                  \
        float16 v = vload16(0, (xr) + at_);                                            \
        int16 at = (int16)(at_) + (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,  \
                                          14, 15);                                     \
        int16 fresh = at >= (int16)(j);                                                \
        BODY                                                                           \
    }

__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
ce_rows16(__global const float *x, __global const float *t, __global float *terms,
          __global float *grad, const uint N, const uint C, const float smoothing,
          const float grad_scale, const int has_grad)
{
    uint r = (uint)get_global_id(0);
    __global const float *xr = x + (size_t)r * C;
    float target = t[r];
    int cls = (int)target;
    int valid = target >= 0.0f && (float)cls == target && cls < (int)C;
    float16 m16 = -INFINITY, s16 = 0.0f, e16 = 0.0f;
    CE_CHUNKS(j, xr, C, {
        m16 = fmax(m16, v);
        s16 += select((float16)0.0f, v, fresh);
    })
    float m = max16(m16), sum_x = sum16(s16);
    CE_CHUNKS(j, xr, C, { e16 += select((float16)0.0f, exp_nonpositive16(v - m), fresh); })
    float lse = m + log(sum16(e16));
    __global float *gr = grad + (size_t)r * C;
    if (!valid) {
        terms[r] = NAN;
        for (uint j = 0; has_grad && j < C; j++)
            gr[j] = NAN;
        return;
    }
    float on = 1.0f - smoothing, off = smoothing / (float)C;
    terms[r] = lse - on * xr[cls] - off * sum_x;
    if (has_grad)
        CE_CHUNKS(j, xr, C, {
            float16 q = off + select((float16)0.0f, (float16)on, at == (int16)cls);
            vstore16((exp_nonpositive16(v - lse) - q) * grad_scale, 0, gr + at_);
        })
}

/* Cross-entropy with class weights w (C), as PyTorch's weight= with
 * reduction='mean': L = sum_i w[t_i] l_i / sum_i w[t_i]. Each item also
 * sums w over every row's target (batches are small next to the rows'
 * exps), so the terms come out as w[t] l N / sum w, whose plain mean is L,
 * and grad = w[t] (softmax(x) - onehot(t)) / sum w. */
__kernel void ce_rows_weighted(__global const float *x, __global const float *t,
                               __global const float *w, __global float *terms,
                               __global float *grad, const uint N, const uint C,
                               const int has_grad)
{
    uint r = (uint)get_global_id(0), row = min(r, N - 1);
    __global const float *xr = x + row * C;
    float total = 0.0f;
    for (uint i = 0; i < N; i++) {
        int k = (int)t[i];
        total += k >= 0 && k < (int)C ? w[k] : 0.0f;
    }
    float target = t[row];
    int cls = (int)target;
    int valid = target >= 0.0f && (float)cls == target && cls < (int)C && total > 0.0f;
    float m = -INFINITY;
    for (uint j = 0; j < C; j++)
        m = fmax(m, xr[j]);
    float sum_e = 0.0f;
    for (uint j = 0; j < C; j++)
        sum_e += exp_nonpositive(xr[j] - m);
    float lse = m + log(sum_e);
    if (r >= N)
        return;
    if (!valid) {
        terms[r] = NAN;
        for (uint j = 0; has_grad && j < C; j++)
            grad[r * C + j] = NAN;
        return;
    }
    float wt = w[cls];
    terms[r] = wt * (lse - xr[cls]) * (float)N / total;
    for (uint j = 0; has_grad && j < C; j++) {
        float q = j == (uint)cls ? 1.0f : 0.0f;
        grad[r * C + j] = wt * (exp_nonpositive(xr[j] - lse) - q) / total;
    }
}
