/* The host's OpenBLAS, loaded at run time (host_blas.h). */
#include "cli/host_blas.h"

#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ref/ref.h"

typedef char *(*corename_fn)(void);

enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };

/* OpenBLAS from Debian's libopenblas0 when installed. Its run-time CPU
 * detection predates some CPUs and then falls back to generic kernels;
 * unless OPENBLAS_CORETYPE says otherwise, the core is named from the
 * CPU's vector extensions so that kiln is measured against OpenBLAS at its
 * best (a Zen 5 EPYC, whose environment set OPENBLAS_CORETYPE=Haswell:
 * 228-250 GFLOPS at n = 1024 against 457-479 with SkylakeX's kernels).
 * Its threads spin for some 2^28 cycles (0.1 s) after each call unless
 * OPENBLAS_THREAD_TIMEOUT says less, and kiln's GEMM, timed right after,
 * then ran on one core of two: 85-95 GFLOPS instead of 145-177 at the
 * GPT's shapes on the 2-core EPYC, and OpenBLAS's own figures the same
 * either way. */
host_sgemm_fn host_blas_load(char *core, size_t size)
{
    int chosen = getenv("OPENBLAS_CORETYPE") != NULL;
    setenv("OPENBLAS_THREAD_TIMEOUT", "4", 0); /* 2^4 cycles, its least */
    if (!chosen) {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f"))
            setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
        else if (__builtin_cpu_supports("avx2"))
            setenv("OPENBLAS_CORETYPE", "Haswell", 1);
    }
    void *lib = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!lib)
        return NULL;
    corename_fn corename = (corename_fn)(uintptr_t)dlsym(lib, "openblas_get_corename");
    snprintf(core, size, "OpenBLAS %s%s", corename ? corename() : "",
             chosen ? " (OPENBLAS_CORETYPE)" : "");
    return (host_sgemm_fn)(uintptr_t)dlsym(lib, "cblas_sgemm");
}

double host_blas_gflops(host_sgemm_fn sgemm, const kiln_gemm_shape *g)
{
    int ta = g->ta == KILN_TRANS, tb = g->tb == KILN_TRANS;
    size_t na = g->m * g->k, nb = g->k * g->n, nc = g->m * g->n;
    float *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b), *c = calloc(nc, sizeof *c);
    double best = INFINITY, flops = 2.0 * (double)g->m * (double)g->n * (double)g->k;
    int reps = (int)fmax(1.0, fmin(20.0, 1e9 / flops));
    for (size_t i = 0; a && b && i < na; i++)
        a[i] = 0.5f;
    for (size_t i = 0; a && b && i < nb; i++)
        b[i] = 0.5f;
    for (int t = -1; a && b && c && t < 5; t++) {
        double t0 = ref_seconds();
        for (int r = 0; r < (t < 0 ? 1 : reps); r++)
            sgemm(CBLAS_ROW_MAJOR, ta ? CBLAS_TRANS : CBLAS_NO_TRANS,
                  tb ? CBLAS_TRANS : CBLAS_NO_TRANS, (int)g->m, (int)g->n, (int)g->k, 1.0f, a,
                  ta ? (int)g->m : (int)g->k, b, tb ? (int)g->k : (int)g->n, 0.0f, c, (int)g->n);
        if (t >= 0)
            best = fmin(best, (ref_seconds() - t0) / reps);
    }
    free(a);
    free(b);
    free(c);
    return isfinite(best) ? flops / best * 1e-9 : 0;
}
