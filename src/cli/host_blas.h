/* The host's OpenBLAS, loaded at run time: the GEMM that `kiln bench` and
 * bench_kiln_gemm measure kiln's against. */
#ifndef KILN_HOST_BLAS_H
#define KILN_HOST_BLAS_H

#include <stddef.h>

#include "kiln_tools.h"

/* cblas_sgemm's signature. */
typedef void (*host_sgemm_fn)(int, int, int, int, int, int, float, const float *, int,
                              const float *, int, float, float *, int);

/* OpenBLAS's cblas_sgemm from libopenblas.so.0, or NULL where it is not
 * installed; core gets the name of the kernels it runs ("OpenBLAS
 * SkylakeX"), followed by "(OPENBLAS_CORETYPE)" where the environment
 * chose them. */
host_sgemm_fn host_blas_load(char *core, size_t size);

/* GFLOPS of sgemm at shape g (row-major, every value 0.5): the best of
 * five timings after a warm-up call; 0 where memory ran out. */
double host_blas_gflops(host_sgemm_fn sgemm, const kiln_gemm_shape *g);

#endif
