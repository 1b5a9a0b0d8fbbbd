/* Token and position embeddings.
 *   embed_forward:  ids (N) token ids stored as floats, W (V, C) -> out (N, C),
 *                   out[n] = W[ids[n]]; an id that is not a whole number in
 *                   [0, V) gives a row of NaN (the host checks ids first).
 *   embed_backward: dW[v, c] = sum over n = 0..N-1 in order of dy[n, c] where
 *                   ids[n] = v: one item per row v and run of EMBED_RUN
 *                   channels, which it owns (a fixed order, no atomics); the
 *                   ids are read once per run, not once per weight. Runs
 *                   are 16 channels where items are many and cheap (GPUs)
 *                   and up to 512 where work-groups run as loops (CPUs),
 *                   whose items then read the ids once a row.
 *   pos_forward:    x (B, T, C), P (P_rows, C), first + T <= P_rows:
 *                   out = x + P[first + t] (first > 0 when decoding).
 *   pos_backward:   dP[t, c] = sum over b in order of dy[b, t, c] for t < T,
 *                   0 for the rows past T. */

static int token_of(float f, uint V)
{
    return f >= 0.0f && f < (float)V && f == floor(f) ? (int)f : -1;
}

__kernel void embed_forward(__global const float *ids, __global const float *W,
                            __global float *out, const uint V, const uint C)
{
    uint c = (uint)get_global_id(0), n = (uint)get_global_id(1);
    int id = token_of(ids[n], V);
    out[(size_t)n * C + c] = id >= 0 ? W[(size_t)id * C + c] : NAN;
}

#ifndef EMBED_RUN
#define EMBED_RUN 16
#endif

__kernel void embed_backward(__global const float *ids, __global const float *dy,
                             __global float *dW, const uint N, const uint V, const uint C)
{
    uint first = (uint)get_global_id(0) * EMBED_RUN, v = (uint)get_global_id(1);
    uint run = min((uint)EMBED_RUN, C - first);
    float sum[EMBED_RUN];
    for (uint k = 0; k < EMBED_RUN; k++)
        sum[k] = 0.0f;
    float me = (float)v; /* ids[n] == me exactly when token_of(ids[n], V) == v */
    for (uint n = 0; n < N; n++) {
        if (ids[n] != me)
            continue;
        __global const float *row = dy + (size_t)n * C + first;
        for (uint k = 0; k < run; k++)
            sum[k] += row[k];
    }
    for (uint k = 0; k < run; k++)
        dW[(size_t)v * C + first + k] = sum[k];
}

__kernel void pos_forward(__global const float *x, __global const float *P,
                          __global float *out, const uint T, const uint C, const uint first)
{
    uint c = (uint)get_global_id(0), t = (uint)get_global_id(1), b = (uint)get_global_id(2);
    size_t at = ((size_t)b * T + t) * C + c;
    out[at] = x[at] + P[(size_t)(first + t) * C + c];
}

__kernel void pos_backward(__global const float *dy, __global float *dP, const uint B,
                           const uint T, const uint C)
{
    uint c = (uint)get_global_id(0), t = (uint)get_global_id(1);
    float sum = 0.0f;
    for (uint b = 0; t < T && b < B; b++)
        sum += dy[((size_t)b * T + t) * C + c];
    dP[(size_t)t * C + c] = sum;
}
