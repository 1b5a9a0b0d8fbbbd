/* kiln's CPU GEMM for convolutions (cl/gemm.cl's conv kernels): the
 * forward as conv_tiles or conv_pixels, the weight gradient from per-item
 * slots or rows of pixels, and a strided input gradient phase by phase.
 * The packing, scratch buffers and tiles are gemm.c's (gemm_internal.h). */
#include <stdio.h>

#include "blas/gemm_internal.h"

/* Where gemm_cpu_conv takes conv_pixels: up to 128 output channels (each
 * panel of conv_tiles' packed columns then serves few row tiles, and its
 * packing costs nearly as much as the products), and from 32 taps a pixel
 * (below, as in a stem over 3 channels, packing is cheap and a tile's own
 * setup and stores weigh more). Measured over the ResNet of
 * examples/resnet_cifar.ini at batch 128 (device time, AMD EPYC, 2
 * threads): 32 -> 32 channels at 32 x 32, forward 34-41 ms -> 22 ms and
 * backward (its input gradient) 67 -> 57 ms; 32 -> 64 at stride 2, 15 ->
 * 11 ms; 64 -> 64 at 16 x 16, 17.4 -> 16.8 ms; the stem, 5.7 -> 6.8 ms.
 * From 32 taps, not 64 (AVX-512 Xeon, 2026-12-06): the 1 x 1 stride-2
 * shortcut over 32 channels, forward 3.2 -> 1.7 ms and its weight
 * gradient's share of the backward 4.35 -> 3.8-3.95 ms. Up to 128
 * channels, not 64, once its rows read without divisions (the same day):
 * 64 -> 128 at stride 2, forward 5.3-5.7 -> 3.3-3.5 ms (bench_ops). */
#define PIXELS_MAX_CHANNELS 128
#define PIXELS_MIN_K 32

/* Whether a convolution of m output channels over k taps a pixel takes
 * conv_pixels and conv_weight_pixels (at most GEMM_OFFSETS_MAX taps,
 * conv_pixels' table of their offsets). */
static int pixels_pay(size_t m, size_t k)
{
    return m <= PIXELS_MAX_CHANNELS && k >= PIXELS_MIN_K && k <= GEMM_OFFSETS_MAX;
}

/* planes of h x w in buf zero-padded by p on every side (pad_planes)
 * into scratch 0, or buf itself where p is 0. */
static kiln_status padded(kiln_ctx *ctx, const blas_state *s, cl_mem buf, size_t planes,
                          size_t h, size_t w, size_t p, cl_mem *out)
{
    size_t hp = h + 2 * p, wp = w + 2 * p;
    cl_kernel pad;
    *out = buf;
    if (!p)
        return KILN_OK;
    kiln_status st = gemm_scratch(ctx, 0, planes * hp * wp * sizeof(float), out);
    if (st == KILN_OK)
        st = gemm_kernel(ctx, s, "pad_planes", &pad);
    cl_uint H = (cl_uint)h, W = (cl_uint)w, P = (cl_uint)p;
    if (st == KILN_OK)
        st = launch_1d(ctx, pad, "pad_planes", planes, 1, KARG(buf), KARG(*out), KARG(H),
                       KARG(W), KARG(P));
    return st;
}

/* x zero-padded by its padding (padded). */
static kiln_status padded_input(kiln_ctx *ctx, const blas_state *s, const gemm_im2col *x,
                                cl_mem *out)
{
    return padded(ctx, s, x->x, x->n * x->c, x->h, x->w, x->p, out);
}

/* Output rows conv_pixels_lines stages x's rows for at a time: at least
 * LINE_STAGE_PIXELS pixels, so that the rows staged again by the next
 * chunk (the kernel's reach below the chunk's last row) weigh little. */
#define LINE_STAGE_PIXELS 128

/* Whole output rows of x's convolution that hold at least `pixels`
 * pixels, at most all of them: a chunk of conv_pixels_lines and
 * conv_weight_pixels. */
static size_t chunk_rows(const gemm_im2col *x, size_t pixels)
{
    size_t ch = (pixels + x->ow - 1) / x->ow;
    return ch < x->oh ? ch : x->oh;
}

/* The floats of an item's staged rows (stage_rows in gemm.cl) for a chunk
 * of ch output rows: R = (ch - 1) S + (K - 1) D + 1 rows a channel, each
 * W + 2 P long. */
static size_t staged_floats(const gemm_im2col *x, size_t ch)
{
    return x->c * ((ch - 1) * x->s + (x->k - 1) * x->d + 1) * (x->w + 2 * x->p);
}

/* conv_pixels_lines (stride 1) or conv_pixels_lines2 (stride 2): every
 * tile a row's neighbours, x's rows staged zero-padded by each item in
 * scratch 0. */
static kiln_status conv_lines(kiln_ctx *ctx, const blas_state *s, size_t m, cl_mem panels,
                              const gemm_im2col *x, cl_mem y, cl_uint add)
{
    size_t npix = x->n * x->oh * x->ow, mr = (size_t)s->tile.mr;
    size_t items = gemm_slot_items(ctx, npix / mr);
    size_t ch = chunk_rows(x, LINE_STAGE_PIXELS), staged = staged_floats(x, ch);
    cl_mem buf;
    cl_kernel kernel;
    const char *name = x->s == 1 ? "conv_pixels_lines" : "conv_pixels_lines2";
    kiln_status st = gemm_scratch(ctx, 0, items * staged * sizeof(float), &buf);
    if (st == KILN_OK)
        st = gemm_kernel(ctx, s, name, &kernel);
    if (st != KILN_OK)
        return st;
    cl_uint C = (cl_uint)x->c, H = (cl_uint)x->h, W = (cl_uint)x->w, P = (cl_uint)x->p,
            K = (cl_uint)x->k, D = (cl_uint)x->d, OH = (cl_uint)x->oh, OW = (cl_uint)x->ow,
            CH = (cl_uint)ch;
    cl_ulong mm = m, np = npix;
    return launch_1d(ctx, kernel, name, items, 1, KARG(panels), KARG(x->x),
                     KARG(y), KARG(buf), KARG(C), KARG(H), KARG(W), KARG(P), KARG(K), KARG(D),
                     KARG(OH), KARG(OW), KARG(mm), KARG(np), KARG(add), KARG(CH));
}

/* The convolution as conv_pixels: the weights packed into panels of NR in
 * scratch 1, and x zero-padded into scratch 0 (unless P is 0), or as
 * conv_pixels_lines where every tile is a row's neighbours. Not in tiles
 * of fewer rows where those divide OW and MR does not (as
 * conv_phase_pairs takes them, phase_pair_rows): on the ResNet's layers
 * at 8 x 8 (AMD EPYC at AVX2, batch 128), 4-row lines took 1.1-1.35 times
 * as long as 6-row tiles that cross the rows. */
static kiln_status conv_pixels(kiln_ctx *ctx, const blas_state *s, size_t m, cl_mem a,
                               const blas_packed *wp, const gemm_im2col *x, cl_mem y,
                               cl_uint add)
{
    size_t k = x->c * x->k * x->k, hp = x->h + 2 * x->p, wpad = x->w + 2 * x->p;
    size_t npix = x->n * x->oh * x->ow, mr = (size_t)s->tile.mr;
    cl_mem padded, panels = wp ? wp->panels : NULL;
    cl_kernel kernel;
    kiln_status st = KILN_OK;
    if (!panels)
        st = gemm_pack(ctx, s, 1, a, 0, k, 1, m, k, 2 * (cl_uint)s->tile.v, &panels);
    if (st == KILN_OK && x->s <= 2 && x->ow % mr == 0)
        return conv_lines(ctx, s, m, panels, x, y, add);
    if (st == KILN_OK)
        st = padded_input(ctx, s, x, &padded);
    if (st == KILN_OK)
        st = gemm_kernel(ctx, s, "conv_pixels", &kernel);
    if (st != KILN_OK)
        return st;
    size_t items = gemm_slot_items(ctx, (npix + mr - 1) / mr);
    cl_uint C = (cl_uint)x->c, Hp = (cl_uint)hp, Wp = (cl_uint)wpad, K = (cl_uint)x->k,
            S = (cl_uint)x->s, D = (cl_uint)x->d, OH = (cl_uint)x->oh, OW = (cl_uint)x->ow;
    cl_ulong mm = m, np = npix;
    return launch_1d(ctx, kernel, "conv_pixels", items, 1, KARG(panels), KARG(padded), KARG(y),
                     KARG(C), KARG(Hp), KARG(Wp), KARG(K), KARG(S), KARG(D), KARG(OH),
                     KARG(OW), KARG(mm), KARG(np), KARG(add));
}

int gemm_cpu_conv_packs(size_t m, size_t k)
{
    return pixels_pay(m, k);
}

kiln_status gemm_cpu_conv(kiln_ctx *ctx, size_t m, cl_mem a, const blas_packed *wp,
                          const gemm_im2col *x, cl_mem y, int add)
{
    size_t k = x->c * x->k * x->k, n = x->n * x->oh * x->ow;
    blas_state *s;
    cl_mem slots;
    cl_kernel kernel;
    kiln_status st = gemm_tiled_state(ctx, &s);
    if (wp && !gemm_packed_weight_fits(ctx, wp, m, k))
        wp = NULL; /* another tile since: packed again below */
    if (st == KILN_OK && pixels_pay(m, k))
        return conv_pixels(ctx, s, m, a, wp, x, y, (cl_uint)add);
    size_t nr = st == KILN_OK ? 2 * (size_t)s->tile.v : 1;
    size_t items = gemm_slot_items(ctx, (n + nr - 1) / nr);
    if (st == KILN_OK)
        st = gemm_scratch(ctx, 1, items * k * nr * sizeof(float), &slots);
    if (st == KILN_OK)
        st = gemm_kernel(ctx, s, "conv_tiles", &kernel);
    if (st != KILN_OK)
        return st;
    cl_uint C = (cl_uint)x->c, H = (cl_uint)x->h, W = (cl_uint)x->w, K = (cl_uint)x->k,
            S = (cl_uint)x->s, P = (cl_uint)x->p, D = (cl_uint)x->d, OH = (cl_uint)x->oh,
            OW = (cl_uint)x->ow;
    cl_ulong mm = m, nn = n, kk = k;
    cl_uint adds = (cl_uint)add;
    return launch_1d(ctx, kernel, "conv_tiles", items, 1, KARG(a), KARG(x->x), KARG(y),
                     KARG(slots), KARG(C), KARG(H), KARG(W), KARG(K), KARG(S), KARG(P),
                     KARG(D), KARG(OH), KARG(OW), KARG(mm), KARG(nn), KARG(kk), KARG(adds));
}

/* Items of conv_weight_slots: a few per compute unit (each adds a slot of
 * m x n partial sums that sum_slots reads back), none with an empty
 * range. */
#define WEIGHT_ITEMS_PER_UNIT 4
/* The largest weight gradient taken from per-item slots: an item's slot
 * of partial sums is passed over once per k run and should stay near its
 * core's cache. Above it (128 x 128 x 3 x 3 weights at 8 x 8) the blocked
 * GEMM measured faster on a 2-core AMD EPYC (docs/gemm.md). */
#define WEIGHT_SLOT_BYTES (512u << 10)
/* The bytes of the output gradient one item multiplies per k run. */
#define WEIGHT_ROWS_BYTES (128u << 10)

/* Where a weight gradient takes conv_weight_pixels: up to 128 output
 * channels, from PIXELS_MIN_K taps (64 when measured here) and output
 * rows of at most GEMM_OFFSETS_MAX pixels (its table of a chunk's
 * pixels' offsets). Measured over the ResNet as above, backward (weight
 * and input gradients): 32 -> 32 at 32 x 32, 60 -> 43 ms; 64 -> 64 at
 * 16 x 16, 39 -> 34 ms; 128 -> 128 at 8 x 8, 36 -> 32 ms; device time
 * 407 -> 371 ms a step. */
#define WEIGHT_PIXELS_MAX_CHANNELS 128

static int weight_pixels_pay(size_t m, size_t n, size_t ow)
{
    return m <= WEIGHT_PIXELS_MAX_CHANNELS && n >= PIXELS_MIN_K && ow <= GEMM_OFFSETS_MAX;
}

int gemm_cpu_conv_weights_pay(size_t m, size_t n, size_t ow)
{
    return weight_pixels_pay(m, n, ow) || m * n * sizeof(float) <= WEIGHT_SLOT_BYTES;
}

/* 128, not 64, once x's rows were staged in the kernel (AVX-512 Xeon,
 * 2026-12-06, bench_ops): the ResNet's 32 -> 32 backward 14.0-14.4 ->
 * 13.3-13.8 ms, 64 -> 64 12.5 -> 12.0-12.4 ms; 256 measured the same. */
#define WEIGHT_PIXELS_RUN 128

/* The weight gradient as conv_weight_pixels (a slot per item of output
 * rows, each chunk's rows of x staged zero-padded) and sum_columns. */
static kiln_status weight_pixels(kiln_ctx *ctx, const blas_state *s, cl_mem g,
                                 const gemm_im2col *x, size_t m, cl_mem dw)
{
    size_t n = x->c * x->k * x->k, rows = x->n * x->oh, nr = 2 * (size_t)s->tile.v;
    size_t op = (m + nr - 1) / nr * nr, items = WEIGHT_ITEMS_PER_UNIT * device_units(&ctx->info);
    items = items < rows ? items : rows;
    /* output rows a pass of the tiles takes: at least WEIGHT_PIXELS_RUN
     * pixels, so that loading and storing a tile's sums, and the rows of
     * x staged again by the next chunk, weigh little */
    size_t ch = chunk_rows(x, WEIGHT_PIXELS_RUN), table_rows = GEMM_OFFSETS_MAX / x->ow;
    ch = ch < table_rows ? ch : table_rows; /* the chunk's pixels' offsets in its table */
    size_t staged = x->p ? staged_floats(x, ch) : 0;
    /* where a chunk is whole samples, at most as many as make
     * WEIGHT_PIXELS_RUN pixels, and as many as keep an item's copies of
     * them within WEIGHT_SLOT_BYTES */
    size_t pixels = x->oh * x->ow, im = ch == x->oh ? WEIGHT_PIXELS_RUN / pixels : 1;
    size_t fit = WEIGHT_SLOT_BYTES / sizeof(float) / (ch * x->ow * op + staged);
    im = im < fit ? im : fit;
    im = im < table_rows / ch ? im : table_rows / ch;
    im = im ? im : 1;
    cl_mem buf;
    cl_kernel kernel, sum;
    kiln_status st = gemm_scratch(
        ctx, 1, items * (n * op + (ch * x->ow * op + staged) * im) * sizeof(float), &buf);
    if (st == KILN_OK)
        st = gemm_kernel(ctx, s, "conv_weight_pixels", &kernel);
    if (st == KILN_OK)
        st = gemm_kernel(ctx, s, "sum_columns", &sum);
    if (st != KILN_OK)
        return st;
    cl_uint C = (cl_uint)x->c, H = (cl_uint)x->h, W = (cl_uint)x->w, P = (cl_uint)x->p,
            K = (cl_uint)x->k, S = (cl_uint)x->s, D = (cl_uint)x->d, OH = (cl_uint)x->oh,
            OW = (cl_uint)x->ow, mm = (cl_uint)m, OP = (cl_uint)op, nn = (cl_uint)n,
            count = (cl_uint)items, CH = (cl_uint)ch, IM = (cl_uint)im;
    cl_ulong rr = rows;
    st = launch_1d(ctx, kernel, "conv_weight_pixels", items, 1, KARG(g), KARG(x->x), KARG(buf),
                   KARG(C), KARG(H), KARG(W), KARG(P), KARG(K), KARG(S), KARG(D), KARG(OH),
                   KARG(OW), KARG(mm), KARG(OP), KARG(rr), KARG(CH), KARG(IM));
    return st != KILN_OK ? st
                         : launch_3d(ctx, sum, "sum_columns", m, n, 1, KARG(buf), KARG(dw),
                                     KARG(mm), KARG(nn), KARG(OP), KARG(count));
}

kiln_status gemm_cpu_conv_weights(kiln_ctx *ctx, cl_mem g, const gemm_im2col *x, size_t m,
                                  cl_mem dw)
{
    size_t n = x->c * x->k * x->k, total = x->n * x->oh * x->ow;
    blas_state *s;
    cl_mem buf;
    cl_kernel slots_kernel, sum_kernel;
    kiln_status st = gemm_tiled_state(ctx, &s);
    if (st != KILN_OK)
        return st;
    if (weight_pixels_pay(m, n, x->ow))
        return weight_pixels(ctx, s, g, x, m, dw);
    size_t items = WEIGHT_ITEMS_PER_UNIT * device_units(&ctx->info);
    items = items < total ? items : total;
    size_t nr = 2 * (size_t)s->tile.v, most = (total + items - 1) / items;
    /* the longest run an item packs: within the k block, and short enough
     * that the gradient's rows for it (m of them) stay in the cache while
     * every panel of dw's columns passes */
    size_t kc = WEIGHT_ROWS_BYTES / sizeof(float) / m;
    kc = kc < 64 ? 64 : kc;
    kc = kc < s->tile.kc ? kc : s->tile.kc;
    kc = kc < most ? kc : most;
    size_t part_off = items * kc * nr;
    st = gemm_scratch(ctx, 1, (part_off + items * m * n) * sizeof(float), &buf);
    if (st == KILN_OK)
        st = gemm_kernel(ctx, s, "conv_weight_slots", &slots_kernel);
    if (st == KILN_OK)
        st = gemm_kernel(ctx, s, "sum_slots", &sum_kernel);
    if (st != KILN_OK)
        return st;
    cl_uint C = (cl_uint)x->c, H = (cl_uint)x->h, W = (cl_uint)x->w, K = (cl_uint)x->k,
            S = (cl_uint)x->s, P = (cl_uint)x->p, D = (cl_uint)x->d, OH = (cl_uint)x->oh,
            OW = (cl_uint)x->ow, count = (cl_uint)items;
    cl_ulong po = part_off, mm = m, nn = n, tt = total, kk = kc, mn = m * n;
    st = launch_1d(ctx, slots_kernel, "conv_weight_slots", items, 1, KARG(g), KARG(x->x),
                   KARG(buf), KARG(po), KARG(C), KARG(H), KARG(W), KARG(K), KARG(S), KARG(P),
                   KARG(D), KARG(OH), KARG(OW), KARG(mm), KARG(nn), KARG(tt), KARG(kk));
    return st != KILN_OK ? st
                         : launch_1d(ctx, sum_kernel, "sum_slots", mn, mn < 64 ? mn : 64,
                                     KARG(buf), KARG(po), KARG(dw), KARG(mn), KARG(count));
}

/* Whether tap k reaches phase a along an axis of a stride-S convolution:
 * a + P - k D is a multiple of S. */
static int tap_reaches(size_t a, size_t k, const gemm_im2col *x)
{
    return ((long)(a + x->p) - (long)(k * x->d)) % (long)x->s == 0;
}

/* Where tap k of phase a reads g along an axis, from a phase input i:
 * at i + (a + P - k D) / S, for a tap that reaches the phase (the
 * division is exact). */
static long tap_shift(size_t a, size_t k, const gemm_im2col *x)
{
    return ((long)(a + x->p) - (long)(k * x->d)) / (long)x->s;
}

/* The inputs a, a + S, ... below n: phase a's extent along an axis of n. */
static size_t phase_extent(size_t a, size_t n, const gemm_im2col *x)
{
    return a < n ? (n - a + x->s - 1) / x->s : 0;
}

/* The taps of phase a along one axis of a stride-S convolution (gemm.cl's
 * taps_of): the k < K with a + P - k D a multiple of S. */
static size_t phase_tap_count(size_t a, const gemm_im2col *x)
{
    size_t count = 0;
    for (size_t k = 0; k < x->k; k++)
        count += tap_reaches(a, k, x);
    return count;
}

/* The most taps any phase has along one axis. */
static size_t phase_most_taps(const gemm_im2col *x)
{
    size_t most = 0;
    for (size_t a = 0; a < x->s; a++) {
        size_t t = phase_tap_count(a, x);
        most = t > most ? t : most;
    }
    return most;
}

int gemm_cpu_conv_phases_fit(kiln_ctx *ctx, size_t o, const gemm_im2col *x)
{
    size_t most = phase_most_taps(x);
    return gemm_cpu_conv_fits(ctx, o * most * most);
}

int gemm_conv_tapless_phase(const gemm_im2col *x)
{
    for (size_t a = 0; a < x->s; a++)
        if (phase_tap_count(a, x) == 0)
            return 1;
    return 0;
}

/* The inputs of phase ph (a + S i, b + S j; a = ph / S, b = ph % S) over
 * the batch: N HA WB. */
static size_t phase_inputs(const gemm_im2col *x, size_t ph)
{
    return x->n * phase_extent(ph / x->s, x->h, x) * phase_extent(ph % x->s, x->w, x);
}

/* The zero padding of g that every phase's taps find in conv_phase_pixels
 * along an axis of n inputs and m outputs: tap k of phase a reads g at
 * i + (a + P - k D) / S for the phase's inputs i, so below 0 by the most
 * negative of those shifts and past m - 1 by the largest reach. */
static size_t phase_axis_padding(const gemm_im2col *x, size_t n, size_t m)
{
    long lo = 0, hi = 0;
    for (size_t a = 0; a < x->s && a < n; a++)
        for (size_t k = 0; k < x->k; k++) {
            if (!tap_reaches(a, k, x))
                continue;
            long sh = tap_shift(a, k, x);
            long last = (long)phase_extent(a, n, x) - 1 + sh - ((long)m - 1);
            lo = -sh > lo ? -sh : lo;
            hi = last > hi ? last : hi;
        }
    return (size_t)(lo > hi ? lo : hi);
}

/* g's padding for conv_phase_pixels: the larger of its axes'. */
static size_t phase_padding(const gemm_im2col *x)
{
    size_t ph = phase_axis_padding(x, x->h, x->oh), pw = phase_axis_padding(x, x->w, x->ow);
    return ph > pw ? ph : pw;
}

/* Up to 64 input channels (past them, conv_phase_tiles packs the
 * gradient's panels once for more channels). A strided 1 x 1 convolution
 * reaches one phase of S x S, and the others get zeros tile by tile (or
 * nothing, where the gradient adds): against its column-gradient GEMM
 * (swap01, pack, GEMM, col2im), the ResNet's shortcuts' backward at batch
 * 128 measured 3.3 -> 2.5 ms (32 -> 64) and 2.3 -> 1.9 ms (64 -> 128)
 * once the phase tiles read as lines (AVX-512 Xeon, 2026-12-06); before,
 * 3.8 -> 5.3 ms. */
#define PHASE_PIXELS_MAX_CHANNELS 64

int gemm_cpu_phase_pixels_pay(size_t c)
{
    return c <= PHASE_PIXELS_MAX_CHANNELS;
}

/* Whether conv_phase_pairs' tiles of MR rows take phase rows of WB
 * inputs: WB at least MR (rows of MR-neighbour tiles, the last moved back
 * to end at the row's end where MR does not divide WB), computing at most
 * an eighth more inputs than a row has. At AVX2's 6-row tile (Emerald
 * Rapids Xeon, `kiln bench` of the ResNet, backward): WB 16, 2 more, the
 * 32 -> 64 layers' 14.1 -> 13.8 ms (3 x 3) and 3.84 -> 3.02 ms (1 x 1);
 * WB 8, 4 more, the 64 -> 128 3 x 3's 12.3 -> 14.8 ms. */
static int phase_pairs(size_t wb, size_t mr)
{
    size_t computed = (wb + mr - 1) / mr * mr;
    return wb >= mr && computed * 8 <= wb * 9;
}

/* The rows of conv_phase_pairs' tiles, which takes stride 2 with W even
 * (both column phases' rows of the same length, WB): the tile's MR where
 * phase_pairs takes it, else the largest smaller one, down to 4, that
 * divides WB (a second build of the kernel); 0: conv_phase_pixels. At WB
 * 8 (the ResNet's 64 -> 128 layers at batch 128, AMD EPYC at AVX2,
 * medians of 5 alternated runs), 4-row pairs took the 3 x 3's input
 * gradient from 10.9 to 8.7 ms a step and the 1 x 1's from 2.3 to 1.9
 * ms, against conv_phase_pixels' 6-row tiles, which cross the phase's
 * rows. */
static size_t phase_pair_rows(const gemm_im2col *x, size_t mr)
{
    size_t wb = x->w / 2;
    if (x->s != 2 || x->w % 2 != 0)
        return 0;
    if (phase_pairs(wb, mr))
        return mr;
    for (size_t m = mr - 1; m >= 4; m--)
        if (wb % m == 0)
            return m;
    return 0;
}

/* Output channels an item of phase_panels and phase_weights takes, about
 * (it finds where its tap lands once, then copies them). */
#define PHASE_PANEL_O 16

/* The rows of g above (up) and below (down) a phase row that its taps
 * read (tap_shift, over the taps of both row phases). */
static void phase_row_reach(const gemm_im2col *x, size_t *up, size_t *down)
{
    long lo = 0, hi = 0;
    for (size_t a = 0; a < x->s && a < x->h; a++)
        for (size_t k = 0; k < x->k; k++) {
            if (!tap_reaches(a, k, x))
                continue;
            long sh = tap_shift(a, k, x);
            lo = sh < lo ? sh : lo;
            hi = sh > hi ? sh : hi;
        }
    *up = (size_t)-lo;
    *down = (size_t)hi;
}

/* The stride-2 input gradient as conv_phase_pairs: the weights in each
 * phase's panels (wq, from phase_panels), g's rows staged by each item
 * in scratch 0 (where PG > 0) CH phase rows at a time and as far as the
 * taps reach above and below them, CH the rows of at least
 * LINE_STAGE_PIXELS inputs, at most a phase's; an item a run of the tile
 * positions of row phase 0. */
static kiln_status phase_pairs_run(kiln_ctx *ctx, const blas_state *s, size_t mr, size_t o,
                                   cl_mem wq, cl_mem g, const gemm_im2col *x, size_t pg,
                                   cl_uint add)
{
    size_t wb = phase_extent(0, x->w, x), ha = phase_extent(0, x->h, x), up, down;
    size_t ch = (LINE_STAGE_PIXELS + wb - 1) / wb;
    size_t items = gemm_slot_items(ctx, x->n * ha * ((wb + mr - 1) / mr));
    ch = ch < ha ? ch : ha;
    if (items == 0)
        return KILN_OK;
    phase_row_reach(x, &up, &down);
    size_t staged = pg ? o * (up + ch + down) * (x->ow + 2 * pg) : 1;
    cl_mem buf;
    cl_kernel kernel;
    kiln_status st = gemm_scratch(ctx, 0, items * staged * sizeof(float), &buf);
    if (st == KILN_OK)
        st = gemm_kernel_rows(ctx, s, (int)mr, "conv_phase_pairs", &kernel);
    if (st != KILN_OK)
        return st;
    cl_uint N = (cl_uint)x->n, C = (cl_uint)x->c, H = (cl_uint)x->h, W = (cl_uint)x->w,
            O = (cl_uint)o, OH = (cl_uint)x->oh, OW = (cl_uint)x->ow, K = (cl_uint)x->k,
            P = (cl_uint)x->p, D = (cl_uint)x->d, PG = (cl_uint)pg, CH = (cl_uint)ch,
            UP = (cl_uint)up, DOWN = (cl_uint)down;
    return launch_1d(ctx, kernel, "conv_phase_pairs", items, 1, KARG(wq), KARG(g), KARG(x->x),
                     KARG(buf), KARG(N), KARG(C), KARG(H), KARG(W), KARG(O), KARG(OH),
                     KARG(OW), KARG(K), KARG(P), KARG(D), KARG(PG), KARG(add), KARG(CH),
                     KARG(UP), KARG(DOWN));
}

/* Each phase's weights in panels of NR input channels (phase_panels)
 * in scratch 1. */
static kiln_status phase_weight_panels(kiln_ctx *ctx, const blas_state *s, size_t o, cl_mem w,
                                       const gemm_im2col *x, cl_mem *wq)
{
    size_t nr = 2 * (size_t)s->tile.v, cp = (x->c + nr - 1) / nr * nr;
    cl_kernel panels;
    kiln_status st = gemm_scratch(ctx, 1, o * cp * x->k * x->k * sizeof(float), wq);
    if (st == KILN_OK)
        st = gemm_kernel(ctx, s, "phase_panels", &panels);
    cl_uint C = (cl_uint)x->c, CP = (cl_uint)cp, O = (cl_uint)o, K = (cl_uint)x->k,
            S = (cl_uint)x->s, P = (cl_uint)x->p, D = (cl_uint)x->d;
    return st != KILN_OK ? st
                         : launch_tiles(ctx, panels, "phase_panels", x->k * x->k,
                                        (o + PHASE_PANEL_O - 1) / PHASE_PANEL_O, KARG(w),
                                        KARG(*wq), KARG(O), KARG(C), KARG(CP), KARG(K),
                                        KARG(S), KARG(P), KARG(D));
}

/* The strided input gradient as conv_phase_pixels: g zero-padded into
 * scratch 0 by what the phases' taps reach (phase_padding), the weights
 * in each phase's panels (phase_weight_panels); or at stride 2 with rows
 * of pairs, conv_phase_pairs. */
static kiln_status phase_pixels(kiln_ctx *ctx, const blas_state *s, size_t o, cl_mem w,
                                cl_mem g, const gemm_im2col *x, cl_uint add)
{
    size_t pg = phase_padding(x), mr = (size_t)s->tile.mr, tiles = 0;
    size_t pairs = phase_pair_rows(x, mr);
    cl_mem gp = g, wq;
    cl_kernel kernel;
    kiln_status st = pairs ? KILN_OK : padded(ctx, s, g, x->n * o, x->oh, x->ow, pg, &gp);
    if (st == KILN_OK)
        st = phase_weight_panels(ctx, s, o, w, x, &wq);
    if (st == KILN_OK && pairs)
        return phase_pairs_run(ctx, s, pairs, o, wq, g, x, pg, add);
    if (st != KILN_OK)
        return st;
    for (size_t ph = 0; ph < x->s * x->s; ph++)
        tiles += (phase_inputs(x, ph) + mr - 1) / mr;
    size_t items = gemm_slot_items(ctx, tiles);
    int lines = 1;
    for (size_t b = 0; b < x->s; b++)
        lines = lines && phase_extent(b, x->w, x) % mr == 0;
    /* the two kernels take the same arguments */
    const char *name = lines ? "conv_phase_pixels_lines" : "conv_phase_pixels";
    if (items == 0)
        return KILN_OK;
    st = gemm_kernel(ctx, s, name, &kernel);
    cl_uint N = (cl_uint)x->n, C = (cl_uint)x->c, H = (cl_uint)x->h, W = (cl_uint)x->w,
            O = (cl_uint)o, Hp = (cl_uint)(x->oh + 2 * pg), Wp = (cl_uint)(x->ow + 2 * pg),
            K = (cl_uint)x->k, S = (cl_uint)x->s, P = (cl_uint)x->p, D = (cl_uint)x->d,
            PG = (cl_uint)pg;
    return st != KILN_OK
               ? st
               : launch_1d(ctx, kernel, name, items, 1, KARG(wq), KARG(gp), KARG(x->x),
                           KARG(N), KARG(C), KARG(H), KARG(W), KARG(O), KARG(Hp), KARG(Wp),
                           KARG(K), KARG(S), KARG(P), KARG(D), KARG(PG), KARG(add));
}

/* Whether a strided input gradient takes conv_stride2_points: a 1 x 1 of
 * stride 2 without padding (a residual block's shortcut) over even H and
 * W, its output rows a multiple of 8 long and its images of a multiple of
 * NR pixels. */
static int stride2_points(const gemm_im2col *x, size_t nr)
{
    return x->k == 1 && x->s == 2 && x->p == 0 && x->h == 2 * x->oh && x->w == 2 * x->ow &&
           x->ow % 8 == 0 && x->oh * x->ow % nr == 0;
}

/* The input gradient as conv_stride2_points: w and g read in place,
 * nothing packed, one launch. */
static kiln_status stride2_points_run(kiln_ctx *ctx, const blas_state *s, size_t o, cl_mem w,
                                      cl_mem g, const gemm_im2col *x, cl_uint add)
{
    size_t nr = 2 * (size_t)s->tile.v, mr = (size_t)s->tile.mr;
    size_t tiles = x->n * (x->oh * x->ow / nr) * ((x->c + mr - 1) / mr);
    size_t items = gemm_slot_items(ctx, tiles);
    cl_kernel kernel;
    if (items == 0)
        return KILN_OK;
    kiln_status st = gemm_kernel(ctx, s, "conv_stride2_points", &kernel);
    cl_uint N = (cl_uint)x->n, C = (cl_uint)x->c, O = (cl_uint)o, OH = (cl_uint)x->oh,
            OW = (cl_uint)x->ow;
    return st != KILN_OK ? st
                         : launch_1d(ctx, kernel, "conv_stride2_points", items, 1, KARG(w),
                                     KARG(g), KARG(x->x), KARG(N), KARG(C), KARG(O), KARG(OH),
                                     KARG(OW), KARG(add));
}

kiln_status gemm_cpu_conv_phases(kiln_ctx *ctx, size_t o, cl_mem w, cl_mem g,
                                 const gemm_im2col *x, int add)
{
    size_t most = phase_most_taps(x), panels = 0;
    blas_state *s;
    cl_mem wp, slots;
    cl_kernel weights, tiles_kernel;
    kiln_status st = gemm_tiled_state(ctx, &s);
    if (st != KILN_OK)
        return st;
    if (stride2_points(x, 2 * (size_t)s->tile.v))
        return stride2_points_run(ctx, s, o, w, g, x, (cl_uint)add);
    if (gemm_cpu_phase_pixels_pay(x->c))
        return phase_pixels(ctx, s, o, w, g, x, (cl_uint)add);
    size_t nr = 2 * (size_t)s->tile.v, slot = o * most * most * nr;
    for (size_t ph = 0; ph < x->s * x->s; ph++)
        panels += (phase_inputs(x, ph) + nr - 1) / nr;
    size_t items = gemm_slot_items(ctx, panels), count = o * x->c * x->k * x->k;
    st = gemm_scratch(ctx, 0, count * sizeof(float), &wp);
    if (st == KILN_OK)
        st = gemm_scratch(ctx, 1, (items ? items : 1) * (slot ? slot : 1) * sizeof(float), &slots);
    if (st == KILN_OK)
        st = gemm_kernel(ctx, s, "phase_weights", &weights);
    if (st == KILN_OK)
        st = gemm_kernel(ctx, s, "conv_phase_tiles", &tiles_kernel);
    if (st != KILN_OK)
        return st;
    cl_uint N = (cl_uint)x->n, C = (cl_uint)x->c, H = (cl_uint)x->h, W = (cl_uint)x->w,
            O = (cl_uint)o, OH = (cl_uint)x->oh, OW = (cl_uint)x->ow, K = (cl_uint)x->k,
            S = (cl_uint)x->s, P = (cl_uint)x->p, D = (cl_uint)x->d;
    cl_ulong sl = slot;
    cl_uint adds = (cl_uint)add;
    st = launch_tiles(ctx, weights, "phase_weights", x->k * x->k,
                      (o + PHASE_PANEL_O - 1) / PHASE_PANEL_O, KARG(w), KARG(wp), KARG(O),
                      KARG(C), KARG(K), KARG(S), KARG(P), KARG(D));
    return st != KILN_OK || items == 0
               ? st
               : launch_1d(ctx, tiles_kernel, "conv_phase_tiles", items, 1, KARG(wp),
                           KARG(g), KARG(x->x), KARG(slots), KARG(N), KARG(C), KARG(H),
                           KARG(W), KARG(O), KARG(OH), KARG(OW), KARG(K), KARG(S), KARG(P),
                           KARG(D), KARG(sl), KARG(adds));
}
