/* Data-parallel training over MPI (dist.c): under `mpirun -np N`, every
 * rank trains the same network on its slice of each global batch, and the
 * gradients are summed across ranks before each optimizer step. Without
 * mpirun (or in a build without MPI) there is one rank and every call is
 * a no-op. */
#ifndef KILN_DIST_H
#define KILN_DIST_H

#include <signal.h>

#include "runtime/runtime.h"

/* Joins the MPI job when started by mpirun or srun (once per process;
 * finalized at exit). A build without MPI run under a launcher with more
 * than one rank is an error saying so. */
kiln_status dist_start(void);

/* Where this process stands in the job a launcher started, from a
 * getenv-like lookup: Open MPI's OMPI_COMM_WORLD_{RANK,LOCAL_RANK,SIZE},
 * else a Slurm step's SLURM_PROCID, SLURM_LOCALID and SLURM_STEP_NUM_TASKS
 * (SLURM_NTASKS where srun set SLURM_STEP_ID), else PMI_RANK and
 * PMI_SIZE; alone: 0, 0, 1. (kiln_job_place is the public form.) */
void dist_place(const char *(*lookup)(const char *name), kiln_job *out);

/* How long one collective may wait for the other ranks before it fails,
 * naming itself and the ranks that did not join it, when no timeout is
 * given (KILN_DIST_TIMEOUT and [train] dist_timeout set one). */
#define DIST_TIMEOUT_DEFAULT 300.0
/* After a stop request (SIGTERM, Ctrl-C), a collective waits this much
 * longer at most before it gives up, so a job whose rank hangs still ends
 * within seconds. */
#define DIST_STOP_GRACE 10.0
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

/* The longest a collective of c may wait: KILN_DIST_TIMEOUT when set, else
 * seconds when above 0, else DIST_TIMEOUT_DEFAULT. On expiry the call
 * fails naming the collective and each rank that did not answer (a rank
 * waiting in a collective answers with which one); c is then unusable and
 * the program should end the job (MPI_Abort; `kiln train` exits). */
void dist_comm_set_timeout(dist_comm *c, double seconds);
double dist_comm_timeout(const dist_comm *c);
/* A flag that, once nonzero, makes a collective that still waits give up
 * after DIST_STOP_GRACE seconds (NULL: none). */
void dist_comm_watch(dist_comm *c, volatile sig_atomic_t *stop);

/* Every rank of c checks its facts (lines of "key = value") against rank
 * 0's; mine is this rank's status so far (a rank that failed takes part
 * too, with its error). If a rank failed or a line differs, every rank
 * returns the same error, naming the ranks, their values and rank 0's
 * (what: what is being compared, for the message). Collective. */
kiln_status dist_agree(dist_comm *c, const char *what, const char *facts, kiln_status mine);

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
