/* Data parallelism through the library API, run under mpirun (2 or more
 * ranks): every rank trains a network given MPI_COMM_WORLD with
 * kiln_net_set_comm on its own part of each global batch of 37 samples
 * (uneven parts; in the last step every rank but the last has none), and
 * a network of its own, alone, on the whole batches. Checked: the ranks'
 * weights and running statistics are the same bits on every rank, match
 * the lone network's within 1e-5 relative, and so do the step losses; a
 * rank that refuses its part (a NaN input) makes every rank fail the step
 * without training; rank 1 starts from other weights and is given rank
 * 0's; a rank with another model makes kiln_net_set_comm fail on every
 * rank, naming the tensor. */
#include <kiln.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IN 6
#define BATCH 37
#define STEPS 6
#define LAST 5 /* the samples of the last step, all on the last rank */
#define SAMPLES (STEPS * BATCH + LAST)

static const char *const model =
    "[input]\nshape = 6\n[linear]\nout = 16\n[batchnorm]\n[relu]\n[linear]\nout = 3\n"
    "[train]\noptimizer = sgd\nlr = 0.1\nmomentum = 0.9\nsync_batchnorm = true\nseed = 3\n";

static int rank, size, failures;

static void check(int ok, const char *what, double value)
{
    if (!ok)
        failures++;
    if (rank == 0 || !ok)
        printf("%s rank %d: %s (%.3g)\n", ok ? "ok  " : "FAIL", rank, what, value);
}

static void need(kiln_status st, const char *call)
{
    if (st == KILN_OK)
        return;
    fprintf(stderr, "rank %d: %s: %s\n", rank, call, kiln_last_error());
    MPI_Abort(MPI_COMM_WORLD, 1);
}

/* Samples of the global batch of step s that this rank trains. */
static void part(int s, size_t *first, size_t *count)
{
    size_t begin = (size_t)s * BATCH;
    if (s == STEPS) {
        *first = begin;
        *count = rank == size - 1 ? LAST : 0;
        return;
    }
    *first = begin + (size_t)BATCH * (size_t)rank / (size_t)size;
    *count = begin + (size_t)BATCH * (size_t)(rank + 1) / (size_t)size - *first;
}

/* The largest difference between the two networks' tensors, relative to
 * the lone network's largest value of each (or 0.01 if smaller: the bias
 * before the batchnorm has no gradient but rounding); and whether this
 * rank's tensors are the same bits as rank 0's. */
static void compare(kiln_net *shared, kiln_net *alone, double *worst, int *same)
{
    *worst = 0;
    *same = 1;
    for (size_t i = 0; i < kiln_net_param_count(shared); i++) {
        kiln_param_info info;
        need(kiln_net_param_info(shared, i, &info), "kiln_net_param_info");
        if (info.is_int64)
            continue;
        float *a = malloc(info.numel * sizeof *a), *b = malloc(info.numel * sizeof *b);
        float *zero = malloc(info.numel * sizeof *zero);
        need(kiln_net_get(shared, info.name, a, info.numel), "kiln_net_get");
        need(kiln_net_get(alone, info.name, b, info.numel), "kiln_net_get");
        memcpy(zero, a, info.numel * sizeof *a);
        MPI_Bcast(zero, (int)info.numel, MPI_FLOAT, 0, MPI_COMM_WORLD);
        double scale = 0.01;
        for (size_t k = 0; k < info.numel; k++)
            scale = fmax(scale, fabs(b[k]));
        for (size_t k = 0; k < info.numel; k++) {
            *worst = fmax(*worst, fabs((double)a[k] - b[k]) / scale);
            *same &= memcmp(&a[k], &zero[k], sizeof a[k]) == 0;
        }
        free(a);
        free(b);
        free(zero);
    }
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    static float x[SAMPLES * IN], y[SAMPLES];
    unsigned seed = 11;
    for (size_t i = 0; i < SAMPLES; i++) { /* the same data on every rank */
        for (int j = 0; j < IN; j++) {
            seed = seed * 1103515245u + 12345u;
            x[i * IN + j] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
        }
        float s = x[i * IN] + x[i * IN + 1];
        y[i] = s < -0.3f ? 0.0f : s < 0.3f ? 1.0f : 2.0f;
    }
    kiln_ctx *ctx;
    kiln_model *m;
    kiln_net *shared, *alone;
    need(kiln_ctx_create(NULL, &ctx), "kiln_ctx_create");
    need(kiln_model_parse(model, "dist_api", &m), "kiln_model_parse");
    need(kiln_net_create(ctx, m, BATCH, &shared), "kiln_net_create");
    need(kiln_net_create(ctx, m, BATCH, &alone), "kiln_net_create");
    if (rank == 1) { /* other weights, replaced by rank 0's */
        float ones[16];
        for (int k = 0; k < 16; k++)
            ones[k] = 1.0f;
        need(kiln_net_set(shared, "0.bias", ones, 16), "kiln_net_set");
    }
    MPI_Comm world = MPI_COMM_WORLD;
    need(kiln_net_set_comm(shared, &world), "kiln_net_set_comm");

    double worst_loss = 0;
    for (int s = 0; s <= STEPS; s++) {
        size_t first, count, begin = (size_t)s * BATCH, n = s == STEPS ? LAST : BATCH;
        part(s, &first, &count);
        float mine = 0, whole = 0;
        need(kiln_net_train_step(shared, count ? x + first * IN : NULL, y + first, count, &mine),
             "kiln_net_train_step (shared)");
        need(kiln_net_train_step(alone, x + begin * IN, y + begin, n, &whole),
             "kiln_net_train_step (alone)");
        worst_loss = fmax(worst_loss, fabs((double)mine - whole) / fmax(1.0, fabs(whole)));
    }
    double worst;
    int same;
    compare(shared, alone, &worst, &same);
    check(worst < 1e-5, "weights and running statistics against one network on the whole "
                        "batches, worst relative difference", worst);
    check(same, "the same bits as rank 0's", same);
    check(worst_loss < 1e-5, "the whole batch's loss on every rank, against the lone network's",
          worst_loss);

    /* the last rank's part holds a NaN: no rank trains */
    static float bad[BATCH * IN];
    memcpy(bad, x, sizeof bad);
    if (rank == size - 1)
        bad[IN * (BATCH - 1)] = NAN;
    size_t first, count;
    part(0, &first, &count);
    uint64_t steps = kiln_net_steps(shared);
    kiln_status st = kiln_net_train_step(shared, bad + first * IN, y + first, count, NULL);
    const char *expect = rank == size - 1 ? "is nan" : "other rank refused";
    check(st != KILN_OK && strstr(kiln_last_error(), expect) && kiln_net_steps(shared) == steps,
          "a NaN on the last rank fails the step on every rank, untrained", (double)st);
    if (st == KILN_OK || !strstr(kiln_last_error(), expect))
        printf("rank %d: %s\n", rank, st ? kiln_last_error() : "the step was taken");

    /* the last rank holds another model: kiln_net_set_comm fails on every
     * rank, naming the tensor, and leaves each network alone */
    static const char *const narrow =
        "[input]\nshape = 6\n[linear]\nout = 12\n[batchnorm]\n[relu]\n[linear]\nout = 3\n"
        "[train]\noptimizer = sgd\nlr = 0.1\n";
    kiln_model *other;
    kiln_net *odd;
    need(kiln_model_parse(rank == size - 1 ? narrow : model, "dist_api", &other),
         "kiln_model_parse");
    need(kiln_net_create(ctx, other, BATCH, &odd), "kiln_net_create");
    st = kiln_net_set_comm(odd, &world);
    check(st != KILN_OK && strstr(kiln_last_error(), "has tensor 0.weight = 12x6 where rank 0 "
                                                     "has 16x6"),
          "another model on the last rank: kiln_net_set_comm fails on every rank, naming it",
          (double)st);
    if (st == KILN_OK || !strstr(kiln_last_error(), "12x6"))
        printf("rank %d: %s\n", rank, st ? kiln_last_error() : "the models were accepted");
    check(kiln_net_train_step(odd, x, y, BATCH, NULL) == KILN_OK,
          "and the network trains alone afterwards", 0);
    kiln_net_free(odd);
    kiln_model_free(other);

    kiln_net_free(shared);
    kiln_net_free(alone);
    kiln_model_free(m);
    kiln_ctx_free(ctx);
    int total = 0;
    MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Finalize();
    return total ? 1 : 0;
}
