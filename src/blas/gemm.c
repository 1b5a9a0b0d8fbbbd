/* kiln's own GEMM for CPU-class devices (cl/gemm.cl): op(B) is packed into
 * panels in scratch buffers the context's blas state keeps (grown to the
 * largest product; the in-order queue makes reuse safe), or read in place
 * where its rows are close (b_in_place), op(A) is read in place, and one
 * launch computes C tile by tile. The register tile
 * (MR x NR, NR = 2 V) is a build option of gemm.cl, chosen once per context
 * (gemm_tile_get). A product whose k exceeds the tile's k block runs as
 * blocks of k, each after the first adding to C (beta = 1), so that a
 * panel of B stays in the cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blas/gemm_internal.h"

#define GEMM_PACK_K 64
/* The k block: one packed panel of B (k x NR floats) is kept to a quarter
 * of the core's L2 where the device is the host's CPU (PoCL) and the C
 * library knows the L2 (1 MiB on a Zen 4 EPYC: k 2048 for 8 x 32; 2 MiB on
 * an Emerald Rapids Xeon: k 4096), else to 256 KiB; and to an eighth of
 * the device's cache per compute unit where that is less (1 MiB where the
 * driver does not say). docs/gemm.md has the measurements; kiln tune
 * measures the k block. */
#define GEMM_PANEL_BYTES (256u << 10)
/* Items per compute unit of gemm_slots and conv_tiles, each with a panel
 * slot of its own: enough for the cores to share the panels out evenly. */
#define SLOT_ITEMS_PER_UNIT 16
/* gemm_slots takes products with at most this many rows of A, and of A^T
 * where k is at most A_IN_PLACE_K (its rows are read in place, MR floats
 * side by side at each k: on the AVX2 EPYC, TN 256 x 784 x 128 went from
 * 0.86 of OpenBLAS to 0.98 and 384 x 2048 x 64 from 0.87-0.95 to 1.04;
 * with k 768, where A^T's columns lie 2 KB apart, it lost: docs/gemm.md). */
#define SLOT_MAX_ROWS 128
#define SLOT_MAX_ROWS_TRANS 512
/* gemv_rows takes products A B^T with at most this many rows of A (on an
 * AVX2 EPYC it beat gemm_slots from 1 row, 2.8x, to 24, 1.07x). */
#define GEMV_MAX_ROWS 16
#define GEMM_CACHE_GUESS (1u << 20)
#define A_IN_PLACE_K 256
#define B_IN_PLACE_LD 128

/* op(B) as gemm_tile reads it: packed panels (ld = 0) or B in place, its
 * rows ld apart from off. */
typedef struct {
    cl_mem mem;
    size_t off, ld;
} gemm_b;
/* gemm.cl compiles twice per tile (A, A^T read in place; the packing
 * kernels come from the first): the slowest source of kiln to compile. */

static int tile_valid(gemm_tile t)
{
    return t.mr >= 1 && t.mr <= 8 && (t.v == 4 || t.v == 8 || t.v == 16) &&
           t.kc <= GEMM_KC_MAX;
}

gemm_tile gemm_tile_default(const kiln_ctx *ctx)
{
    /* PoCL names its CPU device after LLVM's CPU ("pthread-znver3-...") */
    const char *name = ctx->info.name;
    gemm_tile t = {4, 4, 0};
    if (strstr(name, "avx512") || strstr(name, "znver4") || strstr(name, "znver5"))
        t = (gemm_tile){8, 16, 0};
    else if (strstr(name, "haswell") || strstr(name, "znver") || strstr(name, "avx2"))
        t = (gemm_tile){6, 8, 0};
    else {
        cl_uint native = 0, preferred = 0;
        clGetDeviceInfo(ctx->device, CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT, sizeof native, &native,
                        NULL);
        clGetDeviceInfo(ctx->device, CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT, sizeof preferred,
                        &preferred, NULL);
        cl_uint lanes = native > 1 ? native : preferred;
        if (lanes >= 16)
            t = (gemm_tile){8, 16, 0};
        else if (lanes == 8)
            t = (gemm_tile){6, 8, 0};
    }
    t.kc = gemm_kc_default(ctx, t);
    return t;
}

/* The L2 per core of the host, where the device is the host's CPU (a
 * driver that runs work-groups as loops) and the C library knows it; else 0. */
static size_t host_l2_bytes(const kiln_ctx *ctx)
{
    if (!device_loops_work_groups(&ctx->info))
        return 0;
#ifdef _SC_LEVEL2_CACHE_SIZE
    long bytes = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return bytes > 0 ? (size_t)bytes : 0;
#else
    return 0;
#endif
}

size_t gemm_kc_default(const kiln_ctx *ctx, gemm_tile t)
{
    cl_ulong cache = 0;
    if (clGetDeviceInfo(ctx->device, CL_DEVICE_GLOBAL_MEM_CACHE_SIZE, sizeof cache, &cache,
                        NULL) != CL_SUCCESS || cache == 0)
        cache = GEMM_CACHE_GUESS;
    size_t panel = (size_t)cache / device_units(&ctx->info) / 8, l2 = host_l2_bytes(ctx);
    size_t limit = l2 ? l2 / 4 : GEMM_PANEL_BYTES;
    panel = panel < limit ? panel : limit;
    size_t kc = panel / (2 * (size_t)t.v * sizeof(float)) / 64 * 64;
    return kc < 256 ? 256 : kc > 4096 ? 4096 : kc;
}

kiln_status gemm_tile_parse(const char *text, const char *what, gemm_tile *out)
{
    int mr, nr, used = 0;
    if (sscanf(text, "%dx%d%n", &mr, &nr, &used) == 2 && text[used] == '\0' && nr % 2 == 0) {
        gemm_tile t = {mr, nr / 2, 0};
        if (tile_valid(t)) {
            *out = t;
            return KILN_OK;
        }
    }
    return error_set(KILN_ERR_INVALID_ARGUMENT,
                     "%s is \"%s\"; expected MRxNR with MR 1 to 8 and NR 8, 16 or 32 (6x16)",
                     what, text);
}

kiln_status gemm_kc_parse(const char *text, const char *what, size_t *out)
{
    char *end;
    unsigned long long kc = strtoull(text, &end, 10);
    if (end != text && *end == '\0' && text[0] != '-' && kc >= 1 && kc <= GEMM_KC_MAX) {
        *out = (size_t)kc;
        return KILN_OK;
    }
    return error_set(KILN_ERR_INVALID_ARGUMENT,
                     "%s is \"%s\"; expected a k block of 1 to %d (2048)", what, text,
                     GEMM_KC_MAX);
}

/* gemm.cl's build options for tile t, program i (PLAIN_A, TRANS_A,
 * WITH_GELU). */
static void tile_options(char *buf, size_t size, int i, gemm_tile t)
{
    snprintf(buf, size, "-DA_TRANS=%d -DMR=%d -DV=%d -DOFFSETS_MAX=%d%s", i & TRANS_A, t.mr,
             t.v, GEMM_OFFSETS_MAX, i & WITH_GELU ? " -DGELU_EPILOGUES" : "");
}

void gemm_tile_put(blas_state *s, gemm_tile t)
{
    s->tile = t;
    for (int i = 0; i < 4; i++)
        tile_options(s->tile_options[i], sizeof s->tile_options[i], i, t);
}

kiln_status gemm_kernel_rows(kiln_ctx *ctx, const blas_state *s, int mr, const char *name,
                             cl_kernel *out)
{
    if (mr == s->tile.mr)
        return gemm_kernel(ctx, s, name, out);
    char options[sizeof s->tile_options[0]];
    gemm_tile t = s->tile;
    t.mr = mr;
    tile_options(options, sizeof options, PLAIN_A, t);
    return kernel_get(ctx, GEMM_SOURCES, options, name, out);
}

/* t's k block: $KILN_GEMM_KC, else kc when set, else the device's. */
static kiln_status chosen_kc(const kiln_ctx *ctx, size_t kc, gemm_tile *t)
{
    const char *env = getenv("KILN_GEMM_KC");
    if (env && *env)
        return gemm_kc_parse(env, "KILN_GEMM_KC", &t->kc);
    t->kc = kc ? kc : gemm_kc_default(ctx, *t);
    return KILN_OK;
}

/* The tile from $KILN_GEMM_TILE, else the device's; its k block. */
static kiln_status chosen_tile(kiln_ctx *ctx, size_t kc, gemm_tile *out)
{
    const char *env = getenv("KILN_GEMM_TILE");
    gemm_tile t = gemm_tile_default(ctx);
    kiln_status st = KILN_OK;
    if (env && *env)
        st = gemm_tile_parse(env, "KILN_GEMM_TILE", &t);
    if (st == KILN_OK)
        st = chosen_kc(ctx, kc, &t);
    if (st == KILN_OK)
        *out = t;
    return st;
}

kiln_status gemm_tile_tuned(kiln_ctx *ctx, blas_state *s, int mr, int nr, size_t kc)
{
    gemm_tile t = {mr, nr / 2, kc};
    if (nr % 2 != 0 || kc == 0 || !tile_valid(t))
        return error_set(KILN_ERR_INVALID_ARGUMENT,
                         "kiln_tuning: kiln's GEMM tile %d x %d, k block %zu: expected MR 1 to "
                         "8, NR 8, 16 or 32, k block 1 to %d", mr, nr, kc, GEMM_KC_MAX);
    const char *env = getenv("KILN_GEMM_TILE");
    kiln_status st = env && *env ? chosen_tile(ctx, 0, &t) : chosen_kc(ctx, kc, &t);
    if (st == KILN_OK)
        gemm_tile_put(s, t);
    return st;
}

/* The context's state with its tile chosen. */
kiln_status gemm_tiled_state(kiln_ctx *ctx, blas_state **out)
{
    kiln_status st = blas_state_get(ctx, out);
    gemm_tile t;
    if (st == KILN_OK && !(*out)->b_fits) {
        size_t l2 = host_l2_bytes(ctx);
        (*out)->b_fits = l2 ? l2 / 2 : 2 * GEMM_PANEL_BYTES;
    }
    if (st != KILN_OK || (*out)->tile.mr)
        return st;
    st = chosen_tile(ctx, 0, &t);
    if (st == KILN_OK)
        gemm_tile_put(*out, t);
    return st;
}

kiln_status gemm_tile_get(kiln_ctx *ctx, gemm_tile *out)
{
    blas_state *s;
    kiln_status st = gemm_tiled_state(ctx, &s);
    if (st == KILN_OK)
        *out = s->tile;
    return st;
}

kiln_status gemm_tile_set(kiln_ctx *ctx, gemm_tile tile)
{
    if (tile.mr != 0 && !tile_valid(tile))
        return error_set(KILN_ERR_INVALID_ARGUMENT,
                         "gemm_tile_set: %d x %d, k block %zu is not a tile (MR 1 to 8, "
                         "NR 8, 16 or 32, k block up to %d)",
                         tile.mr, 2 * tile.v, tile.kc, GEMM_KC_MAX);
    blas_state *s;
    kiln_status st = blas_state_get(ctx, &s);
    if (st != KILN_OK)
        return st;
    if (tile.mr == 0) {
        s->tile.mr = 0;
        return gemm_tiled_state(ctx, &s);
    }
    if (tile.kc == 0 && (st = chosen_kc(ctx, 0, &tile)) != KILN_OK)
        return st;
    gemm_tile_put(s, tile);
    return KILN_OK;
}

kiln_status gemm_scratch(kiln_ctx *ctx, int which, size_t bytes, cl_mem *out)
{
    blas_state *s;
    kiln_status st = blas_state_get(ctx, &s);
    if (st != KILN_OK)
        return st;
    if (s->scratch_bytes[which] < bytes) {
        if (s->scratch[which]) /* after the launches still waiting for it */
            programs_release_buffer(ctx, s->scratch[which]);
        s->scratch_bytes[which] = 0;
        cl_int err;
        s->scratch[which] = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
        if (err != CL_SUCCESS) {
            s->scratch[which] = NULL;
            return error_cl_in(err, "clCreateBuffer", "GEMM packing buffer of %zu bytes",
                               bytes);
        }
        s->scratch_bytes[which] = bytes;
    }
    *out = s->scratch[which];
    return KILN_OK;
}

void gemm_scratch_free(blas_state *s)
{
    for (int i = 0; i < 2; i++)
        if (s->scratch[i])
            clReleaseMemObject(s->scratch[i]);
}

/* Packs a k-long operand with `extent` rows (along_k: rows run along k in
 * memory) into panels of w in dst, padded to a multiple of w. */
static kiln_status pack_into(kiln_ctx *ctx, const blas_state *s, cl_mem dst, cl_mem src,
                             size_t off, size_t ld, int along_k, size_t extent, size_t k,
                             cl_uint w)
{
    size_t panels = (extent + w - 1) / w;
    cl_kernel kernel;
    kiln_status st = gemm_kernel(ctx, s, "pack_panels", &kernel);
    if (st != KILN_OK)
        return st;
    /* k in spans of at least GEMM_PACK_K, as few as give every compute
     * unit SLOT_ITEMS_PER_UNIT items: each item (a work-group) costs a
     * dispatch */
    size_t spans = (k + GEMM_PACK_K - 1) / GEMM_PACK_K;
    size_t wanted = (SLOT_ITEMS_PER_UNIT * device_units(&ctx->info) + panels - 1) / panels;
    spans = spans < wanted ? spans : wanted;
    cl_ulong o = off, l = ld, e = extent, kk = k, span = (k + spans - 1) / spans;
    cl_uint along = (cl_uint)along_k;
    return launch_tiles(ctx, kernel, "pack_panels", (k + span - 1) / span, panels, KARG(dst),
                        KARG(src), KARG(o), KARG(l), KARG(along), KARG(e), KARG(kk), KARG(w),
                        KARG(span));
}

/* pack_into a scratch buffer (which: 0 or 1), its panels in *out. */
kiln_status gemm_pack(kiln_ctx *ctx, const blas_state *s, int which, cl_mem src, size_t off,
                        size_t ld, int along_k, size_t extent, size_t k, cl_uint w, cl_mem *out)
{
    size_t panels = (extent + w - 1) / w;
    kiln_status st = gemm_scratch(ctx, which, panels * w * k * sizeof(float), out);
    return st == KILN_OK ? pack_into(ctx, s, *out, src, off, ld, along_k, extent, k, w) : st;
}

/* The bits of gemm.cl's epilogue argument, as it defines them. */
enum { EPI_BIAS = 1, EPI_RELU = 2, EPI_RESIDUAL = 4, EPI_GELU = 8, EPI_KEEP = 16, EPI_TIMES = 32 };

/* The EPI_* bits of an epilogue (NULL: none), and the buffer gemm.cl's
 * kernels read the biases from (any buffer where there are none). */
static cl_uint epilogue_flags(const gemm_epilogue *epi)
{
    return epi ? (epi->bias ? EPI_BIAS : 0u) | (epi->relu ? EPI_RELU : 0u) |
                     (epi->residual ? EPI_RESIDUAL : 0u) | (epi->gelu ? EPI_GELU : 0u) |
                     (epi->keep ? EPI_KEEP : 0u) | (epi->times ? EPI_TIMES : 0u)
               : 0u;
}

/* Kernel `name` of a product with epilogue epi: of the program for op(A)
 * (which: PLAIN_A or TRANS_A), the one with GELU's epilogues where epi has
 * one. */
static kiln_status product_kernel(kiln_ctx *ctx, const blas_state *s, int which,
                                  const gemm_epilogue *epi, const char *name, cl_kernel *out)
{
    int gelu = epi && epi->gelu ? WITH_GELU : 0;
    return kernel_get(ctx, GEMM_SOURCES, s->tile_options[which | gelu], name, out);
}

/* gemm.cl's aux: the residual or the factors read, or where GELU's
 * derivative is kept (C where none). */
static cl_mem epilogue_aux(const gemm_epilogue *epi, cl_mem c)
{
    if (!epi)
        return c;
    return epi->residual ? epi->residual
                         : epi->keep ? epi->keep : epi->times ? epi->times : c;
}

static cl_mem epilogue_bias(const gemm_epilogue *epi, cl_mem other)
{
    return epi && epi->bias ? epi->bias : other;
}

/* C = alpha op(A) B + beta C with B in panels bp, then the epilogue epi.
 * op(A) is read in place, A^T too up to a k of A_IN_PLACE_K (a tile's
 * cache lines of A^T, twice as many as a packed panel's, then fit L1;
 * docs/gemm.md has the measurements). */
static kiln_status tiles(kiln_ctx *ctx, const blas_state *s, kiln_transpose ta, size_t m,
                         size_t n, size_t k, float alpha, cl_mem a, size_t a_off, size_t lda,
                         gemm_b b, float beta, cl_mem c, size_t c_off, size_t ldc,
                         const gemm_epilogue *epi)
{
    cl_mem ap = a;
    kiln_status st = KILN_OK;
    size_t mr = (size_t)s->tile.mr, nr = 2 * (size_t)s->tile.v;
    cl_ulong panel = mr;
    if (ta == KILN_TRANS && k > A_IN_PLACE_K) {
        st = gemm_pack(ctx, s, 0, a, a_off, lda, 0, m, k, (cl_uint)mr, &ap);
        a_off = 0;
        lda = mr;
        panel = k * mr;
    }
    cl_kernel kernel;
    if (st == KILN_OK)
        st = product_kernel(ctx, s, ta == KILN_TRANS ? TRANS_A : PLAIN_A, epi, "gemm_tile",
                            &kernel);
    if (st != KILN_OK)
        return st;
    cl_ulong ao = a_off, la = lda, bo = b.off, lb = b.ld, co = c_off, lc = ldc, mm = m, nn = n,
             kk = k;
    cl_mem bias = epilogue_bias(epi, c), aux = epilogue_aux(epi, c);
    cl_uint flags = epilogue_flags(epi);
    /* where B's block stays in the cache, tiles in a row run together so
     * that their rows of A are read once (the GPT's forward at batch 128:
     * 43 ms instead of 55); else tiles down a panel of B share it */
    cl_uint across = k * n * sizeof(float) <= s->b_fits;
    size_t rows = (m + mr - 1) / mr, cols = (n + nr - 1) / nr;
    return launch_tiles(ctx, kernel, "gemm_tile", across ? cols : rows, across ? rows : cols,
                        KARG(ap), KARG(ao), KARG(la), KARG(b.mem), KARG(bo), KARG(lb),
                        KARG(c), KARG(co), KARG(lc), KARG(mm), KARG(nn), KARG(kk),
                        KARG(alpha), KARG(beta), KARG(bias), KARG(flags), KARG(across),
                        KARG(panel), KARG(aux));
}

/* Whether B (not transposed) is read in place rather than packed: where
 * its rows run at most B_IN_PLACE_LD floats apart, so that the hardware's
 * prefetchers see several rows a page (the GPT's weight gradients
 * with 768 rows 512 bytes apart ran as fast in place, less the packing;
 * 2 KiB apart took twice as long), and in whole panels. */
static int b_in_place(const blas_state *s, kiln_transpose tb, size_t n, size_t ldb)
{
    return tb == KILN_NO_TRANS && ldb <= B_IN_PLACE_LD && n % (2 * (size_t)s->tile.v) == 0;
}

/* k split into blocks of at most the tile's kc, of equal length but for
 * the last (no short block of a few values that would cost a whole pass
 * over C): the length of each. */
static size_t block_length(const blas_state *s, size_t k)
{
    size_t kc = s->tile.kc ? s->tile.kc : k, blocks = (k + kc - 1) / kc;
    return (k + blocks - 1) / blocks;
}

/* Items of a launch whose items each keep a panel slot of their own
 * (gemm_slots, conv_tiles): at most SLOT_ITEMS_PER_UNIT per compute unit. */
size_t gemm_slot_items(const kiln_ctx *ctx, size_t panels)
{
    size_t most = SLOT_ITEMS_PER_UNIT * device_units(&ctx->info);
    return panels < most ? panels : most;
}

/* Whether C = op(A) op(B) runs as gemm_slots: A (or A^T) read in place,
 * k within one block (A^T's: within A_IN_PLACE_K), few rows of A (packing
 * B whole would send it to memory and back), and panels that share out
 * evenly over the compute units or a product so small that a second
 * launch, to pack, costs more than an idle unit (the Fashion MLP's forward
 * of 128: 0.296 ms instead of 0.317). */
static int slots_pay(const kiln_ctx *ctx, const blas_state *s, kiln_transpose ta, size_t m,
                     size_t n, size_t k)
{
    size_t nr = 2 * (size_t)s->tile.v;
    size_t panels = (n + nr - 1) / nr, units = device_units(&ctx->info);
    int fits = ta == KILN_NO_TRANS ? k <= s->tile.kc && m <= SLOT_MAX_ROWS
                                   : k <= A_IN_PLACE_K && m <= SLOT_MAX_ROWS_TRANS;
    return fits && (panels >= 4 * units || panels % units == 0 || (double)m * n * k < 1e6);
}

/* gemm_slots' along_k where B comes in panels already (gemm.cl). */
#define B_IN_PANELS 2u

/* gemm_slots over B laid out as `along` says: rows along n (0), along k (1:
 * op(B) = B^T) or B_IN_PANELS. */
static kiln_status slots(kiln_ctx *ctx, const blas_state *s, kiln_transpose ta, cl_uint along,
                         size_t m, size_t n, size_t k, float alpha, cl_mem a, size_t a_off,
                         size_t lda, cl_mem b, size_t b_off, size_t ldb, float beta, cl_mem c,
                         size_t c_off, size_t ldc, const gemm_epilogue *epi)
{
    size_t nr = 2 * (size_t)s->tile.v, items = gemm_slot_items(ctx, (n + nr - 1) / nr);
    cl_mem scratch_slots = b; /* not read where B is in panels */
    cl_kernel kernel;
    kiln_status st = along == B_IN_PANELS
                         ? KILN_OK
                         : gemm_scratch(ctx, 1, items * k * nr * sizeof(float), &scratch_slots);
    if (st == KILN_OK) /* one kernel for A and A^T, so a cold start compiles it once */
        st = product_kernel(ctx, s, PLAIN_A, epi, "gemm_slots", &kernel);
    if (st != KILN_OK)
        return st;
    cl_ulong ao = a_off, la = lda, bo = b_off, lb = ldb, co = c_off, lc = ldc, mm = m, nn = n,
             kk = k;
    cl_uint a_trans = ta == KILN_TRANS, flags = epilogue_flags(epi);
    cl_mem bias = epilogue_bias(epi, c), aux = epilogue_aux(epi, c);
    return launch_1d(ctx, kernel, "gemm_slots", items, 1, KARG(a), KARG(ao), KARG(la),
                     KARG(a_trans), KARG(b), KARG(bo), KARG(lb), KARG(along), KARG(c),
                     KARG(co), KARG(lc), KARG(mm), KARG(nn), KARG(kk), KARG(alpha),
                     KARG(beta), KARG(scratch_slots), KARG(bias), KARG(flags), KARG(aux));
}

/* C = alpha A B^T + beta C for a few rows of A (gemv_rows): B read in
 * place, 8 columns an item. */
static kiln_status gemv(kiln_ctx *ctx, const blas_state *s, size_t m, size_t n, size_t k,
                        float alpha, cl_mem a, size_t a_off, size_t lda, cl_mem b, size_t b_off,
                        size_t ldb, float beta, cl_mem c, size_t c_off, size_t ldc,
                        const gemm_epilogue *epi)
{
    cl_kernel kernel;
    kiln_status st = product_kernel(ctx, s, PLAIN_A, epi, "gemv_rows", &kernel);
    if (st != KILN_OK)
        return st;
    cl_ulong ao = a_off, la = lda, bo = b_off, lb = ldb, co = c_off, lc = ldc, mm = m, nn = n,
             kk = k;
    cl_uint flags = epilogue_flags(epi);
    cl_mem bias = epilogue_bias(epi, c), aux = epilogue_aux(epi, c);
    return launch_1d(ctx, kernel, "gemv_rows", (n + 7) / 8, 1, KARG(a), KARG(ao), KARG(la),
                     KARG(b), KARG(bo), KARG(lb), KARG(c), KARG(co), KARG(lc), KARG(mm),
                     KARG(nn), KARG(kk), KARG(alpha), KARG(beta), KARG(bias), KARG(flags),
                     KARG(aux));
}

kiln_status gemm_cpu_sgemm(kiln_ctx *ctx, kiln_transpose ta, kiln_transpose tb, size_t m,
                           size_t n, size_t k, float alpha, cl_mem a, size_t a_off, size_t lda,
                           cl_mem b, size_t b_off, size_t ldb, float beta, cl_mem c,
                           size_t c_off, size_t ldc, const gemm_epilogue *epi)
{
    cl_mem bp;
    blas_state *s;
    kiln_status st = gemm_tiled_state(ctx, &s);
    if (st == KILN_OK && ta == KILN_NO_TRANS && tb == KILN_TRANS && m <= GEMV_MAX_ROWS)
        return gemv(ctx, s, m, n, k, alpha, a, a_off, lda, b, b_off, ldb, beta, c, c_off, ldc,
                    epi);
    if (st == KILN_OK && slots_pay(ctx, s, ta, m, n, k))
        return slots(ctx, s, ta, tb == KILN_TRANS, m, n, k, alpha, a, a_off, lda, b, b_off,
                     ldb, beta, c, c_off, ldc, epi);
    size_t kb = st == KILN_OK ? block_length(s, k) : 0;
    for (size_t k0 = 0; st == KILN_OK && k0 < k; k0 += kb) {
        size_t len = k - k0 < kb ? k - k0 : kb;
        /* op(B) rows k0.. and op(A) columns k0..; later blocks add to C */
        size_t b_at = b_off + (tb == KILN_TRANS ? k0 : k0 * ldb);
        size_t a_at = a_off + (ta == KILN_TRANS ? k0 * lda : k0);
        gemm_b op_b = {b, b_at, ldb};
        if (!b_in_place(s, tb, n, ldb)) {
            st = gemm_pack(ctx, s, 1, b, b_at, ldb, tb == KILN_TRANS, n, len,
                           2 * (cl_uint)s->tile.v, &bp);
            op_b = (gemm_b){bp, 0, 0};
        }
        if (st == KILN_OK)
            st = tiles(ctx, s, ta, m, n, len, alpha, a, a_at, lda, op_b, k0 ? 1.0f : beta, c,
                       c_off, ldc, k0 + len == k ? epi : NULL); /* on the last block */
    }
    return st;
}

int blas_packs(kiln_ctx *ctx, size_t m, size_t n, size_t k)
{
    blas_state *s;
    return m > GEMV_MAX_ROWS && n > 0 && k > 0 && blas_state_get(ctx, &s) == KILN_OK &&
           s->engine == KILN_GEMM_KILN && gemm_tiled_state(ctx, &s) == KILN_OK &&
           block_length(s, k) == k;
}

void blas_packed_free(blas_packed *p)
{
    if (p->panels)
        clReleaseMemObject(p->panels);
    *p = (blas_packed){0};
}

kiln_status blas_pack_weight(kiln_ctx *ctx, cl_mem w, size_t n, size_t k, uint64_t version,
                             blas_packed *p)
{
    blas_state *s;
    kiln_status st = gemm_tiled_state(ctx, &s);
    if (st != KILN_OK)
        return st;
    size_t nr = 2 * (size_t)s->tile.v, bytes = (n + nr - 1) / nr * nr * k * sizeof(float);
    if (p->panels && p->version == version && p->nr == nr && p->n == n && p->k == k)
        return KILN_OK;
    p->version = 0; /* until packed */
    if (p->bytes < bytes) {
        blas_packed_free(p);
        cl_int err;
        p->panels = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
        if (err != CL_SUCCESS)
            return error_cl_in(err, "clCreateBuffer", "a weight's GEMM panels, %zu bytes",
                               bytes);
        p->bytes = bytes;
    }
    st = pack_into(ctx, s, p->panels, w, 0, k, 1, n, k, (cl_uint)nr);
    if (st == KILN_OK)
        *p = (blas_packed){p->panels, p->bytes, version, n, k, nr};
    return st;
}

int gemm_packed_weight_fits(kiln_ctx *ctx, const blas_packed *p, size_t n, size_t k)
{
    blas_state *s;
    return p && p->panels && p->version && p->n == n && p->k == k &&
           gemm_tiled_state(ctx, &s) == KILN_OK && p->nr == 2 * (size_t)s->tile.v;
}

int gemm_packed_fits(kiln_ctx *ctx, const blas_packed *p, size_t m, size_t n, size_t k)
{
    return gemm_packed_weight_fits(ctx, p, n, k) && blas_packs(ctx, m, n, k);
}

kiln_status gemm_cpu_packed(kiln_ctx *ctx, size_t m, size_t n, size_t k, cl_mem a, size_t lda,
                            const blas_packed *p, cl_mem c, size_t ldc, const gemm_epilogue *epi)
{
    blas_state *s;
    kiln_status st = gemm_tiled_state(ctx, &s);
    if (st != KILN_OK)
        return st;
    if (slots_pay(ctx, s, KILN_NO_TRANS, m, n, k))
        return slots(ctx, s, KILN_NO_TRANS, B_IN_PANELS, m, n, k, 1.0f, a, 0, lda, p->panels, 0,
                     0, 0.0f, c, 0, ldc, epi);
    return tiles(ctx, s, KILN_NO_TRANS, m, n, k, 1.0f, a, 0, lda, (gemm_b){p->panels, 0, 0},
                 0.0f, c, 0, ldc, epi);
}

/* The panels of one k block of the im2col operand, k0.. k0 + len - 1. */
static kiln_status im2col_block(kiln_ctx *ctx, const blas_state *s, const gemm_im2col *x,
                                int transposed, size_t n, size_t k0, size_t len, cl_mem *bp)
{
    /* the panels are as wide as the tile kernel's NR, the same -DV */
    size_t nr = 2 * (size_t)s->tile.v, panels = (n + nr - 1) / nr;
    cl_kernel kernel;
    kiln_status st = gemm_scratch(ctx, 1, panels * nr * len * sizeof(float), bp);
    if (st == KILN_OK)
        st = gemm_kernel(ctx, s, "im2col_panels", &kernel);
    if (st != KILN_OK)
        return st;
    cl_uint C = (cl_uint)x->c, H = (cl_uint)x->h, W = (cl_uint)x->w, K = (cl_uint)x->k,
            S = (cl_uint)x->s, P = (cl_uint)x->p, D = (cl_uint)x->d, OH = (cl_uint)x->oh,
            OW = (cl_uint)x->ow, by_rows = (cl_uint)transposed;
    cl_ulong kbase = k0, kk = len, extent = n;
    return launch_tiles(ctx, kernel, "im2col_panels", (len + GEMM_PACK_K - 1) / GEMM_PACK_K,
                        panels, KARG(*bp), KARG(x->x), KARG(C), KARG(H), KARG(W),
                        KARG(K), KARG(S), KARG(P), KARG(D), KARG(OH), KARG(OW),
                        KARG(by_rows), KARG(kbase), KARG(kk), KARG(extent));
}

kiln_status gemm_cpu_sgemm_im2col(kiln_ctx *ctx, size_t m, float alpha, cl_mem a, size_t lda,
                                  const gemm_im2col *x, int transposed, float beta, cl_mem c,
                                  size_t ldc)
{
    size_t rows = x->c * x->k * x->k, cols = x->n * x->oh * x->ow;
    size_t n = transposed ? rows : cols, k = transposed ? cols : rows;
    blas_state *s;
    cl_mem bp;
    kiln_status st = gemm_tiled_state(ctx, &s);
    size_t kb = st == KILN_OK ? block_length(s, k) : 0;
    for (size_t k0 = 0; st == KILN_OK && k0 < k; k0 += kb) {
        size_t len = k - k0 < kb ? k - k0 : kb;
        st = im2col_block(ctx, s, x, transposed, n, k0, len, &bp);
        if (st == KILN_OK)
            st = tiles(ctx, s, KILN_NO_TRANS, m, n, len, alpha, a, k0, lda,
                       (gemm_b){bp, 0, 0}, k0 ? 1.0f : beta, c, 0, ldc, NULL);
    }
    return st;
}

int gemm_cpu_conv_fits(kiln_ctx *ctx, size_t k)
{
    blas_state *s;
    return gemm_tiled_state(ctx, &s) == KILN_OK && k <= s->tile.kc;
}
