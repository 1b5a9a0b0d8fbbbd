/* kiln's own GEMM for CPU-class devices (cl/gemm.cl): op(B) and, when
 * transposed, op(A) are packed into panels in scratch buffers the
 * context's blas state keeps, then one launch computes C tile by tile. The scratch buffers grow
 * to the largest product seen; the in-order queue makes reuse safe. */
#include "blas/blas.h"

#define GEMM_MR 8
#define GEMM_NR 32
#define GEMM_PACK_K 64
/* The options of gemm.cl's program for an op(A) read in place; the packing
 * kernels are taken from the same program, so that gemm.cl compiles twice
 * (plain and packed A), not three times: its tile kernel is the slowest
 * source of kiln to compile, 40-70 s on rusticl's llvmpipe. */
#define GEMM_PLAIN_A "-DA_PACKED=0"

static kiln_status scratch(kiln_ctx *ctx, int which, size_t bytes, cl_mem *out)
{
    blas_state *s;
    kiln_status st = blas_state_get(ctx, &s);
    if (st != KILN_OK)
        return st;
    if (s->scratch_bytes[which] < bytes) {
        if (s->scratch[which])
            clReleaseMemObject(s->scratch[which]);
        s->scratch_bytes[which] = 0;
        cl_int err;
        s->scratch[which] = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
        if (err != CL_SUCCESS) {
            s->scratch[which] = NULL;
            return kiln_fail_cl_in(err, "clCreateBuffer", "GEMM packing buffer of %zu bytes",
                                   bytes);
        }
        s->scratch_bytes[which] = bytes;
    }
    *out = s->scratch[which];
    return KILN_OK;
}

void kiln_gemm_scratch_free(blas_state *s)
{
    for (int i = 0; i < 2; i++)
        if (s->scratch[i])
            clReleaseMemObject(s->scratch[i]);
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
        st = kiln_kernel_get(ctx, "gemm.cl", GEMM_PLAIN_A, "pack_panels", &kernel);
    if (st != KILN_OK)
        return st;
    cl_ulong o = off, l = ld, e = extent, kk = k;
    cl_uint along = (cl_uint)along_k;
    return kiln_launch_tiles(ctx, kernel, "pack_panels", (k + GEMM_PACK_K - 1) / GEMM_PACK_K,
                             panels, 8, KARG(*out), KARG(src), KARG(o), KARG(l), KARG(along),
                             KARG(e), KARG(kk), KARG(w));
}

/* C = alpha op(A) B + beta C with B in panels bp (op(A) packed when ta). */
static kiln_status tiles(kiln_ctx *ctx, kiln_transpose ta, size_t m, size_t n, size_t k,
                         float alpha, cl_mem a, size_t a_off, size_t lda, cl_mem bp, float beta,
                         cl_mem c, size_t c_off, size_t ldc)
{
    cl_mem ap = a;
    kiln_status st = KILN_OK;
    if (ta == KILN_TRANS) {
        st = pack(ctx, 0, a, a_off, lda, 0, m, k, GEMM_MR, &ap);
        a_off = 0;
    }
    cl_kernel kernel;
    if (st == KILN_OK)
        st = kiln_kernel_get(ctx, "gemm.cl", ta == KILN_TRANS ? "-DA_PACKED=1" : GEMM_PLAIN_A,
                             "gemm_tile", &kernel);
    if (st != KILN_OK)
        return st;
    cl_ulong ao = a_off, la = lda, co = c_off, lc = ldc, mm = m, nn = n, kk = k;
    return kiln_launch_tiles(ctx, kernel, "gemm_tile", (m + GEMM_MR - 1) / GEMM_MR,
                             (n + GEMM_NR - 1) / GEMM_NR, 12, KARG(ap), KARG(ao), KARG(la),
                             KARG(bp), KARG(c), KARG(co), KARG(lc), KARG(mm), KARG(nn),
                             KARG(kk), KARG(alpha), KARG(beta));
}

kiln_status kiln_cpu_sgemm(kiln_ctx *ctx, kiln_transpose ta, kiln_transpose tb, size_t m,
                           size_t n, size_t k, float alpha, cl_mem a, size_t a_off, size_t lda,
                           cl_mem b, size_t b_off, size_t ldb, float beta, cl_mem c,
                           size_t c_off, size_t ldc)
{
    cl_mem bp;
    kiln_status st = pack(ctx, 1, b, b_off, ldb, tb == KILN_TRANS, n, k, GEMM_NR, &bp);
    return st == KILN_OK ? tiles(ctx, ta, m, n, k, alpha, a, a_off, lda, bp, beta, c, c_off, ldc)
                         : st;
}

kiln_status kiln_cpu_sgemm_im2col(kiln_ctx *ctx, size_t m, float alpha, cl_mem a, size_t lda,
                                  const gemm_im2col *x, int transposed, float beta, cl_mem c,
                                  size_t ldc)
{
    size_t rows = x->c * x->k * x->k, cols = x->n * x->oh * x->ow;
    size_t n = transposed ? rows : cols, k = transposed ? cols : rows;
    size_t panels = (n + GEMM_NR - 1) / GEMM_NR;
    cl_mem bp;
    cl_kernel kernel;
    kiln_status st = scratch(ctx, 1, panels * GEMM_NR * k * sizeof(float), &bp);
    if (st == KILN_OK)
        st = kiln_kernel_get(ctx, "gemm.cl", GEMM_PLAIN_A, "im2col_panels", &kernel);
    if (st != KILN_OK)
        return st;
    cl_uint C = (cl_uint)x->c, H = (cl_uint)x->h, W = (cl_uint)x->w, K = (cl_uint)x->k,
            S = (cl_uint)x->s, P = (cl_uint)x->p, D = (cl_uint)x->d, OH = (cl_uint)x->oh,
            OW = (cl_uint)x->ow, by_rows = (cl_uint)transposed;
    cl_ulong kk = k, extent = n;
    st = kiln_launch_tiles(ctx, kernel, "im2col_panels", (k + GEMM_PACK_K - 1) / GEMM_PACK_K,
                           panels, 14, KARG(bp), KARG(x->x), KARG(C), KARG(H), KARG(W), KARG(K),
                           KARG(S), KARG(P), KARG(D), KARG(OH), KARG(OW), KARG(by_rows),
                           KARG(kk), KARG(extent));
    return st == KILN_OK
               ? tiles(ctx, KILN_NO_TRANS, m, n, k, alpha, a, 0, lda, bp, beta, c, 0, ldc)
               : st;
}
