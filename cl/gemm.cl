/* kiln's GEMM for CPU-class devices: row-major C = alpha op(A) op(B) + beta C.
 *
 * One work-item per work-group computes an MR x NR tile of C, NR = 2 V, in
 * 2 MR accumulators of type floatV (two vectors per row), reading a column
 * of MR values of op(A) and a row of NR of op(B) per step of k. The tile
 * is a build option (-DMR=1..8 -DV=4|8|16), chosen per context by gemm.c
 * so that the accumulators, the two vectors of B and a broadcast of A fit
 * the registers: 8 x 32 (sixteen float16) for 32 zmm registers of
 * AVX-512, 6 x 16 (twelve float8) for 16 ymm registers of AVX2, 4 x 8 for
 * 128-bit vectors.
 * op(B) is always packed into panels of NR columns, so that every step
 * reads NR contiguous floats whatever the transpose and the leading
 * dimension (a power-of-two stride would otherwise alias in the caches).
 * op(A) is read in place: MR rows streamed side by side, or with A_TRANS
 * (op(A) = A^T) MR adjacent columns of A, a row of A a step; where k is
 * long, A^T is packed into panels of MR rows first.
 * Panels are padded by repeating the last row or column: padded results
 * are computed and never stored. Built with math.cl before it (the GELU
 * epilogue's erf): "math.cl+gemm.cl".
 *
 * Long products run as blocks of k (gemm.c launches one product per
 * block, the first with the caller's beta and the rest accumulating with
 * beta = 1), so that a panel of B, k x NR, stays in the cache while the
 * rows of A stream past it; every kernel here sees one block.
 *
 *   pack_panels: dst[p][kk][j] = along_k ? src[(p*w + j) * ld + kk]
 *                                        : src[kk * ld + p*w + j]
 *   gemm_tile:   tile (p, q) of C, rows p*MR.., columns q*NR.. (across: the
 *                launch's first dimension runs along q)
 *   im2col_panels: op(B) packed straight from a convolution's input
 *   conv_tiles:  a whole convolution, packing and tiles in one launch
 *   pad_planes, conv_pixels: a convolution with few output channels, its
 *                tiles MR output pixels by NR channels, the input read in
 *                place from a zero-padded copy (nothing packed but the
 *                weights)
 *   conv_pixels_lines, conv_pixels_lines2: the same where a tile is a
 *                row's neighbours (stride 1, 2), each item staging the
 *                input rows it reads zero-padded (stage_rows)
 *   phase_weights, conv_phase_tiles: a strided convolution's input
 *                gradient, phase by phase
 *   phase_panels, conv_phase_pixels(_lines): the same with few input
 *                channels, g read in place from a zero-padded copy
 *   conv_phase_pairs: the same at stride 2, the two column phases' tiles
 *                of a row stored together, each item staging the rows
 *                of g it reads zero-padded
 *   conv_stride2_points: the same for a 1 x 1 of stride 2 (a residual
 *                block's shortcut), tiles of channels by an image's
 *                pixels, each 8 pixels' sums stored in the even values
 *                of a vector of a row of dx
 *   conv_weight_slots, sum_slots: a convolution's weight gradient, the
 *                reduction split across items and their sums added
 *   conv_weight_pixels, sum_columns: the same with few output channels,
 *                tiles of taps by channels over staged input rows
 *   gemm_slots:  a product with few rows of op(A), packing and tiles in
 *                one launch (A^T too, read in place: a_trans, in the
 *                plain program only)
 *   gemv_rows:   a product with a row or a few of A and op(B) = B^T (a
 *                linear layer's forward at a small batch), B read in place
 */
#ifndef MR
#define MR 8
#endif
#ifndef V
#define V 16
#endif
#if MR < 1 || MR > 8 || (V != 4 && V != 8 && V != 16)
#error "gemm.cl: MR must be 1..8 and V 4, 8 or 16"
#endif
#define NR (2 * V)
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define floatV CAT(float, V)
#define vloadV CAT(vload, V)
#define vstoreV CAT(vstore, V)
#define PACK_K 64 /* k values per packing work-item */

/* ROWS(X): X(0) X(1) ... X(MR - 1) */
#define ROWS1(X) X(0)
#define ROWS2(X) ROWS1(X) X(1)
#define ROWS3(X) ROWS2(X) X(2)
#define ROWS4(X) ROWS3(X) X(3)
#define ROWS5(X) ROWS4(X) X(4)
#define ROWS6(X) ROWS5(X) X(5)
#define ROWS7(X) ROWS6(X) X(6)
#define ROWS8(X) ROWS7(X) X(7)
#define ROWS(X) CAT(ROWS, MR)(X)

/* Row t of the transpose of an 8 x 8 block held as rows r0 .. r7. */
#define COLUMN8(t) \
    (float8)(r0.s##t, r1.s##t, r2.s##t, r3.s##t, r4.s##t, r5.s##t, r6.s##t, r7.s##t)
#define LOAD_ROW8(i) float8 r##i = vload8(0, s + (i) * ld);
#define STORE_COLUMN8(t) vstore8(COLUMN8(t), 0, d + (t) * w);

/* Helpers that always inline: a constant argument (a panel's width) then
 * unrolls and vectorizes their loops. */
#define INLINE static inline __attribute__((always_inline))
/* Helpers called once per tile (or per row of a convolution's tile) or
 * once per panel: out of line, since PoCL compiles each kernel at its
 * first launch, under one lock for the process, and inlining them (once
 * per row, or unrolled for a constant width) tripled the compile time of
 * the kernels that call them, the larger part of a cold start
 * (docs/architecture.md). */
#define OUT_OF_LINE static __attribute__((noinline))
/* v, or v plus o where the kernel's result adds to what its output holds
 * (adding: a gradient that another reader's gradient already wrote). */
#define ADDED(v, o) (adding ? (v) + (o) : (v))

/* dst[kk][j] = src[j * ld + kk] for kk in [k0, k1) and j < w (a multiple
 * of 8): 8 x 8 blocks, loaded as rows and stored as columns, then the
 * last k one value at a time. Out of line: unrolled for a constant w, it
 * was most of the compile time of pack_panels and gemm_slots. */
OUT_OF_LINE void pack_transposed(__global float *dst, __global const float *src, ulong ld,
                                 size_t k0, size_t k1, uint w)
{
    size_t kk = k0;
    for (; kk + 8 <= k1; kk += 8)
        for (uint j = 0; j < w; j += 8) {
            __global const float *s = src + j * ld + kk;
            __global float *d = dst + kk * w + j;
            LOAD_ROW8(0) LOAD_ROW8(1) LOAD_ROW8(2) LOAD_ROW8(3)
            LOAD_ROW8(4) LOAD_ROW8(5) LOAD_ROW8(6) LOAD_ROW8(7)
            STORE_COLUMN8(0) STORE_COLUMN8(1) STORE_COLUMN8(2) STORE_COLUMN8(3)
            STORE_COLUMN8(4) STORE_COLUMN8(5) STORE_COLUMN8(6) STORE_COLUMN8(7)
        }
    for (; kk < k1; kk++)
        for (uint j = 0; j < w; j++)
            dst[kk * w + j] = src[j * ld + kk];
}

/* pack_panel's last panel, which extent ends within: one value at a time,
 * and out of line, since unrolling it for a constant w only cost
 * compilation (PoCL compiles each kernel at its first launch). */
OUT_OF_LINE void pack_edge(__global float *dst, __global const float *src, ulong ld, uint along_k,
                           size_t extent, size_t j0, size_t k0, size_t k1, uint w)
{
    size_t last = extent - 1;
    for (size_t kk = k0; kk < k1; kk++)
        for (uint j = 0; j < w; j++) {
            size_t col = min(j0 + j, last);
            dst[kk * w + j] = along_k ? src[col * ld + kk] : src[kk * ld + col];
        }
}

/* Rows k0 .. k1 - 1 of panel j0 .. j0 + w - 1 of src (extent columns),
 * padded by repeating the last column, into dst (the panel's start). */
INLINE void pack_panel(__global float *dst, __global const float *src, ulong ld, uint along_k,
                       size_t extent, size_t j0, size_t k0, size_t k1, uint w)
{
    if (j0 + w > extent)
        pack_edge(dst, src, ld, along_k, extent, j0, k0, k1, w);
    else if (along_k)
        pack_transposed(dst, src + j0 * ld, ld, k0, k1, w);
    else
        for (size_t kk = k0; kk < k1; kk++)
            for (uint j = 0; j < w; j++)
                dst[kk * w + j] = src[kk * ld + j0 + j];
}

__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
pack_panels(__global float *dst, __global const float *src, const ulong off, const ulong ld,
            const uint along_k, const ulong extent, const ulong k, const uint w,
            const ulong span)
{
    size_t k0 = get_global_id(0) * span, p = get_global_id(1);
    size_t k1 = min(k0 + (size_t)span, (size_t)k);
    if (w == NR) /* op(B)'s panels; w is a constant in each call */
        pack_panel(dst + p * k * NR, src + off, ld, along_k, extent, p * NR, k0, k1, NR);
    else /* op(A)'s, of MR, only ever packed across k (A^T with a long k, gemm.c) */
        pack_panel(dst + p * k * MR, src + off, ld, 0, extent, p * MR, k0, k1, MR);
}

#if A_TRANS
/* row q of op(A) = A^T at a + a_off + q / MR * a_panel + q % MR, its k
 * values lda apart: in place (a_panel = MR: column q of A), or packed
 * into panels of MR rows (a_panel = k MR, lda = MR) */
#define A_ROW(r)                                                  \
    size_t q##r = min(row0 + r, (size_t)m - 1);                   \
    __global const float *a##r = a + a_off + q##r / MR * a_panel + q##r % MR;
#define A_STEP lda
#else
#define A_ROW(r) __global const float *a##r = a + a_off + min(row0 + r, (size_t)m - 1) * lda;
#define A_STEP 1
#endif

#define ACC(r) floatV c##r##0 = 0.0f, c##r##1 = 0.0f;
/* Row r's value of op(A) at this k times op(B)'s, then a<r> `step` on. */
#define FMA_STEP(r, step)                       \
    {                                           \
        floatV s = *a##r;                       \
        a##r += step;                           \
        c##r##0 = fma(s, b0, c##r##0);          \
        c##r##1 = fma(s, b1, c##r##1);          \
    }
#define FMA(r) FMA_STEP(r, A_STEP)
/* A tile's row r of results into t[r], for a store that takes the tile. */
#define SAVE_ROW(r)                 \
    vstoreV(c##r##0, 0, t[r]);      \
    vstoreV(c##r##1, 1, t[r]);
/* A tile of m rows from row0 stored at o (rows ld apart) through one call
 * of store_tile; STORE_TILE: the tile at row0, col0 of C. */
#define STORE_TILE_AT(o, ld, al, be, bi, ep, re)                                             \
    {                                                                                        \
        float t[MR][NR];                                                                     \
        ROWS(SAVE_ROW)                                                                       \
        store_tile(o, ld, t, min((size_t)MR, (size_t)m - row0), width, al, be, bi, ep, re);   \
    }
#define STORE_TILE                                                                          \
    STORE_TILE_AT(c + c_off + row0 * ldc + col0, ldc, alpha, beta, bias + col0, epilogue,   \
                  aux + c_off + row0 * ldc + col0)

/* The epilogue of a product that is a linear layer's whole output (gemm.c's
 * gemm_epilogue), after alpha and beta: the bias of each column added
 * (EPI_BIAS), then the value at the same place of a tensor aux laid out as
 * C (EPI_RESIDUAL), or the product times that value (EPI_TIMES: a GELU's
 * derivative, for the gradient of its input), then max(v, 0) (EPI_RELU)
 * or GELU (EPI_GELU, its derivative kept in aux where EPI_KEEP). The same
 * operations, and so the same bits, as act.cl's bias_act_rows, add,
 * times and act_forward(_grad) after the product. aux is read or written,
 * never both. */
#define EPI_BIAS 1u
#define EPI_RELU 2u
#define EPI_RESIDUAL 4u
#define EPI_GELU 8u
#define EPI_KEEP 16u
#define EPI_TIMES 32u

/* GELU's epilogues exist in the programs built with -DGELU_EPILOGUES
 * only (gemm.c asks for them where a product has one): drivers that
 * inline every call (llvmpipe) compiled every tile program 10x slower
 * with their erf and exp at each store. */
#ifdef GELU_EPILOGUES
#define intV CAT(int, V)
MATH_ERF(erf_V, floatV)
MATH_EXP(exp_V, floatV, intV)

/* act.cl's GELU, x Φ(x), and with keep its derivative Φ(x) + x φ(x) into
 * *d (act_grad's with dy = 1), both from one erf. The scalar form is out of
 * line, not inlined at every scalar store (gemv_rows' eight, the tiles'
 * tails). */
OUT_OF_LINE float gelu_one(float x, int keep, __global float *d)
{
    float e = erf_fast(x * INV_SQRT_2), x_half = 0.5f * x;
    if (keep) {
        float cdf = fma(0.5f, e, 0.5f);
        float pdf = INV_SQRT_2PI * exp_nonpositive(-0.5f * x * x);
        *d = 1.0f * (cdf + x * pdf);
    }
    return fma(x_half, e, x_half);
}

INLINE floatV gelu_V(floatV x, int keep, floatV *d)
{
    floatV e = erf_V(x * INV_SQRT_2), x_half = 0.5f * x;
    if (keep) {
        floatV cdf = fma(0.5f, e, 0.5f);
        floatV pdf = INV_SQRT_2PI * exp_V(-0.5f * x * x);
        *d = 1.0f * (cdf + x * pdf);
    }
    return fma(x_half, e, x_half);
}
#endif

/* The epilogue's arithmetic for one value v of column j, stored at o (aux's
 * value at a): alpha, beta (0 never reads C), the bias, the residual or
 * the factor, ReLU or GELU. */
INLINE void store_one(__global float *o, float v, float alpha, float beta,
                      __global const float *bias, size_t j, uint epi, __global float *a)
{
    v = alpha * v + (beta != 0.0f ? beta * *o : 0.0f);
    if (epi & EPI_BIAS)
        v += bias[j];
    if (epi & EPI_RESIDUAL)
        v += *a;
    if (epi & EPI_TIMES)
        v *= *a;
#ifdef GELU_EPILOGUES
    if (epi & EPI_GELU)
        v = gelu_one(v, epi & EPI_KEEP, a);
#endif
    *o = epi & EPI_RELU ? fmax(v, 0.0f) : v;
}

/* Writes the first `rows` rows and `width` columns of a tile's results t
 * to o (rows ldc apart), as store_one does, a whole row of NR in vectors.
 * bias holds the width columns' biases where epi has EPI_BIAS, aux the
 * rows (ldc apart) that EPI_RESIDUAL, EPI_TIMES and EPI_KEEP read or
 * write. One call a
 * tile: six calls (one a row) cost the GPT's k = 128 products 4-6 %
 * against OpenBLAS, and inlining it six times doubled the tile kernels'
 * compile time. */
OUT_OF_LINE void store_tile(__global float *o, ulong ldc, float t[MR][NR], size_t rows,
                            size_t width, float alpha, float beta, __global const float *bias,
                            uint epi, __global float *aux)
{
    for (size_t r = 0; r < rows; r++, o += ldc, aux += ldc) {
        if (width < NR) {
            for (size_t j = 0; j < width; j++)
                store_one(o + j, t[r][j], alpha, beta, bias, j, epi, aux + j);
            continue;
        }
        floatV x0 = alpha * vloadV(0, t[r]), x1 = alpha * vloadV(1, t[r]);
        if (beta != 0.0f) {
            x0 += beta * vloadV(0, o);
            x1 += beta * vloadV(1, o);
        }
        if (epi & EPI_BIAS) {
            x0 += vloadV(0, bias);
            x1 += vloadV(1, bias);
        }
        if (epi & EPI_RESIDUAL) {
            x0 += vloadV(0, aux);
            x1 += vloadV(1, aux);
        }
        if (epi & EPI_TIMES) {
            x0 *= vloadV(0, aux);
            x1 *= vloadV(1, aux);
        }
#ifdef GELU_EPILOGUES
        if (epi & EPI_GELU) {
            floatV d0, d1;
            x0 = gelu_V(x0, epi & EPI_KEEP, &d0);
            x1 = gelu_V(x1, epi & EPI_KEEP, &d1);
            if (epi & EPI_KEEP) {
                vstoreV(d0, 0, aux);
                vstoreV(d1, 1, aux);
            }
        }
#endif
        if (epi & EPI_RELU) {
            x0 = fmax(x0, 0.0f);
            x1 = fmax(x1, 0.0f);
        }
        vstoreV(x0, 0, o);
        vstoreV(x1, 1, o);
    }
}

__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
gemm_tile(__global const float *a, const ulong a_off, const ulong lda, __global const float *b,
          const ulong b_off, const ulong ldb, __global float *c, const ulong c_off,
          const ulong ldc, const ulong m, const ulong n, const ulong k, const float alpha,
          const float beta, __global const float *bias, const uint epilogue, const uint across,
          const ulong a_panel, __global float *aux)
{
    size_t t0 = get_global_id(0), t1 = get_global_id(1);
    size_t row0 = (across ? t1 : t0) * MR, col0 = (across ? t0 : t1) * NR;
    size_t width = min((size_t)NR, (size_t)n - col0);
    ROWS(A_ROW)
    /* B's panels (ldb = 0), or B read in place, its rows ldb apart */
    b += b_off + (ldb ? col0 : col0 * k);
    size_t b_step = ldb ? ldb : NR;
    ROWS(ACC)
    for (size_t kk = 0; kk < k; kk++) {
        floatV b0 = vloadV(0, b), b1 = vloadV(1, b);
        ROWS(FMA)
        b += b_step;
    }
    STORE_TILE
}

/* Every MR-row tile of the columns col0 .. col0 + NR - 1 of C from
 * `panel`, their k x NR values of op(B), each tile stored by STORE_ALL;
 * START finds the tile's rows of op(A) and STEP multiplies their values at
 * one k and moves on (ROWS(A_ROW) and ROWS(FMA), or gemm_slots' own). */
#define FOR_EACH_ROW_TILE(START, STEP, STORE_ALL)            \
    for (size_t row0 = 0; row0 < m; row0 += MR) {           \
        __global const float *b = panel;                    \
        START                                               \
        ROWS(ACC)                                           \
        for (size_t kk = 0; kk < k; kk++) {                 \
            floatV b0 = vloadV(0, b), b1 = vloadV(1, b);    \
            STEP                                            \
            b += NR;                                        \
        }                                                   \
        STORE_ALL                                           \
    }

/* The convolutions' kernels: not in the GELU programs, which hold the
 * products' only. */
#ifndef GELU_EPILOGUES

/* The first t >= 0 with t S + base >= 0. */
static uint first_inside(int base, uint S)
{
    return base >= 0 ? 0u : (uint)(-base + (int)S - 1) / S;
}

/* out[t * step] for t < run: row[t S + base], or 0 where that falls outside
 * [0, W) or the whole row does (live = 0). The copy between the zeros
 * runs without a test per value. */
static void window_run(__global float *out, uint step, __global const float *row, int live,
                       uint run, uint S, int base, uint W)
{
    uint lo = live ? min(run, first_inside(base, S)) : run;
    uint hi = live ? min(run, first_inside(base - (int)W, S)) : run;
    uint t = 0;
    for (; t < lo; t++)
        out[t * step] = 0.0f;
    if (S == 1)
        for (; t < hi; t++)
            out[t * step] = row[base + (int)t];
    else
        for (; t < hi; t++)
            out[t * step] = row[base + (int)(t * S)];
    for (; t < run; t++)
        out[t * step] = 0.0f;
}

/* The (n, oh, ow) of column q of the im2col matrix, stepped along it: a
 * walk over the pixels of planes of OH x OW in order, the first found by
 * division and the next ones by counting (in conv_pixels, the divisions
 * of every row of a tile took a tenth of a short tile's time). */
typedef struct {
    size_t n;
    uint oh, ow;
} im2col_at;

static im2col_at im2col_start(size_t q, uint OH, uint OW)
{
    size_t p2 = (size_t)OH * OW;
    im2col_at at = {q / p2, (uint)(q % p2) / OW, (uint)(q % p2) % OW};
    return at;
}

static void im2col_advance(im2col_at *at, uint run, uint OH, uint OW)
{
    at->ow += run;
    if (at->ow == OW) {
        at->ow = 0;
        if (++at->oh == OH) {
            at->oh = 0;
            at->n++;
        }
    }
}

/* Rows k0 .. k1 - 1 of the panel of NR im2col columns from j0 (of extent),
 * into dst[(kk - kbase) * NR + j]; columns past the extent are zero. */
OUT_OF_LINE void pack_columns_runs(__global float *dst, __global const float *x, uint C, uint H,
                                   uint W, uint K, uint S, uint P, uint D, uint OH, uint OW,
                                   size_t j0, size_t kbase, size_t k0, size_t k1, size_t extent)
{
    uint KK = K * K;
    for (size_t kk = k0; kk < k1; kk++) {
        uint c = (uint)kk / KK, kh = (uint)kk / K % K, kw = (uint)kk % K;
        im2col_at at = im2col_start(j0, OH, OW);
        __global float *out = dst + (kk - kbase) * NR;
        for (uint j = 0; j < NR;) {
            uint run = min(min(OW - at.ow, NR - j),
                           (uint)max((long)extent - (long)(j0 + j), 1L));
            int ih = (int)(at.oh * S + kh * D) - (int)P;
            int live = j0 + j < extent && ih >= 0 && ih < (int)H;
            __global const float *row = x + ((at.n * C + c) * H + (uint)max(ih, 0)) * W;
            window_run(out + j, 1, row, live, run, S, (int)(at.ow * S + kw * D) - (int)P, W);
            j += run;
            im2col_advance(&at, run, OH, OW);
        }
    }
}

#define intV CAT(int, V)
#if V == 16
#define LANES_V (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
#elif V == 8
#define LANES_V (int8)(0, 1, 2, 3, 4, 5, 6, 7)
#else
#define LANES_V (int4)(0, 1, 2, 3)
#endif

/* Which of the lanes at rows oh, columns ow fall inside x's plane when
 * shifted by (sh, sw). */
static intV inside_lanes(intV oh, intV ow, int sh, int sw, int H, int W)
{
    return (oh + sh >= 0) & (oh + sh < H) & (ow + sw >= 0) & (ow + sw < W);
}

/* pack_columns where the convolution keeps the size (stride 1, OW = W)
 * and the panel lies in one sample: row kk = (c, kh, kw) of the panel is
 * then NR neighbouring values of x's plane c, shifted by (kh D - P) W +
 * kw D - P from the panel's own positions, with the lanes that fall
 * outside the plane set to 0. Two vector loads a row, where the loads stay
 * inside x (at its first and last values they might not: pack_columns_runs
 * takes those panels). */
OUT_OF_LINE void pack_columns_shifted(__global float *dst, __global const float *x, uint C, uint H,
                                      uint W, uint K, uint P, uint D, size_t n, uint q,
                                      size_t kbase, size_t k0, size_t k1)
{
    intV at0 = (int)q + LANES_V, at1 = at0 + V;
    intV oh0 = at0 / (int)W, ow0 = at0 - oh0 * (int)W, oh1 = at1 / (int)W,
         ow1 = at1 - oh1 * (int)W;
    __global const float *xn = x + n * C * H * W + q;
    uint KK = K * K, c = (uint)k0 / KK, kh = (uint)k0 / K % K, kw = (uint)k0 % K;
    for (size_t kk = k0; kk < k1; kk++) {
        int sh = (int)(kh * D) - (int)P, sw = (int)(kw * D) - (int)P;
        __global const float *from = xn + (long)c * H * W + (long)sh * (int)W + sw;
        __global float *out = dst + (kk - kbase) * NR;
        intV in0 = inside_lanes(oh0, ow0, sh, sw, (int)H, (int)W);
        intV in1 = inside_lanes(oh1, ow1, sh, sw, (int)H, (int)W);
        vstoreV(select((floatV)0.0f, vloadV(0, from), in0), 0, out);
        vstoreV(select((floatV)0.0f, vloadV(1, from), in1), 1, out);
        if (++kw == K) {
            kw = 0;
            if (++kh == K) {
                kh = 0;
                c++;
            }
        }
    }
}

/* Rows k0 .. k1 - 1 of the panel of NR im2col columns from j0 (of extent),
 * into dst[(kk - kbase) * NR + j]; columns past the extent are zero. */
static void pack_columns(__global float *dst, __global const float *x, uint C, uint H, uint W,
                         uint K, uint S, uint P, uint D, uint OH, uint OW, size_t j0,
                         size_t kbase, size_t k0, size_t k1, size_t extent)
{
    size_t p2 = (size_t)OH * OW, n = j0 / p2;
    uint q = (uint)(j0 % p2);
    /* the loads of the shifted rows reach (D (K - 1) - P)(W + 1) values
     * past the panel on either side: they must stay inside x */
    long reach = (long)(D * (K - 1) + P) * (W + 1);
    long first = (long)(n * C * H * W + q) - reach;
    long last = (long)((n * C + C - 1) * H * W + q + NR) + reach;
    if (S == 1 && OW == W && OH == H && q + NR <= p2 && j0 + NR <= extent && first >= 0 &&
        last <= (long)(extent / p2 * C * H * W))
        pack_columns_shifted(dst, x, C, H, W, K, P, D, n, q, kbase, k0, k1);
    else
        pack_columns_runs(dst, x, C, H, W, K, S, P, D, OH, OW, j0, kbase, k0, k1, extent);
}

/* Columns k0 .. k1 - 1 (positions (n, oh, ow)) of the NR rows of the im2col
 * matrix from r0 (of extent; past it the last row repeats), transposed:
 * dst[(kk - kbase) * NR + j] = col[r0 + j][kk]. Along a row of the matrix,
 * runs of columns share (n, oh) and read one row of x. */
OUT_OF_LINE void pack_rows(__global float *dst, __global const float *x, uint C, uint H, uint W,
                           uint K, uint S, uint P, uint D, uint OH, uint OW, size_t r0,
                           size_t kbase, size_t k0, size_t k1, size_t extent)
{
    uint KK = K * K;
    for (uint j = 0; j < NR; j++) {
        uint r = (uint)min(r0 + j, extent - 1);
        uint c = r / KK, kh = r / K % K, kw = r % K;
        im2col_at at = im2col_start(k0, OH, OW);
        for (size_t kk = k0; kk < k1;) {
            uint run = (uint)min((size_t)(OW - at.ow), k1 - kk);
            int ih = (int)(at.oh * S + kh * D) - (int)P;
            int live = ih >= 0 && ih < (int)H;
            __global const float *row = x + ((at.n * C + c) * H + (uint)max(ih, 0)) * W;
            window_run(dst + (kk - kbase) * NR + j, NR, row, live, run, S,
                       (int)(at.ow * S + kw * D) - (int)P, W);
            kk += run;
            im2col_advance(&at, run, OH, OW);
        }
    }
}

/* Panels of NR of the im2col matrix of x (N, C, H, W) for a convolution,
 * for the k block kbase.. kbase + k - 1:
 * row r = (c, kh, kw), column q = (n, oh, ow), the value
 * x[n, c, oh*S - P + kh*D, ow*S - P + kw*D] or 0 outside. The product's
 * op(B) is that matrix (by_rows = 0: panels of columns, k runs over rows;
 * the forward pass) or its transpose (by_rows = 1: panels of rows, k runs
 * over columns; the weight gradient). Packing from the image directly
 * writes the panels once instead of writing, reading and rewriting a
 * column matrix. Along a row of the matrix, runs of columns share (n, oh)
 * and read one row of x. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
im2col_panels(__global float *dst, __global const float *x, const uint C, const uint H,
              const uint W, const uint K, const uint S, const uint P, const uint D,
              const uint OH, const uint OW, const uint by_rows, const ulong kbase,
              const ulong k, const ulong extent)
{
    size_t k0 = kbase + get_global_id(0) * PACK_K, j0 = get_global_id(1) * NR;
    size_t k1 = min(k0 + PACK_K, (size_t)(kbase + k));
    dst += j0 * k;
    if (by_rows)
        pack_rows(dst, x, C, H, W, K, S, P, D, OH, OW, j0, kbase, k0, k1, extent);
    else
        pack_columns(dst, x, C, H, W, K, S, P, D, OH, OW, j0, kbase, k0, k1, extent);
}

#if !A_TRANS
/* Row `row` of m of a tile's NR results, columns q0 .. q0 + width - 1 of
 * (N * P2) that start at plane position p of sample n, into y (N, m, P2). */
OUT_OF_LINE void store_planes(__global float *y, floatV x0, floatV x1, size_t n, uint p,
                              size_t width, size_t row, size_t m, uint P2, uint adding)
{
    __global float *o = y + (n * m + row) * P2;
    if (width == NR && p + NR <= P2) {
        if (adding) {
            x0 += vloadV(0, o + p);
            x1 += vloadV(1, o + p);
        }
        vstoreV(x0, 0, o + p);
        vstoreV(x1, 1, o + p);
        return;
    }
    float t[NR];
    vstoreV(x0, 0, t);
    vstoreV(x1, 1, t);
    for (size_t j = 0; j < width; j++) {
        o[p] = ADDED(t[j], o[p]);
        if (++p == P2) {
            p = 0;
            o += m * P2; /* the next sample's row */
        }
    }
}

#define STORE_PLANES(r) \
    if (row0 + r < m) \
        store_planes(y, c##r##0, c##r##1, n0, p0, width, row0 + r, m, OH * OW, adding);

/* A whole convolution, y (N, m, OH, OW) = a (m x k, k = C K K) times the
 * im2col matrix of x (N, C, H, W), for CPUs: item g takes the panels of NR
 * columns g, g + items, ..., packs each into its own slot of scratch (k x
 * NR floats, which stays in its core's cache), then computes every MR-row
 * tile of those columns from it, storing straight into y's planes. The
 * column matrix never reaches memory, and y needs no change of layout. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
conv_tiles(__global const float *a, __global const float *x, __global float *y,
           __global float *scratch, const uint C, const uint H, const uint W, const uint K,
           const uint S, const uint P, const uint D, const uint OH, const uint OW,
           const ulong m, const ulong n, const ulong k, const uint adding)
{
    const ulong a_off = 0, lda = k;
    __global float *panel = scratch + get_global_id(0) * k * NR;
    size_t panels = (n + NR - 1) / NR;
    for (size_t q = get_global_id(0); q < panels; q += get_global_size(0)) {
        size_t col0 = q * NR, width = min((size_t)NR, (size_t)n - col0);
        size_t n0 = col0 / (OH * OW);
        uint p0 = (uint)(col0 % (OH * OW));
        pack_columns(panel, x, C, H, W, K, S, P, D, OH, OW, col0, 0, 0, k, n);
        FOR_EACH_ROW_TILE(ROWS(A_ROW), ROWS(FMA), ROWS(STORE_PLANES))
    }
}
#endif

#if !A_TRANS
/* xp (N C planes of Hp x Wp) = x (N C planes of H x W) with P zeros on
 * every side: an item a plane, written front to back. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
pad_planes(__global const float *x, __global float *xp, const uint H, const uint W,
           const uint P)
{
    size_t plane = get_global_id(0);
    uint Wp = W + 2 * P, Hp = H + 2 * P;
    __global float *o = xp + plane * Hp * Wp;
    __global const float *r = x + plane * H * W;
    for (uint j = 0; j < P * Wp; j++)
        *o++ = 0.0f;
    for (uint i = 0; i < H; i++, r += W) {
        for (uint j = 0; j < P; j++)
            *o++ = 0.0f;
        uint j = 0;
        for (; j + 8 <= W; j += 8)
            vstore8(vload8(0, r + j), 0, o + j);
        for (; j < W; j++)
            o[j] = r[j];
        o += W;
        for (uint j = 0; j < P; j++)
            *o++ = 0.0f;
    }
    for (uint j = 0; j < P * Wp; j++)
        *o++ = 0.0f;
}

/* The entries of the tables of offsets in local memory: of a pixel's taps
 * (C K K) in conv_pixels and conv_pixels_lines, of a chunk's pixels in
 * conv_weight_pixels. A build option, from gemm_internal.h. */
#ifndef OFFSETS_MAX
#define OFFSETS_MAX 4608
#endif

/* taps[kk] for kk = (c, kh, kw) < C K K: the offset of the tap from a
 * pixel's first, in planes of `plane` floats, rows Wp long. */
static void tap_offsets(__local uint *taps, uint C, uint K, uint D, uint Wp, size_t plane)
{
    uint kk = 0;
    for (uint c = 0; c < C; c++)
        for (uint kh = 0; kh < K; kh++)
            for (uint kw = 0; kw < K; kw++)
                taps[kk++] = (uint)(c * plane) + kh * D * Wp + kw * D;
}

/* Row r of a conv_pixels tile: its first tap in xp and its place in y. */
#define PIX_ROW(r)                                                                        \
    __global const float *x##r = xp + at.n * C * plane + (size_t)(at.oh * S) * Wp + at.ow * S; \
    out[r] = at.n * m * P2 + (size_t)at.oh * OW + at.ow;                                  \
    if (q0 + r + 1 < npix) /* rows past the end read the last pixel again */              \
        im2col_advance(&at, 1, OH, OW);
#define PIX_FMA(r)                                   \
    {                                                \
        floatV s = x##r[off];                        \
        c##r##0 = fma(s, b0, c##r##0);               \
        c##r##1 = fma(s, b1, c##r##1);               \
    }
/* A conv_pixels tile's products over k = (c, kh, kw), each row's by FMA,
 * in one loop over k, each tap's offset from the table (tap_offsets): the
 * loops over c, kh and kw ran 3 steps at a time at 3 x 3, and at AVX2's
 * 6 x 16 tile their setup and exits cost a fifth of the convolutions'
 * time (the ResNet's forward and input gradients, 131 -> 106 ms a step on
 * an Emerald Rapids Xeon at AVX2; unchanged at AVX-512). */
#define PIX_TAPS(FMA)                                                        \
    for (size_t kk = 0; kk < k; kk++) {                                      \
        size_t off = taps[kk];                                               \
        floatV b0 = vloadV(0, b), b1 = vloadV(1, b);                         \
        ROWS(FMA)                                                            \
        b += NR;                                                             \
    }
/* A tile's `rows` rows into dst channel by channel: row r's result for
 * channel col0 + j at out[r] + (col0 + j) stride, j < count. A channel's
 * pixels go together: the planes lie `stride` floats apart, often a
 * multiple of 4 KiB, and pixel by pixel the tile's stores evicted each
 * other from the cache's sets. */
#define STORE_CHANNELS(dst, stride, count)                             \
    {                                                                  \
        float t[MR][NR];                                               \
        ROWS(SAVE_ROW)                                                 \
        store_channels(dst, stride, count, col0, out, rows, t, adding); \
    }

/* A conv_pixels tile's channel panels, each its products then its
 * stores. */
#define PIX_PANELS(FMA)                                                      \
    for (size_t col0 = 0; col0 < m; col0 += NR) {                            \
        __global const float *b = wp + col0 * k;                             \
        ROWS(ACC)                                                            \
        PIX_TAPS(FMA)                                                        \
        STORE_CHANNELS(y, P2, min((size_t)NR, (size_t)m - col0))             \
    }

/* The step between a whole tile's rows' places when it is one step
 * (pixels in a row, or every S-th of one), else 0. */
INLINE size_t even_step(const size_t *out, size_t rows)
{
    if (rows < MR || out[MR - 1] < out[0])
        return 0;
    size_t step = MR > 1 ? (out[MR - 1] - out[0]) / (MR > 1 ? MR - 1 : 1) : 1;
    for (size_t r = 1; r < MR; r++)
        if (out[r] != out[0] + r * step)
            return 0;
    return step;
}

/* STORE_CHANNELS' stores: a whole tile of pixels one step apart as runs
 * of MR values a channel (a loop of constant length the compiler
 * vectorizes where the step is 1), else value by value. */
INLINE void store_channels(__global float *dst, size_t stride, size_t count, size_t col0,
                           const size_t *out, size_t rows, float t[MR][NR], uint adding)
{
    size_t step = even_step(out, rows);
    if (step == 1)
        for (size_t j = 0; j < count; j++) {
            __global float *d = dst + out[0] + (col0 + j) * stride;
            for (size_t r = 0; r < MR; r++)
                d[r] = ADDED(t[r][j], d[r]);
        }
    else if (step)
        for (size_t j = 0; j < count; j++) {
            __global float *d = dst + out[0] + (col0 + j) * stride;
            for (size_t r = 0; r < MR; r++)
                d[r * step] = ADDED(t[r][j], d[r * step]);
        }
    if (step)
        return;
    for (size_t j = 0; j < count; j++)
        for (size_t r = 0; r < rows; r++)
            dst[out[r] + (col0 + j) * stride] =
                ADDED(t[r][j], dst[out[r] + (col0 + j) * stride]);
}

/* Rows y0 .. y0 + R - 1 of each of the C planes of x (H x W) zero-padded
 * by P on every side (rows outside the plane are zeros) into xs, planes
 * of R x Wp (Wp = W + 2 P). */
OUT_OF_LINE void stage_rows(__global float *xs, __global const float *x, uint C, uint H,
                            uint W, uint P, long y0, uint R)
{
    uint Wp = W + 2 * P;
    for (uint c = 0; c < C; c++)
        for (uint rr = 0; rr < R; rr++) {
            __global float *d = xs + ((size_t)c * R + rr) * Wp;
            long y = y0 + (long)rr;
            if (y < 0 || y >= (long)H) {
                for (uint j = 0; j < Wp; j++)
                    d[j] = 0.0f;
                continue;
            }
            __global const float *src = x + ((size_t)c * H + (size_t)y) * W;
            for (uint j = 0; j < P; j++)
                d[j] = d[P + W + j] = 0.0f;
            for (uint j = 0; j < W; j++)
                d[P + j] = src[j];
        }
}

/* A convolution with few output channels, for CPUs: y (N, m, OH, OW) =
 * w (m x C K K) times the im2col matrix of x, as tiles of MR output pixels
 * (consecutive in N OH OW) by NR channels. wp is w packed in panels of NR
 * rows (pack_panels along k); xp is x zero-padded (pad_planes; planes of
 * Hp x Wp), so that every tap of every pixel reads memory in place. Item g
 * takes a run of consecutive pixel tiles (which read the same rows of xp,
 * then in its core's cache) and every channel panel of each.
 * Each result sums over k = (c, kh, kw) in order, as conv_tiles does: the
 * same bits. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
conv_pixels(__global const float *wp, __global const float *xp, __global float *y,
            const uint C, const uint Hp, const uint Wp, const uint K, const uint S,
            const uint D, const uint OH, const uint OW, const ulong m, const ulong npix,
            const uint adding)
{
    size_t tiles = (npix + MR - 1) / MR, P2 = (size_t)OH * OW, plane = (size_t)Hp * Wp;
    size_t k = (size_t)C * K * K, items = get_global_size(0), g = get_global_id(0);
    __local uint taps[OFFSETS_MAX];
    tap_offsets(taps, C, K, D, Wp, plane);
    for (size_t t = g * tiles / items; t < (g + 1) * tiles / items; t++) {
        size_t q0 = t * MR, out[MR], rows = min((size_t)MR, npix - q0);
        im2col_at at = im2col_start(q0, OH, OW);
        ROWS(PIX_ROW)
        PIX_PANELS(PIX_FMA)
    }
}

/* PIX_FMA for a tile whose rows read x0 line_step floats apart (a
 * constant): one pointer and constant displacements, so that the rows'
 * pointers need no registers. */
#define LINE_FMA(r)                                  \
    {                                                \
        floatV s = x0[off + r * line_step];          \
        c##r##0 = fma(s, b0, c##r##0);               \
        c##r##1 = fma(s, b1, c##r##1);               \
    }
#define LINE_OUT(r) out[r] = o0 + r;

/* conv_pixels where every tile is MR neighbours in a row (OW a multiple
 * of MR) at stride S, a constant, x (N, C, H, W) read unpadded: an item
 * stages the rows that its next CH output rows read, zero-padded by P
 * (stage_rows: R rows a channel, in its core's cache, where a padded copy
 * of all of x went to memory and back), and each tile reads them with
 * LINE_FMA. scratch: each item's staged rows. */
INLINE void conv_line_tiles(__global const float *wp, __global const float *x,
                            __global float *y, __global float *scratch, uint C, uint H, uint W,
                            uint P, uint K, uint D, uint OH, uint OW, size_t m, size_t npix,
                            uint adding, uint CH, const uint S, __local uint *taps)
{
    uint Wp = W + 2 * P, R = (CH - 1) * S + (K - 1) * D + 1, line_step = S;
    size_t tiles = npix / MR, P2 = (size_t)OH * OW, plane = (size_t)R * Wp;
    size_t k = (size_t)C * K * K, items = get_global_size(0), g = get_global_id(0);
    __global float *xs = scratch + g * C * plane;
    tap_offsets(taps, C, K, D, Wp, plane);
    size_t staged_n = npix;
    uint staged_i = 0;
    for (size_t t = g * tiles / items; t < (g + 1) * tiles / items; t++) {
        size_t out[MR], rows = MR;
        im2col_at at = im2col_start(t * MR, OH, OW);
        if (at.n != staged_n || at.oh >= staged_i + CH) {
            staged_n = at.n;
            staged_i = at.oh;
            stage_rows(xs, x + at.n * C * H * W, C, H, W, P, (long)(at.oh * S) - (long)P, R);
        }
        __global const float *x0 = xs + (size_t)((at.oh - staged_i) * S) * Wp + at.ow * S;
        size_t o0 = at.n * m * P2 + (size_t)at.oh * OW + at.ow;
        ROWS(LINE_OUT)
        PIX_PANELS(LINE_FMA)
    }
}

/* conv_line_tiles at stride 1 and 2: each kernel declared at a line's
 * start, where the program text's pruning (keep_kernels) finds it; a
 * kernel made whole by a macro would be compiled into every program of
 * this file. */
#define LINES_PARAMS                                                                         \
    __global const float *wp, __global const float *x, __global float *y,                    \
        __global float *scratch, const uint C, const uint H, const uint W, const uint P,      \
        const uint K, const uint D, const uint OH, const uint OW, const ulong m,             \
        const ulong npix, const uint adding, const uint CH
#define LINES_BODY(stride)                                                                   \
    __local uint taps[OFFSETS_MAX];                                                          \
    conv_line_tiles(wp, x, y, scratch, C, H, W, P, K, D, OH, OW, m, npix, adding, CH, stride, \
                    taps);

__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
conv_pixels_lines(LINES_PARAMS)
{
    LINES_BODY(1)
}

__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
conv_pixels_lines2(LINES_PARAMS)
{
    LINES_BODY(2)
}

/* at[u] for the u-th pixel (q, r, ow) of a chunk of conv_weight_pixels
 * (image q, output row r < CH, column ow), u < count: where it reads x
 * from the chunk's first, images `image` floats apart, rows Wp. */
static void pixel_offsets(__local uint *at, uint count, uint CH, uint OW, uint S, uint Wp,
                          size_t image)
{
    for (uint u = 0; u < count; u++) {
        uint q = u / (CH * OW), r = u / OW % CH, ow = u % OW;
        at[u] = (uint)(q * image) + r * S * Wp + ow * S;
    }
}

/* Row r of a weight-gradient tile: the offset of tap kk = (c, kh, kw) in
 * the padded input from an output row's start, read at ow S. */
#define TAP_ROW(r)                                                                 \
    size_t t##r;                                                                   \
    {                                                                              \
        uint kk = (uint)min(kk0 + r, n - 1), c = kk / (K * K), kh = kk / K % K;    \
        t##r = c * plane + (size_t)(kh * D) * Wp + kk % K * D;                     \
    }
#define TAP_FMA(r)                                   \
    {                                                \
        floatV s = xo[t##r];                         \
        c##r##0 = fma(s, b0, c##r##0);               \
        c##r##1 = fma(s, b1, c##r##1);               \
    }
#define TAP_LOAD(r)                                                                     \
    if (!first && kk0 + r < n) {                                                        \
        c##r##0 = vloadV(0, sl + r * OP);                                               \
        c##r##1 = vloadV(1, sl + r * OP);                                               \
    }
#define TAP_STORE(r) \
    if (kk0 + r < n) { vstoreV(c##r##0, 0, sl + r * OP); vstoreV(c##r##1, 1, sl + r * OP); }

/* A convolution's weight gradient with few output channels, for CPUs:
 * dwᵀ (n x m, n = C K K taps, m channels) = the im2col matrix of x times
 * gᵀ, as tiles of MR taps by NR channels. The output rows (n, oh) are
 * split into equal runs, one an item; an item sums its run into its own
 * slot (n x OP floats, OP = m rounded up to NR) CH rows of a sample at a
 * time, or up to IM whole samples where CH is all of a sample's rows (as
 * many as the host finds fit an item's share of the cache): it copies
 * their gradient as CH OW x OP a sample (gt, zeros past m) and,
 * where x is padded, the rows of x they read, zero-padded, as xs
 * (stage_rows: R rows a channel, which stay in its core's cache, where a
 * padded copy of all of x went to memory and back), then passes every
 * tile over them, the sums kept in the slot between chunks (so a chunk
 * of few pixels, as 8 x 8, loads and stores each tile's sums for more
 * products). A tile passes over a chunk's pixels in one loop, each one's
 * place in x from a table (pixel_offsets), where loops over the images,
 * rows and columns cost 7 % of its time at AVX2's 6 x 16 tile (the
 * ResNet's weight gradients, 65.5 -> 60.6 ms a step on an Emerald Rapids
 * Xeon at AVX2; unchanged at AVX-512). sum_columns then adds the slots in
 * a fixed order into dw (m x n): no atomics, the same bits on every run.
 * scratch: the slots, then each item's gt, then each item's xs. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
conv_weight_pixels(__global const float *g, __global const float *x, __global float *scratch,
                   const uint C, const uint H, const uint W, const uint P, const uint K,
                   const uint S, const uint D, const uint OH, const uint OW, const uint m,
                   const uint OP, const ulong rows, const uint CH, const uint IM)
{
    size_t items = get_global_size(0), i = get_global_id(0), n = (size_t)C * K * K;
    uint R = (CH - 1) * S + (K - 1) * D + 1, Wp = W + 2 * P;
    size_t plane = P ? (size_t)R * Wp : (size_t)H * W, P2 = (size_t)OH * OW;
    size_t gt_floats = (size_t)CH * OW * OP, image = (size_t)C * H * W;
    __global float *slot = scratch + i * n * OP;
    __global float *gt = scratch + items * n * OP + i * gt_floats * IM;
    /* staged rows where P > 0 (none are allocated otherwise) */
    __global float *xs =
        scratch + items * (n * OP + gt_floats * IM) + (P ? i * C * plane * IM : 0);
    size_t lo = i * rows / items, hi = (i + 1) * rows / items;
    __local uint at[OFFSETS_MAX];
    pixel_offsets(at, IM * CH * OW, CH, OW, S, Wp, C * plane); /* image where P is 0 */
    for (size_t row = lo; row < hi;) {
        size_t nn = row / OH, oh0 = row % OH;
        uint ch = (uint)min(min((size_t)CH, OH - oh0), hi - row), imgs = 1;
        if (oh0 == 0 && ch == OH) /* whole images, up to IM of them */
            imgs = (uint)min((size_t)IM, (hi - row) / OH);
        int first = row == lo;
        for (uint q = 0; q < imgs; q++) {
            __global float *gq = gt + q * gt_floats;
            if (m == OP) /* in 8 x 8 blocks */
                pack_transposed(gq, g + (nn + q) * m * P2 + oh0 * OW, P2, 0, ch * OW, OP);
            else
                for (uint o = 0; o < OP; o++) {
                    __global const float *gr =
                        g + ((nn + q) * m + min(o, m - 1)) * P2 + oh0 * OW;
                    for (uint u = 0; u < ch * OW; u++)
                        gq[u * OP + o] = o < m ? gr[u] : 0.0f;
                }
            if (P)
                stage_rows(xs + q * C * plane, x + (nn + q) * image, C, H, W, P,
                           (long)(oh0 * S) - (long)P, R);
        }
        /* x's rows staged, or unpadded in place */
        __global const float *rows_x = P ? xs : x + nn * image + oh0 * S * W;
        uint pixels = imgs * ch * OW;
        for (size_t kk0 = 0; kk0 < n; kk0 += MR) {
            ROWS(TAP_ROW)
            for (uint o0 = 0; o0 < OP; o0 += NR) {
                __global float *sl = slot + kk0 * OP + o0;
                ROWS(ACC)
                ROWS(TAP_LOAD)
                __global const float *b = gt + o0;
                for (uint u = 0; u < pixels; u++) {
                    __global const float *xo = rows_x + at[u];
                    floatV b0 = vloadV(0, b), b1 = vloadV(1, b);
                    ROWS(TAP_FMA)
                    b += OP;
                }
                ROWS(TAP_STORE)
            }
        }
        row += (size_t)ch * imgs;
    }
}

/* dw[o n + kk] = the items' slots[kk OP + o] added in order (count items);
 * neighbouring items take neighbouring channels, whose slots are
 * contiguous. */
__kernel void sum_columns(__global const float *slots, __global float *dw, const uint m,
                          const uint n, const uint OP, const uint items)
{
    uint o = (uint)get_global_id(0), kk = (uint)get_global_id(1);
    size_t at = (size_t)kk * OP + o, size = (size_t)n * OP;
    float sum = slots[at];
    for (uint t = 1; t < items; t++)
        sum += slots[t * size + at];
    dw[(size_t)o * n + kk] = sum;
}
#endif

#if !A_TRANS
#define G_ROW(r) \
    __global const float *a##r = g + (sample * m + min(row0 + r, (size_t)m - 1)) * P2 + p;
#define STORE_PART STORE_TILE_AT(part + row0 * n + col0, n, 1.0f, beta, part, 0, part)

/* The weight gradient of a convolution, for CPUs: dw (m x n, m = O, n =
 * C K K) = g (N, O, OH, OW), as (O, N OH OW), times the transpose of the
 * im2col matrix of x (N, C, H, W). The reduction over (n, oh, ow) is cut
 * into as many equal ranges as there are items; item i sums its range
 * into its own slot of partial results, part + i m n, kc values of the
 * range at a time: it packs the NR rows of the im2col matrix of each
 * panel of dw's columns into its panel slot (kc x NR floats, which stays
 * in its core's cache), then computes every MR-row tile of dw from it,
 * reading g in place, and stores the first kc values' sums or adds the
 * later ones'. sum_slots adds the items' slots in a fixed order: no
 * atomics, the same bits on every run. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
conv_weight_slots(__global const float *g, __global const float *x, __global float *scratch,
                  const ulong part_off, const uint C, const uint H, const uint W,
                  const uint K, const uint S, const uint P, const uint D, const uint OH,
                  const uint OW, const ulong m, const ulong n, const ulong total,
                  const ulong kc)
{
    size_t items = get_global_size(0), i = get_global_id(0), P2 = (size_t)OH * OW;
    size_t q_lo = i * total / items, q_hi = (i + 1) * total / items;
    __global float *panel = scratch + i * kc * NR;
    __global float *part = scratch + part_off + i * m * n;
    for (size_t q0 = q_lo; q0 < q_hi; q0 += kc) {
        size_t q1 = min(q0 + (size_t)kc, q_hi);
        float beta = q0 == q_lo ? 0.0f : 1.0f;
        for (size_t col0 = 0; col0 < n; col0 += NR) {
            size_t width = min((size_t)NR, (size_t)n - col0);
            pack_rows(panel, x, C, H, W, K, S, P, D, OH, OW, col0, q0, q0, q1, n);
            for (size_t row0 = 0; row0 < m; row0 += MR) {
                __global const float *b = panel;
                ROWS(ACC)
                for (size_t q = q0; q < q1;) {
                    size_t sample = q / P2, p = q % P2, run = min(P2 - p, q1 - q);
                    ROWS(G_ROW)
                    for (size_t t = 0; t < run; t++) {
                        floatV b0 = vloadV(0, b), b1 = vloadV(1, b);
                        ROWS(FMA)
                        b += NR;
                    }
                    q += run;
                }
                STORE_PART
            }
        }
    }
}
#endif

/* out[j] = slots[j] + slots[count + j] + ... over `items` slots of count
 * values, added in that order. */
__kernel void sum_slots(__global const float *slots, const ulong part_off, __global float *out,
                        const ulong count, const uint items)
{
    size_t j = get_global_id(0);
    if (j >= count)
        return;
    slots += part_off;
    float sum = slots[j];
    for (uint t = 1; t < items; t++)
        sum += slots[t * count + j];
    out[j] = sum;
}

/* Along one axis of a strided convolution's input gradient, the phase a
 * (the inputs a, a + S, a + 2 S, ...) is reached by the taps k with
 * a + P - k D a multiple of S: `count` of them, first, first + step, ...;
 * tap k reads the gradient at i + (a + P - k D) / S for the phase's
 * input i. */
typedef struct {
    int first, step, count;
} phase_taps;

static phase_taps taps_of(int a, int K, int S, int P, int D)
{
    phase_taps t = {0, 1, 0};
    for (int k = 0; k < K; k++)
        if ((a + P - k * D) % S == 0) {
            if (t.count == 0)
                t.first = k;
            else if (t.count == 1)
                t.step = k - t.first;
            t.count++;
        }
    return t;
}

/* The inputs of phase a along an axis of n: a, a + S, ... below n. */
static uint phase_size(uint a, uint n, uint S)
{
    return a < n ? (n - a + S - 1) / S : 0;
}

/* Where phase (a, b)'s weights start in the buffer of phase_weights: the
 * phases before it, each C rows of O th tw taps, in the order (a, b). */
static size_t phase_offset(int a, int b, uint O, uint C, uint K, uint S, uint P, uint D)
{
    size_t off = 0;
    for (int i = 0; i < (int)S; i++)
        for (int j = 0; j < (int)S && (i < a || (i == a && j < b)); j++)
            off += (size_t)taps_of(i, K, S, P, D).count * taps_of(j, K, S, P, D).count;
    return off * O * C;
}

/* The weights of a strided convolution's input gradient, phase by phase:
 * for phase (a, b), a matrix of C rows and O th tw columns (o, t, u), its
 * column (o, t, u) of row c the weight w[o, c, kh, kw] of the t-th tap kh
 * of phase a and the u-th tap kw of phase b. Each weight lands in exactly
 * one phase. */
/* Where tap (kh, kw) lands: phase (a, b), whose taps are th and tw, as
 * its t-th tap along the rows and u-th along the columns. */
typedef struct {
    int a, b, t, u;
    phase_taps th, tw;
} tap_place;

static tap_place place_of(uint kh, uint kw, uint K, uint S, uint P, uint D)
{
    tap_place q;
    q.a = (((int)(kh * D) - (int)P) % (int)S + (int)S) % (int)S;
    q.b = (((int)(kw * D) - (int)P) % (int)S + (int)S) % (int)S;
    q.th = taps_of(q.a, K, S, P, D);
    q.tw = taps_of(q.b, K, S, P, D);
    q.t = ((int)kh - q.th.first) / q.th.step;
    q.u = ((int)kw - q.tw.first) / q.tw.step;
    return q;
}

/* An item of phase_weights and phase_panels: tap (kh, kw) = item
 * get_global_id(0) of K K, and output channels o0 .. o1 - 1, the
 * get_global_id(1)-th equal run of O. */
typedef struct {
    uint kh, kw, o0, o1;
} tap_run;

INLINE tap_run tap_run_of(uint K, uint O)
{
    uint run = (O + (uint)get_global_size(1) - 1) / (uint)get_global_size(1);
    tap_run r = {(uint)get_global_id(0) / K, (uint)get_global_id(0) % K, 0, 0};
    r.o0 = (uint)get_global_id(1) * run;
    r.o1 = min(r.o0 + run, O);
    return r;
}

__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
phase_weights(__global const float *w, __global float *wp, const uint O, const uint C,
              const uint K, const uint S, const uint P, const uint D)
{ /* an item per tap and equal run of the output channels, as phase_panels */
    tap_run it = tap_run_of(K, O);
    uint kh = it.kh, kw = it.kw;
    tap_place q = place_of(kh, kw, K, S, P, D);
    size_t cols = (size_t)O * q.th.count * q.tw.count;
    __global float *base = wp + phase_offset(q.a, q.b, O, C, K, S, P, D);
    for (uint o = it.o0; o < it.o1; o++)
        for (uint c = 0; c < C; c++)
            base[c * cols + ((size_t)o * q.th.count + q.t) * q.tw.count + q.u] =
                w[((o * C + c) * K + kh) * K + kw];
}

/* Rows 0 .. k - 1, (o, t, u), of the panel of NR columns from j0 (of
 * extent), (n, i, j) over N x HA x WB, of phase (a, b)'s gradient matrix:
 * g[n, o, i + sh, j + sw] for the taps t, u, or 0 outside g; columns past
 * the extent are zero. Runs along j read one row of g. */
OUT_OF_LINE void pack_phase_columns(__global float *dst, __global const float *g, uint O, uint OH,
                                    uint OW, phase_taps th, phase_taps tw, int a, int b, int S,
                                    int P, int D, uint HA, uint WB, size_t j0, size_t k,
                                    size_t extent)
{
    uint per_o = (uint)(th.count * tw.count);
    for (size_t kk = 0; kk < k; kk++) {
        uint o = (uint)kk / per_o, t = (uint)kk % per_o / tw.count, u = (uint)kk % tw.count;
        int sh = (a + P - (th.first + (int)t * th.step) * D) / S;
        int sw = (b + P - (tw.first + (int)u * tw.step) * D) / S;
        im2col_at at = im2col_start(j0, HA, WB);
        __global float *out = dst + kk * NR;
        for (uint j = 0; j < NR;) {
            uint run = min(min(WB - at.ow, NR - j),
                           (uint)max((long)extent - (long)(j0 + j), 1L));
            int gh = (int)at.oh + sh;
            int live = j0 + j < extent && gh >= 0 && gh < (int)OH;
            __global const float *row = g + ((at.n * O + o) * OH + (uint)max(gh, 0)) * OW;
            window_run(out + j, 1, row, live, run, 1, (int)at.ow + sw, OW);
            j += run;
            im2col_advance(&at, run, HA, WB);
        }
    }
}

/* Row `row` (a channel c of C) of a tile's NR results, the columns from
 * (n, i, j) of phase (a, b), into dx (N, C, H, W) at (a + S i, b + S j). */
OUT_OF_LINE void store_phase(__global float *dx, floatV x0, floatV x1, im2col_at at, size_t width,
                             size_t row, uint C, uint H, uint W, uint HA, uint WB, uint a, uint b,
                             uint S, uint adding)
{
    float t[NR];
    vstoreV(x0, 0, t);
    vstoreV(x1, 1, t);
    for (size_t j = 0; j < width;) {
        uint run = min(WB - at.ow, (uint)(width - j));
        __global float *o = dx + ((at.n * C + row) * H + a + S * at.oh) * W + b + S * at.ow;
        for (uint r = 0; r < run; r++)
            o[r * S] = ADDED(t[j + r], o[r * S]);
        j += run;
        im2col_advance(&at, run, HA, WB);
    }
}

#if !A_TRANS
#define STORE_PHASE(r)                                                                     \
    if (row0 + r < m)                                                                      \
        store_phase(dx, c##r##0, c##r##1, at, width, row0 + r, C, H, W, HA, WB, pa, pb, S, \
                    adding);

/* The input gradient of a strided convolution, dx (N, C, H, W), from its
 * output gradient g (N, O, OH, OW), for CPUs. The inputs fall into S x S
 * phases (a + S i, b + S j); each phase is a stride-1 convolution of g by
 * the taps that reach it (phase_weights' matrix of that phase, read in
 * place), so no product is spent on the zeros of a dilated g. Item q takes
 * the panels q, q + items, ... of the phases' panels in turn, packs each
 * into its own slot of scratch (O K K x NR floats at most, which stays in
 * its core's cache) and computes every MR-row tile of C from it, storing
 * straight into dx: one launch, every value of dx written once. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
conv_phase_tiles(__global const float *wp, __global const float *g, __global float *dx,
                 __global float *scratch, const uint N, const uint C, const uint H,
                 const uint W, const uint O, const uint OH, const uint OW, const uint K,
                 const uint S, const uint P, const uint D, const ulong slot, const uint adding)
{
    __global float *panel = scratch + get_global_id(0) * slot;
    __global const float *a = wp;
    const ulong m = C;
    size_t all = 0;
    for (uint ph = 0; ph < S * S; ph++) {
        size_t cols = (size_t)N * phase_size(ph / S, H, S) * phase_size(ph % S, W, S);
        all += (cols + NR - 1) / NR;
    }
    for (size_t q = get_global_id(0); q < all; q += get_global_size(0)) {
        uint ph = 0, HA = 0, WB = 0;
        size_t rest = q, extent = 0;
        for (;; ph++) {
            HA = phase_size(ph / S, H, S);
            WB = phase_size(ph % S, W, S);
            extent = (size_t)N * HA * WB;
            if (rest < (extent + NR - 1) / NR)
                break;
            rest -= (extent + NR - 1) / NR;
        }
        uint pa = ph / S, pb = ph % S;
        phase_taps th = taps_of((int)pa, (int)K, (int)S, (int)P, (int)D);
        phase_taps tw = taps_of((int)pb, (int)K, (int)S, (int)P, (int)D);
        const ulong k = (ulong)O * th.count * tw.count, lda = k;
        const ulong a_off = phase_offset((int)pa, (int)pb, O, C, K, S, P, D);
        size_t col0 = rest * NR, width = min((size_t)NR, extent - col0);
        im2col_at at = im2col_start(col0, HA, WB);
        pack_phase_columns(panel, g, O, OH, OW, th, tw, (int)pa, (int)pb, (int)S, (int)P,
                           (int)D, HA, WB, col0, k, extent);
        FOR_EACH_ROW_TILE(ROWS(A_ROW), ROWS(FMA), ROWS(STORE_PHASE))
    }
}
#endif
#endif /* GELU_EPILOGUES */

#if !A_TRANS
#ifndef GELU_EPILOGUES
/* The weights of each phase in panels for conv_phase_pixels: for phase
 * (a, b), its th tw taps by O channels, k = (t, u, o) (the taps outer, so
 * that the product's inner loop runs over the O channels), by C input
 * channels in panels of NR (CP: C rounded up to NR, zeros past C), each
 * panel k x NR. One item per tap (kh, kw) and equal run of the output
 * channels, over (K K, runs): where a tap lands is found once an item (an
 * item per weight, finding it each time, took 1.8 ms for 128 x 64 x 3 x 3
 * weights). */
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
phase_panels(__global const float *w, __global float *wq, const uint O, const uint C,
             const uint CP, const uint K, const uint S, const uint P, const uint D)
{
    tap_run it = tap_run_of(K, O);
    uint kh = it.kh, kw = it.kw;
    tap_place q = place_of(kh, kw, K, S, P, D);
    size_t k = (size_t)O * q.th.count * q.tw.count, t = (size_t)q.t * q.tw.count + q.u;
    __global float *base = wq + phase_offset(q.a, q.b, O, CP, K, S, P, D);
    for (uint o = it.o0; o < it.o1; o++) {
        __global float *row = base + (t * O + o) * NR;
        for (uint c = 0; c < CP; c++)
            row[c / NR * k * NR + c % NR] = c < C ? w[((o * C + c) * K + kh) * K + kw] : 0.0f;
    }
}

/* Row r of a phase tile: pixel (n, i, j) of the phase, its first tap in
 * gp (g zero-padded by PG) and its place in dx. */
#define PHASE_ROW(r)                                                                    \
    __global const float *x##r = gp + at.n * O * plane + (size_t)(at.oh + PG) * Wp + at.ow + PG; \
    out[r] = (at.n * C * H + pa + S * at.oh) * W + pb + S * at.ow;                          \
    if (q0 + r + 1 < npix)                                                                  \
        im2col_advance(&at, 1, HA, WB);

/* What conv_phase_pixels needs of phase (pa, pb): its inputs along each
 * axis, its taps, its weights' k and panels. */
typedef struct {
    uint pa, pb, HA, WB;
    phase_taps th, tw;
    size_t k, npix;
    __global const float *w;
} phase_geom;

INLINE phase_geom phase_geom_of(__global const float *wq, uint pa, uint pb, uint N, uint C,
                                uint H, uint W, uint O, uint K, uint S, uint P, uint D)
{
    phase_geom f;
    f.pa = pa;
    f.pb = pb;
    f.HA = phase_size(pa, H, S);
    f.WB = phase_size(pb, W, S);
    f.th = taps_of((int)pa, (int)K, (int)S, (int)P, (int)D);
    f.tw = taps_of((int)pb, (int)K, (int)S, (int)P, (int)D);
    f.k = (size_t)O * f.th.count * f.tw.count;
    f.npix = (size_t)N * f.HA * f.WB;
    f.w = wq + phase_offset((int)pa, (int)pb, O, (C + NR - 1) / NR * NR, K, S, P, D);
    return f;
}

/* A phase tile's products over k = (its row taps, its column taps, the O
 * channels of g), FMAS adding each step's to the tile's rows: g read at
 * off from the rows' pointers, the weights of phase_panels at b. */
#define PHASE_TAPS(FMAS)                                                                      \
    for (int tt = 0; tt < f->th.count; tt++) {                                               \
        int sh = ((int)f->pa + (int)P - (f->th.first + tt * f->th.step) * (int)D) / (int)S;  \
        for (int uu = 0; uu < f->tw.count; uu++) {                                           \
            int sw = ((int)f->pb + (int)P - (f->tw.first + uu * f->tw.step) * (int)D) / (int)S; \
            long off = (long)sh * (long)Wp + sw;                                             \
            for (uint o = 0; o < O; o++, off += (long)plane) {                               \
                floatV b0 = vloadV(0, b), b1 = vloadV(1, b);                                 \
                FMAS                                                                         \
                b += NR;                                                                     \
            }                                                                                \
        }                                                                                    \
    }

/* Tile t of phase f of conv_phase_pixels. */
INLINE void phase_tile(const phase_geom *f, __global const float *gp, __global float *dx,
                       uint C, uint H, uint W, uint O, uint Wp, size_t plane, uint S, uint P,
                       uint D, uint PG, uint adding, size_t t, const int lines)
{
    uint pa = f->pa, pb = f->pb, HA = f->HA, WB = f->WB;
    size_t k = f->k, npix = f->npix, HW = (size_t)H * W;
    size_t q0 = t * MR, out[MR], rows = min((size_t)MR, npix - q0);
    const uint line_step = 1; /* a phase's neighbours, with lines */
    im2col_at at = im2col_start(q0, HA, WB);
    ROWS(PHASE_ROW)
    for (size_t col0 = 0; col0 < C; col0 += NR) {
        __global const float *b = f->w + col0 * k;
        ROWS(ACC)
        PHASE_TAPS(if (lines) { ROWS(LINE_FMA) } else { ROWS(PIX_FMA) })
        STORE_CHANNELS(dx, HW, min((size_t)NR, (size_t)C - col0))
    }
}

/* The input gradient of a strided convolution with few input channels,
 * for CPUs: phase by phase (a + S i, b + S j) of dx (N, C, H, W), tiles of
 * MR of the phase's inputs by NR channels, each a stride-1 convolution of
 * the output gradient by the taps that reach the phase (as
 * conv_phase_tiles), the gradient read in place from gp (g zero-padded by
 * PG on every side, planes of Hp x Wp) and the weights from phase_panels:
 * nothing else packed, as conv_pixels. Item g takes a run of each phase's
 * tiles; a phase no tap reaches gets zeros (or nothing, where dx adds). */
INLINE void phase_pixel_tiles(__global const float *wq, __global const float *gp,
                              __global float *dx, uint N, uint C, uint H, uint W, uint O,
                              uint Hp, uint Wp, uint K, uint S, uint P, uint D, uint PG,
                              uint adding, const int lines)
{
    size_t items = get_global_size(0), g = get_global_id(0), plane = (size_t)Hp * Wp;
    for (uint ph = 0; ph < S * S; ph++) {
        phase_geom f = phase_geom_of(wq, ph / S, ph % S, N, C, H, W, O, K, S, P, D);
        size_t tiles = (f.npix + MR - 1) / MR;
        if (f.k == 0 && adding)
            continue;
        for (size_t t = g * tiles / items; t < (g + 1) * tiles / items; t++)
            phase_tile(&f, gp, dx, C, H, W, O, Wp, plane, S, P, D, PG, adding, t, lines);
    }
}

__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
conv_phase_pixels(__global const float *wq, __global const float *gp, __global float *dx,
                  const uint N, const uint C, const uint H, const uint W, const uint O,
                  const uint Hp, const uint Wp, const uint K, const uint S, const uint P,
                  const uint D, const uint PG, const uint adding)
{
    phase_pixel_tiles(wq, gp, dx, N, C, H, W, O, Hp, Wp, K, S, P, D, PG, adding, 0);
}

/* conv_phase_pixels where each phase's rows are a multiple of MR long:
 * its tiles are neighbours in a row of gp, read at constant
 * displacements from one pointer (LINE_FMA). */
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
conv_phase_pixels_lines(__global const float *wq, __global const float *gp,
                        __global float *dx, const uint N, const uint C, const uint H,
                        const uint W, const uint O, const uint Hp, const uint Wp,
                        const uint K, const uint S, const uint P, const uint D, const uint PG,
                        const uint adding)
{
    phase_pixel_tiles(wq, gp, dx, N, C, H, W, O, Hp, Wp, K, S, P, D, PG, adding, 1);
}

/* The sums of the tile of phase f whose pixel is at x0 in g's rows
 * (its first, MR neighbours in a row, read as lines; planes `plane`
 * floats apart, rows Wp) by the NR channels from col0, in phase_tile's
 * order, into t. */
INLINE void phase_line_sums(const phase_geom *f, __global const float *x0, uint O, uint Wp,
                            size_t plane, uint S, uint P, uint D, size_t col0, float t[MR][NR])
{
    size_t k = f->k;
    const uint line_step = 1;
    __global const float *b = f->w + col0 * k;
    ROWS(ACC)
    PHASE_TAPS(ROWS(LINE_FMA))
    ROWS(SAVE_ROW)
}

/* Channels of a pair of phase tiles (columns 2j and 2j + 1 of the same
 * MR inputs j of a row of dx), each channel's 2 (MR - from) values from
 * its input `from` one run from d (channels stride apart); keep0, keep1:
 * that phase has no taps and dx adds, so its values stay as they are,
 * neither read nor written, and its sums are not computed (a 1 x 1 of
 * stride 2 reaches one column phase alone); never both, as the caller
 * skips a row phase that has no taps. Without adding, dx is not read. */
INLINE void store_pairs(__global float *d, size_t stride, size_t count, float t0[MR][NR],
                        float t1[MR][NR], uint adding, int keep0, int keep1, uint from)
{
    if (!adding) {
        for (size_t j = 0; j < count; j++, d += stride)
            for (uint r = from; r < MR; r++) {
                d[2 * r] = t0[r][j];
                d[2 * r + 1] = t1[r][j];
            }
        return;
    }
    if (keep1) /* only column phase 0's inputs (t1 not computed) */
        for (size_t j = 0; j < count; j++, d += stride)
            for (uint r = from; r < MR; r++)
                d[2 * r] = t0[r][j] + d[2 * r];
    else if (keep0)
        for (size_t j = 0; j < count; j++, d += stride)
            for (uint r = from; r < MR; r++)
                d[2 * r + 1] = t1[r][j] + d[2 * r + 1];
    else
        for (size_t j = 0; j < count; j++, d += stride)
            for (uint r = from; r < MR; r++) {
                d[2 * r] = t0[r][j] + d[2 * r];
                d[2 * r + 1] = t1[r][j] + d[2 * r + 1];
            }
}

/* Phase rows whose tiles conv_phase_pairs takes channel panel by channel
 * panel: each panel's weights (k x NR a column phase; for the ResNet's
 * 64 -> 128 layers at AVX2's NR 16, 8 KB for the 1 x 1's phase, 24 and 48
 * KB for the 3 x 3's two row phases' pairs) then serve every tile of the
 * group from the core's first-level cache where they fit, where tile by
 * tile every panel passed through it. */
#ifndef PAIR_GROUP_ROWS
#define PAIR_GROUP_ROWS 4
#endif

/* The pair tiles t of a group (a run of tile positions in row phase 0)
 * for the NR channels from col0, for row phase pa: each tile's MR inputs
 * from its row's `from`, read from g at x0 of the group's first row,
 * rows Wp apart (its staged rows where PG > 0). */
INLINE void pair_group(const phase_geom *f0, const phase_geom *f1, __global const float *x0,
                       __global float *dx, size_t t, size_t end, uint across, uint HA,
                       uint WB, size_t row0, uint C, size_t HW, uint O, uint Wp,
                       size_t plane, uint P, uint D, uint adding, uint pa, size_t col0)
{
    const uint S = 2, W = S * WB;
    const int keep0 = adding && f0->k == 0, keep1 = adding && f1->k == 0; /* store_pairs' */
    for (; t < end; t++) {
        size_t row = t / across;
        uint j = (uint)(t % across) * MR, ow = min(j, WB - MR), from = j - ow;
        im2col_at at = {row / HA, (uint)(row % HA), ow};
        if (at.oh >= f0->HA)
            continue;
        __global const float *xt = x0 + (row - row0) * Wp + ow;
        __global float *out = dx + at.n * C * HW + (pa + S * at.oh) * W + S * at.ow;
        float t0[MR][NR], t1[MR][NR];
        if (!keep0)
            phase_line_sums(f0, xt, O, Wp, plane, S, P, D, col0, t0);
        if (!keep1)
            phase_line_sums(f1, xt, O, Wp, plane, S, P, D, col0, t1);
        store_pairs(out + col0 * HW, HW, min((size_t)NR, (size_t)C - col0), t0, t1, adding,
                    keep0, keep1, from);
    }
}

/* conv_phase_pixels_lines at stride 2 where W = 2 WB: the tile of phase
 * (a, 0) and the one of phase (a, 1) beside it (the same MR inputs of a
 * phase row) are computed one after the other and stored together, each
 * channel's 2 MR values of dx one run, where a phase's tile stored every
 * other value, one at a time; then the same for row phase 1 below them
 * (if that phase has the row: H may be odd). Each item takes a run of
 * these tile positions (along the rows of row phase 0), in groups of up
 * to PAIR_GROUP_ROWS rows of one image (and of its staged rows), each
 * group row phase 0's tiles then row phase 1's, channel panel by channel
 * panel; where MR does not divide WB, a row's last tile moves back to
 * end at the row's end and stores only the inputs the one before it did
 * not. The same sums, so the same bits, as conv_phase_pixels_lines; a
 * phase no tap reaches gets zeros (or keeps its values, where dx adds).
 * g (N, O, OH, OW) is read in place where PG is 0; else an item stages
 * the rows of g that its next CH phase rows read, zero-padded
 * (stage_rows: from UP rows above the first to DOWN below the last, the
 * taps' reach along the rows, each PG zeros wide on either side; in its
 * core's cache, where a padded copy of all of g went to memory and
 * back). scratch: each item's staged rows. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
conv_phase_pairs(__global const float *wq, __global const float *g, __global float *dx,
                 __global float *scratch, const uint N, const uint C, const uint H,
                 const uint W, const uint O, const uint OH, const uint OW, const uint K,
                 const uint P, const uint D, const uint PG, const uint adding, const uint CH,
                 const uint UP, const uint DOWN)
{
    const uint S = 2, Wp = OW + 2 * PG, R = PG ? UP + CH + DOWN : OH;
    size_t items = get_global_size(0), item = get_global_id(0), plane = (size_t)R * Wp;
    size_t HW = (size_t)H * W, gimage = (size_t)O * OH * OW;
    __global float *gs = scratch + item * O * plane;
    phase_geom f[2][2];
    for (uint pa = 0; pa < S; pa++)
        for (uint pb = 0; pb < S; pb++)
            f[pa][pb] = phase_geom_of(wq, pa, pb, N, C, H, W, O, K, S, P, D);
    uint HA = f[0][0].HA, WB = f[0][0].WB, across = (WB + MR - 1) / MR;
    size_t tiles = (size_t)N * HA * across, staged_n = N, hi = (item + 1) * tiles / items;
    uint staged_i = 0;
    for (size_t t = item * tiles / items; t < hi;) {
        /* the group: from tile t on, its row and the rows below it in
         * the same image (and the staged rows), up to PAIR_GROUP_ROWS */
        size_t row = t / across;
        im2col_at at = {row / HA, (uint)(row % HA), 0};
        if (PG && (at.n != staged_n || at.oh >= staged_i + CH)) {
            staged_n = at.n;
            staged_i = at.oh;
            stage_rows(gs, g + at.n * gimage, O, OH, OW, PG, (long)at.oh - (long)UP, R);
        }
        uint rows = min((uint)PAIR_GROUP_ROWS, HA - at.oh);
        if (PG)
            rows = min(rows, staged_i + CH - at.oh);
        size_t end = min(hi, (row + rows) * across);
        __global const float *x0 = PG ? gs + (size_t)(at.oh - staged_i + UP) * Wp + PG
                                      : g + at.n * gimage + (size_t)at.oh * Wp;
        for (uint pa = 0; pa < S; pa++) {
            const phase_geom *f0 = &f[pa][0], *f1 = &f[pa][1];
            if (f0->k == 0 && f1->k == 0 && adding)
                continue;
            for (size_t col0 = 0; col0 < C; col0 += NR)
                pair_group(f0, f1, x0, dx, t, end, across, HA, WB, row, C, HW, O, Wp, plane,
                           P, D, adding, pa, col0);
        }
        t = end;
    }
}

/* 8 sums v of neighbouring pixels into the even values of the 16 floats of
 * a row of dx at d, the odd ones kept (adding) or zeroed. */
INLINE void store_even8(__global float *d, float8 v, uint adding)
{
    float16 x = adding ? vload16(0, d) : (float16)0.0f;
    x.even = adding ? v + x.even : v;
    vstore16(x, 0, d);
}

#if V == 16
#define EVEN_STORES(r, d, at)                                                   \
    store_even8(d + at(0), (c##r##0).lo, adding);                               \
    store_even8(d + at(8), (c##r##0).hi, adding);                               \
    store_even8(d + at(16), (c##r##1).lo, adding);                              \
    store_even8(d + at(24), (c##r##1).hi, adding);
#elif V == 8
#define EVEN_STORES(r, d, at)                                                   \
    store_even8(d + at(0), c##r##0, adding);                                    \
    store_even8(d + at(8), c##r##1, adding);
#else
#define EVEN_STORES(r, d, at)                                                   \
    store_even8(d + at(0), (float8)(c##r##0, c##r##1), adding);
#endif
/* Where pixel p0 + q of g (rows OW long) lands in its plane of dx. */
#define EVEN_AT(q) ((p0 + q) / OW * 2 * W + (p0 + q) % OW * 2)
#define W_FMA(r)                                                                \
    {                                                                           \
        floatV s = wo[min(c0 + r, (size_t)C - 1)];                              \
        c##r##0 = fma(s, b0, c##r##0);                                          \
        c##r##1 = fma(s, b1, c##r##1);                                          \
    }
#define EVEN_STORE(r)                                                           \
    if (c0 + r < C) {                                                           \
        __global float *d = dx + (n * C + c0 + r) * HW;                         \
        EVEN_STORES(r, d, EVEN_AT)                                              \
        if (!adding) /* row phase 1: zeros */                                   \
            for (uint q = 0; q < NR; q += 8)                                    \
                vstore16((float16)0.0f, 0, d + EVEN_AT(q) + W);                 \
    }

/* The input gradient of a 1 x 1 convolution of stride 2 without padding
 * (a residual block's shortcut), for CPUs, where H = 2 OH, W = 2 OW, OW a
 * multiple of 8 and an image's OH OW pixels of NR: dx(c, 2i, 2j) =
 * sum over o of w(o, c) g(o, i, j), plus dx's value where it adds; dx's
 * other three phases keep their values (adding) or get zeros. A tile is
 * MR channels by NR neighbouring pixels of g, which a row of vectors of g
 * gives at each o (w's MR values of o broadcast, read in place); each 8
 * pixels' sums go to the even values of 16 floats of a row of dx, one
 * vector load and store where conv_phase_pairs stored value by value
 * from a tile of channels by pixels. Item g takes a run of the tiles,
 * image by image, pixel tile by pixel tile, channels innermost (the
 * pixels' O x NR floats of g stay in the core's cache). */
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
conv_stride2_points(__global const float *w, __global const float *g, __global float *dx,
                    const uint N, const uint C, const uint O, const uint OH, const uint OW,
                    const uint adding)
{
    const uint W = 2 * OW;
    size_t P2 = (size_t)OH * OW, HW = 4 * P2, ptiles = P2 / NR, ctiles = (C + MR - 1) / MR;
    size_t tiles = (size_t)N * ptiles * ctiles, items = get_global_size(0);
    size_t item = get_global_id(0);
    for (size_t t = item * tiles / items; t < (item + 1) * tiles / items; t++) {
        size_t n = t / (ptiles * ctiles), p0 = t / ctiles % ptiles * NR;
        size_t c0 = t % ctiles * MR;
        __global const float *gp = g + n * O * P2 + p0;
        ROWS(ACC)
        for (uint o = 0; o < O; o++, gp += P2) {
            floatV b0 = vloadV(0, gp), b1 = vloadV(1, gp);
            __global const float *wo = w + (size_t)o * C;
            ROWS(W_FMA)
        }
        ROWS(EVEN_STORE)
    }
}

#endif /* GELU_EPILOGUES */

/* gemm_slots' along_k where op(B) comes packed already, in panels of NR
 * (a linear layer's weight packed once for many forwards). */
#define B_IN_PANELS 2

/* gemm_slots' rows of op(A) = A^T, read in place: row q is column q of A,
 * its k values lda apart. (A's rows are A_ROW's, lda apart, each k the
 * next float.) */
#define COLUMN_ROW(r) __global const float *a##r = a + a_off + min(row0 + r, (size_t)m - 1);
#define COLUMN_FMA(r) FMA_STEP(r, lda)

/* C = alpha op(A) op(B) + beta C for few rows of op(A) (m) and long rows
 * of C: item g takes a run of neighbouring panels of NR columns (the g-th
 * of `items` equal shares, give or take one), packs each into its own slot
 * of scratch (k x NR floats, which stays in its core's cache) and computes
 * every MR-row tile of those columns from it, so that the packed B never
 * goes to memory and back. Neighbours, not every items-th panel: the next
 * panel's rows of B lie beside the lines just read, which the cache's
 * prefetch has brought (docs/gemm.md). Where B comes in panels (along_k
 * B_IN_PANELS), each tile reads its panel there. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
gemm_slots(__global const float *a, const ulong a_off, const ulong lda, const uint a_trans,
           __global const float *bsrc, const ulong b_off, const ulong ldb, const uint along_k,
           __global float *c, const ulong c_off, const ulong ldc, const ulong m, const ulong n,
           const ulong k, const float alpha, const float beta, __global float *scratch,
           __global const float *bias, const uint epilogue, __global float *aux)
{
    __global float *slot = scratch + get_global_id(0) * k * NR;
    size_t panels = (n + NR - 1) / NR, items = get_global_size(0), item = get_global_id(0);
    for (size_t q = item * panels / items; q < (item + 1) * panels / items; q++) {
        size_t col0 = q * NR, width = min((size_t)NR, (size_t)n - col0);
        __global const float *panel = bsrc + b_off + q * k * NR;
        if (along_k != B_IN_PANELS) {
            pack_panel(slot, bsrc + b_off, ldb, along_k, n, col0, 0, k, NR);
            panel = slot;
        }
        if (a_trans) /* A^T's tiles in a loop of their own, each loop as fast as alone */
            FOR_EACH_ROW_TILE(ROWS(COLUMN_ROW), ROWS(COLUMN_FMA), STORE_TILE)
        else
            FOR_EACH_ROW_TILE(ROWS(A_ROW), ROWS(FMA), STORE_TILE)
    }
}

/* The 8 columns of an item of gemv_rows, and its rows of A taken at once:
 * GV_ROWS rows hold 8 GV_ROWS sums in vector registers, which AVX-512's 32
 * hold at 3 with B's vector and A's (AVX2's 16 at 1). */
#if V == 16
#define GV_ROWS 3
#define GV_EACH_ROW(X, t) X(0, t) X(1, t) X(2, t)
#define GV_W 16
#define gv_vec float16
#define gv_load vload16
#define gv_sum(s) lanes_sum((s).lo + (s).hi)
#else
#define GV_ROWS 1
#define GV_EACH_ROW(X, t) X(0, t)
#define GV_W 8
#define gv_vec float8
#define gv_load vload8
#define gv_sum lanes_sum
#endif
#define GEMV8(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define GV_COL(t) __global const float *b##t = b + b_off + min(j0 + t, (size_t)n - 1) * ldb;
#define GV_X(r, t) __global const float *x##r = a + a_off + (r0 + r) * lda;
#define GV_ACC(r, t) gv_vec s##r##t = 0.0f;
#define GV_LOAD_X(r, t) gv_vec xv##r = gv_load(0, x##r + kk);
#define GV_FMA(r, t) s##r##t = fma(xv##r, bv, s##r##t);
#define GV_SUM(r, t) float h##r##t = gv_sum(s##r##t);
#define GV_TAIL(r, t) h##r##t = fma(x##r[kk], b##t[kk], h##r##t);
#define GV_STORE(r, t) \
    if (j0 + t < n) { \
        size_t at = c_off + (r0 + r) * ldc + j0 + t; \
        store_one(c + at, h##r##t, alpha, beta, bias, j0 + t, epilogue, aux + at); \
    }
#define GV_FMA_COL(t) \
    { \
        gv_vec bv = gv_load(0, b##t + kk); \
        GV_EACH_ROW(GV_FMA, t) \
    }
#define GV_ALL(X) GEMV8(GV_ALL_##X)
#define GV_ALL_ACC(t) GV_EACH_ROW(GV_ACC, t)
#define GV_ALL_SUM(t) GV_EACH_ROW(GV_SUM, t)
#define GV_ALL_TAIL(t) GV_EACH_ROW(GV_TAIL, t)
#define GV_ALL_STORE(t) GV_EACH_ROW(GV_STORE, t)

/* The sum of a vector's lanes, in a fixed order. */
INLINE float lanes_sum(float8 s)
{
    float4 h = s.lo + s.hi;
    return (h.s0 + h.s2) + (h.s1 + h.s3);
}

/* A function for C rows r0 .. r0 + GV_ROWS - 1 (as many rows as
 * GV_EACH_ROW names) of gemv_rows' columns j0 .. j0 + 7: B's vector at
 * each k read once for all the rows. */
#define GV_FUNCTION(name) \
    INLINE void name(__global const float *a, const ulong a_off, const ulong lda, \
                     __global const float *b, const ulong b_off, const ulong ldb, \
                     __global float *c, const ulong c_off, const ulong ldc, size_t r0, \
                     size_t j0, const ulong n, const ulong k, const float alpha, \
                     const float beta, __global const float *bias, const uint epilogue, \
                     __global float *aux) \
    { \
        GEMV8(GV_COL) \
        GV_EACH_ROW(GV_X, 0) \
        GV_ALL(ACC) \
        size_t kk = 0; \
        for (; kk + GV_W <= k; kk += GV_W) { \
            GV_EACH_ROW(GV_LOAD_X, 0) \
            GEMV8(GV_FMA_COL) \
        } \
        GV_ALL(SUM) \
        for (; kk < k; kk++) { \
            GV_ALL(TAIL) \
        } \
        GV_ALL(STORE) \
    }
GV_FUNCTION(gemv_block)
#if GV_ROWS > 1 /* and one row at a time for the rows after the last block */
#undef GV_EACH_ROW
#define GV_EACH_ROW(X, t) X(0, t)
GV_FUNCTION(gemv_one)
#endif

/* C (m x n) = alpha A B^T + beta C for a row of A or a few (m small), B
 * (n x k) read in place along k: item g takes columns 8g .. 8g + 7, each a
 * dot product over 8-float lanes, then the lanes summed in a fixed order,
 * GV_ROWS rows at a time and the rest one by one (the same sums either
 * way). With so few rows, packing B would cost more than the product. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
gemv_rows(__global const float *a, const ulong a_off, const ulong lda, __global const float *b,
          const ulong b_off, const ulong ldb, __global float *c, const ulong c_off,
          const ulong ldc, const ulong m, const ulong n, const ulong k, const float alpha,
          const float beta, __global const float *bias, const uint epilogue,
          __global float *aux)
{
    size_t j0 = get_global_id(0) * 8, r = 0;
    for (; r + GV_ROWS <= m; r += GV_ROWS)
        gemv_block(a, a_off, lda, b, b_off, ldb, c, c_off, ldc, r, j0, n, k, alpha, beta, bias,
                   epilogue, aux);
#if GV_ROWS > 1
    for (; r < m; r++)
        gemv_one(a, a_off, lda, b, b_off, ldb, c, c_off, ldc, r, j0, n, k, alpha, beta, bias,
                 epilogue, aux);
#endif
}
#endif /* !A_TRANS */
