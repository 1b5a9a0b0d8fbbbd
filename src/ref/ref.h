/* Float64 host references and a seeded random generator, used by the
 * tests and by `kiln check` to judge device results. Not part of libkiln. */
#ifndef KILN_REF_H
#define KILN_REF_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/rng.h"

/* Row-major C[m,n] = alpha op(A) op(B) + beta C in float64, where A is
 * stored m x k (or k x m when trans_a), B k x n (or n x k when trans_b). */
void ref_gemm(int trans_a, int trans_b, size_t m, size_t n, size_t k, double alpha,
              const float *a, const float *b, double beta, const float *c_in, double *c_out);

/* The worst element of a comparison of got against want with tolerance
 * |got - want| <= atol + rtol |want|. */
typedef struct {
    size_t index;      /* worst element (largest excess over its tolerance) */
    double got, want;  /* its values */
    double abs_err;    /* |got - want| there */
    double max_rel;    /* largest |got - want| / max(|want|, 1e-30) over all */
    size_t failures;   /* elements outside tolerance (NaN counts) */
} ref_compare;

ref_compare ref_compare_arrays(const float *got, const double *want, size_t n, double atol,
                               double rtol);

/* Monotonic wall-clock seconds, for the timings that tools print. */
double ref_seconds(void);

#endif /* KILN_REF_H */
