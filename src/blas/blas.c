/* The one place that calls CLBlast. Every matrix product in kiln goes
 * through kiln_blas_sgemm, on the context's queue: to kiln's own GEMM
 * (gemm.c) when the context's engine says so, else to CLBlast, with its
 * status codes turned into named errors. */
#include <clblast_c.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"

static atomic_int open_contexts;

void kiln_blas_context_opened(void)
{
    atomic_fetch_add(&open_contexts, 1);
}

void kiln_blas_context_closed(void)
{
    /* CLBlast caches programs per context and never lets go of them; drop
     * its caches when no kiln context is left that could reuse them. */
    if (atomic_fetch_sub(&open_contexts, 1) == 1)
        CLBlastClearCache();
}

#define CLBLAST_ERRORS(X)                                                                 \
    X(CLBlastNotImplemented) X(CLBlastInvalidMatrixA) X(CLBlastInvalidMatrixB)            \
    X(CLBlastInvalidMatrixC) X(CLBlastInvalidVectorX) X(CLBlastInvalidVectorY)            \
    X(CLBlastInvalidDimension) X(CLBlastInvalidLeadDimA) X(CLBlastInvalidLeadDimB)        \
    X(CLBlastInvalidLeadDimC) X(CLBlastInvalidIncrementX) X(CLBlastInvalidIncrementY)     \
    X(CLBlastInsufficientMemoryA) X(CLBlastInsufficientMemoryB)                           \
    X(CLBlastInsufficientMemoryC) X(CLBlastInsufficientMemoryX)                           \
    X(CLBlastInsufficientMemoryY) X(CLBlastInsufficientMemoryTemp)                        \
    X(CLBlastInvalidBatchCount) X(CLBlastInvalidOverrideKernel)                           \
    X(CLBlastMissingOverrideParameter) X(CLBlastInvalidLocalMemUsage)                     \
    X(CLBlastNoHalfPrecision) X(CLBlastNoDoublePrecision) X(CLBlastInvalidVectorScalar)   \
    X(CLBlastInsufficientMemoryScalar) X(CLBlastDatabaseError) X(CLBlastUnknownError)     \
    X(CLBlastUnexpectedError)

const char *kiln_gemm_engine_str(kiln_gemm_engine engine)
{
    switch (engine) {
    case KILN_GEMM_CLBLAST:
        return "clblast";
    case KILN_GEMM_KILN:
        return "kiln";
    default:
        return "auto";
    }
}

kiln_status kiln_gemm_engine_parse(const char *text, const char *what, kiln_gemm_engine *out)
{
    for (int e = KILN_GEMM_AUTO; e <= KILN_GEMM_KILN; e++)
        if (strcmp(text, kiln_gemm_engine_str((kiln_gemm_engine)e)) == 0) {
            *out = (kiln_gemm_engine)e;
            return KILN_OK;
        }
    return kiln_fail(KILN_ERR_INVALID_ARGUMENT,
                     "%s is \"%s\"; expected auto, clblast or kiln", what, text);
}

void kiln_ctx_set_gemm(kiln_ctx *ctx, kiln_gemm_engine engine)
{
    if (engine == KILN_GEMM_AUTO)
        engine = kiln_device_loops_work_groups(&ctx->info) ? KILN_GEMM_KILN : KILN_GEMM_CLBLAST;
    ctx->gemm = engine;
}

kiln_gemm_engine kiln_ctx_gemm(const kiln_ctx *ctx)
{
    return ctx->gemm;
}

/* The engine a new context starts with: $KILN_GEMM, else AUTO. */
kiln_status kiln_gemm_engine_init(kiln_ctx *ctx)
{
    const char *env = getenv("KILN_GEMM");
    kiln_gemm_engine engine = KILN_GEMM_AUTO;
    kiln_status st = env && *env ? kiln_gemm_engine_parse(env, "KILN_GEMM", &engine) : KILN_OK;
    kiln_ctx_set_gemm(ctx, engine);
    return st;
}

/* CLBlast's own codes by name; the rest are OpenCL's codes. */
static const char *clblast_error_name(CLBlastStatusCode code)
{
    switch (code) {
#define CLBLAST_ERROR_CASE(name) \
    case name:                   \
        return #name;
        CLBLAST_ERRORS(CLBLAST_ERROR_CASE)
#undef CLBLAST_ERROR_CASE
    default:
        return kiln_cl_error_name((cl_int)code);
    }
}

static kiln_status fail_blas(CLBlastStatusCode code, const char *call, size_t m, size_t n,
                             size_t k)
{
    kiln_status st = KILN_ERR_BLAS;
    if (code == CLBlastTempBufferAllocFailure || code == CLBlastOpenCLOutOfHostMemory)
        st = KILN_ERR_OUT_OF_MEMORY;
    else if (code == CLBlastOpenCLBuildProgramFailure)
        st = KILN_ERR_BUILD;
    return kiln_fail(st, "%s: %s (m=%zu n=%zu k=%zu)", call, clblast_error_name(code), m, n, k);
}

/* C[m,n] = alpha * C, for the k == 0 and alpha == 0 cases CLBlast rejects. */
static kiln_status scale_matrix(kiln_ctx *ctx, float alpha, cl_mem c, size_t c_off, size_t ldc,
                                size_t m, size_t n)
{
    cl_kernel kernel;
    kiln_status st = kiln_kernel_get(ctx, "tensor.cl", "", "scale_matrix", &kernel);
    if (st != KILN_OK)
        return st;
    cl_ulong off = c_off, ld = ldc, rows = m, cols = n;
    return kiln_launch_1d(ctx, kernel, "scale_matrix", m * n, 64, 6, sizeof c, &c,
                          sizeof alpha, &alpha, sizeof off, &off, sizeof ld, &ld, sizeof rows,
                          &rows, sizeof cols, &cols);
}

static void log_shape(gemm_log *log, kiln_transpose ta, kiln_transpose tb, size_t m, size_t n,
                      size_t k)
{
    gemm_shape s = {ta == KILN_TRANS, tb == KILN_TRANS, m, n, k};
    for (size_t i = 0; i < log->count; i++)
        if (memcmp(&log->shapes[i], &s, sizeof s) == 0)
            return;
    if (log->count < GEMM_LOG_MAX)
        log->shapes[log->count++] = s;
}

kiln_status kiln_blas_sgemm(kiln_ctx *ctx, kiln_transpose ta, kiln_transpose tb, size_t m,
                            size_t n, size_t k, float alpha, cl_mem a, size_t a_off,
                            size_t lda, cl_mem b, size_t b_off, size_t ldb, float beta,
                            cl_mem c, size_t c_off, size_t ldc)
{
    if (m == 0 || n == 0)
        return KILN_OK;
    if (k == 0 || alpha == 0.0f)
        return beta == 1.0f ? KILN_OK : scale_matrix(ctx, beta, c, c_off, ldc, m, n);
    if (ctx->gemms)
        log_shape(ctx->gemms, ta, tb, m, n, k);
    if (ctx->gemm == KILN_GEMM_KILN)
        return kiln_cpu_sgemm(ctx, ta, tb, m, n, k, alpha, a, a_off, lda, b, b_off, ldb, beta, c,
                              c_off, ldc);
    cl_event event = NULL;
    CLBlastStatusCode code = CLBlastSgemm(
        CLBlastLayoutRowMajor, ta == KILN_TRANS ? CLBlastTransposeYes : CLBlastTransposeNo,
        tb == KILN_TRANS ? CLBlastTransposeYes : CLBlastTransposeNo, m, n, k, alpha, a, a_off,
        lda, b, b_off, ldb, beta, c, c_off, ldc, &ctx->queue, &event);
    if (ctx->profile)
        kiln_profile_add(ctx, event, "CLBlastSgemm");
    else if (event)
        clReleaseEvent(event);
    ctx->launches++;
    if (ctx->trace)
        fprintf(ctx->trace, "    gemm   CLBlastSgemm%-6s m=%zu n=%zu k=%zu\n",
                ta == KILN_TRANS ? (tb == KILN_TRANS ? " TT" : " TN") : (tb == KILN_TRANS ? " NT" : " NN"),
                m, n, k);
    return code == CLBlastSuccess ? KILN_OK : fail_blas(code, "CLBlastSgemm", m, n, k);
}

static kiln_status gemm_shapes_differ(const kiln_tensor *a, const kiln_tensor *b,
                                      const kiln_tensor *c, kiln_transpose ta,
                                      kiln_transpose tb)
{
    char sa[64], sb[64], sc[64];
    return kiln_fail(KILN_ERR_SHAPE,
                     "kiln_gemm: A%s of shape %s times B%s of shape %s does not give C of "
                     "shape %s",
                     ta == KILN_TRANS ? "ᵀ" : "", kiln_tensor_shape_str(a, sa, sizeof sa),
                     tb == KILN_TRANS ? "ᵀ" : "", kiln_tensor_shape_str(b, sb, sizeof sb),
                     kiln_tensor_shape_str(c, sc, sizeof sc));
}

kiln_status kiln_gemm(kiln_ctx *ctx, kiln_transpose ta, kiln_transpose tb, float alpha,
                      const kiln_tensor *a, const kiln_tensor *b, float beta, kiln_tensor *c)
{
    if (!ctx || !a || !b || !c)
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_gemm: ctx and all three tensors are "
                                                    "required");
    if (a->ctx != ctx || b->ctx != ctx || c->ctx != ctx)
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT, "kiln_gemm: tensors belong to another "
                                                    "context");
    if (a->ndim != 2 || b->ndim != 2 || c->ndim != 2)
        return gemm_shapes_differ(a, b, c, ta, tb);
    size_t m = ta == KILN_TRANS ? a->shape[1] : a->shape[0];
    size_t k = ta == KILN_TRANS ? a->shape[0] : a->shape[1];
    size_t kb = tb == KILN_TRANS ? b->shape[1] : b->shape[0];
    size_t n = tb == KILN_TRANS ? b->shape[0] : b->shape[1];
    if (k != kb || c->shape[0] != m || c->shape[1] != n)
        return gemm_shapes_differ(a, b, c, ta, tb);
    return kiln_blas_sgemm(ctx, ta, tb, m, n, k, alpha, a->buf, 0, a->shape[1], b->buf, 0,
                           b->shape[1], beta, c->buf, 0, c->shape[1]);
}
