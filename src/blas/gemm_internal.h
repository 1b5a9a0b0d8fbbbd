/* What gemm.c shares with gemm_conv.c: kiln's CPU GEMM's state, scratch
 * buffers and packing, used by the convolutions' kernels as by the
 * products'. */
#ifndef KILN_GEMM_INTERNAL_H
#define KILN_GEMM_INTERNAL_H

#include "blas/blas.h"

/* gemm.cl's programs per tile: op(A) = A, or A^T, read in place (the
 * packing and convolution kernels come from the first); WITH_GELU added:
 * the same with GELU's epilogues, built only where a product has one. */
enum { PLAIN_A = 0, TRANS_A = 1, WITH_GELU = 2 };

/* gemm.cl's program text: math.cl joins it for the GELU epilogue. */
#define GEMM_SOURCES "math.cl+gemm.cl"

/* The entries of the tables of offsets in local memory (gemm.cl's
 * OFFSETS_MAX, set from here): conv_pixels' and conv_pixels_lines' of a
 * pixel's taps (so at most this many, C K K), conv_weight_pixels' of a
 * chunk's pixels. */
#define GEMM_OFFSETS_MAX 4608

/* Kernel `name` of gemm.cl's first program for s's tile (op(A) = A), where
 * the packing and convolution kernels live. */
static inline kiln_status gemm_kernel(kiln_ctx *ctx, const blas_state *s, const char *name,
                                      cl_kernel *out)
{
    return kernel_get(ctx, GEMM_SOURCES, s->tile_options[PLAIN_A], name, out);
}

/* The same with tiles of mr rows (the tile's NR): for the convolutions
 * whose rows a smaller MR divides. */
kiln_status gemm_kernel_rows(kiln_ctx *ctx, const blas_state *s, int mr, const char *name,
                             cl_kernel *out);

/* The context's blas state with its tile chosen. */
kiln_status gemm_tiled_state(kiln_ctx *ctx, blas_state **out);

/* Scratch buffer `which` (0 or 1) of at least `bytes`, grown as needed. */
kiln_status gemm_scratch(kiln_ctx *ctx, int which, size_t bytes, cl_mem *out);

/* Packs a k-long operand with `extent` rows (along_k: rows run along k in
 * memory) into panels of w in scratch `which`, padded to a multiple of w. */
kiln_status gemm_pack(kiln_ctx *ctx, const blas_state *s, int which, cl_mem src, size_t off,
                      size_t ld, int along_k, size_t extent, size_t k, cl_uint w, cl_mem *out);

/* Items of a launch whose items each keep a panel slot of their own
 * (gemm_slots, conv_tiles): at most a few per compute unit. */
size_t gemm_slot_items(const kiln_ctx *ctx, size_t panels);

#endif
