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

#define MASK_LANES 16
#define CHUNK (4 * MASK_LANES)

/* Sixteen blocks: w0..w3 hold words 0..3 of each, in the low half of a
 * 64-bit lane; the high halves carry junk that the masks before each
 * multiply and the final conversion drop. So every 32x32 -> 64-bit product
 * is one lane's multiply, with no shuffle between lanes. A struct, not an
 * array: PoCL keeps private arrays in memory, one copy per work-item. */
typedef struct {
    ulong16 w0, w1, w2, w3;
} blocks;

static blocks philox_round(blocks c, ulong k0, ulong k1)
{
    ulong16 p0 = (c.w0 & 0xFFFFFFFFul) * 0xD2511F53ul;
    ulong16 p1 = (c.w2 & 0xFFFFFFFFul) * 0xCD9E8D57ul;
    blocks r = {(p1 >> 32) ^ c.w1 ^ k0, p1, (p0 >> 32) ^ c.w3 ^ k1, p0};
    return r;
}

/* Ten rounds, the key bumped between them. */
static blocks philox4x32_10(blocks c, ulong key)
{
    uint k0 = (uint)key, k1 = (uint)(key >> 32);
    c = philox_round(c, k0, k1);
#pragma unroll
    for (int r = 1; r < 10; r++) {
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
        c = philox_round(c, k0, k1);
    }
    return c;
}

/* The words of chunk c's blocks 16 c .. 16 c + 15. */
static blocks chunk_words(uint chunk, ulong seed, ulong counter)
{
    uint16 lane = (uint16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    blocks c = {convert_ulong16(chunk * MASK_LANES + lane), (ulong16)0, (ulong16)(uint)counter,
                (ulong16)(counter >> 32)};
    return philox4x32_10(c, seed);
}

/* u >= p for u = (word >> 8) / 2^24 is (word >> 8) >= ceil(p 2^24): both
 * products are exact, so integers decide as the reals would. */
static uint keep_threshold(float p)
{
    return (uint)ceil(p * 16777216.0f);
}

/* Elements 16 at .. 16 at + 15, dropped or scaled by one word each. */
static void apply16(__global const float *x, __global float *y, uint at, ulong16 word,
                    uint threshold, float scale)
{
    int16 keep = (convert_uint16(word) >> 8) >= threshold;
    vstore16(select((float16)0.0f, vload16(at, x) * scale, keep), at, y);
}

/* One chunk of 64 elements per work-item: the n / 64 full chunks. */
__kernel void dropout(__global const float *x, __global float *y, const float p,
                      const float scale, const ulong seed, const ulong counter)
{
    uint chunk = get_global_id(0), threshold = keep_threshold(p);
    blocks c = chunk_words(chunk, seed, counter);
    apply16(x, y, 4 * chunk, c.w0, threshold, scale);
    apply16(x, y, 4 * chunk + 1, c.w1, threshold, scale);
    apply16(x, y, 4 * chunk + 2, c.w2, threshold, scale);
    apply16(x, y, 4 * chunk + 3, c.w3, threshold, scale);
}

/* The last n % 64 elements, in one work-item. */
__kernel void dropout_tail(__global const float *x, __global float *y, const uint n,
                           const float p, const float scale, const ulong seed,
                           const ulong counter)
{
    uint chunk = n / CHUNK, threshold = keep_threshold(p);
    blocks c = chunk_words(chunk, seed, counter);
    uint words[CHUNK];
    vstore16(convert_uint16(c.w0), 0, words);
    vstore16(convert_uint16(c.w1), 1, words);
    vstore16(convert_uint16(c.w2), 2, words);
    vstore16(convert_uint16(c.w3), 3, words);
    for (uint i = chunk * CHUNK; i < n; i++)
        y[i] = (words[i - chunk * CHUNK] >> 8) >= threshold ? x[i] * scale : 0.0f;
}

/* The raw generator, for known-answer tests: out[0..3] = philox(c, k). */
__kernel void philox_words(__global uint *out, const uint c0, const uint c1, const uint c2,
                           const uint c3, const uint k0, const uint k1)
{
    blocks c = {(ulong16)c0, (ulong16)c1, (ulong16)c2, (ulong16)c3};
    c = philox4x32_10(c, (ulong)k1 << 32 | k0);
    uint4 r = (uint4)((uint)c.w0.s0, (uint)c.w1.s0, (uint)c.w2.s0, (uint)c.w3.s0);
    vstore4(r, 0, out);
}
