/* Causal multi-head self-attention on a fused QKV tensor, without ever
 * storing the T x T scores (memory linear in T, as FlashAttention):
 *   qkv (B, T, 3C): q, k, v side by side, head h at channels h*HD of each
 *   y   (B, T, C):  head h at channels h*HD (nanoGPT's transpose + view)
 *   lse (B, H, T):  log-sum-exp of each query row's scaled scores
 * scale = 1/sqrt(HD). Query row i sees keys 0..i: the loops stop at the
 * diagonal, so nothing above it is computed.
 *
 * attn_forward: one item per (query i, head, batch), an online softmax over
 * the keys in order (running max m, sum l, output acc rescaled when m grows).
 * attn_backward_q: one item per query row; delta_i = dy_i . y_i, then
 *   p_ij = exp(s_ij - lse_i), ds_ij = p_ij (dy_i . v_j - delta_i),
 *   dq_i = scale sum_j ds_ij k_j over j = 0..i in order.
 * attn_backward_kv: one item per key row j, over queries i = j..T-1 in order:
 *   dv_j = sum_i p_ij dy_i, dk_j = scale sum_i ds_ij q_i.
 * Every sum runs in a fixed order (no atomics), so results are the same
 * bits on every run. HD is the head dimension (-DHD=...). Items past T
 * compute on row T-1 and store nothing (libclc's exp and log read a table
 * that rusticl passes as a hidden argument; they stay outside branches). */

#ifndef HD
#define HD 16
#endif

__kernel void attn_forward(__global const float *qkv, __global float *y, __global float *lse,
                           const uint T, const uint H, const float scale)
{
    uint i0 = (uint)get_global_id(0), h = (uint)get_global_id(1), b = (uint)get_global_id(2);
    uint i = min(i0, T - 1), C = H * HD, row = 3 * C;
    __global const float *q = qkv + (size_t)(b * T + i) * row + h * HD;
    float qs[HD], acc[HD];
    for (uint d = 0; d < HD; d++) {
        qs[d] = q[d] * scale;
        acc[d] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (uint j = 0; j <= i; j++) {
        __global const float *k = qkv + (size_t)(b * T + j) * row + C + h * HD;
        __global const float *v = k + C;
        float s = 0.0f;
        for (uint d = 0; d < HD; d++)
            s += qs[d] * k[d];
        float mn = fmax(m, s), corr = exp(m - mn), p = exp(s - mn);
        l = l * corr + p;
        for (uint d = 0; d < HD; d++)
            acc[d] = acc[d] * corr + p * v[d];
        m = mn;
    }
    float inv = 1.0f / l, stat = m + log(l);
    if (i0 >= T)
        return;
    __global float *out = y + (size_t)(b * T + i) * C + h * HD;
    for (uint d = 0; d < HD; d++)
        out[d] = acc[d] * inv;
    lse[(b * H + h) * T + i] = stat;
}

__kernel void attn_backward_q(__global const float *qkv, __global const float *y,
                              __global const float *dy, __global const float *lse,
                              __global float *delta, __global float *dqkv, const uint T,
                              const uint H, const float scale)
{
    uint i0 = (uint)get_global_id(0), h = (uint)get_global_id(1), b = (uint)get_global_id(2);
    uint i = min(i0, T - 1), C = H * HD, row = 3 * C;
    __global const float *q = qkv + (size_t)(b * T + i) * row + h * HD;
    __global const float *yi = y + (size_t)(b * T + i) * C + h * HD;
    __global const float *gi = dy + (size_t)(b * T + i) * C + h * HD;
    float qs[HD], g[HD], dq[HD], dl = 0.0f;
    for (uint d = 0; d < HD; d++) {
        qs[d] = q[d] * scale;
        g[d] = gi[d];
        dq[d] = 0.0f;
        dl += g[d] * yi[d];
    }
    float stat = lse[(b * H + h) * T + i];
    for (uint j = 0; j <= i; j++) {
        __global const float *k = qkv + (size_t)(b * T + j) * row + C + h * HD;
        __global const float *v = k + C;
        float s = 0.0f, dp = 0.0f;
        for (uint d = 0; d < HD; d++) {
            s += qs[d] * k[d];
            dp += g[d] * v[d];
        }
        float ds = exp(s - stat) * (dp - dl);
        for (uint d = 0; d < HD; d++)
            dq[d] += ds * k[d];
    }
    if (i0 >= T)
        return;
    __global float *out = dqkv + (size_t)(b * T + i) * row + h * HD;
    for (uint d = 0; d < HD; d++)
        out[d] = dq[d] * scale;
    delta[(b * H + h) * T + i] = dl;
}

__kernel void attn_backward_kv(__global const float *qkv, __global const float *dy,
                               __global const float *lse, __global const float *delta,
                               __global float *dqkv, const uint T, const uint H,
                               const float scale)
{
    uint j0 = (uint)get_global_id(0), h = (uint)get_global_id(1), b = (uint)get_global_id(2);
    uint j = min(j0, T - 1), C = H * HD, row = 3 * C;
    __global const float *k = qkv + (size_t)(b * T + j) * row + C + h * HD;
    __global const float *v = k + C;
    float kr[HD], vr[HD], dk[HD], dv[HD];
    for (uint d = 0; d < HD; d++) {
        kr[d] = k[d];
        vr[d] = v[d];
        dk[d] = 0.0f;
        dv[d] = 0.0f;
    }
    for (uint i = j; i < T; i++) {
        __global const float *q = qkv + (size_t)(b * T + i) * row + h * HD;
        __global const float *g = dy + (size_t)(b * T + i) * C + h * HD;
        float s = 0.0f, dp = 0.0f;
        for (uint d = 0; d < HD; d++) {
            s += q[d] * scale * kr[d];
            dp += g[d] * vr[d];
        }
        float p = exp(s - lse[(b * H + h) * T + i]);
        float ds = p * (dp - delta[(b * H + h) * T + i]);
        for (uint d = 0; d < HD; d++) {
            dv[d] += p * g[d];
            dk[d] += ds * q[d];
        }
    }
    if (j0 >= T)
        return;
    __global float *out = dqkv + (size_t)(b * T + j) * row + C + h * HD;
    for (uint d = 0; d < HD; d++) {
        out[d] = dk[d] * scale;
        out[C + d] = dv[d];
    }
}
