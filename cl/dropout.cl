/* Inverted dropout with a counter-based generator, so that backward
 * regenerates exactly the forward's mask from (seed, counter) alone.
 *
 * Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
 * 3", SC'11): element i uses word i % 4 of philox(block = i / 4, counter;
 * key = seed), turned into u in [0, 1) with 24 bits; it is kept when
 * u >= p and then scaled by scale = 1 / (1 - p).
 *   dropout: y = keep ? x * scale : 0   (also dx from dy in backward) */

static uint4 philox_round(uint4 c, uint2 k)
{
    uint hi0 = mul_hi(0xD2511F53u, c.x), lo0 = 0xD2511F53u * c.x;
    uint hi1 = mul_hi(0xCD9E8D57u, c.z), lo1 = 0xCD9E8D57u * c.z;
    return (uint4)(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
}

static uint4 philox4x32_10(uint4 c, uint2 k)
{
    for (int r = 0; r < 10; r++) {
        if (r > 0)
            k += (uint2)(0x9E3779B9u, 0xBB67AE85u);
        c = philox_round(c, k);
    }
    return c;
}

__kernel void dropout(__global const float *x, __global float *y, const ulong n,
                      const float p, const float scale, const ulong seed, const ulong counter)
{
    ulong block = get_global_id(0);
    if (block * 4 >= n)
        return;
    uint4 c = (uint4)((uint)block, (uint)(block >> 32), (uint)counter, (uint)(counter >> 32));
    uint4 r = philox4x32_10(c, (uint2)((uint)seed, (uint)(seed >> 32)));
    uint words[4] = {r.x, r.y, r.z, r.w};
    for (int j = 0; j < 4; j++) {
        ulong i = block * 4 + j;
        if (i < n) {
            float u = (float)(words[j] >> 8) * (1.0f / 16777216.0f);
            y[i] = u >= p ? x[i] * scale : 0.0f;
        }
    }
}

/* The raw generator, for known-answer tests: out[4i..4i+3] = philox(c, k). */
__kernel void philox_words(__global uint *out, const uint c0, const uint c1, const uint c2,
                           const uint c3, const uint k0, const uint k1)
{
    uint4 r = philox4x32_10((uint4)(c0, c1, c2, c3), (uint2)(k0, k1));
    vstore4(r, 0, out);
}
