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
 * op(A) is read in place when it is not transposed (MR rows streamed side
 * by side) and packed into panels of MR rows when it is (A_PACKED).
 * Panels are padded by repeating the last row or column: padded results
 * are computed and never stored.
 *
 * Long products run as blocks of k (gemm.c launches one product per
 * block, the first with the caller's beta and the rest accumulating with
 * beta = 1), so that a panel of B, k x NR, stays in the cache while the
 * rows of A stream past it; every kernel here sees one block.
 *
 *   pack_panels: dst[p][kk][j] = along_k ? src[(p*w + j) * ld + kk]
 *                                        : src[kk * ld + p*w + j]
 *   gemm_tile:   tile (p, q) of C, rows p*MR.., columns q*NR..
 *   im2col_panels: op(B) packed straight from a convolution's input
 *   conv_tiles:  a whole convolution, packing and tiles in one launch
 *   gemm_slots:  a product with few rows of A, packing and tiles in one
 *                launch
 *   gemv_rows:   one row of A times Bᵀ (a linear layer on one sample),
 *                B read in place
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

/* dst[kk][j] = src[j * ld + kk] for kk in [k0, k1) and j < w (a multiple
 * of 8): 8 x 8 blocks, loaded as rows and stored as columns, then the
 * last k one value at a time. */
static void pack_transposed(__global float *dst, __global const float *src, ulong ld,
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

/* Rows k0 .. k1 - 1 of panel j0 .. j0 + w - 1 of src (extent columns),
 * padded by repeating the last column, into dst (the panel's start). */
static void pack_panel(__global float *dst, __global const float *src, ulong ld, uint along_k,
                       size_t extent, size_t j0, size_t k0, size_t k1, uint w)
{
    size_t last = extent - 1;
    if (along_k && j0 + w <= extent) {
        pack_transposed(dst, src + j0 * ld, ld, k0, k1, w);
    } else if (along_k) {
        for (uint j = 0; j < w; j++) {
            __global const float *s = src + min(j0 + j, last) * ld;
            for (size_t kk = k0; kk < k1; kk++)
                dst[kk * w + j] = s[kk];
        }
    } else if (j0 + w <= extent) {
        for (size_t kk = k0; kk < k1; kk++)
            for (uint j = 0; j < w; j++)
                dst[kk * w + j] = src[kk * ld + j0 + j];
    } else {
        for (size_t kk = k0; kk < k1; kk++)
            for (uint j = 0; j < w; j++)
                dst[kk * w + j] = src[kk * ld + min(j0 + j, last)];
    }
}

__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
pack_panels(__global float *dst, __global const float *src, const ulong off, const ulong ld,
            const uint along_k, const ulong extent, const ulong k, const uint w)
{
    size_t k0 = get_global_id(0) * PACK_K, p = get_global_id(1);
    pack_panel(dst + p * k * w, src + off, ld, along_k, extent, p * w, k0,
               min(k0 + PACK_K, (size_t)k), w);
}

#if A_PACKED
#define A_ROW(r) __global const float *a##r = a + row0 * k + r;
#define A_STEP MR
#else
#define A_ROW(r) __global const float *a##r = a + a_off + min(row0 + r, (size_t)m - 1) * lda;
#define A_STEP 1
#endif

#define ACC(r) floatV c##r##0 = 0.0f, c##r##1 = 0.0f;
#define FMA(r)                                  \
    {                                           \
        floatV s = *a##r;                       \
        a##r += A_STEP;                         \
        c##r##0 = fma(s, b0, c##r##0);          \
        c##r##1 = fma(s, b1, c##r##1);          \
    }
#define STORE(r) \
    if (row0 + r < m) \
        store_row(c + c_off + (row0 + r) * ldc + col0, c##r##0, c##r##1, width, alpha, beta);

/* Writes the first `width` of NR results; beta == 0 never reads C. */
static void store_row(__global float *o, floatV x0, floatV x1, size_t width, float alpha,
                      float beta)
{
    if (width == NR) {
        x0 *= alpha;
        x1 *= alpha;
        if (beta != 0.0f) {
            x0 += beta * vloadV(0, o);
            x1 += beta * vloadV(1, o);
        }
        vstoreV(x0, 0, o);
        vstoreV(x1, 1, o);
        return;
    }
    float t[NR];
    vstoreV(x0, 0, t);
    vstoreV(x1, 1, t);
    for (size_t j = 0; j < width; j++)
        o[j] = alpha * t[j] + (beta != 0.0f ? beta * o[j] : 0.0f);
}

__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
gemm_tile(__global const float *a, const ulong a_off, const ulong lda, __global const float *b,
          __global float *c, const ulong c_off, const ulong ldc, const ulong m, const ulong n,
          const ulong k, const float alpha, const float beta)
{
    size_t row0 = get_global_id(0) * MR, col0 = get_global_id(1) * NR;
    size_t width = min((size_t)NR, (size_t)n - col0);
    ROWS(A_ROW)
    b += col0 * k;
    ROWS(ACC)
    for (size_t kk = 0; kk < k; kk++) {
        floatV b0 = vloadV(0, b), b1 = vloadV(1, b);
        ROWS(FMA)
        b += NR;
    }
    ROWS(STORE)
}

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

/* The (n, oh, ow) of column q of the im2col matrix, stepped along it. */
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
static void pack_columns_runs(__global float *dst, __global const float *x, uint C, uint H,
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
static void pack_columns_shifted(__global float *dst, __global const float *x, uint C, uint H,
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
    uint KK = K * K;
    dst += j0 * k;
    if (!by_rows) {
        pack_columns(dst, x, C, H, W, K, S, P, D, OH, OW, j0, kbase, k0, k1, extent);
        return;
    }
    for (uint j = 0; j < NR; j++) {
        uint r = (uint)min(j0 + j, (size_t)extent - 1);
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

#if !A_PACKED
/* Row `row` of m of a tile's NR results, columns q0 .. q0 + width - 1 of
 * (N * P2) that start at plane position p of sample n, into y (N, m, P2). */
static void store_planes(__global float *y, floatV x0, floatV x1, size_t n, uint p,
                         size_t width, size_t row, size_t m, uint P2)
{
    __global float *o = y + (n * m + row) * P2;
    if (width == NR && p + NR <= P2) {
        vstoreV(x0, 0, o + p);
        vstoreV(x1, 1, o + p);
        return;
    }
    float t[NR];
    vstoreV(x0, 0, t);
    vstoreV(x1, 1, t);
    for (size_t j = 0; j < width; j++) {
        o[p] = t[j];
        if (++p == P2) {
            p = 0;
            o += m * P2; /* the next sample's row */
        }
    }
}

/* Every MR-row tile of the columns col0 .. col0 + NR - 1 of C from
 * `panel`, their k x NR values of op(B), each row stored by STORE_ONE. */
#define FOR_EACH_ROW_TILE(STORE_ONE)                         \
    for (size_t row0 = 0; row0 < m; row0 += MR) {           \
        __global const float *b = panel;                    \
        ROWS(A_ROW)                                         \
        ROWS(ACC)                                           \
        for (size_t kk = 0; kk < k; kk++) {                 \
            floatV b0 = vloadV(0, b), b1 = vloadV(1, b);    \
            ROWS(FMA)                                       \
            b += NR;                                        \
        }                                                   \
        ROWS(STORE_ONE)                                     \
    }

#define STORE_PLANES(r) \
    if (row0 + r < m) \
        store_planes(y, c##r##0, c##r##1, n0, p0, width, row0 + r, m, OH * OW);

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
           const ulong m, const ulong n, const ulong k)
{
    const ulong a_off = 0, lda = k;
    __global float *panel = scratch + get_global_id(0) * k * NR;
    size_t panels = (n + NR - 1) / NR;
    for (size_t q = get_global_id(0); q < panels; q += get_global_size(0)) {
        size_t col0 = q * NR, width = min((size_t)NR, (size_t)n - col0);
        size_t n0 = col0 / (OH * OW);
        uint p0 = (uint)(col0 % (OH * OW));
        pack_columns(panel, x, C, H, W, K, S, P, D, OH, OW, col0, 0, 0, k, n);
        FOR_EACH_ROW_TILE(STORE_PLANES)
    }
}
#endif

#if !A_PACKED
/* C = alpha A op(B) + beta C for few rows of A (m) and long rows of C:
 * item g takes the panels of NR columns g, g + items, ..., packs each into
 * its own slot of scratch (k x NR floats, which stays in its core's cache)
 * and computes every MR-row tile of those columns from it, so that the
 * packed B never goes to memory and back. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
gemm_slots(__global const float *a, const ulong a_off, const ulong lda, __global const float *bsrc,
           const ulong b_off, const ulong ldb, const uint along_k, __global float *c,
           const ulong c_off, const ulong ldc, const ulong m, const ulong n, const ulong k,
           const float alpha, const float beta, __global float *scratch)
{
    __global float *panel = scratch + get_global_id(0) * k * NR;
    size_t panels = (n + NR - 1) / NR;
    for (size_t q = get_global_id(0); q < panels; q += get_global_size(0)) {
        size_t col0 = q * NR, width = min((size_t)NR, (size_t)n - col0);
        pack_panel(panel, bsrc + b_off, ldb, along_k, n, col0, 0, k, NR);
        FOR_EACH_ROW_TILE(STORE)
    }
}
#endif

/* c[j] = alpha sum_i a[i] b[j ldb + i] + beta c[j], j < n: a (1, k) times
 * Bᵀ, B (n, k) row-major, one work-item per j. B's rows are contiguous, so
 * they are read once and in place, with no packing: a linear layer on one
 * sample. Sixteen lanes, summed in a fixed order, then the tail of k. */
__kernel void gemv_rows(__global const float *a, const ulong a_off, __global const float *b,
                        const ulong b_off, const ulong ldb, __global float *c, const ulong c_off,
                        const uint n, const uint k, const float alpha, const float beta)
{
    uint j = get_global_id(0);
    if (j >= n)
        return;
    __global const float *x = a + a_off, *row = b + b_off + j * ldb;
    float16 acc = 0.0f;
    uint i = 0;
    for (; i + 16 <= k; i += 16)
        acc = fma(vload16(0, row + i), vload16(0, x + i), acc);
    float8 h8 = acc.lo + acc.hi;
    float4 h4 = h8.lo + h8.hi;
    float2 h2 = h4.lo + h4.hi;
    float sum = h2.x + h2.y;
    for (; i < k; i++)
        sum = fma(row[i], x[i], sum);
    float v = alpha * sum;
    c[c_off + j] = beta == 0.0f ? v : v + beta * c[c_off + j];
}
