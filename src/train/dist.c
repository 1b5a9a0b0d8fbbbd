/* Data parallelism over MPI; see dist.h. Ranks find each other through
 * Open MPI's environment (OMPI_COMM_WORLD_SIZE); collectives return errors
 * instead of aborting, and kiln names the call that failed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/dist.h"

#ifdef KILN_MPI
#include <mpi.h>
#endif

static int rank, size = 1;

/* The size of the job mpirun started, from its environment (1 if none). */
static int launched_size(void)
{
    const char *env = getenv("OMPI_COMM_WORLD_SIZE");
    if (!env)
        env = getenv("PMI_SIZE");
    return env ? atoi(env) : 1;
}

#ifdef KILN_MPI
static void finish(void)
{
    int done = 0;
    MPI_Finalized(&done);
    if (!done)
        MPI_Finalize();
}

static kiln_status mpi_check(int err, const char *call)
{
    if (err == MPI_SUCCESS)
        return KILN_OK;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(err, text, &len);
    return kiln_fail(KILN_ERR_IO, "%s on rank %d of %d: %s (a rank stopped or failed)", call,
                     rank, size, text);
}
#endif

kiln_status dist_start(void)
{
    int wanted = launched_size();
#ifdef KILN_MPI
    int started = 0;
    MPI_Initialized(&started);
    if (!started && wanted > 1) {
        if (MPI_Init(NULL, NULL) != MPI_SUCCESS)
            return kiln_fail(KILN_ERR_IO, "MPI_Init failed");
        atexit(finish);
        started = 1;
    }
    if (started) {
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &size);
    }
    return KILN_OK;
#else
    if (wanted > 1)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "started by mpirun with %d ranks, but this kiln "
                                               "was built without MPI (install libopenmpi-dev "
                                               "and rebuild with -Dmpi=enabled)", wanted);
    return KILN_OK;
#endif
}

kiln_status dist_check(kiln_status st)
{
    if (st == KILN_OK || size == 1)
        return st;
#ifdef KILN_MPI
    /* MPI_Finalize (at exit) would wait for ranks that wait for this one,
     * and MPI_Abort makes Open MPI 4.1's mpirun crash now and then; a rank
     * that exits with an error without finalizing makes mpirun end the job. */
    fprintf(stderr, "kiln: rank %d of %d failed: %s\nkiln: stopping every rank\n", rank, size,
            kiln_last_error());
    fflush(stdout);
    fflush(stderr);
    _exit(1);
#endif
    return st;
}

int dist_rank(void)
{
    return rank;
}

int dist_size(void)
{
    return size;
}

kiln_status dist_devices(const kiln_device_info *mine, char **text)
{
    *text = NULL;
    if (size == 1)
        return KILN_OK;
#ifdef KILN_MPI
    enum { LINE = 400 };
    char line[LINE], host[MPI_MAX_PROCESSOR_NAME] = "";
    int len = 0;
    MPI_Get_processor_name(host, &len);
    snprintf(line, sizeof line, "rank %d of %d: device %s / %s on %s\n", rank, size,
             mine->platform, mine->name, host);
    char *all = rank == 0 ? calloc((size_t)size, LINE) : NULL;
    if (rank == 0 && !all)
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "out of host memory");
    kiln_status st = mpi_check(MPI_Gather(line, LINE, MPI_CHAR, all, LINE, MPI_CHAR, 0,
                                          MPI_COMM_WORLD),
                               "MPI_Gather of the ranks' devices");
    if (st == KILN_OK && all) { /* one text from the fixed-size lines */
        char *to = all;
        for (int k = 0; k < size; k++) {
            size_t n = strnlen(all + (size_t)k * LINE, LINE - 1);
            memmove(to, all + (size_t)k * LINE, n);
            to += n;
        }
        *to = 0;
        *text = all;
    } else
        free(all);
    return st;
#else
    (void)mine;
    return KILN_OK;
#endif
}

kiln_status dist_sum_floats(float *v, size_t n)
{
    if (size == 1)
        return KILN_OK;
#ifdef KILN_MPI
    return mpi_check(MPI_Allreduce(MPI_IN_PLACE, v, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD),
                     "MPI_Allreduce of the gradients");
#else
    (void)v, (void)n;
    return KILN_OK;
#endif
}

kiln_status dist_sum_doubles(double *v, size_t n)
{
    if (size == 1)
        return KILN_OK;
#ifdef KILN_MPI
    return mpi_check(MPI_Allreduce(MPI_IN_PLACE, v, (int)n, MPI_DOUBLE, MPI_SUM,
                                   MPI_COMM_WORLD),
                     "MPI_Allreduce of the step's loss");
#else
    (void)v, (void)n;
    return KILN_OK;
#endif
}

void dist_slice(size_t begin, size_t n, size_t *first, size_t *count)
{
    size_t lo = n * (size_t)rank / (size_t)size, hi = n * (size_t)(rank + 1) / (size_t)size;
    *first = begin + lo;
    *count = hi - lo;
}
