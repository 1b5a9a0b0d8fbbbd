/* A seeded generator: fast, the same sequence on every platform. */
#ifndef KILN_RNG_H
#define KILN_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4];
} kiln_rng;

void rng_seed(kiln_rng *rng, uint64_t seed);
uint64_t rng_next(kiln_rng *rng);
/* Uniform in [lo, hi). */
double rng_uniform(kiln_rng *rng, double lo, double hi);
/* Fills n floats uniformly in [lo, hi). */
void rng_fill(kiln_rng *rng, float *x, size_t n, float lo, float hi);
/* Standard normal. */
double rng_normal(kiln_rng *rng);

#endif
