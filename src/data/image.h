/* Images (image.c): PNG (libpng) and JPEG (libjpeg-turbo) files decoded
 * into 8-bit gray or RGB, converted to a model's channel count, resampled
 * with PIL's antialiased bilinear filter (what torchvision's Resize runs
 * on PIL images), and torchvision's training augmentations, each drawn
 * from a seeded generator. */
#ifndef KILN_IMAGE_H
#define KILN_IMAGE_H

#include <stdint.h>

#include "runtime/rng.h"
#include "runtime/runtime.h"

/* Images that declare more pixels are refused from their header, before
 * any pixel memory is taken: 2^26 = 67,108,864 (8192 x 8192). */
#define IMAGE_MAX_PIXELS ((uint64_t)1 << 26)
/* Files larger than this are refused before they are read: 256 MiB. */
#define IMAGE_MAX_BYTES ((size_t)256 << 20)

typedef struct {
    int width, height, channels; /* channels: 1 (gray) or 3 (RGB) */
    unsigned char *pixels;       /* height rows of width x channels bytes */
} image;

/* What turns a decoded image into a sample of a model's shape, in
 * torchvision's order: RandomResizedCrop, or Resize then RandomCrop or
 * CenterCrop; then RandomHorizontalFlip and ColorJitter. The random
 * steps run only when image_render is asked to augment. */
typedef struct {
    int resize;               /* shorter side to this; 0: the larger of the model's H and W */
    int crop_size, crop_pad;  /* random_crop: size (0: off) and zero padding on each side */
    int flip;                 /* flip = horizontal: mirrored with probability 1/2 */
    double rrc_scale[2];      /* random_resized_crop: area range (rrc_scale[1] 0: off) */
    double rrc_ratio[2];      /* and aspect-ratio range */
    double brightness, contrast; /* color_jitter: factors from [1 - b, 1 + b] (0: off) */
} image_transform;

/* Decodes a PNG or JPEG held in memory (name is what errors call it).
 * Gray, gray + alpha, RGB, RGBA and palette PNGs of 1 to 16 bits (16
 * scaled to 8, alpha dropped); gray and YCbCr/RGB JPEGs. Truncated or
 * corrupt data, 0 pixels and more than IMAGE_MAX_PIXELS are errors. */
kiln_status image_decode(const unsigned char *data, size_t size, const char *name, image *out);

/* Reads and decodes the file at path. */
kiln_status image_read(const char *path, image *out);

void image_free(image *im);

/* Converts to 1 or 3 channels in place: gray is replicated, colour becomes
 * luminance with ITU-R 601 weights, rounded as PIL's convert("L"). */
kiln_status image_to_channels(image *im, int channels);

/* Resamples the box [x0, x1) x [y0, y1) of im to ow x oh pixels into dst
 * (oh rows of ow x channels floats, 0 to 255), as PIL's resize with
 * BILINEAR and a box: a triangle filter widened by the scale when
 * shrinking (antialiased), computed in floats without rounding between
 * the two passes. */
kiln_status image_resample(const image *im, double x0, double y0, double x1, double y1, int ow,
                           int oh, float *dst);

/* One sample of shape channels x oh x ow (the image's channels) in dst,
 * values in [0, 1]; augment draws the random steps from rng. */
kiln_status image_render(const image *im, const image_transform *t, int augment, kiln_rng *rng,
                         int oh, int ow, float *dst);

/* Python's round() (halves to even), as torchvision's CenterCrop rounds. */
int image_round_even(double x);

#endif /* KILN_IMAGE_H */
