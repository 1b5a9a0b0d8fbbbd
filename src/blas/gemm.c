/* kiln's own GEMM for CPU-class devices (cl/gemm.cl): op(B) and, when
 * transposed, op(A) are packed into panels in scratch buffers the
 * context's blas state keeps, then one launch computes C tile by tile. The scratch buffers grow
 * to the largest product seen; the in-order queue makes reuse safe. The
 * register tile (MR x NR, NR = 2 V) is a build option of gemm.cl, chosen
 * once per context (kiln_gemm_tile_get); packing widths and grids here use
 * the same values. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas/blas.h"

#define GEMM_PACK_K 64
/* gemm.cl compiles twice per tile (A in place, A packed): the packing
 * kernels are taken from the program for an op(A) read in place, not from
 * a third one; its tile kernel is the slowest source of kiln to compile,
 * 40-70 s on rusticl's llvmpipe. */
enum { PLAIN_A = 0, PACKED_A = 1 };

static int tile_valid(gemm_tile t)
{
    return t.mr >= 1 && t.mr <= 8 && (t.v == 4 || t.v == 8 || t.v == 16);
}

gemm_tile kiln_gemm_tile_default(const kiln_ctx *ctx)
{
    /* PoCL names its CPU device after LLVM's CPU ("pthread-znver3-...") */
    const char *name = ctx->info.name;
    if (strstr(name, "avx512") || strstr(name, "znver4") || strstr(name, "znver5"))
        return (gemm_tile){8, 16};
    if (strstr(name, "haswell") || strstr(name, "znver") || strstr(name, "avx2"))
        return (gemm_tile){6, 8};
    cl_uint native = 0, preferred = 0;
    clGetDeviceInfo(ctx->device, CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT, sizeof native, &native,
                    NULL);
    clGetDeviceInfo(ctx->device, CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT, sizeof preferred,
                    &preferred, NULL);
    cl_uint lanes = native > 1 ? native : preferred;
    if (lanes >= 16)
        return (gemm_tile){8, 16};
    if (lanes == 8)
        return (gemm_tile){6, 8};
    return (gemm_tile){4, 4};
}

kiln_status kiln_gemm_tile_parse(const char *text, const char *what, gemm_tile *out)
{
    int mr, nr, used = 0;
    if (sscanf(text, "%dx%d%n", &mr, &nr, &used) == 2 && text[used] == '\0' && nr % 2 == 0) {
        gemm_tile t = {mr, nr / 2};
        if (tile_valid(t)) {
            *out = t;
            return KILN_OK;
        }
    }
    return kiln_fail(KILN_ERR_INVALID_ARGUMENT,
                     "%s is \"%s\"; expected MRxNR with MR 1 to 8 and NR 8, 16 or 32 (6x16)",
                     what, text);
}

static void tile_options(blas_state *s, gemm_tile t)
{
    s->tile = t;
    for (int packed = 0; packed < 2; packed++)
        snprintf(s->tile_options[packed], sizeof s->tile_options[packed],
                 "-DA_PACKED=%d -DMR=%d -DV=%d", packed, t.mr, t.v);
}

/* The context's state with its tile chosen. */
static kiln_status tiled_state(kiln_ctx *ctx, blas_state **out)
{
    kiln_status st = blas_state_get(ctx, out);
    if (st != KILN_OK || (*out)->tile.mr)
        return st;
    const char *env = getenv("KILN_GEMM_TILE");
    gemm_tile t = kiln_gemm_tile_default(ctx);
    if (env && *env && (st = kiln_gemm_tile_parse(env, "KILN_GEMM_TILE", &t)) != KILN_OK)
        return st;
    tile_options(*out, t);
    return KILN_OK;
}

kiln_status kiln_gemm_tile_get(kiln_ctx *ctx, gemm_tile *out)
{
    blas_state *s;
    kiln_status st = tiled_state(ctx, &s);
    if (st == KILN_OK)
        *out = s->tile;
    return st;
}

kiln_status kiln_gemm_tile_set(kiln_ctx *ctx, gemm_tile tile)
{
    if (tile.mr != 0 && !tile_valid(tile))
        return kiln_fail(KILN_ERR_INVALID_ARGUMENT,
                         "kiln_gemm_tile_set: %d x %d is not a tile (MR 1 to 8, NR 8, 16 or 32)",
                         tile.mr, 2 * tile.v);
    blas_state *s;
    kiln_status st = blas_state_get(ctx, &s);
    if (st != KILN_OK)
        return st;
    if (tile.mr == 0) {
        s->tile.mr = 0;
        return tiled_state(ctx, &s);
    }
    tile_options(s, tile);
    return KILN_OK;
}

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
static kiln_status pack(kiln_ctx *ctx, const blas_state *s, int which, cl_mem src, size_t off,
                        size_t ld, int along_k, size_t extent, size_t k, cl_uint w, cl_mem *out)
{
    size_t panels = (extent + w - 1) / w;
    kiln_status st = scratch(ctx, which, panels * w * k * sizeof(float), out);
    cl_kernel kernel;
    if (st == KILN_OK)
        st = kiln_kernel_get(ctx, "gemm.cl", s->tile_options[PLAIN_A], "pack_panels", &kernel);
    if (st != KILN_OK)
        return st;
    cl_ulong o = off, l = ld, e = extent, kk = k;
    cl_uint along = (cl_uint)along_k;
    return kiln_launch_tiles(ctx, kernel, "pack_panels", (k + GEMM_PACK_K - 1) / GEMM_PACK_K,
                             panels, 8, KARG(*out), KARG(src), KARG(o), KARG(l), KARG(along),
                             KARG(e), KARG(kk), KARG(w));
}

/* C = alpha op(A) B + beta C with B in panels bp (op(A) packed when ta). */
static kiln_status tiles(kiln_ctx *ctx, const blas_state *s, kiln_transpose ta, size_t m, size_t n, size_t k,
                         float alpha, cl_mem a, size_t a_off, size_t lda, cl_mem bp, float beta,
                         cl_mem c, size_t c_off, size_t ldc)
{
    cl_mem ap = a;
    kiln_status st = KILN_OK;
    if (ta == KILN_TRANS) {
        st = pack(ctx, s, 0, a, a_off, lda, 0, m, k, (cl_uint)s->tile.mr, &ap);
        a_off = 0;
    }
    cl_kernel kernel;
    if (st == KILN_OK)
        st = kiln_kernel_get(ctx, "gemm.cl", s->tile_options[ta == KILN_TRANS ? PACKED_A : PLAIN_A],
                             "gemm_tile", &kernel);
    if (st != KILN_OK)
        return st;
    cl_ulong ao = a_off, la = lda, co = c_off, lc = ldc, mm = m, nn = n, kk = k;
    size_t mr = (size_t)s->tile.mr, nr = 2 * (size_t)s->tile.v;
    return kiln_launch_tiles(ctx, kernel, "gemm_tile", (m + mr - 1) / mr, (n + nr - 1) / nr, 12, KARG(ap), KARG(ao), KARG(la),
                             KARG(bp), KARG(c), KARG(co), KARG(lc), KARG(mm), KARG(nn),
                             KARG(kk), KARG(alpha), KARG(beta));
}

kiln_status kiln_cpu_sgemm(kiln_ctx *ctx, kiln_transpose ta, kiln_transpose tb, size_t m,
                           size_t n, size_t k, float alpha, cl_mem a, size_t a_off, size_t lda,
                           cl_mem b, size_t b_off, size_t ldb, float beta, cl_mem c,
                           size_t c_off, size_t ldc)
{
    cl_mem bp;
    blas_state *s;
    kiln_status st = tiled_state(ctx, &s);
    if (st == KILN_OK)
        st = pack(ctx, s, 1, b, b_off, ldb, tb == KILN_TRANS, n, k, 2 * (cl_uint)s->tile.v, &bp);
    return st == KILN_OK
               ? tiles(ctx, s, ta, m, n, k, alpha, a, a_off, lda, bp, beta, c, c_off, ldc)
               : st;
}

kiln_status kiln_cpu_sgemm_im2col(kiln_ctx *ctx, size_t m, float alpha, cl_mem a, size_t lda,
                                  const gemm_im2col *x, int transposed, float beta, cl_mem c,
                                  size_t ldc)
{
    size_t rows = x->c * x->k * x->k, cols = x->n * x->oh * x->ow;
    size_t n = transposed ? rows : cols, k = transposed ? cols : rows;
    blas_state *s;
    kiln_status st = tiled_state(ctx, &s);
    if (st != KILN_OK)
        return st;
    /* the panels are as wide as the tile kernel's NR, the same -DV */
    size_t nr = 2 * (size_t)s->tile.v, panels = (n + nr - 1) / nr;
    cl_mem bp;
    cl_kernel kernel;
    st = scratch(ctx, 1, panels * nr * k * sizeof(float), &bp);
    if (st == KILN_OK)
        st = kiln_kernel_get(ctx, "gemm.cl", s->tile_options[PLAIN_A], "im2col_panels", &kernel);
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
               ? tiles(ctx, s, KILN_NO_TRANS, m, n, k, alpha, a, 0, lda, bp, beta, c, 0, ldc)
               : st;
}
