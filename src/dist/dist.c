/* Data parallelism over MPI; see dist.h. Ranks find each other through
 * Open MPI's environment (OMPI_COMM_WORLD_SIZE); collectives return errors
 * instead of aborting, and kiln names the call that failed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dist/dist.h"

#ifdef KILN_MPI
#include <mpi.h>
static int rank;
#endif

static int size = 1;

struct dist_comm {
#ifdef KILN_MPI
    MPI_Comm comm;
#endif
    int rank, size;
    int owned; /* made by dist_comm_open: freed with the network */
};

static dist_comm world;

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

static kiln_status comm_check(const dist_comm *c, int err, const char *call)
{
    if (err == MPI_SUCCESS)
        return KILN_OK;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(err, text, &len);
    return kiln_fail(KILN_ERR_IO, "%s on rank %d of %d: %s (a rank stopped or failed)", call,
                     c->rank, c->size, text);
}

static kiln_status mpi_check(int err, const char *call)
{
    return comm_check(&world, err, call);
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
        world = (dist_comm){.comm = MPI_COMM_WORLD, .rank = rank, .size = size};
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

dist_comm *dist_world(void)
{
    return size > 1 ? &world : NULL;
}

kiln_status dist_comm_open(const void *mpi_comm, dist_comm **out)
{
    *out = NULL;
#ifdef KILN_MPI
    int started = 0, finished = 0;
    MPI_Initialized(&started);
    MPI_Finalized(&finished);
    if (!started || finished)
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_net_set_comm: MPI is %s; call "
                                                    "MPI_Init first",
                         finished ? "finalized" : "not initialized");
    dist_comm *c = calloc(1, sizeof *c);
    if (!c)
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "kiln_net_set_comm: out of host memory");
    c->owned = 1;
    int err = MPI_Comm_dup(*(const MPI_Comm *)mpi_comm, &c->comm);
    if (err != MPI_SUCCESS) {
        free(c);
        return comm_check(&world, err, "kiln_net_set_comm: MPI_Comm_dup");
    }
    MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(c->comm, &c->rank);
    MPI_Comm_size(c->comm, &c->size);
    *out = c;
    return KILN_OK;
#else
    (void)mpi_comm;
    return kiln_fail(KILN_ERR_UNSUPPORTED, "kiln_net_set_comm: this kiln was built without MPI "
                                           "(install libopenmpi-dev and rebuild with "
                                           "-Dmpi=enabled)");
#endif
}

void dist_comm_free(dist_comm *c)
{
    if (!c || !c->owned)
        return;
#ifdef KILN_MPI
    int finished = 0;
    MPI_Finalized(&finished);
    if (!finished)
        MPI_Comm_free(&c->comm);
#endif
    free(c);
}

int dist_comm_rank(const dist_comm *c)
{
    return c ? c->rank : 0;
}

int dist_comm_size(const dist_comm *c)
{
    return c ? c->size : 1;
}

#ifdef KILN_MPI
/* Sums n values of an MPI type across the communicator, in place. */
static kiln_status sum_in_place(dist_comm *c, void *v, size_t n, MPI_Datatype type,
                                const char *what)
{
    char call[160];
    snprintf(call, sizeof call, "MPI_Allreduce of %s", what);
    return comm_check(c, MPI_Allreduce(MPI_IN_PLACE, v, (int)n, type, MPI_SUM, c->comm), call);
}
#endif

kiln_status dist_sum_floats(dist_comm *c, float *v, size_t n, const char *what)
{
    if (dist_comm_size(c) == 1)
        return KILN_OK;
#ifdef KILN_MPI
    return sum_in_place(c, v, n, MPI_FLOAT, what);
#else
    (void)v, (void)n, (void)what;
    return KILN_OK;
#endif
}

kiln_status dist_sum_doubles(dist_comm *c, double *v, size_t n, const char *what)
{
    if (dist_comm_size(c) == 1)
        return KILN_OK;
#ifdef KILN_MPI
    return sum_in_place(c, v, n, MPI_DOUBLE, what);
#else
    (void)v, (void)n, (void)what;
    return KILN_OK;
#endif
}

struct dist_batch {
    size_t cap, count;
#ifdef KILN_MPI
    MPI_Request *requests;
#endif
};

kiln_status dist_batch_open(size_t cap, dist_batch **out)
{
    dist_batch *b = calloc(1, sizeof *b);
#ifdef KILN_MPI
    if (b && !(b->requests = calloc(cap, sizeof *b->requests))) {
        free(b);
        b = NULL;
    }
#endif
    if (!b)
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "out of host memory for the gradient buckets");
    b->cap = cap;
    *out = b;
    return KILN_OK;
}

void dist_batch_free(dist_batch *b)
{
    if (!b)
        return;
#ifdef KILN_MPI
    free(b->requests);
#endif
    free(b);
}

kiln_status dist_batch_start(dist_batch *b, dist_comm *c, float *v, size_t n)
{
    if (dist_comm_size(c) == 1)
        return KILN_OK;
    if (b->count == b->cap)
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "more than %zu gradient buckets in flight",
                         b->cap);
#ifdef KILN_MPI
    kiln_status st = comm_check(c, MPI_Iallreduce(MPI_IN_PLACE, v, (int)n, MPI_FLOAT, MPI_SUM,
                                                  c->comm, &b->requests[b->count]),
                                "MPI_Iallreduce of a gradient bucket");
    if (st != KILN_OK)
        return st;
    b->count++;
    return dist_batch_progress(b, c);
#else
    (void)v, (void)n;
    return KILN_OK;
#endif
}

int dist_batch_pending(const dist_batch *b)
{
    return b->count > 0;
}

kiln_status dist_batch_progress(dist_batch *b, dist_comm *c)
{
    if (b->count == 0)
        return KILN_OK;
#ifdef KILN_MPI
    int done = 0; /* finished requests stay in the list, as MPI_REQUEST_NULL */
    return comm_check(c, MPI_Testall((int)b->count, b->requests, &done, MPI_STATUSES_IGNORE),
                      "MPI_Testall of the gradient buckets");
#else
    (void)c;
    return KILN_OK;
#endif
}

kiln_status dist_batch_wait(dist_batch *b, dist_comm *c)
{
    size_t n = b->count;
    b->count = 0;
    if (n == 0)
        return KILN_OK;
#ifdef KILN_MPI
    return comm_check(c, MPI_Waitall((int)n, b->requests, MPI_STATUSES_IGNORE),
                      "MPI_Waitall of the gradient buckets");
#else
    (void)c;
    return KILN_OK;
#endif
}

kiln_status dist_broadcast_floats(dist_comm *c, float *v, size_t n, const char *what)
{
    if (dist_comm_size(c) == 1)
        return KILN_OK;
#ifdef KILN_MPI
    char call[160];
    snprintf(call, sizeof call, "MPI_Bcast of %s", what);
    return comm_check(c, MPI_Bcast(v, (int)n, MPI_FLOAT, 0, c->comm), call);
#else
    (void)v, (void)n, (void)what;
    return KILN_OK;
#endif
}

void dist_slice(const dist_comm *c, size_t begin, size_t n, size_t *first, size_t *count)
{
    size_t r = (size_t)dist_comm_rank(c), k = (size_t)dist_comm_size(c);
    size_t lo = n * r / k, hi = n * (r + 1) / k;
    *first = begin + lo;
    *count = hi - lo;
}
