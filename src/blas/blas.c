/* The one place that calls CLBlast. Every matrix product in kiln goes
 * through blas_sgemm, on the context's queue: to kiln's own GEMM
 * (gemm.c) when the context's engine says so, else to CLBlast, with its
 * status codes turned into named errors. The engine and the rest of the
 * layer's per-context state are created here on first use. */
#include <clblast_c.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas/blas.h"

/* Contexts with a blas state, so that CLBlast's cached programs (which
 * hold the OpenCL contexts they were built for) are released with the last
 * one. */
static atomic_int open_contexts;

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

kiln_status gemm_engine_parse(const char *text, const char *what, kiln_gemm_engine *out)
{
    for (int e = KILN_GEMM_AUTO; e <= KILN_GEMM_KILN; e++)
        if (strcmp(text, kiln_gemm_engine_str((kiln_gemm_engine)e)) == 0) {
            *out = (kiln_gemm_engine)e;
            return KILN_OK;
        }
    return error_set(KILN_ERR_INVALID_ARGUMENT,
                     "%s is \"%s\"; expected auto, clblast or kiln", what, text);
}

kiln_gemm_engine gemm_engine_resolve(const kiln_ctx *ctx, kiln_gemm_engine engine)
{
    if (engine == KILN_GEMM_AUTO)
        engine = device_loops_work_groups(&ctx->info) ? KILN_GEMM_KILN : KILN_GEMM_CLBLAST;
    return engine;
}

/* The context's free function for its state (ctx_attach). */
static void state_free(void *state)
{
    blas_state *s = state;
    gemm_scratch_free(s);
    free(s);
    /* CLBlast caches programs per context and never lets go of them; drop
     * its caches when no kiln context is left that could reuse them. */
    if (atomic_fetch_sub(&open_contexts, 1) == 1)
        CLBlastClearCache();
}

/* A new state for ctx: the engine from $KILN_GEMM (AUTO when unset; an
 * unknown name is an error naming it), then the tuning record when tuned.
 * Attached only when all of it succeeded. */
static kiln_status state_create(kiln_ctx *ctx, int tuned, blas_state **out)
{
    blas_state *s = calloc(1, sizeof *s);
    if (!s)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_blas: out of host memory");
    atomic_fetch_add(&open_contexts, 1);
    const char *env = getenv("KILN_GEMM");
    kiln_gemm_engine engine = KILN_GEMM_AUTO;
    kiln_status st = env && *env ? gemm_engine_parse(env, "KILN_GEMM", &engine) : KILN_OK;
    s->engine = gemm_engine_resolve(ctx, engine);
    kiln_tuning record;
    if (st == KILN_OK && tuned && kiln_tuning_load(&ctx->info, &record)) {
        st = tuning_apply_state(ctx, s, &record);
        if (st == KILN_OK && record.has_xgemm &&
            kiln_tuning_path(&ctx->info, s->record, sizeof s->record) != KILN_OK)
            error_clear();
    }
    if (st != KILN_OK) {
        state_free(s);
        return st;
    }
    ctx_attach(ctx, KILN_SLOT_BLAS, s, state_free);
    *out = s;
    return KILN_OK;
}

kiln_status blas_state_get(kiln_ctx *ctx, blas_state **out)
{
    *out = ctx_attached(ctx, KILN_SLOT_BLAS);
    if (*out)
        return KILN_OK;
    const char *env = getenv("KILN_TUNE");
    return state_create(ctx, !(env && strcmp(env, "off") == 0), out);
}

/* ---- contexts: the runtime's, with the blas state attached ---------------- */

kiln_status kiln_ctx_create(const char *selector, kiln_ctx **out)
{
    const char *env = getenv("KILN_TUNE");
    return ctx_open(selector, !(env && strcmp(env, "off") == 0), out);
}

kiln_status ctx_open(const char *selector, int tuned, kiln_ctx **out)
{
    kiln_status st = ctx_open_device(selector, out);
    blas_state *s;
    if (st == KILN_OK && (st = state_create(*out, tuned, &s)) != KILN_OK) {
        kiln_ctx_free(*out);
        *out = NULL;
    }
    return st;
}

void kiln_ctx_set_gemm(kiln_ctx *ctx, kiln_gemm_engine engine)
{
    blas_state *s;
    if (blas_state_get(ctx, &s) == KILN_OK)
        s->engine = gemm_engine_resolve(ctx, engine);
}

kiln_gemm_engine kiln_ctx_gemm(const kiln_ctx *ctx)
{
    /* The state is created on first use, also by a query: the context is
     * never a const object, only this view of it. */
    blas_state *s;
    return blas_state_get((kiln_ctx *)ctx, &s) == KILN_OK
               ? s->engine
               : gemm_engine_resolve(ctx, KILN_GEMM_AUTO);
}

void blas_set_log(kiln_ctx *ctx, gemm_log *log)
{
    blas_state *s;
    if (blas_state_get(ctx, &s) == KILN_OK)
        s->log = log;
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
        return cl_error_name((cl_int)code);
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
    return error_set(st, "%s: %s (m=%zu n=%zu k=%zu)", call, clblast_error_name(code), m, n, k);
}

/* C[m,n] = alpha * C, for the k == 0 and alpha == 0 cases CLBlast rejects. */
static kiln_status scale_matrix(kiln_ctx *ctx, float alpha, cl_mem c, size_t c_off, size_t ldc,
                                size_t m, size_t n)
{
    cl_kernel kernel;
    kiln_status st = kernel_get(ctx, "tensor.cl", "", "scale_matrix", &kernel);
    if (st != KILN_OK)
        return st;
    cl_ulong off = c_off, ld = ldc, rows = m, cols = n;
    return launch_1d(ctx, kernel, "scale_matrix", m * n, 64, KARG(c), KARG(alpha),
                     KARG(off), KARG(ld), KARG(rows), KARG(cols));
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

int blas_has_epilogue(kiln_ctx *ctx)
{
    blas_state *s;
    return blas_state_get(ctx, &s) == KILN_OK && s->engine == KILN_GEMM_KILN;
}

int blas_has_gelu_epilogue(kiln_ctx *ctx)
{
    return blas_has_epilogue(ctx) && device_loops_work_groups(&ctx->info);
}

kiln_status blas_sgemm(kiln_ctx *ctx, kiln_transpose ta, kiln_transpose tb, size_t m,
                       size_t n, size_t k, float alpha, cl_mem a, size_t a_off,
                       size_t lda, cl_mem b, size_t b_off, size_t ldb, float beta,
                       cl_mem c, size_t c_off, size_t ldc)
{
    return blas_sgemm_epilogue(ctx, ta, tb, m, n, k, alpha, a, a_off, lda, b, b_off, ldb, beta,
                               c, c_off, ldc, NULL);
}

kiln_status blas_sgemm_packed(kiln_ctx *ctx, size_t m, size_t n, size_t k, cl_mem a,
                              size_t lda, cl_mem w, const blas_packed *p, cl_mem c, size_t ldc,
                              const gemm_epilogue *epi)
{
    if (!gemm_packed_fits(ctx, p, m, n, k)) /* the tile changed since, or few rows */
        return blas_sgemm_epilogue(ctx, KILN_NO_TRANS, KILN_TRANS, m, n, k, 1.0f, a, 0, lda, w,
                                   0, k, 0.0f, c, 0, ldc, epi);
    blas_state *s;
    kiln_status st = blas_state_get(ctx, &s);
    if (st == KILN_OK && s->log)
        log_shape(s->log, KILN_NO_TRANS, KILN_TRANS, m, n, k);
    return st == KILN_OK ? gemm_cpu_packed(ctx, m, n, k, a, lda, p, c, ldc, epi) : st;
}

kiln_status blas_sgemm_epilogue(kiln_ctx *ctx, kiln_transpose ta, kiln_transpose tb, size_t m,
                                size_t n, size_t k, float alpha, cl_mem a, size_t a_off,
                                size_t lda, cl_mem b, size_t b_off, size_t ldb, float beta,
                                cl_mem c, size_t c_off, size_t ldc, const gemm_epilogue *epi)
{
    if (m == 0 || n == 0)
        return KILN_OK;
    int gelu = epi && epi->gelu;
    if (epi && (k == 0 || alpha == 0.0f || !blas_has_epilogue(ctx) ||
                (gelu && !blas_has_gelu_epilogue(ctx))))
        return error_set(KILN_ERR_INVALID_ARGUMENT,
                         "blas_sgemm_epilogue: an epilogue needs kiln's GEMM, k > 0 and alpha "
                         "!= 0 (GELU's also a device that runs work-groups as loops)");
    if (k == 0 || alpha == 0.0f)
        return beta == 1.0f ? KILN_OK : scale_matrix(ctx, beta, c, c_off, ldc, m, n);
    blas_state *s;
    kiln_status st = blas_state_get(ctx, &s);
    if (st != KILN_OK)
        return st;
    if (s->log)
        log_shape(s->log, ta, tb, m, n, k);
    if (s->engine == KILN_GEMM_KILN)
        return gemm_cpu_sgemm(ctx, ta, tb, m, n, k, alpha, a, a_off, lda, b, b_off, ldb, beta, c,
                              c_off, ldc, epi);
    st = programs_flush(ctx); /* CLBlast enqueues on the queue itself */
    if (st != KILN_OK)
        return st;
    cl_event event = NULL;
    CLBlastStatusCode code = CLBlastSgemm(
        CLBlastLayoutRowMajor, ta == KILN_TRANS ? CLBlastTransposeYes : CLBlastTransposeNo,
        tb == KILN_TRANS ? CLBlastTransposeYes : CLBlastTransposeNo, m, n, k, alpha, a, a_off,
        lda, b, b_off, ldb, beta, c, c_off, ldc, &ctx->queue, &event);
    if (ctx->profile)
        profile_add(ctx, event, "CLBlastSgemm");
    else if (event)
        clReleaseEvent(event);
    ctx->launches++;
    if (ctx->trace.fn)
        writef(&ctx->trace, "    gemm   CLBlastSgemm%-6s m=%zu n=%zu k=%zu\n",
                ta == KILN_TRANS ? (tb == KILN_TRANS ? " TT" : " TN") : (tb == KILN_TRANS ? " NT" : " NN"),
                m, n, k);
    if (code == CLBlastSuccess)
        return KILN_OK;
    st = fail_blas(code, "CLBlastSgemm", m, n, k);
    if (s->record[0])
        error_append("; CLBlast ran with the parameters of the tuning record %s "
                     "(KILN_TUNE=off ignores it; kiln tune writes a new one)", s->record);
    return st;
}

static kiln_status gemm_shapes_differ(const kiln_tensor *a, const kiln_tensor *b,
                                      const kiln_tensor *c, kiln_transpose ta,
                                      kiln_transpose tb)
{
    char sa[64], sb[64], sc[64];
    return error_set(KILN_ERR_SHAPE,
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
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_gemm: ctx and all three tensors are "
                                                    "required");
    if (a->ctx != ctx || b->ctx != ctx || c->ctx != ctx)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_gemm: tensors belong to another "
                                                    "context");
    if (a->ndim != 2 || b->ndim != 2 || c->ndim != 2)
        return gemm_shapes_differ(a, b, c, ta, tb);
    size_t m = ta == KILN_TRANS ? a->shape[1] : a->shape[0];
    size_t k = ta == KILN_TRANS ? a->shape[0] : a->shape[1];
    size_t kb = tb == KILN_TRANS ? b->shape[1] : b->shape[0];
    size_t n = tb == KILN_TRANS ? b->shape[0] : b->shape[1];
    if (k != kb || c->shape[0] != m || c->shape[1] != n)
        return gemm_shapes_differ(a, b, c, ta, tb);
    return blas_sgemm(ctx, ta, tb, m, n, k, alpha, a->buf, 0, a->shape[1], b->buf, 0,
                      b->shape[1], beta, c->buf, 0, c->shape[1]);
}
