/* Float64 host references and the seeded generator (see ref.h). */
#include <math.h>
#include <time.h>

#include "ref.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void ref_rng_seed(ref_rng *rng, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t ref_rng_next(ref_rng *rng)
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

double ref_rng_uniform(ref_rng *rng, double lo, double hi)
{
    double unit = (double)(ref_rng_next(rng) >> 11) * 0x1.0p-53;
    return lo + (hi - lo) * unit;
}

void ref_rng_fill(ref_rng *rng, float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)ref_rng_uniform(rng, lo, hi);
}

void ref_gemm(int trans_a, int trans_b, size_t m, size_t n, size_t k, double alpha,
              const float *a, const float *b, double beta, const float *c_in, double *c_out)
{
    for (size_t i = 0; i < m; i++) {
        for (size_t j = 0; j < n; j++) {
            double sum = 0.0;
            for (size_t p = 0; p < k; p++) {
                double av = trans_a ? a[p * m + i] : a[i * k + p];
                double bv = trans_b ? b[j * k + p] : b[p * n + j];
                sum += av * bv;
            }
            double prior = beta == 0.0 ? 0.0 : beta * (double)c_in[i * n + j];
            c_out[i * n + j] = alpha * sum + prior;
        }
    }
}

ref_compare ref_compare_arrays(const float *got, const double *want, size_t n, double atol,
                               double rtol)
{
    ref_compare r = {0};
    double worst_excess = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]);
        double tol = atol + rtol * fabs(want[i]);
        double excess = isnan(err) ? INFINITY : err - tol;
        double rel = err / fmax(fabs(want[i]), 1e-30);
        if (isnan(err) || rel > r.max_rel)
            r.max_rel = isnan(err) ? INFINITY : rel;
        if (excess > 0)
            r.failures++;
        if (excess > worst_excess || i == 0) {
            worst_excess = excess;
            r.index = i;
            r.got = got[i];
            r.want = want[i];
            r.abs_err = err;
        }
    }
    return r;
}

double ref_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
