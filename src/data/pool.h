/* Worker threads (pool.c) that run jobs of numbered items: each worker
 * takes the next item of the oldest job that has one left, so jobs
 * submitted ahead (the next batches) start as soon as earlier ones have
 * no item left. The first failure of a job, by item number, is kept with
 * its message (the workers' kiln_last_error is their own). */
#ifndef KILN_POOL_H
#define KILN_POOL_H

#include <stddef.h>

#include "runtime/runtime.h"

typedef struct job job;

/* Does item i of a job; a failure leaves its message in kiln_last_error. */
typedef kiln_status (*job_fn)(void *user, job *j, size_t i);

struct job {
    job_fn fn;
    void *user;
    size_t n;             /* items */
    /* kept by the pool, under its lock */
    size_t next, active;  /* the next item to hand out; items being done */
    size_t failures;      /* items that failed */
    size_t first_failed;  /* the lowest failed item (n: none) */
    kiln_status st;       /* and its status and message */
    char error[1024];
    int queued;
};

typedef struct pool pool;

/* Starts workers threads (at least 1). */
kiln_status pool_start(int workers, pool **out);
/* Cancels what is queued, lets running items end, joins the threads. */
void pool_stop(pool *p);

/* Queues a job of j->n items (j->fn, j->user and j->n set; the rest is
 * reset here). At most POOL_MAX_JOBS are queued at once. */
#define POOL_MAX_JOBS 8
kiln_status pool_submit(pool *p, job *j);
/* Waits until every item of j is done; j leaves the queue. */
void pool_wait(pool *p, job *j);
/* Hands out no more items of j, waits for those running; j leaves the queue. */
void pool_cancel(pool *p, job *j);

/* The number of cores this process may run on (at least 1). */
int pool_cores(void);

#endif /* KILN_POOL_H */
