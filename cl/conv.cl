/* im2col and col2im for conv2d over a whole batch, so that one GEMM
 * covers every sample. x is (N, C, H, W); the column matrix is
 * (C*K*K, N*OH*OW): row (c, kh, kw), column (n, oh, ow).
 *   im2col, over (OW, OH, N): for every row,
 *           col[row][n, oh, ow] = x[n, c, oh*S - P + kh*D, ow*S - P + kw*D] or 0
 *   col2im, over (W, H, N*C): dx[n, c, ih, iw] = sum over the taps (kh, kw)
 *           whose window covers (ih, iw) of dcol; a gather, so no atomics
 *           and a fixed order.
 *   flip_weights: the weights of the convolution that gives a stride-1
 *           convolution's input gradient. */

__kernel void im2col(__global const float *x, __global float *col, const uint C,
                     const uint H, const uint W, const uint K, const uint S, const uint P,
                     const uint D)
{
    uint ow = get_global_id(0), oh = get_global_id(1), n = get_global_id(2);
    uint OW = get_global_size(0), OH = get_global_size(1), N = get_global_size(2);
    uint NP = N * OH * OW, column = (n * OH + oh) * OW + ow, row = 0;
    for (uint c = 0; c < C; c++) {
        __global const float *plane = x + (n * C + c) * H * W;
        for (uint kh = 0; kh < K; kh++) {
            int ih = (int)(oh * S + kh * D) - (int)P;
            for (uint kw = 0; kw < K; kw++, row++) {
                int iw = (int)(ow * S + kw * D) - (int)P;
                int inside = ih >= 0 && ih < (int)H && iw >= 0 && iw < (int)W;
                col[row * NP + column] = inside ? plane[ih * (int)W + iw] : 0.0f;
            }
        }
    }
}

/* The output index along one axis whose window tap k lands on input i, or
 * -1 when none does. */
static int tap_origin(int i, int k, int S, int P, int D, int O)
{
    int t = i + P - k * D;
    if (t < 0 || t % S != 0)
        return -1;
    t /= S;
    return t < O ? t : -1;
}

__kernel void col2im(__global const float *dcol, __global float *dx, const uint N,
                     const uint C, const uint OH, const uint OW, const uint K, const uint S,
                     const uint P, const uint D)
{
    uint iw = get_global_id(0), ih = get_global_id(1), nc = get_global_id(2);
    uint W = get_global_size(0), H = get_global_size(1);
    uint n = nc / C, c = nc % C, NP = N * OH * OW;
    float acc = 0.0f;
    for (uint kh = 0; kh < K; kh++) {
        int oh = tap_origin((int)ih, (int)kh, (int)S, (int)P, (int)D, (int)OH);
        if (oh < 0)
            continue;
        for (uint kw = 0; kw < K; kw++) {
            int ow = tap_origin((int)iw, (int)kw, (int)S, (int)P, (int)D, (int)OW);
            if (ow < 0)
                continue;
            uint row = (c * K + kh) * K + kw;
            acc += dcol[row * NP + (n * OH + (uint)oh) * OW + (uint)ow];
        }
    }
    dx[(nc * H + ih) * W + iw] = acc;
}

/* The first ow >= 0 with ow S + shift >= 0. */
static uint first_inside(int shift, uint S)
{
    return shift >= 0 ? 0u : (uint)(-shift + (int)S - 1) / S;
}

/* col2im for CPUs, one item per plane (n, c) of dx: the plane is zeroed,
 * then every tap adds its rows of dcol, contiguous in ow. The taps are
 * added in the same order as col2im's, so the sums are the same bit for
 * bit; with few, long items the loops stay sequential in memory. */
__kernel void col2im_planes(__global const float *dcol, __global float *dx, const uint N,
                            const uint C, const uint H, const uint W, const uint OH,
                            const uint OW, const uint K, const uint S, const uint P,
                            const uint D)
{
    uint nc = get_global_id(0), n = nc / C, c = nc % C;
    size_t NP = (size_t)N * OH * OW;
    __global float *plane = dx + (size_t)nc * H * W;
    for (uint i = 0; i < H * W; i++)
        plane[i] = 0.0f;
    for (uint kh = 0; kh < K; kh++)
        for (uint kw = 0; kw < K; kw++) {
            __global const float *row = dcol + ((c * K + kh) * K + kw) * NP + (size_t)n * OH * OW;
            int shift = (int)(kw * D) - (int)P; /* iw = ow S + shift */
            uint lo = first_inside(shift, S), hi = min(OW, first_inside(shift - (int)W, S));
            for (uint oh = 0; oh < OH; oh++) {
                int ih = (int)(oh * S + kh * D) - (int)P;
                if (ih < 0 || ih >= (int)H)
                    continue;
                int at = ih * (int)W + shift; /* + ow S */
                __global const float *from = row + oh * OW;
                if (S == 1)
                    for (uint ow = lo; ow < hi; ow++)
                        plane[at + (int)ow] += from[ow];
                else
                    for (uint ow = lo; ow < hi; ow++)
                        plane[at + (int)(ow * S)] += from[ow];
            }
        }
}

/* wf (C, O, K, K) from w (O, C, K, K), every kernel turned by half a turn:
 * the input gradient of a stride-1 convolution is the convolution of its
 * output gradient with wf (padding D (K - 1) - P). Over (K K, O, C): tap t
 * = kh K + kw of kernel (o, c) goes to tap K K - 1 - t, no division (four
 * divisions an item took 0.7 ms for 128 x 128 3 x 3 weights). */
__kernel void flip_weights(__global const float *w, __global float *wf)
{
    uint t = get_global_id(0), o = get_global_id(1), c = get_global_id(2);
    uint KK = get_global_size(0), O = get_global_size(1), C = get_global_size(2);
    wf[(c * O + o) * KK + (KK - 1 - t)] = w[(o * C + c) * KK + t];
}
