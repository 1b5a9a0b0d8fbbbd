/* im2col and col2im for conv2d over a whole batch, so that one GEMM
 * covers every sample. x is (N, C, H, W); the column matrix is
 * (C*K*K, N*OH*OW): row (c, kh, kw), column (n, oh, ow).
 *   im2col: col[row][col] = x[n, c, oh*S - P + kh*D, ow*S - P + kw*D] or 0
 *   col2im: dx[n, c, ih, iw] = sum over the (kh, kw) whose window covers
 *           (ih, iw) of dcol; a gather, so no atomics and a fixed order. */

__kernel void im2col(__global const float *x, __global float *col, const ulong N,
                     const ulong C, const ulong H, const ulong W, const ulong OH,
                     const ulong OW, const ulong K, const ulong S, const ulong P,
                     const ulong D)
{
    size_t id = get_global_id(0);
    ulong NP = N * OH * OW;
    if (id >= C * K * K * NP)
        return;
    ulong row = id / NP, column = id % NP;
    ulong n = column / (OH * OW), p = column % (OH * OW);
    ulong oh = p / OW, ow = p % OW;
    ulong c = row / (K * K), kh = (row / K) % K, kw = row % K;
    long ih = (long)(oh * S + kh * D) - (long)P;
    long iw = (long)(ow * S + kw * D) - (long)P;
    float v = 0.0f;
    if (ih >= 0 && ih < (long)H && iw >= 0 && iw < (long)W)
        v = x[((n * C + c) * H + (ulong)ih) * W + (ulong)iw];
    col[id] = v;
}

/* The output index along one axis whose window tap k lands on input i, or
 * -1 when none does. */
static long tap_origin(long i, long k, long S, long P, long D, long O)
{
    long t = i + P - k * D;
    if (t < 0 || t % S != 0)
        return -1;
    t /= S;
    return t < O ? t : -1;
}

__kernel void col2im(__global const float *dcol, __global float *dx, const ulong N,
                     const ulong C, const ulong H, const ulong W, const ulong OH,
                     const ulong OW, const ulong K, const ulong S, const ulong P,
                     const ulong D)
{
    size_t id = get_global_id(0);
    if (id >= N * C * H * W)
        return;
    ulong iw = id % W, ih = (id / W) % H, c = (id / (W * H)) % C, n = id / (W * H * C);
    ulong NP = N * OH * OW;
    float acc = 0.0f;
    for (ulong kh = 0; kh < K; kh++) {
        long oh = tap_origin((long)ih, (long)kh, (long)S, (long)P, (long)D, (long)OH);
        if (oh < 0)
            continue;
        for (ulong kw = 0; kw < K; kw++) {
            long ow = tap_origin((long)iw, (long)kw, (long)S, (long)P, (long)D, (long)OW);
            if (ow < 0)
                continue;
            ulong row = (c * K + kh) * K + kw;
            acc += dcol[row * NP + (n * OH + (ulong)oh) * OW + (ulong)ow];
        }
    }
    dx[id] = acc;
}
