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

/* ---- one window over each whole plane (a global average pool: K = H = W,
 * no padding): the operations of avgpool_forward and avgpool_backward,
 * so the same bits, without their window arithmetic an item. */

/* y[plane] = the plane's HW values summed in order, over HW (= K K). */
__kernel void avgpool_global(__global const float *x, __global float *y, const uint HW)
{
    uint plane = get_global_id(0);
    __global const float *xp = x + (size_t)plane * HW;
    float acc = 0.0f;
    for (uint i = 0; i < HW; i++)
        acc += xp[i];
    y[plane] = acc / (float)HW;
}

/* Over (HW, planes): every value of a plane gets its window's share. */
__kernel void avgpool_global_backward(__global const float *dy, __global float *dx)
{
    uint i = get_global_id(0), plane = get_global_id(1), HW = get_global_size(0);
    dx[(size_t)plane * HW + i] = (0.0f + dy[plane]) / (float)HW;
}

/* ---- 2x2 windows of stride 2 without padding, for drivers that run a
 * work-group as a loop: one item per plane at a time (planes p, p + items,
 * ...), N = 8 (or 4) windows in a step from two rows of 2N inputs, whose
 * even and odd lanes are the windows' left and right columns. The taps are
 * taken in the same row-major order as above, so the results are the same
 * bit for bit. A row's last step overlaps the one before where OW is not a
 * multiple of N (writing the same values twice); rows of fewer than four
 * windows go one window at a time. An odd last row or column belongs to no
 * window. */

#define LANES8 (int8)(0, 1, 2, 3, 4, 5, 6, 7)
#define LANES4 (int4)(0, 1, 2, 3)

/* Windows per step for rows of OW windows. */
static uint pool2_step(uint OW)
{
    return OW >= 8 ? 8 : OW >= 4 ? 4 : 1;
}

/* Runs STEP(N, 2N) for the windows ow .. ow + N of every row (oh) of a
 * plane, then STEP1 for those of short rows, one at a time. */
#define FOR_EACH_POOL2_STEP(STEP, STEP1)                 \
    for (uint oh = 0; oh < OH; oh++) {                   \
        uint step = pool2_step(OW);                      \
        for (uint i = 0; i < OW; i += step) {            \
            uint ow = min(i, OW - step);                 \
            if (step == 8)                               \
                STEP(8, 16)                              \
            else if (step == 4)                          \
                STEP(4, 8)                               \
            else                                         \
                STEP1                                    \
        }                                                \
    }

/* For maxpool: tap v at offset o of the windows replaces the best so far
 * where it is larger or NaN, as maxpool_forward does. */
#define MAX2_TAKE(N, v, o)                               \
    {                                                    \
        int##N take = (v) > best | (v) != (v);           \
        best = select(best, (v), take);                  \
        off = select(off, (int##N)(o), take);            \
    }

#define MAX2_WINDOWS(N, N2)                                                     \
    {                                                                           \
        float##N2 a = vload##N2(0, xp + 2 * oh * W + 2 * ow);                   \
        float##N2 b = vload##N2(0, xp + (2 * oh + 1) * W + 2 * ow);             \
        float##N best = a.even;                                                 \
        int##N off = 0;                                                         \
        MAX2_TAKE(N, a.odd, 1)                                                  \
        MAX2_TAKE(N, b.even, (int)W)                                            \
        MAX2_TAKE(N, b.odd, (int)W + 1)                                         \
        vstore##N(best, 0, yp + oh * OW + ow);                                  \
        off += (int)(2 * oh * W + 2 * ow) + 2 * LANES##N;                       \
        vstore##N(convert_float##N(off), 0, ap + oh * OW + ow);                 \
    }

#define MAX1_TAKE(v, o)                                  \
    {                                                    \
        float t = (v);                                   \
        int take = t > best || t != t;                   \
        best = take ? t : best;                          \
        off = take ? (o) : off;                          \
    }

#define MAX1_WINDOW                                                             \
    {                                                                           \
        __global const float *r0 = xp + 2 * oh * W + 2 * ow, *r1 = r0 + W;      \
        float best = r0[0];                                                     \
        int off = 0;                                                            \
        MAX1_TAKE(r0[1], 1)                                                     \
        MAX1_TAKE(r1[0], (int)W)                                                \
        MAX1_TAKE(r1[1], (int)W + 1)                                            \
        yp[oh * OW + ow] = best;                                                \
        ap[oh * OW + ow] = (float)((int)(2 * oh * W + 2 * ow) + off);           \
    }

__kernel void maxpool2_planes(__global const float *x, __global float *y,
                              __global float *arg, const uint planes, const uint H,
                              const uint W)
{
    uint OH = H / 2, OW = W / 2;
    FOR_EACH_PLANE(p, planes) {
        __global const float *xp = x + (size_t)p * H * W;
        __global float *yp = y + (size_t)p * OH * OW, *ap = arg + (size_t)p * OH * OW;
        FOR_EACH_POOL2_STEP(MAX2_WINDOWS, MAX1_WINDOW)
    }
}

/* maxpool backward: dy to each window's winner, 0 to its other inputs. */
#define MAX2_SCATTER(N, N2)                                                     \
    {                                                                           \
        float##N g = vload##N(0, dyp + oh * OW + ow), zero = 0.0f;              \
        int##N off = convert_int##N(vload##N(0, ap + oh * OW + ow)) -           \
                     ((int)(2 * oh * W + 2 * ow) + 2 * LANES##N);               \
        float##N2 top, bottom;                                                  \
        top.even = select(zero, g, off == 0);                                   \
        top.odd = select(zero, g, off == 1);                                    \
        bottom.even = select(zero, g, off == (int)W);                           \
        bottom.odd = select(zero, g, off == (int)W + 1);                        \
        vstore##N2(top, 0, dxp + 2 * oh * W + 2 * ow);                          \
        vstore##N2(bottom, 0, dxp + (2 * oh + 1) * W + 2 * ow);                 \
    }

#define MAX1_SCATTER                                                            \
    {                                                                           \
        __global float *r0 = dxp + 2 * oh * W + 2 * ow, *r1 = r0 + W;           \
        float g = dyp[oh * OW + ow];                                            \
        int off = (int)ap[oh * OW + ow] - (int)(2 * oh * W + 2 * ow);           \
        r0[0] = off == 0 ? g : 0.0f;                                            \
        r0[1] = off == 1 ? g : 0.0f;                                            \
        r1[0] = off == (int)W ? g : 0.0f;                                       \
        r1[1] = off == (int)W + 1 ? g : 0.0f;                                   \
    }

__kernel void maxpool2_backward_planes(__global const float *dy, __global const float *arg,
                                       __global float *dx, const uint planes, const uint H,
                                       const uint W)
{
    uint OH = H / 2, OW = W / 2;
    FOR_EACH_PLANE(p, planes) {
        __global float *dxp = dx + (size_t)p * H * W;
        __global const float *dyp = dy + (size_t)p * OH * OW, *ap = arg + (size_t)p * OH * OW;
        FOR_EACH_POOL2_STEP(MAX2_SCATTER, MAX1_SCATTER)
    }
}

/* avgpool: the four taps summed in row-major order, then / 4. */
#define AVG2_WINDOWS(N, N2)                                                     \
    {                                                                           \
        float##N2 a = vload##N2(0, xp + 2 * oh * W + 2 * ow);                   \
        float##N2 b = vload##N2(0, xp + (2 * oh + 1) * W + 2 * ow);             \
        vstore##N((((a.even + a.odd) + b.even) + b.odd) / 4.0f, 0, yp + oh * OW + ow); \
    }

#define AVG1_WINDOW                                                             \
    {                                                                           \
        __global const float *r0 = xp + 2 * oh * W + 2 * ow, *r1 = r0 + W;      \
        yp[oh * OW + ow] = (((r0[0] + r0[1]) + r1[0]) + r1[1]) / 4.0f;          \
    }

__kernel void avgpool2_planes(__global const float *x, __global float *y, const uint planes,
                              const uint H, const uint W)
{
    uint OH = H / 2, OW = W / 2;
    FOR_EACH_PLANE(p, planes) {
        __global const float *xp = x + (size_t)p * H * W;
        __global float *yp = y + (size_t)p * OH * OW;
        FOR_EACH_POOL2_STEP(AVG2_WINDOWS, AVG1_WINDOW)
    }
}

/* avgpool backward: dy / 4 to each of a window's inputs. */
#define AVG2_SPREAD(N, N2)                                                      \
    {                                                                           \
        float##N g = vload##N(0, dyp + oh * OW + ow) / 4.0f;                    \
        float##N2 both;                                                         \
        both.even = g;                                                          \
        both.odd = g;                                                           \
        vstore##N2(both, 0, dxp + 2 * oh * W + 2 * ow);                         \
        vstore##N2(both, 0, dxp + (2 * oh + 1) * W + 2 * ow);                   \
    }

#define AVG1_SPREAD                                                             \
    {                                                                           \
        __global float *r0 = dxp + 2 * oh * W + 2 * ow, *r1 = r0 + W;           \
        r0[0] = r0[1] = r1[0] = r1[1] = dyp[oh * OW + ow] / 4.0f;               \
    }

__kernel void avgpool2_backward_planes(__global const float *dy, __global float *dx,
                                       const uint planes, const uint H, const uint W)
{
    uint OH = H / 2, OW = W / 2;
    FOR_EACH_PLANE(p, planes) {
        __global float *dxp = dx + (size_t)p * H * W;
        __global const float *dyp = dy + (size_t)p * OH * OW;
        FOR_EACH_POOL2_STEP(AVG2_SPREAD, AVG1_SPREAD)
    }
}
