/* The image harnesses' shared body: every input is decoded; an image that
 * decodes is converted to 1 and 3 channels and rendered (resized, cropped,
 * flipped and jittered) to a small sample, as training would. */
#include "data/image.h"
#include "fuzz.h"

int fuzz_image(const uint8_t *data, size_t size, const char *name)
{
    image im;
    if (image_decode(data, size, name, &im) != KILN_OK)
        return 0;
    image_transform t = {.crop_size = 7, .crop_pad = 2, .flip = 1, .brightness = 0.3,
                         .contrast = 0.3};
    image_transform rrc = {.rrc_scale = {0.08, 1}, .rrc_ratio = {0.75, 4.0 / 3}};
    float out[3 * 7 * 5];
    kiln_rng rng;
    rng_seed(&rng, size);
    int small = (uint64_t)im.width * (uint64_t)im.height <= (1u << 20);
    for (int channels = 1; small && channels <= 3; channels += 2)
        if (image_to_channels(&im, channels) == KILN_OK) {
            (void)image_render(&im, &t, 0, &rng, 7, 5, out);
            (void)image_render(&im, &t, 1, &rng, 7, 5, out);
            (void)image_render(&im, &rrc, 1, &rng, 7, 5, out);
        }
    image_free(&im);
    return 0;
}
