/* Where a process stands in a job, from fake launcher environments:
 * Open MPI's mpirun, Slurm's srun (a step's task count, or the
 * allocation's where a step is named), a batch script that srun did not
 * start, MPICH's PMI, and nothing; Open MPI's variables win over Slurm's
 * (mpirun inside an allocation). And each rank's share of a batch. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "dist/dist.h"

static const char *const *fake; /* NAME, VALUE pairs, NULL-terminated */

static const char *lookup(const char *name)
{
    for (const char *const *p = fake; p && *p; p += 2)
        if (strcmp(p[0], name) == 0)
            return p[1];
    return NULL;
}

static kiln_job place(const char *const *env)
{
    fake = env;
    kiln_job job;
    kiln_job_place(lookup, &job);
    return job;
}

START_TEST(alone)
{
    static const char *const env[] = {"HOME", "/root", NULL};
    kiln_job job = place(env);
    ck_assert_int_eq(job.rank, 0);
    ck_assert_int_eq(job.local_rank, 0);
    ck_assert_int_eq(job.size, 1);
    ck_assert_str_eq(job.launcher, "none");
}
END_TEST

START_TEST(open_mpi)
{
    static const char *const env[] = {"OMPI_COMM_WORLD_RANK", "5", "OMPI_COMM_WORLD_LOCAL_RANK",
                                      "1", "OMPI_COMM_WORLD_SIZE", "8", NULL};
    kiln_job job = place(env);
    ck_assert_int_eq(job.rank, 5);
    ck_assert_int_eq(job.local_rank, 1);
    ck_assert_int_eq(job.size, 8);
    ck_assert_str_eq(job.launcher, "mpirun");
}
END_TEST

START_TEST(slurm_step)
{
    /* srun -N 2 --ntasks-per-node 4: task 6 is the third on the second node */
    static const char *const env[] = {"SLURM_PROCID", "6", "SLURM_LOCALID", "2",
                                      "SLURM_STEP_NUM_TASKS", "8", "SLURM_NTASKS", "8",
                                      "SLURM_STEP_ID", "0", NULL};
    kiln_job job = place(env);
    ck_assert_int_eq(job.rank, 6);
    ck_assert_int_eq(job.local_rank, 2);
    ck_assert_int_eq(job.size, 8);
    ck_assert_str_eq(job.launcher, "slurm");
    static const char *const older[] = {"SLURM_PROCID", "3", "SLURM_LOCALID", "3",
                                        "SLURM_NTASKS", "4", "SLURM_STEP_ID", "1", NULL};
    job = place(older);
    ck_assert_int_eq(job.rank, 3);
    ck_assert_int_eq(job.local_rank, 3);
    ck_assert_int_eq(job.size, 4);
}
END_TEST

START_TEST(slurm_batch_script_is_one_process)
{
    /* sbatch -n 8 runs the script once, with the allocation's task count */
    static const char *const env[] = {"SLURM_PROCID", "0", "SLURM_LOCALID", "0",
                                      "SLURM_NTASKS", "8", "SLURM_JOB_ID", "42", NULL};
    kiln_job job = place(env);
    ck_assert_int_eq(job.size, 1);
    ck_assert_str_eq(job.launcher, "none");
}
END_TEST

START_TEST(mpirun_inside_an_allocation)
{
    static const char *const env[] = {"SLURM_PROCID", "0", "SLURM_LOCALID", "0",
                                      "SLURM_STEP_NUM_TASKS", "1", "SLURM_STEP_ID", "0",
                                      "OMPI_COMM_WORLD_RANK", "3",
                                      "OMPI_COMM_WORLD_LOCAL_RANK", "1",
                                      "OMPI_COMM_WORLD_SIZE", "4", NULL};
    kiln_job job = place(env);
    ck_assert_int_eq(job.rank, 3);
    ck_assert_int_eq(job.local_rank, 1);
    ck_assert_int_eq(job.size, 4);
    ck_assert_str_eq(job.launcher, "mpirun");
}
END_TEST

START_TEST(pmi_and_nonsense)
{
    static const char *const env[] = {"PMI_RANK", "2", "PMI_SIZE", "3", NULL};
    kiln_job job = place(env);
    ck_assert_int_eq(job.rank, 2);
    ck_assert_int_eq(job.local_rank, 2); /* no local rank given: the rank */
    ck_assert_int_eq(job.size, 3);
    ck_assert_str_eq(job.launcher, "pmi");
    static const char *const bad[] = {"OMPI_COMM_WORLD_RANK", "9", "OMPI_COMM_WORLD_SIZE", "2",
                                      "OMPI_COMM_WORLD_LOCAL_RANK", "-4", NULL};
    job = place(bad);
    ck_assert_int_eq(job.rank, 0);
    ck_assert_int_eq(job.local_rank, 0);
    ck_assert_int_eq(job.size, 2);
    static const char *const zero[] = {"OMPI_COMM_WORLD_SIZE", "0", NULL};
    job = place(zero);
    ck_assert_int_eq(job.size, 1);
}
END_TEST

START_TEST(each_rank_takes_its_share)
{
    /* alone: the whole batch */
    size_t first, count;
    dist_slice(NULL, 128, 37, &first, &count);
    ck_assert_uint_eq(first, 128);
    ck_assert_uint_eq(count, 37);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("dist");
    TCase *tc = tcase_create("dist");
    tcase_add_test(tc, alone);
    tcase_add_test(tc, open_mpi);
    tcase_add_test(tc, slurm_step);
    tcase_add_test(tc, slurm_batch_script_is_one_process);
    tcase_add_test(tc, mpirun_inside_an_allocation);
    tcase_add_test(tc, pmi_and_nonsense);
    tcase_add_test(tc, each_rank_takes_its_share);
    suite_add_tcase(s, tc);
    return test_run(s);
}
