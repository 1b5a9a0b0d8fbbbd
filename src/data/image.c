/* PNG and JPEG decoding, channel conversion, PIL's bilinear resampling and
 * torchvision's augmentations (see image.h). Decoders read from memory and
 * report every failure as an error naming the file; libpng and libjpeg
 * report theirs by longjmp, so the state a jump must not lose lives on
 * the heap. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jpeglib.h>
#include <png.h>

#include "data/image.h"

void image_free(image *im)
{
    if (im) {
        free(im->pixels);
        im->pixels = NULL;
    }
}

/* Width and height from a header: neither 0, at most IMAGE_MAX_PIXELS. */
static kiln_status check_size(const char *name, uint64_t w, uint64_t h)
{
    if (w == 0 || h == 0)
        return error_set(KILN_ERR_IO, "%s: the image has 0 pixels (%llu x %llu)", name,
                         (unsigned long long)w, (unsigned long long)h);
    if (w * h > IMAGE_MAX_PIXELS)
        return error_set(KILN_ERR_IO, "%s: the image declares %llu x %llu pixels, more than "
                                      "kiln decodes (%llu pixels)",
                         name, (unsigned long long)w, (unsigned long long)h,
                         (unsigned long long)IMAGE_MAX_PIXELS);
    return KILN_OK;
}

/* ---- PNG ------------------------------------------------------------------- */

typedef struct {
    const unsigned char *data;
    size_t size, at;
    jmp_buf jump;
    char message[256];
    kiln_status st;          /* a failure found before the jump (size limits) */
    unsigned char *pixels;   /* owned until handed to the image */
    png_bytep *rows;
} png_state;

static void png_on_error(png_structp p, png_const_charp msg)
{
    png_state *s = png_get_error_ptr(p);
    snprintf(s->message, sizeof s->message, "%s", msg);
    longjmp(s->jump, 1);
}

static void png_on_warning(png_structp p, png_const_charp msg)
{
    (void)p, (void)msg; /* ancillary chunks' complaints: the pixels are whole */
}

static void png_from_memory(png_structp p, png_bytep out, png_size_t n)
{
    png_state *s = png_get_io_ptr(p);
    if (n > s->size - s->at)
        png_error(p, "the file ends early (truncated)");
    memcpy(out, s->data + s->at, n);
    s->at += n;
}

/* Asks libpng for 8-bit gray or RGB, whatever the file holds. */
static void png_ask_8bit(png_structp p, png_infop info)
{
    int depth = png_get_bit_depth(p, info), type = png_get_color_type(p, info);
    if (depth == 16)
        png_set_scale_16(p);
    if (type == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(p);
    if (type == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(p);
    if (type & PNG_COLOR_MASK_ALPHA)
        png_set_strip_alpha(p);
    png_set_interlace_handling(p);
    png_read_update_info(p, info);
}

static void png_body(png_structp p, png_infop info, png_state *s, const char *name, image *out)
{
    png_set_read_fn(p, s, png_from_memory);
    png_read_info(p, info);
    png_uint_32 w = png_get_image_width(p, info), h = png_get_image_height(p, info);
    if ((s->st = check_size(name, w, h)) != KILN_OK)
        return;
    png_ask_8bit(p, info);
    int channels = png_get_channels(p, info);
    size_t row = png_get_rowbytes(p, info);
    if ((channels != 1 && channels != 3) || row != (size_t)w * (size_t)channels)
        png_error(p, "unexpected layout after conversion to 8-bit gray or RGB");
    s->pixels = malloc(row * h);
    s->rows = malloc(h * sizeof *s->rows);
    if (!s->pixels || !s->rows) {
        s->st = error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory for %u x %u pixels", name,
                          (unsigned)w, (unsigned)h);
        return;
    }
    for (png_uint_32 y = 0; y < h; y++)
        s->rows[y] = s->pixels + y * row;
    png_read_image(p, s->rows);
    *out = (image){(int)w, (int)h, channels, s->pixels};
    s->pixels = NULL;
}

static kiln_status png_decode(const unsigned char *data, size_t size, const char *name,
                              image *out)
{
    png_state *s = calloc(1, sizeof *s);
    if (!s)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", name);
    s->data = data;
    s->size = size;
    png_structp p = png_create_read_struct(PNG_LIBPNG_VER_STRING, s, png_on_error,
                                           png_on_warning);
    png_infop info = p ? png_create_info_struct(p) : NULL;
    kiln_status st = KILN_OK;
    if (!info)
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory for the PNG decoder", name);
    else if (setjmp(s->jump) == 0)
        png_body(p, info, s, name, out);
    else
        st = error_set(KILN_ERR_IO, "%s: not a valid PNG: %s", name, s->message);
    if (st == KILN_OK)
        st = s->st;
    png_destroy_read_struct(&p, info ? &info : NULL, NULL);
    free(s->pixels);
    free(s->rows);
    free(s);
    return st;
}

/* ---- JPEG ------------------------------------------------------------------ */

/* Progressive files may hold thousands of tiny scans, each costing a pass
 * over the image: more than this is taken as corrupt. */
#define JPEG_MAX_SCANS 500

typedef struct {
    struct jpeg_error_mgr err;
    struct jpeg_progress_mgr progress;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
    kiln_status st;
    unsigned char *pixels;
} jpeg_state;

static void jpeg_on_error(j_common_ptr c)
{
    jpeg_state *s = (jpeg_state *)c->err;
    c->err->format_message(c, s->message);
    longjmp(s->jump, 1);
}

/* libjpeg only warns of truncated or corrupt data (and fills the rest with
 * gray): every warning is an error here. */
static void jpeg_on_message(j_common_ptr c, int level)
{
    if (level < 0)
        jpeg_on_error(c);
}

static void jpeg_on_progress(j_common_ptr c)
{
    jpeg_state *s = (jpeg_state *)c->err;
    if (c->is_decompressor && ((j_decompress_ptr)c)->input_scan_number > JPEG_MAX_SCANS) {
        snprintf(s->message, sizeof s->message, "more than %d scans", JPEG_MAX_SCANS);
        longjmp(s->jump, 1);
    }
}

static void jpeg_body(j_decompress_ptr c, jpeg_state *s, const unsigned char *data, size_t size,
                      const char *name, image *out)
{
    jpeg_mem_src(c, data, (unsigned long)size);
    jpeg_read_header(c, TRUE);
    if ((s->st = check_size(name, c->image_width, c->image_height)) != KILN_OK)
        return;
    if (c->num_components != 1 && c->num_components != 3) {
        s->st = error_set(KILN_ERR_IO, "%s: a JPEG of %d components (CMYK?); kiln reads gray "
                                       "and colour (YCbCr or RGB) JPEGs", name,
                          c->num_components);
        return;
    }
    c->out_color_space = c->num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(c);
    size_t row = (size_t)c->output_width * (size_t)c->output_components;
    if (!(s->pixels = malloc(row * c->output_height))) {
        s->st = error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory for %u x %u pixels", name,
                          (unsigned)c->output_width, (unsigned)c->output_height);
        return;
    }
    while (c->output_scanline < c->output_height) {
        JSAMPROW line = s->pixels + row * c->output_scanline;
        jpeg_read_scanlines(c, &line, 1);
    }
    jpeg_finish_decompress(c);
    *out = (image){(int)c->output_width, (int)c->output_height, c->output_components,
                   s->pixels};
    s->pixels = NULL;
}

static kiln_status jpeg_decode(const unsigned char *data, size_t size, const char *name,
                               image *out)
{
    jpeg_state *s = calloc(1, sizeof *s);
    struct jpeg_decompress_struct *c = calloc(1, sizeof *c);
    if (!s || !c) {
        free(s);
        free(c);
        return error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", name);
    }
    c->err = jpeg_std_error(&s->err);
    s->err.error_exit = jpeg_on_error;
    s->err.emit_message = jpeg_on_message;
    s->progress.progress_monitor = jpeg_on_progress;
    kiln_status st = KILN_OK;
    if (setjmp(s->jump) == 0) {
        jpeg_create_decompress(c);
        c->progress = &s->progress;
        jpeg_body(c, s, data, size, name, out);
        st = s->st;
    } else {
        st = error_set(KILN_ERR_IO, "%s: not a valid JPEG: %s", name, s->message);
    }
    jpeg_destroy_decompress(c);
    free(s->pixels);
    free(s);
    free(c);
    return st;
}

/* ---- files ----------------------------------------------------------------- */

kiln_status image_decode(const unsigned char *data, size_t size, const char *name, image *out)
{
    static const unsigned char png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    *out = (image){0};
    if (size >= 8 && memcmp(data, png_magic, 8) == 0)
        return png_decode(data, size, name, out);
    if (size >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff)
        return jpeg_decode(data, size, name, out);
    return error_set(KILN_ERR_IO, "%s: not a PNG or JPEG image (%s)", name,
                     size == 0 ? "the file is empty" : "its first bytes are neither's");
}

kiln_status image_read(const char *path, image *out)
{
    *out = (image){0};
    FILE *f = fopen(path, "rb");
    if (!f)
        return error_set(KILN_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    struct stat info;
    kiln_status st = KILN_OK;
    unsigned char *data = NULL;
    size_t size = 0;
    if (fstat(fileno(f), &info) != 0 || !S_ISREG(info.st_mode))
        st = error_set(KILN_ERR_IO, "%s: not a regular file", path);
    else if ((uint64_t)info.st_size > IMAGE_MAX_BYTES)
        st = error_set(KILN_ERR_IO, "%s: %lld bytes, more than kiln reads as one image (%zu)",
                       path, (long long)info.st_size, IMAGE_MAX_BYTES);
    else if (!(data = malloc((size_t)info.st_size + 1)))
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    else if ((size = fread(data, 1, (size_t)info.st_size + 1, f)) != (size_t)info.st_size)
        st = error_set(KILN_ERR_IO, "%s: cannot read (%s)", path,
                       ferror(f) ? strerror(errno) : "its size changed");
    fclose(f);
    if (st == KILN_OK)
        st = image_decode(data, size, path, out);
    free(data);
    return st;
}

kiln_status image_to_channels(image *im, int channels)
{
    if (im->channels == channels)
        return KILN_OK;
    size_t n = (size_t)im->width * (size_t)im->height;
    unsigned char *to = malloc(n * (size_t)channels), *from = im->pixels;
    if (!to)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "converting an image: out of memory");
    for (size_t i = 0; i < n; i++) {
        if (channels == 3) {
            to[3 * i] = to[3 * i + 1] = to[3 * i + 2] = from[i];
        } else { /* PIL: L = R * 299/1000 + G * 587/1000 + B * 114/1000, in 16-bit fixed point */
            unsigned r = from[3 * i], g = from[3 * i + 1], b = from[3 * i + 2];
            to[i] = (unsigned char)((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16);
        }
    }
    free(im->pixels);
    im->pixels = to;
    im->channels = channels;
    return KILN_OK;
}

/* ---- resampling ------------------------------------------------------------ */

/* PIL's precompute_coeffs for the bilinear (triangle) filter: for each of
 * out samples of the range [lo, hi) of an axis of in samples, the first
 * input it reads, how many, and their normalized weights (ksize each). */
typedef struct {
    int ksize;
    int *first, *count;
    float *w;
} coeffs;

static void coeffs_free(coeffs *c)
{
    free(c->first);
    free(c->count);
    free(c->w);
}

static int coeffs_make(int in, double lo, double hi, int out, coeffs *c)
{
    double scale = (hi - lo) / out, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale, ss = 1.0 / filterscale;
    c->ksize = (int)ceil(support) * 2 + 1;
    c->first = malloc((size_t)out * sizeof *c->first);
    c->count = malloc((size_t)out * sizeof *c->count);
    c->w = malloc((size_t)out * (size_t)c->ksize * sizeof *c->w);
    if (!c->first || !c->count || !c->w)
        return 0;
    for (int o = 0; o < out; o++) {
        double center = lo + (o + 0.5) * scale, total = 0;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        xmin = xmin < 0 ? 0 : xmin;
        xmax = (xmax > in ? in : xmax) - xmin;
        xmax = xmax > c->ksize ? c->ksize : xmax < 0 ? 0 : xmax;
        for (int pass = 0; pass < 2; pass++)
            for (int x = 0; x < xmax; x++) {
                double t = fabs((x + xmin - center + 0.5) * ss), k = t < 1.0 ? 1.0 - t : 0.0;
                if (pass == 0)
                    total += k;
                else
                    c->w[(size_t)o * (size_t)c->ksize + (size_t)x] =
                        (float)(total != 0 ? k / total : 0);
            }
        c->first[o] = xmin;
        c->count[o] = xmax;
    }
    return 1;
}

kiln_status image_resample(const image *im, double x0, double y0, double x1, double y1, int ow,
                           int oh, float *dst)
{
    int ch = im->channels;
    coeffs h = {0}, v = {0};
    float *rows = NULL;
    int ok = ow > 0 && oh > 0 && coeffs_make(im->width, x0, x1, ow, &h) && coeffs_make(im->height, y0, y1, oh, &v);
    int top = ok ? v.first[0] : 0, bottom = ok ? v.first[oh - 1] + v.count[oh - 1] : 0;
    if (ok && bottom > top)
        ok = (rows = malloc((size_t)(bottom - top) * (size_t)ow * (size_t)ch * sizeof *rows)) !=
             NULL;
    for (int y = top; ok && y < bottom; y++) { /* horizontal pass over the rows needed */
        const unsigned char *src = im->pixels + (size_t)y * (size_t)im->width * (size_t)ch;
        float *to = rows + (size_t)(y - top) * (size_t)ow * (size_t)ch;
        for (int o = 0; o < ow; o++) {
            const float *w = h.w + (size_t)o * (size_t)h.ksize;
            const unsigned char *s = src + (size_t)h.first[o] * (size_t)ch;
            for (int c = 0; c < ch; c++) {
                float sum = 0;
                for (int k = 0; k < h.count[o]; k++)
                    sum += w[k] * s[k * ch + c];
                to[o * ch + c] = sum;
            }
        }
    }
    for (int o = 0; ok && o < oh; o++) { /* vertical pass */
        const float *w = v.w + (size_t)o * (size_t)v.ksize;
        float *to = dst + (size_t)o * (size_t)ow * (size_t)ch;
        for (int i = 0; i < ow * ch; i++)
            to[i] = 0;
        for (int k = 0; k < v.count[o]; k++) {
            const float *s = rows + (size_t)(v.first[o] + k - top) * (size_t)ow * (size_t)ch;
            for (int i = 0; i < ow * ch; i++)
                to[i] += w[k] * s[i];
        }
    }
    coeffs_free(&h);
    coeffs_free(&v);
    free(rows);
    return ok ? KILN_OK
              : error_set(KILN_ERR_OUT_OF_MEMORY, "resizing an image of %d x %d to %d x %d: out "
                                                  "of memory",
                          im->width, im->height, ow, oh);
}

/* ---- one sample ------------------------------------------------------------- */

int image_round_even(double x)
{
    double r = floor(x + 0.5);
    if (r - x == 0.5 && fmod(r, 2.0) != 0)
        r -= 1;
    return (int)r;
}

/* An integer from lo to hi, both included (torch.randint(lo, hi + 1)). */
static int draw_int(kiln_rng *rng, int lo, int hi)
{
    return hi <= lo ? lo : lo + (int)(rng_next(rng) % (uint64_t)(hi - lo + 1));
}

/* torchvision's RandomResizedCrop.get_params: ten tries at a box of a
 * drawn area and aspect ratio, else the whole image clamped to the ratios. */
static void resized_crop_box(const image_transform *t, kiln_rng *rng, int W, int H, int box[4])
{
    double area = (double)W * H, lr0 = log(t->rrc_ratio[0]), lr1 = log(t->rrc_ratio[1]);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * rng_uniform(rng, t->rrc_scale[0], t->rrc_scale[1]);
        double ratio = exp(rng_uniform(rng, lr0, lr1));
        int w = image_round_even(sqrt(target * ratio)), h = image_round_even(sqrt(target / ratio));
        if (0 < w && w <= W && 0 < h && h <= H) {
            box[1] = draw_int(rng, 0, H - h), box[0] = draw_int(rng, 0, W - w);
            box[2] = w, box[3] = h;
            return;
        }
    }
    double in_ratio = (double)W / H;
    int w = W, h = H;
    if (in_ratio < t->rrc_ratio[0])
        h = image_round_even(w / t->rrc_ratio[0]);
    else if (in_ratio > t->rrc_ratio[1])
        w = image_round_even(h * t->rrc_ratio[1]);
    box[0] = (W - w) / 2, box[1] = (H - h) / 2, box[2] = w, box[3] = h;
}

/* Copies the oh x ow window at (top, left) of src (sh x sw, interleaved
 * channels, 0 to 255) into dst as channel planes scaled to [0, 1]; what
 * lies outside src is 0 (torchvision's padding). */
static void place(const float *src, int sh, int sw, int ch, int top, int left, int oh, int ow,
                  float *dst)
{
    for (int c = 0; c < ch; c++)
        for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++) {
                int sy = y + top, sx = x + left;
                int in = sy >= 0 && sy < sh && sx >= 0 && sx < sw;
                dst[((size_t)c * (size_t)oh + (size_t)y) * (size_t)ow + (size_t)x] =
                    in ? src[((size_t)sy * (size_t)sw + (size_t)sx) * (size_t)ch + (size_t)c] /
                             255.0f
                       : 0.0f;
            }
}

static void flip(float *x, int ch, int oh, int ow)
{
    for (int r = 0; r < ch * oh; r++)
        for (int a = 0, b = ow - 1; a < b; a++, b--) {
            float v = x[(size_t)r * (size_t)ow + (size_t)a];
            x[(size_t)r * (size_t)ow + (size_t)a] = x[(size_t)r * (size_t)ow + (size_t)b];
            x[(size_t)r * (size_t)ow + (size_t)b] = v;
        }
}

static float clamp01(float v)
{
    return v < 0 ? 0 : v > 1 ? 1 : v;
}

/* ColorJitter's brightness and contrast, in an order drawn as torchvision
 * draws it: brightness scales, contrast blends with the mean gray
 * (0.2989 R + 0.587 G + 0.114 B), both clamped to [0, 1]. */
static void jitter(const image_transform *t, kiln_rng *rng, float *x, int ch, size_t plane)
{
    double b = t->brightness ? rng_uniform(rng, fmax(0, 1 - t->brightness),
                                           1 + t->brightness) : 1;
    double c = t->contrast ? rng_uniform(rng, fmax(0, 1 - t->contrast), 1 + t->contrast)
                           : 1;
    int contrast_first = rng_next(rng) & 1;
    for (int pass = 0; pass < 2; pass++) {
        if ((pass == 0) == !contrast_first) {
            for (size_t i = 0; i < plane * (size_t)ch; i++)
                x[i] = clamp01((float)b * x[i]);
            continue;
        }
        double mean = 0;
        for (size_t i = 0; i < plane; i++)
            mean += ch == 3 ? 0.2989 * x[i] + 0.587 * x[plane + i] + 0.114 * x[2 * plane + i]
                            : x[i];
        mean /= (double)plane;
        for (size_t i = 0; i < plane * (size_t)ch; i++)
            x[i] = clamp01((float)(c * x[i] + (1 - c) * mean));
    }
}

kiln_status image_render(const image *im, const image_transform *t, int augment, kiln_rng *rng,
                         int oh, int ow, float *dst)
{
    int ch = im->channels, W = im->width, H = im->height, box[4] = {0, 0, W, H};
    int sw, sh, top, left;
    if (augment && t->rrc_scale[1] > 0) {
        resized_crop_box(t, rng, W, H, box);
        sw = ow, sh = oh;
    } else { /* Resize(S): the shorter side to S, the longer scaled and truncated */
        int s = t->resize ? t->resize : (oh > ow ? oh : ow);
        double lw = W <= H ? s : (double)s * W / H, lh = W <= H ? (double)s * H / W : s;
        if (lw * lh > (double)IMAGE_MAX_PIXELS)
            return error_set(KILN_ERR_SHAPE, "resizing an image of %d x %d to a shorter side of "
                                             "%d makes more than %llu pixels",
                             W, H, s, (unsigned long long)IMAGE_MAX_PIXELS);
        sw = (int)lw, sh = (int)lh;
        sw = sw < 1 ? 1 : sw, sh = sh < 1 ? 1 : sh;
    }
    float *resized = malloc((size_t)sw * (size_t)sh * (size_t)ch * sizeof *resized);
    if (!resized)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "rendering an image: out of memory");
    kiln_status st = KILN_OK;
    if (box[2] == sw && box[3] == sh && box[0] == 0 && box[1] == 0)
        for (size_t i = 0; i < (size_t)sw * (size_t)sh * (size_t)ch; i++)
            resized[i] = im->pixels[i]; /* the same size: PIL's resize is the identity */
    else
        st = image_resample(im, box[0], box[1], box[0] + box[2], box[1] + box[3], sw, sh,
                            resized);
    if (augment && t->rrc_scale[1] > 0) {
        top = left = 0;
    } else if (augment && t->crop_size) { /* RandomCrop: pad, then a window anywhere */
        int p = t->crop_pad;
        top = draw_int(rng, 0, sh + 2 * p - oh) - p;
        left = draw_int(rng, 0, sw + 2 * p - ow) - p;
    } else { /* CenterCrop: pads first when the crop is larger */
        top = sh >= oh ? image_round_even((sh - oh) / 2.0) : -((oh - sh) / 2);
        left = sw >= ow ? image_round_even((sw - ow) / 2.0) : -((ow - sw) / 2);
    }
    if (st == KILN_OK)
        place(resized, sh, sw, ch, top, left, oh, ow, dst);
    free(resized);
    if (st == KILN_OK && augment && t->flip && rng_uniform(rng, 0, 1) < 0.5)
        flip(dst, ch, oh, ow);
    if (st == KILN_OK && augment && (t->brightness > 0 || t->contrast > 0))
        jitter(t, rng, dst, ch, (size_t)oh * (size_t)ow);
    return st;
}
