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

/* st, or under mpirun with more than one rank, when st is an error: prints
 * it with this rank's number and ends this rank (_exit), which mpirun turns
 * into the end of the whole job, as the other ranks would wait for this one
 * in the next collective forever. */
kiln_status dist_check(kiln_status st);

/* Under mpirun, every rank's device and host in one text, gathered on
 * rank 0 (*text, free() it; NULL on the other ranks and with one rank). */
kiln_status dist_devices(const kiln_device_info *mine, char **text);

/* The processes that train one network together: the job mpirun started
 * (dist_world), or a communicator a program gives a network through the
 * library API (kiln_net_set_comm). NULL stands for one process alone. */
typedef struct dist_comm dist_comm;

/* After dist_start: MPI_COMM_WORLD, or NULL with one rank. */
dist_comm *dist_world(void);

/* A duplicate of the program's communicator (an MPI_Comm * given as const
 * void *), for kiln's collectives alone; every rank of it must call this
 * (MPI_Comm_dup is collective). Without MPI: KILN_ERR_UNSUPPORTED. */
kiln_status dist_comm_open(const void *mpi_comm, dist_comm **out);
/* Frees a communicator of dist_comm_open; NULL and the world are ignored. */
void dist_comm_free(dist_comm *c);

int dist_comm_rank(const dist_comm *c);
int dist_comm_size(const dist_comm *c);

/* Sums n values across the ranks of c, in place (every rank gets the same
 * sums); what names them in an error. */
kiln_status dist_sum_floats(dist_comm *c, float *v, size_t n, const char *what);
kiln_status dist_sum_doubles(dist_comm *c, double *v, size_t n, const char *what);

/* Sums in flight: non-blocking allreduces (MPI_Iallreduce), started in
 * the same order on every rank, finished together by dist_batch_wait. */
typedef struct dist_batch dist_batch;
kiln_status dist_batch_open(size_t cap, dist_batch **out);
void dist_batch_free(dist_batch *b);
/* Starts summing n floats of v across the ranks of c, in place; v must
 * stay untouched until dist_batch_wait. At most cap at once. */
kiln_status dist_batch_start(dist_batch *b, dist_comm *c, float *v, size_t n);
/* Whether any sum is in flight; dist_batch_progress moves them along
 * (Open MPI advances messages only inside MPI calls). */
int dist_batch_pending(const dist_batch *b);
kiln_status dist_batch_progress(dist_batch *b, dist_comm *c);
/* Waits for every sum started. */
kiln_status dist_batch_wait(dist_batch *b, dist_comm *c);

/* Rank 0's n values into v on every rank of c. */
kiln_status dist_broadcast_floats(dist_comm *c, float *v, size_t n, const char *what);

/* Samples [first, first + count) of a global batch of n samples that
 * start at begin: each rank of c takes its share, the shares differing by
 * at most one sample. */
void dist_slice(const dist_comm *c, size_t begin, size_t n, size_t *first, size_t *count);

#endif /* KILN_DIST_H */
