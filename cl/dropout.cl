/* Inverted dropout with a counter-based generator, so that backward
 * regenerates exactly the forward's mask from (seed, counter) alone.
 *
 * Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
 * 3", SC'11) draws four words per block b: philox((b, 0, counter); key =
 * seed). Elements go in chunks of 64: element i, at r = i % 64 of chunk
 * c = i / 64, takes word r / 16 of block 16 c + r % 16, and is kept when
 * that word's top 24 bits, as u in [0, 1), reach p; kept values are scaled
 * by scale = 1 / (1 - p).
 *   dropout: y = keep ? x * scale : 0   (also dx from dy in backward)
 * Sixteen blocks side by side make the generator sixteen-lane vector
 * arithmetic and every load and store a contiguous float16, whatever the
 * device's vector width; the mapping is fixed, so masks are the same on
 * every device. */

#define LANES 16
#define CHUNK (4 * LANES)

/* One round on sixteen blocks. c[k] holds word k of each in the low half of
 * a 64-bit lane; the high halves carry junk that the masks before each
 * multiply and the final conversion drop. So every 32x32 -> 64-bit product
 * is one lane's multiply, with no shuffle between lanes. */
static void philox_round(ulong16 c[4], ulong k0, ulong k1)
{
    ulong16 p0 = (c[0] & 0xFFFFFFFFul) * 0xD2511F53ul;
    ulong16 p1 = (c[2] & 0xFFFFFFFFul) * 0xCD9E8D57ul;
    c[0] = (p1 >> 32) ^ c[1] ^ k0;
    c[1] = p1;
    c[2] = (p0 >> 32) ^ c[3] ^ k1;
    c[3] = p0;
}

/* Ten rounds, the key bumped between them: w[k] = word k of philox(w; key). */
static void philox4x32_10(uint16 w[4], ulong key)
{
    ulong16 c[4];
    for (int k = 0; k < 4; k++)
        c[k] = convert_ulong16(w[k]);
    uint k0 = (uint)key, k1 = (uint)(key >> 32);
    philox_round(c, k0, k1);
#pragma unroll
    for (int r = 1; r < 10; r++) {
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
        philox_round(c, k0, k1);
    }
    for (int k = 0; k < 4; k++)
        w[k] = convert_uint16(c[k]);
}

/* The words of chunk c's blocks 16 c .. 16 c + 15. */
static void chunk_words(uint chunk, ulong seed, ulong counter, uint16 w[4])
{
    w[0] = chunk * LANES + (uint16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    w[1] = (uint16)0u;
    w[2] = (uint16)(uint)counter;
    w[3] = (uint16)(uint)(counter >> 32);
    philox4x32_10(w, seed);
}

/* u >= p for u = (word >> 8) / 2^24 is (word >> 8) >= ceil(p 2^24): both
 * products are exact, so integers decide as the reals would. */
static uint keep_threshold(float p)
{
    return (uint)ceil(p * 16777216.0f);
}

/* One chunk of 64 elements per work-item: the n / 64 full chunks. */
__kernel void dropout(__global const float *x, __global float *y, const float p,
                      const float scale, const ulong seed, const ulong counter)
{
    uint chunk = get_global_id(0), threshold = keep_threshold(p);
    uint16 w[4];
    chunk_words(chunk, seed, counter, w);
    for (int k = 0; k < 4; k++) {
        int16 keep = (w[k] >> 8) >= threshold;
        float16 v = vload16(chunk * 4 + k, x);
        vstore16(select((float16)0.0f, v * scale, keep), chunk * 4 + k, y);
    }
}

/* The last n % 64 elements, in one work-item. */
__kernel void dropout_tail(__global const float *x, __global float *y, const uint n,
                           const float p, const float scale, const ulong seed,
                           const ulong counter)
{
    uint chunk = n / CHUNK, threshold = keep_threshold(p);
    uint16 w[4];
    chunk_words(chunk, seed, counter, w);
    uint words[CHUNK];
    for (int k = 0; k < 4; k++)
        vstore16(w[k], k, words);
    for (uint i = chunk * CHUNK; i < n; i++)
        y[i] = (words[i - chunk * CHUNK] >> 8) >= threshold ? x[i] * scale : 0.0f;
}

/* The raw generator, for known-answer tests: out[0..3] = philox(c, k). */
__kernel void philox_words(__global uint *out, const uint c0, const uint c1, const uint c2,
                           const uint c3, const uint k0, const uint k1)
{
    uint16 c[4] = {(uint16)c0, (uint16)c1, (uint16)c2, (uint16)c3};
    philox4x32_10(c, (ulong)k1 << 32 | k0);
    for (int k = 0; k < 4; k++)
        out[k] = c[k].s0;
}
