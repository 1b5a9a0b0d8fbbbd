/* Data-parallel training over MPI (dist.c): under `mpirun -np N`, every
 * rank trains the same network on its slice of each global batch, and the
 * gradients are summed across ranks before each optimizer step. Without
 * mpirun (or in a build without MPI) there is one rank and every call is
 * a no-op. */
#ifndef KILN_DIST_H
#define KILN_DIST_H

#include "runtime/runtime.h"

/* Joins the MPI job when started by mpirun (once per process; finalized
 * at exit). A build without MPI run under mpirun with more than one rank
 * is an error saying so. */
kiln_status dist_start(void);

int dist_rank(void);
/* st, or under mpirun with more than one rank, when st is an error: prints
 * it with this rank's number and ends the whole job (MPI_Abort), as the
 * other ranks would wait for this one in the next collective forever. */
kiln_status dist_check(kiln_status st);

int dist_size(void);

/* Under mpirun, every rank's device and host in one text, gathered on
 * rank 0 (*text, free() it; NULL on the other ranks and with one rank). */
kiln_status dist_devices(const kiln_device_info *mine, char **text);

/* Sums n values across ranks, in place (every rank gets the sums). */
kiln_status dist_sum_floats(float *v, size_t n);
kiln_status dist_sum_doubles(double *v, size_t n);

/* Samples [first, first + count) of a global batch of n samples that
 * start at begin: rank r takes its share, the shares differing by at most
 * one sample. */
void dist_slice(size_t begin, size_t n, size_t *first, size_t *count);

#endif /* KILN_DIST_H */
