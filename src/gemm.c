/* kiln's own GEMM for CPU-class devices (cl/gemm.cl): op(B) and, when
 * transposed, op(A) are packed into panels in scratch buffers the context
 * keeps, then one launch computes C tile by tile. The scratch buffers grow
 * to the largest product seen; the in-order queue makes reuse safe. */
#include "internal.h"

#define GEMM_MR 8
#define GEMM_NR 32
#define GEMM_PACK_K 64

static kiln_status scratch(kiln_ctx *ctx, int which, size_t bytes, cl_mem *out)
{
    if (ctx->scratch_bytes[which] < bytes) {
        if (ctx->scratch[which])
            clReleaseMemObject(ctx->scratch[which]);
        ctx->scratch_bytes[which] = 0;
        cl_int err;
        ctx->scratch[which] = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
        if (err != CL_SUCCESS) {
            ctx->scratch[which] = NULL;
            return kiln_fail_cl_in(err, "clCreateBuffer", "GEMM packing buffer of %zu bytes",
                                   bytes);
        }
        ctx->scratch_bytes[which] = bytes;
    }
    *out = ctx->scratch[which];
    return KILN_OK;
}

void kiln_gemm_scratch_free(kiln_ctx *ctx)
{
    for (int i = 0; i < 2; i++)
        if (ctx->scratch[i])
            clReleaseMemObject(ctx->scratch[i]);
}

/* Packs a k-long operand with `extent` rows (along_k: rows run along k in
 * memory) into panels of w, padded to a multiple of w. */
static kiln_status pack(kiln_ctx *ctx, int which, cl_mem src, size_t off, size_t ld,
                        int along_k, size_t extent, size_t k, cl_uint w, cl_mem *out)
{
    size_t panels = (extent + w - 1) / w;
    kiln_status st = scratch(ctx, which, panels * w * k * sizeof(float), out);
    cl_kernel kernel;
    if (st == KILN_OK)
        st = kiln_kernel_get(ctx, "gemm.cl", "", "pack_panels", &kernel);
    if (st != KILN_OK)
        return st;
    cl_ulong o = off, l = ld, e = extent, kk = k;
    cl_uint along = (cl_uint)along_k;
    return kiln_launch_tiles(ctx, kernel, "pack_panels", (k + GEMM_PACK_K - 1) / GEMM_PACK_K,
                             panels, 8, KARG(*out), KARG(src), KARG(o), KARG(l), KARG(along),
                             KARG(e), KARG(kk), KARG(w));
}

kiln_status kiln_cpu_sgemm(kiln_ctx *ctx, kiln_transpose ta, kiln_transpose tb, size_t m,
                           size_t n, size_t k, float alpha, cl_mem a, size_t a_off, size_t lda,
                           cl_mem b, size_t b_off, size_t ldb, float beta, cl_mem c,
                           size_t c_off, size_t ldc)
{
    cl_mem bp, ap = a;
    kiln_status st = pack(ctx, 1, b, b_off, ldb, tb == KILN_TRANS, n, k, GEMM_NR, &bp);
    if (st == KILN_OK && ta == KILN_TRANS)
        st = pack(ctx, 0, a, a_off, lda, 0, m, k, GEMM_MR, &ap);
    cl_kernel kernel;
    if (st == KILN_OK)
        st = kiln_kernel_get(ctx, "gemm.cl", ta == KILN_TRANS ? "-DA_PACKED=1" : "-DA_PACKED=0",
                             "gemm_tile", &kernel);
    if (st != KILN_OK)
        return st;
    cl_ulong ao = a_off, la = lda, co = c_off, lc = ldc, mm = m, nn = n, kk = k;
    return kiln_launch_tiles(ctx, kernel, "gemm_tile", (m + GEMM_MR - 1) / GEMM_MR,
                             (n + GEMM_NR - 1) / GEMM_NR, 12, KARG(ap), KARG(ao), KARG(la),
                             KARG(bp), KARG(c), KARG(co), KARG(lc), KARG(mm), KARG(nn),
                             KARG(kk), KARG(alpha), KARG(beta));
}
