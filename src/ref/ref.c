/* Float64 host references and the seeded generator (see ref.h). */
#include <math.h>
#include <time.h>

#include "ref/ref.h"

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
