/* Matrix products (src/blas/): every product kiln runs goes through
 * blas_sgemm, to CLBlast (blas.c) or to kiln's own GEMM for CPU
 * devices (gemm.c); the GEMM engine of a context, the log of the shapes it
 * ran, and the per-device tuning records of `kiln tune` (tune.c).
 *
 * It may call the runtime (runtime/), OpenCL, CLBlast and cJSON; nothing
 * above it. Its per-context state (engine, packing buffers, shape log)
 * lives in the context's KILN_SLOT_BLAS slot. kiln_ctx_create is defined
 * here: the runtime opens the context, this layer attaches its state, as
 * opening a context has always chosen the GEMM engine and applied the
 * tuning record. Not installed. */
#ifndef KILN_BLAS_H
#define KILN_BLAS_H

#include "runtime/runtime.h"

#include <stdint.h>

/* The context slot (runtime.h: ctx_attach) that holds blas_state. */
#define KILN_SLOT_BLAS 0

/* The distinct matrix products a context ran while a log was attached. */
#define GEMM_LOG_MAX 64
typedef struct {
    int ta, tb;
    size_t m, n, k;
} gemm_shape;
typedef struct {
    gemm_shape shapes[GEMM_LOG_MAX];
    size_t count;
} gemm_log;

/* The register tile of kiln's GEMM (cl/gemm.cl): mr rows by 2 v columns,
 * in 2 mr accumulators of floatv; mr 1..8, v 4, 8 or 16; and its k block:
 * a product runs as blocks of at most kc values of k (1 to GEMM_KC_MAX;
 * 0 where the default is meant). */
#define GEMM_KC_MAX 65536
typedef struct {
    int mr, v;
    size_t kc;
} gemm_tile;

/* What the blas layer keeps per context. */
typedef struct {
    kiln_gemm_engine engine; /* which GEMM blas_sgemm runs (never AUTO) */
    cl_mem scratch[2];       /* packing buffers of kiln's GEMM (gemm.c) */
    size_t scratch_bytes[2];
    gemm_log *log;           /* when set, blas_sgemm records its shapes */
    gemm_tile tile;          /* kiln's GEMM tile; mr 0 until the first product chooses */
    char tile_options[4][96]; /* gemm.cl's options for that tile: A, A^T; the
                                 same with the GELU epilogues */
    size_t b_fits;           /* gemm_tile walks B's panels inside a row of tiles where
                                B's k block is at most this many bytes (0: not known yet) */
    char record[512];        /* the tuning record applied when the context opened, or "" */
} blas_state;

/* The context's blas state: the engine from $KILN_GEMM (else the device's
 * default), then the device's tuning record unless the context was opened
 * untuned. kiln_ctx_create and ctx_open attach it as they open the
 * context, so that a bad $KILN_GEMM or tuning record fails there; for a
 * context the runtime opened alone (ctx_open_device) the first call
 * creates it, tuned unless $KILN_TUNE is "off". On failure nothing is
 * attached. */
kiln_status blas_state_get(kiln_ctx *ctx, blas_state **out);

/* kiln_ctx_create (here, in blas.c: the runtime opens the context, and this
 * layer attaches its state), with the device's tuning record applied or not
 * (kiln_ctx_create applies it unless $KILN_TUNE is "off"). */
kiln_status ctx_open(const char *selector, int tuned, kiln_ctx **out);

/* Row-major C[m,n] = alpha op(A) op(B) + beta C on raw buffers with offsets
 * and leading dimensions, in elements. Sizes of zero are handled. */
kiln_status blas_sgemm(kiln_ctx *ctx, kiln_transpose ta, kiln_transpose tb, size_t m,
                       size_t n, size_t k, float alpha, cl_mem a, size_t a_off,
                       size_t lda, cl_mem b, size_t b_off, size_t ldb, float beta,
                       cl_mem c, size_t c_off, size_t ldc);

/* Starts (log) or stops (NULL) recording the shapes blas_sgemm runs. */
void blas_set_log(kiln_ctx *ctx, gemm_log *log);

/* What kiln's GEMM can do to a product that is a linear layer's whole
 * output as it stores it, in the product's own launch: add each column's
 * bias (bias, or NULL), then the value at the same place of residual (laid
 * out as C, or NULL), then keep the value so far in keep (laid out as C,
 * or NULL: the input of the activation, for its gradient), then take
 * max(v, 0) (relu) or GELU (gelu, with erf: act.cl's own arithmetic, its
 * derivative there kept in keep, laid out as C, or NULL). Or the product
 * times the values of `times` (laid out as C): where it is the gradient of
 * an activation's output and times that activation's derivative, the
 * gradient of its input. At most one of residual, keep and times. */
typedef struct {
    cl_mem bias;
    int relu;
    cl_mem residual;
    int gelu;
    cl_mem keep;
    cl_mem times;
} gemm_epilogue;

/* Whether blas_sgemm_epilogue runs on ctx: kiln's GEMM has epilogues,
 * CLBlast has none. */
int blas_has_epilogue(kiln_ctx *ctx);
/* Whether it has GELU's (gelu, keep) too: where work-groups run as
 * loops (PoCL). llvmpipe, which inlines every call, took about 15 s to
 * compile each product kernel with them, more than any of its products
 * repays. */
int blas_has_gelu_epilogue(kiln_ctx *ctx);
/* blas_sgemm followed by epi on C, where blas_has_epilogue. */
kiln_status blas_sgemm_epilogue(kiln_ctx *ctx, kiln_transpose ta, kiln_transpose tb, size_t m,
                                size_t n, size_t k, float alpha, cl_mem a, size_t a_off,
                                size_t lda, cl_mem b, size_t b_off, size_t ldb, float beta,
                                cl_mem c, size_t c_off, size_t ldc, const gemm_epilogue *epi);

/* A linear layer's weight W (n x k, row-major; its products read W^T) in
 * kiln's GEMM panels of nr columns, for products that read it unchanged
 * many times (eval-mode forwards): the packing each product would do
 * (gemm_pack), done once per version of W. The caller keeps the version:
 * a number it changes whenever W does (never 0). */
typedef struct {
    cl_mem panels; /* NULL: none yet */
    size_t bytes;
    uint64_t version; /* of W, as packed; 0: not packed */
    size_t n, k, nr;
} blas_packed;

/* Whether C = A W^T of m rows (W n x k) reads W from a blas_packed on
 * ctx: kiln's GEMM, more rows than gemv_rows takes (it reads W in place)
 * and k within one block. */
int blas_packs(kiln_ctx *ctx, size_t m, size_t n, size_t k);
/* Packs W into p unless p holds it at `version` already for the tile in
 * use. On failure p holds nothing usable (products read W itself). */
kiln_status blas_pack_weight(kiln_ctx *ctx, cl_mem w, size_t n, size_t k, uint64_t version,
                             blas_packed *p);
void blas_packed_free(blas_packed *p);
/* C (m x n, rows ldc apart) = A W^T with epilogue epi (NULL: none), A's
 * rows lda apart: from p's panels where they fit (gemm_packed_fits),
 * else as blas_sgemm_epilogue would from W. */
kiln_status blas_sgemm_packed(kiln_ctx *ctx, size_t m, size_t n, size_t k, cl_mem a,
                              size_t lda, cl_mem w, const blas_packed *p, cl_mem c, size_t ldc,
                              const gemm_epilogue *epi);
/* Whether p holds the panels of a weight of n x k for the tile in use. */
int gemm_packed_weight_fits(kiln_ctx *ctx, const blas_packed *p, size_t n, size_t k);
/* ... and blas_packs(m, n, k). */
int gemm_packed_fits(kiln_ctx *ctx, const blas_packed *p, size_t m, size_t n, size_t k);
/* blas_sgemm_packed on kiln's GEMM, where gemm_packed_fits. */
kiln_status gemm_cpu_packed(kiln_ctx *ctx, size_t m, size_t n, size_t k, cl_mem a, size_t lda,
                            const blas_packed *p, cl_mem c, size_t ldc, const gemm_epilogue *epi);

/* kiln's GEMM (gemm.c), with blas_sgemm's arguments and an epilogue (NULL:
 * none); sizes are > 0. */
kiln_status gemm_cpu_sgemm(kiln_ctx *ctx, kiln_transpose ta, kiln_transpose tb, size_t m,
                           size_t n, size_t k, float alpha, cl_mem a, size_t a_off, size_t lda,
                           cl_mem b, size_t b_off, size_t ldb, float beta, cl_mem c,
                           size_t c_off, size_t ldc, const gemm_epilogue *epi);
/* Releases the packing buffers of a context's state. */
void gemm_scratch_free(blas_state *s);

/* The tile kiln's GEMM uses by default on ctx's device: from PoCL's device
 * name, which names LLVM's CPU ("skylake-avx512", "znver4", "avx512":
 * 8 x 32; "haswell", "znver", "avx2": 6 x 16), else from the native (else
 * preferred) float vector width (16 lanes: 8 x 32, 8 lanes: 6 x 16), else
 * 4 x 8 (128-bit vectors, or a driver that reports 1, as rusticl does). */
gemm_tile gemm_tile_default(const kiln_ctx *ctx);
/* The k block for tile t on ctx's device: one packed panel of B within
 * 256 KiB and an eighth of the device's cache per compute unit, k 256 to
 * 4096 (2048 for 8 x 32 on PoCL here). */
size_t gemm_kc_default(const kiln_ctx *ctx, gemm_tile t);
/* "MRxNR" (6x16) into *out, kc 0; what names the source in errors. */
kiln_status gemm_tile_parse(const char *text, const char *what, gemm_tile *out);
/* A k block, "1" to GEMM_KC_MAX, into *out; what names the source. */
kiln_status gemm_kc_parse(const char *text, const char *what, size_t *out);
/* The tile of ctx's kiln GEMM: $KILN_GEMM_TILE and $KILN_GEMM_KC (a bad
 * value is an error naming it), else the tuning record's, else the
 * device's default, unless set. */
kiln_status gemm_tile_get(kiln_ctx *ctx, gemm_tile *out);
/* Sets ctx's tile (tests, benchmarks); mr 0 goes back to the
 * environment's or the device's, kc 0 to $KILN_GEMM_KC or the device's k
 * block for the tile. A tile out of range is KILN_ERR_INVALID_ARGUMENT. */
kiln_status gemm_tile_set(kiln_ctx *ctx, gemm_tile tile);
/* Makes t (valid, kc > 0) the tile of state s. */
void gemm_tile_put(blas_state *s, gemm_tile t);
/* A tuning record's tile, MR x NR with k block kc, onto state s, unless
 * $KILN_GEMM_TILE chooses another (then $KILN_GEMM_KC or the device's k
 * block); a tile out of range is KILN_ERR_INVALID_ARGUMENT. */
kiln_status gemm_tile_tuned(kiln_ctx *ctx, blas_state *s, int mr, int nr, size_t kc);

/* The image of a convolution whose im2col matrix (rows (c, kh, kw),
 * columns (n, oh, ow)) is a GEMM operand. */
typedef struct {
    cl_mem x; /* (N, C, H, W) */
    size_t n, c, h, w, k, s, p, d, oh, ow;
} gemm_im2col;

/* kiln's GEMM with op(B) the im2col matrix of x (transposed = 0) or its
 * transpose (1), packed straight from the image: C (m x n) = alpha A
 * op(B) + beta C, A row-major with leading dimension lda. */
kiln_status gemm_cpu_sgemm_im2col(kiln_ctx *ctx, size_t m, float alpha, cl_mem a, size_t lda,
                                  const gemm_im2col *x, int transposed, float beta, cl_mem c,
                                  size_t ldc);

/* A whole convolution with kiln's GEMM where a panel of its columns (C K K
 * of them) fits the k block: y (N, m, OH, OW) = a (m x C K K) times the
 * im2col matrix of x, packed and multiplied panel by panel in one launch
 * (gemm.cl's conv_tiles). gemm_cpu_conv_fits says whether it applies.
 * With add, y += the product (an input gradient that adds to another,
 * each value rounded as y + product would be). */
int gemm_cpu_conv_fits(kiln_ctx *ctx, size_t k);
/* wp (NULL: none): a's panels (blas_pack_weight of a, m x C K K), read
 * instead of packing a where they fit the tile in use; which happens
 * where gemm_cpu_conv_packs(m, C K K). */
kiln_status gemm_cpu_conv(kiln_ctx *ctx, size_t m, cl_mem a, const blas_packed *wp,
                          const gemm_im2col *x, cl_mem y, int add);
/* Whether gemm_cpu_conv (where gemm_cpu_conv_fits) of m output channels
 * over k taps a pixel packs its weights into panels (conv_pixels), so
 * that an eval forward may pass them packed once (blas_pack_weight). */
int gemm_cpu_conv_packs(size_t m, size_t k);

/* A convolution's weight gradient with kiln's GEMM: dw (m x C K K) = g
 * (N, m, OH, OW), read as (m, N OH OW), times the transpose of the im2col
 * matrix of x; the reduction split across items, each summing its part in
 * a slot of its own, then the slots added in a fixed order (gemm.cl's
 * conv_weight_slots and sum_slots: two launches, the same bits on every
 * run). */
kiln_status gemm_cpu_conv_weights(kiln_ctx *ctx, cl_mem g, const gemm_im2col *x, size_t m,
                                  cl_mem dw);
/* Whether a weight gradient of m x n, of output rows ow pixels long,
 * takes gemm_cpu_conv_weights: as conv_weight_pixels, or where an item's
 * slot of partial sums stays small enough to be cached. */
int gemm_cpu_conv_weights_pay(size_t m, size_t n, size_t ow);

/* The input gradient of a strided convolution with kiln's GEMM: dx (x's
 * dims, into the buffer x->x) from g (N, o, OH, OW) and the weights w (o,
 * C, K, K), phase by phase of the inputs (a + S i, b + S j), each a
 * stride-1 convolution of g by the taps that reach it (gemm.cl's
 * phase_weights and conv_phase_tiles: two launches).
 * gemm_cpu_conv_phases_fit says whether the taps of a phase fit the k
 * block. */
int gemm_cpu_conv_phases_fit(kiln_ctx *ctx, size_t o, const gemm_im2col *x);
/* Whether some phase a < S of x's stride has no tap reaching it along an
 * axis (its k, s, p and d are read): those inputs get no gradient. */
int gemm_conv_tapless_phase(const gemm_im2col *x);
/* Whether an input gradient of c channels runs its phases as
 * conv_phase_pixels (the gradient read in place, nothing packed but the
 * weights), which takes any number of output channels. */
int gemm_cpu_phase_pixels_pay(size_t c);
/* With add, dx += the gradient, as gemm_cpu_conv's add. */
kiln_status gemm_cpu_conv_phases(kiln_ctx *ctx, size_t o, cl_mem w, cl_mem g,
                                 const gemm_im2col *x, int add);

/* "auto", "clblast" or "kiln" into *out; what names the source in errors. */
kiln_status gemm_engine_parse(const char *text, const char *what, kiln_gemm_engine *out);
/* AUTO made concrete for the context's device: kiln's GEMM where the
 * driver runs a work-group as a loop on one core, else CLBlast. */
kiln_gemm_engine gemm_engine_resolve(const kiln_ctx *ctx, kiln_gemm_engine engine);

/* kiln_tuning_apply onto a state not yet attached (tune.c). */
kiln_status tuning_apply_state(kiln_ctx *ctx, blas_state *s, const kiln_tuning *t);

#endif /* KILN_BLAS_H */
