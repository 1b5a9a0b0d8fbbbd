/* Causal attention where work-groups run as loops (PoCL's CPUs): the
 * kernels, arguments and results of cl/attention.cl's attn_forward,
 * attn_backward_q and attn_backward_kv, with rows in the lanes of a vector.
 *
 * An item takes LANES rows of one head, one a lane: query rows
 * (attn_forward, attn_backward_q) or key rows (attn_backward_kv). It holds
 * their HD channels transposed, channel d of every lane in one vector
 * (moved in and out as LANES x LANES blocks transposed in registers), and
 * walks the other side's rows KC at a time. A row of the other side is read
 * as scalars, each multiplying every lane, so a score is HD lane-wise fmas
 * and the softmax's max, exp and sum are lane-wise too: no horizontal sums
 * and no shuffles, and a chunk's scores, probabilities and products stay in
 * registers like a GEMM's tile.
 *
 * Each lane's sums run over the other side's rows in order, as chains of
 * fmas, and the forward's chunks start at key 0, so a lane computes the
 * same operations whatever LANES is: every width gives the same bits
 * (tests/test_gpt.c). A lane's masked rows (past its diagonal, up to the
 * item's last) are read and weighed 0, which adds exactly 0 for finite
 * values; an infinity or NaN there gives NaN, as PyTorch's unfused
 * softmax(...) @ v does. exp is math.cl's, the same operations on every
 * width; log and the division run once a row, on scalars. Items past T
 * compute on row T - 1 and store nothing. Built with math.cl before it
 * ("math.cl+attention_lanes.cl"), -DHD=... and -DLANES=1, 2, 4, 8 or 16. */

#define INLINE static inline __attribute__((always_inline))

#ifndef HD
#define HD 16
#endif
#ifndef LANES
#define LANES 16
#endif

/* lvec: a float a lane; lint: the int vector its comparisons give */
#if LANES == 16
#define LVEC float16
#define LINT int16
#define LSTEPS ((int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))
#define LLOAD(p) vload16(0, (p))
#define LSTORE(v, p) vstore16((v), 0, (p))
#elif LANES == 8
#define LVEC float8
#define LINT int8
#define LSTEPS ((int8)(0, 1, 2, 3, 4, 5, 6, 7))
#define LLOAD(p) vload8(0, (p))
#define LSTORE(v, p) vstore8((v), 0, (p))
#elif LANES == 4
#define LVEC float4
#define LINT int4
#define LSTEPS ((int4)(0, 1, 2, 3))
#define LLOAD(p) vload4(0, (p))
#define LSTORE(v, p) vstore4((v), 0, (p))
#elif LANES == 2
#define LVEC float2
#define LINT int2
#define LSTEPS ((int2)(0, 1))
#define LLOAD(p) vload2(0, (p))
#define LSTORE(v, p) vstore2((v), 0, (p))
#elif LANES == 1
#define LVEC float
#define LINT int
#define LSTEPS 0
#define LLOAD(p) ((p)[0])
#define LSTORE(v, p) ((p)[0] = (v))
#else
#error "LANES is 1, 2, 4, 8 or 16"
#endif
typedef LVEC lvec;
typedef LINT lint;
MATH_EXP(exp_lanes, LVEC, LINT)

/* Rows of the other side a step: a chunk's scores and probabilities are
 * 2 KC vectors in registers. */
#define KC 8

/* Items move their rows in and out of lanes as LANES x LANES blocks
 * transposed in registers, where HD is a multiple of LANES (else value by
 * value, through memory: at nanoGPT's shape that took half of attention's
 * time). */
#if LANES >= 4 && HD % LANES == 0
#define BLOCKS 1
#if LANES == 16
#define LANES_LOG2 4
#elif LANES == 8
#define LANES_LOG2 3
#else
#define LANES_LOG2 2
#endif

/* m[r] (r < LANES, a row each) becomes its transpose: log2 LANES rounds of
 * m'[j] = (m[2j].even, m[2j + 1].even), m'[j + LANES / 2] = (m[2j].odd,
 * m[2j + 1].odd), each of which moves value (r, c) to (c_0 LANES / 2 +
 * r / 2, r_0 LANES / 2 + c / 2) (r_0, c_0: the low bits); after log2 LANES
 * rounds every bit of c is in the row, every bit of r in the column. */
INLINE void transpose_lanes(lvec *m)
{
    _Pragma("unroll") for (uint round = 0; round < LANES_LOG2; round++) {
        lvec t[LANES];
        _Pragma("unroll") for (uint j = 0; j < LANES / 2; j++) {
            t[j] = (lvec)(m[2 * j].even, m[2 * j + 1].even);
            t[j + LANES / 2] = (lvec)(m[2 * j].odd, m[2 * j + 1].odd);
        }
        _Pragma("unroll") for (uint j = 0; j < LANES; j++) m[j] = t[j];
    }
}
#else
#define BLOCKS 0
#endif

/* Row i's first HD values (rows stride apart from p) times f, for the
 * rows r0 .. r0 + LANES - 1 (past n - 1: row n - 1): t[d] holds channel d
 * of every lane. */
INLINE void gather(lvec *t, __global const float *p, uint stride, uint r0, uint n, float f)
{
#if BLOCKS
    for (uint d0 = 0; d0 < HD; d0 += LANES) {
        lvec m[LANES];
        _Pragma("unroll") for (uint l = 0; l < LANES; l++)
            m[l] = LLOAD(p + (size_t)min(r0 + l, n - 1) * stride + d0) * f;
        transpose_lanes(m);
        _Pragma("unroll") for (uint d = 0; d < LANES; d++) t[d0 + d] = m[d];
    }
#else
    float lane[LANES];
    for (uint d = 0; d < HD; d++) {
        for (uint l = 0; l < LANES; l++)
            lane[l] = p[(size_t)min(r0 + l, n - 1) * stride + d] * f;
        t[d] = LLOAD(lane);
    }
#endif
}

/* The inverse: rows r0 + l below n of p get t[d]'s lane l times f[l]. */
INLINE void scatter(const lvec *t, __global float *p, uint stride, uint r0, uint n,
                    const float *f)
{
#if BLOCKS
    for (uint d0 = 0; d0 < HD; d0 += LANES) {
        lvec m[LANES];
        _Pragma("unroll") for (uint d = 0; d < LANES; d++) m[d] = t[d0 + d];
        transpose_lanes(m);
        _Pragma("unroll") for (uint l = 0; l < LANES; l++)
            if (r0 + l < n)
                LSTORE(m[l] * f[l], p + (size_t)(r0 + l) * stride + d0);
    }
#else
    float lane[LANES];
    for (uint d = 0; d < HD; d++) {
        LSTORE(t[d], lane);
        for (uint l = 0; l < LANES && r0 + l < n; l++)
            p[(size_t)(r0 + l) * stride + d] = lane[l] * f[l];
    }
#endif
}

/* The values v[min(r0 + l, n - 1)] a lane. */
INLINE lvec gather1(__global const float *v, uint r0, uint n)
{
    float lane[LANES];
    for (uint l = 0; l < LANES; l++)
        lane[l] = v[min(r0 + l, n - 1)];
    return LLOAD(lane);
}

/* s[c] = sum_d r[c][d] t[d] for the KC rows r[c], in order of d. */
INLINE void row_dots(lvec *s, __global const float *const *r, const lvec *t)
{
    _Pragma("unroll") for (uint c = 0; c < KC; c++) s[c] = 0.0f;
    for (uint d = 0; d < HD; d++) {
        lvec x = t[d];
        _Pragma("unroll") for (uint c = 0; c < KC; c++) s[c] = fma((lvec)r[c][d], x, s[c]);
    }
}

/* acc[d] = acc[d] f + sum_c r[c][d] w[c], in order of c. */
INLINE void add_rows(lvec *acc, lvec f, __global const float *const *r, const lvec *w)
{
    for (uint d = 0; d < HD; d++) {
        lvec a = acc[d] * f;
        _Pragma("unroll") for (uint c = 0; c < KC; c++) a = fma((lvec)r[c][d], w[c], a);
        acc[d] = a;
    }
}

/* The KC rows base + (min(j0 + c, last)) * stride. */
INLINE void chunk_rows(__global const float **r, __global const float *base, uint stride,
                       uint j0, uint last)
{
    _Pragma("unroll") for (uint c = 0; c < KC; c++)
        r[c] = base + (size_t)min(j0 + c, last) * stride;
}

__kernel void attn_forward(__global const float *qkv, __global float *y, __global float *lse,
                           const uint T, const uint H, const float scale)
{
    uint i0 = (uint)get_global_id(0) * LANES, h = (uint)get_global_id(1);
    uint b = (uint)get_global_id(2), C = H * HD, row = 3 * C, last = min(i0 + LANES - 1, T - 1);
    __global const float *q = qkv + (size_t)b * T * row + h * HD, *k = q + C, *v = k + C;
    lvec qt[HD], ot[HD];
    gather(qt, q, row, i0, T, scale);
    for (uint d = 0; d < HD; d++)
        ot[d] = 0.0f;
    lint lim = min(LSTEPS + (int)i0, (int)T - 1); /* each lane's last key */
    lvec m = -INFINITY, l = 0.0f;
    for (uint j0 = 0; j0 <= last; j0 += KC) {
        __global const float *kr[KC], *vr[KC];
        chunk_rows(kr, k, row, j0, last);
        chunk_rows(vr, v, row, j0, last);
        lvec s[KC], p[KC], mx = m, sum = 0.0f;
        row_dots(s, kr, qt);
        _Pragma("unroll") for (uint c = 0; c < KC; c++)
            mx = fmax(mx, select((lvec)(-INFINITY), s[c], (lint)(int)(j0 + c) <= lim));
        _Pragma("unroll") for (uint c = 0; c < KC; c++) {
            p[c] = select((lvec)0.0f, exp_lanes(s[c] - mx), (lint)(int)(j0 + c) <= lim);
            sum += p[c];
        }
        lvec corr = exp_lanes(m - mx); /* the first chunk: l and ot are 0 */
        l = l * corr + sum;
        add_rows(ot, corr, vr, p);
        m = mx;
    }
    float mf[LANES], lf[LANES], inv[LANES];
    LSTORE(m, mf);
    LSTORE(l, lf);
    for (uint r = 0; r < LANES; r++)
        inv[r] = 1.0f / lf[r];
    scatter(ot, y + (size_t)b * T * C + h * HD, C, i0, T, inv);
    for (uint r = 0; r < LANES && i0 + r < T; r++)
        lse[(b * H + h) * T + i0 + r] = mf[r] + log(lf[r]);
}

/* delta_i = dy_i . y_i, then for keys j <= i in order:
 *   p_ij = exp(s_ij - lse_i), ds_ij = p_ij (dy_i . v_j - delta_i),
 *   dq_i = scale sum_j ds_ij k_j. */
__kernel void attn_backward_q(__global const float *qkv, __global const float *y,
                              __global const float *dy, __global const float *lse,
                              __global float *delta, __global float *dqkv, const uint T,
                              const uint H, const float scale)
{
    uint i0 = (uint)get_global_id(0) * LANES, h = (uint)get_global_id(1);
    uint b = (uint)get_global_id(2), C = H * HD, row = 3 * C, last = min(i0 + LANES - 1, T - 1);
    __global const float *q = qkv + (size_t)b * T * row + h * HD, *k = q + C, *v = k + C;
    size_t at = (size_t)b * T * C + h * HD;
    lvec qt[HD], gt[HD], dq[HD], dl = 0.0f;
    gather(qt, q, row, i0, T, scale);
    gather(gt, dy + at, C, i0, T, 1.0f);
    gather(dq, y + at, C, i0, T, 1.0f); /* y first, for delta */
    for (uint d = 0; d < HD; d++) {
        dl = fma(gt[d], dq[d], dl);
        dq[d] = 0.0f;
    }
    lvec stat = gather1(lse + (b * H + h) * T, i0, T);
    lint lim = min(LSTEPS + (int)i0, (int)T - 1);
    for (uint j0 = 0; j0 <= last; j0 += KC) {
        __global const float *kr[KC], *vr[KC];
        chunk_rows(kr, k, row, j0, last);
        chunk_rows(vr, v, row, j0, last);
        lvec s[KC], dp[KC];
        row_dots(s, kr, qt);
        row_dots(dp, vr, gt);
        _Pragma("unroll") for (uint c = 0; c < KC; c++) {
            lvec p = select((lvec)0.0f, exp_lanes(s[c] - stat), (lint)(int)(j0 + c) <= lim);
            s[c] = p * (dp[c] - dl); /* ds */
        }
        add_rows(dq, 1.0f, kr, s);
    }
    float f[LANES], dlf[LANES];
    for (uint r = 0; r < LANES; r++)
        f[r] = scale;
    scatter(dq, dqkv + (size_t)b * T * row + h * HD, row, i0, T, f);
    LSTORE(dl, dlf);
    for (uint r = 0; r < LANES && i0 + r < T; r++)
        delta[(b * H + h) * T + i0 + r] = dlf[r];
}

/* For queries i >= j in order: dv_j = sum_i p_ij dy_i, dk_j = scale sum_i
 * ds_ij q_i (q . (k scale) stands for (q scale) . k, equal up to rounding). */
__kernel void attn_backward_kv(__global const float *qkv, __global const float *dy,
                               __global const float *lse, __global const float *delta,
                               __global float *dqkv, const uint T, const uint H,
                               const float scale)
{
    uint j0 = (uint)get_global_id(0) * LANES, h = (uint)get_global_id(1);
    uint b = (uint)get_global_id(2), C = H * HD, row = 3 * C;
    __global const float *q = qkv + (size_t)b * T * row + h * HD, *k = q + C, *v = k + C;
    __global const float *g = dy + (size_t)b * T * C + h * HD;
    __global const float *st = lse + (b * H + h) * T, *dlt = delta + (b * H + h) * T;
    lvec kt[HD], vt[HD], dk[HD], dv[HD];
    gather(kt, k, row, j0, T, scale);
    gather(vt, v, row, j0, T, 1.0f);
    for (uint d = 0; d < HD; d++)
        dk[d] = dv[d] = 0.0f;
    lint own = min(LSTEPS + (int)j0, (int)T - 1); /* each lane's key */
    for (uint i0 = j0; i0 < T; i0 += KC) {
        __global const float *qr[KC], *gr[KC];
        chunk_rows(qr, q, row, i0, T - 1);
        chunk_rows(gr, g, C, i0, T - 1);
        lvec s[KC], dp[KC];
        row_dots(s, qr, kt);
        row_dots(dp, gr, vt);
        _Pragma("unroll") for (uint c = 0; c < KC; c++) {
            uint i = min(i0 + c, T - 1);
            lint seen = (lint)(int)(i0 + c) >= own & (lint)(int)(i0 + c) < (lint)(int)T;
            s[c] = select((lvec)0.0f, exp_lanes(s[c] - st[i]), seen); /* p */
            dp[c] = s[c] * (dp[c] - dlt[i]);                           /* ds */
        }
        add_rows(dv, 1.0f, gr, s);
        add_rows(dk, 1.0f, qr, dp);
    }
    float f[LANES], one[LANES];
    for (uint r = 0; r < LANES; r++) {
        f[r] = scale;
        one[r] = 1.0f;
    }
    __global float *out = dqkv + (size_t)b * T * row + C + h * HD;
    scatter(dk, out, row, j0, T, f);
    scatter(dv, out + C, row, j0, T, one);
}
