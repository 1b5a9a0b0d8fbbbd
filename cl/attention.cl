/* Causal multi-head self-attention on a fused QKV tensor, without ever
 * storing the T x T scores (memory linear in T, as FlashAttention):
 *   qkv (B, T, 3C): q, k, v side by side, head h at channels h*HD of each
 *   y   (B, T, C):  head h at channels h*HD (nanoGPT's transpose + view)
 *   lse (B, H, T):  log-sum-exp of each query row's scaled scores
 * scale = 1/sqrt(HD). Query row i sees keys 0..i: the loops stop at the
 * diagonal, so nothing above it is computed.
 *
 * attn_forward: one item per (RQ query rows, head, batch), an online softmax over
 * the keys in order (running max m, sum l, output acc rescaled when m grows).
 * attn_backward_q: one item per RQ query rows; delta_i = dy_i . y_i, then
 *   p_ij = exp(s_ij - lse_i), ds_ij = p_ij (dy_i . v_j - delta_i),
 *   dq_i = scale sum_j ds_ij k_j over j = 0..i in order.
 * attn_backward_kv: one item per RQ key rows j, over queries i = j..T-1 in order:
 *   dv_j = sum_i p_ij dy_i, dk_j = scale sum_i ds_ij q_i.
 * Every sum runs in a fixed order (no atomics), so results are the same
 * bits on every run. HD is the head dimension (-DHD=...); rows move in
 * vectors of 8 or 4 lanes where HD allows. Items past T
 * compute on row T-1 and store nothing (libclc's exp and log read a table
 * that rusticl passes as a hidden argument; they stay outside branches). */

#ifndef HD
#define HD 16
#endif

/* Rows of a head are HD floats, handled in vectors of VW lanes: the
 * widest of 8, 4 and 1 that divides HD (NV vectors a row). */
#if HD % 8 == 0
#define VW 8
typedef float8 vec;
#define LOADV(u, p) vload8((u), (p))
#define STOREV(v, u, p) vstore8((v), (u), (p))
#define HSUM(v) ((v).s0 + (v).s1 + (v).s2 + (v).s3 + (v).s4 + (v).s5 + (v).s6 + (v).s7)
#elif HD % 4 == 0
#define VW 4
typedef float4 vec;
#define LOADV(u, p) vload4((u), (p))
#define STOREV(v, u, p) vstore4((v), (u), (p))
#define HSUM(v) ((v).x + (v).y + (v).z + (v).w)
#else
#define VW 1
typedef float vec;
#define LOADV(u, p) ((p)[u])
#define STOREV(v, u, p) ((p)[u] = (v))
#define HSUM(v) (v)
#endif
#define NV (HD / VW)

/* a . p[0..HD) for a held in NV vectors. */
static float dot_row(const vec *a, __global const float *p)
{
    vec s = 0.0f;
    for (uint u = 0; u < NV; u++)
        s += a[u] * LOADV(u, p);
    return HSUM(s);
}

/* RQ query rows per item (-DRQ=..., a register tile): rows base .. base +
 * RQ - 1 share each load of a key and value row; row r takes key j only
 * where j <= base + r (past it, its update is by exp(0) = 1 and p = 0:
 * the same bits), so each row's results are those of RQ = 1. */
#ifndef RQ
#define RQ 1
#endif

__kernel void attn_forward(__global const float *qkv, __global float *y, __global float *lse,
                           const uint T, const uint H, const float scale)
{
    uint g = (uint)get_global_id(0), h = (uint)get_global_id(1), b = (uint)get_global_id(2);
    uint base = g * RQ, C = H * HD, row = 3 * C, last = min(base + RQ - 1, T - 1);
    vec qs[RQ][NV], acc[RQ][NV];
    float m[RQ], l[RQ];
    for (uint r = 0; r < RQ; r++) {
        __global const float *q = qkv + (size_t)(b * T + min(base + r, T - 1)) * row + h * HD;
        for (uint u = 0; u < NV; u++) {
            qs[r][u] = LOADV(u, q) * scale;
            acc[r][u] = 0.0f;
        }
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }
    for (uint j = 0; j <= last; j++) {
        __global const float *k = qkv + (size_t)(b * T + j) * row + C + h * HD;
        __global const float *v = k + C;
        vec kr[NV], vr[NV];
        for (uint u = 0; u < NV; u++) {
            kr[u] = LOADV(u, k);
            vr[u] = LOADV(u, v);
        }
        for (uint r = 0; r < RQ; r++) {
            int keep = j <= base + r; /* else corr = 1, p = 0: the row is unchanged */
            vec d = 0.0f;
            for (uint u = 0; u < NV; u++)
                d += qs[r][u] * kr[u];
            float s = HSUM(d);
            float mn = keep ? fmax(m[r], s) : m[r], corr = exp(m[r] - mn);
            float e = exp(s - mn), p = keep ? e : 0.0f;
            l[r] = l[r] * corr + p;
            for (uint u = 0; u < NV; u++)
                acc[r][u] = acc[r][u] * corr + p * vr[u];
            m[r] = mn;
        }
    }
    for (uint r = 0; r < RQ; r++) {
        float inv = 1.0f / l[r], stat = m[r] + log(l[r]);
        uint i = base + r;
        if (i >= T)
            continue;
        __global float *out = y + (size_t)(b * T + i) * C + h * HD;
        for (uint u = 0; u < NV; u++)
            STOREV(acc[r][u] * inv, u, out);
        lse[(b * H + h) * T + i] = stat;
    }
}

__kernel void attn_backward_q(__global const float *qkv, __global const float *y,
                              __global const float *dy, __global const float *lse,
                              __global float *delta, __global float *dqkv, const uint T,
                              const uint H, const float scale)
{
    uint g0 = (uint)get_global_id(0), h = (uint)get_global_id(1), b = (uint)get_global_id(2);
    uint base = g0 * RQ, C = H * HD, row = 3 * C, last = min(base + RQ - 1, T - 1);
    vec qs[RQ][NV], g[RQ][NV], dq[RQ][NV];
    float dl[RQ], stat[RQ];
    for (uint r = 0; r < RQ; r++) {
        uint i = min(base + r, T - 1);
        __global const float *q = qkv + (size_t)(b * T + i) * row + h * HD;
        __global const float *yi = y + (size_t)(b * T + i) * C + h * HD;
        __global const float *gi = dy + (size_t)(b * T + i) * C + h * HD;
        for (uint u = 0; u < NV; u++) {
            qs[r][u] = LOADV(u, q) * scale;
            g[r][u] = LOADV(u, gi);
            dq[r][u] = 0.0f;
        }
        dl[r] = dot_row(g[r], yi);
        stat[r] = lse[(b * H + h) * T + i];
    }
    for (uint j = 0; j <= last; j++) {
        __global const float *k = qkv + (size_t)(b * T + j) * row + C + h * HD;
        __global const float *v = k + C;
        vec kr[NV], vr[NV];
        for (uint u = 0; u < NV; u++) {
            kr[u] = LOADV(u, k);
            vr[u] = LOADV(u, v);
        }
        for (uint r = 0; r < RQ; r++) { /* past the diagonal ds = 0: dq unchanged */
            vec s = 0.0f, t = 0.0f;
            for (uint u = 0; u < NV; u++) {
                s += qs[r][u] * kr[u];
                t += g[r][u] * vr[u];
            }
            float e = exp(HSUM(s) - stat[r]);
            float ds = j <= base + r ? e * (HSUM(t) - dl[r]) : 0.0f;
            for (uint u = 0; u < NV; u++)
                dq[r][u] += ds * kr[u];
        }
    }
    for (uint r = 0; r < RQ; r++) {
        uint i = base + r;
        if (i >= T)
            continue;
        __global float *out = dqkv + (size_t)(b * T + i) * row + h * HD;
        for (uint u = 0; u < NV; u++)
            STOREV(dq[r][u] * scale, u, out);
        delta[(b * H + h) * T + i] = dl[r];
    }
}

__kernel void attn_backward_kv(__global const float *qkv, __global const float *dy,
                               __global const float *lse, __global const float *delta,
                               __global float *dqkv, const uint T, const uint H,
                               const float scale)
{
    uint g0 = (uint)get_global_id(0), h = (uint)get_global_id(1), b = (uint)get_global_id(2);
    uint base = min(g0 * RQ, T - 1), C = H * HD, row = 3 * C;
    vec ks[RQ][NV], vr[RQ][NV], dk[RQ][NV], dv[RQ][NV];
    for (uint r = 0; r < RQ; r++) {
        __global const float *k = qkv + (size_t)(b * T + min(base + r, T - 1)) * row + C + h * HD;
        __global const float *v = k + C;
        for (uint u = 0; u < NV; u++) {
            ks[r][u] = LOADV(u, k) * scale; /* q . (k scale) = (q scale) . k up to rounding */
            vr[r][u] = LOADV(u, v);
            dk[r][u] = 0.0f;
            dv[r][u] = 0.0f;
        }
    }
    for (uint i = base; i < T; i++) {
        __global const float *q = qkv + (size_t)(b * T + i) * row + h * HD;
        __global const float *g = dy + (size_t)(b * T + i) * C + h * HD;
        vec qr[NV], gr[NV];
        for (uint u = 0; u < NV; u++) {
            qr[u] = LOADV(u, q);
            gr[u] = LOADV(u, g);
        }
        float stat = lse[(b * H + h) * T + i], dl = delta[(b * H + h) * T + i];
        for (uint r = 0; r < RQ; r++) { /* before its diagonal, p = ds = 0: unchanged */
            vec s = 0.0f, t = 0.0f;
            for (uint u = 0; u < NV; u++) {
                s += ks[r][u] * qr[u];
                t += vr[r][u] * gr[u];
            }
            float e = exp(HSUM(s) - stat);
            int keep = i >= base + r;
            float p = keep ? e : 0.0f, ds = keep ? e * (HSUM(t) - dl) : 0.0f;
            for (uint u = 0; u < NV; u++) {
                dv[r][u] += p * gr[u];
                dk[r][u] += ds * qr[u];
            }
        }
    }
    for (uint r = 0; r < RQ; r++) {
        uint j = g0 * RQ + r;
        if (j >= T)
            continue;
        __global float *out = dqkv + (size_t)(b * T + j) * row + C + h * HD;
        for (uint u = 0; u < NV; u++) {
            STOREV(dk[r][u] * scale, u, out);
            STOREV(dv[r][u], u, out + C);
        }
    }
}

/* Decoding (batch 1) with a cache of keys and values, (positions, 2C): row
 * p holds position p's k (channels h*HD of the first C) and v (of the
 * second C). attn_cache_store writes the T new rows' k and v at rows
 * at .. at+T-1; attn_decode then runs the forward's online softmax for new
 * row r (position at + r) over cache rows 0 .. at + r, in the same order
 * and with the same operations as attn_forward. */
__kernel void attn_cache_store(__global const float *qkv, __global float *cache, const uint at,
                               const uint C)
{
    uint c = (uint)get_global_id(0), r = (uint)get_global_id(1);
    cache[(size_t)(at + r) * 2 * C + c] = qkv[(size_t)r * 3 * C + C + c];
}

__kernel void attn_decode(__global const float *qkv, __global const float *cache,
                          __global float *y, const uint at, const uint H, const float scale)
{
    uint r = (uint)get_global_id(0), h = (uint)get_global_id(1), C = H * HD;
    __global const float *q = qkv + (size_t)r * 3 * C + h * HD;
    vec qs[NV], acc[NV];
    for (uint u = 0; u < NV; u++) {
        qs[u] = LOADV(u, q) * scale;
        acc[u] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (uint j = 0; j <= at + r; j++) {
        __global const float *k = cache + (size_t)j * 2 * C + h * HD;
        __global const float *v = k + C;
        float s = dot_row(qs, k);
        float mn = fmax(m, s), corr = exp(m - mn), p = exp(s - mn);
        l = l * corr + p;
        for (uint u = 0; u < NV; u++)
            acc[u] = acc[u] * corr + p * LOADV(u, v);
        m = mn;
    }
    float inv = 1.0f / l;
    __global float *out = y + (size_t)r * C + h * HD;
    for (uint u = 0; u < NV; u++)
        STOREV(acc[u] * inv, u, out);
}
