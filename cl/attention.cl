/* Causal multi-head self-attention on a fused QKV tensor, without ever
 * storing the T x T scores (memory linear in T, as FlashAttention):
 *   qkv (B, T, 3C): q, k, v side by side, head h at channels h*HD of each
 *   y   (B, T, C):  head h at channels h*HD (nanoGPT's transpose + view)
 *   lse (B, H, T):  log-sum-exp of each query row's scaled scores
 * scale = 1/sqrt(HD). Query row i sees keys 0..i: the loops stop at the
 * chunk of KB keys that holds the diagonal, so nothing above it is
 * computed but the masked rest of that chunk.
 *
 * Where work-groups run as loops (PoCL's CPUs) the three training kernels
 * are cl/attention_lanes.cl's, with rows in vector lanes; these serve
 * GPUs, rusticl, and decoding everywhere.
 *
 * attn_forward: one item per (query row, head, batch), an online softmax
 * over the keys in order, KB at a time (running max m, sum l, output acc
 * rescaled once a chunk).
 * attn_backward_q: one item per query row; delta_i = dy_i . y_i, then
 *   p_ij = exp(s_ij - lse_i), ds_ij = p_ij (dy_i . v_j - delta_i),
 *   dq_i = scale sum_j ds_ij k_j over j = 0..i in order.
 * attn_backward_kv: one item per key row j, over queries i = j..T-1 in order:
 *   dv_j = sum_i p_ij dy_i, dk_j = scale sum_i ds_ij q_i.
 * Every sum runs in a fixed order (no atomics), so results are the same
 * bits on every run. HD is the head dimension (-DHD=...); rows move in
 * vectors of 8 or 4 lanes where HD allows. Items past T
 * compute on row T-1 and store nothing (libclc's exp and log read a table
 * that rusticl passes as a hidden argument; they stay outside branches). */

/* Helpers inline into the kernels: their loops unroll with the callers' sizes. */
#define INLINE static inline __attribute__((always_inline))

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

/* v = row p's HD values times f, in NV vectors (f = 1: the values). */
INLINE void load_row(vec *v, __global const float *p, float f)
{
    _Pragma("unroll") for (uint u = 0; u < NV; u++) v[u] = LOADV(u, p) * f;
}

INLINE void zero_row(vec *v)
{
    _Pragma("unroll") for (uint u = 0; u < NV; u++) v[u] = 0.0f;
}

/* out = v times f. */
INLINE void store_row(__global float *out, const vec *v, float f)
{
    _Pragma("unroll") for (uint u = 0; u < NV; u++) STOREV(v[u] * f, u, out);
}

/* Where the helpers below read their rows of keys, values, queries or
 * output gradients: global memory, or with -DTILE=N (GPUs) a work-group's
 * tile of N rows in local memory. */
#ifdef TILE
#define ROWS __local
#else
#define ROWS __global
#endif

/* a . p[0..HD) for a held in NV vectors: NAME reads p from SPACE. */
#define DOT_ROW(NAME, SPACE)                                                    \
    INLINE float NAME(const vec *a, SPACE const float *p)                      \
    {                                                                           \
        vec s = 0.0f;                                                           \
        _Pragma("unroll") for (uint u = 0; u < NV; u++) s += a[u] * LOADV(u, p); \
        return HSUM(s);                                                         \
    }
DOT_ROW(dot_row, ROWS)
#ifdef TILE
DOT_ROW(dot_global, __global)
#else
#define dot_global dot_row
#endif

/* Keys (or queries) go KB at a time (-DKB=8 for decoding where
 * work-groups run as loops; 1 elsewhere: per-lane SIMD compilers such as
 * llvmpipe's build the unrolled chunks very slowly, and GPUs gain nothing
 * from them): the chunk's KB scores as one kvec, one vector exp for them,
 * and one rescaling of the running sums per chunk. Chunks start at key 0
 * (the backward's at the item's row) and every sum runs over the rows in
 * order. Rows of a chunk past the row's causal limit are masked: score
 * -inf, p = 0. */
#ifndef KB
#define KB 1
#endif
#if KB == 8
typedef float8 kvec;
typedef int8 kint;
#define KSTEPS ((int8)(0, 1, 2, 3, 4, 5, 6, 7))
#define KLOAD(p) vload8(0, (p))
#define KSTORE(v, p) vstore8((v), 0, (p))
#elif KB == 1
typedef float kvec;
typedef int kint;
#define KSTEPS 0
#define KLOAD(p) ((p)[0])
#define KSTORE(v, p) ((p)[0] = (v))
#else
#error "KB is 1 or 8"
#endif

#if KB == 8 && VW == 8
/* (a's neighbours summed, b's): 8 + 8 lanes to 8 */
INLINE float8 pair_sums(float8 a, float8 b)
{
    return (float8)(a.even, b.even) + (float8)(a.odd, b.odd);
}
#endif

/* The dot products of a with rows p + min(j0 + t, jmax) * stride, t < KB. */
INLINE kvec dotk(const vec *a, ROWS const float *p, uint stride, uint j0, uint jmax)
{
#if KB == 8 && VW == 8
    float8 s[KB];
    _Pragma("unroll") for (uint t = 0; t < KB; t++) {
        ROWS const float *r = p + (size_t)min(j0 + t, jmax) * stride;
        float8 acc = 0.0f;
        _Pragma("unroll") for (uint u = 0; u < NV; u++)
            acc += a[u] * vload8(u, r);
        s[t] = acc;
    }
    float8 c0 = pair_sums(s[0], s[1]), c1 = pair_sums(s[2], s[3]);
    float8 c2 = pair_sums(s[4], s[5]), c3 = pair_sums(s[6], s[7]);
    return pair_sums(pair_sums(c0, c1), pair_sums(c2, c3));
#else
    float s[KB];
    _Pragma("unroll") for (uint t = 0; t < KB; t++)
        s[t] = dot_row(a, p + (size_t)min(j0 + t, jmax) * stride);
    return KLOAD(s);
#endif
}

/* x where rows j0 + t are at most lim (row lim's causal limit), else -inf. */
INLINE kvec causal(kvec x, uint j0, uint lim)
{
    kint j = KSTEPS + (int)j0;
    return select((kvec)(-INFINITY), x, j <= (kint)(int)lim);
}

/* The same for rows at least lo (the backward over queries), and below n. */
INLINE kvec from_row(kvec x, uint i0, uint lo, uint n)
{
    kint i = KSTEPS + (int)i0;
    return select((kvec)(-INFINITY), x, i >= (kint)(int)lo && i < (kint)(int)n);
}

INLINE float kmax(kvec x)
{
#if KB == 8
    float4 a = fmax(x.lo, x.hi);
    float2 b = fmax(a.lo, a.hi);
    return fmax(b.x, b.y);
#else
    return x;
#endif
}

INLINE float ksum(kvec x)
{
#if KB == 8
    float4 a = x.lo + x.hi;
    float2 b = a.lo + a.hi;
    return b.x + b.y;
#else
    return x;
#endif
}

/* acc += sum_t w[t] row(t), rows p + min(j0 + t, jmax) * stride, in order. */
INLINE void add_rows(vec *acc, kvec w, ROWS const float *p, uint stride, uint j0,
                     uint jmax)
{
    float wt[KB];
    KSTORE(w, wt);
    _Pragma("unroll") for (uint t = 0; t < KB; t++) {
        ROWS const float *r = p + (size_t)min(j0 + t, jmax) * stride;
        _Pragma("unroll") for (uint u = 0; u < NV; u++)
            acc[u] += wt[t] * LOADV(u, r);
    }
}

/* KB values of s at rows min(i0 + t, n - 1). */
INLINE kvec loadk(ROWS const float *s, uint i0, uint n)
{
    float x[KB];
    _Pragma("unroll") for (uint t = 0; t < KB; t++)
        x[t] = s[min(i0 + t, n - 1)];
    return KLOAD(x);
}

/* One query row's online softmax over a chunk of keys j0 .. j0 + 7 (those
 * past lim masked): keys and values are rows of k and v, stride apart
 * (jmax: the last row there is). m, l and acc as the forward keeps them. */
INLINE void softmax_chunk(const vec *q, ROWS const float *k, ROWS const float *v,
                          uint stride, uint j0, uint lim, uint jmax, float *m, float *l,
                          vec *acc)
{
    kvec s = causal(dotk(q, k, stride, j0, jmax), j0, lim);
    float mn = fmax(*m, kmax(s)), corr = exp(*m - mn);
    kvec p = exp(s - mn);
    *l = *l * corr + ksum(p);
    _Pragma("unroll") for (uint u = 0; u < NV; u++)
        acc[u] *= corr;
    add_rows(acc, p, v, stride, j0, jmax);
    *m = mn;
}

#ifndef TILE
__kernel void attn_forward(__global const float *qkv, __global float *y, __global float *lse,
                           const uint T, const uint H, const float scale)
{
    uint i = (uint)get_global_id(0), h = (uint)get_global_id(1), b = (uint)get_global_id(2);
    uint C = H * HD, row = 3 * C, lim = min(i, T - 1);
    __global const float *k = qkv + (size_t)b * T * row + C + h * HD, *v = k + C;
    __global const float *q = qkv + (size_t)(b * T + lim) * row + h * HD;
    vec qs[NV], acc[NV];
    load_row(qs, q, scale);
    zero_row(acc);
    float m = -INFINITY, l = 0.0f;
    for (uint j0 = 0; j0 <= lim; j0 += KB)
        softmax_chunk(qs, k, v, row, j0, lim, lim, &m, &l, acc);
    float inv = 1.0f / l, stat = m + log(l);
    if (i >= T)
        return;
    __global float *out = y + (size_t)(b * T + i) * C + h * HD;
    store_row(out, acc, inv);
    lse[(b * H + h) * T + i] = stat;
}

__kernel void attn_backward_q(__global const float *qkv, __global const float *y,
                              __global const float *dy, __global const float *lse,
                              __global float *delta, __global float *dqkv, const uint T,
                              const uint H, const float scale)
{
    uint i = (uint)get_global_id(0), h = (uint)get_global_id(1), b = (uint)get_global_id(2);
    uint C = H * HD, row = 3 * C, lim = min(i, T - 1);
    __global const float *k = qkv + (size_t)b * T * row + C + h * HD, *v = k + C;
    __global const float *q = qkv + (size_t)(b * T + lim) * row + h * HD;
    __global const float *yi = y + (size_t)(b * T + lim) * C + h * HD;
    __global const float *gi = dy + (size_t)(b * T + lim) * C + h * HD;
    vec qs[NV], g[NV], dq[NV];
    load_row(qs, q, scale);
    load_row(g, gi, 1.0f);
    zero_row(dq);
    float dl = dot_global(g, yi), stat = lse[(b * H + h) * T + lim];
    for (uint j0 = 0; j0 <= lim; j0 += KB) {
        kvec p = exp(causal(dotk(qs, k, row, j0, lim), j0, lim) - stat);
        kvec ds = p * (dotk(g, v, row, j0, lim) - dl);
        add_rows(dq, ds, k, row, j0, lim);
    }
    if (i >= T)
        return;
    __global float *out = dqkv + (size_t)(b * T + i) * row + h * HD;
    store_row(out, dq, scale);
    delta[(b * H + h) * T + i] = dl;
}

__kernel void attn_backward_kv(__global const float *qkv, __global const float *dy,
                               __global const float *lse, __global const float *delta,
                               __global float *dqkv, const uint T, const uint H,
                               const float scale)
{
    uint j = (uint)get_global_id(0), h = (uint)get_global_id(1), b = (uint)get_global_id(2);
    uint C = H * HD, row = 3 * C, own = min(j, T - 1);
    __global const float *q = qkv + (size_t)b * T * row + h * HD;
    __global const float *g = dy + (size_t)b * T * C + h * HD;
    __global const float *kr = qkv + (size_t)(b * T + own) * row + C + h * HD;
    __global const float *st = lse + (b * H + h) * T, *dl = delta + (b * H + h) * T;
    vec ks[NV], vr[NV], dk[NV], dv[NV];
    load_row(ks, kr, scale); /* q . (k scale) = (q scale) . k up to rounding */
    load_row(vr, kr + C, 1.0f);
    zero_row(dk);
    zero_row(dv);
    for (uint i0 = own; i0 < T; i0 += KB) {
        kvec stat = loadk(st, i0, T), d = loadk(dl, i0, T);
        kvec s = from_row(dotk(ks, q, row, i0, T - 1), i0, own, T);
        kvec p = exp(s - stat);
        kvec ds = p * (dotk(vr, g, C, i0, T - 1) - d);
        add_rows(dv, p, g, C, i0, T - 1);
        add_rows(dk, ds, q, row, i0, T - 1);
    }
    if (j >= T)
        return;
    __global float *out = dqkv + (size_t)(b * T + j) * row + C + h * HD;
    store_row(out, dk, scale);
    store_row(out + C, dv, 1.0f);
}

/* Decoding (batch 1) with a cache of keys and values, (positions, 2C): row
 * p holds position p's k (channels h*HD of the first C) and v (of the
 * second C). attn_cache_store writes the T new rows' k and v at rows
 * at .. at+T-1; attn_decode then runs the forward's online softmax for new
 * row r (position at + r) over cache rows 0 .. at + r, in the same chunks
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
    uint lim = at + r;
    __global const float *q = qkv + (size_t)r * 3 * C + h * HD;
    __global const float *k = cache + h * HD, *v = k + C;
    vec qs[NV], acc[NV];
    load_row(qs, q, scale);
    zero_row(acc);
    float m = -INFINITY, l = 0.0f;
    for (uint j0 = 0; j0 <= lim; j0 += KB)
        softmax_chunk(qs, k, v, 2 * C, j0, lim, lim, &m, &l, acc);
    float inv = 1.0f / l;
    __global float *out = y + (size_t)r * C + h * HD;
    store_row(out, acc, inv);
}
#else /* TILE */

/* The same three kernels for GPUs: a work-group of TILE items, one query
 * (or key) row each, shares each tile of TILE rows of keys and values (or
 * queries and output gradients) through local memory, loaded a row an
 * item. Each row's sums run over the same rows in the same order, with the
 * same operations, as the kernels above with KB = 1, so a tile
 * of any size gives the bits of no tile. Launched over T rounded up to a
 * multiple of TILE; items past T compute on row T - 1, load their share of
 * each tile, and store nothing. */
#if KB != 1
#error "attention.cl: tiles (-DTILE) take KB = 1"
#endif

/* Row lid of tile, from row min(t0 + lid, n - 1) of src (stride apart). */
INLINE void tile_row(__local float *tile, __global const float *src, uint stride, uint t0,
                     uint n, uint lid)
{
    __global const float *r = src + (size_t)min(t0 + lid, n - 1) * stride;
    _Pragma("unroll") for (uint u = 0; u < NV; u++)
        STOREV(LOADV(u, r), u, tile + lid * HD);
}

/* The work-group's tiles of keys and values from row t0 (rows stride
 * apart), once every item is done with the previous ones. */
INLINE void key_tiles(__local float *kt, __local float *vt, __global const float *k,
                      __global const float *v, uint stride, uint t0, uint n, uint lid)
{
    barrier(CLK_LOCAL_MEM_FENCE);
    tile_row(kt, k, stride, t0, n, lid);
    tile_row(vt, v, stride, t0, n, lid);
    barrier(CLK_LOCAL_MEM_FENCE);
}

__kernel __attribute__((reqd_work_group_size(TILE, 1, 1))) void
attn_forward(__global const float *qkv, __global float *y, __global float *lse, const uint T,
             const uint H, const float scale)
{
    uint i = (uint)get_global_id(0), lid = (uint)get_local_id(0);
    uint h = (uint)get_global_id(1), b = (uint)get_global_id(2);
    uint C = H * HD, row = 3 * C, lim = min(i, T - 1), last = min(i - lid + TILE - 1, T - 1);
    __global const float *k = qkv + (size_t)b * T * row + C + h * HD, *v = k + C;
    __global const float *q = qkv + (size_t)(b * T + lim) * row + h * HD;
    __local float kt[TILE * HD], vt[TILE * HD];
    vec qs[NV], acc[NV];
    load_row(qs, q, scale);
    zero_row(acc);
    float m = -INFINITY, l = 0.0f;
    for (uint t0 = 0; t0 <= last; t0 += TILE) {
        key_tiles(kt, vt, k, v, row, t0, T, lid);
        for (uint j = t0; j <= lim && j < t0 + TILE; j++)
            softmax_chunk(qs, kt, vt, HD, j - t0, lim - t0, TILE - 1, &m, &l, acc);
    }
    float inv = 1.0f / l, stat = m + log(l);
    if (i >= T)
        return;
    __global float *out = y + (size_t)(b * T + i) * C + h * HD;
    store_row(out, acc, inv);
    lse[(b * H + h) * T + i] = stat;
}

__kernel __attribute__((reqd_work_group_size(TILE, 1, 1))) void
attn_backward_q(__global const float *qkv, __global const float *y, __global const float *dy,
                __global const float *lse, __global float *delta, __global float *dqkv,
                const uint T, const uint H, const float scale)
{
    uint i = (uint)get_global_id(0), lid = (uint)get_local_id(0);
    uint h = (uint)get_global_id(1), b = (uint)get_global_id(2);
    uint C = H * HD, row = 3 * C, lim = min(i, T - 1), last = min(i - lid + TILE - 1, T - 1);
    __global const float *k = qkv + (size_t)b * T * row + C + h * HD, *v = k + C;
    __global const float *q = qkv + (size_t)(b * T + lim) * row + h * HD;
    __global const float *yi = y + (size_t)(b * T + lim) * C + h * HD;
    __global const float *gi = dy + (size_t)(b * T + lim) * C + h * HD;
    __local float kt[TILE * HD], vt[TILE * HD];
    vec qs[NV], g[NV], dq[NV];
    load_row(qs, q, scale);
    load_row(g, gi, 1.0f);
    zero_row(dq);
    float dl = dot_global(g, yi), stat = lse[(b * H + h) * T + lim];
    for (uint t0 = 0; t0 <= last; t0 += TILE) {
        key_tiles(kt, vt, k, v, row, t0, T, lid);
        for (uint j = t0; j <= lim && j < t0 + TILE; j++) {
            kvec p = exp(causal(dotk(qs, kt, HD, j - t0, TILE - 1), j - t0, lim - t0) - stat);
            kvec ds = p * (dotk(g, vt, HD, j - t0, TILE - 1) - dl);
            add_rows(dq, ds, kt, HD, j - t0, TILE - 1);
        }
    }
    if (i >= T)
        return;
    __global float *out = dqkv + (size_t)(b * T + i) * row + h * HD;
    store_row(out, dq, scale);
    delta[(b * H + h) * T + i] = dl;
}

__kernel __attribute__((reqd_work_group_size(TILE, 1, 1))) void
attn_backward_kv(__global const float *qkv, __global const float *dy, __global const float *lse,
                 __global const float *delta, __global float *dqkv, const uint T, const uint H,
                 const float scale)
{
    uint j = (uint)get_global_id(0), lid = (uint)get_local_id(0);
    uint h = (uint)get_global_id(1), b = (uint)get_global_id(2);
    uint C = H * HD, row = 3 * C, own = min(j, T - 1);
    __global const float *q = qkv + (size_t)b * T * row + h * HD;
    __global const float *g = dy + (size_t)b * T * C + h * HD;
    __global const float *kr = qkv + (size_t)(b * T + own) * row + C + h * HD;
    __global const float *st = lse + (b * H + h) * T, *dl = delta + (b * H + h) * T;
    __local float qt[TILE * HD], gt[TILE * HD], stt[TILE], dlt[TILE];
    vec ks[NV], vr[NV], dk[NV], dv[NV];
    load_row(ks, kr, scale);
    load_row(vr, kr + C, 1.0f);
    zero_row(dk);
    zero_row(dv);
    for (uint t0 = j - lid; t0 < T; t0 += TILE) {
        barrier(CLK_LOCAL_MEM_FENCE);
        tile_row(qt, q, row, t0, T, lid);
        tile_row(gt, g, C, t0, T, lid);
        stt[lid] = st[min(t0 + lid, T - 1)];
        dlt[lid] = dl[min(t0 + lid, T - 1)];
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint i = max(t0, own); i < T && i < t0 + TILE; i++) {
            uint r = i - t0;
            kvec p = exp(dotk(ks, qt, HD, r, TILE - 1) - loadk(stt, r, TILE));
            kvec ds = p * (dotk(vr, gt, HD, r, TILE - 1) - loadk(dlt, r, TILE));
            add_rows(dv, p, gt, HD, r, TILE - 1);
            add_rows(dk, ds, qt, HD, r, TILE - 1);
        }
    }
    if (j >= T)
        return;
    __global float *out = dqkv + (size_t)(b * T + j) * row + C + h * HD;
    store_row(out, dk, scale);
    store_row(out + C, dv, 1.0f);
}
#endif /* TILE */
