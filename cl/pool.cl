/* Max and average pooling over square windows, NCHW, with padding.
 * x (N*C planes of H x W), y (N*C planes of OH x OW).
 *   maxpool_forward: y = max over the window (padding never wins, as
 *                    PyTorch pads with -inf); arg = the winner's index
 *                    ih*W + iw in its plane, stored as a float
 *   maxpool_backward: dx[i] = sum of dy over the windows whose arg is i
 *   avgpool_*: the window sum / (K*K), padding counted (PyTorch's default
 *              count_include_pad=True)
 * Backward passes gather over the windows covering each input, so they
 * need no atomics and sum in a fixed order. Forward runs over the range
 * (OW, OH, planes), backward over (W, H, planes). */

/* Runs BODY for every input (ih, iw) of window (oh, ow) that lies inside
 * the H x W plane, in row-major order. */
#define FOR_EACH_IN_WINDOW(BODY)                                  \
    for (uint kh = 0; kh < K; kh++) {                             \
        int ih = (int)(oh * S + kh) - (int)P;                     \
        if (ih < 0 || ih >= (int)H)                               \
            continue;                                             \
        for (uint kw = 0; kw < K; kw++) {                         \
            int iw = (int)(ow * S + kw) - (int)P;                 \
            if (iw >= 0 && iw < (int)W) {                         \
                BODY                                              \
            }                                                     \
        }                                                         \
    }

__kernel void maxpool_forward(__global const float *x, __global float *y,
                              __global float *arg, const uint H, const uint W, const uint K,
                              const uint S, const uint P)
{
    uint ow = get_global_id(0), oh = get_global_id(1), plane = get_global_id(2);
    uint OW = get_global_size(0), OH = get_global_size(1);
    uint id = (plane * OH + oh) * OW + ow;
    __global const float *xp = x + plane * H * W;
    float best = -INFINITY;
    int best_at = -1;
    FOR_EACH_IN_WINDOW(float v = xp[ih * (int)W + iw];
                       if (v > best || best_at < 0 || isnan(v)) {
                           best = v;
                           best_at = ih * (int)W + iw;
                       })
    y[id] = best;
    arg[id] = (float)best_at;
}

/* First and last window index along one axis whose window covers i. */
static void covering(int i, int K, int S, int P, int O, int *first, int *last)
{
    int hi = (i + P) / S;
    int lo = i + P - K + 1;
    lo = lo <= 0 ? 0 : (lo + S - 1) / S;
    *first = lo;
    *last = hi < O - 1 ? hi : O - 1;
}

/* Runs BODY for every window (oh, ow) that covers input (ih, iw), with at
 * its index in the output (OH x OW planes), in row-major order. */
#define FOR_EACH_COVERING_WINDOW(BODY)                                  \
    int h0, h1, w0, w1;                                                 \
    covering((int)ih, (int)K, (int)S, (int)P, (int)OH, &h0, &h1);       \
    covering((int)iw, (int)K, (int)S, (int)P, (int)OW, &w0, &w1);       \
    for (int oh = h0; oh <= h1; oh++)                                   \
        for (int ow = w0; ow <= w1; ow++) {                             \
            uint at = (plane * OH + (uint)oh) * OW + (uint)ow;          \
            BODY                                                        \
        }

__kernel void maxpool_backward(__global const float *dy, __global const float *arg,
                               __global float *dx, const uint OH, const uint OW, const uint K,
                               const uint S, const uint P)
{
    uint iw = get_global_id(0), ih = get_global_id(1), plane = get_global_id(2);
    uint W = get_global_size(0), H = get_global_size(1);
    uint id = (plane * H + ih) * W + iw;
    float me = (float)(ih * W + iw), acc = 0.0f;
    FOR_EACH_COVERING_WINDOW(if (arg[at] == me) acc += dy[at];)
    dx[id] = acc;
}

/* maxpool_backward when windows do not overlap (stride >= size), over the
 * output range (OW, OH, planes): each window writes its own inputs, dy to
 * the winner and 0 to the rest, so every input is written once and the
 * pass reads only dy and arg. Inputs no window covers are zeroed before. */
__kernel void maxpool_backward_disjoint(__global const float *dy, __global const float *arg,
                                        __global float *dx, const uint H, const uint W,
                                        const uint K, const uint S, const uint P)
{
    uint ow = get_global_id(0), oh = get_global_id(1), plane = get_global_id(2);
    uint OW = get_global_size(0), OH = get_global_size(1);
    uint id = (plane * OH + oh) * OW + ow;
    int winner = (int)arg[id];
    float g = dy[id];
    __global float *dxp = dx + plane * H * W;
    FOR_EACH_IN_WINDOW(dxp[ih * (int)W + iw] = ih * (int)W + iw == winner ? g : 0.0f;)
}

__kernel void avgpool_forward(__global const float *x, __global float *y, const uint H,
                              const uint W, const uint K, const uint S, const uint P)
{
    uint ow = get_global_id(0), oh = get_global_id(1), plane = get_global_id(2);
    uint OW = get_global_size(0), OH = get_global_size(1);
    uint id = (plane * OH + oh) * OW + ow;
    __global const float *xp = x + plane * H * W;
    float acc = 0.0f;
    FOR_EACH_IN_WINDOW(acc += xp[ih * (int)W + iw];)
    y[id] = acc / (float)(K * K);
}

__kernel void avgpool_backward(__global const float *dy, __global float *dx, const uint OH,
                               const uint OW, const uint K, const uint S, const uint P)
{
    uint iw = get_global_id(0), ih = get_global_id(1), plane = get_global_id(2);
    uint W = get_global_size(0), H = get_global_size(1);
    uint id = (plane * H + ih) * W + iw;
    float acc = 0.0f;
    FOR_EACH_COVERING_WINDOW(acc += dy[at];)
    dx[id] = acc / (float)(K * K);
}
