/* Data parallelism over MPI; see dist.h. Ranks find each other through
 * the launcher's environment (dist_place); collectives return errors
 * instead of aborting, and kiln names the call that failed. Every
 * collective is non-blocking and waited for by wait_for, which gives up
 * after the communicator's timeout (or soon after a stop request) and
 * then asks each other rank, on a communicator of its own, whether it is
 * waiting in a collective too: the ranks that do not answer are the ones
 * named. */
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dist/dist.h"

#ifdef KILN_MPI
#include <mpi.h>
#endif

#define HOST_MAX 64   /* a rank's host name, as the errors show it */
#define ANSWER_MAX 200 /* a rank's answer to "where are you waiting?" */

static int size = 1;

struct dist_comm {
#ifdef KILN_MPI
    MPI_Comm comm, ping;      /* kiln's collectives; the questions of wait_for */
    MPI_Request *answering;   /* per rank: the answer in flight to it */
#endif
    int can_ask;              /* ping is made: wait_for may ask and answer */
    int rank, size;
    int owned;                /* made by dist_comm_open: freed with the network */
    double timeout;
    volatile sig_atomic_t *stop;
    long seq;                 /* collectives started on this communicator */
    char doing[160];          /* the one waited for now ("" when none) */
    char *hosts;              /* HOST_MAX per rank */
    char *answers;            /* ANSWER_MAX per rank: what this rank told it */
};

static dist_comm world;

static const char *env_lookup(const char *name)
{
    return getenv(name);
}

void dist_place(const char *(*lookup)(const char *name), kiln_job *out)
{
    if (!lookup)
        lookup = env_lookup;
    static const struct {
        const char *launcher, *rank, *local, *size, *needs;
    } kinds[] = {
        {"mpirun", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_SIZE",
         NULL},
        {"slurm", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_STEP_NUM_TASKS", NULL},
        {"slurm", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS", "SLURM_STEP_ID"},
        {"pmi", "PMI_RANK", "MPI_LOCALRANKID", "PMI_SIZE", NULL},
    };
    *out = (kiln_job){.rank = 0, .local_rank = 0, .size = 1, .launcher = "none"};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        const char *n = lookup(kinds[k].size);
        if (!n || (kinds[k].needs && !lookup(kinds[k].needs)) || atoi(n) < 1)
            continue;
        const char *r = lookup(kinds[k].rank), *l = lookup(kinds[k].local);
        out->size = atoi(n);
        out->rank = r ? atoi(r) : 0;
        out->local_rank = l ? atoi(l) : out->rank;
        out->launcher = kinds[k].launcher;
        if (out->rank < 0 || out->rank >= out->size)
            out->rank = 0;
        if (out->local_rank < 0)
            out->local_rank = 0;
        return;
    }
}

void kiln_job_place(const char *(*lookup)(const char *name), kiln_job *out)
{
    if (out)
        dist_place(lookup, out);
}

void dist_comm_set_timeout(dist_comm *c, double seconds)
{
    if (!c)
        return;
    const char *env = getenv("KILN_DIST_TIMEOUT");
    double v = env ? atof(env) : 0;
    c->timeout = v > 0 ? v : seconds > 0 ? seconds : DIST_TIMEOUT_DEFAULT;
}

double dist_comm_timeout(const dist_comm *c)
{
    return c ? c->timeout : DIST_TIMEOUT_DEFAULT;
}

void dist_comm_watch(dist_comm *c, volatile sig_atomic_t *stop)
{
    if (c)
        c->stop = stop;
}

#ifdef KILN_MPI
enum { TAG_ASK = 1, TAG_ANSWER = 2 };

static double seconds_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

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
    return error_set(KILN_ERR_IO, "%s on rank %d of %d: %s (a rank stopped or failed)", call,
                     c->rank, c->size, text);
}

/* Answers the other ranks' questions: which collective this rank waits in. */
static void answer_questions(dist_comm *c)
{
    if (!c->can_ask)
        return; /* still being made */
    int asked = 0;
    MPI_Status s;
    while (MPI_Iprobe(MPI_ANY_SOURCE, TAG_ASK, c->ping, &asked, &s) == MPI_SUCCESS && asked) {
        long theirs = 0;
        int from = s.MPI_SOURCE, idle = 1;
        MPI_Recv(&theirs, 1, MPI_LONG, from, TAG_ASK, c->ping, MPI_STATUS_IGNORE);
        if (c->answering[from] != MPI_REQUEST_NULL)
            MPI_Test(&c->answering[from], &idle, MPI_STATUS_IGNORE);
        if (!idle)
            continue; /* an earlier answer is still on its way */
        char *a = c->answers + (size_t)from * ANSWER_MAX;
        snprintf(a, ANSWER_MAX, "is waiting in collective %ld (%s)", c->seq,
                 c->doing[0] ? c->doing : "none");
        MPI_Isend(a, ANSWER_MAX, MPI_CHAR, from, TAG_ANSWER, c->ping, &c->answering[from]);
    }
}

/* After a wait gave up: asks every other rank where it waits, for up to
 * two seconds, and appends to the error what each answered or that it
 * did not answer. */
static void ask_the_others(dist_comm *c)
{
    static long asking; /* the question's buffer outlives unanswered sends */
    asking = c->seq;
    if (!c->can_ask)
        return;
    size_t n = (size_t)c->size;
    MPI_Request *sent = calloc(n, sizeof *sent), *got = calloc(n, sizeof *got);
    char *heard = calloc(n, ANSWER_MAX);
    if (!sent || !got || !heard) {
        free(sent), free(got), free(heard);
        return;
    }
    for (size_t p = 0; p < n; p++) {
        sent[p] = got[p] = MPI_REQUEST_NULL;
        if ((int)p == c->rank)
            continue;
        MPI_Isend(&asking, 1, MPI_LONG, (int)p, TAG_ASK, c->ping, &sent[p]);
        MPI_Irecv(heard + p * ANSWER_MAX, ANSWER_MAX, MPI_CHAR, (int)p, TAG_ANSWER, c->ping,
                  &got[p]);
    }
    double until = seconds_now() + fmin(2.0, c->timeout);
    int all = 0;
    while (!all && seconds_now() < until) {
        answer_questions(c);
        MPI_Testall((int)n, got, &all, MPI_STATUSES_IGNORE);
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    for (size_t p = 0; p < n; p++) {
        if ((int)p == c->rank)
            continue;
        int done = 1;
        if (got[p] != MPI_REQUEST_NULL)
            MPI_Test(&got[p], &done, MPI_STATUS_IGNORE);
        const char *host = c->hosts ? c->hosts + p * HOST_MAX : "?";
        if (done) {
            heard[p * ANSWER_MAX + ANSWER_MAX - 1] = 0;
            error_append("; rank %zu (on %s) %s", p, host, heard + p * ANSWER_MAX);
        } else {
            error_append("; rank %zu (on %s) did not answer: it is not in a collective "
                         "(still computing, stopped or hung) or cannot be reached",
                         p, host);
            MPI_Cancel(&got[p]);
            MPI_Wait(&got[p], MPI_STATUS_IGNORE);
        }
        if (sent[p] != MPI_REQUEST_NULL)
            MPI_Request_free(&sent[p]);
    }
    free(sent);
    free(got);
    free(heard);
}

/* Waits for n requests of c; call names them. Polls: tight for the first
 * SPIN_SECONDS, as Open MPI's blocking calls do (it moves the pieces of a
 * large message only inside MPI calls: sleeping between them slows a
 * 4 MiB sum), then every 50 us, for a rank far behind; it answers the
 * other ranks' questions meanwhile, until the timeout (or DIST_STOP_GRACE
 * after a stop request). */
#define SPIN_SECONDS 0.5
static kiln_status wait_for(dist_comm *c, int n, MPI_Request *req, const char *call)
{
    c->seq++;
    snprintf(c->doing, sizeof c->doing, "%s", call);
    double start = seconds_now(), stopped = -1, waited = 0;
    for (unsigned spin = 0;; spin++) {
        int done = 0, err = MPI_Testall(n, req, &done, MPI_STATUSES_IGNORE);
        if (err != MPI_SUCCESS || done) {
            c->doing[0] = 0;
            return comm_check(c, err, call);
        }
        int slow = waited > SPIN_SECONDS;
        if (spin % 64 && !slow)
            continue;
        sched_yield(); /* now and then: the kernel's network work may wait for this core */
        answer_questions(c);
        waited = seconds_now() - start;
        if (stopped < 0 && c->stop && *c->stop)
            stopped = waited;
        if (waited > c->timeout || (stopped >= 0 && waited - stopped > DIST_STOP_GRACE))
            break;
        if (slow)
            nanosleep(&(struct timespec){0, 50000}, NULL);
    }
    if (stopped >= 0 && waited <= c->timeout)
        error_set(KILN_ERR_IO, "stopped on request: %s (collective %ld) on rank %d of %d "
                               "waited %.1f s for the other ranks",
                  call, c->seq, c->rank, c->size, waited);
    else
        error_set(KILN_ERR_IO, "%s (collective %ld) on rank %d of %d timed out after %.1f s "
                               "(dist_timeout)",
                  call, c->seq, c->rank, c->size, waited);
    ask_the_others(c);
    return KILN_ERR_IO;
}

/* The second communicator, the answers' requests and every rank's host:
 * what wait_for needs beside c->comm. */
static kiln_status prepare(dist_comm *c)
{
    MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(c->comm, &c->rank);
    MPI_Comm_size(c->comm, &c->size);
    dist_comm_set_timeout(c, c->timeout);
    size_t n = (size_t)c->size;
    c->hosts = calloc(n, HOST_MAX);
    c->answers = calloc(n, ANSWER_MAX);
    c->answering = malloc(n * sizeof *c->answering);
    if (!c->hosts || !c->answers || !c->answering)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "MPI: out of host memory");
    for (size_t p = 0; p < n; p++)
        c->answering[p] = MPI_REQUEST_NULL;
    c->ping = MPI_COMM_NULL;
    MPI_Request r;
    kiln_status st = comm_check(c, MPI_Comm_idup(c->comm, &c->ping, &r), "MPI_Comm_idup");
    if (st == KILN_OK)
        st = wait_for(c, 1, &r, "MPI_Comm_idup of kiln's communicator");
    if (st != KILN_OK)
        return st;
    MPI_Comm_set_errhandler(c->ping, MPI_ERRORS_RETURN);
    c->can_ask = 1;
    char mine[MPI_MAX_PROCESSOR_NAME] = "";
    int len = 0;
    MPI_Get_processor_name(mine, &len);
    snprintf(c->hosts + (size_t)c->rank * HOST_MAX, HOST_MAX, "%s", mine);
    st = comm_check(c, MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, c->hosts, HOST_MAX,
                                      MPI_CHAR, c->comm, &r),
                    "MPI_Iallgather");
    return st == KILN_OK ? wait_for(c, 1, &r, "MPI_Iallgather of the ranks' hosts") : st;
}

static void release(dist_comm *c)
{
    int finished = 0;
    MPI_Finalized(&finished);
    if (!finished && c->can_ask)
        MPI_Comm_free(&c->ping);
    c->can_ask = 0;
    free(c->hosts);
    free(c->answers);
    free(c->answering);
    c->hosts = c->answers = NULL;
    c->answering = NULL;
}
#endif

kiln_status dist_start(void)
{
    kiln_job job;
    dist_place(NULL, &job);
#ifdef KILN_MPI
    int started = 0;
    MPI_Initialized(&started);
    if (!started && job.size > 1) {
        /* kiln's sums are non-blocking (wait_for); Open MPI's default choice
         * for them takes 2-8x longer from 1 MiB up than its ring (measured
         * with 2 ranks over shared memory), which the blocking sum used */
        setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "1", 0);
        if (MPI_Init(NULL, NULL) != MPI_SUCCESS)
            return error_set(KILN_ERR_IO, "MPI_Init failed");
        atexit(finish);
        started = 1;
    }
    static int broken; /* the world could not be prepared: no rank may train alone */
    if (broken)
        return error_set(KILN_ERR_IO, "MPI: the job's ranks could not reach each other "
                                      "earlier in this process");
    if (!started || world.size > 1)
        return KILN_OK;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size == 1)
        return KILN_OK;
    world = (dist_comm){.comm = MPI_COMM_WORLD};
    kiln_status st = prepare(&world);
    if (st != KILN_OK) {
        size = 1; /* dist_world stays NULL: nothing waits on a broken world */
        broken = 1;
    }
    return st;
#else
    if (job.size > 1)
        return error_set(KILN_ERR_UNSUPPORTED, "started by %s with %d ranks, but this kiln "
                                               "was built without MPI (install libopenmpi-dev "
                                               "and rebuild with -Dmpi=enabled)",
                         job.launcher, job.size);
    return KILN_OK;
#endif
}

kiln_status dist_devices(const kiln_device_info *mine, char **text)
{
    *text = NULL;
    if (size == 1)
        return KILN_OK;
#ifdef KILN_MPI
    enum { LINE = 400 };
    char line[LINE];
    snprintf(line, sizeof line, "rank %d of %d: device %s / %s on %s\n", world.rank, size,
             mine->platform, mine->name, world.hosts + (size_t)world.rank * HOST_MAX);
    char *all = world.rank == 0 ? calloc((size_t)size, LINE) : NULL;
    if (world.rank == 0 && !all)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "out of host memory");
    MPI_Request r;
    kiln_status st = comm_check(&world, MPI_Igather(line, LINE, MPI_CHAR, all, LINE, MPI_CHAR,
                                                    0, MPI_COMM_WORLD, &r),
                                "MPI_Igather");
    if (st == KILN_OK)
        st = wait_for(&world, 1, &r, "MPI_Igather of the ranks' devices");
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
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_net_set_comm: MPI is %s; call "
                                                    "MPI_Init first",
                         finished ? "finalized" : "not initialized");
    dist_comm *c = calloc(1, sizeof *c);
    if (!c)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_net_set_comm: out of host memory");
    c->owned = 1;
    c->ping = MPI_COMM_NULL;
    MPI_Comm given = *(const MPI_Comm *)mpi_comm;
    MPI_Comm_rank(given, &c->rank);
    MPI_Comm_size(given, &c->size);
    c->timeout = DIST_TIMEOUT_DEFAULT;
    dist_comm_set_timeout(c, 0);
    MPI_Request r;
    int err = MPI_Comm_idup(given, &c->comm, &r);
    kiln_status st = comm_check(c, err, "kiln_net_set_comm: MPI_Comm_idup");
    if (st == KILN_OK) {
        c->ping = MPI_COMM_NULL;
        st = wait_for(c, 1, &r, "kiln_net_set_comm: MPI_Comm_idup");
    }
    if (st == KILN_OK)
        st = prepare(c);
    if (st != KILN_OK) {
        dist_comm_free(c);
        return st;
    }
    *out = c;
    return KILN_OK;
#else
    (void)mpi_comm;
    return error_set(KILN_ERR_UNSUPPORTED, "kiln_net_set_comm: this kiln was built without MPI "
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
    if (!finished && c->comm != MPI_COMM_NULL && c->comm != 0)
        MPI_Comm_free(&c->comm);
    release(c);
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
    snprintf(call, sizeof call, "MPI_Iallreduce of %s", what);
    MPI_Request r;
    kiln_status st = comm_check(c, MPI_Iallreduce(MPI_IN_PLACE, v, (int)n, type, MPI_SUM,
                                                  c->comm, &r),
                                call);
    return st == KILN_OK ? wait_for(c, 1, &r, call) : st;
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
        return error_set(KILN_ERR_OUT_OF_MEMORY, "out of host memory for the gradient buckets");
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
        return error_set(KILN_ERR_INVALID_ARGUMENT, "more than %zu gradient buckets in flight",
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
    return wait_for(c, (int)n, b->requests, "MPI_Iallreduce of the gradient buckets");
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
    snprintf(call, sizeof call, "MPI_Ibcast of %s", what);
    MPI_Request r;
    kiln_status st = comm_check(c, MPI_Ibcast(v, (int)n, MPI_FLOAT, 0, c->comm, &r), call);
    return st == KILN_OK ? wait_for(c, 1, &r, call) : st;
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

#ifdef KILN_MPI
#define NOTE_MAX 480 /* what a rank says about its facts */

/* The first line where mine and rank 0's facts differ, as a note ("" when
 * none). */
static void compare_facts(const char *mine, const char *theirs, char *note)
{
    while (*mine || *theirs) {
        size_t a = strcspn(mine, "\n"), b = strcspn(theirs, "\n");
        if (a != b || strncmp(mine, theirs, a) != 0) {
            const char *eq = strstr(mine, " = ");
            size_t key = eq && (size_t)(eq - mine) < a ? (size_t)(eq - mine) + 3 : 0;
            if (key && b >= key && strncmp(mine, theirs, key) == 0)
                snprintf(note, NOTE_MAX, "%.*s where rank 0 has %.*s", (int)a, mine,
                         (int)(b - key), theirs + key);
            else
                snprintf(note, NOTE_MAX, "\"%.*s\" where rank 0 has \"%.*s\"", (int)a, mine,
                         (int)b, theirs);
            return;
        }
        mine += a + (mine[a] != 0);
        theirs += b + (theirs[b] != 0);
    }
    note[0] = 0;
}

/* Rank 0's facts on every rank (free() them). */
static kiln_status rank0_facts(dist_comm *c, const char *facts, char **out)
{
    long len = c->rank == 0 ? (long)strlen(facts) + 1 : 0;
    MPI_Request r;
    kiln_status st = comm_check(c, MPI_Ibcast(&len, 1, MPI_LONG, 0, c->comm, &r), "MPI_Ibcast");
    if (st == KILN_OK)
        st = wait_for(c, 1, &r, "MPI_Ibcast of the length of rank 0's settings");
    char *all = st == KILN_OK ? calloc((size_t)len + 1, 1) : NULL;
    if (st == KILN_OK && !all)
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "out of host memory for rank 0's settings");
    if (st == KILN_OK && c->rank == 0)
        memcpy(all, facts, (size_t)len);
    if (st == KILN_OK)
        st = comm_check(c, MPI_Ibcast(all, (int)len, MPI_CHAR, 0, c->comm, &r), "MPI_Ibcast");
    if (st == KILN_OK)
        st = wait_for(c, 1, &r, "MPI_Ibcast of rank 0's settings");
    if (st != KILN_OK)
        free(all);
    *out = st == KILN_OK ? all : NULL;
    return st;
}

/* The error every rank returns from the notes of all ranks: the failures
 * if any rank failed, else the disagreements. */
static kiln_status agreed_error(const dist_comm *c, const char *what, const char *notes,
                                kiln_status mine)
{
    int failures = 0, shown = 0;
    for (int p = 0; p < c->size; p++)
        failures += strncmp(notes + (size_t)p * NOTE_MAX, "failed: ", 8) == 0;
    for (int p = 0; p < c->size && shown < 4; p++) {
        const char *n = notes + (size_t)p * NOTE_MAX;
        if (!n[0] || (failures && strncmp(n, "failed: ", 8) != 0))
            continue;
        if (shown++ == 0)
            error_set(KILN_ERR_INVALID_ARGUMENT, "%s", failures ? "" : what);
        if (failures)
            error_append("%srank %d of %d %s", shown > 1 ? "; " : "", p, c->size, n);
        else
            error_append("%s rank %d has %s", shown > 1 ? ";" : ":", p, n);
    }
    if (!shown)
        return KILN_OK;
    return mine != KILN_OK ? mine : failures ? KILN_ERR_IO : KILN_ERR_INVALID_ARGUMENT;
}
#endif

kiln_status dist_agree(dist_comm *c, const char *what, const char *facts, kiln_status mine)
{
    if (dist_comm_size(c) == 1)
        return mine;
#ifdef KILN_MPI
    char *notes = calloc((size_t)c->size, NOTE_MAX), *theirs = NULL;
    if (!notes)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "out of host memory");
    char *note = notes + (size_t)c->rank * NOTE_MAX;
    if (mine != KILN_OK)
        snprintf(note, NOTE_MAX, "failed: %s", kiln_last_error());
    kiln_status st = rank0_facts(c, mine == KILN_OK && facts ? facts : "", &theirs);
    if (st == KILN_OK && mine == KILN_OK && c->rank > 0)
        compare_facts(facts, theirs, note);
    MPI_Request r;
    if (st == KILN_OK)
        st = comm_check(c, MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, notes, NOTE_MAX,
                                          MPI_CHAR, c->comm, &r),
                        "MPI_Iallgather");
    if (st == KILN_OK)
        st = wait_for(c, 1, &r, "MPI_Iallgather of the ranks' agreement");
    if (st == KILN_OK)
        st = agreed_error(c, what, notes, mine);
    free(theirs);
    free(notes);
    return st;
#else
    (void)what, (void)facts;
    return mine;
#endif
}
