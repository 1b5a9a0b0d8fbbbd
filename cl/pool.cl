/* Max and average pooling over square windows, NCHW, with padding.
 * x (N*C planes of H x W), y (N*C planes of OH x OW).
 *   maxpool_forward: y = max over the window (padding never wins, as
 *                    PyTorch pads with -inf); arg = the winner's index
 *                    ih*W + iw in its plane, stored as a float
 *   maxpool_backward: dx[i] = sum of dy over the windows whose arg is i
 *   avgpool_*: the window sum / (K*K), padding counted (PyTorch's default
 *              count_include_pad=True)
 * Backward passes gather over the windows covering each input, so they
 * need no atomics and sum in a fixed order. */

__kernel void maxpool_forward(__global const float *x, __global float *y,
                              __global float *arg, const ulong planes, const ulong H,
                              const ulong W, const ulong OH, const ulong OW, const ulong K,
                              const ulong S, const ulong P)
{
    size_t id = get_global_id(0);
    if (id >= planes * OH * OW)
        return;
    ulong ow = id % OW, oh = (id / OW) % OH, plane = id / (OW * OH);
    __global const float *xp = x + plane * H * W;
    float best = -INFINITY;
    long best_at = -1;
    for (ulong kh = 0; kh < K; kh++) {
        long ih = (long)(oh * S + kh) - (long)P;
        if (ih < 0 || ih >= (long)H)
            continue;
        for (ulong kw = 0; kw < K; kw++) {
            long iw = (long)(ow * S + kw) - (long)P;
            if (iw < 0 || iw >= (long)W)
                continue;
            float v = xp[ih * (long)W + iw];
            if (v > best || best_at < 0 || isnan(v)) {
                best = v;
                best_at = ih * (long)W + iw;
            }
        }
    }
    y[id] = best;
    arg[id] = (float)best_at;
}

/* First and last window index along one axis whose window covers i. */
static void covering(long i, long K, long S, long P, long O, long *first, long *last)
{
    long hi = (i + P) / S;
    long lo = i + P - K + 1;
    lo = lo <= 0 ? 0 : (lo + S - 1) / S;
    *first = lo;
    *last = hi < O - 1 ? hi : O - 1;
}

__kernel void maxpool_backward(__global const float *dy, __global const float *arg,
                               __global float *dx, const ulong planes, const ulong H,
                               const ulong W, const ulong OH, const ulong OW, const ulong K,
                               const ulong S, const ulong P)
{
    size_t id = get_global_id(0);
    if (id >= planes * H * W)
        return;
    ulong iw = id % W, ih = (id / W) % H, plane = id / (W * H);
    long h0, h1, w0, w1;
    covering((long)ih, (long)K, (long)S, (long)P, (long)OH, &h0, &h1);
    covering((long)iw, (long)K, (long)S, (long)P, (long)OW, &w0, &w1);
    float me = (float)(ih * W + iw), acc = 0.0f;
    for (long oh = h0; oh <= h1; oh++)
        for (long ow = w0; ow <= w1; ow++) {
            ulong at = (plane * OH + (ulong)oh) * OW + (ulong)ow;
            if (arg[at] == me)
                acc += dy[at];
        }
    dx[id] = acc;
}

__kernel void avgpool_forward(__global const float *x, __global float *y, const ulong planes,
                              const ulong H, const ulong W, const ulong OH, const ulong OW,
                              const ulong K, const ulong S, const ulong P)
{
    size_t id = get_global_id(0);
    if (id >= planes * OH * OW)
        return;
    ulong ow = id % OW, oh = (id / OW) % OH, plane = id / (OW * OH);
    __global const float *xp = x + plane * H * W;
    float acc = 0.0f;
    for (ulong kh = 0; kh < K; kh++) {
        long ih = (long)(oh * S + kh) - (long)P;
        if (ih < 0 || ih >= (long)H)
            continue;
        for (ulong kw = 0; kw < K; kw++) {
            long iw = (long)(ow * S + kw) - (long)P;
            if (iw >= 0 && iw < (long)W)
                acc += xp[ih * (long)W + iw];
        }
    }
    y[id] = acc / (float)(K * K);
}

__kernel void avgpool_backward(__global const float *dy, __global float *dx,
                               const ulong planes, const ulong H, const ulong W,
                               const ulong OH, const ulong OW, const ulong K, const ulong S,
                               const ulong P)
{
    size_t id = get_global_id(0);
    if (id >= planes * H * W)
        return;
    ulong iw = id % W, ih = (id / W) % H, plane = id / (W * H);
    long h0, h1, w0, w1;
    covering((long)ih, (long)K, (long)S, (long)P, (long)OH, &h0, &h1);
    covering((long)iw, (long)K, (long)S, (long)P, (long)OW, &w0, &w1);
    float acc = 0.0f;
    for (long oh = h0; oh <= h1; oh++)
        for (long ow = w0; ow <= w1; ow++)
            acc += dy[(plane * OH + (ulong)oh) * OW + (ulong)ow];
    dx[id] = acc / (float)(K * K);
}
