/* The seeded generator behind initialisation, shuffling and the tests:
 * xoshiro256** (Blackman and Vigna), seeded through splitmix64. */
#include <math.h>

#include "runtime/rng.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void rng_seed(kiln_rng *rng, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t rng_next(kiln_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double rng_uniform(kiln_rng *rng, double lo, double hi)
{
    double unit = (double)(rng_next(rng) >> 11) * 0x1.0p-53;
    return lo + (hi - lo) * unit;
}

void rng_fill(kiln_rng *rng, float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rng_uniform(rng, lo, hi);
}

double rng_normal(kiln_rng *rng)
{
    /* Box-Muller; 1 - u keeps the logarithm's argument in (0, 1]. */
    double u = rng_uniform(rng, 0, 1), v = rng_uniform(rng, 0, 1);
    return sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * v);
}
