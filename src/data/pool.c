/* Worker threads over jobs of numbered items (see pool.h). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/pool.h"

struct pool {
    pthread_mutex_t lock;
    pthread_cond_t work, done;
    job *jobs[POOL_MAX_JOBS];
    size_t count;
    int stopping;
    int workers;
    pthread_t *threads;
};

int pool_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

/* The oldest queued job with an item left (under the lock). */
static job *next_job(pool *p)
{
    for (size_t k = 0; k < p->count; k++)
        if (p->jobs[k]->next < p->jobs[k]->n)
            return p->jobs[k];
    return NULL;
}

static void record(pool *p, job *j, size_t i, kiln_status st)
{
    pthread_mutex_lock(&p->lock);
    j->failures++;
    if (i < j->first_failed) {
        j->first_failed = i;
        j->st = st;
        snprintf(j->error, sizeof j->error, "%s", kiln_last_error());
    }
    pthread_mutex_unlock(&p->lock);
}

static void *worker(void *arg)
{
    pool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        job *j;
        while (!p->stopping && !(j = next_job(p)))
            pthread_cond_wait(&p->work, &p->lock);
        if (p->stopping)
            break;
        size_t i = j->next++;
        j->active++;
        pthread_mutex_unlock(&p->lock);
        kiln_status st = j->fn(j->user, j, i);
        if (st != KILN_OK)
            record(p, j, i, st);
        pthread_mutex_lock(&p->lock);
        j->active--;
        if (j->next == j->n && j->active == 0)
            pthread_cond_broadcast(&p->done);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

kiln_status pool_start(int workers, pool **out)
{
    *out = NULL;
    pool *p = calloc(1, sizeof *p);
    workers = workers < 1 ? 1 : workers;
    if (!p || !(p->threads = calloc((size_t)workers, sizeof *p->threads))) {
        free(p);
        return error_set(KILN_ERR_OUT_OF_MEMORY, "image loading: out of memory for threads");
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    for (; p->workers < workers; p->workers++)
        if (pthread_create(&p->threads[p->workers], NULL, worker, p) != 0)
            break;
    if (p->workers == 0) {
        pool_stop(p);
        return error_set(KILN_ERR_OUT_OF_MEMORY, "image loading: cannot start a thread");
    }
    *out = p;
    return KILN_OK;
}

void pool_stop(pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->workers; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p);
}

kiln_status pool_submit(pool *p, job *j)
{
    pthread_mutex_lock(&p->lock);
    kiln_status st = KILN_OK;
    if (p->count == POOL_MAX_JOBS) {
        st = error_set(KILN_ERR_INVALID_ARGUMENT, "image loading: more than %d jobs queued",
                       POOL_MAX_JOBS);
    } else {
        j->next = j->active = j->failures = 0;
        j->first_failed = j->n;
        j->st = KILN_OK;
        j->error[0] = '\0';
        j->queued = 1;
        p->jobs[p->count++] = j;
        pthread_cond_broadcast(&p->work);
    }
    pthread_mutex_unlock(&p->lock);
    return st;
}

/* Waits for j's running items and takes it off the queue (under the lock). */
static void finish(pool *p, job *j)
{
    while (j->queued && !(j->next == j->n && j->active == 0))
        pthread_cond_wait(&p->done, &p->lock);
    for (size_t k = 0; j->queued && k < p->count; k++)
        if (p->jobs[k] == j) {
            memmove(p->jobs + k, p->jobs + k + 1, (p->count - k - 1) * sizeof *p->jobs);
            p->count--;
            break;
        }
    j->queued = 0;
}

void pool_wait(pool *p, job *j)
{
    pthread_mutex_lock(&p->lock);
    finish(p, j);
    pthread_mutex_unlock(&p->lock);
}

void pool_cancel(pool *p, job *j)
{
    pthread_mutex_lock(&p->lock);
    if (j->queued)
        j->next = j->n;
    finish(p, j);
    pthread_mutex_unlock(&p->lock);
}
