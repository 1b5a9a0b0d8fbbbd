/* Image folders: PNGs of every colour type and depth written with libpng
 * and JPEGs written with libjpeg in the test, resampling against values
 * worked out by hand from PIL's filter, channel conversion as PIL's,
 * every kind of bad file refused with its name (or skipped and counted),
 * the folder layouts and their errors, and augmentations that are seeded,
 * reproducible and for training only. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utime.h>

#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

#include "harness.h"
#include "data/folder.h"

static const char *tmp_path(const char *name)
{
    static char path[8][512];
    static int next;
    next = (next + 1) % 8;
    snprintf(path[next], sizeof path[next], "%s/%s", test_tmpdir(), name);
    return path[next];
}

static void make_dir(const char *path)
{
    mkdir(path, 0755);
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

static unsigned char *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = test_alloc(*n + 1);
    ck_assert_uint_eq(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

/* A PNG of any colour type and depth; data holds h rows of rowbytes. */
static void write_png(const char *path, int w, int h, int type, int depth, const void *data,
                      int interlace)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(p);
    ck_assert(setjmp(png_jmpbuf(p)) == 0);
    png_init_io(p, f);
    png_set_IHDR(p, info, (png_uint_32)w, (png_uint_32)h, depth, type,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (type == PNG_COLOR_TYPE_PALETTE) {
        png_color palette[2] = {{10, 20, 30}, {200, 100, 50}};
        png_set_PLTE(p, info, palette, 2);
    }
    png_write_info(p, info);
    size_t row = png_get_rowbytes(p, info);
    png_bytep *rows = test_alloc((size_t)h * sizeof *rows);
    for (int y = 0; y < h; y++)
        rows[y] = (png_bytep)data + (size_t)y * row;
    png_write_image(p, rows);
    png_write_end(p, NULL);
    png_destroy_write_struct(&p, &info);
    free(rows);
    fclose(f);
}

static void write_gray(const char *path, int w, int h, const unsigned char *px)
{
    write_png(path, w, h, PNG_COLOR_TYPE_GRAY, 8, px, 0);
}

static void write_jpeg(const char *path, int w, int h, int components, const unsigned char *px)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = components;
    c.in_color_space = components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 100, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)px + (size_t)c.next_scanline * (size_t)(w * components);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(f);
}

static image read_ok(const char *path)
{
    image im;
    check_ok(image_read(path, &im));
    return im;
}

/* ---- decoding ---------------------------------------------------------------- */

START_TEST(png_colour_types_and_depths_decode_to_8_bit)
{
    unsigned char gray[6] = {0, 50, 100, 150, 200, 255};
    write_gray(tmp_path("g8.png"), 3, 2, gray);
    image im = read_ok(tmp_path("g8.png"));
    ck_assert_int_eq(im.channels, 1);
    ck_assert_int_eq(im.width, 3);
    ck_assert_int_eq(im.height, 2);
    ck_assert_mem_eq(im.pixels, gray, 6);
    image_free(&im);

    /* 16 bits scaled (rounded) to 8: 0xffff 255, 0x8080 128, 0x0101 1 */
    unsigned char g16[6] = {0xff, 0xff, 0x80, 0x80, 0x01, 0x01};
    write_png(tmp_path("g16.png"), 3, 1, PNG_COLOR_TYPE_GRAY, 16, g16, 0);
    im = read_ok(tmp_path("g16.png"));
    ck_assert_int_eq(im.pixels[0], 255);
    ck_assert_int_eq(im.pixels[1], 128);
    ck_assert_int_eq(im.pixels[2], 1);
    image_free(&im);

    unsigned char g1[1] = {0xa0}; /* 1 0 1 0 */
    write_png(tmp_path("g1.png"), 4, 1, PNG_COLOR_TYPE_GRAY, 1, g1, 0);
    im = read_ok(tmp_path("g1.png"));
    unsigned char want1[4] = {255, 0, 255, 0};
    ck_assert_mem_eq(im.pixels, want1, 4);
    image_free(&im);

    unsigned char rgba[8] = {1, 2, 3, 0, 4, 5, 6, 255}; /* alpha dropped, not applied */
    write_png(tmp_path("rgba.png"), 2, 1, PNG_COLOR_TYPE_RGB_ALPHA, 8, rgba, 0);
    im = read_ok(tmp_path("rgba.png"));
    unsigned char want_rgb[6] = {1, 2, 3, 4, 5, 6};
    ck_assert_int_eq(im.channels, 3);
    ck_assert_mem_eq(im.pixels, want_rgb, 6);
    image_free(&im);

    unsigned char ga[4] = {7, 0, 9, 128};
    write_png(tmp_path("ga.png"), 2, 1, PNG_COLOR_TYPE_GRAY_ALPHA, 8, ga, 0);
    im = read_ok(tmp_path("ga.png"));
    ck_assert_int_eq(im.channels, 1);
    ck_assert_int_eq(im.pixels[0], 7);
    ck_assert_int_eq(im.pixels[1], 9);
    image_free(&im);

    unsigned char pal[1] = {0x40}; /* 2 pixels of 1 bit: 0 1 */
    write_png(tmp_path("pal.png"), 2, 1, PNG_COLOR_TYPE_PALETTE, 1, pal, 0);
    im = read_ok(tmp_path("pal.png"));
    unsigned char want_pal[6] = {10, 20, 30, 200, 100, 50};
    ck_assert_int_eq(im.channels, 3);
    ck_assert_mem_eq(im.pixels, want_pal, 6);
    image_free(&im);

    unsigned char big[9 * 7];
    for (int i = 0; i < 9 * 7; i++)
        big[i] = (unsigned char)(i * 3);
    write_png(tmp_path("interlaced.png"), 9, 7, PNG_COLOR_TYPE_GRAY, 8, big, 1);
    im = read_ok(tmp_path("interlaced.png"));
    ck_assert_mem_eq(im.pixels, big, sizeof big);
    image_free(&im);
}
END_TEST

START_TEST(jpeg_gray_and_colour_decode)
{
    unsigned char gray[16 * 8], rgb[16 * 8 * 3];
    for (int i = 0; i < 16 * 8; i++) {
        gray[i] = 90;
        rgb[3 * i] = 200, rgb[3 * i + 1] = 40, rgb[3 * i + 2] = 120;
    }
    write_jpeg(tmp_path("g.jpg"), 16, 8, 1, gray);
    write_jpeg(tmp_path("c.jpg"), 16, 8, 3, rgb);
    image g = read_ok(tmp_path("g.jpg")), c = read_ok(tmp_path("c.jpg"));
    ck_assert_int_eq(g.channels, 1);
    ck_assert_int_eq(c.channels, 3);
    ck_assert_int_eq(c.width, 16);
    ck_assert_int_eq(c.height, 8);
    for (int i = 0; i < 16 * 8; i++) {
        ck_assert_int_le(abs(g.pixels[i] - 90), 1);
        for (int k = 0; k < 3; k++)
            ck_assert_int_le(abs(c.pixels[3 * i + k] - rgb[k]), 2);
    }
    image_free(&g);
    image_free(&c);
}
END_TEST

START_TEST(channels_convert_as_pil_does)
{
    /* PIL's convert("L") of pure red, green, blue and white: 76, 150, 29, 255 */
    unsigned char rgb[12] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255};
    image im = {4, 1, 3, test_alloc(12)};
    memcpy(im.pixels, rgb, 12);
    check_ok(image_to_channels(&im, 1));
    unsigned char want[4] = {76, 150, 29, 255};
    ck_assert_mem_eq(im.pixels, want, 4);
    check_ok(image_to_channels(&im, 3)); /* gray replicated */
    unsigned char back[12] = {76, 76, 76, 150, 150, 150, 29, 29, 29, 255, 255, 255};
    ck_assert_mem_eq(im.pixels, back, 12);
    image_free(&im);
}
END_TEST

/* ---- resampling --------------------------------------------------------------- */

START_TEST(resize_matches_values_worked_from_pils_filter)
{
    /* 4 -> 2, scale 2, support 2: weights .75 .75 .25 over 1.75;
     * (100 .75 + 200 .25) / 1.75 and (100 .25 + 200 .75 + 255 .75) / 1.75 */
    unsigned char row[4] = {0, 100, 200, 255};
    image im = {4, 1, 1, row};
    float out[4];
    check_ok(image_resample(&im, 0, 0, 4, 1, 2, 1, out));
    double want[2] = {125.0 / 1.75, 366.25 / 1.75};
    check_close(out, want, 2, 1e-4, 1e-6, "4 -> 2");
    /* 2 -> 4, upsampling: the triangle of width 1, edges clamped */
    image two = {2, 1, 1, row + 0};
    unsigned char pair[2] = {0, 100};
    two.pixels = pair;
    check_ok(image_resample(&two, 0, 0, 2, 1, 4, 1, out));
    double up[4] = {0, 25, 75, 100};
    check_close(out, up, 4, 1e-4, 1e-6, "2 -> 4");
    /* both axes: 4 x 4 rows of the same -> 2 x 2 rows of the 4 -> 2 values */
    unsigned char sq[16];
    for (int i = 0; i < 16; i++)
        sq[i] = row[i % 4];
    image square = {4, 4, 1, sq};
    check_ok(image_resample(&square, 0, 0, 4, 4, 2, 2, out));
    double both[4] = {want[0], want[1], want[0], want[1]};
    check_close(out, both, 4, 1e-4, 1e-6, "4x4 -> 2x2");
    ck_assert_int_eq(image_round_even(0.5), 0);
    ck_assert_int_eq(image_round_even(1.5), 2);
    ck_assert_int_eq(image_round_even(2.5), 2);
    ck_assert_int_eq(image_round_even(-0.5), 0);
}
END_TEST

START_TEST(resize_then_center_crop_as_torchvision)
{
    /* 6 x 4 with value 10 x: Resize(2) gives 3 x 2 (7.142857, 25, 42.857143
     * per row), CenterCrop(2) starts at round(0.5) = 0 */
    unsigned char px[24];
    for (int i = 0; i < 24; i++)
        px[i] = (unsigned char)(10 * (i % 6));
    image im = {6, 4, 1, px};
    image_transform t = {0};
    float out[4];
    check_ok(image_render(&im, &t, 0, NULL, 2, 2, out));
    double want[4] = {12.5 / 1.75 / 255, 25.0 / 255, 12.5 / 1.75 / 255, 25.0 / 255};
    check_close(out, want, 4, 1e-6, 1e-5, "Resize(2) + CenterCrop(2)");
    /* a crop larger than the image pads with zeros around it */
    image one = {1, 1, 1, px + 5};
    t.resize = 1;
    float big[9];
    check_ok(image_render(&one, &t, 0, NULL, 3, 3, big));
    double pad[9] = {0, 0, 0, 0, 50.0 / 255, 0, 0, 0, 0};
    check_close(big, pad, 9, 1e-6, 0, "CenterCrop(3) of one pixel");
}
END_TEST

/* ---- augmentation ---------------------------------------------------------------- */

START_TEST(augmentations_are_seeded_and_stay_in_range)
{
    unsigned char px[8 * 8];
    for (int i = 0; i < 64; i++)
        px[i] = (unsigned char)(4 * i);
    image im = {8, 8, 1, px};
    image_transform t = {.crop_size = 8, .crop_pad = 2, .flip = 1, .brightness = 0.4,
                         .contrast = 0.4};
    float a[64], b[64], plain[64];
    check_ok(image_render(&im, &t, 0, NULL, 8, 8, plain));
    for (int i = 0; i < 64; i++)
        ck_assert_float_eq_tol(plain[i], px[i] / 255.0f, 1e-6f);
    int differed = 0, zero_border = 0;
    for (uint64_t seed = 0; seed < 40; seed++) {
        kiln_rng r1, r2;
        rng_seed(&r1, seed);
        rng_seed(&r2, seed);
        check_ok(image_render(&im, &t, 1, &r1, 8, 8, a));
        check_ok(image_render(&im, &t, 1, &r2, 8, 8, b));
        ck_assert_mem_eq(a, b, sizeof a);
        differed += memcmp(a, plain, sizeof a) != 0;
        for (int i = 0; i < 64; i++)
            ck_assert(a[i] >= 0 && a[i] <= 1);
        zero_border += a[0] == 0 && a[63] != 0;
    }
    ck_assert_int_ge(differed, 35);
    ck_assert_int_ge(zero_border, 1); /* padding shows at a corner */

    /* flip alone: every sample is the image or its mirror, and both occur */
    image_transform f = {.flip = 1};
    int mirrored = 0;
    for (uint64_t seed = 0; seed < 32; seed++) {
        kiln_rng r;
        rng_seed(&r, seed);
        check_ok(image_render(&im, &f, 1, &r, 8, 8, a));
        int same = memcmp(a, plain, sizeof a) == 0;
        for (int y = 0; !same && y < 8; y++)
            for (int x = 0; x < 8; x++)
                ck_assert_float_eq(a[y * 8 + x], plain[y * 8 + 7 - x]);
        mirrored += !same;
    }
    ck_assert(mirrored > 4 && mirrored < 28);

    /* random_resized_crop: any box resized to the output, different per draw */
    image_transform rrc = {.rrc_scale = {0.2, 1.0}, .rrc_ratio = {0.75, 4.0 / 3}};
    kiln_rng r;
    rng_seed(&r, 7);
    check_ok(image_render(&im, &rrc, 1, &r, 5, 5, a));
    check_ok(image_render(&im, &rrc, 1, &r, 5, 5, b));
    ck_assert(memcmp(a, b, 25 * sizeof *a) != 0);
}
END_TEST

/* ---- bad files ---------------------------------------------------------------------- */

static void refused(const char *path, const char *words)
{
    image im;
    kiln_status st = image_read(path, &im);
    ck_assert_msg(st != KILN_OK, "%s was read", path);
    ck_assert_msg(strstr(kiln_last_error(), path) != NULL, "no file name in: %s",
                  kiln_last_error());
    ck_assert_msg(strstr(kiln_last_error(), words) != NULL, "\"%s\" not in: %s", words,
                  kiln_last_error());
}

/* A PNG chunk with its CRC. */
static size_t png_chunk(unsigned char *out, const char *type, const unsigned char *data,
                        size_t n)
{
    out[0] = (unsigned char)(n >> 24), out[1] = (unsigned char)(n >> 16);
    out[2] = (unsigned char)(n >> 8), out[3] = (unsigned char)n;
    memcpy(out + 4, type, 4);
    if (n)
        memcpy(out + 8, data, n);
    uLong crc = crc32(crc32(0, NULL, 0), out + 4, (uInt)(n + 4));
    out[n + 8] = (unsigned char)(crc >> 24), out[n + 9] = (unsigned char)(crc >> 16);
    out[n + 10] = (unsigned char)(crc >> 8), out[n + 11] = (unsigned char)crc;
    return n + 12;
}

/* A PNG that declares w x h gray pixels and holds a few bytes of data. */
static size_t png_declaring(unsigned char *out, uint32_t w, uint32_t h)
{
    static const unsigned char magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    unsigned char ihdr[13] = {(unsigned char)(w >> 24), (unsigned char)(w >> 16),
                              (unsigned char)(w >> 8), (unsigned char)w,
                              (unsigned char)(h >> 24), (unsigned char)(h >> 16),
                              (unsigned char)(h >> 8), (unsigned char)h, 8, 0, 0, 0, 0};
    unsigned char idat[16];
    uLongf zn = sizeof idat;
    unsigned char zero[2] = {0, 0};
    ck_assert_int_eq(compress(idat, &zn, zero, 2), Z_OK);
    size_t n = 8;
    memcpy(out, magic, 8);
    n += png_chunk(out + n, "IHDR", ihdr, 13);
    n += png_chunk(out + n, "IDAT", idat, zn);
    n += png_chunk(out + n, "IEND", NULL, 0);
    return n;
}

START_TEST(bad_files_are_refused_with_their_names)
{
    unsigned char px[32 * 16];
    for (int i = 0; i < 32 * 16; i++)
        px[i] = (unsigned char)(i * 7);
    write_gray(tmp_path("ok.png"), 32, 16, px);
    write_jpeg(tmp_path("ok.jpg"), 32, 16, 1, px);
    size_t n, m;
    unsigned char *png = read_bytes(tmp_path("ok.png"), &n);
    unsigned char *jpg = read_bytes(tmp_path("ok.jpg"), &m);

    write_bytes(tmp_path("cut.png"), png, n / 2);
    refused(tmp_path("cut.png"), "truncated");
    png[n / 2] ^= 0x55; /* inside IDAT: its CRC no longer matches */
    write_bytes(tmp_path("corrupt.png"), png, n);
    refused(tmp_path("corrupt.png"), "not a valid PNG");
    write_bytes(tmp_path("cut.jpg"), jpg, m / 2);
    refused(tmp_path("cut.jpg"), "not a valid JPEG");
    write_bytes(tmp_path("notes.png"), "just some text\n", 15);
    refused(tmp_path("notes.png"), "not a PNG or JPEG");
    write_bytes(tmp_path("empty.jpg"), "", 0);
    refused(tmp_path("empty.jpg"), "empty");

    unsigned char made[128];
    write_bytes(tmp_path("zero.png"), made, png_declaring(made, 0, 5));
    refused(tmp_path("zero.png"), "zero");
    write_bytes(tmp_path("bomb.png"), made, png_declaring(made, 100000, 100000));
    refused(tmp_path("bomb.png"), "declares 100000 x 100000 pixels");

    for (size_t i = 0; i + 8 < m; i++) /* the JPEG's frame header: 65500 x 65500 */
        if (jpg[i] == 0xff && jpg[i + 1] == 0xc0) {
            jpg[i + 5] = jpg[i + 7] = 0xff;
            jpg[i + 6] = jpg[i + 8] = 0xdc;
            break;
        }
    write_bytes(tmp_path("bomb.jpg"), jpg, m);
    refused(tmp_path("bomb.jpg"), "declares 65500 x 65500 pixels");
    free(png);
    free(jpg);
}
END_TEST

/* ---- folders ---------------------------------------------------------------------- */

/* root/CLASS/k.png for each class, count images each, of 8 x 8 pixels
 * whose value tells the class and image. */
static void make_folder(const char *root, const char *const *classes, int n_classes, int count)
{
    char path[600];
    make_dir(root);
    for (int c = 0; c < n_classes; c++) {
        snprintf(path, sizeof path, "%s/%s", root, classes[c]);
        make_dir(path);
        for (int k = 0; k < count; k++) {
            unsigned char px[64];
            for (int i = 0; i < 64; i++)
                px[i] = (unsigned char)(40 * c + 3 * k + i % 3);
            snprintf(path, sizeof path, "%s/%s/%02d.png", root, classes[c], k);
            write_gray(path, 8, 8, px);
        }
    }
}

static folder_spec spec8(void)
{
    folder_spec s = {.channels = 1, .height = 8, .width = 8, .seed = 3};
    image_config_defaults(&s.cfg);
    s.cfg.workers = 2;
    return s;
}

START_TEST(folders_number_classes_as_imagefolder_does)
{
    static const char *const classes[] = {"zebra", "Ant", "cat"};
    make_folder(tmp_path("f1"), classes, 3, 4);
    folder_spec s = spec8();
    dataset d;
    check_ok(data_load_images(tmp_path("f1"), "train", &s, &d));
    ck_assert_uint_eq(d.count, 12);
    ck_assert_uint_eq(d.classes, 3);
    ck_assert_str_eq(d.class_names, "[\"Ant\",\"cat\",\"zebra\"]"); /* sorted as bytes */
    /* Ant (class 0) is the second class written: value 40 + 3 k */
    ck_assert_float_eq(d.y[0], 0);
    ck_assert_float_eq_tol(d.x[0], 40 / 255.0f, 1e-6f);
    ck_assert_float_eq(d.y[11], 2);
    ck_assert_float_eq_tol(d.x[11 * 64], (0 + 9) / 255.0f, 1e-6f);
    data_free(&d);

    /* streaming: the same samples, batch by batch, decoded ahead */
    dataset st;
    check_ok(data_load_folder(tmp_path("f1"), "test", &s, 0, &st));
    ck_assert_uint_eq(st.count, 0); /* no val/ folder: no test split */
    data_free(&st);
    check_ok(data_load_folder(tmp_path("f1"), "train", &s, 0, &st));
    check_ok(data_load_images(tmp_path("f1"), "train", &s, &d));
    float x[5 * 64], y[5];
    for (size_t first = 0; first < 12; first += 5) {
        size_t n = 12 - first < 5 ? 12 - first : 5;
        check_ok(data_gather(&st, NULL, first, n, x, y));
        ck_assert_mem_eq(x, d.x + first * 64, n * 64 * sizeof *x); /* not augmented */
        for (size_t i = 0; i < n; i++)
            ck_assert_float_eq(y[i], d.y[first + i]);
    }
    double sums[2] = {0, 0}, want = 0;
    data_sums(&st, 1, sums);
    for (size_t i = 0; i < 12 * 64; i++)
        want += d.x[i];
    ck_assert_double_eq_tol(sums[0], want, 1e-6);
    data_free(&d);
    data_free(&st);
}
END_TEST

START_TEST(folders_mix_png_and_jpeg_gray_and_colour)
{
    static const char *const classes[] = {"a", "b"};
    make_folder(tmp_path("f6"), classes, 2, 2);
    unsigned char rgb[16 * 16 * 3];
    for (int i = 0; i < 16 * 16; i++)
        rgb[3 * i] = 200, rgb[3 * i + 1] = 100, rgb[3 * i + 2] = 50;
    char path[600];
    snprintf(path, sizeof path, "%s/b/photo.jpg", tmp_path("f6")); /* colour, 16 x 16 */
    write_jpeg(path, 16, 16, 3, rgb);
    folder_spec s = spec8();
    dataset d;
    check_ok(data_load_images(tmp_path("f6"), "train", &s, &d));
    ck_assert_uint_eq(d.count, 5);
    ck_assert_float_eq(d.y[4], 1);
    ck_assert_str_eq(d.files[4] + strlen(d.files[4]) - 9, "photo.jpg");
    /* luminance of (200, 100, 50): 124.2, flat, so any resize keeps it */
    for (int i = 0; i < 64; i++)
        ck_assert_float_eq_tol(d.x[4 * 64 + i], 124 / 255.0f, 2.5f / 255);
    data_free(&d);
    s.channels = 3; /* the gray PNGs replicated into three planes */
    check_ok(data_load_images(tmp_path("f6"), "train", &s, &d));
    ck_assert_uint_eq(d.features, 3 * 64);
    ck_assert_float_eq(d.x[0], d.x[64]);
    ck_assert_float_eq(d.x[0], d.x[128]);
    ck_assert_float_eq_tol(d.x[4 * 192], 200 / 255.0f, 3.0f / 255);
    ck_assert_float_eq_tol(d.x[4 * 192 + 128], 50 / 255.0f, 3.0f / 255);
    data_free(&d);
}
END_TEST

START_TEST(train_and_val_folders_share_the_classes)
{
    static const char *const classes[] = {"a", "b", "c"};
    char root[512], dir[600];
    snprintf(root, sizeof root, "%s", tmp_path("f2"));
    make_dir(root);
    snprintf(dir, sizeof dir, "%s/train", root);
    make_folder(dir, classes, 3, 2);
    snprintf(dir, sizeof dir, "%s/val", root);
    make_folder(dir, classes + 1, 2, 1); /* b and c only: still classes 1 and 2 */
    folder_spec s = spec8();
    dataset d;
    check_ok(data_load_folder(root, "test", &s, 1, &d));
    ck_assert_uint_eq(d.count, 2);
    ck_assert_float_eq(d.y[0], 1);
    ck_assert_float_eq(d.y[1], 2);
    data_free(&d);
    snprintf(dir, sizeof dir, "%s/val/dog", root); /* a class train/ lacks */
    make_dir(dir);
    ck_assert_int_ne(data_load_folder(root, "test", &s, 1, &d), KILN_OK);
    ck_assert_ptr_nonnull(strstr(kiln_last_error(), "val/dog"));
}
END_TEST

START_TEST(folder_errors_name_the_folder_or_file)
{
    static const char *const classes[] = {"a", "b"};
    folder_spec s = spec8();
    dataset d;
    make_dir(tmp_path("f3"));
    ck_assert_int_ne(data_load_folder(tmp_path("f3"), "train", &s, 0, &d), KILN_OK);
    ck_assert_ptr_nonnull(strstr(kiln_last_error(), "no class folders"));
    make_folder(tmp_path("f3"), classes, 2, 2);
    char path[600];
    snprintf(path, sizeof path, "%s/empty", tmp_path("f3"));
    make_dir(path);
    ck_assert_int_ne(data_load_folder(tmp_path("f3"), "train", &s, 0, &d), KILN_OK);
    ck_assert_ptr_nonnull(strstr(kiln_last_error(), path));
    ck_assert_ptr_nonnull(strstr(kiln_last_error(), "empty class folder"));
    rmdir(path);
    snprintf(path, sizeof path, "%s/b/notes.txt", tmp_path("f3"));
    write_bytes(path, "not a picture", 13);
    ck_assert_int_ne(data_load_folder(tmp_path("f3"), "train", &s, 0, &d), KILN_OK);
    ck_assert_ptr_nonnull(strstr(kiln_last_error(), path));
    ck_assert_ptr_nonnull(strstr(kiln_last_error(), "skip_bad"));
    s.cfg.skip_bad = 1;
    check_ok(data_load_folder(tmp_path("f3"), "train", &s, 0, &d));
    ck_assert_uint_eq(d.count, 4);
    ck_assert_uint_eq(d.skipped, 1);
    data_free(&d);
    s.cfg.skip_bad = 0;
    s.channels = 2;
    ck_assert_int_ne(data_load_folder(tmp_path("f3"), "train", &s, 0, &d), KILN_OK);
    ck_assert_ptr_nonnull(strstr(kiln_last_error(), "2 channels"));
}
END_TEST

START_TEST(training_batches_are_augmented_reproducibly_and_validation_is_not)
{
    static const char *const classes[] = {"a", "b", "c", "d"};
    make_folder(tmp_path("f4"), classes, 4, 5);
    folder_spec s = spec8();
    s.cfg.t.crop_size = 8;
    s.cfg.t.crop_pad = 2;
    s.cfg.t.flip = 1;
    dataset d, val, plain;
    check_ok(data_load_folder(tmp_path("f4"), "train", &s, 0, &d));
    check_ok(data_split(&d, 0.25, 9, &val));
    ck_assert_uint_eq(d.count, 15);
    ck_assert_uint_eq(val.count, 5);
    check_ok(data_load_images(tmp_path("f4"), "train", &s, &plain));
    size_t order[15], other[15];
    kiln_rng rng;
    rng_seed(&rng, 1);
    data_shuffle(order, 15, &rng);
    data_shuffle(other, 15, &rng);
    float a[15 * 64], b[15 * 64], c[15 * 64], y[15];
    for (size_t first = 0; first < 15; first += 4) { /* batches ahead, in order */
        size_t n = 15 - first < 4 ? 15 - first : 4;
        check_ok(data_gather(&d, order, first, n, a + first * 64, y));
    }
    check_ok(data_gather(&d, order, 0, 15, b, y)); /* the same epoch again, at once */
    ck_assert_mem_eq(a, b, sizeof a);
    check_ok(data_gather(&d, other, 0, 15, c, y)); /* another epoch draws anew */
    ck_assert(memcmp(a, c, sizeof a) != 0);
    /* validation: exactly the images, whatever the order */
    check_ok(data_gather(&val, NULL, 0, 5, b, y));
    for (size_t i = 0; i < 5; i++) {
        int found = 0;
        for (size_t k = 0; k < 20 && !found; k++)
            found = memcmp(b + i * 64, plain.x + k * 64, 64 * sizeof *b) == 0 &&
                    plain.y[k] == y[i];
        ck_assert_msg(found, "validation sample %zu is not one of the images", i);
    }
    data_free(&d);
    data_free(&val);
    data_free(&plain);
}
END_TEST

START_TEST(the_cache_file_holds_the_decoded_images)
{
    static const char *const classes[] = {"a", "b"};
    make_folder(tmp_path("f5"), classes, 2, 3);
    folder_spec s = spec8();
    char cache[600], file[600];
    snprintf(cache, sizeof cache, "%s/run/images-train.cache", test_tmpdir());
    s.cache = cache;
    dataset d;
    float first[6 * 64], again[6 * 64], y[6];
    unsigned char px[64];
    memset(px, 100, sizeof px); /* a flat image: another flat one has the same size */
    snprintf(file, sizeof file, "%s/a/00.png", tmp_path("f5"));
    write_gray(file, 8, 8, px);
    check_ok(data_load_folder(tmp_path("f5"), "train", &s, 0, &d));
    check_ok(data_gather(&d, NULL, 0, 6, first, y));
    data_free(&d);
    struct stat info;
    ck_assert_int_eq(stat(cache, &info), 0);
    /* the same size and time, other pixels: the cache is taken for the file */
    ck_assert_int_eq(stat(file, &info), 0);
    memset(px, 250, sizeof px);
    write_gray(file, 8, 8, px);
    struct stat now;
    ck_assert_int_eq(stat(file, &now), 0);
    ck_assert_int_eq(now.st_size, info.st_size);
    struct utimbuf times = {info.st_atime, info.st_mtime};
    ck_assert_int_eq(utime(file, &times), 0);
    check_ok(data_load_folder(tmp_path("f5"), "train", &s, 0, &d));
    check_ok(data_gather(&d, NULL, 0, 6, again, y));
    ck_assert_mem_eq(first, again, sizeof first);
    ck_assert_float_eq_tol(again[0], 100 / 255.0f, 1e-6f);
    data_free(&d);
    /* another time: stale, decoded anew (and written anew) */
    struct utimbuf later = {info.st_atime + 10, info.st_mtime + 10};
    ck_assert_int_eq(utime(file, &later), 0);
    check_ok(data_load_folder(tmp_path("f5"), "train", &s, 0, &d));
    check_ok(data_gather(&d, NULL, 0, 6, again, y));
    ck_assert_float_eq_tol(again[0], 250 / 255.0f, 1e-6f);
    ck_assert_mem_eq(first + 64, again + 64, 5 * 64 * sizeof *first);
    data_free(&d);
    check_ok(data_load_folder(tmp_path("f5"), "train", &s, 0, &d)); /* from the new cache */
    check_ok(data_gather(&d, NULL, 0, 6, first, y));
    ck_assert_mem_eq(first, again, sizeof first);
    data_free(&d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("image");
    TCase *tc = tcase_create("image");
    tcase_add_test(tc, png_colour_types_and_depths_decode_to_8_bit);
    tcase_add_test(tc, jpeg_gray_and_colour_decode);
    tcase_add_test(tc, channels_convert_as_pil_does);
    tcase_add_test(tc, resize_matches_values_worked_from_pils_filter);
    tcase_add_test(tc, resize_then_center_crop_as_torchvision);
    tcase_add_test(tc, augmentations_are_seeded_and_stay_in_range);
    tcase_add_test(tc, bad_files_are_refused_with_their_names);
    tcase_add_test(tc, folders_number_classes_as_imagefolder_does);
    tcase_add_test(tc, folders_mix_png_and_jpeg_gray_and_colour);
    tcase_add_test(tc, train_and_val_folders_share_the_classes);
    tcase_add_test(tc, folder_errors_name_the_folder_or_file);
    tcase_add_test(tc, training_batches_are_augmented_reproducibly_and_validation_is_not);
    tcase_add_test(tc, the_cache_file_holds_the_decoded_images);
    suite_add_tcase(s, tc);
    return test_run(s);
}
