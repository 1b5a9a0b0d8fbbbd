/* kiln bench's start-up figures: the seconds from a fresh process to its
 * first trained batch, cold (empty kernel caches: kiln's, PoCL's and
 * Mesa's) and warm (the caches the cold run left). Each run is a worker
 * process (this program, re-executed as `kiln bench --first-batch-worker
 * MODEL`), since a process keeps its compiled programs in memory. */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <ftw.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "ref/ref.h"

extern char **environ;

/* The worker: opens the device, compiles the model and trains one batch
 * of zeros-and-pattern inputs, then prints "ok SECONDS CPU_SECONDS" (CPU
 * time of all its threads, a figure that other processes on the machine
 * disturb less than the wall-clock time). Freeing the
 * context afterwards writes the kernel cache, outside the time. */
int cli_first_batch_worker(const char *model, const char *device)
{
    double start = ref_seconds();
    kiln_model *m = NULL;
    kiln_ctx *ctx = NULL;
    kiln_net *net = NULL;
    float *x = NULL, *y = NULL;
    kiln_status st = kiln_model_load(model, &m);
    if (st == KILN_OK)
        st = kiln_ctx_create(device, &ctx);
    if (st == KILN_OK)
        st = kiln_net_create(ctx, m, 0, &net);
    size_t b = net ? kiln_net_max_batch(net) : 0, in = net ? kiln_net_input_size(net) : 0;
    if (st == KILN_OK) {
        x = malloc(b * in * sizeof *x);
        y = calloc(b * kiln_net_output_size(net), sizeof *y); /* class 0, or targets 0 */
    }
    size_t V = kiln_model_vocab(m); /* a token model takes whole ids below V */
    for (size_t i = 0; x && i < b * in; i++)
        x[i] = V ? (float)((i * 2654435761u) % V) : (float)((i * 2654435761u) % 1000) / 1000.0f;
    if (st == KILN_OK && (!x || !y))
        st = KILN_ERR_OUT_OF_MEMORY;
    if (st == KILN_OK)
        st = kiln_net_train_step(net, x, y, b, NULL);
    if (st == KILN_OK)
        st = kiln_ctx_finish(ctx);
    struct rusage use;
    double cpu = getrusage(RUSAGE_SELF, &use) == 0
                     ? (double)use.ru_utime.tv_sec + (double)use.ru_stime.tv_sec +
                           1e-6 * (double)(use.ru_utime.tv_usec + use.ru_stime.tv_usec)
                     : 0;
    if (st == KILN_OK)
        printf("ok %.6f %.6f\n", ref_seconds() - start, cpu);
    else if (st == KILN_ERR_OUT_OF_MEMORY && (!x || !y))
        printf("fail out of host memory\n");
    else
        printf("fail %s\n", kiln_last_error());
    fflush(stdout);
    free(x);
    free(y);
    kiln_net_free(net);
    kiln_ctx_free(ctx);
    kiln_model_free(m);
    return st == KILN_OK ? 0 : 1;
}

/* Runs one worker with its caches under root; its seconds, or 0 after
 * printing why not. */
static double run_worker(const char *model, const char *device, const char *root)
{
    char kiln_dir[4096], pocl_dir[4096];
    snprintf(kiln_dir, sizeof kiln_dir, "%s/kiln", root);
    snprintf(pocl_dir, sizeof pocl_dir, "%s/pocl", root);
    setenv("KILN_CACHE_DIR", kiln_dir, 1);
    setenv("XDG_CACHE_HOME", root, 1);
    setenv("POCL_CACHE_DIR", pocl_dir, 1);
    char *argv[] = {"kiln", "bench", "--first-batch-worker", "--device", (char *)device,
                    (char *)model, NULL};
    int fd[2];
    if (pipe(fd) != 0) {
        fprintf(stderr, "kiln bench: pipe: %s\n", strerror(errno));
        return 0;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, fd[0]);
    pid_t pid;
    int err = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fd[1]);
    char line[1024] = "";
    FILE *out = err == 0 ? fdopen(fd[0], "r") : NULL;
    if (out) {
        if (!fgets(line, sizeof line, out))
            line[0] = '\0';
        fclose(out);
    } else {
        close(fd[0]);
    }
    int status = 0;
    if (err == 0)
        waitpid(pid, &status, 0);
    double seconds = 0;
    if (sscanf(line, "ok %lf", &seconds) != 1 || !(seconds > 0)) {
        line[strcspn(line, "\n")] = '\0';
        fprintf(stderr, "kiln bench: first batch of %s: %s\n", model,
                err ? strerror(err) : line[0] ? line : "the worker failed");
        seconds = 0;
    }
    return seconds;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return type == FTW_DP ? rmdir(path) : unlink(path);
}

/* Restores an environment variable saved by save_env. */
static void restore_env(const char *name, char *saved)
{
    if (saved)
        setenv(name, saved, 1);
    else
        unsetenv(name);
    free(saved);
}

static char *save_env(const char *name)
{
    const char *v = getenv(name);
    return v ? strdup(v) : NULL;
}

int cli_first_batch(const char *model, const char *device, double *cold, double *warm)
{
    *cold = *warm = 0;
    const char *tmp = getenv("TMPDIR");
    char root[4096];
    snprintf(root, sizeof root, "%s/kiln-coldstart-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(root)) {
        fprintf(stderr, "kiln bench: cannot make a cache directory in %s: %s\n",
                tmp && *tmp ? tmp : "/tmp", strerror(errno));
        return 1;
    }
    char *kiln = save_env("KILN_CACHE_DIR"), *xdg = save_env("XDG_CACHE_HOME");
    char *pocl = save_env("POCL_CACHE_DIR");
    *cold = run_worker(model, device, root);
    if (*cold > 0)
        *warm = run_worker(model, device, root);
    restore_env("KILN_CACHE_DIR", kiln);
    restore_env("XDG_CACHE_HOME", xdg);
    restore_env("POCL_CACHE_DIR", pocl);
    nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return *cold > 0 && *warm > 0 ? 0 : 1;
}
